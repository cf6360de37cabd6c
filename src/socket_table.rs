//! The socket table of `vnic status --sockets` as text: one line per
//! listener and connection, with every field of its JSON, in the columns
//! NonStop's STATUS and `ss -ti` use.

use std::fmt::Write;
use vnic_listeners::control::{SocketRow, SocketTable};

/// The table: a header line (how many, when, how long the processors
/// took, who is missing), the column names, then one line per row.
pub fn table(t: &SocketTable) -> String {
    // Addresses vary from `*` to a full IPv6 address: columns as wide as
    // the widest.
    let width = |f: fn(&SocketRow) -> usize| t.rows.iter().map(f).max().unwrap_or(0).max(5);
    let lw = width(|r| r.laddr.len());
    let fw = width(|r| r.faddr.len());
    let sw = width(|r| r.state.len()).max(12);
    let mut s = String::with_capacity(128 * (t.rows.len() + 3));
    let missing = if t.missing.is_empty() {
        String::new()
    } else {
        let ids: Vec<String> = t.missing.iter().map(usize::to_string).collect();
        format!("  not listed: processor {}", ids.join(", "))
    };
    let _ = writeln!(
        s,
        "sockets: {}  Sample Time {}  listed in {:.1} ms{missing}",
        t.rows.len(),
        t.sample_time,
        t.collect_ms
    );
    let _ = writeln!(
        s,
        "{:<5} {:<sw$} {:<lw$} {:>5} {:<fw$} {:>5} {:>8} {:>8} {:>4} {:>8} {:>8} {:>7} {:>8} {:>8} {:>6} {:>12} {:>12}",
        "Proto",
        "State",
        "Laddr",
        "Lport",
        "Faddr",
        "Fport",
        "SendQ",
        "RecvQ",
        "cpu",
        "conn",
        "cwnd",
        "cc",
        "srtt-ms",
        "rto-ms",
        "rexmt",
        "bytes-in",
        "bytes-out"
    );
    let dash = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    for r in &t.rows {
        let _ = writeln!(
            s,
            "{:<5} {:<sw$} {:<lw$} {:>5} {:<fw$} {:>5} {:>8} {:>8} {:>4} {:>8} {:>8} {:>7} {:>8} {:>8} {:>6} {:>12} {:>12}",
            r.proto,
            r.state,
            r.laddr,
            r.lport,
            r.faddr,
            r.fport.map_or_else(|| "*".to_string(), |p| p.to_string()),
            r.send_q,
            r.recv_q,
            r.processor,
            dash(r.connection),
            dash(r.cwnd),
            r.cc.as_deref().unwrap_or("-"),
            ms(r.srtt_ms),
            ms(r.rto_ms),
            dash(r.retransmits),
            dash(r.bytes_in),
            dash(r.bytes_out)
        );
    }
    s
}
