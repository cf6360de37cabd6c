//! The placement policies beside round-robin, end to end: hash,
//! least-connections, a policy changed at run time with `vnic ctl filter`,
//! and a config file's per-port policy. Real kernel TCP clients in the
//! test's own namespace; placements read from the http app's `processor=`.

mod common;

use common::{body_value, can_run, connect, http_get, Netns};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// Opens a keep-alive connection to `port`, asks `GET /` once and keeps
/// it open: the connection and the processor that holds it.
fn hold(ns: &Netns, port: u16) -> (TcpStream, usize) {
    ns.run(move || {
        let mut s = connect(&format!("10.0.0.2:{port}"));
        let (status, body) = http_get(&mut s, "/", true);
        assert_eq!(status, 200);
        let p = body_value(&body, "processor")
            .and_then(|v| v.parse().ok())
            .expect("processor=");
        (s, p)
    })
}

/// `n` connections held open, one after the other.
fn hold_n(ns: &Netns, port: u16, n: usize) -> (Vec<TcpStream>, Vec<usize>) {
    (0..n).map(|_| hold(ns, port)).unzip()
}

/// Each processor's `active` connections in `vnic status --json`.
fn active(ns: &Netns) -> Vec<u64> {
    let st = ns.status_json();
    st["processors"]
        .as_array()
        .expect("processors")
        .iter()
        .map(|p| p["active"].as_u64().unwrap_or(u64::MAX))
        .collect()
}

/// Waits until the processors hold exactly `want` connections.
fn await_active(ns: &Netns, want: &[u64]) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let now = active(ns);
        if now == want {
            return;
        }
        assert!(Instant::now() < until, "active {now:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ctl_ok(ns: &Netns, args: &[&str]) {
    let out = ns.vnic_cmd(args);
    assert!(
        out.status.success(),
        "vnic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hash_spreads_without_the_cycle_and_skips_a_down_processor() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--processors", "4", "--filter", "hash"]);
    assert!(vnic.ready.contains("filter=hash"), "{}", vnic.ready);
    let (held, got) = hold_n(&ns, 80, 64);
    for k in 0..4 {
        let n = got.iter().filter(|p| **p == k).count();
        assert!(n >= 4, "processor {k} got {n} of 64: {got:?}");
    }
    let cycle: Vec<usize> = (0..64).map(|i| i % 4).collect();
    assert_ne!(got, cycle, "hash is not the round-robin cycle");
    // A down processor's share goes to the others.
    drop(held);
    ctl_ok(&ns, &["ctl", "processor", "1", "down"]);
    let (_held, got) = hold_n(&ns, 80, 32);
    assert!(!got.contains(&1), "processor 1 is down: {got:?}");
    for k in [0, 2, 3] {
        assert!(got.contains(&k), "processor {k} gets its share: {got:?}");
    }
}

#[test]
fn least_connections_goes_to_the_fewest_ties_in_line_order() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--processors", "4", "--filter", "least-connections"]);
    assert!(
        vnic.ready.contains("filter=least-connections"),
        "{}",
        vnic.ready
    );
    let (mut held, got) = hold_n(&ns, 80, 4);
    assert_eq!(got, vec![0, 1, 2, 3], "all equal: line order");
    // The client closes the one on processor 2: it has the fewest then.
    drop(held.remove(2));
    await_active(&ns, &[1, 1, 0, 1]);
    let (s, p) = hold(&ns, 80);
    assert_eq!(p, 2, "the fewest connections");
    held.push(s);
    let (more, got) = hold_n(&ns, 80, 4);
    assert_eq!(got, vec![0, 1, 2, 3], "all tied again: line order");
    held.extend(more);
    // A burst of 16 at once: the connections placed and not yet taken in
    // count, so the burst spreads evenly.
    let burst: Vec<std::thread::JoinHandle<(TcpStream, usize)>> = (0..16)
        .map(|_| {
            ns.spawn(|| {
                let mut s = connect("10.0.0.2:80");
                let (_, body) = http_get(&mut s, "/", true);
                let p = body_value(&body, "processor")
                    .and_then(|v| v.parse().ok())
                    .expect("processor=");
                (s, p)
            })
        })
        .collect();
    let mut per = [0usize; 4];
    for h in burst {
        let (s, p) = h.join().expect("client");
        per[p] += 1;
        held.push(s);
    }
    let (min, max) = (per.iter().min(), per.iter().max());
    assert!(
        max.zip(min).is_some_and(|(a, b)| a - b <= 1),
        "a burst of 16 over 4 processors: {per:?}"
    );
    // A down processor gets nothing, however few it holds.
    drop(held);
    await_active(&ns, &[0, 0, 0, 0]);
    ctl_ok(&ns, &["ctl", "processor", "0", "down"]);
    let (_held, got) = hold_n(&ns, 80, 3);
    assert_eq!(got, vec![1, 2, 3]);
}

