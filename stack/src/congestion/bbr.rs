//! BBR v1 congestion control (draft-cardwell-iccrg-bbr-congestion-control-00):
//! a model of the path, not a reaction to loss.
//!
//! BBR keeps two estimates from the delivery-rate samples
//! ([`crate::rate`]): the bottleneck bandwidth (`max_bw`, the largest
//! delivery rate over the last 10 round trips) and the propagation delay
//! (`min_rtt`, the smallest RTT over the last 10 s). Their product is the
//! bandwidth-delay product (BDP); cwnd is a gain times the BDP. A state
//! machine moves the gains: STARTUP (2/ln2, the sending rate doubles each
//! round) until the bandwidth stops growing by 25% for 3 rounds, DRAIN
//! until what is in flight is down to one BDP, then PROBE_BW (cwnd gain 2,
//! pacing gains cycling 1.25, 0.75, 1 x 6), and PROBE_RTT (cwnd of 4
//! segments for 200 ms and a round) when min_rtt has not been seen again
//! for 10 s. A random loss changes neither estimate: during a recovery
//! cwnd only follows packet conservation for one round, and the cwnd from
//! before is restored when the recovery ends.
//!
//! vnic does not pace. The processor would have to wake once per segment
//! (about every 10 µs at the rates a TAP carries) or per burst, and on a
//! TAP the bottleneck is the CPU, not a queue that pacing keeps short.
//! Without pacing the sending rate is cwnd / RTT, so the gains act
//! through cwnd: PROBE_BW's cwnd of 2 BDP keeps the pipe full through the
//! ACK gaps pacing would smooth (the draft's own reason for gain 2), and
//! DRAIN, whose low pacing gain would otherwise drain the queue, holds
//! cwnd at one BDP until the flight is down to it. The pacing rate is
//! still computed: the draft's send quantum, part of the cwnd target,
//! derives from it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{initial_window, AckSample, Controller};

/// 2/ln 2: STARTUP's gains, the smallest that double the delivery rate
/// every round.
const HIGH_GAIN: f64 = 2.885_390_081_777_927;
/// DRAIN's pacing gain: drains in one round the queue STARTUP built.
const DRAIN_GAIN: f64 = 1.0 / HIGH_GAIN;
/// PROBE_BW's cwnd gain.
const CWND_GAIN: f64 = 2.0;
/// PROBE_BW's pacing gains, one phase (about one min_rtt) each.
const GAIN_CYCLE: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// Round trips over which max_bw is the largest sample.
const BW_FILTER_ROUNDS: u64 = 10;
/// How long a min_rtt holds before PROBE_RTT looks for it again.
const MIN_RTT_FILTER: Duration = Duration::from_secs(10);
/// The least time PROBE_RTT keeps the flight small.
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);
/// The smallest cwnd, in segments (and PROBE_RTT's cwnd).
const MIN_PIPE_SEGMENTS: usize = 4;
/// STARTUP goes on while max_bw grows by this factor each round...
const FULL_BW_THRESH: f64 = 1.25;
/// ... and ends after this many rounds without such growth.
const FULL_BW_ROUNDS: u32 = 3;

/// BBR's states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Doubling the rate each round until the bandwidth stops growing.
    Startup,
    /// Draining the queue STARTUP built, down to one BDP in flight.
    Drain,
    /// Steady state: cwnd 2 BDP, pacing gain cycling around 1.
    ProbeBw,
    /// Four segments in flight for 200 ms, to see min_rtt again.
    ProbeRtt,
}

/// The largest bandwidth sample of the last [`BW_FILTER_ROUNDS`] round
/// trips: a deque of samples decreasing in value and increasing in round,
/// at most one per round, so it is exact and holds at most 11 entries.
#[derive(Clone, Debug, Default)]
struct MaxBwFilter {
    samples: VecDeque<(u64, f64)>,
}

impl MaxBwFilter {
    fn update(&mut self, round: u64, bw: f64) {
        while self
            .samples
            .front()
            .is_some_and(|s| s.0 + BW_FILTER_ROUNDS <= round)
        {
            self.samples.pop_front();
        }
        if self
            .samples
            .back()
            .is_some_and(|s| s.0 == round && s.1 >= bw)
        {
            return;
        }
        while self.samples.back().is_some_and(|s| s.1 <= bw) {
            self.samples.pop_back();
        }
        self.samples.push_back((round, bw));
    }

    fn get(&self) -> f64 {
        self.samples.front().map_or(0.0, |s| s.1)
    }
}

