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

/// The hasher of every table keyed by [`FourTuple`]: foldhash, seeded at
/// random once per process (a peer choosing its ports cannot aim them at
/// one bucket without the seed), and several times faster than the
/// standard SipHash on this 36-byte key, which every frame's lookup pays.
pub type TupleHasher = foldhash::fast::RandomState;

/// A map keyed by 4-tuple with [`TupleHasher`]: the flow table, a
/// processor's connections, its TIME-WAIT records, a backup's standby
/// copies.
pub type TupleMap<V> = std::collections::HashMap<FourTuple, V, TupleHasher>;

/// Five 64-bit words (both addresses, 16 bytes each, then both ports):
/// a derived `Hash` fed the hasher a dozen small writes (each address's
/// enum tag, its octets with their length, the port, the IPv6 flow label
/// and scope), and hashing the tuple on every lookup was 1-2% of a
/// processor's CPU under short connections; one 36-byte write still went
/// through foldhash's long-input path (1.8% in a profile). A word is one
/// keyed fold each. Consistent with `Eq`: equal tuples have equal
/// addresses and ports.
impl std::hash::Hash for FourTuple {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let words = |a: &SocketAddr| -> [u64; 2] {
            let o = match a.ip() {
                IpAddr::V4(ip) => u128::from(u32::from(ip)),
                IpAddr::V6(ip) => u128::from(ip),
            };
            [(o >> 64) as u64, o as u64]
        };
        let [l0, l1] = words(&self.local);
        let [r0, r1] = words(&self.remote);
        h.write_u64(l0);
        h.write_u64(l1);
        h.write_u64(r0);
        h.write_u64(r1);
        h.write_u64(u64::from(self.local.port()) << 16 | u64::from(self.remote.port()));
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
