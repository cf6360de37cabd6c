//! Issue 18: `--congestion bbr` end to end. The kernel downloads from
//! vnic's chargen through a TAP that nftables makes drop 1% of the frames
//! each way; the stream must arrive intact and vnic must count it. And a
//! config file's `[[listener]] congestion` holds for its port only.

mod common;

use common::{can_run, chargen_mismatch, Netns};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
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

/// The socket table's `cc` of the established connection on `lport`.
fn cc_of(table: &serde_json::Value, lport: u16) -> String {
    table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["lport"] == lport && r["state"] == "ESTABLISHED")
        .map(|r| r["cc"].as_str().unwrap_or("none").to_string())
        .unwrap_or_else(|| panic!("no connection on port {lport}: {table:#}"))
}

#[test]
fn a_listeners_own_congestion_holds_for_its_port_over_the_flag() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let file = format!("/tmp/{}.toml", ns.name);
    std::fs::write(
        &file,
        "[adapter]\naddresses = [\"10.0.0.2/24\"]\nhost_addresses = [\"10.0.0.1/24\"]\n\
         processors = 2\ncongestion = \"newreno\"\n\
         [[listener]]\nport = 19\napp = \"chargen\"\nprocessor = 0\ncongestion = \"bbr\"\n\
         [[listener]]\nport = 7\napp = \"echo\"\nprocessor = 1\n",
    )
    .expect("write config");
    // The flag overrides [adapter] congestion, not the listener's own.
    let _vnic = ns.vnic_config(&file, &["--congestion", "cubic"]);
    let control = ns.control_path();
    let table = ns.run(move || {
        let open = |port: u16| {
            let a = SocketAddr::from(([10, 0, 0, 2], port));
            let s = TcpStream::connect_timeout(&a, Duration::from_secs(10)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            s
        };
        let mut chargen = open(19);
        let mut echo = open(7);
        let mut buf = [0u8; 100];
        chargen.read_exact(&mut buf).expect("chargen");
        echo.write_all(b"x").expect("echo");
        echo.read_exact(&mut buf[..1]).expect("echo back");
        let out = Command::new(env!("CARGO_BIN_EXE_vnic"))
            .args(["status", "--sockets", "--json", "--control", &control])
            .output()
            .expect("vnic status");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    });
    let _ = std::fs::remove_file(&file);
    assert_eq!(cc_of(&table, 19), "bbr");
    assert_eq!(cc_of(&table, 7), "cubic");
}
