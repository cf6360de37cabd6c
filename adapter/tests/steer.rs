//! The RSS steering program, run by the kernel on packets crafted by
//! pnet_packet: both directions of a connection land on one queue, the
//! Rust mirror agrees with the kernel, and connections spread over queues.

use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, MutableIpv4Packet};
use pnet_packet::ipv6::MutableIpv6Packet;
use pnet_packet::tcp::MutableTcpPacket;
use std::net::{IpAddr, SocketAddr};
use std::net::{Ipv4Addr, Ipv6Addr};
use vnic_adapter::flowmap::FlowMap;
use vnic_adapter::steer::{flow_hash, queue_of, SteeringProgram};
use vnic_stack::FourTuple;

fn program() -> Option<SteeringProgram> {
    match SteeringProgram::load() {
        Ok(p) => Some(p),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("skipped: cannot load BPF here ({e})");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    let mut p = MutableTcpPacket::new(&mut t).expect("tcp");
    p.set_source(sport);
    p.set_destination(dport);
    p.set_data_offset(5);
    t
}

fn v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
    let mut ip = vec![0u8; 20 + l4.len()];
    let mut p = MutableIpv4Packet::new(&mut ip).expect("ip");
    p.set_version(4);
    p.set_header_length(5);
    p.set_total_length((20 + l4.len()) as u16);
    p.set_ttl(64);
    p.set_fragment_offset(frag);
    p.set_next_level_protocol(pnet_packet::ip::IpNextHeaderProtocol(proto));
    p.set_source(src);
    p.set_destination(dst);
    p.set_payload(l4);
    let ck = ipv4::checksum(&p.to_immutable());
    p.set_checksum(ck);
    ip
}

fn v6(src: Ipv6Addr, dst: Ipv6Addr, l4: &[u8]) -> Vec<u8> {
    let mut ip = vec![0u8; 40 + l4.len()];
    let mut p = MutableIpv6Packet::new(&mut ip).expect("ip6");
    p.set_version(6);
    p.set_payload_length(l4.len() as u16);
    p.set_next_header(IpNextHeaderProtocols::Tcp);
    p.set_hop_limit(64);
    p.set_source(src);
    p.set_destination(dst);
    p.set_payload(l4);
    ip
}

#[test]
fn the_kernel_runs_the_same_hash_as_the_rust_mirror() {
    let Some(prog) = program() else { return };
    let a = Ipv4Addr::new(10, 0, 0, 1);
    let b = Ipv4Addr::new(10, 0, 0, 2);
    let a6: Ipv6Addr = "fd00::1".parse().expect("v6");
    let b6: Ipv6Addr = "fd00::2".parse().expect("v6");
    let mut packets = vec![
        v4(a, b, 6, 0, &tcp(40000, 80)),
        v4(a, b, 17, 0, &tcp(5353, 53)),
        v4(a, b, 1, 0, &[8, 0, 0, 0, 0, 0, 0, 0]),
        // A fragment: addresses only.
        v4(a, b, 6, 100, &tcp(40000, 80)),
        v6(a6, b6, &tcp(40000, 80)),
        // Cut short: the ports are beyond the end.
        v4(a, b, 6, 0, &[])[..20].to_vec(),
    ];
    for p in 1024..1200u16 {
        packets.push(v4(a, b, 6, 0, &tcp(p, 80)));
    }
    for p in &packets {
        assert_eq!(prog.run(p).expect("test run"), flow_hash(p), "{p:02x?}");
    }
}

#[test]
fn both_directions_of_a_connection_hash_alike() {
    let Some(prog) = program() else { return };
    let a = Ipv4Addr::new(10, 0, 0, 1);
    let b = Ipv4Addr::new(10, 0, 0, 2);
    for p in [1025u16, 40000, 65535] {
        let there = prog.run(&v4(a, b, 6, 0, &tcp(p, 80))).expect("run");
        let back = prog.run(&v4(b, a, 6, 0, &tcp(80, p))).expect("run");
        assert_eq!(there, back);
    }
    let a6: Ipv6Addr = "fd00::1".parse().expect("v6");
    let b6: Ipv6Addr = "fd00::2".parse().expect("v6");
    assert_eq!(
        prog.run(&v6(a6, b6, &tcp(40001, 80))).expect("run"),
        prog.run(&v6(b6, a6, &tcp(80, 40001))).expect("run")
    );
}

