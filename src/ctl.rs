//! `vnic status` and `vnic ctl`: the client side of the control socket.

mod links;

use crate::cli::{ControlArgs, CtlArgs, CtlCommand, ListenerOp, StatusArgs};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use vnic_listeners::control::{Request, Response, Status};

/// The longest answer the client reads (a status of hundreds of
/// processors and listeners is well under 1 MiB).
const MAX_ANSWER: u64 = 64 << 20;

/// The longest socket table the client reads: a row is about 250 bytes,
/// so this holds every connection vnic can have (131,072) a few times over.
const MAX_SOCKETS_ANSWER: u64 = 1 << 30;

/// A connection to a running vnic's control socket (also the start of a
/// live capture, `src/capture.rs`, which reads on from `reader`).
pub(crate) struct Client {
    pub(crate) writer: UnixStream,
    pub(crate) reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects to the vnic `args` names; errors are one line.
    pub(crate) fn connect(args: &ControlArgs) -> Result<Client, String> {
        let path = find_socket(args)?;
        let s = UnixStream::connect(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => format!(
                "cannot reach vnic at {}: permission denied (the control socket is for root, \
                 vnic's own user and the members of its --control-group)",
                path.display()
            ),
            _ => format!(
                "cannot reach vnic at {}: {e} (is it running? is this its --control path?)",
                path.display()
            ),
        })?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
        let reader = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
        Ok(Client { writer: s, reader })
    }

    /// Sends one request and reads its answer line.
    pub(crate) fn call(&mut self, req: &Request) -> Result<Response, String> {
        let max = match req {
            Request::Sockets { .. } => MAX_SOCKETS_ANSWER,
            _ => MAX_ANSWER,
        };
        let mut text = serde_json::to_string(req).map_err(|e| e.to_string())?;
        text.push('\n');
        let sent = self.writer.write_all(text.as_bytes());
        // A refused caller (not allowed, too many clients) gets one error
        // line and is disconnected, maybe before the request is written:
        // that line is still there to read, and says more than EPIPE.
        let mut line = String::new();
        let read = (&mut self.reader).take(max).read_line(&mut line);
        if line.ends_with('\n') {
            return serde_json::from_str(&line).map_err(|e| format!("bad answer from vnic: {e}"));
        }
        if let Err(e) = sent {
            return Err(format!("control socket: {e}"));
        }
        match read {
            Err(e) => Err(format!("control socket: {e}")),
            Ok(0) => Err("vnic closed the control connection".into()),
            Ok(_) if line.len() as u64 >= max => {
                Err(format!("answer from vnic longer than {max} bytes"))
            }
            Ok(_) => Err("vnic closed the control connection in the middle of an answer".into()),
        }
    }
}

/// The directories where a vnic's default control socket may be: the
/// caller's `$XDG_RUNTIME_DIR` (as `vnic-TAP.sock`) and `/run/vnic` (as
/// `TAP.sock`). Both are searched, because a vnic started with `sudo` has
/// root's environment (no `XDG_RUNTIME_DIR`: `/run/vnic`) while the user
/// asking has their own.
fn socket_dirs() -> Vec<(PathBuf, &'static str)> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        dirs.push((PathBuf::from(dir), "vnic-"));
    }
    dirs.push((PathBuf::from("/run/vnic"), ""));
    dirs
}

/// The control socket to talk to: `--control PATH`; else TAP's default
/// socket in the first of [`socket_dirs`] that has it; else, without
/// `--tap`, the only vnic socket found there. Every error names the paths
/// it tried.
pub fn find_socket(args: &ControlArgs) -> Result<PathBuf, String> {
    if let Some(p) = &args.control {
        return Ok(p.clone());
    }
    let dirs = socket_dirs();
    if let Some(tap) = &args.tap {
        let tried: Vec<PathBuf> = dirs
            .iter()
            .map(|(dir, prefix)| dir.join(format!("{prefix}{tap}.sock")))
            .collect();
        if let Some(found) = tried.iter().find(|p| answers(p)) {
            return Ok(found.clone());
        }
        return Err(format!(
            "no vnic on TAP {tap}: no control socket at {} (is it running? started with \
             --control PATH? then give the same --control)",
            list(&tried)
        ));
    }
    let mut found = Vec::new();
    for (dir, prefix) in &dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) && name.ends_with(".sock") && answers(&e.path()) {
                found.push(e.path());
            }
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!(
            "no running vnic found: no control socket in {} (say --tap NAME or --control PATH)",
            list(&dirs.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>())
        )),
        _ => Err(format!(
            "several vnics run here ({}): say which with --tap NAME or --control PATH",
            list(&found)
        )),
    }
}

