//! TAP offloads: the virtio-net header's encoding, and TCP segments larger
//! than the MTU whose checksum the kernel left partial, through the RX path
//! and into the stack. Frames are crafted by pnet_packet.

mod common;

use common::HOST_MAC;
use crossbeam_channel::{bounded, unbounded, Receiver};
use pnet_packet::ipv4::{self, MutableIpv4Packet};
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use vnic_adapter::emit::CaptureSink;
use vnic_adapter::rx::Decision;
use vnic_adapter::vnet::{
    complete_checksum, VnetHeader, F_DATA_VALID, F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_TCPV6,
    VNET_HDR_LEN,
};
use vnic_adapter::{
    AdapterConfig, Counters, DropKind, Filter, FilterMode, FrameWriter, RxQueue, ToProcessor,
};
use vnic_stack::{Connection, Control, FourTuple, Segment, SeqNumber, TcpConfig, TcpOptions};

const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// Payload of the large segment: far above a 1500-byte MTU.
const BIG: usize = 20_000;

struct Rig {
    adapter: RxQueue,
    queue: Receiver<ToProcessor>,
    counters: Arc<Counters>,
    mac: [u8; 6],
}

fn rig() -> Rig {
    let cfg = AdapterConfig::new("t0", &[IpAddr::V4(VIP)], 1500);
    let mac = cfg.mac;
    let counters = Arc::new(Counters::new(1));
    let out = FrameWriter::new(Arc::new(CaptureSink::default()), mac, counters.clone());
    let mut filter = Filter::new(FilterMode::RoundRobin, 1);
    filter.register(7, 0).expect("register");
    let (tx, rx) = bounded(64);
    let (_ctx, crx) = unbounded();
    Rig {
        adapter: RxQueue::new(
            cfg,
            Arc::new(parking_lot::Mutex::new(filter)),
            vec![tx],
            crx,
            out,
            counters.clone(),
        ),
        queue: rx,
        counters,
        mac,
    }
}

/// How the TCP checksum field of a crafted frame is filled.
#[derive(Clone, Copy)]
enum Csum {
    /// Complete and correct.
    Full,
    /// The pseudo-header sum only, as the kernel leaves it with NEEDS_CSUM.
    Partial,
}

