//! The 4-tuple that names a TCP connection.

use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};

/// Local and remote socket addresses of one connection.
///
/// It exists because both the flow table (adapter) and the ISN generator key
/// on exactly this pair, and the stack needs the addresses to pick the IPv4
/// or IPv6 MSS and pseudo header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FourTuple {
    /// Our address and port (the virtual IP side).
    pub local: SocketAddr,
    /// The peer's address and port.
    pub remote: SocketAddr,
}

/// One write of the addresses and ports packed into 36 bytes: a derived
/// `Hash` fed SipHash a dozen small writes (each address's enum tag, its
/// octets with their length, the port, the IPv6 flow label and scope),
/// and hashing the tuple on every lookup was 1-2% of a processor's CPU
/// under short connections. Consistent with `Eq`: equal tuples have equal
/// addresses and ports.
impl std::hash::Hash for FourTuple {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let mut b = [0u8; 36];
        let mut put = |at: usize, a: &SocketAddr| {
            match a.ip() {
                IpAddr::V4(ip) => b[at..at + 4].copy_from_slice(&ip.octets()),
                IpAddr::V6(ip) => b[at..at + 16].copy_from_slice(&ip.octets()),
            }
            b[at + 16..at + 18].copy_from_slice(&a.port().to_ne_bytes());
        };
        put(0, &self.local);
        put(18, &self.remote);
        h.write(&b);
    }
}

impl FourTuple {
    /// True for an IPv6 connection: selects the 60-byte header overhead for
    /// the MSS and the 1220-byte default peer MSS.
    pub fn is_ipv6(&self) -> bool {
        self.local.is_ipv6()
    }

    /// Feeds both addresses and ports to a keyed hasher, in a fixed wire
    /// order: the ISN generator and the SYN cookies key on exactly this.
    pub fn hash_into(&self, h: &mut impl Hasher) {
        for addr in [self.local, self.remote] {
            match addr.ip() {
                IpAddr::V4(ip) => h.write(&ip.octets()),
                IpAddr::V6(ip) => h.write(&ip.octets()),
            }
            h.write(&addr.port().to_be_bytes());
        }
    }
}
