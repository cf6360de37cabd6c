//! Tests of the tracer: decision texts, trace lines for every kind of
//! frame, and pcapng files read back with `pcap-file`'s reader.

use super::comment::{out_comment, out_kind, rx_comment};
use super::frames::{self, Flags};
use super::line::{format_conn_line, format_line};
use super::*;
use crate::counters::DropKind;
use crate::emit::{CaptureSink, FrameSink};
use crate::filter::FilterMode;
use crate::rx::Decision;
use crate::vnet::VnetHeader;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

// ---------------------------------------------------------------- comments

macro_rules! rx_comment_is {
    ($name:ident, $d:expr, $mode:expr, $want:expr) => {
        #[test]
        fn $name() {
            assert_eq!(rx_comment(&$d, $mode), $want);
        }
    };
}

const RR: FilterMode = FilterMode::RoundRobin;

rx_comment_is!(
    comment_dropped_names_the_drop_kind,
    Decision::Dropped(DropKind::BadTcpChecksum),
    RR,
    "in drop bad-tcp-checksum"
);
rx_comment_is!(
    comment_not_for_us,
    Decision::NotForUs,
    RR,
    "in ignore not-for-us"
);
rx_comment_is!(comment_ignored, Decision::Ignored, RR, "in adapter ignore");
rx_comment_is!(
    comment_arp_reply,
    Decision::ArpReply,
    RR,
    "in adapter arp-reply"
);
rx_comment_is!(
    comment_ndp_advert,
    Decision::NdpAdvert,
    RR,
    "in adapter ndp-advert"
);
rx_comment_is!(
    comment_echo_reply,
    Decision::EchoReply,
    RR,
    "in adapter echo-reply"
);
rx_comment_is!(
    comment_port_unreachable,
    Decision::PortUnreachable,
    RR,
    "in adapter port-unreachable"
);
rx_comment_is!(
    comment_rate_limited,
    Decision::RateLimited,
    RR,
    "in adapter rate-limited"
);
rx_comment_is!(
    comment_rst_closed_port,
    Decision::RstClosedPort,
    RR,
    "in adapter rst closed-port"
);
rx_comment_is!(
    comment_rst_no_connection,
    Decision::RstNoConnection,
    RR,
    "in adapter rst no-connection"
);
rx_comment_is!(
    comment_new_connection_round_robin,
    Decision::NewConnection {
        processor: 2,
        port: 80,
        slot: 5
    },
    RR,
    "in cpu=2 rr-new port=80 slot=5"
);
rx_comment_is!(
    comment_new_connection_without_filtering,
    Decision::NewConnection {
        processor: 0,
        port: 7,
        slot: 0
    },
    FilterMode::None,
    "in cpu=0 new port=7 slot=0"
);
rx_comment_is!(
    comment_flow,
    Decision::Flow { processor: 3 },
    RR,
    "in cpu=3 flow"
);
rx_comment_is!(
    comment_syn_cookie,
    Decision::SynCookie {
        processor: 1,
        port: 80
    },
    RR,
    "in adapter syn-cookie port=80 cpu=1 half-open-full"
);
rx_comment_is!(
    comment_udp_datagram_round_robin,
    Decision::Datagram {
        processor: 2,
        port: 7,
        slot: 1
    },
    RR,
    "in cpu=2 rr-udp port=7 slot=1"
);
rx_comment_is!(
    comment_udp_datagram_without_filtering,
    Decision::Datagram {
        processor: 0,
        port: 7,
        slot: 0
    },
    FilterMode::None,
    "in cpu=0 udp port=7 slot=0"
);

#[test]
fn comment_every_drop_kind_has_its_name() {
    for k in DropKind::ALL {
        assert_eq!(
            rx_comment(&Decision::Dropped(k), RR),
            format!("in drop {}", k.name())
        );
    }
}

#[test]
fn out_kind_recognises_every_adapter_answer() {
    let rst = frames::tcp4(
        5,
        Flags {
            rst: true,
            ack: Some(1),
            ..Flags::default()
        },
        b"",
    );
    let data = frames::tcp4(5, ack(1), b"x");
    let na = frames::ndp(136);
    let echo4 = frames::ping4(true);
    let mut echo6 = frames::ping6();
    echo6[54] = 129; // echo reply
    assert_eq!(out_kind(&frames::arp(2)), "arp-reply");
    assert_eq!(out_kind(&na), "ndp-advert");
    assert_eq!(out_kind(&echo4), "echo-reply");
    assert_eq!(out_kind(&echo6), "echo-reply");
    assert_eq!(out_kind(&frames::unreachable4()), "port-unreachable");
    assert_eq!(out_kind(&rst), "rst");
    assert_eq!(out_kind(&data), "tcp");
    assert_eq!(out_kind(&frames::udp4(b"x")), "other");
    assert_eq!(out_kind(&[1, 2, 3]), "other");
    assert_eq!(
        out_comment(Origin::Adapter, &frames::arp(2)),
        "out adapter arp-reply"
    );
    assert_eq!(out_comment(Origin::Processor(2), &data), "out cpu=2");
}

// ------------------------------------------------------------------ lines

/// 12:00:01.123456 UTC on 1970-01-01.
fn noon() -> SystemTime {
    UNIX_EPOCH + Duration::from_micros((12 * 3600 + 1) * 1_000_000 + 123_456)
}

fn ack(n: u32) -> Flags {
    Flags {
        ack: Some(n),
        ..Flags::default()
    }
}

fn syn() -> Flags {
    Flags {
        syn: true,
        ..Flags::default()
    }
}

fn line_in(frame: &[u8], comment: &str) -> String {
    format_line(noon(), Direction::In, frame, comment)
}

