//! The options both SYNs agreed on (RFC 2018 SACK, RFC 7323 timestamps)
//! and the timestamp state that goes with them: TS.Recent, PAWS and our
//! own timestamp clock.

use std::time::{Duration, Instant};

use crate::seq::SeqNumber;

/// Bytes the timestamps option takes in every segment once negotiated
/// (two NOPs + kind + length + TSval + TSecr).
pub(super) const TIMESTAMPS_OPTION_LEN: usize = 12;

/// RFC 7323 5.5: TS.Recent is invalid after 24 days of idleness.
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 60 * 60);

/// Most bytes of TCP options in one segment.
const MAX_OPTIONS_LEN: usize = 40;

/// Serial comparison of two timestamps (RFC 7323 5.2): `a < b`.
pub(super) fn ts_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// What PAWS (RFC 7323 5.3) says of a segment's TSval.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Paws {
    /// Not older than TS.Recent (or nothing to compare): go on.
    Pass,
    /// Older than TS.Recent: an old duplicate, to ACK and drop.
    Reject,
}

/// SACK and timestamps as negotiated, with TS.Recent and our clock.
///
/// It exists so everything RFC 7323 keeps per connection sits in one
/// value that the receive path (PAWS, TS.Recent), the send path (TSval,
/// TSecr, option room) and the RTT measurement all ask.
///
/// Invariants:
/// - `sack_ok` and `ts_ok` only ever go from true to false, and only
///   while the SYNs are exchanged: after the handshake they say what both
///   SYNs carried;
/// - `ts_recent_at` is `None` until a timestamp was taken from the peer,
///   and again after 24 days without one (RFC 7323 5.5): then PAWS
///   passes every segment until TS.Recent is set again;
/// - TS.Recent only moves forward in timestamp order
///   ([`Negotiated::update_recent`]).
#[derive(Clone, Debug)]
pub(super) struct Negotiated {
    /// Both SYNs carried SACK-permitted (before the handshake: we offer it).
    pub(super) sack_ok: bool,
    /// Both SYNs carried timestamps (before the handshake: we offer them).
    pub(super) ts_ok: bool,
    /// RFC 7323 TS.Recent: the peer's TSval we echo.
    pub(super) ts_recent: u32,
    /// When TS.Recent was set (None: not valid).
    pub(super) ts_recent_at: Option<Instant>,
    /// Added to our clock so TSval does not reveal uptime (RFC 7323 7.1).
    pub(super) ts_offset: u32,
    /// Origin of our timestamp clock (the moment the connection was made).
    pub(super) epoch: Instant,
}

impl Negotiated {
    /// Nothing negotiated yet; our clock starts `now`, offset by a value
    /// derived from the (keyed, random) ISS.
    pub(super) fn new(now: Instant, iss: SeqNumber) -> Self {
        Negotiated {
            sack_ok: false,
            ts_ok: false,
            ts_recent: 0,
            ts_recent_at: None,
            ts_offset: iss.0.rotate_left(16) ^ 0x9e37_79b9,
            epoch: now,
        }
    }

    /// Our timestamp clock: milliseconds since the connection was made,
    /// plus a per-connection offset (RFC 7323 5.4: 1 ms to 1 s per tick).
    pub(super) fn ts_val(&self, now: Instant) -> u32 {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u32;
        self.ts_offset.wrapping_add(ms)
    }

    /// Bytes of options every segment carries (the timestamps option when
    /// negotiated): they come out of the MSS (RFC 9293 3.7.1).
    pub(super) fn overhead(&self) -> usize {
        if self.ts_ok {
            TIMESTAMPS_OPTION_LEN
        } else {
            0
        }
    }

    /// Option bytes `blocks` SACK blocks add to a segment (as many as fit
    /// beside the timestamps option).
    pub(super) fn sack_option_len(&self, blocks: usize) -> usize {
        if !self.sack_ok || blocks == 0 {
            return 0;
        }
        let room = (MAX_OPTIONS_LEN - self.overhead() - 4) / 8;
        4 + 8 * blocks.min(room)
    }

    /// The TSval of a segment, if timestamps are in use.
    pub(super) fn tsval(&self, timestamps: Option<(u32, u32)>) -> Option<u32> {
        if self.ts_ok {
            timestamps.map(|t| t.0)
        } else {
            None
        }
    }

