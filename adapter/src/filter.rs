//! The distribution filter: which processor gets a new connection (TCP) or
//! a datagram (UDP), and which listeners may share a port.
//!
//! Every rule lives here, after the HP NonStop TCP/IPv6 manual:
//!
//! - **Lines.** The listeners of one (protocol, port, bound address) stand
//!   in a line in registration order. With round-robin filtering the 1st
//!   new connection (or UDP datagram) goes to the 1st live listener in
//!   line, the 2nd to the 2nd, and so on, wrapping around; a listener that
//!   is down is skipped and rejoins at its own place. Without filtering
//!   (`none`, the NonStop default) the first live listener in line takes
//!   everything and the others stand by.
//! - **Policies beside round-robin** (`policy.rs`): `hash` places by a
//!   keyed hash of the 4-tuple modulo the live listeners of the line;
//!   `least-connections` gives a new connection to the live listener whose
//!   processor holds the fewest connections, ties in line order (UDP
//!   datagrams, which open no connection, go round-robin under it). A port
//!   may have a policy of its own ([`Filter::set_port_mode`]: a config
//!   file's per-port `filter`); the others follow [`Filter::mode`].
//! - **Addresses.** A listener bound to an address gets only the traffic
//!   for that address; wildcard listeners get the rest. Bound and wildcard
//!   listeners of one port stand in separate lines: traffic for address A
//!   goes to A's line while some listener in it is live, else to the
//!   wildcard line (a bound listener that is down holds nothing).
//! - **Sharing** ([`Filter::add_listener`]). A newcomer whose port and
//!   address overlap an existing listener's (same address, or either is
//!   the wildcard) is accepted only if round-robin filtering is on, it
//!   presents the same filter key as every listener it would share with,
//!   and the port lies in that key's shared ranges of its protocol (all
//!   ports when the key has none: each NonStop process has its own
//!   `=PTCPIP^FILTER^TCP^PORTS` / `UDP^PORTS` DEFINEs beside its key).
//!   Otherwise it is refused, as NonStop's bind gets EADDRINUSE: the
//!   first registrant has exclusive use.
//! - **Port sharing on different addresses** (the manual's
//!   `PORT-SHARE-ENABLE`, off by default): while it is off, listeners of
//!   one port bound to different addresses compete as if they overlapped,
//!   so the second is refused unless the sharing rules above let it in;
//!   [`Filter::set_port_share`] turns it on, and then different addresses
//!   never conflict.
//! - **One listener per processor per port** (and protocol), whatever the
//!   address.
//! - **Primary and backup.** A listener may name a backup processor. When
//!   the primary's processor fails, the backup takes over listening (same
//!   place in line) unless another listener already listens on that port
//!   in the backup's processor: then the takeover fails with
//!   [`RegisterError::BackupCollision`] and the listener is down. A backup
//!   already listening keeps the port against later claimants. When the
//!   primary's processor comes back, new traffic goes to the primary again.
//!   [`Filter::set_up_report`] says what moved.
//! - **The command line's group** ([`Filter::register`],
//!   [`Filter::register_group`]): `vnic up --serve` runs one application
//!   in every processor. Those listeners join the line whatever the mode,
//!   the key or the ranges (only the processor and duplicate rules apply),
//!   so `--filter none` behaves as before: the first live processor in
//!   line has exclusive use and the others stand by, taking over in line
//!   order when it goes down.
//!
//! A registered listener holds its port while its processor is down (its
//! process is expected back); only [`Filter::remove_listener`] frees it.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use vnic_stack::FourTuple;

mod listener;
mod policy;
mod register;
#[cfg(test)]
mod rules_tests;

pub use policy::{tuple_hash, Loads};

pub use listener::{
    Exclusive, FilterKey, ListenerId, ListenerInfo, ListenerSpec, ListenerState, PortRanges,
    Protocol, RegisterError, Takeover, TakeoverKind,
};
use register::SharedPorts;

/// The refusal type of [`Filter::register`], kept under its old name so
/// existing callers compile; it is [`RegisterError`].
pub type FilterError = RegisterError;

/// How new connections of a shared port are spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterMode {
    /// Strict cyclic order over the live listeners of the port.
    RoundRobin,
    /// A keyed hash of the 4-tuple modulo the live listeners, as
    /// receive-side scaling places flows.
    Hash,
    /// The live listener whose processor holds the fewest connections,
    /// ties in line order.
    LeastConnections,
    /// The first registered live listener takes every connection.
    None,
}

impl FilterMode {
    /// Every mode, in the order the command line lists them.
    pub const ALL: [FilterMode; 4] = [
        FilterMode::RoundRobin,
        FilterMode::Hash,
        FilterMode::LeastConnections,
        FilterMode::None,
    ];

    /// The names, for help texts and errors: "round-robin, hash,
    /// least-connections or none".
    pub const NAMES: &'static str = "round-robin, hash, least-connections or none";

    /// Parses the name used on the command line.
    pub fn from_name(s: &str) -> Option<FilterMode> {
        FilterMode::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FilterMode::RoundRobin => "round-robin",
            FilterMode::Hash => "hash",
            FilterMode::LeastConnections => "least-connections",
            FilterMode::None => "none",
        }
    }

    /// True if the mode shares a port among listeners (all but `none`).
    pub fn shares(self) -> bool {
        self != FilterMode::None
    }
}

impl std::fmt::Display for FilterMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the filter placed a new connection or a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    /// The processor that gets it.
    pub processor: usize,
    /// The listener's place in its line (0-based).
    pub slot: usize,
    /// The listener that gets it (its app label says what runs there).
    pub listener: ListenerId,
}

/// A registered listener and where it listens now.
#[derive(Debug, Clone)]
struct Listener {
    spec: ListenerSpec,
    /// The processor listening for it now: the primary, the backup after a
    /// takeover, or none.
    serving: Option<usize>,
    /// Why its backup could not take over, while that keeps it down.
    collision: Option<RegisterError>,
}

/// One place in a line, with its serving processor cached for `pick`.
#[derive(Debug, Clone, Copy)]
struct Member {
    id: ListenerId,
    serving: Option<usize>,
}

/// The listeners of one (protocol, port, address) in registration order.
#[derive(Debug, Default, Clone)]
struct Line {
    members: Vec<Member>,
    /// The place in line that gets the next new connection.
    next: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct LineKey {
    protocol: Protocol,
    port: u16,
    address: Option<IpAddr>,
}

/// The distribution filter of one adapter.
#[derive(Debug, Clone)]
pub struct Filter {
    mode: FilterMode,
    up: Vec<bool>,
    /// The adapter's addresses; a bound listener must use one (unchecked when empty).
    addresses: Vec<IpAddr>,
    /// Each filter key's shared ports; a key not here shares every port.
    shared: HashMap<FilterKey, SharedPorts>,
    /// `PORT-SHARE-ENABLE`: listeners bound to different addresses of one
    /// port never conflict. Off by default, as in the manual.
    port_share: bool,
    listeners: BTreeMap<ListenerId, Listener>,
    lines: HashMap<LineKey, Line>,
    /// TCP port → primary processors of its listeners, registration order.
    served: HashMap<u16, Vec<usize>>,
    next_id: u32,
    /// Ports with a policy of their own, over `mode`.
    port_modes: BTreeMap<(Protocol, u16), FilterMode>,
    /// The hash policy's secret key (random per filter).
    hash_key: [u8; 16],
    /// The processors' connection counts, for least-connections.
    loads: Option<Loads>,
}

/// What [`Filter::remove_listener`] removed, and what moved because of it
/// (a backup that collided with the removed listener may now take over).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The listener as it was just before removal.
    pub listener: ListenerInfo,
    /// Takeovers the removal allowed.
    pub takeovers: Vec<Takeover>,
}