#[test]
fn line_tcp4_syn_shows_the_new_connection() {
    let f = frames::tcp4(1000, syn(), b"");
    assert_eq!(
        line_in(&f, "in cpu=2 rr-new port=80 slot=0"),
        "12:00:01.123456 in  10.0.0.1.40000 > 10.0.0.2.80: Flags [S], seq 1000, win 64240, \
         length 0 | cpu=2 rr-new port=80 slot=0"
    );
}

#[test]
fn line_tcp4_syn_ack_out() {
    let f = frames::tcp4(
        7,
        Flags {
            syn: true,
            ack: Some(1001),
            ..Flags::default()
        },
        b"",
    );
    assert_eq!(
        format_line(noon(), Direction::Out, &f, "out cpu=2"),
        "12:00:01.123456 out 10.0.0.1.40000 > 10.0.0.2.80: Flags [S.], seq 7, ack 1001, \
         win 64240, length 0 | cpu=2"
    );
}

#[test]
fn line_tcp4_pure_ack_has_no_seq() {
    let f = frames::tcp4(1001, ack(8), b"");
    assert_eq!(
        line_in(&f, "in cpu=2 flow"),
        "12:00:01.123456 in  10.0.0.1.40000 > 10.0.0.2.80: Flags [.], ack 8, win 64240, \
         length 0 | cpu=2 flow"
    );
}

#[test]
fn line_tcp4_data_shows_the_seq_range() {
    let f = frames::tcp4(
        1001,
        Flags {
            psh: true,
            ack: Some(8),
            ..Flags::default()
        },
        b"GET / HTTP/1.1\r\n\r\n",
    );
    assert_eq!(
        line_in(&f, "in cpu=2 flow"),
        "12:00:01.123456 in  10.0.0.1.40000 > 10.0.0.2.80: Flags [P.], seq 1001:1019, \
         ack 8, win 64240, length 18 | cpu=2 flow"
    );
}

#[test]
fn line_tcp4_rst() {
    let f = frames::tcp4(
        0,
        Flags {
            rst: true,
            ack: Some(1001),
            ..Flags::default()
        },
        b"",
    );
    assert_eq!(
        format_line(noon(), Direction::Out, &f, "out adapter rst"),
        "12:00:01.123456 out 10.0.0.1.40000 > 10.0.0.2.80: Flags [R.], seq 0, ack 1001, \
         win 64240, length 0 | adapter rst"
    );
}

#[test]
fn line_tcp4_fin() {
    let f = frames::tcp4(
        1019,
        Flags {
            fin: true,
            ack: Some(8),
            ..Flags::default()
        },
        b"",
    );
    assert!(
        line_in(&f, "in cpu=1 flow")
            .contains("Flags [F.], seq 1019, ack 8, win 64240, length 0 | cpu=1 flow"),
        "{}",
        line_in(&f, "")
    );
}

#[test]
fn line_tcp4_bad_checksum_is_still_described() {
    let mut f = frames::tcp4(1000, syn(), b"");
    let last = f.len() - 1;
    f[14 + 20 + 16] ^= 0xff; // the TCP checksum
    f[last] ^= 0; // keep the frame whole
    assert_eq!(
        line_in(&f, "in drop bad-tcp-checksum"),
        "12:00:01.123456 in  10.0.0.1.40000 > 10.0.0.2.80: Flags [S], seq 1000, win 64240, \
         length 0 | drop bad-tcp-checksum"
    );
}

#[test]
fn line_tcp6_syn_and_data() {
    let f = frames::tcp6(1000, syn(), b"");
    assert_eq!(
        line_in(&f, "in cpu=0 new port=80 slot=0"),
        "12:00:01.123456 in  fd00::1.40000 > fd00::2.80: Flags [S], seq 1000, win 64240, \
         length 0 | cpu=0 new port=80 slot=0"
    );
    let f = frames::tcp6(1001, ack(5), b"abc");
    assert_eq!(
        line_in(&f, "in cpu=0 flow"),
        "12:00:01.123456 in  fd00::1.40000 > fd00::2.80: Flags [.], seq 1001:1004, ack 5, \
         win 64240, length 3 | cpu=0 flow"
    );
}

#[test]
fn line_tcp6_rst_and_fin() {
    let rst = frames::tcp6(
        9,
        Flags {
            rst: true,
            ..Flags::default()
        },
        b"",
    );
    assert!(line_in(&rst, "").ends_with("Flags [R], seq 9, win 64240, length 0"));
    let fin = frames::tcp6(
        9,
        Flags {
            fin: true,
            psh: true,
            ack: Some(3),
            ..Flags::default()
        },
        b"z",
    );
    assert!(line_in(&fin, "").ends_with("Flags [FP.], seq 9:10, ack 3, win 64240, length 1"));
}

#[test]
fn line_arp_request_and_reply() {
    assert_eq!(
        line_in(&frames::arp(1), "in adapter arp-reply"),
        "12:00:01.123456 in  ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 28 \
         | adapter arp-reply"
    );
    assert_eq!(
        format_line(
            noon(),
            Direction::Out,
            &frames::arp(2),
            "out adapter arp-reply"
        ),
        "12:00:01.123456 out ARP, Reply 10.0.0.2 is-at 02:00:00:00:00:02, length 28 \
         | adapter arp-reply"
    );
}

#[test]
fn line_icmp_echo_request_and_reply() {
    assert_eq!(
        line_in(&frames::ping4(false), "in adapter echo-reply"),
        "12:00:01.123456 in  10.0.0.1 > 10.0.0.2: ICMP echo request, id 7, seq 3, length 64 \
         | adapter echo-reply"
    );
    assert_eq!(
        format_line(
            noon(),
            Direction::Out,
            &frames::ping4(true),
            "out adapter echo-reply"
        ),
        "12:00:01.123456 out 10.0.0.2 > 10.0.0.1: ICMP echo reply, id 7, seq 3, length 64 \
         | adapter echo-reply"
    );
}

