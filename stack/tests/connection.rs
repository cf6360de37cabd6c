//! The state machine driven as a packet trace: the peer's segments crafted
//! with pnet, ours read back with pnet, time injected.

#[macro_use]
mod common;

use std::time::Duration;

use common::rng::Rng;
use common::{Spec, H, OUR_ISS, PEER_ISS};
use pnet_packet::tcp::TcpFlags;
use vnic_stack::{CloseReason, Disposition, Event, SeqNumber, State, TcpConfig};

/// The peer's next sequence number right after the handshake.
const P: u32 = PEER_ISS + 1;
/// Our next sequence number right after the handshake.
const U: u32 = OUR_ISS + 1;

fn cfg() -> TcpConfig {
    TcpConfig {
        time_wait: Duration::from_secs(2),
        ..TcpConfig::default()
    }
}

// ----- handshake ---------------------------------------------------------

#[test]
fn passive_open_syn_ack_advertises_mtu_mss_ipv4() {
    let mut h = H::accept(
        cfg(),
        false,
        Spec::new(TcpFlags::SYN).seq(PEER_ISS).mss(1460),
    );
    assert_eq!(h.conn.state(), State::SynReceived);
    recv!(
        h,
        SYN | ACK,
        seq = OUR_ISS,
        ack = PEER_ISS + 1,
        mss = 1460,
        win = 65535
    );
    recv_nothing!(h);
}

#[test]
fn passive_open_syn_ack_advertises_mtu_mss_ipv6() {
    let mut h = H::accept(
        cfg(),
        true,
        Spec::new(TcpFlags::SYN).seq(PEER_ISS).mss(1440),
    );
    recv!(h, SYN | ACK, seq = OUR_ISS, ack = PEER_ISS + 1, mss = 1440);
}

#[test]
fn passive_open_mss_follows_configured_mtu() {
    let c = TcpConfig { mtu: 9000, ..cfg() };
    let mut h = H::accept(c, false, Spec::new(TcpFlags::SYN).seq(PEER_ISS));
    recv!(h, SYN | ACK, mss = 8960);
}

#[test]
fn passive_open_completes_on_ack_of_syn() {
    let mut h = H::accept(
        cfg(),
        false,
        Spec::new(TcpFlags::SYN).seq(PEER_ISS).mss(1460),
    );
    recv!(h, SYN | ACK);
    send!(h, ACK, seq = P, ack = U);
    assert_eq!(h.conn.state(), State::Established);
    assert_eq!(h.events(), vec![Event::Established]);
    recv_nothing!(h);
}

#[test]
fn active_open_sends_syn_and_completes_on_syn_ack() {
    let mut h = H::connect(cfg(), false);
    assert_eq!(h.conn.state(), State::SynSent);
    recv!(h, SYN, seq = OUR_ISS, mss = 1460, wscale = 3, win = 65535);
    recv_nothing!(h);
    send!(h, SYN | ACK, seq = PEER_ISS, ack = U, mss = 536);
    recv!(h, ACK, seq = U, ack = P, win = 65535);
    assert_eq!(h.conn.state(), State::Established);
    assert_eq!(h.events(), vec![Event::Established]);
    assert_eq!(h.conn.send_mss(), 536);
}

#[test]
fn send_never_exceeds_peer_mss() {
    let mut h = H::established_with(cfg(), 536);
    assert_eq!(h.conn.send(&[7u8; 2000]), 2000);
    recv!(h, ACK, seq = U, len = 536);
    recv!(h, ACK, seq = U + 536, len = 536);
    recv!(h, ACK, seq = U + 1072, len = 536);
    recv!(h, PSH | ACK, seq = U + 1608, len = 392);
    recv_nothing!(h);
}

#[test]
fn default_peer_mss_is_536_for_ipv4_without_option() {
    let mut h = H::accept(cfg(), false, Spec::new(TcpFlags::SYN).seq(PEER_ISS));
    recv!(h, SYN | ACK);
    send!(h, ACK);
    h.conn.send(&[1u8; 1000]);
    recv!(h, ACK, len = 536);
    recv!(h, PSH | ACK, len = 464);
}

#[test]
fn default_peer_mss_is_1220_for_ipv6_without_option() {
    let mut h = H::accept(cfg(), true, Spec::new(TcpFlags::SYN).seq(PEER_ISS));
    recv!(h, SYN | ACK, mss = 1440);
    send!(h, ACK);
    h.conn.send(&[1u8; 1500]);
    recv!(h, ACK, len = 1220);
    recv!(h, PSH | ACK, len = 280);
}

#[test]
fn window_scale_used_only_when_peer_offers_it() {
    // Offered: our SYN|ACK answers with our shift, and both windows scale.
    let mut h = H::accept(
        cfg(),
        false,
        Spec::new(TcpFlags::SYN).seq(PEER_ISS).mss(1460).wscale(7),
    );
    recv!(h, SYN | ACK, wscale = 3, win = 65535);
    send!(h, ACK, win = 10); // 10 << 7 = 1280 bytes
    assert_eq!(h.conn.send_window(), 1280);
    h.conn.send(&[0u8; 3000]);
    // Less than an MSS and less than half the largest window: sender SWS
    // avoidance holds it until the override timeout.
    recv_nothing!(h);
    h.advance_ms(200);
    recv!(h, ACK, len = 1280);
    recv_nothing!(h);
    send!(h, ACK, data = b"x");
    h.advance_ms(40); // delayed ACK
    recv!(h, ACK, ack = P + 1, win = (256 * 1024 - 1) >> 3);

    // Not offered: no option in the SYN|ACK, windows unscaled.
    let mut h = H::accept(cfg(), false, Spec::new(TcpFlags::SYN).seq(PEER_ISS));
    let synack = h.recv().unwrap();
    assert_eq!(synack.wscale, None);
}

