//! Counters shared between the processor threads and whoever reports them
//! (the http app's `GET /stats`, later `vnic status`). Plain atomics: a
//! processor bumps its own counters on the hot path without a lock, readers
//! take a relaxed snapshot.

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One processor's counters.
#[derive(Debug, Default)]
pub struct ProcessorStats {
    /// Connections this processor accepted (SYN taken into SYN-RECEIVED).
    pub accepted: AtomicU64,
    /// Connections it currently holds (any state but CLOSED).
    pub active: AtomicU64,
    /// Of those, the ones in TIME-WAIT, kept as records (the processor's
    /// time_wait.rs): a server that closes first holds one per connection
    /// of the last `--time-wait`, and this says how many of `active` that
    /// is.
    pub time_wait: AtomicU64,
    /// Payload bytes received from clients, in order.
    pub bytes_in: AtomicU64,
    /// Payload bytes the apps queued for clients.
    pub bytes_out: AtomicU64,
    /// Segments retransmitted by this processor's connections.
    pub retransmissions: AtomicU64,
    /// Segments the adapter could not queue for this processor (queue full).
    pub queue_drops: AtomicU64,
    /// True while the processor is down (`vnic ctl processor K down`).
    pub down: AtomicBool,
    /// Connections reset because handling them panicked (a bug, isolated).
    pub panics: AtomicU64,
    /// SYNs refused because the processor holds its maximum of connections.
    pub refused: AtomicU64,
    /// UDP datagrams its UDP listeners received.
    pub datagrams: AtomicU64,
    /// Why the processor's thread died, if it did (the panic message).
    pub failure: parking_lot::Mutex<Option<String>>,
    /// While draining (vnic stopping): connections not yet closed (any
    /// state but TIME-WAIT and CLOSED).
    pub unfinished: AtomicU64,
    /// Replies to invalid segments (ACKs for unacceptable segments,
    /// challenge ACKs, RSTs for segments of no connection) not sent
    /// because the processor's budget for them was spent.
    pub replies_limited: AtomicU64,
    /// Passes over a connection that stopped at the per-pass segment
    /// limit (the connection was serviced again on the next turn).
    pub send_limited: AtomicU64,
    /// Bytes of memory its connections hold now (TCP state, buffers as
    /// allocated, their apps' buffers): what its memory budget counts.
    pub memory: AtomicU64,
    /// Its memory budget in bytes.
    pub memory_budget: AtomicU64,
    /// SYNs refused because its connections held their memory budget.
    pub memory_refused: AtomicU64,
    /// Connections reset to bring its memory back under the budget (those
    /// whose peers held a zero window longest).
    pub memory_resets: AtomicU64,
    /// Connections reset because nothing moved on them for the idle limit.
    pub idle_resets: AtomicU64,
    /// Connections reset because their peers kept a zero window for the
    /// zero-window limit.
    pub zero_window_resets: AtomicU64,
    /// TCP segments and UDP datagrams taken from its queue.
    pub frames_in: AtomicU64,
    /// Connections that moved in from another processor (live migration).
    pub moved_in: AtomicU64,
    /// Connections it moved to another processor.
    pub moved_out: AtomicU64,
    /// Connections reset where they would have moved (an app without a
    /// checkpoint, or one that could not be restored).
    pub migration_resets: AtomicU64,
    /// Segments of connections it had moved away that still reached it
    /// (queued before the flow switched) and that it forwarded.
    pub forwarded: AtomicU64,
    /// The payload bytes of those segments.
    pub forwarded_bytes: AtomicU64,
    /// Segments it could not forward (the new processor's queue was
    /// full): the client sends them again.
    pub forward_drops: AtomicU64,
    /// Checkpoints it sent its backups (process pairs).
    pub checkpoints: AtomicU64,
    /// Bytes those checkpoints carried (send data, state, app state).
    pub checkpoint_bytes: AtomicU64,
    /// Times it waited for room in a backup's checkpoint queue.
    pub checkpoint_waits: AtomicU64,
    /// Checkpoints it received that did not follow the copy it held (a
    /// connection left unprotected).
    pub checkpoint_gaps: AtomicU64,
    /// As a backup: the age of the last checkpoint it applied, in µs
    /// (how far its copies lag behind their primaries).
    pub checkpoint_lag_us: AtomicU64,
    /// As a backup: the largest such age since start (or reset).
    pub checkpoint_lag_max_us: AtomicU64,
    /// As a backup: the connections it holds copies of now.
    pub standby: AtomicU64,
    /// As a backup: connections it took over from a failed primary.
    pub takeovers: AtomicU64,
    /// Of those, the ones it reset (an app without checkpoint).
    pub takeover_resets: AtomicU64,
    /// Times it was started again after a failure (restart.rs).
    pub restarts: AtomicU64,
    /// While failed: when it starts again, or why it does not.
    pub restart: parking_lot::Mutex<Option<String>>,
    /// As a backup: resyncs its primaries sent it since it restarted (a
    /// marker, then a full checkpoint of each connection).
    pub resyncs: AtomicU64,
    /// As a primary: connections it checkpointed in full to a restarted
    /// backup.
    pub resync_checkpoints: AtomicU64,
    /// Connections it handed to their backups when taken down (`vnic ctl
    /// processor K down` with process pairs).
    pub handed_over: AtomicU64,
    /// The hybrid model's distributor: connections it served itself
    /// because no other processor could take them.
    pub hand_off_local: AtomicU64,
}

