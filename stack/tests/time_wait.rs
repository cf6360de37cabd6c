//! A TIME-WAIT record (`Connection::time_wait`) answers exactly as the
//! connection it came from: both are fed the same pnet-crafted segments at
//! the same times and every reply, disposition and deadline is compared.

mod common;

use std::time::{Duration, Instant};

use common::rng::Rng;
use common::*;
use pnet_packet::tcp::TcpFlags;
use vnic_stack::{Disposition, ReplyLimiter, Segment, State, TcpConfig, TimeWait, Unlimited};

const P: u32 = PEER_ISS + 1;
const U: u32 = OUR_ISS + 1;

fn cfg() -> TcpConfig {
    TcpConfig {
        time_wait: Duration::from_secs(2),
        challenge_ack_limit: 3,
        ..TcpConfig::default()
    }
}

/// A connection that closed first and is in TIME-WAIT; with `ts` the
/// handshake negotiated timestamps (and SACK and window scaling). The
/// peer's last TSval is 1001.
fn time_wait(ts: bool) -> H {
    let mut h = if ts {
        let syn = Spec::new(TcpFlags::SYN)
            .mss(1460)
            .wscale(7)
            .sack_perm(true)
            .ts((1000, 0));
        H::established_spec(cfg(), syn)
    } else {
        H::established_with(cfg(), 1460)
    };
    let ours = |h: &mut H| {
        h.conn
            .poll_transmit(h.now)
            .and_then(|s| s.options.timestamps)
    };
    h.conn.send(b"bye");
    h.conn.close();
    let fin = ours(&mut h);
    let echo = |v: u32| fin.map(|(tv, _)| (v, tv));
    let mut ack = Spec::new(TcpFlags::ACK).ack(U + 4);
    let mut peer_fin = Spec::new(TcpFlags::FIN | TcpFlags::ACK).ack(U + 4);
    if let Some(e) = echo(1001) {
        ack = ack.ts(e);
        peer_fin = peer_fin.ts(e);
    }
    h.send(ack);
    h.send(peer_fin);
    assert!(h.recv().is_some(), "the FIN's ACK");
    assert_eq!(h.conn.state(), State::TimeWait);
    h.events();
    h
}

/// Parses a pnet-crafted segment from the peer.
fn segment(h: &H, spec: &Spec) -> Segment {
    let bytes = craft(spec, h.tuple.remote, h.tuple.local);
    vnic_stack::parse(h.tuple.remote.ip(), h.tuple.local.ip(), &bytes).expect("parse")
}

/// Our segment as pnet reads it.
fn read(h: &H, seg: Segment) -> Out {
    let mut bytes = Vec::new();
    seg.emit(h.tuple.local.ip(), h.tuple.remote.ip(), &mut bytes);
    decode(&bytes, h.tuple.local.ip(), h.tuple.remote.ip())
}

/// A limiter that allows `n` replies.
struct Budget(u32);
impl ReplyLimiter for Budget {
    fn allow(&mut self, _now: Instant) -> bool {
        let ok = self.0 > 0;
        self.0 = self.0.saturating_sub(1);
        ok
    }
}

/// Feeds `spec` at `now` to both; asserts the same disposition, replies
/// and deadline. The replies, as pnet reads them.
fn both(h: &mut H, tw: &mut TimeWait, spec: &Spec, limit: Option<u32>) -> (Disposition, Vec<Out>) {
    let seg = segment(h, spec);
    let (mut a, mut b) = match limit {
        Some(n) => (Budget(n), Budget(n)),
        None => (Budget(u32::MAX), Budget(u32::MAX)),
    };
    let d_conn = h.conn.on_segment_limited(h.now, &seg, &mut a);
    let d_tw = tw.on_segment(h.now, &seg, &mut b);
    assert_eq!(d_conn, d_tw, "disposition for {spec:?}");
    let from_conn: Vec<Out> = std::iter::from_fn(|| h.conn.poll_transmit(h.now))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|s| read(h, s))
        .collect();
    let from_tw: Vec<Out> = std::iter::from_fn(|| tw.poll_transmit(h.now))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|s| read(h, s))
        .collect();
    assert_eq!(from_conn, from_tw, "replies to {spec:?}");
    if d_conn == Disposition::Handled {
        assert_eq!(
            h.conn.poll_timeout(),
            Some(tw.expires()),
            "deadline after {spec:?}"
        );
    }
    (d_conn, from_tw)
}

