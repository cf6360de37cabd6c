//! Receiving (RFC 9293 section 3.10.7): a segment's acceptability, RST and
//! SYN checks (RFC 5961, RFC 1337, RFC 6191), text, ACK processing and the
//! peer's FIN.

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
    /// RFC 5961 7: a challenge ACK, at most `challenge_ack_limit` per
    /// second, so a blind attacker cannot use us as an amplifier or learn
    /// from our ACK rate.
    pub(super) fn challenge_ack(&mut self, now: Instant) {
        let fresh = self
            .challenge_window
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
        if !fresh {
            self.challenge_window = Some(now);
            self.challenge_count = 0;
        }
        if self.challenge_count < self.cfg.challenge_ack_limit {
            self.challenge_count += 1;
            self.stats.challenge_acks += 1;
            self.invalid_ack = true;
        }
    }

    /// Handles one segment of this connection (RFC 9293 3.10.7), every
    /// reply to an invalid segment allowed.
    pub fn on_segment(&mut self, now: Instant, seg: &Segment) -> Disposition {
        self.on_segment_limited(now, seg, &mut Unlimited)
    }

    /// Like [`Connection::on_segment`], but a reply that only answers an
    /// invalid segment (an ACK for an unacceptable or PAWS-failed segment,
    /// a challenge ACK, an RST for a bad ACK) is sent only if `limiter`
    /// allows it: a processor shares one budget among its connections.
    pub fn on_segment_limited(
        &mut self,
        now: Instant,
        seg: &Segment,
        limiter: &mut dyn ReplyLimiter,
    ) -> Disposition {
        self.stats.segments_in += 1;
        match self.state {
            State::Closed => {}
            State::SynSent => self.on_segment_syn_sent(now, seg),
            State::TimeWait if seg.control == Control::Syn && seg.ack.is_none() => {
                // RFC 6191: a SYN may reopen a connection in TIME-WAIT;
                // one that may not is dropped without a word.
                if self.syn_may_reincarnate(seg) {
                    return Disposition::Reincarnate;
                }
            }
            _ => {
                self.on_segment_synchronized(now, seg);
                self.update_persist(now);
            }
        }
        self.settle_invalid_replies(now, limiter);
        self.debug_check();
        Disposition::Handled
    }

    /// RFC 6191 2: when the old incarnation used timestamps and the SYN
    /// offers them, a newer TSval (or the same TSval and a higher sequence
    /// number) proves the SYN is not an old duplicate; otherwise its
    /// sequence number must lie above RCV.NXT (RFC 9293 3.10.7.4).
    pub(super) fn syn_may_reincarnate(&self, syn: &Segment) -> bool {
        let syn_ts = syn
            .options
            .timestamps
            .map(|t| t.0)
            .filter(|_| self.cfg.timestamps);
        match (self.ts_ok && self.ts_recent_at.is_some(), syn_ts) {
            (true, Some(tsval)) => {
                ts_before(self.ts_recent, tsval)
                    || (tsval == self.ts_recent && syn.seq > self.rcv_nxt)
            }
            _ => syn.seq > self.rcv_nxt,
        }
    }

    /// The replies the segment just handled earned because it was invalid
    /// go out only if the limiter allows (an ACK already due for other
    /// reasons goes anyway).
    pub(super) fn settle_invalid_replies(&mut self, now: Instant, limiter: &mut dyn ReplyLimiter) {
        if let Some(rst) = self.invalid_rst.take() {
            if limiter.allow(now) {
                self.rst_pending = Some(rst);
            } else {
                self.stats.replies_limited += 1;
            }
        }
        if std::mem::take(&mut self.invalid_ack) && !self.ack_pending && self.is_synchronized() {
            if limiter.allow(now) {
                self.ack_pending = true;
            } else {
                self.stats.replies_limited += 1;
            }
        }
    }

    /// RFC 9293 3.10.7.3.
    pub(super) fn on_segment_syn_sent(&mut self, now: Instant, seg: &Segment) {
        if let Some(ack) = seg.ack {
            if ack <= self.iss || ack > self.snd_max {
                if seg.control != Control::Rst {
                    self.invalid_rst = Some(self.rst_segment(ack, None));
                }
                return;
            }
        }
        match seg.control {
            // Acceptable only if it acknowledges our SYN (checked above).
            Control::Rst if seg.ack.is_some() => self.enter_closed(CloseReason::Reset),
            Control::Syn => {
                self.irs = seg.seq;
                self.rcv_nxt = seg.seq + 1;
                self.rcv_adv = self.rcv_nxt;
                // Each option we offered is used only if the peer's SYN
                // carries it too.
                match seg.options.window_scale {
                    Some(ws) => self.snd_wscale = ws,
                    None => {
                        self.rcv_wscale = 0;
                        self.syn_wscale = None;
                    }
                }
                self.sack_ok &= seg.options.sack_permitted;
                match (self.ts_ok, seg.options.timestamps) {
                    (true, Some((tsval, _))) => {
                        self.ts_recent = tsval;
                        self.ts_recent_at = Some(now);
                    }
                    _ => self.ts_ok = false,
                }
                self.apply_syn_options(&seg.options);
                self.snd_wnd = seg.window as usize;
                self.max_snd_wnd = self.snd_wnd;
                self.snd_wl1 = seg.seq;
                match seg.ack {
                    Some(ack) => {
                        self.snd_wl2 = ack;
                        self.state = State::Established;
                        let tsecr = seg.options.timestamps.map(|t| t.1);
                        self.on_ack_advance(now, ack, tsecr);
                        self.push_event(Event::Established);
                        self.ack_pending = true;
                        if self.close_pending {
                            self.close_pending = false;
                            self.close();
                        }
                    }
                    None => {
                        // Simultaneous open: answer with SYN|ACK (same ISS).
                        self.state = State::SynReceived;
                        self.snd_wl2 = self.iss;
                        self.snd_nxt = self.iss;
                    }
                }
            }
            _ => {}
        }
    }

    /// RFC 9293 3.10.7.4: every state from SYN-RECEIVED to TIME-WAIT.
    pub(super) fn on_segment_synchronized(&mut self, now: Instant, seg: &Segment) {
        // A retransmitted SYN: our SYN|ACK was lost; send it again.
        if self.state == State::SynReceived
            && seg.control == Control::Syn
            && seg.ack.is_none()
            && seg.seq == self.irs
        {
            self.snd_nxt = self.iss;
            return;
        }

        // RFC 7323 5.3 R1 (PAWS): a segment whose TSval is older than
        // TS.Recent is an old duplicate: ACK it and drop it. RSTs are
        // exempt (RFC 5961 handles them).
        let tsval = if self.ts_ok {
            seg.options.timestamps.map(|t| t.0)
        } else {
            None
        };
        if let (Some(tsval), Some(at), true) =
            (tsval, self.ts_recent_at, seg.control != Control::Rst)
        {
            if now.saturating_duration_since(at) > PAWS_IDLE {
                self.ts_recent_at = None; // R2: TS.Recent too old to trust
            } else if ts_before(tsval, self.ts_recent) {
                self.stats.paws_rejected += 1;
                self.invalid_ack = true;
                return;
            }
        }

        // First: sequence number acceptability, against RCV.WND: the window
        // we advertised (never more than the free buffer space).
        let wnd = self.rcv_wnd();
        if !acceptable(seg.seq, seg.seg_len(), self.rcv_nxt, wnd) {
            // A zero window still takes ACKs and RSTs at RCV.NXT.
            let zero_window_allowance = wnd == 0 && seg.seq == self.rcv_nxt;
            if !zero_window_allowance {
                // A retransmission of what we have (our ACK was lost) is
                // answered like data; anything else only within the
                // caller's budget for invalid segments.
                let end = seg.seq + seg.seg_len();
                let recent_duplicate =
                    end <= self.rcv_nxt && seg.seq >= self.rcv_nxt - self.recv_buf.capacity();
                if seg.control != Control::Rst && recent_duplicate {
                    self.ack_pending = true;
                } else if seg.control != Control::Rst {
                    self.invalid_ack = true;
                }
                if self.state == State::TimeWait && seg.control == Control::Fin {
                    // A retransmitted FIN: re-ACK and restart 2*MSL.
                    self.timers.set(Timer::TimeWait, now + self.cfg.time_wait);
                }
                return;
            }
        }

        // Trim the text to the window: the front below RCV.NXT was received
        // already (never deliver twice), the back beyond the window is not
        // ours to keep.
        let mut seq = seg.seq;
        let mut text: &[u8] = &seg.payload;
        let mut fin = seg.control == Control::Fin;
        let mut ack_now = false;
        if seq < self.rcv_nxt {
            let skip = self.rcv_nxt - seq;
            text = text.get(skip..).unwrap_or_default();
            seq = self.rcv_nxt;
            // Part of it arrived before: our ACK was probably lost.
            ack_now = !seg.payload.is_empty();
        }
        let room = (self.rcv_nxt + wnd).distance_from(seq);
        if text.len() > room {
            // Tell the peer where the window ends (this also answers a
            // zero-window probe that carries a byte).
            text = &text[..room];
            fin = false;
            ack_now = true;
        }

        // Second: RST (RFC 5961 3.2): only an RST exactly at RCV.NXT
        // resets; any other in-window RST earns a challenge ACK. In
        // TIME-WAIT an RST is ignored (RFC 1337: it would cut TIME-WAIT
        // short and let old duplicates into a new incarnation).
        if seg.control == Control::Rst && self.state == State::TimeWait {
            return;
        }
        if seg.control == Control::Rst {
            if seg.seq == self.rcv_nxt {
                self.enter_closed(CloseReason::Reset);
            } else {
                self.challenge_ack(now);
            }
            return;
        }

        // Fourth: SYN in a synchronized state -> challenge ACK (RFC 5961 4.2).
        if seg.control == Control::Syn {
            self.challenge_ack(now);
            return;
        }

        // Fifth: ACK.
        let Some(ack) = seg.ack else {
            return;
        };
        if self.state == State::SynReceived {
            if self.snd_una < ack && ack <= self.snd_max {
                self.state = State::Established;
                self.snd_wnd = (seg.window as usize) << self.snd_wscale;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = ack;
                self.push_event(Event::Established);
            } else {
                self.invalid_rst = Some(self.rst_segment(ack, None));
                return;
            }
        }
        // RFC 5961 5.2: acceptable only if
        // SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT; otherwise drop it
        // and send a (rate-limited) ACK.
        if ack > self.snd_max || ack < self.snd_una - self.max_snd_wnd {
            self.challenge_ack(now);
            return;
        }
        // RFC 7323 4.3 (R3): remember the TSval to echo, from the segment
        // that covers the left edge of what we will ACK next; only now
        // that the whole segment, ACK included, is acceptable (as Linux's
        // tcp_ack with FLAG_UPDATE_TS_RECENT), so a blind in-window segment
        // cannot poison PAWS.
        if let Some(tsval) = tsval {
            if !ts_before(tsval, self.ts_recent) && seg.seq <= self.last_ack_sent {
                self.ts_recent = tsval;
                self.ts_recent_at = Some(now);
            }
        }
        self.on_ack(now, seg, ack);

        if self.state == State::Established && self.close_pending {
            self.close_pending = false;
            self.close();
        }

        let fin_acked = self.fin_seq.is_some_and(|f| self.snd_una > f);
        match self.state {
            State::FinWait1 if fin_acked => self.state = State::FinWait2,
            State::Closing => {
                if fin_acked {
                    self.enter_time_wait(now);
                }
                return;
            }
            State::LastAck => {
                if fin_acked {
                    self.enter_closed(CloseReason::Normal);
                }
                return;
            }
            _ => {}
        }

        // Seventh: segment text.
        let receiving = matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        );
        if !receiving {
            return;
        }
        if !text.is_empty() {
            self.on_text(now, seq, text, ack_now);
        } else if ack_now {
            self.ack_pending = true;
        }

        // Eighth: FIN, once everything before it has arrived.
        if fin && self.peer_fin.is_none() {
            self.peer_fin = Some(seq + text.len());
        }
        if self.peer_fin == Some(self.rcv_nxt) && !self.peer_fin_received {
            self.on_peer_fin(now);
        }
    }

    /// Stores in-window text and decides when to ACK it: at once for
    /// out-of-order data, data that fills a gap, or a partial duplicate
    /// (RFC 5681 4.2, RFC 9293 3.10.7.4); for in-order data at the second
    /// full-sized segment or when the delayed-ACK timer fires (RFC 1122
    /// 4.2.3.2). PSH does not force an ACK (as in Linux): an application
    /// that answers a request sends the ACK on its response.
    pub(super) fn on_text(&mut self, now: Instant, seq: SeqNumber, text: &[u8], ack_now: bool) {
        let before = self.rcv_nxt;
        let had_held = self.recv_buf.has_held();
        self.rcv_mss = self
            .rcv_mss
            .max(text.len().min(self.cfg.mss(self.tuple.is_ipv6()) as usize));
        self.rcv_nxt = self.recv_buf.insert(self.rcv_nxt, seq, text);
        if self.rcv_nxt != before {
            self.last_progress = now;
            self.stats.bytes_in += (self.rcv_nxt - before) as u64;
            self.push_event(Event::Readable);
            self.sack_report.prune(self.rcv_nxt);
        }
        if seq != before {
            // Out of order: a duplicate ACK at once, reporting the block.
            if let Some(block) = self.recv_buf.held_block(seq) {
                self.sack_report.report(block);
            }
            self.ack_pending = true;
        } else if had_held
            || ack_now
            || self.cfg.delayed_ack.is_zero()
            || self.rcv_nxt.distance_from(self.last_ack_sent) >= 2 * self.rcv_mss
        {
            self.ack_pending = true;
        } else {
            self.timers
                .set_if_idle(Timer::DelayedAck, now + self.cfg.delayed_ack);
        }
    }

    /// The ACK field of an acceptable segment (RFC 9293 3.10.7.4 fifth
    /// step): SACK scoreboard, SND.UNA, duplicate ACKs, loss recovery,
    /// congestion window, send window.
    pub(super) fn on_ack(&mut self, now: Instant, seg: &Segment, ack: SeqNumber) {
        let flight_before = self.snd_max - self.snd_una;
        let seg_wnd = (seg.window as usize) << self.snd_wscale;
        let window_same = seg_wnd == self.snd_wnd;
        self.persist_unanswered = 0;
        let before = self.ack_before(seg, ack);

        if self.sack_ok {
            self.rack_update(now, seg, ack);
        }
        let mut newly_sacked = 0;
        if self.sack_ok {
            for &(l, r) in &seg.options.sack_blocks {
                // Blocks below the ACK (D-SACK) or beyond what we sent are
                // ignored; the rest is clipped to [ACK, SND.MAX).
                if l < r && r <= self.snd_max && r > ack {
                    newly_sacked += self.scoreboard.insert(ack, self.snd_max, l, r);
                }
            }
        }

        let ack_advanced = ack > self.snd_una;
        if ack_advanced {
            let acked = ack - self.snd_una;
            let tsecr = seg.options.timestamps.map(|t| t.1);
            self.on_ack_advance(now, ack, tsecr);
            self.dup_acks = 0;
            match self.recovery {
                Some(_) if ack >= self.recovery_point => {
                    // Full ACK: recovery is over; cwnd is ssthresh already.
                    self.recovery = None;
                    self.dup_sacked = 0;
                }
                Some(Recovery::NewReno) => {
                    // RFC 6582 3.2 (partial ACK): the next hole starts at
                    // SND.UNA; retransmit it now. The dup ACKs it covers
                    // no longer stand for segments in the network.
                    self.dup_sacked = self
                        .dup_sacked
                        .saturating_sub(acked.saturating_sub(self.send_mss));
                    self.high_rxt = self.snd_una;
                    self.lost_until = (self.snd_una + self.send_mss).min(self.snd_max);
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
        } else if ack == self.snd_una && self.snd_una < self.snd_max {
            // RFC 5681 2 / RFC 6675 2: a duplicate ACK.
            let dup = if self.sack_ok {
                newly_sacked > 0
            } else {
                seg.payload.is_empty() && seg.control == Control::None && window_same
            };
            if dup {
                self.dup_acks += 1;
                self.stats.dup_acks += 1;
                if !self.sack_ok {
                    // RFC 3042 / 6582: each one is a segment that left.
                    self.dup_sacked =
                        (self.dup_sacked + self.send_mss).min(self.snd_max - self.snd_una);
                }
            }
        }

        // Window update (SND.WL1/WL2 keep old segments from reopening it).
        if ack >= self.snd_una
            && (self.snd_wl1 < seg.seq || (self.snd_wl1 == seg.seq && self.snd_wl2 <= ack))
        {
            self.snd_wnd = seg_wnd;
            self.max_snd_wnd = self.max_snd_wnd.max(seg_wnd);
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
        }

        self.rack_detect_lost_retransmissions(now);
        self.maybe_enter_recovery(now, flight_before);
        if let Some(before) = before {
            self.sample_ack(now, before);
        }
        if !self.tlp_allowed() {
            self.timers.stop(Timer::LossProbe);
        } else if ack_advanced || !self.timers.is_running(Timer::LossProbe) {
            self.arm_loss_probe(now);
        }

        if self.snd_wnd == 0 && self.snd_una < self.snd_max && self.is_sending_state() {
            // The window closed under data in flight: it will be dropped
            // beyond the window; resend it when the window opens, and
            // probe meanwhile instead of timing out.
            self.lost_until = self.snd_max;
            self.high_rxt = self.snd_una;
            self.timers.stop(Timer::Retransmit);
        }
    }

    /// What an [`AckSample`] needs from before the ACK is applied; None
    /// when the controller reads no samples. The newest byte the ACK
    /// reports delivered is taken from the SACK blocks' tops and the byte
    /// below the cumulative ACK, as RACK does, skipping retransmitted
    /// ones.
    pub(super) fn ack_before(&self, seg: &Segment, ack: SeqNumber) -> Option<AckBefore> {
        self.rate.as_ref()?;
        let mut newest: Option<SeqNumber> = None;
        let mut consider = |top: SeqNumber| {
            if !self.rxt_log.covers(top) && newest.is_none_or(|n| top > n) {
                newest = Some(top);
            }
        };
        if self.sack_ok {
            for &(l, r) in &seg.options.sack_blocks {
                if l < r && r <= self.snd_max && r > ack {
                    consider(r - 1);
                }
            }
        }
        if ack > self.snd_una && ack <= self.snd_max {
            consider(ack - 1);
        }
        Some(AckBefore {
            una: self.snd_una,
            sacked: self.scoreboard.sacked_bytes(),
            pipe: self.pipe(),
            newest,
            losses: self.stats.fast_retransmits + self.lost_retransmits,
        })
    }

    /// Hands the controller the [`AckSample`] of the ACK just applied:
    /// what it delivered (cumulatively and by SACK), the flight before
    /// and after, the recovery state and the delivery-rate sample.
    pub(super) fn sample_ack(&mut self, now: Instant, before: AckBefore) {
        let acked = self.snd_una.distance_from(before.una);
        let delivered = (acked + self.scoreboard.sacked_bytes()).saturating_sub(before.sacked);
        let inflight = self.pipe();
        let in_recovery = self.recovery.is_some() || self.snd_una < self.recovery_point;
        let lost = self.stats.fast_retransmits + self.lost_retransmits > before.losses;
        let una = self.snd_una;
        let Some(r) = self.rate.as_mut() else {
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
        self.cc.on_ack_sample(&sample);
    }

    /// SND.UNA moves forward to `ack` (RFC 9293 3.10.7.4, ESTABLISHED).
    pub(super) fn on_ack_advance(&mut self, now: Instant, ack: SeqNumber, tsecr: Option<u32>) {
        let released = self.send_buf.ack_to(ack);
        self.snd_una = ack;
        self.last_progress = now;
        if self.snd_nxt < ack {
            self.snd_nxt = ack;
        }
        self.scoreboard.advance(ack);
        // RTT: from the echoed timestamp when negotiated (RFC 7323 4.1),
        // else from the one timed segment (RFC 6298, Karn).
        match tsecr {
            Some(ecr) if self.ts_ok && ecr != 0 => {
                let ms = self.ts_val(now).wrapping_sub(ecr);
                if (ms as i32) >= 0 && Duration::from_millis(ms as u64) <= self.cfg.rto_max {
                    self.rtt.on_sample(Duration::from_millis(ms as u64));
                }
            }
            _ => {
                if let Some((end, sent_at)) = self.rtt_sample {
                    if ack >= end {
                        self.rtt.on_sample(now.saturating_duration_since(sent_at));
                        self.rtt_sample = None;
                    }
                }
            }
        }
        self.rtt.reset_backoff();
        self.tlp_out = false;
        // RFC 6298 5.2 / 5.3.
        if self.snd_una == self.snd_max {
            self.timers.stop(Timer::Retransmit);
            self.timers.stop(Timer::LossProbe);
        } else {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        if self.want_writable && released > 0 && self.send_buf.free() > 0 {
            self.want_writable = false;
            self.push_event(Event::Writable);
        }
    }

    /// The peer's FIN, in order (RFC 9293 3.10.7.4, eighth).
    pub(super) fn on_peer_fin(&mut self, now: Instant) {
        self.rcv_nxt = self.rcv_nxt + 1;
        self.peer_fin_received = true;
        self.ack_pending = true;
        self.push_event(Event::PeerFin);
        match self.state {
            State::SynReceived | State::Established => self.state = State::CloseWait,
            State::FinWait1 => self.state = State::Closing,
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }
}
