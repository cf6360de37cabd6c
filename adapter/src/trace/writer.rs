//! The writer thread (`vnic-trace`): drains the tracer's queue into the
//! pcapng file and the stderr lines, off the hot path.
//!
//! Flush policy: whatever is pending goes out when the queue has been
//! empty for [`LINGER`], every [`FLUSH_EVERY`] under steady traffic, or
//! once [`FLUSH_BYTES`] of lines are pending (the pcapng file also writes
//! whole disk blocks on its own every few MiB), so a SIGKILL loses at most
//! the last few hundred milliseconds.

use super::capture::Deliveries;
use super::filter::FrameFilter;
use super::pcapng::PcapFile;
use super::{line, FrameRecord, LineOut, Msg, Shared, Tuning, CAPTURE, FRAME_LINES, PCAP};
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an emptied queue waits for more before everything is flushed.
const LINGER: Duration = Duration::from_millis(5);
/// The nap between looks at an empty queue while frames flow.
const POLL: Duration = Duration::from_millis(1);
/// Longest time between flushes while traffic flows.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Pending bytes (file or lines) that force a flush.
const FLUSH_BYTES: usize = 64 << 10;
/// How long the writer sleeps when it has nothing pending.
const IDLE: Duration = Duration::from_secs(1);

struct Writer {
    shared: Arc<Shared>,
    pcap: Option<PcapFile>,
    /// `--pcap-filter`, compiled here (a libpcap program is not `Send`).
    file_filter: Option<FrameFilter>,
    /// The live captures, with their filters.
    captures: Deliveries,
    lines: String,
    line_out: LineOut,
    last_flush: Instant,
    delay: Duration,
}

/// The thread's body: runs until [`Msg::Close`] or until the tracer is gone.
///
/// While frames flow the writer never sleeps on the queue: it drains it,
/// then naps for [`POLL`] and looks again. A sender only has to wake a
/// receiver that is blocked, so the hot path pays no futex call per
/// record (a blocked writer cost one wake-up and two context switches per
/// frame in a profile of a traced download). Once the queue has stayed
/// empty for [`LINGER`], the writer flushes and blocks until the next
/// record, so an idle vnic has an idle writer.
pub(crate) fn run(
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    pcap: Option<PcapFile>,
    file_filter: Option<String>,
    t: Tuning,
) {
    let mut w = Writer {
        shared,
        pcap,
        file_filter: None,
        captures: Deliveries::default(),
        lines: String::with_capacity(FLUSH_BYTES),
        line_out: t.line_out,
        last_flush: Instant::now(),
        delay: t.writer_delay,
    };
    if let Some(f) = file_filter {
        // Checked by `Tracer::start`; should libpcap say otherwise here,
        // the file gets nothing rather than everything.
        match FrameFilter::compile(&f) {
            Ok(f) => w.file_filter = Some(f),
            Err(e) => w.fail(std::io::Error::other(e)),
        }
    }
    let mut empty_since: Option<Instant> = None;
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let since = *empty_since.get_or_insert_with(Instant::now);
                if since.elapsed() < LINGER {
                    std::thread::sleep(POLL);
                    continue;
                }
                w.flush();
                empty_since = None;
                match rx.recv_timeout(IDLE) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        empty_since = None;
        match msg {
            Msg::Frame(rec) => {
                w.shared.queued_bytes.fetch_sub(rec.len, Ordering::Relaxed);
                if !w.delay.is_zero() {
                    std::thread::sleep(w.delay);
                }
                w.frame(&rec);
                w.shared.recycle(rec.data);
            }
            Msg::Batch(b) => w.batch(&b),
            Msg::Conn { when, text } => {
                w.lines.push_str(&line::format_conn_line(when, &text));
                w.lines.push('\n');
                w.shared.lines.fetch_add(1, Ordering::Relaxed);
            }
            Msg::SetPcap(file, ack) => {
                w.flush();
                w.close_pcap();
                if let Some(f) = &file {
                    *w.shared.file.lock() = Some(f.path().to_path_buf());
                }
                w.pcap = file;
                let _ = ack.send(());
            }
            Msg::Subscribe(sub, iface, ack) => {
                let _ = ack.send(w.captures.add(sub, &iface));
            }
            Msg::Close(ack) => {
                w.flush();
                w.close_pcap();
                w.captures.end_all();
                let _ = ack.send(());
                return;
            }
        }
        if w.lines.len() >= FLUSH_BYTES || w.last_flush.elapsed() >= FLUSH_EVERY {
            w.flush();
        }
    }
    w.flush();
    w.close_pcap();
    w.captures.end_all();
}

impl Writer {
    fn frame(&mut self, rec: &FrameRecord) {
        let comment = rec.comment.render(rec.frame());
        if rec.mode & CAPTURE != 0 {
            self.captures.deliver(rec, &comment);
        }
        let kept = self
            .file_filter
            .as_ref()
            .is_none_or(|f| f.matches(rec.frame()));
        if rec.mode & PCAP != 0 && kept {
            match self.pcap.as_mut().map(|p| p.write(rec, &comment)) {
                Some(Ok(rotated)) => {
                    self.shared.written.fetch_add(1, Ordering::Relaxed);
                    if rotated {
                        self.shared.rotated.fetch_add(1, Ordering::Relaxed);
                        if let Some(p) = &self.pcap {
                            *self.shared.file.lock() = Some(p.path().to_path_buf());
                        }
                    }
                }
                Some(Err(e)) => {
                    self.shared.lose();
                    self.fail(e);
                }
                // The file was switched off after this frame was queued.
                None => {}
            }
        }
        if rec.mode & FRAME_LINES != 0 {
            self.lines
                .push_str(&line::format_line(rec.when, rec.dir, rec.frame(), &comment));
            self.lines.push('\n');
            self.shared.lines.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&mut self) {
        if let Some(p) = self.pcap.as_mut() {
            if let Err(e) = p.flush() {
                self.fail(e);
            }
        }
        if !self.lines.is_empty() {
            // A closed or full stderr must not stop the file: errors are
            // ignored here, the lines are gone either way.
            match &self.line_out {
                LineOut::Stderr => {
                    let _ = io::stderr().lock().write_all(self.lines.as_bytes());
                }
                LineOut::Buffer(b) => b.lock().extend_from_slice(self.lines.as_bytes()),
            }
            self.lines.clear();
        }
        self.last_flush = Instant::now();
    }

    /// Stops writing the file after an error: later frames for it are
    /// ignored, and the error is kept for `stats()`.
    /// A processor's batch record, into the pcapng file if one is open
    /// and keeps every frame: a `--pcap-filter` file cannot be replayed
    /// anyway, and its reader asked for the matching frames alone.
    fn batch(&mut self, b: &super::batch::BatchRecord) {
        if self.file_filter.is_some() {
            return;
        }
        if let Some(Err(e)) = self.pcap.as_mut().map(|p| p.write_batch(b)) {
            self.shared.lose();
            self.fail(e);
        }
    }

    fn fail(&mut self, e: io::Error) {
        let path = self.pcap.take().map(|p| p.path().display().to_string());
        self.shared.mode.fetch_and(!PCAP, Ordering::Relaxed);
        *self.shared.file.lock() = None;
        let msg = match path {
            Some(p) => format!("writing {p}: {e}"),
            None => e.to_string(),
        };
        log::warn!("packet trace stopped: {msg}");
        *self.shared.last_error.lock() = Some(msg);
    }

    fn close_pcap(&mut self) {
        if let Some(p) = self.pcap.take() {
            if let Err(e) = p.finish() {
                self.fail(e);
            }
        }
        *self.shared.file.lock() = None;
    }
}
