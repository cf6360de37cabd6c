//! `vnic status --sockets` (the socket table, as NonStop's STATUS lists
//! sockets and `ss -ti` shows them) and `vnic ctl stats reset`, with real
//! kernel clients in a network namespace: every connection is listed on
//! the processor that holds it, in its state (SYN-RECEIVED and TIME-WAIT
//! too), the filters select, a listing of thousands of connections is
//! quick and leaves traffic flowing, and a reset zeroes the counters and
//! moves the Reset Time.

mod common;

use common::{can_run, http_get, Netns};
use serde_json::Value;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `vnic status ARGS --control PATH`.
fn vnic_status(control: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vnic"))
        .arg("status")
        .args(args)
        .args(["--control", control])
        .output()
        .expect("run vnic status")
}

/// `vnic status --sockets --json ARGS` as JSON.
fn sockets(control: &str, args: &[&str]) -> Value {
    let out = vnic_status(control, &[&["--sockets", "--json"], args].concat());
    assert!(
        out.status.success(),
        "vnic status --sockets {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("socket table JSON")
}

/// The rows of a socket table.
fn rows(t: &Value) -> Vec<Value> {
    t["rows"].as_array().cloned().unwrap_or_default()
}

fn connect(addr: &str) -> TcpStream {
    let a: SocketAddr = addr.parse().expect("addr");
    let s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// A keep-alive connection to the http app and the processor it is on.
fn http_connection() -> (TcpStream, usize) {
    let mut s = connect("10.0.0.2:80");
    let (status, body) = http_get(&mut s, "/", true);
    assert_eq!(status, 200);
    let p = common::body_value(&body, "processor")
        .and_then(|v| v.parse().ok())
        .expect("processor=");
    (s, p)
}

/// The one-line error a refused `vnic status` printed, with its status.
fn refusal(out: &Output) -> (Option<i32>, String) {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    (out.status.code(), err)
}

#[test]
fn the_socket_table_lists_each_connection_on_its_processor_and_filters_select() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--processors", "4"]);
    let control = ns.control_path();
    ns.run(move || {
        let conns: Vec<(TcpStream, usize)> = (0..8).map(|_| http_connection()).collect();
        let port_of = |s: &TcpStream| s.local_addr().expect("addr").port();
        let all = sockets(&control, &[]);
        let listed = rows(&all);
        for (s, p) in &conns {
            let port = port_of(s);
            let r = listed
                .iter()
                .find(|r| r["fport"] == port && r["lport"] == 80)
                .unwrap_or_else(|| panic!("client port {port} not listed: {all:#}"));
            assert_eq!(r["proto"], "tcp", "{r}");
            assert_eq!(r["state"], "ESTABLISHED", "{r}");
            assert_eq!(
                r["processor"], *p,
                "listed on the processor that answered: {r}"
            );
            assert_eq!(r["laddr"], "10.0.0.2", "{r}");
            assert_eq!(r["faddr"], "10.0.0.1", "{r}");
            assert!(r["connection"].as_u64().is_some(), "{r}");
            assert!(r["cwnd"].as_u64().unwrap_or(0) > 0, "{r}");
            assert_eq!(r["cc"], "cubic", "the default: {r}");
            assert!(r["rto_ms"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
            assert!(r["srtt_ms"].as_f64().is_some(), "an RTT was measured: {r}");
            assert_eq!(r["retransmits"], 0, "{r}");
            assert!(r["bytes_in"].as_u64().unwrap_or(0) > 0, "the request: {r}");
            assert!(
                r["bytes_out"].as_u64().unwrap_or(0) > 0,
                "the response: {r}"
            );
            assert_eq!(
                (r["send_q"].as_u64(), r["recv_q"].as_u64()),
                (Some(0), Some(0))
            );
        }
        // A listener per processor and port, before its connections.
        for k in 0..4 {
            for port in [7, 9, 19, 80] {
                assert!(
                    listed.iter().any(|r| r["state"] == "LISTEN"
                        && r["processor"] == k
                        && r["lport"] == port
                        && r["faddr"] == "*"
                        && r["fport"].is_null()),
                    "processor {k} listens on {port}: {all:#}"
                );
            }
        }
        let order: Vec<(u64, bool)> = listed
            .iter()
            .map(|r| {
                (
                    r["processor"].as_u64().unwrap_or(99),
                    r["state"] != "LISTEN",
                )
            })
            .collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "sorted: {order:?}");

        // Filters.
        let on2 = rows(&sockets(&control, &["--processor", "2"]));
        assert!(on2.iter().all(|r| r["processor"] == 2), "{on2:?}");
        let placed_on_2 = conns.iter().filter(|(_, p)| *p == 2).count();
        assert_eq!(
            on2.iter().filter(|r| r["state"] == "ESTABLISHED").count(),
            placed_on_2
        );
        let est = rows(&sockets(&control, &["--state", "established"]));
        assert_eq!(est.len(), 8, "{est:?}");
        assert!(est.iter().all(|r| r["state"] == "ESTABLISHED"));
        let listen80 = rows(&sockets(&control, &["--state", "LISTEN", "--port", "80"]));
        assert_eq!(listen80.len(), 4, "{listen80:?}");
        let one = port_of(&conns[3].0);
        let by_port = rows(&sockets(&control, &["--port", &one.to_string()]));
        assert_eq!(by_port.len(), 1, "{by_port:?}");
        assert_eq!(by_port[0]["fport"], one);
        assert!(rows(&sockets(&control, &["--state", "time-wait"])).is_empty());

        // The table has the same rows.
        let out = vnic_status(&control, &["--sockets"]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("sockets: "), "{text}");
        assert!(text.contains("Sample Time"), "{text}");
        let head: Vec<&str> = text
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(
            head.join(" "),
            "Proto State Laddr Lport Faddr Fport SendQ RecvQ cpu conn cwnd cc srtt-ms rto-ms rexmt \
             bytes-in bytes-out"
        );
        for (s, p) in &conns {
            let port = port_of(s).to_string();
            let line = text
                .lines()
                .find(|l| l.split_whitespace().nth(5) == Some(port.as_str()))
                .unwrap_or_else(|| panic!("{port} not in the table: {text}"));
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cols[1], "ESTABLISHED", "{line}");
            assert_eq!(cols[8], p.to_string(), "{line}");
        }

        // Bad filters: one line each.
        let (code, err) = refusal(&vnic_status(&control, &["--sockets", "--state", "open"]));
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("unknown state \"open\""), "{err}");
        let (code, err) = refusal(&vnic_status(&control, &["--sockets", "--port", "70000"]));
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("out of range"), "{err}");
        let (code, err) = refusal(&vnic_status(&control, &["--sockets", "--processor", "9"]));
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("processor 9 does not exist"), "{err}");
        drop(conns);
    });
}

