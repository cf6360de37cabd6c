//! One emulated processor: a thread with its own queue and its own TCP
//! connections (the monolithic listener model).
//!
//! The thread drains its queue, hands each segment to the connection it
//! belongs to (making a new one for a SYN on a served port), lets the app
//! run, and writes what the connection wants to send. It sleeps on its
//! queue until the earliest timer of its connections: timers sit in one
//! heap, so nothing scans every connection.
//!
//! The thread's one place to sleep is an epoll ([`Inbox`]): its frame
//! queue rings it through an eventfd ([`vnic_adapter::Doorbell`]), and the
//! apps that drive descriptors of their own (a proxy's back-end socket, an
//! exec child's pipes) watch them in the same epoll through [`crate::app::Io`],
//! keyed by connection number. So one thread drives its TCP connections
//! and everything behind them.

mod hybrid;
mod lifecycle;
mod memory;
mod migrate;
mod pairs;
mod receive;
mod replay;
mod restart;
mod service;
mod sockets;
mod time_wait;

pub use hybrid::HandOff;
pub use memory::DEFAULT_MEMORY_BUDGET;
pub use migrate::{Adoption, DrainReport, Migration, MoveResult};
pub use pairs::{Checkpointed, PairLink, PairMsg, CHECKPOINT_QUEUE};
pub use restart::{Lifecycle, RestartPolicy, DEFAULT_RESTART_DELAY, MAX_RESTARTS, RESTART_WINDOW};
pub use sockets::{
    ConnRow, SocketChunk, SocketFilter, SocketQueries, SocketQuery, QUERY_DEPTH, ROWS_PER_STEP,
};

use crate::app::udp::{self, UdpAppKind};
use crate::app::{App, AppContext, AppKind, CloseReason, Io, Service, Socket};
use crate::distributor::{BackendCtlRequest, Dispatcher, Forwarder, FromBackend, Reply};
use crate::stats::{ProcessorStats, Registry};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::{Events, Poll, Token, Waker};
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vnic_adapter::clock::Clock;
use vnic_adapter::direct::DirectQueue;
use vnic_adapter::filter::Protocol;
use vnic_adapter::ratelimit::{TokenBucket, INVALID_REPLY_RATE};
use vnic_adapter::trace::Tracer;
use vnic_adapter::{
    BellSender, Datagram, Doorbell, FlowClosed, FlowReport, FrameWriter, Inbound, ProcessorQueue,
    QueueBytes, ToProcessor,
};
use vnic_stack::{
    Connection, Control, Disposition, Event, FourTuple, IsnGenerator, ReplyLimiter, State,
    TcpConfig, TupleMap,
};

