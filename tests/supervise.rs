//! Failures that must not go unseen, and a stop that loses nothing it
//! need not: a processor thread that dies leaves the rotation and its
//! connections are reset; a TAP that goes away ends vnic with one line
//! and exit status 1; SIGTERM drains connections with FIN before it
//! resets what is left. The kernel's TCP is the client, in the test's own
//! namespace.

mod common;

use common::{body_value, can_run, http_get, Netns};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn connect(addr: &str) -> TcpStream {
    let a: SocketAddr = addr.parse().expect("addr");
    let s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// The processor that answers a keep-alive GET on `s`.
fn processor_of(s: &mut TcpStream) -> usize {
    let (status, body) = http_get(s, "/", true);
    assert_eq!(status, 200);
    body_value(&body, "processor")
        .and_then(|v| v.parse().ok())
        .expect("processor=")
}

#[test]
fn a_processor_that_dies_leaves_the_rotation_and_its_connections_are_reset() {
    dies_and_its_connections_are_reset("off");
}

/// The same with each processor reading its own TAP queue: the failed
/// processor's flows leave the kernel's flow map, so the RX thread sees
/// (and resets) its connections' next segments.
#[test]
fn a_processor_with_its_own_queue_that_dies_is_handled_the_same() {
    dies_and_its_connections_are_reset("on");
}

fn dies_and_its_connections_are_reset(processor_queues: &str) {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&[
        "--processors",
        "2",
        "--quiet",
        "--processor-queues",
        processor_queues,
        // As before restarts: it stays failed.
        "--processor-restart",
        "off",
    ]);
    let (mut on0, mut on1) = ns.run(|| (connect("10.0.0.2:80"), connect("10.0.0.2:80")));
    assert_eq!(processor_of(&mut on0), 0);
    assert_eq!(processor_of(&mut on1), 1);

    let out = ns.vnic_cmd(&["ctl", "processor", "1", "crash"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let failure = loop {
        let st = ns.status_json();
        let p = &st["processors"][1];
        if p["state"] == "failed" {
            break p["failure"].as_str().unwrap_or_default().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "processor 1 never shown failed: {st}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(failure.contains("crashed on request"), "{failure}");
    if processor_queues == "on" {
        // Its flow left the kernel's map; processor 0's stays.
        assert_eq!(ns.status_json()["adapter"]["steered_flows"], 1);
    }
    let table = String::from_utf8_lossy(&ns.vnic_cmd(&["status"]).stdout).into_owned();
    assert!(table.contains("processor 1 failed: "), "{table}");

    // Its connection is gone: the next segment is answered with RST.
    on1.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut buf = [0u8; 64];
    match on1.read(&mut buf) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("a dead processor's connection answered {n} bytes"),
    }
    // The other processor's connection goes on, and every new connection
    // lands on the live processor.
    assert_eq!(processor_of(&mut on0), 0);
    let placed = ns.run(|| {
        (0..4)
            .map(|_| processor_of(&mut connect("10.0.0.2:80")))
            .collect::<Vec<_>>()
    });
    assert_eq!(placed, vec![0, 0, 0, 0]);
    drop((on0, on1));
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_tap_that_goes_away_ends_vnic_with_one_line_and_status_1() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--quiet"]);
    ns.exec_ok(&["ip", "link", "del", &ns.tap]);
    let (code, err) = vnic.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(1), "exit status; stderr: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("vnic: the TAP ") && last.contains("failed"),
        "{err}"
    );
}

#[test]
fn sigterm_drains_with_fin_and_resets_only_what_stays_open() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--quiet", "--drain", "1s"]);
    let (mut polite, mut stubborn) = ns.run(|| {
        let mut a = connect("10.0.0.2:7");
        let mut b = connect("10.0.0.2:7");
        for s in [&mut a, &mut b] {
            s.write_all(b"ping").expect("send");
            let mut got = [0u8; 4];
            s.read_exact(&mut got).expect("echo");
        }
        (a, b)
    });
    // The polite client closes as soon as vnic does; the stubborn one
    // keeps its side open.
    let polite_end = std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        let r = polite.read(&mut buf).map_err(|e| e.kind());
        drop(polite);
        r
    });
    let started = Instant::now();
    let (code, err) = vnic.stop();
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        polite_end.join().expect("reader"),
        Ok(0),
        "the polite client saw FIN"
    );
    assert!(
        err.contains("2 connection(s): 1 closed with FIN, 1 reset after the drain time"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "drain took {took:?}");
    let mut buf = [0u8; 16];
    // vnic's FIN came first, then the RST of the reset.
    let first = stubborn.read(&mut buf).map_err(|e| e.kind());
    assert_eq!(first, Ok(0), "FIN first");
    let _ = stubborn.write_all(b"late");
    std::thread::sleep(Duration::from_millis(100));
    let second = stubborn
        .write_all(b"late")
        .and_then(|_| stubborn.read(&mut buf).map(|_| ()));
    assert!(second.is_err(), "the stubborn connection was reset");
}
