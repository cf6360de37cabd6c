//! Loss recovery: the retransmission timer (RFC 6298), RFC 6675's pipe and
//! next retransmission, RACK-TLP (RFC 8985) with its loss probe, and
//! entering recovery (RFC 6582 for NewReno). [`LossRecovery`] holds the
//! state; the `Connection` methods below apply it to the send side.

use super::*;
use crate::congestion::{new_controller, Controller};
use crate::rtt::RttEstimator;
use crate::sack::Scoreboard;

/// Which loss recovery is running (RFC 6675 or RFC 6582).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Recovery {
    /// SACK-based: the scoreboard says what is lost.
    Sack,
    /// NewReno: one hole at a time, at SND.UNA.
    NewReno,
}

/// Congestion control and loss recovery (RFC 5681, 6582, 6675, 6298).
///
/// It exists so everything that decides how much may be in flight and
/// what to resend sits in one part: the congestion controller, the SACK
/// scoreboard, the recovery in progress and its recovery point, and the
/// RTO state (RTT estimator, the segment being timed).
///
/// Invariants (SND.UNA <= `high_rxt`, `lost_until`, `recovery_point` <=
/// SND.MAX as far as these move with the sequence space; the methods take
/// SND.UNA and SND.MAX as arguments and clamp):
/// - `mode` is Some only between entering recovery and the ACK of
///   `recovery_point` (or an RTO);
/// - no recovery starts while SND.UNA < `recovery_point`;
/// - `dup_sacked` is zero with SACK, and never more than is outstanding;
/// - `rtt_sample`, when set, times a segment sent once (Karn).
///
/// Every part is a plain value; the controller, a trait object
/// (`Box<dyn Controller>`), is copied through `Controller::clone_box`.
#[derive(Clone, Debug)]
pub(super) struct LossRecovery {
    /// The congestion controller (cwnd, ssthresh).
    pub(super) cc: Box<dyn Controller>,
    /// Delivery-rate estimation, kept only for a controller that reads
    /// samples (BBR).
    pub(super) rate: Option<Box<DeliveryRate>>,
    /// RFC 6675 scoreboard: what the peer SACKed above SND.UNA.
    pub(super) scoreboard: Scoreboard,
    /// The recovery running, if any.
    pub(super) mode: Option<Recovery>,
    /// RFC 6675 RecoveryPoint / RFC 6582 "recover": no new recovery
    /// starts until SND.UNA reaches it.
    pub(super) recovery_point: SeqNumber,
    /// RFC 6675 HighRxt: retransmission has covered the holes up to here.
    pub(super) high_rxt: SeqNumber,
    /// Every un-SACKed byte below this is taken as lost (after an RTO,
    /// the first segment in NewReno recovery, data beyond a closed window).
    pub(super) lost_until: SeqNumber,
    /// Send the segment at SND.UNA next, whatever cwnd says (fast
    /// retransmit, RFC 6582 partial ACK, RTO).
    pub(super) rxt_head: bool,
    /// Duplicate ACKs in a row (RFC 5681 / RFC 6675 definitions).
    pub(super) dup_acks: u32,
    /// Without SACK, bytes the duplicate ACKs say have left the network
    /// (one SMSS each): NewReno's window inflation, expressed as pipe.
    pub(super) dup_sacked: usize,
    /// RTT estimation and the RTO with its backoff (RFC 6298).
    pub(super) rtt: RttEstimator,
    /// The one segment being timed when timestamps are off: (sequence
    /// number that acknowledges it, when it was sent). Never a
    /// retransmitted one (Karn).
    pub(super) rtt_sample: Option<(SeqNumber, Instant)>,
    /// When the first retransmission timeout since SND.UNA last moved
    /// fired (None: none has), for [`TcpConfig::total_retransmission_time`].
    pub(super) stalled_since: Option<Instant>,
}

impl LossRecovery {
    /// No loss seen, the controller of `cfg` for segments of `mss` bytes.
    pub(super) fn new(cfg: &TcpConfig, iss: SeqNumber, mss: usize) -> Self {
        LossRecovery {
            cc: new_controller(cfg.congestion, mss),
            rate: None,
            scoreboard: Scoreboard::default(),
            mode: None,
            recovery_point: iss,
            high_rxt: iss,
            lost_until: iss,
            rxt_head: false,
            dup_acks: 0,
            dup_sacked: 0,
            rtt: RttEstimator::new(cfg.rto_initial, cfg.rto_min, cfg.rto_max),
            rtt_sample: None,
            stalled_since: None,
        }
    }

