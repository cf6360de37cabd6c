//! Ten thousand concurrent idle connections: all stay open, and the
//! resident memory each costs vnic is measured (target: under 16 KiB).

mod common;

use common::{can_run, rss_kib, Netns};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const CONNS: usize = 10_000;

fn raise_fd_limit(n: u64) {
    // SAFETY: reading and setting our own resource limit.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < n {
            l.rlim_cur = n.min(l.rlim_max.max(n));
            l.rlim_max = l.rlim_max.max(n);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

#[test]
fn ten_thousand_idle_connections_stay_open_at_a_measured_cost() {
    if !can_run() {
        return;
    }
    raise_fd_limit(CONNS as u64 + 1024);
    let ns = Netns::new();
    // Plenty of local ports for the client side.
    ns.exec_ok(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_local_port_range=10000 60999",
    ]);
    let vnic = ns.vnic(&["--quiet"]);
    let pid = vnic.pid().expect("pid");
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(pid);
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let path = format!("/var/run/netns/{}", ns.name);
    let holder = std::thread::spawn(move || {
        use std::os::unix::io::AsRawFd;
        let f = std::fs::File::open(&path).expect("netns");
        // SAFETY: valid namespace fd, this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let a: SocketAddr = "10.0.0.2:7".parse().expect("addr");
        let mut v = Vec::with_capacity(CONNS);
        for i in 0..CONNS {
            match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
                Ok(s) => v.push(s),
                Err(e) => panic!("connection {i}: {e}"),
            }
        }
        tx.send(v.len()).expect("send");
        done_rx.recv().ok();
        // Still open: nothing was reset while idle.
        v.iter()
            .filter(|s| s.take_error().ok().flatten().is_none())
            .count()
    });
    let opened = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("connections opened");
    assert_eq!(opened, CONNS);
    std::thread::sleep(Duration::from_secs(2));
    let st = ns.status_json();
    let active: u64 = st["processors"]
        .as_array()
        .expect("p")
        .iter()
        .map(|p| p["active"].as_u64().unwrap_or(0))
        .sum();
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / CONNS as f64;
    eprintln!("{CONNS} idle connections: vnic RSS {before} KiB -> {after} KiB, {per:.0} bytes per connection");
    done_tx.send(()).expect("done");
    let still_open = holder.join().expect("holder");
    assert_eq!(active, CONNS as u64, "all held by vnic");
    assert_eq!(still_open, CONNS, "none reset");
    assert!(
        per < 16.0 * 1024.0,
        "{per:.0} bytes per idle connection (target < 16 KiB)"
    );
}
