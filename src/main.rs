//! `vnic`: the command line. Parses and checks flags, then hands them to
//! the library's [`vnic::Builder`], which wires the adapter, the
//! processors and the TAP together (see docs/ARCHITECTURE.md).

#![forbid(unsafe_code)]

mod capture;
mod cli;
mod ctl;
mod replay_cmd;
mod socket_table;
mod watch;

use clap::{CommandFactory, Parser};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let quiet = matches!(&args.cmd, cli::Command::Up(up) if up.quiet);
    init_log(args.verbose, quiet);
    match args.cmd {
        cli::Command::Up(up) => {
            let plan = match cli::Plan::from_args(*up) {
                Ok(p) => p,
                Err(e) => {
                    log::error!("{e}");
                    return ExitCode::from(2);
                }
            };
            match run_up(plan) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
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
                        "replay" => "vnic-replay",
                        _ => "",
                    };
                    match top.find_subcommand(&name).filter(|_| !page.is_empty()) {
                        Some(sub) => sub.clone().name(page).version(env!("CARGO_PKG_VERSION")),
                        None => {
                            log::error!(
                                "man: no subcommand {name:?} (up, status, ctl, completions, replay)"
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
                    log::error!("man: {e}");
                    ExitCode::from(1)
                }
            }
        }
        cli::Command::Capture(a) => capture::capture(a),
        cli::Command::Replay(a) => replay_cmd::replay(a),
    }
}

/// `vnic up`: starts the library's [`vnic::Builder`] from the checked
/// flags, prints the ready line, and runs until SIGINT or SIGTERM.
fn run_up(plan: cli::Plan) -> Result<(), vnic::Error> {
    if vnic_listeners::faults::armed() {
        // A test build asked to break itself: output, not log, so no
        // RUST_LOG hides it.
        let _ = writeln!(
            std::io::stderr(),
            "vnic: warning: test-only faults armed ({}=1, a test build): a segment carrying VNIC-TEST-PANIC panics its processor",
            vnic_listeners::faults::ENV
        );
    }
    // The flags after `up`, for the trace's replay block.
    let flags: Vec<String> = std::env::args()
        .skip(1)
        .skip_while(|a| a != "up")
        .skip(1)
        .collect();
    let builder = plan
        .builder()
        .map_err(vnic::Error::Config)?
        .command_line(flags);
    let running = builder.start()?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, running.stop_flag())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, running.stop_flag())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", running.ready_line())?;
    out.flush()?;
    drop(out);
    let drained = running.wait()?;
    // The run's result, as tcpdump's "N packets captured": output, not
    // log, so -q and RUST_LOG leave it.
    let _ = writeln!(std::io::stderr(), "vnic: stopped: {drained}");
    Ok(())
}

/// The log: events and errors, never a line per frame (`--trace` is for
/// frames). Info by default (the periodic summary, the line at exit),
/// warnings and errors with `up --quiet`, debug with `-v`, everything with
/// `-vv`; `RUST_LOG` overrides. Each line is `vnic: ...` as one-line
/// errors always were, with the level named below info.
fn init_log(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (_, 2..) => "trace",
        (_, 1) => "debug",
        (true, 0) => "warn",
        (false, 0) => "info",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format(|buf, record| match record.level() {
            log::Level::Error | log::Level::Info => writeln!(buf, "vnic: {}", record.args()),
            log::Level::Warn => writeln!(buf, "vnic: warning: {}", record.args()),
            level => writeln!(
                buf,
                "vnic: {} {}: {}",
                level.as_str().to_lowercase(),
                record.target(),
                record.args()
            ),
        })
        .init();
}
