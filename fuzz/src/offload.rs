//! The `offload` target: any bytes as one read from a TAP opened with
//! offload (`--offload on`): a virtio-net header (10 bytes) and the frame
//! after it, through [`RxFrame::from_offload_read`] and
//! `RxQueue::handle_rx_buffer` with the checksum trust it gives, as the
//! RX thread does.
//!
//! Each input is fed in two forms, each to a fresh [`Rig`] (so every
//! check of the `frame` target holds: the decision's frames, queued
//! segments and counters, and every frame written parses, has valid
//! checksums and fits the MTU, or 64 KiB for an answer to a larger
//! frame):
//!
//! 1. as read: whatever the header says, decoded or refused;
//! 2. as the kernel hands over its own TCP segments: behind our MAC, the
//!    text grown to `gso_size × k` bytes (up to 64 KiB) when the header
//!    says GSO, IP lengths right, and the checksum as the header's flags
//!    say: partial (`NEEDS_CSUM`: only the pseudo header's sum, with
//!    `csum_start`/`csum_offset` pointing at it), wrong but vouched for
//!    (`DATA_VALID`), or complete. The adapter must decide exactly as it
//!    does for the same frame with a complete checksum and no trust, and
//!    the segment it queues carries the frame's text; completing the
//!    partial checksum ([`RxFrame::from_offload_read`] with `complete`,
//!    what readers that do not look at the trust get) must give a
//!    checksum that verifies.

use crate::checksum;
use crate::frame::{behind_our_mac, fix_checksums, Rig, OUR_MAC};
use std::net::IpAddr;
use vnic_adapter::tap::{RxFrame, MAX_FRAME_LEN};
use vnic_adapter::vnet::{
    VnetHeader, F_DATA_VALID, F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_TCPV6, VNET_HDR_LEN,
};

/// Where the TCP header of an Ethernet frame is.
pub struct TcpAt {
    /// IPv6 (else IPv4).
    pub ipv6: bool,
    /// Offset of the TCP header.
    pub tcp: usize,
    /// Its length (data offset × 4).
    pub tcp_len: usize,
}

/// Finds a TCP segment directly in IPv4 or IPv6 (no extension header).
pub fn tcp_at(f: &[u8]) -> Option<TcpAt> {
    let (ipv6, tcp) = match f.get(12..14)? {
        [0x08, 0x00] => {
            let ihl = usize::from(f.get(14)? & 0x0f) * 4;
            (*f.get(14 + 9)? == 6 && ihl >= 20).then_some((false, 14 + ihl))?
        }
        [0x86, 0xdd] => (*f.get(14 + 6)? == 6).then_some((true, 14 + 40))?,
        _ => return None,
    };
    let tcp_len = usize::from(f.get(tcp + 12)? >> 4) * 4;
    (tcp_len >= 20 && tcp + tcp_len <= f.len()).then_some(TcpAt { ipv6, tcp, tcp_len })
}

/// Writes the IP length fields for a frame of `f.len()` bytes.
fn set_ip_lengths(f: &mut [u8], at: &TcpAt) {
    let ip = f.len() - 14;
    if at.ipv6 {
        let plen = (ip - 40) as u16;
        f[18..20].copy_from_slice(&plen.to_be_bytes());
    } else {
        f[16..18].copy_from_slice(&(ip as u16).to_be_bytes());
    }
}

/// The frame as the kernel hands over a TCP segment: cut to its IP
/// packet, grown to `text` bytes of text when larger, IP lengths right,
/// every checksum complete. None when it is no plain TCP segment.
fn kernel_frame(mut f: Vec<u8>, text: usize) -> Option<(Vec<u8>, TcpAt)> {
    let at = tcp_at(&f)?;
    let ip_len = if at.ipv6 {
        40 + usize::from(u16::from_be_bytes([f[18], f[19]]))
    } else {
        usize::from(u16::from_be_bytes([f[16], f[17]]))
    };
    let end = (14 + ip_len).clamp(at.tcp + at.tcp_len, f.len());
    f.truncate(end);
    let head = at.tcp + at.tcp_len;
    // IPv4's total length, and IPv6's payload length, are 16 bits.
    let room = if at.ipv6 {
        65_535 + 14 + 40
    } else {
        65_535 + 14
    };
    let want = (head + text).min(room).min(MAX_FRAME_LEN);
    let mut i = 0;
    while f.len() < want {
        let b = f.get(head + i).copied().unwrap_or(i as u8);
        f.push(b);
        i += 1;
    }
    set_ip_lengths(&mut f, &at);
    fix_checksums(&mut f);
    Some((f, at))
}

