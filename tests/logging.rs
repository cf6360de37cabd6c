//! The log (issue 17 part 8): events and errors through `log`, never a
//! line per frame; `-q` keeps warnings and errors, `-v` adds debug
//! events, `RUST_LOG` overrides both.

mod common;

use common::{can_run, Netns};

#[test]
fn quiet_keeps_errors_verbose_adds_debug_and_rust_log_overrides() {
    if !can_run() {
        return;
    }
    // -q: a processor that dies is still said, the exit line is not.
    let ns = Netns::new();
    let vnic = ns.vnic(&["-q"]);
    let out = ns.vnic_cmd(&["ctl", "processor", "1", "crash"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("vnic: processor 1 failed: processor 1 crashed on request"),
        "{err}"
    );
    // The exit line is the run's result, not log: there with -q too.
    assert!(err.contains("vnic: stopped: "), "{err}");
    assert!(
        !err.contains("stopping: closing"),
        "info is off with -q: {err}"
    );

    // -v: debug events (a control request) with their source named; the
    // exit line is there too.
    let ns = Netns::new();
    let vnic = ns.vnic(&["-v"]);
    ns.status_json();
    let (_, err) = vnic.stop();
    assert!(
        err.contains("vnic: debug vnic_listeners::control::server: control request status"),
        "{err}"
    );
    assert!(err.contains("vnic: stopped: "), "{err}");
    // No line per frame, whatever the level.
    assert!(err.lines().count() < 20, "{err}");

    // RUST_LOG=off: no log at all, only the exit line.
    let ns = Netns::new();
    let control = ns.control_path();
    let vnic = ns.vnic_with_env(&["RUST_LOG=off"], &["-v", "--control", &control]);
    ns.status_json();
    let (_, err) = vnic.stop();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("vnic: stopped: "), "{err}");
}
