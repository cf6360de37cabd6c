//! Packet tracing: every frame in and out, with the adapter's decision,
//! to a pcapng file (`--pcap FILE`) and/or as tcpdump-like lines on
//! stderr (`--trace`, `--trace=conn`).
//!
//! Like smoltcp's `phy/tracer.rs` and `phy/pcap_writer.rs` this is
//! middleware around the frame device, not `if trace {..}` spread through
//! the RX loop: frames going out pass through a [`TracingSink`] wrapped
//! around the TAP's [`FrameSink`](crate::emit::FrameSink); frames coming
//! in are recorded by the RX thread with [`Tracer::record_with`] and the
//! decision text of [`comment::rx_comment`].
//!
//! Nothing here ever slows traffic down. The hot path copies the frame
//! into a bounded queue ([`QUEUE_RECORDS`] records, [`QUEUE_BYTES`] bytes)
//! or, when the queue is full, counts the record as lost
//! ([`TraceStats::lost`]). One writer thread (`vnic-trace`) drains the
//! queue: it appends Enhanced Packet Blocks to the pcapng file and writes
//! the lines to stderr. It flushes whole blocks only, when the queue has
//! been empty for a few milliseconds, every 200 ms, or after 64 KiB, so a
//! file cut off by SIGKILL still reads cleanly up to its last flush.
//! [`Tracer::close`] (the SIGINT/SIGTERM path) drains the queue and
//! closes the file.
//!
//! When tracing is off, [`Tracer::record_with`] is one relaxed atomic
//! load and never builds its comment.
//!
//! Live captures (`vnic capture`, [`Tracer::capture`]) take their frames
//! from the same queue: the writer thread filters them (tcpdump filters
//! compiled by libpcap, [`filter`]) and hands each capture its pcapng
//! through a bounded buffer of its own ([`capture`]). `--pcap-filter`
//! keeps only matching frames in the pcapng file the same way.
//!
//! Submodules: [`comment`] (decision texts), [`mod@line`] (the stderr line),
//! `pcapng` (the file and its rotation), `writer` (the writer thread),
//! [`sink`] (the outgoing-frame wrapper), [`filter`] (tcpdump filters),
//! `libpcap` (libpcap, loaded at run time for the filters) and
//! [`capture`] (live captures).

pub mod batch;
pub mod block;
pub mod capture;
pub mod comment;
mod direct;
pub mod filter;
mod libpcap;
pub mod line;
mod pcapng;
mod queue;
pub mod sink;
pub mod turn;
mod writer;

#[cfg(test)]
mod capture_tests;
#[cfg(test)]
mod frames;
#[cfg(test)]
mod tests;

pub use capture::{CaptureError, CaptureSpec, CaptureStats, CaptureStream, Next};
pub use comment::{Note, Origin};
pub use filter::{FilterError, FrameFilter};
pub use sink::TracingSink;

use crate::pool::PayloadPool;
use crossbeam_channel::{Sender, TrySendError};
use parking_lot::Mutex;
use queue::{trace_queue, TraceQueue};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// Which way a frame went, seen from the adapter: `In` was read from the
/// TAP, `Out` was written to it. Shown in lines and in pcapng comments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Read from the TAP (sent by the host).
    In,
    /// Written to the TAP (sent by the adapter or a processor).
    Out,
}

