//! The replay block: what a replay needs and cannot see in the frames,
//! written at the start of every pcapng file vnic writes, as the Section
//! Header Block's comment (`opt_comment`; Wireshark shows it under
//! Statistics > Capture File Properties). One `key=value` per line after
//! a first line `vnic-replay/1`:
//!
//! ```text
//! vnic-replay/1
//! version=0.1.0
//! args=--tap vnic0 --ip 10.0.0.2/24 --serve 7=echo --pcap bad.pcapng
//! processors=2
//! filter=round-robin
//! model=monolithic
//! mtu=1500
//! mac=02:00:00:00:00:02
//! offload=off
//! syn-backlog=128
//! tcp=max_rto_ms=60000 ...
//! impair=loss=2%,reorder=5%,duplicate=0%,delay=0ms,jitter=0ms,seed=7
//! epoch-ns=1764892800000000000
//! isn-key=00112233445566778899aabbccddeeff        (only with --pcap-secrets)
//! cookie-secret=00112233445566778899aabbccddeeff  (only with --pcap-secrets)
//! ```
//!
//! `args` are `vnic up`'s flags, each with `%`, space, CR and LF written
//! `%25`, `%20`, `%0D`, `%0A`. `epoch-ns` is the wall-clock time (ns since
//! 1970, the frames' timestamps' clock) at which the ISN and SYN-cookie
//! clocks started. Keys a reader does not know are kept and ignored, so
//! a newer vnic's trace still reads.

use std::fmt::Write as _;

/// The first line of every replay block, with the format's version.
pub const MAGIC: &str = "vnic-replay/1";

/// What a replay needs to know about the vnic that wrote a trace. Every
/// field but `version` may be missing (an older trace, a library user
/// without a command line); a replay says which it had to guess.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayBlock {
    /// vnic's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// `vnic up`'s flags, without the program and `up`.
    pub args: Option<Vec<String>>,
    /// How many processors ran.
    pub processors: Option<usize>,
    /// The distribution filter's policy (`round-robin`, ...).
    pub filter: Option<String>,
    /// The listener model (`monolithic`, ...).
    pub model: Option<String>,
    /// The link MTU the adapter used.
    pub mtu: Option<u16>,
    /// The adapter's MAC.
    pub mac: Option<[u8; 6]>,
    /// Whether TAP offloads (checksums, TSO) were on.
    pub offload: Option<bool>,
    /// Half-open connections per listener before SYN cookies.
    pub syn_backlog: Option<usize>,
    /// The TCP settings in force, as one line (what `vnic status` shows):
    /// a replay checks that its own come out the same.
    pub tcp: Option<String>,
    /// The impairment (`--impair`) with its seed, if any.
    pub impair: Option<String>,
    /// When (wall clock, ns since 1970) the ISN and SYN-cookie clocks
    /// started.
    pub epoch_ns: Option<u64>,
    /// The ISN generator's key (`--pcap-secrets` only).
    pub isn_key: Option<[u8; 16]>,
    /// The SYN-cookie secret (`--pcap-secrets` only).
    pub cookie_secret: Option<[u8; 16]>,
    /// Keys this version does not know, kept as read.
    pub other: Vec<(String, String)>,
}

/// Why a replay block could not be read: one line naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The comment does not start with [`MAGIC`].
    #[error("not a vnic replay block (its first line is not {MAGIC})")]
    NotABlock,
    /// A line is not `key=value`.
    #[error("replay block line {line}: not key=value: {text:?}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// The line as read.
        text: String,
    },
    /// A known key's value does not parse.
    #[error("replay block: {key}={value:?}: {why}")]
    BadValue {
        /// The key.
        key: String,
        /// Its value as read.
        value: String,
        /// What was expected.
        why: &'static str,
    },
    /// The block has no `version` line.
    #[error("replay block: no version line")]
    NoVersion,
}

