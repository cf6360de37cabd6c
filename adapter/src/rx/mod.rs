//! The RX path: one frame in, one decision out.
//!
//! [`RxQueue::handle_frame`] is the whole receive side of the emulated
//! adapter, free of I/O so unit tests can drive it with crafted frames.
//! [`RxQueue::run`] is the RX thread around it: read the TAP, handle,
//! repeat, and drop flow entries the processors report closed.

mod tcp;
mod thread;

use crate::arp;
use crate::checksum;
use crate::config::AdapterConfig;
use crate::counters::{Counters, DropKind};
use crate::direct::HandedBack;
use crate::emit::{FrameWriter, TTL};
use crate::filter::Filter;
use crate::filter::Protocol;
use crate::flow::FlowTable;
use crate::flowmap::FlowMap;
use crate::icmp;
use crate::ndp;
use crate::queue::{Datagram, FlowReport, Inbound, ProcessorQueue, QueueRefused, ToProcessor};
use crate::ratelimit::{TokenBucket, ICMP_RATE};
use crate::tap::{FrameSource, MAX_FRAME_LEN};
use crate::trace::{Direction, Note, Tracer};
use crossbeam_channel::Receiver;
use etherparse::{EtherType, Ethernet2HeaderSlice, IpNumber, Ipv4Slice, Ipv6Slice};
use parking_lot::Mutex;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vnic_stack::{wire, Control, FourTuple, Payload, Segment, SynCookies, WireError};

/// What the adapter did with one frame: the answer to "why did this frame
/// go there?", shown by traces and checked by tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Counted and dropped.
    Dropped(DropKind),
    /// For another MAC or another IP: ignored.
    NotForUs,
    /// Valid but nothing to do (an ARP reply, an ICMP type we do not answer).
    Ignored,
    /// Answered an ARP request.
    ArpReply,
    /// Answered a neighbour solicitation.
    NdpAdvert,
    /// Answered an echo request.
    EchoReply,
    /// Sent port unreachable for UDP.
    PortUnreachable,
    /// Would have sent port unreachable, but the rate limit said no.
    RateLimited,
    /// A SYN for a port nobody serves: RST.
    RstClosedPort,
    /// A segment for no connection: the RST RFC 9293 prescribes (or
    /// nothing, for an incoming RST).
    RstNoConnection,
    /// A new connection placed by the filter.
    NewConnection {
        /// The processor that got it.
        processor: usize,
        /// The listening port.
        port: u16,
        /// The listener's place in the port's line.
        slot: usize,
    },
    /// A segment of a known connection, sent to its processor.
    Flow {
        /// The processor holding the connection.
        processor: usize,
    },
    /// A new SYN answered with a SYN cookie: the half-open queue of the
    /// processor the filter chose was full; no state was kept.
    SynCookie {
        /// The processor the filter chose.
        processor: usize,
        /// The listening port.
        port: u16,
    },
    /// A UDP datagram placed by the filter on one of the port's listeners.
    Datagram {
        /// The processor that got it.
        processor: usize,
        /// The UDP port.
        port: u16,
        /// The listener's place in the port's line.
        slot: usize,
    },
}

impl Decision {
    /// The policy that placed it, for the trace's comment: the port's own
    /// for a new connection or a datagram, else the filter's mode.
    pub fn rule(&self, filter: &Filter) -> crate::FilterMode {
        match *self {
            Decision::NewConnection { port, .. } => filter.port_mode(Protocol::Tcp, port),
            Decision::Datagram { port, .. } => filter.port_mode(Protocol::Udp, port),
            _ => filter.mode(),
        }
    }
}

