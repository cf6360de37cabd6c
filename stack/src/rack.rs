//! RFC 8985 RACK for retransmissions: the retransmissions in flight, in
//! the order sent, and the rule that finds them lost.
//!
//! A retransmission is lost when a segment sent after it was delivered
//! and it is itself not acknowledged RACK.rtt + RACK.reo_wnd after it was
//! sent. The lost ones are queued (in sequence order) for the sender to
//! resend. Every step here is linear in the records, however many are
//! found lost at once (a hostile receiver can make thousands).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::seq::SeqNumber;

/// Most retransmission records kept (beyond it the oldest are forgotten:
/// RACK then knows less, and the RTO still covers everything).
const MAX_RECORDS: usize = 4096;

/// One retransmission in flight (RFC 8985 keeps the same per segment).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RxtRecord {
    pub(crate) start: SeqNumber,
    pub(crate) end: SeqNumber,
    /// Place in the send order.
    pub(crate) order: u64,
    pub(crate) sent_at: Instant,
}

/// What [`RetransmitLog::detect_lost`] found.
#[derive(Debug, Default)]
pub(crate) struct Detection {
    /// Retransmissions found lost.
    pub(crate) lost: u64,
    /// One of them starts at (or below) SND.UNA: resend the head now.
    pub(crate) head: bool,
    /// When the earliest of the others becomes lost, if nothing changes.
    pub(crate) deadline: Option<Instant>,
}

/// Retransmissions not yet delivered, in the order sent.
#[derive(Debug, Default)]
pub(crate) struct RetransmitLog {
    records: VecDeque<RxtRecord>,
    /// Records and queue entries visited or moved (the work a receiver
    /// can cause), for tests.
    steps: u64,
}

impl RetransmitLog {
    /// Remembers a retransmission of `[start, end)`, sent `order`-th at `now`.
    pub(crate) fn record(&mut self, start: SeqNumber, end: SeqNumber, order: u64, now: Instant) {
        if self.records.len() >= MAX_RECORDS {
            self.records.pop_front();
        }
        self.records.push_back(RxtRecord {
            start,
            end,
            order,
            sent_at: now,
        });
    }

    /// Forgets every record (after an RTO everything is resent anyway).
    pub(crate) fn clear(&mut self) {
        self.records.clear();
    }

    /// True if a retransmission in flight covers `seq`.
    pub(crate) fn covers(&self, seq: SeqNumber) -> bool {
        self.records.iter().any(|x| x.start <= seq && seq < x.end)
    }

    /// Keeps only the records `keep` says are still outstanding.
    pub(crate) fn prune(&mut self, keep: impl FnMut(&RxtRecord) -> bool) {
        self.steps += self.records.len() as u64;
        self.records.retain(keep);
    }

    /// RFC 8985 6.2 step 5 for retransmissions: every record sent before
    /// the segment of send order `rack_order` (the most recent one known
    /// delivered) and unacknowledged `wait` (RACK.rtt + RACK.reo_wnd)
    /// after it was sent is lost. The lost ones that start above `una` are
    /// merged into `queue` (kept in sequence order), except those whose
    /// start a queued range already covers. One pass over the records and
    /// one merge with the queue: linear, plus sorting the lost ones.
    pub(crate) fn detect_lost(
        &mut self,
        rack_order: u64,
        wait: Duration,
        now: Instant,
        una: SeqNumber,
        queue: &mut VecDeque<(SeqNumber, SeqNumber)>,
    ) -> Detection {
        let mut d = Detection::default();
        let mut lost: Vec<(SeqNumber, SeqNumber)> = Vec::new();
        // Records are in send order: those from the first one sent at or
        // after `rack_order` on are kept as they are.
        let mut before_rack = true;
        let mut steps = 0u64;
        self.records.retain(|x| {
            steps += 1;
            before_rack &= x.order < rack_order;
            if !before_rack {
                return true;
            }
            let due = x.sent_at + wait;
            if due > now {
                d.deadline = Some(d.deadline.map_or(due, |t| t.min(due)));
                return true;
            }
            d.lost += 1;
            if x.start <= una {
                d.head = true;
            } else {
                lost.push((x.start, x.end));
            }
            false
        });
        self.steps += steps;
        if !lost.is_empty() {
            lost.sort_unstable_by_key(|r| r.0);
            self.steps += merge_into(queue, lost);
        }
        d
    }
}

/// Merges `lost` (sorted by start) into `queue` (sorted by start), in one
/// pass: a lost range whose start a range before it covers is dropped
/// (that range's holes are resent anyway). Returns the entries visited.
fn merge_into(
    queue: &mut VecDeque<(SeqNumber, SeqNumber)>,
    lost: Vec<(SeqNumber, SeqNumber)>,
) -> u64 {
    let old = std::mem::take(queue);
    let steps = (old.len() + lost.len()) as u64;
    queue.reserve(old.len() + lost.len());
    let mut old = old.into_iter().peekable();
    let mut lost = lost.into_iter().peekable();
    // The furthest end among the ranges already taken.
    let mut reach: Option<SeqNumber> = None;
    loop {
        let take_old = match (old.peek(), lost.peek()) {
            (Some(o), Some(l)) => o.0 <= l.0,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let (r, from_old) = if take_old {
            (old.next(), true)
        } else {
            (lost.next(), false)
        };
        let Some(r) = r else { break };
        if !from_old && reach.is_some_and(|e| r.0 < e) {
            continue;
        }
        reach = Some(reach.map_or(r.1, |e| e.max(r.1)));
        queue.push_back(r);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` retransmissions of 100 bytes from 1000, sent 1 ms apart
    /// (send order 1..=n), every other one already acknowledged by SACK
    /// when `sparse`.
    fn log(n: usize, t0: Instant) -> RetransmitLog {
        let mut l = RetransmitLog::default();
        for i in 0..n {
            let s = SeqNumber(1000) + i * 100;
            l.record(
                s,
                s + 100,
                i as u64 + 1,
                t0 + Duration::from_millis(i as u64),
            );
        }
        l
    }

    /// Issue 15 part 3: loss marking over thousands of retransmissions is
    /// linear: the records found lost are not removed one at a time, and
    /// each is queued without a scan of the queue.
    #[test]
    fn marking_many_retransmissions_lost_is_linear() {
        let t0 = Instant::now();
        for n in [1024usize, 4096] {
            let mut l = log(n, t0);
            let mut queue = VecDeque::new();
            // Half of them (the even ones) delivered: pruned.
            let mut k = 0;
            l.prune(|_| {
                k += 1;
                k % 2 == 1
            });
            l.steps = 0;
            // The other half is sent before the newest delivered segment;
            // the older half of those is due, the newer half not yet.
            let now = t0 + Duration::from_millis(n as u64 / 2);
            let d = l.detect_lost(u64::MAX, Duration::ZERO, now, SeqNumber(0), &mut queue);
            assert_eq!(d.lost as usize, n / 4 + 1);
            assert_eq!(queue.len(), n / 4 + 1);
            assert!(d.deadline.is_some());
            assert!(l.steps <= 4 * n as u64, "{} steps for {n} records", l.steps);
        }
    }
}
