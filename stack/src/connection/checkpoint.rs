//! Process-pair checkpoints (issue 19 part 2, after Tandem NonStop's
//! process pairs): a primary processor runs a connection, its backup keeps
//! a copy made of checkpoints, and when the primary dies the backup's copy
//! takes the connection over. The peer sees a pause, no reset, and no byte
//! lost, duplicated or reordered.
//!
//! The processor checkpoints every connection it serviced after the
//! application ran and **before** `poll_transmit`:
//!
//! ```text
//! let cp = conn.checkpoint(mark);   // what the backup lacks
//! mark = Some(cp.mark());
//! send cp to the backup;            // replica = cp.apply(replica.take())?
//! while let Some(seg) = conn.poll_transmit(now) { .. }
//! ```
//!
//! That order is the invariant that makes the pair lossless: nothing the
//! peer sees (an ACK of its data, a window edge, our data, our FIN) ever
//! leaves before the backup holds the state it reflects. So the peer never
//! believes we hold a byte the backup lacks, and the backup holds every
//! byte of ours the peer may have seen. What the primary did after its
//! last checkpoint is lost with it, and is repaired by TCP itself: data
//! it received and did not acknowledge, the peer sends again; segments it
//! sent, the backup sends again ([`Connection::take_over`]).
//!
//! A checkpoint is the whole connection except the send data the backup
//! already holds ([`SendMark`]); the send bytes it carries are shared
//! with the primary's send buffer, not copied (a bulk transfer hands
//! each byte to the backup once, by reference).

use super::*;
use crate::send_buffer::{SendBuffer, SendTail};

/// How far the send data a backup holds reaches: the sequence number one
/// past the last byte the previous checkpoint carried.
///
/// It exists so the primary sends each byte of its send buffer to the
/// backup once: the next checkpoint carries only the bytes from the mark
/// on. The primary keeps the mark of the checkpoint it sent last
/// ([`Checkpoint::mark`]) and passes it to [`Connection::checkpoint`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SendMark {
    /// The connection's ISS (a mark of another connection is ignored).
    iss: SeqNumber,
    /// One past the last send byte the backup holds.
    end: SeqNumber,
}

/// The state of one connection as its backup must hold it, made by
/// [`Connection::checkpoint`] on the primary and turned back into a
/// connection by [`Checkpoint::apply`] on the backup.
///
/// It exists so a connection survives the death of the processor that
/// runs it (NonStop process pairs): it is a plain value, `Send`, carried
/// from the primary's thread to the backup's. It holds a full clone of
/// the connection (receive buffer, SACK scoreboard, RACK records, timers,
/// congestion controller, counters) except the send data, of which it
/// carries only the bytes the backup lacks (from the primary's
/// [`SendMark`] on).
pub struct Checkpoint {
    /// The connection, its send buffer empty (at the primary's start,
    /// SND.UNA once the SYN is acknowledged).
    conn: Box<Connection>,
    /// Sequence number of the first byte of `tail`.
    from: SeqNumber,
    /// The send bytes from `from` to the end of the queued data, shared
    /// with the primary's send buffer.
    tail: SendTail,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("tuple", &self.conn.tuple)
            .field("state", &self.conn.state)
            .field("send_start", &self.conn.snd.buf.start())
            .field("from", &self.from)
            .field("tail_len", &self.tail.len())
            .finish()
    }
}

/// A checkpoint that cannot be applied to the backup's copy: its send
/// data starts beyond where the copy's ends (a checkpoint in between was
/// lost), or there is no copy and the checkpoint carries only a tail.
///
/// It exists so the backup notices a lost checkpoint instead of building
/// a connection with a hole in its send data. The backup then drops its
/// copy and asks the primary for a full checkpoint (`checkpoint(None)`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error(
    "checkpoint's send data starts at {from} but the backup's copy ends at {}; a full checkpoint is needed",
    held.map_or_else(|| "(no copy)".to_string(), |s| s.to_string())
)]
pub struct CheckpointGap {
    /// Where the backup's send data ended (None: it had no copy, or a
    /// copy of another connection).
    pub held: Option<SeqNumber>,
    /// Where the checkpoint's send data starts.
    pub from: SeqNumber,
}