#[test]
fn line_icmp_port_unreachable_names_the_port() {
    assert_eq!(
        format_line(
            noon(),
            Direction::Out,
            &frames::unreachable4(),
            "out adapter port-unreachable"
        ),
        "12:00:01.123456 out 10.0.0.2 > 10.0.0.1: ICMP 10.0.0.2 udp port 5001 unreachable, \
         length 36 | adapter port-unreachable"
    );
}

#[test]
fn line_icmpv6_echo_ns_na() {
    assert_eq!(
        line_in(&frames::ping6(), "in adapter echo-reply"),
        "12:00:01.123456 in  fd00::1 > fd00::2: ICMP6, echo request, id 9, seq 1, length 64 \
         | adapter echo-reply"
    );
    assert_eq!(
        line_in(&frames::ndp(135), "in adapter ndp-advert"),
        "12:00:01.123456 in  fd00::1 > fd00::2: ICMP6, neighbor solicitation, who has fd00::2, \
         length 24 | adapter ndp-advert"
    );
    assert_eq!(
        format_line(
            noon(),
            Direction::Out,
            &frames::ndp(136),
            "out adapter ndp-advert"
        ),
        "12:00:01.123456 out fd00::1 > fd00::2: ICMP6, neighbor advertisement, tgt is fd00::2, \
         length 24 | adapter ndp-advert"
    );
}

#[test]
fn line_udp() {
    assert_eq!(
        line_in(&frames::udp4(b"hello"), "in adapter port-unreachable"),
        "12:00:01.123456 in  10.0.0.1.5000 > 10.0.0.2.5001: UDP, length 5 \
         | adapter port-unreachable"
    );
}

#[test]
fn line_truncated_junk() {
    assert_eq!(
        line_in(&[0xde, 0xad], "in drop truncated-ethernet"),
        "12:00:01.123456 in  truncated ethernet frame, length 2 | drop truncated-ethernet"
    );
    let mut odd = frames::arp(1);
    odd[12] = 0x88;
    odd[13] = 0xb5;
    assert_eq!(
        line_in(&odd, "in drop unknown-ethertype"),
        "12:00:01.123456 in  02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype 0x88b5, \
         length 42 | drop unknown-ethertype"
    );
    let f = frames::tcp4(1000, syn(), b"");
    let cut = line_in(&f[..14 + 20 + 10], "in drop bad-tcp-header");
    assert!(cut.contains("10.0.0.1 > 10.0.0.2: tcp"), "{cut}");
    assert!(cut.contains("[|truncated]"), "{cut}");
    assert!(cut.ends_with("| drop bad-tcp-header"), "{cut}");
}

#[test]
fn line_without_comment_has_no_bar() {
    assert!(!line_in(&frames::udp4(b""), "").contains('|'));
}

#[test]
fn conn_line() {
    assert_eq!(
        format_conn_line(noon(), "cpu=2 new 10.0.0.1:40000 > 10.0.0.2:80"),
        "12:00:01.123456 conn cpu=2 new 10.0.0.1:40000 > 10.0.0.2:80"
    );
}

#[test]
fn line_never_panics_on_random_bytes_or_cut_frames() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let real = [
        frames::tcp4(1, syn(), b"hello"),
        frames::tcp6(1, ack(2), b"hello"),
        frames::arp(1),
        frames::ping4(false),
        frames::ping6(),
        frames::ndp(135),
        frames::ndp(136),
        frames::udp4(b"x"),
        frames::unreachable4(),
    ];
    for f in &real {
        for n in 0..=f.len() {
            let _ = format_line(noon(), Direction::In, &f[..n], "in x");
            let _ = out_kind(&f[..n]);
        }
        for _ in 0..200 {
            let mut g = f.clone();
            let i = rng.gen_range(0..g.len());
            g[i] = rng.gen();
            let _ = format_line(noon(), Direction::Out, &g, "out y");
            let _ = out_kind(&g);
        }
    }
    for _ in 0..2000 {
        let n = rng.gen_range(0..200);
        let mut g: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
        if n > 14 && rng.gen_bool(0.5) {
            let t: &[u8] = [&[0x08, 0x00][..], &[0x86, 0xdd], &[0x08, 0x06]][rng.gen_range(0..3)];
            g[12..14].copy_from_slice(t);
            if t == [0x08, 0x00] {
                g[14] = 0x45;
            }
            if t == [0x86, 0xdd] {
                g[14] = 0x60;
            }
        }
        let _ = format_line(noon(), Direction::In, &g, "");
        let _ = out_kind(&g);
    }
}

// ------------------------------------------------------------------ pcapng

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::AtomicU32;
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "vnic-trace-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn opts(pcap: Option<PathBuf>, lines: Option<LineMode>) -> TraceOptions {
    TraceOptions {
        pcap,
        pcap_max_mb: None,
        pcap_max_files: None,
        snaplen: SNAPLEN,
        lines,
        iface: "vnic-t0".into(),
        mac: frames::VNIC_MAC,
        pcap_filter: None,
        section_comment: None,
    }
}

pub(super) fn tuning() -> Tuning {
    Tuning {
        queue_records: QUEUE_RECORDS,
        max_bytes: None,
        writer_delay: Duration::ZERO,
        line_out: LineOut::Buffer(Arc::new(Mutex::new(Vec::new()))),
        capture_bytes: capture::CAPTURE_QUEUE_BYTES,
    }
}

/// What a pcapng file holds: its IDBs' options and its packets.
pub(super) struct Read {
    pub(super) idbs: Vec<Vec<InterfaceDescriptionOption<'static>>>,
    pub(super) packets: Vec<(Duration, Vec<u8>, Option<String>)>,
    /// epb_flags direction bits of each packet.
    pub(super) dirs: Vec<Option<u32>>,
}

fn read_pcapng(path: &Path) -> Read {
    read_pcapng_from(std::fs::File::open(path).expect("open pcapng"))
}

