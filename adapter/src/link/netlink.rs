//! News of the host's links from the kernel, as it happens: a
//! `NETLINK_ROUTE` socket subscribed to `RTMGRP_LINK`, which gets an
//! `RTM_NEWLINK` when a link's flags change (`ip link set NAME down`) and
//! an `RTM_DELLINK` when it is deleted. It exists so a failed link is
//! known within milliseconds without polling files in a loop.
//!
//! A listener this small is written here, on libc as [`crate::tap`] is,
//! rather than pulled in with a netlink crate: it reads two message types
//! and one attribute (the name), and the layouts it parses are the
//! kernel's stable ABI (`linux/netlink.h`, `linux/rtnetlink.h`,
//! `linux/if_link.h`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const IFLA_IFNAME: u16 = 3;
/// `struct nlmsghdr`: length, type, flags, sequence, port id.
const NLMSG_HDR_LEN: usize = 16;
/// `struct ifinfomsg`: family, pad, type, index, flags, change.
const IFINFO_LEN: usize = 16;
const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;

/// What the kernel said about one link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkNews {
    /// The link exists; `up` when it is administratively up and running.
    Changed {
        /// Interface name.
        name: String,
        /// IFF_UP and IFF_RUNNING both set.
        up: bool,
        /// IFF_UP set (a TAP nobody is attached to has no carrier, so it
        /// is up without running until vnic attaches).
        admin_up: bool,
    },
    /// The link was deleted.
    Removed {
        /// Interface name.
        name: String,
    },
}

impl LinkNews {
    /// The interface the news is about.
    pub fn name(&self) -> &str {
        match self {
            LinkNews::Changed { name, .. } | LinkNews::Removed { name } => name,
        }
    }
}

/// A netlink socket that hears every link change in this network
/// namespace. Non-blocking: poll its fd, then [`LinkWatch::read`].
pub struct LinkWatch {
    fd: OwnedFd,
}

impl LinkWatch {
    /// Opens the socket and joins the link group.
    pub fn open() -> io::Result<LinkWatch> {
        // SAFETY: plain arguments; a fresh fd or -1.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = RTMGRP_LINK;
        // SAFETY: binds our fd to a sockaddr_nl of the size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(LinkWatch { fd })
    }

    /// Reads every message waiting and appends what they say to `out`.
    /// An overrun (ENOBUFS: the kernel dropped news) is returned as an
    /// error: the caller then asks each link's state afresh.
    pub fn read(&self, out: &mut Vec<LinkNews>) -> io::Result<()> {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: reads at most buf.len() bytes into buf.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(()),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            parse(&buf[..n as usize], out);
        }
    }
}

impl AsRawFd for LinkWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Whether interface `name` is up and running now, from sysfs: read
/// once per link at start and after an overrun, never in a loop. Its
/// `flags` file holds the device's own flags (IFF_UP) but not IFF_RUNNING,
/// which the kernel derives from the operational state, so that is read
/// too. None when the interface does not exist.
pub fn is_up(name: &str) -> Option<bool> {
    let dir = format!("/sys/class/net/{name}");
    let text = std::fs::read_to_string(format!("{dir}/flags")).ok()?;
    let flags = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()?;
    let oper = std::fs::read_to_string(format!("{dir}/operstate")).ok()?;
    Some(flags & IFF_UP != 0 && matches!(oper.trim(), "up" | "unknown"))
}

/// Parses one datagram of netlink messages: the link messages of family
/// AF_UNSPEC (a bridge's own AF_BRIDGE notices about its ports are left
/// out: a port leaving its bridge is not the link being deleted).
/// Anything short or malformed ends the parse; nothing panics.
pub fn parse(mut buf: &[u8], out: &mut Vec<LinkNews>) {
    while buf.len() >= NLMSG_HDR_LEN {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < NLMSG_HDR_LEN || len > buf.len() {
            return;
        }
        let msg = &buf[NLMSG_HDR_LEN..len];
        if (kind == RTM_NEWLINK || kind == RTM_DELLINK) && msg.len() >= IFINFO_LEN && msg[0] == 0 {
            let flags = u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]);
            if let Some(name) = ifname(&msg[IFINFO_LEN..]) {
                out.push(if kind == RTM_DELLINK {
                    LinkNews::Removed { name }
                } else {
                    LinkNews::Changed {
                        name,
                        up: flags & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING,
                        admin_up: flags & IFF_UP != 0,
                    }
                });
            }
        }
        let next = align4(len);
        if next >= buf.len() {
            return;
        }
        buf = &buf[next..];
    }
}

/// The IFLA_IFNAME attribute among `attrs` (`struct rtattr`s: length,
/// type, payload, each padded to 4 bytes).
fn ifname(mut attrs: &[u8]) -> Option<String> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == IFLA_IFNAME {
            let v = &attrs[4..len];
            let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
            return String::from_utf8(v[..end].to_vec()).ok();
        }
        let next = align4(len);
        if next >= attrs.len() {
            return None;
        }
        attrs = &attrs[next..];
    }
    None
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A netlink link message as the kernel lays it out.
    fn message(kind: u16, family: u8, flags: u32, name: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        let alen = 4 + name.len() + 1;
        attr.extend_from_slice(&(alen as u16).to_ne_bytes());
        attr.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        attr.extend_from_slice(name.as_bytes());
        attr.push(0);
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        // A second attribute after the name (IFLA_MTU), to skip.
        let mut mtu = Vec::new();
        mtu.extend_from_slice(&8u16.to_ne_bytes());
        mtu.extend_from_slice(&4u16.to_ne_bytes());
        mtu.extend_from_slice(&1500u32.to_ne_bytes());
        let mut info = vec![family, 0, 1, 0];
        info.extend_from_slice(&7i32.to_ne_bytes());
        info.extend_from_slice(&flags.to_ne_bytes());
        info.extend_from_slice(&0u32.to_ne_bytes());
        let len = NLMSG_HDR_LEN + info.len() + mtu.len() + attr.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&info);
        m.extend_from_slice(&mtu);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn new_and_deleted_links_are_read_with_their_state() {
        let mut buf = message(RTM_NEWLINK, 0, IFF_UP | IFF_RUNNING, "vnicA");
        buf.extend(message(RTM_NEWLINK, 0, 0x1002, "vnicB"));
        buf.extend(message(RTM_DELLINK, 0, 0, "vnicC"));
        let mut out = Vec::new();
        parse(&buf, &mut out);
        assert_eq!(
            out,
            vec![
                LinkNews::Changed {
                    name: "vnicA".into(),
                    up: true,
                    admin_up: true
                },
                LinkNews::Changed {
                    name: "vnicB".into(),
                    up: false,
                    admin_up: false
                },
                LinkNews::Removed {
                    name: "vnicC".into()
                },
            ]
        );
    }

    #[test]
    fn bridge_notices_and_other_messages_are_left_out() {
        let mut buf = message(RTM_DELLINK, 7, 0, "vnicA");
        buf.extend(message(20, 0, 0, "vnicA"));
        let mut out = Vec::new();
        parse(&buf, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn truncated_input_ends_the_parse_without_panic() {
        let full = message(RTM_NEWLINK, 0, IFF_UP | IFF_RUNNING, "vnicA");
        for cut in 0..full.len() {
            let mut out = Vec::new();
            parse(&full[..cut], &mut out);
            assert!(out.is_empty(), "cut at {cut}");
        }
        let mut bad = full.clone();
        bad[NLMSG_HDR_LEN + IFINFO_LEN] = 1; // an attribute shorter than its header
        let mut out = Vec::new();
        parse(&bad, &mut out);
        assert!(out.is_empty());
    }
}
