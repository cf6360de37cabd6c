//! Echo (RFC 862): every byte the client sends comes back, in order.
//!
//! Back-pressure is the whole design: the app reads only as many bytes as
//! the socket will take for sending right now, so a client that sends but
//! does not read stalls itself through TCP's windows instead of making the
//! app buffer without bound. After the client's FIN the app returns what is
//! left and closes its side.

use super::checkpoint::{keep_context, Copied};
use super::{App, AppCheckpoint, NoCheckpoint, Socket};

/// The most bytes moved in one step of a poll; also the largest size the
/// per-connection scratch buffer ever grows to.
const CHUNK: usize = 16 * 1024;

/// One echo connection: it exists so `--serve PORT=echo` has something to
/// hand each accepted connection.
#[derive(Debug, Default)]
pub struct Echo {
    /// Scratch space between `recv` and `send`; grown lazily (idle
    /// connections cost nothing), never beyond [`CHUNK`].
    buf: Vec<u8>,
    /// Bytes read but not yet taken by `send`. Empty unless a socket took
    /// less than its `send_capacity()` promised.
    pending: Vec<u8>,
    /// Whether `close()` has been called (it is called once).
    closed: bool,
}

impl Echo {
    /// A fresh echo app for one new connection.
    pub fn new() -> Echo {
        Echo::default()
    }

    /// Pushes out `pending`; true when it is empty afterwards.
    fn flush_pending(&mut self, sock: &mut dyn Socket) -> bool {
        if !self.pending.is_empty() {
            let sent = sock.send(&self.pending);
            self.pending.drain(..sent);
        }
        self.pending.is_empty()
    }
}

impl App for Echo {
    fn socket_only(&self) -> bool {
        true
    }
    fn poll(&mut self, sock: &mut dyn Socket) {
        if self.closed {
            return;
        }
        if !self.flush_pending(sock) {
            return;
        }
        loop {
            let n = sock.recv_available().min(sock.send_capacity()).min(CHUNK);
            if n == 0 {
                break;
            }
            if self.buf.len() < n {
                self.buf.resize(n, 0);
            }
            let got = sock.recv(&mut self.buf[..n]);
            if got == 0 {
                break;
            }
            let sent = sock.send(&self.buf[..got]);
            if sent < got {
                self.pending.extend_from_slice(&self.buf[sent..got]);
                return;
            }
        }
        if sock.peer_closed() && sock.recv_available() == 0 && self.pending.is_empty() {
            sock.close();
            self.closed = true;
        }
    }

    fn nagle(&self) -> bool {
        false
    }

    /// The bytes read but not yet sent (none, unless a socket took less
    /// than it promised) and whether our FIN went; the scratch buffer is
    /// not carried.
    fn checkpoint(&mut self) -> Result<Box<dyn AppCheckpoint>, NoCheckpoint> {
        let copy = Echo {
            buf: Vec::new(),
            pending: self.pending.clone(),
            closed: self.closed,
        };
        let bytes = copy.pending.capacity();
        Ok(Copied::new(copy, bytes, keep_context).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::MemSocket;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn echo_returns_every_byte_with_tiny_send_capacity() {
        let input = data(10_000);
        let mut app = Echo::new();
        let mut sock = MemSocket::new(0);
        sock.push(&input);
        let mut out = Vec::new();
        for round in 0.. {
            assert!(round < 100_000, "echo made no progress");
            sock.capacity = 3;
            app.poll(&mut sock);
            out.extend(sock.take_tx());
            if out.len() == input.len() {
                break;
            }
        }
        assert_eq!(out, input);
        assert!(!sock.closed(), "no FIN yet, so no close");
    }

    #[test]
    fn echo_reads_only_what_it_can_send() {
        let mut app = Echo::new();
        let mut sock = MemSocket::new(5);
        sock.push(&data(100));
        app.poll(&mut sock);
        assert_eq!(sock.tx.len(), 5);
        assert_eq!(sock.rx.len(), 95, "the rest stays in the socket");
        sock.capacity = 0;
        app.poll(&mut sock);
        assert_eq!(sock.rx.len(), 95, "no send space, no reading");
    }

    #[test]
    fn echo_sends_rest_after_fin_then_closes_once() {
        let input = data(1000);
        let mut app = Echo::new();
        let mut sock = MemSocket::new(100);
        sock.push(&input);
        sock.peer_fin = true;
        app.poll(&mut sock);
        assert!(!sock.closed(), "900 bytes still to echo");
        let mut rounds = 0;
        while !sock.closed() {
            rounds += 1;
            assert!(rounds < 100);
            sock.capacity = 64;
            app.poll(&mut sock);
        }
        assert_eq!(sock.tx, input);
        sock.capacity = 1000;
        app.poll(&mut sock);
        app.poll(&mut sock);
        assert_eq!(sock.close_calls, 1);
    }

    #[test]
    fn echo_closes_on_fin_without_data() {
        let mut app = Echo::new();
        let mut sock = MemSocket::new(100);
        app.poll(&mut sock);
        assert!(!sock.closed());
        sock.peer_fin = true;
        app.poll(&mut sock);
        assert_eq!(sock.close_calls, 1);
        assert!(sock.tx.is_empty());
    }

    #[test]
    fn echo_keeps_bytes_a_short_send_refused() {
        /// A socket whose `send` takes only half (rounded up) of what it promised.
        struct Stingy(MemSocket);
        impl Socket for Stingy {
            fn recv(&mut self, buf: &mut [u8]) -> usize {
                self.0.recv(buf)
            }
            fn recv_available(&self) -> usize {
                self.0.recv_available()
            }
            fn send(&mut self, data: &[u8]) -> usize {
                let n = data.len().div_ceil(2);
                self.0.send(&data[..n])
            }
            fn send_capacity(&self) -> usize {
                self.0.send_capacity()
            }
            fn peer_closed(&self) -> bool {
                self.0.peer_closed()
            }
            fn close(&mut self) {
                self.0.close()
            }
            fn abort(&mut self) {
                self.0.abort()
            }
        }
        let input = data(50);
        let mut app = Echo::new();
        let mut sock = Stingy(MemSocket::new(0));
        sock.0.push(&input);
        sock.0.peer_fin = true;
        for _ in 0..1000 {
            sock.0.capacity = 10;
            app.poll(&mut sock);
            if sock.0.closed() {
                break;
            }
        }
        assert_eq!(sock.0.tx, input);
        assert_eq!(sock.0.close_calls, 1);
    }

    #[test]
    fn echo_turns_nagle_off() {
        assert!(!Echo::new().nagle());
    }
}
