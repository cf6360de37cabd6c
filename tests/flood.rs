//! A spoofed-source SYN flood at the highest rate the test can send for
//! 5 s: real clients still connect (SYN cookies once the half-open queues
//! are full), and vnic's memory stays bounded.

mod common;

use common::{can_run, eth, http_get, rss_kib, Netns, Raw};
use pnet_packet::ethernet::EtherTypes;
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Distinct spoofed SYNs the flooder cycles through (random sources and
/// ports, made before the flood so sending is all it does).
const POOL: usize = 1 << 17;

/// The bound stated for vnic's resident memory during the flood.
const RSS_BOUND_KIB: u64 = 256 * 1024;

fn spoofed_syn(mac: [u8; 6], src: Ipv4Addr, sport: u16, seq: u32) -> Vec<u8> {
    let dst = Ipv4Addr::new(10, 0, 0, 2);
    let mut t = vec![0u8; 24];
    {
        let mut p = MutableTcpPacket::new(&mut t).expect("tcp");
        p.set_source(sport);
        p.set_destination(80);
        p.set_sequence(seq);
        p.set_data_offset(6);
        p.set_flags(TcpFlags::SYN);
        p.set_window(64240);
        p.set_options(&[pnet_packet::tcp::TcpOption::mss(1460)]);
        let ck = tcp::ipv4_checksum(&p.to_immutable(), &src, &dst);
        p.set_checksum(ck);
    }
    let ip = common::ipv4(src, dst, IpNextHeaderProtocols::Tcp, &t, |_| {});
    eth(mac, EtherTypes::Ipv4, &ip)
}

/// The flood at a fixed 50,000 SYN/s (about a fifth of what one RX
/// thread answers per second on this machine), one RX queue: the
/// SYN-cookie machinery must keep real clients connecting.
#[test]
fn real_clients_connect_through_a_50k_per_second_spoofed_syn_flood() {
    flood(Some(50_000), 1);
}

/// The flood: as fast as the test can send, from one thread. The
/// flooder spends about 1.5 us per SYN (one sendto); an RX thread about
/// 3.8 us (read, check, write the cookie SYN|ACK: two system calls). With
/// one RX queue each gets a core of this 2-core machine and the flooder
/// wins 2-3 to 1: the kernel drops the excess at the TAP queue, real SYNs
/// included (0-50% of real attempts connected within 1 s). With eight RX
/// queues (`--rx-queues 8`, receive-side scaling over eight adapter
/// threads) vnic reads every SYN that comes: here that is won by
/// scheduler share (nine busy threads on two cores: the flooder's share
/// falls), on a machine with more cores by the cores themselves. Four
/// queues read 93-100% of the SYNs and kept 85-100% of real attempts
/// (two failing runs in nine).
#[test]
fn real_clients_connect_through_a_max_rate_spoofed_syn_flood() {
    flood(None, 8);
}

/// One flood at a time: two at once would measure how they share the
/// two cores, not what either asks.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn flood(rate: Option<u64>, rx_queues: usize) {
    if !can_run() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Netns::new();
    let q = rx_queues.to_string();
    let vnic = ns.vnic(&["--quiet", "--rx-queues", &q]);
    let pid = vnic.pid().expect("pid");
    let mac = vnic_adapter::config::default_mac(&ns.tap);
    let tap = ns.tap.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let flood_stop = stop.clone();
    let path = format!("/var/run/netns/{}", ns.name);
    let flooder = std::thread::spawn(move || {
        use rand::{Rng, SeedableRng};
        use std::os::unix::io::AsRawFd;
        let f = std::fs::File::open(&path).expect("netns");
        // SAFETY: valid namespace fd, this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let raw = Raw::open(&tap);
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let frames: Vec<Vec<u8>> = (0..POOL)
            .map(|_| {
                let src = Ipv4Addr::new(10, 0, 0, rng.gen_range(3..250));
                spoofed_syn(mac, src, rng.gen_range(1024..65535), rng.gen())
            })
            .collect();
        let mut sent = 0u64;
        let t = Instant::now();
        while !flood_stop.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(5) {
            if let Some(r) = rate {
                // Paced: never ahead of `r` SYNs per second.
                let due = (t.elapsed().as_secs_f64() * r as f64) as u64;
                if sent >= due {
                    std::thread::yield_now();
                    continue;
                }
            }
            raw.send(&frames[(sent % POOL as u64) as usize]);
            sent += 1;
        }
        (sent, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let attempts = ns.run(|| {
        let mut results = Vec::new();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(4) {
            let a: SocketAddr = "10.0.0.2:80".parse().expect("addr");
            let start = Instant::now();
            let ok = TcpStream::connect_timeout(&a, Duration::from_secs(1))
                .ok()
                .map(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(1))).ok();
                    // A timed-out read is a failed attempt, not a test crash.
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        http_get(&mut s, "/", false).0 == 200
                    }))
                    .unwrap_or(false)
                })
                .unwrap_or(false);
            results.push(ok && start.elapsed() <= Duration::from_secs(1));
            std::thread::sleep(Duration::from_millis(40));
        }
        results
    });
    let rss_during = rss_kib(pid);
    stop.store(true, Ordering::Relaxed);
    let (sent, took) = flooder.join().expect("flooder");
    let ok = attempts.iter().filter(|x| **x).count();
    let rate = sent as f64 / took.as_secs_f64();
    eprintln!(
        "SYN flood: {sent} spoofed SYNs in {took:?} ({rate:.0}/s); real connections {ok}/{} within 1 s; vnic RSS {rss_during} KiB",
        attempts.len()
    );
    let st = ns.status_json();
    eprintln!(
        "vnic saw {} frames {}, sent {} SYN cookies, accepted {} by cookie; queue drops {:?}",
        st["adapter"]["frames_in"],
        st["adapter"]["rx_queues"],
        st["adapter"]["syn_cookies_sent"],
        st["adapter"]["syn_cookies_accepted"],
        st["processors"].as_array().map(|p| p
            .iter()
            .map(|x| x["queue_drops"].as_u64().unwrap_or(0))
            .collect::<Vec<_>>())
    );
    assert!(sent > 10_000, "the flood ran ({sent} SYNs)");
    assert!(
        ok * 100 >= attempts.len() * 95,
        "{ok} of {} real connection attempts succeeded within 1 s",
        attempts.len()
    );
    assert!(
        rss_during < RSS_BOUND_KIB,
        "vnic RSS {rss_during} KiB under {RSS_BOUND_KIB} KiB"
    );
    let cookies = st["adapter"]["syn_cookies_sent"].as_u64().unwrap_or(0);
    let half_open: u64 = st["processors"]
        .as_array()
        .expect("p")
        .iter()
        .map(|p| p["half_open"].as_u64().unwrap_or(0))
        .sum();
    assert!(cookies > 0, "SYN cookies answered the flood");
    // The gauge the adapter reads trails the SYNs already queued, so a
    // queue can overshoot its 256 by what was in flight: bounded all the same.
    assert!(
        half_open <= 4 * 512,
        "half-open queues bounded: {half_open}"
    );
}
