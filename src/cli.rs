//! Flags, and the checked plan they turn into. Every mistake in a flag is
//! one clear line (exit status 2), never a panic.

use clap::{Args, Parser, Subcommand};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vnic::config::{self, parse_cidr, Overrides, ResolvedConfig, ServeApp, TcpKnobs};
use vnic::{
    Builder, CongestionAlgorithm, Layout, LineMode, Model, ProcessorQueues, Trace, UdpAppKind,
};
use vnic_adapter::impair::ImpairSpec;
use vnic_adapter::FilterMode;
use vnic_listeners::app::exec::{self, ExecOptions, ExecService};
use vnic_listeners::app::proxy::{self, ProxyOptions, ProxyProtocol, ProxyService};
use vnic_listeners::app::{AppKind, Service};
use vnic_listeners::distributor::Balance;
use vnic_listeners::processor::RestartPolicy;

mod client;
mod parse;
mod replay;
pub use client::*;
pub use parse::*;
pub use replay::*;

/// vnic: a multi-processor network adapter emulated in user space on a TAP.
#[derive(Parser, Debug)]
#[command(name = "vnic", version, about)]
pub struct Cli {
    /// More log: -v adds debug events, -vv everything (RUST_LOG, e.g.
    /// RUST_LOG=vnic_listeners=debug, overrides both).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub cmd: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Attach to a TAP and serve the virtual IPs until SIGINT/SIGTERM.
    Up(Box<UpArgs>),
    /// Show a running vnic: per-processor table and adapter counters.
    Status(StatusArgs),
    /// Steer a running vnic.
    Ctl(CtlArgs),
    /// Print a shell completion script: `vnic completions bash >
    /// /etc/bash_completion.d/vnic` (or zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): `vnic man > vnic.1` for the command,
    /// `vnic man up > vnic-up.1` for a subcommand's flags (as git's
    /// pages are one per command); `man ./vnic-up.1` shows it.
    Man {
        /// up, status, ctl, completions (default: vnic itself).
        subcommand: Option<String>,
    },
    /// Stream pcapng from a running vnic, each frame with the adapter's
    /// decision as its comment: `vnic capture -w - | wireshark -k -i -`.
    Capture(CaptureArgs),
    /// Run a trace (`vnic up --pcap FILE`) again through the same adapter,
    /// filter, processors and TCP on a virtual clock, and compare what
    /// vnic sends with the trace: exit 0 when identical, 1 on divergence.
    Replay(ReplayArgs),
}

