//! One TCP connection: the RFC 9293 state machine, sans-IO.
//!
//! A segment enters through [`Connection::on_segment`], time through
//! [`Connection::on_timeout`], application data through
//! [`Connection::send`] / [`Connection::recv`]; segments leave through
//! [`Connection::poll_transmit`] and notifications through
//! [`Connection::poll_event`]. Field names follow the RFC (`snd_una`,
//! `snd_nxt`, `rcv_nxt`, ...) so the code can be read against it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::reassembly::RecvBuffer;
use crate::rtt::RttEstimator;
use crate::send_buffer::SendBuffer;
use crate::seq::SeqNumber;
use crate::timers::{Timer, TimerTable};
use crate::tuple::FourTuple;
use crate::wire::{Control, Segment, TcpOptions};

/// The RFC 9293 connection states (LISTEN lives in the listener, not here).
///
/// It exists so callers (status, tests, the listener's bookkeeping) can see
/// where a connection is without reaching into it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    /// Our SYN is sent, waiting for the peer's SYN|ACK (active open).
    SynSent,
    /// The peer's SYN is answered, waiting for the ACK of our SYN.
    SynReceived,
    /// Data flows both ways.
    Established,
    /// We closed; our FIN is not yet acknowledged.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's FIN.
    FinWait2,
    /// The peer closed; we may still send.
    CloseWait,
    /// Both closed at once; waiting for the ACK of our FIN.
    Closing,
    /// The peer closed first, then we did; waiting for the ACK of our FIN.
    LastAck,
    /// Both FINs acknowledged; lingering so stray segments die out.
    TimeWait,
    /// Gone; the connection can be dropped.
    Closed,
}

/// Why a connection reached CLOSED.
///
/// It exists so the listener can count resets and timeouts apart from
/// orderly closes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CloseReason {
    /// Both sides closed and TIME-WAIT or LAST-ACK finished.
    Normal,
    /// The peer sent an acceptable RST.
    Reset,
    /// Retransmissions ran out (we sent RST).
    TimedOut,
    /// The application called [`Connection::abort`].
    Aborted,
}

/// Something the application should know about.
///
/// It exists so the application is told when to act instead of polling
/// every connection's buffers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// Handshake done.
    Established,
    /// New in-order data is ready for recv().
    Readable,
    /// The peer's FIN arrived (after all its data).
    PeerFin,
    /// Send space opened after send() was short.
    Writable,
    /// A segment was retransmitted (for counters / trace).
    Retransmit,
    /// The connection reached CLOSED; it can be dropped.
    Closed(CloseReason),
}

/// What the caller must do after [`Connection::on_segment`].
///
/// It exists because one case (a new SYN reaching TIME-WAIT) needs the
/// caller to replace the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Disposition {
    /// Nothing more to do.
    Handled,
    /// A SYN arrived in TIME-WAIT that RFC 9293 lets open a new incarnation:
    /// the caller drops this connection and calls `Connection::accept` with the same segment.
    Reincarnate,
}

/// Counters of one connection.
///
/// It exists for `vnic status` and the http app's `/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Payload bytes received in order (each byte once).
    pub bytes_in: u64,
    /// Payload bytes sent for the first time (retransmissions excluded).
    pub bytes_out: u64,
    /// Retransmission timeouts that fired.
    pub retransmissions: u64,
    /// Smoothed RTT, once measured.
    pub srtt: Option<Duration>,
    /// Current retransmission timeout (backoff included).
    pub rto: Duration,
    /// Segments handed to `on_segment`.
    pub segments_in: u64,
    /// Segments returned by `poll_transmit`.
    pub segments_out: u64,
}

/// Largest value of the 16-bit window field.
const MAX_WINDOW_FIELD: usize = u16::MAX as usize;

/// One TCP connection (one TCB).
///
/// It exists to hold everything RFC 9293 keeps per connection and to apply
/// the rules for segments, timeouts and application calls to it, without
/// doing any I/O itself.
#[derive(Debug)]
pub struct Connection {
    cfg: Config,
    tuple: FourTuple,
    state: State,

