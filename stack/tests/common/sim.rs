//! The one simulated network of the stack's tests: two vnic stacks
//! (connect + accept) whose every segment goes through `Segment::emit`
//! and `wire::parse`, crosses a link with a delay, an optional bottleneck
//! rate with a drop-tail queue, and random loss, duplication and
//! reordering ([`Rng`]-driven from a seed); time is simulated and jumps
//! from event to event, so RTOs and other timers fire as they would.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vnic_stack::{
    parse, CloseReason, Connection, Disposition, Event, FourTuple, SeqNumber, State, TcpConfig,
};

use super::rng::Rng;

/// What the link does to each segment (one set for both directions).
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Bottleneck rate in bits per second (None: infinitely fast).
    pub rate_bps: Option<u64>,
    /// Most bytes queued at the bottleneck before tail drop.
    pub queue_bytes: usize,
    /// Probability that a segment is lost.
    pub loss: f64,
    /// Probability that a segment is duplicated.
    pub dup: f64,
    /// Probability that a segment is delayed by up to 3x the delay
    /// (so later segments overtake it).
    pub reorder: f64,
}

impl Link {
    pub fn clean(delay: Duration) -> Link {
        Link {
            delay,
            rate_bps: None,
            queue_bytes: usize::MAX,
            loss: 0.0,
            dup: 0.0,
            reorder: 0.0,
        }
    }

    /// When a segment of `len` TCP bytes sent at `now` arrives: None when
    /// it is lost or tail-dropped at the bottleneck, else its arrival and,
    /// when it is duplicated, the copy's. `free` is when this direction's
    /// bottleneck is next free (moved on by what is queued); the random
    /// draws come from `rng`, in a fixed order for the seed.
    pub fn schedule(
        &self,
        rng: &mut Rng,
        free: &mut Instant,
        now: Instant,
        len: usize,
    ) -> Option<Vec<Instant>> {
        if rng.chance(self.loss) {
            return None;
        }
        let mut depart = now;
        if let Some(rate) = self.rate_bps {
            let start = (*free).max(now);
            let backlog = start.saturating_duration_since(now).as_secs_f64() * rate as f64 / 8.0;
            if backlog as usize + len > self.queue_bytes {
                return None;
            }
            // IP header (20) + Ethernet framing (38) on top of TCP.
            let wire_bits = ((len + 58) * 8) as f64;
            depart = start + Duration::from_secs_f64(wire_bits / rate as f64);
            *free = depart;
        }
        let mut arrive = depart + self.delay;
        if rng.chance(self.reorder) {
            arrive += self.delay.mul_f64(3.0 * rng.unit()) + Duration::from_micros(100);
        }
        let mut arrivals = vec![arrive];
        if rng.chance(self.dup) {
            arrivals.push(arrive + Duration::from_micros(rng.next() % 3000));
        }
        Some(arrivals)
    }
}

/// One endpoint: its connection (None until the SYN arrives, for the
/// passive side), what its application must send, what it got.
pub struct End {
    pub tuple: FourTuple,
    pub conn: Option<Connection>,
    pub out: Vec<u8>,
    pub sent: usize,
    pub got: Vec<u8>,
    pub closed: Option<CloseReason>,
    /// The application does not read before this time.
    pub read_from: Option<Instant>,
    /// When the last byte of `out` of the *peer* arrived here.
    pub done_at: Option<Instant>,
    pub expect: usize,
    pub close_when_sent: bool,
    close_called: bool,
}

impl End {
    fn new(local: &str, remote: &str, out: Vec<u8>) -> End {
        let local: SocketAddr = local.parse().unwrap();
        let remote: SocketAddr = remote.parse().unwrap();
        End {
            tuple: FourTuple { local, remote },
            conn: None,
            out,
            sent: 0,
            got: Vec::new(),
            closed: None,
            read_from: None,
            done_at: None,
            expect: 0,
            close_when_sent: true,
            close_called: false,
        }
    }

