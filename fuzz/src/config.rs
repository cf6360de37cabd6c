//! The `config` target: any bytes as the text of a `vnic up --config`
//! file, through [`vnic::config::parse`] (TOML, then every value and
//! every listener through the filter's rules) and
//! [`ConfigFile::resolve`] with no flags and with flags the input's hash
//! picks (`--processors`, `--filter`, `--tap`, `--ip`).
//!
//! Checked: never a panic; every error is one line (no CR, LF or other
//! control character: vnic prints it as `vnic: FILE:LINE:COL: ...`),
//! starts with the file's name, and points at a line and column inside
//! the text; a config that resolves has what vnic runs with: a TAP name
//! Linux takes, at least one address, 1 to 256 processors, every
//! listener's processor and backup among them (a backup never its own
//! primary), and exactly its listeners in the filter.

use crate::control::one_line;
use crate::split::hash;
use std::path::Path;
use vnic::config::{parse, ResolvedConfig, ConfigError, ConfigFile, Overrides};
use vnic::{FilterMode, MAX_PROCESSORS};

/// The name errors give the file.
pub const FILE: &str = "fuzz.toml";

/// Checks one error against `text`, the file it is about.
fn check_error(e: &ConfigError, text: &str) {
    let msg = e.to_string();
    assert!(one_line(&msg), "an error of more than one line: {msg:?}");
    assert!(msg.starts_with(FILE), "the error names the file: {msg:?}");
    if let Some(at) = e.at {
        let lines: Vec<&str> = text.split('\n').collect();
        assert!(
            at.line >= 1 && at.line <= lines.len(),
            "line {} of {}: {msg:?}",
            at.line,
            lines.len()
        );
        let len = lines[at.line - 1].chars().count();
        assert!(
            at.column >= 1 && at.column <= len + 1,
            "column {} of a line of {len}: {msg:?}",
            at.column
        );
    }
}

/// Checks what a config that resolved holds.
fn check_config(c: &ResolvedConfig) {
    assert!(!c.tap.is_empty() && c.tap.len() <= 15, "tap {:?}", c.tap);
    assert!(!c.addresses.is_empty(), "no address");
    assert!((1..=MAX_PROCESSORS).contains(&c.processors));
    for l in &c.listeners {
        assert!(l.spec.processor < c.processors, "{l:?}");
        if let Some(b) = l.spec.backup {
            assert!(b < c.processors && b != l.spec.processor, "{l:?}");
        }
        assert_eq!(l.app.protocol(), l.spec.protocol, "{l:?}");
    }
    assert_eq!(
        c.filter.listing().len(),
        c.listeners.len(),
        "listeners in the filter"
    );
    for p in 0..c.processors.min(8) {
        c.tcp_serve_for(p);
        c.udp_serve_for(p);
    }
}

/// Resolves `file` under `flags`, checking the outcome.
fn resolve(file: &ConfigFile, flags: &Overrides, text: &str) {
    match file.resolve(flags) {
        Ok(c) => check_config(&c),
        Err(e) => check_error(&e, text),
    }
}

/// The whole target: one input as a config file.
pub fn run(data: &[u8]) {
    // vnic reads the file as UTF-8 (and says so when it is not): a
    // mutation that breaks UTF-8 is still worth its valid parts.
    let text = String::from_utf8_lossy(data);
    let file = match parse(&text, Path::new(FILE)) {
        Ok(f) => f,
        Err(e) => return check_error(&e, &text),
    };
    resolve(&file, &Overrides::default(), &text);
    let h = hash(data);
    let flags = Overrides {
        tap: (h & 1 == 1).then(|| "fz1".to_string()),
        ips: if h & 2 == 2 {
            vec![("10.9.0.2".parse().expect("ip"), 24)]
        } else {
            Vec::new()
        },
        host_ips: Vec::new(),
        processors: Some(1 + (h >> 8) as usize % 8),
        filter: Some(if h & 4 == 4 {
            FilterMode::RoundRobin
        } else {
            FilterMode::None
        }),
    };
    resolve(&file, &flags, &text);
}
