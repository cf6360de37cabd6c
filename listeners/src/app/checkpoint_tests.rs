//! Checkpoint and restore of the plain apps (echo, discard, chargen, http,
//! a user's request handler): a run cut by moves (checkpoint, `on_moved`,
//! drop, restore into a fresh context) at any step sends exactly what an
//! uninterrupted run sends, and so does a run that checkpoints after
//! every poll and drops each checkpoint (a process pair's primary).

use super::*;
use crate::distributor::request::tests::Lines;
use crate::distributor::request::{RequestApp, MAX_REQUEST};
use crate::distributor::RequestHandler;
use crate::stats::Registry;

/// Pushes `n` lines into `sock` one by one, polling `app` after each and
/// taking a checkpoint that is dropped at once (a process pair's primary,
/// its older checkpoints dropped by the backup); returns the bytes pushed.
/// Shared with the exec and proxy apps' checkpoint tests.
pub(super) fn push_lines_checkpointing_each_poll(
    app: &mut Box<dyn App>,
    sock: &mut MemSocket,
    n: usize,
) -> Vec<u8> {
    let mut pushed = Vec::new();
    for i in 0..n {
        let line = format!("line {i}\n");
        sock.push(line.as_bytes());
        pushed.extend_from_slice(line.as_bytes());
        app.poll(sock);
        drop(app.checkpoint().expect("a checkpoint"));
    }
    pushed
}

/// A [`MemSocket`] whose `send` may take only half (rounded up) of what
/// it is offered, so that apps are left holding bytes read but not sent.
struct Stingy {
    mem: MemSocket,
    stingy: bool,
}

impl Socket for Stingy {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.mem.recv(buf)
    }
    fn recv_available(&self) -> usize {
        self.mem.recv_available()
    }
    fn send(&mut self, data: &[u8]) -> usize {
        let n = if self.stingy {
            data.len().div_ceil(2)
        } else {
            data.len()
        };
        self.mem.send(&data[..n])
    }
    fn send_capacity(&self) -> usize {
        self.mem.send_capacity()
    }
    fn peer_closed(&self) -> bool {
        self.mem.peer_closed()
    }
    fn close(&mut self) {
        self.mem.close()
    }
    fn abort(&mut self) {
        self.mem.abort()
    }
}

fn ctx() -> AppContext {
    AppContext::detached(1, 5, Arc::new(Registry::new("monolithic", "none", 2)))
}

/// What happens after a poll.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Nothing.
    Keep,
    /// The connection moves: checkpoint, `on_moved`, drop, restore.
    Move,
    /// A process pair's checkpoint, dropped at once; the app goes on.
    Pair,
}

/// How a run is fed.
struct Feed<'a> {
    input: &'a [u8],
    piece: usize,
    cap: usize,
    stingy: bool,
    steps: usize,
    /// What of the output is compared (all of it, or without what the
    /// clock changes).
    clean: fn(&[u8]) -> Vec<u8>,
}

/// What a run left: every byte sent, the close calls, whether it reset,
/// and the most bytes one checkpoint held.
#[derive(PartialEq, Eq)]
struct Outcome {
    sent: Vec<u8>,
    close_calls: usize,
    aborted: bool,
}

impl std::fmt::Debug for Outcome {
    // Only the sizes and the end: a failing test prints no megabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail = &self.sent[self.sent.len().saturating_sub(16)..];
        f.debug_struct("Outcome")
            .field("sent", &self.sent.len())
            .field("tail", &String::from_utf8_lossy(tail))
            .field("close_calls", &self.close_calls)
            .field("aborted", &self.aborted)
            .finish()
    }
}

