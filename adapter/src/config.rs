//! What the adapter is: its MAC, its virtual addresses and its MTU.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The adapter's identity on the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterConfig {
    /// The MAC the virtual IPs answer from.
    pub mac: [u8; 6],
    /// Virtual IPv4 addresses (ARP and IPv4 traffic are answered for these only).
    pub ipv4: Vec<Ipv4Addr>,
    /// Virtual IPv6 addresses (neighbour solicitations answered for these only).
    pub ipv6: Vec<Ipv6Addr>,
    /// Link MTU: the largest IP packet we send or expect.
    pub mtu: usize,
    /// With several links (Ethernet failover): every link's MAC, each
    /// accepted as ours, since the host may send to any of them while
    /// its neighbour entries move.
    pub link_macs: Vec<[u8; 6]>,
}

impl AdapterConfig {
    /// An adapter with `addrs` as its virtual IPs and a MAC derived from the TAP name.
    pub fn new(tap: &str, addrs: &[IpAddr], mtu: usize) -> AdapterConfig {
        let mut ipv4 = Vec::new();
        let mut ipv6 = Vec::new();
        for a in addrs {
            match a {
                IpAddr::V4(v4) => ipv4.push(*v4),
                IpAddr::V6(v6) => ipv6.push(*v6),
            }
        }
        AdapterConfig {
            mac: default_mac(tap),
            ipv4,
            ipv6,
            mtu,
            link_macs: Vec::new(),
        }
    }

    /// True if `ip` is one of the virtual IPs.
    pub fn owns(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.ipv4.contains(&v4),
            IpAddr::V6(v6) => self.ipv6.contains(&v6),
        }
    }

    /// True if a frame sent to `dst` is for us: our MAC (or a link's),
    /// broadcast, or an IPv6 multicast MAC (33:33:..) that neighbour
    /// discovery uses.
    pub fn accepts_mac(&self, dst: [u8; 6]) -> bool {
        dst == self.mac
            || dst == [0xff; 6]
            || (dst[0] == 0x33 && dst[1] == 0x33)
            || self.link_macs.contains(&dst)
    }
}

/// A stable, locally administered unicast MAC made from the TAP name, so a
/// restarted vnic keeps the MAC that the host's neighbour cache holds.
pub fn default_mac(tap: &str) -> [u8; 6] {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tap.hash(&mut h);
    let v = h.finish().to_be_bytes();
    [0x02, 0x76, 0x6e, v[0], v[1], v[2]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_is_local_unicast_and_stable() {
        let m = default_mac("vnic0");
        assert_eq!(m[0] & 0x01, 0, "unicast");
        assert_eq!(m[0] & 0x02, 0x02, "locally administered");
        assert_eq!(m, default_mac("vnic0"));
        assert_ne!(m, default_mac("vnic1"));
    }
}
