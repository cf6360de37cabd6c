//! Discard (RFC 863): every byte the client sends is read and dropped;
//! nothing is ever sent. After the client's FIN the app closes its side.
//!
//! Useful as a sink: it measures how fast the stack can receive, with no
//! app cost beyond one copy out of the receive buffer.

use super::checkpoint::{keep_context, Copied};
use super::{App, AppCheckpoint, NoCheckpoint, Socket};

/// The most bytes read in one step of a poll; also the largest size the
/// per-connection scratch buffer ever grows to.
const CHUNK: usize = 16 * 1024;

/// One discard connection: it exists so `--serve PORT=discard` has
/// something to hand each accepted connection.
#[derive(Debug, Default)]
pub struct Discard {
    /// Where received bytes land before being forgotten; grown lazily
    /// (idle connections cost nothing), never beyond [`CHUNK`].
    buf: Vec<u8>,
    /// Whether `close()` has been called (it is called once).
    closed: bool,
}

impl Discard {
    /// A fresh discard app for one new connection.
    pub fn new() -> Discard {
        Discard::default()
    }
}

impl App for Discard {
    fn socket_only(&self) -> bool {
        true
    }
    fn poll(&mut self, sock: &mut dyn Socket) {
        loop {
            // The bytes where the connection holds them: dropped with no
            // copy, when the socket lends them.
            let lent = {
                let [a, b] = sock.recv_slices();
                a.len() + b.len()
            };
            if lent > 0 {
                if sock.recv_consume(lent) == 0 {
                    break;
                }
                continue;
            }
            let n = sock.recv_available().min(CHUNK);
            if n == 0 {
                break;
            }
            if self.buf.len() < n {
                self.buf.resize(n, 0);
            }
            if sock.recv(&mut self.buf[..n]) == 0 {
                break;
            }
        }
        if !self.closed && sock.peer_closed() && sock.recv_available() == 0 {
            sock.close();
            self.closed = true;
        }
    }

    /// Only whether our FIN went: discard holds nothing between polls.
    fn checkpoint(&mut self) -> Result<Box<dyn AppCheckpoint>, NoCheckpoint> {
        let copy = Discard {
            buf: Vec::new(),
            closed: self.closed,
        };
        Ok(Copied::new(copy, 0, keep_context).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::MemSocket;

    #[test]
    fn discard_reads_everything_sends_nothing() {
        let mut app = Discard::new();
        let mut sock = MemSocket::new(1000);
        sock.push(&vec![0xAB; 100_000]);
        app.poll(&mut sock);
        assert!(sock.rx.is_empty());
        assert!(sock.tx.is_empty());
        assert!(!sock.closed(), "no FIN yet, so no close");
    }

    #[test]
    fn discard_closes_once_after_fin() {
        let mut app = Discard::new();
        let mut sock = MemSocket::new(1000);
        sock.push(b"some bytes");
        app.poll(&mut sock);
        assert!(!sock.closed());
        sock.push(b"last bytes");
        sock.peer_fin = true;
        app.poll(&mut sock);
        assert!(sock.rx.is_empty());
        assert_eq!(sock.close_calls, 1);
        app.poll(&mut sock);
        assert_eq!(sock.close_calls, 1);
        assert!(sock.tx.is_empty());
    }
}