/// Everything a processor thread needs, handed over at spawn.
pub struct ProcessorSetup {
    /// This processor's number.
    pub id: usize,
    /// Its queue and event loop.
    pub queue: Inbox,
    /// Where it reports connections it no longer holds: one channel per
    /// RX queue, each to the RX thread whose flow table holds them (and
    /// where it moved them).
    pub closed: Vec<Sender<FlowReport>>,
    /// Every processor's queue (its own too), by number: where its
    /// connections go when they move ([`Migration`]).
    pub peers: Vec<ProcessorQueue>,
    /// The process pairs, and every processor's checkpoint queue
    /// ([`Inbox::checkpoints`]) by number.
    pub pairs: Arc<vnic_adapter::Pairs>,
    /// See `pairs`.
    pub checkpoint_queues: Vec<BellSender<PairMsg>>,
    /// In the hybrid model, processor 0's hand-off policy (see
    /// [`hybrid`](self::hybrid)); None everywhere else.
    pub hand_off: Option<HandOff>,
    /// Its way to the TAP.
    pub out: FrameWriter,
    /// Which service makes the app of each TCP port's connections.
    pub serve: HashMap<u16, Arc<dyn Service>>,
    /// Which app serves each UDP port.
    pub udp_serve: HashMap<u16, UdpAppKind>,
    /// TCP settings.
    pub tcp_config: TcpConfig,
    /// TCP settings of the ports whose listener has its own (a config
    /// file's `[[listener]] congestion`); other ports use `tcp_config`.
    pub tcp_ports: HashMap<u16, TcpConfig>,
    /// Shared ISN generator (RFC 6528).
    pub isn: Arc<IsnGenerator>,
    /// Counters.
    pub registry: Arc<Registry>,
    /// Where the apps run: here, or at the back-ends (distributor model).
    pub apps: AppSource,
    /// Connection events for `--trace=conn`.
    pub tracer: Arc<Tracer>,
    /// Most connections this processor holds; a SYN beyond it gets RST.
    pub max_connections: usize,
    /// The adapter's counters: the processor keeps its half-open gauge
    /// there, which the RX thread reads to decide on SYN cookies.
    pub adapter_counters: Arc<vnic_adapter::Counters>,
    /// Bytes of memory this processor's connections may hold (see
    /// [`memory`](self) for the policy when they reach it).
    pub memory_budget: usize,
    /// With `--processor-queues`: its own TAP queue, where it reads the
    /// frames of its connections itself (see [`vnic_adapter::direct`]).
    pub direct: Option<DirectQueue>,
    /// A bench and test aid (`--slow-processor K=DURATION`): every turn
    /// of its loop that had work sleeps this long, so it stands for a
    /// processor that is slower than the others (busy elsewhere, a slow
    /// app) and a policy's blindness to it can be measured.
    pub slow: Option<Duration>,
}

/// Where a processor's apps run.
pub enum AppSource {
    /// In the processor itself (monolithic model).
    Local,
    /// The built-in apps at back-end servers: this processor is the
    /// distributor (other services still run here).
    Distributor(DistributorLink),
}

/// The token of the doorbell in a processor's epoll (connection numbers
/// start at 1 and never reach it).
const WAKE: Token = Token(usize::MAX);
/// The token of the processor's own TAP queue in its epoll.
const OWN_QUEUE: Token = Token(usize::MAX - 1);

/// A processor's receiving end: its frame queue and the epoll it sleeps
/// in, which the queue's senders ring ([`vnic_adapter::Doorbell`]) and the
/// apps' descriptors wake ([`crate::app::Io`]).
pub struct Inbox {
    rx: Receiver<ToProcessor>,
    bytes: Arc<QueueBytes>,
    poll: Poll,
    bell: Arc<Doorbell>,
    registry: Arc<mio::Registry>,
    /// `vnic status --sockets` requests (see [`sockets`](self::sockets)).
    socket_queries: (Sender<SocketQuery>, Receiver<SocketQuery>),
    /// Checkpoints from the processors it backs up (see `pairs.rs`).
    checkpoints: (Sender<PairMsg>, Receiver<PairMsg>),
}

impl Inbox {
    /// A queue of at most `depth` messages holding at most `bytes` bytes
    /// of buffers ([`ToProcessor::weight`]), and the epoll behind it: the
    /// sender for the RX threads and the control server, and the inbox
    /// for the processor.
    pub fn new(depth: usize, bytes: usize) -> std::io::Result<(ProcessorQueue, Inbox)> {
        let poll = Poll::new()?;
        let bell = Arc::new(Doorbell::new(Waker::new(poll.registry(), WAKE)?));
        let registry = Arc::new(poll.registry().try_clone()?);
        let (tx, rx) = crossbeam_channel::bounded(depth);
        let bytes = Arc::new(QueueBytes::new(bytes));
        Ok((
            BellSender::bounded(tx, bell.clone(), bytes.clone()),
            Inbox {
                rx,
                bytes,
                poll,
                bell,
                registry,
                socket_queries: crossbeam_channel::bounded(QUERY_DEPTH),
                checkpoints: crossbeam_channel::bounded(CHECKPOINT_QUEUE),
            },
        ))
    }

