//! The applications a processor serves on its connections: echo (RFC 862),
//! discard (RFC 863), chargen (RFC 864) and a small HTTP/1.x server.
//!
//! An app never sees TCP: it is handed a [`Socket`], the app's view of one
//! connection, and is polled whenever something happened on it (data
//! arrived, send space opened, the peer closed). It must never block and
//! must respect back-pressure: write only what `send_capacity()` allows and
//! keep the rest for the next poll (or do not read what it cannot answer).

use crate::stats::Registry;
use std::sync::Arc;

pub mod chargen;
pub mod discard;
pub mod echo;
pub mod http;
pub mod udp;

/// The app's view of one TCP connection.
pub trait Socket {
    /// Copies in-order received bytes into `buf`; returns how many.
    fn recv(&mut self, buf: &mut [u8]) -> usize;
    /// Bytes ready to be read with [`Socket::recv`].
    fn recv_available(&self) -> usize;
    /// Queues bytes for sending; returns how many were taken (≤ `send_capacity()`).
    fn send(&mut self, data: &[u8]) -> usize;
    /// How many more bytes `send` would take now.
    fn send_capacity(&self) -> usize;
    /// True once the peer's FIN has arrived (no more data will come after
    /// what `recv_available()` still holds).
    fn peer_closed(&self) -> bool;
    /// Sends our FIN after everything queued (half-close from our side).
    fn close(&mut self);
}

/// Everything an app may know about where it runs.
#[derive(Clone, Debug)]
pub struct AppContext {
    /// The processor whose TCP holds this connection.
    pub processor: usize,
    /// The global connection number (1, 2, ...), from [`Registry::connection_number`].
    pub connection: u64,
    /// All counters, for reports such as `GET /stats`.
    pub registry: Arc<Registry>,
    /// In the distributor model, the back-end that runs this request.
    pub backend: Option<usize>,
}

/// One app instance serves one connection.
pub trait App: Send {
    /// Called whenever the connection may have something for the app: make
    /// as much progress as possible without blocking.
    fn poll(&mut self, sock: &mut dyn Socket);
    /// Whether Nagle's algorithm should stay on for this app's connections
    /// (request/response apps turn it off).
    fn nagle(&self) -> bool {
        true
    }
    /// A reply from a back-end for this connection (distributor model
    /// only; plain apps never get one).
    fn deliver(&mut self, _reply: crate::distributor::Reply) {}
}

/// The apps `--serve PORT=APP` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppKind {
    /// RFC 862: every byte back; after the client's FIN, the rest, then close.
    Echo,
    /// RFC 863: read and drop; close after the client's FIN.
    Discard,
    /// RFC 864: 72-character lines until the client closes.
    Chargen,
    /// HTTP/1.0 and 1.1: `GET /` and `GET /stats`.
    Http,
}

impl AppKind {
    /// Parses the name used on the command line.
    pub fn from_name(name: &str) -> Option<AppKind> {
        match name {
            "echo" => Some(AppKind::Echo),
            "discard" => Some(AppKind::Discard),
            "chargen" => Some(AppKind::Chargen),
            "http" => Some(AppKind::Http),
            _ => None,
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AppKind::Echo => "echo",
            AppKind::Discard => "discard",
            AppKind::Chargen => "chargen",
            AppKind::Http => "http",
        }
    }

    /// A fresh app instance for one new connection.
    pub fn instantiate(self, ctx: AppContext) -> Box<dyn App> {
        match self {
            AppKind::Echo => Box::new(echo::Echo::new()),
            AppKind::Discard => Box::new(discard::Discard::new()),
            AppKind::Chargen => Box::new(chargen::Chargen::new()),
            AppKind::Http => Box::new(http::Http::new(ctx)),
        }
    }
}
