//! One TCP connection: the RFC 9293 state machine, sans-IO.
//!
//! A segment enters through [`Connection::on_segment`], time through
//! [`Connection::on_timeout`], application data through
//! [`Connection::send`] / [`Connection::recv`]; segments leave through
//! [`Connection::poll_transmit`] and notifications through
//! [`Connection::poll_event`]. Field names follow the RFC (`snd_una`,
//! `snd_nxt`, `rcv_nxt`, ...) so the code can be read against it.

mod ack;
mod checkpoint;
mod options;
mod rcv;
mod recovery;
mod replies;
mod snd;
mod time_wait;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{TcpConfig, MIN_SND_MSS};
use crate::rack::{RackTlp, MIN_PTO};
use crate::rate::DeliveryRate;
use crate::ratelimit::{ReplyLimiter, Unlimited};
use crate::seq::SeqNumber;
use crate::timers::{Timer, TimerTable};
use crate::tuple::FourTuple;
use crate::wire::{Control, Segment, TcpOptions};

pub use checkpoint::{Checkpoint, CheckpointGap, SendMark};
use options::{Negotiated, TIMESTAMPS_OPTION_LEN};
use rcv::Receiver;
use recovery::LossRecovery;
use replies::Replies;
pub use snd::Transmit;
use snd::{PersistExpiry, Sender};
pub use time_wait::TimeWait;

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
    /// Nothing moved for [`TcpConfig::idle_timeout`] (we sent RST).
    Idle,
    /// The peer kept a zero window for [`TcpConfig::zero_window_timeout`]
    /// while our data waited (we sent RST).
    ZeroWindow,
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
    /// A SYN arrived in TIME-WAIT that RFC 6191 lets open a new incarnation
    /// (a newer timestamp, or without timestamps a sequence number above
    /// RCV.NXT): the caller drops this connection and calls
    /// `Connection::accept` with the same segment.
    Reincarnate,
}

/// Counters of one connection.
///
/// It exists for `vnic status` and the http app's `/stats`, and so tests
/// can watch congestion control and loss recovery from outside.
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
    /// Segments sent again (by RTO, fast retransmit or SACK recovery); one
    /// [`Event::Retransmit`] each.
    pub segments_retransmitted: u64,
    /// Loss recoveries entered on duplicate ACKs or SACK (RFC 5681 / 6582
    /// fast retransmit, or RFC 6675).
    pub fast_retransmits: u64,
    /// Of those, recoveries driven by the SACK scoreboard (RFC 6675).
    pub sack_recoveries: u64,
    /// Duplicate ACKs received (RFC 5681 / RFC 6675 definitions).
    pub dup_acks: u64,
    /// Congestion window in bytes.
    pub cwnd: usize,
    /// Slow start threshold in bytes (`usize::MAX` before the first loss;
    /// always for BBR, which has none).
    pub ssthresh: usize,
    /// The congestion control the connection runs (`ss -i` names it too),
    /// so an operator sees a listener's own choice at work.
    pub congestion: crate::CongestionAlgorithm,
    /// Challenge ACKs sent (RFC 5961), after the connection's own rate
    /// limit (`challenge_ack_limit`; the caller's [`ReplyLimiter`] may
    /// still hold some back, counted in `replies_limited`).
    pub challenge_acks: u64,
    /// Segments dropped by PAWS (RFC 7323 5).
    pub paws_rejected: u64,
    /// Payload bytes the receive buffer copied, in from segments and out
    /// to the application: about twice `bytes_in` whatever the order the
    /// segments came in (the work a sender can cause is linear).
    pub recv_bytes_copied: u64,
    /// Replies to invalid segments (ACKs for unacceptable segments,
    /// challenge ACKs, RSTs for bad ACKs) that the caller's
    /// [`ReplyLimiter`] refused.
    pub replies_limited: u64,
}

/// Largest value of the 16-bit window field.
const MAX_WINDOW_FIELD: usize = u16::MAX as usize;

