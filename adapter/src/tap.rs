//! The TAP device: attach to an existing one (made with `ip tuntap add dev
//! NAME mode tap user $USER`, so vnic runs without root) or create it.

use crate::emit::FrameSink;
use crate::error::AdapterError;
use std::io;
use std::os::unix::io::AsRawFd;
use std::time::Duration;
use tun_tap::{Iface, Mode};

/// An open TAP device: Ethernet frames in and out, no packet-info prefix.
pub struct TapDevice {
    iface: Iface,
}

impl TapDevice {
    /// Attaches to TAP `name`, creating it if it does not exist.
    pub fn open(name: &str) -> Result<TapDevice, AdapterError> {
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
            return Err(AdapterError::BadName(name.to_string()));
        }
        if !std::path::Path::new("/dev/net/tun").exists() {
            return Err(AdapterError::NoTunDevice(io::Error::from(
                io::ErrorKind::NotFound,
            )));
        }
        match Iface::without_packet_info(name, Mode::Tap) {
            Ok(iface) => {
                set_non_blocking(iface.as_raw_fd()).map_err(|e| AdapterError::Io {
                    tap: name.to_string(),
                    source: e,
                })?;
                Ok(TapDevice { iface })
            }
            Err(e) => Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => AdapterError::Permission {
                    tap: name.to_string(),
                    source: e,
                },
                Some(libc::EBUSY) => AdapterError::Busy {
                    tap: name.to_string(),
                },
                Some(libc::ENOENT) | Some(libc::ENODEV) => AdapterError::NoTunDevice(e),
                Some(libc::EINVAL) => AdapterError::Io {
                    tap: name.to_string(),
                    source: io::Error::new(
                        e.kind(),
                        format!("{e}: is {name} a TUN (not TAP) device, or made with other flags (multi_queue)?"),
                    ),
                },
                _ => AdapterError::Io {
                    tap: name.to_string(),
                    source: e,
                },
            }),
        }
    }

    /// The interface name the kernel gave.
    pub fn name(&self) -> &str {
        self.iface.name()
    }

    /// The device's MTU as the kernel sees it (1500 if it cannot be read).
    pub fn mtu(&self) -> usize {
        std::fs::read_to_string(format!("/sys/class/net/{}/mtu", self.name()))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1500)
    }

    /// Waits up to `timeout` for a frame; `Ok(None)` when none came. The
    /// fd is non-blocking: a busy link costs one read per frame, and poll
    /// is only called when the queue is empty.
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        match self.iface.recv(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let mut pfd = libc::pollfd {
            fd: self.iface.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd, count 1.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if r == 0 {
            return Ok(None);
        }
        match self.iface.recv(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Sets O_NONBLOCK on `fd`.
fn set_non_blocking(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own, with valid commands.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Where frames come from: the TAP, or a wrapper around it (impairment).
pub trait FrameSource: Send {
    /// Waits up to `timeout` for a frame; `Ok(None)` when none came.
    fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>>;
}

impl FrameSource for std::sync::Arc<TapDevice> {
    fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        TapDevice::recv_timeout(self, buf, timeout)
    }
}

impl FrameSink for TapDevice {
    fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        self.iface.send(frame).map(|_| ())
    }
}
