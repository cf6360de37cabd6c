//! `--rx-queues N`: a multi-queue TAP read by N adapter threads, with the
//! RSS steering program keeping each connection on one queue. Real
//! clients (the kernel's TCP) in the test's own namespace.

mod common;

use common::{as_u64s, can_run, http_get, random_bytes, Netns};
use sha2::{Digest, Sha256};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

#[test]
fn connections_spread_over_four_rx_queues_and_their_flows_are_reaped() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    // Every frame through the RX queues (tests/processor_queues.rs has
    // RSS beside processor queues).
    let vnic = ns.vnic(&["--quiet", "--rx-queues", "4", "--processor-queues", "off"]);
    assert!(vnic.ready.contains("rx-queues=4"), "{}", vnic.ready);
    let ok = ns.run(|| {
        let a: SocketAddr = "10.0.0.2:80".parse().expect("addr");
        let b: SocketAddr = "[fd00::2]:80".parse().expect("addr");
        (0..64)
            .filter(|i| {
                let to = if i % 4 == 3 { b } else { a };
                let mut s =
                    TcpStream::connect_timeout(&to, Duration::from_secs(2)).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                http_get(&mut s, "/", false).0 == 200
            })
            .count()
    });
    assert_eq!(ok, 64, "every request answered");
    let st = ns.status_json();
    let per = as_u64s(&st["adapter"]["rx_queues"]);
    assert_eq!(per.len(), 4, "{per:?}");
    assert!(
        per.iter().all(|n| *n > 0),
        "every queue read frames: {per:?}"
    );
    let accepted: u64 = st["processors"]
        .as_array()
        .expect("processors")
        .iter()
        .map(|p| p["accepted"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(accepted, 64);
    // Each processor reports its closed connections to the queue thread
    // that placed them: the flow count comes back to zero.
    let t = Instant::now();
    loop {
        let flows = ns.status_json()["adapter"]["flows"].as_u64();
        if flows == Some(0) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "flows left: {flows:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bulk_both_ways_intact_over_two_rx_queues() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--quiet", "--rx-queues", "2"]);
    let data = random_bytes(32 << 20, 11);
    let want = Sha256::digest(&data).to_vec();
    let (n, got) = ns.echo("10.0.0.2:7", data);
    assert_eq!(n, 32 << 20);
    assert_eq!(got, want, "echoed bytes intact and in order");
}

#[test]
fn a_second_vnic_cannot_take_queues_of_a_multi_queue_tap() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--quiet", "--rx-queues", "2"]);
    let out = ns.vnic_raw(&[
        "up",
        "--tap",
        &ns.tap,
        "--ip",
        "10.0.0.2/24",
        "--rx-queues",
        "2",
        "--control",
        "/tmp/vnic-rss-other.sock",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("busy"), "{err}");
}

#[test]
fn rx_queues_out_of_range_is_a_usage_error() {
    for bad in ["0", "17", "x"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vnic"))
            .args([
                "up",
                "--tap",
                "vnq0",
                "--ip",
                "10.0.0.2/24",
                "--rx-queues",
                bad,
            ])
            .output()
            .expect("run vnic");
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--rx-queues"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