impl Direction {
    /// The word used in comments and lines (`in` or `out`).
    pub fn name(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// What `--trace` prints on stderr: a line per frame, or only the
/// connection events the processors report (`--trace=conn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineMode {
    /// One line per frame, plus the connection events.
    Frames,
    /// Only connection events (new, placed on cpu K, closed, reset,
    /// retransmit).
    Conn,
}

/// What to trace, from the command line (`--pcap`, `--pcap-max-mb`,
/// `--pcap-max-files`, `--pcap-snaplen`, `--trace`) plus what the pcapng
/// Interface Description Block says about the interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceOptions {
    /// The pcapng file to write, if any.
    pub pcap: Option<PathBuf>,
    /// Start a new file when the current one would pass this many MiB
    /// (FILE, then `STEM-1.EXT`, `STEM-2.EXT`, ...). `None`: one file.
    pub pcap_max_mb: Option<u64>,
    /// With `pcap_max_mb`: keep at most this many files, like tcpdump's
    /// `-W`, so a long capture cannot fill the disk. After
    /// `STEM-(N-1).EXT` the next rotation starts FILE again (truncated,
    /// with fresh headers), then `STEM-1.EXT`, ... `None`: no limit.
    pub pcap_max_files: Option<u32>,
    /// Bytes of each frame kept in the file (`--pcap-snaplen`; at most
    /// [`SNAPLEN`]); the original length is recorded too.
    pub snaplen: usize,
    /// Lines on stderr, if any.
    pub lines: Option<LineMode>,
    /// The TAP's name (pcapng `if_name`).
    pub iface: String,
    /// The adapter's MAC (pcapng `if_MACaddr`).
    pub mac: [u8; 6],
    /// A tcpdump filter expression (`--pcap-filter`): only the frames it
    /// keeps go to the pcapng files (lines and captures are not
    /// affected).
    pub pcap_filter: Option<String>,
    /// The replay block ([`block::ReplayBlock`], rendered): the Section
    /// Header Block's comment of every pcapng file this tracer writes,
    /// so `vnic replay` knows what the frames alone do not say.
    pub section_comment: Option<String>,
}

/// How a pcapng file rotates: a new file when the current one would pass
/// `max_bytes`, and a ring of at most `max_files` files (see
/// [`TraceOptions::pcap_max_mb`] and [`TraceOptions::pcap_max_files`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Start a new file past this size; `None`: one file, no limit.
    pub max_bytes: Option<u64>,
    /// Keep at most this many files (only with `max_bytes`).
    pub max_files: Option<u32>,
}

/// What the tracer did so far, for `vnic status` and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceStats {
    /// Frames written to pcapng files.
    pub written: u64,
    /// Lines written to stderr (frames and connection events).
    pub lines: u64,
    /// Records dropped because the writer fell behind (queue full), or
    /// because their file could not be written.
    pub lost: u64,
    /// New files started because of `--pcap-max-mb`; with
    /// `--pcap-max-files` it keeps counting when the ring wraps (a file
    /// started again counts as a new one).
    pub rotated: u64,
    /// The pcapng file being written now.
    pub file: Option<PathBuf>,
    /// How that file rotates.
    pub rotation: Rotation,
    /// The last error writing a file (writing stops on error).
    pub last_error: Option<String>,
    /// The pcapng files' filter (`--pcap-filter`), if any.
    pub filter: Option<String>,
    /// The live captures running now.
    pub captures: Vec<CaptureStats>,
}

/// How many records the queue between the hot path and the writer holds.
pub const QUEUE_RECORDS: usize = 65536;

/// How many frame bytes may wait in that queue; past it, records are lost.
pub const QUEUE_BYTES: usize = 64 << 20;

/// Frames longer than this are always cut in the file (the largest
/// `--pcap-snaplen`, and the default); the original length is kept.
pub const SNAPLEN: usize = 262_144;

/// Bits of [`Shared::mode`]: what is on.
const PCAP: u8 = 1;
const FRAME_LINES: u8 = 2;
const CONN_LINES: u8 = 4;
/// At least one live capture is running.
pub(crate) const CAPTURE: u8 = 8;
/// Any of these means frames are recorded.
const RECORDING: u8 = PCAP | FRAME_LINES | CAPTURE;

/// How long [`Tracer::close`] waits for the live captures to send their
/// last frames and their report (a stream that cannot write gives up
/// after the control socket's write timeout).
const CAPTURE_END_WAIT: Duration = Duration::from_secs(5);

/// How long control calls (`set_pcap`, `close`) wait for the writer.
const CONTROL_WAIT: Duration = Duration::from_secs(5);

/// Where the writer sends its lines: stderr, or a buffer in tests.
#[derive(Clone, Default)]
pub(crate) enum LineOut {
    /// The process's stderr.
    #[default]
    Stderr,
    /// A buffer (tests read it).
    #[cfg_attr(not(test), allow(dead_code))]
    Buffer(Arc<Mutex<Vec<u8>>>),
}