    /// Where the control server sends this processor's `vnic status
    /// --sockets` requests: beside the frame queue, rung by the same
    /// doorbell, so a full frame queue never refuses one.
    pub fn socket_queries(&self) -> SocketQueries {
        BellSender::new(self.socket_queries.0.clone(), self.bell.clone())
    }

    /// Where the processors it backs up send their checkpoints, rung by
    /// the same doorbell (see `pairs.rs`).
    pub fn checkpoints(&self) -> BellSender<PairMsg> {
        BellSender::new(self.checkpoints.0.clone(), self.bell.clone())
    }

    /// The doorbell, for other senders to this processor (the distributor's
    /// back-ends answer through it).
    pub fn bell(&self) -> Arc<Doorbell> {
        self.bell.clone()
    }
}

/// What the distributor thread needs besides its queue.
pub struct DistributorLink {
    /// The dispatcher (this thread is its only user).
    pub dispatcher: Arc<Mutex<Dispatcher>>,
    /// Replies and failure reports from the back-ends.
    pub replies: Receiver<FromBackend>,
    /// `vnic ctl backend K up|down`, with a channel for the answer.
    pub ctl: Receiver<BackendCtlRequest>,
}

/// A sender that wakes the distributor processor (made with its
/// [`Inbox::bell`]).
pub type ToDistributor<T> = BellSender<T>;

struct Conn {
    tcp: Connection,
    app: Box<dyn App>,
    /// Bytes of memory it held when last counted (see [`memory`](self)).
    mem: usize,
    peer_mac: [u8; 6],
    syn_stamp: u64,
    /// The deadline this connection has in the timer heap, if any.
    armed: Option<Instant>,
    /// Connection number (routes back-end replies in the distributor model).
    id: u64,
    /// Still in SYN-RECEIVED: it counts against its port's half-open queue.
    half_open: bool,
    /// Payload bytes received since it was last serviced (see
    /// [`SERVICE_BYTES`]).
    unserviced: usize,
    /// Listed in the processor's `pending` (once per batch, however its
    /// segments interleave with other connections').
    queued: bool,
    /// Listed in the processor's `backlog`: its last pass stopped at
    /// [`MAX_SEGMENTS_PER_PASS`] with more to send.
    backlogged: bool,
    /// Its backup and what the backup holds (process pairs).
    pair: pairs::PairState,
    /// The hybrid model's distributor holds its app for the processor it
    /// hands it off to: not polled here.
    hold_app: bool,
    /// Counted in the adapter's `placed` gauge for this processor (what
    /// least-connections reads).
    placed: bool,
}

impl Conn {
    /// A connection just taken in: not half-open, no timer armed, its
    /// memory not counted yet, its app polled here.
    fn new(tcp: Connection, app: Box<dyn App>, peer_mac: [u8; 6], syn_stamp: u64, id: u64) -> Conn {
        Conn {
            tcp,
            app,
            mem: 0,
            peer_mac,
            syn_stamp,
            armed: None,
            id,
            half_open: false,
            unserviced: 0,
            queued: false,
            backlogged: false,
            pair: pairs::PairState::default(),
            hold_app: false,
            placed: false,
        }
    }
}

/// The processor's budget for replies to invalid segments (one token
/// bucket for all its connections), counting what it refused.
struct InvalidReplies {
    bucket: TokenBucket,
    refused: u64,
}

impl ReplyLimiter for InvalidReplies {
    fn allow(&mut self, now: Instant) -> bool {
        let ok = self.bucket.allow(now);
        self.refused += u64::from(!ok);
        ok
    }
}

