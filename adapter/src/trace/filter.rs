//! Capture filters in tcpdump's language (`tcp port 80 and host
//! 10.0.0.1`), for `vnic capture FILTER` and `vnic up --pcap-filter`.
//!
//! The expression is compiled by libpcap itself (`pcap_compile` on a dead
//! handle of link type Ethernet) and run with `pcap_offline_filter`, so
//! every expression tcpdump and Wireshark's capture filters take works the
//! same here, with libpcap's own error messages. Nothing of the language
//! is written again in vnic.
//!
//! libpcap is loaded when the first filter is compiled, not linked
//! (`libpcap.rs` says why and how): building vnic needs nothing but Rust,
//! and without libpcap on the machine only filters fail, with one line
//! naming what to install ([`FilterError::NoLibpcap`]).
//!
//! A compiled program holds a raw pointer and is neither `Send` nor
//! `Sync`: it is compiled on the thread that runs it (the trace writer),
//! and [`check`] compiles one only to say whether an expression is good.

use super::libpcap::{CompileError, Program};

/// Why a filter cannot be used, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// libpcap refused the expression: its own message, with the
    /// expression.
    #[error("bad capture filter {expr:?}: {why}")]
    Bad {
        /// The expression as given.
        expr: String,
        /// What libpcap said (e.g. `syntax error`).
        why: String,
    },
    /// libpcap could not be loaded (not installed, or `VNIC_LIBPCAP`
    /// names a file that is not one): no filter can be compiled, and
    /// everything else works.
    #[error("capture filters need libpcap at run time ({0})")]
    NoLibpcap(String),
}

/// A compiled tcpdump filter expression. It exists so that the trace
/// writer can keep only the frames a capture or a trace file asked for,
/// off the hot path, with libpcap's semantics.
pub struct FrameFilter {
    expr: String,
    program: Program,
}

impl FrameFilter {
    /// Compiles `expr` for Ethernet frames (with libpcap's optimizer).
    /// An error carries libpcap's message, or says libpcap is missing.
    pub fn compile(expr: &str) -> Result<FrameFilter, FilterError> {
        let program = Program::compile(expr).map_err(|e| match e {
            CompileError::Unloadable(why) => FilterError::NoLibpcap(why),
            CompileError::Refused(why) => FilterError::Bad {
                expr: expr.to_owned(),
                why,
            },
        })?;
        Ok(FrameFilter {
            expr: expr.to_owned(),
            program,
        })
    }

    /// True if `frame` (an Ethernet frame, as recorded) passes.
    pub fn matches(&self, frame: &[u8]) -> bool {
        self.program.matches(frame)
    }

    /// The expression it was compiled from.
    pub fn expr(&self) -> &str {
        &self.expr
    }
}

/// Compiles `expr` and drops the program: whether it is a good filter,
/// for the command line and the control socket, which answer at once
/// while the writer thread compiles its own copy.
pub fn check(expr: &str) -> Result<(), FilterError> {
    FrameFilter::compile(expr).map(drop)
}

/// `expr` without surrounding white space, or `None` when nothing is
/// left: an empty filter keeps every frame, as tcpdump's does.
pub fn normalize(expr: Option<&str>) -> Option<String> {
    expr.map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::super::frames::{self, Flags};
    use super::*;

    #[test]
    fn tcpdump_expressions_match_as_libpcap_says() {
        let syn = frames::syn4(1);
        let ping = frames::ping4(false);
        let f = FrameFilter::compile("tcp port 80 and host 10.0.0.1").expect("compiles");
        assert!(f.matches(&syn));
        assert!(!f.matches(&ping));
        assert!(FrameFilter::compile("icmp").expect("icmp").matches(&ping));
        assert!(!FrameFilter::compile("tcp port 7").expect("7").matches(&syn));
        assert!(FrameFilter::compile("tcp[tcpflags] & tcp-syn != 0")
            .expect("flags")
            .matches(&syn));
        assert!(FrameFilter::compile("ip6")
            .expect("ip6")
            .matches(&frames::tcp6(1, Flags::default(), b"")));
        assert_eq!(f.expr(), "tcp port 80 and host 10.0.0.1");
    }

    #[test]
    fn a_bad_expression_is_one_line_from_libpcap() {
        let e = check("tcp prot 80").expect_err("refused");
        assert!(
            matches!(&e, FilterError::Bad { expr, .. } if expr == "tcp prot 80"),
            "{e:?}"
        );
        let line = e.to_string();
        assert!(
            line.starts_with("bad capture filter \"tcp prot 80\": "),
            "{line}"
        );
        assert!(line.contains("syntax error"), "{line}");
        assert!(!line.contains('\n'), "{line}");
        assert!(check("tcp port 80\0").is_err(), "a NUL byte is refused");
        assert!(check("port 99999").is_err());
    }

    #[test]
    fn blank_filters_keep_everything() {
        assert_eq!(normalize(Some("  ")), None);
        assert_eq!(normalize(None), None);
        assert_eq!(normalize(Some(" tcp ")), Some("tcp".to_owned()));
    }
}
