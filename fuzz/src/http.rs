//! The `http` target: any bytes as what a client sends to vnic's HTTP
//! server (`vnic_listeners::app::http`).
//!
//! Each input is used three ways:
//!
//! 1. As the client's byte stream to a fresh [`Http`] app over a
//!    [`MemSocket`], then the client's FIN: once all at once with room
//!    for any answer, once in pieces (sizes from the input's hash) with
//!    little send space refilled between polls. Both runs must answer the
//!    same bytes (the `Date:` lines aside) and close the same way, so
//!    how TCP happens to cut the stream never changes an answer. The
//!    answers must be well-formed responses (status line, one
//!    `Content-Length` that the body matches, `Connection`), nothing may
//!    follow a response that closes, and the server closes once after
//!    the client's FIN.
//! 2. Request by request through the parser's pieces as the server uses
//!    them ([`find_head_end`], [`parse_head`], [`BodyReader`]): a head
//!    that parses has a good request line ([`bad_request_line`] false)
//!    and the framing [`request_framing`] reports; written back out from
//!    what was parsed it parses to the same request; a body reader never
//!    takes more bytes than it was given, takes every byte while the body
//!    goes on, and gives the same result fed in pieces as all at once
//!    (Content-Length: exactly that many bytes).
//! 3. As the data of a chunked body (chunk sizes, extensions, bare-LF or
//!    CRLF line ends and a trailer chosen from the input's hash): the
//!    body reader must take exactly the encoded body, in any pieces, and
//!    not a byte of what follows.

use crate::split::{hash, pieces};
use std::sync::{Arc, OnceLock};
use vnic_listeners::app::http::{
    bad_request_line, blank_lines, find_head_end, parse_head, request_framing, BodyFraming,
    BodyReader, Http, Method, Request, Route, Version,
};
use vnic_listeners::app::{App, AppContext, MemSocket};
use vnic_listeners::stats::Registry;

/// Polls one delivery may take before the app is said to spin.
pub const MAX_POLLS: usize = 100_000;
/// Requests of one input checked one by one (the rest are left to the
/// whole-stream run).
const MAX_REQUESTS: usize = 64;

/// The counters `GET /stats` reports: the same for every run.
pub fn registry() -> Arc<Registry> {
    static R: OnceLock<Arc<Registry>> = OnceLock::new();
    R.get_or_init(|| Arc::new(Registry::new("monolithic", "round-robin", 2)))
        .clone()
}

/// What an app did with one client's bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Served {
    /// Everything it sent, `Date:` lines taken out.
    pub output: Vec<u8>,
    /// It closed (sent FIN).
    pub closed: bool,
    /// It reset the connection.
    pub aborted: bool,
}

/// Polls `app` until a poll changes nothing, the send space refilled to
/// `capacity` before each poll (a client that reads that much between
/// polls); `after` runs after each poll and says whether it moved
/// something itself.
pub fn settle<A: App>(
    app: &mut A,
    sock: &mut MemSocket,
    capacity: usize,
    mut after: impl FnMut(&mut A, &mut MemSocket) -> bool,
) {
    // What a poll may move: bytes read, bytes sent, close, reset.
    let state = |s: &MemSocket| (s.rx.len(), s.tx.len(), s.close_calls, s.aborted);
    for _ in 0..MAX_POLLS {
        let before = state(sock);
        sock.capacity = capacity;
        app.poll(sock);
        let moved = after(app, sock);
        if state(sock) == before && !moved {
            return;
        }
    }
    panic!("the app is still busy after {MAX_POLLS} polls");
}

/// `stream` to a fresh [`Http`] app in pieces of `cuts` bytes, then the
/// client's FIN; `capacity`: send space between polls.
pub fn serve(stream: &[u8], cuts: &[usize], capacity: usize) -> Served {
    let mut app = Http::new(AppContext::detached(1, 7, registry()));
    let mut sock = MemSocket::new(capacity);
    let mut at = 0;
    for &n in cuts {
        sock.push(&stream[at..at + n]);
        at += n;
        settle(&mut app, &mut sock, capacity, |_, _| false);
    }
    sock.peer_fin = true;
    settle(&mut app, &mut sock, capacity, |_, _| false);
    assert!(
        sock.close_calls <= 1,
        "close() called {} times",
        sock.close_calls
    );
    Served {
        output: without_dates(&sock.tx),
        closed: sock.close_calls > 0,
        aborted: sock.aborted,
    }
}

