//! RFC 8985 RACK-TLP: the state a connection keeps for it
//! ([`RackTlp`]: what was sent when, the most recent delivery, the tail
//! loss probe), and, for retransmissions, the retransmissions in flight
//! in the order sent and the rule that finds them lost.
//!
//! A retransmission is lost when a segment sent after it was delivered
//! and it is itself not acknowledged RACK.rtt + RACK.reo_wnd after it was
//! sent. The lost ones are queued (in sequence order) for the sender to
//! resend. Every step here is linear in the records, however many are
//! found lost at once (a hostile receiver can make thousands).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::sack::Scoreboard;
use crate::seq::SeqNumber;

/// Most retransmission records kept (beyond it the oldest are forgotten:
/// RACK then knows less, and the RTO still covers everything).
const MAX_RECORDS: usize = 4096;

/// Most send records kept (beyond it the oldest are forgotten: RACK then
/// knows less, and the RTO still covers everything).
const MAX_SEND_RECORDS: usize = 4096;

/// Slack added to the probe timeout: two ticks of a 1 ms clock, as
/// Linux's TCP_TIMEOUT_MIN (our SRTT comes from 1 ms timestamps and may
/// read 0).
pub(crate) const MIN_PTO: Duration = Duration::from_millis(2);

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Detection {
    /// Retransmissions found lost.
    pub(crate) lost: u64,
    /// One of them starts at (or below) SND.UNA: resend the head now.
    pub(crate) head: bool,
    /// When the earliest of the others becomes lost, if nothing changes.
    pub(crate) deadline: Option<Instant>,
}

/// Retransmissions not yet delivered, in the order sent.
#[derive(Clone, Debug, Default)]
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

/// RFC 8985 RACK.xmit_ts / RACK.end_seq / RACK.rtt, with the send order
/// standing in for the send time and its end sequence tie-break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RackState {
    /// Send order of the most recently sent segment known delivered.
    pub(crate) order: u64,
    /// The RTT that segment measured.
    pub(crate) rtt: Duration,
}

/// A connection's RACK-TLP state (RFC 8985).
///
/// It exists so loss detection by time (RACK) and the tail loss probe
/// (TLP) own their state apart from the RFC 6675 scoreboard: the
/// connection feeds it what it sends and what the ACKs report
/// delivered, and asks it what is lost.
///
/// Invariants:
/// - `tx_order` counts every data segment and retransmission sent; the
///   orders in `sent_log` and `rxt_log` are at most `tx_order`, and
///   increase in the order the entries were made;
/// - `sent_log` holds new data in sequence order (= send order), ends
///   increasing, at most [`MAX_SEND_RECORDS`] entries;
/// - `lost_rxt` is sorted by start ([`RetransmitLog::detect_lost`]);
/// - `latest`, once set, only moves to a later send order;
/// - `tlp_out` is set while a probe is unanswered (one at a time).
#[derive(Clone, Debug, Default)]
pub(crate) struct RackTlp {
    /// Send order counter: every data segment sent gets the next value,
    /// so "sent after" is exact even when two sends share an Instant.
    pub(crate) tx_order: u64,
    /// New data in the order sent (= sequence order), coalesced per
    /// send instant: `(end, order of its last segment, when)`.
    pub(crate) sent_log: VecDeque<(SeqNumber, u64, Instant)>,
    /// Retransmissions not yet delivered, in the order sent.
    pub(crate) rxt_log: RetransmitLog,
    /// Retransmissions RACK found lost (not at SND.UNA), to send again.
    pub(crate) lost_rxt: VecDeque<(SeqNumber, SeqNumber)>,
    /// RFC 8985 6.1: the most recently sent segment known delivered.
    pub(crate) latest: Option<RackState>,
    /// Min RTT over delivered, never retransmitted segments (exact, from
    /// our own clock; the timestamp clock has 1 ms ticks).
    pub(crate) min_rtt: Option<Duration>,
    /// Lost retransmissions detected.
    pub(crate) lost_retransmits: u64,
    /// A tail loss probe is due (RFC 8985 7.3).
    pub(crate) tlp_pending: bool,
    /// A probe was sent and SND.UNA has not moved since.
    pub(crate) tlp_out: bool,
}

