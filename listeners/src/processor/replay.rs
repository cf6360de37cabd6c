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

    /// One batch, as the trace shows the processor took it: `n` segments
    /// from its queue (the datagrams among them answered on the way),
    /// then, if `ends` (the batch ends here), the connections that got
    /// them serviced once; all at its clock's `now`. `starts`: a new
    /// batch, not the rest of one that did not end. False when the
    /// processor was told to stop.
    pub fn take_batch(&mut self, n: u64, starts: bool, ends: bool) -> bool {
        let now = self.clock.now();
        self.batch_now = Some(now);
        if starts {
            self.batches += 1;
        }
        let ok = self.take_segments(n);
        self.batch_now = None;
        if ends {
            self.service_pending(now);
        }
        ok
    }

    fn take_segments(&mut self, n: u64) -> bool {
        let mut segments = 0;
        while segments < n {
            match self.take_message() {
                Ok(ToProcessor::Segment(inb)) => {
                    segments += 1;
                    self.receive(inb);
                }
                Ok(msg) => {
                    if !self.on_message(msg) {
                        return false;
                    }
                }
                Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => break,
            }
        }
        true
    }

    /// Batches taken so far (what a traced frame's `b=N` counts).
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Messages waiting in the processor's queue.
    pub fn queued(&self) -> u64 {
        self.queue.len() as u64
    }

    /// Segments taken from the queue so far (what a traced frame's
    /// `in=N` counts).
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Fires the timers due by the processor's clock and services what
    /// the last pass left for later, as each turn of [`Processor::run`]
    /// does.
    pub fn fire_due(&mut self) {
        let now = self.clock.now();
        self.fire_timers(now);
        self.expire_time_wait(now);
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
