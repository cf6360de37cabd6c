//! The `stack` target: a script of peer segments, time steps and
//! application calls against one [`Connection`].
//!
//! A [`Script`] (decoded from the fuzzer's bytes with `arbitrary`) picks a
//! configuration, starts the connection by `accept` (a peer SYN), by
//! `connect`, or from a SYN cookie (the peer's ACK bringing back the
//! cookie of a stateless SYN|ACK, as the adapter and the processor open
//! it), and runs up to [`MAX_OPS`] [`Op`]s. A SYN that reincarnates the
//! connection in TIME-WAIT opens the new one as the processor does:
//! `Connection::accept` with an ISN from the [`IsnGenerator`]. Sequence and
//! acknowledgment numbers are chosen relative to what the connection has
//! said so far ([`Num`]) or absolute, so the fuzzer reaches every state
//! without guessing 32-bit numbers. Every peer segment goes through
//! `Segment::emit` and `wire::parse`, as on the real receive path.
//!
//! Payload bytes are a fixed function of their sequence number on both
//! sides, so after every step [`Driver`] can check: every segment we emit
//! parses back (ports, checksum by independent code, same fields), never
//! carries more than the peer's MSS, carries exactly the bytes the
//! application queued at that place in the stream, acknowledges exactly
//! what arrived in order, puts its FIN after all queued data and only
//! after `close`; `recv` returns the peer's bytes in order; timers that
//! fired are gone; a closed connection has no timer. A genuine cookie
//! younger than 64 s is accepted with the MSS the SYN asked for (or less,
//! from the cookie's table), the connection it opens is ESTABLISHED, and
//! a well-behaved new SYN (above RCV.NXT, no timestamps) reopens a
//! connection in TIME-WAIT.

use crate::checksum;
use arbitrary::Arbitrary;
use std::time::{Duration, Instant};
use vnic_stack::{
    wire, TcpConfig, CongestionAlgorithm, Connection, Control, Disposition, Event, FourTuple,
    IsnGenerator, Segment, SeqNumber, State, SynCookies, TcpOptions,
};

/// Operations of one script that are run; the rest is ignored.
pub const MAX_OPS: usize = 256;
/// Largest peer payload the script can ask for.
pub const MAX_PAYLOAD: usize = 3000;
/// Segments one `poll_transmit` loop may yield before we call it endless.
pub const MAX_BURST: usize = 200_000;

/// The peer's byte at sequence number `seq` of its stream.
pub fn peer_byte(seq: u32) -> u8 {
    ((seq.wrapping_mul(0x9e37_79b1) >> 24) as u8) ^ (seq as u8)
}

/// Our application's byte at sequence number `seq` of our stream.
pub fn our_byte(seq: u32) -> u8 {
    ((seq.wrapping_mul(0x85eb_ca6b) >> 24) as u8).wrapping_add(seq as u8)
}

/// The configuration knobs a script picks.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Knobs {
    /// IPv6 addresses instead of IPv4.
    pub v6: bool,
    /// Offer / accept SACK.
    pub sack: bool,
    /// Offer / accept timestamps.
    pub timestamps: bool,
    /// Delayed ACK (40 ms) instead of an ACK for every segment.
    pub delayed_ack: bool,
    /// Nagle off.
    pub nodelay: bool,
    /// NewReno instead of CUBIC.
    pub new_reno: bool,
    /// 4 KiB receive / 8 KiB send buffers instead of the defaults.
    pub small_buffers: bool,
    /// MTU 296 (MSS 256 over IPv4) instead of 1500.
    pub small_mtu: bool,
    /// TIME-WAIT of 1 s instead of 60 s.
    pub short_time_wait: bool,
}

