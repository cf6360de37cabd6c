//! A small HTTP/1.0 and HTTP/1.1 server: `GET /` tells the client which
//! processor (and which connection) served it, `GET /stats` reports every
//! processor's counters as JSON, and `GET /dashboard` (or `GET /` from a
//! browser, whose Accept names `text/html`) is a page that draws those
//! counters as bars, refreshed from `/stats` every second. Real clients
//! (curl, ab) drive it, so it speaks enough of RFC 9112 to keep them
//! happy: keep-alive, pipelining, HEAD, request bodies skipped, clear
//! errors for everything else.
//!
//! Requests are parsed incrementally from the byte stream: a request may
//! arrive in pieces over several polls, or several may arrive in one read;
//! they are answered in order. A request body (Content-Length, or the
//! chunked transfer coding, RFC 9112 section 7.1) is read and dropped as
//! it arrives, never buffered; a Content-Length that does not fit in 64
//! bits, a malformed chunk, or Transfer-Encoding together with
//! Content-Length (or in HTTP/1.0) is answered 400, a transfer coding
//! other than chunked 501, and the connection then closes. The
//! distributor's forwarder frames requests with the same code
//! ([`request_framing`], [`BodyReader`]). Responses go into an outgoing buffer that is
//! flushed as send space allows; while that buffer is large no further
//! request is parsed, so a client that pipelines without reading stalls on
//! TCP's windows rather than growing the app's memory.

mod body;
mod parse;
mod spare;

use super::checkpoint::Copied;
use super::{App, AppCheckpoint, AppContext, NoCheckpoint, Socket};
use crate::stats::ProcessorSnapshot;
// The parser's pieces are public so the `http` and `framing` fuzz
// targets (fuzz/) drive exactly what the server and the distributor run.
pub use body::{BodyFraming, BodyReader, ChunkedBody};
use parse::*;
pub use parse::{
    bad_request_line, blank_lines, find_head_end, parse_head, request_framing, Request, RequestLine,
};
use serde::Serialize;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest request head (request line plus header fields) accepted; a
/// longer one is answered 431 and the connection closed. Public so the
/// fuzz targets can check that no more is ever held.
pub const MAX_HEAD: usize = 16 * 1024;
/// No further request is parsed while this many response bytes wait.
const OUT_HIGH_WATER: usize = 64 * 1024;
/// Bytes read (and dropped) per step once our side is closed.
const DRAIN_CHUNK: usize = 4 * 1024;
/// The dashboard page: one bar per processor (and per back-end), drawn
/// from same-origin `/stats` once a second; no other resource.
const DASHBOARD: &[u8] = include_bytes!("dashboard.html");

/// One HTTP connection: it exists so `--serve PORT=http` has something to
/// hand each accepted connection.
#[derive(Debug)]
pub struct Http {
    /// Where this connection runs, and the counters `/stats` reports.
    ctx: AppContext,
    /// Received bytes; the unparsed ones are `input[in_start..]`. Never
    /// holds more than [`MAX_HEAD`] unparsed bytes.
    input: Vec<u8>,
    /// Start of the unparsed bytes in `input`.
    in_start: usize,
    /// Where (relative to `in_start`) the search for the end of the current
    /// request head resumes; what lies before holds no blank line.
    scan_from: usize,
    /// Whether the current request's first line is complete and valid, so
    /// it is not checked again while the rest of the head arrives.
    line_checked: bool,
    /// Responses queued for the client; the unsent ones are
    /// `output[out_start..]`.
    output: Vec<u8>,
    /// Start of the unsent bytes in `output`.
    out_start: usize,
    /// Requests answered on this connection so far.
    requests: u64,
    /// The rest of the current request's body, read and dropped.
    body: Option<BodyReader>,
    /// No more requests: close once `output` is flushed.
    closing: bool,
    /// Whether `close()` has been called (it is called once).
    closed: bool,
}

/// The protocol versions a request may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: closes after each response unless asked to keep alive.
    Http10,
    /// HTTP/1.1 (and any later 1.x): keeps alive unless asked to close.
    Http11,
}

/// What the server does with a request's method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Served.
    Get,
    /// Served like GET, without the body.
    Head,
    /// A standard method this server does not allow: 405.
    NotAllowed,
    /// A method it does not know: 501.
    Unknown,
}

/// The resources this server has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/`: who served the request.
    Root,
    /// `/stats`: every processor's counters.
    Stats,
    /// `/dashboard`, or `/` asked for as `text/html`: the page that draws
    /// `/stats`.
    Dashboard,
    /// Anything else: 404.
    NotFound,
}

/// The status codes this server answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200.
    Ok,
    /// 400: the request cannot be understood.
    BadRequest,
    /// 404.
    NotFound,
    /// 405: a standard method this server does not allow.
    MethodNotAllowed,
    /// 431: the request head is too large.
    HeaderFieldsTooLarge,
    /// 500.
    InternalServerError,
    /// 501: an unknown method or transfer coding.
    NotImplemented,
    /// 503: the distributor gave up on a request that crashed its
    /// back-ends.
    ServiceUnavailable,
    /// 505.
    VersionNotSupported,
}