/// Reads a pcapng stream to its end (every block must be whole).
pub(super) fn read_pcapng_from(from: impl std::io::Read) -> Read {
    let mut r = PcapNgReader::new(from).expect("section header");
    let mut out = Read {
        idbs: vec![],
        packets: vec![],
        dirs: vec![],
    };
    while let Some(b) = r.next_block() {
        match b.expect("a whole block") {
            Block::InterfaceDescription(i) => out.idbs.push(i.into_owned().options),
            Block::EnhancedPacket(p) => {
                let dir = p.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Flags(f) => Some(f & 3),
                    _ => None,
                });
                out.dirs.push(dir);
                let comment = p.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                });
                out.packets.push((p.timestamp, p.data.to_vec(), comment));
            }
            _ => {}
        }
    }
    out
}

#[test]
fn pcapng_has_every_record_with_its_comment_and_a_named_interface() {
    let dir = TempDir::new("basic");
    let path = dir.0.join("t.pcapng");
    let t = Tracer::start_tuned(opts(Some(path.clone()), None), tuning()).expect("start");
    assert!(t.active());
    let before = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let n = 100;
    for i in 0..n {
        let f = frames::tcp4(i, ack(1), &[i as u8; 10]);
        t.record_with(Direction::In, &f, || format!("in cpu={} flow", i % 4));
    }
    t.close();
    t.close(); // idempotent
    let got = read_pcapng(&path);
    assert_eq!(got.idbs.len(), 1);
    let idb = &got.idbs[0];
    assert!(idb.contains(&InterfaceDescriptionOption::IfName("vnic-t0".into())));
    assert!(idb.contains(&InterfaceDescriptionOption::IfTsResol(9)));
    assert!(idb.contains(&InterfaceDescriptionOption::IfMacAddr(
        frames::VNIC_MAC.to_vec().into()
    )));
    assert_eq!(got.packets.len(), n as usize);
    assert!(got.dirs.iter().all(|d| *d == Some(1)), "inbound");
    for (i, (ts, data, comment)) in got.packets.iter().enumerate() {
        assert_eq!(data, &frames::tcp4(i as u32, ack(1), &[i as u8; 10]));
        assert_eq!(
            comment.as_deref(),
            Some(format!("in cpu={} flow", i % 4).as_str())
        );
        assert!(
            *ts >= before && *ts < before + Duration::from_secs(60),
            "{ts:?}"
        );
    }
    let s = t.stats();
    assert_eq!((s.written, s.lost, s.rotated), (n as u64, 0, 0));
    assert!(!t.active(), "closed tracer records nothing");
}

/// Large frames handed over by buffer (no copy) and small ones copied,
/// mixed, in one file of several MiB (so whole disk blocks go out while
/// recording): every frame in order and intact, the sender always left
/// with a usable buffer, the comment built from the frame.
#[test]
fn handed_over_buffers_reach_the_file_intact_and_in_order() {
    let dir = TempDir::new("owned");
    let path = dir.0.join("o.pcapng");
    let t = Tracer::start_tuned(opts(Some(path.clone()), None), tuning()).expect("start");
    let mut want = Vec::new();
    let mut buf = Vec::new();
    for i in 0..200u32 {
        let payload_len = if i % 3 == 0 {
            40
        } else {
            20_000 + i as usize * 97
        };
        let f = frames::tcp4(i, ack(1), &vec![i as u8; payload_len]);
        buf.clear();
        buf.extend_from_slice(&f);
        buf.extend_from_slice(&[0xee; 100]); // not part of the frame
        let len = f.len();
        t.record_owned(Direction::Out, &mut buf, len, |fr| {
            format!("out cpu=1 len={}", fr.len())
        });
        want.push(f);
    }
    t.close();
    let got = read_pcapng(&path);
    assert_eq!(got.packets.len(), want.len());
    for (i, ((_, data, comment), f)) in got.packets.iter().zip(&want).enumerate() {
        assert_eq!(data, f, "frame {i}");
        assert_eq!(
            comment.as_deref(),
            Some(format!("out cpu=1 len={}", f.len()).as_str())
        );
    }
    assert!(got.dirs.iter().all(|d| *d == Some(2)), "outbound");
    assert_eq!(t.stats().written, 200);
}

/// `--pcap-snaplen`: every frame cut to the snap length in the file,
/// its original length kept, and the interface block says the length.
#[test]
fn snaplen_cuts_frames_and_keeps_their_length() {
    let dir = TempDir::new("snap");
    let path = dir.0.join("s.pcapng");
    let mut o = opts(Some(path.clone()), None);
    o.snaplen = 100;
    let t = Tracer::start_tuned(o, tuning()).expect("start");
    let big = frames::tcp4(1, ack(1), &[7; 20_000]);
    let small = frames::tcp4(2, ack(1), &[8; 10]);
    let mut buf = big.clone();
    t.record_owned(Direction::Out, &mut buf, big.len(), |_| "out cpu=0");
    t.record_with(Direction::In, &small, || "in cpu=0 flow");
    t.close();
    let file = std::fs::File::open(&path).expect("open");
    let mut r = PcapNgReader::new(file).expect("section header");
    let (mut lens, mut snap) = (Vec::new(), None);
    while let Some(b) = r.next_block() {
        match b.expect("a whole block") {
            Block::InterfaceDescription(i) => snap = Some(i.snaplen),
            Block::EnhancedPacket(p) => lens.push((p.data.to_vec(), p.original_len)),
            _ => {}
        }
    }
    assert_eq!(snap, Some(100));
    assert_eq!(
        lens,
        vec![
            (big[..100].to_vec(), big.len() as u32),
            (small.clone(), small.len() as u32)
        ]
    );
}