/// The MSS a peer is assumed to have when its SYN carries no MSS option
/// (RFC 9293 3.7.1: 536 over IPv4; RFC 8200's 1280-byte minimum MTU less
/// the headers over IPv6).
fn default_peer_mss(ipv6: bool) -> usize {
    if ipv6 {
        1220
    } else {
        536
    }
}

/// Most segments of new data in flight: cwnd is capped at this many
/// segments. Every segment draws an ACK the processor must handle, so a
/// peer that makes segments small (down to [`MIN_SND_MSS`]) must not also
/// make them many: with a tiny MSS and a huge window it could otherwise
/// keep thousands in flight and queue thousands of ACKs ahead of every
/// other connection of the processor. With the default buffers a peer
/// with an MSS of 536 or more never meets the cap (256 KiB is 489 such
/// segments); Linux clamps cwnd in packets the same way
/// (`snd_cwnd_clamp`).
const MAX_FLIGHT_SEGMENTS: usize = 512;

/// One TCP connection (one TCB).
///
/// It exists to hold everything RFC 9293 keeps per connection and to apply
/// the rules for segments, timeouts and application calls to it, without
/// doing any I/O itself. The TCB is a handful of parts, each with its own
/// invariants and tests, and each a plain value (no references into
/// anything else):
///
/// - [`Sender`] (`snd.rs`): the send sequence space, the send buffer,
///   Nagle and sender SWS state, persist;
/// - [`Receiver`] (`rcv.rs`): the receive sequence space, reassembly,
///   SACK reporting, the delayed-ACK decision, the peer's FIN;
/// - [`LossRecovery`] (`recovery.rs`): the congestion controller, the
///   RFC 6675 scoreboard and pipe, the recovery point, the RTO state;
/// - [`RackTlp`] (`crate::rack`): RACK-TLP's send records and probe state;
/// - [`Negotiated`] (`options.rs`): SACK and timestamps as negotiated,
///   TS.Recent and our timestamp clock;
/// - [`Replies`] (`replies.rs`): RSTs and ACKs owed to invalid segments,
///   and the RFC 5961 challenge-ACK budget;
///
/// plus what belongs to the whole connection: config, addresses, state,
/// timers, events and counters. The methods of `Connection` are the glue
/// that applies RFC 9293's rules across these parts.
///
/// `Clone` is a checkpoint: the copy is the whole TCB as a value (both
/// sides' sequence space and buffers, recovery and RACK state, the
/// congestion controller, timers, pending events) and, given the same
/// segments at the same times, behaves exactly as the original from the
/// moment it was taken (`stack/tests/checkpoint.rs`). It is what moving a
/// connection to another processor, or keeping a backup of it, starts
/// from.
#[derive(Clone, Debug)]
pub struct Connection {
    /// The knobs this connection was made with.
    cfg: TcpConfig,
    /// Our address and the peer's.
    tuple: FourTuple,
    /// Where the RFC 9293 state machine stands.
    state: State,
    /// close() was called before the handshake completed.
    close_pending: bool,
    /// The send side.
    snd: Sender,
    /// The receive side.
    rcv: Receiver,
    /// Congestion control, loss recovery, the RTO.
    rec: LossRecovery,
    /// RACK-TLP.
    rack: RackTlp,
    /// SACK and timestamps as negotiated.
    opt: Negotiated,
    /// Replies owed to invalid segments.
    replies: Replies,
    /// Every timer's deadline.
    timers: TimerTable,
    /// When something last moved: a byte of the peer's accepted, one of
    /// ours acknowledged, or the connection opened (for the idle limit).
    last_progress: Instant,
    /// Notifications for the application, oldest first.
    events: VecDeque<Event>,
    /// Counters.
    stats: ConnStats,
}