/// One deadline in the timer heap, ordered by time alone.
#[derive(Clone, Copy, Debug)]
struct TimerEntry {
    at: Instant,
    tuple: FourTuple,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

/// The processor's state, owned by its thread.
pub struct Processor {
    id: usize,
    queue: Receiver<ToProcessor>,
    /// The bytes waiting in `queue`: each message taken gives its weight back.
    queue_bytes: Arc<QueueBytes>,
    poll: Option<Poll>,
    bell: Arc<Doorbell>,
    io: Arc<mio::Registry>,
    closed: Vec<Sender<FlowReport>>,
    peers: Vec<ProcessorQueue>,
    /// Connections moved away whose segments it still forwards: new
    /// processor, and since when.
    moved: TupleMap<(usize, Instant)>,
    /// A drain (`vnic ctl processor K drain`) under way.
    evacuation: Option<migrate::Evacuation>,
    /// Its process pairs.
    pair: PairLink,
    /// The hybrid model's distributor: where its connections go.
    hand_off: Option<HandOff>,
    out: FrameWriter,
    serve: HashMap<u16, Arc<dyn Service>>,
    /// Every service this processor has served, by name, so that a
    /// listener added at run time may name one (besides the built-ins).
    known: HashMap<String, Arc<dyn Service>>,
    udp_serve: HashMap<u16, UdpAppKind>,
    tcp_config: TcpConfig,
    tcp_ports: HashMap<u16, TcpConfig>,
    isn: Arc<IsnGenerator>,
    registry: Arc<Registry>,
    conns: TupleMap<Conn>,
    by_id: HashMap<u64, FourTuple>,
    timers: BinaryHeap<Reverse<TimerEntry>>,
    apps: AppSource,
    tracer: Arc<Tracer>,
    max_connections: usize,
    adapter_counters: Arc<vnic_adapter::Counters>,
    /// The buffer the next outgoing segment's payload is built in: the
    /// last one sent, handed back (see `Connection::poll_transmit_reusing`).
    spare: Vec<u8>,
    /// Connections that received segments and wait to be serviced once
    /// for the whole batch (see [`Processor::receive_more`]).
    pending: Vec<FourTuple>,
    /// vnic is stopping: nothing new is accepted, every connection was
    /// told to close (see [`Processor::drain`]).
    draining: bool,
    /// Connections whose last pass stopped at [`MAX_SEGMENTS_PER_PASS`]:
    /// serviced again on the next turn of the loop.
    backlog: Vec<FourTuple>,
    /// Budget for replies to invalid segments.
    invalid_replies: InvalidReplies,
    /// What the connections may hold and do hold (see [`memory`](self)).
    memory: memory::Budget,
    /// `vnic status --sockets` requests, and the listings under way.
    socket_queries: Receiver<SocketQuery>,
    listings: sockets::Listings,
    /// Its own TAP queue, if it has one, and the segments read from it
    /// and not yet handed to their connections.
    direct: Option<DirectQueue>,
    /// See [`ProcessorSetup::slow`].
    slow: Option<Duration>,
    direct_batch: Vec<Inbound>,
    /// Its connections in TIME-WAIT, as records (see time_wait.rs).
    time_wait: time_wait::TimeWaitTable,
    /// Where `now` comes from: the real clock, or a replay's virtual one
    /// ([`Processor::set_clock`]).
    clock: Clock,
    /// Segments taken from the queue so far (a traced frame's `in=N`).
    taken: u64,
    /// The clock reading of the batch being taken, if one is.
    batch_now: Option<Instant>,
    /// Batches of segments taken so far (a traced frame's `b=N`).
    batches: u64,
    /// Failed: why it stops lying dead, when that came while it was busy
    /// failing (see restart.rs).
    wake: Option<restart::Wake>,
}

/// Stale timer entries allowed beyond twice the connections before the
/// heap is rebuilt ([`Processor::compact_timers`]).
const TIMER_SLACK: usize = 1024;

impl Processor {
    /// Timer entries the heap holds now (live and stale): what
    /// [`Processor::compact_timers`] bounds. Only the test that pins that
    /// bound (tests/processor.rs) asks: the heap is private.
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }
}

