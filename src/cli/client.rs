//! The flags of the control socket's clients: `vnic status`, `vnic ctl`
//! and `vnic capture` (what they ask a running vnic; `ctl.rs`, `watch.rs`
//! and `capture.rs` carry them out).

use super::*;

/// Where the control socket is: `--control PATH`, or the default for `--tap NAME`.
#[derive(Args, Debug, Clone)]
pub struct ControlArgs {
    /// Control socket of the vnic to talk to.
    #[arg(long, value_name = "PATH", global = true)]
    pub control: Option<PathBuf>,
    /// TAP of the vnic to talk to (its default control socket).
    #[arg(long, value_name = "NAME", global = true)]
    pub tap: Option<String>,
}

/// Flags of `vnic status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Which vnic.
    #[command(flatten)]
    pub control: ControlArgs,
    /// Print the raw JSON (with --watch: one JSON object per line).
    #[arg(long)]
    pub json: bool,
    /// Refresh every --interval until interrupted, with rates
    /// (connections/s, frames/s, bytes/s) beside the totals.
    #[arg(long)]
    pub watch: bool,
    /// How often --watch refreshes (default 1s, at least 100ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "watch")]
    pub interval: Option<Duration>,
    /// The socket table instead: every listener and connection (also
    /// SYN-RECEIVED and TIME-WAIT) with its processor, queues, cwnd, cc,
    /// srtt, rto and retransmissions.
    #[arg(long)]
    pub sockets: bool,
    /// With --sockets: only processor K's sockets.
    #[arg(long, value_name = "K", requires = "sockets")]
    pub processor: Option<usize>,
    /// With --sockets: only sockets whose local or foreign port is P.
    #[arg(long, value_name = "P", requires = "sockets")]
    pub port: Option<String>,
    /// With --sockets: only sockets in STATE (listen, syn-received,
    /// established, fin-wait-1, fin-wait-2, close-wait, closing, last-ack,
    /// time-wait, unconn).
    #[arg(long, value_name = "STATE", requires = "sockets")]
    pub state: Option<String>,
}

/// Flags of `vnic ctl`.
#[derive(Args, Debug)]
pub struct CtlArgs {
    /// Which vnic.
    #[command(flatten)]
    pub control: ControlArgs,
    /// What to change.
    #[command(subcommand)]
    pub what: CtlCommand,
}

/// Flags of `vnic capture`: which vnic, where the pcapng goes, and
/// which frames (tcpdump's filter language, a processor).
#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// Which vnic.
    #[command(flatten)]
    pub control: ControlArgs,
    /// Write pcapng to FILE (replaced), or to stdout with `-` (the
    /// default when stdout is not a terminal).
    #[arg(short = 'w', value_name = "FILE|-")]
    pub write: Option<PathBuf>,
    /// Only frames whose decision names processor K (`cpu=K`): the ones
    /// it received and the ones it sent.
    #[arg(long, value_name = "K")]
    pub processor: Option<usize>,
    /// A tcpdump filter expression, e.g. `tcp port 80 and host
    /// 10.0.0.1` (several words are joined with spaces, as tcpdump does;
    /// after `--` a word may start with `-`).
    #[arg(value_name = "FILTER")]
    pub filter: Vec<String>,
}

/// `vnic ctl connection ...`.
#[derive(Subcommand, Debug)]
pub enum ConnectionOp {
    /// Move a connection: `vnic ctl connection move 10.0.0.1:40000-10.0.0.2:80 --to 2`.
    Move {
        /// ADDR:PORT-ADDR:PORT, its two ends in either order
        /// ([ADDR]:PORT for IPv6), as `vnic status --sockets` shows them.
        connection: String,
        /// The processor that takes it.
        #[arg(long)]
        to: usize,
    },
}

