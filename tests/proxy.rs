//! Issue: `--serve PORT=proxy:ADDR:PORT[,...]` relays each connection to a
//! real server (processor K to target K mod T), both ways, with
//! back-pressure, half-close and resets passed on, and optionally the
//! HAProxy PROXY protocol header first. The clients are the kernel's TCP
//! inside the test's own namespace, and so are the back-ends: servers on
//! 127.0.0.1 / ::1 of that namespace, which vnic (running there too)
//! connects to. No traffic leaves the namespace.

mod common;

use common::{can_run, echo_through, random_bytes, rss_kib, Netns};
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any one step may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// The first back-end's address inside the namespace.
const A: &str = "127.0.0.1:8080";
/// The second back-end's.
const B: &str = "127.0.0.1:8081";

/// Runs `f` on a thread that joined the namespace (like [`Netns::run`],
/// without waiting for it).
fn spawn_in<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = format!("/var/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        // SAFETY: a valid namespace fd; affects only this thread (and the
        // threads it starts).
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let a: SocketAddr = addr.parse().expect("addr");
    let s = TcpStream::connect_timeout(&a, Duration::from_secs(5))?;
    s.set_read_timeout(Some(PATIENCE))?;
    s.set_write_timeout(Some(PATIENCE))?;
    Ok(s)
}

/// Closes `s` with RST (SO_LINGER {on, 0}).
fn reset(s: TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on our own socket with a valid linger struct.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(s);
}

/// What a back-end does with one accepted connection: the stream, its
/// number (0, 1, ... per back-end) and the back-end's stop flag, which a
/// handler that waits must watch.
type Handler = Arc<dyn Fn(TcpStream, usize, &AtomicBool) + Send + Sync>;

/// A [`Handler`] from a closure (which then needs no type annotations).
fn handler(f: impl Fn(TcpStream, usize, &AtomicBool) + Send + Sync + 'static) -> Handler {
    Arc::new(f)
}

