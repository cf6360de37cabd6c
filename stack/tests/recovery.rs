//! Loss recovery and congestion control (RFC 5681, RFC 6582, RFC 6675,
//! RFC 9438), zero-window probing (RFC 9293 3.8.6.1) and the blind-attack
//! defences of RFC 5961, driven as a packet trace with injected time.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Spec, H, OUR_ISS, PEER_ISS};
use pnet_packet::tcp::TcpFlags;
use vnic_stack::{CongestionAlgorithm, Event, State, TcpConfig};

const P: u32 = PEER_ISS + 1;
const U: u32 = OUR_ISS + 1;
const MSS: u32 = 1460;

fn cfg() -> TcpConfig {
    TcpConfig {
        time_wait: Duration::from_secs(2),
        ..TcpConfig::default()
    }
}

/// RFC 9293's own rules: neither of vnic's limits on quiet connections
/// (a probed zero window counts as neither progress nor failure).
fn rfc_limits_only() -> TcpConfig {
    TcpConfig {
        zero_window_timeout: None,
        idle_timeout: None,
        ..TcpConfig::default()
    }
}

fn new_reno() -> H {
    H::established_with(
        TcpConfig {
            congestion: CongestionAlgorithm::NewReno,
            ..cfg()
        },
        1460,
    )
}

/// Ten full segments out (the RFC 6928 initial window).
fn ten_segments_out(h: &mut H) {
    h.conn.send(&[7u8; 10 * MSS as usize]);
    let out = h.recv_all();
    assert_eq!(out.len(), 10);
    recv_nothing!(h);
}

fn three_dup_acks(h: &mut H) {
    for _ in 0..3 {
        send!(h, ACK, ack = U);
    }
}

// ----- fast retransmit / NewReno ---------------------------------------------

#[test]
fn rfc5681_fast_retransmit_after_three_duplicate_acks() {
    let mut h = new_reno();
    ten_segments_out(&mut h);
    send!(h, ACK, ack = U);
    send!(h, ACK, ack = U);
    recv_nothing!(h);
    send!(h, ACK, ack = U);
    recv!(h, ACK, seq = U, len = MSS);
    recv_nothing!(h);
    let st = h.conn.stats();
    assert_eq!(st.fast_retransmits, 1);
    assert_eq!(st.dup_acks, 3);
    assert_eq!(st.retransmissions, 0, "no RTO");
    assert!(h.events().contains(&Event::Retransmit));
}

#[test]
fn rfc5681_new_reno_halves_ssthresh_and_cwnd_on_loss() {
    let mut h = new_reno();
    ten_segments_out(&mut h);
    three_dup_acks(&mut h);
    let st = h.conn.stats();
    assert_eq!(st.ssthresh, 5 * MSS as usize);
    assert_eq!(st.cwnd, 5 * MSS as usize);
}

#[test]
fn rfc9438_cubic_multiplies_cwnd_by_beta_0_7_on_loss() {
    let mut h = H::established();
    ten_segments_out(&mut h);
    three_dup_acks(&mut h);
    let st = h.conn.stats();
    assert_eq!(st.ssthresh, 7 * MSS as usize);
    assert_eq!(st.cwnd, 7 * MSS as usize);
}

#[test]
fn a_gso_frame_carries_at_most_half_the_window() {
    // Ten segments of window: five to a frame, so losing one frame leaves
    // the other's ACKs to report it.
    let mut h = H::established();
    assert_eq!(h.conn.stats().cwnd, 10 * MSS as usize);
    assert_eq!(h.conn.gso_burst_limit(), 5 * MSS as usize);
    // After a loss the window is 7 segments: 3.5 to a frame.
    ten_segments_out(&mut h);
    three_dup_acks(&mut h);
    assert_eq!(h.conn.gso_burst_limit(), 7 * MSS as usize / 2);
    // Never less than one segment, however small the window.
    h.advance_ms(10_000);
    assert_eq!(h.conn.stats().cwnd, MSS as usize, "an RTO left one segment");
    assert_eq!(h.conn.gso_burst_limit(), MSS as usize);
}

