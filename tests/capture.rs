//! Live capture (`vnic capture`) and `--pcap-filter`: only the frames a
//! tcpdump filter or a processor keeps, each with its decision comment,
//! read back by tshark; several captures at once; a pipe read live; a
//! client that stops reading loses frames (counted) and slows nothing;
//! Ctrl-C, a closed pipe and vnic stopping each end a capture cleanly.

mod common;

use common::{can_run, have_tshark, http_get, wait_for_exit, Netns};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A `vnic capture` running against the test's vnic.
struct Capture {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Capture {
    /// Starts `vnic capture ARGS --control PATH` with stdout to `stdout`
    /// and waits for its "capture N started" line.
    fn start(ns: &Netns, args: &[&str], stdout: Stdio) -> Capture {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vnic"))
            .arg("capture")
            .args(["--control", &ns.control_path()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vnic capture");
        let stderr = read_lines(child.stderr.take().expect("stderr"));
        let first = stderr
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("vnic capture {args:?} did not start"));
        assert!(
            first.starts_with("vnic capture: capture ") && first.ends_with(" started"),
            "{first}"
        );
        Capture { child, stderr }
    }

    /// SIGINT (Ctrl-C), as a user stops it.
    fn interrupt(&self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
    }

    /// Waits up to `within` for it to exit; returns its exit code and
    /// the rest of its stderr.
    fn wait(mut self, within: Duration) -> (Option<i32>, String) {
        let code = wait_for_exit(&mut self.child, within);
        let mut rest = String::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            rest.push_str(&l);
            rest.push('\n');
        }
        (code, rest)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of `from`, one by one, on a channel.
fn read_lines(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// `tshark -r FILE -T fields -e ...` rows; tshark must read it cleanly.
fn fields(file: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-r", file, "-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark -r {file}: {err}");
    assert!(
        !err.contains("cut short") && !err.contains("appears to"),
        "{err}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

fn get(ns: &Netns, n: usize) {
    ns.run(move || {
        for _ in 0..n {
            let a: SocketAddr = "10.0.0.2:80".parse().expect("addr");
            let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            assert_eq!(http_get(&mut s, "/", false).0, 200);
        }
    });
}

fn echo(ns: &Netns) {
    let (n, _) = ns.echo("10.0.0.2:7", vec![7u8; 1000]);
    assert_eq!(n, 1000);
}

/// The test's captures as `vnic status --json` lists them.
fn captures(ns: &Netns) -> Vec<serde_json::Value> {
    ns.status_json()["trace"]["captures"]
        .as_array()
        .expect("trace.captures")
        .clone()
}

/// Two captures at once, one by filter, one by processor: each file has
/// only its frames, each with its decision; Ctrl-C ends the first with
/// its report, vnic stopping ends the second with the frames so far.
#[test]
fn captures_keep_only_their_frames_with_their_decisions() {
    if !can_run() || !have_tshark() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic_quiet_v4(&["--processors", "2"]);
    let port80 = format!("/tmp/{}-80.pcapng", ns.name);
    let cpu1 = format!("/tmp/{}-cpu1.pcapng", ns.name);
    let a = Capture::start(&ns, &["-w", &port80, "tcp", "port", "80"], Stdio::null());
    let b = Capture::start(&ns, &["-w", &cpu1, "--processor", "1"], Stdio::null());
    let listed = captures(&ns);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["filter"], "tcp port 80");
    assert_eq!(listed[1]["processor"], 1);
    get(&ns, 4);
    echo(&ns);
    echo(&ns);
    ns.exec_ok(&["ping", "-c", "1", "-W", "2", "10.0.0.2"]);
    std::thread::sleep(Duration::from_millis(300));

    a.interrupt();
    let (code, err) = a.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(" lost (this capture could not keep up); client stopped"),
        "{err}"
    );
    let rows = fields(&port80, &["tcp.port", "frame.comment"]);
    assert!(rows.len() >= 4 * 6, "{rows:?}");
    for r in &rows {
        assert!(r[0].split(',').any(|p| p == "80"), "not port 80: {r:?}");
        assert!(!r[1].is_empty(), "every frame has its decision: {r:?}");
    }
    let new: Vec<&String> = rows
        .iter()
        .map(|r| &r[1])
        .filter(|c| c.contains("rr-new"))
        .collect();
    assert_eq!(new.len(), 4, "{rows:?}");
    for (k, c) in new.iter().enumerate() {
        assert!(
            c.starts_with(&format!("in cpu={} rr-new port=80 slot={}", k % 2, k % 2)),
            "{c}"
        );
    }
    assert_eq!(captures(&ns).len(), 1, "the ended capture left the list");

    // vnic stops: the other capture ends by itself, with what it had.
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = b.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("; vnic stopped"), "{err}");
    let rows = fields(&cpu1, &["tcp.port", "frame.comment"]);
    let _ = std::fs::remove_file(&port80);
    let _ = std::fs::remove_file(&cpu1);
    assert!(!rows.is_empty());
    for r in &rows {
        assert!(
            r[1].split(' ').any(|w| w == "cpu=1"),
            "not processor 1: {r:?}"
        );
    }
    for want in [
        "in cpu=1 rr-new port=80",
        "in cpu=1 rr-new port=7",
        "out cpu=1",
    ] {
        assert!(
            rows.iter().any(|r| r[1].starts_with(want)),
            "no {want:?} in {rows:?}"
        );
    }
}

/// `vnic capture -w - | tshark -r -` (as `| tcpdump -r -`): tshark shows
/// a frame while the capture still runs, and a closed pipe ends the
/// capture cleanly.
#[test]
fn a_pipe_is_read_live_and_closing_it_ends_the_capture() {
    if !can_run() || !have_tshark() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic_quiet_v4(&["--processors", "2"]);
    let cap = Capture::start(&ns, &["-w", "-", "tcp port 80"], Stdio::piped());
    let mut cap = cap;
    let pipe = cap.child.stdout.take().expect("stdout");
    let mut tshark = Command::new("tshark")
        .args(["-r", "-", "-l", "-T", "fields", "-e", "frame.comment"])
        .stdin(Stdio::from(pipe))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tshark");
    let seen = read_lines(tshark.stdout.take().expect("tshark stdout"));
    get(&ns, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("rr-new port=80")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("tshark showed no frame while the capture ran: {lines:?}"),
        }
    }
    assert!(
        cap.child.try_wait().expect("wait").is_none(),
        "still capturing"
    );

    // The reader goes away; the next frames find the pipe closed.
    let _ = tshark.kill();
    let _ = tshark.wait();
    get(&ns, 2);
    let (code, err) = cap.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("frames captured"), "{err}");
    assert!(captures(&ns).is_empty(), "the capture ended in vnic too");
}

/// Reads one capture stream's chunks from `s` until its end line;
/// returns the pcapng bytes and the end line.
fn read_stream(s: &mut UnixStream) -> (Vec<u8>, serde_json::Value) {
    let mut pcapng = Vec::new();
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).expect("chunk length");
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            break;
        }
        let at = pcapng.len();
        pcapng.resize(at + len, 0);
        s.read_exact(&mut pcapng[at..]).expect("chunk");
    }
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("end line");
    (pcapng, serde_json::from_str(&line).expect("end line JSON"))
}

