//! The `[tcp]` section: the TCP knobs NonStop gives per monitor (issue 20
//! part 4), checked with the line of every value.
//!
//! ```toml
//! [tcp]
//! max_rto = "64s"                    # longest retransmission timeout, backoff included (default 60s)
//! max_retransmissions = 12           # retransmissions of a segment before the reset (default 12)
//! total_retransmission_time = "720s" # reset after this long retransmitting without progress ("0": no limit; default 720s)
//! delayed_ack = true                 # false: acknowledge every segment at once (default true)
//! delayed_ack_time = "40ms"          # longest wait of a delayed ACK, 1ms to 500ms (default 40ms)
//! send_space = "256K"                # bytes a connection's app may queue to send (default 256K)
//! ```

use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;
use vnic_stack::TcpConfig;

use super::{ConfigError, ConfigFile};
use vnic_adapter::duration::parse_duration;

/// The TCP settings a vnic runs its connections with: the knobs of `[tcp]`,
/// each the stack's default unless the file sets it.
///
/// It exists so the file, the [`crate::Builder`] and `vnic status` speak of
/// the same few values, and so every other [`TcpConfig`] field stays what
/// the stack and the other flags make it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpKnobs {
    /// [`TcpConfig::rto_max`] (`max_rto`).
    pub max_rto: Duration,
    /// [`TcpConfig::max_retransmissions`].
    pub max_retransmissions: u32,
    /// [`TcpConfig::total_retransmission_time`] (None: no limit).
    pub total_retransmission_time: Option<Duration>,
    /// [`TcpConfig::delayed_ack`]: the longest wait of a delayed ACK, or
    /// None for delayed ACKs off (every segment acknowledged at once).
    pub delayed_ack: Option<Duration>,
    /// [`TcpConfig::send_buffer`] (`send_space`), in bytes.
    pub send_space: usize,
}

impl Default for TcpKnobs {
    fn default() -> TcpKnobs {
        let d = TcpConfig::default();
        TcpKnobs {
            max_rto: d.rto_max,
            max_retransmissions: d.max_retransmissions,
            total_retransmission_time: d.total_retransmission_time,
            delayed_ack: Some(d.delayed_ack).filter(|t| !t.is_zero()),
            send_space: d.send_buffer,
        }
    }
}

impl TcpKnobs {
    /// Sets these knobs in `cfg`, leaving its other fields alone.
    pub fn apply(&self, cfg: &mut TcpConfig) {
        cfg.rto_max = self.max_rto;
        cfg.max_retransmissions = self.max_retransmissions;
        cfg.total_retransmission_time = self.total_retransmission_time;
        cfg.delayed_ack = self.delayed_ack.unwrap_or(Duration::ZERO);
        cfg.send_buffer = self.send_space;
    }
}

/// Bounds of `max_rto`: not below the stack's minimum RTO (an RTO is
/// never shorter), at most an hour.
const MAX_RTO: Range<Duration> = Duration::from_millis(200)..Duration::from_secs(3600);
/// Most `max_retransmissions` (Linux's `tcp_retries2` takes up to 255).
const MAX_RETRANSMISSIONS: i64 = 255;
/// Longest `delayed_ack_time`: RFC 1122 4.2.3.2 ("MUST be less than 0.5
/// seconds"; RFC 5681 4.2 likewise).
const MAX_DELAYED_ACK: Duration = Duration::from_millis(500);
/// Bounds of `send_space`: a few segments' worth at least, at most 1 GiB
/// (the largest window TCP can use, RFC 7323).
const SEND_SPACE: (usize, usize) = (4096, 1 << 30);

/// `[tcp]` as TOML gives it, with spans for messages.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTcp {
    max_rto: Option<Spanned<Word>>,
    max_retransmissions: Option<Spanned<i64>>,
    total_retransmission_time: Option<Spanned<Word>>,
    delayed_ack: Option<Spanned<bool>>,
    delayed_ack_time: Option<Spanned<Word>>,
    send_space: Option<Spanned<Word>>,
}

