//! The dispatcher: which back-end gets each request, what is in flight
//! where, and the retry of a failed back-end's work.

use super::backend::{self, Handler};
use super::ipc::{FromBackend, Job, Reply, Work};
use crate::stats::Registry;
use crossbeam_channel::{unbounded, Sender};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// How a request's back-end is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    /// Strict cyclic order over the live back-ends.
    RoundRobin,
    /// The live back-end with the fewest requests in flight.
    LeastBusy,
}

impl Balance {
    /// Parses the name used on the command line.
    pub fn from_name(s: &str) -> Option<Balance> {
        match s {
            "round-robin" => Some(Balance::RoundRobin),
            "least-busy" => Some(Balance::LeastBusy),
            _ => None,
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastBusy => "least-busy",
        }
    }
}

struct Slot {
    jobs: Option<Sender<Job>>,
    in_flight: usize,
}

/// Owned by the distributor thread (shared with its forwarders through a
/// mutex that only that thread takes).
pub struct Dispatcher {
    slots: Vec<Slot>,
    balance: Balance,
    next: usize,
    next_id: u64,
    in_flight: HashMap<u64, (usize, Job)>,
    waiting: VecDeque<Job>,
    reply_to: vnic_adapter::BellSender<FromBackend>,
    registry: Arc<Registry>,
    handler: Handler,
}

impl Dispatcher {
    /// A dispatcher over `m` back-ends running `handler`, replies going to
    /// `reply_to`; starts the back-end threads.
    pub fn start(
        m: usize,
        balance: Balance,
        handler: Handler,
        reply_to: impl Into<vnic_adapter::BellSender<FromBackend>>,
        registry: Arc<Registry>,
    ) -> std::io::Result<Dispatcher> {
        let reply_to = reply_to.into();
        let mut d = Dispatcher {
            slots: (0..m)
                .map(|_| Slot {
                    jobs: None,
                    in_flight: 0,
                })
                .collect(),
            balance,
            next: 0,
            next_id: 1,
            in_flight: HashMap::new(),
            waiting: VecDeque::new(),
            reply_to,
            registry,
            handler,
        };
        for k in 0..m {
            d.start_backend(k)?;
        }
        Ok(d)
    }

