//! What "identical" means, frame by frame. Processors run in parallel in
//! a live vnic, so their frames interleave differently from one run to
//! the next; a replay compares what cannot vary:
//!
//! - every inbound frame's decision (`in cpu=2 flow`), in the trace's
//!   order (one RX thread decided them in that order);
//! - the TCP frames of each connection (its 4-tuple), in order, whoever
//!   sent them (a processor, or the adapter: a SYN cookie's SYN|ACK, a RST);
//! - the adapter's other answers (ARP, NDP, ICMP), in order.
//!
//! Two frames are identical when their decision comments are and every
//! header field and payload byte is, except these, which are left out
//! on purpose: the IPv4 identification and every checksum (derived, not
//! decided), the TCP timestamp option's TSval (a reading of the
//! processor's clock, which a replay reproduces only to within the time
//! between a frame's capture and its handling), and a processor frame's
//! turn stamp (`t=NS in=N`: what the replay follows, not what it
//! compares). TSecr, which echoes the peer, is compared.

use etherparse::{LinkSlice, NetSlice, SlicedPacket, TcpOptionElement, TransportSlice};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use vnic_adapter::trace::Direction;

/// The fields the comparison leaves out, as the report says them.
pub const EXCLUDED: &str = "IPv4 identification, checksums, TCP TSval, turn stamps";

/// Which ordered stream a frame belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// The adapter's non-TCP answers (ARP, NDP, ICMP).
    Adapter,
    /// One connection's TCP frames out: vnic's address, then the peer's.
    Tcp {
        /// vnic's end.
        vnic: SocketAddr,
        /// The peer's end.
        peer: SocketAddr,
    },
}

/// A frame taken apart for comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Its stream.
    pub stream: Stream,
    /// Named fields, in the order a difference is looked for.
    pub fields: Vec<(&'static str, String)>,
    /// The TCP payload (or, for other frames, the bytes compared).
    pub payload: Vec<u8>,
    /// A short form: `ACK seq 1 ack 48213 win 65160 len 0`.
    pub short: String,
}

