//! Link impairment: loss, duplication, reordering, delay and jitter applied
//! to frames on their way in and out, so a user can watch TCP cope with a
//! bad link on purpose (`vnic up --impair loss=5%,reorder=10%,...`).
//!
//! Like smoltcp's fault injector it is middleware around the frame device:
//! [`ImpairedSource`] wraps the TAP's receive side, [`ImpairedSink`] its
//! send side; the adapter and the processors do not know it is there. Each
//! direction has its own random generator seeded from `seed`, so the same
//! seed and the same frame sequence give the same fate to every frame.
//! Delayed and held-back frames wait in a queue ordered by due time and
//! are released by a timer (the RX poll deadline, or the TX release
//! thread), never by sleeping in the RX path.

use crate::emit::FrameSink;
use crate::tap::FrameSource;
use parking_lot::{Condvar, Mutex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `--impair` asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct ImpairSpec {
    /// Probability (0..=1) that a frame is dropped.
    pub loss: f64,
    /// Probability that a frame is held back so later frames overtake it.
    pub reorder: f64,
    /// Probability that a frame is sent twice.
    pub duplicate: f64,
    /// Delay added to every frame.
    pub delay: Duration,
    /// Random extra delay, uniform in 0..=jitter.
    pub jitter: Duration,
    /// Seed of the random generators.
    pub seed: u64,
}

impl Default for ImpairSpec {
    fn default() -> Self {
        ImpairSpec {
            loss: 0.0,
            reorder: 0.0,
            duplicate: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            seed: 1,
        }
    }
}

impl ImpairSpec {
    /// Parses `loss=5%,reorder=10%,duplicate=2%,delay=2ms,jitter=1ms,seed=7`
    /// (any subset, any order).
    pub fn parse(s: &str) -> Result<ImpairSpec, String> {
        let mut spec = ImpairSpec::default();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not KEY=VALUE (e.g. loss=5%)"))?;
            match k {
                "loss" => spec.loss = percent(k, v)?,
                "reorder" => spec.reorder = percent(k, v)?,
                "duplicate" => spec.duplicate = percent(k, v)?,
                "delay" => spec.delay = millis(k, v)?,
                "jitter" => spec.jitter = millis(k, v)?,
                "seed" => {
                    spec.seed = v
                        .parse()
                        .map_err(|_| format!("seed {v:?} must be a whole number"))?
                }
                _ => {
                    return Err(format!(
                    "unknown impairment {k:?}: use loss, reorder, duplicate, delay, jitter, seed"
                ))
                }
            }
        }
        Ok(spec)
    }

    /// True if frames must wait in a queue (delay, jitter or reordering).
    pub fn queues(&self) -> bool {
        self.reorder > 0.0 || !self.delay.is_zero() || !self.jitter.is_zero()
    }
}

fn percent(k: &str, v: &str) -> Result<f64, String> {
    let n = v.strip_suffix('%').unwrap_or(v);
    match n.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p / 100.0),
        _ => Err(format!("{k}={v}: give a percentage from 0% to 100%")),
    }
}

/// A delay or jitter: vnic's one duration syntax
/// ([`crate::duration::parse_duration`]), from 0 to 10 s.
fn millis(k: &str, v: &str) -> Result<Duration, String> {
    match crate::duration::parse_duration(v) {
        Ok(d) if d <= Duration::from_secs(10) => Ok(d),
        _ => Err(format!("{k}={v}: give a duration from 0 to 10s (e.g. 2ms)")),
    }
}

impl fmt::Display for ImpairSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loss={}%,reorder={}%,duplicate={}%,delay={}ms,jitter={}ms,seed={}",
            self.loss * 100.0,
            self.reorder * 100.0,
            self.duplicate * 100.0,
            self.delay.as_secs_f64() * 1e3,
            self.jitter.as_secs_f64() * 1e3,
            self.seed
        )
    }
}

