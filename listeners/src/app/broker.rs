//! The broker listener model (NonStop manual: "the broker responds to the
//! client with the address of the server to contact; the client then
//! makes a new connection"). Each processor serves the app on a port of
//! its own; the broker port answers each client with the address to
//! contact, choosing the processor by the policy, and closes:
//!
//! - HTTP (a port served by the http app): `307 Temporary Redirect` with
//!   `Location: http://VIP:PORT/path` (the request's own target), so
//!   `curl -L` and browsers follow it to the chosen processor;
//! - anything else: one line `ADDR PORT` (`10.0.0.2 8002`).

use super::checkpoint::{keep_context, Copied};
use super::{App, AppCheckpoint, AppContext, CloseReason, NoCheckpoint, Refused, Service, Socket};
use crate::distributor::Balance;
use crate::stats::Registry;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Longest request head the broker reads before it answers 431.
const MAX_HEAD: usize = 16 * 1024;

/// The broker of one served port: where each processor serves it, and
/// how the next client's processor is chosen.
pub struct Broker {
    name: String,
    http: bool,
    /// Processor K serves the app on `ports[K]`.
    ports: Vec<u16>,
    balance: Balance,
    next: Arc<AtomicUsize>,
    registry: Arc<Registry>,
}

impl Broker {
    /// A broker for a port whose app is `app` (`http` gets redirects,
    /// others the one-line answer), processor K serving it on `ports[K]`.
    pub fn new(app: &str, ports: Vec<u16>, balance: Balance, registry: Arc<Registry>) -> Broker {
        Broker {
            name: format!("broker:{app}"),
            http: app == "http",
            ports,
            balance,
            next: Arc::new(AtomicUsize::new(0)),
            registry,
        }
    }

    /// The processor the next client goes to: the live ones in turn, or
    /// the live one with the fewest connections (ties to the lowest
    /// number). None when every processor is down or failed.
    pub fn pick(&self) -> Option<usize> {
        let live: Vec<usize> = (0..self.ports.len())
            .filter(|&k| {
                self.registry
                    .processors
                    .get(k)
                    .is_some_and(|p| !p.down.load(Ordering::Relaxed) && p.failure.lock().is_none())
            })
            .collect();
        if live.is_empty() {
            return None;
        }
        Some(match self.balance {
            Balance::RoundRobin => live[self.next.fetch_add(1, Ordering::Relaxed) % live.len()],
            Balance::LeastBusy => *live
                .iter()
                .min_by_key(|&&k| self.registry.processors[k].active.load(Ordering::Relaxed))?,
        })
    }
}

impl Service for Broker {
    fn name(&self) -> &str {
        &self.name
    }
    fn open(&self, ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        let k = self
            .pick()
            .ok_or_else(|| Refused("no processor is up to take the client".into()))?;
        let to = SocketAddr::new(ctx.local.ip(), self.ports[k]);
        Ok(Box::new(BrokerApp {
            to,
            http: self.http,
            head: Vec::new(),
            out: Vec::new(),
            answered: false,
            closed: false,
        }))
    }
}

/// One client of the broker: its request head (HTTP), then the answer.
#[derive(Clone)]
struct BrokerApp {
    to: SocketAddr,
    http: bool,
    head: Vec<u8>,
    out: Vec<u8>,
    answered: bool,
    closed: bool,
}

/// `ip` as it goes in a URL's host or an answer line.
fn host(ip: IpAddr, bracket: bool) -> String {
    match ip {
        IpAddr::V6(v6) if bracket => format!("[{v6}]"),
        ip => ip.to_string(),
    }
}

/// The origin-form target of a request line (`GET /a?b HTTP/1.1` → `/a?b`);
/// `/` when it is missing or not a plain origin-form target (which the
/// redirect must never copy into its header as is).
fn target(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let t = text.split(' ').nth(1).unwrap_or("/");
    let plain = t.starts_with('/') && t.bytes().all(|b| b.is_ascii_graphic());
    if plain {
        t.to_string()
    } else {
        "/".to_string()
    }
}

impl BrokerApp {
    /// The answer to a client, once its request head (HTTP) is in.
    fn answer(&mut self) {
        self.answered = true;
        if !self.http {
            self.out = format!("{} {}\r\n", host(self.to.ip(), false), self.to.port()).into_bytes();
            return;
        }
        let line = self.head.split(|&b| b == b'\n').next().unwrap_or_default();
        let location = format!(
            "http://{}:{}{}",
            host(self.to.ip(), true),
            self.to.port(),
            target(line.strip_suffix(b"\r").unwrap_or(line))
        );
        self.out = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
    }
}

