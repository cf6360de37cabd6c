//! Makes the seed corpus of the `stack` target: random byte strings
//! (a fixed xorshift stream, so the output is reproducible) decoded as
//! scripts and run through the harness; a string is kept when its run
//! reaches a sequence of states no kept string reached (from the same
//! kind of start, with or without data each way and a reincarnation).
//!
//! `cargo run --release --example gen_stack_seeds -- OUT_DIR [COUNT]`

use arbitrary::{Arbitrary, Unstructured};
use std::collections::HashSet;
use std::path::PathBuf;
use vnic_fuzz::stack::{Script, Start};

/// Seeds kept that reincarnate a connection from TIME-WAIT.
const REOPENED: usize = 4;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next() else {
        eprintln!("usage: gen_stack_seeds OUT_DIR [COUNT]");
        std::process::exit(2);
    };
    let count: usize = args.next().and_then(|c| c.parse().ok()).unwrap_or(40);
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).expect("create output directory");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut seen = HashSet::new();
    // Reincarnations from TIME-WAIT are rare in random scripts (a few in
    // 100,000): the search goes on for them after `count` others.
    let (mut kept, mut reopened) = (0, 0);
    for _ in 0..2_000_000 {
        if kept >= count && reopened >= REOPENED {
            break;
        }
        let len = 64 + (next() % 1500) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let Ok(script) = Script::arbitrary_take_rest(Unstructured::new(&bytes)) else {
            continue;
        };
        let outcome = script.run();
        let start = match script.start {
            Start::Accept { .. } => 0,
            Start::Connect { .. } => 1,
            Start::Cookie { .. } => 2,
        };
        let reincarnated = outcome.reincarnations > 0;
        if (reincarnated && reopened >= REOPENED) || (!reincarnated && kept >= count) {
            continue;
        }
        let key = (
            start,
            format!("{:?}", outcome.states),
            outcome.delivered > 0,
            outcome.sent > 0,
            reincarnated,
        );
        if outcome.states.len() < 2 || !seen.insert(key) {
            continue;
        }
        let name = if reincarnated {
            reopened += 1;
            format!("reopen-{reopened:03}")
        } else {
            kept += 1;
            format!("gen-{kept:03}")
        };
        std::fs::write(out.join(name), &bytes).expect("write seed");
    }
    println!("{} seeds written to {}", kept + reopened, out.display());
}
