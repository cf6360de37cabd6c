//! Regression tests from fuzzing the adapter's RX path (`fuzz/`, target
//! `frame`). Each input here is exact bytes: frames vnic captured with its
//! own `--pcap` (the seed corpus in `fuzz/corpus/frame/`) and the malformed
//! variants the fuzzer explores from them. Whatever the bytes, the adapter
//! must not panic, must count a bad frame under exactly one drop kind, and
//! must neither answer nor queue it.

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;
use vnic_adapter::emit::CaptureSink;
use vnic_adapter::rx::Decision;
use vnic_adapter::{
    AdapterConfig, Counters, DropKind, Filter, FilterMode, FlowReport, FrameWriter, RxQueue,
    ToProcessor,
};

/// vnic's MAC in the capture.
const OUR_MAC: [u8; 6] = [0x02, 0x76, 0x6e, 0x0e, 0x5f, 0xea];

/// ARP request "who has 10.0.0.2? tell 10.0.0.1" (captured).
const ARP_REQUEST: &str = "ff ff ff ff ff ff ba b9 08 05 5e 61 08 06 00 01 08 00 06 04 00 01 \
    ba b9 08 05 5e 61 0a 00 00 01 00 00 00 00 00 00 0a 00 00 02";

/// ICMP echo request 10.0.0.1 -> 10.0.0.2 (captured, `ping`).
const PING: &str = "02 76 6e 0e 5f ea ba b9 08 05 5e 61 08 00 45 00 00 54 7b 25 40 00 40 01 \
    ab 81 0a 00 00 01 0a 00 00 02 08 00 da cc 03 09 00 01 4d db 06 6b 00 00 00 00 f9 0f 0e 00 \
    00 00 00 00 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f 20 21 22 23 24 25 26 27 28 29 \
    2a 2b 2c 2d 2e 2f 30 31 32 33 34 35 36 37";

/// Neighbour solicitation for fd00::2 (captured, before `ping -6`).
const NEIGHBOUR_SOLICITATION: &str = "33 33 ff 00 00 02 ba b9 08 05 5e 61 86 dd 60 00 00 00 \
    00 20 3a ff fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 ff 02 00 00 00 00 00 00 00 00 \
    00 01 ff 00 00 02 87 00 5e 78 00 00 00 00 fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02 \
    01 01 ba b9 08 05 5e 61";

/// TCP SYN 10.0.0.1:57336 -> 10.0.0.2:80 with MSS, SACK-permitted,
/// timestamps and window scale (captured, `curl`).
const SYN: &str = "02 76 6e 0e 5f ea ba b9 08 05 5e 61 08 00 45 00 00 3c 45 c2 40 00 40 06 \
    e0 f7 0a 00 00 01 0a 00 00 02 df f8 00 50 8d 40 e5 03 00 00 00 00 a0 02 fa f0 76 cb 00 00 \
    02 04 05 b4 04 02 08 0a f7 88 78 28 00 00 00 00 01 03 03 0a";

/// UDP datagram "x\n" to 10.0.0.2:53 (captured, bash's /dev/udp).
const UDP4: &str = "02 76 6e 0e 5f ea ba b9 08 05 5e 61 08 00 45 00 00 1e 3e 14 40 00 40 11 \
    e8 b8 0a 00 00 01 0a 00 00 02 a6 ac 00 35 00 0a cc eb 78 0a";

/// UDP datagram "y\n" to [fd00::2]:53 (captured).
const UDP6: &str = "02 76 6e 0e 5f ea ba b9 08 05 5e 61 86 dd 60 0d f1 32 00 0a 11 40 fd 00 \
    00 00 00 00 00 00 00 00 00 00 00 00 00 01 fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02 \
    ab 94 00 35 00 0a e1 01 79 0a";

