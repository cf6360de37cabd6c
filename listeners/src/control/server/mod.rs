//! The control socket's server side: binds the socket (0600, or 0660 for
//! a `--control-group`; refusing to run beside another live vnic,
//! replacing a stale socket but nothing else), checks each caller
//! ([`super::access`]), serves each client on a thread of its own within
//! bounds ([`MAX_CLIENTS`], [`MAX_REQUEST`], [`REQUEST_TIMEOUT`],
//! [`WRITE_TIMEOUT`]), and removes the file on stop.

mod migrate;
mod requests;
mod status;

pub use migrate::parse_connection;

use super::access::{self, Access};
use super::protocol::{
    AdapterStatus, ListenerStatus, PairStatus, PortFilter, ProcessorStatus, Request, Response,
    Status, TcpStatus, TraceStatus,
};
use crate::distributor::{BackendCtl, BackendCtlRequest};
use crate::stats::Registry;
use parking_lot::Mutex;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vnic_adapter::filter::{FilterKey, ListenerSpec, Protocol};
use vnic_adapter::trace::{CaptureSpec, CaptureStream, LineMode, Rotation, Tracer};
use vnic_adapter::{Counters, Filter, FilterMode, ToProcessor};

/// The rotation size of a pcapng file started at run time (`vnic ctl
/// trace on FILE`) when neither the request (`--max-mb`) nor the start-up
/// flags (`--pcap-max-mb`) say: 1 GiB.
pub const RUNTIME_TRACE_MAX_MB: u64 = 1024;

/// How many files such a trace keeps when neither the request
/// (`--max-files`) nor the start-up flags (`--pcap-max-files`) say: so a
/// run-time trace forgotten on fills at most 4 GiB by default.
pub const RUNTIME_TRACE_MAX_FILES: u32 = 4;

/// The largest `max_mb` a request may ask (as `--pcap-max-mb`).
const MAX_TRACE_MB: u64 = 1_000_000;
/// The largest `max_files` a request may ask (as `--pcap-max-files`).
const MAX_TRACE_FILES: u32 = 100_000;

/// Turning tracing on and off, and reading its state; implemented by the
/// adapter's tracer (kept behind a trait so the server does not care how
/// tracing is done).
pub trait TraceControl: Send + Sync {
    /// Turns tracing on (pcapng to `file` if given, else trace lines) or
    /// off. `file` is absolute (the server refuses others). A pcapng file
    /// rotates at `max_mb` MiB and keeps at most `max_files` files; either
    /// left out takes the start-up flag's value, else
    /// [`RUNTIME_TRACE_MAX_MB`] and [`RUNTIME_TRACE_MAX_FILES`].
    fn set(
        &self,
        on: bool,
        file: Option<PathBuf>,
        max_mb: Option<u64>,
        max_files: Option<u32>,
    ) -> Result<(), String>;
    /// The trace state for `vnic status`.
    fn status(&self) -> TraceStatus;
    /// Starts a live capture (`vnic capture`); an error is one line
    /// (libpcap's word on a bad filter, too many captures).
    fn capture(&self, _spec: CaptureSpec) -> Result<CaptureStream, String> {
        Err("live capture is not available in this vnic".into())
    }
}

/// The rotation of a run-time trace: what the request asks, else the
/// start-up flags' (`startup`), else the run-time defaults. Never without
/// a bound.
pub fn runtime_rotation(
    startup: Rotation,
    max_mb: Option<u64>,
    max_files: Option<u32>,
) -> Rotation {
    Rotation {
        max_bytes: Some(
            max_mb
                .map(|mb| mb.saturating_mul(1 << 20))
                .or(startup.max_bytes)
                .unwrap_or(RUNTIME_TRACE_MAX_MB << 20),
        ),
        max_files: Some(
            max_files
                .or(startup.max_files)
                .unwrap_or(RUNTIME_TRACE_MAX_FILES),
        ),
    }
}

/// The adapter's tracer as the control socket sees it.
pub struct TraceHandle(pub Arc<Tracer>);

