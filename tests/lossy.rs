//! TCP that holds up on a bad link: loss, reordering and duplication made
//! by vnic's own impairment, loss made by nftables (which vnic does not
//! control), a client that stops reading, and half-close under loss.

mod common;

use common::{can_run, chargen_mismatch, echo_through, random_bytes, Netns};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn connect(addr: &str) -> TcpStream {
    let a: SocketAddr = addr.parse().expect("addr");
    let s = TcpStream::connect_timeout(&a, Duration::from_secs(10)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    s
}

/// Sends `data` through echo and half-closes; returns (bytes back, hash).
fn echo_roundtrip(data: Vec<u8>) -> (usize, Vec<u8>) {
    echo_through(connect("10.0.0.2:7"), data)
}

/// 32 MiB over 4 parallel echo connections, every byte back intact.
fn thirty_two_mib_through_echo(ns: &Netns) {
    let per = 8 << 20;
    let inputs: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(per, 100 + i)).collect();
    let want: Vec<Vec<u8>> = inputs.iter().map(|d| Sha256::digest(d).to_vec()).collect();
    let t = Instant::now();
    let got = ns.run(move || {
        let threads: Vec<_> = inputs
            .into_iter()
            .map(|d| std::thread::spawn(move || echo_roundtrip(d)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("echo thread"))
            .collect::<Vec<_>>()
    });
    for (i, (n, h)) in got.iter().enumerate() {
        assert_eq!(*n, per, "connection {i}: every byte echoed");
        assert_eq!(h, &want[i], "connection {i}: bytes identical");
    }
    eprintln!("32 MiB through echo on 4 connections: {:?}", t.elapsed());
}

#[test]
fn echo_32_mib_on_4_connections_through_vnic_impairment() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--impair", "loss=5%,reorder=10%,duplicate=2%,seed=7"]);
    assert!(
        vnic.ready
            .contains("impair=loss=5%,reorder=10%,duplicate=2%"),
        "{}",
        vnic.ready
    );
    thirty_two_mib_through_echo(&ns);
    let st = ns.status_json();
    let retrans: u64 = st["processors"]
        .as_array()
        .expect("p")
        .iter()
        .map(|p| p["retransmissions"].as_u64().unwrap_or(0))
        .sum();
    assert!(retrans > 0, "loss made vnic retransmit");
}

#[test]
fn echo_32_mib_on_4_connections_through_nftables_loss() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&[]);
    ns.nft_loss(&ns.tap, 5);
    thirty_two_mib_through_echo(&ns);
}

#[test]
fn chargen_client_that_stops_reading_for_10s_gets_an_unbroken_stream() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&[]);
    let bad = ns.run(|| {
        let mut s = connect("10.0.0.2:19");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("t");
        // Shrink our receive buffer so the window closes quickly.
        let before = chargen_mismatch(&mut s, 0, 1000);
        std::thread::sleep(Duration::from_secs(10));
        before.or(chargen_mismatch(&mut s, 1000, 16 << 20))
    });
    assert_eq!(bad, None, "first byte off the pattern");
}

#[test]
fn half_close_under_loss() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&["--impair", "loss=5%,seed=11"]);
    let (discard_done, echoed) = ns.run(|| {
        // discard: our FIN after 1 MiB; the server reads all, then closes.
        let mut d = connect("10.0.0.2:9");
        d.write_all(&vec![7u8; 1 << 20]).expect("write");
        d.shutdown(Shutdown::Write).expect("half-close");
        let mut b = [0u8; 16];
        let eof = matches!(d.read(&mut b), Ok(0));
        // echo: the server keeps sending after our FIN.
        let (n, _) = echo_roundtrip(random_bytes(2 << 20, 5));
        (eof, n)
    });
    assert!(discard_done, "discard closed after our FIN");
    assert_eq!(echoed, 2 << 20);
}
