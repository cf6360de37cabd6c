//! The control socket and run-time traces against local users and
//! operators (issue 15, parts 6 and 7): who may connect, how much a client
//! may send or leave unread, what is done with a file already at the
//! socket's path, and where `vnic ctl trace on FILE` may write.
//!
//! The unprivileged peer is the vnic client itself run by `setpriv` as
//! uid/gid 65534 (nobody), which reaches the socket through the file
//! system: Unix sockets ignore network namespaces.

mod common;

use common::{can_run, Netns, Vnic};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use vnic_listeners::control::{MAX_CLIENTS, MAX_REQUEST, WRITE_TIMEOUT};

/// An unprivileged user and group, as setpriv runs the client.
const NOBODY: u32 = 65534;
/// A group nobody is in unless the test says so (need not exist).
const GROUP: u32 = 4242;

/// `vnic up` on the test's TAP and control socket, IPv4 only, quiet.
fn up_args(ns: &Netns, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "netns",
        "exec",
        &ns.name,
        env!("CARGO_BIN_EXE_vnic"),
        "up",
        "--tap",
        &ns.tap,
        "--ip",
        "10.0.0.2/24",
        "--host-ip",
        "10.0.0.1/24",
        "--quiet",
        "--control",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(ns.control_path());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn vnic(ns: &Netns, extra: &[&str]) -> Vnic {
    Vnic::start_program("ip", &up_args(ns, extra))
}

/// vnic started with umask 000, the most careless an operator can be.
fn vnic_umask_000(ns: &Netns, extra: &[&str]) -> Vnic {
    let mut a: Vec<String> = vec!["-c".into(), "umask 000; exec ip \"$@\"".into(), "sh".into()];
    a.extend(up_args(ns, extra));
    Vnic::start_program("sh", &a)
}

fn mode(path: &str) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

/// True if setpriv (util-linux) is here; under CI=true it must be.
fn have_setpriv() -> bool {
    if Command::new("setpriv").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "setpriv (util-linux) is needed under CI=true"
    );
    eprintln!("\n*** SKIPPING: setpriv (util-linux) is not installed ***\n");
    false
}

/// `vnic ARGS --control PATH` run as uid/gid 65534, with `groups` as its
/// supplementary groups (none if empty).
fn vnic_as_nobody(ns: &Netns, groups: &[u32], args: &[&str]) -> Output {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"));
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        let g: Vec<String> = groups.iter().map(u32::to_string).collect();
        c.arg(format!("--groups={}", g.join(",")));
    }
    c.arg(env!("CARGO_BIN_EXE_vnic"))
        .args(args)
        .args(["--control", &ns.control_path()])
        .current_dir("/")
        .output()
        .expect("run setpriv")
}

