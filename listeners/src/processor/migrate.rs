//! Live migration: a connection leaves this processor for another with
//! its TCP state and its app's checkpoint, and nothing is lost,
//! duplicated or reordered (`vnic ctl connection move`, `vnic ctl
//! processor K drain`, the hybrid model's hand-off).
//!
//! The way of one move, from processor A to B:
//!
//! 1. A takes the app's checkpoint ([`App::checkpoint`]) between polls;
//!    an app without one has its connection reset instead
//!    ([`NoCheckpoint::Unsupported`]), a busy one is left for later.
//! 2. A puts the connection (its `Connection` value itself: same process)
//!    and the checkpoint on B's queue as [`ToProcessor::Adopt`], in the
//!    same queue the RX thread fills, and only then tells the RX thread
//!    ([`FlowReport::Moved`]). So B takes the connection in before any
//!    segment the RX thread sends it for the flow.
//! 3. The RX thread switches the flow entry (and the kernel's flow map
//!    with processor queues) and tells A ([`ToProcessor::FlowSwitched`]).
//!    Until then A forwards to B whatever segment of the flow still
//!    reaches it (they were queued before the switch); a frame read from
//!    A's own TAP queue goes back to the RX thread, which sends it on.
//!    TCP puts the two paths' segments back in order.
//!
//! A segment forwarded or re-sent may overtake another; TCP's reassembly
//! orders them, so the bytes the apps see are exactly the client's.

use super::*;
use crate::app::{AppCheckpoint, NoCheckpoint};
use crossbeam_channel::TrySendError;

/// How long A forwards a moved connection's segments when the RX
/// thread's [`ToProcessor::FlowSwitched`] does not reach it (its queue
/// was full): far longer than a queued frame waits.
const FORWARD_FOR: Duration = Duration::from_secs(10);

/// How long a drained processor keeps moving the connections that reach
/// it after its last one left: a SYN the filter placed on it just before
/// it left the rotation may still be in its queue.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// How long a drain waits for connections it cannot move yet (a busy app,
/// a full queue at every target) before it resets them and goes down.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// A connection on its way to another processor: everything the new one
/// needs to go on with it.
pub struct Adoption {
    /// The connection.
    pub tuple: FourTuple,
    /// Its TCP state, moved whole.
    pub tcp: Connection,
    /// Its app's checkpoint.
    pub app: Box<dyn AppCheckpoint>,
    /// Where its frames go.
    pub peer_mac: [u8; 6],
    /// The stamp of its last SYN: its end removes the flow entry.
    pub syn_stamp: u64,
    /// Its connection number (it keeps it).
    pub id: u64,
    /// The processor it leaves.
    pub from: usize,
}

/// What the control server asks a processor to move.
pub enum Migration {
    /// `vnic ctl connection move`: one connection to processor `to`; the
    /// processor that does not hold it answers [`MoveResult::NotHere`].
    One {
        /// The connection.
        tuple: FourTuple,
        /// Where it goes.
        to: usize,
        /// The outcome.
        answer: Sender<MoveResult>,
    },
    /// Processor `from` died: take over the connections it checkpointed
    /// here (process pairs, see `pairs.rs`). Sent by its failure handler.
    TakeOver {
        /// The failed primary.
        from: usize,
    },
    /// Another link took over (Ethernet failover, `vnic_adapter::link`):
    /// every connection with bytes unacknowledged sends them again at once
    /// (`Connection::take_over`), through the new link, instead of
    /// waiting for its retransmission timer: what left by the failed link
    /// just before it failed was lost there.
    Resend,
    /// Backup `backup` restarted after a failure (restart.rs): its copies
    /// are gone, send them all again.
    Resync {
        /// The restarted backup.
        backup: usize,
    },
    /// Backup `backup` failed: send it nothing until its resync.
    BackupDown {
        /// The failed backup.
        backup: usize,
    },
    /// `vnic ctl processor K drain`: every connection to `targets` in
    /// turn, then down.
    Drain {
        /// The processors that take its connections (live, not itself).
        targets: Vec<usize>,
        /// The outcome, once the processor is down.
        answer: Sender<DrainReport>,
    },
}

