//! Option negotiation (RFC 7323 window scaling and timestamps, RFC 2018
//! SACK), PAWS and TS.Recent, TIME-WAIT reincarnation by timestamp (RFC
//! 6191), SACK block reporting, delayed ACKs, Nagle and receiver SWS
//! avoidance, driven as a packet trace: the peer's segments crafted with
//! pnet, time injected.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Spec, H, OUR_ISS, PEER_ISS};
use pnet_packet::tcp::TcpFlags;
use vnic_stack::{Event, TcpConfig};

const P: u32 = PEER_ISS + 1;
const U: u32 = OUR_ISS + 1;

fn cfg() -> TcpConfig {
    TcpConfig {
        time_wait: Duration::from_secs(2),
        ..TcpConfig::default()
    }
}

fn syn() -> Spec {
    Spec::new(TcpFlags::SYN).mss(1460)
}

/// Established with timestamps (peer TSval 100 in the SYN, 101 after).
fn with_ts() -> H {
    H::established_spec(cfg(), syn().ts((100, 0)))
}

/// Established with SACK and timestamps.
fn with_sack_ts() -> H {
    H::established_spec(cfg(), syn().sack_perm(true).ts((100, 0)))
}

/// Established with SACK only.
fn with_sack() -> H {
    H::established_spec(cfg(), syn().sack_perm(true))
}

// ----- negotiation -----------------------------------------------------------

#[test]
fn rfc7323_timestamps_answered_only_when_offered() {
    let mut h = H::accept(cfg(), false, syn().seq(PEER_ISS).ts((777, 0)));
    let synack = recv!(h, SYN | ACK, tsecr = 777);
    assert!(synack.ts.is_some());
    let mut h = H::accept(cfg(), false, syn().seq(PEER_ISS));
    let synack = recv!(h, SYN | ACK);
    assert_eq!(synack.ts, None);
}

#[test]
fn rfc2018_sack_permitted_answered_only_when_offered() {
    let mut h = H::accept(cfg(), false, syn().seq(PEER_ISS).sack_perm(true));
    assert!(recv!(h, SYN | ACK).sack_perm);
    let mut h = H::accept(cfg(), false, syn().seq(PEER_ISS));
    assert!(!recv!(h, SYN | ACK).sack_perm);
}

#[test]
fn rfc7323_window_scale_answered_only_when_offered() {
    let mut h = H::accept(cfg(), false, syn().seq(PEER_ISS).wscale(2));
    recv!(h, SYN | ACK, wscale = 3);
    let mut h = H::accept(cfg(), false, syn().seq(PEER_ISS));
    assert_eq!(recv!(h, SYN | ACK).wscale, None);
}

#[test]
fn active_open_offers_wscale_sack_and_timestamps() {
    let mut h = H::connect(cfg(), false);
    let s = recv!(h, SYN, wscale = 3, mss = 1460, tsecr = 0);
    assert!(s.sack_perm);
}

#[test]
fn active_open_uses_only_options_the_syn_ack_answers() {
    // The SYN|ACK answers nothing: no timestamps, no SACK, no scaling.
    let mut h = H::connect(cfg(), false);
    recv!(h, SYN);
    send!(h, SYN | ACK, seq = PEER_ISS, ack = U, mss = 1460);
    let ack = recv!(h, ACK, seq = U, ack = P, win = 65535);
    assert_eq!(ack.ts, None);
    assert!(!h.conn.sack_enabled());
    assert!(!h.conn.timestamps_enabled());
    assert_eq!(h.conn.send_mss(), 1460);

    // The SYN|ACK answers all: all used, and timestamps cost 12 bytes of MSS.
    let mut h = H::connect(cfg(), false);
    let ours = recv!(h, SYN).ts.unwrap().0;
    send!(
        h,
        SYN | ACK,
        seq = PEER_ISS,
        ack = U,
        mss = 1460,
        wscale = 1,
        sack_perm = true,
        ts = (5000, ours)
    );
    recv!(h, ACK, tsecr = 5000);
    assert!(h.conn.sack_enabled());
    assert!(h.conn.timestamps_enabled());
    assert_eq!(h.conn.send_mss(), 1448);
}

