//! A failed processor starts again, as NonStop restarts a failed process
//! and makes it the backup again.
//!
//! The processor's thread outlives the panic that fails it:
//! [`Processor::spawn`] runs the loop under `catch_unwind`, and when it
//! unwinds the thread keeps the `Processor` value — its queue, epoll,
//! doorbell, frame writer, own TAP queue: all that other threads reach it
//! by — and throws away everything its connections left in it
//! ([`Processor::fail`]). Each connection its backup holds a checkpoint of
//! has its flow switched to the backup, which the failure handler tells to
//! take over; the others' flows are dropped, so the RX thread answers
//! their next segment with RST.
//!
//! Until it starts again the processor is dead ([`Processor::lie_dead`]):
//! what reaches its queue is handled as a dead processor loses it — a
//! segment of a connection its backup took goes there, any other is
//! answered with RST, a connection moving in is reset, a request is
//! answered "not here" — and the checkpoints its primaries send are
//! dropped (they were told it is gone). After the policy's delay
//! ([`RestartPolicy`], `--processor-restart`) or at `vnic ctl processor K
//! restart` it runs again with no connection, rejoins the rotation (the
//! failure handler's twin, [`Lifecycle::on_restart`]) and asks its
//! primaries for a resync: each sends a marker and then a full checkpoint
//! of every connection it backs up here (pairs.rs), so that a second
//! failure loses nothing either. The connections its backup took over stay
//! there, protected by that processor's own backup.
//!
//! A crash loop is bounded: after [`MAX_RESTARTS`] restarts within
//! [`RESTART_WINDOW`] it stays failed, and its status says why.

use super::*;
use std::collections::VecDeque;

/// Most automatic restarts of one processor within [`RESTART_WINDOW`];
/// one more failure leaves it failed.
pub const MAX_RESTARTS: usize = 5;

/// See [`MAX_RESTARTS`].
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// The default delay before a failed processor starts again: long enough
/// that a crash loop does not spin, short against a client's patience.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(1);

/// When a failed processor starts again (`--processor-restart`, a config
/// file's `processor_restart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The delay after a failure; None: never by itself (`off`), only at
    /// `vnic ctl processor K restart`.
    pub delay: Option<Duration>,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            delay: Some(DEFAULT_RESTART_DELAY),
        }
    }
}

/// What a processor's thread calls when it fails and when it starts
/// again: the rotation and the flow map are the builder's.
pub struct Lifecycle {
    /// When it starts again.
    pub restart: RestartPolicy,
    /// It failed: out of the rotation, its backups take over.
    pub on_failure: Box<dyn Fn(usize) + Send>,
    /// It runs again: back in the rotation.
    pub on_restart: Box<dyn Fn(usize) + Send>,
}

/// Why a dead processor stops lying dead.
pub(super) enum Wake {
    /// Its delay is over.
    Timer,
    /// `vnic ctl processor K restart`.
    Asked,
    /// vnic stops (or its queue is gone).
    Stop,
}

impl Processor {
    /// Starts the processor's thread. The whole loop is guarded: a panic
    /// outside any connection's work (which costs only that connection)
    /// fails the processor — the panic message goes to its stats
    /// (`failure`, shown by `vnic status`), it is marked down and
    /// `life.on_failure` takes it out of the rotation — and the thread
    /// restarts it as `life.restart` says (see the [module](self)).
    pub fn spawn(
        s: ProcessorSetup,
        life: Lifecycle,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let name = format!("vnic-cpu{}", s.id);
        std::thread::Builder::new().name(name).spawn(move || {
            let mut p = Processor::new(s);
            let Some(mut poll) = p.poll.take() else {
                return;
            };
            p.watch_own_queue(&poll);
            let mut recent: VecDeque<Instant> = VecDeque::new();
            loop {
                let ran = catch_unwind(AssertUnwindSafe(|| p.run_on(&mut poll)));
                let Err(panic) = ran else {
                    return;
                };
                let why = panic_message(panic.as_ref());
                drop(panic);
                let id = p.id;
                log::error!("processor {id} failed: {why}; it left the rotation");
                let cleared = catch_unwind(AssertUnwindSafe(|| p.fail(why))).is_ok();
                (life.on_failure)(id);
                if !cleared {
                    // Not fit to restart: the thread ends and its queue
                    // closes, so the RX threads answer for it.
                    return;
                }
                let now = Instant::now();
                while recent
                    .front()
                    .is_some_and(|&t| now.saturating_duration_since(t) >= RESTART_WINDOW)
                {
                    recent.pop_front();
                }
                let due = p.restart_due(life.restart, recent.len(), now);
                match p.lie_dead(&mut poll, due) {
                    Wake::Stop => return,
                    // The operator's word starts the count afresh.
                    Wake::Asked => recent.clear(),
                    Wake::Timer => {}
                }
                recent.push_back(Instant::now());
                p.restart();
                (life.on_restart)(id);
            }
        })
    }

