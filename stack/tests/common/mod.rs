//! Test harness: the peer's segments are crafted with `pnet_packet`, ours
//! are emitted to bytes and read back with `pnet_packet`, so the stack is
//! never checked by its own parser or emitter alone.
//!
//! Beside it, shared by every test file: [`rng`] (the one seeded RNG) and
//! [`sim`] (the one simulated link between two stacks).
#![allow(dead_code, unused_macros)]

pub mod rng;
pub mod sim;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use pnet_packet::tcp::{
    ipv4_checksum, ipv6_checksum, MutableTcpPacket, TcpFlags, TcpOption, TcpOptionNumbers,
    TcpPacket,
};
use pnet_packet::Packet;
use vnic_stack::{Connection, Disposition, Event, FourTuple, SeqNumber, State, TcpConfig};

/// Our ISS in every scripted test.
pub const OUR_ISS: u32 = 10_000;
/// The peer's ISS in every scripted test.
pub const PEER_ISS: u32 = 50_000;

pub fn tuple(v6: bool) -> FourTuple {
    if v6 {
        FourTuple {
            local: "[fd00::1]:80".parse().unwrap(),
            remote: "[fd00::2]:40000".parse().unwrap(),
        }
    } else {
        FourTuple {
            local: "10.0.0.1:80".parse().unwrap(),
            remote: "10.0.0.2:40000".parse().unwrap(),
        }
    }
}

/// A segment the peer sends, described field by field.
#[derive(Clone, Debug)]
pub struct Spec {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_perm: bool,
    /// Timestamps option (TSval, TSecr).
    pub ts: Option<(u32, u32)>,
    /// SACK blocks (left, right).
    pub sack: Vec<(u32, u32)>,
    pub data: Vec<u8>,
}

impl Spec {
    pub fn new(flags: u8) -> Spec {
        Spec {
            flags,
            seq: PEER_ISS + 1,
            ack: OUR_ISS + 1,
            win: 65535,
            mss: None,
            wscale: None,
            sack_perm: false,
            ts: None,
            sack: Vec::new(),
            data: Vec::new(),
        }
    }
    pub fn ts(mut self, v: (u32, u32)) -> Spec {
        self.ts = Some(v);
        self
    }
    pub fn sack(mut self, v: &[(u32, u32)]) -> Spec {
        self.sack = v.to_vec();
        self
    }
    pub fn seq(mut self, v: u32) -> Spec {
        self.seq = v;
        self
    }
    pub fn ack(mut self, v: u32) -> Spec {
        self.ack = v;
        self
    }
    pub fn win(mut self, v: u16) -> Spec {
        self.win = v;
        self
    }
    pub fn mss(mut self, v: u16) -> Spec {
        self.mss = Some(v);
        self
    }
    pub fn wscale(mut self, v: u8) -> Spec {
        self.wscale = Some(v);
        self
    }
    pub fn sack_perm(mut self, v: bool) -> Spec {
        self.sack_perm = v;
        self
    }
    pub fn data(mut self, v: &[u8]) -> Spec {
        self.data = v.to_vec();
        self
    }
}

/// Builds the TCP bytes of `spec` from `src` to `dst` with pnet, checksum
/// included.
pub fn craft(spec: &Spec, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut opts = Vec::new();
    let mut opt_len = 0;
    if let Some(m) = spec.mss {
        opts.push(TcpOption::mss(m));
        opt_len += 4;
    }
    if let Some(w) = spec.wscale {
        opts.push(TcpOption::nop());
        opts.push(TcpOption::wscale(w));
        opt_len += 4;
    }
    if spec.sack_perm {
        opts.push(TcpOption::nop());
        opts.push(TcpOption::nop());
        opts.push(TcpOption::sack_perm());
        opt_len += 4;
    }
    if let Some((val, ecr)) = spec.ts {
        opts.push(TcpOption::nop());
        opts.push(TcpOption::nop());
        opts.push(TcpOption::timestamp(val, ecr));
        opt_len += 12;
    }
    if !spec.sack.is_empty() {
        let edges: Vec<u32> = spec.sack.iter().flat_map(|&(l, r)| [l, r]).collect();
        opts.push(TcpOption::nop());
        opts.push(TcpOption::nop());
        opts.push(TcpOption::selective_ack(&edges));
        opt_len += 4 + 8 * spec.sack.len();
    }
    craft_raw(spec, src, dst, |p| p.set_options(&opts), opt_len)
}

