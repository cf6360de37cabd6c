//! Bytes the application queued: sent-but-unacknowledged, then unsent.
//!
//! They lie in pieces, each a run of bytes in a reference-counted buffer
//! of at most [`PIECE`] bytes, so a checkpoint for a backup processor
//! shares the bytes it carries instead of copying them
//! ([`SendBuffer::share_from`]): both copies of the send data had been a
//! third of a primary's and a backup's samples in a profiled download
//! with process pairs. A piece grows only while no checkpoint shares it;
//! after that, new bytes start a new piece, so shared bytes never change.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut, Range};
use std::sync::{Arc, Mutex};

use crate::not_cloned::NotCloned;
use crate::seq::SeqNumber;

/// Most bytes in one piece's buffer: a large segment (64 KiB at most)
/// spans at most two full pieces, as it spanned at most the two halves
/// of a ring.
const PIECE: usize = 64 * 1024;

/// Acknowledged pieces' buffers kept for reuse. Without process pairs a
/// stream gets each back as it is acknowledged and needs a window's worth
/// (four with the default 256 KiB); with them it gets them back only as
/// its backup applies checkpoints, up to 64 behind (the pairs' lazy
/// bell), a piece or so each: with 4 kept, a profiled download with pairs
/// still allocated most pieces afresh. A connection quiet for a second
/// gives them back ([`SendBuffer::shrink`]).
const SPARES: usize = 64;

/// The first buffer a piece gets: small, so a short reply costs little
/// memory; it grows (while unshared) up to [`PIECE`].
const FIRST_PIECE: usize = 4 * 1024;

/// Whole pieces' buffers a send buffer gets back for reuse (at most
/// [`SPARES`]), from whichever thread lets go of them last: shared with
/// the pieces it gave out.
type Spares = Arc<Mutex<Vec<Vec<u8>>>>;

/// A piece's bytes, and for a whole piece's buffer, the spares it goes
/// back to when its last holder drops it.
///
/// With process pairs the backup, a checkpoint behind, is the last
/// holder of every acknowledged piece: it freed them and the primary
/// allocated a fresh buffer per 64 KiB (`malloc` and `free` were 8% of a
/// primary's samples in a profiled download with pairs).
#[derive(Debug)]
struct PieceBuf {
    bytes: Vec<u8>,
    home: Option<Spares>,
}

impl Deref for PieceBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl DerefMut for PieceBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
}

impl Drop for PieceBuf {
    fn drop(&mut self) {
        let Some(home) = &self.home else {
            return;
        };
        // A poisoned lock (a panic on another thread) only loses reuse.
        if let Ok(mut spares) = home.lock() {
            if spares.len() < SPARES && self.bytes.capacity() >= PIECE {
                let mut v = std::mem::take(&mut self.bytes);
                v.clear();
                spares.push(v);
            }
        }
    }
}

/// Bytes an application hands the stack to send without a copy: content
/// it keeps anyway (a static or cached body, a generator's period), sent
/// from where it lies ([`Connection::send_shared`](crate::Connection::send_shared)).
///
/// It exists because an app's copy into the send buffer is a pass over
/// every byte the kernel's own sender does not make (it copies once, from
/// the caller's buffer into its socket buffers): chargen's copy was 10% of
/// a processor's samples in a profiled download. Cloning it is cheap (a
/// reference count); the bytes are never written while it is shared.
#[derive(Clone, Debug)]
pub struct SharedBytes(Arc<PieceBuf>);

impl SharedBytes {
    /// Shares `bytes` from now on.
    pub fn new(bytes: Vec<u8>) -> SharedBytes {
        SharedBytes(Arc::new(PieceBuf { bytes, home: None }))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0.bytes
    }
}

/// A run of queued bytes: `buf[from..to]`. While shared (a checkpoint or
/// the app's [`SharedBytes`] holds it too) the buffer is never written.
/// A piece the send buffer filled itself ends where its buffer does.
#[derive(Clone, Debug)]
struct Piece {
    buf: Arc<PieceBuf>,
    from: usize,
    to: usize,
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        self.buf.get(self.from..self.to).unwrap_or(&[])
    }

    fn len(&self) -> usize {
        self.to.saturating_sub(self.from)
    }

    /// True when `next` continues this piece in the same buffer (two runs
    /// of one shared buffer, queued one after the other).
    fn continued_by(&self, next: &Piece) -> bool {
        Arc::ptr_eq(&self.buf, &next.buf) && next.from == self.to
    }
}