impl RackTlp {
    /// New data (or FIN) up to `end` was sent `now`: it gets the next
    /// send order, coalesced with the previous record if nothing else
    /// went out in between at the same instant.
    pub(crate) fn record_sent(&mut self, end: SeqNumber, now: Instant) {
        let previous = self.tx_order;
        self.tx_order += 1;
        match self.sent_log.back_mut() {
            Some(last) if last.2 == now && last.1 == previous => {
                last.0 = end;
                last.1 = self.tx_order;
            }
            _ => {
                if self.sent_log.len() >= MAX_SEND_RECORDS {
                    self.sent_log.pop_front();
                }
                self.sent_log.push_back((end, self.tx_order, now));
            }
        }
    }

    /// SND.UNA moved to `una`: the send records of data wholly below it
    /// go. No ACK can name them again ([`RackTlp::on_delivered`] looks
    /// at bytes from SND.UNA up), and without this a bulk transfer keeps
    /// [`MAX_SEND_RECORDS`] of them for good, which every checkpoint of
    /// the connection would copy.
    pub(crate) fn forget_acked(&mut self, una: SeqNumber) {
        while self.sent_log.front().is_some_and(|e| e.0 <= una) {
            self.sent_log.pop_front();
        }
    }

    /// Remembers a retransmission of `[start, end)` sent `now`.
    pub(crate) fn record_retransmission(&mut self, start: SeqNumber, end: SeqNumber, now: Instant) {
        self.tx_order += 1;
        self.rxt_log.record(start, end, self.tx_order, now);
    }

    /// RFC 8985 6.2 steps 1-2: of the bytes an ACK reports delivered
    /// (`tops`: the top of each SACK block, the byte below the cumulative
    /// ACK), the most recently sent becomes RACK's reference, with the
    /// RTT it took. Bytes we retransmitted are skipped: which copy
    /// arrived is ambiguous (step 2's "spurious retransmission" case).
    pub(crate) fn on_delivered(&mut self, now: Instant, tops: impl IntoIterator<Item = SeqNumber>) {
        for top in tops {
            if self.rxt_log.covers(top) {
                continue;
            }
            let i = self.sent_log.partition_point(|e| e.0 <= top);
            let Some(&(_, order, sent_at)) = self.sent_log.get(i) else {
                continue;
            };
            let rtt = now.saturating_duration_since(sent_at);
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
            if self.latest.is_none_or(|r| order > r.order) {
                self.latest = Some(RackState { order, rtt });
            }
        }
    }

    /// RFC 8985 6.2 step 4: the reordering window, min_rtt / 4, never
    /// above SRTT (nor below [`MIN_PTO`] through it).
    pub(crate) fn reo_wnd(&self, srtt: Option<Duration>) -> Duration {
        let wnd = self.min_rtt.unwrap_or_default() / 4;
        srtt.map_or(wnd, |s| wnd.min(s.max(MIN_PTO)))
    }

    /// RFC 8985 6.2 step 5 for retransmissions: forgets those delivered
    /// (below `una` or SACKed), then finds the lost ones (queued in
    /// `lost_rxt`). None without a reference delivery or without SACK.
    pub(crate) fn detect_lost(
        &mut self,
        now: Instant,
        una: SeqNumber,
        sb: &Scoreboard,
        sack_ok: bool,
        srtt: Option<Duration>,
    ) -> Option<Detection> {
        self.rxt_log
            .prune(|x| x.end > una && sb.hole_from(x.start.max(una), x.end).is_some());
        let rack = self.latest.filter(|_| sack_ok)?;
        let wait = rack.rtt + self.reo_wnd(srtt);
        let found = self
            .rxt_log
            .detect_lost(rack.order, wait, now, una, &mut self.lost_rxt);
        self.lost_retransmits += found.lost;
        Some(found)
    }

