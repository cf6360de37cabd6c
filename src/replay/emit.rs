//! `vnic replay --emit-test PATH`: a trace's TCP connections written as a
//! Rust regression test of the stack ([`super::stack_case`]). The file
//! goes in `tests/regressions/` and is wired by a `mod NAME;` line in
//! `tests/regressions.rs` (and its cases added to the list there that
//! runs them against the broken stack).

use super::trace::{Trace, TraceFrame};
use super::ReplayError;
use std::fmt::Write as _;
use std::time::Duration;
use vnic_adapter::trace::turn::parse_turn;
use vnic_adapter::trace::Direction;
use vnic_stack::{CongestionAlgorithm, FourTuple, SynCookies, TcpConfig};

/// The processors' TCP settings as a Rust expression (every field
/// named: a field added to `TcpConfig` makes this fail to compile until
/// it is written here too).
pub fn tcp_config_literal(c: &TcpConfig) -> String {
    let TcpConfig {
        mtu,
        recv_buffer,
        send_buffer,
        time_wait,
        rto_initial,
        rto_min,
        rto_max,
        max_retransmissions,
        total_retransmission_time,
        syn_retransmissions,
        congestion,
        delayed_ack,
        nodelay,
        sack,
        timestamps,
        challenge_ack_limit,
        sws_override,
        idle_timeout,
        zero_window_timeout,
    } = c;
    let d = |d: &Duration| format!("Duration::from_nanos({})", d.as_nanos());
    let od = |o: &Option<Duration>| {
        o.as_ref()
            .map_or("None".to_string(), |x| format!("Some({})", d(x)))
    };
    let cc = match congestion {
        CongestionAlgorithm::Cubic => "Cubic",
        CongestionAlgorithm::NewReno => "NewReno",
        CongestionAlgorithm::Bbr => "Bbr",
    };
    format!(
        "TcpConfig {{\n        mtu: {mtu},\n        recv_buffer: {recv_buffer},\n        \
         send_buffer: {send_buffer},\n        time_wait: {},\n        rto_initial: {},\n        \
         rto_min: {},\n        rto_max: {},\n        max_retransmissions: {max_retransmissions},\n        \
         total_retransmission_time: {},\n        syn_retransmissions: {syn_retransmissions},\n        \
         congestion: CongestionAlgorithm::{cc},\n        delayed_ack: {},\n        \
         nodelay: {nodelay},\n        sack: {sack},\n        timestamps: {timestamps},\n        \
         challenge_ack_limit: {challenge_ack_limit},\n        sws_override: {},\n        \
         idle_timeout: {},\n        zero_window_timeout: {},\n    }}",
        d(time_wait),
        d(rto_initial),
        d(rto_min),
        d(rto_max),
        od(total_retransmission_time),
        d(delayed_ack),
        d(sws_override),
        od(idle_timeout),
        od(zero_window_timeout),
    )
}

/// One frame's TCP header and text (the IP packet's payload, without the
/// Ethernet padding), its 4-tuple (vnic's end local) and flags.
struct Tcp<'a> {
    tuple: FourTuple,
    bytes: &'a [u8],
    payload: &'a [u8],
    syn: bool,
    ack: bool,
    fin: bool,
    mss: Option<u16>,
}

fn tcp(f: &TraceFrame) -> Option<Tcp<'_>> {
    use etherparse::TcpOptionElement;
    let (a, b, t) = super::trace::tcp_slice(&f.data)?;
    let tuple = match f.dir {
        Direction::Out => FourTuple {
            local: a,
            remote: b,
        },
        Direction::In => FourTuple {
            local: b,
            remote: a,
        },
    };
    let mss = t.options_iterator().find_map(|o| match o {
        Ok(TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
        _ => None,
    });
    Some(Tcp {
        tuple,
        bytes: t.slice(),
        payload: t.payload(),
        syn: t.syn(),
        ack: t.ack(),
        fin: t.fin(),
        mss,
    })
}

/// Bytes as a Rust byte-string literal.
fn bytes_literal(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 4 + 3);
    s.push_str("b\"");
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s.push('"');
    s
}

/// When things happened, in ns since the trace's zero (the ISN and
/// cookie clocks' start): a processor's frames at their turn's stamp
/// (the clock reading the processor used), a segment at the first turn
/// of its processor that had taken it (when it was handled), anything
/// else at its own time.
struct Times {
    zero: Duration,
    /// Per processor: when it took each of its segments
    /// ([`super::plan::when_taken`]).
    plan: Vec<Vec<u64>>,
    /// Per trace frame index: (processor, its index among the segments
    /// queued for that processor), for the segments.
    queued: Vec<Option<(usize, u64)>>,
}

