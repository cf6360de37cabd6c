//! `--serve PORT=proxy:ADDR:PORT[,ADDR:PORT...]`: each connection relayed
//! to a real server over the kernel's TCP, so a user's own service runs
//! behind the emulated processors. A connection placed on processor K goes
//! to target K mod T: the processors map onto server instances the way
//! NonStop listeners in different CPUs are separate servers.
//!
//! The relay is two half-duplex pumps, one bounded buffer each way:
//!
//! - client → back-end: the client is read only while the buffer towards
//!   the back-end has room, so a back-end that does not read closes the
//!   client's TCP window. The client's FIN, once everything before it is
//!   written, becomes `shutdown(SHUT_WR)` on the back-end socket.
//! - back-end → client: the back-end is read only while the buffer
//!   towards the client has room; that buffer drains only as fast as the
//!   connection's send space opens, so a client that does not read stops
//!   vnic reading the back-end (whose own window then closes). The
//!   back-end's EOF, once everything before it is sent, becomes vnic's FIN;
//!   if the client has closed too, that FIN also waits until the client's
//!   bytes are all written to the back-end (the FIN would end the
//!   connection, and the relay with what it holds, at the client's ACK).
//!
//! The connection lives until both directions are done, with one limit:
//! when vnic's FIN went first and the client's came after, the connection
//! is in TIME-WAIT, and client bytes a back-end still has not taken when
//! TIME-WAIT ends (`--time-wait`, 60 s by default) go with it.
//!
//! A reset on either side resets the other: an error on the back-end
//! socket aborts the client's connection (RST), and a client's reset
//! (or a connection that times out or is aborted) closes the back-end
//! socket with `SO_LINGER` 0, which sends RST. A back-end that refuses,
//! or has not accepted within the connect timeout, gets the client's
//! connection reset; each is counted per target.
//!
//! The back-end socket is non-blocking and watched in the processor's own
//! epoll ([`crate::app::Io`], edge-triggered): the processor thread that
//! runs the client's TCP drives the relay too, with no thread per
//! connection.
//!
//! **Memory per relayed connection** is bounded: [`TO_TARGET`] bytes
//! towards the back-end and [`TO_CLIENT`] towards the client (128 KiB,
//! allocated when first used), besides the connection's TCP buffers in
//! the stack (`vnic_stack::TcpConfig`: 256 KiB each way by default) and the
//! kernel's socket buffers of the back-end connection. The stack keeps
//! those two in queues that grow by doubling from the first segment's
//! size, so each may take up to (not quite) twice its 256 KiB: 1,152 KiB
//! per connection at most, 640 KiB of it bytes in flight (measured: about
//! 650 KiB of vnic's resident memory per upload stalled by a back-end
//! that never reads).
//!
//! **Checkpoints** (`App::checkpoint`: a connection moved to another
//! processor, or a process pair's backup): the back-end socket is shared
//! (`Arc`) by the relay and its checkpoints, and the bytes held each way
//! are copied (none when the pumps keep up; at most 128 KiB). The last
//! holder closes the socket: with FIN if the relay that finished with it
//! closed cleanly (that relay's FIN goes at once by `shutdown`), with RST
//! if it was reset or no relay finished with it.
//!
//! With `--proxy-protocol v1|v2`, HAProxy's PROXY protocol header
//! (HAProxy's doc/proxy-protocol.txt) goes first on each back-end
//! connection, so the back-end sees the client's real address and port.

use crate::app::buf::Buf;
use crate::app::{
    App, AppCheckpoint, AppContext, CloseReason, Io, NoCheckpoint, Refused, Service, Socket,
};
use crate::stats::ServiceReport;
use mio::net::TcpStream;
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes buffered towards the back-end, at most.
pub const TO_TARGET: usize = 64 * 1024;
/// Bytes buffered towards the client, at most.
pub const TO_CLIENT: usize = 64 * 1024;

/// When the back-end socket could not be watched (no event loop: a unit
/// test), how often the relay looks at it anyway.
const UNWATCHED_POLL: Duration = Duration::from_millis(5);

