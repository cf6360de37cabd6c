//! Frames for the adapter's tests, crafted by pnet_packet (never by the
//! adapter's own builder).

#![allow(dead_code)]

use pnet_base::MacAddr;
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, MutableIpv4Packet};
use std::net::Ipv4Addr;

/// The host's MAC: where crafted frames come from.
pub const HOST_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 1];

/// An Ethernet/IPv4 frame from the host (`HOST_MAC`, `src`) to
/// `dst_mac`/`dst` around the TCP bytes `tcp`, checksums of Ethernet and
/// IPv4 right (the TCP checksum is the caller's).
pub fn tcp_in_ipv4(dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, tcp: &[u8]) -> Vec<u8> {
    let mut ip = vec![0u8; 20 + tcp.len()];
    {
        let mut p = MutableIpv4Packet::new(&mut ip).expect("ip");
        p.set_version(4);
        p.set_header_length(5);
        p.set_total_length((20 + tcp.len()) as u16);
        p.set_ttl(64);
        p.set_next_level_protocol(IpNextHeaderProtocols::Tcp);
        p.set_source(src);
        p.set_destination(dst);
        p.set_payload(tcp);
        let ck = ipv4::checksum(&p.to_immutable());
        p.set_checksum(ck);
    }
    let mut f = vec![0u8; 14 + ip.len()];
    {
        let mut e = MutableEthernetPacket::new(&mut f).expect("eth");
        e.set_destination(MacAddr::from(dst_mac));
        e.set_source(MacAddr::from(HOST_MAC));
        e.set_ethertype(EtherTypes::Ipv4);
        e.set_payload(&ip);
    }
    f
}
