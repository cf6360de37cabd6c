//! Connections in TIME-WAIT, parked as records (`vnic_stack::TimeWait`)
//! instead of whole connections.
//!
//! A server that closes first (HTTP with `Connection: close`) holds one
//! TIME-WAIT connection per connection of the last 2 MSL. As whole
//! connections they cost 1.7 KB each in the connection table (sized for
//! the largest entry) plus their app and a timer-heap entry, made the
//! table every lookup probes a hundred times larger than the live
//! connections, and counted against `max_connections`. Parked, each is a
//! record of about 150 bytes in a table of its own, expiring in the order
//! parked (one `--time-wait` per port, so a queue, not a heap), and no
//! longer counted against the connection limit: like Linux's
//! `tcp_max_tw_buckets`, at most as many records as connections are kept,
//! the oldest giving way.
//!
//! The connection is parked at the end of the service that took it to
//! TIME-WAIT (its last ACK sent): the app is told it closed, the trace
//! says so, the pair's backup forgets its copy and least-connections no
//! longer counts it. Its flow stays with this processor until the record
//! expires (then `FlowClosed` goes to the RX thread, as a closed connection
//! does), so a retransmitted FIN is still answered here, and a SYN that
//! RFC 6191 lets reopen the tuple becomes a new connection here.
//!
//! A drain (`vnic ctl processor K drain`) moves the records with the
//! connections ([`Processor::move_parked`]): each goes to one of the
//! drain's targets with its remaining wait, and its flow with it, so a
//! retransmitted FIN still meets its TIME-WAIT there and is answered with
//! its ACK, not with RST.

use super::*;
use std::collections::VecDeque;
use vnic_stack::TimeWait;

/// A connection in TIME-WAIT: its record and what its frames need.
pub(super) struct Parked {
    tw: TimeWait,
    peer_mac: [u8; 6],
    syn_stamp: u64,
    id: u64,
}

/// A parked connection on its way to another processor (a drain), in a
/// [`ToProcessor::Adopt`] as a moving connection is.
pub(super) struct ParkedMove {
    tuple: FourTuple,
    parked: Parked,
}

/// The processor's parked connections.
#[derive(Default)]
pub(super) struct TimeWaitTable {
    map: TupleMap<Parked>,
    /// Expiries in the order parked. Lazy: a wait restarted by a
    /// retransmitted FIN goes to the back when its old entry comes up.
    order: VecDeque<(Instant, FourTuple)>,
}

impl TimeWaitTable {
    /// Connections parked now.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// True if `tuple` is parked here.
    pub(super) fn contains(&self, tuple: &FourTuple) -> bool {
        self.map.contains_key(tuple)
    }

    /// When the oldest record may expire.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.order.front().map(|&(at, _)| at)
    }

    /// The parked connections' tuples (the socket table lists them).
    pub(super) fn tuples(&self) -> impl Iterator<Item = &FourTuple> {
        self.map.keys()
    }

    /// A parked connection's row for the socket table.
    pub(super) fn row(&self, tuple: &FourTuple) -> Option<sockets::ConnRow> {
        self.map.get(tuple).map(|p| sockets::ConnRow {
            tuple: *tuple,
            state: State::TimeWait,
            connection: p.id,
            send_q: 0,
            recv_q: 0,
            stats: vnic_stack::ConnStats::default(),
        })
    }
}

impl Processor {
    /// Parks a connection that reached TIME-WAIT with nothing left to
    /// send; false (and nothing done) if it is not there yet.
    pub(super) fn park(&mut self, tuple: FourTuple) -> bool {
        let Some(tw) = self.conns.get(&tuple).and_then(|c| c.tcp.time_wait()) else {
            return false;
        };
        if self.time_wait.len() >= self.max_connections.max(1) {
            self.expire_oldest();
        }
        let Some(mut c) = self.forget(tuple, false) else {
            return false;
        };
        let stats = &self.registry.processors[self.id];
        Self::closed_event(
            stats,
            &self.tracer,
            self.id,
            tuple,
            &mut c,
            CloseReason::Normal,
        );
        self.stats().active.fetch_add(1, Ordering::Relaxed);
        self.stats().time_wait.fetch_add(1, Ordering::Relaxed);
        self.time_wait.order.push_back((tw.expires(), tuple));
        self.time_wait.map.insert(
            tuple,
            Parked {
                tw,
                peer_mac: c.peer_mac,
                syn_stamp: c.syn_stamp,
                id: c.id,
            },
        );
        true
    }

