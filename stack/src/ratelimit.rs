//! Replies that answer invalid segments, and who may refuse them.
//!
//! A segment that is not acceptable still earns a reply: an ACK for an
//! out-of-window or PAWS-failed segment (RFC 9293 3.10.7.4, RFC 7323
//! 5.3), a challenge ACK (RFC 5961), an RST for a bad ACK in a
//! half-synchronized state. A blind attacker can send such segments as
//! fast as it likes, and each reply costs the processor a frame. The
//! connection limits its own challenge ACKs ([`crate::TcpConfig`]'s
//! `challenge_ack_limit`); a caller that owns many connections (a
//! processor) limits the sum of all of them through a [`ReplyLimiter`]
//! handed to [`crate::Connection::on_segment_limited`], as Linux does
//! with `tcp_challenge_ack_limit` and `tcp_invalid_ratelimit`.

use std::time::Instant;

/// Decides whether one more reply to an invalid segment may be sent.
///
/// It exists so the budget for such replies can be shared by every
/// connection of a processor (a token bucket, typically) while the stack
/// stays free of clocks and shared state.
pub trait ReplyLimiter {
    /// True if a reply may go out at `now` (and counts it).
    fn allow(&mut self, now: Instant) -> bool;
}

/// A limiter that allows every reply: what [`crate::Connection::on_segment`]
/// uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unlimited;

impl ReplyLimiter for Unlimited {
    fn allow(&mut self, _now: Instant) -> bool {
        true
    }
}
