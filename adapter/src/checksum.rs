//! The Internet checksum (RFC 1071) for the ICMP messages the adapter
//! checks and answers; TCP checksums live in `vnic-stack`'s wire module.

use std::net::Ipv6Addr;

/// Adds `data` as big-endian 16-bit words into a 32-bit accumulator.
pub fn add(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        acc = (acc & 0xffff) + (acc >> 16);
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds the accumulator to the 16-bit ones' complement checksum.
pub fn finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// True if an ICMPv4 message (header with its checksum field, and data) sums to zero.
pub fn icmpv4_ok(msg: &[u8]) -> bool {
    finish(add(0, msg)) == 0
}

/// True if an ICMPv6 message sums to zero with its IPv6 pseudo header.
pub fn icmpv6_ok(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> bool {
    let mut acc = add(0, &src.octets());
    acc = add(acc, &dst.octets());
    acc = add(acc, &(msg.len() as u32).to_be_bytes());
    acc = add(acc, &[0, 0, 0, 58]);
    acc = add(acc, msg);
    finish(acc) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2 (checksum 220d).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(add(0, &data)), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(finish(add(0, &[0xab])), finish(add(0, &[0xab, 0x00])));
    }
}