    /// SND.UNA moved forward to `una`: the markers it passed follow it.
    /// Left at ISS through a transfer without loss, they fell 2^31 bytes
    /// behind after 2 GiB, where serial arithmetic (RFC 1982) reads them
    /// as ahead of SND.UNA: every outstanding byte then counted as lost
    /// and was sent again (a 3 GiB download resent 743,715 segments and
    /// ran at a fifth of its speed). Called on every advance, a marker is
    /// never more than one window behind.
    pub(super) fn follow_una(&mut self, una: SeqNumber) {
        for m in [
            &mut self.recovery_point,
            &mut self.high_rxt,
            &mut self.lost_until,
        ] {
            if *m < una {
                *m = una;
            }
        }
    }

    /// Everything un-SACKed below this is lost: `lost_until`, and in SACK
    /// recovery what RFC 6675 IsLost says; never beyond `max` (SND.MAX).
    pub(super) fn lost_boundary(&self, max: SeqNumber, mss: usize) -> SeqNumber {
        let mut b = self.lost_until;
        if self.mode == Some(Recovery::Sack) {
            if let Some(sb) = self.scoreboard.loss_boundary(mss) {
                b = b.max(sb);
            }
        }
        b.min(max)
    }

    /// RFC 6675 SetPipe, computed from ranges instead of per octet:
    /// outstanding (`una`..`max`), less SACKed (or dup-ACKed), less lost
    /// and not yet retransmitted, less `rack_lost` (retransmissions RACK
    /// found lost). O(scoreboard ranges).
    pub(super) fn pipe(
        &self,
        una: SeqNumber,
        max: SeqNumber,
        mss: usize,
        rack_lost: usize,
    ) -> usize {
        let outstanding = max.distance_from(una);
        let from = self.high_rxt.max(una);
        let boundary = self.lost_boundary(max, mss);
        let lost_unsent = if boundary > from {
            (boundary - from) - self.scoreboard.sacked_between(from, boundary)
        } else {
            0
        };
        outstanding
            .saturating_sub(self.scoreboard.sacked_bytes() + self.dup_sacked)
            .saturating_sub(lost_unsent + rack_lost)
    }

    /// True while a SACK recovery has resent every hole it knows to be
    /// lost (`rack_queue_empty`: no lost retransmission waits either).
    pub(super) fn at_tail(
        &self,
        una: SeqNumber,
        max: SeqNumber,
        mss: usize,
        rack_queue_empty: bool,
    ) -> bool {
        if self.mode != Some(Recovery::Sack) || self.rxt_head || !rack_queue_empty {
            return false;
        }
        let from = self.high_rxt.max(una);
        let boundary = self.lost_boundary(max, mss);
        from >= boundary
            || self
                .scoreboard
                .hole_from(from, max)
                .is_none_or(|(s, _)| s >= boundary)
    }

    /// SND.UNA moved to `una` acknowledging `acked` bytes: a full ACK ends
    /// recovery (cwnd is ssthresh already), a partial one in NewReno
    /// recovery marks the next hole for retransmission at once (RFC 6582
    /// 3.2); outside recovery the controller grows cwnd.
    pub(super) fn on_cumulative_ack(
        &mut self,
        now: Instant,
        una: SeqNumber,
        max: SeqNumber,
        acked: usize,
        mss: usize,
        flight_before: usize,
    ) {
        self.dup_acks = 0;
        match self.mode {
            Some(_) if una >= self.recovery_point => {
                self.mode = None;
                self.dup_sacked = 0;
            }
            Some(Recovery::NewReno) => {
                // The dup ACKs the partial ACK covers no longer stand for
                // segments in the network.
                self.dup_sacked = self.dup_sacked.saturating_sub(acked.saturating_sub(mss));
                self.high_rxt = una;
                self.lost_until = (una + mss).min(max);
                self.rxt_head = true;
            }
            Some(Recovery::Sack) => {}
            None => {
                self.dup_sacked = 0;
                let cwnd_limited = flight_before.saturating_mul(2) >= self.cc.window();
                let rtt = self.rtt.srtt();
                self.cc.on_ack(now, acked, rtt, cwnd_limited);
            }
        }
    }

