//! The `framing` target: what a client sends, framed into requests by the
//! distributor model's [`Forwarder`] and answered by the back-ends' real
//! app logic ([`app_handler`]).
//!
//! The first byte of an input chooses what the connection serves (its
//! two low bits: 0 or 1 HTTP, 2 a user's line protocol, 3 echo) and how
//! the back-ends answer (the other six bits: in order, newest first, or
//! one at a time, and for the line protocol its longest request); the
//! rest is the client's byte stream. No back-end thread runs: the
//! dispatcher has none, so every job waits in it, and the harness takes
//! each ([`Dispatcher::take_waiting`]), answers it as a back-end would
//! and hands the reply back, as late and out of order as the first byte
//! says.
//!
//! Checked, for the stream fed all at once and in pieces (with little
//! send space):
//!
//! - both give the same answers, close and reset alike, and forward the
//!   same complete requests;
//! - every request forwarded is a piece of the stream, in order, and no
//!   byte of a request body is forwarded as a request;
//! - HTTP: the answers have the status codes, in order, that the
//!   monolithic model's own [`Http`](vnic_listeners::app::http::Http)
//!   gives the same stream, and the connection closes alike;
//! - the line protocol: every request is one whole line of at most the
//!   handler's `max_request` bytes; the connection never holds more than
//!   `max_request + 1` bytes it has not handed on; the answers, the close
//!   and the reset are those of the monolithic model's [`RequestApp`];
//! - echo: every byte comes back, in order.

use crate::http::{self, find, settle, without_dates};
use crate::split::{hash, pieces};
use crossbeam_channel::unbounded;
use parking_lot::Mutex;
use std::sync::Arc;
use vnic_listeners::app::http::{find_head_end, request_framing};
use vnic_listeners::app::{App, AppContext, AppKind, MemSocket};
use vnic_listeners::distributor::backend::app_handler;
use vnic_listeners::distributor::request::RequestApp;
use vnic_listeners::distributor::{
    Balance, Dispatcher, Forwarder, Reply, RequestContext, RequestHandler, Response, Work,
};

/// How the harness's "back-ends" answer, from the input's first byte.
#[derive(Clone, Copy, Debug)]
pub struct Answers(u8);

impl Answers {
    /// Newest reply first.
    fn reversed(self) -> bool {
        self.0 & 1 == 1
    }

    /// One reply per poll (slow back-ends): the rest wait.
    fn one_at_a_time(self) -> bool {
        self.0 & 2 == 2
    }
}

/// What a forwarder did with one client's bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Forwarded {
    /// The requests it handed to back-ends, in request order.
    pub requests: Vec<Vec<u8>>,
    /// What the client got.
    pub output: Vec<u8>,
    /// It closed.
    pub closed: bool,
    /// It reset the connection.
    pub aborted: bool,
}

/// The payload of a job, if it carries client bytes.
fn payload(w: &Work) -> &[u8] {
    match w {
        Work::Http { request, .. } | Work::Request { request, .. } => request,
        Work::Echo(b) | Work::Discard(b) => b,
        Work::Chargen { .. } => &[],
    }
}