    /// Bytes of the lost retransmissions not yet resent and not SACKed
    /// since: they have left the network too (for RFC 6675's pipe).
    pub(crate) fn lost_bytes(&self, una: SeqNumber, sb: &Scoreboard) -> usize {
        self.lost_rxt
            .iter()
            .map(|&(s, e)| {
                let s = s.max(una);
                if s < e {
                    (e - s) - sb.sacked_between(s, e)
                } else {
                    0
                }
            })
            .sum()
    }

    /// Drops the lost retransmissions that are now fully SACKed or
    /// acknowledged: they need nothing more.
    pub(crate) fn drop_repaired(&mut self, una: SeqNumber, sb: &Scoreboard) {
        while let Some(&(s, e)) = self.lost_rxt.front() {
            let s = s.max(una);
            if s < e && sb.hole_from(s, e).is_some() {
                break;
            }
            self.lost_rxt.pop_front();
        }
    }

    /// After an RTO everything outstanding is resent: older records of
    /// retransmissions are moot.
    pub(crate) fn forget_retransmissions(&mut self) {
        self.rxt_log.clear();
        self.lost_rxt.clear();
    }

    /// Bytes the logs hold beyond the struct itself.
    pub(crate) fn memory(&self) -> usize {
        let log = std::mem::size_of::<(SeqNumber, u64, Instant)>();
        let pair = std::mem::size_of::<(SeqNumber, SeqNumber)>();
        self.sent_log.capacity() * log + self.lost_rxt.capacity() * pair
    }

