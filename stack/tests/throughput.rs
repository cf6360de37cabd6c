//! Throughput over the simulated link (`common::sim`), smoltcp-netsim
//! style: one 4 MiB bulk transfer through a 1 Gbit/s bottleneck (1 MiB
//! drop-tail queue, 100 us each way) at 0, 1 and 5% loss, for CUBIC and
//! NewReno with and without SACK; the goodput printed as a table
//! (`cargo test -p vnic-stack --release --test throughput -- --nocapture`)
//! and checked against floors so a regression in loss recovery shows.

mod common;

use std::time::Duration;

use common::sim::{Link, Sim};
use vnic_stack::{CongestionAlgorithm, TcpConfig};

const BYTES: usize = 4 << 20;
const RATE: u64 = 1_000_000_000;
const DELAY: Duration = Duration::from_micros(100);

fn cfg(algo: CongestionAlgorithm, sack: bool) -> TcpConfig {
    TcpConfig {
        time_wait: Duration::from_millis(100),
        congestion: algo,
        sack,
        ..TcpConfig::default()
    }
}

/// Goodput in Mbit/s of a 4 MiB transfer a -> b, and the stats.
fn goodput(
    algo: CongestionAlgorithm,
    sack: bool,
    loss: f64,
    seed: u64,
) -> (f64, vnic_stack::ConnStats) {
    let link = Link {
        rate_bps: Some(RATE),
        queue_bytes: 1 << 20,
        loss,
        ..Link::clean(DELAY)
    };
    let mut sim = Sim::new(cfg(algo, sack), cfg(algo, true), link, seed, BYTES, 0);
    assert!(sim.run(Duration::from_secs(600)), "transfer did not finish");
    assert!(sim.b.got == sim.a.out, "corrupted transfer");
    let done = sim.b.done_at.expect("done") - sim.t0;
    let stats = sim.a.conn.as_ref().expect("conn").stats();
    (BYTES as f64 * 8.0 / done.as_secs_f64() / 1e6, stats)
}

#[test]
fn goodput_table_1gbit_200us_rtt() {
    println!(
        "\n{:<8} {:<5} {:>6} {:>10} {:>6} {:>6} {:>6}",
        "cc", "sack", "loss", "Mbit/s", "rtx", "rto", "frx"
    );
    let mut rows = Vec::new();
    for (algo, sack) in [
        (CongestionAlgorithm::Cubic, true),
        (CongestionAlgorithm::Cubic, false),
        (CongestionAlgorithm::NewReno, true),
        (CongestionAlgorithm::NewReno, false),
    ] {
        for loss in [0.0, 0.01, 0.05] {
            let (mbps, st) = goodput(algo, sack, loss, 42);
            println!(
                "{:<8} {:<5} {:>5.0}% {:>10.1} {:>6} {:>6} {:>6}",
                format!("{algo:?}"),
                sack,
                loss * 100.0,
                mbps,
                st.segments_retransmitted,
                st.retransmissions,
                st.fast_retransmits
            );
            rows.push((algo, sack, loss, mbps));
        }
    }
    let get = |a, s, l| {
        rows.iter()
            .find(|r| r.0 == a && r.1 == s && r.2 == l)
            .map(|r| r.3)
            .unwrap_or(0.0)
    };
    let clean = get(CongestionAlgorithm::Cubic, true, 0.0);
    assert!(clean > 80.0, "loss-free goodput {clean:.1} Mbit/s");
    let one = get(CongestionAlgorithm::Cubic, true, 0.01);
    assert!(one > clean / 2.0, "1% loss: {one:.1} vs {clean:.1} Mbit/s");
}
