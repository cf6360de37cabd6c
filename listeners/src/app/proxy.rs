//! `--serve PORT=proxy:ADDR:PORT[,ADDR:PORT...]`: relay each connection to
//! a real server (a back-end, or "target") over the kernel's TCP.
//!
//! The connections of processor K go to target K mod T, so that the
//! round-robin filter that spreads connections over processors also
//! spreads them over the targets. The back-end socket is a non-blocking
//! `mio` stream watched in the processor's own epoll ([`crate::app::Io`]):
//! one thread drives the TCP connections and their back-ends, with no
//! thread per connection.
//!
//! A relay is two half-duplex pumps, one buffer each way (as sozu's
//! `pipe.rs` or tokio's `copy_bidirectional`):
//!
//! - client → target: the client is read only while the buffer towards
//!   the target has room, so a back-end that does not read closes vnic's
//!   receive window to the client. The client's FIN, once everything
//!   before it is written, becomes `shutdown(Write)` on the back-end.
//! - target → client: the back-end is read only while the buffer towards
//!   the client has room, and that buffer drains only as far as the
//!   connection's send space allows, so a client that does not read stops
//!   vnic reading the back-end (whose kernel then closes its window). The
//!   back-end's EOF, once everything read is sent, becomes vnic's FIN.
//!
//! The connection lives until both directions are done. A reset on either
//! side resets the other: a back-end error resets the client's connection
//! (RST), and a client's reset (or a timed-out or aborted connection)
//! closes the back-end socket with `SO_LINGER {on, 0}`, so the back-end
//! gets RST too. A back-end that refuses, or does not accept within
//! [`ProxyOptions::connect_timeout`], gets the client's connection reset
//! and is counted as a failure of that target.
//!
//! With [`ProxyOptions::proxy_protocol`], the HAProxy PROXY protocol
//! header (v1 text or v2 binary) goes first on each back-end connection,
//! before any client byte: the source is the client's address and port,
//! the destination the virtual IP and port it connected to.
//!
//! ## Memory per relayed connection
//!
//! Bounded, whatever the two ends do:
//!
//! - the relay's own buffers, fixed: [`TO_TARGET`] + [`TO_CLIENT`] =
//!   128 KiB (allocated when first used, freed once both directions are
//!   done), plus at most 107 bytes of PROXY header;
//! - the TCP stack's buffers for the client's connection: with
//!   `vnic_stack::Config`'s defaults, at most 256 KiB of received bytes
//!   the relay has not taken and 256 KiB of bytes queued for the client.
//!   They are stored in growable queues whose allocation grows by
//!   doubling from the first segment's size, so each may occupy up to
//!   (not quite) twice its content: 1 MiB between them at worst.
//!
//! So 640 KiB of buffered bytes, and at most 1,152 KiB of vnic's memory,
//! per relayed connection (measured: about 650 KiB of resident memory per
//! upload to a back-end that never reads). The back-end socket's buffers
//! are the kernel's (bounded by `net.ipv4.tcp_rmem` / `tcp_wmem`), not
//! vnic's memory.
//!
//! One limit of that bound: when vnic has sent its FIN and the client's
//! FIN then arrives, the connection lingers in TIME-WAIT and the relay
//! goes on writing to the back-end until both directions are done; a
//! back-end that still has not taken the client's last bytes when
//! TIME-WAIT ends loses them with the connection.

mod header;
mod ring;

use crate::app::{App, AppContext, CloseReason, Io, Refused, Service, Socket};
use crate::stats::ServiceReport;
use mio::net::TcpStream;
use ring::Ring;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most client bytes held for the back-end (read from the connection, not
/// yet written to the back-end socket).
pub const TO_TARGET: usize = 64 * 1024;

/// Most back-end bytes held for the client (read from the back-end
/// socket, not yet taken by the connection).
pub const TO_CLIENT: usize = 64 * 1024;

/// Which PROXY protocol header a back-end gets first, so that a back-end
/// that speaks it learns the real client's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// Version 1: one text line, `PROXY TCP4 SRC DST SPORT DPORT\r\n`.
    V1,
    /// Version 2: the binary header with its 12-byte signature.
    V2,
}