impl Status {
    /// The three-digit code.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::HeaderFieldsTooLarge => 431,
            Status::InternalServerError => 500,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
            Status::VersionNotSupported => 505,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::InternalServerError => "Internal Server Error",
            Status::NotImplemented => "Not Implemented",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// `GET /stats`, as JSON.
#[derive(Serialize)]
struct StatsReport<'a> {
    model: &'a str,
    filter: &'a str,
    processors: Vec<ProcessorSnapshot>,
    /// Back-end servers of the distributor model (empty in the monolithic one).
    backends: Vec<crate::stats::BackendSnapshot>,
}

impl Http {
    /// A fresh HTTP app for one new connection, running where `ctx` says.
    pub fn new(ctx: AppContext) -> Http {
        Http {
            ctx,
            input: spare::take(),
            in_start: 0,
            scan_from: 0,
            line_checked: false,
            output: spare::take(),
            out_start: 0,
            requests: 0,
            body: None,
            closing: false,
            closed: false,
        }
    }

    /// Response bytes queued but not yet taken by the socket.
    fn out_pending(&self) -> usize {
        self.output.len() - self.out_start
    }

    /// Hands the socket as much of the queued response bytes as it takes.
    fn flush(&mut self, sock: &mut dyn Socket) {
        while self.out_start < self.output.len() {
            let sent = sock.send(&self.output[self.out_start..]);
            if sent == 0 {
                break;
            }
            self.out_start += sent;
        }
        if self.out_start == self.output.len() {
            self.output.clear();
            self.out_start = 0;
        }
    }

    /// Reads more request bytes, never holding more than [`MAX_HEAD`]
    /// unparsed; true if any arrived.
    fn fill(&mut self, sock: &mut dyn Socket) -> bool {
        let avail = sock.recv_available();
        if avail == 0 {
            return false;
        }
        if self.in_start > 0 {
            self.input.drain(..self.in_start);
            self.in_start = 0;
        }
        let n = avail.min(MAX_HEAD.saturating_sub(self.input.len()));
        if n == 0 {
            return false;
        }
        let old = self.input.len();
        spare::reserve(&mut self.input, n);
        self.input.resize(old + n, 0);
        let got = sock.recv(&mut self.input[old..]);
        self.input.truncate(old + got);
        got > 0
    }

    /// Consumes `n` unparsed bytes.
    fn consume(&mut self, n: usize) {
        self.in_start += n;
        self.scan_from = 0;
        self.line_checked = false;
    }