#[test]
fn pcapng_is_readable_after_a_flush_without_close() {
    let dir = TempDir::new("kill");
    let path = dir.0.join("k.pcapng");
    let t = Tracer::start_tuned(opts(Some(path.clone()), None), tuning()).expect("start");
    for i in 0..10 {
        t.record(Direction::Out, &frames::tcp4(i, ack(1), b"x"), "out cpu=1");
    }
    // The writer flushes once the queue has been empty for a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = read_pcapng(&path);
        if got.packets.len() == 10 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not flushed");
        std::thread::sleep(Duration::from_millis(10));
    }
    t.close();
}

#[test]
fn pcapng_rotates_into_complete_files() {
    let dir = TempDir::new("rotate");
    let path = dir.0.join("r.pcapng");
    let mut tun = tuning();
    tun.max_bytes = Some(2000);
    let t = Tracer::start_tuned(opts(Some(path.clone()), None), tun).expect("start");
    let n = 40;
    for i in 0..n {
        t.record(
            Direction::In,
            &frames::tcp4(i, ack(1), &[0; 100]),
            "in cpu=0 flow",
        );
    }
    t.close();
    let s = t.stats();
    assert!(s.rotated >= 3, "{s:?}");
    let mut total = 0;
    for k in 0..=s.rotated as u32 {
        let p = pcapng::rotated_path(&path, k);
        let meta = std::fs::metadata(&p).expect("rotated file");
        assert!(
            meta.len() <= 2000,
            "{} is {} bytes",
            p.display(),
            meta.len()
        );
        let got = read_pcapng(&p);
        assert_eq!(got.idbs.len(), 1, "{}", p.display());
        assert!(!got.packets.is_empty());
        total += got.packets.len();
    }
    assert_eq!(total, n as usize);
    assert!(!pcapng::rotated_path(&path, s.rotated as u32 + 1).exists());
}

/// Frame `i` of the ring tests: its sequence number says which it is,
/// and so does its comment.
fn numbered(i: u32) -> (Vec<u8>, String) {
    (
        frames::tcp4(i, ack(1), &[0; 100]),
        format!("in cpu=0 flow #{i}"),
    )
}

/// Checks a ring of `max_files` files after `n` numbered frames and
/// `rotated` rotations: exactly those files exist, each a complete
/// pcapng of at most `max_bytes`, and read oldest to newest they hold
/// an unbroken run of frames ending with the last one written, so the
/// newest frames are the ones kept. Returns how many frames they hold.
fn check_ring(base: &Path, max_files: u32, max_bytes: u64, rotated: u64, n: u32) -> usize {
    for k in 0..max_files {
        assert!(pcapng::rotated_path(base, k).exists(), "file {k} missing");
    }
    let extra = pcapng::rotated_path(base, max_files);
    assert!(!extra.exists(), "{} exists", extra.display());
    // The file written last is the one `rotated` steps round the ring;
    // the oldest kept one is the one after it.
    let current = (rotated % u64::from(max_files)) as u32;
    let mut kept = Vec::new();
    for step in 1..=max_files {
        let k = (current + step) % max_files;
        let p = pcapng::rotated_path(base, k);
        let meta = std::fs::metadata(&p).expect("ring file");
        assert!(
            meta.len() <= max_bytes,
            "{} is {} bytes",
            p.display(),
            meta.len()
        );
        let got = read_pcapng(&p);
        assert_eq!(got.idbs.len(), 1, "{}", p.display());
        assert!(!got.packets.is_empty(), "{} is empty", p.display());
        kept.extend(got.packets);
    }
    let first = n - kept.len() as u32;
    for (j, (_, data, comment)) in kept.iter().enumerate() {
        let (frame, text) = numbered(first + j as u32);
        assert_eq!(comment.as_deref(), Some(text.as_str()), "kept frame {j}");
        assert_eq!(data, &frame, "kept frame {j}");
    }
    kept.len()
}

/// `--pcap-max-files 3`: about seven rotations leave FILE, `STEM-1` and
/// `STEM-2` only, each complete, holding the newest frames, the last
/// one in the file written last; `rotated` counts every rotation.
#[test]
fn pcapng_ring_keeps_the_newest_files_only() {
    let dir = TempDir::new("ring");
    let path = dir.0.join("r.pcapng");
    let mut tun = tuning();
    tun.max_bytes = Some(2000);
    let mut o = opts(Some(path.clone()), None);
    o.pcap_max_files = Some(3);
    let t = Tracer::start_tuned(o, tun).expect("start");
    // About eight frames of ~250 bytes fit in 2000 bytes after the
    // headers: 64 frames make about seven rotations.
    let n = 64;
    for i in 0..n {
        let (f, c) = numbered(i);
        t.record(Direction::In, &f, &c);
    }
    t.close();
    let s = t.stats();
    assert_eq!((s.written, s.lost), (u64::from(n), 0), "{s:?}");
    assert!(s.rotated >= 6, "wrapped twice: {s:?}");
    let kept = check_ring(&path, 3, 2000, s.rotated, n);
    assert!(kept < n as usize, "older frames were dropped: {kept}");
}

/// `--pcap-max-files 1`: every rotation starts FILE again, so it holds
/// only the frames since the last one, whole and readable.
#[test]
fn pcapng_ring_of_one_file_restarts_it() {
    let dir = TempDir::new("ring1");
    let path = dir.0.join("one.pcapng");
    let mut tun = tuning();
    tun.max_bytes = Some(2000);
    let mut o = opts(Some(path.clone()), None);
    o.pcap_max_files = Some(1);
    let t = Tracer::start_tuned(o, tun).expect("start");
    let n = 30;
    for i in 0..n {
        let (f, c) = numbered(i);
        t.record(Direction::In, &f, &c);
    }
    t.close();
    let s = t.stats();
    assert!(s.rotated >= 2, "{s:?}");
    let kept = check_ring(&path, 1, 2000, s.rotated, n);
    assert!(kept < n as usize, "older frames were dropped: {kept}");
}

