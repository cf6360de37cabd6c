//! `--serve PORT=proxy:...`: connections relayed to real servers on the
//! kernel's TCP. The back-ends are small servers of the test's own on
//! 127.0.0.1 inside the test's namespace (and python3's http.server where
//! python3 is there); the client is the kernel's TCP through the TAP.

mod common;

use common::{can_run, echo_through, random_bytes, Netns};
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

fn connect(addr: &str) -> TcpStream {
    let a: SocketAddr = addr.parse().expect("addr");
    let s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s
}

/// Starts `serve` for every connection of a listener on 127.0.0.1 inside
/// the namespace (one thread per connection: a test back-end, not vnic);
/// returns its port.
fn backend(ns: &Netns, serve: impl Fn(TcpStream) + Send + Sync + Clone + 'static) -> u16 {
    ns.run(move || {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let serve = serve.clone();
                std::thread::spawn(move || serve(s));
            }
        });
        port
    })
}

/// An HTTP/1.0-style server that names itself and closes.
fn http_named(name: &'static str) -> impl Fn(TcpStream) + Send + Sync + Clone + 'static {
    move |mut s: TcpStream| {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
            head.push(b[0]);
        }
        let body = format!("backend={name}\n");
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

/// Every byte back, then FIN after the client's FIN.
fn echo(mut s: TcpStream) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}

fn get(addr: &str) -> String {
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: vnic\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut r = String::new();
    s.read_to_string(&mut r).expect("answer");
    r
}

fn service_rows(ns: &Netns, port: u16) -> Vec<serde_json::Value> {
    let st = ns.status_json();
    st["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["port"] == port))
        .and_then(|s| s["rows"].as_array().cloned())
        .unwrap_or_else(|| panic!("no service on port {port}: {st}"))
}

#[test]
fn forty_gets_reach_two_back_ends_in_the_order_the_filter_implies() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let p0 = backend(&ns, http_named("0"));
    let p1 = backend(&ns, http_named("1"));
    let serve = format!("80=proxy:127.0.0.1:{p0},127.0.0.1:{p1}");
    let vnic = ns.vnic(&["--processors", "4", "--quiet", "--serve", &serve]);
    let names = ns.run(|| {
        (0..40)
            .map(|_| {
                let r = get("10.0.0.2:80");
                assert!(r.starts_with("HTTP/1.1 200"), "{r}");
                r.lines().last().unwrap_or_default().to_string()
            })
            .collect::<Vec<_>>()
    });
    // Connection i lands on processor i mod 4, which relays to target
    // (i mod 4) mod 2.
    let want: Vec<String> = (0..40).map(|i| format!("backend={}", i % 2)).collect();
    assert_eq!(names, want);
    let rows = service_rows(&ns, 80);
    for (i, p) in [p0, p1].iter().enumerate() {
        assert_eq!(rows[i]["target"], format!("127.0.0.1:{p}"));
        assert_eq!(rows[i]["connects"], 20, "{rows:?}");
        assert_eq!(rows[i]["failures"], 0, "{rows:?}");
    }
    let table = String::from_utf8_lossy(&ns.vnic_cmd(&["status"]).stdout).into_owned();
    assert!(table.contains("port 80 proxy"), "{table}");
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn two_hundred_fifty_six_mib_each_way_arrive_intact_over_ipv4_and_ipv6() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let p = backend(&ns, echo);
    let serve = format!("7=proxy:127.0.0.1:{p}");
    let vnic = ns.vnic(&["--processors", "2", "--quiet", "--serve", &serve]);
    for (addr, seed) in [("10.0.0.2:7", 1), ("[fd00::2]:7", 2)] {
        let data = random_bytes(256 << 20, seed);
        let want = Sha256::digest(&data).to_vec();
        let (n, got) = ns.run(move || echo_through(connect(addr), data));
        assert_eq!(n, 256 << 20, "{addr}");
        assert_eq!(got, want, "{addr}: the bytes came back changed");
    }
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn half_closes_pass_through_both_ways() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let tx = Arc::new(Mutex::new(tx));
    // The back-end speaks first and closes its side, then reads on.
    let p = backend(&ns, move |mut s: TcpStream| {
        let _ = s.write_all(b"hello");
        let _ = s.shutdown(Shutdown::Write);
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        if let Ok(t) = tx.lock() {
            let _ = t.send(got);
        }
    });
    let serve = format!("7=proxy:127.0.0.1:{p}");
    let vnic = ns.vnic(&["--quiet", "--serve", &serve]);
    let greeting = ns.run(|| {
        let mut s = connect("10.0.0.2:7");
        let mut got = Vec::new();
        // The back-end's FIN reaches us as EOF while our side stays open.
        s.read_to_end(&mut got).expect("read to EOF");
        s.write_all(b"after your FIN").expect("we may still send");
        s.shutdown(Shutdown::Write).expect("our FIN");
        got
    });
    assert_eq!(greeting, b"hello");
    let got = rx.recv_timeout(Duration::from_secs(10)).expect("back-end");
    assert_eq!(
        got, b"after your FIN",
        "our FIN reached it as EOF after the bytes"
    );
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// A back-end that can be stopped: its listener closes and every
/// connection it holds is reset.
fn stoppable_echo(ns: &Netns) -> (u16, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let port = ns.run(move || {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nb");
        let port = l.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        let s3 = s2.clone();
                        std::thread::spawn(move || {
                            s.set_nonblocking(false).expect("blocking");
                            s.set_read_timeout(Some(Duration::from_millis(20)))
                                .expect("timeout");
                            let mut s = s;
                            let mut buf = [0u8; 4096];
                            loop {
                                if s3.load(Ordering::Relaxed) {
                                    common::reset_on_close(&s);
                                    return;
                                }
                                match s.read(&mut buf) {
                                    Ok(0) => return,
                                    Ok(n) => {
                                        if s.write_all(&buf[..n]).is_err() {
                                            return;
                                        }
                                    }
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            ErrorKind::WouldBlock | ErrorKind::TimedOut
                                        ) => {}
                                    Err(_) => return,
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        port
    });
    (port, stop)
}

fn ping(s: &mut TcpStream) -> std::io::Result<()> {
    s.write_all(b"ping")?;
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    assert_eq!(&b, b"ping");
    Ok(())
}

#[test]
fn a_back_end_stopped_mid_run_resets_its_clients_and_nobody_else() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let (p0, _keep) = stoppable_echo(&ns);
    let (p1, stop1) = stoppable_echo(&ns);
    let serve = format!("7=proxy:127.0.0.1:{p0},127.0.0.1:{p1}");
    let vnic = ns.vnic(&["--processors", "4", "--quiet", "--serve", &serve]);
    // Processors 0..3: targets 0, 1, 0, 1.
    let mut conns = ns.run(|| {
        (0..4)
            .map(|_| {
                let mut s = connect("10.0.0.2:7");
                ping(&mut s).expect("echo");
                s
            })
            .collect::<Vec<_>>()
    });
    stop1.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    for (i, s) in conns.iter_mut().enumerate() {
        let r = ping(s);
        if i % 2 == 1 {
            let e = r.expect_err("a stopped back-end's client is reset");
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe
                ),
                "{e}"
            );
        } else {
            r.expect("the other back-end's clients go on");
        }
    }
    // New connections to processors 1 and 3 are refused by the back-end
    // and reset (the refusal comes at once, so the client's SYN is
    // answered with RST); 0 and 2 work.
    let results = ns.run(|| {
        (0..4)
            .map(|_| {
                let a: SocketAddr = "10.0.0.2:7".parse().expect("addr");
                match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
                    Ok(mut s) => {
                        s.set_read_timeout(Some(Duration::from_secs(10)))
                            .expect("timeout");
                        ping(&mut s).is_ok()
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
                        false
                    }
                }
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(results, vec![true, false, true, false]);
    let rows = service_rows(&ns, 7);
    assert!(rows[1]["failures"].as_u64() >= Some(2), "{rows:?}");
    assert_eq!(rows[0]["failures"], 0, "{rows:?}");
    drop(conns);
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_back_end_that_never_reads_keeps_vnic_within_its_memory_bound() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h2 = held.clone();
    // Accepts and keeps the connection, never reads.
    let p = backend(&ns, move |s: TcpStream| {
        if let Ok(mut h) = h2.lock() {
            h.push(s);
        }
    });
    let serve = format!("9=proxy:127.0.0.1:{p}");
    let vnic = ns.vnic(&["--processors", "1", "--quiet", "--serve", &serve]);
    let pid = vnic.pid().expect("pid");
    let before = rss_kib(pid);
    let sent = ns.run(|| {
        let mut s = connect("10.0.0.2:9");
        s.set_write_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let chunk = vec![5u8; 1 << 16];
        let mut sent = 0usize;
        let deadline = Instant::now() + Duration::from_secs(8);
        while sent < 256 << 20 && Instant::now() < deadline {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break, // the window is closed: vnic holds back
            }
        }
        sent
    });
    let after = rss_kib(pid);
    // The bound: the relay's 128 KiB plus the connection's TCP buffers
    // (256 KiB each way); allow 2 MiB for everything else that moved.
    assert!(
        after.saturating_sub(before) < 2 * 1024,
        "vnic grew from {before} to {after} KiB while the client sent {sent} bytes"
    );
    assert!(
        sent < 64 << 20,
        "the client was never held back ({sent} bytes)"
    );
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// Parses a PROXY header (v1 or v2) at the start of a stream: (client,
/// destination) as the back-end learns them.
fn read_proxy_header(s: &mut TcpStream) -> (SocketAddr, SocketAddr) {
    let mut first = [0u8; 12];
    s.read_exact(&mut first).expect("header");
    if first == *b"\r\n\r\n\0\r\nQUIT\n" {
        let mut h = [0u8; 4];
        s.read_exact(&mut h).expect("v2 head");
        assert_eq!(h[0], 0x21, "v2, PROXY");
        let len = u16::from_be_bytes([h[2], h[3]]) as usize;
        let mut a = vec![0u8; len];
        s.read_exact(&mut a).expect("v2 addresses");
        let (src, dst, ports): (std::net::IpAddr, std::net::IpAddr, &[u8]) = match h[1] {
            0x11 => (
                <[u8; 4]>::try_from(&a[0..4]).expect("4").into(),
                <[u8; 4]>::try_from(&a[4..8]).expect("4").into(),
                &a[8..12],
            ),
            0x21 => (
                <[u8; 16]>::try_from(&a[0..16]).expect("16").into(),
                <[u8; 16]>::try_from(&a[16..32]).expect("16").into(),
                &a[32..36],
            ),
            f => panic!("family {f:#x}"),
        };
        let sp = u16::from_be_bytes([ports[0], ports[1]]);
        let dp = u16::from_be_bytes([ports[2], ports[3]]);
        return (SocketAddr::new(src, sp), SocketAddr::new(dst, dp));
    }
    let mut line = first.to_vec();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        s.read_exact(&mut b).expect("v1 line");
        line.push(b[0]);
    }
    let text = String::from_utf8(line).expect("ascii");
    let w: Vec<&str> = text.trim_end().split(' ').collect();
    assert_eq!(w[0], "PROXY");
    let ip = |x: &str| x.parse::<std::net::IpAddr>().expect("ip");
    let port = |x: &str| x.parse::<u16>().expect("port");
    (
        SocketAddr::new(ip(w[2]), port(w[4])),
        SocketAddr::new(ip(w[3]), port(w[5])),
    )
}

#[test]
fn proxy_protocol_v1_and_v2_show_the_back_end_the_real_client() {
    if !can_run() {
        return;
    }
    for version in ["v1", "v2"] {
        let ns = Netns::new();
        let (tx, rx) = mpsc::channel();
        let tx = Arc::new(Mutex::new(tx));
        let p = backend(&ns, move |mut s: TcpStream| {
            let seen = read_proxy_header(&mut s);
            let mut rest = [0u8; 5];
            let _ = s.read_exact(&mut rest);
            if let Ok(t) = tx.lock() {
                let _ = t.send((seen, rest));
            }
        });
        let serve = format!("80=proxy:127.0.0.1:{p}");
        let vnic = ns.vnic(&["--quiet", "--proxy-protocol", version, "--serve", &serve]);
        for addr in ["10.0.0.2:80", "[fd00::2]:80"] {
            let client = ns.run(move || {
                let mut s = connect(addr);
                s.write_all(b"hello").expect("send");
                s.local_addr().expect("local")
            });
            let ((src, dst), rest) = rx.recv_timeout(Duration::from_secs(10)).expect("seen");
            assert_eq!(src, client, "{version}: the back-end sees the real client");
            assert_eq!(dst, addr.parse::<SocketAddr>().expect("addr"), "{version}");
            assert_eq!(&rest, b"hello", "{version}: the client's bytes follow");
        }
        let (code, err) = vnic.stop();
        assert_eq!(code, Some(0), "{err}");
    }
}

#[test]
fn a_back_end_that_does_not_accept_in_time_gets_the_client_reset() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let p = backend(&ns, echo);
    // SYNs to the back-end vanish: its connect never completes.
    let rules = format!(
        "table inet vnicproxy {{\n chain c {{\n  type filter hook output priority 0;\n  \
         ip daddr 127.0.0.1 tcp dport {p} drop\n }}\n}}\n"
    );
    let file = format!("/tmp/{}-proxy.nft", ns.name);
    std::fs::write(&file, rules).expect("nft file");
    ns.exec_ok(&["nft", "-f", &file]);
    let _ = std::fs::remove_file(&file);
    let serve = format!("7=proxy:127.0.0.1:{p}");
    let vnic = ns.vnic(&[
        "--quiet",
        "--proxy-connect-timeout",
        "300ms",
        "--serve",
        &serve,
    ]);
    let (err, took) = ns.run(|| {
        let mut s = connect("10.0.0.2:7");
        let started = Instant::now();
        let mut b = [0u8; 4];
        let r = s.read(&mut b);
        (r.map_err(|e| e.kind()), started.elapsed())
    });
    assert_eq!(err, Err(ErrorKind::ConnectionReset));
    assert!(took < Duration::from_secs(3), "reset after {took:?}");
    let rows = service_rows(&ns, 7);
    assert_eq!(rows[0]["failures"], 1, "{rows:?}");
    let (code, e) = vnic.stop();
    assert_eq!(code, Some(0), "{e}");
}

#[test]
fn python_http_server_answers_through_vnic() {
    if !can_run() {
        return;
    }
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("*** SKIPPING: python3 is not installed ***");
        return;
    }
    let ns = Netns::new();
    let dir = format!("/tmp/{}-www", ns.name);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(format!("{dir}/hello.txt"), "hello from python\n").expect("file");
    let mut py = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "python3",
            "-m",
            "http.server",
            "18080",
        ])
        .args(["--bind", "127.0.0.1", "--directory", &dir])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let up = ns.run(|| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect("127.0.0.1:18080").is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    assert!(up, "python3's server did not start");
    let vnic = ns.vnic(&[
        "--processors",
        "4",
        "--quiet",
        "--serve",
        "80=proxy:127.0.0.1:18080",
    ]);
    for _ in 0..4 {
        let out = ns.exec_ok(&[
            "curl",
            "-s",
            "--max-time",
            "10",
            "http://10.0.0.2/hello.txt",
        ]);
        assert_eq!(out, "hello from python\n");
    }
    let (code, err) = vnic.stop();
    let _ = py.kill();
    let _ = py.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_client_upload_reaches_a_back_end_that_closed_its_side_before_reading() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    // Loopback at an Ethernet MTU, and a back-end with a small receive
    // buffer: the kernel holds little between vnic and the back-end, so
    // most of the upload waits in vnic when the client's FIN arrives.
    ns.exec_ok(&["ip", "link", "set", "lo", "mtu", "1500"]);
    const SIZE: usize = 240 * 1024;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let port = ns.run(move || {
        use std::os::fd::AsRawFd;
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let small: libc::c_int = 4096;
        // SAFETY: setsockopt on our own socket with an int of the size given.
        let r = unsafe {
            libc::setsockopt(
                l.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&small as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "SO_RCVBUF");
        let port = l.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let Ok((mut s, _)) = l.accept() else { return };
            // The client's bytes and FIN arrive meanwhile; then this
            // back-end says it is done talking, and reads only later.
            std::thread::sleep(Duration::from_millis(300));
            let _ = s.shutdown(Shutdown::Write);
            std::thread::sleep(Duration::from_millis(700));
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            let _ = tx.send(got);
        });
        port
    });
    let serve = format!("7=proxy:127.0.0.1:{port}");
    let vnic = ns.vnic(&["--quiet", "--serve", &serve]);
    let data = random_bytes(SIZE, 11);
    let sent = data.clone();
    let echoed = ns.run(move || {
        let mut s = connect("10.0.0.2:7");
        s.write_all(&sent).expect("upload");
        s.shutdown(Shutdown::Write).expect("our FIN");
        let mut back = Vec::new();
        s.read_to_end(&mut back).expect("the back-end's EOF");
        back
    });
    assert!(echoed.is_empty());
    let got = rx.recv_timeout(Duration::from_secs(15)).expect("back-end");
    assert_eq!(
        got.len(),
        SIZE,
        "every byte of the upload reached the back-end"
    );
    assert!(got == data, "intact");
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}
