//! A failed processor starts again in the listener models other than the
//! standard one: in the hybrid model a server processor and the acceptor
//! (processor 0) each come back and take their part again, and the
//! connections of the processors that did not fail never notice; in the
//! distributor model the front-end comes back and its back-ends serve
//! again. The kernel's TCP is the client, in the test's own namespace.

mod common;

use common::{body_value, can_run, connect, http_get, Netns};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One keep-alive GET on `s`: the body's `key=` value.
fn get(s: &mut TcpStream, key: &str) -> String {
    let (status, body) = http_get(s, "/", true);
    assert_eq!(status, 200, "{body}");
    body_value(&body, key).unwrap_or_else(|| panic!("no {key}= in {body}"))
}

/// Whether the connection is reset: already (the failed processor, or
/// whoever holds its queue while it is dead, answered a late ACK with RST:
/// the socket holds the error), or in answer to a request written now.
fn reset(s: &mut TcpStream) -> bool {
    let is_reset = |e: &std::io::Error| e.kind() == ErrorKind::ConnectionReset;
    if s.take_error().ok().flatten().is_some_and(|e| is_reset(&e)) {
        return true;
    }
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    if let Err(e) = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") {
        return is_reset(&e);
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Err(e) if is_reset(&e))
}

#[test]
fn hybrid_server_and_acceptor_restart_and_take_their_part_again() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&[
        "--model",
        "hybrid",
        "--processors",
        "3",
        "--balance",
        "round-robin",
        "--quiet",
        "--processor-restart",
        "300ms",
    ]);
    // Four keep-alive connections, handed off to 1, 2, 1, 2.
    let (conns, on) = ns.run(|| {
        let mut conns: Vec<TcpStream> = (0..4).map(|_| connect("10.0.0.2:80")).collect();
        let on: Vec<String> = conns.iter_mut().map(|s| get(s, "processor")).collect();
        (conns, on)
    });
    assert_eq!(on, ["1", "2", "1", "2"]);
    // Server 2 fails and comes back: its connections are reset, 1's go on.
    ns.crash_and_restart(2, 1);
    let (conns, after) = ns.run(move || {
        let mut conns = conns;
        let after: Vec<bool> = conns
            .iter_mut()
            .zip(["1", "2", "1", "2"])
            .map(|(s, p)| {
                if p == "1" {
                    get(s, "processor") == "1"
                } else {
                    reset(s)
                }
            })
            .collect();
        (conns, after)
    });
    assert_eq!(after, [true; 4], "1's answered, 2's were reset");
    // The restarted 2 is handed new connections again.
    let fresh = ns.run(|| {
        (0..4)
            .map(|_| get(&mut connect("10.0.0.2:80"), "processor"))
            .collect::<Vec<_>>()
    });
    assert!(fresh.iter().any(|p| p == "2"), "{fresh:?}");
    assert!(fresh.iter().all(|p| p != "0"), "{fresh:?}");
    // The acceptor fails and comes back: the servers' connections never
    // went through it, and it accepts and hands off again.
    ns.crash_and_restart(0, 1);
    let (still, fresh) = ns.run(move || {
        let mut conns = conns;
        let still: Vec<String> = [0, 2]
            .iter()
            .map(|&i| get(&mut conns[i], "processor"))
            .collect();
        let fresh: Vec<String> = (0..4)
            .map(|_| get(&mut connect("10.0.0.2:80"), "processor"))
            .collect();
        (still, fresh)
    });
    assert_eq!(still, ["1", "1"]);
    assert!(
        fresh.iter().all(|p| p == "1" || p == "2"),
        "handed off again: {fresh:?}"
    );
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_distributor_that_restarts_serves_through_its_back_ends_again() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&[
        "--model",
        "distributor",
        "--processors",
        "2",
        "--backends",
        "2",
        "--quiet",
        "--processor-restart",
        "300ms",
    ]);
    // One keep-alive connection on each front-end; requests go round the
    // one pool of back-ends.
    let (held, before) = ns.run(|| {
        let mut held = [connect("10.0.0.2:80"), connect("10.0.0.2:80")];
        let front: Vec<String> = held.iter_mut().map(|s| get(s, "processor")).collect();
        let backs: Vec<String> = (0..4).map(|_| get(&mut held[1], "backend")).collect();
        (held, (front, backs))
    });
    assert_eq!(before.0, ["0", "1"]);
    assert!(
        before.1.iter().any(|b| b == "0") && before.1.iter().any(|b| b == "1"),
        "{before:?}"
    );
    // Front-end 0 fails and comes back: its connection is gone with it,
    // 1's goes on through both back-ends, and new connections reach the
    // restarted 0 again.
    ns.crash_and_restart(0, 1);
    let (was_reset, still, fresh) = ns.run(move || {
        let [mut on0, mut on1] = held;
        let was_reset = reset(&mut on0);
        let still: Vec<String> = (0..4).map(|_| get(&mut on1, "backend")).collect();
        let fresh: Vec<String> = (0..4)
            .map(|_| get(&mut connect("10.0.0.2:80"), "processor"))
            .collect();
        (was_reset, still, fresh)
    });
    assert!(was_reset, "the failed front-end's connection is reset");
    let mut seen = still.clone();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        ["0", "1"],
        "both back-ends serve 1's connection: {still:?}"
    );
    assert!(fresh.iter().any(|p| p == "0"), "0 accepts again: {fresh:?}");
    let st = ns.status_json();
    assert_eq!(st["processors"][0]["restarts"], 1, "{st}");
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}