/// Most queued messages a processor takes before servicing connections.
const BATCH: usize = 64;

/// Most segments one pass over a connection sends (Linux's NAPI weight,
/// the packets one device poll handles before yielding, is the same 64).
/// A peer that opens a huge window with tiny segments (or one ACK that
/// releases a whole window) could otherwise keep the processor writing
/// frames for one connection while every other one waits; at about a
/// microsecond or two per frame, 64 frames keep a pass well under a
/// millisecond. A bulk transfer rarely meets it: an ACK releases a few
/// segments, and a pass of 64 full segments is 92 KiB (two TSO frames).
/// A connection that hits it goes to the back of the line and is serviced
/// again on the next turn, after the queue's next batch.
const MAX_SEGMENTS_PER_PASS: usize = 64;

/// A connection that received this many payload bytes within a batch is
/// serviced (and ACKs) at once instead of at the batch's end. One ACK per
/// whole batch of 64 KiB segments covered the entire 256 KiB window, and a
/// single lost ACK then stalled the sender until its RTO (an upload under
/// 1% loss fell to a tenth); this keeps 16 ACKs or more per window.
const SERVICE_BYTES: usize = 16 << 10;

/// The app's view of a connection: counts bytes as they pass.
struct SocketView<'a> {
    tcp: &'a mut Connection,
    stats: &'a ProcessorStats,
}

impl SocketView<'_> {
    /// Bytes read: counted, and the buffers of large segments read to
    /// the end (kept by the receive buffer where they arrived) go back
    /// to the frame pool the reads take from.
    fn read_done(&mut self, n: usize) -> usize {
        self.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        while let Some(b) = self.tcp.take_spent_buffer() {
            vnic_adapter::pool::recycle(b);
        }
        n
    }

    /// Bytes queued for sending: counted.
    fn sent(&self, n: usize) -> usize {
        self.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        n
    }
}

impl Socket for SocketView<'_> {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        let n = self.tcp.recv(buf);
        self.read_done(n)
    }
    fn recv_available(&self) -> usize {
        self.tcp.recv_available()
    }
    fn recv_slices(&self) -> [&[u8]; 2] {
        self.tcp.recv_slices()
    }
    fn recv_consume(&mut self, n: usize) -> usize {
        let n = self.tcp.recv_consume(n);
        self.read_done(n)
    }
    fn send(&mut self, data: &[u8]) -> usize {
        let n = self.tcp.send(data);
        self.sent(n)
    }
    fn send_shared(
        &mut self,
        data: &vnic_stack::SharedBytes,
        range: std::ops::Range<usize>,
    ) -> usize {
        let n = self.tcp.send_shared(data, range);
        self.sent(n)
    }
    fn send_capacity(&self) -> usize {
        self.tcp.send_capacity()
    }
    fn peer_closed(&self) -> bool {
        self.tcp.peer_fin_received()
    }
    fn close(&mut self) {
        self.tcp.close();
    }
    fn abort(&mut self) {
        self.tcp.abort();
    }
}

impl Processor {
    /// True when a message waits in a queue other than the TAP's: its
    /// frame queue, socket-table queries, checkpoints from its primaries,
    /// and a distributor's back-end replies and control requests. What
    /// the loop looks at once more before it sleeps, running or failed.
    fn inbox_waiting(
        &self,
        replies: Option<&Receiver<FromBackend>>,
        ctl: Option<&Receiver<BackendCtlRequest>>,
    ) -> bool {
        !self.queue.is_empty()
            || !self.socket_queries.is_empty()
            || self.pair.pending()
            || replies.is_some_and(|r| !r.is_empty())
            || ctl.is_some_and(|c| !c.is_empty())
    }

