//! The receive side's byte store: in-order data waiting for the application,
//! plus out-of-order segments held until the gap before them fills.
//!
//! Every byte lives in one buffer at its place in the sequence space: the
//! unread in-order bytes first, then the window, where an out-of-order
//! byte is written at its offset from RCV.NXT. Which parts of the window
//! hold data is kept apart, as a short sorted list of ranges. So a byte is
//! copied once when it arrives and once when the application reads it,
//! whatever the order of arrival (issue 15: one-byte segments sent in
//! descending order used to re-copy the whole held range at each arrival,
//! quadratic work), and filling a gap moves no bytes, only the boundary
//! between in-order and held.
//!
//! A large in-order segment that arrived in a shared buffer (a TSO
//! segment handed over in the buffer the TAP read put it in,
//! [`Payload::in_buffer`]) is not copied at all while nothing waits in the
//! buffer before it: its payload is kept as it is, in a queue ahead of
//! the buffer, and read from there. That copy had been 13% of a
//! processor's samples in a profiled upload.

use std::collections::VecDeque;

use crate::not_cloned::NotCloned;
use crate::payload::Payload;
use crate::seq::SeqNumber;

/// In-order text from which a shared payload is kept instead of copied.
/// Smaller segments are copied: their buffer (a whole frame's) would
/// hold far more memory than their bytes.
const KEEP_MIN: usize = 16 * 1024;

/// Spent kept buffers held for the owner to reuse
/// ([`RecvBuffer::take_spent`]); beyond that they are freed.
const SPENT_MAX: usize = 8;

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
#[derive(Clone, Debug)]
pub(crate) struct RecvBuffer {
    /// In-order text kept in the buffers it arrived in, read before
    /// anything in `buf`; `kept_len` bytes in all.
    kept: VecDeque<Payload>,
    kept_len: usize,
    /// Kept buffers read to the end, for [`RecvBuffer::take_spent`] (a
    /// clone, a checkpoint, starts without them).
    spent: NotCloned<Vec<Payload>>,
    /// The first `ready` bytes: in-order data the application has not read.
    /// Beyond them, the byte of sequence number RCV.NXT + k at `ready + k`
    /// when a held range covers it (the gaps between ranges hold stale
    /// bytes that are never read). Never longer than `ready` plus the end
    /// of the last held range.
    buf: VecDeque<u8>,
    ready: usize,
    capacity: usize,
    /// Out-of-order ranges `[start, end)`, sorted, neither overlapping nor
    /// touching, all strictly after RCV.NXT at the time they were stored.
    held: Vec<(SeqNumber, SeqNumber)>,
    held_bytes: usize,
    /// Bytes copied into and out of `buf` (the work a sender causes).
    copied: u64,
}

impl RecvBuffer {
    pub(crate) fn new(capacity: usize) -> Self {
        RecvBuffer {
            kept: VecDeque::new(),
            kept_len: 0,
            spent: NotCloned::default(),
            buf: VecDeque::new(),
            ready: 0,
            capacity,
            held: Vec::new(),
            held_bytes: 0,
            copied: 0,
        }
    }

