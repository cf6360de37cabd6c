//! The decision texts: what the adapter did with a frame, written as the
//! pcapng packet comment and after the `|` of a trace line. They answer
//! "why did this frame go there?" in words a test can match:
//! `in cpu=2 rr-new port=80 slot=5`, `in cpu=2 flow`, `in adapter
//! arp-reply`, `in drop bad-tcp-checksum`, `out cpu=2`, `out adapter rst`.

use crate::filter::FilterMode;
use crate::rx::Decision;

/// A decision text not yet written out: the hot path records what was
/// decided, the writer thread turns it into words. Formatting a `String`
/// per frame on the RX thread or a processor cost more than the rest of
/// recording a small frame.
#[derive(Clone, Debug)]
pub enum Note {
    /// Ready-made text.
    Text(String),
    /// A frame read from the TAP, and what the RX path did with it (see
    /// [`rx_comment`]).
    Rx(Decision, FilterMode),
    /// A frame written by `origin` (see [`out_comment`]), then `suffix`
    /// (` gso`, ` tx-error`, or nothing), then ` link=NAME` with several
    /// links (Ethernet failover).
    Out {
        /// `cpu=2` or `adapter`.
        origin: Origin,
        /// Appended as is.
        suffix: &'static str,
        /// The link it left by, with several.
        link: Option<&'static str>,
        /// The sender's turn, if it stamps them ([`super::turn`]):
        /// ` t=NS in=N b=B` after the origin.
        turn: Option<(u64, u64, u64)>,
    },
    /// [`Note::Rx`] for a frame read from link `.2` of several.
    RxOn(Decision, FilterMode, &'static str),
}

impl Note {
    /// The text, for the frame it was recorded with.
    pub fn render(&self, frame: &[u8]) -> String {
        match self {
            Note::Text(t) => t.clone(),
            Note::Rx(d, mode) => rx_comment(d, *mode),
            Note::RxOn(d, mode, link) => format!("{} link={link}", rx_comment(d, *mode)),
            Note::Out {
                origin,
                suffix,
                link,
                turn,
            } => {
                let mut c = out_comment(*origin, frame);
                if let Some((t, n, b)) = turn {
                    use std::fmt::Write as _;
                    let _ = write!(c, " t={t} in={n} b={b}");
                }
                c.push_str(suffix);
                if let Some(l) = link {
                    c.push_str(" link=");
                    c.push_str(l);
                }
                c
            }
        }
    }
}

impl From<String> for Note {
    fn from(s: String) -> Note {
        Note::Text(s)
    }
}

impl From<&str> for Note {
    fn from(s: &str) -> Note {
        Note::Text(s.to_owned())
    }
}

/// The comment for a frame read from the TAP, from the RX path's
/// [`Decision`]. A new connection reads `rr-new` under round-robin
/// filtering, `hash-new` under hash, `lc-new` under least-connections and
/// `new` under `none`, so a trace shows which rule placed it (`mode` is
/// the policy of the frame's port). A datagram reads `rr-udp`, `hash-udp`
/// or `udp` (least-connections places datagrams round-robin).
pub fn rx_comment(d: &Decision, mode: FilterMode) -> String {
    match *d {
        Decision::Dropped(k) => format!("in drop {}", k.name()),
        Decision::NotForUs => "in ignore not-for-us".into(),
        Decision::Ignored => "in adapter ignore".into(),
        Decision::ArpReply => "in adapter arp-reply".into(),
        Decision::NdpAdvert => "in adapter ndp-advert".into(),
        Decision::EchoReply => "in adapter echo-reply".into(),
        Decision::PortUnreachable => "in adapter port-unreachable".into(),
        Decision::RateLimited => "in adapter rate-limited".into(),
        Decision::RstClosedPort => "in adapter rst closed-port".into(),
        Decision::RstNoConnection => "in adapter rst no-connection".into(),
        Decision::NewConnection {
            processor,
            port,
            slot,
        } => {
            let rule = match mode {
                FilterMode::RoundRobin => "rr-new",
                FilterMode::Hash => "hash-new",
                FilterMode::LeastConnections => "lc-new",
                FilterMode::None => "new",
            };
            format!("in cpu={processor} {rule} port={port} slot={slot}")
        }
        Decision::Flow { processor } => format!("in cpu={processor} flow"),
        Decision::SynCookie { processor, port } => {
            format!("in adapter syn-cookie port={port} cpu={processor} half-open-full")
        }
        Decision::Datagram {
            processor,
            port,
            slot,
        } => {
            let rule = match mode {
                FilterMode::RoundRobin | FilterMode::LeastConnections => "rr-udp",
                FilterMode::Hash => "hash-udp",
                FilterMode::None => "udp",
            };
            format!("in cpu={processor} {rule} port={port} slot={slot}")
        }
    }
}

/// Who wrote a frame to the TAP: a processor or the adapter itself. A
/// plain copyable value rather than shared text, so recording a frame
/// touches no reference count that the writer thread also touches (an
/// `Arc<str>` clone here was half of the cost of recording a small frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Processor K (`cpu=K`).
    Processor(usize),
    /// The adapter's own answers (ARP, NDP, ICMP, RST).
    Adapter,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Processor(k) => write!(f, "cpu={k}"),
            Origin::Adapter => f.write_str("adapter"),
        }
    }
}