/// A file started with `vnic ctl trace on FILE` rotates in the same
/// ring as the start-up one.
#[test]
fn set_pcap_files_rotate_in_the_ring_too() {
    let dir = TempDir::new("ringctl");
    let path = dir.0.join("c.pcapng");
    let mut tun = tuning();
    tun.max_bytes = Some(2000);
    let mut o = opts(None, None);
    o.pcap_max_files = Some(2);
    let t = Tracer::start_tuned(o, tun).expect("start");
    t.set_pcap(Some(path.clone())).expect("on");
    let n = 40;
    for i in 0..n {
        let (f, c) = numbered(i);
        t.record(Direction::In, &f, &c);
    }
    t.close();
    let s = t.stats();
    assert!(s.rotated >= 3, "{s:?}");
    check_ring(&path, 2, 2000, s.rotated, n);
}

#[test]
fn a_slow_writer_loses_records_instead_of_blocking() {
    let dir = TempDir::new("lost");
    let path = dir.0.join("l.pcapng");
    let mut tun = tuning();
    tun.queue_records = 4;
    tun.writer_delay = Duration::from_millis(20);
    let t = Tracer::start_tuned(opts(Some(path.clone()), None), tun).expect("start");
    let f = frames::tcp4(1, ack(1), b"x");
    let started = std::time::Instant::now();
    for _ in 0..200 {
        t.record(Direction::In, &f, "in cpu=0 flow");
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "record blocked: {:?}",
        started.elapsed()
    );
    t.close();
    let s = t.stats();
    assert!(s.lost >= 150, "{s:?}");
    assert_eq!(s.written + s.lost, 200, "{s:?}");
    assert_eq!(read_pcapng(&path).packets.len() as u64, s.written);
}

#[test]
fn off_is_a_no_op_that_never_builds_the_comment() {
    let t = Tracer::start_tuned(opts(None, None), tuning()).expect("start");
    assert!(!t.active());
    t.record_with(Direction::In, b"abc", || -> Note {
        panic!("comment built while off")
    });
    t.conn_event(|| panic!("event built while off"));
    let d = Tracer::disabled();
    d.record_with(Direction::In, b"abc", || -> Note {
        panic!("comment built while disabled")
    });
    assert!(d.set_pcap(None).is_err());
    d.close();
    t.close();
    assert_eq!(t.stats(), TraceStats::default());
}

#[test]
fn start_names_the_file_it_cannot_create() {
    let dir = TempDir::new("bad");
    let path = dir.0.join("no/such/dir/t.pcapng");
    let err = match Tracer::start(opts(Some(path), None)) {
        Ok(_) => panic!("created a file in a missing directory"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("no/such/dir/t.pcapng"), "{err}");
}

#[test]
fn set_pcap_switches_files_at_runtime() {
    let dir = TempDir::new("ctl");
    let (a, b) = (dir.0.join("a.pcapng"), dir.0.join("b.pcapng"));
    let t = Tracer::start_tuned(opts(None, None), tuning()).expect("start");
    let f = frames::udp4(b"x");
    t.record(Direction::In, &f, "lost in the void");
    t.set_pcap(Some(a.clone())).expect("on a");
    assert_eq!(t.stats().file.as_deref(), Some(a.as_path()));
    t.record(Direction::In, &f, "to a");
    t.set_pcap(Some(b.clone())).expect("on b");
    t.record(Direction::In, &f, "to b 1");
    t.record(Direction::In, &f, "to b 2");
    t.set_pcap(None).expect("off");
    assert!(!t.active());
    assert_eq!(t.stats().file, None);
    t.record(Direction::In, &f, "nowhere");
    let comments = |p: &Path| -> Vec<String> {
        read_pcapng(p)
            .packets
            .into_iter()
            .filter_map(|(_, _, c)| c)
            .collect()
    };
    assert_eq!(comments(&a), ["to a"]);
    assert_eq!(comments(&b), ["to b 1", "to b 2"]);
    assert!(t.set_pcap(Some(dir.0.join("missing/x.pcapng"))).is_err());
    t.close();
    assert!(t.set_pcap(Some(a)).is_err(), "closed");
}

fn lines_of(t: &Tuning) -> String {
    match &t.line_out {
        LineOut::Buffer(b) => String::from_utf8(b.lock().clone()).expect("utf8"),
        LineOut::Stderr => String::new(),
    }
}

#[test]
fn frame_lines_and_conn_events_reach_the_line_output() {
    let tun = tuning();
    let t = Tracer::start_tuned(opts(None, Some(LineMode::Frames)), tun.clone()).expect("start");
    assert!(t.active());
    t.record(
        Direction::In,
        &frames::tcp4(1000, syn(), b""),
        "in cpu=2 rr-new port=80 slot=0",
    );
    t.conn_event(|| "cpu=2 new 10.0.0.1:40000 > 10.0.0.2:80".into());
    t.close();
    let out = lines_of(&tun);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains(" in  10.0.0.1.40000 > 10.0.0.2.80: Flags [S], seq 1000"));
    assert!(lines[0].ends_with("| cpu=2 rr-new port=80 slot=0"));
    assert!(lines[1].ends_with(" conn cpu=2 new 10.0.0.1:40000 > 10.0.0.2:80"));
    assert_eq!(t.stats().lines, 2);
}

#[test]
fn conn_mode_prints_only_connection_events() {
    let tun = tuning();
    let t = Tracer::start_tuned(opts(None, Some(LineMode::Conn)), tun.clone()).expect("start");
    assert!(!t.active(), "no frame is recorded in conn mode");
    t.record_with(Direction::In, b"abc", || -> Note {
        panic!("frame recorded in conn mode")
    });
    t.conn_event(|| "cpu=1 closed".into());
    t.set_lines(None);
    t.conn_event(|| panic!("event after lines off"));
    t.set_lines(Some(LineMode::Frames));
    assert!(t.active());
    t.close();
    let out = lines_of(&tun);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(" conn cpu=1 closed"));
}

