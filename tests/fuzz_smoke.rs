//! The fuzz targets build and run briefly (`fuzz/run.sh`, with debug
//! assertions and overflow checks on), so a new crash in frame handling,
//! the offload path, the stack, the HTTP parser, the distributor's
//! framing, the control protocol or the config file is caught by the
//! normal test run. Under CI=true (or VNIC_FUZZ=1) it runs every target
//! for 10 s (or VNIC_FUZZ_SECONDS) from its seed corpus, which libFuzzer
//! replays first; elsewhere it says loudly that it skipped, since the
//! build alone takes minutes. Longer runs are `fuzz/run.sh SECONDS`.

use std::process::Command;

#[test]
fn fuzz_targets_run_without_a_crash() {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let asked = std::env::var("VNIC_FUZZ").as_deref() == Ok("1");
    if !ci && !asked {
        eprintln!(
            "\n*** SKIPPING fuzz smoke run (set VNIC_FUZZ=1, or CI=true, to run fuzz/run.sh) ***\n"
        );
        return;
    }
    let secs = std::env::var("VNIC_FUZZ_SECONDS").unwrap_or_else(|_| "10".into());
    let script = format!("{}/fuzz/run.sh", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(&script)
        .arg(&secs)
        // The outer cargo's settings must not leak into the fuzz build.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run fuzz/run.sh");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "fuzz/run.sh {secs} failed:\n{log}");
}