/// How one move went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveResult {
    /// The connection is on its new processor.
    Moved,
    /// This processor does not hold it.
    NotHere,
    /// This processor holds it and is the one asked for. Either the move
    /// was asked for where the connection already is, or the control
    /// server's request reached the target after the connection did (the
    /// holder's own answer is then [`MoveResult::Moved`], which wins).
    AlreadyThere,
    /// Its app has no checkpoint: it was reset.
    Reset,
    /// Not now (its app waits for a back-end, or the target's queue is
    /// full): try again.
    Busy(String),
}

/// What a drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections moved to other processors.
    pub moved: u64,
    /// Connections reset (apps without checkpoint, or nothing could take
    /// them within the drain's limit).
    pub reset: u64,
    /// Connections in TIME-WAIT moved with them (time_wait.rs).
    pub time_wait: u64,
}

/// A drain under way.
pub(super) struct Evacuation {
    targets: Vec<usize>,
    next: usize,
    report: DrainReport,
    answer: Sender<DrainReport>,
    /// When the last connection left (the grace period runs from there).
    empty_since: Option<Instant>,
    /// When it gives up on what it could not move.
    limit: Instant,
}

impl Processor {
    /// A connection that arrived here (a move, an adoption) and cannot
    /// stay: reset from here, counted as a migration reset, and its flow
    /// entry goes.
    pub(super) fn reset_arrival(
        &mut self,
        tuple: FourTuple,
        tcp: &mut Connection,
        peer_mac: [u8; 6],
        syn_stamp: u64,
        now: Instant,
    ) {
        tcp.abort();
        while let Some(seg) = tcp.poll_transmit(now) {
            self.out
                .send_tcp(peer_mac, tuple.local.ip(), tuple.remote.ip(), &seg);
        }
        self.stats()
            .migration_resets
            .fetch_add(1, Ordering::Relaxed);
        self.report_closed(FlowClosed { tuple, syn_stamp });
    }

