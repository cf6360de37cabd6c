//! A processor's life after a failure, and the planned ways out of
//! service: a failed processor starts again (`--processor-restart`,
//! `vnic ctl processor K restart`) and with process pairs is again its
//! primary's backup, so a second failure loses nothing either; a crash
//! loop is cut short; `down` with pairs hands every connection to the
//! backup without a reset; a drain takes the connections in TIME-WAIT
//! along. The kernel's TCP is the client, in the test's own namespace.

mod common;

use common::workload::{self, assert_intact};
use common::{can_run, Netns};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Long enough that every crash of the first test comes in the middle.
const CHARGEN: usize = 2 << 30;
const ECHO: usize = 256 << 20;

/// Asserts that `vnic ARGS` is refused with an error saying `says`.
fn refused(ns: &Netns, args: &[&str], says: &str) {
    let out = ns.vnic_cmd(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} was not refused");
    assert!(err.contains(says), "{args:?}: {err}");
}

/// The pair whose primary is `k`.
fn pair_of(st: &serde_json::Value, k: usize) -> serde_json::Value {
    st["pairs"]
        .as_array()
        .and_then(|v| v.iter().find(|p| p["primary"] == k))
        .cloned()
        .unwrap_or_else(|| panic!("no pair of processor {k}: {}", st["pairs"]))
}

/// Where fresh HTTP connections land, `n` of them.
fn placed(ns: &Netns, n: usize) -> Vec<String> {
    ns.run(move || {
        (0..n)
            .map(|_| {
                let mut s = TcpStream::connect("10.0.0.2:80").expect("connect");
                let (_, body) = common::http_get(&mut s, "/", false);
                common::body_value(&body, "processor").unwrap_or_default()
            })
            .collect()
    })
}

