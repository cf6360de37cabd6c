//! The periodic one-line summary on stderr (suppressed by `--quiet`):
//! connections per processor and rates since the previous line.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vnic_listeners::control::Runtime;

/// Prints a summary every `every` until `stop`; silent while nothing happens.
pub fn run(rt: &Runtime, stop: &AtomicBool, every: Duration) {
    let mut last = rt.status();
    let mut at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if at.elapsed() < every {
            continue;
        }
        let now = rt.status();
        let dt = at.elapsed().as_secs_f64().max(1e-3);
        at = Instant::now();
        let frames = now.adapter.frames_in + now.adapter.frames_out;
        let before = last.adapter.frames_in + last.adapter.frames_out;
        if frames == before {
            last = now;
            continue;
        }
        let conns: Vec<String> = now
            .processors
            .iter()
            .map(|p| p.active.to_string())
            .collect();
        // Saturating: `vnic ctl stats reset` may have zeroed the counters
        // since the last line.
        let accepted: u64 = now
            .processors
            .iter()
            .map(|p| p.accepted)
            .sum::<u64>()
            .saturating_sub(last.processors.iter().map(|p| p.accepted).sum::<u64>());
        let bytes: u64 = now
            .processors
            .iter()
            .map(|p| p.bytes_in + p.bytes_out)
            .sum::<u64>()
            .saturating_sub(
                last.processors
                    .iter()
                    .map(|p| p.bytes_in + p.bytes_out)
                    .sum::<u64>(),
            );
        log::info!(
            "conns {} | new {:.0}/s | frames {:.0}/s | payload {:.1} Mbit/s",
            conns.join("/"),
            accepted as f64 / dt,
            frames.saturating_sub(before) as f64 / dt,
            bytes as f64 * 8.0 / dt / 1e6
        );
        last = now;
    }
}