    // Send sequence space (RFC 9293 3.3.1).
    iss: SeqNumber,
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    /// Highest sequence number sent so far; `snd_nxt` falls back to
    /// `snd_una` after a timeout (go-back-N) while this stays.
    snd_max: SeqNumber,
    /// Peer's window in bytes, scaling applied.
    snd_wnd: usize,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    /// Shift applied to the peer's window field (0 unless negotiated).
    snd_wscale: u8,
    /// Largest payload per segment: min(peer's MSS, our MTU's MSS).
    send_mss: usize,
    send_buf: SendBuffer,
    /// Sequence number of our FIN, fixed when the application closes.
    fin_seq: Option<SeqNumber>,
    /// close() was called before the handshake completed.
    close_pending: bool,
    /// Set after a timeout: at most `cwnd` bytes in flight until `snd_una`
    /// passes `recover`, so the resend starts with one segment and grows as
    /// ACKs return. (A full congestion controller comes later.)
    in_recovery: bool,
    cwnd: usize,
    recover: SeqNumber,

    // Receive sequence space.
    irs: SeqNumber,
    rcv_nxt: SeqNumber,
    /// Right edge of the last window we advertised.
    rcv_adv: SeqNumber,
    /// Shift we apply to our window field (0 unless negotiated).
    rcv_wscale: u8,
    /// Window scale option to put in our SYN / SYN|ACK.
    syn_wscale: Option<u8>,
    recv_buf: RecvBuffer,
    /// Sequence number of the peer's FIN once seen (maybe ahead of a gap).
    peer_fin: Option<SeqNumber>,
    peer_fin_received: bool,

    rtt: RttEstimator,
    /// The one segment being timed: (sequence number that acknowledges it,
    /// when it was sent). Never a retransmitted one (Karn).
    rtt_sample: Option<(SeqNumber, Instant)>,
    timers: TimerTable,
    persist_backoff: u32,

    ack_pending: bool,
    probe_pending: bool,
    rst_pending: Option<Segment>,
    want_writable: bool,
    events: VecDeque<Event>,
    stats: ConnStats,
}

/// The smallest shift that lets a 16-bit field describe `buffer` bytes.
fn wscale_for(buffer: usize) -> u8 {
    let mut shift = 0u8;
    while shift < 14 && (MAX_WINDOW_FIELD << shift) < buffer {
        shift += 1;
    }
    shift
}

/// RFC 9293 3.10.7.4, first check: is any of the segment inside the window?
fn acceptable(seq: SeqNumber, len: usize, rcv_nxt: SeqNumber, wnd: usize) -> bool {
    let end = rcv_nxt + wnd;
    let inside = |s: SeqNumber| rcv_nxt <= s && s < end;
    match (len, wnd) {
        (0, 0) => seq == rcv_nxt,
        (0, _) => inside(seq),
        (_, 0) => false,
        _ => inside(seq) || inside(seq + (len - 1)),
    }
}

impl Connection {
    fn new(cfg: &Config, tuple: FourTuple, iss: SeqNumber, state: State) -> Self {
        let ipv6 = tuple.is_ipv6();
        let default_peer_mss = if ipv6 { 1220 } else { 536 };
        Connection {
            cfg: cfg.clone(),
            tuple,
            state,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: iss,
            snd_wscale: 0,
            send_mss: default_peer_mss.min(cfg.mss(ipv6) as usize),
            send_buf: SendBuffer::new(cfg.send_buffer, iss + 1),
            fin_seq: None,
            close_pending: false,
            in_recovery: false,
            cwnd: usize::MAX,
            recover: iss,
            irs: SeqNumber(0),
            rcv_nxt: SeqNumber(0),
            rcv_adv: SeqNumber(0),
            rcv_wscale: 0,
            syn_wscale: None,
            recv_buf: RecvBuffer::new(cfg.recv_buffer),
            peer_fin: None,
            peer_fin_received: false,
            rtt: RttEstimator::new(cfg.rto_initial, cfg.rto_min, cfg.rto_max),
            rtt_sample: None,
            timers: TimerTable::default(),
            persist_backoff: 0,
            ack_pending: false,
            probe_pending: false,
            rst_pending: None,
            want_writable: false,
            events: VecDeque::new(),
            stats: ConnStats::default(),
        }
    }

