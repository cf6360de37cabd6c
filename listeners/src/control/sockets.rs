//! The requests of NonStop's STATUS ... SOCKET and STATS ... RESET:
//! `sockets` (the socket table of `vnic status --sockets`) and
//! `stats-reset` (`vnic ctl stats reset`), and the impairment counters of
//! `status`.
//!
//! The socket table comes from the processors themselves, each listing
//! its connections in bounded steps between its other work
//! ([`crate::processor::SocketQuery`]); the listeners come from the
//! filter. This thread (the control client's) waits for the rows, turns
//! them into text and sorts them, so the processors only copy numbers.

use super::protocol::{ImpairStatus, Response, SocketRow, SocketState, SocketTable};
use super::server::Runtime;
use crate::processor::{ConnRow, SocketChunk, SocketFilter, SocketQuery};
use crate::stats::rfc3339;
use crossbeam_channel::TrySendError;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use vnic_adapter::filter::Protocol;

/// How long `sockets` waits for a processor to list its connections. A
/// processor lists about a million connections a second between its
/// other work, so this is only reached by one that is stuck.
pub const SOCKETS_TIMEOUT: Duration = Duration::from_secs(5);

impl Runtime {
    /// `sockets`: checks the filters (a one-line error for a bad one), asks
    /// each chosen processor for its connections, and answers the rows:
    /// by processor, its listeners first, then its connections in the
    /// order they were accepted.
    pub(super) fn sockets(
        &self,
        processor: Option<usize>,
        port: Option<u16>,
        state: Option<&str>,
    ) -> Response {
        let state = match state.map(SocketState::parse).transpose() {
            Ok(s) => s,
            Err(e) => return Response::error(e),
        };
        if port == Some(0) {
            return Response::error("port 0: give a port from 1 to 65535");
        }
        let n = self.socket_queries.len();
        let ids: Vec<usize> = match processor {
            Some(k) if k >= n => {
                return Response::error(format!(
                    "processor {k} does not exist (processors: 0..{})",
                    n.saturating_sub(1)
                ))
            }
            Some(k) => vec![k],
            None => (0..n).collect(),
        };
        let filter = SocketFilter { port, state };
        let t0 = Instant::now();
        let (mut conns, missing, notes) = self.collect_connections(&ids, filter);
        let collect_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut listeners = self.listener_rows(&ids, filter);
        let capacity = listeners.values().map(Vec::len).sum::<usize>()
            + conns.values().map(Vec::len).sum::<usize>();
        let mut rows = Vec::with_capacity(capacity);
        for k in ids {
            rows.extend(listeners.remove(&k).unwrap_or_default());
            if let Some(mut c) = conns.remove(&k) {
                c.sort_unstable_by_key(|r| r.connection);
                rows.extend(c.iter().map(|r| conn_row(k, r)));
            }
        }
        Response {
            sockets: Some(SocketTable {
                sample_time: rfc3339(SystemTime::now()),
                collect_ms,
                rows,
                missing,
            }),
            notes,
            ..Response::ok()
        }
    }

    /// Asks processors `ids` for their connections and waits (at most
    /// [`SOCKETS_TIMEOUT`]) for every one's last chunk. Returns the rows
    /// by processor, the processors not listed, and a note for each.
    #[allow(clippy::type_complexity)]
    fn collect_connections(
        &self,
        ids: &[usize],
        filter: SocketFilter,
    ) -> (BTreeMap<usize, Vec<ConnRow>>, Vec<usize>, Vec<String>) {
        let (tx, rx) = crossbeam_channel::unbounded::<SocketChunk>();
        let mut waiting = std::collections::BTreeSet::new();
        let mut missing = Vec::new();
        let mut notes = Vec::new();
        for &k in ids {
            if let Some(why) = self
                .registry
                .processors
                .get(k)
                .and_then(|p| p.failure.lock().clone())
            {
                missing.push(k);
                notes.push(format!("processor {k} has failed ({why}): not listed"));
                continue;
            }
            let Some(q) = self.socket_queries.get(k) else {
                continue;
            };
            let query = SocketQuery {
                filter,
                reply: tx.clone(),
            };
            match q.try_send(query) {
                Ok(()) => {
                    waiting.insert(k);
                }
                Err(TrySendError::Full(_)) => {
                    missing.push(k);
                    notes.push(format!(
                        "processor {k} has too many listings waiting: not listed (try again)"
                    ));
                }
                Err(TrySendError::Disconnected(_)) => {
                    missing.push(k);
                    notes.push(format!("processor {k} has stopped: not listed"));
                }
            }
        }
        // Only the processors hold senders now: if they all go, the wait ends.
        drop(tx);
        let deadline = Instant::now() + SOCKETS_TIMEOUT;
        let mut rows: BTreeMap<usize, Vec<ConnRow>> = BTreeMap::new();
        while !waiting.is_empty() {
            let Ok(chunk) = rx.recv_deadline(deadline) else {
                break;
            };
            rows.entry(chunk.processor).or_default().extend(chunk.rows);
            if chunk.last {
                waiting.remove(&chunk.processor);
            }
        }
        for k in waiting {
            rows.remove(&k);
            missing.push(k);
            notes.push(format!(
                "processor {k} did not list its connections within {}s: not listed",
                SOCKETS_TIMEOUT.as_secs()
            ));
        }
        missing.sort_unstable();
        (rows, missing, notes)
    }

