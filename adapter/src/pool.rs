//! [`payloads`] and [`frames`]: the buffers that carry segment payloads
//! from the RX thread to the processors, and back.
//!
//! The RX thread copies each small TCP segment's payload out of its read
//! buffer (which the next read overwrites) into a buffer from the payload
//! pool; a large one goes over in the read buffer itself, and the RX
//! thread reads on into another from the frame pool. The
//! processor, once the stack has taken the bytes into the connection's
//! receive buffer, gives it back. In steady state no payload costs an
//! allocation, and buffers freed on another thread than the one that
//! allocated them (malloc's slow path) no longer happen per segment.
//!
//! One pool per process: buffers are plain memory, so adapters in one
//! process (the test suite runs many) can share them.

use parking_lot::Mutex;
use std::sync::OnceLock;

/// Buffers the payload pool keeps at most; beyond that, given-back
/// buffers are freed. Enough for every processor queue's worth of large
/// segments.
const PAYLOAD_BUFFERS: usize = 4096;

/// Buffers smaller than this are not worth keeping; larger ones (beyond
/// the largest frame) are not kept either.
const MIN_KEPT: usize = 256;
const MAX_KEPT: usize = 256 << 10;

/// A bounded pool of byte buffers, last in first out: the buffer taken
/// is the one given back most recently, still in the cache (a FIFO cycled
/// through all of them, and every payload copy went to cold memory: the
/// copy took 40% of the RX thread in a profiled upload).
pub struct PayloadPool {
    free: Mutex<Vec<Vec<u8>>>,
    max: usize,
}

impl PayloadPool {
    /// A pool that keeps at most `max` buffers.
    pub fn new(max: usize) -> PayloadPool {
        PayloadPool {
            free: Mutex::new(Vec::with_capacity(max.min(PAYLOAD_BUFFERS))),
            max,
        }
    }

    /// A buffer from the pool when it has one (else a new, empty one).
    /// It keeps the length and bytes it was given back with: a caller that
    /// wants it empty clears it, one that reads into it whole (the RX
    /// thread's frame buffer) needs no zeroing of what is already there.
    pub fn take(&self) -> Vec<u8> {
        self.free.lock().pop().unwrap_or_default()
    }

    /// An empty buffer from the pool with room for `len` bytes, and never
    /// for fewer than the pool keeps: a small payload copied into a new
    /// buffer of its own size (an HTTP request, ~80 bytes) was too small
    /// to be kept when given back, so every one cost a `malloc` (issue 16:
    /// 1.5 per short connection).
    pub fn take_for(&self, len: usize) -> Vec<u8> {
        let mut b = self.take();
        b.clear();
        b.reserve(len.max(MIN_KEPT));
        b
    }

    /// Gives a buffer back (freed instead if the pool is full or the
    /// buffer too small or too large to be worth keeping).
    pub fn give(&self, v: Vec<u8>) {
        if (MIN_KEPT..=MAX_KEPT).contains(&v.capacity()) {
            let mut free = self.free.lock();
            if free.len() < self.max {
                free.push(v);
            }
        }
    }
}

/// The process's payload pool.
pub fn payloads() -> &'static PayloadPool {
    static POOL: OnceLock<PayloadPool> = OnceLock::new();
    POOL.get_or_init(|| PayloadPool::new(PAYLOAD_BUFFERS))
}

/// Frame buffers the frame pool keeps at most (64 KiB each).
const FRAME_BUFFERS: usize = 512;

/// The process's pool of frame buffers: whole TAP reads whose large
/// segment text went to a processor in place
/// ([`crate::rx::RxQueue::handle_rx_buffer`]); they come back once the
/// stack has the bytes, at full length, so reading into one again needs no
/// zeroing.
pub fn frames() -> &'static PayloadPool {
    static POOL: OnceLock<PayloadPool> = OnceLock::new();
    POOL.get_or_init(|| PayloadPool::new(FRAME_BUFFERS))
}

/// A frame buffer of `len` bytes from [`frames`] (a new one, zeroed,
/// when the pool is empty).
pub fn frame_buffer(len: usize) -> Vec<u8> {
    let mut b = frames().take();
    if b.len() < len {
        b.resize(len, 0);
    }
    b
}

/// Gives a segment's buffer back where it came from: a whole frame buffer
/// (at least [`crate::tap::MAX_FRAME_LEN`] long) to [`frames`], any other
/// to [`payloads`].
pub fn recycle(buf: Vec<u8>) {
    if buf.len() >= crate::tap::MAX_FRAME_LEN {
        frames().give(buf);
    } else {
        payloads().give(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_buffer_given_comes_back_first_as_it_was() {
        let p = PayloadPool::new(8);
        let mut a = Vec::with_capacity(2048);
        a.extend_from_slice(b"first");
        let mut b = Vec::with_capacity(2048);
        b.extend_from_slice(b"second");
        let ptr = b.as_ptr();
        p.give(a);
        p.give(b);
        p.give(Vec::with_capacity(8));
        let back = p.take();
        assert_eq!(back.as_ptr(), ptr, "the last one given (cache-warm)");
        assert_eq!(back, b"second", "length and bytes kept");
        assert_eq!(p.take(), b"first");
        assert_eq!(p.take().capacity(), 0, "the tiny one was freed");
    }

    #[test]
    fn a_small_payload_buffer_is_big_enough_to_be_kept_and_comes_back_empty() {
        let p = PayloadPool::new(8);
        let mut b = p.take_for(80);
        assert!(b.capacity() >= MIN_KEPT);
        b.extend_from_slice(b"GET / HTTP/1.1 from the last connection");
        let ptr = b.as_ptr();
        p.give(b);
        let again = p.take_for(80);
        assert_eq!(again.as_ptr(), ptr, "kept and reused: no allocation");
        assert!(again.is_empty(), "nothing of the previous payload");
        assert!(p.take_for(MAX_KEPT + 1).capacity() > MAX_KEPT);
    }

    #[test]
    fn the_pool_keeps_at_most_its_bound() {
        let p = PayloadPool::new(2);
        for _ in 0..3 {
            p.give(Vec::with_capacity(1024));
        }
        assert!(p.take().capacity() > 0);
        assert!(p.take().capacity() > 0);
        assert_eq!(p.take().capacity(), 0, "the third was freed");
    }
}
