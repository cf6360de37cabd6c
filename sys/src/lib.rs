//! Every `unsafe` system call vnic makes outside the TAP and BPF code of
//! `vnic-adapter`, each behind a safe function.
//!
//! Why a crate of its own: `vnic-stack` and `vnic-listeners` forbid
//! `unsafe` (`#![forbid(unsafe_code)]`), and most of what they need from
//! the kernel comes safely from `rustix`. What is left is here, where
//! each call is a few lines with its SAFETY argument beside it:
//!
//! - the group database ([`group_id`]): `getgrnam_r` is glibc's NSS
//!   (files, LDAP, whatever `nsswitch.conf` names), not a system call,
//!   so no syscall crate has it;
//! - the peer's credentials ([`peer_credentials`], [`peer_groups`]):
//!   std's `UnixStream::peer_cred` is unstable on the workspace's
//!   rust-version, rustix has no `SO_PEERGROUPS`, and its `UCred` holds
//!   the pid as a non-zero `Pid`, where the kernel reports 0 for a peer
//!   in a pid namespace that cannot see it (a client in a container);
//! - [`chmod_no_follow`]: `fchmodat(AT_SYMLINK_NOFOLLOW)` is done by
//!   glibc (2.32+, through `O_PATH`), which rustix's raw-syscall backend
//!   does not do (it refuses the flag);
//! - [`ignore_sigpipe`]: rustix has `sigaction` only as an `unsafe`
//!   runtime call.
//!
//! Nothing here keeps state; every function returns the kernel's error as
//! an [`io::Error`].

#![deny(missing_docs)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The credentials of a Unix socket's peer as the kernel saw them at
/// `connect` (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id; 0 when the peer's process is not visible from this
    /// pid namespace.
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// The credentials of the process at the other end of the Unix socket
/// `fd` (`SO_PEERCRED`): who the control socket serves is decided on them.
pub fn peer_credentials(fd: impl AsFd) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a writable ucred and `len` its size; the kernel
    // writes at most `len` bytes, and every bit pattern is a valid ucred.
    let r = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// The supplementary groups of the process at the other end of the Unix
/// socket `fd` (`SO_PEERGROUPS`, as they were at `connect`), so that a
/// member of `--control-group` by a supplementary group is let in. Empty
/// on a kernel without it (before Linux 4.13).
pub fn peer_groups(fd: impl AsFd) -> io::Result<Vec<u32>> {
    let fd = fd.as_fd().as_raw_fd();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    // Twice at most: the first answer says how much room the list needs.
    for _ in 0..2 {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` has room for `len` bytes; the kernel writes at
        // most that, or fails with ERANGE and sets `len` to what it needs.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r == 0 {
            groups.truncate(len as usize / std::mem::size_of::<libc::gid_t>());
            return Ok(groups);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => {
                let need = len as usize / std::mem::size_of::<libc::gid_t>();
                groups = vec![0; need.max(groups.len() * 2)];
            }
            Some(libc::ENOPROTOOPT) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    }
    Err(io::Error::other("the peer's group list keeps growing"))
}

/// The gid of the group called `name` in the group database (files,
/// LDAP, whatever NSS is set up with: `getgrnam_r`), or `None` if there
/// is no such group. `--control-group` takes a group by name.
pub fn group_id(name: &CStr) -> io::Result<Option<u32>> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: all-zero is a valid `group` (null pointers, gid 0).
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: `name` is NUL-terminated; `grp`, `buf` (with its true
        // length) and `found` are valid for writing for the whole call;
        // the strings `grp` points to live in `buf`, unused after it.
        let r = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if r == libc::ERANGE && buf.len() < (1 << 20) {
            buf = vec![0; buf.len() * 4];
            continue;
        }
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        return Ok((!found.is_null()).then_some(grp.gr_gid));
    }
}

/// Gives the file at `path` exactly `mode`, refusing a symbolic link
/// instead of changing its target (`fchmodat` with `AT_SYMLINK_NOFOLLOW`,
/// glibc 2.32+): the control socket's file must not be swapped for a
/// link to something else between its `bind` and its `chmod`.
pub fn chmod_no_follow(path: &Path, mode: u32) -> io::Result<()> {
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the path"))?;
    // SAFETY: `cpath` is NUL-terminated and lives through the call.
    let r = unsafe {
        libc::fchmodat(
            libc::AT_FDCWD,
            cpath.as_ptr(),
            mode as libc::mode_t,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes sure a write to a pipe whose reader has gone returns EPIPE
/// instead of killing the whole process with SIGPIPE (the exec app writes
/// to its children's stdin). Rust binaries start with SIGPIPE ignored
/// already; a program embedding the library may not, so a default
/// disposition is turned into "ignore" (a handler someone installed is
/// left alone). Children still start with the default: std's `Command`
/// resets SIGPIPE in each child it spawns.
pub fn ignore_sigpipe() -> io::Result<()> {
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
    // SAFETY: SIG_IGN for SIGPIPE: no handler of ours runs, and signal()
    // takes no memory of ours.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn our_own_connection_shows_our_credentials() {
        let (a, _b) = UnixStream::pair().expect("pair");
        let p = peer_credentials(&a).expect("peer");
        assert_eq!(p.pid, std::process::id() as i32);
        // SAFETY: geteuid has no preconditions.
        assert_eq!(p.uid, unsafe { libc::geteuid() });
        // SO_PEERGROUPS gives the groups we had at `connect`: ours.
        let mut mine: Vec<libc::gid_t> = vec![0; 65_536];
        // SAFETY: `mine` has room for the count we pass.
        let n = unsafe { libc::getgroups(mine.len() as libc::c_int, mine.as_mut_ptr()) };
        assert!(n >= 0);
        mine.truncate(n as usize);
        let mut groups = peer_groups(&a).expect("groups");
        groups.sort_unstable();
        mine.sort_unstable();
        assert_eq!(groups, mine);
    }

    #[test]
    fn group_lookup() {
        assert_eq!(group_id(c"root").expect("root"), Some(0));
        assert_eq!(group_id(c"no-such-group-vnic").expect("none"), None);
    }

    #[test]
    fn chmod_refuses_a_symbolic_link() {
        let dir = std::env::temp_dir().join(format!("vnic-sys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let target = dir.join("target");
        std::fs::write(&target, "x").expect("write");
        chmod_no_follow(&target, 0o600).expect("chmod");
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(chmod_no_follow(&link, 0o666).is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sigpipe_ends_up_ignored() {
        ignore_sigpipe().expect("ignore");
        // SAFETY: as in ignore_sigpipe.
        let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: reads the current action into `now`.
        assert_eq!(
            unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut now) },
            0
        );
        assert_ne!(now.sa_sigaction, libc::SIG_DFL);
    }
}
