//! The builder that starts a vnic: opens the TAP, configures the host
//! side, starts the processors, the RX threads, the control socket and
//! the summary line, and hands back a [`Running`] vnic that stops cleanly.
//!
//! `vnic up` is one user of it (src/main.rs turns flags into a
//! [`Builder`]); a program that links vnic is another, with apps of its
//! own behind the emulated processors.

mod links;
mod replay;
mod start;

use crate::running::{Running, RxThread, DEFAULT_DRAIN};
use crate::summary;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use vnic_adapter::direct::{DirectQueue, HandBack};
use vnic_adapter::filter::{Loads, Protocol};
use vnic_adapter::flowmap::FlowMap;
use vnic_adapter::impair::{ImpairSpec, ImpairStats, ImpairedSink, ImpairedSource};
use vnic_adapter::trace::turn::TurnStamp;
use vnic_adapter::trace::{LineMode, Origin, TraceOptions, Tracer, TracingSink};
use vnic_adapter::{
    host, AdapterConfig, AdapterError, Counters, Filter, FilterMode, FrameSink, FrameSource,
    FrameWriter, Pairs, RxQueue, TapDevice, ToProcessor,
};
use vnic_listeners::app::broker::Broker;
use vnic_listeners::app::udp::UdpAppKind;
use vnic_listeners::app::{App, AppContext, Refused, Service};
use vnic_listeners::control::{default_path, ControlServer, Runtime, TraceHandle};
use vnic_listeners::distributor::{backend, Balance, Dispatcher};
use vnic_listeners::processor::{
    AppSource, DistributorLink, HandOff, Inbox, Lifecycle, Migration, Processor, ProcessorSetup,
    RestartPolicy, DEFAULT_MEMORY_BUDGET,
};
use vnic_listeners::stats::Registry;
use vnic_stack::{CongestionAlgorithm, IsnGenerator, SynCookies, TcpConfig};

use crate::config::TcpKnobs;

/// Connections the adapter holds at most, split evenly over the
/// processors: sized so 100,000 connections fit.
const MAX_CONNECTIONS: usize = 131_072;

/// Depth of each processor's queue, in segments.
const QUEUE_DEPTH: usize = 8192;

/// Bytes of buffers each processor's queue holds at most (issue 15: by
/// count alone, 8,192 large segments held in place are half a gigabyte).
/// 32 MiB is 500 full 64 KiB offload segments, several times what the
/// windows of a busy processor's connections put in flight at once.
pub const QUEUE_BYTES: usize = 32 << 20;

/// One queue per processor, at vnic's depth and byte bound: the sending
/// ends (the RX threads' and the other processors') and the inboxes the
/// processors read. A live vnic and a replay build theirs alike.
fn processor_queues(
    n: usize,
) -> std::io::Result<(
    Vec<vnic_adapter::ProcessorQueue>,
    Vec<vnic_listeners::processor::Inbox>,
)> {
    (0..n)
        .map(|_| vnic_listeners::processor::Inbox::new(QUEUE_DEPTH, QUEUE_BYTES))
        .collect::<std::io::Result<Vec<_>>>()
        .map(|v| v.into_iter().unzip())
}

/// The most processors a vnic runs.
pub const MAX_PROCESSORS: usize = 256;

/// The listener model: how connections reach the code that serves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// One listener per processor; the filter spreads connections.
    Monolithic,
    /// One distributor front-end; each request goes to a back-end.
    Distributor {
        /// Number of back-ends.
        backends: usize,
        /// Balancing policy.
        balance: Balance,
    },
    /// NonStop's hybrid model (manual §3-9, "servers inherit the
    /// connections"): processor 0, the distributor, is the only listener;
    /// it accepts each connection and hands it off (a live migration) to
    /// one of the other processors by `balance`, which serves it from then
    /// on, its frames no longer passing through the distributor.
    Hybrid {
        /// How the distributor picks the processor.
        balance: Balance,
    },
    /// NonStop's standard model (manual §3-2, LISTNER): processor 0 is the
    /// only listener; it accepts each connection and starts its server (a
    /// fresh app instance) in the processors in turn, itself included,
    /// which then serves it alone (a live hand-off, as the hybrid model's).
    Standard,
    /// NonStop's broker model: every processor serves each app on a port
    /// of its own (the i-th served port's processor K on `base + i*N + K`);
    /// the served ports are brokers that answer each client with where to
    /// connect (HTTP: a 307 redirect; others: one line `ADDR PORT`), the
    /// processor chosen by `balance` ([`vnic_listeners::app::broker`]).
    Broker {
        /// The first of the processors' own ports.
        base: u16,
        /// How the broker picks the processor.
        balance: Balance,
    },
}

