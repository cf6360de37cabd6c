//! UDP apps: a datagram in, at most one datagram out. Round-robin
//! filtering spreads a shared UDP port per datagram, so these apps keep
//! no context between datagrams.

use etherparse::{IpNumber, UdpHeader};
use std::net::{IpAddr, SocketAddr};
use vnic_adapter::emit::TTL;
use vnic_adapter::FrameWriter;

/// Source ports never answered: port 0 (no real sender uses it) and the
/// services that answer every datagram, echo (7), daytime (13), qotd (17)
/// and chargen (19). An answer to one of them would be answered again, and
/// two such services (or one and a spoofed source) would bounce a datagram
/// between them forever, as Linux's and the BSDs' inetd refuse to do.
pub const LOOPING_PORTS: [u16; 5] = [0, 7, 13, 17, 19];

/// The UDP apps a listener can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UdpAppKind {
    /// RFC 862 over UDP: every datagram back to its sender.
    Echo,
}

impl UdpAppKind {
    /// Parses the name used in config files.
    pub fn from_name(name: &str) -> Option<UdpAppKind> {
        match name {
            "udp-echo" => Some(UdpAppKind::Echo),
            _ => None,
        }
    }

    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            UdpAppKind::Echo => "udp-echo",
        }
    }

    /// The reply to one datagram from source port `from_port`, if any.
    /// Datagrams from [`LOOPING_PORTS`] get none.
    pub fn answer(self, from_port: u16, payload: &[u8]) -> Option<Vec<u8>> {
        if LOOPING_PORTS.contains(&from_port) {
            return None;
        }
        match self {
            UdpAppKind::Echo => Some(payload.to_vec()),
        }
    }
}

/// Sends `payload` from `local` to `remote` (at `peer_mac`) as one UDP
/// datagram with a correct checksum.
pub fn send(
    out: &mut FrameWriter,
    peer_mac: [u8; 6],
    local: SocketAddr,
    remote: SocketAddr,
    payload: &[u8],
) {
    let header = match (local.ip(), remote.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            UdpHeader::without_ipv4_checksum(local.port(), remote.port(), payload.len())
                .ok()
                .map(|mut h| {
                    h.checksum = h
                        .calc_checksum_ipv4_raw(s.octets(), d.octets(), payload)
                        .unwrap_or(0);
                    h
                })
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => UdpHeader::with_ipv6_checksum(
            local.port(),
            remote.port(),
            &etherparse::Ipv6Header {
                source: s.octets(),
                destination: d.octets(),
                ..Default::default()
            },
            payload,
        )
        .ok(),
        _ => None,
    };
    let Some(h) = header else {
        return;
    };
    out.send_ip(peer_mac, local.ip(), remote.ip(), IpNumber::UDP, TTL, |b| {
        b.extend_from_slice(&h.to_bytes());
        b.extend_from_slice(payload);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::ethernet::EthernetPacket;
    use pnet_packet::ipv4::Ipv4Packet;
    use pnet_packet::udp::{self as pudp, UdpPacket};
    use pnet_packet::Packet;
    use std::sync::Arc;
    use vnic_adapter::emit::CaptureSink;
    use vnic_adapter::Counters;

    #[test]
    fn echo_reply_has_a_valid_checksum() {
        let sink = Arc::new(CaptureSink::default());
        let mut w = FrameWriter::new(sink.clone(), [2, 0, 0, 0, 0, 2], Arc::new(Counters::new(1)));
        let local: SocketAddr = "10.0.0.2:7".parse().expect("addr");
        let remote: SocketAddr = "10.0.0.1:5555".parse().expect("addr");
        let reply = UdpAppKind::Echo
            .answer(5555, b"ping")
            .expect("echo answers");
        send(&mut w, [2, 0, 0, 0, 0, 1], local, remote, &reply);
        let frames = sink.take();
        let e = EthernetPacket::new(&frames[0]).expect("eth");
        let ip = Ipv4Packet::new(e.payload()).expect("ip");
        let u = UdpPacket::new(ip.payload()).expect("udp");
        assert_eq!(u.get_source(), 7);
        assert_eq!(u.get_destination(), 5555);
        assert_eq!(u.payload(), b"ping");
        let src = "10.0.0.2".parse().expect("ip");
        let dst = "10.0.0.1".parse().expect("ip");
        assert_eq!(pudp::ipv4_checksum(&u, &src, &dst), u.get_checksum());
    }

    /// Issue 15: a datagram from a port whose service answers every
    /// datagram (echo 7, daytime 13, qotd 17, chargen 19) or from port 0
    /// is dropped, so two such services (or a spoofed pair) cannot bounce
    /// datagrams between them forever.
    #[test]
    fn echo_drops_datagrams_from_looping_source_ports() {
        for port in [0, 7, 13, 17, 19] {
            assert_eq!(UdpAppKind::Echo.answer(port, b"x"), None, "port {port}");
        }
        for port in [1, 53, 1024, 5555, 65535] {
            assert_eq!(
                UdpAppKind::Echo.answer(port, b"x"),
                Some(b"x".to_vec()),
                "port {port}"
            );
        }
    }
}
