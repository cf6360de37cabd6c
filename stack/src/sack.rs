//! Selective acknowledgment (RFC 2018, RFC 6675): the sender's scoreboard
//! of what the peer reported holding, and the receiver's list of blocks to
//! report.

use crate::seq::SeqNumber;

/// Most SACKed ranges the sender remembers. Beyond it the highest range is
/// forgotten (treated as not SACKed), which can only cause an unneeded
/// retransmission, never a wrong delivery.
const MAX_SCOREBOARD_RANGES: usize = 256;

/// RFC 6675 DupThresh.
pub(crate) const DUP_THRESH: usize = 3;

/// The sender's SACK scoreboard: sorted, disjoint, non-touching ranges
/// `[left, right)` above SND.UNA that the peer reported holding.
///
/// It exists so the sender retransmits only the holes (RFC 6675 NextSeg),
/// and can tell which holes are lost (IsLost) and how much is in the
/// network (pipe) with work proportional to the number of ranges (holes),
/// never to the bytes in flight.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scoreboard {
    ranges: Vec<(SeqNumber, SeqNumber)>,
    sacked: usize,
}

impl Scoreboard {
    /// Forgets everything (RFC 2018: the receiver may have reneged).
    pub(crate) fn clear(&mut self) {
        self.ranges.clear();
        self.sacked = 0;
    }

    /// Bytes currently marked SACKed.
    pub(crate) fn sacked_bytes(&self) -> usize {
        self.sacked
    }

    /// Number of SACKed ranges (= holes below the highest SACKed byte).
    #[cfg(test)]
    pub(crate) fn ranges(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.ranges
    }

    /// Marks `[left, right)`, clipped to `[una, max)`, as SACKed; returns
    /// the number of bytes newly SACKed. Nonsense blocks are ignored.
    pub(crate) fn insert(
        &mut self,
        una: SeqNumber,
        max: SeqNumber,
        left: SeqNumber,
        right: SeqNumber,
    ) -> usize {
        let left = left.max(una);
        let right = right.min(max);
        if left >= right {
            return 0;
        }
        // Ranges i..j overlap or touch [left, right).
        let i = self.ranges.partition_point(|r| r.1 < left);
        let j = self.ranges.partition_point(|r| r.0 <= right);
        let (mut l, mut r) = (left, right);
        let mut old = 0;
        for &(a, b) in &self.ranges[i..j] {
            l = l.min(a);
            r = r.max(b);
            old += b - a;
        }
        let new = (r - l) - old;
        self.ranges.splice(i..j, [(l, r)]);
        self.sacked += new;
        if self.ranges.len() > MAX_SCOREBOARD_RANGES {
            if let Some((a, b)) = self.ranges.pop() {
                self.sacked -= b - a;
            }
        }
        new
    }

    /// SND.UNA moved to `una`: drops what is now cumulatively acknowledged.
    pub(crate) fn advance(&mut self, una: SeqNumber) {
        let gone = self.ranges.partition_point(|r| r.1 <= una);
        for (a, b) in self.ranges.drain(..gone) {
            self.sacked -= b - a;
        }
        if let Some(first) = self.ranges.first_mut() {
            if first.0 < una {
                self.sacked -= una - first.0;
                first.0 = una;
            }
        }
    }

    /// RFC 6675 IsLost as a boundary: every un-SACKed sequence number
    /// below the returned one has DupThresh discontiguous SACKed ranges or
    /// more than (DupThresh - 1) * SMSS SACKed bytes above it. Walks down
    /// from the top and stops after at most DupThresh ranges.
    pub(crate) fn loss_boundary(&self, smss: usize) -> Option<SeqNumber> {
        let mut bytes = 0;
        for (n, &(a, b)) in self.ranges.iter().rev().enumerate() {
            bytes += b - a;
            if n + 1 >= DUP_THRESH || bytes > (DUP_THRESH - 1) * smss {
                return Some(a);
            }
        }
        None
    }

    /// RFC 6675 IsLost(seq) for an un-SACKed `seq`.
    pub(crate) fn is_lost(&self, seq: SeqNumber, smss: usize) -> bool {
        self.loss_boundary(smss).is_some_and(|b| seq < b)
    }

    /// SACKed bytes inside `[from, to)`.
    pub(crate) fn sacked_between(&self, from: SeqNumber, to: SeqNumber) -> usize {
        let i = self.ranges.partition_point(|r| r.1 <= from);
        let mut n = 0;
        for &(a, b) in &self.ranges[i..] {
            if a >= to {
                break;
            }
            n += b.min(to) - a.max(from);
        }
        n
    }