#[test]
fn rfc7323_timestamps_on_every_segment_once_negotiated() {
    let mut h = with_ts();
    h.conn.send(b"data");
    recv!(h, PSH | ACK, len = 4, tsecr = 101);
    h.advance_ms(7);
    send!(h, ACK, seq = P, ack = U + 4, ts = (150, 0), data = b"x");
    h.advance_ms(40);
    let a = recv!(h, ACK, ack = P + 1, tsecr = 150);
    // TSval counts milliseconds.
    let first = h.conn.stats();
    assert!(first.srtt.is_some());
    h.conn.send(b"y");
    h.advance_ms(10);
    let b = recv!(h, PSH | ACK, len = 1);
    assert_eq!(b.ts.unwrap().0.wrapping_sub(a.ts.unwrap().0), 10);
}

#[test]
fn rfc7323_rtt_measured_from_echoed_timestamp() {
    let mut h = with_ts();
    h.conn.send(b"abc");
    let out = recv!(h, PSH | ACK, len = 3);
    h.advance_ms(80);
    send!(h, ACK, ack = U + 3, ts = (102, out.ts.unwrap().0));
    // The handshake's sample was 0 ms; 7/8 * 0 + 1/8 * 80 ms = 10 ms.
    assert_eq!(h.conn.stats().srtt, Some(Duration::from_millis(10)));
}

#[test]
fn rfc7323_ts_recent_taken_from_segment_at_last_ack_sent() {
    // Two segments before our (delayed) ACK: the echo is the TSval of the
    // first, the one that starts at Last.ACK.sent (RFC 7323 4.3).
    let mut h = with_ts();
    send!(h, ACK, seq = P, ts = (200, 0), data = b"ab");
    send!(h, ACK, seq = P + 2, ts = (300, 0), data = b"cd");
    h.advance_ms(40);
    recv!(h, ACK, ack = P + 4, tsecr = 200);
    send!(h, ACK, seq = P + 4, ts = (400, 0), data = b"ef");
    h.advance_ms(40);
    recv!(h, ACK, ack = P + 6, tsecr = 400);
}

#[test]
fn rfc7323_paws_drops_segment_with_old_tsval_and_acks() {
    let mut h = with_ts();
    send!(h, ACK, seq = P, ts = (500, 0), data = b"new");
    h.advance_ms(40);
    recv!(h, ACK, ack = P + 3, tsecr = 500);
    assert_eq!(h.read_all(), b"new");
    // An old duplicate that happens to fit the window: TSval 400 < 500.
    send!(h, ACK, seq = P + 3, ts = (400, 0), data = b"old");
    recv!(h, ACK, ack = P + 3, tsecr = 500);
    assert_eq!(h.conn.recv_available(), 0);
    assert_eq!(h.conn.stats().paws_rejected, 1);
    // The same bytes with a current TSval are taken.
    send!(h, ACK, seq = P + 3, ts = (600, 0), data = b"cur");
    assert_eq!(h.read_all(), b"cur");
}

/// RFC 7323 4.3 / 5.3 R3 (and Linux): TS.Recent is taken only from a
/// segment that is acceptable as a whole, its ACK included. A blind
/// in-window segment with an ACK of data never sent must not move it, or
/// every later segment of the real peer fails PAWS.
#[test]
fn rfc7323_ts_recent_not_updated_by_segment_with_unacceptable_ack() {
    let mut h = with_ts();
    let forged = 101u32.wrapping_add(1 << 30);
    send!(h, ACK, seq = P, ack = U + 100_000, ts = (forged, 0));
    recv!(h, ACK, ack = P, tsecr = 101);
    send!(h, SYN, seq = P, ts = (forged, 0));
    recv!(h, ACK, ack = P, tsecr = 101);
    // The real peer goes on with its own clock.
    send!(h, ACK, seq = P, ts = (102, 0), data = b"real");
    assert_eq!(h.read_all(), b"real");
    assert_eq!(h.conn.stats().paws_rejected, 0);
}

/// TIME-WAIT with timestamps: peer TSval 300 on its FIN.
fn ts_time_wait() -> H {
    let mut h = with_ts();
    h.conn.close();
    let fin = recv!(h, FIN | ACK, seq = U, ack = P);
    let ours = fin.ts.unwrap().0;
    send!(h, ACK, ack = U + 1, ts = (200, ours));
    send!(h, FIN | ACK, seq = P, ack = U + 1, ts = (300, ours));
    recv!(h, ACK, seq = U + 1, ack = P + 1, tsecr = 300);
    assert_eq!(h.conn.state(), vnic_stack::State::TimeWait);
    h.events();
    h
}

