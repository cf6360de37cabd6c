//! The distributor's side of one connection: it frames what the client
//! sends into requests, hands each to the dispatcher, and writes the
//! replies back in request order even when different back-ends answer
//! them out of order.
//!
//! What one connection may have outstanding is bounded, and past the
//! bound the forwarder stops reading its client, so TCP's receive window
//! closes and the client waits:
//!
//! - at most [`MAX_REQUESTS`] requests whose reply has not been handed to
//!   TCP yet (submitted, answered and waiting their turn, or being sent);
//! - no new request while [`MAX_REPLY_BYTES`] or more reply bytes wait
//!   for TCP to take them;
//! - for echo, discard and chargen, at most [`MAX_OUTSTANDING`] bytes in
//!   requests not yet answered.
//!
//! So a client that pipelines without reading costs at most 64 requests
//! and 256 KiB plus the replies of the requests in flight (64 of them:
//! 64 × 16 KiB for echo, 64 × a `/stats` page for HTTP) besides the TCP
//! connection's own buffers. The dispatcher's bound on work waiting for a
//! back-end ([`super::dispatcher::MAX_WAITING`]) holds back every
//! connection alike: one refused room stops reading until it is woken.
//!
//! HTTP is framed with the http app's own parser: the head goes to a
//! back-end, a body (Content-Length or chunked) is read and dropped here
//! as it arrives (the http app answers from the head alone), so a body of
//! any size costs no memory and no bytes of a body are taken for a
//! request. A malformed chunk is answered 400 here, after the replies to
//! the requests before it, and the connection closes.

use super::dispatcher::Dispatcher;
use super::ipc::{Reply, Work, NO_BACKEND};
use super::request::{HandlerRef, RequestHandler};
use crate::app::checkpoint::Copied;
use crate::app::http::{
    bad_request_line, blank_lines, error_response, find_head_end, request_framing, BodyReader,
};
use crate::app::{App, AppCheckpoint, AppContext, AppKind, CloseReason, NoCheckpoint, Socket};
use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Echo/discard chunk size: one received chunk is one message.
const CHUNK: usize = 16 * 1024;
/// Bytes a connection may have in requests not yet answered (echo,
/// discard, chargen); beyond it the forwarder stops reading.
pub const MAX_OUTSTANDING: usize = 256 * 1024;
/// Requests a connection may have whose reply is not yet handed to TCP.
pub const MAX_REQUESTS: usize = 64;
/// No new request is taken while this many reply bytes wait for TCP.
pub const MAX_REPLY_BYTES: usize = 256 * 1024;
/// Largest HTTP request head forwarded as is (bigger ones go whole, so the
/// back-end answers 431).
const MAX_HEAD: usize = 16 * 1024;
/// Bytes of a request body read (and dropped) per step.
const BODY_CHUNK: usize = 16 * 1024;

/// One connection's forwarder.
pub struct Forwarder {
    kind: AppKind,
    /// A user's protocol: its handler frames the requests here and
    /// answers them at the back-ends (`kind` is then unused).
    requests: Option<Arc<dyn RequestHandler>>,
    conn: u64,
    /// The front-end (distributor processor) that holds the connection:
    /// its replies come back there.
    front: usize,
    dispatcher: Arc<Mutex<Dispatcher>>,
    next_seq: u64,
    next_deliver: u64,
    ready: BTreeMap<u64, Reply>,
    /// Bytes of the replies in `ready`.
    ready_bytes: usize,
    out: Vec<u8>,
    out_at: usize,
    /// Bytes in requests not yet answered (echo, discard, chargen).
    outstanding: usize,
    /// What each request not yet delivered counts in `outstanding`, in
    /// request order.
    weights: VecDeque<usize>,
    /// Received bytes not yet framed: the HTTP request head being read,
    /// or a user protocol's request.
    http_buf: Vec<u8>,
    /// Where the search for the end of the HTTP head resumes.
    scan_from: usize,
    /// The HTTP head's first line was found valid.
    line_checked: bool,
    /// The rest of the current HTTP request's body, read and dropped.
    body: Option<BodyReader>,
    chargen_offset: u64,
    no_more_requests: bool,
    /// The last read stopped at a bound with requests left to take.
    blocked: bool,
    close_after_out: bool,
    closed: bool,
}

