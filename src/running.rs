//! A running vnic ([`Running`]): what `Builder::start` hands back, how it
//! stops (drain with FIN, then reset what is left), and the supervision
//! of its RX threads, whose failure stops the whole vnic with one line.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vnic_adapter::trace::Tracer;
use vnic_adapter::{FrameSource, RxQueue, ToProcessor};
use vnic_listeners::control::{Runtime, Status};

use crate::builder::Error;

/// A vnic that runs: frames flow until [`Running::stop`] (or the flag
/// from [`Running::stop_flag`] is set, e.g. by a signal handler).
pub struct Running {
    pub(crate) ready: String,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) halt: Arc<AtomicBool>,
    pub(crate) fatal: Arc<Mutex<Option<String>>>,
    pub(crate) drain: Duration,
    pub(crate) queues: Vec<vnic_adapter::ProcessorQueue>,
    pub(crate) processors: Vec<JoinHandle<()>>,
    pub(crate) threads: Vec<JoinHandle<()>>,
    pub(crate) ctl_thread: Option<JoinHandle<()>>,
    pub(crate) summary: Option<JoinHandle<()>>,
    pub(crate) tracer: Arc<Tracer>,
    pub(crate) runtime: Arc<Runtime>,
}

impl Running {
    /// The ready line `vnic up` prints (`vnic: ready tap=... ip=...
    /// processors=N filter=MODE model=MODEL ...`).
    pub fn ready_line(&self) -> &str {
        &self.ready
    }

    /// The flag that stops this vnic when set: hand it to a signal
    /// handler (`signal_hook::flag::register`).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Asks every thread to stop; [`Running::wait`] then returns.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// What `vnic status` would show now.
    pub fn status(&self) -> Status {
        self.runtime.status()
    }

    /// Runs until [`Running::stop`] (or the stop flag) or a failure, then
    /// stops the vnic: new connections are refused, every connection is
    /// closed with FIN, those still open after the drain time are reset,
    /// every thread is joined and the trace flushed and closed. Returns
    /// what was drained, or why the vnic failed (the TAP went away, an RX
    /// thread died).
    pub fn wait(mut self) -> Result<Drained, Error> {
        while !self.stop.load(Ordering::Relaxed) && self.fatal.lock().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let failed = self.fatal.lock().is_some();
        let drained = if failed {
            Drained::default()
        } else {
            self.drain_connections()
        };
        self.halt.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        // The RX threads tell the processors to shut down as they end;
        // this covers processors no RX thread reached.
        for q in &self.queues {
            let _ = q.send(ToProcessor::Shutdown);
        }
        for t in std::mem::take(&mut self.processors) {
            let _ = t.join();
        }
        if let Some(t) = self.ctl_thread.take() {
            let _ = t.join();
        }
        // Flush and close the trace so the file is always complete.
        self.tracer.close();
        if let Some(t) = self.summary.take() {
            let _ = t.join();
        }
        let fatal = self.fatal.lock().take();
        let end = self.runtime.status();
        let drained = Drained {
            frames_in: end.adapter.frames_in,
            frames_out: end.adapter.frames_out,
            connections: end.processors.iter().map(|p| p.accepted).sum(),
            trace_records: end.trace.records,
            trace_lost: end.trace.lost,
            ..drained
        };
        match fatal {
            Some(why) => Err(Error::Failed(why)),
            None => Ok(drained),
        }
    }

    /// Tells every processor to drain, and waits until no connection is
    /// open or the drain time is over.
    fn drain_connections(&self) -> Drained {
        let registry = &self.runtime.registry;
        let unfinished = || -> u64 {
            registry
                .processors
                .iter()
                .map(|p| p.unfinished.load(Ordering::Relaxed))
                .sum()
        };
        let active: u64 = registry
            .processors
            .iter()
            .map(|p| p.active.load(Ordering::Relaxed))
            .sum();
        for p in &registry.processors {
            // Until the processor has counted, everything it holds is open.
            p.unfinished
                .store(p.active.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        log::info!(
            "stopping: closing {active} connection(s) with FIN, at most {:?}",
            self.drain
        );
        for q in &self.queues {
            let _ = q.send(ToProcessor::Drain);
        }
        let deadline = Instant::now() + self.drain;
        while unfinished() > 0 && Instant::now() < deadline && self.fatal.lock().is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let reset = unfinished();
        Drained {
            closed: active.saturating_sub(reset),
            reset,
            ..Drained::default()
        }
    }
}

/// What stopping a vnic did to its connections, and what it did over its
/// whole run: what `vnic up` sums up in one line at exit, as tcpdump does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Connections that closed with FIN within the drain time (or were
    /// closing already).
    pub closed: u64,
    /// Connections still open when the drain time was over: reset.
    pub reset: u64,
    /// Frames read from the TAP over the whole run.
    pub frames_in: u64,
    /// Frames written to the TAP over the whole run.
    pub frames_out: u64,
    /// TCP connections accepted over the whole run (all processors).
    pub connections: u64,
    /// Trace records written (pcapng blocks or trace lines).
    pub trace_records: u64,
    /// Trace records lost (the writer could not keep up).
    pub trace_lost: u64,
}

impl std::fmt::Display for Drained {
    /// `vnic: stopped: 1204 frames in, 1187 out; 12 connection(s): 1
    /// closed with FIN, 0 reset after the drain time; trace: 2391 records
    /// written, 0 lost`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} frames in, {} out; {} connection(s): {} closed with FIN, {} reset after the \
             drain time; trace: {} records written, {} lost",
            self.frames_in,
            self.frames_out,
            self.connections,
            self.closed,
            self.reset,
            self.trace_records,
            self.trace_lost
        )
    }
}

/// The default drain time of a stopping vnic.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

/// An RX thread's supervision: a failure (the TAP went away, a panic)
/// stops the whole vnic with one line saying what happened, instead of a
/// vnic that hangs or retries for ever.
pub(crate) struct RxThread {
    pub(crate) tap: String,
    pub(crate) halt: Arc<AtomicBool>,
    pub(crate) fatal: Arc<Mutex<Option<String>>>,
    pub(crate) queues: Vec<vnic_adapter::ProcessorQueue>,
}

impl RxThread {
    pub(crate) fn run(self, adapter: RxQueue, source: Box<dyn FrameSource>, tracer: Arc<Tracer>) {
        let halt = self.halt.clone();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            adapter.run(source, tracer, halt)
        }));
        let why = match ran {
            Ok(Ok(())) => return,
            Ok(Err(e)) => format!("the TAP {} failed: {e}", self.tap),
            Err(p) => format!(
                "the RX thread of {} failed: {}",
                self.tap,
                vnic_listeners::processor::panic_message(p.as_ref())
            ),
        };
        self.fatal.lock().get_or_insert(why);
        self.halt.store(true, Ordering::Relaxed);
        for q in &self.queues {
            let _ = q.send(ToProcessor::Shutdown);
        }
    }
}
