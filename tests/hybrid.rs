//! The hybrid listener model (issue 19 part 3, NonStop manual §3-9):
//! processor 0 accepts every connection and hands it off to a server
//! processor by the policy; afterwards its bytes flow between the adapter
//! and that processor only. The kernel's TCP is the client, in the test's
//! own namespace.

mod common;

use common::workload::{self, assert_intact};
use common::{body_value, can_run, connect, http_get, Netns};
use std::net::TcpStream;
use std::time::Duration;

fn get(s: &mut TcpStream) -> usize {
    let (status, body) = http_get(s, "/", true);
    assert_eq!(status, 200);
    body_value(&body, "processor")
        .and_then(|v| v.parse().ok())
        .expect("processor=")
}

fn counter(st: &serde_json::Value, k: usize, name: &str) -> u64 {
    st["processors"][k][name].as_u64().unwrap_or(0)
}

#[test]
fn forty_gets_spread_least_busy_and_the_distributor_forwards_nothing_after() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--model", "hybrid", "--processors", "4", "--quiet"]);
    assert!(vnic.ready.contains("model=hybrid"), "{}", vnic.ready);
    assert!(vnic.ready.contains("balance=least-busy"), "{}", vnic.ready);
    let (mut conns, first) = ns.run(|| {
        let mut conns: Vec<TcpStream> = (0..40).map(|_| connect("10.0.0.2:80")).collect();
        let first: Vec<usize> = conns.iter_mut().map(get).collect();
        (conns, first)
    });
    let mut per = [0usize; 4];
    for &p in &first {
        per[p] += 1;
    }
    assert_eq!(per[0], 0, "the distributor serves nothing: {first:?}");
    let (max, min) = (per[1..].iter().max(), per[1..].iter().min());
    assert!(
        max.zip(min).is_some_and(|(a, b)| a - b <= 1),
        "least-busy spreads evenly: {per:?}"
    );
    let before = ns.status_json();
    assert_eq!(counter(&before, 0, "moved_out"), 40, "{before}");
    assert_eq!(
        counter(&before, 0, "bytes_in"),
        0,
        "its apps never read: {before}"
    );
    // Every later request goes straight to the server.
    let again = ns.run(move || {
        let mut v = Vec::new();
        for _ in 0..5 {
            for s in conns.iter_mut() {
                v.push(get(s));
            }
        }
        drop(conns);
        v
    });
    assert_eq!(again.len(), 200);
    for (i, p) in again.iter().enumerate() {
        assert_eq!(*p, first[i % 40], "request {i} stayed on its server");
    }
    let after = ns.status_json();
    for name in ["forwarded", "forwarded_bytes", "bytes_in", "frames_in"] {
        assert_eq!(
            counter(&after, 0, name),
            counter(&before, 0, name),
            "the distributor's {name} did not move after the hand-offs: {after}"
        );
    }
    eprintln!(
        "hybrid: per processor {per:?}; distributor forwarded {} segments ({} bytes) in flight at hand-off, nothing after",
        counter(&after, 0, "forwarded"),
        counter(&after, 0, "forwarded_bytes")
    );
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn round_robin_hands_off_in_turn() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&[
        "--model",
        "hybrid",
        "--processors",
        "4",
        "--balance",
        "round-robin",
        "--quiet",
    ]);
    let on = ns.run(|| {
        let mut conns: Vec<TcpStream> = (0..9).map(|_| connect("10.0.0.2:80")).collect();
        conns.iter_mut().map(get).collect::<Vec<_>>()
    });
    assert_eq!(on, vec![1, 2, 3, 1, 2, 3, 1, 2, 3]);
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn the_hand_off_under_load_loses_nothing() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--model", "hybrid", "--processors", "3", "--quiet"]);
    let load = workload::start(&ns, 3, 32 << 20, 16 << 20);
    std::thread::sleep(Duration::from_millis(300));
    let outcomes = load.finish();
    let stall = assert_intact(&outcomes);
    eprintln!("hybrid under load: every stream intact, longest stall {stall:?}");
    let st = ns.status_json();
    assert_eq!(counter(&st, 0, "moved_out"), 9, "{st}");
    assert_eq!(counter(&st, 0, "hand_off_local"), 0, "{st}");
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn the_hybrid_model_is_refused_where_it_cannot_run() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    for (args, says) in [
        (
            &["--model", "hybrid", "--processors", "1"][..],
            "at least two processors",
        ),
        (
            &["--model", "hybrid", "--backends", "2"][..],
            "--backends belongs to --model distributor",
        ),
    ] {
        ns.refuses(args, says);
    }
}

/// NonStop's standard model (manual §3-2): processor 0 alone listens and
/// starts each connection's server in the processors in turn, itself
/// included.
#[test]
fn the_standard_model_starts_each_server_in_the_processors_in_turn() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--model", "standard", "--processors", "3", "--quiet"]);
    assert!(vnic.ready.contains("model=standard"), "{}", vnic.ready);
    let on = ns.run(|| {
        let mut conns: Vec<TcpStream> = (0..6).map(|_| connect("10.0.0.2:80")).collect();
        conns.iter_mut().map(get).collect::<Vec<_>>()
    });
    assert_eq!(on, vec![0, 1, 2, 0, 1, 2]);
    let st = ns.status_json();
    assert_eq!(
        counter(&st, 0, "accepted"),
        6,
        "the one listener accepted all: {st}"
    );
    assert_eq!(counter(&st, 0, "moved_out"), 4, "and handed four on: {st}");
    let listeners = st["listeners"].as_array().map_or(0, Vec::len);
    assert_eq!(listeners, 4, "one listener per port (7, 9, 19, 80): {st}");
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}