impl Forwarder {
    /// A forwarder for connection `conn` serving `kind` through `dispatcher`.
    pub fn new(kind: AppKind, conn: u64, dispatcher: Arc<Mutex<Dispatcher>>) -> Forwarder {
        Forwarder {
            kind,
            requests: None,
            conn,
            front: 0,
            dispatcher,
            next_seq: 0,
            next_deliver: 0,
            ready: BTreeMap::new(),
            ready_bytes: 0,
            out: Vec::new(),
            out_at: 0,
            outstanding: 0,
            weights: VecDeque::new(),
            http_buf: Vec::new(),
            scan_from: 0,
            line_checked: false,
            body: None,
            chargen_offset: 0,
            no_more_requests: false,
            blocked: false,
            close_after_out: false,
            closed: false,
        }
    }

    /// The forwarder of a connection front-end `front` holds (with several
    /// distributors; 0 is the default).
    pub fn at_front(mut self, front: usize) -> Forwarder {
        self.front = front;
        self
    }

    /// A forwarder for connection `conn` whose requests `handler` frames
    /// and the back-ends answer.
    pub fn for_requests(
        handler: Arc<dyn RequestHandler>,
        conn: u64,
        dispatcher: Arc<Mutex<Dispatcher>>,
    ) -> Forwarder {
        let mut f = Forwarder::new(AppKind::Http, conn, dispatcher);
        f.requests = Some(handler);
        f
    }

    /// Requests whose reply is not yet wholly handed to TCP.
    fn requests_outstanding(&self) -> usize {
        let unsent = usize::from(self.out_at < self.out.len());
        (self.next_seq - self.next_deliver) as usize + unsent
    }

    /// Reply bytes waiting for TCP to take them.
    fn reply_bytes_held(&self) -> usize {
        self.ready_bytes + (self.out.len() - self.out_at)
    }

    /// Whether one more request of `weight` bytes may be submitted now:
    /// within this connection's bounds, and the dispatcher has room (if it
    /// has not, it wakes this connection once it has). Sets `blocked` when
    /// not.
    fn may_submit(&mut self, weight: usize) -> bool {
        let ok = self.requests_outstanding() < MAX_REQUESTS
            && self.reply_bytes_held() < MAX_REPLY_BYTES
            && (weight == 0 || self.outstanding < MAX_OUTSTANDING)
            && {
                let mut d = self.dispatcher.lock();
                d.has_room() || {
                    d.want_room_at(self.front, self.conn);
                    false
                }
            };
        self.blocked |= !ok;
        ok
    }

    /// Frames and submits the user protocol's complete requests; false
    /// when the client sent more than a request may have without
    /// completing one (the connection is then reset).
    fn read_requests(&mut self, sock: &mut dyn Socket, handler: &Arc<dyn RequestHandler>) -> bool {
        let max = handler.max_request();
        while !self.no_more_requests {
            let complete = match handler.request_len(&self.http_buf) {
                Some(len) if len > 0 && !self.http_buf.is_empty() => Some(len),
                _ => None,
            };
            if let Some(len) = complete {
                let len = len.min(self.http_buf.len());
                if len > max {
                    // All that `read_bounded` lets in, and one byte too many.
                    return false;
                }
                if !self.may_submit(0) {
                    break;
                }
                let rest = self.http_buf.split_off(len);
                let request = std::mem::replace(&mut self.http_buf, rest);
                let connection = self.conn;
                self.submit(
                    Work::Request {
                        handler: HandlerRef(handler.clone()),
                        request,
                        connection,
                        processor: self.front,
                    },
                    0,
                );
                continue;
            }
            if self.http_buf.len() > max {
                return false;
            }
            if super::request::read_bounded(sock, &mut self.http_buf, max) == 0 {
                break;
            }
        }
        true
    }

    fn submit(&mut self, work: Work, weight: usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outstanding += weight;
        self.weights.push_back(weight);
        self.dispatcher
            .lock()
            .submit_from(self.front, self.conn, seq, work);
    }