    /// When a processor that just failed starts again, with `restarts`
    /// restarts in the last [`RESTART_WINDOW`]; its status says it.
    fn restart_due(&self, policy: RestartPolicy, restarts: usize, now: Instant) -> Option<Instant> {
        let (due, note) = match policy.delay {
            _ if self.draining => (None, "vnic is stopping: not restarted".to_string()),
            None => (
                None,
                "not restarted by itself (--processor-restart off): \
                 vnic ctl processor K restart"
                    .to_string(),
            ),
            Some(_) if restarts >= MAX_RESTARTS => {
                log::error!(
                    "processor {} failed {} times within {}s: it stays failed",
                    self.id,
                    restarts + 1,
                    RESTART_WINDOW.as_secs()
                );
                (
                    None,
                    format!(
                        "restarted {restarts} times within {}s: not restarted again \
                         (vnic ctl processor K restart)",
                        RESTART_WINDOW.as_secs()
                    ),
                )
            }
            Some(d) => (Some(now + d), format!("restarting in {d:?}")),
        };
        *self.stats().restart.lock() = Some(note);
        due
    }

    /// The processor failed: everything its connections left goes, each
    /// connection to its backup's care (its flow switched there) or
    /// gone (its flow dropped: the RX thread resets it).
    pub(super) fn fail(&mut self, why: String) {
        {
            let stats = self.stats();
            *stats.failure.lock() = Some(why);
            stats.down.store(true, Ordering::Relaxed);
        }
        let now = Instant::now();
        self.batch_now = None;
        let tuples: Vec<FourTuple> = self.conns.keys().copied().collect();
        for tuple in tuples {
            let Some(c) = self.conns.get_mut(&tuple) else {
                continue;
            };
            let backup = c
                .pair
                .backup
                .filter(|&b| c.pair.mark.is_some() && self.pair.alive(b));
            // The backup keeps its copy: no Forget goes.
            c.pair = pairs::PairState::default();
            let syn_stamp = c.syn_stamp;
            let gone = self.forget(tuple, false);
            match backup {
                Some(b) => self.hand_flow(tuple, syn_stamp, b, now),
                None => self.report_closed(FlowClosed { tuple, syn_stamp }),
            }
            // Its app goes without a word to its peer: that is a failure.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(gone)));
        }
        self.expire_all_parked();
        self.timers.clear();
        self.pending.clear();
        self.backlog.clear();
        self.direct_batch.clear();
        self.listings = sockets::Listings::default();
        // A drain under way ends unanswered: the control server says so.
        self.evacuation = None;
        let stats = &self.registry.processors[self.id];
        self.pair.lose_copies(stats);
        stats.active.store(0, Ordering::Relaxed);
        stats.unfinished.store(0, Ordering::Relaxed);
        // Its backups take over what it checkpointed to them: each copy
        // resends what may be missing at once.
        for b in self.pair.backups() {
            let m = Migration::TakeOver { from: self.id };
            self.send_waiting(b, ToProcessor::Migrate(Box::new(m)), true);
        }
        // Its primaries stop checkpointing to it until it is back (a
        // full queue skips that: what they send meanwhile is dropped).
        for p in self.pair.primaries() {
            let m = Migration::BackupDown { backup: self.id };
            if let Some(q) = self.peers.get(p) {
                let _ = q.try_send(ToProcessor::Migrate(Box::new(m)));
            }
        }
    }

