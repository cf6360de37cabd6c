//! The ACK field of an acceptable segment (RFC 9293 3.10.7.4, fifth
//! step): the SYN-RECEIVED to ESTABLISHED move, RFC 5961 ACK
//! acceptability, TS.Recent, the SACK scoreboard, SND.UNA, duplicate
//! ACKs, loss recovery and the congestion window, the send window, and
//! the state changes our FIN's ACK makes.

use super::*;
use crate::congestion::AckSample;

/// The state an ACK's [`AckSample`] is measured against, taken before the
/// ACK is applied.
pub(super) struct AckBefore {
    una: SeqNumber,
    sacked: usize,
    pipe: usize,
    newest: Option<SeqNumber>,
    /// Recoveries entered plus retransmissions found lost so far.
    losses: u64,
}

impl Connection {
    /// Fifth: the ACK field. False when the segment is done with (no ACK,
    /// an unacceptable one, or a state that takes no text).
    pub(super) fn check_ack(&mut self, now: Instant, seg: &Segment, tsval: Option<u32>) -> bool {
        let Some(ack) = seg.ack else {
            return false;
        };
        if self.state == State::SynReceived && !self.ack_establishes(seg, ack) {
            return false;
        }
        // RFC 5961 5.2: acceptable only if
        // SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT; otherwise drop it
        // and send a (rate-limited) ACK.
        if ack > self.snd.max || ack < self.snd.una - self.snd.max_wnd {
            self.challenge_ack(now);
            return false;
        }
        // RFC 7323 4.3 (R3): remember the TSval to echo, only now that the
        // whole segment, ACK included, is acceptable (as Linux's tcp_ack
        // with FLAG_UPDATE_TS_RECENT), so a blind in-window segment
        // cannot poison PAWS.
        if let Some(tsval) = tsval {
            self.opt
                .update_recent(now, tsval, seg.seq, self.rcv.last_ack_sent);
        }
        self.on_ack(now, seg, ack);
        self.close_if_pending();
        self.after_fin_acked(now)
    }

    /// SYN-RECEIVED: an ACK of our SYN establishes the connection (and
    /// sets the window); any other ACK earns an RST. True if established.
    fn ack_establishes(&mut self, seg: &Segment, ack: SeqNumber) -> bool {
        if self.snd.una < ack && ack <= self.snd.max {
            self.state = State::Established;
            let wnd = self.snd.scaled(seg.window);
            self.snd.set_window(seg.seq, ack, wnd);
            self.push_event(Event::Established);
            true
        } else {
            self.replies.invalid_rst = Some(self.rst_segment(ack, None));
            false
        }
    }

    /// close() came before the handshake completed: now that it has, the
    /// FIN follows the data.
    pub(super) fn close_if_pending(&mut self) {
        if self.state == State::Established && self.close_pending {
            self.close_pending = false;
            self.close();
        }
    }

    /// The ACK of our FIN moves FIN-WAIT-1 to FIN-WAIT-2, CLOSING to
    /// TIME-WAIT, LAST-ACK to CLOSED. False in CLOSING and LAST-ACK,
    /// which take no text.
    fn after_fin_acked(&mut self, now: Instant) -> bool {
        let fin_acked = self.snd.fin_seq.is_some_and(|f| self.snd.una > f);
        match self.state {
            State::FinWait1 if fin_acked => self.state = State::FinWait2,
            State::Closing => {
                if fin_acked {
                    self.enter_time_wait(now);
                }
                return false;
            }
            State::LastAck => {
                if fin_acked {
                    self.enter_closed(CloseReason::Normal);
                }
                return false;
            }
            _ => {}
        }
        true
    }

    /// The ACK field of an acceptable segment: SACK scoreboard, SND.UNA,
    /// duplicate ACKs, loss recovery, congestion window, send window.
    pub(super) fn on_ack(&mut self, now: Instant, seg: &Segment, ack: SeqNumber) {
        let flight_before = self.snd.max - self.snd.una;
        let seg_wnd = self.snd.scaled(seg.window);
        let window_same = seg_wnd == self.snd.wnd;
        self.snd.persist.unanswered = 0;
        let before = self.ack_before(seg, ack);

        if self.opt.sack_ok {
            self.rack_update(now, seg, ack);
        }
        let newly_sacked = self.take_sack_blocks(seg, ack);

        let ack_advanced = ack > self.snd.una;
        if ack_advanced {
            let acked = ack - self.snd.una;
            let tsecr = seg.options.timestamps.map(|t| t.1);
            self.on_ack_advance(now, ack, tsecr);
            let (una, max, mss) = (self.snd.una, self.snd.max, self.snd.send_mss);
            self.rec
                .on_cumulative_ack(now, una, max, acked, mss, flight_before);
        } else if ack == self.snd.una && self.snd.una < self.snd.max {
            // RFC 5681 2 / RFC 6675 2: a duplicate ACK.
            let dup = if self.opt.sack_ok {
                newly_sacked > 0
            } else {
                seg.payload.is_empty() && seg.control == Control::None && window_same
            };
            if dup {
                self.stats.dup_acks += 1;
                let outstanding = self.snd.outstanding();
                self.rec
                    .on_duplicate_ack(self.opt.sack_ok, self.snd.send_mss, outstanding);
            }
        }
        self.snd.update_window(seg.seq, ack, seg_wnd);

        self.rack_detect_lost_retransmissions(now);
        self.maybe_enter_recovery(now, flight_before);
        if let Some(before) = before {
            self.sample_ack(now, before);
        }
        self.after_ack_timers(now, ack_advanced);
    }