    /// The receive window: space not taken by unread in-order data.
    /// Held out-of-order bytes lie inside this window already.
    pub(crate) fn window(&self) -> usize {
        self.capacity.saturating_sub(self.available())
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// In-order bytes ready for the application.
    pub(crate) fn available(&self) -> usize {
        self.kept_len + self.ready
    }

    /// Out-of-order bytes held.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Bytes of memory the buffer holds (its allocations, not its length).
    pub(crate) fn memory(&self) -> usize {
        let kept: usize = self.kept.iter().map(Payload::buffer_capacity).sum();
        self.buf.capacity()
            + self.held.capacity() * std::mem::size_of::<(SeqNumber, SeqNumber)>()
            + kept
    }

    /// Gives back the memory the unread and held bytes do not use.
    pub(crate) fn shrink(&mut self) {
        self.buf.shrink_to_fit();
        self.held.shrink_to_fit();
        self.kept.shrink_to_fit();
        self.spent = NotCloned::default();
    }

    /// A kept buffer that has been read to the end, for its owner's pool
    /// (the frame buffers the reads go into); None when there is none or
    /// the buffer is still shared.
    pub(crate) fn take_spent(&mut self) -> Option<Vec<u8>> {
        while let Some(p) = self.spent.pop() {
            let b = p.into_buffer();
            if b.capacity() > 0 {
                return Some(b);
            }
        }
        None
    }

    /// Bytes copied so far, into the buffer and out to the application:
    /// at most twice the bytes received (each byte in once, out once).
    pub(crate) fn bytes_copied(&self) -> u64 {
        self.copied
    }

    /// Copies and removes in-order bytes into `buf`.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let [a, b] = self.ready_slices();
            if a.is_empty() {
                break;
            }
            let from_a = (buf.len() - done).min(a.len());
            buf[done..done + from_a].copy_from_slice(&a[..from_a]);
            let from_b = (buf.len() - done - from_a).min(b.len());
            buf[done + from_a..done + from_a + from_b].copy_from_slice(&b[..from_b]);
            let n = self.consume(from_a + from_b);
            self.copied += n as u64;
            done += n;
        }
        done
    }

    /// The first in-order bytes the application has not read, where they
    /// lie: two slices, in order (the second often empty, both empty only
    /// when nothing is ready). With kept segments they may not be all
    /// that is ready: read on after [`RecvBuffer::consume`].
    pub(crate) fn ready_slices(&self) -> [&[u8]; 2] {
        let (a, b) = self.buf.as_slices();
        let from_a = self.ready.min(a.len());
        let ring = [&a[..from_a], &b[..(self.ready - from_a).min(b.len())]];
        match (self.kept.front(), self.kept.get(1)) {
            (None, _) => ring,
            (Some(k), Some(next)) => [k, next],
            (Some(k), None) => [k, ring[0]],
        }
    }

    /// Removes the first `n` in-order bytes as read (at most those
    /// ready); returns how many.
    pub(crate) fn consume(&mut self, n: usize) -> usize {
        let mut left = n.min(self.available());
        let total = left;
        while left > 0 {
            let Some(front) = self.kept.front_mut() else {
                break;
            };
            let take = left.min(front.len());
            front.advance(take);
            self.kept_len -= take;
            left -= take;
            if front.is_empty() {
                if let Some(done) = self.kept.pop_front() {
                    if self.spent.len() < SPENT_MAX {
                        self.spent.push(done);
                    }
                }
            }
        }
        let from_ring = left.min(self.ready);
        self.buf.drain(..from_ring);
        self.ready -= from_ring;
        total
    }

    /// Stores a segment's text that starts at `seq`, already trimmed to the
    /// window `[rcv_nxt, rcv_nxt + window)`. Returns the new RCV.NXT: moved
    /// past `data` and any held ranges it joins when `seq == rcv_nxt`.
    /// `whole` is the segment's payload when `data` is all of it: a large
    /// one in a shared buffer is kept, not copied, when it is in order and
    /// nothing waits in the byte buffer.
    pub(crate) fn insert(
        &mut self,
        rcv_nxt: SeqNumber,
        seq: SeqNumber,
        data: &[u8],
        whole: Option<&Payload>,
    ) -> SeqNumber {
        if data.is_empty() {
            return rcv_nxt;
        }
        if seq == rcv_nxt && self.held.is_empty() && self.ready == 0 {
            let keep = whole
                .filter(|p| p.len() == data.len() && p.len() >= KEEP_MIN)
                .filter(|p| p.len().saturating_mul(2) >= p.buffer_capacity())
                .and_then(Payload::shared);
            if let Some(p) = keep {
                self.kept_len += p.len();
                self.kept.push_back(p);
                return rcv_nxt + data.len();
            }
        }
        if seq == rcv_nxt && self.held.is_empty() {
            // The common case: in order, nothing held.
            self.buf.truncate(self.ready);
            grow_within(&mut self.buf, data.len(), self.capacity);
            self.buf.extend(data);
            self.ready += data.len();
            self.copied += data.len() as u64;
            return rcv_nxt + data.len();
        }
        self.hold(rcv_nxt, seq, data);
        // Data at RCV.NXT (this segment's, or a range it joined) is now in
        // order: the boundary moves, the bytes stay where they are.
        match self.held.first().copied() {
            Some((start, end)) if start == rcv_nxt => {
                self.held.remove(0);
                let len = end - start;
                self.held_bytes -= len;
                self.ready += len;
                if self.held.is_empty() {
                    self.buf.truncate(self.ready);
                }
                end
            }
            _ => rcv_nxt,
        }
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
            .copied()
            .find(|&(s, e)| s <= seq && seq < e)
    }

    /// Keeps the parts of `data` not already held, each written once at its
    /// place. A piece that touches a held range joins it, so a run of
    /// segments after one hole stays one range (and one SACK block). A
    /// piece that would make more than [`MAX_RANGES`] ranges is dropped,
    /// unless it starts at RCV.NXT (it is in order then).
    fn hold(&mut self, rcv_nxt: SeqNumber, seq: SeqNumber, data: &[u8]) {
        let off = seq - rcv_nxt;
        let end = off + data.len();
        let mut pieces: [(usize, usize); MAX_RANGES + 1] = [(0, 0); MAX_RANGES + 1];
        let mut count = 0;
        let mut cursor = off;
        for &(start, stop) in &self.held {
            let s = start - rcv_nxt;
            let e = stop - rcv_nxt;
            if e <= cursor {
                continue;
            }
            if s >= end {
                break;
            }
            if s > cursor && count < pieces.len() {
                pieces[count] = (cursor, s);
                count += 1;
            }
            cursor = cursor.max(e);
        }
        if cursor < end && count < pieces.len() {
            pieces[count] = (cursor, end);
            count += 1;
        }
        for &(s, e) in &pieces[..count] {
            let piece_start = rcv_nxt + s;
            let piece_end = rcv_nxt + e;
            let at = self.held.partition_point(|&(h, _)| h < piece_start);
            let joins_prev = at > 0 && self.held[at - 1].1 == piece_start;
            let joins_next = self.held.get(at).is_some_and(|&(ns, _)| ns == piece_end);
            match (joins_prev, joins_next) {
                (true, true) => {
                    let (_, next_end) = self.held.remove(at);
                    self.held[at - 1].1 = next_end;
                }
                (true, false) => self.held[at - 1].1 = piece_end,
                (false, true) => self.held[at].0 = piece_start,
                (false, false) => {
                    if self.held.len() >= MAX_RANGES && s != 0 {
                        continue;
                    }
                    self.held.insert(at, (piece_start, piece_end));
                }
            }
            self.write_at(self.ready + s, &data[s - off..e - off]);
            self.held_bytes += e - s;
        }
    }

    /// Writes `bytes` at `at` in the buffer, growing it as needed (the
    /// stale gap before `at` is filled with zeros, once).
    fn write_at(&mut self, at: usize, bytes: &[u8]) {
        self.copied += bytes.len() as u64;
        let more = (at + bytes.len()).saturating_sub(self.buf.len());
        grow_within(&mut self.buf, more, self.capacity);
        if at >= self.buf.len() {
            self.buf.resize(at, 0);
            self.buf.extend(bytes);
            return;
        }
        let end = at + bytes.len();
        if end > self.buf.len() {
            self.buf.resize(end, 0);
        }
        let (a, b) = self.buf.as_mut_slices();
        let mut done = 0;
        if at < a.len() {
            let n = (a.len() - at).min(bytes.len());
            a[at..at + n].copy_from_slice(&bytes[..n]);
            done = n;
        }
        if done < bytes.len() {
            let from = at + done - a.len();
            b[from..from + bytes.len() - done].copy_from_slice(&bytes[done..]);
        }
    }
}

