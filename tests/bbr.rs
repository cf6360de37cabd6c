//! Issue 18: `--congestion bbr` end to end. The kernel downloads from
//! vnic's chargen through a TAP that nftables makes drop 1% of the frames
//! each way; the stream must arrive intact and vnic must count it.

mod common;

use common::{can_run, chargen_mismatch, Netns};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const BYTES: usize = 64 << 20;

/// Sum of a per-processor counter in `vnic status --json`.
fn processors_sum(ns: &Netns, key: &str) -> u64 {
    ns.status_json()["processors"]
        .as_array()
        .expect("processors")
        .iter()
        .map(|p| p[key].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn chargen_download_with_bbr_under_one_percent_loss_is_intact_and_counted() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--congestion", "bbr"]);
    ns.nft_loss(&ns.tap, 1);
    let t = Instant::now();
    let bad = ns.run(|| {
        let a: SocketAddr = "10.0.0.2:19".parse().expect("addr");
        let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(10)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        chargen_mismatch(&mut s, 0, BYTES)
    });
    let took = t.elapsed();
    assert_eq!(bad, None, "first byte off the chargen pattern");
    eprintln!(
        "64 MiB from chargen with BBR at 1% loss: {took:?}, {:.0} Mbit/s",
        BYTES as f64 * 8.0 / took.as_secs_f64() / 1e6
    );
    // vnic counted what it sent, and the loss made it retransmit.
    let deadline = Instant::now() + Duration::from_secs(5);
    while processors_sum(&ns, "bytes_out") < BYTES as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = processors_sum(&ns, "bytes_out");
    assert!(out >= BYTES as u64, "bytes_out {out} < {BYTES}");
    assert!(processors_sum(&ns, "retransmissions") > 0, "no loss seen");
}