/// Flags of `vnic up`.
#[derive(Args, Debug)]
pub struct UpArgs {
    /// Read the adapter, filter and listeners from this TOML file (see
    /// examples/); flags given as well override the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// TAP device to attach to (created if it does not exist; creating
    /// needs root). Give it again for more links (Ethernet failover): the
    /// first is active, the others stand by and take over when it fails.
    #[arg(long, value_name = "NAME")]
    pub tap: Vec<String>,
    /// With several --tap links: when the first link returns after a
    /// failure it becomes active again (default: it stands by).
    #[arg(long)]
    pub failback: bool,
    /// A link's reserved IPv4 address (repeatable, one per link): answered
    /// on that link only, and the source of vnic's ARP announcement there.
    #[arg(long, value_name = "NAME=ADDR", value_parser = parse_link_ip)]
    pub link_ip: Vec<(String, std::net::Ipv4Addr)>,
    /// Virtual IP the adapter answers on (repeatable; IPv4 and IPv6).
    #[arg(long = "ip", value_name = "ADDR/PREFIX", value_parser = parse_cidr)]
    pub ips: Vec<(IpAddr, u8)>,
    /// Address for the host side of the TAP; vnic adds it and brings the link up (repeatable).
    #[arg(long = "host-ip", value_name = "ADDR/PREFIX", value_parser = parse_cidr)]
    pub host_ips: Vec<(IpAddr, u8)>,
    /// Number of emulated processors (threads), 1 to 256 (default 4; in
    /// the distributor model, the front-ends: default 1, several share
    /// each port under the filter).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub processors: Option<u16>,
    /// RX queues of the TAP, 1 to 16 (default 1), each read by its own
    /// adapter thread, like a multi-queue NIC with receive-side scaling:
    /// connections are spread over the queues by a hash of their addresses
    /// and ports. Above 1 the TAP is multi-queue and needs BPF (root).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=16))]
    pub rx_queues: u16,
    /// Give every processor a TAP queue of its own, where it reads the
    /// frames of its connections itself, with no RX thread between (an
    /// eBPF flow map in the TAP's steering program; new connections and
    /// everything else still go through the RX threads). auto (default):
    /// on with at least as many processors as cores, when BPF is allowed,
    /// the TAP can be multi-queue and there is no --impair or --pcap (a
    /// trace should replay); on: or do not start; off: never.
    #[arg(long, value_name = "auto|on|off", default_value = "auto",
          value_parser = ["auto", "on", "off"])]
    pub processor_queues: String,
    /// Listener model: monolithic (one listener per processor, round-robin
    /// filtering), standard (processor 0 alone listens and starts each
    /// connection's server in the processors in turn, LISTNER-style),
    /// distributor (front-ends, --processors of them, forwarding
    /// requests to one pool of back-ends), hybrid (processor 0 accepts each connection and hands
    /// it to one of the other processors by --balance, which then serves
    /// it directly: NonStop's "servers inherit the connections") or
    /// broker (each processor serves on a port of its own; the served
    /// ports tell each client where to connect, by --balance).
    #[arg(long, default_value = "monolithic",
          value_parser = ["monolithic", "standard", "distributor", "hybrid", "broker"])]
    pub model: String,
    /// Broker model: the first of the processors' own ports (default
    /// 8000): the i-th served port's processor K serves it on
    /// BASE + i*N + K, and the served port answers each client with where
    /// to go (HTTP: a 307 redirect; others: one line ADDR PORT).
    #[arg(long, value_name = "BASE")]
    pub broker_ports: Option<u16>,
    /// Back-end server instances of the distributor model, 1 to 256 (default 4).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub backends: Option<u16>,
    /// How the distributor picks a back-end per request, or the hybrid
    /// model's distributor a processor per connection: round-robin or
    /// least-busy (default: round-robin for the distributor, least-busy
    /// for hybrid).
    #[arg(long, value_parser = ["round-robin", "least-busy"])]
    pub balance: Option<String>,
    /// How new connections of a shared port are spread: round-robin,
    /// hash (a keyed hash of the 4-tuple), least-connections (the
    /// processor with the fewest connections) or none (first listener
    /// takes all). Default round-robin (with --config: the file's).
    #[arg(long, value_parser = parse_filter)]
    pub filter: Option<FilterMode>,
    /// A bench and test aid: processor K sleeps DURATION after every turn
    /// of its loop that had work, to stand for a processor slower than the
    /// others (repeatable).
    #[arg(long, value_name = "K=DURATION", value_parser = parse_slow)]
    pub slow_processor: Vec<(usize, Duration)>,
    /// Serve APP on PORT (repeatable): echo, discard, chargen, http,
    /// proxy:ADDR:PORT[,ADDR:PORT...] (relay processor K's connections to
    /// target K mod T; IPv6 as [ADDR]:PORT) or exec:'PROGRAM ARGS...' (a
    /// program per connection on its stdin and stdout).
    /// Default: 7=echo 9=discard 19=chargen 80=http.
    #[arg(long = "serve", value_name = "PORT=APP", value_parser = parse_serve)]
    pub serve: Vec<(u16, ServeApp)>,
    /// Proxy: write the HAProxy PROXY protocol header (v1 text, v2 binary)
    /// first on each back-end connection, so the back-end sees the client.
    #[arg(long, value_name = "v1|v2", value_parser = ["v1", "v2"])]
    pub proxy_protocol: Option<String>,
    /// Proxy: a back-end that has not accepted within this time gets the
    /// client's connection reset (default 3s).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub proxy_connect_timeout: Duration,
    /// On SIGINT/SIGTERM: refuse new connections, close the open ones
    /// with FIN, and reset those still open after this long (default 5s).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Exec: most programs running at once per exec listener (default
    /// 256); connections beyond it are reset and counted.
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub exec_max: u32,
    /// How long a closed connection stays in TIME-WAIT (e.g. 60s, 500ms).
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    pub time_wait: Duration,
    /// Memory the connections of all processors may hold together (e.g.
    /// 512M, 2G), split evenly: at its share a processor refuses new
    /// connections, then resets those whose peers held a zero window
    /// longest (default 1G).
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub memory_budget: usize,
    /// Congestion control of the TCP connections: cubic (the default),
    /// newreno, or bbr (keeps its rate under random loss). Overrides the
    /// config file's [adapter] congestion; a [[listener]]'s own
    /// congestion still holds for its port.
    #[arg(long, value_name = "cubic|newreno|bbr", value_parser = parse_congestion)]
    pub congestion: Option<CongestionAlgorithm>,
    /// Process pairs (NonStop's primary and backup): processor K
    /// checkpoints its connections to processor K+1 (mod N), which takes
    /// them over with nothing lost when K fails (`vnic ctl processor K
    /// crash`, a panic). A config file's [[listener]] backup = K pairs
    /// that listener's processor with K on its port, with or without it.
    #[arg(long)]
    pub pairs: bool,
    /// A processor whose thread failed (a panic, `vnic ctl processor K
    /// crash`) starts again after this delay, fresh, and with pairs is
    /// again its primary's backup (default 1s; at most 5 restarts in
    /// 60s). off: it stays failed until `vnic ctl processor K restart`.
    /// Overrides the config file's [adapter] processor_restart.
    #[arg(long, value_name = "DURATION|off", value_parser = config::parse_restart)]
    pub processor_restart: Option<RestartPolicy>,
    /// Reset a connection on which no byte moved either way for this long
    /// (default 10m; 0: never).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Reset a connection whose peer kept a zero window, with our data
    /// waiting, for this long, even if it answers every probe (default
    /// 2m; 0: never).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub zero_window_timeout: Duration,
    /// Impair the link in both directions, e.g.
    /// loss=5%,reorder=10%,duplicate=2%,delay=2ms,jitter=1ms,seed=7
    #[arg(long, value_name = "SPEC", value_parser = parse_impair)]
    pub impair: Option<ImpairSpec>,
    /// Write every frame in and out to this pcapng file, each with a
    /// comment saying what the adapter decided.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Rotate the pcapng file after this many MiB (FILE, then STEM-1.EXT,
    /// STEM-2.EXT, ...).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub pcap_max_mb: Option<u64>,
    /// With --pcap-max-mb: keep at most N files, like tcpdump -W (after
    /// STEM-(N-1).EXT the next rotation starts FILE again), so a long
    /// capture cannot fill the disk. Default: no limit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub pcap_max_files: Option<u32>,
    /// Keep only the first N bytes of each frame in the pcapng file (like
    /// tcpdump -s; the original length is kept). Default: whole frames.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(64..=262_144))]
    pub pcap_snaplen: Option<u32>,
    /// Keep only the frames this tcpdump filter expression matches in
    /// the pcapng file (e.g. 'tcp port 80 and host 10.0.0.1'; compiled by
    /// libpcap). Files started with `vnic ctl trace on` use it too.
    #[arg(long, value_name = "FILTER")]
    pub pcap_filter: Option<String>,
    /// Write the ISN key and the SYN-cookie secret into the pcapng's
    /// replay block, so `vnic replay` makes the same SYN cookies (they are
    /// secrets: who has them can forge cookies; the file is 0600).
    #[arg(long, requires = "pcap")]
    pub pcap_secrets: bool,
    /// One line per frame on stderr (tcpdump-like, with the decision);
    /// --trace=conn: connection events only.
    #[arg(long, value_name = "WHAT", num_args = 0..=1, require_equals = true,
          default_missing_value = "frames", value_parser = ["frames", "conn"])]
    pub trace: Option<String>,
    /// Half-open (SYN-RECEIVED) connections each listener keeps before it
    /// answers SYNs with SYN cookies and no state (RFC 4987); 0: always cookies.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub syn_backlog: usize,
    /// Control socket path (default: $XDG_RUNTIME_DIR/vnic-TAP.sock or /run/vnic/TAP.sock).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Let members of GROUP (a name or a number) use the control socket
    /// too: the socket is then 0660 with that group (default 0600: root
    /// and vnic's own user only).
    #[arg(long, value_name = "GROUP")]
    pub control_group: Option<String>,
    /// No periodic summary line on stderr, and only warnings and errors
    /// in the log.
    #[arg(short, long)]
    pub quiet: bool,
    /// TAP offloads: `on` opens the TAP with a virtio-net header and lets
    /// the kernel hand over TCP segments of up to 64 KiB with checksums
    /// left to us (fewer reads per byte); `off` uses plain frames, which
    /// works on any TAP, also one another tool made without the header.
    /// Default on: bulk transfers measured 3 to 5 times faster.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = ["on", "off"])]
    pub offload: String,
}