impl Checkpoint {
    /// What the backup holds once this checkpoint is applied: the mark
    /// the primary passes to its next [`Connection::checkpoint`].
    pub fn mark(&self) -> SendMark {
        SendMark {
            iss: self.conn.snd.iss,
            end: self.from + self.tail.len(),
        }
    }

    /// Bytes of memory the checkpoint holds (the connection's state and
    /// buffers as allocated, plus the send bytes it carries, which it
    /// shares with the primary and keeps alive): what the processor pair
    /// pays to carry it.
    pub fn memory(&self) -> usize {
        self.conn.memory() + self.tail.len()
    }

    /// Send bytes the checkpoint carries (those the backup lacked).
    pub fn send_bytes(&self) -> usize {
        self.tail.len()
    }

    /// True when the checkpoint carries all the queued send data: it
    /// applies without an older copy.
    pub fn is_full(&self) -> bool {
        self.from == self.conn.snd.buf.start()
    }

    /// Rebuilds the connection exactly as the primary had it when the
    /// checkpoint was made, from `older`, the backup's copy (its send
    /// data, released up to the new start, then the new bytes appended).
    /// A full checkpoint needs no copy (and ignores one). Err when the
    /// new bytes do not start where `older`'s send data ends (a
    /// checkpoint was lost), or when `older` is None (or another
    /// connection's) and the checkpoint carries only a tail: the backup
    /// then drops its copy and the primary must send a full checkpoint.
    ///
    /// The copy is boxed, and the checkpoint's own box becomes the new
    /// copy: a backup keeps its copies boxed, so the 1.7 KB connection is
    /// not moved out of the box, into the backup's table and out again on
    /// every checkpoint (those moves were about a sixth of the backup's
    /// samples in a profiled download with process pairs).
    pub fn apply(self, older: Option<Box<Connection>>) -> Result<Box<Connection>, CheckpointGap> {
        let Checkpoint {
            mut conn,
            from,
            tail,
        } = self;
        let older = older.filter(|o| o.same_as(&conn)).map(|o| o.snd.buf);
        let held = older.as_ref().map(SendBuffer::end);
        if !conn.snd.buf.rebuild(older, from, tail) {
            return Err(CheckpointGap { held, from });
        }
        conn.debug_check();
        Ok(conn)
    }
}

impl Connection {
    /// True when `self` is a copy of the same connection as `other` (its
    /// tuple and ISS): a checkpoint of one connection never builds on a
    /// copy of another, even one that reused the tuple.
    fn same_as(&self, other: &Connection) -> bool {
        self.tuple == other.tuple && self.snd.iss == other.snd.iss
    }

    /// A checkpoint of this connection for its backup processor: the
    /// whole state, except that the send data holds only the bytes from
    /// `since` on (None, or a mark that does not fit this connection:
    /// all the queued send data).
    ///
    /// It exists so a backup can take the connection over when the
    /// primary dies. Call it after the application ran and before
    /// `poll_transmit`, every time: that order is what makes the pair
    /// lossless (see the module). Cost: everything but the send data is
    /// cloned each time (the receive buffer with its unread and held
    /// bytes, the SACK scoreboard, the RACK send and retransmission
    /// records, the congestion controller, a few hundred bytes of TCB);
    /// the new send bytes are shared, not copied: the send buffer is
    /// moved out while the rest is cloned. Copying them (and the backup
    /// copying them again into its send buffer) had been a third of the
    /// samples in a profiled download with process pairs.
    pub fn checkpoint(&mut self, since: Option<SendMark>) -> Checkpoint {
        let (start, end) = (self.snd.buf.start(), self.snd.buf.end());
        let from = since
            .filter(|m| m.iss == self.snd.iss && start <= m.end && m.end <= end)
            .map_or(start, |m| m.end);
        let data = self.snd.buf.take_data();
        let conn = Box::new(self.clone());
        self.snd.buf.put_back(data);
        let tail = self.snd.buf.share_from(from);
        Checkpoint { conn, from, tail }
    }