#[test]
fn rfc6582_partial_ack_retransmits_next_hole_full_ack_ends_recovery() {
    let mut h = new_reno();
    ten_segments_out(&mut h);
    three_dup_acks(&mut h);
    recv!(h, ACK, seq = U, len = MSS);
    // Segments 1 and 2 arrived, segment 3 was lost too: a partial ACK.
    send!(h, ACK, ack = U + 3 * MSS);
    recv!(h, ACK, seq = U + 3 * MSS, len = MSS);
    recv_nothing!(h);
    send!(h, ACK, ack = U + 10 * MSS);
    recv_nothing!(h);
    let st = h.conn.stats();
    assert_eq!(st.fast_retransmits, 1, "one recovery for both holes");
    assert_eq!(st.segments_retransmitted, 2);
    assert_eq!(st.cwnd, 5 * MSS as usize, "cwnd = ssthresh after recovery");
    assert_eq!(h.conn.poll_timeout(), h.idle_deadline());
}

#[test]
fn rfc3042_limited_transmit_sends_new_data_on_first_two_dup_acks() {
    let mut h = new_reno();
    h.conn.send(&[7u8; 12 * MSS as usize]);
    assert_eq!(h.recv_all().len(), 10);
    send!(h, ACK, ack = U);
    recv!(h, ACK, seq = U + 10 * MSS, len = MSS);
    send!(h, ACK, ack = U);
    recv!(h, PSH | ACK, seq = U + 11 * MSS, len = MSS);
    recv_nothing!(h);
}

// ----- SACK recovery (RFC 6675) ------------------------------------------------

#[test]
fn rfc6675_sack_recovery_retransmits_only_the_holes() {
    let mut h = H::established_spec(cfg(), Spec::new(TcpFlags::SYN).mss(1460).sack_perm(true));
    ten_segments_out(&mut h);
    // Segments 1-3 arrived: more than 2 * SMSS SACKed above SND.UNA, so
    // segment 0 is lost (IsLost) and recovery starts on the first ACK.
    send!(h, ACK, ack = U, sack = &[(U + MSS, U + 4 * MSS)]);
    recv!(h, ACK, seq = U, len = MSS);
    recv_nothing!(h);
    // Segments 5-9 arrived too: segment 4 is a hole below 3 segments' worth
    // of SACKed data: lost, and it alone is resent.
    send!(
        h,
        ACK,
        ack = U,
        sack = &[(U + 5 * MSS, U + 10 * MSS), (U + MSS, U + 4 * MSS)]
    );
    recv!(h, ACK, seq = U + 4 * MSS, len = MSS);
    recv_nothing!(h);
    let st = h.conn.stats();
    assert_eq!(st.sack_recoveries, 1);
    assert_eq!(st.segments_retransmitted, 2);
    send!(h, ACK, ack = U + 10 * MSS);
    assert_eq!(h.conn.send_queued(), 0);
    assert_eq!(h.conn.poll_timeout(), h.idle_deadline());
}

#[test]
fn rfc6675_sack_for_data_not_sent_is_ignored() {
    let mut h = H::established_spec(cfg(), Spec::new(TcpFlags::SYN).mss(1460).sack_perm(true));
    ten_segments_out(&mut h);
    send!(h, ACK, ack = U, sack = &[(U + 20 * MSS, U + 30 * MSS)]);
    recv_nothing!(h);
    assert_eq!(h.conn.stats().sack_recoveries, 0);
}

// ----- congestion window ----------------------------------------------------

