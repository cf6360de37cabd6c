//! The control protocol's messages (serde, one JSON object per line).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A request from `vnic status` / `vnic ctl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// The whole status: processors, adapter counters, trace.
    Status,
    /// Take processor `id` down (its connections are reset, or handed to
    /// their backups with process pairs), bring it up, drain it (its
    /// connections move to the other live processors, then it goes down),
    /// crash it, or restart it after a failure.
    Processor {
        /// Processor number.
        id: usize,
        /// "up", "down", "drain", "crash" or "restart".
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
    /// Change the distribution filter: "round-robin", "hash",
    /// "least-connections" or "none"; with a port, that port's own policy
    /// ("default": the port follows the adapter's mode again).
    Filter {
        /// The new mode.
        mode: String,
        /// Only this port (its line's policy), else the adapter's mode.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        /// The port's protocol, "tcp" (the default) or "udp".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<String>,
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
    /// Start a live capture (`vnic capture`): after the `{"ok":true}`
    /// line the connection carries pcapng in length-prefixed chunks, then
    /// a [`CaptureEnd`] line (docs/CONTROL.md, "Live capture").
    Capture {
        /// A tcpdump filter expression (libpcap compiles it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
        /// Only frames whose decision names `cpu=K`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processor: Option<usize>,
    },
    /// The socket table (`vnic status --sockets`): every listener and
    /// every connection, as NonStop's STATUS lists sockets; each filter
    /// left out matches all. Answered with [`Response::sockets`].
    Sockets {
        /// Only this processor's sockets.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processor: Option<usize>,
        /// Only sockets with this local or foreign port.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        /// Only sockets in this state (`listen`, `syn-received`,
        /// `established`, ..., `time-wait`; see [`SocketState`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<String>,
    },
    /// Zeroes every counter of the processors, the adapter, the
    /// back-ends, the services and the link impairment, and sets the
    /// Reset Time (`vnic ctl stats reset`, NonStop's STATS ... RESET).
    /// Gauges (active connections, memory, queue depths) stay.
    StatsReset,
    /// Move one live connection to processor `to` with nothing lost
    /// (`vnic ctl connection move`).
    ConnectionMove {
        /// `ADDR:PORT-ADDR:PORT`, its two ends in either order.
        connection: String,
        /// The processor that takes it.
        to: usize,
    },
    /// Take link (TAP) `name` down, as a failed cable would (another link
    /// takes over), or let it up again (`vnic ctl link NAME down|up`).
    Link {
        /// The link's TAP name.
        name: String,
        /// "up" or "down".
        state: String,
    },
}

impl Request {
    /// Every request's `cmd`, so that the documentation can be checked
    /// against the protocol (a test in `tests/docs.rs` finds each in
    /// docs/CONTROL.md).
    pub const NAMES: &'static [&'static str] = &[
        "status",
        "processor",
        "backend",
        "listener-add",
        "listener-remove",
        "filter",
        "trace",
        "capture",
        "sockets",
        "stats-reset",
        "connection-move",
        "link",
    ];

    /// This request's `cmd`, as it is on the wire. Being exhaustive, it
    /// makes a new request fail to compile until it is named here and in
    /// [`Request::NAMES`].
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Processor { .. } => "processor",
            Request::Backend { .. } => "backend",
            Request::ListenerAdd { .. } => "listener-add",
            Request::ListenerRemove { .. } => "listener-remove",
            Request::Filter { .. } => "filter",
            Request::Trace { .. } => "trace",
            Request::Capture { .. } => "capture",
            Request::Sockets { .. } => "sockets",
            Request::StatsReset => "stats-reset",
            Request::ConnectionMove { .. } => "connection-move",
            Request::Link { .. } => "link",
        }
    }
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
    /// The socket table, for `sockets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets: Option<SocketTable>,
}