impl Connection {
    fn new(now: Instant, cfg: &TcpConfig, tuple: FourTuple, iss: SeqNumber, state: State) -> Self {
        let ipv6 = tuple.is_ipv6();
        let mss = default_peer_mss(ipv6).min(cfg.mss(ipv6) as usize);
        let mut timers = TimerTable::default();
        if let Some(limit) = cfg.idle_timeout {
            timers.set(Timer::Idle, now + limit);
        }
        Connection {
            cfg: cfg.clone(),
            tuple,
            state,
            close_pending: false,
            snd: Sender::new(iss, mss, cfg.send_buffer, cfg.nodelay),
            rcv: Receiver::new(cfg.recv_buffer, cfg.mss(ipv6) as usize),
            rec: LossRecovery::new(cfg, iss, mss),
            rack: RackTlp::default(),
            opt: Negotiated::new(now, iss),
            replies: Replies::default(),
            timers,
            last_progress: now,
            events: VecDeque::new(),
            stats: ConnStats::default(),
        }
    }

    /// Passive open: `syn` is a SYN (no ACK) received on a listening port. State SynReceived,
    /// a SYN|ACK is ready in poll_transmit. The SYN|ACK answers only the
    /// options the SYN offered (window scaling, SACK, timestamps).
    pub fn accept(
        now: Instant,
        cfg: &TcpConfig,
        tuple: FourTuple,
        syn: &Segment,
        iss: SeqNumber,
    ) -> Connection {
        let mut c = Connection::new(now, cfg, tuple, iss, State::SynReceived);
        c.stats.segments_in = 1;
        c.rcv.on_syn(syn.seq);
        c.snd.on_peer_syn(syn.seq, iss, syn.window as usize);
        if let Some(ws) = syn.options.window_scale {
            c.snd.wscale = ws;
            c.rcv.offer_wscale(cfg.recv_buffer);
        }
        c.opt.sack_ok = cfg.sack && syn.options.sack_permitted;
        c.opt.ts_ok = cfg.timestamps && syn.options.timestamps.is_some();
        if let (true, Some((tsval, _))) = (c.opt.ts_ok, syn.options.timestamps) {
            c.opt.set_recent(tsval, now);
        }
        c.apply_syn_options(&syn.options);
        c
    }

    /// Passive open from a SYN cookie: `ack` is the ACK of the SYN|ACK
    /// that [`crate::SynCookies::answer`] sent, its cookie already checked
    /// ([`crate::SynCookies::check`] gave `mss`). The connection is what
    /// the cookie stands for (the client's ISN and MSS; no window scaling,
    /// SACK or timestamps: the SYN|ACK offered none) with its SYN|ACK
    /// already sent, and `ack` is then taken like any segment: the
    /// connection is Established, with whatever data the ACK carried.
    /// The SYN|ACK's send time is unknown, so it gives no RTT sample.
    /// None if `ack` carries no acknowledgement.
    pub fn accept_cookie(
        now: Instant,
        cfg: &TcpConfig,
        tuple: FourTuple,
        ack: &Segment,
        mss: u16,
    ) -> Option<Connection> {
        let iss = SeqNumber(ack.ack?.0.wrapping_sub(1));
        let syn = crate::SynCookies::rebuilt_syn(ack, mss);
        let mut c = Connection::accept(now, cfg, tuple, &syn, iss);
        // What the stateless SYN|ACK sent and advertised.
        c.snd.record_sent(iss, 1);
        c.rcv.on_ack_sent(crate::SynCookies::WINDOW, true);
        let _ = c.on_segment(now, ack);
        Some(c)
    }

    /// Active open (used by tests and the two-stack property test). State
    /// SynSent. Our SYN offers window scaling, SACK and timestamps (as
    /// far as the config allows); each is used only if the SYN|ACK
    /// answers it.
    pub fn connect(now: Instant, cfg: &TcpConfig, tuple: FourTuple, iss: SeqNumber) -> Connection {
        let mut c = Connection::new(now, cfg, tuple, iss, State::SynSent);
        c.rcv.offer_wscale(cfg.recv_buffer);
        c.opt.sack_ok = cfg.sack;
        c.opt.ts_ok = cfg.timestamps;
        c
    }

