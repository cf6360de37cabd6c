//! The adapter's counters: what it answered, what it dropped and why.
//! Counters, not logs, on the hot path: a malformed frame bumps one of
//! these and is otherwise forgotten.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a frame was dropped. Each kind has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropKind {
    /// Shorter than an Ethernet header.
    TruncatedEthernet,
    /// An EtherType we do not speak (not IPv4, IPv6 or ARP).
    UnknownEtherType,
    /// ARP that is not Ethernet/IPv4 or is cut short.
    BadArp,
    /// IPv4 header impossible: version, IHL, total length beyond the frame.
    BadIpv4Header,
    /// IPv4 header checksum wrong.
    BadIpv4Checksum,
    /// IPv6 header or extension chain impossible or cut short.
    BadIpv6Header,
    /// A fragment (we do not reassemble).
    Fragment,
    /// TCP header impossible: short, bad data offset, bad flags or options.
    BadTcpHeader,
    /// TCP checksum wrong.
    BadTcpChecksum,
    /// ICMP message cut short or with a bad checksum.
    BadIcmp,
    /// UDP header cut short or inconsistent.
    BadUdp,
    /// An IP protocol we do not serve (not TCP, UDP, ICMP).
    UnknownProtocol,
    /// A processor's queue was full.
    QueueFull,
}

impl DropKind {
    /// Every kind, in display order.
    pub const ALL: [DropKind; 13] = [
        DropKind::TruncatedEthernet,
        DropKind::UnknownEtherType,
        DropKind::BadArp,
        DropKind::BadIpv4Header,
        DropKind::BadIpv4Checksum,
        DropKind::BadIpv6Header,
        DropKind::Fragment,
        DropKind::BadTcpHeader,
        DropKind::BadTcpChecksum,
        DropKind::BadIcmp,
        DropKind::BadUdp,
        DropKind::UnknownProtocol,
        DropKind::QueueFull,
    ];