    /// The application: write what fits, close when all is queued, read
    /// everything (unless told to wait), watch events.
    fn app(&mut self, now: Instant) {
        let Some(c) = self.conn.as_mut() else { return };
        if self.sent < self.out.len() {
            self.sent += c.send(&self.out[self.sent..]);
        }
        let open = matches!(c.state(), State::Established | State::CloseWait);
        if self.sent == self.out.len() && self.close_when_sent && open && !self.close_called {
            self.close_called = true;
            c.close();
        }
        if self.read_from.is_none_or(|t| now >= t) {
            let mut buf = [0u8; 64 * 1024];
            loop {
                let n = c.recv(&mut buf);
                if n == 0 {
                    break;
                }
                self.got.extend_from_slice(&buf[..n]);
            }
            if self.done_at.is_none() && self.got.len() >= self.expect {
                self.done_at = Some(now);
            }
        }
        while let Some(e) = c.poll_event() {
            if let Event::Closed(r) = e {
                self.closed = Some(r);
            }
        }
    }

    fn deliver(&mut self, now: Instant, cfg: &TcpConfig, bytes: &[u8]) {
        let seg = parse(self.tuple.remote.ip(), self.tuple.local.ip(), bytes)
            .expect("a stack emitted bytes its peer cannot parse");
        match self.conn.as_mut() {
            Some(c) => {
                if c.on_segment(now, &seg) == Disposition::Reincarnate {
                    panic!("unexpected reincarnation");
                }
            }
            None => {
                if seg.ack.is_some() || seg.control != vnic_stack::Control::Syn {
                    return; // stray before the SYN (a duplicate overtaking it)
                }
                self.conn = Some(Connection::accept(
                    now,
                    cfg,
                    self.tuple,
                    &seg,
                    SeqNumber(0x7fff_fff0),
                ));
            }
        }
    }

    /// Closed, or (unless `linger`) in TIME-WAIT (nothing left to do
    /// but wait).
    pub fn finished(&self, linger: bool) -> bool {
        self.closed.is_some()
            || (!linger
                && self
                    .conn
                    .as_ref()
                    .is_some_and(|c| c.state() == State::TimeWait))
    }
}

/// Pseudo-random bytes, different per seed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    Rng(seed | 1).bytes(len)
}

/// `a`'s connect, its ISS near the top of the sequence space (it wraps).
fn active_open(now: Instant, cfg: &TcpConfig, tuple: FourTuple) -> Connection {
    Connection::connect(now, cfg, tuple, SeqNumber(u32::MAX - 5000))
}

/// A segment on the wire: (arrival, order, direction 0 = a->b, bytes).
type InFlight = Reverse<(Instant, u64, usize, Vec<u8>)>;

/// The two endpoints, the link and the clock.
pub struct Sim {
    pub t0: Instant,
    pub now: Instant,
    pub a: End,
    pub b: End,
    pub cfg_a: TcpConfig,
    pub cfg_b: TcpConfig,
    pub link: Link,
    rng: Rng,
    wire: BinaryHeap<InFlight>,
    order: u64,
    /// When each direction's bottleneck is free again.
    link_free: [Instant; 2],
    /// Segments emitted (both directions).
    pub segments: u64,
    pub dropped: u64,
    /// Run on through TIME-WAIT until both ends are CLOSED.
    pub linger: bool,
    /// For each end (a, b): once this many segments were emitted, its
    /// connection is replaced by a checkpoint of itself (a clone, the
    /// original dropped), as a connection moved to another processor is.
    pub restore_at: [Option<u64>; 2],
}

impl Sim {
    /// `a` connects to `b` over IPv4; `a` sends `a_bytes`, `b` sends
    /// `b_bytes`.
    pub fn new(
        cfg_a: TcpConfig,
        cfg_b: TcpConfig,
        link: Link,
        seed: u64,
        a_bytes: usize,
        b_bytes: usize,
    ) -> Sim {
        let t0 = Instant::now();
        let (ca, sb) = ("10.0.0.2:40000", "10.0.0.1:80");
        let mut a = End::new(ca, sb, pattern(seed ^ 0xa, a_bytes));
        let mut b = End::new(sb, ca, pattern(seed ^ 0xb, b_bytes));
        a.expect = b_bytes;
        b.expect = a_bytes;
        a.conn = Some(active_open(t0, &cfg_a, a.tuple));
        Sim {
            t0,
            now: t0,
            a,
            b,
            cfg_a,
            cfg_b,
            link,
            rng: Rng(seed | 1),
            wire: BinaryHeap::new(),
            order: 0,
            link_free: [t0, t0],
            segments: 0,
            dropped: 0,
            linger: false,
            restore_at: [None, None],
        }
    }