    /// Passive open: `syn` is a SYN (no ACK) received on a listening port. State SynReceived,
    /// a SYN|ACK is ready in poll_transmit.
    pub fn accept(
        now: Instant,
        cfg: &Config,
        tuple: FourTuple,
        syn: &Segment,
        iss: SeqNumber,
    ) -> Connection {
        let _ = now; // the handshake needs no clock yet (timestamps will)
        let mut c = Connection::new(cfg, tuple, iss, State::SynReceived);
        c.stats.segments_in = 1;
        c.irs = syn.seq;
        c.rcv_nxt = syn.seq + 1;
        c.rcv_adv = c.rcv_nxt;
        c.snd_wnd = syn.window as usize;
        c.snd_wl1 = syn.seq;
        c.snd_wl2 = iss;
        c.apply_syn_options(&syn.options);
        if let Some(ws) = syn.options.window_scale {
            c.snd_wscale = ws;
            c.rcv_wscale = wscale_for(cfg.recv_buffer);
            c.syn_wscale = Some(c.rcv_wscale);
        }
        c
    }

    /// Active open (used by tests and the two-stack property test). State SynSent.
    pub fn connect(now: Instant, cfg: &Config, tuple: FourTuple, iss: SeqNumber) -> Connection {
        let _ = now; // the SYN's timer starts when poll_transmit sends it
        let mut c = Connection::new(cfg, tuple, iss, State::SynSent);
        // Offer window scaling; it is used only if the SYN|ACK offers it too.
        c.rcv_wscale = wscale_for(cfg.recv_buffer);
        c.syn_wscale = Some(c.rcv_wscale);
        c
    }

    fn apply_syn_options(&mut self, opts: &TcpOptions) {
        let ipv6 = self.tuple.is_ipv6();
        let peer_mss = opts.mss.map_or(if ipv6 { 1220 } else { 536 }, usize::from);
        self.send_mss = peer_mss.min(self.cfg.mss(ipv6) as usize).max(1);
    }

    // ----- queries -------------------------------------------------------

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The connection's addresses.
    pub fn tuple(&self) -> FourTuple {
        self.tuple
    }

    /// True once the peer's FIN has been received in order.
    pub fn peer_fin_received(&self) -> bool {
        self.peer_fin_received
    }

    /// True in CLOSED: drain `poll_transmit` (a final RST may wait there)
    /// and drop the connection.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Counters of this connection.
    pub fn stats(&self) -> ConnStats {
        ConnStats {
            srtt: self.rtt.srtt(),
            rto: self.rtt.rto(),
            ..self.stats
        }
    }

    /// The most payload one of our segments carries (the peer's MSS, capped
    /// by our MTU): exposed for tests and tracing.
    pub fn send_mss(&self) -> usize {
        self.send_mss
    }

    /// The peer's current send window in bytes (scaling applied): exposed
    /// for tests and tracing.
    pub fn send_window(&self) -> usize {
        self.snd_wnd
    }

    /// The current retransmission timeout, backoff included.
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    // ----- application side ---------------------------------------------

    fn may_queue_data(&self) -> bool {
        matches!(
            self.state,
            State::SynSent | State::SynReceived | State::Established | State::CloseWait
        ) && self.fin_seq.is_none()
            && !self.close_pending
    }

    /// Copies in-order received bytes into `buf`; returns how many. Opens
    /// the receive window, and queues a window update when the window had
    /// become small and now opened by a worthwhile amount.
    pub fn recv(&mut self, buf: &mut [u8]) -> usize {
        let old_wnd = self.rcv_adv.distance_from(self.rcv_nxt);
        let n = self.recv_buf.read(buf);
        if n == 0 || self.peer_fin_received || !self.is_synchronized() {
            return n;
        }
        let new_edge = self.rcv_nxt + self.advertised_window_bytes();
        let increase = new_edge.distance_from(self.rcv_adv);
        let cap = self.recv_buf.capacity();
        // RFC 9293 3.8.6.2.2 (receiver SWS avoidance): only announce a
        // window that grew by min(half the buffer, one MSS).
        let threshold = (cap / 2)
            .min(self.cfg.mss(self.tuple.is_ipv6()) as usize)
            .max(1);
        if old_wnd < cap / 2 && increase >= threshold {
            self.ack_pending = true;
        }
        n
    }

