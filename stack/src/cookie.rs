//! SYN cookies (RFC 4987 section 3.6): when a listener's half-open queue
//! is full, the SYN|ACK carries all the state the connection needs in its
//! sequence number, so a flood of spoofed SYNs costs no memory, and a real
//! client's ACK (which echoes the cookie + 1) rebuilds the connection.
//!
//! Layout of the 32-bit cookie: 1 bit of a 64-second clock (its parity),
//! 3 bits choosing the client's MSS from a table, and 28 bits of a keyed
//! SipHash (the MAC) of the 4-tuple, the client's ISN, the full clock and
//! the MSS index. A cookie is accepted for the clock slot it names and the
//! one before (64 to 128 s): the parity bit says which of the two, and the
//! full slot inside the MAC rejects anything older. So of the 32 bits, 28
//! are unguessable and the MAC covers every other bit: a blind guess
//! passes with probability 2^-28 (one in 268 million), and a client
//! holding one genuine cookie cannot change the MSS it carries. (Five
//! clock bits and a 24-bit MAC that left the MSS bits out, as before,
//! bought nothing: two slots need one bit.) The window-scale, SACK and
//! timestamp options of the client's SYN are not kept: a cookie connection
//! runs without them, as in the classic scheme.
//!
//! [`SynCookies::sent_recently`] tells whether any cookie was made in the
//! last two slots: only then can an ACK carry a genuine one, so the
//! adapter checks stray ACKs only then.

use crate::seq::SeqNumber;
use crate::tuple::FourTuple;
use crate::wire::{Control, Segment, TcpOptions};
use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The MSS values a cookie can carry (the largest not above the client's
/// is chosen).
const MSS_TABLE: [u16; 8] = [536, 1024, 1220, 1360, 1440, 1460, 4312, 8960];
/// Where the MSS index sits in the cookie (3 bits).
const MSS_SHIFT: u32 = 28;
/// Where the clock's parity bit sits.
const CLOCK_SHIFT: u32 = 31;
/// The MAC's bits.
const MAC_MASK: u32 = (1 << MSS_SHIFT) - 1;
/// Seconds per clock slot.
const SLOT_SECS: u64 = 64;

/// Makes and checks SYN cookies with a secret key.
///
/// It exists so a listener whose half-open queue is full can answer SYNs
/// without keeping state, and tell a genuine cookie ACK from a forged one.
/// Shared (behind an `Arc`) by every RX thread, it also remembers when it
/// last made a cookie.
pub struct SynCookies {
    key: [u8; 16],
    epoch: Instant,
    /// Clock slot of the last cookie made (0: none yet; slots start at 32).
    last_made: AtomicU64,
}

impl Clone for SynCookies {
    fn clone(&self) -> SynCookies {
        SynCookies {
            key: self.key,
            epoch: self.epoch,
            last_made: AtomicU64::new(self.last_made.load(Ordering::Relaxed)),
        }
    }
}

impl std::fmt::Debug for SynCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SynCookies").finish_non_exhaustive()
    }
}

impl SynCookies {
    /// Cookies keyed with `key` (random at start-up), clock from `epoch`.
    pub fn new(key: [u8; 16], epoch: Instant) -> SynCookies {
        SynCookies {
            key,
            epoch,
            last_made: AtomicU64::new(0),
        }
    }

    /// True if a cookie was made in this clock slot or the one before: the
    /// only time an ACK can carry a genuine cookie. Stray ACKs need no
    /// check otherwise (no hashing, no chance for a guess).
    pub fn sent_recently(&self, now: Instant) -> bool {
        let last = self.last_made.load(Ordering::Relaxed);
        last != 0 && last + 1 >= self.slot(now)
    }

    fn slot(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() / SLOT_SECS + 32
    }

    /// The MAC: 28 bits of SipHash over everything the cookie stands for.
    fn mac(&self, tuple: &FourTuple, client_isn: SeqNumber, slot: u64, mss_idx: u32) -> u32 {
        let mut h = SipHasher24::new_with_key(&self.key);
        tuple.hash_into(&mut h);
        h.write_u32(client_isn.0);
        h.write_u64(slot);
        h.write_u32(mss_idx);
        (h.finish() as u32) & MAC_MASK
    }