    /// Sends `msg` to processor `to`, waiting for room. Meanwhile its own
    /// checkpoint queue is applied (or dropped when `dead`): the other
    /// may be waiting for room there, and neither must wait for ever.
    pub(super) fn send_waiting(&mut self, to: usize, msg: ToProcessor, dead: bool) {
        let Some(q) = self.peers.get(to).cloned() else {
            return;
        };
        let mut msg = msg;
        loop {
            // Waiting in the channel, not trying again and again: the RX
            // threads refill a busy peer's queue as soon as it has room.
            match q.send_timeout(msg, Duration::from_millis(1)) {
                Err(crossbeam_channel::SendTimeoutError::Timeout(m)) => {
                    msg = m;
                    if dead {
                        // Its own queue must not fill meanwhile: the RX
                        // threads would drop what it forwards.
                        self.pair.drop_pending();
                        if self.wake.is_none() {
                            self.wake = self.take_dead();
                        }
                    } else {
                        self.apply_checkpoints();
                    }
                }
                _ => return,
            }
        }
    }

    /// Switches `tuple`'s flow from this processor to `to`, which holds
    /// it now (its backup took it), and forwards there what of it still
    /// reaches this queue until the RX thread has switched.
    pub(super) fn hand_flow(&mut self, tuple: FourTuple, syn_stamp: u64, to: usize, now: Instant) {
        self.moved.insert(tuple, (to, now));
        let report = FlowReport::Moved {
            flow: FlowClosed { tuple, syn_stamp },
            from: self.id,
            to,
        };
        if let Some(rx) = self.closed.get(report.rx_queue()).or(self.closed.first()) {
            let _ = rx.send(report);
        }
    }