#[test]
fn rfc5681_slow_start_grows_cwnd_by_acked_bytes_up_to_2_mss_per_ack() {
    let mut h = new_reno();
    assert_eq!(h.conn.stats().cwnd, 10 * MSS as usize, "RFC 6928 IW");
    ten_segments_out(&mut h);
    send!(h, ACK, ack = U + MSS);
    assert_eq!(h.conn.stats().cwnd, 11 * MSS as usize);
    send!(h, ACK, ack = U + 5 * MSS);
    assert_eq!(h.conn.stats().cwnd, 13 * MSS as usize);
}

#[test]
fn rfc5681_congestion_avoidance_grows_cwnd_one_mss_per_window() {
    let mut h = new_reno();
    ten_segments_out(&mut h);
    three_dup_acks(&mut h);
    h.recv_all();
    send!(h, ACK, ack = U + 10 * MSS);
    assert_eq!(h.conn.stats().cwnd, 5 * MSS as usize);
    h.conn.send(&[1u8; 5 * MSS as usize]);
    assert_eq!(h.recv_all().len(), 5);
    send!(h, ACK, ack = U + 12 * MSS);
    assert_eq!(h.conn.stats().cwnd, 5 * MSS as usize);
    send!(h, ACK, ack = U + 15 * MSS);
    assert_eq!(h.conn.stats().cwnd, 6 * MSS as usize);
}

#[test]
fn rfc5681_rto_collapses_cwnd_to_one_mss_and_resends_from_snd_una() {
    let mut h = new_reno();
    ten_segments_out(&mut h);
    h.at_ms(200);
    recv!(h, ACK, seq = U, len = MSS);
    recv_nothing!(h);
    let st = h.conn.stats();
    assert_eq!(st.cwnd, MSS as usize);
    assert_eq!(st.ssthresh, 5 * MSS as usize);
    assert_eq!(st.retransmissions, 1);
    // Slow start from one segment: the ACK lets two more out.
    send!(h, ACK, ack = U + MSS);
    recv!(h, ACK, seq = U + MSS, len = MSS);
    recv!(h, ACK, seq = U + 2 * MSS, len = MSS);
    recv_nothing!(h);
}

#[test]
fn rfc6675_rto_keeps_scoreboard_and_skips_sacked_data() {
    let mut h = H::established_spec(cfg(), Spec::new(TcpFlags::SYN).mss(1460).sack_perm(true));
    ten_segments_out(&mut h);
    // Only segment 1 is SACKed: not enough for recovery.
    send!(h, ACK, ack = U, sack = &[(U + MSS, U + 2 * MSS)]);
    recv_nothing!(h);
    h.at_ms(200);
    recv!(h, ACK, seq = U, len = MSS);
    send!(h, ACK, ack = U + MSS, sack = &[(U + MSS, U + 2 * MSS)]);
    // cwnd 2 MSS now; segment 1 is SACKed and skipped.
    recv!(h, ACK, seq = U + 2 * MSS, len = MSS);
    recv!(h, ACK, seq = U + 3 * MSS, len = MSS);
    recv_nothing!(h);
}

#[test]
fn rfc5681_slow_start_restarts_after_idle_longer_than_rto() {
    let mut h = new_reno();
    ten_segments_out(&mut h);
    send!(h, ACK, ack = U + 10 * MSS);
    assert_eq!(h.conn.stats().cwnd, 12 * MSS as usize);
    // Idle for less than an RTO: cwnd kept.
    h.advance_ms(100);
    h.conn.send(&[1u8; 100]);
    recv!(h, PSH | ACK, len = 100);
    assert_eq!(h.conn.stats().cwnd, 12 * MSS as usize);
    send!(h, ACK, ack = U + 10 * MSS + 100);
    // Idle for a second (> RTO of 200 ms): back to the initial window.
    h.advance_ms(1000);
    h.conn.send(&[1u8; 100]);
    recv!(h, PSH | ACK, len = 100);
    assert_eq!(h.conn.stats().cwnd, 10 * MSS as usize);
}