/// A comment without its turn stamp (`t=NS in=N b=B`): the stamp is what a
/// replay follows, not what it compares.
pub fn decision(comment: &str) -> String {
    comment
        .split(' ')
        .filter(|w| !w.starts_with("t=") && !w.starts_with("in=") && !w.starts_with("b="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Takes an outbound frame apart; its decision comment (the turn stamp
/// left out) is one of its fields.
pub fn decode(frame: &[u8], comment: &str) -> Decoded {
    let comment = &decision(comment);
    let mut fields = Vec::with_capacity(16);
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return Decoded {
            stream: Stream::Adapter,
            fields: vec![("comment", comment.to_string())],
            payload: frame.to_vec(),
            short: format!("{} undecodable bytes", frame.len()),
        };
    };
    if let Some(LinkSlice::Ethernet2(e)) = &p.link {
        fields.push(("eth.dst", mac(e.destination())));
        fields.push(("eth.src", mac(e.source())));
    }
    let mut addrs = None;
    match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            addrs = Some((
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
            ));
            fields.push(("ip.src", h.source_addr().to_string()));
            fields.push(("ip.dst", h.destination_addr().to_string()));
            fields.push(("ip.ttl", h.ttl().to_string()));
            fields.push(("ip.len", h.total_len().to_string()));
            fields.push(("ip.df", h.dont_fragment().to_string()));
            fields.push(("ip.tos", format!("{:?}/{:?}", h.dcp(), h.ecn())));
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            addrs = Some((
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
            ));
            fields.push(("ip.src", h.source_addr().to_string()));
            fields.push(("ip.dst", h.destination_addr().to_string()));
            fields.push(("ip.hlim", h.hop_limit().to_string()));
            fields.push(("ip.len", h.payload_length().to_string()));
            fields.push(("ip.tclass", h.traffic_class().to_string()));
            fields.push(("ip.flow", h.flow_label().value().to_string()));
        }
        _ => {}
    }
    if let (Some(TransportSlice::Tcp(t)), Some((src, dst))) = (&p.transport, addrs) {
        let flags = tcp_flags(t);
        fields.push(("tcp.sport", t.source_port().to_string()));
        fields.push(("tcp.dport", t.destination_port().to_string()));
        fields.push(("flags", flags.clone()));
        fields.push(("seq", t.sequence_number().to_string()));
        fields.push(("ack", t.acknowledgment_number().to_string()));
        fields.push(("win", t.window_size().to_string()));
        fields.push(("urg", t.urgent_pointer().to_string()));
        let opts = tcp_options(t);
        fields.push(("options", opts.clone()));
        fields.push(("len", t.payload().len().to_string()));
        fields.push(("comment", comment.to_string()));
        let short = format!(
            "{flags} seq {} ack {} win {} len {}{}",
            t.sequence_number(),
            t.acknowledgment_number(),
            t.window_size(),
            t.payload().len(),
            if opts.is_empty() {
                String::new()
            } else {
                format!(" <{opts}>")
            }
        );
        return Decoded {
            stream: Stream::Tcp {
                vnic: SocketAddr::new(src, t.source_port()),
                peer: SocketAddr::new(dst, t.destination_port()),
            },
            fields,
            payload: t.payload().to_vec(),
            short,
        };
    }
    fields.push(("comment", comment.to_string()));
    // Not TCP: the bytes, less the IPv4 identification and checksums.
    let mut bytes = frame.to_vec();
    if let Some(NetSlice::Ipv4(_)) = &p.net {
        for at in [18, 19, 24, 25] {
            if let Some(b) = bytes.get_mut(at) {
                *b = 0;
            }
        }
    }
    Decoded {
        stream: Stream::Adapter,
        fields,
        short: format!("{} ({} bytes)", comment, frame.len()),
        payload: bytes,
    }
}

fn mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn tcp_flags(t: &etherparse::TcpSlice<'_>) -> String {
    let mut f = Vec::with_capacity(4);
    for (on, name) in [
        (t.syn(), "SYN"),
        (t.fin(), "FIN"),
        (t.rst(), "RST"),
        (t.psh(), "PSH"),
        (t.ack(), "ACK"),
        (t.urg(), "URG"),
        (t.ece(), "ECE"),
        (t.cwr(), "CWR"),
    ] {
        if on {
            f.push(name);
        }
    }
    if f.is_empty() {
        "none".into()
    } else {
        f.join("|")
    }
}

/// The options in order, TSval left out (see the module's note).
fn tcp_options(t: &etherparse::TcpSlice<'_>) -> String {
    let mut s = String::new();
    for o in t.options_iterator() {
        if !s.is_empty() {
            s.push(',');
        }
        match o {
            Ok(TcpOptionElement::Noop) => s.push_str("nop"),
            Ok(TcpOptionElement::MaximumSegmentSize(m)) => {
                let _ = write!(s, "mss {m}");
            }
            Ok(TcpOptionElement::WindowScale(w)) => {
                let _ = write!(s, "wscale {w}");
            }
            Ok(TcpOptionElement::SelectiveAcknowledgementPermitted) => s.push_str("sackOK"),
            Ok(TcpOptionElement::SelectiveAcknowledgement(first, rest)) => {
                let _ = write!(s, "sack {}-{}", first.0, first.1);
                for (a, b) in rest.iter().flatten() {
                    let _ = write!(s, " {a}-{b}");
                }
            }
            Ok(TcpOptionElement::Timestamp(_, ecr)) => {
                let _ = write!(s, "TS ecr {ecr}");
            }
            Err(e) => {
                let _ = write!(s, "bad option ({e})");
            }
        }
    }
    s
}

/// One outbound frame placed in its stream: the trace frame number it is
/// (trace) or was made while replaying (replay), and the frame decoded.
#[derive(Clone, Debug)]
pub struct Placed {
    /// The trace's frame number (for a replay frame: the trace frame
    /// being replayed when it was made).
    pub frame: usize,
    /// The frame taken apart.
    pub decoded: Decoded,
}

/// One difference between the trace and the replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The trace frame where it shows.
    pub frame: usize,
    /// In or out.
    pub dir: Direction,
    /// Who decided the frame (`cpu=2`, `adapter`), from the trace's
    /// comment, else the replay's.
    pub origin: String,
    /// The first field that differs (`win`, `comment`, `missing`, ...).
    pub field: String,
    /// The trace's frame, short and in full (None: the trace has none).
    pub trace: Option<(String, String)>,
    /// The replay's frame, short and in full (None: the replay has none).
    pub replay: Option<(String, String)>,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |x: &Option<(String, String)>| {
            x.as_ref()
                .map_or_else(|| "nothing".to_string(), |(s, _)| s.clone())
        };
        writeln!(
            f,
            "frame {} ({}, {}): trace has {}, replay has {} ({} differs)",
            self.frame,
            self.dir.name(),
            self.origin,
            short(&self.trace),
            short(&self.replay),
            self.field
        )?;
        if let Some((_, full)) = &self.trace {
            writeln!(f, "  trace:  {full}")?;
        }
        if let Some((_, full)) = &self.replay {
            writeln!(f, "  replay: {full}")?;
        }
        Ok(())
    }
}

