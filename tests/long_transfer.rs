//! Transfers longer than 2^31 bytes, the kernel's TCP as the client.
//!
//! Serial arithmetic (RFC 1982) reads a sequence number 2^31 or more
//! behind another as ahead of it, so every sequence number the stack
//! keeps must move on with the data. Three of the loss-recovery markers
//! (and Nagle's) stayed at ISS through a transfer without loss: after
//! 2 GiB they read as ahead of SND.UNA, every outstanding byte counted as
//! lost and was sent again, and a 3 GiB download resent 743,715 segments
//! at a fifth of its speed.

mod common;

use common::{can_run, chargen_period, connect, Netns};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const BYTES: usize = 3 << 30;
const GIB: usize = 1 << 30;

/// Reads `n` bytes of chargen, checking each against RFC 864's pattern a
/// chunk at a time; the offset of the first byte off it (if any) and the
/// time each GiB took.
fn read_chargen(s: &mut std::net::TcpStream, n: usize) -> (Option<usize>, Vec<Duration>) {
    let period = chargen_period();
    // The pattern twice over: any chunk up to one period long starting
    // anywhere in a period is one slice of it.
    let twice: Vec<u8> = period.iter().chain(period.iter()).copied().collect();
    let mut buf = vec![0u8; period.len()];
    let (mut got, mut bad) = (0usize, None);
    let mut per_gib = Vec::new();
    let mut t = Instant::now();
    while got < n {
        let want = buf.len().min(n - got);
        let k = s.read(&mut buf[..want]).expect("read chargen");
        assert!(k > 0, "chargen closed at offset {got}");
        let at = got % period.len();
        if bad.is_none() && buf[..k] != twice[at..at + k] {
            let i = (0..k).find(|&i| buf[i] != twice[at + i]).unwrap_or(0);
            bad = Some(got + i);
        }
        if (got + k) / GIB > got / GIB {
            per_gib.push(t.elapsed());
            t = Instant::now();
        }
        got += k;
    }
    (bad, per_gib)
}

/// Retransmitted segments over every processor.
fn retransmissions(ns: &Netns) -> u64 {
    ns.status_json()["processors"]
        .as_array()
        .expect("processors")
        .iter()
        .map(|p| p["retransmissions"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn a_download_past_two_gib_keeps_its_pace_and_resends_nothing() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic_quiet_v4(&["--processors", "1"]);
    let (bad, per_gib) = ns.run(|| {
        let mut s = connect("10.0.0.2:19");
        read_chargen(&mut s, BYTES)
    });
    assert_eq!(bad, None, "first byte off the chargen pattern");
    let rtx = retransmissions(&ns);
    eprintln!("3 GiB from chargen: each GiB in {per_gib:?}, {rtx} segments resent");
    // A clean link: the odd resend (a frame the host dropped) at most.
    assert!(rtx < 1000, "{rtx} segments resent on a clean link");
    let (first, last) = (per_gib[0], per_gib[per_gib.len() - 1]);
    assert!(
        last < first * 3 + Duration::from_secs(1),
        "the last GiB took {last:?}, the first {first:?}"
    );
}

#[test]
fn an_upload_past_two_gib_arrives_whole() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic_quiet_v4(&["--processors", "1"]);
    let took = ns.run(|| {
        let mut s = connect("10.0.0.2:9");
        let chunk = vec![0x5au8; 256 << 10];
        let t = Instant::now();
        let mut sent = 0;
        while sent < BYTES {
            s.write_all(&chunk).expect("write to discard");
            sent += chunk.len();
        }
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        t.elapsed()
    });
    let bytes_in: u64 = ns.status_json()["processors"]
        .as_array()
        .expect("processors")
        .iter()
        .map(|p| p["bytes_in"].as_u64().unwrap_or(0))
        .sum();
    eprintln!("3 GiB to discard in {took:?}");
    assert_eq!(bytes_in, BYTES as u64, "discard took every byte");
}
