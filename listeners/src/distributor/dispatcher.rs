//! The dispatcher: which back-end gets each request, what is in flight
//! where, the retry of a failed back-end's work, and the bounds on all of
//! it.
//!
//! - **Bounded channels.** Each back-end's job channel holds at most
//!   [`BACKEND_QUEUE`] jobs (sent and not yet answered); a back-end that
//!   has that many gets no more until it answers one.
//! - **A bounded waiting queue.** Jobs no back-end can take (every one
//!   down or full) wait in one FIFO queue. New work is taken only while
//!   fewer than [`MAX_WAITING`] jobs wait ([`Dispatcher::has_room`]): a
//!   forwarder refused room stops reading its client (TCP's window pushes
//!   back) and asks to be woken ([`Dispatcher::want_room`],
//!   [`Dispatcher::take_starved`]). Work already taken is never refused:
//!   the retries of a failed back-end's jobs (at most [`BACKEND_QUEUE`]
//!   per back-end) may add to the queue beyond the bound.
//! - **Generations.** Each start of a back-end is a new incarnation with a
//!   generation number and a [`Life`] shared with its thread. Taken down,
//!   an incarnation is retired: it claims no further job, the jobs still
//!   queued for it go to the others, and the one it is running finishes
//!   there (so no request runs twice). A reply or failure report names its
//!   incarnation; one from a retired incarnation concerns only its own job,
//!   never its successor.
//! - **A retry cap.** A back-end that panics reports the job it was
//!   running; that job is retried on another back-end (if there is one),
//!   at most [`MAX_RETRIES`] times. A job that crashed `MAX_RETRIES + 1`
//!   back-ends is given up: an HTTP request is answered 503 (and its
//!   connection closed after the replies before it), any other work
//!   (echo, discard, chargen, a user's request) resets its connection when
//!   its turn comes, since those protocols have no way to say "failed".
//! - **Restarts.** A back-end that crashed is restarted at once (a new
//!   generation, counted in its `restarts`), so a poisonous request cannot
//!   take every back-end down one after the other. One taken down with
//!   `vnic ctl backend K down` stays down until `vnic ctl backend K up`;
//!   while every back-end is down, work waits (bounded as above).

use super::backend::{self, Handler, Life};
use super::ipc::{FromBackend, Job, Reply, Work};
use crate::app::http::{error_response, Status};
use crate::stats::Registry;
use crossbeam_channel::{bounded, Sender, TrySendError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Most jobs one back-end has at a time (sent and not answered): its job
/// channel's bound. A back-end works through them one by one, so this is
/// also the longest queue a request can find at a back-end.
pub const BACKEND_QUEUE: usize = 64;

/// New work is taken only while fewer jobs than this wait for a back-end.
pub const MAX_WAITING: usize = 1024;

/// Times a request that crashed its back-end is sent again; after
/// `MAX_RETRIES + 1` crashes it is given up.
pub const MAX_RETRIES: u32 = 2;

/// How a request's back-end is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    /// Strict cyclic order over the live back-ends.
    RoundRobin,
    /// The live back-end with the fewest requests in flight.
    LeastBusy,
}

impl Balance {
    /// Parses the name used on the command line.
    pub fn from_name(s: &str) -> Option<Balance> {
        match s {
            "round-robin" => Some(Balance::RoundRobin),
            "least-busy" => Some(Balance::LeastBusy),
            _ => None,
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastBusy => "least-busy",
        }
    }
}

/// One back-end's place: its current incarnation, if it is up.
struct Slot {
    /// The incarnation's job channel (None while the back-end is down).
    jobs: Option<Sender<Job>>,
    /// The incarnation's standing, shared with its thread.
    life: Option<Arc<Life>>,
    /// The incarnation's number (each start adds one).
    generation: u64,
    /// Jobs of the current incarnation in flight.
    in_flight: usize,
}

/// A job with what the dispatcher remembers about it.
struct Entry {
    job: Job,
    /// Back-ends it crashed so far.
    crashes: u32,
    /// The back-end it crashed last: its retry goes elsewhere if it can.
    avoid: Option<usize>,
}

/// Where a job in flight is.
struct Placed {
    backend: usize,
    generation: u64,
    entry: Entry,
}

