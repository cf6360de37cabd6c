//! Remote abuse (issue 15): what one hostile peer can make a connection
//! do must stay bounded. Each test is a packet trace, the peer's segments
//! crafted with pnet, and checks a bound on the work or the output.

#[macro_use]
mod common;

use common::{Spec, H, OUR_ISS, PEER_ISS};
use pnet_packet::tcp::TcpFlags;
use std::time::Instant;
use vnic_stack::{ReplyLimiter, TcpConfig, Unlimited};

/// A limiter with `n` replies left.
struct Budget(u32);

impl ReplyLimiter for Budget {
    fn allow(&mut self, _now: Instant) -> bool {
        let ok = self.0 > 0;
        self.0 = self.0.saturating_sub(1);
        ok
    }
}

/// The peer sends `spec`; replies to invalid segments ask `limiter`.
fn send_limited(h: &mut H, spec: Spec, limiter: &mut dyn ReplyLimiter) {
    let bytes = common::craft(&spec, h.tuple.remote, h.tuple.local);
    let seg = vnic_stack::parse(h.tuple.remote.ip(), h.tuple.local.ip(), &bytes).unwrap();
    h.conn.on_segment_limited(h.now, &seg, limiter);
}

/// The peer's next sequence number right after the handshake.
const P: u32 = PEER_ISS + 1;
/// Our next sequence number right after the handshake.
const U: u32 = OUR_ISS + 1;

/// One-byte segments in descending order across the whole receive window,
/// then the byte at RCV.NXT: every byte is delivered once and in order,
/// and the receive buffer copies each byte a bounded number of times (in
/// once, out once), not once per later arrival (quadratic).
#[test]
fn reassembly_descending_one_byte_segments_cost_linear_copies() {
    let mut h = H::established_with(TcpConfig::default(), 1460);
    let wnd = 65535u32;
    for i in (1..wnd).rev() {
        h.send(Spec::new(TcpFlags::ACK).seq(P + i).data(&[i as u8]));
    }
    h.recv_all();
    assert_eq!(h.conn.recv_available(), 0);
    send!(h, ACK, seq = P, data = &[0u8]);
    let got = h.read_all();
    assert_eq!(got.len(), wnd as usize);
    assert!(got.iter().enumerate().all(|(i, &b)| b == i as u8));
    let st = h.conn.stats();
    assert_eq!(st.bytes_in, u64::from(wnd));
    assert!(
        st.recv_bytes_copied <= 2 * u64::from(wnd),
        "{} bytes copied for {} received",
        st.recv_bytes_copied,
        wnd
    );
}

/// Linux's tcp_min_snd_mss (CVE-2019-11479): a peer's MSS option below 48
/// is raised to 48, so a peer cannot make us send one byte per segment.
#[test]
fn min_snd_mss_peer_mss_of_one_is_raised_to_48() {
    let mut h = H::established_with(TcpConfig::default(), 1);
    assert_eq!(h.conn.send_mss(), 48);
    h.conn.set_nodelay(true);
    assert_eq!(h.conn.send(&[7u8; 1000]), 1000);
    let out = h.recv_all();
    assert!(!out.is_empty());
    for (i, o) in out.iter().enumerate() {
        assert_eq!(o.payload.len(), 48, "segment {i}: {o:?}");
        assert_eq!(o.seq, U + 48 * i as u32);
    }
}

/// RFC 9293 3.10.7.4 ACKs for unacceptable segments and RFC 5961 challenge
/// ACKs are sent only while the caller's limiter allows: a blind flood of
/// such segments cannot make a processor send a frame for each.
#[test]
fn replies_to_invalid_segments_are_sent_only_if_the_limiter_allows() {
    let mut h = H::established();
    let mut budget = Budget(2);
    // Out of window, in-window RST not at RCV.NXT, SYN, ACK of unsent data.
    let invalid = [
        Spec::new(TcpFlags::ACK).seq(P + 1_000_000).data(b"x"),
        Spec::new(TcpFlags::RST).seq(P + 100),
        Spec::new(TcpFlags::SYN).seq(P + 5),
        Spec::new(TcpFlags::ACK).seq(P).ack(U + 100_000),
    ];
    let mut sent = 0;
    for _ in 0..3 {
        for spec in invalid.iter().cloned() {
            send_limited(&mut h, spec, &mut budget);
            sent += h.recv_all().len();
        }
    }
    assert_eq!(sent, 2, "the budget of two replies");
    assert_eq!(h.conn.stats().replies_limited, 10);
    // Valid data is acknowledged whatever the budget says.
    send_limited(
        &mut h,
        Spec::new(TcpFlags::ACK).seq(P + 5).data(b"gap"),
        &mut budget,
    );
    recv!(h, ACK, ack = P);
    send_limited(
        &mut h,
        Spec::new(TcpFlags::ACK).seq(P + 1_000_000),
        &mut Unlimited,
    );
    recv!(h, ACK, ack = P);
}

/// A retransmission of data already received (our ACK was lost) is not an
/// invalid segment: its ACK goes out whatever the limiter says, as long as
/// it lies within one receive buffer below RCV.NXT (a blind attacker
/// guessing that range is as unlikely as guessing the window).
#[test]
fn recent_duplicate_is_acked_even_when_the_reply_budget_is_spent() {
    let mut h = H::established();
    send!(h, ACK, seq = P, data = b"hello");
    h.advance_ms(40);
    recv!(h, ACK, ack = P + 5);
    let mut none = Budget(0);
    send_limited(
        &mut h,
        Spec::new(TcpFlags::ACK).seq(P).data(b"hello"),
        &mut none,
    );
    recv!(h, ACK, ack = P + 5);
    // Far below RCV.NXT: an invalid segment, refused.
    send_limited(
        &mut h,
        Spec::new(TcpFlags::ACK)
            .seq(P.wrapping_sub(10_000_000))
            .data(b"x"),
        &mut none,
    );
    recv_nothing!(h);
    assert_eq!(h.conn.stats().replies_limited, 1);
}

/// A peer with a tiny MSS and a huge window gets at most 512 segments in
/// flight (cwnd is capped at 512 segments): each segment draws an ACK that
/// the processor must handle, so a peer that makes segments small must not
/// also make them many. With the default buffers a peer with MSS 536 or
/// more never meets the cap (256 KiB is 489 such segments).
#[test]
fn flight_is_capped_at_512_segments() {
    let syn = Spec::new(TcpFlags::SYN).mss(1).wscale(7);
    let mut h = H::established_spec(TcpConfig::default(), syn);
    h.conn.set_nodelay(true);
    let data = vec![1u8; 256 * 1024];
    let mut queued = h.conn.send(&data);
    let mut most = 0usize;
    for _ in 0..30 {
        let out = h.recv_all();
        let ends: Vec<u32> = out
            .iter()
            .filter(|o| !o.payload.is_empty())
            .map(|o| o.seq.wrapping_add(o.payload.len() as u32))
            .collect();
        most = most.max(ends.len());
        // An ACK for every segment (slow start at full speed).
        for e in ends {
            send!(h, ACK, ack = e, win = 65535);
        }
        queued += h.conn.send(&data[..h.conn.send_capacity().min(data.len())]);
    }
    assert!(queued > 256 * 1024);
    assert!(most <= 512, "{most} segments sent in one window");
    assert!(most >= 256, "cwnd grew: {most}");
}