    /// The cookie (our ISN) for a SYN with sequence `client_isn` and MSS
    /// option `client_mss` arriving on `tuple` at `now`.
    pub fn make(
        &self,
        now: Instant,
        tuple: &FourTuple,
        client_isn: SeqNumber,
        client_mss: Option<u16>,
    ) -> SeqNumber {
        let mss = client_mss.unwrap_or(536);
        let idx = MSS_TABLE.iter().rposition(|m| *m <= mss).unwrap_or(0) as u32;
        let slot = self.slot(now);
        if self.last_made.load(Ordering::Relaxed) != slot {
            self.last_made.store(slot, Ordering::Relaxed);
        }
        let v = ((slot as u32 & 1) << CLOCK_SHIFT)
            | (idx << MSS_SHIFT)
            | self.mac(tuple, client_isn, slot, idx);
        SeqNumber(v)
    }

    /// Checks the ACK of a cookie SYN|ACK: `ack` is the client's segment
    /// (SEG.SEQ = client ISN + 1, SEG.ACK = cookie + 1). Returns the MSS the
    /// cookie carries when it is genuine and fresh.
    pub fn check(&self, now: Instant, tuple: &FourTuple, ack: &Segment) -> Option<u16> {
        let ack_no = ack.ack?;
        if ack.control != Control::None {
            return None;
        }
        let cookie = ack_no.0.wrapping_sub(1);
        let client_isn = SeqNumber(ack.seq.0.wrapping_sub(1));
        let now_slot = self.slot(now);
        let parity = u64::from(cookie >> CLOCK_SHIFT);
        let slot = [now_slot, now_slot - 1]
            .into_iter()
            .find(|s| s & 1 == parity)?;
        let idx = (cookie >> MSS_SHIFT) & 0x7;
        if self.mac(tuple, client_isn, slot, idx) != cookie & MAC_MASK {
            return None;
        }
        MSS_TABLE.get(idx as usize).copied()
    }

    /// The window a cookie SYN|ACK advertises (unscaled: the cookie
    /// cannot remember a window scale); the connection the cookie opens
    /// takes it as what it advertised.
    pub const WINDOW: u16 = u16::MAX;

    /// The MSS a cookie made for a SYN with MSS option `client_mss`
    /// stands for (the largest of the cookie's table not above it): what
    /// [`SynCookies::check`] gives back for its ACK.
    pub fn cookie_mss(client_mss: Option<u16>) -> u16 {
        let mss = client_mss.unwrap_or(536);
        MSS_TABLE
            .iter()
            .rev()
            .find(|m| **m <= mss)
            .copied()
            .unwrap_or(MSS_TABLE[0])
    }

    /// Answers `syn` (a SYN for `tuple`, received at `now`) statelessly:
    /// the SYN|ACK whose ISN is a fresh cookie, advertising `mss` and
    /// [`SynCookies::WINDOW`] and no other option (a cookie has no room to
    /// remember them). The adapter sends it as it is; the ACK that carries
    /// the cookie back opens the connection through
    /// [`crate::Connection::accept_cookie`].
    pub fn answer(&self, now: Instant, tuple: &FourTuple, syn: &Segment, mss: u16) -> Segment {
        let cookie = self.make(now, tuple, syn.seq, syn.options.mss);
        SynCookies::syn_ack(syn, cookie, mss, SynCookies::WINDOW)
    }

    /// The stateless SYN|ACK answering `syn` with cookie `cookie`,
    /// advertising our `mss` and an unscaled `window`.
    fn syn_ack(syn: &Segment, cookie: SeqNumber, mss: u16, window: u16) -> Segment {
        Segment {
            src_port: syn.dst_port,
            dst_port: syn.src_port,
            seq: cookie,
            ack: Some(SeqNumber(syn.seq.0.wrapping_add(1))),
            control: Control::Syn,
            psh: false,
            window,
            options: TcpOptions {
                mss: Some(mss),
                ..TcpOptions::default()
            },
            payload: crate::Payload::new(),
        }
    }