impl Times {
    fn of(trace: &Trace) -> Times {
        let zero = super::run::zero_of(trace);
        let n = trace
            .frames
            .iter()
            .filter_map(|f| super::run::processor_in_comment(&f.comment))
            .max()
            .map_or(1, |k| k + 1);
        let turns = super::plan::turns(trace, n);
        let (plan, _) = super::plan::when_taken(trace, &turns, zero);
        let mut counts = vec![0u64; n];
        let queued = trace
            .frames
            .iter()
            .map(|f| {
                let k = super::run::queued_for(f)?;
                let c = counts.get_mut(k)?;
                *c += 1;
                Some((k, *c))
            })
            .collect();
        Times { zero, plan, queued }
    }

    /// The frame at index `i` of the trace: when it counts, and after
    /// how many of its processor's segments (a segment: its own index).
    fn at(&self, trace: &Trace, i: usize) -> (u64, u64) {
        let f = &trace.frames[i];
        let own = ns(f.at.saturating_sub(self.zero));
        if f.dir == Direction::Out {
            return parse_turn(&f.comment).unwrap_or((own, 0));
        }
        let Some((k, j)) = self.queued.get(i).copied().flatten() else {
            return (own, 0);
        };
        let t = self
            .plan
            .get(k)
            .and_then(|v| v.get(usize::try_from(j).ok()?.checked_sub(1)?))
            .copied()
            .unwrap_or(own);
        (t, j)
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One connection's steps: (time, segments taken, order within those,
/// Rust text).
type Steps = Vec<(u64, u64, u8, String)>;

/// The input steps of one connection from `trace` (its segments in, the
/// app's writes and close), with vnic's ISN and, for a SYN cookie's
/// connection, the cookie's MSS. None when no processor opened it.
fn inputs(
    trace: &Trace,
    times: &Times,
    tuple: FourTuple,
) -> Result<Option<(Option<u16>, u32, Steps)>, ReplayError> {
    let mut cookie_mss = None;
    let mut syn_mss = None;
    let mut iss = None;
    let mut steps = Steps::new();
    // The connection's app's bytes, in stream order: (time first sent,
    // bytes), and its FIN's time.
    let mut base = None;
    let mut high = 0u64;
    let mut fin = None;
    // The turns the app could have written in: the connection's opening
    // and each segment that brought it data, (time, segments taken).
    let mut inputs: Vec<(u64, u64)> = Vec::new();
    // The app's bytes: (the turn that first sent them, the bytes).
    let mut sends: Vec<((u64, u64), &[u8])> = Vec::new();
    for (i, f) in trace.frames.iter().enumerate() {
        let Some(t) = tcp(f) else { continue };
        if t.tuple != tuple {
            continue;
        }
        let (at, m) = times.at(trace, i);
        match f.dir {
            Direction::In => {
                if t.syn && !t.ack {
                    syn_mss = t.mss;
                }
                if f.comment.starts_with("in cpu=") {
                    if inputs.is_empty() || !t.payload.is_empty() {
                        inputs.push((at, m));
                    }
                    steps.push((
                        at,
                        m,
                        0,
                        format!(
                            "Step::In {{ at_ns: {at}, segment: {} }}",
                            bytes_literal(t.bytes)
                        ),
                    ));
                }
            }
            Direction::Out => {
                if f.comment.ends_with(" gso") {
                    return Err(ReplayError::Format(format!(
                        "frame {}: a TSO frame (offloads on): the stack sends one segment at a \
                         time; record with --offload off",
                        f.number
                    )));
                }
                let seq = u32::from_be_bytes([t.bytes[4], t.bytes[5], t.bytes[6], t.bytes[7]]);
                if t.syn && t.ack {
                    if iss.is_none() {
                        iss = Some(seq);
                        base = Some(seq.wrapping_add(1));
                        if f.comment.starts_with("out adapter") {
                            cookie_mss = Some(SynCookies::cookie_mss(syn_mss));
                        }
                    }
                    continue;
                }
                let Some(b) = base else { continue };
                let off = u64::from(seq.wrapping_sub(b));
                let text = t.payload;
                let end = off + text.len() as u64;
                if end > high && off <= high {
                    let skip = usize::try_from(high - off).unwrap_or(usize::MAX);
                    if let Some(new) = text.get(skip..) {
                        sends.push(((at, m), new));
                    }
                    high = end;
                }
                if t.fin && fin.is_none() {
                    fin = Some((at, m));
                }
            }
        }
    }
    // Each write in the turn of the last input before it went out: a
    // reply as its request came, a stream from the start (what the app
    // had written and TCP not yet sent decides segments and cwnd growth).
    // The trace may show a segment after the turn that took it (the RX
    // thread and the processor race to it): the inputs are sorted first.
    inputs.sort_unstable();
    for (sent, bytes) in sends {
        let (w, wm) = inputs
            .iter()
            .rev()
            .find(|i| **i <= sent)
            .copied()
            .unwrap_or(sent);
        steps.push((
            w,
            wm,
            1,
            format!(
                "Step::Send {{ at_ns: {w}, data: {} }}",
                bytes_literal(bytes)
            ),
        ));
    }
    if let Some((at, m)) = fin {
        steps.push((at, m, 2, format!("Step::Close {{ at_ns: {at} }}")));
    }
    let (Some(iss), true) = (iss, steps.iter().any(|s| s.2 == 0)) else {
        return Ok(None);
    };
    Ok(Some((cookie_mss, iss, steps)))
}

/// The test file for `trace`'s connections, with the TCP settings and
/// Nagle choices the replay of it (`outcome`) ran with.
pub fn emit_test(
    trace: &Trace,
    expected: &Trace,
    name: &str,
    outcome: &super::Outcome,
) -> Result<String, ReplayError> {
    let nodelay = |port: u16| outcome.nodelay.get(&port).copied().unwrap_or(false);
    emit_case_file(trace, expected, name, &outcome.tcp, &nodelay)
}

/// The test file for `trace`'s connections: the inbound segments and
/// the app's writes from `trace`, the expected outbound segments (a
/// processor's: a SYN cookie's SYN|ACK is the adapter's) from `expected`
/// (the same trace, or `--against`'s). Times are ns from each
/// connection's first segment; steps at one time are one turn of the
/// processor. `name` is the test function's name, `tcp_cfg` the TCP
/// settings, `nodelay` the apps' Nagle choice per port.
pub fn emit_case_file(
    trace: &Trace,
    expected: &Trace,
    name: &str,
    tcp_cfg: &TcpConfig,
    nodelay: &dyn Fn(u16) -> bool,
) -> Result<String, ReplayError> {
    let times = Times::of(trace);
    let expected_times = Times::of(expected);
    let mut cases = String::new();
    let mut n = 0;
    for tuple in super::run::connections(trace) {
        let Some((cookie_mss, iss, mut steps)) = inputs(trace, &times, tuple)? else {
            continue;
        };
        let mut outs = Steps::new();
        for (i, f) in expected.frames.iter().enumerate() {
            let Some(t) = tcp(f) else { continue };
            if t.tuple != tuple || f.dir != Direction::Out || !f.comment.starts_with("out cpu=") {
                continue;
            }
            let (at, m) = expected_times.at(expected, i);
            outs.push((
                at,
                m,
                3,
                format!(
                    "Step::Out {{ at_ns: {at}, frame: {}, segment: {} }}",
                    f.number,
                    bytes_literal(t.bytes)
                ),
            ));
        }
        steps.extend(outs);
        // In a turn's order: the segments up to the Nth, the app's writes
        // and what went out after N (an out-of-order segment's ACK goes
        // out within a batch), then the next segment.
        steps.sort_by_key(|(at, m, order, _)| (*at, *m, *order));
        let zero = steps.iter().find(|s| s.2 == 0).map_or(0, |s| s.0);
        n += 1;
        let _ = writeln!(
            cases,
            "    Case {{\n        local: \"{}\",\n        remote: \"{}\",\n        iss: {iss},\n        \
             cookie_mss: {:?},\n        nodelay: {},\n        steps: &[",
            tuple.local,
            tuple.remote,
            cookie_mss,
            nodelay(tuple.local.port())
        );
        for (at, _, _, s) in &steps {
            // Times from the connection's first segment.
            let rel = at.saturating_sub(zero);
            let s = s.replacen(&format!("at_ns: {at},"), &format!("at_ns: {rel},"), 1);
            let s = s.replacen(&format!("at_ns: {at} }}"), &format!("at_ns: {rel} }}"), 1);
            let _ = writeln!(cases, "            {s},");
        }
        let _ = writeln!(cases, "        ],\n    }},");
    }
    if n == 0 {
        return Err(ReplayError::Format(
            "the trace has no TCP connection a processor opened".into(),
        ));
    }
    Ok(format!(
        "//! Emitted by `vnic replay --emit-test` (vnic {}): the {n} TCP connection{} of a \
         trace,\n//! each the stack driven with the trace's inbound segments and its app's \
         writes,\n//! asserting the outbound segments (every field but the checksum and TSval).\n\
         //! Wired by `#[path = \"regressions/{name}.rs\"] mod {name};` in tests/regressions.rs.\n\n\
         use std::time::Duration;\n\
         use vnic::replay::stack_case::{{check, Case, Step}};\n\
         use vnic_stack::{{CongestionAlgorithm, TcpConfig}};\n\n\
         /// The TCP settings the trace's vnic ran with.\n\
         pub fn tcp() -> TcpConfig {{\n    {}\n}}\n\n\
         /// The trace's connections.\n\
         pub const CASES: &[Case] = &[\n{cases}];\n\n\
         #[test]\n\
         fn {name}() {{\n    for case in CASES {{\n        if let Err(e) = check(case, &tcp()) {{\n            \
         panic!(\"{{e}}\");\n        }}\n    }}\n}}\n",
        env!("CARGO_PKG_VERSION"),
        if n == 1 { "" } else { "s" },
        tcp_config_literal(tcp_cfg),
    ))
}
