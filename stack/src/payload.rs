//! [`Payload`]: a segment's text, held in a buffer it may share with the
//! headers it came behind.
//!
//! It exists so a large segment can travel from the adapter's read to the
//! connection without being copied: the adapter reads a frame into a
//! buffer, and hands the whole buffer over with the payload's range in it
//! (the headers in front are simply not part of the view). Everything
//! else sees a byte slice (`Deref<Target = [u8]>`), as a `Vec` would show.
//!
//! A buffer handed over that way is shared (reference-counted), so the
//! receive buffer can keep an in-order segment's text where it lies
//! instead of copying it ([`Payload::shared`]); a small payload copied out
//! of a read buffer is owned, and cloning it copies it.

use std::ops::{Deref, Range};
use std::sync::Arc;

/// Segment text: `buf[range]`.
#[derive(Clone)]
pub struct Payload {
    buf: Buf,
    start: usize,
    end: usize,
}

/// Where a payload's bytes are: a buffer of its own, or one a receive
/// buffer may hold on to as well.
#[derive(Clone)]
enum Buf {
    Owned(Vec<u8>),
    Shared(Arc<Vec<u8>>),
}

impl Default for Payload {
    fn default() -> Payload {
        Payload::from(Vec::new())
    }
}

impl Payload {
    /// No text.
    pub fn new() -> Payload {
        Payload::default()
    }

    /// The bytes `range` of `buf` (cut to what `buf` holds), in a buffer
    /// that can be shared: a large segment handed over in the buffer it
    /// was read into, which the receive buffer may keep.
    pub fn in_buffer(buf: Vec<u8>, range: Range<usize>) -> Payload {
        let end = range.end.min(buf.len());
        let start = range.start.min(end);
        Payload {
            buf: Buf::Shared(Arc::new(buf)),
            start,
            end,
        }
    }

    /// The whole buffer back, for reuse: its length and bytes are as they
    /// were (a caller that wants it empty clears it). Empty when the
    /// buffer is still shared (a receive buffer kept the text): the last
    /// holder gets it.
    pub fn into_buffer(self) -> Vec<u8> {
        match self.buf {
            Buf::Owned(v) => v,
            Buf::Shared(a) => Arc::try_unwrap(a).unwrap_or_default(),
        }
    }

    /// The capacity of the underlying buffer (how much memory the text
    /// holds on to, which can be far more than its length).
    pub fn buffer_capacity(&self) -> usize {
        self.bytes().capacity()
    }

    /// Another handle on the same bytes, with no copy, if the buffer is
    /// shared ([`Payload::in_buffer`]); None for an owned one.
    pub fn shared(&self) -> Option<Payload> {
        matches!(self.buf, Buf::Shared(_)).then(|| self.clone())
    }

    /// Drops the first `n` bytes of the view (at most all of them).
    pub(crate) fn advance(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
    }

    fn bytes(&self) -> &Vec<u8> {
        match &self.buf {
            Buf::Owned(v) => v,
            Buf::Shared(a) => a,
        }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(buf: Vec<u8>) -> Payload {
        let end = buf.len();
        Payload {
            buf: Buf::Owned(buf),
            start: 0,
            end,
        }
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes()[self.start..self.end]
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
    fn a_shared_buffer_goes_back_to_its_last_holder() {
        let p = Payload::in_buffer(vec![9; 64], 10..20);
        let kept = p.shared().expect("a handed-over buffer is shared");
        assert!(p.into_buffer().is_empty(), "still held");
        assert_eq!(&*kept, &[9; 10]);
        assert_eq!(kept.into_buffer().len(), 64, "the last holder gets it");
        assert!(Payload::from(vec![1, 2]).shared().is_none());
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