impl ProxyProtocol {
    /// Parses the name `--proxy-protocol` takes: `v1` or `v2`.
    pub fn from_name(s: &str) -> Option<ProxyProtocol> {
        match s {
            "v1" => Some(ProxyProtocol::V1),
            "v2" => Some(ProxyProtocol::V2),
            _ => None,
        }
    }

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
        }
    }
}

/// How a proxy connects to its back-ends: the flags
/// `--proxy-protocol` and `--proxy-connect-timeout`, kept apart from the
/// targets so that the CLI builds them once for every proxy entry.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// The PROXY protocol header to send first, if any.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// How long a back-end may take to accept before the client's
    /// connection is reset.
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

/// Parses the targets of `proxy:ADDR:PORT[,ADDR:PORT...]`: IP addresses
/// (no host names: nothing is resolved), IPv6 in brackets, ports 1 to
/// 65535, at least one. The error is one line naming the bad piece.
pub fn parse_targets(s: &str) -> Result<Vec<SocketAddr>, String> {
    if s.trim().is_empty() {
        return Err("proxy: no target given (want ADDR:PORT[,ADDR:PORT...])".into());
    }
    s.split(',').map(|t| parse_target(t.trim())).collect()
}

/// One `ADDR:PORT` or `[ADDR]:PORT` of [`parse_targets`].
fn parse_target(t: &str) -> Result<SocketAddr, String> {
    if t.is_empty() {
        return Err("proxy: an empty target in the list (a stray comma?)".into());
    }
    let addr = t.parse::<SocketAddr>().map_err(|_| target_error(t))?;
    if addr.port() == 0 {
        return Err(format!("proxy target {t:?}: port 0 cannot be connected to"));
    }
    Ok(addr)
}

/// Why `t` is not a target, as precisely as can be told.
fn target_error(t: &str) -> String {
    if !t.starts_with('[') && t.matches(':').count() > 1 {
        return format!("proxy target {t:?}: an IPv6 address goes in brackets, as [::1]:8080");
    }
    if !t.contains(':') {
        return format!("proxy target {t:?} has no port (want ADDR:PORT)");
    }
    format!("proxy target {t:?} is not ADDR:PORT or [ADDR]:PORT (an IP address, not a host name)")
}

/// One target and its counters, shared by every processor's relays.
#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    /// Back-end connections that were accepted.
    connects: AtomicU64,
    /// Back-end connections refused, failed, or not accepted in time.
    failures: AtomicU64,
    /// Relays now between an accepted back-end connection and its end.
    active: AtomicU64,
    /// Client bytes written to the back-end (the PROXY header not counted).
    bytes_to_target: AtomicU64,
    /// Back-end bytes read for the client.
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

    /// Its row in `vnic status`.
    fn row(&self) -> serde_json::Map<String, serde_json::Value> {
        let n = |c: &AtomicU64| serde_json::Value::from(c.load(Ordering::Relaxed));
        let mut row = serde_json::Map::new();
        row.insert("target".into(), self.addr.to_string().into());
        row.insert("connects".into(), n(&self.connects));
        row.insert("failures".into(), n(&self.failures));
        row.insert("active".into(), n(&self.active));
        row.insert("bytes_to_target".into(), n(&self.bytes_to_target));
        row.insert("bytes_from_target".into(), n(&self.bytes_from_target));
        row
    }
}

/// One `--serve PORT=proxy:...` listener: it exists so that every
/// processor serving that port relays to the same targets and counts into
/// the same per-target counters.
#[derive(Debug)]
pub struct ProxyService {
    targets: Vec<Arc<Target>>,
    opts: ProxyOptions,
}

impl ProxyService {
    /// A service relaying to `targets` (processor K to target K mod T).
    pub fn new(targets: Vec<SocketAddr>, opts: ProxyOptions) -> ProxyService {
        ProxyService {
            targets: targets
                .into_iter()
                .map(|a| Arc::new(Target::new(a)))
                .collect(),
            opts,
        }
    }