#[test]
fn retransmitted_syn_in_syn_received_resends_syn_ack() {
    let mut h = H::accept(cfg(), false, Spec::new(TcpFlags::SYN).seq(PEER_ISS));
    recv!(h, SYN | ACK, seq = OUR_ISS);
    send!(h, SYN, seq = PEER_ISS);
    recv!(h, SYN | ACK, seq = OUR_ISS, ack = P);
    assert_eq!(h.conn.state(), State::SynReceived);
}

#[test]
fn syn_received_unacceptable_ack_gets_rst() {
    let mut h = H::accept(cfg(), false, Spec::new(TcpFlags::SYN).seq(PEER_ISS));
    recv!(h, SYN | ACK);
    send!(h, ACK, ack = OUR_ISS + 5);
    recv!(h, RST, seq = OUR_ISS + 5);
    assert_eq!(h.conn.state(), State::SynReceived);
}

#[test]
fn syn_sent_unacceptable_ack_gets_rst() {
    let mut h = H::connect(cfg(), false);
    recv!(h, SYN);
    send!(h, SYN | ACK, seq = PEER_ISS, ack = OUR_ISS + 7);
    recv!(h, RST, seq = OUR_ISS + 7);
    assert_eq!(h.conn.state(), State::SynSent);
}

#[test]
fn simultaneous_open_answers_syn_with_syn_ack() {
    let mut h = H::connect(cfg(), false);
    recv!(h, SYN, seq = OUR_ISS);
    send!(h, SYN, seq = PEER_ISS);
    assert_eq!(h.conn.state(), State::SynReceived);
    recv!(h, SYN | ACK, seq = OUR_ISS, ack = P);
    send!(h, SYN | ACK, seq = PEER_ISS, ack = U);
    // The peer's SYN|ACK repeats its SYN: a challenge/duplicate ACK, then
    // its ACK establishes.
    send!(h, ACK, seq = P, ack = U);
    assert_eq!(h.conn.state(), State::Established);
}

// ----- data ----------------------------------------------------------------

#[test]
fn data_in_order_is_acked_and_readable() {
    let mut h = H::established();
    send!(h, PSH | ACK, seq = P, data = b"hello");
    // One segment: the ACK is delayed (RFC 1122 4.2.3.2), 40 ms by default.
    recv_nothing!(h);
    h.advance_ms(39);
    recv_nothing!(h);
    h.advance_ms(1);
    recv!(h, ACK, seq = U, ack = P + 5, win = 65535);
    assert_eq!(h.events(), vec![Event::Readable]);
    assert_eq!(h.read_all(), b"hello");
    assert_eq!(h.conn.stats().bytes_in, 5);
}

#[test]
fn data_out_is_sent_and_released_on_ack() {
    let mut h = H::established();
    assert_eq!(h.conn.send(b"world"), 5);
    let out = recv!(h, PSH | ACK, seq = U, ack = P, len = 5);
    assert_eq!(out.payload, b"world");
    assert_eq!(h.conn.send_queued(), 5);
    send!(h, ACK, ack = U + 5);
    assert_eq!(h.conn.send_queued(), 0);
    recv_nothing!(h);
    assert_eq!(
        h.conn.poll_timeout(),
        h.idle_deadline(),
        "nothing in flight: only the idle limit"
    );
}

/// A sender that hands each sent payload back as the next one's buffer
/// gets the same segments as one that lets the stack allocate, built in
/// the buffer it handed back.
#[test]
fn poll_transmit_reusing_builds_in_the_buffer_handed_back() {
    let mut a = H::established();
    let mut b = H::established();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(a.conn.send(&data), data.len());
    assert_eq!(b.conn.send(&data), data.len());
    let mut spare = Vec::with_capacity(4096);
    let mut reused = 0;
    let mut got = Vec::new();
    while let Some(seg) = a.conn.poll_transmit_reusing(a.now, &mut spare) {
        let plain = b.conn.poll_transmit(b.now).expect("the same segment");
        assert_eq!(
            (seg.seq, seg.payload.len()),
            (plain.seq, plain.payload.len())
        );
        assert_eq!(seg.payload, plain.payload);
        got.extend_from_slice(&seg.payload);
        if spare.capacity() == 0 {
            reused += usize::from(seg.payload.buffer_capacity() >= 4096);
            spare = seg.payload.into_buffer();
        }
    }
    assert!(b.conn.poll_transmit(b.now).is_none());
    assert_eq!(got, data[..got.len()]);
    assert!(got.len() > 1000, "the initial window went out");
    assert!(reused > 0, "payloads were built in the handed-back buffer");
}

#[test]
fn data_both_ways_in_one_exchange() {
    let mut h = H::established();
    h.conn.send(b"ping");
    recv!(h, PSH | ACK, seq = U, len = 4);
    send!(h, PSH | ACK, seq = P, ack = U + 4, data = b"pong");
    h.advance_ms(40);
    recv!(h, ACK, seq = U + 4, ack = P + 4);
    assert_eq!(h.read_all(), b"pong");
    assert_eq!(h.conn.send_queued(), 0);
}

