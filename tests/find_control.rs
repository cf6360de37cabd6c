//! `vnic status` and `vnic ctl` find the control socket (issue 17 part 2):
//! in the caller's `$XDG_RUNTIME_DIR` and in `/run/vnic` (where a vnic
//! started with sudo puts it), without `--tap` when exactly one vnic
//! runs, and every error names the paths tried.

mod common;

use common::{can_run, Netns, Vnic};
use std::process::{Command, Output};

/// Starts vnic in `ns` without `--control`, with `xdg` as its
/// `$XDG_RUNTIME_DIR` (None: unset, so the socket goes to /run/vnic).
fn start(ns: &Netns, xdg: Option<&str>) -> Vnic {
    match xdg {
        Some(d) => ns.vnic_with_env(&[&format!("XDG_RUNTIME_DIR={d}")], &["--quiet"]),
        None => ns.vnic_with_env(&["-u", "XDG_RUNTIME_DIR"], &["--quiet"]),
    }
}

/// `vnic ARGS` as a user whose `$XDG_RUNTIME_DIR` is `xdg`.
fn client(xdg: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vnic"))
        .env("XDG_RUNTIME_DIR", xdg)
        .args(args)
        .output()
        .expect("run vnic")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn status_finds_the_socket_in_either_place_and_names_what_it_tried() {
    if !can_run() {
        return;
    }
    let mine = tempdir("mine");
    let other = tempdir("other");
    let a = Netns::new();
    let va = start(&a, Some(&mine));
    // Without --tap: the only vnic there is found.
    let o = client(&mine, &["status", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&a.tap), "{}", text(&o));
    // With --tap, from a user whose runtime directory is elsewhere: the
    // error names both paths tried.
    let o = client(&other, &["status", "--tap", &a.tap]);
    assert!(!o.status.success());
    let err = text(&o);
    assert!(
        err.contains(&format!("{other}/vnic-{}.sock", a.tap)),
        "{err}"
    );
    assert!(err.contains(&format!("/run/vnic/{}.sock", a.tap)), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    // A vnic started as with sudo (no XDG_RUNTIME_DIR): /run/vnic, found
    // by a user whose XDG_RUNTIME_DIR is set.
    let b = Netns::new();
    let vb = start(&b, None);
    let o = client(&other, &["status", "--tap", &b.tap, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&b.tap));
    // Two vnics in reach: without --tap, the error lists both.
    let o = client(&mine, &["status"]);
    assert!(!o.status.success());
    let err = text(&o);
    assert!(err.contains("several vnics"), "{err}");
    assert!(err.contains(&a.tap) && err.contains(&b.tap), "{err}");
    // ctl finds it the same way.
    let o = client(&other, &["ctl", "--tap", &b.tap, "filter", "none"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(vb.stop().0, Some(0));
    assert_eq!(va.stop().0, Some(0));
    // Nothing left: the error names the directories searched.
    let o = client(&other, &["status"]);
    assert!(!o.status.success());
    let err = text(&o);
    assert!(err.contains(&other) && err.contains("/run/vnic"), "{err}");
    let _ = std::fs::remove_dir_all(&mine);
    let _ = std::fs::remove_dir_all(&other);
}

fn tempdir(tag: &str) -> String {
    let d = format!("/tmp/vnic-xdg-{tag}-{}", std::process::id());
    std::fs::create_dir_all(&d).expect("mkdir");
    // As XDG_RUNTIME_DIR is: the user's own, 0700.
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    d
}
