//! The harnesses behind vnic's fuzz targets, kept in a library so the
//! seed generators (`examples/`) and a debugger can drive exactly what
//! libFuzzer drives.
//!
//! - [`frame`]: any bytes as an Ethernet frame through
//!   `vnic_adapter::Adapter::handle_frame` (parse, filter, ARP/NDP/ICMP
//!   responders, flow table), checking every frame the adapter writes and
//!   its counters.
//! - [`stack`]: a script of peer segments, time steps and application
//!   calls against one `vnic_stack::Connection`, checking every segment
//!   it emits and every byte it delivers.
//!
//! A failed assertion here is a bug in vnic (or in the harness); the
//! regression tests under `adapter/tests/fuzz_regressions.rs` and
//! `stack/tests/fuzz_regressions.rs` keep each one found.

pub mod checksum;
pub mod frame;
pub mod stack;

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn replay(target: &str, run: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        let mut n = 0;
        for e in std::fs::read_dir(&dir).expect("corpus directory") {
            let data = std::fs::read(e.expect("entry").path()).expect("corpus file");
            run(&data);
            n += 1;
        }
        assert!(n > 0, "empty corpus {}", dir.display());
    }

    /// The committed seed corpus passes the frame harness (no libFuzzer).
    #[test]
    fn frame_corpus_replays() {
        replay("frame", crate::frame::run);
    }

    /// The committed seed corpus passes the stack harness (no libFuzzer).
    #[test]
    fn stack_corpus_replays() {
        replay("stack", crate::stack::run);
    }
}