/// The HAProxy PROXY protocol version written first to each back-end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// The text line (`PROXY TCP4 src dst sport dport\r\n`).
    V1,
    /// The binary header (12-byte signature, addresses in network order).
    V2,
}

impl ProxyProtocol {
    /// Parses `v1` or `v2`.
    pub fn from_name(s: &str) -> Option<ProxyProtocol> {
        match s {
            "v1" => Some(ProxyProtocol::V1),
            "v2" => Some(ProxyProtocol::V2),
            _ => None,
        }
    }

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
        }
    }

    /// The header that tells the back-end the connection goes from
    /// `client` to `local` (both of one address family, as on one
    /// connection; a mixed pair is written as IPv6).
    pub fn header(self, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
        let pair = match (client.ip(), local.ip()) {
            (IpAddr::V4(c), IpAddr::V4(l)) => Pair::V4(c.octets(), l.octets()),
            (c, l) => Pair::V6(v6(c).octets(), v6(l).octets()),
        };
        match self {
            ProxyProtocol::V1 => {
                let (family, c, l) = match pair {
                    Pair::V4(..) => ("TCP4", client.ip(), local.ip()),
                    Pair::V6(c, l) => ("TCP6", IpAddr::from(c), IpAddr::from(l)),
                };
                format!(
                    "PROXY {family} {c} {l} {} {}\r\n",
                    client.port(),
                    local.port()
                )
                .into_bytes()
            }
            ProxyProtocol::V2 => {
                let mut h = V2_SIGNATURE.to_vec();
                // Version 2, command PROXY.
                h.push(0x21);
                let (family, addrs): (u8, Vec<u8>) = match pair {
                    Pair::V4(c, l) => (0x11, [c.as_slice(), l.as_slice()].concat()),
                    Pair::V6(c, l) => (0x21, [c.as_slice(), l.as_slice()].concat()),
                };
                h.push(family);
                let len = (addrs.len() + 4) as u16;
                h.extend_from_slice(&len.to_be_bytes());
                h.extend_from_slice(&addrs);
                h.extend_from_slice(&client.port().to_be_bytes());
                h.extend_from_slice(&local.port().to_be_bytes());
                h
            }
        }
    }
}

/// The PROXY protocol v2 signature.
const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Both ends' addresses in one family.
enum Pair {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// How the proxy connects to its back-ends.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// The PROXY protocol header to send first, if any.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// A back-end that has not accepted within this time gets the
    /// client's connection reset.
    pub connect_timeout: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            proxy_protocol: None,
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// `ADDR:PORT[,ADDR:PORT...]` (IPv6 as `[ADDR]:PORT`): the targets of a
/// `--serve PORT=proxy:...`.
pub fn parse_targets(s: &str) -> Result<Vec<SocketAddr>, String> {
    if s.trim().is_empty() {
        return Err("proxy needs at least one target ADDR:PORT".into());
    }
    s.split(',')
        .map(|t| {
            let t = t.trim();
            let a: SocketAddr = t
                .parse()
                .map_err(|_| format!("proxy target {t:?} is not ADDR:PORT or [ADDR]:PORT"))?;
            if a.port() == 0 || a.ip().is_unspecified() || a.ip().is_multicast() {
                return Err(format!("proxy target {t:?} cannot be connected to"));
            }
            Ok(a)
        })
        .collect()
}

/// One back-end server and its counters (shared by every processor).
#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    connects: AtomicU64,
    failures: AtomicU64,
    active: AtomicU64,
    bytes_to_target: AtomicU64,
    bytes_from_target: AtomicU64,
}

impl Target {
    fn new(addr: SocketAddr) -> Target {
        Target {
            addr,
            connects: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            active: AtomicU64::new(0),
            bytes_to_target: AtomicU64::new(0),
            bytes_from_target: AtomicU64::new(0),
        }
    }

