//! The hybrid listener model (NonStop manual §3-9: "servers inherit the
//! connections"): processor 0, the distributor, is the only listener of
//! every served port. It accepts each connection, never lets its app run,
//! and once the handshake is complete hands it off — a live migration
//! (`migrate.rs`) — to one of the other processors chosen by the policy
//! (least-busy by default, round-robin as an option). From then on the
//! connection's frames go from the adapter straight to that processor: the
//! RX thread's flow entry (and the kernel's flow map with processor queues)
//! name it, and the distributor forwards only what was already queued for
//! it at the hand-off (`forwarded` in its status; nothing after).

use super::*;
use crate::distributor::Balance;

/// The distributor's side of the hybrid model (and the listener's side
/// of the standard model).
pub struct HandOff {
    balance: Balance,
    /// The standard model: the listener may pick itself (it then serves
    /// the connection as any processor would).
    include_self: bool,
    /// Hand-offs to each processor (to count those not taken in yet).
    handed: Vec<u64>,
    /// The round-robin position.
    next: usize,
}

impl HandOff {
    /// A distributor for `processors` processors (itself processor 0).
    pub fn new(balance: Balance, processors: usize) -> HandOff {
        HandOff {
            balance,
            include_self: false,
            handed: vec![0; processors],
            next: 0,
        }
    }

    /// NonStop's standard model (manual §3-2): one listener (LISTNER)
    /// accepts every connection and starts a server for it — a fresh app
    /// instance — in the processors in turn, itself included; from then on
    /// the server does its own socket work in its processor.
    pub fn standard(processors: usize) -> HandOff {
        HandOff {
            include_self: true,
            ..HandOff::new(Balance::RoundRobin, processors)
        }
    }
}

impl Processor {
    /// True if this processor is the hybrid model's distributor: its apps
    /// do not run here.
    pub(super) fn hands_off(&self) -> bool {
        self.hand_off.is_some()
    }

    /// The server processor for the next connection, by the policy: live
    /// ones only; least-busy counts each one's connections and those
    /// handed to it it has not taken in yet, ties going to the first in
    /// line.
    fn pick_server(&mut self) -> Option<usize> {
        let stats = &self.registry.processors;
        let h = self.hand_off.as_mut()?;
        let live: Vec<usize> = (0..h.handed.len())
            .filter(|&k| k != self.id || h.include_self)
            .filter(|&k| {
                stats
                    .get(k)
                    .is_some_and(|p| !p.down.load(Ordering::Relaxed) && p.failure.lock().is_none())
            })
            .collect();
        if live.is_empty() {
            return None;
        }
        let k = match h.balance {
            Balance::RoundRobin => {
                let k = live[h.next % live.len()];
                h.next = h.next.wrapping_add(1);
                k
            }
            Balance::LeastBusy => *live.iter().min_by_key(|&&k| {
                let p = &stats[k];
                let taken = p.moved_in.load(Ordering::Relaxed);
                let coming = h.handed[k].saturating_sub(taken);
                p.active.load(Ordering::Relaxed) + coming
            })?,
        };
        Some(k)
    }

    /// Hands an established connection off to a server processor. When
    /// none can take it (all down, their queues full) it is served here
    /// after all, counted in `hand_off_local`.
    pub(super) fn hand_off(&mut self, tuple: FourTuple, now: Instant) {
        for _ in 0..2 {
            let Some(k) = self.pick_server() else { break };
            if k == self.id {
                // The standard model's listener picked itself.
                if let Some(c) = self.conns.get_mut(&tuple) {
                    c.hold_app = false;
                }
                if catch_unwind(AssertUnwindSafe(|| self.service(tuple, now))).is_err() {
                    self.quarantine(tuple, None);
                }
                return;
            }
            if self.move_out(tuple, k, now) == MoveResult::Moved {
                if let Some(h) = self.hand_off.as_mut() {
                    h.handed[k] += 1;
                }
                return;
            }
        }
        if let Some(c) = self.conns.get_mut(&tuple) {
            c.hold_app = false;
            self.stats().hand_off_local.fetch_add(1, Ordering::Relaxed);
            if catch_unwind(AssertUnwindSafe(|| self.service(tuple, now))).is_err() {
                self.quarantine(tuple, None);
            }
        }
    }
}
