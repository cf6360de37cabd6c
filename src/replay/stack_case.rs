//! One connection of a trace as a test of the stack alone: what
//! `vnic replay --emit-test` writes, and what the emitted test calls.
//!
//! A [`Case`] is the connection's steps in the trace's order, times in
//! ns from its first segment: the peer's segments in ([`Step::In`]), what
//! the app wrote and when it closed ([`Step::Send`], [`Step::Close`]: the
//! bytes and the FIN the trace shows vnic sending, each at the time it
//! first went out), and the segments vnic sent ([`Step::Out`]), each at
//! its processor's turn (the stamp its frames carry). [`check`] drives a
//! `vnic_stack::Connection` as a processor does (passive open with the
//! trace's ISN, or from a SYN cookie's ACK; the steps of one time are
//! one turn: the segments in, the app's turn and everything the stack
//! sends, twice when an event made the app able to answer, then the
//! timers due), and compares what it sends with the `Out` steps in order,
//! every field but the checksum, TSval (see [`super::compare`]) and PSH:
//! PSH marks where the app's writes ended, and a case knows its app's
//! writes only as what went out (the whole replay runs the real app).

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use vnic_stack::{wire, Connection, FourTuple, Payload, Segment, SeqNumber, TcpConfig};

/// One step of a connection, `at_ns` ns after its first segment.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// The peer's segment arrives: its TCP header and text as on the wire.
    In {
        /// When.
        at_ns: u64,
        /// TCP header and text.
        segment: &'static [u8],
    },
    /// The app writes these bytes.
    Send {
        /// When.
        at_ns: u64,
        /// The bytes.
        data: &'static [u8],
    },
    /// The app closes its side.
    Close {
        /// When.
        at_ns: u64,
    },
    /// vnic sends this segment (TCP header and text as on the wire).
    Out {
        /// When the trace shows it.
        at_ns: u64,
        /// The trace's frame number, for the failure message.
        frame: usize,
        /// TCP header and text.
        segment: &'static [u8],
    },
}

/// One connection of a trace.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// vnic's end.
    pub local: &'static str,
    /// The peer's end.
    pub remote: &'static str,
    /// vnic's ISN (the trace's SYN|ACK).
    pub iss: u32,
    /// Opened from a SYN cookie's ACK with this MSS (its SYN|ACK was the
    /// adapter's); None: from a SYN.
    pub cookie_mss: Option<u16>,
    /// Nagle off (the app's choice: `TCP_NODELAY`).
    pub nodelay: bool,
    /// The steps, in the trace's order.
    pub steps: &'static [Step],
}

/// Segments one service pass may send, as a processor's pass.
const MAX_SEGMENTS_PER_PASS: usize = 64;

