//! What every end-to-end test needs: a network namespace of its own with a
//! TAP made by vnic inside it, vnic running there, and a way to run the
//! kernel's own TCP (std::net on a thread that joined the namespace, or
//! curl/ping through `ip netns exec`) as the client. Everything made is
//! removed on drop, also when the test fails.

#![allow(dead_code)]

pub mod workload;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// True if this machine can run end-to-end tests (root, /dev/net/tun, ip).
/// Outside CI a missing piece skips the test loudly; under CI=true it fails.
pub fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tun = Path::new("/dev/net/tun").exists();
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if root && tun && ip {
        return true;
    }
    let why = format!("root={root} /dev/net/tun={tun} iproute2={ip}");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("end-to-end tests must run under CI=true, but {why}");
    }
    eprintln!(
        "\n*** SKIPPING end-to-end test: needs root, /dev/net/tun and iproute2 ({why}) ***\n"
    );
    false
}

/// A network namespace that is deleted on drop.
pub struct Netns {
    /// Its name.
    pub name: String,
    /// The TAP vnic should use inside it.
    pub tap: String,
}

impl Netns {
    /// Makes a fresh namespace with loopback up.
    pub fn new() -> Netns {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = format!("vnic-t{pid}-{n}");
        let tap = format!("vt{}x{n}", pid % 100_000);
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip netns add");
        assert!(st.success(), "ip netns add {name} failed");
        let ns = Netns { name, tap };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace and returns its output.
    pub fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .unwrap_or_else(|e| panic!("run {argv:?}: {e}"))
    }

