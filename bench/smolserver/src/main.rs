//! The smoltcp reference server of bench/run.sh: smoltcp (from crates.io)
//! on a TAP of its own, in one thread, serving what vnic serves by default
//! on the same ports (7 echo, 9 discard, 19 chargen, 80 http). The apps
//! are vnic's own (`vnic_listeners::app`), driven through an
//! [`app::Socket`](Socket) made of a smoltcp socket, so both servers put
//! the same bytes on the wire (the HTTP reply included, byte for byte in
//! size) and only the TCP and the loop around it differ.
//!
//! ```text
//! smolserver TAP ADDR/PREFIX     (the TAP exists, is up, and has the host's address)
//! ```
//!
//! Prints `smolserver: ready ...` on stdout once it answers; runs until
//! killed.
//!
//! smoltcp needs one socket, with its buffers, per connection. The server
//! keeps [`SPARE`] listening sockets per port: one that takes a connection
//! is replaced at the end of the round; one whose connection is over
//! (CLOSED, or TIME-WAIT, which the server skips: the socket listens again
//! once the round that found it there has sent the ACK of the peer's FIN)
//! listens again, or is dropped when its port already has
//! [`TRIM`] listening. A round reads at most [`SPARE`] frames from the
//! TAP, so a burst of SYNs never finds its port without a listening socket
//! (smoltcp would answer that SYN with RST).
//!
//! Buffers: 256 KiB to receive and 256 KiB to send per socket, vnic's
//! defaults (`vnic_stack::Config`). They are allocated whole (smoltcp's
//! windows are fixed at the SYN), as fresh zero pages (`mmap`, forced for
//! anything over 128 KiB), so a page counts in the resident memory only
//! once data has passed through it.
//!
//! Left at smoltcp's defaults: no TCP timestamps, a 10 ms delayed ACK, no
//! SACK blocks sent; congestion control is CUBIC, as vnic's. Nagle's
//! algorithm follows the app, as in vnic (off for echo and http).

use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::phy::{wait, Medium, TunTapInterface};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, Ipv4Address};
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use vnic_listeners::app::{App, AppContext, AppKind, CloseReason, Socket};
use vnic_listeners::stats::Registry;

/// What is served where: vnic's default `--serve` list.
const SERVICES: [(u16, AppKind); 4] = [
    (7, AppKind::Echo),
    (9, AppKind::Discard),
    (19, AppKind::Chargen),
    (80, AppKind::Http),
];
/// Bytes of each socket's receive buffer and of its send buffer.
const BUFFER: usize = 256 * 1024;
/// Listening sockets kept per port, and frames read per round.
const SPARE: usize = 16;
/// A port with this many listening sockets drops the next one that would
/// listen again, so a burst of connections leaves no lasting pool behind
/// (every poll walks every socket).
const TRIM: usize = 4 * SPARE;

/// One connection's app, and what its socket looked like when the app
/// was last polled.
struct Conn {
    app: Box<dyn App>,
    /// State, bytes waiting to be read, bytes queued to send: the app is
    /// polled again only once one of them moved.
    seen: (State, usize, usize),
}

/// One smoltcp socket of the pool.
struct Slot {
    handle: SocketHandle,
    /// Index into [`SERVICES`].
    service: usize,
    /// Counted among its port's listening sockets.
    listening: bool,
    conn: Option<Conn>,
    /// Seen in TIME-WAIT by an earlier round, whose egress has sent the
    /// ACK of the peer's FIN since. Listening again in the very round the
    /// FIN came lost that ACK: the client's kernel sat in LAST-ACK and
    /// sent its FIN again after a retransmission timeout, which the server
    /// answered with RST, and each connection cost the server one frame
    /// fewer than a correct close (vnic's, the kernel's).
    time_wait_seen: bool,
}

/// The pool of sockets and the apps on them.
struct Server {
    slots: Vec<Slot>,
    /// Listening sockets per service.
    listening: [usize; SERVICES.len()],
    /// The connection numbers and the labels vnic's http app reports.
    registry: Arc<Registry>,
}

/// A smoltcp socket as vnic's apps see a connection.
struct Sock<'a, 'b>(&'a mut tcp::Socket<'b>);

/// Whether the peer's FIN (or RST) has come.
fn peer_closed(state: State) -> bool {
    matches!(
        state,
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait | State::Closed
    )
}

impl Socket for Sock<'_, '_> {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.0.recv_slice(buf).unwrap_or(0)
    }
    fn recv_available(&self) -> usize {
        self.0.recv_queue()
    }
    fn send(&mut self, data: &[u8]) -> usize {
        self.0.send_slice(data).unwrap_or(0)
    }
    fn send_capacity(&self) -> usize {
        if self.0.may_send() {
            self.0.send_capacity() - self.0.send_queue()
        } else {
            0
        }
    }
    fn peer_closed(&self) -> bool {
        peer_closed(self.0.state())
    }
    fn close(&mut self) {
        self.0.close();
    }
    fn abort(&mut self) {
        self.0.abort();
    }
}

impl Server {
    fn new() -> Server {
        Server {
            slots: Vec::new(),
            listening: [0; SERVICES.len()],
            registry: Arc::new(Registry::new("monolithic", "round-robin", 1)),
        }
    }

