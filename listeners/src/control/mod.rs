//! The control socket: how `vnic status` and `vnic ctl` look at and steer
//! a running vnic, the way NonStop operators use STATUS, INFO and TRACE.
//!
//! A Unix stream socket speaking JSON lines: the client writes one request
//! object per line, the server answers each with one response object per
//! line. The protocol is documented in `docs/CONTROL.md`.
//!
//! Only root, vnic's own user and the members of `--control-group` may
//! use it ([`access`]: the file's mode and the caller's credentials), and
//! no client can hold more than its share ([`server`]: a bounded number of
//! clients, bounded request lines, answers that time out).
//!
//! A `capture` request turns its connection into a pcapng stream
//! (`capture`: length-prefixed chunks, then a report line).

pub mod access;
mod capture;
pub mod links;
pub mod protocol;
pub mod server;
mod sockets;

#[cfg(test)]
mod capture_tests;
#[cfg(test)]
mod listener_tests;
#[cfg(test)]
mod tests;

pub use access::{resolve_group, Access, Peer};
pub use links::{LinkStatus, LinksReport};
pub use protocol::{
    CaptureEnd, CaptureStatus, PairStatus, Request, Response, SocketRow, SocketState, SocketTable,
    Status, TcpStatus,
};
pub use server::{
    default_path, runtime_rotation, ControlServer, Runtime, TraceControl, TraceHandle, MAX_CLIENTS,
    MAX_REQUEST, REQUEST_TIMEOUT, RUNTIME_TRACE_MAX_FILES, RUNTIME_TRACE_MAX_MB, WRITE_TIMEOUT,
};
pub use sockets::SOCKETS_TIMEOUT;
