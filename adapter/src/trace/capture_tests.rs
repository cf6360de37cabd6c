//! Tests of live captures and `--pcap-filter`: streams read back with
//! `pcap-file`'s reader, filters by libpcap, a processor by its
//! decision text, a full buffer counted as lost.

use super::capture::names_cpu;
use super::frames::{self, syn4 as syn};
use super::tests::{opts, read_pcapng_from, tuning};
use super::*;
use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use std::thread::JoinHandle;

/// Reads `stream` on a thread until it ends; returns every byte it gave
/// and its closing statistics block.
fn drain(mut stream: CaptureStream) -> JoinHandle<(Vec<u8>, CaptureStats)> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = Vec::new();
        loop {
            match stream.next(&mut buf, Duration::from_millis(20)) {
                Next::Data => all.extend_from_slice(&buf),
                Next::Idle => {}
                Next::Ended => break,
            }
        }
        all.extend_from_slice(&stream.end_block());
        (all, stream.stats())
    })
}

/// Waits until the writer has dealt with every record so far.
fn settle(t: &Tracer, records: u64) {
    for _ in 0..500 {
        let kept: u64 = t.stats().captures.iter().map(|c| c.frames + c.lost).sum();
        if kept >= records {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn spec(filter: &str, processor: Option<usize>) -> CaptureSpec {
    CaptureSpec {
        filter: Some(filter.into()),
        processor,
    }
}

#[test]
fn a_capture_streams_pcapng_of_what_its_filter_keeps() {
    let t = Tracer::start_tuned(opts(None, None), tuning()).expect("start");
    assert!(!t.active());
    let c = t.capture(spec("tcp port 80", None)).expect("capture");
    assert_eq!(c.id(), 1);
    assert!(t.active(), "a capture records frames");
    assert!(!t.tracing(), "but is not the trace");
    let reader = drain(c);
    for i in 0..10 {
        t.record_with(Direction::In, &syn(i), || {
            format!("in cpu={} rr-new", i % 2)
        });
        t.record(
            Direction::Out,
            &frames::ping4(true),
            "out adapter echo-reply",
        );
    }
    t.close();
    let (bytes, st) = reader.join().expect("reader");
    let got = read_pcapng_from(&bytes[..]);
    assert_eq!(got.idbs.len(), 1);
    assert_eq!(got.packets.len(), 10, "only the SYNs to port 80");
    for (i, (_, data, comment)) in got.packets.iter().enumerate() {
        assert_eq!(data, &syn(i as u32));
        assert_eq!(
            comment.as_deref(),
            Some(format!("in cpu={} rr-new", i % 2).as_str())
        );
    }
    assert_eq!((st.frames, st.lost), (10, 0));
    assert_eq!(st.bytes as usize + closing_len(&bytes), bytes.len());
    let isb = statistics(&bytes);
    assert!(isb.contains(&InterfaceStatisticsOption::IsbUsrDeliv(10)));
    assert!(isb.contains(&InterfaceStatisticsOption::IsbIfDrop(0)));
    assert!(t.stats().captures.is_empty(), "the stream is gone");
}

/// The length of the statistics block at the end of `bytes` (its
/// length is its last 4 bytes).
fn closing_len(bytes: &[u8]) -> usize {
    let tail: [u8; 4] = bytes[bytes.len() - 4..].try_into().expect("4 bytes");
    u32::from_ne_bytes(tail) as usize
}

/// The options of the stream's Interface Statistics Block.
fn statistics(bytes: &[u8]) -> Vec<InterfaceStatisticsOption<'static>> {
    let mut r = PcapNgReader::new(bytes).expect("section");
    let mut isb = None;
    while let Some(b) = r.next_block() {
        if let Block::InterfaceStatistics(s) = b.expect("whole block") {
            isb = Some(s.into_owned().options);
        }
    }
    isb.expect("an interface statistics block at the end")
}

#[test]
fn processor_k_keeps_the_frames_whose_decision_names_cpu_k() {
    assert!(names_cpu("in cpu=2 rr-new port=80 slot=1", 2));
    assert!(names_cpu("out cpu=2 gso", 2));
    assert!(names_cpu(
        "in adapter syn-cookie port=80 cpu=2 half-open-full",
        2
    ));
    assert!(!names_cpu("in cpu=12 flow", 2));
    assert!(!names_cpu("in cpu=2x flow", 2));
    assert!(!names_cpu("out adapter rst", 0));

    let t = Tracer::start_tuned(opts(None, None), tuning()).expect("start");
    let any = CaptureSpec {
        filter: None,
        processor: Some(1),
    };
    let one = drain(t.capture(any).expect("capture"));
    let both = drain(t.capture(spec("tcp", Some(1))).expect("capture"));
    for i in 0..12 {
        t.record_with(Direction::In, &syn(i), || format!("in cpu={} flow", i % 3));
    }
    t.record(Direction::Out, &frames::ping4(true), "out cpu=1");
    t.close();
    let comments = |h: JoinHandle<(Vec<u8>, CaptureStats)>| -> Vec<String> {
        let (bytes, _) = h.join().expect("reader");
        read_pcapng_from(&bytes[..])
            .packets
            .into_iter()
            .filter_map(|p| p.2)
            .collect()
    };
    let c1 = comments(one);
    assert_eq!(c1.len(), 5, "{c1:?}");
    assert!(c1[..4].iter().all(|c| c == "in cpu=1 flow"), "{c1:?}");
    assert_eq!(c1[4], "out cpu=1");
    let c2 = comments(both);
    assert_eq!(c2.len(), 4, "filter and processor both hold: {c2:?}");
}

#[test]
fn a_client_that_does_not_read_loses_frames_and_they_are_counted() {
    let mut tun = tuning();
    tun.capture_bytes = 4096;
    let t = Tracer::start_tuned(opts(None, None), tun).expect("start");
    let slow = t.capture(CaptureSpec::default()).expect("slow");
    let n = 200;
    for i in 0..n {
        t.record_with(Direction::In, &syn(i), || "in cpu=0 flow");
    }
    settle(&t, n.into());
    let st = t.stats().captures;
    assert_eq!(st.len(), 1);
    assert!(st[0].lost > 0, "{st:?}");
    assert_eq!(st[0].frames + st[0].lost, u64::from(n), "{st:?}");
    assert_eq!(t.stats().lost, 0, "nothing lost before the filter");
    // What it kept is still whole pcapng.
    let reader = drain(slow);
    t.close();
    let (bytes, end) = reader.join().expect("reader");
    assert_eq!(
        read_pcapng_from(&bytes[..]).packets.len() as u64,
        end.frames
    );
    let isb = statistics(&bytes);
    assert!(isb.contains(&InterfaceStatisticsOption::IsbIfDrop(end.lost)));
}

#[test]
fn captures_end_when_dropped_and_recording_stops_with_the_last() {
    let t = Tracer::start_tuned(opts(None, None), tuning()).expect("start");
    let a = t.capture(spec("icmp", None)).expect("a");
    let b = t.capture(spec("tcp", None)).expect("b");
    assert_ne!(a.id(), b.id());
    let st = t.stats().captures;
    assert_eq!(st.len(), 2);
    assert_eq!(st[0].spec.filter.as_deref(), Some("icmp"));
    // Lines on and off leave the captures' recording alone.
    t.set_lines(Some(LineMode::Frames));
    t.set_lines(None);
    assert!(t.active());
    drop(a);
    assert!(t.active(), "b still runs");
    drop(b);
    assert!(!t.active(), "no capture, no trace: nothing recorded");
    assert!(t.stats().captures.is_empty());
}

#[test]
fn bad_filters_and_too_many_captures_are_refused() {
    let t = Tracer::start_tuned(opts(None, None), tuning()).expect("start");
    match t.capture(spec("tcp prot 80", None)) {
        Err(CaptureError::Filter(e)) => {
            assert!(e.to_string().contains("syntax error"), "{e}");
            assert!(e.to_string().contains("tcp prot 80"), "{e}");
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a bad filter was taken"),
    }
    assert!(!t.active(), "a refused capture leaves nothing on");
    let blank = t
        .capture(spec("   ", None))
        .expect("a blank filter keeps all");
    assert_eq!(t.stats().captures[0].spec.filter, None);
    let mut more: Vec<CaptureStream> = (1..capture::MAX_CAPTURES)
        .map(|_| t.capture(CaptureSpec::default()).expect("room"))
        .collect();
    assert!(matches!(
        t.capture(CaptureSpec::default()),
        Err(CaptureError::TooMany(_))
    ));
    more.pop();
    assert!(t.capture(CaptureSpec::default()).is_ok(), "room again");
    drop(blank);
    drop(more);
    t.close();
    assert!(matches!(
        t.capture(CaptureSpec::default()),
        Err(CaptureError::NotRunning)
    ));
    assert!(matches!(
        Tracer::disabled().capture(CaptureSpec::default()),
        Err(CaptureError::NotRunning)
    ));
}

#[test]
fn pcap_filter_keeps_only_matching_frames_in_the_file() {
    let dir = std::env::temp_dir().join(format!("vnic-capture-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("f.pcapng");
    let mut o = opts(Some(path.clone()), None);
    o.pcap_filter = Some("icmp".into());
    let t = Tracer::start_tuned(o, tuning()).expect("start");
    assert_eq!(t.stats().filter.as_deref(), Some("icmp"));
    for i in 0..5 {
        t.record(Direction::In, &syn(i), "in cpu=0 rr-new");
        t.record(
            Direction::In,
            &frames::ping4(false),
            "in adapter echo-reply",
        );
    }
    t.close();
    let got = read_pcapng_from(std::fs::File::open(&path).expect("file"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(got.packets.len(), 5);
    assert!(got
        .packets
        .iter()
        .all(|p| p.2.as_deref() == Some("in adapter echo-reply")));

    let mut bad = opts(Some(dir.join("g.pcapng")), None);
    bad.pcap_filter = Some("port".into());
    let e = Tracer::start_tuned(bad, tuning()).err().expect("refused");
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(
        e.to_string().starts_with("bad capture filter \"port\""),
        "{e}"
    );
}
