//! `vnic up --config FILE`: the adapter, the filter and the listeners as
//! NonStop configures them, in one TOML file.
//!
//! ```toml
//! [adapter]
//! tap = "vnic0"                      # TAP device; several (failover): ["vnicA", "vnicB"]
//! failback = false                   # several links: the first takes back over when it returns
//! link_ip = { vnicA = "10.0.0.12" }  # several links: a reserved IPv4 address per link
//! addresses = ["10.0.0.2/24"]        # virtual IPs, ADDR/PREFIX
//! host_addresses = ["10.0.0.1/24"]   # host side of the TAP (optional)
//! mac = "02:76:6e:00:00:01"          # optional; default derived from the tap name
//! mtu = 1500                         # optional; default the TAP's MTU
//! processors = 4                     # optional; default 4
//! congestion = "cubic"               # optional: cubic (default) | newreno | bbr
//! processor_restart = "1s"           # optional: a failed processor starts again after this (default 1s) | "off"
//!
//! [filter]
//! mode = "round-robin"               # hash | least-connections | none (the default: filtering is off unless configured)
//! key = "web1"                       # default filter key of the listeners
//! tcp_ports = ["80", "8000-8099"]    # the shared TCP ports of that key (default: all)
//! udp_ports = [7]                    # the shared UDP ports of that key (default: all)
//! port_share_enable = false          # PORT-SHARE-ENABLE: one port on different addresses (default off)
//!
//! [[filter.shared]]                  # another key's own shared ports (default: all)
//! key = "mail1"
//! tcp_ports = [25]
//! udp_ports = []
//!
//! [[listener]]
//! port = 80
//! protocol = "tcp"                   # default tcp
//! app = "http"                       # echo | discard | chargen | http | proxy | exec (tcp); udp-echo (udp)
//! targets = ["127.0.0.1:8080"]       # app = "proxy": the back-ends (processor K -> target K mod T)
//! command = "/bin/cat"               # app = "exec": the program per connection, split as a shell would
//! processor = 0
//! backup = 1                         # optional
//! address = "10.0.0.2"               # optional: bound to this address only
//! key = "web1"                       # optional: else [filter] key
//! congestion = "bbr"                 # optional (tcp): else [adapter] congestion
//! filter = "hash"                    # optional: this port's policy, else [filter] mode
//!
//! [tcp]                              # optional, every key too (NonStop's per-monitor knobs)
//! max_rto = "64s"                    # longest retransmission timeout (default 60s)
//! max_retransmissions = 12           # retransmissions before the reset (default 12)
//! total_retransmission_time = "720s" # reset after this long without progress ("0": no limit; default 720s)
//! delayed_ack = true                 # false: ACK every segment at once (default true)
//! delayed_ack_time = "40ms"          # 1ms to 500ms (default 40ms)
//! send_space = "256K"                # bytes an app may queue to send, 4K to 1G (default 256K)
//! ```
//!
//! A listener's `filter` is its port's (the port's line of listeners is
//! placed by it); listeners of one port that set it must agree, and
//! `--filter` overrides only `[filter] mode`. `[tcp]` is read by [`tcp`]
//! (its module doc says what each knob does).
//!
//! [`load`] reads and checks everything before anything starts: the TOML
//! syntax and types, every value, and every listener run through the
//! filter's registration rules ([`vnic_adapter::Filter::add_listener`]).
//! Every error names the file, the line and the column.
//!
//! Flags and the file describe the same things, and a flag overrides the
//! file: [`ConfigFile::resolve`] takes the flags' values ([`Overrides`]),
//! checks the result again (a `--processors 2` against a listener on
//! processor 3 names that listener's line) and gives the [`ResolvedConfig`] to run.

use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
use vnic_adapter::filter::{
    Exclusive, FilterKey, ListenerId, ListenerSpec, PortRanges, Protocol, RegisterError,
};
use vnic_adapter::{Filter, FilterMode};
use vnic_listeners::app::AppKind;
use vnic_listeners::processor::RestartPolicy;
use vnic_stack::CongestionAlgorithm;

use crate::MAX_PROCESSORS;

mod listener;
mod raw;
mod shared;
mod tcp;
use raw::{PortItem, RawFile, RawListener};
use shared::RawShared;
pub use tcp::{size_parts, TcpKnobs};

/// Processors when neither the file nor `--processors` says (the CLI's default).
pub const DEFAULT_PROCESSORS: usize = 4;

/// Reads and checks a config file (see the module doc). The values the
/// command line may override are checked as the file gives them; call
/// [`ConfigFile::resolve`] with the flags to get what to run.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        at: None,
        kind: ConfigErrorKind::Read,
        message: format!("cannot read the config file: {e}"),
    })?;
    parse(&text, path)
}

/// `text` with every control character written as an escape (`\t`,
/// `\u{1b}`): error messages quote the file's keys and values, and a tab
/// or an escape sequence in one must not break the one line an error is
/// (found by the `config` fuzz target: a key with tabs in it).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// [`load`] on text already read; `path` names it in error messages.
pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        at: e.span().map(|s| Location::of(text, s.start)),
        kind: ConfigErrorKind::Syntax,
        message: printable(
            &e.message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    })?;
    let file = ConfigFile {
        path: path.to_path_buf(),
        text: text.to_string(),
        raw,
    };
    file.check(&Overrides::default(), false)?;
    Ok(file)
}

/// A restart policy as `--processor-restart` and `processor_restart`
/// spell it: a delay (`1s`, `250ms`) or `off`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy, String> {
    if s == "off" {
        return Ok(RestartPolicy { delay: None });
    }
    vnic_adapter::duration::parse_duration(s)
        .map(|d| RestartPolicy { delay: Some(d) })
        .map_err(|e| format!("{e} (or off)"))
}

/// `ADDR/PREFIX` → (address, prefix); unicast addresses only.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not ADDR/PREFIX (e.g. 10.0.0.2/24 or fd00::2/64)"))?;
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IPv4 or IPv6 address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("prefix {prefix:?} must be a number from 0 to {max}"))?;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return Err(format!(
            "{ip} cannot be an interface address (unspecified, multicast or loopback)"
        ));
    }
    if let IpAddr::V4(v4) = ip {
        if v4.is_broadcast() {
            return Err(format!("{ip} is the broadcast address"));
        }
    }
    Ok((ip, prefix))
}

/// What `--serve PORT=APP` (or a config file's listener) names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServeApp {
    /// echo, discard, chargen or http.
    Builtin(AppKind),
    /// `proxy:ADDR:PORT[,ADDR:PORT...]`: relay to these back-ends.
    Proxy(Vec<SocketAddr>),
    /// `exec:'PROGRAM ARGS...'`: this program per connection.
    Exec(Vec<String>),
}

