//! Replies owed to segments that were not accepted: the ACK for an
//! unacceptable segment (RFC 9293 3.10.7.4), challenge ACKs (RFC 5961)
//! and RSTs for bad ACKs, with the per-connection challenge-ACK budget.

use std::time::{Duration, Instant};

use crate::ratelimit::ReplyLimiter;
use crate::wire::Segment;

/// What the caller's limiter let through of the replies owed
/// ([`Replies::settle`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Settled {
    /// An ACK is to be sent.
    pub(super) ack: bool,
    /// Replies the limiter refused.
    pub(super) limited: u64,
}

/// RSTs and ACKs owed to invalid segments, and the challenge-ACK budget.
///
/// It exists so a reply that only answers an invalid segment can be held
/// to the caller's budget ([`ReplyLimiter`]) in one place, apart from the
/// ACKs the connection owes for its own reasons.
///
/// Invariants:
/// - `invalid_ack` and `invalid_rst` live only while one segment is
///   handled: [`Replies::settle`] empties both before `on_segment`
///   returns;
/// - `rst_pending` is the one RST to send next (it goes before anything
///   else);
/// - at most `challenge_ack_limit` challenge ACKs are counted in any
///   one-second window starting at `challenge_window`.
#[derive(Clone, Debug, Default)]
pub(super) struct Replies {
    /// An RST to send before anything else.
    pub(super) rst_pending: Option<Segment>,
    /// The segment being handled earns this RST, if the limiter allows.
    pub(super) invalid_rst: Option<Segment>,
    /// The ACK owed and the challenge-ACK budget.
    pub(super) acks: AckReplies,
}

/// The ACK owed to an invalid segment and the challenge-ACK budget: the
/// part of [`Replies`] a TIME-WAIT record keeps too (it never owes an
/// RST), so both answer alike.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct AckReplies {
    /// The segment being handled was invalid and earns an ACK, if the
    /// caller's [`ReplyLimiter`] allows one.
    pub(super) invalid_ack: bool,
    /// RFC 5961 7: start of the current one-second window.
    pub(super) challenge_window: Option<Instant>,
    /// Challenge ACKs sent in that window.
    pub(super) challenge_count: u32,
}

impl AckReplies {
    /// RFC 5961 7: a challenge ACK, at most `limit` per second, so a
    /// blind attacker cannot use us as an amplifier or learn from our ACK
    /// rate. True when one is owed (and counted).
    pub(super) fn challenge(&mut self, now: Instant, limit: u32) -> bool {
        let fresh = self
            .challenge_window
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
        if !fresh {
            self.challenge_window = Some(now);
            self.challenge_count = 0;
        }
        if self.challenge_count < limit {
            self.challenge_count += 1;
            self.invalid_ack = true;
            return true;
        }
        false
    }

    /// The ACK the segment just handled earned goes out only if `limiter`
    /// allows, and is asked for only when none is due already (`ack_due`)
    /// and the connection is synchronized (an ACK already due goes
    /// anyway).
    pub(super) fn settle(
        &mut self,
        now: Instant,
        limiter: &mut dyn ReplyLimiter,
        ack_due: bool,
        synchronized: bool,
    ) -> Settled {
        let mut out = Settled::default();
        if std::mem::take(&mut self.invalid_ack) && !ack_due && synchronized {
            if limiter.allow(now) {
                out.ack = true;
            } else {
                out.limited += 1;
            }
        }
        out
    }
}

impl Replies {
    /// RFC 5961 7: a challenge ACK within the budget
    /// ([`AckReplies::challenge`]).
    pub(super) fn challenge(&mut self, now: Instant, limit: u32) -> bool {
        self.acks.challenge(now, limit)
    }

    /// The replies the segment just handled earned go out only if
    /// `limiter` allows: the RST becomes pending; the ACK as
    /// [`AckReplies::settle`] says.
    pub(super) fn settle(
        &mut self,
        now: Instant,
        limiter: &mut dyn ReplyLimiter,
        ack_due: bool,
        synchronized: bool,
    ) -> Settled {
        let mut out = Settled::default();
        if let Some(rst) = self.invalid_rst.take() {
            if limiter.allow(now) {
                self.rst_pending = Some(rst);
            } else {
                out.limited += 1;
            }
        }
        let acks = self.acks.settle(now, limiter, ack_due, synchronized);
        out.ack = acks.ack;
        out.limited += acks.limited;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::Unlimited;
    use crate::seq::SeqNumber;
    use crate::wire::{Control, TcpOptions};

    fn rst() -> Segment {
        Segment {
            src_port: 80,
            dst_port: 4000,
            seq: SeqNumber(1),
            ack: None,
            control: Control::Rst,
            psh: false,
            window: 0,
            options: TcpOptions::default(),
            payload: crate::Payload::new(),
        }
    }

    /// A limiter with `n` replies left.
    struct Budget(u32);
    impl ReplyLimiter for Budget {
        fn allow(&mut self, _now: Instant) -> bool {
            if self.0 == 0 {
                return false;
            }
            self.0 -= 1;
            true
        }
    }

    #[test]
    fn rfc5961_challenge_acks_limited_per_second() {
        let t0 = Instant::now();
        let mut r = Replies::default();
        assert!(r.challenge(t0, 2));
        assert!(r.challenge(t0 + Duration::from_millis(10), 2));
        assert!(!r.challenge(t0 + Duration::from_millis(999), 2));
        assert!(r.acks.invalid_ack);
        // A new second, a new budget.
        assert!(r.challenge(t0 + Duration::from_secs(1), 2));
        assert_eq!(r.acks.challenge_count, 1);
    }

    #[test]
    fn settle_empties_what_one_segment_earned() {
        let t0 = Instant::now();
        let mut r = Replies {
            acks: AckReplies {
                invalid_ack: true,
                ..AckReplies::default()
            },
            invalid_rst: Some(rst()),
            ..Replies::default()
        };
        let s = r.settle(t0, &mut Unlimited, false, true);
        assert_eq!(
            s,
            Settled {
                ack: true,
                limited: 0
            }
        );
        assert!(r.rst_pending.is_some());
        assert!(!r.acks.invalid_ack && r.invalid_rst.is_none());
        // Nothing owed now: nothing more.
        assert_eq!(
            r.settle(t0, &mut Unlimited, false, true),
            Settled::default()
        );
    }

    #[test]
    fn settle_counts_what_the_limiter_refuses() {
        let t0 = Instant::now();
        let mut r = Replies {
            acks: AckReplies {
                invalid_ack: true,
                ..AckReplies::default()
            },
            invalid_rst: Some(rst()),
            ..Replies::default()
        };
        let s = r.settle(t0, &mut Budget(1), false, true);
        assert_eq!(
            s,
            Settled {
                ack: false,
                limited: 1
            }
        );
        assert!(r.rst_pending.is_some(), "the RST took the one reply");
    }

    #[test]
    fn an_ack_already_due_or_unsynchronized_asks_nothing() {
        let t0 = Instant::now();
        let mut r = Replies {
            acks: AckReplies {
                invalid_ack: true,
                ..AckReplies::default()
            },
            ..Replies::default()
        };
        assert_eq!(r.settle(t0, &mut Budget(0), true, true), Settled::default());
        r.acks.invalid_ack = true;
        assert_eq!(
            r.settle(t0, &mut Budget(0), false, false),
            Settled::default()
        );
        assert!(!r.acks.invalid_ack);
    }
}
