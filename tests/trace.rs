//! Packet trace: the pcapng file opens with tshark, has every frame with
//! the adapter's decision as its comment, and survives a SIGTERM in the
//! middle of traffic.

mod common;

use common::{can_run, have_tshark, http_get, Netns, Vnic};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// (comment) of every packet in the file, via tshark: every Ethernet
/// frame (tshark also lists the processors' batch records, pcapng custom
/// blocks, as records without a packet; the display filter leaves them
/// out).
fn comments(file: &str) -> (Vec<String>, String) {
    let out = Command::new("tshark")
        .args([
            "-r",
            file,
            "-Y",
            "eth",
            "-T",
            "fields",
            "-e",
            "frame.comment",
        ])
        .output()
        .expect("run tshark");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tshark failed: {err}");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|s| s.to_string())
        .collect();
    (lines, err)
}

/// Frames vnic counted in and out, from `vnic status --json`.
fn frames_counted(st: &serde_json::Value) -> u64 {
    st["adapter"]["frames_in"].as_u64().expect("in")
        + st["adapter"]["frames_out"].as_u64().expect("out")
}

/// Stops vnic (it must exit 0), reads the comment of every packet in
/// `file` (then removes it), and checks the file holds one packet per
/// frame vnic counted, each with a comment.
fn stop_and_read_all(vnic: Vnic, file: &str, frames: u64) -> Vec<String> {
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
    // The summary at exit (issue 17 part 7) adds up to what status said.
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("vnic: stopped: "))
        .unwrap_or_else(|| panic!("no summary line at exit: {err}"));
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    // in, out, connections, closed, reset, records, lost
    assert_eq!(n.len(), 7, "{line}");
    assert_eq!(n[0] + n[1], frames, "frames in and out: {line}");
    assert_eq!(
        (n[5], n[6]),
        (frames, 0),
        "trace records written, lost: {line}"
    );
    let (c, terr) = comments(file);
    let _ = std::fs::remove_file(file);
    assert!(!terr.contains("cut short"), "{terr}");
    assert_eq!(c.len() as u64, frames, "one record per frame vnic counted");
    assert!(
        c.iter().all(|x| !x.is_empty()),
        "every packet has a comment"
    );
    c
}

