//! Receiving (RFC 9293 section 3.10.7): a segment's acceptability, RST and
//! SYN checks (RFC 5961, RFC 1337, RFC 6191), text and the peer's FIN, in
//! the RFC's order. [`Receiver`] holds the receive sequence space; the ACK
//! field is handled in `ack.rs`.

use super::options::Paws;
use super::*;
use crate::payload::Payload;
use crate::reassembly::RecvBuffer;
use crate::sack::SackReport;

/// The smallest shift that lets a 16-bit field describe `buffer` bytes.
fn wscale_for(buffer: usize) -> u8 {
    let mut shift = 0u8;
    while shift < 14 && (MAX_WINDOW_FIELD << shift) < buffer {
        shift += 1;
    }
    shift
}

/// RFC 9293 3.10.7.4, first check: is any of the segment inside the window?
pub(super) fn acceptable(seq: SeqNumber, len: usize, rcv_nxt: SeqNumber, wnd: usize) -> bool {
    let end = rcv_nxt + wnd;
    let inside = |s: SeqNumber| rcv_nxt <= s && s < end;
    match (len, wnd) {
        (0, 0) => seq == rcv_nxt,
        (0, _) => inside(seq),
        (_, 0) => false,
        _ => inside(seq) || inside(seq + (len - 1)),
    }
}

/// The window field for `free` bytes of buffer space when `offered`
/// bytes are advertised already, with receiver SWS avoidance (a right
/// edge that would move by less than `sws` is not announced yet); shared
/// by [`Receiver::window_field`] and a TIME-WAIT record, whose ACKs must
/// carry what the connection's would have.
pub(super) fn window_field(free: usize, offered: usize, sws: usize, wscale: u8) -> u16 {
    let wnd = if free > offered && free - offered < sws {
        offered
    } else {
        free
    };
    (wnd >> wscale).min(MAX_WINDOW_FIELD) as u16
}

/// A segment's text cut to the receive window ([`Receiver::trim`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Trimmed<'a> {
    /// Where the kept text starts (never below RCV.NXT).
    pub(super) seq: SeqNumber,
    /// The text inside the window.
    pub(super) text: &'a [u8],
    /// The FIN still counts (the text was not cut at the back).
    pub(super) fin: bool,
    /// Answer at once: part was a duplicate (our ACK was probably lost)
    /// or the text overran the window.
    pub(super) ack_now: bool,
}

/// The receive sequence space (RFC 9293 3.3.1), reassembly, SACK
/// reporting, the delayed-ACK decision and the peer's FIN.
///
/// It exists so the receive side of the TCB is one value, with the rules
/// that only touch it (window, acceptability, trimming, taking text in,
/// when to ACK, the FIN) next to it.
///
/// Invariants:
/// - RCV.NXT (`nxt`) only moves forward: over bytes the buffer took in
///   order, and by one for the FIN;
/// - `fin_received` implies `fin == Some(nxt - 1)`: the FIN is taken only
///   once everything before it arrived;
/// - `adv`, the right edge we advertised, never moves left (we never
///   shrink the window), and the window we take data in,
///   [`Receiver::wnd`], never exceeds the free buffer space;
/// - `mss` (largest segment seen) is at most `our_mss`;
/// - `wscale` is 0 unless both SYNs carried window scaling; `syn_wscale`
///   is what our SYN offers (None: not offered).
#[derive(Clone, Debug)]
pub(super) struct Receiver {
    /// The peer's initial sequence number (IRS).
    pub(super) irs: SeqNumber,
    /// RCV.NXT: next sequence number expected.
    pub(super) nxt: SeqNumber,
    /// Right edge of the last window we advertised.
    pub(super) adv: SeqNumber,
    /// Shift we apply to our window field (0 unless negotiated).
    pub(super) wscale: u8,
    /// Window scale option to put in our SYN / SYN|ACK.
    pub(super) syn_wscale: Option<u8>,
    /// In-order bytes for the application, and out-of-order ones held.
    pub(super) buf: RecvBuffer,
    /// Largest segment the peer sent us (what "full-sized" means for
    /// the every-second-segment ACK rule).
    pub(super) mss: usize,
    /// The MSS our own MTU allows (caps `mss`, and the SWS threshold).
    pub(super) our_mss: usize,
    /// SACK blocks to report (RFC 2018).
    pub(super) sack_report: SackReport,
    /// Sequence number of the peer's FIN once seen (maybe ahead of a gap).
    pub(super) fin: Option<SeqNumber>,
    /// The peer's FIN arrived in order.
    pub(super) fin_received: bool,
    /// An ACK is due now.
    pub(super) ack_pending: bool,
    /// RFC 7323 Last.ACK.sent.
    pub(super) last_ack_sent: SeqNumber,
}

