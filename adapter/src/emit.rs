//! Frames out: Ethernet + IP headers around whatever the adapter or a
//! processor sends, written to a [`FrameSink`] (the TAP, or a test's list).

use crate::counters::Counters;
use crate::vnet::{VnetHeader, F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_TCPV6};
use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use vnic_stack::Segment;

/// Where finished frames go. The TAP implements it; tests collect frames.
pub trait FrameSink: Send + Sync {
    /// Writes one whole Ethernet frame.
    fn send_frame(&self, frame: &[u8]) -> io::Result<()>;

    /// True when [`FrameSink::send_gso_frame`] works: the sink is a TAP
    /// with offload, so the kernel cuts a large TCP segment itself.
    fn gso(&self) -> bool {
        false
    }

    /// Writes one frame with the virtio-net header `hdr` (a TCP segment
    /// larger than the MTU, checksum partial). Sinks without offload
    /// refuse it; [`FrameWriter`] only calls it when [`FrameSink::gso`].
    fn send_gso_frame(&self, frame: &[u8], hdr: &VnetHeader) -> io::Result<()> {
        let _ = (frame, hdr);
        Err(io::ErrorKind::Unsupported.into())
    }

    /// [`FrameSink::send_gso_frame`] for a frame in a buffer the sink may
    /// keep: a tracing sink hands a large frame's buffer to the trace
    /// writer instead of copying it, and leaves another buffer in its
    /// place (contents and length unspecified).
    fn send_gso_buf(&self, frame: &mut Vec<u8>, hdr: &VnetHeader) -> io::Result<()> {
        self.send_gso_frame(frame, hdr)
    }

    /// [`FrameSink::send_gso_buf`] for a frame whose start is in `head`
    /// and whose rest is `tail` (a large segment's payload where it lies):
    /// a TAP writes the pieces with one vectored write; other sinks get
    /// them joined in `head` (contents afterwards unspecified).
    fn send_gso_parts(
        &self,
        head: &mut Vec<u8>,
        tail: [&[u8]; 2],
        hdr: &VnetHeader,
    ) -> io::Result<()> {
        self.send_gso_joined(head, tail, hdr)
    }

    /// The pieces of [`FrameSink::send_gso_parts`] joined in `head`, then
    /// sent whole: for sinks that need the frame in one buffer.
    fn send_gso_joined(
        &self,
        head: &mut Vec<u8>,
        tail: [&[u8]; 2],
        hdr: &VnetHeader,
    ) -> io::Result<()> {
        head.extend_from_slice(tail[0]);
        head.extend_from_slice(tail[1]);
        self.send_gso_buf(head, hdr)
    }

    /// With several links (Ethernet failover): the link frames leave by
    /// now, for the trace's comments. None for a sink of one device.
    fn link(&self) -> Option<&'static str> {
        None
    }

    /// The sender's turn stamp, if its frames are traced with one
    /// ([`crate::trace::turn`]): a processor sets it as a pass begins.
    fn turn(&self) -> Option<&crate::trace::turn::TurnStamp> {
        None
    }

    /// The sender (a processor) took a batch of segments at `now`,
    /// having taken `taken` in all, its `batch`th: a sink that traces
    /// turns records it ([`crate::trace::batch`]); others do nothing.
    fn batch(&self, now: std::time::Instant, taken: u64, batch: u64) {
        let _ = (now, taken, batch);
    }
}

/// Largest TCP payload put into one GSO frame: the IPv4 total length
/// (and the IPv6 payload length) must stay within 65,535 with a 20- or
/// 40-byte IP header and up to 60 bytes of TCP header.
const MAX_GSO_PAYLOAD: usize = 65_535 - 40 - 60;

/// Consecutive full-sized segments of one connection, held to leave as one
/// GSO frame (see [`FrameWriter::send_tcp_burst`]). The frame is built in
/// the writer's buffer as they come: the first segment's headers, then
/// every segment's payload appended, lengths fixed at the flush.
struct Burst {
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    /// The first segment's header fields (empty payload).
    head: Segment,
    /// Sequence number right after the data held.
    next_seq: vnic_stack::SeqNumber,
    /// Payload bytes held.
    len: usize,
    /// PSH of the last segment added.
    psh: bool,
    /// Payload of each piece (the first segment's): the kernel's gso_size.
    piece: usize,
    /// Payload of the last segment added.
    last: usize,
    /// Segments held.
    count: usize,
}

