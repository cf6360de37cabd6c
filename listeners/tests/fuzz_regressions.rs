//! Regression tests from fuzzing the apps, the distributor's request
//! framing and the control protocol (`fuzz/`, targets `http`, `framing`,
//! `control`). Each input is the one the fuzzer (or its seed corpus)
//! found, cut down to what shows the bug.

use crossbeam_channel::unbounded;
use parking_lot::Mutex;
use std::sync::Arc;
use vnic_listeners::app::{App, AppContext, MemSocket};
use vnic_listeners::distributor::backend::app_handler;
use vnic_listeners::distributor::request::RequestApp;
use vnic_listeners::distributor::{
    Balance, Dispatcher, Forwarder, Reply, RequestContext, RequestHandler, Response, Work,
};
use vnic_listeners::stats::Registry;

/// A connection on which the client sent `input`.
fn with(input: &[u8]) -> MemSocket {
    let mut s = MemSocket::new(1 << 20);
    s.push(input);
    s
}

/// One request per line, of at most 4 bytes; answered "ok".
struct ShortLines;

impl RequestHandler for ShortLines {
    fn name(&self) -> &str {
        "short-lines"
    }
    fn request_len(&self, buf: &[u8]) -> Option<usize> {
        buf.iter().position(|&b| b == b'\n').map(|i| i + 1)
    }
    fn handle(&self, _ctx: &RequestContext, _request: &[u8]) -> Response {
        Response {
            bytes: b"ok\n".to_vec(),
            close: false,
        }
    }
    fn max_request(&self) -> usize {
        4
    }
}

fn registry() -> Arc<Registry> {
    Arc::new(Registry::new("distributor", "round-robin", 1))
}

/// A dispatcher with no back-end thread: its jobs wait for
/// [`answer_jobs`].
fn dispatcher() -> Arc<Mutex<Dispatcher>> {
    let (tx, _rx) = unbounded();
    let reg = registry();
    let d = Dispatcher::start(0, Balance::RoundRobin, app_handler(reg.clone()), tx, reg)
        .expect("no back-end, no thread");
    Arc::new(Mutex::new(d))
}

/// Answers every job waiting in `d` as a back-end would, handing the
/// replies to `f`; returns how many there were.
fn answer_jobs(d: &Arc<Mutex<Dispatcher>>, f: &mut Forwarder) -> usize {
    let handler = app_handler(registry());
    let jobs = d.lock().take_waiting();
    let n = jobs.len();
    for job in jobs {
        let (bytes, close) = handler(0, &job.work);
        f.deliver(Reply {
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
    n
}

/// The requests a forwarder over a dispatcher with no back-end framed
/// from `input`, and whether it reset the connection.
fn forwarded(input: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let d = dispatcher();
    let mut f = Forwarder::for_requests(Arc::new(ShortLines), 1, d.clone());
    let mut sock = with(input);
    f.poll(&mut sock);
    let requests = d
        .lock()
        .take_waiting()
        .into_iter()
        .map(|j| match j.work {
            Work::Request { request, .. } => request,
            other => panic!("not a request: {other:?}"),
        })
        .collect();
    (requests, sock.aborted)
}

/// What the monolithic model's app answered to `input`, and whether it
/// reset the connection.
fn answered(input: &[u8]) -> (Vec<u8>, bool) {
    let mut app = RequestApp::new(
        Arc::new(ShortLines),
        &AppContext::detached(0, 1, registry()),
    );
    let mut sock = with(input);
    app.poll(&mut sock);
    (sock.tx, sock.aborted)
}

/// Found by the `framing` target's seed corpus: a request one byte
/// longer than `max_request` (all `read_bounded` lets in) was taken for
/// a request in both models. It is too long: the connection is reset,
/// as for any longer one.
#[test]
fn a_request_one_byte_over_max_request_resets_the_connection() {
    assert_eq!(forwarded(b"abc\n"), (vec![b"abc\n".to_vec()], false));
    assert_eq!(forwarded(b"abcd\n"), (vec![], true));
    assert_eq!(forwarded(b"abcde\n"), (vec![], true));
    assert_eq!(answered(b"abc\n"), (b"ok\n".to_vec(), false));
    assert_eq!(answered(b"abcd\n"), (Vec::new(), true));
    assert_eq!(answered(b"abcde\n"), (Vec::new(), true));
}

/// Found by the `control` target: serde names an unknown command or
/// field as the client wrote it, so a name with a newline (or an escape
/// sequence) in its JSON string made a refusal of several lines, printed
/// so by `vnic ctl`. Control characters are written escaped.
#[test]
fn a_control_refusal_is_one_line_whatever_the_request_holds() {
    use vnic_listeners::control::Request;
    for line in [
        &br#"{"cmd":"li\u007f"}"#[..],
        br#"{"cmd":"a\nb"}"#,
        br#"{"cmd":"tr\u0085ace\r"}"#,
        br#"{"cmd":"\u001b[2Jfilter"}"#,
    ] {
        let e = Request::from_line(line).expect_err("not a request");
        assert!(
            !e.chars().any(char::is_control),
            "{e:?} from {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(e.starts_with("bad request: "), "{e}");
    }
}

/// Found by the `framing` target: a client that sent a good request and
/// then too much without completing another was reset by the
/// distributor at once, so the answer to the good request was lost,
/// and whether it was depended on how TCP had cut the stream. The reset
/// now comes after the answers to the requests before it, as in the
/// monolithic model.
#[test]
fn a_request_too_long_resets_after_the_answers_before_it() {
    let input = b"ab\nxxxxxx";
    assert_eq!(answered(input), (b"ok\n".to_vec(), true));
    let d = dispatcher();
    let mut f = Forwarder::for_requests(Arc::new(ShortLines), 1, d.clone());
    let mut sock = with(input);
    f.poll(&mut sock);
    assert!(!sock.aborted, "not reset before its answer");
    assert_eq!(
        answer_jobs(&d, &mut f),
        1,
        "the good request went to a back-end"
    );
    f.poll(&mut sock);
    assert_eq!((sock.tx, sock.aborted), (b"ok\n".to_vec(), true));
}

/// The status codes of the responses in `out`.
fn codes(out: &[u8]) -> Vec<u16> {
    String::from_utf8_lossy(out)
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| String::from_utf8_lossy(&out[i + 9..i + 12]).parse().ok())
        .collect()
}

/// Found by the `framing` target: before a request line the HTTP server
/// skips empty lines (CRLF, or a bare LF: RFC 9112 2.2), but the
/// distributor's forwarder skipped any run of CR and LF bytes, so a
/// stray CR before a request line made it a request in the distributor
/// model (here 501, an unknown method) and a bad one in the monolithic
/// model (400). Both now skip the same bytes.
#[test]
fn both_models_skip_the_same_blank_lines_before_a_request() {
    use vnic_listeners::app::http::Http;
    use vnic_listeners::app::AppKind;
    let input = b"\r\n\rFROB / HTTP/1.1\r\n\r\n";
    let mut app = Http::new(AppContext::detached(0, 1, registry()));
    let mut sock = with(input);
    app.poll(&mut sock);
    let mono = codes(&sock.tx);
    assert_eq!(mono, [400]);

    let d = dispatcher();
    let mut f = Forwarder::new(AppKind::Http, 1, d.clone());
    let mut sock = with(input);
    f.poll(&mut sock);
    answer_jobs(&d, &mut f);
    f.poll(&mut sock);
    assert_eq!(codes(&sock.tx), mono, "the distributor answers alike");
}