impl Knobs {
    /// The stack configuration these knobs describe.
    pub fn config(&self) -> TcpConfig {
        let mut c = TcpConfig {
            sack: self.sack,
            timestamps: self.timestamps,
            nodelay: self.nodelay,
            ..TcpConfig::default()
        };
        if !self.delayed_ack {
            c.delayed_ack = Duration::ZERO;
        }
        if self.new_reno {
            c.congestion = CongestionAlgorithm::NewReno;
        }
        if self.small_buffers {
            c.recv_buffer = 4096;
            c.send_buffer = 8192;
        }
        if self.small_mtu {
            c.mtu = 296;
        }
        if self.short_time_wait {
            c.time_wait = Duration::from_secs(1);
        }
        c
    }
}

/// A sequence-space number, relative to what has been seen or absolute.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Num {
    /// The peer's next sequence number (its ISS + 1 + what it sent).
    PeerNext(i16),
    /// The last acknowledgment number we sent (our RCV.NXT).
    OurAck(i16),
    /// The end of the highest segment we sent (our SND.MAX).
    OurMax(i16),
    /// The first sequence number of the last segment with data we sent.
    OurLast(i16),
    /// Our ISS.
    OurIss(i16),
    /// Any number.
    Abs(u32),
}

/// A timestamp value, relative or absolute.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Ts {
    /// The peer's clock (milliseconds since the start) plus this.
    Peer(i16),
    /// The last TSval we sent plus this.
    Echo(i16),
    /// Any value.
    Abs(u32),
}

/// TCP options of a peer segment.
#[derive(Arbitrary, Debug, Clone, Default)]
pub struct PeerOptions {
    /// MSS option.
    pub mss: Option<u16>,
    /// Window scale option.
    pub wscale: Option<u8>,
    /// SACK-permitted option.
    pub sack_permitted: bool,
    /// Timestamps option (TSval, TSecr).
    pub timestamps: Option<(Ts, Ts)>,
    /// SACK blocks (at most 4 are sent).
    pub sack_blocks: Vec<(Num, Num)>,
}

/// The control flag of a peer segment.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctl {
    /// None.
    None,
    /// SYN.
    Syn,
    /// FIN.
    Fin,
    /// RST.
    Rst,
}

/// A segment from the peer, field by field.
#[derive(Arbitrary, Debug, Clone)]
pub struct PeerSegment {
    /// SYN, FIN, RST or none.
    pub control: Ctl,
    /// SEG.SEQ.
    pub seq: Num,
    /// SEG.ACK (None: no ACK flag).
    pub ack: Option<Num>,
    /// PSH.
    pub psh: bool,
    /// SEG.WND (unscaled).
    pub window: u16,
    /// Options.
    pub options: PeerOptions,
    /// Payload length (modulo [`MAX_PAYLOAD`] + 1).
    pub len: u16,
}

/// One step of a script.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    /// The peer sends this segment.
    Segment(PeerSegment),
    /// A well-behaved peer ACK: seq = its next, ack = our SND.MAX.
    AckAll {
        /// Its window.
        window: u16,
    },
    /// Well-behaved peer data at its next sequence number, ACKing all.
    Data {
        /// Payload length (modulo [`MAX_PAYLOAD`] + 1).
        len: u16,
        /// With FIN.
        fin: bool,
    },
    /// A duplicate ACK: the peer's last acknowledgment again, SACKing our
    /// last data segment when `sack` is set.
    DupAck {
        /// With a SACK block for our last data segment.
        sack: bool,
    },
    /// A partial ACK: this many bytes past the peer's last acknowledgment
    /// (at most our SND.MAX).
    AckPart(u16),
    /// Time passes by this many milliseconds (timers fire on the way).
    Wait(u16),
    /// Time passes by this many seconds.
    WaitSecs(u8),
    /// Time passes to the connection's next deadline.
    UntilTimeout,
    /// The application sends this many bytes.
    Send(u16),
    /// The application reads up to this many bytes.
    Recv(u16),
    /// The application closes (half-close).
    Close,
    /// The application aborts.
    Abort,
    /// The application turns Nagle off (true) or on.
    Nodelay(bool),
    /// The peer opens a new connection from the same port: a SYN above
    /// what we received (RCV.NXT + 1 + `gap`), as a client reusing its
    /// port does; in TIME-WAIT it reincarnates the connection.
    Reopen {
        /// How far above RCV.NXT.
        gap: u16,
        /// With a timestamps option (TSval: the peer's clock).
        ts: bool,
    },
}