impl Response {
    /// A bare success.
    pub fn ok() -> Response {
        Response {
            ok: true,
            error: None,
            status: None,
            notes: Vec::new(),
            sockets: None,
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
            sockets: None,
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
    /// When the counters were last zeroed (`vnic ctl stats reset`), else
    /// when vnic started: RFC 3339, UTC (NonStop's Reset Time).
    #[serde(default)]
    pub reset_time: String,
    /// When this status was taken: RFC 3339, UTC (NonStop's Sample Time).
    #[serde(default)]
    pub sample_time: String,
    /// Seconds from the Reset Time to the Sample Time, on a clock that
    /// never jumps: the span the counters cover.
    #[serde(default)]
    pub since_reset_secs: f64,
    /// One entry per processor.
    pub processors: Vec<ProcessorStatus>,
    /// Every listener with its processor, backup, key (masked), bound
    /// address and state.
    #[serde(default)]
    pub listeners: Vec<ListenerStatus>,
    /// The ports whose policy differs from `filter` (a config file's
    /// per-port `filter`, `vnic ctl filter MODE --port PORT`).
    #[serde(default)]
    pub port_filters: Vec<PortFilter>,
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
    /// The link impairment's counters (`vnic up --impair`; absent
    /// without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impair: Option<ImpairStatus>,
    /// The process pairs (`--pairs`, listeners with a backup), each with
    /// its checkpoint traffic, lag and takeovers; empty without pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<PairStatus>,
    /// The TCP settings the connections run with (a config file's
    /// `[tcp]`, else the defaults); absent from a vnic older than them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpStatus>,
    /// The links, with several TAPs (Ethernet failover); absent with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<crate::control::LinksReport>,
}

/// One process pair in `vnic status`: a primary processor (on one port,
/// or on every port) and the backup that keeps its checkpoints. The
/// counters are the primary's (what it sent) and the backup's (what it
/// holds, how far behind, what it took over), as their processors count
/// them for all their pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairStatus {
    /// The primary processor.
    pub primary: usize,
    /// The port, or None for every port (`--pairs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The backup processor.
    pub backup: usize,
    /// Checkpoints the primary sent.
    pub checkpoints: u64,
    /// Bytes they carried.
    pub checkpoint_bytes: u64,
    /// Connections the backup holds copies of now.
    pub standby: u64,
    /// Age of the last checkpoint the backup applied, in µs.
    pub lag_us: u64,
    /// The largest such age, in µs.
    pub max_lag_us: u64,
    /// Connections the backup took over from a failed primary.
    pub takeovers: u64,
    /// Of those, the ones reset (an app without checkpoint).
    pub takeover_resets: u64,
    /// Resyncs the backup got since it restarted after a failure (one
    /// per primary and restart).
    #[serde(default)]
    pub resyncs: u64,
    /// Connections the primary checkpointed in full in those resyncs.
    #[serde(default)]
    pub resync_checkpoints: u64,
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
    /// The TCP ports it serves: its own listeners' (from the start or
    /// added at run time) and those it holds as a backup.
    pub ports: Vec<u16>,
    /// The UDP ports it serves, likewise.
    #[serde(default)]
    pub udp_ports: Vec<u16>,
    /// Connections it holds now.
    pub active: u64,
    /// Of those, in TIME-WAIT.
    #[serde(default)]
    pub time_wait: u64,
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
    /// Bytes of buffers waiting in its queue now.
    #[serde(default)]
    pub queue_bytes: u64,
    /// Segments and datagrams dropped because its queue held its bound in
    /// bytes.
    #[serde(default)]
    pub queue_bytes_drops: u64,
    /// Bytes of memory its connections hold now (TCP state, buffers as
    /// allocated, their apps' buffers).
    #[serde(default)]
    pub memory: u64,
    /// Its memory budget in bytes (`--memory-budget` split evenly).
    #[serde(default)]
    pub memory_budget: u64,
    /// SYNs refused because its connections held their memory budget.
    #[serde(default)]
    pub memory_refused: u64,
    /// Connections reset to bring its memory back under the budget.
    #[serde(default)]
    pub memory_resets: u64,
    /// Connections reset after the idle limit (`--idle-timeout`).
    #[serde(default)]
    pub idle_resets: u64,
    /// Connections reset after the zero-window limit (`--zero-window-timeout`).
    #[serde(default)]
    pub zero_window_resets: u64,
    /// TCP segments and UDP datagrams it took from its queue (for the
    /// frames/s of `vnic status --watch`).
    #[serde(default)]
    pub frames_in: u64,
    /// Frames it wrote to the TAP (a TSO frame counts once).
    #[serde(default)]
    pub frames_out: u64,
    /// Connections that moved in from other processors (live migration,
    /// drain, the hybrid model's hand-off).
    #[serde(default)]
    pub moved_in: u64,
    /// Connections it moved to other processors.
    #[serde(default)]
    pub moved_out: u64,
    /// Connections reset where they would have moved (their app has no
    /// checkpoint).
    #[serde(default)]
    pub migration_resets: u64,
    /// Segments of connections it had moved away that still reached it
    /// and that it forwarded to their new processor.
    #[serde(default)]
    pub forwarded: u64,
    /// Their payload bytes.
    #[serde(default)]
    pub forwarded_bytes: u64,
    /// Segments it could not forward (the new processor's queue was full).
    #[serde(default)]
    pub forward_drops: u64,
    /// The hybrid model's distributor: connections it served itself
    /// because no other processor could take them.
    #[serde(default)]
    pub hand_off_local: u64,
    /// Checkpoints it sent its backups (process pairs).
    #[serde(default)]
    pub checkpoints: u64,
    /// Bytes they carried.
    #[serde(default)]
    pub checkpoint_bytes: u64,
    /// Times it waited for room in a backup's checkpoint queue.
    #[serde(default)]
    pub checkpoint_waits: u64,
    /// Checkpoints it got that did not follow its copy (a connection left unprotected).
    #[serde(default)]
    pub checkpoint_gaps: u64,
    /// As a backup: age of the last checkpoint it applied, in µs.
    #[serde(default)]
    pub checkpoint_lag_us: u64,
    /// As a backup: the largest such age, in µs.
    #[serde(default)]
    pub checkpoint_lag_max_us: u64,
    /// As a backup: connections it holds copies of now.
    #[serde(default)]
    pub standby: u64,
    /// As a backup: connections it took over from a failed primary.
    #[serde(default)]
    pub takeovers: u64,
    /// Of those, the ones it reset (an app without checkpoint).
    #[serde(default)]
    pub takeover_resets: u64,
    /// Times it was started again after a failure (`--processor-restart`,
    /// `vnic ctl processor K restart`).
    #[serde(default)]
    pub restarts: u64,
    /// While failed: when it starts again, or why it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// As a backup: resyncs its primaries sent it after its restarts.
    #[serde(default)]
    pub resyncs: u64,
    /// As a primary: connections it checkpointed in full to a restarted
    /// backup.
    #[serde(default)]
    pub resync_checkpoints: u64,
    /// Connections it handed to their backups when taken down (process
    /// pairs).
    #[serde(default)]
    pub handed_over: u64,
}

/// A port with a placement policy of its own, in `vnic status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortFilter {
    /// "tcp" or "udp".
    pub protocol: String,
    /// The port.
    pub port: u16,
    /// Its policy ("hash", ...).
    pub filter: String,
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
    /// True with `--processor-queues`: each processor reads its own TAP
    /// queue (the last entries of `rx_queues`, one per processor).
    #[serde(default)]
    pub processor_queues: bool,
    /// Connections the TAP's steering program sends to their processor's
    /// own queue now (entries of the kernel's flow map).
    #[serde(default)]
    pub steered_flows: u64,
    /// Frames processors read from their own queue and handed back to an
    /// RX thread to decide on (not their connection's, or a trace runs).
    #[serde(default)]
    pub handed_back: u64,
    /// Frames a processor could not hand back (the channel was full).
    #[serde(default)]
    pub handed_back_drops: u64,
    /// Dropped frames by kind.
    pub drops: BTreeMap<String, u64>,
}

