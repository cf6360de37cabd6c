//! The bounded byte queue of the relaying apps (exec's pipes, the
//! proxy's back-end socket): one per direction, so a relay's memory per
//! connection is two fixed bounds, and back-pressure is simply "no room".

use std::cell::RefCell;
use std::io;

/// Spare buffers a thread keeps for the next connection's [`Buf`]s, so a
/// short relayed connection costs no allocation and no zeroing of its
/// buffers (measured: zeroing two fresh 64 KiB buffers per connection was
/// 2.5% of all CPU in a connection-rate run through the proxy).
const POOLED: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A zeroed-once buffer of `cap` bytes: a spare one of this thread's if
/// there is one of that size, else a new one.
fn take(cap: usize) -> Vec<u8> {
    let spare = SPARE.with(|s| {
        let mut s = s.borrow_mut();
        let i = s.iter().rposition(|b| b.len() == cap)?;
        Some(s.swap_remove(i))
    });
    spare.unwrap_or_else(|| vec![0; cap])
}

/// Keeps `buf` for the next [`take`] of this thread (up to [`POOLED`]).
fn give_back(buf: Vec<u8>) {
    if buf.is_empty() {
        return;
    }
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < POOLED {
            s.push(buf);
        }
    });
}

/// A bounded byte queue between a descriptor and the connection: bytes go in
/// at the end and leave from the front, and the space is reused.
#[derive(Debug)]
pub(crate) struct Buf {
    /// Allocated on first use, never beyond `cap`.
    data: Vec<u8>,
    start: usize,
    end: usize,
    cap: usize,
}

impl Buf {
    pub(crate) fn new(cap: usize) -> Buf {
        Buf {
            data: Vec::new(),
            start: 0,
            end: 0,
            cap,
        }
    }

    /// A buffer bounded by `cap` that holds `bytes` (at most `cap` of
    /// them): a relay's buffer as its checkpoint kept it, restored.
    pub(crate) fn with_held(cap: usize, bytes: &[u8]) -> Buf {
        let mut b = Buf::new(cap);
        if !bytes.is_empty() {
            let _ = b.fill_with(bytes.len(), |s| {
                let n = s.len().min(bytes.len());
                s[..n].copy_from_slice(&bytes[..n]);
                Ok(n)
            });
        }
        b
    }

    /// The bytes held, oldest first.
    pub(crate) fn held(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// How many more bytes it takes.
    pub(crate) fn room(&self) -> usize {
        self.cap - (self.end - self.start)
    }

    /// The first `n` held bytes are gone.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.clear();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Bytes of memory it holds (its buffer once allocated, else none).
    pub(crate) fn memory(&self) -> usize {
        self.data.capacity()
    }

    /// An empty buffer gives its memory back (to this thread's spares,
    /// for the next connection); the next fill takes one again.
    pub(crate) fn trim(&mut self) {
        if self.is_empty() {
            self.clear();
            give_back(std::mem::take(&mut self.data));
        }
    }

    /// Lets `fill` write up to `limit` bytes (and at most the room left)
    /// at the end; it returns how many it wrote.
    pub(crate) fn fill_with(
        &mut self,
        limit: usize,
        fill: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if self.data.len() < self.cap {
            self.data = take(self.cap);
        }
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let upto = self.cap.min(self.end + limit);
        let n = fill(&mut self.data[self.end..upto])?;
        self.end += n.min(upto - self.end);
        Ok(n)
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buf_reuses_its_space_and_never_exceeds_its_bound() {
        let mut b = Buf::new(8);
        assert_eq!(b.fill_with(100, |s| Ok(s.len())).ok(), Some(8));
        assert_eq!(b.room(), 0);
        b.consume(5);
        assert_eq!(b.room(), 5);
        let n = b.fill_with(2, |s| {
            s.copy_from_slice(b"xy");
            Ok(2)
        });
        assert_eq!(n.ok(), Some(2));
        assert_eq!(b.held().len(), 5);
        assert_eq!(&b.held()[3..], b"xy");
        assert_eq!(b.data.len(), 8);
        assert_eq!(b.memory(), 8);
        b.trim();
        assert_eq!(b.memory(), 8, "bytes held: kept");
        b.consume(5);
        b.trim();
        assert_eq!(b.memory(), 0, "empty: given back");
        assert_eq!(b.fill_with(3, |s| Ok(s.len())).ok(), Some(3));
        assert_eq!(b.held().len(), 3);
    }
}
