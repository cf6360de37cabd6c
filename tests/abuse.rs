//! Remote abuse (issue 15), end to end: a crafted TCP peer, frames sent
//! and read with raw sockets on the TAP's host side, attacks one
//! connection while a real kernel client's echo connection on the SAME
//! processor (`--processors 1`) keeps making round trips; every round trip
//! must stay under 50 ms.
//!
//! The crafted peer uses an address the kernel does not own (10.0.0.50)
//! and a MAC that is not the TAP's, so vnic's answers to it reach only the
//! test's sniffer and never make the kernel send RSTs.

mod common;

use common::{can_run, echo_round_trips, eth, Netns, Raw, BOUND};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags, TcpPacket};
use pnet_packet::Packet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The crafted peer's address (not the host's: the kernel ignores it).
const ATTACKER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);
/// Nanoseconds between two of the crafted peer's one-byte segments.
const RATE_NS: u64 = 13_333;

/// A raw socket that reads every frame on one interface.
struct Sniffer {
    fd: i32,
    buf: Vec<u8>,
}

impl Sniffer {
    /// Opens it on `dev` (in the calling thread's namespace), with reads
    /// that give up after 10 ms.
    fn open(dev: &str) -> Sniffer {
        let name = std::ffi::CString::new(dev).expect("name");
        // SAFETY: plain libc calls with valid arguments; the fd is closed
        // on drop.
        unsafe {
            let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let mut sa: libc::sockaddr_ll = std::mem::zeroed();
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_protocol = proto as u16;
            sa.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            let r = libc::bind(
                fd,
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 10_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
            let big: i32 = 8 << 20;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &big as *const i32 as *const libc::c_void,
                4,
            );
            Sniffer {
                fd,
                buf: vec![0u8; 65_536],
            }
        }
    }