/// Trace state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
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
    /// The pcapng files' tcpdump filter (`--pcap-filter`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The live captures running now.
    #[serde(default)]
    pub captures: Vec<CaptureStatus>,
}

// ------------------------------------------------------------ live capture

/// One live capture (`vnic capture`), as `vnic status` lists it and as
/// the line that ends its stream reports it: so a capture that lost
/// frames says so, to its client and to the operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureStatus {
    /// Its number in this vnic's life, from 1.
    pub id: u64,
    /// Its tcpdump filter, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The processor it keeps (`cpu=K`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor: Option<usize>,
    /// Frames it kept and queued for its client.
    pub frames: u64,
    /// pcapng bytes handed to its client's connection.
    pub bytes: u64,
    /// Frames it kept but dropped because its client did not read fast
    /// enough.
    pub lost: u64,
    /// Frames vnic's trace queue dropped (before any filter) while it
    /// ran; they may or may not have matched.
    pub trace_lost: u64,
    /// Seconds it has run.
    pub secs: f64,
}

/// The last line of a capture stream, after the zero-length chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureEnd {
    /// True: the stream ended as it should (false: it was cut short,
    /// `error` says why).
    pub ok: bool,
    /// Why it ended: "vnic stopped" or "client stopped".
    pub reason: String,
    /// What the capture did.
    pub capture: CaptureStatus,
    /// What went wrong, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The link impairment's counters, both directions together, so a user
