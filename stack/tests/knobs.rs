//! The TCP knobs an operator sets per vnic (NonStop's per-monitor ones,
//! issue 20 part 4), each shown doing what its doc says: the maximum RTO,
//! the retransmission count, the total retransmission time, delayed ACKs
//! and their time, the send space. The peer's segments are crafted with
//! pnet, ours read back with pnet, time injected.

#[macro_use]
mod common;

use std::time::Duration;

use common::{H, OUR_ISS, PEER_ISS};
use vnic_stack::{CloseReason, Event, State, TcpConfig};

/// The peer's next sequence number right after the handshake.
const P: u32 = PEER_ISS + 1;
/// Our next sequence number right after the handshake.
const U: u32 = OUR_ISS + 1;

/// A connection whose retransmissions only the knob under test ends.
fn cfg() -> TcpConfig {
    TcpConfig {
        max_retransmissions: 100,
        total_retransmission_time: None,
        idle_timeout: None,
        ..TcpConfig::default()
    }
}

/// Sends `data` at the current time; the first transmission goes out.
fn send_data(h: &mut H, seq: u32, data: &[u8]) {
    assert_eq!(h.conn.send(data), data.len());
    recv!(h, PSH | ACK, seq = seq, len = data.len());
    recv_nothing!(h);
}

/// At `due` ms (not a millisecond before) the segment at `seq` goes again.
fn retransmitted_at(h: &mut H, due: u64, seq: u32, len: usize) {
    h.at_ms(due - 1);
    recv_nothing!(h);
    h.at_ms(due);
    recv!(h, PSH | ACK, seq = seq, len = len);
    recv_nothing!(h);
}

/// At `due` ms (not a millisecond before) the connection gives up: RST,
/// and the application hears it timed out.
fn timed_out_at(h: &mut H, due: u64, seq: u32) {
    h.at_ms(due - 1);
    recv_nothing!(h);
    assert_eq!(h.conn.state(), State::Established);
    h.at_ms(due);
    recv!(h, RST | ACK, seq = seq, ack = P);
    assert!(h.conn.is_closed());
    assert_eq!(
        h.events().last(),
        Some(&Event::Closed(CloseReason::TimedOut))
    );
}

// ----- total retransmission time ------------------------------------------

/// The peer vanishes: retransmissions back off (200 ms, 400, 800, ...)
/// and the connection is reset when the total time has passed since the
/// first timeout, between two backoffs, long before the count runs out.
#[test]
fn total_retransmission_time_resets_a_connection_that_makes_no_progress() {
    let c = TcpConfig {
        total_retransmission_time: Some(Duration::from_secs(10)),
        ..cfg()
    };
    // The handshake's RTT sample is 0, so the RTO sits at rto_min (200 ms).
    let mut h = H::established_with(c, 1460);
    send_data(&mut h, U, b"data");
    for due in [200, 600, 1400, 3000, 6200] {
        retransmitted_at(&mut h, due, U, 4);
    }
    // The next backoff would be at 12 600 ms; the limit (the first
    // timeout at 200 ms + 10 s) comes first.
    timed_out_at(&mut h, 10_200, U + 4);
    assert_eq!(h.conn.stats().retransmissions, 5);
    recv_nothing!(h);
}

/// An acknowledgement of new data is progress: the total time counts
/// again from the next timeout.
#[test]
fn progress_restarts_the_total_retransmission_time() {
    let c = TcpConfig {
        total_retransmission_time: Some(Duration::from_secs(3)),
        ..cfg()
    };
    let mut h = H::established_with(c, 1460);
    send_data(&mut h, U, b"data");
    for due in [200, 600, 1400] {
        retransmitted_at(&mut h, due, U, 4);
    }
    // 2.5 s after the first timeout the peer is back for one ACK.
    h.at_ms(2_700);
    send!(h, ACK, seq = P, ack = U + 4);
    recv_nothing!(h);
    send_data(&mut h, U + 4, b"more");
    // The backoff starts again from rto_min; without the ACK the limit
    // would have struck at 3 200 ms.
    for due in [2_900, 3_300, 4_100, 5_700] {
        retransmitted_at(&mut h, due, U + 4, 4);
    }
    // First timeout 2 900 ms + 3 s, before the backoff at 8 900 ms.
    timed_out_at(&mut h, 5_900, U + 8);
}

