//! A processor's turn, stamped on the frames it sends: the clock reading
//! its pass used, how many segments it had taken from its queue and in
//! how many batches. A
//! trace then says exactly when each processor acted and which of its
//! segments it had seen, so `vnic replay` gives every processor the same
//! `now` and the same batches (`out cpu=2 t=1234567 in=17 b=9`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// One processor's current turn, shared by the processor (which sets it
/// as a pass begins) and its tracing sink (which reads it into each
/// frame's comment). Two relaxed stores per pass; never read on the hot
/// path unless a frame is being recorded.
#[derive(Debug)]
pub struct TurnStamp {
    epoch: Instant,
    now_ns: AtomicU64,
    taken: AtomicU64,
    batches: AtomicU64,
}

impl TurnStamp {
    /// A stamp counting time from `epoch` (the instant the ISN and cookie
    /// clocks started, which the trace's replay block dates).
    pub fn new(epoch: Instant) -> TurnStamp {
        TurnStamp {
            epoch,
            now_ns: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        }
    }

    /// `now` as a stamp writes it: ns since the epoch.
    #[inline]
    pub fn ns(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// A pass begins at `now`, after `taken` segments in `batches`
    /// batches.
    #[inline]
    pub fn set(&self, now: Instant, taken: u64, batches: u64) {
        let ns = self.ns(now);
        self.now_ns.store(ns, Ordering::Relaxed);
        self.taken.store(taken, Ordering::Relaxed);
        self.batches.store(batches, Ordering::Relaxed);
    }

    /// The current turn: (ns since the epoch, segments taken, batches).
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.now_ns.load(Ordering::Relaxed),
            self.taken.load(Ordering::Relaxed),
            self.batches.load(Ordering::Relaxed),
        )
    }
}

/// The batches count of a comment's turn stamp (`b=N`), if it has one.
pub fn parse_batches(comment: &str) -> Option<u64> {
    comment
        .split(' ')
        .find_map(|w| w.strip_prefix("b=").and_then(|v| v.parse().ok()))
}

/// Reads a turn stamp back from a comment's words (`t=NS in=N`).
pub fn parse_turn(comment: &str) -> Option<(u64, u64)> {
    let mut t = None;
    let mut n = None;
    for w in comment.split(' ') {
        if let Some(v) = w.strip_prefix("t=") {
            t = v.parse().ok();
        } else if let Some(v) = w.strip_prefix("in=") {
            n = v.parse().ok();
        }
    }
    Some((t?, n?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_stamp_reads_back_what_was_set() {
        let e = Instant::now();
        let s = TurnStamp::new(e);
        assert_eq!(s.get(), (0, 0, 0));
        s.set(e + Duration::from_micros(1500), 7, 3);
        assert_eq!(s.get(), (1_500_000, 7, 3));
        assert_eq!(
            parse_turn("out cpu=2 t=1500000 in=7 b=3 gso"),
            Some((1_500_000, 7))
        );
        assert_eq!(parse_batches("out cpu=2 t=1500000 in=7 b=3 gso"), Some(3));
        assert_eq!(parse_batches("out cpu=2 t=1500000 in=7"), None);
        assert_eq!(parse_turn("out cpu=2"), None);
        assert_eq!(parse_turn("out cpu=2 t=x in=7"), None);
    }
}
