//! ICMP answers: echo replies (ping) for the virtual IPs, and port
//! unreachable for UDP, since no UDP port is served yet.

use crate::checksum;
use crate::counters::DropKind;
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::icmpv6::DestUnreachableCode;
use etherparse::{IcmpEchoHeader, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type};
use std::net::Ipv6Addr;

/// An ICMPv4 echo request gets its reply message (header + data); any other
/// valid ICMPv4 message gets `Ok(None)`.
pub fn echo_v4(msg: &[u8]) -> Result<Option<Vec<u8>>, DropKind> {
    if msg.len() < 8 || !checksum::icmpv4_ok(msg) {
        return Err(DropKind::BadIcmp);
    }
    if msg[0] != 8 || msg[1] != 0 {
        return Ok(None);
    }
    let id = u16::from_be_bytes([msg[4], msg[5]]);
    let seq = u16::from_be_bytes([msg[6], msg[7]]);
    let data = &msg[8..];
    let h = Icmpv4Header::with_checksum(Icmpv4Type::EchoReply(IcmpEchoHeader { id, seq }), data);
    let mut out = h.to_bytes().to_vec();
    out.extend_from_slice(data);
    Ok(Some(out))
}

/// An ICMPv6 echo request from `src` to `dst` gets its reply (from `dst`
/// to `src`); other valid ICMPv6 messages get `Ok(None)`.
pub fn echo_v6(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> Result<Option<Vec<u8>>, DropKind> {
    if msg.len() < 8 || !checksum::icmpv6_ok(src, dst, msg) {
        return Err(DropKind::BadIcmp);
    }
    if msg[0] != 128 || msg[1] != 0 {
        return Ok(None);
    }
    let id = u16::from_be_bytes([msg[4], msg[5]]);
    let seq = u16::from_be_bytes([msg[6], msg[7]]);
    let data = &msg[8..];
    let h = Icmpv6Header::with_checksum(
        Icmpv6Type::EchoReply(IcmpEchoHeader { id, seq }),
        dst.octets(),
        src.octets(),
        data,
    )
    .map_err(|_| DropKind::BadIcmp)?;
    let mut out = h.to_bytes().to_vec();
    out.extend_from_slice(data);
    Ok(Some(out))
}

/// ICMPv4 port unreachable quoting `ip_packet` (the offending IPv4 packet),
/// cut so the whole answer fits in 576 bytes (RFC 1812 4.3.2.3).
pub fn port_unreachable_v4(ip_packet: &[u8]) -> Vec<u8> {
    let quoted = &ip_packet[..ip_packet.len().min(576 - 20 - 8)];
    let h = Icmpv4Header::with_checksum(
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
        quoted,
    );
    let mut out = h.to_bytes().to_vec();
    out.extend_from_slice(quoted);
    out
}

/// ICMPv6 port unreachable from `src` (our address) to `dst` quoting
/// `ip_packet`, cut to fit the IPv6 minimum MTU (RFC 4443 3.1).
pub fn port_unreachable_v6(src: Ipv6Addr, dst: Ipv6Addr, ip_packet: &[u8]) -> Option<Vec<u8>> {
    let quoted = &ip_packet[..ip_packet.len().min(1280 - 40 - 8)];
    let h = Icmpv6Header::with_checksum(
        Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port),
        src.octets(),
        dst.octets(),
        quoted,
    )
    .ok()?;
    let mut out = h.to_bytes().to_vec();
    out.extend_from_slice(quoted);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::icmp::{echo_request::MutableEchoRequestPacket, IcmpPacket, IcmpTypes};
    use pnet_packet::icmpv6::{Icmpv6Packet, Icmpv6Types, MutableIcmpv6Packet};
    use pnet_packet::Packet;

    fn ping_v4(id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 8 + data.len()];
        let mut p = MutableEchoRequestPacket::new(&mut buf).expect("buffer");
        p.set_icmp_type(IcmpTypes::EchoRequest);
        p.set_identifier(id);
        p.set_sequence_number(seq);
        p.set_payload(data);
        let ck = pnet_packet::icmp::checksum(&IcmpPacket::new(p.packet()).expect("icmp"));
        p.set_checksum(ck);
        buf
    }

    #[test]
    fn v4_echo_request_gets_reply_with_same_id_seq_data() {
        let req = ping_v4(0x1234, 7, b"hello ping");
        let rep = echo_v4(&req).expect("valid").expect("answered");
        let p = IcmpPacket::new(&rep).expect("parse");
        assert_eq!(p.get_icmp_type(), IcmpTypes::EchoReply);
        assert_eq!(pnet_packet::icmp::checksum(&p), p.get_checksum());
        assert_eq!(&rep[4..8], &[0x12, 0x34, 0, 7]);
        assert_eq!(&rep[8..], b"hello ping");
    }

    #[test]
    fn v4_bad_checksum_is_dropped() {
        let mut req = ping_v4(1, 1, b"x");
        req[2] ^= 0xff;
        assert_eq!(echo_v4(&req), Err(DropKind::BadIcmp));
        assert_eq!(echo_v4(&req[..4]), Err(DropKind::BadIcmp));
    }

    #[test]
    fn v6_echo_request_gets_reply() {
        let src: Ipv6Addr = "fd00::1".parse().expect("addr");
        let dst: Ipv6Addr = "fd00::2".parse().expect("addr");
        let mut buf = vec![0u8; 8 + 4];
        {
            let mut p = MutableIcmpv6Packet::new(&mut buf).expect("buffer");
            p.set_icmpv6_type(Icmpv6Types::EchoRequest);
            p.set_payload(&[0, 9, 0, 3, 0xde, 0xad, 0xbe, 0xef][..]);
        }
        buf.truncate(12);
        let ck = pnet_packet::icmpv6::checksum(&Icmpv6Packet::new(&buf).expect("p"), &src, &dst);
        buf[2..4].copy_from_slice(&ck.to_be_bytes());
        let rep = echo_v6(src, dst, &buf).expect("valid").expect("answered");
        let p = Icmpv6Packet::new(&rep).expect("parse");
        assert_eq!(p.get_icmpv6_type(), Icmpv6Types::EchoReply);
        assert_eq!(
            pnet_packet::icmpv6::checksum(&p, &dst, &src),
            p.get_checksum()
        );
        assert_eq!(&rep[4..], &[0, 9, 0, 3, 0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn port_unreachable_quotes_the_packet() {
        let pkt = vec![0x45u8; 1000];
        let m = port_unreachable_v4(&pkt);
        assert_eq!(m.len(), 576 - 20);
        let p = IcmpPacket::new(&m).expect("parse");
        assert_eq!(p.get_icmp_type(), IcmpTypes::DestinationUnreachable);
        assert_eq!(p.get_icmp_code().0, 3);
        assert_eq!(pnet_packet::icmp::checksum(&p), p.get_checksum());
    }
}
