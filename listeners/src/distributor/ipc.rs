//! The messages between the distributor and its back-ends.

use crossbeam_channel::Sender;

/// What a back-end is asked to do for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// One whole HTTP request (head and body).
    Http {
        /// The request bytes.
        request: Vec<u8>,
        /// The connection number, for the `connection=N` line.
        connection: u64,
        /// The front-end (distributor processor) that holds it, for the
        /// `processor=K` line.
        processor: usize,
    },
    /// One received chunk for echo: the reply is the same bytes.
    Echo(Vec<u8>),
    /// One received chunk for discard: the reply is empty.
    Discard(Vec<u8>),
    /// One whole request of a user's protocol.
    Request {
        /// The handler that answers it.
        handler: super::request::HandlerRef,
        /// The request bytes.
        request: Vec<u8>,
        /// The connection number.
        connection: u64,
        /// The front-end that holds it.
        processor: usize,
    },
    /// The next piece of a chargen stream.
    Chargen {
        /// Offset of the piece in the connection's stream.
        offset: u64,
        /// Its length.
        len: usize,
    },
}

/// One request in flight.
#[derive(Clone, Debug)]
pub struct Job {
    /// Unique per distributor, for matching the reply (and dropping a
    /// second reply after a retry).
    pub id: u64,
    /// The connection it belongs to.
    pub conn: u64,
    /// Its place among the connection's requests.
    pub seq: u64,
    /// What to do.
    pub work: Work,
    /// Where the reply goes.
    pub reply_to: vnic_adapter::BellSender<FromBackend>,
}

/// A back-end's answer (or the distributor's own, in a back-end's stead:
/// a 503 or a reset for a request given up, a 400 for a malformed chunk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The job's id.
    pub id: u64,
    /// The connection.
    pub conn: u64,
    /// The job's place among the connection's requests.
    pub seq: u64,
    /// The back-end that produced it ([`NO_BACKEND`] for an answer the
    /// distributor made itself).
    pub backend: usize,
    /// The incarnation of that back-end (see [`FromBackend::Failed`]).
    pub generation: u64,
    /// Bytes to send to the client.
    pub bytes: Vec<u8>,
    /// Close the connection once these bytes are sent.
    pub close: bool,
    /// Reset the connection when this reply's turn comes (`bytes` are not
    /// sent): the request was given up and the protocol has no way to say so.
    pub reset: bool,
}

/// [`Reply::backend`] of an answer that no back-end produced.
pub const NO_BACKEND: usize = usize::MAX;

/// What comes back from the back-ends.
#[derive(Clone, Debug)]
pub enum FromBackend {
    /// A reply.
    Reply(Reply),
    /// The back-end died (a panic inside it) running `job`; it has left,
    /// its other work must be sent elsewhere, and `job` retried or given up.
    Failed {
        /// Which back-end.
        backend: usize,
        /// Which incarnation of it: each (re)start of a back-end is a new
        /// one, so a late report of an old thread never fails its successor.
        generation: u64,
        /// The id of the job it was running.
        job: u64,
    },
}

/// Steering a back-end from the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendCtl {
    /// Which back-end.
    pub backend: usize,
    /// Up or down.
    pub up: bool,
}

/// A back-end command with the channel its answer goes back on.
pub type BackendCtlRequest = (BackendCtl, Sender<Result<(), String>>);
