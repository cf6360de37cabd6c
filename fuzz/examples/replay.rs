//! Runs fuzz inputs through a harness without libFuzzer, for debugging
//! and timing: `cargo run --example replay -- frame|stack FILE...`.
//! With a directory, runs every file in it.

use std::path::Path;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_default();
    let run: fn(&[u8]) = match target.as_str() {
        "frame" => vnic_fuzz::frame::run,
        "stack" => vnic_fuzz::stack::run,
        _ => {
            eprintln!("usage: replay frame|stack FILE|DIR...");
            std::process::exit(2);
        }
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