/// Makes room in `buf` for `more` bytes, growing it at most to `limit`.
///
/// It exists because a `VecDeque` left to itself doubles, and the nominal
/// size times two (a 256 KiB buffer could hold 512 KiB) is what a peer
/// that fills every buffer of every connection would get (issue 15).
/// Growth is still geometric below the limit, so filling a buffer costs
/// few reallocations.
pub(crate) fn grow_within(buf: &mut VecDeque<u8>, more: usize, limit: usize) {
    let need = buf.len().saturating_add(more);
    if need <= buf.capacity() {
        return;
    }
    let target = buf
        .capacity()
        .saturating_mul(2)
        .clamp(need, limit.max(need));
    buf.reserve_exact(target - buf.len());
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
        assert_eq!(b.insert(n0, n0 + 4, b"efgh", None), n0);
        assert_eq!(b.insert(n0, n0 + 6, b"ghij", None), n0); // overlaps: only "ij" kept
        assert_eq!(b.held_bytes(), 6);
        assert_eq!(b.available(), 0);
        let n = b.insert(n0, n0, b"abcdef", None);
        assert_eq!(n, n0 + 10);
        assert_eq!(read_all(&mut b), b"abcdefghij");
        assert_eq!(b.held_bytes(), 0);
    }

    #[test]
    fn touching_pieces_become_one_range() {
        let mut b = RecvBuffer::new(1000);
        let n0 = SeqNumber(0);
        for i in 1..100usize {
            b.insert(n0, n0 + i * 5, b"abcde", None);
        }
        assert_eq!(b.held.len(), 1);
        assert_eq!(b.held_block(n0 + 7), Some((n0 + 5, n0 + 500)));
        b.insert(n0, n0 + 600, b"zz", None);
        b.insert(n0, n0 + 500, &[b'x'; 100], None);
        assert_eq!(b.held.len(), 1);
        assert_eq!(b.held_block(n0 + 601), Some((n0 + 5, n0 + 602)));
        assert_eq!(b.insert(n0, n0, b"01234", None), n0 + 602);
        assert_eq!(b.held_bytes(), 0);
    }

    /// Issue 15 part 2: one-byte segments in descending order across the
    /// window, then the byte at RCV.NXT. Each byte must be copied a bounded
    /// number of times (into the buffer, out to the application), not once
    /// per later arrival.
    #[test]
    fn descending_one_byte_segments_copy_each_byte_a_bounded_number_of_times() {
        let n = 4096usize;
        let mut b = RecvBuffer::new(n + 1);
        let n0 = SeqNumber(7);
        for i in (1..=n).rev() {
            assert_eq!(b.insert(n0, n0 + i, &[i as u8], None), n0);
        }
        assert_eq!(b.held_bytes(), n);
        assert_eq!(b.insert(n0, n0, &[0], None), n0 + (n + 1));
        let all = read_all(&mut b);
        assert_eq!(all.len(), n + 1);
        assert!(all.iter().enumerate().all(|(i, &x)| x == i as u8));
        // In once and out once: 2 copies a byte (quadratic was n^2 / 2).
        assert!(
            b.bytes_copied() <= 2 * (n as u64 + 1),
            "{} bytes copied for {} received",
            b.bytes_copied(),
            n + 1
        );
    }

    #[test]
    fn a_full_window_holds_no_more_than_its_nominal_size() {
        let cap = 256 * 1024;
        let mut b = RecvBuffer::new(cap);
        let mut nxt = SeqNumber(0);
        // Held out of order first (a hole at the start), then in order.
        b.insert(nxt, nxt + 1460, &vec![1u8; cap - 1460], None);
        while b.window() > 0 {
            let n = b.window().min(1460);
            nxt = b.insert(nxt, nxt, &vec![2u8; n], None);
        }
        assert_eq!(b.available(), cap);
        assert!(b.memory() < cap + cap / 8, "{} bytes for {cap}", b.memory());
        let mut sink = vec![0; cap];
        assert_eq!(b.read(&mut sink), cap);
        b.shrink();
        assert!(b.memory() < 64, "{} bytes held when empty", b.memory());
    }

    #[test]
    fn window_shrinks_with_unread_data() {
        let mut b = RecvBuffer::new(10);
        let n = b.insert(SeqNumber(0), SeqNumber(0), b"abcd", None);
        assert_eq!(n, SeqNumber(4));
        assert_eq!(b.window(), 6);
        let mut two = [0; 2];
        assert_eq!(b.read(&mut two), 2);
        assert_eq!(&two, b"ab");
        assert_eq!(b.window(), 8);
    }

    /// A large in-order segment in a shared buffer is kept, not copied,
    /// and read in order with what came before and after it; a small one,
    /// one behind unread copied bytes, and one in a buffer far larger
    /// than its text are copied.
    #[test]
    fn large_shared_segments_are_kept_and_read_in_order() {
        let cap = 256 * 1024;
        let mut b = RecvBuffer::new(cap);
        let big = |fill: u8, len: usize| {
            let mut frame = vec![0u8; 66 + len];
            frame[66..].fill(fill);
            Payload::in_buffer(frame, 66..66 + len)
        };
        let mut nxt = SeqNumber(10);
        let mut want = Vec::new();
        for (i, len) in [20_000usize, 30_000, 40_000].into_iter().enumerate() {
            let p = big(i as u8 + 1, len);
            nxt = b.insert(nxt, nxt, &p, Some(&p));
            want.extend_from_slice(&p);
        }
        assert_eq!(b.kept.len(), 3, "kept where they arrived");
        assert_eq!(b.bytes_copied(), 0);
        // Behind them: a small segment is copied, and so is a large one
        // that arrives while copied bytes wait.
        let small = Payload::in_buffer(vec![7u8; 100], 0..100);
        nxt = b.insert(nxt, nxt, &small, Some(&small));
        let after = big(9, 20_000);
        nxt = b.insert(nxt, nxt, &after, Some(&after));
        want.extend_from_slice(&small);
        want.extend_from_slice(&after);
        assert_eq!(b.kept.len(), 3);
        assert_eq!(b.available(), want.len());
        assert_eq!(b.window(), cap - want.len());
        assert!(b.memory() >= want.len());
        // Read in place, a piece at a time, then by copy.
        let [a, _] = b.ready_slices();
        assert_eq!(a, &want[..20_000]);
        assert_eq!(b.consume(15_000), 15_000);
        let mut got = want[..15_000].to_vec();
        let mut chunk = vec![0u8; 7_777];
        loop {
            let n = b.read(&mut chunk);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, want);
        assert_eq!(b.available(), 0);
        assert_eq!(b.window(), cap);
        let spent = b.take_spent().expect("a read-out buffer comes back");
        assert!(spent.capacity() >= 66 + 20_000);
        // A large segment in a buffer more than twice its size is copied.
        let mut roomy = Vec::with_capacity(200_000);
        roomy.resize(20_066, 3);
        let p = Payload::in_buffer(roomy, 66..20_066);
        b.insert(nxt, nxt, &p, Some(&p));
        assert!(b.kept.is_empty());
        assert_eq!(b.available(), 20_000);
    }
}
