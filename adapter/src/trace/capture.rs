//! Live captures (`vnic capture`): pcapng streamed to a client while
//! vnic runs, each frame with its decision comment, kept by a tcpdump
//! filter and/or a processor.
//!
//! The hot path does not know captures exist: while one is on, frames are
//! recorded into the tracer's queue exactly as for `--pcap` (a copy into
//! a pooled buffer, or a large frame's buffer handed over), once whatever
//! the number of captures. The writer thread renders the decision text
//! once, then for each capture checks the processor (`cpu=K` in that
//! text) and runs the libpcap program, and builds the Enhanced Packet
//! Block once for all the captures that keep it ([`Deliveries`]). A frame
//! a capture does not want is never copied for it.
//!
//! Back-pressure stops at the capture: each has a bounded buffer of
//! pcapng bytes ([`CAPTURE_QUEUE_BYTES`]) that its stream takes whole
//! ([`CaptureStream::next`]); a frame that does not fit is counted as
//! lost for that capture ([`CaptureStats::lost`]) and the writer goes on.
//! A client that stops reading slows nobody, not even the other captures.

use super::filter::{self, FilterError, FrameFilter};
use super::pcapng::{packet_block, start_section};
use super::{FrameRecord, Shared, CAPTURE};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use pcap_file::pcapng::blocks::interface_statistics::{
    InterfaceStatisticsBlock, InterfaceStatisticsOption,
};
use pcap_file::pcapng::PcapNgWriter;
use std::borrow::Cow;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes of pcapng a capture may have waiting for its client. Past it
/// frames are lost for that capture (counted), never waited for. 4 MiB
/// is some 40 ms of a 1 Gbit/s link: room for a reader's hiccup, and 8
/// captures hold at most 64 MiB (this buffer and the one being sent).
pub const CAPTURE_QUEUE_BYTES: usize = 4 << 20;

/// Most captures at once: each costs the writer thread a filter run per
/// frame and a copy per kept frame.
pub const MAX_CAPTURES: usize = 8;

/// What a capture keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureSpec {
    /// A tcpdump filter expression; `None` keeps every frame.
    pub filter: Option<String>,
    /// Only frames whose decision comment names `cpu=K`.
    pub processor: Option<usize>,
}

/// Why a capture cannot start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// libpcap refused the filter expression, or could not be loaded.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// [`MAX_CAPTURES`] are running.
    #[error("too many captures ({0} running): stop one first")]
    TooMany(usize),
    /// The tracer was never started or is closed (vnic is stopping).
    #[error("packet tracing is not running")]
    NotRunning,
    /// The writer thread did not take the capture in time.
    #[error("the trace writer is not answering")]
    WriterStuck,
}

/// What one capture did so far, for `vnic status` and the end of the
/// stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Its number, from 1, in this vnic's life.
    pub id: u64,
    /// What it keeps.
    pub spec: CaptureSpec,
    /// Frames kept and queued for the client.
    pub frames: u64,
    /// pcapng bytes handed to the client's stream (headers included).
    pub bytes: u64,
    /// Frames kept but dropped because the client did not read fast
    /// enough (its buffer was full).
    pub lost: u64,
    /// Frames the tracer itself lost (its queue was full, before any
    /// filter) while this capture ran; they may or may not have matched.
    pub trace_lost: u64,
    /// How long it has run.
    pub elapsed: Duration,
}

/// The interface a capture's pcapng describes (its Interface
/// Description Block).
#[derive(Clone, Debug)]
pub(crate) struct Interface {
    pub name: String,
    pub mac: [u8; 6],
    pub snaplen: usize,
}

impl Interface {
    /// A pcapng writer into a buffer, past the section and interface
    /// headers (which the buffer holds).
    fn encoder(&self) -> io::Result<PcapNgWriter<Vec<u8>>> {
        start_section(Vec::new(), &self.name, self.mac, self.snaplen, None)
    }
}

/// One capture as both sides see it: the writer thread fills `pending`,
/// the client's stream empties it.
pub(crate) struct Subscriber {
    id: u64,
    spec: CaptureSpec,
    started: Instant,
    started_at: SystemTime,
    /// The tracer's `lost` when the capture started.
    trace_lost_at_start: u64,
    /// Whole pcapng blocks waiting for the client.
    pending: Mutex<Vec<u8>>,
    /// Rung when `pending` gets its first bytes or the capture ends.
    bell: (Sender<()>, Receiver<()>),
    frames: AtomicU64,
    bytes: AtomicU64,
    lost: AtomicU64,
    /// The client is gone or asked to stop: deliver nothing more.
    closed: AtomicBool,
    /// The tracer closed (vnic stops): nothing more will come.
    ended: AtomicBool,
    max_bytes: usize,
}

