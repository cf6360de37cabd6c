//! Errors the adapter reports to whoever starts it, each one a thing the
//! user can act on.

use std::io;

/// What can go wrong while setting the adapter up.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// Opening /dev/net/tun or attaching to the TAP was refused.
    #[error("no permission to open TAP {tap}: run as root, or create it once with `sudo ip tuntap add dev {tap} mode tap user $USER` ({source})")]
    Permission {
        /// The TAP name asked for.
        tap: String,
        /// The OS error.
        source: io::Error,
    },
    /// The TAP exists and another process holds it.
    #[error("TAP {tap} is busy: another process (another vnic?) has it open")]
    Busy {
        /// The TAP name asked for.
        tap: String,
    },
    /// /dev/net/tun does not exist.
    #[error("/dev/net/tun is missing: load the tun module (`modprobe tun`) ({0})")]
    NoTunDevice(io::Error),
    /// The TAP name cannot be a Linux interface name.
    #[error("bad TAP name {0:?}: 1 to 15 characters, no '/', no spaces")]
    BadName(String),
    /// Any other failure of an ioctl or of the device.
    #[error("TAP {tap}: {source}")]
    Io {
        /// The TAP name.
        tap: String,
        /// The OS error.
        source: io::Error,
    },
    /// Configuring the host side (addresses, link up) failed.
    #[error("configuring the host side of {tap}: {what}")]
    HostConfig {
        /// The TAP name.
        tap: String,
        /// What failed, with the command's own message.
        what: String,
    },
}
