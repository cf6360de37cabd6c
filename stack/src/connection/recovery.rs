//! Loss recovery: the retransmission timer (RFC 6298), RFC 6675's pipe and
//! next retransmission, RACK-TLP (RFC 8985) with its loss probe, and
//! entering recovery (RFC 6582 for NewReno).

use super::*;

impl Connection {
    /// Retransmissions ran out: RST and CLOSED(TimedOut).
    pub(super) fn give_up(&mut self, reason: CloseReason) {
        let ack = (self.state != State::SynSent).then_some(self.rcv_nxt);
        self.rst_pending = Some(self.rst_segment(self.snd_max, ack));
        self.enter_closed(reason);
    }

    /// RFC 6298 5.4-5.6 and RFC 5681 3.1: resend from SND.UNA with a
    /// doubled RTO and cwnd = 1 MSS, or give up.
    pub(super) fn on_retransmit_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::Closed | State::TimeWait) || self.snd_una == self.snd_max {
            return;
        }
        let limit = match self.state {
            State::SynSent | State::SynReceived => self.cfg.syn_retransmissions,
            _ => self.cfg.max_retransmissions,
        };
        if self.rtt.backoffs() >= limit {
            self.give_up(CloseReason::TimedOut);
            return;
        }
        let first = self.rtt.backoffs() == 0;
        self.timers.stop(Timer::LossProbe);
        self.tlp_pending = false;
        self.rtt.back_off();
        self.rtt_sample = None; // Karn: never time a retransmitted segment
        self.stats.retransmissions += 1;
        if matches!(self.state, State::SynSent | State::SynReceived) {
            self.snd_nxt = self.iss;
        } else {
            let flight = self.snd_max - self.snd_una;
            self.cc.on_rto(flight, first);
            // RFC 6675 5.1: recovery ends; none starts again before
            // RecoveryPoint; everything not SACKed is resent, starting
            // with SND.UNA whatever the scoreboard says (the receiver may
            // have reneged, RFC 2018 8). A second timeout of the same data
            // forgets the scoreboard altogether.
            self.recovery = None;
            self.recovery_point = self.snd_max;
            self.lost_until = self.snd_max;
            self.high_rxt = self.snd_una;
            self.rxt_head = true;
            self.dup_acks = 0;
            self.dup_sacked = 0;
            // Everything outstanding is resent: older records are moot.
            self.rxt_log.clear();
            self.rack_rxt.clear();
            self.timers.stop(Timer::Reorder);
            if !first {
                self.scoreboard.clear();
            }
        }
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
    }

    /// Everything un-SACKed below this is lost: `lost_until`, and in SACK
    /// recovery what RFC 6675 IsLost says.
    pub(super) fn lost_boundary(&self) -> SeqNumber {
        let mut b = self.lost_until;
        if self.recovery == Some(Recovery::Sack) {
            if let Some(sb) = self.scoreboard.loss_boundary(self.send_mss) {
                b = b.max(sb);
            }
        }
        b.min(self.snd_max)
    }

    /// RFC 6675 SetPipe, computed from ranges instead of per octet:
    /// outstanding, less SACKed (or dup-ACKed), less lost and not yet
    /// retransmitted. O(scoreboard ranges).
    pub(super) fn pipe(&self) -> usize {
        let outstanding = self.snd_max.distance_from(self.snd_una);
        let from = self.high_rxt.max(self.snd_una);
        let boundary = self.lost_boundary();
        let lost_unsent = if boundary > from {
            (boundary - from) - self.scoreboard.sacked_between(from, boundary)
        } else {
            0
        };
        // Retransmissions RACK found lost have left the network too.
        let rack_lost: usize = self
            .rack_rxt
            .iter()
            .map(|&(s, e)| {
                let s = s.max(self.snd_una);
                if s < e {
                    (e - s) - self.scoreboard.sacked_between(s, e)
                } else {
                    0
                }
            })
            .sum();
        outstanding
            .saturating_sub(self.scoreboard.sacked_bytes() + self.dup_sacked)
            .saturating_sub(lost_unsent + rack_lost)
    }

    /// RFC 6675 NextSeg rule 1 (and the RTO / NewReno equivalents): the
    /// first lost, un-SACKed, not yet retransmitted segment, if cwnd has
    /// room for it (or it is the one fast retransmit must send).
    pub(super) fn next_retransmission(
        &mut self,
        now: Instant,
        spare: &mut Vec<u8>,
    ) -> Option<Segment> {
        if !self.is_sending_state() || self.snd_una == self.snd_max || self.snd_wnd == 0 {
            self.rxt_head = false;
            return None;
        }
        // Lost retransmissions (RACK) that are now fully SACKed or
        // acknowledged need nothing more.
        while let Some(&(s, e)) = self.rack_rxt.front() {
            let s = s.max(self.snd_una);
            if s < e && self.scoreboard.hole_from(s, e).is_some() {
                break;
            }
            self.rack_rxt.pop_front();
        }
        let mut rack = false;
        let (start, end) = if self.rxt_head {
            let end = self
                .scoreboard
                .hole_from(self.snd_una, self.snd_max)
                .map_or(self.snd_max, |(s, e)| if s == self.snd_una { e } else { s });
            (self.snd_una, end.max(self.snd_una + 1).min(self.snd_max))
        } else if let Some(&(s, e)) = self.rack_rxt.front() {
            rack = true;
            self.scoreboard.hole_from(s.max(self.snd_una), e)?
        } else {
            let from = self.high_rxt.max(self.snd_una);
            let boundary = self.lost_boundary();
            if from >= boundary {
                return None;
            }
            let (s, e) = self.scoreboard.hole_from(from, self.snd_max)?;
            if s >= boundary {
                return None;
            }
            (s, e)
        };
        let len = (end - start).min(self.send_mss);
        if !self.rxt_head && self.cc.window().saturating_sub(self.pipe()) < len {
            return None;
        }
        self.rxt_head = false;
        let data_end = self.send_buf.end();
        let payload_len = len.min(data_end.distance_from(start));
        let fin = len > payload_len && self.fin_seq == Some(start + payload_len);
        let seq_len = payload_len + fin as usize;
        if seq_len == 0 {
            if rack {
                self.rack_rxt.pop_front();
            }
            return None;
        }
        if rack {
            if let Some(front) = self.rack_rxt.front_mut() {
                front.0 = start + seq_len;
            }
        } else {
            self.high_rxt = self.high_rxt.max(start + seq_len);
        }
        self.log_retransmission(now, start, start + seq_len);
        self.rtt_sample = None; // Karn
        self.count_retransmission();
        let seg = self.data_segment(now, start, payload_len, fin, data_end, spare);
        self.on_sent(now, start, seq_len, payload_len);
        if self.recovery.is_some() {
            // The last hole may just have been resent: from now on only
            // its ACK can move us, so guard it with a probe.
            self.arm_loss_probe(now);
        }
        Some(seg)
    }

    /// Remembers a retransmission of `[start, end)` for RACK.
    pub(super) fn log_retransmission(&mut self, now: Instant, start: SeqNumber, end: SeqNumber) {
        self.tx_order += 1;
        self.rxt_log.record(start, end, self.tx_order, now);
    }

    /// True while a SACK recovery has resent every hole it knows to be
    /// lost: nothing but the ACKs of those retransmissions can make
    /// progress, and if the last of them (or its retransmission) is
    /// lost, only a timer can.
    pub(super) fn recovery_tail(&self) -> bool {
        if self.recovery != Some(Recovery::Sack) || self.rxt_head || !self.rack_rxt.is_empty() {
            return false;
        }
        let from = self.high_rxt.max(self.snd_una);
        let boundary = self.lost_boundary();
        from >= boundary
            || self
                .scoreboard
                .hole_from(from, self.snd_max)
                .is_none_or(|(s, _)| s >= boundary)
    }

    /// RFC 8985 7: a probe is worth sending in the open state (no
    /// recovery running), with SACK (so its ACK tells what is missing),
    /// data outstanding and no probe already out. We also probe at the
    /// tail of a SACK recovery ([`Connection::recovery_tail`]): when the
    /// lone cumulative ACK of the last retransmission is lost, or that
    /// retransmission is, the probe's ACK (or SACK, which lets RACK see
    /// the retransmission lost) ends the wait instead of an RTO.
    pub(super) fn tlp_allowed(&self) -> bool {
        self.sack_ok
            && self.is_sending_state()
            && (self.recovery.is_none() || self.recovery_tail())
            && self.lost_until <= self.snd_una
            && self.snd_una < self.snd_max
            && self.snd_wnd > 0
            && !self.tlp_out
            && self.rtt.backoffs() == 0
    }

    /// RFC 8985 7.2: arm the probe timer at PTO = 2 * SRTT plus
    /// [`MIN_PTO`] of slack (as Linux; a lone segment adds the peer's
    /// worst-case delayed ACK instead), when that is earlier than the RTO.
    pub(super) fn arm_loss_probe(&mut self, now: Instant) {
        self.timers.stop(Timer::LossProbe);
        let Some(srtt) = self.rtt.srtt() else {
            return;
        };
        if !self.tlp_allowed() {
            return;
        }
        let mut pto = srtt * 2;
        if self.snd_max - self.snd_una <= self.send_mss {
            pto += Duration::from_millis(200);
        } else {
            pto += MIN_PTO;
        }
        if pto < self.rtt.rto() {
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
        if self.recovery.is_some() {
            // At the tail of a recovery the probe is the hole at SND.UNA
            // again: if its retransmission was lost this repairs it, and
            // if only the ACK was lost the duplicate draws an immediate
            // ACK.
            self.rxt_head = true;
            let seg = self.next_retransmission(now, spare)?;
            self.tlp_out = true;
            self.timers.stop(Timer::LossProbe);
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
            return Some(seg);
        }
        let outstanding = self.snd_max - self.snd_una;
        let start = self.snd_max - outstanding.min(self.send_mss);
        let data_end = self.send_buf.end();
        let payload_len = data_end.distance_from(start).min(self.snd_max - start);
        let fin = self.fin_seq.is_some_and(|f| f >= start && f < self.snd_max);
        let seq_len = payload_len + fin as usize;
        if seq_len == 0 {
            return None;
        }
        self.count_retransmission();
        self.rtt_sample = None;
        self.log_retransmission(now, start, start + seq_len);
        let seg = self.data_segment(now, start, payload_len, fin, data_end, spare);
        self.on_sent(now, start, seq_len, payload_len);
        self.tlp_out = true;
        self.timers.stop(Timer::LossProbe);
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        Some(seg)
    }

    /// RFC 8985 6.2 steps 1-2: the most recently sent segment this ACK
    /// reports delivered (the top of each SACK block, the byte below the
    /// cumulative ACK) becomes RACK's reference, with the RTT it took.
    /// Bytes we retransmitted are skipped: which copy arrived is
    /// ambiguous (step 2's "spurious retransmission" case).
    pub(super) fn rack_update(&mut self, now: Instant, seg: &Segment, ack: SeqNumber) {
        let mut tops: [Option<SeqNumber>; 5] = [None; 5];
        for (i, &(l, r)) in seg.options.sack_blocks.iter().take(4).enumerate() {
            if l < r && r <= self.snd_max && r > ack {
                tops[i] = Some(r - 1);
            }
        }
        if ack > self.snd_una && ack <= self.snd_max {
            tops[4] = Some(ack - 1);
        }
        for top in tops.into_iter().flatten() {
            if self.rxt_log.covers(top) {
                continue;
            }
            let i = self.sent_log.partition_point(|e| e.0 <= top);
            let Some(&(_, order, sent_at)) = self.sent_log.get(i) else {
                continue;
            };
            let rtt = now.saturating_duration_since(sent_at);
            self.rack_min_rtt = Some(self.rack_min_rtt.map_or(rtt, |m| m.min(rtt)));
            if self.rack.is_none_or(|r| order > r.order) {
                self.rack = Some(RackState { order, rtt });
            }
        }
    }

    /// RFC 8985 6.2 step 4: the reordering window, min_rtt / 4.
    pub(super) fn rack_reo_wnd(&self) -> Duration {
        let wnd = self.rack_min_rtt.unwrap_or_default() / 4;
        self.rtt.srtt().map_or(wnd, |s| wnd.min(s.max(MIN_PTO)))
    }

    /// RFC 8985 6.2 step 5 for retransmissions (see [`RetransmitLog`]).
    /// Otherwise the reordering timer waits for the moment the next one
    /// becomes lost. The retransmission at SND.UNA is resent at once;
    /// others when cwnd allows.
    pub(super) fn rack_detect_lost_retransmissions(&mut self, now: Instant) {
        let una = self.snd_una;
        let sb = &self.scoreboard;
        self.rxt_log
            .prune(|x| x.end > una && sb.hole_from(x.start.max(una), x.end).is_some());
        let Some(rack) = self.rack.filter(|_| self.sack_ok) else {
            return;
        };
        let wait = rack.rtt + self.rack_reo_wnd();
        let found = self
            .rxt_log
            .detect_lost(rack.order, wait, now, una, &mut self.rack_rxt);
        self.lost_retransmits += found.lost;
        self.rxt_head |= found.head;
        match found.deadline {
            Some(d) => self.timers.set(Timer::Reorder, d),
            None => self.timers.stop(Timer::Reorder),
        }
    }

    /// RFC 5681 3.2 / RFC 6582 3.2 step 2 / RFC 6675 5: enter loss
    /// recovery on the third duplicate ACK, or (with SACK) as soon as the
    /// scoreboard says the segment at SND.UNA is lost.
    pub(super) fn maybe_enter_recovery(&mut self, now: Instant, flight: usize) {
        let allowed = self.recovery.is_none()
            && self.is_sending_state()
            && self.snd_una < self.snd_max
            && self.snd_una >= self.recovery_point
            && self.lost_until <= self.snd_una;
        if !allowed {
            return;
        }
        // RFC 5827 (early retransmit): with fewer than four segments
        // outstanding and nothing new that could be sent, fewer duplicate
        // ACKs can ever arrive; lower the threshold to outstanding - 1.
        let mut dup_thresh = crate::sack::DUP_THRESH as u32;
        let outstanding = self.snd_max - self.snd_una;
        let segs = outstanding.div_ceil(self.send_mss) as u32;
        let nothing_new =
            self.send_buf.end() <= self.snd_nxt || (self.snd_una + self.snd_wnd) <= self.snd_nxt;
        if segs < 4 && nothing_new {
            dup_thresh = dup_thresh.min(segs.saturating_sub(1)).max(1);
        }
        let trigger = self.dup_acks >= dup_thresh
            || (self.sack_ok && self.scoreboard.is_lost(self.snd_una, self.send_mss));
        if !trigger {
            return;
        }
        self.recovery = Some(if self.sack_ok {
            Recovery::Sack
        } else {
            Recovery::NewReno
        });
        self.recovery_point = self.snd_max;
        self.cc.on_congestion_event(now, flight);
        self.high_rxt = self.snd_una;
        self.lost_until = if self.sack_ok {
            self.snd_una
        } else {
            (self.snd_una + self.send_mss).min(self.snd_max)
        };
        self.rxt_head = true;
        self.stats.fast_retransmits += 1;
        if self.sack_ok {
            self.stats.sack_recoveries += 1;
        }
    }
}
