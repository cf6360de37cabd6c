//! `--processor-queues`: every processor reads the frames of its own
//! connections from a TAP queue of its own (an eBPF flow map in the
//! steering program), the RX thread only new connections and the rest;
//! `auto` (the default) falls back to the RX threads when it cannot be.
//! The kernel's TCP is the client, in the test's own namespace.

mod common;

use common::{as_u64s, body_value, can_run, have_tshark, http_get, random_bytes, Netns};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

/// A connection to `to` from local port `port` (reused at once: the
/// socket has SO_REUSEADDR), as a client that reuses its port does.
fn connect_from(port: u16, to: SocketAddr) -> TcpStream {
    // SAFETY: plain socket calls on a fresh fd, owned by the stream after.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            4,
        );
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = port.to_be();
        sa.sin_addr.s_addr = u32::from_ne_bytes([10, 0, 0, 1]);
        let r = libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), 16);
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        let SocketAddr::V4(v4) = to else {
            panic!("IPv4 only")
        };
        sa.sin_port = v4.port().to_be();
        sa.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
        // The last incarnation's LAST-ACK may hold the tuple for a moment.
        let t = Instant::now();
        while libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), 16) != 0 {
            let e = std::io::Error::last_os_error();
            assert!(
                e.raw_os_error() == Some(libc::EADDRNOTAVAIL)
                    && t.elapsed() < Duration::from_secs(2),
                "connect: {e}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = TcpStream::from_raw_fd(fd);
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }
}

/// Waits until the status says no connection is steered and no flow is
/// left (TIME-WAIT is 1 s in the tests).
fn wait_until_empty(ns: &Netns) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let st = ns.status_json();
        let a = &st["adapter"];
        if a["flows"] == 0 && a["steered_flows"] == 0 {
            return st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "flows or steered flows left: {a}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `auto` leaves processor queues off when a trace is written from the
/// start: a trace is for replaying, and a processor reading its own queue
/// records its frames out of the RX thread's order.
#[test]
fn auto_is_off_when_a_trace_is_written_from_the_start() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let pcap = format!("/tmp/{}-auto.pcapng", ns.tap);
    let vnic = ns.vnic(&["--quiet", "--processors", "4", "--pcap", &pcap]);
    assert!(
        !vnic.ready.contains("processor-queues=on"),
        "{}",
        vnic.ready
    );
    assert_eq!(ns.status_json()["adapter"]["processor_queues"], false);
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
    let _ = std::fs::remove_file(&pcap);
    // The same without the trace: on (4 processors, at least the cores here).
    let vnic = ns.vnic(&["--quiet", "--processors", "4"]);
    if std::thread::available_parallelism().map_or(1, usize::from) <= 4 {
        assert!(vnic.ready.contains("processor-queues=on"), "{}", vnic.ready);
    }
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn processors_read_their_own_queues_and_round_robin_still_places() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--quiet", "--processors", "4", "--processor-queues", "on"]);
    assert!(vnic.ready.contains("processor-queues=on"), "{}", vnic.ready);
    let placed = ns.run(|| {
        let a: SocketAddr = "10.0.0.2:80".parse().expect("addr");
        let b: SocketAddr = "[fd00::2]:80".parse().expect("addr");
        (0..64)
            .map(|i| {
                let to = if i % 4 == 3 { b } else { a };
                let mut s =
                    TcpStream::connect_timeout(&to, Duration::from_secs(2)).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                // Two requests on one connection: frames after the SYN.
                let (st1, body) = http_get(&mut s, "/", true);
                let (st2, _) = http_get(&mut s, "/", false);
                assert_eq!((st1, st2), (200, 200));
                body_value(&body, "processor")
                    .and_then(|v| v.parse::<usize>().ok())
                    .expect("processor=")
            })
            .collect::<Vec<_>>()
    });
    // Round-robin, in order, as without processor queues.
    let want: Vec<usize> = (0..64).map(|i| i % 4).collect();
    assert_eq!(placed, want);
    let st = ns.status_json();
    let a = &st["adapter"];
    assert_eq!(a["processor_queues"], true, "{a}");
    let per = as_u64s(&a["rx_queues"]);
    assert_eq!(per.len(), 5, "one RX queue and one per processor: {per:?}");
    // Each connection's SYN came through the RX queue; everything after
    // it (its handshake ACK, two requests, FIN, ACKs: at least 5 frames)
    // through its processor's own queue.
    assert!(per[0] >= 64, "{per:?}");
    for (k, n) in per[1..].iter().enumerate() {
        assert!(
            *n >= 16 * 5,
            "processor {k} read {n} frames itself: {per:?}"
        );
    }
    let st = wait_until_empty(&ns);
    let handed = st["adapter"]["handed_back"].as_u64().unwrap_or(u64::MAX);
    assert!(handed <= 8, "frames handed back: {}", st["adapter"]);
    let table = String::from_utf8_lossy(&ns.vnic_cmd(&["status"]).stdout).into_owned();
    assert!(
        table.contains("processor queues: steered flows 0"),
        "{table}"
    );
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn bulk_both_ways_intact_through_processor_queues() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--quiet", "--processors", "2", "--processor-queues", "on"]);
    for (i, size) in [(0u64, 32usize << 20), (1, 8 << 20)] {
        let data = random_bytes(size, 20 + i);
        let want = Sha256::digest(&data).to_vec();
        let (n, got) = ns.echo("10.0.0.2:7", data);
        assert_eq!(n, size);
        assert_eq!(got, want, "echoed bytes intact and in order");
    }
    let per = as_u64s(&ns.status_json()["adapter"]["rx_queues"]);
    assert!(
        per[1] > 100 && per[2] > 100,
        "both processors read: {per:?}"
    );
}