/// A point-in-time copy of one processor's counters, as `GET /stats` shows it.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ProcessorSnapshot {
    /// The processor's number, 0-based.
    pub id: usize,
    /// See [`ProcessorStats::accepted`].
    pub accepted: u64,
    /// See [`ProcessorStats::active`].
    pub active: u64,
    /// See [`ProcessorStats::bytes_in`].
    pub bytes_in: u64,
    /// See [`ProcessorStats::bytes_out`].
    pub bytes_out: u64,
}

/// One back-end server's counters (distributor model).
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Requests this back-end answered.
    pub requests: AtomicU64,
    /// Requests sent to it and not answered yet.
    pub in_flight: AtomicU64,
    /// True while it is down.
    pub down: AtomicBool,
    /// Times it crashed (a panic in its work) and was started again.
    pub restarts: AtomicU64,
}

/// A point-in-time copy of one back-end's counters, as `GET /stats` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackendSnapshot {
    /// The back-end's number, 0-based.
    pub id: usize,
    /// See [`BackendStats::requests`].
    pub requests: u64,
    /// See [`BackendStats::in_flight`].
    pub in_flight: u64,
    /// "up" or "down".
    pub state: String,
    /// See [`BackendStats::restarts`].
    #[serde(default)]
    pub restarts: u64,
}

/// Counters a [`crate::app::Service`] shows in `vnic status`: a small
/// table, one row per thing it drives (a proxy target, an exec program),
/// each row a flat JSON object of names and numbers or strings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServiceReport {
    /// The rows, in a stable order.
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// A service's report with the port it serves, as `vnic status` gets it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    /// The TCP port.
    pub port: u16,
    /// The service's name (`proxy`, `exec`, ...).
    pub app: String,
    /// Its counters.
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// The counters of every processor plus the labels the reports carry.
#[derive(Debug)]
pub struct Registry {
    /// Listener model label: "monolithic" or "distributor".
    pub model: String,
    /// Filter label: "round-robin" or "none" (changes with `vnic ctl filter`).
    pub filter: RwLock<String>,
    /// One entry per processor, indexed by processor id.
    pub processors: Vec<ProcessorStats>,
    /// Source of the `connection=N` numbers: a global accept counter.
    pub next_connection: AtomicU64,
    /// One entry per back-end (distributor model; empty otherwise).
    pub backends: Vec<BackendStats>,
    /// The services that report counters, by port (see
    /// [`Registry::add_service`]).
    services: RwLock<Vec<(u16, std::sync::Arc<dyn crate::app::Service>)>>,
    /// When the counters were last zeroed, else when the registry was
    /// made (see [`Registry::reset_counters`]).
    reset: parking_lot::Mutex<ResetTime>,
}

