//! Running a trace again: its inbound frames, at their recorded times
//! (on a virtual clock that starts when the trace's ISN and cookie clocks
//! started), through the real RX queue and processors, one at a time in
//! this thread; the processors' timers fire at their deadlines between
//! frames. What vnic sends is collected and compared with the trace's
//! outbound frames (see [`super::compare`]).

use super::compare::{self, Divergence, Placed};
use super::plan::{turns, when_taken, Turn};
use super::rig::{Rig, RigSetup};
use super::script::{self, Scripts};
use super::trace::{Trace, TraceFrame};
use super::ReplayError;
use crate::Builder;
use parking_lot::Mutex;
use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};
use vnic_adapter::clock::{set_wall, VirtualClock};
use vnic_adapter::trace::comment::rx_comment;
use vnic_adapter::trace::turn::parse_turn;
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
    let mut cookies = false;
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
        if words.get(1).is_some_and(|w| w.starts_with("cpu=")) {
            let ip = destination(&f.data).filter(|ip| !ip.is_multicast() && !ips.contains(ip));
            if let Some(ip) = ip {
                ips.push(ip);
            }
        }
        cookies |= f.comment.starts_with("in adapter syn-cookie");
    }
    let processors = b.and_then(|b| b.processors).unwrap_or_else(|| {
        guessed.push(format!(
            "{} processors (the highest cpu=K seen)",
            cpus.max(1)
        ));
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
        ips.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    ));
    ports.sort_unstable();
    guessed.push(format!(
        "listening ports {} with apps scripted from the trace",
        ports
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    ));
    let mut builder = Builder::new("replay").processors(processors).filter(filter);
    match b.and_then(|b| b.syn_backlog) {
        Some(n) => builder = builder.syn_backlog(n),
        None if cookies => {
            guessed.push("SYN cookies for every connection (the trace shows some)".into());
            builder = builder.syn_backlog(0);
        }
        None => {}
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
        let q = s.entry(d.0).or_default();
        if q.back() != Some(&d.1) {
            q.push_back(d.1);
        }
    }
    s
}

