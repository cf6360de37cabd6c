//! Passive opens from SYN cookies, in the stack: `SynCookies::answer`
//! answers a SYN statelessly, `Connection::accept_cookie` opens the
//! connection the cookie ACK stands for. The peer's segments are crafted
//! with pnet, ours read back with pnet.

#[macro_use]
mod common;

use common::{craft, decode, tuple, Spec, H, PEER_ISS};
use pnet_packet::tcp::TcpFlags;
use std::time::{Duration, Instant};
use vnic_stack::{Connection, Event, State, SynCookies, TcpConfig};

fn parse(tuple: &vnic_stack::FourTuple, spec: &Spec) -> vnic_stack::Segment {
    let bytes = craft(spec, tuple.remote, tuple.local);
    vnic_stack::parse(tuple.remote.ip(), tuple.local.ip(), &bytes).expect("valid segment")
}

#[test]
fn a_cookie_ack_with_data_opens_an_established_connection_that_sent_nothing_yet() {
    let cfg = TcpConfig::default();
    let t = tuple(false);
    let t0 = Instant::now();
    let jar = SynCookies::new([3; 16], t0);
    let syn = parse(
        &t,
        &Spec::new(TcpFlags::SYN)
            .seq(PEER_ISS)
            .mss(1460)
            .wscale(7)
            .sack_perm(true),
    );
    // The stateless answer: a SYN|ACK with the cookie as ISN, the MSS, and
    // no option a cookie cannot remember.
    let sa = jar.answer(t0, &t, &syn, 1460);
    let mut bytes = Vec::new();
    sa.emit(t.local.ip(), t.remote.ip(), &mut bytes);
    let out = decode(&bytes, t.local.ip(), t.remote.ip());
    assert_eq!(out.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(out.ack, PEER_ISS + 1);
    assert_eq!(out.get("mss"), 1460);
    assert_eq!(
        (out.wscale, out.sack_perm, out.ts),
        (None, false, None),
        "{out:?}"
    );
    let cookie = out.seq;
    // The client's ACK, with its first request in it, 30 ms later.
    let now = t0 + Duration::from_millis(30);
    let ack = parse(
        &t,
        &Spec::new(TcpFlags::ACK | TcpFlags::PSH)
            .seq(PEER_ISS + 1)
            .ack(cookie.wrapping_add(1))
            .win(502)
            .data(b"GET / HTTP/1.1\r\n\r\n"),
    );
    let mss = jar.check(now, &t, &ack).expect("a genuine cookie");
    let conn = Connection::accept_cookie(now, &cfg, t, &ack, mss).expect("it acknowledges");
    let mut h = H {
        conn,
        t0,
        now,
        tuple: t,
        cfg,
    };
    assert_eq!(h.conn.state(), State::Established);
    assert_eq!(h.events().first(), Some(&Event::Established));
    assert_eq!(h.read_all(), b"GET / HTTP/1.1\r\n\r\n");
    // Its SYN|ACK went out already: nothing to send but, later, the ACK
    // of the request; and no RTT sample from a send time it never knew.
    let sent = h.recv_all();
    assert!(
        sent.iter().all(|o| o.flags & TcpFlags::SYN == 0),
        "no SYN|ACK again: {sent:?}"
    );
    assert_eq!(h.conn.stats().srtt, None);
    // Sending works from the cookie's sequence space, unscaled window.
    assert_eq!(h.conn.send(b"HTTP/1.1 200 OK\r\n\r\n"), 19);
    let data = h.recv_all();
    let reply = data
        .iter()
        .find(|o| !o.payload.is_empty())
        .expect("the reply");
    assert_eq!(reply.seq, cookie.wrapping_add(1));
    assert_eq!(reply.ack, PEER_ISS + 1 + 18);
}

#[test]
fn an_ack_without_acknowledgement_opens_nothing() {
    let t = tuple(false);
    let now = Instant::now();
    let mut seg = parse(&t, &Spec::new(TcpFlags::ACK).seq(PEER_ISS + 1).ack(5));
    seg.ack = None;
    assert!(Connection::accept_cookie(now, &TcpConfig::default(), t, &seg, 1460).is_none());
}
