//! Ethernet failover (issue 21): vnic on two TAPs, vnicA and vnicB, both
//! ports of a Linux bridge br0 (10.0.0.1/24, fd00::1/64) in the test's own
//! namespace, the kernel's TCP as the client. The active link fails under
//! a running download and echo (the host takes it down, `vnic ctl link`,
//! the TAP deleted, ten failovers back and forth) and both go on intact,
//! with no reset; the stall is measured and printed. The host's neighbour
//! entries move to the new link's MAC, and a 10 ms ping loses at most a
//! few replies.

mod common;

use common::{can_run, chargen_period, connect, echo_paced, random_bytes, Netns, Vnic};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The transfers measure stalls: one test at a time, so two are not
/// sharing the cores and each other's stalls.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const GIB: usize = 1 << 30;
const MIB: usize = 1 << 20;

/// A namespace with br0 and the two TAPs in it, as the README's example.
/// The bridge gets a MAC of its own: without one it takes its lowest
/// port's, and changes it when that port (a TAP) is deleted, and vnic
/// would be left sending to the host's old MAC until the host's next
/// segment that moves a connection forward (README, "Limits").
fn bridged() -> Netns {
    let ns = Netns::new();
    for cmd in [
        "ip link add br0 address 02:00:00:00:00:01 type bridge",
        "ip addr add 10.0.0.1/24 dev br0",
        "ip addr add fd00::1/64 dev br0 nodad",
        "ip link set br0 up",
        "ip tuntap add vnicA mode tap",
        "ip tuntap add vnicB mode tap",
        "ip link set vnicA master br0 up",
        "ip link set vnicB master br0 up",
    ] {
        ns.exec_ok(&cmd.split(' ').collect::<Vec<_>>());
    }
    ns
}

/// `vnic up --tap vnicA --tap vnicB --ip 10.0.0.2/24 --ip fd00::2/64 EXTRA`.
fn start(ns: &Netns, extra: &[&str]) -> Vnic {
    let mut args: Vec<String> = vec![
        "netns".into(),
        "exec".into(),
        ns.name.clone(),
        env!("CARGO_BIN_EXE_vnic").into(),
    ];
    let control = ns.control_path();
    let base = [
        "up",
        "--tap",
        "vnicA",
        "--tap",
        "vnicB",
        "--ip",
        "10.0.0.2/24",
        "--ip",
        "fd00::2/64",
        "--time-wait",
        "1s",
        "--quiet",
        "--control",
        &control,
    ];
    args.extend(base.iter().chain(extra).map(|s| s.to_string()));
    let v = Vnic::start_program("ip", &args);
    assert!(v.ready.contains("links=vnicA,vnicB"), "{}", v.ready);
    v
}

/// `vnic ctl ARGS`, which must succeed.
fn ctl(ns: &Netns, args: &[&str]) {
    let mut a = vec!["ctl"];
    a.extend_from_slice(args);
    let out = ns.vnic_cmd(&a);
    assert!(
        out.status.success(),
        "vnic ctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The links as `vnic status --json` shows them: (name, state, mac).
fn links(ns: &Netns) -> Vec<(String, String, String)> {
    let st = ns.status_json();
    st["links"]["links"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("state"), s("mac"))
        })
        .collect()
}

/// When link `i` last failed, from `vnic status --json`
/// (`2026-12-05T12:03:04.120Z`, UTC).
fn failed_at(ns: &Netns, i: usize) -> Option<std::time::SystemTime> {
    let st = ns.status_json();
    let text = st["links"]["links"][i]["failed_at"].as_str()?.to_string();
    let (date, time) = text.trim_end_matches('Z').split_once('T')?;
    let d: Vec<i64> = date.split('-').filter_map(|x| x.parse().ok()).collect();
    let (hms, ms) = time.split_once('.')?;
    let t: Vec<u64> = hms.split(':').filter_map(|x| x.parse().ok()).collect();
    if d.len() != 3 || t.len() != 3 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    Some(
        std::time::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms.parse().ok()?),
    )
}

