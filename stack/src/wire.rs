//! The TCP segment at the edge: parse the bytes of one IP payload into a
//! reduced [`Segment`] (checksum verified, impossible headers rejected,
//! options decoded) and emit a [`Segment`] back to bytes.
//!
//! The header itself is read and written with `etherparse`; the options are
//! decoded here because RFC 9293 3.1 requires unknown options to be skipped
//! by their length, where etherparse stops with an error.

use std::net::{IpAddr, Ipv6Addr};

use etherparse::{TcpHeader, TcpSlice};

use crate::payload::Payload;
use crate::seq::SeqNumber;

/// The one control flag a valid segment can carry besides ACK and PSH.
///
/// It exists so the state machine matches on one value instead of testing
/// flag booleans, and so SYN+FIN, SYN+RST and RST+FIN cannot be represented.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Control {
    /// No SYN, FIN or RST.
    None,
    /// SYN: opens a connection; occupies one sequence number.
    Syn,
    /// FIN: the sender has no more data; occupies one sequence number.
    Fin,
    /// RST: abort the connection.
    Rst,
}

/// The TCP options the stack understands (RFC 9293, RFC 7323, RFC 2018).
///
/// It exists so the handshake can negotiate MSS, window scaling, SACK and
/// timestamps from decoded values; unknown options are skipped at parse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size the sender can receive (SYN only).
    pub mss: Option<u16>,
    /// Window scale shift (RFC 7323), clamped to 14 at parse (SYN only).
    pub window_scale: Option<u8>,
    /// The sender accepts SACK blocks (RFC 2018; SYN only).
    pub sack_permitted: bool,
    /// `(TSval, TSecr)` of the timestamps option (RFC 7323).
    pub timestamps: Option<(u32, u32)>,
    /// SACK blocks `(left, right)`; at most 4.
    pub sack_blocks: Vec<(SeqNumber, SeqNumber)>,
}

/// One TCP segment in the reduced form the state machine works on.
///
/// It exists so that everything about the wire (flags, offsets, checksums,
/// option encodings) is dealt with once, at the edge, and the state machine
/// only sees segments that could have come from a valid TCP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Sender's port.
    pub src_port: u16,
    /// Receiver's port.
    pub dst_port: u16,
    /// SEG.SEQ.
    pub seq: SeqNumber,
    /// SEG.ACK; `Some` iff the ACK flag is set.
    pub ack: Option<SeqNumber>,
    /// SYN, FIN, RST or none.
    pub control: Control,
    /// The PSH flag (informational; we deliver data as it arrives anyway).
    pub psh: bool,
    /// SEG.WND as carried in the header, before window scaling.
    pub window: u16,
    /// Decoded options.
    pub options: TcpOptions,
    /// Segment text.
    pub payload: Payload,
}

/// Why [`parse`] refused some bytes.
///
/// It exists so the adapter can count each kind of bad input separately
/// (see [`WireError::kind`]) and drop it without a panic.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than a minimal TCP header.
    #[error("TCP segment shorter than its header")]
    Truncated,
    /// Data offset below 5 words or past the end of the segment.
    #[error("TCP data offset out of range")]
    BadDataOffset,
    /// The checksum over pseudo header, header and payload does not match.
    #[error("TCP checksum mismatch")]
    BadChecksum,
    /// An impossible combination of flags (SYN+FIN, SYN+RST, RST+FIN).
    #[error("impossible TCP flag combination")]
    BadFlags,
    /// A malformed option (bad length, running past the header, MSS 0).
    #[error("malformed TCP option")]
    BadOption,
    /// Source or destination port 0.
    #[error("TCP port 0")]
    BadPort,
    /// The pseudo header mixes an IPv4 and an IPv6 address.
    #[error("pseudo header mixes IPv4 and IPv6")]
    AddressFamily,
}

impl WireError {
    /// A short, stable name for the counter of this kind of drop.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::Truncated => "tcp-truncated",
            WireError::BadDataOffset => "bad-tcp-data-offset",
            WireError::BadChecksum => "bad-tcp-checksum",
            WireError::BadFlags => "bad-tcp-flags",
            WireError::BadOption => "bad-tcp-option",
            WireError::BadPort => "bad-tcp-port",
            WireError::AddressFamily => "tcp-address-family",
        }
    }
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_WSCALE: u8 = 3;
const OPT_SACK_PERMITTED: u8 = 4;
const OPT_SACK: u8 = 5;
const OPT_TIMESTAMPS: u8 = 8;