impl TraceControl for TraceHandle {
    fn set(
        &self,
        on: bool,
        file: Option<PathBuf>,
        max_mb: Option<u64>,
        max_files: Option<u32>,
    ) -> Result<(), String> {
        match (on, file) {
            (true, Some(f)) => {
                let rotation = runtime_rotation(self.0.rotation(), max_mb, max_files);
                self.0
                    .set_pcap_rotating(Some(f), rotation)
                    .map_err(|e| e.to_string())
            }
            (true, None) => {
                self.0.set_lines(Some(LineMode::Frames));
                Ok(())
            }
            (false, _) => {
                self.0.set_lines(None);
                self.0.set_pcap(None).map_err(|e| e.to_string())
            }
        }
    }

    fn status(&self) -> TraceStatus {
        let st = self.0.stats();
        let rotation = st.file.as_ref().map(|_| st.rotation).unwrap_or_default();
        TraceStatus {
            active: self.0.tracing(),
            file: st.file.map(|f| f.display().to_string()),
            records: st.written,
            lost: st.lost,
            max_mb: rotation.max_bytes.map(|b| b >> 20),
            max_files: rotation.max_files,
            filter: st.filter,
            captures: st
                .captures
                .iter()
                .map(super::capture::capture_status)
                .collect(),
        }
    }

    fn capture(&self, spec: CaptureSpec) -> Result<CaptureStream, String> {
        self.0.capture(spec).map_err(|e| e.to_string())
    }
}

/// Handles on everything the control commands look at or steer.
pub struct Runtime {
    /// TAP name.
    pub tap: String,
    /// When vnic started.
    pub started: Instant,
    /// The distribution filter (shared with the RX thread).
    pub filter: Arc<Mutex<Filter>>,
    /// Each processor's queue, to tell it to go down or up.
    pub queues: Vec<vnic_adapter::ProcessorQueue>,
    /// Per-processor counters.
    pub registry: Arc<Registry>,
    /// Adapter counters.
    pub counters: Arc<Counters>,
    /// The TCP ports served at start-up (each by every processor in the
    /// monolithic model). `vnic status` takes each processor's ports from
    /// the filter instead, which also knows those added at run time, held
    /// as a backup, and UDP.
    pub ports: Vec<u16>,
    /// Tracing, if this vnic can trace.
    pub trace: Option<Arc<dyn TraceControl>>,
    /// The distributor's back-end control (distributor model only).
    pub backend_ctl: Option<vnic_adapter::BellSender<BackendCtlRequest>>,
    /// Each processor's way to answer `sockets` (index = processor; see
    /// [`crate::processor::Inbox::socket_queries`]).
    pub socket_queries: Vec<crate::processor::SocketQueries>,
    /// The link impairment (`--impair`), if any: what was asked, and its
    /// counters.
    pub impair: Option<(String, Arc<vnic_adapter::impair::ImpairStats>)>,
    /// With `--processor-queues`: the kernel's flow map (its entries are
    /// counted for `steered_flows`).
    pub flow_map: Option<Arc<vnic_adapter::flowmap::FlowMap>>,
    /// The process pairs (for status).
    pub pairs: Arc<vnic_adapter::Pairs>,
    /// The TCP settings in force (for status), from the processors'
    /// default `TcpConfig`.
    pub tcp: TcpStatus,
    /// With several TAPs (Ethernet failover): the links, for status and
    /// `vnic ctl link`.
    pub links: Option<Arc<vnic_adapter::link::Links>>,
}

