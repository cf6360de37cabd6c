//! The adapter's receive path driven with frames crafted by pnet_packet
//! (never by our own builder), and its answers parsed by pnet_packet.

mod common;

use common::HOST_MAC;
use crossbeam_channel::{bounded, unbounded, Receiver};
use pnet_base::MacAddr;
use pnet_packet::ethernet::EthernetPacket;
use pnet_packet::ipv4::{self, Ipv4Packet};
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags, TcpPacket};
use pnet_packet::Packet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use vnic_adapter::emit::CaptureSink;
use vnic_adapter::rx::Decision;
use vnic_adapter::{
    AdapterConfig, Counters, DropKind, Filter, FilterMode, FlowClosed, FlowReport, FrameWriter,
    RxQueue, ToProcessor,
};
use vnic_stack::{FourTuple, SeqNumber};

const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

struct Rig {
    adapter: RxQueue,
    sink: Arc<CaptureSink>,
    queues: Vec<Receiver<ToProcessor>>,
    closed: crossbeam_channel::Sender<FlowReport>,
    counters: Arc<Counters>,
    mac: [u8; 6],
    filter: Arc<parking_lot::Mutex<Filter>>,
}

fn rig(mode: FilterMode, processors: usize, ports: &[u16]) -> Rig {
    let mut filter = Filter::new(mode, processors);
    for port in ports {
        for p in 0..processors {
            filter.register(*port, p).expect("register");
        }
    }
    rig_with(&[IpAddr::V4(VIP)], filter).0
}

/// A rig answering on `addresses` with `filter` as it is, and a sender
/// into each processor's queue (to fill one up).
fn rig_with(
    addresses: &[IpAddr],
    filter: Filter,
) -> (Rig, Vec<crossbeam_channel::Sender<ToProcessor>>) {
    let processors = filter.processors();
    let cfg = AdapterConfig::new("t0", addresses, 1500);
    let mac = cfg.mac;
    let sink = Arc::new(CaptureSink::default());
    let counters = Arc::new(Counters::new(processors));
    let out = FrameWriter::new(sink.clone(), mac, counters.clone());
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..processors {
        let (tx, rx) = bounded(64);
        txs.push(tx);
        rxs.push(rx);
    }
    let (ctx, crx) = unbounded();
    let senders = txs.clone();
    let filter = Arc::new(parking_lot::Mutex::new(filter));
    let rig = Rig {
        filter: filter.clone(),
        adapter: RxQueue::new(cfg, filter, txs, crx, out, counters.clone()),
        sink,
        queues: rxs,
        closed: ctx,
        counters,
        mac,
    };
    (rig, senders)
}

/// An Ethernet/IPv4/TCP frame from the host to `dst_ip:dst_port`, crafted by pnet.
fn tcp_frame(
    dst_mac: [u8; 6],
    dst_ip: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    {
        let mut p = MutableTcpPacket::new(&mut t).expect("tcp");
        p.set_source(sport);
        p.set_destination(dport);
        p.set_sequence(seq);
        p.set_acknowledgement(ack);
        p.set_data_offset(5);
        p.set_flags(flags);
        p.set_window(65535);
        let ck = tcp::ipv4_checksum(&p.to_immutable(), &HOST, &dst_ip);
        p.set_checksum(ck);
    }
    common::tcp_in_ipv4(dst_mac, HOST, dst_ip, &t)
}

fn syn(r: &Rig, sport: u16, dport: u16) -> Vec<u8> {
    tcp_frame(r.mac, VIP, sport, dport, TcpFlags::SYN, 1000, 0)
}

fn queued_on(r: &Rig) -> Vec<usize> {
    let mut v = Vec::new();
    for (i, q) in r.queues.iter().enumerate() {
        while q.try_recv().is_ok() {
            v.push(i);
        }
    }
    v
}