/// BBR's state (the draft's `BBR.*`), windows in bytes, rates in bytes
/// per second.
///
/// It exists because on paths with random loss (a lossy link, the 1% of
/// the bench) CUBIC and NewReno take every loss for congestion and cut
/// cwnd, while the path could carry the same rate; BBR keeps the rate its
/// model says the path has. Linux peers that run BBR are what vnic is
/// compared with.
#[derive(Clone, Debug)]
pub(crate) struct Bbr {
    mss: usize,
    mode: Mode,
    cwnd: usize,
    /// cwnd saved on entering a recovery or PROBE_RTT, restored after.
    prior_cwnd: usize,
    pacing_gain: f64,
    cwnd_gain: f64,
    pacing_rate: f64,
    max_bw: MaxBwFilter,
    min_rtt: Option<Duration>,
    min_rtt_stamp: Option<Instant>,
    round_count: u64,
    next_round_delivered: u64,
    round_start: bool,
    filled_pipe: bool,
    full_bw: f64,
    full_bw_count: u32,
    cycle_index: usize,
    cycle_stamp: Option<Instant>,
    probe_rtt_done: Option<Instant>,
    probe_rtt_round_done: bool,
    /// A recovery (fast or after an RTO) is running.
    in_recovery: bool,
    /// Packet conservation until a sample sent at or after this delivered
    /// count comes back (one round into a fast recovery).
    conservation_until: Option<u64>,
    /// Samples of segments sent before this delivered count (those sent
    /// in PROBE_RTT) are application-limited: the draft marks the
    /// connection app-limited through PROBE_RTT, for the same end.
    probe_rtt_limited_until: u64,
    idle_restart: bool,
}

impl Bbr {
    /// A connection's BBR, in STARTUP with the initial window.
    pub(crate) fn new(mss: usize) -> Self {
        let cwnd = initial_window(mss);
        Bbr {
            mss,
            mode: Mode::Startup,
            cwnd,
            prior_cwnd: cwnd,
            pacing_gain: HIGH_GAIN,
            cwnd_gain: HIGH_GAIN,
            // The draft's nominal rate before any RTT: IW per 1 ms.
            pacing_rate: HIGH_GAIN * cwnd as f64 / 1e-3,
            max_bw: MaxBwFilter::default(),
            min_rtt: None,
            min_rtt_stamp: None,
            round_count: 0,
            next_round_delivered: 0,
            round_start: false,
            filled_pipe: false,
            full_bw: 0.0,
            full_bw_count: 0,
            cycle_index: 0,
            cycle_stamp: None,
            probe_rtt_done: None,
            probe_rtt_round_done: false,
            in_recovery: false,
            conservation_until: None,
            probe_rtt_limited_until: 0,
            idle_restart: false,
        }
    }

    fn min_pipe(&self) -> usize {
        MIN_PIPE_SEGMENTS * self.mss
    }

    /// BBRInflight: `gain` times the estimated BDP (the initial window
    /// before the model has both estimates).
    fn inflight(&self, gain: f64) -> usize {
        let bw = self.max_bw.get();
        match self.min_rtt {
            Some(rtt) if bw > 0.0 => (gain * bw * rtt.as_secs_f64()) as usize,
            _ => initial_window(self.mss),
        }
    }

    /// The draft's send quantum: what leaves in one burst at the pacing
    /// rate (1 or 2 segments at low rates, 1 ms of data up to 64 KiB).
    fn send_quantum(&self) -> usize {
        if self.pacing_rate < 1.2e6 / 8.0 {
            self.mss
        } else if self.pacing_rate < 24e6 / 8.0 {
            2 * self.mss
        } else {
            ((self.pacing_rate * 1e-3) as usize).clamp(2 * self.mss, 64 * 1024)
        }
    }

    /// BBRUpdateTargetCwnd: the gain's BDP plus room for three quanta in
    /// flight (delayed and stretched ACKs), two segments more while
    /// PROBE_BW probes up.
    fn target_cwnd(&self) -> usize {
        let mut t = self.inflight(self.cwnd_gain) + 3 * self.send_quantum();
        if self.mode == Mode::ProbeBw && self.cycle_index == 0 {
            t += 2 * self.mss;
        }
        t
    }

    fn save_cwnd(&mut self) {
        self.prior_cwnd = if !self.in_recovery && self.mode != Mode::ProbeRtt {
            self.cwnd
        } else {
            self.prior_cwnd.max(self.cwnd)
        };
    }

    fn restore_cwnd(&mut self) {
        self.cwnd = self.cwnd.max(self.prior_cwnd);
    }

    fn enter_startup(&mut self) {
        self.mode = Mode::Startup;
        self.pacing_gain = HIGH_GAIN;
        self.cwnd_gain = HIGH_GAIN;
    }

    /// PROBE_BW starts at a pseudo-random phase other than the 0.75 one
    /// (`seed` spreads connections over the phases).
    fn enter_probe_bw(&mut self, now: Instant, seed: u64) {
        self.mode = Mode::ProbeBw;
        self.cwnd_gain = CWND_GAIN;
        // After the advance below: any phase but index 1.
        self.cycle_index = GAIN_CYCLE.len() - 1 - (seed % (GAIN_CYCLE.len() as u64 - 1)) as usize;
        self.advance_cycle_phase(now);
    }