#[test]
fn duplicate_data_is_not_delivered_twice() {
    let mut h = H::established();
    send!(h, ACK, seq = P, data = b"abc");
    h.advance_ms(40);
    recv!(h, ACK, ack = P + 3);
    // Overlapping retransmission: only "def" is new; ACKed at once (the
    // peer evidently missed our ACK).
    send!(h, ACK, seq = P, data = b"abcdef");
    recv!(h, ACK, ack = P + 6);
    assert_eq!(h.read_all(), b"abcdef");
    // A pure duplicate is unacceptable: ACKed, not delivered.
    send!(h, ACK, seq = P, data = b"abc");
    recv!(h, ACK, ack = P + 6);
    assert_eq!(h.conn.recv_available(), 0);
}

#[test]
fn out_of_order_segment_held_until_gap_fills() {
    let mut h = H::established();
    send!(h, ACK, seq = P + 3, data = b"def");
    recv!(h, ACK, ack = P); // immediate duplicate ACK
    assert_eq!(h.conn.recv_available(), 0);
    assert_eq!(h.events(), vec![]);
    send!(h, ACK, seq = P + 6, data = b"ghi");
    recv!(h, ACK, ack = P);
    send!(h, ACK, seq = P, data = b"abc");
    recv!(h, ACK, ack = P + 9);
    assert_eq!(h.events(), vec![Event::Readable]);
    assert_eq!(h.read_all(), b"abcdefghi");
    send!(h, ACK, seq = P + 3, data = b"def");
    recv!(h, ACK, ack = P + 9);
    assert_eq!(h.conn.recv_available(), 0);
    assert_eq!(h.conn.stats().bytes_in, 9);
}

#[test]
fn segment_beyond_window_is_trimmed() {
    let c = TcpConfig {
        recv_buffer: 1000,
        ..cfg()
    };
    let mut h = H::accept(c, false, Spec::new(TcpFlags::SYN).seq(PEER_ISS).mss(1460));
    recv!(h, SYN | ACK, win = 1000);
    send!(h, ACK);
    send!(h, ACK, seq = P, data = &[9u8; 1400]);
    recv!(h, ACK, ack = P + 1000, win = 0);
    assert_eq!(h.conn.recv_available(), 1000);
}

#[test]
fn unacceptable_segment_gets_ack_and_is_dropped() {
    let mut h = H::established();
    send!(h, ACK, seq = P + 65535, data = b"far");
    recv!(h, ACK, seq = U, ack = P);
    assert_eq!(h.conn.recv_available(), 0);
}

#[test]
fn ack_of_unsent_data_gets_ack_and_segment_dropped() {
    let mut h = H::established();
    send!(h, ACK, seq = P, ack = U + 100, data = b"x");
    recv!(h, ACK, seq = U, ack = P);
    assert_eq!(h.conn.recv_available(), 0);
}

#[test]
fn old_duplicate_ack_is_ignored_and_does_not_shrink_window() {
    let mut h = H::established();
    h.conn.send(&[1u8; 10]);
    recv!(h, PSH | ACK, len = 10);
    send!(h, ACK, ack = U + 10);
    // An old ACK (reordered in the network) with a zero window.
    send!(h, ACK, ack = U + 5, win = 0, data = b"z");
    h.advance_ms(40);
    recv!(h, ACK, ack = P + 1);
    assert_eq!(h.read_all(), b"z");
    h.conn.send(b"abc");
    recv!(h, PSH | ACK, seq = U + 10, len = 3);
}

#[test]
fn syn_in_synchronized_state_gets_challenge_ack() {
    let mut h = H::established();
    send!(h, SYN, seq = P + 10);
    recv!(h, ACK, seq = U, ack = P);
    assert_eq!(h.conn.state(), State::Established);
}

// ----- flow control ----------------------------------------------------------

#[test]
fn never_send_beyond_peer_window() {
    let c = TcpConfig {
        sws_override: Duration::from_millis(100),
        ..cfg()
    };
    let mut h = H::established_with(c, 1460);
    send!(h, ACK, win = 1000);
    h.conn.send(&[5u8; 3000]);
    // Sub-MSS slivers of a window that once was 65535: held by sender SWS
    // avoidance until the override timeout (RFC 9293 3.8.6.2.1).
    recv_nothing!(h);
    h.advance_ms(100);
    recv!(h, ACK, seq = U, len = 1000);
    recv_nothing!(h);
    send!(h, ACK, ack = U + 500, win = 1000);
    recv_nothing!(h);
    h.advance_ms(100);
    recv!(h, ACK, seq = U + 1000, len = 500);
    recv_nothing!(h);
    send!(h, ACK, ack = U + 1500, win = 2000);
    recv!(h, ACK, seq = U + 1500, len = 1460);
    recv!(h, PSH | ACK, seq = U + 2960, len = 40);
}

