//! Process pairs (issue 19 part 2): with `--pairs`, a processor that
//! crashes (`vnic ctl processor K crash`, or a real panic) loses nothing:
//! its backup goes on with every connection from the last checkpoint.
//! Without pairs only the crashed processor's connections are reset. The
//! kernel's TCP is the client, in the test's own namespace.

mod common;

use common::workload::{self, assert_intact};
use common::{can_run, Netns};
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Long enough that the crash comes in the middle (a chargen stream runs
/// at several Gbit/s).
const CHARGEN: usize = 512 << 20;
const ECHO: usize = 64 << 20;

/// Waits until processor `k` shows failed; returns its failure.
fn wait_failed(ns: &Netns, k: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = ns.status_json();
        let p = &st["processors"][k];
        if p["state"] == "failed" {
            return p["failure"].as_str().unwrap_or_default().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "processor {k} never failed: {st}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn crash_mid_transfer(processor_queues: &str) {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&[
        "--processors",
        "4",
        "--pairs",
        "--quiet",
        "--processor-queues",
        processor_queues,
        // Failed it stays (tests/lifecycle.rs has the restarts).
        "--processor-restart",
        "off",
    ]);
    let load = workload::start(&ns, 4, CHARGEN, ECHO);
    std::thread::sleep(Duration::from_millis(400));
    let st = ns.status_json();
    assert!(
        st["pairs"][1]["standby"].as_u64().unwrap_or(0) >= 2,
        "processor 2 holds copies of processor 1's connections: {}",
        st["pairs"]
    );
    let crashed = Instant::now();
    let out = ns.vnic_cmd(&["ctl", "processor", "1", "crash"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_failed(&ns, 1).contains("crashed on request"));
    std::thread::sleep(Duration::from_millis(300));
    let outcomes = load.finish();
    let stall = assert_intact(&outcomes);
    eprintln!(
        "pairs ({processor_queues}): every stream intact after the crash {:?} ago; longest stall {stall:?}",
        crashed.elapsed()
    );
    for o in &outcomes {
        eprintln!(
            "  {}: {} bytes, longest stall {:?}",
            o.name, o.bytes, o.longest_stall
        );
    }
    let st = ns.status_json();
    let pair = st["pairs"]
        .as_array()
        .and_then(|v| v.iter().find(|p| p["primary"] == 1))
        .cloned()
        .expect("pair of processor 1");
    assert_eq!(pair["backup"], 2, "{pair}");
    assert!(pair["takeovers"].as_u64().unwrap_or(0) >= 2, "{pair}");
    assert_eq!(pair["takeover_resets"], 0, "{pair}");
    let table = String::from_utf8_lossy(&ns.vnic_cmd(&["status"]).stdout).into_owned();
    assert!(table.contains("pairs: "), "{table}");
    // New connections skip the failed processor.
    let placed = ns.run(|| {
        (0..6)
            .map(|_| {
                let mut s = TcpStream::connect("10.0.0.2:80").expect("connect");
                let (_, body) = common::http_get(&mut s, "/", false);
                common::body_value(&body, "processor").unwrap_or_default()
            })
            .collect::<Vec<_>>()
    });
    assert!(!placed.iter().any(|p| p == "1"), "{placed:?}");
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn with_pairs_a_crashed_processors_connections_go_on_at_its_backup() {
    crash_mid_transfer("off");
}

#[test]
fn with_pairs_and_processor_queues_the_same() {
    crash_mid_transfer("on");
}

#[test]
fn without_pairs_only_the_crashed_processors_connections_are_reset() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--processors", "4", "--quiet", "--processor-restart", "off"]);
    // Shorter streams: a chargen reader on the crashed processor, having
    // nothing to send, waits for its read timeout.
    let load = workload::start(&ns, 4, 48 << 20, 24 << 20);
    let placed = workload::processors_of(&ns, &load.ports);
    std::thread::sleep(Duration::from_millis(300));
    let crashed = Instant::now();
    let out = ns.vnic_cmd(&["ctl", "processor", "1", "crash"]);
    assert!(out.status.success());
    wait_failed(&ns, 1);
    std::thread::sleep(Duration::from_millis(200));
    let outcomes = load.finish();
    let on1: Vec<&workload::Outcome> = outcomes
        .iter()
        .zip(&placed)
        .filter(|(_, p)| **p == Some(1))
        .map(|(o, _)| o)
        .collect();
    assert!(!on1.is_empty(), "{placed:?}");
    // Processor 1's streams end: reset at the client's next segment (an
    // HTTP request, an echo write), or, for a chargen reader that has
    // nothing to send, never answered again — unless what the client had
    // already received was all it wanted.
    let _ = crashed;
    assert!(
        on1.iter()
            .any(|o| o.error.as_deref().is_some_and(|e| e.contains("reset"))),
        "{on1:#?}"
    );
    for (o, p) in outcomes.iter().zip(&placed) {
        if *p != Some(1) {
            assert!(o.error.is_none(), "{} was touched: {o:?}", o.name);
        }
    }
    assert!(ns.status_json()["pairs"].is_null());
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_real_panic_in_a_processor_is_taken_over_like_a_crash() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    // Compiled into every test build, the fault is armed only so.
    let vnic = ns.vnic_env(
        &["VNIC_TEST_FAULTS=1"],
        &[
            "--processors",
            "2",
            "--pairs",
            "--quiet",
            "--processor-restart",
            "off",
        ],
    );
    let load = workload::start(&ns, 2, 16 << 20, 8 << 20);
    // The 7th connection lands on processor 0: its segment panics it.
    let echoed = ns.run(|| {
        let a: SocketAddr = "10.0.0.2:7".parse().expect("addr");
        let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(b"VNIC-TEST-PANIC").expect("write");
        let mut back = [0u8; 15];
        match s.read_exact(&mut back) {
            Ok(()) => Ok(back.to_vec()),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    });
    let failure = wait_failed(&ns, 0);
    assert!(failure.contains("test fault"), "{failure}");
    // Its backup took the panicking connection over too: the segment
    // came again and was answered there.
    assert_eq!(echoed.as_deref(), Ok(&b"VNIC-TEST-PANIC"[..]));
    let outcomes = load.finish();
    let stall = assert_intact(&outcomes);
    eprintln!("panic: every stream intact, longest stall {stall:?}");
    let st = ns.status_json();
    assert!(
        st["pairs"][0]["takeovers"].as_u64().unwrap_or(0) >= 3,
        "{}",
        st["pairs"]
    );
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.lines().next().is_some_and(|l| l
            == "vnic: warning: test-only faults armed (VNIC_TEST_FAULTS=1, a test build): \
                a segment carrying VNIC-TEST-PANIC panics its processor"),
        "{err}"
    );
}

/// A test-built vnic (the fault compiled in, as `cargo test` builds it)
/// started without `VNIC_TEST_FAULTS` behaves as a release one: the
/// marker is ordinary data, echoed back on every processor, none fails,
/// and nothing warns.
#[test]
fn the_fault_marker_is_ordinary_data_unless_armed() {
    let bin = std::fs::read(env!("CARGO_BIN_EXE_vnic")).expect("read the vnic binary");
    let mark = b"VNIC-TEST-PANIC";
    assert!(
        bin.windows(mark.len()).any(|w| w == mark),
        "the vnic under test was built without the test-only faults"
    );
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic_env(
        &["-u", "VNIC_TEST_FAULTS"],
        &["--processors", "2", "--quiet"],
    );
    // Round-robin: two connections, one on each processor.
    for _ in 0..2 {
        let echoed = ns.run(|| {
            let a: SocketAddr = "10.0.0.2:7".parse().expect("addr");
            let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            s.write_all(mark).expect("write");
            let mut back = [0u8; 15];
            s.read_exact(&mut back).map(|()| back.to_vec())
        });
        assert_eq!(echoed.as_deref().ok(), Some(&mark[..]), "{echoed:?}");
    }
    let st = ns.status_json();
    for p in st["processors"].as_array().expect("processors") {
        assert_ne!(p["state"], "failed", "{st}");
    }
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("test-only faults"), "{err}");
}