/// RFC 6191 2: in TIME-WAIT, a SYN of a connection that used timestamps
/// opens a new incarnation only if its TSval is newer than the last one
/// seen; an older one is dropped, whatever its sequence number.
#[test]
fn rfc6191_time_wait_syn_with_old_timestamp_does_not_reincarnate() {
    let mut h = ts_time_wait();
    let d = send!(h, SYN, seq = P + 1_000_000, ts = (299, 0));
    assert_eq!(d, vnic_stack::Disposition::Handled);
    assert_eq!(h.conn.state(), vnic_stack::State::TimeWait);
    recv_nothing!(h);
    let d = send!(h, SYN, seq = P + 1_000_000, ts = (301, 0));
    assert_eq!(d, vnic_stack::Disposition::Reincarnate);
}

/// RFC 6191 2: a newer TSval reopens even with a lower sequence number,
/// and without timestamps the sequence number must be above RCV.NXT.
#[test]
fn rfc6191_time_wait_syn_newer_timestamp_reincarnates_any_sequence() {
    let mut h = ts_time_wait();
    let d = send!(h, SYN, seq = P - 5, ts = (400, 0));
    assert_eq!(d, vnic_stack::Disposition::Reincarnate);
    let mut h = ts_time_wait();
    let d = send!(h, SYN, seq = P - 5);
    assert_eq!(d, vnic_stack::Disposition::Handled);
    let d = send!(h, SYN, seq = P + 5);
    assert_eq!(d, vnic_stack::Disposition::Reincarnate);
}

#[test]
fn rfc7323_paws_does_not_apply_to_rst() {
    let mut h = with_ts();
    send!(h, ACK, seq = P, ts = (500, 0), data = b"a");
    send!(h, RST, seq = P + 1, ts = (1, 0));
    assert!(h.conn.is_closed());
}

// ----- SACK reporting -------------------------------------------------------

#[test]
fn rfc2018_sack_blocks_reported_most_recent_first() {
    let mut h = with_sack();
    send!(h, ACK, seq = P + 1000, data = &[1; 100]);
    let a = recv!(h, ACK, ack = P);
    assert_eq!(a.sack, vec![(P + 1000, P + 1100)]);
    send!(h, ACK, seq = P + 3000, data = &[3; 100]);
    let a = recv!(h, ACK, ack = P);
    assert_eq!(a.sack, vec![(P + 3000, P + 3100), (P + 1000, P + 1100)]);
    send!(h, ACK, seq = P + 2000, data = &[2; 100]);
    let a = recv!(h, ACK, ack = P);
    assert_eq!(
        a.sack,
        vec![
            (P + 2000, P + 2100),
            (P + 3000, P + 3100),
            (P + 1000, P + 1100)
        ]
    );
    // Data next to an old block grows it and moves it to the front.
    send!(h, ACK, seq = P + 1100, data = &[1; 100]);
    let a = recv!(h, ACK, ack = P);
    assert_eq!(
        a.sack,
        vec![
            (P + 1000, P + 1200),
            (P + 2000, P + 2100),
            (P + 3000, P + 3100)
        ]
    );
    // Filling the first hole: RCV.NXT moves, the block it covers is gone;
    // the gap-filling segment is ACKed at once.
    send!(h, ACK, seq = P, data = &[0; 1000]);
    let a = recv!(h, ACK, ack = P + 1200);
    assert_eq!(a.sack, vec![(P + 2000, P + 2100), (P + 3000, P + 3100)]);
}

#[test]
fn rfc2018_three_blocks_fit_with_timestamps_four_without() {
    for (mut h, n) in [(with_sack_ts(), 3), (with_sack(), 4)] {
        for i in 1..=5u32 {
            let mut spec = Spec::new(TcpFlags::ACK).seq(P + i * 1000).data(&[0; 10]);
            if n == 3 {
                spec = spec.ts((200 + i, 0));
            }
            h.send(spec);
        }
        let acks = h.recv_all();
        let last = acks.last().unwrap();
        assert_eq!(last.sack.len(), n, "{last:?}");
        assert_eq!(last.sack[0], (P + 5000, P + 5010));
    }
}

#[test]
fn rfc2018_no_sack_blocks_unless_negotiated() {
    let mut h = H::established();
    send!(h, ACK, seq = P + 1000, data = &[1; 100]);
    let a = recv!(h, ACK, ack = P);
    assert!(a.sack.is_empty());
}

// ----- delayed ACK -----------------------------------------------------------

