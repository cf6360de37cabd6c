//! Running a trace again: its inbound frames, at their recorded times
//! (on a virtual clock that starts when the trace's ISN and cookie clocks
//! started), through the real RX queue and processors, one at a time in
//! this thread; the processors' timers fire at their deadlines between
//! frames. What vnic sends is collected and compared with the trace's
//! outbound frames (see [`super::compare`]).

use super::compare::{self, Divergence, Placed};
use super::rig::{Rig, RigSetup};
use super::script::{self, Scripts};
use super::trace::{Trace, TraceFrame};
use super::ReplayError;
use crate::Builder;
use parking_lot::Mutex;
use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vnic_adapter::clock::VirtualClock;
use vnic_adapter::trace::comment::rx_comment;
use vnic_adapter::trace::Direction;
use vnic_adapter::FilterMode;
use vnic_stack::{FourTuple, IsnScript, SeqNumber};

/// Timer passes allowed between two frames: more means a timer that
/// keeps firing at one instant (a bug), and the replay says so.
const MAX_TIMER_PASSES: usize = 1_000_000;

/// What a replay found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Inbound frames fed in.
    pub frames_in: usize,
    /// Frames the replay sent.
    pub frames_out: usize,
    /// Outbound frames of the trace compared with (the `--against`
    /// trace's, if one was given).
    pub trace_out: usize,
    /// Every difference, first frame first.
    pub divergences: Vec<Divergence>,
    /// What the trace did not say and the replay had to guess.
    pub guessed: Vec<String>,
    /// Other things worth knowing (scripted apps, settings that differ).
    pub notes: Vec<String>,
    /// The replay's outbound frames, in their streams.
    pub sent: Vec<Placed>,
    /// The processors' TCP settings (for `--emit-test`).
    pub tcp: vnic_stack::TcpConfig,
    /// Nagle off per listening port, as its app chose (for `--emit-test`).
    pub nodelay: std::collections::HashMap<u16, bool>,
}

impl Outcome {
    /// True when the replay sent what the trace shows, decided what the
    /// trace shows.
    pub fn identical(&self) -> bool {
        self.divergences.is_empty()
    }
}

/// Settings for a trace without `vnic up`'s flags in its replay block,
/// inferred from its frames: the processors and the filter from the
/// decision comments, the virtual IPs from what the frames were sent
/// to, the listening ports from the new connections; every app is
/// scripted (the trace does not say which ran). Also says what it
/// guessed.
pub fn guess_settings(trace: &Trace) -> (Builder, Vec<String>) {
    let mut guessed = Vec::new();
    let b = trace.block.as_ref();
    let mut cpus = 0;
    let mut mode = None;
    let mut ports = Vec::new();
    let mut ips: Vec<IpAddr> = Vec::new();
    for f in &trace.frames {
        let words: Vec<&str> = f.comment.split(' ').collect();
        for w in &words {
            if let Some(k) = w.strip_prefix("cpu=").and_then(|k| k.parse::<usize>().ok()) {
                cpus = cpus.max(k + 1);
            }
        }
        if f.dir != Direction::In {
            continue;
        }
        let rule = match words.get(2) {
            Some(&"rr-new") => Some(FilterMode::RoundRobin),
            Some(&"hash-new") => Some(FilterMode::Hash),
            Some(&"lc-new") => Some(FilterMode::LeastConnections),
            Some(&"new") => Some(FilterMode::None),
            _ => None,
        };
        if let Some(r) = rule {
            mode.get_or_insert(r);
            let port = words
                .iter()
                .find_map(|w| w.strip_prefix("port=").and_then(|p| p.parse::<u16>().ok()));
            if let Some(p) = port.filter(|p| !ports.contains(p)) {
                ports.push(p);
            }
        }
        if words.get(1).is_some_and(|w| w.starts_with("cpu=") || *w == "adapter") {
            if let Some(ip) = destination(&f.data).filter(|ip| !ips.contains(ip)) {
                ips.push(ip);
            }
        }
    }
    let processors = b.and_then(|b| b.processors).unwrap_or_else(|| {
        guessed.push(format!("{} processors (the highest cpu=K seen)", cpus.max(1)));
        cpus.max(1)
    });
    let filter = b
        .and_then(|b| b.filter.as_deref())
        .and_then(FilterMode::from_name)
        .or(mode)
        .unwrap_or_else(|| {
            guessed.push("round-robin filtering".into());
            FilterMode::RoundRobin
        });
    guessed.push(format!(
        "virtual IPs {} (where the frames were sent)",
        ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
    ));
    ports.sort_unstable();
    guessed.push(format!(
        "listening ports {} with apps scripted from the trace",
        ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
    ));
    let mut builder = Builder::new("replay").processors(processors).filter(filter);
    if let Some(n) = b.and_then(|b| b.syn_backlog) {
        builder = builder.syn_backlog(n);
    }
    for ip in ips {
        let prefix = if ip.is_ipv4() { 24 } else { 64 };
        builder = builder.ip(ip, prefix);
    }
    for p in ports {
        builder = builder.serve_shared(p, Arc::new(script::Unknown));
    }
    (builder, guessed)
}