    /// Makes one step of progress on the received bytes: drops body bytes,
    /// skips blank lines, or answers one complete request. False when it
    /// needs more bytes.
    fn step(&mut self) -> bool {
        let buf = &self.input[self.in_start..];
        if let Some(body) = self.body.as_mut() {
            match body.skip(buf) {
                Ok((n, done)) => {
                    self.in_start += n;
                    if done {
                        self.body = None;
                    }
                    return n > 0 || done;
                }
                Err(status) => {
                    self.body = None;
                    self.fail(status);
                    return true;
                }
            }
        }
        // RFC 9112 section 2.2: ignore empty lines before a request line.
        let blank = blank_lines(buf);
        if blank > 0 {
            self.consume(blank);
            return true;
        }
        if buf.is_empty() {
            return false;
        }
        match find_head_end(buf, self.scan_from) {
            Some(end) => {
                let parsed = parse_head(&buf[..end]);
                self.consume(end);
                match parsed {
                    Ok(req) => self.answer(req),
                    Err(status) => self.fail(status),
                }
                true
            }
            None => {
                // Reject a bad request line as soon as it is complete,
                // without waiting for headers that may never come.
                if !self.line_checked {
                    if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                        if let Err(status) = parse_request_line(strip_cr(&buf[..nl])) {
                            self.fail(status);
                            return true;
                        }
                        self.line_checked = true;
                    }
                }
                if buf.len() >= MAX_HEAD {
                    self.fail(Status::HeaderFieldsTooLarge);
                    return true;
                }
                self.scan_from = buf.len().saturating_sub(2);
                false
            }
        }
    }

    /// Queues the response to a well-formed request.
    fn answer(&mut self, req: Request) {
        self.requests += 1;
        let keep_alive = req.keep_alive;
        self.body = BodyReader::new(req.body);
        if req.expect_continue && self.body.is_some() && req.line.version == Version::Http11 {
            self.output
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let head_only = req.line.method == Method::Head;
        match (req.line.method, req.line.route) {
            (Method::Get | Method::Head, Route::Root) => {
                let mut body = spare::take();
                self.write_root_body(&mut body);
                self.respond(Status::Ok, "text/plain", &body, head_only, keep_alive, "");
                spare::give_back(body);
            }
            (Method::Get | Method::Head, Route::Stats) => match self.stats_body() {
                Ok(body) => {
                    let ctype = "application/json";
                    self.respond(Status::Ok, ctype, &body, head_only, keep_alive, "");
                }
                Err(_) => {
                    let status = Status::InternalServerError;
                    let body = error_body(status);
                    self.respond(status, "text/plain", &body, head_only, keep_alive, "");
                }
            },
            (Method::Get | Method::Head, Route::Dashboard) => {
                let ctype = "text/html; charset=utf-8";
                self.respond(Status::Ok, ctype, DASHBOARD, head_only, keep_alive, "");
            }
            (Method::Get | Method::Head, Route::NotFound) => {
                let body = error_body(Status::NotFound);
                let status = Status::NotFound;
                self.respond(status, "text/plain", &body, head_only, keep_alive, "");
            }
            (Method::NotAllowed, _) => {
                let status = Status::MethodNotAllowed;
                let body = error_body(status);
                let allow = "Allow: GET, HEAD\r\n";
                self.respond(status, "text/plain", &body, false, keep_alive, allow);
            }
            (Method::Unknown, _) => {
                let status = Status::NotImplemented;
                let body = error_body(status);
                self.respond(status, "text/plain", &body, false, keep_alive, "");
            }
        }
        if !keep_alive {
            self.closing = true;
        }
    }

    /// Queues an error response for a request that cannot be understood,
    /// then closes: the stream can no longer be trusted to find where the
    /// next request starts.
    fn fail(&mut self, status: Status) {
        let body = error_body(status);
        self.respond(status, "text/plain", &body, false, false, "");
        self.closing = true;
    }

    /// Appends the `GET /` body to `out`: `key=value` lines saying who
    /// served the request (written in place: no string built per request).
    fn write_root_body(&self, out: &mut Vec<u8>) {
        let reg = &self.ctx.registry;
        spare::reserve(out, 128);
        // Writing into a Vec cannot fail.
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(b"processor=");
        out.extend_from_slice(n.format(self.ctx.processor).as_bytes());
        out.extend_from_slice(b"\nconnection=");
        out.extend_from_slice(n.format(self.ctx.connection).as_bytes());
        out.extend_from_slice(b"\nrequest=");
        out.extend_from_slice(n.format(self.requests).as_bytes());
        out.extend_from_slice(b"\nmodel=");
        out.extend_from_slice(reg.model.as_bytes());
        out.extend_from_slice(b"\nfilter=");
        reg.with_filter_name(|filter| out.extend_from_slice(filter.as_bytes()));
        out.push(b'\n');
        if let Some(b) = self.ctx.backend {
            out.extend_from_slice(b"backend=");
            out.extend_from_slice(n.format(b).as_bytes());
            out.push(b'\n');
        }
    }

    /// The `GET /stats` body.
    fn stats_body(&self) -> serde_json::Result<Vec<u8>> {
        let reg = &self.ctx.registry;
        let filter = reg.filter_name();
        let report = StatsReport {
            model: &reg.model,
            filter: &filter,
            processors: reg.snapshot(),
            backends: reg.backend_snapshot(),
        };
        let mut body = serde_json::to_vec(&report)?;
        body.push(b'\n');
        Ok(body)
    }

    /// Queues one response; `extra` holds further header lines, each
    /// ending in CRLF.
    fn respond(
        &mut self,
        status: Status,
        content_type: &str,
        body: &[u8],
        head_only: bool,
        keep_alive: bool,
        extra: &str,
    ) {
        write_response(
            &mut self.output,
            status,
            content_type,
            body,
            head_only,
            keep_alive,
            extra,
        );
    }

    /// Reads and drops whatever still arrives after our side closed.
    fn drain(sock: &mut dyn Socket) {
        if sock.recv_available() == 0 {
            return;
        }
        let mut scratch = [0u8; DRAIN_CHUNK];
        while sock.recv_available() > 0 {
            if sock.recv(&mut scratch) == 0 {
                break;
            }
        }
    }
}

/// Its buffers go back to the thread's spares for the next connection.
impl Drop for Http {
    fn drop(&mut self) {
        spare::give_back(std::mem::take(&mut self.input));
        spare::give_back(std::mem::take(&mut self.output));
    }
}

impl App for Http {
    fn socket_only(&self) -> bool {
        true
    }
    /// The unparsed request bytes, the unsent response bytes, the parse
    /// position (head scan, request line checked, body left to skip) and
    /// the connection's request count; restored with the new processor's
    /// context (so `GET /` names the processor that answers it).
    fn checkpoint(&mut self) -> Result<Box<dyn AppCheckpoint>, NoCheckpoint> {
        let copy = Http {
            ctx: self.ctx.clone(),
            input: self.input[self.in_start..].to_vec(),
            in_start: 0,
            scan_from: self.scan_from,
            line_checked: self.line_checked,
            output: self.output[self.out_start..].to_vec(),
            out_start: 0,
            requests: self.requests,
            body: self.body.clone(),
            closing: self.closing,
            closed: self.closed,
        };
        let bytes = copy.input.capacity() + copy.output.capacity();
        Ok(Copied::new(copy, bytes, |h: &mut Http, ctx| h.ctx = ctx).boxed())
    }

