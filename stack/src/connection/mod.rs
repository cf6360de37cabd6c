//! One TCP connection: the RFC 9293 state machine, sans-IO.
//!
//! A segment enters through [`Connection::on_segment`], time through
//! [`Connection::on_timeout`], application data through
//! [`Connection::send`] / [`Connection::recv`]; segments leave through
//! [`Connection::poll_transmit`] and notifications through
//! [`Connection::poll_event`]. Field names follow the RFC (`snd_una`,
//! `snd_nxt`, `rcv_nxt`, ...) so the code can be read against it.

mod rcv;
mod recovery;
mod snd;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{Config, MIN_SND_MSS};
use crate::congestion::{new_controller, Controller};
use crate::rack::RetransmitLog;
use crate::rate::DeliveryRate;
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
    /// Nothing moved for [`Config::idle_timeout`] (we sent RST).
    Idle,
    /// The peer kept a zero window for [`Config::zero_window_timeout`]
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
    /// Delivery-rate estimation, kept only for a controller that reads
    /// samples (BBR).
    rate: Option<Box<DeliveryRate>>,
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
    /// Since when the peer's window has been zero with our data waiting
    /// (the start of the current persist episode).
    zero_window_since: Option<Instant>,
    /// When something last moved: a byte of the peer's accepted, one of
    /// ours acknowledged, or the connection opened (for the idle limit).
    last_progress: Instant,
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
        let mut timers = TimerTable::default();
        if let Some(limit) = cfg.idle_timeout {
            timers.set(Timer::Idle, now + limit);
        }
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
            rate: None,
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
            timers,
            persist_backoff: 0,
            zero_window_since: None,
            last_progress: now,
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
        cfg: &Config,
        tuple: FourTuple,
        ack: &Segment,
        mss: u16,
    ) -> Option<Connection> {
        let iss = SeqNumber(ack.ack?.0.wrapping_sub(1));
        let syn = crate::SynCookies::rebuilt_syn(ack, mss);
        let mut c = Connection::accept(now, cfg, tuple, &syn, iss);
        // What the stateless SYN|ACK sent and advertised.
        c.snd_nxt = iss + 1;
        c.snd_max = iss + 1;
        c.last_ack_sent = c.rcv_nxt;
        c.rcv_adv = c.rcv_nxt + usize::from(crate::SynCookies::WINDOW);
        let _ = c.on_segment(now, ack);
        Some(c)
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
        self.rate = self
            .cc
            .wants_samples()
            .then(|| Box::new(DeliveryRate::new(self.epoch)));
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
            congestion: self.cfg.congestion,
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
                        self.give_up(CloseReason::TimedOut);
                        return;
                    }
                    let limit = self.cfg.zero_window_timeout;
                    if let (Some(since), Some(limit)) = (self.zero_window_since, limit) {
                        if now.saturating_duration_since(since) >= limit {
                            self.give_up(CloseReason::ZeroWindow);
                            return;
                        }
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
        let log = std::mem::size_of::<(SeqNumber, u64, Instant)>();
        let pair = std::mem::size_of::<(SeqNumber, SeqNumber)>();
        std::mem::size_of::<Connection>()
            + self.send_buf.memory()
            + self.recv_buf.memory()
            + self.sent_log.capacity() * log
            + self.rack_rxt.capacity() * pair
            + self.events.capacity() * std::mem::size_of::<Event>()
            + self.rate.as_ref().map_or(0, |r| r.memory())
    }

    /// Gives back the buffer memory the queued bytes do not use (a buffer
    /// that once filled keeps its allocation otherwise). The processor
    /// calls it on connections that went quiet, and on all of them when
    /// its memory budget runs short.
    pub fn trim(&mut self) {
        self.send_buf.shrink();
        self.recv_buf.shrink();
        self.sent_log.shrink_to_fit();
        self.rack_rxt.shrink_to_fit();
        self.events.shrink_to_fit();
        if let Some(r) = &mut self.rate {
            r.shrink();
        }
    }

    /// Since when the peer's window has been zero with our data waiting,
    /// if it is now: the processor's memory policy resets the connections
    /// that have held a zero window longest first.
    pub fn zero_window_since(&self) -> Option<Instant> {
        self.zero_window_since
    }

    /// When something last moved on the connection (see
    /// [`Config::idle_timeout`]).
    pub fn last_progress(&self) -> Instant {
        self.last_progress
    }

    // ----- output ---------------------------------------------------------

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
