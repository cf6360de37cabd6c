//! Abuse of the distributor model (issue 15, part 1): a client crafted
//! from the TAP's host side completes a handshake, pipelines GET /stats
//! requests as fast as vnic's window lets it, and advertises a zero
//! window, so that no reply can ever leave. vnic must stop reading that
//! connection once it holds its bound of outstanding requests and reply
//! bytes: its resident memory stays under a stated bound, and a kernel
//! client's echo round trips on the same distributor stay under 50 ms.

mod common;

use common::{can_run, eth, rss_kib, Netns, Raw};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags, TcpPacket};
use pnet_packet::Packet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The crafted client's address: not the host's, so the host's own TCP
/// never sees (and never resets) the connection.
const ATTACKER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 77);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SPORT: u16 = 40_777;
/// The request pipelined over and over.
const REQUEST: &[u8] = b"GET /stats HTTP/1.1\r\n\r\n";
/// Requests the attacker offers in all (about 4.6 MB); without the
/// bound vnic takes every one and keeps every reply.
const OFFERED: u64 = 200_000;
/// How long the attack lasts.
const ATTACK: Duration = Duration::from_secs(6);
/// The bound stated for vnic's resident memory during the attack: what
/// vnic needs at rest (about 25 MiB here, most of it the RX and frame
/// buffer pools) plus the one connection's bounded share (TCP's 256 KiB
/// buffers each way, 64 requests and 256 KiB of reply bytes in the
/// forwarder, see listeners/src/distributor/mod.rs: about 2 MiB
/// measured), with room to spare. Without the bound vnic took all 200,000
/// requests and kept every reply: about 300 MiB.
const RSS_BOUND_KIB: u64 = 48 * 1024;
/// Echo round trips of the other connection must stay under this.
const RTT_BOUND: Duration = Duration::from_millis(50);

/// An AF_PACKET socket that receives the IPv4 frames on one interface
/// (vnic's answers to the crafted client among them).
struct Sniffer {
    fd: i32,
}

impl Sniffer {
    fn open(dev: &str) -> Sniffer {
        let name = std::ffi::CString::new(dev).expect("name");
        let proto = (libc::ETH_P_IP as u16).to_be();
        // SAFETY: plain libc calls with valid arguments; the fd is closed on drop.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
            assert!(
                fd >= 0,
                "packet socket: {}",
                std::io::Error::last_os_error()
            );
            let ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            assert!(ifindex > 0, "no interface {dev}");
            let mut sa: libc::sockaddr_ll = std::mem::zeroed();
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_protocol = proto;
            sa.sll_ifindex = ifindex;
            let r = libc::bind(
                fd,
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 5_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
            let big: libc::c_int = 8 << 20;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &big as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            );
            Sniffer { fd }
        }
    }

    /// One frame, or None after a 5 ms wait.
    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: buf is a valid writable buffer of its length.
        let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        (n > 0).then_some(n as usize)
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        // SAFETY: closing our own fd.
        unsafe { libc::close(self.fd) };
    }
}

/// What a segment from vnic to the crafted client says.
struct Seen {
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    len: usize,
}

fn parse(frame: &[u8]) -> Option<Seen> {
    let e = EthernetPacket::new(frame)?;
    if e.get_ethertype() != EtherTypes::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new(e.payload())?;
    if ip.get_source() != VIP
        || ip.get_destination() != ATTACKER
        || ip.get_next_level_protocol() != IpNextHeaderProtocols::Tcp
    {
        return None;
    }
    let ip_len = usize::from(ip.get_total_length());
    let ihl = usize::from(ip.get_header_length()) * 4;
    let t = TcpPacket::new(ip.payload())?;
    if t.get_destination() != SPORT {
        return None;
    }
    let thl = usize::from(t.get_data_offset()) * 4;
    Some(Seen {
        flags: t.get_flags(),
        seq: t.get_sequence(),
        ack: t.get_acknowledgement(),
        window: t.get_window(),
        len: ip_len.saturating_sub(ihl + thl),
    })
}