/// A kernel server inside the namespace, a thread per connection (test
/// code); stopped on drop.
struct Backend {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Listens on `addr` inside `ns` and serves every connection with
    /// `handler`; returns once it listens.
    fn start(ns: &Netns, addr: &str, handler: Handler) -> Backend {
        let addr: SocketAddr = addr.parse().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let flag = stop.clone();
        let thread = spawn_in(ns, move || {
            let l = TcpListener::bind(addr).expect("back-end bind");
            l.set_nonblocking(true).expect("nonblocking");
            ready_tx.send(()).expect("ready");
            let mut conns = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).expect("blocking");
                        s.set_write_timeout(Some(PATIENCE)).expect("timeout");
                        let (h, f, i) = (handler.clone(), flag.clone(), conns.len());
                        conns.push(std::thread::spawn(move || h(s, i, &f)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("back-end accept: {e}"),
                }
            }
            drop(l);
            for c in conns {
                let _ = c.join();
            }
        });
        ready_rx.recv_timeout(PATIENCE).expect("back-end listening");
        Backend {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops listening (new connections are refused) and has every
    /// handler end its connection with RST, as a crashed server's host
    /// would.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads into `buf` with a short timeout so that a stop is seen; Ok(None)
/// when stopped (the connection was reset).
fn read_or_stop(
    s: &mut TcpStream,
    buf: &mut [u8],
    stop: &AtomicBool,
) -> std::io::Result<Option<usize>> {
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    loop {
        if stop.load(Ordering::SeqCst) {
            if let Ok(c) = s.try_clone() {
                reset(c);
            }
            return Ok(None);
        }
        match s.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Echoes until EOF (then half-closes) or until stopped (then resets).
fn echo_handler() -> Handler {
    handler(|mut s, _, stop| {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match read_or_stop(&mut s, &mut buf, stop) {
                Ok(Some(0)) => {
                    let _ = s.shutdown(Shutdown::Write);
                    return;
                }
                Ok(Some(n)) => {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Ok(None) | Err(_) => return,
            }
        }
    })
}

/// Reads an HTTP request head (up to the blank line).
fn read_head(s: &mut TcpStream, stop: &AtomicBool) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match read_or_stop(s, &mut byte, stop) {
            Ok(Some(1)) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// Answers one HTTP request with `backend=ID` and closes; logs `id` in
/// `log` in the order requests arrive.
fn http_handler(id: usize, log: Arc<Mutex<Vec<usize>>>) -> Handler {
    handler(move |mut s, _, stop| {
        if read_head(&mut s, stop).is_none() {
            return;
        }
        log.lock().expect("log").push(id);
        let body = format!("backend={id}\n");
        let reply = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(reply.as_bytes());
    })
}

/// The proxy's row for `target` in `vnic status --json`.
fn target_row(ns: &Netns, target: &str) -> serde_json::Value {
    let st = ns.status_json();
    let svc = st["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["port"] == 80))
        .unwrap_or_else(|| panic!("no service on port 80 in {st}"));
    assert_eq!(svc["app"], "proxy", "{svc}");
    svc["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["target"] == target))
        .unwrap_or_else(|| panic!("no row for {target} in {svc}"))
        .clone()
}

/// Waits until `target`'s `key` is `want`; returns the row.
fn wait_row(ns: &Netns, target: &str, key: &str, want: u64) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let row = target_row(ns, target);
        if row[key] == want {
            return row;
        }
        assert!(t.elapsed() < PATIENCE, "{key} != {want}: {row}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn proxy_to(targets: &[&str]) -> String {
    format!("80=proxy:{}", targets.join(","))
}

/// One request/response through an echo relay.
fn ping(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    Ok(back)
}

#[test]
fn forty_gets_reach_two_backends_twenty_each_in_round_robin_order() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let _a = Backend::start(&ns, A, http_handler(0, log.clone()));
    let _b = Backend::start(&ns, B, http_handler(1, log.clone()));
    let _vnic = ns.vnic(&["--processors", "4", "--serve", &proxy_to(&[A, B])]);
    let answers: Vec<String> = ns.run(|| {
        (0..40)
            .map(|i| {
                let mut s = connect("10.0.0.2:80").expect("connect");
                s.write_all(b"GET / HTTP/1.0\r\nHost: vnic\r\n\r\n")
                    .expect("request");
                let mut v = String::new();
                s.read_to_string(&mut v)
                    .unwrap_or_else(|e| panic!("response {i}: {e}"));
                v
            })
            .collect()
    });
    for (i, a) in answers.iter().enumerate() {
        assert!(a.starts_with("HTTP/1.0 200 OK\r\n"), "{i}: {a:?}");
        // Connection i lands on processor i mod 4, whose target is
        // (i mod 4) mod 2.
        let want = format!("backend={}\n", i % 2);
        assert!(a.ends_with(&want), "connection {i}: {a:?}");
    }
    let order = log.lock().expect("log").clone();
    let want: Vec<usize> = (0..40).map(|i| i % 2).collect();
    assert_eq!(order, want, "arrival order at the back-ends");
    for t in [A, B] {
        let row = wait_row(&ns, t, "active", 0);
        assert_eq!(row["connects"], 20, "{row}");
        assert_eq!(row["failures"], 0, "{row}");
    }
}

#[test]
fn two_hundred_fifty_six_mib_each_way_arrive_intact_over_ipv4_and_ipv6() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _a = Backend::start(&ns, A, echo_handler());
    let _b = Backend::start(&ns, "[::1]:8081", echo_handler());
    let _vnic = ns.vnic(&[
        "--processors",
        "2",
        "--serve",
        &proxy_to(&[A, "[::1]:8081"]),
    ]);
    const SIZE: usize = 256 << 20;
    // Connection 0 (IPv4 client) goes to the IPv4 target, connection 1
    // (IPv6 client) to the IPv6 one.
    for (client, seed) in [("10.0.0.2:80", 1u64), ("[fd00::2]:80", 2)] {
        let data = random_bytes(SIZE, seed);
        let want = Sha256::digest(&data).to_vec();
        let t = Instant::now();
        let got = ns.run(move || echo_through(connect(client).expect("connect"), data));
        eprintln!("{client}: 256 MiB each way in {:.1?}", t.elapsed());
        assert_eq!(got.0, SIZE, "{client}: every byte back, then FIN");
        assert_eq!(got.1, want, "{client}: the bytes are identical");
    }
    for t in [A, "[::1]:8081"] {
        let row = wait_row(&ns, t, "active", 0);
        assert_eq!(row["bytes_to_target"], SIZE as u64, "{row}");
        assert_eq!(row["bytes_from_target"], SIZE as u64, "{row}");
        assert_eq!(row["connects"], 1, "{row}");
    }
}

#[test]
fn half_close_passes_both_ways() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    // A: reads the whole request (to the relay's FIN), then answers with
    // its length and hash, then a long tail, then closes.
    let tail = random_bytes(1 << 20, 3);
    let tail_a = tail.clone();
    let _a = Backend::start(
        &ns,
        A,
        handler(move |mut s, _, _| {
            let mut req = Vec::new();
            s.read_to_end(&mut req).expect("request to EOF");
            let line = format!("{} {:x}\n", req.len(), Sha256::digest(&req));
            s.write_all(line.as_bytes()).expect("answer");
            s.write_all(&tail_a).expect("tail");
        }),
    );
    // B: greets and half-closes first, then reads the client to EOF.
    let (got_tx, got_rx) = mpsc::channel();
    let got_tx = Mutex::new(got_tx);
    let _b = Backend::start(
        &ns,
        B,
        handler(move |mut s, _, _| {
            s.write_all(b"220 hello, I am done talking\r\n")
                .expect("greeting");
            s.shutdown(Shutdown::Write).expect("half-close");
            let mut v = Vec::new();
            s.read_to_end(&mut v).expect("client to EOF");
            let _ = got_tx.lock().expect("tx").send(v);
        }),
    );
    let _vnic = ns.vnic(&["--processors", "2", "--serve", &proxy_to(&[A, B])]);
    let request = random_bytes(3 << 20, 4);
    let upload = random_bytes(2 << 20, 5);
    let (req, up) = (request.clone(), upload.clone());
    let (answer, greeting) = ns.run(move || {
        // Connection 0 → A: the client's FIN goes first.
        let mut s = connect("10.0.0.2:80").expect("connect A");
        s.write_all(&req).expect("request");
        s.shutdown(Shutdown::Write).expect("client FIN");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("answer to EOF");
        // Connection 1 → B: the server's FIN goes first; the client
        // sends afterwards.
        let mut s = connect("10.0.0.2:80").expect("connect B");
        let mut greeting = Vec::new();
        s.read_to_end(&mut greeting).expect("greeting to EOF");
        s.write_all(&up).expect("upload after the server's FIN");
        s.shutdown(Shutdown::Write).expect("client FIN");
        (answer, greeting)
    });
    let line = format!("{} {:x}\n", request.len(), Sha256::digest(&request));
    assert_eq!(&answer[..line.len()], line.as_bytes(), "A got the request");
    assert!(
        answer[line.len()..] == tail[..],
        "A's answer after its read"
    );
    assert_eq!(greeting, b"220 hello, I am done talking\r\n");
    let got = got_rx.recv_timeout(PATIENCE).expect("B's read");
    assert!(got == upload, "B got every byte sent after its FIN");
    for t in [A, B] {
        let row = wait_row(&ns, t, "active", 0);
        assert_eq!(row["failures"], 0, "{row}");
    }
}

#[test]
fn a_stopped_backend_resets_its_clients_and_the_others_go_on() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _a = Backend::start(&ns, A, echo_handler());
    let mut b = Backend::start(&ns, B, echo_handler());
    let _vnic = ns.vnic(&["--processors", "2", "--serve", &proxy_to(&[A, B])]);
    // Connections 0 and 2 go to A, 1 and 3 to B.
    let (tx, rx) = mpsc::channel::<()>();
    let (res_tx, res_rx) = mpsc::channel();
    let client = spawn_in(&ns, move || {
        let mut old: Vec<TcpStream> = (0..4)
            .map(|_| connect("10.0.0.2:80").expect("connect"))
            .collect();
        for (i, s) in old.iter_mut().enumerate() {
            assert_eq!(ping(s, b"before").expect("echo before"), b"before", "{i}");
        }
        res_tx.send(()).expect("ready");
        rx.recv().expect("B stopped");
        // B's clients are reset.
        let mut buf = [0u8; 8];
        let b_old: Vec<ErrorKind> = [1, 3]
            .iter()
            .map(|&i| match old[i].read(&mut buf) {
                Err(e) => e.kind(),
                Ok(n) => panic!("connection {i} to B read {n} bytes, not a reset"),
            })
            .collect();
        // New connections: 4, 6 to A; 5, 7 to B (refused there, reset here).
        let mut fresh = Vec::new();
        let mut b_new = Vec::new();
        for i in 4..8 {
            match connect("10.0.0.2:80").and_then(|mut s| ping(&mut s, b"after").map(|v| (s, v))) {
                Ok((s, v)) if i % 2 == 0 => {
                    assert_eq!(v, b"after");
                    fresh.push(s);
                }
                Ok(_) => panic!("connection {i} to stopped B got an echo"),
                Err(e) => {
                    assert_eq!(i % 2, 1, "connection {i} to A failed: {e}");
                    b_new.push(e.kind());
                }
            }
        }
        // A's old connections are unharmed.
        for i in [0, 2] {
            assert_eq!(ping(&mut old[i], b"still").expect("A's echo"), b"still");
        }
        (b_old, b_new)
    });
    res_rx.recv_timeout(PATIENCE).expect("four connections up");
    b.stop();
    tx.send(()).expect("go");
    let (b_old, b_new) = client.join().expect("client");
    assert_eq!(b_old, [ErrorKind::ConnectionReset; 2], "B's clients reset");
    for k in &b_new {
        assert!(
            matches!(k, ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused),
            "{k:?}"
        );
    }
    assert_eq!(b_new.len(), 2);
    let row_b = wait_row(&ns, B, "failures", 2);
    assert_eq!(row_b["connects"], 2, "{row_b}");
    assert_eq!(row_b["active"], 0, "{row_b}");
    let row_a = target_row(&ns, A);
    assert_eq!(row_a["failures"], 0, "{row_a}");
    assert_eq!(row_a["connects"], 4, "{row_a}");
}

#[test]
fn a_backend_that_never_reads_does_not_make_vnic_buffer() {
    if !can_run() {
        return;
    }
    const CONNS: usize = 16;
    let ns = Netns::new();
    // Accepts, then holds the connection without ever reading.
    let _a = Backend::start(
        &ns,
        A,
        handler(|s, _, stop| {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(s);
        }),
    );
    let vnic = ns.vnic(&["--processors", "2", "--serve", &proxy_to(&[A])]);
    let pid = vnic.pid().expect("pid");
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(pid);
    let senders: Vec<JoinHandle<(usize, ErrorKind, TcpStream)>> = (0..CONNS)
        .map(|_| {
            spawn_in(&ns, || {
                let mut s = connect("10.0.0.2:80").expect("connect");
                s.set_write_timeout(Some(Duration::from_secs(1)))
                    .expect("timeout");
                let chunk = vec![0x5au8; 1 << 20];
                let mut sent = 0usize;
                // Up to 1 GiB: far more than every buffer on the way.
                while sent < 1 << 30 {
                    match s.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(e) => return (sent, e.kind(), s),
                    }
                }
                (sent, ErrorKind::Other, s)
            })
        })
        .collect();
    let results: Vec<(usize, ErrorKind, TcpStream)> = senders
        .into_iter()
        .map(|h| h.join().expect("sender"))
        .collect();
    let after = rss_kib(pid);
    let grew = after.saturating_sub(before);
    eprintln!(
        "{CONNS} stalled uploads: vnic RSS {before} KiB -> {after} KiB; sent {:?} MiB",
        results.iter().map(|r| r.0 >> 20).collect::<Vec<_>>()
    );
    for (sent, kind, _) in &results {
        assert!(
            matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "the client's send blocked and timed out, not {kind:?} after {sent} bytes"
        );
        assert!(*sent < 64 << 20, "{sent} bytes taken: someone buffers");
    }
    // The module's bound: at most 1,152 KiB per connection (the relay's
    // 128 KiB, the stack's two 256 KiB buffers at up to twice their
    // content in allocation), plus 4 MiB for what the processors allocate
    // once (measured: about 1 MiB) and the allocator.
    let bound = CONNS as u64 * 1152 + 4 * 1024;
    assert!(
        grew <= bound,
        "vnic grew {grew} KiB for {CONNS} stalled connections (bound {bound} KiB)"
    );
    let row = target_row(&ns, A);
    assert_eq!(row["active"], CONNS as u64, "{row}");
}

/// Parses a PROXY header (v1 or v2) off `s`; returns (source,
/// destination).
fn read_proxy_header(s: &mut TcpStream) -> (SocketAddr, SocketAddr) {
    let mut first = [0u8; 1];
    s.read_exact(&mut first).expect("header");
    if first[0] == b'P' {
        let mut line = vec![first[0]];
        while !line.ends_with(b"\r\n") {
            s.read_exact(&mut first).expect("v1 line");
            line.push(first[0]);
        }
        let line = String::from_utf8(line).expect("ASCII");
        let w: Vec<&str> = line.trim_end().split(' ').collect();
        assert_eq!(w.len(), 6, "{line:?}");
        assert_eq!(w[0], "PROXY");
        let ip = |a: &str| a.parse::<std::net::IpAddr>().expect("address");
        let port = |p: &str| p.parse::<u16>().expect("port");
        let (src, dst) = (ip(w[2]), ip(w[3]));
        assert_eq!(w[1], if src.is_ipv4() { "TCP4" } else { "TCP6" });
        return (
            SocketAddr::new(src, port(w[4])),
            SocketAddr::new(dst, port(w[5])),
        );
    }
    let mut head = [0u8; 16];
    head[0] = first[0];
    s.read_exact(&mut head[1..]).expect("v2 header");
    assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n", "v2 signature");
    assert_eq!(head[12], 0x21, "version 2, PROXY");
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    let mut rest = vec![0u8; len];
    s.read_exact(&mut rest).expect("v2 addresses");
    let (src, dst, ports) = match head[13] {
        0x11 => {
            assert_eq!(len, 12);
            let a =
                |o: usize| std::net::IpAddr::from(<[u8; 4]>::try_from(&rest[o..o + 4]).expect("4"));
            (a(0), a(4), &rest[8..12])
        }
        0x21 => {
            assert_eq!(len, 36);
            let a = |o: usize| {
                std::net::IpAddr::from(<[u8; 16]>::try_from(&rest[o..o + 16]).expect("16"))
            };
            (a(0), a(16), &rest[32..36])
        }
        f => panic!("family {f:#x}"),
    };
    (
        SocketAddr::new(src, u16::from_be_bytes([ports[0], ports[1]])),
        SocketAddr::new(dst, u16::from_be_bytes([ports[2], ports[3]])),
    )
}

/// Through a proxy with `--proxy-protocol version`, the back-end learns
/// the real client's address and port, over IPv4 and IPv6.
fn proxy_protocol_shows_the_client(version: &str) {
    let ns = Netns::new();
    let _a = Backend::start(
        &ns,
        A,
        handler(|mut s, _, _| {
            s.set_read_timeout(Some(PATIENCE)).expect("timeout");
            let (src, dst) = read_proxy_header(&mut s);
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).expect("the client's bytes");
            let answer = format!(
                "src={src} dst={dst} then={}",
                String::from_utf8_lossy(&rest)
            );
            let _ = s.write_all(answer.as_bytes());
        }),
    );
    let _vnic = ns.vnic(&[
        "--processors",
        "1",
        "--serve",
        &proxy_to(&[A]),
        "--proxy-protocol",
        version,
    ]);
    for server in ["10.0.0.2:80", "[fd00::2]:80"] {
        let (me, answer) = ns.run(move || {
            let mut s = connect(server).expect("connect");
            s.write_all(b"hi").expect("write");
            s.shutdown(Shutdown::Write).expect("FIN");
            let mut v = String::new();
            s.read_to_string(&mut v).expect("answer");
            (s.local_addr().expect("local"), v)
        });
        assert_eq!(
            answer,
            format!("src={me} dst={server} then=hi"),
            "{version} via {server}"
        );
    }
}

#[test]
fn proxy_protocol_v1_shows_the_client_real_address() {
    if !can_run() {
        return;
    }
    proxy_protocol_shows_the_client("v1");
}

#[test]
fn proxy_protocol_v2_shows_the_client_real_address() {
    if !can_run() {
        return;
    }
    proxy_protocol_shows_the_client("v2");
}

/// A child process killed (and reaped) on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn python_http_server_answers_curl_through_vnic() {
    if !can_run() {
        return;
    }
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("\n*** SKIPPING: no python3 ***\n");
        return;
    }
    let ns = Netns::new();
    let dir = std::env::temp_dir().join(format!("{}-www", ns.name));
    std::fs::create_dir_all(&dir).expect("dir");
    let body = format!("hello from python behind vnic ({})\n", ns.name);
    std::fs::write(dir.join("hello.txt"), &body).expect("file");
    let dir_s = dir.to_string_lossy().into_owned();
    let server = Killed(
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-m", "http.server"])
            .args(["8080", "--bind", "127.0.0.1", "--directory", &dir_s])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 -m http.server"),
    );
    let up = ns.run(|| {
        let t = Instant::now();
        while t.elapsed() < PATIENCE {
            if TcpStream::connect(A).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    assert!(up, "python's server never listened");
    let _vnic = ns.vnic(&["--processors", "2", "--serve", &proxy_to(&[A])]);
    for _ in 0..2 {
        // Both processors relay to the one target.
        let got = ns.exec_ok(&[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "http://10.0.0.2/hello.txt",
        ]);
        assert_eq!(got, body);
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let row = wait_row(&ns, A, "active", 0);
    assert_eq!(row["connects"], 2, "{row}");
}

/// Listens on `addr` (IPv4) with a backlog of 0 and fills the accept
/// queue, so that the kernel drops every further SYN: a connect to it
/// hangs. Closed on drop.
fn full_listener(addr: SocketAddr) -> (TcpListener, Vec<std::io::Result<TcpStream>>) {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only");
    };
    // SAFETY: a fresh socket handed to a TcpListener (which closes it).
    let l = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        TcpListener::from_raw_fd(fd)
    };
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(v4.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid socket and a sockaddr_in of the length given.
    let r = unsafe {
        libc::bind(
            l.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
    // SAFETY: a bound socket.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0, "listen");
    let fillers = (0..3)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(200)))
        .collect();
    (l, fillers)
}

#[test]
fn a_backend_that_does_not_accept_in_time_gets_the_client_reset() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let holder = spawn_in(&ns, move || {
        let full = full_listener(A.parse().expect("addr"));
        ready_tx.send(()).expect("ready");
        let _ = hold_rx.recv();
        drop(full);
    });
    ready_rx.recv_timeout(PATIENCE).expect("listener full");
    let _vnic = ns.vnic(&[
        "--processors",
        "1",
        "--serve",
        &proxy_to(&[A]),
        "--proxy-connect-timeout",
        "400ms",
    ]);
    let (kind, took) = ns.run(|| {
        let t = Instant::now();
        let r = connect("10.0.0.2:80").and_then(|mut s| s.read(&mut [0u8; 16]));
        (r.map_err(|e| e.kind()), t.elapsed())
    });
    assert_eq!(kind, Err(ErrorKind::ConnectionReset), "after {took:?}");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "reset after {took:?}, wanted about 400 ms"
    );
    let row = wait_row(&ns, A, "failures", 1);
    assert_eq!(row["connects"], 0, "{row}");
    hold_tx.send(()).expect("release");
    holder.join().expect("holder");
}
