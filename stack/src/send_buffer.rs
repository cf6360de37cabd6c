//! Bytes the application queued: sent-but-unacknowledged, then unsent.

use std::collections::VecDeque;

use crate::seq::SeqNumber;

/// A bounded byte queue whose first byte has sequence number `start`.
///
/// It exists so the connection can (re)read any range between SND.UNA and
/// the end of the queued data by sequence number, and release bytes as they
/// are acknowledged, without copying the remaining data (a ring, not a Vec).
#[derive(Debug)]
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
        self.data.extend(&bytes[..n]);
        n
    }

    /// Releases every byte below `ack`; returns how many were released.
    pub(crate) fn ack_to(&mut self, ack: SeqNumber) -> usize {
        let n = ack.distance_from(self.start).min(self.data.len());
        self.data.drain(..n);
        self.start = self.start + n;
        n
    }

    /// Appends up to `len` bytes starting at sequence number `seq` to `out`.
    pub(crate) fn read_at(&self, seq: SeqNumber, len: usize, out: &mut Vec<u8>) {
        let off = seq.distance_from(self.start).min(self.data.len());
        let end = off.saturating_add(len).min(self.data.len());
        if off >= end {
            return;
        }
        let (a, b) = self.data.as_slices();
        if off < a.len() {
            out.extend_from_slice(&a[off..end.min(a.len())]);
        }
        if end > a.len() {
            out.extend_from_slice(&b[off.saturating_sub(a.len())..end - a.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
