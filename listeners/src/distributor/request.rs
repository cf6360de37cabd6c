//! User code as requests and responses: a [`RequestHandler`] says where a
//! request ends in the client's byte stream and how to answer it, and runs
//! unchanged in both listener models: in the distributor model each
//! request goes to a back-end (the distributor frames it, a back-end
//! answers it, the reply goes back in request order), in the monolithic
//! model the processor that holds the connection answers it itself
//! ([`RequestApp`]).

use crate::app::checkpoint::Copied;
use crate::app::{App, AppCheckpoint, AppContext, NoCheckpoint, Refused, Service, Socket};
use std::fmt;
use std::sync::Arc;

/// Most bytes a request may have unless the handler says otherwise.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Where a request runs, for the handler's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestContext {
    /// The processor that holds the connection.
    pub processor: usize,
    /// The back-end that runs the request (distributor model only).
    pub backend: Option<usize>,
    /// The connection's number.
    pub connection: u64,
}

/// A handler's answer to one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// Bytes for the client.
    pub bytes: Vec<u8>,
    /// Close the connection once they are sent.
    pub close: bool,
}

/// A request/response protocol of the user's, served by the processors
/// or, in the distributor model, by the back-ends.
///
/// ```
/// use vnic_listeners::distributor::{RequestContext, RequestHandler, Response};
///
/// /// `ADD a b` -> the sum, one request per line.
/// struct Adder;
///
/// impl RequestHandler for Adder {
///     fn name(&self) -> &str {
///         "adder"
///     }
///     fn request_len(&self, buf: &[u8]) -> Option<usize> {
///         buf.iter().position(|&b| b == b'\n').map(|i| i + 1)
///     }
///     fn handle(&self, _ctx: &RequestContext, request: &[u8]) -> Response {
///         let text = String::from_utf8_lossy(request);
///         let sum: i64 = text.split_whitespace().skip(1).filter_map(|w| w.parse::<i64>().ok()).sum();
///         Response { bytes: format!("{sum}\n").into_bytes(), close: false }
///     }
/// }
///
/// let ctx = RequestContext { processor: 0, backend: Some(1), connection: 7 };
/// assert_eq!(Adder.request_len(b"ADD 1 2\nADD"), Some(8));
/// assert_eq!(Adder.handle(&ctx, b"ADD 1 2\n").bytes, b"3\n");
/// ```
pub trait RequestHandler: Send + Sync {
    /// A short name for reports.
    fn name(&self) -> &str;
    /// The length of the first complete request at the start of `buf`,
    /// if `buf` holds one (runs where the connection is).
    fn request_len(&self, buf: &[u8]) -> Option<usize>;
    /// The answer to one whole request (at a back-end in the distributor
    /// model, at the processor otherwise).
    fn handle(&self, ctx: &RequestContext, request: &[u8]) -> Response;
    /// The longest request accepted; a longer one, or more bytes than
    /// this without a complete request, resets the connection.
    fn max_request(&self) -> usize {
        MAX_REQUEST
    }
}

/// A shared handler inside a message to a back-end (compared by identity).
#[derive(Clone)]
pub struct HandlerRef(pub Arc<dyn RequestHandler>);

impl fmt::Debug for HandlerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestHandler({})", self.0.name())
    }
}

impl PartialEq for HandlerRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for HandlerRef {}

/// The [`Service`] of a [`RequestHandler`]: what a library user registers
/// on a port.
pub struct RequestService {
    handler: Arc<dyn RequestHandler>,
}

impl RequestService {
    /// Serves `handler`'s protocol.
    pub fn new(handler: impl RequestHandler + 'static) -> RequestService {
        RequestService {
            handler: Arc::new(handler),
        }
    }
}

impl Service for RequestService {
    fn name(&self) -> &str {
        self.handler.name()
    }
    fn open(&self, ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        Ok(Box::new(RequestApp::new(self.handler.clone(), &ctx)))
    }
    fn requests(&self) -> Option<Arc<dyn RequestHandler>> {
        Some(self.handler.clone())
    }
}

/// A [`RequestHandler`] run by the processor that holds the connection
/// (monolithic model): one request at a time, the next read only once the
/// answer to the last is sent, so the client's window closes when it
/// pipelines faster than it reads.
pub struct RequestApp {
    handler: Arc<dyn RequestHandler>,
    ctx: RequestContext,
    input: Vec<u8>,
    out: Vec<u8>,
    out_at: usize,
    close_after_out: bool,
    done: bool,
}

impl RequestApp {
    /// An app answering with `handler` on the connection `ctx` describes.
    pub fn new(handler: Arc<dyn RequestHandler>, ctx: &AppContext) -> RequestApp {
        RequestApp {
            handler,
            ctx: RequestContext {
                processor: ctx.processor,
                backend: None,
                connection: ctx.connection,
            },
            input: Vec::new(),
            out: Vec::new(),
            out_at: 0,
            close_after_out: false,
            done: false,
        }
    }

    /// Sends what is pending; true when nothing is left.
    fn flush(&mut self, sock: &mut dyn Socket) -> bool {
        while self.out_at < self.out.len() {
            let n = sock.send(&self.out[self.out_at..]);
            if n == 0 {
                return false;
            }
            self.out_at += n;
        }
        self.out.clear();
        self.out_at = 0;
        true
    }

    /// Reads at most what completes the longest allowed request.
    fn read(&mut self, sock: &mut dyn Socket) {
        read_bounded(sock, &mut self.input, self.handler.max_request());
    }
}

