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

use crate::config::{Config, MIN_SND_MSS};
use crate::congestion::{new_controller, Controller};
use crate::rack::RetransmitLog;
use crate::ratelimit::{ReplyLimiter, Unlimited};
use crate::reassembly::RecvBuffer;
use crate::rtt::RttEstimator;
use crate::sack::{SackReport, Scoreboard};
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
    /// Slow start threshold in bytes (`usize::MAX` before the first loss).
    pub ssthresh: usize,
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

/// Bytes the timestamps option takes in every segment once negotiated
/// (two NOPs + kind + length + TSval + TSecr).
const TIMESTAMPS_OPTION_LEN: usize = 12;

/// RFC 7323 5.5: TS.Recent is invalid after 24 days of idleness.
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 60 * 60);

/// Which loss recovery is running (RFC 6675 or RFC 6582).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Recovery {
    /// SACK-based: the scoreboard says what is lost.
    Sack,
    /// NewReno: one hole at a time, at SND.UNA.
    NewReno,
}

/// RFC 8985 RACK.xmit_ts / RACK.end_seq / RACK.rtt, with the send order
/// standing in for the send time and its end sequence tie-break.
#[derive(Clone, Copy, Debug)]
struct RackState {
    order: u64,
    rtt: Duration,
}

/// Slack added to the probe timeout: two ticks of a 1 ms clock, as
/// Linux's TCP_TIMEOUT_MIN (our SRTT comes from 1 ms timestamps and may
/// read 0).
const MIN_PTO: Duration = Duration::from_millis(2);

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