/// How often `vnic up` prints its one-line summary on stderr (unless
/// `--quiet`).
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// A checked `vnic up`: what [`vnic::Builder`] needs, nothing left to validate.
pub struct Plan {
    /// The config file's listeners, filter, MAC and MTU, when `--config`
    /// gave listeners.
    pub config: Option<ResolvedConfig>,
    /// The adapter's MAC, when the config file sets one.
    pub mac: Option<[u8; 6]>,
    /// The link MTU, when the config file sets one.
    pub mtu: Option<usize>,
    /// TAP name (the first link's).
    pub tap: String,
    /// The other links (`--tap` again): Ethernet failover.
    pub more_taps: Vec<String>,
    /// `--failback`.
    pub failback: bool,
    /// `--link-ip NAME=ADDR`.
    pub link_ips: Vec<(String, std::net::Ipv4Addr)>,
    /// Virtual IPs with prefix.
    pub ips: Vec<(IpAddr, u8)>,
    /// Host-side addresses with prefix.
    pub host_ips: Vec<(IpAddr, u8)>,
    /// Number of processors (1 in the distributor model: the distributor).
    pub processors: usize,
    /// RX queues of the TAP, each with its adapter thread.
    pub rx_queues: usize,
    /// A TAP queue per processor, read by the processor itself.
    pub processor_queues: ProcessorQueues,
    /// Listener model.
    pub model: Model,
    /// Filter mode.
    pub filter: FilterMode,
    /// Processors slowed on purpose (`--slow-processor`).
    pub slow: Vec<(usize, Duration)>,
    /// Port → app.
    pub serve: HashMap<u16, ServeApp>,
    /// How the proxy apps connect.
    pub proxy: ProxyOptions,
    /// Limits of the exec apps.
    pub exec: ExecOptions,
    /// How long a stopping vnic drains its connections.
    pub drain: Duration,
    /// TIME-WAIT length.
    pub time_wait: Duration,
    /// Memory budget of all processors' connections, in bytes.
    pub memory_budget: usize,
    /// Congestion control of the connections.
    pub congestion: CongestionAlgorithm,
    /// Process pairs on every port (`--pairs`).
    pub pairs: bool,
    /// When a failed processor starts again (`--processor-restart`).
    pub restart: RestartPolicy,
    /// The TCP knobs (the config file's `[tcp]`, else the defaults).
    pub tcp: TcpKnobs,
    /// Ports whose listener runs its own congestion control.
    pub port_congestion: HashMap<u16, CongestionAlgorithm>,
    /// Idle limit of a connection (None: never).
    pub idle_timeout: Option<Duration>,
    /// Zero-window limit of a connection (None: never).
    pub zero_window_timeout: Option<Duration>,
    /// Link impairment, if any.
    pub impair: Option<ImpairSpec>,
    /// Control socket path, if not the default.
    pub control: Option<PathBuf>,
    /// The group allowed on the control socket besides root and vnic's
    /// user (`--control-group`), looked up.
    pub control_group: Option<u32>,
    /// Half-open connections per listener before SYN cookies.
    pub syn_backlog: usize,
    /// pcapng file.
    pub pcap: Option<PathBuf>,
    /// Rotation size of the pcapng file.
    pub pcap_max_mb: Option<u64>,
    /// Most pcapng files kept by the rotation (a ring; needs `pcap_max_mb`).
    pub pcap_max_files: Option<u32>,
    /// Bytes of each frame kept in the pcapng file.
    pub pcap_snaplen: Option<u32>,
    /// The pcapng file's tcpdump filter, checked by libpcap.
    pub pcap_filter: Option<String>,
    /// Trace lines: "frames" or "conn".
    pub trace: Option<String>,
    /// No periodic summary.
    pub quiet: bool,
    /// Open the TAP with a virtio-net header, checksum offload and TSO.
    pub offload: bool,
    /// The ISN key and cookie secret go into the trace's replay block.
    pub pcap_secrets: bool,
}

