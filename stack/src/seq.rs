//! TCP sequence numbers: 32-bit values that wrap, compared by serial
//! arithmetic (RFC 1982, RFC 9293 3.4) so that `a < b` means "`b` is ahead
//! of `a` by less than 2^31".

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, Sub};

/// A TCP sequence (or acknowledgment) number.
///
/// It exists so that no code in the stack compares raw `u32`s: every
/// comparison and distance goes through the wrapping serial arithmetic
/// below, which stays correct when the sequence space wraps past 2^32.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// The later of two sequence numbers (serial order).
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if self >= other {
            self
        } else {
            other
        }
    }

    /// The earlier of two sequence numbers (serial order).
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if self <= other {
            self
        } else {
            other
        }
    }

    /// Wrapping distance from `earlier` to `self`, or 0 when `self` is not
    /// ahead of `earlier`. Avoids the "negative distance" trap of `Sub`.
    pub fn distance_from(self, earlier: SeqNumber) -> usize {
        if self > earlier {
            self - earlier
        } else {
            0
        }
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Add<usize> for SeqNumber {
    type Output = SeqNumber;
    /// Advances by `rhs` octets (wrapping modulo 2^32).
    fn add(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs as u32))
    }
}

impl Sub<usize> for SeqNumber {
    type Output = SeqNumber;
    /// Goes back by `rhs` octets (wrapping modulo 2^32).
    fn sub(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs as u32))
    }
}

impl Sub<SeqNumber> for SeqNumber {
    type Output = usize;
    /// The wrapping distance `self - rhs` in octets, taken modulo 2^32.
    /// Callers use it only when they know `rhs <= self`; it never panics.
    fn sub(self, rhs: SeqNumber) -> usize {
        self.0.wrapping_sub(rhs.0) as usize
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SeqNumber {
    /// Serial-number order: `self` is greater when it is ahead of `other`
    /// by less than 2^31. (Not transitive over the whole space, as RFC 1982
    /// warns; the stack only compares numbers inside one window.)
    fn cmp(&self, other: &SeqNumber) -> Ordering {
        (self.0.wrapping_sub(other.0) as i32).cmp(&0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_wraps() {
        let a = SeqNumber(u32::MAX - 10);
        let b = a + 20;
        assert_eq!(b, SeqNumber(9));
        assert!(a < b);
        assert!(b > a);
        assert_eq!(b - a, 20);
        assert_eq!(b - 20, a);
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
        assert_eq!(a.distance_from(b), 0);
        assert_eq!(b.distance_from(a), 20);
    }

    #[test]
    fn equal_is_neither_less_nor_greater() {
        let a = SeqNumber(7);
        let b = SeqNumber(7);
        assert_eq!(a.cmp(&b), Ordering::Equal);
        assert_eq!(a.partial_cmp(&b), Some(Ordering::Equal));
    }
}
