//! vnic as a library: two protocols of this program's own behind the
//! emulated processors, started with [`vnic::Builder`].
//!
//! ```text
//! cargo run --release --example embed -- --tap vnic0 --ip 10.0.0.2/24 [--host-ip 10.0.0.1/24]
//!     [--processors N] [--model monolithic|distributor] [--backends M]
//! ```
//!
//! - Port 7000, `reverse` (an [`vnic::App`]): greets with
//!   `reverse processor=K`, then sends every line back reversed; closes
//!   after the client's FIN.
//! - Port 7001, `kv` (a [`vnic::RequestHandler`], so it also runs at the
//!   back-ends of the distributor model): one command per line,
//!   `SET KEY VALUE` → `OK`, `GET KEY` → `VALUE V` or `NONE`, `WHO` →
//!   `processor=K backend=B|-`, `QUIT` → `BYE` and close; anything else
//!   `ERR ...`. The store is shared by every processor and bounded.
//!
//! `nc 10.0.0.2 7000` four times shows processors 0, 1, 2, 3 in turn.

use clap::Parser;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;
use vnic::{
    App, AppContext, Balance, Builder, Model, RequestContext, RequestHandler, RequestService,
    Response, Socket,
};

/// Flags of the example.
#[derive(Parser, Debug)]
struct Args {
    /// TAP device (created if missing; needs root).
    #[arg(long)]
    tap: String,
    /// Virtual IP, ADDR/PREFIX (repeatable).
    #[arg(long = "ip", required = true)]
    ips: Vec<String>,
    /// Host-side address, ADDR/PREFIX (repeatable).
    #[arg(long = "host-ip")]
    host_ips: Vec<String>,
    /// Emulated processors.
    #[arg(long, default_value_t = 4)]
    processors: usize,
    /// monolithic or distributor.
    #[arg(long, default_value = "monolithic", value_parser = ["monolithic", "distributor"])]
    model: String,
    /// Back-ends of the distributor model.
    #[arg(long, default_value_t = 2)]
    backends: usize,
}

/// The longest line either protocol takes.
const MAX_LINE: usize = 4096;

/// Sends every line back reversed (port 7000).
struct Reverse {
    greeting: Vec<u8>,
    line: Vec<u8>,
    out: Vec<u8>,
}

impl Reverse {
    fn new(ctx: &AppContext) -> Reverse {
        Reverse {
            greeting: format!("reverse processor={}\n", ctx.processor).into_bytes(),
            line: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Sends what is pending; true when all of it is out.
    fn flush(&mut self, sock: &mut dyn Socket) -> bool {
        if !self.greeting.is_empty() {
            let n = sock.send(&self.greeting);
            self.greeting.drain(..n);
        }
        if self.greeting.is_empty() && !self.out.is_empty() {
            let n = sock.send(&self.out);
            self.out.drain(..n);
        }
        self.greeting.is_empty() && self.out.is_empty()
    }
}

impl App for Reverse {
    fn poll(&mut self, sock: &mut dyn Socket) {
        let mut buf = [0u8; 1024];
        // Read only while the answers so far are out: a client that does
        // not read closes its own window.
        while self.flush(sock) {
            let n = sock.recv(&mut buf);
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if b == b'\n' || self.line.len() >= MAX_LINE {
                    let mut l = std::mem::take(&mut self.line);
                    if l.last() == Some(&b'\r') {
                        l.pop();
                    }
                    l.reverse();
                    self.out.extend_from_slice(&l);
                    self.out.push(b'\n');
                    if b != b'\n' {
                        self.line.push(b);
                    }
                } else {
                    self.line.push(b);
                }
            }
        }
        if self.flush(sock) && sock.peer_closed() && sock.recv_available() == 0 {
            sock.close();
        }
    }

    fn nagle(&self) -> bool {
        false
    }
}

/// A small key-value store (port 7001), shared by every processor.
struct Kv {
    store: Mutex<HashMap<String, String>>,
}

/// Most keys the store holds; a SET of a new key beyond it is refused.
const MAX_KEYS: usize = 1024;

impl RequestHandler for Kv {
    fn name(&self) -> &str {
        "kv"
    }

    fn request_len(&self, buf: &[u8]) -> Option<usize> {
        buf.iter().position(|&b| b == b'\n').map(|i| i + 1)
    }

    fn handle(&self, ctx: &RequestContext, request: &[u8]) -> Response {
        let line = String::from_utf8_lossy(request);
        let mut words = line.split_whitespace();
        let answer = |s: String| Response {
            bytes: format!("{s}\n").into_bytes(),
            close: false,
        };
        match (words.next(), words.next(), words.next()) {
            (Some("SET"), Some(k), Some(v)) => {
                let mut store = self.store.lock();
                if store.len() >= MAX_KEYS && !store.contains_key(k) {
                    return answer("ERR full".into());
                }
                store.insert(k.to_string(), v.to_string());
                answer("OK".into())
            }
            (Some("GET"), Some(k), None) => match self.store.lock().get(k) {
                Some(v) => answer(format!("VALUE {v}")),
                None => answer("NONE".into()),
            },
            (Some("WHO"), None, None) => answer(format!(
                "processor={} backend={}",
                ctx.processor,
                ctx.backend.map_or("-".into(), |b| b.to_string())
            )),
            (Some("QUIT"), None, None) => Response {
                bytes: b"BYE\n".to_vec(),
                close: true,
            },
            _ => answer("ERR say SET KEY VALUE, GET KEY, WHO or QUIT".into()),
        }
    }

    fn max_request(&self) -> usize {
        MAX_LINE
    }
}

/// `ADDR/PREFIX`.
fn cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not ADDR/PREFIX"))?;
    let ip = a.parse().map_err(|_| format!("{a:?} is not an address"))?;
    let prefix = p.parse().map_err(|_| format!("{p:?} is not a prefix"))?;
    Ok((ip, prefix))
}

fn start(args: &Args) -> Result<vnic::Running, String> {
    let model = match args.model.as_str() {
        "distributor" => Model::Distributor {
            backends: args.backends,
            balance: Balance::RoundRobin,
        },
        _ => Model::Monolithic,
    };
    let mut b = Builder::new(&args.tap)
        .processors(args.processors)
        .model(model)
        .serve_with(7000, "reverse", |ctx| Box::new(Reverse::new(&ctx)))
        .serve(
            7001,
            RequestService::new(Kv {
                store: Mutex::new(HashMap::new()),
            }),
        );
    for s in &args.ips {
        let (ip, prefix) = cidr(s)?;
        b = b.ip(ip, prefix);
    }
    for s in &args.host_ips {
        let (ip, prefix) = cidr(s)?;
        b = b.host_ip(ip, prefix);
    }
    b.start().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let running = match start(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("embed: {e}");
            return ExitCode::from(1);
        }
    };
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, running.stop_flag()) {
            eprintln!("embed: {e}");
            return ExitCode::from(1);
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", running.ready_line());
    let _ = out.flush();
    drop(out);
    match running.wait() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed: {e}");
            ExitCode::from(1)
        }
    }
}
