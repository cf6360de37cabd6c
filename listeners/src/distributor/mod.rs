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
//! panic inside it) loses nothing: the dispatcher sends the requests
//! queued for it to another back-end, as PATHSEND retries, and no request
//! runs twice (each back-end incarnation has a generation; a retired one
//! runs nothing more). A back-end that panicked is restarted at once; the
//! request it was running is retried on another back-end at most
//! [`dispatcher::MAX_RETRIES`] (2) times, then given up: HTTP answers 503
//! and closes, echo, discard, chargen and a user's [`RequestHandler`]
//! reset the connection (their protocols have no way to say "failed").
//!
//! # Bounds
//!
//! Per connection ([`forwarder`]): at most [`forwarder::MAX_REQUESTS`]
//! (64) requests whose reply is not yet handed to TCP, no new request
//! while [`forwarder::MAX_REPLY_BYTES`] (256 KiB) or more reply bytes
//! wait for TCP, and at most [`forwarder::MAX_OUTSTANDING`] (256 KiB) of
//! echo, discard or chargen bytes not yet answered. Past a bound the
//! forwarder stops reading the client, whose TCP window then closes: a
//! client that pipelines without reading holds at most 64 requests and
//! 256 KiB of replies plus the replies of the requests then in flight,
//! besides its TCP buffers (256 KiB each way).
//!
//! For all connections ([`dispatcher`]): each back-end's job channel holds
//! at most [`dispatcher::BACKEND_QUEUE`] (64) jobs, and new work is taken
//! only while fewer than [`dispatcher::MAX_WAITING`] (1024) jobs wait for
//! a back-end (all busy, or all down); a connection refused room stops
//! reading and is woken when there is room.

pub mod backend;
pub mod dispatcher;
pub mod forwarder;
pub mod ipc;
pub mod request;

pub use dispatcher::{Balance, Dispatcher};
pub use forwarder::Forwarder;
pub use ipc::{BackendCtl, BackendCtlRequest, FromBackend, Job, Reply, Work};
pub use request::{RequestContext, RequestHandler, RequestService, Response};