/// How the connection starts.
#[derive(Arbitrary, Debug, Clone)]
pub enum Start {
    /// Passive open: the peer's SYN.
    Accept {
        /// The peer's ISS (SEG.SEQ of its SYN).
        peer_iss: u32,
        /// Our ISS.
        our_iss: u32,
        /// SEG.WND of the SYN.
        window: u16,
        /// The SYN's options.
        options: PeerOptions,
    },
    /// Passive open from a SYN cookie: the peer's SYN is answered with a
    /// stateless cookie SYN|ACK, and its ACK, `delay` seconds later,
    /// brings the cookie back.
    Cookie {
        /// The peer's ISS.
        peer_iss: u32,
        /// The MSS option of the SYN.
        mss: Option<u16>,
        /// Seconds from the SYN to the ACK.
        delay: u8,
        /// SEG.WND of the ACK.
        window: u16,
        /// Data on the ACK (modulo [`MAX_PAYLOAD`] + 1 bytes).
        len: u16,
    },
    /// Active open.
    Connect {
        /// The peer's ISS (the SYN|ACK the script sends uses `PeerNext`).
        peer_iss: u32,
        /// Our ISS.
        our_iss: u32,
    },
}

/// One fuzz input.
#[derive(Arbitrary, Debug, Clone)]
pub struct Script {
    /// Configuration.
    pub knobs: Knobs,
    /// Passive or active open.
    pub start: Start,
    /// What happens next.
    pub ops: Vec<Op>,
}

/// What [`Script::run`] saw: the states reached (for seed selection).
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Every state the connection was in after some step, in order of
    /// first appearance.
    pub states: Vec<State>,
    /// Bytes the application received.
    pub delivered: u64,
    /// Bytes the application queued with send().
    pub sent: u64,
    /// The connection's counters at the end.
    pub stats: Option<vnic_stack::ConnStats>,
    /// Times a SYN reincarnated the connection from TIME-WAIT.
    pub reincarnations: u32,
    /// The connection was opened from a SYN cookie.
    pub from_cookie: bool,
}

/// The connection under test and what the harness knows about it.
pub struct Driver {
    cfg: TcpConfig,
    conn: Connection,
    tuple: FourTuple,
    start: Instant,
    now: Instant,
    our_iss: SeqNumber,
    /// The peer's ISS as the connection took it (None before).
    irs: Option<SeqNumber>,
    /// The MSS the peer announced in its synchronizing SYN (or the default).
    peer_mss: usize,
    peer_next: SeqNumber,
    our_ack: SeqNumber,
    our_max: SeqNumber,
    our_last: SeqNumber,
    /// The last acknowledgment number the peer sent.
    peer_acked: SeqNumber,
    our_tsval: u32,
    /// Our last segment carried timestamps.
    our_ts: bool,
    /// Bytes the application queued with send().
    app_sent: u64,
    /// Bytes the application received with recv().
    delivered: u64,
    close_called: bool,
    outcome: Outcome,
    /// The processor's ISN generator, for a reincarnation's ISS.
    isn: IsnGenerator,
}

fn tuple(v6: bool) -> FourTuple {
    if v6 {
        FourTuple {
            local: "[fd00::2]:80".parse().expect("addr"),
            remote: "[fd00::1]:40000".parse().expect("addr"),
        }
    } else {
        FourTuple {
            local: "10.0.0.2:80".parse().expect("addr"),
            remote: "10.0.0.1:40000".parse().expect("addr"),
        }
    }
}

fn offset(base: SeqNumber, d: i16) -> SeqNumber {
    SeqNumber(base.0.wrapping_add(d as i32 as u32))
}