#[test]
fn tracing_sink_records_what_it_sends() {
    let dir = TempDir::new("sink");
    let path = dir.0.join("s.pcapng");
    let t = Tracer::start_tuned(opts(Some(path.clone()), None), tuning()).expect("start");
    let cap = Arc::new(CaptureSink::default());
    let cpu = TracingSink::new(cap.clone(), t.clone(), Origin::Processor(2));
    let adapter = TracingSink::new(cap.clone(), t.clone(), Origin::Adapter);
    let data = frames::tcp4(1, ack(1), b"hi");
    cpu.send_frame(&data).expect("send");
    adapter.send_frame(&frames::arp(2)).expect("send");
    t.close();
    assert_eq!(cap.take(), vec![data.clone(), frames::arp(2)]);
    let got = read_pcapng(&path);
    let comments: Vec<_> = got.packets.iter().filter_map(|p| p.2.clone()).collect();
    assert_eq!(comments, ["out cpu=2", "out adapter arp-reply"]);
    assert_eq!(got.dirs, [Some(2), Some(2)], "outbound");
    assert_eq!(got.packets[0].1, data);
}

#[test]
fn tracing_sink_marks_frames_the_device_refused() {
    struct Refuse;
    impl FrameSink for Refuse {
        fn send_frame(&self, _: &[u8]) -> std::io::Result<()> {
            Err(std::io::Error::other("full"))
        }
    }
    let tun = tuning();
    let t = Tracer::start_tuned(opts(None, Some(LineMode::Frames)), tun.clone()).expect("start");
    let s = TracingSink::new(Arc::new(Refuse), t.clone(), Origin::Processor(0));
    assert!(s.send_frame(&frames::udp4(b"x")).is_err());
    t.close();
    assert!(lines_of(&tun).trim_end().ends_with("| cpu=0 tx-error"));
}

/// Wireshark reads our comments and directions: checked with tshark
/// when it is installed (skipped, saying so, when it is not).
#[test]
fn tshark_shows_comments_and_directions_when_installed() {
    let dir = TempDir::new("tshark");
    let path = dir.0.join("w.pcapng");
    let t = Tracer::start_tuned(opts(Some(path.clone()), None), tuning()).expect("start");
    t.record(
        Direction::In,
        &frames::tcp4(1000, syn(), b""),
        "in cpu=2 rr-new port=80 slot=5",
    );
    t.record(Direction::In, &frames::arp(1), "in adapter arp-reply");
    t.record(Direction::Out, &frames::arp(2), "out adapter arp-reply");
    t.record(Direction::In, &frames::ping6(), "in adapter echo-reply");
    t.close();
    let out = match std::process::Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-T", "fields", "-E", "separator=|"])
        .args(["-e", "frame.comment", "-e", "frame.packet_flags_direction"])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIP tshark_shows_comments_and_directions_when_installed: no tshark ({e})");
            return;
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The direction prints as `1` or `0x00000001` depending on the version.
    let rows: Vec<(String, u32)> = text
        .lines()
        .map(|l| {
            let (comment, dir) = l.rsplit_once('|').unwrap_or((l, ""));
            let dir = match dir.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16),
                None => dir.parse(),
            };
            (comment.to_owned(), dir.unwrap_or(u32::MAX))
        })
        .collect();
    let want = [
        ("in cpu=2 rr-new port=80 slot=5", 1),
        ("in adapter arp-reply", 1),
        ("out adapter arp-reply", 2),
        ("in adapter echo-reply", 1),
    ]
    .map(|(c, d)| (c.to_owned(), d));
    assert_eq!(rows, want, "{text}");
}

// ------------------------------------------------- where a trace may write

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn a_new_trace_file_is_0600() {
    let dir = TempDir::new("mode");
    let path = dir.0.join("m.pcapng");
    let t = Tracer::start_tuned(opts(Some(path.clone()), None), tuning()).expect("start");
    assert_eq!(mode_of(&path), 0o600);
    let b = dir.0.join("b.pcapng");
    t.set_pcap(Some(b.clone())).expect("on");
    assert_eq!(mode_of(&b), 0o600);
    t.close();
}