/// One's-complement sum of 16-bit words, folded.
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut c = data.chunks_exact(2);
    for w in &mut c {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = c.remainder() {
        acc += u32::from(*b) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// Ethernet/IPv4/TCP from the host to VIP:7 with `payload`, crafted by pnet.
fn frame(mac: [u8; 6], flags: u8, seq: u32, payload: &[u8], csum: Csum) -> Vec<u8> {
    let mut t = vec![0u8; 20 + payload.len()];
    {
        let mut p = MutableTcpPacket::new(&mut t).expect("tcp");
        p.set_source(40000);
        p.set_destination(7);
        p.set_sequence(seq);
        p.set_acknowledgement(0);
        p.set_data_offset(5);
        p.set_flags(flags);
        p.set_window(65535);
        p.set_payload(payload);
        let ck = match csum {
            Csum::Full => tcp::ipv4_checksum(&p.to_immutable(), &HOST, &VIP),
            Csum::Partial => {
                let mut pseudo = Vec::new();
                pseudo.extend_from_slice(&HOST.octets());
                pseudo.extend_from_slice(&VIP.octets());
                pseudo.extend_from_slice(&[0, 6]);
                pseudo.extend_from_slice(&(t_len(payload) as u16).to_be_bytes());
                sum16(0, &pseudo) as u16
            }
        };
        p.set_checksum(ck);
    }
    common::tcp_in_ipv4(mac, HOST, VIP, &t)
}

fn t_len(payload: &[u8]) -> usize {
    20 + payload.len()
}

fn big_payload() -> Vec<u8> {
    (0..BIG).map(|i| (i * 7 + 3) as u8).collect()
}

/// The segment the adapter queued for the processor.
fn queued(r: &Rig) -> Segment {
    match r.queue.try_recv().expect("a message for the processor") {
        ToProcessor::Segment(i) => i.segment,
        _ => panic!("expected a segment"),
    }
}

/// A rig with one connection placed (its SYN queued and taken).
fn rig_with_connection() -> Rig {
    let mut r = rig();
    let syn = frame(r.mac, TcpFlags::SYN, 1000, &[], Csum::Full);
    assert!(matches!(
        r.adapter.handle_frame(Instant::now(), &syn),
        Decision::NewConnection { .. }
    ));
    let _ = queued(&r);
    r
}

/// The frame `f` in a read buffer as the RX loop has it: the frame at the
/// front of a buffer of the largest frame's size.
fn read_buffer(f: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; vnic_adapter::tap::MAX_FRAME_LEN];
    buf[..f.len()].copy_from_slice(f);
    buf
}

#[test]
fn a_large_segment_goes_to_its_processor_in_the_read_buffer_itself() {
    let mut r = rig_with_connection();
    let data = big_payload();
    assert!(data.len() >= vnic_adapter::rx::IN_PLACE_MIN);
    let f = frame(r.mac, TcpFlags::ACK, 1001, &data, Csum::Partial);
    let mut buf = read_buffer(&f);
    let read_at = buf.as_ptr();
    assert_eq!(
        r.adapter
            .handle_rx_buffer(Instant::now(), &mut buf, f.len(), true),
        Decision::Flow { processor: 0 }
    );
    assert_ne!(buf.as_ptr(), read_at, "the RX loop got another buffer");
    assert_eq!(
        buf.len(),
        vnic_adapter::tap::MAX_FRAME_LEN,
        "ready to read into"
    );
    let seg = queued(&r);
    assert_eq!(&*seg.payload, &data[..], "every byte, no copy");
    assert_eq!(seg.seq, SeqNumber(1001));
    let whole = seg.payload.into_buffer();
    assert_eq!(
        whole.as_ptr(),
        read_at,
        "the text is in the buffer read into"
    );
    assert_eq!(&whole[..f.len()], &f[..], "headers and text as read");
}

#[test]
fn a_small_segment_is_copied_and_the_read_buffer_stays() {
    let mut r = rig_with_connection();
    let data = vec![5u8; 1000];
    let f = frame(r.mac, TcpFlags::ACK, 1001, &data, Csum::Full);
    let mut buf = read_buffer(&f);
    let read_at = buf.as_ptr();
    assert_eq!(
        r.adapter
            .handle_rx_buffer(Instant::now(), &mut buf, f.len(), false),
        Decision::Flow { processor: 0 }
    );
    assert_eq!(buf.as_ptr(), read_at);
    assert_eq!(&*queued(&r).payload, &data[..]);
}

#[test]
fn a_large_segment_with_a_bad_checksum_is_dropped_before_any_handover() {
    let mut r = rig_with_connection();
    let data = big_payload();
    let mut f = frame(r.mac, TcpFlags::ACK, 1001, &data, Csum::Full);
    let last = f.len() - 1;
    f[last] ^= 0x5a;
    let mut buf = read_buffer(&f);
    let read_at = buf.as_ptr();
    assert_eq!(
        r.adapter
            .handle_rx_buffer(Instant::now(), &mut buf, f.len(), false),
        Decision::Dropped(DropKind::BadTcpChecksum)
    );
    assert_eq!(buf.as_ptr(), read_at);
    assert!(r.queue.try_recv().is_err());
}

#[test]
fn a_large_segment_for_a_full_queue_is_counted_dropped_once() {
    let mut r = rig_with_connection();
    let data = big_payload();
    let f = frame(r.mac, TcpFlags::ACK, 1001, &data, Csum::Partial);
    let mut decisions = Vec::new();
    for _ in 0..70 {
        let mut buf = read_buffer(&f);
        decisions.push(
            r.adapter
                .handle_rx_buffer(Instant::now(), &mut buf, f.len(), true),
        );
    }
    let full = decisions
        .iter()
        .filter(|d| **d == Decision::Dropped(DropKind::QueueFull))
        .count();
    assert_eq!(full, 70 - 64, "the queue holds 64");
    assert_eq!(r.counters.dropped(DropKind::QueueFull), 6);
}

#[test]
fn header_encodes_in_the_kernels_layout() {
    let h = VnetHeader {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    let b = h.encode();
    assert_eq!(b.len(), VNET_HDR_LEN);
    assert_eq!(b[0], 1, "flags first");
    assert_eq!(b[1], 1, "then gso_type");
    // The u16 fields in native order (the tun driver's legacy header).
    assert_eq!(&b[2..4], &54u16.to_ne_bytes());
    assert_eq!(&b[4..6], &1448u16.to_ne_bytes());
    assert_eq!(&b[6..8], &34u16.to_ne_bytes());
    assert_eq!(&b[8..10], &16u16.to_ne_bytes());
    assert_eq!(VnetHeader::decode(&b), Ok(h));
    let v6 = VnetHeader {
        flags: F_DATA_VALID,
        gso_type: GSO_TCPV6,
        ..VnetHeader::PLAIN
    };
    assert_eq!(VnetHeader::decode(&v6.encode()), Ok(v6));
    assert!(v6.checksum_trusted() && v6.is_gso());
    assert_eq!(VnetHeader::PLAIN.encode(), [0u8; VNET_HDR_LEN]);
}

#[test]
fn large_segment_with_partial_checksum_reaches_the_processor_whole() {
    let mut r = rig_with_connection();
    let data = big_payload();
    let f = frame(r.mac, TcpFlags::ACK, 1001, &data, Csum::Partial);
    assert!(f.len() > 1514, "larger than one MTU");
    assert_eq!(
        r.adapter.handle_rx_frame(Instant::now(), &f, true),
        Decision::Flow { processor: 0 }
    );
    let seg = queued(&r);
    assert_eq!(&*seg.payload, &data[..], "one segment, every byte");
    assert_eq!(seg.seq, SeqNumber(1001));
}

#[test]
fn partial_checksum_is_rejected_without_the_offload_flag() {
    let mut r = rig();
    let f = frame(r.mac, TcpFlags::SYN, 1000, &[], Csum::Partial);
    assert_eq!(
        r.adapter.handle_frame(Instant::now(), &f),
        Decision::Dropped(DropKind::BadTcpChecksum)
    );
    assert_eq!(r.counters.dropped(DropKind::BadTcpChecksum), 1);
}

#[test]
fn bad_checksum_of_a_large_segment_is_still_rejected() {
    let mut r = rig();
    let mut f = frame(r.mac, TcpFlags::SYN, 1000, &big_payload(), Csum::Full);
    let n = f.len();
    f[n - 1] ^= 0x5a;
    assert_eq!(
        r.adapter.handle_rx_frame(Instant::now(), &f, false),
        Decision::Dropped(DropKind::BadTcpChecksum)
    );
}

#[test]
fn completing_a_partial_checksum_gives_the_full_one() {
    let data = big_payload();
    let mac = [2, 0, 0, 0, 0, 2];
    let full = frame(mac, TcpFlags::ACK, 5, &data, Csum::Full);
    let mut partial = frame(mac, TcpFlags::ACK, 5, &data, Csum::Partial);
    assert_ne!(full, partial);
    assert!(complete_checksum(&mut partial, 34, 16));
    assert_eq!(full, partial);
}

#[test]
fn stack_takes_a_segment_larger_than_its_mss_within_the_window() {
    let now = Instant::now();
    let cfg = TcpConfig::default();
    let tuple = FourTuple {
        local: SocketAddr::new(IpAddr::V4(VIP), 7),
        remote: SocketAddr::new(IpAddr::V4(HOST), 40000),
    };
    let base = Segment {
        src_port: 40000,
        dst_port: 7,
        seq: SeqNumber(1000),
        ack: None,
        control: Control::Syn,
        psh: false,
        window: 65535,
        options: TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            ..TcpOptions::default()
        },
        payload: Default::default(),
    };
    let iss = SeqNumber(5000);
    let mut c = Connection::accept(now, &cfg, tuple, &base, iss);
    let synack = c.poll_transmit(now).expect("SYN|ACK");
    assert_eq!(synack.control, Control::Syn);
    let ack = Segment {
        seq: SeqNumber(1001),
        ack: Some(iss + 1),
        control: Control::None,
        options: TcpOptions::default(),
        window: 512,
        ..base.clone()
    };
    c.on_segment(now, &ack);
    let data = big_payload();
    assert!(data.len() > cfg.mss(false) as usize);
    c.on_segment(
        now,
        &Segment {
            payload: data.clone().into(),
            ..ack.clone()
        },
    );
    let mut got = vec![0u8; 2 * BIG];
    let n = c.recv(&mut got);
    assert_eq!(&got[..n], &data[..], "all of it delivered, in one piece");
    // A segment this large is acknowledged at once.
    let a = c.poll_transmit(now).expect("an ACK");
    assert_eq!(a.ack, Some(SeqNumber(1001) + BIG));
}

/// A sink that takes GSO frames, like a TAP with offload, and keeps them
/// with their headers.
#[derive(Default)]
struct GsoSink {
    frames: parking_lot::Mutex<Vec<(Vec<u8>, Option<VnetHeader>)>>,
}

impl vnic_adapter::FrameSink for GsoSink {
    fn send_frame(&self, frame: &[u8]) -> std::io::Result<()> {
        self.frames.lock().push((frame.to_vec(), None));
        Ok(())
    }

    fn gso(&self) -> bool {
        true
    }

    fn send_gso_frame(&self, frame: &[u8], hdr: &VnetHeader) -> std::io::Result<()> {
        self.frames.lock().push((frame.to_vec(), Some(*hdr)));
        Ok(())
    }
}

/// Cuts a GSO frame as the kernel does: each piece gets the headers, its
/// slice of the payload, fixed lengths and sequence number, PSH only on
/// the last, and its checksum completed.
fn cut(frame: &[u8], h: &VnetHeader) -> Vec<Vec<u8>> {
    let start = usize::from(h.csum_start);
    let hdr_len = usize::from(h.hdr_len);
    let payload = &frame[hdr_len..];
    let seq0 = u32::from_be_bytes(frame[start + 4..start + 8].try_into().expect("seq"));
    let chunks: Vec<&[u8]> = payload.chunks(usize::from(h.gso_size)).collect();
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let mut f = frame[..hdr_len].to_vec();
        f.extend_from_slice(c);
        let ip_total = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&ip_total.to_be_bytes());
        let mut ip = MutableIpv4Packet::new(&mut f[14..]).expect("ip");
        ip.set_checksum(0);
        let ck = ipv4::checksum(&ip.to_immutable());
        ip.set_checksum(ck);
        let seq = seq0.wrapping_add((i * usize::from(h.gso_size)) as u32);
        f[start + 4..start + 8].copy_from_slice(&seq.to_be_bytes());
        if i + 1 < chunks.len() {
            f[start + 13] &= !TcpFlags::PSH;
        }
        let tcp_len = (f.len() - start) as u16;
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[26..34]);
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&tcp_len.to_be_bytes());
        let partial = sum16(0, &pseudo) as u16;
        f[start + 16..start + 18].copy_from_slice(&partial.to_be_bytes());
        assert!(complete_checksum(&mut f, h.csum_start, h.csum_offset));
        out.push(f);
    }
    out
}