/// A SYN|ACK's 4-tuple (vnic's end local) and sequence number.
fn syn_ack(frame: &[u8]) -> Option<(FourTuple, SeqNumber)> {
    let (local, remote, t) = super::trace::tcp_slice(frame)?;
    if !(t.syn() && t.ack()) {
        return None;
    }
    let tuple = FourTuple { local, remote };
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
        o.guessed
            .push(format!("the replay block is unreadable ({e})"));
    }
    if block.is_none() && trace.block_error.is_none() {
        o.guessed.push("the trace has no replay block".into());
    }
    let zero = zero_of(trace);
    if block.and_then(|b| b.epoch_ns).map(Duration::from_nanos) != Some(zero) {
        o.guessed
            .push("the ISN and SYN-cookie clocks started at the first frame".into());
    }
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
    let mut sent = Vec::new();
    // The apps' wall clock is the trace's while this thread replays it.
    struct Wall;
    impl Drop for Wall {
        fn drop(&mut self) {
            set_wall(None);
        }
    }
    let _wall = Wall;
    let stamped = trace
        .frames
        .iter()
        .any(|f| f.dir == Direction::Out && parse_turn(&f.comment).is_some());
    if stamped {
        o.notes.push(
            "each processor acted when its trace says (its clock reading, segments and batches \
             taken, stamped on its frames)"
                .into(),
        );
        by_turns(trace, zero, offload, &mut rig, &mut o, &mut sent)?;
    } else {
        o.guessed.push(
            "when each processor acted (the trace's frames carry no turn stamps): each              segment at its arrival, timers at their deadlines"
                .into(),
        );
        by_arrival(trace, zero, offload, &mut rig, &mut o, &mut sent)?;
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

/// The RX queue takes trace frame `f` (inbound) at its recorded time;
/// a decision other than the trace's is a divergence. Returns the
/// processor it was queued for, if any.
fn rx_frame(
    f: &TraceFrame,
    at: Instant,
    offload: bool,
    rig: &mut Rig,
    o: &mut Outcome,
) -> Result<(), ReplayError> {
    if f.data.len() < f.original_len {
        return Err(ReplayError::Format(format!(
            "frame {}: cut to {} of its {} bytes (--pcap-snaplen): a replay needs whole frames",
            f.number,
            f.data.len(),
            f.original_len
        )));
    }
    // The flows their processors closed are forgotten before a frame the
    // trace shows finding no flow, not before one it shows finding its
    // flow: the RX thread had not yet read the processor's report then.
    if f.comment.split(' ').nth(2) != Some("flow") {
        rig.rx.reap_closed();
    }
    let d = rig.rx.handle_rx_frame(at, &f.data, offload);
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
    Ok(())
}

/// The processor a trace's inbound frame was queued for, if a segment
/// (`in cpu=K ...`, not a datagram).
pub(crate) fn queued_for(f: &TraceFrame) -> Option<usize> {
    let mut w = f.comment.split(' ');
    if w.next() != Some("in") {
        return None;
    }
    let k = w.next()?.strip_prefix("cpu=")?.parse().ok()?;
    let rule = w.next()?;
    (!rule.ends_with("udp")).then_some(k)
}

/// A stamped trace: the RX queue takes the inbound frames in the trace's
/// order at their times, and each processor acts when its frames' turn
/// stamps say, on a clock of its own: a new stamp `t=T in=N` is a turn
/// at T that first takes the segments up to the Nth (a batch, serviced
/// once unless the next turn goes on with the same batch), or, with none
/// new, only fires the timers due (they fire after a batch too); the
/// batches between that sent nothing are those the trace's batch
/// records show, or, in a trace without them, placed by
/// [`super::plan::plan`]. The RX
/// queue reads ahead when a turn needs
/// a segment whose frame the trace recorded after the turn's frames (the
/// two threads race to the trace).
fn by_turns(
    trace: &Trace,
    zero: Duration,
    offload: bool,
    rig: &mut Rig,
    o: &mut Outcome,
    sent: &mut Vec<Placed>,
) -> Result<(), ReplayError> {
    let n = rig.processors.len();
    let base = rig.clocks.first().map_or_else(Instant::now, |c| c.base());
    let at = |f: &TraceFrame| base + f.at.saturating_sub(zero);
    let turns = turns(trace, n);
    let (plan, exact) = when_taken(trace, &turns, zero);
    say_how_batched(trace, &exact, o);
    let mut open = vec![false; n];
    let mut next_turn = vec![0usize; n];
    // The arrival times of the segments queued for each processor.
    let mut queued: Vec<VecDeque<Instant>> = vec![VecDeque::new(); n];
    let ins: Vec<&TraceFrame> = trace
        .frames
        .iter()
        .filter(|f| f.dir == Direction::In)
        .collect();
    let mut next_in = 0;
    let rx_one = |rig: &mut Rig,
                  o: &mut Outcome,
                  queued: &mut Vec<VecDeque<Instant>>,
                  next_in: &mut usize|
     -> Result<bool, ReplayError> {
        let Some(f) = ins.get(*next_in) else {
            return Ok(false);
        };
        *next_in += 1;
        rx_frame(f, at(f), offload, rig, o)?;
        if let Some(q) = queued_for(f).and_then(|k| queued.get_mut(k)) {
            q.push_back(at(f));
        }
        Ok(true)
    };
    for (i, f) in trace.frames.iter().enumerate() {
        match f.dir {
            Direction::In => {
                if ins.get(next_in).is_none_or(|g| g.number > f.number) {
                    continue; // read ahead already
                }
                // The trace shows the connection's flow gone by now, the
                // replay still holds it: its processor's report that it
                // closed reached the RX queue sooner there.
                if let Some(t) = closed_by_now(f, rig) {
                    rig.rx.reap_closed();
                    if rig.rx.flows().lookup(&t).is_some() {
                        rig.rx.forget_flow(&t);
                        o.notes.push(format!(
                            "frame {}: the flow of {} > {} was gone in the trace and not yet \
                             in the replay: forgotten",
                            f.number, t.remote, t.local
                        ));
                    }
                }
                rx_one(rig, o, &mut queued, &mut next_in)?;
                collect(rig, f.number, sent);
            }
            Direction::Out => {
                let Some(k) = processor_of(&f.comment) else {
                    continue;
                };
                let Some(turn) = turns.get(k).and_then(|v| v.get(next_turn[k])).copied() else {
                    continue;
                };
                if turn.at != i {
                    continue; // a later frame of a turn already taken
                }
                next_turn[k] += 1;
                let want = turn.taken.saturating_sub(rig.processors[k].taken());
                while (queued[k].len() as u64) < want {
                    if !rx_one(rig, o, &mut queued, &mut next_in)? {
                        // The replay's RX queue placed fewer (a decision
                        // diverged, already reported): go on with those.
                        o.notes.push(format!(
                            "frame {}: processor {k} had taken {} segments, the replay queued \
                             it {}",
                            f.number,
                            turn.taken,
                            rig.processors[k].taken() + queued[k].len() as u64
                        ));
                        break;
                    }
                }
                let want = want.min(queued[k].len() as u64);
                // The same batch goes on in the next turn (an out-of-order
                // segment's ACK went out at once, within it).
                let goes_on = if exact[k] {
                    // As recorded: its next segment went in this batch.
                    let next = usize::try_from(turn.taken).unwrap_or(usize::MAX);
                    plan[k].get(next) == Some(&turn.t)
                } else {
                    turns[k]
                        .get(next_turn[k])
                        .is_some_and(|nt| nt.t == turn.t && nt.taken > turn.taken)
                };
                for _ in 0..want {
                    queued[k].pop_front();
                }
                let p = &mut rig.processors[k];
                let clock = &rig.clocks[k];
                // The batches that sent nothing first (see `plan`).
                let mut left = want;
                while left > 0 {
                    let j = usize::try_from(p.taken()).unwrap_or(usize::MAX);
                    let when = plan[k].get(j).copied().unwrap_or(turn.t);
                    let run = plan[k]
                        .iter()
                        .skip(j)
                        .take(usize::try_from(left).unwrap_or(usize::MAX))
                        .take_while(|w| **w == when)
                        .count() as u64;
                    if when == turn.t || run == 0 {
                        break;
                    }
                    clock.advance_to(Duration::from_nanos(when));
                    wall(zero, clock);
                    // As recorded, the rest of a batch a turn left open
                    // goes on in it.
                    p.take_batch(run, !(exact[k] && open[k]), true);
                    if exact[k] {
                        open[k] = false;
                    }
                    p.fire_due();
                    left -= run;
                }
                clock.advance_to(Duration::from_nanos(turn.t));
                wall(zero, clock);
                if left > 0 {
                    p.take_batch(left, !open[k], !goes_on);
                }
                open[k] = goes_on;
                // Then the timers due, as the processor's loop fires them
                // after each batch.
                if !goes_on {
                    p.fire_due();
                }
                collect(rig, f.number, sent);
            }
        }
    }
    // The rest: what the trace shows no processor acting on.
    while rx_one(rig, o, &mut queued, &mut next_in)? {}
    if let Some(end) = trace.frames.last() {
        for k in 0..n {
            let batches = Batches {
                plan: exact[k].then_some(plan[k].as_slice()),
                open: &mut open[k],
            };
            // A recorded batch happened, even one the processor's clock
            // dates after the trace's last frame (the two clocks differ).
            let last = batches.plan.and_then(|p| p.iter().max().copied());
            let until = last.map_or(at(end), |t| at(end).max(base + Duration::from_nanos(t)));
            catch_up(
                zero,
                rig,
                k,
                &turns,
                &next_turn,
                &mut queued,
                until,
                batches,
            );
        }
        collect(rig, end.number, sent);
    }
    Ok(())
}

/// The 4-tuple of inbound frame `f` whose flow the replay holds,
/// when the trace shows the RX queue found no flow for it (`rst
/// no-connection`, a new connection, a SYN cookie).
fn closed_by_now(f: &TraceFrame, rig: &Rig) -> Option<FourTuple> {
    let c = &f.comment;
    let no_flow = c.starts_with("in adapter rst no-connection")
        || c.starts_with("in adapter syn-cookie")
        || c.split(' ').nth(2).is_some_and(|r| r.ends_with("new"));
    if !no_flow {
        return None;
    }
    let t = super::script::tcp_tuple(&f.data, Direction::In)?;
    rig.rx.flows().lookup(&t).map(|_| t)
}

/// A processor's batches as its trace records them, for [`catch_up`].
struct Batches<'a> {
    /// When it took each segment (see [`when_taken`]); None when the
    /// trace does not record its batches.
    plan: Option<&'a [u64]>,
    /// Its last batch did not end (a turn took part of it).
    open: &'a mut bool,
}

