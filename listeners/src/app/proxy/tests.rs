//! The relay against real kernel back-ends on 127.0.0.1 of the test
//! process, with a [`FakeSocket`] as the client's connection and a real
//! epoll (as a processor's) to wake it.

use super::*;
use crate::app::echo::test_socket::FakeSocket;
use crate::stats::Registry;
use std::net::{TcpListener, TcpStream as StdStream};
use std::os::fd::FromRawFd;

/// The longest any step may take before a test gives up.
const PATIENCE: Duration = Duration::from_secs(20);

/// The client's and the virtual IP's addresses the relay is told about.
const CLIENT: &str = "10.0.0.1:40000";
const VIRTUAL: &str = "10.0.0.2:80";

fn context(poll: &mio::Poll, processor: usize, conn: u64) -> AppContext {
    let registry = Arc::new(Registry::new("monolithic", "round-robin", processor + 1));
    let mut ctx = AppContext::detached(processor, conn, registry);
    ctx.local = VIRTUAL.parse().expect("addr");
    ctx.remote = CLIENT.parse().expect("addr");
    let io = poll.registry().try_clone().expect("registry");
    ctx.io = Io::new(Arc::new(io), conn);
    ctx
}

fn service(targets: &[SocketAddr], opts: ProxyOptions) -> ProxyService {
    ProxyService::new(targets.to_vec(), opts)
}

/// A kernel listener on 127.0.0.1 and its address.
fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

/// Accepts one connection (blocking, bounded) with read and write
/// timeouts set.
fn accept(l: &TcpListener) -> StdStream {
    l.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + PATIENCE;
    let s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "nothing connected");
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    s.set_write_timeout(Some(PATIENCE)).expect("timeout");
    s
}

fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 997 + seed) as u8).collect()
}

/// A relay on a fake client connection, woken by a real epoll as in a
/// processor. Each turn gives the connection `window` bytes of send
/// space (what the client's ACKs would have freed) and polls.
struct Rig {
    poll: mio::Poll,
    events: mio::Events,
    svc: ProxyService,
    app: Relay,
    sock: FakeSocket,
    window: usize,
}

impl Rig {
    fn new(targets: &[SocketAddr], opts: ProxyOptions) -> Rig {
        Rig::on_processor(targets, opts, 0)
    }

    fn on_processor(targets: &[SocketAddr], opts: ProxyOptions, processor: usize) -> Rig {
        let poll = mio::Poll::new().expect("poll");
        let svc = service(targets, opts);
        let app = svc.relay(&context(&poll, processor, 7)).expect("a target");
        Rig {
            poll,
            events: mio::Events::with_capacity(16),
            svc,
            app,
            sock: FakeSocket::new(0),
            window: 1 << 20,
        }
    }

    /// Polls the app, then waits (briefly) for its descriptors.
    fn turn(&mut self) {
        if !self.sock.closed() {
            self.sock.capacity = self.window;
        }
        self.app.poll(&mut self.sock);
        let _ = self
            .poll
            .poll(&mut self.events, Some(Duration::from_millis(10)));
    }

    fn run_until(&mut self, what: &str, done: impl Fn(&Rig) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            self.turn();
        }
    }

    /// Turns until `value` stays the same for 30 turns in a row.
    fn run_until_still(&mut self, value: impl Fn(&Rig) -> u64) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        let (mut last, mut still) = (value(self), 0);
        while still < 30 {
            assert!(Instant::now() < deadline, "never settled");
            self.turn();
            let v = value(self);
            still = if v == last { still + 1 } else { 0 };
            last = v;
        }
        last
    }

    fn row(&self, i: usize) -> serde_json::Map<String, serde_json::Value> {
        self.svc.report().expect("report").rows.remove(i)
    }

    fn counter(&self, i: usize, name: &str) -> u64 {
        self.row(i)[name].as_u64().expect("a number")
    }
}

fn to_target(r: &Rig) -> u64 {
    r.counter(0, "bytes_to_target")
}

fn from_target(r: &Rig) -> u64 {
    r.counter(0, "bytes_from_target")
}

/// Reads everything until EOF on a thread; returns the bytes.
fn read_all_on_thread(mut s: StdStream) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        s.read_to_end(&mut v).expect("back-end read");
        v
    })
}

// ----- the targets list -------------------------------------------------

