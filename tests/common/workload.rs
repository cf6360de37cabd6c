//! A mixed load over every processor, for the tests of connections that
//! must survive a processor's failure or a move: chargen downloads whose
//! every byte is checked against RFC 864's pattern, echo streams of
//! random bytes compared by hash, and keep-alive HTTP clients. Each
//! stream reports whether it completed intact, whether it was reset, and
//! its longest stall (the longest wait between two reads that brought
//! bytes).

use super::{chargen_period, connect, random_bytes, read_response, Netns};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How one stream ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// "chargen 0", "echo 2", "http 1".
    pub name: String,
    /// The error that ended it early, if any.
    pub error: Option<String>,
    /// Bytes it read.
    pub bytes: usize,
    /// The longest wait between two reads.
    pub longest_stall: Duration,
    /// When that wait ended.
    pub stall_end: Option<Instant>,
    /// The client's local port (names the connection for `vnic ctl`).
    pub port: u16,
    /// When it ended.
    pub ended: Instant,
}

/// A running load; [`Load::finish`] stops the HTTP clients and collects
/// every stream's outcome.
pub struct Load {
    stop: Arc<AtomicBool>,
    streams: Vec<JoinHandle<Outcome>>,
    /// The client ports of the streams, in the order they connected.
    pub ports: Vec<u16>,
}

/// Opens `per_kind` connections of each kind in turn (chargen, echo,
/// http, chargen, ...), so that round-robin over N processors puts one
/// of each kind on each when `per_kind` is N, then runs them: each
/// chargen stream reads `chargen_bytes`, each echo stream sends
/// `echo_bytes`, the HTTP clients ask until [`Load::finish`].
pub fn start(ns: &Netns, per_kind: usize, chargen_bytes: usize, echo_bytes: usize) -> Load {
    let conns: Vec<(String, TcpStream)> = ns.run(move || {
        let mut v = Vec::new();
        for k in 0..per_kind {
            v.push((format!("chargen {k}"), connect("10.0.0.2:19")));
            v.push((format!("echo {k}"), connect("10.0.0.2:7")));
            v.push((format!("http {k}"), connect("10.0.0.2:80")));
        }
        v
    });
    let stop = Arc::new(AtomicBool::new(false));
    let ports = conns
        .iter()
        .map(|(_, s)| s.local_addr().map_or(0, |a| a.port()))
        .collect();
    let streams = conns
        .into_iter()
        .enumerate()
        .map(|(i, (name, s))| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let port = s.local_addr().map_or(0, |a| a.port());
                let mut o = Outcome {
                    name: name.clone(),
                    error: None,
                    bytes: 0,
                    longest_stall: Duration::ZERO,
                    stall_end: None,
                    port,
                    ended: Instant::now(),
                };
                let r = if name.starts_with("chargen") {
                    chargen(s, chargen_bytes, &mut o)
                } else if name.starts_with("echo") {
                    echo(s, random_bytes(echo_bytes, i as u64 + 7), &mut o)
                } else {
                    http(s, &stop, &mut o)
                };
                o.error = r.err();
                o.ended = Instant::now();
                o
            })
        })
        .collect();
    Load {
        stop,
        streams,
        ports,
    }
}

impl Load {
    /// Stops the HTTP clients and waits for every stream.
    pub fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        self.streams
            .into_iter()
            .map(|t| t.join().expect("stream thread"))
            .collect()
    }
}

/// Counts the wait since the last read that brought bytes.
fn read_some(
    s: &mut TcpStream,
    buf: &mut [u8],
    last: &mut Instant,
    o: &mut Outcome,
) -> Result<usize, String> {
    let n = s.read(buf).map_err(|e| format!("{}: read: {e}", o.name))?;
    if n > 0 {
        note_stall(o, last);
        *last = Instant::now();
        o.bytes += n;
    }
    Ok(n)
}

/// Counts the wait since `last` in the stream's longest stall.
fn note_stall(o: &mut Outcome, last: &Instant) {
    let gap = last.elapsed();
    if gap > o.longest_stall {
        o.longest_stall = gap;
        o.stall_end = Some(Instant::now());
    }
}

fn chargen(mut s: TcpStream, n: usize, o: &mut Outcome) -> Result<(), String> {
    let period = chargen_period();
    let mut buf = vec![0u8; 64 * 1024];
    let mut last = Instant::now();
    let mut at = 0usize;
    while at < n {
        let want = buf.len().min(n - at);
        let k = read_some(&mut s, &mut buf[..want], &mut last, o)?;
        if k == 0 {
            return Err(format!("{}: closed at byte {at}", o.name));
        }
        if let Some(i) = buf[..k]
            .iter()
            .enumerate()
            .position(|(i, b)| *b != period[(at + i) % period.len()])
        {
            return Err(format!("{}: byte {} is off the pattern", o.name, at + i));
        }
        at += k;
    }
    Ok(())
}

fn echo(s: TcpStream, data: Vec<u8>, o: &mut Outcome) -> Result<(), String> {
    let want = Sha256::digest(&data).to_vec();
    let len = data.len();
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let name = o.name.clone();
    let writer = std::thread::spawn(move || -> Result<(), String> {
        for chunk in data.chunks(64 * 1024) {
            w.write_all(chunk)
                .map_err(|e| format!("{name}: write: {e}"))?;
        }
        w.shutdown(std::net::Shutdown::Write)
            .map_err(|e| format!("{name}: half-close: {e}"))
    });
    let mut r = s;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut last = Instant::now();
    loop {
        let n = read_some(&mut r, &mut buf, &mut last, o)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    writer
        .join()
        .map_err(|_| "echo writer panicked".to_string())??;
    if o.bytes != len || h.finalize().to_vec() != want {
        return Err(format!(
            "{}: {} of {len} bytes back, or not the same",
            o.name, o.bytes
        ));
    }
    Ok(())
}

fn http(mut s: TcpStream, stop: &AtomicBool, o: &mut Outcome) -> Result<(), String> {
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        write!(
            s,
            "GET / HTTP/1.1\r\nHost: vnic\r\nConnection: keep-alive\r\n\r\n"
        )
        .map_err(|e| format!("{}: write: {e}", o.name))?;
        let name = o.name.clone();
        let (status, body) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_response(&mut s)))
                .map_err(|p| {
                    let why = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("{name}: the response did not come whole: {why}")
                })?;
        if status != 200 {
            return Err(format!("{}: status {status}", o.name));
        }
        note_stall(o, &last);
        last = Instant::now();
        o.bytes += body.len();
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Asserts every stream completed intact, none reset; returns the
/// longest stall of all.
pub fn assert_intact(outcomes: &[Outcome]) -> Duration {
    let failed: Vec<String> = outcomes.iter().filter_map(|o| o.error.clone()).collect();
    assert!(failed.is_empty(), "streams failed: {failed:#?}");
    outcomes
        .iter()
        .map(|o| o.longest_stall)
        .max()
        .unwrap_or_default()
}

/// The processor holding each client port's connection, from `vnic
/// status --sockets --json` (None: no such connection now).
pub fn processors_of(ns: &Netns, ports: &[u16]) -> Vec<Option<usize>> {
    let out = ns.vnic_cmd(&["status", "--sockets", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table: serde_json::Value = serde_json::from_slice(&out.stdout).expect("socket table");
    let rows = table["rows"].as_array().cloned().unwrap_or_default();
    ports
        .iter()
        .map(|&p| {
            rows.iter()
                .find(|r| r["fport"].as_u64() == Some(u64::from(p)))
                .and_then(|r| r["processor"].as_u64())
                .map(|k| k as usize)
        })
        .collect()
}