fn connect() -> TcpStream {
    let a: SocketAddr = "10.0.0.2:80".parse().expect("addr");
    let s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

#[test]
fn pcapng_has_every_frame_with_its_decision() {
    if !can_run() || !have_tshark() {
        return;
    }
    let ns = Netns::new();
    let file = format!("/tmp/{}.pcapng", ns.name);
    let vnic = ns.vnic_quiet_v4(&["--processors", "4", "--pcap", &file]);
    ns.run(|| {
        for _ in 0..4 {
            let (status, _) = http_get(&mut connect(), "/", false);
            assert_eq!(status, 200);
        }
        // A closed port and a bad request add other decisions.
        let a: SocketAddr = "10.0.0.2:81".parse().expect("addr");
        assert!(TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_err());
    });
    ns.exec_ok(&["ping", "-c", "1", "-W", "2", "10.0.0.2"]);
    std::thread::sleep(Duration::from_millis(1500)); // TIME-WAIT (1 s) ends, FINs settle
    let st = ns.status_json();
    let frames = frames_counted(&st);
    let c = stop_and_read_all(vnic, &file, frames);
    let new: Vec<&String> = c.iter().filter(|x| x.contains("rr-new")).collect();
    assert_eq!(new.len(), 4, "{c:?}");
    for (k, line) in new.iter().enumerate() {
        assert!(
            line.starts_with(&format!("in cpu={k} rr-new port=80 slot={k}")),
            "{line}"
        );
    }
    for want in [
        "in adapter arp-reply",
        "out adapter arp-reply",
        "in cpu=0 flow",
        "out cpu=3",
        "in adapter rst closed-port",
        "out adapter rst",
        "in adapter echo-reply",
        "out adapter echo-reply",
    ] {
        assert!(
            c.iter().any(|x| x.starts_with(want)),
            "no {want:?} in {c:?}"
        );
    }
    // The request comes before its answer.
    let req = c
        .iter()
        .position(|x| x.starts_with("in adapter arp-reply"))
        .expect("arp in");
    let rep = c
        .iter()
        .position(|x| x.starts_with("out adapter arp-reply"))
        .expect("arp out");
    assert!(req < rep);
}

/// With four RX queues (four adapter threads recording into one trace)
/// the file still has every frame, each with its decision, and the
/// round-robin filter they share still places connections in turn.
#[test]
fn pcapng_from_four_rx_queues_has_every_frame() {
    if !can_run() || !have_tshark() {
        return;
    }
    let ns = Netns::new();
    let file = format!("/tmp/{}.pcapng", ns.name);
    let vnic = ns.vnic_quiet_v4(&["--processors", "4", "--rx-queues", "4", "--pcap", &file]);
    ns.run(|| {
        for _ in 0..16 {
            let (status, _) = http_get(&mut connect(), "/", false);
            assert_eq!(status, 200);
        }
    });
    std::thread::sleep(Duration::from_millis(1500)); // TIME-WAIT (1 s) ends
    let st = ns.status_json();
    let frames = frames_counted(&st);
    let per_queue: Vec<u64> = st["adapter"]["rx_queues"]
        .as_array()
        .expect("rx_queues")
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    let c = stop_and_read_all(vnic, &file, frames);
    assert!(
        per_queue.iter().filter(|n| **n > 0).count() >= 2,
        "connections came in on several queues: {per_queue:?}"
    );
    let new: Vec<&String> = c.iter().filter(|x| x.contains("rr-new")).collect();
    assert_eq!(new.len(), 16, "{c:?}");
    for (k, line) in new.iter().enumerate() {
        assert!(
            line.starts_with(&format!("in cpu={} rr-new", k % 4)),
            "{line}"
        );
    }
}

#[test]
fn pcapng_cut_by_sigterm_mid_traffic_is_readable() {
    if !can_run() || !have_tshark() {
        return;
    }
    let ns = Netns::new();
    let file = format!("/tmp/{}.pcapng", ns.name);
    let vnic = ns.vnic_quiet_v4(&["--pcap", &file]);
    let pid = vnic.pid().expect("pid");
    let reader = {
        let path = format!("/var/run/netns/{}", ns.name);
        std::thread::spawn(move || {
            use std::os::unix::io::AsRawFd;
            let f = std::fs::File::open(&path).expect("netns");
            // SAFETY: valid namespace fd, this thread only.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let a: SocketAddr = "10.0.0.2:19".parse().expect("addr");
            let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("t");
            let mut buf = vec![0u8; 65536];
            let mut got = 0usize;
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got += n;
            }
            got
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    // ip netns exec runs vnic as its child under the same pid (exec), so
    // SIGTERM reaches vnic itself.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
    let got = reader.join().expect("reader");
    assert!(
        got > 1 << 20,
        "traffic was flowing when the signal came ({got} bytes)"
    );
    let (c, terr) = comments(&file);
    let _ = std::fs::remove_file(&file);
    assert!(
        !terr.contains("cut short") && !terr.contains("appears to"),
        "{terr}"
    );
    assert!(c.len() > 100, "{} packets", c.len());
    assert!(c.iter().all(|x| !x.is_empty()));
}

#[test]
fn ctl_trace_turns_a_pcap_on_and_off_at_run_time() {
    if !can_run() || !have_tshark() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic_quiet_v4(&[]);
    let file = format!("/tmp/{}-ctl.pcapng", ns.name);
    assert_eq!(ns.status_json()["trace"]["active"], false);
    let on = ns.vnic_cmd(&["ctl", "trace", "on", &file]);
    assert!(
        on.status.success(),
        "{}",
        String::from_utf8_lossy(&on.stderr)
    );
    ns.run(|| {
        let (status, _) = http_get(&mut connect(), "/", false);
        assert_eq!(status, 200);
    });
    assert_eq!(ns.status_json()["trace"]["active"], true);
    assert!(ns.vnic_cmd(&["ctl", "trace", "off"]).status.success());
    let (c, _) = comments(&file);
    let _ = std::fs::remove_file(&file);
    assert!(c.iter().any(|x| x.contains("rr-new port=80")), "{c:?}");
}