/// The one TCP segment the adapter sent: (flags, seq, ack, sport, dport).
fn sent_tcp(r: &Rig) -> (u8, u32, u32, u16, u16) {
    let frames = r.sink.take();
    assert_eq!(frames.len(), 1, "exactly one frame out");
    let e = EthernetPacket::new(&frames[0]).expect("eth");
    assert_eq!(e.get_destination(), MacAddr::from(HOST_MAC));
    assert_eq!(e.get_source(), MacAddr::from(r.mac));
    let ip = Ipv4Packet::new(e.payload()).expect("ip");
    assert_eq!(ipv4::checksum(&ip), ip.get_checksum(), "IPv4 checksum");
    assert_eq!(ip.get_source(), VIP);
    assert_eq!(ip.get_destination(), HOST);
    let t = TcpPacket::new(ip.payload()).expect("tcp");
    assert_eq!(
        tcp::ipv4_checksum(&t, &VIP, &HOST),
        t.get_checksum(),
        "TCP checksum"
    );
    (
        t.get_flags(),
        t.get_sequence(),
        t.get_acknowledgement(),
        t.get_source(),
        t.get_destination(),
    )
}

#[test]
fn least_connections_counts_syns_placed_but_not_taken_in() {
    let mut r = rig(FilterMode::LeastConnections, 4, &[80]);
    let c = r.counters.clone();
    r.filter
        .lock()
        .set_loads(vnic_adapter::filter::Loads::new(move |k| {
            c.syn_in_flight.get(k).map_or(0, Counters::get)
        }));
    // No processor takes anything in: each placed SYN counts where it went.
    let mut got = Vec::new();
    for i in 0..8 {
        let f = syn(&r, 40000 + i, 80);
        match r.adapter.handle_frame(Instant::now(), &f) {
            Decision::NewConnection { processor, .. } => got.push(processor),
            d => panic!("{d:?}"),
        }
    }
    assert_eq!(got, vec![0, 1, 2, 3, 0, 1, 2, 3], "a burst spreads");
    assert_eq!(queued_on(&r), vec![0, 0, 1, 1, 2, 2, 3, 3]);
    let in_flight: Vec<u64> = r.counters.syn_in_flight.iter().map(Counters::get).collect();
    assert_eq!(
        in_flight,
        vec![2, 2, 2, 2],
        "each processor gives them back as it takes them in"
    );
}