/// Owned by the distributor thread (shared with its forwarders through a
/// mutex that only that thread takes).
pub struct Dispatcher {
    slots: Vec<Slot>,
    balance: Balance,
    next: usize,
    next_id: u64,
    in_flight: HashMap<u64, Placed>,
    waiting: VecDeque<Entry>,
    /// Connections refused room, in the order they asked, with their
    /// front-end.
    starved: Vec<(usize, u64)>,
    starved_set: HashSet<u64>,
    /// Where each front-end (distributor processor) hears its replies:
    /// several distributors share one pool of back-ends (`--model
    /// distributor --processors N`), each job's reply going to the one
    /// that submitted it.
    reply_to: Vec<vnic_adapter::BellSender<FromBackend>>,
    registry: Arc<Registry>,
    handler: Handler,
}

impl Dispatcher {
    /// A dispatcher over `m` back-ends running `handler`, replies going to
    /// `reply_to`; starts the back-end threads.
    pub fn start(
        m: usize,
        balance: Balance,
        handler: Handler,
        reply_to: impl Into<vnic_adapter::BellSender<FromBackend>>,
        registry: Arc<Registry>,
    ) -> std::io::Result<Dispatcher> {
        let reply_to = reply_to.into();
        let mut d = Dispatcher {
            slots: (0..m)
                .map(|_| Slot {
                    jobs: None,
                    life: None,
                    generation: 0,
                    in_flight: 0,
                })
                .collect(),
            balance,
            next: 0,
            next_id: 1,
            in_flight: HashMap::new(),
            waiting: VecDeque::new(),
            starved: Vec::new(),
            starved_set: HashSet::new(),
            reply_to: vec![reply_to],
            registry,
            handler,
        };
        for k in 0..m {
            d.start_backend(k)?;
        }
        Ok(d)
    }