/// Drives the stack through `case` with `tcp`'s settings; the first
/// segment that differs from the trace's (or is missing, or extra) is
/// the error, in one paragraph.
pub fn check(case: &Case, tcp: &TcpConfig) -> Result<(), String> {
    let local: SocketAddr = case
        .local
        .parse()
        .map_err(|_| format!("bad local address {}", case.local))?;
    let remote: SocketAddr = case
        .remote
        .parse()
        .map_err(|_| format!("bad remote address {}", case.remote))?;
    let tuple = FourTuple { local, remote };
    let t0 = Instant::now();
    let at = |ns: u64| t0 + Duration::from_nanos(ns);
    let mut want = case.steps.iter().filter_map(|s| match *s {
        Step::Out { frame, segment, .. } => Some((frame, segment)),
        _ => None,
    });
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut conn: Option<Connection> = None;
    let mut pending: Vec<u8> = Vec::new();
    let mut close = false;
    let mut checked = 0usize;
    // Steps at one time are one turn of the processor: the segments in,
    // the app's writes by then, the service pass, then the timers due (a
    // time with only `Out` steps is a turn of the timers alone). An `Out`
    // among the turn's segments was serviced at once, after those before.
    let mut i = 0;
    while let Some(first) = case.steps.get(i) {
        let t = time_of(first);
        let now = at(t);
        let mut input = false;
        while let Some(step) = case.steps.get(i).filter(|s| time_of(s) == t) {
            // What went out within the batch (an out-of-order segment's
            // ACK) went out after the segments before it.
            if let (Step::Out { .. }, true, Some(c)) = (step, input, conn.as_mut()) {
                service(c, now, &mut pending, close, &mut got);
                input = false;
            }
            match *step {
                Step::In { segment, .. } => {
                    let seg = parse(&tuple, segment)?;
                    match conn.as_mut() {
                        Some(c) => {
                            let _ = c.on_segment(now, &seg);
                        }
                        None => conn = Some(open(case, tcp, tuple, now, &seg)?),
                    }
                    input = true;
                }
                Step::Send { data, .. } => {
                    pending.extend_from_slice(data);
                    input = true;
                }
                Step::Close { .. } => {
                    close = true;
                    input = true;
                }
                Step::Out { .. } => {}
            }
            i += 1;
        }
        if let Some(c) = conn.as_mut() {
            if input {
                service(c, now, &mut pending, close, &mut got);
            }
            fire_timers(c, now, &mut pending, close, &mut got);
        }
        for g in got.drain(..) {
            checked += 1;
            let Some((frame, w)) = want.next() else {
                return Err(format!(
                    "{} > {}: segment {checked} is not in the trace: {}",
                    case.local,
                    case.remote,
                    describe(&g)
                ));
            };
            if let Some(field) = differs(w, &g) {
                return Err(format!(
                    "{} > {}: segment {checked} (trace frame {frame}) differs in {field}: \
                     trace has {}, the stack has {}",
                    case.local,
                    case.remote,
                    describe(w),
                    describe(&g)
                ));
            }
        }
    }
    if let Some((frame, w)) = want.next() {
        return Err(format!(
            "{} > {}: the stack did not send trace frame {frame}: {}",
            case.local,
            case.remote,
            describe(w)
        ));
    }
    Ok(())
}

/// When a step happens.
fn time_of(s: &Step) -> u64 {
    match *s {
        Step::In { at_ns, .. }
        | Step::Send { at_ns, .. }
        | Step::Close { at_ns }
        | Step::Out { at_ns, .. } => at_ns,
    }
}

/// The connection a case opens with its first segment.
fn open(
    case: &Case,
    tcp: &TcpConfig,
    tuple: FourTuple,
    now: Instant,
    seg: &Segment,
) -> Result<Connection, String> {
    let mut c = match case.cookie_mss {
        Some(mss) => Connection::accept_cookie(now, tcp, tuple, seg, mss)
            .ok_or_else(|| "the first segment of a cookie connection carries no ACK".to_string())?,
        None => Connection::accept(now, tcp, tuple, seg, SeqNumber(case.iss)),
    };
    c.set_nodelay(case.nodelay);
    Ok(c)
}

/// The peer's segment, its checksum not checked (with offloads the
/// trace holds the kernel's partial sums).
fn parse(tuple: &FourTuple, bytes: &[u8]) -> Result<Segment, String> {
    let (mut seg, text) = wire::parse_header(tuple.remote.ip(), tuple.local.ip(), bytes, false)
        .map_err(|e| format!("a segment of the case does not parse: {e}"))?;
    seg.payload = Payload::from(bytes.get(text..).unwrap_or_default().to_vec());
    Ok(seg)
}

/// Fires the connection's timers due by `now`, at `now`, as a
/// processor's loop does (bounded: a timer that stays due is a bug the
/// comparison then shows).
fn fire_timers(
    c: &mut Connection,
    now: Instant,
    pending: &mut Vec<u8>,
    close: bool,
    got: &mut Vec<Vec<u8>>,
) {
    for _ in 0..64 {
        match c.poll_timeout() {
            Some(d) if d <= now => {
                c.on_timeout(now);
                service(c, now, pending, close, got);
            }
            _ => return,
        }
    }
}

