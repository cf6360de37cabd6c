//! Hostile input: a barrage of malformed and hostile frames, sent with a
//! raw socket on the TAP's host side, while an echo connection keeps
//! exchanging data. The echo connection never breaks, its data stays
//! intact, vnic counts what it dropped, and new connections work after.

mod common;

use common::{can_run, eth, http_get, Netns, Raw};
use pnet_packet::ethernet::{EtherType, EtherTypes};
use pnet_packet::ip::{IpNextHeaderProtocol, IpNextHeaderProtocols};
use pnet_packet::ipv4::{self, MutableIpv4Packet};
use pnet_packet::ipv6::MutableIpv6Packet;
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// IPv4 from the host to vnic (see [`common::ipv4`]).
fn ipv4(
    proto: IpNextHeaderProtocol,
    payload: &[u8],
    tweak: impl FnOnce(&mut MutableIpv4Packet),
) -> Vec<u8> {
    common::ipv4(HOST, VIP, proto, payload, tweak)
}

#[allow(clippy::too_many_arguments)]
/// A TCP segment (header + options + payload) with a correct checksum
/// unless `tweak` breaks it afterwards.
fn tcp(
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    options: &[u8],
    payload: &[u8],
    fix_ck: bool,
) -> Vec<u8> {
    let hl = 20 + options.len();
    let mut b = vec![0u8; hl + payload.len()];
    b[20..hl].copy_from_slice(options);
    let mut p = MutableTcpPacket::new(&mut b).expect("tcp");
    p.set_source(sport);
    p.set_destination(dport);
    p.set_sequence(seq);
    p.set_acknowledgement(ack);
    p.set_data_offset((hl / 4) as u8);
    p.set_flags(flags);
    p.set_window(65535);
    p.set_payload(payload);
    if fix_ck {
        let ck = tcp::ipv4_checksum(&p.to_immutable(), &HOST, &VIP);
        p.set_checksum(ck);
    } else {
        p.set_checksum(0xdead);
    }
    b
}