/// A line and column in the file (both from 1), where an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` of `text`.
    fn of(text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// What kind of mistake a [`ConfigError`] is, for callers and tests that
/// act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file cannot be read.
    Read,
    /// Not TOML, a value of the wrong type, a missing field, or an unknown
    /// key (a typo is never silently ignored).
    Syntax,
    /// A value of the right type that is wrong: an address, a MAC, an
    /// MTU, a port, a port range, a mode, a protocol, a processor count,
    /// a TAP name.
    BadValue,
    /// An app name vnic does not have, or one that does not speak the
    /// listener's protocol.
    UnknownApp,
    /// A filter key that breaks the manual's form.
    BadKey,
    /// A listener the filter refuses (a rule of the manual).
    Registration(Box<RegisterError>),
    /// Something vnic cannot run without, given neither in the file nor
    /// by a flag (the TAP, the virtual addresses).
    Missing,
}

/// A mistake in the config file: the file, where in it, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", place(file, *at))]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// Where in it (`None` for the file as a whole).
    pub at: Option<Location>,
    /// What kind of mistake.
    pub kind: ConfigErrorKind,
    /// What is wrong, in words.
    pub message: String,
}

#[cfg(test)]
impl ConfigError {
    /// The filter's rule that refused a listener, if that is the mistake.
    pub fn rule(&self) -> Option<&RegisterError> {
        match &self.kind {
            ConfigErrorKind::Registration(e) => Some(e),
            _ => None,
        }
    }
}

fn place(file: &Path, at: Option<Location>) -> String {
    match at {
        Some(l) => format!("{}:{}:{}", file.display(), l.line, l.column),
        None => file.display().to_string(),
    }
}

/// The command-line values that override the file's (a flag overrides
/// the file). An empty list or `None` leaves the file's value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--tap NAME` over `[adapter] tap`.
    pub tap: Option<String>,
    /// `--ip ADDR/PREFIX ...` over `[adapter] addresses` (the whole list).
    pub ips: Vec<(IpAddr, u8)>,
    /// `--host-ip ADDR/PREFIX ...` over `[adapter] host_addresses` (the whole list).
    pub host_ips: Vec<(IpAddr, u8)>,
    /// `--processors N` over `[adapter] processors`.
    pub processors: Option<usize>,
    /// `--filter MODE` over `[filter] mode`.
    pub filter: Option<FilterMode>,
}

/// The apps a `[[listener]]` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceApp {
    /// TCP echo (RFC 862).
    Echo,
    /// TCP discard (RFC 863).
    Discard,
    /// TCP chargen (RFC 864).
    Chargen,
    /// The small HTTP server.
    Http,
    /// The relay to real back-ends (`targets = [...]`).
    Proxy,
    /// A program per connection (`command = "..."`).
    Exec,
    /// UDP echo (RFC 862): every datagram back to its sender.
    UdpEcho,
}

impl ServiceApp {
    /// Every app, for messages.
    pub const ALL: [ServiceApp; 7] = [
        ServiceApp::Echo,
        ServiceApp::Discard,
        ServiceApp::Chargen,
        ServiceApp::Http,
        ServiceApp::Proxy,
        ServiceApp::Exec,
        ServiceApp::UdpEcho,
    ];

    /// Parses the name used in the file.
    pub fn from_name(s: &str) -> Option<ServiceApp> {
        ServiceApp::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The name used in the file and as the filter's app label.
    pub fn name(self) -> &'static str {
        match self {
            ServiceApp::Echo => "echo",
            ServiceApp::Discard => "discard",
            ServiceApp::Chargen => "chargen",
            ServiceApp::Http => "http",
            ServiceApp::Proxy => "proxy",
            ServiceApp::Exec => "exec",
            ServiceApp::UdpEcho => "udp-echo",
        }
    }

    /// The protocol the app speaks.
    pub fn protocol(self) -> Protocol {
        match self {
            ServiceApp::UdpEcho => Protocol::Udp,
            _ => Protocol::Tcp,
        }
    }

    /// The processors' TCP app, for a TCP app.
    pub fn tcp_app(self) -> Option<AppKind> {
        match self {
            ServiceApp::Echo => Some(AppKind::Echo),
            ServiceApp::Discard => Some(AppKind::Discard),
            ServiceApp::Chargen => Some(AppKind::Chargen),
            ServiceApp::Http => Some(AppKind::Http),
            ServiceApp::Proxy | ServiceApp::Exec | ServiceApp::UdpEcho => None,
        }
    }
}

impl fmt::Display for ServiceApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `[[listener]]`, checked and registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerEntry {
    /// Its number in [`ResolvedConfig::filter`].
    pub id: ListenerId,
    /// What was registered (the key is the listener's own or `[filter] key`).
    pub spec: ListenerSpec,
    /// The app behind it.
    pub app: ServiceApp,
    /// For a TCP listener, what it serves, with the proxy's targets or
    /// exec's command.
    pub serve: Option<ServeApp>,
    /// Its own congestion control (`congestion = ...`), for a TCP
    /// listener that sets one.
    pub congestion: Option<CongestionAlgorithm>,
    /// Its line in the file.
    pub line: usize,
}

/// A config file read and checked; [`ConfigFile::resolve`] turns it, with
/// the flags, into the [`ResolvedConfig`] to run.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    path: PathBuf,
    text: String,
    raw: RawFile,
}

/// Everything `vnic up` needs from the file and the flags, checked.
#[derive(Clone, Debug)]
pub struct ResolvedConfig {
    /// TAP name (the first link's).
    pub tap: String,
    /// The other links' TAPs (`tap = ["A", "B"]`): Ethernet failover.
    pub more_taps: Vec<String>,
    /// `failback = true`: the first link takes back over when it returns.
    pub failback: bool,
    /// `link_ip = { NAME = "ADDR" }`: each link's reserved IPv4 address.
    pub link_ips: Vec<(String, std::net::Ipv4Addr)>,
    /// Virtual IPs with prefix (at least one).
    pub addresses: Vec<(IpAddr, u8)>,
    /// Host-side addresses with prefix.
    pub host_addresses: Vec<(IpAddr, u8)>,
    /// The adapter's MAC, if the file sets one (else derived from the TAP name).
    pub mac: Option<[u8; 6]>,
    /// The link MTU, if the file sets one (else the TAP's).
    pub mtu: Option<usize>,
    /// Number of processors.
    pub processors: usize,
    /// The filter mode.
    pub mode: FilterMode,
    /// `[adapter] congestion`, if the file sets it.
    pub congestion: Option<CongestionAlgorithm>,
    /// `[adapter] processor_restart`, if the file sets it.
    pub processor_restart: Option<RestartPolicy>,
    /// The listeners, in file order (empty: the file leaves listeners to
    /// `--serve` and its defaults).
    pub listeners: Vec<ListenerEntry>,
    /// `[tcp]`: the TCP knobs (the stack's defaults for what it leaves out).
    pub tcp: TcpKnobs,
    /// The filter with mode, shared ranges, addresses and every listener
    /// registered: ready for the RX thread.
    pub filter: Filter,
}