/// Like [`craft`] but lets the caller write the option area itself (for
/// malformed options); `opt_len` must be a multiple of 4.
pub fn craft_raw(
    spec: &Spec,
    src: SocketAddr,
    dst: SocketAddr,
    write_opts: impl FnOnce(&mut MutableTcpPacket),
    opt_len: usize,
) -> Vec<u8> {
    let mut buf = vec![0u8; 20 + opt_len + spec.data.len()];
    {
        let mut p = MutableTcpPacket::new(&mut buf).unwrap();
        p.set_source(src.port());
        p.set_destination(dst.port());
        p.set_sequence(spec.seq);
        p.set_acknowledgement(if spec.flags & TcpFlags::ACK != 0 {
            spec.ack
        } else {
            0
        });
        p.set_data_offset(((20 + opt_len) / 4) as u8);
        p.set_flags(spec.flags);
        p.set_window(spec.win);
        write_opts(&mut p);
        p.set_payload(&spec.data);
    }
    fix_checksum(&mut buf, src.ip(), dst.ip());
    buf
}

/// Recomputes the checksum of TCP bytes with pnet.
pub fn fix_checksum(buf: &mut [u8], src: IpAddr, dst: IpAddr) {
    let sum = pnet_checksum(buf, src, dst);
    let mut p = MutableTcpPacket::new(buf).unwrap();
    p.set_checksum(sum);
}

pub fn pnet_checksum(buf: &[u8], src: IpAddr, dst: IpAddr) -> u16 {
    let p = TcpPacket::new(buf).unwrap();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4_checksum(&p, &s, &d),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6_checksum(&p, &s, &d),
        _ => panic!("mixed families"),
    }
}

/// One of our segments as pnet reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct Out {
    pub flags: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_perm: bool,
    /// (TSval, TSecr)
    pub ts: Option<(u32, u32)>,
    /// SACK blocks in the order sent.
    pub sack: Vec<(u32, u32)>,
    pub payload: Vec<u8>,
}

impl Out {
    /// The field a `recv!` assertion names.
    pub fn get(&self, field: &str) -> u64 {
        match field {
            "seq" => self.seq as u64,
            "ack" => self.ack as u64,
            "win" => self.win as u64,
            "len" => self.payload.len() as u64,
            "mss" => self.mss.expect("no MSS option") as u64,
            "wscale" => self.wscale.expect("no window scale option") as u64,
            "tsval" => self.ts.expect("no timestamps option").0 as u64,
            "tsecr" => self.ts.expect("no timestamps option").1 as u64,
            other => panic!("unknown field {other}"),
        }
    }
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (TcpFlags::SYN, "SYN"),
            (TcpFlags::FIN, "FIN"),
            (TcpFlags::RST, "RST"),
            (TcpFlags::PSH, "PSH"),
            (TcpFlags::ACK, "ACK"),
        ];
        let flags: Vec<&str> = names
            .iter()
            .filter(|(b, _)| self.flags & b != 0)
            .map(|(_, n)| *n)
            .collect();
        write!(
            f,
            "[{}] seq={} ack={} win={} len={}",
            flags.join("|"),
            self.seq,
            self.ack,
            self.win,
            self.payload.len()
        )?;
        if let Some(m) = self.mss {
            write!(f, " mss={m}")?;
        }
        if let Some(w) = self.wscale {
            write!(f, " wscale={w}")?;
        }
        if self.sack_perm {
            write!(f, " sackOK")?;
        }
        if let Some((v, e)) = self.ts {
            write!(f, " ts={v}/{e}")?;
        }
        if !self.sack.is_empty() {
            write!(f, " sack={:?}", self.sack)?;
        }
        Ok(())
    }
}

