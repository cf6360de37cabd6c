//! ARP (RFC 826) for the virtual IPv4 addresses: a request for one of them
//! gets a reply from the adapter's MAC; anything else is left alone, so the
//! host's own addresses are never claimed.

use crate::config::AdapterConfig;
use crate::counters::DropKind;
use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType};

/// The reply to an ARP request, ready to be framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpReply {
    /// Where the reply frame goes (the requester).
    pub dst_mac: [u8; 6],
    /// The ARP packet (28 bytes for Ethernet/IPv4).
    pub packet: Vec<u8>,
}

/// Answers `arp` (the Ethernet payload of an ARP frame) if it asks for one
/// of our IPv4 addresses. `Ok(None)`: not for us, or not a request.
pub fn answer(cfg: &AdapterConfig, arp: &[u8]) -> Result<Option<ArpReply>, DropKind> {
    let pkt = ArpPacket::from_slice(arp).map_err(|_| DropKind::BadArp)?;
    let req = pkt.try_eth_ipv4().map_err(|_| DropKind::BadArp)?;
    if req.operation != ArpOperation::REQUEST {
        return Ok(None);
    }
    let target = req.target_ipv4_addr();
    if !cfg.ipv4.contains(&target) {
        return Ok(None);
    }
    let reply = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REPLY,
        &cfg.mac,
        &target.octets(),
        &req.sender_mac,
        &req.sender_ipv4,
    )
    .map_err(|_| DropKind::BadArp)?;
    Ok(Some(ArpReply {
        dst_mac: req.sender_mac,
        packet: reply.to_bytes().to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_base::MacAddr;
    use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket as PArp, MutableArpPacket};
    use pnet_packet::ethernet::EtherTypes;
    use std::net::{IpAddr, Ipv4Addr};

    const HOST_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 1];

    fn cfg() -> AdapterConfig {
        AdapterConfig::new("t0", &[IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))], 1500)
    }

    fn request(target: Ipv4Addr, op: pnet_packet::arp::ArpOperation) -> Vec<u8> {
        let mut buf = vec![0u8; 28];
        let mut p = MutableArpPacket::new(&mut buf).expect("arp buffer");
        p.set_hardware_type(ArpHardwareTypes::Ethernet);
        p.set_protocol_type(EtherTypes::Ipv4);
        p.set_hw_addr_len(6);
        p.set_proto_addr_len(4);
        p.set_operation(op);
        p.set_sender_hw_addr(MacAddr::from(HOST_MAC));
        p.set_sender_proto_addr(Ipv4Addr::new(10, 0, 0, 1));
        p.set_target_hw_addr(MacAddr::zero());
        p.set_target_proto_addr(target);
        buf
    }

    #[test]
    fn request_for_virtual_ip_is_answered_from_our_mac() {
        let c = cfg();
        let r = answer(
            &c,
            &request(Ipv4Addr::new(10, 0, 0, 2), ArpOperations::Request),
        )
        .expect("valid")
        .expect("answered");
        assert_eq!(r.dst_mac, HOST_MAC);
        let p = PArp::new(&r.packet).expect("parse reply");
        assert_eq!(p.get_operation(), ArpOperations::Reply);
        assert_eq!(p.get_sender_hw_addr(), MacAddr::from(c.mac));
        assert_eq!(p.get_sender_proto_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.get_target_hw_addr(), MacAddr::from(HOST_MAC));
        assert_eq!(p.get_target_proto_addr(), Ipv4Addr::new(10, 0, 0, 1));
    }

    #[test]
    fn request_for_another_ip_is_ignored() {
        let r = answer(
            &cfg(),
            &request(Ipv4Addr::new(10, 0, 0, 1), ArpOperations::Request),
        );
        assert_eq!(r, Ok(None));
    }

    #[test]
    fn replies_are_not_answered() {
        let r = answer(
            &cfg(),
            &request(Ipv4Addr::new(10, 0, 0, 2), ArpOperations::Reply),
        );
        assert_eq!(r, Ok(None));
    }

    #[test]
    fn truncated_arp_is_counted_bad() {
        let req = request(Ipv4Addr::new(10, 0, 0, 2), ArpOperations::Request);
        assert_eq!(answer(&cfg(), &req[..20]), Err(DropKind::BadArp));
    }
}
