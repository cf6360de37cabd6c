//! Sending (RFC 9293 section 3.8, RFC 9293 3.8.6 for the window, RFC 1122
//! 4.2.3.4 for Nagle and silly-window avoidance): what goes out next, new
//! data, persist, and how each segment is built. [`Sender`] holds the send
//! sequence space; the `Connection` methods below decide what to send.

use super::*;
use crate::send_buffer::SendBuffer;

/// The send sequence space (RFC 9293 3.3.1), the send buffer, and the
/// state Nagle, sender SWS avoidance and persist keep.
///
/// It exists so the send side of the TCB is one value, with the rules
/// that only move its own numbers (the window update, SND.UNA advancing,
/// recording what was sent) next to it.
///
/// Invariants:
/// - SND.UNA <= SND.NXT <= SND.MAX (`una`, `nxt`, `max`), checked in
///   debug builds after every call ([`Sender::check`]);
/// - the send buffer holds exactly the bytes from SND.UNA (after the
///   SYN) to its end; nothing beyond its end (plus the SYN and FIN) is
///   ever sent;
/// - `fin_seq`, once set, is the buffer's end: no byte is queued after it;
/// - `max_wnd` >= every window the peer offered; `wnd` is taken only
///   from a segment newer than (SND.WL1, SND.WL2) ([`Sender::update_window`]);
/// - `send_mss` <= `mss`, both at least 1.
#[derive(Clone, Debug)]
pub(super) struct Sender {
    /// Our initial sequence number (ISS); our SYN occupies it.
    pub(super) iss: SeqNumber,
    /// SND.UNA: oldest unacknowledged sequence number.
    pub(super) una: SeqNumber,
    /// SND.NXT: next new sequence number to send. Retransmissions are
    /// sent from the scoreboard without moving it; only a SYN
    /// retransmission rewinds it.
    pub(super) nxt: SeqNumber,
    /// Highest sequence number sent so far.
    pub(super) max: SeqNumber,
    /// SND.WND: the peer's window in bytes, scaling applied.
    pub(super) wnd: usize,
    /// Largest window the peer ever offered (RFC 5961 MAX.SND.WND, and
    /// the sender SWS rule of RFC 9293 3.8.6.2.1).
    pub(super) max_wnd: usize,
    /// SND.WL1: sequence number of the segment that last set the window.
    pub(super) wl1: SeqNumber,
    /// SND.WL2: acknowledgment number of that segment.
    pub(super) wl2: SeqNumber,
    /// Shift applied to the peer's window field (0 unless negotiated).
    pub(super) wscale: u8,
    /// min(peer's MSS, our MTU's MSS).
    pub(super) mss: usize,
    /// Payload of a full-sized segment: `mss` less the timestamps option.
    pub(super) send_mss: usize,
    /// Bytes queued by the application and not yet acknowledged.
    pub(super) buf: SendBuffer,
    /// Sequence number of our FIN, fixed when the application closes.
    pub(super) fin_seq: Option<SeqNumber>,
    /// Nagle's algorithm is off (TCP_NODELAY).
    pub(super) nodelay: bool,
    /// End of the last sub-MSS segment sent (Minshall's Nagle variant:
    /// hold a small segment only while another small one is unacked).
    pub(super) sml: SeqNumber,
    /// The SWS override timeout fired: a held sub-MSS segment may go.
    pub(super) sws_override_due: bool,
    /// When new data was last sent (RFC 5681 4.1 restart after idle).
    pub(super) last_data_sent: Option<Instant>,
    /// send() was short: tell the application when space opens.
    pub(super) want_writable: bool,
    /// Zero-window probing.
    pub(super) persist: Persist,
}

impl Sender {
    /// Nothing sent yet: everything at `iss`, the buffer's data starting
    /// after the SYN.
    pub(super) fn new(iss: SeqNumber, mss: usize, buffer: usize, nodelay: bool) -> Self {
        Sender {
            iss,
            una: iss,
            nxt: iss,
            max: iss,
            wnd: 0,
            max_wnd: 0,
            wl1: SeqNumber(0),
            wl2: iss,
            wscale: 0,
            mss,
            send_mss: mss,
            buf: SendBuffer::new(buffer, iss + 1),
            fin_seq: None,
            nodelay,
            sml: iss,
            sws_override_due: false,
            last_data_sent: None,
            want_writable: false,
            persist: Persist::default(),
        }
    }