    /// In-order bytes ready for recv().
    pub fn recv_available(&self) -> usize {
        self.recv_buf.available()
    }

    /// Queues up to send_capacity() bytes of `data`; returns how many.
    /// A short count arms a [`Event::Writable`] for when space opens.
    pub fn send(&mut self, data: &[u8]) -> usize {
        if !self.may_queue_data() {
            return 0;
        }
        let n = self.send_buf.push(data);
        if n < data.len() {
            self.want_writable = true;
        }
        n
    }

    /// Bytes send() would accept now.
    pub fn send_capacity(&self) -> usize {
        if self.may_queue_data() {
            self.send_buf.free()
        } else {
            0
        }
    }

    /// Bytes queued and not yet acknowledged (unacked + unsent).
    pub fn send_queued(&self) -> usize {
        self.send_buf.len()
    }

    /// Half-close: a FIN follows the queued data (RFC 9293 3.10.4). We keep
    /// receiving until the peer closes too.
    pub fn close(&mut self) {
        match self.state {
            State::SynSent => self.enter_closed(CloseReason::Normal),
            State::SynReceived => self.close_pending = true,
            State::Established => {
                self.fin_seq = Some(self.send_buf.end());
                self.state = State::FinWait1;
            }
            State::CloseWait => {
                self.fin_seq = Some(self.send_buf.end());
                self.state = State::LastAck;
            }
            _ => {}
        }
    }

    /// Sends RST (in synchronized states) and goes to CLOSED with
    /// [`CloseReason::Aborted`] (RFC 9293 3.10.5).
    pub fn abort(&mut self) {
        if matches!(
            self.state,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
        ) {
            self.rst_pending = Some(self.rst_segment(self.snd_max, Some(self.rcv_nxt)));
        }
        if self.state != State::Closed {
            self.enter_closed(CloseReason::Aborted);
        }
    }

