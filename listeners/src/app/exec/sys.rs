//! The few system calls the exec app makes beyond what std offers.
//!
//! Why: std can set O_NONBLOCK only on sockets, not on a child's pipes
//! (`ChildStdin` and friends have no `set_nonblocking`), and its pidfd
//! support (`CommandExt::create_pidfd`, `PidFd`) is still unstable. Each
//! call here is one safe `rustix` call (`fcntl`, `pidfd_open`,
//! `pidfd_send_signal`, `poll`, `rlimit`), or `vnic_sys::ignore_sigpipe`
//! where rustix has no safe `sigaction`; the listeners crate has no
//! `unsafe` (`#![forbid(unsafe_code)]`).

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;
use rustix::process::{Pid, PidfdFlags, Resource, Rlimit, Signal};
use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// Puts `fd` in non-blocking mode (our end of a child's pipe), so that a
/// read or write that would wait returns `WouldBlock` instead.
pub(super) fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?;
    Ok(())
}

/// A pidfd for child `pid` (Linux 5.3+): a descriptor that becomes
/// readable when the child exits, and through which it can be signalled
/// without any risk of hitting a recycled pid. Close-on-exec, always.
pub(super) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Sends `signal` to the process `pidfd` stands for. ESRCH (it has
/// exited) comes back as an error the caller may ignore.
pub(super) fn pidfd_send_signal(pidfd: impl AsFd, signal: Signal) -> io::Result<()> {
    Ok(rustix::process::pidfd_send_signal(pidfd, signal)?)
}

/// Sends `signal` to child `pid`, for a child without a pidfd (a kernel
/// before 5.3). The caller holds the child unreaped, so the pid is still
/// its own.
pub(super) fn kill(pid: u32, signal: Signal) -> io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(rustix::process::kill_process(pid, signal)?)
}

/// Whether `fd` is readable right now (for a pidfd: the child has
/// exited), without waiting.
pub(super) fn readable_now(fd: impl AsFd) -> bool {
    let mut p = [PollFd::new(&fd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let n = rustix::event::poll(&mut p, Some(&zero)).unwrap_or(0);
    n > 0
        && p[0]
            .revents()
            .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
}

/// Makes sure a write to a pipe whose reader has gone returns EPIPE
/// instead of killing the whole process with SIGPIPE (see
/// [`vnic_sys::ignore_sigpipe`]).
pub(super) fn ignore_sigpipe() -> io::Result<()> {
    vnic_sys::ignore_sigpipe()
}

/// Raises this process's soft limit on open descriptors to at least
/// `want` (up to the hard limit): each running child costs the exec app
/// five (three pipes, two pidfds), and the common soft limit of 1,024
/// would otherwise cap `--exec-max` near 200.
pub(super) fn raise_fd_limit(want: u64) -> io::Result<()> {
    // `None` is RLIM_INFINITY.
    let l = rustix::process::getrlimit(Resource::Nofile);
    let target = want.min(l.maximum.unwrap_or(u64::MAX));
    if l.current.unwrap_or(u64::MAX) >= target {
        return Ok(());
    }
    rustix::process::setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: l.maximum,
        },
    )?;
    Ok(())
}
