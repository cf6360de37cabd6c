//! `vnic`: the command line. Parses and checks flags, then hands them to
//! the library's [`vnic::Builder`], which wires the adapter, the
//! processors and the TAP together (see docs/ARCHITECTURE.md).

mod cli;
mod config;
mod ctl;

use clap::{CommandFactory, Parser};
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
        cli::Command::Completions { shell } => {
            let mut cmd = cli::Cli::command();
            clap_complete::generate(shell, &mut cmd, "vnic", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        cli::Command::Man { subcommand } => {
            let top = cli::Cli::command();
            let cmd = match subcommand {
                None => top,
                Some(name) => {
                    // Named as man expects: vnic-up(1).
                    let page: &'static str = match name.as_str() {
                        "up" => "vnic-up",
                        "status" => "vnic-status",
                        "ctl" => "vnic-ctl",
                        "completions" => "vnic-completions",
                        _ => "",
                    };
                    match top.find_subcommand(&name).filter(|_| !page.is_empty()) {
                        Some(sub) => sub.clone().name(page).version(env!("CARGO_PKG_VERSION")),
                        None => {
                            eprintln!(
                                "vnic: man: no subcommand {name:?} (up, status, ctl, completions)"
                            );
                            return ExitCode::from(2);
                        }
                    }
                }
            };
            match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                // A closed pipe (`vnic man | head`) is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("vnic: man: {e}");
                    ExitCode::from(1)
                }
            }
        }
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
    eprintln!("vnic: stopped: {drained}");
    Ok(())
}
