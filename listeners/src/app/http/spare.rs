//! Spare byte buffers an HTTP connection takes for its request and
//! response bytes and gives back when it ends, so a short connection
//! (`Connection: close`, one request) costs no allocation for them.
//! Measured (issue 16): the request buffer, the response buffer and its
//! growth while the head was written were 2 of the 13 `malloc` and 5 of
//! the 8 `realloc` calls per request of `wrk -H "Connection: close"`.
//!
//! Each thread keeps its own spares (a processor's connections start and
//! end on its thread), at most [`POOLED`] of them and none larger than
//! [`MAX_SPARE`] bytes, so what the spares hold is bounded by
//! `POOLED * MAX_SPARE` per thread (256 KiB) whatever the traffic was.
//! A buffer is cleared when given back: the next connection sees none of
//! the previous one's bytes.

use std::cell::RefCell;

/// Buffers a thread keeps at most.
pub(super) const POOLED: usize = 64;

/// Largest capacity kept: a request head or a small response. A buffer
/// that grew beyond it (a large pipelined burst, `/stats` with many
/// processors, the dashboard) is freed.
pub(super) const MAX_SPARE: usize = 4 * 1024;

/// Capacity a buffer taken when there is no spare starts with, so writing
/// a small response head does not grow it several times.
const FIRST: usize = 512;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer: a spare one of this thread's if there is one, else a
/// new one with room for [`FIRST`] bytes (allocated at its first use).
pub(super) fn take() -> Vec<u8> {
    SPARE
        .try_with(|s| s.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Makes sure `buf` has room for `more` bytes: a buffer never allocated
/// starts at [`FIRST`] bytes (or `more`, if larger), so a response head
/// written piece by piece costs one allocation, not one per doubling.
pub(super) fn reserve(buf: &mut Vec<u8>, more: usize) {
    if buf.capacity() == 0 {
        buf.reserve(more.max(FIRST));
    } else {
        buf.reserve(more);
    }
}

/// Keeps `buf`, emptied, for the next [`take`] of this thread, unless it
/// holds no memory, is larger than [`MAX_SPARE`], or [`POOLED`] are kept.
pub(super) fn give_back(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > MAX_SPARE {
        return;
    }
    buf.clear();
    // A thread being torn down has no spares left to keep it in.
    let _ = SPARE.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < POOLED {
            s.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many spares this thread holds.
    fn held() -> usize {
        SPARE.with(|s| s.borrow().len())
    }

    #[test]
    fn a_spare_comes_back_empty_with_its_memory() {
        let mut b = take();
        reserve(&mut b, 10);
        b.extend_from_slice(b"GET /secret HTTP/1.1\r\n");
        let cap = b.capacity();
        let ptr = b.as_ptr();
        give_back(b);
        let again = take();
        assert!(again.is_empty(), "the previous connection's bytes are gone");
        assert_eq!(again.capacity(), cap);
        assert_eq!(again.as_ptr(), ptr, "the same allocation, reused");
    }

    #[test]
    fn spares_are_bounded_in_number_and_size() {
        for _ in 0..POOLED + 10 {
            give_back(Vec::with_capacity(100));
        }
        assert_eq!(held(), POOLED);
        while held() > 0 {
            take();
        }
        give_back(Vec::with_capacity(MAX_SPARE + 1));
        give_back(Vec::new());
        assert_eq!(held(), 0, "too large or empty: not kept");
        assert_eq!(take().capacity(), 0, "no spare: a new, unallocated one");
    }

    #[test]
    fn the_first_reservation_covers_a_response_head() {
        let mut b = Vec::new();
        reserve(&mut b, 1);
        assert!(b.capacity() >= FIRST);
        let mut big = Vec::new();
        reserve(&mut big, 3 * FIRST);
        assert!(big.capacity() >= 3 * FIRST);
    }
}
