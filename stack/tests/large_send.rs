//! Large segments (`Connection::poll_transmit_large` and
//! `poll_transmit_borrowed`): a run of new data leaves as one segment the
//! device cuts (TSO). Cut into its pieces as the kernel cuts it, it must be
//! exactly the segments the plain call makes, one after another, through
//! loss recovery and the FIN. Two connections are driven in lockstep by
//! the same pnet-crafted peer segments at the same instants, one drained
//! with the plain call and one with the large one, and every segment they
//! send is read back with pnet and compared.

#[macro_use]
mod common;

use common::{decode, Out, Spec, H, OUR_ISS, PEER_ISS};
use pnet_packet::tcp::TcpFlags;
use vnic_stack::{Payload, Segment, TcpConfig, Transmit};

const P: u32 = PEER_ISS + 1;
const U: u32 = OUR_ISS + 1;

/// How a connection is drained.
#[derive(Clone, Copy, PartialEq)]
enum Drain {
    Plain,
    /// `poll_transmit_large` with this limit.
    Large(usize),
    /// `poll_transmit_borrowed` with this limit.
    Borrowed(usize),
}

/// What draining sent, each segment read by pnet, and how many large
/// segments there were.
fn drain(h: &mut H, how: Drain) -> (Vec<Out>, usize) {
    let mut outs = Vec::new();
    let mut large = 0;
    let mut spare = Vec::new();
    loop {
        let (segs, was_large) = match how {
            Drain::Plain => match h.conn.poll_transmit(h.now) {
                Some(s) => (vec![s], false),
                None => break,
            },
            Drain::Large(limit) => {
                let Some(s) = h.conn.poll_transmit_large(h.now, &mut spare, limit) else {
                    break;
                };
                let piece = h.conn.large_piece();
                let big = s.payload.len() > piece;
                (cut(&s, &s.payload, piece), big)
            }
            Drain::Borrowed(limit) => match h.conn.poll_transmit_borrowed(h.now, &mut spare, limit)
            {
                None => break,
                Some(Transmit::Segment(s)) => (vec![s], false),
                Some(Transmit::Large {
                    header,
                    data,
                    piece,
                }) => {
                    assert!(
                        header.payload.is_empty(),
                        "a borrowed header has no payload"
                    );
                    let joined = [data[0], data[1]].concat();
                    (cut(&header, &joined, piece), true)
                }
            },
        };
        if was_large {
            large += 1;
        }
        for s in segs {
            let mut bytes = Vec::new();
            s.emit(h.tuple.local.ip(), h.tuple.remote.ip(), &mut bytes);
            outs.push(decode(&bytes, h.tuple.local.ip(), h.tuple.remote.ip()));
        }
    }
    (outs, large)
}

/// The kernel's TSO cut of `header` carrying `payload`: pieces of `piece`
/// bytes, each with the header, its own sequence number, PSH and FIN on
/// the last only.
fn cut(header: &Segment, payload: &[u8], piece: usize) -> Vec<Segment> {
    if payload.len() <= piece {
        let mut s = header.header_only();
        s.payload = Payload::from(payload.to_vec());
        return vec![s];
    }
    assert_eq!(payload.len() % piece, 0, "a large segment is whole pieces");
    assert_eq!(
        header.control,
        vnic_stack::Control::None,
        "a large segment carries no FIN"
    );
    let n = payload.len() / piece;
    payload
        .chunks(piece)
        .enumerate()
        .map(|(i, chunk)| {
            let mut s = header.header_only();
            s.seq = header.seq + i * piece;
            s.psh = header.psh && i + 1 == n;
            s.payload = Payload::from(chunk.to_vec());
            s
        })
        .collect()
}

fn conn() -> H {
    let syn = Spec::new(TcpFlags::SYN)
        .mss(1460)
        .sack_perm(true)
        .wscale(7)
        .ts((1, 0));
    H::established_spec(TcpConfig::default(), syn)
}

/// The peer's ACK of `ack` with SACK blocks `sack`, its window wide open
/// (8 MiB with its scale of 7).
fn ack(h: &mut H, ack: u32, sack: &[(u32, u32)], tsval: u32) {
    let spec = Spec::new(TcpFlags::ACK)
        .seq(P)
        .ack(ack)
        .win(65535)
        .ts((tsval, 0))
        .sack(sack);
    h.send(spec);
}

