//! Process pairs (issue 19 part 2): a server connection whose primary
//! processor dies mid-transfer is taken over by its backup's copy, and the
//! client never notices more than a pause.
//!
//! The server's processor loop is modelled exactly as the processor runs
//! it: segments in (and timers) → the application reads and writes →
//! `checkpoint` (applied at once into the backup's replica, with the
//! application's own state beside it) → `poll_transmit`. At a random
//! service the primary crashes after taking segments in and running the
//! application, before its checkpoint: all of that is lost. The segments
//! its last transmit sent may or may not reach the client (each is pulled
//! off the wire with even odds, if still on it). After a random downtime
//! (segments reaching the server meanwhile are lost) the backup's replica
//! `take_over`s and the run goes on to the end. Both directions must
//! arrive exactly, nothing may ever send an RST, both ends close
//! normally, and on a link without loss the client hears from the server
//! within a few RTTs of the takeover, not an RTO.
//!
//! Segments cross the link through `Segment::emit` and `wire::parse`; the
//! link's loss, duplication and reordering come from `common::sim::Link`
//! and the seeded `common::rng::Rng`.

mod common;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::rng::Rng;
use common::sim::{pattern, Link};
use vnic_stack::{
    parse, CloseReason, CongestionAlgorithm, Connection, Control, Event, FourTuple, SendMark,
    SeqNumber, State, TcpConfig,
};

/// One-way delay of the link: an RTT of 2 ms.
const ONE_WAY: Duration = Duration::from_millis(1);

/// The defaults: 2 MSL of TIME-WAIT (60 s) outlasts the peer's backed-off
/// retransmissions of its FIN (the run ends at TIME-WAIT anyway).
fn cfg() -> TcpConfig {
    TcpConfig::default()
}

/// The configs of a seed: the server's congestion control varies, and
/// what the client offers (SACK, timestamps), so every combination the
/// server may run is taken over.
fn configs(seed: u64) -> (TcpConfig, TcpConfig) {
    let client = TcpConfig {
        sack: seed % 5 != 0,
        timestamps: seed % 7 != 0,
        ..cfg()
    };
    let congestion = [
        CongestionAlgorithm::Cubic,
        CongestionAlgorithm::NewReno,
        CongestionAlgorithm::Bbr,
    ][(seed % 3) as usize];
    let server = TcpConfig {
        congestion,
        ..cfg()
    };
    (client, server)
}

/// Which services of the server crash its primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Any service once the backup holds a copy.
    Any,
    /// Only once either side has closed (the FIN exchange).
    Closing,
}

/// The server application's state, checkpointed with the connection (as
/// `App::checkpoint` does): how much it wrote, how much it read, whether
/// it closed.
#[derive(Clone, Copy, Debug, Default)]
struct AppState {
    sent: usize,
    got: usize,
    closed: bool,
}

/// An application over one connection: writes `out`, reads into `got`,
/// closes once everything is queued.
struct App {
    out: Vec<u8>,
    got: Vec<u8>,
    state: AppState,
    close_reason: Option<CloseReason>,
    /// Close once everything is queued.
    close: bool,
}

impl App {
    fn new(out: Vec<u8>) -> App {
        App {
            out,
            got: Vec::new(),
            state: AppState::default(),
            close_reason: None,
            close: true,
        }
    }

    fn run(&mut self, c: &mut Connection) {
        if self.state.sent < self.out.len() {
            self.state.sent += c.send(&self.out[self.state.sent..]);
        }
        let open = matches!(c.state(), State::Established | State::CloseWait);
        if self.close && self.state.sent == self.out.len() && open && !self.state.closed {
            self.state.closed = true;
            c.close();
        }
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = c.recv(&mut buf);
            if n == 0 {
                break;
            }
            self.got.extend_from_slice(&buf[..n]);
        }
        self.state.got = self.got.len();
        while let Some(e) = c.poll_event() {
            if let Event::Closed(r) = e {
                self.close_reason = Some(r);
            }
        }
    }

    /// Back to a checkpointed state: what was read or written since is
    /// lost with the primary (the connection's copy lacks it too).
    fn restore(&mut self, s: AppState) {
        self.got.truncate(s.got);
        self.state = s;
    }
}

