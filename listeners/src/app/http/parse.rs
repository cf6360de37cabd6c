//! The request head (RFC 9112 sections 3 and 5): the request line, the
//! fields the server acts on, and how the head frames the body.

use super::*;

/// What the request line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLine {
    /// What the server does with the method.
    pub method: Method,
    /// The resource the target names.
    pub route: Route,
    /// The protocol version.
    pub version: Version,
}

/// A parsed request head, reduced to what the server acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The request line.
    pub line: RequestLine,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// How the body that follows the head is framed.
    pub body: BodyFraming,
    /// `Expect: 100-continue` was given.
    pub expect_continue: bool,
}

/// How a complete request head frames its body, and whether the
/// connection stays open after it; None when the head is not acceptable
/// (it is answered with an error, and the connection closes).
pub fn request_framing(head: &[u8]) -> Option<(BodyFraming, bool)> {
    parse_head(head).ok().map(|r| (r.body, r.keep_alive))
}

/// Whether the first line of `buf` is complete and no valid request line
/// (answered 400 at once, without waiting for the rest of the head).
pub fn bad_request_line(buf: &[u8]) -> bool {
    buf.iter()
        .position(|&b| b == b'\n')
        .is_some_and(|nl| parse_request_line(strip_cr(&buf[..nl])).is_err())
}

/// How many bytes of empty lines (CRLF, or a bare LF) start `buf`: what
/// is skipped before a request line (RFC 9112 section 2.2), by the server
/// and the distributor's forwarder alike (and the `http` fuzz target). A
/// lone CR is not an empty line.
pub fn blank_lines(buf: &[u8]) -> usize {
    let mut n = 0;
    loop {
        match &buf[n..] {
            [b'\r', b'\n', ..] => n += 2,
            [b'\n', ..] => n += 1,
            _ => return n,
        }
    }
}

/// The line without a trailing CR.
pub(super) fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Where the request head in `buf` ends (just past its blank line), if it
/// is complete. The search starts at `from`, before which the caller knows
/// there is no line end followed by a blank line. Lines may end in CRLF or,
/// leniently (RFC 9112 section 2.2), in a bare LF.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(off) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + off;
        match buf.get(nl + 1..)? {
            [b'\n', ..] => return Some(nl + 2),
            [b'\r', b'\n', ..] => return Some(nl + 3),
            [b'\r'] | [] => return None,
            _ => i = nl + 1,
        }
    }
    None
}

/// Whether `b` may appear in a token (RFC 9110 section 5.6.2).
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `s` is a non-empty token.
pub(super) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Parses `METHOD SP target SP HTTP/x.y`.
pub(super) fn parse_request_line(line: &[u8]) -> Result<RequestLine, Status> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    if !is_token(method) || target.is_empty() || !target.iter().all(|b| (0x21..=0x7E).contains(b)) {
        return Err(Status::BadRequest);
    }
    let version = match version {
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            Version::Http11
        }
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(Status::VersionNotSupported)
        }
        _ => return Err(Status::BadRequest),
    };
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        b"POST" | b"PUT" | b"DELETE" | b"PATCH" | b"OPTIONS" | b"TRACE" | b"CONNECT" => {
            Method::NotAllowed
        }
        _ => Method::Unknown,
    };
    Ok(RequestLine {
        method,
        route: route(target)?,
        version,
    })
}

/// Which resource a request target names. Accepts the origin form
/// (`/stats?x`) and the absolute form (`http://host/stats`).
pub(super) fn route(target: &[u8]) -> Result<Route, Status> {
    let path = if target.starts_with(b"/") {
        target
    } else if target == b"*" {
        return Ok(Route::NotFound);
    } else {
        let lower = target.to_ascii_lowercase();
        let scheme = if lower.starts_with(b"http://") {
            7
        } else if lower.starts_with(b"https://") {
            8
        } else {
            return Err(Status::BadRequest);
        };
        let rest = &target[scheme..];
        match rest.iter().position(|&b| b == b'/') {
            Some(slash) => &rest[slash..],
            None => b"/",
        }
    };
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    Ok(match &path[..end] {
        b"/" => Route::Root,
        b"/stats" => Route::Stats,
        b"/dashboard" => Route::Dashboard,
        _ => Route::NotFound,
    })
}