    fn row(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut r = serde_json::Map::new();
        r.insert("target".into(), self.addr.to_string().into());
        for (k, v) in [
            ("connects", &self.connects),
            ("failures", &self.failures),
            ("active", &self.active),
            ("bytes_to_target", &self.bytes_to_target),
            ("bytes_from_target", &self.bytes_from_target),
        ] {
            r.insert(k.into(), v.load(Ordering::Relaxed).into());
        }
        r
    }
}

/// The relay service of one `--serve PORT=proxy:...` entry.
pub struct ProxyService {
    targets: Vec<Arc<Target>>,
    opts: ProxyOptions,
}

impl ProxyService {
    /// A service relaying processor K's connections to `targets[K mod T]`
    /// (`targets` must not be empty: [`parse_targets`] sees to it).
    pub fn new(targets: Vec<SocketAddr>, opts: ProxyOptions) -> ProxyService {
        ProxyService {
            targets: targets
                .into_iter()
                .map(|a| Arc::new(Target::new(a)))
                .collect(),
            opts,
        }
    }
}

impl Service for ProxyService {
    fn name(&self) -> &str {
        "proxy"
    }

    fn open(&self, ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        let Some(target) = self.targets.get(ctx.processor % self.targets.len().max(1)) else {
            return Err(Refused("the proxy has no target".into()));
        };
        match Proxy::connect(target.clone(), &ctx, &self.opts) {
            Ok(p) => Ok(Box::new(p)),
            Err(e) => {
                target.failures.fetch_add(1, Ordering::Relaxed);
                Err(Refused(format!("proxy to {}: {e}", target.addr)))
            }
        }
    }

    fn report(&self) -> Option<ServiceReport> {
        Some(ServiceReport {
            rows: self.targets.iter().map(|t| t.row()).collect(),
        })
    }

