//! The broker listener model (issue 20 part 2): each processor serves on a
//! port of its own, and the served ports tell each client where to go —
//! HTTP with a 307 that `curl -L` follows, other protocols with one line
//! `ADDR PORT`. The kernel's TCP and curl are the clients, in the test's
//! own namespace.

mod common;

use common::{body_value, can_run, connect, Netns};
use std::io::{BufRead, BufReader, Read, Write};

#[test]
fn curl_follows_the_broker_to_each_processor_in_turn() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&["--model", "broker", "--processors", "3", "--quiet"]);
    assert!(vnic.ready.contains("model=broker"), "{}", vnic.ready);
    assert!(vnic.ready.contains("broker-ports=8000"), "{}", vnic.ready);
    // Served ports in order 7, 9, 19, 80: http's own ports are 8009-8011.
    let mut landed = Vec::new();
    for url in [
        "http://10.0.0.2/",
        "http://[fd00::2]/",
        "http://10.0.0.2/x",
        "http://10.0.0.2/",
    ] {
        let out = ns.exec(&["curl", "-sS", "-L", "-D", "-", "--max-time", "10", url]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{url}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("307 Temporary Redirect"), "{text}");
        let port: String = text
            .lines()
            .find_map(|l| l.strip_prefix("Location: "))
            .and_then(|l| l.rsplit(':').next())
            .map(|p| p.chars().take_while(char::is_ascii_digit).collect())
            .unwrap_or_default();
        if url.ends_with("/x") {
            assert!(text.contains("404"), "the redirect kept the path: {text}");
        } else {
            let k: usize = body_value(&text, "processor")
                .and_then(|v| v.parse().ok())
                .expect("processor=");
            assert_eq!(port, format!("{}", 8009 + k), "{text}");
            landed.push(k);
        }
    }
    assert_eq!(
        landed,
        vec![0, 1, 0],
        "round-robin over 0, 1, 2 (the /x went to 2)"
    );
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn other_clients_get_one_line_and_find_their_processor_there() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic(&[
        "--model",
        "broker",
        "--processors",
        "2",
        "--broker-ports",
        "9000",
        "--balance",
        "least-busy",
        "--quiet",
    ]);
    let echoed = ns.run(|| {
        let mut held = Vec::new();
        let mut lines = Vec::new();
        for _ in 0..3 {
            let mut b = BufReader::new(connect("10.0.0.2:7"));
            let mut line = String::new();
            b.read_line(&mut line).expect("answer line");
            let mut rest = Vec::new();
            b.read_to_end(&mut rest).expect("then closed");
            assert!(rest.is_empty());
            let (addr, port) = line.trim_end().split_once(' ').expect("ADDR PORT");
            assert_eq!(addr, "10.0.0.2");
            let mut s = connect(&format!("{addr}:{port}"));
            s.write_all(b"hello").expect("write");
            let mut back = [0u8; 5];
            s.read_exact(&mut back).expect("echo");
            assert_eq!(&back, b"hello");
            lines.push(port.to_string());
            held.push(s); // kept open: least-busy sees it
        }
        lines
    });
    // Port 7 is the first served: processor K on 9000 + K; least-busy
    // sends the second client to the idle processor, the third to either.
    assert_eq!(echoed[0], "9000");
    assert_eq!(echoed[1], "9001");
    let (code, err) = vnic.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn the_broker_model_is_refused_where_it_cannot_run() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    for (args, says) in [
        (
            &["--model", "broker", "--broker-ports", "65530"][..],
            "pass 65535",
        ),
        (
            &["--model", "broker", "--broker-ports", "78"][..],
            "both a broker port",
        ),
        (
            &["--broker-ports", "8000"][..],
            "--broker-ports belongs to --model broker",
        ),
    ] {
        ns.refuses(args, says);
    }
}