impl Plan {
    /// The library's builder for this plan.
    pub fn builder(&self) -> Result<Builder, String> {
        let mut b = Builder::new(&self.tap)
            .failback(self.failback)
            .processors(self.processors)
            .rx_queues(self.rx_queues)
            .processor_queues(self.processor_queues)
            .filter(self.filter)
            .model(self.model)
            .time_wait(self.time_wait)
            .syn_backlog(self.syn_backlog)
            .offload(self.offload)
            .pcap_secrets(self.pcap_secrets)
            .drain(self.drain)
            .memory_budget(self.memory_budget)
            .idle_timeout(self.idle_timeout)
            .congestion(self.congestion)
            .pairs(self.pairs)
            .restart(self.restart)
            .tcp(self.tcp.clone())
            .zero_window_timeout(self.zero_window_timeout)
            .trace(Trace {
                pcap: self.pcap.clone(),
                pcap_max_mb: self.pcap_max_mb,
                pcap_max_files: self.pcap_max_files,
                snaplen: self.pcap_snaplen,
                lines: match self.trace.as_deref() {
                    Some("conn") => Some(LineMode::Conn),
                    Some(_) => Some(LineMode::Frames),
                    None => None,
                },
                filter: self.pcap_filter.clone(),
            });
        for ip in &self.ips {
            b = b.ip(ip.0, ip.1);
        }
        for t in &self.more_taps {
            b = b.link(t);
        }
        for (name, ip) in &self.link_ips {
            b = b.link_ip(name, *ip);
        }
        for (ip, prefix) in &self.host_ips {
            b = b.host_ip(*ip, *prefix);
        }
        if let Some(mac) = self.mac {
            b = b.mac(mac);
        }
        if let Some(mtu) = self.mtu {
            b = b.mtu(mtu);
        }
        for (&port, &algo) in &self.port_congestion {
            b = b.port_congestion(port, algo);
        }
        for &(k, d) in &self.slow {
            b = b.slow_processor(k, d);
        }
        if let Some(spec) = &self.impair {
            b = b.impair(spec.clone());
        }
        if let Some(path) = &self.control {
            b = b.control(path.clone());
        }
        if let Some(gid) = self.control_group {
            b = b.control_group(gid);
        }
        if !self.quiet {
            b = b.summary(SUMMARY_EVERY);
        }
        match &self.config {
            Some(c) => {
                let n = self.processors;
                // One service per port and app, shared by the processors
                // that listen there (a proxy maps processor K to target
                // K mod T; an exec limit is the listener's).
                let mut shared: HashMap<(u16, ServeApp), Arc<dyn Service>> = HashMap::new();
                let mut tcp = Vec::with_capacity(n);
                for id in 0..n {
                    let mut m = HashMap::new();
                    for (port, app) in c.tcp_serve_for(id) {
                        let svc = match shared.get(&(port, app.clone())) {
                            Some(s) => s.clone(),
                            None => {
                                let s = service(&app, self)?;
                                shared.insert((port, app), s.clone());
                                s
                            }
                        };
                        m.insert(port, svc);
                    }
                    tcp.push(m);
                }
                b = b.layout(Layout {
                    filter: c.filter.clone(),
                    tcp,
                    udp: (0..n)
                        .map(|id| {
                            c.udp_serve_for(id)
                                .into_iter()
                                .filter_map(|(port, app)| {
                                    UdpAppKind::from_name(app.name()).map(|k| (port, k))
                                })
                                .collect()
                        })
                        .collect(),
                });
            }
            None => {
                let mut ports: Vec<&u16> = self.serve.keys().collect();
                ports.sort_unstable();
                for port in ports {
                    if let Some(app) = self.serve.get(port) {
                        b = b.serve_shared(*port, service(app, self)?);
                    }
                }
            }
        }
        Ok(b)
    }