    /// The next TCP segment vnic sent to the crafted peer's `port`
    /// (flags, seq, ack, payload length), or None after 10 ms of nothing.
    fn next(&mut self, port: u16) -> Option<(u8, u32, u32, usize)> {
        let buf = &mut self.buf;
        loop {
            // SAFETY: reading into our own buffer.
            let n =
                unsafe { libc::recv(self.fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n <= 0 {
                return None;
            }
            let e = EthernetPacket::new(&buf[..n as usize])?;
            if e.get_ethertype() != EtherTypes::Ipv4 {
                continue;
            }
            let Some(ip) = Ipv4Packet::new(e.payload()) else {
                continue;
            };
            if ip.get_destination() != ATTACKER
                || ip.get_next_level_protocol() != IpNextHeaderProtocols::Tcp
            {
                continue;
            }
            let Some(t) = TcpPacket::new(ip.payload()) else {
                continue;
            };
            if t.get_destination() != port {
                continue;
            }
            return Some((
                t.get_flags(),
                t.get_sequence(),
                t.get_acknowledgement(),
                t.payload().len(),
            ));
        }
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        // SAFETY: closing our own fd.
        unsafe { libc::close(self.fd) };
    }
}

/// The crafted peer: its own port, talking to one of vnic's ports.
struct Peer {
    raw: Raw,
    mac: [u8; 6],
    sport: u16,
    dport: u16,
}

impl Peer {
    /// A frame from the peer: TCP with `options` (a multiple of 4 bytes)
    /// and `payload`, window field 65535, checksums right.
    #[allow(clippy::too_many_arguments)]
    fn frame(&self, flags: u8, seq: u32, ack: u32, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let hl = 20 + options.len();
        let mut b = vec![0u8; hl + payload.len()];
        b[20..hl].copy_from_slice(options);
        {
            let mut p = MutableTcpPacket::new(&mut b).expect("tcp");
            p.set_source(self.sport);
            p.set_destination(self.dport);
            p.set_sequence(seq);
            p.set_acknowledgement(ack);
            p.set_data_offset((hl / 4) as u8);
            p.set_flags(flags);
            p.set_window(65535);
            p.set_payload(payload);
            let ck = tcp::ipv4_checksum(&p.to_immutable(), &ATTACKER, &VIP);
            p.set_checksum(ck);
        }
        let ip = common::ipv4(ATTACKER, VIP, IpNextHeaderProtocols::Tcp, &b, |_| {});
        eth(self.mac, EtherTypes::Ipv4, &ip)
    }

    fn send(&self, flags: u8, seq: u32, ack: u32, payload: &[u8]) {
        self.raw.send(&self.frame(flags, seq, ack, &[], payload));
    }

    /// SYN with MSS `mss` and window scale 7, then the ACK of vnic's
    /// SYN|ACK; returns vnic's ISN.
    fn handshake(&self, sniff: &mut Sniffer, mss: u16, isn: u32) -> u32 {
        let [hi, lo] = mss.to_be_bytes();
        let opts = [2, 4, hi, lo, 1, 3, 3, 7];
        self.raw
            .send(&self.frame(TcpFlags::SYN, isn, 0, &opts, &[]));
        let t = Instant::now();
        let theirs = loop {
            assert!(t.elapsed() < Duration::from_secs(5), "no SYN|ACK");
            if let Some((flags, seq, ack, _)) = sniff.next(self.sport) {
                if flags == TcpFlags::SYN | TcpFlags::ACK && ack == isn.wrapping_add(1) {
                    break seq;
                }
            }
        };
        self.send(
            TcpFlags::ACK,
            isn.wrapping_add(1),
            theirs.wrapping_add(1),
            &[],
        );
        theirs
    }
}

/// Starts vnic with one processor (and `extra` flags), with room for
/// 20,000 frames in the TAP's queue toward vnic: the crafted peer's frames
/// and the kernel's share that queue, and a drop there (the test's own
/// machine being busy) would cost the echo client a 200 ms retransmission
/// timeout that says nothing about vnic's processor.
fn start(ns: &Netns, extra: &[&str]) -> common::Vnic {
    let mut args = vec!["--processors", "1"];
    args.extend_from_slice(extra);
    let vnic = ns.vnic_quiet_v4(&args);
    ns.exec_ok(&["ip", "link", "set", "dev", &ns.tap, "txqueuelen", "20000"]);
    vnic
}

/// Issue 15 part 2: one-byte segments in descending order across the
/// whole 256 KiB receive window of a connection to discard, then the byte
/// that fills the gap. Each arrival used to copy the whole held range
/// (quadratic: about 34 GB of memcpy for the window) and the processor's
/// other connections stalled behind it.
#[test]
fn descending_one_byte_segments_do_not_stall_the_processor() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = start(&ns, &[]);
    let mac = vnic_adapter::config::default_mac(&ns.tap);
    let tap = ns.tap.clone();
    let (worst, rounds, sent) = ns.run(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let echo = {
            let stop = stop.clone();
            std::thread::spawn(move || echo_round_trips(stop))
        };
        let mut sniff = Sniffer::open(&tap);
        let peer = Peer {
            raw: Raw::open(&tap),
            mac,
            sport: 33_333,
            dport: 9,
        };
        let isn = 1_000_000u32;
        let theirs = peer.handshake(&mut sniff, 1460, isn);
        drop(sniff);
        let base = isn.wrapping_add(1);
        let window = 256 * 1024u32;
        let t = Instant::now();
        let mut sent = 0usize;
        // Paced at about 50,000 segments a second (bursts of 100 every
        // 2 ms), some 5 s for the window: well within what the processor
        // handles when each arrival costs the same, far beyond it when each
        // copies the held range.
        for (i, off) in (1..window).rev().enumerate() {
            peer.send(
                TcpFlags::ACK,
                base.wrapping_add(off),
                theirs.wrapping_add(1),
                &[off as u8],
            );
            sent += 1;
            if i % 100 == 99 {
                let due = Duration::from_nanos(i as u64 * RATE_NS);
                if let Some(wait) = due.checked_sub(t.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        peer.send(TcpFlags::ACK, base, theirs.wrapping_add(1), &[0]);
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let (worst, rounds) = echo.join().expect("echo client");
        (worst, rounds, sent)
    });
    eprintln!("{sent} one-byte segments; echo: {rounds} round trips, worst {worst:?}");
    assert!(rounds > 100, "the echo connection kept going: {rounds}");
    assert!(
        worst < BOUND,
        "an echo round trip took {worst:?} while the window was filled backwards"
    );
    let st = ns.status_json();
    let p = &st["processors"][0];
    assert_eq!(p["panics"].as_u64(), Some(0), "{p}");
    assert!(
        p["bytes_in"].as_u64().unwrap_or(0) >= u64::from(256 * 1024u32),
        "the whole window reached discard in order: {p}"
    );
}

/// Issue 15 part 3: a crafted peer with MSS 1 reads chargen and
/// acknowledges every segment. vnic's segments to it carry at least the
/// MSS floor (48 bytes), and no pass over that connection holds up the
/// echo connection on the same processor. `--offload off` makes every
/// segment a frame (and a write), the worst case for the processor.
#[test]
fn a_tiny_mss_peer_gets_48_byte_segments_and_does_not_stall_the_processor() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = start(&ns, &["--offload", "off"]);
    let mac = vnic_adapter::config::default_mac(&ns.tap);
    let tap = ns.tap.clone();
    let (worst, rounds, sizes) = ns.run(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let echo = {
            let stop = stop.clone();
            std::thread::spawn(move || echo_round_trips(stop))
        };
        let mut sniff = Sniffer::open(&tap);
        let peer = Peer {
            raw: Raw::open(&tap),
            mac,
            sport: 33_334,
            dport: 19,
        };
        let isn = 2_000_000u32;
        let theirs = peer.handshake(&mut sniff, 1, isn);
        let seq = isn.wrapping_add(1);
        let mut sizes: Vec<usize> = Vec::new();
        let mut acked = theirs.wrapping_add(1);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(4) {
            let Some((flags, s, _, len)) = sniff.next(peer.sport) else {
                // Nothing for 10 ms: acknowledge again what we have.
                peer.send(TcpFlags::ACK, seq, acked, &[]);
                continue;
            };
            if len == 0 || flags & TcpFlags::SYN != 0 {
                continue;
            }
            sizes.push(len);
            let end = s.wrapping_add(len as u32);
            if end.wrapping_sub(acked) as i32 > 0 {
                acked = end;
            }
            // Every segment acknowledged: slow start opens cwnd fast.
            peer.send(TcpFlags::ACK, seq, acked, &[]);
        }
        peer.send(TcpFlags::RST, seq, 0, &[]);
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let (worst, rounds) = echo.join().expect("echo client");
        (worst, rounds, sizes)
    });
    let bytes: usize = sizes.iter().sum();
    let largest = sizes.iter().max().copied().unwrap_or(0);
    // Segments below the floor are only the tails of what chargen had
    // queued (as a tail below the MSS is with any MSS): a handful.
    let small = sizes
        .iter()
        .filter(|&&l| l < vnic_stack::MIN_SND_MSS)
        .count();
    eprintln!(
        "chargen to the MSS-1 peer: {} segments, {bytes} bytes, largest {largest}, \
         {small} below the floor; echo: {rounds} round trips, worst {worst:?}",
        sizes.len()
    );
    assert!(bytes > 100_000, "vnic sent a large reply: {bytes} bytes");
    assert_eq!(
        largest,
        vnic_stack::MIN_SND_MSS,
        "full segments carry the floor"
    );
    assert!(
        small * 100 < sizes.len(),
        "{small} of {} segments below the floor",
        sizes.len()
    );
    assert!(rounds > 100, "the echo connection kept going: {rounds}");
    assert!(
        worst < BOUND,
        "an echo round trip took {worst:?} while the MSS-1 peer was served"
    );
}
