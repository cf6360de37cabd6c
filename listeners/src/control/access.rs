//! Who may use the control socket: the socket file's owner, group and
//! mode, the caller's credentials, and group names.
//!
//! Two fences, each enough alone. The file: vnic binds the socket 0600
//! (0660 with `--control-group GROUP`, the file's group set to GROUP)
//! whatever the umask, so other users cannot even connect. The caller: on
//! every accepted connection vnic reads the peer's credentials from the
//! kernel (`SO_PEERCRED`, `SO_PEERGROUPS`, as they were at `connect`) and
//! serves only root, vnic's own user and, with `--control-group`, members
//! of that group (as primary or supplementary group); anyone else gets
//! one refusal line and is disconnected, also if the file's mode was
//! widened by hand.
//!
//! Why libc by hand: std has no peer credentials on the workspace's
//! rust-version (`UnixStream::peer_cred` is unstable), no group database
//! and no way to set a socket's mode before `bind`. `nix` covers most of
//! it but would bring a new dependency tree (nix, bitflags, cfg_aliases,
//! memoffset) for six calls, and still needs `unsafe` for the group
//! lookup's buffer; `rustix` has peer credentials but no group database
//! (that is glibc's NSS, reachable only through libc). libc is already a
//! dependency, so the calls are written here, each `unsafe` block small
//! and commented, and the logic around them (who is allowed) is plain
//! code with its own tests.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Who is on the other end of a control connection, as the kernel saw it
/// at `connect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Process id.
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Supplementary groups (empty where the kernel cannot tell:
    /// `SO_PEERGROUPS` is Linux 4.13+).
    pub groups: Vec<u32>,
}

/// Who may use the control socket: root, the user vnic runs as, and the
/// members of `group` if one was given (`--control-group`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// vnic's own effective user id.
    pub owner: u32,
    /// The group whose members may use it too.
    pub group: Option<u32>,
}

impl Access {
    /// Root, this process's user, and `group`'s members.
    pub fn new(group: Option<u32>) -> Access {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let owner = unsafe { libc::geteuid() };
        Access { owner, group }
    }

    /// True if `peer` may send requests.
    pub fn allows(&self, peer: &Peer) -> bool {
        if peer.uid == 0 || peer.uid == self.owner {
            return true;
        }
        match self.group {
            Some(g) => peer.gid == g || peer.groups.contains(&g),
            None => false,
        }
    }

    /// The one-line refusal for a peer [`Access::allows`] turned away.
    pub fn refusal(&self, peer: &Peer) -> String {
        let mut who = vec!["root".to_string()];
        if self.owner != 0 {
            who.push(format!("uid {}", self.owner));
        }
        if let Some(g) = self.group {
            who.push(format!("members of group {g}"));
        }
        let who = who.join(", ");
        format!(
            "permission denied: uid {} (pid {}) is not allowed on this control socket (only {who})",
            peer.uid, peer.pid
        )
    }

    /// The socket file's mode: 0600, or 0660 with a group.
    pub fn mode(&self) -> u32 {
        if self.group.is_some() {
            0o660
        } else {
            0o600
        }
    }
}

/// The credentials of the process at the other end of `s`.
pub fn peer(s: &UnixStream) -> io::Result<Peer> {
    let fd = s.as_raw_fd();
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a writable ucred and `len` its size; the kernel
    // writes at most `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Peer {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
        groups: peer_groups(fd)?,
    })
}

/// The peer's supplementary groups (`SO_PEERGROUPS`); empty on a kernel
/// without it.
fn peer_groups(fd: RawFd) -> io::Result<Vec<u32>> {
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

/// The gid of group `name`: a name from the group database (files, LDAP,
/// whatever NSS is set up with), or else a number.
pub fn resolve_group(name: &str) -> Result<u32, String> {
    if let Some(gid) = lookup_group(name)? {
        return Ok(gid);
    }
    name.parse::<u32>()
        .map_err(|_| format!("no group named {name:?} (give a group name or a number)"))
}

/// `getgrnam_r`, growing the buffer while it is too small.
fn lookup_group(name: &str) -> Result<Option<u32>, String> {
    let Ok(cname) = CString::new(name) else {
        return Err(format!("{name:?} is not a group name"));
    };
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: all-zero is a valid `group` (null pointers, gid 0).
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: `cname` is NUL-terminated; `grp`, `buf` (with its true
        // length) and `found` are valid for writing for the whole call;
        // the strings `grp` points to live in `buf`, unused after it.
        let r = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
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
            return Err(format!(
                "looking up group {name:?}: {}",
                io::Error::from_raw_os_error(r)
            ));
        }
        return Ok((!found.is_null()).then_some(grp.gr_gid));
    }
}