/// A socket a vnic answers on (a socket file left by a crashed vnic
/// refuses the connection, and is passed over).
fn answers(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let socket = std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket());
    socket
        && match UnixStream::connect(p) {
            Ok(_) => true,
            // Not ours to use, but a vnic is there: say so when connecting.
            Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
        }
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Prints `vnic: MSG` on stderr (through the log); exit status 1.
pub(crate) fn fail(msg: impl std::fmt::Display) -> ExitCode {
    log::error!("{msg}");
    ExitCode::from(1)
}

/// `vnic status [--sockets [filters]] [--json] [--watch [--interval D]]`:
/// the flags are checked first (a bad one is one line and status 2), then
/// [`crate::watch::run`] asks and shows.
pub fn status(a: StatusArgs) -> ExitCode {
    let view = match crate::watch::View::from_args(&a) {
        Ok(v) => v,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut c = match Client::connect(&a.control) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    crate::watch::run(&view, &mut |req| c.call(req))
}

/// `vnic ctl ...`.
pub fn ctl(a: CtlArgs) -> ExitCode {
    let req = match a.what {
        CtlCommand::Processor { id, state } => Request::Processor { id, state },
        CtlCommand::Connection {
            op: crate::cli::ConnectionOp::Move { connection, to },
        } => Request::ConnectionMove { connection, to },
        CtlCommand::Filter {
            mode,
            port,
            protocol,
        } => Request::Filter {
            mode,
            port,
            protocol,
        },
        CtlCommand::Backend { id, state } => Request::Backend { id, state },
        CtlCommand::Stats { .. } => Request::StatsReset,
        CtlCommand::Link { name, state } => Request::Link { name, state },
        CtlCommand::Listener { op } => match op {
            ListenerOp::Add {
                port,
                processor,
                app,
                protocol,
                backup,
                address,
                key,
            } => Request::ListenerAdd {
                protocol,
                port,
                processor,
                app,
                backup,
                address,
                key,
            },
            ListenerOp::Remove {
                port,
                processor,
                protocol,
            } => Request::ListenerRemove {
                protocol,
                port,
                processor,
            },
        },
        CtlCommand::Trace {
            state,
            file,
            max_mb,
            max_files,
        } => {
            let file = match file.as_deref().map(absolute) {
                Some(Ok(f)) => Some(f),
                Some(Err(e)) => return fail(e),
                None => None,
            };
            Request::Trace {
                on: state == "on",
                file,
                max_mb,
                max_files,
            }
        }
    };
    let mut c = match Client::connect(&a.control) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match c.call(&req) {
        Ok(r) if r.ok => {
            for n in &r.notes {
                println!("{n}");
            }
            ExitCode::SUCCESS
        }
        Ok(r) => fail(r.error.unwrap_or_else(|| "refused".into())),
        Err(e) => fail(e),
    }
}

/// `file` made absolute from this process's working directory (vnic's own
/// would mean nothing to the caller), as the request carries it.
fn absolute(file: &Path) -> Result<String, String> {
    let abs = std::path::absolute(file)
        .map_err(|e| format!("cannot make {} an absolute path: {e}", file.display()))?;
    abs.into_os_string().into_string().map_err(|p| {
        format!(
            "{} is not UTF-8: the control protocol carries text",
            Path::new(&p).display()
        )
    })
}

/// The human table of `vnic status`: every field of the JSON.
pub fn table(st: &Status) -> String {
    table_with(st, None)
}

/// The table, with the rates of `vnic status --watch` beside the totals
/// when given.
pub fn table_with(st: &Status, rates: Option<&crate::watch::Rates>) -> String {
    // Ports placed by a policy of their own: "filter=round-robin (80: hash)".
    let own: Vec<String> = st
        .port_filters
        .iter()
        .map(|p| match p.protocol.as_str() {
            "tcp" => format!("{}: {}", p.port, p.filter),
            proto => format!("{}/{proto}: {}", p.port, p.filter),
        })
        .collect();
    let filter = if own.is_empty() {
        st.filter.clone()
    } else {
        format!("{} ({})", st.filter, own.join(", "))
    };
    let mut s = format!(
        "vnic on {}  model={}  filter={}  up {:.0}s\n\
         Reset Time {}  Sample Time {}  ({:.1}s of counters)\n\n",
        st.tap,
        st.model,
        filter,
        st.uptime_secs,
        or_dash(&st.reset_time),
        or_dash(&st.sample_time),
        st.since_reset_secs
    );
    s.push_str(&processor_tables(st, rates));
    for p in &st.processors {
        if let Some(why) = &p.failure {
            s.push_str(&format!("processor {} failed: {why}\n", p.id));
            if let Some(r) = &p.restart {
                s.push_str(&format!("processor {} restart: {r}\n", p.id));
            }
        }
        if p.restarts > 0 {
            s.push_str(&format!(
                "processor {} restarted {} times; resyncs {}\n",
                p.id, p.restarts, p.resyncs
            ));
        }
    }
    s.push_str(&adapter_lines(st, rates));
    if let Some(l) = &st.links {
        s.push_str(&links::links_table(l));
    }
    if !st.pairs.is_empty() {
        s.push_str(&format!(
            "\npairs: {:>7} {:>5} {:>6} {:>11} {:>12} {:>7} {:>9} {:>9} {:>9} {:>7}\n",
            "primary",
            "port",
            "backup",
            "checkpoints",
            "bytes",
            "standby",
            "lag us",
            "max lag",
            "takeovers",
            "resyncs"
        ));
        for p in &st.pairs {
            s.push_str(&format!(
                "       {:>7} {:>5} {:>6} {:>11} {:>12} {:>7} {:>9} {:>9} {:>9} {:>7}\n",
                p.primary,
                p.port.map_or("all".to_string(), |p| p.to_string()),
                p.backup,
                p.checkpoints,
                p.checkpoint_bytes,
                p.standby,
                p.lag_us,
                p.max_lag_us,
                p.takeovers,
                p.resyncs
            ));
        }
    }
    if !st.listeners.is_empty() {
        s.push_str(&format!(
            "\n{:>4} {:<4} {:>6} {:<16} {:>4} {:>6} {:>7} {:<9} {:<9} {:<16}\n",
            "id", "prot", "port", "address", "cpu", "backup", "serving", "key", "app", "state"
        ));
        for l in &st.listeners {
            let opt = |v: Option<usize>| v.map_or("-".to_string(), |x| x.to_string());
            s.push_str(&format!(
                "{:>4} {:<4} {:>6} {:<16} {:>4} {:>6} {:>7} {:<9} {:<9} {:<16}\n",
                l.id,
                l.protocol,
                l.port,
                l.address.as_deref().unwrap_or("*"),
                l.processor,
                opt(l.backup),
                opt(l.serving),
                l.key.as_deref().unwrap_or("-"),
                l.app,
                l.state
            ));
        }
    }
    if !st.backends.is_empty() {
        s.push_str(&format!(
            "\n{:>8} {:<5} {:>10} {:>10} {:>9}\n",
            "backend", "state", "requests", "in-flight", "restarts"
        ));
        for b in &st.backends {
            s.push_str(&format!(
                "{:>8} {:<5} {:>10} {:>10} {:>9}\n",
                b.id, b.state, b.requests, b.in_flight, b.restarts
            ));
        }
    }
    for svc in &st.services {
        s.push_str(&service_table(svc));
    }
    let t = &st.trace;
    let rotation = match (t.max_mb, t.max_files) {
        (Some(mb), Some(n)) => format!(" (rotates at {mb} MiB, keeps {n} files)"),
        (Some(mb), None) => format!(" (rotates at {mb} MiB)"),
        (None, Some(n)) => format!(" (keeps {n} files)"),
        (None, None) => String::new(),
    };
    s.push_str(&format!(
        "trace: {}{}{rotation}  records {}  lost {}\n",
        if t.active { "on" } else { "off" },
        t.file
            .as_ref()
            .map(|f| format!(" file {f}"))
            .unwrap_or_default(),
        t.records,
        t.lost
    ));
    s.push_str(&capture_lines(t));
    s
}

/// The trace's filter and the live captures, a line each, for the
/// status table.
fn capture_lines(t: &vnic_listeners::control::protocol::TraceStatus) -> String {
    let mut s = String::new();
    if let Some(f) = &t.filter {
        s.push_str(&format!("trace filter: {f}\n"));
    }
    for c in &t.captures {
        let filter = c
            .filter
            .as_deref()
            .map_or("all".into(), |f| format!("'{f}'"));
        let cpu = c.processor.map_or("any".into(), |k| k.to_string());
        s.push_str(&format!(
            "capture {}: filter {filter}  cpu {cpu}  frames {}  lost {}  up {:.0}s\n",
            c.id, c.frames, c.lost, c.secs
        ));
    }
    s
}

/// `-` for a field an older vnic does not send.
fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// The processors in three tables: traffic (with rates when watching),
/// queues and limits, memory.
fn processor_tables(st: &Status, rates: Option<&crate::watch::Rates>) -> String {
    let rate = |per: Option<f64>| per.map_or("-".into(), crate::watch::human_rate);
    let mut head = vec!["cpu", "state", "active", "accepted"];
    if rates.is_some() {
        head.push("conn/s");
    }
    for total in ["frames-in", "frames-out", "bytes-in", "bytes-out"] {
        head.push(total);
        if rates.is_some() {
            head.push("/s");
        }
    }
    head.push("retrans");
    let traffic = st.processors.iter().map(|p| {
        let r = rates.and_then(|r| r.processors.iter().find(|q| q.id == p.id));
        let mut cells = vec![
            p.id.to_string(),
            p.state.clone(),
            p.active.to_string(),
            p.accepted.to_string(),
        ];
        if rates.is_some() {
            cells.push(rate(r.map(|r| r.connections_per_sec)));
        }
        for (total, per) in [
            (p.frames_in, r.map(|r| r.frames_in_per_sec)),
            (p.frames_out, r.map(|r| r.frames_out_per_sec)),
            (p.bytes_in, r.map(|r| r.bytes_in_per_sec)),
            (p.bytes_out, r.map(|r| r.bytes_out_per_sec)),
        ] {
            cells.push(total.to_string());
            if rates.is_some() {
                cells.push(rate(per));
            }
        }
        cells.push(p.retransmissions.to_string());
        cells
    });
    let limits = st.processors.iter().map(|p| {
        let ports: Vec<String> = (p.ports.iter().map(u16::to_string))
            .chain(p.udp_ports.iter().map(|u| format!("{u}/udp")))
            .collect();
        vec![
            p.id.to_string(),
            ports.join(","),
            p.queue_depth.to_string(),
            p.queue_bytes.to_string(),
            p.queue_drops.to_string(),
            p.queue_bytes_drops.to_string(),
            p.half_open.to_string(),
            p.refused.to_string(),
            p.panics.to_string(),
            p.datagrams.to_string(),
            p.replies_limited.to_string(),
            p.send_limited.to_string(),
        ]
    });
    let memory = st.processors.iter().map(|p| {
        vec![
            p.id.to_string(),
            mib(p.memory),
            mib(p.memory_budget),
            p.memory_refused.to_string(),
            p.memory_resets.to_string(),
            p.idle_resets.to_string(),
            p.zero_window_resets.to_string(),
        ]
    });
    [
        grid(&head, traffic),
        grid(
            &[
                "cpu",
                "ports",
                "queue",
                "queue-bytes",
                "queue-drops",
                "queue-bytes-drops",
                "half-open",
                "refused",
                "panics",
                "datagrams",
                "replies-limited",
                "send-limited",
            ],
            limits,
        ),
        grid(
            &[
                "cpu",
                "memory-MiB",
                "budget-MiB",
                "refused-for-memory",
                "reset-for-memory",
                "idle-resets",
                "zero-window-resets",
            ],
            memory,
        ),
    ]
    .join("\n")
}

/// A table: the heads, then the rows, each column right-aligned as wide
/// as its widest cell (and at least 4).
fn grid(head: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i).map(String::len))
            .chain([head[i].len(), 4])
            .max()
            .unwrap_or(4)
    };
    let widths: Vec<usize> = (0..head.len()).map(width).collect();
    let line = |cells: &[String]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:>w$}"))
            .collect();
        format!("{}\n", parts.join("  "))
    };
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    let mut s = line(&head);
    for r in &rows {
        s.push_str(&line(r));
    }
    s
}

