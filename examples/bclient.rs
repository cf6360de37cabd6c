//! Benchmark client: the same program measures vnic through its TAP and
//! the kernel's own TCP over a veth pair (bench/run.sh runs both). It uses
//! only the kernel's sockets. Prints one JSON line per run.
//!
//! ```text
//! bclient upload   ADDR:PORT BYTES            (to a discard server)
//! bclient download ADDR:PORT BYTES            (from a chargen server)
//! bclient rtt      ADDR:PORT COUNT SIZE       (echo round trips on one connection)
//! bclient connrate ADDR:PORT COUNT CONC       (HTTP GET, Connection: close, CONC threads)
//! bclient hold     ADDR:PORT COUNT SECS       (open COUNT idle connections, hold them)
//! bclient httprtt  ADDR:PORT COUNT            (keep-alive GET / latency on one connection)
//! bclient kasessions ADDR:PORT COUNT CONC PER (COUNT keep-alive sessions of PER GETs, CONC threads)
//! bclient echobulk ADDR:PORT BYTES            (bulk through echo: write and read at once)
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!("usage: bclient upload|download|rtt|connrate|hold|httprtt|echobulk|kasessions ADDR:PORT N [M]");
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| usage())
}

/// Lets one process hold `n` sockets.
fn raise_fd_limit(n: u64) {
    // SAFETY: reading and setting our own resource limit.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < n {
            l.rlim_cur = n;
            l.rlim_max = l.rlim_max.max(n);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    Ok(s)
}

