//! Two stacks (connect + accept) exchanging 1 MiB each way through the
//! simulated link of `common::sim` (1 ms each way), with time advancing:
//! every segment goes through `Segment::emit` and `wire::parse`, and the
//! link can drop, duplicate and reorder. Each exchange runs on until both
//! ends are CLOSED (TIME-WAIT included).

mod common;

use std::time::Duration;

use common::sim::{Link, Sim};
use vnic_stack::{CloseReason, TcpConfig};

/// Runs the exchange of `bytes` each way over `link`; returns the
/// finished simulation.
fn exchange(cfg: &TcpConfig, v6: bool, bytes: usize, link: Link, seed: u64) -> Sim {
    let mut sim = Sim::new(cfg.clone(), cfg.clone(), link, seed, bytes, bytes);
    if v6 {
        sim = sim.over_ipv6();
    }
    sim.linger = true;
    assert!(sim.run(Duration::from_secs(600)), "exchange did not finish");
    sim
}

fn cfg() -> TcpConfig {
    TcpConfig {
        time_wait: Duration::from_secs(1),
        ..TcpConfig::default()
    }
}

const MIB: usize = 1 << 20;
const ONE_WAY: Duration = Duration::from_millis(1);

#[test]
fn two_stacks_exchange_1mib_both_ways() {
    let sim = exchange(&cfg(), false, MIB, Link::clean(ONE_WAY), 7);
    let (a, b) = (&sim.a, &sim.b);
    assert!(a.got == b.out, "a got {} bytes, wrong", a.got.len());
    assert!(b.got == a.out, "b got {} bytes, wrong", b.got.len());
    assert_eq!(a.closed, Some(CloseReason::Normal));
    assert_eq!(b.closed, Some(CloseReason::Normal));
    let sa = a.conn.as_ref().unwrap().stats();
    let sb = b.conn.as_ref().unwrap().stats();
    assert_eq!(sa.bytes_out, MIB as u64);
    assert_eq!(sa.bytes_in, MIB as u64);
    assert_eq!(sb.bytes_out, MIB as u64);
    assert_eq!(sa.retransmissions + sb.retransmissions, 0);
    // 256 KiB windows (scaled) over a 2 ms RTT: well under a second plus
    // TIME-WAIT.
    let took = sim.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn two_stacks_exchange_1mib_over_lossy_reordering_link() {
    let link = Link {
        loss: 0.02,
        dup: 0.02,
        reorder: 0.10,
        ..Link::clean(ONE_WAY)
    };
    for seed in [3, 10, 99] {
        let sim = exchange(&cfg(), seed % 2 == 0, MIB, link, seed);
        let (a, b) = (&sim.a, &sim.b);
        assert!(a.got == b.out, "seed {seed}: a got {} bytes", a.got.len());
        assert!(b.got == a.out, "seed {seed}: b got {} bytes", b.got.len());
        let sa = a.conn.as_ref().unwrap().stats();
        let sb = b.conn.as_ref().unwrap().stats();
        assert!(sa.segments_retransmitted + sb.segments_retransmitted > 0);
        assert_eq!(sa.bytes_in, MIB as u64);
        assert_eq!(sb.bytes_in, MIB as u64);
    }
}

#[test]
fn two_stacks_with_small_buffers_and_ipv6() {
    let c = TcpConfig {
        recv_buffer: 3000,
        send_buffer: 5000,
        mtu: 1280,
        ..cfg()
    };
    let sim = exchange(&c, true, 100_000, Link::clean(ONE_WAY), 5);
    assert!(sim.a.got == sim.b.out && sim.b.got == sim.a.out);
    // MTU 1280 over IPv6: MSS 1220, less 12 bytes of timestamps.
    assert_eq!(sim.a.conn.as_ref().unwrap().send_mss(), 1208);
}
