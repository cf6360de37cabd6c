//! `vnic`: the command line. Parses and checks flags, then hands them to
//! the library's [`vnic::Builder`], which wires the adapter, the
//! processors and the TAP together (see docs/ARCHITECTURE.md).

mod cli;
mod ctl;

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match args.cmd {
        cli::Command::Up(up) => {
            let plan = match cli::Plan::from_args(*up) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("vnic: {e}");
                    return ExitCode::from(2);
                }
            };
            match run_up(plan) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("vnic: {e}");
                    ExitCode::from(1)
                }
            }
        }
        cli::Command::Status(a) => ctl::status(a),
        cli::Command::Ctl(a) => ctl::ctl(a),
    }
}

/// `vnic up`: starts the library's [`vnic::Builder`] from the checked
/// flags, prints the ready line, and runs until SIGINT or SIGTERM.
fn run_up(plan: cli::Plan) -> Result<(), vnic::Error> {
    let builder = plan.builder().map_err(vnic::Error::Config)?;
    let running = builder.start()?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, running.stop_flag())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, running.stop_flag())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", running.ready_line())?;
    out.flush()?;
    drop(out);
    let drained = running.wait()?;
    if drained.closed + drained.reset > 0 {
        eprintln!(
            "vnic: stopped: {} connection(s) closed with FIN, {} reset after the drain time",
            drained.closed, drained.reset
        );
    }
    Ok(())
}