/// The one line a failed client printed on stderr.
fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn connect(ns: &Netns) -> UnixStream {
    let s = UnixStream::connect(ns.control_path()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

/// Reads one answer line as JSON.
fn answer(r: &mut impl BufRead) -> serde_json::Value {
    let mut line = String::new();
    r.read_line(&mut line).expect("read an answer");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// Sends `{"cmd":"status"}` and reads the answer.
fn status_on(s: &UnixStream) -> serde_json::Value {
    let mut w = s;
    w.write_all(b"{\"cmd\":\"status\"}\n").expect("send");
    answer(&mut BufReader::new(s))
}

/// Paths a test made, removed when it ends, also when it fails.
struct Made(Vec<PathBuf>);

impl Made {
    /// `/tmp/NS-suffix`, to be removed at the end.
    fn tmp(&mut self, ns: &Netns, suffix: &str) -> String {
        let p = format!("/tmp/{}-{suffix}", ns.name);
        self.0.push(PathBuf::from(&p));
        p
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for p in &self.0 {
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------ the socket

#[test]
fn control_socket_is_0600_even_under_umask_000() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _v = vnic_umask_000(&ns, &[]);
    assert_eq!(mode(&ns.control_path()), 0o600);
}

#[test]
fn control_group_makes_the_socket_0660_and_lets_its_members_in() {
    if !can_run() || !have_setpriv() {
        return;
    }
    let ns = Netns::new();
    let g = GROUP.to_string();
    let _v = vnic_umask_000(&ns, &["--control-group", &g]);
    let path = ns.control_path();
    assert_eq!(mode(&path), 0o660);
    assert_eq!(std::fs::symlink_metadata(&path).expect("stat").gid(), GROUP);
    // A member of the group (a supplementary group) is served.
    ok(&vnic_as_nobody(&ns, &[GROUP], &["status", "--json"]));
    // Anyone else is stopped by the file's mode, with one clear line.
    let err = one_line_error(&vnic_as_nobody(&ns, &[], &["status"]));
    assert!(err.contains("permission denied"), "{err}");
}

#[test]
fn an_unknown_control_group_is_one_clear_line() {
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
        "--control-group",
        "no-such-group-vnic",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = one_line_error(&out);
    assert!(err.contains("no-such-group-vnic"), "{err}");
}

/// The file's mode is the first fence; the peer check is the second and
/// holds on its own: with the socket made world-writable by hand, a user
/// who is neither root nor vnic's own user is still refused.
#[test]
fn a_peer_that_is_not_root_nor_vnics_user_is_refused() {
    if !can_run() || !have_setpriv() {
        return;
    }
    let ns = Netns::new();
    let _v = vnic(&ns, &[]);
    let path = ns.control_path();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    for groups in [&[][..], &[GROUP]] {
        let out = vnic_as_nobody(&ns, groups, &["status"]);
        let err = one_line_error(&out);
        assert!(err.contains("not allowed"), "{err}");
        assert!(out.stdout.is_empty());
        let out = vnic_as_nobody(&ns, groups, &["ctl", "processor", "0", "down"]);
        one_line_error(&out);
    }
    // Root still is served, and processor 0 is still up.
    assert_eq!(ns.status_json()["processors"][0]["state"], "up");
}

#[test]
fn an_over_long_request_is_refused_and_others_are_still_served() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _v = vnic(&ns, &[]);
    let s = connect(&ns);
    let mut w = s.try_clone().expect("clone");
    // 16 times the limit, no newline: the server must not keep it all.
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&vec![b'x'; 16 * MAX_REQUEST]);
    });
    let a = answer(&mut BufReader::new(&s));
    assert_eq!(a["ok"], false, "{a}");
    let e = a["error"].as_str().unwrap_or_default();
    assert!(e.contains("longer than") && !e.contains('\n'), "{e}");
    writer.join().expect("writer");
    let st = status_on(&connect(&ns));
    assert_eq!(st["ok"], true, "{st}");
}

#[test]
fn clients_beyond_the_cap_get_a_clear_refusal() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _v = vnic(&ns, &[]);
    let mut held: Vec<UnixStream> = (0..MAX_CLIENTS)
        .map(|_| {
            let s = connect(&ns);
            assert_eq!(status_on(&s)["ok"], true);
            s
        })
        .collect();
    let extra = connect(&ns);
    let a = status_on(&extra);
    assert_eq!(a["ok"], false, "{a}");
    let e = a["error"].as_str().unwrap_or_default();
    assert!(e.contains("too many control clients"), "{e}");
    // The vnic client says so in one line.
    let err = one_line_error(&ns.vnic_cmd(&["status"]));
    assert!(err.contains("too many control clients"), "{err}");
    // One leaves; its place is free again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if status_on(&connect(&ns))["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the freed place was not reused");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client that asks and never reads fills its socket; the server gives
/// up on it after the write timeout and closes it, and meanwhile answers
/// everybody else.
#[test]
fn a_client_that_never_reads_is_dropped_after_the_write_timeout() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _v = vnic(&ns, &[]);
    let s = connect(&ns);
    s.set_nonblocking(true).expect("nonblocking");
    let req = b"{\"cmd\":\"status\"}\n";
    let mut sent = 0usize;
    let mut w = &s;
    let fill = Instant::now();
    loop {
        match w.write(req) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
        assert!(fill.elapsed() < Duration::from_secs(10), "never filled");
    }
    assert!(sent > 0);
    let stuck = Instant::now();
    // Others are served at once while it is stuck.
    let t = Instant::now();
    assert_eq!(status_on(&connect(&ns))["ok"], true);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // The stuck client's connection is closed by the server.
    let mut pfd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    let deadline = stuck + WRITE_TIMEOUT + Duration::from_secs(4);
    let mut hung_up = false;
    while Instant::now() < deadline {
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, 100) };
        if r > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0 {
            hung_up = true;
            break;
        }
    }
    assert!(
        hung_up,
        "the server still holds a client that never reads after {:?}",
        stuck.elapsed()
    );
    assert!(stuck.elapsed() >= WRITE_TIMEOUT - Duration::from_millis(500));
}

