//! The distributor model: one front-end does the socket work, back-ends
//! run the apps, replies come back in order, a failed back-end loses nothing.

mod common;

use common::{body_value, can_run, chargen_mismatch, echo_through, http_get, random_bytes, Netns};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn connect(addr: &str) -> TcpStream {
    let a: SocketAddr = addr.parse().expect("addr");
    let s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s
}

#[test]
fn forty_gets_ten_per_backend_each_naming_its_backend() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--model", "distributor", "--backends", "4"]);
    assert!(
        vnic.ready
            .contains("model=distributor backends=4 balance=round-robin"),
        "{}",
        vnic.ready
    );
    let backends = ns.run(|| {
        let mut v = Vec::new();
        // Half on new connections, half pipelined on one keep-alive connection.
        for _ in 0..20 {
            let (status, body) = http_get(&mut connect("10.0.0.2:80"), "/", false);
            assert_eq!(status, 200);
            assert_eq!(body_value(&body, "processor").as_deref(), Some("0"));
            v.push(
                body_value(&body, "backend")
                    .and_then(|b| b.parse::<usize>().ok())
                    .expect("backend="),
            );
        }
        let mut s = connect("10.0.0.2:80");
        for _ in 0..20 {
            let (status, body) = http_get(&mut s, "/", true);
            assert_eq!(status, 200);
            v.push(
                body_value(&body, "backend")
                    .and_then(|b| b.parse::<usize>().ok())
                    .expect("backend="),
            );
        }
        v
    });
    let mut counts = [0usize; 4];
    for b in &backends {
        counts[*b] += 1;
    }
    assert_eq!(counts, [10, 10, 10, 10], "{backends:?}");
    let expected: Vec<usize> = (0..40).map(|i| i % 4).collect();
    assert_eq!(backends, expected, "strict round-robin per request");
    let st = ns.status_json();
    assert_eq!(st["model"], "distributor");
    let served: Vec<u64> = st["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| b["requests"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(served, vec![10, 10, 10, 10]);
}

#[test]
fn pipelined_requests_come_back_in_order() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--model", "distributor", "--backends", "3"]);
    let bodies = ns.run(|| {
        let mut s = connect("10.0.0.2:80");
        // 12 requests in one write: different back-ends answer them.
        let mut req = String::new();
        for i in 0..12 {
            req.push_str(&format!(
                "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
                if i % 2 == 0 { "" } else { "nope" }
            ));
        }
        s.write_all(req.as_bytes()).expect("write");
        (0..12)
            .map(|_| common::read_response(&mut s).0)
            .collect::<Vec<u16>>()
    });
    let want: Vec<u16> = (0..12)
        .map(|i| if i % 2 == 0 { 200 } else { 404 })
        .collect();
    assert_eq!(bodies, want);
}

#[test]
fn echo_and_chargen_work_through_the_distributor() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&[
        "--model",
        "distributor",
        "--backends",
        "4",
        "--balance",
        "least-busy",
    ]);
    let data = random_bytes(4 << 20, 7);
    let want = Sha256::digest(&data).to_vec();
    let ((n, got), bad) = ns.run(move || {
        let echoed = echo_through(connect("10.0.0.2:7"), data);
        // chargen: 4 MiB keep the pattern.
        (
            echoed,
            chargen_mismatch(&mut connect("10.0.0.2:19"), 0, 4 << 20),
        )
    });
    assert_eq!(n, 4 << 20);
    assert_eq!(got, want, "echo intact through the distributor");
    assert_eq!(bad, None, "chargen pattern intact through the distributor");
}

#[test]
fn backend_down_mid_run_loses_no_request() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--model", "distributor", "--backends", "4"]);
    let ctl = ns.control_path();
    let results = ns.run(move || {
        let mut ok = 0;
        let mut seen_after = std::collections::HashSet::new();
        for i in 0..200 {
            if i == 100 {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_vnic"))
                    .args(["ctl", "backend", "1", "down", "--control", &ctl])
                    .output()
                    .expect("ctl");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let (status, body) = http_get(&mut connect("10.0.0.2:80"), "/", false);
            if status == 200 {
                ok += 1;
            }
            if i > 100 {
                seen_after.insert(body_value(&body, "backend").unwrap_or_default());
            }
        }
        (ok, seen_after)
    });
    assert_eq!(results.0, 200, "every request answered");
    assert!(
        !results.1.contains("1"),
        "back-end 1 served nothing after going down: {:?}",
        results.1
    );
    let st = ns.status_json();
    assert_eq!(st["backends"][1]["state"], "down");
    assert!(ns.vnic_cmd(&["ctl", "backend", "1", "up"]).status.success());
    assert_eq!(ns.status_json()["backends"][1]["state"], "up");
}

#[test]
fn model_flags_are_checked() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let out = ns.vnic_raw(&[
        "up",
        "--tap",
        &ns.tap,
        "--ip",
        "10.0.0.2/24",
        "--backends",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model distributor"));
    let out = ns.vnic_raw(&[
        "up",
        "--tap",
        &ns.tap,
        "--ip",
        "10.0.0.2/24",
        "--model",
        "hybrid",
        "--broker-ports",
        "9000",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model broker"));
}

/// The manual's section 3-8: several distributors share one port under
/// round-robin filtering, all forwarding to one pool of back-ends.
#[test]
fn four_distributors_share_the_port_round_robin_over_one_pool_of_back_ends() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&[
        "--model",
        "distributor",
        "--processors",
        "4",
        "--backends",
        "3",
        "--quiet",
    ]);
    let seen = ns.run(|| {
        (0..8)
            .map(|_| {
                let mut s = common::connect("10.0.0.2:80");
                let (status, body) = common::http_get(&mut s, "/", false);
                assert_eq!(status, 200);
                let front: usize = common::body_value(&body, "processor")
                    .and_then(|v| v.parse().ok())
                    .expect("processor=");
                let backend: usize = common::body_value(&body, "backend")
                    .and_then(|v| v.parse().ok())
                    .expect("backend=");
                (front, backend)
            })
            .collect::<Vec<_>>()
    });
    let fronts: Vec<usize> = seen.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        fronts,
        vec![0, 1, 2, 3, 0, 1, 2, 3],
        "round-robin over the front-ends"
    );
    let mut backends: Vec<usize> = seen.iter().map(|(_, b)| *b).collect();
    backends.sort_unstable();
    backends.dedup();
    assert_eq!(
        backends,
        vec![0, 1, 2],
        "one pool, all of it used: {seen:?}"
    );
    // Echo through every front-end at once, each intact.
    let echoes: Vec<_> = (0..4)
        .map(|i| {
            let data = common::random_bytes(4 << 20, i);
            ns.spawn(move || {
                let want = data.clone();
                let (n, _) = common::echo_through(common::connect("10.0.0.2:7"), data);
                (n, want.len())
            })
        })
        .collect();
    for e in echoes {
        let (n, len) = e.join().expect("echo");
        assert_eq!(n, len);
    }
    let st = ns.status_json();
    let requests: u64 = (0..3)
        .map(|b| st["backends"][b]["requests"].as_u64().unwrap_or(0))
        .sum();
    assert!(requests >= 8, "{st}");
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}