#[test]
fn record_is_taken_only_in_time_wait_with_nothing_to_send() {
    let mut h = H::established();
    assert!(h.conn.time_wait().is_none());
    h.conn.close();
    assert!(h.conn.time_wait().is_none(), "FIN-WAIT-1");
    let h = time_wait(true);
    let tw = h.conn.time_wait().expect("record");
    assert_eq!(tw.expires(), h.now + Duration::from_secs(2));
    assert!(tw.memory() < 256, "a record is small: {}", tw.memory());
}

#[test]
fn each_case_answers_as_the_connection() {
    for ts in [false, true] {
        let mut h = time_wait(ts);
        let mut tw = h.conn.time_wait().expect("record");
        let t = |v: u32| if ts { Some((v, 0)) } else { None };
        let with_ts = |s: Spec, v: u32| match t(v) {
            Some(x) => s.ts(x),
            None => s,
        };
        h.advance_ms(100);
        // A retransmitted FIN: ACKed, the wait restarts.
        let fin = with_ts(Spec::new(TcpFlags::FIN | TcpFlags::ACK).ack(U + 4), 1002);
        let (_, out) = both(&mut h, &mut tw, &fin, None);
        assert_eq!(out.len(), 1, "ts={ts}");
        assert_eq!((out[0].seq, out[0].ack), (U + 4, P + 1));
        assert_eq!(tw.expires(), h.now + Duration::from_secs(2));
        h.advance_ms(10);
        let cases = [
            // A pure ACK at RCV.NXT: nothing.
            with_ts(Spec::new(TcpFlags::ACK).seq(P + 1).ack(U + 4), 1003),
            // An ACK of what was never sent: challenge ACK.
            with_ts(Spec::new(TcpFlags::ACK).seq(P + 1).ack(U + 900), 1003),
            // An ACK far below: challenge ACK.
            with_ts(
                Spec::new(TcpFlags::ACK)
                    .seq(P + 1)
                    .ack(U.wrapping_sub(1 << 20)),
                1003,
            ),
            // RSTs, in window and out: ignored (RFC 1337).
            Spec::new(TcpFlags::RST).seq(P + 1),
            Spec::new(TcpFlags::RST | TcpFlags::ACK)
                .seq(P + 5000)
                .ack(U + 4),
            Spec::new(TcpFlags::RST).seq(P + 900_000),
            // SYN|ACK in window: challenge ACK.
            with_ts(
                Spec::new(TcpFlags::SYN | TcpFlags::ACK)
                    .seq(P + 1)
                    .ack(U + 4),
                1003,
            ),
            // Text after the FIN, in window: not taken.
            with_ts(
                Spec::new(TcpFlags::PSH | TcpFlags::ACK)
                    .seq(P + 1)
                    .ack(U + 4)
                    .data(b"x"),
                1004,
            ),
            // Text far out of window: an ACK.
            with_ts(
                Spec::new(TcpFlags::ACK)
                    .seq(P + 5_000_000)
                    .ack(U + 4)
                    .data(b"yy"),
                1004,
            ),
            // An old duplicate of the peer's data: ACKed.
            with_ts(
                Spec::new(TcpFlags::ACK).seq(P - 3).ack(U + 4).data(b"abc"),
                1004,
            ),
        ];
        for spec in &cases {
            both(&mut h, &mut tw, spec, None);
            h.advance_ms(3);
        }
        if ts {
            // PAWS: an older TSval is ACKed and dropped.
            let old = Spec::new(TcpFlags::ACK).seq(P + 1).ack(U + 4).ts((5, 0));
            let (_, out) = both(&mut h, &mut tw, &old, None);
            assert_eq!(out.len(), 1);
        }
        // The challenge budget (3 a second) runs out for both alike.
        for _ in 0..6 {
            both(
                &mut h,
                &mut tw,
                &with_ts(
                    Spec::new(TcpFlags::SYN | TcpFlags::ACK)
                        .seq(P + 1)
                        .ack(U + 4),
                    1005,
                ),
                None,
            );
        }
        // The processor's shared limiter refuses the reply to both.
        h.advance_ms(1500);
        let far = with_ts(Spec::new(TcpFlags::ACK).seq(P + 7_000_000).ack(U + 4), 1006);
        let (_, out) = both(&mut h, &mut tw, &far, Some(0));
        assert!(out.is_empty());
    }
}