/// Seconds to download `bytes` of chargen from inside the namespace.
fn chargen(ns: &Netns, bytes: usize) -> f64 {
    ns.run(move || {
        let a: SocketAddr = "10.0.0.2:19".parse().expect("addr");
        let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let t = Instant::now();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < bytes {
            let n = s.read(&mut buf).expect("chargen read");
            assert!(n > 0, "chargen closed");
            got += n;
        }
        t.elapsed().as_secs_f64()
    })
}

/// A client that asks for a capture and then reads nothing: a download
/// runs as fast as without it, the capture's losses are counted in
/// `vnic status`, and when the client reads again it gets whole pcapng
/// and the same count in its end line.
#[test]
fn a_client_that_stops_reading_loses_frames_and_slows_nothing() {
    if !can_run() || !have_tshark() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic_quiet_v4(&[]);
    let size = 256 << 20;
    let _warm = chargen(&ns, 16 << 20);
    let alone = chargen(&ns, size);

    let mut s = UnixStream::connect(ns.control_path()).expect("control socket");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"{\"cmd\":\"capture\",\"filter\":\"tcp port 19\"}\n")
        .expect("request");
    let mut ok = [0u8; 1];
    let mut line = Vec::new();
    while ok[0] != b'\n' {
        s.read_exact(&mut ok).expect("answer");
        line.push(ok[0]);
    }
    let answer: serde_json::Value = serde_json::from_slice(&line).expect("answer JSON");
    assert_eq!(answer["ok"], true, "{answer}");

    let stalled = chargen(&ns, size);
    eprintln!("{size} bytes of chargen: {alone:.2}s alone, {stalled:.2}s with a stalled capture");
    assert!(
        stalled < alone * 3.0 + 1.0,
        "a stalled capture slowed the download: {alone:.2}s alone, {stalled:.2}s with it"
    );
    let listed = captures(&ns);
    assert_eq!(listed.len(), 1);
    let lost = listed[0]["lost"].as_u64().expect("lost");
    assert!(lost > 0, "the stalled capture lost frames: {listed:?}");
    let status = ns.vnic_cmd(&["status"]);
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.contains("capture 1: filter 'tcp port 19'"), "{table}");

    // The client asks to stop (closes its side) and reads again.
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let (pcapng, end) = read_stream(&mut s);
    assert_eq!(end["ok"], true, "{end}");
    assert_eq!(end["reason"], "client stopped");
    assert!(
        end["capture"]["lost"].as_u64().expect("lost") >= lost,
        "{end}"
    );
    assert!(
        end["capture"]["frames"].as_u64().expect("frames") > 0,
        "{end}"
    );
    let file = format!("/tmp/{}-stalled.pcapng", ns.name);
    std::fs::write(&file, &pcapng).expect("write");
    let rows = fields(&file, &["tcp.port"]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(
        rows.len() as u64,
        end["capture"]["frames"].as_u64().expect("frames")
    );
    assert!(rows.iter().all(|r| r[0].split(',').any(|p| p == "19")));
}

