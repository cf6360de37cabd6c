//! The `--trace` line: one tcpdump-like line per frame, with the adapter's
//! decision after a `|`, e.g.
//!
//! ```text
//! 12:00:01.123456 in  10.0.0.1.40000 > 10.0.0.2.80: Flags [S], seq 1000, win 64240, length 0 | cpu=2 rr-new port=80 slot=0
//! ```
//!
//! Times are UTC, to the microsecond. TCP flags use tcpdump's letters
//! (`F S R P . U E W`), sequence numbers are absolute, `length` is the
//! TCP/UDP payload (the ICMP message for ICMP). Frames are parsed with
//! etherparse's lax slicer, so a cut-off frame still shows what it has
//! and ends in `[|truncated]`; no input makes these functions panic.

use super::Direction;
use etherparse::{
    EtherType, IpNumber, LaxIpPayloadSlice, LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice,
};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};

/// The line for one frame: time, direction, what the frame is, and the
/// decision (`comment`, with its leading `in `/`out ` dropped since the
/// direction is already shown). Pure, so every kind of frame is tested.
pub fn format_line(when: SystemTime, dir: Direction, frame: &[u8], comment: &str) -> String {
    let mut s = String::with_capacity(160);
    push_time(&mut s, when);
    s.push_str(match dir {
        Direction::In => " in  ",
        Direction::Out => " out ",
    });
    describe(&mut s, frame);
    let decision = comment
        .strip_prefix(dir.name())
        .and_then(|r| r.strip_prefix(' '))
        .unwrap_or(comment)
        .trim();
    if !decision.is_empty() {
        s.push_str(" | ");
        s.push_str(decision);
    }
    s
}

/// The line for a connection event reported by a processor
/// (`12:00:01.123456 conn cpu=2 new 10.0.0.1:40000 > 10.0.0.2:80`).
pub fn format_conn_line(when: SystemTime, text: &str) -> String {
    let mut s = String::with_capacity(32 + text.len());
    push_time(&mut s, when);
    s.push_str(" conn ");
    s.push_str(text);
    s
}

fn push_time(s: &mut String, when: SystemTime) {
    let d = when.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() % 86_400;
    let _ = write!(
        s,
        "{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        d.subsec_micros()
    );
}

/// What the frame is, tcpdump style.
fn describe(s: &mut String, frame: &[u8]) {
    let Ok(p) = LaxSlicedPacket::from_ethernet(frame) else {
        let _ = write!(s, "truncated ethernet frame, length {}", frame.len());
        return;
    };
    let truncated = p.stop_err.is_some();
    match &p.net {
        Some(LaxNetSlice::Arp(a)) => arp(s, a.slice()),
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let (src, dst) = (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
            );
            ip_payload(s, src, dst, ip.payload(), p.transport.as_ref());
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let (src, dst) = (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
            );
            ip_payload(s, src, dst, ip.payload(), p.transport.as_ref());
        }
        None => {
            match &p.link {
                Some(LinkSlice::Ethernet2(e)) => {
                    let _ = write!(s, "{} > {}, ", Mac(e.source()), Mac(e.destination()));
                    ether_type(s, e.ether_type());
                }
                _ => s.push_str("ethernet"),
            }
            let _ = write!(s, ", length {}", frame.len());
        }
    }
    if truncated {
        s.push_str(" [|truncated]");
    }
}

fn ether_type(s: &mut String, t: EtherType) {
    match t {
        EtherType::IPV4 => s.push_str("IPv4"),
        EtherType::IPV6 => s.push_str("IPv6"),
        EtherType::ARP => s.push_str("ARP"),
        other => {
            let _ = write!(s, "ethertype 0x{:04x}", other.0);
        }
    }
}

/// ARP over Ethernet/IPv4, read straight from the bytes.
fn arp(s: &mut String, b: &[u8]) {
    let is_eth_ipv4 = b.get(0..6) == Some(&[0, 1, 8, 0, 6, 4][..]);
    let op = b.get(6..8).map(|o| u16::from_be_bytes([o[0], o[1]]));
    let ip = |at: usize| {
        b.get(at..at + 4)
            .map(|x| Ipv4Addr::new(x[0], x[1], x[2], x[3]))
    };
    let mac = |at: usize| {
        b.get(at..at + 6)
            .map(|x| Mac([x[0], x[1], x[2], x[3], x[4], x[5]]))
    };
    match (is_eth_ipv4, op, ip(14), ip(24), mac(8)) {
        (true, Some(1), Some(spa), Some(tpa), _) => {
            let _ = write!(s, "ARP, Request who-has {tpa} tell {spa}");
        }
        (true, Some(2), Some(spa), _, Some(sha)) => {
            let _ = write!(s, "ARP, Reply {spa} is-at {sha}");
        }
        (_, Some(op), ..) => {
            let _ = write!(s, "ARP, op {op}");
        }
        _ => s.push_str("ARP"),
    }
    let _ = write!(s, ", length {}", b.len());
}