#[test]
fn connections_from_one_client_spread_over_the_queues() {
    let a = Ipv4Addr::new(10, 0, 0, 1);
    let b = Ipv4Addr::new(10, 0, 0, 2);
    for queues in [2usize, 3, 4] {
        let mut per = vec![0usize; queues];
        for p in 32768..(32768 + 4000u16) {
            per[queue_of(flow_hash(&v4(a, b, 6, 0, &tcp(p, 80))), queues)] += 1;
        }
        let even = 4000 / queues;
        for n in &per {
            assert!(
                *n > even * 8 / 10 && *n < even * 12 / 10,
                "{queues}: {per:?}"
            );
        }
    }
}

/// The flow map and its program, or None where BPF cannot be loaded.
fn flow_program(rss_queues: usize) -> Option<(FlowMap, SteeringProgram)> {
    let map = match FlowMap::create(1024) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("skipped: cannot create BPF maps here ({e})");
            return None;
        }
        Err(e) => panic!("{e}"),
    };
    let prog = SteeringProgram::load_flows(&map, rss_queues).expect("load the flow program");
    Some((map, prog))
}

fn tuple(remote: (IpAddr, u16), local: (IpAddr, u16)) -> FourTuple {
    FourTuple {
        local: SocketAddr::new(local.0, local.1),
        remote: SocketAddr::new(remote.0, remote.1),
    }
}

#[test]
fn a_connection_in_the_flow_map_goes_to_the_queue_it_names() {
    let Some((map, prog)) = flow_program(1) else {
        return;
    };
    let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let (a6, b6): (Ipv6Addr, Ipv6Addr) = (
        "fd00::1".parse().expect("v6"),
        "fd00::2".parse().expect("v6"),
    );
    let t4 = tuple((a.into(), 40000), (b.into(), 80));
    let t6 = tuple((a6.into(), 40001), (b6.into(), 80));
    assert!(map.insert(&t4, 3));
    assert!(map.insert(&t6, 5));
    assert_eq!(map.get(&t4), Some(3));
    assert_eq!(map.len(), 2);
    // The client's segments of both connections reach the queue named.
    assert_eq!(prog.run(&v4(a, b, 6, 0, &tcp(40000, 80))).expect("run"), 3);
    assert_eq!(prog.run(&v6(a6, b6, &tcp(40001, 80))).expect("run"), 5);
    // Anything else goes to the RX thread's queue: another port, the
    // other direction, UDP with the same ports, a fragment, a packet cut
    // before its ports, an IPv4 tuple written with the IPv6 family.
    for p in [
        v4(a, b, 6, 0, &tcp(40002, 80)),
        v4(b, a, 6, 0, &tcp(80, 40000)),
        v4(a, b, 17, 0, &tcp(40000, 80)),
        v4(a, b, 6, 100, &tcp(40000, 80)),
        v4(a, b, 6, 0, &[])[..20].to_vec(),
        v6(b6, a6, &tcp(80, 40001)),
    ] {
        assert_eq!(prog.run(&p).expect("run"), 0, "{p:02x?}");
    }
    // Removed: back to the RX thread.
    map.remove(&t4);
    assert_eq!(prog.run(&v4(a, b, 6, 0, &tcp(40000, 80))).expect("run"), 0);
    assert_eq!(map.get(&t4), None);
}

#[test]
fn a_miss_goes_to_the_rx_queue_the_rss_hash_picks() {
    let Some((map, prog)) = flow_program(3) else {
        return;
    };
    let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    for p in 1024..1300u16 {
        let packet = v4(a, b, 6, 0, &tcp(p, 80));
        let want = queue_of(flow_hash(&packet), 3) as u32;
        assert_eq!(prog.run(&packet).expect("run"), want);
    }
    // A hit names a processor's queue, beyond the three RX queues.
    assert!(map.insert(&tuple((a.into(), 1100), (b.into(), 80)), 7));
    assert_eq!(prog.run(&v4(a, b, 6, 0, &tcp(1100, 80))).expect("run"), 7);
}

#[test]
fn a_failed_processors_entries_are_removed_and_no_others() {
    let Some((map, _prog)) = flow_program(1) else {
        return;
    };
    let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    for p in 0..300u16 {
        assert!(map.insert(
            &tuple((a.into(), 2000 + p), (b.into(), 80)),
            1 + usize::from(p % 3)
        ));
    }
    assert_eq!(map.remove_queue(2), 100);
    assert_eq!(map.len(), 200);
    assert_eq!(map.get(&tuple((a.into(), 2001), (b.into(), 80))), None);
    assert_eq!(map.get(&tuple((a.into(), 2000), (b.into(), 80))), Some(1));
}

#[test]
fn a_full_flow_map_refuses_and_says_so() {
    let Ok(map) = FlowMap::create(4) else { return };
    let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let ok = (0..8u16)
        .filter(|p| map.insert(&tuple((a.into(), 3000 + p), (b.into(), 80)), 1))
        .count();
    assert_eq!(ok, 4);
}