#[test]
fn a_config_files_listener_backup_is_a_process_pair_on_its_port() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let file = format!("/tmp/{}.toml", ns.name);
    std::fs::write(
        &file,
        "[adapter]\naddresses = [\"10.0.0.2/24\"]\nhost_addresses = [\"10.0.0.1/24\"]\n\
         processors = 4\n[filter]\nmode = \"none\"\n\
         [[listener]]\nport = 7\napp = \"echo\"\nprocessor = 2\nbackup = 3\n\
         [[listener]]\nport = 80\napp = \"http\"\nprocessor = 0\n",
    )
    .expect("write config");
    let vnic = ns.vnic_config(&file, &["--processor-restart", "off"]);
    let st = ns.status_json();
    assert_eq!(
        st["pairs"].as_array().map(Vec::len),
        Some(1),
        "{}",
        st["pairs"]
    );
    assert_eq!(st["pairs"][0]["primary"], 2);
    assert_eq!(st["pairs"][0]["port"], 7);
    assert_eq!(st["pairs"][0]["backup"], 3);
    let data = common::random_bytes(256 << 20, 3);
    let want = Sha256::digest(&data).to_vec();
    let echo = ns.spawn(move || common::echo_through(common::connect("10.0.0.2:7"), data));
    std::thread::sleep(Duration::from_millis(100));
    let out = ns.vnic_cmd(&["ctl", "processor", "2", "crash"]);
    assert!(out.status.success());
    wait_failed(&ns, 2);
    let (n, hash) = echo.join().expect("echo");
    assert_eq!(n, 256 << 20);
    assert_eq!(hash, want, "intact across the takeover");
    let st = ns.status_json();
    assert_eq!(st["pairs"][0]["takeovers"], 1, "{}", st["pairs"]);
    // The listener moved to its backup too: a new echo lands on 3.
    let (n, _) = ns.echo("10.0.0.2:7", b"again".to_vec());
    assert_eq!(n, 5);
    assert_eq!(ns.status_json()["processors"][3]["accepted"], 1);
    let _ = std::fs::remove_file(&file);
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// A short HTTP connection's backup gets the checkpoints a takeover
/// needs and no more (see `processor/pairs.rs`): its SYN's and its
/// response's, not one for a second pass in which the app changed
/// nothing, nor one for its step into TIME-WAIT, after which the copy is
/// forgotten: two each (it was seven with this client: the handshake's
/// last ACK, the request, two second passes and two in TIME-WAIT).
#[test]
fn short_connections_are_checkpointed_where_a_takeover_needs_it() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--processors", "2", "--pairs", "--quiet"]);
    const N: u64 = 200;
    // The request in one write: one segment after the handshake.
    ns.run(|| {
        for _ in 0..N {
            let mut s = common::connect("10.0.0.2:80");
            s.write_all(b"GET / HTTP/1.1\r\nHost: vnic\r\nConnection: close\r\n\r\n")
                .expect("request");
            let (code, _) = common::read_response(&mut s);
            assert_eq!(code, 200);
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).expect("the server's close");
        }
    });
    let sum = |st: &serde_json::Value, what: &str| -> u64 {
        st["pairs"]
            .as_array()
            .map(|v| v.iter().map(|p| p[what].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0)
    };
    // Every copy goes once its connection has ended.
    let deadline = Instant::now() + Duration::from_secs(5);
    let st = loop {
        let st = ns.status_json();
        if sum(&st, "standby") == 0 || Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(sum(&st, "standby"), 0, "copies left: {}", st["pairs"]);
    let accepted: u64 = (0..2)
        .map(|k| st["processors"][k]["accepted"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(accepted, N, "{st}");
    let per = sum(&st, "checkpoints") as f64 / accepted as f64;
    eprintln!("{per:.2} checkpoints per short connection");
    assert!(
        (2.0..=2.5).contains(&per),
        "{per:.2} checkpoints per connection: {}",
        st["pairs"]
    );
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}