    fn start_backend(&mut self, k: usize) -> std::io::Result<()> {
        let (tx, rx) = unbounded();
        backend::spawn(k, rx, self.handler.clone())?;
        self.slots[k].jobs = Some(tx);
        if let Some(b) = self.registry.backends.get(k) {
            b.down.store(false, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Number of back-ends (up or down).
    pub fn backends(&self) -> usize {
        self.slots.len()
    }

    /// Sends one request of connection `conn` (its `seq`-th) to a back-end.
    pub fn submit(&mut self, conn: u64, seq: u64, work: Work) {
        let id = self.next_id;
        self.next_id += 1;
        let job = Job {
            id,
            conn,
            seq,
            work,
            reply_to: self.reply_to.clone(),
        };
        self.send(job);
    }

    fn pick(&mut self) -> Option<usize> {
        let n = self.slots.len();
        let up = |s: &Slot| s.jobs.is_some();
        let k = match self.balance {
            Balance::RoundRobin => (0..n)
                .map(|i| (self.next + i) % n)
                .find(|&k| up(&self.slots[k]))?,
            Balance::LeastBusy => (0..n)
                .map(|i| (self.next + i) % n)
                .filter(|&k| up(&self.slots[k]))
                .min_by_key(|&k| self.slots[k].in_flight)?,
        };
        self.next = (k + 1) % n;
        Some(k)
    }

    fn send(&mut self, job: Job) {
        loop {
            let Some(k) = self.pick() else {
                // Nobody is up: keep it until a back-end comes back.
                self.waiting.push_back(job);
                return;
            };
            let Some(tx) = self.slots[k].jobs.as_ref() else {
                continue;
            };
            if tx.send(job.clone()).is_err() {
                // The thread is gone without a word: treat it as failed.
                self.fail(k);
                continue;
            }
            self.slots[k].in_flight += 1;
            if let Some(b) = self.registry.backends.get(k) {
                b.in_flight.fetch_add(1, Ordering::Relaxed);
            }
            self.in_flight.insert(job.id, (k, job));
            return;
        }
    }

    /// Takes a reply: `Some` the first time a job is answered, `None` for
    /// a late duplicate (the job was retried elsewhere and answered already).
    pub fn on_reply(&mut self, r: Reply) -> Option<Reply> {
        let (k, _) = self.in_flight.remove(&r.id)?;
        self.slots[k].in_flight = self.slots[k].in_flight.saturating_sub(1);
        if let Some(b) = self.registry.backends.get(k) {
            b.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(b) = self.registry.backends.get(r.backend) {
            b.requests.fetch_add(1, Ordering::Relaxed);
        }
        Some(r)
    }

    /// Back-end `k` failed: it leaves the rotation and everything it had
    /// in flight goes again to the others.
    pub fn fail(&mut self, k: usize) {
        let Some(slot) = self.slots.get_mut(k) else {
            return;
        };
        slot.jobs = None;
        slot.in_flight = 0;
        if let Some(b) = self.registry.backends.get(k) {
            b.down.store(true, Ordering::Relaxed);
            b.in_flight.store(0, Ordering::Relaxed);
        }
        let mut retry: Vec<Job> = Vec::new();
        self.in_flight.retain(|_, (owner, job)| {
            if *owner == k {
                retry.push(job.clone());
                false
            } else {
                true
            }
        });
        retry.sort_by_key(|j| j.id);
        for job in retry {
            self.send(job);
        }
    }

    /// `vnic ctl backend K up|down`.
    pub fn set_up(&mut self, k: usize, up: bool) -> Result<(), String> {
        if k >= self.slots.len() {
            return Err(format!(
                "back-end {k} does not exist (back-ends: 0..{})",
                self.slots.len().saturating_sub(1)
            ));
        }
        if !up {
            self.fail(k);
            return Ok(());
        }
        if self.slots[k].jobs.is_none() {
            self.start_backend(k).map_err(|e| e.to_string())?;
            while let Some(job) = self.waiting.pop_front() {
                self.send(job);
            }
        }
        Ok(())
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::Receiver;
    use std::time::Duration;

    fn registry(m: usize) -> Arc<Registry> {
        Arc::new(Registry::new("distributor", "round-robin", 1).with_backends(m))
    }

    /// A handler whose back-end k sleeps `delays[k]` ms and echoes.
    fn slow_echo(delays: Vec<u64>) -> Handler {
        Arc::new(move |k, w| {
            std::thread::sleep(Duration::from_millis(delays[k]));
            match w {
                Work::Echo(b) => (b.clone(), false),
                _ => (Vec::new(), false),
            }
        })
    }

    fn collect(d: &mut Dispatcher, rx: &Receiver<FromBackend>, n: usize) -> Vec<Reply> {
        let mut out = Vec::new();
        while out.len() < n {
            match rx
                .recv_timeout(Duration::from_secs(5))
                .expect("reply in time")
            {
                FromBackend::Reply(r) => {
                    if let Some(r) = d.on_reply(r) {
                        out.push(r);
                    }
                }
                FromBackend::Failed { backend } => d.fail(backend),
            }
        }
        out
    }

    #[test]
    fn round_robin_is_strict_order() {
        let (tx, rx) = unbounded();
        let reg = registry(4);
        let mut d = Dispatcher::start(
            4,
            Balance::RoundRobin,
            slow_echo(vec![0; 4]),
            tx,
            reg.clone(),
        )
        .expect("start");
        for i in 0..8 {
            d.submit(1, i, Work::Echo(vec![i as u8]));
        }
        let mut got = collect(&mut d, &rx, 8);
        got.sort_by_key(|r| r.seq);
        let backends: Vec<usize> = got.iter().map(|r| r.backend).collect();
        assert_eq!(backends, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        let served: Vec<u64> = reg.backend_snapshot().iter().map(|b| b.requests).collect();
        assert_eq!(served, vec![2, 2, 2, 2]);
    }

    #[test]
    fn least_busy_avoids_a_slow_backend() {
        let (tx, rx) = unbounded();
        let mut d = Dispatcher::start(
            3,
            Balance::LeastBusy,
            slow_echo(vec![400, 0, 0]),
            tx,
            registry(3),
        )
        .expect("start");
        // One request at a time: back-end 0 gets the first and then stays
        // busy; the fast ones serve everything after it.
        d.submit(1, 0, Work::Echo(vec![0]));
        let mut later = Vec::new();
        for i in 1..20 {
            d.submit(1, i, Work::Echo(vec![i as u8]));
            later.extend(collect(&mut d, &rx, 1));
        }
        later.extend(collect(&mut d, &rx, 1));
        let on_slow = later
            .iter()
            .filter(|r| r.backend == 0 && r.seq != 0)
            .count();
        assert_eq!(on_slow, 0, "the slow back-end got only its first request");
        assert_eq!(later.len(), 20);
    }

    #[test]
    fn failed_backend_work_is_retried_elsewhere() {
        let (tx, rx) = unbounded();
        // Back-end 1 panics on every job.
        let handler: Handler = Arc::new(|k, w| {
            assert!(k != 1, "back-end 1 is broken");
            match w {
                Work::Echo(b) => (b.clone(), false),
                _ => (Vec::new(), false),
            }
        });
        let reg = registry(3);
        let mut d =
            Dispatcher::start(3, Balance::RoundRobin, handler, tx, reg.clone()).expect("start");
        for i in 0..30 {
            d.submit(7, i, Work::Echo(vec![i as u8]));
        }
        let mut got = collect(&mut d, &rx, 30);
        got.sort_by_key(|r| r.seq);
        assert_eq!(got.len(), 30, "nothing lost");
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.bytes, vec![i as u8]);
            assert_ne!(r.backend, 1);
        }
        assert_eq!(reg.backend_snapshot()[1].state, "down");
        assert_eq!(d.in_flight(), 0);
        // It comes back when told.
        d.set_up(1, true).expect("up");
        assert_eq!(reg.backend_snapshot()[1].state, "up");
    }

    #[test]
    fn backend_taken_down_loses_nothing_and_all_down_waits() {
        let (tx, rx) = unbounded();
        let mut d = Dispatcher::start(
            2,
            Balance::RoundRobin,
            slow_echo(vec![50, 50]),
            tx,
            registry(2),
        )
        .expect("start");
        for i in 0..10 {
            d.submit(1, i, Work::Echo(vec![i as u8]));
        }
        d.set_up(0, false).expect("down");
        d.set_up(1, false).expect("down");
        d.submit(1, 10, Work::Echo(vec![10]));
        d.set_up(1, true).expect("up");
        let mut got = collect(&mut d, &rx, 11);
        got.sort_by_key(|r| r.seq);
        let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (0..11).collect::<Vec<u64>>());
        assert!(d.set_up(5, true).is_err());
    }
}