impl Model {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Model::Monolithic => "monolithic",
            Model::Distributor { .. } => "distributor",
            Model::Hybrid { .. } => "hybrid",
            Model::Standard => "standard",
            Model::Broker { .. } => "broker",
        }
    }
}

/// Why a vnic could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The builder was given something that cannot run (no address, no
    /// processor, a port served twice ...).
    #[error("{0}")]
    Config(String),
    /// The adapter could not be set up (no permission for /dev/net/tun, a
    /// busy TAP ...).
    #[error(transparent)]
    Adapter(#[from] vnic_adapter::AdapterError),
    /// A listener registration was refused by the filter's rules.
    #[error("{0}")]
    Filter(#[from] vnic_adapter::filter::FilterError),
    /// A thread could not be started, a socket not bound, a signal
    /// handler not installed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The vnic ran and failed: the TAP went away, or an RX thread died.
    #[error("{0}")]
    Failed(String),
}

/// Listeners placed per processor as NonStop configures them (what a
/// `--config` file with `[[listener]]` entries gives): the filter with
/// every listener registered, and each processor's services.
pub struct Layout {
    /// The filter, listeners registered, addresses set.
    pub filter: Filter,
    /// Per processor: TCP port → service (primaries and backups).
    pub tcp: Vec<HashMap<u16, Arc<dyn Service>>>,
    /// Per processor: UDP port → app.
    pub udp: Vec<HashMap<u16, UdpAppKind>>,
}

/// The packet trace: a pcapng file and/or lines on stderr.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The pcapng file, if any.
    pub pcap: Option<PathBuf>,
    /// Rotate after this many MiB.
    pub pcap_max_mb: Option<u64>,
    /// Keep at most this many rotated files.
    pub pcap_max_files: Option<u32>,
    /// Keep this many bytes of each frame (default: whole frames).
    pub snaplen: Option<u32>,
    /// One line per frame (or per connection event) on stderr.
    pub lines: Option<LineMode>,
    /// A tcpdump filter expression: only the frames it keeps go to the
    /// pcapng file (`--pcap-filter`).
    pub filter: Option<String>,
}

/// The group whose members may use the control socket besides root and
/// vnic's own user (`--control-group`): a name from the group database or
/// a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlGroup {
    /// A group id.
    Id(u32),
    /// A group name, looked up when the vnic starts.
    Name(String),
}

impl ControlGroup {
    /// The group id (a name is looked up in the group database).
    pub fn gid(&self) -> Result<u32, String> {
        match self {
            ControlGroup::Id(g) => Ok(*g),
            ControlGroup::Name(n) => vnic_listeners::control::resolve_group(n),
        }
    }
}

impl From<u32> for ControlGroup {
    fn from(gid: u32) -> ControlGroup {
        ControlGroup::Id(gid)
    }
}

impl From<&str> for ControlGroup {
    fn from(name: &str) -> ControlGroup {
        ControlGroup::Name(name.to_string())
    }
}

impl From<String> for ControlGroup {
    fn from(name: String) -> ControlGroup {
        ControlGroup::Name(name)
    }
}

/// The cores vnic may run on (1 if unknown).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Whether each processor reads its own connections' frames from a TAP
/// queue of its own (`--processor-queues`, see `adapter/src/flowmap.rs`).
///
/// It exists as three values because the faster design needs what not
/// every run has: BPF (root or CAP_BPF) and a TAP that can be multi-queue
/// (one made beforehand must have been made `multi_queue`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProcessorQueues {
    /// On when it can be and pays: at least as many processors as cores
    /// (below that an RX thread has a core of its own, where its reading
    /// and parsing beside the processor is worth more than the hand-off
    /// costs), no `--impair`, BPF allowed, the TAP multi-queue; else off,
    /// saying why in the log (info level) when it could not be.
    #[default]
    Auto,
    /// On, or vnic does not start (one line saying why).
    On,
    /// Off: every frame goes through an RX thread.
    Off,
}

