//! An exec app's checkpoint ([`App::checkpoint`]): what a connection moved
//! to another processor, or kept by a process pair's backup, needs to go
//! on with the same program.
//!
//! A child and its pipes cannot be copied, so they are shared: the pipes
//! and the pidfd are `Arc`s (a descriptor serves any thread of the
//! process), and the child itself is a [`ChildShare`] whose last holder
//! does what the app's drop did alone before: hand its stderr to the
//! reaper and stop the program (after the grace period if the connection
//! closed cleanly). So dropping the app after a move, or a checkpoint
//! that is never restored, ends nothing the other still uses.
//!
//! The cost of one checkpoint is a copy of the bytes held each way (each
//! at most 64 KiB, none when the pumps kept up) and of stderr's
//! unfinished line, plus an `Arc` clone per descriptor.

use super::reaper::{self, Reaper};
use super::stderr::StderrLines;
use super::{Exec, TO_CLIENT, TO_PROGRAM};
use crate::app::buf::Buf;
use crate::app::{App, AppCheckpoint, AppContext, CloseReason, Refused};
use parking_lot::Mutex;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

/// One running child, as the app and its checkpoints hold it: the last
/// holder to let go stops it.
pub(super) struct ChildShare {
    /// The reaper's number for the child.
    id: u64,
    reaper: &'static Reaper,
    /// How the connection ended, once a holder heard it (`on_closed`):
    /// a clean close gives the program its grace period.
    ended: Mutex<Option<CloseReason>>,
}

impl ChildShare {
    /// The share of the child the reaper knows as `id`.
    pub(super) fn new(id: u64, reaper: &'static Reaper) -> ChildShare {
        ChildShare {
            id,
            reaper,
            ended: Mutex::new(None),
        }
    }

    /// The connection ended so (whichever holder lets go last stops the
    /// program accordingly).
    pub(super) fn ended(&self, reason: CloseReason) {
        *self.ended.lock() = Some(reason);
    }

    /// A holder lets go. The last one passes its `stderr` on to the
    /// reaper and, unless the program has `exited`, stops it: at once,
    /// or after the grace period if the connection closed cleanly.
    pub(super) fn release(self: Arc<Self>, stderr: Option<StderrLines>, exited: bool) {
        let Some(child) = Arc::into_inner(self) else {
            return;
        };
        if let Some(lines) = stderr {
            child.reaper.take_stderr(child.id, lines);
        }
        if !exited {
            let after = match *child.ended.lock() {
                Some(CloseReason::Normal) => reaper::GRACE,
                _ => Duration::ZERO,
            };
            child.reaper.stop(child.id, after);
        }
    }
}

/// An exec app as [`Exec::share`] left it (see the module doc).
pub(super) struct ExecCheckpoint {
    id: u64,
    pid: u32,
    reaper: &'static Reaper,
    child: Option<Arc<ChildShare>>,
    stdin: Option<Arc<File>>,
    stdout: Option<Arc<File>>,
    stderr: Option<StderrLines>,
    pidfd: Option<Arc<OwnedFd>>,
    to_program: Vec<u8>,
    to_client: Vec<u8>,
    exited: bool,
    closed: bool,
    stderr_more: bool,
}

impl Exec {
    /// The checkpoint: the child and every descriptor shared, the held
    /// bytes copied.
    pub(super) fn share(&self) -> ExecCheckpoint {
        ExecCheckpoint {
            id: self.id,
            pid: self.pid,
            reaper: self.reaper,
            child: self.child.clone(),
            stdin: self.stdin.clone(),
            stdout: self.stdout.clone(),
            stderr: self.stderr.as_ref().map(StderrLines::share),
            pidfd: self.pidfd.clone(),
            to_program: self.to_program.held().to_vec(),
            to_client: self.to_client.held().to_vec(),
            exited: self.exited,
            closed: self.closed,
            stderr_more: self.stderr_more,
        }
    }
}

impl AppCheckpoint for ExecCheckpoint {
    fn restore(mut self: Box<Self>, ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        let app = Exec {
            id: self.id,
            pid: self.pid,
            reaper: self.reaper,
            io: ctx.io,
            child: self.child.take(),
            moved: false,
            stdin: self.stdin.take(),
            stdout: self.stdout.take(),
            stderr: self.stderr.take(),
            pidfd: self.pidfd.take(),
            to_program: Buf::with_held(TO_PROGRAM, &self.to_program),
            to_client: Buf::with_held(TO_CLIENT, &self.to_client),
            exited: self.exited,
            closed: self.closed,
            stderr_more: self.stderr_more,
        };
        // Dropping `app` on failure stops the program if no one else
        // holds it.
        app.watch_fds()
            .map_err(|e| Refused(format!("exec pid {}: {e}", app.pid)))?;
        Ok(Box::new(app))
    }