impl ReplayBlock {
    /// The block as the SHB comment's text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{MAGIC}");
        let _ = writeln!(s, "version={}", self.version);
        if let Some(a) = &self.args {
            let enc: Vec<String> = a.iter().map(|x| encode_arg(x)).collect();
            let _ = writeln!(s, "args={}", enc.join(" "));
        }
        if let Some(n) = self.processors {
            let _ = writeln!(s, "processors={n}");
        }
        if let Some(f) = &self.filter {
            let _ = writeln!(s, "filter={}", one_line(f));
        }
        if let Some(m) = &self.model {
            let _ = writeln!(s, "model={}", one_line(m));
        }
        if let Some(m) = self.mtu {
            let _ = writeln!(s, "mtu={m}");
        }
        if let Some(m) = self.mac {
            let _ = writeln!(
                s,
                "mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            );
        }
        if let Some(o) = self.offload {
            let _ = writeln!(s, "offload={}", if o { "on" } else { "off" });
        }
        if let Some(b) = self.syn_backlog {
            let _ = writeln!(s, "syn-backlog={b}");
        }
        if let Some(t) = &self.tcp {
            let _ = writeln!(s, "tcp={}", one_line(t));
        }
        if let Some(i) = &self.impair {
            let _ = writeln!(s, "impair={}", one_line(i));
        }
        if let Some(e) = self.epoch_ns {
            let _ = writeln!(s, "epoch-ns={e}");
        }
        if let Some(k) = self.isn_key {
            let _ = writeln!(s, "isn-key={}", hex(&k));
        }
        if let Some(k) = self.cookie_secret {
            let _ = writeln!(s, "cookie-secret={}", hex(&k));
        }
        for (k, v) in &self.other {
            let _ = writeln!(s, "{}={}", one_line(k), one_line(v));
        }
        s
    }

    /// Reads a block from an SHB comment's text; a mistake is one line
    /// saying where.
    pub fn parse(text: &str) -> Result<ReplayBlock, BlockError> {
        let mut lines = text.lines();
        if lines.next().map(str::trim_end) != Some(MAGIC) {
            return Err(BlockError::NotABlock);
        }
        let mut b = ReplayBlock::default();
        let mut version = None;
        for (i, line) in lines.enumerate() {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(BlockError::Malformed {
                    line: i + 2,
                    text: line.to_string(),
                });
            };
            let bad = |why: &'static str| BlockError::BadValue {
                key: key.to_string(),
                value: value.to_string(),
                why,
            };
            match key {
                "version" => version = Some(value.to_string()),
                "args" => {
                    let args = if value.is_empty() {
                        Vec::new()
                    } else {
                        value
                            .split(' ')
                            .map(decode_arg)
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| bad("a %XX escape that is not hex or not UTF-8"))?
                    };
                    b.args = Some(args);
                }
                "processors" => {
                    b.processors = Some(value.parse().map_err(|_| bad("a number"))?);
                }
                "filter" => b.filter = Some(value.to_string()),
                "model" => b.model = Some(value.to_string()),
                "mtu" => b.mtu = Some(value.parse().map_err(|_| bad("a number up to 65535"))?),
                "mac" => {
                    b.mac = Some(parse_mac(value).ok_or_else(|| bad("six hex bytes a:b:..."))?)
                }
                "offload" => {
                    b.offload = Some(match value {
                        "on" => true,
                        "off" => false,
                        _ => return Err(bad("on or off")),
                    })
                }
                "syn-backlog" => {
                    b.syn_backlog = Some(value.parse().map_err(|_| bad("a number"))?);
                }
                "tcp" => b.tcp = Some(value.to_string()),
                "impair" => b.impair = Some(value.to_string()),
                "epoch-ns" => b.epoch_ns = Some(value.parse().map_err(|_| bad("a number"))?),
                "isn-key" => {
                    b.isn_key = Some(parse_key(value).ok_or_else(|| bad("32 hex digits"))?)
                }
                "cookie-secret" => {
                    b.cookie_secret = Some(parse_key(value).ok_or_else(|| bad("32 hex digits"))?);
                }
                _ => b.other.push((key.to_string(), value.to_string())),
            }
        }
        b.version = version.ok_or(BlockError::NoVersion)?;
        Ok(b)
    }
}