/// Knobs the tests turn: queue size, rotation in bytes, a slow writer.
#[derive(Clone)]
pub(crate) struct Tuning {
    /// Capacity of the queue, in records.
    pub queue_records: usize,
    /// Rotate files at this size (bytes).
    pub max_bytes: Option<u64>,
    /// The writer sleeps this long per frame (to test losses).
    pub writer_delay: Duration,
    /// Where lines go.
    pub line_out: LineOut,
    /// Bytes a live capture may have waiting for its client.
    pub capture_bytes: usize,
}

impl Tuning {
    fn from_opts(opts: &TraceOptions) -> Tuning {
        Tuning {
            queue_records: QUEUE_RECORDS,
            max_bytes: opts.pcap_max_mb.map(|mb| mb.saturating_mul(1 << 20)),
            writer_delay: Duration::ZERO,
            line_out: LineOut::Stderr,
            capture_bytes: capture::CAPTURE_QUEUE_BYTES,
        }
    }
}

/// One frame on its way to the writer.
pub(crate) struct FrameRecord {
    pub when: SystemTime,
    pub dir: Direction,
    /// Holds the (possibly cut) frame in its first `len` bytes; the rest,
    /// if any, is whatever the buffer held before (a handed-over buffer).
    pub data: Vec<u8>,
    pub len: usize,
    pub original_len: usize,
    pub comment: Note,
    /// What was on when it was recorded ([`PCAP`], [`FRAME_LINES`]).
    pub mode: u8,
}

impl FrameRecord {
    /// The frame's bytes as recorded.
    pub fn frame(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// What the writer thread is told.
pub(crate) enum Msg {
    Frame(FrameRecord),
    Conn {
        when: SystemTime,
        text: String,
    },
    /// A processor's batch, for the pcapng file only.
    Batch(batch::BatchRecord),
    /// Switch to this file (or none); acknowledge once the old one is
    /// closed.
    SetPcap(Option<pcapng::PcapFile>, Sender<()>),
    /// Start delivering to this capture (its filter compiled by the
    /// writer); answer whether it could.
    Subscribe(
        Arc<capture::Subscriber>,
        capture::Interface,
        Sender<Result<(), String>>,
    ),
    /// Flush, close the file, acknowledge and stop.
    Close(Sender<()>),
}

/// How many large frame buffers the writer hands back for reuse. A
/// large frame is not copied at all: its buffer goes to the writer and
/// the sender carries on with one from this pool
/// ([`Tracer::record_owned`]), so a traced bulk transfer costs the hot
/// path no copy and no allocation per frame.
const POOL_BUFFERS: usize = 64;

/// How many small-frame buffers (copies of frames under
/// [`HANDOVER_BYTES`]) the writer hands back: a traced transfer without
/// offloads records half a million small frames a second, and a `malloc`
/// on one thread freed on another for each cost more than the copy.
const SMALL_BUFFERS: usize = 4096;

/// The capacity a new small-frame buffer gets: any plain frame fits.
const SMALL_BYTES: usize = 2048;

/// Frames at least this long are handed over instead of copied.
pub const HANDOVER_BYTES: usize = 8 << 10;

/// Buffers larger than this are not kept in the pool.
const POOL_MAX_BYTES: usize = 256 << 10;

/// State shared by the tracer handle and its writer thread.
pub(crate) struct Shared {
    mode: AtomicU8,
    queued_bytes: AtomicUsize,
    written: AtomicU64,
    lines: AtomicU64,
    lost: AtomicU64,
    rotated: AtomicU64,
    file: Mutex<Option<PathBuf>>,
    /// How the file being written rotates.
    rotation: Mutex<Rotation>,
    last_error: Mutex<Option<String>>,
    /// Large frame buffers the writer is done with (see [`POOL_BUFFERS`]).
    large: PayloadPool,
    /// Small frame buffers the writer is done with (see [`SMALL_BUFFERS`]).
    small: PayloadPool,
    /// The live captures running (for `stats` and to know when the last
    /// one ends; the writer keeps its own list with their filters).
    captures: Mutex<Vec<Arc<capture::Subscriber>>>,
    /// The number the next capture gets.
    next_capture: AtomicU64,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            mode: AtomicU8::new(0),
            queued_bytes: AtomicUsize::new(0),
            written: AtomicU64::new(0),
            lines: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            rotated: AtomicU64::new(0),
            file: Mutex::new(None),
            rotation: Mutex::new(Rotation::default()),
            last_error: Mutex::new(None),
            large: PayloadPool::new(POOL_BUFFERS),
            small: PayloadPool::new(SMALL_BUFFERS),
            captures: Mutex::new(Vec::new()),
            next_capture: AtomicU64::new(1),
        }
    }
}

