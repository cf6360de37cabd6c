//! The applications a processor serves on its connections: echo (RFC 862),
//! discard (RFC 863), chargen (RFC 864), a small HTTP/1.x server, and any
//! [`Service`] a user brings (the proxy and exec apps, or a library
//! user's own).
//!
//! An app never sees TCP: it is handed a [`Socket`], the app's view of one
//! connection, and is polled whenever something happened on it (data
//! arrived, send space opened, the peer closed, one of its own descriptors
//! became ready, its own deadline passed). It must never block and must
//! respect back-pressure: write only what `send_capacity()` allows and
//! keep the rest for the next poll (or do not read what it cannot answer).

use crate::stats::Registry;
use std::fmt;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

pub use vnic_stack::CloseReason;

pub mod broker;
mod buf;
pub mod chargen;
pub(crate) mod checkpoint;
#[cfg(test)]
mod checkpoint_tests;
pub mod discard;
pub mod echo;
pub mod exec;
pub mod http;
mod mem;
pub mod proxy;
pub mod udp;

pub use mem::MemSocket;

/// The app's view of one TCP connection.
pub trait Socket {
    /// Copies in-order received bytes into `buf`; returns how many.
    fn recv(&mut self, buf: &mut [u8]) -> usize;
    /// Bytes ready to be read with [`Socket::recv`].
    fn recv_available(&self) -> usize;
    /// The bytes [`Socket::recv`] would copy, lent where they lie (two
    /// slices, in order), for an app that passes them on without a copy
    /// of its own; [`Socket::recv_consume`] then drops what it used. A
    /// socket that cannot lend keeps this default: nothing lent (read
    /// with `recv`, which always works).
    fn recv_slices(&self) -> [&[u8]; 2] {
        [&[], &[]]
    }
    /// Drops the first `n` bytes [`Socket::recv_slices`] lent, as read;
    /// returns how many. The default (a socket that lends nothing) reads
    /// them into a scratch buffer.
    fn recv_consume(&mut self, n: usize) -> usize {
        let mut scratch = [0u8; 4096];
        let mut done = 0;
        while done < n {
            let want = (n - done).min(scratch.len());
            let got = self.recv(&mut scratch[..want]);
            if got == 0 {
                break;
            }
            done += got;
        }
        done
    }
    /// Queues bytes for sending; returns how many were taken (≤ `send_capacity()`).
    fn send(&mut self, data: &[u8]) -> usize;
    /// Queues `data[range]` for sending without copying it where the
    /// socket can (a processor's connection refers to the shared bytes
    /// until they are acknowledged); returns how many were taken, as
    /// `send` does. By default it copies through `send`.
    fn send_shared(
        &mut self,
        data: &vnic_stack::SharedBytes,
        range: std::ops::Range<usize>,
    ) -> usize {
        data.as_slice().get(range).map_or(0, |b| self.send(b))
    }
    /// How many more bytes `send` would take now.
    fn send_capacity(&self) -> usize;
    /// True once the peer's FIN has arrived (no more data will come after
    /// what `recv_available()` still holds).
    fn peer_closed(&self) -> bool;
    /// Sends our FIN after everything queued (half-close from our side).
    fn close(&mut self);
    /// Resets the connection (RST): what an app does when the other end of
    /// a relay was reset, or it cannot serve the client at all.
    fn abort(&mut self);
}

/// Lets an app watch descriptors of its own (a back-end socket, a child's
/// pipes) from its processor's event loop, so that one thread drives the
/// TCP connections and everything behind them, with no thread per
/// connection.
///
/// Watching is edge-triggered for reading and writing: the app is polled
/// after a descriptor becomes readable or writable, and must then read or
/// write until the call would block (or until back-pressure stops it; it is
/// polled again when its connection's window or buffers move).
#[derive(Clone)]
pub struct Io {
    registry: Option<Arc<mio::Registry>>,
    token: mio::Token,
}

impl fmt::Debug for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Io")
            .field("enabled", &self.registry.is_some())
            .field("token", &self.token.0)
            .finish()
    }
}

impl Io {
    /// No event loop behind it (a distributor back-end, a unit test):
    /// watching fails with `Unsupported`.
    pub fn none() -> Io {
        Io {
            registry: None,
            token: mio::Token(0),
        }
    }

    /// Watches for connection `conn` of the processor whose epoll
    /// `registry` belongs to.
    pub fn new(registry: Arc<mio::Registry>, conn: u64) -> Io {
        Io {
            registry: Some(registry),
            token: mio::Token(conn as usize),
        }
    }

    fn registry(&self) -> std::io::Result<&mio::Registry> {
        self.registry.as_deref().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "no event loop to watch descriptors with",
            )
        })
    }

    /// Starts watching `fd` (readable and writable, edge-triggered). The
    /// descriptor must stay open until [`Io::unwatch`] or until it is
    /// closed (closing it ends the watch).
    pub fn watch(&self, fd: RawFd) -> std::io::Result<()> {
        self.registry()?.register(
            &mut mio::unix::SourceFd(&fd),
            self.token,
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )
    }

    /// Stops watching `fd`.
    pub fn unwatch(&self, fd: RawFd) -> std::io::Result<()> {
        self.registry()?.deregister(&mut mio::unix::SourceFd(&fd))
    }
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
    /// The connection's local end (a virtual IP and the served port).
    pub local: SocketAddr,
    /// The client's address and port.
    pub remote: SocketAddr,
    /// Descriptors the app wants its processor's event loop to watch.
    pub io: Io,
}

