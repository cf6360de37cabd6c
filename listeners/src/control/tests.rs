//! The control server's limits and checks, on real Unix sockets in a
//! temporary directory, with a stand-in handler (and the real
//! [`Runtime`] for the trace request).

use super::protocol::{Request, Response};
use super::server::{Handler, Limits};
use super::*;
use crate::stats::Registry;
use parking_lot::Mutex;
use rustix::event::{PollFd, PollFlags};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vnic_adapter::trace::{Rotation, TraceOptions, Tracer};
use vnic_adapter::{Counters, Filter, FilterMode};

pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("vnic-ctl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Answers every request with `note_bytes` bytes of notes.
struct Stub {
    note_bytes: usize,
}

impl Handler for Stub {
    fn handle(&self, _req: Request) -> Response {
        Response {
            notes: vec!["n".repeat(self.note_bytes)],
            ..Response::ok()
        }
    }
}

/// A server on `dir/s.sock` with `limits`, stopped (and joined) on drop.
struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(dir: &TempDir, limits: Limits, note_bytes: usize) -> Server {
        let path = dir.0.join("s.sock");
        let mut srv = ControlServer::bind(&path, None).expect("bind");
        srv.set_limits(limits);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || srv.serve_with(Arc::new(Stub { note_bytes }), s));
        Server {
            path,
            stop,
            thread: Some(thread),
        }
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn limits() -> Limits {
    Limits {
        max_clients: 4,
        max_request: 100,
        write_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
    }
}

fn answer(s: &UnixStream) -> Response {
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("read");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

fn ask(s: &UnixStream, line: &[u8]) -> Response {
    let mut w = s;
    w.write_all(line).expect("send");
    answer(s)
}

const STATUS: &[u8] = b"{\"cmd\":\"status\"}\n";

/// True if the server closed `s` within `within` (without reading it).
fn hung_up(s: &UnixStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let wait = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 20_000_000,
    };
    let hup = PollFlags::RDHUP | PollFlags::HUP;
    while Instant::now() < deadline {
        let mut pfd = [PollFd::new(s, PollFlags::RDHUP)];
        let r = rustix::event::poll(&mut pfd, Some(&wait)).unwrap_or(0);
        if r > 0 && pfd[0].revents().intersects(hup) {
            return true;
        }
    }
    false
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

// ------------------------------------------------------------------ bind

#[test]
fn bind_makes_the_socket_0600_or_0660_with_the_group() {
    let dir = TempDir::new("mode");
    let p = dir.0.join("a.sock");
    let a = ControlServer::bind(&p, None).expect("bind");
    assert_eq!(mode(&p), 0o600);
    drop(a);
    let _ = std::fs::remove_file(&p);
    let b = ControlServer::bind(&p, Some(4242)).expect("bind with a group");
    assert_eq!(mode(&p), 0o660);
    assert_eq!(std::fs::metadata(&p).expect("stat").gid(), 4242);
    drop(b);
}

#[test]
fn bind_leaves_a_file_a_directory_or_a_link_alone() {
    let dir = TempDir::new("notsock");
    let p = dir.0.join("s.sock");
    std::fs::write(&p, "precious").expect("write");
    let err = ControlServer::bind(&p, None).err().expect("refused");
    assert!(err.to_string().contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&p).expect("kept"), "precious");
    std::fs::remove_file(&p).expect("rm");
    std::fs::create_dir(&p).expect("dir");
    assert!(ControlServer::bind(&p, None).is_err());
    assert!(p.is_dir());
    std::fs::remove_dir(&p).expect("rmdir");
    // A link to a stale socket is not followed either.
    let stale = dir.0.join("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind"));
    std::os::unix::fs::symlink(&stale, &p).expect("symlink");
    let err = ControlServer::bind(&p, None).err().expect("refused");
    assert!(err.to_string().contains("is not a socket"), "{err}");
    assert!(std::fs::symlink_metadata(&p)
        .expect("kept")
        .file_type()
        .is_symlink());
    assert!(stale.exists());
}