#[test]
fn syn_reincarnates_as_rfc_6191_says() {
    for ts in [false, true] {
        // A SYN below RCV.NXT without a newer timestamp: dropped.
        let mut h = time_wait(ts);
        let mut tw = h.conn.time_wait().expect("record");
        let mut low = Spec::new(TcpFlags::SYN).seq(P - 10);
        if ts {
            low = low.ts((900, 0));
        }
        let (d, out) = both(&mut h, &mut tw, &low, None);
        assert_eq!((d, out.len()), (Disposition::Handled, 0));
        // Above RCV.NXT (or a newer TSval): a new incarnation.
        let mut high = Spec::new(TcpFlags::SYN).seq(P + 100_000);
        if ts {
            high = high.ts((2000, 0));
        }
        let (d, _) = both(&mut h, &mut tw, &high, None);
        assert_eq!(d, Disposition::Reincarnate);
    }
}

#[test]
fn random_segments_get_the_same_answers() {
    let mut rng = Rng(0x7157_a17e);
    for round in 0..200 {
        let ts = round % 2 == 1;
        let mut h = time_wait(ts);
        let mut tw = h.conn.time_wait().expect("record");
        for _ in 0..40 {
            let flags = [
                TcpFlags::ACK,
                TcpFlags::ACK,
                TcpFlags::FIN | TcpFlags::ACK,
                TcpFlags::RST,
                TcpFlags::RST | TcpFlags::ACK,
                TcpFlags::SYN | TcpFlags::ACK,
                TcpFlags::PSH | TcpFlags::ACK,
                TcpFlags::SYN,
            ][(rng.next() % 8) as usize];
            let seq_off =
                [0i64, 1, -1, -3, 2, 100, -100_000, 70_000, 5_000_000][(rng.next() % 9) as usize];
            let ack_off = [3i64, 2, 4, 5, 900, -70_000, -5_000_000][(rng.next() % 7) as usize];
            let mut spec = Spec::new(flags)
                .seq((P as i64 + seq_off) as u32)
                .ack((U as i64 + ack_off) as u32)
                .win((rng.next() % 65536) as u16);
            if rng.chance(0.3) {
                let len = 1 + (rng.next() % 20) as usize;
                spec = spec.data(&rng.bytes(len));
            }
            if ts && rng.chance(0.9) {
                let v = 1001u32
                    .wrapping_add((rng.next() % 40) as u32)
                    .wrapping_sub(10);
                spec = spec.ts((v, 0));
            }
            let limit = rng.chance(0.2).then_some((rng.next() % 2) as u32);
            let (d, _) = both(&mut h, &mut tw, &spec, limit);
            if d == Disposition::Reincarnate {
                break;
            }
            let step = rng.next() % 400;
            h.now += Duration::from_millis(step);
            // Neither expires within the test (2 s restarted by FINs) unless
            // the clock passes the deadline: then both end together.
            if h.now >= tw.expires() {
                h.conn.on_timeout(h.now);
                assert!(h.conn.is_closed());
                break;
            }
            h.conn.on_timeout(h.now);
        }
    }
}

#[test]
fn unlimited_limiter_is_the_default() {
    let h = time_wait(true);
    let mut tw = h.conn.time_wait().expect("record");
    let seg = segment(
        &h,
        &Spec::new(TcpFlags::ACK)
            .seq(P + 9_000_000)
            .ack(U + 4)
            .ts((1001, 0)),
    );
    tw.on_segment(h.now, &seg, &mut Unlimited);
    assert!(tw.poll_transmit(h.now).is_some());
    assert!(tw.poll_transmit(h.now).is_none(), "one reply per segment");
}
