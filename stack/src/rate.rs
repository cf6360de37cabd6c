//! Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation):
//! how fast the path delivered data, sampled on every ACK.
//!
//! Each send of new data records a snapshot of the connection's delivery
//! state (bytes delivered so far, when the last delivery happened, when
//! the current sending flight started, whether the sender was
//! application-limited). When an ACK reports the most recently sent of
//! those segments delivered, the bytes delivered since its snapshot over
//! the longer of its send and ACK intervals is one rate sample. BBR reads
//! the samples; the loss-based controllers never make the connection keep
//! this log.
//!
//! Retransmitted data gives no sample (which copy arrived is ambiguous,
//! as for RACK): the draft re-snapshots a retransmitted packet, we keep
//! one record per first transmission only, so samples come from new data
//! (at 1% loss nearly every ACK still delivers some).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::seq::SeqNumber;

/// Most send records kept (beyond it the oldest are forgotten: their ACKs
/// then give no sample).
const MAX_RECORDS: usize = 4096;

/// One delivery-rate sample (the draft's `rs`).
///
/// It exists so a controller gets the sample's parts, not only the rate:
/// BBR needs the interval (to drop samples shorter than min_rtt), the
/// delivered count at send time (to count round trips) and whether the
/// sender was application-limited.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RateSample {
    /// Bytes delivered over the interval (C.delivered - P.delivered).
    pub(crate) delivered: u64,
    /// C.delivered when the sampled segment was sent (P.delivered).
    pub(crate) prior_delivered: u64,
    /// max(send interval, ACK interval) of the sample.
    pub(crate) interval: Duration,
    /// RTT of the sampled segment, from our own clock.
    pub(crate) rtt: Duration,
    /// The sampled segment was sent while the application, not the
    /// network, limited the sender: the rate says less than the path can.
    pub(crate) app_limited: bool,
}

impl RateSample {
    /// The delivery rate in bytes per second (0 for an empty interval).
    pub(crate) fn bytes_per_sec(&self) -> f64 {
        let secs = self.interval.as_secs_f64();
        if secs > 0.0 {
            self.delivered as f64 / secs
        } else {
            0.0
        }
    }
}

/// The connection's delivery state when some new data was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SendRecord {
    /// One past the last sequence number of the data sent at once.
    end: SeqNumber,
    sent: Instant,
    delivered: u64,
    delivered_time: Instant,
    first_sent: Instant,
    app_limited: bool,
}

/// The connection-wide delivery state (the draft's `C.*`) and the send
/// records not yet cumulatively acknowledged.
///
/// It exists so the connection can turn each ACK into a [`RateSample`]
/// without a per-segment structure of its own; records of segments sent
/// in one burst with the same snapshot share one entry.
#[derive(Clone, Debug)]
pub(crate) struct DeliveryRate {
    delivered: u64,
    delivered_time: Instant,
    first_sent: Instant,
    /// C.app_limited: the delivered count up to which samples are
    /// application-limited (0: not limited).
    app_limited: u64,
    /// The newest sequence number a sample was taken at: an ACK whose
    /// newest delivered byte is not above it only filled older holes.
    newest_sampled: Option<SeqNumber>,
    records: VecDeque<SendRecord>,
}