#[test]
fn sending_is_limited_by_min_of_cwnd_and_peer_window() {
    let mut h = new_reno();
    h.conn.send(&[1u8; 20 * MSS as usize]);
    assert_eq!(h.recv_all().len(), 10, "cwnd (IW) limits");
    send!(h, ACK, ack = U + 10 * MSS, win = 2 * MSS as u16);
    assert_eq!(h.recv_all().len(), 2, "peer window limits");
}

// ----- zero window -------------------------------------------------------------

#[test]
fn rfc9293_persist_probes_back_off_capped_and_never_give_up_while_answered() {
    // RFC 9293's own rule: without vnic's zero-window limit.
    let mut h = H::established_with(rfc_limits_only(), 1460);
    send!(h, ACK, win = 0);
    h.conn.send(b"waiting");
    recv_nothing!(h);
    let mut last = h.now;
    let mut intervals = Vec::new();
    for _ in 0..30 {
        let deadline = h.conn.poll_timeout().expect("persist timer");
        intervals.push(deadline - last);
        last = deadline;
        h.now = deadline;
        h.conn.on_timeout(h.now);
        recv!(h, ACK, seq = U - 1, len = 0);
        send!(h, ACK, win = 0);
    }
    assert_eq!(intervals[0], Duration::from_millis(200));
    assert_eq!(intervals[1], Duration::from_millis(400));
    assert!(intervals.iter().all(|d| *d <= Duration::from_secs(60)));
    assert_eq!(*intervals.last().unwrap(), Duration::from_secs(60));
    assert_eq!(h.conn.state(), State::Established);
    send!(h, ACK, win = 1000);
    recv!(h, PSH | ACK, seq = U, len = 7);
}

/// An established connection whose zero-window limit is `limit`.
fn zero_window_limited(limit: Duration) -> H {
    let cfg = TcpConfig {
        zero_window_timeout: Some(limit),
        ..TcpConfig::default()
    };
    H::established_with(cfg, 1460)
}

/// Issue 15: a peer that answers every probe but never opens its window
/// holds our send buffer only for the zero-window limit; then RST, and the
/// application hears why.
#[test]
fn a_zero_window_held_past_the_limit_resets_however_the_probes_are_answered() {
    let limit = Duration::from_secs(30);
    let mut h = zero_window_limited(limit);
    send!(h, ACK, win = 0);
    let start = h.now;
    h.conn.send(&[5u8; 10_000]);
    recv_nothing!(h);
    let mut probes = 0;
    while h.conn.state() == State::Established {
        let d = h.conn.poll_timeout().expect("persist timer");
        assert!(
            d <= start + limit,
            "no timer past the limit: {:?}",
            d - start
        );
        h.now = d;
        h.conn.on_timeout(d);
        if h.conn.state() != State::Established {
            break;
        }
        recv!(h, ACK, seq = U - 1, len = 0);
        send!(h, ACK, win = 0);
        probes += 1;
        assert!(probes < 100, "never reset");
    }
    assert_eq!(h.now - start, limit, "reset at the limit, not later");
    recv!(h, RST | ACK, seq = U);
    assert_eq!(
        h.events().last(),
        Some(&Event::Closed(vnic_stack::CloseReason::ZeroWindow))
    );
}

/// A window that opens (even a little) ends the episode: the limit counts
/// from the last time the window closed, not from the first.
#[test]
fn an_opening_window_restarts_the_zero_window_limit() {
    let limit = Duration::from_secs(30);
    let mut h = zero_window_limited(limit);
    h.conn.send(&[5u8; 100_000]);
    h.recv_all();
    let mut acked = 0u32;
    for _ in 0..5 {
        // Closed for 20 s (less than the limit), then one segment's worth.
        send!(h, ACK, ack = U + acked, win = 0);
        h.now += Duration::from_secs(20);
        h.conn.on_timeout(h.now);
        h.recv_all();
        assert_eq!(h.conn.state(), State::Established);
        send!(h, ACK, ack = U + acked, win = 1460);
        let sent = h.recv_all();
        assert!(!sent.is_empty(), "the window opened: data goes out");
        acked += 1460;
        send!(h, ACK, ack = U + acked, win = 0);
    }
    assert_eq!(h.conn.state(), State::Established);
}