/// The receive side of the adapter.
pub struct RxQueue {
    cfg: AdapterConfig,
    filter: Arc<Mutex<Filter>>,
    flows: FlowTable,
    queues: Vec<ProcessorQueue>,
    closed: Receiver<FlowReport>,
    out: FrameWriter,
    counters: Arc<Counters>,
    unreachable_limit: TokenBucket,
    rst_limit: TokenBucket,
    cookies: Option<Arc<SynCookies>>,
    syn_backlog: u64,
    /// The MSS a cookie SYN|ACK advertises, IPv4 and IPv6.
    our_mss: (u16, u16),
    /// The frame being handled came with a checksum the link vouched for.
    checksum_trusted: bool,
    /// The RX queue this adapter thread reads (index into the counters).
    rx_queue: usize,
    /// While a frame is handled from a buffer the caller can give away:
    /// that buffer's address (a segment's text is located in it by
    /// address, never read through it).
    lend_base: Option<usize>,
    /// A large segment whose text goes to its processor in the read
    /// buffer, waiting for the frame's handling to end.
    handover: Option<Handover>,
    /// Text length from which a segment goes over in place.
    in_place_min: usize,
    /// With processor queues: the kernel's flow map, and the TAP queue of
    /// processor 0 (processor K reads queue `first + K`).
    steering: Option<(Arc<FlowMap>, usize)>,
    /// Frames the processors read from their own queues and hand back.
    handed_back: Option<Receiver<HandedBack>>,
    /// Process pairs: where a dead processor's connections went.
    pairs: Arc<crate::Pairs>,
    /// With several links: the one the frame being handled came in on
    /// (named in its trace comment).
    rx_link: Option<&'static str>,
}

/// Segments with at least this much text go to their processor in the
/// buffer they were read into instead of being copied out of it (the
/// copy was 40% of the RX thread in a profiled upload). Smaller ones are
/// copied: a frame buffer (64 KiB) held for a small segment would cost
/// more memory in a full queue than the copy saves.
pub const IN_PLACE_MIN: usize = 16 * 1024;

/// A segment of a known connection whose text is `text` in the frame
/// buffer being handled.
#[derive(Debug)]
struct Handover {
    processor: usize,
    inbound: Inbound,
    text: std::ops::Range<usize>,
}

impl RxQueue {
    /// An adapter that dispatches to `queues` (index = processor) and
    /// learns of closed connections from `closed`.
    pub fn new<Q: Into<ProcessorQueue>>(
        cfg: AdapterConfig,
        filter: Arc<Mutex<Filter>>,
        queues: Vec<Q>,
        closed: Receiver<FlowReport>,
        out: FrameWriter,
        counters: Arc<Counters>,
    ) -> RxQueue {
        RxQueue {
            cfg,
            filter,
            flows: FlowTable::new(),
            queues: queues.into_iter().map(Into::into).collect(),
            closed,
            out,
            counters,
            unreachable_limit: TokenBucket::new(ICMP_RATE.0, ICMP_RATE.1),
            rst_limit: TokenBucket::new(20_000, 2_000),
            cookies: None,
            syn_backlog: u64::MAX,
            our_mss: (536, 1220),
            checksum_trusted: false,
            rx_queue: 0,
            lend_base: None,
            handover: None,
            in_place_min: IN_PLACE_MIN,
            steering: None,
            handed_back: None,
            pairs: Arc::new(crate::Pairs::none()),
            rx_link: None,
        }
    }

    /// Steers the connections this adapter places to their processors'
    /// own TAP queues: their entries go into `flows` (processor K's queue
    /// is `first + K`) before their SYN goes to the processor, which
    /// removes them when it forgets the connection. See [`crate::flowmap`].
    pub fn set_processor_queues(&mut self, flows: Arc<FlowMap>, first: usize) {
        self.steering = Some((flows, first));
    }

    /// Frames the processors hand back ([`crate::direct::HandBack`]): the
    /// RX thread handles them as if it had read them.
    pub fn set_handed_back(&mut self, frames: Receiver<HandedBack>) {
        self.handed_back = Some(frames);
    }

    /// The flow table now maps `tuple` to `processor`: steer its frames
    /// to the processor's own queue.
    fn steer(&self, tuple: &FourTuple, processor: usize) {
        if let Some((flows, first)) = &self.steering {
            flows.insert(tuple, first + processor);
        }
    }

    /// The flow table dropped `tuple`: its frames come here again.
    fn unsteer(&self, tuple: &FourTuple) {
        if let Some((flows, _)) = &self.steering {
            flows.remove(tuple);
        }
    }

