//! The control protocol's messages (serde, one JSON object per line).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A request from `vnic status` / `vnic ctl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// The whole status: processors, adapter counters, trace.
    Status,
    /// Take processor `id` down (its connections are reset) or bring it up.
    Processor {
        /// Processor number.
        id: usize,
        /// "up" or "down".
        state: String,
    },
    /// Take back-end `id` down (its in-flight requests are retried
    /// elsewhere) or bring it up (distributor model).
    Backend {
        /// Back-end number.
        id: usize,
        /// "up" or "down".
        state: String,
    },
    /// Register a listener at run time, under the same rules as at start-up.
    ListenerAdd {
        /// "tcp" or "udp".
        protocol: String,
        /// Port.
        port: u16,
        /// Processor it listens in.
        processor: usize,
        /// App name (echo, discard, chargen, http, udp-echo).
        app: String,
        /// Backup processor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backup: Option<usize>,
        /// Bound address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
        /// Filter key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Remove the listener of `port` in `processor`.
    ListenerRemove {
        /// "tcp" or "udp".
        protocol: String,
        /// Port.
        port: u16,
        /// Processor.
        processor: usize,
    },
    /// Change the distribution filter: "round-robin" or "none".
    Filter {
        /// The new mode.
        mode: String,
    },
    /// Turn tracing on or off; with a file, pcapng goes there.
    Trace {
        /// On or off.
        on: bool,
        /// pcapng file to write (on), if any: an absolute path.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
        /// Rotate the file after this many MiB (default: `--pcap-max-mb`,
        /// else 1024).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_mb: Option<u64>,
        /// Keep at most this many files (default: `--pcap-max-files`,
        /// else 4).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_files: Option<u32>,
    },
}

impl Request {
    /// Parses one request line (without its newline), as the server reads
    /// it; the error is the refusal's message. Public so the `control`
    /// fuzz target (fuzz/) parses exactly what the server parses.
    pub fn from_line(line: &[u8]) -> Result<Request, String> {
        serde_json::from_slice(line).map_err(|e| one_line(&format!("bad request: {e}")))
    }
}

/// `text` with every control character written as its escape (`\n`,
/// `\u{1b}`): a refusal may quote what the client sent (serde names an
/// unknown command as written), and `vnic ctl` prints it as one line on
/// a terminal.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// True if the request was carried out.
    pub ok: bool,
    /// What went wrong, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The status, for `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// What the request caused, one line each (e.g. listeners moved to
    /// their backups when a processor went down).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Response {
    /// A bare success.
    pub fn ok() -> Response {
        Response {
            ok: true,
            error: None,
            status: None,
            notes: Vec::new(),
        }
    }

    /// A refusal with its reason (control characters escaped, so it is
    /// one line).
    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(one_line(&msg.into())),
            status: None,
            notes: Vec::new(),
        }
    }

    /// The response as the server sends it: one JSON line. Public so the
    /// `control` fuzz target (fuzz/) checks the very bytes a client reads.
    pub fn to_line(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"ok":false,"error":"the answer could not be written as JSON"}"#.to_vec()
        });
        text.push(b'\n');
        text
    }
}

/// Everything `vnic status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// TAP name.
    pub tap: String,
    /// Listener model.
    pub model: String,
    /// Filter mode now in force.
    pub filter: String,
    /// Seconds since start.
    pub uptime_secs: f64,
    /// One entry per processor.
    pub processors: Vec<ProcessorStatus>,
    /// Every listener with its processor, backup, key (masked), bound
    /// address and state.
    #[serde(default)]
    pub listeners: Vec<ListenerStatus>,
    /// Back-end servers (distributor model; empty otherwise).
    #[serde(default)]
    pub backends: Vec<crate::stats::BackendSnapshot>,
    /// Counters of the services that report them (the proxy's per
    /// target, exec's per program), by port.
    #[serde(default)]
    pub services: Vec<crate::stats::ServiceStatus>,
    /// Adapter counters.
    pub adapter: AdapterStatus,
    /// Trace state.
    pub trace: TraceStatus,
}