    fn poll(&mut self, sock: &mut dyn Socket) {
        loop {
            self.flush(sock);
            if self.closing {
                if !self.closed && self.out_pending() == 0 {
                    sock.close();
                    self.closed = true;
                }
                if self.closed {
                    Http::drain(sock);
                }
                return;
            }
            if self.out_pending() >= OUT_HIGH_WATER {
                return;
            }
            if self.step() || self.fill(sock) {
                continue;
            }
            if sock.peer_closed() && sock.recv_available() == 0 {
                // No more requests can come; an incomplete one never will.
                self.closing = true;
                continue;
            }
            return;
        }
    }

    fn nagle(&self) -> bool {
        false
    }
}

/// Appends one response to `out`; `extra` holds further header lines,
/// each ending in CRLF.
fn write_response(
    out: &mut Vec<u8>,
    status: Status,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    keep_alive: bool,
    extra: &str,
) {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    // The head's fixed text, the date and the numbers take less than
    // HEAD_FIXED bytes: one reservation for the whole response, so it is
    // not grown piece by piece as it is written.
    const HEAD_FIXED: usize = 160;
    let body_len = if head_only { 0 } else { body.len() };
    let need = HEAD_FIXED + status.reason().len() + content_type.len() + extra.len() + body_len;
    spare::reserve(out, need);
    // Pieces appended as bytes: through `write!` the formatting machinery
    // was 1.3% of a processor's samples under short connections.
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(n.format(status.code()).as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.reason().as_bytes());
    out.extend_from_slice(b"\r\nServer: vnic\r\nDate: ");
    write_http_date(out, vnic_adapter::clock::wall_now());
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(n.format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra.as_bytes());
    out.extend_from_slice(b"Connection: ");
    out.extend_from_slice(connection.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// A short text body for an error status.
fn error_body(status: Status) -> Vec<u8> {
    format!("{} {}\n", status.code(), status.reason()).into_bytes()
}

/// The whole response for an error `status`, closing the connection (the
/// distributor's own answers: a malformed chunk, a request given up).
pub(crate) fn error_response(status: Status) -> Vec<u8> {
    let mut out = Vec::new();
    write_response(
        &mut out,
        status,
        "text/plain",
        &error_body(status),
        false,
        false,
        "",
    );
    out
}

/// Appends `t` to `out` as an HTTP date (RFC 9110 section 5.6.7), e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT`. The text of the last second asked
/// for is kept per thread: a busy server answers many requests a second.
fn write_http_date(out: &mut Vec<u8>, t: SystemTime) {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, Vec<u8>)> =
            const { std::cell::RefCell::new((u64::MAX, Vec::new())) };
    }
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs {
            text.clear();
            format_http_date(text, secs);
            *at = secs;
        }
        out.extend_from_slice(text);
    });
}