    /// Short name used in reports and traces.
    pub fn name(self) -> &'static str {
        match self {
            DropKind::TruncatedEthernet => "truncated-ethernet",
            DropKind::UnknownEtherType => "unknown-ethertype",
            DropKind::BadArp => "bad-arp",
            DropKind::BadIpv4Header => "bad-ipv4-header",
            DropKind::BadIpv4Checksum => "bad-ipv4-checksum",
            DropKind::BadIpv6Header => "bad-ipv6-header",
            DropKind::Fragment => "ip-fragment",
            DropKind::BadTcpHeader => "bad-tcp-header",
            DropKind::BadTcpChecksum => "bad-tcp-checksum",
            DropKind::BadIcmp => "bad-icmp",
            DropKind::BadUdp => "bad-udp",
            DropKind::UnknownProtocol => "unknown-protocol",
            DropKind::QueueFull => "queue-full",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// All adapter counters. Shared (in an `Arc`) between the RX thread, the
/// processors (frames out) and reporters. What every frame bumps is kept
/// per thread, each on a cache line of its own, and summed when read:
/// frames in, TCP segments dispatched and SYN cookies sent per RX queue,
/// frames out and write errors per sender (processor or RX queue). A
/// count that a processor and an RX thread both bumped per frame would
/// pass its cache line between their cores at every frame.
#[derive(Debug)]
pub struct Counters {
    /// Frames that were for another MAC or another IP (ignored, not errors).
    pub not_for_us: AtomicU64,
    /// ARP replies sent.
    pub arp_replies: AtomicU64,
    /// Neighbour advertisements sent.
    pub ndp_adverts: AtomicU64,
    /// ICMP and ICMPv6 echo replies sent.
    pub echo_replies: AtomicU64,
    /// ICMP port-unreachable messages sent for UDP.
    pub port_unreachable: AtomicU64,
    /// Port-unreachable messages suppressed by the rate limit.
    pub unreachable_limited: AtomicU64,
    /// RSTs the adapter sent (closed port, unknown connection).
    pub rst_sent: AtomicU64,
    /// ACKs that carried a genuine SYN cookie and opened a connection.
    pub syn_cookies_accepted: AtomicU64,
    /// With processor queues: frames a processor read from its own queue
    /// and handed back to an RX thread to decide on
    /// ([`crate::direct::DirectQueue`]).
    pub handed_back: AtomicU64,
    /// Frames a processor could not hand back (the RX thread's channel
    /// was full): dropped.
    pub handed_back_drops: AtomicU64,
    drops: [AtomicU64; DropKind::ALL.len()],
    /// Segments dropped because processor K's queue was full (index K).
    pub queue_full: Vec<AtomicU64>,
    /// Segments and datagrams dropped because processor K's queue held its
    /// bound in bytes (index K; see [`crate::QueueBytes`]).
    pub queue_bytes_full: Vec<AtomicU64>,
    /// Half-open (SYN-RECEIVED) connections processor K holds now (a gauge
    /// the processor keeps; the RX thread reads it to decide on SYN cookies).
    pub half_open: Vec<AtomicU64>,
    /// New SYNs on their way to processor K (dispatched, not yet handled):
    /// with [`Counters::half_open`] the RX threads bound the half-open
    /// queue exactly, however many of them place SYNs at once.
    pub syn_in_flight: Vec<AtomicU64>,
    /// Connections placed on processor K and not yet gone: raised by the
    /// RX thread as it places a SYN (or a cookie's ACK), lowered by the
    /// processor when that SYN opens nothing or the connection it opened
    /// is forgotten, moved with a connection that moves. One counter, so
    /// least-connections reads a processor's load in one load, never
    /// half-way through a SYN being taken in (reading its connections and
    /// its SYNs in flight apart counted such a SYN twice or not at all,
    /// and a burst landed two apart).
    pub placed: Vec<AtomicU64>,
    /// RX queue Q's own counts (index Q), each on a cache line of its
    /// own: every RX thread writes only its own, per frame, and readers
    /// sum them ([`Counters::frames_in`], [`Counters::flows`]).
    rx_queues: Vec<QueueCounters>,
    /// Sender S's own counts: processors first (slot K for processor K),
    /// then the RX queues ([`Counters::rx_sender`]).
    senders: Vec<SenderCounters>,
}

/// What one sender of frames counts, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct SenderCounters {
    /// Frames written to the TAP.
    frames: AtomicU64,
    /// Frames the TAP refused.
    errors: AtomicU64,
}

/// What one RX queue's thread counts, alone on its cache line so the
/// threads of different queues never contend for it.
#[derive(Debug, Default)]
#[repr(align(64))]
struct QueueCounters {
    /// Frames read from the queue.
    frames: AtomicU64,
    /// Connections in the queue thread's flow table (a gauge).
    flows: AtomicU64,
    /// TCP segments handed to processors.
    dispatched: AtomicU64,
    /// SYNs answered with a SYN cookie (half-open queue full).
    cookies_sent: AtomicU64,
}

impl Counters {
    /// Counters for an adapter with `processors` processors.
    pub fn new(processors: usize) -> Counters {
        Counters::with_rx_queues(processors, 1)
    }

    /// Counters for an adapter with `processors` processors that reads
    /// `rx_queues` queues of its TAP.
    pub fn with_rx_queues(processors: usize, rx_queues: usize) -> Counters {
        let rx_queues = rx_queues.max(1);
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        Counters {
            not_for_us: AtomicU64::new(0),
            arp_replies: AtomicU64::new(0),
            ndp_adverts: AtomicU64::new(0),
            echo_replies: AtomicU64::new(0),
            port_unreachable: AtomicU64::new(0),
            unreachable_limited: AtomicU64::new(0),
            rst_sent: AtomicU64::new(0),
            syn_cookies_accepted: AtomicU64::new(0),
            handed_back: AtomicU64::new(0),
            handed_back_drops: AtomicU64::new(0),
            drops: Default::default(),
            queue_full: zeros(processors),
            queue_bytes_full: zeros(processors),
            half_open: zeros(processors),
            syn_in_flight: zeros(processors),
            placed: zeros(processors),
            rx_queues: (0..rx_queues).map(|_| QueueCounters::default()).collect(),
            // Always at least one slot: a writer's unknown slot counts there.
            senders: (0..processors + rx_queues)
                .map(|_| SenderCounters::default())
                .collect(),
        }
    }

    /// The sender slot of RX queue `queue`'s thread (for
    /// [`crate::FrameWriter::set_sender`]); processor K's is K.
    pub fn rx_sender(&self, queue: usize) -> usize {
        self.queue_full.len() + queue
    }

