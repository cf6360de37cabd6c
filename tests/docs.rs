//! The documents say what the program does (issue 17 part 1): the
//! README's flag table is `vnic up --help`'s flags, its ready line is the
//! one vnic prints, docs/CONTROL.md names every request of the protocol
//! and every field `vnic status --json` shows.

mod common;

use common::{can_run, Netns};
use std::collections::BTreeSet;
use std::process::Command;
use vnic_listeners::control::protocol::Request;

fn read(path: &str) -> String {
    let p = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The `--long` flags in `text` (each once).
fn long_flags<'a>(text: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for line in text {
        let mut rest = line;
        while let Some(i) = rest.find("--") {
            let name: String = rest[i + 2..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                .collect();
            if name.len() > 1 {
                flags.insert(format!("--{name}"));
            }
            rest = &rest[i + 2..];
        }
    }
    flags
}

#[test]
fn the_readme_flag_table_is_vnic_up_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_vnic"))
        .args(["up", "--help"])
        .output()
        .expect("vnic up --help");
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    // Flags are the lines that start with one, in clap's option list.
    let mut from_help = long_flags(
        help.lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with('-'))
            .map(|l| l.split("  ").next().unwrap_or(l)),
    );
    from_help.remove("--help");
    let readme = read("README.md");
    // The table's first column: lines `| `--flag ...` | ... |`.
    let from_readme = long_flags(
        readme
            .lines()
            .filter(|l| l.starts_with("| `-"))
            .filter_map(|l| l.split(" | ").next()),
    );
    let missing: Vec<_> = from_help.difference(&from_readme).collect();
    let gone: Vec<_> = from_readme.difference(&from_help).collect();
    assert!(
        missing.is_empty(),
        "flags of vnic up not in the README's table: {missing:?}"
    );
    assert!(
        gone.is_empty(),
        "flags in the README's table vnic up does not have: {gone:?}"
    );
}

#[test]
fn control_md_documents_every_request() {
    let doc = read("docs/CONTROL.md");
    for name in Request::NAMES {
        assert!(
            doc.contains(&format!("\"cmd\":\"{name}\"")),
            "docs/CONTROL.md does not show the request {name:?}"
        );
    }
}

/// Every key of a JSON value, recursively (map keys that are data, such as
/// drop reasons, are skipped by the caller's list).
fn keys(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                out.insert(k.clone());
                keys(x, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        _ => {}
    }
}

#[test]
fn control_md_and_readme_match_a_running_vnic() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    // The README's example ran with 4 processors on a machine of at most 4
    // cores, so `--processor-queues auto` put them on; here too, whatever
    // this machine's cores.
    let vnic = ns.vnic(&["--quiet", "--processor-queues", "on"]);
    // The README's ready line has the fields vnic prints, in its order.
    let readme = read("README.md");
    let documented = readme
        .lines()
        .find_map(|l| l.strip_prefix("# vnic: ready "))
        .expect("a ready line in the README");
    let field_names = |line: &str| -> Vec<String> {
        line.split_whitespace()
            .filter_map(|f| f.split_once('=').map(|(k, _)| k.to_string()))
            .collect()
    };
    let printed = vnic
        .ready
        .strip_prefix("vnic: ready ")
        .expect("vnic's ready line");
    assert_eq!(
        field_names(documented),
        field_names(printed),
        "README: {documented}\nvnic:   {printed}"
    );
    // Every field of the status JSON is named in docs/CONTROL.md.
    let st = ns.status_json();
    let mut all = BTreeSet::new();
    keys(&st, &mut all);
    if let Some(drops) = st["adapter"]["drops"].as_object() {
        for k in drops.keys() {
            all.remove(k); // drop reasons are data, listed by name in the table
        }
    }
    let doc = read("docs/CONTROL.md");
    let undocumented: Vec<_> = all
        .iter()
        .filter(|k| !doc.contains(&format!("`{k}`")) && !doc.contains(&format!("\"{k}\"")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "status fields docs/CONTROL.md does not name: {undocumented:?}"
    );
}

/// Every `.rs` file below `dir` (relative to the checkout), as text.
fn sources(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![std::path::PathBuf::from(format!(
        "{}/{dir}",
        env!("CARGO_MANIFEST_DIR")
    ))];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    out
}

/// The names after `prefix` in `text` (identifier characters).
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            text[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn stack_api_md_names_what_production_calls_and_nothing_gone() {
    let doc = read("docs/STACK_API.md");
    let stack: String = sources("stack/src").concat();
    let defined = names_after(&stack, "fn ");
    let documented = names_after(&doc, "pub fn ");
    let gone: Vec<_> = documented.difference(&defined).collect();
    assert!(
        gone.is_empty(),
        "docs/STACK_API.md names functions the stack has not: {gone:?}"
    );
    let processor: String = sources("listeners/src/processor").concat();
    let called = names_after(&processor, ".tcp.");
    let missing: Vec<_> = called.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "the processor calls Connection methods docs/STACK_API.md does not name: {missing:?}"
    );
}
