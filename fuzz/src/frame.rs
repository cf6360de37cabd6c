//! The `frame` target: any bytes as a frame through the adapter's RX path.
//!
//! Each input is handed to a fresh [`RxQueue`] (4 processors, round-robin
//! over TCP ports 7/9/19/80 and UDP port 7, a [`CaptureSink`], bounded
//! queues drained after every frame) in three forms:
//!
//! 1. as it is;
//! 2. behind an Ethernet header to our MAC (the input then starts at the
//!    EtherType), so the fuzzer gets past the MAC check at once;
//! 3. form 2 with the IPv4 header checksum and the TCP/UDP/ICMP/ICMPv6
//!    checksum made right, twice in a row (the second time a SYN finds
//!    its flow entry), so the fuzzer reaches the responders, the filter
//!    and the flow table without having to guess checksums;
//! 4. form 3 to a second adapter with SYN cookies on (backlog 0), and
//!    when it answers with a cookie, the client's ACK that brings the
//!    cookie back, which must open the connection.
//!
//! After every frame [`Rig::feed`] checks: no panic; what the decision
//! says happened did happen (frames written, messages queued, the one
//! counter bumped and no other); every frame written parses with
//! etherparse, comes from our MAC, fits the MTU and carries valid
//! checksums.

use crate::checksum;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use etherparse::{EtherType, NetSlice, SlicedPacket, TransportSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use vnic_adapter::emit::{build_tcp_frame, CaptureSink, Route};
use vnic_adapter::filter::{ListenerSpec, Protocol};
use vnic_adapter::rx::Decision;
use vnic_adapter::tap::MAX_FRAME_LEN;
use vnic_adapter::{
    RxQueue, AdapterConfig, Counters, DropKind, Filter, FilterMode, FlowReport, FrameWriter,
    ToProcessor,
};
use vnic_stack::{wire, Control, FourTuple, Segment, SynCookies, TcpOptions};

/// Processors of the adapter under test.
pub const PROCESSORS: usize = 4;
/// TCP ports served on every processor.
pub const TCP_PORTS: [u16; 4] = [7, 9, 19, 80];
/// UDP port served on every processor.
pub const UDP_PORT: u16 = 7;
/// Our IPv4 address (the one the seed capture used).
pub const VIP4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// Our IPv6 address (the one the seed capture used).
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
/// The TAP name the capture used.
pub const TAP: &str = "fz0";
/// The MAC vnic had in the seed capture (derived from [`TAP`]); set
/// explicitly so the corpus stays ours whatever the hash of the name.
pub const OUR_MAC: [u8; 6] = [0x02, 0x76, 0x6e, 0x0e, 0x5f, 0xea];
/// The source MAC of the frames form 2 builds.
pub const HOST_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 1];
/// Link MTU of the adapter under test.
pub const MTU: usize = 1500;

/// An adapter with everything around it that a test needs to watch.
pub struct Rig {
    /// The adapter under test.
    pub adapter: RxQueue,
    sink: Arc<CaptureSink>,
    queues: Vec<Receiver<ToProcessor>>,
    /// Kept so the adapter's flow report channel stays connected.
    _closed: Sender<FlowReport>,
    counters: Arc<Counters>,
    /// Our MAC.
    pub mac: [u8; 6],
    now: Instant,
}

/// Counter values before a frame, to compare with after it.
struct Snapshot {
    frames_in: u64,
    frames_out: u64,
    not_for_us: u64,
    arp_replies: u64,
    ndp_adverts: u64,
    echo_replies: u64,
    port_unreachable: u64,
    unreachable_limited: u64,
    rst_sent: u64,
    tcp_dispatched: u64,
    tx_errors: u64,
    drops: Vec<u64>,
}

impl Snapshot {
    fn of(c: &Counters) -> Snapshot {
        let g = |a: &AtomicU64| Counters::get(a);
        Snapshot {
            frames_in: c.frames_in(),
            frames_out: c.frames_out(),
            not_for_us: g(&c.not_for_us),
            arp_replies: g(&c.arp_replies),
            ndp_adverts: g(&c.ndp_adverts),
            echo_replies: g(&c.echo_replies),
            port_unreachable: g(&c.port_unreachable),
            unreachable_limited: g(&c.unreachable_limited),
            rst_sent: g(&c.rst_sent),
            tcp_dispatched: c.tcp_dispatched(),
            tx_errors: c.tx_errors(),
            drops: DropKind::ALL.iter().map(|k| c.dropped(*k)).collect(),
        }
    }
}

impl Default for Rig {
    fn default() -> Self {
        Rig::new()
    }
}

