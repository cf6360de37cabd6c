//! The capture request on a real control socket with the real tracer:
//! refusals are ordinary answers; a capture is length-prefixed chunks of
//! pcapng, then a statistics block, a zero length and the report line,
//! whether the client stops it or vnic does.

use super::protocol::{CaptureEnd, Response};
use super::tests::{runtime, tracer, TempDir};
use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vnic_adapter::trace::{Direction, Tracer};

/// A control server with the real `Runtime` and `tracer` behind it.
fn serve(dir: &TempDir, tracer: &Arc<Tracer>) -> (std::path::PathBuf, Arc<AtomicBool>) {
    let path = dir.0.join("s.sock");
    let srv = ControlServer::bind(&path, None).expect("bind");
    let rt = Arc::new(runtime(Some(Arc::new(TraceHandle(tracer.clone())))));
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || srv.serve(rt, s));
    (path, stop)
}

/// Ethernet + IPv4 carrying `proto` (1 ICMP, 6 TCP), enough for libpcap.
fn frame(proto: u8) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&28u16.to_be_bytes());
    f[22] = 64;
    f[23] = proto;
    f
}

struct Conn {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Conn {
    fn open(path: &std::path::Path) -> Conn {
        let s = UnixStream::connect(path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        Conn {
            r: BufReader::new(s.try_clone().expect("clone")),
            w: s,
        }
    }

    fn ask(&mut self, req: &str) -> Response {
        self.w.write_all(req.as_bytes()).expect("send");
        self.w.write_all(b"\n").expect("send");
        let mut line = String::new();
        self.r.read_line(&mut line).expect("answer");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    fn chunk(&mut self) -> Vec<u8> {
        let mut len = [0u8; 4];
        self.r.read_exact(&mut len).expect("length");
        let mut c = vec![0u8; u32::from_be_bytes(len) as usize];
        self.r.read_exact(&mut c).expect("chunk");
        c
    }

    /// The statistics chunk, the zero length and the report.
    fn end(&mut self) -> (Vec<u8>, CaptureEnd) {
        let isb = self.chunk();
        assert!(self.chunk().is_empty(), "a zero length before the report");
        let mut line = String::new();
        self.r.read_line(&mut line).expect("report");
        (isb, serde_json::from_str(&line).expect("report JSON"))
    }
}

/// The comments of the packets in a pcapng stream.
fn comments(pcapng: &[u8]) -> Vec<String> {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let mut r = PcapNgReader::new(pcapng).expect("section header");
    let mut out = Vec::new();
    while let Some(b) = r.next_block() {
        if let Block::EnhancedPacket(p) = b.expect("whole block") {
            out.extend(p.options.iter().find_map(|o| match o {
                EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                _ => None,
            }));
        }
    }
    out
}

#[test]
fn a_capture_is_chunks_of_pcapng_then_its_report() {
    let dir = TempDir::new("capture");
    let t = tracer(None, None);
    let (path, stop) = serve(&dir, &t);
    let mut c = Conn::open(&path);
    let r = c.ask(r#"{"cmd":"capture","filter":"tcp prot 80"}"#);
    assert_eq!(
        r.error.as_deref(),
        Some("bad capture filter \"tcp prot 80\": syntax error")
    );
    let r = c.ask(r#"{"cmd":"capture","processor":3}"#);
    assert!(
        !r.ok
            && r.error
                .as_deref()
                .unwrap_or("")
                .contains("processor 3 does not exist")
    );
    assert!(
        c.ask(r#"{"cmd":"status"}"#).ok,
        "still an ordinary connection"
    );

    let r = c.ask(r#"{"cmd":"capture","filter":"icmp"}"#);
    assert!(r.ok, "{r:?}");
    assert_eq!(r.notes, ["capture 1 started"]);
    let mut pcapng = c.chunk();
    assert_eq!(
        pcapng[..4],
        [0x0a, 0x0d, 0x0d, 0x0a],
        "a section header first"
    );
    t.record(Direction::In, &frame(6), "in cpu=0 flow");
    t.record(Direction::In, &frame(1), "in adapter echo-reply");
    pcapng.extend(c.chunk());
    assert_eq!(comments(&pcapng), ["in adapter echo-reply"]);
    let listed = t.stats().captures;
    assert_eq!(listed.len(), 1);

    c.w.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let (isb, end) = c.end();
    assert_eq!(
        isb[..4],
        5u32.to_ne_bytes(),
        "an interface statistics block"
    );
    assert!(end.ok);
    assert_eq!(end.reason, "client stopped");
    assert_eq!((end.capture.frames, end.capture.lost), (1, 0));
    assert_eq!(end.capture.filter.as_deref(), Some("icmp"));

    // vnic stops while a capture runs: the frames so far, then the end.
    let mut c = Conn::open(&path);
    assert!(c.ask(r#"{"cmd":"capture"}"#).ok);
    let mut pcapng = c.chunk();
    t.record(Direction::Out, &frame(6), "out cpu=0");
    let closer = {
        let t = t.clone();
        std::thread::spawn(move || t.close())
    };
    pcapng.extend(c.chunk());
    let (_, end) = c.end();
    assert_eq!(end.reason, "vnic stopped");
    assert_eq!(comments(&pcapng), ["out cpu=0"]);
    closer.join().expect("close");
    stop.store(true, Ordering::Relaxed);
}