    /// Answers in the distributor itself, in its place among the
    /// connection's requests, and closes (or, with `reset`, resets)
    /// after it.
    fn answer_here(&mut self, bytes: Vec<u8>, reset: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.weights.push_back(0);
        self.no_more_requests = true;
        self.deliver(Reply {
            id: 0,
            conn: self.conn,
            seq,
            backend: NO_BACKEND,
            generation: 0,
            bytes,
            close: true,
            reset,
        });
    }

    fn pending_replies(&self) -> bool {
        self.next_deliver < self.next_seq
    }

    /// Moves in-order replies into the output and writes what fits;
    /// nothing after a reply that closes, and a reply that resets resets.
    fn flush(&mut self, sock: &mut dyn Socket) {
        loop {
            if self.out_at < self.out.len() {
                let n = sock.send(&self.out[self.out_at..]);
                self.out_at += n;
                if self.out_at < self.out.len() {
                    return;
                }
            }
            self.out.clear();
            self.out_at = 0;
            if self.close_after_out {
                return;
            }
            let Some(r) = self.ready.remove(&self.next_deliver) else {
                return;
            };
            self.next_deliver += 1;
            self.ready_bytes -= r.bytes.len();
            let weight = self.weights.pop_front().unwrap_or(0);
            self.outstanding = self.outstanding.saturating_sub(weight);
            if r.reset {
                sock.abort();
                self.closed = true;
                return;
            }
            if self.kind == AppKind::Discard && self.requests.is_none() {
                // Nothing to send: the reply only says the chunk was taken.
            } else {
                self.out = r.bytes;
            }
            if r.close {
                self.close_after_out = true;
                self.no_more_requests = true;
            }
        }
    }

    fn read_input(&mut self, sock: &mut dyn Socket) {
        self.blocked = false;
        if let Some(h) = self.requests.clone() {
            if !self.read_requests(sock, &h) {
                // Too long to be a request: reset, after the answers to
                // the requests before it.
                self.answer_here(Vec::new(), true);
            }
            return;
        }
        match self.kind {
            AppKind::Echo | AppKind::Discard => {
                while sock.recv_available() > 0 {
                    let want = CHUNK.min(sock.recv_available());
                    if !self.may_submit(want) {
                        break;
                    }
                    let mut buf = vec![0u8; want];
                    let n = sock.recv(&mut buf);
                    if n == 0 {
                        break;
                    }
                    buf.truncate(n);
                    let work = if self.kind == AppKind::Echo {
                        Work::Echo(buf)
                    } else {
                        Work::Discard(buf)
                    };
                    self.submit(work, n);
                }
            }
            AppKind::Chargen => {
                let mut scratch = [0u8; 4096];
                while sock.recv_available() > 0 && sock.recv(&mut scratch) > 0 {}
                let len = CHUNK * 4;
                while !sock.peer_closed() && self.may_submit(len) {
                    let offset = self.chargen_offset;
                    self.chargen_offset += len as u64;
                    self.submit(Work::Chargen { offset, len }, len);
                }
            }
            AppKind::Http => self.read_http(sock),
        }
    }