    fn memory(&self) -> usize {
        self.to_program.capacity()
            + self.to_client.capacity()
            + self.stderr.as_ref().map_or(0, StderrLines::held)
    }
}

impl Drop for ExecCheckpoint {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            child.release(self.stderr.take(), self.exited);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ExecOptions, ExecService};
    use crate::app::checkpoint_tests::push_lines_checkpointing_each_poll;
    use crate::app::{App, AppContext, Io, MemSocket};
    use crate::stats::Registry;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const PATIENCE: Duration = Duration::from_secs(10);

    /// A processor's view: its epoll, and the context of connection 7.
    struct Cpu {
        poll: mio::Poll,
        events: mio::Events,
    }

    impl Cpu {
        fn new() -> Cpu {
            Cpu {
                poll: mio::Poll::new().expect("poll"),
                events: mio::Events::with_capacity(16),
            }
        }

        fn ctx(&self) -> AppContext {
            let registry = Arc::new(Registry::new("monolithic", "round-robin", 2));
            let mut ctx = AppContext::detached(0, 7, registry);
            let io = self.poll.registry().try_clone().expect("registry");
            ctx.io = Io::new(Arc::new(io), 7);
            ctx
        }

        /// Polls `app` until `done`, waiting on this epoll between polls.
        fn run_until(
            &mut self,
            app: &mut Box<dyn App>,
            sock: &mut MemSocket,
            what: &str,
            done: impl Fn(&MemSocket) -> bool,
        ) {
            let deadline = Instant::now() + PATIENCE;
            while !done(sock) {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                app.poll(sock);
                let _ = self
                    .poll
                    .poll(&mut self.events, Some(Duration::from_millis(10)));
            }
        }
    }

    fn cat() -> ExecService {
        ExecService::new(vec!["/bin/cat".into()], ExecOptions { max: 4 }).expect("service")
    }

    fn alive(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    fn wait_reaped(pid: u32) {
        let t = Instant::now();
        while alive(pid) {
            assert!(t.elapsed() < PATIENCE, "pid {pid} not reaped");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts cat as `open` would, with its pid.
    fn open(svc: &ExecService, cpu: &Cpu) -> (Box<dyn App>, u32) {
        assert!(svc.counters.reserve(svc.opts.max), "a place");
        let app = svc.start(cpu.ctx()).expect("started");
        let pid = app.pid();
        (Box::new(app), pid)
    }

    #[test]
    fn a_moved_exec_app_keeps_its_child_and_the_bytes_it_held() {
        let svc = cat();
        let mut a = Cpu::new();
        let mut b = Cpu::new();
        let (mut app, pid) = open(&svc, &a);
        let mut sock = MemSocket::new(1 << 20);
        sock.push(b"before the move\n");
        a.run_until(&mut app, &mut sock, "the first echo", |s| s.tx.len() == 16);
        // Bytes the client sent that the app has read but cat not
        // answered yet, then the move.
        sock.push(b"during the move\n");
        app.poll(&mut sock);
        let cp = app.checkpoint().expect("a checkpoint");
        app.on_moved();
        drop(app);
        assert!(alive(pid), "dropping the moved app left cat alone");
        let mut app = cp.restore(b.ctx()).expect("restored");
        sock.push(b"after the move\n");
        b.run_until(&mut app, &mut sock, "every echo", |s| s.tx.len() == 47);
        assert_eq!(
            sock.tx,
            b"before the move\nduring the move\nafter the move\n"
        );
        // The client's FIN still ends cat's input, and the relay.
        sock.peer_fin = true;
        b.run_until(&mut app, &mut sock, "our FIN", MemSocket::closed);
        drop(app);
        wait_reaped(pid);
    }

    #[test]
    fn checkpoints_dropped_unrestored_leave_the_app_and_its_child_alone() {
        let svc = cat();
        let mut a = Cpu::new();
        let (mut app, pid) = open(&svc, &a);
        let mut sock = MemSocket::new(1 << 20);
        // A process pair's primary: a checkpoint after every poll.
        let want = push_lines_checkpointing_each_poll(&mut app, &mut sock, 100);
        a.run_until(&mut app, &mut sock, "every echo", |s| {
            s.tx.len() == want.len()
        });
        assert_eq!(sock.tx, want);
        assert!(alive(pid));
        // Both gone: the child is stopped and reaped.
        let cp = app.checkpoint().expect("a checkpoint");
        drop(app);
        assert!(alive(pid), "the checkpoint still holds cat");
        drop(cp);
        wait_reaped(pid);
    }
}