/// Part 2 of the module doc.
fn kernel_form(h: VnetHeader, frame: &[u8]) {
    let text = if h.is_gso() {
        usize::from(h.gso_size).max(1) * (1 + usize::from(h.hdr_len) % 48)
    } else {
        0
    };
    let Some((valid, at)) = kernel_frame(behind_our_mac(OUR_MAC, frame), text) else {
        return;
    };
    let mut f = valid.clone();
    let csum = at.tcp + 16;
    let mut hdr = VnetHeader {
        flags: h.flags & (F_NEEDS_CSUM | F_DATA_VALID),
        gso_type: if h.is_gso() {
            (h.gso_type & 0x80) | if at.ipv6 { GSO_TCPV6 } else { GSO_TCPV4 }
        } else {
            GSO_NONE
        },
        hdr_len: (at.tcp + at.tcp_len) as u16,
        gso_size: h.gso_size,
        csum_start: h.csum_start,
        csum_offset: h.csum_offset,
    };
    if hdr.flags & F_NEEDS_CSUM != 0 {
        let (src, dst) = addresses(&f, at.ipv6);
        let seg_len = f.len() - at.tcp;
        let partial = checksum::fold(checksum::pseudo(src, dst, 6, seg_len));
        f[csum..csum + 2].copy_from_slice(&partial.to_be_bytes());
        hdr.csum_start = at.tcp as u16;
        hdr.csum_offset = 16;
    } else if hdr.flags & F_DATA_VALID != 0 {
        // Wrong, but the kernel says it checked it: it is not checked.
        f[csum] ^= 0x5a;
    }
    let read = VNET_HDR_LEN + f.len();
    let mut buf = f.clone();
    let rx = RxFrame::from_offload_read(&hdr.encode(), &mut buf, read, false)
        .expect("a header vnic asked for");
    assert_eq!(rx.len, f.len());
    assert_eq!(rx.checksum_trusted, hdr.checksum_trusted());
    let trusted = Rig::new().feed_rx(&buf[..rx.len], rx.checksum_trusted);
    let plain = Rig::new().feed(&valid);
    assert_eq!(
        trusted, plain,
        "offload ({hdr:?}) and a complete checksum decide alike"
    );
    // A reader that does not look at the trust gets the checksum completed.
    let mut buf = f;
    let rx = RxFrame::from_offload_read(&hdr.encode(), &mut buf, read, true)
        .expect("a header vnic asked for");
    if hdr.flags & F_NEEDS_CSUM != 0 {
        assert!(!rx.checksum_trusted, "completed, so checked as any frame");
        let (src, dst) = addresses(&buf, at.ipv6);
        let seg = &buf[at.tcp..];
        assert!(
            checksum::verifies(checksum::pseudo(src, dst, 6, seg.len()), seg),
            "the completed checksum verifies"
        );
        assert_eq!(Rig::new().feed(&buf[..rx.len]), plain);
    }
}

/// The virtio-net header the kernel puts before `f`, a frame it hands
/// to a TAP with offload: a TCP segment whose checksum holds only the
/// pseudo header's sum gets `NEEDS_CSUM` with `csum_start` at the TCP
/// header and `csum_offset` 16, one larger than a 1500-byte MTU gets
/// TCPv4/TCPv6 GSO with `gso_size` the MSS that fills such a packet,
/// anything else the plain header.
pub fn kernel_header(f: &[u8]) -> VnetHeader {
    let mut h = VnetHeader::PLAIN;
    let Some(at) = tcp_at(f) else {
        return h;
    };
    let (src, dst) = addresses(f, at.ipv6);
    let partial = checksum::fold(checksum::pseudo(src, dst, 6, f.len() - at.tcp));
    if f[at.tcp + 16..at.tcp + 18] == partial.to_be_bytes() {
        h.flags = F_NEEDS_CSUM;
        h.csum_start = at.tcp as u16;
        h.csum_offset = 16;
    }
    h.hdr_len = (at.tcp + at.tcp_len) as u16;
    if f.len() > 14 + 1500 {
        h.gso_type = if at.ipv6 { GSO_TCPV6 } else { GSO_TCPV4 };
        h.gso_size = (1500 + 14 - at.tcp - at.tcp_len) as u16;
    }
    h
}

/// The IP source and destination of a frame.
fn addresses(f: &[u8], ipv6: bool) -> (IpAddr, IpAddr) {
    if ipv6 {
        let s: [u8; 16] = f[22..38].try_into().expect("16");
        let d: [u8; 16] = f[38..54].try_into().expect("16");
        (s.into(), d.into())
    } else {
        let s: [u8; 4] = f[26..30].try_into().expect("4");
        let d: [u8; 4] = f[30..34].try_into().expect("4");
        (s.into(), d.into())
    }
}

/// The whole target: one read, its two forms, every check.
pub fn run(data: &[u8]) {
    let mut hdr = [0u8; VNET_HDR_LEN];
    let n = data.len().min(VNET_HDR_LEN);
    hdr[..n].copy_from_slice(&data[..n]);
    let frame = &data[n..];
    let mut buf = frame.to_vec();
    let rx = RxFrame::from_offload_read(&hdr, &mut buf, data.len(), false);
    let decoded = VnetHeader::decode(&hdr);
    match (decoded, rx) {
        (Ok(h), Some(rx)) => {
            assert!(data.len() >= VNET_HDR_LEN);
            assert_eq!(rx.len, frame.len());
            assert_eq!(rx.checksum_trusted, h.checksum_trusted());
            assert_eq!(buf, frame, "the frame is left as read");
            Rig::new().feed_rx(&buf[..rx.len], rx.checksum_trusted);
            if frame.len() >= 2 {
                kernel_form(h, frame);
            }
        }
        (Ok(_), None) => assert!(data.len() < VNET_HDR_LEN, "a good header refused"),
        (Err(_), None) => {}
        (Err(e), Some(rx)) => panic!("a header refused ({e}) gave a frame: {rx:?}"),
    }
}