/// The send bytes a checkpoint carries, shared with the primary's send
/// buffer ([`SendBuffer::share_from`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct SendTail {
    pieces: VecDeque<Piece>,
    len: usize,
}

impl SendTail {
    /// Bytes carried.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// A bounded byte queue whose first byte has sequence number `start`.
///
/// It exists so the connection can (re)read any range between SND.UNA and
/// the end of the queued data by sequence number, and release bytes as they
/// are acknowledged, without copying the remaining data.
#[derive(Clone, Debug)]
pub(crate) struct SendBuffer {
    pieces: VecDeque<Piece>,
    /// Bytes queued (the pieces' lengths summed).
    len: usize,
    capacity: usize,
    /// Sequence number of the first queued byte.
    start: SeqNumber,
    /// Whole pieces' buffers, acknowledged and let go of by every holder,
    /// for the next pieces (at most [`SPARES`]): a stream reuses a few
    /// buffers instead of allocating one per 64 KiB (fresh ones cost a
    /// page fault per page: 13% of a processor's samples in a profiled
    /// download). Made with the first whole piece, so a short reply pays
    /// nothing for it. A clone (a checkpoint) starts without them.
    spare: NotCloned<Option<Spares>>,
}

impl SendBuffer {
    pub(crate) fn new(capacity: usize, start: SeqNumber) -> Self {
        SendBuffer {
            pieces: VecDeque::new(),
            len: 0,
            capacity,
            start,
            spare: NotCloned::default(),
        }
    }

    /// Free space for the application.
    pub(crate) fn free(&self) -> usize {
        self.capacity.saturating_sub(self.len)
    }

    /// Queued bytes (unacknowledged plus unsent).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Sequence number one past the last queued byte.
    pub(crate) fn end(&self) -> SeqNumber {
        self.start + self.len
    }

    /// Queues as much of `bytes` as fits; returns how much.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.free());
        let mut rest = &bytes[..n];
        // The last piece grows while no one else holds it and it ends
        // where its buffer does.
        if let Some(p) = self.pieces.back_mut() {
            let to = p.to;
            if let Some(buf) = Arc::get_mut(&mut p.buf).filter(|b| b.len() < PIECE && b.len() == to)
            {
                rest = fill(buf, rest);
                p.to = buf.len();
            }
        }
        while !rest.is_empty() {
            let mut buf = self.new_piece(rest.len());
            rest = fill(&mut buf, rest);
            let to = buf.len();
            self.pieces.push_back(Piece {
                buf: Arc::new(buf),
                from: 0,
                to,
            });
        }
        self.len += n;
        n
    }

    /// Queues as much of `shared[range]` as fits without copying it (the
    /// piece refers to the app's buffer); returns how much. An empty or
    /// out-of-bounds range queues nothing.
    pub(crate) fn push_shared(&mut self, shared: &SharedBytes, range: Range<usize>) -> usize {
        if range.end > shared.as_slice().len() || range.start >= range.end {
            return 0;
        }
        let n = range.len().min(self.free());
        if n == 0 {
            return 0;
        }
        self.len += n;
        append(
            &mut self.pieces,
            Piece {
                buf: shared.0.clone(),
                from: range.start,
                to: range.start + n,
            },
        );
        n
    }

    /// An empty buffer for a new piece that `more` bytes wait for: a
    /// spare whole piece's if one waits; a new whole piece's for a stream
    /// (the last piece's buffer is a whole piece's, full or shared by a
    /// checkpoint) or for a whole piece of bytes, since growing one would
    /// copy it four times over (a tenth of a primary's samples in a
    /// profiled download with pairs, whose checkpoints share the last
    /// piece every pass); else a small first piece.
    fn new_piece(&mut self, more: usize) -> PieceBuf {
        let spare = self.spare.as_ref().and_then(|home| home.lock().ok()?.pop());
        let stream = self
            .pieces
            .back()
            .is_some_and(|p| p.buf.capacity() >= PIECE);
        if spare.is_none() && !stream && more < PIECE {
            return PieceBuf {
                bytes: Vec::with_capacity(more.max(FIRST_PIECE)),
                home: None,
            };
        }
        let home = self.spare.get_or_insert_with(Spares::default).clone();
        PieceBuf {
            bytes: spare.unwrap_or_else(|| Vec::with_capacity(PIECE)),
            home: Some(home),
        }
    }