impl AppContext {
    /// A context with no connection behind it (a distributor back-end
    /// running one request, a unit test): unspecified addresses, no
    /// event loop.
    pub fn detached(processor: usize, connection: u64, registry: Arc<Registry>) -> AppContext {
        let none = SocketAddr::from(([0, 0, 0, 0], 0));
        AppContext {
            processor,
            connection,
            registry,
            backend: None,
            local: none,
            remote: none,
            io: Io::none(),
        }
    }
}

/// One app instance serves one connection.
///
/// ```
/// use vnic_listeners::app::{App, Socket};
///
/// /// Answers every byte with its upper-case form.
/// struct Upper;
///
/// impl App for Upper {
///     fn poll(&mut self, sock: &mut dyn Socket) {
///         let mut buf = [0u8; 512];
///         // Read no more than can be answered now: the rest waits in TCP,
///         // whose window closes for a client that does not read.
///         loop {
///             let room = sock.send_capacity().min(buf.len());
///             let n = sock.recv(&mut buf[..room]);
///             if n == 0 {
///                 break;
///             }
///             buf[..n].make_ascii_uppercase();
///             sock.send(&buf[..n]);
///         }
///         if sock.peer_closed() && sock.recv_available() == 0 {
///             sock.close();
///         }
///     }
/// }
/// # struct Mem { rx: Vec<u8>, tx: Vec<u8>, fin: bool, closed: bool }
/// # impl Socket for Mem {
/// #     fn recv(&mut self, b: &mut [u8]) -> usize {
/// #         let n = b.len().min(self.rx.len());
/// #         b[..n].copy_from_slice(&self.rx[..n]);
/// #         self.rx.drain(..n);
/// #         n
/// #     }
/// #     fn recv_available(&self) -> usize { self.rx.len() }
/// #     fn send(&mut self, d: &[u8]) -> usize { self.tx.extend_from_slice(d); d.len() }
/// #     fn send_capacity(&self) -> usize { 1 << 16 }
/// #     fn peer_closed(&self) -> bool { self.fin }
/// #     fn close(&mut self) { self.closed = true }
/// #     fn abort(&mut self) {}
/// # }
/// let mut sock = Mem { rx: b"hello".to_vec(), tx: vec![], fin: true, closed: false };
/// Upper.poll(&mut sock);
/// assert_eq!(sock.tx, b"HELLO");
/// assert!(sock.closed);
/// ```
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
    /// When the app wants to be polled even if nothing happens (a connect
    /// timeout, a grace period); the processor keeps it in its timer heap
    /// with the connection's own timers.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    /// The connection is gone (closed, reset by the peer, timed out or
    /// aborted); the app is dropped right after. An app that relays to
    /// something else passes the news on (a reset becomes a reset).
    fn on_closed(&mut self, _reason: CloseReason) {}
    /// Bytes of memory the app holds for its connection besides the
    /// connection's TCP buffers (a relay's buffers, replies waiting): what
    /// the processor's memory budget counts for it.
    fn memory(&self) -> usize {
        0
    }
    /// Gives back memory the app holds but does not use now (a relay's
    /// empty buffers); the processor calls it on quiet connections when
    /// its memory budget runs short.
    fn trim(&mut self) {}
    /// A copy of the app's state from which another processor can go on
    /// with the connection: what a live migration carries (`vnic ctl
    /// connection move`, `drain`, the hybrid model's hand-off) and what a
    /// process pair's backup keeps (`--pairs`). Called between polls, when
    /// the app's state and its connection's agree. The copy shares what
    /// cannot be copied (a back-end socket, a child's pipes: a kernel
    /// descriptor serves any thread of the process), so that dropping the
    /// app afterwards does not close it under the copy.
    ///
    /// [`NoCheckpoint::Unsupported`] (the default): the connection is reset
    /// where it would have been moved or taken over.
    /// [`NoCheckpoint::Busy`]: not now (work in flight elsewhere); a move
    /// is retried later.
    fn checkpoint(&mut self) -> Result<Box<dyn AppCheckpoint>, NoCheckpoint> {
        Err(NoCheckpoint::Unsupported)
    }
    /// The connection went to another processor with the checkpoint just
    /// taken: stop watching descriptors here ([`Io::unwatch`]) and let go
    /// of nothing the checkpoint shares. The app is dropped right after,
    /// without [`App::on_closed`].
    fn on_moved(&mut self) {}
    /// True when the app's state moves only with its socket: it reads no
    /// descriptor, hears from no other thread, and acts on nothing but
    /// the bytes it reads (echo, discard, chargen, http). A process
    /// pair's primary then skips the checkpoints that would carry nothing
    /// a takeover needs (see `processor/pairs.rs`): a pass in which the app
    /// read, queued and closed nothing and no byte of the peer's arrived,
    /// and a connection's last step into TIME-WAIT. An app that acts outside its socket (a relay,
    /// a forwarder, a user's handler) keeps a checkpoint for every pass:
    /// the default.
    fn socket_only(&self) -> bool {
        false
    }
}

