//! The apps a replay cannot run for real, because what they send depends
//! on the world outside vnic (a proxy's back-end, an exec'd program): a
//! scripted app sends, on each connection, the bytes the trace shows vnic
//! sending on it, each at the time it first went out, and closes when the
//! trace shows vnic's FIN. It reads and drops what it receives, as a relay
//! or a program reading its input would.

use super::trace::TraceFrame;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vnic_adapter::clock::Clock;
use vnic_adapter::trace::turn::parse_turn;
use vnic_adapter::trace::Direction;
use vnic_listeners::app::{App, AppContext, Refused, Service, Socket};
use vnic_stack::FourTuple;

/// What one connection's app sent: its bytes, each run at the time it
/// first went out (since the replay's time zero), and when vnic's FIN
/// went out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script {
    /// Runs of new bytes and the time each first went out.
    pub sends: Vec<(Duration, Vec<u8>)>,
    /// When vnic's FIN first went out, if it did.
    pub fin: Option<Duration>,
}

/// Every connection's script, by 4-tuple (vnic's end local), one per
/// incarnation in order.
pub type Scripts = HashMap<FourTuple, VecDeque<Script>>;

/// Reads the scripts out of a trace's outbound TCP frames: for each
/// connection, from vnic's SYN|ACK on, the bytes past the highest
/// sequence number sent so far are new, at the turn that sent them.
/// `zero` is the trace time the replay's clock starts at.
pub fn scripts(frames: &[TraceFrame], zero: Duration) -> Scripts {
    // (tuple) -> (ISN+1, highest offset sent, script)
    let mut open: HashMap<FourTuple, (u32, u64, Script)> = HashMap::new();
    let mut done: Scripts = HashMap::new();
    for f in frames.iter().filter(|f| f.dir == Direction::Out) {
        let Some((tuple, seq, syn, fin, payload)) = tcp_of(&f.data) else {
            continue;
        };
        // When it went out: its processor's turn (the stamp), else when
        // the trace recorded it.
        let at = parse_turn(&f.comment).map_or_else(
            || f.at.saturating_sub(zero),
            |(t, _)| Duration::from_nanos(t),
        );
        if syn {
            if let Some((_, _, s)) = open.remove(&tuple) {
                done.entry(tuple).or_default().push_back(s);
            }
            open.insert(tuple, (seq.wrapping_add(1), 0, Script::default()));
            continue;
        }
        let Some((base, high, script)) = open.get_mut(&tuple) else {
            continue;
        };
        let off = u64::from(seq.wrapping_sub(*base));
        let end = off + payload.len() as u64;
        if end > *high && off <= *high {
            let skip = usize::try_from(*high - off).unwrap_or(usize::MAX);
            if let Some(new) = payload.get(skip..) {
                script.sends.push((at, new.to_vec()));
            }
            *high = end;
        }
        if fin && script.fin.is_none() {
            script.fin = Some(at);
        }
    }
    for (tuple, (_, _, s)) in open {
        done.entry(tuple).or_default().push_back(s);
    }
    done
}

/// A TCP frame's 4-tuple, vnic's end local: the source of a frame going
/// out, the destination of one coming in.
pub fn tcp_tuple(frame: &[u8], dir: Direction) -> Option<FourTuple> {
    let (t, ..) = tcp_of(frame)?;
    Some(match dir {
        Direction::Out => t,
        Direction::In => FourTuple {
            local: t.remote,
            remote: t.local,
        },
    })
}

/// An outbound TCP frame's 4-tuple (vnic's end local), sequence number,
/// SYN and FIN, and payload.
fn tcp_of(frame: &[u8]) -> Option<(FourTuple, u32, bool, bool, &[u8])> {
    let (local, remote, t) = super::trace::tcp_slice(frame)?;
    let tuple = FourTuple { local, remote };
    Some((tuple, t.sequence_number(), t.syn(), t.fin(), t.payload()))
}

/// The service standing in for one that needs the outside world: each
/// connection it opens plays its script from the trace.
pub struct ScriptedService {
    name: String,
    nagle: bool,
    scripts: Arc<Mutex<Scripts>>,
    clock: Clock,
    base: Instant,
}

impl ScriptedService {
    /// Stands in for the service `name` (whose Nagle setting was
    /// `nagle`), playing `scripts` on the replay's `clock`, whose time
    /// zero is `base`.
    pub fn new(
        name: &str,
        nagle: bool,
        scripts: Arc<Mutex<Scripts>>,
        clock: Clock,
        base: Instant,
    ) -> ScriptedService {
        ScriptedService {
            name: name.to_string(),
            nagle,
            scripts,
            clock,
            base,
        }
    }
}

impl Service for ScriptedService {
    fn name(&self) -> &str {
        &self.name
    }

    fn open(&self, ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        let tuple = FourTuple {
            local: ctx.local,
            remote: ctx.remote,
        };
        let script = self
            .scripts
            .lock()
            .get_mut(&tuple)
            .and_then(VecDeque::pop_front)
            .unwrap_or_default();
        Ok(Box::new(ScriptedApp {
            sends: script
                .sends
                .into_iter()
                .map(|(at, b)| (self.base + at, b))
                .collect(),
            fin: script.fin.map(|at| self.base + at),
            pending: Vec::new(),
            closed: false,
            nagle: self.nagle,
            clock: self.clock.clone(),
        }))
    }
}

/// One connection's scripted app.
struct ScriptedApp {
    sends: VecDeque<(Instant, Vec<u8>)>,
    fin: Option<Instant>,
    /// Released bytes the socket had no room for yet.
    pending: Vec<u8>,
    closed: bool,
    nagle: bool,
    clock: Clock,
}

impl App for ScriptedApp {
    fn poll(&mut self, sock: &mut dyn Socket) {
        let mut sink = [0u8; 16 * 1024];
        while sock.recv(&mut sink) > 0 {}
        let now = self.clock.now();
        while self.sends.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, b)) = self.sends.pop_front() {
                self.pending.extend_from_slice(&b);
            }
        }
        if !self.pending.is_empty() {
            let n = sock.send(&self.pending);
            self.pending.drain(..n);
        }
        let due = self.fin.is_some_and(|at| at <= now);
        if due && !self.closed && self.pending.is_empty() && self.sends.is_empty() {
            self.closed = true;
            sock.close();
        }
    }

    fn nagle(&self) -> bool {
        self.nagle
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.sends.front() {
            Some((at, _)) => Some(*at),
            None if !self.closed => self.fin,
            None => None,
        }
    }

    fn memory(&self) -> usize {
        self.pending.capacity()
    }
}

/// The service of a port a trace without a replay block shows served:
/// which app ran is unknown, so the replay scripts it (it never opens a
/// connection itself).
pub struct Unknown;

impl Service for Unknown {
    fn name(&self) -> &str {
        "unknown"
    }

    fn open(&self, _ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        Err(Refused("an unknown app is replayed from its script".into()))
    }
}