    /// The same two ends over IPv6 (before anything ran).
    pub fn over_ipv6(mut self) -> Sim {
        let ca: SocketAddr = "[fd00::2]:40000".parse().unwrap();
        let sb: SocketAddr = "[fd00::1]:80".parse().unwrap();
        self.a.tuple = FourTuple {
            local: ca,
            remote: sb,
        };
        self.b.tuple = FourTuple {
            local: sb,
            remote: ca,
        };
        self.a.conn = Some(active_open(self.t0, &self.cfg_a, self.a.tuple));
        self
    }

    fn put_on_wire(&mut self, dir: usize, bytes: Vec<u8>) {
        self.segments += 1;
        let Some(arrivals) = self.link.schedule(
            &mut self.rng,
            &mut self.link_free[dir],
            self.now,
            bytes.len(),
        ) else {
            self.dropped += 1;
            return;
        };
        for at in arrivals {
            self.order += 1;
            self.wire
                .push(Reverse((at, self.order, dir, bytes.clone())));
        }
    }

    fn transmit(&mut self) {
        for dir in 0..2 {
            let end = if dir == 0 { &mut self.a } else { &mut self.b };
            let mut out = Vec::new();
            if let Some(c) = end.conn.as_mut() {
                while let Some(seg) = c.poll_transmit(self.now) {
                    let mut bytes = Vec::new();
                    seg.emit(end.tuple.local.ip(), end.tuple.remote.ip(), &mut bytes);
                    out.push(bytes);
                }
            }
            for bytes in out {
                self.put_on_wire(dir, bytes);
            }
        }
    }

    /// Runs until both ends are finished (closed, or in TIME-WAIT unless
    /// `linger`) or
    /// `limit` of simulated time passed; returns true when finished.
    pub fn run(&mut self, limit: Duration) -> bool {
        let deadline = self.t0 + limit;
        loop {
            self.a.app(self.now);
            self.b.app(self.now);
            self.transmit();
            // The apps may act on what transmit changed (e.g. Writable).
            self.a.app(self.now);
            self.b.app(self.now);
            self.transmit();
            self.restore_due();
            if self.a.finished(self.linger) && self.b.finished(self.linger) {
                return true;
            }
            let next_wire = self.wire.peek().map(|Reverse((t, ..))| *t);
            let next_timer = [&self.a, &self.b]
                .iter()
                .filter_map(|e| e.conn.as_ref().and_then(|c| c.poll_timeout()))
                .min();
            let next_read = [&self.a, &self.b]
                .iter()
                .filter_map(|e| e.read_from.filter(|t| *t > self.now))
                .min();
            let Some(next) = [next_wire, next_timer, next_read]
                .into_iter()
                .flatten()
                .min()
            else {
                panic!(
                    "deadlock at {:?}: nothing in flight and no timer (a {:?}, b {:?})",
                    self.now - self.t0,
                    self.a.conn.as_ref().map(|c| c.state()),
                    self.b.conn.as_ref().map(|c| c.state())
                );
            };
            if next > deadline {
                return false;
            }
            self.now = next.max(self.now);
            while let Some(Reverse((t, ..))) = self.wire.peek() {
                if *t > self.now {
                    break;
                }
                let Some(Reverse((_, _, dir, bytes))) = self.wire.pop() else {
                    break;
                };
                if dir == 0 {
                    self.b.deliver(self.now, &self.cfg_b, &bytes);
                } else {
                    self.a.deliver(self.now, &self.cfg_a, &bytes);
                }
            }
            for e in [&mut self.a, &mut self.b] {
                if let Some(c) = e.conn.as_mut() {
                    c.on_timeout(self.now);
                }
            }
        }
    }

    /// Replaces each end's connection by its checkpoint once its
    /// `restore_at` is reached (once).
    fn restore_due(&mut self) {
        for (i, end) in [&mut self.a, &mut self.b].into_iter().enumerate() {
            if self.restore_at[i].is_some_and(|n| self.segments >= n) {
                self.restore_at[i] = None;
                if let Some(c) = end.conn.take() {
                    end.conn = Some(c.clone());
                }
            }
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }
}
