//! Frames out: Ethernet + IP headers around whatever the adapter or a
//! processor sends, written to a [`FrameSink`] (the TAP, or a test's list).

use crate::counters::Counters;
use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use vnic_stack::Segment;

/// Where finished frames go. The TAP implements it; tests collect frames.
pub trait FrameSink: Send + Sync {
    /// Writes one whole Ethernet frame.
    fn send_frame(&self, frame: &[u8]) -> io::Result<()>;
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
    buf: Vec<u8>,
    /// While set, frames are kept here instead of sent (see [`FrameWriter::defer`]).
    deferred: Option<Vec<Vec<u8>>>,
}

impl FrameWriter {
    /// A writer that sends from `mac` into `sink`, counting in `counters`.
    pub fn new(sink: Arc<dyn FrameSink>, mac: [u8; 6], counters: Arc<Counters>) -> FrameWriter {
        FrameWriter {
            sink,
            mac,
            counters,
            buf: Vec::with_capacity(2048),
            deferred: None,
        }
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

    /// Another writer into the same sink (for another thread).
    pub fn clone_writer(&self) -> FrameWriter {
        FrameWriter::new(self.sink.clone(), self.mac, self.counters.clone())
    }

    /// Our MAC.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sends TCP segment `seg` from `src` to `dst` at `dst_mac`.
    pub fn send_tcp(&mut self, dst_mac: [u8; 6], src: IpAddr, dst: IpAddr, seg: &Segment) {
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
        let mut buf = std::mem::take(&mut self.buf);
        let route = self.route(dst_mac, src, dst);
        if build_ip_frame(&mut buf, &route, proto, hop_limit, body) {
            self.send_or_hold(&buf);
        }
        self.buf = buf;
    }

    fn route(&self, dst_mac: [u8; 6], src: IpAddr, dst: IpAddr) -> Route {
        Route {
            src_mac: self.mac,
            dst_mac,
            src,
            dst,
        }
    }

    /// Sends a finished frame now, or holds it while deferring.
    pub fn send_or_hold(&mut self, frame: &[u8]) {
        match &mut self.deferred {
            Some(held) => held.push(frame.to_vec()),
            None => self.write(frame),
        }
    }

    /// Sends a finished frame.
    pub fn write(&self, frame: &[u8]) {
        match self.sink.send_frame(frame) {
            Ok(()) => Counters::bump(&self.counters.frames_out),
            Err(_) => Counters::bump(&self.counters.tx_errors),
        }
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
}

impl FrameSink for CaptureSink {
    fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        self.frames.lock().push(frame.to_vec());
        Ok(())
    }
}