#[test]
fn rfc5681_second_full_sized_segment_acked_at_once() {
    let mut h = H::established();
    send!(h, ACK, seq = P, data = &[0; 1460]);
    recv_nothing!(h);
    send!(h, ACK, seq = P + 1460, data = &[0; 1460]);
    recv!(h, ACK, ack = P + 2920);
    recv_nothing!(h);
}

#[test]
fn rfc1122_single_segment_acked_after_the_delay() {
    let c = TcpConfig {
        delayed_ack: Duration::from_millis(100),
        ..cfg()
    };
    let mut h = H::established_with(c, 1460);
    send!(h, PSH | ACK, seq = P, data = b"hi");
    recv_nothing!(h);
    assert_eq!(
        h.conn.poll_timeout(),
        Some(h.now + Duration::from_millis(100))
    );
    h.advance_ms(99);
    recv_nothing!(h);
    h.advance_ms(1);
    recv!(h, ACK, ack = P + 2);
    recv_nothing!(h);
}

#[test]
fn rfc5681_out_of_order_and_gap_filling_segments_acked_at_once() {
    let mut h = H::established();
    send!(h, ACK, seq = P + 10, data = b"later");
    recv!(h, ACK, ack = P);
    send!(h, ACK, seq = P, data = &[0; 10]);
    recv!(h, ACK, ack = P + 15);
}

#[test]
fn fin_acked_at_once() {
    let mut h = H::established();
    send!(h, FIN | ACK, seq = P, data = b"bye");
    recv!(h, ACK, ack = P + 4);
}

#[test]
fn response_written_after_request_carries_the_ack() {
    // Request/response: the app answers before we poll; one segment goes
    // out, data and ACK together, without waiting for the delayed ACK.
    let mut h = H::established();
    h.conn.set_nodelay(true);
    send!(h, PSH | ACK, seq = P, data = b"GET /");
    assert_eq!(h.read_all(), b"GET /");
    h.conn.send(b"200 OK");
    recv!(h, PSH | ACK, seq = U, ack = P + 5, len = 6);
    recv_nothing!(h);
}

// ----- Nagle -----------------------------------------------------------------

#[test]
fn rfc9293_nagle_coalesces_small_writes_while_a_small_segment_is_unacked() {
    let mut h = H::established();
    assert!(!h.conn.nodelay());
    h.conn.send(b"a");
    recv!(h, PSH | ACK, seq = U, len = 1);
    h.conn.send(b"b");
    recv_nothing!(h);
    h.conn.send(b"c");
    recv_nothing!(h);
    send!(h, ACK, ack = U + 1);
    let out = recv!(h, PSH | ACK, seq = U + 1, len = 2);
    assert_eq!(out.payload, b"bc");
}

#[test]
fn set_nodelay_sends_small_writes_at_once() {
    let mut h = H::established();
    h.conn.set_nodelay(true);
    h.conn.send(b"a");
    recv!(h, PSH | ACK, seq = U, len = 1);
    h.conn.send(b"b");
    recv!(h, PSH | ACK, seq = U + 1, len = 1);
}

#[test]
fn nagle_does_not_hold_back_the_last_data_before_fin() {
    let mut h = H::established();
    h.conn.send(b"a");
    recv!(h, PSH | ACK, len = 1);
    h.conn.send(b"b");
    recv_nothing!(h);
    h.conn.close();
    recv!(h, FIN | PSH | ACK, seq = U + 1, len = 1);
}

#[test]
fn receiver_sws_window_update_only_for_a_worthwhile_increase() {
    let c = TcpConfig {
        recv_buffer: 4000,
        ..cfg()
    };
    let mut h = H::established_with(c, 1460);
    send!(h, ACK, seq = P, data = &[1; 1460]);
    send!(h, ACK, seq = P + 1460, data = &[1; 1460]);
    send!(h, ACK, seq = P + 2920, data = &[1; 1080]);
    h.recv_all();
    h.advance_ms(40);
    h.recv_all();
    let mut buf = [0u8; 100];
    h.conn.recv(&mut buf);
    recv_nothing!(h);
    // The next ACK still advertises a zero window: 100 bytes is no
    // worthwhile increase (RFC 9293 3.8.6.2.2).
    send!(h, ACK, seq = P + 4000, data = b"z");
    recv!(h, ACK, ack = P + 4000, win = 0);
    let mut big = [0u8; 2000];
    h.conn.recv(&mut big);
    recv!(h, ACK, ack = P + 4000, win = 2100);
    assert!(h.events().contains(&Event::Readable));
}