/// A duration or a size, written as a string (`"64s"`, `"256K"`) or a bare
/// number (seconds, bytes): its text.
#[derive(Clone, Debug)]
struct Word(String);

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Word, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Word;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string like \"64s\" or \"256K\", or a number")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Word, E> {
                Ok(Word(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A size as written (`64K`, `1MiB`, `2G`, `1T`, `4096`): its number
/// and the binary shift of its unit (K 10, M 20, G 30, T 40, none 0), for
/// `--memory-budget` and a config file's `send_space`.
pub fn size_parts(s: &str) -> (&str, u32) {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        Some((i, 'T' | 't')) => (&t[..i], 40),
        _ => (t, 0),
    }
}

/// `256K`, `1M`, `64KiB`, `1G` or a bare number of bytes.
fn parse_space(s: &str) -> Result<usize, String> {
    let (num, shift) = size_parts(s);
    let v: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 64K, 256K, 1M)"))?;
    v.checked_mul(1u64.checked_shl(shift).unwrap_or(u64::MAX))
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{s:?} is too large"))
}

impl ConfigFile {
    /// `[tcp]`, checked: the knobs it sets over the defaults.
    pub(super) fn tcp(&self, raw: &RawTcp) -> Result<TcpKnobs, ConfigError> {
        let mut k = TcpKnobs::default();
        let duration = |w: &Spanned<Word>, key: &str| {
            parse_duration(&w.get_ref().0).or_else(|e| self.bad(w.span(), format!("{key}: {e}")))
        };
        if let Some(w) = &raw.max_rto {
            let d = duration(w, "max_rto")?;
            if !MAX_RTO.contains(&d) {
                return self.bad(
                    w.span(),
                    format!(
                        "max_rto = {:?} must be from 200ms (the shortest RTO) to 1h",
                        w.get_ref().0
                    ),
                );
            }
            k.max_rto = d;
        }
        if let Some(n) = &raw.max_retransmissions {
            k.max_retransmissions = match u32::try_from(*n.get_ref()) {
                Ok(v) if (1..=MAX_RETRANSMISSIONS).contains(&i64::from(v)) => v,
                _ => {
                    return self.bad(
                        n.span(),
                        format!(
                            "max_retransmissions = {} must be from 1 to {MAX_RETRANSMISSIONS}",
                            n.get_ref()
                        ),
                    )
                }
            };
        }
        if let Some(w) = &raw.total_retransmission_time {
            let d = duration(w, "total_retransmission_time")?;
            k.total_retransmission_time = Some(d).filter(|d| !d.is_zero());
        }
        let on = raw.delayed_ack.as_ref().is_none_or(|b| *b.get_ref());
        match (&raw.delayed_ack_time, on) {
            (Some(w), false) => {
                return self.bad(
                    w.span(),
                    "delayed_ack_time needs delayed_ack = true (delayed ACKs are off)".into(),
                )
            }
            (Some(w), true) => {
                let d = duration(w, "delayed_ack_time")?;
                if d.is_zero() || d > MAX_DELAYED_ACK {
                    return self.bad(
                        w.span(),
                        format!(
                            "delayed_ack_time = {:?} must be from 1ms to 500ms (RFC 1122); \
                             delayed_ack = false acknowledges every segment at once",
                            w.get_ref().0
                        ),
                    );
                }
                k.delayed_ack = Some(d);
            }
            (None, true) => {}
            (None, false) => k.delayed_ack = None,
        }
        if let Some(w) = &raw.send_space {
            let (min, max) = SEND_SPACE;
            k.send_space = match parse_space(&w.get_ref().0) {
                Ok(b) if (min..=max).contains(&b) => b,
                Ok(_) => {
                    return self.bad(
                        w.span(),
                        format!("send_space = {:?} must be from 4K to 1G", w.get_ref().0),
                    )
                }
                Err(e) => return self.bad(w.span(), format!("send_space: {e}")),
            };
        }
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error_at, resolved, HEAD};
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/tcp-knobs.toml");

    fn tcp(body: &str) -> String {
        format!("{HEAD}[tcp]\n{body}")
    }

    #[test]
    fn example_tcp_knobs_loads_with_nonstops_values() {
        let c = resolved(EXAMPLE);
        assert_eq!(
            c.tcp,
            TcpKnobs {
                max_rto: Duration::from_secs(64),
                max_retransmissions: 12,
                total_retransmission_time: Some(Duration::from_secs(720)),
                delayed_ack: Some(Duration::from_millis(40)),
                send_space: 256 * 1024,
            }
        );
    }

    #[test]
    fn without_a_tcp_section_the_stack_defaults_hold() {
        let c = resolved(HEAD);
        assert_eq!(c.tcp, TcpKnobs::default());
        let mut cfg = TcpConfig::default();
        c.tcp.apply(&mut cfg);
        let d = TcpConfig::default();
        assert_eq!(
            (
                cfg.rto_max,
                cfg.max_retransmissions,
                cfg.total_retransmission_time,
                cfg.delayed_ack,
                cfg.send_buffer
            ),
            (
                d.rto_max,
                d.max_retransmissions,
                d.total_retransmission_time,
                d.delayed_ack,
                d.send_buffer
            )
        );
    }

    #[test]
    fn every_knob_is_read_and_applied() {
        let c = resolved(&tcp("max_rto = \"2s\"\n\
             max_retransmissions = 30\n\
             total_retransmission_time = \"5s\"\n\
             delayed_ack = false\n\
             send_space = \"64K\"\n"));
        let mut cfg = TcpConfig::default();
        c.tcp.apply(&mut cfg);
        assert_eq!(cfg.rto_max, Duration::from_secs(2));
        assert_eq!(cfg.max_retransmissions, 30);
        assert_eq!(cfg.total_retransmission_time, Some(Duration::from_secs(5)));
        assert_eq!(cfg.delayed_ack, Duration::ZERO, "off: ACK every segment");
        assert_eq!(cfg.send_buffer, 64 * 1024);
        // Bare numbers are seconds and bytes; "0" lifts the time limit.
        let c = resolved(&tcp("max_rto = 90\n\
             total_retransmission_time = \"0\"\n\
             delayed_ack_time = \"100ms\"\n\
             send_space = 1048576\n"));
        assert_eq!(c.tcp.max_rto, Duration::from_secs(90));
        assert_eq!(c.tcp.total_retransmission_time, None);
        assert_eq!(c.tcp.delayed_ack, Some(Duration::from_millis(100)));
        assert_eq!(c.tcp.send_space, 1 << 20);
    }

    #[test]
    fn bad_tcp_values_are_named_with_line() {
        // HEAD is 8 lines and [tcp] the 9th: the first key is on line 10.
        for (body, says) in [
            ("max_rto = \"0\"", "from 200ms"),
            ("max_rto = \"100ms\"", "from 200ms"),
            ("max_rto = \"2h\"", "to 1h"),
            ("max_rto = \"soon\"", "not a duration"),
            ("max_rto = -5", "not a duration"),
            ("max_retransmissions = 0", "from 1 to 255"),
            ("max_retransmissions = 256", "from 1 to 255"),
            ("max_retransmissions = -1", "from 1 to 255"),
            ("max_retransmissions = 99999999999", "from 1 to 255"),
            ("total_retransmission_time = \"-1s\"", "not a duration"),
            ("total_retransmission_time = \"2d\"", "not a duration"),
            ("delayed_ack_time = \"0\"", "from 1ms to 500ms"),
            ("delayed_ack_time = \"1s\"", "from 1ms to 500ms"),
            ("send_space = \"0\"", "from 4K to 1G"),
            ("send_space = \"2G\"", "from 4K to 1G"),
            ("send_space = \"lots\"", "not a size"),
            ("send_space = \"99999999999999G\"", "too large"),
        ] {
            let e = error_at(&tcp(&format!("{body}\n")), 10);
            assert!(e.to_string().contains(says), "{body}: {e}");
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
        }
        let e = error_at(
            &tcp("delayed_ack = false\ndelayed_ack_time = \"40ms\"\n"),
            11,
        );
        assert!(e.to_string().contains("needs delayed_ack = true"), "{e}");
    }

    #[test]
    fn wrong_types_and_unknown_tcp_keys_are_named_with_line() {
        for (body, says) in [
            ("max_retransmissions = \"12\"", "invalid type"),
            ("delayed_ack = \"yes\"", "invalid type"),
            ("max_rto = true", "invalid type"),
            ("send_space = [1]", "invalid type"),
            ("max_rto_time = \"64s\"", "unknown field"),
        ] {
            let e = error_at(&tcp(&format!("{body}\n")), 10);
            assert!(e.to_string().contains(says), "{body}: {e}");
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
        }
    }
}