/// `out` without its `Date:` header lines (they name the second they were
/// written in, so two runs may differ there).
pub fn without_dates(out: &[u8]) -> Vec<u8> {
    const DATE: &[u8] = b"\r\nDate: ";
    let mut v = Vec::with_capacity(out.len());
    let mut rest = out;
    while let Some(i) = find(rest, DATE) {
        v.extend_from_slice(&rest[..i]);
        let line = &rest[i + 2..];
        let end = find(line, b"\r\n").map_or(line.len(), |e| e);
        rest = &line[end..];
    }
    v.extend_from_slice(rest);
    v
}

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Checks that `out` is a run of well-formed responses, nothing after one
/// that closes; returns their status codes (100 Continue included).
pub fn statuses(out: &[u8]) -> Vec<u16> {
    let mut codes = Vec::new();
    let mut rest = out;
    let mut closing = false;
    while !rest.is_empty() {
        let text = String::from_utf8_lossy(&rest[..rest.len().min(200)]).to_string();
        assert!(!closing, "bytes after a response that closes: {text:?}");
        let end = find(rest, b"\r\n\r\n").unwrap_or_else(|| panic!("a response head: {text:?}"));
        let head = std::str::from_utf8(&rest[..end]).expect("an ASCII response head");
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or("");
        let code: u16 = status
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("status line {status:?}"));
        codes.push(code);
        rest = &rest[end + 4..];
        if code == 100 {
            assert_eq!(status, "HTTP/1.1 100 Continue", "an interim response");
            continue;
        }
        let fields: Vec<(&str, &str)> = lines
            .map(|l| l.split_once(": ").unwrap_or_else(|| panic!("field {l:?}")))
            .collect();
        let one = |name: &str| {
            let v: Vec<&str> = fields
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(v.len(), 1, "one {name} in {head:?}");
            v[0]
        };
        let len: usize = one("Content-Length").parse().expect("a length");
        match one("Connection") {
            "close" => closing = true,
            "keep-alive" => {}
            other => panic!("Connection: {other}"),
        }
        // A response to HEAD has no body; no body starts like a response.
        if !(rest.is_empty() || rest.starts_with(b"HTTP/1.1 ")) {
            assert!(rest.len() >= len, "a body shorter than its Content-Length");
            rest = &rest[len..];
        }
    }
    codes
}

