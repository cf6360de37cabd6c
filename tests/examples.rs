//! The commands in the comments of `examples/*.toml` work as written
//! (issue 17 part 1): each example's own command lines are run, in a
//! network namespace of the test's (where the examples' TAP name `vnic0`
//! is free), and what their comments promise is checked.

mod common;

use common::{can_run, Netns, Vnic};
use std::process::Command;

/// The command lines of an example's header comment (`#   command  # note`).
fn commands(example: &str) -> Vec<String> {
    let path = format!("{}/examples/{example}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter_map(|l| l.strip_prefix("#   "))
        .map(|l| l.split("  #").next().unwrap_or(l).trim().to_string())
        .collect()
}

/// Runs `line` as written in the namespace, `vnic` being the binary under
/// test and `examples/` the checkout's, with no XDG_RUNTIME_DIR (as root
/// has none), so the control socket is the default one.
fn shell(ns: &Netns, line: &str) -> (bool, String) {
    let o = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sh", "-c", &expand(line)])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

fn expand(line: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    line.replacen("vnic ", &format!("{} ", env!("CARGO_BIN_EXE_vnic")), 1)
        .replace("examples/", &format!("{root}/examples/"))
}

/// Starts the example's `vnic up` line and waits for the ready line.
fn up(ns: &Netns, line: &str) -> Vnic {
    assert!(line.starts_with("vnic up "), "{line}");
    let args = vec![
        "-u".to_string(),
        "XDG_RUNTIME_DIR".into(),
        "ip".into(),
        "netns".into(),
        "exec".into(),
        ns.name.clone(),
        "sh".into(),
        "-c".into(),
        format!("exec {} --quiet", expand(line)),
    ];
    Vnic::start_program("env", &args)
}

#[test]
fn the_example_configs_do_what_their_comments_say() {
    if !can_run() {
        return;
    }
    // web-4cpu: processor=0, then 1, 2, 3, 0.
    let c = commands("web-4cpu.toml");
    let ns = Netns::new();
    let vnic = up(&ns, &c[0]);
    let seen: Vec<String> = (0..5)
        .map(|_| {
            let (ok, out) = shell(&ns, &format!("{} -s --max-time 5", c[1]));
            assert!(ok, "{}: {out}", c[1]);
            out.split_whitespace()
                .find(|w| w.starts_with("processor="))
                .unwrap_or("none")
                .to_string()
        })
        .collect();
    assert_eq!(
        seen,
        [
            "processor=0",
            "processor=1",
            "processor=2",
            "processor=3",
            "processor=0"
        ]
    );
    assert_eq!(vnic.stop().0, Some(0));

    // primary-backup: processor 0 down, listener 1 moved to its backup.
    let c = commands("primary-backup.toml");
    let ns = Netns::new();
    let vnic = up(&ns, &c[0]);
    let (ok, out) = shell(&ns, &c[1]);
    assert!(ok, "{}: {out}", c[1]);
    let (ok, out) = shell(&ns, &c[2]);
    assert!(ok && out.contains("moved-to-backup"), "{}: {out}", c[2]);
    assert_eq!(vnic.stop().0, Some(0));

    // udp-per-address: "hi" echoed from both addresses, counted by
    // processors 0 or 1 for the first and 2 or 3 for the second.
    let c = commands("udp-per-address.toml");
    let ns = Netns::new();
    let vnic = up(&ns, &c[0]);
    for line in &c[1..3] {
        let (ok, out) = shell(&ns, line);
        assert!(ok && out.trim() == "hi", "{line}: {out:?}");
    }
    let (ok, out) = shell(&ns, &format!("{} --json", c[3]));
    assert!(ok, "{}: {out}", c[3]);
    let st: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    let d = |k: usize| st["processors"][k]["datagrams"].as_u64().unwrap_or(0);
    assert_eq!((d(0) + d(1), d(2) + d(3)), (1, 1), "{out}");
    assert_eq!(vnic.stop().0, Some(0));

    // tcp-knobs: the status shows NonStop's values in force.
    let c = commands("tcp-knobs.toml");
    let ns = Netns::new();
    let vnic = up(&ns, &c[0]);
    let (ok, out) = shell(&ns, &c[1]);
    assert!(ok, "{}: {out}", c[1]);
    let st: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(
        st["tcp"],
        serde_json::json!({"max_rto_ms": 64000, "max_retransmissions": 12,
                           "total_retransmission_time_ms": 720000, "delayed_ack": true,
                           "delayed_ack_time_ms": 40, "send_space": 262144}),
        "{out}"
    );
    assert_eq!(vnic.stop().0, Some(0));
}