fn data_segment(seq: u32, len: usize, psh: bool) -> Segment {
    Segment {
        src_port: 7,
        dst_port: 40000,
        seq: SeqNumber(seq),
        ack: Some(SeqNumber(1)),
        control: Control::None,
        psh,
        window: 1000,
        options: TcpOptions {
            timestamps: Some((5, 6)),
            ..TcpOptions::default()
        },
        payload: (0..len)
            .map(|i| (i as u32 + seq) as u8)
            .collect::<Vec<u8>>()
            .into(),
    }
}

/// What a GSO sink received: each frame with its virtio-net header.
type GsoFrames = Vec<(Vec<u8>, Option<VnetHeader>)>;

/// Two writers fed the same segments: `w` into a sink that takes GSO
/// frames, `p` into a plain one (the segments as the stack made them).
struct Pair {
    gso: Arc<GsoSink>,
    plain: Arc<CaptureSink>,
    w: FrameWriter,
    p: FrameWriter,
}

impl Pair {
    fn new() -> Pair {
        let counters = Arc::new(Counters::new(1));
        let gso = Arc::new(GsoSink::default());
        let plain = Arc::new(CaptureSink::default());
        Pair {
            w: FrameWriter::new(gso.clone(), [2, 0, 0, 0, 0, 2], counters.clone()),
            p: FrameWriter::new(plain.clone(), [2, 0, 0, 0, 0, 2], counters),
            gso,
            plain,
        }
    }