#[test]
fn parse_targets_takes_ipv4_and_bracketed_ipv6_lists() {
    let t = parse_targets("127.0.0.1:8080,[::1]:8081").expect("good list");
    assert_eq!(
        t,
        vec![
            "127.0.0.1:8080".parse::<SocketAddr>().expect("a"),
            "[::1]:8081".parse().expect("a"),
        ]
    );
    assert_eq!(parse_targets(" 10.0.0.9:80 ").expect("one").len(), 1);
}

#[test]
fn parse_targets_names_the_bad_piece_in_one_line() {
    let cases = [
        ("", "no target"),
        ("127.0.0.1:80,", "empty target"),
        ("127.0.0.1", "\"127.0.0.1\" has no port"),
        ("::1:80", "\"::1:80\": an IPv6 address goes in brackets"),
        ("localhost:80", "\"localhost:80\" is not ADDR:PORT"),
        ("127.0.0.1:80,10.0.0.1:99999", "\"10.0.0.1:99999\""),
        ("127.0.0.1:0", "port 0"),
    ];
    for (input, want) in cases {
        let e = parse_targets(input).expect_err(input);
        assert!(e.contains(want), "{input:?} gave {e:?}, wanted {want:?}");
        assert!(!e.contains('\n'), "one line: {e:?}");
    }
}

#[test]
fn protocol_names_round_trip() {
    for p in [ProxyProtocol::V1, ProxyProtocol::V2] {
        assert_eq!(ProxyProtocol::from_name(p.name()), Some(p));
    }
    assert_eq!(ProxyProtocol::from_name("v3"), None);
    let d = ProxyOptions::default();
    assert_eq!(d.proxy_protocol, None);
    assert_eq!(d.connect_timeout, Duration::from_secs(3));
}

// ----- the service ------------------------------------------------------

#[test]
fn processor_k_relays_to_target_k_mod_t_and_reports_a_row_per_target() {
    let (l0, a0) = listener();
    let (l1, a1) = listener();
    let poll = mio::Poll::new().expect("poll");
    let svc = service(&[a0, a1], ProxyOptions::default());
    assert_eq!(svc.name(), "proxy");
    let mut sock = FakeSocket::new(1 << 16);
    let mut apps: Vec<Box<dyn App>> = (0..4)
        .map(|k| svc.open(context(&poll, k, k as u64 + 1)).expect("open"))
        .collect();
    for app in &mut apps {
        assert!(!app.nagle(), "a relay turns Nagle off");
        app.poll(&mut sock);
    }
    assert!(!sock.aborted);
    for (l, k) in [(&l0, 0), (&l1, 1), (&l0, 2), (&l1, 3)] {
        let s = accept(l);
        // The PROXY-less stream has nothing to say; the peer is the relay.
        assert!(s.peer_addr().is_ok(), "connection of processor {k}");
    }
    for app in &mut apps {
        app.poll(&mut sock);
    }
    let rows = svc.report().expect("report").rows;
    assert_eq!(rows.len(), 2);
    for (row, addr) in rows.iter().zip([a0, a1]) {
        assert_eq!(row["target"], addr.to_string());
        assert_eq!(row["connects"], 2, "{row:?}");
        assert_eq!(row["active"], 2, "{row:?}");
        assert_eq!(row["failures"], 0);
        assert_eq!(row["bytes_to_target"], 0);
        assert_eq!(row["bytes_from_target"], 0);
    }
    drop(apps);
    let rows = svc.report().expect("report").rows;
    assert!(rows.iter().all(|r| r["active"] == 0), "{rows:?}");
}

#[test]
fn a_proxy_without_targets_refuses() {
    let poll = mio::Poll::new().expect("poll");
    let svc = service(&[], ProxyOptions::default());
    assert!(svc.open(context(&poll, 0, 1)).is_err());
}

// ----- relaying ---------------------------------------------------------