#[test]
fn window_closing_under_data_in_flight_waits_for_reopening_not_rto() {
    let mut h = H::established_with(rfc_limits_only(), 1460);
    h.conn.send(&[1u8; 3000]);
    h.recv_all();
    // The peer took the first segment and its buffer is full.
    send!(h, ACK, ack = U + 1460, win = 0);
    for _ in 0..20 {
        let d = h.conn.poll_timeout().unwrap();
        h.now = d;
        h.conn.on_timeout(d);
        recv!(h, ACK, seq = U + 1459, len = 0); // probes, not retransmissions
        send!(h, ACK, ack = U + 1460, win = 0);
    }
    assert_eq!(h.conn.stats().retransmissions, 0);
    send!(h, ACK, ack = U + 1460, win = 65535);
    recv!(h, ACK, seq = U + 1460, len = 1460);
    recv!(h, PSH | ACK, seq = U + 2920, len = 80);
}

// ----- RFC 5961 -------------------------------------------------------------

#[test]
fn rfc5961_rst_exactly_at_rcv_nxt_closes() {
    let mut h = H::established();
    send!(h, ACK, seq = P, data = b"abc");
    send!(h, RST, seq = P + 3);
    assert!(h.conn.is_closed());
}

#[test]
fn rfc5961_rst_out_of_window_is_ignored_silently() {
    let mut h = H::established();
    send!(h, RST, seq = P + 100_000);
    recv_nothing!(h);
    assert_eq!(h.conn.state(), State::Established);
}

#[test]
fn rfc5961_syn_in_established_gets_challenge_ack() {
    let mut h = H::established();
    send!(h, SYN, seq = P + 5);
    recv!(h, ACK, seq = U, ack = P);
    assert_eq!(h.conn.state(), State::Established);
    assert_eq!(h.conn.stats().challenge_acks, 1);
}

#[test]
fn rfc5961_ack_older_than_max_window_is_dropped() {
    let mut h = H::established();
    // SEG.ACK < SND.UNA - MAX.SND.WND (65535): the data is not accepted.
    send!(
        h,
        ACK,
        seq = P,
        ack = U.wrapping_sub(70_000),
        data = b"evil"
    );
    recv!(h, ACK, seq = U, ack = P);
    assert_eq!(h.conn.recv_available(), 0);
    // Within MAX.SND.WND an old ACK is fine.
    send!(
        h,
        ACK,
        seq = P,
        ack = U.wrapping_sub(60_000),
        data = b"fine"
    );
    assert_eq!(h.read_all(), b"fine");
}

#[test]
fn rfc5961_ack_beyond_snd_nxt_is_dropped_with_ack() {
    let mut h = H::established();
    send!(h, ACK, seq = P, ack = U + 10, data = b"evil");
    recv!(h, ACK, seq = U, ack = P);
    assert_eq!(h.conn.recv_available(), 0);
}

#[test]
fn rfc5961_challenge_acks_rate_limited_per_second() {
    let c = TcpConfig {
        challenge_ack_limit: 3,
        ..cfg()
    };
    let mut h = H::established_with(c, 1460);
    for i in 0..6 {
        send!(h, RST, seq = P + 10 + i);
    }
    assert_eq!(
        h.recv_all().len(),
        1,
        "pending ACKs coalesce into one segment"
    );
    assert_eq!(h.conn.stats().challenge_acks, 3);
    for i in 0..3 {
        send!(h, SYN, seq = P + 10 + i);
        recv_nothing!(h);
    }
    h.advance_ms(1000);
    send!(h, RST, seq = P + 10);
    recv!(h, ACK, ack = P);
    assert_eq!(h.conn.stats().challenge_acks, 4);
    assert_eq!(h.conn.state(), State::Established);
}

