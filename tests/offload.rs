//! Issue: TAP offloads. With `--offload on` the TAP carries a virtio-net
//! header and the kernel hands vnic TCP segments of up to 64 KiB with
//! partial checksums; with `--offload off` frames stay plain. Either way
//! 64 MiB go through echo and come back intact. The client is the Linux
//! kernel's TCP inside the test's own network namespace.

mod common;

use common::{can_run, Netns};
use sha2::{Digest, Sha256};

const BYTES: usize = 64 << 20;

fn frames_in(ns: &Netns) -> u64 {
    let v = ns.status_json();
    v["adapter"]["frames_in"]
        .as_u64()
        .or_else(|| v["frames_in"].as_u64())
        .unwrap_or(0)
}

fn sixty_four_mib_through_echo(offload: &str, addr: &'static str) -> (u64, String) {
    let ns = Netns::new();
    let vnic = ns.vnic(&["--offload", offload, "--quiet"]);
    assert!(
        vnic.ready
            .contains("processors=4 filter=round-robin model=monolithic"),
        "ready line keeps its fields: {}",
        vnic.ready
    );
    assert_eq!(
        vnic.ready.contains(" offload=on"),
        offload == "on",
        "{}",
        vnic.ready
    );
    let data = common::random_bytes(BYTES, 7);
    let want = Sha256::digest(&data).to_vec();
    let (total, got) = ns.echo(addr, data);
    assert_eq!(total, BYTES, "every byte echoed, then FIN");
    assert_eq!(got, want, "echoed bytes identical");
    let frames = frames_in(&ns);
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "clean exit on SIGTERM; stderr: {err}");
    (frames, err)
}

#[test]
fn offload_on_echoes_64_mib_intact_with_fewer_frames() {
    if !can_run() {
        return;
    }
    let (frames, _) = sixty_four_mib_through_echo("on", "10.0.0.2:7");
    // Plain frames would be at least 64 MiB / 1448 = 46,341 data frames in;
    // with TSO the kernel sends far fewer, larger ones.
    if frames > 0 {
        assert!(
            frames < (BYTES / 1448) as u64,
            "with offload the kernel should send large segments: {frames} frames in"
        );
    }
}

#[test]
fn offload_on_echoes_over_ipv6_intact() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--offload", "on", "--quiet"]);
    let data = common::random_bytes(8 << 20, 9);
    let want = Sha256::digest(&data).to_vec();
    let (total, got) = ns.echo("[fd00::2]:7", data);
    assert_eq!(total, 8 << 20);
    assert_eq!(got, want);
}

#[test]
fn offload_off_echoes_64_mib_intact() {
    if !can_run() {
        return;
    }
    sixty_four_mib_through_echo("off", "10.0.0.2:7");
}