#[test]
fn a_trace_is_never_written_through_a_symbolic_link() {
    let dir = TempDir::new("link");
    let target = dir.0.join("target");
    std::fs::write(&target, "precious").expect("write");
    let link = dir.0.join("l.pcapng");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let err = match Tracer::start(opts(Some(link.clone()), None)) {
        Ok(_) => panic!("wrote through a link"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("symbolic link") && err.contains("l.pcapng"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&target).expect("kept"), "precious");
    // Dangling: nothing is created at the far end.
    let far = dir.0.join("far");
    let dangling = dir.0.join("d.pcapng");
    std::os::unix::fs::symlink(&far, &dangling).expect("symlink");
    let t = Tracer::start_tuned(opts(None, None), tuning()).expect("start");
    let err = t.set_pcap(Some(dangling)).expect_err("refused");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(!far.exists());
    assert!(!t.active());
    t.close();
}

#[test]
fn only_an_empty_file_or_a_pcapng_is_replaced() {
    let dir = TempDir::new("exist");
    let t = Tracer::start_tuned(opts(None, None), tuning()).expect("start");
    let notes = dir.0.join("notes.pcapng");
    std::fs::write(&notes, "precious notes\n").expect("write");
    let err = t.set_pcap(Some(notes.clone())).expect_err("refused");
    assert!(err.to_string().contains("not a pcapng"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&notes).expect("kept"),
        "precious notes\n"
    );
    // A file too short to hold a section header is not a pcapng either.
    std::fs::write(&notes, [0x0a, 0x0d, 0x0d, 0x0a]).expect("write");
    assert!(t.set_pcap(Some(notes)).is_err());
    // Not a regular file: refused without being opened (a FIFO would
    // block an open for writing).
    assert!(t.set_pcap(Some(dir.0.clone())).is_err());
    assert!(t.set_pcap(Some(PathBuf::from("/dev/null"))).is_err());
    // An earlier trace is replaced, big-endian or little; an empty file is used.
    let f = frames::udp4(b"x");
    let old = dir.0.join("old.pcapng");
    t.set_pcap(Some(old.clone())).expect("first");
    t.record(Direction::In, &f, "first");
    t.set_pcap(None).expect("off");
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    t.set_pcap(Some(old.clone())).expect("again");
    t.record(Direction::In, &f, "second");
    t.set_pcap(None).expect("off");
    let comments: Vec<String> = read_pcapng(&old)
        .packets
        .into_iter()
        .filter_map(|(_, _, c)| c)
        .collect();
    assert_eq!(comments, ["second"]);
    assert_eq!(mode_of(&old), 0o640, "an existing file keeps its mode");
    let mut be = vec![0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 28, 0x1a, 0x2b, 0x3c, 0x4d];
    be.resize(28, 0);
    let big = dir.0.join("big.pcapng");
    std::fs::write(&big, &be).expect("write");
    t.set_pcap(Some(big)).expect("a big-endian pcapng");
    let empty = dir.0.join("empty.pcapng");
    std::fs::write(&empty, "").expect("write");
    t.set_pcap(Some(empty)).expect("an empty file");
    t.close();
}

/// A run-time trace's rotation is the caller's, and `stats` says which.
#[test]
fn set_pcap_rotating_uses_the_rotation_it_is_given() {
    let dir = TempDir::new("rotating");
    let path = dir.0.join("r.pcapng");
    let t = Tracer::start_tuned(opts(None, None), tuning()).expect("start");
    assert_eq!(t.rotation(), Rotation::default());
    let r = Rotation {
        max_bytes: Some(2000),
        max_files: Some(2),
    };
    t.set_pcap_rotating(Some(path.clone()), r).expect("on");
    assert_eq!(t.stats().rotation, r);
    let n = 40;
    for i in 0..n {
        let (f, c) = numbered(i);
        t.record(Direction::In, &f, &c);
    }
    t.close();
    let s = t.stats();
    assert!(s.rotated >= 3, "{s:?}");
    check_ring(&path, 2, 2000, s.rotated, n);
}

#[test]
fn every_file_starts_with_the_replay_block() {
    use super::block::ReplayBlock;
    use pcap_file::pcapng::blocks::section_header::SectionHeaderOption;
    let dir = TempDir::new("block");
    let path = dir.0.join("b.pcapng");
    let block = ReplayBlock {
        version: "0.1.0".into(),
        processors: Some(2),
        epoch_ns: Some(42),
        ..Default::default()
    };
    let mut o = opts(Some(path.clone()), None);
    o.section_comment = Some(block.render());
    let t = Tracer::start_tuned(o, tuning()).expect("start");
    t.record_with(Direction::In, &frames::syn4(1), || {
        "in cpu=0 rr-new port=80 slot=0"
    });
    t.close();
    let r = PcapNgReader::new(std::fs::File::open(&path).expect("open")).expect("header");
    let comments: Vec<String> = r
        .section()
        .options
        .iter()
        .filter_map(|o| match o {
            SectionHeaderOption::Comment(c) => Some(c.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert_eq!(ReplayBlock::parse(&comments[0]), Ok(block));
}

/// A large segment's pieces reach the device as pieces while nothing
/// records (one vectored write, no join), and joined, recorded whole,
/// while a trace runs.
#[test]
fn tracing_sink_passes_pieces_on_untraced_and_joins_them_traced() {
    use std::sync::Mutex;
    #[derive(Default)]
    struct Pieces(Mutex<Vec<(usize, Vec<u8>)>>);
    impl FrameSink for Pieces {
        fn send_frame(&self, _: &[u8]) -> std::io::Result<()> {
            Err(std::io::Error::other("large segments only"))
        }
        fn send_gso_frame(&self, frame: &[u8], _: &VnetHeader) -> std::io::Result<()> {
            self.0.lock().expect("lock").push((1, frame.to_vec()));
            Ok(())
        }
        fn send_gso_parts(
            &self,
            head: &mut Vec<u8>,
            tail: [&[u8]; 2],
            _: &VnetHeader,
        ) -> std::io::Result<()> {
            let mut all = head.clone();
            all.extend_from_slice(tail[0]);
            all.extend_from_slice(tail[1]);
            self.0.lock().expect("lock").push((3, all));
            Ok(())
        }
    }
    let frame = frames::tcp4(1, ack(1), b"0123456789");
    let (head, rest) = frame.split_at(frame.len() - 10);
    let hdr = VnetHeader::default();
    let send = |s: &TracingSink| {
        let mut h = head.to_vec();
        s.send_gso_parts(&mut h, [&rest[..4], &rest[4..]], &hdr)
            .expect("send");
    };
    let dev = Arc::new(Pieces::default());
    let off = Tracer::start_tuned(opts(None, None), tuning()).expect("start");
    send(&TracingSink::new(
        dev.clone(),
        off.clone(),
        Origin::Processor(1),
    ));
    off.close();
    let dir = TempDir::new("parts");
    let path = dir.0.join("p.pcapng");
    let on = Tracer::start_tuned(opts(Some(path.clone()), None), tuning()).expect("start");
    send(&TracingSink::new(
        dev.clone(),
        on.clone(),
        Origin::Processor(1),
    ));
    on.close();
    let got = dev.0.lock().expect("lock").clone();
    assert_eq!(got, vec![(3, frame.clone()), (1, frame.clone())]);
    let traced = read_pcapng(&path);
    assert_eq!(traced.packets.len(), 1);
    assert_eq!(traced.packets[0].1, frame);
}