impl Runtime {
    /// Carries out one request.
    pub fn handle(&self, req: Request) -> Response {
        log::debug!("control request {}", req.name());
        match req {
            Request::Status => Response {
                status: Some(self.status()),
                ..Response::ok()
            },
            Request::Processor { id, state } if state == "drain" => self.drain_processor(id),
            Request::Processor { id, state } if state == "restart" => self.restart_processor(id),
            Request::ConnectionMove { connection, to } => self.move_connection(&connection, to),
            Request::Processor { id, state } => {
                let up = match state.as_str() {
                    "up" => true,
                    "down" | "crash" => false,
                    other => {
                        return Response::error(format!(
                            "state {other:?}: use up, down, drain, crash or restart"
                        ))
                    }
                };
                let Some(q) = self.queues.get(id) else {
                    return Response::error(format!(
                        "processor {id} does not exist (processors: 0..{})",
                        self.queues.len().saturating_sub(1)
                    ));
                };
                if let Some(why) = self
                    .registry
                    .processors
                    .get(id)
                    .and_then(|p| p.failure.lock().clone())
                {
                    return Response::error(format!("processor {id} has failed: {why}"));
                }
                if state == "crash" {
                    if q.send(ToProcessor::Crash).is_err() {
                        return Response::error(format!("processor {id} has stopped"));
                    }
                    return Response::ok();
                }
                // Out of the rotation first, so no new connection lands on
                // a processor that is resetting its connections.
                let takeovers = self.filter.lock().set_up_report(id, up);
                let msg = if up {
                    ToProcessor::Up
                } else {
                    ToProcessor::Down
                };
                if q.send(msg).is_err() {
                    return Response::error(format!("processor {id} has stopped"));
                }
                Response {
                    notes: takeovers.iter().map(|t| t.to_string()).collect(),
                    ..Response::ok()
                }
            }
            Request::ListenerAdd {
                protocol,
                port,
                processor,
                app,
                backup,
                address,
                key,
            } => self.add_listener(&protocol, port, processor, app, backup, address, key),
            Request::ListenerRemove {
                protocol,
                port,
                processor,
            } => self.remove_listener(&protocol, port, processor),
            Request::Backend { id, state } => {
                let up = match state.as_str() {
                    "up" => true,
                    "down" => false,
                    other => return Response::error(format!("state {other:?}: use up or down")),
                };
                let Some(ctl) = &self.backend_ctl else {
                    return Response::error("no back-ends: this vnic runs the monolithic model");
                };
                let (tx, rx) = crossbeam_channel::bounded(1);
                if ctl.send((BackendCtl { backend: id, up }, tx)).is_err() {
                    return Response::error("the distributor has stopped");
                }
                match rx.recv_timeout(Duration::from_secs(5)) {
                    Ok(Ok(())) => Response::ok(),
                    Ok(Err(e)) => Response::error(e),
                    Err(_) => Response::error("the distributor did not answer"),
                }
            }
            Request::Filter {
                mode,
                port,
                protocol,
            } => self.set_filter(&mode, port, protocol.as_deref()),
            Request::Trace {
                on,
                file,
                max_mb,
                max_files,
            } => self.trace(on, file, max_mb, max_files),
            // Served by the client thread, which streams it.
            Request::Capture { .. } => {
                Response::error("a capture is a stream: the client thread serves it")
            }
            Request::Sockets {
                processor,
                port,
                state,
            } => self.sockets(processor, port, state.as_deref()),
            Request::StatsReset => self.reset_stats(),
            Request::Link { name, state } => self.link(&name, &state),
        }
    }
}

/// Where the control socket of TAP `tap` lives unless `--control` says:
/// `$XDG_RUNTIME_DIR/vnic-TAP.sock`, else `/run/vnic/TAP.sock`.
pub fn default_path(tap: &str) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => Path::new(&dir).join(format!("vnic-{tap}.sock")),
        _ => PathBuf::from(format!("/run/vnic/{tap}.sock")),
    }
}

/// Most clients served at once; one more is told so and disconnected.
/// Each holds a thread while connected (`vnic status --watch` stays).
pub const MAX_CLIENTS: usize = 32;

/// Longest request line in bytes, newline not counted (the longest real
/// request is a few hundred bytes). A longer one is answered with an
/// error and the connection closed.
pub const MAX_REQUEST: usize = 64 << 10;

/// How long one answer may take to write: a client that does not read
/// its answers is disconnected after this, so it holds no thread for good.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a request line may take to arrive once its first byte has:
/// a client trickling a line byte by byte is disconnected after this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a client thread looks at the stop flag while it waits.
const STOP_POLL: Duration = Duration::from_millis(500);

/// What one client may cost (the constants above; tests shrink them).
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub max_clients: usize,
    pub max_request: usize,
    pub write_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_clients: MAX_CLIENTS,
            max_request: MAX_REQUEST,
            write_timeout: WRITE_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
        }
    }
}

/// What answers requests: the [`Runtime`]; a stand-in in tests.
pub(super) trait Handler: Send + Sync {
    fn handle(&self, req: Request) -> Response;

    /// Starts a live capture, streamed by the client thread.
    fn capture(
        &self,
        _filter: Option<String>,
        _processor: Option<usize>,
    ) -> Result<CaptureStream, String> {
        Err("live capture is not available here".into())
    }
}