impl Burst {
    /// True if `seg` continues the burst: same connection and header
    /// fields, the next sequence number, every earlier piece full, and no
    /// PSH before it, so the kernel's cut gives back the very segments the
    /// stack made.
    fn takes(
        &self,
        dst_mac: [u8; 6],
        src: IpAddr,
        dst: IpAddr,
        seg: &Segment,
        limit: usize,
    ) -> bool {
        let h = &self.head;
        self.dst_mac == dst_mac
            && self.src == src
            && self.dst == dst
            && h.src_port == seg.src_port
            && h.dst_port == seg.dst_port
            && h.ack == seg.ack
            && h.window == seg.window
            && h.options == seg.options
            && !self.psh
            && self.last == self.piece
            && seg.payload.len() <= self.piece
            && self.next_seq == seg.seq
            && self.len + seg.payload.len() <= limit
    }
}

/// A segment that may travel in a GSO frame: data with ACK, no SYN, FIN or
/// RST (those go alone, as the stack made them).
fn batchable(seg: &Segment) -> bool {
    seg.control == vnic_stack::Control::None && seg.ack.is_some() && !seg.payload.is_empty()
}

/// The one's-complement sum (folded, not inverted) of the TCP pseudo
/// header: what the checksum field holds when the kernel finishes it.
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, tcp_len: usize) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            add(&s.octets());
            add(&d.octets());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(v) => v.to_ipv6_mapped(),
                IpAddr::V6(v) => v,
            };
            add(&v6(s).octets());
            add(&v6(d).octets());
        }
    }
    add(&[0, 6]);
    add(&(tcp_len as u32).to_be_bytes());
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Hop limit / TTL of everything we originate.
pub const TTL: u8 = 64;

/// The addresses of one frame: link and network, both ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Ethernet source (our MAC).
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// IP source.
    pub src: IpAddr,
    /// IP destination.
    pub dst: IpAddr,
}

/// Builds Ethernet + IP around a payload written by `body` into `out`
/// (cleared first). Returns false, leaving `out` empty, when the two IP
/// addresses are of different families or the payload is too long for IP.
pub fn build_ip_frame(
    out: &mut Vec<u8>,
    route: &Route,
    proto: IpNumber,
    hop_limit: u8,
    body: impl FnOnce(&mut Vec<u8>),
) -> bool {
    let Route {
        src_mac,
        dst_mac,
        src,
        dst,
    } = *route;
    out.clear();
    let (ether_type, ip_len) = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (EtherType::IPV4, Ipv4Header::MIN_LEN),
        (IpAddr::V6(_), IpAddr::V6(_)) => (EtherType::IPV6, Ipv6Header::LEN),
        _ => return false,
    };
    let eth = Ethernet2Header {
        source: src_mac,
        destination: dst_mac,
        ether_type,
    };
    out.extend_from_slice(&eth.to_bytes());
    let ip_at = out.len();
    out.resize(ip_at + ip_len, 0);
    body(out);
    let payload_len = out.len() - ip_at - ip_len;
    let ok = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => match u16::try_from(payload_len)
            .ok()
            .and_then(|l| Ipv4Header::new(l, hop_limit, proto, s.octets(), d.octets()).ok())
        {
            Some(mut h) => {
                h.header_checksum = h.calc_header_checksum();
                out[ip_at..ip_at + ip_len].copy_from_slice(&h.to_bytes());
                true
            }
            None => false,
        },
        (IpAddr::V6(s), IpAddr::V6(d)) => match u16::try_from(payload_len) {
            Ok(l) => {
                let h = Ipv6Header {
                    traffic_class: 0,
                    flow_label: Ipv6FlowLabel::ZERO,
                    payload_length: l,
                    next_header: proto,
                    hop_limit,
                    source: s.octets(),
                    destination: d.octets(),
                };
                out[ip_at..ip_at + ip_len].copy_from_slice(&h.to_bytes());
                true
            }
            Err(_) => false,
        },
        _ => false,
    };
    if !ok {
        out.clear();
    }
    ok
}

