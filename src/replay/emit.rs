//! `vnic replay --emit-test PATH`: a trace's TCP connections written as a
//! Rust regression test of the stack ([`super::stack_case`]). The file
//! goes in `tests/regressions/` and is wired by a `mod NAME;` line in
//! `tests/regressions.rs` (and its cases added to the list there that
//! runs them against the broken stack).

use super::compare::{decode, Stream};
use super::script;
use super::trace::{Trace, TraceFrame};
use super::ReplayError;
use std::fmt::Write as _;
use std::time::Duration;
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
    let od = |o: &Option<Duration>| o.as_ref().map_or("None".to_string(), |x| format!("Some({})", d(x)));
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
    syn: bool,
    ack: bool,
    mss: Option<u16>,
}

fn tcp(f: &TraceFrame) -> Option<Tcp<'_>> {
    use etherparse::{NetSlice, SlicedPacket, TcpOptionElement, TransportSlice};
    let p = SlicedPacket::from_ethernet(&f.data).ok()?;
    let (src, dst) = match &p.net {
        Some(NetSlice::Ipv4(v)) => (
            std::net::IpAddr::V4(v.header().source_addr()),
            std::net::IpAddr::V4(v.header().destination_addr()),
        ),
        Some(NetSlice::Ipv6(v)) => (
            std::net::IpAddr::V6(v.header().source_addr()),
            std::net::IpAddr::V6(v.header().destination_addr()),
        ),
        _ => return None,
    };
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        return None;
    };
    let a = std::net::SocketAddr::new(src, t.source_port());
    let b = std::net::SocketAddr::new(dst, t.destination_port());
    let tuple = match f.dir {
        Direction::Out => FourTuple { local: a, remote: b },
        Direction::In => FourTuple { local: b, remote: a },
    };
    let mss = t.options_iterator().find_map(|o| match o {
        Ok(TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
        _ => None,
    });
    Some(Tcp {
        tuple,
        bytes: t.slice(),
        syn: t.syn(),
        ack: t.ack(),
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

/// The input steps of one connection (its segments in, the app's writes
/// and close) and its zero time, from `trace`.
fn inputs(
    trace: &Trace,
    tuple: FourTuple,
    scripts: &mut script::Scripts,
) -> Result<Option<(Duration, Option<u16>, u32, Vec<(u64, String)>)>, ReplayError> {
    // Where the connection opens: a SYN to a processor, or (SYN cookies)
    // the ACK after the adapter's SYN|ACK.
    let mut cookie_mss = None;
    let mut syn_mss = None;
    let mut iss = None;
    let mut zero = None;
    let mut steps: Vec<(u64, String)> = Vec::new();
    // The connection's frames, in order: (frame number, direction).
    let mut order: Vec<(usize, Direction)> = Vec::new();
    for f in &trace.frames {
        let Some(t) = tcp(f) else { continue };
        if t.tuple != tuple {
            continue;
        }
        order.push((f.number, f.dir));
        match f.dir {
            Direction::In => {
                if t.syn && !t.ack {
                    syn_mss = t.mss;
                }
                if !f.comment.starts_with("in cpu=") {
                    continue; // the adapter answered it, or dropped it
                }
                let z = *zero.get_or_insert(f.at);
                let at = us(f.at.saturating_sub(z));
                steps.push((at, format!(
                    "Step::In {{ at_us: {at}, segment: {} }}",
                    bytes_literal(t.bytes)
                )));
            }
            Direction::Out => {
                if f.comment.ends_with(" gso") {
                    return Err(ReplayError::Format(format!(
                        "frame {}: a TSO frame (offloads on): the stack sends one segment at a \
                         time; record with --offload off",
                        f.number
                    )));
                }
                if t.syn && t.ack && iss.is_none() {
                    let seq = u32::from_be_bytes([t.bytes[4], t.bytes[5], t.bytes[6], t.bytes[7]]);
                    iss = Some(seq);
                    if f.comment.starts_with("out adapter") {
                        cookie_mss = Some(SynCookies::cookie_mss(syn_mss));
                    }
                }
            }
        }
    }
    let (Some(zero), Some(iss)) = (zero, iss) else {
        return Ok(None);
    };
    // The app's writes, each at the turn that made it: the segment just
    // before the frame that first carried it, when no frame of the
    // connection came between (a reply); else at its own time.
    let script = scripts
        .get_mut(&tuple)
        .and_then(std::collections::VecDeque::pop_front)
        .unwrap_or_default();
    let first_carrier = |at: Duration| {
        trace
            .frames
            .iter()
            .find(|f| f.dir == Direction::Out && f.at == at && tcp(f).is_some_and(|t| t.tuple == tuple))
            .map(|f| f.number)
    };
    let turn_of = |at: Duration| -> u64 {
        let own = us(at.saturating_sub(zero));
        let Some(n) = first_carrier(at) else {
            return own;
        };
        let pos = order.iter().position(|(m, _)| *m == n).unwrap_or(0);
        match pos.checked_sub(1).and_then(|p| order.get(p)) {
            Some((m, Direction::In)) => trace
                .frames
                .get(m - 1)
                .map_or(own, |f| us(f.at.saturating_sub(zero))),
            _ => own,
        }
    };
    for (at, data) in &script.sends {
        let t = turn_of(*at);
        steps.push((t, format!("Step::Send {{ at_us: {t}, data: {} }}", bytes_literal(data))));
    }
    if let Some(at) = script.fin {
        let t = turn_of(at);
        steps.push((t, format!("Step::Close {{ at_us: {t} }}")));
    }
    Ok(Some((zero, cookie_mss, iss, steps)))
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
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
/// the app's writes from `trace`, the expected outbound segments from
/// `expected` (the same trace, or `--against`'s). `name` is the test
/// function's name. The TCP settings are those the trace's vnic used,
/// given as `tcp`.
pub fn emit_case_file(
    trace: &Trace,
    expected: &Trace,
    name: &str,
    tcp_cfg: &TcpConfig,
    nodelay: &dyn Fn(u16) -> bool,
) -> Result<String, ReplayError> {
    let mut scripts = script::scripts(&trace.frames, Duration::ZERO);
    let mut cases = String::new();
    let mut n = 0;
    for tuple in super::run::connections(trace) {
        let Some((zero, cookie_mss, iss, mut steps)) = inputs(trace, tuple, &mut scripts)? else {
            continue;
        };
        // The expected segments: the processors' frames of this
        // connection (the adapter's SYN|ACK of a cookie is not the stack's).
        let mut exp_zero = None;
        for f in &expected.frames {
            let Some(t) = tcp(f) else { continue };
            if t.tuple != tuple {
                continue;
            }
            if f.dir == Direction::In && f.comment.starts_with("in cpu=") {
                exp_zero.get_or_insert(f.at);
            }
            if f.dir != Direction::Out || !f.comment.starts_with("out cpu=") {
                continue;
            }
            if let Stream::Tcp { .. } = decode(&f.data, &f.comment).stream {
                let at = us(f.at.saturating_sub(exp_zero.unwrap_or(zero)));
                steps.push((at, format!(
                    "Step::Out {{ at_us: {at}, frame: {}, segment: {} }}",
                    f.number,
                    bytes_literal(t.bytes)
                )));
            }
        }
        steps.sort_by_key(|(at, _)| *at);
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
        for (_, s) in &steps {
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
         //! Wired by `mod {name};` in tests/regressions.rs.\n\n\
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