impl Handler for Runtime {
    fn handle(&self, req: Request) -> Response {
        Runtime::handle(self, req)
    }

    fn capture(
        &self,
        filter: Option<String>,
        processor: Option<usize>,
    ) -> Result<CaptureStream, String> {
        Runtime::capture(self, filter, processor)
    }
}

/// A bound control socket.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    access: Access,
    limits: Limits,
}

impl ControlServer {
    /// Binds `path`: mode 0600, or 0660 with its group set to `group`
    /// (`--control-group`), whatever the umask. Another vnic answering
    /// there is an error; a socket file nobody answers on (left by a
    /// crashed run) is replaced; anything else at the path (a file, a
    /// directory, a symbolic link) is left alone and is an error.
    pub fn bind(path: &Path, group: Option<u32>) -> io::Result<ControlServer> {
        let access = Access::new(group);
        let err = |e: io::Error, what: &str| {
            io::Error::new(
                e.kind(),
                format!("cannot {what} control socket {}: {e}", path.display()),
            )
        };
        remove_stale(path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                // 0755 exactly: a careless umask must neither leave a
                // directory others may replace sockets in, nor one the
                // --control-group cannot pass through.
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .and_then(|()| {
                        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                    })
                    .map_err(|e| err(e, "make the directory of the"))?;
            }
            check_directory(dir)?;
        }
        let listener = access::bind_listener(path, 0o600).map_err(|e| err(e, "bind"))?;
        // Now widen (the group) and set the exact mode: the umask may have
        // taken bits from the 0600 the file was born with.
        if let Err(e) = access::set_owner_and_mode(path, access.group, access.mode()) {
            let _ = std::fs::remove_file(path);
            return Err(err(e, "set the owner and mode of the"));
        }
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            access,
            limits: Limits::default(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves requests until `stop` is set, then removes the socket file.
    pub fn serve(self, rt: Arc<Runtime>, stop: Arc<AtomicBool>) {
        self.serve_with(rt, stop);
    }

    /// Shrinks the limits (tests).
    #[cfg(test)]
    pub(super) fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub(super) fn serve_with(self, handler: Arc<dyn Handler>, stop: Arc<AtomicBool>) {
        let clients = Arc::new(AtomicUsize::new(0));
        while !stop.load(Ordering::Relaxed) {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream, &handler, &stop, &clients),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Checks a new connection's caller and the client count, then gives
    /// it a thread of its own (`vnic status --watch` keeps its connection
    /// open; nobody waits on anybody else). A refused caller gets one
    /// error line and is disconnected at once.
    fn admit(
        &self,
        stream: UnixStream,
        handler: &Arc<dyn Handler>,
        stop: &Arc<AtomicBool>,
        clients: &Arc<AtomicUsize>,
    ) {
        match access::peer(&stream) {
            Ok(p) if self.access.allows(&p) => {}
            Ok(p) => return refuse(&stream, &self.access.refusal(&p)),
            Err(e) => return refuse(&stream, &format!("cannot tell who is calling: {e}")),
        }
        let max = self.limits.max_clients;
        if clients.fetch_add(1, Ordering::SeqCst) >= max {
            clients.fetch_sub(1, Ordering::SeqCst);
            return refuse(
                &stream,
                &format!("too many control clients ({max} connected): try again later"),
            );
        }
        let place = Place(clients.clone());
        let (handler, stop, limits) = (handler.clone(), stop.clone(), self.limits);
        // If the thread cannot start, the closure is dropped with the
        // stream (the client sees the connection close) and the place.
        let _ = std::thread::Builder::new()
            .name("vnic-ctl-client".into())
            .spawn(move || {
                let _place = place;
                below_the_processors();
                client(stream, handler.as_ref(), &stop, &limits);
            });
    }
}

impl Drop for ControlServer {
    /// Removes the socket file: after a stop, and also when the vnic
    /// failed to start after binding it (a busy TAP), so no stale socket
    /// is left behind.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How much nicer than the processors a control client's thread runs.
pub const CLIENT_NICE: i32 = 10;

/// Lowers the calling thread's priority by [`CLIENT_NICE`]: a socket
/// table of 100,000 rows costs its client thread a few hundred
/// milliseconds of CPU (rows to text, text to JSON), which on a machine
/// with few cores must not come out of the processors' time. (Linux
/// gives each thread its own nice value; raising it needs no privilege.)
fn below_the_processors() {
    // The "process" of PRIO_PROCESS is this thread's id.
    let tid = rustix::thread::gettid();
    let _ = rustix::process::setpriority_process(Some(tid), CLIENT_NICE);
}

/// A client's place under [`MAX_CLIENTS`], given back when dropped.
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Refuses a directory in which anybody may remove or rename files
/// (writable by others, without the sticky bit): anyone could put a
/// socket of their own in vnic's place and hear what `vnic ctl` says.
fn check_directory(dir: &Path) -> io::Result<()> {
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is writable by everyone without the sticky bit: anyone could replace the \
                 control socket there (chmod o-w or +t it, or choose another --control PATH)",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Removes what is at `path` only if it is a socket nobody answers on.
fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot look at control socket path {}: {e}", path.display()),
            ))
        }
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket: vnic leaves it alone (remove it or choose another --control PATH)",
                path.display()
            ),
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another vnic is running here: its control socket {} answers",
                path.display()
            ),
        )),
        // Nobody listens: a crashed run's socket.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot replace stale control socket {}: {e}",
                        path.display()
                    ),
                )
            }),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "cannot tell whether control socket {} is stale ({e}): vnic leaves it alone",
                path.display()
            ),
        )),
    }
}

