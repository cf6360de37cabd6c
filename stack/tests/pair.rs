//! Two stacks (connect + accept) exchanging 1 MiB each way through an
//! in-memory link, with time advancing: every segment goes through
//! `Segment::emit` and `wire::parse`, and the link can drop, duplicate and
//! reorder.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vnic_stack::{
    parse, CloseReason, Config, Connection, Disposition, Event, FourTuple, SeqNumber,
};

/// xorshift64*: deterministic impairments, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Clone, Copy)]
struct Impair {
    drop_pct: u64,
    dup_pct: u64,
    reorder_pct: u64,
}

const CLEAN: Impair = Impair {
    drop_pct: 0,
    dup_pct: 0,
    reorder_pct: 0,
};

/// One endpoint: its connection (None until the SYN arrives, for the
/// passive side), what it must send, what it got.
struct End {
    tuple: FourTuple,
    conn: Option<Connection>,
    out: Vec<u8>,
    sent: usize,
    got: Vec<u8>,
    closed: Option<CloseReason>,
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
        }
    }

    /// The application: write what fits, close when all is queued, read
    /// everything, watch events.
    fn app(&mut self) {
        let Some(c) = self.conn.as_mut() else { return };
        if self.sent < self.out.len() {
            self.sent += c.send(&self.out[self.sent..]);
            if self.sent == self.out.len() {
                c.close();
            }
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = c.recv(&mut buf);
            if n == 0 {
                break;
            }
            self.got.extend_from_slice(&buf[..n]);
        }
        while let Some(e) = c.poll_event() {
            if let Event::Closed(r) = e {
                self.closed = Some(r);
            }
        }
    }

    /// Emits everything due onto `wire`.
    fn transmit(&mut self, now: Instant, wire: &mut Vec<Vec<u8>>) -> usize {
        let Some(c) = self.conn.as_mut() else {
            return 0;
        };
        let mut n = 0;
        while let Some(seg) = c.poll_transmit(now) {
            let mut bytes = Vec::new();
            seg.emit(self.tuple.local.ip(), self.tuple.remote.ip(), &mut bytes);
            wire.push(bytes);
            n += 1;
        }
        n
    }

    fn deliver(&mut self, now: Instant, cfg: &Config, bytes: &[u8]) {
        let seg = parse(self.tuple.remote.ip(), self.tuple.local.ip(), bytes)
            .expect("a stack emitted bytes its peer cannot parse");
        match self.conn.as_mut() {
            Some(c) => assert_eq!(c.on_segment(now, &seg), Disposition::Handled),
            None => {
                assert!(seg.ack.is_none(), "first segment must be the SYN");
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
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed);
    (0..len).map(|_| r.next() as u8).collect()
}

/// Runs the exchange; returns the two ends and the simulated time taken.
fn exchange(cfg: &Config, v6: bool, bytes: usize, imp: Impair, seed: u64) -> (End, End, Duration) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut rng = Rng(seed);
    let (ca, sb) = if v6 {
        ("[fd00::2]:40000", "[fd00::1]:80")
    } else {
        ("10.0.0.2:40000", "10.0.0.1:80")
    };
    let mut a = End::new(ca, sb, pattern(1, bytes));
    let mut b = End::new(sb, ca, pattern(2, bytes));
    // The active side starts near the top of the sequence space: wraps.
    a.conn = Some(Connection::connect(
        now,
        cfg,
        a.tuple,
        SeqNumber(u32::MAX - 5000),
    ));
    let mut in_flight: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    let one_way = Duration::from_millis(1);

    for _ in 0..500_000 {
        a.app();
        b.app();
        let mut wire_ab = Vec::new();
        let mut wire_ba = Vec::new();
        let sent = a.transmit(now, &mut wire_ab) + b.transmit(now, &mut wire_ba);

        // What was on the wire for one_way arrives now.
        let arriving = std::mem::take(&mut in_flight);
        let delivered = arriving[0].len() + arriving[1].len();
        for (dir, mut pkts) in arriving.into_iter().enumerate() {
            if pkts.len() > 1 && rng.chance(imp.reorder_pct) {
                let i = (rng.next() as usize) % (pkts.len() - 1);
                pkts.swap(i, i + 1);
            }
            let end = if dir == 0 { &mut b } else { &mut a };
            for p in pkts {
                end.deliver(now, cfg, &p);
            }
        }
        for (dir, wire) in [(0, wire_ab), (1, wire_ba)] {
            for p in wire {
                if rng.chance(imp.drop_pct) {
                    continue;
                }
                if rng.chance(imp.dup_pct) {
                    in_flight[dir].push(p.clone());
                }
                in_flight[dir].push(p);
            }
        }

        if a.closed.is_some() && b.closed.is_some() {
            return (a, b, now - t0);
        }

        // Advance time: one link delay while traffic flows, else straight
        // to the next timer.
        let busy = sent + delivered > 0 || !in_flight.iter().all(Vec::is_empty);
        now = if busy {
            now + one_way
        } else {
            let next = [&a, &b]
                .iter()
                .filter_map(|e| e.conn.as_ref().and_then(|c| c.poll_timeout()))
                .min()
                .expect("deadlock: nothing in flight and no timer");
            next.max(now)
        };
        for e in [&mut a, &mut b] {
            if let Some(c) = e.conn.as_mut() {
                c.on_timeout(now);
            }
        }
    }
    panic!("exchange did not finish");
}

