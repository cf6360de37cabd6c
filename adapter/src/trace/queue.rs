//! The queue between the hot path and the trace writer: at most a fixed
//! number of records, but memory only for the records waiting.
//!
//! A `crossbeam_channel::bounded` queue allocates and writes every slot
//! when it is made: with [`QUEUE_RECORDS`](super::QUEUE_RECORDS) slots of
//! a ~300-byte [`Msg`] that was 20 MiB resident from the start of every
//! vnic, traced or not (issue 16: two thirds of the resident memory at
//! start). This is crossbeam's list channel (blocks of slots allocated as
//! records arrive, freed as the writer drains them) with the same bound
//! on the number of records waiting.

use super::Msg;
use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};
use std::time::Duration;

/// The sending side: what [`Tracer`](super::Tracer) and the hot path hold.
pub(crate) struct TraceQueue {
    tx: Sender<Msg>,
    /// Records that may wait at most.
    limit: usize,
}

/// A queue holding at most `limit` records (at least one), and its
/// receiving end for the writer thread.
pub(crate) fn trace_queue(limit: usize) -> (TraceQueue, Receiver<Msg>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let limit = limit.max(1);
    (TraceQueue { tx, limit }, rx)
}

impl TraceQueue {
    /// True when `limit` records wait: a new one would be lost.
    pub(crate) fn is_full(&self) -> bool {
        self.tx.len() >= self.limit
    }

    /// Queues `msg` unless the queue is full or the writer is gone.
    // The same signature as crossbeam's own: the record comes back so its
    // buffer can be recycled (boxing it would allocate on the lost path).
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_send(&self, msg: Msg) -> Result<(), TrySendError<Msg>> {
        if self.is_full() {
            return Err(TrySendError::Full(msg));
        }
        self.tx.try_send(msg)
    }

    /// Queues a control message, waiting up to `timeout` for room.
    // The same signature as crossbeam's own: the record comes back so its
    // buffer can be recycled (boxing it would allocate on the lost path).
    #[allow(clippy::result_large_err)]
    pub(crate) fn send_timeout(
        &self,
        msg: Msg,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<Msg>> {
        let until = std::time::Instant::now() + timeout;
        while self.is_full() {
            if std::time::Instant::now() >= until {
                return Err(SendTimeoutError::Timeout(msg));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.tx.send_timeout(msg, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn conn(text: &str) -> Msg {
        Msg::Conn {
            when: SystemTime::UNIX_EPOCH,
            text: text.to_string(),
        }
    }

    #[test]
    fn holds_at_most_its_limit_and_takes_more_once_drained() {
        let (q, rx) = trace_queue(3);
        for i in 0..3 {
            assert!(q.try_send(conn(&i.to_string())).is_ok());
        }
        assert!(q.is_full());
        assert!(matches!(q.try_send(conn("x")), Err(TrySendError::Full(_))));
        assert!(q.send_timeout(conn("x"), Duration::from_millis(5)).is_err());
        assert_eq!(rx.len(), 3);
        let _ = rx.recv();
        assert!(!q.is_full());
        assert!(q.try_send(conn("3")).is_ok());
        assert_eq!(rx.len(), 3);
    }

    #[test]
    fn a_gone_writer_is_reported_not_waited_for() {
        let (q, rx) = trace_queue(0);
        drop(rx);
        assert!(matches!(
            q.try_send(conn("a")),
            Err(TrySendError::Disconnected(_))
        ));
    }
}