/// A filter libpcap refuses is one line naming it, before anything
/// starts; so is a processor that does not exist, and a bad
/// `--pcap-filter` at start.
#[test]
fn a_bad_filter_is_one_clear_line() {
    let up = Command::new(env!("CARGO_BIN_EXE_vnic"))
        .args(["up", "--tap", "vnicbad0", "--ip", "10.9.0.2/24"])
        .args([
            "--pcap",
            "/tmp/vnic-bad-filter.pcapng",
            "--pcap-filter",
            "tcp prot 80",
        ])
        .output()
        .expect("run vnic up");
    let err = String::from_utf8_lossy(&up.stderr);
    assert_eq!(up.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        "vnic: --pcap-filter: bad capture filter \"tcp prot 80\": syntax error"
    );
    if !can_run() || !have_tshark() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic_quiet_v4(&["--processors", "2"]);
    let file = format!("/tmp/{}-bad.pcapng", ns.name);
    for (args, want) in [
        (
            vec!["-w", file.as_str(), "tcp", "prot", "80"],
            "vnic: bad capture filter \"tcp prot 80\": syntax error",
        ),
        (
            vec!["-w", file.as_str(), "--processor", "2"],
            "vnic: processor 2 does not exist (processors: 0..1)",
        ),
    ] {
        let out = ns.vnic_cmd(&[&["capture"][..], &args[..]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.trim_end(), want);
        assert!(
            !std::path::Path::new(&file).exists(),
            "no file for a refused capture"
        );
    }
    assert!(captures(&ns).is_empty());
}

/// Without libpcap (`VNIC_LIBPCAP` names a file that is not there, and is
/// then the only one tried): a filter is one line saying what is
/// missing, at `vnic up --pcap-filter` and at `vnic capture FILTER`; the
/// trace file, a capture by processor and the traffic work as before.
#[test]
fn without_libpcap_only_filters_fail() {
    const MISSING: &str = "/nonexistent/libpcap.so.0.8";
    let want = format!(
        "capture filters need libpcap at run time ({MISSING} not found, named by VNIC_LIBPCAP)"
    );
    let up = Command::new(env!("CARGO_BIN_EXE_vnic"))
        .env("VNIC_LIBPCAP", MISSING)
        .args(["up", "--tap", "vnicnolib0", "--ip", "10.9.0.2/24"])
        .args([
            "--pcap",
            "/tmp/vnic-no-libpcap.pcapng",
            "--pcap-filter",
            "tcp port 80",
        ])
        .output()
        .expect("run vnic up");
    let err = String::from_utf8_lossy(&up.stderr);
    assert_eq!(up.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end(), format!("vnic: --pcap-filter: {want}"));
    if !can_run() || !have_tshark() {
        return;
    }
    let ns = Netns::new();
    let file = format!("/tmp/{}-nolib.pcapng", ns.name);
    let refused = format!("/tmp/{}-nolib-80.pcapng", ns.name);
    let cpu0 = format!("/tmp/{}-nolib-cpu0.pcapng", ns.name);
    let env = format!("VNIC_LIBPCAP={MISSING}");
    let vnic = ns.vnic_env(&[&env], &["--processors", "2", "--quiet", "--pcap", &file]);
    let out = ns.vnic_cmd(&["capture", "-w", &refused, "tcp", "port", "80"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end(), format!("vnic: {want}"));
    assert!(!std::path::Path::new(&refused).exists());
    let c = Capture::start(&ns, &["-w", &cpu0, "--processor", "0"], Stdio::null());
    get(&ns, 2);
    echo(&ns);
    std::thread::sleep(Duration::from_millis(300));
    c.interrupt();
    let (code, err) = c.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
    let rows = fields(&file, &["tcp.port", "frame.comment"]);
    let by_cpu0 = fields(&cpu0, &["frame.comment"]);
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&cpu0);
    for port in ["80", "7"] {
        assert!(
            rows.iter().any(|r| r[0].split(',').any(|p| p == port)),
            "no port {port} in the trace: {rows:?}"
        );
    }
    assert!(!by_cpu0.is_empty());
    for r in &by_cpu0 {
        assert!(r[0].split(' ').any(|w| w == "cpu=0"), "{r:?}");
    }
}

/// `--pcap-filter`: the pcapng file has only the frames the filter keeps,
/// each still with its decision.
#[test]
fn pcap_filter_keeps_only_matching_frames_in_the_file() {
    if !can_run() || !have_tshark() {
        return;
    }
    let ns = Netns::new();
    let file = format!("/tmp/{}-filtered.pcapng", ns.name);
    let vnic = ns.vnic_quiet_v4(&["--pcap", &file, "--pcap-filter", "tcp port 80"]);
    assert_eq!(ns.status_json()["trace"]["filter"], "tcp port 80");
    get(&ns, 2);
    echo(&ns);
    ns.exec_ok(&["ping", "-c", "1", "-W", "2", "10.0.0.2"]);
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
    let rows = fields(&file, &["tcp.port", "frame.comment"]);
    let _ = std::fs::remove_file(&file);
    assert!(rows.len() >= 2 * 6, "{rows:?}");
    for r in &rows {
        assert!(r[0].split(',').any(|p| p == "80"), "{r:?}");
        assert!(!r[1].is_empty(), "{r:?}");
    }
    assert_eq!(
        rows.iter()
            .filter(|r| r[1].contains("rr-new port=80"))
            .count(),
        2
    );
}
