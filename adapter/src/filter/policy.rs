//! The placement policies beside round-robin: how one line of listeners
//! chooses among its live members.
//!
//! - **hash**: a keyed SipHash of the 4-tuple (the filter's own random key,
//!   as receive-side scaling keys its Toeplitz hash), taken modulo the live
//!   listeners of the line. The same tuple lands on the same listener while
//!   the line does not change; a down listener's share spreads over the
//!   others (the modulo is over the live ones only). The key keeps a client
//!   from choosing its processor by choosing its port.
//! - **least-connections**: the live listener whose serving processor holds
//!   the fewest connections, ties in line order. The counts are read through
//!   a [`Loads`] the builder installs: a processor's active connections plus
//!   the new ones placed on it and not yet taken in (so a burst of SYNs does
//!   not all go to the processor that was least loaded before the burst).
//!   Without a [`Loads`] every count is 0 and the first live listener wins.
//!
//! This file only chooses; [`super::Filter`] owns the lines and the modes.

use std::fmt;
use std::hash::Hasher;
use std::sync::Arc;

use siphasher::sip::SipHasher24;
use vnic_stack::FourTuple;

/// Reads how many connections a processor holds now, for least-connections.
///
/// A function rather than a table because the counts live where the
/// processors keep them (the listeners crate's registry and the adapter's
/// in-flight gauge), which this crate cannot see.
#[derive(Clone)]
pub struct Loads(Arc<dyn Fn(usize) -> u64 + Send + Sync>);

impl Loads {
    /// Wraps `f`: processor number to its connections now (held, and placed
    /// but not yet taken in).
    pub fn new(f: impl Fn(usize) -> u64 + Send + Sync + 'static) -> Loads {
        Loads(Arc::new(f))
    }

    /// Processor `k`'s connections now.
    pub fn of(&self, k: usize) -> u64 {
        (self.0)(k)
    }
}

impl fmt::Debug for Loads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Loads(..)")
    }
}

/// The keyed hash of a 4-tuple that the hash policy takes modulo the live
/// listeners. Both addresses and ports, in wire order (the same bytes the
/// ISN generator and the SYN cookies hash).
pub fn tuple_hash(key: &[u8; 16], tuple: &FourTuple) -> u64 {
    let mut h = SipHasher24::new_with_key(key);
    tuple.hash_into(&mut h);
    h.finish()
}

/// The hash policy's choice among the `live` places in line (their slots,
/// in line order): the hash modulo their number. None if none is live.
pub fn hash_pick(live: impl Iterator<Item = usize> + Clone, hash: u64) -> Option<usize> {
    let n = u64::try_from(live.clone().count())
        .ok()
        .filter(|n| *n > 0)?;
    let at = usize::try_from(hash % n).ok()?;
    live.into_iter().nth(at)
}

/// The least-connections choice among `live` (slot, processor) places in
/// line order: the one whose processor holds the fewest connections, the
/// first in line on a tie. None if none is live.
pub fn least_pick(
    live: impl Iterator<Item = (usize, usize)>,
    loads: Option<&Loads>,
) -> Option<usize> {
    let load = |p: usize| loads.map_or(0, |l| l.of(p));
    // `min_by_key` keeps the first of equal minima: ties go in line order.
    live.map(|(slot, p)| (load(p), slot))
        .min_by_key(|&(n, _)| n)
        .map(|(_, slot)| slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(port: u16) -> FourTuple {
        FourTuple {
            local: "10.0.0.2:80".parse().expect("addr"),
            remote: std::net::SocketAddr::new("10.0.0.1".parse().expect("ip"), port),
        }
    }

    #[test]
    fn hash_is_keyed() {
        let t = tuple(40000);
        assert_eq!(tuple_hash(&[1; 16], &t), tuple_hash(&[1; 16], &t));
        assert_ne!(tuple_hash(&[1; 16], &t), tuple_hash(&[2; 16], &t));
    }

    #[test]
    fn hash_pick_is_modulo_the_live_places() {
        assert_eq!(hash_pick([0, 2, 3].into_iter(), 4), Some(2));
        assert_eq!(hash_pick([0, 2, 3].into_iter(), 5), Some(3));
        assert_eq!(hash_pick(std::iter::empty(), 5), None);
    }

    #[test]
    fn least_pick_ties_in_line_order() {
        let loads = Loads::new(|p| [3, 1, 1, 0][p]);
        let pick = |live: &[(usize, usize)], l| least_pick(live.iter().copied(), l);
        assert_eq!(pick(&[(0, 0), (1, 1), (2, 2)], Some(&loads)), Some(1));
        assert_eq!(pick(&[(0, 3), (1, 1)], Some(&loads)), Some(0));
        assert_eq!(pick(&[(0, 0), (1, 1)], None), Some(0));
        assert_eq!(pick(&[], Some(&loads)), None);
        assert_eq!(format!("{loads:?}"), "Loads(..)");
    }
}