    /// Gives `segs` to both writers: as bursts to `w`, one by one to `p`.
    fn feed(&mut self, segs: &[Segment]) {
        let (src, dst) = (IpAddr::V4(VIP), IpAddr::V4(HOST));
        for s in segs {
            self.w.send_tcp_burst(HOST_MAC, src, dst, s);
            self.p.send_tcp(HOST_MAC, src, dst, s);
        }
    }

    /// Flushes `w`; returns what each sink got.
    fn flush(&mut self) -> (GsoFrames, Vec<Vec<u8>>) {
        self.w.flush();
        (
            std::mem::take(&mut *self.gso.frames.lock()),
            self.plain.take(),
        )
    }
}

/// The GSO type of each frame (`None`: written without a virtio-net
/// header).
fn gso_types(frames: &GsoFrames) -> Vec<Option<u8>> {
    frames.iter().map(|(_, h)| h.map(|h| h.gso_type)).collect()
}

/// A frame written alone with only its checksum left to the kernel,
/// completed as the kernel would, for comparing with a plain frame.
fn completed(f: &[u8], h: &Option<VnetHeader>) -> Vec<u8> {
    let mut f = f.to_vec();
    if let Some(h) = h {
        assert_eq!(h.flags, F_NEEDS_CSUM);
        assert!(complete_checksum(&mut f, h.csum_start, h.csum_offset));
    }
    f
}

