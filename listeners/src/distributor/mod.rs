//! The distributor listener model (NonStop's Pathway/PATHSEND style).
//!
//! One front-end thread — the distributor, processor 0 — runs the TCP of
//! every connection and does all sends and receives. Each received request
//! becomes a message ([`ipc::Job`]) to one of M back-end server threads
//! ([`backend`]) chosen per request by the [`dispatcher::Dispatcher`]'s
//! balancing policy; the back-end runs the app logic, holds no socket, and
//! answers with a [`ipc::Reply`] that the connection's [`forwarder`] puts
//! back in request order before sending it. That is one IPC hop more per
//! request than the monolithic model, and `bench/` measures what it costs.
//!
//! Besides the built-in apps, a user's [`RequestHandler`] runs at the
//! back-ends the same way ([`request`]).
//!
//! A back-end that fails (taken down with `vnic ctl backend K down`, or a
//! panic inside it) loses nothing: the dispatcher sends its in-flight
//! requests again to another back-end, as PATHSEND retries.

pub mod backend;
pub mod dispatcher;
pub mod forwarder;
pub mod ipc;
pub mod request;

pub use dispatcher::{Balance, Dispatcher};
pub use forwarder::Forwarder;
pub use ipc::{BackendCtl, BackendCtlRequest, FromBackend, Job, Reply, Work};
pub use request::{RequestContext, RequestHandler, RequestService, Response};