/// Before time `until`, processor `k`, if its next stamped turn is later
/// (or it has none), takes the segments queued for it that this turn
/// has taken (all, after its last turn) in the batches its trace
/// records, or, without records, each in a batch of its own at its
/// arrival, and fires its timers due, each at its deadline: its turns
/// that sent nothing.
#[allow(clippy::too_many_arguments)]
fn catch_up(
    zero: Duration,
    rig: &mut Rig,
    k: usize,
    turns: &[Vec<Turn>],
    next_turn: &[usize],
    queued: &mut [VecDeque<Instant>],
    until: Instant,
    batches: Batches<'_>,
) {
    if let (Some(p), Some(clock)) = (rig.processors.get_mut(k), rig.clocks.get(k)) {
        let next = turns[k].get(next_turn[k]);
        if next.is_some_and(|t| clock.base() + Duration::from_nanos(t.t) <= until) {
            return;
        }
        let limit = next.map_or(u64::MAX, |t| t.taken);
        loop {
            let j = usize::try_from(p.taken()).unwrap_or(usize::MAX);
            let recorded = batches.plan.and_then(|plan| {
                let when = *plan.get(j)?;
                let left = limit.saturating_sub(p.taken()).min(queued[k].len() as u64);
                let run = plan[j..].iter().take_while(|w| **w == when).count() as u64;
                Some((clock.base() + Duration::from_nanos(when), run.min(left)))
            });
            let (arrival, run) = match (recorded, queued[k].front()) {
                (_, None) => (None, 0),
                (Some((at, run)), Some(_)) => (Some(at), run),
                (None, Some(a)) => (Some(*a), 1),
            };
            let arrival = arrival.filter(|a| *a <= until && run > 0);
            let timer = p.next_timer().filter(|d| *d <= until);
            match (arrival, timer) {
                (Some(a), d) if p.taken() < limit && d.is_none_or(|d| a <= d) => {
                    for _ in 0..run {
                        queued[k].pop_front();
                    }
                    clock.advance_to_instant(a);
                    wall(zero, clock);
                    let starts = !(batches.plan.is_some() && *batches.open);
                    p.take_batch(run, starts, true);
                    *batches.open = false;
                }
                (_, Some(d)) => {
                    clock.advance_to_instant(d);
                    wall(zero, clock);
                    p.fire_due();
                }
                _ => break,
            }
        }
    }
}