    /// Next application event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn push_event(&mut self, e: Event) {
        if matches!(e, Event::Readable | Event::Writable) && self.events.back() == Some(&e) {
            return;
        }
        self.events.push_back(e);
    }

    // ----- timers ---------------------------------------------------------

    /// Earliest deadline of this connection's timers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Fire every timer whose deadline is <= now.
    pub fn on_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.take_expired(now) {
            match timer {
                Timer::Retransmit => self.on_retransmit_timeout(now),
                Timer::Persist => {
                    self.probe_pending = true;
                    self.persist_backoff = self.persist_backoff.saturating_add(1);
                }
                Timer::TimeWait => {
                    if self.state == State::TimeWait {
                        self.enter_closed(CloseReason::Normal);
                    }
                }
            }
        }
    }

    /// RFC 6298 5.4-5.6: resend from SND.UNA with a doubled RTO, or give up.
    fn on_retransmit_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::Closed | State::TimeWait) || self.snd_una == self.snd_max {
            return;
        }
        let limit = match self.state {
            State::SynSent | State::SynReceived => self.cfg.syn_retransmissions,
            _ => self.cfg.max_retransmissions,
        };
        if self.rtt.backoffs() >= limit {
            let ack = (self.state != State::SynSent).then_some(self.rcv_nxt);
            self.rst_pending = Some(self.rst_segment(self.snd_max, ack));
            self.enter_closed(CloseReason::TimedOut);
            return;
        }
        self.rtt.back_off();
        self.rtt_sample = None; // Karn: never time a retransmitted segment
        self.stats.retransmissions += 1;
        self.push_event(Event::Retransmit);
        self.snd_nxt = self.snd_una;
        self.in_recovery = true;
        self.recover = self.snd_max;
        self.cwnd = self.send_mss;
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
    }

    // ----- output ---------------------------------------------------------

    /// Next segment to send now (None when nothing is due). Call until None.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Segment> {
        let seg = self.next_segment(now);
        self.debug_check();
        if seg.is_some() {
            self.stats.segments_out += 1;
        } else {
            self.update_persist(now);
        }
        seg
    }

    fn next_segment(&mut self, now: Instant) -> Option<Segment> {
        if let Some(rst) = self.rst_pending.take() {
            return Some(rst);
        }
        match self.state {
            State::Closed => return None,
            State::SynSent | State::SynReceived if self.snd_nxt == self.iss => {
                let seg = self.segment(self.iss, Control::Syn, Vec::new());
                self.on_sent(now, self.iss, 1, 0);
                return Some(seg);
            }
            State::SynSent => return None,
            _ => {}
        }
        if let Some(seg) = self.next_data_segment(now) {
            return Some(seg);
        }
        if self.probe_pending {
            // A zero-window probe that needs no sequence space: an old
            // sequence number makes the peer answer with an ACK carrying
            // its current window.
            self.probe_pending = false;
            return Some(self.segment(self.snd_una - 1, Control::None, Vec::new()));
        }
        if self.ack_pending {
            return Some(self.segment(self.snd_nxt, Control::None, Vec::new()));
        }
        None
    }

    /// Data (and FIN) from SND.NXT, limited by the peer's window, the
    /// recovery window and the MSS (RFC 9293 3.8.6.2.1).
    fn next_data_segment(&mut self, now: Instant) -> Option<Segment> {
        if !matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck
        ) {
            return None;
        }
        let data_end = self.send_buf.end();
        let mut usable = (self.snd_una + self.snd_wnd).distance_from(self.snd_nxt);
        if self.in_recovery {
            let in_flight = self.snd_nxt.distance_from(self.snd_una);
            usable = usable.min(self.cwnd.saturating_sub(in_flight));
        }
        let unsent = data_end.distance_from(self.snd_nxt);
        let len = unsent.min(usable).min(self.send_mss);
        let fin = self.fin_seq == Some(self.snd_nxt + len) && self.snd_nxt <= data_end;
        if len == 0 && !fin {
            return None;
        }
        let seq = self.snd_nxt;
        let mut payload = Vec::with_capacity(len);
        self.send_buf.read_at(seq, len, &mut payload);
        let control = if fin { Control::Fin } else { Control::None };
        let mut seg = self.segment(seq, control, payload);
        seg.psh = len > 0 && seq + len == data_end;
        self.on_sent(now, seq, len + fin as usize, len);
        Some(seg)
    }

    /// Bookkeeping after sending `seg_len` sequence numbers from `seq`.
    fn on_sent(&mut self, now: Instant, seq: SeqNumber, seg_len: usize, data_len: usize) {
        let end = seq + seg_len;
        if end > self.snd_max {
            let new = end - self.snd_max;
            self.stats.bytes_out += new.min(data_len) as u64;
            if seq >= self.snd_max && self.rtt_sample.is_none() {
                self.rtt_sample = Some((end, now));
            }
            self.snd_max = end;
        }
        self.snd_nxt = end;
        if !self.timers.is_running(Timer::Retransmit) {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        self.timers.stop(Timer::Persist);
    }

    /// Zero window with nothing in flight: only the persist timer can find
    /// out when the window opens again (RFC 9293 3.8.6.1).
    fn update_persist(&mut self, now: Instant) {
        let sending = matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck
        );
        let blocked = sending
            && self.snd_wnd == 0
            && self.snd_una == self.snd_max
            && self.send_buf.end() > self.snd_nxt;
        if !blocked {
            self.timers.stop(Timer::Persist);
            self.persist_backoff = 0;
        } else if !self.timers.is_running(Timer::Persist) && !self.probe_pending {
            let factor = 1u32 << self.persist_backoff.min(16);
            let wait = self.rtt.rto().saturating_mul(factor).min(self.cfg.rto_max);
            self.timers.set(Timer::Persist, now + wait);
        }
    }

    /// RCV.WND: from RCV.NXT to the right edge we advertised, within the
    /// free buffer space.
    fn rcv_wnd(&self) -> usize {
        self.rcv_adv
            .distance_from(self.rcv_nxt)
            .min(self.recv_buf.window())
    }

    /// Bytes of window we advertise now (what the window field will say,
    /// scaled back up).
    fn advertised_window_bytes(&self) -> usize {
        ((self.recv_buf.window() >> self.rcv_wscale).min(MAX_WINDOW_FIELD)) << self.rcv_wscale
    }

    /// Builds a segment from our side carrying ACK (except our first SYN)
    /// and the current window.
    fn segment(&mut self, seq: SeqNumber, control: Control, payload: Vec<u8>) -> Segment {
        let syn = control == Control::Syn;
        let ack = (self.state != State::SynSent).then_some(self.rcv_nxt);
        let window = if syn {
            // RFC 7323 2.2: the window in a SYN is never scaled.
            self.recv_buf.window().min(MAX_WINDOW_FIELD) as u16
        } else {
            (self.recv_buf.window() >> self.rcv_wscale).min(MAX_WINDOW_FIELD) as u16
        };
        if ack.is_some() {
            self.ack_pending = false;
            let shift = if syn { 0 } else { self.rcv_wscale };
            let edge = self.rcv_nxt + ((window as usize) << shift);
            self.rcv_adv = self.rcv_adv.max(edge);
        }
        let options = if syn {
            TcpOptions {
                mss: Some(self.cfg.mss(self.tuple.is_ipv6())),
                window_scale: self.syn_wscale,
                ..TcpOptions::default()
            }
        } else {
            TcpOptions::default()
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
            payload,
        }
    }

    fn rst_segment(&self, seq: SeqNumber, ack: Option<SeqNumber>) -> Segment {
        Segment {
            src_port: self.tuple.local.port(),
            dst_port: self.tuple.remote.port(),
            seq,
            ack,
            control: Control::Rst,
            psh: false,
            window: 0,
            options: TcpOptions::default(),
            payload: Vec::new(),
        }
    }

    // ----- input ----------------------------------------------------------

    /// Debug builds check the send sequence space after every call.
    fn debug_check(&self) {
        debug_assert!(
            self.snd_una <= self.snd_nxt && self.snd_nxt <= self.snd_max,
            "una {} nxt {} max {}",
            self.snd_una,
            self.snd_nxt,
            self.snd_max
        );
        debug_assert!(
            self.state == State::Closed
                || self.send_buf.end() + self.fin_seq.is_some() as usize + 1 >= self.snd_max,
            "sent beyond the queued data"
        );
    }

    fn is_synchronized(&self) -> bool {
        !matches!(self.state, State::SynSent | State::Closed)
    }

    fn enter_closed(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.timers.stop_all();
        self.ack_pending = false;
        self.probe_pending = false;
        self.push_event(Event::Closed(reason));
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.timers.stop_all();
        self.timers.set(Timer::TimeWait, now + self.cfg.time_wait);
    }

    /// Handles one segment of this connection (RFC 9293 3.10.7).
    pub fn on_segment(&mut self, now: Instant, seg: &Segment) -> Disposition {
        self.stats.segments_in += 1;
        match self.state {
            State::Closed => {}
            State::SynSent => self.on_segment_syn_sent(now, seg),
            _ => {
                // RFC 9293 3.10.7.4 / RFC 6191: a SYN above RCV.NXT may
                // reopen a connection in TIME-WAIT.
                if self.state == State::TimeWait
                    && seg.control == Control::Syn
                    && seg.ack.is_none()
                    && seg.seq > self.rcv_nxt
                {
                    return Disposition::Reincarnate;
                }
                self.on_segment_synchronized(now, seg);
                self.update_persist(now);
            }
        }
        self.debug_check();
        Disposition::Handled
    }

    /// RFC 9293 3.10.7.3.
    fn on_segment_syn_sent(&mut self, now: Instant, seg: &Segment) {
        if let Some(ack) = seg.ack {
            if ack <= self.iss || ack > self.snd_max {
                if seg.control != Control::Rst {
                    self.rst_pending = Some(self.rst_segment(ack, None));
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
                self.apply_syn_options(&seg.options);
                match seg.options.window_scale {
                    Some(ws) => self.snd_wscale = ws,
                    None => self.rcv_wscale = 0,
                }
                self.snd_wnd = seg.window as usize;
                self.snd_wl1 = seg.seq;
                match seg.ack {
                    Some(ack) => {
                        self.snd_wl2 = ack;
                        self.state = State::Established;
                        self.on_ack_advance(now, ack);
                        self.push_event(Event::Established);
                        self.ack_pending = true;
                        if self.close_pending {
                            self.close_pending = false;
                            self.close();
                        }
                    }
                    None => {
                        // Simultaneous open: answer with SYN|ACK (same ISS).
                        if seg.options.window_scale.is_none() {
                            self.syn_wscale = None;
                        }
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
    fn on_segment_synchronized(&mut self, now: Instant, seg: &Segment) {
        // A retransmitted SYN: our SYN|ACK was lost; send it again.
        if self.state == State::SynReceived
            && seg.control == Control::Syn
            && seg.ack.is_none()
            && seg.seq == self.irs
        {
            self.snd_nxt = self.iss;
            return;
        }

        // First: sequence number acceptability, against RCV.WND: the window
        // we advertised (never more than the free buffer space).
        let wnd = self.rcv_wnd();
        if !acceptable(seg.seq, seg.seg_len(), self.rcv_nxt, wnd) {
            // A zero window still takes ACKs and RSTs at RCV.NXT.
            let zero_window_allowance = wnd == 0 && seg.seq == self.rcv_nxt;
            if !zero_window_allowance {
                if seg.control != Control::Rst {
                    self.ack_pending = true;
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
        if seq < self.rcv_nxt {
            let skip = self.rcv_nxt - seq;
            text = text.get(skip..).unwrap_or_default();
            seq = self.rcv_nxt;
        }
        let room = (self.rcv_nxt + wnd).distance_from(seq);
        if text.len() > room {
            // Tell the peer where the window ends (this also answers a
            // zero-window probe that carries a byte).
            text = &text[..room];
            fin = false;
            self.ack_pending = true;
        }

        // Second: RST.
        if seg.control == Control::Rst {
            self.on_rst();
            return;
        }

        // Fourth: SYN in a synchronized state -> challenge ACK (RFC 5961 4.2).
        if seg.control == Control::Syn {
            self.ack_pending = true;
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
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = ack;
                self.push_event(Event::Established);
            } else {
                self.rst_pending = Some(self.rst_segment(ack, None));
                return;
            }
        }
        if ack > self.snd_max {
            // ACK of something not yet sent: tell the peer where we are.
            self.ack_pending = true;
            return;
        }
        let old_una = self.snd_una;
        if ack > self.snd_una {
            self.on_ack_advance(now, ack);
        }
        // Window update (SND.WL1/WL2 keep old segments from reopening it).
        if ack >= old_una
            && (self.snd_wl1 < seg.seq || (self.snd_wl1 == seg.seq && self.snd_wl2 <= ack))
        {
            self.snd_wnd = (seg.window as usize) << self.snd_wscale;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
        }
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
            let before = self.rcv_nxt;
            self.rcv_nxt = self.recv_buf.insert(self.rcv_nxt, seq, text);
            if self.rcv_nxt != before {
                self.stats.bytes_in += (self.rcv_nxt - before) as u64;
                self.push_event(Event::Readable);
            }
            // ACK every data segment; out-of-order ones at once (RFC 5681 4.2).
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

    /// SND.UNA moves forward to `ack` (RFC 9293 3.10.7.4, ESTABLISHED).
    fn on_ack_advance(&mut self, now: Instant, ack: SeqNumber) {
        let acked = ack - self.snd_una;
        let released = self.send_buf.ack_to(ack);
        self.snd_una = ack;
        if self.snd_nxt < ack {
            self.snd_nxt = ack;
        }
        if let Some((end, sent_at)) = self.rtt_sample {
            if ack >= end {
                self.rtt.on_sample(now.saturating_duration_since(sent_at));
                self.rtt_sample = None;
            }
        }
        self.rtt.reset_backoff();
        if self.in_recovery {
            self.cwnd = self.cwnd.saturating_add(acked);
            if self.snd_una >= self.recover {
                self.in_recovery = false;
                self.cwnd = usize::MAX;
            }
        }
        // RFC 6298 5.2 / 5.3.
        if self.snd_una == self.snd_max {
            self.timers.stop(Timer::Retransmit);
        } else {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        if self.want_writable && released > 0 && self.send_buf.free() > 0 {
            self.want_writable = false;
            self.push_event(Event::Writable);
        }
    }

    /// An acceptable RST. RFC 5961 3.2 will add: only an RST at exactly
    /// RCV.NXT resets; another in-window RST earns a challenge ACK.
    fn on_rst(&mut self) {
        self.enter_closed(CloseReason::Reset);
    }

    /// The peer's FIN, in order (RFC 9293 3.10.7.4, eighth).
    fn on_peer_fin(&mut self, now: Instant) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
