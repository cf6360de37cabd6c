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
use vnic_adapter::ratelimit::{TokenBucket, INVALID_REPLY_RATE};
use vnic_adapter::trace::Tracer;
use vnic_adapter::{
    BellSender, Datagram, Doorbell, FlowClosed, FrameWriter, Inbound, ProcessorQueue, ToProcessor,
};
use vnic_stack::{
    Config, Connection, Control, Disposition, Event, FourTuple, IsnGenerator, ReplyLimiter, State,
    SynCookies,
};

/// Everything a processor thread needs, handed over at spawn.
pub struct ProcessorSetup {
    /// This processor's number.
    pub id: usize,
    /// Its queue and event loop.
    pub queue: Inbox,
    /// Where it reports connections it no longer holds: one channel per
    /// RX queue, each to the RX thread whose flow table holds them.
    pub closed: Vec<Sender<FlowClosed>>,
    /// Its way to the TAP.
    pub out: FrameWriter,
    /// Which service makes the app of each TCP port's connections.
    pub serve: HashMap<u16, Arc<dyn Service>>,
    /// Which app serves each UDP port.
    pub udp_serve: HashMap<u16, UdpAppKind>,
    /// TCP settings.
    pub tcp: Config,
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

/// A processor's receiving end: its frame queue and the epoll it sleeps
/// in, which the queue's senders ring ([`vnic_adapter::Doorbell`]) and the
/// apps' descriptors wake ([`crate::app::Io`]).
pub struct Inbox {
    rx: Receiver<ToProcessor>,
    poll: Poll,
    bell: Arc<Doorbell>,
    registry: Arc<mio::Registry>,
}

impl Inbox {
    /// A queue of `depth` messages and the epoll behind it: the sender
    /// for the RX threads and the control server, and the inbox for the
    /// processor.
    pub fn new(depth: usize) -> std::io::Result<(ProcessorQueue, Inbox)> {
        let poll = Poll::new()?;
        let bell = Arc::new(Doorbell::new(Waker::new(poll.registry(), WAKE)?));
        let registry = Arc::new(poll.registry().try_clone()?);
        let (tx, rx) = crossbeam_channel::bounded(depth);
        Ok((
            BellSender::new(tx, bell.clone()),
            Inbox {
                rx,
                poll,
                bell,
                registry,
            },
        ))
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
    poll: Option<Poll>,
    bell: Arc<Doorbell>,
    io: Arc<mio::Registry>,
    closed: Vec<Sender<FlowClosed>>,
    out: FrameWriter,
    serve: HashMap<u16, Arc<dyn Service>>,
    /// Every service this processor has served, by name, so that a
    /// listener added at run time may name one (besides the built-ins).
    known: HashMap<String, Arc<dyn Service>>,
    udp_serve: HashMap<u16, UdpAppKind>,
    tcp: Config,
    isn: Arc<IsnGenerator>,
    registry: Arc<Registry>,
    conns: HashMap<FourTuple, Conn>,
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

impl Socket for SocketView<'_> {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        let n = self.tcp.recv(buf);
        self.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        n
    }
    fn recv_available(&self) -> usize {
        self.tcp.recv_available()
    }
    fn send(&mut self, data: &[u8]) -> usize {
        let n = self.tcp.send(data);
        self.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        n
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
        Processor {
            id: s.id,
            queue: s.queue.rx,
            poll: Some(s.queue.poll),
            bell: s.queue.bell,
            io: s.queue.registry,
            closed: s.closed,
            out: s.out,
            serve: s.serve,
            known,
            udp_serve: s.udp_serve,
            tcp: s.tcp,
            isn: s.isn,
            registry: s.registry,
            conns: HashMap::new(),
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
        }
    }

