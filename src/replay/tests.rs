//! Unit tests of the replay's pieces that need no vnic: the comparison's
//! rules and the placing of batches that sent nothing.

use super::compare::{decision, decode, first_difference};
use super::plan::{plan, turns};
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
