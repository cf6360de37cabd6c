//! `vnic replay`: a captured session run again through the same adapter,
//! filter, processors and TCP, in one thread, on a virtual clock, and
//! compared with what the trace shows vnic sent.
//!
//! - [`trace`] reads the pcapng: its replay block (what the frames do not
//!   say: `vnic up`'s flags, the processor count, the ISN and cookie
//!   clocks' start and, with `--pcap-secrets`, their keys) and its frames.
//! - [`rig`] is the vnic being replayed, built by
//!   [`crate::Builder::replay_rig`] as `vnic up` builds one, with no TAP.
//! - [`run`] feeds the trace's inbound frames at their recorded times
//!   ([`replay`]), firing the processors' timers in between.
//! - [`compare`] says what "identical" means (per connection, in order;
//!   the fields left out) and finds the divergences.
//! - [`script`] stands in for the apps that need the outside world (proxy,
//!   exec): they send what the trace shows them sending.
//! - [`emit`] writes a trace's connections as a Rust regression test, and
//!   [`stack_case`] is what such a test calls: the stack alone, driven
//!   with the trace's segments.

pub mod compare;
pub mod emit;
mod plan;
pub mod rig;
pub mod run;
pub mod script;
pub mod stack_case;
pub mod trace;

#[cfg(test)]
mod tests;

pub use compare::Divergence;
pub use run::{guess_settings, replay, Outcome};
pub use trace::{Trace, TraceFrame};

/// Why a trace cannot be replayed: one line.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file cannot be read.
    #[error("cannot read {path}: {why}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// The bytes are not a trace vnic can replay.
    #[error("{0}")]
    Format(String),
    /// The vnic the trace describes cannot be built for a replay.
    #[error("{0}")]
    Build(#[from] crate::Error),
}
