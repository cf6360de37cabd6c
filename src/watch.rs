//! What `vnic status` asks and how it shows it, once or again and again:
//! the status table or its JSON, the socket table or its JSON, and with
//! `--watch` the rates (connections/s, frames/s, bytes/s per processor)
//! from one sample to the next.
//!
//! `--sockets --json` is one line (a table of 100,000 rows takes 24 MB
//! so); the status's JSON is indented once, as it always was. With
//! `--watch --json` every sample is one JSON object on one line and no
//! screen codes are written, so the output pipes into `jq`; a reader
//! that goes away (EPIPE) ends the watch quietly with status 0.

use crate::cli::StatusArgs;
use serde::Serialize;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;
use vnic_listeners::control::{Request, Response, SocketState, Status};

/// The shortest `--interval`: a faster refresh only costs the processors
/// (each status reads every counter, each socket table lists every
/// connection).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The `--interval` when none is given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The flags of `vnic status`, checked: what to ask and how to show it.
#[derive(Debug)]
pub struct View {
    request: Request,
    json: bool,
    /// How often to ask again (`--watch`), if at all.
    every: Option<Duration>,
}

impl View {
    /// Checks the flags: a bad port or state name, or an interval too
    /// short, is one line naming what is wrong.
    pub fn from_args(a: &StatusArgs) -> Result<View, String> {
        let request = if a.sockets {
            let port = match &a.port {
                Some(p) => Some(parse_port(p)?),
                None => None,
            };
            if let Some(s) = &a.state {
                SocketState::parse(s)?;
            }
            Request::Sockets {
                processor: a.processor,
                port,
                state: a.state.clone(),
            }
        } else {
            Request::Status
        };
        let every = match (a.watch, a.interval) {
            (false, _) => None,
            (true, Some(d)) if d < MIN_INTERVAL => {
                return Err(format!(
                    "--interval {d:?} is too short: at least {MIN_INTERVAL:?}"
                ))
            }
            (true, d) => Some(d.unwrap_or(DEFAULT_INTERVAL)),
        };
        Ok(View {
            request,
            json: a.json,
            every,
        })
    }
}

/// `--port P`: 1 to 65535, or a one-line error.
fn parse_port(p: &str) -> Result<u16, String> {
    match p.trim().parse::<u64>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        Ok(n) => Err(format!(
            "--port {n} is out of range: give a port from 1 to 65535"
        )),
        Err(_) => Err(format!(
            "--port {p:?} is not a number: give a port from 1 to 65535"
        )),
    }
}

/// Asks (through `call`) and shows, once or every interval until the
/// reader goes away: status 0 then, and on a closed pipe; status 1 with
/// one line when vnic refuses or cannot be reached.
pub fn run(view: &View, call: &mut dyn FnMut(&Request) -> Result<Response, String>) -> ExitCode {
    below_vnic();
    let mut previous: Option<Status> = None;
    loop {
        let resp = match call(&view.request) {
            Ok(r) if r.ok => r,
            Ok(r) => {
                return crate::ctl::fail(r.error.unwrap_or_else(|| "refused".into()));
            }
            Err(e) => return crate::ctl::fail(e),
        };
        for n in &resp.notes {
            log::warn!("{n}");
        }
        let text = match render(view, resp, &mut previous) {
            Ok(t) => t,
            Err(e) => return crate::ctl::fail(e),
        };
        match write_out(&text, view.every.is_some() && !view.json) {
            Ok(()) => {}
            // The reader went away (`| head`, `| jq` that quit): done.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
            Err(e) => return crate::ctl::fail(format!("cannot write to stdout: {e}")),
        }
        let Some(every) = view.every else {
            return ExitCode::SUCCESS;
        };
        std::thread::sleep(every);
    }
}

/// How much nicer than vnic `vnic status` runs.
const STATUS_NICE: i32 = 10;

/// Lowers this process's priority by [`STATUS_NICE`]: a monitor should
/// not compete with what it watches, and reading and printing a socket
/// table of 100,000 rows takes a few hundred milliseconds of CPU, which
/// on a machine with few cores would otherwise come out of vnic's
/// processors' time (docs/CONTROL.md has the measurements). The control
/// server's threads run below the processors too.
fn below_vnic() {
    // Raising one's own nice value needs no privilege.
    let _ = rustix::process::setpriority_process(None, STATUS_NICE);
}

