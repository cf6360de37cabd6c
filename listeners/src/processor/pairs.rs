//! Process pairs (`--pairs`, a config file's `backup = K`): each
//! processor checkpoints its connections to its backup processor, which
//! takes them over when it fails (NonStop's primary and backup processes).
//!
//! **Granularity: one checkpoint per service of a connection, taken after
//! its app ran and before anything is transmitted** (`Processor::service`
//! calls [`PairLink::checkpoint`] between the app's poll and the first
//! `poll_transmit`). That is the one rule that makes a takeover lossless:
//! the client never sees an ACK for bytes, nor bytes, that the backup's
//! copy does not reflect, because nothing leaves before the checkpoint
//! that covers it is in the backup's queue (an in-process channel: it
//! survives the primary's thread). Establishment, every acknowledged step
//! of either direction and every app state change are services, so each
//! is covered. A checkpoint carries the whole TCP state but only the send
//! data the backup does not hold yet (`vnic_stack::Checkpoint`), so a
//! bulk transfer copies each byte to the backup once. Per-segment or
//! per-ACK checkpoints would cost the same bytes and many more messages;
//! coarser ones (every N ms) would have to hold back ACKs and data until
//! the next one, which a client sees as delay.
//!
//! **Checkpoints a takeover would not need are left out, for apps whose
//! state moves only with their socket** ([`crate::app::App::socket_only`]:
//! echo, discard, chargen, http), once the backup holds a copy
//! ([`PairState::holds_all`]):
//! - a pass in which the app read, queued and closed nothing, and no byte
//!   or FIN of the peer's arrived since the last checkpoint (the
//!   handshake's last ACK, a pure ACK, a window update, the second pass
//!   of a service). The backup's copy already holds everything such a
//!   pass may send: the ACK and window it may announce, the data and FIN
//!   it may send were all decided before that checkpoint. What changed
//!   since (our bytes acknowledged, timers, the congestion state) a
//!   takeover does without: it sends the unacknowledged bytes again, and
//!   the peer acknowledges what it has;
//! - a connection's step into TIME-WAIT: its backup forgets it at the end
//!   of the same service (`park`). Every byte of ours and our FIN were
//!   acknowledged and the peer's FIN arrived, so the older copy has
//!   nothing left to lose: a takeover from it at worst resends an
//!   acknowledged FIN, which the peer answers.
//!
//! A short HTTP connection (`Connection: close`, `bclient connrate`) took
//! 5.5 checkpoints on average (7 when its request came apart from the
//! handshake's ACK); now 2, its SYN's and its request's. An app that acts
//! outside its socket (a relay, a forwarder, a user's handler) keeps a
//! checkpoint per pass: a pass may read its descriptor without touching
//! the socket.
//!
//! The backup applies what reaches it on every turn of its loop and keeps
//! one copy per connection (`Standby`). When the primary's thread dies,
//! its failure handler sends each backup [`Migration::TakeOver`]: the
//! backup applies what is still queued, makes each copy a live connection
//! (`Connection::take_over`: it retransmits what may be missing at once)
//! and restores its app. A segment of such a connection that reaches the
//! backup first (the RX thread sends a dead processor's segments to its
//! backup) takes it over there and then.

use super::*;
use crate::app::AppCheckpoint;
use vnic_adapter::Pairs;
use vnic_stack::{Checkpoint, SendMark};

/// Checkpoints one processor's queue holds before its primaries wait.
pub const CHECKPOINT_QUEUE: usize = 4096;

/// Checkpoints waiting before a primary wakes a sleeping backup to apply
/// them. Waking it for each one cost the primary an eventfd write and the
/// backup a wake-up per service (about 5% and 6% of two threads in a
/// profiled download); the backup applies what waits on every turn of its
/// loop anyway, and all of it before a takeover, so waiting loses nothing
/// but shows as lag.
const WAKE_BACKUP_AT: usize = 64;