/// Frames each impairment touched (both directions together).
#[derive(Debug, Default)]
pub struct ImpairStats {
    /// Frames dropped.
    pub lost: AtomicU64,
    /// Extra copies sent.
    pub duplicated: AtomicU64,
    /// Frames held back to be overtaken.
    pub reordered: AtomicU64,
}

impl ImpairStats {
    /// Zeroes the counters (`vnic ctl stats reset`).
    pub fn reset(&self) {
        for c in [&self.lost, &self.duplicated, &self.reordered] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// How long a held-back frame waits beyond its normal delay.
const REORDER_HOLD: Duration = Duration::from_millis(1);

/// The fate of frames in one direction: a random generator and a queue
/// of frames waiting for their due time.
pub struct Impairer {
    spec: ImpairSpec,
    rng: StdRng,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    frames: std::collections::HashMap<u64, Vec<u8>>,
    next_id: u64,
    stats: Arc<ImpairStats>,
}

impl Impairer {
    /// An impairer for one direction (`direction` keeps the two streams of
    /// random numbers apart).
    pub fn new(spec: ImpairSpec, direction: u64, stats: Arc<ImpairStats>) -> Impairer {
        let rng = StdRng::seed_from_u64(spec.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ direction);
        Impairer {
            spec,
            rng,
            queue: BinaryHeap::new(),
            frames: std::collections::HashMap::new(),
            next_id: 0,
            stats,
        }
    }

    /// Decides the fate of `frame` arriving at `now`; what survives waits
    /// in the queue until [`Impairer::pop_due`] releases it.
    pub fn push(&mut self, now: Instant, frame: &[u8]) {
        if self.spec.loss > 0.0 && self.rng.gen_bool(self.spec.loss) {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let copies = if self.spec.duplicate > 0.0 && self.rng.gen_bool(self.spec.duplicate) {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut due = now + self.spec.delay;
            if !self.spec.jitter.is_zero() {
                let j = self.rng.gen_range(0..=self.spec.jitter.as_nanos() as u64);
                due += Duration::from_nanos(j);
            }
            if self.spec.reorder > 0.0 && self.rng.gen_bool(self.spec.reorder) {
                self.stats.reordered.fetch_add(1, Ordering::Relaxed);
                due += REORDER_HOLD;
            }
            let id = self.next_id;
            self.next_id += 1;
            self.frames.insert(id, frame.to_vec());
            self.queue.push(Reverse((due, id)));
        }
    }

    /// The next frame whose time has come, in due-time order (ties in
    /// arrival order).
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        let Reverse((due, id)) = *self.queue.peek()?;
        if due > now {
            return None;
        }
        self.queue.pop();
        self.frames.remove(&id)
    }

    /// When the next waiting frame is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((d, _))| *d)
    }
}

/// The receive side of the TAP, impaired.
pub struct ImpairedSource {
    inner: Box<dyn FrameSource>,
    imp: Impairer,
    scratch: Vec<u8>,
}

impl ImpairedSource {
    /// Wraps RX queue `queue`'s `inner` with the impairments of `spec`.
    /// Each queue draws from its own generator (queue 0's is the one a
    /// single-queue vnic has always used), so with `--rx-queues` the
    /// queues do not lose, duplicate and reorder in lockstep.
    pub fn new(
        inner: Box<dyn FrameSource>,
        spec: ImpairSpec,
        queue: usize,
        stats: Arc<ImpairStats>,
    ) -> Self {
        ImpairedSource {
            inner,
            imp: Impairer::new(spec, 1 + 2 * queue as u64, stats),
            scratch: vec![0u8; crate::tap::MAX_FRAME_LEN],
        }
    }
}

impl FrameSource for ImpairedSource {
    fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if let Some(f) = self.imp.pop_due(now) {
                let n = f.len().min(buf.len());
                buf[..n].copy_from_slice(&f[..n]);
                return Ok(Some(n));
            }
            if now >= deadline {
                return Ok(None);
            }
            let until = self.imp.next_due().map_or(deadline, |d| d.min(deadline));
            let wait = until.saturating_duration_since(now);
            if let Some(n) = self.inner.recv_timeout(&mut self.scratch, wait)? {
                let n = n.min(self.scratch.len());
                self.imp.push(Instant::now(), &self.scratch[..n]);
            }
        }
    }
}