    /// Adds one to `field` of sender `slot` (an unknown slot counts in
    /// the first).
    fn bump_sender(&self, slot: usize, field: fn(&SenderCounters) -> &AtomicU64) {
        if let Some(c) = self.senders.get(slot).or_else(|| self.senders.first()) {
            field(c).fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds one to `field` of RX queue `queue` (an unknown queue is not
    /// counted).
    fn bump_queue(&self, queue: usize, field: fn(&QueueCounters) -> &AtomicU64) {
        if let Some(c) = self.rx_queues.get(queue) {
            field(c).fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `field` summed over the senders.
    fn sender_sum(&self, field: fn(&SenderCounters) -> &AtomicU64) -> u64 {
        self.senders.iter().map(|c| Self::get(field(c))).sum()
    }

    /// `field` summed over the RX queues.
    fn queue_sum(&self, field: fn(&QueueCounters) -> &AtomicU64) -> u64 {
        self.rx_queues.iter().map(|c| Self::get(field(c))).sum()
    }

    /// Counts one frame written to the TAP by sender `slot`.
    pub fn frame_out(&self, slot: usize) {
        self.bump_sender(slot, |c| &c.frames);
    }

    /// Counts one frame the TAP refused from sender `slot`.
    pub fn tx_error(&self, slot: usize) {
        self.bump_sender(slot, |c| &c.errors);
    }

    /// Frames written to the TAP, all senders.
    pub fn frames_out(&self) -> u64 {
        self.sender_sum(|c| &c.frames)
    }

    /// Frames that could not be written to the TAP, all senders.
    pub fn tx_errors(&self) -> u64 {
        self.sender_sum(|c| &c.errors)
    }

    /// Counts one TCP segment RX queue `queue` handed to a processor.
    pub fn dispatched(&self, queue: usize) {
        self.bump_queue(queue, |c| &c.dispatched);
    }

    /// TCP segments handed to processors, all queues.
    pub fn tcp_dispatched(&self) -> u64 {
        self.queue_sum(|c| &c.dispatched)
    }

    /// Counts one SYN that RX queue `queue` answered with a cookie.
    pub fn syn_cookie_sent(&self, queue: usize) {
        self.bump_queue(queue, |c| &c.cookies_sent);
    }

    /// SYNs answered with a SYN cookie, all queues.
    pub fn syn_cookies_sent(&self) -> u64 {
        self.queue_sum(|c| &c.cookies_sent)
    }

    /// Counts one frame read from RX queue `queue`.
    pub fn frame_in(&self, queue: usize) {
        self.bump_queue(queue, |c| &c.frames);
    }

    /// Sets the number of connections in RX queue `queue`'s flow table.
    pub fn set_flows(&self, queue: usize, flows: u64) {
        if let Some(c) = self.rx_queues.get(queue) {
            c.flows.store(flows, Ordering::Relaxed);
        }
    }

    /// Frames read from the TAP, all queues.
    pub fn frames_in(&self) -> u64 {
        self.queue_sum(|c| &c.frames)
    }

    /// Connections in the flow tables, all queues.
    pub fn flows(&self) -> u64 {
        self.queue_sum(|c| &c.flows)
    }

    /// Frames read from each RX queue (index = queue).
    pub fn rx_queue_frames(&self) -> Vec<u64> {
        self.rx_queues
            .iter()
            .map(|c| Self::get(&c.frames))
            .collect()
    }

    /// Frames sender `slot` wrote to the TAP (processor K's slot is K):
    /// a processor's frames out.
    pub fn frames_out_of(&self, slot: usize) -> u64 {
        self.senders.get(slot).map_or(0, |c| Self::get(&c.frames))
    }

    /// Zeroes every counter (`vnic ctl stats reset`); the gauges (flows,
    /// half-open connections, SYNs in flight) stay, since the RX threads
    /// and the processors decide by them. A frame counted while this runs
    /// may be lost: the reset is not atomic over all counters, only each.
    pub fn reset(&self) {
        let zero = |c: &AtomicU64| c.store(0, Ordering::Relaxed);
        for c in [
            &self.not_for_us,
            &self.arp_replies,
            &self.ndp_adverts,
            &self.echo_replies,
            &self.port_unreachable,
            &self.unreachable_limited,
            &self.rst_sent,
            &self.syn_cookies_accepted,
            &self.handed_back,
            &self.handed_back_drops,
        ] {
            zero(c);
        }
        self.drops
            .iter()
            .chain(&self.queue_full)
            .chain(&self.queue_bytes_full)
            .for_each(zero);
        for q in &self.rx_queues {
            zero(&q.frames);
            zero(&q.dispatched);
            zero(&q.cookies_sent);
        }
        for s in &self.senders {
            zero(&s.frames);
            zero(&s.errors);
        }
    }

    /// Counts one dropped frame of `kind`.
    pub fn count_drop(&self, kind: DropKind) {
        self.drops[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// How many frames of `kind` were dropped.
    pub fn dropped(&self, kind: DropKind) -> u64 {
        self.drops[kind.index()].load(Ordering::Relaxed)
    }

    /// Every drop counter with its name.
    pub fn drops(&self) -> Vec<(&'static str, u64)> {
        DropKind::ALL
            .iter()
            .map(|k| (k.name(), self.dropped(*k)))
            .collect()
    }

    /// Adds one to `c` (shorthand for the hot path).
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads `c`.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_kinds_have_distinct_slots_and_names() {
        let c = Counters::new(1);
        for (i, k) in DropKind::ALL.iter().enumerate() {
            for _ in 0..=i {
                c.count_drop(*k);
            }
        }
        for (i, k) in DropKind::ALL.iter().enumerate() {
            assert_eq!(c.dropped(*k), i as u64 + 1, "{}", k.name());
        }
        let mut names: Vec<_> = DropKind::ALL.iter().map(|k| k.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropKind::ALL.len());
    }

    #[test]
    fn reset_zeroes_the_counters_and_keeps_the_gauges() {
        let c = Counters::with_rx_queues(2, 2);
        c.frame_in(1);
        c.frame_out(1);
        c.tx_error(0);
        c.dispatched(0);
        c.syn_cookie_sent(1);
        c.count_drop(DropKind::BadTcpChecksum);
        Counters::bump(&c.rst_sent);
        Counters::bump(&c.queue_full[1]);
        c.set_flows(0, 7);
        Counters::bump(&c.half_open[0]);
        Counters::bump(&c.syn_in_flight[1]);
        assert_eq!(c.frames_out_of(1), 1);
        c.reset();
        assert_eq!(
            (
                c.frames_in(),
                c.frames_out(),
                c.tx_errors(),
                c.tcp_dispatched()
            ),
            (0, 0, 0, 0)
        );
        assert_eq!(c.syn_cookies_sent(), 0);
        assert!(c.drops().iter().all(|(_, v)| *v == 0));
        assert_eq!(Counters::get(&c.rst_sent), 0);
        assert_eq!(Counters::get(&c.queue_full[1]), 0);
        assert_eq!(c.flows(), 7, "a gauge");
        assert_eq!(Counters::get(&c.half_open[0]), 1, "a gauge");
        assert_eq!(Counters::get(&c.syn_in_flight[1]), 1, "a gauge");
    }

    #[test]
    fn per_thread_counts_add_up_and_stay_apart() {
        let c = Counters::with_rx_queues(2, 3);
        assert_eq!(c.rx_sender(0), 2);
        for slot in 0..5 {
            for _ in 0..=slot {
                c.frame_out(slot);
            }
        }
        // An unknown slot still counts (in the first).
        c.frame_out(99);
        c.tx_error(4);
        assert_eq!(c.frames_out(), 1 + 2 + 3 + 4 + 5 + 1);
        assert_eq!(c.tx_errors(), 1);
        for q in 0..3 {
            c.dispatched(q);
            c.frame_in(q);
        }
        c.syn_cookie_sent(2);
        c.dispatched(7);
        assert_eq!(c.tcp_dispatched(), 3);
        assert_eq!(c.syn_cookies_sent(), 1);
        assert_eq!(c.rx_queue_frames(), vec![1, 1, 1]);
        // Each thread's counts sit on a cache line of their own.
        assert_eq!(std::mem::align_of::<SenderCounters>(), 64);
        assert_eq!(std::mem::align_of::<QueueCounters>(), 64);
    }
}