#[test]
fn a_new_connection_on_the_port_of_one_in_time_wait_is_placed_and_reaped() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--quiet", "--processors", "2", "--processor-queues", "on"]);
    let to: SocketAddr = "10.0.0.2:80".parse().expect("addr");
    let codes = ns.run(move || {
        (0..3)
            .map(|_| {
                // vnic closes first after `Connection: close`: the
                // connection is in TIME-WAIT at vnic when the next SYN from
                // the same port arrives, on the processor's own queue.
                let mut s = connect_from(40123, to);
                let (code, _) = http_get(&mut s, "/", false);
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
                code
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(codes, vec![200, 200, 200]);
    // Every incarnation's end reaches the RX thread with the stamp its
    // flow entry has: nothing is left behind.
    wait_until_empty(&ns);
}

#[test]
fn a_trace_records_every_frame_while_processors_have_their_own_queues() {
    if !can_run() || !have_tshark() {
        return;
    }
    let ns = Netns::new();
    let pcap = format!("/tmp/{}.pcapng", ns.tap);
    let vnic = ns.vnic(&[
        "--quiet",
        "--processors",
        "2",
        "--processor-queues",
        "on",
        "--pcap",
        &pcap,
    ]);
    let data = random_bytes(1 << 20, 5);
    let (n, _) = ns.echo("10.0.0.2:7", data);
    assert_eq!(n, 1 << 20);
    let own = as_u64s(&ns.status_json()["adapter"]["rx_queues"]);
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
    // What the client sent is all in the trace, each with the decision the
    // RX thread would have written, though the processors read the frames.
    let out = std::process::Command::new("tshark")
        .args(["-r", &pcap, "-Y", "ip.src == 10.0.0.1 && tcp.dstport == 7"])
        .args(["-T", "fields", "-e", "tcp.len", "-e", "frame.comment"])
        .output()
        .expect("tshark");
    let _ = std::fs::remove_file(&pcap);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sent = 0usize;
    for line in text.lines() {
        let mut f = line.split('\t');
        sent += f.next().and_then(|l| l.parse::<usize>().ok()).unwrap_or(0);
        let comment = f.next().unwrap_or_default();
        assert!(
            comment.contains("cpu="),
            "a decision on every frame: {line}"
        );
    }
    assert!(sent >= 1 << 20, "client bytes in the trace: {sent}");
    assert!(own[1] + own[2] >= 16, "the processors read them: {own:?}");
}

/// `vnic up --processor-queues on` with `extra` flags, which must fail
/// with exit status 1 and one line: that line.
fn refused(ns: &Netns, extra: &[&str]) -> String {
    let control = ns.control_path();
    let mut args = vec![
        "up",
        "--tap",
        &ns.tap,
        "--ip",
        "10.0.0.2/24",
        "--processor-queues",
        "on",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--control", &control]);
    let out = ns.vnic_raw(&args);
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn processor_queues_with_an_impairment_is_refused_in_one_line() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let err = refused(&ns, &["--impair", "loss=1%"]);
    assert!(
        err.contains("--processor-queues on and --impair do not go together"),
        "{err}"
    );
}

#[test]
fn auto_falls_back_to_the_rx_thread_where_processor_queues_cannot_be() {
    if !can_run() {
        return;
    }
    // A TAP made beforehand without multi_queue cannot have more queues.
    let ns = Netns::new();
    ns.exec_ok(&["ip", "tuntap", "add", "dev", &ns.tap, "mode", "tap"]);
    // As many processors as cores: `auto` would put them on.
    let cores = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 256)
        .to_string();
    let vnic = ns.vnic(&["--quiet", "--processors", &cores]);
    assert!(!vnic.ready.contains("processor-queues"), "{}", vnic.ready);
    let st = ns.status_json();
    assert_eq!(st["adapter"]["processor_queues"], false);
    let (n, _) = ns.echo("10.0.0.2:7", random_bytes(1 << 20, 9));
    assert_eq!(n, 1 << 20);
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
    // With `on` it is an error, in one line.
    let ns = Netns::new();
    ns.exec_ok(&["ip", "tuntap", "add", "dev", &ns.tap, "mode", "tap"]);
    let err = refused(&ns, &[]);
    assert!(err.contains("--processor-queues on needs BPF"), "{err}");
    // Fewer processors than cores: `auto` leaves them off (an RX thread
    // has a core of its own), unless this machine has one core.
    let ns = Netns::new();
    let vnic = ns.vnic(&["--quiet", "--processors", "1"]);
    let one_core = std::thread::available_parallelism().map_or(1, usize::from) == 1;
    assert_eq!(
        vnic.ready.contains("processor-queues=on"),
        one_core,
        "{}",
        vnic.ready
    );
    drop(vnic);
    // And `--impair` turns `auto` off.
    let ns = Netns::new();
    let vnic = ns.vnic(&["--quiet", "--impair", "loss=0%"]);
    assert!(!vnic.ready.contains("processor-queues"), "{}", vnic.ready);
    drop(vnic);
}

#[test]
fn rss_spreads_new_connections_over_the_rx_queues_beside_processor_queues() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&[
        "--quiet",
        "--processors",
        "2",
        "--rx-queues",
        "2",
        "--processor-queues",
        "on",
    ]);
    assert!(vnic.ready.contains("rx-queues=2"), "{}", vnic.ready);
    let ok = ns.run(|| {
        let a: SocketAddr = "10.0.0.2:80".parse().expect("addr");
        (0..48)
            .filter(|_| {
                let mut s =
                    TcpStream::connect_timeout(&a, Duration::from_secs(2)).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                http_get(&mut s, "/", false).0 == 200
            })
            .count()
    });
    assert_eq!(ok, 48);
    let per = as_u64s(&ns.status_json()["adapter"]["rx_queues"]);
    assert_eq!(per.len(), 4, "two RX queues, two processor queues: {per:?}");
    assert!(per.iter().all(|n| *n > 0), "{per:?}");
    // Each processor reports its closed connections to the RX thread that
    // placed them, and removes their steering.
    wait_until_empty(&ns);
}
