//! `wire::parse` against segments crafted by pnet (and against random
//! bytes, which it must never panic on), `Segment::emit` checked by pnet,
//! and `Segment::rst_reply`'s RFC 9293 RST for a segment.

#[macro_use]
mod common;

use std::net::{IpAddr, SocketAddr};

use common::rng::Rng;
use common::{craft, craft_raw, decode, fix_checksum, Spec};
use pnet_packet::tcp::{MutableTcpPacket, TcpFlags};
use pnet_packet::MutablePacket;
use vnic_stack::{parse, Control, Segment, SeqNumber, TcpOptions, WireError};

fn v4() -> (SocketAddr, SocketAddr) {
    (
        "10.0.0.2:40000".parse().unwrap(),
        "10.0.0.1:80".parse().unwrap(),
    )
}

fn v6() -> (SocketAddr, SocketAddr) {
    (
        "[fd00::2]:40000".parse().unwrap(),
        "[fd00::1]:80".parse().unwrap(),
    )
}

fn parse_spec(spec: &Spec, (src, dst): (SocketAddr, SocketAddr)) -> Result<Segment, WireError> {
    let bytes = craft(spec, src, dst);
    parse(src.ip(), dst.ip(), &bytes)
}

/// Bytes with raw option bytes written by hand (padded by the caller).
fn with_options(opts: &[u8]) -> (Vec<u8>, IpAddr, IpAddr) {
    let (src, dst) = v4();
    let spec = Spec::new(TcpFlags::SYN).seq(1);
    let bytes = craft_raw(
        &spec,
        src,
        dst,
        |p| p.packet_mut()[20..20 + opts.len()].copy_from_slice(opts),
        opts.len(),
    );
    (bytes, src.ip(), dst.ip())
}

#[test]
fn parse_reads_pnet_segment_ipv4() {
    let spec = Spec::new(TcpFlags::SYN | TcpFlags::ACK)
        .seq(7)
        .ack(9)
        .win(1234)
        .mss(1400)
        .wscale(5)
        .sack_perm(true)
        .data(b"hi");
    let seg = parse_spec(&spec, v4()).unwrap();
    assert_eq!(seg.src_port, 40000);
    assert_eq!(seg.dst_port, 80);
    assert_eq!(seg.seq, SeqNumber(7));
    assert_eq!(seg.ack, Some(SeqNumber(9)));
    assert_eq!(seg.control, Control::Syn);
    assert_eq!(seg.window, 1234);
    assert_eq!(seg.options.mss, Some(1400));
    assert_eq!(seg.options.window_scale, Some(5));
    assert!(seg.options.sack_permitted);
    assert_eq!(&*seg.payload, b"hi");
    assert_eq!(seg.seg_len(), 3);
}

#[test]
fn parse_reads_pnet_segment_ipv6() {
    let spec = Spec::new(TcpFlags::FIN | TcpFlags::ACK | TcpFlags::PSH).data(b"bye");
    let seg = parse_spec(&spec, v6()).unwrap();
    assert_eq!(seg.control, Control::Fin);
    assert!(seg.psh);
    assert_eq!(seg.seg_len(), 4);
}

#[test]
fn bad_checksum_rejected_ipv4() {
    let (src, dst) = v4();
    let mut bytes = craft(&Spec::new(TcpFlags::ACK).data(b"payload"), src, dst);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let err = parse(src.ip(), dst.ip(), &bytes).unwrap_err();
    assert_eq!(err, WireError::BadChecksum);
    assert_eq!(err.kind(), "bad-tcp-checksum");
}

#[test]
fn bad_checksum_rejected_ipv6() {
    let (src, dst) = v6();
    let bytes = craft(&Spec::new(TcpFlags::ACK).data(b"payload"), src, dst);
    // Right bytes, wrong pseudo header: another destination address.
    let other: IpAddr = "fd00::3".parse().unwrap();
    assert_eq!(parse(src.ip(), other, &bytes), Err(WireError::BadChecksum));
    assert!(parse(src.ip(), dst.ip(), &bytes).is_ok());
}