    /// What an [`AckSample`] needs from before the ACK is applied; None
    /// when the controller reads no samples. The newest byte the ACK
    /// reports delivered is taken from the SACK blocks' tops and the byte
    /// below the cumulative ACK, as RACK does, skipping retransmitted
    /// ones.
    pub(super) fn ack_before(&self, seg: &Segment, ack: SeqNumber) -> Option<AckBefore> {
        self.rec.rate.as_ref()?;
        let (una, max) = (self.snd.una, self.snd.max);
        let mut newest: Option<SeqNumber> = None;
        let mut consider = |top: SeqNumber| {
            if !self.rack.rxt_log.covers(top) && newest.is_none_or(|n| top > n) {
                newest = Some(top);
            }
        };
        if self.opt.sack_ok {
            for &(l, r) in &seg.options.sack_blocks {
                if l < r && r <= max && r > ack {
                    consider(r - 1);
                }
            }
        }
        if ack > una && ack <= max {
            consider(ack - 1);
        }
        Some(AckBefore {
            una,
            sacked: self.rec.scoreboard.sacked_bytes(),
            pipe: self.pipe(),
            newest,
            losses: self.stats.fast_retransmits + self.rack.lost_retransmits,
        })
    }

    /// Hands the controller the [`AckSample`] of the ACK just applied:
    /// what it delivered (cumulatively and by SACK), the flight before
    /// and after, the recovery state and the delivery-rate sample.
    pub(super) fn sample_ack(&mut self, now: Instant, before: AckBefore) {
        let una = self.snd.una;
        let acked = una.distance_from(before.una);
        let sacked = self.rec.scoreboard.sacked_bytes();
        let delivered = (acked + sacked).saturating_sub(before.sacked);
        let inflight = self.pipe();
        let in_recovery = self.rec.mode.is_some() || una < self.rec.recovery_point;
        let lost = self.stats.fast_retransmits + self.rack.lost_retransmits > before.losses;
        let Some(r) = self.rec.rate.as_mut() else {
            return;
        };
        let rate = r.on_ack(now, delivered, before.newest, una);
        let sample = AckSample {
            now,
            delivered,
            total_delivered: r.delivered(),
            prior_inflight: before.pipe,
            inflight,
            lost,
            in_recovery,
            rate,
        };
        self.rec.cc.on_ack_sample(&sample);
    }

    /// The segment's SACK blocks into the scoreboard (with SACK on);
    /// returns the bytes newly SACKed. Blocks below the ACK (D-SACK) or
    /// beyond what we sent are ignored; the rest is clipped to
    /// [ACK, SND.MAX).
    fn take_sack_blocks(&mut self, seg: &Segment, ack: SeqNumber) -> usize {
        if !self.opt.sack_ok {
            return 0;
        }
        let max = self.snd.max;
        let mut newly_sacked = 0;
        for &(l, r) in &seg.options.sack_blocks {
            if l < r && r <= max && r > ack {
                newly_sacked += self.rec.scoreboard.insert(ack, max, l, r);
            }
        }
        newly_sacked
    }

    /// After an ACK: the loss probe is re-armed (or stopped), and a window
    /// that closed under data in flight stops the RTO: that data will be
    /// dropped beyond the window, so it is resent when the window opens,
    /// probing meanwhile instead of timing out.
    fn after_ack_timers(&mut self, now: Instant, ack_advanced: bool) {
        if !self.tlp_allowed() {
            self.timers.stop(Timer::LossProbe);
        } else if ack_advanced || !self.timers.is_running(Timer::LossProbe) {
            self.arm_loss_probe(now);
        }
        if self.snd.wnd == 0 && self.snd.una < self.snd.max && self.is_sending_state() {
            self.rec.on_window_closed(self.snd.una, self.snd.max);
            self.timers.stop(Timer::Retransmit);
        }
    }

    /// SND.UNA moves forward to `ack` (RFC 9293 3.10.7.4, ESTABLISHED):
    /// the buffer releases it, the RTT is sampled, the RTO restarts or
    /// stops, and the application hears of new send space.
    pub(super) fn on_ack_advance(&mut self, now: Instant, ack: SeqNumber, tsecr: Option<u32>) {
        let released = self.snd.advance(ack);
        self.rec.follow_una(ack);
        self.last_progress = now;
        self.rec.scoreboard.advance(ack);
        self.rack.forget_acked(ack);
        // RTT: from the echoed timestamp when negotiated (RFC 7323 4.1),
        // else from the one timed segment (RFC 6298, Karn).
        match tsecr {
            Some(ecr) if self.opt.ts_ok && ecr != 0 => {
                if let Some(rtt) = self.opt.rtt_from_echo(now, ecr, self.cfg.rto_max) {
                    self.rec.rtt.on_sample(rtt);
                }
            }
            _ => self.rec.sample_timed_segment(now, ack),
        }
        self.rec.rtt.reset_backoff();
        self.rec.stalled_since = None;
        self.rack.tlp_out = false;
        // RFC 6298 5.2 / 5.3.
        if self.snd.una == self.snd.max {
            self.timers.stop(Timer::Retransmit);
            self.timers.stop(Timer::LossProbe);
        } else {
            self.timers.set(Timer::Retransmit, now + self.rec.rtt.rto());
        }
        if self.snd.want_writable && released > 0 && self.snd.buf.free() > 0 {
            self.snd.want_writable = false;
            self.push_event(Event::Writable);
        }
    }
}