impl Driver {
    fn num(&self, n: Num) -> SeqNumber {
        match n {
            Num::PeerNext(d) => offset(self.peer_next, d),
            Num::OurAck(d) => offset(self.our_ack, d),
            Num::OurMax(d) => offset(self.our_max, d),
            Num::OurLast(d) => offset(self.our_last, d),
            Num::OurIss(d) => offset(self.our_iss, d),
            Num::Abs(v) => SeqNumber(v),
        }
    }

    fn peer_clock(&self) -> u32 {
        self.now.duration_since(self.start).as_millis() as u32
    }

    fn ts(&self, t: Ts) -> u32 {
        match t {
            Ts::Peer(d) => self.peer_clock().wrapping_add(d as i32 as u32),
            Ts::Echo(d) => self.our_tsval.wrapping_add(d as i32 as u32),
            Ts::Abs(v) => v,
        }
    }

    fn options(&self, o: &PeerOptions) -> TcpOptions {
        TcpOptions {
            mss: o.mss,
            window_scale: o.wscale,
            sack_permitted: o.sack_permitted,
            timestamps: o.timestamps.map(|(v, e)| (self.ts(v), self.ts(e))),
            sack_blocks: o
                .sack_blocks
                .iter()
                .take(4)
                .map(|(l, r)| (self.num(*l), self.num(*r)))
                .collect(),
        }
    }

    /// The peer's segment as the receive path would hand it over: emitted
    /// to bytes and parsed back (None when `wire::parse` refuses it).
    fn peer_segment(&self, p: &PeerSegment) -> Option<Segment> {
        let seq = self.num(p.seq);
        let len = usize::from(p.len) % (MAX_PAYLOAD + 1);
        let seg = Segment {
            src_port: self.tuple.remote.port(),
            dst_port: self.tuple.local.port(),
            seq,
            ack: p.ack.map(|a| self.num(a)),
            control: match p.control {
                Ctl::None => Control::None,
                Ctl::Syn => Control::Syn,
                Ctl::Fin => Control::Fin,
                Ctl::Rst => Control::Rst,
            },
            psh: p.psh,
            window: p.window,
            options: self.options(&p.options),
            payload: peer_payload(seq, len, p.control == Ctl::Syn).into(),
        };
        self.through_wire(&seg)
    }

    fn through_wire(&self, seg: &Segment) -> Option<Segment> {
        let (src, dst) = (self.tuple.remote.ip(), self.tuple.local.ip());
        let mut bytes = Vec::new();
        seg.emit(src, dst, &mut bytes);
        wire::parse(src, dst, &bytes).ok()
    }

    fn well_behaved(&self, len: usize, fin: bool, window: u16) -> Option<Segment> {
        self.well_behaved_ack(self.our_max, len, fin, window, Vec::new())
    }

    fn well_behaved_ack(
        &self,
        ack: SeqNumber,
        len: usize,
        fin: bool,
        window: u16,
        sack_blocks: Vec<(SeqNumber, SeqNumber)>,
    ) -> Option<Segment> {
        let seq = self.peer_next;
        let options = TcpOptions {
            timestamps: self.our_ts.then(|| (self.peer_clock(), self.our_tsval)),
            sack_blocks,
            ..TcpOptions::default()
        };
        let seg = Segment {
            src_port: self.tuple.remote.port(),
            dst_port: self.tuple.local.port(),
            seq,
            ack: Some(ack),
            control: if fin { Control::Fin } else { Control::None },
            psh: len > 0,
            window,
            options,
            payload: peer_payload(seq, len, false).into(),
        };
        self.through_wire(&seg)
    }