impl Receiver {
    /// Nothing received yet: a buffer of `buffer` bytes, our MTU's MSS
    /// `our_mss`.
    pub(super) fn new(buffer: usize, our_mss: usize) -> Self {
        Receiver {
            irs: SeqNumber(0),
            nxt: SeqNumber(0),
            adv: SeqNumber(0),
            wscale: 0,
            syn_wscale: None,
            buf: RecvBuffer::new(buffer),
            mss: 536.min(our_mss),
            our_mss,
            sack_report: SackReport::default(),
            fin: None,
            fin_received: false,
            ack_pending: false,
            last_ack_sent: SeqNumber(0),
        }
    }

    /// Our SYN offers the window scale that covers a `buffer`-byte buffer.
    pub(super) fn offer_wscale(&mut self, buffer: usize) {
        self.wscale = wscale_for(buffer);
        self.syn_wscale = Some(self.wscale);
    }

    /// The peer's SYN answered without window scaling: none either way.
    pub(super) fn decline_wscale(&mut self) {
        self.wscale = 0;
        self.syn_wscale = None;
    }

    /// The peer's SYN at `seq`: the receive sequence space starts after it.
    pub(super) fn on_syn(&mut self, seq: SeqNumber) {
        self.irs = seq;
        self.nxt = seq + 1;
        self.adv = self.nxt;
    }

    /// RCV.WND: from RCV.NXT to the right edge we advertised, within the
    /// free buffer space.
    pub(super) fn wnd(&self) -> usize {
        self.adv.distance_from(self.nxt).min(self.buf.window())
    }

    /// RFC 9293 3.10.7.4 first check against RCV.WND; a zero window still
    /// takes ACKs and RSTs (and a FIN) at RCV.NXT.
    pub(super) fn acceptable(&self, seq: SeqNumber, len: usize) -> bool {
        let wnd = self.wnd();
        acceptable(seq, len, self.nxt, wnd) || (wnd == 0 && seq == self.nxt)
    }

    /// A retransmission of what we have (ending at or below RCV.NXT,
    /// within one buffer of it): our ACK was probably lost.
    pub(super) fn is_recent_duplicate(&self, seq: SeqNumber, len: usize) -> bool {
        seq + len <= self.nxt && seq >= self.nxt - self.buf.capacity()
    }

