//! Runs fuzz inputs through a harness without libFuzzer, for debugging
//! and timing: `cargo run --example replay -- TARGET FILE...`.
//! With a directory, runs every file in it.

use std::path::Path;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_default();
    let Some((_, run)) = vnic_fuzz::TARGETS.iter().find(|(name, _)| *name == target) else {
        let names: Vec<&str> = vnic_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: replay {} FILE|DIR...", names.join("|"));
        std::process::exit(2);
    };
    let mut files = Vec::new();
    for a in args {
        let p = Path::new(&a);
        if p.is_dir() {
            for e in std::fs::read_dir(p).expect("read dir") {
                files.push(e.expect("entry").path());
            }
        } else {
            files.push(p.to_path_buf());
        }
    }
    files.sort();
    let t = Instant::now();
    for f in &files {
        let data = std::fs::read(f).expect("read input");
        run(&data);
    }
    println!("{} inputs in {:?}", files.len(), t.elapsed());
}