impl Rig {
    /// A fresh adapter: 4 processors, round-robin, TCP 7/9/19/80, UDP 7.
    pub fn new() -> Rig {
        let mut cfg = AdapterConfig::new(TAP, &[IpAddr::V4(VIP4), IpAddr::V6(VIP6)], MTU);
        cfg.mac = OUR_MAC;
        let mac = cfg.mac;
        let sink = Arc::new(CaptureSink::default());
        let counters = Arc::new(Counters::new(PROCESSORS));
        let out = FrameWriter::new(sink.clone(), mac, counters.clone());
        // Registering is slow (tens of µs); the template is built once.
        let filter = template_filter().clone();
        let (txs, queues): (Vec<_>, Vec<_>) = (0..PROCESSORS).map(|_| bounded(64)).unzip();
        let (closed, crx) = unbounded();
        let mut adapter = RxQueue::new(
            cfg,
            Arc::new(parking_lot::Mutex::new(filter)),
            txs,
            crx,
            out,
            counters.clone(),
        );
        adapter.set_in_place_min(1);
        Rig {
            adapter,
            sink,
            queues,
            _closed: closed,
            counters,
            mac,
            now: Instant::now(),
        }
    }

    /// A fresh adapter as [`Rig::new`] with SYN cookies on and a backlog
    /// of 0, so every new SYN is answered with a cookie.
    pub fn with_cookies() -> Rig {
        let mut rig = Rig::new();
        rig.adapter.set_syn_cookies(
            Arc::new(cookies_for(rig.now)),
            0,
            &vnic_stack::TcpConfig::default(),
        );
        rig
    }

    /// Feeds one frame, checks every invariant and returns the decision.
    pub fn feed(&mut self, frame: &[u8]) -> Decision {
        self.feed_rx(frame, false)
    }

    /// Feeds one frame as a TAP read gives it, saying whether its TCP
    /// checksum is taken on trust (offload), checks every invariant and
    /// returns the decision.
    pub fn feed_rx(&mut self, frame: &[u8], checksum_trusted: bool) -> Decision {
        let before = Snapshot::of(&self.counters);
        // Frames are handled from a buffer the adapter may keep (a
        // segment's text then goes over in place: the rig sets the
        // threshold to one byte so every segment with text takes that way).
        let mut buf = frame.to_vec();
        let d = self
            .adapter
            .handle_rx_buffer(self.now, &mut buf, frame.len(), checksum_trusted);
        let after = Snapshot::of(&self.counters);
        let out = self.sink.take();
        let queued: Vec<(usize, ToProcessor)> = self
            .queues
            .iter()
            .enumerate()
            .flat_map(|(i, q)| q.try_iter().map(move |m| (i, m)))
            .collect();
        self.check(frame, d, &before, &after, &out, &queued);
        d
    }

