//! The `control` target: any bytes as what a client writes to the control
//! socket, line by line, carried out by a real [`Runtime`] (the filter of
//! the `frame` rig, 4 processor queues, a tracer that records instead of
//! writing files).
//!
//! Each complete line (up to its `\n`; the server waits for the rest of
//! an unfinished one) goes through [`Request::from_line`], as the server
//! reads it. Checked:
//!
//! - a refusal is one line (no CR, LF or other control character, so
//!   `vnic ctl` prints it as one line), and its answer
//!   ([`Response::to_line`]) is one JSON line that reads back as the
//!   same response;
//! - a request that parses writes back out as one line that parses to
//!   the same request;
//! - the runtime's answer to it is one JSON line that reads back as the
//!   same response, and so is the whole status after the last line;
//! - a trace request reaches the tracer only with what the server
//!   promises it: an absolute file, and rotation limits in range.

use crate::frame::{template_filter, PROCESSORS, TAP, VIP4, VIP6};
use crossbeam_channel::{bounded, Receiver};
use parking_lot::Mutex;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use vnic_adapter::{Counters, ToProcessor};
use vnic_listeners::control::protocol::TraceStatus;
use vnic_listeners::control::{Request, Response, Runtime, TraceControl};
use vnic_listeners::stats::Registry;

/// A tracer that writes nothing: it checks what reaches it and keeps the
/// state a status shows.
#[derive(Default)]
struct FakeTrace {
    state: Mutex<TraceStatus>,
}

impl TraceControl for FakeTrace {
    fn set(
        &self,
        on: bool,
        file: Option<PathBuf>,
        max_mb: Option<u64>,
        max_files: Option<u32>,
    ) -> Result<(), String> {
        if let Some(f) = &file {
            assert!(f.is_absolute(), "a relative trace file got through: {f:?}");
        }
        assert!(max_mb.is_none_or(|m| (1..=1_000_000).contains(&m)));
        assert!(max_files.is_none_or(|n| (1..=100_000).contains(&n)));
        if on && file.is_none() {
            assert!(
                max_mb.is_none() && max_files.is_none(),
                "limits without a file"
            );
        }
        let mut s = self.state.lock();
        s.active = on;
        s.file = if on {
            file.map(|f| f.display().to_string())
        } else {
            None
        };
        s.max_mb = max_mb;
        s.max_files = max_files;
        Ok(())
    }

    fn status(&self) -> TraceStatus {
        self.state.lock().clone()
    }
}

/// A runtime to carry requests out, with the receiving ends of its
/// processor queues.
fn runtime() -> (Runtime, Vec<Receiver<ToProcessor>>) {
    let mut filter = template_filter().clone();
    filter.set_addresses(vec![IpAddr::V4(VIP4), IpAddr::V6(VIP6)]);
    let (queues, rxs): (Vec<_>, Vec<_>) = (0..PROCESSORS)
        .map(|_| {
            let (tx, rx) = bounded(64);
            (tx.into(), rx)
        })
        .unzip();
    let rt = Runtime {
        flow_map: None,
        pairs: Arc::new(vnic_adapter::Pairs::none()),
        tap: TAP.into(),
        started: Instant::now(),
        filter: Arc::new(Mutex::new(filter)),
        queues,
        registry: Arc::new(Registry::new("monolithic", "round-robin", PROCESSORS)),
        counters: Arc::new(Counters::new(PROCESSORS)),
        ports: vec![7, 9, 19, 80],
        trace: Some(Arc::new(FakeTrace::default())),
        backend_ctl: None,
        // No processor threads here: `sockets` answers that they are missing.
        socket_queries: Vec::new(),
        impair: None,
        tcp: vnic_listeners::control::TcpStatus::of(&vnic_stack::TcpConfig::default()),
        links: None,
    };
    (rt, rxs)
}

/// True when `s` is one line: no line end, no control character.
pub fn one_line(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// Checks that `line` is one JSON line that reads back as `resp`.
fn answer_reads_back(resp: &Response) {
    let line = resp.to_line();
    assert_eq!(line.last(), Some(&b'\n'), "an answer ends its line");
    assert_eq!(
        line.iter().filter(|&&b| b == b'\n').count(),
        1,
        "an answer is one line: {:?}",
        String::from_utf8_lossy(&line)
    );
    let mut back: Response = serde_json::from_slice(&line).expect("the answer reads back");
    // A float may come back one unit in the last place off.
    if let (Some(a), Some(b)) = (&resp.status, &mut back.status) {
        assert!((a.uptime_secs - b.uptime_secs).abs() <= 1e-9 * a.uptime_secs.max(1.0));
        b.uptime_secs = a.uptime_secs;
    }
    assert_eq!(&back, resp, "the answer reads back as itself");
}

/// One request line (without its `\n`), with every check; true when it
/// was a request, carried out.
fn line(rt: &Runtime, queues: &[Receiver<ToProcessor>], text: &[u8]) -> bool {
    match Request::from_line(text) {
        Err(msg) => {
            assert!(one_line(&msg), "a refusal of more than one line: {msg:?}");
            answer_reads_back(&Response::error(msg));
            false
        }
        Ok(req) => {
            let again = serde_json::to_vec(&req).expect("a request writes out");
            assert!(!again.contains(&b'\n'), "a request is one line");
            assert_eq!(Request::from_line(&again), Ok(req.clone()), "round trip");
            let resp = rt.handle(req);
            if let Some(e) = &resp.error {
                assert!(
                    one_line(e),
                    "an answer's error of more than one line: {e:?}"
                );
            }
            answer_reads_back(&resp);
            for q in queues {
                while q.try_recv().is_ok() {}
            }
            true
        }
    }
}

/// The whole target: every complete line of one input.
pub fn run(data: &[u8]) {
    let (rt, queues) = runtime();
    let mut rest = data;
    let mut carried_out = false;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        carried_out |= line(&rt, &queues, &rest[..nl]);
        rest = &rest[nl + 1..];
    }
    // The status is the slowest check (a 4 KiB JSON each way): only
    // after requests that may have changed it.
    if carried_out {
        answer_reads_back(&Response {
            status: Some(rt.status()),
            ..Response::ok()
        });
    }
}