/// The adapter's counters, every drop kind, the RX queues and the
/// impairment.
fn adapter_lines(st: &Status, rates: Option<&crate::watch::Rates>) -> String {
    let a = &st.adapter;
    let per_sec = rates
        .map(|r| {
            format!(
                "  ({}/s in, {}/s out)",
                crate::watch::human_rate(r.adapter.frames_in_per_sec),
                crate::watch::human_rate(r.adapter.frames_out_per_sec)
            )
        })
        .unwrap_or_default();
    let mut s = format!(
        "\nadapter: frames in {} out {}{per_sec}  tx-errors {}  not-for-us {}  flows {}  tcp dispatched {}\n\
         answers: arp {}  ndp {}  icmp-echo {}  port-unreachable {}  rst {}\n\
         syn cookies: sent {}  accepted {}\n",
        a.frames_in,
        a.frames_out,
        a.tx_errors,
        a.not_for_us,
        a.flows,
        a.tcp_dispatched,
        a.arp_replies,
        a.ndp_adverts,
        a.icmp_echo_replies,
        a.icmp_port_unreachable,
        a.rst_sent,
        a.syn_cookies_sent,
        a.syn_cookies_accepted
    );
    let per: Vec<String> = a.rx_queues.iter().map(u64::to_string).collect();
    s.push_str(&format!("rx queues: frames {}\n", per.join(" ")));
    if a.processor_queues {
        s.push_str(&format!(
            "processor queues: steered flows {}  handed back {}  lost {}\n",
            a.steered_flows, a.handed_back, a.handed_back_drops
        ));
    }
    let drops: Vec<String> = a.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
    s.push_str("dropped:");
    for chunk in drops.chunks(5) {
        s.push_str(&format!("  {}\n        ", chunk.join("  ")));
    }
    s.truncate(s.trim_end().len());
    s.push('\n');
    if let Some(i) = &st.impair {
        s.push_str(&format!(
            "impairment {}: lost {}  duplicated {}  reordered {}\n",
            i.spec, i.lost, i.duplicated, i.reordered
        ));
    }
    if let Some(t) = &st.tcp {
        s.push_str(&tcp_line(t));
    }
    s
}