/// Without a total time, the count alone ends a stalled connection, as
/// before the knob: a whole day of 1 s retransmissions at rto_max.
#[test]
fn without_a_total_retransmission_time_only_the_count_ends_it() {
    let c = TcpConfig {
        rto_max: Duration::from_secs(1),
        max_retransmissions: 20,
        ..cfg()
    };
    let mut h = H::established_with(c, 1460);
    send_data(&mut h, U, b"data");
    let mut at = 0;
    for n in 0..20 {
        at += (200u64 << n).min(1000);
        retransmitted_at(&mut h, at, U, 4);
    }
    timed_out_at(&mut h, at + 1000, U + 4);
}

// ----- maximum RTO and retransmission count ---------------------------------

/// `rto_max` caps the exponential backoff: 200, 400, 800, then 1 s each.
#[test]
fn rto_max_caps_the_backoff() {
    let c = TcpConfig {
        rto_max: Duration::from_secs(1),
        ..cfg()
    };
    let mut h = H::established_with(c, 1460);
    send_data(&mut h, U, b"data");
    for due in [200, 600, 1400, 2400, 3400, 4400] {
        retransmitted_at(&mut h, due, U, 4);
    }
}

/// `max_retransmissions` is the number of retransmissions sent before the
/// connection is reset at the next timeout.
#[test]
fn max_retransmissions_is_the_count_of_retransmissions_before_the_reset() {
    let c = TcpConfig {
        max_retransmissions: 2,
        ..cfg()
    };
    let mut h = H::established_with(c, 1460);
    send_data(&mut h, U, b"data");
    for due in [200, 600] {
        retransmitted_at(&mut h, due, U, 4);
    }
    timed_out_at(&mut h, 1_400, U + 4);
    assert_eq!(h.conn.stats().retransmissions, 2);
}

// ----- delayed ACKs ---------------------------------------------------------

/// Delayed ACKs off (a zero time): every segment is acknowledged at once.
#[test]
fn delayed_ack_off_acks_every_segment_at_once() {
    let c = TcpConfig {
        delayed_ack: Duration::ZERO,
        ..cfg()
    };
    let mut h = H::established_with(c, 1460);
    for (i, chunk) in [b"one", b"two", b"six"].iter().enumerate() {
        let seq = P + 3 * i as u32;
        send!(h, ACK, seq = seq, ack = U, data = *chunk);
        recv!(h, ACK, seq = U, ack = seq + 3);
        recv_nothing!(h);
    }
}

/// With delayed ACKs on, a lone small segment is acknowledged after the
/// configured time, not before.
#[test]
fn delayed_ack_time_is_how_long_an_ack_waits() {
    let c = TcpConfig {
        delayed_ack: Duration::from_millis(100),
        ..cfg()
    };
    let mut h = H::established_with(c, 1460);
    send!(h, ACK, seq = P, ack = U, data = b"one");
    recv_nothing!(h);
    h.at_ms(99);
    recv_nothing!(h);
    h.at_ms(100);
    recv!(h, ACK, seq = U, ack = P + 3);
}

// ----- send space -------------------------------------------------------------

/// The send space is what the application may queue, unsent and
/// unacknowledged together; acknowledged bytes give it back.
#[test]
fn send_buffer_limits_what_the_application_may_queue() {
    let c = TcpConfig {
        send_buffer: 4096,
        ..cfg()
    };
    let mut h = H::established_with(c, 1460);
    assert_eq!(h.conn.send_capacity(), 4096);
    assert_eq!(h.conn.send(&[7u8; 10_000]), 4096);
    assert_eq!(h.conn.send_capacity(), 0);
    assert_eq!(h.conn.send(b"more"), 0);
    h.recv_all();
    send!(h, ACK, seq = P, ack = U + 1460);
    assert_eq!(h.conn.send_capacity(), 1460);
}
