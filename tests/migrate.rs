//! Live migration (issue 19 part 1): `vnic ctl connection move` and
//! `vnic ctl processor K drain` move live connections between processors
//! with their TCP state and their app's checkpoint, and nothing is lost,
//! duplicated or reordered. The kernel's TCP is the client, in the test's
//! own namespace.

mod common;

use common::workload::{self, assert_intact};
use common::{body_value, can_run, connect, http_get, random_bytes, Netns};
use sha2::{Digest, Sha256};
use std::io::{BufRead, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn processor_of(s: &mut TcpStream) -> String {
    let (status, body) = http_get(s, "/", true);
    assert_eq!(status, 200);
    body_value(&body, "processor").unwrap_or_default()
}

/// `vnic ctl ARGS`: (success, stdout + stderr).
fn ctl(ns: &Netns, args: &[&str]) -> (bool, String) {
    let mut a = vec!["ctl"];
    a.extend_from_slice(args);
    let out = ns.vnic_cmd(&a);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_moved_connection_goes_on_on_its_new_processor_and_bad_moves_get_one_line() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--processors", "2", "--quiet"]);
    let mut s = ns.run(|| connect("10.0.0.2:80"));
    let port = s.local_addr().expect("addr").port();
    assert_eq!(processor_of(&mut s), "0");
    // Either end first.
    let name = format!("10.0.0.1:{port}-10.0.0.2:80");
    let (ok, text) = ctl(&ns, &["connection", "move", &name, "--to", "1"]);
    assert!(ok, "{text}");
    assert!(text.contains("moved to processor 1"), "{text}");
    assert_eq!(processor_of(&mut s), "1");
    let back = format!("10.0.0.2:80-10.0.0.1:{port}");
    let (ok, text) = ctl(&ns, &["connection", "move", &back, "--to", "0"]);
    assert!(ok, "{text}");
    assert_eq!(processor_of(&mut s), "0");
    // Where it already is: ok, and nothing moves.
    let (ok, text) = ctl(&ns, &["connection", "move", &name, "--to", "0"]);
    assert!(ok, "{text}");
    assert!(text.contains("is on processor 0 already"), "{text}");
    assert_eq!(processor_of(&mut s), "0");
    let st = ns.status_json();
    assert_eq!(st["processors"][0]["moved_out"], 1, "{st}");
    assert_eq!(st["processors"][1]["moved_in"], 1, "{st}");
    assert_eq!(st["processors"][1]["moved_out"], 1, "{st}");
    // What cannot be done is said in one line, with status 1.
    for (args, says) in [
        (
            vec!["connection", "move", &name, "--to", "7"],
            "processor 7 does not exist",
        ),
        (
            vec!["connection", "move", "10.0.0.1:1-10.0.0.2:80", "--to", "1"],
            "no processor holds",
        ),
        (
            vec!["connection", "move", "nonsense", "--to", "1"],
            "ADDR:PORT-ADDR:PORT",
        ),
    ] {
        let (ok, text) = ctl(&ns, &args);
        assert!(!ok, "{args:?}: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
        assert_eq!(text.trim().lines().count(), 1, "{text}");
    }
    drop(s);
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// A 256 MiB echo moved back and forth 20 times while it runs.
fn echo_moved_20_times(processor_queues: &str) {
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
    ]);
    let s = ns.run(|| connect("10.0.0.2:7"));
    let port = s.local_addr().expect("addr").port();
    let data = random_bytes(256 << 20, 19);
    let want = Sha256::digest(&data).to_vec();
    let len = data.len();
    // The client paces its writes by the moves made so far (the k-th
    // twentieth of the data goes once k moves are done), so all 20 happen
    // while the echo runs however slow the control socket is on a loaded
    // machine; the bytes still flow between moves.
    let done = Arc::new(AtomicUsize::new(0));
    let run = std::thread::spawn({
        let done = done.clone();
        move || echo_paced(s, data, &done)
    });
    let name = format!("10.0.0.1:{port}-10.0.0.2:7");
    let mut moves = 0;
    let t0 = Instant::now();
    // Straight on the control socket (docs/CONTROL.md): a `vnic ctl`
    // process per move would take longer than the whole echo.
    let mut control = std::os::unix::net::UnixStream::connect(ns.control_path()).expect("control");
    let mut answers = std::io::BufReader::new(control.try_clone().expect("clone"));
    while moves < 20 && !run.is_finished() {
        std::thread::sleep(Duration::from_millis(2));
        let to = (moves + 1) % 2;
        writeln!(
            control,
            r#"{{"cmd":"connection-move","connection":"{name}","to":{to}}}"#
        )
        .expect("request");
        let mut line = String::new();
        answers.read_line(&mut line).expect("answer");
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON answer");
        if v["ok"] == true {
            moves += 1;
            done.store(moves, Ordering::Relaxed);
        } else {
            let e = v["error"].as_str().unwrap_or_default();
            assert!(
                e.contains("try again") || e.contains("no processor holds"),
                "{line}"
            );
        }
    }
    let (n, hash) = run.join().expect("echo");
    assert_eq!(n, len, "every byte back");
    assert_eq!(hash, want, "the same bytes in the same order");
    eprintln!(
        "echo ({processor_queues}): {moves} moves in {:?}, intact",
        t0.elapsed()
    );
    assert_eq!(moves, 20, "only {moves} moves happened while the echo ran");
    let st = ns.status_json();
    let out: u64 = (0..2)
        .map(|k| st["processors"][k]["moved_out"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(out, moves as u64, "{st}");
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// An echo whose part after the k-th twentieth waits until `done` says
/// k moves are made.
fn echo_paced(stream: TcpStream, data: Vec<u8>, done: &Arc<AtomicUsize>) -> (usize, Vec<u8>) {
    let done = done.clone();
    common::echo_paced(stream, data, move |i, n| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while done.load(Ordering::Relaxed) * n < i * 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

#[test]
fn an_echo_moved_back_and_forth_20_times_stays_intact() {
    echo_moved_20_times("off");
}

#[test]
fn an_echo_moved_back_and_forth_with_processor_queues_stays_intact() {
    echo_moved_20_times("on");
}

#[test]
fn drain_under_load_moves_everything_and_resets_nothing() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--processors", "4", "--quiet"]);
    let load = workload::start(&ns, 4, 48 << 20, 64 << 20);
    let placed = workload::processors_of(&ns, &load.ports);
    assert!(placed.contains(&Some(1)), "{placed:?}");
    std::thread::sleep(Duration::from_millis(300));
    let (ok, text) = ctl(&ns, &["processor", "1", "drain"]);
    assert!(ok, "{text}");
    assert!(text.contains("processor 1 drained"), "{text}");
    assert!(text.contains(" 0 reset"), "{text}");
    let st = ns.status_json();
    assert_eq!(st["processors"][1]["state"], "down", "{st}");
    assert_eq!(st["processors"][1]["active"], 0, "{st}");
    assert!(
        st["processors"][1]["moved_out"].as_u64().unwrap_or(0) >= 2,
        "{st}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let outcomes = load.finish();
    let stall = assert_intact(&outcomes);
    eprintln!("drain: every stream intact, longest stall {stall:?}");
    // Nothing new lands on it until it is up again.
    let on = ns.run(|| {
        (0..4)
            .map(|_| processor_of(&mut connect("10.0.0.2:80")))
            .collect::<Vec<_>>()
    });
    assert!(!on.iter().any(|p| p == "1"), "{on:?}");
    let (ok, text) = ctl(&ns, &["processor", "1", "drain"]);
    assert!(!ok && text.contains("processor 1 is down"), "{text}");
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}
