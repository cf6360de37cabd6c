//! The receive side's byte store: in-order data waiting for the application,
//! plus out-of-order segments held until the gap before them fills.

use std::collections::VecDeque;

use crate::seq::SeqNumber;

/// Most out-of-order ranges held at once; a segment that would make more is
/// dropped (the peer retransmits it), which bounds the work of a hostile
/// stream of one-byte segments.
const MAX_RANGES: usize = 64;

/// Receive buffer with reassembly.
///
/// It exists so the connection can accept segments in any order within the
/// window, hand the application each byte exactly once and in order, and
/// compute the window it advertises from the space the application has not
/// yet read.
#[derive(Debug)]
pub(crate) struct RecvBuffer {
    /// In-order bytes the application has not read yet.
    ready: VecDeque<u8>,
    capacity: usize,
    /// Out-of-order ranges, sorted by sequence number, non-overlapping,
    /// all strictly after RCV.NXT at the time they were stored.
    held: Vec<(SeqNumber, Vec<u8>)>,
    held_bytes: usize,
}

impl RecvBuffer {
    pub(crate) fn new(capacity: usize) -> Self {
        RecvBuffer {
            ready: VecDeque::new(),
            capacity,
            held: Vec::new(),
            held_bytes: 0,
        }
    }

    /// The receive window: space not taken by unread in-order data.
    /// Held out-of-order bytes lie inside this window already.
    pub(crate) fn window(&self) -> usize {
        self.capacity.saturating_sub(self.ready.len())
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// In-order bytes ready for the application.
    pub(crate) fn available(&self) -> usize {
        self.ready.len()
    }

    /// Out-of-order bytes held.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Copies and removes in-order bytes into `buf`.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.ready.len());
        let (a, b) = self.ready.as_slices();
        let from_a = n.min(a.len());
        buf[..from_a].copy_from_slice(&a[..from_a]);
        buf[from_a..n].copy_from_slice(&b[..n - from_a]);
        self.ready.drain(..n);
        n
    }

    /// Stores a segment's text that starts at `seq`, already trimmed to the
    /// window `[rcv_nxt, rcv_nxt + window)`. Returns the new RCV.NXT: moved
    /// past `data` and any held ranges it joins when `seq == rcv_nxt`.
    pub(crate) fn insert(&mut self, rcv_nxt: SeqNumber, seq: SeqNumber, data: &[u8]) -> SeqNumber {
        if data.is_empty() {
            return rcv_nxt;
        }
        if seq == rcv_nxt {
            self.ready.extend(data);
            let mut nxt = rcv_nxt + data.len();
            // Join every held range that the new data reaches.
            while let Some((start, bytes)) = self.held.first() {
                if *start > nxt {
                    break;
                }
                let skip = nxt - *start;
                if skip < bytes.len() {
                    self.ready.extend(&bytes[skip..]);
                    nxt = *start + bytes.len();
                }
                self.held_bytes -= bytes.len();
                self.held.remove(0);
            }
            return nxt;
        }
        self.hold(rcv_nxt, seq, data);
        rcv_nxt
    }

    /// True while out-of-order data waits for a gap to fill.
    pub(crate) fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// The contiguous held range `[start, end)` containing `seq`: the SACK
    /// block to report for data that arrived there.
    pub(crate) fn held_block(&self, seq: SeqNumber) -> Option<(SeqNumber, SeqNumber)> {
        self.held
            .iter()
            .map(|(s, b)| (*s, *s + b.len()))
            .find(|&(s, e)| s <= seq && seq < e)
    }