    fn check(
        &self,
        input: &[u8],
        d: Decision,
        b: &Snapshot,
        a: &Snapshot,
        out: &[Vec<u8>],
        queued: &[(usize, ToProcessor)],
    ) {
        assert_eq!(a.frames_in, b.frames_in + 1, "frames_in counts every frame");
        assert_eq!(a.tx_errors, b.tx_errors, "the capture sink never fails");
        assert_eq!(
            a.frames_out - b.frames_out,
            out.len() as u64,
            "frames_out counts every frame written"
        );
        // Exactly the drop counter of the decision moved, by one.
        for (i, k) in DropKind::ALL.iter().enumerate() {
            let want = u64::from(d == Decision::Dropped(*k));
            assert_eq!(a.drops[i] - b.drops[i], want, "drop counter {}", k.name());
        }
        assert_ne!(
            d,
            Decision::Dropped(DropKind::QueueFull),
            "queues are drained after every frame, so never full"
        );
        let delta = |x: u64, y: u64| x - y;
        assert_eq!(
            delta(a.not_for_us, b.not_for_us),
            u64::from(d == Decision::NotForUs)
        );
        assert_eq!(
            delta(a.arp_replies, b.arp_replies),
            u64::from(d == Decision::ArpReply)
        );
        assert_eq!(
            delta(a.ndp_adverts, b.ndp_adverts),
            u64::from(d == Decision::NdpAdvert)
        );
        assert_eq!(
            delta(a.echo_replies, b.echo_replies),
            u64::from(d == Decision::EchoReply)
        );
        assert_eq!(
            delta(a.unreachable_limited, b.unreachable_limited),
            u64::from(d == Decision::RateLimited)
        );
        let dispatched = delta(a.tcp_dispatched, b.tcp_dispatched);
        let unreachable = delta(a.port_unreachable, b.port_unreachable);
        let rst = delta(a.rst_sent, b.rst_sent);
        match d {
            Decision::ArpReply
            | Decision::NdpAdvert
            | Decision::EchoReply
            | Decision::SynCookie { .. } => {
                assert_eq!(out.len(), 1, "{d:?} writes one frame");
            }
            Decision::PortUnreachable => {
                assert!(out.len() <= 1);
                assert_eq!(unreachable, out.len() as u64, "port_unreachable counts");
            }
            Decision::RstClosedPort | Decision::RstNoConnection => {
                assert!(out.len() <= 1);
                assert_eq!(rst, out.len() as u64, "rst_sent counts");
            }
            _ => assert!(out.is_empty(), "{d:?} writes nothing, wrote {}", out.len()),
        }
        if !matches!(d, Decision::PortUnreachable) {
            assert_eq!(unreachable, 0);
        }
        if !matches!(d, Decision::RstClosedPort | Decision::RstNoConnection) {
            assert_eq!(rst, 0);
        }
        match d {
            Decision::NewConnection {
                processor,
                port,
                slot,
            } => {
                assert!(TCP_PORTS.contains(&port), "placed on a served port");
                assert!(processor < PROCESSORS && slot < PROCESSORS);
                assert_eq!(dispatched, 1);
                assert_eq!(queued.len(), 1, "one segment queued");
                let (q, ToProcessor::Segment(s)) = &queued[0] else {
                    panic!("a new connection queues a segment");
                };
                assert_eq!(*q, processor);
                // A new SYN, or the ACK that brings a SYN cookie back.
                let syn = s.segment.control == Control::Syn && s.segment.ack.is_none();
                let cookie_ack = s.segment.control == Control::None && s.segment.ack.is_some();
                assert!(syn || cookie_ack, "{:?}", s.segment);
                assert_eq!(s.tuple.local.port(), port);
                assert!(s.syn_stamp > 0);
            }
            Decision::SynCookie { processor, port } => {
                assert!(TCP_PORTS.contains(&port), "a cookie for a served port");
                assert!(processor < PROCESSORS);
                assert_eq!(dispatched, 0);
                assert!(queued.is_empty(), "a cookie SYN|ACK leaves no state");
            }
            Decision::Flow { processor } => {
                assert_eq!(dispatched, 1);
                assert_eq!(queued.len(), 1, "one segment queued");
                assert!(matches!(queued[0], (q, ToProcessor::Segment(_)) if q == processor));
            }

            Decision::Datagram {
                processor, port, ..
            } => {
                assert_eq!(port, UDP_PORT);
                assert_eq!(dispatched, 0);
                assert_eq!(queued.len(), 1, "one datagram queued");
                let (q, ToProcessor::Datagram(dg)) = &queued[0] else {
                    panic!("a datagram queues a datagram");
                };
                assert_eq!(*q, processor);
                assert_eq!(dg.local.port(), UDP_PORT);
                assert!(dg.payload.len() + 8 <= input.len());
            }
            _ => {
                assert_eq!(dispatched, 0);
                assert!(queued.is_empty(), "{d:?} queues nothing");
            }
        }
        if let (
            Decision::Flow { .. } | Decision::NewConnection { .. },
            [(_, ToProcessor::Segment(s))],
        ) = (d, queued)
        {
            assert_eq!(
                &s.segment.payload[..],
                tcp_text(input).expect("a TCP frame"),
                "the segment queued carries the frame's text"
            );
        }
        for f in out {
            check_out_frame(f, self.mac, input.len());
        }
    }
}