#[test]
fn a_stale_socket_is_replaced_but_a_regular_file_is_not_removed() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let path = ns.control_path();
    // vnic must give up at once; one that runs is killed and fails the test.
    let start = || {
        let mut child = Command::new("ip")
            .args(up_args(&ns, &[]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn vnic");
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("vnic started over what was at its control path");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("output")
    };
    // A regular file where the socket should be: left alone, one line.
    std::fs::write(&path, "precious").expect("write");
    let out = start();
    assert_eq!(out.status.code(), Some(1));
    let err = one_line_error(&out);
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).expect("kept"), "precious");
    // A symbolic link there: not followed, not removed.
    let mut made = Made(Vec::new());
    let target = made.tmp(&ns, "target");
    std::fs::write(&target, "precious").expect("write");
    std::fs::remove_file(&path).expect("rm");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    let out = start();
    assert_eq!(out.status.code(), Some(1));
    let err = one_line_error(&out);
    assert!(err.contains("not a socket"), "{err}");
    assert!(std::fs::symlink_metadata(&path)
        .expect("link kept")
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&target).expect("kept"), "precious");
    std::fs::remove_file(&path).expect("rm");
    // A socket nobody answers on (a crashed vnic's): replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    let _v = vnic(&ns, &[]);
    assert_eq!(status_on(&connect(&ns))["ok"], true);
}

// ------------------------------------------------------------ trace files

fn trace_on(ns: &Netns, file: &str) -> Output {
    ns.vnic_cmd(&["ctl", "trace", "on", file])
}

fn trace_off(ns: &Netns) {
    ok(&ns.vnic_cmd(&["ctl", "trace", "off"]));
}

#[test]
fn trace_on_a_symlink_is_refused() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _v = vnic(&ns, &[]);
    let mut made = Made(Vec::new());
    let target = made.tmp(&ns, "target");
    let link = made.tmp(&ns, "link.pcapng");
    std::fs::write(&target, "precious").expect("write");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let err = one_line_error(&trace_on(&ns, &link));
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).expect("kept"), "precious");
    // A dangling link is not followed either: nothing is created.
    let missing = made.tmp(&ns, "missing");
    let dangling = made.tmp(&ns, "dangling.pcapng");
    std::os::unix::fs::symlink(&missing, &dangling).expect("symlink");
    let err = one_line_error(&trace_on(&ns, &dangling));
    assert!(err.contains("symbolic link"), "{err}");
    assert!(!Path::new(&missing).exists());
    assert_eq!(ns.status_json()["trace"]["active"], false);
}

#[test]
fn trace_on_an_existing_file_that_is_not_pcapng_is_refused() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _v = vnic(&ns, &[]);
    let mut made = Made(Vec::new());
    let file = made.tmp(&ns, "notes.pcapng");
    std::fs::write(&file, "precious notes\n").expect("write");
    let err = one_line_error(&trace_on(&ns, &file));
    assert!(err.contains("not a pcapng"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).expect("kept"),
        "precious notes\n"
    );
    // A pcapng file (an earlier trace) is replaced, an empty file is used.
    let pcap = made.tmp(&ns, "old.pcapng");
    ok(&trace_on(&ns, &pcap));
    trace_off(&ns);
    ok(&trace_on(&ns, &pcap));
    trace_off(&ns);
    let empty = made.tmp(&ns, "empty.pcapng");
    std::fs::write(&empty, "").expect("write");
    ok(&trace_on(&ns, &empty));
    trace_off(&ns);
}