    fn advance_cycle_phase(&mut self, now: Instant) {
        self.cycle_stamp = Some(now);
        self.cycle_index = (self.cycle_index + 1) % GAIN_CYCLE.len();
        self.pacing_gain = GAIN_CYCLE[self.cycle_index];
    }

    /// BBRUpdateRound: a round trip ends when a segment sent after the
    /// previous round's end is delivered.
    fn update_round(&mut self, s: &AckSample) {
        self.round_start = false;
        if let Some(r) = s.rate {
            if r.prior_delivered >= self.next_round_delivered {
                self.next_round_delivered = s.total_delivered;
                self.round_count += 1;
                self.round_start = true;
            }
        }
    }

    /// BBRUpdateBtlBw: application-limited samples (PROBE_RTT's too)
    /// count only when they beat the estimate, so a quiet spell does not
    /// age the estimate out; samples shorter than min_rtt are noise.
    fn update_bw(&mut self, s: &AckSample) {
        let Some(r) = s.rate else { return };
        if self.min_rtt.is_some_and(|m| r.interval < m) || r.interval.is_zero() {
            return;
        }
        let app_limited = r.app_limited
            || self.mode == Mode::ProbeRtt
            || r.prior_delivered < self.probe_rtt_limited_until;
        let bw = r.bytes_per_sec();
        if bw >= self.max_bw.get() || !app_limited {
            self.max_bw.update(self.round_count, bw);
        }
    }

    /// BBRCheckCyclePhase / BBRIsNextCyclePhase.
    fn update_cycle_phase(&mut self, s: &AckSample) {
        if self.mode != Mode::ProbeBw {
            return;
        }
        let full_length = match (self.cycle_stamp, self.min_rtt) {
            (Some(t), Some(m)) => s.now.saturating_duration_since(t) > m,
            _ => true,
        };
        let next = if self.pacing_gain > 1.0 {
            full_length && (s.lost || s.prior_inflight >= self.inflight(self.pacing_gain))
        } else if self.pacing_gain < 1.0 {
            full_length || s.prior_inflight <= self.inflight(1.0)
        } else {
            full_length
        };
        if next {
            self.advance_cycle_phase(s.now);
        }
    }

    /// BBRCheckFullPipe: STARTUP has filled the pipe when three rounds in
    /// a row did not raise max_bw by 25%.
    fn check_full_pipe(&mut self, s: &AckSample) {
        let app_limited = s.rate.is_some_and(|r| r.app_limited);
        if self.filled_pipe || !self.round_start || app_limited {
            return;
        }
        let bw = self.max_bw.get();
        if bw >= self.full_bw * FULL_BW_THRESH {
            self.full_bw = bw;
            self.full_bw_count = 0;
            return;
        }
        self.full_bw_count += 1;
        self.filled_pipe = self.full_bw_count >= FULL_BW_ROUNDS;
    }

    /// BBRCheckDrain.
    fn check_drain(&mut self, s: &AckSample) {
        if self.mode == Mode::Startup && self.filled_pipe {
            self.mode = Mode::Drain;
            self.pacing_gain = DRAIN_GAIN;
            self.cwnd_gain = HIGH_GAIN;
        }
        if self.mode == Mode::Drain && s.inflight <= self.inflight(1.0).max(self.min_pipe()) {
            self.enter_probe_bw(s.now, s.total_delivered / self.mss as u64);
        }
    }

    /// BBRUpdateMinRTT and PROBE_RTT.
    fn update_min_rtt(&mut self, s: &AckSample) {
        let expired = self
            .min_rtt_stamp
            .is_some_and(|t| s.now > t + MIN_RTT_FILTER);
        if let Some(r) = s.rate {
            if expired || self.min_rtt.is_none_or(|m| r.rtt <= m) {
                self.min_rtt = Some(r.rtt);
                self.min_rtt_stamp = Some(s.now);
            }
        }
        if expired && !self.idle_restart && self.mode != Mode::ProbeRtt {
            self.save_cwnd();
            self.mode = Mode::ProbeRtt;
            self.pacing_gain = 1.0;
            self.cwnd_gain = 1.0;
            self.probe_rtt_done = None;
        }
        if self.mode == Mode::ProbeRtt {
            self.handle_probe_rtt(s);
        }
        if s.delivered > 0 {
            self.idle_restart = false;
        }
    }

