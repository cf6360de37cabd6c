//! Ethernet failover: several TAPs as the ports of one adapter
//! (`vnic up --tap A --tap B`), each with its own MAC. The virtual IPs are
//! served through the active link; the others stand by, still read, so
//! nothing the host sends to them is lost. When the active link fails
//! (the host takes it down or deletes it, a write fails, `vnic ctl link
//! NAME down`) another takes over: frames leave through it from its MAC
//! at once, a failed write is sent again through it, and it announces
//! every virtual IP ([`announce`]) so the host's neighbour entries move.
//! Connections live in the processors, not in a link, and go on.
//!
//! The pieces: [`state`] (the rules, sans-IO), [`Links`] (the shared
//! state every thread reads: the active link's index, devices and MAC),
//! [`ActiveSink`] (what the processors write to), [`LinkSource`] (what an
//! RX thread reads: the same queue of every link), [`netlink`] and
//! [`monitor`] (the thread that hears the kernel and sends the
//! announcements).

pub mod announce;
pub mod monitor;
pub mod netlink;
mod sink;
mod source;
pub mod state;

pub use sink::ActiveSink;
pub use source::LinkSource;

use crate::config::AdapterConfig;
use crate::emit::{ActiveMac, FrameSink};
use crate::tap::TapDevice;
use parking_lot::{Mutex, RwLock};
use state::{Cause, Event, LinkTable, Transition};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// `active` when no link is usable.
const NONE: usize = usize::MAX;
/// Transitions kept for `vnic status`.
const HISTORY: usize = 16;

/// One link as it is opened: its TAP queues, MAC and reserved address.
pub struct LinkSpec {
    /// TAP name.
    pub name: String,
    /// The MAC the link sends from when active.
    pub mac: [u8; 6],
    /// `--link-ip NAME=ADDR`: the link's own address, the source of
    /// vnic's ARP requests on it, answered on this link only.
    pub link_ip: Option<Ipv4Addr>,
    /// The TAP's queues (RX queue K of every link is read by RX thread K).
    pub queues: Vec<Arc<TapDevice>>,
}

/// One link: a TAP with its own MAC, and what `vnic status` shows of it.
pub struct Link {
    name: String,
    /// The name for trace comments, which carry no reference count (see
    /// [`crate::trace::Note`]): leaked once per link when the links are
    /// made, a few bytes for the life of the process.
    label: &'static str,
    mac: [u8; 6],
    link_ip: Option<Ipv4Addr>,
    devices: RwLock<Vec<Arc<TapDevice>>>,
    failed_at: Mutex<Option<SystemTime>>,
    failures: AtomicU64,
    resent: AtomicU64,
    io_errors: AtomicU64,
    announcements: AtomicU64,
}

impl Link {
    /// TAP name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, as trace comments hold it.
    pub fn label(&self) -> &'static str {
        self.label
    }

    /// The link's MAC.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The reserved address (`--link-ip`), if any.
    pub fn link_ip(&self) -> Option<Ipv4Addr> {
        self.link_ip
    }
}

/// One link in [`LinksStatus`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    /// TAP name.
    pub name: String,
    /// MAC, `02:76:6e:..`.
    pub mac: String,
    /// "active", "standby" or "down".
    pub state: String,
    /// Why it is down ("host-down", "deleted", "io-error", "admin-down").
    pub cause: Option<String>,
    /// When it last failed.
    pub failed_at: Option<SystemTime>,
    /// Times it failed.
    pub failures: u64,
    /// Frames whose write failed on another link and were sent on this one.
    pub resent: u64,
    /// Writes or reads on it that failed.
    pub io_errors: u64,
    /// Announcement frames (gratuitous ARP, unsolicited NA) sent on it.
    pub announcements: u64,
    /// The reserved address (`--link-ip`).
    pub link_ip: Option<Ipv4Addr>,
}

