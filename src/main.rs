//! `vnic`: the command line. Parses and checks flags, then wires the
//! adapter, the processors and the TAP together (see docs/ARCHITECTURE.md).

mod cli;
mod config;
mod ctl;
mod run;
mod summary;

use clap::Parser;
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
            match run::up(plan) {
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