impl Shared {
    fn lose(&self) {
        self.lost.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of `data` in a buffer from the pool of its size.
    fn copy(&self, data: &[u8]) -> Vec<u8> {
        let pool = if data.len() < HANDOVER_BYTES {
            &self.small
        } else {
            &self.large
        };
        let mut v = pool.take();
        v.clear();
        if v.capacity() < data.len() {
            v.reserve(data.len().max(SMALL_BYTES));
        }
        v.extend_from_slice(data);
        v
    }

    /// Gives a frame buffer back for reuse, to the pool of its size
    /// (dropped if too big to keep or the pool is full).
    pub(crate) fn recycle(&self, v: Vec<u8>) {
        if v.capacity() < HANDOVER_BYTES {
            self.small.give(v);
        } else if v.capacity() <= POOL_MAX_BYTES {
            self.large.give(v);
        }
    }

    /// Room in the queue for `len` more bytes? Reserves them if so;
    /// counts the record as lost if not.
    fn reserve(&self, tx: &TraceQueue, len: usize) -> bool {
        if tx.is_full() {
            self.lose();
            return false;
        }
        let queued = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if queued.saturating_add(len) > QUEUE_BYTES {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            self.lose();
            return false;
        }
        true
    }

    /// Queues `rec` (its bytes reserved by [`Shared::reserve`]).
    fn send(&self, tx: &TraceQueue, rec: FrameRecord) {
        if let Err(e) = tx.try_send(Msg::Frame(rec)) {
            if let TrySendError::Full(Msg::Frame(r)) | TrySendError::Disconnected(Msg::Frame(r)) = e
            {
                self.queued_bytes.fetch_sub(r.len, Ordering::Relaxed);
                self.recycle(r.data);
            }
            self.lose();
        }
    }
}

/// The packet tracer: one per vnic, shared in an `Arc` by the RX thread,
/// every processor's [`TracingSink`] and the control socket. It exists so
/// a user can see every frame and why it went where it went, without the
/// hot path ever waiting on a disk or a terminal.
pub struct Tracer {
    shared: Arc<Shared>,
    tx: TraceQueue,
    writer: Mutex<Option<JoinHandle<()>>>,
    iface: String,
    mac: [u8; 6],
    max_bytes: Option<u64>,
    /// The file limit of the ring (`--pcap-max-files`), also for files
    /// started with [`Tracer::set_pcap`].
    max_files: Option<u32>,
    snaplen: usize,
    /// The pcapng files' filter (`--pcap-filter`).
    pcap_filter: Option<String>,
    /// Bytes each live capture may have waiting for its client.
    capture_bytes: usize,
    control: Mutex<()>,
    /// The replay block every new pcapng file starts with.
    section_comment: Option<String>,
}

impl Tracer {
    /// Starts the writer thread and, with `opts.pcap`, creates the file
    /// (an error names the file and says why it cannot be created).
    pub fn start(opts: TraceOptions) -> io::Result<Arc<Tracer>> {
        let tuning = Tuning::from_opts(&opts);
        Tracer::start_tuned(opts, tuning)
    }