/// What `vnic status` shows of the links.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinksStatus {
    /// Every link, in `--tap` order.
    pub links: Vec<LinkState>,
    /// Times another link took over (failbacks included).
    pub failovers: u64,
    /// Connections established at the moments of takeover, summed.
    pub sessions_moved: u64,
    /// The last transitions, oldest first, each `TIME text`.
    pub history: Vec<(SystemTime, String)>,
}

/// Counts the connections established now (set by the builder: the
/// processors' open connections).
pub type SessionCount = Box<dyn Fn() -> u64 + Send + Sync>;

/// A takeover or a return the monitor must announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// `link` took over: announce every virtual IP on it.
    Takeover(usize),
    /// `link` is usable again: announce its reserved address on it.
    Returned(usize),
}

/// Every link and the active one: shared by the processors' sinks, the
/// RX threads' sources, the monitor thread and the control socket.
pub struct Links {
    links: Vec<Link>,
    active: AtomicUsize,
    /// Bumped whenever the active link or a link's devices change:
    /// sinks and sources check it to refresh what they hold.
    epoch: AtomicU64,
    mac: Arc<ActiveMac>,
    table: Mutex<LinkTable>,
    offload: bool,
    cfg: AdapterConfig,
    rx_queues: usize,
    failovers: AtomicU64,
    sessions_moved: AtomicU64,
    sessions: Mutex<Option<SessionCount>>,
    history: Mutex<VecDeque<(SystemTime, String)>>,
    notices: Mutex<Vec<(Instant, Notice)>>,
    waker: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    on_takeover: Mutex<Option<TakeoverHook>>,
}

/// Called at a takeover from a failed link (not one taken down with
/// `vnic ctl link`, not a failback: those lose nothing), once frames
/// leave by the new link (set by the builder: every processor resends
/// what is unacknowledged). It must not block: it runs under the links'
/// lock.
pub type TakeoverHook = Box<dyn Fn() + Send + Sync>;

impl Links {
    /// The links of an adapter with virtual addresses `cfg`, link 0
    /// active; `failback` makes link 0 take back over when it returns.
    /// Every link's TAP is opened with the same `offload` and
    /// `rx_queues` queues.
    pub fn new(
        specs: Vec<LinkSpec>,
        cfg: &AdapterConfig,
        offload: bool,
        rx_queues: usize,
        failback: bool,
    ) -> Arc<Links> {
        let first = specs.first().map_or(cfg.mac, |s| s.mac);
        let n = specs.len();
        let links = specs
            .into_iter()
            .map(|s| Link {
                label: Box::leak(s.name.clone().into_boxed_str()),
                name: s.name,
                mac: s.mac,
                link_ip: s.link_ip,
                devices: RwLock::new(s.queues),
                failed_at: Mutex::new(None),
                failures: AtomicU64::new(0),
                resent: AtomicU64::new(0),
                io_errors: AtomicU64::new(0),
                announcements: AtomicU64::new(0),
            })
            .collect();
        let now = Instant::now();
        Arc::new(Links {
            links,
            active: AtomicUsize::new(if n > 0 { 0 } else { NONE }),
            epoch: AtomicU64::new(0),
            mac: Arc::new(ActiveMac::new(first)),
            table: Mutex::new(LinkTable::new(n, failback)),
            offload,
            cfg: cfg.clone(),
            rx_queues: rx_queues.max(1),
            failovers: AtomicU64::new(0),
            sessions_moved: AtomicU64::new(0),
            sessions: Mutex::new(None),
            history: Mutex::new(VecDeque::new()),
            // The first link announces the addresses at start, and every
            // link its reserved one.
            notices: Mutex::new(
                std::iter::once((now, Notice::Takeover(0)))
                    .chain((1..n).map(|i| (now, Notice::Returned(i))))
                    .filter(|_| n > 0)
                    .collect(),
            ),
            waker: Mutex::new(None),
            on_takeover: Mutex::new(None),
        })
    }

    /// The links, in `--tap` order.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The active link's index, if any link is usable.
    pub fn active(&self) -> Option<usize> {
        match self.active.load(Ordering::Acquire) {
            NONE => None,
            i => Some(i),
        }
    }

