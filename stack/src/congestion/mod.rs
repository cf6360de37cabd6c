//! Congestion control (RFC 5681, RFC 9438): how much may be in flight.
//!
//! The connection owns loss *detection* and *recovery* (duplicate ACKs,
//! SACK scoreboard, RTO); a `Controller` only answers "what is cwnd now"
//! and reacts to the events the connection reports: bytes newly
//! acknowledged, a congestion event (entering fast recovery), a
//! retransmission timeout, and a restart after idle. NewReno, CUBIC and
//! BBR sit behind this one trait so the algorithm is a [`crate::TcpConfig`]
//! choice.
//!
//! BBR builds a model of the path from delivery-rate samples
//! ([`crate::rate`]) instead of reacting to loss; a controller that wants
//! them says so ([`Controller::wants_samples`]) and then gets an
//! [`AckSample`] for every ACK that delivered data, in recovery too. The
//! loss-based controllers ignore samples and cost nothing for them.

use std::fmt::Debug;
use std::time::{Duration, Instant};

mod bbr;
mod cubic;
mod new_reno;

pub(crate) use bbr::Bbr;
pub(crate) use cubic::Cubic;
pub(crate) use new_reno::NewReno;

/// Which congestion controller a connection runs.
///
/// It exists so the adapter (or a test) can pick the algorithm per
/// processor through [`crate::TcpConfig::congestion`] without the state machine
/// knowing which one runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CongestionAlgorithm {
    /// CUBIC (RFC 9438), the Linux default: beta 0.7, cubic window growth.
    #[default]
    Cubic,
    /// NewReno (RFC 5681 + RFC 6582): halve on loss, +1 MSS per RTT.
    NewReno,
    /// BBR v1 (draft-cardwell-iccrg-bbr-congestion-control-00): a model
    /// of the path's bottleneck bandwidth and minimum RTT sets cwnd to
    /// twice the bandwidth-delay product; random loss does not shrink it.
    Bbr,
}

impl CongestionAlgorithm {
    /// Every algorithm, for messages and parsers.
    pub const ALL: [CongestionAlgorithm; 3] = [
        CongestionAlgorithm::Cubic,
        CongestionAlgorithm::NewReno,
        CongestionAlgorithm::Bbr,
    ];

    /// The name on the command line and in config files (`cubic`,
    /// `newreno`, `bbr`), the same as Linux's `tcp_congestion_control`
    /// except `newreno` (Linux says `reno`).
    pub fn name(self) -> &'static str {
        match self {
            CongestionAlgorithm::Cubic => "cubic",
            CongestionAlgorithm::NewReno => "newreno",
            CongestionAlgorithm::Bbr => "bbr",
        }
    }

    /// Parses [`CongestionAlgorithm::name`]; anything else is `None`.
    pub fn from_name(s: &str) -> Option<CongestionAlgorithm> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }
}

impl std::fmt::Display for CongestionAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What one ACK told the sender, for a model-based controller (BBR).
///
/// It exists so the connection, which owns the scoreboard and the send
/// log, hands a controller everything the BBR draft's per-ACK update
/// reads, in one value, without the controller seeing sequence numbers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AckSample {
    /// When the ACK arrived.
    pub(crate) now: Instant,
    /// Bytes this ACK newly delivered (cumulatively or by SACK).
    pub(crate) delivered: usize,
    /// Bytes delivered over the connection's life (C.delivered).
    pub(crate) total_delivered: u64,
    /// Data in flight (RFC 6675 pipe) before the ACK.
    pub(crate) prior_inflight: usize,
    /// Data in flight after it.
    pub(crate) inflight: usize,
    /// The ACK made the sender find data lost.
    pub(crate) lost: bool,
    /// Fast recovery or an RTO's recovery is running after this ACK.
    pub(crate) in_recovery: bool,
    /// The delivery-rate sample, when the ACK delivered a segment the
    /// estimator can time (not a retransmission).
    pub(crate) rate: Option<crate::rate::RateSample>,
}

/// RFC 6928: initial window of 10 segments (capped at 14600 bytes... for
/// a 1460-byte MSS that cap is exactly 10 segments; we keep 10 * MSS).
pub(crate) const INITIAL_WINDOW_SEGMENTS: usize = 10;

/// The interface every congestion controller implements.
///
/// It exists so the connection drives any algorithm through the same
/// five events and reads one number (`window`) back.
pub(crate) trait Controller: Debug + Send {
    /// A copy of this controller's whole state: what makes a
    /// connection's checkpoint (`Connection: Clone`) carry its congestion
    /// state too, whichever algorithm runs.
    fn clone_box(&self) -> Box<dyn Controller>;
    /// Starts over, in place, as a fresh controller for segments of `mss`
    /// bytes: what the connection does once the peer's SYN says the MSS
    /// (a new controller there was a second allocation per connection).
    fn restart(&mut self, mss: usize);
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
    /// True if the controller reads [`AckSample`]s: the connection then
    /// keeps a delivery-rate log ([`crate::rate::DeliveryRate`]).
    fn wants_samples(&self) -> bool {
        false
    }
    /// An ACK delivered data (in or out of recovery); only called when
    /// [`Controller::wants_samples`] says so.
    fn on_ack_sample(&mut self, _sample: &AckSample) {}
}

/// Builds the controller `algo` for a connection whose segments carry
/// `mss` bytes.
pub(crate) fn new_controller(algo: CongestionAlgorithm, mss: usize) -> Box<dyn Controller> {
    match algo {
        CongestionAlgorithm::Cubic => Box::new(Cubic::new(mss)),
        CongestionAlgorithm::NewReno => Box::new(NewReno::new(mss)),
        CongestionAlgorithm::Bbr => Box::new(Bbr::new(mss)),
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

impl Clone for Box<dyn Controller> {
    fn clone(&self) -> Box<dyn Controller> {
        self.clone_box()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A controller restarted for a new MSS is the fresh one `new_controller`
    /// would build: its losses, grown window and threshold forgotten.
    #[test]
    fn restart_is_a_fresh_controller_for_the_new_mss() {
        let algos = [
            CongestionAlgorithm::Cubic,
            CongestionAlgorithm::NewReno,
            CongestionAlgorithm::Bbr,
        ];
        for algo in algos {
            let mut cc = new_controller(algo, 536);
            let now = Instant::now();
            cc.on_congestion_event(now, 10 * 536);
            cc.on_rto(10 * 536, true);
            cc.restart(1460);
            let fresh = new_controller(algo, 1460);
            assert_eq!(format!("{cc:?}"), format!("{fresh:?}"), "{algo:?}");
            assert_eq!(cc.window(), initial_window(1460), "{algo:?}");
        }
    }
}