    /// Makes this the adapter thread of RX queue `queue` of `queues` (a
    /// multi-queue TAP, see [`crate::steer`]): its flow table's stamps name
    /// the queue, so closed connections are reported back here, and its
    /// share of the ICMP and RST rate limits is `1/queues`, so the limits
    /// hold for the whole adapter.
    pub fn set_rx_queue(&mut self, queue: usize, queues: usize) {
        let queues = queues.clamp(1, 1 << 16) as u32;
        self.rx_queue = queue;
        self.out.set_sender(self.counters.rx_sender(queue));
        self.flows = FlowTable::for_queue(queue);
        self.unreachable_limit =
            TokenBucket::new((ICMP_RATE.0 / queues).max(1), (ICMP_RATE.1 / queues).max(1));
        self.rst_limit = TokenBucket::new((20_000 / queues).max(1), (2_000 / queues).max(1));
    }

    /// Sets the text length from which a segment goes to its processor in
    /// the buffer it was read into ([`IN_PLACE_MIN`] by default): the fuzz
    /// target and tests lower it so small frames take that path too.
    pub fn set_in_place_min(&mut self, bytes: usize) {
        self.in_place_min = bytes.max(1);
    }

    /// Publishes this thread's flow count (the adapter's is the sum over
    /// the RX queues).
    fn report_flows(&self) {
        self.counters
            .set_flows(self.rx_queue, self.flows.len() as u64);
    }

    /// Turns SYN cookies on (RFC 4987): a new SYN placed on a processor
    /// that already holds `backlog` half-open connections is answered here
    /// with a cookie SYN|ACK (advertising the MSS `tcp` gives) and leaves
    /// no state anywhere; the ACK that carries a genuine cookie back opens
    /// the connection.
    pub fn set_syn_cookies(
        &mut self,
        cookies: Arc<SynCookies>,
        backlog: usize,
        tcp: &vnic_stack::TcpConfig,
    ) {
        self.cookies = Some(cookies);
        self.syn_backlog = backlog as u64;
        self.our_mss = (tcp.mss(false), tcp.mss(true));
    }

    /// The filter, shared with whoever steers it at run time (mode,
    /// processor liveness). Locked only to place a new connection.
    pub fn filter(&self) -> Arc<Mutex<Filter>> {
        self.filter.clone()
    }

    /// The flow table (read-only).
    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// Forgets `tuple`'s flow: a replay does when its trace shows the
    /// flow already gone (its processor's report came before the frame
    /// there, after it in the replay).
    pub fn forget_flow(&mut self, tuple: &vnic_stack::FourTuple) {
        self.flows.forget(tuple);
    }

    /// Process pairs ([`crate::pairs`]): a segment for a processor whose
    /// thread died goes to its backup, which took its connections over,
    /// instead of being answered with RST.
    pub fn set_pairs(&mut self, pairs: Arc<crate::Pairs>) {
        self.pairs = pairs;
    }

    /// Drops the flow entries of connections the processors closed, and
    /// switches those of connections they moved.
    pub fn reap_closed(&mut self) {
        let mut changed = false;
        while let Ok(r) = self.closed.try_recv() {
            match r {
                FlowReport::Closed(c) => changed |= self.flows.remove(&c.tuple, c.syn_stamp),
                FlowReport::NotHeld { tuple, processor } => {
                    if self.flows.remove_held(&tuple, processor) {
                        self.unsteer(&tuple);
                        changed = true;
                    }
                }
                FlowReport::Moved { flow, from, to } => {
                    if self.flows.switch(&flow.tuple, from, to) {
                        self.steer(&flow.tuple, to);
                    }
                    // What the old processor still gets for the flow it
                    // forwards until this reaches it. If its queue is full
                    // it stops forwarding after a while by itself.
                    if let Some(q) = self.queues.get(from) {
                        let _ = q.try_send(ToProcessor::FlowSwitched(flow.tuple));
                    }
                }
            }
        }
        if changed {
            self.report_flows();
        }
    }

