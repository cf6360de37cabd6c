//! Sending (RFC 9293 section 3.8, RFC 9293 3.8.6 for the window, RFC 1122
//! 4.2.3.4 for Nagle and silly-window avoidance): what goes out next, new
//! data, persist, and how each segment is built.

use super::*;

impl Connection {
    /// Next segment to send now (None when nothing is due). Call until None.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Segment> {
        self.poll_transmit_reusing(now, &mut Vec::new())
    }

    /// [`Connection::poll_transmit`] that puts the segment's payload in
    /// `spare` (taken, leaving an empty `Vec`) instead of a new buffer, when
    /// the segment carries data. A caller that hands each sent segment's
    /// payload back as the next `spare` sends a whole stream without an
    /// allocation per segment.
    pub fn poll_transmit_reusing(&mut self, now: Instant, spare: &mut Vec<u8>) -> Option<Segment> {
        let seg = self.next_segment(now, spare);
        self.debug_check();
        if seg.is_some() {
            self.stats.segments_out += 1;
        } else {
            self.update_persist(now);
        }
        seg
    }

    pub(super) fn next_segment(&mut self, now: Instant, spare: &mut Vec<u8>) -> Option<Segment> {
        if let Some(rst) = self.rst_pending.take() {
            return Some(rst);
        }
        match self.state {
            State::Closed => return None,
            State::SynSent | State::SynReceived if self.snd_nxt == self.iss => {
                if self.snd_max != self.iss {
                    self.count_retransmission();
                }
                let seg = self.segment(now, self.iss, Control::Syn, Vec::new());
                self.on_sent(now, self.iss, 1, 0);
                return Some(seg);
            }
            State::SynSent => return None,
            _ => {}
        }
        if self.tlp_pending {
            self.tlp_pending = false;
            if let Some(seg) = self.loss_probe(now, spare) {
                return Some(seg);
            }
        }
        if let Some(seg) = self.next_retransmission(now, spare) {
            return Some(seg);
        }
        if let Some(seg) = self.next_data_segment(now, spare) {
            return Some(seg);
        }
        if self.probe_pending {
            // A zero-window probe that needs no sequence space: an old
            // sequence number makes the peer answer with an ACK carrying
            // its current window.
            self.probe_pending = false;
            return Some(self.segment(now, self.snd_una - 1, Control::None, Vec::new()));
        }
        if self.ack_pending {
            return Some(self.segment(now, self.snd_nxt, Control::None, Vec::new()));
        }
        None
    }

    pub(super) fn count_retransmission(&mut self) {
        self.stats.segments_retransmitted += 1;
        self.push_event(Event::Retransmit);
    }

    pub(super) fn is_sending_state(&self) -> bool {
        matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck
        )
    }

    /// Option bytes SACK blocks will add to our next segment.
    pub(super) fn sack_option_len(&self) -> usize {
        let n = self.sack_report.blocks().len();
        if !self.sack_ok || n == 0 {
            return 0;
        }
        let ts = if self.ts_ok { TIMESTAMPS_OPTION_LEN } else { 0 };
        let room = (40 - ts - 4) / 8;
        4 + 8 * n.min(room)
    }

    /// New data (and FIN) from SND.NXT, limited by the peer's window,
    /// cwnd - pipe and the MSS, held back by Nagle (RFC 9293 3.7.4, in
    /// Minshall's form) and sender SWS avoidance (RFC 9293 3.8.6.2.1).
    pub(super) fn next_data_segment(
        &mut self,
        now: Instant,
        spare: &mut Vec<u8>,
    ) -> Option<Segment> {
        if !self.is_sending_state() {
            return None;
        }
        let data_end = self.send_buf.end();
        let unsent = data_end.distance_from(self.snd_nxt);
        let fin_unsent = self.fin_seq.is_some_and(|f| self.snd_nxt <= f);
        if unsent == 0 && !fin_unsent {
            self.mark_app_limited();
            return None;
        }
        // RFC 5681 4.1: after an idle period longer than the RTO, restart
        // from (at most) the initial window.
        if self.snd_una == self.snd_max
            && self
                .last_data_sent
                .is_some_and(|t| now.saturating_duration_since(t) > self.rtt.rto())
        {
            self.cc.on_idle_restart();
            self.last_data_sent = Some(now);
        }
        // SACK blocks come out of the segment too, but never take it below
        // what the MSS floor leaves once timestamps are in.
        let floor = self.send_mss.clamp(1, MIN_SND_MSS - TIMESTAMPS_OPTION_LEN);
        let max_seg = self
            .send_mss
            .saturating_sub(self.sack_option_len())
            .max(floor);
        let wnd_avail = (self.snd_una + self.snd_wnd).distance_from(self.snd_nxt);
        // RFC 3042 (limited transmit): the first two duplicate ACKs each
        // let one new segment out beyond cwnd, to earn the third.
        let limited_transmit = if self.recovery.is_none() {
            (self.dup_acks.min(2) as usize) * self.send_mss
        } else {
            0
        };
        let cwnd = self.cc.window().min(MAX_FLIGHT_SEGMENTS * self.send_mss);
        let cwnd_avail = (cwnd + limited_transmit).saturating_sub(self.pipe());
        let len = unsent.min(wnd_avail).min(cwnd_avail).min(max_seg);
        if len == 0 {
            // A lone FIN (no data left) needs no window.
            if unsent != 0 || !fin_unsent {
                return None;
            }
        } else if len < max_seg {
            if len == unsent {
                // Nagle: all queued data fits in a small segment. Hold it
                // while another small segment is unacknowledged, unless
                // Nagle is off or we are closing (the FIN flushes it).
                let small_unacked = self.snd_sml > self.snd_una;
                if !self.nodelay && self.fin_seq.is_none() && small_unacked {
                    return None;
                }
            } else if cwnd_avail < wnd_avail {
                // cwnd-limited: the ACKs in flight will open it.
                return None;
            } else if len < self.max_snd_wnd / 2 && !self.sws_override_due {
                // Sender SWS avoidance: the peer's window allows only a
                // sliver; wait for it to open, or for the override timeout.
                self.timers
                    .set_if_idle(Timer::SendOverride, now + self.cfg.sws_override);
                return None;
            }
        }
        self.sws_override_due = false;
        self.timers.stop(Timer::SendOverride);
        let seq = self.snd_nxt;
        let fin = self.fin_seq == Some(seq + len);
        let seg = self.data_segment(now, seq, len, fin, data_end, spare);
        if len > 0 && len < self.send_mss {
            self.snd_sml = seq + len;
        }
        if len > 0 {
            self.last_data_sent = Some(now);
        }
        self.on_sent(now, seq, len + fin as usize, len);
        Some(seg)
    }

    /// draft-cheng-iccrg-delivery-rate-estimation 3.4: the application
    /// has nothing more to send though cwnd has room, so the rate samples
    /// of what is sent until the flight is delivered say less than the
    /// path can carry.
    fn mark_app_limited(&mut self) {
        if self.rate.is_none() {
            return;
        }
        let pipe = self.pipe();
        if pipe < self.cc.window() {
            if let Some(r) = &mut self.rate {
                r.on_app_limited(pipe);
            }
        }
    }

    /// Bookkeeping after sending `seg_len` sequence numbers from `seq`.
    pub(super) fn on_sent(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        seg_len: usize,
        data_len: usize,
    ) {
        let end = seq + seg_len;
        let new_data = end.distance_from(self.snd_max);
        if let Some(r) = self
            .rate
            .as_mut()
            .filter(|_| new_data > 0 && seq != self.iss)
        {
            r.on_send(now, end, self.snd_una == self.snd_max);
        }
        if end > self.snd_max {
            let new = end - self.snd_max;
            self.stats.bytes_out += new.min(data_len) as u64;
            if !self.ts_ok && seq >= self.snd_max && self.rtt_sample.is_none() {
                self.rtt_sample = Some((end, now));
            }
            self.snd_max = end;
        }
        if new_data > 0 && seq != self.iss {
            // RACK tracks data (and FIN), not the SYN.
            let previous = self.tx_order;
            self.tx_order += 1;
            match self.sent_log.back_mut() {
                // Coalesce with the previous send if nothing else went
                // out in between (so the order stays exact w.r.t. any
                // retransmission).
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
        self.snd_nxt = self.snd_nxt.max(end);
        if !self.timers.is_running(Timer::Retransmit) {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        if data_len > 0 && new_data > 0 {
            // RFC 8985 7.2: (re)start the probe timer after new data.
            self.arm_loss_probe(now);
        }
        self.timers.stop(Timer::Persist);
    }

    /// Zero window: only the persist timer can find out when the window
    /// opens again (RFC 9293 3.8.6.1). Data already sent beyond a closed
    /// window waits for the reopening too (the RTO is stopped: a peer
    /// that answers our probes is alive, and we never give up on it).
    pub(super) fn update_persist(&mut self, now: Instant) {
        let waiting = self.send_buf.end() > self.snd_nxt
            || self.fin_seq.is_some_and(|f| self.snd_nxt <= f)
            || self.snd_una < self.snd_max;
        let blocked = self.is_sending_state() && self.snd_wnd == 0 && waiting;
        if !blocked {
            self.timers.stop(Timer::Persist);
            self.persist_backoff = 0;
            self.zero_window_since = None;
        } else if !self.timers.is_running(Timer::Persist) && !self.probe_pending {
            let since = *self.zero_window_since.get_or_insert(now);
            let factor = 1u32 << self.persist_backoff.min(16);
            let wait = self.rtt.rto().saturating_mul(factor).min(self.cfg.rto_max);
            let mut at = now + wait;
            if let Some(limit) = self.cfg.zero_window_timeout {
                // The probe that finds the limit passed is on time.
                at = at.min(since + limit);
            }
            self.timers.set(Timer::Persist, at);
        }
    }

    /// RCV.WND: from RCV.NXT to the right edge we advertised, within the
    /// free buffer space.
    pub(super) fn rcv_wnd(&self) -> usize {
        self.rcv_adv
            .distance_from(self.rcv_nxt)
            .min(self.recv_buf.window())
    }

    /// RFC 9293 3.8.6.2.2: the right edge moves only by at least
    /// min(half the buffer, one MSS).
    pub(super) fn sws_threshold(&self) -> usize {
        (self.recv_buf.capacity() / 2)
            .min(self.cfg.mss(self.tuple.is_ipv6()) as usize)
            .max(1)
    }

    /// The window field we send now, with receiver SWS avoidance: a free
    /// space that would move the advertised right edge by less than the
    /// threshold is not announced yet.
    pub(super) fn window_field(&self) -> u16 {
        let free = self.recv_buf.window();
        let offered = self.rcv_adv.distance_from(self.rcv_nxt);
        let wnd = if free > offered && free - offered < self.sws_threshold() {
            offered
        } else {
            free
        };
        (wnd >> self.rcv_wscale).min(MAX_WINDOW_FIELD) as u16
    }

    /// Our timestamp clock: milliseconds since the connection was made,
    /// plus a per-connection offset (RFC 7323 5.4: 1 ms to 1 s per tick).
    pub(super) fn ts_val(&self, now: Instant) -> u32 {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u32;
        self.ts_offset.wrapping_add(ms)
    }

    /// Builds a segment from our side carrying ACK (except our first SYN),
    /// the current window and the negotiated options.
    /// The segment carrying `len` bytes of the send buffer from `seq` (in
    /// `spare`'s buffer), with FIN if `fin`, and PSH when it reaches
    /// `data_end`, the end of the data queued.
    pub(super) fn data_segment(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        len: usize,
        fin: bool,
        data_end: SeqNumber,
        spare: &mut Vec<u8>,
    ) -> Segment {
        let mut payload = payload_buffer(spare, len);
        self.send_buf.read_at(seq, len, &mut payload);
        let control = if fin { Control::Fin } else { Control::None };
        let mut seg = self.segment(now, seq, control, payload);
        seg.psh = len > 0 && seq + len == data_end;
        seg
    }

    pub(super) fn segment(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        control: Control,
        payload: Vec<u8>,
    ) -> Segment {
        let syn = control == Control::Syn;
        let ack = (self.state != State::SynSent).then_some(self.rcv_nxt);
        let window = if syn {
            // RFC 7323 2.2: the window in a SYN is never scaled.
            self.recv_buf.window().min(MAX_WINDOW_FIELD) as u16
        } else {
            self.window_field()
        };
        if ack.is_some() {
            self.ack_pending = false;
            self.timers.stop(Timer::DelayedAck);
            self.last_ack_sent = self.rcv_nxt;
            let shift = if syn { 0 } else { self.rcv_wscale };
            let edge = self.rcv_nxt + ((window as usize) << shift);
            self.rcv_adv = self.rcv_adv.max(edge);
        }
        let timestamps = self.ts_ok.then(|| {
            let ecr = if ack.is_some() { self.ts_recent } else { 0 };
            (self.ts_val(now), ecr)
        });
        let options = if syn {
            TcpOptions {
                mss: Some(self.cfg.mss(self.tuple.is_ipv6())),
                window_scale: self.syn_wscale,
                sack_permitted: self.sack_ok,
                timestamps,
                sack_blocks: Vec::new(),
            }
        } else {
            let sack_blocks = if self.sack_ok && ack.is_some() {
                self.sack_report.blocks().to_vec()
            } else {
                Vec::new()
            };
            TcpOptions {
                timestamps,
                sack_blocks,
                ..TcpOptions::default()
            }
        };
        Segment {
            src_port: self.tuple.local.port(),
            dst_port: self.tuple.remote.port(),
            seq,
            ack,
            control,
            psh: false,
            window,
            options,
            payload: payload.into(),
        }
    }

    pub(super) fn rst_segment(&self, seq: SeqNumber, ack: Option<SeqNumber>) -> Segment {
        Segment {
            src_port: self.tuple.local.port(),
            dst_port: self.tuple.remote.port(),
            seq,
            ack,
            control: Control::Rst,
            psh: false,
            window: 0,
            options: TcpOptions::default(),
            payload: crate::Payload::new(),
        }
    }
}