impl Registry {
    /// A registry for `n` processors with zeroed counters.
    pub fn new(model: &str, filter: &str, n: usize) -> Registry {
        Registry {
            model: model.to_string(),
            filter: RwLock::new(filter.to_string()),
            processors: (0..n).map(|_| ProcessorStats::default()).collect(),
            next_connection: AtomicU64::new(1),
            backends: Vec::new(),
            services: RwLock::new(Vec::new()),
            reset: parking_lot::Mutex::new(ResetTime::now()),
        }
    }

    /// Lists `service` (serving `port`) in the status reports, if it
    /// reports anything; a service serving several ports is listed once.
    pub fn add_service(&self, port: u16, service: std::sync::Arc<dyn crate::app::Service>) {
        if service.report().is_none() {
            return;
        }
        let mut list = self.services.write();
        if !list
            .iter()
            .any(|(_, s)| std::sync::Arc::ptr_eq(s, &service))
        {
            list.push((port, service));
            list.sort_by_key(|(p, _)| *p);
        }
    }

    /// Every reporting service's counters now, by port.
    pub fn service_status(&self) -> Vec<ServiceStatus> {
        self.services
            .read()
            .iter()
            .filter_map(|(port, s)| {
                s.report().map(|r| ServiceStatus {
                    port: *port,
                    app: s.name().to_string(),
                    rows: r.rows,
                })
            })
            .collect()
    }

    /// The same with `m` back-ends (distributor model).
    pub fn with_backends(mut self, m: usize) -> Registry {
        self.backends = (0..m).map(|_| BackendStats::default()).collect();
        self
    }

    /// A snapshot of every back-end, in id order.
    pub fn backend_snapshot(&self) -> Vec<BackendSnapshot> {
        self.backends
            .iter()
            .enumerate()
            .map(|(id, b)| BackendSnapshot {
                id,
                requests: b.requests.load(Ordering::Relaxed),
                in_flight: b.in_flight.load(Ordering::Relaxed),
                restarts: b.restarts.load(Ordering::Relaxed),
                state: if b.down.load(Ordering::Relaxed) {
                    "down".into()
                } else {
                    "up".into()
                },
            })
            .collect()
    }

    /// The filter label now in force.
    pub fn filter_name(&self) -> String {
        self.filter.read().clone()
    }

    /// Calls `f` with the filter's name without copying it (`GET /` names
    /// it in every response: a copy was an allocation per request).
    pub fn with_filter_name<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        f(&self.filter.read())
    }

    /// Hands out the next connection number (1, 2, 3, ...).
    pub fn connection_number(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// A snapshot of every processor, in id order.
    pub fn snapshot(&self) -> Vec<ProcessorSnapshot> {
        self.processors
            .iter()
            .enumerate()
            .map(|(id, p)| ProcessorSnapshot {
                id,
                accepted: p.accepted.load(Ordering::Relaxed),
                active: p.active.load(Ordering::Relaxed),
                bytes_in: p.bytes_in.load(Ordering::Relaxed),
                bytes_out: p.bytes_out.load(Ordering::Relaxed),
            })
            .collect()
    }
}

// ----- resetting the counters (`vnic ctl stats reset`) --------------------

/// When the counters started counting: the wall clock for people, and a
/// clock that never jumps for the span they cover (rates).
#[derive(Debug, Clone, Copy)]
pub struct ResetTime {
    /// The wall-clock time (NonStop's Reset Time).
    pub wall: std::time::SystemTime,
    /// The same moment on the monotonic clock.
    pub mono: std::time::Instant,
}

impl ResetTime {
    /// Now.
    pub fn now() -> ResetTime {
        ResetTime {
            wall: std::time::SystemTime::now(),
            mono: std::time::Instant::now(),
        }
    }
}

