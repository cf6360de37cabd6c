//! `vnic capture`: the client of a live capture. It asks the running
//! vnic for one (`{"cmd":"capture"}` on the control socket), writes the
//! pcapng chunks it gets to a file or stdout as they come (each chunk is
//! whole pcapng blocks, so the output is a valid pcapng at every moment:
//! `vnic capture -w - | wireshark -k -i -` and `| tcpdump -r -` read it
//! live), and ends cleanly: on Ctrl-C or a closed pipe it closes its side
//! of the connection and reads on to the report line; when vnic stops it
//! gets the frames so far and the report. The report (frames, and frames
//! lost because this client was slow) goes to stderr.

use crate::cli::CaptureArgs;
use crate::ctl::{fail, Client};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vnic_listeners::control::{CaptureEnd, Request};

/// How often a blocked read looks at the Ctrl-C flag.
const TICK: Duration = Duration::from_millis(200);

/// How long after asking to stop the client waits for vnic's report.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The largest chunk taken from vnic (it sends at most a few MiB).
const MAX_CHUNK: usize = 256 << 20;

/// The longest report line taken.
const MAX_REPORT: u64 = 1 << 20;

/// `vnic capture [-w FILE|-] [--processor K] [FILTER...]`.
pub fn capture(a: CaptureArgs) -> ExitCode {
    let to_stdout = match a.write.as_deref() {
        Some(p) => p == Path::new("-"),
        None if std::io::stdout().is_terminal() => {
            log::error!(
                "vnic capture writes pcapng, not text: give -w FILE, or pipe it \
                 (-w - | wireshark -k -i -, -w - | tcpdump -r -)"
            );
            return ExitCode::from(2);
        }
        None => true,
    };
    let filter = Some(a.filter.join(" ")).filter(|f| !f.trim().is_empty());
    let mut c = match Client::connect(&a.control) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let req = Request::Capture {
        filter,
        processor: a.processor,
    };
    match c.call(&req) {
        Ok(r) if r.ok => {
            for n in &r.notes {
                eprintln!("vnic capture: {n}");
            }
        }
        Ok(r) => return fail(r.error.unwrap_or_else(|| "capture refused".into())),
        Err(e) => return fail(e),
    }
    // Opened only now: a refused capture leaves no empty file behind.
    let out: Box<dyn Write> = match (&a.write, to_stdout) {
        (Some(path), false) => match std::fs::File::create(path) {
            Ok(f) => Box::new(f),
            Err(e) => return fail(format!("cannot write {}: {e}", path.display())),
        },
        _ => Box::new(std::io::stdout().lock()),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            return fail(format!("cannot catch signals: {e}"));
        }
    }
    let _ = c.reader.get_ref().set_read_timeout(Some(TICK));
    let mut run = Run {
        client: c,
        out: Some(out),
        stop,
        stopping: None,
    };
    match run.receive() {
        Ok(end) => {
            report(&end);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// One capture being received.
struct Run {
    client: Client,
    /// Where the pcapng goes; `None` once it could not be written (a
    /// closed pipe): the rest is read and dropped.
    out: Option<Box<dyn Write>>,
    stop: Arc<AtomicBool>,
    /// When this client asked vnic to stop.
    stopping: Option<Instant>,
}

impl Run {
    /// Writes chunks until the zero-length one, then reads the report.
    fn receive(&mut self) -> Result<CaptureEnd, String> {
        let mut chunk = Vec::new();
        loop {
            let mut len = [0u8; 4];
            self.fill(&mut len)?;
            let len = u32::from_be_bytes(len) as usize;
            if len == 0 {
                return self.end_line();
            }
            if len > MAX_CHUNK {
                return Err(format!(
                    "vnic sent a chunk of {len} bytes: not a capture stream"
                ));
            }
            chunk.resize(len, 0);
            self.fill(&mut chunk)?;
            self.write(&chunk);
        }
    }

    /// Writes one chunk and flushes it (a reader downstream sees it at
    /// once); a failed write (a closed pipe) ends the capture.
    fn write(&mut self, chunk: &[u8]) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        if out.write_all(chunk).and_then(|()| out.flush()).is_err() {
            self.out = None;
            self.ask_to_stop();
        }
    }

    /// Tells vnic to end the capture: this side of the connection closes,
    /// vnic sends what it has and the report.
    fn ask_to_stop(&mut self) {
        if self.stopping.is_none() {
            self.stopping = Some(Instant::now());
            let _ = self.client.writer.shutdown(Shutdown::Write);
        }
    }

    /// Between reads: Ctrl-C asks to stop; a vnic that does not end the
    /// capture in time after that is given up on.
    fn tick(&mut self) -> Result<(), String> {
        if self.stop.load(Ordering::Relaxed) {
            self.ask_to_stop();
        }
        match self.stopping {
            Some(t) if t.elapsed() > STOP_WAIT => {
                Err("vnic did not end the capture after it was asked to stop".into())
            }
            _ => Ok(()),
        }
    }

    /// Reads exactly `buf.len()` bytes, looking at the flags meanwhile.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), String> {
        let mut got = 0;
        while got < buf.len() {
            match self.client.reader.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(
                        "vnic closed the capture without its report (was it killed?)".into(),
                    )
                }
                Ok(n) => got += n,
                Err(e) if retry(&e) => self.tick()?,
                Err(e) => return Err(format!("control socket: {e}")),
            }
        }
        Ok(())
    }

    /// The report line that ends the stream.
    fn end_line(&mut self) -> Result<CaptureEnd, String> {
        let mut line = Vec::new();
        loop {
            let mut r = (&mut self.client.reader).take(MAX_REPORT);
            match r.read_until(b'\n', &mut line) {
                Ok(_) if line.ends_with(b"\n") => break,
                Ok(0) => return Err("vnic closed the capture in its report".into()),
                Ok(_) => {}
                Err(e) if retry(&e) => self.tick()?,
                Err(e) => return Err(format!("control socket: {e}")),
            }
        }
        serde_json::from_slice(&line).map_err(|e| format!("bad report from vnic: {e}"))
    }
}

/// A read that timed out (or was interrupted) and may be tried again.
fn retry(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// The closing line on stderr, as tcpdump prints its counts.
fn report(end: &CaptureEnd) {
    let c = &end.capture;
    let mut line = format!(
        "vnic capture: {} frames captured, {} lost (this capture could not keep up)",
        c.frames, c.lost
    );
    if c.trace_lost > 0 {
        line.push_str(&format!(
            ", {} lost by vnic's tracer before filtering",
            c.trace_lost
        ));
    }
    line.push_str(&format!("; {}", end.reason));
    eprintln!("{line}");
}
