//! Splits a pcapng capture into one file per frame: the seed corpus of the
//! `frame` target is made of real frames that vnic's own `--pcap` wrote.
//! With `--vnet`, only the frames vnic received, each behind the
//! virtio-net header the kernel gives such a frame (the `offload`
//! target's corpus, from a capture of `vnic up --offload on`; see
//! `vnic_fuzz::offload::kernel_header`).
//!
//! `cargo run --example split_pcap -- [--vnet] CAPTURE.pcapng OUT_DIR [MAX]`
//!
//! Identical frames are written once, large frames (bulk data, e.g.
//! chargen, or TSO segments) at most four times, and at most MAX
//! (default 150) files.

use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use vnic_fuzz::offload::kernel_header;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let vnet = args.first().is_some_and(|a| a == "--vnet");
    if vnet {
        args.remove(0);
    }
    let mut args = args.into_iter();
    let (Some(input), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: split_pcap [--vnet] CAPTURE.pcapng OUT_DIR [MAX]");
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
        // epb_flags: 01 inbound.
        let inbound = p
            .options
            .iter()
            .any(|o| matches!(o, EnhancedPacketOption::Flags(f) if f & 3 == 1));
        if (vnet && !inbound) || !seen.insert(p.data.to_vec()) {
            continue;
        }
        if p.data.len() > 1000 {
            if big >= 4 {
                continue;
            }
            big += 1;
        }
        let (name, bytes) = if vnet {
            let mut b = kernel_header(&p.data).encode().to_vec();
            b.extend_from_slice(&p.data);
            (format!("kernel-{written:03}"), b)
        } else {
            (format!("captured-{written:03}"), p.data.to_vec())
        };
        std::fs::write(out.join(name), &bytes).expect("write frame");
        written += 1;
    }
    println!("{written} frames written to {}", out.display());
}
