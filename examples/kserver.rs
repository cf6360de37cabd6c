//! The kernel reference server for bench/run.sh: discard (9), chargen
//! (19), echo (7) and a minimal HTTP (80) on the kernel's own TCP, one
//! thread per connection, so the benchmark compares vnic with the path it
//! emulates using the same client programs.
//!
//! ```text
//! kserver BIND_ADDR [CONGESTION_CONTROL]
//! ```
//!
//! With CONGESTION_CONTROL (say `cubic`), every connection is switched to
//! it (`TCP_CONGESTION`, which root may set to any algorithm the kernel
//! has, where a namespace's default is limited to the allowed ones).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// The congestion control given on the command line, if any.
static CC: OnceLock<Option<String>> = OnceLock::new();

/// Switches `s` to the congestion control asked for; exits if the kernel
/// refuses it (a benchmark row must not silently measure another one).
fn set_congestion(s: &TcpStream) {
    let Some(Some(name)) = CC.get() else {
        return;
    };
    // SAFETY: setsockopt on a socket we own, with a buffer of `len` bytes.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if r != 0 {
        eprintln!(
            "kserver: TCP_CONGESTION {name}: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(1);
    }
}

fn chargen_block() -> Vec<u8> {
    let ring: Vec<u8> = (0x21u8..=0x7e).chain(std::iter::once(0x20)).collect();
    let mut out = Vec::with_capacity(95 * 74);
    for k in 0..95 {
        out.extend((0..72).map(|i| ring[(k + i) % 95]));
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn serve(port: u16, ip: IpAddr, handler: fn(TcpStream)) {
    let l = TcpListener::bind(SocketAddr::new(ip, port)).expect("bind");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            set_congestion(&s);
            std::thread::spawn(move || handler(s));
        }
    });
}

fn discard(mut s: TcpStream) {
    let mut b = vec![0u8; 256 * 1024];
    while s.read(&mut b).map(|n| n > 0).unwrap_or(false) {}
}

fn chargen(mut s: TcpStream) {
    let block = chargen_block();
    let mut big = Vec::new();
    for _ in 0..32 {
        big.extend_from_slice(&block);
    }
    while s.write_all(&big).is_ok() {}
}

fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut b = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&b[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn http(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            buf.drain(..end + 4);
            let v10 = head
                .lines()
                .next()
                .is_some_and(|l| l.trim_end().ends_with("http/1.0"));
            let close = head.contains("connection: close")
                || (v10 && !head.contains("connection: keep-alive"));
            let body = "processor=kernel\nconnection=0\n";
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{}",
                body.len(),
                if close { "close" } else { "keep-alive" },
                body
            );
            if s.write_all(resp.as_bytes()).is_err() || close {
                return;
            }
        }
    }
}

fn main() {
    let ip: IpAddr = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: kserver BIND_ADDR [CONGESTION_CONTROL]");
            std::process::exit(2)
        });
    let _ = CC.set(std::env::args().nth(2));
    serve(9, ip, discard);
    serve(19, ip, chargen);
    serve(7, ip, echo);
    serve(80, ip, http);
    println!("kserver: ready on {ip}");
    loop {
        std::thread::park();
    }
}