// ----- RACK-TLP (RFC 8985) ---------------------------------------------------

fn sack_conn() -> H {
    H::established_spec(cfg(), Spec::new(TcpFlags::SYN).mss(1460).sack_perm(true))
}

/// Twenty segments queued, ten out (IW); segments 1-3 SACKed at 1 ms:
/// SACK recovery retransmits segment 0 (cwnd 7, pipe 6: nothing new).
fn recovery_with_segment_0_resent(h: &mut H) {
    h.conn.send(&[7u8; 20 * MSS as usize]);
    assert_eq!(h.recv_all().len(), 10);
    h.advance_ms(1);
    send!(h, ACK, ack = U, sack = &[(U + MSS, U + 4 * MSS)]);
    recv!(h, ACK, seq = U, len = MSS);
    recv_nothing!(h);
}

#[test]
fn rack_marks_lost_retransmission_when_later_segment_sacked() {
    let mut h = sack_conn();
    recovery_with_segment_0_resent(&mut h);
    // Segments 4-9 arrive (all sent before the retransmission): nothing
    // says the retransmission is lost; pipe falls and new data goes out.
    h.advance_ms(1);
    send!(h, ACK, ack = U, sack = &[(U + MSS, U + 10 * MSS)]);
    let new: Vec<u32> = h.recv_all().iter().map(|o| o.get("seq") as u32).collect();
    assert!(
        !new.is_empty() && new.iter().all(|&s| s >= U + 10 * MSS),
        "{new:?}"
    );
    // One segment sent after the retransmission is SACKed one RTT later
    // while SND.UNA still waits: the retransmission was lost (RFC 8985
    // 6.2), with no need for DupThresh segments above it.
    h.advance_ms(1);
    send!(
        h,
        ACK,
        ack = U,
        sack = &[(U + 10 * MSS, U + 11 * MSS), (U + MSS, U + 10 * MSS)]
    );
    recv!(h, ACK, seq = U, len = MSS);
    let st = h.conn.stats();
    assert_eq!(st.retransmissions, 0, "no RTO");
    assert_eq!(st.sack_recoveries, 1, "same recovery episode");
    assert_eq!(st.segments_retransmitted, 2);
}

#[test]
fn rack_does_not_mark_retransmission_lost_for_segments_sent_before_it() {
    let mut h = sack_conn();
    recovery_with_segment_0_resent(&mut h);
    // Everything sent before the retransmission is SACKed, a round trip
    // later: RACK needs a segment sent after it to be delivered.
    h.advance_ms(1);
    send!(h, ACK, ack = U, sack = &[(U + MSS, U + 10 * MSS)]);
    let out = h.recv_all();
    assert!(
        out.iter().all(|o| o.get("seq") as u32 >= U + 10 * MSS),
        "{out:?}"
    );
    assert_eq!(h.conn.stats().segments_retransmitted, 1);
}

#[test]
fn rack_waits_reordering_window_before_marking_retransmission_lost() {
    let mut h = sack_conn();
    h.conn.send(&[7u8; 20 * MSS as usize]);
    assert_eq!(h.recv_all().len(), 10);
    // Segments 1-3 are SACKed 4 ms after they were sent.
    h.advance_ms(4);
    send!(h, ACK, ack = U, sack = &[(U + MSS, U + 4 * MSS)]);
    recv!(h, ACK, seq = U, len = MSS);
    send!(h, ACK, ack = U, sack = &[(U + MSS, U + 10 * MSS)]);
    recv!(h, ACK, seq = U + 10 * MSS, len = MSS);
    h.recv_all();
    // The first new segment is SACKed 0.5 ms after it was sent (min RTT
    // now 0.5 ms, reordering window min_rtt / 4 = 125 us): sent after the
    // retransmission, but less than RACK.rtt + reo_wnd ago.
    h.now += Duration::from_micros(500);
    send!(
        h,
        ACK,
        ack = U,
        sack = &[(U + 10 * MSS, U + 11 * MSS), (U + MSS, U + 10 * MSS)]
    );
    let out = h.recv_all();
    assert!(
        out.iter().all(|o| o.get("seq") as u32 >= U + 11 * MSS),
        "{out:?}"
    );
    // RFC 8985 6.3: the reordering timer fires at xmit + RACK.rtt +
    // reo_wnd = 625 us after the retransmission; then it is lost.
    let due = h.conn.poll_timeout().expect("reordering timer");
    assert_eq!(due - h.now, Duration::from_micros(125));
    h.now = due;
    h.conn.on_timeout(due);
    recv!(h, ACK, seq = U, len = MSS);
    assert_eq!(h.conn.stats().retransmissions, 0, "no RTO");
}