    /// A processor ready to run.
    pub fn new(s: ProcessorSetup) -> Processor {
        let known = s
            .serve
            .values()
            .map(|svc| (svc.name().to_string(), svc.clone()))
            .collect();
        for (port, svc) in &s.serve {
            s.registry.add_service(*port, svc.clone());
        }
        if let Some(stats) = s.registry.processors.get(s.id) {
            let budget = u64::try_from(s.memory_budget).unwrap_or(u64::MAX);
            stats.memory_budget.store(budget, Ordering::Relaxed);
        }
        Processor {
            id: s.id,
            queue: s.queue.rx,
            queue_bytes: s.queue.bytes,
            poll: Some(s.queue.poll),
            bell: s.queue.bell,
            io: s.queue.registry,
            closed: s.closed,
            peers: s.peers,
            moved: TupleMap::default(),
            evacuation: None,
            pair: PairLink::new(s.id, s.pairs, s.checkpoint_queues, s.queue.checkpoints.1),
            hand_off: s.hand_off,
            out: s.out,
            serve: s.serve,
            known,
            udp_serve: s.udp_serve,
            tcp_config: s.tcp_config,
            tcp_ports: s.tcp_ports,
            isn: s.isn,
            registry: s.registry,
            conns: TupleMap::default(),
            by_id: HashMap::new(),
            timers: BinaryHeap::new(),
            spare: Vec::new(),
            pending: Vec::new(),
            draining: false,
            backlog: Vec::new(),
            invalid_replies: InvalidReplies {
                bucket: TokenBucket::new(INVALID_REPLY_RATE.0, INVALID_REPLY_RATE.1),
                refused: 0,
            },
            apps: s.apps,
            tracer: s.tracer,
            max_connections: s.max_connections,
            adapter_counters: s.adapter_counters,
            memory: memory::Budget::new(s.memory_budget),
            socket_queries: s.queue.socket_queries.1,
            listings: sockets::Listings::default(),
            direct: s.direct,
            slow: s.slow,
            direct_batch: Vec::with_capacity(BATCH),
            time_wait: time_wait::TimeWaitTable::default(),
            clock: Clock::Real,
            taken: 0,
            batch_now: None,
            batches: 0,
            wake: None,
        }
    }

    fn stats(&self) -> &ProcessorStats {
        &self.registry.processors[self.id]
    }

    /// The thread's loop: until Shutdown or the queue is gone.
    ///
    /// Each turn takes what is queued (frames in batches, back-end replies,
    /// control requests), fires the timers that are due, and then sleeps in
    /// the epoll until the doorbell rings, an app's descriptor is ready, or
    /// the earliest timer is due.
    pub fn run(mut self) {
        let Some(mut poll) = self.poll.take() else {
            return;
        };
        self.watch_own_queue(&poll);
        self.run_on(&mut poll);
    }

    /// Watches the processor's own TAP queue, if it has one, in its epoll:
    /// once per thread, not per (re)start (see restart.rs).
    fn watch_own_queue(&mut self, poll: &Poll) {
        if let Some(d) = &self.direct {
            let fd = d.fd();
            let own = mio::unix::SourceFd(&fd);
            if let Err(e) =
                poll.registry()
                    .register(&mut { own }, OWN_QUEUE, mio::Interest::READABLE)
            {
                // Its frames then wait for nothing: say why and go on
                // through the RX threads (the map entries are not made).
                log::error!("processor {}: its own TAP queue: {e}", self.id);
                self.direct = None;
            }
        }
    }