    /// Whole pieces' buffers waiting for reuse.
    fn spares(&self) -> usize {
        self.spare.as_ref().map_or(0, |home| {
            home.lock()
                .map_or(0, |s| s.iter().map(Vec::capacity).sum::<usize>())
        })
    }

    /// Bytes of memory the queue holds (its buffers, not its length; a
    /// buffer a checkpoint shares counts here too).
    pub(crate) fn memory(&self) -> usize {
        // A buffer several pieces in a row refer to counts once.
        let mut last: Option<&Piece> = None;
        let mut bufs = 0;
        for p in &self.pieces {
            if !last.is_some_and(|l| Arc::ptr_eq(&l.buf, &p.buf)) {
                bufs += p.buf.capacity();
            }
            last = Some(p);
        }
        bufs + self.pieces.capacity() * std::mem::size_of::<Piece>() + self.spares()
    }

    /// Gives back the memory the queued bytes do not use.
    pub(crate) fn shrink(&mut self) {
        for p in &mut self.pieces {
            if let Some(b) = Arc::get_mut(&mut p.buf) {
                b.truncate(p.to);
                if p.from > 0 {
                    b.drain(..p.from);
                    p.to -= p.from;
                    p.from = 0;
                }
                b.shrink_to_fit();
            }
        }
        self.pieces.shrink_to_fit();
        if let Some(Ok(mut spares)) = self.spare.as_ref().map(|home| home.lock()) {
            *spares = Vec::new();
        }
    }