    /// Gives back the logs' unused capacity.
    pub(crate) fn shrink(&mut self) {
        self.sent_log.shrink_to_fit();
        self.lost_rxt.shrink_to_fit();
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

    #[test]
    fn sends_at_one_instant_coalesce_until_something_else_goes_out() {
        let t0 = Instant::now();
        let mut r = RackTlp::default();
        r.record_sent(SeqNumber(100), t0);
        r.record_sent(SeqNumber(200), t0);
        assert_eq!(r.sent_log.len(), 1);
        assert_eq!(r.sent_log[0], (SeqNumber(200), 2, t0));
        // A retransmission in between keeps the order exact.
        r.record_retransmission(SeqNumber(0), SeqNumber(100), t0);
        r.record_sent(SeqNumber(300), t0);
        assert_eq!(r.sent_log.len(), 2);
        assert_eq!(r.tx_order, 4);
        let t1 = t0 + Duration::from_millis(1);
        r.record_sent(SeqNumber(400), t1);
        assert_eq!(r.sent_log.back(), Some(&(SeqNumber(400), 5, t1)));
    }

    #[test]
    fn send_records_below_snd_una_are_forgotten() {
        let t0 = Instant::now();
        let mut r = RackTlp::default();
        for i in 1..=10u32 {
            r.record_sent(SeqNumber(i * 100), t0 + Duration::from_millis(i as u64));
        }
        r.forget_acked(SeqNumber(450));
        assert_eq!(r.sent_log.front().map(|e| e.0), Some(SeqNumber(500)));
        // The byte below a later cumulative ACK still finds its record.
        r.on_delivered(t0 + Duration::from_millis(20), [SeqNumber(549)]);
        assert_eq!(
            r.latest.map(|l| l.order),
            Some(6),
            "the record ending at 600"
        );
        r.forget_acked(SeqNumber(1000));
        assert!(r.sent_log.is_empty());
    }

    #[test]
    fn send_records_are_bounded() {
        let t0 = Instant::now();
        let mut r = RackTlp::default();
        for i in 0..MAX_SEND_RECORDS + 10 {
            r.record_sent(
                SeqNumber(i as u32 + 1),
                t0 + Duration::from_micros(i as u64),
            );
        }
        assert_eq!(r.sent_log.len(), MAX_SEND_RECORDS);
    }

    #[test]
    fn rfc8985_delivery_of_a_later_segment_moves_the_reference() {
        let t0 = Instant::now();
        let mut r = RackTlp::default();
        r.record_sent(SeqNumber(100), t0);
        r.record_sent(SeqNumber(200), t0 + Duration::from_millis(5));
        let now = t0 + Duration::from_millis(20);
        r.on_delivered(now, [SeqNumber(150)]);
        assert_eq!(
            r.latest,
            Some(RackState {
                order: 2,
                rtt: Duration::from_millis(15)
            })
        );
        assert_eq!(r.min_rtt, Some(Duration::from_millis(15)));
        // An older segment delivered later does not move it back.
        r.on_delivered(now + Duration::from_millis(5), [SeqNumber(50)]);
        assert_eq!(r.latest.map(|l| l.order), Some(2));
        assert_eq!(r.min_rtt, Some(Duration::from_millis(15)));
    }

    #[test]
    fn rfc8985_retransmitted_bytes_are_ambiguous_and_skipped() {
        let t0 = Instant::now();
        let mut r = RackTlp::default();
        r.record_sent(SeqNumber(100), t0);
        r.record_retransmission(SeqNumber(0), SeqNumber(100), t0 + Duration::from_millis(1));
        r.on_delivered(t0 + Duration::from_millis(2), [SeqNumber(50)]);
        assert_eq!(r.latest, None);
    }

    #[test]
    fn reordering_window_is_a_quarter_of_min_rtt_capped_by_srtt() {
        let mut r = RackTlp::default();
        assert_eq!(r.reo_wnd(None), Duration::ZERO);
        r.min_rtt = Some(Duration::from_millis(40));
        assert_eq!(r.reo_wnd(None), Duration::from_millis(10));
        assert_eq!(
            r.reo_wnd(Some(Duration::from_millis(4))),
            Duration::from_millis(4)
        );
        assert_eq!(r.reo_wnd(Some(Duration::ZERO)), MIN_PTO);
    }

    #[test]
    fn lost_retransmissions_count_until_sacked_then_are_dropped() {
        let t0 = Instant::now();
        let mut r = RackTlp::default();
        let una = SeqNumber(1000);
        let mut sb = Scoreboard::default();
        r.lost_rxt.push_back((SeqNumber(1000), SeqNumber(1100)));
        r.lost_rxt.push_back((SeqNumber(1200), SeqNumber(1300)));
        assert_eq!(r.lost_bytes(una, &sb), 200);
        sb.insert(una, SeqNumber(2000), SeqNumber(1000), SeqNumber(1100));
        assert_eq!(r.lost_bytes(una, &sb), 100);
        r.drop_repaired(una, &sb);
        assert_eq!(r.lost_rxt.len(), 1);
        // Without SACK or a reference nothing is detected.
        assert_eq!(r.detect_lost(t0, una, &sb, false, None), None);
        r.forget_retransmissions();
        assert!(r.lost_rxt.is_empty());
    }

    #[test]
    fn detect_lost_marks_retransmissions_sent_before_the_reference() {
        let t0 = Instant::now();
        let mut r = RackTlp::default();
        let una = SeqNumber(1000);
        let sb = Scoreboard::default();
        r.record_retransmission(SeqNumber(1200), SeqNumber(1300), t0);
        r.record_sent(SeqNumber(2000), t0 + Duration::from_millis(1));
        r.latest = Some(RackState {
            order: 2,
            rtt: Duration::from_millis(10),
        });
        let early = r.detect_lost(t0 + Duration::from_millis(5), una, &sb, true, None);
        assert_eq!(early.map(|d| d.lost), Some(0));
        assert_eq!(
            early.and_then(|d| d.deadline),
            Some(t0 + Duration::from_millis(10))
        );
        let late = r.detect_lost(t0 + Duration::from_millis(10), una, &sb, true, None);
        assert_eq!(late.map(|d| d.lost), Some(1));
        assert_eq!(
            r.lost_rxt,
            VecDeque::from([(SeqNumber(1200), SeqNumber(1300))])
        );
        assert_eq!(r.lost_retransmits, 1);
    }
}
