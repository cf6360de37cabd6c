//! [`MemSocket`]: a connection in memory, for driving an app without TCP.

use crate::app::Socket;
use std::collections::VecDeque;

/// An in-memory [`Socket`]: the caller feeds the receive side, sets the
/// send space, and reads back what the app sent. It exists for what
/// drives an app without a TCP connection: the apps' unit tests, the
/// fuzz targets (fuzz/) and a library user's own tests. It checks the
/// app on the way: nothing may be sent after `close()`.
#[derive(Debug, Default)]
pub struct MemSocket {
    /// Bytes "received from the peer", not yet read by the app.
    pub rx: VecDeque<u8>,
    /// Everything the app has sent, in order.
    pub tx: Vec<u8>,
    /// What `send_capacity()` reports; `send` uses it up.
    pub capacity: usize,
    /// Whether the peer's FIN has "arrived".
    pub peer_fin: bool,
    /// How many times the app called `close()`.
    pub close_calls: usize,
    /// Whether the app reset the connection.
    pub aborted: bool,
    /// Bytes the app has read so far.
    pub read: usize,
}

impl MemSocket {
    /// A socket with `capacity` bytes of send space and nothing received.
    pub fn new(capacity: usize) -> MemSocket {
        MemSocket {
            capacity,
            ..MemSocket::default()
        }
    }

    /// The peer sends `data`.
    pub fn push(&mut self, data: &[u8]) {
        assert!(!self.peer_fin, "data after the peer's FIN");
        self.rx.extend(data);
    }

    /// Takes everything sent so far.
    pub fn take_tx(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tx)
    }

    /// Whether the app closed its side.
    pub fn closed(&self) -> bool {
        self.close_calls > 0
    }
}

impl Socket for MemSocket {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.rx.len());
        for (dst, src) in buf.iter_mut().zip(self.rx.drain(..n)) {
            *dst = src;
        }
        self.read += n;
        n
    }

    fn recv_available(&self) -> usize {
        self.rx.len()
    }

    fn send(&mut self, data: &[u8]) -> usize {
        assert_eq!(self.close_calls, 0, "app sent after close()");
        let n = data.len().min(self.capacity);
        self.tx.extend_from_slice(&data[..n]);
        self.capacity -= n;
        n
    }

    fn send_capacity(&self) -> usize {
        self.capacity
    }

    fn peer_closed(&self) -> bool {
        self.peer_fin
    }

    fn close(&mut self) {
        self.close_calls += 1;
    }

    fn abort(&mut self) {
        self.aborted = true;
    }
}
