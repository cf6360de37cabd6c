//! A token bucket, so that the adapter's unsolicited answers (ICMP
//! unreachable, RSTs) cannot be turned into a flood.

use std::time::Instant;

/// Allows `rate` events per second with bursts of up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate_per_sec),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: None,
        }
    }

    /// Takes one token if there is one at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Default rate for ICMP errors: Linux's icmp_ratelimit is about 1000/s.
pub const ICMP_RATE: (u32, u32) = (1000, 50);

/// Rate and burst, per processor, of replies to invalid TCP segments: ACKs
/// for unacceptable segments, challenge ACKs (RFC 5961 7) and RSTs for
/// segments of no connection. Linux allowed 1000 challenge ACKs a second
/// per namespace (`tcp_challenge_ack_limit`, before it became per socket);
/// a processor is vnic's unit, and a burst of a whole second's worth lets
/// a real peer's burst of stray segments (after a restart, say) all be
/// answered.
pub const INVALID_REPLY_RATE: (u32, u32) = (1000, 1000);

impl vnic_stack::ReplyLimiter for TokenBucket {
    fn allow(&mut self, now: Instant) -> bool {
        TokenBucket::allow(self, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3);
        assert!(b.allow(t0));
        assert!(b.allow(t0));
        assert!(b.allow(t0));
        assert!(!b.allow(t0), "burst of 3 spent");
        assert!(!b.allow(t0 + Duration::from_millis(50)));
        assert!(
            b.allow(t0 + Duration::from_millis(101)),
            "one token per 100 ms"
        );
    }
}