    /// The MAC frames leave from (the active link's): give it to every
    /// [`crate::emit::FrameWriter`] ([`crate::emit::FrameWriter::follow_mac`]).
    pub fn active_mac(&self) -> Arc<ActiveMac> {
        self.mac.clone()
    }

    /// True when the TAPs carry virtio-net headers.
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// The adapter's addresses (what a takeover announces).
    pub fn config(&self) -> &AdapterConfig {
        &self.cfg
    }

    /// RX queues per link.
    pub fn rx_queues(&self) -> usize {
        self.rx_queues
    }

    /// Sets what a takeover asks of the processors (see [`TakeoverHook`]).
    pub fn set_on_takeover(&self, hook: TakeoverHook) {
        *self.on_takeover.lock() = Some(hook);
    }

    /// Sets how connections established at a takeover are counted.
    pub fn set_session_count(&self, count: SessionCount) {
        *self.sessions.lock() = Some(count);
    }

    /// A sink that writes through the active link (one per writer: it
    /// keeps the active device at hand).
    pub fn sink(self: &Arc<Self>) -> ActiveSink {
        ActiveSink::new(self.clone())
    }

    /// The source RX thread `queue` reads: queue `queue` of every link.
    pub fn source(self: &Arc<Self>, queue: usize) -> LinkSource {
        LinkSource::new(self.clone(), queue)
    }

    /// The link named `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.links.iter().position(|l| l.name == name)
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Queue `queue` of link `link`, unless the link's TAP is gone.
    pub(crate) fn device(&self, link: usize, queue: usize) -> Option<Arc<TapDevice>> {
        let l = self.links.get(link)?;
        if self.table.lock().deleted(link) {
            return None;
        }
        let devs = l.devices.read();
        devs.get(queue).cloned()
    }

    /// True when every link's TAP is gone: the RX threads end then.
    pub(crate) fn all_deleted(&self) -> bool {
        let t = self.table.lock();
        (0..self.links.len()).all(|i| t.deleted(i))
    }