/// Builds the frame carrying TCP segment `seg` from `src` to `dst`.
pub fn build_tcp_frame(out: &mut Vec<u8>, route: &Route, seg: &Segment) -> bool {
    let (src, dst) = (route.src, route.dst);
    build_ip_frame(out, route, IpNumber::TCP, TTL, |b| seg.emit(src, dst, b))
}

/// A sender of frames with its own scratch buffer: one per thread that sends.
pub struct FrameWriter {
    sink: Arc<dyn FrameSink>,
    mac: [u8; 6],
    counters: Arc<Counters>,
    /// This writer's sender slot in `counters` ([`FrameWriter::set_sender`]).
    sender: usize,
    buf: Vec<u8>,
    /// While set, frames are kept here instead of sent (see [`FrameWriter::defer`]).
    deferred: Option<Vec<Vec<u8>>>,
    /// The sink takes GSO frames (a TAP with offload).
    gso: bool,
    /// Segments held by [`FrameWriter::send_tcp_burst`] until [`FrameWriter::flush`].
    burst: Option<Burst>,
    /// Most payload bytes in one GSO frame ([`FrameWriter::set_burst_limit`]).
    burst_limit: usize,
    /// With several links: the active link's MAC, read for every frame
    /// ([`FrameWriter::follow_mac`]).
    active_mac: Option<Arc<ActiveMac>>,
}

/// The MAC frames leave from, changed when another link takes over
/// (Ethernet failover, [`crate::link`]): every writer reads it as it
/// builds a frame, so no processor needs telling.
#[derive(Debug)]
pub struct ActiveMac(std::sync::atomic::AtomicU64);

impl ActiveMac {
    /// Starts as `mac`.
    pub fn new(mac: [u8; 6]) -> ActiveMac {
        ActiveMac(std::sync::atomic::AtomicU64::new(Self::pack(mac)))
    }

    /// The MAC now.
    pub fn get(&self) -> [u8; 6] {
        let v = self
            .0
            .load(std::sync::atomic::Ordering::Acquire)
            .to_be_bytes();
        [v[2], v[3], v[4], v[5], v[6], v[7]]
    }

    /// Frames built from now on leave from `mac`.
    pub fn set(&self, mac: [u8; 6]) {
        self.0
            .store(Self::pack(mac), std::sync::atomic::Ordering::Release);
    }

    fn pack(mac: [u8; 6]) -> u64 {
        let mut v = [0u8; 8];
        v[2..].copy_from_slice(&mac);
        u64::from_be_bytes(v)
    }
}

impl FrameWriter {
    /// A writer that sends from `mac` into `sink`, counting in `counters`.
    pub fn new(sink: Arc<dyn FrameSink>, mac: [u8; 6], counters: Arc<Counters>) -> FrameWriter {
        FrameWriter {
            gso: sink.gso(),
            sink,
            mac,
            counters,
            sender: 0,
            buf: Vec::with_capacity(2048),
            deferred: None,
            burst: None,
            burst_limit: MAX_GSO_PAYLOAD,
            active_mac: None,
        }
    }

    /// Builds every frame from here on from the MAC `mac` holds at the
    /// time (the active link's, with several links) instead of the MAC
    /// given to [`FrameWriter::new`].
    pub fn follow_mac(&mut self, mac: Arc<ActiveMac>) {
        self.active_mac = Some(mac);
    }

    /// Caps the payload of the GSO frames [`FrameWriter::send_tcp_burst`]
    /// builds from here on (at most what one frame can carry; at least
    /// one segment always goes). The processor sets it per connection
    /// from the congestion window, so a small window leaves in two frames
    /// or more: a window sent as one frame is lost whole when that frame
    /// is, and then no ACK is left to tell which segments are missing.
    pub fn set_burst_limit(&mut self, bytes: usize) {
        self.burst_limit = bytes.min(MAX_GSO_PAYLOAD);
    }