impl App for BrokerApp {
    fn poll(&mut self, sock: &mut dyn Socket) {
        if self.closed {
            return;
        }
        if !self.answered {
            if !self.http {
                self.answer();
            } else {
                let mut buf = [0u8; 2048];
                while !self.answered {
                    let n = sock.recv(&mut buf);
                    if n == 0 {
                        break;
                    }
                    self.head.extend_from_slice(&buf[..n]);
                    if self.head.windows(4).any(|w| w == b"\r\n\r\n") {
                        self.answer();
                    } else if self.head.len() > MAX_HEAD {
                        self.answered = true;
                        self.out = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
                    }
                }
                if !self.answered && sock.peer_closed() {
                    self.closed = true;
                    sock.close();
                    return;
                }
            }
        }
        if self.answered {
            // What follows the head (a body) is read and dropped.
            let mut sink = [0u8; 2048];
            while sock.recv(&mut sink) > 0 {}
            let n = sock.send(&self.out);
            self.out.drain(..n);
            if self.out.is_empty() {
                self.closed = true;
                sock.close();
            }
        }
    }

    /// Its request head so far and its answer: plain bytes, copied.
    fn checkpoint(&mut self) -> Result<Box<dyn AppCheckpoint>, NoCheckpoint> {
        let bytes = self.head.capacity() + self.out.capacity();
        Ok(Copied::new(self.clone(), bytes, keep_context).boxed())
    }

    fn nagle(&self) -> bool {
        false
    }

    fn on_closed(&mut self, _reason: CloseReason) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::MemSocket;

    fn broker(app: &str, balance: Balance) -> Broker {
        let registry = Arc::new(Registry::new("broker", "round-robin", 3));
        Broker::new(app, vec![8000, 8001, 8002], balance, registry)
    }

    fn ctx(local: &str) -> AppContext {
        let registry = Arc::new(Registry::new("broker", "round-robin", 3));
        let mut c = AppContext::detached(0, 1, registry);
        c.local = local.parse().expect("addr");
        c
    }

    #[test]
    fn http_clients_are_redirected_in_turn_to_their_processors_port() {
        let b = broker("http", Balance::RoundRobin);
        for k in [0, 1, 2, 0] {
            let mut app = b.open(ctx("10.0.0.2:80")).expect("open");
            let mut s = MemSocket::new(1 << 16);
            s.push(b"GET /stats?x=1 HTTP/1.1\r\nHost: v\r\n\r\n");
            app.poll(&mut s);
            let out = String::from_utf8(s.take_tx()).expect("utf8");
            assert!(out.starts_with("HTTP/1.1 307 "), "{out}");
            assert!(
                out.contains(&format!("Location: http://10.0.0.2:800{k}/stats?x=1\r\n")),
                "{out}"
            );
            assert!(s.closed());
        }
    }

    #[test]
    fn other_clients_get_one_line_and_ipv6_is_bracketed_only_in_urls() {
        let b = broker("echo", Balance::RoundRobin);
        let mut app = b.open(ctx("[fd00::2]:7")).expect("open");
        let mut s = MemSocket::new(1 << 16);
        app.poll(&mut s);
        assert_eq!(s.take_tx(), b"fd00::2 8000\r\n");
        assert!(s.closed());
        let h = broker("http", Balance::RoundRobin);
        let mut app = h.open(ctx("[fd00::2]:80")).expect("open");
        let mut s = MemSocket::new(1 << 16);
        s.push(b"GET http://evil/\r\nX: y HTTP/1.1\r\n\r\n");
        app.poll(&mut s);
        let out = String::from_utf8(s.take_tx()).expect("utf8");
        assert!(
            out.contains("Location: http://[fd00::2]:8000/\r\n"),
            "{out}"
        );
    }

    #[test]
    fn least_busy_picks_the_fewest_connections_and_skips_down_processors() {
        let b = broker("http", Balance::LeastBusy);
        b.registry.processors[0].active.store(5, Ordering::Relaxed);
        b.registry.processors[1].active.store(2, Ordering::Relaxed);
        b.registry.processors[2].active.store(2, Ordering::Relaxed);
        assert_eq!(b.pick(), Some(1), "ties go to the lowest number");
        b.registry.processors[1].down.store(true, Ordering::Relaxed);
        assert_eq!(b.pick(), Some(2));
        for p in &b.registry.processors {
            p.down.store(true, Ordering::Relaxed);
        }
        assert_eq!(b.pick(), None);
        assert!(b.open(ctx("10.0.0.2:80")).is_err());
    }

    #[test]
    fn an_endless_head_gets_431() {
        let b = broker("http", Balance::RoundRobin);
        let mut app = b.open(ctx("10.0.0.2:80")).expect("open");
        let mut s = MemSocket::new(1 << 16);
        s.push(&vec![b'a'; MAX_HEAD + 10]);
        app.poll(&mut s);
        let out = String::from_utf8(s.take_tx()).expect("utf8");
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
    }
}