/// Checks one frame the adapter wrote: parses with etherparse, from our
/// MAC, within the MTU, IPv4 header and upper-layer checksums valid.
fn check_out_frame(f: &[u8], mac: [u8; 6], input_len: usize) {
    let p = match SlicedPacket::from_ethernet(f) {
        Ok(p) => p,
        Err(e) => panic!("frame written by the adapter does not parse: {e:?}: {f:02x?}"),
    };
    let eth = etherparse::Ethernet2HeaderSlice::from_slice(f).expect("ethernet");
    assert_eq!(eth.source(), mac, "sent from our MAC");
    if input_len <= 14 + MTU {
        assert!(
            f.len() <= 14 + MTU,
            "answer of {} bytes beyond the MTU",
            f.len()
        );
    }
    // Beyond the MTU only as an answer to a frame as large (a 64 KiB
    // segment the kernel handed over whole): never past what IP carries.
    assert!(f.len() <= MAX_FRAME_LEN, "a frame of {} bytes", f.len());
    if eth.ether_type() == EtherType::ARP {
        return;
    }
    assert!(p.net.is_some(), "an IP packet: {f:02x?}");
    let ip = &f[14..];
    let (src, dst, proto, l4): (IpAddr, IpAddr, u8, &[u8]) = match eth.ether_type() {
        EtherType::IPV4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            assert!(
                checksum::verifies(0, &ip[..ihl]),
                "IPv4 header checksum: {f:02x?}"
            );
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            assert_eq!(total, ip.len(), "IPv4 total length is the packet");
            let s: [u8; 4] = ip[12..16].try_into().expect("4");
            let d: [u8; 4] = ip[16..20].try_into().expect("4");
            (s.into(), d.into(), ip[9], &ip[ihl..total])
        }
        EtherType::IPV6 => {
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            assert_eq!(40 + plen, ip.len(), "IPv6 payload length is the packet");
            let s: [u8; 16] = ip[8..24].try_into().expect("16");
            let d: [u8; 16] = ip[24..40].try_into().expect("16");
            (s.into(), d.into(), ip[6], &ip[40..])
        }
        other => panic!("unexpected EtherType {other:?}"),
    };
    match proto {
        // TCP, UDP and ICMPv6 sum over the pseudo header; ICMP does not.
        6 | 17 | 58 => assert!(
            checksum::verifies(checksum::pseudo(src, dst, proto, l4.len()), l4),
            "protocol {proto} checksum: {f:02x?}"
        ),
        1 => assert!(checksum::verifies(0, l4), "ICMP checksum: {f:02x?}"),
        other => panic!("unexpected protocol {other}"),
    }
}

/// The text (payload) of the TCP segment in an Ethernet frame, within
/// the IP packet's own length.
pub fn tcp_text(frame: &[u8]) -> Option<&[u8]> {
    match SlicedPacket::from_ethernet(frame).ok()?.transport? {
        TransportSlice::Tcp(t) => Some(t.payload()),
        _ => None,
    }
}

/// The filter every rig starts from: round-robin, TCP 7/9/19/80 and UDP 7
/// on every processor.
pub fn template_filter() -> &'static Filter {
    static FILTER: OnceLock<Filter> = OnceLock::new();
    FILTER.get_or_init(|| {
        let mut filter = Filter::new(FilterMode::RoundRobin, PROCESSORS);
        for port in TCP_PORTS {
            for p in 0..PROCESSORS {
                filter.register(port, p).expect("register TCP");
            }
        }
        for p in 0..PROCESSORS {
            let spec = ListenerSpec {
                protocol: Protocol::Udp,
                ..ListenerSpec::tcp(UDP_PORT, p)
            };
            filter.register_group(spec).expect("register UDP");
        }
        filter
    })
}

/// The cookie jar of [`Rig::with_cookies`] (fixed key).
fn cookies_for(epoch: Instant) -> SynCookies {
    SynCookies::new([7; 16], epoch)
}

/// The TCP segment in an Ethernet/IP frame, as the adapter parses it,
/// with its (source, destination) addresses.
fn tcp_of(frame: &[u8]) -> Option<(IpAddr, IpAddr, Segment)> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let (src, dst, tcp): (IpAddr, IpAddr, &[u8]) = match p.net? {
        NetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
            ip.payload().payload,
        ),
        NetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
            ip.payload().payload,
        ),
        _ => return None,
    };
    Some((src, dst, wire::parse(src, dst, tcp).ok()?))
}

/// The ACK a well-behaved client sends back to the cookie SYN|ACK that
/// answers the SYN in `syn_frame` (built as the processor would).
fn cookie_ack_frame(now: Instant, syn_frame: &[u8]) -> Option<Vec<u8>> {
    let (src, dst, syn) = tcp_of(syn_frame)?;
    let tuple = FourTuple {
        local: SocketAddr::new(dst, syn.dst_port),
        remote: SocketAddr::new(src, syn.src_port),
    };
    let cookie = cookies_for(now).make(now, &tuple, syn.seq, syn.options.mss);
    let ack = Segment {
        src_port: syn.src_port,
        dst_port: syn.dst_port,
        seq: syn.seq + 1,
        ack: Some(cookie + 1),
        control: Control::None,
        psh: false,
        window: 1024,
        options: TcpOptions::default(),
        payload: Default::default(),
    };
    let route = Route {
        src_mac: HOST_MAC,
        dst_mac: OUR_MAC,
        src,
        dst,
    };
    let mut f = Vec::new();
    build_tcp_frame(&mut f, &route, &ack).then_some(f)
}

