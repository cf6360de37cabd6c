//! `--serve PORT=exec:'PROGRAM ARGS...'`: a program per connection, as
//! NonStop's "standard" listener model has a server process per
//! connection (and as inetd or UCSPI's `tcpserver` do).
//!
//! Each connection starts the program with its stdin and stdout tied to
//! the connection, through pipes whose parent ends are non-blocking and
//! watched in the processor's own epoll ([`crate::app::Io`]): the same
//! thread drives the TCP connection and the child, with no thread per
//! child. The program learns who called from the UCSPI variables
//! `TCPREMOTEIP`, `TCPREMOTEPORT`, `TCPLOCALIP`, `TCPLOCALPORT` and
//! `PROTO=TCP`, plus `VNIC_PROCESSOR` and `VNIC_CONNECTION`.
//!
//! The two directions are half-duplex pumps, as in a relay:
//!
//! - client → program: the client is read only while the bounded buffer
//!   towards the program has room, so a program that does not read closes
//!   the client's TCP window. The client's FIN, once everything before it
//!   is written, closes the program's stdin. A program that closed its
//!   stdin (EPIPE) gets nothing more; the client's bytes are dropped.
//! - program → client: the program's stdout is read only as far as the
//!   connection's send space allows. Its end (EOF, or the program's exit
//!   with the pipe drained) closes our side of the connection (FIN) once
//!   everything is sent.
//!
//! The program's stderr goes to vnic's stderr, a line at a time, each
//! prefixed `vnic: exec cpu=K conn=N: ` and cut at 4 KiB. (vnic's stderr
//! is written in place: whoever runs vnic must read it.)
//!
//! Memory per connection is bounded: [`TO_PROGRAM`] bytes towards the
//! program, [`TO_CLIENT`] bytes towards the client and one stderr line of
//! at most 4 KiB, 132 KiB in all at most (allocated when first used),
//! besides the kernel's own pipe buffers.
//!
//! The program starts when the SYN arrives ([`Service::open`] is asked
//! then, so that a program that cannot start has the SYN reset), on the
//! processor's thread: std's `Command` spawns with `posix_spawn`, under a
//! millisecond (measured: about 0.8 ms for `/bin/cat`, pipes and pidfd
//! included).
//!
//! Every child is reaped, also after its connection is gone, by one
//! reaper thread for the whole process, which sleeps on the children's
//! pidfds. When the connection is reset, times out or is dropped, the
//! program gets SIGTERM, then SIGKILL two seconds later if it is still
//! there; after a clean close it gets the same grace period to exit on
//! its own first.
//!
//! Each listener ([`ExecService`], one per `--serve` entry, shared by all
//! processors) runs at most [`ExecOptions::max`] programs at once; a
//! connection beyond that, or one whose program cannot be started, is
//! refused (the client gets RST) and counted.

mod checkpoint;
mod reaper;
mod stderr;
mod sys;

use crate::app::buf::Buf;
use crate::app::{
    App, AppCheckpoint, AppContext, CloseReason, Io, NoCheckpoint, Refused, Service, Socket,
};
use crate::stats::ServiceReport;
use checkpoint::ChildShare;
use reaper::Reaper;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use stderr::{Pumped, StderrLines};

/// Most client bytes held for the program's stdin (read from the client
/// but not yet written to the pipe).
pub const TO_PROGRAM: usize = 64 * 1024;

/// Most program bytes held for the client (read from its stdout but not
/// yet taken by the connection).
pub const TO_CLIENT: usize = 64 * 1024;

/// Descriptors one running child costs this process: its three pipes, the
/// app's pidfd and the reaper's.
const FDS_PER_CHILD: u64 = 5;

/// Limits of an exec listener (`--exec-max`), kept apart from the command
/// so the CLI can build them once for every exec entry.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// Most programs running at once for one listener; connections
    /// beyond it are reset.
    pub max: usize,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions { max: 256 }
    }
}