/// What a primary sends its backup.
pub enum PairMsg {
    /// A connection's state after a service.
    Checkpoint(Box<Checkpointed>),
    /// The primary no longer holds it (closed, reset, moved): the copy goes.
    Forget {
        /// The connection.
        tuple: FourTuple,
    },
    /// A restarted backup's resync begins here (see restart.rs): the
    /// primary `from` sends a full checkpoint of each connection next, and
    /// whatever it sent before referred to copies the backup lost.
    Resync {
        /// The primary.
        from: usize,
    },
}

/// One checkpoint of one connection.
pub struct Checkpointed {
    /// The connection.
    pub tuple: FourTuple,
    /// The primary.
    pub from: usize,
    /// Its TCP state (the send data the backup lacks).
    pub tcp: Checkpoint,
    /// Its app's state; None when the app has none (the connection is
    /// then reset at a takeover, not resumed).
    pub app: Option<Box<dyn AppCheckpoint>>,
    /// Where its frames go.
    pub peer_mac: [u8; 6],
    /// Its last SYN's stamp.
    pub syn_stamp: u64,
    /// Its connection number.
    pub id: u64,
    /// When the primary sent it (for the lag status shows).
    pub sent: Instant,
}

/// The backup's copy of one connection.
struct Standby {
    from: usize,
    /// Boxed: a checkpoint's box becomes the copy as it is
    /// ([`Checkpoint::apply`]).
    tcp: Box<Connection>,
    app: Option<Box<dyn AppCheckpoint>>,
    peer_mac: [u8; 6],
    syn_stamp: u64,
    id: u64,
}

/// A processor's side of its process pairs: where its checkpoints go,
/// and the copies it keeps for others.
pub struct PairLink {
    id: usize,
    pairs: Arc<Pairs>,
    /// Every processor's checkpoint queue, by number.
    out: Vec<BellSender<PairMsg>>,
    inbox: Receiver<PairMsg>,
    standby: TupleMap<Standby>,
    /// Backups whose queue is gone (their thread died) or that failed
    /// and have not asked for a resync yet: nothing more is sent there.
    dead: Vec<bool>,
    /// Primaries whose [`PairMsg::Resync`] this processor waits for since
    /// it restarted: their checkpoints until then are dropped.
    awaiting: Vec<bool>,
}

/// What a connection carries for its pair.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PairState {
    /// Its backup, if its port has one.
    pub backup: Option<usize>,
    /// What the backup already holds of its send data.
    pub mark: Option<SendMark>,
    /// RCV.NXT in the backup's copy: how far it has taken the peer's
    /// bytes (with its FIN).
    pub rcv_nxt: Option<vnic_stack::SeqNumber>,
}

/// What of its connection an app can change in a poll: the state (a
/// close, an abort), the bytes it has not read, the bytes queued to send.
/// The same after a poll as before it: the app read, queued and closed
/// nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct AppSide(State, usize, usize);

impl AppSide {
    /// `tcp` as its app sees it now.
    pub(super) fn of(tcp: &Connection) -> AppSide {
        AppSide(tcp.state(), tcp.recv_available(), tcp.send_queued())
    }
}

impl PairState {
    /// True when the backup's copy of `c` already holds all that a
    /// takeover needs from this pass, so its checkpoint is left out (see
    /// the [module](self)): the app is socket-only, and either the
    /// connection is entering TIME-WAIT, or nothing the peer could see
    /// is new: the app changed nothing since `before_poll` and no byte or
    /// FIN of the peer's arrived since the copy was made. Events need no
    /// checkpoint of their own: what they tell (established, writable, a
    /// retransmission) the peer does not see, and those it does (data, its
    /// FIN) moved RCV.NXT.
    pub(super) fn holds_all(&self, c: &Conn, before_poll: Option<AppSide>) -> bool {
        self.mark.is_some()
            && c.app.socket_only()
            && (c.tcp.state() == State::TimeWait
                || (before_poll == Some(AppSide::of(&c.tcp))
                    && self.rcv_nxt == Some(c.tcp.progress().0)))
    }
}