/// The TCP settings in force, in the config file's own words and units.
fn tcp_line(t: &vnic_listeners::control::TcpStatus) -> String {
    let total = t
        .total_retransmission_time_ms
        .map_or_else(|| "none".to_string(), millis);
    let delayed = match t.delayed_ack {
        true => millis(t.delayed_ack_time_ms),
        false => "off".to_string(),
    };
    format!(
        "tcp: max-rto {}  max-retransmissions {}  total-retransmission-time {total}  \
         delayed-ack {delayed}  send-space {}\n",
        millis(t.max_rto_ms),
        t.max_retransmissions,
        bytes(t.send_space)
    )
}

/// Milliseconds as the config file writes them: `64s` or `40ms`.
fn millis(ms: u64) -> String {
    match ms % 1000 {
        0 => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// Bytes as the config file writes them: `1M`, `256K`, or a number.
fn bytes(b: u64) -> String {
    match b {
        0 => "0".into(),
        b if b % (1 << 20) == 0 => format!("{}M", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}K", b >> 10),
        b => b.to_string(),
    }
}

/// One service's counters as a table: a heading with its port and name,
/// then its rows under the union of their keys, in first-seen order (the
/// proxy's targets, exec's program).
fn service_table(svc: &vnic_listeners::stats::ServiceStatus) -> String {
    let mut keys: Vec<&str> = Vec::new();
    for row in &svc.rows {
        for k in row.keys() {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
    }
    // Names (a target, a program) before the numbers, each group in the
    // rows' own order.
    let is_name = |k: &str| {
        svc.rows
            .iter()
            .any(|r| matches!(r.get(k), Some(serde_json::Value::String(_))))
    };
    keys.sort_by_key(|k| !is_name(k));
    let cell = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "-".into(),
    };
    let cells = svc
        .rows
        .iter()
        .map(|r| keys.iter().map(|k| cell(r.get(*k))).collect());
    let head: Vec<String> = keys.iter().map(|k| k.replace('_', "-")).collect();
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    format!("\nport {} {}\n{}", svc.port, svc.app, grid(&head, cells))
}

/// Bytes as MiB with one decimal (the status table's memory column).
fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / f64::from(1u32 << 20))
}