/// Reads TCP bytes with pnet, asserting the checksum is valid.
pub fn decode(bytes: &[u8], src: IpAddr, dst: IpAddr) -> Out {
    let p = TcpPacket::new(bytes).expect("pnet cannot read our segment");
    assert_eq!(
        p.get_checksum(),
        pnet_checksum(bytes, src, dst),
        "bad checksum on our segment"
    );
    let mut mss = None;
    let mut wscale = None;
    let mut sack_perm = false;
    let mut ts = None;
    let mut sack = Vec::new();
    let be = |d: &[u8]| u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    for o in p.get_options_iter() {
        let n = o.get_number();
        let d = o.payload();
        if n == TcpOptionNumbers::MSS {
            mss = Some(u16::from_be_bytes([d[0], d[1]]));
        } else if n == TcpOptionNumbers::WSCALE {
            wscale = Some(d[0]);
        } else if n == TcpOptionNumbers::SACK_PERMITTED {
            sack_perm = true;
        } else if n == TcpOptionNumbers::TIMESTAMPS {
            ts = Some((be(&d[0..4]), be(&d[4..8])));
        } else if n == TcpOptionNumbers::SACK {
            sack = d
                .chunks_exact(8)
                .map(|c| (be(&c[0..4]), be(&c[4..8])))
                .collect();
        }
    }
    Out {
        flags: p.get_flags(),
        src_port: p.get_source(),
        dst_port: p.get_destination(),
        seq: p.get_sequence(),
        ack: p.get_acknowledgement(),
        win: p.get_window(),
        mss,
        wscale,
        sack_perm,
        ts,
        sack,
        payload: p.payload().to_vec(),
    }
}

/// One connection under test, with the clock in our hands.
pub struct H {
    pub conn: Connection,
    pub t0: Instant,
    pub now: Instant,
    pub tuple: FourTuple,
    pub cfg: TcpConfig,
}

impl H {
    /// Passive open from the peer's `syn`.
    pub fn accept(cfg: TcpConfig, v6: bool, syn: Spec) -> H {
        let tuple = tuple(v6);
        let t0 = Instant::now();
        let bytes = craft(&syn, tuple.remote, tuple.local);
        let seg = vnic_stack::parse(tuple.remote.ip(), tuple.local.ip(), &bytes).unwrap();
        let conn = Connection::accept(t0, &cfg, tuple, &seg, SeqNumber(OUR_ISS));
        H {
            conn,
            t0,
            now: t0,
            tuple,
            cfg,
        }
    }

    /// Active open.
    pub fn connect(cfg: TcpConfig, v6: bool) -> H {
        let tuple = tuple(v6);
        let t0 = Instant::now();
        let conn = Connection::connect(t0, &cfg, tuple, SeqNumber(OUR_ISS));
        H {
            conn,
            t0,
            now: t0,
            tuple,
            cfg,
        }
    }

    /// An ESTABLISHED connection (passive open), peer MSS `mss`, peer
    /// window 65535, no window scaling; the handshake's segments and events
    /// are consumed.
    pub fn established_with(cfg: TcpConfig, mss: u16) -> H {
        let mut h = H::accept(cfg, false, Spec::new(TcpFlags::SYN).seq(PEER_ISS).mss(mss));
        let synack = h.recv().expect("SYN|ACK");
        assert_eq!(synack.flags, TcpFlags::SYN | TcpFlags::ACK);
        h.send(Spec::new(TcpFlags::ACK));
        assert_eq!(h.conn.state(), State::Established);
        assert_eq!(h.events(), vec![Event::Established]);
        h
    }

    /// An ESTABLISHED connection (passive open) from the peer's `syn`
    /// (sequence number set here). When the SYN offered timestamps, the
    /// peer's ACK carries TSval `peer_tsval + 1` and echoes ours. Handshake
    /// segments and events are consumed.
    pub fn established_spec(cfg: TcpConfig, syn: Spec) -> H {
        let peer_ts = syn.ts;
        let mut h = H::accept(cfg, false, syn.seq(PEER_ISS));
        let synack = h.recv().expect("SYN|ACK");
        assert_eq!(synack.flags, TcpFlags::SYN | TcpFlags::ACK);
        let mut ack = Spec::new(TcpFlags::ACK);
        if let (Some((val, _)), Some((ours, _))) = (peer_ts, synack.ts) {
            ack = ack.ts((val + 1, ours));
        }
        h.send(ack);
        assert_eq!(h.conn.state(), State::Established);
        assert_eq!(h.events(), vec![Event::Established]);
        h
    }

    pub fn established() -> H {
        H::established_with(TcpConfig::default(), 1460)
    }

    /// The deadline of the connection's idle limit as set when it opened:
    /// what `poll_timeout` says once nothing else is pending.
    pub fn idle_deadline(&self) -> Option<Instant> {
        self.cfg.idle_timeout.map(|d| self.t0 + d)
    }

