//! Regression tests from fuzzing the stack (`fuzz/`, target `stack`):
//! hostile scripts of peer segments, time steps and application calls
//! that the fuzzer's corpus keeps exploring, written out as packet
//! traces. Each checks the fuzz target's invariants on everything we
//! send: it reads back with pnet (checksum included), no payload exceeds
//! the peer's MSS, every payload byte is the one the application queued
//! at that stream offset, and a closed connection has no timer left.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Out, Spec, H, OUR_ISS, PEER_ISS};
use pnet_packet::tcp::TcpFlags;
use vnic_stack::{Disposition, State, TcpConfig};

/// The peer's next sequence number right after the handshake.
const P: u32 = PEER_ISS + 1;
/// Our next sequence number right after the handshake.
const U: u32 = OUR_ISS + 1;

/// The application's byte at stream offset `i`.
fn app_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// Queues `n` pattern bytes after the `sent` already queued; returns the new total.
fn app_send(h: &mut H, sent: usize, n: usize) -> usize {
    let data: Vec<u8> = (sent..sent + n).map(app_byte).collect();
    sent + h.conn.send(&data)
}

/// Everything we send now, each segment checked against the invariants
/// (`mss`: the peer's MSS; `sent`: bytes the application queued).
fn drain(h: &mut H, mss: usize, sent: usize) -> Vec<Out> {
    let out = h.recv_all();
    assert!(out.len() < 100_000, "poll_transmit never ends");
    for o in &out {
        assert!(
            o.payload.len() <= mss && o.payload.len() <= h.conn.send_mss(),
            "{o:?}: more than MSS {mss}"
        );
        if o.payload.is_empty() {
            continue;
        }
        let off = o.seq.wrapping_sub(U) as usize;
        assert!(off + o.payload.len() <= sent, "{o:?}: bytes never queued");
        for (i, b) in o.payload.iter().enumerate() {
            assert_eq!(*b, app_byte(off + i), "{o:?}: wrong byte at {}", off + i);
        }
    }
    if h.conn.state() == State::Closed {
        assert_eq!(
            h.conn.poll_timeout(),
            None,
            "a closed connection has timers"
        );
    }
    out
}

/// Moves time to each deadline up to `ms` from now, draining as we go.
fn wait(h: &mut H, ms: u64, mss: usize, sent: usize) {
    let until = h.now + Duration::from_millis(ms);
    while let Some(t) = h.conn.poll_timeout().filter(|t| *t <= until) {
        h.now = h.now.max(t);
        h.conn.on_timeout(h.now);
        if let Some(next) = h.conn.poll_timeout() {
            assert!(next > h.now, "a timer due now survived on_timeout");
        }
        drain(h, mss, sent);
    }
    h.now = until;
}

fn sack_ts() -> Spec {
    Spec::new(TcpFlags::SYN)
        .mss(1000)
        .sack_perm(true)
        .wscale(7)
        .ts((100, 0))
}

/// SACK blocks the fuzzer loves: inverted, past SND.MAX, half the
/// sequence space away, below SND.UNA, and three at once (all that fit
/// beside timestamps). None may move
/// SND.UNA, mark unsent data or make us send bytes out of place.
#[test]
fn hostile_sack_blocks_never_corrupt_the_stream() {
    let mut h = H::established_spec(TcpConfig::default(), sack_ts());
    let mss = 1000;
    let sent = app_send(&mut h, 0, 8000);
    let out = drain(&mut h, mss, sent);
    assert!(!out.is_empty());
    let ts = |h: &H| (101 + h.now.duration_since(h.t0).as_millis() as u32, 0);
    let blocks: [&[(u32, u32)]; 6] = [
        &[(U + 3000, U + 2000)],
        &[(U + 7000, U + 90_000)],
        &[(U.wrapping_add(1 << 31), U.wrapping_add((1 << 31) + 1000))],
        &[(U - 5000, U - 1000)],
        &[
            (U + 1000, U + 2000),
            (U + 3000, U + 4000),
            (U + 5000, U + 7000),
        ],
        &[(U, U + 8000)],
    ];
    for b in blocks {
        for _ in 0..3 {
            let t = ts(&h);
            send!(h, ACK, ack = U, sack = b, ts = t);
            drain(&mut h, mss, sent);
        }
    }
    wait(&mut h, 5_000, mss, sent);
    let t = ts(&h);
    send!(h, ACK, ack = U + sent as u32, ts = t);
    drain(&mut h, mss, sent);
    assert_eq!(h.conn.send_queued(), 0, "everything acknowledged");
    assert_eq!(h.conn.state(), State::Established);
}