    /// Starts the connection; None when the script's SYN does not parse.
    pub fn new(knobs: Knobs, start: &Start) -> Option<Driver> {
        let cfg = knobs.config();
        let tuple = tuple(knobs.v6);
        let now = Instant::now();
        let (peer_iss, our_iss) = match start {
            Start::Accept {
                peer_iss, our_iss, ..
            }
            | Start::Connect { peer_iss, our_iss } => (SeqNumber(*peer_iss), SeqNumber(*our_iss)),
            // Our ISS is the cookie, made below.
            Start::Cookie { peer_iss, .. } => (SeqNumber(*peer_iss), SeqNumber(0)),
        };
        // A placeholder until the real connection is made below.
        let conn = Connection::connect(now, &cfg, tuple, our_iss);
        let mut d = Driver {
            cfg,
            conn,
            tuple,
            start: now,
            now,
            our_iss,
            irs: None,
            peer_mss: 0,
            peer_next: peer_iss,
            our_ack: SeqNumber(0),
            our_max: our_iss,
            our_last: our_iss,
            peer_acked: our_iss,
            our_tsval: 0,
            our_ts: false,
            app_sent: 0,
            delivered: 0,
            close_called: false,
            outcome: Outcome::default(),
            isn: IsnGenerator::new([9; 16], now),
        };
        if let Start::Cookie {
            mss,
            delay,
            window,
            len,
            ..
        } = *start
        {
            d.open_from_cookie(mss, delay, window, len)?;
        }
        if let Start::Accept {
            window, options, ..
        } = start
        {
            let syn = Segment {
                src_port: tuple.remote.port(),
                dst_port: tuple.local.port(),
                seq: peer_iss,
                ack: None,
                control: Control::Syn,
                psh: false,
                window: *window,
                options: d.options(options),
                payload: Default::default(),
            };
            let syn = d.through_wire(&syn)?;
            d.incarnate(&syn, our_iss);
        }
        d.after_step();
        Some(d)
    }

    /// Opens the connection as the adapter and the processor open one
    /// from a SYN cookie (see [`Start::Cookie`]); None when the cookie
    /// came back too late (64 s or more) and nothing opened.
    fn open_from_cookie(
        &mut self,
        mss: Option<u16>,
        delay: u8,
        window: u16,
        len: u16,
    ) -> Option<()> {
        let jar = SynCookies::new([7; 16], self.start);
        let syn = self.through_wire(&Segment {
            src_port: self.tuple.remote.port(),
            dst_port: self.tuple.local.port(),
            seq: self.peer_next,
            ack: None,
            control: Control::Syn,
            psh: false,
            window: u16::MAX,
            options: TcpOptions {
                mss,
                ..TcpOptions::default()
            },
            payload: Default::default(),
        })?;
        // The adapter's stateless answer (RxQueue::cookie_syn).
        let our_mss = self.cfg.mss(self.tuple.is_ipv6());
        let syn_ack = jar.answer(self.now, &self.tuple, &syn, our_mss);
        let cookie = syn_ack.seq;
        assert_eq!(syn_ack.ack, Some(syn.seq + 1), "the cookie SYN|ACK's ACK");
        self.our_iss = cookie;
        self.our_max = cookie;
        self.check_ours(&syn_ack);
        self.now += Duration::from_secs(u64::from(delay));
        let n = usize::from(len) % (MAX_PAYLOAD + 1);
        let seq = syn.seq + 1;
        let ack = self.through_wire(&Segment {
            src_port: self.tuple.remote.port(),
            dst_port: self.tuple.local.port(),
            seq,
            ack: Some(cookie + 1),
            control: Control::None,
            psh: n > 0,
            window,
            options: TcpOptions::default(),
            payload: peer_payload(seq, n, false).into(),
        })?;
        // The adapter's check (RxQueue::cookie_ack).
        let Some(mss) = jar.check(self.now, &self.tuple, &ack) else {
            assert!(
                delay >= 64,
                "a genuine cookie refused {delay} s after its SYN"
            );
            return None;
        };
        let asked = syn.options.mss.unwrap_or(536).max(536);
        assert!(
            mss <= asked,
            "the cookie carries MSS {mss}, the SYN {asked}"
        );
        // The processor's (Processor::accept_cookie): the connection the
        // cookie stands for, its SYN|ACK sent already, statelessly, and
        // the ACK taken. The model learns the SYN the cookie stands for.
        let rebuilt = SynCookies::rebuilt_syn(&ack, mss);
        self.incarnate(&rebuilt, cookie);
        self.our_max = cookie + 1;
        self.conn = Connection::accept_cookie(self.now, &self.cfg, self.tuple, &ack, mss)
            .expect("a cookie ACK acknowledges");
        self.peer_next = self.peer_next.max(ack.seq + ack.seg_len());
        self.peer_acked = cookie + 1;
        assert_eq!(
            self.conn.state(),
            State::Established,
            "a genuine cookie ACK opens the connection"
        );
        self.outcome.from_cookie = true;
        Some(())
    }

