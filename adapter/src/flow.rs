//! The flow table: which processor holds each TCP connection.
//!
//! Owned by the RX thread alone, so a lookup takes no lock. An entry is
//! made when the filter places a new SYN and removed when the processor
//! reports the connection gone ([`crate::FlowClosed`]). Every SYN sent
//! through an entry gets a fresh stamp; a removal names the stamp of the
//! last SYN its processor saw, so a report about an older incarnation of a
//! 4-tuple cannot remove the entry of a newer one still in flight.

use vnic_stack::{FourTuple, TupleMap};

#[derive(Debug, Clone, Copy)]
struct Entry {
    processor: usize,
    stamp: u64,
}

/// The most RX queues a TAP is read with: a SYN stamp names its queue
/// in its low byte ([`stamp_queue`]).
pub const MAX_RX_QUEUES: usize = 16;

/// The RX queue whose flow table made `stamp`, so a processor's report of
/// a closed connection goes back to the thread that owns its entry.
pub fn stamp_queue(stamp: u64) -> usize {
    (stamp & 0xff) as usize
}

/// 4-tuple → processor.
#[derive(Debug, Default)]
pub struct FlowTable {
    map: TupleMap<Entry>,
    next_stamp: u64,
    /// The RX queue this table belongs to (low byte of every stamp).
    queue: u8,
}

impl FlowTable {
    /// An empty table (RX queue 0).
    pub fn new() -> FlowTable {
        FlowTable::default()
    }

    /// An empty table for RX queue `queue` (below [`MAX_RX_QUEUES`]):
    /// its stamps carry the queue.
    pub fn for_queue(queue: usize) -> FlowTable {
        FlowTable {
            queue: queue.min(MAX_RX_QUEUES - 1) as u8,
            ..FlowTable::default()
        }
    }

    /// The processor holding `tuple`, if any.
    pub fn lookup(&self, tuple: &FourTuple) -> Option<usize> {
        self.map.get(tuple).map(|e| e.processor)
    }

    /// Places `tuple` on `processor` (or keeps its current processor) and
    /// returns the processor and the stamp for this SYN.
    pub fn stamp_syn(&mut self, tuple: FourTuple, processor: usize) -> (usize, u64) {
        self.next_stamp += 1;
        let stamp = (self.next_stamp << 8) | u64::from(self.queue);
        let e = self.map.entry(tuple).or_insert(Entry { processor, stamp });
        e.stamp = stamp;
        (e.processor, stamp)
    }

    /// Removes `tuple` if its last SYN stamp is `stamp`; returns whether it did.
    pub fn remove(&mut self, tuple: &FourTuple, stamp: u64) -> bool {
        match self.map.get(tuple) {
            Some(e) if e.stamp == stamp => {
                self.map.remove(tuple);
                true
            }
            _ => false,
        }
    }

    /// Points `tuple` at `to` if `from` holds it now (a live migration);
    /// returns whether it did. A report about an older incarnation (another
    /// processor holds the tuple now, or the entry is gone) changes nothing.
    pub fn switch(&mut self, tuple: &FourTuple, from: usize, to: usize) -> bool {
        match self.map.get_mut(tuple) {
            Some(e) if e.processor == from => {
                e.processor = to;
                true
            }
            _ => false,
        }
    }

    /// Points `tuple` at `to` whatever holds it now: its processor died
    /// and `to` is its backup, which took its connections over.
    pub fn redirect(&mut self, tuple: &FourTuple, to: usize) {
        if let Some(e) = self.map.get_mut(tuple) {
            e.processor = to;
        }
    }

    /// Removes `tuple` if `processor` holds it; returns whether it did.
    pub fn remove_held(&mut self, tuple: &FourTuple, processor: usize) -> bool {
        match self.map.get(tuple) {
            Some(e) if e.processor == processor => {
                self.map.remove(tuple);
                true
            }
            _ => false,
        }
    }

    /// Removes `tuple` whatever its stamp (the SYN never reached a processor).
    pub fn forget(&mut self, tuple: &FourTuple) {
        self.map.remove(tuple);
    }

    /// Number of connections in the table.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if the table is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn tuple(port: u16) -> FourTuple {
        let local: SocketAddr = "10.0.0.2:80".parse().expect("addr");
        let remote = SocketAddr::new("10.0.0.1".parse().expect("addr"), port);
        FourTuple { local, remote }
    }

    #[test]
    fn entry_keeps_its_processor_across_syns() {
        let mut t = FlowTable::new();
        let (p, _) = t.stamp_syn(tuple(1000), 2);
        assert_eq!(p, 2);
        let (p, _) = t.stamp_syn(tuple(1000), 3);
        assert_eq!(p, 2, "a retransmitted SYN stays with its processor");
        assert_eq!(t.lookup(&tuple(1000)), Some(2));
    }

    #[test]
    fn stale_removal_does_not_remove_newer_incarnation() {
        let mut t = FlowTable::new();
        let (_, s1) = t.stamp_syn(tuple(1000), 1);
        let (_, s2) = t.stamp_syn(tuple(1000), 1);
        assert!(!t.remove(&tuple(1000), s1));
        assert_eq!(t.lookup(&tuple(1000)), Some(1));
        assert!(t.remove(&tuple(1000), s2));
        assert_eq!(t.lookup(&tuple(1000)), None);
    }

    #[test]
    fn stamps_name_their_queue_and_are_never_zero() {
        let mut t = FlowTable::for_queue(3);
        let (_, s1) = t.stamp_syn(tuple(1000), 1);
        let (_, s2) = t.stamp_syn(tuple(1001), 1);
        assert_eq!((stamp_queue(s1), stamp_queue(s2)), (3, 3));
        assert_ne!(s1, s2);
        let (_, s0) = FlowTable::new().stamp_syn(tuple(1), 0);
        assert_ne!(s0, 0, "0 means no SYN");
        assert_eq!(stamp_queue(s0), 0);
    }

    #[test]
    fn a_switch_moves_only_the_holders_entry() {
        let mut t = FlowTable::new();
        let (_, stamp) = t.stamp_syn(tuple(1), 2);
        assert!(!t.switch(&tuple(1), 3, 0), "not held by 3");
        assert_eq!(t.lookup(&tuple(1)), Some(2));
        assert!(t.switch(&tuple(1), 2, 0));
        assert_eq!(t.lookup(&tuple(1)), Some(0));
        assert!(!t.switch(&tuple(9), 0, 1), "no entry");
        // The new holder's report of the end still removes it.
        assert!(t.remove(&tuple(1), stamp));
        t.stamp_syn(tuple(2), 1);
        t.redirect(&tuple(2), 3);
        assert_eq!(t.lookup(&tuple(2)), Some(3));
        assert!(!t.remove_held(&tuple(2), 1));
        assert!(t.remove_held(&tuple(2), 3));
        assert!(t.is_empty());
    }

    #[test]
    fn counts_its_flows() {
        let mut t = FlowTable::new();
        for port in 0..8 {
            t.stamp_syn(tuple(port), usize::from(port % 4));
        }
        assert_eq!(t.len(), 8);
    }
}