fn drive(
    make: &dyn Fn() -> Box<dyn App>,
    feed: &Feed,
    cut: &dyn Fn(usize) -> Cut,
) -> (Outcome, usize) {
    let mut app = make();
    let mut sock = Stingy {
        mem: MemSocket::new(0),
        stingy: feed.stingy,
    };
    let mut fed = 0;
    let mut most = 0;
    for step in 0..feed.steps {
        if fed < feed.input.len() {
            let n = feed.piece.min(feed.input.len() - fed);
            sock.mem.push(&feed.input[fed..fed + n]);
            fed += n;
        } else {
            sock.mem.peer_fin = true;
        }
        sock.mem.capacity = feed.cap;
        app.poll(&mut sock);
        match cut(step) {
            Cut::Keep => {}
            Cut::Move => {
                let cp = app.checkpoint().expect("a checkpoint");
                most = most.max(cp.memory());
                app.on_moved();
                drop(app);
                app = cp.restore(ctx()).expect("restored");
            }
            Cut::Pair => {
                let cp = app.checkpoint().expect("a checkpoint");
                most = most.max(cp.memory());
                drop(cp);
            }
        }
    }
    let outcome = Outcome {
        sent: (feed.clean)(&sock.mem.take_tx()),
        close_calls: sock.mem.close_calls,
        aborted: sock.mem.aborted,
    };
    (outcome, most)
}

