//! The emulated adapter: everything between the TAP device and the
//! processors.
//!
//! A frame enters in [`rx::RxQueue::handle_frame`] (fed by the RX thread that
//! reads the [`tap::TapDevice`]). It is parsed once with etherparse; ARP,
//! IPv6 neighbour discovery and ICMP echo are answered right here
//! ([`arp`], [`ndp`], [`icmp`]); a TCP segment is checksummed and reduced
//! to a [`vnic_stack::Segment`], looked up in the [`flow::FlowTable`] and,
//! when it opens a new connection, placed on a processor by the
//! [`filter::Filter`]; then it is pushed onto that processor's queue.
//! Frames leave through [`emit::FrameWriter`], which processors also use.
//! With TAP offloads on, [`vnet`] is the header before each frame: large
//! segments come in whole and runs of segments leave as one frame.
//!
//! This crate never runs TCP (that is `vnic-stack`) and never runs an
//! application (that is `vnic-listeners`). Bad input is counted in
//! [`counters::Counters`] and dropped; nothing here panics on a frame.

#![deny(missing_docs)]

pub mod arp;
pub mod checksum;
pub mod clock;
pub mod config;
pub mod counters;
pub mod direct;
pub mod duration;
pub mod emit;
pub mod error;
pub mod filter;
pub mod flow;
pub mod flowmap;
pub mod host;
pub mod icmp;
pub mod impair;
pub mod link;
pub mod ndp;
pub mod pairs;
pub mod pool;
pub mod queue;
pub mod ratelimit;
pub mod rx;
pub mod steer;
pub mod tap;
pub mod trace;
pub mod vnet;

pub use config::AdapterConfig;
pub use counters::{Counters, DropKind};
pub use emit::{FrameSink, FrameWriter};
pub use error::AdapterError;
pub use filter::{Filter, FilterMode};
pub use flow::FlowTable;
pub use pairs::Pairs;
pub use queue::{
    BellSender, Datagram, Doorbell, FlowClosed, FlowReport, Inbound, ProcessorQueue, QueueBytes,
    QueueRefused, ToProcessor,
};
pub use rx::RxQueue;
pub use tap::{FrameSource, RxFrame, RxWaker, TapDevice};
