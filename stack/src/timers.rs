//! The timers of one connection: one deadline per kind; the earliest one is
//! what the processor thread sleeps until.

use std::time::Instant;

/// The kinds of timer a connection runs.
///
/// It exists so every deadline lives in one table and `poll_timeout` is a
/// single minimum, instead of deadlines scattered over the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Timer {
    /// RFC 6298: retransmit the oldest unacknowledged segment.
    Retransmit,
    /// RFC 9293 3.8.6.1: probe a zero window.
    Persist,
    /// 2*MSL in TIME-WAIT, then CLOSED.
    TimeWait,
    /// RFC 1122 4.2.3.2 / RFC 5681 4.2: the latest moment an ACK for
    /// in-order data may be delayed to.
    DelayedAck,
    /// RFC 9293 3.8.6.2.1: the sender's SWS override timeout.
    SendOverride,
    /// RFC 8985 7 (tail loss probe): send one segment to elicit SACK
    /// feedback well before the RTO would fire.
    LossProbe,
    /// RFC 8985 6.3: RACK's reordering window ran out for a segment sent
    /// before one already delivered: it is lost.
    Reorder,
    /// The connection's idle limit ([`crate::TcpConfig::idle_timeout`]): when
    /// it fires, the connection is reset unless something moved meanwhile
    /// (then it is set again from the last progress).
    Idle,
}

impl Timer {
    const ALL: [Timer; 8] = [
        Timer::Retransmit,
        Timer::Persist,
        Timer::TimeWait,
        Timer::DelayedAck,
        Timer::SendOverride,
        Timer::LossProbe,
        Timer::Reorder,
        Timer::Idle,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One optional deadline per [`Timer`].
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; 8],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    /// When `timer` fires, if it runs.
    pub(crate) fn deadline(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [None; 8];
    }

    /// Sets `timer` unless it is already running (keeps the earlier deadline).
    pub(crate) fn set_if_idle(&mut self, timer: Timer, at: Instant) {
        if !self.is_running(timer) {
            self.set(timer, at);
        }
    }

    pub(crate) fn is_running(&self, timer: Timer) -> bool {
        self.deadlines[timer.index()].is_some()
    }

    /// The earliest deadline of all running timers.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Removes and returns one timer whose deadline is `<= now`.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        let t = Timer::ALL
            .into_iter()
            .find(|t| self.deadlines[t.index()].is_some_and(|d| d <= now))?;
        self.stop(t);
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_deadline_and_expiry() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next_deadline(), None);
        t.set(Timer::TimeWait, t0 + Duration::from_secs(2));
        t.set(Timer::Retransmit, t0 + Duration::from_secs(1));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.take_expired(t0), None);
        assert_eq!(
            t.take_expired(t0 + Duration::from_secs(1)),
            Some(Timer::Retransmit)
        );
        assert_eq!(t.take_expired(t0 + Duration::from_secs(1)), None);
        assert!(t.is_running(Timer::TimeWait));
    }
}
