//! Issue 17 part 6: the dashboard in a real browser. vnic runs in the
//! test's namespace and headless Chromium runs inside the same namespace
//! (so its traffic cannot leave it), loads the page, takes a screenshot
//! and dumps the DOM after the page has drawn `/stats`. Each dump is a
//! fresh page load, so requests made by a kernel client between two
//! dumps must show in the second one's figures.

mod common;

use common::{can_run, Netns, Vnic};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The Chromium that `.ci/run` installs (Debian's `chromium`); outside CI
/// its absence skips the test loudly, under CI=true it fails.
fn chromium() -> Option<&'static str> {
    let found = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("chromium");
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("chromium must be installed under CI=true");
    }
    eprintln!("\n*** SKIPPING dashboard test: chromium is not installed ***\n");
    None
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Headless Chromium inside a namespace, with a profile directory of its
/// own that is removed on drop.
struct Browser {
    /// The namespace it runs in.
    netns: String,
    program: &'static str,
    dir: PathBuf,
}

impl Browser {
    fn new(ns: &Netns, program: &'static str) -> Browser {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("vnic-dashboard-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("browser profile directory");
        Browser {
            netns: ns.name.clone(),
            program,
            dir,
        }
    }

    /// Loads `url`, lets the page run for 2.5 s of virtual time (its
    /// refresh timer fires, `/stats` is fetched again), then does what
    /// `extra` asks (`--dump-dom`, `--screenshot=FILE`); returns stdout.
    /// The browser is killed after 90 s.
    fn run(&self, url: &str, extra: &[&str]) -> String {
        let profile = format!("--user-data-dir={}", self.dir.display());
        let t = Instant::now();
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .args(["timeout", "-k", "5", "90", self.program])
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=2500",
                &profile,
            ])
            .args(extra)
            .arg(url)
            .env("HOME", &self.dir)
            .output()
            .expect("run chromium");
        eprintln!("chromium {extra:?} {url}: {:?}", t.elapsed());
        assert!(
            out.status.success(),
            "chromium failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The value of attribute `name` in the tag `tag` (as Chromium writes
/// it: `name="value"`).
fn attr<'t>(tag: &'t str, name: &str) -> Option<&'t str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// The opening tags of the `<li>` rows that carry attribute `key`.
fn rows<'d>(dom: &'d str, key: &str) -> Vec<&'d str> {
    dom.match_indices("<li ")
        .filter_map(|(at, _)| {
            let tag = &dom[at..at + dom[at..].find('>')?];
            attr(tag, key).map(|_| tag)
        })
        .collect()
}

/// `data-NAME` of a row as a number.
fn number(row: &str, name: &str) -> u64 {
    attr(row, &format!("data-{name}"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("data-{name} in {row}"))
}

/// (accepted, bytes) of each processor row, in order, checking that the
/// rows are processors 0..n with labelled bars.
fn processors(dom: &str, n: usize) -> Vec<(u64, u64)> {
    let rows = rows(dom, "data-processor");
    assert_eq!(rows.len(), n, "one bar per processor in:\n{dom}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(number(row, "processor"), i as u64, "{row}");
        for what in ["connections", "bytes"] {
            let label = format!("aria-label=\"Processor {i} {what}\"");
            assert!(dom.contains(&label), "{label} in:\n{dom}");
        }
    }
    rows.iter()
        .map(|r| (number(r, "accepted"), number(r, "bytes")))
        .collect()
}

/// A browser and vnic (run with `args`) in a fresh namespace; dropped in
/// that order.
struct Scene {
    browser: Browser,
    _vnic: Vnic,
    ns: Netns,
}

/// The scene, or None (after saying why) where it cannot run.
fn scene(args: &[&str]) -> Option<Scene> {
    if !can_run() {
        return None;
    }
    let program = chromium()?;
    let ns = Netns::new();
    Some(Scene {
        browser: Browser::new(&ns, program),
        _vnic: ns.vnic(args),
        ns,
    })
}

#[test]
fn browser_draws_a_bar_per_processor_and_sees_round_robin() {
    let Some(scene) = scene(&["--processors", "3"]) else {
        return;
    };
    let (browser, ns) = (&scene.browser, &scene.ns);
    let shot = browser.dir.join("dashboard.png");
    let shot_arg = format!("--screenshot={}", shot.display());
    let dom = browser.run(
        "http://10.0.0.2/dashboard",
        &["--dump-dom", &shot_arg, "--window-size=1000,600"],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(png.len() > 1000, "a screenshot of {} bytes", png.len());
    let before = processors(&dom, 3);
    assert!(
        before.iter().any(|&(accepted, _)| accepted > 0),
        "the browser's own connection is counted: {before:?}"
    );

    // Six GETs from curl, each on a new connection (the server closes).
    let url = "http://10.0.0.2/";
    let mut curl = vec!["curl", "-sS", "--max-time", "10", "-H", "Connection: close"];
    curl.extend([url; 6]);
    let bodies = ns.exec_ok(&curl);
    let served: Vec<&str> = bodies
        .split("processor=")
        .skip(1)
        .filter_map(|rest| rest.lines().next())
        .collect();
    let mut per = [0; 3];
    for p in &served {
        per[p.parse::<usize>().expect("processor number")] += 1;
    }
    assert_eq!(per, [2, 2, 2], "round-robin: {served:?}");

    // `/` as a browser asks for it (Accept names text/html) is the page too.
    let dom = browser.run("http://10.0.0.2/", &["--dump-dom"]);
    let after = processors(&dom, 3);
    for (k, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(a.0 >= b.0 + 2, "processor {k} accepted {b:?} then {a:?}");
        assert!(a.1 > b.1, "processor {k} bytes {b:?} then {a:?}");
    }
}

#[test]
fn browser_draws_processors_and_back_ends_in_the_distributor_model() {
    let Some(scene) = scene(&["--model", "distributor", "--backends", "2"]) else {
        return;
    };
    let browser = &scene.browser;
    let dom = browser.run("http://10.0.0.2/dashboard", &["--dump-dom"]);
    let procs = rows(&dom, "data-processor");
    assert!(!procs.is_empty(), "processor rows in:\n{dom}");
    let backends = rows(&dom, "data-backend");
    assert_eq!(backends.len(), 2, "one bar per back-end in:\n{dom}");
    let requests: u64 = backends.iter().map(|r| number(r, "requests")).sum();
    assert!(
        requests >= 2,
        "the page and /stats were requests: {requests}"
    );
}