    /// A [`ToProcessor::Migrate`] request.
    pub(super) fn on_migrate(&mut self, req: Box<dyn std::any::Any + Send>) {
        let Ok(req) = req.downcast::<Migration>() else {
            return;
        };
        match *req {
            Migration::One { tuple, to, answer } => {
                let r = self.move_out(tuple, to, self.clock.now());
                let _ = answer.send(r);
            }
            Migration::TakeOver { from } => self.take_over(Some(from), None),
            Migration::Resync { backup } => self.resync(backup),
            Migration::BackupDown { backup } => self.pair.set_alive(backup, false),
            Migration::Resend => {
                let now = Instant::now();
                let due: Vec<FourTuple> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| !c.tcp.is_closed() && c.tcp.send_queued() > 0)
                    .map(|(t, _)| *t)
                    .collect();
                for tuple in due {
                    if let Some(c) = self.conns.get_mut(&tuple) {
                        c.tcp.take_over(now);
                    }
                    if catch_unwind(AssertUnwindSafe(|| self.service(tuple, now))).is_err() {
                        self.quarantine(tuple, None);
                    }
                }
            }
            Migration::Drain { targets, answer } => {
                let now = self.clock.now();
                self.evacuation = Some(Evacuation {
                    targets,
                    next: 0,
                    report: DrainReport::default(),
                    answer,
                    empty_since: None,
                    limit: now + DRAIN_LIMIT,
                });
                self.evacuate(now);
            }
        }
    }

    /// Moves `tuple` to processor `to` (see the [module](self)).
    pub(super) fn move_out(&mut self, tuple: FourTuple, to: usize, now: Instant) -> MoveResult {
        let Some(c) = self.conns.get_mut(&tuple) else {
            return MoveResult::NotHere;
        };
        if to == self.id {
            return MoveResult::AlreadyThere;
        }
        if to >= self.peers.len() {
            return MoveResult::Busy(format!("processor {to} cannot take it"));
        }
        let app = match catch_unwind(AssertUnwindSafe(|| c.app.checkpoint())) {
            Ok(Ok(app)) => app,
            Ok(Err(NoCheckpoint::Busy)) => {
                return MoveResult::Busy("its app waits for a back-end".into())
            }
            Ok(Err(NoCheckpoint::Unsupported)) | Err(_) => {
                self.reset_one(tuple, now);
                self.stats()
                    .migration_resets
                    .fetch_add(1, Ordering::Relaxed);
                return MoveResult::Reset;
            }
        };
        let Some(mut c) = self.forget(tuple, false) else {
            return MoveResult::NotHere;
        };
        let adoption = Adoption {
            tuple,
            tcp: c.tcp,
            app,
            peer_mac: c.peer_mac,
            syn_stamp: c.syn_stamp,
            id: c.id,
            from: self.id,
        };
        match self.peers[to].try_send(ToProcessor::Adopt(Box::new(adoption))) {
            Ok(()) => {}
            Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => {
                // Nothing left here: the connection comes back as it was,
                // with its own app (the checkpoint is dropped unused).
                if let ToProcessor::Adopt(a) = m {
                    if let Ok(a) = a.downcast::<Adoption>() {
                        self.take_in(*a, Some(c.app), now);
                        if catch_unwind(AssertUnwindSafe(|| self.service(tuple, now))).is_err() {
                            self.quarantine(tuple, None);
                        }
                    }
                }
                return MoveResult::Busy(format!("processor {to}'s queue is full or gone"));
            }
        }
        let _ = catch_unwind(AssertUnwindSafe(|| c.app.on_moved()));
        drop(c.app);
        self.moved.insert(tuple, (to, now));
        self.stats().moved_out.fetch_add(1, Ordering::Relaxed);
        let report = FlowReport::Moved {
            flow: FlowClosed {
                tuple,
                syn_stamp: c.syn_stamp,
            },
            from: self.id,
            to,
        };
        if let Some(rx) = self.closed.get(report.rx_queue()).or(self.closed.first()) {
            let _ = rx.send(report);
        }
        let cpu = self.id;
        self.tracer.conn_event(|| {
            format!(
                "moved {} > {} cpu={cpu} to cpu={to} connection={}",
                tuple.remote, tuple.local, c.id
            )
        });
        MoveResult::Moved
    }

    /// A [`ToProcessor::Adopt`]: a connection moving in.
    pub(super) fn on_adopt(&mut self, a: Box<dyn std::any::Any + Send>) {
        let mut a = Some(a);
        if self.adopt_parked(&mut a) {
            self.stats().moved_in.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some(Ok(a)) = a.map(|a| a.downcast::<Adoption>()) {
            let now = self.clock.now();
            let tuple = a.tuple;
            if self.take_in(*a, None, now) {
                self.stats().moved_in.fetch_add(1, Ordering::Relaxed);
            }
            if catch_unwind(AssertUnwindSafe(|| self.service(tuple, now))).is_err() {
                self.quarantine(tuple, None);
            }
        }
    }

    /// Takes a connection in: with `app` (it never left) or from its
    /// checkpoint. A checkpoint that cannot be restored resets it; false
    /// then.
    pub(super) fn take_in(&mut self, a: Adoption, app: Option<Box<dyn App>>, now: Instant) -> bool {
        let Adoption {
            tuple,
            mut tcp,
            app: checkpoint,
            peer_mac,
            syn_stamp,
            id,
            from: _,
        } = a;
        let app = match app {
            Some(app) => Ok(app),
            None => {
                let ctx = self.app_context(tuple, id);
                catch_unwind(AssertUnwindSafe(|| checkpoint.restore(ctx)))
                    .unwrap_or_else(|_| Err(crate::app::Refused("its restore panicked".into())))
            }
        };
        let app = match app {
            Ok(app) => app,
            Err(why) => {
                self.reset_arrival(tuple, &mut tcp, peer_mac, syn_stamp, now);
                let cpu = self.id;
                self.tracer.conn_event(|| {
                    format!(
                        "reset {} > {} cpu={cpu}: its app could not be restored: {why}",
                        tuple.remote, tuple.local
                    )
                });
                return false;
            }
        };
        let mut c = Conn::new(tcp, app, peer_mac, syn_stamp, id);
        c.half_open = c.tcp.state() == State::SynReceived;
        // It counts here now (its old processor gave its place back).
        c.placed = true;
        self.count_placed(true);
        self.hold(tuple, c);
        true
    }

    /// A segment for a connection this processor moved away and the RX
    /// thread still sent here: on to its new processor. Given back if
    /// the connection was not moved from here.
    pub(super) fn forward_moved(&mut self, mut inb: Inbound) -> Option<Inbound> {
        let Some(&(to, _)) = self.moved.get(&inb.tuple) else {
            return Some(inb);
        };
        if inb.counted_syn {
            // Handled here as far as the SYN count goes.
            inb.counted_syn = false;
            if let Some(c) = self.adapter_counters.syn_in_flight.get(self.id) {
                c.fetch_sub(1, Ordering::Relaxed);
            }
            self.count_placed(false);
        }
        let bytes = inb.segment.payload.len() as u64;
        let msg = ToProcessor::Segment(inb);
        let weight = msg.weight();
        let stats = self.stats();
        let sent = match self.peers.get(to) {
            Some(q) => q.try_send_weighed(msg, weight).is_ok(),
            None => false,
        };
        match sent {
            true => {
                stats.forwarded.fetch_add(1, Ordering::Relaxed);
                stats.forwarded_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            // TCP sends it again.
            false => {
                stats.forward_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
        None
    }

    /// [`ToProcessor::FlowSwitched`]: nothing more to forward for `tuple`.
    pub(super) fn flow_switched(&mut self, tuple: FourTuple) {
        self.moved.remove(&tuple);
    }

    /// Forgets forwarding entries whose switch never came through.
    pub(super) fn expire_moved(&mut self, now: Instant) {
        if !self.moved.is_empty() {
            self.moved
                .retain(|_, (_, since)| now.saturating_duration_since(*since) < FORWARD_FOR);
        }
    }

    /// One step of a drain: moves what it can, and once nothing is left
    /// (and the grace period is over) goes down and answers. True while
    /// it is under way.
    pub(super) fn evacuate(&mut self, now: Instant) -> bool {
        let Some(mut ev) = self.evacuation.take() else {
            return false;
        };
        let tuples: Vec<FourTuple> = self.conns.keys().copied().collect();
        for t in tuples {
            if ev.targets.is_empty() {
                break;
            }
            // Each target in turn; a busy one is skipped for this one.
            for _ in 0..ev.targets.len() {
                let to = ev.targets[ev.next % ev.targets.len()];
                ev.next = ev.next.wrapping_add(1);
                match self.move_out(t, to, now) {
                    MoveResult::Moved => {
                        ev.report.moved += 1;
                        break;
                    }
                    MoveResult::Reset => {
                        ev.report.reset += 1;
                        break;
                    }
                    MoveResult::NotHere | MoveResult::AlreadyThere => break,
                    MoveResult::Busy(_) => {}
                }
            }
        }
        if !self.conns.is_empty() {
            ev.empty_since = None;
            if now < ev.limit {
                self.evacuation = Some(ev);
                return true;
            }
            ev.report.reset += self.conns.len() as u64;
        } else {
            let since = *ev.empty_since.get_or_insert(now);
            if now.saturating_duration_since(since) < DRAIN_GRACE {
                self.evacuation = Some(ev);
                return true;
            }
        }
        ev.report.time_wait = self.move_parked(&ev.targets, now);
        self.set_up(false);
        let cpu = self.id;
        let r = ev.report;
        self.tracer.conn_event(|| {
            format!(
                "cpu={cpu} drained: {} moved, {} reset, {} in TIME-WAIT moved; down",
                r.moved, r.reset, r.time_wait
            )
        });
        let _ = ev.answer.send(ev.report);
        false
    }

    /// When a drain under way wants to look again.
    pub(super) fn evacuation_deadline(&self) -> Option<Instant> {
        self.evacuation
            .as_ref()
            .map(|_| self.clock.now() + Duration::from_millis(5))
    }

    /// Resets one connection (its app cannot move) and forgets it.
    pub(super) fn reset_one(&mut self, tuple: FourTuple, now: Instant) {
        if let Some(c) = self.conns.get_mut(&tuple) {
            c.tcp.abort();
            let _ = catch_unwind(AssertUnwindSafe(|| c.app.on_closed(CloseReason::Aborted)));
            while let Some(seg) = c.tcp.poll_transmit(now) {
                self.out
                    .send_tcp(c.peer_mac, tuple.local.ip(), tuple.remote.ip(), &seg);
            }
        }
        self.forget(tuple, true);
    }
}