/// Says whether the replay follows the trace's batch records or guesses
/// the batches that sent nothing (a trace without records, or with some
/// lost or unreadable).
fn say_how_batched(trace: &Trace, exact: &[bool], o: &mut Outcome) {
    if let (n @ 1.., Some(e)) = &trace.bad_batches {
        o.guessed
            .push(format!("{n} batch records did not read (the first: {e})"));
    }
    if trace.batches.is_empty() {
        o.guessed.push(
            "how each processor's segments went in batches that sent nothing (the trace has \
             no batch records): from their arrival times"
                .into(),
        );
        return;
    }
    let guessed: Vec<String> = (0..exact.len())
        .filter(|k| !exact[*k] && trace.frames.iter().any(|f| queued_for(f) == Some(*k)))
        .map(|k| k.to_string())
        .collect();
    if guessed.is_empty() {
        o.notes
            .push("each processor took the batches its trace's batch records show".into());
    } else {
        o.guessed.push(format!(
            "the batches of processors {} (their batch records are incomplete): from the \
             arrival times",
            guessed.join(",")
        ));
    }
}

/// The processor a comment names (`in cpu=K ...`, `out cpu=K ...`).
pub(crate) fn processor_in_comment(comment: &str) -> Option<usize> {
    comment
        .split(' ')
        .nth(1)?
        .strip_prefix("cpu=")?
        .parse()
        .ok()
}