impl ProcessorQueues {
    /// The mode a command-line word names (`auto`, `on`, `off`).
    pub fn from_name(name: &str) -> Option<ProcessorQueues> {
        match name {
            "auto" => Some(ProcessorQueues::Auto),
            "on" => Some(ProcessorQueues::On),
            "off" => Some(ProcessorQueues::Off),
            _ => None,
        }
    }
}

/// Starts a vnic. Every setting has the default `vnic up` has; only the
/// TAP and one virtual IP must be given.
///
/// ```no_run
/// use std::sync::Arc;
/// use vnic::{AppKind, Builder};
///
/// // Needs root (or a TAP made for you) and a free TAP name.
/// let running = Builder::new("vnic0")
///     .ip("10.0.0.2".parse().unwrap(), 24)
///     .host_ip("10.0.0.1".parse().unwrap(), 24)
///     .processors(4)
///     .serve(80, AppKind::Http)
///     .start()?;
/// println!("{}", running.ready_line());
/// running.stop();
/// let drained = running.wait()?;
/// println!("{} connections closed, {} reset", drained.closed, drained.reset);
/// # Ok::<(), vnic::Error>(())
/// ```
pub struct Builder {
    tap: String,
    ips: Vec<(IpAddr, u8)>,
    host_ips: Vec<(IpAddr, u8)>,
    processors: usize,
    rx_queues: usize,
    processor_queues: ProcessorQueues,
    /// The processors read their own queues (set when the TAP opened).
    processor_queues_on: bool,
    filter: FilterMode,
    model: Model,
    serve: Vec<(u16, Arc<dyn Service>)>,
    layout: Option<Layout>,
    mac: Option<[u8; 6]>,
    mtu: Option<usize>,
    time_wait: Duration,
    syn_backlog: usize,
    impair: Option<ImpairSpec>,
    trace: Trace,
    control: Option<PathBuf>,
    control_group: Option<ControlGroup>,
    summary: Option<Duration>,
    offload: bool,
    drain: Duration,
    memory_budget: usize,
    idle_timeout: Option<Duration>,
    zero_window_timeout: Option<Duration>,
    congestion: CongestionAlgorithm,
    port_congestion: HashMap<u16, CongestionAlgorithm>,
    pairs: bool,
    restart: RestartPolicy,
    tcp: TcpKnobs,
    slow: HashMap<usize, Duration>,
    /// The links after the first (`--tap` given more than once).
    more_taps: Vec<String>,
    /// `--failback`.
    failback: bool,
    /// `--link-ip NAME=ADDR`.
    link_ips: Vec<(String, std::net::Ipv4Addr)>,
    /// `vnic up`'s flags, for the replay block ([`Builder::command_line`]).
    command_line: Option<Vec<String>>,
    /// Keys in the replay block ([`Builder::pcap_secrets`]).
    pcap_secrets: bool,
}

/// A service made of a closure (see [`Builder::serve_with`]).
struct FnService<F> {
    name: String,
    make: F,
}

impl<F> Service for FnService<F>
where
    F: Fn(AppContext) -> Box<dyn App> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn open(&self, ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        Ok((self.make)(ctx))
    }
}

impl Builder {
    /// A vnic on TAP `tap` (created when it does not exist, which needs
    /// root), with `vnic up`'s defaults: 4 processors, round-robin
    /// filtering, the monolithic model, offloads on, 60 s TIME-WAIT.
    pub fn new(tap: impl Into<String>) -> Builder {
        Builder {
            tap: tap.into(),
            ips: Vec::new(),
            host_ips: Vec::new(),
            processors: 4,
            rx_queues: 1,
            processor_queues: ProcessorQueues::Auto,
            processor_queues_on: false,
            filter: FilterMode::RoundRobin,
            model: Model::Monolithic,
            serve: Vec::new(),
            layout: None,
            mac: None,
            mtu: None,
            time_wait: Duration::from_secs(60),
            syn_backlog: 256,
            impair: None,
            trace: Trace::default(),
            control: None,
            control_group: None,
            summary: None,
            offload: true,
            drain: DEFAULT_DRAIN,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            idle_timeout: Some(vnic_stack::DEFAULT_IDLE_TIMEOUT),
            zero_window_timeout: Some(vnic_stack::DEFAULT_ZERO_WINDOW_TIMEOUT),
            congestion: CongestionAlgorithm::default(),
            port_congestion: HashMap::new(),
            pairs: false,
            restart: RestartPolicy::default(),
            tcp: TcpKnobs::default(),
            slow: HashMap::new(),
            more_taps: Vec::new(),
            failback: false,
            link_ips: Vec::new(),
            command_line: None,
            pcap_secrets: false,
        }
    }