    /// Checks what clap cannot check alone.
    pub fn from_args(mut a: UpArgs) -> Result<Plan, String> {
        let mut config = None;
        let (mut mac, mut mtu) = (None, None);
        let mut file_congestion = None;
        let mut file_restart = None;
        let mut tcp = TcpKnobs::default();
        if let Some(path) = &a.config {
            let file = config::load(path).map_err(|e| e.to_string())?;
            let resolved = file
                .resolve(&Overrides {
                    tap: a.tap.first().cloned(),
                    ips: a.ips.clone(),
                    host_ips: a.host_ips.clone(),
                    processors: a.processors.map(usize::from),
                    filter: a.filter,
                })
                .map_err(|e| e.to_string())?;
            if a.tap.is_empty() {
                a.tap = std::iter::once(resolved.tap.clone())
                    .chain(resolved.more_taps.iter().cloned())
                    .collect();
            }
            // A flag says more than the file: --failback turns it on,
            // --link-ip replaces the file's list.
            a.failback |= resolved.failback;
            if a.link_ip.is_empty() {
                a.link_ip = resolved.link_ips.clone();
            }
            a.ips = resolved.addresses.clone();
            a.host_ips = resolved.host_addresses.clone();
            a.processors = u16::try_from(resolved.processors).ok();
            a.filter = Some(resolved.mode);
            mac = resolved.mac;
            mtu = resolved.mtu;
            file_congestion = resolved.congestion;
            file_restart = resolved.processor_restart;
            tcp = resolved.tcp.clone();
            if file.has_listeners() {
                if !a.serve.is_empty() {
                    return Err("--serve and [[listener]] entries in --config both say what to serve: use one".into());
                }
                if a.model != "monolithic" {
                    return Err(format!(
                        "--model {} does not take [[listener]] entries: it places its own listeners",
                        a.model
                    ));
                }
                a.serve = resolved.tcp_serve().into_iter().collect();
                config = Some(resolved);
            }
        }
        let Some(tap) = a.tap.first().cloned() else {
            return Err("--tap NAME is required (or --config FILE with [adapter] tap)".into());
        };
        if a.ips.is_empty() {
            return Err("at least one --ip ADDR/PREFIX is required (or --config FILE with [adapter] addresses)".into());
        }
        let filter = a.filter.unwrap_or(FilterMode::RoundRobin);
        let mut serve = HashMap::new();
        let list = if a.serve.is_empty() && config.is_none() {
            vec![
                (7, ServeApp::Builtin(AppKind::Echo)),
                (9, ServeApp::Builtin(AppKind::Discard)),
                (19, ServeApp::Builtin(AppKind::Chargen)),
                (80, ServeApp::Builtin(AppKind::Http)),
            ]
        } else {
            a.serve
        };
        for (port, app) in list {
            if serve.insert(port, app).is_some() {
                return Err(format!("--serve: port {port} given twice"));
            }
        }
        let ips: Vec<IpAddr> = a.ips.iter().map(|(ip, _)| *ip).collect();
        for (i, ip) in ips.iter().enumerate() {
            if ips[..i].contains(ip) {
                return Err(format!("--ip: {ip} given twice"));
            }
        }
        for (h, _) in &a.host_ips {
            if ips.contains(h) {
                return Err(format!(
                    "--host-ip {h} is also a virtual --ip: the host side needs its own address"
                ));
            }
        }
        // Both models trace, so these hold in both.
        if a.pcap_max_mb.is_some() && a.pcap.is_none() {
            return Err("--pcap-max-mb needs --pcap FILE".into());
        }
        if a.pcap_max_files.is_some() && a.pcap_max_mb.is_none() {
            return Err("--pcap-max-files needs --pcap-max-mb N (files rotate by size)".into());
        }
        if a.pcap_snaplen.is_some() && a.pcap.is_none() {
            return Err("--pcap-snaplen needs --pcap FILE".into());
        }
        let pcap_filter = checked_pcap_filter(a.pcap_filter.as_deref(), a.pcap.is_some())?;
        if a.broker_ports.is_some() && a.model != "broker" {
            return Err("--broker-ports belongs to --model broker".into());
        }
        let model = match a.model.as_str() {
            "distributor" => Model::Distributor {
                backends: usize::from(a.backends.unwrap_or(4)),
                balance: a
                    .balance
                    .as_deref()
                    .and_then(Balance::from_name)
                    .unwrap_or(Balance::RoundRobin),
            },
            "broker" => {
                if a.backends.is_some() {
                    return Err("--backends belongs to --model distributor: the broker model's servers are processors (--processors)".into());
                }
                Model::Broker {
                    base: a.broker_ports.unwrap_or(8000),
                    balance: a
                        .balance
                        .as_deref()
                        .and_then(Balance::from_name)
                        .unwrap_or(Balance::RoundRobin),
                }
            }
            "standard" => {
                if a.backends.is_some() || a.balance.is_some() {
                    return Err("--backends and --balance do not apply to --model standard: its listener starts each server in the processors in turn".into());
                }
                Model::Standard
            }
            "hybrid" => {
                if a.backends.is_some() {
                    return Err("--backends belongs to --model distributor: the hybrid model's servers are processors (--processors)".into());
                }
                if a.processors.is_some_and(|p| p < 2) {
                    return Err("--model hybrid needs at least two processors: the distributor (0) and a server".into());
                }
                Model::Hybrid {
                    balance: a
                        .balance
                        .as_deref()
                        .and_then(Balance::from_name)
                        .unwrap_or(Balance::LeastBusy),
                }
            }
            _ => {
                if a.backends.is_some() || a.balance.is_some() {
                    return Err(
                        "--backends and --balance belong to --model distributor or hybrid".into(),
                    );
                }
                Model::Monolithic
            }
        };
        let processors = match model {
            Model::Monolithic | Model::Standard | Model::Hybrid { .. } | Model::Broker { .. } => {
                usize::from(a.processors.unwrap_or(4))
            }
            // One front-end unless asked: several share the port under the
            // filter (the manual's section 3-8).
            Model::Distributor { .. } => usize::from(a.processors.unwrap_or(1)),
        };
        if let Some((k, _)) = a.slow_processor.iter().find(|(k, _)| *k >= processors) {
            return Err(format!(
                "--slow-processor {k}=...: processor {k} does not exist (processors: {processors})"
            ));
        }
        let control_group = match &a.control_group {
            Some(g) => Some(
                vnic_listeners::control::resolve_group(g)
                    .map_err(|e| format!("--control-group: {e}"))?,
            ),
            None => None,
        };
        let port_congestion = config
            .as_ref()
            .map(ResolvedConfig::tcp_congestion)
            .unwrap_or_default();
        Ok(Plan {
            config,
            mac,
            mtu,
            tap,
            more_taps: a.tap.get(1..).map(<[String]>::to_vec).unwrap_or_default(),
            failback: a.failback,
            link_ips: a.link_ip,
            ips: a.ips.clone(),
            host_ips: a.host_ips,
            processors,
            rx_queues: usize::from(a.rx_queues),
            processor_queues: ProcessorQueues::from_name(&a.processor_queues).unwrap_or_default(),
            model,
            filter,
            slow: a.slow_processor,
            serve,
            proxy: ProxyOptions {
                proxy_protocol: a
                    .proxy_protocol
                    .as_deref()
                    .and_then(ProxyProtocol::from_name),
                connect_timeout: a.proxy_connect_timeout,
            },
            exec: ExecOptions {
                max: a.exec_max as usize,
            },
            drain: a.drain,
            time_wait: a.time_wait,
            memory_budget: a.memory_budget,
            congestion: a.congestion.or(file_congestion).unwrap_or_default(),
            pairs: a.pairs,
            restart: a.processor_restart.or(file_restart).unwrap_or_default(),
            tcp,
            port_congestion,
            idle_timeout: Some(a.idle_timeout).filter(|d| !d.is_zero()),
            zero_window_timeout: Some(a.zero_window_timeout).filter(|d| !d.is_zero()),
            impair: a.impair,
            control: a.control,
            control_group,
            syn_backlog: a.syn_backlog,
            quiet: a.quiet,
            offload: a.offload == "on",
            pcap: a.pcap,
            pcap_max_mb: a.pcap_max_mb,
            pcap_max_files: a.pcap_max_files,
            pcap_snaplen: a.pcap_snaplen,
            pcap_filter,
            trace: a.trace,
            pcap_secrets: a.pcap_secrets,
        })
    }
}