/// The destination IP of a frame, if it is IPv4 or IPv6.
fn destination(frame: &[u8]) -> Option<IpAddr> {
    use etherparse::{NetSlice, SlicedPacket};
    match SlicedPacket::from_ethernet(frame).ok()?.net? {
        NetSlice::Ipv4(v) => Some(IpAddr::V4(v.header().destination_addr())),
        NetSlice::Ipv6(v) => Some(IpAddr::V6(v.header().destination_addr())),
        NetSlice::Arp(_) => None,
    }
}

/// The ISNs vnic's processors chose, from the trace's SYN|ACKs (the
/// adapter's are SYN cookies, made again from the secret), per 4-tuple in
/// order; a retransmitted SYN|ACK is not a new ISN.
fn isns(frames: &[TraceFrame]) -> IsnScript {
    let mut s = IsnScript::new();
    for f in frames.iter().filter(|f| f.dir == Direction::Out) {
        if !f.comment.starts_with("out cpu=") {
            continue;
        }
        let Some(d) = syn_ack(&f.data) else { continue };
        let q = s.entry(d.0).or_insert_with(VecDeque::new);
        if q.back() != Some(&d.1) {
            q.push_back(d.1);
        }
    }
    s
}

/// A SYN|ACK's 4-tuple (vnic's end local) and sequence number.
fn syn_ack(frame: &[u8]) -> Option<(FourTuple, SeqNumber)> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let (src, dst) = match &p.net {
        Some(NetSlice::Ipv4(v)) => (
            IpAddr::V4(v.header().source_addr()),
            IpAddr::V4(v.header().destination_addr()),
        ),
        Some(NetSlice::Ipv6(v)) => (
            IpAddr::V6(v.header().source_addr()),
            IpAddr::V6(v.header().destination_addr()),
        ),
        _ => return None,
    };
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        return None;
    };
    if !(t.syn() && t.ack()) {
        return None;
    }
    let tuple = FourTuple {
        local: std::net::SocketAddr::new(src, t.source_port()),
        remote: std::net::SocketAddr::new(dst, t.destination_port()),
    };
    Some((tuple, SeqNumber(t.sequence_number())))
}

/// A key from the trace, or a random one (and the note that says so).
fn key_or_guess(key: Option<[u8; 16]>, what: &str, guessed: &mut Vec<String>) -> [u8; 16] {
    key.unwrap_or_else(|| {
        guessed.push(format!(
            "{what}: not in the trace (record with --pcap-secrets); a random one"
        ));
        let mut k = [0u8; 16];
        let h = std::collections::hash_map::RandomState::new();
        for (i, c) in k.chunks_mut(8).enumerate() {
            use std::hash::BuildHasher;
            c.copy_from_slice(&h.hash_one(i).to_le_bytes());
        }
        k
    })
}

