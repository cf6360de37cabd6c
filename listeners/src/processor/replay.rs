//! Driving a processor from outside its thread, on a clock it is given:
//! what `vnic replay` does to run a captured session again in one thread.
//! [`Processor::run`] stays the only loop of a live vnic; these are the
//! same steps it takes, one at a time.

use super::*;

impl Processor {
    /// Gives the processor the clock it reads `now` from (the real one
    /// unless told otherwise): a replay gives every processor one virtual
    /// clock, so each segment, timer and ISN sees the time it had.
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// Takes everything queued, as one turn of [`Processor::run`] does
    /// (segments in batches of up to [`BATCH`], each batch's connections
    /// serviced once), then fires the timers due by its clock. False when
    /// the processor was told to stop (or its queue is gone).
    pub fn run_queued(&mut self) -> bool {
        loop {
            match self.take_message() {
                Ok(msg) => {
                    if !self.on_message(msg) {
                        return false;
                    }
                }
                Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => break,
            }
        }
        self.fire_due();
        true
    }

    /// Fires the timers due by the processor's clock and services what
    /// the last pass left for later, as each turn of [`Processor::run`]
    /// does.
    pub fn fire_due(&mut self) {
        let now = self.clock.now();
        self.fire_timers(now);
        // One pass per turn in a live vnic; here the turns come one after
        // another at the same instant (bounded, so a bug cannot spin).
        for _ in 0..BACKLOG_TURNS {
            if !self.service_backlog(now) {
                break;
            }
        }
    }

    /// The earliest deadline in the processor's timer heap (entries are
    /// lazy: one may be stale, and firing it then does nothing).
    pub fn next_timer(&self) -> Option<Instant> {
        self.next_deadline()
    }
}

/// How many backlog passes [`Processor::fire_due`] makes at one instant.
const BACKLOG_TURNS: usize = 1024;
