//! Issue: `--serve PORT=exec:'PROGRAM ARGS...'` starts a program per
//! connection (NonStop's standard model, UCSPI's tcpserver) with its
//! stdin and stdout on the connection; `--exec-max` limits the programs
//! running at once; every child is reaped. The clients are the kernel's
//! TCP inside the test's own namespace.

mod common;

use common::{can_run, echo_through, random_bytes, Netns};
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const PORT: u16 = 7000;

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let a: SocketAddr = addr.parse().expect("addr");
    let s = TcpStream::connect_timeout(&a, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.set_write_timeout(Some(Duration::from_secs(20)))?;
    Ok(s)
}

fn serve(cmd: &str) -> String {
    format!("{PORT}=exec:{cmd}")
}

/// The one row of the exec service's counters in `vnic status --json`.
fn exec_row(ns: &Netns) -> serde_json::Value {
    let st = ns.status_json();
    let svc = st["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["port"] == PORT))
        .unwrap_or_else(|| panic!("no service on {PORT} in {st}"));
    assert_eq!(svc["app"], "exec", "{svc}");
    svc["rows"][0].clone()
}

/// Waits until the exec row's `key` is `want`; returns the row.
fn wait_row(ns: &Netns, key: &str, want: u64) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let row = exec_row(ns);
        if row[key] == want {
            return row;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{key} != {want}: {row}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Resets the connection on close (SO_LINGER 0: RST, not FIN).
fn reset(s: TcpStream) {
    common::reset_on_close(&s);
    drop(s);
}

/// Fields of /proc/PID/stat after the command name: state, ppid, ...
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// The children of `ppid` now, with their states (R, S, Z, ...).
fn children_of(ppid: u32) -> Vec<(String, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|pid| {
            let f = stat_fields(&pid)?;
            (f.get(1)? == &ppid.to_string()).then(|| (pid, f[0].clone()))
        })
        .collect()
}

/// vnic's own pid: `ip netns exec` execs it in place, or else forks it.
fn vnic_pid(started: u32) -> u32 {
    let comm = |p: u32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    if comm(started).trim() == "vnic" {
        return started;
    }
    children_of(started)
        .iter()
        .filter_map(|(p, _)| p.parse().ok())
        .find(|p| comm(*p).trim() == "vnic")
        .expect("the vnic process")
}

#[test]
fn sixty_four_mib_through_cat_come_back_intact() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--serve", &serve("/bin/cat")]);
    let data = random_bytes(64 << 20, 7);
    let want = Sha256::digest(&data).to_vec();
    let got = ns.run(move || echo_through(connect("10.0.0.2:7000").expect("connect"), data));
    assert_eq!(got.0, 64 << 20, "every byte back, then FIN");
    assert_eq!(got.1, want, "the bytes are identical");
    let row = wait_row(&ns, "exited", 1);
    assert_eq!(
        (row["started"].clone(), row["running"].clone()),
        (1.into(), 0.into())
    );
}

#[test]
fn the_program_sees_who_called_over_ipv4_and_ipv6() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let cmd = "sh -c 'echo $TCPREMOTEIP $TCPREMOTEPORT $TCPLOCALIP $TCPLOCALPORT $PROTO \
               $VNIC_PROCESSOR'";
    let _vnic = ns.vnic(&["--processors", "2", "--serve", &serve(cmd)]);
    let seen = ns.run(|| {
        ["10.0.0.2:7000", "[fd00::2]:7000"].map(|addr| {
            let mut s = connect(addr).expect("connect");
            let port = s.local_addr().expect("local").port();
            let mut out = String::new();
            s.read_to_string(&mut out).expect("read");
            (port, out)
        })
    });
    let [(p4, v4), (p6, v6)] = seen;
    assert_eq!(v4, format!("10.0.0.1 {p4} 10.0.0.2 7000 TCP 0\n"));
    assert_eq!(v6, format!("fd00::1 {p6} fd00::2 7000 TCP 1\n"));
}

