//! Tunables of one connection.

use std::time::Duration;

use crate::congestion::CongestionAlgorithm;

/// The knobs of a connection, shared by every connection of a processor.
///
/// It exists so that tests can shorten TIME-WAIT and retry limits and the
/// adapter can set buffer sizes, without any constant buried in the state
/// machine.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// Link MTU (1500): our MSS is `mtu - 40` (IPv4) or `mtu - 60` (IPv6).
    pub mtu: usize,
    /// Receive buffer size: the most we ever advertise as our window.
    pub recv_buffer: usize,
    /// Bytes the application can queue for sending (unsent + unacked).
    pub send_buffer: usize,
    /// TIME-WAIT length (2*MSL; RFC 9293 suggests MSL = 2 min, we use 60 s).
    pub time_wait: Duration,
    /// RTO before any RTT sample (RFC 6298 2.1: 1 s).
    pub rto_initial: Duration,
    /// Lower bound of the RTO (RFC 6298 says 1 s; Linux uses 200 ms).
    pub rto_min: Duration,
    /// Upper bound of the RTO, backoff included (NonStop's maximum
    /// retransmission timeout; its default is 64 s, ours 60 s as Linux's
    /// `TCP_RTO_MAX` was before it became tunable).
    pub rto_max: Duration,
    /// Retransmissions of one segment before the connection is reset
    /// (NonStop's maximum retransmission count, 12 there and here).
    pub max_retransmissions: u32,
    /// Reset a connection that has been retransmitting for this long
    /// without progress: counted from the first retransmission timeout
    /// since something of ours was last acknowledged (None: only
    /// `max_retransmissions` ends it). NonStop's total retransmission
    /// time, 720 s there and here. It exists because `max_retransmissions`
    /// alone bounds the time only through `rto_max`: with a long
    /// `rto_max` a dead peer would hold a connection for hours, and an
    /// operator thinks of "how long before we give up" in seconds. The
    /// connection closes with [`crate::CloseReason::TimedOut`], as when the
    /// count runs out.
    pub total_retransmission_time: Option<Duration>,
    /// Retransmissions of a SYN or SYN|ACK before giving up.
    pub syn_retransmissions: u32,
    /// Congestion controller (CUBIC unless a test or the operator picks
    /// NewReno).
    pub congestion: CongestionAlgorithm,
    /// Longest wait before an ACK for in-order data (RFC 1122 4.2.3.2:
    /// at most 500 ms; RFC 5681 4.2: < 500 ms; Linux's minimum is 40 ms).
    /// Every second full-sized segment is ACKed at once regardless;
    /// zero ACKs every segment at once.
    pub delayed_ack: Duration,
    /// Start connections with Nagle's algorithm off (TCP_NODELAY); each
    /// connection can change it with `Connection::set_nodelay`.
    pub nodelay: bool,
    /// Offer / accept SACK (RFC 2018).
    pub sack: bool,
    /// Offer / accept timestamps (RFC 7323).
    pub timestamps: bool,
    /// RFC 5961 7: challenge ACKs a connection sends per second at most.
    pub challenge_ack_limit: u32,
    /// RFC 9293 3.8.6.2.1: how long a sub-MSS segment that only the peer's
    /// small window holds back may wait before it is sent anyway (the
    /// "override timeout", 0.1 to 1 s).
    pub sws_override: Duration,
    /// Reset a connection on which nothing has moved for this long: no
    /// byte of the peer's accepted, none of ours acknowledged, no state
    /// change (None: never). RFC 9293 sets no such limit, so without one a
    /// peer may hold a connection and its buffers for ever; NonStop's
    /// TCP/IP and most servers close idle sessions too. TIME-WAIT has its
    /// own timer and is not counted.
    pub idle_timeout: Option<Duration>,
    /// Reset a connection whose peer has advertised a zero window, with our
    /// data waiting, for this long, however it answers our window probes
    /// (None: never). RFC 9293 3.8.6.1 lets a sender probe for ever as
    /// long as the peer answers; that is what lets a peer pin a full send
    /// buffer (Linux bounds only orphaned sockets, `tcp_orphan_retries`).
    pub zero_window_timeout: Option<Duration>,
}

/// The default [`TcpConfig::idle_timeout`]: 10 minutes, long enough for an
/// interactive session left alone over a coffee, short enough that a peer
/// that opens connections and goes silent does not keep them for hours.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// The default [`TcpConfig::total_retransmission_time`]: NonStop's 720 s.
/// With the other defaults (1 s initial RTO, 60 s `rto_max`, 12
/// retransmissions) the count ends a stalled connection first, about
/// 8 minutes (483 s) after the segment was sent; the time limit takes over when `rto_max` or the count
/// is raised.
pub const DEFAULT_TOTAL_RETRANSMISSION_TIME: Duration = Duration::from_secs(720);

/// The default [`TcpConfig::zero_window_timeout`]: 2 minutes, the time a
/// stalled reader (a paused download) is given before its connection's
/// send buffer is taken back.
pub const DEFAULT_ZERO_WINDOW_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            mtu: 1500,
            recv_buffer: 256 * 1024,
            send_buffer: 256 * 1024,
            time_wait: Duration::from_secs(60),
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            max_retransmissions: 12,
            total_retransmission_time: Some(DEFAULT_TOTAL_RETRANSMISSION_TIME),
            syn_retransmissions: 5,
            congestion: CongestionAlgorithm::Cubic,
            delayed_ack: Duration::from_millis(40),
            nodelay: false,
            sack: true,
            timestamps: true,
            challenge_ack_limit: 10,
            sws_override: Duration::from_millis(200),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            zero_window_timeout: Some(DEFAULT_ZERO_WINDOW_TIMEOUT),
        }
    }
}

/// The smallest MSS we send with, whatever the peer's MSS option says
/// (Linux's `tcp_min_snd_mss`, 48 by default since the 2019 SACK panic
/// fixes, CVE-2019-11479). With a peer MSS of 1, a reply left one byte per
/// frame and 40 or more bytes of headers each: 48 is the most a real path
/// needs (IPv4's minimum MTU of 68 less 20 bytes of IP header) and makes
/// the header overhead at most about half.
pub const MIN_SND_MSS: usize = 48;

impl TcpConfig {
    /// The MSS we advertise for a connection of this address family:
    /// the MTU minus the minimal IP and TCP headers.
    pub fn mss(&self, ipv6: bool) -> u16 {
        let overhead = if ipv6 { 60 } else { 40 };
        self.mtu
            .saturating_sub(overhead)
            .clamp(1, u16::MAX as usize) as u16
    }
}
