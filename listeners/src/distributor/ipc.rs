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

/// A back-end's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The job's id.
    pub id: u64,
    /// The connection.
    pub conn: u64,
    /// The job's place among the connection's requests.
    pub seq: u64,
    /// The back-end that produced it.
    pub backend: usize,
    /// Bytes to send to the client.
    pub bytes: Vec<u8>,
    /// Close the connection once these bytes are sent.
    pub close: bool,
}

/// What comes back from the back-ends.
#[derive(Clone, Debug)]
pub enum FromBackend {
    /// A reply.
    Reply(Reply),
    /// The back-end died (a panic inside it); its work must be retried.
    Failed {
        /// Which back-end.
        backend: usize,
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