struct SinkShared {
    imp: Mutex<Impairer>,
    wake: Condvar,
    stop: AtomicBool,
}

/// The send side of the TAP, impaired. Frames that must wait are written
/// by a release thread when they are due.
pub struct ImpairedSink {
    inner: Arc<dyn FrameSink>,
    shared: Arc<SinkShared>,
    queues: bool,
}

impl ImpairedSink {
    /// Wraps `inner`; starts the release thread if frames can wait.
    pub fn new(
        inner: Arc<dyn FrameSink>,
        spec: ImpairSpec,
        stats: Arc<ImpairStats>,
    ) -> io::Result<Self> {
        let queues = spec.queues();
        let shared = Arc::new(SinkShared {
            imp: Mutex::new(Impairer::new(spec, 2, stats)),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        if queues {
            let (sh, out) = (shared.clone(), inner.clone());
            std::thread::Builder::new()
                .name("vnic-impair-tx".into())
                .spawn(move || release(sh, out))?;
        }
        Ok(ImpairedSink {
            inner,
            shared,
            queues,
        })
    }
}

fn release(sh: Arc<SinkShared>, out: Arc<dyn FrameSink>) {
    let mut imp = sh.imp.lock();
    while !sh.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while let Some(f) = imp.pop_due(now) {
            let _ = out.send_frame(&f);
        }
        match imp.next_due() {
            Some(d) => {
                sh.wake.wait_until(&mut imp, d);
            }
            None => {
                sh.wake.wait_for(&mut imp, Duration::from_millis(200));
            }
        }
    }
}

impl FrameSink for ImpairedSink {
    fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        let mut imp = self.shared.imp.lock();
        let now = Instant::now();
        imp.push(now, frame);
        if !self.queues {
            while let Some(f) = imp.pop_due(now) {
                self.inner.send_frame(&f)?;
            }
        } else {
            self.shared.wake.notify_one();
        }
        Ok(())
    }
}