    /// The peer sends `spec`.
    pub fn send(&mut self, spec: Spec) -> Disposition {
        let bytes = craft(&spec, self.tuple.remote, self.tuple.local);
        let seg = vnic_stack::parse(self.tuple.remote.ip(), self.tuple.local.ip(), &bytes)
            .expect("our parser refused a pnet-crafted segment");
        self.conn.on_segment(self.now, &seg)
    }

    /// Like [`H::send`], but the segment's text arrives the way a large
    /// segment reaches a processor: in the buffer the frame was read into
    /// (`Payload::in_buffer`, shared), headers in front, room behind.
    #[allow(dead_code)]
    pub fn send_in_frame(&mut self, spec: Spec) -> Disposition {
        let bytes = craft(&spec, self.tuple.remote, self.tuple.local);
        let mut seg = vnic_stack::parse(self.tuple.remote.ip(), self.tuple.local.ip(), &bytes)
            .expect("our parser refused a pnet-crafted segment");
        let at = bytes.len() - seg.payload.len();
        let mut frame = Vec::with_capacity(14 + bytes.len() + 64);
        frame.resize(14, 0);
        frame.extend_from_slice(&bytes);
        let text = 14 + at..frame.len();
        frame.resize(frame.len() + 64, 0);
        seg.payload = vnic_stack::Payload::in_buffer(frame, text);
        self.conn.on_segment(self.now, &seg)
    }

    /// What we send next, read by pnet.
    pub fn recv(&mut self) -> Option<Out> {
        let seg = self.conn.poll_transmit(self.now)?;
        let mut bytes = Vec::new();
        seg.emit(self.tuple.local.ip(), self.tuple.remote.ip(), &mut bytes);
        assert_eq!(bytes.len(), seg.header_len() + seg.payload.len());
        let out = decode(&bytes, self.tuple.local.ip(), self.tuple.remote.ip());
        assert_eq!(out.src_port, self.tuple.local.port());
        assert_eq!(out.dst_port, self.tuple.remote.port());
        Some(out)
    }

    /// Everything we send now.
    pub fn recv_all(&mut self) -> Vec<Out> {
        std::iter::from_fn(|| self.recv()).collect()
    }

    /// Moves the clock to `t0 + ms` and fires due timers.
    pub fn at_ms(&mut self, ms: u64) {
        self.now = self.t0 + Duration::from_millis(ms);
        self.conn.on_timeout(self.now);
    }

    /// Moves the clock forward by `ms` and fires due timers.
    pub fn advance_ms(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        self.conn.on_timeout(self.now);
    }

    /// Pending application events.
    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }

    /// All readable bytes.
    pub fn read_all(&mut self) -> Vec<u8> {
        let mut buf = vec![0; self.conn.recv_available()];
        let n = self.conn.recv(&mut buf);
        buf.truncate(n);
        buf
    }
}

/// `send!(h, SYN|ACK, seq = 1, ack = 2, win = 100, data = b"x")`: the peer
/// sends a segment.
macro_rules! send {
    ($h:expr, $($flag:ident)|+ $(, $f:ident = $v:expr)* $(,)?) => {
        $h.send(
            $crate::common::Spec::new(0 $(| pnet_packet::tcp::TcpFlags::$flag)+)
                $(.$f($v))*
        )
    };
}

/// `recv!(h, SYN|ACK, seq = 1, ack = 2, len = 0)`: we send exactly these
/// flags, and the named fields have these values.
macro_rules! recv {
    ($h:expr, $($flag:ident)|+ $(, $f:ident = $v:expr)* $(,)?) => {{
        let out = $h.recv().unwrap_or_else(|| panic!("expected a segment, we sent nothing"));
        assert_eq!(
            out.flags,
            0 $(| pnet_packet::tcp::TcpFlags::$flag)+,
            "flags of {:?}", out
        );
        $(
            assert_eq!(out.get(stringify!($f)), ($v) as u64, "{} of {:?}", stringify!($f), out);
        )*
        out
    }};
}

/// We send nothing now.
macro_rules! recv_nothing {
    ($h:expr) => {
        if let Some(out) = $h.recv() {
            panic!("expected nothing, we sent {:?}", out);
        }
    };
}