/// The full form of a decoded frame, for the report.
pub fn full(d: &Decoded) -> String {
    let mut s = String::new();
    for (k, v) in &d.fields {
        if !s.is_empty() {
            s.push(' ');
        }
        let _ = write!(s, "{k}={v}");
    }
    if !d.payload.is_empty() {
        let head: String = d
            .payload
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        let _ = write!(
            s,
            " payload={head}{}",
            if d.payload.len() > 16 { ".." } else { "" }
        );
    }
    s
}

/// The first field in which `a` and `b` differ, if any.
pub fn first_difference(a: &Decoded, b: &Decoded) -> Option<String> {
    for ((ka, va), (kb, vb)) in a.fields.iter().zip(&b.fields) {
        if ka != kb {
            return Some(format!("{ka}/{kb}"));
        }
        if va != vb {
            return Some(format!("{ka}: trace {va}, replay {vb}"));
        }
    }
    if a.fields.len() != b.fields.len() {
        return Some("fields".into());
    }
    if a.payload != b.payload {
        let at = a
            .payload
            .iter()
            .zip(&b.payload)
            .position(|(x, y)| x != y)
            .unwrap_or(a.payload.len().min(b.payload.len()));
        // The bytes around it: as text when they are, else in hex.
        let around = |p: &[u8]| {
            let from = at.saturating_sub(4).min(p.len());
            let part = &p[from..(at + 4).min(p.len())];
            if part.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                format!("\"{}\"", String::from_utf8_lossy(part))
            } else {
                part.iter().map(|b| format!("{b:02x}")).collect::<String>()
            }
        };
        return Some(format!(
            "payload byte {at}: trace {}, replay {}",
            around(&a.payload),
            around(&b.payload)
        ));
    }
    None
}

/// The origin named by a comment (`out cpu=2` → `cpu=2`).
pub fn origin_of(comment: &str) -> String {
    comment
        .split(' ')
        .nth(1)
        .map_or_else(|| "?".to_string(), str::to_string)
}

/// Compares the trace's outbound frames with the replay's, stream by
/// stream; every difference, first frame first.
pub fn compare_out(trace: &[Placed], replay: &[Placed]) -> Vec<Divergence> {
    let mut streams: BTreeMap<&Stream, (Vec<&Placed>, Vec<&Placed>)> = BTreeMap::new();
    for p in trace {
        streams.entry(&p.decoded.stream).or_default().0.push(p);
    }
    for p in replay {
        streams.entry(&p.decoded.stream).or_default().1.push(p);
    }
    let mut out = Vec::new();
    for (t, r) in streams.values() {
        for i in 0..t.len().max(r.len()) {
            let (a, b) = (t.get(i), r.get(i));
            let field = match (a, b) {
                (Some(a), Some(b)) => match first_difference(&a.decoded, &b.decoded) {
                    Some(f) => f,
                    None => continue,
                },
                (Some(_), None) => "missing in the replay".to_string(),
                (None, Some(_)) => "not in the trace".to_string(),
                (None, None) => continue,
            };
            let comment = |p: &&Placed| {
                p.decoded
                    .fields
                    .iter()
                    .find(|(k, _)| *k == "comment")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            out.push(Divergence {
                frame: a.or(b).map_or(0, |p| p.frame),
                dir: Direction::Out,
                origin: origin_of(&a.or(b).map(comment).unwrap_or_default()),
                field,
                trace: a.map(|p| (p.decoded.short.clone(), full(&p.decoded))),
                replay: b.map(|p| (p.decoded.short.clone(), full(&p.decoded))),
            });
        }
    }
    out.sort_by_key(|d| d.frame);
    out
}