/// A crafted segment from the attacker, always advertising window `win`.
fn segment(mac: [u8; 6], flags: u8, seq: u32, ack: u32, win: u16, payload: &[u8]) -> Vec<u8> {
    let syn = flags & TcpFlags::SYN != 0;
    let hl = if syn { 24 } else { 20 };
    let mut b = vec![0u8; hl + payload.len()];
    {
        let mut p = MutableTcpPacket::new(&mut b).expect("tcp");
        p.set_source(SPORT);
        p.set_destination(80);
        p.set_sequence(seq);
        p.set_acknowledgement(ack);
        p.set_data_offset((hl / 4) as u8);
        p.set_flags(flags);
        p.set_window(win);
        if syn {
            p.set_options(&[tcp::TcpOption::mss(1460)]);
        }
        p.set_payload(payload);
        let ck = tcp::ipv4_checksum(&p.to_immutable(), &ATTACKER, &VIP);
        p.set_checksum(ck);
    }
    let ip = common::ipv4(ATTACKER, VIP, IpNextHeaderProtocols::Tcp, &b, |_| {});
    eth(mac, EtherTypes::Ipv4, &ip)
}

/// The attacker's byte stream from offset `at`: the request, over and over.
fn stream_bytes(at: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| REQUEST[((at + i) % REQUEST.len() as u64) as usize])
        .collect()
}

/// What the attack achieved.
#[derive(Debug)]
struct Attack {
    /// Requests vnic acknowledged (took into its receive buffer).
    acked_requests: u64,
    /// Reply bytes vnic tried to send (none could be delivered).
    reply_bytes_seen: u64,
    reset: bool,
}

/// The crafted client: handshake, then pipelining with a zero window until
/// `ATTACK` is over. Runs in the namespace.
fn attack(tap: &str, mac: [u8; 6], stop: &AtomicBool) -> Attack {
    let raw = Raw::open(tap);
    let sniff = Sniffer::open(tap);
    let mut buf = vec![0u8; 70_000];
    let isn: u32 = 1_000_000;
    // Handshake (the SYN again every 500 ms until the SYN|ACK comes).
    let mut srv_nxt = None;
    let t = Instant::now();
    while srv_nxt.is_none() {
        assert!(t.elapsed() < Duration::from_secs(5), "no SYN|ACK from vnic");
        raw.send(&segment(mac, TcpFlags::SYN, isn, 0, 65535, &[]));
        let sent = Instant::now();
        while sent.elapsed() < Duration::from_millis(500) {
            let Some(n) = sniff.recv(&mut buf) else {
                continue;
            };
            if let Some(s) = parse(&buf[..n]) {
                if s.flags & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN | TcpFlags::ACK {
                    srv_nxt = Some(s.seq.wrapping_add(1));
                    break;
                }
            }
        }
    }
    let srv_nxt = srv_nxt.unwrap_or_default();
    let base = isn.wrapping_add(1);
    // Stream offsets relative to `base`.
    let mut snd_nxt: u64 = 0;
    let mut acked: u64 = 0;
    let mut wnd: u64 = 65535;
    let mut last_progress = Instant::now();
    let mut reply_bytes = 0u64;
    let mut reset = false;
    let offered = OFFERED * REQUEST.len() as u64;
    // From here on every segment says: window zero, nothing of yours received.
    raw.send(&segment(mac, TcpFlags::ACK, base, srv_nxt, 0, &[]));
    let t = Instant::now();
    while t.elapsed() < ATTACK && !stop.load(Ordering::Relaxed) {
        // Send what vnic's window allows, in segments of 1392 bytes.
        while snd_nxt < offered && snd_nxt + 1392 <= acked + wnd {
            let payload = stream_bytes(snd_nxt, 1392);
            let seq = base.wrapping_add(snd_nxt as u32);
            raw.send(&segment(
                mac,
                TcpFlags::ACK | TcpFlags::PSH,
                seq,
                srv_nxt,
                0,
                &payload,
            ));
            snd_nxt += payload.len() as u64;
        }
        // Read vnic's answers: its ACKs move the window; its data (replies,
        // zero-window probes) gets a duplicate ACK with a zero window.
        let mut got = 0;
        while let Some(n) = sniff.recv(&mut buf) {
            let Some(s) = parse(&buf[..n]) else {
                continue;
            };
            got += 1;
            if s.flags & TcpFlags::RST != 0 {
                reset = true;
                break;
            }
            if s.flags & TcpFlags::ACK != 0 {
                let off = u64::from(s.ack.wrapping_sub(base));
                if off > acked && off <= snd_nxt {
                    acked = off;
                    last_progress = Instant::now();
                }
                if off >= acked {
                    wnd = u64::from(s.window);
                }
            }
            if s.len > 0 {
                reply_bytes += s.len as u64;
                let seq = base.wrapping_add(snd_nxt as u32);
                raw.send(&segment(mac, TcpFlags::ACK, seq, srv_nxt, 0, &[]));
            }
            if got > 256 {
                break;
            }
        }
        if reset {
            break;
        }
        // Nothing acknowledged for a while with bytes out: send them again.
        if snd_nxt > acked && last_progress.elapsed() > Duration::from_millis(300) {
            snd_nxt = acked;
            last_progress = Instant::now();
        }
    }
    Attack {
        acked_requests: acked / REQUEST.len() as u64,
        reply_bytes_seen: reply_bytes,
        reset,
    }
}