/// Runs `make`'s app uninterrupted, moved after every step, moved at a
/// few steps, and checkpointed (pairs style) after every step; all must
/// send the same. Returns the uninterrupted outcome and the most bytes a
/// checkpoint held.
fn same_with_cuts(make: &dyn Fn() -> Box<dyn App>, feed: &Feed) -> (Outcome, usize) {
    let (whole, _) = drive(make, feed, &|_| Cut::Keep);
    let (every, most) = drive(make, feed, &|_| Cut::Move);
    assert_eq!(every, whole, "moved after every poll");
    let (some, _) = drive(make, feed, &|s| {
        if [1, 2, 3, 5, 8, 13, 21, 34].contains(&s) {
            Cut::Move
        } else {
            Cut::Keep
        }
    });
    assert_eq!(some, whole, "moved now and then");
    let (pairs, _) = drive(make, feed, &|_| Cut::Pair);
    assert_eq!(pairs, whole, "a checkpoint after every poll, each dropped");
    (whole, most)
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn echo_moved_with_bytes_read_but_not_sent_loses_and_repeats_nothing() {
    let input = data(5_000);
    let feed = Feed {
        input: &input,
        piece: 333,
        cap: 100,
        stingy: true,
        steps: 1_000,
        clean: <[u8]>::to_vec,
    };
    let (whole, most) = same_with_cuts(&|| Box::new(echo::Echo::new()), &feed);
    assert!(whole.sent == input, "{whole:?}");
    assert_eq!(whole.close_calls, 1);
    assert!(most > 0, "some checkpoint held bytes read but not sent");
}

#[test]
fn discard_moved_still_closes_once_after_the_fin() {
    let input = data(50_000);
    let feed = Feed {
        input: &input,
        piece: 7_000,
        cap: 100,
        stingy: false,
        steps: 20,
        clean: <[u8]>::to_vec,
    };
    let (whole, _) = same_with_cuts(&|| Box::new(discard::Discard::new()), &feed);
    assert!(whole.sent.is_empty());
    assert_eq!(whole.close_calls, 1);
}

#[test]
fn chargen_moved_mid_line_goes_on_with_the_next_byte_of_the_pattern() {
    let input = b"ignored".to_vec();
    let feed = Feed {
        input: &input,
        // One byte a step: the FIN comes only at step 7.
        piece: 1,
        cap: 97,
        stingy: false,
        steps: 60,
        clean: <[u8]>::to_vec,
    };
    let (whole, _) = same_with_cuts(&|| Box::new(chargen::Chargen::new()), &feed);
    assert!(whole.sent == chargen::stream_bytes(0, 7 * 97), "{whole:?}");
    assert_eq!(whole.close_calls, 1);
}

/// The responses with their Date lines taken out (the clock moves
/// between runs).
fn without_dates(b: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(b)
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("Date: "))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn http_moved_mid_request_mid_body_and_mid_reply_answers_as_if_never_moved() {
    let mut input = Vec::new();
    input.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    input.extend_from_slice(b"\r\nPOST /x HTTP/1.1\r\nContent-Length: 40\r\n\r\n");
    input.extend_from_slice(&[b'b'; 40]);
    input.extend_from_slice(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    input.extend_from_slice(b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\n");
    input.extend_from_slice(b"HEAD /stats HTTP/1.1\r\nX-Long: ");
    input.extend_from_slice(&[b'h'; 300]);
    input.extend_from_slice(b"\r\n\r\nGET /nothing HTTP/1.1\r\n\r\n");
    input.extend_from_slice(b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    let make = || -> Box<dyn App> { Box::new(http::Http::new(ctx())) };
    for (piece, cap, stingy) in [(7, 50, false), (13, 29, true), (1000, 3, false)] {
        let feed = Feed {
            input: &input,
            piece,
            cap,
            stingy,
            steps: 2_000,
            clean: without_dates,
        };
        let (whole, most) = same_with_cuts(&make, &feed);
        let text = String::from_utf8_lossy(&whole.sent).to_string();
        // GET /, HEAD /stats, the HTTP/1.0 GET; the GET after it never
        // gets an answer: the connection closes.
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
        assert_eq!(text.matches("HTTP/1.1 404").count(), 1, "{text}");
        assert_eq!(text.matches("HTTP/1.1 405").count(), 2, "{text}");
        assert!(text.contains("request=6\n"), "the count went on: {text}");
        assert_eq!(whole.close_calls, 1, "HTTP/1.0 without keep-alive");
        assert!(most > 0, "some checkpoint held a request or a reply");
    }
}

/// Lines, each answered with `cpu`, the processor and its length; `bye`
/// closes.
fn lines() -> Arc<dyn RequestHandler> {
    Arc::new(Lines {
        prefix: "cpu",
        max_request: MAX_REQUEST,
    })
}

#[test]
fn a_request_handler_moved_mid_request_and_mid_answer_answers_each_once() {
    let mut input = Vec::new();
    for i in 0..40 {
        input.extend_from_slice(format!("request number {i}\n").as_bytes());
    }
    input.extend_from_slice(b"bye\nnever read\n");
    let handler = lines();
    let make = || -> Box<dyn App> { Box::new(RequestApp::new(handler.clone(), &ctx())) };
    let feed = Feed {
        input: &input,
        piece: 11,
        cap: 5,
        stingy: true,
        steps: 600,
        clean: <[u8]>::to_vec,
    };
    let (whole, most) = same_with_cuts(&make, &feed);
    let text = String::from_utf8_lossy(&whole.sent).to_string();
    assert_eq!(text.lines().count(), 41, "{text}");
    assert!(text.ends_with("cpu1 4\n"), "{text}");
    assert_eq!(whole.close_calls, 1);
    assert!(most > 0);
}

#[test]
fn a_restored_app_answers_as_the_processor_it_was_restored_on() {
    let handler = lines();
    let mut app: Box<dyn App> = Box::new(RequestApp::new(handler, &ctx()));
    let mut sock = MemSocket::new(1 << 16);
    sock.push(b"a\nb");
    app.poll(&mut sock);
    let cp = app.checkpoint().expect("a checkpoint");
    app.on_moved();
    drop(app);
    let mut other = ctx();
    other.processor = 3;
    let mut app = cp.restore(other).expect("restored");
    sock.push(b"\n");
    app.poll(&mut sock);
    assert_eq!(sock.tx, b"cpu1 2\ncpu3 2\n");
}

#[test]
fn an_app_without_checkpoints_stays_unsupported() {
    struct Plain;
    impl App for Plain {
        fn poll(&mut self, _sock: &mut dyn Socket) {}
    }
    assert_eq!(Plain.checkpoint().err(), Some(NoCheckpoint::Unsupported));
}