    /// Starts the processor's thread. The whole loop is guarded: a panic
    /// outside any connection's work (which costs only that connection)
    /// ends the thread, records the panic message in the processor's
    /// stats (`failure`, shown by `vnic status`), marks it down, and calls
    /// `on_failure` (which takes it out of the rotation). Its queue closes
    /// with it, so the adapter resets its connections' segments as they
    /// arrive.
    pub fn spawn(
        s: ProcessorSetup,
        on_failure: impl FnOnce(usize) + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let name = format!("vnic-cpu{}", s.id);
        let (id, registry) = (s.id, s.registry.clone());
        std::thread::Builder::new().name(name).spawn(move || {
            let ran = catch_unwind(AssertUnwindSafe(|| Processor::new(s).run()));
            if let Err(panic) = ran {
                if let Some(stats) = registry.processors.get(id) {
                    *stats.failure.lock() = Some(panic_message(panic.as_ref()));
                    stats.down.store(true, Ordering::Relaxed);
                    stats.active.store(0, Ordering::Relaxed);
                    stats.unfinished.store(0, Ordering::Relaxed);
                }
                on_failure(id);
            }
        })
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
        let mut events = Events::with_capacity(256);
        let (replies, ctl) = match &self.apps {
            AppSource::Distributor(d) => (Some(d.replies.clone()), Some(d.ctl.clone())),
            AppSource::Local => (None, None),
        };
        loop {
            let mut busy = false;
            match self.queue.try_recv() {
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
            self.fire_timers(Instant::now());
            if self.draining {
                self.count_unfinished();
            }
            if self.service_backlog(Instant::now()) {
                busy = true;
            }
            if busy {
                continue;
            }
            // Nothing queued: sleep, unless something came in meanwhile.
            self.bell.going_to_sleep();
            let more = !self.queue.is_empty()
                || replies.as_ref().is_some_and(|r| !r.is_empty())
                || ctl.as_ref().is_some_and(|c| !c.is_empty());
            if more {
                self.bell.awake();
                continue;
            }
            let wait = self.next_deadline().map_or(Duration::from_secs(1), |d| {
                d.saturating_duration_since(Instant::now())
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
            ToProcessor::SetUp(up) => self.set_up(up),
            ToProcessor::Datagram(d) => self.on_datagram(d),
            ToProcessor::Serve { udp, port, app } => self.set_serve(udp, port, app),
            ToProcessor::Segment(inb) => {
                self.receive(inb);
                if !self.receive_more() {
                    return false;
                }
                self.service_pending(Instant::now());
            }
        }
        true
    }

    /// vnic is stopping: accept nothing more, and close every connection
    /// with FIN after what its app has queued (its app sees the close as
    /// any other). What is still open when the drain time is over is reset
    /// by the `Shutdown` that follows.
    fn drain(&mut self) {
        self.draining = true;
        let now = Instant::now();
        let tuples: Vec<FourTuple> = self.conns.keys().copied().collect();
        for t in tuples {
            if let Some(c) = self.conns.get_mut(&t) {
                c.tcp.close();
            }
            if catch_unwind(AssertUnwindSafe(|| self.service(t, now))).is_err() {
                self.quarantine(t, None);
            }
        }
        self.count_unfinished();
    }

    /// Publishes how many connections are not closed yet (TIME-WAIT counts
    /// as closed: both sides are done).
    fn count_unfinished(&self) {
        let n = self
            .conns
            .values()
            .filter(|c| !matches!(c.tcp.state(), State::TimeWait | State::Closed))
            .count();
        self.stats().unfinished.store(n as u64, Ordering::Relaxed);
    }

    /// Services each connection one of whose apps' descriptors is ready.
    fn on_io(&mut self, events: &Events) {
        let now = Instant::now();
        for ev in events.iter() {
            if ev.token() == WAKE {
                continue;
            }
            let Some(tuple) = self.by_id.get(&(ev.token().0 as u64)).copied() else {
                continue; // the connection is gone
            };
            if catch_unwind(AssertUnwindSafe(|| self.service(tuple, now))).is_err() {
                self.quarantine(tuple, None);
            }
        }
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
                self.service(tuple, Instant::now());
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
            AppSource::Distributor(d) => d.dispatcher.lock().take_starved(),
            AppSource::Local => return false,
        };
        let now = Instant::now();
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
        self.timers.peek().map(|Reverse(e)| e.at)
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
    fn set_serve(&mut self, udp: bool, port: u16, app: Option<String>) {
        match (udp, app) {
            (false, Some(name)) => {
                let svc = match AppKind::from_name(&name) {
                    Some(k) => Some(Arc::new(k) as Arc<dyn Service>),
                    None => self.known.get(&name).cloned(),
                };
                if let Some(svc) = svc {
                    self.serve.insert(port, svc);
                }
            }
            (false, None) => {
                self.serve.remove(&port);
            }
            (true, Some(name)) => {
                if let Some(k) = UdpAppKind::from_name(&name) {
                    self.udp_serve.insert(port, k);
                }
            }
            (true, None) => {
                self.udp_serve.remove(&port);
            }
        }
    }

    /// The processor fails (every connection reset, nothing accepted) or
    /// comes back.
    fn set_up(&mut self, up: bool) {
        self.stats().down.store(!up, Ordering::Relaxed);
        if !up {
            self.reset_all();
        }
    }

    /// Handles one segment from the adapter. A panic while handling it
    /// (a bug in the stack or the app) costs only that connection: it is
    /// reset and forgotten, and the processor goes on with the others.
    pub fn on_inbound(&mut self, inb: Inbound) {
        self.receive(inb);
        self.service_pending(Instant::now());
    }

    /// Hands one segment to its connection (or opens one); the connection
    /// is serviced (app, transmit) later, by [`Processor::service_pending`].
    fn receive(&mut self, inb: Inbound) {
        let (tuple, peer_mac) = (inb.tuple, inb.peer_mac);
        if catch_unwind(AssertUnwindSafe(|| self.handle_inbound(&inb))).is_err() {
            self.quarantine(tuple, Some(peer_mac));
        }
        if inb.counted_syn {
            // Handled: it is half-open now (counted there) or gone.
            if let Some(c) = self.adapter_counters.syn_in_flight.get(self.id) {
                c.fetch_sub(1, Ordering::Relaxed);
            }
        }
        // The stack has the bytes now: the buffer goes back to the RX thread.
        vnic_adapter::pool::recycle(inb.segment.payload.into_buffer());
    }

    /// Takes whatever else is already queued, up to [`BATCH`] messages,
    /// before any connection is serviced: a connection that got several
    /// segments in the meantime is then serviced once and answers them
    /// with one ACK, as a kernel does with a NAPI batch. False when the
    /// processor must stop (Shutdown, or the queue is gone).
    fn receive_more(&mut self) -> bool {
        for _ in 1..BATCH {
            match self.queue.try_recv() {
                Ok(ToProcessor::Segment(inb)) => self.receive(inb),
                Ok(ToProcessor::Shutdown) | Err(TryRecvError::Disconnected) => return false,
                Ok(ToProcessor::SetUp(up)) => {
                    self.service_pending(Instant::now());
                    self.set_up(up);
                }
                Ok(ToProcessor::Datagram(d)) => self.on_datagram(d),
                Ok(ToProcessor::Serve { udp, port, app }) => self.set_serve(udp, port, app),
                Ok(msg @ (ToProcessor::Drain | ToProcessor::Crash)) => {
                    self.service_pending(Instant::now());
                    if !self.on_message(msg) {
                        return false;
                    }
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        true
    }

    /// Services every connection that received segments since the last
    /// call, each once, each guarded like the segments themselves.
    fn service_pending(&mut self, now: Instant) {
        let pending = std::mem::take(&mut self.pending);
        for &tuple in &pending {
            if catch_unwind(AssertUnwindSafe(|| self.service(tuple, now))).is_err() {
                self.quarantine(tuple, None);
            }
        }
        self.pending = pending;
        self.pending.clear();
    }

    /// Forgets a connection's place in the half-open queue.
    fn leave_half_open(
        gauge: Option<&std::sync::atomic::AtomicU64>,
        stats: &ProcessorStats,
        c: &mut Conn,
    ) {
        if c.half_open {
            c.half_open = false;
            stats.half_open.fetch_sub(1, Ordering::Relaxed);
            if let Some(g) = gauge {
                g.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Forgets a connection: out of the table, the half-open queue and the
    /// counters; with `report`, the RX thread is told its flow entry can go.
    fn forget(&mut self, tuple: FourTuple, report: bool) -> Option<Conn> {
        let mut c = self.conns.remove(&tuple)?;
        let stats = &self.registry.processors[self.id];
        Self::leave_half_open(self.adapter_counters.half_open.get(self.id), stats, &mut c);
        self.by_id.remove(&c.id);
        stats.active.fetch_sub(1, Ordering::Relaxed);
        if report {
            self.report_closed(FlowClosed {
                tuple,
                syn_stamp: c.syn_stamp,
            });
        }
        Some(c)
    }

    /// Resets and forgets a connection whose handling panicked.
    fn quarantine(&mut self, tuple: FourTuple, peer_mac: Option<[u8; 6]>) {
        self.stats().panics.fetch_add(1, Ordering::Relaxed);
        let Some(mut c) = self.forget(tuple, true) else {
            return;
        };
        let _ = catch_unwind(AssertUnwindSafe(|| c.app.on_closed(CloseReason::Aborted)));
        let now = Instant::now();
        // The connection may be in a broken state: its own RST is tried,
        // guarded too; failing that, the adapter answers its next segment.
        let rst = catch_unwind(AssertUnwindSafe(|| {
            c.tcp.abort();
            let mut v = Vec::new();
            while let Some(seg) = c.tcp.poll_transmit(now) {
                v.push(seg);
            }
            v
        }))
        .unwrap_or_default();
        let mac = peer_mac.unwrap_or(c.peer_mac);
        for seg in rst {
            self.out
                .send_tcp(mac, tuple.local.ip(), tuple.remote.ip(), &seg);
        }
        let cpu = self.id;
        self.tracer.conn_event(|| {
            format!(
                "reset after an internal error {} > {} cpu={cpu}",
                tuple.remote, tuple.local
            )
        });
    }

    fn handle_inbound(&mut self, inb: &Inbound) {
        let now = Instant::now();
        self.handle_segment(now, inb);
        let refused = std::mem::take(&mut self.invalid_replies.refused);
        if refused > 0 {
            self.stats()
                .replies_limited
                .fetch_add(refused, Ordering::Relaxed);
        }
    }

    fn handle_segment(&mut self, now: Instant, inb: &Inbound) {
        let Inbound {
            tuple,
            ref segment,
            peer_mac,
            syn_stamp,
            cookie_mss: inb_cookie,
            ..
        } = *inb;
        let up = !self.stats().down.load(Ordering::Relaxed);
        let accepting = up && !self.draining;
        if let Some(c) = self.conns.get_mut(&tuple).filter(|_| up) {
            if syn_stamp != 0 {
                c.syn_stamp = syn_stamp;
            }
            let before = c.tcp.progress();
            let disposition = c
                .tcp
                .on_segment_limited(now, segment, &mut self.invalid_replies);
            let after = c.tcp.progress();
            // A segment that moved nothing forward (out of window, forged,
            // a duplicate) must not redirect the connection's frames.
            if after != before {
                c.peer_mac = peer_mac;
            }
            // Data that did not advance RCV.NXT (out of order, a gap): its
            // duplicate ACK (with SACK) goes out now, not at the end of the
            // batch, because the sender counts them to find the loss
            // (RFC 5681 4.2). Batching them cut an upload under 1% loss to a
            // tenth.
            let out_of_order = !segment.payload.is_empty() && after.0 == before.0;
            c.unserviced += segment.payload.len();
            let due = c.unserviced >= SERVICE_BYTES;
            match disposition {
                Disposition::Handled if out_of_order || due => self.service(tuple, now),
                Disposition::Handled => {
                    if !c.queued {
                        c.queued = true;
                        self.pending.push(tuple);
                    }
                }
                Disposition::Reincarnate => {
                    // The flow goes on with the new incarnation.
                    self.forget(tuple, false);
                    self.accept(now, tuple, segment, peer_mac, syn_stamp);
                }
            }
            return;
        }
        if let Some(mss) = inb_cookie {
            if accepting && self.conns.len() < self.max_connections {
                self.accept_cookie(now, tuple, segment, peer_mac, syn_stamp, mss);
                if self.conns.contains_key(&tuple) {
                    return;
                }
            }
        }
        let is_syn = segment.control == Control::Syn && segment.ack.is_none();
        let full = self.conns.len() >= self.max_connections;
        if full && is_syn {
            self.stats().refused.fetch_add(1, Ordering::Relaxed);
        }
        if accepting && is_syn && !full && self.serve.contains_key(&tuple.local.port()) {
            self.accept(now, tuple, segment, peer_mac, syn_stamp);
            if self.conns.contains_key(&tuple) {
                return;
            }
            // The service refused it: RST below.
        }
        if let Some(rst) = segment.rst_reply() {
            if self.invalid_replies.allow(now) {
                self.out
                    .send_tcp(peer_mac, tuple.local.ip(), tuple.remote.ip(), &rst);
            }
        }
        if syn_stamp != 0 {
            self.report_closed(FlowClosed { tuple, syn_stamp });
        }
    }

    /// Tells the RX thread that placed a connection that it is gone.
    fn report_closed(&self, c: FlowClosed) {
        if let Some(to) = self.closed.get(c.rx_queue()).or(self.closed.first()) {
            let _ = to.send(c);
        }
    }

    /// Opens the connection a genuine cookie ACK stands for: the SYN is
    /// rebuilt from the cookie, its SYN|ACK was already sent, and the ACK
    /// completes the handshake.
    fn accept_cookie(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        ack: &vnic_stack::Segment,
        peer_mac: [u8; 6],
        syn_stamp: u64,
        mss: u16,
    ) {
        let Some(ack_no) = ack.ack else {
            return;
        };
        let syn = SynCookies::rebuilt_syn(ack, mss);
        let iss = vnic_stack::SeqNumber(ack_no.0.wrapping_sub(1));
        self.accept_with(now, tuple, &syn, peer_mac, syn_stamp, iss, false);
        if let Some(c) = self.conns.get_mut(&tuple) {
            // The SYN|ACK went out statelessly already.
            while c.tcp.poll_transmit(now).is_some() {}
            let _ = c.tcp.on_segment(now, ack);
        }
        self.service(tuple, now);
    }

    fn accept(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        syn: &vnic_stack::Segment,
        peer_mac: [u8; 6],
        syn_stamp: u64,
    ) {
        let iss = self.isn.isn(now, &tuple);
        self.accept_with(now, tuple, syn, peer_mac, syn_stamp, iss, true);
        self.service(tuple, now);
    }

    #[allow(clippy::too_many_arguments)]
    fn accept_with(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        syn: &vnic_stack::Segment,
        peer_mac: [u8; 6],
        syn_stamp: u64,
        iss: vnic_stack::SeqNumber,
        half_open: bool,
    ) {
        let Some(svc) = self.serve.get(&tuple.local.port()).cloned() else {
            return;
        };
        let id = self.registry.connection_number();
        let app: Box<dyn App> = match (&self.apps, svc.builtin(), svc.requests()) {
            (AppSource::Distributor(d), Some(kind), _) => {
                Box::new(Forwarder::new(kind, id, d.dispatcher.clone()))
            }
            (AppSource::Distributor(d), None, Some(handler)) => {
                Box::new(Forwarder::for_requests(handler, id, d.dispatcher.clone()))
            }
            _ => {
                let ctx = AppContext {
                    processor: self.id,
                    connection: id,
                    registry: self.registry.clone(),
                    backend: None,
                    local: tuple.local,
                    remote: tuple.remote,
                    io: Io::new(self.io.clone(), id),
                };
                match svc.open(ctx) {
                    Ok(app) => app,
                    Err(why) => {
                        self.stats().refused.fetch_add(1, Ordering::Relaxed);
                        let cpu = self.id;
                        self.tracer.conn_event(|| {
                            format!(
                                "refused {} > {} cpu={cpu}: {why}",
                                tuple.remote, tuple.local
                            )
                        });
                        return;
                    }
                }
            }
        };
        let mut tcp = Connection::accept(now, &self.tcp, tuple, syn, iss);
        // Request/response apps turn Nagle off (no 40 ms stalls).
        tcp.set_nodelay(!app.nagle());
        self.stats().accepted.fetch_add(1, Ordering::Relaxed);
        self.stats().active.fetch_add(1, Ordering::Relaxed);
        self.conns.insert(
            tuple,
            Conn {
                tcp,
                app,
                peer_mac,
                syn_stamp,
                armed: None,
                id,
                half_open,
                unserviced: 0,
                queued: false,
                backlogged: false,
            },
        );
        if half_open {
            self.stats().half_open.fetch_add(1, Ordering::Relaxed);
            if let Some(g) = self.adapter_counters.half_open.get(self.id) {
                g.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.by_id.insert(id, tuple);
        let cpu = self.id;
        self.tracer.conn_event(|| {
            format!(
                "new {} > {} placed on cpu={cpu} connection={id}",
                tuple.remote, tuple.local
            )
        });
    }

    /// Lets the app run, sends what is due, handles events, re-arms the
    /// timer, and drops the connection once it is closed.
    fn service(&mut self, tuple: FourTuple, now: Instant) {
        let stats = &self.registry.processors[self.id];
        let Some(c) = self.conns.get_mut(&tuple) else {
            return;
        };
        c.unserviced = 0;
        c.queued = false;
        let mut closed = false;
        // Segments this pass may still send (see MAX_SEGMENTS_PER_PASS).
        let mut budget = MAX_SEGMENTS_PER_PASS;
        // The app may free receive space or queue data; one pass of
        // app + transmit + events, twice, lets an app answer what the
        // first pass's events (e.g. Established) made possible.
        for _ in 0..2 {
            let mut readable = false;
            while let Some(ev) = c.tcp.poll_event() {
                match ev {
                    Event::Established => {
                        readable = true;
                        Self::leave_half_open(
                            self.adapter_counters.half_open.get(self.id),
                            stats,
                            c,
                        );
                    }
                    Event::Retransmit => {
                        stats.retransmissions.fetch_add(1, Ordering::Relaxed);
                        self.tracer.conn_event(|| {
                            format!(
                                "retransmit {} > {} cpu={}",
                                tuple.remote, tuple.local, self.id
                            )
                        });
                    }
                    Event::Closed(reason) => {
                        closed = true;
                        c.app.on_closed(reason);
                        let st = c.tcp.stats();
                        self.tracer.conn_event(|| {
                            let what = match reason {
                                CloseReason::Normal => "closed",
                                CloseReason::Reset => "reset by peer",
                                CloseReason::TimedOut => "timed out",
                                CloseReason::Aborted => "reset",
                            };
                            format!(
                                "{what} {} > {} cpu={} in={} out={} rtx={} rto={} fast={} \
                                 sack-recoveries={} srtt={:?}",
                                tuple.remote,
                                tuple.local,
                                self.id,
                                st.bytes_in,
                                st.bytes_out,
                                st.segments_retransmitted,
                                st.retransmissions,
                                st.fast_retransmits,
                                st.sack_recoveries,
                                st.srtt.unwrap_or_default()
                            )
                        });
                    }
                    _ => readable = true,
                }
            }
            if !closed {
                let mut view = SocketView {
                    tcp: &mut c.tcp,
                    stats,
                };
                c.app.poll(&mut view);
            }
            self.out.set_burst_limit(c.tcp.gso_burst_limit());
            while budget > 0 {
                let Some(seg) = c.tcp.poll_transmit_reusing(now, &mut self.spare) else {
                    break;
                };
                budget -= 1;
                self.out
                    .send_tcp_burst(c.peer_mac, tuple.local.ip(), tuple.remote.ip(), &seg);
                if self.spare.capacity() == 0 {
                    self.spare = seg.payload.into_buffer();
                }
            }
            // A run of full segments leaves as one TSO frame (offload on).
            self.out.flush();
            if !readable {
                break;
            }
        }
        if closed || c.tcp.is_closed() {
            self.forget(tuple, true);
            return;
        }
        if budget == 0 && !c.backlogged {
            // More may be due: the rest goes on the next turn, after the
            // other connections had theirs.
            c.backlogged = true;
            self.backlog.push(tuple);
            stats.send_limited.fetch_add(1, Ordering::Relaxed);
        }
        let due = match (c.tcp.poll_timeout(), c.app.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(d) = due {
            if c.armed.is_none_or(|a| d < a) {
                c.armed = Some(d);
                self.timers.push(Reverse(TimerEntry { at: d, tuple }));
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse(TimerEntry { at: d, tuple })) = self.timers.peek().copied() {
            if d > now {
                break;
            }
            self.timers.pop();
            let Some(c) = self.conns.get_mut(&tuple) else {
                continue;
            };
            if c.armed != Some(d) {
                continue; // superseded by an earlier deadline
            }
            c.armed = None;
            let fired = catch_unwind(AssertUnwindSafe(|| {
                if let Some(c) = self.conns.get_mut(&tuple) {
                    match c.tcp.poll_timeout() {
                        Some(due) if due <= now => c.tcp.on_timeout(now),
                        _ => {}
                    }
                }
                self.service(tuple, now);
            }));
            if fired.is_err() {
                self.quarantine(tuple, None);
            }
        }
    }

    /// Resets every connection (the processor is going away).
    fn shutdown(&mut self) {
        self.reset_all();
    }

    /// Sends RST on every connection and forgets them all.
    fn reset_all(&mut self) {
        let now = Instant::now();
        let tuples: Vec<FourTuple> = self.conns.keys().copied().collect();
        for t in tuples {
            if let Some(c) = self.conns.get_mut(&t) {
                c.tcp.abort();
                c.app.on_closed(CloseReason::Aborted);
                while let Some(seg) = c.tcp.poll_transmit(now) {
                    self.out
                        .send_tcp(c.peer_mac, t.local.ip(), t.remote.ip(), &seg);
                }
            }
            self.forget(t, true);
        }
        self.timers.clear();
    }

    /// Services, once each, the connections whose last pass stopped at
    /// [`MAX_SEGMENTS_PER_PASS`] with more to send; true if some still
    /// have more (they wait for the next call). The thread's loop calls it
    /// every turn; it is public for tests and for callers that drive the
    /// processor with [`Processor::on_inbound`] themselves.
    pub fn service_backlog(&mut self, now: Instant) -> bool {
        if self.backlog.is_empty() {
            return false;
        }
        let turn = std::mem::take(&mut self.backlog);
        for &tuple in &turn {
            let Some(c) = self.conns.get_mut(&tuple) else {
                continue; // gone meanwhile
            };
            c.backlogged = false;
            if catch_unwind(AssertUnwindSafe(|| self.service(tuple, now))).is_err() {
                self.quarantine(tuple, None);
            }
        }
        !self.backlog.is_empty()
    }

    /// Connections this processor holds.
    pub fn connections(&self) -> usize {
        self.conns.len()
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