    /// TS.Recent becomes `tsval`, taken `now`.
    pub(super) fn set_recent(&mut self, tsval: u32, now: Instant) {
        self.ts_recent = tsval;
        self.ts_recent_at = Some(now);
    }

    /// RFC 7323 5.3 R1 and R2: a TSval older than TS.Recent fails PAWS;
    /// a TS.Recent older than 24 days is forgotten first.
    pub(super) fn paws(&mut self, now: Instant, tsval: u32) -> Paws {
        let Some(at) = self.ts_recent_at else {
            return Paws::Pass;
        };
        if now.saturating_duration_since(at) > PAWS_IDLE {
            self.ts_recent_at = None;
            Paws::Pass
        } else if ts_before(tsval, self.ts_recent) {
            Paws::Reject
        } else {
            Paws::Pass
        }
    }

    /// RFC 7323 4.3 (R3): remember the TSval to echo from the segment
    /// that covers the left edge of what we will ACK next
    /// (`seq <= last_ack_sent`), never moving TS.Recent backwards.
    pub(super) fn update_recent(
        &mut self,
        now: Instant,
        tsval: u32,
        seq: SeqNumber,
        last_ack_sent: SeqNumber,
    ) {
        if !ts_before(tsval, self.ts_recent) && seq <= last_ack_sent {
            self.set_recent(tsval, now);
        }
    }

    /// The peer's SYN (or SYN|ACK) answers our offer: each option stays
    /// on only if it carries it too; its TSval becomes TS.Recent.
    pub(super) fn on_peer_syn(
        &mut self,
        now: Instant,
        sack_permitted: bool,
        timestamps: Option<(u32, u32)>,
    ) {
        self.sack_ok &= sack_permitted;
        match (self.ts_ok, timestamps) {
            (true, Some((tsval, _))) => self.set_recent(tsval, now),
            _ => self.ts_ok = false,
        }
    }

    /// RFC 6191 2: when this incarnation used timestamps and the SYN
    /// offers them (`syn_tsval`), a newer TSval (or the same TSval and a
    /// higher sequence number) proves the SYN is not an old duplicate;
    /// otherwise its sequence number must lie above RCV.NXT.
    pub(super) fn syn_may_reincarnate(
        &self,
        syn_tsval: Option<u32>,
        syn_seq: SeqNumber,
        rcv_nxt: SeqNumber,
    ) -> bool {
        match (self.ts_ok && self.ts_recent_at.is_some(), syn_tsval) {
            (true, Some(tsval)) => {
                ts_before(self.ts_recent, tsval) || (tsval == self.ts_recent && syn_seq > rcv_nxt)
            }
            _ => syn_seq > rcv_nxt,
        }
    }