#[test]
fn a_run_of_full_segments_leaves_as_one_gso_frame_that_cuts_back_exactly() {
    let mut pair = Pair::new();
    // 30 full pieces (more than 40 KB, far above the MTU), then a short
    // one with PSH: one GSO frame.
    let mut segs: Vec<Segment> = (0..30)
        .map(|i| data_segment(100 + i * 1436, 1436, false))
        .collect();
    segs.push(data_segment(100 + 30 * 1436, 500, true));
    pair.feed(&segs);
    assert!(pair.gso.frames.lock().is_empty(), "held until the flush");
    let (frames, plain) = pair.flush();
    assert_eq!(frames.len(), 1, "one write for the whole run");
    let (f, h) = &frames[0];
    let h = h.expect("with a virtio-net header");
    assert!(f.len() > 40_000);
    assert_eq!(h.gso_type, GSO_TCPV4);
    assert_eq!(h.flags, F_NEEDS_CSUM);
    assert_eq!((h.csum_start, h.csum_offset, h.gso_size), (34, 16, 1436));
    assert_eq!(
        usize::from(h.hdr_len),
        14 + 20 + 32,
        "TCP header with timestamps"
    );
    assert_eq!(
        cut(f, &h),
        plain,
        "the kernel's cut gives the stack's segments"
    );
}

#[test]
fn a_burst_limit_splits_a_run_into_frames_that_still_cut_back_exactly() {
    let mut pair = Pair::new();
    // Ten full pieces, at most three to a frame: 3 + 3 + 3 + 1.
    pair.w.set_burst_limit(3 * 1436 + 100);
    let segs: Vec<Segment> = (0..10)
        .map(|i| data_segment(100 + i * 1436, 1436, false))
        .collect();
    pair.feed(&segs);
    let (frames, plain) = pair.flush();
    // The last piece goes alone, with only its checksum left to the kernel.
    assert_eq!(
        gso_types(&frames),
        vec![
            Some(GSO_TCPV4),
            Some(GSO_TCPV4),
            Some(GSO_TCPV4),
            Some(GSO_NONE)
        ]
    );
    let cut_all: Vec<Vec<u8>> = frames[..3]
        .iter()
        .flat_map(|(f, h)| cut(f, &h.expect("with a virtio-net header")))
        .collect();
    assert_eq!(cut_all.len(), 9, "three pieces to a frame");
    assert_eq!(cut_all, plain[..9], "the same segments, in order");
    assert_eq!(completed(&frames[3].0, &frames[3].1), plain[9]);
}

#[test]
fn segments_that_cannot_share_a_frame_go_alone() {
    let mut pair = Pair::new();
    // A short piece ends a run; a gap in sequence numbers ends a run; a
    // pure ACK is never held.
    pair.feed(&[
        data_segment(100, 1000, false),
        data_segment(1100, 500, false),
        data_segment(1600, 1000, false),
        data_segment(9999, 1000, true),
        data_segment(20000, 0, false),
    ]);
    let (frames, plain) = pair.flush();
    // [100+1100] as GSO; [1600] and [9999] alone with only the checksum
    // left to the kernel; the ACK alone, as a plain frame.
    assert_eq!(
        gso_types(&frames),
        vec![Some(GSO_TCPV4), Some(GSO_NONE), Some(GSO_NONE), None]
    );
    for (i, (f, h)) in frames.iter().enumerate().skip(1) {
        assert_eq!(
            completed(f, h),
            plain[i + 1],
            "frame {i} as the stack made it"
        );
    }
}