#[test]
fn zero_window_stops_sending_and_persist_timer_probes() {
    let mut h = H::established();
    send!(h, ACK, win = 0);
    h.conn.send(b"hello");
    recv_nothing!(h);
    let deadline = h.conn.poll_timeout().expect("persist timer");
    h.now = deadline;
    h.conn.on_timeout(h.now);
    // The probe uses an old sequence number: it takes no sequence space.
    recv!(h, ACK, seq = U - 1, len = 0);
    recv_nothing!(h);
    assert!(
        h.conn.poll_timeout().unwrap() > deadline,
        "persist re-armed"
    );
    send!(h, ACK, win = 100);
    recv!(h, PSH | ACK, seq = U, len = 5);
}

#[test]
fn receive_window_shrinks_with_unread_data_and_opens_after_recv() {
    let c = TcpConfig {
        recv_buffer: 4000,
        ..cfg()
    };
    let mut h = H::accept(c, false, Spec::new(TcpFlags::SYN).seq(PEER_ISS).mss(1460));
    recv!(h, SYN | ACK, win = 4000);
    send!(h, ACK);
    send!(h, ACK, seq = P, data = &[1u8; 1460]);
    recv_nothing!(h); // delayed ACK
    send!(h, ACK, seq = P + 1460, data = &[2u8; 1460]);
    // Second full-sized segment: ACKed at once.
    recv!(h, ACK, ack = P + 2920, win = 1080);
    send!(h, ACK, seq = P + 2920, data = &[3u8; 1080]);
    h.advance_ms(40);
    recv!(h, ACK, ack = P + 4000, win = 0);
    // Reading less than one MSS is not worth a window update (SWS).
    let mut buf = [0u8; 1000];
    assert_eq!(h.conn.recv(&mut buf), 1000);
    recv_nothing!(h);
    assert_eq!(h.conn.recv(&mut buf), 1000);
    recv!(h, ACK, ack = P + 4000, win = 2000);
}

#[test]
fn zero_window_probe_with_data_is_acked_not_accepted() {
    let c = TcpConfig {
        recv_buffer: 1000,
        ..cfg()
    };
    let mut h = H::accept(c, false, Spec::new(TcpFlags::SYN).seq(PEER_ISS).mss(1460));
    recv!(h, SYN | ACK, win = 1000);
    send!(h, ACK);
    send!(h, ACK, seq = P, data = &[1u8; 1000]);
    h.advance_ms(40);
    recv!(h, ACK, ack = P + 1000, win = 0);
    send!(h, ACK, seq = P + 1000, data = b"?");
    recv!(h, ACK, ack = P + 1000, win = 0);
    assert_eq!(h.conn.recv_available(), 1000);
}

#[test]
fn writable_event_after_short_send_when_space_opens() {
    let c = TcpConfig {
        send_buffer: 1000,
        ..cfg()
    };
    let mut h = H::accept(c, false, Spec::new(TcpFlags::SYN).seq(PEER_ISS).mss(1460));
    recv!(h, SYN | ACK);
    send!(h, ACK);
    h.events();
    assert_eq!(h.conn.send(&[0u8; 1500]), 1000);
    assert_eq!(h.conn.send_capacity(), 0);
    recv!(h, PSH | ACK, len = 1000);
    send!(h, ACK, ack = U + 400);
    assert_eq!(h.events(), vec![Event::Writable]);
    assert_eq!(h.conn.send_capacity(), 400);
}

// ----- retransmission ------------------------------------------------------

#[test]
fn syn_ack_retransmitted_with_exponential_backoff_then_given_up() {
    let mut h = H::accept(cfg(), false, Spec::new(TcpFlags::SYN).seq(PEER_ISS));
    recv!(h, SYN | ACK, seq = OUR_ISS);
    let mut at = 0;
    for backoff in 0..5 {
        let rto = 1000u64 << backoff; // 1 s, 2 s, 4 s, 8 s, 16 s
        h.at_ms(at + rto - 1);
        recv_nothing!(h);
        h.at_ms(at + rto);
        recv!(h, SYN | ACK, seq = OUR_ISS, ack = P);
        at += rto;
    }
    assert_eq!(h.conn.stats().retransmissions, 5);
    h.at_ms(at + 32_000);
    recv!(h, RST | ACK, seq = U, ack = P);
    assert!(h.conn.is_closed());
    let ev = h.events();
    assert_eq!(ev.iter().filter(|e| **e == Event::Retransmit).count(), 5);
    assert_eq!(ev.last(), Some(&Event::Closed(CloseReason::TimedOut)));
}

#[test]
fn syn_retransmitted_then_given_up_in_syn_sent() {
    let c = TcpConfig {
        syn_retransmissions: 2,
        ..cfg()
    };
    let mut h = H::connect(c, false);
    recv!(h, SYN, seq = OUR_ISS);
    h.at_ms(1000);
    recv!(h, SYN, seq = OUR_ISS);
    h.at_ms(3000);
    recv!(h, SYN, seq = OUR_ISS);
    h.at_ms(7000);
    recv!(h, RST, seq = U);
    assert_eq!(
        h.events().last(),
        Some(&Event::Closed(CloseReason::TimedOut))
    );
}