/// The HTTP date of `secs` since the epoch, appended to `out`.
fn format_http_date(out: &mut Vec<u8>, secs: u64) {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::MemSocket;
    use crate::stats::Registry;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    /// One response as the client sees it.
    #[derive(Debug)]
    struct Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Response {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn text(&self) -> &str {
            std::str::from_utf8(&self.body).expect("body is UTF-8")
        }
    }

    /// Splits a byte stream into responses; `head_only[i]` says whether
    /// the i-th answers a HEAD (no body despite Content-Length). Interim
    /// 1xx responses are returned too.
    fn parse_responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<Response> {
        let mut out = Vec::new();
        let mut final_index = 0;
        while !bytes.is_empty() {
            let end = bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("complete head")
                + 4;
            let head = std::str::from_utf8(&bytes[..end - 4]).expect("ASCII head");
            let mut lines = head.split("\r\n");
            let status_line = lines.next().expect("status line");
            assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
            let status: u16 = status_line[9..12].parse().expect("status code");
            let headers: Vec<(String, String)> = lines
                .map(|l| {
                    let (n, v) = l.split_once(':').expect("header colon");
                    (n.to_string(), v.trim().to_string())
                })
                .collect();
            bytes = &bytes[end..];
            let mut resp = Response {
                status,
                headers,
                body: Vec::new(),
            };
            if status >= 200 {
                let len: usize = resp
                    .header("content-length")
                    .expect("every response has Content-Length")
                    .parse()
                    .expect("numeric Content-Length");
                let conn = resp.header("connection").expect("Connection header");
                assert!(conn == "keep-alive" || conn == "close", "{conn}");
                if !head_only.get(final_index).copied().unwrap_or(false) {
                    resp.body = bytes[..len].to_vec();
                    bytes = &bytes[len..];
                }
                final_index += 1;
            }
            out.push(resp);
        }
        out
    }

    fn ctx() -> AppContext {
        let registry = Arc::new(Registry::new("monolithic", "round-robin", 4));
        registry.processors[1].accepted.store(5, Ordering::Relaxed);
        registry.processors[1]
            .bytes_in
            .store(1234, Ordering::Relaxed);
        AppContext::detached(2, 7, registry)
    }

    /// Feeds `request` in one piece with ample send space, polls once.
    fn exchange(request: &[u8]) -> (MemSocket, Vec<u8>) {
        let mut app = Http::new(ctx());
        let mut sock = MemSocket::new(1 << 20);
        sock.push(request);
        app.poll(&mut sock);
        let tx = sock.take_tx();
        (sock, tx)
    }

    #[test]
    fn http_get_root_names_processor_and_connection() {
        let (sock, tx) = exchange(b"GET / HTTP/1.1\r\nHost: vnic\r\n\r\n");
        let r = parse_responses(&tx, &[]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, 200);
        assert_eq!(r[0].header("content-type"), Some("text/plain"));
        assert_eq!(r[0].header("connection"), Some("keep-alive"));
        assert_eq!(
            r[0].header("content-length"),
            Some(r[0].body.len().to_string().as_str())
        );
        let lines: Vec<&str> = r[0].text().lines().collect();
        assert!(lines.contains(&"processor=2"), "{lines:?}");
        assert!(lines.contains(&"connection=7"), "{lines:?}");
        assert!(lines.contains(&"request=1"), "{lines:?}");
        assert!(lines.contains(&"model=monolithic"), "{lines:?}");
        assert!(lines.contains(&"filter=round-robin"), "{lines:?}");
        assert!(!sock.closed(), "HTTP/1.1 keeps alive");
    }

    #[test]
    fn http_get_stats_is_json() {
        let (_, tx) = exchange(b"GET /stats HTTP/1.1\r\n\r\n");
        let r = parse_responses(&tx, &[]);
        assert_eq!(r[0].status, 200);
        assert_eq!(r[0].header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&r[0].body).expect("valid JSON");
        assert_eq!(v["model"], "monolithic");
        assert_eq!(v["filter"], "round-robin");
        let procs = v["processors"].as_array().expect("processors array");
        assert_eq!(procs.len(), 4);
        for (i, p) in procs.iter().enumerate() {
            assert_eq!(p["id"], i);
            for key in ["accepted", "active", "bytes_in", "bytes_out"] {
                assert!(p[key].is_u64(), "{key} in {p}");
            }
        }
        assert_eq!(procs[1]["accepted"], 5);
        assert_eq!(procs[1]["bytes_in"], 1234);
        assert_eq!(v["backends"], serde_json::json!([]));
    }

    /// `out` without its `Date:` line.
    fn without_date(out: &[u8]) -> String {
        let text = String::from_utf8_lossy(out);
        text.split("\r\n")
            .filter(|l| !l.starts_with("Date: "))
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    #[test]
    fn http_dashboard_is_html_with_its_length() {
        let len = DASHBOARD.len().to_string();
        for (request, head_only) in [
            (&b"GET /dashboard HTTP/1.1\r\nHost: vnic\r\n\r\n"[..], false),
            (b"HEAD /dashboard?x HTTP/1.1\r\n\r\n", true),
        ] {
            let (sock, tx) = exchange(request);
            let [page] = &parse_responses(&tx, &[head_only])[..] else {
                panic!("one response");
            };
            assert_eq!(page.status, 200);
            let html = Some("text/html; charset=utf-8");
            assert_eq!(page.header("content-type"), html);
            assert_eq!(page.header("content-length"), Some(len.as_str()));
            assert_eq!(page.body, if head_only { &[][..] } else { DASHBOARD });
            assert!(!sock.closed());
        }
        let page = std::str::from_utf8(DASHBOARD).expect("UTF-8 page");
        assert!(page.contains("<title>vnic dashboard</title>"));
    }

    #[test]
    fn http_dashboard_loads_nothing_but_stats() {
        let page = std::str::from_utf8(DASHBOARD).expect("UTF-8 page");
        for outside in [
            "src=",
            "href=",
            "url(",
            "@import",
            "://",
            "XMLHttpRequest",
            "WebSocket",
            "EventSource",
        ] {
            assert!(!page.contains(outside), "{outside} in the page");
        }
        assert_eq!(page.matches("fetch(").count(), 1);
        assert!(page.contains("fetch(\"/stats\""));
    }

    #[test]
    fn http_root_for_a_browser_is_the_dashboard() {
        for accept in [
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "TEXT/HTML",
            "*/*;q=0.1, text/html ; q=0.5",
        ] {
            let req = format!("GET / HTTP/1.1\r\nAccept: {accept}\r\n\r\n");
            let (_, tx) = exchange(req.as_bytes());
            let r = parse_responses(&tx, &[]);
            assert_eq!(r[0].status, 200, "{accept}");
            assert_eq!(r[0].body, DASHBOARD, "{accept}");
        }
    }

    #[test]
    fn http_root_for_other_clients_is_unchanged_byte_for_byte() {
        // What curl, wrk and ab get (benchmarks count on its size).
        let want = "HTTP/1.1 200 OK\r\nServer: vnic\r\nContent-Type: text/plain\r\n\
                    Content-Length: 71\r\nConnection: keep-alive\r\n\r\n\
                    processor=2\nconnection=7\nrequest=1\nmodel=monolithic\nfilter=round-robin\n";
        for accept in [
            None,
            Some("*/*"),
            Some("text/*"),
            Some("text/plain"),
            Some("text/html;q=0"),
            Some("text/html; Q=0.000, application/json"),
            Some("text/htmlx"),
        ] {
            let field = accept
                .map(|a| format!("Accept: {a}\r\n"))
                .unwrap_or_default();
            let req = format!(
                "GET / HTTP/1.1\r\nHost: 10.0.0.2\r\nUser-Agent: curl/7.88.1\r\n{field}\r\n"
            );
            let (_, tx) = exchange(req.as_bytes());
            assert_eq!(without_date(&tx), want, "{accept:?}");
        }
    }

    #[test]
    fn http_pipelined_keep_alive_answers_in_order() {
        let (sock, tx) = exchange(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /stats HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        );
        let r = parse_responses(&tx, &[]);
        assert_eq!(r.len(), 3);
        assert!(r[0].text().contains("request=1"));
        assert_eq!(r[1].header("content-type"), Some("application/json"));
        assert!(r[2].text().contains("request=3"));
        assert!(r
            .iter()
            .all(|r| r.header("connection") == Some("keep-alive")));
        assert!(!sock.closed());
    }

    #[test]
    fn http_10_closes_after_response() {
        let (sock, tx) = exchange(b"GET / HTTP/1.0\r\n\r\n");
        let r = parse_responses(&tx, &[]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, 200);
        assert_eq!(r[0].header("connection"), Some("close"));
        assert_eq!(sock.close_calls, 1);
    }

    #[test]
    fn http_10_keep_alive_stays_open() {
        let (sock, tx) = exchange(
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n",
        );
        let r = parse_responses(&tx, &[]);
        assert_eq!(r.len(), 2);
        assert!(r
            .iter()
            .all(|r| r.header("connection") == Some("keep-alive")));
        assert!(!sock.closed());
    }

    #[test]
    fn http_11_connection_close_closes_and_ignores_later_requests() {
        let (sock, tx) =
            exchange(b"GET / HTTP/1.1\r\nCONNECTION: Close\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        let r = parse_responses(&tx, &[]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].header("connection"), Some("close"));
        assert_eq!(sock.close_calls, 1);
    }

    #[test]
    fn http_request_split_across_polls() {
        let request =
            b"GET /stats HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nGET / HTTP/1.0\r\n\r\n";
        let mut app = Http::new(ctx());
        let mut sock = MemSocket::new(1 << 20);
        let first_head_len = 45;
        assert_eq!(&request[first_head_len - 4..first_head_len], b"\r\n\r\n");
        for (i, &b) in request.iter().enumerate() {
            sock.push(&[b]);
            app.poll(&mut sock);
            if i + 1 < first_head_len {
                assert!(sock.tx.is_empty(), "answered before the head ended");
            }
        }
        let r = parse_responses(&sock.take_tx(), &[]);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].header("content-type"), Some("application/json"));
        assert!(r[1].text().contains("request=2"));
        assert_eq!(sock.close_calls, 1, "the HTTP/1.0 request closes");
    }

    #[test]
    fn http_bare_lf_line_ends_are_accepted() {
        let (_, tx) = exchange(b"GET / HTTP/1.1\nHost: x\n\n");
        let r = parse_responses(&tx, &[]);
        assert_eq!(r[0].status, 200);
    }

    #[test]
    fn http_unknown_path_is_404() {
        let (sock, tx) = exchange(b"GET /nope HTTP/1.1\r\n\r\nGET /?q=1 HTTP/1.1\r\n\r\n");
        let r = parse_responses(&tx, &[]);
        assert_eq!(r[0].status, 404);
        assert!(!r[0].body.is_empty());
        assert_eq!(r[1].status, 200, "the query is not part of the path");
        assert!(!sock.closed());
    }

    #[test]
    fn http_absolute_form_target_is_routed() {
        let (_, tx) = exchange(b"GET http://10.0.0.1/stats HTTP/1.1\r\n\r\n");
        let r = parse_responses(&tx, &[]);
        assert_eq!(r[0].header("content-type"), Some("application/json"));
    }

    #[test]
    fn http_garbage_is_400_then_close() {
        let (sock, tx) = exchange(b"this is not http\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        let r = parse_responses(&tx, &[]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, 400);
        assert_eq!(r[0].header("connection"), Some("close"));
        assert_eq!(sock.close_calls, 1);
    }

    #[test]
    fn http_bad_request_line_is_rejected_before_headers_end() {
        let (sock, tx) = exchange(b"garbage\n");
        let r = parse_responses(&tx, &[]);
        assert_eq!(r[0].status, 400);
        assert_eq!(sock.close_calls, 1);
    }

    #[test]
    fn http_malformed_header_is_400() {
        for req in [
            &b"GET / HTTP/1.1\r\nNoColon\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",
        ] {
            let (sock, tx) = exchange(req);
            let r = parse_responses(&tx, &[]);
            assert_eq!(r[0].status, 400, "{}", String::from_utf8_lossy(req));
            assert_eq!(sock.close_calls, 1);
        }
    }

    #[test]
    fn http_other_major_version_is_505() {
        let (sock, tx) = exchange(b"GET / HTTP/2.0\r\n\r\n");
        assert_eq!(parse_responses(&tx, &[])[0].status, 505);
        assert!(sock.closed());
    }

    #[test]
    fn http_head_has_no_body() {
        let (sock, tx) = exchange(b"HEAD / HTTP/1.1\r\n\r\nHEAD /missing HTTP/1.1\r\n\r\n");
        let r = parse_responses(&tx, &[true, true]);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].status, 200);
        let len: usize = r[0]
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .expect("Content-Length");
        assert!(len > 0, "HEAD announces the GET body's length");
        assert!(r[0].body.is_empty());
        assert_eq!(r[1].status, 404);
        assert!(!sock.closed());
    }

    #[test]
    fn http_post_is_405_and_its_body_skipped() {
        let (sock, tx) = exchange(
            b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello worldGET / HTTP/1.1\r\n\r\n",
        );
        let r = parse_responses(&tx, &[]);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].status, 405);
        assert_eq!(r[0].header("allow"), Some("GET, HEAD"));
        assert_eq!(r[1].status, 200);
        assert!(!sock.closed());
    }

    #[test]
    fn http_get_body_split_across_polls_is_skipped() {
        let mut app = Http::new(ctx());
        let mut sock = MemSocket::new(1 << 20);
        sock.push(b"GET / HTTP/1.1\r\nContent-Length: 40000\r\n\r\n");
        app.poll(&mut sock);
        for _ in 0..40 {
            sock.push(&[b'G'; 1000]);
            app.poll(&mut sock);
        }
        sock.push(b"GET /stats HTTP/1.1\r\n\r\n");
        app.poll(&mut sock);
        let r = parse_responses(&sock.take_tx(), &[]);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].header("content-type"), Some("application/json"));
    }

    #[test]
    fn http_expect_continue_gets_100_first() {
        let (_, tx) = exchange(
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
        );
        let r = parse_responses(&tx, &[]);
        let codes: Vec<u16> = r.iter().map(|r| r.status).collect();
        assert_eq!(codes, [100, 405, 200]);
    }

    #[test]
    fn http_chunked_body_is_skipped_and_the_connection_kept() {
        // The chunk's data looks like a request: it must not be answered.
        let hidden = b"GET /nope HTTP/1.1\r\n\r\n";
        let mut req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(format!("{:x}\r\n", hidden.len()).as_bytes());
        req.extend_from_slice(hidden);
        req.extend_from_slice(b"\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        let (sock, tx) = exchange(&req);
        let r = parse_responses(&tx, &[]);
        let codes: Vec<u16> = r.iter().map(|r| r.status).collect();
        assert_eq!(codes, [405, 200]);
        assert_eq!(r[0].header("connection"), Some("keep-alive"));
        assert!(!sock.closed());
    }

    #[test]
    fn http_chunked_body_with_extensions_and_trailers_split_across_polls() {
        let req = b"GET / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n\
                    5;name=value\r\nhello\r\nA\r\n0123456789\r\n\
                    0\r\nX-Trailer: yes\r\n\r\nGET /stats HTTP/1.1\r\n\r\n";
        let mut app = Http::new(ctx());
        let mut sock = MemSocket::new(1 << 20);
        for &b in req.iter() {
            sock.push(&[b]);
            app.poll(&mut sock);
        }
        let r = parse_responses(&sock.take_tx(), &[]);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].status, 200);
        assert_eq!(r[1].header("content-type"), Some("application/json"));
        assert!(!sock.closed());
    }

    #[test]
    fn http_bad_chunk_is_400_then_close() {
        for body in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"10000000000000000\r\n",
            b"5\r\nhelloXY0\r\n\r\n",
            b";ext\r\n",
        ] {
            let mut req = b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            req.extend_from_slice(body);
            req.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            let (sock, tx) = exchange(&req);
            let codes: Vec<u16> = parse_responses(&tx, &[]).iter().map(|r| r.status).collect();
            assert_eq!(codes, [200, 400], "{}", String::from_utf8_lossy(body));
            assert_eq!(sock.close_calls, 1);
        }
    }

    #[test]
    fn http_transfer_codings_other_than_chunked_are_501_or_400() {
        for (te, code) in [
            ("gzip", 501),
            ("gzip, chunked", 501),
            ("chunked, chunked", 400),
            ("", 400),
        ] {
            let req =
                format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\nGET / HTTP/1.1\r\n\r\n");
            let (sock, tx) = exchange(req.as_bytes());
            let r = parse_responses(&tx, &[]);
            assert_eq!(r.len(), 1, "{te}");
            assert_eq!(r[0].status, code, "{te}");
            assert_eq!(r[0].header("connection"), Some("close"));
            assert!(sock.closed());
        }
    }

    #[test]
    fn http_transfer_encoding_with_content_length_or_in_http_10_is_400() {
        for req in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                [..],
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ] {
            let (sock, tx) = exchange(req);
            let r = parse_responses(&tx, &[]);
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].status, 400, "{}", String::from_utf8_lossy(req));
            assert!(sock.closed());
        }
    }

    #[test]
    fn http_content_length_that_overflows_is_400() {
        let (sock, tx) = exchange(
            b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        );
        let r = parse_responses(&tx, &[]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, 400);
        assert!(sock.closed());
    }

    #[test]
    fn http_unknown_method_is_501() {
        let (sock, tx) = exchange(b"BREW / HTTP/1.1\r\n\r\n");
        let r = parse_responses(&tx, &[]);
        assert_eq!(r[0].status, 501);
        assert!(!sock.closed());
    }

    #[test]
    fn http_oversized_head_is_431_then_close() {
        let mut app = Http::new(ctx());
        let mut sock = MemSocket::new(1 << 20);
        sock.push(b"GET / HTTP/1.1\r\n");
        for i in 0..2000 {
            sock.push(format!("X-Filler-{i}: {}\r\n", "y".repeat(20)).as_bytes());
        }
        app.poll(&mut sock);
        let r = parse_responses(&sock.take_tx(), &[]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, 431);
        assert_eq!(sock.close_calls, 1);
    }

    #[test]
    fn http_leading_blank_lines_are_skipped() {
        let (_, tx) = exchange(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        let r = parse_responses(&tx, &[]);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|r| r.status == 200));
    }

    #[test]
    fn http_peer_fin_without_request_closes() {
        let mut app = Http::new(ctx());
        let mut sock = MemSocket::new(1000);
        app.poll(&mut sock);
        assert!(!sock.closed());
        sock.peer_fin = true;
        app.poll(&mut sock);
        assert_eq!(sock.close_calls, 1);
        assert!(sock.tx.is_empty());
    }

    #[test]
    fn http_peer_fin_after_requests_answers_then_closes() {
        let mut app = Http::new(ctx());
        let mut sock = MemSocket::new(1 << 20);
        sock.push(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        sock.peer_fin = true;
        app.poll(&mut sock);
        let r = parse_responses(&sock.take_tx(), &[]);
        assert_eq!(r.len(), 2);
        assert_eq!(sock.close_calls, 1);
    }

    #[test]
    fn http_response_waits_for_send_space_and_closes_after_it() {
        let mut app = Http::new(ctx());
        let mut sock = MemSocket::new(10);
        sock.push(b"GET /stats HTTP/1.0\r\n\r\n");
        app.poll(&mut sock);
        assert_eq!(sock.tx.len(), 10);
        assert!(!sock.closed(), "close only once the response is queued");
        let mut rounds = 0;
        while !sock.closed() {
            rounds += 1;
            assert!(rounds < 1000);
            sock.capacity = 7;
            app.poll(&mut sock);
        }
        let r = parse_responses(&sock.take_tx(), &[]);
        assert_eq!(r.len(), 1);
        assert!(serde_json::from_slice::<serde_json::Value>(&r[0].body).is_ok());
        assert_eq!(sock.close_calls, 1);
    }

    #[test]
    fn http_stops_parsing_while_responses_wait() {
        let mut app = Http::new(ctx());
        let mut sock = MemSocket::new(0);
        let one = b"GET / HTTP/1.1\r\n\r\n";
        let n = 10_000;
        for _ in 0..n {
            sock.push(one);
        }
        app.poll(&mut sock);
        assert!(app.out_pending() <= OUT_HIGH_WATER + 1024);
        assert!(
            sock.rx.len() > one.len() * n / 2,
            "requests stay in the socket while responses wait"
        );
        // Open the window bit by bit: every request is answered, in order.
        let mut out = Vec::new();
        for _ in 0..100_000 {
            sock.capacity = 1500;
            app.poll(&mut sock);
            out.extend(sock.take_tx());
            if sock.rx.is_empty() && app.out_pending() == 0 {
                break;
            }
        }
        let r = parse_responses(&out, &[]);
        assert_eq!(r.len(), n);
        assert!(r[n - 1].text().contains(&format!("request={n}\n")));
    }

    #[test]
    fn http_turns_nagle_off() {
        assert!(!Http::new(ctx()).nagle());
    }

    /// [`write_http_date`] as a string.
    fn http_date(t: SystemTime) -> String {
        let mut out = Vec::new();
        write_http_date(&mut out, t);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn http_date_is_imf_fixdate() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(http_date(t), "Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
