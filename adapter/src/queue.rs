//! The messages between the adapter's RX thread and the processors.

use std::time::Instant;
use vnic_stack::{FourTuple, Segment};

/// One TCP segment for a processor, already parsed and checksummed.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The connection, from our side (local = virtual IP).
    pub tuple: FourTuple,
    /// The segment.
    pub segment: Segment,
    /// The MAC that sent it: where our answers go.
    pub peer_mac: [u8; 6],
    /// For a SYN, the flow table's stamp (see [`crate::flow`]); 0 otherwise.
    pub syn_stamp: u64,
    /// For the ACK of a SYN-cookie SYN|ACK that the adapter found genuine,
    /// the MSS the cookie carried: the processor opens the connection from it.
    pub cookie_mss: Option<u16>,
    /// A new SYN the adapter counted in the processor's SYNs in flight
    /// ([`crate::Counters::syn_in_flight`]): the processor takes it off
    /// that count once it has handled it.
    pub counted_syn: bool,
    /// When the adapter read the frame.
    pub arrived: Instant,
}

/// One UDP datagram for a processor's UDP listener.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Sender (the host side).
    pub remote: std::net::SocketAddr,
    /// Destination (a virtual IP and the listener's port).
    pub local: std::net::SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
    /// The MAC that sent it.
    pub peer_mac: [u8; 6],
}

/// What a processor's queue carries.
#[derive(Debug)]
pub enum ToProcessor {
    /// A segment of one of its connections (or a new one).
    Segment(Inbound),
    /// A UDP datagram for one of its UDP listeners.
    Datagram(Datagram),
    /// Start (Some(app name)) or stop (None) serving a port, for listeners
    /// added or removed at run time.
    Serve {
        /// True for UDP, false for TCP.
        udp: bool,
        /// The port.
        port: u16,
        /// The app's name, or None to stop serving.
        app: Option<String>,
    },
    /// The processor fails (false: every connection is reset with RST and
    /// nothing new is accepted) or comes back (true).
    SetUp(bool),
    /// Reset every connection and stop the thread.
    Shutdown,
}

/// A processor's report that it no longer holds a connection, so the RX
/// thread can drop the flow entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowClosed {
    /// The connection.
    pub tuple: FourTuple,
    /// The stamp of the last SYN the processor saw for it.
    pub syn_stamp: u64,
}

impl FlowClosed {
    /// The RX queue whose flow table holds the connection.
    pub fn rx_queue(&self) -> usize {
        crate::flow::stamp_queue(self.syn_stamp)
    }
}
