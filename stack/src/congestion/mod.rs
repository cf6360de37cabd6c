//! Congestion control (RFC 5681, RFC 9438): how much may be in flight.
//!
//! The connection owns loss *detection* and *recovery* (duplicate ACKs,
//! SACK scoreboard, RTO); a `Controller` only answers "what is cwnd now"
//! and reacts to the events the connection reports: bytes newly
//! acknowledged, a congestion event (entering fast recovery), a
//! retransmission timeout, and a restart after idle. NewReno and CUBIC sit
//! behind this one trait so the algorithm is a [`crate::Config`] choice.

use std::fmt::Debug;
use std::time::{Duration, Instant};

mod cubic;
mod new_reno;

pub(crate) use cubic::Cubic;
pub(crate) use new_reno::NewReno;

/// Which congestion controller a connection runs.
///
/// It exists so the adapter (or a test) can pick the algorithm per
/// processor through [`crate::Config::congestion`] without the state machine
/// knowing which one runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CongestionAlgorithm {
    /// CUBIC (RFC 9438), the Linux default: beta 0.7, cubic window growth.
    #[default]
    Cubic,
    /// NewReno (RFC 5681 + RFC 6582): halve on loss, +1 MSS per RTT.
    NewReno,
}

/// RFC 6928: initial window of 10 segments (capped at 14600 bytes... for
/// a 1460-byte MSS that cap is exactly 10 segments; we keep 10 * MSS).
pub(crate) const INITIAL_WINDOW_SEGMENTS: usize = 10;

/// The interface every congestion controller implements.
///
/// It exists so the connection drives any algorithm through the same
/// five events and reads one number (`window`) back.
pub(crate) trait Controller: Debug + Send {
    /// cwnd in bytes.
    fn window(&self) -> usize;
    /// ssthresh in bytes (`usize::MAX` until the first loss).
    fn ssthresh(&self) -> usize;
    /// New data was cumulatively acknowledged outside fast recovery.
    /// `cwnd_limited` is false when the sender did not use the window it
    /// had (then cwnd must not grow, RFC 7661 / RFC 9438 4.2).
    fn on_ack(&mut self, now: Instant, acked: usize, rtt: Option<Duration>, cwnd_limited: bool);
    /// A loss was detected by duplicate ACKs or SACK (entering fast
    /// recovery): set ssthresh and cwnd for the recovery.
    fn on_congestion_event(&mut self, now: Instant, flight: usize);
    /// The retransmission timer fired. `first` is false when the same data
    /// timed out again (ssthresh is then held, RFC 5681 3.1).
    fn on_rto(&mut self, flight: usize, first: bool);
    /// RFC 5681 4.1: nothing was sent for longer than an RTO; restart from
    /// at most the initial window.
    fn on_idle_restart(&mut self);
}

/// Builds the controller `algo` for a connection whose segments carry
/// `mss` bytes.
pub(crate) fn new_controller(algo: CongestionAlgorithm, mss: usize) -> Box<dyn Controller> {
    match algo {
        CongestionAlgorithm::Cubic => Box::new(Cubic::new(mss)),
        CongestionAlgorithm::NewReno => Box::new(NewReno::new(mss)),
    }
}

/// RFC 6928 initial window for this MSS.
pub(crate) fn initial_window(mss: usize) -> usize {
    INITIAL_WINDOW_SEGMENTS * mss
}

/// RFC 3465 (ABC, L = 2): slow start grows cwnd by what was acknowledged,
/// at most 2 MSS per ACK; returns the new cwnd, never above `ssthresh`
/// by more than what one ACK adds.
pub(crate) fn slow_start(cwnd: usize, acked: usize, mss: usize) -> usize {
    cwnd.saturating_add(acked.min(2 * mss))
}
