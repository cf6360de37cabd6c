//! Initial sequence numbers per RFC 6528.

use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use siphasher::sip::SipHasher24;

use crate::seq::SeqNumber;
use crate::tuple::FourTuple;

/// Chooses ISNs as `M + F(localip, localport, remoteip, remoteport, key)`.
///
/// It exists so that an off-path attacker cannot guess our ISN (the keyed
/// hash `F`), while a new incarnation of the same 4-tuple still starts above
/// the old one (the 4 µs clock `M`), as RFC 6528 requires.
#[derive(Clone)]
pub struct IsnGenerator {
    key: [u8; 16],
    epoch: Instant,
    /// ISNs given in advance, per 4-tuple in the order of their
    /// connections (a replay takes them from the trace's SYN|ACKs):
    /// used first, the keyed clock after.
    script: Option<Arc<Mutex<IsnScript>>>,
}

/// ISNs a replay gives in advance, per 4-tuple, first one first.
pub type IsnScript = HashMap<FourTuple, VecDeque<SeqNumber>>;

impl std::fmt::Debug for IsnGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never print it.
        f.debug_struct("IsnGenerator").finish_non_exhaustive()
    }
}

impl IsnGenerator {
    /// A generator with a secret `key` (pick it at random at start-up) and
    /// the instant its 4 µs clock counts from.
    pub fn new(key: [u8; 16], epoch: Instant) -> Self {
        IsnGenerator {
            key,
            epoch,
            script: None,
        }
    }

    /// A generator that answers from `script` first: the ISN a trace
    /// shows for each connection of a 4-tuple, in order, so a replay
    /// opens every connection with the sequence numbers it had (the
    /// clock part `M` counts 4 µs, finer than a replay can place a SYN).
    /// A 4-tuple the script has no (more) ISN for gets `new`'s.
    pub fn scripted(key: [u8; 16], epoch: Instant, script: IsnScript) -> Self {
        IsnGenerator {
            key,
            epoch,
            script: Some(Arc::new(Mutex::new(script))),
        }
    }

    /// The ISN for a connection on `tuple` opened at `now`.
    pub fn isn(&self, now: Instant, tuple: &FourTuple) -> SeqNumber {
        if let Some(script) = &self.script {
            let mut s = script.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(isn) = s.get_mut(tuple).and_then(VecDeque::pop_front) {
                return isn;
            }
        }
        let ticks = now.saturating_duration_since(self.epoch).as_micros() / 4;
        let m = ticks as u32; // the clock wraps every ~4.8 hours, as intended
        let mut h = SipHasher24::new_with_key(&self.key);
        tuple.hash_into(&mut h);
        let f = h.finish() as u32;
        SeqNumber(m.wrapping_add(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;

    fn tuple(port: u16) -> FourTuple {
        FourTuple {
            local: "10.0.0.1:80".parse().unwrap(),
            remote: SocketAddr::new("10.0.0.2".parse().unwrap(), port),
        }
    }

    #[test]
    fn isn_advances_with_4us_clock() {
        let t0 = Instant::now();
        let g = IsnGenerator::new([7; 16], t0);
        let a = g.isn(t0, &tuple(1234));
        let b = g.isn(t0 + Duration::from_micros(400), &tuple(1234));
        assert_eq!(b - a, 100);
    }

    #[test]
    fn isn_depends_on_tuple_and_key() {
        let t0 = Instant::now();
        let g = IsnGenerator::new([7; 16], t0);
        let g2 = IsnGenerator::new([8; 16], t0);
        assert_ne!(g.isn(t0, &tuple(1)), g.isn(t0, &tuple(2)));
        assert_ne!(g.isn(t0, &tuple(1)), g2.isn(t0, &tuple(1)));
    }

    #[test]
    fn a_script_gives_its_isns_in_order_then_the_clock() {
        let t0 = Instant::now();
        let mut script = IsnScript::new();
        script.insert(tuple(5), [SeqNumber(10), SeqNumber(20)].into());
        let g = IsnGenerator::scripted([7; 16], t0, script);
        let plain = IsnGenerator::new([7; 16], t0);
        assert_eq!(g.isn(t0, &tuple(5)), SeqNumber(10));
        assert_eq!(g.isn(t0, &tuple(5)), SeqNumber(20));
        assert_eq!(g.isn(t0, &tuple(5)), plain.isn(t0, &tuple(5)));
        assert_eq!(g.isn(t0, &tuple(6)), plain.isn(t0, &tuple(6)));
    }
}