/// Drops the kernel's pure ACKs to port 9 on their way to vnic: its
/// handshakes there never complete on vnic's side (the client thinks
/// they did), so vnic holds them in SYN-RECEIVED.
fn hold_handshakes_on_port_9(ns: &Netns) {
    ns.nft(&format!(
        "table netdev vnichalfopen {{\n chain out {{ type filter hook egress device \"{}\" \
         priority 0; tcp dport 9 tcp flags & (fin|syn|rst|ack) == ack drop; }}\n}}\n",
        ns.tap
    ));
}

#[test]
fn half_open_and_time_wait_connections_are_listed() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic_quiet_v4(&["--processors", "2"]);
    hold_handshakes_on_port_9(&ns);
    let control = ns.control_path();
    let (held, half_open, closed_port) = ns.run(move || {
        // Connected as far as the client knows; SYN-RECEIVED at vnic.
        let half: Vec<TcpStream> = (0..3).map(|_| connect("10.0.0.2:9")).collect();
        // vnic closes first after `Connection: close`: TIME-WAIT is ours.
        let mut s = connect("10.0.0.2:80");
        let port = s.local_addr().expect("addr").port();
        let (status, _) = http_get(&mut s, "/", false);
        assert_eq!(status, 200);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        drop(s);
        let ports: Vec<u16> = half
            .iter()
            .map(|s| s.local_addr().expect("addr").port())
            .collect();
        (half, ports, port)
    });
    let syn_rcvd = rows(&sockets(&control, &["--state", "syn-received"]));
    let mut listed: Vec<u64> = syn_rcvd
        .iter()
        .map(|r| r["fport"].as_u64().unwrap_or(0))
        .collect();
    listed.sort_unstable();
    let mut want: Vec<u64> = half_open.iter().map(|p| u64::from(*p)).collect();
    want.sort_unstable();
    assert_eq!(listed, want, "{syn_rcvd:?}");
    assert!(syn_rcvd
        .iter()
        .all(|r| r["state"] == "SYN-RECEIVED" && r["lport"] == 9));
    // `ss` spells it syn-recv.
    assert_eq!(rows(&sockets(&control, &["--state", "SYN_RECV"])).len(), 3);
    let half_open_gauge: u64 = per_processor(&ns.status_json(), "half_open").iter().sum();
    assert_eq!(half_open_gauge, 3, "the table agrees with the gauge");
    // vnic waits for the client's FIN, then lingers: 1 s in these tests.
    let deadline = Instant::now() + Duration::from_millis(800);
    let tw = loop {
        let tw = rows(&sockets(&control, &["--state", "time-wait"]));
        if !tw.is_empty() || Instant::now() > deadline {
            break tw;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(tw.len(), 1, "{tw:?}");
    assert_eq!(tw[0]["fport"], closed_port);
    assert_eq!(tw[0]["lport"], 80);
    assert_eq!(tw[0]["state"], "TIME-WAIT");
    drop(held);
}

/// Numbers of every processor's `key`.
fn per_processor(st: &Value, key: &str) -> Vec<u64> {
    st["processors"]
        .as_array()
        .expect("processors")
        .iter()
        .map(|p| p[key].as_u64().unwrap_or(u64::MAX))
        .collect()
}

#[test]
fn stats_reset_zeroes_the_counters_keeps_the_gauges_and_moves_the_reset_time() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic_quiet_v4(&["--processors", "2"]);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let holder = ns.spawn(move || {
        for _ in 0..4 {
            let mut s = connect("10.0.0.2:80");
            http_get(&mut s, "/", false);
        }
        let (held, p) = http_connection();
        held_tx.send(p).expect("send");
        rx.recv().expect("wait");
        // Counted again after the reset.
        let mut s = connect("10.0.0.2:80");
        http_get(&mut s, "/", false);
        drop(held);
    });
    let held_on = held_rx.recv_timeout(Duration::from_secs(20)).expect("held");
    let before = ns.status_json();
    assert_eq!(per_processor(&before, "accepted").iter().sum::<u64>(), 5);
    assert!(per_processor(&before, "frames_in").iter().all(|n| *n > 0));
    assert!(per_processor(&before, "frames_out").iter().all(|n| *n > 0));
    let reset_before = before["reset_time"]
        .as_str()
        .expect("reset_time")
        .to_string();
    assert!(
        reset_before.ends_with('Z') && reset_before.contains('T'),
        "{reset_before}"
    );
    std::thread::sleep(Duration::from_millis(20));

    let out = ns.vnic_cmd(&["ctl", "stats", "reset"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("counters reset at "));
    let after = ns.status_json();
    let reset_after = after["reset_time"].as_str().expect("reset_time");
    assert!(
        reset_after > reset_before.as_str(),
        "{reset_before} -> {reset_after}"
    );
    assert!(after["since_reset_secs"].as_f64().unwrap_or(99.0) < 5.0);
    for key in [
        "accepted",
        "bytes_in",
        "bytes_out",
        "frames_in",
        "frames_out",
        "retransmissions",
        "queue_drops",
        "refused",
    ] {
        assert_eq!(per_processor(&after, key), vec![0, 0], "{key}: {after:#}");
    }
    let a = &after["adapter"];
    for key in ["frames_out", "tcp_dispatched", "arp_replies", "rst_sent"] {
        assert_eq!(a[key], 0, "{key}: {a}");
    }
    assert!(a["drops"]
        .as_object()
        .expect("drops")
        .values()
        .all(|v| v == 0));
    // Gauges stay: the held connection (and those in TIME-WAIT) still
    // active, its memory held.
    assert_eq!(
        per_processor(&after, "active"),
        per_processor(&before, "active")
    );
    assert!(per_processor(&after, "active")[held_on] >= 1);
    assert!(per_processor(&after, "memory")[held_on] > 0);
    assert_eq!(a["flows"], before["adapter"]["flows"]);
    // The table's header shows both times.
    let text = String::from_utf8_lossy(&ns.vnic_cmd(&["status"]).stdout).into_owned();
    assert!(
        text.contains(&format!("Reset Time {reset_after}")),
        "{text}"
    );
    assert!(text.contains("Sample Time 20"), "{text}");
    // Counting goes on from zero.
    tx.send(()).expect("go");
    holder.join().expect("holder");
    let later = ns.status_json();
    assert_eq!(per_processor(&later, "accepted").iter().sum::<u64>(), 1);
    assert_eq!(later["reset_time"], reset_after);
}

/// The client side of many idle connections: `n` connections to the
/// discard ports `ports` (spread evenly), opened by `threads` threads of
/// the calling thread's namespace.
fn open_many(n: usize, ports: &'static [u16], threads: usize) -> Vec<TcpStream> {
    let per = n.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                (t * per..((t + 1) * per).min(n))
                    .map(|i| {
                        let a = SocketAddr::from(([10, 0, 0, 2], ports[i % ports.len()]));
                        TcpStream::connect_timeout(&a, Duration::from_secs(10))
                            .unwrap_or_else(|e| panic!("connection {i}: {e}"))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("connecting thread"))
        .collect()
}

/// What listing `n` connections cost, `rounds` times, while an echo
/// connection makes round trips: (the slowest listing end to end, the
/// processors' slowest collect_ms, the worst echo round trip during the
/// listings, the worst before them).
fn measure_listing(
    control: &str,
    filter: &'static [&'static str],
    n: usize,
    rounds: usize,
) -> (Duration, f64, Duration, Duration) {
    let quiet = Arc::new(AtomicBool::new(false));
    let q = quiet.clone();
    let baseline = std::thread::spawn(move || common::echo_round_trips(q));
    std::thread::sleep(Duration::from_millis(500));
    quiet.store(true, Ordering::Relaxed);
    let (before, _) = baseline.join().expect("echo before");
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let echo = std::thread::spawn(move || common::echo_round_trips(s));
    std::thread::sleep(Duration::from_millis(100));
    let mut slowest = Duration::ZERO;
    let mut collect = 0f64;
    for _ in 0..rounds {
        let t = Instant::now();
        let out = vnic_status(control, &[&["--sockets", "--json"], filter].concat());
        // The command alone: reading its JSON here is the test's time.
        slowest = slowest.max(t.elapsed());
        assert!(out.status.success());
        let table: Value = serde_json::from_slice(&out.stdout).expect("socket table JSON");
        collect = collect.max(table["collect_ms"].as_f64().unwrap_or(f64::MAX));
        assert_eq!(rows(&table).len(), n, "every connection listed");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let (worst, _) = echo.join().expect("echo");
    (slowest, collect, worst, before)
}

#[test]
fn listing_thousands_of_connections_is_quick_and_traffic_keeps_flowing() {
    if !can_run() {
        return;
    }
    const N: usize = 4000;
    let ns = Netns::new();
    let _vnic = ns.vnic_quiet_v4(&["--processors", "2"]);
    let control = ns.control_path();
    let (slowest, collect, worst, before) = ns.run(move || {
        let conns = open_many(N, &[9], 2);
        let m = measure_listing(&control, &["--state", "established", "--port", "9"], N, 5);
        drop(conns);
        m
    });
    eprintln!(
        "{N} connections listed in at most {slowest:?} (processors: {collect:.1} ms); \
         echo round trips: worst {worst:?} while listing, {before:?} before"
    );
    // Bounds far above the figures (tens of milliseconds) so that a
    // loaded machine does not fail the test, but far below a stall.
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    assert!(collect < 1000.0, "{collect} ms");
    assert!(worst < Duration::from_millis(250), "{worst:?}");
}

/// The figure in the docs, by hand (the namespace's clients hold
/// VNIC_SOCKETS_N connections, 100,000 unless set, on VNIC_SOCKETS_PROCESSORS
/// processors, 2 unless set):
/// `CI=true cargo test --release --test sockets -- --ignored --nocapture`.
/// A process may have only so many descriptors (and raising the limit
/// takes CAP_SYS_RESOURCE), so the connections are held by `examples/bclient
/// hold` processes of 16,000 each.
#[test]
#[ignore = "by hand: 100,000 connections take a minute to open"]
fn listing_100k_connections() {
    if !can_run() {
        return;
    }
    const PER_HOLDER: usize = 16_000;
    let n: usize = std::env::var("VNIC_SOCKETS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let processors = std::env::var("VNIC_SOCKETS_PROCESSORS").unwrap_or_else(|_| "2".into());
    let bclient = std::path::Path::new(env!("CARGO_BIN_EXE_vnic"))
        .parent()
        .expect("target dir")
        .join("examples")
        .join("bclient");
    let ns = Netns::new();
    let holders = n.div_ceil(PER_HOLDER);
    // Holder h connects to discard port 5000 + h: the kernel finds a free
    // client port at once for a destination nobody else uses.
    let mut flags: Vec<String> = ["--processors", &processors, "--memory-budget", "8G"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    flags.extend(["--serve".into(), "7=echo".into()]);
    for h in 0..holders {
        flags.extend(["--serve".into(), format!("{}=discard", 5000 + h)]);
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _vnic = ns.vnic_quiet_v4(&flags);
    let control = ns.control_path();
    let opened = Instant::now();
    let mut holders: Vec<std::process::Child> = (0..holders)
        .map(|h| {
            let count = PER_HOLDER.min(n - h * PER_HOLDER).to_string();
            Command::new("ip")
                .args(["netns", "exec", &ns.name])
                .arg(&bclient)
                .args(["hold", &format!("10.0.0.2:{}", 5000 + h), &count, "600"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("run bclient hold")
        })
        .collect();
    for c in &mut holders {
        let mut line = String::new();
        let out = c.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)
            .expect("bclient's line");
        let v: Value = serde_json::from_str(&line).expect("bclient JSON");
        assert_eq!(v["failed"], 0, "{line}");
    }
    let opening = opened.elapsed();
    let (slowest, collect, worst, before, table_time) = ns.run(move || {
        // Every connection, and the echo connection that measures.
        let (slowest, collect, worst, before) =
            measure_listing(&control, &["--state", "established"], n + 1, 3);
        let t = Instant::now();
        let out = vnic_status(&control, &["--sockets"]);
        let table_time = t.elapsed();
        assert!(out.status.success());
        assert!(out.stdout.split(|b| *b == b'\n').count() > n);
        (slowest, collect, worst, before, table_time)
    });
    for h in &mut holders {
        let _ = h.kill();
        let _ = h.wait();
    }
    eprintln!(
        "{n} connections on {processors} processors (opened in {opening:?}): \
         --sockets --json of all of them in at most {slowest:?} \
         (processors: {collect:.1} ms); the table in {table_time:?}; \
         echo round trips: worst {worst:?} while listing, {before:?} before"
    );
}