    /// The listeners of processors `ids` that `filter` wants, by
    /// processor: a TCP listener is `LISTEN`, a UDP one `UNCONN`; a
    /// listener is listed in the processor serving it now (its backup
    /// after a takeover), not at all while no processor serves it.
    fn listener_rows(
        &self,
        ids: &[usize],
        filter: SocketFilter,
    ) -> BTreeMap<usize, Vec<SocketRow>> {
        let mut by: BTreeMap<usize, Vec<SocketRow>> = BTreeMap::new();
        for l in self.filter.lock().listing() {
            let Some(p) = l.serving.filter(|p| ids.contains(p)) else {
                continue;
            };
            let (proto, state) = match l.protocol {
                Protocol::Tcp => ("tcp", SocketState::Listen),
                Protocol::Udp => ("udp", SocketState::Unconn),
            };
            if !filter.matches(l.port, None, state) {
                continue;
            }
            by.entry(p).or_default().push(SocketRow {
                proto: proto.into(),
                state: state.label().into(),
                laddr: l.address.map_or_else(|| "*".into(), |a| a.to_string()),
                lport: l.port,
                faddr: "*".into(),
                fport: None,
                send_q: 0,
                recv_q: 0,
                processor: p,
                connection: None,
                cwnd: None,
                cc: None,
                srtt_ms: None,
                rto_ms: None,
                retransmits: None,
                bytes_in: None,
                bytes_out: None,
            });
        }
        by
    }

    /// `stats-reset`: zeroes the counters of the processors, back-ends,
    /// services, adapter and impairment; the gauges stay. The Reset Time
    /// moves to now.
    pub(super) fn reset_stats(&self) -> Response {
        let at = self.registry.reset_counters();
        self.counters.reset();
        if let Some((_, stats)) = &self.impair {
            stats.reset();
        }
        Response {
            notes: vec![format!("counters reset at {}", rfc3339(at.wall))],
            ..Response::ok()
        }
    }

    /// The impairment's counters for `status`, if `--impair` was given.
    pub(super) fn impair_status(&self) -> Option<ImpairStatus> {
        self.impair.as_ref().map(|(spec, s)| ImpairStatus {
            spec: spec.clone(),
            lost: s.lost.load(Ordering::Relaxed),
            duplicated: s.duplicated.load(Ordering::Relaxed),
            reordered: s.reordered.load(Ordering::Relaxed),
        })
    }
}

/// Milliseconds with microsecond precision (short in JSON).
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1e3
}

/// A processor's connection row as the table shows it.
fn conn_row(processor: usize, c: &ConnRow) -> SocketRow {
    SocketRow {
        proto: "tcp".into(),
        state: SocketState::Tcp(c.state).label().into(),
        laddr: c.tuple.local.ip().to_string(),
        lport: c.tuple.local.port(),
        faddr: c.tuple.remote.ip().to_string(),
        fport: Some(c.tuple.remote.port()),
        send_q: c.send_q as u64,
        recv_q: c.recv_q as u64,
        processor,
        connection: Some(c.connection),
        cwnd: Some(c.stats.cwnd as u64),
        cc: Some(c.stats.congestion.name().into()),
        srtt_ms: c.stats.srtt.map(millis),
        rto_ms: Some(millis(c.stats.rto)),
        retransmits: Some(c.stats.segments_retransmitted),
        bytes_in: Some(c.stats.bytes_in),
        bytes_out: Some(c.stats.bytes_out),
    }
}