/// `stream` in pieces of `cuts` bytes (then the FIN) to the forwarder
/// `make` builds over a dispatcher with no back-end; jobs are answered
/// as `answers` says; `watch` sees the socket and the requests handed on
/// so far after every poll.
pub fn forward(
    make: impl FnOnce(Arc<Mutex<Dispatcher>>) -> Forwarder,
    stream: &[u8],
    cuts: &[usize],
    capacity: usize,
    answers: Answers,
    mut watch: impl FnMut(&MemSocket, &[Vec<u8>]),
) -> Forwarded {
    let registry = http::registry();
    let handler = app_handler(registry.clone());
    let (tx, _rx) = unbounded();
    let d = Dispatcher::start(0, Balance::RoundRobin, handler.clone(), tx, registry)
        .expect("a dispatcher with no back-end starts no thread");
    let d = Arc::new(Mutex::new(d));
    let mut f = make(d.clone());
    let mut sock = MemSocket::new(capacity);
    let mut requests: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut pending: Vec<Reply> = Vec::new();
    let mut round = |f: &mut Forwarder, sock: &mut MemSocket| -> bool {
        let jobs = d.lock().take_waiting();
        let moved = !jobs.is_empty() || !pending.is_empty();
        for job in jobs {
            requests.push((job.seq, payload(&job.work).to_vec()));
            let (bytes, close) = handler(0, &job.work);
            pending.push(Reply {
                id: job.id,
                conn: job.conn,
                seq: job.seq,
                backend: 0,
                generation: 1,
                bytes,
                close,
                reset: false,
            });
        }
        if answers.reversed() {
            pending.reverse();
        }
        let keep = if answers.one_at_a_time() {
            pending.len().saturating_sub(1)
        } else {
            0
        };
        for r in pending.drain(keep..) {
            f.deliver(r);
        }
        requests.sort_by_key(|(seq, _)| *seq);
        let handed: Vec<Vec<u8>> = requests.iter().map(|(_, r)| r.clone()).collect();
        watch(sock, &handed);
        moved
    };
    let mut at = 0;
    for &n in cuts {
        sock.push(&stream[at..at + n]);
        at += n;
        settle(&mut f, &mut sock, capacity, &mut round);
    }
    sock.peer_fin = true;
    settle(&mut f, &mut sock, capacity, &mut round);
    Forwarded {
        requests: requests.into_iter().map(|(_, r)| r).collect(),
        output: sock.tx,
        closed: sock.close_calls > 0,
        aborted: sock.aborted,
    }
}

/// A user's protocol: one request per line, answered with its length and
/// the line; `bye` closes.
struct Lines {
    max: usize,
}

impl RequestHandler for Lines {
    fn name(&self) -> &str {
        "lines"
    }

    fn request_len(&self, buf: &[u8]) -> Option<usize> {
        buf.iter().position(|&b| b == b'\n').map(|i| i + 1)
    }

    fn handle(&self, _ctx: &RequestContext, request: &[u8]) -> Response {
        let mut bytes = format!("{}:", request.len()).into_bytes();
        bytes.extend_from_slice(request);
        Response {
            bytes,
            close: request == b"bye\n",
        }
    }

    fn max_request(&self) -> usize {
        self.max
    }
}

/// The requests up to the first one [`Lines`] answers with a close.
fn until_close(requests: &[Vec<u8>]) -> &[Vec<u8>] {
    let end = requests
        .iter()
        .position(|r| r == b"bye\n")
        .map_or(requests.len(), |i| i + 1);
    &requests[..end]
}

/// Checks that every request is a piece of `stream`, in order (a request
/// can only be found at or after the end of the one before).
fn in_order(stream: &[u8], requests: &[Vec<u8>]) {
    let mut at = 0;
    for r in requests {
        match find(&stream[at..], r) {
            Some(i) => at += i + r.len(),
            None => panic!(
                "forwarded {:?}, not in the stream after byte {at}",
                String::from_utf8_lossy(r)
            ),
        }
    }
}

/// The requests that are a whole head that parses: what any cut of the
/// stream must forward alike (a request line refused early goes with
/// whatever had arrived by then).
fn whole_heads(requests: &[Vec<u8>]) -> Vec<&Vec<u8>> {
    requests
        .iter()
        .filter(|r| find_head_end(r, 0) == Some(r.len()) && request_framing(r).is_some())
        .collect()
}

fn check_http(stream: &[u8], answers: Answers) {
    let seed = hash(stream);
    let make = |d| Forwarder::new(AppKind::Http, 1, d);
    let whole = forward(
        make,
        stream,
        &[stream.len()],
        usize::MAX / 2,
        answers,
        |_, _| {},
    );
    let cuts = pieces(stream.len(), seed, 1 + (seed % 61) as usize);
    let cut = forward(
        make,
        stream,
        &cuts,
        1 + (seed >> 8) as usize % 2000,
        answers,
        |_, _| {},
    );
    assert_eq!(
        without_dates(&whole.output),
        without_dates(&cut.output),
        "all at once and in pieces"
    );
    assert_eq!((whole.closed, whole.aborted), (cut.closed, cut.aborted));
    assert_eq!(whole_heads(&whole.requests), whole_heads(&cut.requests));
    in_order(stream, &whole.requests);
    in_order(stream, &cut.requests);
    let mono = http::serve(stream, &[stream.len()], usize::MAX / 2);
    assert_eq!(
        http::statuses(&whole.output),
        http::statuses(&mono.output),
        "the distributor and the monolithic model answer {:?} differently",
        String::from_utf8_lossy(&stream[..stream.len().min(300)])
    );
    assert_eq!(whole.closed, mono.closed, "both close alike");
}

