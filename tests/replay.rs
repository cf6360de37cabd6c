//! `vnic replay`: a session recorded under loss and reordering, with SYN
//! cookies on, replays with no divergence; a copy of its trace with one
//! inbound payload byte changed diverges at the frame that byte reaches;
//! the regression test `--emit-test` writes is the one checked in
//! (tests/regressions/), which passes and fails against a broken stack
//! (tests/regressions.rs).

mod common;

use common::{can_run, chargen_mismatch, connect, echo_through, http_get, random_bytes, Netns};
use pnet_packet::ethernet::EthernetPacket;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags, TcpPacket};
use pnet_packet::Packet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Records a session in `ns`: curl to the HTTP port, an echo of `echo`
/// bytes, `chargen` bytes of chargen and one more HTTP GET, on 2
/// processors, with `--impair loss=2%,reorder=5%` and SYN cookies for
/// every connection (`--syn-backlog 0`), traced with its secrets to
/// `file`.
fn record(ns: &Netns, file: &Path, echo: usize, chargen: usize) {
    let pcap = file.to_string_lossy().into_owned();
    let vnic = ns.vnic(&[
        "--processors",
        "2",
        "--offload",
        "off",
        "--processor-queues",
        "off",
        "--impair",
        "loss=2%,reorder=5%,seed=11",
        "--syn-backlog",
        "0",
        "--pcap",
        &pcap,
        "--pcap-secrets",
        "-q",
    ]);
    let out = ns.exec_ok(&[
        "curl",
        "-s",
        "--max-time",
        "20",
        "--retry",
        "3",
        "http://10.0.0.2/",
    ]);
    assert!(out.contains("processor="), "curl: {out}");
    ns.run(move || {
        let data = random_bytes(echo, 7);
        let (n, _) = echo_through(connect("10.0.0.2:7"), data);
        assert_eq!(n, echo, "echo");
        let mut s = connect("10.0.0.2:19");
        assert_eq!(chargen_mismatch(&mut s, 0, chargen), None, "chargen");
        let mut s = connect("10.0.0.2:80");
        let (status, _) = http_get(&mut s, "/", false);
        assert_eq!(status, 200);
    });
    // The last ACKs and FINs settle before the trace closes.
    std::thread::sleep(Duration::from_millis(500));
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "vnic stopped badly: {err}");
}

/// `vnic replay ARGS`.
fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vnic"))
        .arg("replay")
        .args(args)
        .output()
        .expect("run vnic replay")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Keeps a trace that did not replay as expected, for a look.
fn kept(file: &Path) -> String {
    let to = std::env::temp_dir().join(format!("vnic-replay-kept-{}.pcapng", std::process::id()));
    match std::fs::copy(file, &to) {
        Ok(_) => format!("\nthe trace is kept as {}", to.display()),
        Err(e) => format!("\nthe trace could not be kept: {e}"),
    }
}