    /// Answers on `addr` (IPv4 or IPv6; repeatable).
    pub fn ip(mut self, addr: IpAddr, prefix: u8) -> Builder {
        self.ips.push((addr, prefix));
        self
    }

    /// Gives the host side of the TAP this address (vnic adds it and
    /// brings the link up; needs root).
    pub fn host_ip(mut self, addr: IpAddr, prefix: u8) -> Builder {
        self.host_ips.push((addr, prefix));
        self
    }

    /// Emulated processors, 1 to [`MAX_PROCESSORS`].
    pub fn processors(mut self, n: usize) -> Builder {
        self.processors = n;
        self
    }

    /// RX queues of the TAP, each with its adapter thread (receive-side
    /// scaling; above 1 needs root).
    pub fn rx_queues(mut self, n: usize) -> Builder {
        self.rx_queues = n;
        self
    }

    /// Whether every processor gets a TAP queue of its own, where it
    /// reads the frames of its connections itself: no RX thread between,
    /// no hand-off per frame (the RX threads still read everything else
    /// and place new connections; an eBPF map in the TAP's steering
    /// program says which queue each connection's frames go to). See
    /// `adapter/src/flowmap.rs` and [`ProcessorQueues`].
    pub fn processor_queues(mut self, mode: ProcessorQueues) -> Builder {
        self.processor_queues = mode;
        self
    }

    /// How new connections of a shared port are spread.
    pub fn filter(mut self, mode: FilterMode) -> Builder {
        self.filter = mode;
        self
    }

    /// A bench and test aid: processor `k` sleeps `delay` after every
    /// turn of its loop that had work (`--slow-processor K=DURATION`), so
    /// it is slower than the others on purpose and the policies that see
    /// load (least-connections) can be told from those that do not.
    pub fn slow_processor(mut self, k: usize, delay: Duration) -> Builder {
        self.slow.insert(k, delay);
        self
    }

    /// The listener model.
    pub fn model(mut self, model: Model) -> Builder {
        self.model = model;
        self
    }

    /// Serves `service` on TCP `port` on every processor: one value for
    /// all of them, so its limits and counters are the listener's.
    pub fn serve(self, port: u16, service: impl Service + 'static) -> Builder {
        self.serve_shared(port, Arc::new(service))
    }

    /// [`Builder::serve`] with a service already shared.
    pub fn serve_shared(mut self, port: u16, service: Arc<dyn Service>) -> Builder {
        self.serve.push((port, service));
        self
    }

    /// Serves the apps `make` returns on TCP `port`: one call per
    /// connection, with the connection's context.
    pub fn serve_with<F>(self, port: u16, name: &str, make: F) -> Builder
    where
        F: Fn(AppContext) -> Box<dyn App> + Send + Sync + 'static,
    {
        self.serve(
            port,
            FnService {
                name: name.to_string(),
                make,
            },
        )
    }

    /// Listeners placed per processor (instead of [`Builder::serve`]).
    pub fn layout(mut self, layout: Layout) -> Builder {
        self.layout = Some(layout);
        self
    }

    /// The adapter's MAC (default: derived from the TAP name).
    pub fn mac(mut self, mac: [u8; 6]) -> Builder {
        self.mac = Some(mac);
        self
    }

    /// The link MTU (default: the TAP's).
    pub fn mtu(mut self, mtu: usize) -> Builder {
        self.mtu = Some(mtu);
        self
    }

    /// How long a closed connection stays in TIME-WAIT.
    pub fn time_wait(mut self, d: Duration) -> Builder {
        self.time_wait = d;
        self
    }

    /// Half-open connections a processor keeps before SYN cookies.
    pub fn syn_backlog(mut self, n: usize) -> Builder {
        self.syn_backlog = n;
        self
    }

    /// Makes the link bad on purpose (loss, reordering, duplicates, delay).
    pub fn impair(mut self, spec: ImpairSpec) -> Builder {
        self.impair = Some(spec);
        self
    }