    /// Keeps the parts of `data` not already held, in order. Pieces that
    /// touch a held range are appended to it, so a run of segments after
    /// one hole stays one range (and one SACK block).
    fn hold(&mut self, rcv_nxt: SeqNumber, seq: SeqNumber, data: &[u8]) {
        let off = seq - rcv_nxt;
        let end = off + data.len();
        let mut pieces: Vec<(usize, usize)> = Vec::new();
        let mut cursor = off;
        for (start, bytes) in &self.held {
            let s = *start - rcv_nxt;
            let e = s + bytes.len();
            if e <= cursor {
                continue;
            }
            if s >= end {
                break;
            }
            if s > cursor {
                pieces.push((cursor, s));
            }
            cursor = cursor.max(e);
        }
        if cursor < end {
            pieces.push((cursor, end));
        }
        for (s, e) in pieces {
            let bytes = &data[s - off..e - off];
            let at = self.held.partition_point(|(h, _)| (*h - rcv_nxt) < s);
            let piece_start = rcv_nxt + s;
            let piece_end = rcv_nxt + e;
            let joins_prev = at > 0 && {
                let (ps, pb) = &self.held[at - 1];
                *ps + pb.len() == piece_start
            };
            let joins_next = self.held.get(at).is_some_and(|(ns, _)| *ns == piece_end);
            match (joins_prev, joins_next) {
                (true, true) => {
                    let (_, next) = self.held.remove(at);
                    let prev = &mut self.held[at - 1].1;
                    prev.extend_from_slice(bytes);
                    prev.extend_from_slice(&next);
                }
                (true, false) => self.held[at - 1].1.extend_from_slice(bytes),
                (false, true) => {
                    let next = &mut self.held[at];
                    let mut joined = Vec::with_capacity(bytes.len() + next.1.len());
                    joined.extend_from_slice(bytes);
                    joined.extend_from_slice(&next.1);
                    *next = (piece_start, joined);
                }
                (false, false) => {
                    if self.held.len() >= MAX_RANGES {
                        continue;
                    }
                    self.held.insert(at, (piece_start, bytes.to_vec()));
                }
            }
            self.held_bytes += bytes.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(b: &mut RecvBuffer) -> Vec<u8> {
        let mut v = vec![0; b.available()];
        b.read(&mut v);
        v
    }

    #[test]
    fn gap_fill_delivers_in_order_once() {
        let mut b = RecvBuffer::new(100);
        let n0 = SeqNumber(u32::MAX - 3);
        assert_eq!(b.insert(n0, n0 + 4, b"efgh"), n0);
        assert_eq!(b.insert(n0, n0 + 6, b"ghij"), n0); // overlaps: only "ij" kept
        assert_eq!(b.held_bytes(), 6);
        assert_eq!(b.available(), 0);
        let n = b.insert(n0, n0, b"abcdef");
        assert_eq!(n, n0 + 10);
        assert_eq!(read_all(&mut b), b"abcdefghij");
        assert_eq!(b.held_bytes(), 0);
    }

    #[test]
    fn touching_pieces_become_one_range() {
        let mut b = RecvBuffer::new(1000);
        let n0 = SeqNumber(0);
        for i in 1..100usize {
            b.insert(n0, n0 + i * 5, b"abcde");
        }
        assert_eq!(b.held.len(), 1);
        assert_eq!(b.held_block(n0 + 7), Some((n0 + 5, n0 + 500)));
        b.insert(n0, n0 + 600, b"zz");
        b.insert(n0, n0 + 500, &[b'x'; 100]);
        assert_eq!(b.held.len(), 1);
        assert_eq!(b.held_block(n0 + 601), Some((n0 + 5, n0 + 602)));
        assert_eq!(b.insert(n0, n0, b"01234"), n0 + 602);
        assert_eq!(b.held_bytes(), 0);
    }

    #[test]
    fn window_shrinks_with_unread_data() {
        let mut b = RecvBuffer::new(10);
        let n = b.insert(SeqNumber(0), SeqNumber(0), b"abcd");
        assert_eq!(n, SeqNumber(4));
        assert_eq!(b.window(), 6);
        let mut two = [0; 2];
        assert_eq!(b.read(&mut two), 2);
        assert_eq!(&two, b"ab");
        assert_eq!(b.window(), 8);
    }
}