/// The payload of `seg` split where a ring would split it: two slices.
fn split(seg: &Segment, at: usize) -> [&[u8]; 2] {
    let (a, b) = seg.payload.split_at(at.min(seg.payload.len()));
    [a, b]
}

#[test]
fn a_large_segment_written_from_where_it_lies_cuts_back_exactly() {
    let mut pair = Pair::new();
    let (src, dst) = (IpAddr::V4(VIP), IpAddr::V4(HOST));
    // 30 pieces in one large segment whose payload lies in two slices
    // (a ring's wrap in the middle of a piece), PSH at its end.
    let large = data_segment(100, 30 * 1436, true);
    pair.w.send_tcp_large(
        HOST_MAC,
        src,
        dst,
        &large.header_only(),
        split(&large, 10_001),
        1436,
    );
    let plain: Vec<Segment> = (0..30)
        .map(|i| data_segment(100 + i * 1436, 1436, i == 29))
        .collect();
    for s in &plain {
        pair.p.send_tcp(HOST_MAC, src, dst, s);
    }
    let (frames, plain) = pair.flush();
    assert_eq!(frames.len(), 1, "one write");
    let (f, h) = &frames[0];
    let h = h.expect("with a virtio-net header");
    assert_eq!((h.gso_type, h.gso_size), (GSO_TCPV4, 1436));
    assert_eq!(
        cut(f, &h),
        plain,
        "the kernel's cut gives the plain segments"
    );
}

/// A large segment after a burst of plain ones leaves in a frame of its
/// own: the burst goes first, and the two frames cut back into the very
/// segments, in order.
#[test]
fn a_large_segment_after_a_burst_follows_it_in_order() {
    let mut pair = Pair::new();
    let (src, dst) = (IpAddr::V4(VIP), IpAddr::V4(HOST));
    for s in [
        data_segment(100, 1436, false),
        data_segment(1536, 1436, false),
    ] {
        pair.w.send_tcp_burst(HOST_MAC, src, dst, &s);
    }
    let large = data_segment(100 + 2 * 1436, 10 * 1436, true);
    pair.w.send_tcp_large(
        HOST_MAC,
        src,
        dst,
        &large.header_only(),
        split(&large, 7_000),
        1436,
    );
    let plain: Vec<Segment> = (0..12)
        .map(|i| data_segment(100 + i * 1436, 1436, i == 11))
        .collect();
    for s in &plain {
        pair.p.send_tcp(HOST_MAC, src, dst, s);
    }
    let (frames, plain) = pair.flush();
    assert_eq!(gso_types(&frames), vec![Some(GSO_TCPV4), Some(GSO_TCPV4)]);
    let mut got = Vec::new();
    for (f, h) in &frames {
        got.extend(cut(f, &h.expect("header")));
    }
    assert_eq!(got, plain);
}

#[test]
fn without_offload_a_large_segment_is_cut_by_the_writer() {
    let counters = Arc::new(Counters::new(1));
    let plain_sink = Arc::new(CaptureSink::default());
    let reference = Arc::new(CaptureSink::default());
    let mut w = FrameWriter::new(plain_sink.clone(), [2, 0, 0, 0, 0, 2], counters.clone());
    let mut p = FrameWriter::new(reference.clone(), [2, 0, 0, 0, 0, 2], counters);
    let (src, dst) = (IpAddr::V4(VIP), IpAddr::V4(HOST));
    assert_eq!(w.large_send_limit(), 0, "no large segments asked for");
    let large = data_segment(100, 5 * 1436, true);
    w.send_tcp_large(
        HOST_MAC,
        src,
        dst,
        &large.header_only(),
        split(&large, 3000),
        1436,
    );
    // A piece split between the two slices, and a last piece short of
    // a full one.
    let second = data_segment(100 + 5 * 1436, 3 * 1436 - 500, true);
    w.send_tcp_large(
        HOST_MAC,
        src,
        dst,
        &second.header_only(),
        split(&second, 2000),
        1436,
    );
    w.flush();
    for i in 0..8 {
        let psh = i == 4 || i == 7;
        let len = if i == 7 { 1436 - 500 } else { 1436 };
        p.send_tcp(HOST_MAC, src, dst, &data_segment(100 + i * 1436, len, psh));
    }
    assert_eq!(plain_sink.take(), reference.take());
}