#[test]
fn data_retransmitted_on_rto_with_backoff_then_rst_and_timed_out() {
    let c = TcpConfig {
        max_retransmissions: 3,
        ..cfg()
    };
    // The handshake's RTT sample is 0, so the RTO sits at rto_min (200 ms).
    let mut h = H::established_with(c, 1460);
    h.conn.send(b"data");
    recv!(h, PSH | ACK, seq = U, len = 4);
    for (due, _) in [(200, 0), (600, 1), (1400, 2)] {
        h.at_ms(due - 1);
        recv_nothing!(h);
        h.at_ms(due);
        recv!(h, PSH | ACK, seq = U, len = 4);
    }
    h.at_ms(2999);
    recv_nothing!(h);
    h.at_ms(3000);
    recv!(h, RST | ACK, seq = U + 4, ack = P);
    assert!(h.conn.is_closed());
    assert_eq!(
        h.events().last(),
        Some(&Event::Closed(CloseReason::TimedOut))
    );
    recv_nothing!(h);
}

#[test]
fn rtt_sample_sets_rto_per_rfc6298() {
    let mut h = H::accept(cfg(), false, Spec::new(TcpFlags::SYN).seq(PEER_ISS));
    recv!(h, SYN | ACK);
    h.at_ms(100);
    send!(h, ACK);
    // SRTT = 100 ms, RTTVAR = 50 ms: RTO = 100 + 4 * 50 = 300 ms.
    assert_eq!(h.conn.stats().srtt, Some(Duration::from_millis(100)));
    assert_eq!(h.conn.rto(), Duration::from_millis(300));
    h.conn.send(b"x");
    recv!(h, PSH | ACK, len = 1);
    h.at_ms(399);
    recv_nothing!(h);
    h.at_ms(400);
    recv!(h, PSH | ACK, seq = U, len = 1);
}

#[test]
fn karn_no_rtt_sample_from_retransmitted_segment() {
    let mut h = H::accept(cfg(), false, Spec::new(TcpFlags::SYN).seq(PEER_ISS));
    recv!(h, SYN | ACK);
    h.at_ms(100);
    send!(h, ACK);
    h.conn.send(b"x");
    recv!(h, PSH | ACK, len = 1);
    h.at_ms(400);
    recv!(h, PSH | ACK, len = 1); // retransmission, RTO doubled to 600 ms
    assert_eq!(h.conn.rto(), Duration::from_millis(600));
    h.at_ms(450);
    send!(h, ACK, ack = U + 1);
    // Ambiguous ACK: no sample, SRTT unchanged, backoff dropped.
    assert_eq!(h.conn.stats().srtt, Some(Duration::from_millis(100)));
    assert_eq!(h.conn.rto(), Duration::from_millis(300));
}

#[test]
fn rto_resends_one_segment_from_snd_una_then_continues_on_ack() {
    let mut h = H::established();
    h.conn.send(&[3u8; 3000]);
    recv!(h, ACK, seq = U, len = 1460);
    recv!(h, ACK, seq = U + 1460, len = 1460);
    recv!(h, PSH | ACK, seq = U + 2920, len = 80);
    h.at_ms(200);
    recv!(h, ACK, seq = U, len = 1460);
    recv_nothing!(h);
    assert_eq!(h.events(), vec![Event::Retransmit]);
    send!(h, ACK, ack = U + 1460);
    recv!(h, ACK, seq = U + 1460, len = 1460);
    recv!(h, PSH | ACK, seq = U + 2920, len = 80);
    recv_nothing!(h);
    send!(h, ACK, ack = U + 3000);
    assert_eq!(h.conn.poll_timeout(), h.idle_deadline());
}

#[test]
fn ack_beyond_rewound_snd_nxt_after_rto_is_accepted() {
    let mut h = H::established();
    h.conn.send(&[3u8; 2000]);
    h.recv_all();
    h.at_ms(200);
    recv!(h, ACK, seq = U, len = 1460);
    // The originals had arrived after all: the peer ACKs everything.
    send!(h, ACK, ack = U + 2000);
    recv_nothing!(h);
    assert_eq!(h.conn.send_queued(), 0);
}

// ----- close -----------------------------------------------------------------

fn to_time_wait() -> H {
    let mut h = H::established_with(cfg(), 1460);
    h.conn.close();
    recv!(h, FIN | ACK, seq = U, ack = P);
    send!(h, ACK, ack = U + 1);
    send!(h, FIN | ACK, seq = P, ack = U + 1);
    recv!(h, ACK, seq = U + 1, ack = P + 1);
    assert_eq!(h.conn.state(), State::TimeWait);
    h.events();
    h
}

#[test]
fn active_close_fin_wait_1_fin_wait_2_time_wait_closed() {
    let mut h = H::established_with(cfg(), 1460);
    h.conn.close();
    assert_eq!(h.conn.state(), State::FinWait1);
    recv!(h, FIN | ACK, seq = U, ack = P);
    send!(h, ACK, ack = U + 1);
    assert_eq!(h.conn.state(), State::FinWait2);
    send!(h, FIN | ACK, seq = P, ack = U + 1);
    recv!(h, ACK, seq = U + 1, ack = P + 1);
    assert_eq!(h.conn.state(), State::TimeWait);
    assert_eq!(h.events(), vec![Event::PeerFin]);
    h.at_ms(1999);
    assert_eq!(h.conn.state(), State::TimeWait);
    h.at_ms(2000);
    assert!(h.conn.is_closed());
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::Normal)]);
}

#[test]
fn fin_rides_on_last_queued_data_segment() {
    let mut h = H::established();
    h.conn.send(&[1u8; 100]);
    h.conn.close();
    assert_eq!(h.conn.send(b"late"), 0, "no send after close");
    recv!(h, FIN | PSH | ACK, seq = U, len = 100);
    send!(h, ACK, ack = U + 101);
    assert_eq!(h.conn.state(), State::FinWait2);
}

