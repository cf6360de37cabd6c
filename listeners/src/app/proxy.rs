//! The proxy app's interface (the relay itself is being written on the
//! `proxy` branch; until it lands, every connection is refused).

use crate::app::{App, AppContext, Refused, Service};
use std::net::SocketAddr;
use std::time::Duration;

/// The HAProxy PROXY protocol version written first to each back-end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// The text line.
    V1,
    /// The binary header.
    V2,
}

impl ProxyProtocol {
    /// Parses `v1` or `v2`.
    pub fn from_name(s: &str) -> Option<ProxyProtocol> {
        match s {
            "v1" => Some(ProxyProtocol::V1),
            "v2" => Some(ProxyProtocol::V2),
            _ => None,
        }
    }
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
        }
    }
}

/// How the proxy connects.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// PROXY protocol header, if any.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            proxy_protocol: None,
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// `ADDR:PORT[,ADDR:PORT...]`.
pub fn parse_targets(s: &str) -> Result<Vec<SocketAddr>, String> {
    s.split(',')
        .map(|t| {
            t.parse::<SocketAddr>()
                .map_err(|_| format!("proxy target {t:?} is not ADDR:PORT or [ADDR]:PORT"))
        })
        .collect()
}

/// The relay service.
pub struct ProxyService {
    targets: Vec<SocketAddr>,
}

impl ProxyService {
    /// A service relaying to `targets`.
    pub fn new(targets: Vec<SocketAddr>, _opts: ProxyOptions) -> ProxyService {
        ProxyService { targets }
    }
}

impl Service for ProxyService {
    fn name(&self) -> &str {
        "proxy"
    }
    fn open(&self, _ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        Err(Refused(format!(
            "proxy to {:?}: not built yet",
            self.targets
        )))
    }
}