/// Splits `exec:`'s command line into words as a POSIX shell would
/// (quotes, backslashes), without running a shell, so that what the user
/// typed is what is started.
pub fn parse_command(s: &str) -> Result<Vec<String>, String> {
    let words = shell_words::split(s).map_err(|e| format!("exec command {s:?}: {e}"))?;
    if words.is_empty() {
        return Err("exec needs a program to run (exec:'PROGRAM ARGS...')".into());
    }
    Ok(words)
}

/// A listener's counters, shared by its processors and the reaper.
#[derive(Debug, Default)]
struct Counters {
    /// Programs started.
    started: AtomicU64,
    /// Programs started and not reaped yet (plus, for a moment, the one
    /// being started): the number `max` limits.
    running: AtomicUsize,
    /// Programs reaped.
    exited: AtomicU64,
    /// Connections refused because `max` programs were running.
    refused: AtomicU64,
    /// Connections refused because the program could not be started.
    failed: AtomicU64,
}

impl Counters {
    /// Takes a place for one more program, if fewer than `max` run.
    fn reserve(&self, max: usize) -> bool {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back a place taken by [`Counters::reserve`] for a program
    /// that did not start.
    fn release(&self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
    }

    /// A program was reaped: its place is free.
    fn reaped(&self) {
        self.exited.fetch_add(1, Ordering::Relaxed);
        self.release();
    }
}

/// One `--serve PORT=exec:...` listener: starts the program for each
/// connection and keeps the listener's limit and counters, shared by every
/// processor.
pub struct ExecService {
    argv: Vec<String>,
    opts: ExecOptions,
    counters: Arc<Counters>,
}

impl ExecService {
    /// A listener that runs `argv` (the program, then its arguments) per
    /// connection. Makes sure a program's closed stdin cannot kill vnic
    /// with SIGPIPE, and that the descriptor limit leaves room for `max`
    /// children.
    pub fn new(argv: Vec<String>, opts: ExecOptions) -> Result<ExecService, String> {
        if argv.first().is_none_or(|p| p.is_empty()) {
            return Err("exec needs a program to run (exec:'PROGRAM ARGS...')".into());
        }
        if opts.max == 0 {
            return Err("--exec-max must be at least 1".into());
        }
        sys::ignore_sigpipe().map_err(|e| format!("exec: cannot ignore SIGPIPE: {e}"))?;
        // Best effort: a lower limit only means refusals (counted) sooner.
        let _ = sys::raise_fd_limit(FDS_PER_CHILD * opts.max as u64 + 1024);
        Ok(ExecService {
            argv,
            opts,
            counters: Arc::new(Counters::default()),
        })
    }

    fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    /// The command for one connection: argv, the UCSPI environment,
    /// three pipes.
    fn command(&self, ctx: &AppContext) -> Command {
        let mut c = Command::new(self.program());
        c.args(self.argv.iter().skip(1))
            .env("PROTO", "TCP")
            .env("TCPREMOTEIP", ctx.remote.ip().to_string())
            .env("TCPREMOTEPORT", ctx.remote.port().to_string())
            .env("TCPLOCALIP", ctx.local.ip().to_string())
            .env("TCPLOCALPORT", ctx.local.port().to_string())
            .env("VNIC_PROCESSOR", ctx.processor.to_string())
            .env("VNIC_CONNECTION", ctx.connection.to_string())
            // Names vnic does not set must not leak in from an outer
            // tcpserver and describe someone else's connection.
            .env_remove("TCPREMOTEHOST")
            .env_remove("TCPREMOTEINFO")
            .env_remove("TCPLOCALHOST")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Starts the program for one connection. The caller holds a place
    /// for it: given back here if no program starts, and by the reaper
    /// once a started one is reaped (also when it started but could not
    /// be tied to the connection).
    fn start(&self, ctx: AppContext) -> Result<Exec, String> {
        let (reaper, child) = self.spawn(&ctx).inspect_err(|_| self.counters.release())?;
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        let app = Exec::new(child, reaper, self.counters.clone(), &ctx);
        // The child is the reaper's now: if watching fails, dropping
        // `app` stops it.
        app.watch_all()
            .map_err(|e| format!("exec {}: {e}", self.program()))?;
        Ok(app)
    }

    /// The reaper and a fresh child, or why there is none.
    fn spawn(&self, ctx: &AppContext) -> Result<(&'static Reaper, Child), String> {
        let reaper = reaper::get()?;
        let child = self
            .command(ctx)
            .spawn()
            .map_err(|e| format!("exec {}: {e}", self.program()))?;
        Ok((reaper, child))
    }
}

impl Service for ExecService {
    fn name(&self) -> &str {
        "exec"
    }