impl Drop for ImpairedSink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fates(spec: &ImpairSpec, n: usize) -> Vec<Vec<u8>> {
        let mut imp = Impairer::new(spec.clone(), 2, Arc::new(ImpairStats::default()));
        let t0 = Instant::now();
        for i in 0..n {
            imp.push(
                t0 + Duration::from_micros(100 * i as u64),
                &(i as u32).to_be_bytes(),
            );
        }
        let mut out = Vec::new();
        while let Some(f) = imp.pop_due(t0 + Duration::from_secs(60)) {
            out.push(f);
        }
        out
    }

    #[test]
    fn parse_full_spec_and_show_it() {
        let s = ImpairSpec::parse("loss=5%,reorder=10%,duplicate=2%,delay=2ms,jitter=1ms,seed=7")
            .expect("parse");
        assert_eq!(s.loss, 0.05);
        assert_eq!(s.reorder, 0.10);
        assert_eq!(s.duplicate, 0.02);
        assert_eq!(s.delay, Duration::from_millis(2));
        assert_eq!(s.jitter, Duration::from_millis(1));
        assert_eq!(s.seed, 7);
        assert_eq!(
            s.to_string(),
            "loss=5%,reorder=10%,duplicate=2%,delay=2ms,jitter=1ms,seed=7"
        );
    }

    #[test]
    fn parse_errors_are_clear() {
        assert!(ImpairSpec::parse("loss=120%").is_err());
        assert!(ImpairSpec::parse("loss").is_err());
        assert!(ImpairSpec::parse("delay=20").is_err(), "20 s: over 10 s");
        assert!(ImpairSpec::parse("delay=2x").is_err());
        // vnic's one duration syntax: a bare number is seconds.
        assert_eq!(
            ImpairSpec::parse("delay=2").map(|s| s.delay),
            Ok(Duration::from_secs(2))
        );
        assert!(ImpairSpec::parse("wobble=1%").is_err());
    }

    #[test]
    fn same_seed_same_fate() {
        let spec = ImpairSpec::parse("loss=10%,reorder=10%,duplicate=5%,jitter=1ms,seed=7")
            .expect("parse");
        assert_eq!(fates(&spec, 2000), fates(&spec, 2000));
        let other = ImpairSpec {
            seed: 8,
            ..spec.clone()
        };
        assert_ne!(fates(&spec, 2000), fates(&other, 2000));
    }

    /// A source of `n` numbered frames (4 bytes each), then nothing.
    /// Frames numbered from 0 up to the end; how many it gave is shared.
    struct Numbered(Arc<std::sync::atomic::AtomicU32>, u32);

    impl FrameSource for Numbered {
        fn recv_timeout(&mut self, buf: &mut [u8], _: Duration) -> io::Result<Option<usize>> {
            let next = self.0.load(Ordering::Relaxed);
            if next == self.1 {
                return Ok(None);
            }
            buf[..4].copy_from_slice(&next.to_be_bytes());
            self.0.store(next + 1, Ordering::Relaxed);
            Ok(Some(4))
        }
    }

    /// The frame numbers queue `queue`'s impaired source lets through.
    /// Read until every frame went in and a read came back empty: an
    /// empty read alone may only mean the thread was descheduled past
    /// the read's timeout (the list came back cut short on a loaded
    /// machine).
    fn survivors(spec: &ImpairSpec, queue: usize) -> Vec<u32> {
        let stats = Arc::new(ImpairStats::default());
        let fed = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let source = Box::new(Numbered(fed.clone(), 2000));
        let mut src = ImpairedSource::new(source, spec.clone(), queue, stats);
        let mut buf = [0u8; 64];
        let mut out = Vec::new();
        loop {
            match src.recv_timeout(&mut buf, Duration::from_millis(1)) {
                Ok(Some(n)) => {
                    assert_eq!(n, 4);
                    out.push(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
                }
                Ok(None) if fed.load(Ordering::Relaxed) == 2000 => return out,
                Ok(None) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    #[test]
    fn each_rx_queue_draws_its_own_fates() {
        let spec = ImpairSpec::parse("loss=30%,seed=7").expect("parse");
        let q0 = survivors(&spec, 0);
        assert_eq!(q0, survivors(&spec, 0), "same seed, same queue: same fate");
        assert!((1_200..1_600).contains(&q0.len()), "{}", q0.len());
        assert_ne!(q0, survivors(&spec, 1), "queues lose different frames");
    }

    #[test]
    fn rates_are_roughly_what_was_asked() {
        let spec = ImpairSpec::parse("loss=5%,duplicate=2%,seed=3").expect("parse");
        let out = fates(&spec, 20_000);
        // 20000 * (1 - 0.05) * (1 + 0.02) = 19380
        assert!((19_000..19_800).contains(&out.len()), "{}", out.len());
    }

    #[test]
    fn reorder_lets_later_frames_overtake() {
        let spec = ImpairSpec::parse("reorder=20%,seed=1").expect("parse");
        let out = fates(&spec, 1000);
        assert_eq!(out.len(), 1000, "nothing lost");
        let order: Vec<u32> = out
            .iter()
            .map(|f| u32::from_be_bytes([f[0], f[1], f[2], f[3]]))
            .collect();
        let inversions = order.windows(2).filter(|w| w[0] > w[1]).count();
        assert!(inversions > 50, "reordered: {inversions}");
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
    }

    #[test]
    fn delay_holds_frames_until_due() {
        let spec = ImpairSpec::parse("delay=2ms").expect("parse");
        let mut imp = Impairer::new(spec, 1, Arc::new(ImpairStats::default()));
        let t0 = Instant::now();
        imp.push(t0, b"x");
        assert_eq!(imp.pop_due(t0 + Duration::from_millis(1)), None);
        assert_eq!(imp.next_due(), Some(t0 + Duration::from_millis(2)));
        assert_eq!(
            imp.pop_due(t0 + Duration::from_millis(2)),
            Some(b"x".to_vec())
        );
    }
}