/// A segment on the wire: (arrival, order, direction 0 = client->server,
/// the server service that sent it, bytes).
type InFlight = Reverse<(Instant, u64, usize, u64, Vec<u8>)>;

/// What a run measured.
#[derive(Debug, Default)]
struct Report {
    crashes: usize,
    /// For each crash after which the client still expected data: from
    /// the crash to the first new byte (or the FIN) at the client.
    /// The downtime (of the crashes in a row before the client heard
    /// from the server again) is part of it: `(stall, downtime)`.
    stalls: Vec<(Duration, Duration)>,
    /// Send bytes and total memory carried by all checkpoints, and what
    /// copying the whole send buffer each time would have carried.
    cp_send_bytes: usize,
    cp_memory: usize,
    cp_naive_bytes: usize,
    checkpoints: usize,
    elapsed: Duration,
    server_bytes_out: u64,
}

/// The client, the server's primary and backup, and the link.
struct Run {
    t0: Instant,
    now: Instant,
    link: Link,
    rng: Rng,
    wire: BinaryHeap<InFlight>,
    order: u64,
    /// When each direction's bottleneck is free again.
    link_free: [Instant; 2],
    client_tuple: FourTuple,
    server_tuple: FourTuple,
    cfg_server: TcpConfig,
    client: Connection,
    client_app: App,
    /// The primary's connection (None before the SYN and while down).
    server: Option<Connection>,
    server_app: App,
    /// The backup: its replica of the connection and of the app state.
    backup: Option<(Box<Connection>, AppState)>,
    mark: Option<SendMark>,
    /// Services of the server so far, and the ones that crash.
    services: u64,
    crash_at: Vec<u64>,
    phase: Phase,
    /// Services counted towards `crash_at` (those in `phase`).
    phase_services: u64,
    down_until: Option<Instant>,
    /// A crash whose stall is being measured: (when, client bytes then,
    /// client had the FIN then, downtime so far)
    /// client had the FIN then).
    stall_from: Option<(Instant, usize, bool, Duration)>,
    report: Report,
}

impl Run {
    fn new(seed: u64, link: Link, c_bytes: usize, s_bytes: usize) -> Run {
        let t0 = Instant::now();
        let (cfg_client, cfg_server) = configs(seed);
        let c: SocketAddr = "10.0.0.2:40000".parse().expect("address");
        let s: SocketAddr = "10.0.0.1:80".parse().expect("address");
        let client_tuple = FourTuple {
            local: c,
            remote: s,
        };
        let server_tuple = FourTuple {
            local: s,
            remote: c,
        };
        Run {
            t0,
            now: t0,
            link,
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            wire: BinaryHeap::new(),
            order: 0,
            link_free: [t0, t0],
            client_tuple,
            server_tuple,
            cfg_server,
            client: Connection::connect(t0, &cfg_client, client_tuple, SeqNumber(u32::MAX - 3000)),
            client_app: App::new(pattern(seed ^ 0xc, c_bytes)),
            server: None,
            server_app: App::new(pattern(seed ^ 0x5, s_bytes)),
            backup: None,
            mark: None,
            services: 0,
            crash_at: Vec::new(),
            phase: Phase::Any,
            phase_services: 0,
            down_until: None,
            stall_from: None,
            report: Report::default(),
        }
    }

    fn put_on_wire(&mut self, dir: usize, tag: u64, bytes: Vec<u8>) {
        let seg = parse(
            if dir == 0 {
                self.client_tuple.local.ip()
            } else {
                self.server_tuple.local.ip()
            },
            if dir == 0 {
                self.client_tuple.remote.ip()
            } else {
                self.server_tuple.remote.ip()
            },
            &bytes,
        )
        .expect("a stack emitted bytes its peer cannot parse");
        assert!(
            seg.control != Control::Rst,
            "{} sent an RST at {:?}: {seg:?}",
            ["the client", "the server"][dir],
            self.now - self.t0
        );
        let Some(arrivals) = self.link.schedule(
            &mut self.rng,
            &mut self.link_free[dir],
            self.now,
            bytes.len(),
        ) else {
            return;
        };
        for at in arrivals {
            self.order += 1;
            self.wire
                .push(Reverse((at, self.order, dir, tag, bytes.clone())));
        }
    }