    /// Handles one frame read from the TAP at `now`; its checksums are
    /// all verified.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Decision {
        self.handle_rx_frame(now, frame, false)
    }

    /// Handles the frame in the first `len` bytes of `buf`, read from the
    /// TAP at `now`, like [`RxQueue::handle_rx_frame`]; but a segment of
    /// a known connection with at least [`IN_PLACE_MIN`] bytes of text
    /// goes to its processor in `buf` itself, without a copy, and `buf` is
    /// replaced by a frame buffer from the pool ([`crate::pool::frames`]).
    pub fn handle_rx_buffer(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
        len: usize,
        checksum_trusted: bool,
    ) -> Decision {
        self.lend_base = Some(buf.as_ptr() as usize);
        let d = self.handle_rx_frame(now, &buf[..len.min(buf.len())], checksum_trusted);
        self.lend_base = None;
        let Some(h) = self.handover.take() else {
            return d;
        };
        let frame = std::mem::replace(buf, crate::pool::frame_buffer(MAX_FRAME_LEN));
        let mut inbound = h.inbound;
        inbound.segment.payload = Payload::in_buffer(frame, h.text);
        if self.send_inbound(h.processor, inbound) {
            d
        } else {
            self.counters.count_drop(DropKind::QueueFull);
            Decision::Dropped(DropKind::QueueFull)
        }
    }

    /// Handles one frame read from the TAP at `now`. With
    /// `checksum_trusted` (a TAP with offload said the kernel left the TCP
    /// checksum partial, or checked it) the TCP checksum is not verified;
    /// everything else is. Such a frame may hold a TCP segment larger than
    /// the MTU (TSO): it goes to the stack whole.
    pub fn handle_rx_frame(
        &mut self,
        now: Instant,
        frame: &[u8],
        checksum_trusted: bool,
    ) -> Decision {
        self.counters.frame_in(self.rx_queue);
        self.checksum_trusted = checksum_trusted;
        let d = self.classify(now, frame);
        self.checksum_trusted = false;
        match d {
            Decision::Dropped(k) => self.counters.count_drop(k),
            Decision::NotForUs => Counters::bump(&self.counters.not_for_us),
            _ => {}
        }
        d
    }

    fn classify(&mut self, now: Instant, frame: &[u8]) -> Decision {
        let Ok(eth) = Ethernet2HeaderSlice::from_slice(frame) else {
            return Decision::Dropped(DropKind::TruncatedEthernet);
        };
        if !self.cfg.accepts_mac(eth.destination()) {
            return Decision::NotForUs;
        }
        let src_mac = eth.source();
        let payload = &frame[eth.slice().len()..];
        match eth.ether_type() {
            EtherType::ARP => self.arp(payload),
            EtherType::IPV4 => self.ipv4(now, src_mac, payload),
            EtherType::IPV6 => self.ipv6(now, src_mac, payload),
            _ => Decision::Dropped(DropKind::UnknownEtherType),
        }
    }

    fn arp(&mut self, payload: &[u8]) -> Decision {
        // The active link's MAC (with several links it changes).
        self.cfg.mac = self.out.mac();
        match arp::answer(&self.cfg, payload) {
            Err(k) => Decision::Dropped(k),
            Ok(None) => Decision::Ignored,
            Ok(Some(r)) => {
                let eth = etherparse::Ethernet2Header {
                    source: self.cfg.mac,
                    destination: r.dst_mac,
                    ether_type: EtherType::ARP,
                };
                let mut f = eth.to_bytes().to_vec();
                f.extend_from_slice(&r.packet);
                self.out.send_or_hold(&f);
                Counters::bump(&self.counters.arp_replies);
                Decision::ArpReply
            }
        }
    }

    fn ipv4(&mut self, now: Instant, src_mac: [u8; 6], payload: &[u8]) -> Decision {
        let Ok(ip) = Ipv4Slice::from_slice(payload) else {
            return Decision::Dropped(DropKind::BadIpv4Header);
        };
        let h = ip.header();
        if h.to_header().calc_header_checksum() != h.header_checksum() {
            return Decision::Dropped(DropKind::BadIpv4Checksum);
        }
        let dst = h.destination_addr();
        if !self.cfg.ipv4.contains(&dst) {
            return Decision::NotForUs;
        }
        if ip.is_payload_fragmented() {
            return Decision::Dropped(DropKind::Fragment);
        }
        let packet = &payload[..usize::from(h.total_len()).min(payload.len())];
        let src = IpAddr::V4(h.source_addr());
        let pl = ip.payload();
        match pl.ip_number {
            IpNumber::TCP => self.tcp(now, src_mac, src, IpAddr::V4(dst), pl.payload),
            IpNumber::UDP => self.udp(now, src_mac, src, IpAddr::V4(dst), pl.payload, packet),
            IpNumber::ICMP => match icmp::echo_v4(pl.payload) {
                Err(k) => Decision::Dropped(k),
                Ok(None) => Decision::Ignored,
                Ok(Some(reply)) => {
                    self.out
                        .send_ip(src_mac, IpAddr::V4(dst), src, IpNumber::ICMP, TTL, |b| {
                            b.extend_from_slice(&reply)
                        });
                    Counters::bump(&self.counters.echo_replies);
                    Decision::EchoReply
                }
            },
            _ => Decision::Dropped(DropKind::UnknownProtocol),
        }
    }

    fn ipv6(&mut self, now: Instant, src_mac: [u8; 6], payload: &[u8]) -> Decision {
        let Ok(ip) = Ipv6Slice::from_slice(payload) else {
            return Decision::Dropped(DropKind::BadIpv6Header);
        };
        let h = ip.header();
        let (src, dst) = (h.source_addr(), h.destination_addr());
        let ours = self.cfg.ipv6.contains(&dst);
        if !ours && !dst.is_multicast() {
            return Decision::NotForUs;
        }
        if ip.is_payload_fragmented() {
            return Decision::Dropped(DropKind::Fragment);
        }
        let pl = ip.payload();
        let packet = &payload
            [..(etherparse::Ipv6Header::LEN + usize::from(h.payload_length())).min(payload.len())];
        match pl.ip_number {
            IpNumber::IPV6_ICMP => self.icmpv6(src_mac, src, dst, h.hop_limit(), ours, pl.payload),
            _ if !ours => Decision::NotForUs,
            IpNumber::TCP => self.tcp(now, src_mac, IpAddr::V6(src), IpAddr::V6(dst), pl.payload),
            IpNumber::UDP => self.udp(
                now,
                src_mac,
                IpAddr::V6(src),
                IpAddr::V6(dst),
                pl.payload,
                packet,
            ),
            _ => Decision::Dropped(DropKind::UnknownProtocol),
        }
    }

    fn icmpv6(
        &mut self,
        src_mac: [u8; 6],
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        ours: bool,
        msg: &[u8],
    ) -> Decision {
        if msg.len() < 8 || !checksum::icmpv6_ok(src, dst, msg) {
            return Decision::Dropped(DropKind::BadIcmp);
        }
        // Advertise the active link's MAC (with several links it changes).
        self.cfg.mac = self.out.mac();
        match msg[0] {
            135 => match ndp::answer(&self.cfg, src, src_mac, hop_limit, msg) {
                Err(k) => Decision::Dropped(k),
                Ok(None) => Decision::Ignored,
                Ok(Some(a)) => {
                    self.out.send_ip(
                        a.dst_mac,
                        IpAddr::V6(a.src),
                        IpAddr::V6(a.dst),
                        IpNumber::IPV6_ICMP,
                        255,
                        |b| b.extend_from_slice(&a.message),
                    );
                    Counters::bump(&self.counters.ndp_adverts);
                    Decision::NdpAdvert
                }
            },
            128 if ours => match icmp::echo_v6(src, dst, msg) {
                Err(k) => Decision::Dropped(k),
                Ok(None) => Decision::Ignored,
                Ok(Some(reply)) => {
                    self.out.send_ip(
                        src_mac,
                        IpAddr::V6(dst),
                        IpAddr::V6(src),
                        IpNumber::IPV6_ICMP,
                        TTL,
                        |b| b.extend_from_slice(&reply),
                    );
                    Counters::bump(&self.counters.echo_replies);
                    Decision::EchoReply
                }
            },
            _ => Decision::Ignored,
        }
    }

    fn udp(
        &mut self,
        now: Instant,
        src_mac: [u8; 6],
        src: IpAddr,
        dst: IpAddr,
        udp: &[u8],
        packet: &[u8],
    ) -> Decision {
        if udp.len() < 8 {
            return Decision::Dropped(DropKind::BadUdp);
        }
        let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        if len < 8 || len > udp.len() {
            return Decision::Dropped(DropKind::BadUdp);
        }
        let src_port = u16::from_be_bytes([udp[0], udp[1]]);
        let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
        let flow = FourTuple {
            local: SocketAddr::new(dst, dst_port),
            remote: SocketAddr::new(src, src_port),
        };
        let picked = self.filter.lock().pick_flow(Protocol::Udp, &flow);
        if let Some(pick) = picked {
            let Some(q) = self.queues.get(pick.processor) else {
                return Decision::Dropped(DropKind::QueueFull);
            };
            let msg = ToProcessor::Datagram(Datagram {
                remote: SocketAddr::new(src, src_port),
                local: SocketAddr::new(dst, dst_port),
                payload: udp[8..len].to_vec(),
                peer_mac: src_mac,
            });
            let weight = msg.weight();
            return match q.try_send_weighed(msg, weight) {
                Ok(()) => Decision::Datagram {
                    processor: pick.processor,
                    port: dst_port,
                    slot: pick.slot,
                },
                Err(e) => {
                    self.count_refused(pick.processor, &e);
                    Decision::Dropped(DropKind::QueueFull)
                }
            };
        }
        if !self.unreachable_limit.allow(now) {
            Counters::bump(&self.counters.unreachable_limited);
            return Decision::RateLimited;
        }
        let sent = match (src, dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => {
                let m = icmp::port_unreachable_v4(packet);
                self.out
                    .send_ip(src_mac, dst, src, IpNumber::ICMP, TTL, |b| {
                        b.extend_from_slice(&m)
                    });
                true
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => match icmp::port_unreachable_v6(d, s, packet) {
                Some(m) => {
                    self.out
                        .send_ip(src_mac, dst, src, IpNumber::IPV6_ICMP, TTL, |b| {
                            b.extend_from_slice(&m)
                        });
                    true
                }
                None => false,
            },
            _ => false,
        };
        if sent {
            Counters::bump(&self.counters.port_unreachable);
        }
        Decision::PortUnreachable
    }
}

