//! The one thread, for the whole process, that reaps every exec child.
//!
//! A child is handed to the reaper the moment it is spawned, so it is
//! reaped whether its connection is still there or long gone, and no
//! zombie is ever left behind. The reaper sleeps in an epoll of its own on
//! one pidfd per child (readable when the child exits), then `waitpid`s
//! exactly that child (never `waitpid(-1)`, which would steal other code's
//! children). Besides reaping it:
//!
//! - stops children whose connection is gone ([`Reaper::stop`]): SIGTERM
//!   when asked, SIGKILL [`GRACE`] later if the child is still there;
//! - passes on what a child writes to stderr after its connection is gone
//!   ([`Reaper::take_stderr`]), until the child is reaped.
//!
//! Signals go through the pidfd, so a recycled pid can never be hit. On a
//! kernel without pidfds (before 5.3) the reaper falls back to looking at
//! its children every [`FALLBACK_TICK`].

use super::stderr::{Pumped, StderrLines};
use super::{sys, Counters};
use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Token, Waker};
use rustix::process::Signal;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long a child has between SIGTERM and SIGKILL (and, after a clean
/// close, between the end of its connection and SIGTERM).
pub(super) const GRACE: Duration = Duration::from_secs(2);

/// How often children without a pidfd are looked at.
const FALLBACK_TICK: Duration = Duration::from_millis(50);

/// The token of the reaper's waker (child tokens are `2 * id` for the
/// pidfd and `2 * id + 1` for the stderr pipe, ids starting at 1).
const WAKE: Token = Token(usize::MAX);

/// What the exec apps tell the reaper.
enum Msg {
    /// A child just spawned: reap it when it exits.
    Adopt {
        id: u64,
        child: Child,
        counters: Arc<Counters>,
    },
    /// Its connection is gone: SIGTERM after `after`, SIGKILL [`GRACE`]
    /// later (unless it exits first).
    Stop { id: u64, after: Duration },
    /// Its connection is gone: pass on what it writes to stderr.
    Stderr { id: u64, lines: StderrLines },
}

/// A handle on the reaper thread, shared by every exec app of the
/// process; see the module doc.
pub(super) struct Reaper {
    tx: Sender<Msg>,
    waker: Waker,
}

/// The process's reaper, started on first use.
static REAPER: OnceLock<Result<Reaper, String>> = OnceLock::new();

/// Child numbers, unique in the process (pids are not: they are recycled).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The reaper, started if it was not yet; an error if its thread or its
/// epoll could not be made (then no child can be started either).
pub(super) fn get() -> Result<&'static Reaper, String> {
    REAPER
        .get_or_init(Reaper::start)
        .as_ref()
        .map_err(Clone::clone)
}

/// A fresh child number for [`Reaper::adopt`].
pub(super) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