    /// The SYN a cookie ACK stands for (client ISN, the MSS the cookie
    /// carried, no other option), to open the connection from.
    pub fn rebuilt_syn(ack: &Segment, mss: u16) -> Segment {
        Segment {
            src_port: ack.src_port,
            dst_port: ack.dst_port,
            seq: SeqNumber(ack.seq.0.wrapping_sub(1)),
            ack: None,
            control: Control::Syn,
            psh: false,
            window: ack.window,
            options: TcpOptions {
                mss: Some(mss),
                ..TcpOptions::default()
            },
            payload: crate::Payload::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, SocketAddr};
    use std::time::Duration;

    fn tuple() -> FourTuple {
        FourTuple {
            local: SocketAddr::new(IpAddr::from([10, 0, 0, 2]), 80),
            remote: SocketAddr::new(IpAddr::from([10, 0, 0, 1]), 40000),
        }
    }

    fn ack_for(cookie: SeqNumber, client_isn: u32) -> Segment {
        Segment {
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(client_isn.wrapping_add(1)),
            ack: Some(SeqNumber(cookie.0.wrapping_add(1))),
            control: Control::None,
            psh: false,
            window: 502,
            options: TcpOptions::default(),
            payload: crate::Payload::new(),
        }
    }

    #[test]
    fn genuine_cookie_is_accepted_and_carries_the_mss() {
        let t0 = Instant::now();
        let c = SynCookies::new([9; 16], t0);
        let cookie = c.make(t0, &tuple(), SeqNumber(1000), Some(1460));
        assert_eq!(c.check(t0, &tuple(), &ack_for(cookie, 1000)), Some(1460));
        let cookie = c.make(t0, &tuple(), SeqNumber(7), Some(1400));
        assert_eq!(c.check(t0, &tuple(), &ack_for(cookie, 7)), Some(1360));
    }

    #[test]
    fn cookie_expires_after_two_slots() {
        let t0 = Instant::now();
        let c = SynCookies::new([9; 16], t0);
        let cookie = c.make(t0, &tuple(), SeqNumber(1000), Some(1460));
        let later = t0 + Duration::from_secs(SLOT_SECS + 1);
        assert_eq!(c.check(later, &tuple(), &ack_for(cookie, 1000)), Some(1460));
        let too_late = t0 + Duration::from_secs(2 * SLOT_SECS + 1);
        assert_eq!(c.check(too_late, &tuple(), &ack_for(cookie, 1000)), None);
    }

    #[test]
    fn forged_or_misdirected_acks_are_refused() {
        let t0 = Instant::now();
        let c = SynCookies::new([9; 16], t0);
        let cookie = c.make(t0, &tuple(), SeqNumber(1000), Some(1460));
        assert_eq!(
            c.check(t0, &tuple(), &ack_for(SeqNumber(cookie.0 ^ 1), 1000)),
            None
        );
        assert_eq!(
            c.check(t0, &tuple(), &ack_for(cookie, 1001)),
            None,
            "other client ISN"
        );
        let mut other = tuple();
        other.remote = SocketAddr::new(IpAddr::from([10, 0, 0, 9]), 40000);
        assert_eq!(
            c.check(t0, &other, &ack_for(cookie, 1000)),
            None,
            "other tuple"
        );
        let other_key = SynCookies::new([8; 16], t0);
        assert_eq!(other_key.check(t0, &tuple(), &ack_for(cookie, 1000)), None);
        // Guessing: a million random cookies let very few through (2^-28 each).
        let mut hits = 0;
        for g in 0..1_000_000u32 {
            if c.check(
                t0,
                &tuple(),
                &ack_for(SeqNumber(g.wrapping_mul(2_654_435_761)), 1000),
            )
            .is_some()
            {
                hits += 1;
            }
        }
        assert!(hits <= 2, "{hits}");
    }

    /// Issue 15: the MAC covers the MSS bits too, so a client with one
    /// genuine cookie cannot pick another MSS by flipping them.
    #[test]
    fn the_mac_covers_the_mss_index() {
        let t0 = Instant::now();
        let c = SynCookies::new([9; 16], t0);
        let cookie = c.make(t0, &tuple(), SeqNumber(1000), Some(536));
        assert_eq!(c.check(t0, &tuple(), &ack_for(cookie, 1000)), Some(536));
        for k in 1..8u32 {
            let other = SeqNumber(cookie.0 ^ (k << MSS_SHIFT));
            assert_eq!(
                c.check(t0, &tuple(), &ack_for(other, 1000)),
                None,
                "MSS bits flipped by {k}"
            );
        }
    }

    #[test]
    fn syn_ack_and_rebuilt_syn_mirror_the_handshake() {
        let syn = Segment {
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(u32::MAX),
            ack: None,
            control: Control::Syn,
            psh: false,
            window: 64240,
            options: TcpOptions::default(),
            payload: crate::Payload::new(),
        };
        let sa = SynCookies::syn_ack(&syn, SeqNumber(77), 1460, 65535);
        assert_eq!((sa.src_port, sa.dst_port), (80, 40000));
        assert_eq!(sa.ack, Some(SeqNumber(0)), "wraps");
        assert_eq!(sa.options.mss, Some(1460));
        let ack = ack_for(SeqNumber(77), u32::MAX);
        let rebuilt = SynCookies::rebuilt_syn(&ack, 1220);
        assert_eq!(rebuilt.seq, SeqNumber(u32::MAX));
        assert_eq!(rebuilt.control, Control::Syn);
        assert_eq!(rebuilt.options.mss, Some(1220));
    }
}