    fn reset_counters(&self) {
        for t in &self.targets {
            for c in [
                &t.connects,
                &t.failures,
                &t.bytes_to_target,
                &t.bytes_from_target,
            ] {
                c.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// Where a relay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The back-end has not accepted yet; give up at the deadline.
    Connecting(Instant),
    /// Bytes flow.
    Relaying,
    /// Both directions are done, or one side was reset.
    Done,
}

/// The back-end connection of one relay, shared by the relay and its
/// checkpoints ([`App::checkpoint`]): the socket is closed when the last
/// of them lets go, so a connection moved to another processor, or kept
/// by a process pair's backup, keeps its back-end.
#[derive(Debug)]
struct Backend {
    stream: TcpStream,
    target: Arc<Target>,
    /// Counted in the target's `active` (by whichever holder saw the
    /// connect first); the count goes when the socket does.
    counted: AtomicBool,
    /// How the relay that finished with the socket wanted it closed
    /// ([`ENDING_OPEN`], [`ENDING_FIN`], [`ENDING_RST`]), for whichever
    /// holder lets go last.
    ending: AtomicU8,
}

/// No relay has finished with the back-end socket yet.
const ENDING_OPEN: u8 = 0;
/// A relay finished cleanly: the socket closes with FIN.
const ENDING_FIN: u8 = 1;
/// A relay was reset or failed: the socket closes with RST.
const ENDING_RST: u8 = 2;

impl Backend {
    /// Counts the connection as made, once: true the first time.
    fn count(&self) -> bool {
        let first = !self.counted.swap(true, Ordering::Relaxed);
        if first {
            self.target.connects.fetch_add(1, Ordering::Relaxed);
            self.target.active.fetch_add(1, Ordering::Relaxed);
        }
        first
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if self.counted.load(Ordering::Relaxed) {
            self.target.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Lets go of a holder's share of the back-end socket: the last holder
/// closes it, with RST (`SO_LINGER` 0) if the relay that finished with
/// it was reset, or, if none has finished with it, when `open_reset`
/// says so; an earlier holder leaves it to the others.
fn release(backend: Arc<Backend>, open_reset: bool) {
    if let Some(b) = Arc::into_inner(backend) {
        let reset = match b.ending.load(Ordering::Relaxed) {
            ENDING_FIN => false,
            ENDING_RST => true,
            _ => open_reset,
        };
        if reset {
            let _ = socket_linger_zero(&b.stream);
        }
    }
}

/// One relayed connection (see the module doc).
pub struct Proxy {
    target: Arc<Target>,
    stream: Option<Arc<Backend>>,
    /// The event loop that watches the back-end socket for this relay.
    io: Io,
    watched: bool,
    /// The connection went to another processor (`on_moved`): dropping
    /// the relay lets go of its share of the socket and nothing else.
    moved: bool,
    phase: Phase,
    to_target: Buf,
    to_client: Buf,
    /// The client's FIN became `shutdown(SHUT_WR)` on the back-end.
    target_shut: bool,
    /// The back-end's EOF arrived.
    target_eof: bool,
    /// Our FIN to the client is queued.
    client_closed: bool,
}

impl Proxy {
    /// Starts the connection to `target` (non-blocking) for the client
    /// `ctx` describes; the PROXY header, if asked for, is the first
    /// thing queued towards it.
    fn connect(target: Arc<Target>, ctx: &AppContext, opts: &ProxyOptions) -> io::Result<Proxy> {
        let stream = TcpStream::connect(target.addr)?;
        // A relay adds no delay of its own to small writes (the client's
        // side has Nagle off too, see `App::nagle`).
        let _ = stream.set_nodelay(true);
        let watched = ctx.io.watch(stream.as_raw_fd()).is_ok();
        let mut to_target = Buf::new(TO_TARGET);
        if let Some(pp) = opts.proxy_protocol {
            let h = pp.header(ctx.remote, ctx.local);
            let _ = to_target.fill_with(h.len(), |b| {
                let n = b.len().min(h.len());
                b[..n].copy_from_slice(&h[..n]);
                Ok(n)
            });
        }
        Ok(Proxy {
            stream: Some(Arc::new(Backend {
                stream,
                target: target.clone(),
                counted: AtomicBool::new(false),
                ending: AtomicU8::new(ENDING_OPEN),
            })),
            target,
            io: ctx.io.clone(),
            watched,
            moved: false,
            phase: Phase::Connecting(Instant::now() + opts.connect_timeout),
            to_target,
            to_client: Buf::new(TO_CLIENT),
            target_shut: false,
            target_eof: false,
            client_closed: false,
        })
    }

    /// While connecting: has the back-end accepted (Ok(true)), refused
    /// (Err), or not answered yet (Ok(false))?
    fn connected(&self) -> io::Result<bool> {
        let Some(s) = self.stream.as_ref().map(|b| &b.stream) else {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        if let Some(e) = s.take_error()? {
            return Err(e);
        }
        match s.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The back-end failed (refused, timed out, reset, broke): the client's
    /// connection is reset, and the back-end socket closed.
    fn fail(&mut self, sock: &mut dyn Socket, counts_as_failure: bool) {
        if counts_as_failure {
            self.target.failures.fetch_add(1, Ordering::Relaxed);
        }
        sock.abort();
        self.close_target(true);
        self.phase = Phase::Done;
    }

    /// Closes the back-end socket; with `reset`, so that it gets RST.
    fn close_target(&mut self, reset: bool) {
        if let Some(b) = self.stream.take() {
            let ending = if reset { ENDING_RST } else { ENDING_FIN };
            b.ending.store(ending, Ordering::Relaxed);
            // Closing the descriptor takes it out of the epoll, so no
            // unwatch (one system call less per connection), unless a
            // checkpoint still holds it open: then the back-end gets our
            // FIN now rather than when that checkpoint goes.
            if Arc::strong_count(&b) > 1 {
                if self.watched {
                    let _ = self.io.unwatch(b.stream.as_raw_fd());
                }
                if !reset {
                    let _ = b.stream.shutdown(Shutdown::Write);
                }
            }
            // SO_LINGER {on, 0}: close() sends RST instead of FIN.
            release(b, reset);
        }
    }

    /// Client → back-end: read what fits, write what the socket takes,
    /// and pass the client's FIN on once everything before it is out.
    /// Err: the back-end socket broke.
    fn pump_to_target(&mut self, sock: &mut dyn Socket) -> io::Result<()> {
        let Some(backend) = self.stream.as_ref() else {
            return Ok(());
        };
        let mut stream = &backend.stream;
        loop {
            if self.to_target.is_empty() {
                // Straight from the connection's receive buffer: what the
                // back-end takes is dropped as read, the rest stays there
                // (its window closed until the back-end drains).
                let wrote = {
                    let [a, b] = sock.recv_slices();
                    (!a.is_empty() || !b.is_empty())
                        .then(|| stream.write_vectored(&[IoSlice::new(a), IoSlice::new(b)]))
                };
                match wrote {
                    None => {}
                    Some(Ok(0)) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                    Some(Ok(n)) => {
                        sock.recv_consume(n);
                        self.target
                            .bytes_to_target
                            .fetch_add(n as u64, Ordering::Relaxed);
                        continue;
                    }
                    Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Some(Err(e)) => return Err(e),
                }
            }
            let room = self.to_target.room();
            if room > 0 && sock.recv_available() > 0 {
                self.to_target.fill_with(room, |b| Ok(sock.recv(b)))?;
            }
            if self.to_target.is_empty() {
                break;
            }
            match stream.write(self.to_target.held()) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.to_target.consume(n);
                    self.target
                        .bytes_to_target
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !self.target_shut
            && sock.peer_closed()
            && sock.recv_available() == 0
            && self.to_target.is_empty()
        {
            self.target_shut = true;
            if self.target_eof {
                // The back-end is done too: closing sends the same FIN
                // as a shutdown would, one system call sooner.
                self.close_target(false);
                return Ok(());
            }
            match stream.shutdown(Shutdown::Write) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Back-end → client: read while the buffer has room, send what the
    /// connection takes, and pass the back-end's EOF on once everything
    /// before it is sent. Err: the back-end socket broke.
    fn pump_to_client(&mut self, sock: &mut dyn Socket) -> io::Result<()> {
        loop {
            if !self.to_client.is_empty() {
                let n = sock.send(self.to_client.held());
                self.to_client.consume(n);
            }
            let room = self.to_client.room();
            if self.target_eof || room == 0 {
                break;
            }
            let Some(backend) = self.stream.as_ref() else {
                break;
            };
            let mut stream = &backend.stream;
            match self.to_client.fill_with(room, |b| stream.read(b)) {
                Ok(0) => self.target_eof = true,
                Ok(n) => {
                    self.target
                        .bytes_from_target
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Send what was read; the next edge brings more.
                    let n = sock.send(self.to_client.held());
                    self.to_client.consume(n);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Once the client has closed too, our FIN waits until its bytes are
        // all written to the back-end: in CLOSE-WAIT our FIN leads to
        // LAST-ACK, whose ACK ends the connection and drops this relay
        // with whatever it and the stack still hold.
        let client_bytes_held = sock.peer_closed() && !self.target_shut;
        if self.target_eof && self.to_client.is_empty() && !self.client_closed && !client_bytes_held
        {
            self.client_closed = true;
            sock.close();
        }
        Ok(())
    }
}

/// Sets `SO_LINGER` to {on, 0 s}, so that closing the socket resets the
/// connection (neither std nor mio sets linger on a `TcpStream`).
fn socket_linger_zero(s: &impl AsFd) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_socket_linger(
        s,
        Some(Duration::ZERO),
    )?)
}

impl App for Proxy {
    fn memory(&self) -> usize {
        self.to_target.memory() + self.to_client.memory()
    }
    fn trim(&mut self) {
        self.to_target.trim();
        self.to_client.trim();
    }
    fn poll(&mut self, sock: &mut dyn Socket) {
        if let Phase::Connecting(deadline) = self.phase {
            match self.connected() {
                Ok(true) => {
                    self.phase = Phase::Relaying;
                    if let Some(b) = &self.stream {
                        b.count();
                    }
                }
                Ok(false) if Instant::now() >= deadline => return self.fail(sock, true),
                Ok(false) => return,
                Err(_) => return self.fail(sock, true),
            }
        }
        if self.phase != Phase::Relaying {
            return;
        }
        let pumped = self
            .pump_to_target(sock)
            .and_then(|()| self.pump_to_client(sock));
        if pumped.is_err() {
            // A reset or broken back-end: the client is reset too.
            return self.fail(sock, false);
        }
        if self.target_shut && self.client_closed {
            self.phase = Phase::Done;
            self.close_target(false);
        }
    }

    fn nagle(&self) -> bool {
        // A relay must not hold the back-end's small answers back for the
        // client's ACK: the back-end decided when to send them.
        false
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Connecting(deadline) if self.watched => Some(deadline),
            Phase::Connecting(deadline) => Some(deadline.min(Instant::now() + UNWATCHED_POLL)),
            Phase::Relaying if !self.watched => Some(Instant::now() + UNWATCHED_POLL),
            _ => None,
        }
    }

    fn on_closed(&mut self, reason: CloseReason) {
        // The client reset, timed out or was aborted: so is the back-end.
        self.close_target(reason != CloseReason::Normal);
        self.phase = Phase::Done;
    }

    /// The back-end socket (shared: it stays open while the relay or any
    /// checkpoint holds it), a copy of the bytes held each way, the phase
    /// (a connect in progress keeps its deadline: `Instant`s are one
    /// clock for every thread) and which sides are shut.
    fn checkpoint(&mut self) -> Result<Box<dyn AppCheckpoint>, NoCheckpoint> {
        Ok(Box::new(ProxyCheckpoint {
            target: self.target.clone(),
            stream: self.stream.clone(),
            phase: self.phase,
            to_target: self.to_target.held().to_vec(),
            to_client: self.to_client.held().to_vec(),
            target_shut: self.target_shut,
            target_eof: self.target_eof,
            client_closed: self.client_closed,
        }))
    }

    fn on_moved(&mut self) {
        if let (true, Some(b)) = (self.watched, &self.stream) {
            let _ = self.io.unwatch(b.stream.as_raw_fd());
        }
        self.watched = false;
        self.moved = true;
    }
}

/// A relay as [`Proxy::checkpoint`] left it: the shared back-end socket
/// and copies of its buffers. Dropped unrestored, it lets go of its share
/// of the socket only (the last holder closes it, with RST if its relay
/// was not done).
struct ProxyCheckpoint {
    target: Arc<Target>,
    stream: Option<Arc<Backend>>,
    phase: Phase,
    to_target: Vec<u8>,
    to_client: Vec<u8>,
    target_shut: bool,
    target_eof: bool,
    client_closed: bool,
}

impl AppCheckpoint for ProxyCheckpoint {
    fn restore(mut self: Box<Self>, ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        let stream = self.stream.take();
        let watched = match &stream {
            Some(b) if self.phase != Phase::Done => ctx.io.watch(b.stream.as_raw_fd()).is_ok(),
            _ => false,
        };
        Ok(Box::new(Proxy {
            target: self.target.clone(),
            stream,
            io: ctx.io,
            watched,
            moved: false,
            phase: self.phase,
            to_target: Buf::with_held(TO_TARGET, &self.to_target),
            to_client: Buf::with_held(TO_CLIENT, &self.to_client),
            target_shut: self.target_shut,
            target_eof: self.target_eof,
            client_closed: self.client_closed,
        }))
    }

    fn memory(&self) -> usize {
        self.to_target.capacity() + self.to_client.capacity()
    }
}

impl Drop for ProxyCheckpoint {
    fn drop(&mut self) {
        if let Some(b) = self.stream.take() {
            release(b, self.phase != Phase::Done);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Still open here: the connection went without `on_closed` (a
        // processor that stopped); the back-end is reset, not left waiting.
        let open = self.phase != Phase::Done;
        if self.moved {
            // The relay goes on elsewhere: only our share goes.
            if let Some(b) = self.stream.take() {
                release(b, open);
            }
        } else {
            self.close_target(open);
        }
    }
}

#[cfg(test)]
mod tests;
