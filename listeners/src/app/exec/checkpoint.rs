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