    /// Trims a segment's text to the window: the front below RCV.NXT was
    /// received already (never deliver twice), the back beyond the window
    /// is not ours to keep.
    pub(super) fn trim<'a>(&self, seq: SeqNumber, payload: &'a [u8], fin: bool) -> Trimmed<'a> {
        let mut t = Trimmed {
            seq,
            text: payload,
            fin,
            ack_now: false,
        };
        if seq < self.nxt {
            t.text = payload.get(self.nxt - seq..).unwrap_or_default();
            t.seq = self.nxt;
            t.ack_now = !payload.is_empty();
        }
        let room = (self.nxt + self.wnd()).distance_from(t.seq);
        if t.text.len() > room {
            // Tell the peer where the window ends (this also answers a
            // zero-window probe that carries a byte).
            t.text = &t.text[..room];
            t.fin = false;
            t.ack_now = true;
        }
        t
    }

    /// Takes in-window text at `seq`; returns how far RCV.NXT moved. Out
    /// of order text is reported in a SACK block and ACKed at once.
    /// `whole` is the segment's payload when `text` is all of it (the
    /// receive buffer may keep a large one instead of copying it).
    pub(super) fn take_text(
        &mut self,
        seq: SeqNumber,
        text: &[u8],
        whole: Option<&Payload>,
    ) -> usize {
        let before = self.nxt;
        self.mss = self.mss.max(text.len().min(self.our_mss));
        self.nxt = self.buf.insert(self.nxt, seq, text, whole);
        if self.nxt != before {
            self.sack_report.prune(self.nxt);
        }
        if seq != before {
            if let Some(block) = self.buf.held_block(seq) {
                self.sack_report.report(block);
            }
            self.ack_pending = true;
        }
        self.nxt.distance_from(before)
    }

    /// RFC 1122 4.2.3.2 / RFC 5681 4.2: in-order text that filled a gap
    /// (`had_held`), asked for an ACK (`ack_now`), arrived with delayed
    /// ACKs off, or makes two full-sized segments unacknowledged is ACKed
    /// now; otherwise the ACK may wait (true: start the delayed-ACK
    /// timer).
    pub(super) fn delay_ack(
        &mut self,
        had_held: bool,
        ack_now: bool,
        delayed_ack_off: bool,
    ) -> bool {
        let two_segments = self.nxt.distance_from(self.last_ack_sent) >= 2 * self.mss;
        if had_held || ack_now || delayed_ack_off || two_segments {
            self.ack_pending = true;
            return false;
        }
        true
    }

    /// The peer's FIN is at `seq` (the first one seen counts).
    pub(super) fn fin_at(&mut self, seq: SeqNumber) {
        if self.fin.is_none() {
            self.fin = Some(seq);
        }
    }

    /// Takes the FIN once everything before it arrived: RCV.NXT moves past
    /// it and it is ACKed. True the one time that happens.
    pub(super) fn take_fin(&mut self) -> bool {
        if self.fin != Some(self.nxt) || self.fin_received {
            return false;
        }
        self.nxt = self.nxt + 1;
        self.fin_received = true;
        self.ack_pending = true;
        true
    }

    /// RFC 9293 3.8.6.2.2: the right edge moves only by at least
    /// min(half the buffer, one MSS).
    pub(super) fn sws_threshold(&self) -> usize {
        (self.buf.capacity() / 2).min(self.our_mss).max(1)
    }

    /// The window field we send now, with receiver SWS avoidance: a free
    /// space that would move the advertised right edge by less than the
    /// threshold is not announced yet.
    pub(super) fn window_field(&self) -> u16 {
        let field = window_field(
            self.buf.window(),
            self.adv.distance_from(self.nxt),
            self.sws_threshold(),
            self.wscale,
        );
        #[cfg(feature = "test-faults")]
        let field = if crate::faults::halve_window() {
            field / 2
        } else {
            field
        };
        field
    }

    /// RFC 7323 2.2: the window in a SYN is never scaled.
    pub(super) fn syn_window(&self) -> u16 {
        self.buf.window().min(MAX_WINDOW_FIELD) as u16
    }

    /// A segment acknowledging RCV.NXT with `window` (unscaled in a SYN)
    /// goes out: no ACK is due any more, and the right edge it offers is
    /// advertised.
    pub(super) fn on_ack_sent(&mut self, window: u16, syn: bool) {
        self.ack_pending = false;
        self.last_ack_sent = self.nxt;
        let shift = if syn { 0 } else { self.wscale };
        let edge = self.nxt + ((window as usize) << shift);
        self.adv = self.adv.max(edge);
    }

    /// A backup takes the connection over (`checkpoint.rs`): the dead
    /// primary may have advertised the window its checkpoint allowed, so
    /// the right edge covers it (we never shrink the window), and an ACK
    /// is due at once, so the peer learns RCV.NXT and resends what the
    /// primary took in but never acknowledged.
    pub(super) fn on_take_over(&mut self) {
        let edge = self.nxt + ((self.window_field() as usize) << self.wscale);
        self.adv = self.adv.max(edge);
        self.ack_pending = true;
    }

    /// The application reads up to `out.len()` in-order bytes; returns
    /// how many. When the window had become small and reading opened it
    /// by a worthwhile amount (receiver SWS avoidance), a window update
    /// is due, unless the peer closed or `synchronized` is false.
    pub(super) fn read(&mut self, out: &mut [u8], synchronized: bool) -> usize {
        let old_wnd = self.adv.distance_from(self.nxt);
        let n = self.buf.read(out);
        self.after_read(n, old_wnd, synchronized)
    }

    /// Drops `n` in-order bytes as read without copying them (see
    /// `Connection::recv_consume`).
    pub(super) fn consume(&mut self, n: usize, synchronized: bool) -> usize {
        let old_wnd = self.adv.distance_from(self.nxt);
        let n = self.buf.consume(n);
        self.after_read(n, old_wnd, synchronized)
    }

    /// `n` bytes were read, the window offered before being `old_wnd`:
    /// a window update is due if the right edge moves enough (receiver
    /// SWS avoidance).
    fn after_read(&mut self, n: usize, old_wnd: usize, synchronized: bool) -> usize {
        if n == 0 || self.fin_received || !synchronized {
            return n;
        }
        let new_edge = self.nxt + ((self.window_field() as usize) << self.wscale);
        let increase = new_edge.distance_from(self.adv);
        if old_wnd < self.buf.capacity() / 2 && increase >= self.sws_threshold() {
            self.ack_pending = true;
        }
        n
    }
}