/// One error line to a caller that will not be served, without waiting
/// on it; the connection closes when `stream` is dropped.
fn refuse(stream: &UnixStream, msg: &str) {
    log::warn!("control socket: a caller was refused: {msg}");
    let _ = stream.set_nonblocking(true);
    let mut w = stream;
    let _ = w.write_all(&Response::error(msg).to_line());
}

/// Writes all of `bytes` before `deadline`, or fails.
fn write_by(stream: &UnixStream, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let mut rest = bytes;
    let mut w = stream;
    while !rest.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match w.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Serves one client: reads request lines (each at most
/// `max_request` bytes, arriving within `request_timeout` of its first
/// byte), answers each within `write_timeout`, until the client leaves,
/// breaks a limit, or vnic stops.
fn client(stream: UnixStream, handler: &dyn Handler, stop: &AtomicBool, limits: &Limits) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(STOP_POLL));
    let mut reader = BufReader::with_capacity(8 << 10, &stream);
    let mut line: Vec<u8> = Vec::new();
    let mut first_byte: Option<Instant> = None;
    let reply = |resp: &Response| {
        write_by(
            &stream,
            &resp.to_line(),
            Instant::now() + limits.write_timeout,
        )
    };
    while !stop.load(Ordering::Relaxed) {
        // Checked whether bytes trickle in or nothing comes.
        if first_byte.is_some_and(|t| t.elapsed() > limits.request_timeout) {
            let _ = reply(&Response::error(format!(
                "request not finished within {}s: disconnected",
                limits.request_timeout.as_secs_f64()
            )));
            return;
        }
        let buf = match reader.fill_buf() {
            Ok([]) => return,
            Ok(b) => b,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => return,
        };
        let (take, complete) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let body = take - usize::from(complete);
        if line.len() + body > limits.max_request {
            let _ = reply(&Response::error(format!(
                "request longer than {} bytes: refused, disconnected",
                limits.max_request
            )));
            return;
        }
        line.extend_from_slice(&buf[..body]);
        reader.consume(take);
        first_byte.get_or_insert_with(Instant::now);
        if !complete {
            continue;
        }
        let resp = match Request::from_line(&line) {
            // After its answer the connection is the capture's stream.
            Ok(Request::Capture { filter, processor }) => {
                match handler.capture(filter, processor) {
                    Ok(cap) => {
                        let started = Response {
                            notes: vec![format!("capture {} started", cap.id())],
                            ..Response::ok()
                        };
                        if reply(&started).is_ok() {
                            super::capture::stream(&stream, cap, stop, limits);
                        }
                        return;
                    }
                    Err(e) => Response::error(e),
                }
            }
            Ok(req) => handler.handle(req),
            Err(e) => Response::error(e),
        };
        line.clear();
        first_byte = None;
        if reply(&resp).is_err() {
            return;
        }
    }
}