impl Reaper {
    fn start() -> Result<Reaper, String> {
        let poll = Poll::new().map_err(|e| format!("exec reaper: epoll: {e}"))?;
        let waker =
            Waker::new(poll.registry(), WAKE).map_err(|e| format!("exec reaper: eventfd: {e}"))?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let worker = Worker {
            poll,
            rx,
            children: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("vnic-reaper".into())
            .spawn(move || worker.run())
            .map_err(|e| format!("exec reaper: thread: {e}"))?;
        Ok(Reaper { tx, waker })
    }

    fn send(&self, msg: Msg) {
        // The worker never returns, so the channel stays open; a failed
        // wake-up only delays the message to the next event or tick.
        let _ = self.tx.send(msg);
        let _ = self.waker.wake();
    }

    /// Takes child `id` (from [`next_id`]) to reap it when it exits; its
    /// exit is counted in `counters` (exited, and one fewer running).
    pub(super) fn adopt(&self, id: u64, child: Child, counters: Arc<Counters>) {
        self.send(Msg::Adopt {
            id,
            child,
            counters,
        });
    }

    /// Ends child `id`: SIGTERM after `after` (zero: at once), SIGKILL
    /// [`GRACE`] later. Nothing happens if it has exited already.
    pub(super) fn stop(&self, id: u64, after: Duration) {
        self.send(Msg::Stop { id, after });
    }

    /// Passes on child `id`'s stderr from now on, until it is reaped.
    pub(super) fn take_stderr(&self, id: u64, lines: StderrLines) {
        self.send(Msg::Stderr { id, lines });
    }
}

/// One child the reaper holds.
struct Entry {
    child: Child,
    /// Readable once the child exits; None without pidfd support.
    pidfd: Option<OwnedFd>,
    counters: Arc<Counters>,
    /// The next signal and when it is due.
    signal: Option<(Instant, Signal)>,
    /// Its stderr, once its connection is gone.
    stderr: Option<StderrLines>,
    /// The stderr pipe had more than one pump's budget.
    stderr_more: bool,
}

/// The reaper thread's state.
struct Worker {
    poll: Poll,
    rx: Receiver<Msg>,
    children: HashMap<u64, Entry>,
}

impl Worker {
    fn run(mut self) {
        let mut events = Events::with_capacity(64);
        loop {
            let timeout = self.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    std::thread::sleep(FALLBACK_TICK);
                }
            }
            self.take_messages();
            for ev in events.iter() {
                if ev.token() != WAKE {
                    self.on_ready(ev.token().0 as u64);
                }
            }
            self.sweep(Instant::now());
        }
    }

    /// How long to sleep: until the next signal is due, shorter when some
    /// child has no pidfd or some stderr has more to pump.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        let mut t: Option<Duration> = None;
        let mut shorten = |d: Duration| t = Some(t.map_or(d, |t| t.min(d)));
        for e in self.children.values() {
            if let Some((at, _)) = e.signal {
                shorten(at.saturating_duration_since(now));
            }
            if e.pidfd.is_none() {
                shorten(FALLBACK_TICK);
            }
            if e.stderr_more {
                shorten(Duration::ZERO);
            }
        }
        t
    }

    fn take_messages(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Adopt {
                    id,
                    child,
                    counters,
                } => self.adopt(id, child, counters),
                Msg::Stop { id, after } => self.schedule_stop(id, after),
                Msg::Stderr { id, lines } => self.take_stderr(id, lines),
            }
        }
    }

    fn adopt(&mut self, id: u64, child: Child, counters: Arc<Counters>) {
        let pidfd = sys::pidfd_open(child.id()).ok().filter(|fd| {
            self.poll
                .registry()
                .register(
                    &mut mio::unix::SourceFd(&fd.as_raw_fd()),
                    Token(2 * id as usize),
                    Interest::READABLE,
                )
                .is_ok()
        });
        self.children.insert(
            id,
            Entry {
                child,
                pidfd,
                counters,
                signal: None,
                stderr: None,
                stderr_more: false,
            },
        );
        // It may have exited before the pidfd existed: look once now.
        self.check(id);
    }

    fn schedule_stop(&mut self, id: u64, after: Duration) {
        let Some(e) = self.children.get_mut(&id) else {
            return; // reaped already
        };
        let at = Instant::now() + after;
        if e.signal.is_none_or(|(t, _)| at < t) {
            e.signal = Some((at, Signal::TERM));
        }
    }

    fn take_stderr(&mut self, id: u64, mut lines: StderrLines) {
        let Some(e) = self.children.get_mut(&id) else {
            drain_and_close(&mut lines); // reaped already
            return;
        };
        let watched = lines.fd().is_some_and(|fd| {
            self.poll
                .registry()
                .register(
                    &mut mio::unix::SourceFd(&fd),
                    Token(2 * id as usize + 1),
                    Interest::READABLE,
                )
                .is_ok()
        });
        if !watched {
            drain_and_close(&mut lines);
            return;
        }
        e.stderr = Some(lines);
        self.pump_stderr(id);
    }

    fn on_ready(&mut self, token: u64) {
        let id = token / 2;
        if token & 1 == 0 {
            self.check(id);
        } else {
            self.pump_stderr(id);
        }
    }

    /// Reaps child `id` if it has exited.
    fn check(&mut self, id: u64) {
        let Some(e) = self.children.get_mut(&id) else {
            return;
        };
        // An error (ECHILD: someone else reaped it) ends it as well.
        if matches!(e.child.try_wait(), Ok(None)) {
            return;
        }
        if let Some(mut e) = self.children.remove(&id) {
            self.forget(&mut e);
        }
    }

    /// The child is reaped: its descriptors go, its last stderr is passed
    /// on, its counters move.
    fn forget(&self, e: &mut Entry) {
        if let Some(fd) = e.pidfd.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut mio::unix::SourceFd(&fd.as_raw_fd()));
        }
        if let Some(mut lines) = e.stderr.take() {
            if let Some(fd) = lines.fd() {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut mio::unix::SourceFd(&fd));
            }
            drain_and_close(&mut lines);
        }
        e.counters.reaped();
    }

    fn pump_stderr(&mut self, id: u64) {
        let Some(e) = self.children.get_mut(&id) else {
            return;
        };
        let Some(lines) = e.stderr.as_mut() else {
            return;
        };
        let pumped = lines.pump();
        e.stderr_more = pumped == Pumped::More;
        if pumped == Pumped::Eof {
            if let Some(fd) = lines.fd() {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut mio::unix::SourceFd(&fd));
            }
            lines.close();
            e.stderr = None;
        }
    }

    /// What no event announces: children without a pidfd, stderr left
    /// over from a budget, signals that are due.
    fn sweep(&mut self, now: Instant) {
        let ids: Vec<u64> = self
            .children
            .iter()
            .filter(|(_, e)| e.pidfd.is_none() || e.stderr_more || e.signal.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.pump_more(id);
            self.signal_due(id, now);
            if self.children.get(&id).is_some_and(|e| e.pidfd.is_none()) {
                self.check(id);
            }
        }
    }

    fn pump_more(&mut self, id: u64) {
        if self.children.get(&id).is_some_and(|e| e.stderr_more) {
            self.pump_stderr(id);
        }
    }

    /// Sends child `id` its due signal: SIGTERM, and then SIGKILL after
    /// [`GRACE`].
    fn signal_due(&mut self, id: u64, now: Instant) {
        let Some(e) = self.children.get_mut(&id) else {
            return;
        };
        let Some((at, sig)) = e.signal else {
            return;
        };
        if at > now {
            return;
        }
        send_signal(e, sig);
        e.signal = (sig == Signal::TERM).then(|| (now + GRACE, Signal::KILL));
    }
}

/// Signals a child the reaper holds (so it is not reaped yet, and its pid
/// is still its own even without a pidfd).
fn send_signal(e: &mut Entry, sig: Signal) {
    match &e.pidfd {
        Some(fd) => {
            let _ = sys::pidfd_send_signal(fd, sig);
        }
        None if sig == Signal::KILL => {
            let _ = e.child.kill();
        }
        None => {
            let _ = sys::kill(e.child.id(), sig);
        }
    }
}

/// Passes on what a stderr pipe holds now (a few budgets at most), then
/// closes it: its child is gone, and a grandchild holding the pipe open
/// must not keep it forever.
fn drain_and_close(lines: &mut StderrLines) {
    for _ in 0..4 {
        if lines.pump() != Pumped::More {
            break;
        }
    }
    lines.close();
}