impl RxQueue {
    /// Handles the frame in the first `len` bytes of `buf` as read from
    /// the TAP now: traced with its decision when a trace runs (a large
    /// frame's buffer may go to the trace writer, `buf` is then a new
    /// one), else possibly handed over in place ([`RxQueue::handle_rx_buffer`]).
    fn take_frame(&mut self, buf: &mut Vec<u8>, len: usize, trusted: bool, tracer: &Tracer) {
        if tracer.active() {
            // Answers wait until the question is in the trace.
            self.out.defer();
            let d = self.handle_rx_frame(Instant::now(), &buf[..len], trusted);
            let filter = &self.filter;
            let link = self.rx_link;
            tracer.record_owned(Direction::In, buf, len, |_| match link {
                Some(l) => Note::RxOn(d, d.rule(&filter.lock()), l),
                None => Note::Rx(d, d.rule(&filter.lock())),
            });
            buf.resize(MAX_FRAME_LEN, 0);
            self.out.release();
        } else {
            self.handle_rx_buffer(Instant::now(), buf, len, trusted);
        }
    }

    /// Handles the frames the processors handed back (see
    /// [`crate::direct`]) as if this thread had read them.
    pub fn take_handed_back(&mut self, tracer: &Tracer) {
        let Some(rx) = self.handed_back.clone() else {
            return;
        };
        while let Ok(mut h) = rx.try_recv() {
            let len = h.len.min(h.frame.len());
            self.take_frame(&mut h.frame, len, h.checksum_trusted, tracer);
            crate::pool::recycle(h.frame);
        }
    }
}

/// How long reads from the TAP may keep failing before the RX thread
/// gives up (errors that say the device is gone end it at once).
pub const RX_FAILURE_LIMIT: Duration = Duration::from_secs(2);

/// True for read errors that mean the TAP is gone for good: deleted or
/// detached (EBADFD, what a TAP fd reads after `ip link del`), no such
/// device, or a closed descriptor.
fn device_gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADFD | libc::ENODEV | libc::ENXIO | libc::EBADF)
    )
}
