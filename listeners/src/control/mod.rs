//! The control socket: how `vnic status` and `vnic ctl` look at and steer
//! a running vnic, the way NonStop operators use STATUS, INFO and TRACE.
//!
//! A Unix stream socket speaking JSON lines: the client writes one request
//! object per line, the server answers each with one response object per
//! line. The protocol is documented in `docs/CONTROL.md`.

pub mod protocol;
pub mod server;

pub use protocol::{Request, Response, Status};
pub use server::{default_path, ControlServer, Runtime, TraceControl, TraceHandle};