/// Whether an Accept value (RFC 9110 section 12.5.1) names `text/html`
/// itself with a non-zero weight; `*/*` and `text/*` do not count.
pub(super) fn accepts_html(value: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|range| {
        let mut parts = range.split(|&b| b == b';').map(trim_ows);
        let html = parts
            .next()
            .is_some_and(|t| t.eq_ignore_ascii_case(b"text/html"));
        html && !parts.any(|p| match p {
            [b'q' | b'Q', b'=', weight @ ..] => is_zero_weight(weight),
            _ => false,
        })
    })
}

/// Whether a weight (`qvalue`, RFC 9110 section 12.4.2) is zero: `0`,
/// `0.`, `0.0`, ... `0.000`.
fn is_zero_weight(weight: &[u8]) -> bool {
    match weight {
        [b'0'] => true,
        [b'0', b'.', zeros @ ..] => zeros.iter().all(|&b| b == b'0'),
        _ => false,
    }
}

/// Trims optional whitespace (SP and HTAB) from both ends.
pub(super) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Parses a Content-Length value; a list of equal values (RFC 9110
/// section 8.6) counts as one.
pub(super) fn parse_content_length(value: &[u8]) -> Result<u64, Status> {
    let mut len = None;
    for item in value.split(|&b| b == b',') {
        let item = trim_ows(item);
        if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
            return Err(Status::BadRequest);
        }
        let mut n: u64 = 0;
        for &d in item {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
                .ok_or(Status::BadRequest)?;
        }
        match len {
            Some(prev) if prev != n => return Err(Status::BadRequest),
            _ => len = Some(n),
        }
    }
    len.ok_or(Status::BadRequest)
}

/// Parses a complete request head (ending with its blank line).
pub fn parse_head(head: &[u8]) -> Result<Request, Status> {
    let mut lines = head.split(|&b| b == b'\n').map(strip_cr);
    let line = parse_request_line(lines.next().ok_or(Status::BadRequest)?)?;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut body_len: Option<u64> = None;
    // Transfer-Encoding: given at all; a coding other than chunked; chunked
    // seen; chunked the last coding so far; chunked given twice.
    let mut te = false;
    let mut te_unknown = false;
    let mut te_chunked = false;
    let mut te_chunked_last = false;
    let mut te_twice = false;
    let mut expect_continue = false;
    let mut wants_html = false;
    for field in lines {
        if field.is_empty() {
            break;
        }
        // A bare CR is not allowed; a line starting with whitespace is
        // obsolete line folding, rejected (RFC 9112 section 5.2).
        if field.contains(&b'\r') || matches!(field[0], b' ' | b'\t') {
            return Err(Status::BadRequest);
        }
        let colon = field
            .iter()
            .position(|&b| b == b':')
            .ok_or(Status::BadRequest)?;
        let name = &field[..colon];
        if !is_token(name) {
            return Err(Status::BadRequest);
        }
        let value = trim_ows(&field[colon + 1..]);
        if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',') {
                let option = trim_ows(option);
                conn_close |= option.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(value)?;
            if body_len.is_some_and(|prev| prev != n) {
                return Err(Status::BadRequest);
            }
            body_len = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te = true;
            for coding in value.split(|&b| b == b',').map(trim_ows) {
                if coding.is_empty() {
                    continue; // an empty list element (RFC 9110 section 5.6.1)
                }
                let chunked = coding.eq_ignore_ascii_case(b"chunked");
                te_twice |= chunked && te_chunked;
                te_chunked |= chunked;
                te_unknown |= !chunked;
                te_chunked_last = chunked;
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"accept") {
            wants_html |= accepts_html(value);
        }
    }
    // A browser asking for `/` gets the dashboard; every other client
    // (curl, wrk, ab: `*/*` or no Accept) the plain reply.
    let line = match line.route {
        Route::Root if wants_html => RequestLine {
            route: Route::Dashboard,
            ..line
        },
        _ => line,
    };
    let keep_alive = match line.version {
        Version::Http11 => !conn_close,
        Version::Http10 => conn_keep_alive && !conn_close,
    };
    // RFC 9112 section 6: only chunked is implemented (anything else is
    // 501); it must come once and last; Transfer-Encoding beside
    // Content-Length, or in HTTP/1.0, leaves the framing in doubt (a
    // request smuggling attempt): 400.
    let body = if te {
        if te_unknown {
            return Err(Status::NotImplemented);
        }
        if !te_chunked_last || te_twice || body_len.is_some() || line.version == Version::Http10 {
            return Err(Status::BadRequest);
        }
        BodyFraming::Chunked
    } else {
        BodyFraming::Length(body_len.unwrap_or(0))
    };
    Ok(Request {
        line,
        keep_alive,
        body,
        expect_continue,
    })
}