fn ip_payload(
    s: &mut String,
    src: IpAddr,
    dst: IpAddr,
    pl: &LaxIpPayloadSlice<'_>,
    transport: Option<&TransportSlice<'_>>,
) {
    match transport {
        Some(TransportSlice::Tcp(t)) => {
            let _ = write!(
                s,
                "{}.{} > {}.{}: Flags [",
                src,
                t.source_port(),
                dst,
                t.destination_port()
            );
            let flags = [
                (t.fin(), 'F'),
                (t.syn(), 'S'),
                (t.rst(), 'R'),
                (t.psh(), 'P'),
                (t.ack(), '.'),
                (t.urg(), 'U'),
                (t.ece(), 'E'),
                (t.cwr(), 'W'),
            ];
            let mut any = false;
            for (on, c) in flags {
                if on {
                    s.push(c);
                    any = true;
                }
            }
            if !any {
                s.push_str("none");
            }
            s.push(']');
            let len = t.payload().len();
            let seq = t.sequence_number();
            if len > 0 {
                let _ = write!(s, ", seq {}:{}", seq, seq.wrapping_add(len as u32));
            } else if t.syn() || t.fin() || t.rst() {
                let _ = write!(s, ", seq {seq}");
            }
            if t.ack() {
                let _ = write!(s, ", ack {}", t.acknowledgment_number());
            }
            let _ = write!(s, ", win {}, length {}", t.window_size(), len);
        }
        Some(TransportSlice::Udp(u)) => {
            let _ = write!(
                s,
                "{}.{} > {}.{}: UDP, length {}",
                src,
                u.source_port(),
                dst,
                u.destination_port(),
                u.payload().len()
            );
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let _ = write!(s, "{src} > {dst}: ");
            icmpv4(s, i.slice());
        }
        Some(TransportSlice::Icmpv6(i)) => {
            let _ = write!(s, "{src} > {dst}: ");
            icmpv6(s, i.slice());
        }
        Some(TransportSlice::Igmp(i)) => {
            let _ = write!(s, "{src} > {dst}: IGMP, length {}", i.slice().len());
        }
        None => {
            let _ = write!(s, "{src} > {dst}: {}", proto_name(pl.ip_number));
            if pl.fragmented {
                s.push_str(" fragment");
            }
            let _ = write!(s, ", length {}", pl.payload.len());
        }
    }
}

fn proto_name(n: IpNumber) -> String {
    match n {
        IpNumber::TCP => "tcp".into(),
        IpNumber::UDP => "udp".into(),
        IpNumber::ICMP => "ICMP".into(),
        IpNumber::IPV6_ICMP => "ICMP6".into(),
        other => format!("ip-proto-{}", other.0),
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|x| u16::from_be_bytes([x[0], x[1]]))
}

fn echo(s: &mut String, what: &str, m: &[u8]) {
    match (be16(m, 4), be16(m, 6)) {
        (Some(id), Some(seq)) => {
            let _ = write!(s, "{what}, id {id}, seq {seq}");
        }
        _ => s.push_str(what),
    }
}

fn icmpv4(s: &mut String, m: &[u8]) {
    let (t, code) = (m.first().copied(), m.get(1).copied());
    match (t, code) {
        (Some(8), _) => echo(s, "ICMP echo request", m),
        (Some(0), _) => echo(s, "ICMP echo reply", m),
        (Some(3), Some(3)) => {
            // The quoted datagram: IPv4 header, then UDP ports.
            let inner = m.get(8..).unwrap_or(&[]);
            let ihl = usize::from(inner.first().map_or(0, |b| b & 0x0f)) * 4;
            let quoted = match (inner.get(9), inner.get(16..20), be16(inner, ihl + 2)) {
                (Some(17), Some(d), Some(port)) if ihl >= 20 => {
                    Some((Ipv4Addr::new(d[0], d[1], d[2], d[3]), port))
                }
                _ => None,
            };
            match quoted {
                Some((d, port)) => {
                    let _ = write!(s, "ICMP {d} udp port {port} unreachable");
                }
                None => s.push_str("ICMP port unreachable"),
            }
        }
        (Some(3), Some(c)) => {
            let _ = write!(s, "ICMP unreachable, code {c}");
        }
        (Some(t), Some(c)) => {
            let _ = write!(s, "ICMP type {t}, code {c}");
        }
        _ => s.push_str("ICMP"),
    }
    let _ = write!(s, ", length {}", m.len());
}

fn icmpv6(s: &mut String, m: &[u8]) {
    let target = m
        .get(8..24)
        .and_then(|t| <[u8; 16]>::try_from(t).ok())
        .map(Ipv6Addr::from);
    s.push_str("ICMP6, ");
    match (m.first().copied(), m.get(1).copied()) {
        (Some(128), _) => echo(s, "echo request", m),
        (Some(129), _) => echo(s, "echo reply", m),
        (Some(135), _) => match target {
            Some(t) => {
                let _ = write!(s, "neighbor solicitation, who has {t}");
            }
            None => s.push_str("neighbor solicitation"),
        },
        (Some(136), _) => match target {
            Some(t) => {
                let _ = write!(s, "neighbor advertisement, tgt is {t}");
            }
            None => s.push_str("neighbor advertisement"),
        },
        (Some(133), _) => s.push_str("router solicitation"),
        (Some(134), _) => s.push_str("router advertisement"),
        (Some(1), Some(4)) => s.push_str("destination unreachable, unreachable port"),
        (Some(1), Some(c)) => {
            let _ = write!(s, "destination unreachable, code {c}");
        }
        (Some(t), Some(c)) => {
            let _ = write!(s, "type {t}, code {c}");
        }
        _ => s.push_str("message"),
    }
    let _ = write!(s, ", length {}", m.len());
}

/// A MAC address as `02:00:00:00:00:01`.
struct Mac([u8; 6]);

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}
