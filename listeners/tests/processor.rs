//! A processor driven directly: segments crafted by pnet_packet go in
//! through `on_inbound`, frames come out into a capture sink and are read
//! back with pnet_packet.

use crossbeam_channel::unbounded;
use pnet_packet::ethernet::EthernetPacket;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags, TcpPacket};
use pnet_packet::Packet;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use vnic_adapter::emit::CaptureSink;
use vnic_adapter::trace::Tracer;
use vnic_adapter::{Counters, FrameWriter, Inbound, ToProcessor};
use vnic_listeners::app::{App, AppContext, Refused, Service, Socket};
use vnic_listeners::processor::{AppSource, Inbox, Processor, ProcessorSetup};
use vnic_listeners::stats::Registry;
use vnic_stack::{wire, FourTuple, IsnGenerator, Segment, TcpConfig};

const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// Makes a [`Fragile`] app per connection.
struct FragileService;
impl Service for FragileService {
    fn name(&self) -> &str {
        "fragile"
    }
    fn open(&self, _ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        Ok(Box::new(Fragile))
    }
}

/// An app that panics when it reads the byte `!`, and echoes otherwise.
struct Fragile;
impl App for Fragile {
    fn poll(&mut self, sock: &mut dyn Socket) {
        let mut buf = [0u8; 1024];
        let n = sock.recv(&mut buf);
        assert!(!buf[..n].contains(&b'!'), "planted fault");
        sock.send(&buf[..n]);
    }
}

struct Rig {
    p: Processor,
    sink: Arc<CaptureSink>,
    registry: Arc<Registry>,
    queue: vnic_adapter::ProcessorQueue,
}

fn rig(max_connections: usize) -> Rig {
    rig_serving(max_connections, Arc::new(FragileService))
}

/// A rig whose port 7 runs `service`.
fn rig_serving(max_connections: usize, service: Arc<dyn Service>) -> Rig {
    rig_with(max_connections, service, usize::MAX)
}

/// A rig whose port 7 runs `service`, its connections held to
/// `memory_budget` bytes.
fn rig_with(max_connections: usize, service: Arc<dyn Service>, memory_budget: usize) -> Rig {
    let sink = Arc::new(CaptureSink::default());
    let out = FrameWriter::new(sink.clone(), [2, 0, 0, 0, 0, 2], Arc::new(Counters::new(1)));
    let registry = Arc::new(Registry::new("monolithic", "round-robin", 1));
    let (q_tx, q_rx) = Inbox::new(1024, usize::MAX).expect("inbox");
    let (closed_tx, _closed_rx) = unbounded();
    let mut serve = HashMap::new();
    serve.insert(7, service);
    let p = Processor::new(ProcessorSetup {
        direct: None,
        slow: None,
        id: 0,
        queue: q_rx,
        closed: vec![closed_tx],
        peers: vec![q_tx.clone()],
        pairs: Arc::new(vnic_adapter::Pairs::none()),
        checkpoint_queues: Vec::new(),
        hand_off: None,
        out,
        serve,
        udp_serve: HashMap::new(),
        tcp_config: TcpConfig::default(),
        tcp_ports: HashMap::new(),
        isn: Arc::new(IsnGenerator::new([7; 16], Instant::now())),
        registry: registry.clone(),
        apps: AppSource::Local,
        tracer: Tracer::disabled(),
        max_connections,
        adapter_counters: Arc::new(Counters::new(1)),
        memory_budget,
    });
    Rig {
        p,
        sink,
        registry,
        queue: q_tx,
    }
}

fn tuple(port: u16) -> FourTuple {
    FourTuple {
        local: SocketAddr::new(IpAddr::V4(VIP), 7),
        remote: SocketAddr::new(IpAddr::V4(HOST), port),
    }
}

