//! `vnic replay`: a session recorded under loss and reordering, with SYN
//! cookies on, replays with no divergence; a copy of its trace with one
//! inbound payload byte changed diverges at the frame that byte reaches;
//! the regression test `--emit-test` writes is the one checked in
//! (tests/regressions/), which passes and fails against a broken stack
//! (tests/regressions.rs).

mod common;

use common::{can_run, chargen_mismatch, connect, echo_through, http_get, random_bytes, Netns};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Records a session in `ns`: curl to the HTTP port, an echo of 20 KiB,
/// 64 KiB of chargen, on 2 processors, with `--impair
/// loss=2%,reorder=5%` and SYN cookies for every connection
/// (`--syn-backlog 0`), traced with its secrets to `file`.
fn record(ns: &Netns, file: &Path) {
    let pcap = file.to_string_lossy().into_owned();
    let vnic = ns.vnic(&[
        "--processors",
        "2",
        "--offload",
        "off",
        "--processor-queues",
        "off",
        "--impair",
        "loss=2%,reorder=5%,seed=11",
        "--syn-backlog",
        "0",
        "--pcap",
        &pcap,
        "--pcap-secrets",
        "-q",
    ]);
    let out = ns.exec_ok(&[
        "curl", "-s", "--max-time", "20", "--retry", "3", "http://10.0.0.2/",
    ]);
    assert!(out.contains("processor="), "curl: {out}");
    ns.run(|| {
        let data = random_bytes(20 << 10, 7);
        let (n, _) = echo_through(connect("10.0.0.2:7"), data);
        assert_eq!(n, 20 << 10, "echo");
        let mut s = connect("10.0.0.2:19");
        assert_eq!(chargen_mismatch(&mut s, 0, 64 << 10), None, "chargen");
        let mut s = connect("10.0.0.2:80");
        let (status, _) = http_get(&mut s, "/", false);
        assert_eq!(status, 200);
    });
    // The last ACKs and FINs settle before the trace closes.
    std::thread::sleep(Duration::from_millis(500));
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "vnic stopped badly: {err}");
}

/// `vnic replay ARGS`.
fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vnic"))
        .arg("replay")
        .args(args)
        .output()
        .expect("run vnic replay")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Keeps a trace that did not replay as expected, for a look.
fn kept(file: &Path) -> String {
    let to = std::env::temp_dir().join(format!("vnic-replay-kept-{}.pcapng", std::process::id()));
    match std::fs::copy(file, &to) {
        Ok(_) => format!("\nthe trace is kept as {}", to.display()),
        Err(e) => format!("\nthe trace could not be kept: {e}"),
    }
}

/// A directory removed on drop.
struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("vnic-replay-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        Dir(d)
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_lossy_session_with_syn_cookies_replays_identically() {
    if !can_run() {
        return;
    }
    let dir = Dir::new("same");
    let file = dir.0.join("session.pcapng");
    let ns = Netns::new();
    record(&ns, &file);
    let out = replay(&[file.to_str().expect("path"), "--report", "all"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}{}", kept(&file));
    assert!(t.contains("identical to the trace"), "{t}");
}