/// `--pcap-filter`: needs `--pcap`, and must compile (libpcap's message
/// otherwise, in one line). A blank filter is no filter.
fn checked_pcap_filter(filter: Option<&str>, pcap: bool) -> Result<Option<String>, String> {
    let Some(f) = vnic_adapter::trace::filter::normalize(filter) else {
        return Ok(None);
    };
    if !pcap {
        return Err("--pcap-filter needs --pcap FILE".into());
    }
    vnic_adapter::trace::filter::check(&f).map_err(|e| format!("--pcap-filter: {e}"))?;
    Ok(Some(f))
}

/// The service that makes `app`'s connections, one per `--serve` entry
/// (shared by every processor, so limits and counters are the listener's,
/// not a processor's).
fn service(app: &ServeApp, plan: &Plan) -> Result<Arc<dyn Service>, String> {
    Ok(match app {
        ServeApp::Builtin(k) => Arc::new(*k),
        ServeApp::Proxy(targets) => {
            Arc::new(ProxyService::new(targets.clone(), plan.proxy.clone()))
        }
        ServeApp::Exec(argv) => Arc::new(ExecService::new(argv.clone(), plan.exec.clone())?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_parsing() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("4096K"), Ok(4 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("100K").is_err(), "below 1 MiB");
        assert!(parse_size("2T").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            parse_cidr("10.0.0.2/24"),
            Ok(("10.0.0.2".parse().expect("ip"), 24))
        );
        assert!(parse_cidr("fd00::2/64").is_ok());
        assert!(parse_cidr("10.0.0.2").is_err());
        assert!(parse_cidr("10.0.0.2/33").is_err());
        assert!(parse_cidr("10.0.0.256/24").is_err());
        assert!(parse_cidr("224.0.0.1/4").is_err());
        assert!(parse_cidr("::/0").is_err());
    }

    #[test]
    fn serve_parsing() {
        assert_eq!(
            parse_serve("8080=http"),
            Ok((8080, ServeApp::Builtin(AppKind::Http)))
        );
        assert_eq!(
            parse_serve("80=proxy:127.0.0.1:8080,[::1]:8081"),
            Ok((
                80,
                ServeApp::Proxy(vec![
                    "127.0.0.1:8080".parse().expect("addr"),
                    "[::1]:8081".parse().expect("addr")
                ])
            ))
        );
        assert_eq!(
            parse_serve("13=exec:/bin/date -u 'a b'"),
            Ok((
                13,
                ServeApp::Exec(vec!["/bin/date".into(), "-u".into(), "a b".into()])
            ))
        );
        assert!(parse_serve("80=proxy:").is_err());
        assert!(parse_serve("80=proxy:10.0.0.1").is_err());
        assert!(parse_serve("7=exec:").is_err());
        assert!(parse_serve("7=exec:'unclosed").is_err());
        assert!(parse_serve("0=http").is_err());
        assert!(parse_serve("80=ftp").is_err());
        assert!(parse_serve("80").is_err());
        assert!(parse_serve("70000=echo").is_err());
    }

    #[test]
    fn duration_parsing() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("abc").is_err());
    }

    #[test]
    fn port_given_twice_is_refused() {
        let cli = Cli::try_parse_from([
            "vnic",
            "up",
            "--tap",
            "t0",
            "--ip",
            "10.0.0.2/24",
            "--serve",
            "80=http",
            "--serve",
            "80=echo",
        ])
        .expect("flags parse");
        let Command::Up(up) = cli.cmd else {
            panic!("parsed as up");
        };
        let Err(err) = Plan::from_args(*up) else {
            panic!("must refuse");
        };
        assert!(err.contains("port 80 given twice"), "{err}");
    }

    fn plan(extra: &[&str]) -> Result<Plan, String> {
        let mut args = vec!["vnic", "up", "--tap", "t0", "--ip", "10.0.0.2/24"];
        args.extend_from_slice(extra);
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        let Command::Up(up) = cli.cmd else {
            panic!("parsed as up");
        };
        Plan::from_args(*up)
    }

    #[test]
    fn control_group_is_looked_up_or_refused_in_one_line() {
        assert_eq!(plan(&[]).expect("valid").control_group, None);
        let p = plan(&["--control-group", "root"]).expect("valid");
        assert_eq!(p.control_group, Some(0));
        let p = plan(&["--control-group", "4242"]).expect("a number");
        assert_eq!(p.control_group, Some(4242));
        let err = plan(&["--control-group", "no-such-group-vnic"])
            .err()
            .expect("unknown");
        assert!(
            err.starts_with("--control-group: no group named \"no-such-group-vnic\""),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn ctl_trace_caps_need_a_file() {
        let ok = Cli::try_parse_from([
            "vnic",
            "ctl",
            "trace",
            "on",
            "x.pcapng",
            "--max-mb",
            "5",
            "--max-files",
            "2",
        ]);
        assert!(ok.is_ok(), "{ok:?}");
        assert!(Cli::try_parse_from(["vnic", "ctl", "trace", "on", "--max-mb", "5"]).is_err());
        assert!(
            Cli::try_parse_from(["vnic", "ctl", "trace", "on", "x", "--max-files", "0"]).is_err()
        );
    }

    #[test]
    fn pcap_snaplen_is_checked() {
        let p = plan(&["--pcap", "x.pcapng", "--pcap-snaplen", "128"]).expect("valid");
        assert_eq!(p.pcap_snaplen, Some(128));
        let err = plan(&["--pcap-snaplen", "128"])
            .err()
            .expect("needs --pcap");
        assert!(err.contains("--pcap-snaplen needs --pcap FILE"), "{err}");
        for bad in ["10", "300000", "x"] {
            let err = plan(&["--pcap", "x.pcapng", "--pcap-snaplen", bad])
                .err()
                .expect("out of range");
            assert!(err.contains("--pcap-snaplen"), "{bad}: {err}");
        }
    }

    #[test]
    fn pcap_max_files_is_checked() {
        let p = plan(&[
            "--pcap",
            "x.pcapng",
            "--pcap-max-mb",
            "10",
            "--pcap-max-files",
            "5",
        ])
        .expect("valid");
        assert_eq!((p.pcap_max_mb, p.pcap_max_files), (Some(10), Some(5)));
        let p = plan(&["--pcap", "x.pcapng", "--pcap-max-mb", "10"]).expect("valid");
        assert_eq!(p.pcap_max_files, None, "no limit by default");
        let p = plan(&[
            "--pcap",
            "x.pcapng",
            "--pcap-max-mb",
            "1",
            "--pcap-max-files",
            "100000",
        ])
        .expect("the largest limit");
        assert_eq!(p.pcap_max_files, Some(100_000));
    }

    #[test]
    fn pcap_max_files_needs_pcap_max_mb() {
        for extra in [
            &["--pcap", "x.pcapng", "--pcap-max-files", "3"][..],
            &["--pcap-max-files", "3"],
            &[
                "--model",
                "distributor",
                "--pcap",
                "x.pcapng",
                "--pcap-max-files",
                "3",
            ],
        ] {
            let err = plan(extra).err().expect("needs --pcap-max-mb");
            assert_eq!(
                err, "--pcap-max-files needs --pcap-max-mb N (files rotate by size)",
                "{extra:?}"
            );
        }
    }

    #[test]
    fn pcap_max_files_out_of_range_is_refused() {
        for bad in ["0", "100001", "-1", "x"] {
            let flag = format!("--pcap-max-files={bad}");
            let err = plan(&["--pcap", "x.pcapng", "--pcap-max-mb", "10", &flag])
                .err()
                .expect("out of range");
            assert!(err.contains("--pcap-max-files"), "{bad}: {err}");
        }
    }

    #[test]
    fn pcap_flags_are_checked_in_the_distributor_model_too() {
        let err = plan(&["--model", "distributor", "--pcap-max-mb", "5"])
            .err()
            .expect("needs --pcap");
        assert!(err.contains("--pcap-max-mb needs --pcap FILE"), "{err}");
        let p = plan(&[
            "--model",
            "distributor",
            "--pcap",
            "x.pcapng",
            "--pcap-max-mb",
            "5",
            "--pcap-max-files",
            "2",
        ])
        .expect("valid");
        assert_eq!(p.pcap_max_files, Some(2));
    }

    #[test]
    fn pcap_filter_is_compiled_by_libpcap_and_needs_pcap() {
        let p = plan(&["--pcap", "x.pcapng", "--pcap-filter", " tcp port 80 "]).expect("valid");
        assert_eq!(p.pcap_filter.as_deref(), Some("tcp port 80"));
        let err = plan(&["--pcap-filter", "tcp"]).err().expect("needs --pcap");
        assert_eq!(err, "--pcap-filter needs --pcap FILE");
        let err = plan(&["--pcap", "x.pcapng", "--pcap-filter", "tcp prot 80"])
            .err()
            .expect("bad filter");
        assert!(
            err.starts_with("--pcap-filter: bad capture filter \"tcp prot 80\": "),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn capture_takes_a_filter_of_several_words() {
        let cli = Cli::try_parse_from([
            "vnic",
            "capture",
            "--tap",
            "t0",
            "-w",
            "-",
            "--processor",
            "1",
            "tcp",
            "port",
            "80",
        ])
        .expect("parses");
        let Command::Capture(c) = cli.cmd else {
            panic!("not capture");
        };
        assert_eq!(c.filter.join(" "), "tcp port 80");
        assert_eq!(c.processor, Some(1));
        assert_eq!(c.write.as_deref(), Some(std::path::Path::new("-")));
        let cli = Cli::try_parse_from(["vnic", "capture", "tcp", "port", "80", "-w", "x"])
            .expect("flags after the filter");
        let Command::Capture(c) = cli.cmd else {
            panic!("not capture");
        };
        assert_eq!(c.filter.join(" "), "tcp port 80");
        assert_eq!(c.write.as_deref(), Some(std::path::Path::new("x")));
        let cli = Cli::try_parse_from(["vnic", "capture", "--tap", "t0", "tcp port 80"])
            .expect("one quoted word");
        let Command::Capture(c) = cli.cmd else {
            panic!("not capture");
        };
        assert_eq!(c.filter, ["tcp port 80"]);
        assert_eq!(c.write, None);
    }
}