/// The comment for a frame written to the TAP by `origin` (`cpu=2`, or
/// `adapter`, whose frames also say what they are: `out adapter
/// arp-reply`).
pub fn out_comment(origin: Origin, frame: &[u8]) -> String {
    match origin {
        Origin::Adapter => format!("out adapter {}", out_kind(frame)),
        Origin::Processor(_) => format!("out {origin}"),
    }
}

/// What kind of answer an adapter frame is, by a cheap look at a few
/// bytes (the adapter builds these frames itself: no VLAN, no IPv6
/// extension headers): `arp-reply`, `ndp-advert`, `echo-reply`,
/// `port-unreachable`, `rst`, `tcp`, or `other`.
pub fn out_kind(frame: &[u8]) -> &'static str {
    let byte = |at: usize| frame.get(at).copied();
    let ether_type = frame.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]]));
    // (IP protocol, offset of the transport header)
    let l4 = match ether_type {
        Some(0x0806) => {
            return match frame.get(20..22) {
                Some([0, 2]) => "arp-reply",
                Some([0, 1]) => "arp-request",
                _ => "other",
            }
        }
        Some(0x0800) => match (byte(14), byte(23)) {
            (Some(v), Some(p)) => Some((p, 14 + usize::from(v & 0x0f) * 4)),
            _ => None,
        },
        Some(0x86dd) => byte(20).map(|p| (p, 54)),
        _ => None,
    };
    let Some((proto, at)) = l4 else {
        return "other";
    };
    match (proto, byte(at), byte(at + 1)) {
        // TCP: flags are byte 13 of the header; RST is 0x04.
        (6, _, _) => match byte(at + 13) {
            Some(f) if f & 0x04 != 0 => "rst",
            Some(_) => "tcp",
            None => "other",
        },
        (1, Some(0), _) | (58, Some(129), _) => "echo-reply",
        (1, Some(3), Some(3)) | (58, Some(1), Some(4)) => "port-unreachable",
        (58, Some(136), _) => "ndp-advert",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_links_name_the_link_in_and_out() {
        let out = Note::Out {
            origin: Origin::Processor(2),
            suffix: " gso",
            link: Some("vnicB"),
            turn: None,
        };
        assert_eq!(out.render(&[]), "out cpu=2 gso link=vnicB");
        let one = Note::Out {
            origin: Origin::Processor(2),
            suffix: "",
            link: None,
            turn: None,
        };
        assert_eq!(one.render(&[]), "out cpu=2");
        let rx = Note::RxOn(Decision::NotForUs, FilterMode::RoundRobin, "vnicA");
        assert_eq!(rx.render(&[]), "in ignore not-for-us link=vnicA");
    }
}
