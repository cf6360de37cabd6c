//! [`Payload`]: a segment's text, held in a buffer it may share with the
//! headers it came behind.
//!
//! It exists so a large segment can travel from the adapter's read to the
//! connection without being copied: the adapter reads a frame into a
//! buffer, and hands the whole buffer over with the payload's range in it
//! (the headers in front are simply not part of the view). Everything
//! else sees a byte slice (`Deref<Target = [u8]>`), as a `Vec` would show.

use std::ops::{Deref, Range};

/// Segment text: `buf[range]`.
#[derive(Clone, Default)]
pub struct Payload {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Payload {
    /// No text.
    pub fn new() -> Payload {
        Payload::default()
    }

    /// The bytes `range` of `buf` (cut to what `buf` holds).
    pub fn in_buffer(buf: Vec<u8>, range: Range<usize>) -> Payload {
        let end = range.end.min(buf.len());
        let start = range.start.min(end);
        Payload { buf, start, end }
    }

    /// The whole buffer back, for reuse: its length and bytes are as they
    /// were (a caller that wants it empty clears it).
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// The capacity of the underlying buffer (how much memory the text
    /// holds on to, which can be far more than its length).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl From<Vec<u8>> for Payload {
    fn from(buf: Vec<u8>) -> Payload {
        let end = buf.len();
        Payload { buf, start: 0, end }
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        **self == **other
    }
}

impl Eq for Payload {}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_of_a_buffer_reads_as_its_bytes_and_gives_the_buffer_back() {
        let buf: Vec<u8> = (0..100).collect();
        let p = Payload::in_buffer(buf, 54..90);
        assert_eq!(p.len(), 36);
        assert_eq!(p[0], 54);
        assert_eq!(p, Payload::from((54..90).collect::<Vec<u8>>()));
        let back = p.into_buffer();
        assert_eq!(back.len(), 100, "the buffer comes back whole");
    }

    #[test]
    fn ranges_past_the_end_are_cut() {
        let p = Payload::in_buffer(vec![1, 2, 3], 2..10);
        assert_eq!(&*p, &[3]);
        let p = Payload::in_buffer(vec![1, 2, 3], 7..10);
        assert!(p.is_empty());
        assert!(Payload::new().is_empty());
    }
}