    /// A new connection by `accept` of `syn` (the start, or a SYN that
    /// reincarnated a connection in TIME-WAIT).
    fn incarnate(&mut self, syn: &Segment, our_iss: SeqNumber) {
        self.conn = Connection::accept(self.now, &self.cfg, self.tuple, syn, our_iss);
        self.our_iss = our_iss;
        self.our_max = our_iss;
        self.our_last = our_iss;
        self.peer_acked = our_iss;
        self.app_sent = 0;
        self.delivered = 0;
        self.close_called = false;
        self.synchronized_by(syn);
        self.peer_next = syn.seq + 1;
    }

    fn synchronized_by(&mut self, syn: &Segment) {
        self.irs = Some(syn.seq);
        let v6 = self.tuple.is_ipv6();
        let default = if v6 { 1220 } else { 536 };
        self.peer_mss = syn.options.mss.map_or(default, usize::from);
    }

    fn feed(&mut self, seg: &Segment) {
        let was = self.conn.state();
        let end = seg.seq + seg.seg_len();
        if end > self.peer_next {
            self.peer_next = end;
        }
        if let Some(ack) = seg.ack {
            self.peer_acked = ack;
        }
        let disposition = self.conn.on_segment(self.now, seg);
        if disposition == Disposition::Reincarnate {
            assert_eq!(was, State::TimeWait, "only TIME-WAIT reincarnates");
            assert_eq!(seg.control, Control::Syn);
            // The processor forgets the old incarnation and accepts the
            // SYN with a new ISN (Processor::accept).
            let iss = self.isn.isn(self.now, &self.tuple);
            self.incarnate(seg, iss);
            self.outcome.reincarnations += 1;
            return;
        }
        if was == State::SynSent && !matches!(self.conn.state(), State::SynSent | State::Closed) {
            self.synchronized_by(seg);
        }
    }

