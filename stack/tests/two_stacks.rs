//! Two vnic stacks over the simulated link of `common::sim`: a property test
//! (the link drops, duplicates and reorders at random; whatever it does,
//! every byte arrives once and in order in both directions, and both ends
//! finish the close), and a receiver that stops reading for a minute.

mod common;

use std::time::Duration;

use common::sim::{Link, Sim};
use proptest::prelude::*;
use vnic_stack::{CloseReason, CongestionAlgorithm, TcpConfig};

fn cfg(sack: bool, timestamps: bool, cubic: bool) -> TcpConfig {
    TcpConfig {
        time_wait: Duration::from_millis(500),
        sack,
        timestamps,
        congestion: if cubic {
            CongestionAlgorithm::Cubic
        } else {
            CongestionAlgorithm::NewReno
        },
        ..TcpConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_byte_arrives_once_in_order_through_a_lossy_duplicating_reordering_link(
        seed in any::<u64>(),
        loss in 0.0f64..0.15,
        dup in 0.0f64..0.10,
        reorder in 0.0f64..0.20,
        a_bytes in 0usize..=256 * 1024,
        b_bytes in 0usize..=256 * 1024,
        delay_ms in 1u64..20,
        sack_a in any::<bool>(),
        ts_a in any::<bool>(),
        cubic in any::<bool>(),
    ) {
        let link = Link {
            loss,
            dup,
            reorder,
            ..Link::clean(Duration::from_millis(delay_ms))
        };
        // b always offers everything; a's offers vary, so every
        // combination of negotiated options is exercised.
        let mut sim = Sim::new(
            cfg(sack_a, ts_a, cubic),
            cfg(true, true, !cubic),
            link,
            seed,
            a_bytes,
            b_bytes,
        );
        let finished = sim.run(Duration::from_secs(3600));
        prop_assert!(finished, "did not finish: a got {} of {}, b got {} of {}",
            sim.a.got.len(), b_bytes, sim.b.got.len(), a_bytes);
        prop_assert!(sim.a.got == sim.b.out, "a got {} bytes, wrong", sim.a.got.len());
        prop_assert!(sim.b.got == sim.a.out, "b got {} bytes, wrong", sim.b.got.len());
        let (sa, sb) = (
            sim.a.conn.as_ref().map(|c| c.stats()).unwrap_or_default(),
            sim.b.conn.as_ref().map(|c| c.stats()).unwrap_or_default(),
        );
        prop_assert_eq!(sa.bytes_in, b_bytes as u64);
        prop_assert_eq!(sb.bytes_in, a_bytes as u64);
    }
}

#[test]
fn rfc9293_receiver_that_stops_reading_for_60s_gets_every_byte_afterwards() {
    let c = cfg(true, true, true);
    let mut sim = Sim::new(
        c.clone(),
        c,
        Link::clean(Duration::from_millis(1)),
        9,
        1 << 20,
        0,
    );
    sim.b.read_from = Some(sim.t0 + Duration::from_secs(60));
    assert!(sim.run(Duration::from_secs(600)), "did not finish");
    assert!(sim.b.got == sim.a.out, "b got {} bytes", sim.b.got.len());
    let done = sim.b.done_at.expect("all read") - sim.t0;
    assert!(
        done >= Duration::from_secs(60) && done < Duration::from_secs(61),
        "{done:?}"
    );
    assert_eq!(sim.a.closed, Some(CloseReason::Normal));
    let st = sim.a.conn.as_ref().unwrap().stats();
    assert_eq!(st.retransmissions, 0, "zero window: probes, no RTO");
}