    /// Releases every byte below `ack`; returns how many were released.
    pub(crate) fn ack_to(&mut self, ack: SeqNumber) -> usize {
        let n = ack.distance_from(self.start).min(self.len);
        let mut left = n;
        while left > 0 {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            let len = front.len();
            if left < len {
                front.from += left;
                break;
            }
            left -= len;
            // A whole piece's buffer goes back to its spares once no
            // checkpoint holds it either (PieceBuf's drop).
            self.pieces.pop_front();
        }
        self.len -= n;
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
    /// (a checkpoint carries only the bytes its backup lacks, shared);
    /// give them back with [`SendBuffer::put_back`].
    pub(crate) fn take_data(&mut self) -> SendTail {
        let len = std::mem::take(&mut self.len);
        SendTail {
            pieces: std::mem::take(&mut self.pieces),
            len,
        }
    }

    /// Gives back the bytes [`SendBuffer::take_data`] took out.
    pub(crate) fn put_back(&mut self, data: SendTail) {
        self.pieces = data.pieces;
        self.len = data.len;
    }

    /// The queued bytes from `seq` to the end, shared (no byte copied):
    /// what a checkpoint carries. From then on the primary writes new
    /// bytes into new pieces.
    pub(crate) fn share_from(&self, seq: SeqNumber) -> SendTail {
        let mut skip = seq.distance_from(self.start).min(self.len);
        let mut pieces = VecDeque::new();
        for p in &self.pieces {
            let len = p.len();
            if skip >= len {
                skip -= len;
                continue;
            }
            pieces.push_back(Piece {
                buf: p.buf.clone(),
                from: p.from + skip,
                to: p.to,
            });
            skip = 0;
        }
        let len = pieces.iter().map(Piece::len).sum();
        SendTail { pieces, len }
    }

    /// Rebuilds the data of this buffer (empty, as a checkpoint carries
    /// it, starting at the primary's SND.UNA) from the backup's `older`
    /// buffer and `tail`, the bytes from `from` on: `older` is released
    /// up to this buffer's start, then `tail` is appended. When `from` is
    /// the start, `tail` is all the data. False (the buffer left empty)
    /// when the bytes do not join: `older` does not end at `from` (a
    /// checkpoint in between was lost), is missing, or starts after this
    /// buffer's start.
    pub(crate) fn rebuild(
        &mut self,
        older: Option<SendBuffer>,
        from: SeqNumber,
        tail: SendTail,
    ) -> bool {
        let start = self.start;
        let mut data = match older {
            Some(mut o) if from != start => {
                if o.start > start || o.end() != from || start > from {
                    return false;
                }
                o.ack_to(start);
                o.take_data()
            }
            _ if from == start => SendTail::default(),
            _ => return false,
        };
        if data.len.saturating_add(tail.len) > self.capacity {
            return false;
        }
        data.len += tail.len;
        for p in tail.pieces {
            append(&mut data.pieces, p);
        }
        self.put_back(data);
        true
    }

    /// The runs of bytes, piece by piece and in order, that hold the up
    /// to `len` bytes from sequence number `seq`.
    fn runs(&self, seq: SeqNumber, len: usize) -> impl Iterator<Item = &[u8]> {
        let mut skip = seq.distance_from(self.start).min(self.len);
        let mut left = len.min(self.len - skip);
        self.pieces.iter().filter_map(move |p| {
            let bytes = p.bytes();
            if left == 0 || skip >= bytes.len() {
                skip -= skip.min(bytes.len());
                return None;
            }
            let take = left.min(bytes.len() - skip);
            let run = &bytes[skip..skip + take];
            left -= take;
            skip = 0;
            Some(run)
        })
    }

    /// Appends up to `len` bytes starting at sequence number `seq` to `out`.
    pub(crate) fn read_at(&self, seq: SeqNumber, len: usize, out: &mut Vec<u8>) {
        for run in self.runs(seq, len) {
            out.extend_from_slice(run);
        }
    }

    /// Up to `len` bytes starting at sequence number `seq`, where they lie:
    /// at most two slices, in order (the second often empty). They cover
    /// fewer than `len` bytes when the range spans more than two pieces
    /// ([`SendBuffer::contiguous`] says how many they cover).
    pub(crate) fn slices_at(&self, seq: SeqNumber, len: usize) -> [&[u8]; 2] {
        let mut runs = self.runs(seq, len);
        [runs.next().unwrap_or(&[]), runs.next().unwrap_or(&[])]
    }

    /// How many of the `len` bytes from `seq` [`SendBuffer::slices_at`]
    /// lends (at most two pieces' worth).
    pub(crate) fn contiguous(&self, seq: SeqNumber, len: usize) -> usize {
        let [a, b] = self.slices_at(seq, len);
        a.len() + b.len()
    }
}

/// Queues `piece` after `pieces`: a piece that goes on from the last one's
/// end in the same buffer (ranges of an app's shared bytes pushed one
/// after another, or a checkpoint's tail joined to the backup's copy)
/// lengthens it instead, so a large segment finds it in one run. Only the
/// end moves; the bytes, shared, never change.
fn append(pieces: &mut VecDeque<Piece>, piece: Piece) {
    match pieces.back_mut() {
        Some(last) if last.continued_by(&piece) => last.to = piece.to,
        _ => pieces.push_back(piece),
    }
}

/// Appends to a piece's buffer what of `bytes` fits in a piece, growing
/// it geometrically, never past [`PIECE`]; returns the rest.
fn fill<'a>(buf: &mut Vec<u8>, bytes: &'a [u8]) -> &'a [u8] {
    let take = bytes.len().min(PIECE.saturating_sub(buf.len()));
    if buf.capacity() - buf.len() < take {
        let target = (buf.capacity() * 2).clamp(buf.len() + take, PIECE);
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(&bytes[..take]);
    &bytes[take..]
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

    fn all(b: &SendBuffer) -> Vec<u8> {
        let mut out = Vec::new();
        b.read_at(b.start(), usize::MAX, &mut out);
        out
    }

    #[test]
    fn rebuild_joins_an_older_copy_and_a_tail_or_refuses() {
        let mut primary = SendBuffer::new(16, SeqNumber(u32::MAX - 3));
        primary.push(b"abcdefgh");
        let mut backup = primary.clone();
        primary.ack_to(SeqNumber(u32::MAX - 1));
        primary.push(b"ijk");
        assert_eq!(all(&primary), b"cdefghijk");
        assert_eq!(all(&backup), b"abcdefgh", "shared bytes never change");
        // The checkpoint: empty at the primary's start, the tail apart.
        let mut cp = primary.clone();
        let data = cp.take_data();
        assert_eq!(cp.len(), 0);
        cp.put_back(data);
        let tail = primary.share_from(backup.end());
        assert_eq!(tail.len(), 3);
        let mut empty = primary.clone();
        empty.take_data();
        let mut got = empty.clone();
        assert!(got.rebuild(Some(backup.clone()), backup.end(), tail.clone()));
        assert_eq!(all(&got), b"cdefghijk");
        assert_eq!((got.start(), got.end()), (primary.start(), primary.end()));
        // A tail that does not start where the older copy ends: a gap.
        let late = primary.share_from(backup.end() + 1);
        assert!(!empty
            .clone()
            .rebuild(Some(backup.clone()), backup.end() + 1, late));
        // No older copy and only a tail: a gap; the whole data: fine.
        assert!(!empty.clone().rebuild(None, backup.end(), tail));
        let whole = primary.share_from(primary.start());
        let mut fresh = empty.clone();
        assert!(fresh.rebuild(None, primary.start(), whole));
        assert_eq!(all(&fresh), b"cdefghijk");
        // An older copy that starts after the checkpoint's start: refused.
        backup.ack_to(SeqNumber(2));
        let end = backup.end();
        assert!(!empty
            .clone()
            .rebuild(Some(backup), end, SendTail::default()));
    }

    /// Bytes a checkpoint shares are never written again: the primary's
    /// later bytes go into a new piece, and a range over several pieces
    /// is lent two pieces at a time.
    #[test]
    fn shared_pieces_stay_as_shared_and_ranges_span_pieces() {
        let mut b = SendBuffer::new(1 << 20, SeqNumber(7));
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut shares = Vec::new();
        let mut at = 0;
        for chunk in [10_000, 100_000, 5, 70_000, 120_000 - 5] {
            assert_eq!(b.push(&data[at..at + chunk]), chunk);
            shares.push((at, b.share_from(SeqNumber(7) + at)));
            at += chunk;
        }
        assert_eq!(all(&b), &data[..at]);
        for (from, tail) in &shares {
            let mut got = Vec::new();
            for p in &tail.pieces {
                got.extend_from_slice(p.bytes());
            }
            let end = from + tail.len();
            assert_eq!(got, &data[*from..end], "a shared tail kept its bytes");
        }
        // Two slices cover at most two pieces; read_at reads across all.
        let seq = SeqNumber(7) + 9_000;
        let n = b.contiguous(seq, 200_000);
        assert!(n > 0 && n < 200_000, "{n}");
        let [x, y] = b.slices_at(seq, 200_000);
        assert_eq!([x, y].concat(), &data[9_000..9_000 + n]);
        let mut out = Vec::new();
        b.read_at(seq, 200_000, &mut out);
        assert_eq!(out, &data[9_000..209_000]);
        assert_eq!(b.ack_to(SeqNumber(7) + 150_000), 150_000);
        assert_eq!(all(&b), &data[150_000..at]);
    }

    /// A whole piece acknowledged while a checkpoint shares it is reused
    /// once the checkpoint (here on another thread, as a backup's) lets
    /// go of it, and not before: the shared bytes never change, and a
    /// stream with a backup does not allocate a fresh buffer per piece.
    #[test]
    fn shared_pieces_come_back_once_the_checkpoint_lets_go() {
        let mut b = SendBuffer::new((SPARES + 8) * PIECE, SeqNumber(1));
        let first = vec![1u8; PIECE];
        assert_eq!(b.push(&first), PIECE);
        b.push(&[2u8; PIECE]);
        let shared = b.share_from(SeqNumber(1));
        let held = shared.pieces[0].buf.bytes.as_ptr();
        b.ack_to(SeqNumber(1) + PIECE);
        // Still shared: the next piece is a new buffer, the shared bytes
        // stay as they were.
        b.push(&[3u8; PIECE]);
        assert_ne!(b.pieces[1].buf.bytes.as_ptr(), held);
        assert_eq!(shared.pieces[0].bytes(), &first[..]);
        assert_eq!(b.spares(), 0);
        // Let go on another thread: the next piece gets that buffer,
        // emptied and refilled.
        std::thread::spawn(move || drop(shared))
            .join()
            .expect("the holder's thread");
        assert_eq!(b.spares(), PIECE);
        b.push(&[4u8; PIECE]);
        assert_eq!(b.pieces[2].buf.bytes.as_ptr(), held);
        assert_eq!(b.spares(), 0);
        let mut out = Vec::new();
        b.read_at(SeqNumber(1) + 3 * PIECE, PIECE, &mut out);
        assert_eq!(out, vec![4u8; PIECE]);
        // However many come back at once, no more than SPARES are kept.
        assert_eq!(
            b.push(&vec![5u8; (SPARES + 4) * PIECE]),
            (SPARES + 4) * PIECE
        );
        b.ack_to(b.end());
        assert_eq!(b.spares(), SPARES * PIECE);
        b.shrink();
        assert_eq!(b.spares(), 0);
    }

    /// Shared bytes are queued where they lie: runs of one buffer in a
    /// row make one piece (at push, and when a rebuild joins them), a
    /// copied push after them starts a buffer of its own (the shared one is
    /// never written), their memory counts once, and a range outside the
    /// bytes queues nothing.
    #[test]
    fn shared_bytes_are_sent_from_where_they_lie() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
        let shared = SharedBytes::new(data.clone());
        let mut b = SendBuffer::new(1 << 20, SeqNumber(100));
        assert_eq!(b.push_shared(&shared, 0..10_000), 10_000);
        assert_eq!(b.push_shared(&shared, 10_000..30_000), 20_000);
        assert_eq!(b.pieces.len(), 1, "continued in one piece");
        assert_eq!(b.push(b"tail"), 4);
        assert_eq!(b.pieces.len(), 2);
        assert_eq!(
            shared.as_slice(),
            &data[..],
            "the shared bytes stay as they were"
        );
        let mut want = data[..30_000].to_vec();
        want.extend_from_slice(b"tail");
        assert_eq!(all(&b), want);
        // One run from the shared buffer, the next from the copy.
        let [x, y] = b.slices_at(SeqNumber(100) + 5_000, 100_000);
        assert_eq!((x.len(), y), (25_000, &b"tail"[..]));
        assert_eq!(
            x.as_ptr(),
            shared.as_slice()[5_000..].as_ptr(),
            "not copied"
        );
        assert!(b.memory() < data.len() + 4 * 1024 + 1024, "{}", b.memory());
        // A checkpoint's tail and an older copy joined again read as one run.
        let mut older = SendBuffer::new(1 << 20, SeqNumber(100));
        older.push_shared(&shared, 0..12_000);
        let mut joined = SendBuffer::new(1 << 20, SeqNumber(100));
        let mut tail = SendBuffer::new(1 << 20, SeqNumber(100));
        tail.push_shared(&shared, 0..12_000);
        tail.push_shared(&shared, 12_000..40_000);
        let part = tail.share_from(SeqNumber(100) + 12_000);
        assert!(joined.rebuild(Some(older), SeqNumber(100) + 12_000, part));
        assert_eq!(joined.pieces.len(), 1, "joined into one piece");
        assert_eq!(joined.contiguous(SeqNumber(100), 100_000), 40_000);
        assert_eq!(all(&joined), &data[..40_000]);
        // Acknowledged in part, then wholly.
        assert_eq!(b.ack_to(SeqNumber(100) + 29_000), 29_000);
        assert_eq!(all(&b), [&data[29_000..30_000], b"tail"].concat());
        b.ack_to(b.end());
        assert_eq!(b.len(), 0);
        // Outside the bytes, or empty: nothing queued.
        assert_eq!(b.push_shared(&shared, 49_000..50_001), 0);
        assert_eq!(b.push_shared(&shared, 7..7), 0);
        // No more than fits.
        let mut small = SendBuffer::new(1_000, SeqNumber(1));
        assert_eq!(small.push_shared(&shared, 0..50_000), 1_000);
        assert_eq!(small.free(), 0);
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