/// Writes one sample, after clearing the screen if asked.
fn write_out(text: &str, clear: bool) -> io::Result<()> {
    let mut out = io::stdout().lock();
    if clear {
        out.write_all(b"\x1b[H\x1b[2J")?;
    }
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// One sample as text: the status's JSON indented once, one JSON line
/// per sample when watching (the socket table's always), else the tables.
fn render(view: &View, resp: Response, previous: &mut Option<Status>) -> Result<String, String> {
    use json_text::Json;
    let watching = view.every.is_some();
    // Once: indented, as `vnic status --json` always was; watching: one
    // line per sample.
    let json = |v: &dyn json_text::Json| v.to_json(!watching);
    if let Request::Sockets { .. } = view.request {
        let table = resp
            .sockets
            .ok_or("no socket table in the answer (is this vnic older than `--sockets`?)")?;
        // Always one line: a table of 100,000 rows indented is half as
        // long again (`jq .` indents it when wanted).
        return if view.json {
            table.to_json(false)
        } else {
            Ok(crate::socket_table::table(&table))
        };
    }
    let st = resp.status.ok_or("no status in the answer")?;
    if !watching {
        return if view.json {
            json(&st)
        } else {
            Ok(crate::ctl::table(&st))
        };
    }
    let rates = Rates::between(previous.as_ref(), &st);
    let text = if view.json {
        json(&WatchLine {
            status: &st,
            rates: &rates,
        })?
    } else {
        crate::ctl::table_with(&st, Some(&rates))
    };
    *previous = Some(st);
    Ok(text)
}

/// JSON text of any of the three answers, through one small trait so
/// `render` treats them alike.
mod json_text {
    /// Something that prints as JSON.
    pub trait Json {
        /// Indented when `pretty`, else on one line.
        fn to_json(&self, pretty: bool) -> Result<String, String>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self, pretty: bool) -> Result<String, String> {
            if pretty {
                serde_json::to_string_pretty(self)
            } else {
                serde_json::to_string(self)
            }
            .map_err(|e| e.to_string())
        }
    }
}

/// One line of `vnic status --watch --json`: the status's fields, and the
/// rates beside them.
#[derive(Serialize)]
struct WatchLine<'a> {
    #[serde(flatten)]
    status: &'a Status,
    rates: &'a Rates,
}

/// The rates of one watch sample: per second, over `over_secs` (since the
/// previous sample, or since the counters were reset for the first one
/// and after a reset).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rates {
    /// Seconds the rates are taken over.
    pub over_secs: f64,
    /// `previous` (the last sample) or `reset` (the Reset Time: the first
    /// sample, or the counters were reset in between).
    pub since: &'static str,
    /// One entry per processor.
    pub processors: Vec<ProcessorRates>,
    /// The adapter's frames.
    pub adapter: AdapterRates,
}

/// One processor's rates.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessorRates {
    /// Processor number.
    pub id: usize,
    /// Connections accepted per second.
    pub connections_per_sec: f64,
    /// Segments and datagrams taken from its queue per second.
    pub frames_in_per_sec: f64,
    /// Frames written per second.
    pub frames_out_per_sec: f64,
    /// Payload bytes received per second.
    pub bytes_in_per_sec: f64,
    /// Payload bytes sent per second.
    pub bytes_out_per_sec: f64,
}

/// The adapter's rates.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AdapterRates {
    /// Frames read from the TAP per second.
    pub frames_in_per_sec: f64,
    /// Frames written to the TAP per second.
    pub frames_out_per_sec: f64,
}

impl Rates {
    /// The rates from `previous` to `now`; from the Reset Time when there
    /// is no previous sample or the counters were reset since (the
    /// counters then started from zero at the Reset Time).
    pub fn between(previous: Option<&Status>, now: &Status) -> Rates {
        let same_epoch = previous.filter(|p| {
            p.reset_time == now.reset_time
                && now.uptime_secs > p.uptime_secs
                && now.since_reset_secs >= p.since_reset_secs
        });
        let (over, since) = match same_epoch {
            Some(p) => (now.uptime_secs - p.uptime_secs, "previous"),
            None => (now.since_reset_secs, "reset"),
        };
        let per = |now: u64, before: u64| {
            if over > 0.0 {
                now.saturating_sub(before) as f64 / over
            } else {
                0.0
            }
        };
        let processors = now
            .processors
            .iter()
            .map(|p| {
                let b = same_epoch.and_then(|s| s.processors.iter().find(|q| q.id == p.id));
                let was = |f: fn(&vnic_listeners::control::protocol::ProcessorStatus) -> u64| {
                    b.map_or(0, f)
                };
                ProcessorRates {
                    id: p.id,
                    connections_per_sec: per(p.accepted, was(|q| q.accepted)),
                    frames_in_per_sec: per(p.frames_in, was(|q| q.frames_in)),
                    frames_out_per_sec: per(p.frames_out, was(|q| q.frames_out)),
                    bytes_in_per_sec: per(p.bytes_in, was(|q| q.bytes_in)),
                    bytes_out_per_sec: per(p.bytes_out, was(|q| q.bytes_out)),
                }
            })
            .collect();
        let a = same_epoch.map(|s| &s.adapter);
        Rates {
            over_secs: over,
            since,
            processors,
            adapter: AdapterRates {
                frames_in_per_sec: per(now.adapter.frames_in, a.map_or(0, |a| a.frames_in)),
                frames_out_per_sec: per(now.adapter.frames_out, a.map_or(0, |a| a.frames_out)),
            },
        }
    }
}

