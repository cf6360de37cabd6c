//! The 4-tuple that names a TCP connection.

use std::net::SocketAddr;

/// Local and remote socket addresses of one connection.
///
/// It exists because both the flow table (adapter) and the ISN generator key
/// on exactly this pair, and the stack needs the addresses to pick the IPv4
/// or IPv6 MSS and pseudo header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FourTuple {
    /// Our address and port (the virtual IP side).
    pub local: SocketAddr,
    /// The peer's address and port.
    pub remote: SocketAddr,
}

impl FourTuple {
    /// True for an IPv6 connection: selects the 60-byte header overhead for
    /// the MSS and the 1220-byte default peer MSS.
    pub fn is_ipv6(&self) -> bool {
        self.local.is_ipv6()
    }
}
