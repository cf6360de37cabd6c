//! Splits a pcapng capture into one file per frame: the seed corpus of the
//! `frame` target is made of real frames that vnic's own `--pcap` wrote.
//!
//! `cargo run --example split_pcap -- CAPTURE.pcapng OUT_DIR [MAX]`
//!
//! Identical frames are written once, full-sized frames (bulk data, e.g.
//! chargen) at most four times, and at most MAX (default 150) files.

use pcap_file::pcapng::{Block, PcapNgReader};
use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: split_pcap CAPTURE.pcapng OUT_DIR [MAX]");
        std::process::exit(2);
    };
    let max: usize = args.next().and_then(|m| m.parse().ok()).unwrap_or(150);
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).expect("create output directory");
    let file = File::open(&input).expect("open capture");
    let mut reader = PcapNgReader::new(file).expect("a pcapng file");
    let mut seen = HashSet::new();
    let mut written = 0;
    let mut big = 0;
    while let Some(block) = reader.next_block() {
        let Ok(Block::EnhancedPacket(p)) = block else {
            continue;
        };
        if written >= max {
            break;
        }
        if !seen.insert(p.data.to_vec()) {
            continue;
        }
        if p.data.len() > 1000 {
            if big >= 4 {
                continue;
            }
            big += 1;
        }
        std::fs::write(out.join(format!("captured-{written:03}")), &p.data).expect("write frame");
        written += 1;
    }
    println!("{written} frames written to {}", out.display());
}