impl Filter {
    /// A filter for `processors` processors, all up, no port served yet,
    /// every port shareable under every key, any bound address accepted,
    /// port sharing on different addresses off (the manual's default).
    pub fn new(mode: FilterMode, processors: usize) -> Filter {
        Filter {
            mode,
            up: vec![true; processors],
            addresses: Vec::new(),
            shared: HashMap::new(),
            port_share: false,
            listeners: BTreeMap::new(),
            lines: HashMap::new(),
            served: HashMap::new(),
            next_id: 1,
            port_modes: BTreeMap::new(),
            hash_key: rand::random(),
            loads: None,
        }
    }

    /// The mode in force (for every port without a policy of its own).
    pub fn mode(&self) -> FilterMode {
        self.mode
    }

    /// Changes the mode; the lines and their positions are kept (in `none`
    /// the first live listener of each line takes everything, the others
    /// stand by). Registrations already accepted are not re-checked.
    /// Ports with a policy of their own keep it.
    pub fn set_mode(&mut self, mode: FilterMode) {
        self.mode = mode;
    }

    /// Gives (`protocol`, `port`) a policy of its own (`None`: it follows
    /// [`Filter::mode`] again), for a config file's per-port `filter` and
    /// `vnic ctl filter MODE --port PORT`. Only placement follows it: who
    /// may share the port is still decided by [`Filter::mode`].
    pub fn set_port_mode(&mut self, protocol: Protocol, port: u16, mode: Option<FilterMode>) {
        match mode {
            Some(m) => self.port_modes.insert((protocol, port), m),
            None => self.port_modes.remove(&(protocol, port)),
        };
    }

    /// The policy that places (`protocol`, `port`)'s traffic.
    pub fn port_mode(&self, protocol: Protocol, port: u16) -> FilterMode {
        self.port_modes
            .get(&(protocol, port))
            .copied()
            .unwrap_or(self.mode)
    }

    /// The ports with a policy of their own, by protocol and port (what
    /// `vnic status` shows beside the mode).
    pub fn port_modes(&self) -> Vec<(Protocol, u16, FilterMode)> {
        self.port_modes
            .iter()
            .map(|(&(proto, port), &m)| (proto, port, m))
            .collect()
    }

    /// Sets the hash policy's key (random by default); for tests that
    /// want placements they can predict.
    pub fn set_hash_key(&mut self, key: [u8; 16]) {
        self.hash_key = key;
    }

    /// Tells least-connections how to read each processor's connections
    /// (without it every count reads 0 and the first live listener wins).
    pub fn set_loads(&mut self, loads: Loads) {
        self.loads = Some(loads);
    }

    /// How many processors the filter knows.
    pub fn processors(&self) -> usize {
        self.up.len()
    }

    /// Tells the filter the adapter's addresses, so a listener bound to
    /// another address is refused (empty: not checked).
    pub fn set_addresses(&mut self, addresses: Vec<IpAddr>) {
        self.addresses = addresses;
    }

    /// Registers a TCP wildcard listener of `port` on `processor` at the
    /// end of the line, as one of the command line's group (see
    /// [`Filter::register_group`]).
    pub fn register(&mut self, port: u16, processor: usize) -> Result<(), FilterError> {
        self.register_group(ListenerSpec::tcp(port, processor))
            .map(|_| ())
    }

    /// Registers a listener of the command line's group: one application
    /// in every processor. Only the processor, port, address and
    /// duplicate rules apply; the sharing rules (mode, key, ranges) do
    /// not, so with `none` the first live listener in line has exclusive
    /// use and the rest stand by.
    pub fn register_group(&mut self, spec: ListenerSpec) -> Result<ListenerId, RegisterError> {
        self.check_placement(&spec)?;
        Ok(self.insert(spec))
    }

    /// Registers a listener under every rule (sharing, key, ranges,
    /// address, one per processor per port); on refusal nothing changes.
    /// For the config file's `[[listener]]` and `vnic ctl listener add`.
    pub fn add_listener(&mut self, spec: ListenerSpec) -> Result<ListenerId, RegisterError> {
        self.check_placement(&spec)?;
        self.check_sharing(&spec)?;
        Ok(self.insert(spec))
    }

    /// Removes a listener: its place in line goes, the line's next pick
    /// stays on the listener that was due. A connection it holds is not
    /// touched (the flow table keeps it on its processor).
    pub fn remove_listener(&mut self, id: ListenerId) -> Result<Removed, RegisterError> {
        let info = self.info(id).ok_or(RegisterError::NoSuchListener { id })?;
        let Some(l) = self.listeners.remove(&id) else {
            return Err(RegisterError::NoSuchListener { id });
        };
        let key = line_key(&l.spec);
        if let Some(line) = self.lines.get_mut(&key) {
            if let Some(slot) = line.members.iter().position(|m| m.id == id) {
                line.members.remove(slot);
                if slot < line.next {
                    line.next -= 1;
                }
                if line.next >= line.members.len() {
                    line.next = 0;
                }
            }
            if line.members.is_empty() {
                self.lines.remove(&key);
            }
        }
        self.rebuild_served();
        let takeovers = self.recompute();
        Ok(Removed {
            listener: info,
            takeovers,
        })
    }

    /// The listener whose primary is `processor` on (`protocol`, `port`),
    /// for `vnic ctl listener remove PORT PROCESSOR`.
    pub fn listener_at(
        &self,
        protocol: Protocol,
        port: u16,
        processor: usize,
    ) -> Option<ListenerId> {
        self.listeners
            .iter()
            .find(|(_, l)| {
                l.spec.protocol == protocol && l.spec.port == port && l.spec.processor == processor
            })
            .map(|(id, _)| *id)
    }

    /// True if some TCP listener registered `port` (any address).
    pub fn serves(&self, port: u16) -> bool {
        self.served.get(&port).is_some_and(|l| !l.is_empty())
    }

    /// The ports of `protocol` with at least one listener, ascending.
    pub fn ports(&self, protocol: Protocol) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .listeners
            .values()
            .filter(|l| l.spec.protocol == protocol)
            .map(|l| l.spec.port)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Marks a processor up or down; a down processor gets no new
    /// connections, and backups take over for its listeners.
    pub fn set_up(&mut self, processor: usize, up: bool) {
        let _ = self.set_up_report(processor, up);
    }