/// Most send records kept (beyond it the oldest are forgotten: RACK then
/// knows less, and the RTO still covers everything).
const MAX_SEND_RECORDS: usize = 4096;

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
    /// Origin of our timestamp clock (the moment the connection was made).
    epoch: Instant,

    // Send sequence space (RFC 9293 3.3.1).
    iss: SeqNumber,
    snd_una: SeqNumber,
    /// Next new sequence number to send. Retransmissions are sent from the
    /// scoreboard without moving it; only a SYN retransmission rewinds it.
    snd_nxt: SeqNumber,
    /// Highest sequence number sent so far.
    snd_max: SeqNumber,
    /// Peer's window in bytes, scaling applied.
    snd_wnd: usize,
    /// Largest window the peer ever offered (RFC 5961 MAX.SND.WND, and
    /// the sender SWS rule of RFC 9293 3.8.6.2.1).
    max_snd_wnd: usize,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    /// Shift applied to the peer's window field (0 unless negotiated).
    snd_wscale: u8,
    /// min(peer's MSS, our MTU's MSS).
    mss: usize,
    /// Payload of a full-sized segment: `mss` less the timestamps option.
    send_mss: usize,
    send_buf: SendBuffer,
    /// Sequence number of our FIN, fixed when the application closes.
    fin_seq: Option<SeqNumber>,
    /// close() was called before the handshake completed.
    close_pending: bool,
    /// Nagle's algorithm is off (TCP_NODELAY).
    nodelay: bool,
    /// End of the last sub-MSS segment sent (Minshall's Nagle variant:
    /// hold a small segment only while another small one is unacked).
    snd_sml: SeqNumber,
    /// The SWS override timeout fired: a held sub-MSS segment may go.
    sws_override_due: bool,

    // Congestion control and loss recovery (RFC 5681, 6582, 6675).
    cc: Box<dyn Controller>,
    scoreboard: Scoreboard,
    recovery: Option<Recovery>,
    /// RFC 6675 RecoveryPoint / RFC 6582 "recover": no new recovery
    /// starts until SND.UNA reaches it.
    recovery_point: SeqNumber,
    /// RFC 6675 HighRxt: retransmission has covered the holes up to here.
    high_rxt: SeqNumber,
    /// Every un-SACKed byte below this is taken as lost (after an RTO,
    /// the first segment in NewReno recovery, data beyond a closed window).
    lost_until: SeqNumber,
    /// Send the segment at SND.UNA next, whatever cwnd says (fast
    /// retransmit, RFC 6582 partial ACK, RTO).
    rxt_head: bool,
    dup_acks: u32,
    /// Without SACK, bytes the duplicate ACKs say have left the network
    /// (one SMSS each): NewReno's window inflation, expressed as pipe.
    dup_sacked: usize,
    /// When new data was last sent (RFC 5681 4.1 restart after idle).
    last_data_sent: Option<Instant>,
    /// Send order counter: every data segment sent gets the next value,
    /// so "sent after" is exact even when two sends share an Instant.
    tx_order: u64,
    /// New data in the order sent (= sequence order), coalesced per
    /// send instant: `(end, order of its last segment, when)`. RACK
    /// (RFC 8985) reads the send time of a delivered segment from it.
    sent_log: VecDeque<(SeqNumber, u64, Instant)>,
    /// Retransmissions not yet delivered, in the order sent.
    rxt_log: RetransmitLog,
    /// Retransmissions RACK found lost (not at SND.UNA), to send again.
    rack_rxt: VecDeque<(SeqNumber, SeqNumber)>,
    /// RACK (RFC 8985 6.1): the most recently sent segment known
    /// delivered, its send time and the RTT it measured.
    rack: Option<RackState>,
    /// RACK's min RTT over delivered, never retransmitted segments
    /// (exact, from our own clock; the timestamp clock has 1 ms ticks).
    rack_min_rtt: Option<Duration>,
    /// Lost retransmissions detected by RACK.
    lost_retransmits: u64,
    /// A tail loss probe is due (RFC 8985 7.3).
    tlp_pending: bool,
    /// A probe was sent and SND.UNA has not moved since (one at a time).
    tlp_out: bool,

    // Options.
    sack_ok: bool,
    ts_ok: bool,
    /// RFC 7323 TS.Recent and when it was set (None: not valid).
    ts_recent: u32,
    ts_recent_at: Option<Instant>,
    ts_offset: u32,
    /// RFC 7323 Last.ACK.sent.
    last_ack_sent: SeqNumber,

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
    /// Largest segment the peer sent us (what "full-sized" means for
    /// the every-second-segment ACK rule).
    rcv_mss: usize,
    sack_report: SackReport,
    /// Sequence number of the peer's FIN once seen (maybe ahead of a gap).
    peer_fin: Option<SeqNumber>,
    peer_fin_received: bool,

    rtt: RttEstimator,
    /// The one segment being timed when timestamps are off: (sequence
    /// number that acknowledges it, when it was sent). Never a
    /// retransmitted one (Karn).
    rtt_sample: Option<(SeqNumber, Instant)>,
    timers: TimerTable,
    persist_backoff: u32,
    /// Window probes sent since the peer last sent an acceptable ACK.
    persist_unanswered: u32,

    ack_pending: bool,
    probe_pending: bool,
    rst_pending: Option<Segment>,
    /// The segment being handled was invalid and earns an ACK (or RST),
    /// if the caller's [`ReplyLimiter`] allows one.
    invalid_ack: bool,
    invalid_rst: Option<Segment>,
    want_writable: bool,
    /// RFC 5961 7: start of the current one-second window and challenge
    /// ACKs sent in it.
    challenge_window: Option<Instant>,
    challenge_count: u32,
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

