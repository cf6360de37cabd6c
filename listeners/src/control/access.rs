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
//! Where the system calls are: std has no peer credentials on the
//! workspace's rust-version (`UnixStream::peer_cred` is unstable), no
//! group database and no way to set a socket's mode before `bind`. The
//! socket, its mode, `bind`, `listen`, `geteuid` and `fchownat` are safe
//! `rustix` calls here. Four calls no safe crate has are in `vnic-sys`,
//! each a few lines of libc with its SAFETY argument: the group lookup
//! (`getgrnam_r`, glibc's NSS: files, LDAP, whatever `nsswitch.conf`
//! names), `SO_PEERGROUPS`, `SO_PEERCRED` (rustix has it, but holds the
//! pid as a non-zero `Pid`, where the kernel says 0 for a peer in a pid
//! namespace that cannot see it) and `fchmodat(AT_SYMLINK_NOFOLLOW)`
//! (glibc's; rustix's raw syscalls refuse the flag). The logic around
//! them (who is allowed) is plain code with its own tests.

use rustix::fs::{AtFlags, Mode, CWD};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use rustix::process::Gid;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// The room for a path in a `sockaddr_un` (`sun_path`, 108 bytes on
/// Linux), its NUL included.
const SUN_PATH_LEN: usize = 108;

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
        let owner = rustix::process::geteuid().as_raw();
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
    let cred = vnic_sys::peer_credentials(s)?;
    Ok(Peer {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
        groups: vnic_sys::peer_groups(s)?,
    })
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

/// The group database's gid for `name`, if it has one.
fn lookup_group(name: &str) -> Result<Option<u32>, String> {
    let Ok(cname) = CString::new(name) else {
        return Err(format!("{name:?} is not a group name"));
    };
    vnic_sys::group_id(&cname).map_err(|e| format!("looking up group {name:?}: {e}"))
}

/// A Unix stream socket bound at `path` and listening, whose file is
/// born with `mode` (at most: the umask can only take bits away; the
/// caller sets the exact mode after). The socket's own inode gets the mode
/// before `bind`, which makes the file with it: there is no moment when
/// the file has the umask's looser mode.
pub fn bind_listener(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= SUN_PATH_LEN || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} cannot be a socket path (1 to {} bytes, no NUL)",
                path.display(),
                SUN_PATH_LEN - 1
            ),
        ));
    }
    let addr = SocketAddrUnix::new(path)?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, 128)?;
    Ok(UnixListener::from(fd))
}

/// Gives the socket file at `path` group `group` (if any) and exactly
/// `mode`, never through a symbolic link.
pub fn set_owner_and_mode(path: &Path, group: Option<u32>, mode: u32) -> io::Result<()> {
    if let Some(g) = group {
        // The owner is left as it is.
        rustix::fs::chownat(
            CWD,
            path,
            None,
            Some(Gid::from_raw(g)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    vnic_sys::chmod_no_follow(path, mode)
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
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
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