    /// [`Filter::set_up`], saying which listeners moved to their backup,
    /// went back to their primary, went down, or collided in their backup's
    /// processor. Empty if nothing changed (or no such processor).
    pub fn set_up_report(&mut self, processor: usize, up: bool) -> Vec<Takeover> {
        match self.up.get_mut(processor) {
            Some(u) if *u != up => *u = up,
            _ => return Vec::new(),
        }
        self.recompute()
    }

    /// True if `processor` exists and is up.
    pub fn is_up(&self, processor: usize) -> bool {
        self.up.get(processor).copied().unwrap_or(false)
    }

    /// [`Filter::pick_flow`] for a sender nobody knows (0.0.0.0:0): for
    /// callers that have no 4-tuple (tests, reports). Under `hash` every
    /// such pick lands on the same listener.
    pub fn pick_for(&mut self, protocol: Protocol, dst: IpAddr, port: u16) -> Option<Pick> {
        let tuple = FourTuple {
            local: SocketAddr::new(dst, port),
            remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        };
        self.pick_flow(protocol, &tuple)
    }

    /// Chooses the processor for a new TCP connection, or for one UDP
    /// datagram, on `tuple` (its local side is the address and port it was
    /// sent to), by the port's policy, and advances that line: the
    /// listeners bound to the address if one of them is live, else the
    /// wildcard listeners. None if nobody live listens there (TCP: answer
    /// RST; UDP: port unreachable).
    pub fn pick_flow(&mut self, protocol: Protocol, tuple: &FourTuple) -> Option<Pick> {
        let (dst, port) = (tuple.local.ip(), tuple.local.port());
        let mut mode = self.port_mode(protocol, port);
        if mode == FilterMode::LeastConnections && protocol == Protocol::Udp {
            // A datagram opens no connection to count.
            mode = FilterMode::RoundRobin;
        }
        let how = How {
            mode,
            hash: match mode {
                FilterMode::Hash => tuple_hash(&self.hash_key, tuple),
                _ => 0,
            },
            loads: self.loads.as_ref(),
        };
        let bound = LineKey {
            protocol,
            port,
            address: Some(dst),
        };
        if let Some(p) = self.lines.get_mut(&bound).and_then(|l| pick_in(&how, l)) {
            return Some(p);
        }
        let wildcard = LineKey {
            protocol,
            port,
            address: None,
        };
        self.lines.get_mut(&wildcard).and_then(|l| pick_in(&how, l))
    }