    /// Like [`Netns::exec`], and the command must succeed.
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "{argv:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a thread that joined the namespace, so std::net sockets
    /// it makes use the namespace's kernel TCP.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("thread in namespace panicked")
    }

    /// Starts `f` on a thread that joined the namespace (threads it starts
    /// are in the namespace too), for clients that run beside the test.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            // SAFETY: a valid namespace fd; affects only this thread.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }

    /// Loads nftables `rules` (the text of an `nft -f` file) in the
    /// namespace: loss, or frames dropped on purpose.
    pub fn nft(&self, rules: &str) {
        let path = format!("/tmp/{}.nft", self.name);
        std::fs::write(&path, rules).expect("write rules");
        self.exec_ok(&["nft", "-f", &path]);
        let _ = std::fs::remove_file(&path);
    }

    /// Drops `percent`% of the frames each way on `dev` at random, with
    /// nftables on its ingress and egress hooks (this kernel has no netem;
    /// vnic does not see the rule, unlike `--impair`).
    pub fn nft_loss(&self, dev: &str, percent: u32) {
        self.nft(&format!(
            "table netdev vnicloss {{\n chain in {{ type filter hook ingress device \"{dev}\" priority 0; numgen random mod 100 < {percent} drop; }}\n chain out {{ type filter hook egress device \"{dev}\" priority 0; numgen random mod 100 < {percent} drop; }}\n}}\n"
        ));
    }

    /// Sends `data` to the echo service at `addr` from inside the
    /// namespace, reading the echo back (30 s bounds on both ways);
    /// returns (bytes echoed, their SHA-256).
    pub fn echo(&self, addr: &'static str, data: Vec<u8>) -> (usize, Vec<u8>) {
        self.run(move || {
            let a: std::net::SocketAddr = addr.parse().expect("addr");
            let s =
                std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            s.set_write_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            echo_through(s, data)
        })
    }

    /// The control socket path the test's vnic uses.
    pub fn control_path(&self) -> String {
        format!("/tmp/{}.sock", self.name)
    }

    /// Runs `vnic ARGS... --control PATH` (status, ctl) and returns its output.
    pub fn vnic_cmd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vnic"))
            .args(args)
            .args(["--control", &self.control_path()])
            .output()
            .expect("run vnic client")
    }

    /// `vnic status --json` as JSON.
    pub fn status_json(&self) -> serde_json::Value {
        let out = self.vnic_cmd(&["status", "--json"]);
        assert!(
            out.status.success(),
            "vnic status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// Waits (15 s at most) until processor `k`'s status satisfies `ok`,
    /// saying `what` it never became; returns that status.
    pub fn wait_for_processor(
        &self,
        k: usize,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let st = self.status_json();
            let p = &st["processors"][k];
            if ok(p) {
                return p.clone();
            }
            assert!(Instant::now() < deadline, "processor {k} never {what}: {p}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Crashes processor `k` (`vnic ctl processor K crash`) and waits
    /// until it failed and runs again with `restarts` restarts.
    pub fn crash_and_restart(&self, k: usize, restarts: u64) {
        let out = self.vnic_cmd(&["ctl", "processor", &k.to_string(), "crash"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait_for_processor(k, "restarted", |p| {
            p["state"] == "up" && p["restarts"].as_u64() == Some(restarts)
        });
    }

    /// Starts vnic with exactly these arguments after `vnic` (no defaults);
    /// returns the output once it exits (for runs expected to fail).
    pub fn vnic_raw(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, env!("CARGO_BIN_EXE_vnic")])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run vnic")
    }

    /// Asserts that `vnic up --tap T --ip 10.0.0.2/24 ARGS` refuses to
    /// start, with one line on stderr that says `says`.
    pub fn refuses(&self, args: &[&str], says: &str) {
        let mut all = vec!["up", "--tap", &self.tap, "--ip", "10.0.0.2/24"];
        all.extend_from_slice(args);
        let out = self.vnic_raw(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }

    /// Like [`Netns::vnic`], but IPv4 only, with IPv6 switched off in the
    /// namespace, so the host sends nothing unasked (no router
    /// solicitations, no MLD): a link where every frame is the test's.
    pub fn vnic_quiet_v4(&self, extra: &[&str]) -> Vnic {
        self.exec_ok(&["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]);
        self.exec_ok(&["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"]);
        let mut args: Vec<String> = [
            "up",
            "--tap",
            &self.tap,
            "--ip",
            "10.0.0.2/24",
            "--host-ip",
            "10.0.0.1/24",
            "--time-wait",
            "1s",
            "--quiet",
            "--control",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(self.control_path());
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut full: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            self.name.clone(),
            env!("CARGO_BIN_EXE_vnic").into(),
        ];
        full.extend(args);
        Vnic::start(&full)
    }

    /// Starts `vnic up --config FILE` in the namespace on this test's TAP
    /// and control socket (flags override the file), with `extra` flags.
    pub fn vnic_config(&self, file: &str, extra: &[&str]) -> Vnic {
        let mut full: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            self.name.clone(),
            env!("CARGO_BIN_EXE_vnic").into(),
            "up".into(),
            "--config".into(),
            file.into(),
            "--tap".into(),
            self.tap.clone(),
            "--control".into(),
            self.control_path(),
            "--time-wait".into(),
            "1s".into(),
            "--quiet".into(),
        ];
        full.extend(extra.iter().map(|s| s.to_string()));
        Vnic::start(&full)
    }

    /// Starts `program` (a program built on the vnic library, e.g. an
    /// example) in the namespace with `args`, and waits for its ready line.
    pub fn start_program(&self, program: &Path, args: &[&str]) -> Vnic {
        let mut full: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            self.name.clone(),
            program.to_string_lossy().into_owned(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        Vnic::start(&full)
    }

    /// Starts `vnic up --tap TAP --ip 10.0.0.2/24 EXTRA...` in the
    /// namespace under `env ENV...` (`NAME=VALUE`, or `-u NAME` to unset),
    /// with no `--control` unless EXTRA has one, and waits for its ready
    /// line: for tests of what the environment changes.
    pub fn vnic_with_env(&self, env: &[&str], extra: &[&str]) -> Vnic {
        let mut args: Vec<String> = env.iter().map(|s| s.to_string()).collect();
        let tap = self.tap.clone();
        let name = self.name.clone();
        let base = [
            "ip",
            "netns",
            "exec",
            &name,
            env!("CARGO_BIN_EXE_vnic"),
            "up",
            "--tap",
            &tap,
            "--ip",
            "10.0.0.2/24",
        ];
        args.extend(base.iter().chain(extra).map(|s| s.to_string()));
        Vnic::start_program("env", &args)
    }

    /// Starts vnic in the namespace with these extra flags and waits for
    /// its ready line.
    pub fn vnic(&self, extra: &[&str]) -> Vnic {
        self.vnic_env(&[], extra)
    }

    /// [`Netns::vnic`] under `env ENV...` (`NAME=VALUE`, or `-u NAME` to
    /// unset): the same defaults (addresses, control socket), for tests
    /// that arm something by the environment (`VNIC_TEST_FAULTS=1`).
    pub fn vnic_env(&self, env: &[&str], extra: &[&str]) -> Vnic {
        let mut args: Vec<String> = env.iter().map(|s| s.to_string()).collect();
        let program = if env.is_empty() { "ip" } else { "env" };
        if !env.is_empty() {
            args.push("ip".into());
        }
        args.extend([
            "netns".into(),
            "exec".into(),
            self.name.clone(),
            env!("CARGO_BIN_EXE_vnic").into(),
            "up".into(),
            "--tap".into(),
            self.tap.clone(),
            "--ip".into(),
            "10.0.0.2/24".into(),
            "--ip".into(),
            "fd00::2/64".into(),
            "--host-ip".into(),
            "10.0.0.1/24".into(),
            "--host-ip".into(),
            "fd00::1/64".into(),
            "--time-wait".into(),
            "1s".into(),
            "--control".into(),
            self.control_path(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        Vnic::start_program(program, &args)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.control_path());
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A running vnic; killed on drop if the test did not stop it.
pub struct Vnic {
    child: Option<Child>,
    /// The ready line it printed.
    pub ready: String,
    stderr: mpsc::Receiver<String>,
}

impl Vnic {
    /// The vnic process id (for signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn start(args: &[String]) -> Vnic {
        Vnic::start_program("ip", args)
    }

    /// Starts `program ARGS` (which must end up running `vnic up`, e.g.
    /// `sh -c 'umask 000; exec ip netns exec ...'`) and waits for vnic's
    /// ready line.
    pub fn start_program(program: &str, args: &[String]) -> Vnic {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vnic");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            let _ = etx.send(s);
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let ready = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let err = erx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
                panic!("vnic printed no ready line; stderr: {err}");
            }
        };
        assert!(
            ready.starts_with("vnic: ready "),
            "unexpected first line {ready:?}"
        );
        Vnic {
            child: Some(child),
            ready,
            stderr: erx,
        }
    }

    /// Waits up to `within` for vnic to exit by itself (killing it if it
    /// does not); returns the exit status code (None if it had to be
    /// killed) and stderr.
    pub fn wait_exit(mut self, within: Duration) -> (Option<i32>, String) {
        let mut child = self.child.take().expect("running");
        let code = wait_for_exit(&mut child, within);
        let err = self
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        (code, err)
    }

    /// SIGTERM, then waits; returns the exit status code and stderr.
    pub fn stop(mut self) -> (Option<i32>, String) {
        let mut child = self.child.take().expect("running");
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let err = self
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        (status.code(), err)
    }
}

impl Drop for Vnic {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits up to `within` for `child` to exit by itself (killing it if it
/// does not); its exit status code, None if it had to be killed.
pub fn wait_for_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `GET path` over a fresh connection from inside the namespace; returns the body.
pub fn http_get(stream: &mut std::net::TcpStream, path: &str, keep_alive: bool) -> (u16, String) {
    use std::io::Write;
    let conn = if keep_alive { "keep-alive" } else { "close" };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: vnic\r\nConnection: {conn}\r\n\r\n"
    )
    .expect("send request");
    read_response(stream)
}

/// Reads one HTTP response with a Content-Length body.
pub fn read_response(stream: &mut std::net::TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read response head");
        assert!(
            n == 1,
            "connection closed inside the response head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("Content-Length");
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).expect("read body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The value of `key=` in a `key=value` body.
pub fn body_value(body: &str, key: &str) -> Option<String> {
    body.lines().find_map(|l| {
        l.strip_prefix(&format!("{key}="))
            .map(|v| v.trim().to_string())
    })
}

/// A raw AF_PACKET socket on one interface, for sending crafted frames.
pub struct Raw {
    fd: i32,
    ifindex: i32,
}

impl Raw {
    /// Opens it on `dev` (in the calling thread's namespace).
    pub fn open(dev: &str) -> Raw {
        let name = std::ffi::CString::new(dev).expect("name");
        // SAFETY: plain libc calls with valid arguments; the fd is closed on drop.
        unsafe {
            // Protocol 0: a send-only socket. With ETH_P_ALL it would also
            // get a copy of every frame in the namespace (its own and
            // vnic's answers), paid for inside vnic's writes.
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            assert!(ifindex > 0, "no interface {dev}");
            Raw { fd, ifindex }
        }
    }

    /// Sends one frame as is.
    pub fn send(&self, frame: &[u8]) {
        // SAFETY: sockaddr_ll is plain data; frame is a valid buffer.
        unsafe {
            let mut sa: libc::sockaddr_ll = std::mem::zeroed();
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_ifindex = self.ifindex;
            sa.sll_halen = 6;
            let r = libc::sendto(
                self.fd,
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            // A frame the kernel itself refuses (too short) is fine to skip.
            let _ = r;
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: closing our own fd.
        unsafe { libc::close(self.fd) };
    }
}

/// A connection to `addr` (from a thread in the namespace), with 20 s
/// bounds on connecting, reading and writing.
pub fn connect(addr: &str) -> std::net::TcpStream {
    let a: std::net::SocketAddr = addr.parse().expect("addr");
    let s = std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s
}

/// `n` pseudo-random bytes, the same for the same seed.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = vec![0u8; n];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Sends `data` through an echo connection (writing on a thread of its
/// own, then half-closing) and reads until the server's FIN; returns the
/// bytes that came back and their SHA-256.
pub fn echo_through(stream: std::net::TcpStream, data: Vec<u8>) -> (usize, Vec<u8>) {
    echo_paced(stream, data, |_, _| {})
}

/// [`echo_through`], the writer calling `pace(i, n)` before it writes the
/// i-th of its n chunks (a test that must act while the echo runs holds
/// the writer back there).
pub fn echo_paced(
    stream: std::net::TcpStream,
    data: Vec<u8>,
    mut pace: impl FnMut(usize, usize) + Send + 'static,
) -> (usize, Vec<u8>) {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let mut w = stream.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        let n = data.len().div_ceil(64 * 1024);
        for (i, chunk) in data.chunks(64 * 1024).enumerate() {
            pace(i, n);
            w.write_all(chunk).expect("write echo");
        }
        w.shutdown(std::net::Shutdown::Write).expect("half-close");
    });
    let mut r = stream;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    loop {
        let n = r.read(&mut buf).expect("read echo");
        if n == 0 {
            break;
        }
        total += n;
        h.update(&buf[..n]);
    }
    writer.join().expect("echo writer");
    (total, h.finalize().to_vec())
}

/// One period (95 lines, 7,030 bytes) of the RFC 864 chargen stream.
pub fn chargen_period() -> Vec<u8> {
    let ring: Vec<u8> = (0x21u8..=0x7e).chain(std::iter::once(0x20)).collect();
    let mut period = Vec::with_capacity(95 * 74);
    for k in 0..95 {
        period.extend((0..72).map(|i| ring[(k + i) % 95]));
        period.extend_from_slice(b"\r\n");
    }
    period
}

/// A process's resident memory in KiB (0 if it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Reads exactly `n` bytes of a chargen stream whose next byte is at
/// stream offset `start`; returns the offset of the first byte off the
/// RFC 864 pattern, if any.
pub fn chargen_mismatch(s: &mut std::net::TcpStream, start: usize, n: usize) -> Option<usize> {
    let period = chargen_period();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    let mut mismatch = None;
    while got < n {
        let want = buf.len().min(n - got);
        let k = s.read(&mut buf[..want]).expect("read chargen");
        assert!(k > 0, "chargen closed at offset {}", start + got);
        if mismatch.is_none() {
            mismatch = buf[..k]
                .iter()
                .enumerate()
                .position(|(i, b)| *b != period[(start + got + i) % period.len()])
                .map(|i| start + got + i);
        }
        got += k;
    }
    mismatch
}

/// The MAC hand-crafted frames come from (the host side of the TAP, as
/// far as vnic can tell).
pub const CRAFTED_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 1];

/// An Ethernet frame to `dst` of type `ty` around `payload`, from
/// [`CRAFTED_MAC`], crafted by pnet.
pub fn eth(dst: [u8; 6], ty: pnet_packet::ethernet::EtherType, payload: &[u8]) -> Vec<u8> {
    use pnet_packet::ethernet::MutableEthernetPacket;
    let mut f = vec![0u8; 14 + payload.len()];
    let mut e = MutableEthernetPacket::new(&mut f).expect("eth");
    e.set_destination(pnet_base::MacAddr::from(dst));
    e.set_source(pnet_base::MacAddr::from(CRAFTED_MAC));
    e.set_ethertype(ty);
    e.set_payload(payload);
    f
}

/// An IPv4 packet `src` → `dst` of protocol `proto` around `payload`,
/// with a correct header checksum, then handed to `tweak` (which may
/// break it on purpose), crafted by pnet.
pub fn ipv4(
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    proto: pnet_packet::ip::IpNextHeaderProtocol,
    payload: &[u8],
    tweak: impl FnOnce(&mut pnet_packet::ipv4::MutableIpv4Packet),
) -> Vec<u8> {
    use pnet_packet::ipv4::{self, MutableIpv4Packet};
    let mut b = vec![0u8; 20 + payload.len()];
    let mut p = MutableIpv4Packet::new(&mut b).expect("ip");
    p.set_version(4);
    p.set_header_length(5);
    p.set_total_length((20 + payload.len()) as u16);
    p.set_ttl(64);
    p.set_next_level_protocol(proto);
    p.set_source(src);
    p.set_destination(dst);
    p.set_payload(payload);
    let ck = ipv4::checksum(&p.to_immutable());
    p.set_checksum(ck);
    tweak(&mut p);
    b
}

/// Makes closing `s` reset its connection (SO_LINGER {on, 0}: RST, not
/// FIN), as a client or back-end that aborts does.
pub fn reset_on_close(s: &std::net::TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on our own socket with a valid linger struct.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

/// The bound issue 15 states for the round trips of an echo connection
/// on a processor under attack.
pub const BOUND: Duration = Duration::from_millis(50);

/// Small round trips on an echo connection until `stop`; returns the
/// longest round trip and how many there were.
pub fn echo_round_trips(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> (Duration, usize) {
    use std::io::Write;
    let t0 = Instant::now();
    let a: std::net::SocketAddr = "10.0.0.2:7".parse().expect("addr");
    let mut s =
        std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect echo");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut worst = Duration::ZERO;
    let mut rounds = 0usize;
    let mut back = [0u8; 32];
    while !stop.load(Ordering::Relaxed) {
        let msg = [rounds as u8; 32];
        let t = Instant::now();
        s.write_all(&msg).expect("echo write");
        s.read_exact(&mut back).expect("echo read");
        worst = worst.max(t.elapsed());
        if t.elapsed() > BOUND {
            eprintln!("slow round trip at {:?}: {:?}", t0.elapsed(), t.elapsed());
        }
        assert_eq!(back, msg, "echo intact");
        rounds += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    (worst, rounds)
}

/// True if tshark is installed (.ci/run installs it; the trace and
/// capture tests read their pcapng with it). Outside CI its absence
/// skips the test loudly; under `CI=true` it fails.
pub fn have_tshark() -> bool {
    if Command::new("tshark").arg("-v").output().is_ok() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("tshark must be installed under CI=true");
    }
    eprintln!("\n*** SKIPPING test: tshark is not installed ***\n");
    false
}

/// A JSON array of numbers (a status field such as `rx_queues`) as u64s.
#[allow(dead_code)]
pub fn as_u64s(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
        .unwrap_or_default()
}