/// Appends what the client sent to `input`, but never past `max + 1`
/// bytes in all (one byte more than the longest request tells a request
/// that is too long from one that is merely incomplete); returns how many
/// bytes it read.
pub(crate) fn read_bounded(sock: &mut dyn Socket, input: &mut Vec<u8>, max: usize) -> usize {
    let room = max.saturating_add(1).saturating_sub(input.len());
    let want = sock.recv_available().min(room);
    if want == 0 {
        return 0;
    }
    let at = input.len();
    input.resize(at + want, 0);
    let n = sock.recv(&mut input[at..]);
    input.truncate(at + n);
    n
}

impl App for RequestApp {
    fn poll(&mut self, sock: &mut dyn Socket) {
        while !self.done {
            if !self.flush(sock) {
                return;
            }
            if self.close_after_out {
                sock.close();
                self.done = true;
                return;
            }
            let complete = match self.handler.request_len(&self.input) {
                Some(len) if len > 0 && !self.input.is_empty() => Some(len),
                _ => None,
            };
            if let Some(len) = complete {
                let len = len.min(self.input.len());
                if len > self.handler.max_request() {
                    // All that `read` lets in, and one byte too many.
                    sock.abort();
                    self.done = true;
                    return;
                }
                let rest = self.input.split_off(len);
                let request = std::mem::replace(&mut self.input, rest);
                let r = self.handler.handle(&self.ctx, &request);
                self.out = r.bytes;
                self.close_after_out = r.close;
                continue;
            }
            if self.input.len() > self.handler.max_request() {
                sock.abort();
                self.done = true;
                return;
            }
            let before = self.input.len();
            self.read(sock);
            if self.input.len() == before {
                if sock.peer_closed() && sock.recv_available() == 0 {
                    // No more requests can complete.
                    sock.close();
                    self.done = true;
                }
                return;
            }
        }
    }

    fn nagle(&self) -> bool {
        false
    }

    /// The request bytes read but not answered yet, the answer not yet
    /// sent, and whether it closes; restored with the new processor in
    /// the handler's [`RequestContext`].
    fn checkpoint(&mut self) -> Result<Box<dyn AppCheckpoint>, NoCheckpoint> {
        let copy = RequestApp {
            handler: self.handler.clone(),
            ctx: self.ctx,
            input: self.input.clone(),
            out: self.out[self.out_at..].to_vec(),
            out_at: 0,
            close_after_out: self.close_after_out,
            done: self.done,
        };
        let bytes = copy.input.capacity() + copy.out.capacity();
        let rebind = |a: &mut RequestApp, ctx: AppContext| {
            a.ctx.processor = ctx.processor;
            a.ctx.connection = ctx.connection;
        };
        Ok(Copied::new(copy, bytes, rebind).boxed())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::app::MemSocket;
    use crate::stats::Registry;

    /// Lines: each answered with `prefix`, the processor and its length;
    /// `bye` closes. Also the request handler of the app checkpoint tests.
    pub(crate) struct Lines {
        pub(crate) prefix: &'static str,
        pub(crate) max_request: usize,
    }
    impl RequestHandler for Lines {
        fn name(&self) -> &str {
            "lines"
        }
        fn request_len(&self, buf: &[u8]) -> Option<usize> {
            buf.iter().position(|&b| b == b'\n').map(|i| i + 1)
        }
        fn handle(&self, ctx: &RequestContext, request: &[u8]) -> Response {
            Response {
                bytes: format!("{}{} {}\n", self.prefix, ctx.processor, request.len()).into_bytes(),
                close: request == b"bye\n",
            }
        }
        fn max_request(&self) -> usize {
            self.max_request
        }
    }

    fn app() -> RequestApp {
        let ctx = AppContext::detached(3, 1, Arc::new(Registry::new("monolithic", "none", 4)));
        let lines = Lines {
            prefix: "",
            max_request: 16,
        };
        RequestApp::new(Arc::new(lines), &ctx)
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let mut a = app();
        let mut sock = MemSocket::new(1 << 16);
        sock.push(b"a\nbcd\nef");
        a.poll(&mut sock);
        assert_eq!(sock.tx, b"3 2\n3 4\n");
        sock.push(b"g\n");
        a.poll(&mut sock);
        assert_eq!(sock.tx, b"3 2\n3 4\n3 4\n");
    }

    #[test]
    fn the_next_request_waits_until_the_answer_is_sent() {
        let mut a = app();
        let mut sock = MemSocket::new(2);
        sock.push(&b"a\n".repeat(20));
        a.poll(&mut sock);
        assert_eq!(sock.tx, b"3 ");
        // At most one request's worth (max_request + 1) is taken in while
        // the answer waits; the rest stays in TCP, whose window closes.
        assert!(sock.rx.len() >= 40 - 17, "{} left unread", sock.rx.len());
        sock.capacity = 1000;
        a.poll(&mut sock);
        assert_eq!(sock.tx, b"3 2\n".repeat(20));
    }

    #[test]
    fn an_endless_request_resets_the_connection() {
        let mut a = app();
        let mut sock = MemSocket::new(1 << 16);
        sock.push(&[b'x'; 40]);
        a.poll(&mut sock);
        assert!(sock.aborted);
        assert!(sock.rx.len() >= 40 - 17, "read at most one request's worth");
    }

    #[test]
    fn a_closing_answer_closes_after_it_is_sent() {
        let mut a = app();
        let mut sock = MemSocket::new(1 << 16);
        sock.push(b"bye\nmore\n");
        a.poll(&mut sock);
        assert_eq!(sock.tx, b"3 4\n");
        assert_eq!(sock.close_calls, 1);
    }

    #[test]
    fn the_clients_fin_closes_once_answers_are_out() {
        let mut a = app();
        let mut sock = MemSocket::new(1 << 16);
        sock.push(b"a\nhalf");
        sock.peer_fin = true;
        a.poll(&mut sock);
        assert_eq!(sock.tx, b"3 2\n");
        assert_eq!(sock.close_calls, 1);
    }
}
