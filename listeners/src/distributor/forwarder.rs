//! The distributor's side of one connection: it frames what the client
//! sends into requests, hands each to the dispatcher, and writes the
//! replies back in request order even when different back-ends answer
//! them out of order.

use super::dispatcher::Dispatcher;
use super::ipc::{Reply, Work};
use super::request::{HandlerRef, RequestHandler};
use crate::app::{App, AppKind, Socket};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Echo/discard chunk size: one received chunk is one message.
const CHUNK: usize = 16 * 1024;
/// Bytes a connection may have in flight at the back-ends (echo, chargen);
/// beyond it the forwarder stops reading, and TCP's window pushes back.
const MAX_OUTSTANDING: usize = 256 * 1024;
/// Largest HTTP request head forwarded as is (bigger ones go whole, so the
/// back-end answers 431).
const MAX_HEAD: usize = 16 * 1024;

/// One connection's forwarder.
pub struct Forwarder {
    kind: AppKind,
    /// A user's protocol: its handler frames the requests here and
    /// answers them at the back-ends (`kind` is then unused).
    requests: Option<Arc<dyn RequestHandler>>,
    conn: u64,
    dispatcher: Arc<Mutex<Dispatcher>>,
    next_seq: u64,
    next_deliver: u64,
    ready: BTreeMap<u64, Reply>,
    out: Vec<u8>,
    out_at: usize,
    outstanding: usize,
    http_buf: Vec<u8>,
    chargen_offset: u64,
    no_more_requests: bool,
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
            dispatcher,
            next_seq: 0,
            next_deliver: 0,
            ready: BTreeMap::new(),
            out: Vec::new(),
            out_at: 0,
            outstanding: 0,
            http_buf: Vec::new(),
            chargen_offset: 0,
            no_more_requests: false,
            close_after_out: false,
            closed: false,
        }
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
                let rest = self.http_buf.split_off(len.min(self.http_buf.len()));
                let request = std::mem::replace(&mut self.http_buf, rest);
                let connection = self.conn;
                self.submit(
                    Work::Request {
                        handler: HandlerRef(handler.clone()),
                        request,
                        connection,
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
        self.dispatcher.lock().submit(self.conn, seq, work);
    }

    fn pending_replies(&self) -> bool {
        self.next_deliver < self.next_seq
    }

    /// Moves in-order replies into the output and writes what fits.
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
            let Some(r) = self.ready.remove(&self.next_deliver) else {
                return;
            };
            self.next_deliver += 1;
            self.outstanding = self.outstanding.saturating_sub(match self.kind {
                AppKind::Http => 0,
                AppKind::Chargen => r.bytes.len(),
                AppKind::Echo | AppKind::Discard => r.bytes.len().max(1),
            });
            if self.kind == AppKind::Discard {
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
        if let Some(h) = self.requests.clone() {
            if !self.read_requests(sock, &h) {
                sock.abort();
                self.closed = true;
            }
            return;
        }
        match self.kind {
            AppKind::Echo | AppKind::Discard => {
                while self.outstanding < MAX_OUTSTANDING && sock.recv_available() > 0 {
                    let mut buf = vec![0u8; CHUNK.min(sock.recv_available())];
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
                while !sock.peer_closed() && self.outstanding < MAX_OUTSTANDING {
                    let len = CHUNK * 4;
                    let offset = self.chargen_offset;
                    self.chargen_offset += len as u64;
                    self.submit(Work::Chargen { offset, len }, len);
                }
            }
            AppKind::Http => {
                while !self.no_more_requests && sock.recv_available() > 0 {
                    let mut buf = vec![0u8; sock.recv_available().min(64 * 1024)];
                    let n = sock.recv(&mut buf);
                    self.http_buf.extend_from_slice(&buf[..n]);
                    if n == 0 {
                        break;
                    }
                }
                while !self.no_more_requests {
                    let Some(len) = request_len(&self.http_buf) else {
                        if self.http_buf.len() > MAX_HEAD {
                            // Too big to be a request: the back-end says so (431).
                            let request = std::mem::take(&mut self.http_buf);
                            self.submit_http(request);
                            self.no_more_requests = true;
                        }
                        break;
                    };
                    let rest = self.http_buf.split_off(len);
                    let request = std::mem::replace(&mut self.http_buf, rest);
                    let closes = asks_to_close(&request);
                    self.submit_http(request);
                    if closes {
                        self.no_more_requests = true;
                    }
                }
            }
        }
    }

    fn submit_http(&mut self, request: Vec<u8>) {
        let connection = self.conn;
        self.submit(
            Work::Http {
                request,
                connection,
            },
            0,
        );
    }
}

impl App for Forwarder {
    fn poll(&mut self, sock: &mut dyn Socket) {
        if self.closed {
            return;
        }
        self.flush(sock);
        if self.kind == AppKind::Chargen && sock.peer_closed() {
            sock.close();
            self.closed = true;
            return;
        }
        self.read_input(sock);
        if self.closed {
            return;
        }
        self.flush(sock);
        let drained = self.out_at >= self.out.len() && !self.pending_replies();
        if drained && self.close_after_out {
            sock.close();
            self.closed = true;
            return;
        }
        if drained && sock.peer_closed() && sock.recv_available() == 0 {
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
        self.ready.insert(reply.seq, reply);
    }
}

/// Length of the first complete HTTP request in `buf` (head and
/// Content-Length body), if there is one.
fn request_len(buf: &[u8]) -> Option<usize> {
    let (head_end, sep) = find(buf, b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| find(buf, b"\n\n").map(|i| (i, 2)))?;
    let head = &buf[..head_end];
    let body = content_length(head).unwrap_or(0);
    let total = head_end + sep + body;
    (buf.len() >= total).then_some(total)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    std::str::from_utf8(head)
        .ok()?
        .lines()
        .skip(1)
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
}

fn content_length(head: &[u8]) -> Option<usize> {
    header(head, "content-length")?.parse().ok()
}

fn asks_to_close(request: &[u8]) -> bool {
    let head_end = find(request, b"\r\n\r\n").unwrap_or(request.len());
    let head = &request[..head_end];
    let v10 = std::str::from_utf8(head)
        .ok()
        .and_then(|h| h.lines().next())
        .is_some_and(|l| l.trim_end().ends_with("HTTP/1.0"));
    match header(head, "connection").map(|v| v.to_ascii_lowercase()) {
        Some(v) if v.contains("close") => true,
        Some(v) if v.contains("keep-alive") => false,
        _ => v10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_framing() {
        assert_eq!(
            request_len(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET"),
            Some(27)
        );
        assert_eq!(request_len(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        let post = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET";
        assert_eq!(request_len(post), Some(post.len() - 3));
        assert_eq!(
            request_len(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab"),
            None
        );
    }

    #[test]
    fn close_rules() {
        assert!(asks_to_close(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(!asks_to_close(
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(!asks_to_close(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(asks_to_close(
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
        ));
    }
}

#[cfg(test)]
mod ordering_tests {
    use super::*;
    use crate::distributor::backend::Handler;
    use crate::distributor::ipc::FromBackend;
    use crate::distributor::Balance;
    use crate::stats::Registry;
    use crossbeam_channel::unbounded;
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
}