#[test]
fn a_restarted_processor_is_a_backup_again_and_a_second_crash_loses_nothing() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&[
        "--processors",
        "4",
        "--pairs",
        "--quiet",
        "--processor-restart",
        "300ms",
    ]);
    // A chargen download, an echo stream and a keep-alive HTTP client on
    // each processor: the HTTP clients ask until the end, through every
    // crash.
    let load = workload::start(&ns, 4, CHARGEN, ECHO);
    let on = workload::processors_of(&ns, &load.ports);
    std::thread::sleep(Duration::from_millis(400));
    // 1 fails: 2 takes its connections; 1 comes back, and 0 resyncs it.
    let start = Instant::now();
    ns.crash_and_restart(1, 1);
    let st = ns.status_json();
    assert!(
        pair_of(&st, 1)["takeovers"].as_u64().unwrap_or(0) >= 2,
        "{}",
        st["pairs"]
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while pair_of(&ns.status_json(), 0)["resyncs"]
        .as_u64()
        .unwrap_or(0)
        < 1
    {
        assert!(Instant::now() < deadline, "0 never resynced 1");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let st = ns.status_json();
    assert!(
        pair_of(&st, 0)["standby"].as_u64().unwrap_or(0) >= 2,
        "the restarted 1 holds copies of 0's connections again: {}",
        st["pairs"]
    );
    assert!(
        st["processors"][0]["resync_checkpoints"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "{}",
        st["processors"][0]
    );
    // 2, which holds what it took over from 1, fails: 3 takes it all.
    let second = start.elapsed();
    ns.crash_and_restart(2, 1);
    // 0 fails: the restarted 1 takes its connections from the resync.
    let third = start.elapsed();
    ns.crash_and_restart(0, 1);
    let outcomes = load.finish();
    let stall = assert_intact(&outcomes);
    eprintln!(
        "three crashes (at 0, {second:?}, {third:?}), every stream intact; longest stall {stall:?}"
    );
    for (o, k) in outcomes.iter().zip(&on) {
        eprintln!(
            "  {} (on {k:?}): {} bytes, longest stall {:?}, ended {:?} after the first crash",
            o.name,
            o.bytes,
            o.longest_stall,
            o.stall_end.map(|e| e.saturating_duration_since(start))
        );
    }
    let st = ns.status_json();
    assert!(
        pair_of(&st, 0)["takeovers"].as_u64().unwrap_or(0) >= 2,
        "1 took 0's connections over: {}",
        st["pairs"]
    );
    assert!(
        pair_of(&st, 2)["takeovers"].as_u64().unwrap_or(0) >= 2,
        "{}",
        st["pairs"]
    );
    for p in st["pairs"].as_array().into_iter().flatten() {
        assert_eq!(p["takeover_resets"], 0, "{p}");
    }
    let table = String::from_utf8_lossy(&ns.vnic_cmd(&["status"]).stdout).into_owned();
    assert!(table.contains("processor 1 restarted 1 times"), "{table}");
    // New connections land on the restarted processors again.
    let on = placed(&ns, 8);
    for k in ["0", "1", "2"] {
        assert!(on.iter().any(|p| p == k), "{k} not in {on:?}");
    }
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_crash_loop_is_cut_short_and_restart_brings_it_back() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&[
        "--processors",
        "2",
        "--quiet",
        "--processor-restart",
        "50ms",
    ]);
    for n in 1..=5 {
        ns.crash_and_restart(1, n);
    }
    // The sixth failure within a minute: it stays failed and says why.
    let out = ns.vnic_cmd(&["ctl", "processor", "1", "crash"]);
    assert!(out.status.success());
    let p = ns.wait_for_processor(1, "failed", |p| p["state"] == "failed");
    std::thread::sleep(Duration::from_millis(300));
    let p2 = &ns.status_json()["processors"][1];
    assert_eq!(p2["state"], "failed", "{p2} (was {p})");
    assert_eq!(p2["restarts"], 5, "{p2}");
    let why = p2["restart"].as_str().unwrap_or_default();
    assert!(why.contains("not restarted again"), "{p2}");
    let table = String::from_utf8_lossy(&ns.vnic_cmd(&["status"]).stdout).into_owned();
    assert!(
        table.contains("processor 1 restart: restarted 5 times"),
        "{table}"
    );
    assert_eq!(placed(&ns, 4), vec!["0"; 4]);
    // `up` is still refused; `restart` brings it back.
    refused(
        &ns,
        &["ctl", "processor", "1", "up"],
        "processor 1 has failed",
    );
    let out = ns.vnic_cmd(&["ctl", "processor", "1", "restart"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = &ns.status_json()["processors"][1];
    assert_eq!(p["state"], "up", "{p}");
    assert_eq!(p["restarts"], 6, "{p}");
    assert!(p["restart"].is_null(), "{p}");
    assert!(placed(&ns, 4).iter().any(|p| p == "1"));
    // A live processor is not restarted.
    refused(&ns, &["ctl", "processor", "0", "restart"], "has not failed");
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn with_restart_off_a_crashed_processor_stays_failed_until_asked() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--processors", "2", "--quiet", "--processor-restart", "off"]);
    let mut on1 = ns.run(|| {
        let _ = TcpStream::connect("10.0.0.2:80").expect("connect");
        TcpStream::connect("10.0.0.2:80").expect("connect")
    });
    let out = ns.vnic_cmd(&["ctl", "processor", "1", "crash"]);
    assert!(out.status.success());
    ns.wait_for_processor(1, "failed", |p| p["state"] == "failed");
    std::thread::sleep(Duration::from_millis(1500));
    let p = &ns.status_json()["processors"][1];
    assert_eq!(p["state"], "failed", "{p}");
    assert_eq!(p["restarts"], 0, "{p}");
    assert!(
        p["restart"]
            .as_str()
            .is_some_and(|r| r.contains("--processor-restart off")),
        "{p}"
    );
    // Its connection is gone, as before restarts existed.
    let reset = ns.run(move || {
        use std::io::{Read, Write};
        on1.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = on1.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 64];
        on1.read(&mut buf)
            .err()
            .map(|e| e.kind() == std::io::ErrorKind::ConnectionReset)
    });
    assert_eq!(reset, Some(true));
    assert_eq!(placed(&ns, 4), vec!["0"; 4]);
    let out = ns.vnic_cmd(&["ctl", "processor", "1", "restart"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(placed(&ns, 4).iter().any(|p| p == "1"));
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn with_pairs_down_hands_every_connection_to_the_backup_without_a_reset() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--processors", "4", "--pairs", "--quiet"]);
    let load = workload::start(&ns, 4, 512 << 20, 64 << 20);
    std::thread::sleep(Duration::from_millis(400));
    let out = ns.vnic_cmd(&["ctl", "processor", "1", "down"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    let st = ns.status_json();
    assert_eq!(st["processors"][1]["state"], "down");
    assert_eq!(st["processors"][1]["active"], 0, "{}", st["processors"][1]);
    let outcomes = load.finish();
    let stall = assert_intact(&outcomes);
    eprintln!("down with pairs: every stream intact; longest stall {stall:?}");
    let st = ns.status_json();
    assert!(
        st["processors"][1]["handed_over"].as_u64().unwrap_or(0) >= 2,
        "{}",
        st["processors"][1]
    );
    let pair = pair_of(&st, 1);
    assert!(pair["takeovers"].as_u64().unwrap_or(0) >= 2, "{pair}");
    assert_eq!(pair["takeover_resets"], 0, "{pair}");
    // Back up, it takes new connections again.
    let out = ns.vnic_cmd(&["ctl", "processor", "1", "up"]);
    assert!(out.status.success());
    assert!(placed(&ns, 4).iter().any(|p| p == "1"));
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// nftables counter `name`'s packets in table `netdev vnictw`.
fn counter(ns: &Netns, name: &str) -> u64 {
    let out = ns.exec_ok(&["nft", "list", "counter", "netdev", "vnictw", name]);
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("counter {name}: {out}"))
}

#[test]
fn a_drain_moves_time_wait_and_a_retransmitted_fin_is_acked_not_reset() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--processors", "2", "--quiet"]);
    let mut s = ns.run(|| common::connect("10.0.0.2:80"));
    let port = s.local_addr().expect("addr").port();
    // Connection: close: vnic closes first and ends in TIME-WAIT.
    let (code, body) = common::http_get(&mut s, "/", false);
    assert_eq!(code, 200);
    let k: usize = common::body_value(&body, "processor")
        .and_then(|p| p.parse().ok())
        .expect("processor=");
    let other = 1 - k;
    // vnic's ACK of the client's FIN is lost: the client stays in
    // LAST-ACK and sends its FIN again until one is answered. RSTs from
    // vnic to the client are counted.
    let tap = ns.tap.clone();
    ns.nft(&format!(
        "table netdev vnictw {{\n counter rst {{ }}\n chain c {{ type filter hook ingress device \"{tap}\" priority 0; \
         tcp dport {port} tcp flags & rst == rst counter name rst; }}\n}}\n\
         table netdev vnictwdrop {{\n chain c {{ type filter hook ingress device \"{tap}\" priority 0; \
         tcp dport {port} tcp flags & (fin | syn | rst | ack) == ack drop; }}\n}}\n"
    ));
    drop(s);
    ns.wait_for_processor(k, "in TIME-WAIT", |p| p["time_wait"] == 1);
    let out = ns.vnic_cmd(&["ctl", "processor", &k.to_string(), "drain"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("1 connections in TIME-WAIT moved"), "{said}");
    let st = ns.status_json();
    assert_eq!(st["processors"][k]["time_wait"], 0, "{}", st["processors"]);
    assert_eq!(
        st["processors"][other]["time_wait"], 1,
        "{}",
        st["processors"]
    );
    let frames_before = st["processors"][other]["frames_in"].as_u64().unwrap_or(0);
    // The client's next FIN reaches the record where it went.
    ns.exec_ok(&["nft", "delete", "table", "netdev", "vnictwdrop"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ss = ns.exec_ok(&["ss", "-tnH", "state", "last-ack"]);
        if !ss.contains(&format!(":{port} ")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client never left LAST-ACK: {ss}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = ns.status_json();
    assert!(
        st["processors"][other]["frames_in"].as_u64().unwrap_or(0) > frames_before,
        "the FIN reached processor {other}: {}",
        st["processors"]
    );
    assert_eq!(counter(&ns, "rst"), 0, "the retransmitted FIN was reset");
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}
