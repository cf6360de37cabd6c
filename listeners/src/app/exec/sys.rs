//! The few system calls the exec app makes by hand.
//!
//! Why by hand: std can set O_NONBLOCK only on sockets, not on a child's
//! pipes (`ChildStdin` and friends have no `set_nonblocking`); its pidfd
//! support (`CommandExt::create_pidfd`, `PidFd`) is still unstable; and the
//! libc crate has the pidfd syscall numbers but no wrapper functions. Each
//! call here is one `fcntl`, `syscall`, `poll`, `sigaction` or `rlimit`
//! with its error turned into an `io::Error`; nothing else is unsafe in the
//! exec app.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Puts `fd` in non-blocking mode (our end of a child's pipe), so that a
/// read or write that would wait returns `WouldBlock` instead.
pub(super) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pidfd for child `pid` (Linux 5.3+): a descriptor that becomes
/// readable when the child exits, and through which it can be signalled
/// without any risk of hitting a recycled pid. Close-on-exec, always.
pub(super) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags, and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `signal` to the process `pidfd` stands for. ESRCH (it has
/// exited) comes back as an error the caller may ignore.
pub(super) fn pidfd_send_signal(pidfd: RawFd, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: no siginfo (NULL) and no flags, as pidfd_send_signal(2) allows.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `fd` is readable right now (for a pidfd: the child has
/// exited), without waiting.
pub(super) fn readable_now(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// Makes sure a write to a pipe whose reader has gone returns EPIPE
/// instead of killing the whole process with SIGPIPE. Rust binaries start
/// with SIGPIPE ignored already; a program embedding this library may not,
/// so a default disposition is turned into "ignore" (a handler someone
/// installed is left alone). Children still start with the default: std's
/// `Command` resets SIGPIPE in each child it spawns.
pub(super) fn ignore_sigpipe() -> io::Result<()> {
    // SAFETY: sigaction is plain data, for which all zeroes are valid.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: with a null new action, sigaction only reads the current
    // one into the struct we own.
    if unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if old.sa_sigaction != libc::SIG_DFL {
        return Ok(());
    }
    // SAFETY: SIG_IGN for SIGPIPE; signal() takes no memory of ours.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises this process's soft limit on open descriptors to at least
/// `want` (up to the hard limit): each running child costs the exec app
/// five (three pipes, two pidfds), and the common soft limit of 1,024
/// would otherwise cap `--exec-max` near 200.
pub(super) fn raise_fd_limit(want: u64) -> io::Result<()> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let target = want.min(l.rlim_max);
    if l.rlim_cur >= target {
        return Ok(());
    }
    l.rlim_cur = target;
    // SAFETY: setrlimit reads the struct we own; the soft limit stays
    // within the hard one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