    fn open(&self, ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        if !self.counters.reserve(self.opts.max) {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refused(format!(
                "exec {}: {} programs running, the most --exec-max allows",
                self.program(),
                self.opts.max
            )));
        }
        match self.start(ctx) {
            Ok(app) => Ok(Box::new(app)),
            Err(why) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                Err(Refused(why))
            }
        }
    }

    fn report(&self) -> Option<ServiceReport> {
        let c = &self.counters;
        let mut row = serde_json::Map::new();
        row.insert("program".into(), self.program().into());
        row.insert("started".into(), c.started.load(Ordering::Relaxed).into());
        row.insert("running".into(), c.running.load(Ordering::Relaxed).into());
        row.insert("exited".into(), c.exited.load(Ordering::Relaxed).into());
        row.insert("refused".into(), c.refused.load(Ordering::Relaxed).into());
        row.insert("failed".into(), c.failed.load(Ordering::Relaxed).into());
        Some(ServiceReport { rows: vec![row] })
    }

    fn reset_counters(&self) {
        let c = &self.counters;
        for n in [&c.started, &c.exited, &c.refused, &c.failed] {
            n.store(0, Ordering::Relaxed);
        }
    }
}

/// One connection's program: the app that pumps bytes between the
/// connection and the child's pipes (see the module doc).
pub struct Exec {
    /// The reaper's number for the child.
    id: u64,
    pid: u32,
    reaper: &'static Reaper,
    io: Io,
    /// The child, shared with this app's checkpoints: the last holder to
    /// let go stops it. None once let go.
    child: Option<Arc<ChildShare>>,
    /// The connection went to another processor (`on_moved`): dropping
    /// the app lets go of its shares and nothing else.
    moved: bool,
    /// Our end of the program's stdin; None once closed. Shared with
    /// checkpoints, as the other descriptors: it closes when the last
    /// holder lets go.
    stdin: Option<Arc<File>>,
    /// Our end of the program's stdout; None once it ended.
    stdout: Option<Arc<File>>,
    stderr: Option<StderrLines>,
    /// Readable once the program exits; None once that was seen (or
    /// without pidfd support: then its stdout's EOF alone ends it).
    pidfd: Option<Arc<OwnedFd>>,
    /// Client bytes for the program's stdin.
    to_program: Buf,
    /// Program bytes for the client.
    to_client: Buf,
    /// The program has exited.
    exited: bool,
    /// Our FIN is queued (`close()` called).
    closed: bool,
    /// The stderr pipe had more than one pump's budget.
    stderr_more: bool,
}

