//! Bytes the application queued: sent-but-unacknowledged, then unsent.

use std::collections::VecDeque;

use crate::seq::SeqNumber;

/// A bounded byte queue whose first byte has sequence number `start`.
///
/// It exists so the connection can (re)read any range between SND.UNA and
/// the end of the queued data by sequence number, and release bytes as they
/// are acknowledged, without copying the remaining data (a ring, not a Vec).
#[derive(Clone, Debug)]
pub(crate) struct SendBuffer {
    data: VecDeque<u8>,
    capacity: usize,
    /// Sequence number of `data[0]`.
    start: SeqNumber,
}

impl SendBuffer {
    pub(crate) fn new(capacity: usize, start: SeqNumber) -> Self {
        SendBuffer {
            data: VecDeque::new(),
            capacity,
            start,
        }
    }

    /// Free space for the application.
    pub(crate) fn free(&self) -> usize {
        self.capacity.saturating_sub(self.data.len())
    }

    /// Queued bytes (unacknowledged plus unsent).
    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    /// Sequence number one past the last queued byte.
    pub(crate) fn end(&self) -> SeqNumber {
        self.start + self.data.len()
    }

    /// Queues as much of `bytes` as fits; returns how much.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.free());
        grow_within(&mut self.data, n, self.capacity);
        self.data.extend(&bytes[..n]);
        n
    }

    /// Bytes of memory the queue holds (its allocation, not its length).
    pub(crate) fn memory(&self) -> usize {
        self.data.capacity()
    }

    /// Gives back the memory the queued bytes do not use.
    pub(crate) fn shrink(&mut self) {
        self.data.shrink_to_fit();
    }

    /// Releases every byte below `ack`; returns how many were released.
    pub(crate) fn ack_to(&mut self, ack: SeqNumber) -> usize {
        let n = ack.distance_from(self.start).min(self.data.len());
        self.data.drain(..n);
        self.start = self.start + n;
        n
    }

    /// Sequence number of the first queued byte (SND.UNA once the SYN is
    /// acknowledged).
    pub(crate) fn start(&self) -> SeqNumber {
        self.start
    }

    /// Takes the queued bytes out, leaving the buffer empty at the same
    /// start, so the rest of the connection can be cloned without them
    /// (a checkpoint copies only the bytes its backup lacks); give them
    /// back with [`SendBuffer::put_back`].
    pub(crate) fn take_data(&mut self) -> VecDeque<u8> {
        std::mem::take(&mut self.data)
    }

    /// Gives back the bytes [`SendBuffer::take_data`] took out.
    pub(crate) fn put_back(&mut self, data: VecDeque<u8>) {
        self.data = data;
    }

    /// Rebuilds the data of this buffer (empty, as a checkpoint carries
    /// it, starting at the primary's SND.UNA) from the backup's `older`
    /// buffer and `tail`, the bytes from `from` on: `older` is released
    /// up to this buffer's start, then `tail` is appended. When `from` is
    /// the start, `tail` is all the data and `older` only lends its
    /// allocation. False (the buffer left empty) when the bytes do not
    /// join: `older` does not end at `from` (a checkpoint in between was
    /// lost), is missing, or starts after this buffer's start.
    pub(crate) fn rebuild(
        &mut self,
        older: Option<SendBuffer>,
        from: SeqNumber,
        tail: &[u8],
    ) -> bool {
        let start = self.start;
        let mut data = match older {
            Some(mut o) if from != start => {
                if o.start > start || o.end() != from || start > from {
                    return false;
                }
                o.ack_to(start);
                o.data
            }
            Some(o) => {
                let mut d = o.data;
                d.clear();
                d
            }
            None if from == start => VecDeque::new(),
            None => return false,
        };
        if data.len().saturating_add(tail.len()) > self.capacity {
            return false;
        }
        grow_within(&mut data, tail.len(), self.capacity);
        data.extend(tail);
        self.data = data;
        true
    }

    /// Appends up to `len` bytes starting at sequence number `seq` to `out`.
    pub(crate) fn read_at(&self, seq: SeqNumber, len: usize, out: &mut Vec<u8>) {
        let [a, b] = self.slices_at(seq, len);
        out.extend_from_slice(a);
        out.extend_from_slice(b);
    }

    /// Up to `len` bytes starting at sequence number `seq`, where they lie
    /// in the ring: at most two slices, in order (the second often empty).
    pub(crate) fn slices_at(&self, seq: SeqNumber, len: usize) -> [&[u8]; 2] {
        let off = seq.distance_from(self.start).min(self.data.len());
        let end = off.saturating_add(len).min(self.data.len());
        if off >= end {
            return [&[], &[]];
        }
        let (a, b) = self.data.as_slices();
        let first = if off < a.len() {
            &a[off..end.min(a.len())]
        } else {
            &[]
        };
        let second = if end > a.len() {
            &b[off.saturating_sub(a.len())..end - a.len()]
        } else {
            &[]
        };
        [first, second]
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

    #[test]
    fn a_full_buffer_holds_no_more_than_its_nominal_size() {
        let cap = 256 * 1024;
        let mut b = SendBuffer::new(cap, SeqNumber(1));
        while b.push(&[7u8; 1460]) > 0 {}
        assert_eq!(b.len(), cap);
        // VecDeque may round an exact request up a little, never double it.
        assert!(b.memory() < cap + cap / 8, "{} bytes for {cap}", b.memory());
        b.ack_to(SeqNumber(1) + cap);
        b.shrink();
        assert!(b.memory() < 64, "{} bytes held when empty", b.memory());
    }

    #[test]
    fn rebuild_joins_an_older_copy_and_a_tail_or_refuses() {
        let mut primary = SendBuffer::new(16, SeqNumber(u32::MAX - 3));
        primary.push(b"abcdefgh");
        let mut backup = primary.clone();
        primary.ack_to(SeqNumber(u32::MAX - 1));
        primary.push(b"ijk");
        // The checkpoint: empty at the primary's start, the tail apart.
        let mut cp = primary.clone();
        let data = cp.take_data();
        assert_eq!(cp.len(), 0);
        cp.put_back(data);
        let mut tail = Vec::new();
        primary.read_at(backup.end(), 100, &mut tail);
        assert_eq!(tail, b"ijk");
        let mut empty = primary.clone();
        empty.take_data();
        let mut got = empty.clone();
        assert!(got.rebuild(Some(backup.clone()), backup.end(), &tail));
        let mut out = Vec::new();
        got.read_at(got.start(), 100, &mut out);
        assert_eq!(out, b"cdefghijk");
        assert_eq!((got.start(), got.end()), (primary.start(), primary.end()));
        // A tail that does not start where the older copy ends: a gap.
        assert!(!empty
            .clone()
            .rebuild(Some(backup.clone()), backup.end() + 1, b"jk"));
        // No older copy and only a tail: a gap; the whole data: fine.
        assert!(!empty.clone().rebuild(None, backup.end(), &tail));
        let mut all = Vec::new();
        primary.read_at(primary.start(), 100, &mut all);
        assert!(empty.clone().rebuild(None, primary.start(), &all));
        // An older copy that starts after the checkpoint's start: refused.
        backup.ack_to(SeqNumber(2));
        let end = backup.end();
        assert!(!empty.clone().rebuild(Some(backup), end, b""));
    }

    #[test]
    fn read_ack_across_wrap() {
        let mut b = SendBuffer::new(8, SeqNumber(u32::MAX - 2));
        assert_eq!(b.push(b"abcdefghij"), 8);
        assert_eq!(b.free(), 0);
        let mut out = Vec::new();
        b.read_at(SeqNumber(u32::MAX), 4, &mut out);
        assert_eq!(out, b"cdef");
        assert_eq!(b.ack_to(SeqNumber(1)), 4);
        assert_eq!(b.push(b"xyz"), 3);
        out.clear();
        b.read_at(SeqNumber(1), 100, &mut out);
        assert_eq!(out, b"efghxyz");
        assert_eq!(b.end(), SeqNumber(8));
    }
}