/// who asked for loss can see how much there was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpairStatus {
    /// What `--impair` asked for (`loss=5%,reorder=0%,...`).
    pub spec: String,
    /// Frames dropped.
    pub lost: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Frames held back to be overtaken.
    pub reordered: u64,
}

/// The TCP settings in force, in `vnic status` (NonStop shows a
/// monitor's the same way): what a connection whose peer vanished will go
/// through before it is reset, and how it acknowledges and buffers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpStatus {
    /// Longest retransmission timeout, backoff included, in ms.
    pub max_rto_ms: u64,
    /// Retransmissions of a segment before the connection is reset.
    pub max_retransmissions: u32,
    /// Reset after retransmitting this long without progress, in ms
    /// (None: no time limit, only the count).
    pub total_retransmission_time_ms: Option<u64>,
    /// Delayed ACKs on (false: every segment acknowledged at once).
    pub delayed_ack: bool,
    /// Longest wait of a delayed ACK, in ms (0 when they are off).
    pub delayed_ack_time_ms: u64,
    /// Bytes an app may queue to send on one connection.
    pub send_space: u64,
}

impl TcpStatus {
    /// The settings of `cfg`, the processors' default connection config.
    pub fn of(cfg: &vnic_stack::TcpConfig) -> TcpStatus {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        TcpStatus {
            max_rto_ms: ms(cfg.rto_max),
            max_retransmissions: cfg.max_retransmissions,
            total_retransmission_time_ms: cfg.total_retransmission_time.map(ms),
            delayed_ack: !cfg.delayed_ack.is_zero(),
            delayed_ack_time_ms: ms(cfg.delayed_ack),
            send_space: cfg.send_buffer as u64,
        }
    }
}

// ----- the socket table (`vnic status --sockets`) -------------------------

/// The answer to `sockets`: one row per listener and connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketTable {
    /// When the rows were taken: RFC 3339, UTC.
    pub sample_time: String,
    /// Milliseconds the processors took to list their connections, from
    /// the request to the last row (the rows of one processor are taken
    /// in bounded steps between its other work, so this is not a pause).
    pub collect_ms: f64,
    /// The rows: by processor, listeners first, then connections in the
    /// order they were accepted.
    pub rows: Vec<SocketRow>,
    /// Processors asked whose connections are not listed: failed, or too
    /// slow to answer (each also has a line in the response's notes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<usize>,
}

/// One socket: a listener or a connection, with a connection's TCP
/// figures as `ss -ti` shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketRow {
    /// "tcp" or "udp".
    pub proto: String,
    /// RFC 9293's name: `LISTEN`, `SYN-RECEIVED`, `ESTABLISHED`, ...,
    /// `TIME-WAIT`; `UNCONN` for a UDP listener.
    pub state: String,
    /// Local address; `*` for a listener on every virtual IP.
    pub laddr: String,
    /// Local port.
    pub lport: u16,
    /// Foreign address; `*` for a listener.
    pub faddr: String,
    /// Foreign port; none for a listener.
    pub fport: Option<u16>,
    /// Bytes queued to send and not yet acknowledged.
    pub send_q: u64,
    /// Bytes received in order and not yet read by the app.
    pub recv_q: u64,
    /// The processor that holds it.
    pub processor: usize,
    /// The connection's number (`connection=N` of the http app and the
    /// traces); none for a listener.
    #[serde(default)]
    pub connection: Option<u64>,
    /// Congestion window, bytes.
    #[serde(default)]
    pub cwnd: Option<u64>,
    /// Congestion control: `cubic`, `newreno` or `bbr` (as `ss -i` names
    /// it).
    #[serde(default)]
    pub cc: Option<String>,
    /// Smoothed round-trip time, milliseconds (none before the first
    /// measurement).
    #[serde(default)]
    pub srtt_ms: Option<f64>,
    /// Retransmission timeout, milliseconds (backoff included).
    #[serde(default)]
    pub rto_ms: Option<f64>,
    /// Segments sent again (timeouts, fast retransmit, SACK recovery).
    #[serde(default)]
    pub retransmits: Option<u64>,
    /// Payload bytes received in order.
    #[serde(default)]
    pub bytes_in: Option<u64>,
    /// Payload bytes sent (first transmissions).
    #[serde(default)]
    pub bytes_out: Option<u64>,
}