impl Subscriber {
    pub(crate) fn new(id: u64, spec: CaptureSpec, trace_lost: u64, max_bytes: usize) -> Subscriber {
        Subscriber {
            id,
            spec,
            started: Instant::now(),
            started_at: SystemTime::now(),
            trace_lost_at_start: trace_lost,
            pending: Mutex::new(Vec::new()),
            bell: crossbeam_channel::bounded(1),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            max_bytes,
        }
    }

    /// Its filter expression, if any.
    pub(crate) fn filter(&self) -> Option<&str> {
        self.spec.filter.as_deref()
    }

    /// Does the decision `comment` pass the processor choice?
    fn wants(&self, comment: &str) -> bool {
        match self.spec.processor {
            None => true,
            Some(k) => names_cpu(comment, k),
        }
    }

    /// Queues one block for the client, or counts it lost if the client
    /// is that far behind.
    fn push(&self, block: &[u8]) {
        let mut p = self.pending.lock();
        if p.len() + block.len() > self.max_bytes {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let was_empty = p.is_empty();
        p.extend_from_slice(block);
        drop(p);
        self.frames.fetch_add(1, Ordering::Relaxed);
        if was_empty {
            let _ = self.bell.0.try_send(());
        }
    }

    /// The tracer is closing: the stream sends what is pending and ends.
    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::Release);
        let _ = self.bell.0.try_send(());
    }

    pub(crate) fn stats(&self, trace_lost_now: u64) -> CaptureStats {
        CaptureStats {
            id: self.id,
            spec: self.spec.clone(),
            frames: self.frames.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            trace_lost: trace_lost_now.saturating_sub(self.trace_lost_at_start),
            elapsed: self.started.elapsed(),
        }
    }
}

/// True if the decision text names processor `k` (a word `cpu=K`:
/// `in cpu=2 rr-new ...`, `out cpu=2`, `in adapter syn-cookie port=80
/// cpu=2 ...`).
pub fn names_cpu(comment: &str, k: usize) -> bool {
    comment
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("cpu="))
        .any(|n| n.parse() == Ok(k))
}

/// The writer thread's list of captures, each with its filter compiled
/// on that thread (a libpcap program is not `Send`), and one encoder
/// that builds a frame's block once for all of them.
#[derive(Default)]
pub(crate) struct Deliveries {
    list: Vec<(Arc<Subscriber>, Option<FrameFilter>)>,
    encoder: Option<PcapNgWriter<Vec<u8>>>,
}

impl Deliveries {
    /// Takes a new capture: compiles its filter here, on the writer.
    pub(crate) fn add(&mut self, sub: Arc<Subscriber>, iface: &Interface) -> Result<(), String> {
        let compiled = match &sub.spec.filter {
            Some(f) => Some(FrameFilter::compile(f).map_err(|e| e.to_string())?),
            None => None,
        };
        if self.encoder.is_none() {
            let mut e = iface.encoder().map_err(|e| e.to_string())?;
            e.get_mut().clear();
            self.encoder = Some(e);
        }
        self.list.push((sub, compiled));
        Ok(())
    }

    /// Hands `rec` to every capture that keeps it.
    pub(crate) fn deliver(&mut self, rec: &FrameRecord, comment: &str) {
        self.list
            .retain(|(s, _)| !s.closed.load(Ordering::Relaxed) && !s.ended.load(Ordering::Relaxed));
        let mut built = false;
        for (sub, f) in &self.list {
            if !sub.wants(comment) || !f.as_ref().is_none_or(|f| f.matches(rec.frame())) {
                continue;
            }
            let Some(enc) = self.encoder.as_mut() else {
                return;
            };
            if !built {
                enc.get_mut().clear();
                if enc.write_pcapng_block(packet_block(rec, comment)).is_err() {
                    return;
                }
                built = true;
            }
            sub.push(enc.get_ref());
        }
    }

    /// The tracer closes: every capture ends after what it has.
    pub(crate) fn end_all(&mut self) {
        for (sub, _) in self.list.drain(..) {
            sub.end();
        }
    }
}

/// What [`CaptureStream::next`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Whole pcapng blocks are in the buffer: send them.
    Data,
    /// Nothing yet; ask again.
    Idle,
    /// The capture is over (vnic stopped, or the client asked to stop)
    /// and everything was handed out: send [`CaptureStream::end_block`]
    /// and the report.
    Ended,
}

/// The client's end of a capture: a valid pcapng stream, given out in
/// whole blocks (first the section and interface headers, then the
/// frames as they come). The control socket's client thread owns it and
/// writes what it gives to the socket. Dropping it ends the capture.
pub struct CaptureStream {
    sub: Arc<Subscriber>,
    shared: Arc<Shared>,
    encoder: PcapNgWriter<Vec<u8>>,
    header_sent: bool,
}

