//! Character generator (RFC 864): an endless stream of 72-character lines,
//! each ended by CRLF, until the client closes.
//!
//! The printable ASCII characters form a ring of 95: `!` (0x21) through `~`
//! (0x7E), then space (0x20). Line k is the 72 characters of the ring that
//! start at position k mod 95, so line 0 starts with `!`, line 1 with `"`,
//! line 94 with space and line 95 with `!` again. The stream therefore
//! repeats every 95 lines (95 × 74 = 7030 bytes); that whole period is built
//! at compile time, and nine periods of it are shared by every connection
//! ([`block`]): each poll queues slices of them without a copy
//! ([`Socket::send_shared`]), so the stream is pushed at link speed
//! without any per-byte work (the copy into each send buffer had been 10%
//! of a processor's samples in a profiled download).

use std::sync::OnceLock;

use super::checkpoint::{keep_context, Copied};
use super::{App, AppCheckpoint, NoCheckpoint, Socket};
use vnic_stack::SharedBytes;

/// Characters in the ring: 0x21..=0x7E, then 0x20.
const RING: usize = 95;
/// Characters per line, before the CRLF.
const LINE_CHARS: usize = 72;
/// Bytes per line, CRLF included.
const LINE_BYTES: usize = LINE_CHARS + 2;
/// Bytes after which the stream repeats itself.
const PERIOD: usize = RING * LINE_BYTES;

/// The ring's character at position `i` (taken mod 95).
const fn ring_char(i: usize) -> u8 {
    let i = i % RING;
    if i < RING - 1 {
        0x21 + i as u8
    } else {
        b' '
    }
}

/// One full period of the stream: lines 0 to 94.
const fn build_period() -> [u8; PERIOD] {
    let mut out = [0u8; PERIOD];
    let mut line = 0;
    while line < RING {
        let start = line * LINE_BYTES;
        let mut col = 0;
        while col < LINE_CHARS {
            out[start + col] = ring_char(line + col);
            col += 1;
        }
        out[start + LINE_CHARS] = b'\r';
        out[start + LINE_CHARS + 1] = b'\n';
        line += 1;
    }
    out
}

/// The stream's period, built once at compile time.
static STREAM: [u8; PERIOD] = build_period();

/// Bytes of [`block`]: whole periods, so the stream goes on at its start
/// where it ends, and under a send piece's 64 KiB, so a large segment
/// takes one run of it.
const BLOCK: usize = 9 * PERIOD;

/// Nine periods of the stream, shared by every chargen connection of the
/// process: what each one sends from.
fn block() -> &'static SharedBytes {
    static SHARED: OnceLock<SharedBytes> = OnceLock::new();
    SHARED.get_or_init(|| SharedBytes::new(STREAM.repeat(BLOCK / PERIOD)))
}

/// The most bytes read (and ignored) in one step of a poll.
const DRAIN_CHUNK: usize = 4 * 1024;

/// One chargen connection: it exists so `--serve PORT=chargen` has
/// something to hand each accepted connection.
#[derive(Debug, Default)]
pub struct Chargen {
    /// Offset in [`block`] of the next byte to send (below [`BLOCK`]);
    /// keeps a partial line exact across polls.
    pos: usize,
    /// Whether `close()` has been called (it is called once).
    closed: bool,
}

impl Chargen {
    /// A fresh chargen app for one new connection; its stream starts with
    /// line 0.
    pub fn new() -> Chargen {
        Chargen::default()
    }
}

/// `len` bytes of the chargen stream starting at byte `offset` of it: the
/// distributor's back-ends produce the stream in pieces with this.
pub fn stream_bytes(offset: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut pos = (offset % PERIOD as u64) as usize;
    while out.len() < len {
        let n = (len - out.len()).min(PERIOD - pos);
        out.extend_from_slice(&STREAM[pos..pos + n]);
        pos = (pos + n) % PERIOD;
    }
    out
}

