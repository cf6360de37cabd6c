//! Live management: `vnic status`, `vnic ctl`, the control socket's
//! guarantees (one vnic per TAP, stale sockets replaced).

mod common;

use common::{body_value, can_run, http_get, Netns};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn connect() -> TcpStream {
    let a: SocketAddr = "10.0.0.2:80".parse().expect("addr");
    let s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

fn get_processor(s: &mut TcpStream, keep: bool) -> usize {
    let (status, body) = http_get(s, "/", keep);
    assert_eq!(status, 200);
    body_value(&body, "processor")
        .and_then(|v| v.parse().ok())
        .expect("processor=")
}

fn new_connections(ns: &Netns, n: usize) -> Vec<usize> {
    ns.run(move || {
        (0..n)
            .map(|_| get_processor(&mut connect(), false))
            .collect()
    })
}

#[test]
fn status_json_shows_the_traffic_the_test_caused() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--processors", "4"]);
    new_connections(&ns, 6);
    ns.exec_ok(&["ping", "-c", "2", "-i", "0.2", "10.0.0.2"]);
    let st = ns.status_json();
    let procs = st["processors"].as_array().expect("processors");
    let accepted: Vec<u64> = procs
        .iter()
        .map(|p| p["accepted"].as_u64().unwrap_or(99))
        .collect();
    assert_eq!(accepted, vec![2, 2, 1, 1], "{st:#}");
    for p in procs {
        assert_eq!(p["state"], "up");
        assert_eq!(p["ports"], serde_json::json!([7, 9, 19, 80]));
        assert!(p["bytes_in"].as_u64().unwrap_or(0) > 0 || p["accepted"] == 0);
    }
    let a = &st["adapter"];
    assert!(a["icmp_echo_replies"].as_u64().unwrap_or(0) >= 2, "{a}");
    assert!(a["arp_replies"].as_u64().unwrap_or(0) >= 1, "{a}");
    assert!(a["frames_in"].as_u64().unwrap_or(0) >= 6 * 4, "{a}");
    assert_eq!(st["filter"], "round-robin");
    // The human table names every processor.
    let out = ns.vnic_cmd(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("accepted") && table.lines().count() > 6,
        "{table}"
    );
}

#[test]
fn processor_down_resets_its_connections_and_leaves_the_rotation() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--processors", "4"]);
    // Four keep-alive connections, one per processor.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let holder = {
        let path = format!("/var/run/netns/{}", ns.name);
        std::thread::spawn(move || {
            use std::os::unix::io::AsRawFd;
            let f = std::fs::File::open(&path).expect("netns");
            // SAFETY: valid namespace fd, this thread only.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let mut conns: Vec<TcpStream> = (0..4).map(|_| connect()).collect();
            let placed: Vec<usize> = conns.iter_mut().map(|s| get_processor(s, true)).collect();
            done_tx.send(placed).expect("send");
            rx.recv().expect("wait for ctl");
            // The connection on processor 1 was reset; the others still answer.
            let mut outcome = Vec::new();
            for s in &mut conns {
                let mut b = [0u8; 1];
                s.set_read_timeout(Some(Duration::from_millis(300)))
                    .expect("t");
                let r = s.read(&mut b);
                outcome.push(match r {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => "reset",
                    Ok(0) => "closed",
                    Ok(_) => "data",
                    Err(_) => "open",
                });
            }
            outcome
        })
    };
    let placed = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("placed");
    assert_eq!(placed, vec![0, 1, 2, 3]);
    let out = ns.vnic_cmd(&["ctl", "processor", "1", "down"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    tx.send(()).expect("go");
    let outcome = holder.join().expect("holder");
    assert_eq!(outcome, vec!["open", "reset", "open", "open"]);
    assert_eq!(new_connections(&ns, 6), vec![0, 2, 3, 0, 2, 3]);
    let st = ns.status_json();
    assert_eq!(st["processors"][1]["state"], "down");
    assert_eq!(st["processors"][1]["active"], 0);
    let out = ns.vnic_cmd(&["ctl", "processor", "1", "up"]);
    assert!(out.status.success());
    assert_eq!(new_connections(&ns, 4), vec![0, 1, 2, 3]);
}

#[test]
fn filter_changes_at_run_time() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--processors", "4"]);
    assert_eq!(new_connections(&ns, 2), vec![0, 1]);
    assert!(ns.vnic_cmd(&["ctl", "filter", "none"]).status.success());
    assert_eq!(new_connections(&ns, 3), vec![0, 0, 0]);
    assert_eq!(ns.status_json()["filter"], "none");
    assert!(ns
        .vnic_cmd(&["ctl", "filter", "round-robin"])
        .status
        .success());
    assert_eq!(new_connections(&ns, 2), vec![2, 3]);
    let bad = ns.vnic_cmd(&["ctl", "processor", "9", "down"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("processor 9 does not exist"));
}

#[test]
fn second_vnic_on_same_tap_is_refused_and_stale_socket_replaced() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    // A stale socket file, as a crashed vnic leaves it.
    {
        let l = std::os::unix::net::UnixListener::bind(ns.control_path()).expect("bind");
        drop(l);
    }
    assert!(std::path::Path::new(&ns.control_path()).exists());
    let _vnic = ns.vnic(&[]);
    let ctl = ns.control_path();
    let out = ns.vnic_raw(&[
        "up",
        "--tap",
        &ns.tap,
        "--ip",
        "10.0.0.2/24",
        "--control",
        &ctl,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another vnic is running"), "{err}");
    // Same TAP, another control path: the TAP itself says busy.
    let out = ns.vnic_raw(&[
        "up",
        "--tap",
        &ns.tap,
        "--ip",
        "10.0.0.2/24",
        "--control",
        "/tmp/vnic-other-test.sock",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("busy"), "{err}");
}