    fn transmit(&mut self, dir: usize) {
        let (conn, tuple) = if dir == 0 {
            (Some(&mut self.client), self.client_tuple)
        } else {
            (self.server.as_mut(), self.server_tuple)
        };
        let Some(conn) = conn else { return };
        let mut out = Vec::new();
        while let Some(seg) = conn.poll_transmit(self.now) {
            let mut bytes = Vec::new();
            seg.emit(tuple.local.ip(), tuple.remote.ip(), &mut bytes);
            out.push(bytes);
        }
        for bytes in out {
            self.put_on_wire(dir, self.services, bytes);
        }
    }

    /// The client's turn: segments in, timers, its app, transmit.
    fn client_turn(&mut self, segs: &[Vec<u8>]) {
        let (src, dst) = (self.client_tuple.remote.ip(), self.client_tuple.local.ip());
        for bytes in segs {
            let seg = parse(src, dst, bytes).expect("parses");
            self.client.on_segment(self.now, &seg);
        }
        self.client.on_timeout(self.now);
        self.client_app.run(&mut self.client);
        self.transmit(0);
        self.client_app.run(&mut self.client);
        self.transmit(0);
        if let Some((at, got, fin, down)) = self.stall_from {
            let progressed =
                self.client_app.got.len() > got || (!fin && self.client.peer_fin_received());
            if progressed {
                self.stall_from = None;
                self.report.stalls.push((self.now - at, down));
            }
        }
    }

    fn in_phase(&self) -> bool {
        let closing = |s: State| {
            matches!(
                s,
                State::FinWait1
                    | State::FinWait2
                    | State::CloseWait
                    | State::Closing
                    | State::LastAck
                    | State::TimeWait
            )
        };
        match self.phase {
            Phase::Any => true,
            Phase::Closing => {
                closing(self.client.state())
                    || self.server.as_ref().is_some_and(|c| closing(c.state()))
            }
        }
    }

    /// The server processor's service of its connection: segments in and
    /// timers, the app, checkpoint, transmit; or a crash before the
    /// checkpoint.
    fn server_turn(&mut self, segs: &[Vec<u8>]) {
        if let Some(t) = self.down_until {
            if self.now < t {
                return; // nobody listens: what arrives is lost
            }
            self.resume();
        }
        self.services += 1;
        let (src, dst) = (self.server_tuple.remote.ip(), self.server_tuple.local.ip());
        for bytes in segs {
            let seg = parse(src, dst, bytes).expect("parses");
            match self.server.as_mut() {
                Some(c) => {
                    c.on_segment(self.now, &seg);
                }
                None if seg.control == Control::Syn && seg.ack.is_none() => {
                    self.server = Some(Connection::accept(
                        self.now,
                        &self.cfg_server,
                        self.server_tuple,
                        &seg,
                        SeqNumber(0x7fff_fff0),
                    ));
                }
                None => {}
            }
        }
        let Some(conn) = self.server.as_mut() else {
            return;
        };
        conn.on_timeout(self.now);
        self.server_app.run(conn);
        if self.backup.is_some() && self.in_phase() {
            self.phase_services += 1;
            if self.crash_at.first() == Some(&self.phase_services) {
                self.crash_at.remove(0);
                self.crash();
                return;
            }
        }
        self.checkpoint();
        self.transmit(1);
    }

    /// The checkpoint, carried to the backup and applied there at once.
    fn checkpoint(&mut self) {
        let Some(conn) = self.server.as_mut() else {
            return;
        };
        let naive = conn.send_queued();
        let cp = conn.checkpoint(self.mark);
        self.mark = Some(cp.mark());
        self.report.checkpoints += 1;
        self.report.cp_send_bytes += cp.send_bytes();
        self.report.cp_memory += cp.memory();
        self.report.cp_naive_bytes += naive;
        let older = self.backup.take().map(|(c, _)| c);
        let replica = cp.apply(older).expect("no checkpoint is lost on the way");
        self.backup = Some((replica, self.server_app.state));
    }