impl App for Chargen {
    fn socket_only(&self) -> bool {
        true
    }
    fn poll(&mut self, sock: &mut dyn Socket) {
        // Whatever the client sends is read and ignored (RFC 864).
        if sock.recv_available() > 0 {
            let mut scratch = [0u8; DRAIN_CHUNK];
            while sock.recv_available() > 0 {
                if sock.recv(&mut scratch) == 0 {
                    break;
                }
            }
        }
        if self.closed {
            return;
        }
        if sock.peer_closed() {
            sock.close();
            self.closed = true;
            return;
        }
        loop {
            let n = sock.send_capacity().min(BLOCK - self.pos);
            if n == 0 {
                break;
            }
            let sent = sock.send_shared(block(), self.pos..self.pos + n);
            self.pos = (self.pos + sent) % BLOCK;
            if sent < n {
                break;
            }
        }
    }

    /// The position in the stream and whether our FIN went.
    fn checkpoint(&mut self) -> Result<Box<dyn AppCheckpoint>, NoCheckpoint> {
        let copy = Chargen {
            pos: self.pos,
            closed: self.closed,
        };
        Ok(Copied::new(copy, 0, keep_context).boxed())
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    #[test]
    fn stream_bytes_matches_the_app_stream_at_any_offset() {
        let whole = stream_bytes(0, 3 * PERIOD);
        for off in [0usize, 1, 73, 74, 7029, 7030, 10_000] {
            assert_eq!(
                stream_bytes(off as u64, 500),
                whole[off..off + 500].to_vec()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::MemSocket;

    /// The stream's byte at offset `p`, computed the slow, obvious way.
    fn reference_byte(p: usize) -> u8 {
        let (line, col) = (p / LINE_BYTES, p % LINE_BYTES);
        match col {
            72 => b'\r',
            73 => b'\n',
            _ => {
                let i = (line + col) % 95;
                if i < 94 {
                    b'!' + i as u8
                } else {
                    b' '
                }
            }
        }
    }

    fn lines(bytes: &[u8]) -> Vec<&[u8]> {
        bytes.chunks(LINE_BYTES).collect()
    }

    #[test]
    fn chargen_first_lines_are_exact() {
        let mut app = Chargen::new();
        let mut sock = MemSocket::new(LINE_BYTES * 200);
        app.poll(&mut sock);
        assert_eq!(sock.tx.len(), LINE_BYTES * 200);
        let l = lines(&sock.tx);
        assert_eq!(
            l[0],
            &b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n"[..]
        );
        assert_eq!(
            l[1],
            &b"\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghi\r\n"[..]
        );
        assert_eq!(
            l[2],
            &b"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghij\r\n"[..]
        );
        assert_eq!(l[93][0], b'~');
        assert_eq!(l[94][0], b' ');
        assert_eq!(l[94][1], b'!');
        assert_eq!(l[95], l[0]);
        assert_eq!(l[96], l[1]);
        for line in &l {
            assert_eq!(line.len(), 74);
            assert!(line[..72].iter().all(|&c| (0x20..=0x7E).contains(&c)));
            assert_eq!(&line[72..], b"\r\n");
        }
    }

    #[test]
    fn chargen_stream_is_unbroken_across_odd_capacities() {
        let mut app = Chargen::new();
        let mut sock = MemSocket::new(0);
        let mut out = Vec::new();
        let mut cap = 1usize;
        while out.len() < 3 * PERIOD + 1234 {
            sock.capacity = cap;
            app.poll(&mut sock);
            out.extend(sock.take_tx());
            // 1, 8, 29, 92, ... mod 9973: an irregular mix of sizes,
            // some larger than one period.
            cap = (cap * 3 + 5) % 9973;
        }
        let expected: Vec<u8> = (0..out.len()).map(reference_byte).collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn chargen_ignores_input_and_closes_when_client_does() {
        let mut app = Chargen::new();
        let mut sock = MemSocket::new(100);
        sock.push(b"hello, please stop");
        app.poll(&mut sock);
        assert!(sock.rx.is_empty(), "input is read and ignored");
        assert_eq!(sock.tx.len(), 100);
        sock.peer_fin = true;
        sock.capacity = 100;
        sock.tx.clear();
        app.poll(&mut sock);
        assert_eq!(sock.close_calls, 1);
        assert!(
            sock.tx.is_empty(),
            "no more streaming after the client closed"
        );
        app.poll(&mut sock);
        assert_eq!(sock.close_calls, 1);
    }

    #[test]
    fn chargen_sends_nothing_without_capacity() {
        let mut app = Chargen::new();
        let mut sock = MemSocket::new(0);
        app.poll(&mut sock);
        assert!(sock.tx.is_empty());
        assert!(!sock.closed());
    }
}