/// Replays `trace` through the vnic `builder` describes (from the trace's
/// replay block, or [`guess_settings`]), and compares what it sends with
/// the outbound frames of `against` (another trace of the same session),
/// or of `trace` itself.
pub fn replay(
    trace: &Trace,
    builder: Builder,
    against: Option<&Trace>,
) -> Result<Outcome, ReplayError> {
    let mut o = Outcome::default();
    let block = trace.block.as_ref();
    if let Some(e) = &trace.block_error {
        o.guessed.push(format!("the replay block is unreadable ({e})"));
    }
    if block.is_none() && trace.block_error.is_none() {
        o.guessed.push("the trace has no replay block".into());
    }
    let first = trace.frames.first().map_or(Duration::ZERO, |f| f.at);
    let zero = match block.and_then(|b| b.epoch_ns).map(Duration::from_nanos) {
        Some(z) if z <= first => z,
        _ => {
            o.guessed
                .push("the ISN and SYN-cookie clocks started at the first frame".into());
            first
        }
    };
    let isn_key = key_or_guess(block.and_then(|b| b.isn_key), "the ISN key", &mut o.guessed);
    let cookie_secret = key_or_guess(
        block.and_then(|b| b.cookie_secret),
        "the SYN-cookie secret",
        &mut o.guessed,
    );
    let offload = block.and_then(|b| b.offload).unwrap_or_else(|| {
        o.guessed.push("offloads off".into());
        false
    });
    let clock = Arc::new(VirtualClock::new(Instant::now()));
    let scripts: Scripts = script::scripts(&trace.frames, zero);
    let mut rig = builder.replay_rig(RigSetup {
        clock: clock.clone(),
        mac: trace.mac.or(block.and_then(|b| b.mac)),
        mtu: block.and_then(|b| b.mtu).map(usize::from),
        offload,
        isn_key,
        cookie_secret,
        isns: isns(&trace.frames),
        scripts: Arc::new(Mutex::new(scripts)),
    })?;
    o.notes.push(
        "ISNs: the trace's SYN|ACKs (their clock part counts 4 µs, finer than a replay places a SYN)"
            .into(),
    );
    for (port, app) in &rig.scripted {
        o.notes.push(format!(
            "port {port} ({app}): the app replays the bytes the trace shows it sending"
        ));
    }
    if let Some(t) = block.and_then(|b| b.tcp.as_deref()) {
        let ours = format!("{:?}", rig.tcp);
        if t != ours {
            o.notes.push(format!(
                "the TCP settings differ from the trace's: trace {t}, replay {ours}"
            ));
        }
    }
    if let Some(v) = block.map(|b| b.version.as_str()) {
        if v != env!("CARGO_PKG_VERSION") {
            o.notes.push(format!(
                "the trace was written by vnic {v}, this is {}",
                env!("CARGO_PKG_VERSION")
            ));
        }
    }
    let base = clock.base();
    let mut sent = Vec::new();
    for f in &trace.frames {
        let at = base + f.at.saturating_sub(zero);
        fire_until(&mut rig, &clock, at, f.number, &mut sent)?;
        if f.dir != Direction::In {
            continue;
        }
        if f.data.len() < f.original_len {
            return Err(ReplayError::Format(format!(
                "frame {}: cut to {} of its {} bytes (--pcap-snaplen): a replay needs whole frames",
                f.number,
                f.data.len(),
                f.original_len
            )));
        }
        let now = clock.advance_to_instant(at);
        rig.rx.reap_closed();
        let d = rig.rx.handle_rx_frame(now, &f.data, offload);
        let comment = rx_comment(&d, d.rule(&rig.filter.lock()));
        o.frames_in += 1;
        if comment != f.comment {
            o.divergences.push(Divergence {
                frame: f.number,
                dir: Direction::In,
                origin: compare::origin_of(&f.comment),
                field: "decision".into(),
                trace: Some((format!("\"{}\"", f.comment), f.comment.clone())),
                replay: Some((format!("\"{comment}\""), comment.clone())),
            });
        }
        for p in &mut rig.processors {
            p.run_queued();
        }
        collect(&rig, f.number, &mut sent);
    }
    let expected: Vec<Placed> = against
        .unwrap_or(trace)
        .frames
        .iter()
        .filter(|f| f.dir == Direction::Out)
        .map(|f| Placed {
            frame: f.number,
            decoded: compare::decode(&f.data, &f.comment),
        })
        .collect();
    o.trace_out = expected.len();
    o.frames_out = sent.len();
    o.divergences.extend(compare::compare_out(&expected, &sent));
    o.divergences.sort_by_key(|d| d.frame);
    o.sent = sent;
    o.tcp = rig.tcp.clone();
    o.nodelay = rig.nodelay.clone();
    Ok(o)
}

/// Fires the processors' timers due by `until`, each at its deadline,
/// collecting what they send as sent before trace frame `frame`.
fn fire_until(
    rig: &mut Rig,
    clock: &VirtualClock,
    until: Instant,
    frame: usize,
    sent: &mut Vec<Placed>,
) -> Result<(), ReplayError> {
    for _ in 0..MAX_TIMER_PASSES {
        let next = rig.processors.iter().filter_map(|p| p.next_timer()).min();
        let Some(due) = next.filter(|d| *d <= until) else {
            return Ok(());
        };
        let now = clock.advance_to_instant(due);
        for p in &mut rig.processors {
            if p.next_timer().is_some_and(|d| d <= now) {
                p.fire_due();
            }
        }
        collect(rig, frame, sent);
    }
    Err(ReplayError::Format(format!(
        "before frame {frame}: a timer kept firing at one instant ({MAX_TIMER_PASSES} passes)"
    )))
}

/// Takes what the sinks got, as sent while replaying trace frame `frame`.
fn collect(rig: &Rig, frame: usize, sent: &mut Vec<Placed>) {
    for s in &rig.sinks {
        for (data, comment) in s.take() {
            sent.push(Placed {
                frame,
                decoded: compare::decode(&data, &comment),
            });
        }
    }
}

/// The 4-tuples of a trace's TCP connections, vnic's end local, in the
/// order their first frame appears.
pub fn connections(trace: &Trace) -> Vec<FourTuple> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for f in trace.frames.iter().filter(|f| f.dir == Direction::Out) {
        if let compare::Stream::Tcp { vnic, peer } = compare::decode(&f.data, &f.comment).stream {
            let t = FourTuple {
                local: vnic,
                remote: peer,
            };
            if seen.insert(t) {
                out.push(t);
            }
        }
    }
    out
}