    /// The relay for a connection of processor K: to target K mod T.
    fn relay(&self, ctx: &AppContext) -> Result<Relay, Refused> {
        let Some(n) = ctx.processor.checked_rem(self.targets.len()) else {
            return Err(Refused("proxy: no targets".into()));
        };
        Ok(Relay::new(self.targets[n].clone(), &self.opts, ctx))
    }
}

impl Service for ProxyService {
    fn name(&self) -> &str {
        "proxy"
    }

    fn open(&self, ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        Ok(Box::new(self.relay(&ctx)?))
    }

    fn report(&self) -> Option<ServiceReport> {
        Some(ServiceReport {
            rows: self.targets.iter().map(|t| t.row()).collect(),
        })
    }
}

/// Where the back-end connection stands.
#[derive(Debug)]
enum Backend {
    /// Not asked for yet (the first poll connects).
    Idle,
    /// Connect issued, not accepted yet.
    Connecting(TcpStream),
    /// Accepted: bytes flow.
    Open(TcpStream),
    /// Done with: both directions ended, or it failed.
    Gone,
}

/// Holds a place in its target's `active` gauge while a relay is open.
#[derive(Debug)]
struct Active(Arc<Target>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One relayed connection: the app that pumps bytes between the client's
/// connection and its back-end socket (see the module doc).
#[derive(Debug)]
pub struct Relay {
    target: Arc<Target>,
    io: Io,
    /// When the back-end must have accepted by.
    deadline: Instant,
    backend: Backend,
    /// The PROXY header, or nothing; written before any client byte.
    preamble: Vec<u8>,
    /// How much of `preamble` the back-end has taken.
    preamble_sent: usize,
    /// Client bytes for the back-end.
    to_target: Ring,
    /// Back-end bytes for the client.
    to_client: Ring,
    /// The client's FIN was passed on (`shutdown(Write)` on the back-end).
    target_shut: bool,
    /// The back-end's EOF was read.
    target_eof: bool,
    /// The back-end's EOF was passed on (`close()`: our FIN).
    client_shut: bool,
    /// Held while the back-end connection is open.
    active: Option<Active>,
}

impl Relay {
    /// A relay to `target` for the connection `ctx` describes; it connects
    /// on its first poll.
    fn new(target: Arc<Target>, opts: &ProxyOptions, ctx: &AppContext) -> Relay {
        let preamble = opts
            .proxy_protocol
            .map(|v| header::encode(v, ctx.remote, ctx.local))
            .unwrap_or_default();
        Relay {
            target,
            io: ctx.io.clone(),
            deadline: Instant::now() + opts.connect_timeout,
            backend: Backend::Idle,
            preamble,
            preamble_sent: 0,
            to_target: Ring::new(TO_TARGET),
            to_client: Ring::new(TO_CLIENT),
            target_shut: false,
            target_eof: false,
            client_shut: false,
            active: None,
        }
    }

    /// Issues the non-blocking connect and has the processor watch it.
    fn connect(&mut self, sock: &mut dyn Socket) {
        let stream = match TcpStream::connect(self.target.addr) {
            Ok(s) => s,
            Err(_) => return self.connect_failed(sock),
        };
        // A relay adds no delay of its own (see `App::nagle` below).
        let _ = stream.set_nodelay(true);
        match self.io.watch(stream.as_raw_fd()) {
            // No event loop (a unit test): polling alone drives it.
            Err(e) if e.kind() != io::ErrorKind::Unsupported => {
                return self.connect_failed(sock);
            }
            _ => {}
        }
        self.backend = Backend::Connecting(stream);
    }

    /// Moves a connecting back-end on: accepted, refused, or out of time.
    fn check_connected(&mut self, sock: &mut dyn Socket) {
        let Backend::Connecting(stream) = &self.backend else {
            return;
        };
        match connect_result(stream) {
            Ok(true) => self.opened(),
            Ok(false) if Instant::now() < self.deadline => {}
            _ => self.connect_failed(sock),
        }
    }

    /// The back-end accepted: count it and start relaying.
    fn opened(&mut self) {
        let Backend::Connecting(stream) = std::mem::replace(&mut self.backend, Backend::Gone)
        else {
            return;
        };
        self.backend = Backend::Open(stream);
        self.target.connects.fetch_add(1, Ordering::Relaxed);
        self.target.active.fetch_add(1, Ordering::Relaxed);
        self.active = Some(Active(self.target.clone()));
    }

    /// The back-end could not be reached: the client is reset.
    fn connect_failed(&mut self, sock: &mut dyn Socket) {
        self.target.failures.fetch_add(1, Ordering::Relaxed);
        self.drop_backend(false);
        sock.abort();
    }

    /// Moves bytes both ways until nothing moves, then passes on the ends
    /// each side announced.
    fn relay(&mut self, sock: &mut dyn Socket) -> io::Result<()> {
        while self.pump_to_target(sock)? + self.pump_to_client(sock)? > 0 {}
        self.pass_client_fin(sock)?;
        self.pass_target_eof(sock);
        if self.target_shut && self.client_shut {
            self.drop_backend(false);
        }
        Ok(())
    }

    /// client → back-end: the PROXY header first, then what the client
    /// sent. Returns how many bytes moved (read or written).
    fn pump_to_target(&mut self, sock: &mut dyn Socket) -> io::Result<usize> {
        let Backend::Open(stream) = &mut self.backend else {
            return Ok(0);
        };
        let mut moved = write_preamble(stream, &self.preamble, &mut self.preamble_sent)?;
        if self.preamble_sent < self.preamble.len() {
            return Ok(moved);
        }
        moved += read_client(sock, &mut self.to_target);
        let written = write_ring(stream, &mut self.to_target)?;
        self.target
            .bytes_to_target
            .fetch_add(written as u64, Ordering::Relaxed);
        Ok(moved + written)
    }

    /// back-end → client: what the connection's send space takes, then
    /// as much of the back-end as the buffer holds. Returns how many bytes
    /// moved.
    fn pump_to_client(&mut self, sock: &mut dyn Socket) -> io::Result<usize> {
        let Backend::Open(stream) = &mut self.backend else {
            return Ok(0);
        };
        let mut moved = send_client(sock, &mut self.to_client);
        if !self.target_eof {
            let (n, eof) = read_ring(stream, &mut self.to_client)?;
            self.target_eof = eof;
            self.target
                .bytes_from_target
                .fetch_add(n as u64, Ordering::Relaxed);
            moved += n;
        }
        Ok(moved + send_client(sock, &mut self.to_client))
    }

    /// The client's FIN, once everything before it is written, becomes
    /// `shutdown(Write)` on the back-end.
    fn pass_client_fin(&mut self, sock: &mut dyn Socket) -> io::Result<()> {
        let Backend::Open(stream) = &self.backend else {
            return Ok(());
        };
        let flushed = self.preamble_sent == self.preamble.len() && self.to_target.is_empty();
        if self.target_shut || !flushed || !sock.peer_closed() || sock.recv_available() > 0 {
            return Ok(());
        }
        stream.shutdown(Shutdown::Write)?;
        self.target_shut = true;
        Ok(())
    }

    /// The back-end's EOF, once everything read is sent, becomes our FIN.
    /// When the client has closed already, our FIN waits until the
    /// client's bytes are all written: the FIN would end the connection
    /// (and this app with it) at once.
    fn pass_target_eof(&mut self, sock: &mut dyn Socket) {
        let client_pending = sock.peer_closed() && !self.target_shut;
        if self.client_shut || !self.target_eof || !self.to_client.is_empty() || client_pending {
            return;
        }
        sock.close();
        self.client_shut = true;
    }

    /// A back-end error resets the client, and the relay ends.
    fn target_failed(&mut self, sock: &mut dyn Socket) {
        self.drop_backend(false);
        sock.abort();
    }

    /// Stops watching the back-end and closes it (with `reset`, with RST),
    /// and frees the buffers.
    fn drop_backend(&mut self, reset: bool) {
        let old = std::mem::replace(&mut self.backend, Backend::Gone);
        if let Backend::Connecting(s) | Backend::Open(s) = old {
            let _ = self.io.unwatch(s.as_raw_fd());
            if reset {
                set_linger_zero(&s);
            }
        }
        self.to_target.release();
        self.to_client.release();
        self.active = None;
    }
}

/// Whether a non-blocking connect has completed: Ok(true) accepted,
/// Ok(false) still under way, Err refused or failed (as mio's
/// `TcpStream::connect` documents).
fn connect_result(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes what is left of `preamble`; returns how many bytes went.
fn write_preamble(stream: &mut TcpStream, preamble: &[u8], sent: &mut usize) -> io::Result<usize> {
    let start = *sent;
    while *sent < preamble.len() {
        match stream.write(&preamble[*sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(*sent - start)
}

/// Reads the client into `ring` while both have something; returns how
/// many bytes.
fn read_client(sock: &mut dyn Socket, ring: &mut Ring) -> usize {
    let mut total = 0;
    while ring.room() > 0 && sock.recv_available() > 0 {
        let [free, _] = ring.free_mut();
        let n = sock.recv(free);
        if n == 0 {
            break;
        }
        ring.commit(n);
        total += n;
    }
    total
}

/// Sends `ring` to the client as far as its send space goes; returns how
/// many bytes.
fn send_client(sock: &mut dyn Socket, ring: &mut Ring) -> usize {
    let mut total = 0;
    while !ring.is_empty() && sock.send_capacity() > 0 {
        let [held, _] = ring.filled();
        let n = sock.send(held);
        if n == 0 {
            break;
        }
        ring.consume(n);
        total += n;
    }
    total
}

/// Writes `ring` to the back-end until it is empty or the write would
/// block; returns how many bytes.
fn write_ring(stream: &mut TcpStream, ring: &mut Ring) -> io::Result<usize> {
    let mut total = 0;
    while !ring.is_empty() {
        let [a, b] = ring.filled();
        match stream.write_vectored(&[IoSlice::new(a), IoSlice::new(b)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                ring.consume(n);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Reads the back-end into `ring` until it is full or the read would
/// block; returns how many bytes, and whether the back-end's EOF came.
fn read_ring(stream: &mut TcpStream, ring: &mut Ring) -> io::Result<(usize, bool)> {
    let mut total = 0;
    while ring.room() > 0 {
        let [a, b] = ring.free_mut();
        match stream.read_vectored(&mut [IoSliceMut::new(a), IoSliceMut::new(b)]) {
            Ok(0) => return Ok((total, true)),
            Ok(n) => {
                ring.commit(n);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((total, false))
}

/// `SO_LINGER {on, 0}`: closing the socket then sends RST, not FIN.
fn set_linger_zero(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor, and a pointer to a `linger` of
    // the length given, which setsockopt only reads.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

impl App for Relay {
    fn poll(&mut self, sock: &mut dyn Socket) {
        if matches!(self.backend, Backend::Idle) {
            self.connect(sock);
        }
        if matches!(self.backend, Backend::Connecting(_)) {
            self.check_connected(sock);
        }
        if matches!(self.backend, Backend::Open(_)) && self.relay(sock).is_err() {
            self.target_failed(sock);
        }
    }

    /// Off. A relay forwards bytes as they come: the back-end (and the
    /// client's own stack) already chose how to cut them, and a read of up
    /// to 64 KiB gathers whatever the back-end wrote meanwhile. Nagle
    /// here would only add a wait on request/response traffic: a reply's
    /// last, short segment held until the client acknowledges the one
    /// before, which the client's delayed ACK makes up to 40 ms (Linux)
    /// or 200 ms. Bulk transfers do not need it (full segments leave
    /// regardless), and a back-end that writes in dribbles gets them
    /// coalesced in the relay buffer whenever the client is slower.
    fn nagle(&self) -> bool {
        false
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.backend {
            Backend::Idle | Backend::Connecting(_) => Some(self.deadline),
            Backend::Open(_) | Backend::Gone => None,
        }
    }

    fn on_closed(&mut self, reason: CloseReason) {
        let reset = !matches!(reason, CloseReason::Normal);
        self.drop_backend(reset);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.drop_backend(false);
    }
}

#[cfg(test)]
mod tests;