fn bytes(hex: &str) -> Vec<u8> {
    hex.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

/// The adapter as the fuzz target builds it: 4 processors, round-robin
/// over TCP ports 7/9/19/80, frames captured, queues drained after each
/// frame.
struct Rig {
    adapter: RxQueue,
    sink: Arc<CaptureSink>,
    queues: Vec<Receiver<ToProcessor>>,
    _closed: Sender<FlowReport>,
    counters: Arc<Counters>,
}

impl Rig {
    fn new() -> Rig {
        let vip4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let vip6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
        let mut cfg = AdapterConfig::new("fz0", &[vip4, vip6], 1500);
        cfg.mac = OUR_MAC;
        let sink = Arc::new(CaptureSink::default());
        let counters = Arc::new(Counters::new(4));
        let out = FrameWriter::new(sink.clone(), OUR_MAC, counters.clone());
        let mut filter = Filter::new(FilterMode::RoundRobin, 4);
        for port in [7, 9, 19, 80] {
            for p in 0..4 {
                filter.register(port, p).expect("register");
            }
        }
        let (txs, queues): (Vec<_>, Vec<_>) = (0..4).map(|_| bounded(64)).unzip();
        let (closed, crx) = unbounded();
        Rig {
            adapter: RxQueue::new(
                cfg,
                Arc::new(parking_lot::Mutex::new(filter)),
                txs,
                crx,
                out,
                counters.clone(),
            ),
            sink,
            queues,
            _closed: closed,
            counters,
        }
    }

    /// Feeds `frame`; returns the decision, the frames written and the
    /// messages queued.
    fn feed(&mut self, frame: &[u8]) -> (Decision, usize, usize) {
        let d = self.adapter.handle_frame(Instant::now(), frame);
        let out = self.sink.take().len();
        let queued = self.queues.iter().map(|q| q.try_iter().count()).sum();
        (d, out, queued)
    }

    /// Feeds a frame that must be dropped as `kind`: counted once under
    /// `kind` and under nothing else, no answer, nothing queued.
    fn expect_drop(&mut self, frame: &[u8], kind: DropKind) {
        let before: Vec<u64> = DropKind::ALL
            .iter()
            .map(|k| self.counters.dropped(*k))
            .collect();
        let (d, out, queued) = self.feed(frame);
        assert_eq!(d, Decision::Dropped(kind), "frame {frame:02x?}");
        assert_eq!((out, queued), (0, 0), "a dropped frame is not answered");
        for (i, k) in DropKind::ALL.iter().enumerate() {
            let want = before[i] + u64::from(*k == kind);
            assert_eq!(self.counters.dropped(*k), want, "counter {}", k.name());
        }
    }
}

/// RFC 1071 checksum of `data` over a starting sum.
fn checksum(mut acc: u32, data: &[u8]) -> u16 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Recomputes the IPv4 header checksum and the TCP/UDP/ICMP checksum of
/// an Ethernet/IPv4 frame (options-free header assumed past the IHL).
fn fix_ipv4(f: &mut [u8]) {
    let ihl = usize::from(f[14] & 0x0f) * 4;
    f[24] = 0;
    f[25] = 0;
    let c = checksum(0, &f[14..14 + ihl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let proto = f[23];
    let l4 = 14 + ihl;
    let at = l4
        + match proto {
            6 => 16,
            17 => 6,
            _ => 2,
        };
    f[at] = 0;
    f[at + 1] = 0;
    let len = f.len() - l4;
    let pseudo = if proto == 1 {
        0
    } else {
        let mut p = 0u32;
        for w in f[26..34].chunks(2) {
            p += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        p + u32::from(proto) + len as u32
    };
    let c = checksum(pseudo, &f[l4..]);
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn captured_frames_are_answered_or_placed() {
    let mut r = Rig::new();
    assert_eq!(r.feed(&bytes(ARP_REQUEST)), (Decision::ArpReply, 1, 0));
    assert_eq!(r.feed(&bytes(PING)), (Decision::EchoReply, 1, 0));
    assert_eq!(
        r.feed(&bytes(NEIGHBOUR_SOLICITATION)),
        (Decision::NdpAdvert, 1, 0)
    );
    let (d, out, queued) = r.feed(&bytes(SYN));
    assert!(
        matches!(d, Decision::NewConnection { port: 80, .. }),
        "{d:?}"
    );
    assert_eq!((out, queued), (0, 1));
    assert_eq!(r.feed(&bytes(UDP4)), (Decision::PortUnreachable, 1, 0));
    assert_eq!(r.feed(&bytes(UDP6)), (Decision::PortUnreachable, 1, 0));
}

/// The fuzzer's first move on every seed: cut it short. Every strict
/// prefix of a captured frame is a counted drop.
#[test]
fn every_prefix_of_a_captured_frame_is_a_counted_drop() {
    let mut r = Rig::new();
    for (hex, kind) in [
        (ARP_REQUEST, DropKind::BadArp),
        (PING, DropKind::BadIpv4Header),
        (NEIGHBOUR_SOLICITATION, DropKind::BadIpv6Header),
        (SYN, DropKind::BadIpv4Header),
        (UDP4, DropKind::BadIpv4Header),
        (UDP6, DropKind::BadIpv6Header),
    ] {
        let f = bytes(hex);
        for len in 0..f.len() {
            let want = if len < 14 {
                DropKind::TruncatedEthernet
            } else {
                kind
            };
            r.expect_drop(&f[..len], want);
        }
    }
}

#[test]
fn captured_frames_with_a_bad_checksum_are_counted_drops() {
    let mut r = Rig::new();
    let mut f = bytes(SYN);
    f[25] ^= 0x01; // IPv4 header checksum
    r.expect_drop(&f, DropKind::BadIpv4Checksum);
    let mut f = bytes(SYN);
    f[51] ^= 0x01; // TCP checksum
    r.expect_drop(&f, DropKind::BadTcpChecksum);
    let mut f = bytes(PING);
    f[37] ^= 0x01; // ICMP checksum
    r.expect_drop(&f, DropKind::BadIcmp);
    let mut f = bytes(NEIGHBOUR_SOLICITATION);
    f[57] ^= 0x01; // ICMPv6 checksum
    r.expect_drop(&f, DropKind::BadIcmp);
}

/// Impossible TCP headers with a correct checksum: they get past the
/// checksum and must be refused by the header checks.
#[test]
fn impossible_tcp_headers_are_counted_drops() {
    let mut r = Rig::new();
    let syn = bytes(SYN);
    // SYN+FIN.
    let mut f = syn.clone();
    f[47] |= 0x01;
    fix_ipv4(&mut f);
    r.expect_drop(&f, DropKind::BadTcpHeader);
    // Data offset 15 words: past the end of the segment.
    let mut f = syn.clone();
    f[46] = 0xf0;
    fix_ipv4(&mut f);
    r.expect_drop(&f, DropKind::BadTcpHeader);
    // Data offset 4 words: shorter than a header.
    let mut f = syn.clone();
    f[46] = 0x40;
    fix_ipv4(&mut f);
    r.expect_drop(&f, DropKind::BadTcpHeader);
    // An option with length 0 (the MSS option's length byte).
    let mut f = syn.clone();
    f[55] = 0;
    fix_ipv4(&mut f);
    r.expect_drop(&f, DropKind::BadTcpHeader);
    // An option whose length runs past the header (window scale, len 9).
    let mut f = syn.clone();
    f[72] = 9;
    fix_ipv4(&mut f);
    r.expect_drop(&f, DropKind::BadTcpHeader);
    // MSS 0.
    let mut f = syn.clone();
    f[56] = 0;
    f[57] = 0;
    fix_ipv4(&mut f);
    r.expect_drop(&f, DropKind::BadTcpHeader);
    // Source port 0.
    let mut f = syn;
    f[34] = 0;
    f[35] = 0;
    fix_ipv4(&mut f);
    r.expect_drop(&f, DropKind::BadTcpHeader);
}

#[test]
fn bad_ip_and_udp_headers_are_counted_drops() {
    let mut r = Rig::new();
    // IHL 4: shorter than an IPv4 header.
    let mut f = bytes(SYN);
    f[14] = 0x44;
    r.expect_drop(&f, DropKind::BadIpv4Header);
    // IPv4 version 6 in an IPv4 EtherType.
    let mut f = bytes(SYN);
    f[14] = 0x65;
    r.expect_drop(&f, DropKind::BadIpv4Header);
    // A first fragment (MF set, DF cleared).
    let mut f = bytes(SYN);
    f[20] = 0x20;
    fix_ipv4(&mut f);
    r.expect_drop(&f, DropKind::Fragment);
    // Total length beyond the frame.
    let mut f = bytes(UDP4);
    f[17] = 0xff;
    fix_ipv4(&mut f);
    r.expect_drop(&f, DropKind::BadIpv4Header);
    // UDP length beyond the datagram, and below the UDP header.
    for len in [0xff, 7] {
        let mut f = bytes(UDP4);
        f[39] = len;
        fix_ipv4(&mut f);
        r.expect_drop(&f, DropKind::BadUdp);
    }
    // An IP protocol we do not serve (GRE).
    let mut f = bytes(UDP4);
    f[23] = 47;
    fix_ipv4(&mut f);
    r.expect_drop(&f, DropKind::UnknownProtocol);
    // An EtherType we do not speak.
    let mut f = bytes(PING);
    f[12] = 0x88;
    f[13] = 0xcc;
    r.expect_drop(&f, DropKind::UnknownEtherType);
    // IPv6 payload length beyond the frame.
    let mut f = bytes(UDP6);
    f[19] = 0xff;
    r.expect_drop(&f, DropKind::BadIpv6Header);
}
