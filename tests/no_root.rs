//! Without root, as the README's "Without root" says (issue 17 part 10):
//! a TAP made by root for an unprivileged user, and vnic run as that user
//! with no capability at all, serves real clients.

mod common;

use common::{can_run, http_get, Netns, Vnic};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const NOBODY: &str = "65534";

/// A field of /proc/PID/status (e.g. "Uid", "CapEff").
fn proc_status(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

#[test]
fn vnic_serves_as_an_unprivileged_user_on_a_tap_made_for_it() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    // As root, once: the TAP, owned by the user, and its host side.
    ns.exec_ok(&[
        "ip", "tuntap", "add", "dev", &ns.tap, "mode", "tap", "user", NOBODY, "group", NOBODY,
    ]);
    ns.exec_ok(&["ip", "addr", "add", "10.0.0.1/24", "dev", &ns.tap]);
    ns.exec_ok(&["ip", "link", "set", &ns.tap, "up"]);
    // A copy of the binary the user can run wherever the checkout is.
    let bin = std::env::temp_dir().join(format!("vnic-noroot-{}", std::process::id()));
    std::fs::copy(env!("CARGO_BIN_EXE_vnic"), &bin).expect("copy vnic");
    let control = format!("/tmp/{}-noroot.sock", ns.name);
    let args: Vec<String> = [
        "netns",
        "exec",
        &ns.name,
        "setpriv",
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        &bin.to_string_lossy(),
        "up",
        "--tap",
        &ns.tap,
        "--ip",
        "10.0.0.2/24",
        "--processors",
        "2",
        "--control",
        &control,
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let vnic = Vnic::start_program("ip", &args);
    let pid = vnic.pid().expect("pid");
    let uid = proc_status(pid, "Uid");
    let caps = proc_status(pid, "CapEff");
    let statuses = ns.run(|| {
        let a: SocketAddr = "10.0.0.2:80".parse().expect("addr");
        (0..4)
            .map(|_| {
                let mut s =
                    TcpStream::connect_timeout(&a, Duration::from_secs(3)).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(3))).ok();
                http_get(&mut s, "/", false)
            })
            .collect::<Vec<_>>()
    });
    let (code, err) = vnic.stop();
    let _ = std::fs::remove_file(&bin);
    let _ = std::fs::remove_file(&control);
    assert!(uid.starts_with(NOBODY), "vnic ran as uid {uid}");
    assert_eq!(caps, "0000000000000000", "with no capability");
    assert!(statuses.iter().all(|(s, _)| *s == 200), "{statuses:?}");
    // Round-robin over both processors, as with root.
    assert!(statuses.iter().any(|(_, b)| b.contains("processor=0")));
    assert!(statuses.iter().any(|(_, b)| b.contains("processor=1")));
    assert_eq!(code, Some(0), "{err}");
}
