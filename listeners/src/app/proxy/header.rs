//! The HAProxy PROXY protocol header (doc/proxy-protocol.txt in HAProxy's
//! sources), written first on a back-end connection so that the back-end
//! learns who the real client is: behind a relay, its own `accept()` only
//! shows the relay's address.
//!
//! Version 1 is one text line, `PROXY TCP4 SRC DST SPORT DPORT\r\n`
//! (TCP6 for IPv6; at most 107 bytes). Version 2 is binary: a 12-byte
//! signature, the version and command (0x21: version 2, PROXY), the family
//! and transport (0x11 TCP over IPv4, 0x21 TCP over IPv6), the length of
//! what follows (big-endian), then the source and destination addresses
//! and the source and destination ports, all in network byte order.

use super::ProxyProtocol;
use std::net::{IpAddr, SocketAddr};

/// The first 12 bytes of every version 2 header.
pub(super) const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Version 2, command PROXY (the connection was relayed for a client).
const V2_PROXY: u8 = 0x21;
/// Family and transport: TCP over IPv4.
const V2_TCP4: u8 = 0x11;
/// Family and transport: TCP over IPv6.
const V2_TCP6: u8 = 0x21;

/// The header of `version` for a client at `src` that connected to `dst`.
pub(super) fn encode(version: ProxyProtocol, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    match version {
        ProxyProtocol::V1 => v1(src, dst),
        ProxyProtocol::V2 => v2(src, dst),
    }
}

/// Both addresses in one family: a connection's two ends always share
/// one, but should they not, IPv4 is written as IPv4-mapped IPv6.
fn one_family(src: IpAddr, dst: IpAddr) -> (IpAddr, IpAddr) {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V6(d)) => (IpAddr::V6(s.to_ipv6_mapped()), IpAddr::V6(d)),
        (IpAddr::V6(s), IpAddr::V4(d)) => (IpAddr::V6(s), IpAddr::V6(d.to_ipv6_mapped())),
        same => same,
    }
}

/// The version 1 text line.
fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (s, d) = one_family(src.ip(), dst.ip());
    let proto = if s.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {proto} {s} {d} {} {}\r\n", src.port(), dst.port()).into_bytes()
}

/// The version 2 binary header.
fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (s, d) = one_family(src.ip(), dst.ip());
    let (family, mut addrs) = match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (V2_TCP4, [s.octets(), d.octets()].concat()),
        (IpAddr::V6(s), IpAddr::V6(d)) => (V2_TCP6, [s.octets(), d.octets()].concat()),
        // one_family never leaves the families mixed.
        _ => (V2_TCP6, Vec::new()),
    };
    addrs.extend_from_slice(&src.port().to_be_bytes());
    addrs.extend_from_slice(&dst.port().to_be_bytes());
    let mut h = Vec::with_capacity(16 + addrs.len());
    h.extend_from_slice(&V2_SIGNATURE);
    h.push(V2_PROXY);
    h.push(family);
    // 12 or 36 bytes: always fits.
    h.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    h.extend_from_slice(&addrs);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn v1_tcp4_is_the_spec_line() {
        let h = encode(
            ProxyProtocol::V1,
            addr("10.0.0.1:40000"),
            addr("10.0.0.2:80"),
        );
        assert_eq!(h, b"PROXY TCP4 10.0.0.1 10.0.0.2 40000 80\r\n");
    }

    #[test]
    fn v1_tcp6_is_the_spec_line() {
        let h = encode(
            ProxyProtocol::V1,
            addr("[fd00::1]:51234"),
            addr("[fd00::2]:443"),
        );
        assert_eq!(h, b"PROXY TCP6 fd00::1 fd00::2 51234 443\r\n");
    }

    #[test]
    fn v1_longest_line_is_within_the_spec_limit() {
        let h = encode(
            ProxyProtocol::V1,
            addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
            addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
        );
        assert_eq!(h.len(), 104);
        assert!(h.len() <= 107, "the spec's bound for a v1 line");
    }

    #[test]
    fn v2_tcp4_bytes_are_exact() {
        let h = encode(
            ProxyProtocol::V2,
            addr("172.19.0.1:42578"),
            addr("172.19.0.3:80"),
        );
        // The same header as HAProxy's own, byte for byte.
        let want: [u8; 28] = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54,
            0x0a, // signature
            0x21, 0x11, 0x00, 0x0c, // v2 PROXY, TCP4, 12 bytes follow
            172, 19, 0, 1, 172, 19, 0, 3, // source, destination
            0xa6, 0x52, 0x00, 0x50, // 42578, 80
        ];
        assert_eq!(h, want);
    }

    #[test]
    fn v2_tcp6_bytes_are_exact() {
        let h = encode(
            ProxyProtocol::V2,
            addr("[fd00::1]:258"),
            addr("[fd00::2]:80"),
        );
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(&h[..12], &V2_SIGNATURE);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0x00, 36]);
        let mut src = [0u8; 16];
        src[0] = 0xfd;
        src[15] = 1;
        let mut dst = src;
        dst[15] = 2;
        assert_eq!(&h[16..32], &src);
        assert_eq!(&h[32..48], &dst);
        assert_eq!(&h[48..52], &[1, 2, 0, 80]);
    }

    #[test]
    fn mixed_families_are_written_as_ipv6() {
        let h = encode(ProxyProtocol::V1, addr("10.0.0.1:1"), addr("[fd00::2]:2"));
        assert_eq!(h, b"PROXY TCP6 ::ffff:10.0.0.1 fd00::2 1 2\r\n");
        let h = encode(ProxyProtocol::V2, addr("10.0.0.1:1"), addr("[fd00::2]:2"));
        assert_eq!(h[13], V2_TCP6);
        assert_eq!(h.len(), 52);
    }
}
