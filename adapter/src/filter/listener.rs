//! The words of the filter: what a listener is (protocol, port, processor,
//! backup, bound address, filter key, app label), what state it is in, and
//! every refusal the registration rules can give, each with a message that
//! names the port, the processor and the problem.
//!
//! The rules themselves live in [`super::Filter`]; this file only holds the
//! types so the rules read without them in the way.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;

/// Transport protocol of a listener: TCP and UDP ports are separate
/// namespaces, and each has its own shared port ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// New connections are placed by the filter; a connection then stays put.
    Tcp,
    /// Every datagram is placed by the filter.
    Udp,
}

impl Protocol {
    /// Parses the name used in the config file and on the control socket.
    pub fn from_name(s: &str) -> Option<Protocol> {
        match s {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// The name used in the config file, reports and error messages.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A round-robin filter key (the NonStop `=PTCPIP^FILTER^KEY`): a shared
/// secret that listeners must present alike to share a port. Up to eight
/// letters and digits, the first a letter.
///
/// It is a secret: `Debug` and [`FilterKey::masked`] show only its first
/// character, and no error message ever prints it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FilterKey(String);

impl FilterKey {
    /// The longest key the manual allows.
    pub const MAX_LEN: usize = 8;

    /// Checks the manual's rule for a key.
    pub fn new(key: &str) -> Result<FilterKey, RegisterError> {
        let bad = |reason: String| Err(RegisterError::BadFilterKey { reason });
        let Some(first) = key.chars().next() else {
            return bad("it is empty".into());
        };
        if !first.is_ascii_alphabetic() {
            return bad("its first character is not a letter".into());
        }
        if !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return bad("it holds a character that is not a letter or a digit".into());
        }
        let n = key.chars().count();
        if n > Self::MAX_LEN {
            return bad(format!(
                "it is {n} characters long (at most {})",
                Self::MAX_LEN
            ));
        }
        Ok(FilterKey(key.to_string()))
    }

    /// The key as shown by `vnic status`: its first letter, then a fixed
    /// row of stars that does not give its length away ("a*****").
    pub fn masked(&self) -> String {
        let first = self.0.chars().next().unwrap_or('?');
        format!("{first}*****")
    }
}

impl fmt::Debug for FilterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FilterKey({})", self.masked())
    }
}

/// The ports of one protocol that the listeners of one filter key may
/// share (the NonStop `=PTCPIP^FILTER^TCP^PORTS` / `UDP^PORTS` DEFINEs a
/// process sets beside its key): outside them a port is not shared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortRanges(Vec<RangeInclusive<u16>>);

impl PortRanges {
    /// Ranges from items such as `"80"` or `"8000-8099"`.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<PortRanges, String> {
        items
            .into_iter()
            .map(PortRanges::parse_item)
            .collect::<Result<Vec<_>, _>>()
            .map(PortRanges)
    }

    /// One item: `"PORT"` or `"FIRST-LAST"`, ports from 1 to 65535,
    /// FIRST not above LAST.
    pub fn parse_item(s: &str) -> Result<RangeInclusive<u16>, String> {
        let port = |p: &str| -> Result<u16, String> {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{p:?} is not a port from 1 to 65535"))
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(s)?;
                (p, p)
            }
        };
        if first > last {
            return Err(format!(
                "port range {s:?} runs backwards: write {last}-{first}"
            ));
        }
        Ok(first..=last)
    }

    /// Ranges from ready-made bounds.
    pub fn from_ranges(ranges: Vec<RangeInclusive<u16>>) -> PortRanges {
        PortRanges(ranges)
    }

    /// True if `port` lies in one of the ranges.
    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|r| r.contains(&port))
    }
}

impl fmt::Display for PortRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

/// Names one registered listener, for `remove_listener`, takeover reports
/// and `vnic status`. Numbers are never reused within one filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub u32);

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A listener as an application asks for it: the filter checks it against
/// the rules and, if it is accepted, places it in its port's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The listening port (1..=65535).
    pub port: u16,
    /// The processor of the primary listening process.
    pub processor: usize,
    /// The processor of its backup, which takes over listening when the
    /// primary's processor fails.
    pub backup: Option<usize>,
    /// Bound to this address only (it then gets only that address's
    /// traffic); `None` is the wildcard.
    pub address: Option<IpAddr>,
    /// The filter key it presents; `None`: it does not ask to share.
    pub key: Option<FilterKey>,
    /// What runs behind it ("http", "echo", ...): a label the filter
    /// stores for reports and never interprets.
    pub app: String,
}