#[test]
fn a_program_that_exits_at_once_gets_a_clean_fin() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--serve", &serve("/bin/true")]);
    let got = ns.run(|| {
        let mut s = connect("10.0.0.2:7000").expect("connect");
        let mut v = Vec::new();
        s.read_to_end(&mut v).map(|_| v)
    });
    let got = got.expect("EOF, not a reset");
    assert!(got.is_empty(), "{got:?}");
    wait_row(&ns, "exited", 1);
}

#[test]
fn the_program_stderr_reaches_vnic_stderr_prefixed_line_by_line() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let cmd = "sh -c 'echo out; echo first >&2; printf second >&2'";
    let vnic = ns.vnic(&["--serve", &serve(cmd)]);
    let out = ns.run(|| {
        let mut s = connect("10.0.0.2:7000").expect("connect");
        let mut v = String::new();
        s.read_to_string(&mut v).expect("read");
        v
    });
    assert_eq!(out, "out\n", "stderr stays off the connection");
    wait_row(&ns, "exited", 1);
    let (_, err) = vnic.stop();
    assert!(err.contains("vnic: exec cpu=0 conn=1: first\n"), "{err}");
    assert!(err.contains("vnic: exec cpu=0 conn=1: second\n"), "{err}");
}

#[test]
fn two_hundred_concurrent_exec_connections_are_all_served() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--processors", "4", "--serve", &serve("/bin/cat")]);
    let answered = ns.run(|| {
        let mut streams: Vec<TcpStream> = (0..200)
            .map(|_| connect("10.0.0.2:7000").expect("connect"))
            .collect();
        for (i, s) in streams.iter_mut().enumerate() {
            writeln!(s, "hello {i}").expect("write");
        }
        let mut answered = 0;
        for (i, s) in streams.iter_mut().enumerate() {
            let want = format!("hello {i}\n");
            let mut got = vec![0u8; want.len()];
            s.read_exact(&mut got).expect("read");
            assert_eq!(got, want.as_bytes());
            answered += 1;
        }
        // All 200 programs run at once.
        answered
    });
    assert_eq!(answered, 200);
    let row = wait_row(&ns, "exited", 200);
    assert_eq!(row["started"], 200, "{row}");
    assert_eq!(row["refused"], 0, "{row}");
}

#[test]
fn exec_max_resets_connections_beyond_it_and_counts_them() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&[
        "--processors",
        "2",
        "--exec-max",
        "3",
        "--serve",
        &serve("cat"),
    ]);
    let (held, refused) = ns.run(|| {
        let held: Vec<TcpStream> = (0..3)
            .map(|_| connect("10.0.0.2:7000").expect("connect"))
            .collect();
        let refused: Vec<Option<ErrorKind>> = (0..2)
            .map(|_| connect("10.0.0.2:7000").err().map(|e| e.kind()))
            .collect();
        (held, refused)
    });
    assert_eq!(refused, vec![Some(ErrorKind::ConnectionRefused); 2]);
    let row = exec_row(&ns);
    assert_eq!(row["running"], 3, "{row}");
    assert_eq!(row["refused"], 2, "{row}");
    for s in &held {
        s.shutdown(Shutdown::Write).expect("FIN");
    }
    wait_row(&ns, "running", 0);
    drop(held);
    let again = ns.run(|| {
        let mut s = connect("10.0.0.2:7000").expect("a place is free again");
        s.write_all(b"ok").expect("write");
        s.shutdown(Shutdown::Write).expect("FIN");
        let mut v = String::new();
        s.read_to_string(&mut v).expect("read");
        v
    });
    assert_eq!(again, "ok");
}

#[test]
fn clients_that_reset_mid_stream_leave_no_zombie() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--processors", "2", "--serve", &serve("/bin/cat")]);
    let pid = vnic_pid(vnic.pid().expect("running"));
    ns.run(|| {
        let block = vec![b'x'; 256 << 10];
        for _ in 0..20 {
            let mut s = connect("10.0.0.2:7000").expect("connect");
            s.write_all(&block).expect("write");
            let mut some = [0u8; 1000];
            s.read_exact(&mut some).expect("some of it back");
            reset(s);
        }
    });
    let row = wait_row(&ns, "exited", 20);
    assert_eq!(row["running"], 0, "{row}");
    let t = Instant::now();
    loop {
        let kids = children_of(pid);
        if kids.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "children of vnic left (pid, state): {kids:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
