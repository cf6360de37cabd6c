//! The virtio-net header (`struct virtio_net_hdr`, 10 bytes) that a TAP
//! opened with `IFF_VNET_HDR` puts before every frame, both ways.
//!
//! It exists so the kernel and vnic can hand each other TCP segments larger
//! than the MTU (GSO/TSO) and frames whose checksum is not filled in yet
//! (checksum offload): the header says which, and where the checksum goes.
//!
//! Byte order: the tun driver uses the host's native order for a legacy
//! header unless `TUNSETVNETLE`/`TUNSETVNETBE` says otherwise, and vnic
//! never sets either; so the 16-bit fields are read and written in native
//! order ([`u16::from_ne_bytes`]), which is little-endian on x86 and ARM.

/// Length of the header in bytes (the kernel's default `TUNSETVNETHDRSZ`).
pub const VNET_HDR_LEN: usize = 10;

/// `flags`: the checksum at `csum_start + csum_offset` holds only the
/// pseudo-header sum; the rest is still to be added (checksum offload).
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the kernel has already checked the checksum.
pub const F_DATA_VALID: u8 = 2;

/// `gso_type`: a plain frame, at most one MTU.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: a TCP/IPv4 segment to be cut into `gso_size` pieces.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: a TCP/IPv6 segment to be cut into `gso_size` pieces.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type` bit: the segment uses ECN (CWR must be cleared after the first piece).
pub const GSO_ECN: u8 = 0x80;

/// One decoded virtio-net header.
///
/// It exists so the RX path can tell a frame whose checksum it must not
/// check (the kernel left it partial, or already checked it) and a large
/// segment from a plain frame, and so the TX path can say "plain, complete"
/// in the form the kernel expects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHeader {
    /// [`F_NEEDS_CSUM`] and/or [`F_DATA_VALID`].
    pub flags: u8,
    /// [`GSO_NONE`], [`GSO_TCPV4`] or [`GSO_TCPV6`], maybe with [`GSO_ECN`].
    pub gso_type: u8,
    /// Length of the Ethernet + IP + TCP headers (a hint for GSO).
    pub hdr_len: u16,
    /// Payload bytes per piece when the kernel cuts a GSO segment.
    pub gso_size: u16,
    /// Where checksumming starts (offset of the TCP header in the frame).
    pub csum_start: u16,
    /// Where the checksum sits, from `csum_start` (16 for TCP).
    pub csum_offset: u16,
}

/// Why [`VnetHeader::decode`] refused some bytes.
///
/// It exists so the TAP can count and drop a frame it cannot interpret
/// instead of handing a misread frame to the adapter.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum VnetError {
    /// Fewer than [`VNET_HDR_LEN`] bytes.
    #[error("frame shorter than the virtio-net header")]
    Truncated,
    /// A GSO type vnic did not ask for (UDP, or unknown).
    #[error("unsupported GSO type {0:#x}")]
    GsoType(u8),
}

impl VnetHeader {
    /// The header for a frame that is complete as it is: no GSO, checksums
    /// filled in. What vnic writes before every frame it builds itself.
    pub const PLAIN: VnetHeader = VnetHeader {
        flags: 0,
        gso_type: GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Reads the header at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<VnetHeader, VnetError> {
        let b: &[u8; VNET_HDR_LEN] = bytes
            .get(..VNET_HDR_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(VnetError::Truncated)?;
        let h = VnetHeader {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16::from_ne_bytes([b[2], b[3]]),
            gso_size: u16::from_ne_bytes([b[4], b[5]]),
            csum_start: u16::from_ne_bytes([b[6], b[7]]),
            csum_offset: u16::from_ne_bytes([b[8], b[9]]),
        };
        match h.gso_type & !GSO_ECN {
            GSO_NONE | GSO_TCPV4 | GSO_TCPV6 => Ok(h),
            other => Err(VnetError::GsoType(other)),
        }
    }

    /// The header's 10 bytes, in the order [`VnetHeader::decode`] reads.
    pub fn encode(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// True when the frame's transport checksum must not be verified: it is
    /// partial ([`F_NEEDS_CSUM`]) or the kernel checked it ([`F_DATA_VALID`]).
    pub fn checksum_trusted(&self) -> bool {
        self.flags & (F_NEEDS_CSUM | F_DATA_VALID) != 0
    }

    /// True for a segment larger than one MTU (TCPv4/TCPv6 GSO).
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }
}

/// Completes a partial checksum in place, as the kernel would have: the
/// 16-bit one's-complement sum from `csum_start` to the end of `frame`
/// (whose checksum field already holds the pseudo-header sum) is written,
/// inverted, at `csum_start + csum_offset`. Returns false, leaving `frame`
/// alone, when the offsets do not fit the frame.
///
/// It exists for sources that hand frames on without the header (the
/// impairment wrapper): after this the frame checks like any plain one.
pub fn complete_checksum(frame: &mut [u8], csum_start: u16, csum_offset: u16) -> bool {
    let start = usize::from(csum_start);
    let at = start + usize::from(csum_offset);
    if start >= frame.len() || at + 2 > frame.len() {
        return false;
    }
    let mut sum: u32 = 0;
    let mut chunks = frame[start..].chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let folded = !(sum as u16);
    frame[at..at + 2].copy_from_slice(&folded.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let h = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let b = h.encode();
        assert_eq!(VnetHeader::decode(&b), Ok(h));
        assert!(h.is_gso() && h.checksum_trusted());
        assert!(!VnetHeader::PLAIN.is_gso() && !VnetHeader::PLAIN.checksum_trusted());
    }

    #[test]
    fn decode_refuses_short_and_udp_gso() {
        assert_eq!(VnetHeader::decode(&[0; 9]), Err(VnetError::Truncated));
        let mut b = VnetHeader::PLAIN.encode();
        b[1] = 3; // VIRTIO_NET_HDR_GSO_UDP
        assert_eq!(VnetHeader::decode(&b), Err(VnetError::GsoType(3)));
    }

    #[test]
    fn complete_checksum_refuses_offsets_past_the_end() {
        let mut f = [0u8; 20];
        assert!(!complete_checksum(&mut f, 20, 0));
        assert!(!complete_checksum(&mut f, 4, 15));
        assert!(complete_checksum(&mut f, 4, 14));
        assert_eq!(&f[18..20], &[0xff, 0xff]);
    }
}