/// A peer MSS of 1 (and timestamps eating the whole MSS) gives segments of
/// the MSS floor (Linux's tcp_min_snd_mss, 48) less the timestamps option,
/// and the transfer completes.
#[test]
fn peer_mss_of_one_gives_segments_of_the_mss_floor() {
    let syn = Spec::new(TcpFlags::SYN).mss(1).ts((1, 0));
    let mut h = H::established_spec(TcpConfig::default(), syn);
    // The floor (48) less the timestamps option (12).
    let seg = vnic_stack::MIN_SND_MSS - 12;
    assert_eq!(h.conn.send_mss(), seg);
    let sent = app_send(&mut h, 0, 500);
    let mut acked = 0;
    for _ in 0..200 {
        let out = drain(&mut h, seg, sent);
        if let Some(last) = out.iter().rfind(|o| !o.payload.is_empty()) {
            acked = (last.seq - U) as usize + last.payload.len();
            send!(h, ACK, ack = U + acked as u32, ts = (2, 0));
        } else {
            wait(&mut h, 1_000, 1, sent);
        }
        if acked == sent {
            break;
        }
    }
    assert_eq!(acked, sent);
}

/// A zero window with the largest scale, then time running for minutes:
/// persist probes carry the right byte, and giving up leaves no timer.
#[test]
fn zero_window_for_minutes_keeps_probing_the_right_byte() {
    let syn = Spec::new(TcpFlags::SYN).mss(1460).wscale(14).win(0);
    let mut h = H::established_spec(TcpConfig::default(), syn);
    send!(h, ACK, win = 0);
    let sent = app_send(&mut h, 0, 5000);
    drain(&mut h, 1460, sent);
    for _ in 0..30 {
        wait(&mut h, 30_000, 1460, sent);
        if h.conn.state() == State::Closed {
            break;
        }
        send!(h, ACK, win = 0);
        drain(&mut h, 1460, sent);
    }
    // The window opens wide (65535 << 14): no overflow, data flows.
    if h.conn.state() != State::Closed {
        send!(h, ACK, win = 65535);
        drain(&mut h, 1460, sent);
    }
}

/// Closing in every state the fuzzer reaches, then a long wait: every
/// path ends in CLOSED (or TIME-WAIT's end) with no timer left.
#[test]
fn every_close_path_ends_without_timers() {
    let cfg = TcpConfig {
        time_wait: Duration::from_secs(1),
        ..TcpConfig::default()
    };
    // CLOSE-WAIT -> LAST-ACK, FIN never acknowledged.
    let mut h = H::established_with(cfg.clone(), 1460);
    send!(h, FIN | ACK);
    let sent = app_send(&mut h, 0, 3000);
    h.conn.close();
    drain(&mut h, 1460, sent);
    assert_eq!(h.conn.state(), State::LastAck);
    wait(&mut h, 3_600_000, 1460, sent);
    assert_eq!(h.conn.state(), State::Closed);
    // FIN-WAIT-1 -> CLOSING (simultaneous close) -> TIME-WAIT -> CLOSED.
    let mut h = H::established_with(cfg.clone(), 1460);
    h.conn.close();
    drain(&mut h, 1460, 0);
    send!(h, FIN | ACK, ack = U);
    drain(&mut h, 1460, 0);
    assert_eq!(h.conn.state(), State::Closing);
    send!(h, ACK, seq = P + 1, ack = U + 1);
    drain(&mut h, 1460, 0);
    assert_eq!(h.conn.state(), State::TimeWait);
    wait(&mut h, 2_000, 1460, 0);
    assert_eq!(h.conn.state(), State::Closed);
    // SYN-RECEIVED: close before the handshake ends, the ACK never comes.
    let mut h = H::accept(cfg.clone(), true, Spec::new(TcpFlags::SYN).seq(PEER_ISS));
    h.conn.close();
    drain(&mut h, 1220, 0);
    wait(&mut h, 3_600_000, 1220, 0);
    assert_eq!(h.conn.state(), State::Closed);
    // SYN-SENT: no answer at all.
    let mut h = H::connect(cfg, false);
    drain(&mut h, 536, 0);
    wait(&mut h, 3_600_000, 536, 0);
    assert_eq!(h.conn.state(), State::Closed);
}

/// TIME-WAIT hit by RSTs, old duplicates and a new SYN: the SYN
/// reincarnates (the caller accepts it anew), nothing else reopens it.
#[test]
fn time_wait_under_a_segment_storm() {
    let cfg = TcpConfig {
        time_wait: Duration::from_secs(5),
        ..TcpConfig::default()
    };
    let mut h = H::established_with(cfg, 1460);
    h.conn.close();
    drain(&mut h, 1460, 0);
    send!(h, FIN | ACK, ack = U + 1);
    drain(&mut h, 1460, 0);
    assert_eq!(h.conn.state(), State::TimeWait);
    // Old duplicates: data, a FIN again, an ACK of nothing sent.
    send!(h, ACK, seq = P - 100, data = &[1; 50]);
    send!(h, FIN | ACK, ack = U + 1);
    send!(h, ACK, ack = U + 70_000);
    drain(&mut h, 1460, 0);
    assert_eq!(h.conn.state(), State::TimeWait);
    // An old SYN (below RCV.NXT) does not reincarnate.
    let d = send!(h, SYN, seq = PEER_ISS);
    assert_eq!(d, Disposition::Handled);
    drain(&mut h, 1460, 0);
    // A new SYN above RCV.NXT does.
    let d = send!(h, SYN, seq = P + 100_000);
    assert_eq!(d, Disposition::Reincarnate);
}