    /// One more duplicate ACK; without SACK it stands for one segment
    /// that left the network (RFC 3042 / 6582), up to `outstanding`.
    pub(super) fn on_duplicate_ack(&mut self, sack_ok: bool, mss: usize, outstanding: usize) {
        self.dup_acks += 1;
        if !sack_ok {
            self.dup_sacked = (self.dup_sacked + mss).min(outstanding);
        }
    }

    /// RFC 5681 3.2 / RFC 6675 5: the third duplicate ACK, or (with
    /// SACK) a scoreboard that says the segment at `una` is lost. RFC
    /// 5827 (early retransmit): with fewer than four segments outstanding
    /// and `nothing_new` to send, fewer duplicate ACKs can ever arrive;
    /// the threshold is outstanding - 1.
    pub(super) fn loss_detected(
        &self,
        sack_ok: bool,
        una: SeqNumber,
        outstanding: usize,
        mss: usize,
        nothing_new: bool,
    ) -> bool {
        let mut dup_thresh = crate::sack::DUP_THRESH as u32;
        let segs = outstanding.div_ceil(mss) as u32;
        if segs < 4 && nothing_new {
            dup_thresh = dup_thresh.min(segs.saturating_sub(1)).max(1);
        }
        self.dup_acks >= dup_thresh || (sack_ok && self.scoreboard.is_lost(una, mss))
    }

    /// Enters recovery (SACK-based when `sack_ok`, else NewReno) for the
    /// data up to `max`, telling the controller of the congestion event.
    pub(super) fn enter(
        &mut self,
        now: Instant,
        sack_ok: bool,
        una: SeqNumber,
        max: SeqNumber,
        mss: usize,
        flight: usize,
    ) {
        self.mode = Some(if sack_ok {
            Recovery::Sack
        } else {
            Recovery::NewReno
        });
        self.recovery_point = max;
        self.cc.on_congestion_event(now, flight);
        self.high_rxt = una;
        self.lost_until = if sack_ok { una } else { (una + mss).min(max) };
        self.rxt_head = true;
    }

    /// RFC 6675 5.1 after an RTO: recovery ends; none starts again before
    /// RecoveryPoint (`max`); everything not SACKed is resent, starting
    /// with SND.UNA whatever the scoreboard says (the receiver may have
    /// reneged, RFC 2018 8). A second timeout of the same data (not
    /// `first`) forgets the scoreboard altogether.
    pub(super) fn on_rto(&mut self, first: bool, una: SeqNumber, max: SeqNumber) {
        self.cc.on_rto(max - una, first);
        self.mode = None;
        self.recovery_point = max;
        self.lost_until = max;
        self.high_rxt = una;
        self.rxt_head = true;
        self.dup_acks = 0;
        self.dup_sacked = 0;
        if !first {
            self.scoreboard.clear();
        }
    }

    /// A backup takes the connection over (`checkpoint.rs`): whatever of
    /// `una`..`max` the dead primary sent, all of it not SACKed goes
    /// again, the head at once, as after an RTO (and no recovery starts
    /// before `max`: our own resends draw duplicate ACKs). The controller
    /// restarts as after idle (RFC 5681 4.1: cwnd at most the initial
    /// window, ssthresh kept), not as after a loss: nothing says the path
    /// lost anything. No timed segment: what it timed may go again (Karn).
    pub(super) fn on_take_over(&mut self, una: SeqNumber, max: SeqNumber) {
        self.cc.on_idle_restart();
        self.mode = None;
        self.recovery_point = max;
        self.lost_until = max;
        self.high_rxt = una;
        self.rxt_head = una < max;
        self.dup_acks = 0;
        self.dup_sacked = 0;
        self.rtt_sample = None;
    }

    /// The peer's window closed under data in flight (`una`..`max`): it
    /// will be dropped beyond the window; resend it all when it opens.
    pub(super) fn on_window_closed(&mut self, una: SeqNumber, max: SeqNumber) {
        self.lost_until = max;
        self.high_rxt = una;
    }

    /// An RTT sample from the timed segment, if `ack` covers it.
    pub(super) fn sample_timed_segment(&mut self, now: Instant, ack: SeqNumber) {
        if let Some((end, sent_at)) = self.rtt_sample {
            if ack >= end {
                self.rtt.on_sample(now.saturating_duration_since(sent_at));
                self.rtt_sample = None;
            }
        }
    }
}