    /// The peer's SYN (sequence `seq`, window `wnd`, unscaled) sets the
    /// window; `wl2` is the acknowledgment it counts as.
    pub(super) fn on_peer_syn(&mut self, seq: SeqNumber, wl2: SeqNumber, wnd: usize) {
        self.wnd = wnd;
        self.max_wnd = wnd;
        self.wl1 = seq;
        self.wl2 = wl2;
    }

    /// A segment's window field in bytes, scaling applied.
    pub(super) fn scaled(&self, window: u16) -> usize {
        (window as usize) << self.wscale
    }

    /// Sets the window from a segment (`seq`, `ack`, `wnd` scaled) if it
    /// is newer than the one that set it last (SND.WL1/WL2 keep old
    /// segments from reopening it). True if taken.
    pub(super) fn update_window(&mut self, seq: SeqNumber, ack: SeqNumber, wnd: usize) -> bool {
        let newer = self.wl1 < seq || (self.wl1 == seq && self.wl2 <= ack);
        if ack < self.una || !newer {
            return false;
        }
        self.set_window(seq, ack, wnd);
        true
    }

    /// The window becomes `wnd` (scaled), set by the segment `seq`/`ack`.
    pub(super) fn set_window(&mut self, seq: SeqNumber, ack: SeqNumber, wnd: usize) {
        self.wnd = wnd;
        self.max_wnd = self.max_wnd.max(wnd);
        self.wl1 = seq;
        self.wl2 = ack;
    }

    /// SND.UNA moves forward to `ack`; returns the buffer bytes released.
    pub(super) fn advance(&mut self, ack: SeqNumber) -> usize {
        let released = self.buf.ack_to(ack);
        self.una = ack;
        if self.nxt < ack {
            self.nxt = ack;
        }
        // Nagle's marker follows too (see `LossRecovery::follow_una`): a
        // last small segment 2 GiB back would read as still outstanding.
        if self.sml < ack {
            self.sml = ack;
        }
        released
    }

    /// `seg_len` sequence numbers from `seq` went out: SND.MAX and SND.NXT
    /// move past them. Returns how many were new (beyond the old SND.MAX).
    pub(super) fn record_sent(&mut self, seq: SeqNumber, seg_len: usize) -> usize {
        let end = seq + seg_len;
        let new = end.distance_from(self.max);
        if end > self.max {
            self.max = end;
        }
        self.nxt = self.nxt.max(end);
        new
    }

    /// Sequence numbers sent and not acknowledged.
    pub(super) fn outstanding(&self) -> usize {
        self.max.distance_from(self.una)
    }

    /// Bytes queued and not sent yet.
    pub(super) fn unsent(&self) -> usize {
        self.buf.end().distance_from(self.nxt)
    }

    /// Our FIN is queued and not sent yet (or being resent from SND.NXT).
    pub(super) fn fin_unsent(&self) -> bool {
        self.fin_seq.is_some_and(|f| self.nxt <= f)
    }

    /// Something waits for the peer's window: unsent data, an unsent FIN,
    /// or data in flight.
    pub(super) fn waiting(&self) -> bool {
        self.buf.end() > self.nxt || self.fin_unsent() || self.una < self.max
    }

    /// Room the peer's window leaves from SND.NXT.
    pub(super) fn window_room(&self) -> usize {
        (self.una + self.wnd).distance_from(self.nxt)
    }

    /// The FIN follows the data queued so far (the application closed).
    pub(super) fn queue_fin(&mut self) {
        self.fin_seq = Some(self.buf.end());
    }

    /// Nagle (RFC 9293 3.7.4, Minshall's form): hold a small segment while
    /// another small one is unacknowledged, unless Nagle is off or we are
    /// closing (the FIN flushes it).
    pub(super) fn nagle_holds(&self) -> bool {
        !self.nodelay && self.fin_seq.is_none() && self.sml > self.una
    }

