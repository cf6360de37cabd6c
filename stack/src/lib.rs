//! `vnic-stack`: the TCP of vnic (RFC 9293), written sans-IO.
//!
//! # What it is for
//!
//! Each emulated processor owns a set of TCP connections; this crate is
//! the state machine of one such connection ([`Connection`]) plus what
//! surrounds it at the edge: parsing and emitting segments ([`wire`]),
//! initial sequence numbers ([`IsnGenerator`], RFC 6528) and the tunables
//! ([`TcpConfig`]).
//!
//! # Where a segment enters and leaves
//!
//! The adapter hands the TCP bytes of an IP packet to [`wire::parse`],
//! which verifies the checksum over the pseudo header, rejects impossible
//! headers and returns a [`Segment`]. The processor thread finds the
//! connection by [`FourTuple`] and calls [`Connection::on_segment`] with the
//! current time (or [`Connection::accept`] for a SYN to a listening port,
//! answering strays with [`Segment::rst_reply`]). What the connection wants
//! to send comes out of [`Connection::poll_transmit`]; [`Segment::emit`]
//! turns it into bytes with a correct checksum. Timers are deadlines the
//! caller sleeps until ([`Connection::poll_timeout`]) and then fires
//! ([`Connection::on_timeout`]); the application talks to
//! [`Connection::send`], [`Connection::recv`] and [`Connection::poll_event`].
//!
//! Congestion control is chosen per connection ([`TcpConfig::congestion`]):
//! CUBIC (the default), NewReno, or BBR, which models the path from
//! delivery-rate samples and keeps its rate under random loss.
//!
//! # What it must never touch
//!
//! No sockets, no threads, no clock: the time is always passed in as an
//! [`std::time::Instant`], so every behaviour can be replayed in a test with
//! injected time. Nothing here blocks, sleeps, allocates per byte or panics
//! on bytes from the wire.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod congestion;
pub mod connection;
pub mod cookie;
#[cfg(feature = "test-faults")]
pub mod faults;
pub mod isn;
mod not_cloned;
pub mod payload;
mod rack;
mod rate;
pub mod ratelimit;
mod reassembly;
mod rtt;
mod sack;
mod send_buffer;
pub mod seq;
pub mod timers;
pub mod tuple;
pub mod wire;

pub use config::{
    TcpConfig, DEFAULT_IDLE_TIMEOUT, DEFAULT_TOTAL_RETRANSMISSION_TIME,
    DEFAULT_ZERO_WINDOW_TIMEOUT, MIN_SND_MSS,
};
pub use congestion::CongestionAlgorithm;
pub use connection::{
    Checkpoint, CheckpointGap, CloseReason, ConnStats, Connection, Disposition, Event, SendMark,
    State, TimeWait, Transmit,
};
pub use cookie::SynCookies;
pub use isn::{IsnGenerator, IsnScript};
pub use payload::Payload;
pub use ratelimit::{ReplyLimiter, Unlimited};
pub use send_buffer::SharedBytes;
pub use seq::SeqNumber;
pub use timers::Timer;
pub use tuple::{FourTuple, TupleHasher, TupleMap};
pub use wire::{parse, Control, Segment, TcpOptions, WireError};