    /// Holds frames back instead of sending them until [`FrameWriter::release`]:
    /// the RX thread uses it so a trace shows a request before its answer.
    pub fn defer(&mut self) {
        self.deferred.get_or_insert_with(Vec::new);
    }

    /// Sends the frames held back by [`FrameWriter::defer`] and stops holding.
    pub fn release(&mut self) {
        if let Some(frames) = self.deferred.take() {
            for f in frames {
                self.write(&f);
            }
        }
    }

    /// Counts this writer's frames in sender slot `slot` of its counters
    /// (processor K: K; an RX queue: [`Counters::rx_sender`]), so no two
    /// threads bump the same counter per frame. Slot 0 until set.
    pub fn set_sender(&mut self, slot: usize) {
        self.sender = slot;
    }

    /// Stamps the turn that sends what follows (`now`, after `taken`
    /// segments in `batches` batches), when the sink traces turns;
    /// nothing otherwise.
    #[inline]
    pub fn stamp_turn(&self, now: std::time::Instant, taken: u64, batches: u64) {
        if let Some(t) = self.sink.turn() {
            t.set(now, taken, batches);
        }
    }

    /// Records the batch the sender just took (at `now`, `taken`
    /// segments in all, its `batch`th) when its sink traces turns and a
    /// pcapng file is written; nothing otherwise.
    #[inline]
    pub fn record_batch(&self, now: std::time::Instant, taken: u64, batch: u64) {
        self.sink.batch(now, taken, batch);
    }

    /// Our MAC: the active link's when following one.
    pub fn mac(&self) -> [u8; 6] {
        match &self.active_mac {
            Some(m) => m.get(),
            None => self.mac,
        }
    }

    /// Sends TCP segment `seg` from `src` to `dst` at `dst_mac`.
    pub fn send_tcp(&mut self, dst_mac: [u8; 6], src: IpAddr, dst: IpAddr, seg: &Segment) {
        self.flush();
        self.send_tcp_now(dst_mac, src, dst, seg);
    }

    /// Like [`FrameWriter::send_tcp`] for one of a run of segments that a
    /// connection sends at once: on a TAP with offload, consecutive full
    /// segments are held and leave as one large frame (TSO) that the
    /// kernel cuts back into the same segments, one write instead of up
    /// to forty. The caller must call [`FrameWriter::flush`] after the run.
    pub fn send_tcp_burst(&mut self, dst_mac: [u8; 6], src: IpAddr, dst: IpAddr, seg: &Segment) {
        if !self.gso || self.deferred.is_some() || !batchable(seg) {
            return self.send_tcp(dst_mac, src, dst, seg);
        }
        if let Some(b) = &mut self.burst {
            if b.takes(dst_mac, src, dst, seg, self.burst_limit) {
                self.buf.extend_from_slice(&seg.payload);
                b.len += seg.payload.len();
                b.next_seq = b.next_seq + seg.payload.len();
                b.psh = seg.psh;
                b.last = seg.payload.len();
                b.count += 1;
                return;
            }
        }
        if !self.begin_frame(dst_mac, src, dst, seg) {
            return;
        }
        self.burst = Some(Burst {
            dst_mac,
            src,
            dst,
            head: seg.header_only(),
            next_seq: seg.seq + seg.payload.len(),
            len: seg.payload.len(),
            psh: seg.psh,
            piece: seg.payload.len(),
            last: seg.payload.len(),
            count: 1,
        });
    }

    /// How large a segment [`FrameWriter::send_tcp_large`] sends as one
    /// frame now: the burst limit with offload, 0 (plain segments only)
    /// without it or while frames are held back.
    pub fn large_send_limit(&self) -> usize {
        if self.gso && self.deferred.is_none() {
            self.burst_limit
        } else {
            0
        }
    }