impl std::fmt::Debug for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exec")
            .field("pid", &self.pid)
            .field("exited", &self.exited)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Exec {
    /// The app for a `child` just spawned with three pipes: the pipes
    /// stay here, the child itself goes to the `reaper`.
    fn new(
        mut child: Child,
        reaper: &'static Reaper,
        counters: Arc<Counters>,
        ctx: &AppContext,
    ) -> Exec {
        let pid = child.id();
        // Opened before the reaper has the child, so the pid is still
        // this child's (it cannot be reaped and recycled yet).
        let pidfd = sys::pidfd_open(pid).ok().map(Arc::new);
        let pipe = |fd: OwnedFd| Arc::new(File::from(fd));
        let stdin = child.stdin.take().map(|p| pipe(p.into()));
        let stdout = child.stdout.take().map(|p| pipe(p.into()));
        let stderr = child.stderr.take().map(|p| File::from(OwnedFd::from(p)));
        let id = reaper::next_id();
        reaper.adopt(id, child, counters);
        Exec {
            id,
            pid,
            reaper,
            io: ctx.io.clone(),
            child: Some(Arc::new(ChildShare::new(id, reaper))),
            moved: false,
            stdin,
            stdout,
            stderr: stderr.map(|e| StderrLines::new(e, ctx.processor, ctx.connection)),
            pidfd,
            to_program: Buf::new(TO_PROGRAM),
            to_client: Buf::new(TO_CLIENT),
            exited: false,
            closed: false,
            stderr_more: false,
        }
    }

    /// The program's process id (for traces and tests).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        [
            self.stdin.as_ref().map(AsRawFd::as_raw_fd),
            self.stdout.as_ref().map(AsRawFd::as_raw_fd),
            self.stderr.as_ref().and_then(StderrLines::fd),
            self.pidfd.as_ref().map(AsRawFd::as_raw_fd),
        ]
        .into_iter()
        .flatten()
    }

    /// Makes the pipes non-blocking and has the processor's epoll watch
    /// them (and the pidfd). Without an event loop (`Io::none()`) the
    /// app still works when polled, only nothing wakes it.
    fn watch_all(&self) -> io::Result<()> {
        if let Some(p) = &self.stdin {
            sys::set_nonblocking(p)?;
        }
        if let Some(p) = &self.stdout {
            sys::set_nonblocking(p)?;
        }
        if let Some(lines) = &self.stderr {
            lines.set_nonblocking()?;
        }
        self.watch_fds()
    }

    /// Has the processor's epoll watch the pipes and the pidfd (already
    /// non-blocking).
    fn watch_fds(&self) -> io::Result<()> {
        for fd in self.fds() {
            match self.io.watch(fd) {
                Err(e) if e.kind() != io::ErrorKind::Unsupported => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Stops watching `fd` before it is closed.
    fn unwatch(&self, fd: RawFd) {
        let _ = self.io.unwatch(fd);
    }

    /// Notes the program's exit (its pidfd became readable): from then on
    /// a stdout that would block has ended.
    fn check_exit(&mut self) {
        let exited = self.pidfd.as_ref().is_some_and(sys::readable_now);
        if exited {
            self.exited = true;
            if let Some(fd) = self.pidfd.take() {
                self.unwatch(fd.as_raw_fd());
            }
        }
    }

    /// Client → program, until neither side moves; then the client's FIN
    /// becomes the program's end of input.
    fn pump_in(&mut self, sock: &mut dyn Socket) {
        loop {
            let wrote = self.write_program();
            let read = self.read_client(sock);
            if wrote == 0 && read == 0 {
                break;
            }
        }
        let fin_done = sock.peer_closed() && sock.recv_available() == 0;
        if fin_done && self.to_program.is_empty() {
            self.close_stdin();
        }
    }

    /// Writes held client bytes to the program's stdin; how many.
    fn write_program(&mut self) -> usize {
        let Some(stdin) = self.stdin.as_mut() else {
            return 0;
        };
        if self.to_program.is_empty() {
            return 0;
        }
        match (&**stdin).write(self.to_program.held()) {
            Ok(n) => {
                self.to_program.consume(n);
                n
            }
            Err(e) if retry_later(&e) => 0,
            Err(_) => {
                // EPIPE: the program closed its stdin (or exited); what
                // it did not take is dropped, as the client's later bytes.
                self.to_program.clear();
                self.close_stdin();
                0
            }
        }
    }

    /// Reads the client while there is room for its bytes (or drops them
    /// when the program's stdin is closed); how many.
    fn read_client(&mut self, sock: &mut dyn Socket) -> usize {
        if self.stdin.is_none() {
            let mut scratch = [0u8; 4096];
            return sock.recv(&mut scratch);
        }
        let room = self.to_program.room();
        if room == 0 || sock.recv_available() == 0 {
            return 0;
        }
        self.to_program
            .fill_with(room, |b| Ok(sock.recv(b)))
            .unwrap_or(0)
    }

    fn close_stdin(&mut self) {
        if let Some(stdin) = self.stdin.take() {
            self.unwatch(stdin.as_raw_fd());
        }
    }

    /// Program → client, as far as the connection takes it; once the
    /// program's output ended and all of it is sent, our FIN.
    fn pump_out(&mut self, sock: &mut dyn Socket) {
        while self.send_held(sock) {
            let Some(stdout) = self.stdout.as_mut() else {
                break;
            };
            let want = sock.send_capacity().min(self.to_client.room());
            if want == 0 {
                return;
            }
            match self.to_client.fill_with(want, |b| (&**stdout).read(b)) {
                Ok(0) => self.end_stdout(),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Nothing now; after the exit, nothing ever.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.exited => return,
                Err(_) => self.end_stdout(),
            }
        }
        if self.stdout.is_none() && self.to_client.is_empty() && !self.closed {
            sock.close();
            self.closed = true;
        }
    }

    /// Sends held program bytes; true when none are left.
    fn send_held(&mut self, sock: &mut dyn Socket) -> bool {
        if !self.to_client.is_empty() {
            let n = sock.send(self.to_client.held());
            self.to_client.consume(n);
        }
        self.to_client.is_empty()
    }

    fn end_stdout(&mut self) {
        if let Some(stdout) = self.stdout.take() {
            self.unwatch(stdout.as_raw_fd());
        }
    }

    /// Passes the program's stderr on, a budget per poll.
    fn pump_stderr(&mut self) {
        let Some(lines) = self.stderr.as_mut() else {
            return;
        };
        let pumped = lines.pump();
        self.stderr_more = pumped == Pumped::More;
        if pumped == Pumped::Eof {
            if let Some(fd) = lines.fd() {
                let _ = self.io.unwatch(fd);
            }
            lines.close();
            self.stderr = None;
        }
    }
}

/// A pipe error that only means "not now".
fn retry_later(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl App for Exec {
    fn memory(&self) -> usize {
        self.to_program.memory() + self.to_client.memory()
    }
    fn trim(&mut self) {
        self.to_program.trim();
        self.to_client.trim();
    }
    fn poll(&mut self, sock: &mut dyn Socket) {
        // Before reading stdout: an exit seen now means a stdout that
        // would block later holds nothing more.
        self.check_exit();
        self.pump_in(sock);
        self.pump_out(sock);
        self.pump_stderr();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        // A stderr flood stopped at its budget: come back at once (after
        // the processor's other work), as no new edge may announce it.
        self.stderr_more.then(Instant::now)
    }

    fn on_closed(&mut self, reason: CloseReason) {
        if let Some(child) = &self.child {
            child.ended(reason);
        }
    }

    /// See [`checkpoint`]: the child and its pipes shared, the buffers
    /// copied.
    fn checkpoint(&mut self) -> Result<Box<dyn AppCheckpoint>, NoCheckpoint> {
        Ok(Box::new(self.share()))
    }

    fn on_moved(&mut self) {
        let fds: Vec<RawFd> = self.fds().collect();
        for fd in fds {
            self.unwatch(fd);
        }
        self.moved = true;
    }
}

impl Drop for Exec {
    /// The connection is gone: the pipes are closed (stdin's EOF is the
    /// program's cue to end), its stderr goes on through the reaper, and
    /// the program is stopped: at once after a reset, a timeout or a drop
    /// without close; after a grace period following a clean close.
    fn drop(&mut self) {
        if !self.moved {
            let fds: Vec<RawFd> = self.fds().collect();
            for fd in fds {
                self.unwatch(fd);
            }
        }
        // A checkpoint may hold the child still: then it is theirs.
        if let Some(child) = self.child.take() {
            child.release(self.stderr.take(), self.exited);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::MemSocket;
    use crate::stats::Registry;
    use std::time::Duration;

    /// Long enough for any of these programs, short enough to fail fast.
    const PATIENCE: Duration = Duration::from_secs(10);

    fn argv(cmd: &str) -> Vec<String> {
        parse_command(cmd).expect("command")
    }

    fn service(cmd: &str, max: usize) -> ExecService {
        ExecService::new(argv(cmd), ExecOptions { max }).expect("service")
    }

    /// An exec app on a fake socket, woken by a real epoll as in a
    /// processor.
    struct Rig {
        poll: mio::Poll,
        events: mio::Events,
        app: Exec,
        sock: MemSocket,
    }

    fn context(poll: &mio::Poll, conn: u64) -> AppContext {
        let registry = Arc::new(Registry::new("monolithic", "round-robin", 1));
        let mut ctx = AppContext::detached(0, conn, registry);
        ctx.local = "10.0.0.2:7".parse().expect("addr");
        ctx.remote = "10.0.0.1:40000".parse().expect("addr");
        let io = poll.registry().try_clone().expect("registry");
        ctx.io = Io::new(Arc::new(io), conn);
        ctx
    }

    impl Rig {
        /// Starts `svc`'s program as `open` would, keeping the concrete app.
        fn start(svc: &ExecService) -> Rig {
            let poll = mio::Poll::new().expect("poll");
            assert!(svc.counters.reserve(svc.opts.max), "a place");
            let app = svc.start(context(&poll, 7)).expect("started");
            Rig {
                poll,
                events: mio::Events::with_capacity(16),
                app,
                sock: MemSocket::new(1 << 20),
            }
        }

        fn new(cmd: &str) -> Rig {
            Rig::start(&service(cmd, 4))
        }

        /// Polls the app, then waits (briefly) for its descriptors.
        fn turn(&mut self) {
            self.app.poll(&mut self.sock);
            let _ = self
                .poll
                .poll(&mut self.events, Some(Duration::from_millis(20)));
        }

        fn run_until(&mut self, what: &str, done: impl Fn(&MemSocket) -> bool) {
            let deadline = Instant::now() + PATIENCE;
            while !done(&self.sock) {
                assert!(Instant::now() < deadline, "timed out waiting: {what}");
                self.turn();
            }
        }
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + i / 997) as u8).collect()
    }

    /// Waits until process `pid` is gone entirely (reaped: a zombie still
    /// has its /proc entry).
    fn wait_reaped(pid: u32, within: Duration) -> Duration {
        let t = Instant::now();
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(t.elapsed() < within, "pid {pid} not reaped in {within:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        t.elapsed()
    }

    fn row(svc: &ExecService) -> serde_json::Map<String, serde_json::Value> {
        svc.report().expect("report").rows.remove(0)
    }

    #[test]
    fn parse_command_splits_as_a_shell_would() {
        assert_eq!(
            argv(r#"/bin/sh -c 'echo "a b"' x\ y"#),
            vec!["/bin/sh", "-c", r#"echo "a b""#, "x y"]
        );
        assert!(parse_command("").is_err());
        assert!(parse_command("   ").is_err());
        assert!(parse_command("'unclosed").is_err());
        assert!(ExecService::new(Vec::new(), ExecOptions::default()).is_err());
        assert_eq!(ExecOptions::default().max, 256);
    }

    #[test]
    fn cat_returns_every_byte_then_closes_after_the_client_fin() {
        let data = pattern(1 << 20);
        let mut rig = Rig::new("/bin/cat");
        let mut got = Vec::new();
        let mut fed = 0;
        let deadline = Instant::now() + PATIENCE;
        while !rig.sock.closed() {
            assert!(Instant::now() < deadline, "cat stalled at {}", got.len());
            if fed < data.len() && rig.sock.rx.len() < 100_000 {
                let n = (data.len() - fed).min(50_000);
                rig.sock.push(&data[fed..fed + n]);
                fed += n;
                rig.sock.peer_fin = fed == data.len();
            }
            rig.sock.capacity = 30_000; // a small, refilled send window
            rig.turn();
            got.extend(rig.sock.take_tx());
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes differ");
        assert_eq!(rig.sock.close_calls, 1);
        assert!(!rig.sock.aborted);
    }

    #[test]
    fn a_program_that_does_not_read_closes_the_client_window() {
        let mut rig = Rig::new("sleep 5");
        rig.sock.push(&pattern(4 << 20));
        for _ in 0..20 {
            rig.turn();
        }
        let taken = (4 << 20) - rig.sock.rx.len();
        // Our buffer plus the kernel's pipe (64 KiB by default).
        assert!(taken <= TO_PROGRAM + (128 << 10), "took {taken} bytes");
        assert!(taken >= TO_PROGRAM, "took only {taken} bytes");
        assert!(!rig.sock.closed());
    }

    #[test]
    fn the_program_sees_the_ucspi_environment() {
        let mut rig = Rig::new(
            "sh -c 'echo $TCPREMOTEIP $TCPREMOTEPORT $TCPLOCALIP $TCPLOCALPORT \
             $PROTO $VNIC_PROCESSOR $VNIC_CONNECTION'",
        );
        rig.run_until("the program's output and FIN", MemSocket::closed);
        assert_eq!(
            String::from_utf8_lossy(&rig.sock.tx),
            "10.0.0.1 40000 10.0.0.2 7 TCP 0 7\n"
        );
    }

    #[test]
    fn a_program_that_exits_at_once_closes_the_connection_cleanly() {
        let mut rig = Rig::new("/bin/true");
        rig.run_until("FIN", MemSocket::closed);
        assert!(rig.sock.tx.is_empty());
        assert!(!rig.sock.aborted);
        let pid = rig.app.pid();
        drop(rig);
        wait_reaped(pid, PATIENCE);
    }

    #[test]
    fn the_client_fin_closes_the_program_stdin() {
        let mut rig = Rig::new("sh -c 'cat >/dev/null; echo stdin-closed'");
        rig.sock.push(b"some input\n");
        for _ in 0..10 {
            rig.turn();
        }
        assert!(rig.sock.tx.is_empty(), "the program still reads");
        assert!(rig.sock.rx.is_empty(), "the input went to the program");
        rig.sock.peer_fin = true;
        rig.run_until("output after EOF on stdin", MemSocket::closed);
        assert_eq!(rig.sock.tx, b"stdin-closed\n");
    }

    #[test]
    fn the_program_exit_ends_its_output_though_a_grandchild_holds_stdout() {
        let mut rig = Rig::new("sh -c 'sleep 3 & echo bye'");
        let t = Instant::now();
        rig.run_until("FIN after the exit", MemSocket::closed);
        assert_eq!(rig.sock.tx, b"bye\n");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn a_closed_stdin_drops_client_bytes_and_epipe_does_not_kill_us() {
        let mut rig = Rig::new("sh -c 'exec 0<&-; sleep 1; echo done'");
        for _ in 0..20 {
            rig.sock.push(&pattern(100_000));
            rig.turn();
        }
        rig.sock.peer_fin = true;
        rig.run_until("FIN", MemSocket::closed);
        assert_eq!(rig.sock.tx, b"done\n");
        assert!(rig.sock.rx.is_empty(), "client bytes read and dropped");
    }

    #[test]
    fn stderr_lines_do_not_disturb_stdout() {
        let mut rig = Rig::new("sh -c 'echo to-stderr >&2; printf partial >&2; echo out'");
        rig.run_until("FIN", MemSocket::closed);
        assert_eq!(rig.sock.tx, b"out\n");
    }

    #[test]
    fn children_start_with_sigpipe_at_its_default() {
        let mut rig = Rig::new("cat /proc/self/status");
        rig.run_until("FIN", MemSocket::closed);
        let status = String::from_utf8_lossy(&rig.sock.tx).into_owned();
        let ignored = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .expect("SigIgn line");
        let sigpipe = 1u64 << (rustix::process::Signal::PIPE.as_raw() - 1);
        assert_eq!(ignored & sigpipe, 0, "SIGPIPE ignored in the child");
    }

    #[test]
    fn the_limit_refuses_and_counts_and_frees_places_on_reaping() {
        let svc = service("sleep 5", 2);
        let open = || {
            let poll = mio::Poll::new().expect("poll");
            svc.open(context(&poll, 1))
        };
        let a = open().expect("first");
        let b = open().expect("second");
        let third = open();
        assert!(matches!(&third, Err(Refused(why)) if why.contains("--exec-max")));
        let r = row(&svc);
        assert_eq!(r["program"], "sleep");
        assert_eq!(r["started"], 2);
        assert_eq!(r["running"], 2);
        assert_eq!(r["refused"], 1);
        assert_eq!(r["failed"], 0);
        drop(a);
        drop(b);
        let t = Instant::now();
        while row(&svc)["running"] != 0 {
            assert!(t.elapsed() < PATIENCE, "still running: {:?}", row(&svc));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(row(&svc)["exited"], 2);
        assert!(open().is_ok(), "a place is free again");
    }

    #[test]
    fn a_missing_or_unrunnable_program_is_refused_and_counted() {
        let poll = mio::Poll::new().expect("poll");
        let svc = service("/nonexistent/vnic-no-such-program", 4);
        let r = svc.open(context(&poll, 1));
        assert!(
            matches!(&r, Err(Refused(why)) if why.contains("/nonexistent/vnic-no-such-program"))
        );
        let svc2 = service("/etc/passwd", 4);
        assert!(svc2.open(context(&poll, 2)).is_err());
        for s in [&svc, &svc2] {
            let r = row(s);
            assert_eq!(
                (r["failed"].clone(), r["started"].clone()),
                (1.into(), 0.into())
            );
            assert_eq!(r["running"], 0, "the place was given back");
        }
    }

    #[test]
    fn a_dropped_app_has_its_program_ended_and_reaped() {
        let svc = service("sleep 30", 4);
        let rig = Rig::start(&svc);
        let pid = rig.app.pid();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(rig);
        let took = wait_reaped(pid, PATIENCE);
        assert!(took < reaper::GRACE, "SIGTERM at once, took {took:?}");
        let r = row(&svc);
        assert_eq!(
            (r["running"].clone(), r["exited"].clone()),
            (0.into(), 1.into())
        );
    }

    #[test]
    fn a_reset_ends_the_program_and_sigkill_follows_an_ignored_sigterm() {
        let mut rig = Rig::new("sh -c 'trap \"\" TERM; exec sleep 30'");
        for _ in 0..10 {
            rig.turn(); // let the trap be set before the reset
        }
        let pid = rig.app.pid();
        rig.app.on_closed(CloseReason::Reset);
        drop(rig);
        let took = wait_reaped(pid, PATIENCE);
        assert!(
            took >= reaper::GRACE - Duration::from_millis(100),
            "{took:?}"
        );
    }

    #[test]
    fn after_a_clean_close_the_program_gets_a_grace_period_then_sigterm() {
        let mut rig = Rig::new("sh -c 'exec >&-; exec sleep 30'");
        rig.run_until("FIN at the end of stdout", MemSocket::closed);
        let pid = rig.app.pid();
        rig.app.on_closed(CloseReason::Normal);
        drop(rig);
        let took = wait_reaped(pid, PATIENCE);
        let grace = reaper::GRACE;
        assert!(took >= grace - Duration::from_millis(100), "{took:?}");
        assert!(took < grace + Duration::from_millis(1500), "{took:?}");
    }

    #[test]
    fn the_report_is_one_row_with_the_program_and_its_counters() {
        let svc = service("/bin/cat -u", 3);
        assert_eq!(svc.name(), "exec");
        let rows = svc.report().expect("report").rows;
        assert_eq!(rows.len(), 1);
        let keys: Vec<&str> = rows[0].keys().map(String::as_str).collect();
        for k in [
            "program", "started", "running", "exited", "refused", "failed",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert_eq!(rows[0]["program"], "/bin/cat");
    }
}