fn cfg() -> Config {
    Config {
        time_wait: Duration::from_secs(1),
        ..Config::default()
    }
}

const MIB: usize = 1 << 20;

#[test]
fn two_stacks_exchange_1mib_both_ways() {
    let (a, b, took) = exchange(&cfg(), false, MIB, CLEAN, 7);
    assert!(a.got == b.out, "a got {} bytes, wrong", a.got.len());
    assert!(b.got == a.out, "b got {} bytes, wrong", b.got.len());
    assert_eq!(a.closed, Some(CloseReason::Normal));
    assert_eq!(b.closed, Some(CloseReason::Normal));
    let (sa, sb) = (a.conn.unwrap().stats(), b.conn.unwrap().stats());
    assert_eq!(sa.bytes_out, MIB as u64);
    assert_eq!(sa.bytes_in, MIB as u64);
    assert_eq!(sb.bytes_out, MIB as u64);
    assert_eq!(sa.retransmissions + sb.retransmissions, 0);
    // 256 KiB windows (scaled) over a 2 ms RTT: well under a second plus
    // TIME-WAIT.
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn two_stacks_exchange_1mib_over_lossy_reordering_link() {
    let imp = Impair {
        drop_pct: 2,
        dup_pct: 2,
        reorder_pct: 10,
    };
    for seed in [3, 10, 99] {
        let (a, b, _) = exchange(&cfg(), seed % 2 == 0, MIB, imp, seed);
        assert!(a.got == b.out, "seed {seed}: a got {} bytes", a.got.len());
        assert!(b.got == a.out, "seed {seed}: b got {} bytes", b.got.len());
        let (sa, sb) = (a.conn.unwrap().stats(), b.conn.unwrap().stats());
        assert!(sa.segments_retransmitted + sb.segments_retransmitted > 0);
        assert_eq!(sa.bytes_in, MIB as u64);
        assert_eq!(sb.bytes_in, MIB as u64);
    }
}

#[test]
fn two_stacks_with_small_buffers_and_ipv6() {
    let c = Config {
        recv_buffer: 3000,
        send_buffer: 5000,
        mtu: 1280,
        ..cfg()
    };
    let (a, b, _) = exchange(&c, true, 100_000, CLEAN, 5);
    assert!(a.got == b.out && b.got == a.out);
    // MTU 1280 over IPv6: MSS 1220, less 12 bytes of timestamps.
    assert_eq!(a.conn.unwrap().send_mss(), 1208);
}
