//! The clock a processor reads: the real one, or a virtual one that
//! `vnic replay` moves by hand. The stack is sans-IO (it is handed `now`),
//! so giving the processors a clock they ask, instead of
//! `Instant::now()`, is all a replay needs to run a captured session again
//! with the times it had.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

thread_local! {
    static WALL: Cell<Option<SystemTime>> = const { Cell::new(None) };
}

/// The wall-clock time an app shows (an HTTP `Date`): the system's, or,
/// in a thread replaying a trace, the time the trace shows for the turn
/// being replayed ([`set_wall`]).
pub fn wall_now() -> SystemTime {
    WALL.with(Cell::get).unwrap_or_else(SystemTime::now)
}

/// Sets this thread's wall clock for [`wall_now`] (a replay's), or with
/// `None` gives it back to the system's.
pub fn set_wall(at: Option<SystemTime>) {
    WALL.with(|w| w.set(at));
}

/// Where a processor's `now` comes from.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system's monotonic clock (`Instant::now()`): every live vnic.
    #[default]
    Real,
    /// A clock that moves only when told ([`VirtualClock::advance_to`]):
    /// the replay's.
    Virtual(Arc<VirtualClock>),
}

impl Clock {
    /// The time now, by this clock.
    #[inline]
    pub fn now(&self) -> Instant {
        match self {
            Clock::Real => Instant::now(),
            Clock::Virtual(v) => v.now(),
        }
    }
}

/// A clock that stands still until moved: `base` plus a count of
/// nanoseconds. It never goes back: moving it to an earlier time leaves it
/// where it is, as a monotonic clock would.
#[derive(Debug)]
pub struct VirtualClock {
    base: Instant,
    nanos: AtomicU64,
}

impl VirtualClock {
    /// A clock reading `base` until moved.
    pub fn new(base: Instant) -> VirtualClock {
        VirtualClock {
            base,
            nanos: AtomicU64::new(0),
        }
    }

    /// The instant this clock started at (its time zero).
    pub fn base(&self) -> Instant {
        self.base
    }

    /// The time now: the base plus how far the clock was moved.
    pub fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    /// How far from its base the clock stands.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    /// Moves the clock to `since_base` after its base, unless it already
    /// stands later (it never goes back). Returns the time it reads now.
    pub fn advance_to(&self, since_base: Duration) -> Instant {
        let want = u64::try_from(since_base.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_max(want, Ordering::Relaxed);
        self.now()
    }

    /// Moves the clock to `at`, unless it already stands later; an
    /// instant before the base counts as the base.
    pub fn advance_to_instant(&self, at: Instant) -> Instant {
        self.advance_to(at.saturating_duration_since(self.base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_clock_stands_still_until_moved() {
        let base = Instant::now();
        let v = Arc::new(VirtualClock::new(base));
        let c = Clock::Virtual(v.clone());
        assert_eq!(c.now(), base);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(c.now(), base, "real time passing moves nothing");
        assert_eq!(
            v.advance_to(Duration::from_millis(250)),
            base + Duration::from_millis(250)
        );
        assert_eq!(c.now(), base + Duration::from_millis(250));
        assert_eq!(v.elapsed(), Duration::from_millis(250));
    }

    #[test]
    fn a_virtual_clock_never_goes_back() {
        let base = Instant::now();
        let v = VirtualClock::new(base);
        v.advance_to(Duration::from_secs(3));
        assert_eq!(
            v.advance_to(Duration::from_secs(1)),
            base + Duration::from_secs(3)
        );
        assert_eq!(
            v.advance_to_instant(base - Duration::from_millis(1).min(base.elapsed())),
            base + Duration::from_secs(3)
        );
        assert_eq!(
            v.advance_to_instant(base + Duration::from_nanos(3_000_000_001)),
            base + Duration::from_nanos(3_000_000_001)
        );
    }

    #[test]
    fn the_wall_clock_is_the_replays_while_set_in_this_thread() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        set_wall(Some(at));
        assert_eq!(wall_now(), at);
        let other = std::thread::spawn(wall_now).join().expect("thread");
        assert!(other > at, "another thread keeps the system's");
        set_wall(None);
        assert!(wall_now() > at);
    }

    #[test]
    fn the_real_clock_moves() {
        let c = Clock::Real;
        let a = c.now();
        std::thread::sleep(Duration::from_millis(1));
        assert!(c.now() > a);
    }
}