impl ProcessorStats {
    /// Zeroes the counters; the gauges (`active`, `half_open`, `memory`,
    /// `memory_budget`, `unfinished`) and the state (`down`, `failure`)
    /// stay.
    pub fn reset_counters(&self) {
        for c in [
            &self.accepted,
            &self.bytes_in,
            &self.bytes_out,
            &self.retransmissions,
            &self.queue_drops,
            &self.panics,
            &self.refused,
            &self.datagrams,
            &self.replies_limited,
            &self.send_limited,
            &self.memory_refused,
            &self.memory_resets,
            &self.idle_resets,
            &self.zero_window_resets,
            &self.frames_in,
            &self.moved_in,
            &self.moved_out,
            &self.migration_resets,
            &self.forwarded,
            &self.forwarded_bytes,
            &self.forward_drops,
            &self.checkpoints,
            &self.checkpoint_bytes,
            &self.checkpoint_waits,
            &self.checkpoint_gaps,
            &self.checkpoint_lag_max_us,
            &self.takeovers,
            &self.takeover_resets,
            &self.hand_off_local,
            &self.restarts,
            &self.resyncs,
            &self.resync_checkpoints,
            &self.handed_over,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

impl BackendStats {
    /// Zeroes the counters (`requests`, `restarts`); `in_flight` is a
    /// gauge and stays.
    pub fn reset_counters(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.restarts.store(0, Ordering::Relaxed);
    }
}

impl Registry {
    /// Zeroes the counters of every processor, back-end and reporting
    /// service, and makes now the Reset Time; returns it. The adapter's
    /// counters are the caller's (they are not in the registry).
    pub fn reset_counters(&self) -> ResetTime {
        for p in &self.processors {
            p.reset_counters();
        }
        for b in &self.backends {
            b.reset_counters();
        }
        for (_, svc) in self.services.read().iter() {
            svc.reset_counters();
        }
        let now = ResetTime::now();
        *self.reset.lock() = now;
        now
    }

    /// When the counters were last zeroed, else when vnic started.
    pub fn reset_time(&self) -> ResetTime {
        *self.reset.lock()
    }
}

/// `t` as RFC 3339 in UTC with milliseconds (`2024-05-01T12:00:00.123Z`),
/// without a date crate: the days since 1970 to a civil date by Howard
/// Hinnant's `civil_from_days`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod reset_tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day in a century year) 23:59:59.999
        let t = UNIX_EPOCH + Duration::from_millis(951_868_799_999);
        assert_eq!(rfc3339(t), "2000-02-29T23:59:59.999Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.000Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
        assert_eq!(rfc3339(t), "2100-01-01T00:00:00.000Z");
    }

    #[test]
    fn reset_zeroes_counters_and_keeps_gauges() {
        let r = Registry::new("monolithic", "round-robin", 2).with_backends(1);
        let p = &r.processors[1];
        for c in [&p.accepted, &p.bytes_in, &p.frames_in, &p.memory_resets] {
            c.store(5, Ordering::Relaxed);
        }
        p.active.store(3, Ordering::Relaxed);
        p.memory.store(4096, Ordering::Relaxed);
        r.backends[0].requests.store(9, Ordering::Relaxed);
        r.backends[0].in_flight.store(1, Ordering::Relaxed);
        let before = r.reset_time();
        let at = r.reset_counters();
        assert!(at.mono >= before.mono);
        assert_eq!(r.reset_time().mono, at.mono);
        for c in [&p.accepted, &p.bytes_in, &p.frames_in, &p.memory_resets] {
            assert_eq!(c.load(Ordering::Relaxed), 0);
        }
        assert_eq!(p.active.load(Ordering::Relaxed), 3);
        assert_eq!(p.memory.load(Ordering::Relaxed), 4096);
        assert_eq!(r.backends[0].requests.load(Ordering::Relaxed), 0);
        assert_eq!(r.backends[0].in_flight.load(Ordering::Relaxed), 1);
    }
}
