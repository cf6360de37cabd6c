//! Servicing connections: the app's turn, what TCP sends (at most
//! [`MAX_SEGMENTS_PER_PASS`] a pass), events, timers, and the connections
//! whose apps' descriptors are ready.

use super::pairs::AppSide;
use super::*;
use vnic_stack::Transmit;

impl Processor {
    /// Services each connection one of whose apps' descriptors is ready.
    pub(super) fn on_io(&mut self, events: &Events) {
        let now = self.clock.now();
        for ev in events.iter() {
            if ev.token() == WAKE {
                continue;
            }
            if ev.token() == OWN_QUEUE {
                if let Some(d) = &mut self.direct {
                    d.readable();
                }
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

    /// Services every connection that received segments since the last
    /// call, each once, each guarded like the segments themselves.
    pub(super) fn service_pending(&mut self, now: Instant) {
        let pending = std::mem::take(&mut self.pending);
        for &tuple in &pending {
            if catch_unwind(AssertUnwindSafe(|| self.service(tuple, now))).is_err() {
                self.quarantine(tuple, None);
            }
        }
        self.pending = pending;
        self.pending.clear();
    }

    /// Lets the app run, sends what is due, handles events, re-arms the
    /// timer, and drops the connection once it is closed.
    pub(super) fn service(&mut self, tuple: FourTuple, now: Instant) {
        let stats = &self.registry.processors[self.id];
        let Some(c) = self.conns.get_mut(&tuple) else {
            return;
        };
        c.unserviced = 0;
        c.queued = false;
        self.out.stamp_turn(now, self.taken, self.batches);
        let mut closed = false;
        // The hybrid model's distributor hands a connection off once its
        // handshake is complete (see hybrid.rs).
        let mut established = false;
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
                        established = true;
                        Self::leave_half_open(self.adapter_counters.half_open.get(self.id), c);
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
                        Self::closed_event(stats, &self.tracer, self.id, tuple, c, reason);
                    }
                    _ => readable = true,
                }
            }
            // What the app may change, seen before it runs (process
            // pairs only: see pairs.rs).
            let before = c.pair.mark.map(|_| AppSide::of(&c.tcp));
            if !closed && !c.hold_app {
                let mut view = SocketView {
                    tcp: &mut c.tcp,
                    stats,
                };
                c.app.poll(&mut view);
            }
            // Before anything of this pass leaves (see pairs.rs), unless
            // the backup's copy already holds all a takeover needs.
            if !c.pair.holds_all(c, before) {
                self.pair.checkpoint(tuple, c, stats);
            }
            self.out.set_burst_limit(c.tcp.gso_burst_limit());
            // With offload, a run of new data comes as one large segment
            // the kernel cuts (see Connection::poll_transmit_large).
            let large = self.out.large_send_limit();
            while budget > 0 {
                let large = large.min(budget.saturating_mul(c.tcp.large_piece()));
                let (local, remote) = (tuple.local.ip(), tuple.remote.ip());
                match c.tcp.poll_transmit_borrowed(now, &mut self.spare, large) {
                    None => break,
                    Some(Transmit::Large {
                        header,
                        data,
                        piece,
                    }) => {
                        let len = data[0].len() + data[1].len();
                        budget = budget.saturating_sub(len.div_ceil(piece.max(1)).max(1));
                        self.out
                            .send_tcp_large(c.peer_mac, local, remote, &header, data, piece);
                    }
                    Some(Transmit::Segment(seg)) => {
                        budget -= 1;
                        self.out.send_tcp_burst(c.peer_mac, local, remote, &seg);
                        if self.spare.capacity() == 0 {
                            self.spare = seg.payload.into_buffer();
                        }
                    }
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
        // Parked in TIME-WAIT (time_wait.rs): its pass ends here. Only
        // then is the table looked up again (a park that did not happen).
        let c = if c.tcp.state() == State::TimeWait {
            if self.park(tuple) {
                return;
            }
            let Some(c) = self.conns.get_mut(&tuple) else {
                return;
            };
            c
        } else {
            c
        };
        let stats = &self.registry.processors[self.id];
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
        let hand_off = established && c.hold_app;
        self.memory.recount(c, stats);
        self.compact_timers();
        if hand_off {
            self.hand_off(tuple, now);
        }
    }

    /// A connection closed (`reason`): its counters, its app told, the
    /// trace's line with its totals. Also what parking a connection in
    /// TIME-WAIT does (time_wait.rs): for the app it is closed then.
    pub(super) fn closed_event(
        stats: &ProcessorStats,
        tracer: &Tracer,
        cpu: usize,
        tuple: FourTuple,
        c: &mut Conn,
        reason: CloseReason,
    ) {
        let limit = match reason {
            CloseReason::Idle => Some(&stats.idle_resets),
            CloseReason::ZeroWindow => Some(&stats.zero_window_resets),
            _ => None,
        };
        if let Some(count) = limit {
            count.fetch_add(1, Ordering::Relaxed);
        }
        c.app.on_closed(reason);
        let st = c.tcp.stats();
        tracer.conn_event(|| {
            let what = match reason {
                CloseReason::Normal => "closed",
                CloseReason::Reset => "reset by peer",
                CloseReason::TimedOut => "timed out",
                CloseReason::Aborted => "reset",
                CloseReason::Idle => "reset when idle too long",
                CloseReason::ZeroWindow => "reset after a zero window too long",
            };
            format!(
                "{what} {} > {} cpu={cpu} in={} out={} rtx={} rto={} fast={} \
                 sack-recoveries={} srtt={:?}",
                tuple.remote,
                tuple.local,
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

    /// Rebuilds the timer heap from the connections' own deadlines once
    /// it holds many more entries than there are connections. Entries are
    /// lazy: a connection that moves its deadline earlier, or is gone,
    /// leaves its old entry until its time comes; a connection's idle
    /// timer is ten minutes away, so under short connections the heap held
    /// every connection of the last ten minutes (millions of entries, tens
    /// of bytes each, and a deeper heap for every pop). Rebuilt at twice
    /// the connections, the heap stays within that, each rebuild costing
    /// what the pushes since the last one cost.
    pub(super) fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.conns.len() + TIMER_SLACK {
            return;
        }
        let live: Vec<Reverse<TimerEntry>> = self
            .conns
            .iter()
            .filter_map(|(t, c)| c.armed.map(|at| Reverse(TimerEntry { at, tuple: *t })))
            .collect();
        self.timers = BinaryHeap::from(live);
    }

    pub(super) fn fire_timers(&mut self, now: Instant) {
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
}