fn barrage(mac: [u8; 6], live_port: u16, rng: &mut rand::rngs::StdRng) -> Vec<Vec<u8>> {
    use rand::{Rng, RngCore};
    let mut v = Vec::new();
    let v4 = |b: Vec<u8>| eth(mac, EtherTypes::Ipv4, &b);
    // Truncated and impossible headers.
    v.push(eth(mac, EtherTypes::Ipv4, &[0x45, 0, 0])[..10].to_vec());
    v.push(eth(mac, EtherTypes::Ipv4, &[0x45, 0, 0, 40, 0, 0]));
    v.push(v4(ipv4(IpNextHeaderProtocols::Tcp, &[0; 20], |p| {
        p.set_checksum(0x1234)
    })));
    v.push(v4(ipv4(IpNextHeaderProtocols::Tcp, &[0; 20], |p| {
        p.set_total_length(1400)
    })));
    v.push(v4(ipv4(IpNextHeaderProtocols::Tcp, &[0; 20], |p| {
        p.set_header_length(3)
    })));
    v.push(v4(ipv4(IpNextHeaderProtocols::Tcp, &[0; 20], |p| {
        p.set_header_length(15)
    })));
    // TCP: bad data offset, bad checksum on the live tuple, bad options, SYN+FIN.
    let mut off = tcp(live_port, 7, TcpFlags::ACK, 1, 1, &[], &[], true);
    off[12] = 0xf0;
    v.push(v4(ipv4(IpNextHeaderProtocols::Tcp, &off, |_| {})));
    v.push(v4(ipv4(
        IpNextHeaderProtocols::Tcp,
        &tcp(
            live_port,
            7,
            TcpFlags::ACK | TcpFlags::PSH,
            rng.gen(),
            rng.gen(),
            &[],
            b"INJECTED",
            false,
        ),
        |_| {},
    )));
    for opts in [
        &[2u8, 0, 0, 0][..],
        &[3, 1, 0, 0],
        &[2, 4, 0, 0],
        &[8, 40, 0, 0],
        &[5, 2, 0, 0],
    ] {
        v.push(v4(ipv4(
            IpNextHeaderProtocols::Tcp,
            &tcp(
                live_port,
                7,
                TcpFlags::ACK,
                rng.gen(),
                rng.gen(),
                opts,
                b"x",
                true,
            ),
            |_| {},
        )));
        v.push(v4(ipv4(
            IpNextHeaderProtocols::Tcp,
            &tcp(45000, 80, TcpFlags::SYN, rng.gen(), 0, opts, &[], true),
            |_| {},
        )));
    }
    v.push(v4(ipv4(
        IpNextHeaderProtocols::Tcp,
        &tcp(
            45001,
            80,
            TcpFlags::SYN | TcpFlags::FIN,
            1,
            0,
            &[],
            &[],
            true,
        ),
        |_| {},
    )));
    v.push(v4(ipv4(
        IpNextHeaderProtocols::Tcp,
        &tcp(
            live_port,
            7,
            TcpFlags::SYN | TcpFlags::FIN,
            1,
            0,
            &[],
            &[],
            true,
        ),
        |_| {},
    )));
    v.push(v4(ipv4(
        IpNextHeaderProtocols::Tcp,
        &tcp(
            live_port,
            7,
            TcpFlags::SYN | TcpFlags::RST,
            1,
            0,
            &[],
            &[],
            true,
        ),
        |_| {},
    )));
    v.push(v4(ipv4(
        IpNextHeaderProtocols::Tcp,
        &tcp(live_port, 7, 0, 1, 0, &[], b"noflags", true),
        |_| {},
    )));
    // Blind RSTs and SYNs aimed at the live connection, ACKs for nobody.
    for _ in 0..50 {
        v.push(v4(ipv4(
            IpNextHeaderProtocols::Tcp,
            &tcp(live_port, 7, TcpFlags::RST, rng.gen(), 0, &[], &[], true),
            |_| {},
        )));
        v.push(v4(ipv4(
            IpNextHeaderProtocols::Tcp,
            &tcp(
                live_port,
                7,
                TcpFlags::RST | TcpFlags::ACK,
                rng.gen(),
                rng.gen(),
                &[],
                &[],
                true,
            ),
            |_| {},
        )));
        v.push(v4(ipv4(
            IpNextHeaderProtocols::Tcp,
            &tcp(live_port, 7, TcpFlags::SYN, rng.gen(), 0, &[], &[], true),
            |_| {},
        )));
        v.push(v4(ipv4(
            IpNextHeaderProtocols::Tcp,
            &tcp(
                rng.gen_range(1024..65535),
                7,
                TcpFlags::ACK,
                rng.gen(),
                rng.gen(),
                &[],
                &[],
                true,
            ),
            |_| {},
        )));
    }
    // IPv4 fragments.
    v.push(v4(ipv4(
        IpNextHeaderProtocols::Tcp,
        &tcp(live_port, 7, TcpFlags::ACK, 1, 1, &[], b"frag", true),
        |p| {
            p.set_flags(1);
            let ck = ipv4::checksum(&p.to_immutable());
            p.set_checksum(ck);
        },
    )));
    v.push(v4(ipv4(IpNextHeaderProtocols::Udp, &[0; 16], |p| {
        p.set_fragment_offset(100);
        let ck = ipv4::checksum(&p.to_immutable());
        p.set_checksum(ck);
    })));
    // UDP with an impossible length, truncated ICMP, unknown protocol.
    v.push(v4(ipv4(
        IpNextHeaderProtocols::Udp,
        &[0, 53, 0, 53, 0xff, 0xff, 0, 0],
        |_| {},
    )));
    v.push(v4(ipv4(IpNextHeaderProtocols::Icmp, &[8, 0], |_| {})));
    v.push(v4(ipv4(
        IpNextHeaderProtocol::new(99),
        &[1, 2, 3, 4],
        |_| {},
    )));
    // IPv6 extension-header chains: long, looping-ish, truncated, fragment.
    let src: Ipv6Addr = "fd00::1".parse().expect("addr");
    let dst: Ipv6Addr = "fd00::2".parse().expect("addr");
    for chain in [
        vec![0u8, 60, 43, 44, 6],
        vec![0; 40],
        vec![60; 30],
        vec![44, 6],
        vec![43],
    ] {
        // Each extension header: next header, length 0 (8 bytes).
        let mut body = Vec::new();
        for (i, _) in chain.iter().enumerate().skip(1) {
            let mut h = vec![chain[i], 0, 0, 0, 0, 0, 0, 0];
            if chain[i - 1] == 44 {
                h[3] = 1; // more fragments
            }
            body.extend_from_slice(&h);
        }
        body.extend_from_slice(&[0u8; 20]);
        let mut b = vec![0u8; 40 + body.len()];
        let mut p = MutableIpv6Packet::new(&mut b).expect("ip6");
        p.set_version(6);
        p.set_payload_length(body.len() as u16);
        p.set_next_header(IpNextHeaderProtocol::new(chain[0]));
        p.set_hop_limit(64);
        p.set_source(src);
        p.set_destination(dst);
        p.set_payload(&body);
        v.push(eth(mac, EtherTypes::Ipv6, &b));
        let cut = b.len() - 18;
        v.push(eth(mac, EtherTypes::Ipv6, &b[..cut]));
    }
    // Garbage: unknown EtherType, random bytes.
    v.push(eth(mac, EtherType::new(0x88b5), &[1, 2, 3]));
    for _ in 0..50 {
        let n = rng.gen_range(14..200);
        let mut junk = vec![0u8; n];
        rng.fill_bytes(&mut junk);
        junk[..6].copy_from_slice(&mac);
        v.push(junk);
    }
    v
}