#[test]
fn a_policy_changed_at_run_time() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--processors", "4", "--filter", "none"]);
    assert!(vnic.ready.contains("filter=none"), "{}", vnic.ready);
    let (mut held, got) = hold_n(&ns, 80, 3);
    assert_eq!(got, vec![0, 0, 0], "none: the first listener takes all");
    ctl_ok(&ns, &["ctl", "filter", "least-connections"]);
    assert_eq!(ns.status_json()["filter"], "least-connections");
    let (more, got) = hold_n(&ns, 80, 7);
    assert_eq!(got, vec![1, 2, 3, 1, 2, 3, 1], "the fewest first");
    held.extend(more);
    ctl_ok(&ns, &["ctl", "filter", "hash"]);
    let st = ns.status_json();
    assert_eq!(st["filter"], "hash");
    assert_eq!(st["port_filters"], serde_json::json!([]));
    // One port's own policy, and back to the adapter's.
    ctl_ok(&ns, &["ctl", "filter", "none", "--port", "80"]);
    let st = ns.status_json();
    assert_eq!(
        st["port_filters"],
        serde_json::json!([{"protocol": "tcp", "port": 80, "filter": "none"}])
    );
    let text = String::from_utf8_lossy(&ns.vnic_cmd(&["status"]).stdout).into_owned();
    assert!(text.contains("filter=hash (80: none)"), "{text}");
    let (more, got) = hold_n(&ns, 80, 2);
    assert_eq!(got, vec![0, 0]);
    held.extend(more);
    ctl_ok(&ns, &["ctl", "filter", "default", "--port", "80"]);
    assert_eq!(ns.status_json()["port_filters"], serde_json::json!([]));
    // Refusals are one line each.
    for (args, why) in [
        (&["ctl", "filter", "default"][..], "use round-robin, hash"),
        (
            &["ctl", "filter", "hash", "--port", "81"][..],
            "port 81/tcp has no listener",
        ),
    ] {
        let out = ns.vnic_cmd(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(why), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    drop(held);
}

#[test]
fn a_config_file_gives_a_port_its_own_policy() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let mut cfg = String::from(
        "[adapter]\ntap = \"unused0\"\naddresses = [\"10.0.0.2/24\"]\n\
         host_addresses = [\"10.0.0.1/24\"]\nprocessors = 4\n\
         [filter]\nmode = \"round-robin\"\nkey = \"web1\"\n",
    );
    for port in [80, 8080] {
        for k in 0..4 {
            cfg.push_str(&format!(
                "[[listener]]\nport = {port}\napp = \"http\"\nprocessor = {k}\n"
            ));
            if port == 80 && k == 2 {
                cfg.push_str("filter = \"least-connections\"\n");
            }
        }
    }
    let path = format!("/tmp/{}.toml", ns.name);
    std::fs::write(&path, &cfg).expect("write config");
    let vnic = ns.vnic_config(&path, &[]);
    assert!(
        vnic.ready.contains("filter=round-robin")
            && vnic.ready.contains("port-filters=80:least-connections"),
        "{}",
        vnic.ready
    );
    assert_eq!(
        ns.status_json()["port_filters"],
        serde_json::json!([{"protocol": "tcp", "port": 80, "filter": "least-connections"}])
    );
    // Port 8080 goes round-robin: 0, 1. Port 80 then goes to the fewest
    // (2), where round-robin would start its own line at 0.
    let (mut held, got) = hold_n(&ns, 8080, 2);
    assert_eq!(got, vec![0, 1]);
    let (more, got) = hold_n(&ns, 80, 3);
    assert_eq!(got, vec![2, 3, 0]);
    held.extend(more);
    assert_eq!(hold_n(&ns, 8080, 2).1, vec![2, 3], "8080 keeps its cycle");
    drop(held);

    // Listeners of one port that disagree: one line naming the file line.
    let bad = cfg.replacen(
        "port = 80\napp = \"http\"\nprocessor = 3\n",
        "port = 80\napp = \"http\"\nprocessor = 3\nfilter = \"hash\"\n",
        1,
    );
    std::fs::write(&path, &bad).expect("write config");
    let out = ns.vnic_raw(&["up", "--config", &path, "--tap", &ns.tap]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        err.contains("already has filter = \"least-connections\" (line 17)"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_slowed_processor_is_named_in_the_ready_line_and_checked() {
    let out = Command::new(env!("CARGO_BIN_EXE_vnic"))
        .args(["up", "--tap", "none0", "--ip", "10.0.0.2/24"])
        .args(["--processors", "2", "--slow-processor", "2=1ms"])
        .output()
        .expect("run vnic");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        err.contains("processor 2 does not exist (processors: 2)"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vnic"))
        .args(["up", "--tap", "none0", "--ip", "10.0.0.2/24"])
        .args(["--slow-processor", "1=5s"])
        .output()
        .expect("run vnic");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("at most 1s"), "{err}");
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--processors", "2", "--slow-processor", "1=2ms"]);
    assert!(
        vnic.ready.contains("slow-processor=1=2ms"),
        "{}",
        vnic.ready
    );
    let (_held, got) = hold_n(&ns, 80, 4);
    assert_eq!(got, vec![0, 1, 0, 1], "slow, not stopped");
}