#[test]
fn bytes_go_both_ways_intact_then_both_ends_close() {
    let (l, addr) = listener();
    let mut rig = Rig::new(&[addr], ProxyOptions::default());
    rig.window = 10_000;
    let up = pattern(3 << 20, 1);
    let down = pattern(2 << 20, 2);
    rig.sock.push(&up);
    rig.sock.peer_fin = true;
    rig.turn();
    let back = accept(&l);
    let mut w = back.try_clone().expect("clone");
    let want_down = down.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&want_down).expect("back-end write");
        w.shutdown(Shutdown::Write).expect("back-end FIN");
    });
    let reader = read_all_on_thread(back);
    let mut got = Vec::new();
    while !rig.sock.closed() || rig.app.active.is_some() {
        rig.turn();
        got.extend(rig.sock.take_tx());
        assert!(rig.app.to_client.len() <= TO_CLIENT);
        assert!(rig.app.to_target.len() <= TO_TARGET);
        assert!(!rig.sock.aborted);
    }
    writer.join().expect("writer");
    assert_eq!(reader.join().expect("reader"), up, "client to back-end");
    assert_eq!(got, down, "back-end to client");
    assert_eq!(rig.sock.close_calls, 1);
    assert_eq!(to_target(&rig), up.len() as u64);
    assert_eq!(from_target(&rig), down.len() as u64);
    assert_eq!(rig.counter(0, "connects"), 1);
    assert_eq!(rig.counter(0, "active"), 0, "both directions done");
    assert!(matches!(rig.app.backend, Backend::Gone));
}

