//! Issue: vnic serves real clients through a TAP, new connections spread
//! round-robin over processor threads. The client is always the Linux
//! kernel's TCP, inside the test's own network namespace.

mod common;

use common::{body_value, can_run, chargen_mismatch, echo_through, http_get, random_bytes, Netns};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const V4_HTTP: &str = "10.0.0.2:80";

fn connect(addr: &str) -> TcpStream {
    let a: SocketAddr = addr.parse().expect("addr");
    let s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s
}

fn processors_of_sequential_gets(ns: &Netns, n: usize) -> Vec<usize> {
    ns.run(move || {
        (0..n)
            .map(|_| {
                let mut s = connect(V4_HTTP);
                let (status, body) = http_get(&mut s, "/", false);
                assert_eq!(status, 200);
                body_value(&body, "processor")
                    .and_then(|v| v.parse().ok())
                    .expect("processor= in body")
            })
            .collect()
    })
}

#[test]
fn eight_gets_name_processors_in_strict_cyclic_order() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--processors", "4"]);
    assert!(
        vnic.ready
            .contains("processors=4 filter=round-robin model=monolithic"),
        "{}",
        vnic.ready
    );
    assert!(vnic.ready.contains("ip=10.0.0.2,fd00::2"), "{}", vnic.ready);
    let seen = processors_of_sequential_gets(&ns, 8);
    assert_eq!(seen, vec![0, 1, 2, 3, 0, 1, 2, 3]);
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "clean exit on SIGTERM; stderr: {err}");
}

#[test]
fn curl_gets_processor_and_connection_lines() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--processors", "2"]);
    let a = ns.exec_ok(&["curl", "-sS", "--max-time", "10", "http://10.0.0.2/"]);
    let b = ns.exec_ok(&["curl", "-sS", "--max-time", "10", "http://10.0.0.2/"]);
    assert_eq!(body_value(&a, "processor").as_deref(), Some("0"), "{a}");
    assert_eq!(body_value(&b, "processor").as_deref(), Some("1"), "{b}");
    assert!(body_value(&a, "connection").is_some(), "{a}");
    let stats = ns.exec_ok(&["curl", "-sS", "--max-time", "10", "http://10.0.0.2/stats"]);
    let v: serde_json::Value = serde_json::from_str(&stats).expect("stats is JSON");
    assert_eq!(v["model"], "monolithic");
    assert_eq!(v["filter"], "round-robin");
    let procs = v["processors"].as_array().expect("processors array");
    assert_eq!(procs.len(), 2);
    let accepted: u64 = procs
        .iter()
        .map(|p| p["accepted"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(accepted, 3, "{stats}");
    assert!(v["backends"].as_array().is_some_and(|b| b.is_empty()));
}

#[test]
fn filter_none_gives_every_connection_to_one_processor() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--processors", "4", "--filter", "none"]);
    let seen = processors_of_sequential_gets(&ns, 8);
    assert_eq!(seen, vec![0; 8]);
}

#[test]
fn four_mib_of_random_bytes_come_back_from_echo_identical() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&[]);
    let data = random_bytes(4 << 20, 42);
    let want = Sha256::digest(&data).to_vec();
    let got = ns.run(move || echo_through(connect("10.0.0.2:7"), data));
    assert_eq!(got.0, 4 << 20, "every byte echoed, then FIN");
    assert_eq!(got.1, want, "echoed bytes identical");
}

#[test]
fn sixteen_mib_of_chargen_keep_the_rfc864_pattern() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&[]);
    let bad = ns.run(|| {
        let mut s = connect("10.0.0.2:19");
        chargen_mismatch(&mut s, 0, 16 << 20)
    });
    assert_eq!(bad, None, "first byte off the pattern");
}

#[test]
fn ipv6_get_and_ping_both_families() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--processors", "2"]);
    let body = ns.exec_ok(&["curl", "-sS", "-g", "--max-time", "10", "http://[fd00::2]/"]);
    assert_eq!(
        body_value(&body, "processor").as_deref(),
        Some("0"),
        "{body}"
    );
    ns.exec_ok(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.2"]);
    ns.exec_ok(&["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "fd00::2"]);
    // Echo over IPv6 too, through std::net.
    let echoed = ns.run(|| {
        let mut s = connect("[fd00::2]:7");
        s.write_all(b"hello over v6").expect("write");
        s.shutdown(Shutdown::Write).expect("half-close");
        let mut v = Vec::new();
        s.read_to_end(&mut v).expect("read");
        v
    });
    assert_eq!(echoed, b"hello over v6");
}

#[test]
fn closed_port_refuses_at_once() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&[]);
    let (kind, took) = ns.run(|| {
        let a: SocketAddr = "10.0.0.2:81".parse().expect("addr");
        let t = Instant::now();
        let r = TcpStream::connect_timeout(&a, Duration::from_secs(5));
        (r.err().map(|e| e.kind()), t.elapsed())
    });
    assert_eq!(kind, Some(std::io::ErrorKind::ConnectionRefused));
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
}

#[test]
fn two_hundred_concurrent_connections_fifty_per_processor() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--processors", "4"]);
    let counts = ns.run(|| {
        let mut streams: Vec<TcpStream> = (0..200).map(|_| connect(V4_HTTP)).collect();
        let mut counts = [0usize; 4];
        for s in &mut streams {
            let (status, body) = http_get(s, "/", true);
            assert_eq!(status, 200);
            let p: usize = body_value(&body, "processor")
                .and_then(|v| v.parse().ok())
                .expect("processor=");
            counts[p] += 1;
        }
        // All 200 are still open at this point: ask /stats on one of them.
        let (_, stats) = http_get(&mut streams[0], "/stats", true);
        (counts, stats)
    });
    assert_eq!(counts.0, [50, 50, 50, 50]);
    let v: serde_json::Value = serde_json::from_str(&counts.1).expect("json");
    for p in v["processors"].as_array().expect("array") {
        assert_eq!(p["active"], 50, "{}", counts.1);
    }
}