#[cfg(test)]
mod table_tests {
    use super::*;
    use serde_json::{json, Value};

    /// A status with every optional part present and every list filled.
    fn full_status() -> Value {
        let processor = |id: u64, failure: Value| {
            json!({"id": id, "state": "failed", "failure": failure, "ports": [7, 80],
                   "udp_ports": [7],
                   "active": 0, "accepted": 0, "bytes_in": 0, "bytes_out": 0,
                   "queue_depth": 0, "queue_drops": 0, "retransmissions": 0, "panics": 0,
                   "refused": 0, "datagrams": 0, "half_open": 0, "replies_limited": 0,
                   "send_limited": 0, "queue_bytes": 0, "queue_bytes_drops": 0,
                   "memory": 0, "memory_budget": 0, "memory_refused": 0, "memory_resets": 0,
                   "idle_resets": 0, "zero_window_resets": 0, "frames_in": 0, "frames_out": 0})
        };
        json!({
            "tap": "tapname", "model": "modelname", "filter": "filtername",
            "uptime_secs": 1.0, "reset_time": "2024-01-02T03:04:05.678Z",
            "sample_time": "2024-01-02T04:05:06.789Z", "since_reset_secs": 1.0,
            "processors": [processor(0, json!("why it failed")), processor(1, Value::Null)],
            "listeners": [{"id": 0, "protocol": "udp", "port": 0, "address": "10.9.8.7",
                           "processor": 0, "backup": 0, "serving": 0, "key": "keyname",
                           "app": "appname", "state": "listenerstate"}],
            "backends": [{"id": 0, "requests": 0, "in_flight": 0, "state": "backendstate",
                          "restarts": 0}],
            "services": [{"port": 0, "app": "servicename",
                          "rows": [{"target": "10.1.1.1:99", "connects": 0}]}],
            "adapter": {"frames_in": 0, "frames_out": 0, "tx_errors": 0, "not_for_us": 0,
                        "arp_replies": 0, "ndp_adverts": 0, "icmp_echo_replies": 0,
                        "icmp_port_unreachable": 0, "rst_sent": 0, "tcp_dispatched": 0,
                        "flows": 0, "syn_cookies_sent": 0, "syn_cookies_accepted": 0,
                        "rx_queues": [0, 0], "drops": {"bad-tcp-checksum": 0, "queue-full": 0}},
            "trace": {"active": true, "file": "/tmp/tracefile.pcapng", "records": 0, "lost": 0,
                      "max_mb": 0, "max_files": 0},
            "impair": {"spec": "loss=5%", "lost": 0, "duplicated": 0, "reordered": 0},
            "tcp": {"max_rto_ms": 0, "max_retransmissions": 0,
                    "total_retransmission_time_ms": 0, "delayed_ack": true,
                    "delayed_ack_time_ms": 0, "send_space": 0}
        })
    }