/// Why an app gave no checkpoint ([`App::checkpoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCheckpoint {
    /// This app cannot be resumed elsewhere: its connection is reset
    /// instead of moved.
    Unsupported,
    /// Not now: something is in flight that only this processor will hear
    /// about (a back-end's reply); ask again later.
    Busy,
}

/// What [`App::checkpoint`] leaves: the app's state, ready to go on with
/// its connection on another processor. Each is restored at most once.
pub trait AppCheckpoint: Send {
    /// The app, going on from the checkpoint on the processor `ctx` names
    /// (its descriptors watched by that processor's event loop through
    /// `ctx.io`). An error resets the connection.
    fn restore(self: Box<Self>, ctx: AppContext) -> Result<Box<dyn App>, Refused>;
    /// Bytes of memory the checkpoint holds (a process pair's backup
    /// counts what it keeps).
    fn memory(&self) -> usize {
        0
    }
}

/// Why a [`Service`] would not take a new connection; the client gets RST.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What a listener serves: it makes one [`App`] per connection. The
/// built-in apps ([`AppKind`]), the proxy and the exec apps are services,
/// and so is whatever a library user registers: the processors know no
/// closed list of apps.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use vnic_listeners::app::{App, AppContext, AppKind, Refused, Service, Socket};
/// use vnic_listeners::stats::Registry;
///
/// /// Greets each client with the processor it landed on, at most `max` at once.
/// struct Hello {
///     open: Arc<AtomicUsize>,
///     max: usize,
/// }
///
/// struct HelloApp {
///     text: Vec<u8>,
///     open: Arc<AtomicUsize>,
/// }
///
/// impl App for HelloApp {
///     fn poll(&mut self, sock: &mut dyn Socket) {
///         let n = sock.send(&self.text);
///         self.text.drain(..n);
///         if self.text.is_empty() {
///             sock.close();
///         }
///     }
/// }
///
/// impl Drop for HelloApp {
///     fn drop(&mut self) {
///         self.open.fetch_sub(1, Ordering::Relaxed);
///     }
/// }
///
/// impl Service for Hello {
///     fn name(&self) -> &str {
///         "hello"
///     }
///     fn open(&self, ctx: AppContext) -> Result<Box<dyn App>, Refused> {
///         if self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
///             self.open.fetch_sub(1, Ordering::Relaxed);
///             return Err(Refused("too many clients".into()));
///         }
///         Ok(Box::new(HelloApp {
///             text: format!("hello from processor {}\n", ctx.processor).into_bytes(),
///             open: self.open.clone(),
///         }))
///     }
/// }
///
/// let hello = Hello { open: Arc::new(AtomicUsize::new(0)), max: 1 };
/// let registry = Arc::new(Registry::new("monolithic", "round-robin", 4));
/// let first = hello.open(AppContext::detached(2, 1, registry.clone()));
/// assert!(first.is_ok());
/// assert!(hello.open(AppContext::detached(3, 2, registry.clone())).is_err());
/// drop(first);
/// assert!(hello.open(AppContext::detached(3, 3, registry)).is_ok());
/// // The built-in apps are services too.
/// assert_eq!(Service::name(&AppKind::Echo), "echo");
/// ```
pub trait Service: Send + Sync {
    /// A short name for status reports and traces (`echo`, `proxy`, ...).
    fn name(&self) -> &str;
    /// A fresh app for one new connection, or why there is none (the
    /// connection is then reset).
    fn open(&self, ctx: AppContext) -> Result<Box<dyn App>, Refused>;
    /// For a built-in app: which one, so that the distributor model can
    /// run its logic at the back-ends. Other services run in the
    /// processor that holds the connection, in every model.
    fn builtin(&self) -> Option<AppKind> {
        None
    }
    /// For a request/response protocol: its handler, so that the
    /// distributor model can run each request at a back-end. Other
    /// services run in the processor that holds the connection.
    fn requests(&self) -> Option<Arc<dyn crate::distributor::RequestHandler>> {
        None
    }
    /// Counters worth showing in `vnic status` (e.g. one row per proxy
    /// target), or None.
    fn report(&self) -> Option<crate::stats::ServiceReport> {
        None
    }
    /// Zeroes the counters of [`Service::report`] (`vnic ctl stats
    /// reset`); gauges (connections or programs open now) stay.
    fn reset_counters(&self) {}
}

impl fmt::Debug for dyn Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Service({})", self.name())
    }
}

impl Service for AppKind {
    fn name(&self) -> &str {
        AppKind::name(*self)
    }
    fn open(&self, ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        Ok(self.instantiate(ctx))
    }
    fn builtin(&self) -> Option<AppKind> {
        Some(*self)
    }
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