    /// The backup's copy takes the connection over: the primary died at
    /// an unknown point after the checkpoint this copy was made from.
    ///
    /// It exists because the primary may have done more than the copy
    /// knows, though never anything the peer could see that the copy does
    /// not reflect (checkpoint before transmit): it may have sent
    /// segments (data, our FIN, ACKs of what the copy holds too) and may
    /// have received segments it never acknowledged. So:
    ///
    /// - ACKs for anything the primary may have sent are acceptable:
    ///   SND.MAX covers all the queued data and our FIN if queued (in
    ///   SYN-SENT and SYN-RECEIVED, our SYN);
    /// - everything unacknowledged goes again at once, from SND.UNA (as
    ///   after an RTO: not SACKed is taken as lost, the segment at
    ///   SND.UNA leaves first whatever cwnd says), our SYN or FIN
    ///   included; the SACK scoreboard is kept (the peer said it holds
    ///   those bytes), RACK's retransmission records and any loss probe
    ///   are dropped (they describe sends of the dead primary);
    /// - congestion control restarts as after idle (RFC 5681 4.1: cwnd
    ///   at most the initial window, ssthresh kept), not as after a loss:
    ///   nothing says the path lost anything;
    /// - an ACK goes out at once even when nothing is outstanding, so the
    ///   peer learns RCV.NXT and our window (and resends what the primary
    ///   took in but never acknowledged); the advertised window edge
    ///   covers whatever the primary may have advertised;
    /// - the retransmission timer runs from `now` (a zero window gets a
    ///   probe at once instead).
    ///
    /// Timestamps keep working: our clock is an `Instant` of the same
    /// process. Then service it as usual (`poll_transmit`, `on_segment`,
    /// timers).
    pub fn take_over(&mut self, now: Instant) {
        match self.state {
            State::Closed => return,
            State::SynSent | State::SynReceived => {
                // Our SYN (|ACK) may have gone out: acceptable to ACK,
                // and sent again now.
                self.snd.max = self.snd.max.max(self.snd.iss + 1);
                self.snd.nxt = self.snd.iss;
                self.timers.set(Timer::Retransmit, now + self.rec.rtt.rto());
                return;
            }
            _ => {}
        }
        self.snd.assume_all_sent(now);
        self.rec.on_take_over(self.snd.una, self.snd.max);
        self.rack.forget_retransmissions();
        self.rack.tlp_pending = false;
        self.rack.tlp_out = false;
        self.rcv.on_take_over();
        for t in [Timer::LossProbe, Timer::Reorder, Timer::DelayedAck] {
            self.timers.stop(t);
        }
        let outstanding = self.snd.una < self.snd.max && self.is_sending_state();
        if outstanding && self.snd.wnd == 0 {
            // Data waits for a closed window: probe it now.
            self.snd.persist.probe_pending = true;
            self.timers.stop(Timer::Retransmit);
        } else if outstanding {
            self.timers.set(Timer::Retransmit, now + self.rec.rtt.rto());
        } else {
            self.timers.stop(Timer::Retransmit);
        }
        self.debug_check();
    }
}