    /// MSS and everything that depends on it, once the peer's SYN options
    /// are known (the options negotiated must be set before).
    fn apply_syn_options(&mut self, opts: &TcpOptions) {
        let ipv6 = self.tuple.is_ipv6();
        let peer_mss = opts.mss.map_or(default_peer_mss(ipv6), usize::from);
        // A tiny MSS option would make us send a byte per frame: the
        // floor is [`MIN_SND_MSS`] (never above what our own MTU allows).
        self.snd.mss = peer_mss
            .max(MIN_SND_MSS)
            .min(self.cfg.mss(ipv6) as usize)
            .max(1);
        // RFC 9293 3.7.1: options in every segment come out of the MSS.
        self.snd.send_mss = self.snd.mss.saturating_sub(self.opt.overhead()).max(1);
        // The controller LossRecovery::new made for this config, restarted
        // for the MSS now known.
        self.rec.cc.restart(self.snd.send_mss);
        self.rec.rate = self
            .rec
            .cc
            .wants_samples()
            .then(|| Box::new(DeliveryRate::new(self.opt.epoch)));
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
        self.rcv.fin_received
    }

    /// True in CLOSED: drain `poll_transmit` (a final RST may wait there)
    /// and drop the connection.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Where the connection stands in both sequence spaces (RCV.NXT,
    /// SND.UNA). A segment after which this changed was genuine: it carried
    /// new data or acknowledged ours, which a blind attacker cannot do. The
    /// adapter learns the peer's link address only from such segments.
    pub fn progress(&self) -> (SeqNumber, SeqNumber) {
        (self.rcv.nxt, self.snd.una)
    }

    /// Counters of this connection.
    pub fn stats(&self) -> ConnStats {
        ConnStats {
            srtt: self.rec.rtt.srtt(),
            rto: self.rec.rtt.rto(),
            cwnd: self.rec.cc.window(),
            ssthresh: self.rec.cc.ssthresh(),
            congestion: self.cfg.congestion,
            recv_bytes_copied: self.rcv.buf.bytes_copied(),
            ..self.stats
        }
    }

    /// The most payload one of our segments carries: the peer's MSS,
    /// capped by our MTU, less the timestamps option when negotiated
    /// (RFC 9293 3.7.1). Exposed for tests and tracing.
    pub fn send_mss(&self) -> usize {
        self.snd.send_mss
    }

    /// The most payload to put in one GSO frame now: half the congestion
    /// window, at least one segment (as Linux's `tcp_cwnd_test`). With a
    /// window of a few dozen segments, as after losses, the window then
    /// leaves in two frames or more, so losing one frame still leaves
    /// ACKs with SACK blocks that start fast recovery; a window sent as
    /// one frame is lost whole and only a probe or the retransmission
    /// timeout recovers it.
    pub fn gso_burst_limit(&self) -> usize {
        (self.rec.cc.window() / 2).max(self.snd.send_mss)
    }

    /// The peer's current send window in bytes (scaling applied): exposed
    /// for tests and tracing.
    pub fn send_window(&self) -> usize {
        self.snd.wnd
    }

    /// The current retransmission timeout, backoff included.
    pub fn rto(&self) -> Duration {
        self.rec.rtt.rto()
    }

    /// True when both SYNs carried SACK-permitted (RFC 2018): we report
    /// SACK blocks and recover from the peer's.
    pub fn sack_enabled(&self) -> bool {
        self.opt.sack_ok && self.is_synchronized_or_closed()
    }

    /// True when both SYNs carried timestamps (RFC 7323): every segment
    /// carries them, RTT comes from TSecr and PAWS is on.
    pub fn timestamps_enabled(&self) -> bool {
        self.opt.ts_ok && self.is_synchronized_or_closed()
    }

    /// True when Nagle's algorithm is off.
    pub fn nodelay(&self) -> bool {
        self.snd.nodelay
    }

