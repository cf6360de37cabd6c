//! A back-end server instance: a thread that holds no socket and runs the
//! app logic on messages. A panic inside the work is caught: the back-end
//! reports itself failed (with its generation and the job it was running)
//! and stops; the dispatcher sends its other work elsewhere, retries or
//! gives up the job, and starts a new incarnation in its place.
//!
//! Each incarnation has a [`Life`] it shares with the dispatcher: before
//! each job the thread claims it there, and once the dispatcher has
//! retired the incarnation (`vnic ctl backend K down`, or its crash) the
//! thread runs nothing more. So a job is run at most once by a back-end
//! that leaves: the one it was running when retired finishes there, the
//! ones still queued go to others.

use super::ipc::{FromBackend, Job, Reply, Work};
use super::request::RequestContext;
use crate::app::chargen;
use crate::app::http::Http;
use crate::app::{App, AppContext, Socket};
use crate::stats::Registry;
use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// The work function a back-end runs: (back-end id, work) → (reply bytes, close).
pub type Handler = Arc<dyn Fn(usize, &Work) -> (Vec<u8>, bool) + Send + Sync>;

/// One incarnation's standing, shared by its thread and the dispatcher.
#[derive(Debug, Default)]
pub struct Life {
    state: Mutex<LifeState>,
}

#[derive(Debug, Default)]
struct LifeState {
    /// The dispatcher retired this incarnation.
    retired: bool,
    /// The id of the last job the thread claimed (0: none yet).
    running: u64,
}

impl Life {
    /// A new incarnation's, not retired.
    pub fn new() -> Arc<Life> {
        Arc::new(Life::default())
    }

    /// The thread is about to run job `id`: false when the incarnation is
    /// retired (the thread then stops without running it).
    pub fn claim(&self, id: u64) -> bool {
        let mut s = self.state.lock();
        if s.retired {
            return false;
        }
        s.running = id;
        true
    }

    /// Retires the incarnation: it claims no further job. Returns the id
    /// of the last job it claimed (0 if none): that one may still be
    /// running, and its reply or failure report still comes.
    pub fn retire(&self) -> u64 {
        let mut s = self.state.lock();
        s.retired = true;
        s.running
    }
}

/// Starts incarnation `generation` of back-end `id` serving `jobs` with
/// `handler`; `life` is shared with the dispatcher.
pub fn spawn(
    id: usize,
    generation: u64,
    life: Arc<Life>,
    jobs: Receiver<Job>,
    handler: Handler,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("vnic-backend{id}"))
        .spawn(move || run(id, generation, &life, jobs, handler))
}

fn run(id: usize, generation: u64, life: &Life, jobs: Receiver<Job>, handler: Handler) {
    while let Ok(job) = jobs.recv() {
        if !life.claim(job.id) {
            return; // retired: the dispatcher sent the rest elsewhere
        }
        match catch_unwind(AssertUnwindSafe(|| handler(id, &job.work))) {
            Ok((bytes, close)) => {
                let _ = job.reply_to.send(FromBackend::Reply(Reply {
                    id: job.id,
                    conn: job.conn,
                    seq: job.seq,
                    backend: id,
                    generation,
                    bytes,
                    close,
                    reset: false,
                }));
            }
            Err(_) => {
                let _ = job.reply_to.send(FromBackend::Failed {
                    backend: id,
                    generation,
                    job: job.id,
                });
                return;
            }
        }
    }
}

/// The real app logic of the distributor model's back-ends.
pub fn app_handler(registry: Arc<Registry>) -> Handler {
    Arc::new(move |backend, work| match work {
        Work::Echo(b) => (b.clone(), false),
        Work::Discard(_) => (Vec::new(), false),
        Work::Chargen { offset, len } => (chargen::stream_bytes(*offset, *len), false),
        Work::Request {
            handler,
            request,
            connection,
            processor,
        } => {
            let ctx = RequestContext {
                processor: *processor,
                backend: Some(backend),
                connection: *connection,
            };
            let r = handler.0.handle(&ctx, request);
            (r.bytes, r.close)
        }
        Work::Http {
            request,
            connection,
            processor,
        } => {
            let mut ctx = AppContext::detached(*processor, *connection, registry.clone());
            ctx.backend = Some(backend);
            let mut app = Http::new(ctx);
            let mut sock = BufferSocket {
                input: request,
                read: 0,
                output: Vec::new(),
                closed: false,
            };
            app.poll(&mut sock);
            (sock.output, sock.closed)
        }
    })
}

/// A socket over one request's bytes, so the http app runs unchanged in a
/// back-end that has no connection.
struct BufferSocket<'a> {
    input: &'a [u8],
    read: usize,
    output: Vec<u8>,
    closed: bool,
}

impl Socket for BufferSocket<'_> {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.input.len() - self.read);
        buf[..n].copy_from_slice(&self.input[self.read..self.read + n]);
        self.read += n;
        n
    }
    fn recv_available(&self) -> usize {
        self.input.len() - self.read
    }
    fn send(&mut self, data: &[u8]) -> usize {
        self.output.extend_from_slice(data);
        data.len()
    }
    fn send_capacity(&self) -> usize {
        usize::MAX / 2
    }
    fn peer_closed(&self) -> bool {
        false
    }
    fn close(&mut self) {
        self.closed = true;
    }
    fn abort(&mut self) {
        // A request's reply cannot reset its connection: end it instead.
        self.closed = true;
    }
}
