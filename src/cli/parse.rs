//! The value parsers of `vnic up`'s flags: each turns one flag's text
//! into its value or a one-line error clap prints as is.

use super::*;

/// `PORT=APP`.
pub fn parse_serve(s: &str) -> Result<(u16, ServeApp), String> {
    let (port, app) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not PORT=APP (e.g. 8080=http)"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {port:?} must be a number from 1 to 65535"))?;
    if let Some(targets) = app.strip_prefix("proxy:") {
        return Ok((port, ServeApp::Proxy(proxy::parse_targets(targets)?)));
    }
    if let Some(command) = app.strip_prefix("exec:") {
        return Ok((port, ServeApp::Exec(exec::parse_command(command)?)));
    }
    let app = AppKind::from_name(app).ok_or_else(|| {
        format!(
            "unknown app {app:?}: choose echo, discard, chargen, http, \
             proxy:ADDR:PORT[,ADDR:PORT...] or exec:'PROGRAM ARGS...'"
        )
    })?;
    Ok((port, ServeApp::Builtin(app)))
}

/// `loss=5%,reorder=10%,...`.
pub fn parse_impair(s: &str) -> Result<ImpairSpec, String> {
    ImpairSpec::parse(s)
}

/// `round-robin`, `hash`, `least-connections` or `none`.
pub fn parse_filter(s: &str) -> Result<FilterMode, String> {
    FilterMode::from_name(s)
        .ok_or_else(|| format!("unknown filter {s:?}: choose {}", FilterMode::NAMES))
}

/// `--slow-processor K=DURATION`: a processor number and a delay of at
/// most 1 s (a longer one stalls the processor's connections into
/// retransmissions, which measures nothing).
pub fn parse_slow(s: &str) -> Result<(usize, Duration), String> {
    let (k, d) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write K=DURATION, e.g. 1=2ms"))?;
    let k: usize = k
        .trim()
        .parse()
        .map_err(|_| format!("{k:?} is not a processor number"))?;
    let d = parse_duration(d)?;
    if d.is_zero() || d > Duration::from_secs(1) {
        return Err(format!(
            "{s:?}: the delay must be more than 0 and at most 1s"
        ));
    }
    Ok((k, d))
}

/// `--congestion NAME`: one of [`CongestionAlgorithm::ALL`].
pub fn parse_congestion(s: &str) -> Result<CongestionAlgorithm, String> {
    CongestionAlgorithm::from_name(s)
        .ok_or_else(|| format!("unknown congestion control {s:?}: choose cubic, newreno or bbr"))
}

/// vnic's one duration syntax (`500ms`, `2s`, `1.5s`, `2m`, `1h`), for
/// clap's value parsers.
pub use vnic_adapter::duration::parse_duration;

/// `512M`, `2G`, `64MiB`, `4096K`, or a bare number of bytes; at least
/// 1 MiB, at most 1 TiB.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let bad = || format!("{s:?} is not a size from 1M to 1T (e.g. 512M, 2G)");
    let (num, shift) = vnic::config::size_parts(s);
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    let bytes = v * f64::from(1u32 << shift.min(30)) * f64::from(1u32 << (shift - shift.min(30)));
    if !bytes.is_finite() || !(f64::from(1u32 << 20)..=2f64.powi(40)).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes as usize)
}

/// `--link-ip NAME=ADDR`: a link's reserved IPv4 address.
pub fn parse_link_ip(s: &str) -> Result<(String, std::net::Ipv4Addr), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: use NAME=ADDR (a --tap link and an IPv4 address)"))?;
    if name.is_empty() {
        return Err(format!("{s:?}: the link's name is missing"));
    }
    let ip = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
    Ok((name.to_string(), ip))
}