impl ListenerSpec {
    /// A TCP wildcard listener without backup or key: the shape the command
    /// line's `--serve` registers on every processor.
    pub fn tcp(port: u16, processor: usize) -> ListenerSpec {
        ListenerSpec {
            protocol: Protocol::Tcp,
            port,
            processor,
            backup: None,
            address: None,
            key: None,
            app: String::new(),
        }
    }
}

/// What a listener is doing now, for `vnic status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerState {
    /// In its primary processor, getting its share of the port's traffic.
    Listening,
    /// Live but getting nothing: filtering is off (`none`) and a listener
    /// before it in line has exclusive use of the port.
    Standby,
    /// Its primary processor is down; its backup listens in the backup processor.
    MovedToBackup,
    /// Neither its primary nor a usable backup is up (or the backup collided).
    Down,
}

impl ListenerState {
    /// The name `vnic status` shows.
    pub fn name(self) -> &'static str {
        match self {
            ListenerState::Listening => "listening",
            ListenerState::Standby => "standby",
            ListenerState::MovedToBackup => "moved-to-backup",
            ListenerState::Down => "down",
        }
    }
}

/// One line of the listener table of `vnic status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerInfo {
    /// Its number.
    pub id: ListenerId,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port.
    pub port: u16,
    /// The bound address, `None` for the wildcard.
    pub address: Option<IpAddr>,
    /// The primary processor.
    pub processor: usize,
    /// The backup processor, if any.
    pub backup: Option<usize>,
    /// The processor listening now (primary, or backup after a takeover).
    pub serving: Option<usize>,
    /// The filter key, masked ("a*****"); `None` if it presents none.
    pub key: Option<String>,
    /// The app label.
    pub app: String,
    /// What it is doing.
    pub state: ListenerState,
}

/// What happened to a listener when a processor went down or came up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TakeoverKind {
    /// The primary's processor failed; the backup listens now.
    MovedToBackup,
    /// The primary listens again (its processor came back); new
    /// connections of the port go to it.
    BackToPrimary,
    /// Nobody listens for it any more (no backup, or the backup is down).
    Down,
    /// The backup could not take over: another listener holds the port in
    /// the backup's processor ([`RegisterError::BackupCollision`]).
    Collision(RegisterError),
}

/// One change reported by [`super::Filter::set_up_report`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Takeover {
    /// The listener that changed.
    pub listener: ListenerId,
    /// Its protocol.
    pub protocol: Protocol,
    /// Its port.
    pub port: u16,
    /// Its app label.
    pub app: String,
    /// The processor it listened in before, if any.
    pub from: Option<usize>,
    /// The processor it listens in now, if any.
    pub to: Option<usize>,
    /// What happened.
    pub kind: TakeoverKind,
}

impl fmt::Display for Takeover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cpu = |p: Option<usize>| p.map_or("none".to_string(), |p| format!("processor {p}"));
        match &self.kind {
            TakeoverKind::MovedToBackup => write!(
                f,
                "listener {} (port {}/{}): backup takes over in {} (was {})",
                self.listener,
                self.port,
                self.protocol,
                cpu(self.to),
                cpu(self.from)
            ),
            TakeoverKind::BackToPrimary => write!(
                f,
                "listener {} (port {}/{}): back to its primary, {}",
                self.listener,
                self.port,
                self.protocol,
                cpu(self.to)
            ),
            TakeoverKind::Down => write!(
                f,
                "listener {} (port {}/{}): down (was in {})",
                self.listener,
                self.port,
                self.protocol,
                cpu(self.from)
            ),
            TakeoverKind::Collision(e) => write!(f, "{e}"),
        }
    }
}

/// Why `PortInUse`: who has exclusive use of the port, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exclusive {
    /// Round-robin filtering is off: the first registrant has exclusive use.
    FilteringOff,
    /// The listener already there presents no filter key.
    HolderHasNoKey,
    /// The newcomer presents no filter key, so it does not ask to share.
    NewcomerHasNoKey,
    /// The holder is bound to another address, and port sharing on
    /// different addresses (`PORT-SHARE-ENABLE`) is off, the manual's default.
    OtherAddress,
}

impl fmt::Display for Exclusive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Exclusive::FilteringOff => "round-robin filtering is off",
            Exclusive::HolderHasNoKey => "it presents no filter key",
            Exclusive::NewcomerHasNoKey => "the newcomer presents no filter key",
            Exclusive::OtherAddress => {
                "it is bound to another address, and port sharing on different addresses \
                 (PORT-SHARE-ENABLE) is off"
            }
        })
    }
}