    pub(crate) fn start_tuned(opts: TraceOptions, tuning: Tuning) -> io::Result<Arc<Tracer>> {
        let pcap_filter = filter::normalize(opts.pcap_filter.as_deref());
        if let Some(f) = &pcap_filter {
            filter::check(f).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        let shared = Arc::new(Shared::default());
        let file = match &opts.pcap {
            Some(p) => Some(pcapng::PcapFile::create(
                p.clone(),
                &opts.iface,
                opts.mac,
                tuning.max_bytes,
                opts.pcap_max_files,
                opts.snaplen.clamp(1, SNAPLEN),
                opts.section_comment.clone(),
            )?),
            None => None,
        };
        let mut mode = lines_bits(opts.lines);
        if let Some(f) = &file {
            mode |= PCAP;
            *shared.file.lock() = Some(f.path().to_path_buf());
            *shared.rotation.lock() = Rotation {
                max_bytes: tuning.max_bytes,
                max_files: opts.pcap_max_files,
            };
        }
        shared.mode.store(mode, Ordering::Relaxed);
        let (tx, rx) = trace_queue(tuning.queue_records);
        // Files started later by `set_pcap` rotate like this one.
        let max_bytes = tuning.max_bytes;
        let capture_bytes = tuning.capture_bytes;
        let sh = shared.clone();
        let file_filter = pcap_filter.clone();
        let handle = std::thread::Builder::new()
            .name("vnic-trace".into())
            .spawn(move || writer::run(rx, sh, file, file_filter, tuning))?;
        Ok(Arc::new(Tracer {
            shared,
            tx,
            writer: Mutex::new(Some(handle)),
            iface: opts.iface,
            mac: opts.mac,
            max_bytes,
            max_files: opts.pcap_max_files,
            snaplen: opts.snaplen.clamp(1, SNAPLEN),
            pcap_filter,
            capture_bytes,
            control: Mutex::new(()),
            section_comment: opts.section_comment,
        }))
    }

    /// A tracer that traces nothing (no thread, no file): what the wiring
    /// uses when neither `--pcap` nor `--trace` was given, so call sites
    /// need no `Option`. [`Tracer::set_pcap`] on it reports that tracing
    /// was not started.
    pub fn disabled() -> Arc<Tracer> {
        let (tx, _rx) = trace_queue(1);
        Arc::new(Tracer {
            shared: Arc::new(Shared::default()),
            tx,
            writer: Mutex::new(None),
            iface: String::new(),
            mac: [0; 6],
            max_bytes: None,
            max_files: None,
            snaplen: SNAPLEN,
            pcap_filter: None,
            capture_bytes: capture::CAPTURE_QUEUE_BYTES,
            control: Mutex::new(()),
            section_comment: None,
        })
    }

    /// True when frames are being recorded (a pcapng file, frame lines
    /// or a live capture): what the RX path asks before it records.
    pub fn active(&self) -> bool {
        self.shared.mode.load(Ordering::Relaxed) & RECORDING != 0
    }

    /// True when a pcapng file or frame lines are on (what `vnic status`
    /// calls the trace being on; live captures are listed apart).
    pub fn tracing(&self) -> bool {
        self.shared.mode.load(Ordering::Relaxed) & (PCAP | FRAME_LINES) != 0
    }

    /// Records one frame with a ready-made comment (see
    /// [`Tracer::record_with`]).
    pub fn record(&self, dir: Direction, frame: &[u8], comment: &str) {
        self.record_with(dir, frame, || comment)
    }

    /// Records one frame; called on the hot path for every frame. When
    /// tracing is off this is one relaxed load and `comment` is never
    /// called; when the queue is full the record is counted as lost.
    pub fn record_with<N: Into<Note>>(
        &self,
        dir: Direction,
        frame: &[u8],
        comment: impl FnOnce() -> N,
    ) {
        let mode = self.shared.mode.load(Ordering::Relaxed) & RECORDING;
        if mode == 0 {
            return;
        }
        let data = &frame[..frame.len().min(self.snaplen)];
        if !self.shared.reserve(&self.tx, data.len()) {
            return;
        }
        let rec = FrameRecord {
            when: SystemTime::now(),
            dir,
            data: self.shared.copy(data),
            len: data.len(),
            original_len: frame.len(),
            comment: comment().into(),
            mode,
        };
        self.shared.send(&self.tx, rec);
    }

    /// Records the frame in `buf[..len]` like [`Tracer::record_with`],
    /// but a large frame ([`HANDOVER_BYTES`] or more) is not copied: the
    /// buffer itself goes to the writer and `buf` is replaced by one from
    /// the pool (or a new one of the same capacity). After the call `buf`
    /// has some length and contents the caller must not rely on. The
    /// comment is built from the recorded frame.
    pub fn record_owned<N: Into<Note>>(
        &self,
        dir: Direction,
        buf: &mut Vec<u8>,
        len: usize,
        comment: impl FnOnce(&[u8]) -> N,
    ) {
        let mode = self.shared.mode.load(Ordering::Relaxed) & RECORDING;
        if mode == 0 {
            return;
        }
        let len = len.min(buf.len());
        let cut = len.min(self.snaplen);
        if cut < HANDOVER_BYTES {
            let frame = &buf[..len];
            return self.record_with(dir, frame, || comment(frame));
        }
        if !self.shared.reserve(&self.tx, cut) {
            return;
        }
        let mut fresh = self.shared.large.take();
        if fresh.capacity() == 0 {
            fresh = Vec::with_capacity(buf.capacity());
        }
        let data = std::mem::replace(buf, fresh);
        let rec = FrameRecord {
            when: SystemTime::now(),
            dir,
            comment: comment(&data[..len]).into(),
            data,
            len: cut,
            original_len: len,
            mode,
        };
        self.shared.send(&self.tx, rec);
    }

    /// Records a batch a processor took (see [`batch`]) in the pcapng
    /// file, if one is being written: what lets a replay give the
    /// processor the same batches. One relaxed load when it is not;
    /// counted as lost when the queue is full.
    pub fn record_batch(&self, record: batch::BatchRecord) {
        if self.shared.mode.load(Ordering::Relaxed) & PCAP == 0 {
            return;
        }
        if self.tx.try_send(Msg::Batch(record)).is_err() {
            self.shared.lose();
        }
    }

    /// A connection event (new, placed on cpu K, closed, reset,
    /// retransmit), reported by the processors. It is printed as a
    /// `conn` line in both line modes (`--trace` and `--trace=conn`), so
    /// the frame lines show where connections begin and end; it is not
    /// written to the pcapng file. `text` is only built when lines are on.
    pub fn conn_event(&self, text: impl FnOnce() -> String) {
        if self.shared.mode.load(Ordering::Relaxed) & (FRAME_LINES | CONN_LINES) == 0 {
            return;
        }
        let msg = Msg::Conn {
            when: SystemTime::now(),
            text: text(),
        };
        if self.tx.try_send(msg).is_err() {
            self.shared.lose();
        }
    }

    /// Starts writing a new pcapng file (closing the current one, if
    /// any), or with `None` stops writing and closes it; returns once the
    /// old file is complete. The new file rotates like the start-up one
    /// (`--pcap-max-mb`, `--pcap-max-files`).
    pub fn set_pcap(&self, file: Option<PathBuf>) -> io::Result<()> {
        self.set_pcap_rotating(file, self.rotation())
    }

    /// The rotation the start-up flags asked for (`--pcap-max-mb`,
    /// `--pcap-max-files`).
    pub fn rotation(&self) -> Rotation {
        Rotation {
            max_bytes: self.max_bytes,
            max_files: self.max_files,
        }
    }

    /// Like [`Tracer::set_pcap`], the new file rotating as `rotation`
    /// says. For `vnic ctl trace on FILE` / `trace off`. The file is
    /// opened as the start-up one is (see `pcapng::open_file`): never
    /// through a symbolic link, created 0600, and an existing file is
    /// replaced only if it is a pcapng (or empty).
    pub fn set_pcap_rotating(&self, file: Option<PathBuf>, rotation: Rotation) -> io::Result<()> {
        let _guard = self.control.lock();
        if self.writer.lock().is_none() {
            return Err(io::Error::other("packet tracing is not running"));
        }
        match file {
            Some(path) => {
                let f = pcapng::PcapFile::create(
                    path,
                    &self.iface,
                    self.mac,
                    rotation.max_bytes,
                    rotation.max_files,
                    self.snaplen,
                    self.section_comment.clone(),
                )?;
                self.control_msg(|ack| Msg::SetPcap(Some(f), ack))?;
                *self.shared.rotation.lock() = rotation;
                self.shared.mode.fetch_or(PCAP, Ordering::Relaxed);
            }
            None => {
                self.shared.mode.fetch_and(!PCAP, Ordering::Relaxed);
                self.control_msg(|ack| Msg::SetPcap(None, ack))?;
            }
        }
        Ok(())
    }

    /// Turns the stderr lines on (per frame, or connection events only)
    /// or off. For `vnic ctl trace lines on|conn|off`.
    pub fn set_lines(&self, mode: Option<LineMode>) {
        let _guard = self.control.lock();
        if self.writer.lock().is_none() {
            return;
        }
        let bits = lines_bits(mode);
        // Bit by bit: a capture ending may clear its bit meanwhile.
        let m = &self.shared.mode;
        m.fetch_and(!(FRAME_LINES | CONN_LINES), Ordering::Relaxed);
        m.fetch_or(bits, Ordering::Relaxed);
    }

    /// What the tracer did so far.
    pub fn stats(&self) -> TraceStats {
        let s = &self.shared;
        TraceStats {
            written: s.written.load(Ordering::Relaxed),
            lines: s.lines.load(Ordering::Relaxed),
            lost: s.lost.load(Ordering::Relaxed),
            rotated: s.rotated.load(Ordering::Relaxed),
            file: s.file.lock().clone(),
            rotation: *s.rotation.lock(),
            last_error: s.last_error.lock().clone(),
            filter: self.pcap_filter.clone(),
            captures: {
                let lost = s.lost.load(Ordering::Relaxed);
                s.captures.lock().iter().map(|c| c.stats(lost)).collect()
            },
        }
    }

    /// Starts a live capture (`vnic capture`): a pcapng stream of the
    /// frames `spec` keeps, from now until the stream is dropped or the
    /// tracer closes. The filter is checked here (a bad one is refused
    /// with libpcap's message) and compiled again by the writer thread,
    /// which runs it. At most [`capture::MAX_CAPTURES`] run at once.
    pub fn capture(&self, spec: CaptureSpec) -> Result<CaptureStream, CaptureError> {
        let spec = capture::checked(spec)?;
        let _guard = self.control.lock();
        if self.writer.lock().is_none() {
            return Err(CaptureError::NotRunning);
        }
        let running = self.shared.captures.lock().len();
        if running >= capture::MAX_CAPTURES {
            return Err(CaptureError::TooMany(running));
        }
        let id = self.shared.next_capture.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(capture::Subscriber::new(
            id,
            spec,
            self.shared.lost.load(Ordering::Relaxed),
            self.capture_bytes,
        ));
        let iface = capture::Interface {
            name: self.iface.clone(),
            mac: self.mac,
            snaplen: self.snaplen,
        };
        let stream = CaptureStream::new(sub.clone(), self.shared.clone(), &iface)
            .map_err(|_| CaptureError::NotRunning)?;
        // From here on, dropping `stream` undoes what follows.
        match self.control_msg(|ack| Msg::Subscribe(sub.clone(), iface, ack)) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                return Err(CaptureError::Filter(FilterError::Bad {
                    expr: sub.filter().unwrap_or_default().to_owned(),
                    why,
                }))
            }
            Err(_) => return Err(CaptureError::WriterStuck),
        }
        self.shared.captures.lock().push(sub);
        self.shared.mode.fetch_or(CAPTURE, Ordering::Relaxed);
        Ok(stream)
    }