    /// The loop of [`Processor::run`] on the epoll `poll`, which outlives
    /// it: a restarted processor sleeps in the same one (restart.rs).
    fn run_on(&mut self, poll: &mut Poll) {
        let mut events = Events::with_capacity(256);
        let (replies, ctl) = match &self.apps {
            AppSource::Distributor(d) => (Some(d.replies.clone()), Some(d.ctl.clone())),
            AppSource::Local => (None, None),
        };
        loop {
            let mut busy = false;
            match self.take_message() {
                Ok(msg) => {
                    busy = true;
                    if !self.on_message(msg) {
                        break;
                    }
                }
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {}
            }
            if let Some(r) = &replies {
                for _ in 0..BATCH {
                    let Ok(m) = r.try_recv() else { break };
                    busy = true;
                    self.on_backend(m);
                }
            }
            if let Some(c) = &ctl {
                while let Ok((c, answer)) = c.try_recv() {
                    busy = true;
                    let r = match &self.apps {
                        AppSource::Distributor(d) => d.dispatcher.lock().set_up(c.backend, c.up),
                        AppSource::Local => Err("no back-ends in the monolithic model".into()),
                    };
                    let _ = answer.send(r);
                }
                busy |= self.wake_starved();
            }
            if self.read_own_queue() {
                busy = true;
            }
            // One clock reading for the turn's housekeeping: five readings
            // a turn were 2% of a processor's samples in a profiled upload.
            let now = self.clock.now();
            self.fire_timers(now);
            self.expire_time_wait(now);
            self.keep_budget(now);
            self.expire_moved(now);
            if self.evacuate(now) {
                busy = self.conns.is_empty() && busy;
            }
            if self.draining {
                self.count_unfinished();
            }
            if self.service_backlog(now) {
                busy = true;
            }
            if self.serve_socket_queries() {
                busy = true;
            }
            if self.apply_checkpoints() {
                busy = true;
            }
            if busy {
                if let Some(d) = self.slow {
                    std::thread::sleep(d);
                }
                continue;
            }
            // Nothing queued: sleep, unless something came in meanwhile.
            self.bell.going_to_sleep();
            let more = self.direct.as_ref().is_some_and(DirectQueue::pending)
                || self.inbox_waiting(replies.as_ref(), ctl.as_ref());
            if more {
                self.bell.awake();
                continue;
            }
            let due = [
                self.next_deadline(),
                self.memory.deadline(),
                self.evacuation_deadline(),
            ]
            .into_iter()
            .flatten()
            .min();
            let wait = due.map_or(Duration::from_secs(1), |d| {
                d.saturating_duration_since(self.clock.now())
            });
            let polled = poll.poll(&mut events, Some(wait));
            self.bell.awake();
            if polled.is_err() {
                continue; // EINTR: look again
            }
            self.on_io(&events);
        }
        self.shutdown();
    }

    /// One message from the queue; false when the processor must stop.
    fn on_message(&mut self, msg: ToProcessor) -> bool {
        match msg {
            ToProcessor::Shutdown => return false,
            ToProcessor::Drain => self.drain(),
            ToProcessor::Crash => panic!(
                "processor {} crashed on request (vnic ctl processor {} crash)",
                self.id, self.id
            ),
            // A live processor has nothing to restart.
            ToProcessor::Restart => {}
            ToProcessor::Up => self.set_up(true),
            ToProcessor::Down => self.set_up(false),
            ToProcessor::Datagram(d) => self.on_datagram(d),
            ToProcessor::Serve {
                protocol,
                port,
                app,
            } => self.set_serve(protocol, port, app),
            ToProcessor::Segment(inb) => {
                // One clock reading for the whole batch, as a kernel's
                // NAPI poll: what a trace's turn stamp records.
                let now = self.clock.now();
                self.batch_now = Some(now);
                self.batches += 1;
                self.receive(inb);
                let more = self.receive_more();
                self.batch_now = None;
                if !more {
                    return false;
                }
                self.service_pending(now);
                self.out.record_batch(now, self.taken, self.batches);
            }
            ToProcessor::Adopt(a) => self.on_adopt(a),
            ToProcessor::Migrate(m) => self.on_migrate(m),
            ToProcessor::FlowSwitched(t) => self.flow_switched(t),
        }
        true
    }