    /// A backup takes the connection over (`checkpoint.rs`) at `now`: the
    /// dead primary may have sent all the queued data and our FIN after
    /// the checkpoint. SND.MAX covers it all, so the peer's ACKs of it
    /// are acceptable, and SND.NXT with it: what lies below goes again as
    /// lost, from SND.UNA.
    pub(super) fn assume_all_sent(&mut self, now: Instant) {
        let end = self.buf.end() + self.fin_seq.is_some() as usize;
        if end > self.max {
            self.max = end;
        }
        self.nxt = self.max;
        self.last_data_sent = Some(now);
    }

    /// Debug builds check the invariants (`closed`: the connection is
    /// CLOSED, where the buffer no longer bounds what was sent).
    pub(super) fn check(&self, closed: bool) {
        debug_assert!(
            self.una <= self.nxt && self.nxt <= self.max,
            "una {} nxt {} max {}",
            self.una,
            self.nxt,
            self.max
        );
        debug_assert!(
            closed || self.buf.end() + self.fin_seq.is_some() as usize + 1 >= self.max,
            "sent beyond the queued data"
        );
    }
}

/// What a persist timeout calls for ([`Persist::on_expiry`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum PersistExpiry {
    /// Send a window probe.
    Probe,
    /// Give up on the peer, for this reason.
    GiveUp(CloseReason),
}

/// Zero-window probing (RFC 9293 3.8.6.1).
///
/// It exists so the persist timer's backoff and its limits (probes
/// unanswered, time at zero window) are one value with its own rules.
///
/// Invariants:
/// - `zero_window_since` is set exactly while the peer's window is zero
///   with our data waiting (the persist episode); `backoff` is zero
///   outside an episode;
/// - `unanswered` counts probes since the last acceptable ACK;
/// - `probe_pending` is set by a timeout and cleared when the probe goes
///   out.
#[derive(Clone, Debug, Default)]
pub(super) struct Persist {
    /// Doublings of the probe interval so far in this episode.
    pub(super) backoff: u32,
    /// Since when the peer's window has been zero with our data waiting
    /// (the start of the current persist episode).
    pub(super) zero_window_since: Option<Instant>,
    /// Window probes sent since the peer last sent an acceptable ACK.
    pub(super) unanswered: u32,
    /// A window probe is due.
    pub(super) probe_pending: bool,
}

impl Persist {
    /// When the next probe is due, from `now`: the RTO doubled per probe
    /// (at most `rto_max`), and never after the zero-window limit runs
    /// out (the probe that finds it passed is on time). Starts the
    /// episode if none runs.
    pub(super) fn next_probe(
        &mut self,
        now: Instant,
        rto: Duration,
        rto_max: Duration,
        limit: Option<Duration>,
    ) -> Instant {
        let since = *self.zero_window_since.get_or_insert(now);
        let factor = 1u32 << self.backoff.min(16);
        let mut at = now + rto.saturating_mul(factor).min(rto_max);
        if let Some(limit) = limit {
            at = at.min(since + limit);
        }
        at
    }

    /// The window opened (or nothing waits): the episode ends.
    pub(super) fn end_episode(&mut self) {
        self.backoff = 0;
        self.zero_window_since = None;
    }

    /// The persist timer fired: give up after `max_probes` unanswered
    /// probes or once the window stayed zero for `limit`; else probe and
    /// back off.
    pub(super) fn on_expiry(
        &mut self,
        now: Instant,
        max_probes: u32,
        limit: Option<Duration>,
    ) -> PersistExpiry {
        if self.unanswered >= max_probes {
            return PersistExpiry::GiveUp(CloseReason::TimedOut);
        }
        if let (Some(since), Some(limit)) = (self.zero_window_since, limit) {
            if now.saturating_duration_since(since) >= limit {
                return PersistExpiry::GiveUp(CloseReason::ZeroWindow);
            }
        }
        self.probe_pending = true;
        self.unanswered += 1;
        self.backoff = self.backoff.saturating_add(1);
        PersistExpiry::Probe
    }
}