#[test]
fn half_close_after_our_fin_we_keep_receiving() {
    let mut h = H::established();
    h.conn.close();
    recv!(h, FIN | ACK);
    send!(h, ACK, ack = U + 1);
    send!(h, PSH | ACK, seq = P, ack = U + 1, data = b"more");
    h.advance_ms(40);
    recv!(h, ACK, seq = U + 1, ack = P + 4);
    assert_eq!(h.read_all(), b"more");
    send!(h, FIN | ACK, seq = P + 4, ack = U + 1);
    recv!(h, ACK, ack = P + 5);
    assert_eq!(h.conn.state(), State::TimeWait);
}

#[test]
fn half_close_after_peer_fin_we_keep_sending() {
    let mut h = H::established();
    send!(h, FIN | ACK, seq = P);
    recv!(h, ACK, seq = U, ack = P + 1);
    assert_eq!(h.conn.state(), State::CloseWait);
    assert!(h.conn.peer_fin_received());
    assert_eq!(h.events(), vec![Event::PeerFin]);
    assert_eq!(h.conn.send(b"late"), 4);
    recv!(h, PSH | ACK, seq = U, ack = P + 1, len = 4);
    send!(h, ACK, seq = P + 1, ack = U + 4);
    h.conn.close();
    assert_eq!(h.conn.state(), State::LastAck);
    recv!(h, FIN | ACK, seq = U + 4, ack = P + 1);
    send!(h, ACK, seq = P + 1, ack = U + 5);
    assert!(h.conn.is_closed());
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::Normal)]);
}

#[test]
fn simultaneous_close_goes_through_closing() {
    let mut h = H::established();
    h.conn.close();
    recv!(h, FIN | ACK, seq = U, ack = P);
    // The peer's FIN crosses ours: it does not ACK our FIN.
    send!(h, FIN | ACK, seq = P, ack = U);
    assert_eq!(h.conn.state(), State::Closing);
    recv!(h, ACK, seq = U + 1, ack = P + 1);
    send!(h, ACK, seq = P + 1, ack = U + 1);
    assert_eq!(h.conn.state(), State::TimeWait);
}

#[test]
fn fin_out_of_order_waits_for_the_gap() {
    let mut h = H::established();
    send!(h, FIN | ACK, seq = P + 3, data = b"def");
    recv!(h, ACK, ack = P);
    assert_eq!(h.conn.state(), State::Established);
    send!(h, ACK, seq = P, data = b"abc");
    recv!(h, ACK, ack = P + 7);
    assert_eq!(h.conn.state(), State::CloseWait);
    assert_eq!(h.read_all(), b"abcdef");
    assert_eq!(h.events(), vec![Event::Readable, Event::PeerFin]);
}

#[test]
fn fin_retransmitted_on_rto() {
    let mut h = H::established();
    h.conn.close();
    recv!(h, FIN | ACK, seq = U);
    h.at_ms(200);
    recv!(h, FIN | ACK, seq = U);
}

#[test]
fn time_wait_retransmitted_fin_is_reacked_and_restarts_timer() {
    let mut h = to_time_wait();
    h.at_ms(1500);
    send!(h, FIN | ACK, seq = P, ack = U + 1);
    recv!(h, ACK, seq = U + 1, ack = P + 1);
    h.at_ms(3499);
    assert_eq!(h.conn.state(), State::TimeWait);
    h.at_ms(3500);
    assert!(h.conn.is_closed());
}

#[test]
fn time_wait_new_syn_above_rcv_nxt_reincarnates() {
    let mut h = to_time_wait();
    let d = send!(h, SYN, seq = P + 1000, mss = 1460);
    assert_eq!(d, Disposition::Reincarnate);
    // The caller then accepts the same SYN as a new connection.
    let syn = common::craft(
        &Spec::new(TcpFlags::SYN).seq(P + 1000).mss(1460),
        h.tuple.remote,
        h.tuple.local,
    );
    let syn = vnic_stack::parse(h.tuple.remote.ip(), h.tuple.local.ip(), &syn).unwrap();
    let mut fresh = vnic_stack::Connection::accept(h.now, &h.cfg, h.tuple, &syn, SeqNumber(77));
    let synack = fresh.poll_transmit(h.now).unwrap();
    assert_eq!(synack.ack, Some(SeqNumber(P + 1001)));
    // A SYN at or below RCV.NXT is an old duplicate: no new incarnation,
    // and RFC 6191 drops it without a word.
    let d = send!(h, SYN, seq = P);
    assert_eq!(d, Disposition::Handled);
    recv_nothing!(h);
    assert_eq!(h.conn.state(), State::TimeWait);
}

#[test]
fn time_wait_expires_into_closed_normal() {
    let mut h = to_time_wait();
    assert_eq!(h.conn.poll_timeout(), Some(h.t0 + Duration::from_secs(2)));
    h.at_ms(2000);
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::Normal)]);
    assert_eq!(h.conn.poll_timeout(), None);
}

#[test]
fn close_in_syn_received_sends_fin_after_handshake() {
    let mut h = H::accept(cfg(), false, Spec::new(TcpFlags::SYN).seq(PEER_ISS));
    recv!(h, SYN | ACK);
    h.conn.close();
    recv_nothing!(h);
    send!(h, ACK);
    assert_eq!(h.conn.state(), State::FinWait1);
    recv!(h, FIN | ACK, seq = U, ack = P);
}