    /// Flushes what is held and starts a frame in the buffer: the
    /// Ethernet and IP headers and `seg` (its payload too, if it has one),
    /// the TCP checksum left to the kernel (NEEDS_CSUM at the flush).
    /// False if the frame could not be built (nothing held then).
    fn begin_frame(&mut self, dst_mac: [u8; 6], src: IpAddr, dst: IpAddr, seg: &Segment) -> bool {
        self.flush();
        let route = self.route(dst_mac, src, dst);
        let mut buf = std::mem::take(&mut self.buf);
        let built = build_ip_frame(&mut buf, &route, IpNumber::TCP, TTL, |b| {
            seg.emit_without_checksum(b)
        });
        self.buf = buf;
        built
    }

    /// Sends a large segment (`header`, its payload `data` in two
    /// slices) as the plain segments it stands for: pieces of `piece`
    /// bytes, each with its sequence number, PSH on the last only (what
    /// the kernel's cut would have made). Each piece's bytes are copied
    /// once, into its own segment.
    fn send_cut(
        &mut self,
        dst_mac: [u8; 6],
        src: IpAddr,
        dst: IpAddr,
        header: &Segment,
        data: [&[u8]; 2],
        piece: usize,
    ) {
        let piece = piece.max(1);
        let len = data[0].len() + data[1].len();
        let mut at = 0;
        while at < len {
            let end = (at + piece).min(len);
            let mut bytes = Vec::with_capacity(end - at);
            for (from, part) in [(0, data[0]), (data[0].len(), data[1])] {
                let lo = at.clamp(from, from + part.len()) - from;
                let hi = end.clamp(from, from + part.len()) - from;
                bytes.extend_from_slice(&part[lo..hi]);
            }
            let mut one = header.header_only();
            one.seq = header.seq + at;
            one.psh = header.psh && end == len;
            one.payload = vnic_stack::Payload::from(bytes);
            self.send_tcp(dst_mac, src, dst, &one);
            at = end;
        }
    }

    /// Sends the segments held by [`FrameWriter::send_tcp_burst`], built
    /// in the buffer already: the IP length (and IPv4 header checksum),
    /// PSH of the last piece and the TCP pseudo-header sum are filled in
    /// here, and the frame goes out with a virtio-net header asking the
    /// kernel to finish the checksum and, for several segments, to cut
    /// it back into them (TSO).
    pub fn flush(&mut self) {
        let Some(b) = self.burst.take() else {
            return;
        };
        self.finish(b, [&[], &[]]);
    }

    /// Writes a large segment ([`vnic_stack::Transmit::Large`]) straight
    /// from where its payload lies: the headers are built in the
    /// writer's buffer and the payload slices follow them in one
    /// vectored write (TSO at `piece`), with no copy of the payload in
    /// user space. Without offload, while deferring, or beyond what one
    /// frame holds, it is cut here into the plain segments it stands for.
    pub fn send_tcp_large(
        &mut self,
        dst_mac: [u8; 6],
        src: IpAddr,
        dst: IpAddr,
        header: &Segment,
        data: [&[u8]; 2],
        piece: usize,
    ) {
        let len = data[0].len() + data[1].len();
        if !self.gso || self.deferred.is_some() || len > MAX_GSO_PAYLOAD || piece == 0 {
            return self.send_cut(dst_mac, src, dst, header, data, piece);
        }
        if !self.begin_frame(dst_mac, src, dst, header) {
            return;
        }
        let b = Burst {
            dst_mac,
            src,
            dst,
            head: header.header_only(),
            next_seq: header.seq + len,
            len,
            psh: header.psh,
            piece,
            last: piece,
            count: len.div_ceil(piece).max(1),
        };
        self.finish(b, data);
    }