    /// Frames HTTP requests: each head goes to a back-end, each body is
    /// read and dropped; stops at the connection's bounds.
    fn read_http(&mut self, sock: &mut dyn Socket) {
        while !self.no_more_requests {
            if let Some(body) = self.body.as_mut() {
                if self.http_buf.is_empty() {
                    let want = sock.recv_available().min(BODY_CHUNK);
                    if want == 0 {
                        return;
                    }
                    self.http_buf.resize(want, 0);
                    let n = sock.recv(&mut self.http_buf);
                    self.http_buf.truncate(n);
                    if n == 0 {
                        return;
                    }
                }
                match body.skip(&self.http_buf) {
                    Ok((n, done)) => {
                        self.http_buf.drain(..n);
                        if done {
                            self.body = None;
                        }
                    }
                    Err(status) => {
                        self.body = None;
                        self.answer_here(error_response(status), false);
                    }
                }
                continue;
            }
            // RFC 9112 section 2.2: empty lines before a request line are
            // ignored (the same ones the http app ignores).
            let blank = blank_lines(&self.http_buf);
            if blank > 0 {
                self.http_buf.drain(..blank);
                self.scan_from = 0;
            }
            if let Some(end) = find_head_end(&self.http_buf, self.scan_from) {
                if !self.may_submit(0) {
                    return;
                }
                let rest = self.http_buf.split_off(end);
                let head = std::mem::replace(&mut self.http_buf, rest);
                self.scan_from = 0;
                self.line_checked = false;
                match request_framing(&head) {
                    Some((framing, keep_alive)) => {
                        self.body = BodyReader::new(framing);
                        self.no_more_requests = !keep_alive;
                    }
                    // The back-end answers it with an error, and closes.
                    None => self.no_more_requests = true,
                }
                self.submit_http(head);
                continue;
            }
            if !self.line_checked && self.http_buf.contains(&b'\n') {
                if bad_request_line(&self.http_buf) || self.http_buf.len() >= MAX_HEAD {
                    // Never a request: the back-end says why (400), and closes.
                    if !self.may_submit(0) {
                        return;
                    }
                    let head = std::mem::take(&mut self.http_buf);
                    self.submit_http(head);
                    self.no_more_requests = true;
                    return;
                }
                self.line_checked = true;
            }
            if self.http_buf.len() >= MAX_HEAD {
                // Too big to be a request: the back-end says so (431).
                if !self.may_submit(0) {
                    return;
                }
                let head = std::mem::take(&mut self.http_buf);
                self.submit_http(head);
                self.no_more_requests = true;
                return;
            }
            self.scan_from = self.http_buf.len().saturating_sub(2);
            let want = sock.recv_available().min(MAX_HEAD - self.http_buf.len());
            if want == 0 {
                return;
            }
            let at = self.http_buf.len();
            self.http_buf.resize(at + want, 0);
            let n = sock.recv(&mut self.http_buf[at..]);
            self.http_buf.truncate(at + n);
            if n == 0 {
                return;
            }
        }
    }

    fn submit_http(&mut self, request: Vec<u8>) {
        let connection = self.conn;
        self.submit(
            Work::Http {
                request,
                connection,
                processor: self.front,
            },
            0,
        );
    }
}

impl App for Forwarder {
    fn memory(&self) -> usize {
        self.ready_bytes + self.out.capacity() + self.http_buf.capacity()
    }
    fn trim(&mut self) {
        if self.out_at >= self.out.len() {
            self.out = Vec::new();
            self.out_at = 0;
        }
        self.http_buf.shrink_to_fit();
    }
    fn poll(&mut self, sock: &mut dyn Socket) {
        if self.closed {
            return;
        }
        self.flush(sock);
        if self.closed {
            return;
        }
        if self.kind == AppKind::Chargen && self.requests.is_none() && sock.peer_closed() {
            sock.close();
            self.closed = true;
            return;
        }
        if !self.close_after_out {
            self.read_input(sock);
        }
        if self.closed {
            return;
        }
        self.flush(sock);
        if self.closed {
            return;
        }
        let out_empty = self.out_at >= self.out.len();
        if out_empty && self.close_after_out {
            sock.close();
            self.closed = true;
            return;
        }
        if out_empty
            && !self.pending_replies()
            && !self.blocked
            && sock.peer_closed()
            && sock.recv_available() == 0
        {
            // The client is done and every answer is out (an incomplete
            // HTTP request can never complete now).
            sock.close();
            self.closed = true;
        }
    }

    fn nagle(&self) -> bool {
        false
    }

    fn deliver(&mut self, reply: Reply) {
        self.ready_bytes += reply.bytes.len();
        if let Some(old) = self.ready.insert(reply.seq, reply) {
            self.ready_bytes -= old.bytes.len();
        }
    }

    fn on_closed(&mut self, _reason: CloseReason) {
        self.dispatcher.lock().forget(self.conn);
    }