    /// BBRHandleProbeRTT: once the flight is down to the minimum, hold it
    /// for 200 ms and at least one round, then go back.
    fn handle_probe_rtt(&mut self, s: &AckSample) {
        match self.probe_rtt_done {
            None if s.inflight <= self.min_pipe() => {
                self.probe_rtt_done = Some(s.now + PROBE_RTT_DURATION);
                self.probe_rtt_round_done = false;
                self.next_round_delivered = s.total_delivered;
            }
            None => {}
            Some(done) => {
                self.probe_rtt_round_done |= self.round_start;
                if self.probe_rtt_round_done && s.now > done {
                    self.min_rtt_stamp = Some(s.now);
                    self.probe_rtt_limited_until = s.total_delivered;
                    self.restore_cwnd();
                    if self.filled_pipe {
                        self.enter_probe_bw(s.now, s.total_delivered / self.mss as u64);
                    } else {
                        self.enter_startup();
                    }
                }
            }
        }
    }

    /// Recovery entry and exit as the connection reports them: on entry
    /// cwnd becomes what is in flight plus what this ACK delivered, under
    /// packet conservation for one round; on exit the cwnd from before
    /// comes back.
    fn update_recovery(&mut self, s: &AckSample) {
        if s.in_recovery && !self.in_recovery {
            self.save_cwnd();
            self.in_recovery = true;
            self.cwnd = s.inflight + s.delivered.max(self.mss);
            self.conservation_until = Some(s.total_delivered);
        } else if !s.in_recovery && self.in_recovery {
            self.in_recovery = false;
            self.conservation_until = None;
            self.restore_cwnd();
        }
        if let (Some(until), Some(r)) = (self.conservation_until, s.rate) {
            if r.prior_delivered >= until {
                self.conservation_until = None;
            }
        }
    }

    /// BBRSetPacingRate: only raised until the pipe is full.
    fn set_pacing_rate(&mut self) {
        let rate = self.pacing_gain * self.max_bw.get();
        if rate > 0.0 && (self.filled_pipe || rate > self.pacing_rate) {
            self.pacing_rate = rate;
        }
    }

    /// BBRSetCwnd (with the DRAIN rule of the module doc).
    fn set_cwnd(&mut self, s: &AckSample) {
        let target = self.target_cwnd();
        if self.conservation_until.is_some() {
            self.cwnd = self.cwnd.max(s.inflight + s.delivered);
        } else {
            if self.filled_pipe {
                self.cwnd = (self.cwnd + s.delivered).min(target);
            } else if self.cwnd < target || s.total_delivered < initial_window(self.mss) as u64 {
                self.cwnd += s.delivered;
            }
            self.cwnd = self.cwnd.max(self.min_pipe());
        }
        match self.mode {
            Mode::Drain => self.cwnd = self.cwnd.min(self.inflight(1.0).max(self.min_pipe())),
            Mode::ProbeRtt => self.cwnd = self.cwnd.min(self.min_pipe()),
            _ => {}
        }
    }
}

impl Controller for Bbr {
    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn restart(&mut self, mss: usize) {
        *self = Bbr::new(mss);
    }

    fn window(&self) -> usize {
        self.cwnd
    }

    /// BBR has no slow-start threshold.
    fn ssthresh(&self) -> usize {
        usize::MAX
    }

    /// Everything happens in [`Controller::on_ack_sample`].
    fn on_ack(&mut self, _now: Instant, _acked: usize, _rtt: Option<Duration>, _limited: bool) {}

    /// The entry into fast recovery is read from the [`AckSample`] of the
    /// same ACK, which carries the flight and delivery conservation needs.
    fn on_congestion_event(&mut self, _now: Instant, _flight: usize) {}

    /// The draft: every segment in flight is taken as lost; cwnd is one
    /// segment (the [`MIN_PIPE_SEGMENTS`] floor applies from the next
    /// ACK on) until the recovery ends, when the saved cwnd comes back.
    fn on_rto(&mut self, _flight: usize, _first: bool) {
        self.save_cwnd();
        self.in_recovery = true;
        self.conservation_until = None;
        self.cwnd = self.mss;
    }

    /// The draft: after idle, PROBE_BW sends at the estimated bandwidth
    /// (gain 1); cwnd is kept, the model is still good.
    fn on_idle_restart(&mut self) {
        self.idle_restart = true;
        let bw = self.max_bw.get();
        if self.mode == Mode::ProbeBw && bw > 0.0 {
            self.pacing_rate = bw;
        }
    }

    fn wants_samples(&self) -> bool {
        true
    }

    /// BBRUpdateOnACK: the model and the state machine, then cwnd.
    fn on_ack_sample(&mut self, s: &AckSample) {
        self.update_round(s);
        self.update_recovery(s);
        self.update_bw(s);
        self.update_cycle_phase(s);
        self.check_full_pipe(s);
        self.check_drain(s);
        self.update_min_rtt(s);
        self.set_pacing_rate();
        self.set_cwnd(s);
    }
}

#[cfg(test)]
#[path = "bbr_tests.rs"]
mod tests;
