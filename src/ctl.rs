//! `vnic status` and `vnic ctl`: the client side of the control socket.

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
        let mut text = serde_json::to_string(req).map_err(|e| e.to_string())?;
        text.push('\n');
        let sent = self.writer.write_all(text.as_bytes());
        // A refused caller (not allowed, too many clients) gets one error
        // line and is disconnected, maybe before the request is written:
        // that line is still there to read, and says more than EPIPE.
        let mut line = String::new();
        let read = (&mut self.reader).take(MAX_ANSWER).read_line(&mut line);
        if line.ends_with('\n') {
            return serde_json::from_str(&line).map_err(|e| format!("bad answer from vnic: {e}"));
        }
        if let Err(e) = sent {
            return Err(format!("control socket: {e}"));
        }
        match read {
            Err(e) => Err(format!("control socket: {e}")),
            Ok(0) => Err("vnic closed the control connection".into()),
            Ok(_) if line.len() as u64 >= MAX_ANSWER => {
                Err(format!("answer from vnic longer than {MAX_ANSWER} bytes"))
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

/// `vnic status [--json] [--watch]`.
pub fn status(a: StatusArgs) -> ExitCode {
    let mut c = match Client::connect(&a.control) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    loop {
        let st = match c.call(&Request::Status) {
            Ok(Response {
                status: Some(st), ..
            }) => st,
            Ok(r) => return fail(r.error.unwrap_or_else(|| "no status in answer".into())),
            Err(e) => return fail(e),
        };
        let text = if a.json {
            serde_json::to_string_pretty(&st).unwrap_or_default()
        } else {
            table(&st)
        };
        if a.watch {
            print!("\x1b[H\x1b[2J");
        }
        println!("{text}");
        if !a.watch {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `vnic ctl ...`.
pub fn ctl(a: CtlArgs) -> ExitCode {
    let req = match a.what {
        CtlCommand::Processor { id, state } => Request::Processor { id, state },
        CtlCommand::Filter { mode } => Request::Filter { mode },
        CtlCommand::Backend { id, state } => Request::Backend { id, state },
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

/// The human table of `vnic status`.
pub fn table(st: &Status) -> String {
    let mut s = format!(
        "vnic on {}  model={}  filter={}  up {:.0}s\n\n",
        st.tap, st.model, st.filter, st.uptime_secs
    );
    s.push_str(&format!(
        "{:>4} {:<5} {:<18} {:>7} {:>9} {:>12} {:>12} {:>6} {:>7} {:>8} {:>13}\n",
        "cpu",
        "state",
        "ports",
        "active",
        "accepted",
        "bytes-in",
        "bytes-out",
        "queue",
        "qdrops",
        "retrans",
        "memory-MiB"
    ));
    for p in &st.processors {
        let ports: Vec<String> = p.ports.iter().map(|x| x.to_string()).collect();
        s.push_str(&format!(
            "{:>4} {:<5} {:<18} {:>7} {:>9} {:>12} {:>12} {:>6} {:>7} {:>8} {:>13}\n",
            p.id,
            p.state,
            ports.join(","),
            p.active,
            p.accepted,
            p.bytes_in,
            p.bytes_out,
            p.queue_depth,
            p.queue_drops + p.queue_bytes_drops,
            p.retransmissions,
            format!("{}/{}", mib(p.memory), mib(p.memory_budget))
        ));
    }
    for p in &st.processors {
        let limits = [
            ("refused-for-memory", p.memory_refused),
            ("reset-for-memory", p.memory_resets),
            ("idle-resets", p.idle_resets),
            ("zero-window-resets", p.zero_window_resets),
            ("queue-bytes-drops", p.queue_bytes_drops),
        ];
        let hit: Vec<String> = limits
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if !hit.is_empty() {
            s.push_str(&format!("processor {} limits: {}\n", p.id, hit.join("  ")));
        }
    }
    for p in &st.processors {
        if let Some(why) = &p.failure {
            s.push_str(&format!("processor {} failed: {why}\n", p.id));
        }
    }
    let a = &st.adapter;
    s.push_str(&format!(
        "\nadapter: frames in {} out {}  tx-errors {}  not-for-us {}  flows {}  tcp dispatched {}\n\
         answers: arp {}  ndp {}  icmp-echo {}  port-unreachable {}  rst {}\n",
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
        a.rst_sent
    ));
    if a.rx_queues.len() > 1 {
        let per: Vec<String> = a.rx_queues.iter().map(u64::to_string).collect();
        s.push_str(&format!("rx queues: frames {}\n", per.join(" ")));
    }
    let drops: Vec<String> = a
        .drops
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    s.push_str(&format!(
        "dropped: {}\n",
        if drops.is_empty() {
            "none".to_string()
        } else {
            drops.join("  ")
        }
    ));
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
        _ => String::new(),
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
    let cells: Vec<Vec<String>> = svc
        .rows
        .iter()
        .map(|r| keys.iter().map(|k| cell(r.get(*k))).collect())
        .collect();
    let widths: Vec<usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([k.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: &[String]| -> String {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:>w$}"))
            .collect();
        format!("  {}\n", parts.join(" "))
    };
    let mut s = format!("\nport {} {}\n", svc.port, svc.app);
    let head: Vec<String> = keys.iter().map(|k| k.replace('_', "-")).collect();
    s.push_str(&line(&head));
    for c in &cells {
        s.push_str(&line(c));
    }
    s
}

/// Bytes as MiB with one decimal (the status table's memory column).
fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / f64::from(1u32 << 20))
}
