//! IPv6 neighbour discovery (RFC 4861) for the virtual IPv6 addresses: a
//! neighbour solicitation whose target is one of them, sent to it or to its
//! solicited-node multicast group, gets a neighbour advertisement carrying
//! the adapter's MAC. Solicitations for other targets are left alone.

use crate::config::AdapterConfig;
use crate::counters::DropKind;
use etherparse::icmpv6::NeighborAdvertisementHeader;
use etherparse::{Icmpv6Header, Icmpv6Type};
use std::net::Ipv6Addr;

/// The advertisement to send, ready to be put in an IPv6 packet with hop limit 255.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Source address of the advertisement (the target asked about).
    pub src: Ipv6Addr,
    /// Destination: the solicitor, or all-nodes for a solicitation from `::`.
    pub dst: Ipv6Addr,
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// The ICMPv6 message, checksummed.
    pub message: Vec<u8>,
}

/// Answers an ICMPv6 neighbour solicitation `msg` that came from `src`
/// (MAC `src_mac`) with hop limit `hop_limit`. The caller has checked the
/// ICMPv6 checksum. `Ok(None)`: not a solicitation for one of our addresses.
pub fn answer(
    cfg: &AdapterConfig,
    src: Ipv6Addr,
    src_mac: [u8; 6],
    hop_limit: u8,
    msg: &[u8],
) -> Result<Option<Advert>, DropKind> {
    if msg.first() != Some(&135) {
        return Ok(None);
    }
    // RFC 4861 7.1.1: hop limit 255, code 0, at least 24 bytes.
    if hop_limit != 255 || msg.len() < 24 || msg[1] != 0 {
        return Err(DropKind::BadIcmp);
    }
    let mut t = [0u8; 16];
    t.copy_from_slice(&msg[8..24]);
    let target = Ipv6Addr::from(t);
    if !cfg.ipv6.contains(&target) {
        return Ok(None);
    }
    let unspecified = src.is_unspecified();
    let (dst, dst_mac) = if unspecified {
        // Duplicate address detection by someone else: tell everybody.
        (
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            [0x33, 0x33, 0, 0, 0, 1],
        )
    } else {
        (src, source_link_addr(&msg[24..]).unwrap_or(src_mac))
    };
    let mut payload = Vec::with_capacity(24);
    payload.extend_from_slice(&target.octets());
    // Target link-layer address option (type 2, length 1 × 8 bytes).
    payload.extend_from_slice(&[2, 1]);
    payload.extend_from_slice(&cfg.mac);
    let h = Icmpv6Header::with_checksum(
        Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
            router: false,
            solicited: !unspecified,
            r#override: true,
        }),
        target.octets(),
        dst.octets(),
        &payload,
    )
    .map_err(|_| DropKind::BadIcmp)?;
    let mut message = h.to_bytes().to_vec();
    message.extend_from_slice(&payload);
    Ok(Some(Advert {
        src: target,
        dst,
        dst_mac,
        message,
    }))
}