    /// Fills in the lengths and checksum start of the frame in the
    /// buffer (the burst's headers and what was appended), `tail` being
    /// payload that follows it in the write, and sends it.
    fn finish(&mut self, b: Burst, tail: [&[u8]; 2]) {
        let mut buf = std::mem::take(&mut self.buf);
        let ip_at = Ethernet2Header::LEN;
        let v4 = matches!(b.src, IpAddr::V4(_));
        let ip_len = if v4 {
            Ipv4Header::MIN_LEN
        } else {
            Ipv6Header::LEN
        };
        let csum_start = ip_at + ip_len;
        let tcp_len = buf.len() - csum_start + tail[0].len() + tail[1].len();
        match (b.src, b.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                // Cannot fail: takes() keeps the payload within MAX_GSO_PAYLOAD.
                // Were it to, the run is counted lost (the stack resends it).
                let Ok(mut h) =
                    Ipv4Header::new(tcp_len as u16, TTL, IpNumber::TCP, s.octets(), d.octets())
                else {
                    self.counters.tx_error(self.sender);
                    self.buf = buf;
                    return;
                };
                h.header_checksum = h.calc_header_checksum();
                buf[ip_at..csum_start].copy_from_slice(&h.to_bytes());
            }
            _ => buf[ip_at + 4..ip_at + 6].copy_from_slice(&(tcp_len as u16).to_be_bytes()),
        }
        if b.psh {
            buf[csum_start + 13] |= 0x08;
        }
        let partial = pseudo_header_sum(b.src, b.dst, tcp_len);
        buf[csum_start + 16..csum_start + 18].copy_from_slice(&partial.to_be_bytes());
        let (gso_type, gso_size) = match (b.count, v4) {
            (1, _) => (GSO_NONE, 0),
            (_, true) => (GSO_TCPV4, b.piece as u16),
            (_, false) => (GSO_TCPV6, b.piece as u16),
        };
        let hdr = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: (csum_start + b.head.header_len()) as u16,
            gso_size,
            csum_start: csum_start as u16,
            csum_offset: 16,
        };
        let sent = if tail[0].is_empty() && tail[1].is_empty() {
            self.sink.send_gso_buf(&mut buf, &hdr)
        } else {
            self.sink.send_gso_parts(&mut buf, tail, &hdr)
        };
        match sent {
            Ok(()) => self.counters.frame_out(self.sender),
            Err(_) => self.counters.tx_error(self.sender),
        }
        self.buf = buf;
    }

    fn send_tcp_now(&mut self, dst_mac: [u8; 6], src: IpAddr, dst: IpAddr, seg: &Segment) {
        let mut buf = std::mem::take(&mut self.buf);
        let route = self.route(dst_mac, src, dst);
        if build_tcp_frame(&mut buf, &route, seg) {
            self.send_or_hold(&buf);
        }
        self.buf = buf;
    }

    /// Sends an IP packet whose payload `body` writes.
    pub fn send_ip(
        &mut self,
        dst_mac: [u8; 6],
        src: IpAddr,
        dst: IpAddr,
        proto: IpNumber,
        hop_limit: u8,
        body: impl FnOnce(&mut Vec<u8>),
    ) {
        self.flush();
        let mut buf = std::mem::take(&mut self.buf);
        let route = self.route(dst_mac, src, dst);
        if build_ip_frame(&mut buf, &route, proto, hop_limit, body) {
            self.send_or_hold(&buf);
        }
        self.buf = buf;
    }

    fn route(&self, dst_mac: [u8; 6], src: IpAddr, dst: IpAddr) -> Route {
        Route {
            src_mac: self.mac(),
            dst_mac,
            src,
            dst,
        }
    }

    /// Sends a finished frame now, or holds it while deferring.
    pub fn send_or_hold(&mut self, frame: &[u8]) {
        self.flush();
        match &mut self.deferred {
            Some(held) => held.push(frame.to_vec()),
            None => self.write(frame),
        }
    }

    /// Sends a finished frame.
    pub fn write(&self, frame: &[u8]) {
        match self.sink.send_frame(frame) {
            Ok(()) => self.counters.frame_out(self.sender),
            Err(_) => self.counters.tx_error(self.sender),
        }
    }
}

impl Drop for FrameWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A [`FrameSink`] that keeps every frame, for tests.
#[derive(Default)]
pub struct CaptureSink {
    frames: parking_lot::Mutex<Vec<Vec<u8>>>,
}

impl CaptureSink {
    /// Takes every frame captured so far.
    pub fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.frames.lock())
    }

    /// How many frames are captured and not yet taken.
    pub fn len(&self) -> usize {
        self.frames.lock().len()
    }

    /// True when no frame waits to be taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FrameSink for CaptureSink {
    fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        self.frames.lock().push(frame.to_vec());
        Ok(())
    }
}