/// A state `sockets` can select, by the name a user types
/// (`--state established`); it exists so that the client and the server
/// accept and refuse the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketState {
    /// A TCP listener.
    Listen,
    /// A UDP listener.
    Unconn,
    /// A connection in this TCP state.
    Tcp(vnic_stack::State),
}

impl SocketState {
    /// Every selectable state with its name, in RFC 9293's order.
    pub const ALL: [(&'static str, SocketState); 11] = [
        ("listen", SocketState::Listen),
        ("syn-sent", SocketState::Tcp(vnic_stack::State::SynSent)),
        (
            "syn-received",
            SocketState::Tcp(vnic_stack::State::SynReceived),
        ),
        (
            "established",
            SocketState::Tcp(vnic_stack::State::Established),
        ),
        ("fin-wait-1", SocketState::Tcp(vnic_stack::State::FinWait1)),
        ("fin-wait-2", SocketState::Tcp(vnic_stack::State::FinWait2)),
        ("close-wait", SocketState::Tcp(vnic_stack::State::CloseWait)),
        ("closing", SocketState::Tcp(vnic_stack::State::Closing)),
        ("last-ack", SocketState::Tcp(vnic_stack::State::LastAck)),
        ("time-wait", SocketState::Tcp(vnic_stack::State::TimeWait)),
        ("unconn", SocketState::Unconn),
    ];

    /// The state a user named: any case, `_` for `-`, and `syn-recv` as
    /// `ss` spells it; or a one-line error listing the names.
    pub fn parse(name: &str) -> Result<SocketState, String> {
        let norm = name.trim().to_ascii_lowercase().replace('_', "-");
        let norm = if norm == "syn-recv" {
            "syn-received".to_string()
        } else {
            norm
        };
        SocketState::ALL
            .iter()
            .find(|(n, _)| *n == norm)
            .map(|(_, s)| *s)
            .ok_or_else(|| {
                let names: Vec<&str> = SocketState::ALL.iter().map(|(n, _)| *n).collect();
                format!("unknown state {name:?}: use {}", names.join(", "))
            })
    }

    /// The name rows carry (`ESTABLISHED`, `TIME-WAIT`, `LISTEN`).
    pub fn label(self) -> &'static str {
        use vnic_stack::State as S;
        match self {
            SocketState::Listen => "LISTEN",
            SocketState::Unconn => "UNCONN",
            SocketState::Tcp(s) => match s {
                S::SynSent => "SYN-SENT",
                S::SynReceived => "SYN-RECEIVED",
                S::Established => "ESTABLISHED",
                S::FinWait1 => "FIN-WAIT-1",
                S::FinWait2 => "FIN-WAIT-2",
                S::CloseWait => "CLOSE-WAIT",
                S::Closing => "CLOSING",
                S::LastAck => "LAST-ACK",
                S::TimeWait => "TIME-WAIT",
                S::Closed => "CLOSED",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request names itself as serde writes it, and is in NAMES.
    #[test]
    fn names_are_the_wire_names() {
        let all = [
            Request::Status,
            Request::Processor {
                id: 0,
                state: "up".into(),
            },
            Request::Backend {
                id: 0,
                state: "up".into(),
            },
            Request::ListenerAdd {
                protocol: "tcp".into(),
                port: 1,
                processor: 0,
                app: "echo".into(),
                backup: None,
                address: None,
                key: None,
            },
            Request::ListenerRemove {
                protocol: "tcp".into(),
                port: 1,
                processor: 0,
            },
            Request::Filter {
                mode: "none".into(),
                port: None,
                protocol: None,
            },
            Request::Trace {
                on: false,
                file: None,
                max_mb: None,
                max_files: None,
            },
            Request::Capture {
                filter: None,
                processor: None,
            },
            Request::Sockets {
                processor: None,
                port: None,
                state: None,
            },
            Request::StatsReset,
            Request::ConnectionMove {
                connection: "10.0.0.1:1-10.0.0.2:80".into(),
                to: 1,
            },
            Request::Link {
                name: "vnicA".into(),
                state: "down".into(),
            },
        ];
        assert_eq!(all.len(), Request::NAMES.len());
        for r in all {
            let v = serde_json::to_value(&r).expect("serialize");
            assert_eq!(v["cmd"].as_str(), Some(r.name()));
            assert!(Request::NAMES.contains(&r.name()));
        }
    }

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
                    port: None,
                    protocol: None,
                },
            ),
            (
                r#"{"cmd":"filter","mode":"hash","port":80,"protocol":"tcp"}"#,
                Request::Filter {
                    mode: "hash".into(),
                    port: Some(80),
                    protocol: Some("tcp".into()),
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
                r#"{"cmd":"capture","filter":"tcp port 80","processor":1}"#,
                Request::Capture {
                    filter: Some("tcp port 80".into()),
                    processor: Some(1),
                },
            ),
            (
                r#"{"cmd":"capture"}"#,
                Request::Capture {
                    filter: None,
                    processor: None,
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
            (
                r#"{"cmd":"sockets"}"#,
                Request::Sockets {
                    processor: None,
                    port: None,
                    state: None,
                },
            ),
            (
                r#"{"cmd":"sockets","processor":2,"port":80,"state":"time-wait"}"#,
                Request::Sockets {
                    processor: Some(2),
                    port: Some(80),
                    state: Some("time-wait".into()),
                },
            ),
            (r#"{"cmd":"stats-reset"}"#, Request::StatsReset),
        ];
        for (text, req) in cases {
            let parsed: Request = serde_json::from_str(text).expect(text);
            assert_eq!(parsed, req);
            assert_eq!(serde_json::to_string(&req).expect("json"), text);
        }
    }

    #[test]
    fn state_names_parse_as_users_type_them() {
        use vnic_stack::State;
        for (name, want) in [
            ("established", SocketState::Tcp(State::Established)),
            ("ESTABLISHED", SocketState::Tcp(State::Established)),
            ("time_wait", SocketState::Tcp(State::TimeWait)),
            ("syn-recv", SocketState::Tcp(State::SynReceived)),
            ("SYN_RECV", SocketState::Tcp(State::SynReceived)),
            ("listen", SocketState::Listen),
        ] {
            assert_eq!(SocketState::parse(name), Ok(want), "{name}");
        }
        let e = SocketState::parse("open").expect_err("unknown");
        assert!(
            e.starts_with("unknown state \"open\": use listen, syn-sent"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        for (name, s) in SocketState::ALL {
            assert_eq!(s.label().to_ascii_lowercase(), name);
        }
    }

    #[test]
    fn an_old_status_without_the_new_fields_still_reads() {
        // What a vnic from before the Reset Time and frame counts sends.
        let old = r#"{"tap":"t","model":"monolithic","filter":"none","uptime_secs":1.0,
            "processors":[{"id":0,"state":"up","ports":[],"active":0,"accepted":1,
            "bytes_in":0,"bytes_out":0,"queue_depth":0,"queue_drops":0,"retransmissions":0}],
            "adapter":{"frames_in":0,"frames_out":0,"not_for_us":0,"arp_replies":0,
            "ndp_adverts":0,"icmp_echo_replies":0,"icmp_port_unreachable":0,"rst_sent":0,
            "tcp_dispatched":0,"flows":0,"drops":{}},
            "trace":{"active":false,"file":null,"records":0,"lost":0}}"#;
        let st: Status = serde_json::from_str(old).expect("old status");
        assert_eq!(
            (st.reset_time.as_str(), st.processors[0].frames_in),
            ("", 0)
        );
        assert!(st.impair.is_none());
        let resp: Response = serde_json::from_str(r#"{"ok":true}"#).expect("old answer");
        assert!(resp.sockets.is_none());
    }

    #[test]
    fn unknown_command_is_an_error() {
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
    }
}