/// Waits until `name` is the active link (3 s at most).
fn wait_active(ns: &Netns, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let l = links(ns);
        if l.iter().any(|(n, s, _)| n == name && s == "active") {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never active: {l:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `name` is a standby (3 s at most).
fn wait_standby(ns: &Netns, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let l = links(ns);
        if l.iter().any(|(n, s, _)| n == name && s == "standby") {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never standby: {l:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A chargen download of `n` bytes, every byte checked against RFC 864's
/// pattern, with the time and total of each read that brought bytes.
struct Download {
    got: Arc<AtomicUsize>,
    started: Instant,
    thread: JoinHandle<Result<Vec<(Duration, usize)>, String>>,
}

fn download(ns: &Netns, n: usize) -> Download {
    let got = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let g = got.clone();
    let thread = ns.spawn(move || {
        let mut s = connect("10.0.0.2:19");
        let period = chargen_period();
        let mut buf = vec![0u8; 256 * 1024];
        let mut reads = Vec::with_capacity(n / 16_384);
        let mut at = 0usize;
        while at < n {
            let want = buf.len().min(n - at);
            let k = s
                .read(&mut buf[..want])
                .map_err(|e| format!("chargen read at byte {at}: {e}"))?;
            if k == 0 {
                return Err(format!("chargen closed at byte {at}"));
            }
            if let Some(i) = buf[..k]
                .iter()
                .enumerate()
                .position(|(i, b)| *b != period[(at + i) % period.len()])
            {
                return Err(format!("chargen byte {} is off the pattern", at + i));
            }
            at += k;
            reads.push((started.elapsed(), at));
            g.store(at, Ordering::Relaxed);
        }
        Ok(reads)
    });
    Download {
        got,
        started,
        thread,
    }
}

impl Download {
    /// Waits until `bytes` have come (60 s at most).
    fn wait_for(&self, bytes: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.got.load(Ordering::Relaxed) < bytes {
            assert!(
                Instant::now() < deadline,
                "the download stopped at {} bytes",
                self.got.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Time since the download started.
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn finish(self) -> Result<Vec<(Duration, usize)>, String> {
        match self.thread.join() {
            Ok(Ok(reads)) => Ok(reads),
            Ok(Err(e)) => Err(format!("download broke: {e}")),
            Err(_) => Err("download thread panicked".into()),
        }
    }
}

/// The stall a failover at `at` caused: the longest wait between two
/// reads that brought bytes, from just before `at` to 3 s after or `end`
/// (last byte before to first byte after).
fn stall_at(reads: &[(Duration, usize)], at: Duration, end: Duration) -> Duration {
    let from = at.saturating_sub(Duration::from_millis(100));
    let to = (at + Duration::from_secs(3)).min(end);
    reads
        .windows(2)
        .filter(|w| w[1].0 >= from && w[0].0 <= to)
        .map(|w| w[1].0.saturating_sub(w[0].0))
        .max()
        .unwrap_or_default()
}

/// How long after a failover at `at` the download ran below half its
/// speed of the 200 ms before (bytes per 20 ms), up to 3 s or `end`: the
/// time TCP took to recover what the failover cost.
fn slowed(reads: &[(Duration, usize)], at: Duration, end: Duration) -> Duration {
    let total_at = |t: Duration| {
        let i = reads.partition_point(|(when, _)| *when <= t);
        if i == 0 {
            0
        } else {
            reads[i - 1].1
        }
    };
    let step = Duration::from_millis(20);
    let before = total_at(at) - total_at(at.saturating_sub(Duration::from_millis(200)));
    let half = before / 10 / 2;
    let last = reads.last().map_or(at, |r| r.0);
    let to = (at + Duration::from_secs(3)).min(end).min(last);
    let mut last_slow = at;
    let mut t = at;
    while t + step <= to {
        if total_at(t + step) - total_at(t) < half {
            last_slow = t + step;
        }
        t += step;
    }
    last_slow - at
}

/// Bytes received per 50 ms from 200 ms before `at` to 800 ms after: the
/// download's view of the failover.
fn timeline(reads: &[(Duration, usize)], at: Duration) -> String {
    let total_at = |t: Duration| {
        reads
            .iter()
            .take_while(|(when, _)| *when <= t)
            .last()
            .map_or(0, |(_, b)| *b)
    };
    (-4i64..16)
        .map(|k| {
            let a = (at.as_millis() as i64 + k * 50).max(0) as u64;
            let b = a + 50;
            let kib =
                (total_at(Duration::from_millis(b)) - total_at(Duration::from_millis(a))) / 1024;
            format!("{:+}ms:{kib}K", k * 50)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A 256 MiB echo beside the download, hashed both ways; its writer
/// records the longest wait between two chunks it could write. At its
/// own half way it waits for the download's (`got` at `half`), so the
/// failover comes while both are moving.
fn echo(ns: &Netns, got: Arc<AtomicUsize>, half: usize) -> JoinHandle<(bool, Duration)> {
    ns.spawn(move || {
        let data = random_bytes(256 * MIB, 21);
        let want = Sha256::digest(&data).to_vec();
        let len = data.len();
        let stall = Arc::new(Mutex::new((Instant::now(), Duration::ZERO)));
        let s2 = stall.clone();
        let (n, hash) = echo_paced(connect("10.0.0.2:7"), data, move |i, n| {
            if i == n / 2 {
                let deadline = Instant::now() + Duration::from_secs(60);
                while got.load(Ordering::Relaxed) < half && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if let Ok(mut g) = s2.lock() {
                    g.0 = Instant::now();
                }
            }
            if let Ok(mut g) = s2.lock() {
                g.1 = g.1.max(g.0.elapsed());
                g.0 = Instant::now();
            }
        });
        let longest = stall.lock().map(|g| g.1).unwrap_or_default();
        (n == len && hash == want, longest)
    })
}

/// The one scenario of the first tests: a 1 GiB download and a 256 MiB
/// echo, `fail` run at half way of the download; both must end intact.
/// Then `after` runs on the same vnic. Returns the download's stall.
fn survives(name: &str, fail: impl FnOnce(&Netns), after: impl FnOnce(&Netns)) -> Duration {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = bridged();
    let vnic = start(&ns, &[]);
    let d = download(&ns, GIB);
    let e = echo(&ns, d.got.clone(), GIB / 2);
    d.wait_for(GIB / 2);
    let at = d.now();
    let asked = std::time::SystemTime::now();
    fail(&ns);
    wait_active(&ns, "vnicB");
    let detected = failed_at(&ns, 0)
        .and_then(|t| t.duration_since(asked).ok())
        .unwrap_or(Duration::MAX);
    let reads = d.finish();
    let echoed = e.join();
    let (reads, (intact, echo_stall)) = match (reads, echoed) {
        (Ok(r), Ok(e)) => (r, e),
        (r, e) => {
            let sockets = ns.vnic_cmd(&["status", "--sockets"]);
            let status = ns.vnic_cmd(&["status"]);
            let host = ns.exec(&[
                "sh",
                "-c",
                "ss -tin; ip neigh; bridge fdb show br br0; ip -s link",
            ]);
            eprintln!(
                "{}\n{}\nhost:\n{}",
                String::from_utf8_lossy(&status.stdout),
                String::from_utf8_lossy(&sockets.stdout),
                String::from_utf8_lossy(&host.stdout)
            );
            let (code, err) = vnic.stop();
            panic!(
                "{name}: {:?} / echo {}; vnic exit {code:?}, stderr: {err}",
                r.err(),
                if e.is_ok() { "ok" } else { "reset or broke" }
            );
        }
    };
    assert!(intact, "{name}: the echo came back different");
    let stall = stall_at(&reads, at, Duration::MAX);
    println!(
        "failover ({name}): failure noted {} ms after it was asked for; 1 GiB download and \
         256 MiB echo intact, no reset; download stall {} ms, echo writer's longest wait {} ms; bytes per 50 ms around it (the echo, held at \
         its half way until then, shares the link after it): {}",
        detected.as_millis(),
        stall.as_millis(),
        echo_stall.as_millis(),
        timeline(&reads, at)
    );
    let st = ns.status_json();
    let l = &st["links"];
    assert_eq!(l["failovers"], 1, "{l}");
    assert!(
        l["sessions_moved"].as_u64() >= Some(2),
        "the download and the echo moved: {l}"
    );
    assert_eq!(l["links"][0]["state"], "down", "{l}");
    assert_eq!(l["links"][1]["state"], "active", "{l}");
    assert!(l["links"][0]["failed_at"].is_string(), "{l}");
    // Within 100 ms of the command, give or take the command itself on a
    // loaded machine.
    assert!(
        detected < Duration::from_millis(500),
        "{name}: noted {} ms after",
        detected.as_millis()
    );
    let table = ns.vnic_cmd(&["status"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("links: vnicA down (failed ") && table.contains("vnicB active"),
        "{table}"
    );
    assert!(
        stall < Duration::from_secs(3),
        "{name}: stalled {} ms",
        stall.as_millis()
    );
    after(&ns);
    stall
}

#[test]
fn host_taking_the_active_link_down_moves_a_download_and_an_echo_intact() {
    if !can_run() {
        return;
    }
    survives(
        "host link down",
        |ns| {
            ns.exec_ok(&["ip", "link", "set", "vnicA", "down"]);
        },
        |ns| {
            // The cable back: a standby (no --failback).
            ns.exec_ok(&["ip", "link", "set", "vnicA", "up"]);
            wait_standby(ns, "vnicA");
            assert_eq!(links(ns)[1].1, "active");
        },
    );
}

#[test]
fn vnic_ctl_link_down_moves_a_download_and_an_echo_intact() {
    if !can_run() {
        return;
    }
    survives(
        "vnic ctl link down",
        |ns| ctl(ns, &["link", "vnicA", "down"]),
        |ns| {
            ctl(ns, &["link", "vnicA", "up"]);
            wait_standby(ns, "vnicA");
        },
    );
}

#[test]
fn deleting_the_active_tap_moves_a_download_and_an_echo_intact() {
    if !can_run() {
        return;
    }
    survives(
        "TAP deleted",
        |ns| {
            ns.exec_ok(&["ip", "link", "del", "vnicA"]);
        },
        |ns| {
            // Made again and set up: vnic attaches to it anew, a standby,
            // and it carries the addresses when vnicB goes.
            ns.exec_ok(&["ip", "tuntap", "add", "vnicA", "mode", "tap"]);
            ns.exec_ok(&["ip", "link", "set", "vnicA", "master", "br0", "up"]);
            wait_standby(ns, "vnicA");
            ctl(ns, &["link", "vnicB", "down"]);
            wait_active(ns, "vnicA");
            ns.exec_ok(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.0.0.2"]);
        },
    );
}

#[test]
fn ten_failovers_back_and_forth_during_one_download() {
    if !can_run() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = bridged();
    let vnic = start(&ns, &[]);
    let d = download(&ns, GIB);
    let mut at = Vec::new();
    let mut active = "vnicA";
    for k in 0..10 {
        d.wait_for((k + 1) * 80 * MIB);
        let other = if active == "vnicA" { "vnicB" } else { "vnicA" };
        at.push(d.now());
        // Half by the host's cable, half by vnic ctl.
        if k % 2 == 0 {
            ns.exec_ok(&["ip", "link", "set", active, "down"]);
            wait_active(&ns, other);
            ns.exec_ok(&["ip", "link", "set", active, "up"]);
        } else {
            ctl(&ns, &["link", active, "down"]);
            wait_active(&ns, other);
            ctl(&ns, &["link", active, "up"]);
        }
        wait_standby(&ns, active);
        active = other;
    }
    let reads = match d.finish() {
        Ok(r) => r,
        Err(e) => {
            let (code, err) = vnic.stop();
            panic!("{e}; vnic exit {code:?}, stderr: {err}")
        }
    };
    // Each failover's window ends where the next begins.
    let ends: Vec<Duration> = at
        .iter()
        .skip(1)
        .copied()
        .chain(std::iter::once(Duration::MAX))
        .collect();
    let mut stalls: Vec<u128> = at
        .iter()
        .zip(&ends)
        .map(|(&t, &end)| stall_at(&reads, t, end).as_millis())
        .collect();
    let mut slow: Vec<u128> = at
        .iter()
        .zip(&ends)
        .map(|(&t, &end)| slowed(&reads, t, end).as_millis())
        .collect();
    let (all, all_slow) = (stalls.clone(), slow.clone());
    stalls.sort_unstable();
    slow.sort_unstable();
    println!(
        "failover stall over 10 failovers during one 1 GiB download (intact): p50 {} ms, max {} ms \
         (all: {all:?}); below half speed after each: p50 {} ms, max {} ms (all: {all_slow:?})",
        stalls[stalls.len() / 2],
        stalls[stalls.len() - 1],
        slow[slow.len() / 2],
        slow[slow.len() - 1]
    );
    let st = ns.status_json();
    assert_eq!(st["links"]["failovers"], 10, "{}", st["links"]);
    assert!(
        stalls[stalls.len() / 2] < 1000,
        "median stall {} ms",
        stalls[stalls.len() / 2]
    );
}

/// The MAC `ip neigh` holds for `addr` on br0.
fn neighbour(ns: &Netns, addr: &str) -> String {
    let out = ns.exec_ok(&["ip", "neigh", "show", addr, "dev", "br0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn host_neighbour_entries_of_ipv4_and_ipv6_move_to_the_new_mac() {
    if !can_run() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = bridged();
    let _vnic = start(&ns, &[]);
    let l = links(&ns);
    let (mac_a, mac_b) = (l[0].2.clone(), l[1].2.clone());
    assert_ne!(mac_a, mac_b, "each link has its own MAC");
    for a in ["10.0.0.2", "fd00::2"] {
        ns.exec_ok(&["ping", "-c", "2", "-i", "0.2", "-W", "1", a]);
        assert_eq!(neighbour(&ns, a), mac_a, "{a} before");
    }
    let before = Instant::now();
    ctl(&ns, &["link", "vnicA", "down"]);
    // The entries were refreshed just now: the repeats past Linux's
    // locktime (1 s) move them within 2.5 s.
    let deadline = Instant::now() + Duration::from_millis(2500);
    let mut moved = [None, None];
    while moved.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, a) in ["10.0.0.2", "fd00::2"].iter().enumerate() {
            if moved[i].is_none() && neighbour(&ns, a) == mac_b {
                moved[i] = Some(before.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "neighbour entries moved to {mac_b}: IPv4 after {:?}, IPv6 after {:?}",
        moved[0], moved[1]
    );
    assert!(
        moved[0].is_some(),
        "IPv4 entry: {}",
        neighbour(&ns, "10.0.0.2")
    );
    assert!(
        moved[1].is_some(),
        "IPv6 entry: {}",
        neighbour(&ns, "fd00::2")
    );
    for a in ["10.0.0.2", "fd00::2"] {
        ns.exec_ok(&["ping", "-c", "2", "-i", "0.2", "-W", "1", a]);
    }
    let st = ns.status_json();
    assert!(
        st["links"]["links"][1]["announcements"].as_u64() >= Some(2),
        "{}",
        st["links"]
    );
}

#[test]
fn ping_every_10ms_loses_at_most_a_few_replies_over_a_failover() {
    if !can_run() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = bridged();
    let _vnic = start(&ns, &[]);
    let name = ns.name.clone();
    let ping = std::thread::spawn(move || {
        std::process::Command::new("ip")
            .args([
                "netns", "exec", &name, "ping", "-q", "-i", "0.01", "-c", "300", "-W", "1",
            ])
            .arg("10.0.0.2")
            .output()
            .expect("run ping")
    });
    std::thread::sleep(Duration::from_millis(1200));
    ns.exec_ok(&["ip", "link", "set", "vnicA", "down"]);
    let out = ping.join().expect("ping thread");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default();
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (sent, got) = (nums.first().copied(), nums.get(1).copied());
    let lost = sent.zip(got).map(|(s, g)| s - g);
    println!("ping -i 0.01 over a failover (host link down): {line}; lost {lost:?}");
    assert_eq!(sent, Some(300), "{text}");
    assert!(lost.is_some_and(|l| l <= 5), "{text}");
    wait_active(&ns, "vnicB");
}

#[test]
fn failback_makes_the_first_link_active_again_and_reserved_addresses_answer_on_their_link() {
    if !can_run() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = bridged();
    let _vnic = start(
        &ns,
        &[
            "--failback",
            "--link-ip",
            "vnicA=10.0.0.12",
            "--link-ip",
            "vnicB=10.0.0.13",
        ],
    );
    let l = links(&ns);
    let (mac_a, mac_b) = (l[0].2.clone(), l[1].2.clone());
    // Each reserved address is announced and answered on its own link,
    // from that link's MAC (ARP only: the ping itself gets no answer).
    for (ip, mac) in [("10.0.0.12", &mac_a), ("10.0.0.13", &mac_b)] {
        let _ = ns.exec(&["ping", "-c", "1", "-W", "1", ip]);
        assert_eq!(&neighbour(&ns, ip), mac, "{ip}");
    }
    ns.exec_ok(&["ip", "link", "set", "vnicA", "down"]);
    wait_active(&ns, "vnicB");
    ns.exec_ok(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.0.0.2"]);
    ns.exec_ok(&["ip", "link", "set", "vnicA", "up"]);
    // --failback: the first link takes back over (without it, it stands by:
    // the ten-failover test).
    wait_active(&ns, "vnicA");
    ns.exec_ok(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.0.0.2"]);
    let st = ns.status_json();
    assert_eq!(st["links"]["failovers"], 2, "{}", st["links"]);
    assert_eq!(st["links"]["links"][0]["link_ip"], "10.0.0.12");
    let history = st["links"]["history"].to_string();
    assert!(history.contains("failback"), "{history}");
}

/// The links, failback and reserved addresses from a config file's
/// `[adapter]` instead of flags.
#[test]
fn a_config_file_names_the_links_failback_and_reserved_addresses() {
    if !can_run() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = bridged();
    let file = std::env::temp_dir().join(format!("vnic-failover-{}.toml", ns.name));
    std::fs::write(
        &file,
        "[adapter]\ntap = [\"vnicA\", \"vnicB\"]\naddresses = [\"10.0.0.2/24\"]\n\
         failback = true\nlink_ip = { vnicA = \"10.0.0.12\", vnicB = \"10.0.0.13\" }\n",
    )
    .expect("config file");
    let control = ns.control_path();
    let args: Vec<String> = [
        "netns",
        "exec",
        &ns.name,
        env!("CARGO_BIN_EXE_vnic"),
        "up",
        "--config",
        file.to_str().expect("path"),
        "--time-wait",
        "1s",
        "--quiet",
        "--control",
        &control,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let v = Vnic::start_program("ip", &args);
    assert!(v.ready.contains("links=vnicA,vnicB"), "{}", v.ready);
    let st = ns.status_json();
    assert_eq!(
        st["links"]["links"][0]["link_ip"], "10.0.0.12",
        "{}",
        st["links"]
    );
    assert_eq!(
        st["links"]["links"][1]["link_ip"], "10.0.0.13",
        "{}",
        st["links"]
    );
    // failback = true: the first link takes back over when it returns.
    ns.exec_ok(&["ip", "link", "set", "vnicA", "down"]);
    wait_active(&ns, "vnicB");
    ns.exec_ok(&["ip", "link", "set", "vnicA", "up"]);
    wait_active(&ns, "vnicA");
    drop(v);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn what_cannot_run_with_several_links_is_refused_in_one_line() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    ns.refuses(
        &["--tap", "other", "--processor-queues", "on"],
        "--processor-queues on and several --tap links do not go together",
    );
    ns.refuses(&["--failback"], "--failback needs several links");
    ns.refuses(
        &["--tap", "other", "--link-ip", "nope=10.0.0.9"],
        "nope is not one of the --tap links",
    );
    ns.refuses(
        &["--tap", "other", "--link-ip", "other=10.0.0.2"],
        "is a virtual --ip",
    );
    let out = ns.vnic_raw(&[
        "up",
        "--tap",
        "a",
        "--ip",
        "10.0.0.2/24",
        "--link-ip",
        "10.0.0.9",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("use NAME=ADDR"), "{err}");
    ns.refuses(&["--tap", &ns.tap.clone()], "is given twice");
    let out = ns.vnic_cmd(&["ctl", "link", "vnicA", "down"]);
    assert!(!out.status.success(), "no vnic runs there");
}