#[test]
fn bind_refuses_a_directory_anyone_may_replace_files_in() {
    let dir = TempDir::new("open");
    let open = dir.0.join("open");
    std::fs::create_dir(&open).expect("dir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = ControlServer::bind(&open.join("s.sock"), None)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("writable by everyone"), "{err}");
    // With the sticky bit (as /tmp), only the owner may remove the socket.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    drop(ControlServer::bind(&open.join("s.sock"), None).expect("sticky is fine"));
    // A directory vnic makes is 0755 whatever the umask.
    let made = dir.0.join("made/run");
    drop(ControlServer::bind(&made.join("s.sock"), None).expect("made"));
    assert_eq!(mode(&made), 0o755);
}

#[test]
fn bind_replaces_a_stale_socket_and_refuses_a_live_one() {
    let dir = TempDir::new("stale");
    let p = dir.0.join("s.sock");
    drop(UnixListener::bind(&p).expect("bind"));
    let live = ControlServer::bind(&p, None).expect("stale one replaced");
    let err = ControlServer::bind(&p, None).err().expect("refused");
    assert!(err.to_string().contains("another vnic is running"), "{err}");
    assert!(p.exists(), "a refused bind leaves the live socket alone");
    // Dropped (a vnic that failed to start after binding): no stale file.
    drop(live);
    assert!(!p.exists());
}

// ---------------------------------------------------------------- limits

#[test]
fn a_request_over_the_limit_is_refused_and_the_connection_closed() {
    let dir = TempDir::new("long");
    let srv = Server::start(&dir, limits(), 1);
    // Exactly the limit (newline not counted) is fine; one more is not.
    let s = srv.connect();
    let mut at_limit = vec![b' '; 100 - STATUS.len() + 1];
    at_limit.extend_from_slice(STATUS);
    assert_eq!(at_limit.len(), 101);
    assert!(ask(&s, &at_limit).ok);
    let mut over = vec![b' '; 101];
    over.push(b'\n');
    let r = ask(&s, &over);
    assert!(!r.ok);
    assert!(
        r.error
            .as_deref()
            .unwrap_or("")
            .contains("longer than 100 bytes"),
        "{r:?}"
    );
    assert!(hung_up(&s, Duration::from_secs(2)));
    // Without a newline at all, the same.
    let s = srv.connect();
    let r = ask(&s, &[b'x'; 1000]);
    assert!(!r.ok, "{r:?}");
    assert!(ask(&srv.connect(), STATUS).ok, "others are served");
}

#[test]
fn a_request_trickled_past_the_request_timeout_is_dropped() {
    let dir = TempDir::new("trickle");
    let srv = Server::start(&dir, limits(), 1);
    let s = srv.connect();
    let mut w = s.try_clone().expect("clone");
    let started = Instant::now();
    // A space every 100 ms for 3 s: the read is never idle for long, and
    // the line stays under the size limit.
    let trickle = std::thread::spawn(move || {
        for _ in 0..30 {
            if w.write_all(b" ").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let r = answer(&s);
    let took = started.elapsed();
    assert!(!r.ok);
    assert!(
        r.error.as_deref().unwrap_or("").contains("not finished"),
        "{r:?}"
    );
    assert!(took < Duration::from_millis(1500), "{took:?}");
    trickle.join().expect("trickle");
}

#[test]
fn a_client_that_does_not_read_is_dropped_after_the_write_timeout() {
    let dir = TempDir::new("noread");
    // 64 KiB answers: the socket fills after a few.
    let srv = Server::start(&dir, limits(), 64 << 10);
    let s = srv.connect();
    s.set_nonblocking(true).expect("nonblocking");
    let mut w = &s;
    for _ in 0..64 {
        if w.write(STATUS).is_err() {
            break;
        }
    }
    let t = Instant::now();
    assert!(hung_up(&s, Duration::from_secs(3)), "still held");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // Meanwhile and after, others are served.
    assert!(ask(&srv.connect(), STATUS).ok);
}

#[test]
fn clients_over_the_cap_are_refused_and_places_come_back() {
    let dir = TempDir::new("cap");
    let srv = Server::start(&dir, limits(), 1);
    let mut held: Vec<UnixStream> = (0..4)
        .map(|_| {
            let s = srv.connect();
            assert!(ask(&s, STATUS).ok);
            s
        })
        .collect();
    let r = ask(&srv.connect(), STATUS);
    assert!(!r.ok);
    assert!(
        r.error
            .as_deref()
            .unwrap_or("")
            .contains("too many control clients (4 connected)"),
        "{r:?}"
    );
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(2);
    while !ask(&srv.connect(), STATUS).ok {
        assert!(Instant::now() < deadline, "the place did not come back");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ----------------------------------------------------------------- trace

pub(super) fn runtime(trace: Option<Arc<dyn TraceControl>>) -> Runtime {
    Runtime {
        flow_map: None,
        pairs: Arc::new(vnic_adapter::Pairs::none()),
        tap: "t0".into(),
        started: Instant::now(),
        filter: Arc::new(Mutex::new(Filter::new(FilterMode::RoundRobin, 1))),
        queues: Vec::new(),
        registry: Arc::new(Registry::new("monolithic", "round-robin", 1)),
        counters: Arc::new(Counters::new(1)),
        ports: Vec::new(),
        trace,
        backend_ctl: None,
        socket_queries: Vec::new(),
        impair: None,
        tcp: TcpStatus::of(&vnic_stack::TcpConfig::default()),
        links: None,
    }
}

pub(super) fn tracer(max_mb: Option<u64>, max_files: Option<u32>) -> Arc<Tracer> {
    Tracer::start(TraceOptions {
        pcap: None,
        pcap_max_mb: max_mb,
        pcap_max_files: max_files,
        snaplen: vnic_adapter::trace::SNAPLEN,
        lines: None,
        iface: "t0".into(),
        mac: [2, 0, 0, 0, 0, 1],
        pcap_filter: None,
        section_comment: None,
    })
    .expect("tracer")
}

fn trace_req(file: &str, max_mb: Option<u64>, max_files: Option<u32>) -> Request {
    Request::Trace {
        on: true,
        file: Some(file.into()),
        max_mb,
        max_files,
    }
}

#[test]
fn a_trace_file_must_be_absolute() {
    let dir = TempDir::new("rel");
    let t = tracer(None, None);
    let rt = runtime(Some(Arc::new(TraceHandle(t.clone()))));
    let r = rt.handle(trace_req("x.pcapng", None, None));
    assert!(!r.ok);
    assert!(
        r.error.as_deref().unwrap_or("").contains("absolute"),
        "{r:?}"
    );
    assert!(!Path::new("x.pcapng").exists());
    let abs = dir.0.join("x.pcapng");
    assert!(
        rt.handle(trace_req(&abs.display().to_string(), None, None))
            .ok
    );
    assert!(
        rt.handle(Request::Trace {
            on: false,
            file: None,
            max_mb: None,
            max_files: None
        })
        .ok
    );
    t.close();
}

#[test]
fn a_run_time_trace_always_has_a_size_cap() {
    let gib = 1024 << 20;
    let none = Rotation::default();
    let got = |startup, mb, files| runtime_rotation(startup, mb, files);
    assert_eq!(
        got(none, None, None),
        Rotation {
            max_bytes: Some(gib),
            max_files: Some(4)
        }
    );
    assert_eq!(
        got(none, Some(2), Some(3)),
        Rotation {
            max_bytes: Some(2 << 20),
            max_files: Some(3)
        }
    );
    // The start-up flags are the next default, each on its own.
    let startup = Rotation {
        max_bytes: Some(10 << 20),
        max_files: None,
    };
    assert_eq!(
        got(startup, None, None),
        Rotation {
            max_bytes: Some(10 << 20),
            max_files: Some(4)
        }
    );
}

#[test]
fn the_trace_request_sets_the_tracers_rotation() {
    let dir = TempDir::new("rot");
    let t = tracer(None, None);
    let rt = runtime(Some(Arc::new(TraceHandle(t.clone()))));
    let f = dir.0.join("r.pcapng").display().to_string();
    assert!(rt.handle(trace_req(&f, None, None)).ok);
    let st = rt.status().trace;
    assert_eq!((st.max_mb, st.max_files), (Some(1024), Some(4)));
    assert_eq!(t.stats().rotation.max_bytes, Some(1024 << 20));
    assert!(rt.handle(trace_req(&f, Some(7), Some(9))).ok);
    let st = rt.status().trace;
    assert_eq!((st.max_mb, st.max_files), (Some(7), Some(9)));
    for bad in [trace_req(&f, Some(0), None), trace_req(&f, None, Some(0))] {
        let r = rt.handle(bad);
        assert!(!r.ok, "{r:?}");
    }
    let r = rt.handle(Request::Trace {
        on: true,
        file: None,
        max_mb: Some(5),
        max_files: None,
    });
    assert!(!r.ok, "a cap without a file: {r:?}");
    t.close();
}

// ----- sockets and stats-reset (issue 17) ----------------------------------

fn sockets_req(processor: Option<usize>, port: Option<u16>, state: Option<&str>) -> Request {
    Request::Sockets {
        processor,
        port,
        state: state.map(str::to_string),
    }
}

#[test]
fn bad_socket_filters_are_one_line_each() {
    let rt = runtime(None);
    for (req, says) in [
        (
            sockets_req(None, None, Some("open")),
            "unknown state \"open\"",
        ),
        (sockets_req(None, Some(0), None), "port 0"),
        (
            sockets_req(Some(3), None, None),
            "processor 3 does not exist",
        ),
    ] {
        let r = rt.handle(req);
        let e = r.error.unwrap_or_default();
        assert!(!r.ok && e.contains(says) && !e.contains('\n'), "{e}");
    }
}

#[test]
fn stats_reset_zeroes_the_counters_and_moves_the_reset_time() {
    let rt = runtime(None);
    let before = rt.status();
    let p = &rt.registry.processors[0];
    p.accepted.store(7, Ordering::Relaxed);
    p.active.store(2, Ordering::Relaxed);
    rt.counters.frame_in(0);
    Counters::bump(&rt.counters.rst_sent);
    std::thread::sleep(Duration::from_millis(5));
    let r = rt.handle(Request::StatsReset);
    assert!(r.ok, "{r:?}");
    assert!(r.notes[0].starts_with("counters reset at 20"), "{r:?}");
    let after = rt.status();
    assert!(after.reset_time > before.reset_time, "{after:?}");
    assert!(after.since_reset_secs < 1.0, "{after:?}");
    assert_eq!(after.processors[0].accepted, 0);
    assert_eq!(after.processors[0].active, 2, "a gauge");
    assert_eq!((after.adapter.frames_in, after.adapter.rst_sent), (0, 0));
    assert!(after.sample_time >= after.reset_time);
}