/// A processor's service pass: the app's turn (it reads everything, and
/// writes what it has), then what the stack sends; twice when an event
/// came.
fn service(
    c: &mut Connection,
    now: Instant,
    pending: &mut Vec<u8>,
    close: bool,
    got: &mut Vec<Vec<u8>>,
) {
    let mut budget = MAX_SEGMENTS_PER_PASS;
    for _ in 0..2 {
        let mut readable = false;
        let mut closed = false;
        while let Some(ev) = c.poll_event() {
            match ev {
                vnic_stack::Event::Retransmit => {}
                vnic_stack::Event::Closed(_) => closed = true,
                _ => readable = true,
            }
        }
        if !closed {
            let mut sink = [0u8; 16 * 1024];
            while c.recv(&mut sink) > 0 {}
            if !pending.is_empty() {
                let n = c.send(pending);
                pending.drain(..n);
            }
            if close && pending.is_empty() {
                c.close();
            }
        }
        while budget > 0 {
            let Some(seg) = c.poll_transmit(now) else {
                break;
            };
            budget -= 1;
            let mut b = Vec::new();
            seg.emit_without_checksum(&mut b);
            got.push(b);
        }
        if !readable {
            break;
        }
    }
}

/// The first field in which two TCP segments differ (checksum, TSval
/// and PSH left out), if any.
pub fn differs(a: &[u8], b: &[u8]) -> Option<String> {
    let (fa, pa) = fields(a);
    let (fb, pb) = fields(b);
    for ((k, va), (_, vb)) in fa.iter().zip(&fb) {
        if va != vb {
            return Some((*k).to_string());
        }
    }
    if fa.len() != fb.len() {
        return Some("the header".into());
    }
    (pa != pb).then(|| "the text".to_string())
}

/// A TCP segment's compared fields, and its text.
fn fields(b: &[u8]) -> (Vec<(&'static str, String)>, Vec<u8>) {
    use etherparse::{TcpOptionElement, TcpSlice};
    let Ok(t) = TcpSlice::from_slice(b) else {
        return (vec![("bytes", format!("{b:02x?}"))], Vec::new());
    };
    let mut opts = Vec::new();
    for o in t.options_iterator() {
        opts.push(match o {
            Ok(TcpOptionElement::Timestamp(_, ecr)) => format!("TS ecr {ecr}"),
            Ok(o) => format!("{o:?}"),
            Err(e) => format!("bad ({e})"),
        });
    }
    let flags: String = [
        (t.syn(), 'S'),
        (t.fin(), 'F'),
        (t.rst(), 'R'),
        (t.ack(), '.'),
        (t.urg(), 'U'),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, c)| *c)
    .collect();
    (
        vec![
            (
                "ports",
                format!("{}>{}", t.source_port(), t.destination_port()),
            ),
            ("flags", flags),
            ("seq", t.sequence_number().to_string()),
            ("ack", t.acknowledgment_number().to_string()),
            ("win", t.window_size().to_string()),
            ("urg", t.urgent_pointer().to_string()),
            ("options", opts.join(",")),
            ("len", t.payload().len().to_string()),
        ],
        t.payload().to_vec(),
    )
}

/// A segment in one line: `[S.] seq 1 ack 2 win 3 len 0 <mss 1460>`.
pub fn describe(b: &[u8]) -> String {
    let (f, _) = fields(b);
    let get = |k: &str| {
        f.iter()
            .find(|(n, _)| *n == k)
            .map_or(String::new(), |(_, v)| v.clone())
    };
    format!(
        "[{}] seq {} ack {} win {} len {} <{}>",
        get("flags"),
        get("seq"),
        get("ack"),
        get("win"),
        get("len"),
        get("options")
    )
}