impl Connection {
    /// Retransmissions (their count or their total time) ran out, or
    /// another limit did: RST and CLOSED(`reason`).
    pub(super) fn give_up(&mut self, reason: CloseReason) {
        let ack = (self.state != State::SynSent).then_some(self.rcv.nxt);
        self.replies.rst_pending = Some(self.rst_segment(self.snd.max, ack));
        self.enter_closed(reason);
    }

    /// RFC 6298 5.4-5.6 and RFC 5681 3.1: resend from SND.UNA with a
    /// doubled RTO and cwnd = 1 MSS, or give up: after
    /// `max_retransmissions` (`syn_retransmissions` in the handshake), or
    /// once `total_retransmission_time` has passed since the first
    /// timeout without progress (RFC 9293 3.8.3's R2 as a time).
    pub(super) fn on_retransmit_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::Closed | State::TimeWait) || self.snd.una == self.snd.max {
            return;
        }
        let limit = match self.state {
            State::SynSent | State::SynReceived => self.cfg.syn_retransmissions,
            _ => self.cfg.max_retransmissions,
        };
        let stalled_since = *self.rec.stalled_since.get_or_insert(now);
        let give_up_at = self
            .cfg
            .total_retransmission_time
            .and_then(|t| stalled_since.checked_add(t));
        if self.rec.rtt.backoffs() >= limit || give_up_at.is_some_and(|at| now >= at) {
            self.give_up(CloseReason::TimedOut);
            return;
        }
        let first = self.rec.rtt.backoffs() == 0;
        self.timers.stop(Timer::LossProbe);
        self.rack.tlp_pending = false;
        self.rec.rtt.back_off();
        self.rec.rtt_sample = None; // Karn: never time a retransmitted segment
        self.stats.retransmissions += 1;
        if matches!(self.state, State::SynSent | State::SynReceived) {
            self.snd.nxt = self.snd.iss;
        } else {
            self.rec.on_rto(first, self.snd.una, self.snd.max);
            self.rack.forget_retransmissions();
            self.timers.stop(Timer::Reorder);
        }
        // The total time runs out between two backoffs: wake up then.
        let next = now + self.rec.rtt.rto();
        self.timers.set(
            Timer::Retransmit,
            give_up_at.map_or(next, |at| next.min(at)),
        );
    }

    /// Everything un-SACKed below this is lost
    /// ([`LossRecovery::lost_boundary`]).
    pub(super) fn lost_boundary(&self) -> SeqNumber {
        self.rec.lost_boundary(self.snd.max, self.snd.send_mss)
    }

    /// RFC 6675 SetPipe ([`LossRecovery::pipe`]), retransmissions RACK
    /// found lost included.
    pub(super) fn pipe(&self) -> usize {
        let rack_lost = self.rack.lost_bytes(self.snd.una, &self.rec.scoreboard);
        self.rec
            .pipe(self.snd.una, self.snd.max, self.snd.send_mss, rack_lost)
    }

    /// RFC 6675 NextSeg rule 1 (and the RTO / NewReno equivalents): the
    /// first lost, un-SACKed, not yet retransmitted segment, if cwnd has
    /// room for it (or it is the one fast retransmit must send).
    pub(super) fn next_retransmission(
        &mut self,
        now: Instant,
        spare: &mut Vec<u8>,
    ) -> Option<Segment> {
        if !self.is_sending_state() || self.snd.una == self.snd.max || self.snd.wnd == 0 {
            self.rec.rxt_head = false;
            return None;
        }
        self.rack.drop_repaired(self.snd.una, &self.rec.scoreboard);
        let (start, end, rack) = self.retransmission_range()?;
        let len = (end - start).min(self.snd.send_mss);
        if !self.rec.rxt_head && self.rec.cc.window().saturating_sub(self.pipe()) < len {
            return None;
        }
        self.rec.rxt_head = false;
        let data_end = self.snd.buf.end();
        let payload_len = len.min(data_end.distance_from(start));
        let fin = len > payload_len && self.snd.fin_seq == Some(start + payload_len);
        let seq_len = payload_len + fin as usize;
        if seq_len == 0 {
            if rack {
                self.rack.lost_rxt.pop_front();
            }
            return None;
        }
        if rack {
            if let Some(front) = self.rack.lost_rxt.front_mut() {
                front.0 = start + seq_len;
            }
        } else {
            self.rec.high_rxt = self.rec.high_rxt.max(start + seq_len);
        }
        let seg = self.send_retransmission(now, start, payload_len, fin, spare);
        if self.rec.mode.is_some() {
            // The last hole may just have been resent: from now on only
            // its ACK can move us, so guard it with a probe.
            self.arm_loss_probe(now);
        }
        Some(seg)
    }

    /// Which range to resend next: the head at SND.UNA when it is due,
    /// else the first retransmission RACK found lost (`true`), else the
    /// first hole below the loss boundary not yet retransmitted.
    fn retransmission_range(&self) -> Option<(SeqNumber, SeqNumber, bool)> {
        let (una, max) = (self.snd.una, self.snd.max);
        if self.rec.rxt_head {
            let end = self
                .rec
                .scoreboard
                .hole_from(una, max)
                .map_or(max, |(s, e)| if s == una { e } else { s });
            return Some((una, end.max(una + 1).min(max), false));
        }
        if let Some(&(s, e)) = self.rack.lost_rxt.front() {
            let (s, e) = self.rec.scoreboard.hole_from(s.max(una), e)?;
            return Some((s, e, true));
        }
        let from = self.rec.high_rxt.max(una);
        let boundary = self.lost_boundary();
        if from >= boundary {
            return None;
        }
        let (s, e) = self.rec.scoreboard.hole_from(from, max)?;
        (s < boundary).then_some((s, e, false))
    }

    /// Sends `payload_len` bytes from `start` again (and the FIN if
    /// `fin`): logged for RACK, never timed (Karn), counted.
    fn send_retransmission(
        &mut self,
        now: Instant,
        start: SeqNumber,
        payload_len: usize,
        fin: bool,
        spare: &mut Vec<u8>,
    ) -> Segment {
        let seq_len = payload_len + fin as usize;
        let data_end = self.snd.buf.end();
        self.rack.record_retransmission(start, start + seq_len, now);
        self.rec.rtt_sample = None; // Karn
        self.count_retransmission();
        let seg = self.data_segment(now, start, payload_len, fin, data_end, spare);
        self.on_sent(now, start, seq_len, payload_len);
        seg
    }

    /// True while a SACK recovery has resent every hole it knows to be
    /// lost: nothing but the ACKs of those retransmissions can make
    /// progress, and if the last of them (or its retransmission) is
    /// lost, only a timer can.
    pub(super) fn recovery_tail(&self) -> bool {
        self.rec.at_tail(
            self.snd.una,
            self.snd.max,
            self.snd.send_mss,
            self.rack.lost_rxt.is_empty(),
        )
    }

    /// RFC 8985 7: a probe is worth sending in the open state (no
    /// recovery running), with SACK (so its ACK tells what is missing),
    /// data outstanding and no probe already out. We also probe at the
    /// tail of a SACK recovery ([`Connection::recovery_tail`]): when the
    /// lone cumulative ACK of the last retransmission is lost, or that
    /// retransmission is, the probe's ACK (or SACK, which lets RACK see
    /// the retransmission lost) ends the wait instead of an RTO.
    pub(super) fn tlp_allowed(&self) -> bool {
        self.opt.sack_ok
            && self.is_sending_state()
            && (self.rec.mode.is_none() || self.recovery_tail())
            && self.rec.lost_until <= self.snd.una
            && self.snd.una < self.snd.max
            && self.snd.wnd > 0
            && !self.rack.tlp_out
            && self.rec.rtt.backoffs() == 0
    }

    /// RFC 8985 7.2: arm the probe timer at PTO = 2 * SRTT plus
    /// [`MIN_PTO`] of slack (as Linux; a lone segment adds the peer's
    /// worst-case delayed ACK instead), when that is earlier than the RTO.
    pub(super) fn arm_loss_probe(&mut self, now: Instant) {
        self.timers.stop(Timer::LossProbe);
        let Some(srtt) = self.rec.rtt.srtt() else {
            return;
        };
        if !self.tlp_allowed() {
            return;
        }
        let mut pto = srtt * 2;
        if self.snd.max - self.snd.una <= self.snd.send_mss {
            pto += Duration::from_millis(200);
        } else {
            pto += MIN_PTO;
        }
        if pto < self.rec.rtt.rto() {
            self.timers.set(Timer::LossProbe, now + pto);
        }
    }

    /// RFC 8985 7.3: one probe segment; the RTO is restarted after it.
    ///
    /// The RFC prefers a new segment when the window allows. We resend
    /// the last segment sent instead (the RFC's other choice): measured
    /// against Linux, a receiver whose window is not advancing holds the
    /// ACK of in-order data until its delayed-ACK timer (40 ms or more),
    /// so a new-data probe often stalls as long, while a duplicate is
    /// answered at once (RFC 5681 4.2), with SACK or D-SACK telling what
    /// arrived. At the tail of a recovery the probe is the segment at
    /// SND.UNA instead.
    pub(super) fn loss_probe(&mut self, now: Instant, spare: &mut Vec<u8>) -> Option<Segment> {
        if !self.tlp_allowed() {
            return None;
        }
        let seg = if self.rec.mode.is_some() {
            // At the tail of a recovery the probe is the hole at SND.UNA
            // again: if its retransmission was lost this repairs it, and
            // if only the ACK was lost the duplicate draws an immediate
            // ACK.
            self.rec.rxt_head = true;
            self.next_retransmission(now, spare)?
        } else {
            let outstanding = self.snd.max - self.snd.una;
            let start = self.snd.max - outstanding.min(self.snd.send_mss);
            let data_end = self.snd.buf.end();
            let payload_len = data_end.distance_from(start).min(self.snd.max - start);
            let fin = self
                .snd
                .fin_seq
                .is_some_and(|f| f >= start && f < self.snd.max);
            if payload_len + fin as usize == 0 {
                return None;
            }
            self.send_retransmission(now, start, payload_len, fin, spare)
        };
        self.rack.tlp_out = true;
        self.timers.stop(Timer::LossProbe);
        self.timers.set(Timer::Retransmit, now + self.rec.rtt.rto());
        Some(seg)
    }

    /// RFC 8985 6.2 steps 1-2 ([`RackTlp::on_delivered`]): the bytes this
    /// ACK reports delivered are the top of each SACK block and the byte
    /// below the cumulative ACK.
    pub(super) fn rack_update(&mut self, now: Instant, seg: &Segment, ack: SeqNumber) {
        let mut tops: [Option<SeqNumber>; 5] = [None; 5];
        for (i, &(l, r)) in seg.options.sack_blocks.iter().take(4).enumerate() {
            if l < r && r <= self.snd.max && r > ack {
                tops[i] = Some(r - 1);
            }
        }
        if ack > self.snd.una && ack <= self.snd.max {
            tops[4] = Some(ack - 1);
        }
        self.rack.on_delivered(now, tops.into_iter().flatten());
    }

    /// RFC 8985 6.2 step 5 for retransmissions (see [`RackTlp::detect_lost`]).
    /// Otherwise the reordering timer waits for the moment the next one
    /// becomes lost. The retransmission at SND.UNA is resent at once;
    /// others when cwnd allows.
    pub(super) fn rack_detect_lost_retransmissions(&mut self, now: Instant) {
        let srtt = self.rec.rtt.srtt();
        let Some(found) = self.rack.detect_lost(
            now,
            self.snd.una,
            &self.rec.scoreboard,
            self.opt.sack_ok,
            srtt,
        ) else {
            return;
        };
        self.rec.rxt_head |= found.head;
        match found.deadline {
            Some(d) => self.timers.set(Timer::Reorder, d),
            None => self.timers.stop(Timer::Reorder),
        }
    }

    /// RFC 5681 3.2 / RFC 6582 3.2 step 2 / RFC 6675 5: enter loss
    /// recovery on the third duplicate ACK, or (with SACK) as soon as the
    /// scoreboard says the segment at SND.UNA is lost.
    pub(super) fn maybe_enter_recovery(&mut self, now: Instant, flight: usize) {
        let allowed = self.rec.mode.is_none()
            && self.is_sending_state()
            && self.snd.una < self.snd.max
            && self.snd.una >= self.rec.recovery_point
            && self.rec.lost_until <= self.snd.una;
        if !allowed {
            return;
        }
        let (una, max, mss) = (self.snd.una, self.snd.max, self.snd.send_mss);
        let nothing_new =
            self.snd.buf.end() <= self.snd.nxt || (una + self.snd.wnd) <= self.snd.nxt;
        let sack = self.opt.sack_ok;
        if !self
            .rec
            .loss_detected(sack, una, max - una, mss, nothing_new)
        {
            return;
        }
        self.rec.enter(now, sack, una, max, mss, flight);
        self.stats.fast_retransmits += 1;
        if sack {
            self.stats.sack_recoveries += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 100;

    fn recovery(algo: crate::CongestionAlgorithm) -> LossRecovery {
        let cfg = TcpConfig {
            congestion: algo,
            ..TcpConfig::default()
        };
        LossRecovery::new(&cfg, SeqNumber(1000), MSS)
    }

    /// 1000 bytes outstanding from 1001.
    const UNA: SeqNumber = SeqNumber(1001);
    const MAX: SeqNumber = SeqNumber(2001);

    #[test]
    fn rfc6675_pipe_is_outstanding_less_sacked_and_lost() {
        let mut r = recovery(crate::CongestionAlgorithm::NewReno);
        assert_eq!(r.pipe(UNA, MAX, MSS, 0), 1000);
        // SACK 1201..1601: 400 SACKed; in SACK recovery the hole below
        // (DupThresh segments SACKed above it) is lost up to the block.
        r.scoreboard
            .insert(UNA, MAX, SeqNumber(1201), SeqNumber(1601));
        assert_eq!(r.pipe(UNA, MAX, MSS, 0), 600);
        r.enter(Instant::now(), true, UNA, MAX, MSS, 1000);
        assert_eq!(r.lost_boundary(MAX, MSS), SeqNumber(1201));
        assert_eq!(r.pipe(UNA, MAX, MSS, 0), 400);
        // Retransmitting the hole puts it back in the pipe.
        r.high_rxt = SeqNumber(1201);
        assert_eq!(r.pipe(UNA, MAX, MSS, 0), 600);
        assert_eq!(r.pipe(UNA, MAX, MSS, 50), 550, "RACK-lost retransmissions");
    }

    #[test]
    fn rfc5681_third_duplicate_ack_enters_recovery() {
        let mut r = recovery(crate::CongestionAlgorithm::NewReno);
        for i in 0..3 {
            assert!(!r.loss_detected(false, UNA, 1000, MSS, false), "after {i}");
            r.on_duplicate_ack(false, MSS, 1000);
        }
        assert!(r.loss_detected(false, UNA, 1000, MSS, false));
        assert_eq!(r.dup_sacked, 300, "NewReno inflation as pipe");
        let cwnd = r.cc.window();
        r.enter(Instant::now(), false, UNA, MAX, MSS, 1000);
        assert_eq!(r.mode, Some(Recovery::NewReno));
        assert_eq!(r.recovery_point, MAX);
        assert_eq!(r.lost_until, UNA + MSS, "one segment at SND.UNA");
        assert!(r.rxt_head);
        assert!(r.cc.window() < cwnd);
    }

    #[test]
    fn rfc5827_early_retransmit_lowers_the_threshold() {
        let mut r = recovery(crate::CongestionAlgorithm::NewReno);
        r.on_duplicate_ack(false, MSS, 300);
        assert!(!r.loss_detected(false, UNA, 300, MSS, false));
        assert!(!r.loss_detected(false, UNA, 300, MSS, true));
        r.on_duplicate_ack(false, MSS, 300);
        assert!(
            r.loss_detected(false, UNA, 300, MSS, true),
            "3 segments: 2 dup ACKs"
        );
        assert!(
            !r.loss_detected(false, UNA, 300, MSS, false),
            "new data can earn more"
        );
    }

    #[test]
    fn rfc6582_partial_ack_marks_the_next_hole_full_ack_ends_recovery() {
        let t0 = Instant::now();
        let mut r = recovery(crate::CongestionAlgorithm::NewReno);
        for _ in 0..3 {
            r.on_duplicate_ack(false, MSS, 1000);
        }
        r.enter(t0, false, UNA, MAX, MSS, 1000);
        r.rxt_head = false;
        let una = SeqNumber(1301);
        r.on_cumulative_ack(t0, una, MAX, 300, MSS, 1000);
        assert_eq!(r.mode, Some(Recovery::NewReno));
        assert_eq!((r.high_rxt, r.lost_until), (una, una + MSS));
        assert!(r.rxt_head);
        assert_eq!(r.dup_sacked, 100, "the dup ACKs it covers are gone");
        assert_eq!(r.dup_acks, 0);
        r.on_cumulative_ack(t0, MAX, MAX, 700, MSS, 700);
        assert_eq!(r.mode, None);
        assert_eq!(r.dup_sacked, 0);
    }

    #[test]
    fn cwnd_grows_only_outside_recovery() {
        let t0 = Instant::now();
        let mut r = recovery(crate::CongestionAlgorithm::NewReno);
        let w = r.cc.window();
        r.on_cumulative_ack(t0, UNA + 100, MAX, 100, MSS, w);
        assert!(r.cc.window() > w, "slow start");
        r.enter(t0, true, UNA, MAX, MSS, 1000);
        let w = r.cc.window();
        r.on_cumulative_ack(t0, UNA + 100, MAX, 100, MSS, 1000);
        assert_eq!(r.cc.window(), w);
    }

    #[test]
    fn rfc6675_rto_ends_recovery_and_a_second_one_forgets_the_scoreboard() {
        let mut r = recovery(crate::CongestionAlgorithm::Cubic);
        r.scoreboard
            .insert(UNA, MAX, SeqNumber(1201), SeqNumber(1601));
        r.enter(Instant::now(), true, UNA, MAX, MSS, 1000);
        r.on_rto(true, UNA, MAX);
        assert_eq!(r.mode, None);
        assert_eq!(
            (r.recovery_point, r.lost_until, r.high_rxt),
            (MAX, MAX, UNA)
        );
        assert!(r.rxt_head);
        assert_eq!(r.scoreboard.sacked_bytes(), 400, "kept after the first");
        assert_eq!(r.pipe(UNA, MAX, MSS, 0), 0, "everything un-SACKed is lost");
        r.on_rto(false, UNA, MAX);
        assert_eq!(r.scoreboard.sacked_bytes(), 0);
    }

    #[test]
    fn sack_recovery_tail_once_every_lost_hole_is_resent() {
        let mut r = recovery(crate::CongestionAlgorithm::Cubic);
        r.scoreboard
            .insert(UNA, MAX, SeqNumber(1201), SeqNumber(1601));
        assert!(!r.at_tail(UNA, MAX, MSS, true), "no recovery");
        r.enter(Instant::now(), true, UNA, MAX, MSS, 1000);
        r.rxt_head = false;
        assert!(
            !r.at_tail(UNA, MAX, MSS, true),
            "the hole is not resent yet"
        );
        r.high_rxt = SeqNumber(1201);
        assert!(r.at_tail(UNA, MAX, MSS, true));
        assert!(
            !r.at_tail(UNA, MAX, MSS, false),
            "a lost retransmission waits"
        );
    }

    #[test]
    fn rfc6298_timed_segment_sampled_once_acknowledged() {
        let t0 = Instant::now();
        let mut r = recovery(crate::CongestionAlgorithm::Cubic);
        r.rtt_sample = Some((SeqNumber(1101), t0));
        r.sample_timed_segment(t0 + Duration::from_millis(30), SeqNumber(1100));
        assert!(r.rtt_sample.is_some());
        r.sample_timed_segment(t0 + Duration::from_millis(40), SeqNumber(1101));
        assert_eq!(r.rtt_sample, None);
        assert_eq!(r.rtt.srtt(), Some(Duration::from_millis(40)));
    }

    #[test]
    fn closed_window_marks_the_flight_lost() {
        let mut r = recovery(crate::CongestionAlgorithm::Cubic);
        r.on_window_closed(UNA, MAX);
        assert_eq!((r.lost_until, r.high_rxt), (MAX, UNA));
        assert_eq!(r.pipe(UNA, MAX, MSS, 0), 0);
    }

    #[test]
    fn markers_follow_una_through_more_than_half_the_sequence_space() {
        let mut r = recovery(crate::CongestionAlgorithm::Cubic);
        let mut una = UNA;
        // 3 GiB without a loss, in windows of 256 KiB, across the wrap.
        for _ in 0..(3u64 << 30) / (256 << 10) {
            una = una + (256 << 10);
            r.follow_una(una);
            let max = una + (256 << 10);
            assert!(
                r.lost_boundary(max, MSS) <= una,
                "nothing outstanding is lost"
            );
            assert!(una >= r.recovery_point && una >= r.high_rxt);
        }
    }
}