/// A registration (or a takeover) the filter refuses: one variant per
/// rule, each naming the port, the processor and what is wrong. Never
/// prints a filter key.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegisterError {
    /// The processor (primary or backup) is beyond the adapter's processors.
    #[error("processor {processor} does not exist (processors: {count})")]
    NoSuchProcessor {
        /// The processor asked for.
        processor: usize,
        /// How many there are.
        count: usize,
    },
    /// One listening process per processor per port.
    #[error(
        "port {port}/{protocol} is already served on processor {processor} \
         (one listener per processor per port)"
    )]
    DuplicateListener {
        /// Protocol of the port.
        protocol: Protocol,
        /// The port.
        port: u16,
        /// The processor that has it already.
        processor: usize,
    },
    /// The port is held exclusively by another listener (on NonStop the
    /// newcomer's bind gets EADDRINUSE).
    #[error(
        "port {port}/{protocol}: in use: the listener on processor {holder} has exclusive \
         use of the port ({reason}), so processor {processor} cannot listen on it"
    )]
    PortInUse {
        /// Protocol of the port.
        protocol: Protocol,
        /// The port.
        port: u16,
        /// The newcomer's processor.
        processor: usize,
        /// The processor of the listener that has the port.
        holder: usize,
        /// Why its use is exclusive.
        reason: Exclusive,
    },
    /// The port lies outside the shared port ranges its filter key has
    /// for its protocol.
    #[error(
        "port {port}/{protocol} is not shared: it is outside its filter key's shared {upper} \
         port ranges ({ranges}); the listener on processor {holder} has it, so processor \
         {processor} cannot listen on it",
        upper = protocol.name().to_ascii_uppercase()
    )]
    NotShared {
        /// Protocol of the port.
        protocol: Protocol,
        /// The port.
        port: u16,
        /// The newcomer's processor.
        processor: usize,
        /// The processor of the listener that has the port.
        holder: usize,
        /// The shared ranges, as configured.
        ranges: String,
    },
    /// Listeners share a port only if they present the same filter key.
    #[error(
        "port {port}/{protocol}: key mismatch: listener on processor {processor} presents a \
         different filter key than the listeners already sharing the port"
    )]
    FilterKeyMismatch {
        /// Protocol of the port.
        protocol: Protocol,
        /// The port.
        port: u16,
        /// The newcomer's processor.
        processor: usize,
    },
    /// A filter key that breaks the manual's form.
    #[error("bad filter key: {reason}; a key is 1 to 8 letters or digits, the first a letter")]
    BadFilterKey {
        /// What is wrong (the key itself is never shown).
        reason: String,
    },
    /// A backup in the primary's own processor protects nothing.
    #[error(
        "port {port}/{protocol}: the listener on processor {processor} names the same \
         processor as its backup; the backup must run in another processor"
    )]
    BackupIsPrimary {
        /// Protocol of the port.
        protocol: Protocol,
        /// The port.
        port: u16,
        /// The processor named twice.
        processor: usize,
    },
    /// A listener bound to an address the adapter does not answer on.
    #[error(
        "port {port}/{protocol}: the listener on processor {processor} is bound to {address}, \
         which is not one of the adapter's addresses ({known})"
    )]
    AddressNotOurs {
        /// Protocol of the port.
        protocol: Protocol,
        /// The port.
        port: u16,
        /// The newcomer's processor.
        processor: usize,
        /// The bound address.
        address: IpAddr,
        /// The adapter's addresses.
        known: String,
    },
    /// Port 0 cannot be listened on.
    #[error("port 0/{protocol}: a listener needs a port from 1 to 65535")]
    BadPort {
        /// Protocol of the port.
        protocol: Protocol,
    },
    /// `remove_listener` of a listener that is not there.
    #[error("no listener {id}")]
    NoSuchListener {
        /// The number asked for.
        id: ListenerId,
    },
    /// The primary's processor failed and its backup could not take over,
    /// because another listener already listens on the port in the backup's
    /// processor (the manual's "port collision").
    #[error(
        "port {port}/{protocol}: backup collision: processor {primary} of listener {listener} \
         is down and its backup cannot take over in processor {backup}: listener {holder} \
         already listens on port {port} there"
    )]
    BackupCollision {
        /// Protocol of the port.
        protocol: Protocol,
        /// The port.
        port: u16,
        /// The listener whose backup failed.
        listener: ListenerId,
        /// Its primary processor (down).
        primary: usize,
        /// Its backup processor.
        backup: usize,
        /// The listener holding the port in the backup processor.
        holder: ListenerId,
    },
}