    /// Replaces link `link`'s devices (a TAP re-created after it was
    /// deleted) and marks it reattached.
    pub(crate) fn reattach(&self, link: usize, queues: Vec<TapDevice>) {
        if let Some(l) = self.links.get(link) {
            *l.devices.write() = queues.into_iter().map(Arc::new).collect();
            self.report(link, Event::Reattached);
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A write or read on `link` failed with `e`: a TAP gone counts as
    /// deleted, anything else as an I/O failure.
    pub(crate) fn io_failed(&self, link: usize, e: &std::io::Error) {
        if let Some(l) = self.links.get(link) {
            l.io_errors.fetch_add(1, Ordering::Relaxed);
        }
        let gone = matches!(
            e.raw_os_error(),
            Some(libc::EBADFD | libc::ENODEV | libc::ENXIO | libc::EBADF)
        );
        self.report(
            link,
            if gone {
                Event::Deleted
            } else {
                Event::IoFailed
            },
        );
    }

    pub(crate) fn count_resent(&self, link: usize) {
        if let Some(l) = self.links.get(link) {
            l.resent.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_announced(&self, link: usize, frames: u64) {
        if let Some(l) = self.links.get(link) {
            l.announcements.fetch_add(frames, Ordering::Relaxed);
        }
    }

    /// `vnic ctl link NAME down|up`.
    pub fn admin(&self, name: &str, up: bool) -> Result<(), String> {
        let Some(i) = self.find(name) else {
            let names: Vec<&str> = self.links.iter().map(|l| l.name.as_str()).collect();
            return Err(format!(
                "no link {name:?}: the links are {}",
                names.join(", ")
            ));
        };
        self.report(i, Event::Admin(up));
        Ok(())
    }

    /// Applies `event` on link `link`: the state machine decides, and
    /// its transitions are applied here, under the table's lock so two
    /// reporters never interleave them.
    pub fn report(&self, link: usize, event: Event) {
        let mut table = self.table.lock();
        let transitions = table.apply(link, event);
        if let (Event::Deleted, Some(l)) = (event, self.links.get(link)) {
            // Its fds are dead: close them (and free the TAP's claim, so it
            // can be attached again if made anew); readers and writers
            // drop theirs at the new epoch.
            let mut devices = l.devices.write();
            for d in devices.iter() {
                d.release_claim();
            }
            devices.clear();
            drop(devices);
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        // A link taken down on purpose loses nothing it was given: its
        // TAP still delivers what was written; the others may have lost
        // frames written just before the failure.
        let lossy = !matches!(event, Event::Admin(_));
        for t in transitions {
            self.carry_out(&table, t, lossy);
        }
    }

    fn carry_out(&self, table: &LinkTable, t: Transition, lossy: bool) {
        let name = |i: usize| self.links.get(i).map_or("?", |l| l.name.as_str());
        let text = match t {
            Transition::Failed { link, cause } => {
                if let Some(l) = self.links.get(link) {
                    *l.failed_at.lock() = Some(SystemTime::now());
                    l.failures.fetch_add(1, Ordering::Relaxed);
                }
                format!("link {} down ({})", name(link), cause.name())
            }
            Transition::Returned { link } => {
                // Readers that left it out after a failed read take it back.
                self.epoch.fetch_add(1, Ordering::AcqRel);
                self.notify(Notice::Returned(link));
                let role = if table.active() == Some(link) {
                    "active"
                } else {
                    "standby"
                };
                format!("link {} back ({role})", name(link))
            }
            Transition::Activated { from, to, failback } => {
                if let Some(l) = self.links.get(to) {
                    self.mac.set(l.mac);
                }
                self.active.store(to, Ordering::Release);
                self.epoch.fetch_add(1, Ordering::AcqRel);
                self.notify(Notice::Takeover(to));
                let moved = self.sessions.lock().as_ref().map_or(0, |f| f());
                if from.is_some() {
                    self.failovers.fetch_add(1, Ordering::Relaxed);
                    self.sessions_moved.fetch_add(moved, Ordering::Relaxed);
                }
                if from.is_some() && lossy && !failback {
                    if let Some(hook) = self.on_takeover.lock().as_ref() {
                        hook();
                    }
                }
                match from {
                    Some(f) => format!(
                        "link {} active{} (from {}); sessions moved: {moved}",
                        name(to),
                        if failback { ", failback" } else { "" },
                        name(f)
                    ),
                    None => format!("link {} active", name(to)),
                }
            }
            Transition::NoneLeft => {
                self.active.store(NONE, Ordering::Release);
                self.epoch.fetch_add(1, Ordering::AcqRel);
                "no link left: frames cannot leave until one returns".to_string()
            }
        };
        match t {
            Transition::Failed { .. } | Transition::NoneLeft => log::warn!("{text}"),
            _ => log::info!("{text}"),
        }
        let mut h = self.history.lock();
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back((SystemTime::now(), text));
    }

    fn notify(&self, n: Notice) {
        self.notices.lock().push((Instant::now(), n));
        if let Some(w) = self.waker.lock().as_ref() {
            w();
        }
    }

    /// The notices since the last call (the monitor's).
    pub(crate) fn take_notices(&self) -> Vec<(Instant, Notice)> {
        std::mem::take(&mut *self.notices.lock())
    }

    pub(crate) fn set_waker(&self, w: Arc<dyn Fn() + Send + Sync>) {
        *self.waker.lock() = Some(w);
    }

    /// Writes `frame` on link `link` itself (announcements, answers for
    /// its reserved address), whether active or not.
    pub(crate) fn send_on(&self, link: usize, frame: &[u8]) -> std::io::Result<()> {
        match self.device(link, 0) {
            Some(d) => d.send_frame(frame),
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    /// What `vnic status` shows.
    pub fn status(&self) -> LinksStatus {
        let table = self.table.lock();
        let links = self
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| LinkState {
                name: l.name.clone(),
                mac: format_mac(l.mac),
                state: if table.active() == Some(i) {
                    "active"
                } else if table.usable(i) {
                    "standby"
                } else {
                    "down"
                }
                .into(),
                cause: table.cause(i).map(|c: Cause| c.name().to_string()),
                failed_at: *l.failed_at.lock(),
                failures: l.failures.load(Ordering::Relaxed),
                resent: l.resent.load(Ordering::Relaxed),
                io_errors: l.io_errors.load(Ordering::Relaxed),
                announcements: l.announcements.load(Ordering::Relaxed),
                link_ip: l.link_ip,
            })
            .collect();
        LinksStatus {
            links,
            failovers: self.failovers.load(Ordering::Relaxed),
            sessions_moved: self.sessions_moved.load(Ordering::Relaxed),
            history: self.history.lock().iter().cloned().collect(),
        }
    }
}

/// `02:76:6e:01:02:03`.
pub fn format_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn links(failback: bool) -> Arc<Links> {
        let cfg = AdapterConfig::new("a", &["10.0.0.2".parse().expect("ip")], 1500);
        let spec = |name: &str, last: u8| LinkSpec {
            name: name.into(),
            mac: [2, 0, 0, 0, 0, last],
            link_ip: None,
            queues: Vec::new(),
        };
        Links::new(vec![spec("a", 1), spec("b", 2)], &cfg, false, 1, failback)
    }

    #[test]
    fn a_failure_moves_the_mac_counts_the_sessions_and_asks_for_resends() {
        let l = links(false);
        let resends = Arc::new(AtomicUsize::new(0));
        let r = resends.clone();
        l.set_on_takeover(Box::new(move || {
            r.fetch_add(1, Ordering::Relaxed);
        }));
        l.set_session_count(Box::new(|| 37));
        let epoch = l.epoch();
        l.report(0, Event::Host(false));
        assert_eq!(l.active(), Some(1));
        assert_eq!(l.active_mac().get(), [2, 0, 0, 0, 0, 2]);
        assert!(l.epoch() > epoch, "writers refresh their device");
        assert_eq!(resends.load(Ordering::Relaxed), 1);
        let s = l.status();
        assert_eq!((s.failovers, s.sessions_moved), (1, 37));
        assert_eq!(s.links[0].state, "down");
        assert_eq!(s.links[0].cause.as_deref(), Some("host-down"));
        assert!(s.links[0].failed_at.is_some());
        assert_eq!(s.links[1].state, "active");
        assert_eq!(s.history.len(), 2);
        assert!(
            s.history[1].1.contains("sessions moved: 37"),
            "{:?}",
            s.history
        );
        // Back: a standby; the first takes nothing back without failback.
        l.report(0, Event::Host(true));
        assert_eq!(l.status().links[0].state, "standby");
        assert_eq!(l.active(), Some(1));
    }

    #[test]
    fn admin_down_and_failback_ask_for_no_resend() {
        let l = links(true);
        let resends = Arc::new(AtomicUsize::new(0));
        let r = resends.clone();
        l.set_on_takeover(Box::new(move || {
            r.fetch_add(1, Ordering::Relaxed);
        }));
        assert!(l.admin("a", false).is_ok());
        assert_eq!(l.active(), Some(1));
        assert!(l.admin("a", true).is_ok());
        assert_eq!(l.active(), Some(0), "failback");
        assert_eq!(resends.load(Ordering::Relaxed), 0);
        assert_eq!(l.status().failovers, 2);
        let e = l.admin("c", false).expect_err("no such link");
        assert!(e.contains("the links are a, b"), "{e}");
    }

    #[test]
    fn every_link_down_leaves_no_active_link_until_one_returns() {
        let l = links(false);
        l.report(0, Event::Deleted);
        l.report(1, Event::IoFailed);
        assert_eq!(l.active(), None);
        assert!(!l.all_deleted(), "b is failed, not gone");
        l.report(1, Event::Deleted);
        assert!(l.all_deleted());
        assert!(l.device(0, 0).is_none());
        let s = l.status();
        assert!(s.history.iter().any(|(_, t)| t.starts_with("no link left")));
    }
}