// ----- RST -------------------------------------------------------------------

fn assert_reset(h: &mut H) {
    assert!(h.conn.is_closed(), "state {:?}", h.conn.state());
    assert_eq!(h.events().last(), Some(&Event::Closed(CloseReason::Reset)));
    recv_nothing!(h);
}

#[test]
fn rst_in_syn_received_closes() {
    let mut h = H::accept(cfg(), false, Spec::new(TcpFlags::SYN).seq(PEER_ISS));
    recv!(h, SYN | ACK);
    send!(h, RST, seq = P);
    assert_reset(&mut h);
}

#[test]
fn rst_in_established_closes() {
    let mut h = H::established();
    send!(h, RST, seq = P);
    assert_reset(&mut h);
}

#[test]
fn rst_in_window_not_exact_gets_challenge_ack() {
    // RFC 5961 3.2: only SEG.SEQ == RCV.NXT resets.
    let mut h = H::established();
    send!(h, RST | ACK, seq = P + 100);
    assert_eq!(h.conn.state(), State::Established);
    recv!(h, ACK, seq = U, ack = P);
    recv_nothing!(h);
    assert_eq!(h.conn.stats().challenge_acks, 1);
    // The legitimate peer answers the challenge with an exact RST.
    send!(h, RST, seq = P);
    assert_reset(&mut h);
}

#[test]
fn rst_out_of_window_is_ignored() {
    let mut h = H::established();
    send!(h, RST, seq = P + 70_000);
    send!(h, RST, seq = P - 1);
    assert_eq!(h.conn.state(), State::Established);
    recv_nothing!(h);
}

#[test]
fn rst_in_fin_wait_1_closes() {
    let mut h = H::established();
    h.conn.close();
    recv!(h, FIN | ACK);
    send!(h, RST, seq = P);
    assert_reset(&mut h);
}

#[test]
fn rst_in_fin_wait_2_closes() {
    let mut h = H::established();
    h.conn.close();
    recv!(h, FIN | ACK);
    send!(h, ACK, ack = U + 1);
    assert_eq!(h.conn.state(), State::FinWait2);
    send!(h, RST, seq = P);
    assert_reset(&mut h);
}

#[test]
fn rst_in_close_wait_closes() {
    let mut h = H::established();
    send!(h, FIN | ACK, seq = P);
    recv!(h, ACK);
    send!(h, RST, seq = P + 1);
    assert_reset(&mut h);
}

#[test]
fn rst_in_closing_closes() {
    let mut h = H::established();
    h.conn.close();
    recv!(h, FIN | ACK);
    send!(h, FIN | ACK, seq = P, ack = U);
    recv!(h, ACK);
    assert_eq!(h.conn.state(), State::Closing);
    send!(h, RST, seq = P + 1);
    assert_reset(&mut h);
}

#[test]
fn rst_in_last_ack_closes() {
    let mut h = H::established();
    send!(h, FIN | ACK, seq = P);
    recv!(h, ACK);
    h.conn.close();
    recv!(h, FIN | ACK);
    assert_eq!(h.conn.state(), State::LastAck);
    send!(h, RST, seq = P + 1);
    assert_reset(&mut h);
}

/// RFC 1337 (TIME-WAIT assassination): an RST in TIME-WAIT is ignored;
/// the connection lingers its full 2*MSL so old duplicates die out.
#[test]
fn rfc1337_rst_in_time_wait_is_ignored() {
    let mut h = to_time_wait();
    h.at_ms(500);
    send!(h, RST, seq = P + 1);
    send!(h, RST | ACK, seq = P + 1, ack = U + 1);
    assert_eq!(h.conn.state(), State::TimeWait);
    recv_nothing!(h);
    assert_eq!(h.events(), vec![]);
    h.at_ms(2000);
    assert!(h.conn.is_closed());
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::Normal)]);
}

#[test]
fn rst_in_syn_sent_acceptable_only_if_it_acks_our_syn() {
    let mut h = H::connect(cfg(), false);
    recv!(h, SYN);
    send!(h, RST, seq = PEER_ISS); // no ACK: ignored
    send!(h, RST | ACK, seq = PEER_ISS, ack = OUR_ISS + 5); // wrong ACK: ignored
    assert_eq!(h.conn.state(), State::SynSent);
    recv_nothing!(h);
    send!(h, RST | ACK, seq = 0, ack = U);
    assert_reset(&mut h);
}

#[test]
fn abort_sends_rst_and_closes_aborted() {
    let mut h = H::established();
    h.conn.send(b"unsent?");
    h.recv_all();
    h.conn.abort();
    recv!(h, RST | ACK, seq = U + 7, ack = P);
    recv_nothing!(h);
    assert!(h.conn.is_closed());
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::Aborted)]);
    assert_eq!(h.conn.poll_timeout(), None);
}

#[test]
fn segments_after_close_are_ignored() {
    let mut h = H::established();
    h.conn.abort();
    h.recv_all();
    h.events();
    send!(h, ACK, seq = P, data = b"x");
    recv_nothing!(h);
    assert_eq!(h.events(), vec![]);
    assert_eq!(h.conn.stats().bytes_in, 0);
}

// ----- robustness ------------------------------------------------------------