    /// A failed processor's wait until `due` (None: until asked), doing
    /// with its queue what a dead processor's loss does (see the
    /// [module](self)).
    fn lie_dead(&mut self, poll: &mut Poll, due: Option<Instant>) -> Wake {
        let mut events = Events::with_capacity(64);
        let (replies, ctl) = match &self.apps {
            AppSource::Distributor(d) => (Some(d.replies.clone()), Some(d.ctl.clone())),
            AppSource::Local => (None, None),
        };
        loop {
            if let Some(w) = self.wake.take().or_else(|| self.take_dead()) {
                return w;
            }
            // What others ask of it meanwhile: nobody answers.
            while self.socket_queries.try_recv().is_ok() {}
            self.pair.drop_pending();
            if let Some(r) = &replies {
                while r.try_recv().is_ok() {}
            }
            if let Some(c) = &ctl {
                while let Ok((_, answer)) = c.try_recv() {
                    let _ = answer.send(Err(format!("processor {} has failed", self.id)));
                }
            }
            let now = Instant::now();
            self.expire_moved(now);
            if due.is_some_and(|d| now >= d) && !self.draining {
                return Wake::Timer;
            }
            self.bell.going_to_sleep();
            // Its own TAP queue is read once it runs again.
            if self.inbox_waiting(replies.as_ref(), ctl.as_ref()) {
                self.bell.awake();
                continue;
            }
            let wait = due
                .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now))
                .min(Duration::from_secs(1));
            let polled = poll.poll(&mut events, Some(wait));
            self.bell.awake();
            if polled.is_ok() && events.iter().any(|e| e.token() == OWN_QUEUE) {
                // Read once it runs again.
                if let Some(d) = &mut self.direct {
                    d.readable();
                }
            }
        }
    }

    /// Takes what waits in the dead processor's queue (see the
    /// [module](self)); the reason to stop lying dead, if one came.
    fn take_dead(&mut self) -> Option<Wake> {
        loop {
            match self.take_message() {
                Ok(ToProcessor::Shutdown) | Err(TryRecvError::Disconnected) => {
                    return Some(Wake::Stop)
                }
                Ok(ToProcessor::Restart) => return Some(Wake::Asked),
                Ok(ToProcessor::Segment(inb)) => self.dead_segment(inb),
                Ok(ToProcessor::Adopt(a)) => self.refuse_adoption(a),
                Ok(ToProcessor::Migrate(m)) => dead_migration(m),
                Ok(ToProcessor::Serve {
                    protocol,
                    port,
                    app,
                }) => self.set_serve(protocol, port, app),
                Ok(ToProcessor::FlowSwitched(t)) => self.flow_switched(t),
                Ok(ToProcessor::Drain) => self.draining = true,
                Ok(
                    ToProcessor::Datagram(_)
                    | ToProcessor::Up
                    | ToProcessor::Down
                    | ToProcessor::Crash,
                ) => {}
                Err(TryRecvError::Empty) => return None,
            }
        }
    }

    /// A segment reaching the dead processor: on to the processor that
    /// holds its connection now, or answered with RST and its flow
    /// dropped.
    fn dead_segment(&mut self, inb: Inbound) {
        let now = self.clock.now();
        let is_syn = inb.segment.control == Control::Syn && inb.segment.ack.is_none();
        if is_syn && !self.moved.contains_key(&inb.tuple) {
            // Placed here just before it left the rotation: the port's
            // backup, if any, takes it as it would have from the RX thread.
            if let Some(b) = self.pair.live_backup(inb.tuple.local.port()) {
                self.hand_flow(inb.tuple, inb.syn_stamp, b, now);
            }
        }
        let Some(inb) = self.forward_moved(inb) else {
            return;
        };
        if inb.counted_syn {
            if let Some(c) = self.adapter_counters.syn_in_flight.get(self.id) {
                c.fetch_sub(1, Ordering::Relaxed);
            }
            self.count_placed(false);
        }
        let tuple = inb.tuple;
        if let Some(rst) = inb.segment.rst_reply() {
            if self.invalid_replies.allow(now) {
                self.out
                    .send_tcp(inb.peer_mac, tuple.local.ip(), tuple.remote.ip(), &rst);
            }
        }
        if inb.syn_stamp != 0 {
            self.report_closed(FlowClosed {
                tuple,
                syn_stamp: inb.syn_stamp,
            });
        } else {
            for rx in &self.closed {
                let _ = rx.send(FlowReport::NotHeld {
                    tuple,
                    processor: self.id,
                });
            }
        }
        vnic_adapter::pool::recycle(inb.segment.payload.into_buffer());
    }

    /// A connection moved to the processor as it failed: reset, as a
    /// move to a dead processor is.
    fn refuse_adoption(&mut self, a: Box<dyn std::any::Any + Send>) {
        let Ok(a) = a.downcast::<Adoption>() else {
            return;
        };
        let Adoption {
            tuple,
            mut tcp,
            peer_mac,
            syn_stamp,
            ..
        } = *a;
        let now = self.clock.now();
        self.reset_arrival(tuple, &mut tcp, peer_mac, syn_stamp, now);
    }

    /// The failed processor starts again: up, no connection, and its
    /// primaries asked to resync it (see the [module](self)).
    fn restart(&mut self) {
        let stats = &self.registry.processors[self.id];
        *stats.failure.lock() = None;
        *stats.restart.lock() = None;
        stats.restarts.fetch_add(1, Ordering::Relaxed);
        stats.down.store(false, Ordering::Relaxed);
        // What it knew of its backups is stale: one that failed meanwhile
        // asks for its resync when it is back.
        for (b, p) in self.registry.processors.iter().enumerate() {
            self.pair.set_alive(b, p.failure.lock().is_none());
        }
        self.pair.restarted(stats);
        for p in self.pair.primaries() {
            let m = Migration::Resync { backup: self.id };
            // What it drops meanwhile comes before the resync's marker.
            self.send_waiting(p, ToProcessor::Migrate(Box::new(m)), true);
        }
        let cpu = self.id;
        log::warn!("processor {cpu} restarted");
        self.tracer.conn_event(|| format!("cpu={cpu} restarted"));
    }
}

/// A move or takeover request to a failed processor: none can be met.
fn dead_migration(m: Box<dyn std::any::Any + Send>) {
    let Ok(m) = m.downcast::<Migration>() else {
        return;
    };
    match *m {
        Migration::One { answer, .. } => {
            let _ = answer.send(MoveResult::NotHere);
        }
        Migration::Drain { answer, .. } => {
            let _ = answer.send(DrainReport::default());
        }
        // Its copies went with it; its backups are the primaries' concern.
        Migration::TakeOver { .. }
        | Migration::Resend
        | Migration::Resync { .. }
        | Migration::BackupDown { .. } => {}
    }
}