    /// The RTT an echoed timestamp measures (RFC 7323 4.1), if it is one
    /// we could have sent (not zero, not from the future, not older than
    /// `rto_max`).
    pub(super) fn rtt_from_echo(
        &self,
        now: Instant,
        ecr: u32,
        rto_max: Duration,
    ) -> Option<Duration> {
        if !self.ts_ok || ecr == 0 {
            return None;
        }
        let ms = self.ts_val(now).wrapping_sub(ecr);
        let rtt = Duration::from_millis(ms as u64);
        ((ms as i32) >= 0 && rtt <= rto_max).then_some(rtt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(now: Instant) -> Negotiated {
        let mut n = Negotiated::new(now, SeqNumber(1000));
        n.sack_ok = true;
        n.ts_ok = true;
        n
    }

    #[test]
    fn timestamps_compare_in_serial_order() {
        assert!(ts_before(1, 2));
        assert!(!ts_before(2, 2));
        assert!(ts_before(u32::MAX, 0));
        assert!(!ts_before(0, u32::MAX));
    }

    #[test]
    fn clock_ticks_in_milliseconds_from_the_offset() {
        let t0 = Instant::now();
        let n = Negotiated::new(t0, SeqNumber(7));
        assert_eq!(n.ts_val(t0), n.ts_offset);
        assert_eq!(
            n.ts_val(t0 + Duration::from_millis(1500)),
            n.ts_offset.wrapping_add(1500)
        );
        // Different ISSs give different offsets (RFC 7323 7.1).
        assert_ne!(n.ts_offset, Negotiated::new(t0, SeqNumber(8)).ts_offset);
    }

    #[test]
    fn option_room_leaves_three_sack_blocks_beside_timestamps() {
        let t0 = Instant::now();
        let mut n = negotiated(t0);
        assert_eq!(n.overhead(), TIMESTAMPS_OPTION_LEN);
        assert_eq!(n.sack_option_len(0), 0);
        assert_eq!(n.sack_option_len(1), 12);
        assert_eq!(n.sack_option_len(4), 4 + 8 * 3);
        n.ts_ok = false;
        assert_eq!(n.overhead(), 0);
        assert_eq!(n.sack_option_len(4), 4 + 8 * 4);
        n.sack_ok = false;
        assert_eq!(n.sack_option_len(4), 0);
    }

    #[test]
    fn rfc7323_paws_rejects_older_tsval_and_forgets_after_24_days() {
        let t0 = Instant::now();
        let mut n = negotiated(t0);
        assert_eq!(n.paws(t0, 5), Paws::Pass, "no TS.Recent yet");
        n.set_recent(100, t0);
        assert_eq!(n.paws(t0, 99), Paws::Reject);
        assert_eq!(n.paws(t0, 100), Paws::Pass);
        let later = t0 + PAWS_IDLE + Duration::from_secs(1);
        assert_eq!(n.paws(later, 99), Paws::Pass);
        assert_eq!(n.ts_recent_at, None, "R2: TS.Recent invalidated");
    }

    #[test]
    fn rfc7323_ts_recent_moves_forward_only_from_the_left_edge() {
        let t0 = Instant::now();
        let mut n = negotiated(t0);
        n.set_recent(100, t0);
        n.update_recent(t0, 90, SeqNumber(10), SeqNumber(10));
        assert_eq!(n.ts_recent, 100, "never backwards");
        n.update_recent(t0, 120, SeqNumber(11), SeqNumber(10));
        assert_eq!(n.ts_recent, 100, "segment beyond Last.ACK.sent");
        n.update_recent(t0, 120, SeqNumber(10), SeqNumber(10));
        assert_eq!(n.ts_recent, 120);
    }

    #[test]
    fn options_stay_on_only_if_the_peer_syn_carries_them() {
        let t0 = Instant::now();
        let mut n = negotiated(t0);
        n.on_peer_syn(t0, false, Some((7, 0)));
        assert!(!n.sack_ok);
        assert!(n.ts_ok);
        assert_eq!((n.ts_recent, n.ts_recent_at), (7, Some(t0)));
        n.on_peer_syn(t0, true, None);
        assert!(!n.ts_ok);
        assert!(!n.sack_ok, "never back on");
    }

    #[test]
    fn rfc6191_reincarnation_by_timestamp_or_sequence() {
        let t0 = Instant::now();
        let mut n = negotiated(t0);
        let nxt = SeqNumber(5000);
        n.set_recent(100, t0);
        assert!(n.syn_may_reincarnate(Some(101), SeqNumber(1), nxt));
        assert!(!n.syn_may_reincarnate(Some(99), SeqNumber(9000), nxt));
        assert!(n.syn_may_reincarnate(Some(100), SeqNumber(5001), nxt));
        assert!(!n.syn_may_reincarnate(Some(100), nxt, nxt));
        // Without timestamps only the sequence number counts.
        assert!(n.syn_may_reincarnate(None, SeqNumber(5001), nxt));
        n.ts_ok = false;
        assert!(!n.syn_may_reincarnate(Some(101), nxt, nxt));
    }

    #[test]
    fn echo_measures_rtt_only_for_plausible_timestamps() {
        let t0 = Instant::now();
        let n = negotiated(t0);
        let max = Duration::from_secs(60);
        let sent = n.ts_val(t0);
        let now = t0 + Duration::from_millis(30);
        assert_eq!(
            n.rtt_from_echo(now, sent, max),
            Some(Duration::from_millis(30))
        );
        assert_eq!(n.rtt_from_echo(now, 0, max), None);
        assert_eq!(n.rtt_from_echo(now, sent.wrapping_add(1000), max), None);
        assert_eq!(
            n.rtt_from_echo(now, sent, Duration::from_millis(10)),
            None,
            "older than rto_max"
        );
    }
}
