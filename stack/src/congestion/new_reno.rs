//! NewReno congestion control (RFC 5681 3.1, RFC 6582): slow start,
//! congestion avoidance of one MSS per RTT, halving on loss.

use std::time::{Duration, Instant};

use super::{initial_window, slow_start, Controller};

/// RFC 5681 window arithmetic.
///
/// It exists as the simple, well-understood alternative to CUBIC and as
/// the reference the tests compare CUBIC against.
#[derive(Clone, Debug)]
pub(crate) struct NewReno {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acknowledged in congestion avoidance since cwnd last grew
    /// (RFC 5681 3.1, the byte-counting variant of cwnd += MSS*MSS/cwnd).
    bytes_acked: usize,
}

impl NewReno {
    pub(crate) fn new(mss: usize) -> Self {
        NewReno {
            mss,
            cwnd: initial_window(mss),
            ssthresh: usize::MAX,
            bytes_acked: 0,
        }
    }
}

impl Controller for NewReno {
    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn restart(&mut self, mss: usize) {
        *self = NewReno::new(mss);
    }

    fn window(&self) -> usize {
        self.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn on_ack(&mut self, _now: Instant, acked: usize, _rtt: Option<Duration>, cwnd_limited: bool) {
        if !cwnd_limited {
            return;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd = slow_start(self.cwnd, acked, self.mss);
            return;
        }
        self.bytes_acked += acked;
        if self.bytes_acked >= self.cwnd {
            self.bytes_acked -= self.cwnd;
            self.cwnd += self.mss;
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, flight: usize) {
        // RFC 5681 (4): ssthresh = max(FlightSize / 2, 2*SMSS); the
        // recovery then runs with cwnd = ssthresh (pipe does the
        // inflation RFC 6582 describes).
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh;
        self.bytes_acked = 0;
    }

    fn on_rto(&mut self, flight: usize, first: bool) {
        if first {
            self.ssthresh = (flight / 2).max(2 * self.mss);
        }
        self.cwnd = self.mss;
        self.bytes_acked = 0;
    }

    fn on_idle_restart(&mut self) {
        self.cwnd = self.cwnd.min(initial_window(self.mss));
        self.bytes_acked = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_then_linear_growth_and_halving() {
        let t = Instant::now();
        let mut c = NewReno::new(1000);
        assert_eq!(c.window(), 10_000);
        c.on_ack(t, 1000, None, true);
        assert_eq!(c.window(), 11_000);
        c.on_ack(t, 5000, None, true); // ABC: at most 2 MSS per ACK
        assert_eq!(c.window(), 13_000);
        c.on_ack(t, 1000, None, false); // not cwnd-limited: no growth
        assert_eq!(c.window(), 13_000);
        c.on_congestion_event(t, 20_000);
        assert_eq!((c.window(), c.ssthresh()), (10_000, 10_000));
        for _ in 0..10 {
            c.on_ack(t, 1000, None, true);
        }
        assert_eq!(c.window(), 11_000);
        c.on_rto(11_000, true);
        assert_eq!((c.window(), c.ssthresh()), (1000, 5500));
        c.on_rto(1000, false);
        assert_eq!(c.ssthresh(), 5500);
    }
}
