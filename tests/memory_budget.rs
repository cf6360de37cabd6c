//! Issue 15 part 4, end to end: real kernel clients that send to echo and
//! never read hold a zero window, so vnic would keep a full send buffer of
//! their own bytes, and a full receive buffer behind it, for ever. (Chargen
//! holders no longer do: chargen's stream is shared by every connection,
//! not copied into each send buffer.) The memory budget, the zero-window
//! limit and the idle limit bound what they can take, and an echo
//! connection on the same processor keeps its round trips under 50 ms
//! meanwhile.

mod common;

use common::{can_run, echo_round_trips, rss_kib, Netns, BOUND};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The two tests run one at a time: the round-trip bound is about the
/// attacked processor, not about a second vnic sharing the two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Budget of the test's vnic (one processor).
const BUDGET_MIB: u64 = 48;

/// Clients that never read: 400 full send buffers would be 100 MiB.
const HOLDERS: usize = 400;

/// What each holder sends at once: its socket takes it all (1 MiB send
/// buffers) and the kernel pushes it into vnic as fast as vnic's windows
/// let it, more than vnic's send and receive buffers together hold.
const SENT_EACH: usize = 1 << 20;

/// Makes the kernel's receive buffers small in the test's namespace, so
/// that a client that does not read closes its window after a few KiB,
/// and its send buffers large, so that a holder's one write hands the
/// kernel all it sends.
fn small_receive_buffers(ns: &Netns) {
    ns.exec_ok(&["sysctl", "-q", "-w", "net.ipv4.tcp_rmem=4096 4096 4096"]);
    ns.exec_ok(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.tcp_wmem=4096 1048576 4194304",
    ]);
}

/// Opens `n` echo connections, sends each [`SENT_EACH`] bytes (whatever
/// its socket takes without waiting) and never reads; returns those vnic
/// accepted (the others were refused with RST or timed out).
fn hold_zero_windows(n: usize) -> Vec<TcpStream> {
    let to: SocketAddr = "10.0.0.2:7".parse().expect("addr");
    let bytes = vec![0x5au8; SENT_EACH];
    (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok()?;
            s.set_nonblocking(true).ok()?;
            let _ = s.write(&bytes);
            Some(s)
        })
        .collect()
}

#[test]
fn zero_window_holders_cannot_push_vnic_past_its_memory_budget() {
    if !can_run() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Netns::new();
    small_receive_buffers(&ns);
    let budget = format!("{BUDGET_MIB}M");
    let vnic = ns.vnic_quiet_v4(&["--processors", "1", "--memory-budget", &budget]);
    let pid = vnic.pid().expect("vnic's pid");
    std::thread::sleep(Duration::from_millis(300));
    let base = rss_kib(pid);
    let (worst, rounds, holders, peak) = ns.run(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let echo = {
            let stop = stop.clone();
            std::thread::spawn(move || echo_round_trips(stop))
        };
        // The echo connection is open before the budget runs out.
        std::thread::sleep(Duration::from_millis(300));
        let holders = hold_zero_windows(HOLDERS);
        let mut peak = 0;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        let (worst, rounds) = echo.join().expect("echo client");
        (worst, rounds, holders, peak)
    });
    // Read while the holders still hold their connections.
    let st = ns.status_json();
    let text = ns.vnic_cmd(&["status"]);
    let held = holders.len();
    drop(holders);
    let p = &st["processors"][0];
    let memory = p["memory"].as_u64().unwrap_or(0);
    let refused = p["memory_refused"].as_u64().unwrap_or(0);
    let resets = p["memory_resets"].as_u64().unwrap_or(0);
    eprintln!(
        "rss {base} KiB at start, peak {peak} KiB; {held} of {HOLDERS} holders connected, \
         {refused} refused, {resets} reset; memory {memory} of {} bytes; \
         echo {rounds} round trips, worst {worst:?}",
        p["memory_budget"]
    );
    assert_eq!(p["memory_budget"].as_u64(), Some(BUDGET_MIB << 20), "{p}");
    assert!(memory <= BUDGET_MIB << 20, "the budget holds: {p}");
    assert!(
        memory > (BUDGET_MIB << 20) / 2,
        "the holders still hold most of it: {p}"
    );
    assert!(refused > 0, "connections past the budget were refused: {p}");
    // What the connections may hold, plus slack for the allocator, the
    // buffers of the adapter and of the 400 refused or reset sockets.
    let bound = base + (BUDGET_MIB << 10) + (16 << 10);
    assert!(
        peak < bound,
        "resident memory {peak} KiB passed {bound} KiB (start {base} KiB + budget + 16 MiB)"
    );
    assert!(rounds > 100, "the echo connection kept going: {rounds}");
    assert!(worst < BOUND, "an echo round trip took {worst:?}");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("refused-for-memory"),
        "the table says why: {text}"
    );
}

/// A client that never reads is reset after the zero-window limit, and one
/// that sends nothing after the idle limit; both are counted.
#[test]
fn the_zero_window_and_idle_limits_reset_and_count() {
    if !can_run() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Netns::new();
    small_receive_buffers(&ns);
    let _vnic = ns.vnic_quiet_v4(&[
        "--processors",
        "1",
        "--zero-window-timeout",
        "1s",
        "--idle-timeout",
        "2s",
    ]);
    let (stalled, idle, busy) = ns.run(|| {
        let chargen: SocketAddr = "10.0.0.2:19".parse().expect("addr");
        let echo: SocketAddr = "10.0.0.2:7".parse().expect("addr");
        let stalled = TcpStream::connect(chargen).expect("connect chargen");
        let mut idle = TcpStream::connect(echo).expect("connect echo");
        let mut busy = TcpStream::connect(echo).expect("connect echo");
        busy.set_read_timeout(Some(Duration::from_secs(2))).ok();
        // The busy one makes a round trip every 200 ms for 4 s: never idle.
        let mut buf = [0u8; 8];
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(4) {
            busy.write_all(b"12345678").expect("busy write");
            busy.read_exact(&mut buf).expect("busy read");
            std::thread::sleep(Duration::from_millis(200));
        }
        // The stalled one now reads: what it gets ends in a reset.
        let mut stalled = stalled;
        stalled.set_read_timeout(Some(Duration::from_secs(2))).ok();
        let mut sink = vec![0u8; 1 << 16];
        let stalled_end = loop {
            match stalled.read(&mut sink) {
                Ok(0) => break ErrorKind::UnexpectedEof,
                Ok(_) => continue,
                Err(e) => break e.kind(),
            }
        };
        idle.set_read_timeout(Some(Duration::from_secs(2))).ok();
        let idle_end = match idle.read(&mut buf) {
            Ok(0) => ErrorKind::UnexpectedEof,
            Ok(_) => ErrorKind::Other,
            Err(e) => e.kind(),
        };
        busy.write_all(b"abcdefgh").expect("busy still open");
        busy.read_exact(&mut buf).expect("busy still answered");
        (stalled_end, idle_end, buf)
    });
    assert_eq!(stalled, ErrorKind::ConnectionReset, "the stalled reader");
    assert_eq!(idle, ErrorKind::ConnectionReset, "the idle client");
    assert_eq!(&busy, b"abcdefgh");
    let st = ns.status_json();
    let p = &st["processors"][0];
    assert_eq!(p["zero_window_resets"].as_u64(), Some(1), "{p}");
    assert_eq!(p["idle_resets"].as_u64(), Some(1), "{p}");
}