    /// Writes everything queued, closes the file and stops the writer
    /// (the SIGINT/SIGTERM path). Idempotent; later records are ignored.
    pub fn close(&self) {
        let _guard = self.control.lock();
        let Some(handle) = self.writer.lock().take() else {
            return;
        };
        self.shared.mode.store(0, Ordering::Relaxed);
        if self.control_msg(Msg::Close).is_ok() {
            let _ = handle.join();
        }
        // The writer ended every capture; their streams send what they
        // have and their report, then go.
        let deadline = std::time::Instant::now() + CAPTURE_END_WAIT;
        while !self.shared.captures.lock().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a control message (waiting for room: this is not the hot
    /// path) and waits for the writer's answer.
    fn control_msg<T>(&self, msg: impl FnOnce(Sender<T>) -> Msg) -> io::Result<T> {
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        let stuck = || io::Error::new(io::ErrorKind::TimedOut, "the trace writer is not answering");
        self.tx
            .send_timeout(msg(ack_tx), CONTROL_WAIT)
            .map_err(|_| stuck())?;
        ack_rx.recv_timeout(CONTROL_WAIT).map_err(|_| stuck())
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.close();
    }
}

fn lines_bits(mode: Option<LineMode>) -> u8 {
    match mode {
        None => 0,
        Some(LineMode::Frames) => FRAME_LINES | CONN_LINES,
        Some(LineMode::Conn) => CONN_LINES,
    }
}