    /// The first un-SACKed run at or after `from`, below `limit`:
    /// `(start, end)` with `end` the next SACKed byte or `limit`.
    pub(crate) fn hole_from(
        &self,
        from: SeqNumber,
        limit: SeqNumber,
    ) -> Option<(SeqNumber, SeqNumber)> {
        let mut i = self.ranges.partition_point(|r| r.1 <= from);
        let mut start = from;
        if let Some(&(a, b)) = self.ranges.get(i) {
            if a <= start {
                start = b;
                i += 1;
            }
        }
        if start >= limit {
            return None;
        }
        let end = self.ranges.get(i).map_or(limit, |r| r.0.min(limit));
        Some((start, end))
    }
}

/// Most blocks a SACK option can carry (without timestamps).
const MAX_REPORT_BLOCKS: usize = 4;

/// The receiver's SACK blocks, most recently changed first (RFC 2018 4).
///
/// It exists so each ACK reports the block holding the segment that
/// triggered it first, then the blocks reported most recently, so that a
/// block keeps being repeated in several ACKs even when some are lost.
#[derive(Clone, Debug, Default)]
pub(crate) struct SackReport {
    blocks: Vec<(SeqNumber, SeqNumber)>,
}

impl SackReport {
    /// `block` (the whole held range around newly arrived data) goes first;
    /// older blocks it overlaps or touches are dropped.
    pub(crate) fn report(&mut self, block: (SeqNumber, SeqNumber)) {
        self.blocks.retain(|&(a, b)| b < block.0 || a > block.1);
        self.blocks.insert(0, block);
        self.blocks.truncate(MAX_REPORT_BLOCKS);
    }

    /// RCV.NXT moved: blocks now covered by it are no longer reported.
    pub(crate) fn prune(&mut self, rcv_nxt: SeqNumber) {
        self.blocks.retain(|&(_, b)| b > rcv_nxt);
    }

    /// The blocks to put in the next ACK, most recent first.
    pub(crate) fn blocks(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    #[test]
    fn insert_merges_and_counts_new_bytes() {
        let mut sb = Scoreboard::default();
        let (una, max) = (s(1000), s(10_000));
        assert_eq!(sb.insert(una, max, s(3000), s(4000)), 1000);
        assert_eq!(sb.insert(una, max, s(5000), s(6000)), 1000);
        assert_eq!(sb.insert(una, max, s(3500), s(5000)), 1000);
        assert_eq!(sb.ranges(), &[(s(3000), s(6000))]);
        assert_eq!(sb.insert(una, max, s(3000), s(6000)), 0);
        assert_eq!(sb.insert(una, max, s(500), s(1500)), 500); // clipped to una
        assert_eq!(sb.insert(una, max, s(9000), s(20_000)), 1000); // clipped to max
        assert_eq!(sb.sacked_bytes(), 4500);
        sb.advance(s(3200));
        assert_eq!(sb.ranges(), &[(s(3200), s(6000)), (s(9000), s(10_000))]);
        assert_eq!(sb.sacked_bytes(), 3800);
    }

    #[test]
    fn is_lost_needs_three_ranges_or_more_than_two_mss_above() {
        let mut sb = Scoreboard::default();
        let (una, max) = (s(0), s(100_000));
        sb.insert(una, max, s(1000), s(2000));
        assert!(!sb.is_lost(s(0), 1000));
        sb.insert(una, max, s(3000), s(4000));
        assert!(!sb.is_lost(s(0), 1000));
        sb.insert(una, max, s(5000), s(5500));
        assert!(sb.is_lost(s(0), 1000));
        assert!(!sb.is_lost(s(2000), 1000));
        let mut big = Scoreboard::default();
        big.insert(una, max, s(1000), s(3001));
        assert!(big.is_lost(s(0), 1000));
    }

    #[test]
    fn holes_and_sacked_between() {
        let mut sb = Scoreboard::default();
        let (una, max) = (s(0), s(10_000));
        sb.insert(una, max, s(1000), s(2000));
        sb.insert(una, max, s(3000), s(4000));
        assert_eq!(sb.hole_from(s(0), max), Some((s(0), s(1000))));
        assert_eq!(sb.hole_from(s(1500), max), Some((s(2000), s(3000))));
        assert_eq!(sb.hole_from(s(4000), max), Some((s(4000), max)));
        assert_eq!(sb.hole_from(s(3500), s(4000)), None);
        assert_eq!(sb.sacked_between(s(1500), s(3500)), 1000);
    }

    #[test]
    fn report_most_recent_first_and_pruned() {
        let mut r = SackReport::default();
        r.report((s(10), s(20)));
        r.report((s(30), s(40)));
        r.report((s(50), s(60)));
        assert_eq!(
            r.blocks(),
            &[(s(50), s(60)), (s(30), s(40)), (s(10), s(20))]
        );
        r.report((s(30), s(45)));
        assert_eq!(
            r.blocks(),
            &[(s(30), s(45)), (s(50), s(60)), (s(10), s(20))]
        );
        r.prune(s(20));
        assert_eq!(r.blocks(), &[(s(30), s(45)), (s(50), s(60))]);
    }
}