impl PairLink {
    /// Processor `id`'s side, with everyone's checkpoint queues and its own.
    pub fn new(
        id: usize,
        pairs: Arc<Pairs>,
        out: Vec<BellSender<PairMsg>>,
        inbox: Receiver<PairMsg>,
    ) -> PairLink {
        let dead = vec![false; out.len()];
        let awaiting = dead.clone();
        PairLink {
            id,
            pairs,
            out,
            inbox,
            standby: TupleMap::default(),
            dead,
            awaiting,
        }
    }

    /// No pairs (a processor built alone, in a test).
    pub fn none(id: usize) -> PairLink {
        let (_, inbox) = crossbeam_channel::bounded(1);
        PairLink::new(id, Arc::new(Pairs::none()), Vec::new(), inbox)
    }

    /// The pair state of a new connection to `port`.
    pub(super) fn state_for(&self, port: u16) -> PairState {
        PairState {
            backup: self
                .pairs
                .backup_of(self.id, port)
                .filter(|&b| b < self.out.len()),
            mark: None,
            rcv_nxt: None,
        }
    }

    /// True when checkpoints wait to be applied.
    pub(super) fn pending(&self) -> bool {
        !self.inbox.is_empty()
    }

    /// Sends the backup the connection's state, before anything of this
    /// service is transmitted (see the [module](self)). Waits while the
    /// backup's queue is full, applying its own queue meanwhile so that
    /// two processors backing each other up never wait on each other.
    pub(super) fn checkpoint(&mut self, tuple: FourTuple, c: &mut Conn, stats: &ProcessorStats) {
        let Some(b) = c.pair.backup else {
            return;
        };
        if self.dead.get(b).copied().unwrap_or(true) {
            return;
        }
        // Busy or unsupported: the copy has no app and is reset at a
        // takeover (a busy one has a reply on its way to this processor
        // only).
        let app = c.app.checkpoint().ok();
        let tcp = c.tcp.checkpoint(c.pair.mark);
        let mark = tcp.mark();
        let bytes = tcp.memory() as u64 + app.as_ref().map_or(0, |a| a.memory() as u64);
        let msg = PairMsg::Checkpoint(Box::new(Checkpointed {
            tuple,
            from: self.id,
            tcp,
            app,
            peer_mac: c.peer_mac,
            syn_stamp: c.syn_stamp,
            id: c.id,
            sent: Instant::now(),
        }));
        // A backup that died leaves this primary unprotected.
        if self.send_to_backup(b, msg, stats, true) {
            c.pair.mark = Some(mark);
            c.pair.rcv_nxt = Some(c.tcp.progress().0);
            stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            stats.checkpoint_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Sends `msg` to backup `b` (`lazy`: ringing its bell only once its
    /// queue fills, as checkpoints do), waiting while the queue is full and
    /// meanwhile applying what this processor's own inbox holds, so two
    /// processors full of each other's checkpoints never wait on each
    /// other. False when the backup is gone (it is marked dead).
    fn send_to_backup(
        &mut self,
        b: usize,
        mut msg: PairMsg,
        stats: &ProcessorStats,
        lazy: bool,
    ) -> bool {
        loop {
            let sent = if lazy {
                self.out[b].try_send_lazy(msg, WAKE_BACKUP_AT)
            } else {
                self.out[b].try_send(msg)
            };
            match sent {
                Ok(()) => return true,
                Err(crossbeam_channel::TrySendError::Full(m)) => {
                    msg = m;
                    stats.checkpoint_waits.fetch_add(1, Ordering::Relaxed);
                    self.apply(stats);
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                    self.dead[b] = true;
                    return false;
                }
            }
        }
    }

    /// Tells the connection's backup it is gone from here.
    pub(super) fn forget(&mut self, tuple: FourTuple, pair: &PairState) {
        let Some(b) = pair.backup.filter(|_| pair.mark.is_some()) else {
            return;
        };
        if self.dead.get(b).copied().unwrap_or(true) {
            return;
        }
        // Forgetting must not be lost or the copy would stay: wait for room.
        if self.out[b].send(PairMsg::Forget { tuple }).is_err() {
            self.dead[b] = true;
        }
    }

    /// Applies every checkpoint waiting; true if there were any.
    pub(super) fn apply(&mut self, stats: &ProcessorStats) -> bool {
        let mut any = false;
        while let Ok(m) = self.inbox.try_recv() {
            any = true;
            match m {
                PairMsg::Forget { tuple } => {
                    self.standby.remove(&tuple);
                }
                PairMsg::Resync { from } => {
                    // Counted when it was waiting for it (a restarted
                    // primary's marker to a backup that went on is not).
                    if let Some(a) = self.awaiting.get_mut(from).filter(|a| **a) {
                        *a = false;
                        stats.resyncs.fetch_add(1, Ordering::Relaxed);
                    }
                }
                PairMsg::Checkpoint(cp) if self.awaiting.get(cp.from).copied().unwrap_or(false) => {
                    // Of a copy lost in this processor's failure.
                }
                PairMsg::Checkpoint(cp) => {
                    let Checkpointed {
                        tuple,
                        from,
                        tcp,
                        app,
                        peer_mac,
                        syn_stamp,
                        id,
                        sent,
                    } = *cp;
                    let lag = sent.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
                    stats.checkpoint_lag_us.store(lag, Ordering::Relaxed);
                    stats
                        .checkpoint_lag_max_us
                        .fetch_max(lag, Ordering::Relaxed);
                    let older = self.standby.remove(&tuple).map(|s| s.tcp);
                    match tcp.apply(older) {
                        Ok(tcp) => {
                            self.standby.insert(
                                tuple,
                                Standby {
                                    from,
                                    tcp,
                                    app,
                                    peer_mac,
                                    syn_stamp,
                                    id,
                                },
                            );
                        }
                        Err(_) => {
                            // A checkpoint was missed: this copy cannot be
                            // trusted, and the connection is not protected.
                            stats.checkpoint_gaps.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        stats
            .standby
            .store(self.standby.len() as u64, Ordering::Relaxed);
        any
    }

    /// Takes the copies of `from`'s connections out (all of them, or the
    /// one `only` names).
    fn take(&mut self, from: Option<usize>, only: Option<FourTuple>) -> Vec<(FourTuple, Standby)> {
        let keys: Vec<FourTuple> = match only {
            Some(t) => vec![t],
            None => self
                .standby
                .iter()
                .filter(|(_, s)| from.is_none_or(|f| s.from == f))
                .map(|(t, _)| *t)
                .collect(),
        };
        keys.into_iter()
            .filter_map(|t| self.standby.remove(&t).map(|s| (t, s)))
            .collect()
    }

    /// True if this processor holds a copy of `tuple`.
    pub(super) fn holds(&self, tuple: &FourTuple) -> bool {
        self.standby.contains_key(tuple)
    }

    /// True if this processor holds any copy.
    pub(super) fn holds_any(&self) -> bool {
        !self.standby.is_empty()
    }

    /// True if checkpoints may go to backup `b` (its thread runs and it
    /// did not fail since its last resync).
    pub(super) fn alive(&self, b: usize) -> bool {
        !self.dead.get(b).copied().unwrap_or(true)
    }

    /// This processor's backup of connections to `port`, if it is alive.
    pub(super) fn live_backup(&self, port: u16) -> Option<usize> {
        self.pairs
            .backup_of(self.id, port)
            .filter(|&b| b < self.out.len() && self.alive(b))
    }

    /// The processors this one checkpoints to.
    pub(super) fn backups(&self) -> Vec<usize> {
        self.pairs.backups_of(self.id)
    }

    /// The processors this one is a backup of.
    pub(super) fn primaries(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .pairs
            .list()
            .into_iter()
            .filter(|&(p, _, b)| b == self.id && p != self.id)
            .map(|(p, _, _)| p)
            .collect();
        v.dedup();
        v
    }

    /// Backup `b` failed (false) or asked for a resync (true).
    pub(super) fn set_alive(&mut self, b: usize, alive: bool) {
        if let Some(d) = self.dead.get_mut(b) {
            *d = !alive;
        }
    }

    /// The copies this processor held went with its failure.
    pub(super) fn lose_copies(&mut self, stats: &ProcessorStats) {
        self.standby.clear();
        stats.standby.store(0, Ordering::Relaxed);
    }

    /// Drops what waits in its checkpoint queue (it is dead).
    pub(super) fn drop_pending(&mut self) {
        while self.inbox.try_recv().is_ok() {}
    }

    /// It starts again with no copy: each primary's checkpoints count
    /// from its resync's marker on, and its own backups hear that its
    /// connections start afresh.
    pub(super) fn restarted(&mut self, stats: &ProcessorStats) {
        self.drop_pending();
        for a in &mut self.awaiting {
            *a = true;
        }
        for b in self.pairs.backups_of(self.id) {
            if self.alive(b) {
                self.send_marker(b, stats);
            }
        }
    }

    /// Sends backup `b` the marker of a resync, waiting for room as a
    /// checkpoint does.
    fn send_marker(&mut self, b: usize, stats: &ProcessorStats) {
        let msg = PairMsg::Resync { from: self.id };
        self.send_to_backup(b, msg, stats, false);
    }
}

impl Processor {
    /// Backup `b` restarted and asks for its copies again: a marker, then
    /// a full checkpoint of every connection it backs up here.
    pub(super) fn resync(&mut self, b: usize) {
        let stats = &self.registry.processors[self.id];
        if b >= self.pair.out.len() || b == self.id {
            return;
        }
        self.pair.set_alive(b, true);
        self.pair.send_marker(b, stats);
        let mut n = 0;
        for (tuple, c) in self.conns.iter_mut() {
            if c.pair.backup == Some(b) && !c.hold_app {
                c.pair.mark = None;
                self.pair.checkpoint(*tuple, c, stats);
                n += 1;
            }
        }
        stats.resync_checkpoints.fetch_add(n, Ordering::Relaxed);
        let cpu = self.id;
        self.tracer
            .conn_event(|| format!("cpu={cpu} resynced backup cpu={b}: {n} connections"));
    }

    /// Applies the checkpoints other processors sent; true if any.
    pub(super) fn apply_checkpoints(&mut self) -> bool {
        let stats = &self.registry.processors[self.id];
        self.pair.apply(stats)
    }

    /// Makes live connections of the copies of `from`'s connections (or
    /// of the one `only` names): its primary died.
    pub(super) fn take_over(&mut self, from: Option<usize>, only: Option<FourTuple>) {
        self.apply_checkpoints();
        let now = self.clock.now();
        let copies = self.pair.take(from, only);
        for (tuple, s) in copies {
            if self.conns.contains_key(&tuple) {
                continue; // it moved here meanwhile: the live one wins
            }
            let Standby {
                from,
                mut tcp,
                app,
                peer_mac,
                syn_stamp,
                id,
            } = s;
            self.stats().takeovers.fetch_add(1, Ordering::Relaxed);
            tcp.take_over(now);
            let Some(app) = app else {
                // Its app had no checkpoint: reset, as a restarted host would.
                tcp.abort();
                while let Some(seg) = tcp.poll_transmit(now) {
                    self.out
                        .send_tcp(peer_mac, tuple.local.ip(), tuple.remote.ip(), &seg);
                }
                self.stats().takeover_resets.fetch_add(1, Ordering::Relaxed);
                self.report_closed(FlowClosed { tuple, syn_stamp });
                continue;
            };
            let adoption = Adoption {
                tuple,
                tcp: *tcp,
                app,
                peer_mac,
                syn_stamp,
                id,
                from,
            };
            if !self.take_in(adoption, None, now) {
                self.stats().takeover_resets.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let cpu = self.id;
            self.tracer.conn_event(|| {
                format!(
                    "took over {} > {} cpu={cpu} from cpu={from} connection={id}",
                    tuple.remote, tuple.local
                )
            });
            if catch_unwind(AssertUnwindSafe(|| self.service(tuple, now))).is_err() {
                self.quarantine(tuple, None);
            }
        }
    }
}
