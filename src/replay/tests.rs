//! Unit tests of the replay's pieces that need no vnic: the comparison's
//! rules and the placing of batches that sent nothing.

use super::compare::{decision, decode, first_difference};
use super::plan::{plan, recorded, turns};
use super::trace::{Trace, TraceFrame};
use std::time::Duration;
use vnic_adapter::trace::Direction;

/// A TCP frame 10.0.0.2:7 > 10.0.0.1:4000 (as vnic sends it) with
/// `ident` as its IPv4 identification and `tsval` in a timestamp option.
fn frame(ident: u16, tsval: u32, window: u16, text: &[u8]) -> Vec<u8> {
    let mut tcp = etherparse::TcpHeader::new(7, 4000, 1000, window);
    tcp.ack = true;
    tcp.acknowledgment_number = 2000;
    tcp.set_options(&[etherparse::TcpOptionElement::Timestamp(tsval, 77)])
        .expect("options");
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .tcp_header(tcp);
    let mut out = Vec::new();
    b.write(&mut out, text).expect("frame");
    // The identification (bytes 18-19): not compared.
    out[18..20].copy_from_slice(&ident.to_be_bytes());
    out
}

#[test]
fn ip_ids_tsvals_and_turn_stamps_are_left_out_and_nothing_else() {
    let a = decode(&frame(1, 100, 500, b"hi"), "out cpu=1 t=5 in=2 b=1");
    let b = decode(&frame(9, 999, 500, b"hi"), "out cpu=1 t=8 in=3 b=2");
    assert_eq!(first_difference(&a, &b), None);
    let c = decode(&frame(1, 100, 250, b"hi"), "out cpu=1");
    let d = first_difference(&a, &c).expect("the window differs");
    assert!(d.starts_with("win: trace 500, replay 250"), "{d}");
    let e = decode(&frame(1, 100, 500, b"ho"), "out cpu=1");
    let d = first_difference(&a, &e).expect("the text differs");
    assert!(d.starts_with("payload byte 1"), "{d}");
    let f = decode(&frame(1, 100, 500, b"hi"), "out cpu=0");
    assert!(first_difference(&a, &f).is_some_and(|d| d.starts_with("comment")));
    assert_eq!(decision("out cpu=2 t=1 in=2 b=3 gso"), "out cpu=2 gso");
}

fn at(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn seg(number: usize, ms: u64) -> TraceFrame {
    TraceFrame {
        number,
        at: at(ms),
        dir: Direction::In,
        data: Vec::new(),
        original_len: 0,
        comment: "in cpu=0 flow".into(),
    }
}

fn out(number: usize, ms: u64, stamp: &str) -> TraceFrame {
    TraceFrame {
        number,
        at: at(ms),
        dir: Direction::Out,
        data: Vec::new(),
        original_len: 0,
        comment: format!("out cpu=0 {stamp}"),
    }
}

#[test]
fn batches_that_sent_nothing_are_placed_from_the_stamps() {
    // Segments 1, 2 at 10 and 11 ms, each alone (an idle processor); 3
    // and 4 at 30 ms; a turn at 31 ms after 4 segments in 3 batches:
    // two sent nothing, the stamped one took 3 and 4. Then segment 5 at
    // 40 ms and a turn at 200 ms (a timer's: long after it) counting one
    // batch more: 5 went in a batch of its own at its arrival.
    let trace = Trace {
        frames: vec![
            seg(1, 10),
            seg(2, 11),
            seg(3, 30),
            seg(4, 30),
            out(5, 31, "t=31000000 in=4 b=3"),
            seg(6, 40),
            out(7, 200, "t=200000000 in=5 b=4"),
        ],
        ..Trace::default()
    };
    let t = turns(&trace, 1);
    assert_eq!(t[0].len(), 2);
    let p = plan(&trace, &t, Duration::ZERO);
    let ms = |x: u64| x * 1_000_000;
    assert_eq!(p[0], vec![ms(10), ms(11), ms(31), ms(31), ms(40)]);
}

/// A pcapng with one inbound frame, then `bodies` as custom blocks of
/// type `0x40000BAD`, then an outbound frame.
fn with_custom_blocks(bodies: &[Vec<u8>]) -> Vec<u8> {
    use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::blocks::unknown::UnknownBlock;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::DataLink;
    use std::borrow::Cow;
    let mut w = PcapNgWriter::new(Vec::new()).expect("writer");
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0,
        options: vec![],
    })
    .expect("idb");
    let epb = |flags: u32| EnhancedPacketBlock {
        interface_id: 0,
        timestamp: Duration::from_millis(1),
        original_len: 4,
        data: Cow::Owned(vec![1, 2, 3, 4]),
        options: vec![EnhancedPacketOption::Flags(flags)],
    };
    w.write_pcapng_block(epb(1)).expect("in");
    for b in bodies {
        w.write_pcapng_block(UnknownBlock {
            type_: vnic_adapter::trace::batch::CUSTOM_BLOCK,
            length: 0,
            value: Cow::Owned(b.clone()),
        })
        .expect("custom");
    }
    w.write_pcapng_block(epb(2)).expect("out");
    w.into_inner()
}

#[test]
fn batch_records_are_read_a_malformed_one_counted_and_frames_numbered_as_wireshark_does() {
    use vnic_adapter::trace::batch::{BatchRecord, PEN};
    let good = BatchRecord {
        cpu: 1,
        t: 77,
        taken: 2,
        batch: 1,
    };
    let mut bad = PEN.to_le_bytes().to_vec();
    bad.extend_from_slice(b"vnic-batch/1 cpu=1 in=2\0");
    let mut foreign = 99u32.to_le_bytes().to_vec();
    foreign.extend_from_slice(b"else");
    let bytes = with_custom_blocks(&[good.encode(false), bad, foreign]);
    let t = Trace::from_bytes(&bytes).expect("a readable trace");
    assert_eq!(t.batches, vec![good]);
    assert_eq!(t.bad_batches.0, 1);
    let e = t.bad_batches.1.expect("the first error");
    assert!(e.contains("cpu=1 in=2") && !e.contains('\n'), "{e}");
    // Wireshark lists the three custom blocks as records 2 to 4.
    let numbers: Vec<usize> = t.frames.iter().map(|f| f.number).collect();
    assert_eq!(numbers, vec![1, 5]);
}

#[test]
fn recorded_batches_give_each_segment_its_batchs_time_unless_one_is_missing() {
    use vnic_adapter::trace::batch::BatchRecord;
    let rec = |cpu, t, taken, batch| BatchRecord {
        cpu,
        t,
        taken,
        batch,
    };
    let trace = Trace {
        batches: vec![
            rec(0, 10, 1, 1),
            rec(1, 12, 2, 1),
            rec(0, 20, 4, 2),
            // Processor 1's second batch was lost: its third cannot say
            // which segments the second took.
            rec(1, 30, 5, 3),
            rec(0, 40, 5, 3),
        ],
        ..Trace::default()
    };
    let r = recorded(&trace, 3);
    assert_eq!(r[0], Some(vec![10, 20, 20, 20, 40]));
    assert_eq!(r[1], None);
    assert_eq!(r[2], None, "no records: nothing recorded");
    // A record that takes nothing new is not whole either.
    let stuck = Trace {
        batches: vec![rec(0, 10, 1, 1), rec(0, 20, 1, 2)],
        ..Trace::default()
    };
    assert_eq!(recorded(&stuck, 1)[0], None);
}