fn check_lines(stream: &[u8], answers: Answers, max: usize) {
    let seed = hash(stream);
    let handler: Arc<dyn RequestHandler> = Arc::new(Lines { max });
    let bounded = |s: &MemSocket, requests: &[Vec<u8>]| {
        let handed: usize = requests.iter().map(Vec::len).sum();
        assert!(
            s.read - handed <= max + 1,
            "{} bytes held back, max_request {max}",
            s.read - handed
        );
    };
    let run = |cuts: &[usize], capacity: usize| {
        let h = handler.clone();
        forward(
            |d| Forwarder::for_requests(h, 1, d),
            stream,
            cuts,
            capacity,
            answers,
            bounded,
        )
    };
    let whole = run(&[stream.len()], usize::MAX / 2);
    let cuts = pieces(stream.len(), seed, 1 + (seed % 61) as usize);
    let cut = run(&cuts, 1 + (seed >> 8) as usize % 500);
    assert_eq!(whole.output, cut.output, "all at once and in pieces");
    assert_eq!((whole.closed, whole.aborted), (cut.closed, cut.aborted));
    // Requests pipelined behind one whose answer closes may be forwarded
    // before that answer comes back (the handler decides at a back-end);
    // they are never answered. Up to that one, both runs forward alike.
    assert_eq!(
        until_close(&whole.requests),
        until_close(&cut.requests),
        "all at once and in pieces"
    );
    in_order(stream, &whole.requests);
    for r in &whole.requests {
        assert!(
            r.len() <= max,
            "a request of {} bytes, max_request {max}",
            r.len()
        );
        assert_eq!(r.iter().position(|&b| b == b'\n'), Some(r.len() - 1));
    }
    // The monolithic model's app for the same handler.
    let mut app = RequestApp::new(
        handler.clone(),
        &AppContext::detached(0, 1, http::registry()),
    );
    let mut sock = MemSocket::new(usize::MAX / 2);
    sock.push(stream);
    let mut handled = 0;
    let mut count = |s: &mut MemSocket| {
        // Its answers say how long each request was: "LEN:".
        let mut rest = &s.tx[..];
        let mut sum = 0;
        while let Some(colon) = rest.iter().position(|&b| b == b':') {
            let len: usize = std::str::from_utf8(&rest[..colon])
                .ok()
                .and_then(|l| l.parse().ok())
                .expect("an answer starts with LEN:");
            sum += len;
            rest = &rest[(colon + 1 + len).min(rest.len())..];
        }
        handled = sum;
        assert!(s.read - handled <= max + 1, "RequestApp held back too much");
    };
    settle(&mut app, &mut sock, usize::MAX / 2, |_, s| {
        count(s);
        false
    });
    sock.peer_fin = true;
    settle(&mut app, &mut sock, usize::MAX / 2, |_, s| {
        count(s);
        false
    });
    assert_eq!(whole.output, sock.tx, "distributor and monolithic answers");
    assert_eq!(
        (whole.closed, whole.aborted),
        (sock.close_calls > 0, sock.aborted),
        "distributor and monolithic close alike"
    );
}

fn check_echo(stream: &[u8], answers: Answers) {
    let seed = hash(stream);
    let cuts = pieces(stream.len(), seed, 1 + (seed % 4000) as usize);
    let e = forward(
        |d| Forwarder::new(AppKind::Echo, 1, d),
        stream,
        &cuts,
        1 + (seed >> 8) as usize % 5000,
        answers,
        |_, _| {},
    );
    assert_eq!(e.output, stream, "echo returns every byte");
    assert_eq!(e.requests.concat(), stream, "echo forwards every byte once");
    assert!(e.closed && !e.aborted, "echo closes after the client's FIN");
}

/// The whole target: one input, every check.
pub fn run(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let answers = Answers(mode >> 2);
    match mode & 3 {
        0 | 1 => check_http(stream, answers),
        2 => check_lines(stream, answers, 1 + usize::from(mode >> 2) * 3),
        _ => check_echo(stream, answers),
    }
}
