//! `vnic status --watch`: rates beside the totals every `--interval`;
//! with `--json` one JSON object per line and no screen codes, so it
//! pipes into `jq`; a reader that goes away ends it quietly with status 0.

mod common;

use common::{can_run, http_get, Netns};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `vnic status ARGS --control PATH` running, its stdout and stderr piped.
fn spawn_status(control: &str, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vnic"))
        .arg("status")
        .args(args)
        .args(["--control", control])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vnic status")
}

/// Waits up to 5 s for `child` to exit; its status code and stderr.
fn exit_of(mut child: Child) -> (Option<i32>, String) {
    let code = common::wait_for_exit(&mut child, Duration::from_secs(5));
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (code, err)
}

/// `child` ends with status 0 and nothing on stderr once its reader
/// (already dropped) went away.
fn ends_quietly(child: Child) {
    let (code, err) = exit_of(child);
    assert_eq!(code, Some(0), "stderr: {err}");
    assert!(err.is_empty(), "quietly: {err}");
}

/// New connections to the http app from the namespace until `stop`.
fn traffic(ns: &Netns, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    ns.spawn(move || {
        let a: SocketAddr = "10.0.0.2:80".parse().expect("addr");
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            assert_eq!(http_get(&mut s, "/", false).0, 200);
            n += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        n
    })
}

#[test]
fn watch_json_is_one_object_a_line_with_rates_and_a_closed_pipe_ends_it_with_0() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic_quiet_v4(&["--processors", "2"]);
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(&ns, stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let mut child = spawn_status(
        &ns.control_path(),
        &["--watch", "--json", "--interval", "200ms"],
    );
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut samples: Vec<Value> = Vec::new();
    for _ in 0..6 {
        let line = lines.next().expect("a line").expect("read");
        assert!(!line.contains('\x1b'), "no screen codes: {line:?}");
        samples.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")));
    }
    stop.store(true, Ordering::Relaxed);
    let made = load.join().expect("traffic");
    for (i, s) in samples.iter().enumerate() {
        // The status's fields, as `vnic status --json` has them...
        for key in ["tap", "processors", "adapter", "reset_time", "sample_time"] {
            assert!(!s[key].is_null(), "{key} in line {i}: {s}");
        }
        // ...and the rates beside them.
        let r = &s["rates"];
        assert_eq!(r["processors"].as_array().map(Vec::len), Some(2), "{r}");
        let over = r["over_secs"].as_f64().expect("over_secs");
        if i == 0 {
            assert_eq!(r["since"], "reset", "{r}");
        } else {
            assert_eq!(r["since"], "previous", "{r}");
            assert!((0.15..2.0).contains(&over), "about the interval: {over}");
        }
    }
    let busy = samples[1..].iter().filter(|s| {
        let r = &s["rates"];
        let sum = |key: &str| -> f64 {
            r["processors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p[key].as_f64().unwrap_or(0.0))
                .sum()
        };
        sum("connections_per_sec") > 0.0
            && sum("frames_in_per_sec") > 0.0
            && sum("frames_out_per_sec") > 0.0
            && sum("bytes_in_per_sec") > 0.0
            && r["adapter"]["frames_in_per_sec"].as_f64().unwrap_or(0.0) > 0.0
    });
    assert!(busy.count() >= 3, "{made} connections made: {samples:#?}");
    // The reader goes away: the next sample meets EPIPE and vnic ends.
    drop(lines);
    ends_quietly(child);
}

#[test]
fn watch_json_pipes_into_head_and_jq() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic_quiet_v4(&["--processors", "2"]);
    let vnic = env!("CARGO_BIN_EXE_vnic");
    let control = ns.control_path();
    // `head` quits after three lines; vnic's exit status is the pipe's first.
    let script = format!(
        "{vnic} status --watch --json --interval 100ms --control {control} | head -n 3 > /dev/null; \
         echo \"${{PIPESTATUS[0]}}\""
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if Command::new("jq").arg("--version").output().is_err() {
        eprintln!("*** jq is not installed: the jq half of this test is skipped ***");
        return;
    }
    let script = format!(
        "{vnic} status --watch --json --interval 100ms --control {control} | jq -c --unbuffered \
         '[.rates.since, (.rates.processors | length), .processors[0].id]' | head -n 2"
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[\"reset\",2,0]\n[\"previous\",2,0]\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn watch_table_shows_rates_beside_the_totals_and_a_closed_pipe_ends_it_with_0() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic_quiet_v4(&["--processors", "2"]);
    let mut child = spawn_status(&ns.control_path(), &["--watch", "--interval", "100ms"]);
    let mut out = child.stdout.take().expect("stdout");
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    // Two screens: each starts by clearing it.
    while text.windows(7).filter(|w| w == b"\x1b[H\x1b[2J").count() < 3 {
        let n = out.read(&mut buf).expect("read");
        assert!(n > 0, "vnic ended: {}", String::from_utf8_lossy(&text));
        text.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&text);
    let screen = text.split("\x1b[H\x1b[2J").nth(2).expect("second screen");
    for head in [
        "accepted",
        "conn/s",
        "frames-in",
        "bytes-out",
        "/s",
        "Reset Time",
    ] {
        assert!(screen.contains(head), "{head}: {screen}");
    }
    assert!(screen.contains("/s in,"), "adapter rates: {screen}");
    drop(out);
    ends_quietly(child);
}

#[test]
fn sockets_watch_json_is_one_table_a_line() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic_quiet_v4(&["--processors", "2"]);
    let mut child = spawn_status(
        &ns.control_path(),
        &[
            "--sockets",
            "--state",
            "listen",
            "--watch",
            "--json",
            "--interval",
            "100ms",
        ],
    );
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for _ in 0..3 {
        let line = lines.next().expect("a line").expect("read");
        let t: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let rows = t["rows"].as_array().expect("rows");
        // Two processors, four ports each.
        assert_eq!(rows.len(), 8, "{t}");
        assert!(rows.iter().all(|r| r["state"] == "LISTEN"), "{t}");
        assert!(t["sample_time"].as_str().is_some_and(|s| s.ends_with('Z')));
    }
    drop(lines);
    ends_quietly(child);
}

#[test]
fn a_bad_interval_is_one_line() {
    // Checked before vnic is asked anything: no vnic needed.
    let child = spawn_status("/nonexistent/vnic.sock", &["--watch", "--interval", "5ms"]);
    let (code, err) = exit_of(child);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("--interval") && err.contains("too short"),
        "{err}"
    );
}