/// A rate for the table: `0.5`, `950`, `12.3k`, `4.56M`, `1.20G`.
pub fn human_rate(x: f64) -> String {
    let (v, unit) = match x {
        x if x >= 1e9 => (x / 1e9, "G"),
        x if x >= 1e6 => (x / 1e6, "M"),
        x if x >= 1e3 => (x / 1e3, "k"),
        x => (x, ""),
    };
    if unit.is_empty() {
        if v == 0.0 || v >= 10.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    } else if v >= 100.0 {
        format!("{v:.0}{unit}")
    } else if v >= 10.0 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.2}{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn status(uptime: f64, since_reset: f64, reset: &str, accepted: u64, frames: u64) -> Status {
        serde_json::from_value(serde_json::json!({
            "tap": "t", "model": "monolithic", "filter": "round-robin",
            "uptime_secs": uptime, "reset_time": reset, "sample_time": "",
            "since_reset_secs": since_reset,
            "processors": [{"id": 0, "state": "up", "ports": [], "active": 0,
                            "accepted": accepted, "bytes_in": 4 * frames, "bytes_out": 0,
                            "queue_depth": 0, "queue_drops": 0, "retransmissions": 0,
                            "frames_in": frames, "frames_out": 2 * frames}],
            "adapter": {"frames_in": frames, "frames_out": 0, "not_for_us": 0,
                        "arp_replies": 0, "ndp_adverts": 0, "icmp_echo_replies": 0,
                        "icmp_port_unreachable": 0, "rst_sent": 0, "tcp_dispatched": 0,
                        "flows": 0, "drops": {}},
            "trace": {"active": false, "file": null, "records": 0, "lost": 0}
        }))
        .expect("status")
    }

    #[test]
    fn rates_are_per_second_since_the_previous_sample() {
        let a = status(10.0, 10.0, "r0", 100, 1000);
        let b = status(12.0, 12.0, "r0", 160, 3000);
        let r = Rates::between(Some(&a), &b);
        assert_eq!((r.over_secs, r.since), (2.0, "previous"));
        let p = &r.processors[0];
        assert_eq!(p.connections_per_sec, 30.0);
        assert_eq!(p.frames_in_per_sec, 1000.0);
        assert_eq!(p.frames_out_per_sec, 2000.0);
        assert_eq!(p.bytes_in_per_sec, 4000.0);
        assert_eq!(r.adapter.frames_in_per_sec, 1000.0);
    }

    #[test]
    fn the_first_sample_and_one_after_a_reset_count_from_the_reset() {
        let first = Rates::between(None, &status(10.0, 4.0, "r0", 40, 0));
        assert_eq!((first.over_secs, first.since), (4.0, "reset"));
        assert_eq!(first.processors[0].connections_per_sec, 10.0);
        // Reset in between: counters went down; the rates start again.
        let a = status(10.0, 10.0, "r0", 100, 0);
        let b = status(12.0, 0.5, "r1", 5, 0);
        let r = Rates::between(Some(&a), &b);
        assert_eq!((r.over_secs, r.since), (0.5, "reset"));
        assert_eq!(r.processors[0].connections_per_sec, 10.0);
    }

    #[test]
    fn human_rates() {
        assert_eq!(human_rate(0.0), "0");
        assert_eq!(human_rate(950.4), "950");
        assert_eq!(human_rate(0.49), "0.5");
        assert_eq!(human_rate(12_345.0), "12.3k");
        assert_eq!(human_rate(4_560_000.0), "4.56M");
        assert_eq!(human_rate(123e9), "123G");
    }

    fn view(args: &[&str]) -> Result<View, String> {
        let cli =
            crate::cli::Cli::try_parse_from([&["vnic", "status", "--tap", "t"], args].concat())
                .map_err(|e| e.to_string())?;
        match cli.cmd {
            crate::cli::Command::Status(a) => View::from_args(&a),
            _ => Err("not status".into()),
        }
    }

    #[test]
    fn bad_filters_are_one_line_each() {
        for (args, says) in [
            (
                &["--sockets", "--port", "70000"][..],
                "--port 70000 is out of range",
            ),
            (
                &["--sockets", "--port", "0"][..],
                "--port 0 is out of range",
            ),
            (&["--sockets", "--port", "http"][..], "is not a number"),
            (
                &["--sockets", "--state", "listening"][..],
                "unknown state \"listening\"",
            ),
            (&["--watch", "--interval", "10ms"][..], "too short"),
        ] {
            let e = view(args).expect_err("refused");
            assert!(e.contains(says) && !e.contains('\n'), "{args:?}: {e}");
        }
        let v = view(&[
            "--sockets",
            "--port",
            "80",
            "--state",
            "SYN_RECV",
            "--processor",
            "2",
        ])
        .expect("fine");
        assert_eq!(
            v.request,
            Request::Sockets {
                processor: Some(2),
                port: Some(80),
                state: Some("SYN_RECV".into())
            }
        );
        assert_eq!(
            view(&["--watch"]).expect("fine").every,
            Some(DEFAULT_INTERVAL)
        );
        // The filters belong to --sockets, the interval to --watch.
        assert!(view(&["--port", "80"]).is_err());
        assert!(view(&["--interval", "2s"]).is_err());
    }
}