/// A directory removed on drop.
struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("vnic-replay-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        Dir(d)
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_lossy_session_with_syn_cookies_replays_identically() {
    if !can_run() {
        return;
    }
    let dir = Dir::new("same");
    let file = replayable(&dir, 20 << 10, 64 << 10);
    let out = replay(&[file.to_str().expect("path"), "--report", "all"]);
    let t = text(&out);
    assert!(t.contains("identical to the trace"), "{t}");
}

/// Records a session (see [`record`]) that must replay with no
/// divergence: its trace. The trace records every batch each processor
/// took (pcapng custom blocks), so the replay follows them rather than
/// guessing the batches that sent nothing; a session that diverges fails
/// with the replay's report and where the trace was kept.
fn replayable(dir: &Dir, echo: usize, chargen: usize) -> PathBuf {
    let file = dir.0.join("session.pcapng");
    let ns = Netns::new();
    record(&ns, &file, echo, chargen);
    let trace = vnic::replay::Trace::read(&file).expect("trace");
    assert!(
        !trace.batches.is_empty() && trace.bad_batches.0 == 0,
        "the trace records the processors' batches"
    );
    let out = replay(&[file.to_str().expect("path"), "--report", "all"]);
    let t = text(&out);
    assert!(
        out.status.code() == Some(0) && !t.contains("in batches that sent nothing"),
        "{t}{}",
        kept(&file)
    );
    file
}

/// The first inbound echo segment with text, in a trace's bytes: its
/// frame number, its bytes, and where its text starts in the frame.
fn first_echo_data(trace: &vnic::replay::Trace) -> (usize, Vec<u8>, usize) {
    for f in &trace.frames {
        if f.dir != vnic_adapter::trace::Direction::In || !f.comment.starts_with("in cpu=") {
            continue;
        }
        let eth = EthernetPacket::new(&f.data).expect("ethernet");
        let Some(ip) = Ipv4Packet::new(eth.payload()) else {
            continue;
        };
        let Some(tcp) = TcpPacket::new(ip.payload()) else {
            continue;
        };
        if tcp.get_destination() == 7 && tcp.payload().len() > 100 {
            let text = 14
                + usize::from(ip.get_header_length()) * 4
                + usize::from(tcp.get_data_offset()) * 4;
            return (f.number, f.data.clone(), text);
        }
    }
    panic!("no echo data in the trace");
}

/// The trace's frame that first sends the echo of stream byte `offset`
/// (counted from the first byte of the connection to port 7).
fn echo_of(trace: &vnic::replay::Trace, offset: u32) -> usize {
    let mut base = None;
    for f in &trace.frames {
        if f.dir != vnic_adapter::trace::Direction::Out {
            continue;
        }
        let eth = EthernetPacket::new(&f.data).expect("ethernet");
        let Some(ip) = Ipv4Packet::new(eth.payload()) else {
            continue;
        };
        let Some(tcp) = TcpPacket::new(ip.payload()) else {
            continue;
        };
        if tcp.get_source() != 7 {
            continue;
        }
        if tcp.get_flags() & TcpFlags::SYN != 0 {
            base = Some(tcp.get_sequence().wrapping_add(1));
            continue;
        }
        let Some(b) = base else { continue };
        let from = tcp.get_sequence().wrapping_sub(b);
        if from <= offset && offset < from + tcp.payload().len() as u32 {
            return f.number;
        }
    }
    panic!("the trace never sends the echo of byte {offset}");
}

#[test]
fn one_changed_inbound_byte_diverges_at_the_frame_it_reaches() {
    if !can_run() {
        return;
    }
    let dir = Dir::new("changed");
    let file = replayable(&dir, 8 << 10, 8 << 10);
    let trace = vnic::replay::Trace::read(&file).expect("read the trace");
    // Byte 5 of the first echo segment's text, and its TCP checksum made
    // right again: a frame the adapter takes, carrying another byte.
    let (number, frame, text_at) = first_echo_data(&trace);
    let mut changed = frame.clone();
    changed[text_at + 5] ^= 0x20;
    {
        let eth = EthernetPacket::new(&frame).expect("ethernet");
        let ip = Ipv4Packet::new(eth.payload()).expect("ipv4");
        let tcp_at = 14 + usize::from(ip.get_header_length()) * 4;
        let tcp_len = usize::from(ip.get_total_length()) - usize::from(ip.get_header_length()) * 4;
        let (src, dst) = (ip.get_source(), ip.get_destination());
        let mut t = MutableTcpPacket::new(&mut changed[tcp_at..tcp_at + tcp_len]).expect("tcp");
        let sum = tcp::ipv4_checksum(&t.to_immutable(), &src, &dst);
        t.set_checksum(sum);
    }
    let mut bytes = std::fs::read(&file).expect("read");
    let at = bytes
        .windows(frame.len())
        .position(|w| w == frame.as_slice())
        .expect("the frame's bytes in the file");
    bytes[at..at + frame.len()].copy_from_slice(&changed);
    let bad = dir.0.join("changed.pcapng");
    std::fs::write(&bad, &bytes).expect("write");
    // Where the change shows: the echo of that byte.
    let seq_of = |f: &[u8]| {
        let eth = EthernetPacket::new(f).expect("ethernet");
        let ip = Ipv4Packet::new(eth.payload()).expect("ipv4");
        TcpPacket::new(ip.payload()).expect("tcp").get_sequence()
    };
    let opening = trace
        .frames
        .iter()
        .find(|f| f.comment.starts_with("in cpu=") && f.comment.contains("new port=7 "))
        .expect("the echo connection's opening");
    let offset = seq_of(&frame).wrapping_sub(seq_of(&opening.data)) + 5;
    // (The trace may show the echo before the segment: the processor
    // can answer before the RX thread has recorded what it queued.)
    let want = echo_of(&trace, offset);
    let out = replay(&[bad.to_str().expect("path")]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}{}", kept(&file));
    let first = t
        .lines()
        .find(|l| l.starts_with("frame "))
        .unwrap_or_default();
    assert!(
        first.starts_with(&format!("frame {want} (out, cpu=")) && first.contains("payload byte"),
        "the first divergence is the echo of the changed byte, frame {want} (the segment was \
         frame {number}):\n{t}{}",
        kept(&file)
    );
    // The same, told against the original trace's frames.
    let out = replay(&[
        bad.to_str().expect("path"),
        "--against",
        file.to_str().expect("path"),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("\nframe {want} (out, cpu=")), "{t}");
}

/// The checked-in trace and the test emitted from it.
const SESSION: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/regressions/lossy_session"
);