/// `s` with its line breaks made spaces (a value is one line).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn encode_arg(a: &str) -> String {
    let mut out = String::with_capacity(a.len());
    for c in a.chars() {
        match c {
            '%' => out.push_str("%25"),
            ' ' => out.push_str("%20"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            c => out.push(c),
        }
    }
    out
}

fn decode_arg(a: &str) -> Option<String> {
    let bytes = a.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let h = a.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_key(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(k)
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in m.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> ReplayBlock {
        ReplayBlock {
            version: "0.1.0".into(),
            args: Some(vec![
                "--tap".into(),
                "vr0".into(),
                "--serve".into(),
                "9=exec:cat -n".into(),
                "100%".into(),
                String::new(),
            ]),
            processors: Some(3),
            filter: Some("round-robin".into()),
            model: Some("monolithic".into()),
            mtu: Some(1500),
            mac: Some([2, 0, 0, 0, 0xab, 2]),
            offload: Some(false),
            syn_backlog: Some(0),
            tcp: Some("max_rto_ms=60000 delayed_ack=true".into()),
            impair: Some("loss=2%,reorder=5%,duplicate=0%,delay=0ms,jitter=0ms,seed=7".into()),
            epoch_ns: Some(1_764_892_800_123_456_789),
            isn_key: Some([0x11; 16]),
            cookie_secret: Some(*b"0123456789abcdef"),
            other: vec![("future".into(), "x=y".into())],
        }
    }

    #[test]
    fn a_block_reads_back_as_written() {
        let b = full();
        let text = b.render();
        assert!(text.starts_with("vnic-replay/1\nversion=0.1.0\n"), "{text}");
        assert!(
            text.contains("args=--tap vr0 --serve 9=exec:cat%20-n 100%25 \n"),
            "{text}"
        );
        assert_eq!(ReplayBlock::parse(&text), Ok(b));
        let bare = ReplayBlock {
            version: "9.9.9".into(),
            ..Default::default()
        };
        assert_eq!(ReplayBlock::parse(&bare.render()), Ok(bare));
    }

    #[test]
    fn secrets_are_written_only_when_given() {
        let mut b = full();
        b.isn_key = None;
        b.cookie_secret = None;
        let text = b.render();
        assert!(
            !text.contains("isn-key") && !text.contains("cookie-secret"),
            "{text}"
        );
        assert!(full()
            .render()
            .contains("isn-key=11111111111111111111111111111111\n"));
    }

    #[test]
    fn bad_blocks_are_one_line_errors() {
        let cases = [
            ("version=1\n", "not a vnic replay block"),
            (
                "vnic-replay/1\nversion=1\nprocessors=two\n",
                "processors=\"two\": a number",
            ),
            ("vnic-replay/1\nversion=1\njunk\n", "line 3: not key=value"),
            (
                "vnic-replay/1\nversion=1\nisn-key=abc\n",
                "isn-key=\"abc\": 32 hex digits",
            ),
            ("vnic-replay/1\nversion=1\nmac=1:2:3\n", "six hex bytes"),
            ("vnic-replay/1\nversion=1\nargs=a%zz\n", "%XX escape"),
            ("vnic-replay/1\nversion=1\noffload=maybe\n", "on or off"),
            ("vnic-replay/1\nprocessors=2\n", "no version line"),
            ("", "not a vnic replay block"),
        ];
        for (text, want) in cases {
            let e = ReplayBlock::parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn values_stay_on_one_line() {
        let b = ReplayBlock {
            version: "1".into(),
            tcp: Some("a\nb".into()),
            ..Default::default()
        };
        let back = ReplayBlock::parse(&b.render()).expect("parse");
        assert_eq!(back.tcp.as_deref(), Some("a b"));
    }
}
