//! BBR's state machine driven over a fluid model of a path, with injected
//! time: every test names the draft rule it checks.

use super::*;
use crate::rate::RateSample;

const MSS: usize = 1000;
/// ACKs per round trip.
const ACKS: usize = 10;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A path of `bw` bytes/s and propagation RTT `rtt` with a deep queue,
/// and a sender that always has data: each round the whole flight comes
/// back in [`ACKS`] ACKs spread over the round (which lasts longer when
/// the flight exceeds the BDP and queues), and after each ACK the sender
/// fills cwnd again.
struct Fluid {
    bw: f64,
    rtt: Duration,
    now: Instant,
    delivered: u64,
    inflight: usize,
    lost: bool,
    in_recovery: bool,
    /// (time, mode, pacing gain, in flight after the ACK, cwnd) per ACK.
    log: Vec<(Instant, Mode, f64, usize, usize)>,
}

impl Fluid {
    fn new(bw: f64, rtt: Duration) -> Fluid {
        Fluid {
            bw,
            rtt,
            now: Instant::now(),
            delivered: 0,
            inflight: 0,
            lost: false,
            in_recovery: false,
            log: Vec::new(),
        }
    }

    fn bdp(&self) -> usize {
        (self.bw * self.rtt.as_secs_f64()) as usize
    }

    /// One round trip.
    fn round(&mut self, b: &mut Bbr) {
        self.inflight = self.inflight.max(b.window());
        let flight = self.inflight;
        let dur = self
            .rtt
            .max(Duration::from_secs_f64(flight as f64 / self.bw));
        let prior = self.delivered;
        let piece = flight / ACKS;
        let start = self.now;
        for k in 1..=ACKS {
            self.now = start + dur * k as u32 / ACKS as u32;
            let prior_inflight = self.inflight;
            self.inflight -= piece.min(self.inflight);
            self.delivered += piece as u64;
            b.on_ack_sample(&AckSample {
                now: self.now,
                delivered: piece,
                total_delivered: self.delivered,
                prior_inflight,
                inflight: self.inflight,
                lost: self.lost,
                in_recovery: self.in_recovery,
                rate: Some(RateSample {
                    delivered: flight as u64,
                    prior_delivered: prior,
                    interval: dur,
                    rtt: dur,
                    app_limited: false,
                }),
            });
            self.log
                .push((self.now, b.mode, b.pacing_gain, self.inflight, b.cwnd));
            self.inflight = self.inflight.max(b.window());
        }
    }

    /// Rounds until BBR leaves `mode` (at most `limit`); returns how many.
    fn rounds_in(&mut self, b: &mut Bbr, mode: Mode, limit: usize) -> usize {
        let mut n = 0;
        while b.mode == mode && n < limit {
            self.round(b);
            n += 1;
        }
        n
    }
}

/// 10 MB/s, 10 ms: a BDP of 100 kB.
fn path() -> Fluid {
    Fluid::new(10e6, ms(10))
}

/// A BBR in PROBE_BW on `p`.
fn in_probe_bw(p: &mut Fluid) -> Bbr {
    let mut b = Bbr::new(MSS);
    p.rounds_in(&mut b, Mode::Startup, 50);
    p.rounds_in(&mut b, Mode::Drain, 50);
    assert_eq!(b.mode, Mode::ProbeBw);
    b
}

#[test]
fn startup_doubles_each_round_and_ends_after_three_rounds_without_bw_growth() {
    let mut p = path();
    let mut b = Bbr::new(MSS);
    assert_eq!(
        (b.mode, b.pacing_gain, b.cwnd_gain),
        (Mode::Startup, HIGH_GAIN, HIGH_GAIN)
    );
    assert!((HIGH_GAIN - 2.0 / std::f64::consts::LN_2).abs() < 1e-12);
    let mut cwnds = vec![b.window()];
    for _ in 0..4 {
        p.round(&mut b);
        cwnds.push(b.window());
    }
    // Below the BDP the delivery rate, hence cwnd, doubles each round.
    assert_eq!(cwnds, [10_000, 20_000, 40_000, 80_000, 160_000]);
    // Round 5 reaches the path's rate (10 MB/s); rounds 6, 7 and 8 do not
    // raise it by 25%: the pipe is full at the first ACK of round 8.
    p.rounds_in(&mut b, Mode::Startup, 50);
    let left = p.log.iter().position(|e| e.1 != Mode::Startup);
    assert_eq!(left, Some(7 * ACKS), "ACKs in STARTUP");
    assert_eq!(p.log[7 * ACKS].1, Mode::Drain);
    assert!((p.log[7 * ACKS].2 - 1.0 / HIGH_GAIN).abs() < 1e-12);
    assert!(b.filled_pipe);
    assert!((b.max_bw.get() - 10e6).abs() < 1.0, "{}", b.max_bw.get());
    assert_eq!(b.min_rtt, Some(ms(10)));
}

#[test]
fn drain_lasts_until_the_flight_is_down_to_one_bdp() {
    let mut p = path();
    let b = in_probe_bw(&mut p);
    let bdp = p.bdp();
    let drain = p
        .log
        .iter()
        .position(|e| e.1 == Mode::Drain)
        .expect("DRAIN");
    let exit = p
        .log
        .iter()
        .position(|e| e.1 == Mode::ProbeBw)
        .expect("left DRAIN");
    assert!(exit > drain + 1, "DRAIN took one ACK");
    for e in &p.log[drain..exit] {
        assert_eq!(e.1, Mode::Drain);
        assert!(e.3 > bdp, "still in DRAIN at {} <= BDP {bdp}", e.3);
        assert!(e.4 <= bdp, "DRAIN's cwnd {} above the BDP", e.4);
    }
    assert!(
        p.log[exit].3 <= bdp,
        "left DRAIN at {} > BDP {bdp}",
        p.log[exit].3
    );
    assert_eq!(b.cwnd_gain, CWND_GAIN);
}

