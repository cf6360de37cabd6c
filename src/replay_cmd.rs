//! `vnic replay FILE`: reads the trace, rebuilds the vnic its replay
//! block describes (or guesses one), replays it ([`vnic::replay::replay`])
//! and prints what it found; `--emit-test` writes the regression test.

use crate::cli::{self, ReplayArgs};
use std::io::Write;
use std::process::ExitCode;
use vnic::replay::{self, Trace};

/// Runs `vnic replay`: exit 0 when the replay is identical to the trace,
/// 1 when it diverges, 2 when the trace cannot be replayed.
pub fn replay(a: ReplayArgs) -> ExitCode {
    match run(&a) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            log::error!("replay: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(a: &ReplayArgs) -> Result<bool, String> {
    let trace = Trace::read(&a.file).map_err(|e| e.to_string())?;
    let against = match &a.against {
        Some(p) => Some(Trace::read(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let recorded = trace.block.as_ref().and_then(|b| b.args.clone());
    let (builder, guessed) = match recorded {
        Some(args) => (cli::replay_plan(&args)?.builder()?, Vec::new()),
        None => replay::guess_settings(&trace),
    };
    let mut outcome =
        replay::replay(&trace, builder, against.as_ref()).map_err(|e| e.to_string())?;
    outcome.guessed.extend(guessed);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(report(&outcome, a.report == "all", against.is_some()).as_bytes());
    let _ = out.flush();
    if let Some(path) = &a.emit_test {
        let expected = against.as_ref().unwrap_or(&trace);
        let text = replay::emit::emit_test(&trace, expected, &name_of(path), &outcome)
            .map_err(|e| format!("--emit-test: {e}"))?;
        std::fs::write(path, text)
            .map_err(|e| format!("--emit-test: cannot write {}: {e}", path.display()))?;
        let _ = writeln!(out, "replay: wrote the test {}", path.display());
    }
    Ok(outcome.identical())
}

/// The test's name: the file's stem, made an identifier.
fn name_of(path: &std::path::Path) -> String {
    let stem = path
        .file_stem()
        .map_or_else(|| "replayed".into(), |s| s.to_string_lossy().into_owned());
    let mut id: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() || id.starts_with(|c: char| c.is_ascii_digit()) {
        id.insert_str(0, "trace_");
    }
    id
}

/// What `vnic replay` prints: one summary line, the first divergence
/// (or all), what was guessed, and notes.
pub fn report(o: &replay::Outcome, all: bool, against: bool) -> String {
    let mut s = String::new();
    let whose = if against {
        "the other trace"
    } else {
        "the trace"
    };
    if o.identical() {
        s.push_str(&format!(
            "replay: {} frames in, {} out; identical to {whose}\n",
            thousands(o.frames_in),
            thousands(o.frames_out)
        ));
    } else {
        s.push_str(&format!(
            "replay: {} frames in, {} out ({whose}: {}); {} divergence{}\n",
            thousands(o.frames_in),
            thousands(o.frames_out),
            thousands(o.trace_out),
            thousands(o.divergences.len()),
            if o.divergences.len() == 1 { "" } else { "s" }
        ));
        let shown = if all { o.divergences.len() } else { 1 };
        for d in o.divergences.iter().take(shown) {
            s.push_str(&d.to_string());
        }
    }
    for g in &o.guessed {
        s.push_str(&format!("replay: guessed: {g}\n"));
    }
    for n in &o.notes {
        s.push_str(&format!("replay: note: {n}\n"));
    }
    s.push_str(&format!(
        "replay: compared per connection in order, the adapter's other answers in order, every \
         inbound decision; left out: {}\n",
        replay::compare::EXCLUDED
    ));
    s
}

/// `1204` as `1,204`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1204), "1,204");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn test_names_are_identifiers() {
        assert_eq!(name_of(std::path::Path::new("a/bad-run.rs")), "bad_run");
        assert_eq!(name_of(std::path::Path::new("9.rs")), "trace_9");
    }
}