    /// The primary dies: what it took in and did since its checkpoint is
    /// gone; its last transmit's segments may or may not get through.
    fn crash(&mut self) {
        self.report.crashes += 1;
        self.server = None;
        let last = self.services - 1;
        let wire = std::mem::take(&mut self.wire).into_vec();
        for Reverse(entry) in wire {
            if entry.2 == 1 && entry.3 == last && self.rng.chance(0.5) {
                continue;
            }
            self.wire.push(Reverse(entry));
        }
        // The backup notices at once, soon, later, or after more than an
        // RTO of the primary's (its timers then come due at the takeover).
        let us = match self.rng.next() % 4 {
            0 => 0,
            1 => self.rng.next() % 2_000,
            2 => self.rng.next() % 30_000,
            _ => 250_000 + self.rng.next() % 350_000,
        };
        let down = Duration::from_micros(us);
        self.down_until = Some(self.now + down);
        let fin = self.client.peer_fin_received();
        let expecting = self.client_app.got.len() < self.server_app.out.len() || !fin;
        self.stall_from = match self.stall_from {
            // Crashed again before the client heard from the server.
            Some((at, got, fin, d)) => Some((at, got, fin, d + down)),
            None => expecting.then_some((self.now, self.client_app.got.len(), fin, down)),
        };
    }

    /// The backup's replica takes over, with the app state it holds; it
    /// checkpoints in full to a new backup from then on.
    fn resume(&mut self) {
        self.down_until = None;
        let (mut conn, app) = self.backup.take().expect("the backup holds a copy");
        conn.take_over(self.now);
        self.server_app.restore(app);
        self.server = Some(*conn);
        self.mark = None;
    }

    fn finished(&self) -> bool {
        let done = |c: &Connection| matches!(c.state(), State::TimeWait | State::Closed);
        self.client_app.got == self.server_app.out
            && self.server_app.got == self.client_app.out
            && done(&self.client)
            && self.server.as_ref().is_some_and(done)
    }