#[test]
fn the_checked_in_regression_test_is_what_emit_test_writes() {
    let dir = Dir::new("emit");
    let emitted = dir.0.join("lossy_session.rs");
    let pcap = format!("{SESSION}.pcapng");
    let out = replay(&[&pcap, "--emit-test", emitted.to_str().expect("path")]);
    let t = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the checked-in trace replays identically: {t}"
    );
    assert!(t.contains("identical to the trace"), "{t}");
    let got = std::fs::read_to_string(&emitted).expect("the emitted test");
    let want = std::fs::read_to_string(format!("{SESSION}.rs")).expect("the checked-in test");
    assert!(
        got == want,
        "tests/regressions/lossy_session.rs is not what --emit-test writes now"
    );
    assert!(
        got.contains("fn lossy_session()") && got.contains("Step::Out"),
        "{}",
        &got[..400]
    );
}

/// Records tests/regressions/lossy_session.pcapng again (then emit its
/// test: `vnic replay tests/regressions/lossy_session.pcapng --emit-test
/// tests/regressions/lossy_session.rs`).
#[test]
#[ignore = "writes the checked-in trace: run by hand"]
fn record_the_checked_in_session() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let tmp = Dir::new("fixture");
    let file = tmp.0.join("s.pcapng");
    record(&ns, &file, 6 << 10, 16 << 10);
    std::fs::copy(&file, format!("{SESSION}.pcapng")).expect("copy");
}

/// An app that depends on the world outside vnic (exec: a program's
/// output, here the time in ns) is replayed from the bytes the trace shows
/// it sending, and the replay says so.
#[test]
fn an_exec_app_replays_the_bytes_the_trace_shows() {
    if !can_run() {
        return;
    }
    let dir = Dir::new("exec");
    let file = dir.0.join("exec.pcapng");
    let pcap = file.to_string_lossy().into_owned();
    let ns = Netns::new();
    let vnic = ns.vnic(&[
        "--processors",
        "2",
        "--offload",
        "off",
        "--processor-queues",
        "off",
        "--serve",
        "13=exec:/bin/date -u +%s.%N",
        "--pcap",
        &pcap,
        "-q",
    ]);
    let got = ns.run(|| {
        use std::io::Read;
        let mut all = Vec::new();
        for _ in 0..3 {
            let mut s = connect("10.0.0.2:13");
            let mut text = String::new();
            s.read_to_string(&mut text).expect("read the date");
            all.push(text);
        }
        all
    });
    assert!(got.iter().all(|t| t.contains('.')), "{got:?}");
    std::thread::sleep(Duration::from_millis(300));
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
    let out = replay(&[&pcap]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}{}", kept(&file));
    assert!(
        t.contains("port 13 (exec): the app replays the bytes the trace shows it sending"),
        "{t}"
    );
}

/// A trace without a replay block (another tool's, an older vnic's)
/// still replays, with what its frames say, and the replay says what it
/// guessed.
#[test]
fn a_trace_without_its_replay_block_says_what_was_guessed() {
    use pcap_file::pcapng::blocks::section_header::SectionHeaderBlock;
    use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};
    let dir = Dir::new("noblock");
    let bare = dir.0.join("bare.pcapng");
    let src = std::fs::File::open(format!("{SESSION}.pcapng")).expect("the checked-in trace");
    let mut r = PcapNgReader::new(src).expect("pcapng");
    let shb = SectionHeaderBlock {
        endianness: r.section().endianness,
        ..Default::default()
    };
    let mut w =
        PcapNgWriter::with_section_header(Vec::new(), shb).expect("a section without comment");
    while let Some(b) = r.next_block() {
        let b = b.expect("block");
        if let Block::InterfaceDescription(_) | Block::EnhancedPacket(_) = b {
            w.write_block(&b).expect("copy");
        }
    }
    std::fs::write(&bare, w.into_inner()).expect("write");
    let out = replay(&[bare.to_str().expect("path")]);
    let t = text(&out);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{t}");
    for want in [
        "replay: guessed: the trace has no replay block",
        "replay: guessed: 2 processors (the highest cpu=K seen)",
        "replay: guessed: virtual IPs 10.0.0.2 (where the frames were sent)",
        "replay: guessed: listening ports 7,19,80 with apps scripted from the trace",
        "replay: guessed: the SYN-cookie secret: not in the trace",
        "replay: guessed: SYN cookies for every connection (the trace shows some)",
        "replay: guessed: how each processor's segments went in batches that sent nothing \
         (the trace has no batch records)",
    ] {
        assert!(t.contains(want), "no {want:?} in:\n{t}");
    }
}