    /// The primary processors of the TCP listeners of `port`, in
    /// registration order (any address).
    pub fn listeners(&self, port: u16) -> &[usize] {
        self.served.get(&port).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every listener, ordered by protocol, port, address and place in
    /// line: the listener table of `vnic status`.
    pub fn listing(&self) -> Vec<ListenerInfo> {
        let mut keys: Vec<&LineKey> = self.lines.keys().collect();
        keys.sort();
        keys.into_iter()
            .flat_map(|k| {
                let line = &self.lines[k];
                (0..line.members.len()).filter_map(move |slot| self.info_at(line, slot))
            })
            .collect()
    }

    /// One listener's line of the table.
    pub fn info(&self, id: ListenerId) -> Option<ListenerInfo> {
        let l = self.listeners.get(&id)?;
        let line = self.lines.get(&line_key(&l.spec))?;
        let slot = line.members.iter().position(|m| m.id == id)?;
        self.info_at(line, slot)
    }

    fn info_at(&self, line: &Line, slot: usize) -> Option<ListenerInfo> {
        let m = line.members.get(slot)?;
        let l = self.listeners.get(&m.id)?;
        let first_live = line.members.iter().position(|m| m.serving.is_some());
        let state = match l.serving {
            None => ListenerState::Down,
            Some(p) if p != l.spec.processor => ListenerState::MovedToBackup,
            Some(_)
                if self.port_mode(l.spec.protocol, l.spec.port) == FilterMode::None
                    && first_live != Some(slot) =>
            {
                ListenerState::Standby
            }
            Some(_) => ListenerState::Listening,
        };
        Some(ListenerInfo {
            id: m.id,
            protocol: l.spec.protocol,
            port: l.spec.port,
            address: l.spec.address,
            processor: l.spec.processor,
            backup: l.spec.backup,
            serving: l.serving,
            key: l.spec.key.as_ref().map(FilterKey::masked),
            app: l.spec.app.clone(),
            state,
        })
    }

    /// The rules every registration obeys: a real port, existing
    /// processors, a backup elsewhere, an address of ours, one listener
    /// per processor per port.
    fn check_placement(&self, spec: &ListenerSpec) -> Result<(), RegisterError> {
        let (protocol, port, processor) = (spec.protocol, spec.port, spec.processor);
        if port == 0 {
            return Err(RegisterError::BadPort { protocol });
        }
        let count = self.up.len();
        for p in std::iter::once(processor).chain(spec.backup) {
            if p >= count {
                return Err(RegisterError::NoSuchProcessor {
                    processor: p,
                    count,
                });
            }
        }
        if spec.backup == Some(processor) {
            return Err(RegisterError::BackupIsPrimary {
                protocol,
                port,
                processor,
            });
        }
        if let Some(address) = spec.address {
            if !self.addresses.is_empty() && !self.addresses.contains(&address) {
                let known: Vec<String> = self.addresses.iter().map(ToString::to_string).collect();
                return Err(RegisterError::AddressNotOurs {
                    protocol,
                    port,
                    processor,
                    address,
                    known: known.join(", "),
                });
            }
        }
        let taken = self.listeners.values().any(|l| {
            l.spec.protocol == protocol
                && l.spec.port == port
                && (l.spec.processor == processor || l.serving == Some(processor))
        });
        if taken {
            return Err(RegisterError::DuplicateListener {
                protocol,
                port,
                processor,
            });
        }
        Ok(())
    }

    /// The sharing rules: who may join the listeners it competes with
    /// (those whose address overlaps; with port sharing on different
    /// addresses off, every listener of the port).
    fn check_sharing(&self, spec: &ListenerSpec) -> Result<(), RegisterError> {
        let (protocol, port) = (spec.protocol, spec.port);
        let competing: Vec<&Listener> = self
            .listeners
            .values()
            .filter(|l| {
                l.spec.protocol == protocol
                    && l.spec.port == port
                    && (!self.port_share || overlap(l.spec.address, spec.address))
            })
            .collect();
        let Some(first) = competing.first() else {
            return Ok(());
        };
        let refused = self.sharing_refusal(spec, &competing);
        // Only listeners bound elsewhere: PORT-SHARE-ENABLE is what refuses.
        match refused {
            Some(_)
                if !competing
                    .iter()
                    .any(|l| overlap(l.spec.address, spec.address)) =>
            {
                Err(RegisterError::PortInUse {
                    protocol,
                    port,
                    processor: spec.processor,
                    holder: first.spec.processor,
                    reason: Exclusive::OtherAddress,
                })
            }
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Puts an accepted listener at the end of its line.
    fn insert(&mut self, spec: ListenerSpec) -> ListenerId {
        let id = ListenerId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        self.lines
            .entry(line_key(&spec))
            .or_default()
            .members
            .push(Member { id, serving: None });
        self.listeners.insert(
            id,
            Listener {
                spec,
                serving: None,
                collision: None,
            },
        );
        self.rebuild_served();
        // Only the newcomer can change: primaries keep their processors,
        // and backups already listening keep theirs.
        let _ = self.recompute();
        id
    }

    fn rebuild_served(&mut self) {
        self.served.clear();
        for l in self.listeners.values() {
            if l.spec.protocol == Protocol::Tcp {
                self.served
                    .entry(l.spec.port)
                    .or_default()
                    .push(l.spec.processor);
            }
        }
    }

    /// Works out where every listener listens, from the processors' state:
    /// a primary in its live processor first; then, for the others, the
    /// backup in its live processor unless the port is taken there (a
    /// backup already listening keeps it; the rest go by registration
    /// order). Returns what changed.
    fn recompute(&mut self) -> Vec<Takeover> {
        let mut serving: HashMap<ListenerId, usize> = HashMap::new();
        let mut taken: HashMap<(Protocol, u16, usize), ListenerId> = HashMap::new();
        let mut orphans = Vec::new();
        for (id, l) in &self.listeners {
            let p = l.spec.processor;
            if self.is_up(p) {
                serving.insert(*id, p);
                taken.insert((l.spec.protocol, l.spec.port, p), *id);
            } else {
                let incumbent = l.serving.is_some() && l.serving == l.spec.backup;
                orphans.push((!incumbent, *id));
            }
        }
        orphans.sort_unstable();
        let mut collisions: HashMap<ListenerId, RegisterError> = HashMap::new();
        for (_, id) in orphans {
            let Some(l) = self.listeners.get(&id) else {
                continue;
            };
            let Some(b) = l.spec.backup.filter(|b| self.is_up(*b)) else {
                continue;
            };
            let slot = (l.spec.protocol, l.spec.port, b);
            match taken.get(&slot) {
                Some(holder) => {
                    collisions.insert(
                        id,
                        RegisterError::BackupCollision {
                            protocol: l.spec.protocol,
                            port: l.spec.port,
                            listener: id,
                            primary: l.spec.processor,
                            backup: b,
                            holder: *holder,
                        },
                    );
                }
                None => {
                    serving.insert(id, b);
                    taken.insert(slot, id);
                }
            }
        }
        let mut report = Vec::new();
        for (id, l) in self.listeners.iter_mut() {
            let to = serving.get(id).copied();
            let collision = collisions.remove(id);
            let moved = l.serving != to;
            let new_collision = collision.is_some() && collision != l.collision;
            if moved || new_collision {
                let kind = match (&collision, to) {
                    (Some(e), _) => TakeoverKind::Collision(e.clone()),
                    (None, None) => TakeoverKind::Down,
                    (None, Some(p)) if p == l.spec.processor => TakeoverKind::BackToPrimary,
                    (None, Some(_)) => TakeoverKind::MovedToBackup,
                };
                report.push(Takeover {
                    listener: *id,
                    protocol: l.spec.protocol,
                    port: l.spec.port,
                    app: l.spec.app.clone(),
                    from: l.serving,
                    to,
                    kind,
                });
            }
            l.serving = to;
            l.collision = collision;
        }
        for line in self.lines.values_mut() {
            for m in &mut line.members {
                m.serving = serving.get(&m.id).copied();
            }
        }
        report
    }
}

fn line_key(spec: &ListenerSpec) -> LineKey {
    LineKey {
        protocol: spec.protocol,
        port: spec.port,
        address: spec.address,
    }
}

/// Two listeners of one port compete for the same traffic unless both are
/// bound, to different addresses.
fn overlap(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// What one pick goes by: the policy, the tuple's hash (hash policy) and
/// the processors' counts (least-connections).
struct How<'a> {
    mode: FilterMode,
    hash: u64,
    loads: Option<&'a Loads>,
}

/// The pick within one line, per the policy; advances a round-robin line.
fn pick_in(how: &How<'_>, line: &mut Line) -> Option<Pick> {
    let n = line.members.len();
    let at = |slot: usize| {
        let m = line.members.get(slot)?;
        m.serving.map(|processor| Pick {
            processor,
            slot,
            listener: m.id,
        })
    };
    let live = || {
        line.members
            .iter()
            .enumerate()
            .filter_map(|(slot, m)| Some((slot, m.serving?)))
    };
    match how.mode {
        FilterMode::None => (0..n).find_map(at),
        FilterMode::RoundRobin => {
            let start = line.next % n.max(1);
            let pick = (0..n).map(|i| (start + i) % n).find_map(at)?;
            line.next = (pick.slot + 1) % n;
            Some(pick)
        }
        FilterMode::Hash => at(policy::hash_pick(live().map(|(slot, _)| slot), how.hash)?),
        FilterMode::LeastConnections => at(policy::least_pick(live(), how.loads)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn four(mode: FilterMode) -> Filter {
        let mut f = Filter::new(mode, 4);
        for p in 0..4 {
            f.register(80, p).expect("register");
        }
        f
    }

    /// The pick the RX thread makes (`Filter::pick_for`) for a new TCP
    /// connection to `port` at an address no listener is bound to: the
    /// wildcard listeners' line.
    fn pick(f: &mut Filter, port: u16) -> Option<Pick> {
        f.pick_for(Protocol::Tcp, IpAddr::from([192, 0, 2, 1]), port)
    }

    fn picks(f: &mut Filter, port: u16, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| pick(f, port).map(|p| p.processor).unwrap_or(usize::MAX))
            .collect()
    }

    pub(super) fn picks_for(
        f: &mut Filter,
        proto: Protocol,
        dst: &str,
        port: u16,
        n: usize,
    ) -> Vec<usize> {
        let dst: IpAddr = dst.parse().expect("address");
        (0..n)
            .map(|_| {
                f.pick_for(proto, dst, port)
                    .map(|p| p.processor)
                    .unwrap_or(usize::MAX)
            })
            .collect()
    }

    pub(super) fn key(k: &str) -> Option<FilterKey> {
        Some(FilterKey::new(k).expect("good key"))
    }

    pub(super) fn spec(
        proto: Protocol,
        port: u16,
        processor: usize,
        k: Option<&str>,
    ) -> ListenerSpec {
        ListenerSpec {
            protocol: proto,
            port,
            processor,
            backup: None,
            address: None,
            key: k.and_then(key),
            app: "app".into(),
        }
    }

    pub(super) fn tcp(port: u16, processor: usize, k: Option<&str>) -> ListenerSpec {
        spec(Protocol::Tcp, port, processor, k)
    }

    pub(super) fn with_backup(mut s: ListenerSpec, backup: usize) -> ListenerSpec {
        s.backup = Some(backup);
        s
    }

    pub(super) fn bound(mut s: ListenerSpec, addr: &str) -> ListenerSpec {
        s.address = Some(addr.parse().expect("address"));
        s
    }

    fn slot_and_cpu(p: Option<Pick>) -> Option<(usize, usize)> {
        p.map(|p| (p.processor, p.slot))
    }

    // ---- the line (command-line group, as before) ----

    #[test]
    fn round_robin_cycles_over_four_and_wraps() {
        let mut f = four(FilterMode::RoundRobin);
        assert_eq!(picks(&mut f, 80, 10), vec![0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
    }

    #[test]
    fn round_robin_slot_is_place_in_line() {
        let mut f = Filter::new(FilterMode::RoundRobin, 4);
        f.register(80, 2).expect("register");
        f.register(80, 0).expect("register");
        assert_eq!(slot_and_cpu(pick(&mut f, 80)), Some((2, 0)));
        assert_eq!(slot_and_cpu(pick(&mut f, 80)), Some((0, 1)));
        assert_eq!(slot_and_cpu(pick(&mut f, 80)), Some((2, 0)));
    }

    #[test]
    fn each_port_has_its_own_line() {
        let mut f = four(FilterMode::RoundRobin);
        for p in 0..4 {
            f.register(7, p).expect("register");
        }
        assert_eq!(picks(&mut f, 80, 2), vec![0, 1]);
        assert_eq!(picks(&mut f, 7, 1), vec![0]);
        assert_eq!(picks(&mut f, 80, 1), vec![2]);
    }

    #[test]
    fn none_gives_everything_to_first_registered() {
        let mut f = Filter::new(FilterMode::None, 4);
        for p in [3, 1, 0, 2] {
            f.register(80, p).expect("register");
        }
        assert_eq!(picks(&mut f, 80, 8), vec![3; 8]);
    }

    #[test]
    fn down_processor_is_skipped_and_rejoins_in_place() {
        let mut f = four(FilterMode::RoundRobin);
        assert_eq!(picks(&mut f, 80, 1), vec![0]);
        f.set_up(1, false);
        assert_eq!(picks(&mut f, 80, 6), vec![2, 3, 0, 2, 3, 0]);
        f.set_up(1, true);
        assert_eq!(picks(&mut f, 80, 4), vec![1, 2, 3, 0]);
    }

    #[test]
    fn none_falls_to_next_live_listener() {
        let mut f = four(FilterMode::None);
        f.set_up(0, false);
        assert_eq!(picks(&mut f, 80, 3), vec![1, 1, 1]);
    }

    // ---- hash and least-connections ----

    fn flow(port: u16) -> FourTuple {
        FourTuple {
            local: "10.0.0.2:80".parse().expect("local"),
            remote: SocketAddr::new("10.0.0.1".parse().expect("ip"), port),
        }
    }

    fn flow_picks(f: &mut Filter, ports: std::ops::Range<u16>) -> Vec<usize> {
        ports
            .map(|p| {
                f.pick_flow(Protocol::Tcp, &flow(p))
                    .map_or(usize::MAX, |p| p.processor)
            })
            .collect()
    }

    #[test]
    fn hash_is_stable_per_tuple_and_spreads() {
        let mut f = four(FilterMode::Hash);
        f.set_hash_key([7; 16]);
        let first = flow_picks(&mut f, 40000..44000);
        assert_eq!(
            flow_picks(&mut f, 40000..44000),
            first,
            "same tuple, same place"
        );
        for k in 0..4 {
            let n = first.iter().filter(|p| **p == k).count();
            assert!((800..1200).contains(&n), "processor {k} got {n} of 4000");
        }
        let mut g = four(FilterMode::Hash);
        g.set_hash_key([8; 16]);
        assert_ne!(
            flow_picks(&mut g, 40000..44000),
            first,
            "another key, another spread"
        );
    }

    #[test]
    fn hash_spreads_a_down_listeners_share_over_the_others() {
        let mut f = four(FilterMode::Hash);
        f.set_up(1, false);
        let picks = flow_picks(&mut f, 40000..43000);
        assert!(!picks.contains(&1), "a down listener gets nothing");
        for k in [0, 2, 3] {
            let n = picks.iter().filter(|p| **p == k).count();
            assert!((800..1200).contains(&n), "processor {k} got {n} of 3000");
        }
        f.set_up(1, true);
        assert!(flow_picks(&mut f, 40000..41000).contains(&1), "back in");
    }

    fn loads(counts: &std::sync::Arc<Vec<std::sync::atomic::AtomicU64>>) -> Loads {
        let c = counts.clone();
        Loads::new(move |k| {
            c.get(k)
                .map_or(0, |n| n.load(std::sync::atomic::Ordering::Relaxed))
        })
    }

    #[test]
    fn least_connections_picks_fewest_ties_in_line_order_skips_down() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let counts: std::sync::Arc<Vec<AtomicU64>> =
            std::sync::Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
        let mut f = Filter::new(FilterMode::LeastConnections, 4);
        for p in [2, 0, 3, 1] {
            f.register(80, p).expect("register");
        }
        f.set_loads(loads(&counts));
        assert_eq!(picks(&mut f, 80, 2), vec![2, 2], "all equal: first in line");
        let set = |v: [u64; 4]| {
            for (c, n) in counts.iter().zip(v) {
                c.store(n, Ordering::Relaxed);
            }
        };
        set([3, 1, 2, 1]);
        assert_eq!(
            picks(&mut f, 80, 1),
            vec![3],
            "1 and 3 tie: 3 is before 1 in line"
        );
        set([3, 1, 2, 2]);
        assert_eq!(picks(&mut f, 80, 1), vec![1], "the fewest");
        f.set_up(1, false);
        assert_eq!(
            picks(&mut f, 80, 1),
            vec![2],
            "1 is down: 2 and 3 tie, 2 first"
        );
        set([0, 0, 0, 0]);
        f.set_up(2, false);
        assert_eq!(picks(&mut f, 80, 1), vec![0]);
        for p in 0..4 {
            f.set_up(p, false);
        }
        assert_eq!(pick(&mut f, 80), None);
    }

    #[test]
    fn least_connections_follows_the_counts_as_they_grow() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let counts: std::sync::Arc<Vec<AtomicU64>> =
            std::sync::Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
        let mut f = four(FilterMode::LeastConnections);
        f.set_loads(loads(&counts));
        // As the RX thread counts each placed SYN in flight: a burst spreads.
        let mut got = Vec::new();
        for _ in 0..8 {
            let p = pick(&mut f, 80).expect("pick").processor;
            counts[p].fetch_add(1, Ordering::Relaxed);
            got.push(p);
        }
        assert_eq!(got, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        counts[2].store(0, Ordering::Relaxed);
        assert_eq!(picks(&mut f, 80, 1), vec![2], "2's connections closed");
    }

    #[test]
    fn a_port_may_have_a_policy_of_its_own() {
        let mut f = four(FilterMode::RoundRobin);
        for p in 0..4 {
            f.register(7, p).expect("register");
        }
        f.set_port_mode(Protocol::Tcp, 7, Some(FilterMode::None));
        assert_eq!(f.port_mode(Protocol::Tcp, 7), FilterMode::None);
        assert_eq!(f.port_mode(Protocol::Tcp, 80), FilterMode::RoundRobin);
        assert_eq!(picks(&mut f, 7, 3), vec![0, 0, 0]);
        assert_eq!(picks(&mut f, 80, 3), vec![0, 1, 2]);
        assert_eq!(f.port_modes(), vec![(Protocol::Tcp, 7, FilterMode::None)]);
        let states: Vec<&str> = f
            .listing()
            .into_iter()
            .filter(|l| l.port == 7)
            .map(|l| l.state.name())
            .collect();
        assert_eq!(states, vec!["listening", "standby", "standby", "standby"]);
        f.set_mode(FilterMode::Hash);
        assert_eq!(f.port_mode(Protocol::Tcp, 7), FilterMode::None, "kept");
        f.set_port_mode(Protocol::Tcp, 7, None);
        assert_eq!(f.port_mode(Protocol::Tcp, 7), FilterMode::Hash);
        assert!(f.port_modes().is_empty());
    }

    #[test]
    fn least_connections_sends_datagrams_round_robin() {
        let mut f = Filter::new(FilterMode::LeastConnections, 3);
        for p in 0..3 {
            f.add_listener(spec(Protocol::Udp, 7, p, Some("u")))
                .expect("udp");
        }
        assert_eq!(
            picks_for(&mut f, Protocol::Udp, "10.0.0.2", 7, 4),
            vec![0, 1, 2, 0]
        );
    }

    #[test]
    fn every_mode_but_none_shares_and_names_round_trip() {
        for m in FilterMode::ALL {
            assert_eq!(FilterMode::from_name(m.name()), Some(m));
            let mut f = Filter::new(m, 2);
            f.add_listener(tcp(80, 0, Some("k"))).expect("first");
            assert_eq!(f.add_listener(tcp(80, 1, Some("k"))).is_ok(), m.shares());
        }
        assert_eq!(FilterMode::from_name("lc"), None);
    }

    #[test]
    fn unserved_port_and_all_down_pick_nothing() {
        let mut f = four(FilterMode::RoundRobin);
        assert_eq!(pick(&mut f, 81), None);
        assert!(!f.serves(81));
        for p in 0..4 {
            f.set_up(p, false);
        }
        assert_eq!(pick(&mut f, 80), None);
    }

    #[test]
    fn duplicate_listener_refused() {
        let mut f = four(FilterMode::RoundRobin);
        let e = f.register(80, 2).expect_err("duplicate");
        assert_eq!(
            e,
            FilterError::DuplicateListener {
                protocol: Protocol::Tcp,
                port: 80,
                processor: 2
            }
        );
        assert_eq!(
            e.to_string(),
            "port 80/tcp is already served on processor 2 (one listener per processor per port)"
        );
        let e = f.register(80, 9).expect_err("no such processor");
        assert_eq!(
            e,
            FilterError::NoSuchProcessor {
                processor: 9,
                count: 4
            }
        );
        assert_eq!(e.to_string(), "processor 9 does not exist (processors: 4)");
    }

    #[test]
    fn mode_switch_at_run_time() {
        let mut f = four(FilterMode::RoundRobin);
        assert_eq!(picks(&mut f, 80, 2), vec![0, 1]);
        f.set_mode(FilterMode::None);
        assert_eq!(picks(&mut f, 80, 2), vec![0, 0]);
        f.set_mode(FilterMode::RoundRobin);
        assert_eq!(picks(&mut f, 80, 2), vec![2, 3]);
    }

    #[test]
    fn group_listeners_in_none_mode_stand_by() {
        let f = four(FilterMode::None);
        let states: Vec<&str> = f.listing().iter().map(|l| l.state.name()).collect();
        assert_eq!(states, vec!["listening", "standby", "standby", "standby"]);
        assert_eq!(f.listeners(80), &[0, 1, 2, 3]);
    }

    // ---- sharing rules (add_listener) ----

    #[test]
    fn same_key_shares_the_port_round_robin() {
        let mut f = Filter::new(FilterMode::RoundRobin, 4);
        for p in 0..4 {
            f.add_listener(tcp(80, p, Some("web1"))).expect("shares");
        }
        assert_eq!(picks(&mut f, 80, 5), vec![0, 1, 2, 3, 0]);
    }

    #[test]
    fn none_mode_second_listener_gets_port_in_use() {
        let mut f = Filter::new(FilterMode::None, 4);
        f.add_listener(tcp(80, 0, Some("web1"))).expect("first");
        let e = f
            .add_listener(tcp(80, 1, Some("web1")))
            .expect_err("exclusive");
        assert_eq!(
            e,
            RegisterError::PortInUse {
                protocol: Protocol::Tcp,
                port: 80,
                processor: 1,
                holder: 0,
                reason: Exclusive::FilteringOff
            }
        );
        assert_eq!(
            e.to_string(),
            "port 80/tcp: in use: the listener on processor 0 has exclusive use of the port \
             (round-robin filtering is off), so processor 1 cannot listen on it"
        );
        assert_eq!(picks(&mut f, 80, 3), vec![0, 0, 0]);
    }

    #[test]
    fn key_mismatch_is_refused() {
        let mut f = Filter::new(FilterMode::RoundRobin, 4);
        f.add_listener(tcp(80, 0, Some("web1"))).expect("first");
        f.add_listener(tcp(80, 1, Some("web1"))).expect("second");
        let e = f
            .add_listener(tcp(80, 2, Some("other")))
            .expect_err("mismatch");
        assert_eq!(
            e.to_string(),
            "port 80/tcp: key mismatch: listener on processor 2 presents a different filter \
             key than the listeners already sharing the port"
        );
        assert!(!e.to_string().contains("other"), "never print a key");
        assert_eq!(f.listing().len(), 2, "nothing changed");
    }

    #[test]
    fn holder_without_key_has_exclusive_use() {
        let mut f = Filter::new(FilterMode::RoundRobin, 4);
        f.add_listener(tcp(80, 0, None)).expect("first");
        let e = f
            .add_listener(tcp(80, 1, Some("web1")))
            .expect_err("exclusive");
        assert_eq!(
            e.to_string(),
            "port 80/tcp: in use: the listener on processor 0 has exclusive use of the port \
             (it presents no filter key), so processor 1 cannot listen on it"
        );
    }

    #[test]
    fn newcomer_without_key_cannot_share() {
        let mut f = Filter::new(FilterMode::RoundRobin, 4);
        f.add_listener(tcp(80, 0, Some("web1"))).expect("first");
        let e = f.add_listener(tcp(80, 1, None)).expect_err("no key");
        assert_eq!(
            e.to_string(),
            "port 80/tcp: in use: the listener on processor 0 has exclusive use of the port \
             (the newcomer presents no filter key), so processor 1 cannot listen on it"
        );
    }

    #[test]
    fn command_line_group_holds_its_port_against_newcomers() {
        let mut f = four(FilterMode::RoundRobin);
        let e = f
            .add_listener(tcp(80, 0, Some("web1")))
            .expect_err("duplicate");
        assert!(matches!(e, RegisterError::DuplicateListener { .. }), "{e}");
        let mut f = Filter::new(FilterMode::RoundRobin, 4);
        f.register(80, 0).expect("group");
        let e = f.add_listener(tcp(80, 1, Some("web1"))).expect_err("held");
        assert!(
            matches!(
                e,
                RegisterError::PortInUse {
                    reason: Exclusive::HolderHasNoKey,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn port_outside_shared_range_is_not_shared() {
        let mut f = Filter::new(FilterMode::RoundRobin, 4);
        let ranges = PortRanges::parse(["80", "8000-8099"]).expect("ranges");
        f.set_shared_ports(
            &FilterKey::new("web1").expect("k"),
            Protocol::Tcp,
            Some(ranges),
        );
        f.add_listener(tcp(8080, 0, Some("web1"))).expect("first");
        f.add_listener(tcp(8080, 1, Some("web1")))
            .expect("in range");
        f.add_listener(tcp(81, 0, Some("web1")))
            .expect("alone is fine");
        let e = f
            .add_listener(tcp(81, 1, Some("web1")))
            .expect_err("not shared");
        assert_eq!(
            e.to_string(),
            "port 81/tcp is not shared: it is outside its filter key's shared TCP port ranges \
             (80, 8000-8099); the listener on processor 0 has it, so processor 1 cannot listen \
             on it"
        );
    }

    #[test]
    fn tcp_and_udp_ranges_and_ports_are_separate() {
        let mut f = Filter::new(FilterMode::RoundRobin, 4);
        let k = FilterKey::new("k").expect("k");
        f.set_shared_ports(
            &k,
            Protocol::Tcp,
            Some(PortRanges::parse(["80"]).expect("r")),
        );
        f.set_shared_ports(
            &k,
            Protocol::Udp,
            Some(PortRanges::parse(["7"]).expect("r")),
        );
        f.add_listener(tcp(7, 0, Some("k"))).expect("tcp 7");
        f.add_listener(spec(Protocol::Udp, 7, 0, Some("k")))
            .expect("udp 7 on the same processor");
        f.add_listener(spec(Protocol::Udp, 7, 1, Some("k")))
            .expect("udp 7 is shared");
        let e = f.add_listener(tcp(7, 1, Some("k"))).expect_err("tcp 7 not");
        assert!(matches!(e, RegisterError::NotShared { .. }), "{e}");
        let e = f
            .add_listener(spec(Protocol::Udp, 7, 1, Some("k")))
            .expect_err("dup");
        assert_eq!(
            e.to_string(),
            "port 7/udp is already served on processor 1 (one listener per processor per port)"
        );
        assert_eq!(f.ports(Protocol::Udp), vec![7]);
        assert!(f.serves(7));
    }

    #[test]
    fn bad_keys_are_refused_without_showing_them() {
        for (k, why) in [
            ("", "it is empty"),
            ("1abc", "its first character is not a letter"),
            (
                "ab-c",
                "it holds a character that is not a letter or a digit",
            ),
            ("abcdefghi", "it is 9 characters long (at most 8)"),
        ] {
            let e = FilterKey::new(k).expect_err(k);
            assert_eq!(
                e.to_string(),
                format!(
                    "bad filter key: {why}; a key is 1 to 8 letters or digits, the first a letter"
                )
            );
        }
        let k = FilterKey::new("secret12").expect("8 is fine");
        assert_eq!(k.masked(), "s*****");
        assert!(!format!("{k:?}").contains("secret"));
    }

    #[test]
    fn backup_rules() {
        let mut f = Filter::new(FilterMode::RoundRobin, 4);
        let e = f
            .add_listener(with_backup(tcp(80, 1, None), 1))
            .expect_err("same");
        assert_eq!(
            e.to_string(),
            "port 80/tcp: the listener on processor 1 names the same processor as its backup; \
             the backup must run in another processor"
        );
        let e = f
            .add_listener(with_backup(tcp(80, 1, None), 4))
            .expect_err("none");
        assert_eq!(e.to_string(), "processor 4 does not exist (processors: 4)");
    }

    #[test]
    fn bound_address_must_be_ours_and_port_nonzero() {
        let mut f = Filter::new(FilterMode::RoundRobin, 4);
        f.set_addresses(vec!["10.0.0.2".parse().expect("a")]);
        let e = f
            .add_listener(bound(spec(Protocol::Udp, 7, 0, None), "10.0.0.9"))
            .expect_err("not ours");
        assert_eq!(
            e.to_string(),
            "port 7/udp: the listener on processor 0 is bound to 10.0.0.9, which is not one of \
             the adapter's addresses (10.0.0.2)"
        );
        let e = f.add_listener(tcp(0, 0, None)).expect_err("port 0");
        assert_eq!(
            e.to_string(),
            "port 0/tcp: a listener needs a port from 1 to 65535"
        );
    }

    // ---- addresses and UDP ----

    #[test]
    fn udp_datagrams_go_round_robin_per_datagram() {
        let mut f = Filter::new(FilterMode::RoundRobin, 3);
        for p in 0..3 {
            f.add_listener(spec(Protocol::Udp, 7, p, Some("u")))
                .expect("udp");
        }
        assert_eq!(
            picks_for(&mut f, Protocol::Udp, "10.0.0.2", 7, 4),
            vec![0, 1, 2, 0]
        );
        assert_eq!(
            picks_for(&mut f, Protocol::Tcp, "10.0.0.2", 7, 1),
            vec![usize::MAX],
            "no TCP listener on 7"
        );
    }

    #[test]
    fn bound_listeners_get_only_their_address_wildcard_the_rest() {
        let mut f = Filter::new(FilterMode::RoundRobin, 4);
        let udp = |p, a| bound(spec(Protocol::Udp, 7, p, Some("u")), a);
        f.add_listener(udp(0, "10.0.0.2")).expect("a");
        f.add_listener(udp(1, "10.0.0.2")).expect("a");
        f.add_listener(udp(2, "10.0.0.3")).expect("b");
        f.add_listener(spec(Protocol::Udp, 7, 3, Some("u")))
            .expect("wildcard shares under the key");
        assert_eq!(
            picks_for(&mut f, Protocol::Udp, "10.0.0.2", 7, 3),
            vec![0, 1, 0]
        );
        assert_eq!(
            picks_for(&mut f, Protocol::Udp, "10.0.0.3", 7, 2),
            vec![2, 2]
        );
        assert_eq!(
            picks_for(&mut f, Protocol::Udp, "fd00::2", 7, 2),
            vec![3, 3]
        );
        f.set_up(2, false);
        assert_eq!(
            picks_for(&mut f, Protocol::Udp, "10.0.0.3", 7, 1),
            vec![3],
            "bound line all down: the wildcard takes it"
        );
    }

    #[test]
    fn distinct_bound_addresses_do_not_conflict_with_port_share_on() {
        let mut f = Filter::new(FilterMode::None, 4);
        f.set_port_share(true);
        f.add_listener(bound(tcp(80, 0, None), "10.0.0.2"))
            .expect("a");
        f.add_listener(bound(tcp(80, 1, None), "10.0.0.3"))
            .expect("b");
        let e = f
            .add_listener(tcp(80, 2, None))
            .expect_err("wildcard overlaps");
        assert!(
            matches!(e, RegisterError::PortInUse { holder: 0, .. }),
            "{e}"
        );
        assert_eq!(
            picks_for(&mut f, Protocol::Tcp, "10.0.0.3", 80, 2),
            vec![1, 1]
        );
    }

    // ---- removal ----

    #[test]
    fn remove_listener_keeps_the_line_turn() {
        let mut f = Filter::new(FilterMode::RoundRobin, 4);
        let ids: Vec<ListenerId> = (0..4)
            .map(|p| f.add_listener(tcp(80, p, Some("k"))).expect("add"))
            .collect();
        assert_eq!(picks(&mut f, 80, 2), vec![0, 1]);
        let r = f.remove_listener(ids[0]).expect("remove");
        assert_eq!(r.listener.processor, 0);
        assert_eq!(picks(&mut f, 80, 3), vec![2, 3, 1]);
        f.remove_listener(ids[3]).expect("remove last");
        assert_eq!(picks(&mut f, 80, 3), vec![2, 1, 2]);
        let e = f.remove_listener(ids[0]).expect_err("gone");
        assert_eq!(e.to_string(), format!("no listener {}", ids[0]));
        assert_eq!(f.listener_at(Protocol::Tcp, 80, 2), Some(ids[2]));
        assert_eq!(f.listeners(80), &[1, 2]);
        f.remove_listener(ids[1]).expect("remove");
        f.remove_listener(ids[2]).expect("remove");
        assert!(!f.serves(80));
        f.add_listener(tcp(80, 0, None))
            .expect("port is free again");
    }

    // ---- primary and backup ----

    #[test]
    fn backup_takes_over_and_primary_gets_the_port_back() {
        let mut f = Filter::new(FilterMode::RoundRobin, 4);
        let a = f
            .add_listener(with_backup(tcp(80, 0, Some("k")), 1))
            .expect("a");
        f.add_listener(with_backup(tcp(80, 2, Some("k")), 3))
            .expect("b");
        let r = f.set_up_report(0, false);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].listener, a);
        assert_eq!((r[0].from, r[0].to), (Some(0), Some(1)));
        assert_eq!(r[0].kind, TakeoverKind::MovedToBackup);
        assert_eq!(picks(&mut f, 80, 4), vec![1, 2, 1, 2]);
        assert_eq!(
            f.info(a).map(|i| i.state),
            Some(ListenerState::MovedToBackup)
        );
        let r = f.set_up_report(0, true);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].kind, TakeoverKind::BackToPrimary);
        assert_eq!((r[0].from, r[0].to), (Some(1), Some(0)));
        assert_eq!(picks(&mut f, 80, 2), vec![0, 2]);
        assert!(f.set_up_report(0, true).is_empty(), "no change, no report");
    }

    #[test]
    fn backup_collides_with_a_listener_in_its_processor() {
        let mut f = Filter::new(FilterMode::RoundRobin, 3);
        let a = f
            .add_listener(with_backup(tcp(80, 0, Some("k")), 1))
            .expect("a");
        let b = f.add_listener(tcp(80, 1, Some("k"))).expect("b");
        let r = f.set_up_report(0, false);
        assert_eq!(r.len(), 1);
        let TakeoverKind::Collision(e) = &r[0].kind else {
            panic!("expected a collision: {r:?}");
        };
        assert_eq!(
            e,
            &RegisterError::BackupCollision {
                protocol: Protocol::Tcp,
                port: 80,
                listener: a,
                primary: 0,
                backup: 1,
                holder: b
            }
        );
        assert_eq!(
            e.to_string(),
            format!(
                "port 80/tcp: backup collision: processor 0 of listener {a} is down and its \
                 backup cannot take over in processor 1: listener {b} already listens on port \
                 80 there"
            )
        );
        let info = f.info(a).expect("a");
        assert_eq!(info.state, ListenerState::Down);
        assert_eq!(picks(&mut f, 80, 2), vec![1, 1]);
    }

    #[test]
    fn a_backup_already_listening_keeps_the_port() {
        let mut f = Filter::new(FilterMode::RoundRobin, 3);
        let a = f
            .add_listener(with_backup(tcp(80, 0, Some("k")), 2))
            .expect("a");
        let b = f
            .add_listener(with_backup(tcp(80, 1, Some("k")), 2))
            .expect("b");
        let r = f.set_up_report(1, false);
        assert_eq!(r[0].listener, b);
        assert_eq!(r[0].kind, TakeoverKind::MovedToBackup);
        let r = f.set_up_report(0, false);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].listener, a, "a collides; b keeps processor 2");
        assert!(matches!(r[0].kind, TakeoverKind::Collision(_)));
        let r = f.set_up_report(1, true);
        let kinds: Vec<(ListenerId, TakeoverKind)> =
            r.into_iter().map(|t| (t.listener, t.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (a, TakeoverKind::MovedToBackup),
                (b, TakeoverKind::BackToPrimary)
            ]
        );
    }

    #[test]
    fn listener_without_backup_goes_down_and_comes_back() {
        let mut f = Filter::new(FilterMode::RoundRobin, 2);
        let a = f.add_listener(tcp(7, 0, None)).expect("a");
        let r = f.set_up_report(0, false);
        assert_eq!(r[0].kind, TakeoverKind::Down);
        assert_eq!(f.info(a).map(|i| i.state), Some(ListenerState::Down));
        assert_eq!(pick(&mut f, 7), None);
        let r = f.set_up_report(0, true);
        assert_eq!(r[0].kind, TakeoverKind::BackToPrimary);
        assert!(r[0]
            .to_string()
            .contains("back to its primary, processor 0"));
    }

    #[test]
    fn a_processor_holding_a_backup_refuses_a_new_listener_there() {
        let mut f = Filter::new(FilterMode::RoundRobin, 2);
        f.add_listener(with_backup(tcp(80, 0, Some("k")), 1))
            .expect("a");
        f.set_up(0, false);
        let e = f.add_listener(tcp(80, 1, Some("k"))).expect_err("taken");
        assert!(
            matches!(e, RegisterError::DuplicateListener { processor: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn listing_shows_masked_key_address_app_and_state() {
        let mut f = Filter::new(FilterMode::RoundRobin, 2);
        let mut s = bound(with_backup(tcp(80, 0, Some("web1")), 1), "10.0.0.2");
        s.app = "http".into();
        f.add_listener(s).expect("add");
        let l = f.listing();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].key.as_deref(), Some("w*****"));
        assert_eq!(l[0].address, Some("10.0.0.2".parse().expect("a")));
        assert_eq!(l[0].app, "http");
        assert_eq!(l[0].backup, Some(1));
        assert_eq!(l[0].state.name(), "listening");
    }

    #[test]
    fn port_ranges_parse_and_print() {
        let r = PortRanges::parse(["80", "8000-8099", " 9 - 10 "]).expect("ranges");
        assert!(r.contains(80) && r.contains(8050) && r.contains(10));
        assert!(!r.contains(81));
        assert_eq!(r.to_string(), "80, 8000-8099, 9-10");
        assert!(PortRanges::parse_item("0").is_err());
        assert!(PortRanges::parse_item("90-80").is_err());
        assert!(PortRanges::parse_item("http").is_err());
        assert!(PortRanges::parse_item("70000").is_err());
    }
}