#[test]
fn a_relative_trace_path_is_resolved_against_the_clients_cwd() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _v = vnic(&ns, &[]);
    let mut made = Made(Vec::new());
    let dir = PathBuf::from(made.tmp(&ns, "cwd"));
    std::fs::create_dir_all(&dir).expect("dir");
    let name = format!("{}-rel.pcapng", ns.name);
    // vnic runs in the test's working directory; the client elsewhere.
    let in_vnics_cwd = std::env::current_dir().expect("cwd").join(&name);
    made.0.push(in_vnics_cwd.clone());
    let out = Command::new(env!("CARGO_BIN_EXE_vnic"))
        .args(["ctl", "trace", "on", &name, "--control", &ns.control_path()])
        .current_dir(&dir)
        .output()
        .expect("run vnic ctl");
    ok(&out);
    let wrong_place = in_vnics_cwd.exists();
    assert!(!wrong_place, "written relative to vnic's own directory");
    let want = dir.join(&name);
    assert!(want.exists(), "{} missing", want.display());
    assert_eq!(
        ns.status_json()["trace"]["file"],
        want.display().to_string()
    );
    trace_off(&ns);
    // A raw client must send an absolute path.
    let s = connect(&ns);
    let mut w = &s;
    w.write_all(b"{\"cmd\":\"trace\",\"on\":true,\"file\":\"x.pcapng\"}\n")
        .expect("send");
    let a = answer(&mut BufReader::new(&s));
    assert_eq!(a["ok"], false, "{a}");
    assert!(
        a["error"].as_str().unwrap_or_default().contains("absolute"),
        "{a}"
    );
}

#[test]
fn a_trace_file_is_created_0600_even_under_umask_000() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _v = vnic_umask_000(&ns, &[]);
    let mut made = Made(Vec::new());
    let file = made.tmp(&ns, "private.pcapng");
    ok(&trace_on(&ns, &file));
    assert_eq!(mode(&file), 0o600);
    trace_off(&ns);
}

#[test]
fn a_run_time_trace_rotates_at_1_gib_times_4_unless_asked_otherwise() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _v = vnic(&ns, &[]);
    let mut made = Made(Vec::new());
    let file = made.tmp(&ns, "cap.pcapng");
    ok(&trace_on(&ns, &file));
    let t = &ns.status_json()["trace"];
    assert_eq!(
        (t["max_mb"].as_u64(), t["max_files"].as_u64()),
        (Some(1024), Some(4)),
        "{t}"
    );
    trace_off(&ns);
    ok(&ns.vnic_cmd(&[
        "ctl",
        "trace",
        "on",
        &file,
        "--max-mb",
        "1",
        "--max-files",
        "2",
    ]));
    let t = &ns.status_json()["trace"];
    assert_eq!(
        (t["max_mb"].as_u64(), t["max_files"].as_u64()),
        (Some(1), Some(2)),
        "{t}"
    );
    // 4 MiB of chargen: the ring of two 1 MiB files comes round.
    let second = made.tmp(&ns, "cap-1.pcapng");
    let third = made.tmp(&ns, "cap-2.pcapng");
    ns.run(|| {
        use std::io::Read;
        let a: std::net::SocketAddr = "10.0.0.2:19".parse().expect("addr");
        let s = std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut got = 0;
        let mut buf = vec![0u8; 64 << 10];
        let mut r = &s;
        while got < 4 << 20 {
            let n = r.read(&mut buf).expect("read chargen");
            assert!(n > 0, "chargen closed");
            got += n;
        }
    });
    let st = ns.status_json();
    trace_off(&ns);
    assert!(st["trace"]["records"].as_u64().unwrap_or(0) > 0, "{st}");
    for f in [&file, &second] {
        let len = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0 && len <= 1 << 20, "{f}: {len} bytes");
    }
    assert!(!Path::new(&third).exists(), "a third file in a ring of two");
}