/// The processor hands a checkpoint from one thread to another.
const _: () = {
    const fn send<T: Send>() {}
    send::<Checkpoint>();
};

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: the tests' randomness, deterministic from the seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A client and a server connection handing segments straight to each
    /// other (1 ms apart), the server checkpointed after every service as
    /// the processor does: segments in, the application, checkpoint,
    /// transmit.
    struct Pair {
        now: Instant,
        client: Connection,
        server: Connection,
        rng: Rng,
        /// Every segment, either way, is lost with this chance in 1000.
        loss: u64,
    }

    fn cfg() -> TcpConfig {
        TcpConfig {
            send_buffer: 64 * 1024,
            recv_buffer: 64 * 1024,
            ..TcpConfig::default()
        }
    }

    impl Pair {
        fn new(seed: u64) -> Pair {
            let now = Instant::now();
            let tuple = FourTuple {
                local: "10.0.0.2:40000".parse().expect("address"),
                remote: "10.0.0.1:80".parse().expect("address"),
            };
            let mut client = Connection::connect(now, &cfg(), tuple, SeqNumber(u32::MAX - 100));
            let syn = client.poll_transmit(now).expect("SYN");
            let back = FourTuple {
                local: tuple.remote,
                remote: tuple.local,
            };
            let iss = SeqNumber(7 + seed as u32);
            let server = Connection::accept(now, &cfg(), back, &syn, iss);
            Pair {
                now,
                client,
                server,
                rng: Rng(seed | 1),
                loss: 100,
            }
        }

        fn lost(&mut self) -> bool {
            self.rng.below(1000) < self.loss
        }

        /// The client's turn: it writes some bytes, its segments reach the
        /// server (or not).
        fn client_turn(&mut self) -> Vec<Segment> {
            let data: Vec<u8> = (0..self.rng.below(6000)).map(|i| i as u8).collect();
            self.client.send(&data);
            let mut buf = vec![0u8; 8192];
            while self.client.recv(&mut buf) > 0 {}
            let mut out = Vec::new();
            while let Some(seg) = self.client.poll_transmit(self.now) {
                if !self.lost() {
                    out.push(seg);
                }
            }
            out
        }

        /// The server's service up to its checkpoint: segments in, then
        /// the application reads some and writes some.
        fn server_service(&mut self, segs: &[Segment]) {
            for seg in segs {
                self.server.on_segment(self.now, seg);
            }
            self.server.on_timeout(self.now);
            let mut buf = vec![0u8; self.rng.below(8000) as usize];
            self.server.recv(&mut buf);
            let data: Vec<u8> = (0..self.rng.below(5000)).map(|i| (i * 7) as u8).collect();
            self.server.send(&data);
        }

        /// The server's transmit after its checkpoint; its segments reach
        /// the client (or not), and time moves on.
        fn server_transmit(&mut self) {
            let mut out = Vec::new();
            while let Some(seg) = self.server.poll_transmit(self.now) {
                if !self.lost() {
                    out.push(seg);
                }
            }
            self.now += Duration::from_millis(1);
            for seg in &out {
                self.client.on_segment(self.now, seg);
            }
            self.client.on_timeout(self.now);
        }
    }

    /// Everything observable, and the whole state as `Debug` prints it
    /// (the send and receive bytes included).
    fn assert_same(a: &Connection, b: &Connection, what: &str) {
        assert_eq!(a.stats(), b.stats(), "{what}: stats");
        assert_eq!(a.state(), b.state(), "{what}: state");
        assert_eq!(a.recv_available(), b.recv_available(), "{what}");
        assert_eq!(a.send_queued(), b.send_queued(), "{what}");
        assert_eq!(a.send_capacity(), b.send_capacity(), "{what}");
        assert_eq!(a.poll_timeout(), b.poll_timeout(), "{what}");
        assert_eq!(
            format!("{a:?}"),
            format!("{b:?}"),
            "{what}: the whole state"
        );
    }

    /// Both behave alike from `now`: the same segments out, through
    /// `rounds` timeouts (which resend everything unacknowledged), and
    /// the same bytes read.
    fn assert_same_behaviour(mut a: Connection, mut b: Connection, now: Instant, rounds: usize) {
        let mut now = now;
        for round in 0..rounds {
            loop {
                let (x, y) = (a.poll_transmit(now), b.poll_transmit(now));
                assert_eq!(x, y, "round {round}");
                if x.is_none() {
                    break;
                }
            }
            assert_eq!(a.poll_timeout(), b.poll_timeout());
            let Some(t) = a.poll_timeout() else { break };
            now = t;
            a.on_timeout(now);
            b.on_timeout(now);
        }
        let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
        let (n, m) = (a.recv(&mut x), b.recv(&mut y));
        assert_eq!(x[..n], y[..m]);
    }

    #[test]
    fn a_chain_of_checkpoints_applied_equals_a_clone() {
        for seed in 1..=20 {
            let mut p = Pair::new(seed);
            let mut replica: Option<Box<Connection>> = None;
            let mut mark = None;
            let mut carried = 0;
            for step in 0..300 {
                let segs = p.client_turn();
                p.server_service(&segs);
                let cp = p.server.checkpoint(mark);
                mark = Some(cp.mark());
                carried += cp.send_bytes();
                // Full at first; later only when all the backup held was
                // acknowledged (it then lacks all that is queued).
                assert!(cp.is_full() || step > 0, "seed {seed}");
                replica = Some(cp.apply(replica.take()).expect("no checkpoint lost"));
                let copy = replica.as_deref().expect("applied");
                assert_same(copy, &p.server, &format!("seed {seed} step {step}"));
                if step % 50 == 49 {
                    assert_same_behaviour(copy.clone(), p.server.clone(), p.now, 4);
                }
                p.server_transmit();
            }
            let written = p.server.stats().bytes_out as usize + p.server.send_queued();
            assert!(
                p.server.stats().bytes_out > 100_000,
                "seed {seed}: data flowed"
            );
            assert!(
                carried <= written,
                "seed {seed}: {carried} send bytes carried for {written} written"
            );
        }
    }

    #[test]
    fn a_lost_checkpoint_is_a_gap_and_a_full_one_recovers() {
        let mut p = Pair::new(3);
        p.loss = 0;
        let mut mark = None;
        let mut replica = None;
        for _ in 0..5 {
            let segs = p.client_turn();
            p.server_service(&segs);
            let cp = p.server.checkpoint(mark);
            mark = Some(cp.mark());
            replica = Some(cp.apply(replica).expect("in order"));
            p.server_transmit();
        }
        // One checkpoint that carried bytes never reaches the backup.
        let segs = p.client_turn();
        p.server_service(&segs);
        p.server.send(b"lost with its checkpoint");
        let lost = p.server.checkpoint(mark);
        assert!(lost.send_bytes() > 0);
        mark = Some(lost.mark());
        drop(lost);
        p.server.send(b"more");
        let next = p.server.checkpoint(mark);
        let gap = next.apply(replica).expect_err("a gap");
        assert_eq!(gap.held.map(|h| h < gap.from), Some(true), "{gap}");
        // Only a tail and no copy: a gap too.
        let tail_only = p.server.checkpoint(mark);
        assert!(!tail_only.is_full());
        assert_eq!(
            tail_only.apply(None).map(|_| ()),
            Err(CheckpointGap {
                held: None,
                from: mark.expect("marked").end,
            })
        );
        // The backup dropped its copy; a full checkpoint recovers.
        let full = p.server.checkpoint(None);
        assert!(full.is_full());
        assert!(full.memory() >= full.send_bytes() + p.server.send_queued().min(1));
        mark = Some(full.mark());
        let mut replica = full.apply(None).expect("full");
        assert_same(&replica, &p.server, "after the full checkpoint");
        // And the chain goes on from it.
        p.server_transmit();
        for step in 0..20 {
            let segs = p.client_turn();
            p.server_service(&segs);
            let cp = p.server.checkpoint(mark);
            mark = Some(cp.mark());
            replica = cp.apply(Some(replica)).expect("in order");
            assert_same(&replica, &p.server, &format!("step {step}"));
            if step == 19 {
                assert_same_behaviour((*replica).clone(), p.server.clone(), p.now, 3);
            }
            p.server_transmit();
        }
    }

    #[test]
    fn a_lost_checkpoint_without_new_send_bytes_loses_nothing() {
        let mut p = Pair::new(5);
        let mut mark = None;
        let mut replica = None;
        for step in 0..40 {
            let segs = p.client_turn();
            p.server_service(&segs);
            let cp = p.server.checkpoint(mark);
            mark = Some(cp.mark());
            if step % 3 == 1 && cp.send_bytes() == 0 {
                // Everything but the send data is whole in each one.
                continue;
            }
            replica = Some(cp.apply(replica).expect("nothing missing"));
            assert_same(replica.as_ref().expect("applied"), &p.server, "step");
            p.server_transmit();
        }
    }

    #[test]
    fn take_over_resends_from_snd_una_at_once_with_the_restart_window() {
        let mut p = Pair::new(11);
        p.loss = 0;
        let mut replica = None;
        // Until the server has data in flight and a window beyond the
        // initial one.
        let iw = crate::congestion::initial_window(p.server.send_mss());
        for _ in 0..200 {
            let segs = p.client_turn();
            p.server_service(&segs);
            p.server.send(&[1u8; 64 * 1024]);
            let cp = p.server.checkpoint(None);
            replica = Some(cp.apply(None).expect("full"));
            if p.server.stats().cwnd > iw && p.server.snd.una < p.server.snd.max {
                break;
            }
            p.server_transmit();
        }
        let mut r = replica.expect("checkpointed");
        let before = r.stats();
        assert!(before.cwnd > iw);
        let (una, end) = (r.snd.una, r.snd.buf.end());
        let now = p.now + Duration::from_millis(30);
        r.take_over(now);
        assert_eq!(r.snd.max, end, "ACKs of all queued data are acceptable");
        let after = r.stats();
        assert_eq!(after.cwnd, iw, "RFC 5681 4.1 restart window");
        assert_eq!(after.ssthresh, before.ssthresh, "not a loss");
        assert_eq!(after.retransmissions, before.retransmissions);
        assert_eq!(r.timers.next_deadline(), Some(now + r.rto()));
        let first = r.poll_transmit(now).expect("a segment at once");
        assert_eq!(first.seq, una, "from SND.UNA");
        assert!(!first.payload.is_empty());
        assert_eq!(first.ack, Some(r.rcv.nxt));
    }

    #[test]
    fn take_over_with_nothing_outstanding_sends_an_ack_at_once() {
        let mut p = Pair::new(12);
        p.loss = 0;
        for _ in 0..20 {
            let segs = p.client_turn();
            p.server_service(&segs);
            p.server_transmit();
        }
        // The client's last data arrives; the server reads it, writes
        // nothing, checkpoints and dies before its ACK goes out.
        let segs = p.client_turn();
        for seg in &segs {
            p.server.on_segment(p.now, seg);
        }
        let mut buf = vec![0u8; 1 << 20];
        p.server.recv(&mut buf);
        let mut r = p.server.checkpoint(None).apply(None).expect("full");
        assert_eq!(r.snd.una, r.snd.max, "nothing outstanding");
        r.take_over(p.now);
        let ack = r.poll_transmit(p.now).expect("an ACK at once");
        assert!(ack.payload.is_empty());
        assert_eq!(ack.ack, Some(r.rcv.nxt));
        assert_eq!(r.poll_transmit(p.now), None);
    }

    #[test]
    fn a_mark_of_another_connection_gives_a_full_checkpoint() {
        let mut a = Pair::new(1);
        let mut b = Pair::new(2);
        a.server.send(b"abc");
        let mark = a.server.checkpoint(None).mark();
        let cp = b.server.checkpoint(Some(mark));
        assert!(cp.is_full());
        // And a copy of another connection does not lend its bytes.
        let mut other = a.server.clone();
        other.snd.iss = SeqNumber(12345);
        let tail = a.server.checkpoint(Some(mark));
        assert!(tail.apply(Some(Box::new(other))).is_err());
    }
}