#[test]
fn round_robin_over_four_listeners_wraps_around() {
    let mut r = rig(FilterMode::RoundRobin, 4, &[80]);
    let now = Instant::now();
    let mut decisions = Vec::new();
    for i in 0..9u16 {
        decisions.push(r.adapter.handle_frame(now, &syn(&r, 40000 + i, 80)));
    }
    let placed: Vec<usize> = decisions
        .iter()
        .map(|d| match d {
            Decision::NewConnection {
                processor,
                port: 80,
                slot,
            } => {
                assert_eq!(processor, slot);
                *processor
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(placed, vec![0, 1, 2, 3, 0, 1, 2, 3, 0]);
}

#[test]
fn later_segments_follow_their_connection() {
    let mut r = rig(FilterMode::RoundRobin, 4, &[80]);
    let now = Instant::now();
    for i in 0..4u16 {
        r.adapter.handle_frame(now, &syn(&r, 40000 + i, 80));
    }
    queued_on(&r);
    // An ACK and a retransmitted SYN of the 3rd connection go to processor 2.
    let ack = tcp_frame(r.mac, VIP, 40002, 80, TcpFlags::ACK, 1001, 5000);
    assert_eq!(
        r.adapter.handle_frame(now, &ack),
        Decision::Flow { processor: 2 }
    );
    assert_eq!(
        r.adapter.handle_frame(now, &syn(&r, 40002, 80)),
        Decision::Flow { processor: 2 }
    );
    assert_eq!(queued_on(&r), vec![2, 2]);
    // A new connection continues the cycle where it was.
    assert!(matches!(
        r.adapter.handle_frame(now, &syn(&r, 40004, 80)),
        Decision::NewConnection { processor: 0, .. }
    ));
}

#[test]
fn filter_none_gives_all_to_first_listener() {
    let mut r = rig(FilterMode::None, 4, &[80]);
    let now = Instant::now();
    for i in 0..8u16 {
        r.adapter.handle_frame(now, &syn(&r, 40000 + i, 80));
    }
    assert_eq!(queued_on(&r), vec![0; 8]);
}

#[test]
fn syn_to_closed_port_gets_rst_ack() {
    let mut r = rig(FilterMode::RoundRobin, 4, &[80]);
    let d = r.adapter.handle_frame(Instant::now(), &syn(&r, 40000, 81));
    assert_eq!(d, Decision::RstClosedPort);
    let (flags, seq, ack, sport, dport) = sent_tcp(&r);
    assert_eq!(flags, TcpFlags::RST | TcpFlags::ACK);
    assert_eq!(
        (seq, ack),
        (0, 1001),
        "RST seq=0 ack=SEG.SEQ+SEG.LEN (SYN counts 1)"
    );
    assert_eq!((sport, dport), (81, 40000));
    assert_eq!(queued_on(&r), Vec::<usize>::new());
    assert_eq!(Counters::get(&r.counters.rst_sent), 1);
}

#[test]
fn ack_for_unknown_connection_gets_rst_with_its_ack_number() {
    let mut r = rig(FilterMode::RoundRobin, 4, &[80]);
    let f = tcp_frame(r.mac, VIP, 40000, 80, TcpFlags::ACK, 77, 123_456);
    assert_eq!(
        r.adapter.handle_frame(Instant::now(), &f),
        Decision::RstNoConnection
    );
    let (flags, seq, _, _, _) = sent_tcp(&r);
    assert_eq!(flags, TcpFlags::RST);
    assert_eq!(seq, 123_456, "RST seq=SEG.ACK");
}

#[test]
fn rst_for_unknown_connection_is_not_answered() {
    let mut r = rig(FilterMode::RoundRobin, 4, &[80]);
    let f = tcp_frame(r.mac, VIP, 40000, 80, TcpFlags::RST, 77, 0);
    assert_eq!(
        r.adapter.handle_frame(Instant::now(), &f),
        Decision::RstNoConnection
    );
    assert!(r.sink.take().is_empty());
}

#[test]
fn closed_flow_is_forgotten_and_next_syn_placed_anew() {
    let mut r = rig(FilterMode::RoundRobin, 4, &[80]);
    let now = Instant::now();
    r.adapter.handle_frame(now, &syn(&r, 40000, 80));
    let stamp = match r.queues[0].try_recv() {
        Ok(ToProcessor::Segment(inb)) => {
            assert_eq!(inb.peer_mac, HOST_MAC);
            inb.syn_stamp
        }
        other => panic!("expected a segment, got {other:?}"),
    };
    assert_eq!(r.adapter.flows().len(), 1);
    let tuple = r.adapter_tuple(40000);
    r.closed
        .send(
            FlowClosed {
                tuple,
                syn_stamp: stamp,
            }
            .into(),
        )
        .expect("send");
    r.adapter.reap_closed();
    assert_eq!(r.adapter.flows().len(), 0);
    assert!(matches!(
        r.adapter.handle_frame(now, &syn(&r, 40000, 80)),
        Decision::NewConnection { processor: 1, .. }
    ));
}

impl Rig {
    fn adapter_tuple(&self, sport: u16) -> vnic_stack::FourTuple {
        vnic_stack::FourTuple {
            local: std::net::SocketAddr::new(IpAddr::V4(VIP), 80),
            remote: std::net::SocketAddr::new(IpAddr::V4(HOST), sport),
        }
    }
}

#[test]
fn bad_tcp_checksum_is_counted_and_dropped() {
    let mut r = rig(FilterMode::RoundRobin, 4, &[80]);
    let mut f = syn(&r, 40000, 80);
    let n = f.len();
    f[n - 4] ^= 0x55; // inside the TCP header (window field), checksum now wrong
    assert_eq!(
        r.adapter.handle_frame(Instant::now(), &f),
        Decision::Dropped(DropKind::BadTcpChecksum)
    );
    assert_eq!(r.counters.dropped(DropKind::BadTcpChecksum), 1);
    assert!(r.sink.take().is_empty());
    assert_eq!(queued_on(&r), Vec::<usize>::new());
}

#[test]
fn malformed_frames_are_counted_by_kind() {
    let mut r = rig(FilterMode::RoundRobin, 4, &[80]);
    let now = Instant::now();
    let good = syn(&r, 40000, 80);
    assert_eq!(
        r.adapter.handle_frame(now, &good[..10]),
        Decision::Dropped(DropKind::TruncatedEthernet)
    );
    assert_eq!(
        r.adapter.handle_frame(now, &good[..20]),
        Decision::Dropped(DropKind::BadIpv4Header)
    );
    let mut bad_ip = good.clone();
    bad_ip[14 + 10] ^= 0xff; // IPv4 header checksum
    assert_eq!(
        r.adapter.handle_frame(now, &bad_ip),
        Decision::Dropped(DropKind::BadIpv4Checksum)
    );
    let mut long = good.clone();
    long[14 + 2] = 0x05; // total length 1280+ > frame
    assert_eq!(
        r.adapter.handle_frame(now, &long),
        Decision::Dropped(DropKind::BadIpv4Header)
    );
    assert_eq!(r.counters.dropped(DropKind::BadIpv4Header), 2);
}

#[test]
fn frames_for_other_macs_and_ips_are_ignored() {
    let mut r = rig(FilterMode::RoundRobin, 4, &[80]);
    let now = Instant::now();
    let other_mac = tcp_frame([0x0a, 9, 9, 9, 9, 9], VIP, 40000, 80, TcpFlags::SYN, 1, 0);
    assert_eq!(r.adapter.handle_frame(now, &other_mac), Decision::NotForUs);
    let other_ip = tcp_frame(r.mac, HOST, 40000, 80, TcpFlags::SYN, 1, 0);
    assert_eq!(r.adapter.handle_frame(now, &other_ip), Decision::NotForUs);
    assert!(r.sink.take().is_empty());
}

#[test]
fn syn_cookies_when_the_half_open_queue_is_full() {
    let mut r = rig(FilterMode::RoundRobin, 2, &[80]);
    let cookies = Arc::new(vnic_stack::SynCookies::new([5; 16], Instant::now()));
    r.adapter
        .set_syn_cookies(cookies, 1, &vnic_stack::TcpConfig::default());
    let now = Instant::now();
    // Processor 0 holds one half-open connection: its queue (1) is full.
    Counters::bump(&r.counters.half_open[0]);
    let d = r.adapter.handle_frame(now, &syn(&r, 40000, 80));
    assert_eq!(
        d,
        Decision::SynCookie {
            processor: 0,
            port: 80
        }
    );
    assert_eq!(r.adapter.flows().len(), 0, "no state for a cookie SYN");
    assert_eq!(
        queued_on(&r),
        Vec::<usize>::new(),
        "no processor is involved"
    );
    // The RX thread answers with the cookie SYN|ACK itself: the cookie is
    // its sequence number, what the key computes for this SYN.
    let (flags, cookie, ack, sport, dport) = sent_tcp(&r);
    assert_eq!(flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!((ack, sport, dport), (1001, 80, 40000));
    let same_key = vnic_stack::SynCookies::new([5; 16], now);
    let tuple = FourTuple {
        local: SocketAddr::new(IpAddr::V4(VIP), 80),
        remote: SocketAddr::new(IpAddr::V4(HOST), 40000),
    };
    assert_eq!(
        same_key.make(now, &tuple, SeqNumber(1000), None).0,
        cookie,
        "the key's cookie for this SYN"
    );
    // Processor 1 is not full: the next SYN gets a normal placement.
    assert!(matches!(
        r.adapter.handle_frame(now, &syn(&r, 40001, 80)),
        Decision::NewConnection { processor: 1, .. }
    ));
    queued_on(&r);
    // A forged ACK is refused with RST; the genuine one opens the connection.
    let forged = tcp_frame(r.mac, VIP, 40000, 80, TcpFlags::ACK, 1001, cookie ^ 0x40);
    assert_eq!(
        r.adapter.handle_frame(now, &forged),
        Decision::RstNoConnection
    );
    r.sink.take();
    let ack = tcp_frame(
        r.mac,
        VIP,
        40000,
        80,
        TcpFlags::ACK,
        1001,
        cookie.wrapping_add(1),
    );
    assert!(matches!(
        r.adapter.handle_frame(now, &ack),
        Decision::NewConnection { .. }
    ));
    let msgs: Vec<Option<u16>> = r
        .queues
        .iter()
        .flat_map(|q| q.try_iter())
        .filter_map(|m| match m {
            ToProcessor::Segment(inb) => Some(inb.cookie_mss),
            _ => None,
        })
        .collect();
    assert_eq!(
        msgs,
        vec![Some(536)],
        "handed over with the cookie's MSS (no MSS option: 536)"
    );
    assert_eq!(r.adapter.flows().len(), 2);
}

/// A connection completed from a SYN cookie goes to a listener that serves
/// its destination address: when the picked processor's queue is full, the
/// next in line bound to that address or a wildcard one, never a listener
/// bound to another address (it would answer for an address it does not
/// serve); with none, the ACK is dropped (the client retries).
#[test]
fn a_cookie_connection_lands_only_on_a_listener_of_its_address() {
    const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
    let mut filter = Filter::new(FilterMode::RoundRobin, 2);
    filter.set_port_share(true);
    for (p, a) in [(0, OTHER), (1, VIP)] {
        let mut s = vnic_adapter::filter::ListenerSpec::tcp(80, p);
        s.address = Some(IpAddr::V4(a));
        filter.add_listener(s).expect("bound listener");
    }
    let (mut r, senders) = rig_with(&[IpAddr::V4(VIP), IpAddr::V4(OTHER)], filter);
    let now = Instant::now();
    let cookies = Arc::new(vnic_stack::SynCookies::new([5; 16], now));
    r.adapter
        .set_syn_cookies(cookies, 1, &vnic_stack::TcpConfig::default());
    // Processor 1 (the only listener of VIP) has a full queue.
    while senders[1].try_send(ToProcessor::Up).is_ok() {}
    assert_eq!(
        r.adapter.handle_frame(now, &syn(&r, 40000, 80)),
        Decision::SynCookie {
            processor: 1,
            port: 80
        }
    );
    let (_, cookie, ..) = sent_tcp(&r);
    let ack = tcp_frame(
        r.mac,
        VIP,
        40000,
        80,
        TcpFlags::ACK,
        1001,
        cookie.wrapping_add(1),
    );
    assert_eq!(
        r.adapter.handle_frame(now, &ack),
        Decision::Dropped(DropKind::QueueFull),
        "processor 0 listens on 10.0.0.3 only"
    );
    assert!(
        r.queues[0].try_recv().is_err(),
        "nothing reached processor 0"
    );
    assert_eq!(r.adapter.flows().len(), 0);
}

/// Issue 15: a stray ACK is checked as a SYN cookie only when cookies were
/// sent in the last two cookie periods (no genuine cookie can be older).
/// Otherwise even an ACK that carries a valid cookie (here computed with
/// the same key, as a lucky guess would be) is a stray: RST.
#[test]
fn cookie_acks_are_checked_only_when_cookies_were_sent_recently() {
    let mut r = rig(FilterMode::RoundRobin, 1, &[80]);
    let t0 = Instant::now();
    let cookies = Arc::new(vnic_stack::SynCookies::new([5; 16], t0));
    r.adapter
        .set_syn_cookies(cookies, 1, &vnic_stack::TcpConfig::default());
    let same_key = vnic_stack::SynCookies::new([5; 16], t0);
    let tuple = |sport| FourTuple {
        local: SocketAddr::new(IpAddr::V4(VIP), 80),
        remote: SocketAddr::new(IpAddr::V4(HOST), sport),
    };
    let ack_of = |r: &Rig, sport, cookie: SeqNumber| {
        tcp_frame(
            r.mac,
            VIP,
            sport,
            80,
            TcpFlags::ACK,
            1001,
            cookie.0.wrapping_add(1),
        )
    };
    // No cookie sent yet.
    let guess = same_key.make(t0, &tuple(40000), SeqNumber(1000), None);
    assert_eq!(
        r.adapter.handle_frame(t0, &ack_of(&r, 40000, guess)),
        Decision::RstNoConnection
    );
    r.sink.take();
    // A cookie goes out (the half-open queue is full): cookies are checked.
    Counters::bump(&r.counters.half_open[0]);
    assert!(matches!(
        r.adapter.handle_frame(t0, &syn(&r, 40001, 80)),
        Decision::SynCookie { .. }
    ));
    r.sink.take();
    let guess = same_key.make(t0, &tuple(40002), SeqNumber(1000), None);
    assert!(matches!(
        r.adapter.handle_frame(t0, &ack_of(&r, 40002, guess)),
        Decision::NewConnection { .. }
    ));
    queued_on(&r);
    // Three periods (64 s each) later, with no cookie sent since: strays again.
    let later = t0 + std::time::Duration::from_secs(3 * 64);
    let guess = same_key.make(later, &tuple(40003), SeqNumber(1000), None);
    assert_eq!(
        r.adapter.handle_frame(later, &ack_of(&r, 40003, guess)),
        Decision::RstNoConnection
    );
}