    /// Traces frames (pcapng, lines on stderr).
    pub fn trace(mut self, trace: Trace) -> Builder {
        self.trace = trace;
        self
    }

    /// The control socket's path (default: `$XDG_RUNTIME_DIR/vnic-TAP.sock`,
    /// else `/run/vnic/TAP.sock`).
    pub fn control(mut self, path: PathBuf) -> Builder {
        self.control = Some(path);
        self
    }

    /// Lets the members of `group` (a gid or a group name) use the
    /// control socket too: the socket file gets that group and mode 0660
    /// instead of 0600, and callers in that group (primary or
    /// supplementary) are served besides root and vnic's own user.
    pub fn control_group(mut self, group: impl Into<ControlGroup>) -> Builder {
        self.control_group = Some(group.into());
        self
    }

    /// Prints a one-line summary on stderr this often while traffic flows
    /// (default: never).
    pub fn summary(mut self, every: Duration) -> Builder {
        self.summary = Some(every);
        self
    }

    /// TAP offloads (virtio-net header, checksum offload, TSO); default on.
    pub fn offload(mut self, on: bool) -> Builder {
        self.offload = on;
        self
    }

    /// How long a stopping vnic waits for its connections to close with
    /// FIN before it resets the rest (default 5 s; zero resets at once).
    pub fn drain(mut self, d: Duration) -> Builder {
        self.drain = d;
        self
    }

    /// Bytes of memory the connections of all processors may hold
    /// together, split evenly between the processors (default 1 GiB). At
    /// its budget a processor refuses new connections, then resets the
    /// connections whose peers have held a zero window longest
    /// (`listeners/src/processor/memory.rs` states the policy).
    pub fn memory_budget(mut self, bytes: usize) -> Builder {
        self.memory_budget = bytes;
        self
    }

    /// Resets a connection on which nothing moved for this long (default
    /// 10 minutes; None: never).
    pub fn idle_timeout(mut self, limit: Option<Duration>) -> Builder {
        self.idle_timeout = limit;
        self
    }

    /// Resets a connection whose peer kept a zero window, with our data
    /// waiting, for this long, however it answers our probes (default 2
    /// minutes; None: never).
    pub fn zero_window_timeout(mut self, limit: Option<Duration>) -> Builder {
        self.zero_window_timeout = limit;
        self
    }

    /// The congestion control of every connection (default CUBIC; BBR
    /// keeps its rate on a lossy path, NewReno is the textbook one).
    pub fn congestion(mut self, algo: CongestionAlgorithm) -> Builder {
        self.congestion = algo;
        self
    }

    /// The congestion control of the connections of TCP port `port`,
    /// over [`Builder::congestion`] (a config file's `[[listener]]
    /// congestion`).
    pub fn port_congestion(mut self, port: u16, algo: CongestionAlgorithm) -> Builder {
        self.port_congestion.insert(port, algo);
        self
    }

    /// The TCP knobs of every connection (a config file's `[tcp]`: the
    /// maximum RTO, the retransmission count and total time, delayed
    /// ACKs, the send space); default the stack's.
    pub fn tcp(mut self, knobs: TcpKnobs) -> Builder {
        self.tcp = knobs;
        self
    }

    /// Process pairs on every port (`--pairs`): processor K checkpoints
    /// its connections to processor K+1 (mod N), which takes them over
    /// with nothing lost when K fails. A layout's listeners with a
    /// `backup` are paired on their port whether or not this is on.
    pub fn pairs(mut self, on: bool) -> Builder {
        self.pairs = on;
        self
    }

    /// When a failed processor starts again (`--processor-restart`):
    /// after a delay (the default, 1 s) or only when asked (`vnic ctl
    /// processor K restart`).
    pub fn restart(mut self, policy: RestartPolicy) -> Builder {
        self.restart = policy;
        self
    }
}

/// A fresh secret for the ISN hash (RFC 6528 wants it unguessable).
fn random_key() -> [u8; 16] {
    let mut key = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        if f.read_exact(&mut key).is_ok() {
            return key;
        }
    }
    // No /dev/urandom: fall back on the std's randomly keyed hasher.
    use std::hash::{BuildHasher, Hasher};
    for chunk in key.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
    }
    key
}
