//! vnic as a library: examples/embed.rs serves two protocols of its own
//! (a line reverser as an `App`, a key-value store as a `RequestHandler`)
//! through `vnic::Builder`, and the kernel's TCP talks to them through the
//! TAP, in the test's own namespace.

mod common;

use common::{can_run, Netns};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// The example's binary, built by `cargo test` beside vnic's.
fn embed() -> PathBuf {
    let vnic = PathBuf::from(env!("CARGO_BIN_EXE_vnic"));
    vnic.parent()
        .expect("target dir")
        .join("examples")
        .join("embed")
}

fn start(ns: &Netns, extra: &[&str]) -> common::Vnic {
    let mut args = vec![
        "--tap",
        &ns.tap,
        "--ip",
        "10.0.0.2/24",
        "--ip",
        "fd00::2/64",
        "--host-ip",
        "10.0.0.1/24",
        "--host-ip",
        "fd00::1/64",
    ];
    args.extend_from_slice(extra);
    ns.start_program(&embed(), &args)
}

fn connect(addr: &str) -> (BufReader<TcpStream>, TcpStream) {
    let a: SocketAddr = addr.parse().expect("addr");
    let s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    (BufReader::new(s.try_clone().expect("clone")), s)
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).expect("read a line");
    l.trim_end().to_string()
}

#[test]
fn reverse_answers_on_every_processor_in_round_robin_order() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let running = start(&ns, &["--processors", "4"]);
    assert!(
        running
            .ready
            .contains("processors=4 filter=round-robin model=monolithic"),
        "{}",
        running.ready
    );
    let seen = ns.run(|| {
        (0..8)
            .map(|i| {
                let addr = if i % 2 == 0 {
                    "10.0.0.2:7000"
                } else {
                    "[fd00::2]:7000"
                };
                let (mut r, mut w) = connect(addr);
                let greeting = line(&mut r);
                let text = format!("hello {i}, vnic\n");
                w.write_all(text.as_bytes()).expect("send");
                w.write_all(b"abc\r\n").expect("send");
                let reversed: String = format!("hello {i}, vnic").chars().rev().collect();
                assert_eq!(line(&mut r), reversed);
                assert_eq!(line(&mut r), "cba");
                w.shutdown(std::net::Shutdown::Write).expect("fin");
                let mut rest = String::new();
                r.read_line(&mut rest).expect("eof");
                assert_eq!(rest, "", "closed after our FIN");
                greeting
            })
            .collect::<Vec<_>>()
    });
    let want: Vec<String> = (0..8)
        .map(|i| format!("reverse processor={}", i % 4))
        .collect();
    assert_eq!(seen, want);
    let (code, err) = running.stop();
    assert_eq!(code, Some(0), "clean exit on SIGTERM; stderr: {err}");
}

/// One command, one answer line.
fn ask(r: &mut BufReader<TcpStream>, w: &mut TcpStream, cmd: &str) -> String {
    w.write_all(format!("{cmd}\n").as_bytes()).expect("send");
    line(r)
}

#[test]
fn key_value_requests_run_at_the_processors_and_at_the_back_ends() {
    if !can_run() {
        return;
    }
    // Monolithic: each processor answers its own connections' requests,
    // and the store is one for all of them.
    let ns = Netns::new();
    let running = start(&ns, &["--processors", "2"]);
    let whos = ns.run(|| {
        let (mut r0, mut w0) = connect("10.0.0.2:7001");
        let (mut r1, mut w1) = connect("10.0.0.2:7001");
        let who = vec![ask(&mut r0, &mut w0, "WHO"), ask(&mut r1, &mut w1, "WHO")];
        assert_eq!(ask(&mut r0, &mut w0, "SET colour blue"), "OK");
        assert_eq!(ask(&mut r1, &mut w1, "GET colour"), "VALUE blue");
        assert_eq!(ask(&mut r1, &mut w1, "GET shape"), "NONE");
        assert!(ask(&mut r1, &mut w1, "FLY away").starts_with("ERR "));
        // Two requests in one segment: two answers, in order.
        w0.write_all(b"SET a 1\nGET a\n").expect("send");
        assert_eq!(line(&mut r0), "OK");
        assert_eq!(line(&mut r0), "VALUE 1");
        assert_eq!(ask(&mut r0, &mut w0, "QUIT"), "BYE");
        let mut rest = String::new();
        r0.read_line(&mut rest).expect("eof");
        assert_eq!(rest, "", "QUIT closes");
        who
    });
    assert_eq!(whos, vec!["processor=0 backend=-", "processor=1 backend=-"]);
    let (code, err) = running.stop();
    assert_eq!(code, Some(0), "stderr: {err}");

    // Distributor: the front-end frames the requests, back-ends 0 and 1
    // answer them in turn, and the answers come back in order.
    let ns = Netns::new();
    let running = start(
        &ns,
        &[
            "--processors",
            "1",
            "--model",
            "distributor",
            "--backends",
            "2",
        ],
    );
    assert!(
        running.ready.contains("model=distributor"),
        "{}",
        running.ready
    );
    let whos = ns.run(|| {
        let (mut r, mut w) = connect("10.0.0.2:7001");
        w.write_all(b"WHO\nWHO\nWHO\nWHO\n").expect("send");
        let whos: Vec<String> = (0..4).map(|_| line(&mut r)).collect();
        assert_eq!(ask(&mut r, &mut w, "SET k v"), "OK");
        assert_eq!(ask(&mut r, &mut w, "GET k"), "VALUE v");
        whos
    });
    assert_eq!(
        whos,
        vec![
            "processor=0 backend=0",
            "processor=0 backend=1",
            "processor=0 backend=0",
            "processor=0 backend=1"
        ]
    );
    let (code, err) = running.stop();
    assert_eq!(code, Some(0), "stderr: {err}");
}