impl ResolvedConfig {
    /// Port → TCP app for processor `processor`: the ports it listens on
    /// as a primary, then those it may take over as a backup (a primary's
    /// app wins: the takeover would collide anyway).
    pub fn tcp_serve_for(&self, processor: usize) -> HashMap<u16, ServeApp> {
        let mut m = HashMap::new();
        for backups in [false, true] {
            for l in &self.listeners {
                let here = if backups {
                    l.spec.backup == Some(processor)
                } else {
                    l.spec.processor == processor
                };
                if let (true, Some(app)) = (here, &l.serve) {
                    m.entry(l.spec.port).or_insert_with(|| app.clone());
                }
            }
        }
        m
    }

    /// Port → TCP app over all listeners (the first listener of a port
    /// names it): what `Plan::serve` and the status's port list hold.
    pub fn tcp_serve(&self) -> HashMap<u16, ServeApp> {
        let mut m = HashMap::new();
        for l in &self.listeners {
            if let Some(app) = &l.serve {
                m.entry(l.spec.port).or_insert_with(|| app.clone());
            }
        }
        m
    }

    /// Port → congestion control of the TCP listeners that set their own.
    pub fn tcp_congestion(&self) -> HashMap<u16, CongestionAlgorithm> {
        self.listeners
            .iter()
            .filter_map(|l| Some((l.spec.port, l.congestion?)))
            .collect()
    }

    /// Port → UDP app for processor `processor`, as [`ResolvedConfig::tcp_serve_for`].
    pub fn udp_serve_for(&self, processor: usize) -> HashMap<u16, ServiceApp> {
        let mut m = HashMap::new();
        for backups in [false, true] {
            for l in &self.listeners {
                let here = if backups {
                    l.spec.backup == Some(processor)
                } else {
                    l.spec.processor == processor
                };
                if here && l.app.protocol() == Protocol::Udp {
                    m.entry(l.spec.port).or_insert(l.app);
                }
            }
        }
        m
    }
}

impl ConfigFile {
    /// True if the file has `[[listener]]` entries (else listeners come
    /// from `--serve` and its defaults).
    pub fn has_listeners(&self) -> bool {
        !self.raw.listener.is_empty()
    }

    /// The file with the flags over it, checked again, ready to run. Needs
    /// a TAP and at least one virtual address from one or the other.
    pub fn resolve(&self, flags: &Overrides) -> Result<ResolvedConfig, ConfigError> {
        self.check(flags, true)
    }

