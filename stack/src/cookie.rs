//! SYN cookies (RFC 4987 section 3.6): when a listener's half-open queue
//! is full, the SYN|ACK carries all the state the connection needs in its
//! sequence number, so a flood of spoofed SYNs costs no memory, and a real
//! client's ACK (which echoes the cookie + 1) rebuilds the connection.
//!
//! Layout of the 32-bit cookie: 5 bits of a 64-second clock, 3 bits
//! choosing the client's MSS from a table, 24 bits of a keyed SipHash of
//! the 4-tuple, the client's ISN and the full clock. A cookie is accepted
//! for the clock slot it names and the one before (64 to 128 s). The
//! window-scale, SACK and timestamp options of the client's SYN are not
//! kept: a cookie connection runs without them, as in the classic scheme.

use crate::seq::SeqNumber;
use crate::tuple::FourTuple;
use crate::wire::{Control, Segment, TcpOptions};
use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::time::Instant;

/// The MSS values a cookie can carry (the largest not above the client's
/// is chosen).
const MSS_TABLE: [u16; 8] = [536, 1024, 1220, 1360, 1440, 1460, 4312, 8960];
/// Seconds per clock slot.
const SLOT_SECS: u64 = 64;

/// Makes and checks SYN cookies with a secret key.
#[derive(Clone)]
pub struct SynCookies {
    key: [u8; 16],
    epoch: Instant,
}

impl std::fmt::Debug for SynCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SynCookies").finish_non_exhaustive()
    }
}

impl SynCookies {
    /// Cookies keyed with `key` (random at start-up), clock from `epoch`.
    pub fn new(key: [u8; 16], epoch: Instant) -> SynCookies {
        SynCookies { key, epoch }
    }

    fn slot(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() / SLOT_SECS + 32
    }

    fn hash(&self, tuple: &FourTuple, client_isn: SeqNumber, slot: u64) -> u32 {
        let mut h = SipHasher24::new_with_key(&self.key);
        tuple.hash_into(&mut h);
        h.write_u32(client_isn.0);
        h.write_u64(slot);
        (h.finish() as u32) & 0x00ff_ffff
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
        let v = ((slot as u32 & 0x1f) << 27) | (idx << 24) | self.hash(tuple, client_isn, slot);
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
        let c_slot = u64::from(cookie >> 27);
        let slot = [now_slot, now_slot - 1]
            .into_iter()
            .find(|s| s & 0x1f == c_slot)?;
        if self.hash(tuple, client_isn, slot) != cookie & 0x00ff_ffff {
            return None;
        }
        MSS_TABLE.get(((cookie >> 24) & 0x7) as usize).copied()
    }

    /// The stateless SYN|ACK answering `syn` with cookie `cookie`,
    /// advertising our `mss` and an unscaled `window`.
    pub fn syn_ack(syn: &Segment, cookie: SeqNumber, mss: u16, window: u16) -> Segment {
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
        // Guessing: a million random cookies let very few through (2^-24 each).
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