    /// A reply or failure report from a back-end.
    fn on_backend(&mut self, msg: FromBackend) {
        let AppSource::Distributor(d) = &self.apps else {
            return;
        };
        let replies: Vec<Reply> = match msg {
            FromBackend::Failed {
                backend,
                generation,
                job,
            } => d.dispatcher.lock().on_failed(backend, generation, job),
            FromBackend::Reply(r) => d.dispatcher.lock().on_reply(r).into_iter().collect(),
        };
        for r in replies {
            let Some(tuple) = self.by_id.get(&r.conn).copied() else {
                continue; // the connection is gone
            };
            let done = catch_unwind(AssertUnwindSafe(|| {
                if let Some(c) = self.conns.get_mut(&tuple) {
                    c.app.deliver(r);
                }
                self.service(tuple, self.clock.now());
            }));
            if done.is_err() {
                self.quarantine(tuple, None);
            }
        }
    }

    /// Services the connections the dispatcher refused room once it has
    /// room again (distributor model); true if there were any.
    fn wake_starved(&mut self) -> bool {
        let starved = match &self.apps {
            AppSource::Distributor(d) => d.dispatcher.lock().take_starved_at(self.id),
            AppSource::Local => return false,
        };
        let now = self.clock.now();
        for conn in &starved {
            let Some(tuple) = self.by_id.get(conn).copied() else {
                continue; // the connection is gone
            };
            if catch_unwind(AssertUnwindSafe(|| self.service(tuple, now))).is_err() {
                self.quarantine(tuple, None);
            }
        }
        !starved.is_empty()
    }

    fn next_deadline(&self) -> Option<Instant> {
        let heap = self.timers.peek().map(|Reverse(e)| e.at);
        match (heap, self.time_wait.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next message of the queue, its bytes given back to the queue's
    /// bound.
    fn take_message(&self) -> Result<ToProcessor, TryRecvError> {
        let msg = self.queue.try_recv()?;
        self.queue_bytes.release(msg.weight());
        Ok(msg)
    }

    /// A UDP datagram for one of this processor's UDP listeners.
    fn on_datagram(&mut self, d: Datagram) {
        if self.stats().down.load(Ordering::Relaxed) {
            return;
        }
        let Some(app) = self.udp_serve.get(&d.local.port()).copied() else {
            return;
        };
        let stats = &self.registry.processors[self.id];
        stats.datagrams.fetch_add(1, Ordering::Relaxed);
        stats.frames_in.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes_in
            .fetch_add(d.payload.len() as u64, Ordering::Relaxed);
        if let Some(reply) = app.answer(d.remote.port(), &d.payload) {
            stats
                .bytes_out
                .fetch_add(reply.len() as u64, Ordering::Relaxed);
            udp::send(&mut self.out, d.peer_mac, d.local, d.remote, &reply);
        }
    }

    /// Starts or stops serving a port (listeners added or removed at run time).
    fn set_serve(&mut self, protocol: Protocol, port: u16, app: Option<String>) {
        match (protocol, app) {
            (Protocol::Tcp, Some(name)) => {
                let svc = match AppKind::from_name(&name) {
                    Some(k) => Some(Arc::new(k) as Arc<dyn Service>),
                    None => self.known.get(&name).cloned(),
                };
                if let Some(svc) = svc {
                    self.serve.insert(port, svc);
                }
            }
            (Protocol::Tcp, None) => {
                self.serve.remove(&port);
            }
            (Protocol::Udp, Some(name)) => {
                if let Some(k) = UdpAppKind::from_name(&name) {
                    self.udp_serve.insert(port, k);
                }
            }
            (Protocol::Udp, None) => {
                self.udp_serve.remove(&port);
            }
        }
    }

    /// Connections this processor holds (TIME-WAIT records apart).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Connections it keeps in TIME-WAIT as records (time_wait.rs): what
    /// tests of that table read.
    pub fn parked(&self) -> usize {
        self.time_wait.len()
    }
}

/// The text of a panic's payload (`panic!` with a message gives a `&str`
/// or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}