    fn err(
        &self,
        span: Option<Range<usize>>,
        kind: ConfigErrorKind,
        message: String,
    ) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            at: span.map(|s| Location::of(&self.text, s.start)),
            kind,
            message: printable(&message),
        }
    }

    fn bad<T>(&self, span: Range<usize>, message: String) -> Result<T, ConfigError> {
        Err(self.err(Some(span), ConfigErrorKind::BadValue, message))
    }

    /// Every check of the file, with `flags` over it. With `complete`
    /// false (at load, before the flags are known) a missing TAP or
    /// address list is let through.
    fn check(&self, flags: &Overrides, complete: bool) -> Result<ResolvedConfig, ConfigError> {
        let a = &self.raw.adapter;
        let (tap, more_taps) = match (&flags.tap, &a.tap) {
            (Some(t), _) => (Some(t.clone()), Vec::new()),
            (None, Some(t)) => {
                let names = t.get_ref().names();
                if names.is_empty() {
                    return self.bad(t.span(), "tap = []: name at least one TAP".into());
                }
                for n in &names {
                    check_tap(n).or_else(|m| self.bad(t.span(), m))?;
                }
                (names.first().cloned(), names[1..].to_vec())
            }
            (None, None) => (None, Vec::new()),
        };
        let failback = a.failback.as_ref().is_some_and(|b| *b.get_ref());
        let mut link_ips = Vec::new();
        for (name, addr) in &a.link_ip {
            check_tap(name).or_else(|m| self.bad(addr.span(), format!("link_ip: {m}")))?;
            let ip = addr.get_ref().parse::<std::net::Ipv4Addr>().or_else(|_| {
                self.bad(
                    addr.span(),
                    format!(
                        "link_ip {name} = {:?}: a reserved address is an IPv4 address",
                        addr.get_ref()
                    ),
                )
            })?;
            link_ips.push((name.clone(), ip));
        }
        let addresses = if flags.ips.is_empty() {
            self.cidrs(&a.addresses, "addresses")?
        } else {
            flags.ips.clone()
        };
        let host_addresses = if flags.host_ips.is_empty() {
            self.cidrs(&a.host_addresses, "host_addresses")?
        } else {
            flags.host_ips.clone()
        };
        if flags.host_ips.is_empty() {
            for h in &a.host_addresses {
                if let Ok((ip, _)) = parse_cidr(h.get_ref()) {
                    if addresses.iter().any(|(v, _)| *v == ip) {
                        return self.bad(
                            h.span(),
                            format!(
                                "host address {ip} is also a virtual address: the host side \
                                 needs its own address"
                            ),
                        );
                    }
                }
            }
        }
        let mac = match &a.mac {
            Some(m) => Some(parse_mac(m.get_ref()).or_else(|e| self.bad(m.span(), e))?),
            None => None,
        };
        let mtu = match &a.mtu {
            Some(m) => {
                let v = *m.get_ref();
                let min = if addresses.iter().any(|(ip, _)| ip.is_ipv6()) {
                    1280
                } else {
                    576
                };
                match usize::try_from(v) {
                    Ok(v) if (min..=65535).contains(&v) => Some(v),
                    _ => {
                        return self.bad(
                            m.span(),
                            format!(
                                "mtu {v} must be from {min} to 65535{}",
                                if min == 1280 {
                                    " (IPv6 needs at least 1280)"
                                } else {
                                    ""
                                }
                            ),
                        )
                    }
                }
            }
            None => None,
        };
        let processors = match (flags.processors, &a.processors) {
            (Some(n), _) => n,
            (None, Some(p)) => match usize::try_from(*p.get_ref()) {
                Ok(n) if (1..=MAX_PROCESSORS).contains(&n) => n,
                _ => {
                    return self.bad(
                        p.span(),
                        format!(
                            "processors = {} must be from 1 to {MAX_PROCESSORS}",
                            p.get_ref()
                        ),
                    )
                }
            },
            (None, None) => DEFAULT_PROCESSORS,
        };
        let f = &self.raw.filter;
        let mode = match (flags.filter, &f.mode) {
            (Some(m), _) => m,
            (None, Some(m)) => self.filter_mode(m)?,
            (None, None) => FilterMode::None,
        };
        let default_key = match &f.key {
            Some(k) => Some(self.key(k)?),
            None => None,
        };
        let mut filter = Filter::new(mode, processors);
        // Empty (at load, when the addresses may come from --ip): bound
        // addresses are checked by `resolve`.
        filter.set_addresses(addresses.iter().map(|(ip, _)| *ip).collect());
        self.shared_ports(&mut filter, &default_key)?;
        if let Some(on) = &f.port_share_enable {
            filter.set_port_share(*on.get_ref());
        }
        let congestion = match &a.congestion {
            Some(c) => Some(self.congestion(c)?),
            None => None,
        };
        let processor_restart = match &a.processor_restart {
            Some(r) => Some(
                parse_restart(r.get_ref())
                    .or_else(|e| self.bad(r.span(), format!("processor_restart: {e}")))?,
            ),
            None => None,
        };
        let tcp = self.tcp(&self.raw.tcp)?;
        let mut listeners: Vec<ListenerEntry> = Vec::new();
        let mut port_filters: HashMap<(Protocol, u16), (FilterMode, usize)> = HashMap::new();
        for l in &self.raw.listener {
            let entry = self.listener(l, &default_key, &mut filter, flags)?;
            let same_port = |e: &&ListenerEntry| e.spec.port == entry.spec.port;
            if let (Some(c), Some(span)) = (entry.congestion, &l.get_ref().congestion) {
                if let Some(other) = listeners
                    .iter()
                    .filter(same_port)
                    .find(|e| e.congestion.is_some_and(|o| o != c))
                {
                    return self.bad(
                        span.span(),
                        format!(
                            "port {} already runs congestion = \"{}\" (line {}): the \
                             listeners of one port share it",
                            entry.spec.port,
                            other.congestion.unwrap_or_default(),
                            other.line
                        ),
                    );
                }
            }
            if let Some(m) = &l.get_ref().filter {
                let (mode, at) = (self.filter_mode(m)?, (entry.spec.protocol, entry.spec.port));
                match port_filters.get(&at) {
                    Some((other, line)) if *other != mode => {
                        return self.bad(
                            m.span(),
                            format!(
                                "port {}/{} already has filter = \"{other}\" (line {line}): the \
                                 listeners of one port share it",
                                at.1, at.0
                            ),
                        )
                    }
                    Some(_) => {}
                    None => {
                        port_filters.insert(at, (mode, entry.line));
                        filter.set_port_mode(at.0, at.1, Some(mode));
                    }
                }
            }
            listeners.push(entry);
        }
        if complete {
            let whole = |m: String| self.err(None, ConfigErrorKind::Missing, m);
            let Some(tap) = tap else {
                return Err(whole(
                    "no TAP device: set tap = \"NAME\" in [adapter], or give --tap NAME".into(),
                ));
            };
            if addresses.is_empty() {
                return Err(whole(
                    "no virtual address: set addresses = [\"ADDR/PREFIX\", ...] in [adapter], \
                     or give --ip ADDR/PREFIX"
                        .into(),
                ));
            }
            return Ok(ResolvedConfig {
                tap,
                more_taps,
                failback,
                link_ips,
                addresses,
                host_addresses,
                mac,
                mtu,
                processors,
                mode,
                congestion,
                processor_restart,
                listeners,
                tcp,
                filter,
            });
        }
        Ok(ResolvedConfig {
            tap: tap.unwrap_or_default(),
            more_taps,
            failback,
            link_ips,
            addresses,
            host_addresses,
            mac,
            mtu,
            processors,
            mode,
            congestion,
            processor_restart,
            listeners,
            tcp,
            filter,
        })
    }

    /// A filter mode: `[filter] mode`, a listener's `filter`.
    fn filter_mode(&self, m: &Spanned<String>) -> Result<FilterMode, ConfigError> {
        FilterMode::from_name(m.get_ref()).map_or_else(
            || {
                let names = FilterMode::ALL.map(|m| format!("\"{m}\""));
                let msg = format!(
                    "unknown filter mode {:?}: choose {}",
                    m.get_ref(),
                    names.join(", ")
                );
                self.bad(m.span(), msg)
            },
            Ok,
        )
    }

    /// A `congestion = "..."` value.
    fn congestion(&self, c: &Spanned<String>) -> Result<CongestionAlgorithm, ConfigError> {
        CongestionAlgorithm::from_name(c.get_ref()).map_or_else(
            || {
                self.bad(
                    c.span(),
                    format!(
                        "unknown congestion control {:?}: choose \"cubic\", \"newreno\" or \"bbr\"",
                        c.get_ref()
                    ),
                )
            },
            Ok,
        )
    }

    fn cidrs(
        &self,
        list: &[Spanned<String>],
        what: &str,
    ) -> Result<Vec<(IpAddr, u8)>, ConfigError> {
        let mut out: Vec<(IpAddr, u8)> = Vec::new();
        for s in list {
            let (ip, prefix) =
                parse_cidr(s.get_ref()).or_else(|e| self.bad(s.span(), format!("{what}: {e}")))?;
            if out.iter().any(|(o, _)| *o == ip) {
                return self.bad(s.span(), format!("{what}: {ip} is given twice"));
            }
            out.push((ip, prefix));
        }
        Ok(out)
    }

    fn key(&self, k: &Spanned<String>) -> Result<FilterKey, ConfigError> {
        FilterKey::new(k.get_ref())
            .map_err(|e| self.err(Some(k.span()), ConfigErrorKind::BadKey, e.to_string()))
    }

    /// A list of shared ports and ranges, checked item by item.
    fn ranges(
        &self,
        list: &Option<Vec<Spanned<PortItem>>>,
    ) -> Result<Option<PortRanges>, ConfigError> {
        let Some(list) = list else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for item in list {
            let r = match item.get_ref() {
                PortItem::Port(p) => match u16::try_from(*p) {
                    Ok(p) if p != 0 => Ok(p..=p),
                    _ => Err(format!("{p} is not a port from 1 to 65535")),
                },
                PortItem::Range(s) => PortRanges::parse_item(s),
            };
            out.push(r.or_else(|e| self.bad(item.span(), format!("shared ports: {e}")))?);
        }
        Ok(Some(PortRanges::from_ranges(out)))
    }
}

fn f_mode_unset(raw: &RawFile) -> bool {
    raw.filter.mode.is_none()
}

/// A TAP name Linux accepts: 1 to 15 bytes, no '/', no white space.
fn check_tap(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("tap {name:?}: a TAP name is 1 to 15 characters"));
    }
    if name == "." || name == ".." || name.contains('/') || name.chars().any(char::is_whitespace) {
        return Err(format!(
            "tap {name:?}: a TAP name has no '/' or white space"
        ));
    }
    Ok(())
}