#[test]
fn corrupted_checksum_field_rejected() {
    let (src, dst) = v4();
    let mut bytes = craft(&Spec::new(TcpFlags::ACK), src, dst);
    assert!(parse(src.ip(), dst.ip(), &bytes).is_ok());
    bytes[16] ^= 0xff;
    assert_eq!(
        parse(src.ip(), dst.ip(), &bytes),
        Err(WireError::BadChecksum)
    );
}

fn emit_and_check(seg: &Segment, (src, dst): (SocketAddr, SocketAddr)) -> common::Out {
    let mut bytes = vec![0xaa]; // emit appends
    seg.emit(src.ip(), dst.ip(), &mut bytes);
    assert_eq!(bytes.len(), 1 + seg.header_len() + seg.payload.len());
    decode(&bytes[1..], src.ip(), dst.ip()) // asserts the checksum with pnet
}

fn sample_segment() -> Segment {
    Segment {
        src_port: 80,
        dst_port: 40000,
        seq: SeqNumber(0xfffffff0),
        ack: Some(SeqNumber(12345)),
        control: Control::Syn,
        psh: false,
        window: 29200,
        options: TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some((1, 0)),
            sack_blocks: vec![],
        },
        payload: b"odd-length".to_vec().into(),
    }
}

#[test]
fn emit_checksum_valid_ipv4() {
    let (a, b) = v4();
    let out = emit_and_check(&sample_segment(), (b, a));
    assert_eq!(out.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(out.seq, 0xfffffff0);
    assert_eq!(out.ack, 12345);
    assert_eq!(out.win, 29200);
    assert_eq!(out.mss, Some(1460));
    assert_eq!(out.wscale, Some(7));
    assert_eq!(out.payload, b"odd-length");
}

#[test]
fn emit_checksum_valid_ipv6() {
    let (a, b) = v6();
    let mut seg = sample_segment();
    seg.control = Control::Fin;
    seg.options = TcpOptions::default();
    let out = emit_and_check(&seg, (b, a));
    assert_eq!(out.flags, TcpFlags::FIN | TcpFlags::ACK);
    assert_eq!(seg.header_len(), 20);
}

#[test]
fn emit_then_parse_round_trips() {
    let (a, b) = v6();
    let mut seg = sample_segment();
    seg.options.sack_blocks = vec![(SeqNumber(1), SeqNumber(2))];
    let mut bytes = Vec::new();
    seg.emit(b.ip(), a.ip(), &mut bytes);
    assert_eq!(parse(b.ip(), a.ip(), &bytes).unwrap(), seg);
}

#[test]
fn truncated_header_rejected() {
    let (src, dst) = v4();
    let bytes = craft(&Spec::new(TcpFlags::ACK), src, dst);
    assert_eq!(
        parse(src.ip(), dst.ip(), &bytes[..19]),
        Err(WireError::Truncated)
    );
    assert_eq!(parse(src.ip(), dst.ip(), &[]), Err(WireError::Truncated));
}

#[test]
fn data_offset_below_five_rejected() {
    let (src, dst) = v4();
    let mut bytes = craft(&Spec::new(TcpFlags::ACK).data(b"12345678"), src, dst);
    MutableTcpPacket::new(&mut bytes)
        .unwrap()
        .set_data_offset(4);
    fix_checksum(&mut bytes, src.ip(), dst.ip());
    assert_eq!(
        parse(src.ip(), dst.ip(), &bytes),
        Err(WireError::BadDataOffset)
    );
}

#[test]
fn data_offset_beyond_buffer_rejected() {
    let (src, dst) = v4();
    let mut bytes = craft(&Spec::new(TcpFlags::ACK).data(b"1234"), src, dst);
    MutableTcpPacket::new(&mut bytes)
        .unwrap()
        .set_data_offset(15);
    fix_checksum(&mut bytes, src.ip(), dst.ip());
    assert_eq!(
        parse(src.ip(), dst.ip(), &bytes),
        Err(WireError::BadDataOffset)
    );
}

#[test]
fn impossible_flags_rejected() {
    for flags in [
        TcpFlags::SYN | TcpFlags::FIN,
        TcpFlags::SYN | TcpFlags::RST,
        TcpFlags::RST | TcpFlags::FIN,
        TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST | TcpFlags::ACK,
    ] {
        let err = parse_spec(&Spec::new(flags), v4()).unwrap_err();
        assert_eq!(err, WireError::BadFlags, "flags {flags:#x}");
        assert_eq!(err.kind(), "bad-tcp-flags");
    }
}

#[test]
fn port_zero_rejected() {
    let (src, dst) = v4();
    let src0 = SocketAddr::new(src.ip(), 0);
    let bytes = craft(&Spec::new(TcpFlags::SYN), src0, dst);
    assert_eq!(parse(src.ip(), dst.ip(), &bytes), Err(WireError::BadPort));
}

#[test]
fn malformed_options_rejected() {
    let cases: [&[u8]; 7] = [
        &[30, 0, 1, 1],             // length 0
        &[30, 1, 1, 1],             // length 1
        &[30, 8, 1, 1],             // runs past the header
        &[2, 4, 0, 0],              // MSS 0
        &[2, 3, 1, 0],              // MSS with the wrong length
        &[1, 1, 1, 2],              // MSS kind with no length byte
        &[8, 10, 0, 0, 0, 0, 0, 0], // timestamps cut short by the header
    ];
    for opts in cases {
        let (bytes, src, dst) = with_options(opts);
        let err = parse(src, dst, &bytes).unwrap_err();
        assert_eq!(err, WireError::BadOption, "options {opts:?}");
        assert_eq!(err.kind(), "bad-tcp-option");
    }
}

#[test]
fn unknown_option_skipped_and_end_of_list_honoured() {
    let (bytes, src, dst) = with_options(&[30, 4, 9, 9, 2, 4, 0x05, 0xb4, 0, 0xff, 0xff, 0xff]);
    let seg = parse(src, dst, &bytes).unwrap();
    assert_eq!(seg.options.mss, Some(1460));
}

#[test]
fn rst_reply_to_rst_is_none() {
    let seg = parse_spec(&Spec::new(TcpFlags::RST).seq(5), v4()).unwrap();
    assert_eq!(seg.rst_reply(), None);
}

#[test]
fn rst_reply_to_ack_uses_seg_ack_as_seq() {
    let seg = parse_spec(&Spec::new(TcpFlags::ACK).seq(5).ack(777).data(b"x"), v4()).unwrap();
    let rst = seg.rst_reply().unwrap();
    let (a, b) = v4();
    let out = emit_and_check(&rst, (b, a));
    assert_eq!(out.flags, TcpFlags::RST);
    assert_eq!(out.seq, 777);
    assert_eq!((out.src_port, out.dst_port), (80, 40000));
}

#[test]
fn rst_reply_to_syn_acks_seq_plus_len() {
    let seg = parse_spec(&Spec::new(TcpFlags::SYN).seq(1000), v4()).unwrap();
    let (a, b) = v4();
    let out = emit_and_check(&seg.rst_reply().unwrap(), (b, a));
    assert_eq!(out.flags, TcpFlags::RST | TcpFlags::ACK);
    assert_eq!(out.seq, 0);
    assert_eq!(out.ack, 1001);
}

#[test]
fn rst_reply_to_data_fin_without_ack_counts_data_and_fin() {
    let seg = parse_spec(&Spec::new(TcpFlags::FIN).seq(u32::MAX).data(b"abc"), v6()).unwrap();
    let rst = seg.rst_reply().unwrap();
    assert_eq!(rst.control, Control::Rst);
    assert_eq!(rst.seq, SeqNumber(0));
    assert_eq!(rst.ack, Some(SeqNumber(3))); // wraps: MAX + 4
}

#[test]
fn parse_never_panics_on_random_bytes() {
    let (src, dst) = v4();
    let mut st = Rng(0x1234_5678_9abc_def0);
    for i in 0..20_000 {
        let len = (st.next() % 90) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| st.next() as u8).collect();
        if bytes.len() >= 20 && i % 2 == 0 {
            // Half of them with a valid checksum, to reach the option and
            // flag checks.
            fix_checksum(&mut bytes, src.ip(), dst.ip());
        }
        let _ = parse(src.ip(), dst.ip(), &bytes);
        let _ = parse(src.ip(), "10.0.0.9".parse().unwrap(), &bytes);
        let _ = parse(
            "fd00::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            &bytes,
        );
        let _ = parse(src.ip(), "fd00::2".parse().unwrap(), &bytes);
    }
}