    /// Moves time to `until`, firing timers on the way as a processor would.
    fn advance(&mut self, until: Instant) {
        for _ in 0..10_000 {
            match self.conn.poll_timeout() {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.conn.on_timeout(self.now);
                    if let Some(next) = self.conn.poll_timeout() {
                        assert!(next > self.now, "a timer due now survived on_timeout");
                    }
                    self.after_step();
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs one operation and every check after it.
    pub fn step(&mut self, op: &Op) {
        match op {
            Op::Segment(p) => {
                if let Some(seg) = self.peer_segment(p) {
                    self.feed(&seg);
                }
            }
            Op::AckAll { window } => {
                if let Some(seg) = self.well_behaved(0, false, *window) {
                    self.feed(&seg);
                }
            }
            Op::Data { len, fin } => {
                let len = usize::from(*len) % (MAX_PAYLOAD + 1);
                if let Some(seg) = self.well_behaved(len, *fin, u16::MAX) {
                    self.feed(&seg);
                }
            }
            Op::DupAck { sack } => {
                let blocks = if *sack && self.our_max > self.our_last {
                    vec![(self.our_last, self.our_max)]
                } else {
                    Vec::new()
                };
                let ack = self.peer_acked;
                if let Some(seg) = self.well_behaved_ack(ack, 0, false, u16::MAX, blocks) {
                    self.feed(&seg);
                }
            }
            Op::AckPart(n) => {
                let ack = (self.peer_acked + usize::from(*n)).min(self.our_max);
                if let Some(seg) = self.well_behaved_ack(ack, 0, false, u16::MAX, Vec::new()) {
                    self.feed(&seg);
                }
            }
            Op::Wait(ms) => self.advance(self.now + Duration::from_millis(u64::from(*ms))),
            Op::WaitSecs(s) => self.advance(self.now + Duration::from_secs(u64::from(*s))),
            Op::UntilTimeout => {
                if let Some(t) = self.conn.poll_timeout() {
                    self.advance(t.max(self.now));
                }
            }
            Op::Send(n) => {
                let n = usize::from(*n);
                let cap = self.conn.send_capacity();
                let first = self.our_iss + 1 + self.app_sent as usize;
                let data: Vec<u8> = (0..n).map(|i| our_byte((first + i).0)).collect();
                let got = self.conn.send(&data);
                assert!(
                    got <= n && got <= cap,
                    "send took {got} of {n}, capacity {cap}"
                );
                self.app_sent += got as u64;
            }
            Op::Recv(n) => {
                let mut buf = vec![0u8; usize::from(*n)];
                let avail = self.conn.recv_available();
                let got = self.conn.recv(&mut buf);
                assert_eq!(got, avail.min(buf.len()), "recv returns what is available");
                if got > 0 {
                    let irs = self.irs.expect("data before the peer's SYN");
                    let first = irs + 1 + self.delivered as usize;
                    for (i, b) in buf[..got].iter().enumerate() {
                        assert_eq!(
                            *b,
                            peer_byte((first + i).0),
                            "byte {} of the peer's stream out of order",
                            self.delivered + i as u64
                        );
                    }
                }
                self.delivered += got as u64;
            }
            Op::Close => {
                self.close_called = true;
                self.conn.close();
            }
            Op::Abort => self.conn.abort(),
            Op::Nodelay(on) => self.conn.set_nodelay(*on),
            Op::Reopen { gap, ts } => self.reopen(*gap, *ts),
        }
        self.after_step();
    }

    /// [`Op::Reopen`].
    fn reopen(&mut self, gap: u16, ts: bool) {
        let rcv_nxt = match self.irs {
            Some(irs) => {
                let fin = usize::from(self.conn.peer_fin_received());
                irs + 1 + self.conn.stats().bytes_in as usize + fin
            }
            None => self.peer_next,
        };
        let syn = Segment {
            src_port: self.tuple.remote.port(),
            dst_port: self.tuple.local.port(),
            seq: rcv_nxt + 1 + usize::from(gap),
            ack: None,
            control: Control::Syn,
            psh: false,
            window: u16::MAX,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: ts.then(|| (self.peer_clock(), 0)),
                ..TcpOptions::default()
            },
            payload: Default::default(),
        };
        let Some(syn) = self.through_wire(&syn) else {
            return;
        };
        let was = self.conn.state();
        let before = self.outcome.reincarnations;
        self.feed(&syn);
        if was == State::TimeWait && !ts {
            assert_eq!(
                self.outcome.reincarnations,
                before + 1,
                "a new SYN above RCV.NXT reopens TIME-WAIT (RFC 6191)"
            );
        }
    }

    /// Drains poll_transmit and the events, checking each.
    fn after_step(&mut self) {
        let mut n = 0;
        while let Some(seg) = self.conn.poll_transmit(self.now) {
            n += 1;
            assert!(n <= MAX_BURST, "poll_transmit never returns None");
            self.check_ours(&seg);
        }
        while let Some(e) = self.conn.poll_event() {
            if let Event::Closed(_) = e {
                assert_eq!(self.conn.state(), State::Closed, "Closed event, not closed");
            }
        }
        let state = self.conn.state();
        if state == State::Closed {
            assert_eq!(
                self.conn.poll_timeout(),
                None,
                "a closed connection has timers"
            );
        }
        assert!(self.conn.send_queued() <= self.cfg.send_buffer);
        assert!(self.delivered <= self.conn.stats().bytes_in);
        if !self.outcome.states.contains(&state) {
            self.outcome.states.push(state);
        }
    }

    fn check_ours(&mut self, seg: &Segment) {
        let (src, dst) = (self.tuple.local.ip(), self.tuple.remote.ip());
        let mut bytes = Vec::new();
        seg.emit(src, dst, &mut bytes);
        assert!(
            checksum::verifies(checksum::pseudo(src, dst, 6, bytes.len()), &bytes),
            "our checksum"
        );
        let back = match wire::parse(src, dst, &bytes) {
            Ok(b) => b,
            Err(e) => panic!("our segment does not parse: {e}: {seg:?}"),
        };
        let mut expect = seg.clone();
        // emit leaves out SACK blocks that do not fit in 40 bytes of options.
        expect
            .options
            .sack_blocks
            .truncate(back.options.sack_blocks.len());
        assert_eq!(back, expect, "our segment changed through emit/parse");
        assert_eq!(seg.src_port, self.tuple.local.port());
        assert_eq!(seg.dst_port, self.tuple.remote.port());
        assert!(seg.options.sack_blocks.len() <= 4);
        if let Some((val, _)) = seg.options.timestamps {
            self.our_tsval = val;
        }
        self.our_ts = seg.options.timestamps.is_some();
        let len = seg.payload.len();
        if seg.control == Control::Syn {
            assert_eq!(seg.seq, self.our_iss, "our SYN carries our ISS");
            assert_eq!(len, 0, "our SYN carries no data");
        }
        if len > 0 {
            // The peer's MSS, raised to the floor (tcp_min_snd_mss), capped
            // by our MTU.
            let mss = self
                .peer_mss
                .max(vnic_stack::MIN_SND_MSS)
                .min(usize::from(self.cfg.mss(self.tuple.is_ipv6())));
            assert!(
                len <= mss && len <= self.conn.send_mss(),
                "{len} bytes of payload, peer MSS {} ours {}",
                self.peer_mss,
                self.cfg.mss(self.tuple.is_ipv6())
            );
            let off = seg.seq.0.wrapping_sub(self.our_iss.0.wrapping_add(1));
            assert!(
                u64::from(off) + len as u64 <= self.app_sent,
                "sent bytes {off}..{} the application never queued ({})",
                u64::from(off) + len as u64,
                self.app_sent
            );
            for (i, b) in seg.payload.iter().enumerate() {
                assert_eq!(
                    *b,
                    our_byte((seg.seq + i).0),
                    "wrong byte at offset {}",
                    off as usize + i
                );
            }
            self.our_last = seg.seq;
        }
        if seg.control == Control::Fin {
            assert!(self.close_called, "FIN without close()");
            assert_eq!(
                seg.seq + len,
                self.our_iss + 1 + self.app_sent as usize,
                "FIN right after the last queued byte"
            );
        }
        if let (Some(ack), Some(irs)) = (seg.ack, self.irs) {
            let fin = usize::from(self.conn.peer_fin_received());
            let rcv_nxt = irs + 1 + self.conn.stats().bytes_in as usize + fin;
            assert_eq!(ack, rcv_nxt, "we ACK exactly what arrived in order");
            self.our_ack = ack;
        }
        let end = seg.seq + seg.seg_len();
        if end > self.our_max {
            self.our_max = end;
        }
    }

    /// What the run reached.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }
}

fn peer_payload(seq: SeqNumber, len: usize, syn: bool) -> Vec<u8> {
    // Data on a SYN occupies the sequence numbers after the SYN's own.
    let first = seq + usize::from(syn);
    (0..len).map(|i| peer_byte((first + i).0)).collect()
}

impl Script {
    /// Runs the script with every check; returns what it reached.
    pub fn run(&self) -> Outcome {
        let Some(mut d) = Driver::new(self.knobs, &self.start) else {
            return Outcome::default();
        };
        for op in self.ops.iter().take(MAX_OPS) {
            d.step(op);
        }
        let mut o = d.outcome().clone();
        o.delivered = d.delivered;
        o.sent = d.app_sent;
        o.stats = Some(d.conn.stats());
        o
    }
}

/// The whole target: decode a script from `data` and run it.
pub fn run(data: &[u8]) {
    if let Ok(script) = Script::arbitrary_take_rest(arbitrary::Unstructured::new(data)) {
        script.run();
    }
}
