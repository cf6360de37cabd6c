//! The flags of `vnic replay`, and turning a trace's recorded `vnic up`
//! flags back into the plan they were (`replay_plan`).

use super::*;

/// Flags of `vnic replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The trace to replay (a pcapng written by `vnic up --pcap`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Compare with this trace's outbound frames instead (the same
    /// session recorded by another build or with other settings).
    #[arg(long, value_name = "FILE")]
    pub against: Option<PathBuf>,
    /// Print the first divergence, or every one.
    #[arg(long, value_name = "WHAT", default_value = "first-divergence",
          value_parser = ["first-divergence", "all"])]
    pub report: String,
    /// Write the trace's connections as a Rust regression test (the stack
    /// driven with the trace's inbound segments, asserting the outbound
    /// ones; with --against, the other trace's) to this file.
    #[arg(long, value_name = "PATH")]
    pub emit_test: Option<PathBuf>,
}

/// The plan of the `vnic up` flags a trace's replay block recorded.
pub fn replay_plan(args: &[String]) -> Result<Plan, String> {
    let argv = ["vnic", "up"]
        .into_iter()
        .map(String::from)
        .chain(args.iter().cloned());
    let cli = Cli::try_parse_from(argv)
        .map_err(|e| format!("the trace's vnic up flags: {}", first_line(&e.to_string())))?;
    let Command::Up(up) = cli.cmd else {
        return Err("the trace's flags are not vnic up's".into());
    };
    Plan::from_args(*up).map_err(|e| format!("the trace's vnic up flags: {e}"))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim_start_matches("error: ")
}