/// One processor's line in `vnic status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessorStatus {
    /// Processor number.
    pub id: usize,
    /// "up", "down", or "failed" (its thread died).
    pub state: String,
    /// Why it failed (the panic message), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Ports it listens on.
    pub ports: Vec<u16>,
    /// Connections it holds now.
    pub active: u64,
    /// Connections it accepted since start.
    pub accepted: u64,
    /// Payload bytes in.
    pub bytes_in: u64,
    /// Payload bytes out.
    pub bytes_out: u64,
    /// Segments waiting in its queue now.
    pub queue_depth: usize,
    /// Segments dropped because its queue was full.
    pub queue_drops: u64,
    /// Segments its connections retransmitted.
    pub retransmissions: u64,
    /// Connections reset because handling them panicked.
    #[serde(default)]
    pub panics: u64,
    /// SYNs refused at the connection limit.
    #[serde(default)]
    pub refused: u64,
    /// UDP datagrams received.
    #[serde(default)]
    pub datagrams: u64,
    /// Connections in SYN-RECEIVED now.
    #[serde(default)]
    pub half_open: u64,
    /// Replies to invalid segments held back by the processor's rate limit.
    #[serde(default)]
    pub replies_limited: u64,
    /// Passes over a connection that stopped at the per-pass segment limit.
    #[serde(default)]
    pub send_limited: u64,
}

/// One listener's line in `vnic status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerStatus {
    /// Its number.
    pub id: u32,
    /// "tcp" or "udp".
    pub protocol: String,
    /// Port.
    pub port: u16,
    /// Bound address, if any.
    pub address: Option<String>,
    /// Primary processor.
    pub processor: usize,
    /// Backup processor.
    pub backup: Option<usize>,
    /// The processor listening for it now, if any.
    pub serving: Option<usize>,
    /// Filter key, masked.
    pub key: Option<String>,
    /// App name.
    pub app: String,
    /// listening, standby, moved-to-backup or down.
    pub state: String,
}

/// Adapter-wide counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterStatus {
    /// Frames read from the TAP.
    pub frames_in: u64,
    /// Frames written to the TAP.
    pub frames_out: u64,
    /// Frames the TAP refused (a write error: the link went down, the
    /// kernel ran out of buffers); a healthy run shows 0.
    #[serde(default)]
    pub tx_errors: u64,
    /// Frames for another MAC or IP.
    pub not_for_us: u64,
    /// ARP replies sent.
    pub arp_replies: u64,
    /// Neighbour advertisements sent.
    pub ndp_adverts: u64,
    /// Echo replies sent.
    pub icmp_echo_replies: u64,
    /// Port unreachable sent.
    pub icmp_port_unreachable: u64,
    /// RSTs sent by the adapter.
    pub rst_sent: u64,
    /// Segments handed to processors.
    pub tcp_dispatched: u64,
    /// Connections in the flow table.
    pub flows: u64,
    /// SYNs answered with a SYN cookie (half-open queue full).
    #[serde(default)]
    pub syn_cookies_sent: u64,
    /// Cookie ACKs that opened a connection.
    #[serde(default)]
    pub syn_cookies_accepted: u64,
    /// Frames read from each RX queue of the TAP (one entry unless
    /// `--rx-queues` asked for more): shows how RSS spreads the load.
    #[serde(default)]
    pub rx_queues: Vec<u64>,
    /// Dropped frames by kind.
    pub drops: BTreeMap<String, u64>,
}

/// Trace state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TraceStatus {
    /// True while frames are being traced.
    pub active: bool,
    /// pcapng file being written, if any.
    pub file: Option<String>,
    /// Records written.
    pub records: u64,
    /// Records lost because the writer fell behind.
    pub lost: u64,
    /// The pcapng file rotates after this many MiB (none: never).
    #[serde(default)]
    pub max_mb: Option<u64>,
    /// At most this many pcapng files are kept (none: no limit).
    #[serde(default)]
    pub max_files: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_documented() {
        let cases = [
            (r#"{"cmd":"status"}"#, Request::Status),
            (
                r#"{"cmd":"processor","id":1,"state":"down"}"#,
                Request::Processor {
                    id: 1,
                    state: "down".into(),
                },
            ),
            (
                r#"{"cmd":"filter","mode":"none"}"#,
                Request::Filter {
                    mode: "none".into(),
                },
            ),
            (
                r#"{"cmd":"trace","on":true,"file":"/tmp/x.pcapng"}"#,
                Request::Trace {
                    on: true,
                    file: Some("/tmp/x.pcapng".into()),
                    max_mb: None,
                    max_files: None,
                },
            ),
            (
                r#"{"cmd":"trace","on":true,"file":"/tmp/x.pcapng","max_mb":10,"max_files":2}"#,
                Request::Trace {
                    on: true,
                    file: Some("/tmp/x.pcapng".into()),
                    max_mb: Some(10),
                    max_files: Some(2),
                },
            ),
        ];
        for (text, req) in cases {
            let parsed: Request = serde_json::from_str(text).expect(text);
            assert_eq!(parsed, req);
            assert_eq!(serde_json::to_string(&req).expect("json"), text);
        }
    }

    #[test]
    fn unknown_command_is_an_error() {
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
    }
}
