//! vnic's processors and what runs on them: the emulated processor
//! threads of the monolithic listener model ([`processor`]), the
//! distributor model's front-end and back-ends ([`distributor`]), the apps
//! ([`app`]: echo, discard, chargen, http, the proxy to real servers, the
//! program per connection, and the [`app::Service`] trait any user code
//! implements), the counters they keep ([`stats`]) and the control socket
//! that shows and steers them ([`control`]).
//!
//! A segment enters in a processor's queue (from `vnic-adapter`'s RX
//! thread), goes through the connection's TCP (`vnic-stack`), and the app
//! sees the connection only through an [`app::Socket`]; what TCP sends
//! leaves through the adapter's frame writer. A processor sleeps in one
//! epoll that its queue's doorbell and its apps' own descriptors (a
//! back-end socket, a child's pipes) wake.
//!
//! This crate never parses frames or decides where a connection goes
//! (that is the adapter's filter), and never implements TCP (that is the
//! stack); it starts no thread per connection.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod app;
pub mod control;
pub mod distributor;
pub mod faults;
pub mod processor;
pub mod stats;