impl DeliveryRate {
    /// The state of a connection made at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        DeliveryRate {
            delivered: 0,
            delivered_time: now,
            first_sent: now,
            app_limited: 0,
            newest_sampled: None,
            records: VecDeque::new(),
        }
    }

    /// Bytes delivered over the connection's life (C.delivered).
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// New data up to `end` left at `now`; `idle` when nothing was in
    /// flight before it (a new flight starts: its intervals start now).
    pub(crate) fn on_send(&mut self, now: Instant, end: SeqNumber, idle: bool) {
        if idle {
            self.first_sent = now;
            self.delivered_time = now;
        }
        let rec = SendRecord {
            end,
            sent: now,
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent: self.first_sent,
            app_limited: self.app_limited != 0,
        };
        if let Some(last) = self.records.back_mut() {
            if (SendRecord { end, ..*last }) == rec {
                last.end = end;
                return;
            }
        }
        if self.records.len() >= MAX_RECORDS {
            self.records.pop_front();
        }
        self.records.push_back(rec);
    }

    /// The sender has nothing to send though cwnd has room: samples of
    /// data sent until what is in flight now is delivered are
    /// application-limited.
    pub(crate) fn on_app_limited(&mut self, inflight: usize) {
        self.app_limited = (self.delivered + inflight as u64).max(1);
    }

    /// An ACK at `now` delivered `newly` bytes; `newest` is the highest
    /// sequence number it reports delivered that was not retransmitted,
    /// `una` SND.UNA after it. Returns the rate sample of the most
    /// recently sent segment it delivered, if it delivered one not
    /// sampled before.
    pub(crate) fn on_ack(
        &mut self,
        now: Instant,
        newly: usize,
        newest: Option<SeqNumber>,
        una: SeqNumber,
    ) -> Option<RateSample> {
        if newly > 0 {
            self.delivered += newly as u64;
            self.delivered_time = now;
        }
        if self.app_limited != 0 && self.delivered > self.app_limited {
            self.app_limited = 0;
        }
        let sample = newest
            .filter(|&top| self.newest_sampled.is_none_or(|n| top > n))
            .and_then(|top| {
                let i = self.records.partition_point(|r| r.end <= top);
                let p = *self.records.get(i)?;
                self.newest_sampled = Some(top);
                self.first_sent = p.sent;
                let send_elapsed = p.sent.saturating_duration_since(p.first_sent);
                let ack_elapsed = now.saturating_duration_since(p.delivered_time);
                Some(RateSample {
                    delivered: self.delivered - p.delivered,
                    prior_delivered: p.delivered,
                    interval: send_elapsed.max(ack_elapsed),
                    rtt: now.saturating_duration_since(p.sent),
                    app_limited: p.app_limited,
                })
            });
        while self.records.front().is_some_and(|r| r.end <= una) {
            self.records.pop_front();
        }
        sample
    }

    /// Bytes of memory the records hold.
    pub(crate) fn memory(&self) -> usize {
        std::mem::size_of::<Self>() + self.records.capacity() * std::mem::size_of::<SendRecord>()
    }

    /// Gives back the memory the records do not use.
    pub(crate) fn shrink(&mut self) {
        self.records.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A flight of 10 segments of 1000 bytes sent at once, ACKed one per
    /// millisecond 10 ms later: 1000 bytes per ms, i.e. 1 MB/s, with the
    /// ACK interval the longer one.
    #[test]
    fn steady_acks_give_the_delivery_rate() {
        let t0 = Instant::now();
        let mut r = DeliveryRate::new(t0);
        let s0 = SeqNumber(1000);
        for i in 1..=10 {
            r.on_send(t0, s0 + i * 1000, i == 1);
        }
        assert_eq!(r.records.len(), 1, "one burst, one record");
        // The first ACK's segment was sent when nothing had been
        // delivered: its interval is the RTT.
        let first = r.on_ack(t0 + ms(10), 1000, Some(s0 + 999), s0 + 1000);
        assert_eq!(first.map(|s| s.interval), Some(ms(10)));
        // Segments sent after that ACK are sampled against it.
        r.on_send(t0 + ms(10), s0 + 11_000, false);
        for k in 2..=10usize {
            let at = t0 + ms(9 + k as u64);
            r.on_ack(at, 1000, Some(s0 + (k * 1000 - 1)), s0 + k * 1000);
        }
        let s = r
            .on_ack(t0 + ms(20), 1000, Some(s0 + 10_999), s0 + 11_000)
            .expect("sample");
        assert_eq!(s.delivered, 10_000);
        assert_eq!(s.interval, ms(10));
        assert_eq!(s.rtt, ms(10));
        assert!(
            (s.bytes_per_sec() - 1e6).abs() < 1.0,
            "{}",
            s.bytes_per_sec()
        );
        assert!(r.records.is_empty(), "acknowledged records are dropped");
    }

    #[test]
    fn a_hole_filled_later_gives_no_second_sample_and_app_limits_mark() {
        let t0 = Instant::now();
        let mut r = DeliveryRate::new(t0);
        let s0 = SeqNumber(0);
        r.on_send(t0, s0 + 2000, true);
        r.on_app_limited(2000);
        r.on_send(t0 + ms(1), s0 + 3000, false);
        // SACK of the second segment: sampled, not app-limited.
        let s = r.on_ack(t0 + ms(5), 1000, Some(s0 + 1999), s0);
        assert!(s.is_some_and(|s| !s.app_limited));
        // The first segment's retransmission fills the hole: the ACK's
        // newest byte was sampled already.
        assert_eq!(r.on_ack(t0 + ms(9), 1000, Some(s0 + 1999), s0 + 2000), None);
        // The third segment was sent application-limited.
        let s = r.on_ack(t0 + ms(10), 1000, Some(s0 + 2999), s0 + 3000);
        assert!(s.is_some_and(|s| s.app_limited));
        assert_eq!(r.delivered(), 3000);
    }
}
