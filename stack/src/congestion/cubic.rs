//! CUBIC congestion control (RFC 9438): after a loss the window grows as
//! a cubic function of the time since that loss, plateauing around the
//! window where the loss happened (W_max), with a Reno-friendly floor.

use std::time::{Duration, Instant};

use super::{initial_window, slow_start, Controller};

/// RFC 9438 4.5: multiplicative decrease factor.
const BETA: f64 = 0.7;
/// RFC 9438 5: the cubic's scaling constant (segments / s^3).
const C: f64 = 0.4;
/// RFC 9438 4.3: additive increase of the Reno-friendly estimate,
/// 3 * (1 - beta) / (1 + beta).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);
/// RTT assumed before any sample, for the W_cubic(t + RTT) target.
const DEFAULT_RTT: Duration = Duration::from_millis(100);

/// CUBIC's state. Windows are kept in bytes as `f64` so the per-ACK
/// fractional increases accumulate without a separate counter.
///
/// It exists because CUBIC (the default of most Linux kernels, so what
/// most peers we serve use; some kernels default to BBR) recovers to the
/// pre-loss window much faster than Reno on paths with a large
/// bandwidth-delay product and cuts less (0.7 vs 0.5).
#[derive(Clone, Debug)]
pub(crate) struct Cubic {
    mss: f64,
    cwnd: f64,
    ssthresh: f64,
    /// W_max: window just before the last reduction (bytes).
    w_max: f64,
    /// Start of the current congestion-avoidance epoch.
    epoch_start: Option<Instant>,
    /// K: seconds from the epoch start until W_cubic reaches W_max.
    k: f64,
    /// W_est: the Reno-friendly window estimate (bytes).
    w_est: f64,
}

impl Cubic {
    pub(crate) fn new(mss: usize) -> Self {
        Cubic {
            mss: mss as f64,
            cwnd: initial_window(mss) as f64,
            ssthresh: f64::INFINITY,
            w_max: 0.0,
            epoch_start: None,
            k: 0.0,
            w_est: 0.0,
        }
    }

    /// RFC 9438 4.2, eq. 1: W_cubic(t) in bytes.
    fn w_cubic(&self, t: f64) -> f64 {
        let d = t - self.k;
        (C * d * d * d) * self.mss + self.w_max
    }

    /// RFC 9438 4.6/4.7: remember W_max (with fast convergence) and set
    /// ssthresh = cwnd * beta.
    fn reduce(&mut self) {
        self.w_max = if self.cwnd < self.w_max {
            self.cwnd * (1.0 + BETA) / 2.0
        } else {
            self.cwnd
        };
        self.ssthresh = (self.cwnd * BETA).max(2.0 * self.mss);
        self.epoch_start = None;
    }
}

impl Controller for Cubic {
    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn restart(&mut self, mss: usize) {
        *self = Cubic::new(mss);
    }

    fn window(&self) -> usize {
        self.cwnd as usize
    }

    fn ssthresh(&self) -> usize {
        if self.ssthresh.is_finite() {
            self.ssthresh as usize
        } else {
            usize::MAX
        }
    }

    fn on_ack(&mut self, now: Instant, acked: usize, rtt: Option<Duration>, cwnd_limited: bool) {
        if !cwnd_limited {
            return;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd = slow_start(self.cwnd as usize, acked, self.mss as usize) as f64;
            return;
        }
        let epoch = *self.epoch_start.get_or_insert_with(|| {
            // RFC 9438 4.2: a new epoch starts at the first ACK in
            // congestion avoidance; K from the distance to W_max.
            self.w_est = self.cwnd;
            if self.cwnd < self.w_max {
                self.k = ((self.w_max - self.cwnd) / self.mss / C).cbrt();
            } else {
                self.k = 0.0;
                self.w_max = self.cwnd;
            }
            now
        });
        let t = now.saturating_duration_since(epoch).as_secs_f64();
        let rtt = rtt.unwrap_or(DEFAULT_RTT).as_secs_f64();
        let acked = acked as f64;
        // RFC 9438 4.3: the Reno-friendly region.
        self.w_est += ALPHA * self.mss * acked / self.cwnd;
        if self.w_cubic(t) < self.w_est {
            self.cwnd = self.w_est;
            return;
        }
        // RFC 9438 4.4/4.5: aim at W_cubic(t + RTT), within [cwnd, 1.5 cwnd].
        let target = self.w_cubic(t + rtt).clamp(self.cwnd, 1.5 * self.cwnd);
        self.cwnd += (target - self.cwnd) * acked / self.cwnd;
    }

    fn on_congestion_event(&mut self, _now: Instant, _flight: usize) {
        self.reduce();
        self.cwnd = self.ssthresh;
    }

    fn on_rto(&mut self, _flight: usize, first: bool) {
        if first {
            self.reduce();
        }
        self.epoch_start = None;
        self.cwnd = self.mss;
    }

    fn on_idle_restart(&mut self) {
        self.cwnd = self.cwnd.min(initial_window(self.mss as usize) as f64);
        self.epoch_start = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_multiplies_by_beta_and_growth_returns_to_w_max_after_k() {
        let t0 = Instant::now();
        let mut c = Cubic::new(1000);
        // Leave slow start at 1000 segments (a large BDP, where the cubic
        // and not the Reno-friendly estimate drives growth).
        c.cwnd = 1_000_000.0;
        c.on_congestion_event(t0, 1_000_000);
        assert_eq!(c.window(), 700_000);
        assert_eq!(c.ssthresh(), 700_000);
        // K = cbrt(300 / 0.4) = 9.09 s: the window is concave (already
        // close to W_max at K/2) and back at W_max after K.
        let rtt = Duration::from_millis(50);
        let mut t = t0;
        let mut at_half_k = 0;
        for i in 0..182 {
            t += rtt;
            // one window of ACKs per RTT, in 10 ACKs
            for _ in 0..10 {
                let w = c.window();
                c.on_ack(t, w / 10, Some(rtt), true);
            }
            if i == 90 {
                at_half_k = c.window();
            }
        }
        assert!((930_000..1_000_000).contains(&at_half_k), "{at_half_k}");
        let w = c.window();
        assert!((990_000..1_030_000).contains(&w), "{w}");
    }

    #[test]
    fn rto_collapses_to_one_mss_and_fast_convergence_lowers_w_max() {
        let t0 = Instant::now();
        let mut c = Cubic::new(1000);
        c.cwnd = 50_000.0;
        c.w_max = 80_000.0;
        c.on_rto(50_000, true);
        assert_eq!(c.window(), 1000);
        assert_eq!(c.ssthresh(), 35_000);
        assert_eq!(c.w_max, 50_000.0 * 1.7 / 2.0);
        c.on_ack(t0, 1000, None, true);
        assert_eq!(c.window(), 2000);
    }
}
