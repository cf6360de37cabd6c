//! A connection's checkpoint (`Connection: Clone`) restored in its place
//! behaves exactly like the original: two transfers over the same
//! simulated lossy, reordering, duplicating link (the same seed, so the
//! same fate for every segment), one of them with both ends replaced by a
//! checkpoint of themselves at a random moment, end with the same bytes,
//! the same segment count, the same time and the same closes. Anything a
//! checkpoint missed (a timer, the congestion controller's state, a SACK
//! record, a pending event) would change the course of the second.

#[macro_use]
mod common;

use common::rng::Rng;
use common::sim::{Link, Sim};
use std::time::Duration;
use vnic_stack::{CongestionAlgorithm, TcpConfig};

/// What a run came to.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    finished: bool,
    segments: u64,
    dropped: u64,
    elapsed: Duration,
    /// Bytes each end received, and a hash of them.
    a_got: (usize, u64),
    b_got: (usize, u64),
    a_closed: Option<String>,
    b_closed: Option<String>,
}

fn digest(bytes: &[u8]) -> (usize, u64) {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    (bytes.len(), h.finish())
}

fn run(cc: CongestionAlgorithm, seed: u64, restore_at: [Option<u64>; 2]) -> Outcome {
    let cfg = TcpConfig {
        congestion: cc,
        ..TcpConfig::default()
    };
    let link = Link {
        loss: 0.02,
        dup: 0.01,
        reorder: 0.05,
        rate_bps: Some(200_000_000),
        queue_bytes: 128 * 1024,
        ..Link::clean(Duration::from_millis(2))
    };
    let mut sim = Sim::new(cfg.clone(), cfg, link, seed, 96 * 1024, 384 * 1024);
    sim.linger = true;
    sim.restore_at = restore_at;
    let finished = sim.run(Duration::from_secs(600));
    Outcome {
        finished,
        segments: sim.segments,
        dropped: sim.dropped,
        elapsed: sim.elapsed(),
        a_got: digest(&sim.a.got),
        b_got: digest(&sim.b.got),
        a_closed: sim.a.closed.map(|r| format!("{r:?}")),
        b_closed: sim.b.closed.map(|r| format!("{r:?}")),
    }
}

#[test]
fn a_checkpoint_restored_in_place_behaves_exactly_like_the_original() {
    for cc in [
        CongestionAlgorithm::Cubic,
        CongestionAlgorithm::NewReno,
        CongestionAlgorithm::Bbr,
    ] {
        for seed in 1..=12u64 {
            let original = run(cc, seed, [None, None]);
            assert!(original.finished, "{cc:?} seed {seed}: the transfer ends");
            assert_eq!(
                (original.a_got.0, original.b_got.0),
                (384 * 1024, 96 * 1024)
            );
            assert!(
                original.dropped > 0,
                "{cc:?} seed {seed}: the link lost segments"
            );
            // Three random moments per seed, each end at its own.
            let mut rng = Rng(seed * 7919 + 1);
            for _ in 0..3 {
                let at = [
                    Some(1 + rng.next() % original.segments),
                    Some(1 + rng.next() % original.segments),
                ];
                let restored = run(cc, seed, at);
                assert_eq!(
                    restored, original,
                    "{cc:?} seed {seed}: restored at segments {at:?}"
                );
            }
        }
    }
}