#[test]
fn pipelined_stats_with_a_zero_window_stay_bounded_and_echo_stays_fast() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--model", "distributor", "--backends", "2", "--quiet"]);
    let pid = vnic.pid().expect("pid");
    let mac = vnic_adapter::config::default_mac(&ns.tap);
    let tap = ns.tap.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let worst_rtt_us = Arc::new(AtomicU64::new(0));
    let rounds = Arc::new(AtomicU64::new(0));
    // The echo client: connected before the attack, round trips throughout.
    let echo = {
        let (stop, worst, rounds) = (stop.clone(), worst_rtt_us.clone(), rounds.clone());
        let path = format!("/var/run/netns/{}", ns.name);
        std::thread::spawn(move || {
            use std::os::unix::io::AsRawFd;
            let f = std::fs::File::open(&path).expect("netns");
            // SAFETY: valid namespace fd, this thread only.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let a: SocketAddr = "10.0.0.2:7".parse().expect("addr");
            let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut back = [0u8; 64];
            let mut i = 0u8;
            while !stop.load(Ordering::Relaxed) {
                let block = [i; 64];
                let t = Instant::now();
                s.write_all(&block).expect("echo write");
                s.read_exact(&mut back).expect("echo read");
                let rtt = t.elapsed().as_micros() as u64;
                assert_eq!(back, block, "echo intact");
                worst.fetch_max(rtt, Ordering::Relaxed);
                rounds.fetch_add(1, Ordering::Relaxed);
                i = i.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = rss_kib(pid);
    worst_rtt_us.store(0, Ordering::Relaxed);
    let attacker = {
        let (stop, path) = (stop.clone(), format!("/var/run/netns/{}", ns.name));
        std::thread::spawn(move || {
            use std::os::unix::io::AsRawFd;
            let f = std::fs::File::open(&path).expect("netns");
            // SAFETY: valid namespace fd, this thread only.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            attack(&tap, mac, &stop)
        })
    };
    let mut rss_max = 0;
    let t = Instant::now();
    while !attacker.is_finished() && t.elapsed() < ATTACK + Duration::from_secs(5) {
        rss_max = rss_max.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let got = attacker.join().expect("attacker");
    rss_max = rss_max.max(rss_kib(pid));
    echo.join().expect("echo client");
    let worst = Duration::from_micros(worst_rtt_us.load(Ordering::Relaxed));
    let rounds = rounds.load(Ordering::Relaxed);
    eprintln!(
        "distributor abuse: vnic took {} requests, sent {} reply bytes into the zero window \
         (reset: {}); vnic RSS {rss_before} KiB before, {rss_max} KiB at most during; \
         echo {rounds} round trips, worst {worst:?}",
        got.acked_requests, got.reply_bytes_seen, got.reset
    );
    assert!(!got.reset, "vnic reset the pipelining client: {got:?}");
    assert!(
        got.acked_requests >= 100,
        "the attack landed: vnic took {} requests",
        got.acked_requests
    );
    assert!(
        rss_max < RSS_BOUND_KIB,
        "vnic RSS {rss_max} KiB under {RSS_BOUND_KIB} KiB (before: {rss_before} KiB)"
    );
    assert!(
        rounds > 50,
        "the echo client kept going ({rounds} round trips)"
    );
    assert!(
        worst < RTT_BOUND,
        "echo round trips under {RTT_BOUND:?} during the attack (worst {worst:?})"
    );
    // vnic is still fine: a new request is answered.
    let status = ns.run(|| {
        let a: SocketAddr = "10.0.0.2:80".parse().expect("addr");
        let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("t");
        common::http_get(&mut s, "/", false).0
    });
    assert_eq!(status, 200);
}
