//! The processor's memory budget: what its connections hold, counted
//! after every pass over a connection, and what happens when it is
//! reached (issue 15: a peer could otherwise make every connection hold
//! full buffers for ever).
//!
//! What is counted is what is allocated, not what is filled: each
//! connection's TCP state and buffers ([`Connection::memory`]) and its
//! app's own buffers ([`App::memory`]). The policy, in order:
//!
//! 1. Above half the budget, connections quiet for a second give back the
//!    buffer memory they do not use ([`Connection::trim`]), once a second.
//! 2. At the budget, new connections are refused (the SYN gets RST,
//!    counted in `memory_refused`), and every connection gives back what
//!    it does not use.
//! 3. Still above it, the connections whose peers have held a zero window
//!    longest (their data waits in our send buffer however they answer our
//!    probes) are reset, oldest first, until the budget holds again
//!    (counted in `memory_resets`). A connection that moves data is never
//!    reset for memory: the budget bounds what idle holders can take.
//!
//! Steps 2 and 3 run at most every [`RELIEF_EVERY`], so a processor that
//! stays over its budget (nothing left to reset) does not rescan its
//! connections at every turn.

use super::*;

/// How often the quiet connections are trimmed while above half the budget.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A connection on which nothing moved for this long gives back its unused
/// buffer memory in a sweep (a transfer that pauses for less keeps its
/// buffers, so it does not reallocate at every burst).
const QUIET: Duration = Duration::from_secs(1);

/// How often, at most, a processor over its budget trims everything and
/// resets zero-window holders.
const RELIEF_EVERY: Duration = Duration::from_millis(100);

/// The default budget of all processors together (`--memory-budget`),
/// split evenly between them: 1 GiB, room for about 1,600 connections that
/// each hold full 256 KiB send and receive buffers and 128 KiB of relay
/// buffers, or a hundred thousand quiet ones.
pub const DEFAULT_MEMORY_BUDGET: usize = 1 << 30;

/// What a processor's connections may hold, and hold now.
pub(super) struct Budget {
    limit: usize,
    held: usize,
    next_sweep: Option<Instant>,
    next_relief: Option<Instant>,
    /// Whether it was at its limit when last looked at (the log says when
    /// that changes, not at every refused SYN).
    was_exhausted: bool,
}

impl Budget {
    pub(super) fn new(limit: usize) -> Budget {
        Budget {
            limit,
            held: 0,
            next_sweep: None,
            next_relief: None,
            was_exhausted: false,
        }
    }

    /// A connection now holds `now` bytes instead of what `c` recorded.
    pub(super) fn recount(&mut self, c: &mut Conn, stats: &ProcessorStats) {
        let now = c.tcp.memory() + c.app.memory() + std::mem::size_of::<Conn>();
        self.held = self.held - c.mem + now;
        c.mem = now;
        stats.memory.store(self.held as u64, Ordering::Relaxed);
    }

    /// A connection that held `bytes` is gone.
    pub(super) fn release(&mut self, bytes: usize, stats: &ProcessorStats) {
        self.held = self.held.saturating_sub(bytes);
        stats.memory.store(self.held as u64, Ordering::Relaxed);
    }

    /// True when new connections are refused.
    pub(super) fn exhausted(&self) -> bool {
        self.held >= self.limit
    }

    /// When the thread must wake for the budget's sake, if ever.
    pub(super) fn deadline(&self) -> Option<Instant> {
        if self.held > self.limit / 2 {
            self.next_sweep
        } else {
            None
        }
    }
}

impl Processor {
    /// True when a new connection must be refused for memory (counted).
    pub(super) fn refuse_for_memory(&self) -> bool {
        let refuse = self.memory.exhausted();
        if refuse {
            self.stats().memory_refused.fetch_add(1, Ordering::Relaxed);
        }
        refuse
    }

    /// The budget's turn: steps 1 to 3 of the policy, each when it is
    /// due. The thread's loop calls it every turn; it is public for tests
    /// and for callers that drive the processor with
    /// [`Processor::on_inbound`] themselves.
    pub fn keep_budget(&mut self, now: Instant) {
        let limit = self.memory.limit;
        let exhausted = self.memory.exhausted();
        if exhausted != self.memory.was_exhausted {
            self.memory.was_exhausted = exhausted;
            if exhausted {
                log::warn!(
                    "processor {}: its connections hold {} bytes, its memory budget: new \
                     connections are refused",
                    self.id,
                    self.memory.held
                );
            } else {
                log::info!("processor {}: back under its memory budget", self.id);
            }
        }
        if self.memory.held > limit && self.memory.next_relief.is_none_or(|t| now >= t) {
            self.memory.next_relief = Some(now + RELIEF_EVERY);
            self.trim_connections(now, Duration::ZERO);
            if self.memory.held > limit {
                self.reset_zero_window_holders(now);
            }
        }
        if self.memory.held > limit / 2 {
            match self.memory.next_sweep {
                Some(t) if now < t => {}
                Some(_) => {
                    self.memory.next_sweep = Some(now + SWEEP_EVERY);
                    self.trim_connections(now, QUIET);
                }
                None => self.memory.next_sweep = Some(now + SWEEP_EVERY),
            }
        } else {
            self.memory.next_sweep = None;
        }
    }

    /// Gives back the unused buffer memory of every connection on which
    /// nothing moved for `quiet`.
    fn trim_connections(&mut self, now: Instant, quiet: Duration) {
        let stats = &self.registry.processors[self.id];
        for c in self.conns.values_mut() {
            if now.saturating_duration_since(c.tcp.last_progress()) >= quiet {
                c.tcp.trim();
                c.app.trim();
                self.memory.recount(c, stats);
            }
        }
    }

    /// Resets the connections whose peers have held a zero window longest
    /// until the budget holds.
    fn reset_zero_window_holders(&mut self, now: Instant) {
        let mut holders: Vec<(Instant, FourTuple)> = self
            .conns
            .iter()
            .filter_map(|(t, c)| c.tcp.zero_window_since().map(|since| (since, *t)))
            .collect();
        holders.sort_unstable_by_key(|&(since, _)| since);
        let before = self.stats().memory_resets.load(Ordering::Relaxed);
        for (since, tuple) in holders {
            if self.memory.held <= self.memory.limit {
                break;
            }
            let Some(c) = self.conns.get_mut(&tuple) else {
                continue;
            };
            c.tcp.abort();
            self.stats().memory_resets.fetch_add(1, Ordering::Relaxed);
            let cpu = self.id;
            self.tracer.conn_event(|| {
                format!(
                    "reset for memory {} > {} cpu={cpu}: zero window for {:?}",
                    tuple.remote,
                    tuple.local,
                    now.saturating_duration_since(since)
                )
            });
            if catch_unwind(AssertUnwindSafe(|| self.service(tuple, now))).is_err() {
                self.quarantine(tuple, None);
            }
        }
        let reset = self.stats().memory_resets.load(Ordering::Relaxed) - before;
        if reset > 0 {
            log::warn!(
                "processor {}: reset {reset} connection(s) whose peers held a zero window \
                 longest, to keep its memory budget",
                self.id
            );
        }
    }
}