/// Reads one HTTP response (head, then Content-Length bytes).
fn read_response(s: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    let mut got: Vec<u8> = Vec::new();
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return Ok(());
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_else(|| usage());
    let addr: SocketAddr = arg(&args, 2);
    match mode.as_str() {
        "upload" => {
            let bytes: u64 = arg(&args, 3);
            let mut s = connect(addr).expect("connect");
            let buf = vec![0x5au8; 256 * 1024];
            let t = Instant::now();
            let mut left = bytes;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                s.write_all(&buf[..n]).expect("write");
                left -= n as u64;
            }
            s.shutdown(Shutdown::Write).expect("shutdown");
            // Wait for the server's FIN: everything was received.
            let mut b = [0u8; 64];
            while s.read(&mut b).map(|n| n > 0).unwrap_or(false) {}
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{{\"mode\":\"upload\",\"bytes\":{bytes},\"secs\":{secs:.4},\"gbps\":{:.3}}}",
                bytes as f64 * 8.0 / secs / 1e9
            );
        }
        "download" => {
            let bytes: u64 = arg(&args, 3);
            let mut s = connect(addr).expect("connect");
            let mut buf = vec![0u8; 256 * 1024];
            let t = Instant::now();
            let mut got = 0u64;
            while got < bytes {
                let n = s.read(&mut buf).expect("read");
                assert!(n > 0, "server closed early at {got}");
                got += n as u64;
            }
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{{\"mode\":\"download\",\"bytes\":{got},\"secs\":{secs:.4},\"gbps\":{:.3}}}",
                got as f64 * 8.0 / secs / 1e9
            );
        }
        "rtt" => {
            let count: usize = arg(&args, 3);
            let size: usize = arg(&args, 4);
            let mut s = connect(addr).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let msg = vec![0x42u8; size];
            let mut back = vec![0u8; size];
            let mut samples = Vec::with_capacity(count);
            for _ in 0..count {
                let t = Instant::now();
                s.write_all(&msg).expect("write");
                s.read_exact(&mut back).expect("read");
                samples.push(t.elapsed().as_nanos() as f64 / 1e3);
            }
            samples.sort_by(|a, b| a.total_cmp(b));
            let p = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
            println!(
                "{{\"mode\":\"rtt\",\"count\":{count},\"size\":{size},\"p50_us\":{:.1},\"p99_us\":{:.1}}}",
                p(0.5),
                p(0.99)
            );
        }
        "connrate" => {
            let count: usize = arg(&args, 3);
            let conc: usize = arg(&args, 4);
            let next = Arc::new(AtomicUsize::new(0));
            let failed = Arc::new(AtomicUsize::new(0));
            let t = Instant::now();
            let threads: Vec<_> = (0..conc)
                .map(|_| {
                    let (next, failed) = (next.clone(), failed.clone());
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 4096];
                        while next.fetch_add(1, Ordering::Relaxed) < count {
                            let ok = (|| -> std::io::Result<bool> {
                                let mut s = connect(addr)?;
                                s.write_all(
                                    b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
                                )?;
                                let mut got = Vec::new();
                                loop {
                                    let n = s.read(&mut buf)?;
                                    if n == 0 {
                                        break;
                                    }
                                    got.extend_from_slice(&buf[..n]);
                                }
                                Ok(got.starts_with(b"HTTP/1.1 200"))
                            })();
                            if !matches!(ok, Ok(true)) {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                })
                .collect();
            for th in threads {
                let _ = th.join();
            }
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{{\"mode\":\"connrate\",\"count\":{count},\"conc\":{conc},\"secs\":{secs:.4},\"rps\":{:.0},\"failed\":{}}}",
                count as f64 / secs,
                failed.load(Ordering::Relaxed)
            );
        }
        "httprtt" => {
            let count: usize = arg(&args, 3);
            let mut s = connect(addr).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let mut samples = Vec::with_capacity(count);
            let mut buf = vec![0u8; 8192];
            for _ in 0..count {
                let t = Instant::now();
                s.write_all(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
                    .expect("write");
                // Read one response: head, then Content-Length bytes.
                let mut got: Vec<u8> = Vec::new();
                loop {
                    let n = s.read(&mut buf).expect("read");
                    assert!(n > 0, "server closed");
                    got.extend_from_slice(&buf[..n]);
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                samples.push(t.elapsed().as_nanos() as f64 / 1e3);
            }
            samples.sort_by(|a, b| a.total_cmp(b));
            let p = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
            println!(
                "{{\"mode\":\"httprtt\",\"count\":{count},\"p50_us\":{:.1},\"p99_us\":{:.1}}}",
                p(0.5),
                p(0.99)
            );
        }
        "kasessions" => {
            // Short keep-alive sessions, as browsers open them: each thread
            // connects, sends PER GETs one after the other (each timed),
            // closes, and starts again until COUNT sessions are done. A
            // slow processor keeps its sessions open longer.
            let count: usize = arg(&args, 3);
            let conc: usize = arg(&args, 4);
            let per: usize = arg(&args, 5);
            let next = Arc::new(AtomicUsize::new(0));
            let failed = Arc::new(AtomicUsize::new(0));
            let t = Instant::now();
            let threads: Vec<_> = (0..conc)
                .map(|_| {
                    let (next, failed) = (next.clone(), failed.clone());
                    std::thread::spawn(move || {
                        let mut samples = Vec::new();
                        while next.fetch_add(1, Ordering::Relaxed) < count {
                            let r = (|| -> std::io::Result<()> {
                                let mut s = connect(addr)?;
                                s.set_nodelay(true)?;
                                for _ in 0..per {
                                    let t = Instant::now();
                                    s.write_all(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")?;
                                    read_response(&mut s)?;
                                    samples.push(t.elapsed().as_nanos() as f64 / 1e3);
                                }
                                Ok(())
                            })();
                            if r.is_err() {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        samples
                    })
                })
                .collect();
            let mut samples: Vec<f64> = threads
                .into_iter()
                .flat_map(|th| th.join().unwrap_or_default())
                .collect();
            let secs = t.elapsed().as_secs_f64();
            samples.sort_by(|a, b| a.total_cmp(b));
            let p = |q: f64| {
                samples
                    .get(((samples.len().max(1) - 1) as f64 * q) as usize)
                    .copied()
                    .unwrap_or(f64::NAN)
            };
            println!(
                "{{\"mode\":\"kasessions\",\"count\":{count},\"conc\":{conc},\"per\":{per},\"secs\":{secs:.4},\"rps\":{:.0},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"failed\":{}}}",
                samples.len() as f64 / secs,
                p(0.5),
                p(0.9),
                p(0.99),
                failed.load(Ordering::Relaxed)
            );
        }
        "echobulk" => {
            let bytes: u64 = arg(&args, 3);
            let s = connect(addr).expect("connect");
            let mut w = s.try_clone().expect("clone");
            let t = Instant::now();
            let writer = std::thread::spawn(move || {
                let buf = vec![0x5au8; 256 * 1024];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    w.write_all(&buf[..n]).expect("write");
                    left -= n as u64;
                }
                w.shutdown(Shutdown::Write).expect("shutdown");
            });
            let mut r = s;
            let mut buf = vec![0u8; 256 * 1024];
            let mut got = 0u64;
            loop {
                let n = r.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            let _ = writer.join();
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(got, bytes, "echo returned every byte");
            println!(
                "{{\"mode\":\"echobulk\",\"bytes\":{got},\"secs\":{secs:.4},\"gbps\":{:.3}}}",
                got as f64 * 8.0 / secs / 1e9
            );
        }
        "hold" => {
            let count: usize = arg(&args, 3);
            let secs: u64 = arg(&args, 4);
            raise_fd_limit(count as u64 + 64);
            let mut v = Vec::with_capacity(count);
            let mut failed = 0usize;
            let mut first_error = String::new();
            for _ in 0..count {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                    Ok(s) => v.push(s),
                    Err(e) => {
                        if failed == 0 {
                            first_error = e.to_string();
                        }
                        failed += 1;
                    }
                }
            }
            println!(
                "{{\"mode\":\"hold\",\"open\":{},\"failed\":{failed},\"first_error\":{:?}}}",
                v.len(),
                first_error
            );
            let _ = std::io::stdout().flush();
            std::thread::sleep(Duration::from_secs(secs));
        }
        _ => usage(),
    }
}