/// `"02:76:6e:00:00:01"` → bytes; a unicast, non-zero MAC.
fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("mac {s:?} is not six hex bytes like \"02:76:6e:00:00:01\"");
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if mac[0] & 1 == 1 {
        return Err(format!(
            "mac {s:?} is a multicast address: the first byte must be even (e.g. 02)"
        ));
    }
    if mac == [0; 6] {
        return Err(format!("mac {s:?} is all zeros"));
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = include_str!("../examples/web-4cpu.toml");
    const PAIRS: &str = include_str!("../examples/primary-backup.toml");
    const UDP: &str = include_str!("../examples/udp-per-address.toml");

    pub(super) const HEAD: &str = "[adapter]\n\
                        tap = \"t0\"\n\
                        addresses = [\"10.0.0.2/24\", \"10.0.0.3/24\"]\n\
                        processors = 4\n\
                        [filter]\n\
                        mode = \"round-robin\"\n\
                        key = \"web1\"\n\
                        tcp_ports = [\"80\", \"8000-8099\"]\n";
    // HEAD is 8 lines: the text after it starts on line 9.

    fn load_str(text: &str) -> Result<ConfigFile, ConfigError> {
        parse(text, Path::new("test.toml"))
    }

    pub(super) fn resolved(text: &str) -> ResolvedConfig {
        load_str(text)
            .and_then(|f| f.resolve(&Overrides::default()))
            .unwrap_or_else(|e| panic!("should load: {e}"))
    }

    /// The error for `text`, checked for its line; returns it for more checks.
    #[test]
    fn control_characters_the_file_quotes_are_escaped_in_its_errors() {
        // The `config` fuzz target's crash: a quoted key with tabs in it.
        let text = "'\u{ff}\tap\u{9e}\tap\"udp-echo' = 0\n";
        let e = parse(text, Path::new("x.toml")).expect_err("unknown fields");
        let msg = e.to_string();
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
        assert!(msg.contains("\\t"), "the tab shows as \\t: {msg:?}");
    }

    pub(super) fn error_at(text: &str, line: usize) -> ConfigError {
        let e = load_str(text).expect_err("should be refused");
        assert_eq!(e.at.map(|a| a.line), Some(line), "{e}");
        assert!(
            e.to_string().starts_with(&format!("test.toml:{line}:")),
            "{e}"
        );
        e
    }

    fn listener(body: &str) -> String {
        format!("{HEAD}[[listener]]\n{body}")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    // ---- the examples ----

    #[test]
    fn example_web_4cpu_loads_and_round_robins() {
        let mut c = resolved(WEB);
        assert_eq!(c.tap, "vnic0");
        assert_eq!(c.processors, 4);
        assert_eq!(c.mode, FilterMode::RoundRobin);
        assert_eq!(c.listeners.len(), 5);
        let got: Vec<usize> = (0..5)
            .filter_map(|_| c.filter.pick_for(Protocol::Tcp, ip("10.0.0.2"), 80))
            .map(|p| p.processor)
            .collect();
        assert_eq!(got, vec![0, 1, 2, 3, 0]);
        assert_eq!(
            c.tcp_serve_for(1).get(&80),
            Some(&ServeApp::Builtin(AppKind::Http))
        );
        assert_eq!(c.tcp_serve_for(1).get(&7), None);
        assert_eq!(c.tcp_serve().len(), 2);
        let keys: Vec<Option<String>> = c.filter.listing().into_iter().map(|l| l.key).collect();
        assert!(keys.iter().all(|k| k.as_deref() == Some("w*****")));
    }

    #[test]
    fn example_primary_backup_loads_and_takes_over() {
        let mut c = resolved(PAIRS);
        assert_eq!(c.mode, FilterMode::None);
        assert_eq!(
            c.tcp_serve_for(1).get(&80),
            Some(&ServeApp::Builtin(AppKind::Http)),
            "backup"
        );
        assert_eq!(
            c.tcp_serve_for(3).get(&7),
            Some(&ServeApp::Builtin(AppKind::Echo)),
            "backup"
        );
        let r = c.filter.set_up_report(0, false);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].port, r[0].to), (80, Some(1)));
        let r = c.filter.set_up_report(2, false);
        assert_eq!((r[0].port, r[0].to), (7, Some(3)));
        assert_eq!(
            c.filter
                .pick_for(Protocol::Tcp, ip("10.0.0.2"), 7)
                .map(|p| p.processor),
            Some(3)
        );
    }

    #[test]
    fn example_udp_per_address_loads_and_splits_by_address() {
        let mut c = resolved(UDP);
        let mut picks = |dst: &str| -> Vec<usize> {
            (0..3)
                .filter_map(|_| c.filter.pick_for(Protocol::Udp, ip(dst), 7))
                .map(|p| p.processor)
                .collect()
        };
        assert_eq!(picks("10.0.0.2"), vec![0, 1, 0]);
        assert_eq!(picks("10.0.0.3"), vec![2, 3, 2]);
        assert_eq!(c.udp_serve_for(2).get(&7), Some(&ServiceApp::UdpEcho));
        assert!(c.tcp_serve().is_empty());
    }

    // ---- a good file, flags over it ----

    #[test]
    fn good_file_loads_with_defaults() {
        let c = resolved(&listener(
            "port = 8080\nprocessor = 1\napp = \"echo\"\nbackup = 2\naddress = \"10.0.0.3\"\n",
        ));
        assert_eq!(c.listeners.len(), 1);
        let l = &c.listeners[0];
        assert_eq!(l.line, 9);
        assert_eq!(l.spec.protocol, Protocol::Tcp);
        assert_eq!(l.spec.address, Some(ip("10.0.0.3")));
        assert_eq!(l.spec.key, FilterKey::new("web1").ok(), "[filter] key");
        assert_eq!(c.mac, None);
        assert_eq!(c.mtu, None);
        let c = resolved("[adapter]\ntap = \"t0\"\naddresses = [\"10.0.0.2/24\"]\nmac = \"02:aa:bb:cc:dd:ee\"\nmtu = 9000\n");
        assert_eq!(c.mac, Some([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]));
        assert_eq!(c.mtu, Some(9000));
        assert_eq!(c.processors, DEFAULT_PROCESSORS);
        assert_eq!(
            c.mode,
            FilterMode::None,
            "filtering is off unless configured"
        );
    }

    #[test]
    fn tap_may_list_several_links() {
        let c =
            resolved("[adapter]\ntap = [\"vnicA\", \"vnicB\"]\naddresses = [\"10.0.0.2/24\"]\n");
        assert_eq!(c.tap, "vnicA");
        assert_eq!(c.more_taps, vec!["vnicB".to_string()]);
        let e = error_at("[adapter]\ntap = []\n", 2).to_string();
        assert!(e.contains("at least one TAP"), "{e}");
        let e = error_at("[adapter]\ntap = [\"ok\", \"a-very-long-tap-name\"]\n", 2).to_string();
        assert!(e.contains("1 to 15"), "{e}");
    }

    #[test]
    fn failback_and_reserved_addresses_come_from_the_adapter_section() {
        let c = resolved(
            "[adapter]\ntap = [\"vnicA\", \"vnicB\"]\naddresses = [\"10.0.0.2/24\"]\n\
             failback = true\nlink_ip = { vnicA = \"10.0.0.12\", vnicB = \"10.0.0.13\" }\n",
        );
        assert!(c.failback);
        assert_eq!(
            c.link_ips,
            vec![
                ("vnicA".to_string(), "10.0.0.12".parse().expect("ip")),
                ("vnicB".to_string(), "10.0.0.13".parse().expect("ip")),
            ]
        );
        let c = resolved("[adapter]\ntap = \"t0\"\naddresses = [\"10.0.0.2/24\"]\n");
        assert!(!c.failback && c.link_ips.is_empty(), "off unless set");
        let e = error_at("[adapter]\nlink_ip = { vnicA = \"fd00::12\" }\n", 2).to_string();
        assert!(e.contains("IPv4"), "{e}");
        let e = error_at("[adapter]\nlink_ip = { \"a/b\" = \"10.0.0.12\" }\n", 2).to_string();
        assert!(e.contains("link_ip"), "{e}");
        let e = error_at("[adapter]\nfailback = \"yes\"\n", 2).to_string();
        assert!(e.contains("bool"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let f = load_str(WEB).expect("loads");
        let c = f
            .resolve(&Overrides {
                tap: Some("other".into()),
                ips: vec![(ip("10.9.0.2"), 16)],
                host_ips: vec![(ip("10.9.0.1"), 16)],
                processors: Some(8),
                filter: None,
            })
            .expect("resolves");
        assert_eq!(c.tap, "other");
        assert_eq!(
            c.addresses.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            vec![ip("10.9.0.2")]
        );
        assert_eq!(c.host_addresses, vec![(ip("10.9.0.1"), 16)]);
        assert_eq!(c.processors, 8);
        assert_eq!(c.filter.processors(), 8);
    }

    #[test]
    fn flag_processors_below_a_listener_names_its_line() {
        let f = load_str(WEB).expect("loads");
        let e = f
            .resolve(&Overrides {
                processors: Some(2),
                ..Overrides::default()
            })
            .expect_err("listener on processor 2");
        let line = WEB
            .lines()
            .position(|l| l == "processor = 2")
            .map(|i| i + 1);
        assert_eq!(e.at.map(|a| a.line), line, "{e}");
        assert_eq!(
            e.message,
            "processor 2 does not exist (processors: 2) (--processors overrides [adapter] processors)"
        );
    }

    #[test]
    fn flag_filter_none_refuses_the_shared_port() {
        let f = load_str(WEB).expect("loads");
        let e = f
            .resolve(&Overrides {
                filter: Some(FilterMode::None),
                ..Overrides::default()
            })
            .expect_err("sharing needs round-robin");
        assert!(
            matches!(e.rule(), Some(RegisterError::PortInUse { .. })),
            "{e}"
        );
        assert!(
            e.message.ends_with("(--filter overrides [filter] mode)"),
            "{e}"
        );
    }

    #[test]
    fn flag_ips_must_still_hold_bound_addresses() {
        let f = load_str(UDP).expect("loads");
        let e = f
            .resolve(&Overrides {
                ips: vec![(ip("10.0.0.2"), 24)],
                ..Overrides::default()
            })
            .expect_err("10.0.0.3 is gone");
        assert_eq!(
            e.at.map(|a| a.line),
            UDP.lines()
                .position(|l| l == "address = \"10.0.0.3\"")
                .map(|i| i + 1)
        );
        assert!(
            e.message.ends_with("(--ip overrides [adapter] addresses)"),
            "{e}"
        );
    }

    #[test]
    fn missing_tap_or_addresses_are_named_at_resolve() {
        let f = load_str("[adapter]\naddresses = [\"10.0.0.2/24\"]\n").expect("loads");
        let e = f.resolve(&Overrides::default()).expect_err("no tap");
        assert_eq!(e.kind, ConfigErrorKind::Missing);
        assert_eq!(
            e.to_string(),
            "test.toml: no TAP device: set tap = \"NAME\" in [adapter], or give --tap NAME"
        );
        let ok = f.resolve(&Overrides {
            tap: Some("t0".into()),
            ..Overrides::default()
        });
        assert!(ok.is_ok());
        let f = load_str("[adapter]\ntap = \"t0\"\n").expect("loads");
        let e = f.resolve(&Overrides::default()).expect_err("no address");
        assert_eq!(e.kind, ConfigErrorKind::Missing);
        assert!(e.message.starts_with("no virtual address"), "{e}");
    }

    #[test]
    fn unreadable_file_is_named() {
        let e = load(Path::new("/nonexistent/vnic.toml")).expect_err("no file");
        assert_eq!(e.kind, ConfigErrorKind::Read);
        assert!(
            e.to_string()
                .starts_with("/nonexistent/vnic.toml: cannot read the config file:"),
            "{e}"
        );
    }

    // ---- TOML errors, with line and column ----

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = error_at("[adapter]\ntap = \"t0\"\nmtu == 1500\n", 3);
        assert_eq!(e.kind, ConfigErrorKind::Syntax);
        let e = error_at("[adapter\n", 1);
        assert_eq!(e.at.map(|a| a.column), Some(9));
        assert!(!e.message.contains('\n'), "one line: {e}");
    }

    #[test]
    fn wrong_type_is_named_with_line() {
        let e = error_at(
            &listener("port = \"eighty\"\napp = \"http\"\nprocessor = 0\n"),
            10,
        );
        assert_eq!(e.kind, ConfigErrorKind::Syntax);
        assert!(e.message.contains("expected i64"), "{e}");
    }

    #[test]
    fn unknown_key_is_a_typo_not_ignored() {
        let e = error_at("processors = 4\n", 1);
        assert!(e.message.starts_with("unknown field `processors`"), "{e}");
        let e = error_at(&listener("port = 80\napp = \"http\"\nprocesor = 0\n"), 12);
        assert!(e.message.contains("unknown field `procesor`"), "{e}");
    }

    #[test]
    fn missing_field_names_the_listener() {
        let e = error_at(&listener("port = 80\napp = \"http\"\n"), 9);
        assert_eq!(e.message, "missing field `processor`");
    }

    // ---- values ----

    #[test]
    fn bad_address_is_named_with_line() {
        let e = error_at(
            "[adapter]\ntap = \"t0\"\naddresses = [\"10.0.0.2/24\",\n  \"10.0.0.300/24\"]\n",
            4,
        );
        assert_eq!(e.kind, ConfigErrorKind::BadValue);
        assert_eq!(e.at.map(|a| a.column), Some(3));
        assert_eq!(
            e.message,
            "addresses: \"10.0.0.300\" is not an IPv4 or IPv6 address"
        );
        let e = error_at(
            "[adapter]\naddresses = [\"10.0.0.2/24\", \"10.0.0.2/16\"]\n",
            2,
        );
        assert_eq!(e.message, "addresses: 10.0.0.2 is given twice");
        let e = error_at(
            "[adapter]\naddresses = [\"10.0.0.2/24\"]\nhost_addresses = [\"10.0.0.2/24\"]\n",
            3,
        );
        assert!(e.message.contains("is also a virtual address"), "{e}");
        let e = error_at(
            &listener("port = 80\napp = \"http\"\nprocessor = 0\naddress = \"10.0.0.2/24\"\n"),
            13,
        );
        assert!(e.message.contains("has no /PREFIX"), "{e}");
    }

    #[test]
    fn bad_adapter_values_are_named_with_line() {
        let e = error_at("[adapter]\ntap = \"a-very-long-tap-name\"\n", 2);
        assert!(e.message.contains("1 to 15 characters"), "{e}");
        let e = error_at("[adapter]\nmac = \"01:00:00:00:00:01\"\n", 2);
        assert!(e.message.contains("multicast"), "{e}");
        let e = error_at("[adapter]\nmac = \"02:00:00:00:00\"\n", 2);
        assert!(e.message.contains("six hex bytes"), "{e}");
        let e = error_at("[adapter]\naddresses = [\"fd00::2/64\"]\nmtu = 1000\n", 3);
        assert_eq!(
            e.message,
            "mtu 1000 must be from 1280 to 65535 (IPv6 needs at least 1280)"
        );
        let e = error_at("[adapter]\nprocessors = 0\n", 2);
        assert_eq!(e.message, "processors = 0 must be from 1 to 256");
        let e = error_at("[filter]\nmode = \"rr\"\n", 2);
        assert_eq!(
            e.message,
            "unknown filter mode \"rr\": choose \"round-robin\", \"hash\", \"least-connections\", \"none\""
        );
        let e = error_at("[filter]\ntcp_ports = [80,\n \"9000-8000\"]\n", 3);
        assert_eq!(
            e.message,
            "shared ports: port range \"9000-8000\" runs backwards: write 8000-9000"
        );
        let e = error_at("[filter]\nudp_ports = [0]\n", 2);
        assert_eq!(e.message, "shared ports: 0 is not a port from 1 to 65535");
    }

    #[test]
    fn processor_restart_is_a_delay_or_off() {
        let with = |v: &str| {
            resolved(&HEAD.replace(
                "processors = 4\n",
                &format!("processors = 4\nprocessor_restart = \"{v}\"\n"),
            ))
        };
        let delay = std::time::Duration::from_millis(250);
        assert_eq!(
            with("250ms").processor_restart,
            Some(RestartPolicy { delay: Some(delay) })
        );
        assert_eq!(
            with("off").processor_restart,
            Some(RestartPolicy { delay: None })
        );
        assert_eq!(resolved(HEAD).processor_restart, None);
        let e = error_at("[adapter]\nprocessor_restart = \"soon\"\n", 2);
        assert!(e.message.starts_with("processor_restart: "), "{e}");
    }

    #[test]
    fn congestion_globally_and_per_listener() {
        let c = resolved(&format!(
            "{}[[listener]]\nport = 80\napp = \"http\"\nprocessor = 0\n\
             congestion = \"bbr\"\n[[listener]]\nport = 80\napp = \"http\"\n\
             processor = 1\n[[listener]]\nport = 8000\napp = \"echo\"\nprocessor = 0\n",
            HEAD.replace(
                "processors = 4\n",
                "processors = 4\ncongestion = \"newreno\"\n"
            )
        ));
        assert_eq!(c.congestion, Some(CongestionAlgorithm::NewReno));
        let ports = c.tcp_congestion();
        assert_eq!(ports.get(&80), Some(&CongestionAlgorithm::Bbr));
        assert_eq!(ports.get(&8000), None, "the global value covers it");
        assert_eq!(resolved(HEAD).congestion, None);
    }

    #[test]
    fn a_listener_filter_is_its_ports_policy() {
        let c = resolved(&listener(
            "port = 80\napp = \"http\"\nprocessor = 0\nfilter = \"least-connections\"\n\
             [[listener]]\nport = 80\napp = \"http\"\nprocessor = 1\n\
             [[listener]]\nport = 8000\napp = \"echo\"\nprocessor = 0\nfilter = \"hash\"\n",
        ));
        assert_eq!(c.mode, FilterMode::RoundRobin);
        assert_eq!(
            c.filter.port_mode(Protocol::Tcp, 80),
            FilterMode::LeastConnections
        );
        assert_eq!(c.filter.port_mode(Protocol::Tcp, 8000), FilterMode::Hash);
        assert_eq!(c.filter.port_mode(Protocol::Tcp, 7), FilterMode::RoundRobin);
        let e = error_at(
            &listener(
                "port = 80\napp = \"http\"\nprocessor = 0\nfilter = \"hash\"\n\
                 [[listener]]\nport = 80\napp = \"http\"\nprocessor = 1\n\
                 filter = \"none\"\n",
            ),
            18,
        );
        assert_eq!(
            e.message,
            "port 80/tcp already has filter = \"hash\" (line 9): the listeners of one port share it"
        );
        let e = error_at(
            &listener("port = 80\napp = \"http\"\nprocessor = 0\nfilter = \"rr\"\n"),
            13,
        );
        assert!(e.message.starts_with("unknown filter mode \"rr\""), "{e}");
    }

    #[test]
    fn bad_congestion_is_named_with_line() {
        let e = error_at("[adapter]\ncongestion = \"vegas\"\n", 2);
        assert_eq!(
            e.message,
            "unknown congestion control \"vegas\": choose \"cubic\", \"newreno\" or \"bbr\""
        );
        let e = error_at(
            &listener("port = 80\napp = \"http\"\nprocessor = 0\ncongestion = \"BBR\"\n"),
            13,
        );
        assert!(e.message.contains("unknown congestion control"), "{e}");
        let e = error_at(
            &listener(
                "port = 7\nprotocol = \"udp\"\napp = \"udp-echo\"\nprocessor = 0\n\
                 congestion = \"bbr\"\n",
            ),
            14,
        );
        assert_eq!(e.message, "congestion belongs to TCP listeners");
        let e = error_at(
            &listener(
                "port = 80\napp = \"http\"\nprocessor = 0\ncongestion = \"bbr\"\n\
                 [[listener]]\nport = 80\napp = \"http\"\nprocessor = 1\n\
                 congestion = \"cubic\"\n",
            ),
            18,
        );
        assert!(
            e.message
                .contains("port 80 already runs congestion = \"bbr\" (line 9)"),
            "{e}"
        );
    }

    #[test]
    fn key_too_long_is_named_with_line_and_not_shown() {
        let e = error_at("[filter]\nkey = \"secretkey9\"\n", 2);
        assert_eq!(e.kind, ConfigErrorKind::BadKey);
        assert_eq!(
            e.message,
            "bad filter key: it is 10 characters long (at most 8); a key is 1 to 8 letters or \
             digits, the first a letter"
        );
        assert!(!e.to_string().contains("secretkey9"));
        let e = error_at(
            &listener("port = 80\napp = \"http\"\nprocessor = 0\nkey = \"9lives\"\n"),
            13,
        );
        assert_eq!(e.kind, ConfigErrorKind::BadKey);
    }

    #[test]
    fn bad_listener_values_are_named_with_line() {
        let e = error_at(
            &listener("port = 70000\napp = \"http\"\nprocessor = 0\n"),
            10,
        );
        assert_eq!(e.message, "port 70000 must be from 1 to 65535");
        let e = error_at(
            &listener("port = 80\napp = \"http\"\nprocessor = 0\nprotocol = \"sctp\"\n"),
            13,
        );
        assert_eq!(
            e.message,
            "unknown protocol \"sctp\": choose \"tcp\" or \"udp\""
        );
        let e = error_at(&listener("port = 80\nprocessor = -1\napp = \"http\"\n"), 11);
        assert_eq!(e.message, "processor -1 is not a processor number");
    }

    #[test]
    fn proxy_and_exec_listeners_carry_their_targets_and_command() {
        let c = resolved(&format!(
            "{HEAD}[[listener]]\nport = 80\napp = \"proxy\"\nprocessor = 0\n\
             targets = [\"127.0.0.1:8080\", \"[::1]:8081\"]\n\
             [[listener]]\nport = 7\napp = \"exec\"\nprocessor = 1\ncommand = \"/bin/date -u 'a b'\"\n"
        ));
        assert_eq!(
            c.tcp_serve_for(0).get(&80),
            Some(&ServeApp::Proxy(vec![
                "127.0.0.1:8080".parse().expect("addr"),
                "[::1]:8081".parse().expect("addr")
            ]))
        );
        assert_eq!(
            c.tcp_serve_for(1).get(&7),
            Some(&ServeApp::Exec(vec![
                "/bin/date".into(),
                "-u".into(),
                "a b".into()
            ]))
        );
    }

    #[test]
    fn proxy_and_exec_keys_are_checked_with_their_line() {
        let e = error_at(&listener("port = 80\napp = \"proxy\"\nprocessor = 0\n"), 11);
        assert!(e.message.contains("needs targets"), "{e}");
        let e = error_at(
            &listener("port = 80\napp = \"proxy\"\nprocessor = 0\ntargets = [\"nowhere\"]\n"),
            13,
        );
        assert!(e.message.contains("\"nowhere\" is not ADDR:PORT"), "{e}");
        let e = error_at(
            &listener("port = 80\napp = \"http\"\nprocessor = 0\ntargets = [\"127.0.0.1:1\"]\n"),
            13,
        );
        assert!(
            e.message.contains("targets belong to app = \"proxy\""),
            "{e}"
        );
        let e = error_at(&listener("port = 7\napp = \"exec\"\nprocessor = 0\n"), 11);
        assert!(e.message.contains("needs command"), "{e}");
        let e = error_at(
            &listener("port = 7\napp = \"exec\"\nprocessor = 0\ncommand = \"'open\"\n"),
            13,
        );
        assert!(e.message.contains("exec command"), "{e}");
    }

    #[test]
    fn unknown_app_is_named_with_line() {
        let e = error_at(&listener("port = 21\napp = \"ftp\"\nprocessor = 0\n"), 11);
        assert_eq!(e.kind, ConfigErrorKind::UnknownApp);
        assert_eq!(
            e.message,
            "unknown app \"ftp\": choose echo, discard, chargen, http, proxy, exec, udp-echo"
        );
        let e = error_at(
            &listener("port = 7\nprotocol = \"udp\"\napp = \"echo\"\nprocessor = 0\n"),
            12,
        );
        assert_eq!(
            e.message,
            "app \"echo\" speaks TCP, but this listener is UDP: choose udp-echo"
        );
    }

    // ---- the filter's rules, on the listener's line ----

    #[test]
    fn listener_on_nonexistent_processor_is_named_with_line() {
        let e = error_at(&listener("port = 80\napp = \"http\"\nprocessor = 4\n"), 12);
        assert_eq!(
            e.rule(),
            Some(&RegisterError::NoSuchProcessor {
                processor: 4,
                count: 4
            })
        );
        assert_eq!(e.message, "processor 4 does not exist (processors: 4)");
        let e = error_at(
            &listener("port = 80\napp = \"http\"\nprocessor = 0\nbackup = 7\n"),
            13,
        );
        assert_eq!(e.message, "processor 7 does not exist (processors: 4)");
        let e = error_at(
            &listener("port = 80\napp = \"http\"\nprocessor = 0\nbackup = 0\n"),
            13,
        );
        assert!(
            e.message.contains("names the same processor as its backup"),
            "{e}"
        );
    }

    #[test]
    fn key_mismatch_is_named_at_the_key() {
        let text = format!(
            "{HEAD}[[listener]]\nport = 80\napp = \"http\"\nprocessor = 0\n\
             [[listener]]\nport = 80\napp = \"http\"\nprocessor = 1\nkey = \"other\"\n"
        );
        let e = error_at(&text, 17);
        assert_eq!(
            e.message,
            "port 80/tcp: key mismatch: listener on processor 1 presents a different filter \
             key than the listeners already sharing the port"
        );
    }

    #[test]
    fn port_outside_shared_ranges_is_named_with_line() {
        let text = format!(
            "{HEAD}[[listener]]\nport = 81\napp = \"http\"\nprocessor = 0\n\
             [[listener]]\nport = 81\napp = \"http\"\nprocessor = 1\n"
        );
        let e = error_at(&text, 14);
        assert!(
            matches!(e.rule(), Some(RegisterError::NotShared { .. })),
            "{e}"
        );
    }

    #[test]
    fn exclusive_port_without_filtering_is_named_with_line() {
        let text = "[[listener]]\nport = 80\napp = \"http\"\nprocessor = 0\n\
                    [[listener]]\nport = 80\napp = \"http\"\nprocessor = 1\n";
        let e = error_at(text, 6);
        assert_eq!(
            e.message,
            "port 80/tcp: in use: the listener on processor 0 has exclusive use of the port \
             (round-robin filtering is off), so processor 1 cannot listen on it (set mode = \
             \"round-robin\" in [filter] to share ports)"
        );
    }

    #[test]
    fn duplicate_listener_is_named_at_the_processor() {
        let text = format!(
            "{HEAD}[[listener]]\nport = 80\napp = \"http\"\nprocessor = 2\n\
             [[listener]]\nport = 80\napp = \"http\"\nprocessor = 2\n"
        );
        let e = error_at(&text, 16);
        assert_eq!(
            e.message,
            "port 80/tcp is already served on processor 2 (one listener per processor per port)"
        );
    }

    #[test]
    fn bound_address_not_ours_is_named_with_line() {
        let e = error_at(
            &listener("port = 80\napp = \"http\"\nprocessor = 0\naddress = \"10.0.0.9\"\n"),
            13,
        );
        assert_eq!(
            e.message,
            "port 80/tcp: the listener on processor 0 is bound to 10.0.0.9, which is not one of \
             the adapter's addresses (10.0.0.2, 10.0.0.3)"
        );
    }
}