/// The head that says what `r` says, as a client would write it.
pub fn write_head(r: &Request) -> Vec<u8> {
    let method = match r.line.method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::NotAllowed => "POST",
        Method::Unknown => "FROB",
    };
    let target = match r.line.route {
        Route::Root => "/",
        Route::Stats => "/stats?x=1",
        Route::Dashboard => "/dashboard",
        Route::NotFound => "/nowhere",
    };
    let version = match r.line.version {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
    };
    let mut s = format!("{method} {target} {version}\r\nHost: vnic\r\n");
    match (r.line.version, r.keep_alive) {
        (Version::Http11, false) => s.push_str("Connection: close\r\n"),
        (Version::Http10, true) => s.push_str("Connection: keep-alive\r\n"),
        _ => {}
    }
    match r.body {
        BodyFraming::Length(0) => {}
        BodyFraming::Length(n) => s.push_str(&format!("Content-Length: {n}\r\n")),
        BodyFraming::Chunked => s.push_str("Transfer-Encoding: chunked\r\n"),
    }
    if r.expect_continue {
        s.push_str("Expect: 100-continue\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// Runs the body framed by `framing` over `rest`, in pieces from `seed`
/// and all at once; both must agree. Returns the body's length when it
/// is complete in `rest`.
pub fn body(framing: BodyFraming, rest: &[u8], seed: u64) -> Option<usize> {
    let Some(reader) = BodyReader::new(framing) else {
        assert_eq!(
            framing,
            BodyFraming::Length(0),
            "no reader only for no body"
        );
        return Some(0);
    };
    let all = reader.clone().skip(rest);
    if let Ok((n, _)) = all {
        assert!(n <= rest.len(), "took {n} of {} bytes", rest.len());
    }
    if let (BodyFraming::Length(len), Ok((n, done))) = (framing, all) {
        assert_eq!(n as u64, len.min(rest.len() as u64), "Content-Length {len}");
        assert_eq!(done, rest.len() as u64 >= len, "Content-Length {len}");
    }
    let mut r = reader;
    let mut at = 0;
    let mut outcome = Ok(false);
    for n in pieces(rest.len(), seed, 23) {
        match r.skip(&rest[at..at + n]) {
            Ok((took, done)) => {
                assert!(took <= n, "took {took} of {n} bytes");
                at += took;
                if done {
                    outcome = Ok(true);
                    break;
                }
                assert_eq!(took, n, "a body that goes on left bytes untaken");
            }
            Err(status) => {
                outcome = Err(status);
                break;
            }
        }
    }
    match all {
        Ok((n, done)) => {
            assert_eq!(outcome, Ok(done), "in pieces and all at once");
            assert_eq!(at, n, "in pieces and all at once");
        }
        Err(status) => assert_eq!(outcome, Err(status), "in pieces and all at once"),
    }
    (outcome == Ok(true)).then_some(at)
}

/// Part 2 of the module doc: request by request through the parser.
pub fn check_requests(data: &[u8]) {
    let seed = hash(data);
    let mut buf = data;
    for _ in 0..MAX_REQUESTS {
        buf = &buf[blank_lines(buf)..];
        let Some(end) = find_head_end(buf, 0) else {
            return;
        };
        let head = &buf[..end];
        let req = match parse_head(head) {
            Ok(r) => r,
            Err(status) => {
                assert!(request_framing(head).is_none());
                assert!(
                    matches!(status.code(), 400 | 501 | 505),
                    "a head refused with {}",
                    status.code()
                );
                return;
            }
        };
        assert!(
            !bad_request_line(head),
            "a head that parses has a good line"
        );
        assert_eq!(request_framing(head), Some((req.body, req.keep_alive)));
        let again = write_head(&req);
        assert_eq!(find_head_end(&again, 0), Some(again.len()));
        assert_eq!(
            parse_head(&again),
            Ok(req),
            "{:?} written back as {:?}",
            String::from_utf8_lossy(head),
            String::from_utf8_lossy(&again)
        );
        let rest = &buf[end..];
        match body(req.body, rest, seed ^ end as u64) {
            Some(n) => buf = &rest[n..],
            None => return,
        }
    }
}

/// Part 3 of the module doc: `data` as a chunked body.
pub fn check_chunked(data: &[u8]) {
    let seed = hash(data) ^ 0x5bd1_e995;
    let bit = |i: u32| (seed >> (i % 64)) & 1 == 1;
    let eol = |i: u32| -> &[u8] {
        if bit(i) {
            b"\n"
        } else {
            b"\r\n"
        }
    };
    let mut enc = Vec::new();
    let mut at = 0;
    for (i, n) in pieces(data.len(), seed, 300).into_iter().enumerate() {
        let i = i as u32;
        let size = if bit(i + 1) {
            format!("{n:X}")
        } else {
            format!("{n:x}")
        };
        enc.extend_from_slice(size.as_bytes());
        if bit(i + 2) {
            enc.extend_from_slice(b";ext=\"v\"");
        }
        enc.extend_from_slice(eol(i + 3));
        enc.extend_from_slice(&data[at..at + n]);
        enc.extend_from_slice(eol(i + 4));
        at += n;
    }
    enc.extend_from_slice(b"0");
    enc.extend_from_slice(eol(60));
    if bit(61) {
        enc.extend_from_slice(b"X-Trailer: done");
        enc.extend_from_slice(eol(62));
    }
    enc.extend_from_slice(eol(63));
    let len = enc.len();
    // What follows the body must not be taken for it.
    enc.extend_from_slice(&data[..data.len().min(64)]);
    assert_eq!(
        body(BodyFraming::Chunked, &enc, seed),
        Some(len),
        "a chunked body of {} bytes in {len}",
        data.len()
    );
}

/// The whole target: one input, every check.
pub fn run(data: &[u8]) {
    let seed = hash(data);
    let whole = serve(data, &[data.len()], usize::MAX / 2);
    let cut = serve(
        data,
        &pieces(data.len(), seed, 1 + (seed % 97) as usize),
        1 + (seed >> 8) as usize % 3000,
    );
    assert_eq!(
        whole,
        cut,
        "all at once and in pieces differ: {:?} / {:?}",
        String::from_utf8_lossy(&whole.output),
        String::from_utf8_lossy(&cut.output)
    );
    statuses(&whole.output);
    assert!(whole.closed, "the server closes after the client's FIN");
    assert!(!whole.aborted, "the server never resets");
    check_requests(data);
    check_chunked(data);
}
