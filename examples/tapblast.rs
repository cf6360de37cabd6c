//! The bare TAP reference for bench/run.sh: how fast one thread writes
//! plain 1514-byte frames into a TAP (no offload), the ceiling the issue
//! quotes for vnic's bulk throughput without offloads. Each frame is a
//! UDP/IPv4 datagram to the host side's address and a port nothing
//! listens on, so the kernel takes it as far as the UDP socket lookup.
//!
//! ```text
//! tapblast TAP HOST_IP/PREFIX SECONDS     (in a namespace of its own)
//! ```
//! Prints one JSON line: {"frames":N,"secs":S,"gbps":G}.

use std::process::Command;
use std::time::{Duration, Instant};
use vnic_adapter::emit::FrameSink;
use vnic_adapter::tap::TapDevice;

fn sum16(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn frame(dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(1514);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 0x42]);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (1514 - 14) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let ck = sum16(&ip);
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    f.extend_from_slice(&ip);
    let udp_len = total - 20;
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&9u16.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (IPv4 allows it)
    f.resize(1514, 0x5a);
    f
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: tapblast TAP HOST_IP/PREFIX SECONDS");
        std::process::exit(2);
    }
    let (name, cidr) = (&args[1], &args[2]);
    let secs: f64 = args[3].parse().expect("SECONDS");
    let tap = TapDevice::open(name).expect("open the TAP");
    for a in [
        vec!["addr", "add", cidr.as_str(), "dev", name.as_str()],
        vec!["link", "set", name.as_str(), "up"],
    ] {
        let ok = Command::new("ip").args(&a).status().map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "ip {a:?}");
    }
    let mac_text =
        std::fs::read_to_string(format!("/sys/class/net/{name}/address")).expect("the TAP's MAC");
    let mut mac = [0u8; 6];
    for (m, h) in mac.iter_mut().zip(mac_text.trim().split(':')) {
        *m = u8::from_str_radix(h, 16).expect("MAC");
    }
    let host: std::net::Ipv4Addr = cidr
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("HOST_IP");
    let mut src = host.octets();
    src[3] = src[3].wrapping_add(1);
    let f = frame(mac, src, host.octets());
    let deadline = Duration::from_secs_f64(secs);
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < deadline {
        for _ in 0..256 {
            if tap.send_frame(&f).is_ok() {
                n += 1;
            }
        }
    }
    let took = t.elapsed().as_secs_f64();
    println!(
        "{{\"frames\":{n},\"secs\":{took:.4},\"gbps\":{:.3}}}",
        n as f64 * 1514.0 * 8.0 / took / 1e9
    );
}
