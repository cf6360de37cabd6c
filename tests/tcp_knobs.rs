//! The TCP knobs of a config file's `[tcp]` (issue 20 part 4), end to
//! end: `vnic status` shows the settings in force, and a connection whose
//! peer vanished (every frame on the TAP dropped by nftables) is reset by
//! `total_retransmission_time`, within its bound, long before the
//! retransmission count would end it.

mod common;

use common::{can_run, Netns};
use serde_json::json;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Knobs a test can watch act in seconds: 1 s RTOs, a count that would
/// take 50 s, a total time of 3 s.
const CONFIG: &str = "\
[adapter]
addresses = [\"10.0.0.2/24\"]
host_addresses = [\"10.0.0.1/24\"]
processors = 1

[tcp]
max_rto = \"1s\"
max_retransmissions = 50
total_retransmission_time = \"3s\"
delayed_ack = false
send_space = \"64K\"
";

/// Active connections over all processors.
fn active(ns: &Netns) -> u64 {
    ns.status_json()["processors"]
        .as_array()
        .expect("processors")
        .iter()
        .map(|p| p["active"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn config_tcp_knobs_show_in_status_and_total_retransmission_time_ends_a_vanished_peer() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let file = format!("/tmp/{}-tcp.toml", ns.name);
    std::fs::write(&file, CONFIG).expect("write config");
    let vnic = ns.vnic_config(&file, &["--trace=conn"]);
    let _ = std::fs::remove_file(&file);

    // The settings in force, in the JSON and in the table.
    let st = ns.status_json();
    assert_eq!(
        st["tcp"],
        json!({"max_rto_ms": 1000, "max_retransmissions": 50,
               "total_retransmission_time_ms": 3000, "delayed_ack": false,
               "delayed_ack_time_ms": 0, "send_space": 65536}),
        "{st}"
    );
    let table = ns.vnic_cmd(&["status"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(
            "tcp: max-rto 1s  max-retransmissions 50  total-retransmission-time 3s  \
             delayed-ack off  send-space 64K"
        ),
        "{table}"
    );

    // A chargen stream the client reads until its peer vanishes.
    let stop = Arc::new(AtomicBool::new(false));
    let (flowing_tx, flowing_rx) = std::sync::mpsc::channel();
    let client = ns.spawn({
        let stop = stop.clone();
        move || {
            let mut s = common::connect("10.0.0.2:19");
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let mut buf = vec![0u8; 65536];
            let mut got = 0usize;
            while !stop.load(Ordering::Relaxed) {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        got += n;
                        if got >= 1 << 20 {
                            let _ = flowing_tx.send(());
                        }
                    }
                    Err(_) => {}
                }
            }
            got
        }
    });
    flowing_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("chargen flows");
    assert_eq!(active(&ns), 1);

    // The peer vanishes: every frame either way on the TAP is dropped.
    ns.nft(&format!(
        "table netdev vanish {{\n chain in {{ type filter hook ingress device \"{tap}\" priority 0; policy drop; }}\n chain out {{ type filter hook egress device \"{tap}\" priority 0; policy drop; }}\n}}\n",
        tap = ns.tap
    ));
    let vanished = Instant::now();
    let gone = loop {
        if active(&ns) == 0 {
            break vanished.elapsed();
        }
        assert!(
            vanished.elapsed() < Duration::from_secs(15),
            "the connection still open 15 s after its peer vanished"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // The first RTO (at least 200 ms), then 3 s of 1 s retransmissions;
    // the count (50) alone would have taken some 50 s.
    assert!(
        gone >= Duration::from_secs(3) && gone <= Duration::from_secs(8),
        "reset {gone:?} after the peer vanished, not 3 s after the first timeout"
    );
    let retransmissions: u64 = ns.status_json()["processors"]
        .as_array()
        .expect("processors")
        .iter()
        .map(|p| p["retransmissions"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        (2..50).contains(&retransmissions),
        "{retransmissions} retransmissions"
    );

    stop.store(true, Ordering::Relaxed);
    client.join().expect("client");
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("timed out 10.0.0.1:") && l.contains("> 10.0.0.2:19")),
        "no timed-out line for the chargen connection:\n{err}"
    );
}