/// Parses and validates the TCP bytes (header+payload) of one IP packet
/// whose pseudo header is (src, dst): checksum verified, flags sane, options parsed.
pub fn parse(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> Result<Segment, WireError> {
    let (mut seg, text) = parse_header(src, dst, tcp, true)?;
    seg.payload = Payload::from(tcp[text..].to_vec());
    Ok(seg)
}

/// [`parse`] without taking the text: the segment comes with an empty
/// payload, and the offset in `tcp` where its text starts, for a caller
/// that copies the text into a buffer of its own or hands it over in the
/// buffer it was read into ([`Payload::in_buffer`]) — the RX path. With
/// `verify` false every check but the checksum is made: for segments
/// whose checksum the link vouched for (a TAP with offload marks the
/// kernel's own segments, whose checksum field holds only the
/// pseudo-header sum); the addresses must still be of one family.
pub fn parse_header(
    src: IpAddr,
    dst: IpAddr,
    tcp: &[u8],
    verify: bool,
) -> Result<(Segment, usize), WireError> {
    if tcp.len() < TcpHeader::MIN_LEN {
        return Err(WireError::Truncated);
    }
    let slice = TcpSlice::from_slice(tcp).map_err(|_| WireError::BadDataOffset)?;
    if verify {
        verify_checksum(src, dst, &slice)?;
    } else if src.is_ipv4() != dst.is_ipv4() {
        return Err(WireError::AddressFamily);
    }
    let text = tcp.len() - slice.payload().len();
    Ok((segment_of(&slice)?, text))
}

/// Checks the checksum of `slice` over the pseudo header of (src, dst).
fn verify_checksum(src: IpAddr, dst: IpAddr, slice: &TcpSlice<'_>) -> Result<(), WireError> {
    let computed = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => slice.calc_checksum_ipv4(s.octets(), d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => slice.calc_checksum_ipv6(s.octets(), d.octets()),
        _ => return Err(WireError::AddressFamily),
    }
    .map_err(|_| WireError::Truncated)?;
    let carried = slice.checksum();
    // 0x0000 and 0xffff are the same value in one's complement arithmetic.
    let same = computed == carried
        || (computed == 0 && carried == 0xffff)
        || (computed == 0xffff && carried == 0);
    if !same {
        return Err(WireError::BadChecksum);
    }
    Ok(())
}

/// The reduced segment of a header whose checksum is settled: ports,
/// flags and options checked.
fn segment_of(slice: &TcpSlice<'_>) -> Result<Segment, WireError> {
    if slice.source_port() == 0 || slice.destination_port() == 0 {
        return Err(WireError::BadPort);
    }

    let flags = (slice.fin() as u8 * FIN)
        | (slice.syn() as u8 * SYN)
        | (slice.rst() as u8 * RST)
        | (slice.psh() as u8 * PSH)
        | (slice.ack() as u8 * ACK);
    let control = match flags & (SYN | FIN | RST) {
        0 => Control::None,
        SYN => Control::Syn,
        FIN => Control::Fin,
        RST => Control::Rst,
        _ => return Err(WireError::BadFlags),
    };

    let options = parse_options(slice.options())?;

    Ok(Segment {
        src_port: slice.source_port(),
        dst_port: slice.destination_port(),
        seq: SeqNumber(slice.sequence_number()),
        ack: (flags & ACK != 0).then(|| SeqNumber(slice.acknowledgment_number())),
        control,
        psh: flags & PSH != 0,
        window: slice.window_size(),
        options,
        payload: Payload::new(),
    })
}

/// Decodes the option bytes of a header. Unknown kinds are skipped by their
/// length (RFC 9293 3.1); a known kind with the wrong length, a length byte
/// below 2 or past the end, and MSS 0 are errors.
fn parse_options(mut bytes: &[u8]) -> Result<TcpOptions, WireError> {
    let mut opts = TcpOptions::default();
    while let Some((&kind, rest)) = bytes.split_first() {
        match kind {
            OPT_END => break,
            OPT_NOP => {
                bytes = rest;
                continue;
            }
            _ => {}
        }
        let len = *rest.first().ok_or(WireError::BadOption)? as usize;
        if len < 2 || len > bytes.len() {
            return Err(WireError::BadOption);
        }
        let body = bytes.get(2..len).ok_or(WireError::BadOption)?;
        match kind {
            OPT_MSS => {
                let v = u16::from_be_bytes(body.try_into().map_err(|_| WireError::BadOption)?);
                if v == 0 {
                    return Err(WireError::BadOption);
                }
                opts.mss = Some(v);
            }
            OPT_WSCALE => {
                let [shift] = body else {
                    return Err(WireError::BadOption);
                };
                // RFC 7323 2.3: a shift above 14 is treated as 14.
                opts.window_scale = Some((*shift).min(14));
            }
            OPT_SACK_PERMITTED => {
                if !body.is_empty() {
                    return Err(WireError::BadOption);
                }
                opts.sack_permitted = true;
            }
            OPT_SACK => {
                if body.is_empty() || body.len() % 8 != 0 || body.len() > 32 {
                    return Err(WireError::BadOption);
                }
                opts.sack_blocks = body
                    .chunks_exact(8)
                    .map(|c| {
                        let l = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                        let r = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
                        (SeqNumber(l), SeqNumber(r))
                    })
                    .collect();
            }
            OPT_TIMESTAMPS => {
                if body.len() != 8 {
                    return Err(WireError::BadOption);
                }
                let val = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let ecr = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                opts.timestamps = Some((val, ecr));
            }
            _ => {} // unknown: skipped by its length
        }
        bytes = bytes.get(len..).unwrap_or_default();
    }
    Ok(opts)
}

/// Encodes options, NOP-aligned, into at most 40 bytes (SACK blocks that
/// would not fit are left out).
/// Encoded TCP options, on the stack: at most 40 bytes, so emitting a
/// segment allocates nothing.
struct OptionBytes {
    bytes: [u8; 40],
    len: usize,
}

impl OptionBytes {
    fn extend_from_slice(&mut self, b: &[u8]) {
        self.bytes[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The options of `opts` in wire form, padded to a multiple of 4. SACK
/// blocks get whatever room the others leave (up to 4).
fn encode_options(opts: &TcpOptions) -> OptionBytes {
    let mut out = OptionBytes {
        bytes: [0; 40],
        len: 0,
    };
    if let Some(mss) = opts.mss {
        out.extend_from_slice(&[OPT_MSS, 4]);
        out.extend_from_slice(&mss.to_be_bytes());
    }
    if let Some(ws) = opts.window_scale {
        out.extend_from_slice(&[OPT_NOP, OPT_WSCALE, 3, ws]);
    }
    if opts.sack_permitted {
        out.extend_from_slice(&[OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2]);
    }
    if let Some((val, ecr)) = opts.timestamps {
        out.extend_from_slice(&[OPT_NOP, OPT_NOP, OPT_TIMESTAMPS, 10]);
        out.extend_from_slice(&val.to_be_bytes());
        out.extend_from_slice(&ecr.to_be_bytes());
    }
    let room = 40usize.saturating_sub(out.len + 4) / 8;
    let blocks = opts.sack_blocks.len().min(room).min(4);
    if blocks > 0 {
        out.extend_from_slice(&[OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * blocks as u8]);
        for (l, r) in &opts.sack_blocks[..blocks] {
            out.extend_from_slice(&l.0.to_be_bytes());
            out.extend_from_slice(&r.0.to_be_bytes());
        }
    }
    while out.len & 3 != 0 {
        out.extend_from_slice(&[OPT_END]);
    }
    out
}

impl Segment {
    /// SEG.LEN: payload octets plus one each for SYN and FIN.
    pub fn seg_len(&self) -> usize {
        self.payload.len() + matches!(self.control, Control::Syn | Control::Fin) as usize
    }

    /// The reply RFC 9293 prescribes for a segment that reaches no connection
    /// (CLOSED state): None for an incoming RST; RST seq=SEG.ACK if ACK set;
    /// else RST|ACK seq=0 ack=SEG.SEQ+SEG.LEN. Ports swapped.
    pub fn rst_reply(&self) -> Option<Segment> {
        if self.control == Control::Rst {
            return None;
        }
        let (seq, ack) = match self.ack {
            Some(ack) => (ack, None),
            None => (SeqNumber(0), Some(self.seq + self.seg_len())),
        };
        Some(Segment {
            src_port: self.dst_port,
            dst_port: self.src_port,
            seq,
            ack,
            control: Control::Rst,
            psh: false,
            window: 0,
            options: TcpOptions::default(),
            payload: Payload::new(),
        })
    }

    /// Appends TCP header+options+payload with a correct checksum over the
    /// IPv4 or IPv6 pseudo header of (src, dst). Panics never.
    pub fn emit(&self, src: IpAddr, dst: IpAddr, out: &mut Vec<u8>) {
        let mut header = self.tcp_header();
        let checksum = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                header.calc_checksum_ipv4_raw(s.octets(), d.octets(), &self.payload)
            }
            (s, d) => {
                header.calc_checksum_ipv6_raw(to_v6(s).octets(), to_v6(d).octets(), &self.payload)
            }
        };
        header.checksum = checksum.unwrap_or(0);
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(&self.payload);
    }

    /// Like [`Segment::emit`] but with the checksum field left 0, for a
    /// device that computes it (a TAP with checksum offload): the bytes
    /// of the payload are then touched once, by the copy.
    pub fn emit_without_checksum(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tcp_header().to_bytes());
        out.extend_from_slice(&self.payload);
    }

    fn tcp_header(&self) -> TcpHeader {
        let mut header = TcpHeader::new(self.src_port, self.dst_port, self.seq.0, self.window);
        header.acknowledgment_number = self.ack.map_or(0, |a| a.0);
        header.ack = self.ack.is_some();
        header.psh = self.psh;
        header.syn = self.control == Control::Syn;
        header.fin = self.control == Control::Fin;
        header.rst = self.control == Control::Rst;
        // Cannot fail: encode_options never writes more than 40 bytes.
        let _ = header.set_options_raw(encode_options(&self.options).as_slice());
        header
    }

    /// Length in bytes of the header (with options) that [`Segment::emit`]
    /// writes: lets the caller size the IP header before emitting.
    pub fn header_len(&self) -> usize {
        TcpHeader::MIN_LEN + encode_options(&self.options).len
    }

    /// A copy of the header fields with an empty payload (no allocation).
    pub fn header_only(&self) -> Segment {
        Segment {
            src_port: self.src_port,
            dst_port: self.dst_port,
            seq: self.seq,
            ack: self.ack,
            control: self.control,
            psh: self.psh,
            window: self.window,
            options: self.options.clone(),
            payload: Payload::new(),
        }
    }
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_option_is_skipped() {
        // kind 30 (MPTCP) len 4, then MSS 1460.
        let opts = parse_options(&[30, 4, 0, 0, 2, 4, 0x05, 0xb4]).unwrap();
        assert_eq!(opts.mss, Some(1460));
    }

    #[test]
    fn option_length_errors() {
        assert_eq!(parse_options(&[30, 1, 0, 0]), Err(WireError::BadOption));
        assert_eq!(parse_options(&[30, 0, 0, 0]), Err(WireError::BadOption));
        assert_eq!(parse_options(&[2, 4, 0]), Err(WireError::BadOption));
        assert_eq!(parse_options(&[2]), Err(WireError::BadOption));
        assert_eq!(parse_options(&[2, 4, 0, 0]), Err(WireError::BadOption));
        assert_eq!(parse_options(&[3, 4, 1, 1]), Err(WireError::BadOption));
        assert_eq!(
            parse_options(&[5, 9, 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::BadOption)
        );
    }

    #[test]
    fn parse_header_unverified_skips_only_the_checksum() {
        use std::net::Ipv4Addr;
        let (src, dst) = (
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        );
        let seg = Segment {
            src_port: 40000,
            dst_port: 7,
            seq: SeqNumber(1),
            ack: Some(SeqNumber(2)),
            control: Control::None,
            psh: false,
            window: 100,
            options: TcpOptions::default(),
            payload: vec![7; 3000].into(),
        };
        let mut b = Vec::new();
        seg.emit(src, dst, &mut b);
        b[16] ^= 0xff; // the checksum field: now only "partial"
        assert_eq!(parse(src, dst, &b), Err(WireError::BadChecksum));
        let (head, text) = parse_header(src, dst, &b, false).expect("trusted");
        assert_eq!(&b[text..], &[7; 3000][..]);
        assert_eq!(
            Segment {
                payload: vec![7; 3000].into(),
                ..head
            },
            seg
        );
        b[13] |= SYN | FIN;
        assert_eq!(
            parse_header(src, dst, &b, false).map(|_| ()),
            Err(WireError::BadFlags)
        );
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(
            parse_header(src, v6, &b, false).map(|_| ()),
            Err(WireError::AddressFamily)
        );
    }

    #[test]
    fn options_round_trip() {
        let opts = TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some((1, 2)),
            sack_blocks: vec![(SeqNumber(10), SeqNumber(20))],
        };
        let enc = encode_options(&opts);
        let buf = enc.as_slice();
        assert!(buf.len() <= 40 && buf.len() & 3 == 0);
        assert_eq!(parse_options(buf).unwrap(), opts);
    }
}