/// `data` behind an Ethernet header from [`HOST_MAC`] to `mac`: the input
/// starts at the EtherType.
pub fn behind_our_mac(mac: [u8; 6], data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(12 + data.len());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(data);
    f
}

/// Makes the IPv4 header checksum and the TCP, UDP, ICMP or ICMPv6
/// checksum of an Ethernet frame right, where the headers say where they
/// are (no IPv6 extension headers; anything too short is left alone).
pub fn fix_checksums(f: &mut [u8]) {
    if f.len() < 14 {
        return;
    }
    let ether_type = u16::from_be_bytes([f[12], f[13]]);
    let ip = &mut f[14..];
    let (src, dst, proto, l4) = match ether_type {
        0x0800 => {
            if ip.len() < 20 {
                return;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ihl < 20 || ihl > ip.len() {
                return;
            }
            checksum::fill(0, &mut ip[..ihl], 10);
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
            if total < ihl {
                return;
            }
            let s: [u8; 4] = ip[12..16].try_into().expect("4");
            let d: [u8; 4] = ip[16..20].try_into().expect("4");
            let proto = ip[9];
            (IpAddr::from(s), IpAddr::from(d), proto, &mut ip[ihl..total])
        }
        0x86dd => {
            if ip.len() < 40 {
                return;
            }
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let end = (40 + plen).min(ip.len());
            let s: [u8; 16] = ip[8..24].try_into().expect("16");
            let d: [u8; 16] = ip[24..40].try_into().expect("16");
            let proto = ip[6];
            (IpAddr::from(s), IpAddr::from(d), proto, &mut ip[40..end])
        }
        _ => return,
    };
    let pseudo = checksum::pseudo(src, dst, proto, l4.len());
    match proto {
        6 => checksum::fill(pseudo, l4, 16),
        17 => checksum::fill(pseudo, l4, 6),
        58 => checksum::fill(pseudo, l4, 2),
        1 => checksum::fill(0, l4, 2),
        _ => {}
    }
}

/// The whole target: one input, its three forms, every check.
pub fn run(data: &[u8]) {
    let mut rig = Rig::new();
    rig.feed(data);
    if data.len() < 2 {
        return;
    }
    let mut f = behind_our_mac(rig.mac, data);
    rig.feed(&f);
    fix_checksums(&mut f);
    rig.feed(&f);
    rig.feed(&f);
    // SYN cookies: the same frame where every new SYN gets a cookie, then
    // the client's ACK bringing the cookie back (same clock: rig.now).
    let mut jar = Rig::with_cookies();
    jar.now = rig.now;
    if let Decision::SynCookie { .. } = jar.feed(&f) {
        let ack = cookie_ack_frame(jar.now, &f).expect("a cookie SYN is a TCP frame");
        let d = jar.feed(&ack);
        assert!(
            matches!(d, Decision::NewConnection { .. }),
            "a genuine cookie ACK opens the connection: {d:?}"
        );
    }
    // A raw captured frame already has a header: fix it as it is too.
    let mut raw = data.to_vec();
    fix_checksums(&mut raw);
    if raw != data {
        rig.feed(&raw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The captured SYN of the seed corpus (curl to port 80).
    const SYN: [u8; 74] = [
        0x02, 0x76, 0x6e, 0x0e, 0x5f, 0xea, 0xba, 0xb9, 0x08, 0x05, 0x5e, 0x61, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x3c, 0x45, 0xc2, 0x40, 0x00, 0x40, 0x06, 0xe0, 0xf7, 0x0a, 0x00, 0x00, 0x01,
        0x0a, 0x00, 0x00, 0x02, 0xdf, 0xf8, 0x00, 0x50, 0x8d, 0x40, 0xe5, 0x03, 0x00, 0x00, 0x00,
        0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x76, 0xcb, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02,
        0x08, 0x0a, 0xf7, 0x88, 0x78, 0x28, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
    ];

    #[test]
    fn captured_syn_is_placed_then_found_in_the_flow_table() {
        let mut rig = Rig::new();
        assert!(matches!(
            rig.feed(&SYN),
            Decision::NewConnection { port: 80, .. }
        ));
        assert!(matches!(rig.feed(&SYN), Decision::Flow { .. }));
    }

    #[test]
    fn captured_syn_gets_a_cookie_and_its_ack_opens_the_connection() {
        let mut jar = Rig::with_cookies();
        assert!(matches!(
            jar.feed(&SYN),
            Decision::SynCookie { port: 80, .. }
        ));
        let ack = cookie_ack_frame(jar.now, &SYN).expect("ACK frame");
        assert!(matches!(
            jar.feed(&ack),
            Decision::NewConnection { port: 80, .. }
        ));
    }
}