    /// [`NoCheckpoint::Busy`] while a request it submitted is not yet
    /// delivered (at a back-end, or answered and waiting its turn): the
    /// reply comes back to this processor only. Otherwise its framing
    /// state (the HTTP head or user request being read, the body left to
    /// skip, chargen's offset), the reply bytes not yet sent, and the
    /// shared dispatcher and handler it needs to go on.
    fn checkpoint(&mut self) -> Result<Box<dyn AppCheckpoint>, NoCheckpoint> {
        if self.pending_replies() || !self.ready.is_empty() {
            return Err(NoCheckpoint::Busy);
        }
        let copy = Forwarder {
            kind: self.kind,
            requests: self.requests.clone(),
            conn: self.conn,
            front: self.front,
            dispatcher: self.dispatcher.clone(),
            next_seq: self.next_seq,
            next_deliver: self.next_deliver,
            ready: BTreeMap::new(),
            ready_bytes: 0,
            out: self.out[self.out_at.min(self.out.len())..].to_vec(),
            out_at: 0,
            outstanding: self.outstanding,
            weights: self.weights.clone(),
            http_buf: self.http_buf.clone(),
            scan_from: self.scan_from,
            line_checked: self.line_checked,
            body: self.body.clone(),
            chargen_offset: self.chargen_offset,
            no_more_requests: self.no_more_requests,
            blocked: self.blocked,
            close_after_out: self.close_after_out,
            closed: self.closed,
        };
        let bytes = copy.out.capacity() + copy.http_buf.capacity();
        // Restored on another front-end, its replies come back there.
        let rebind = |f: &mut Forwarder, ctx: AppContext| {
            f.conn = ctx.connection;
            f.front = ctx.processor;
        };
        Ok(Copied::new(copy, bytes, rebind).boxed())
    }
}

#[cfg(test)]
mod tests {
    use crate::app::http::{request_framing, BodyFraming};