    /// Tops every port up to [`SPARE`] listening sockets.
    fn refill(&mut self, sockets: &mut SocketSet<'static>) {
        for (service, &(port, _)) in SERVICES.iter().enumerate() {
            while self.listening[service] < SPARE {
                let mut s = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0u8; BUFFER]),
                    tcp::SocketBuffer::new(vec![0u8; BUFFER]),
                );
                // A fresh socket and a port that is not 0: cannot fail.
                if s.listen(port).is_err() {
                    break;
                }
                self.slots.push(Slot {
                    handle: sockets.add(s),
                    service,
                    listening: true,
                    conn: None,
                    time_wait_seen: false,
                });
                self.listening[service] += 1;
            }
        }
    }

    /// One pass over the pool: opens an app for each new connection, polls
    /// the apps whose sockets moved, and takes back the sockets whose
    /// connections are over.
    fn serve(&mut self, sockets: &mut SocketSet<'static>) {
        let Server {
            slots,
            listening,
            registry,
        } = self;
        let mut i = 0;
        while i < slots.len() {
            let slot = &mut slots[i];
            let (port, kind) = SERVICES[slot.service];
            let s = sockets.get_mut::<tcp::Socket>(slot.handle);
            let state = s.state();
            if state == State::Listen {
                // Still listening, or listening again (smoltcp turns a
                // SYN-RECEIVED socket that gets RST back into LISTEN).
                if !slot.listening {
                    slot.listening = true;
                    listening[slot.service] += 1;
                }
                i += 1;
                continue;
            }
            if slot.listening {
                slot.listening = false;
                listening[slot.service] -= 1;
            }
            if slot.conn.is_none() && matches!(state, State::Established | State::CloseWait) {
                let mut ctx =
                    AppContext::detached(0, registry.connection_number(), registry.clone());
                if let (Some(local), Some(remote)) = (s.local_endpoint(), s.remote_endpoint()) {
                    ctx.local = SocketAddr::from(local);
                    ctx.remote = SocketAddr::from(remote);
                }
                let app = kind.instantiate(ctx);
                s.set_nagle_enabled(app.nagle());
                slot.conn = Some(Conn {
                    app,
                    seen: (State::Listen, 0, 0),
                });
            }
            let mut last = state;
            if let Some(conn) = &mut slot.conn {
                last = conn.seen.0;
                if conn.seen != (state, s.recv_queue(), s.send_queue()) {
                    conn.app.poll(&mut Sock(s));
                    conn.seen = (s.state(), s.recv_queue(), s.send_queue());
                }
            }
            // Over: TIME-WAIT (skipped), or CLOSED once the RST of an
            // abort, if any, has gone out (it forgets the peer then).
            let state = s.state();
            let acked_fin = state == State::TimeWait && slot.time_wait_seen;
            slot.time_wait_seen = state == State::TimeWait;
            if !(acked_fin || (state == State::Closed && s.remote_endpoint().is_none())) {
                i += 1;
                continue;
            }
            slot.time_wait_seen = false;
            if let Some(mut conn) = slot.conn.take() {
                let normal =
                    state == State::TimeWait || matches!(last, State::LastAck | State::Closing);
                conn.app.on_closed(if normal {
                    CloseReason::Normal
                } else {
                    CloseReason::Reset
                });
            }
            if listening[slot.service] >= TRIM || s.listen(port).is_err() {
                let gone = slots.swap_remove(i);
                sockets.remove(gone.handle);
                continue;
            }
            slot.listening = true;
            listening[slot.service] += 1;
            i += 1;
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: smolserver TAP ADDR/PREFIX");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, tap, cidr] = args.as_slice() else {
        usage()
    };
    let (addr, prefix) = cidr.split_once('/').unwrap_or_else(|| usage());
    let addr: Ipv4Address = addr.parse().unwrap_or_else(|_| usage());
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .unwrap_or_else(|| usage());

    // Buffers over 128 KiB come from mmap, always (glibc would otherwise
    // raise the threshold after the first free and serve them from the
    // heap, memset and resident).
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }

    let mut device = TunTapInterface::new(tap, Medium::Ethernet).unwrap_or_else(|e| {
        eprintln!("smolserver: TAP {tap}: {e}");
        std::process::exit(1)
    });
    let fd = device.as_raw_fd();
    let mut config = Config::new(EthernetAddress([0x02, 0x00, 0x5b, 0x00, 0x00, 0x02]).into());
    config.random_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let mut iface = Interface::new(config, &mut device, Instant::now());
    iface.update_ip_addrs(|addrs| {
        // An empty list has room for one address.
        let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(addr), prefix));
    });
    let mut sockets = SocketSet::new(Vec::new());
    let mut server = Server::new();
    server.refill(&mut sockets);
    println!("smolserver: ready tap={tap} ip={addr} buffer={BUFFER} spare={SPARE}");
    let _ = std::io::stdout().flush();

    loop {
        let now = Instant::now();
        let mut frames = 0;
        while frames < SPARE
            && iface.poll_ingress_single(now, &mut device, &mut sockets)
                != PollIngressSingleResult::None
        {
            frames += 1;
        }
        server.serve(&mut sockets);
        server.refill(&mut sockets);
        while iface.poll_egress(now, &mut device, &mut sockets) == PollResult::SocketStateChanged {}
        if frames == SPARE {
            // More frames may be waiting.
            continue;
        }
        let delay = iface.poll_delay(Instant::now(), &sockets);
        // An interrupted wait only starts the next round early.
        let _ = wait(fd, delay);
    }
}