/// The trace's time zero: when its ISN and cookie clocks started (its
/// replay block says), else its first frame's time.
pub(crate) fn zero_of(trace: &Trace) -> Duration {
    let first = trace.frames.first().map_or(Duration::ZERO, |f| f.at);
    match trace
        .block
        .as_ref()
        .and_then(|b| b.epoch_ns)
        .map(Duration::from_nanos)
    {
        Some(z) if z <= first => z,
        _ => first,
    }
}

/// The processor that sent a frame, from its comment (`out cpu=K ...`).
pub(crate) fn processor_of(comment: &str) -> Option<usize> {
    comment
        .strip_prefix("out cpu=")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// An unstamped trace: each inbound frame at its time, its segment
/// taken at once (one batch each), timers at their deadlines.
fn by_arrival(
    trace: &Trace,
    zero: Duration,
    offload: bool,
    rig: &mut Rig,
    o: &mut Outcome,
    sent: &mut Vec<Placed>,
) -> Result<(), ReplayError> {
    let base = rig.clocks.first().map_or_else(Instant::now, |c| c.base());
    for f in &trace.frames {
        let at = base + f.at.saturating_sub(zero);
        fire_until(zero, rig, at, f.number, sent)?;
        if f.dir != Direction::In {
            continue;
        }
        rx_frame(f, at, offload, rig, o)?;
        for (p, c) in rig.processors.iter_mut().zip(&rig.clocks) {
            c.advance_to_instant(at);
            wall(zero, c);
            p.run_queued();
        }
        collect(rig, f.number, sent);
    }
    Ok(())
}

/// Fires the processors' timers due by `until`, each at its deadline,
/// collecting what they send as sent before trace frame `frame`.
fn fire_until(
    zero: Duration,
    rig: &mut Rig,
    until: Instant,
    frame: usize,
    sent: &mut Vec<Placed>,
) -> Result<(), ReplayError> {
    for (p, c) in rig.processors.iter_mut().zip(&rig.clocks) {
        let mut passes = 0;
        while let Some(due) = p.next_timer().filter(|d| *d <= until) {
            passes += 1;
            if passes > MAX_TIMER_PASSES {
                return Err(ReplayError::Format(format!(
                    "before frame {frame}: a timer kept firing at one instant"
                )));
            }
            c.advance_to_instant(due);
            wall(zero, c);
            p.fire_due();
        }
    }
    collect(rig, frame, sent);
    Ok(())
}

/// The apps' wall clock (an HTTP `Date`) at `clock`'s time: the trace's
/// wall-clock time then (its zero is `zero` since 1970).
fn wall(zero: Duration, clock: &VirtualClock) {
    set_wall(Some(UNIX_EPOCH + zero + clock.elapsed()));
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