    #[test]
    fn request_framing_and_close_rules() {
        let f = |h: &[u8]| request_framing(h);
        assert_eq!(
            f(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some((BodyFraming::Length(0), true))
        );
        assert_eq!(
            f(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"),
            Some((BodyFraming::Length(3), true))
        );
        assert_eq!(
            f(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some((BodyFraming::Chunked, true))
        );
        assert_eq!(f(b"GET / HTTP/1.0\r\n\r\n").map(|r| r.1), Some(false));
        assert_eq!(
            f(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").map(|r| r.1),
            Some(true)
        );
        assert_eq!(
            f(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").map(|r| r.1),
            Some(false)
        );
        assert_eq!(
            f(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            None
        );
    }
}

#[cfg(test)]
mod ordering_tests {
    use super::*;
    use crate::distributor::backend::Handler;
    use crate::distributor::ipc::FromBackend;
    use crate::distributor::Balance;
    use crate::stats::Registry;
    use crossbeam_channel::{unbounded, Receiver};
    use std::time::Duration;

    /// A socket that takes everything and records it.
    struct Sink {
        input: Vec<u8>,
        read: usize,
        out: Vec<u8>,
        peer_closed: bool,
        closed: bool,
    }

    impl Socket for Sink {
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
            self.out.extend_from_slice(data);
            data.len()
        }
        fn send_capacity(&self) -> usize {
            1 << 20
        }
        fn peer_closed(&self) -> bool {
            self.peer_closed
        }
        fn close(&mut self) {
            self.closed = true;
        }
        fn abort(&mut self) {
            self.closed = true;
        }
    }

    #[test]
    fn replies_go_out_in_request_order_when_backends_answer_out_of_order() {
        // Back-end 0 is slow, back-end 1 fast: request 0 is answered last.
        let handler: Handler = Arc::new(|k, w| {
            if k == 0 {
                std::thread::sleep(Duration::from_millis(150));
            }
            match w {
                Work::Http { request, .. } => {
                    let path = String::from_utf8_lossy(request)
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("")
                        .to_string();
                    (format!("reply to {path}\n").into_bytes(), false)
                }
                _ => (Vec::new(), false),
            }
        });
        let (tx, rx) = unbounded();
        let reg = Arc::new(Registry::new("distributor", "round-robin", 1).with_backends(2));
        let d = Arc::new(Mutex::new(
            Dispatcher::start(2, Balance::RoundRobin, handler, tx, reg).expect("start"),
        ));
        let mut f = Forwarder::new(AppKind::Http, 1, d.clone());
        let mut sock = Sink {
            input: b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n"
                .to_vec(),
            read: 0,
            out: Vec::new(),
            peer_closed: false,
            closed: false,
        };
        f.poll(&mut sock);
        let mut arrival = Vec::new();
        while arrival.len() < 3 {
            match rx.recv_timeout(Duration::from_secs(5)).expect("reply") {
                FromBackend::Reply(r) => {
                    if let Some(r) = d.lock().on_reply(r) {
                        arrival.push(r.seq);
                        f.deliver(r);
                        f.poll(&mut sock);
                    }
                }
                FromBackend::Failed { .. } => panic!("no back-end fails here"),
            }
        }
        assert_ne!(
            arrival,
            vec![0, 1, 2],
            "the slow back-end answered out of order"
        );
        assert_eq!(
            String::from_utf8_lossy(&sock.out),
            "reply to /a\nreply to /b\nreply to /c\n"
        );
        assert!(!sock.closed);
    }

    use crate::app::MemSocket;
    use crate::distributor::backend::app_handler;

    /// A forwarder over real back-ends running the real apps.
    fn real(kind: AppKind, m: usize) -> (Forwarder, Arc<Mutex<Dispatcher>>, Receiver<FromBackend>) {
        let (tx, rx) = unbounded();
        let reg = Arc::new(Registry::new("distributor", "round-robin", 1).with_backends(m));
        let d = Arc::new(Mutex::new(
            Dispatcher::start(m, Balance::RoundRobin, app_handler(reg.clone()), tx, reg)
                .expect("start"),
        ));
        (Forwarder::new(kind, 1, d.clone()), d, rx)
    }

    /// Hands the forwarder every reply that comes within `wait`, polling
    /// it after each; returns how many came.
    fn pump(
        f: &mut Forwarder,
        d: &Arc<Mutex<Dispatcher>>,
        rx: &Receiver<FromBackend>,
        sock: &mut MemSocket,
        wait: Duration,
    ) -> usize {
        let mut n = 0;
        while let Ok(m) = rx.recv_timeout(wait) {
            match m {
                FromBackend::Reply(r) => {
                    if let Some(r) = d.lock().on_reply(r) {
                        n += 1;
                        f.deliver(r);
                    }
                }
                other => panic!("no back-end fails here: {other:?}"),
            }
            f.poll(sock);
        }
        n
    }

    /// Splits a byte stream into (status, body) of each response.
    fn responses(mut b: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut v = Vec::new();
        while let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&b[..end]).to_string();
            let status = head[9..12].parse().expect("status");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let body = b[end + 4..end + 4 + len].to_vec();
            b = &b[end + 4 + len..];
            v.push((status, body));
        }
        v
    }

    #[test]
    fn a_pipelining_client_that_reads_nothing_is_not_read_past_the_bound() {
        let (mut f, d, rx) = real(AppKind::Http, 2);
        let mut sock = MemSocket::new(0);
        let n = 10_000;
        let one = b"GET /stats HTTP/1.1\r\n\r\n";
        for _ in 0..n {
            sock.push(one);
        }
        f.poll(&mut sock);
        let answered = pump(&mut f, &d, &rx, &mut sock, Duration::from_millis(300));
        let taken = n * one.len() - sock.rx.len();
        assert!(
            answered <= 64,
            "{answered} requests answered for a client that reads nothing"
        );
        assert!(
            taken <= 64 * one.len() + 64 * 1024,
            "{taken} bytes read from a client that reads nothing"
        );
        // The client reads again: every request is answered, in order.
        let mut out = Vec::new();
        for _ in 0..100_000 {
            sock.capacity = 64 * 1024;
            f.poll(&mut sock);
            pump(&mut f, &d, &rx, &mut sock, Duration::from_millis(1));
            out.extend(sock.take_tx());
            if sock.rx.is_empty() && !f.pending_replies() && f.out_at >= f.out.len() {
                break;
            }
        }
        let r = responses(&out);
        assert_eq!(r.len(), n);
        assert!(r.iter().all(|(s, _)| *s == 200));
    }
    /// Feeds `input` to a fresh HTTP forwarder over real back-ends in
    /// pieces of `piece` bytes; returns (status, body) of each response
    /// and whether the connection was closed.
    fn http_exchange(input: &[u8], piece: usize) -> (Vec<(u16, Vec<u8>)>, bool) {
        let (mut f, d, rx) = real(AppKind::Http, 2);
        let mut sock = MemSocket::new(1 << 30);
        for part in input.chunks(piece) {
            sock.push(part);
            f.poll(&mut sock);
            assert!(
                f.http_buf.len() <= MAX_HEAD + piece,
                "request bytes buffered"
            );
        }
        pump(&mut f, &d, &rx, &mut sock, Duration::from_millis(300));
        (responses(&sock.take_tx()), sock.closed())
    }

    #[test]
    fn a_content_length_that_overflows_is_400_and_nothing_after_it_is_answered() {
        let (r, closed) = http_exchange(
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\nGET /stats HTTP/1.1\r\n\r\n",
            1 << 20,
        );
        let codes: Vec<u16> = r.iter().map(|(s, _)| *s).collect();
        assert_eq!(codes, [400]);
        assert!(closed);
    }

    #[test]
    fn a_chunked_body_is_not_taken_for_requests() {
        let hidden = b"GET /smuggled HTTP/1.1\r\n\r\n";
        let mut req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(format!("{:x}\r\n", hidden.len()).as_bytes());
        req.extend_from_slice(hidden);
        req.extend_from_slice(b"\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        for piece in [1, 7, 1 << 20] {
            let (r, closed) = http_exchange(&req, piece);
            let codes: Vec<u16> = r.iter().map(|(s, _)| *s).collect();
            assert_eq!(codes, [405, 200], "in pieces of {piece}");
            assert!(!closed);
        }
    }

    #[test]
    fn a_bad_chunk_is_400_after_the_answer_to_its_request() {
        let req =
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\n\r\n";
        let (r, closed) = http_exchange(req, 1 << 20);
        let codes: Vec<u16> = r.iter().map(|(s, _)| *s).collect();
        assert_eq!(codes, [200, 400]);
        assert!(closed);
    }

    #[test]
    fn an_unknown_transfer_coding_is_501() {
        let (r, closed) = http_exchange(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxxxxGET / HTTP/1.1\r\n\r\n",
            1 << 20,
        );
        let codes: Vec<u16> = r.iter().map(|(s, _)| *s).collect();
        assert_eq!(codes, [501]);
        assert!(closed);
    }

    #[test]
    fn a_large_body_is_skipped_not_buffered() {
        let mut req = b"GET / HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n".to_vec();
        req.extend(std::iter::repeat_n(b'G', 1_000_000));
        req.extend_from_slice(b"GET /stats HTTP/1.1\r\n\r\n");
        let (r, closed) = http_exchange(&req, 1460);
        let codes: Vec<u16> = r.iter().map(|(s, _)| *s).collect();
        assert_eq!(codes, [200, 200]);
        assert!(r[1].1.starts_with(b"{"), "the second is /stats");
        assert!(!closed);
    }
    #[test]
    fn a_reply_that_resets_comes_after_the_replies_before_it() {
        let (tx, _rx) = unbounded();
        let reg = Arc::new(Registry::new("distributor", "round-robin", 1).with_backends(1));
        let d = Arc::new(Mutex::new(
            Dispatcher::start(1, Balance::RoundRobin, app_handler(reg.clone()), tx, reg)
                .expect("start"),
        ));
        let mut f = Forwarder::new(AppKind::Echo, 1, d);
        let mut sock = MemSocket::new(1 << 20);
        sock.push(b"abc");
        f.poll(&mut sock);
        sock.push(b"def");
        f.poll(&mut sock);
        let reply = |seq: u64, bytes: &[u8], reset: bool| Reply {
            id: seq + 1,
            conn: 1,
            seq,
            backend: 0,
            generation: 1,
            bytes: bytes.to_vec(),
            close: reset,
            reset,
        };
        f.deliver(reply(1, b"", true));
        f.poll(&mut sock);
        assert!(!sock.aborted, "not before the reply ahead of it");
        f.deliver(reply(0, b"abc", false));
        f.poll(&mut sock);
        assert_eq!(sock.tx, b"abc");
        assert!(sock.aborted, "then reset");
    }
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;
    use crate::app::{AppContext, MemSocket};
    use crate::distributor::backend::app_handler;
    use crate::distributor::ipc::FromBackend;
    use crate::distributor::Balance;
    use crate::stats::Registry;
    use crossbeam_channel::{unbounded, Receiver};
    use std::time::Duration;

    /// A forwarder (as a processor holds it) over real back-ends.
    fn real(kind: AppKind) -> (Box<dyn App>, Arc<Mutex<Dispatcher>>, Receiver<FromBackend>) {
        let (tx, rx) = unbounded();
        let reg = Arc::new(Registry::new("distributor", "round-robin", 1).with_backends(2));
        let d = Arc::new(Mutex::new(
            Dispatcher::start(2, Balance::RoundRobin, app_handler(reg.clone()), tx, reg)
                .expect("start"),
        ));
        (Box::new(Forwarder::new(kind, 1, d.clone())), d, rx)
    }

    fn ctx() -> AppContext {
        let reg = Arc::new(Registry::new("distributor", "round-robin", 1));
        AppContext::detached(0, 1, reg)
    }

    /// Hands the app every reply until none came for `wait`.
    fn pump(
        f: &mut Box<dyn App>,
        d: &Arc<Mutex<Dispatcher>>,
        rx: &Receiver<FromBackend>,
        sock: &mut MemSocket,
    ) {
        while let Ok(m) = rx.recv_timeout(Duration::from_millis(200)) {
            match m {
                FromBackend::Reply(r) => {
                    if let Some(r) = d.lock().on_reply(r) {
                        f.deliver(r);
                    }
                }
                other => panic!("no back-end fails here: {other:?}"),
            }
            f.poll(sock);
        }
    }

    /// Checkpoint, `on_moved`, drop, restore: the connection moved.
    fn moved(f: Box<dyn App>) -> Box<dyn App> {
        let mut f = f;
        let cp = f.checkpoint().expect("a checkpoint");
        f.on_moved();
        drop(f);
        cp.restore(ctx()).expect("restored")
    }

    #[test]
    fn busy_while_a_request_is_out_then_moved_the_echo_goes_on() {
        let (mut f, d, rx) = real(AppKind::Echo);
        let mut sock = MemSocket::new(1 << 20);
        let first: Vec<u8> = (0..40_000usize).map(|i| i as u8).collect();
        sock.push(&first);
        f.poll(&mut sock);
        assert_eq!(
            f.checkpoint().err(),
            Some(NoCheckpoint::Busy),
            "requests at the back-ends"
        );
        pump(&mut f, &d, &rx, &mut sock);
        let mut f = moved(f);
        let second: Vec<u8> = (0..30_000usize).map(|i| (i * 3) as u8).collect();
        sock.push(&second);
        f.poll(&mut sock);
        pump(&mut f, &d, &rx, &mut sock);
        let want = [first, second].concat();
        assert!(sock.tx == want, "{} of {} bytes", sock.tx.len(), want.len());
    }

    #[test]
    fn moved_mid_http_request_head_and_mid_body_each_request_is_answered_once() {
        let (mut f, d, rx) = real(AppKind::Http);
        let mut sock = MemSocket::new(1 << 20);
        let input: &[&[u8]] = &[
            b"GET / HT",
            b"TP/1.1\r\nHost: a\r\n",
            b"\r\nGET /nothing HTTP/1.1\r\nContent-Length: 10\r\n\r\nhello",
            b"world",
            b"GET /x HTTP/1.1\r\n\r\n",
        ];
        for piece in input {
            sock.push(piece);
            f.poll(&mut sock);
            pump(&mut f, &d, &rx, &mut sock);
            // Pairs style first: many checkpoints, each dropped.
            for _ in 0..100 {
                drop(f.checkpoint().expect("nothing out after pump"));
            }
            f = moved(f);
        }
        let text = String::from_utf8_lossy(&sock.tx).to_string();
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 1, "{text}");
        assert_eq!(text.matches("HTTP/1.1 404").count(), 2, "{text}");
        sock.peer_fin = true;
        f.poll(&mut sock);
        assert!(sock.closed());
    }
}