/// A Unix stream socket bound at `path` and listening, whose file is
/// born with `mode` (at most: the umask can only take bits away; the
/// caller sets the exact mode after). The socket's own inode gets the mode
/// before `bind`, which makes the file with it: there is no moment when
/// the file has the umask's looser mode.
pub fn bind_listener(path: &Path, mode: u32) -> io::Result<UnixListener> {
    // SAFETY: all-zero is a valid sockaddr_un (family set below).
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} cannot be a socket path (1 to {} bytes, no NUL)",
                path.display(),
                addr.sun_path.len() - 1
            ),
        ));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: plain socket(2); the result is checked and owned at once.
    let raw = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: fchmod, bind and listen on the descriptor we own; `addr` is
    // a valid sockaddr_un of at least `len` bytes.
    unsafe {
        if libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) != 0
            || libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            ) != 0
            || libc::listen(fd.as_raw_fd(), 128) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(UnixListener::from(fd))
}

/// Gives the socket file at `path` group `group` (if any) and exactly
/// `mode`, never through a symbolic link.
pub fn set_owner_and_mode(path: &Path, group: Option<u32>, mode: u32) -> io::Result<()> {
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the socket path"))?;
    if let Some(g) = group {
        // SAFETY: `cpath` is NUL-terminated; uid -1 leaves the owner as is.
        if unsafe { libc::lchown(cpath.as_ptr(), u32::MAX, g) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: `cpath` is NUL-terminated. With AT_SYMLINK_NOFOLLOW glibc
    // (2.32+) refuses a symbolic link instead of changing its target.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            pid: 42,
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn only_root_and_the_owner_without_a_group() {
        let a = Access {
            owner: 1000,
            group: None,
        };
        assert!(a.allows(&peer(0, 0, &[])));
        assert!(a.allows(&peer(1000, 1000, &[])));
        assert!(!a.allows(&peer(1001, 1000, &[1000])));
        assert!(!a.allows(&peer(65534, 65534, &[])));
        assert_eq!(a.mode(), 0o600);
    }

    #[test]
    fn a_group_lets_its_members_in_as_primary_or_supplementary() {
        let a = Access {
            owner: 0,
            group: Some(4242),
        };
        assert!(a.allows(&peer(65534, 4242, &[])));
        assert!(a.allows(&peer(65534, 65534, &[7, 4242])));
        assert!(!a.allows(&peer(65534, 65534, &[7])));
        assert_eq!(a.mode(), 0o660);
        let msg = a.refusal(&peer(65534, 65534, &[]));
        assert!(
            msg.contains("uid 65534") && msg.contains("group 4242"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn our_own_connection_shows_our_credentials() {
        let (a, _b) = UnixStream::pair().expect("pair");
        let p = super::peer(&a).expect("peer");
        // SAFETY: no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        assert_eq!((p.uid, p.gid, p.pid), (uid, gid, std::process::id() as i32));
        assert!(Access::new(None).allows(&p));
    }

    #[test]
    fn group_names_and_numbers() {
        assert_eq!(resolve_group("root"), Ok(0));
        assert_eq!(resolve_group("4242"), Ok(4242));
        let err = resolve_group("no-such-group-vnic").expect_err("unknown");
        assert!(err.contains("no-such-group-vnic"), "{err}");
        assert!(resolve_group("a\0b").is_err());
    }

    #[test]
    fn the_socket_file_is_born_with_the_mode_asked() {
        let dir = std::env::temp_dir().join(format!("vnic-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let l = bind_listener(&path, 0o600).expect("bind");
        let mode = |p: &Path| {
            std::fs::symlink_metadata(p)
                .expect("stat")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(&path), 0o600);
        set_owner_and_mode(&path, Some(4242), 0o660).expect("group");
        assert_eq!(mode(&path), 0o660);
        assert_eq!(std::fs::symlink_metadata(&path).expect("stat").gid(), 4242);
        UnixStream::connect(&path).expect("it listens");
        drop(l);
        // Through a symbolic link nothing changes.
        let target = dir.join("target");
        std::fs::write(&target, "x").expect("write");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(set_owner_and_mode(&link, None, 0o666).is_err());
        assert_eq!(mode(&target), 0o600);
        let long = dir.join("x".repeat(120));
        assert!(bind_listener(&long, 0o600).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