    /// A segment for a parked connection: answered as TIME-WAIT answers,
    /// or a new incarnation accepted. False if the tuple is not parked.
    pub(super) fn on_parked(&mut self, now: Instant, inb: &Inbound) -> bool {
        let tuple = inb.tuple;
        let Some(p) = self.time_wait.map.get_mut(&tuple) else {
            return false;
        };
        match p
            .tw
            .on_segment(now, &inb.segment, &mut self.invalid_replies)
        {
            Disposition::Handled => {
                if let Some(seg) = p.tw.poll_transmit(now) {
                    // Its turn, as every frame a processor sends carries.
                    self.out.stamp_turn(now, self.taken, self.batches);
                    self.out
                        .send_tcp(p.peer_mac, tuple.local.ip(), tuple.remote.ip(), &seg);
                }
            }
            Disposition::Reincarnate => {
                let stamp = if inb.syn_stamp != 0 {
                    inb.syn_stamp
                } else {
                    p.syn_stamp
                };
                self.unpark(tuple);
                self.accept(now, tuple, &inb.segment, inb.peer_mac, stamp);
            }
        }
        true
    }

    /// Moves every parked connection to `targets` in turn (a drain); returns
    /// how many went. One whose target's queue is full stays (and goes
    /// with the processor).
    pub(super) fn move_parked(&mut self, targets: &[usize], now: Instant) -> u64 {
        let tuples: Vec<FourTuple> = self.time_wait.map.keys().copied().collect();
        let mut moved = 0;
        for (i, tuple) in tuples.into_iter().enumerate() {
            let Some(&to) = targets.get(i % targets.len().max(1)) else {
                break;
            };
            if to >= self.peers.len() || to == self.id {
                continue;
            }
            let Some(parked) = self.unpark(tuple) else {
                continue;
            };
            let syn_stamp = parked.syn_stamp;
            let msg = ToProcessor::Adopt(Box::new(ParkedMove { tuple, parked }));
            let Some(q) = self.peers.get(to) else {
                continue;
            };
            match q.try_send(msg) {
                Ok(()) => {
                    self.hand_flow(tuple, syn_stamp, to, now);
                    moved += 1;
                }
                Err(
                    crossbeam_channel::TrySendError::Full(m)
                    | crossbeam_channel::TrySendError::Disconnected(m),
                ) => {
                    if let ToProcessor::Adopt(a) = m {
                        if let Ok(pm) = a.downcast::<ParkedMove>() {
                            let ParkedMove { tuple, parked } = *pm;
                            self.repark(tuple, parked);
                        }
                    }
                }
            }
        }
        moved
    }

    /// A parked connection moving in ([`Processor::move_parked`]); false if
    /// `a` is something else.
    pub(super) fn adopt_parked(&mut self, a: &mut Option<Box<dyn std::any::Any + Send>>) -> bool {
        let Some(b) = a.take() else {
            return false;
        };
        match b.downcast::<ParkedMove>() {
            Ok(pm) => {
                if self.time_wait.len() >= self.max_connections.max(1) {
                    self.expire_oldest();
                }
                let ParkedMove { tuple, parked } = *pm;
                self.repark(tuple, parked);
                true
            }
            Err(other) => {
                *a = Some(other);
                false
            }
        }
    }

    /// Parks a record, in the expiry order, with its wait as it is.
    fn repark(&mut self, tuple: FourTuple, p: Parked) {
        let at = p.tw.expires();
        let order = &mut self.time_wait.order;
        let i = order.partition_point(|&(t, _)| t <= at);
        order.insert(i, (at, tuple));
        self.time_wait.map.insert(tuple, p);
        self.stats().active.fetch_add(1, Ordering::Relaxed);
        self.stats().time_wait.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops a parked connection without reporting its flow (it goes on).
    fn unpark(&mut self, tuple: FourTuple) -> Option<Parked> {
        let p = self.time_wait.map.remove(&tuple)?;
        self.stats().active.fetch_sub(1, Ordering::Relaxed);
        self.stats().time_wait.fetch_sub(1, Ordering::Relaxed);
        Some(p)
    }

    /// Ends the waits that are over: each record goes and the RX thread
    /// is told its flow entry can go.
    pub(super) fn expire_time_wait(&mut self, now: Instant) {
        while let Some(&(at, tuple)) = self.time_wait.order.front() {
            if at > now {
                break;
            }
            self.time_wait.order.pop_front();
            let Some(p) = self.time_wait.map.get(&tuple) else {
                continue; // reopened or expired already
            };
            if p.tw.expires() > at {
                // Restarted by a retransmitted FIN.
                self.time_wait.order.push_back((p.tw.expires(), tuple));
                continue;
            }
            self.expire_parked(tuple);
        }
    }

    /// The table is full: the oldest record gives way.
    fn expire_oldest(&mut self) {
        while let Some((_, tuple)) = self.time_wait.order.pop_front() {
            if self.time_wait.map.contains_key(&tuple) {
                self.expire_parked(tuple);
                return;
            }
        }
    }

    fn expire_parked(&mut self, tuple: FourTuple) {
        if let Some(p) = self.unpark(tuple) {
            self.report_closed(FlowClosed {
                tuple,
                syn_stamp: p.syn_stamp,
            });
        }
    }

    /// Every parked connection goes (the processor resets all or stops).
    pub(super) fn expire_all_parked(&mut self) {
        let tuples: Vec<FourTuple> = self.time_wait.map.keys().copied().collect();
        for t in tuples {
            self.expire_parked(t);
        }
        self.time_wait.order.clear();
    }
}