/// The source link-layer address option (type 1) among NDP `options`.
fn source_link_addr(mut options: &[u8]) -> Option<[u8; 6]> {
    while options.len() >= 2 {
        let len = usize::from(options[1]) * 8;
        if len == 0 || len > options.len() {
            return None;
        }
        if options[0] == 1 && len >= 8 {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&options[2..8]);
            return Some(mac);
        }
        options = &options[len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::icmpv6::ndp::{
        MutableNeighborSolicitPacket, NdpOption, NdpOptionTypes, NeighborAdvertPacket,
    };
    use pnet_packet::icmpv6::{Icmpv6Packet, Icmpv6Types};
    use pnet_packet::Packet;
    use std::net::IpAddr;

    const HOST_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 1];

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().expect("addr")
    }

    fn cfg() -> AdapterConfig {
        AdapterConfig::new("t0", &[IpAddr::V6(addr("fd00::2"))], 1500)
    }

    fn solicitation(src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr, with_sll: bool) -> Vec<u8> {
        let mut buf = vec![0u8; if with_sll { 32 } else { 24 }];
        {
            let mut p = MutableNeighborSolicitPacket::new(&mut buf).expect("buffer");
            p.set_icmpv6_type(Icmpv6Types::NeighborSolicit);
            p.set_target_addr(target);
            if with_sll {
                p.set_options(&[NdpOption {
                    option_type: NdpOptionTypes::SourceLLAddr,
                    length: 1,
                    data: HOST_MAC.to_vec(),
                }]);
            }
        }
        let ck = pnet_packet::icmpv6::checksum(&Icmpv6Packet::new(&buf).expect("p"), &src, &dst);
        buf[2..4].copy_from_slice(&ck.to_be_bytes());
        buf
    }

    /// The solicited-node multicast address (RFC 4291 2.7.1) of `ip`.
    fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
        let o = ip.octets();
        Ipv6Addr::new(
            0xff02,
            0,
            0,
            0,
            0,
            1,
            0xff00 | u16::from(o[13]),
            u16::from_be_bytes([o[14], o[15]]),
        )
    }

    #[test]
    fn solicited_node_address() {
        let ip: Ipv6Addr = "fd00::1:2345:6789".parse().expect("address");
        assert_eq!(
            solicited_node(ip),
            "ff02::1:ff45:6789".parse::<Ipv6Addr>().expect("group")
        );
    }

    #[test]
    fn solicitation_to_solicited_node_group_is_answered() {
        let c = cfg();
        let group = solicited_node(addr("fd00::2"));
        let ns = solicitation(addr("fd00::1"), group, addr("fd00::2"), true);
        let a = answer(&c, addr("fd00::1"), [9; 6], 255, &ns)
            .expect("valid")
            .expect("answered");
        assert_eq!(a.src, addr("fd00::2"));
        assert_eq!(a.dst, addr("fd00::1"));
        assert_eq!(a.dst_mac, HOST_MAC, "the source link-layer option wins");
        let p = NeighborAdvertPacket::new(&a.message).expect("parse");
        assert_eq!(p.get_icmpv6_type(), Icmpv6Types::NeighborAdvert);
        assert_eq!(p.get_target_addr(), addr("fd00::2"));
        assert_eq!(p.get_flags() & 0x60, 0x60, "solicited and override");
        let opts = p.get_options();
        assert_eq!(opts[0].option_type, NdpOptionTypes::TargetLLAddr);
        assert_eq!(opts[0].data[..6], c.mac);
        let icmp = Icmpv6Packet::new(p.packet()).expect("icmp");
        assert_eq!(
            pnet_packet::icmpv6::checksum(&icmp, &a.src, &a.dst),
            icmp.get_checksum()
        );
    }

    #[test]
    fn solicitation_for_another_target_is_ignored() {
        let ns = solicitation(addr("fd00::1"), addr("fd00::3"), addr("fd00::3"), false);
        assert_eq!(
            answer(&cfg(), addr("fd00::1"), HOST_MAC, 255, &ns),
            Ok(None)
        );
    }

    #[test]
    fn dad_probe_is_answered_to_all_nodes() {
        let ns = solicitation(
            Ipv6Addr::UNSPECIFIED,
            addr("fd00::2"),
            addr("fd00::2"),
            false,
        );
        let a = answer(&cfg(), Ipv6Addr::UNSPECIFIED, HOST_MAC, 255, &ns)
            .expect("valid")
            .expect("answered");
        assert_eq!(a.dst, addr("ff02::1"));
        let p = NeighborAdvertPacket::new(&a.message).expect("parse");
        assert_eq!(p.get_flags() & 0x40, 0, "not solicited");
    }

    #[test]
    fn hop_limit_below_255_is_refused() {
        let ns = solicitation(addr("fd00::1"), addr("fd00::2"), addr("fd00::2"), false);
        assert_eq!(
            answer(&cfg(), addr("fd00::1"), HOST_MAC, 64, &ns),
            Err(DropKind::BadIcmp)
        );
    }
}
