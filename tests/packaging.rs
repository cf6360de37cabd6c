//! What a package needs (issue 17 part 9): licence files the crates name,
//! one minimum Rust version for every crate, shell completions and man
//! pages from the program itself, and a systemd unit that runs vnic
//! without root.

use std::process::Command;

fn root(path: &str) -> String {
    let p = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn vnic(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_vnic"))
        .args(args)
        .output()
        .expect("run vnic");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn licence_files_match_the_crates_licence() {
    assert!(root("Cargo.toml").contains("license = \"MIT OR Apache-2.0\""));
    assert!(root("LICENSE-MIT").starts_with("MIT License"));
    assert!(root("LICENSE-APACHE")
        .contains("Apache License\n                           Version 2.0, January 2004"));
    for krate in [
        "Cargo.toml",
        "adapter/Cargo.toml",
        "stack/Cargo.toml",
        "listeners/Cargo.toml",
        "sys/Cargo.toml",
    ] {
        let text = root(krate);
        assert!(text.contains("license.workspace = true"), "{krate}");
        assert!(
            text.contains("rust-version.workspace = true"),
            "{krate} inherits rust-version"
        );
    }
}

#[test]
fn completions_for_each_shell_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out, err) = vnic(&["completions", shell]);
        assert!(ok, "{shell}: {err}");
        for sub in ["up", "status", "ctl"] {
            assert!(out.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(out.contains("memory-budget"), "{shell}: up's flags");
    }
    let (ok, _, err) = vnic(&["completions", "tcsh"]);
    assert!(!ok && err.lines().count() >= 1);
}

#[test]
fn man_pages_render_for_vnic_and_its_subcommands() {
    let (ok, out, _) = vnic(&["man"]);
    assert!(ok);
    assert!(out.contains(".TH vnic 1"), "{}", &out[..out.len().min(300)]);
    let (ok, out, _) = vnic(&["man", "up"]);
    assert!(ok);
    assert!(out.contains(".TH vnic-up 1"));
    assert!(
        out.contains("memory\\-budget"),
        "up's flags are on its page"
    );
    let (ok, _, err) = vnic(&["man", "nope"]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // When man is installed, it formats the page without complaint.
    if Command::new("man").arg("--version").output().is_ok() {
        let page = std::env::temp_dir().join(format!("vnic-up-{}.1", std::process::id()));
        std::fs::write(&page, vnic(&["man", "up"]).1).expect("write page");
        let o = Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(&page)
            .env("MANWIDTH", "100")
            .output()
            .expect("man -l");
        let _ = std::fs::remove_file(&page);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && text.contains("memory-budget"),
            "{text}"
        );
    }
}

#[test]
fn the_systemd_unit_runs_vnic_without_root() {
    let unit = root("contrib/vnic@.service");
    for line in [
        "DynamicUser=yes",
        "RuntimeDirectory=vnic",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_BPF",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_BPF",
        "ExecStart=/usr/local/bin/vnic up --tap %i",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "no {line:?}");
    }
    assert!(!unit.lines().any(|l| l.starts_with("User=root")));
    // systemd's own check, where it is installed: the only complaints
    // allowed are the binary not being installed here and man pages not
    // being in man's path.
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!(
            "{}/contrib/vnic@.service",
            env!("CARGO_MANIFEST_DIR")
        ))
        .output();
    if let Ok(o) = verify {
        let err = String::from_utf8_lossy(&o.stderr);
        for l in err.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                l.contains("/usr/local/bin/vnic is not executable") || l.contains("man vnic"),
                "systemd-analyze: {l}"
            );
        }
    }
}