/// The things `vnic ctl` steers.
#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Take a processor down (its connections are reset, or with process
    /// pairs handed to their backups), bring it back (it rejoins at its
    /// place in line), crash it (its thread dies as a bug would kill it:
    /// vnic notices, takes it out of the rotation, resets its connections
    /// or has its backups take them over, and restarts it after
    /// --processor-restart), or restart a failed one.
    Processor {
        /// Processor number.
        id: usize,
        /// up, down, drain (move every connection to the other live
        /// processors with nothing lost, then down: planned maintenance),
        /// crash, or restart (a failed processor starts again).
        #[arg(value_parser = ["up", "down", "drain", "crash", "restart"])]
        state: String,
    },
    /// Move one live connection to another processor with nothing lost
    /// (its TCP state and its app's checkpoint go; an app without one is
    /// reset).
    Connection {
        /// move.
        #[command(subcommand)]
        op: ConnectionOp,
    },
    /// Change the distribution filter at run time: the adapter's mode, or
    /// with --port one port's own policy.
    Filter {
        /// round-robin, hash, least-connections or none; with --port also
        /// default (the port follows the adapter's mode again).
        #[arg(value_parser = ["round-robin", "hash", "least-connections", "none", "default"])]
        mode: String,
        /// Only this port's policy (its listeners' line).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: Option<u16>,
        /// The port's protocol (with --port).
        #[arg(long, value_parser = ["tcp", "udp"], requires = "port")]
        protocol: Option<String>,
    },
    /// Take a back-end down (the request it is running finishes there, the
    /// ones queued for it go to the others) or bring it back (distributor
    /// model).
    Backend {
        /// Back-end number.
        id: usize,
        /// up or down.
        #[arg(value_parser = ["up", "down"])]
        state: String,
    },
    /// Add or remove a listener at run time (same rules as at start-up).
    Listener {
        /// add or remove.
        #[command(subcommand)]
        op: ListenerOp,
    },
    /// Take a link (one of vnic up's --tap links) down as a failed cable
    /// would (another link takes over and announces the addresses), or
    /// let it up again (it stands by, or takes back over with --failback).
    Link {
        /// The link's TAP name.
        name: String,
        /// up or down.
        #[arg(value_parser = ["up", "down"])]
        state: String,
    },
    /// Zero the counters of the processors, adapter, back-ends, services
    /// and impairment (gauges such as active connections and memory
    /// stay); `vnic status` shows the new Reset Time.
    Stats {
        /// reset.
        #[arg(value_parser = ["reset"])]
        action: String,
    },
    /// Turn tracing on (to a pcapng FILE, or trace lines on stderr) or off.
    /// FILE is taken from this command's working directory; it is never
    /// opened through a symbolic link, is created 0600, and an existing
    /// file is replaced only if it is a pcapng. It rotates at --max-mb and
    /// keeps --max-files files (defaults: vnic up's --pcap-max-mb and
    /// --pcap-max-files, else 1024 MiB and 4 files).
    Trace {
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// pcapng file to write.
        file: Option<PathBuf>,
        /// Start a new file after this many MiB.
        #[arg(long, value_name = "N", requires = "file",
              value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        max_mb: Option<u64>,
        /// Keep at most N files (a ring, like tcpdump -W).
        #[arg(long, value_name = "N", requires = "file",
              value_parser = clap::value_parser!(u32).range(1..=100_000))]
        max_files: Option<u32>,
    },
}

/// `vnic ctl listener add|remove`.
#[derive(Subcommand, Debug)]
pub enum ListenerOp {
    /// Register a listener.
    Add {
        /// Port.
        #[arg(long)]
        port: u16,
        /// Processor it listens in.
        #[arg(long)]
        processor: usize,
        /// App: echo, discard, chargen, http (tcp) or udp-echo (udp).
        #[arg(long)]
        app: String,
        /// tcp or udp.
        #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp"])]
        protocol: String,
        /// Backup processor.
        #[arg(long)]
        backup: Option<usize>,
        /// Bound address (only this address's traffic).
        #[arg(long)]
        address: Option<String>,
        /// Filter key (up to 8 alphanumerics, first a letter).
        #[arg(long)]
        key: Option<String>,
    },
    /// Remove the listener of a port in a processor.
    Remove {
        /// Port.
        #[arg(long)]
        port: u16,
        /// Processor.
        #[arg(long)]
        processor: usize,
        /// tcp or udp.
        #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp"])]
        protocol: String,
    },
}
