//! A connection's end and the processor's: forgetting, quarantine after a
//! panic, going down, draining when vnic stops, and the final reset.

use super::*;

impl Processor {
    /// vnic is stopping: accept nothing more, and close every connection
    /// with FIN after what its app has queued (its app sees the close as
    /// any other). What is still open when the drain time is over is reset
    /// by the `Shutdown` that follows.
    pub(super) fn drain(&mut self) {
        self.draining = true;
        let now = self.clock.now();
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
    pub(super) fn count_unfinished(&self) {
        let n = self
            .conns
            .values()
            .filter(|c| !matches!(c.tcp.state(), State::TimeWait | State::Closed))
            .count();
        self.stats().unfinished.store(n as u64, Ordering::Relaxed);
    }

    /// The processor goes down (nothing accepted; every connection its
    /// backup can take is handed over, the others are reset) or comes
    /// back.
    pub(super) fn set_up(&mut self, up: bool) {
        self.stats().down.store(!up, Ordering::Relaxed);
        if !up {
            let backups = self.hand_over();
            // Before the takeovers: a copy of a connection reset here is
            // forgotten at its backup first.
            self.reset_all();
            for b in backups {
                let m = Migration::TakeOver { from: self.id };
                self.send_waiting(b, ToProcessor::Migrate(Box::new(m)), false);
            }
        }
    }

    /// With process pairs, going down is NonStop's planned switch to the
    /// backup: each connection with a live backup gets a last checkpoint,
    /// nothing is sent after it, and its flow goes to the backup, which
    /// takes it over as from a failed primary but without a gap. Returns
    /// the backups that must take over.
    fn hand_over(&mut self) -> Vec<usize> {
        let now = self.clock.now();
        let mut backups: Vec<usize> = Vec::new();
        let tuples: Vec<FourTuple> = self.conns.keys().copied().collect();
        for tuple in tuples {
            let stats = &self.registry.processors[self.id];
            let Some(c) = self.conns.get_mut(&tuple) else {
                continue;
            };
            let Some(b) = c.pair.backup.filter(|&b| self.pair.alive(b)) else {
                continue;
            };
            if c.hold_app || c.tcp.is_closed() {
                continue;
            }
            self.pair.checkpoint(tuple, c, stats);
            if c.pair.mark.is_none() || !self.pair.alive(b) {
                continue; // the backup went meanwhile: reset below
            }
            // The backup keeps its copy: no Forget goes.
            c.pair = pairs::PairState::default();
            let syn_stamp = c.syn_stamp;
            let Some(mut c) = self.forget(tuple, false) else {
                continue;
            };
            let _ = catch_unwind(AssertUnwindSafe(|| c.app.on_moved()));
            drop(c);
            self.hand_flow(tuple, syn_stamp, b, now);
            self.stats().handed_over.fetch_add(1, Ordering::Relaxed);
            if !backups.contains(&b) {
                backups.push(b);
            }
        }
        backups
    }

    /// Forgets a connection's place in the half-open queue: the gauge in
    /// the adapter's counters (the one count of half-open connections,
    /// which the RX threads read to decide on SYN cookies and the status
    /// shows).
    pub(super) fn leave_half_open(gauge: Option<&std::sync::atomic::AtomicU64>, c: &mut Conn) {
        if c.half_open {
            c.half_open = false;
            if let Some(g) = gauge {
                g.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Forgets a connection: out of the table, the half-open queue and the
    /// counters; with `report`, the RX thread is told its flow entry can go.
    pub(super) fn forget(&mut self, tuple: FourTuple, report: bool) -> Option<Conn> {
        let mut c = self.conns.remove(&tuple)?;
        self.pair.forget(tuple, &c.pair);
        if c.placed {
            self.count_placed(false);
        }
        let stats = &self.registry.processors[self.id];
        Self::leave_half_open(self.adapter_counters.half_open.get(self.id), &mut c);
        self.memory.release(c.mem, stats);
        self.by_id.remove(&c.id);
        stats.active.fetch_sub(1, Ordering::Relaxed);
        if report {
            self.report_closed(FlowClosed {
                tuple,
                syn_stamp: c.syn_stamp,
            });
        }
        // Its timer entries stay behind: they count toward a rebuild.
        self.compact_timers();
        Some(c)
    }

    /// Resets and forgets a connection whose handling panicked.
    pub(super) fn quarantine(&mut self, tuple: FourTuple, peer_mac: Option<[u8; 6]>) {
        self.stats().panics.fetch_add(1, Ordering::Relaxed);
        let Some(mut c) = self.forget(tuple, true) else {
            return;
        };
        let _ = catch_unwind(AssertUnwindSafe(|| c.app.on_closed(CloseReason::Aborted)));
        let now = self.clock.now();
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

    /// Resets every connection (the processor is going away).
    pub(super) fn shutdown(&mut self) {
        self.reset_all();
    }

    /// Sends RST on every connection and forgets them all.
    pub(super) fn reset_all(&mut self) {
        let now = self.clock.now();
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
        self.expire_all_parked();
    }
}