    /// Runs to the end or `limit`; true when both ends finished.
    fn run(&mut self, limit: Duration) -> bool {
        let deadline = self.t0 + limit;
        self.client_turn(&[]);
        loop {
            if self.finished() {
                self.report.elapsed = self.now - self.t0;
                self.report.server_bytes_out =
                    self.server.as_ref().map_or(0, |c| c.stats().bytes_out);
                return true;
            }
            let next = [
                self.wire.peek().map(|Reverse((t, ..))| *t),
                self.client.poll_timeout(),
                self.server.as_ref().and_then(|c| c.poll_timeout()),
                self.down_until,
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else {
                panic!("deadlock at {:?}", self.now - self.t0);
            };
            if next > deadline {
                return false;
            }
            self.now = next.max(self.now);
            let (mut to_client, mut to_server) = (Vec::new(), Vec::new());
            while self
                .wire
                .peek()
                .is_some_and(|Reverse((t, ..))| *t <= self.now)
            {
                let Some(Reverse((_, _, dir, _, bytes))) = self.wire.pop() else {
                    break;
                };
                if dir == 0 {
                    to_server.push(bytes);
                } else {
                    to_client.push(bytes);
                }
            }
            // A processor services a connection when a segment or a
            // timer calls for it (or its backup takes over).
            let now = self.now;
            let due =
                |c: Option<&Connection>| c.and_then(|c| c.poll_timeout()).is_some_and(|t| t <= now);
            if !to_server.is_empty()
                || due(self.server.as_ref())
                || self.down_until.is_some_and(|t| t <= self.now)
            {
                self.server_turn(&to_server);
            }
            if !to_client.is_empty() || due(Some(&self.client)) {
                self.client_turn(&to_client);
            }
        }
    }
}

/// One run over `link` with crashes at the `crashes`-th services of
/// `phase` (1-based, increasing); panics unless everything arrives
/// exactly and both ends close normally.
fn crash_run(
    seed: u64,
    link: Link,
    c_bytes: usize,
    s_bytes: usize,
    phase: Phase,
    crashes: &[u64],
) -> Report {
    let mut run = Run::new(seed, link, c_bytes, s_bytes);
    run.phase = phase;
    run.crash_at = crashes.to_vec();
    let finished = run.run(Duration::from_secs(300));
    let ctx = format!(
        "seed {seed} {phase:?} crashes at {crashes:?}: client got {}/{}, server got {}/{}, \
         client {:?}, server {:?}",
        run.client_app.got.len(),
        s_bytes,
        run.server_app.got.len(),
        c_bytes,
        run.client.state(),
        run.server.as_ref().map(|c| c.state()),
    );
    assert!(finished, "did not finish: {ctx}");
    assert!(
        run.client_app.got == run.server_app.out,
        "client bytes differ: {ctx}"
    );
    assert!(
        run.server_app.got == run.client_app.out,
        "server bytes differ: {ctx}"
    );
    for reason in [run.client_app.close_reason, run.server_app.close_reason] {
        assert!(
            matches!(reason, None | Some(CloseReason::Normal)),
            "{reason:?}: {ctx}"
        );
    }
    assert_eq!(run.client.stats().challenge_acks, 0, "{ctx}");
    let server = run.server.as_ref().map(|c| c.stats());
    assert_eq!(
        server.map(|s| s.challenge_acks),
        Some(0),
        "every ACK the client sent was acceptable: {ctx}"
    );
    run.report
}

/// How many services the run has before its end (to pick crash points).
fn services_in(seed: u64, link: Link, c_bytes: usize, s_bytes: usize, phase: Phase) -> u64 {
    let mut run = Run::new(seed, link, c_bytes, s_bytes);
    run.phase = phase;
    let done = run.run(Duration::from_secs(300));
    assert!(
        done,
        "seed {seed} {link:?}: a run without crash finishes: client {:?} got {}/{s_bytes}, server {:?} got {}/{c_bytes}",
        run.client.state(),
        run.client_app.got.len(),
        run.server.as_ref().map(|c| c.state()),
        run.server_app.got.len()
    );
    run.phase_services
}

fn lossy() -> Link {
    Link {
        loss: 0.02,
        dup: 0.01,
        reorder: 0.05,
        ..Link::clean(ONE_WAY)
    }
}

/// Stall bound on a link without loss: the downtime plus a few RTTs
/// (the RTO is 200 ms at least).
fn assert_stalls_short(r: &Report, ctx: &str) {
    for &(stall, down) in &r.stalls {
        assert!(
            stall <= down + 10 * 2 * ONE_WAY,
            "{ctx}: {stall:?} from crash to the client's next byte (down {down:?})"
        );
    }
}

#[test]
fn a_backup_takes_over_mid_transfer_and_every_byte_arrives_once() {
    let mut worst = Duration::ZERO;
    let mut measured = 0;
    for seed in 1..=200u64 {
        let (c_bytes, s_bytes) = (
            (seed as usize * 7919) % (96 * 1024),
            64 * 1024 + (seed as usize * 104_729) % (448 * 1024),
        );
        for (link, clean) in [(Link::clean(ONE_WAY), true), (lossy(), false)] {
            let total = services_in(seed, link, c_bytes, s_bytes, Phase::Any);
            let mut rng = Rng(seed * 31 + clean as u64);
            let mut at = vec![1 + rng.next() % total];
            if seed % 4 == 0 {
                // A second crash, of the backup that took over.
                at.push(at[0] + 1 + rng.next() % total);
            }
            let r = crash_run(seed, link, c_bytes, s_bytes, Phase::Any, &at);
            assert!(r.crashes >= 1, "seed {seed}: crashed");
            if clean {
                assert_stalls_short(&r, &format!("seed {seed} crashes at {at:?}"));
                measured += r.stalls.len();
                for &(s, d) in &r.stalls {
                    worst = worst.max(s.saturating_sub(d));
                }
            }
        }
    }
    assert!(measured >= 20, "stalls measured: {measured}");
    eprintln!("worst stall beyond the downtime, no loss: {worst:?} over {measured} crashes");
}

#[test]
fn a_backup_takes_over_during_the_close() {
    for seed in 1..=200u64 {
        let (c_bytes, s_bytes) = (
            (seed as usize * 523) % 20_000,
            (seed as usize * 7717) % 60_000,
        );
        for (link, clean) in [(Link::clean(ONE_WAY), true), (lossy(), false)] {
            let total = services_in(seed, link, c_bytes, s_bytes, Phase::Closing);
            if total == 0 {
                continue;
            }
            let at = 1 + Rng(seed * 17 + 3).next() % total;
            let r = crash_run(seed, link, c_bytes, s_bytes, Phase::Closing, &[at]);
            if clean {
                assert_stalls_short(&r, &format!("seed {seed} closing crash at {at}"));
            }
        }
    }
}

/// The primary sends data after its checkpoint and dies; the client
/// acknowledges that data, and the ACK reaches the backup's copy. It must
/// be accepted (not answered with a challenge ACK and dropped, with any
/// data it carries): `take_over` covers everything the primary may have
/// sent.
#[test]
fn acks_of_data_sent_after_the_checkpoint_are_accepted_after_take_over() {
    let mut run = Run::new(9, Link::clean(ONE_WAY), 0, 0);
    run.client_app.close = false;
    run.server_app.close = false;
    assert!(!run.run(Duration::from_millis(50)), "open, idle");
    let t0 = run.now;
    let Some(server) = run.server.as_mut() else {
        panic!("no server")
    };
    assert_eq!(server.state(), State::Established);
    // Data written, checkpointed, then sent; then the primary dies.
    assert_eq!(server.send(&[7u8; 4000]), 4000);
    let cp = server.checkpoint(None);
    let mut replica = cp.apply(None).expect("full");
    let mut to_client = Vec::new();
    while let Some(seg) = server.poll_transmit(t0) {
        to_client.push(seg);
    }
    assert!(!to_client.is_empty());
    let now = t0 + ONE_WAY;
    for seg in &to_client {
        run.client.on_segment(now, seg);
    }
    let mut plain = replica.clone();
    let mut buf = [0u8; 8192];
    assert_eq!(run.client.recv(&mut buf), 4000);
    // The client's ACK, with data of its own, reaches the replica.
    run.client.send(b"hello");
    let mut acks = Vec::new();
    while let Some(seg) = run.client.poll_transmit(now) {
        acks.push(seg);
    }
    // A plain copy, as the checkpoint left it, takes the ACK for one of
    // data it never sent: it answers a challenge ACK and drops the
    // segment, data and all.
    for seg in &acks {
        plain.on_segment(now + ONE_WAY, seg);
    }
    assert_eq!(plain.stats().challenge_acks, 1);
    assert_eq!((plain.send_queued(), plain.recv_available()), (4000, 0));
    replica.take_over(now + ONE_WAY);
    for seg in &acks {
        replica.on_segment(now + ONE_WAY, seg);
    }
    assert_eq!(replica.stats().challenge_acks, 0, "the ACK was taken");
    assert_eq!(replica.send_queued(), 0, "the 4000 bytes are acknowledged");
    assert_eq!(replica.recv(&mut buf), 5, "the data with the ACK taken in");
    assert_eq!(&buf[..5], b"hello");
}

/// The cost is linear: a 64 MiB one-way transfer, checkpointed after
/// every service, carries each send byte to the backup once; copying the
/// whole send buffer each time would carry far more.
#[test]
fn checkpoints_carry_each_send_byte_once() {
    let bytes = 64 << 20;
    let link = Link {
        rate_bps: Some(1_000_000_000),
        queue_bytes: 512 * 1024,
        ..Link::clean(ONE_WAY)
    };
    let mut run = Run::new(1, link, 0, bytes);
    assert!(run.run(Duration::from_secs(600)), "the transfer ends");
    assert!(run.client_app.got == run.server_app.out);
    let r = &run.report;
    eprintln!(
        "{} checkpoints: {} send bytes, {} bytes of memory in all ({:.2} per byte sent, \
         {} per checkpoint beside the send bytes); a whole send buffer each time: {} bytes",
        r.checkpoints,
        r.cp_send_bytes,
        r.cp_memory,
        r.cp_memory as f64 / bytes as f64,
        (r.cp_memory - r.cp_send_bytes) / r.checkpoints,
        r.cp_naive_bytes
    );
    assert!(
        r.cp_send_bytes <= bytes,
        "{} send bytes carried",
        r.cp_send_bytes
    );
    assert!(r.cp_send_bytes >= bytes - 256 * 1024);
    // Beside the send bytes, each checkpoint holds the TCB and the RACK
    // records of the flight: a constant per checkpoint, not per byte.
    let per_checkpoint = (r.cp_memory - r.cp_send_bytes) / r.checkpoints;
    assert!(per_checkpoint < 8 * 1024, "{per_checkpoint} bytes each");
    assert!(
        r.cp_memory < 4 * bytes,
        "{} bytes carried for {bytes}",
        r.cp_memory
    );
    assert!(
        r.cp_naive_bytes > 20 * bytes,
        "the naive copy would be cheap too: {}",
        r.cp_naive_bytes
    );
}