/// Serial comparison of two timestamps (RFC 7323 5.2): `a < b`.
fn ts_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl Connection {
    fn new(now: Instant, cfg: &Config, tuple: FourTuple, iss: SeqNumber, state: State) -> Self {
        let ipv6 = tuple.is_ipv6();
        let default_peer_mss = if ipv6 { 1220 } else { 536 };
        let mss = default_peer_mss.min(cfg.mss(ipv6) as usize);
        Connection {
            cfg: cfg.clone(),
            tuple,
            state,
            epoch: now,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: iss,
            snd_wscale: 0,
            mss,
            send_mss: mss,
            send_buf: SendBuffer::new(cfg.send_buffer, iss + 1),
            fin_seq: None,
            close_pending: false,
            nodelay: cfg.nodelay,
            snd_sml: iss,
            sws_override_due: false,
            cc: new_controller(cfg.congestion, mss),
            scoreboard: Scoreboard::default(),
            recovery: None,
            recovery_point: iss,
            high_rxt: iss,
            lost_until: iss,
            rxt_head: false,
            dup_acks: 0,
            dup_sacked: 0,
            last_data_sent: None,
            tx_order: 0,
            sent_log: VecDeque::new(),
            rxt_log: RetransmitLog::default(),
            rack_rxt: VecDeque::new(),
            rack: None,
            rack_min_rtt: None,
            lost_retransmits: 0,
            tlp_pending: false,
            tlp_out: false,
            sack_ok: false,
            ts_ok: false,
            ts_recent: 0,
            ts_recent_at: None,
            // RFC 7323 7.1: a per-connection offset so TSval does not
            // reveal uptime; derived from the (keyed, random) ISS.
            ts_offset: iss.0.rotate_left(16) ^ 0x9e37_79b9,
            last_ack_sent: SeqNumber(0),
            irs: SeqNumber(0),
            rcv_nxt: SeqNumber(0),
            rcv_adv: SeqNumber(0),
            rcv_wscale: 0,
            syn_wscale: None,
            recv_buf: RecvBuffer::new(cfg.recv_buffer),
            rcv_mss: 536.min(cfg.mss(ipv6) as usize),
            sack_report: SackReport::default(),
            peer_fin: None,
            peer_fin_received: false,
            rtt: RttEstimator::new(cfg.rto_initial, cfg.rto_min, cfg.rto_max),
            rtt_sample: None,
            timers: TimerTable::default(),
            persist_backoff: 0,
            persist_unanswered: 0,
            ack_pending: false,
            probe_pending: false,
            rst_pending: None,
            invalid_ack: false,
            invalid_rst: None,
            want_writable: false,
            challenge_window: None,
            challenge_count: 0,
            events: VecDeque::new(),
            stats: ConnStats::default(),
        }
    }

    /// Passive open: `syn` is a SYN (no ACK) received on a listening port. State SynReceived,
    /// a SYN|ACK is ready in poll_transmit. The SYN|ACK answers only the
    /// options the SYN offered (window scaling, SACK, timestamps).
    pub fn accept(
        now: Instant,
        cfg: &Config,
        tuple: FourTuple,
        syn: &Segment,
        iss: SeqNumber,
    ) -> Connection {
        let mut c = Connection::new(now, cfg, tuple, iss, State::SynReceived);
        c.stats.segments_in = 1;
        c.irs = syn.seq;
        c.rcv_nxt = syn.seq + 1;
        c.rcv_adv = c.rcv_nxt;
        c.snd_wnd = syn.window as usize;
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = syn.seq;
        c.snd_wl2 = iss;
        if let Some(ws) = syn.options.window_scale {
            c.snd_wscale = ws;
            c.rcv_wscale = wscale_for(cfg.recv_buffer);
            c.syn_wscale = Some(c.rcv_wscale);
        }
        c.sack_ok = cfg.sack && syn.options.sack_permitted;
        c.ts_ok = cfg.timestamps && syn.options.timestamps.is_some();
        if let (true, Some((tsval, _))) = (c.ts_ok, syn.options.timestamps) {
            c.ts_recent = tsval;
            c.ts_recent_at = Some(now);
        }
        c.apply_syn_options(&syn.options);
        c
    }

    /// Active open (used by tests and the two-stack property test). State
    /// SynSent. Our SYN offers window scaling, SACK and timestamps (as
    /// far as the config allows); each is used only if the SYN|ACK
    /// answers it.
    pub fn connect(now: Instant, cfg: &Config, tuple: FourTuple, iss: SeqNumber) -> Connection {
        let mut c = Connection::new(now, cfg, tuple, iss, State::SynSent);
        c.rcv_wscale = wscale_for(cfg.recv_buffer);
        c.syn_wscale = Some(c.rcv_wscale);
        c.sack_ok = cfg.sack;
        c.ts_ok = cfg.timestamps;
        c
    }

    /// MSS and everything that depends on it, once the peer's SYN options
    /// are known (the options negotiated must be set before).
    fn apply_syn_options(&mut self, opts: &TcpOptions) {
        let ipv6 = self.tuple.is_ipv6();
        let peer_mss = opts.mss.map_or(if ipv6 { 1220 } else { 536 }, usize::from);
        // A tiny MSS option would make us send a byte per frame: the
        // floor is [`MIN_SND_MSS`] (never above what our own MTU allows).
        self.mss = peer_mss
            .max(MIN_SND_MSS)
            .min(self.cfg.mss(ipv6) as usize)
            .max(1);
        // RFC 9293 3.7.1: options in every segment come out of the MSS.
        let overhead = if self.ts_ok { TIMESTAMPS_OPTION_LEN } else { 0 };
        self.send_mss = self.mss.saturating_sub(overhead).max(1);
        self.cc = new_controller(self.cfg.congestion, self.send_mss);
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

    /// Where the connection stands in both sequence spaces (RCV.NXT,
    /// SND.UNA). A segment after which this changed was genuine: it carried
    /// new data or acknowledged ours, which a blind attacker cannot do. The
    /// adapter learns the peer's link address only from such segments.
    pub fn progress(&self) -> (SeqNumber, SeqNumber) {
        (self.rcv_nxt, self.snd_una)
    }

    /// Counters of this connection.
    pub fn stats(&self) -> ConnStats {
        ConnStats {
            srtt: self.rtt.srtt(),
            rto: self.rtt.rto(),
            cwnd: self.cc.window(),
            ssthresh: self.cc.ssthresh(),
            recv_bytes_copied: self.recv_buf.bytes_copied(),
            ..self.stats
        }
    }

    /// The most payload one of our segments carries: the peer's MSS,
    /// capped by our MTU, less the timestamps option when negotiated
    /// (RFC 9293 3.7.1). Exposed for tests and tracing.
    pub fn send_mss(&self) -> usize {
        self.send_mss
    }

    /// The most payload to put in one GSO frame now: half the congestion
    /// window, at least one segment (as Linux's `tcp_cwnd_test`). With a
    /// window of a few dozen segments, as after losses, the window then
    /// leaves in two frames or more, so losing one frame still leaves
    /// ACKs with SACK blocks that start fast recovery; a window sent as
    /// one frame is lost whole and only a probe or the retransmission
    /// timeout recovers it.
    pub fn gso_burst_limit(&self) -> usize {
        (self.cc.window() / 2).max(self.send_mss)
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

    /// True when both SYNs carried SACK-permitted (RFC 2018): we report
    /// SACK blocks and recover from the peer's.
    pub fn sack_enabled(&self) -> bool {
        self.sack_ok && self.is_synchronized_or_closed()
    }

    /// True when both SYNs carried timestamps (RFC 7323): every segment
    /// carries them, RTT comes from TSecr and PAWS is on.
    pub fn timestamps_enabled(&self) -> bool {
        self.ts_ok && self.is_synchronized_or_closed()
    }

    /// True when Nagle's algorithm is off.
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }

    /// Turns Nagle's algorithm off (`true`, like TCP_NODELAY) or on.
    /// With it off, a small write goes out at once even while other small
    /// segments are unacknowledged: what request/response apps want.
    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.nodelay = nodelay;
    }

    fn is_synchronized_or_closed(&self) -> bool {
        self.state != State::SynSent
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
        let new_edge = self.rcv_nxt + ((self.window_field() as usize) << self.rcv_wscale);
        let increase = new_edge.distance_from(self.rcv_adv);
        let cap = self.recv_buf.capacity();
        // RFC 9293 3.8.6.2.2 (receiver SWS avoidance): only announce a
        // window that grew by min(half the buffer, one MSS); and only
        // bother with a separate segment when the window had got small.
        if old_wnd < cap / 2 && increase >= self.sws_threshold() {
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
    /// receiving until the peer closes too. Data still held back by Nagle
    /// goes out with the FIN.
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
                    if self.persist_unanswered >= self.cfg.max_retransmissions {
                        self.give_up();
                        return;
                    }
                    self.probe_pending = true;
                    self.persist_unanswered += 1;
                    self.persist_backoff = self.persist_backoff.saturating_add(1);
                }
                Timer::TimeWait => {
                    if self.state == State::TimeWait {
                        self.enter_closed(CloseReason::Normal);
                    }
                }
                Timer::DelayedAck => {
                    if self.is_synchronized() {
                        self.ack_pending = true;
                    }
                }
                Timer::SendOverride => self.sws_override_due = true,
                Timer::LossProbe => {
                    if self.tlp_allowed() {
                        self.tlp_pending = true;
                    }
                }
                Timer::Reorder => {
                    if self.is_sending_state() {
                        self.rack_detect_lost_retransmissions(now);
                    }
                }
            }
        }
    }

    /// Retransmissions ran out: RST and CLOSED(TimedOut).
    fn give_up(&mut self) {
        let ack = (self.state != State::SynSent).then_some(self.rcv_nxt);
        self.rst_pending = Some(self.rst_segment(self.snd_max, ack));
        self.enter_closed(CloseReason::TimedOut);
    }

    /// RFC 6298 5.4-5.6 and RFC 5681 3.1: resend from SND.UNA with a
    /// doubled RTO and cwnd = 1 MSS, or give up.
    fn on_retransmit_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::Closed | State::TimeWait) || self.snd_una == self.snd_max {
            return;
        }
        let limit = match self.state {
            State::SynSent | State::SynReceived => self.cfg.syn_retransmissions,
            _ => self.cfg.max_retransmissions,
        };
        if self.rtt.backoffs() >= limit {
            self.give_up();
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

    // ----- output ---------------------------------------------------------

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

    fn next_segment(&mut self, now: Instant, spare: &mut Vec<u8>) -> Option<Segment> {
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

    fn count_retransmission(&mut self) {
        self.stats.segments_retransmitted += 1;
        self.push_event(Event::Retransmit);
    }

    fn is_sending_state(&self) -> bool {
        matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck
        )
    }

    /// Everything un-SACKed below this is lost: `lost_until`, and in SACK
    /// recovery what RFC 6675 IsLost says.
    fn lost_boundary(&self) -> SeqNumber {
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
    fn pipe(&self) -> usize {
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
    fn next_retransmission(&mut self, now: Instant, spare: &mut Vec<u8>) -> Option<Segment> {
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
    fn log_retransmission(&mut self, now: Instant, start: SeqNumber, end: SeqNumber) {
        self.tx_order += 1;
        self.rxt_log.record(start, end, self.tx_order, now);
    }

    /// True while a SACK recovery has resent every hole it knows to be
    /// lost: nothing but the ACKs of those retransmissions can make
    /// progress, and if the last of them (or its retransmission) is
    /// lost, only a timer can.
    fn recovery_tail(&self) -> bool {
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
    fn tlp_allowed(&self) -> bool {
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
    fn arm_loss_probe(&mut self, now: Instant) {
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
    fn loss_probe(&mut self, now: Instant, spare: &mut Vec<u8>) -> Option<Segment> {
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

    /// Option bytes SACK blocks will add to our next segment.
    fn sack_option_len(&self) -> usize {
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
    fn next_data_segment(&mut self, now: Instant, spare: &mut Vec<u8>) -> Option<Segment> {
        if !self.is_sending_state() {
            return None;
        }
        let data_end = self.send_buf.end();
        let unsent = data_end.distance_from(self.snd_nxt);
        let fin_unsent = self.fin_seq.is_some_and(|f| self.snd_nxt <= f);
        if unsent == 0 && !fin_unsent {
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

    /// Bookkeeping after sending `seg_len` sequence numbers from `seq`.
    fn on_sent(&mut self, now: Instant, seq: SeqNumber, seg_len: usize, data_len: usize) {
        let end = seq + seg_len;
        let new_data = end.distance_from(self.snd_max);
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
    fn update_persist(&mut self, now: Instant) {
        let waiting = self.send_buf.end() > self.snd_nxt
            || self.fin_seq.is_some_and(|f| self.snd_nxt <= f)
            || self.snd_una < self.snd_max;
        let blocked = self.is_sending_state() && self.snd_wnd == 0 && waiting;
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

    /// RFC 9293 3.8.6.2.2: the right edge moves only by at least
    /// min(half the buffer, one MSS).
    fn sws_threshold(&self) -> usize {
        (self.recv_buf.capacity() / 2)
            .min(self.cfg.mss(self.tuple.is_ipv6()) as usize)
            .max(1)
    }

    /// The window field we send now, with receiver SWS avoidance: a free
    /// space that would move the advertised right edge by less than the
    /// threshold is not announced yet.
    fn window_field(&self) -> u16 {
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
    fn ts_val(&self, now: Instant) -> u32 {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u32;
        self.ts_offset.wrapping_add(ms)
    }

    /// Builds a segment from our side carrying ACK (except our first SYN),
    /// the current window and the negotiated options.
    /// The segment carrying `len` bytes of the send buffer from `seq` (in
    /// `spare`'s buffer), with FIN if `fin`, and PSH when it reaches
    /// `data_end`, the end of the data queued.
    fn data_segment(
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

    fn segment(
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
            payload: crate::Payload::new(),
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

    /// RFC 5961 7: a challenge ACK, at most `challenge_ack_limit` per
    /// second, so a blind attacker cannot use us as an amplifier or learn
    /// from our ACK rate.
    fn challenge_ack(&mut self, now: Instant) {
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
    fn syn_may_reincarnate(&self, syn: &Segment) -> bool {
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
    fn settle_invalid_replies(&mut self, now: Instant, limiter: &mut dyn ReplyLimiter) {
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
    fn on_segment_syn_sent(&mut self, now: Instant, seg: &Segment) {
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
    fn on_text(&mut self, now: Instant, seq: SeqNumber, text: &[u8], ack_now: bool) {
        let before = self.rcv_nxt;
        let had_held = self.recv_buf.has_held();
        self.rcv_mss = self
            .rcv_mss
            .max(text.len().min(self.cfg.mss(self.tuple.is_ipv6()) as usize));
        self.rcv_nxt = self.recv_buf.insert(self.rcv_nxt, seq, text);
        if self.rcv_nxt != before {
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
    fn on_ack(&mut self, now: Instant, seg: &Segment, ack: SeqNumber) {
        let flight_before = self.snd_max - self.snd_una;
        let seg_wnd = (seg.window as usize) << self.snd_wscale;
        let window_same = seg_wnd == self.snd_wnd;
        self.persist_unanswered = 0;

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

    /// RFC 8985 6.2 steps 1-2: the most recently sent segment this ACK
    /// reports delivered (the top of each SACK block, the byte below the
    /// cumulative ACK) becomes RACK's reference, with the RTT it took.
    /// Bytes we retransmitted are skipped: which copy arrived is
    /// ambiguous (step 2's "spurious retransmission" case).
    fn rack_update(&mut self, now: Instant, seg: &Segment, ack: SeqNumber) {
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
    fn rack_reo_wnd(&self) -> Duration {
        let wnd = self.rack_min_rtt.unwrap_or_default() / 4;
        self.rtt.srtt().map_or(wnd, |s| wnd.min(s.max(MIN_PTO)))
    }

    /// RFC 8985 6.2 step 5 for retransmissions (see [`RetransmitLog`]).
    /// Otherwise the reordering timer waits for the moment the next one
    /// becomes lost. The retransmission at SND.UNA is resent at once;
    /// others when cwnd allows.
    fn rack_detect_lost_retransmissions(&mut self, now: Instant) {
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
    fn maybe_enter_recovery(&mut self, now: Instant, flight: usize) {
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

    /// SND.UNA moves forward to `ack` (RFC 9293 3.10.7.4, ESTABLISHED).
    fn on_ack_advance(&mut self, now: Instant, ack: SeqNumber, tsecr: Option<u32>) {
        let released = self.send_buf.ack_to(ack);
        self.snd_una = ack;
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

/// A buffer for `len` bytes of payload: `spare` (emptied) when it is
/// there, else a new one.
fn payload_buffer(spare: &mut Vec<u8>, len: usize) -> Vec<u8> {
    let mut v = std::mem::take(spare);
    v.clear();
    v.reserve(len);
    v
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
