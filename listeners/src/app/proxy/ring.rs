//! A fixed-size byte ring: one direction of a relay holds here what it
//! read from one side and has not yet handed to the other.
//!
//! Its size never changes, which is what makes a relayed connection's
//! memory bounded; its space is allocated on first use, so a connection
//! that never moves a byte (a refused connect, a SYN flood) costs none.

/// See the module doc. Bytes go in at the tail and leave from the head;
/// the held bytes may wrap around the end of the storage, so they are
/// offered as two slices.
#[derive(Debug)]
pub(super) struct Ring {
    /// Empty until first written to, then exactly `cap` bytes.
    data: Vec<u8>,
    cap: usize,
    /// Index of the oldest held byte.
    head: usize,
    /// Number of bytes held.
    len: usize,
}

impl Ring {
    /// A ring of `cap` bytes (at least one), nothing allocated yet.
    pub(super) fn new(cap: usize) -> Ring {
        Ring {
            data: Vec::new(),
            cap: cap.max(1),
            head: 0,
            len: 0,
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is held.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many more bytes fit.
    pub(super) fn room(&self) -> usize {
        self.cap - self.len
    }

    /// The held bytes, oldest first: the second slice continues the
    /// first (it is empty unless the bytes wrap).
    pub(super) fn filled(&self) -> [&[u8]; 2] {
        if self.len == 0 {
            return [&[], &[]];
        }
        let end = self.head + self.len;
        if end <= self.cap {
            [&self.data[self.head..end], &[]]
        } else {
            [&self.data[self.head..], &self.data[..end - self.cap]]
        }
    }

    /// The free space, in the order it fills: the first slice is non-empty
    /// whenever there is room. Write into it, then [`Ring::commit`].
    pub(super) fn free_mut(&mut self) -> [&mut [u8]; 2] {
        if self.data.len() != self.cap {
            self.data = vec![0; self.cap];
        }
        let tail = (self.head + self.len) % self.cap;
        if self.room() == 0 {
            return [&mut [], &mut []];
        }
        if tail >= self.head {
            // Free: tail..cap, then 0..head.
            let (start, rest) = self.data.split_at_mut(tail);
            [rest, &mut start[..self.head]]
        } else {
            [&mut self.data[tail..self.head], &mut []]
        }
    }

    /// `n` bytes were written into the free space (at most `room()`).
    pub(super) fn commit(&mut self, n: usize) {
        self.len += n.min(self.room());
    }

    /// The `n` oldest bytes were taken (at most `len()`).
    pub(super) fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) % self.cap;
        self.len -= n;
        if self.len == 0 {
            self.head = 0;
        }
    }

    /// Drops what is held and gives the space back to the allocator.
    pub(super) fn release(&mut self) {
        self.data = Vec::new();
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `src` into the ring's free space as a socket read would.
    fn put(r: &mut Ring, src: &[u8]) -> usize {
        let [a, b] = r.free_mut();
        let n1 = a.len().min(src.len());
        a[..n1].copy_from_slice(&src[..n1]);
        let n2 = b.len().min(src.len() - n1);
        b[..n2].copy_from_slice(&src[n1..n1 + n2]);
        r.commit(n1 + n2);
        n1 + n2
    }

    fn held(r: &Ring) -> Vec<u8> {
        let [a, b] = r.filled();
        [a, b].concat()
    }

    #[test]
    fn allocates_nothing_until_written() {
        let r = Ring::new(64 * 1024);
        assert_eq!(r.data.capacity(), 0);
        assert_eq!(r.room(), 64 * 1024);
        assert!(r.is_empty());
    }

    #[test]
    fn keeps_order_across_the_wrap_and_never_exceeds_its_size() {
        let mut r = Ring::new(10);
        assert_eq!(put(&mut r, b"abcdefg"), 7);
        r.consume(5);
        assert_eq!(held(&r), b"fg");
        // 8 more fit: 3 at the end, 5 wrapped to the front.
        assert_eq!(put(&mut r, b"hijklmnopq"), 8);
        assert_eq!(r.room(), 0);
        assert_eq!(held(&r), b"fghijklmno");
        assert_eq!(r.filled()[1], b"klmno", "the wrapped part");
        assert_eq!(put(&mut r, b"x"), 0, "full");
        assert!(r.free_mut()[0].is_empty());
        r.consume(4);
        assert_eq!(held(&r), b"jklmno");
        assert_eq!(put(&mut r, b"rstu"), 4);
        assert_eq!(held(&r), b"jklmnorstu");
        assert_eq!(r.data.len(), 10);
    }

    #[test]
    fn streams_a_long_input_in_odd_pieces_without_loss() {
        let input: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = Ring::new(4096);
        let (mut fed, mut out) = (0, Vec::new());
        let mut step = 0usize;
        while out.len() < input.len() {
            step += 1;
            let want = (step * 37) % 3000 + 1;
            let end = (fed + want).min(input.len());
            fed += put(&mut r, &input[fed..end]);
            let take = ((step * 53) % 2500 + 1).min(r.len());
            let h = held(&r);
            out.extend_from_slice(&h[..take]);
            r.consume(take);
        }
        assert_eq!(out, input);
    }

    #[test]
    fn release_frees_the_space_and_empties() {
        let mut r = Ring::new(100);
        put(&mut r, b"hello");
        r.release();
        assert!(r.is_empty());
        assert_eq!(r.data.capacity(), 0);
        assert_eq!(put(&mut r, b"again"), 5);
        assert_eq!(held(&r), b"again");
    }
}