    /// Fields the table shows in another form (seconds rounded, bytes
    /// as MiB, the TCP settings in the config file's units).
    const RESHAPED: [&str; 8] = [
        "uptime_secs",
        "since_reset_secs",
        "memory",
        "memory_budget",
        "max_rto_ms",
        "total_retransmission_time_ms",
        "delayed_ack_time_ms",
        "send_space",
    ];

    /// Gives every number its own value (10000, 10001, ...) and collects
    /// each leaf as the table must show it.
    fn number(v: &mut Value, key: &str, next: &mut u64, leaves: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    number(v, k, next, leaves);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|v| number(v, key, next, leaves)),
            Value::Number(_) if !RESHAPED.contains(&key) => {
                *v = json!(*next);
                leaves.push((key.to_string(), next.to_string()));
                *next += 1;
            }
            Value::String(s) => leaves.push((key.to_string(), s.clone())),
            _ => {}
        }
    }

    #[test]
    fn every_field_of_the_json_is_in_the_table() {
        let mut v = full_status();
        let mut leaves = Vec::new();
        number(&mut v, "", &mut 10_000, &mut leaves);
        let st: Status = serde_json::from_value(v).expect("a status");
        let text = table(&st);
        let words: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || ",()/".contains(c))
            .collect();
        for (key, shown) in &leaves {
            let found = if shown.chars().all(|c| c.is_ascii_digit()) {
                words.contains(&shown.as_str())
            } else {
                text.contains(shown.as_str())
            };
            assert!(found, "{key} = {shown} is not in the table:\n{text}");
        }
        assert!(text.contains("10.9.8.7"), "{text}");
    }

    #[test]
    fn tcp_settings_show_in_the_config_files_units() {
        let mut v = full_status();
        v["tcp"] = json!({"max_rto_ms": 64000, "max_retransmissions": 12,
                          "total_retransmission_time_ms": 720000, "delayed_ack": true,
                          "delayed_ack_time_ms": 40, "send_space": 262144});
        let st: Status = serde_json::from_value(v.clone()).expect("a status");
        assert!(
            table(&st).contains(
                "tcp: max-rto 64s  max-retransmissions 12  total-retransmission-time 720s  \
                 delayed-ack 40ms  send-space 256K\n"
            ),
            "{}",
            table(&st)
        );
        v["tcp"]["delayed_ack"] = json!(false);
        v["tcp"]["delayed_ack_time_ms"] = json!(0);
        v["tcp"]["total_retransmission_time_ms"] = Value::Null;
        v["tcp"]["send_space"] = json!(5000);
        let st: Status = serde_json::from_value(v).expect("a status");
        let text = table(&st);
        assert!(
            text.contains("total-retransmission-time none  delayed-ack off  send-space 5000"),
            "{text}"
        );
    }

    #[test]
    fn watching_shows_rates_beside_the_totals() {
        let mut v = full_status();
        v["processors"][1]["accepted"] = json!(30);
        let st: Status = serde_json::from_value(v).expect("a status");
        let rates = crate::watch::Rates::between(None, &st);
        let text = table_with(&st, Some(&rates));
        let head = text.lines().nth(3).expect("the traffic table's head");
        assert!(head.contains("conn/s") && head.contains("/s"), "{text}");
        // 30 connections over 1 s since the reset.
        let line = text.lines().nth(5).expect("processor 1");
        let thirty = line.split_whitespace().filter(|w| *w == "30").count();
        assert_eq!(thirty, 2, "accepted 30, and 30/s: {line}");
    }
}