#[test]
fn probe_bw_cycles_its_gains_one_min_rtt_each() {
    let mut p = path();
    let mut b = in_probe_bw(&mut p);
    let from = p.log.len();
    for _ in 0..40 {
        p.round(&mut b);
    }
    // The gains in the order they came (the six phases of 1 merge).
    let mut gains: Vec<(Instant, f64)> = Vec::new();
    for e in &p.log[from..] {
        assert_eq!(e.1, Mode::ProbeBw);
        if gains.last().is_none_or(|g| g.1 != e.2) {
            gains.push((e.0, e.2));
        }
    }
    assert!(gains.len() >= 9, "{gains:?}");
    for w in gains.windows(2) {
        let ok = matches!((w[0].1, w[1].1), (1.25, 0.75) | (0.75, 1.0) | (1.0, 1.25));
        assert!(ok, "{} then {}", w[0].1, w[1].1);
    }
    // Each of the 8 phases lasts more than min_rtt.
    let min_rtt = b.min_rtt.expect("min_rtt");
    let ups: Vec<Instant> = gains.iter().filter(|g| g.1 == 1.25).map(|g| g.0).collect();
    assert!(ups.len() >= 3);
    for w in ups.windows(2) {
        assert!(w[1] - w[0] > min_rtt * 8, "cycle of {:?}", w[1] - w[0]);
    }
    assert_eq!(b.cwnd_gain, CWND_GAIN);
}

#[test]
fn probe_rtt_after_ten_seconds_without_a_new_min_rtt_holds_four_segments_for_200ms() {
    let mut p = path();
    let mut b = in_probe_bw(&mut p);
    let cwnd_before = b.window();
    // PROBE_BW's queue keeps every RTT sample above min_rtt.
    let stamp = b.min_rtt_stamp.expect("stamp");
    let from = p.log.len();
    p.rounds_in(&mut b, Mode::ProbeBw, 1000);
    assert_eq!(b.mode, Mode::ProbeRtt);
    p.rounds_in(&mut b, Mode::ProbeRtt, 1000);
    assert_eq!(b.mode, Mode::ProbeBw, "PROBE_RTT returns to PROBE_BW");
    let log = &p.log[from..];
    let enter = log
        .iter()
        .position(|e| e.1 == Mode::ProbeRtt)
        .expect("entered");
    let leave = enter
        + log[enter..]
            .iter()
            .position(|e| e.1 != Mode::ProbeRtt)
            .expect("left");
    assert!(
        log[enter].0 - stamp > MIN_RTT_FILTER,
        "entered after {:?}",
        log[enter].0 - stamp
    );
    for e in &log[enter..leave] {
        assert_eq!(e.4, 4 * MSS, "cwnd in PROBE_RTT");
    }
    // 200 ms from the moment the flight reached 4 segments.
    let small = log[enter..leave]
        .iter()
        .find(|e| e.3 <= 4 * MSS)
        .expect("flight drained");
    assert!(log[leave].0 - small.0 > PROBE_RTT_DURATION);
    assert!(
        b.window() >= cwnd_before,
        "cwnd restored: {} < {cwnd_before}",
        b.window()
    );
    assert_eq!(b.min_rtt, Some(ms(10)));
}

#[test]
fn loss_keeps_the_bandwidth_estimate_and_the_cwnd_comes_back() {
    let mut p = path();
    let mut b = in_probe_bw(&mut p);
    for _ in 0..5 {
        p.round(&mut b);
    }
    let (bw, cwnd) = (b.max_bw.get(), b.window());
    // A fast recovery of two rounds, losses reported on every ACK.
    p.lost = true;
    p.in_recovery = true;
    for _ in 0..2 {
        p.round(&mut b);
        assert!(
            b.window() * 10 >= cwnd * 9,
            "cwnd {} after loss, {cwnd} before",
            b.window()
        );
    }
    assert_eq!(b.max_bw.get(), bw, "loss changed the bandwidth estimate");
    p.lost = false;
    p.in_recovery = false;
    p.round(&mut b);
    assert!(b.window() >= cwnd, "{} < {cwnd} after recovery", b.window());
    // CUBIC, for contrast, cuts to 70% at once.
    let mut c = super::super::Cubic::new(MSS);
    c.on_congestion_event(p.now, cwnd);
    assert!(c.window() < cwnd);
}

#[test]
fn rto_cuts_to_one_segment_and_the_recovery_end_restores_cwnd() {
    let mut p = path();
    let mut b = in_probe_bw(&mut p);
    let cwnd = b.window();
    b.on_rto(cwnd, true);
    assert_eq!(b.window(), MSS);
    p.inflight = 0;
    p.in_recovery = true;
    p.round(&mut b);
    let during = b.window();
    assert!(during >= 4 * MSS && during < cwnd, "{during}");
    p.in_recovery = false;
    p.round(&mut b);
    assert!(b.window() >= cwnd);
}

#[test]
fn max_bw_filter_forgets_after_ten_rounds() {
    let mut f = MaxBwFilter::default();
    f.update(1, 100.0);
    for r in 2..=10 {
        f.update(r, 50.0 + r as f64);
        assert_eq!(f.get(), 100.0);
    }
    f.update(11, 10.0);
    assert_eq!(f.get(), 60.0);
    assert!(f.samples.len() <= 11);
}