    /// Turns Nagle's algorithm off (`true`, like TCP_NODELAY) or on.
    /// With it off, a small write goes out at once even while other small
    /// segments are unacknowledged: what request/response apps want.
    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.snd.nodelay = nodelay;
    }

    fn is_synchronized_or_closed(&self) -> bool {
        self.state != State::SynSent
    }

    // ----- application side ---------------------------------------------

    fn may_queue_data(&self) -> bool {
        matches!(
            self.state,
            State::SynSent | State::SynReceived | State::Established | State::CloseWait
        ) && self.snd.fin_seq.is_none()
            && !self.close_pending
    }

    /// Copies in-order received bytes into `buf`; returns how many. Opens
    /// the receive window, and queues a window update when the window had
    /// become small and now opened by a worthwhile amount.
    pub fn recv(&mut self, buf: &mut [u8]) -> usize {
        let synchronized = self.is_synchronized();
        self.rcv.read(buf, synchronized)
    }

    /// The first in-order bytes [`Connection::recv`] would copy, lent
    /// where they lie in the receive buffer (two slices, in order; the
    /// second often empty; both empty only when nothing is ready). They
    /// need not be all that is ready (a large segment is kept in the
    /// buffer it arrived in): read on after [`Connection::recv_consume`].
    /// With it an app that only passes the bytes on (discards them,
    /// writes them to a socket) reads them with no copy: after the
    /// kernel's into vnic, the receive buffer's to the app was a third
    /// copy of every byte an upload brought.
    pub fn recv_slices(&self) -> [&[u8]; 2] {
        self.rcv.buf.ready_slices()
    }

    /// A buffer a large received segment arrived in, now read to the end
    /// (the receive buffer kept the segment there instead of copying
    /// it): the owner puts it back in the pool its reads come from, so a
    /// steady upload allocates no buffer per segment. None when there is
    /// none.
    pub fn take_spent_buffer(&mut self) -> Option<Vec<u8>> {
        self.rcv.buf.take_spent()
    }

    /// Drops the first `n` in-order bytes as read, as [`Connection::recv`]
    /// of that many would (the same window update); returns how many.
    pub fn recv_consume(&mut self, n: usize) -> usize {
        let synchronized = self.is_synchronized();
        self.rcv.consume(n, synchronized)
    }

    /// In-order bytes ready for recv().
    pub fn recv_available(&self) -> usize {
        self.rcv.buf.available()
    }

    /// Queues up to send_capacity() bytes of `data`; returns how many.
    /// A short count arms a [`Event::Writable`] for when space opens.
    pub fn send(&mut self, data: &[u8]) -> usize {
        self.queue(data.len(), |buf| buf.push(data))
    }

    /// Queues as much of `data[range]` as fits, without copying it: the
    /// send buffer refers to the app's shared bytes until they are
    /// acknowledged. Returns how much was taken (0 for a range outside
    /// `data`), as [`Connection::send`] does.
    pub fn send_shared(
        &mut self,
        data: &crate::SharedBytes,
        range: std::ops::Range<usize>,
    ) -> usize {
        self.queue(range.len(), |buf| buf.push_shared(data, range))
    }

    /// Queues `want` bytes by `push` if data may be queued now; returns
    /// how many it took, and asks to be told when there is room for the
    /// rest ([`Event::Writable`]).
    fn queue(
        &mut self,
        want: usize,
        push: impl FnOnce(&mut crate::send_buffer::SendBuffer) -> usize,
    ) -> usize {
        if !self.may_queue_data() {
            return 0;
        }
        let n = push(&mut self.snd.buf);
        if n < want {
            self.snd.want_writable = true;
        }
        n
    }

    /// Bytes send() would accept now.
    pub fn send_capacity(&self) -> usize {
        if self.may_queue_data() {
            self.snd.buf.free()
        } else {
            0
        }
    }

    /// Bytes queued and not yet acknowledged (unacked + unsent).
    pub fn send_queued(&self) -> usize {
        self.snd.buf.len()
    }

    /// Half-close: a FIN follows the queued data (RFC 9293 3.10.4). We keep
    /// receiving until the peer closes too. Data still held back by Nagle
    /// goes out with the FIN.
    pub fn close(&mut self) {
        match self.state {
            State::SynSent => self.enter_closed(CloseReason::Normal),
            State::SynReceived => self.close_pending = true,
            State::Established => {
                self.snd.queue_fin();
                self.state = State::FinWait1;
            }
            State::CloseWait => {
                self.snd.queue_fin();
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
            self.replies.rst_pending = Some(self.rst_segment(self.snd.max, Some(self.rcv.nxt)));
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
                    let expiry = self.snd.persist.on_expiry(
                        now,
                        self.cfg.max_retransmissions,
                        self.cfg.zero_window_timeout,
                    );
                    if let PersistExpiry::GiveUp(reason) = expiry {
                        self.give_up(reason);
                        return;
                    }
                }
                Timer::TimeWait => {
                    if self.state == State::TimeWait {
                        self.enter_closed(CloseReason::Normal);
                    }
                }
                Timer::DelayedAck => {
                    if self.is_synchronized() {
                        self.rcv.ack_pending = true;
                    }
                }
                Timer::SendOverride => self.snd.sws_override_due = true,
                Timer::LossProbe => {
                    if self.tlp_allowed() {
                        self.rack.tlp_pending = true;
                    }
                }
                Timer::Reorder => {
                    if self.is_sending_state() {
                        self.rack_detect_lost_retransmissions(now);
                    }
                }
                Timer::Idle => {
                    if self.check_idle(now) {
                        return;
                    }
                }
            }
        }
    }

    /// The idle limit's timer fired: resets the connection (true) if
    /// nothing moved for the whole limit, else sets the timer again from
    /// the last progress.
    fn check_idle(&mut self, now: Instant) -> bool {
        let Some(limit) = self.cfg.idle_timeout else {
            return false;
        };
        if matches!(self.state, State::Closed | State::TimeWait) {
            return false;
        }
        let due = self.last_progress + limit;
        if now >= due {
            self.give_up(CloseReason::Idle);
            return true;
        }
        self.timers.set(Timer::Idle, due);
        false
    }

    // ----- memory -----------------------------------------------------------

    /// Bytes of memory the connection holds: the state itself, its send
    /// and receive buffers as allocated (not as filled), and its logs.
    ///
    /// It exists so the processor can keep a budget (issue 15): the
    /// buffers' nominal sizes say what a connection may hold, this says
    /// what it does hold now.
    pub fn memory(&self) -> usize {
        std::mem::size_of::<Connection>()
            + self.snd.buf.memory()
            + self.rcv.buf.memory()
            + self.rack.memory()
            + self.rec.rate.as_ref().map_or(0, |r| r.memory())
            + self.events.capacity() * std::mem::size_of::<Event>()
    }

    /// Gives back the buffer memory the queued bytes do not use (a buffer
    /// that once filled keeps its allocation otherwise). The processor
    /// calls it on connections that went quiet, and on all of them when
    /// its memory budget runs short.
    pub fn trim(&mut self) {
        self.snd.buf.shrink();
        self.rcv.buf.shrink();
        self.rack.shrink();
        self.events.shrink_to_fit();
        if let Some(r) = &mut self.rec.rate {
            r.shrink();
        }
    }

    /// Since when the peer's window has been zero with our data waiting,
    /// if it is now: the processor's memory policy resets the connections
    /// that have held a zero window longest first.
    pub fn zero_window_since(&self) -> Option<Instant> {
        self.snd.persist.zero_window_since
    }

    /// When something last moved on the connection (see
    /// [`TcpConfig::idle_timeout`]).
    pub fn last_progress(&self) -> Instant {
        self.last_progress
    }

    /// Debug builds check the send sequence space after every call.
    fn debug_check(&self) {
        self.snd.check(self.state == State::Closed);
    }

    fn is_synchronized(&self) -> bool {
        !matches!(self.state, State::SynSent | State::Closed)
    }

    fn enter_closed(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.timers.stop_all();
        self.rcv.ack_pending = false;
        self.snd.persist.probe_pending = false;
        self.push_event(Event::Closed(reason));
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        // Everything of ours was acknowledged: a TIME-WAIT connection
        // needs no buffer memory (there may be many of them).
        self.trim();
        self.timers.stop_all();
        self.timers.set(Timer::TimeWait, now + self.cfg.time_wait);
    }
}

/// A buffer for `len` bytes of payload: `spare` (emptied) when it is
/// there, else a new one.
fn payload_buffer(spare: &mut Vec<u8>, len: usize) -> Vec<u8> {
    let mut v = std::mem::take(spare);
    v.clear();
    v.reserve(len);
    v
}
