//! The frames a link sends when it takes over: a gratuitous ARP for each
//! virtual IPv4 address and an unsolicited neighbour advertisement (RFC
//! 4861 7.2.6, override flag set) for each virtual IPv6 address, all from
//! the new active link's MAC, so the host's neighbour entries move to it.
//! Also the ARP announcement of a link's reserved address (`--link-ip`).
//! They are repeated on [`SCHEDULE`]: Linux ignores an ARP update that
//! comes within `locktime` (1 s by default) of the last one, so a single
//! announcement right after an entry was refreshed would be lost.

use etherparse::icmpv6::NeighborAdvertisementHeader;
use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ethernet2Header, Icmpv6Header, Icmpv6Type,
    IpNumber, Ipv6FlowLabel, Ipv6Header,
};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// When the announcements go out, after the takeover: at once, then
/// four more times over 2 s, the last two past Linux's default
/// `locktime` of 1 s.
pub const SCHEDULE: [Duration; 5] = [
    Duration::from_millis(0),
    Duration::from_millis(50),
    Duration::from_millis(250),
    Duration::from_millis(1100),
    Duration::from_millis(2000),
];

/// Ethernet broadcast.
const BROADCAST: [u8; 6] = [0xff; 6];
/// ff02::1, all nodes, and its multicast MAC.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// A gratuitous ARP for `ip` from `mac`: an ARP request to broadcast
/// whose sender and target address are both `ip` (RFC 5227's
/// announcement), which updates every neighbour entry held for `ip`.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let eth = Ethernet2Header {
        source: mac,
        destination: BROADCAST,
        ether_type: EtherType::ARP,
    };
    let mut f = eth.to_bytes().to_vec();
    // Hardware and protocol address lengths are 6 and 4: cannot fail.
    if let Ok(arp) = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &mac,
        &ip.octets(),
        &[0; 6],
        &ip.octets(),
    ) {
        f.extend_from_slice(&arp.to_bytes());
    }
    f
}

/// An unsolicited neighbour advertisement for `ip` from `mac` to all
/// nodes: override set (replace the cached link-layer address),
/// solicited clear, and the target link-layer address option.
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let mut payload = Vec::with_capacity(24);
    payload.extend_from_slice(&ip.octets());
    payload.extend_from_slice(&[2, 1]);
    payload.extend_from_slice(&mac);
    let Ok(icmp) = Icmpv6Header::with_checksum(
        Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
            router: false,
            solicited: false,
            r#override: true,
        }),
        ip.octets(),
        ALL_NODES.octets(),
        &payload,
    ) else {
        return Vec::new();
    };
    let body = icmp.header_len() + payload.len();
    let ip6 = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: body as u16,
        next_header: IpNumber::IPV6_ICMP,
        // RFC 4861: neighbour discovery is sent with hop limit 255.
        hop_limit: 255,
        source: ip.octets(),
        destination: ALL_NODES.octets(),
    };
    let eth = Ethernet2Header {
        source: mac,
        destination: ALL_NODES_MAC,
        ether_type: EtherType::IPV6,
    };
    let mut f = eth.to_bytes().to_vec();
    f.extend_from_slice(&ip6.to_bytes());
    f.extend_from_slice(&icmp.to_bytes());
    f.extend_from_slice(&payload);
    f
}

/// Every announcement of `ipv4` and `ipv6` from `mac`, one frame each.
pub fn takeover_frames(mac: [u8; 6], ipv4: &[Ipv4Addr], ipv6: &[Ipv6Addr]) -> Vec<Vec<u8>> {
    ipv4.iter()
        .map(|&ip| gratuitous_arp(mac, ip))
        .chain(ipv6.iter().map(|&ip| unsolicited_na(mac, ip)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_base::MacAddr;
    use pnet_packet::arp::{ArpOperations, ArpPacket as PArp};
    use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
    use pnet_packet::icmpv6::ndp::{NdpOptionTypes, NeighborAdvertPacket};
    use pnet_packet::icmpv6::{self, Icmpv6Packet, Icmpv6Types};
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv6::Ipv6Packet;
    use pnet_packet::Packet;

    const MAC: [u8; 6] = [0x02, 0x76, 0x6e, 1, 2, 3];

    #[test]
    fn gratuitous_arp_names_the_address_twice_from_the_new_mac() {
        let ip = Ipv4Addr::new(10, 0, 0, 2);
        let f = gratuitous_arp(MAC, ip);
        let eth = EthernetPacket::new(&f).expect("ethernet");
        assert_eq!(eth.get_source(), MacAddr::from(MAC));
        assert_eq!(eth.get_destination(), MacAddr::broadcast());
        assert_eq!(eth.get_ethertype(), EtherTypes::Arp);
        let arp = PArp::new(eth.payload()).expect("arp");
        assert_eq!(arp.get_operation(), ArpOperations::Request);
        assert_eq!(arp.get_sender_hw_addr(), MacAddr::from(MAC));
        assert_eq!(arp.get_sender_proto_addr(), ip);
        assert_eq!(arp.get_target_proto_addr(), ip);
        assert_eq!(arp.get_target_hw_addr(), MacAddr::zero());
    }

    #[test]
    fn unsolicited_na_overrides_from_the_address_to_all_nodes() {
        let ip: Ipv6Addr = "fd00::2".parse().expect("addr");
        let f = unsolicited_na(MAC, ip);
        let eth = EthernetPacket::new(&f).expect("ethernet");
        assert_eq!(eth.get_source(), MacAddr::from(MAC));
        assert_eq!(eth.get_destination(), MacAddr::from(ALL_NODES_MAC));
        assert_eq!(eth.get_ethertype(), EtherTypes::Ipv6);
        let ip6 = Ipv6Packet::new(eth.payload()).expect("ipv6");
        assert_eq!(ip6.get_hop_limit(), 255);
        assert_eq!(ip6.get_source(), ip);
        assert_eq!(ip6.get_destination(), ALL_NODES);
        assert_eq!(ip6.get_next_header(), IpNextHeaderProtocols::Icmpv6);
        assert_eq!(usize::from(ip6.get_payload_length()), ip6.payload().len());
        let icmp = Icmpv6Packet::new(ip6.payload()).expect("icmpv6");
        assert_eq!(icmp.get_icmpv6_type(), Icmpv6Types::NeighborAdvert);
        assert_eq!(
            icmp.get_checksum(),
            icmpv6::checksum(&icmp, &ip, &ALL_NODES),
            "checksum"
        );
        let na = NeighborAdvertPacket::new(ip6.payload()).expect("na");
        // Flags: router 0x80, solicited 0x40, override 0x20.
        assert_eq!(na.get_flags(), 0x20);
        assert_eq!(na.get_target_addr(), ip);
        let opts = na.get_options();
        assert_eq!(opts.len(), 1);
        assert_eq!(opts[0].option_type, NdpOptionTypes::TargetLLAddr);
        assert_eq!(opts[0].data[..6], MAC);
    }

    #[test]
    fn takeover_announces_every_address_once() {
        let v4 = [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)];
        let v6: [Ipv6Addr; 1] = ["fd00::2".parse().expect("addr")];
        let frames = takeover_frames(MAC, &v4, &v6);
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f[6..12] == MAC));
        assert!(SCHEDULE.windows(2).all(|w| w[0] < w[1]));
        assert!(
            SCHEDULE.last().is_some_and(|d| *d > Duration::from_secs(1)),
            "one repeat past Linux's locktime"
        );
    }
}
