//! `Connection::recv_slices` / `recv_consume`: reading in place must be
//! reading. Two connections get the same pnet-crafted segments (in order,
//! out of order, across the ring's wrap); one app reads with `recv`, the
//! other looks at the lent slices and drops them with `recv_consume`. They
//! must see the same bytes and send the same segments (window updates
//! included).

#[macro_use]
mod common;

use common::{Spec, H, PEER_ISS};
use pnet_packet::tcp::TcpFlags;
use vnic_stack::TcpConfig;

const P: u32 = PEER_ISS + 1;

fn conn() -> H {
    let cfg = TcpConfig {
        recv_buffer: 64 * 1024,
        ..TcpConfig::default()
    };
    H::established_with(cfg, 1460)
}

fn data(from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn reading_in_place_is_reading() {
    let mut a = conn();
    let mut b = conn();
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    let mut off = 0usize;
    let mut updates = 0;
    for round in 0..200usize {
        // Segments of varying sizes; every fifth round two arrive swapped.
        let len = 300 + (round * 577) % 1160;
        let (first, second) = ((off, len), (off + len, len / 2 + 1));
        let order = if round % 5 == 4 {
            [second, first]
        } else {
            [first, second]
        };
        for (at, n) in order {
            let spec = Spec::new(TcpFlags::ACK | TcpFlags::PSH)
                .seq(P + at as u32)
                .data(&data(at, n));
            a.send(spec.clone());
            b.send(spec);
        }
        off += first.1 + second.1;
        assert_eq!(a.recv_all(), b.recv_all(), "round {round}: what each sent");
        // The first 30 rounds fill the buffer past half (the window shrinks
        // below half: reading then owes the peer a window update); later
        // rounds read part of it (every third round nothing).
        if round >= 30 && round % 3 != 2 {
            let want = a.conn.recv_available() * 3 / 4 + 1;
            let mut buf = vec![0u8; want];
            let n = a.conn.recv(&mut buf);
            got_a.extend_from_slice(&buf[..n]);
            let [x, y] = b.conn.recv_slices();
            let lent: Vec<u8> = [x, y].concat();
            assert_eq!(lent.len(), b.conn.recv_available(), "all ready bytes lent");
            let take = want.min(lent.len());
            got_b.extend_from_slice(&lent[..take]);
            assert_eq!(b.conn.recv_consume(take), n);
        }
        let sent = a.recv_all();
        if round >= 30 && !sent.is_empty() {
            updates += 1;
        }
        assert_eq!(sent, b.recv_all(), "round {round}: window updates");
        a.advance_ms(1);
        b.advance_ms(1);
        assert_eq!(
            a.recv_all(),
            b.recv_all(),
            "round {round}: after the clock moved"
        );
    }
    assert!(got_a.len() > 50_000, "{}", got_a.len());
    assert!(got_a == got_b, "the same bytes, in the same order");
    assert_eq!(got_a, data(0, got_a.len()));
    assert_eq!(b.conn.recv_consume(usize::MAX), a.conn.recv_available());
    assert!(updates > 0, "window updates were owed and sent");
}

/// Large segments handed over in the buffers they were read into are
/// kept there by the receive buffer instead of copied. Two connections
/// get the same segments, one as owned text, the other in frame buffers
/// (in order, out of order, small ones between, some read while others
/// wait): they must hand the app the same bytes, send the same segments,
/// and give each kept buffer back once it is read.
#[test]
fn kept_segments_read_like_copied_ones() {
    let cfg = TcpConfig {
        recv_buffer: 256 * 1024,
        ..TcpConfig::default()
    };
    let mut a = H::established_with(cfg.clone(), 1460);
    let mut b = H::established_with(cfg, 1460);
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let mut off = 0usize;
    let mut spent = 0;
    for round in 0..120usize {
        // 16-40 KiB segments (TSO sizes), a small one every third round,
        // and every seventh round the next two arrive swapped.
        let big = 16 * 1024 + (round * 7919) % (24 * 1024);
        let small = if round % 3 == 0 { 700 } else { 0 };
        let mut segs = vec![(off, big)];
        if small > 0 {
            segs.push((off + big, small));
        }
        let next = off + big + small;
        segs.push((next, 20_000));
        if round % 7 == 6 {
            segs.swap(0, 1);
        }
        off = next + 20_000;
        for (at, n) in segs {
            let spec = Spec::new(TcpFlags::ACK)
                .seq(P + at as u32)
                .data(&data(at, n));
            a.send(spec.clone());
            b.send_in_frame(spec);
        }
        assert_eq!(a.recv_all(), b.recv_all(), "round {round}: what each sent");
        // Read it all (as discard and the proxy do), a by copy, b in place
        // (in pieces, as the slices come); every fourth round only most of
        // it, and b copies too (what stays waits in the ring or kept).
        let all = a.conn.recv_available();
        let want = if round % 4 == 3 { all * 4 / 5 + 1 } else { all };
        let mut buf = vec![0u8; want];
        let n = a.conn.recv(&mut buf);
        got_a.extend_from_slice(&buf[..n]);
        if round % 4 == 3 {
            let mut buf = vec![0u8; want];
            assert_eq!(b.conn.recv(&mut buf), n);
            got_b.extend_from_slice(&buf[..n]);
        } else {
            let mut left = n;
            while left > 0 {
                let [x, y] = b.conn.recv_slices();
                assert!(!x.is_empty(), "bytes ready, none lent");
                let take = left.min(x.len() + y.len());
                let lent = [x, y].concat();
                got_b.extend_from_slice(&lent[..take]);
                assert_eq!(b.conn.recv_consume(take), take);
                left -= take;
            }
        }
        while let Some(buf) = b.conn.take_spent_buffer() {
            assert!(buf.len() >= 16 * 1024, "a frame buffer comes back whole");
            spent += 1;
        }
        assert_eq!(a.conn.recv_available(), b.conn.recv_available());
        assert_eq!(a.recv_all(), b.recv_all(), "round {round}: window updates");
        a.advance_ms(1);
        b.advance_ms(1);
        assert_eq!(a.recv_all(), b.recv_all(), "round {round}: after the clock");
    }
    assert_eq!(got_a, got_b, "the same bytes, in the same order");
    assert_eq!(got_a, data(0, got_a.len()));
    assert!(got_a.len() > 3_000_000, "{}", got_a.len());
    assert!(spent > 50, "kept buffers came back: {spent}");
}