#[test]
fn a_slow_client_stops_the_relay_reading_the_target() {
    let (l, addr) = listener();
    let mut rig = Rig::new(&[addr], ProxyOptions::default());
    rig.window = 0;
    rig.turn();
    let mut back = accept(&l);
    back.set_nonblocking(true).expect("nonblocking");
    let data = pattern(32 << 20, 3);
    // Fill everything between the back-end and the relay.
    let mut written = 0;
    let deadline = Instant::now() + PATIENCE;
    let mut full_turns = 0;
    while full_turns < 30 {
        assert!(Instant::now() < deadline);
        match back.write(&data[written..]) {
            Ok(n) => {
                written += n;
                full_turns = 0;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => full_turns += 1,
            Err(e) => panic!("back-end write: {e}"),
        }
        rig.turn();
    }
    assert!(written < data.len(), "the kernel's buffers took it all");
    assert_eq!(
        from_target(&rig),
        TO_CLIENT as u64,
        "no send space: the relay reads one buffer and stops"
    );
    assert!(rig.sock.tx.is_empty());
    // A trickle of send space: the relay never holds more than its buffer.
    let mut got = Vec::new();
    rig.window = 1000;
    for _ in 0..20 {
        rig.turn();
        got.extend(rig.sock.take_tx());
        assert!(from_target(&rig) - got.len() as u64 <= TO_CLIENT as u64);
    }
    assert_eq!(got.len(), 20 * 1000);
    // Send space again: the rest comes, in order (the relay resumes
    // reading the back-end although no new readiness edge came).
    rig.window = 1 << 20;
    back.set_nonblocking(false).expect("blocking");
    let rest = data[written..].to_vec();
    let writer = std::thread::spawn(move || {
        back.write_all(&rest).expect("back-end write");
        back.shutdown(Shutdown::Write).expect("FIN");
        back
    });
    while !rig.sock.closed() {
        assert!(!rig.sock.aborted);
        rig.turn();
        got.extend(rig.sock.take_tx());
        if rig.sock.closed() {
            break;
        }
        if got.len() == data.len() {
            rig.sock.peer_fin = true; // the client is done too
        }
    }
    let _back = writer.join().expect("writer");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes intact and in order");
}

#[test]
fn a_target_that_does_not_read_closes_the_client_window() {
    let (l, addr) = listener();
    let mut rig = Rig::new(&[addr], ProxyOptions::default());
    let data = pattern(48 << 20, 4);
    rig.sock.push(&data);
    rig.turn();
    let back = accept(&l);
    let taken = rig.run_until_still(|r| (data.len() - r.sock.rx.len()) as u64);
    assert!(
        !rig.sock.rx.is_empty(),
        "the relay stopped calling recv, so the client's window closes"
    );
    let relayed = to_target(&rig);
    assert_eq!(taken, relayed + rig.app.to_target.len() as u64);
    assert_eq!(rig.app.to_target.len(), TO_TARGET, "one full buffer held");
    // The back-end reads at last: everything arrives, in order.
    rig.sock.peer_fin = true;
    let reader = read_all_on_thread(back);
    rig.run_until("client FIN passed on", |r| r.app.target_shut);
    assert!(reader.join().expect("reader") == data, "bytes intact");
}

#[test]
fn the_client_fin_becomes_a_target_shutdown_and_the_reply_still_flows() {
    let (l, addr) = listener();
    let mut rig = Rig::new(&[addr], ProxyOptions::default());
    rig.sock.push(b"GET / HTTP/1.0\r\n\r\n");
    rig.sock.peer_fin = true;
    rig.turn();
    let mut back = accept(&l);
    let mut req = Vec::new();
    // read_to_end returns only on the relay's shutdown(Write).
    let reader = std::thread::spawn(move || {
        back.read_to_end(&mut req).expect("read request");
        (back, req)
    });
    rig.run_until("shutdown(Write) on the back-end", |r| r.app.target_shut);
    let (mut back, req) = reader.join().expect("reader");
    assert_eq!(req, b"GET / HTTP/1.0\r\n\r\n");
    assert!(!rig.sock.closed(), "the other direction is still open");
    let reply = pattern(1 << 20, 5);
    back.write_all(&reply).expect("reply");
    drop(back);
    let mut got = Vec::new();
    while !rig.sock.closed() {
        rig.turn();
        got.extend(rig.sock.take_tx());
    }
    assert_eq!(got, reply);
    assert_eq!(rig.counter(0, "active"), 0);
}

#[test]
fn the_target_eof_becomes_our_fin_and_the_client_may_go_on_sending() {
    let (l, addr) = listener();
    let mut rig = Rig::new(&[addr], ProxyOptions::default());
    rig.turn();
    let mut back = accept(&l);
    back.write_all(b"220 hello\r\n").expect("greeting");
    back.shutdown(Shutdown::Write).expect("back-end FIN");
    rig.run_until("our FIN", |r| r.sock.closed());
    assert_eq!(rig.sock.take_tx(), b"220 hello\r\n");
    assert!(rig.app.active.is_some(), "client to back-end still open");
    let more = pattern(300_000, 6);
    rig.sock.push(&more);
    rig.turn();
    rig.turn();
    rig.sock.peer_fin = true;
    let reader = read_all_on_thread(back);
    rig.run_until("both directions done", |r| r.app.active.is_none());
    assert_eq!(reader.join().expect("reader"), more);
    assert_eq!(rig.sock.close_calls, 1);
    assert!(!rig.sock.aborted);
}

#[test]
fn our_fin_waits_for_the_client_bytes_when_the_client_closed_first() {
    let (l, addr) = listener();
    let mut rig = Rig::new(&[addr], ProxyOptions::default());
    let data = pattern(20 << 20, 7);
    rig.sock.push(&data);
    rig.sock.peer_fin = true;
    rig.turn();
    let mut back = accept(&l);
    back.shutdown(Shutdown::Write).expect("back-end FIN first");
    // The back-end is not reading: the client's bytes wait in the relay,
    // and so does our FIN (it would end the connection, and the relay).
    rig.run_until_still(to_target);
    assert!(!rig.sock.closed(), "FIN held while client bytes wait");
    let reader = read_all_on_thread(back);
    rig.run_until("our FIN", |r| r.sock.closed());
    assert!(
        rig.app.target_shut,
        "client's bytes and FIN passed on first"
    );
    assert!(reader.join().expect("reader") == data);
}

#[test]
fn proxy_headers_come_first_with_the_client_address() {
    for (version, want) in [
        (
            ProxyProtocol::V1,
            b"PROXY TCP4 10.0.0.1 10.0.0.2 40000 80\r\n".to_vec(),
        ),
        (
            ProxyProtocol::V2,
            [
                &header::V2_SIGNATURE[..],
                &[
                    0x21, 0x11, 0, 12, 10, 0, 0, 1, 10, 0, 0, 2, 0x9c, 0x40, 0, 80,
                ],
            ]
            .concat(),
        ),
    ] {
        let (l, addr) = listener();
        let opts = ProxyOptions {
            proxy_protocol: Some(version),
            ..ProxyOptions::default()
        };
        let mut rig = Rig::new(&[addr], opts);
        rig.sock.push(b"hello");
        rig.sock.peer_fin = true;
        rig.turn();
        let reader = read_all_on_thread(accept(&l));
        rig.run_until("FIN passed on", |r| r.app.target_shut);
        let got = reader.join().expect("reader");
        assert_eq!(got, [&want[..], b"hello"].concat(), "{version:?}");
        assert_eq!(to_target(&rig), 5, "the header is not client bytes");
    }
}

// ----- failures and resets ------------------------------------------------

#[test]
fn a_refused_connect_resets_the_client_and_counts_a_failure() {
    let (l, addr) = listener();
    drop(l);
    let mut rig = Rig::new(&[addr], ProxyOptions::default());
    rig.sock.push(b"anyone there?");
    rig.run_until("client reset", |r| r.sock.aborted);
    assert_eq!(rig.counter(0, "failures"), 1);
    assert_eq!(rig.counter(0, "connects"), 0);
    assert_eq!(rig.counter(0, "active"), 0);
    assert_eq!(rig.app.poll_timeout(), None);
    assert!(rig.sock.tx.is_empty());
}

/// A listener whose accept queue is full (backlog 0, one connection
/// waiting): the kernel drops further SYNs, so a connect hangs.
fn full_listener() -> (TcpListener, SocketAddr, Vec<TcpStream>) {
    // SAFETY: plain socket calls on a descriptor we own; it is handed to
    // a TcpListener (which closes it) right away.
    let l = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        TcpListener::from_raw_fd(fd)
    };
    let any = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid socket and a sockaddr_in of the length given.
    let r = unsafe {
        libc::bind(
            l.as_raw_fd(),
            (&any as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "bind");
    // SAFETY: a bound socket.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0, "listen");
    let addr = l.local_addr().expect("addr");
    let fillers: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    (l, addr, fillers)
}

#[test]
fn a_target_that_does_not_accept_in_time_resets_the_client() {
    let (_l, addr, _fillers) = full_listener();
    let opts = ProxyOptions {
        connect_timeout: Duration::from_millis(300),
        ..ProxyOptions::default()
    };
    let start = Instant::now();
    let mut rig = Rig::new(&[addr], opts);
    let deadline = rig.app.poll_timeout().expect("a connect deadline");
    assert!(deadline <= start + Duration::from_millis(300) + Duration::from_millis(50));
    rig.turn();
    assert!(
        matches!(rig.app.backend, Backend::Connecting(_)),
        "the connect hangs"
    );
    rig.run_until("client reset", |r| r.sock.aborted);
    assert!(Instant::now() >= deadline, "not before the deadline");
    assert_eq!(rig.counter(0, "failures"), 1);
    assert_eq!(rig.counter(0, "connects"), 0);
}

#[test]
fn a_target_reset_resets_the_client() {
    let (l, addr) = listener();
    let mut rig = Rig::new(&[addr], ProxyOptions::default());
    rig.turn();
    let back = accept(&l);
    rig.run_until("connected", |r| r.app.active.is_some());
    assert_eq!(rig.counter(0, "active"), 1);
    set_linger_zero(&TcpStream::from_std(back.try_clone().expect("clone")));
    drop(back);
    rig.run_until("client reset", |r| r.sock.aborted);
    assert!(!rig.sock.closed(), "a reset, not a FIN");
    assert_eq!(rig.counter(0, "active"), 0);
}

#[test]
fn a_client_reset_resets_the_target() {
    for reason in [
        CloseReason::Reset,
        CloseReason::Aborted,
        CloseReason::TimedOut,
    ] {
        let (l, addr) = listener();
        let mut rig = Rig::new(&[addr], ProxyOptions::default());
        rig.sock.push(b"partial request");
        rig.turn();
        let mut back = accept(&l);
        rig.run_until("request relayed", |r| to_target(r) == 15);
        let mut buf = [0u8; 15];
        back.read_exact(&mut buf).expect("first bytes");
        rig.app.on_closed(reason);
        let r = back.read(&mut [0u8; 16]);
        assert_eq!(
            r.map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::ConnectionReset),
            "{reason:?}"
        );
        assert_eq!(rig.counter(0, "active"), 0);
    }
}

#[test]
fn a_clean_close_closes_the_target_with_fin() {
    let (l, addr) = listener();
    let mut rig = Rig::new(&[addr], ProxyOptions::default());
    rig.turn();
    let mut back = accept(&l);
    rig.app.on_closed(CloseReason::Normal);
    let mut v = Vec::new();
    assert_eq!(back.read_to_end(&mut v).expect("EOF, not a reset"), 0);
}