/// A segment from the host, crafted by pnet and parsed by the stack's edge.
fn seg(port: u16, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Segment {
    seg_win(port, flags, seq, ack, 65535, payload)
}

/// [`seg`] advertising window `win`.
fn seg_win(port: u16, flags: u8, seq: u32, ack: u32, win: u16, payload: &[u8]) -> Segment {
    let mut t = vec![0u8; 20 + payload.len()];
    let mut p = MutableTcpPacket::new(&mut t).expect("tcp");
    p.set_source(port);
    p.set_destination(7);
    p.set_sequence(seq);
    p.set_acknowledgement(ack);
    p.set_data_offset(5);
    p.set_flags(flags);
    p.set_window(win);
    p.set_payload(payload);
    let ck = tcp::ipv4_checksum(&p.to_immutable(), &HOST, &VIP);
    p.set_checksum(ck);
    wire::parse(IpAddr::V4(HOST), IpAddr::V4(VIP), &t).expect("valid segment")
}

fn feed(r: &mut Rig, port: u16, s: Segment) {
    r.p.on_inbound(Inbound {
        tuple: tuple(port),
        segment: s,
        peer_mac: [2, 0, 0, 0, 0, 1],
        syn_stamp: 0,
        cookie_mss: None,
        counted_syn: false,
        arrived: Instant::now(),
    });
}

/// Puts a segment from `port` on the processor's queue (for `run`).
fn queue_segment(r: &Rig, port: u16, s: Segment) {
    r.queue
        .send(ToProcessor::Segment(Inbound {
            tuple: tuple(port),
            segment: s,
            peer_mac: [2, 0, 0, 0, 0, 1],
            syn_stamp: 0,
            cookie_mss: None,
            counted_syn: false,
            arrived: Instant::now(),
        }))
        .expect("queue");
}

/// Runs the processor's thread on what is queued: waits for its first
/// frames and a moment more, stops it, and returns every frame it sent.
fn run_queued(r: Rig) -> Vec<Vec<u8>> {
    let Rig { p, sink, queue, .. } = r;
    let t = std::thread::spawn(move || p.run());
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while sink.is_empty() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let frames = sink.take();
    queue.send(ToProcessor::Shutdown).expect("shutdown");
    t.join().expect("processor thread");
    frames
}

/// (dst port, flags, seq, ack, payload) of every TCP frame sent.
fn sent(r: &Rig) -> Vec<(u16, u8, u32, u32, Vec<u8>)> {
    r.sink
        .take()
        .iter()
        .map(|f| {
            let e = EthernetPacket::new(f).expect("eth");
            let ip = Ipv4Packet::new(e.payload()).expect("ip");
            let t = TcpPacket::new(ip.payload()).expect("tcp");
            assert_eq!(tcp::ipv4_checksum(&t, &VIP, &HOST), t.get_checksum());
            (
                t.get_destination(),
                t.get_flags(),
                t.get_sequence(),
                t.get_acknowledgement(),
                t.payload().to_vec(),
            )
        })
        .collect()
}

/// Opens a connection from `port`; returns our ISS.
fn open(r: &mut Rig, port: u16) -> u32 {
    feed(r, port, seg(port, TcpFlags::SYN, 1000, 0, &[]));
    let out = sent(r);
    let synack = out
        .iter()
        .find(|o| o.1 == TcpFlags::SYN | TcpFlags::ACK)
        .expect("SYN|ACK");
    let iss = synack.2;
    feed(
        r,
        port,
        seg(port, TcpFlags::ACK, 1001, iss.wrapping_add(1), &[]),
    );
    sent(r);
    iss
}

#[test]
fn a_panic_in_one_connection_resets_only_that_connection() {
    let mut r = rig(100);
    let a = open(&mut r, 40001);
    let b = open(&mut r, 40002);
    assert_eq!(r.p.connections(), 2);
    // The planted fault fires on connection b.
    feed(
        &mut r,
        40002,
        seg(
            40002,
            TcpFlags::ACK | TcpFlags::PSH,
            1001,
            b.wrapping_add(1),
            b"boom!",
        ),
    );
    let out = sent(&r);
    assert!(
        out.iter().any(|o| o.0 == 40002 && o.1 & TcpFlags::RST != 0),
        "b was reset: {out:?}"
    );
    assert_eq!(r.p.connections(), 1);
    assert_eq!(
        r.registry.processors[0]
            .panics
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Connection a still echoes.
    feed(
        &mut r,
        40001,
        seg(
            40001,
            TcpFlags::ACK | TcpFlags::PSH,
            1001,
            a.wrapping_add(1),
            b"hello",
        ),
    );
    let out = sent(&r);
    assert!(
        out.iter().any(|o| o.0 == 40001 && o.4 == b"hello"),
        "a answered: {out:?}"
    );
}

#[test]
fn syn_beyond_the_connection_limit_gets_rst() {
    let mut r = rig(2);
    open(&mut r, 40001);
    open(&mut r, 40002);
    feed(&mut r, 40003, seg(40003, TcpFlags::SYN, 5000, 0, &[]));
    let out = sent(&r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, TcpFlags::RST | TcpFlags::ACK);
    assert_eq!(out[0].3, 5001);
    assert_eq!(r.p.connections(), 2);
    assert_eq!(
        r.registry.processors[0]
            .refused
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn a_cookie_ack_opens_the_connection_it_stands_for() {
    let mut r = rig(100);
    // The adapter answered the SYN (seq 5000) with cookie 0x1234_5678 and
    // found the ACK genuine: it hands the ACK over with the cookie's MSS.
    let cookie: u32 = 0x1234_5678;
    r.p.on_inbound(Inbound {
        tuple: tuple(40003),
        segment: seg(40003, TcpFlags::ACK, 5001, cookie.wrapping_add(1), &[]),
        peer_mac: [2, 0, 0, 0, 0, 1],
        syn_stamp: 1,
        cookie_mss: Some(536),
        counted_syn: false,
        arrived: Instant::now(),
    });
    assert_eq!(r.p.connections(), 1);
    assert!(sent(&r).is_empty(), "no second SYN|ACK");
    // Data flows at once, and the cookie's MSS holds: 600 bytes come back as 536 + 64.
    feed(
        &mut r,
        40003,
        seg(
            40003,
            TcpFlags::ACK | TcpFlags::PSH,
            5001,
            cookie.wrapping_add(1),
            &[b'x'; 600],
        ),
    );
    let out = sent(&r);
    let data: Vec<usize> = out
        .iter()
        .filter(|o| o.0 == 40003 && !o.4.is_empty())
        .map(|o| o.4.len())
        .collect();
    assert_eq!(data.first().copied(), Some(536), "{data:?}");
    assert_eq!(
        out.iter().find(|o| !o.4.is_empty()).map(|o| o.2),
        Some(cookie.wrapping_add(1))
    );
}

/// A forged segment from another MAC (out of window, so it moves nothing)
/// does not redirect the connection: what it draws and what genuine data
/// brings later both go to the MAC of the genuine peer.
#[test]
fn a_forged_segment_does_not_redirect_the_connection() {
    let mut r = rig(100);
    let iss = open(&mut r, 40004);
    let real = [2, 0, 0, 0, 0, 1];
    r.p.on_inbound(Inbound {
        tuple: tuple(40004),
        segment: seg(
            40004,
            TcpFlags::ACK | TcpFlags::PSH,
            1001u32.wrapping_add(50_000_000),
            iss.wrapping_add(1),
            b"forged",
        ),
        peer_mac: [6, 6, 6, 6, 6, 6],
        syn_stamp: 0,
        cookie_mss: None,
        counted_syn: false,
        arrived: Instant::now(),
    });
    feed(
        &mut r,
        40004,
        seg(
            40004,
            TcpFlags::ACK | TcpFlags::PSH,
            1001,
            iss.wrapping_add(1),
            b"hello",
        ),
    );
    let frames = r.sink.take();
    let mut echoed = false;
    for f in &frames {
        let e = EthernetPacket::new(f).expect("eth");
        assert_eq!(e.get_destination().octets(), real, "to the genuine peer");
        let ip = Ipv4Packet::new(e.payload()).expect("ip");
        let t = TcpPacket::new(ip.payload()).expect("tcp");
        echoed |= t.payload() == b"hello";
    }
    assert!(echoed, "the genuine data was echoed");
}

/// Segments already queued when the processor looks are taken as one
/// batch and the connection is serviced once: eight 10-byte segments draw
/// one answer, echoing all 80 bytes and acknowledging the last.
#[test]
fn queued_segments_are_answered_as_one_batch() {
    let mut r = rig(100);
    let iss = open(&mut r, 40005);
    for i in 0..8u32 {
        let s = seg(
            40005,
            TcpFlags::ACK | TcpFlags::PSH,
            1001 + 10 * i,
            iss.wrapping_add(1),
            &[b'a' + i as u8; 10],
        );
        queue_segment(&r, 40005, s);
    }
    let want: Vec<u8> = (0..8u8).flat_map(|i| [b'a' + i; 10]).collect();
    let frames = run_queued(r);
    assert!(!frames.is_empty(), "an answer");
    // The first frame answers the whole batch; any later one is the same
    // answer again (a tail-loss probe: the test never acknowledges it).
    for f in &frames {
        let e = EthernetPacket::new(f).expect("eth");
        let ip = Ipv4Packet::new(e.payload()).expect("ip");
        let tcp = TcpPacket::new(ip.payload()).expect("tcp");
        assert_eq!(tcp.get_acknowledgement(), 1081, "acknowledges all 80 bytes");
        assert_eq!(tcp.get_sequence(), iss.wrapping_add(1));
        assert_eq!(tcp.payload(), &want[..], "echoes them in order, at once");
    }
}

/// A batch does not swallow a whole window into one ACK: a connection is
/// answered at least every 16 KiB of a batch, so one lost ACK cannot
/// leave the sender without news of a whole window.
#[test]
fn a_large_batch_is_acknowledged_every_16_kib() {
    let mut r = rig(100);
    let iss = open(&mut r, 40006);
    for i in 0..48u32 {
        let s = seg(
            40006,
            TcpFlags::ACK,
            1001 + 1000 * i,
            iss.wrapping_add(1),
            &[b'z'; 1000],
        );
        queue_segment(&r, 40006, s);
    }
    let frames = run_queued(r);
    let acks: Vec<u32> = frames
        .iter()
        .map(|f| {
            let e = EthernetPacket::new(f).expect("eth");
            let ip = Ipv4Packet::new(e.payload()).expect("ip");
            TcpPacket::new(ip.payload())
                .expect("tcp")
                .get_acknowledgement()
        })
        .collect();
    let mut last = 1001u32;
    for a in &acks {
        assert!(a - last <= 17_000, "ACKs {acks:?}: a gap over 16 KiB");
        last = *a;
    }
    assert_eq!(last, 1001 + 48_000, "all acknowledged: {acks:?}");
}

/// Makes a [`Blaster`] per connection.
struct BlasterService;
impl Service for BlasterService {
    fn name(&self) -> &str {
        "blaster"
    }
    fn open(&self, _ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        Ok(Box::new(Blaster(0)))
    }
}

/// An app that keeps the send buffer full of the byte pattern `i % 251`
/// (its field: bytes queued so far).
struct Blaster(usize);
impl App for Blaster {
    fn poll(&mut self, sock: &mut dyn Socket) {
        let n = sock.send_capacity().min(64 * 1024);
        let chunk: Vec<u8> = (self.0..self.0 + n).map(|i| (i % 251) as u8).collect();
        self.0 += sock.send(&chunk);
    }
    fn nagle(&self) -> bool {
        false
    }
}

/// Issue 15 part 3: one pass over a connection sends at most
/// `MAX_SEGMENTS_PER_PASS` (64) segments; a connection that has more is
/// serviced again on the processor's next turn, and no byte is lost,
/// duplicated or reordered on the way.
#[test]
fn a_pass_sends_at_most_64_segments_and_the_rest_follows_next_turn() {
    let mut r = rig_serving(100, Arc::new(BlasterService));
    feed(&mut r, 40010, seg(40010, TcpFlags::SYN, 1000, 0, &[]));
    let iss = sent(&r)
        .iter()
        .find(|o| o.1 == TcpFlags::SYN | TcpFlags::ACK)
        .expect("SYN|ACK")
        .2;
    let mut next = iss.wrapping_add(1);
    feed(&mut r, 40010, seg(40010, TcpFlags::ACK, 1001, next, &[]));
    let mut most = 0usize;
    let mut turns_after_the_limit = 0;
    // Data frames of one pass: checked in order, contiguous, the pattern;
    // returns the end of each.
    let check = |r: &Rig, next: &mut u32| -> Vec<u32> {
        let frames = sent(r);
        let mut ends = Vec::new();
        for f in frames.iter().filter(|f| !f.4.is_empty()) {
            assert_eq!(f.2, *next, "contiguous, in order");
            let off = f.2.wrapping_sub(iss.wrapping_add(1)) as usize;
            for (i, b) in f.4.iter().enumerate() {
                assert_eq!(*b, ((off + i) % 251) as u8, "byte {}", off + i);
            }
            *next = next.wrapping_add(f.4.len() as u32);
            ends.push(*next);
        }
        ends
    };
    let mut in_flight = check(&r, &mut next);
    for round in 0..12 {
        // Rounds 0-5: an ACK for every segment, so slow start doubles cwnd
        // each round. Then one cumulative ACK a round: it releases the
        // whole window (122 segments of 536 bytes) in one pass.
        let acks: Vec<u32> = if round < 6 {
            std::mem::take(&mut in_flight)
        } else {
            vec![next]
        };
        in_flight.clear();
        for ack in acks {
            feed(&mut r, 40010, seg(40010, TcpFlags::ACK, 1001, ack, &[]));
            let ends = check(&r, &mut next);
            most = most.max(ends.len());
            assert!(ends.len() <= 64, "{} segments in one pass", ends.len());
            in_flight.extend(ends);
            // The processor's next turns.
            loop {
                let more = r.p.service_backlog(Instant::now());
                let ends = check(&r, &mut next);
                assert!(ends.len() <= 64, "{} segments in a later pass", ends.len());
                turns_after_the_limit += usize::from(!ends.is_empty());
                in_flight.extend(ends);
                if !more {
                    break;
                }
            }
        }
    }
    assert_eq!(most, 64, "the window released more than a pass sends");
    assert!(turns_after_the_limit > 0);
    assert!(next.wrapping_sub(iss) > 300_000, "the transfer went on");
}

/// Issue 15 part 5: ACKs for unacceptable segments, challenge ACKs and the
/// RSTs a processor sends for segments of no connection share one token
/// bucket per processor (1000 a second, bursts of 1000): a blind flood of
/// invalid segments cannot make the processor send a frame for each.
#[test]
fn replies_to_invalid_segments_are_rate_limited_per_processor() {
    let mut r = rig(100);
    let a = open(&mut r, 40020);
    let b = open(&mut r, 40021);
    let mut replies = 0;
    for i in 0..1500u32 {
        // Far out of the window: an ACK each, before the fix.
        let far = 1001u32.wrapping_add(10_000_000 + i);
        feed(
            &mut r,
            40020,
            seg(40020, TcpFlags::ACK, far, a.wrapping_add(1), b"x"),
        );
        feed(
            &mut r,
            40021,
            seg(40021, TcpFlags::ACK, far, b.wrapping_add(1), b"x"),
        );
        // No connection at all: an RST each, before the fix.
        feed(
            &mut r,
            50000 + (i % 1000) as u16,
            seg(50000, TcpFlags::ACK, 7, 7, &[]),
        );
        replies += sent(&r).len();
    }
    assert!(
        replies <= 1100,
        "{replies} replies to 4500 invalid segments"
    );
    assert!(replies >= 1000, "the burst is allowed: {replies}");
    // Valid data is still acknowledged.
    feed(
        &mut r,
        40020,
        seg(40020, TcpFlags::ACK, 1001, a.wrapping_add(1), b"ok"),
    );
    let out = sent(&r);
    assert!(out.iter().any(|o| o.3 == 1003), "{out:?}");
}

/// Makes a [`Hog`] per connection.
struct HogService;
impl Service for HogService {
    fn name(&self) -> &str {
        "hog"
    }
    fn open(&self, _ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        Ok(Box::new(Hog))
    }
}

/// An app that queues all its connection's send buffer takes (as chargen
/// does): with the peer's window closed, each connection holds a full
/// send buffer.
struct Hog;
impl App for Hog {
    fn poll(&mut self, sock: &mut dyn Socket) {
        let chunk = [b'h'; 4096];
        while sock.send(&chunk) > 0 {}
    }
}

/// Opens a connection from `port` whose ACK closes the window.
fn open_closed_window(r: &mut Rig, port: u16) {
    feed(r, port, seg(port, TcpFlags::SYN, 1000, 0, &[]));
    let iss = sent(r)
        .iter()
        .find(|o| o.1 == TcpFlags::SYN | TcpFlags::ACK)
        .expect("SYN|ACK")
        .2;
    let ack = seg_win(port, TcpFlags::ACK, 1001, iss.wrapping_add(1), 0, &[]);
    feed(r, port, ack);
    assert!(sent(r).is_empty(), "nothing goes into a closed window");
}

/// Issue 15 part 4: at its budget a processor refuses new connections
/// (RST, counted), and then resets the connections whose peers have held
/// a zero window longest, oldest first, until the budget holds; after
/// that it accepts again.
#[test]
fn at_its_memory_budget_a_processor_refuses_then_resets_the_oldest_zero_window_holders() {
    let budget = 700 << 10;
    let mut r = rig_with(100, Arc::new(HogService), budget);
    let mem = |r: &Rig| r.registry.processors[0].memory.load(Ordering::Relaxed) as usize;
    for port in [41001, 41002, 41003] {
        open_closed_window(&mut r, port);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let held = mem(&r);
    assert!(held > budget, "three full send buffers: {held} bytes");
    assert!(
        held < (3 * 300) << 10,
        "each near its nominal 256 KiB: {held}"
    );

    feed(&mut r, 41004, seg(41004, TcpFlags::SYN, 1000, 0, &[]));
    let out = sent(&r);
    assert!(
        out.iter().any(|o| o.0 == 41004 && o.1 & TcpFlags::RST != 0),
        "a SYN beyond the budget gets RST: {out:?}"
    );
    let stats = &r.registry.processors[0];
    assert_eq!(stats.memory_refused.load(Ordering::Relaxed), 1);

    r.p.keep_budget(Instant::now());
    let out = sent(&r);
    let reset: Vec<u16> = out
        .iter()
        .filter(|o| o.1 & TcpFlags::RST != 0)
        .map(|o| o.0)
        .collect();
    assert_eq!(
        reset,
        vec![41001],
        "the oldest zero window goes, and only it"
    );
    assert_eq!(
        r.registry.processors[0]
            .memory_resets
            .load(Ordering::Relaxed),
        1
    );
    assert!(mem(&r) <= budget, "back under the budget: {}", mem(&r));
    assert_eq!(r.p.connections(), 2);

    feed(&mut r, 41005, seg(41005, TcpFlags::SYN, 1000, 0, &[]));
    assert!(
        sent(&r)
            .iter()
            .any(|o| o.0 == 41005 && o.1 == TcpFlags::SYN | TcpFlags::ACK),
        "accepting again"
    );
}

/// A connection that is gone gives its memory back to the budget.
#[test]
fn closed_connections_give_their_memory_back() {
    let mut r = rig_with(100, Arc::new(HogService), usize::MAX);
    open_closed_window(&mut r, 42001);
    let mem = |r: &Rig| r.registry.processors[0].memory.load(Ordering::Relaxed);
    assert!(mem(&r) > 256 << 10);
    feed(&mut r, 42001, seg(42001, TcpFlags::RST, 1001, 0, &[]));
    assert_eq!(r.p.connections(), 0);
    assert_eq!(mem(&r), 0);
}

#[test]
fn the_timer_heap_stays_within_twice_the_connections() {
    // Each connection arms its idle timer (ten minutes away) and is then
    // reset by its peer: the entries it leaves would stay ten minutes.
    let mut r = rig(100_000);
    for i in 0..6000u16 {
        let port = 10_000 + i;
        let iss = open(&mut r, port);
        feed(
            &mut r,
            port,
            seg(port, TcpFlags::RST, 1001, iss.wrapping_add(1), &[]),
        );
        let held = r.p.connections();
        assert!(
            r.p.timer_entries() <= 2 * held + 1024,
            "{} timer entries for {held} connections",
            r.p.timer_entries()
        );
    }
    assert_eq!(r.p.connections(), 0);
    sent(&r);
}

/// Makes a [`Closer`] per connection.
struct CloserService;
impl Service for CloserService {
    fn name(&self) -> &str {
        "closer"
    }
    fn open(&self, _ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        Ok(Box::new(Closer))
    }
}

/// Answers the first bytes with "bye" and closes first, as HTTP with
/// `Connection: close` does: TIME-WAIT is the server's.
struct Closer;
impl App for Closer {
    fn poll(&mut self, sock: &mut dyn Socket) {
        let mut buf = [0u8; 64];
        if sock.recv(&mut buf) > 0 {
            sock.send(b"bye");
            sock.close();
        }
    }
}

/// Takes a connection from `port` through a request and our close into
/// TIME-WAIT; returns our ISS.
fn into_time_wait(r: &mut Rig, port: u16) -> u32 {
    let iss = open(r, port);
    let our = |n: u32| iss.wrapping_add(n);
    feed(
        r,
        port,
        seg(port, TcpFlags::ACK | TcpFlags::PSH, 1001, our(1), b"hi"),
    );
    let out = sent(r);
    assert!(
        out.iter()
            .any(|o| o.4 == b"bye" || o.1 & TcpFlags::FIN != 0),
        "{out:?}"
    );
    feed(r, port, seg(port, TcpFlags::ACK, 1003, our(5), &[]));
    feed(
        r,
        port,
        seg(port, TcpFlags::FIN | TcpFlags::ACK, 1003, our(5), &[]),
    );
    let out = sent(r);
    assert!(
        out.iter()
            .any(|o| o.1 == TcpFlags::ACK && o.2 == our(5) && o.3 == 1004),
        "the FIN's ACK: {out:?}"
    );
    iss
}

#[test]
fn a_connection_in_time_wait_is_parked_as_a_record_that_still_answers() {
    let mut r = rig_serving(100, Arc::new(CloserService));
    let port = 43001;
    let iss = into_time_wait(&mut r, port);
    assert_eq!((r.p.connections(), r.p.parked()), (0, 1));
    let active = |r: &Rig| r.registry.processors[0].active.load(Ordering::Relaxed);
    assert_eq!(active(&r), 1, "TIME-WAIT still counts as held");
    let tw = |r: &Rig| r.registry.processors[0].time_wait.load(Ordering::Relaxed);
    assert_eq!(tw(&r), 1);
    assert!(r.p.timer_entries() <= 1024);
    // A retransmitted FIN (our ACK was lost) is ACKed again.
    feed(
        &mut r,
        port,
        seg(
            port,
            TcpFlags::FIN | TcpFlags::ACK,
            1003,
            iss.wrapping_add(5),
            &[],
        ),
    );
    assert_eq!(
        sent(&r),
        vec![(port, TcpFlags::ACK, iss.wrapping_add(5), 1004, Vec::new())]
    );
    // An RST does not cut TIME-WAIT short (RFC 1337).
    feed(&mut r, port, seg(port, TcpFlags::RST, 1004, 0, &[]));
    assert!(sent(&r).is_empty());
    assert_eq!(r.p.parked(), 1);
    // A SYN above RCV.NXT opens a new incarnation (RFC 6191).
    feed(&mut r, port, seg(port, TcpFlags::SYN, 90_000, 0, &[]));
    let out = sent(&r);
    assert!(
        out.iter()
            .any(|o| o.1 == TcpFlags::SYN | TcpFlags::ACK && o.3 == 90_001),
        "{out:?}"
    );
    assert_eq!((r.p.connections(), r.p.parked()), (1, 0));
    assert_eq!((active(&r), tw(&r)), (1, 0));
}

#[test]
fn time_wait_records_neither_count_against_the_limit_nor_grow_past_it() {
    let mut r = rig_serving(8, Arc::new(CloserService));
    for i in 0..30u16 {
        into_time_wait(&mut r, 44_000 + i);
        assert_eq!(r.p.connections(), 0);
        assert!(r.p.parked() <= 8, "{} records", r.p.parked());
    }
    assert_eq!(r.p.parked(), 8, "the oldest gave way");
    let active = r.registry.processors[0].active.load(Ordering::Relaxed);
    assert_eq!(active, 8);
    // New connections are still taken: records do not fill the table.
    open(&mut r, 45_000);
    assert_eq!(r.p.connections(), 1);
}
