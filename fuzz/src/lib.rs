//! The harnesses behind vnic's fuzz targets, kept in a library so the
//! seed generators (`examples/`) and a debugger can drive exactly what
//! libFuzzer drives.
//!
//! - [`frame`]: any bytes as an Ethernet frame through
//!   `vnic_adapter::RxQueue::handle_frame` (parse, filter, ARP/NDP/ICMP
//!   responders, flow table), checking every frame the adapter writes and
//!   its counters.
//! - [`stack`]: a script of peer segments, time steps and application
//!   calls against one `vnic_stack::Connection` (opened by `accept`,
//!   `connect` or a SYN cookie's ACK, reincarnated from TIME-WAIT),
//!   checking every segment it emits and every byte it delivers.
//! - [`offload`]: a virtio-net header and a frame, as one read from a TAP
//!   with offload, through the adapter with the checksum trust it gives.
//! - [`http`]: a client's bytes to the HTTP server, whole and in pieces,
//!   and request by request through its parser.
//! - [`framing`]: a client's bytes framed into requests by the
//!   distributor's forwarder, against the monolithic model's answers.
//! - [`control`]: control socket request lines, parsed and carried out.
//! - [`config`]: a config file's text, parsed and resolved.
//!
//! A failed assertion here is a bug in vnic (or in the harness); the
//! regression tests under `adapter/tests/fuzz_regressions.rs` and
//! `stack/tests/fuzz_regressions.rs` keep each one found.

pub mod checksum;
pub mod config;
pub mod control;
pub mod frame;
pub mod framing;
pub mod http;
pub mod offload;
pub mod split;
pub mod stack;

/// What libFuzzer runs for one input of a target.
pub type Harness = fn(&[u8]);

/// Every target: its name and its harness.
pub const TARGETS: [(&str, Harness); 7] = [
    ("frame", frame::run),
    ("stack", stack::run),
    ("offload", offload::run),
    ("http", http::run),
    ("framing", framing::run),
    ("control", control::run),
    ("config", config::run),
];

/// Runs every file of `corpus/TARGET` through the target's harness;
/// panics naming the file that fails. How `cargo test` replays the
/// committed seed corpus without libFuzzer.
pub fn replay(target: &str) {
    let (_, run) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no target {target}"));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    for f in files {
        let data = std::fs::read(&f).expect("corpus file");
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("{target}: {} fails", f.display());
        }
    }
}

#[cfg(test)]
mod tests {
    /// The committed seed corpus passes each harness (no libFuzzer).
    macro_rules! corpus_replays {
        ($($name:ident),*) => {$(
            #[test]
            fn $name() {
                crate::replay(stringify!($name));
            }
        )*};
    }

    corpus_replays!(frame, stack, offload, http, framing, control, config);
}