/// What [`Connection::next_segment`] decided to send.
pub(super) enum Next {
    /// A whole segment.
    Segment(Segment),
    /// A large run of new data: its header (empty payload) and length;
    /// the payload stays in the send buffer (see
    /// [`Connection::poll_transmit_borrowed`]).
    Large(Segment, usize),
}

/// One segment to send, from [`Connection::poll_transmit_borrowed`].
///
/// It exists so a bulk sender writes a large run of new data straight
/// from the send buffer, with no copy in between.
#[derive(Debug)]
pub enum Transmit<'a> {
    /// A whole segment, payload included.
    Segment(Segment),
    /// A segment of several pieces: the header (its payload empty), the
    /// payload as it lies in the send buffer (two slices, in order), and
    /// the piece size the device must cut it at (TSO's segment size).
    Large {
        /// Every header field of the segment; its payload is `data`.
        header: Segment,
        /// The payload: the first slice, then the second (often empty).
        data: [&'a [u8]; 2],
        /// The payload of each piece but possibly the last.
        piece: usize,
    },
}

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
        self.poll_transmit_large(now, spare, 0)
    }

    /// [`Connection::poll_transmit_reusing`] for a sender whose device
    /// cuts large segments itself (TSO): new data that fills more than
    /// one segment may leave as one segment of up to `large` bytes, made
    /// of whole pieces of [`Connection::large_piece`] bytes each, which
    /// the device must cut at that size (every piece then carries this
    /// segment's header, PSH on the last). Each is the very segment
    /// [`Connection::poll_transmit_reusing`] would have made in turn.
    ///
    /// It exists because per-segment work dominated a bulk send: a
    /// 64 KiB burst was 45 calls through the send path, each with its
    /// bookkeeping (RACK record, timers, rate sample) and a copy into the
    /// burst's buffer; the sequence-range bookkeeping takes one range as
    /// well as 45. Retransmissions, probes and the FIN stay one segment
    /// each. `large` of 0 or below two pieces: the plain call.
    pub fn poll_transmit_large(
        &mut self,
        now: Instant,
        spare: &mut Vec<u8>,
        large: usize,
    ) -> Option<Segment> {
        match self.next_sent(now, spare, large, false) {
            Some(Next::Segment(s)) => Some(s),
            // Not asked for (`borrow` false): never made.
            Some(Next::Large(..)) | None => None,
        }
    }

    /// [`Connection::poll_transmit_large`] without copying a large
    /// segment's payload: a segment of more than one piece comes as
    /// [`Transmit::Large`], its header (an empty payload) and the send
    /// buffer's bytes it carries, which the caller writes out as they lie
    /// (a vectored write) before it touches the connection again. Other
    /// segments come whole, as [`Transmit::Segment`].
    ///
    /// It exists because after large segments the copies were what a
    /// bulk send cost in user space: the send buffer into the segment,
    /// the segment into the frame, each a memmove of every byte.
    pub fn poll_transmit_borrowed(
        &mut self,
        now: Instant,
        spare: &mut Vec<u8>,
        large: usize,
    ) -> Option<Transmit<'_>> {
        match self.next_sent(now, spare, large, true)? {
            Next::Segment(s) => Some(Transmit::Segment(s)),
            Next::Large(header, len) => {
                let data = self.snd.buf.slices_at(header.seq, len);
                Some(Transmit::Large {
                    header,
                    data,
                    piece: self.large_piece(),
                })
            }
        }
    }

    /// [`Connection::next_segment`], then what both transmit calls do
    /// after it: the consistency check, the segments counted (a large
    /// one as the pieces the device cuts it into), and the persist timer
    /// looked at when nothing is due.
    fn next_sent(
        &mut self,
        now: Instant,
        spare: &mut Vec<u8>,
        large: usize,
        borrow: bool,
    ) -> Option<Next> {
        let next = self.next_segment(now, spare, large, borrow);
        self.debug_check();
        let len = match &next {
            Some(Next::Segment(s)) => s.payload.len(),
            Some(Next::Large(_, len)) => *len,
            None => {
                self.update_persist(now);
                return None;
            }
        };
        self.stats.segments_out += len.div_ceil(self.large_piece()).max(1) as u64;
        next
    }

    /// The size of each piece of a large segment
    /// ([`Connection::poll_transmit_large`]): the most payload one
    /// segment carries now (the MSS less the options this side's
    /// segments carry).
    pub fn large_piece(&self) -> usize {
        let send_mss = self.snd.send_mss;
        let floor = send_mss.clamp(1, MIN_SND_MSS - TIMESTAMPS_OPTION_LEN);
        send_mss.saturating_sub(self.sack_option_len()).max(floor)
    }

    /// What to send next, in the order RFC 9293 and the recovery RFCs
    /// put it; with `borrow`, a large run of new data comes as its header
    /// and length ([`Next::Large`]), its payload left in the send buffer.
    pub(super) fn next_segment(
        &mut self,
        now: Instant,
        spare: &mut Vec<u8>,
        large: usize,
        borrow: bool,
    ) -> Option<Next> {
        if let Some(rst) = self.replies.rst_pending.take() {
            return Some(Next::Segment(rst));
        }
        match self.state {
            State::Closed => return None,
            State::SynSent | State::SynReceived if self.snd.nxt == self.snd.iss => {
                if self.snd.max != self.snd.iss {
                    self.count_retransmission();
                }
                let seg = self.segment(now, self.snd.iss, Control::Syn, Vec::new());
                self.on_sent(now, self.snd.iss, 1, 0);
                return Some(Next::Segment(seg));
            }
            State::SynSent => return None,
            _ => {}
        }
        if self.rack.tlp_pending {
            self.rack.tlp_pending = false;
            if let Some(seg) = self.loss_probe(now, spare) {
                return Some(Next::Segment(seg));
            }
        }
        if let Some(seg) = self.next_retransmission(now, spare) {
            return Some(Next::Segment(seg));
        }
        if let Some(next) = self.next_data_segment(now, spare, large, borrow) {
            return Some(next);
        }
        if self.snd.persist.probe_pending {
            // A zero-window probe that needs no sequence space: an old
            // sequence number makes the peer answer with an ACK carrying
            // its current window.
            self.snd.persist.probe_pending = false;
            let seg = self.segment(now, self.snd.una - 1, Control::None, Vec::new());
            return Some(Next::Segment(seg));
        }
        if self.rcv.ack_pending {
            let seg = self.segment(now, self.snd.nxt, Control::None, Vec::new());
            return Some(Next::Segment(seg));
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
        self.opt
            .sack_option_len(self.rcv.sack_report.blocks().len())
    }

    /// New data (and FIN) from SND.NXT, limited by the peer's window,
    /// cwnd - pipe and the MSS, held back by Nagle (RFC 9293 3.7.4, in
    /// Minshall's form) and sender SWS avoidance (RFC 9293 3.8.6.2.1).
    pub(super) fn next_data_segment(
        &mut self,
        now: Instant,
        spare: &mut Vec<u8>,
        large: usize,
        borrow: bool,
    ) -> Option<Next> {
        if !self.is_sending_state() {
            return None;
        }
        if self.snd.unsent() == 0 && !self.snd.fin_unsent() {
            self.mark_app_limited();
            return None;
        }
        self.restart_after_idle(now);
        // A large run lent where it lies: at most what two pieces of the
        // send buffer hold from SND.NXT (the rest goes next time).
        let large = if borrow && large > 0 {
            self.snd.buf.contiguous(self.snd.nxt, large)
        } else {
            large
        };
        let len = self.data_allowance(now, large)?;
        self.snd.sws_override_due = false;
        self.timers.stop(Timer::SendOverride);
        let seq = self.snd.nxt;
        let data_end = self.snd.buf.end();
        let fin = self.snd.fin_seq == Some(seq + len);
        let next = if borrow && len > self.large_piece() {
            // A large run never carries the FIN (data_allowance).
            let mut header = self.segment(now, seq, Control::None, Vec::new());
            header.psh = seq + len == data_end;
            Next::Large(header, len)
        } else {
            Next::Segment(self.data_segment(now, seq, len, fin, data_end, spare))
        };
        if len > 0 && len < self.snd.send_mss {
            self.snd.sml = seq + len;
        }
        if len > 0 {
            self.snd.last_data_sent = Some(now);
        }
        self.on_sent(now, seq, len + fin as usize, len);
        Some(next)
    }

    /// draft-cheng-iccrg-delivery-rate-estimation 3.4: the application
    /// has nothing more to send though cwnd has room, so the rate samples
    /// of what is sent until the flight is delivered say less than the
    /// path can carry.
    fn mark_app_limited(&mut self) {
        if self.rec.rate.is_none() {
            return;
        }
        let pipe = self.pipe();
        if pipe < self.rec.cc.window() {
            if let Some(r) = &mut self.rec.rate {
                r.on_app_limited(pipe);
            }
        }
    }

    /// RFC 5681 4.1: after an idle period longer than the RTO, restart
    /// from (at most) the initial window.
    fn restart_after_idle(&mut self, now: Instant) {
        let rto = self.rec.rtt.rto();
        if self.snd.una == self.snd.max
            && self
                .snd
                .last_data_sent
                .is_some_and(|t| now.saturating_duration_since(t) > rto)
        {
            self.rec.cc.on_idle_restart();
            self.snd.last_data_sent = Some(now);
        }
    }

    /// How many bytes of new data may go now (0: a lone FIN), or None
    /// when the window, cwnd, Nagle or sender SWS avoidance hold it.
    /// With `large` (see [`Connection::poll_transmit_large`]), a run of
    /// whole segments, at most `large` bytes, never the one that would
    /// carry the FIN.
    fn data_allowance(&mut self, now: Instant, large: usize) -> Option<usize> {
        let unsent = self.snd.unsent();
        let fin_unsent = self.snd.fin_unsent();
        // SACK blocks come out of the segment too, but never take it below
        // what the MSS floor leaves once timestamps are in.
        let send_mss = self.snd.send_mss;
        let max_seg = self.large_piece();
        let wnd_avail = self.snd.window_room();
        // RFC 3042 (limited transmit): the first two duplicate ACKs each
        // let one new segment out beyond cwnd, to earn the third.
        let limited_transmit = if self.rec.mode.is_none() {
            (self.rec.dup_acks.min(2) as usize) * send_mss
        } else {
            0
        };
        let cwnd = self.rec.cc.window().min(MAX_FLIGHT_SEGMENTS * send_mss);
        let cwnd_avail = (cwnd + limited_transmit).saturating_sub(self.pipe());
        let room = unsent.min(wnd_avail).min(cwnd_avail);
        let len = room.min(max_seg);
        if len == max_seg && large >= 2 * max_seg {
            let mut run = room.min(large) / max_seg * max_seg;
            // The segment that carries the FIN goes alone (a FIN is no
            // piece of a run the device cuts).
            if self.snd.fin_seq == Some(self.snd.nxt + run) {
                run -= max_seg;
            }
            return Some(run.max(max_seg));
        }
        if len == 0 {
            // A lone FIN (no data left) needs no window.
            return (unsent == 0 && fin_unsent).then_some(0);
        }
        if len < max_seg {
            if len == unsent {
                // Nagle: all queued data fits in a small segment.
                if self.snd.nagle_holds() {
                    return None;
                }
            } else if cwnd_avail < wnd_avail {
                // cwnd-limited: the ACKs in flight will open it.
                return None;
            } else if len < self.snd.max_wnd / 2 && !self.snd.sws_override_due {
                // Sender SWS avoidance: the peer's window allows only a
                // sliver; wait for it to open, or for the override timeout.
                self.timers
                    .set_if_idle(Timer::SendOverride, now + self.cfg.sws_override);
                return None;
            }
        }
        Some(len)
    }

    /// Bookkeeping after sending `seg_len` sequence numbers from `seq`
    /// (`data_len` of them payload): SND.MAX/NXT, the timed segment, the
    /// RACK send record, the retransmission and probe timers.
    pub(super) fn on_sent(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        seg_len: usize,
        data_len: usize,
    ) {
        let end = seq + seg_len;
        let first_send = seq >= self.snd.max;
        let idle = self.snd.una == self.snd.max;
        let new_data = self.snd.record_sent(seq, seg_len);
        if new_data > 0 {
            self.stats.bytes_out += new_data.min(data_len) as u64;
            if !self.opt.ts_ok && first_send && self.rec.rtt_sample.is_none() {
                self.rec.rtt_sample = Some((end, now));
            }
        }
        if new_data > 0 && seq != self.snd.iss {
            // RACK and the delivery rate track data (and FIN), not the SYN.
            self.rack.record_sent(end, now);
            if let Some(r) = self.rec.rate.as_mut() {
                r.on_send(now, end, idle);
            }
        }
        if !self.timers.is_running(Timer::Retransmit) {
            self.timers.set(Timer::Retransmit, now + self.rec.rtt.rto());
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
        let blocked = self.is_sending_state() && self.snd.wnd == 0 && self.snd.waiting();
        if !blocked {
            self.timers.stop(Timer::Persist);
            self.snd.persist.end_episode();
        } else if !self.timers.is_running(Timer::Persist) && !self.snd.persist.probe_pending {
            let rto = self.rec.rtt.rto();
            let at = self.snd.persist.next_probe(
                now,
                rto,
                self.cfg.rto_max,
                self.cfg.zero_window_timeout,
            );
            self.timers.set(Timer::Persist, at);
        }
    }

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
        self.snd.buf.read_at(seq, len, &mut payload);
        let control = if fin { Control::Fin } else { Control::None };
        let mut seg = self.segment(now, seq, control, payload);
        seg.psh = len > 0 && seq + len == data_end;
        seg
    }

    /// Builds a segment from our side carrying ACK (except our first SYN),
    /// the current window and the negotiated options.
    pub(super) fn segment(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        control: Control,
        payload: Vec<u8>,
    ) -> Segment {
        let syn = control == Control::Syn;
        let ack = (self.state != State::SynSent).then_some(self.rcv.nxt);
        let window = if syn {
            self.rcv.syn_window()
        } else {
            self.rcv.window_field()
        };
        if ack.is_some() {
            self.timers.stop(Timer::DelayedAck);
            self.rcv.on_ack_sent(window, syn);
        }
        let timestamps = self.opt.ts_ok.then(|| {
            let ecr = if ack.is_some() { self.opt.ts_recent } else { 0 };
            (self.opt.ts_val(now), ecr)
        });
        let options = if syn {
            TcpOptions {
                mss: Some(self.cfg.mss(self.tuple.is_ipv6())),
                window_scale: self.rcv.syn_wscale,
                sack_permitted: self.opt.sack_ok,
                timestamps,
                sack_blocks: Vec::new(),
            }
        } else {
            let sack_blocks = if self.opt.sack_ok && ack.is_some() {
                self.rcv.sack_report.blocks().to_vec()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender with ISS 1000 whose SYN is acknowledged, a 1000-byte
    /// buffer, an MSS of 100 and a peer window of 500.
    fn sender() -> Sender {
        let mut s = Sender::new(SeqNumber(1000), 100, 1000, false);
        s.record_sent(SeqNumber(1000), 1);
        s.advance(SeqNumber(1001));
        s.on_peer_syn(SeqNumber(5000), SeqNumber(1001), 500);
        s
    }

    #[test]
    fn sending_moves_nxt_and_max_and_counts_new_bytes() {
        let mut s = sender();
        assert_eq!(s.buf.push(&[1; 300]), 300);
        assert_eq!(s.unsent(), 300);
        assert_eq!(s.record_sent(SeqNumber(1001), 200), 200);
        assert_eq!((s.nxt, s.max), (SeqNumber(1201), SeqNumber(1201)));
        assert_eq!(s.outstanding(), 200);
        assert_eq!(s.window_room(), 300);
        // A retransmission is not new.
        assert_eq!(s.record_sent(SeqNumber(1001), 100), 0);
        assert_eq!(s.advance(SeqNumber(1101)), 100);
        assert_eq!(s.una, SeqNumber(1101));
        s.check(false);
    }

    #[test]
    fn advance_past_nxt_pulls_nxt_along() {
        let mut s = sender();
        s.buf.push(&[1; 300]);
        s.record_sent(SeqNumber(1001), 300);
        s.nxt = SeqNumber(1001); // rewound, as after an RTO of the SYN
        s.advance(SeqNumber(1201));
        assert_eq!(s.nxt, SeqNumber(1201));
        s.check(false);
    }

    #[test]
    fn rfc9293_window_update_only_from_newer_segments() {
        let mut s = sender();
        assert!(s.update_window(SeqNumber(5001), SeqNumber(1001), 800));
        assert_eq!((s.wnd, s.max_wnd), (800, 800));
        // An older segment (lower SEG.SEQ) cannot shrink or reopen it.
        assert!(!s.update_window(SeqNumber(5000), SeqNumber(1001), 0));
        // Same SEG.SEQ, an ACK no older: taken.
        assert!(s.update_window(SeqNumber(5001), SeqNumber(1001), 100));
        assert_eq!((s.wnd, s.max_wnd), (100, 800));
        // An ACK below SND.UNA: never.
        s.advance(SeqNumber(1001));
        assert!(!s.update_window(SeqNumber(6000), SeqNumber(1000), 900));
    }

    #[test]
    fn scaled_window_applies_the_peer_shift() {
        let mut s = sender();
        s.wscale = 7;
        assert_eq!(s.scaled(2), 256);
    }

    #[test]
    fn fin_follows_the_queued_data() {
        let mut s = sender();
        s.buf.push(&[1; 10]);
        s.queue_fin();
        assert_eq!(s.fin_seq, Some(SeqNumber(1011)));
        assert!(s.fin_unsent());
        s.record_sent(SeqNumber(1001), 11);
        assert!(!s.fin_unsent());
        assert!(s.waiting(), "in flight");
        s.advance(SeqNumber(1012));
        assert!(!s.waiting());
        s.check(false);
    }

    #[test]
    fn minshall_nagle_holds_while_a_small_segment_is_unacked() {
        let mut s = sender();
        assert!(!s.nagle_holds());
        s.sml = SeqNumber(1011);
        assert!(s.nagle_holds());
        s.nodelay = true;
        assert!(!s.nagle_holds());
        s.nodelay = false;
        s.queue_fin();
        assert!(!s.nagle_holds(), "closing flushes");
        let mut s = sender();
        s.sml = SeqNumber(1011);
        s.advance(SeqNumber(1011));
        assert!(!s.nagle_holds(), "acknowledged");
    }

    #[test]
    fn persist_backs_off_and_caps_at_rto_max() {
        let t0 = Instant::now();
        let rto = Duration::from_secs(1);
        let max = Duration::from_secs(5);
        let mut p = Persist::default();
        assert_eq!(p.next_probe(t0, rto, max, None), t0 + rto);
        assert_eq!(p.zero_window_since, Some(t0));
        assert_eq!(p.on_expiry(t0 + rto, 10, None), PersistExpiry::Probe);
        assert!(p.probe_pending);
        assert_eq!(p.next_probe(t0, rto, max, None), t0 + 2 * rto);
        p.backoff = 10;
        assert_eq!(p.next_probe(t0, rto, max, None), t0 + max);
        p.end_episode();
        assert_eq!((p.backoff, p.zero_window_since), (0, None));
    }

    #[test]
    fn persist_gives_up_on_unanswered_probes_or_the_zero_window_limit() {
        let t0 = Instant::now();
        let rto = Duration::from_secs(1);
        let limit = Some(Duration::from_secs(3));
        // The probe that finds the limit passed is on time.
        let mut p = Persist {
            backoff: 3,
            ..Persist::default()
        };
        assert_eq!(
            p.next_probe(t0, rto, Duration::from_secs(60), limit),
            t0 + Duration::from_secs(3)
        );
        assert_eq!(
            p.on_expiry(t0 + Duration::from_secs(3), 10, limit),
            PersistExpiry::GiveUp(CloseReason::ZeroWindow)
        );
        let mut p = Persist::default();
        for _ in 0..2 {
            assert_eq!(p.on_expiry(t0, 2, None), PersistExpiry::Probe);
        }
        assert_eq!(
            p.on_expiry(t0, 2, None),
            PersistExpiry::GiveUp(CloseReason::TimedOut)
        );
    }
}