/// Drives a plain and a large connection in lockstep through `rounds`
/// of (send what may go, the peer answers); returns how many large
/// segments the second made.
fn lockstep(
    how: Drain,
    data: &[u8],
    close: bool,
    answer: impl Fn(usize, &[Out]) -> Vec<(u32, Vec<(u32, u32)>)>,
) -> usize {
    let mut a = conn();
    let mut b = conn();
    let queued = a.conn.send(data);
    assert_eq!(queued, b.conn.send(data));
    assert!(queued >= data.len().min(100_000), "queued {queued}");
    let data = &data[..queued];
    if close {
        a.conn.close();
        b.conn.close();
    }
    let mut large = 0;
    let mut tsval = 10;
    let mut all = Vec::new();
    for round in 0..400 {
        let (oa, _) = drain(&mut a, Drain::Plain);
        let (ob, lb) = drain(&mut b, how);
        assert_eq!(oa, ob, "round {round}: the large sender's pieces differ");
        large += lb;
        all.extend(oa.iter().cloned());
        if oa.is_empty() && a.conn.poll_timeout().is_none() {
            break;
        }
        for (n, sack) in answer(round, &oa) {
            tsval += 1;
            ack(&mut a, n, &sack, tsval);
            ack(&mut b, n, &sack, tsval);
        }
        a.advance_ms(1);
        b.advance_ms(1);
    }
    // Every byte left, in order, once (retransmissions aside).
    let mut next = U;
    let mut got = Vec::new();
    for o in &all {
        if o.seq == next && !o.payload.is_empty() {
            got.extend_from_slice(&o.payload);
            next += o.payload.len() as u32;
        }
    }
    assert_eq!(got.len(), data.len(), "the stream's length");
    assert!(got == data, "the stream the peer would read differs");
    large
}

/// The peer acknowledges everything it saw.
fn ack_all(_: usize, outs: &[Out]) -> Vec<(u32, Vec<(u32, u32)>)> {
    let top = outs
        .iter()
        .map(|o| o.seq + o.payload.len() as u32 + u32::from(o.flags & TcpFlags::FIN != 0))
        .max();
    top.map(|t| vec![(t, Vec::new())]).unwrap_or_default()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn a_large_segment_is_the_plain_segments_joined() {
    for how in [Drain::Large(64_000), Drain::Borrowed(64_000)] {
        let large = lockstep(how, &pattern(600_000), true, ack_all);
        assert!(large > 5, "the bulk went as large segments ({large})");
    }
}

#[test]
fn a_limit_below_two_pieces_sends_plain_segments() {
    for how in [Drain::Large(2_000), Drain::Borrowed(1_448)] {
        assert_eq!(lockstep(how, &pattern(100_000), true, ack_all), 0);
    }
}

#[test]
fn loss_recovery_resends_the_same_piece() {
    // Round 1's third segment is lost: the peer SACKs what follows it,
    // three times, then acknowledges everything.
    let answer = |round: usize, outs: &[Out]| -> Vec<(u32, Vec<(u32, u32)>)> {
        if round == 1 && outs.len() > 4 {
            let lost = &outs[2];
            let from = lost.seq;
            let after = lost.seq + lost.payload.len() as u32;
            let top = outs
                .iter()
                .map(|o| o.seq + o.payload.len() as u32)
                .max()
                .unwrap_or(after);
            vec![(from, vec![(after, top)]); 3]
        } else {
            ack_all(round, outs)
        }
    };
    for how in [Drain::Large(64_000), Drain::Borrowed(64_000)] {
        let large = lockstep(how, &pattern(400_000), true, answer);
        assert!(large > 3, "{large}");
    }
}

#[test]
fn the_fin_never_rides_a_large_segment() {
    // The data ends on a piece boundary: the last piece and the FIN go
    // as the plain call sends them (cut() asserts no FIN in a run).
    let piece = 1448;
    for how in [Drain::Large(64_000), Drain::Borrowed(64_000)] {
        lockstep(how, &pattern(piece * 50), true, ack_all);
    }
}