#[test]
fn random_segments_never_panic_in_any_state() {
    let mut st = Rng(42);
    let setups: [fn() -> H; 6] = [
        || H::established(),
        || {
            let mut h = H::established();
            h.conn.close();
            h.recv_all();
            h
        },
        || {
            let mut h = H::established();
            send!(h, FIN | ACK, seq = P);
            h.recv_all();
            h
        },
        to_time_wait,
        || {
            let mut h = H::connect(cfg(), false);
            h.recv_all();
            h
        },
        || {
            let mut h = H::accept(cfg(), true, Spec::new(TcpFlags::SYN).seq(PEER_ISS));
            h.recv_all();
            h
        },
    ];
    let flag_sets = [
        TcpFlags::ACK,
        TcpFlags::ACK | TcpFlags::PSH,
        TcpFlags::FIN | TcpFlags::ACK,
        TcpFlags::SYN,
        TcpFlags::SYN | TcpFlags::ACK,
        TcpFlags::RST,
        TcpFlags::RST | TcpFlags::ACK,
        0,
    ];
    for setup in setups {
        for _ in 0..300 {
            let mut h = setup();
            h.conn.send(&[1u8; 3000]);
            for _ in 0..20 {
                let near = |st: &mut Rng, base: u32| {
                    base.wrapping_add((st.next() % 140_000) as u32)
                        .wrapping_sub(70_000)
                };
                let flags = flag_sets[(st.next() % flag_sets.len() as u64) as usize];
                let len = (st.next() % 3000) as usize;
                let spec = Spec::new(flags)
                    .seq(near(&mut st, P))
                    .ack(near(&mut st, U))
                    .win(st.next() as u16)
                    .data(&vec![7u8; len]);
                let _ = h.send(spec);
                h.recv_all();
                h.advance_ms(st.next() % 3000);
                h.recv_all();
                h.read_all();
                h.events();
            }
        }
    }
}

// ----- limits (issue 15) ----------------------------------------------------

fn idle_cfg(limit: Duration) -> TcpConfig {
    TcpConfig {
        idle_timeout: Some(limit),
        ..cfg()
    }
}

/// Nothing moves for the idle limit: RST, and the application hears why.
#[test]
fn a_connection_idle_for_the_limit_is_reset() {
    let mut h = H::established_with(idle_cfg(Duration::from_secs(60)), 1460);
    h.advance_ms(59_999);
    assert_eq!(h.conn.state(), State::Established);
    recv_nothing!(h);
    h.advance_ms(1);
    recv!(h, RST | ACK, seq = U, ack = P);
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::Idle)]);
}

/// Data either way is progress: the limit counts from the last byte
/// accepted or acknowledged. Keep-alive-like empty ACKs are not.
#[test]
fn progress_either_way_restarts_the_idle_limit_and_empty_acks_do_not() {
    let mut h = H::established_with(idle_cfg(Duration::from_secs(60)), 1460);
    h.advance_ms(50_000);
    send!(h, ACK, seq = P, ack = U, data = b"ping");
    h.read_all();
    h.advance_ms(50_000); // 100 s since the open, 50 s since the data
    assert_eq!(h.conn.state(), State::Established);
    h.recv_all();
    h.conn.send(b"pong");
    h.recv_all();
    send!(h, ACK, seq = P + 4, ack = U + 4);
    h.advance_ms(50_000);
    assert_eq!(h.conn.state(), State::Established);
    // Empty ACKs (a keep-alive) every 20 s do not count.
    for _ in 0..2 {
        send!(h, ACK, seq = P + 3, ack = U + 4);
        h.recv_all();
        h.advance_ms(5_000);
    }
    assert_eq!(h.conn.state(), State::Closed);
    assert_eq!(h.events().last(), Some(&Event::Closed(CloseReason::Idle)));
}

/// With the limit off a quiet connection keeps no timer at all.
#[test]
fn without_an_idle_limit_a_quiet_connection_has_no_timer() {
    let mut h = H::established_with(
        TcpConfig {
            idle_timeout: None,
            ..cfg()
        },
        1460,
    );
    assert_eq!(h.conn.poll_timeout(), None);
    h.advance_ms(86_400_000);
    assert_eq!(h.conn.state(), State::Established);
}

/// TIME-WAIT keeps no buffer memory, whatever the connection carried.
#[test]
fn time_wait_gives_its_buffers_back() {
    let mut h = H::established();
    let empty = h.conn.memory();
    h.conn.send(&[1u8; 200_000]);
    let full = h.conn.memory();
    assert!(
        full >= empty + 200_000,
        "{full} bytes held with 200 kB queued"
    );
    h.conn.close();
    let mut acked = U;
    loop {
        let out = h.recv_all();
        let Some(end) = out
            .iter()
            .map(|o| o.seq + o.payload.len() as u32 + (o.flags & TcpFlags::FIN != 0) as u32)
            .max()
        else {
            break;
        };
        acked = acked.max(end);
        send!(h, ACK, seq = P, ack = acked);
    }
    send!(h, FIN | ACK, seq = P, ack = acked);
    assert_eq!(h.conn.state(), State::TimeWait);
    // A few events' worth beyond a fresh connection, no buffer.
    let tw = h.conn.memory();
    assert!(
        tw < empty + 1024,
        "{tw} bytes held in TIME-WAIT, {empty} when new"
    );
}
