//! Test frames for the trace tests, built with etherparse's
//! `PacketBuilder` (ARP by hand): host 10.0.0.1 / fd00::1 at
//! 02:00:00:00:00:01 talking to vnic at 10.0.0.2 / fd00::2,
//! 02:00:00:00:00:02.

use etherparse::PacketBuilder;

pub const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const VNIC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub const HOST4: [u8; 4] = [10, 0, 0, 1];
pub const VNIC4: [u8; 4] = [10, 0, 0, 2];
pub const HOST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const VNIC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// TCP flags to set on a test segment.
#[derive(Clone, Copy, Default)]
pub struct Flags {
    pub syn: bool,
    pub ack: Option<u32>,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
}

fn tcp_step(
    b: PacketBuilderStep,
    seq: u32,
    f: Flags,
) -> etherparse::PacketBuilderStep<etherparse::TcpHeader> {
    let mut t = b.tcp(40000, 80, seq, 64240);
    if f.syn {
        t = t.syn();
    }
    if let Some(a) = f.ack {
        t = t.ack(a);
    }
    if f.fin {
        t = t.fin();
    }
    if f.rst {
        t = t.rst();
    }
    if f.psh {
        t = t.psh();
    }
    t
}

type PacketBuilderStep = etherparse::PacketBuilderStep<etherparse::IpHeaders>;

/// Host → vnic TCP over IPv4 (port 40000 → 80).
pub fn tcp4(seq: u32, f: Flags, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(HOST_MAC, VNIC_MAC).ipv4(HOST4, VNIC4, 64);
    let mut v = Vec::new();
    tcp_step(b, seq, f).write(&mut v, payload).expect("tcp4");
    v
}

/// Host → vnic SYN over IPv4 (port 40000 → 80), no payload.
pub fn syn4(seq: u32) -> Vec<u8> {
    let f = Flags {
        syn: true,
        ..Flags::default()
    };
    tcp4(seq, f, b"")
}

/// Host → vnic TCP over IPv6 (port 40000 → 80).
pub fn tcp6(seq: u32, f: Flags, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(HOST_MAC, VNIC_MAC).ipv6(HOST6, VNIC6, 64);
    let mut v = Vec::new();
    tcp_step(b, seq, f).write(&mut v, payload).expect("tcp6");
    v
}

/// ARP over Ethernet/IPv4: op 1 (request, host asks for vnic) or 2
/// (reply, vnic answers).
pub fn arp(op: u16) -> Vec<u8> {
    let (dst, sha, spa, tha, tpa) = if op == 1 {
        ([0xff; 6], HOST_MAC, HOST4, [0; 6], VNIC4)
    } else {
        (HOST_MAC, VNIC_MAC, VNIC4, HOST_MAC, HOST4)
    };
    let mut v = Vec::new();
    v.extend_from_slice(&dst);
    v.extend_from_slice(&sha);
    v.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4]);
    v.extend_from_slice(&op.to_be_bytes());
    v.extend_from_slice(&sha);
    v.extend_from_slice(&spa);
    v.extend_from_slice(&tha);
    v.extend_from_slice(&tpa);
    v
}

/// ICMP echo request host → vnic, or reply vnic → host.
pub fn ping4(reply: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(HOST_MAC, VNIC_MAC);
    let r = if reply {
        b.ipv4(VNIC4, HOST4, 64).icmpv4_echo_reply(7, 3)
    } else {
        b.ipv4(HOST4, VNIC4, 64).icmpv4_echo_request(7, 3)
    };
    r.write(&mut v, &[0xab; 56]).expect("ping4");
    v
}

/// ICMPv6 echo request host → vnic.
pub fn ping6() -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, VNIC_MAC)
        .ipv6(HOST6, VNIC6, 64)
        .icmpv6_echo_request(9, 1)
        .write(&mut v, &[0xcd; 56])
        .expect("ping6");
    v
}

/// Neighbour solicitation (135) or advertisement (136) for fd00::2.
pub fn ndp(kind: u8) -> Vec<u8> {
    let mut v = Vec::new();
    let flags = if kind == 136 { [0x60, 0, 0, 0] } else { [0; 4] };
    PacketBuilder::ethernet2(HOST_MAC, VNIC_MAC)
        .ipv6(HOST6, VNIC6, 255)
        .icmpv6_raw(kind, 0, flags)
        .write(&mut v, &VNIC6)
        .expect("ndp");
    v
}

/// UDP host:5000 → vnic:5001.
pub fn udp4(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, VNIC_MAC)
        .ipv4(HOST4, VNIC4, 64)
        .udp(5000, 5001)
        .write(&mut v, payload)
        .expect("udp4");
    v
}

/// ICMP port unreachable vnic → host, quoting `udp4(b"hello")`.
pub fn unreachable4() -> Vec<u8> {
    let quoted = udp4(b"hello");
    let mut v = Vec::new();
    PacketBuilder::ethernet2(VNIC_MAC, HOST_MAC)
        .ipv4(VNIC4, HOST4, 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut v, &quoted[14..14 + 28])
        .expect("unreachable4");
    v
}