    /// Starts a new incarnation of back-end `k`.
    fn start_backend(&mut self, k: usize) -> std::io::Result<()> {
        let generation = self.slots[k].generation + 1;
        let (tx, rx) = bounded(BACKEND_QUEUE);
        let life = Life::new();
        backend::spawn(k, generation, life.clone(), rx, self.handler.clone())?;
        let slot = &mut self.slots[k];
        slot.generation = generation;
        slot.jobs = Some(tx);
        slot.life = Some(life);
        slot.in_flight = 0;
        if let Some(b) = self.registry.backends.get(k) {
            b.down.store(false, Ordering::Relaxed);
            b.in_flight.store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Number of back-ends (up or down).
    pub fn backends(&self) -> usize {
        self.slots.len()
    }

    /// Whether new work is taken now (fewer than [`MAX_WAITING`] jobs
    /// wait). A caller refused should not read more of its client, and
    /// may ask to be woken with [`Dispatcher::want_room`].
    pub fn has_room(&self) -> bool {
        self.waiting.len() < MAX_WAITING
    }

    /// Front-end `front` (another distributor processor, numbered from 1)
    /// hears its replies on `reply_to`; front-end 0's came with
    /// [`Dispatcher::start`].
    pub fn set_front(&mut self, front: usize, reply_to: vnic_adapter::BellSender<FromBackend>) {
        if self.reply_to.len() <= front {
            let first = self.reply_to[0].clone();
            self.reply_to.resize(front + 1, first);
        }
        self.reply_to[front] = reply_to;
    }

    /// Connection `conn` was refused room: [`Dispatcher::take_starved`]
    /// names it once there is room again.
    pub fn want_room(&mut self, conn: u64) {
        self.want_room_at(0, conn);
    }

    /// [`Dispatcher::want_room`] for a connection of front-end `front`.
    pub fn want_room_at(&mut self, front: usize, conn: u64) {
        if self.starved_set.insert(conn) {
            self.starved.push((front, conn));
        }
    }

    /// The connections refused room, in the order they asked, once there
    /// is room again (empty until then).
    pub fn take_starved(&mut self) -> Vec<u64> {
        self.take_starved_at(0)
    }

    /// [`Dispatcher::take_starved`] for front-end `front`: its own
    /// connections; the other front-ends that have some waiting are woken
    /// to take theirs.
    pub fn take_starved_at(&mut self, front: usize) -> Vec<u64> {
        if self.starved.is_empty() || !self.has_room() {
            return Vec::new();
        }
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.starved)
            .into_iter()
            .partition(|(f, _)| *f == front);
        for (f, _) in &others {
            if let Some(r) = self.reply_to.get(*f) {
                r.ring();
            }
        }
        for (_, c) in &mine {
            self.starved_set.remove(c);
        }
        self.starved = others;
        mine.into_iter().map(|(_, c)| c).collect()
    }

    /// Connection `conn` is gone: its jobs still waiting are dropped (those
    /// in flight finish, and their replies are dropped by the caller).
    pub fn forget(&mut self, conn: u64) {
        self.waiting.retain(|e| e.job.conn != conn);
        if self.starved_set.remove(&conn) {
            self.starved.retain(|&(_, c)| c != conn);
        }
    }

    /// Sends one request of connection `conn` (its `seq`-th) to a back-end,
    /// or queues it until one can take it. Never refuses: callers ask
    /// [`Dispatcher::has_room`] first.
    pub fn submit(&mut self, conn: u64, seq: u64, work: Work) {
        self.submit_from(0, conn, seq, work);
    }

    /// [`Dispatcher::submit`] for a connection of front-end `front`: its
    /// reply goes there.
    pub fn submit_from(&mut self, front: usize, conn: u64, seq: u64, work: Work) {
        let id = self.next_id;
        self.next_id += 1;
        let reply_to = self
            .reply_to
            .get(front)
            .unwrap_or(&self.reply_to[0])
            .clone();
        let job = Job {
            id,
            conn,
            seq,
            work,
            reply_to,
        };
        self.enqueue(Entry {
            job,
            crashes: 0,
            avoid: None,
        });
    }

    /// The back-end for a job: an up one with room, by the balancing
    /// policy, other than `avoid` if there is another.
    fn pick(&mut self, avoid: Option<usize>) -> Option<usize> {
        let n = self.slots.len();
        let mut best: Option<usize> = None;
        let mut fallback: Option<usize> = None;
        for i in 0..n {
            let k = (self.next + i) % n;
            let s = &self.slots[k];
            if s.jobs.is_none() || s.in_flight >= BACKEND_QUEUE {
                continue;
            }
            if Some(k) == avoid {
                fallback = Some(k);
                continue;
            }
            best = match (self.balance, best) {
                (_, None) => Some(k),
                (Balance::RoundRobin, b) => b,
                (Balance::LeastBusy, Some(b)) => {
                    if s.in_flight < self.slots[b].in_flight {
                        Some(k)
                    } else {
                        Some(b)
                    }
                }
            };
        }
        let k = best.or(fallback)?;
        self.next = (k + 1) % n;
        Some(k)
    }

    /// Queues `e` behind what already waits, then lets the queue move.
    fn enqueue(&mut self, e: Entry) {
        if self.waiting.is_empty() {
            if let Some(e) = self.place(e) {
                self.waiting.push_back(e);
            }
        } else {
            self.waiting.push_back(e);
            self.pump();
        }
    }

    /// Sends waiting jobs, oldest first, while back-ends can take them.
    fn pump(&mut self) {
        while let Some(e) = self.waiting.pop_front() {
            if let Some(e) = self.place(e) {
                self.waiting.push_front(e);
                return;
            }
        }
    }

    /// Sends `e` to a back-end; gives it back when none can take it.
    fn place(&mut self, e: Entry) -> Option<Entry> {
        loop {
            let Some(k) = self.pick(e.avoid) else {
                return Some(e);
            };
            let slot = &mut self.slots[k];
            let Some(tx) = slot.jobs.as_ref() else {
                return Some(e);
            };
            match tx.try_send(e.job.clone()) {
                Ok(()) => {
                    slot.in_flight += 1;
                    if let Some(b) = self.registry.backends.get(k) {
                        b.in_flight.store(slot.in_flight as u64, Ordering::Relaxed);
                    }
                    let generation = slot.generation;
                    self.in_flight.insert(
                        e.job.id,
                        Placed {
                            backend: k,
                            generation,
                            entry: e,
                        },
                    );
                    return None;
                }
                // Cannot happen (it has fewer than its bound in flight):
                // count it as full.
                Err(TrySendError::Full(_)) => {
                    slot.in_flight = BACKEND_QUEUE;
                }
                // The thread is gone and its report is on the way: it is
                // replaced now, and the report will name the old generation.
                Err(TrySendError::Disconnected(_)) => self.crashed(k),
            }
        }
    }

    /// Takes a reply: `Some` the first time a job is answered, `None` for
    /// a reply nobody waits for (its job was answered or given up).
    pub fn on_reply(&mut self, r: Reply) -> Option<Reply> {
        let p = self.in_flight.get(&r.id)?;
        if (p.backend, p.generation) != (r.backend, r.generation) {
            return None; // not the incarnation that holds it
        }
        self.in_flight.remove(&r.id);
        let slot = &mut self.slots[r.backend];
        if slot.generation == r.generation {
            slot.in_flight = slot.in_flight.saturating_sub(1);
            if let Some(b) = self.registry.backends.get(r.backend) {
                b.in_flight.store(slot.in_flight as u64, Ordering::Relaxed);
            }
        }
        if let Some(b) = self.registry.backends.get(r.backend) {
            b.requests.fetch_add(1, Ordering::Relaxed);
        }
        self.pump();
        Some(r)
    }

    /// Incarnation `generation` of back-end `backend` died running `job`
    /// (a [`FromBackend::Failed`] report). If it is the current one, its
    /// queued jobs go to the others and it is restarted; `job` is sent
    /// again elsewhere, or given up after [`MAX_RETRIES`] retries: the
    /// replies returned (a 503, or a reset) go to their connections.
    pub fn on_failed(&mut self, backend: usize, generation: u64, job: u64) -> Vec<Reply> {
        let Some(slot) = self.slots.get(backend) else {
            return Vec::new();
        };
        if slot.generation == generation && slot.jobs.is_some() {
            self.crashed(backend);
        }
        let mut gave_up = Vec::new();
        let ours = self
            .in_flight
            .get(&job)
            .is_some_and(|p| (p.backend, p.generation) == (backend, generation));
        if ours {
            if let Some(p) = self.in_flight.remove(&job) {
                let mut e = p.entry;
                e.crashes += 1;
                e.avoid = Some(backend);
                if e.crashes > MAX_RETRIES {
                    gave_up.push(give_up(e.job, backend, generation));
                } else {
                    // Older than what waits: first in line.
                    self.waiting.push_front(e);
                }
            }
        }
        self.pump();
        gave_up
    }

    /// The current incarnation of `k` died: retired, its queued jobs sent
    /// elsewhere, and a new one started in its place.
    fn crashed(&mut self, k: usize) {
        self.retire(k);
        if let Some(b) = self.registry.backends.get(k) {
            b.restarts.fetch_add(1, Ordering::Relaxed);
        }
        if self.start_backend(k).is_err() {
            // No thread to be had: it stays down (vnic ctl backend K up
            // tries again).
            if let Some(b) = self.registry.backends.get(k) {
                b.down.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Retires the current incarnation of `k`: it takes nothing more, and
    /// every job queued for it goes elsewhere, except the one it is
    /// running (its reply or failure report still comes, and counts).
    fn retire(&mut self, k: usize) {
        let Some(slot) = self.slots.get_mut(k) else {
            return;
        };
        slot.jobs = None;
        slot.in_flight = 0;
        let running = slot.life.take().map_or(0, |l| l.retire());
        let generation = slot.generation;
        if let Some(b) = self.registry.backends.get(k) {
            b.in_flight.store(0, Ordering::Relaxed);
        }
        let mut resend: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(id, p)| p.backend == k && p.generation == generation && **id != running)
            .map(|(id, _)| *id)
            .collect();
        resend.sort_unstable();
        // Ahead of what waits, in their old order.
        for id in resend.into_iter().rev() {
            if let Some(p) = self.in_flight.remove(&id) {
                self.waiting.push_front(p.entry);
            }
        }
    }

    /// `vnic ctl backend K up|down`.
    pub fn set_up(&mut self, k: usize, up: bool) -> Result<(), String> {
        if k >= self.slots.len() {
            return Err(format!(
                "back-end {k} does not exist (back-ends: 0..{})",
                self.slots.len().saturating_sub(1)
            ));
        }
        if !up {
            if self.slots[k].jobs.is_some() {
                self.retire(k);
                self.pump();
            }
            if let Some(b) = self.registry.backends.get(k) {
                b.down.store(true, Ordering::Relaxed);
            }
            return Ok(());
        }
        if self.slots[k].jobs.is_none() {
            self.start_backend(k).map_err(|e| e.to_string())?;
            self.pump();
        }
        Ok(())
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Requests waiting for a back-end now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Takes every job waiting for a back-end, oldest first. It exists so
    /// a harness with no back-end threads (a dispatcher of 0 back-ends:
    /// the `framing` fuzz target, fuzz/) sees what the forwarders framed
    /// and answers it itself.
    pub fn take_waiting(&mut self) -> Vec<Job> {
        self.waiting.drain(..).map(|e| e.job).collect()
    }
}

/// The answer to a job given up after crashing `backend`: 503 for HTTP,
/// a reset for everything else.
fn give_up(job: Job, backend: usize, generation: u64) -> Reply {
    let http = matches!(job.work, Work::Http { .. });
    Reply {
        id: job.id,
        conn: job.conn,
        seq: job.seq,
        backend,
        generation,
        bytes: if http {
            error_response(Status::ServiceUnavailable)
        } else {
            Vec::new()
        },
        close: true,
        reset: !http,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{unbounded, Receiver};
    use std::time::Duration;

    fn registry(m: usize) -> Arc<Registry> {
        Arc::new(Registry::new("distributor", "round-robin", 1).with_backends(m))
    }

    /// A handler whose back-end k sleeps `delays[k]` ms and echoes.
    fn slow_echo(delays: Vec<u64>) -> Handler {
        Arc::new(move |k, w| {
            std::thread::sleep(Duration::from_millis(delays[k]));
            match w {
                Work::Echo(b) => (b.clone(), false),
                _ => (Vec::new(), false),
            }
        })
    }

    fn collect(d: &mut Dispatcher, rx: &Receiver<FromBackend>, n: usize) -> Vec<Reply> {
        let mut out = Vec::new();
        while out.len() < n {
            match rx
                .recv_timeout(Duration::from_secs(5))
                .expect("reply in time")
            {
                FromBackend::Reply(r) => {
                    if let Some(r) = d.on_reply(r) {
                        out.push(r);
                    }
                }
                FromBackend::Failed {
                    backend,
                    generation,
                    job,
                } => out.extend(d.on_failed(backend, generation, job)),
            }
        }
        out
    }

    #[test]
    fn round_robin_is_strict_order() {
        let (tx, rx) = unbounded();
        let reg = registry(4);
        let mut d = Dispatcher::start(
            4,
            Balance::RoundRobin,
            slow_echo(vec![0; 4]),
            tx,
            reg.clone(),
        )
        .expect("start");
        for i in 0..8 {
            d.submit(1, i, Work::Echo(vec![i as u8]));
        }
        let mut got = collect(&mut d, &rx, 8);
        got.sort_by_key(|r| r.seq);
        let backends: Vec<usize> = got.iter().map(|r| r.backend).collect();
        assert_eq!(backends, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        let served: Vec<u64> = reg.backend_snapshot().iter().map(|b| b.requests).collect();
        assert_eq!(served, vec![2, 2, 2, 2]);
    }

    #[test]
    fn least_busy_avoids_a_slow_backend() {
        let (tx, rx) = unbounded();
        let mut d = Dispatcher::start(
            3,
            Balance::LeastBusy,
            slow_echo(vec![400, 0, 0]),
            tx,
            registry(3),
        )
        .expect("start");
        // One request at a time: back-end 0 gets the first and then stays
        // busy; the fast ones serve everything after it.
        d.submit(1, 0, Work::Echo(vec![0]));
        let mut later = Vec::new();
        for i in 1..20 {
            d.submit(1, i, Work::Echo(vec![i as u8]));
            later.extend(collect(&mut d, &rx, 1));
        }
        later.extend(collect(&mut d, &rx, 1));
        let on_slow = later
            .iter()
            .filter(|r| r.backend == 0 && r.seq != 0)
            .count();
        assert_eq!(on_slow, 0, "the slow back-end got only its first request");
        assert_eq!(later.len(), 20);
    }

    #[test]
    fn failed_backend_work_is_retried_elsewhere() {
        let (tx, rx) = unbounded();
        // Back-end 1 panics on every job.
        let handler: Handler = Arc::new(|k, w| {
            assert!(k != 1, "back-end 1 is broken");
            match w {
                Work::Echo(b) => (b.clone(), false),
                _ => (Vec::new(), false),
            }
        });
        let reg = registry(3);
        let mut d =
            Dispatcher::start(3, Balance::RoundRobin, handler, tx, reg.clone()).expect("start");
        for i in 0..30 {
            d.submit(7, i, Work::Echo(vec![i as u8]));
        }
        let mut got = collect(&mut d, &rx, 30);
        got.sort_by_key(|r| r.seq);
        assert_eq!(got.len(), 30, "nothing lost");
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.bytes, vec![i as u8]);
            assert_ne!(r.backend, 1);
        }
        assert_eq!(d.in_flight(), 0);
        // Each crash started it again (a new generation).
        let b1 = &reg.backend_snapshot()[1];
        assert!(b1.restarts >= 1, "{b1:?}");
        assert_eq!(b1.state, "up");
        // Taken down, it stays down until told.
        d.set_up(1, false).expect("down");
        assert_eq!(reg.backend_snapshot()[1].state, "down");
        d.set_up(1, true).expect("up");
        assert_eq!(reg.backend_snapshot()[1].state, "up");
    }

    #[test]
    fn backend_taken_down_loses_nothing_and_all_down_waits() {
        let (tx, rx) = unbounded();
        let mut d = Dispatcher::start(
            2,
            Balance::RoundRobin,
            slow_echo(vec![50, 50]),
            tx,
            registry(2),
        )
        .expect("start");
        for i in 0..10 {
            d.submit(1, i, Work::Echo(vec![i as u8]));
        }
        d.set_up(0, false).expect("down");
        d.set_up(1, false).expect("down");
        d.submit(1, 10, Work::Echo(vec![10]));
        d.set_up(1, true).expect("up");
        let mut got = collect(&mut d, &rx, 11);
        got.sort_by_key(|r| r.seq);
        let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (0..11).collect::<Vec<u64>>());
        assert!(d.set_up(5, true).is_err());
    }
    /// Handles one message as the distributor does; the reply, if any.
    fn handle(d: &mut Dispatcher, m: FromBackend) -> Vec<Reply> {
        match m {
            FromBackend::Reply(r) => d.on_reply(r).into_iter().collect(),
            FromBackend::Failed {
                backend,
                generation,
                job,
            } => d.on_failed(backend, generation, job),
        }
    }

    /// Every message within `wait` of the last, handled.
    fn drain(d: &mut Dispatcher, rx: &Receiver<FromBackend>, wait: Duration) -> Vec<Reply> {
        let mut out = Vec::new();
        while let Ok(m) = rx.recv_timeout(wait) {
            out.extend(handle(d, m));
        }
        out
    }

    #[test]
    fn a_backend_taken_down_runs_none_of_its_queued_jobs_again() {
        let runs: Arc<Vec<std::sync::atomic::AtomicUsize>> =
            Arc::new((0..20).map(|_| Default::default()).collect());
        let counted = runs.clone();
        let handler: Handler = Arc::new(move |k, w| match w {
            Work::Echo(b) => {
                counted[usize::from(b[0])].fetch_add(1, Ordering::SeqCst);
                if k == 0 {
                    std::thread::sleep(Duration::from_millis(100));
                }
                (b.clone(), false)
            }
            _ => (Vec::new(), false),
        });
        let (tx, rx) = unbounded();
        let mut d =
            Dispatcher::start(2, Balance::RoundRobin, handler, tx, registry(2)).expect("start");
        for i in 0..20u8 {
            d.submit(1, u64::from(i), Work::Echo(vec![i]));
        }
        // Back-end 0 is inside its first job (of ten) when it goes down.
        std::thread::sleep(Duration::from_millis(30));
        d.set_up(0, false).expect("down");
        let mut got = collect(&mut d, &rx, 20);
        // Long enough for the old back-end 0 to work through its queue.
        std::thread::sleep(Duration::from_millis(1200));
        got.extend(drain(&mut d, &rx, Duration::from_millis(50)));
        got.sort_by_key(|r| r.seq);
        let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (0..20).collect::<Vec<u64>>(), "each answered once");
        let counts: Vec<usize> = runs.iter().map(|c| c.load(Ordering::SeqCst)).collect();
        assert_eq!(counts, vec![1; 20], "each request ran exactly once");
    }

    #[test]
    fn a_late_failure_report_does_not_fail_the_successor() {
        let crashed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let once = crashed.clone();
        // `boom` takes 200 ms, then panics the first time.
        let handler: Handler = Arc::new(move |_, w| match w {
            Work::Echo(b) if b == b"boom" => {
                std::thread::sleep(Duration::from_millis(200));
                assert!(once.swap(true, Ordering::SeqCst), "boom");
                (b.clone(), false)
            }
            Work::Echo(b) => (b.clone(), false),
            _ => (Vec::new(), false),
        });
        let (tx, rx) = unbounded();
        let reg = registry(2);
        let mut d =
            Dispatcher::start(2, Balance::RoundRobin, handler, tx, reg.clone()).expect("start");
        d.submit(1, 0, Work::Echo(b"boom".to_vec()));
        std::thread::sleep(Duration::from_millis(50));
        // Back-end 0 is restarted while its old thread still runs `boom`.
        d.set_up(0, false).expect("down");
        d.set_up(0, true).expect("up");
        // Until the old thread's `boom` is over (200 ms, longer on a
        // loaded machine) and its answer came (the run after the crash
        // takes 200 ms more), then a little more for any second answer.
        let mut got = Vec::new();
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while (!crashed.load(Ordering::SeqCst) || got.is_empty())
            && std::time::Instant::now() < give_up
        {
            got.extend(drain(&mut d, &rx, Duration::from_millis(100)));
        }
        got.extend(drain(&mut d, &rx, Duration::from_millis(300)));
        assert!(crashed.load(Ordering::SeqCst), "the old thread crashed");
        assert_eq!(got.len(), 1, "boom answered once: {got:?}");
        assert_eq!(got[0].bytes, b"boom");
        assert_eq!(
            reg.backend_snapshot()[0].state,
            "up",
            "the old thread's failure is not its successor's"
        );
        // The successor serves.
        for i in 1..5 {
            d.submit(1, i, Work::Echo(vec![i as u8]));
        }
        let got = collect(&mut d, &rx, 4);
        assert!(got.iter().any(|r| r.backend == 0), "{got:?}");
    }

    #[test]
    fn a_request_that_always_crashes_its_backend_gets_503_after_three_deaths() {
        let deaths = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = deaths.clone();
        let handler: Handler = Arc::new(move |_, w| match w {
            Work::Http { request, .. } if request.starts_with(b"GET /poison") => {
                counted.fetch_add(1, Ordering::SeqCst);
                panic!("poisoned");
            }
            Work::Http { .. } => (b"fine".to_vec(), false),
            _ => (Vec::new(), false),
        });
        let (tx, rx) = unbounded();
        let reg = registry(2);
        let mut d =
            Dispatcher::start(2, Balance::RoundRobin, handler, tx, reg.clone()).expect("start");
        let http = |path: &str| Work::Http {
            request: format!("GET {path} HTTP/1.1\r\n\r\n").into_bytes(),
            connection: 1,
            processor: 0,
        };
        d.submit(1, 0, http("/poison"));
        let got = collect(&mut d, &rx, 1);
        assert!(
            got[0].bytes.starts_with(b"HTTP/1.1 503 "),
            "{}",
            String::from_utf8_lossy(&got[0].bytes)
        );
        assert!(got[0].close, "503 closes the connection");
        assert_eq!(deaths.load(Ordering::SeqCst), 3, "one try and two retries");
        // Every back-end was restarted and serves.
        assert!(reg.backend_snapshot().iter().all(|b| b.state == "up"));
        for i in 1..5 {
            d.submit(1, i, http("/"));
        }
        let got = collect(&mut d, &rx, 4);
        assert!(got.iter().all(|r| r.bytes == b"fine"));
        assert_eq!(d.in_flight(), 0);
    }

    #[test]
    fn the_waiting_queue_and_the_job_channels_are_bounded() {
        let handler: Handler = Arc::new(|_, w| {
            std::thread::sleep(Duration::from_millis(1));
            match w {
                Work::Echo(b) => (b.clone(), false),
                _ => (Vec::new(), false),
            }
        });
        let (tx, rx) = unbounded();
        let reg = registry(2);
        let d = Arc::new(parking_lot::Mutex::new(
            Dispatcher::start(2, Balance::RoundRobin, handler, tx, reg.clone()).expect("start"),
        ));
        d.lock().set_up(0, false).expect("down");
        d.lock().set_up(1, false).expect("down");
        // 100 clients pipeline 200 KiB of echo each while every back-end is down.
        let mut conns: Vec<(super::super::Forwarder, crate::app::MemSocket)> = (0..100u64)
            .map(|c| {
                let mut sock = crate::app::MemSocket::new(1 << 30);
                sock.push(&vec![c as u8; 200 * 1024]);
                let f = super::super::Forwarder::new(crate::app::AppKind::Echo, c, d.clone());
                (f, sock)
            })
            .collect();
        // Small chunks: the clients' segments come one at a time.
        for (f, s) in conns.iter_mut() {
            crate::app::App::poll(f, s);
        }
        let waiting = d.lock().waiting();
        assert!(
            waiting <= 1024,
            "{waiting} jobs wait with every back-end down"
        );
        d.lock().set_up(0, true).expect("up");
        d.lock().set_up(1, true).expect("up");
        let mut most_in_flight = 0;
        let t = std::time::Instant::now();
        loop {
            assert!(t.elapsed() < Duration::from_secs(30), "stalled");
            for b in reg.backend_snapshot() {
                most_in_flight = most_in_flight.max(b.in_flight);
            }
            let mut delivered = false;
            while let Ok(m) = rx.try_recv() {
                for r in handle(&mut d.lock(), m) {
                    let c = r.conn as usize;
                    crate::app::App::deliver(&mut conns[c].0, r);
                    delivered = true;
                }
            }
            for (f, s) in conns.iter_mut() {
                crate::app::App::poll(f, s);
            }
            if conns.iter().all(|(_, s)| s.tx.len() == 200 * 1024) {
                break;
            }
            if !delivered {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for (c, (_, s)) in conns.iter().enumerate() {
            assert!(s.tx.iter().all(|&b| b == c as u8), "connection {c} intact");
        }
        assert!(
            most_in_flight <= 64,
            "{most_in_flight} jobs queued at one back-end"
        );
    }
    #[test]
    fn other_work_that_always_crashes_is_given_up_with_a_reset() {
        let handler: Handler = Arc::new(|_, w| match w {
            Work::Echo(b) if b == b"poison" => panic!("poisoned"),
            Work::Echo(b) => (b.clone(), false),
            _ => (Vec::new(), false),
        });
        let (tx, rx) = unbounded();
        let reg = registry(1);
        let mut d =
            Dispatcher::start(1, Balance::RoundRobin, handler, tx, reg.clone()).expect("start");
        d.submit(1, 0, Work::Echo(b"poison".to_vec()));
        d.submit(2, 0, Work::Echo(b"fine".to_vec()));
        let mut got = collect(&mut d, &rx, 2);
        got.sort_by_key(|r| r.conn);
        assert!(
            got[0].reset && got[0].close && got[0].bytes.is_empty(),
            "{:?}",
            got[0]
        );
        assert_eq!(got[1].bytes, b"fine");
        assert!(!got[1].reset);
        // One back-end: it died three times, and was started again each time.
        assert_eq!(reg.backend_snapshot()[0].restarts, 3);
        assert_eq!(reg.backend_snapshot()[0].state, "up");
    }

    #[test]
    fn a_connection_refused_room_is_named_once_there_is_room() {
        let (tx, _rx) = unbounded();
        let mut d = Dispatcher::start(1, Balance::RoundRobin, slow_echo(vec![0]), tx, registry(1))
            .expect("start");
        d.set_up(0, false).expect("down");
        for i in 0..MAX_WAITING as u64 {
            assert!(d.has_room());
            d.submit(1, i, Work::Echo(vec![1]));
        }
        assert!(!d.has_room());
        d.want_room(7);
        d.want_room(9);
        d.want_room(7);
        assert!(d.take_starved().is_empty(), "no room yet");
        d.forget(1);
        assert_eq!(
            d.waiting(),
            0,
            "a gone connection's waiting work is dropped"
        );
        assert_eq!(d.take_starved(), vec![7, 9]);
        assert!(d.take_starved().is_empty());
    }
}