impl CaptureStream {
    pub(crate) fn new(
        sub: Arc<Subscriber>,
        shared: Arc<Shared>,
        iface: &Interface,
    ) -> io::Result<CaptureStream> {
        Ok(CaptureStream {
            sub,
            shared,
            encoder: iface.encoder()?,
            header_sent: false,
        })
    }

    /// This capture's number (as `vnic status` lists it).
    pub fn id(&self) -> u64 {
        self.sub.id
    }

    /// Puts the next whole blocks into `out` (which must be empty),
    /// waiting up to `wait` for some.
    pub fn next(&mut self, out: &mut Vec<u8>, wait: Duration) -> Next {
        out.clear();
        if !self.header_sent {
            self.header_sent = true;
            out.extend_from_slice(self.encoder.get_ref());
            return self.handed(out);
        }
        for first in [true, false] {
            // `over` before `take`: what the writer queued before it
            // ended is handed out before the end.
            let over = self.over();
            if self.take(out) {
                return self.handed(out);
            }
            if over {
                return Next::Ended;
            }
            if first {
                let _ = self.sub.bell.1.recv_timeout(wait);
            }
        }
        Next::Idle
    }

    fn handed(&self, out: &[u8]) -> Next {
        self.sub
            .bytes
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Next::Data
    }

    /// Swaps the pending blocks into `out`; true if there were any.
    fn take(&self, out: &mut Vec<u8>) -> bool {
        let mut p = self.sub.pending.lock();
        if p.is_empty() {
            return false;
        }
        std::mem::swap(&mut *p, out);
        true
    }

    fn over(&self) -> bool {
        self.sub.ended.load(Ordering::Acquire) || self.sub.closed.load(Ordering::Acquire)
    }

    /// The client asked to stop: no frame is added from now on; what is
    /// pending is still handed out, then [`Next::Ended`].
    pub fn stop(&self) {
        self.sub.closed.store(true, Ordering::Release);
    }

    /// True once vnic's tracer has closed (vnic stops).
    pub fn vnic_stopped(&self) -> bool {
        self.sub.ended.load(Ordering::Relaxed)
    }

    /// What this capture did so far.
    pub fn stats(&self) -> CaptureStats {
        self.sub.stats(self.shared.lost.load(Ordering::Relaxed))
    }

    /// An Interface Statistics Block to end the stream with: when the
    /// capture ran, how many frames it kept (`isb_filteraccept`), handed
    /// to the client (`isb_usrdeliv`) and lost because the client was
    /// slow (`isb_ifdrop`), so Wireshark's capture statistics show them.
    pub fn end_block(&mut self) -> Vec<u8> {
        let st = self.stats();
        let nanos = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        };
        let now = nanos(SystemTime::now());
        let comment = format!(
            "vnic capture {}: {} frames, {} lost (client too slow), {} lost by the tracer",
            st.id, st.frames, st.lost, st.trace_lost
        );
        let isb = InterfaceStatisticsBlock {
            interface_id: 0,
            timestamp: now,
            options: vec![
                InterfaceStatisticsOption::Comment(Cow::Owned(comment)),
                InterfaceStatisticsOption::IsbStartTime(nanos(self.sub.started_at)),
                InterfaceStatisticsOption::IsbEndTime(now),
                InterfaceStatisticsOption::IsbIfDrop(st.lost + st.trace_lost),
                InterfaceStatisticsOption::IsbFilterAccept(st.frames + st.lost),
                InterfaceStatisticsOption::IsbUsrDeliv(st.frames),
            ],
        };
        self.encoder.get_mut().clear();
        match self.encoder.write_pcapng_block(isb) {
            Ok(_) => self.encoder.get_ref().clone(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for CaptureStream {
    /// Ends the capture: the writer forgets it at its next frame, and
    /// the last one to go turns capture recording off.
    fn drop(&mut self) {
        self.sub.closed.store(true, Ordering::Relaxed);
        let mut list = self.shared.captures.lock();
        list.retain(|s| !Arc::ptr_eq(s, &self.sub));
        if list.is_empty() {
            self.shared.mode.fetch_and(!CAPTURE, Ordering::Relaxed);
        }
    }
}

/// Checks a capture's filter now (the writer compiles its own copy), so
/// a bad one is refused with libpcap's message before anything starts.
pub(crate) fn checked(spec: CaptureSpec) -> Result<CaptureSpec, CaptureError> {
    let filter = filter::normalize(spec.filter.as_deref());
    if let Some(f) = &filter {
        filter::check(f)?;
    }
    Ok(CaptureSpec { filter, ..spec })
}
