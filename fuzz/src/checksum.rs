//! The Internet checksum (RFC 1071), written here once more so the
//! harnesses check vnic's checksums with code that is not vnic's own.

use std::net::IpAddr;

/// One's complement sum of `data` (16-bit big-endian words, odd byte
/// padded with zero) added to `acc`, not yet folded.
pub fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The sum of the IPv4 or IPv6 pseudo header of an upper-layer packet of
/// `len` bytes and protocol `proto`.
pub fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u64 {
    let mut acc = 0;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum(acc, &s.octets());
            acc = sum(acc, &d.octets());
        }
        (s, d) => {
            acc = sum(acc, &v6(s));
            acc = sum(acc, &v6(d));
        }
    }
    acc + u64::from(proto) + (len as u64 & 0xffff) + (len as u64 >> 16)
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// True when `data` (checksum field included) sums to all ones on top of
/// `acc`: the receiver's check.
pub fn verifies(acc: u64, data: &[u8]) -> bool {
    fold(sum(acc, data)) == 0xffff
}

/// Writes the checksum that makes `data` verify into `data[at..at + 2]`
/// (nothing when the field does not fit).
pub fn fill(acc: u64, data: &mut [u8], at: usize) {
    if data.len() < at + 2 {
        return;
    }
    data[at] = 0;
    data[at + 1] = 0;
    let c = !fold(sum(acc, data));
    data[at..at + 2].copy_from_slice(&c.to_be_bytes());
}