impl Connection {
    /// RFC 5961 7: a challenge ACK, within the connection's budget
    /// ([`Replies::challenge`]).
    pub(super) fn challenge_ack(&mut self, now: Instant) {
        if self.replies.challenge(now, self.cfg.challenge_ack_limit) {
            self.stats.challenge_acks += 1;
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

    /// RFC 6191 2 ([`Negotiated::syn_may_reincarnate`]): may this SYN
    /// reopen the connection in TIME-WAIT?
    pub(super) fn syn_may_reincarnate(&self, syn: &Segment) -> bool {
        let syn_ts = syn
            .options
            .timestamps
            .map(|t| t.0)
            .filter(|_| self.cfg.timestamps);
        self.opt.syn_may_reincarnate(syn_ts, syn.seq, self.rcv.nxt)
    }

    /// The replies the segment just handled earned because it was invalid
    /// go out only if the limiter allows ([`Replies::settle`]).
    pub(super) fn settle_invalid_replies(&mut self, now: Instant, limiter: &mut dyn ReplyLimiter) {
        let synchronized = self.is_synchronized();
        let settled = self
            .replies
            .settle(now, limiter, self.rcv.ack_pending, synchronized);
        self.rcv.ack_pending |= settled.ack;
        self.stats.replies_limited += settled.limited;
    }

    /// RFC 9293 3.10.7.3: SYN-SENT. First the ACK (it must acknowledge
    /// our SYN), then RST, then the peer's SYN.
    pub(super) fn on_segment_syn_sent(&mut self, now: Instant, seg: &Segment) {
        if let Some(ack) = seg.ack {
            if ack <= self.snd.iss || ack > self.snd.max {
                if seg.control != Control::Rst {
                    self.replies.invalid_rst = Some(self.rst_segment(ack, None));
                }
                return;
            }
        }
        match seg.control {
            // Acceptable only if it acknowledges our SYN (checked above).
            Control::Rst if seg.ack.is_some() => self.enter_closed(CloseReason::Reset),
            Control::Syn => self.on_syn_in_syn_sent(now, seg),
            _ => {}
        }
    }

    /// The peer's SYN (or SYN|ACK) in SYN-SENT: its options answer ours,
    /// and with an ACK the connection is established; without one it is a
    /// simultaneous open, answered with SYN|ACK (same ISS).
    fn on_syn_in_syn_sent(&mut self, now: Instant, seg: &Segment) {
        self.rcv.on_syn(seg.seq);
        // Each option we offered is used only if the peer's SYN carries
        // it too.
        match seg.options.window_scale {
            Some(ws) => self.snd.wscale = ws,
            None => self.rcv.decline_wscale(),
        }
        self.opt
            .on_peer_syn(now, seg.options.sack_permitted, seg.options.timestamps);
        self.apply_syn_options(&seg.options);
        let Some(ack) = seg.ack else {
            self.state = State::SynReceived;
            self.snd
                .on_peer_syn(seg.seq, self.snd.iss, seg.window as usize);
            self.snd.nxt = self.snd.iss;
            return;
        };
        self.snd.on_peer_syn(seg.seq, ack, seg.window as usize);
        self.state = State::Established;
        let tsecr = seg.options.timestamps.map(|t| t.1);
        self.on_ack_advance(now, ack, tsecr);
        self.push_event(Event::Established);
        self.rcv.ack_pending = true;
        self.close_if_pending();
    }

    /// RFC 9293 3.10.7.4: every state from SYN-RECEIVED to TIME-WAIT, in
    /// the RFC's order: sequence number (with PAWS before it), RST, SYN,
    /// ACK, text, FIN. (URG, the sixth step, is not supported: the urgent
    /// pointer is ignored and urgent data read in line, as RFC 6093
    /// recommends.)
    pub(super) fn on_segment_synchronized(&mut self, now: Instant, seg: &Segment) {
        if self.is_retransmitted_syn(seg) {
            // Our SYN|ACK was lost: send it again.
            self.snd.nxt = self.snd.iss;
            return;
        }
        let Some(tsval) = self.check_paws(now, seg) else {
            return;
        };
        if !self.check_sequence(now, seg) {
            return;
        }
        let text = self
            .rcv
            .trim(seg.seq, &seg.payload, seg.control == Control::Fin);
        if !self.check_rst_and_syn(now, seg) {
            return;
        }
        if !self.check_ack(now, seg, tsval) {
            return;
        }
        let receiving = matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        );
        if receiving {
            self.process_text(now, text, &seg.payload);
        }
    }

    /// A retransmission of the peer's SYN in SYN-RECEIVED (our SYN|ACK
    /// was lost).
    fn is_retransmitted_syn(&self, seg: &Segment) -> bool {
        self.state == State::SynReceived
            && seg.control == Control::Syn
            && seg.ack.is_none()
            && seg.seq == self.rcv.irs
    }

    /// RFC 7323 5.3 R1 (PAWS): a segment whose TSval is older than
    /// TS.Recent is an old duplicate: ACK it and drop it (None). RSTs are
    /// exempt (RFC 5961 handles them). Some(the TSval, if any) otherwise.
    fn check_paws(&mut self, now: Instant, seg: &Segment) -> Option<Option<u32>> {
        let tsval = self.opt.tsval(seg.options.timestamps);
        if let (Some(t), true) = (tsval, seg.control != Control::Rst) {
            if self.opt.paws(now, t) == Paws::Reject {
                self.stats.paws_rejected += 1;
                self.replies.acks.invalid_ack = true;
                return None;
            }
        }
        Some(tsval)
    }

    /// First: sequence number acceptability, against RCV.WND (the window
    /// we advertised, never more than the free buffer space). An
    /// unacceptable segment is answered with an ACK (not an RST) and
    /// dropped (false).
    fn check_sequence(&mut self, now: Instant, seg: &Segment) -> bool {
        if self.rcv.acceptable(seg.seq, seg.seg_len()) {
            return true;
        }
        // A retransmission of what we have (our ACK was lost) is answered
        // like data; anything else only within the caller's budget for
        // invalid segments.
        if seg.control != Control::Rst {
            if self.rcv.is_recent_duplicate(seg.seq, seg.seg_len()) {
                self.rcv.ack_pending = true;
            } else {
                self.replies.acks.invalid_ack = true;
            }
        }
        if self.state == State::TimeWait && seg.control == Control::Fin {
            // A retransmitted FIN: re-ACK and restart 2*MSL.
            self.timers.set(Timer::TimeWait, now + self.cfg.time_wait);
        }
        false
    }

    /// Second: RST (RFC 5961 3.2): only an RST exactly at RCV.NXT resets;
    /// any other in-window RST earns a challenge ACK. In TIME-WAIT an RST
    /// is ignored (RFC 1337: it would cut TIME-WAIT short and let old
    /// duplicates into a new incarnation). Fourth: a SYN in a
    /// synchronized state earns a challenge ACK (RFC 5961 4.2). (The
    /// third, security, does not apply.) False: the segment is done.
    fn check_rst_and_syn(&mut self, now: Instant, seg: &Segment) -> bool {
        match seg.control {
            Control::Rst if self.state == State::TimeWait => false,
            Control::Rst if seg.seq == self.rcv.nxt => {
                self.enter_closed(CloseReason::Reset);
                false
            }
            Control::Rst | Control::Syn => {
                self.challenge_ack(now);
                false
            }
            _ => true,
        }
    }

    /// Seventh: segment text; eighth: FIN, once everything before it has
    /// arrived.
    fn process_text(&mut self, now: Instant, t: Trimmed<'_>, payload: &Payload) {
        if !t.text.is_empty() {
            // Untrimmed, the text is the whole payload (trimming only cuts).
            let whole = (t.text.len() == payload.len()).then_some(payload);
            self.on_text(now, t.seq, t.text, t.ack_now, whole);
        } else if t.ack_now {
            self.rcv.ack_pending = true;
        }
        if t.fin {
            self.rcv.fin_at(t.seq + t.text.len());
        }
        if self.rcv.take_fin() {
            self.on_peer_fin(now);
        }
    }

    /// Stores in-window text and decides when to ACK it: at once for
    /// out-of-order data, data that fills a gap, or a partial duplicate
    /// (RFC 5681 4.2, RFC 9293 3.10.7.4); for in-order data at the second
    /// full-sized segment or when the delayed-ACK timer fires (RFC 1122
    /// 4.2.3.2). PSH does not force an ACK (as in Linux): an application
    /// that answers a request sends the ACK on its response.
    pub(super) fn on_text(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        text: &[u8],
        ack_now: bool,
        whole: Option<&Payload>,
    ) {
        let in_order = seq == self.rcv.nxt;
        let had_held = self.rcv.buf.has_held();
        let advanced = self.rcv.take_text(seq, text, whole);
        if advanced > 0 {
            self.last_progress = now;
            self.stats.bytes_in += advanced as u64;
            self.push_event(Event::Readable);
        }
        if in_order
            && self
                .rcv
                .delay_ack(had_held, ack_now, self.cfg.delayed_ack.is_zero())
        {
            self.timers
                .set_if_idle(Timer::DelayedAck, now + self.cfg.delayed_ack);
        }
    }

    /// The peer's FIN, in order (RFC 9293 3.10.7.4, eighth), taken by the
    /// receiver: the state moves on.
    pub(super) fn on_peer_fin(&mut self, now: Instant) {
        self.push_event(Event::PeerFin);
        match self.state {
            State::SynReceived | State::Established => self.state = State::CloseWait,
            State::FinWait1 => self.state = State::Closing,
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver after the peer's SYN at 1000 (RCV.NXT 1001), a 1000-byte
    /// buffer, an MSS of 100, and a full window advertised.
    fn receiver() -> Receiver {
        let mut r = Receiver::new(1000, 100);
        r.on_syn(SeqNumber(1000));
        let w = r.window_field();
        r.on_ack_sent(w, false);
        r
    }

    #[test]
    fn acceptability_four_cases() {
        let n = SeqNumber(100);
        assert!(acceptable(n, 0, n, 0));
        assert!(!acceptable(n + 1, 0, n, 0));
        assert!(acceptable(n + 9, 0, n, 10));
        assert!(!acceptable(n + 10, 0, n, 10));
        assert!(!acceptable(n, 1, n, 0));
        assert!(acceptable(n - 5, 10, n, 10));
        assert!(!acceptable(n - 5, 5, n, 10));
        assert!(acceptable(n + 9, 5, n, 10));
        assert!(!acceptable(n + 10, 5, n, 10));
    }

    #[test]
    fn wscale_covers_buffer() {
        assert_eq!(wscale_for(65535), 0);
        assert_eq!(wscale_for(65536), 1);
        assert_eq!(wscale_for(256 * 1024), 3);
        assert_eq!(wscale_for(usize::MAX), 14);
    }

    #[test]
    fn syn_starts_the_sequence_space_after_it() {
        let r = receiver();
        assert_eq!((r.irs, r.nxt), (SeqNumber(1000), SeqNumber(1001)));
        assert_eq!(r.wnd(), 1000);
        assert_eq!(r.adv, SeqNumber(2001));
        assert_eq!(r.last_ack_sent, SeqNumber(1001));
    }

    #[test]
    fn zero_window_still_takes_a_segment_at_rcv_nxt() {
        let mut r = receiver();
        r.take_text(SeqNumber(1001), &[7; 1000], None);
        assert_eq!(r.wnd(), 0);
        assert!(r.acceptable(SeqNumber(2001), 0));
        assert!(
            r.acceptable(SeqNumber(2001), 1),
            "a FIN or probe at RCV.NXT"
        );
        assert!(!r.acceptable(SeqNumber(2002), 0));
    }

    #[test]
    fn trim_cuts_the_duplicate_front_and_the_back_beyond_the_window() {
        let r = receiver();
        let data = [1u8; 20];
        let t = r.trim(SeqNumber(991), &data, true);
        assert_eq!(
            (t.seq, t.text.len(), t.fin, t.ack_now),
            (SeqNumber(1001), 10, true, true)
        );
        let big = [2u8; 1100];
        let t = r.trim(SeqNumber(1001), &big, true);
        assert_eq!(t.text.len(), 1000);
        assert!(!t.fin, "the FIN lay beyond the window");
        assert!(t.ack_now);
        let t = r.trim(SeqNumber(1001), &data, false);
        assert_eq!((t.text.len(), t.ack_now), (20, false));
    }

    #[test]
    fn recent_duplicates_lie_within_one_buffer_below_rcv_nxt() {
        let mut r = receiver();
        r.take_text(SeqNumber(1001), &[1; 500], None);
        assert!(r.is_recent_duplicate(SeqNumber(1001), 100));
        assert!(!r.is_recent_duplicate(SeqNumber(1450), 100));
        assert!(!r.is_recent_duplicate(SeqNumber(1001) - 1000, 10));
    }

    #[test]
    fn out_of_order_text_is_reported_and_acked_at_once() {
        let mut r = receiver();
        assert_eq!(r.take_text(SeqNumber(1101), &[1; 50], None), 0);
        assert!(r.ack_pending);
        assert_eq!(
            r.sack_report.blocks(),
            &[(SeqNumber(1101), SeqNumber(1151))]
        );
        r.ack_pending = false;
        assert_eq!(r.take_text(SeqNumber(1001), &[1; 100], None), 150);
        assert!(r.sack_report.blocks().is_empty(), "the gap is filled");
        assert_eq!(r.nxt, SeqNumber(1151));
    }

    #[test]
    fn rfc1122_second_full_segment_is_acked_the_first_may_wait() {
        let mut r = receiver();
        r.take_text(SeqNumber(1001), &[1; 100], None);
        assert!(r.delay_ack(false, false, false));
        assert!(!r.ack_pending);
        r.take_text(SeqNumber(1101), &[1; 100], None);
        assert!(!r.delay_ack(false, false, false));
        assert!(r.ack_pending);
        // Filling a gap, asked to, or delayed ACKs off: at once.
        let mut r = receiver();
        assert!(!r.delay_ack(true, false, false));
        let mut r = receiver();
        assert!(!r.delay_ack(false, true, false));
        let mut r = receiver();
        assert!(!r.delay_ack(false, false, true));
    }

    #[test]
    fn fin_is_taken_once_after_everything_before_it() {
        let mut r = receiver();
        r.fin_at(SeqNumber(1101));
        r.fin_at(SeqNumber(1500));
        assert_eq!(r.fin, Some(SeqNumber(1101)), "the first FIN seen counts");
        assert!(!r.take_fin(), "a gap before it");
        r.take_text(SeqNumber(1001), &[1; 100], None);
        assert!(r.take_fin());
        assert_eq!(r.nxt, SeqNumber(1102));
        assert!(r.fin_received && r.ack_pending);
        assert!(!r.take_fin(), "only once");
    }

    #[test]
    fn rfc9293_receiver_sws_avoidance_holds_small_window_openings() {
        let mut r = receiver();
        assert_eq!(r.sws_threshold(), 100);
        r.take_text(SeqNumber(1001), &[1; 1000], None);
        let w = r.window_field();
        r.on_ack_sent(w, false);
        assert_eq!(w, 0);
        let mut out = [0u8; 50];
        assert_eq!(r.read(&mut out, true), 50);
        assert_eq!(r.window_field(), 0, "50 bytes is less than one MSS");
        assert!(!r.ack_pending);
        let mut out = [0u8; 500];
        assert_eq!(r.read(&mut out, true), 500);
        assert_eq!(r.window_field(), 550);
        assert!(r.ack_pending, "a window update is due");
    }

    #[test]
    fn the_advertised_edge_never_moves_left() {
        let mut r = receiver();
        let edge = r.adv;
        r.take_text(SeqNumber(1001), &[1; 600], None);
        r.on_ack_sent(0, false);
        assert_eq!(r.adv, edge);
        assert_eq!(r.last_ack_sent, SeqNumber(1601));
    }

    #[test]
    fn window_scaling_offered_and_declined() {
        let mut r = Receiver::new(1 << 20, 1460);
        r.offer_wscale(1 << 20);
        assert_eq!((r.wscale, r.syn_wscale), (5, Some(5)));
        assert_eq!(r.syn_window(), u16::MAX, "a SYN's window is never scaled");
        r.decline_wscale();
        assert_eq!((r.wscale, r.syn_wscale), (0, None));
    }
}