#[test]
fn tlp_at_tail_of_sack_recovery_resends_snd_una_instead_of_waiting_for_rto() {
    let mut h = sack_conn();
    // One round trip of 1 ms for an SRTT.
    h.conn.send(&[7u8; 2 * MSS as usize]);
    assert_eq!(h.recv_all().len(), 2);
    h.advance_ms(1);
    send!(h, ACK, ack = U + 2 * MSS);
    let u = U + 2 * MSS;
    h.conn.send(&[7u8; 10 * MSS as usize]);
    assert_eq!(h.recv_all().len(), 10);
    h.advance_ms(1);
    send!(h, ACK, ack = u, sack = &[(u + MSS, u + 10 * MSS)]);
    recv!(h, ACK, seq = u, len = MSS);
    recv_nothing!(h);
    // Every hole is resent; its ACK (or the retransmission) is lost.
    // PTO = 2 * SRTT + 2 ms, far before the 200 ms RTO: the probe
    // is the segment at SND.UNA again, which the peer must answer at once.
    let srtt = h.conn.stats().srtt.expect("srtt");
    let due = h.conn.poll_timeout().expect("probe timer");
    assert_eq!(due - h.now, srtt * 2 + Duration::from_millis(2));
    h.now = due;
    h.conn.on_timeout(due);
    recv!(h, ACK, seq = u, len = MSS);
    recv_nothing!(h);
    let st = h.conn.stats();
    assert_eq!(st.retransmissions, 0, "no RTO");
    assert_eq!(st.segments_retransmitted, 2);
    // Its ACK ends the recovery.
    send!(h, ACK, ack = u + 10 * MSS);
    assert_eq!(h.conn.send_queued(), 0);
    assert_eq!(h.conn.poll_timeout(), h.idle_deadline());
}

#[test]
fn tlp_probe_fires_at_two_srtt_plus_two_ms_and_resends_last_segment() {
    let mut h = sack_conn();
    h.conn.send(&[7u8; 2 * MSS as usize]);
    assert_eq!(h.recv_all().len(), 2);
    h.advance_ms(3);
    send!(h, ACK, ack = U + 2 * MSS);
    h.conn.send(&[7u8; 4 * MSS as usize]);
    assert_eq!(h.recv_all().len(), 4);
    // PTO = 2 * SRTT + 2 ms (RFC 8985 7.2, slack as Linux); the probe
    // is the last segment sent again (the peer answers a duplicate at
    // once), not an RTO.
    let srtt = h.conn.stats().srtt.expect("srtt");
    let cwnd = h.conn.stats().cwnd;
    let due = h.conn.poll_timeout().expect("probe timer");
    assert_eq!(due - h.now, srtt * 2 + Duration::from_millis(2));
    h.now = due;
    h.conn.on_timeout(due);
    recv!(h, PSH | ACK, seq = U + 5 * MSS, len = MSS);
    recv_nothing!(h);
    let st = h.conn.stats();
    assert_eq!(st.retransmissions, 0);
    assert_eq!(st.segments_retransmitted, 1);
    assert_eq!(st.cwnd, cwnd, "a probe does not touch cwnd");
}