#[test]
fn hostile_frames_never_break_a_live_connection() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic(&[]);
    let mac = vnic_adapter::config::default_mac(&ns.tap);
    let tap = ns.tap.clone();
    let (echoed, rounds, sent) = ns.run(move || {
        use rand::SeedableRng;
        let a: SocketAddr = "10.0.0.2:7".parse().expect("addr");
        let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("t");
        let live_port = s.local_addr().expect("local").port();
        let stop = Arc::new(AtomicBool::new(false));
        let attacker = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let raw = Raw::open(&tap);
                let mut rng = rand::rngs::StdRng::seed_from_u64(99);
                let mut sent = 0usize;
                let t = Instant::now();
                while !stop.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(20) {
                    for f in barrage(mac, live_port, &mut rng) {
                        raw.send(&f);
                        sent += 1;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                sent
            })
        };
        let mut total = 0usize;
        let mut rounds = 0usize;
        let t = Instant::now();
        let mut block = vec![0u8; 4096];
        let mut back = vec![0u8; 4096];
        while t.elapsed() < Duration::from_secs(3) {
            for (i, b) in block.iter_mut().enumerate() {
                *b = (i + rounds) as u8;
            }
            s.write_all(&block).expect("echo write during the barrage");
            s.read_exact(&mut back)
                .expect("echo read during the barrage");
            assert_eq!(back, block, "echoed data intact in round {rounds}");
            total += block.len();
            rounds += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let sent = attacker.join().expect("attacker");
        (total, rounds, sent)
    });
    assert!(
        rounds > 50,
        "the echo connection kept working ({rounds} rounds, {echoed} bytes)"
    );
    assert!(sent > 500, "the barrage ran ({sent} frames)");
    // Afterwards new connections work, and vnic counted what it dropped.
    ns.run(|| {
        let a: SocketAddr = "10.0.0.2:80".parse().expect("addr");
        let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect after");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("t");
        assert_eq!(http_get(&mut s, "/", false).0, 200);
    });
    let st = ns.status_json();
    let drops = &st["adapter"]["drops"];
    // (A frame shorter than an Ethernet header never leaves the raw socket.)
    for kind in [
        "bad-ipv4-header",
        "bad-ipv4-checksum",
        "bad-tcp-header",
        "bad-tcp-checksum",
        "ip-fragment",
        "unknown-ethertype",
    ] {
        assert!(
            drops[kind].as_u64().unwrap_or(0) > 0,
            "{kind} counted: {drops}"
        );
    }
    let panics: u64 = st["processors"]
        .as_array()
        .expect("p")
        .iter()
        .map(|p| p["panics"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(panics, 0);
}
