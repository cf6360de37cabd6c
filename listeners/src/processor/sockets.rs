//! A processor's part of the socket table (`vnic status --sockets`): its
//! connections as plain rows, taken in bounded steps between its other
//! work, so that listing 100,000 connections never stops a processor
//! from serving for long.
//!
//! The control server sends a [`SocketQuery`] to each processor it asks
//! (a channel of its own beside the frame queue, rung by the same
//! doorbell, so a full frame queue never refuses it). The processor copies
//! the connection table's keys once, in the table's memory order, then on
//! each turn of its loop looks up at most [`ROWS_PER_STEP`] of them (in
//! that order, so the lookups walk memory forwards) and sends their rows
//! back ([`SocketChunk`]); the last chunk says so. A connection gone
//! before its step is left out, one opened after the query is not listed:
//! the table is what the processor held at the request, as far as it
//! still holds it. The server turns the rows into text (addresses, state
//! names): the processor only copies numbers.
//!
//! Measured with 50,000 connections on each of two processors (this
//! 2-core machine, under load): the copy takes 2-3.5 ms of the
//! processor's time once per listing, each step of 512 rows about
//! 0.25 ms, the whole listing 70-200 ms of wall time (docs/CONTROL.md).

use super::*;
use crate::control::protocol::SocketState;
use std::collections::VecDeque;

/// Connections one step of a listing looks at, at most. One row costs a
/// hash lookup and a copy of the connection's counters (a few hundred
/// nanoseconds when the table is out of the cache), so a step stays near
/// a hundred microseconds: one batch of the queue's segments runs between
/// two steps.
pub const ROWS_PER_STEP: usize = 512;

/// Listings requests that may wait for a processor at once (one per
/// control client is [`crate::control::MAX_CLIENTS`]); more are refused
/// as busy.
pub const QUERY_DEPTH: usize = 64;

/// Which sockets a `sockets` request wants; `None` matches all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketFilter {
    /// Only sockets with this local or foreign port.
    pub port: Option<u16>,
    /// Only sockets in this state.
    pub state: Option<SocketState>,
}

impl SocketFilter {
    /// True if a socket with these ports and this state is wanted.
    pub fn matches(&self, lport: u16, fport: Option<u16>, state: SocketState) -> bool {
        self.port.is_none_or(|p| p == lport || fport == Some(p))
            && self.state.is_none_or(|s| s == state)
    }
}

/// One connection as the processor saw it: numbers only (the control
/// server formats them), so a listing costs the processor no allocation
/// per row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnRow {
    /// Its addresses.
    pub tuple: FourTuple,
    /// Its TCP state.
    pub state: State,
    /// Its connection number.
    pub connection: u64,
    /// Bytes queued to send and not yet acknowledged.
    pub send_q: usize,
    /// Bytes received in order, not yet read by the app.
    pub recv_q: usize,
    /// Its counters and congestion state.
    pub stats: vnic_stack::ConnStats,
}

/// Rows of one processor, sent back as a listing goes.
#[derive(Debug)]
pub struct SocketChunk {
    /// The processor.
    pub processor: usize,
    /// Rows of this step (may be empty).
    pub rows: Vec<ConnRow>,
    /// True on the processor's last chunk for the query.
    pub last: bool,
}

/// A `sockets` request to one processor, with where to send the rows.
#[derive(Debug)]
pub struct SocketQuery {
    /// Which connections.
    pub filter: SocketFilter,
    /// Where the chunks go (unbounded: the processor never waits on it).
    pub reply: Sender<SocketChunk>,
}

/// How the control server reaches a processor with socket queries.
pub type SocketQueries = BellSender<SocketQuery>;

/// A listing under way.
pub(super) struct Listing {
    query: SocketQuery,
    tuples: Vec<FourTuple>,
    next: usize,
}

/// The processor's pending listings, oldest first.
#[derive(Default)]
pub(super) struct Listings(VecDeque<Listing>);

impl Processor {
    /// Takes the socket queries that came in and does one step of the
    /// oldest listing; true while listings remain (the loop then does not
    /// sleep).
    pub(super) fn serve_socket_queries(&mut self) -> bool {
        while let Ok(query) = self.socket_queries.try_recv() {
            let tuples: Vec<FourTuple> = self
                .conns
                .keys()
                .chain(self.time_wait.tuples())
                .copied()
                .collect();
            self.listings.0.push_back(Listing {
                query,
                tuples,
                next: 0,
            });
        }
        let Some(l) = self.listings.0.front_mut() else {
            return false;
        };
        let end = (l.next + ROWS_PER_STEP).min(l.tuples.len());
        let mut rows = Vec::with_capacity(end - l.next);
        for t in &l.tuples[l.next..end] {
            let row = match self.conns.get(t) {
                Some(c) => ConnRow {
                    tuple: *t,
                    state: c.tcp.state(),
                    connection: c.id,
                    send_q: c.tcp.send_queued(),
                    recv_q: c.tcp.recv_available(),
                    stats: c.tcp.stats(),
                },
                None => match self.time_wait.row(t) {
                    Some(row) => row,
                    None => continue, // gone since the query
                },
            };
            if l.query.filter.matches(
                t.local.port(),
                Some(t.remote.port()),
                SocketState::Tcp(row.state),
            ) {
                rows.push(row);
            }
        }
        l.next = end;
        let last = end == l.tuples.len();
        // A server that gave up (the client left) dropped its receiver:
        // the listing ends there.
        let sent = l.query.reply.send(SocketChunk {
            processor: self.id,
            rows,
            last,
        });
        if last || sent.is_err() {
            self.listings.0.pop_front();
        }
        !self.listings.0.is_empty() || !self.socket_queries.is_empty()
    }
}
