//! vnic as a library: an emulated multi-processor network adapter on a
//! Linux TAP, with your own apps behind its processors.
//!
//! vnic answers on virtual IPv4 and IPv6 addresses through a TAP, runs its
//! own TCP, and spreads the connections of a shared port round-robin over
//! N emulated processors (threads), as HP NonStop's round-robin filtering
//! spreads them over listeners in different CPUs. What serves a connection
//! is a [`Service`]: it makes one [`App`] per connection, and the app sees
//! the connection through a [`Socket`]. The built-in apps ([`AppKind`]:
//! echo, discard, chargen, http), the relay to real servers
//! ([`ProxyService`]) and the program per connection ([`ExecService`]) are
//! services like any other; so is yours.
//!
//! A frame's way: the TAP → the adapter (`vnic-adapter`: parse, answer ARP,
//! neighbour discovery and ping, place new connections with the filter) →
//! a processor thread (`vnic-listeners`) → its TCP (`vnic-stack`, sans-IO)
//! → your app → back out through the TAP. The library never sends to any
//! address but the TAP's peer, and starts no thread per connection.
//!
//! ```no_run
//! use vnic::{App, AppContext, Builder, Socket};
//!
//! /// Sends every line back reversed.
//! struct Reverse {
//!     line: Vec<u8>,
//! }
//!
//! impl App for Reverse {
//!     fn poll(&mut self, sock: &mut dyn Socket) {
//!         let mut buf = [0u8; 1024];
//!         while sock.send_capacity() > buf.len() {
//!             let n = sock.recv(&mut buf);
//!             if n == 0 {
//!                 break;
//!             }
//!             for &b in &buf[..n] {
//!                 if b == b'\n' {
//!                     self.line.reverse();
//!                     self.line.push(b'\n');
//!                     sock.send(&self.line);
//!                     self.line.clear();
//!                 } else {
//!                     self.line.push(b);
//!                 }
//!             }
//!         }
//!         if sock.peer_closed() && sock.recv_available() == 0 {
//!             sock.close();
//!         }
//!     }
//! }
//!
//! let running = Builder::new("vnic0")
//!     .ip("10.0.0.2".parse().unwrap(), 24)
//!     .processors(4)
//!     .serve_with(7000, "reverse", |_ctx: AppContext| {
//!         Box::new(Reverse { line: Vec::new() })
//!     })
//!     .start()?;
//! println!("{}", running.ready_line());
//! running.wait()?;
//! # Ok::<(), vnic::Error>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod builder;
/// The `vnic up --config FILE` format: public so the command line and the
/// `config` fuzz target (fuzz/) run the very parser and checks, and so a
/// library user can load the same files.
pub mod config;
pub mod replay;
mod running;
mod summary;

pub use builder::{
    Builder, ControlGroup, Error, Layout, Model, ProcessorQueues, Trace, MAX_PROCESSORS,
};
pub use config::TcpKnobs;
pub use running::{Drained, Running, DEFAULT_DRAIN};
pub use vnic_adapter::filter::Protocol;
pub use vnic_adapter::impair::ImpairSpec;
pub use vnic_adapter::trace::LineMode;
pub use vnic_adapter::{Filter, FilterMode};
pub use vnic_listeners::app::exec::{ExecOptions, ExecService};
pub use vnic_listeners::app::proxy::{ProxyOptions, ProxyProtocol, ProxyService};
pub use vnic_listeners::app::udp::UdpAppKind;
pub use vnic_listeners::app::{
    App, AppContext, AppKind, CloseReason, Io, Refused, Service, Socket,
};
pub use vnic_listeners::control::Status;
pub use vnic_listeners::distributor::{
    Balance, RequestContext, RequestHandler, RequestService, Response,
};
pub use vnic_listeners::stats::{Registry, ServiceReport};
pub use vnic_stack::CongestionAlgorithm;
