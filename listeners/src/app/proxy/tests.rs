//! The relay against real kernel sockets on 127.0.0.1 (the test's own
//! back-end), with the client side an in-memory socket.

use super::*;
use crate::app::checkpoint_tests::push_lines_checkpointing_each_poll;
use crate::app::MemSocket;
use crate::stats::Registry;
use std::net::TcpListener;

const PATIENCE: Duration = Duration::from_secs(10);

fn ctx(processor: usize) -> AppContext {
    let mut c = AppContext::detached(
        processor,
        1,
        Arc::new(Registry::new("monolithic", "round-robin", 4)),
    );
    c.local = "10.0.0.2:80".parse().expect("addr");
    c.remote = "10.0.0.1:40000".parse().expect("addr");
    c
}

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

fn row(svc: &ProxyService, i: usize) -> serde_json::Map<String, serde_json::Value> {
    svc.report().expect("report").rows.remove(i)
}

fn count(r: &serde_json::Map<String, serde_json::Value>, k: &str) -> u64 {
    r.get(k).and_then(|v| v.as_u64()).unwrap_or(u64::MAX)
}

/// Polls the app until `done` says so (the relay is not watched: it asks
/// to be polled every few milliseconds, as the processor would).
fn poll_until(
    app: &mut Box<dyn App>,
    sock: &mut MemSocket,
    what: &str,
    mut done: impl FnMut(&MemSocket) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    while !done(sock) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        app.poll(sock);
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn targets_parse_as_the_cli_writes_them() {
    assert_eq!(
        parse_targets("127.0.0.1:8080,[::1]:8081").expect("ok"),
        vec![
            "127.0.0.1:8080".parse::<SocketAddr>().expect("a"),
            "[::1]:8081".parse::<SocketAddr>().expect("a")
        ]
    );
    for bad in [
        "",
        "127.0.0.1",
        "::1:80",
        "host:80",
        "127.0.0.1:0",
        "0.0.0.0:80",
        "1.2.3.4:80,",
    ] {
        assert!(parse_targets(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn proxy_protocol_headers_are_haproxys() {
    let c: SocketAddr = "10.0.0.1:40000".parse().expect("a");
    let l: SocketAddr = "10.0.0.2:80".parse().expect("a");
    assert_eq!(
        ProxyProtocol::V1.header(c, l),
        b"PROXY TCP4 10.0.0.1 10.0.0.2 40000 80\r\n"
    );
    let c6: SocketAddr = "[fd00::1]:40000".parse().expect("a");
    let l6: SocketAddr = "[fd00::2]:80".parse().expect("a");
    assert_eq!(
        ProxyProtocol::V1.header(c6, l6),
        b"PROXY TCP6 fd00::1 fd00::2 40000 80\r\n"
    );
    let v2 = ProxyProtocol::V2.header(c, l);
    let mut want = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    want.extend_from_slice(&[
        0x21, 0x11, 0, 12, 10, 0, 0, 1, 10, 0, 0, 2, 0x9c, 0x40, 0, 80,
    ]);
    assert_eq!(v2, want);
    let v2 = ProxyProtocol::V2.header(c6, l6);
    assert_eq!(&v2[12..16], &[0x21, 0x21, 0, 36]);
    assert_eq!(v2.len(), 16 + 36);
    assert_eq!(&v2[16 + 32..], &[0x9c, 0x40, 0, 80]);
}

#[test]
fn processor_k_goes_to_target_k_mod_t() {
    let (l0, a0) = listener();
    let (l1, a1) = listener();
    let svc = ProxyService::new(vec![a0, a1], ProxyOptions::default());
    let mut apps: Vec<Box<dyn App>> = (0..4).map(|k| svc.open(ctx(k)).expect("open")).collect();
    let mut sock = MemSocket::new(1 << 16);
    for app in &mut apps {
        poll_until(app, &mut sock, "connect", |_| true);
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        for app in &mut apps {
            app.poll(&mut sock);
        }
        if count(&row(&svc, 0), "connects") == 2 && count(&row(&svc, 1), "connects") == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "connects: {:?}", svc.report());
        std::thread::sleep(Duration::from_millis(1));
    }
    l0.set_nonblocking(true).expect("nb");
    l1.set_nonblocking(true).expect("nb");
    assert_eq!((0..3).filter(|_| l0.accept().is_ok()).count(), 2);
    assert_eq!((0..3).filter(|_| l1.accept().is_ok()).count(), 2);
    assert_eq!(count(&row(&svc, 0), "active"), 2);
    drop(apps);
    assert_eq!(count(&row(&svc, 0), "active"), 0);
}

#[test]
fn bytes_go_both_ways_and_half_closes_pass_through() {
    let (l, a) = listener();
    let opts = ProxyOptions {
        proxy_protocol: Some(ProxyProtocol::V1),
        ..ProxyOptions::default()
    };
    let svc = ProxyService::new(vec![a], opts);
    let mut app = svc.open(ctx(0)).expect("open");
    let backend = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read to the client's FIN");
        s.write_all(b"answer").expect("write");
        got
    });
    let mut sock = MemSocket::new(1 << 16);
    sock.push(b"request");
    sock.peer_fin = true;
    poll_until(&mut app, &mut sock, "the back-end's answer and FIN", |s| {
        s.closed()
    });
    assert_eq!(sock.tx, b"answer");
    let got = backend.join().expect("backend");
    assert_eq!(got, b"PROXY TCP4 10.0.0.1 10.0.0.2 40000 80\r\nrequest");
    let r = row(&svc, 0);
    assert_eq!(count(&r, "bytes_from_target"), 6);
    assert_eq!(count(&r, "bytes_to_target"), got.len() as u64);
}

#[test]
fn a_client_that_does_not_read_stops_the_relay_reading_the_back_end() {
    let (l, a) = listener();
    let svc = ProxyService::new(vec![a], ProxyOptions::default());
    let mut app = svc.open(ctx(0)).expect("open");
    let backend = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        s.set_write_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0usize;
        while sent < 64 << 20 {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break, // blocked: nobody reads
            }
        }
        sent
    });
    let mut sock = MemSocket::new(0);
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        app.poll(&mut sock);
        std::thread::sleep(Duration::from_millis(2));
    }
    let sent = backend.join().expect("backend");
    let read = count(&row(&svc, 0), "bytes_from_target");
    assert!(
        read <= TO_CLIENT as u64,
        "read {read} with nowhere to put it"
    );
    assert!(sent < 64 << 20, "the back-end was never held back");
    assert!(sock.tx.is_empty());
}

#[test]
fn a_back_end_that_does_not_read_closes_the_clients_window() {
    let (l, a) = listener();
    let svc = ProxyService::new(vec![a], ProxyOptions::default());
    let mut app = svc.open(ctx(0)).expect("open");
    let (_held, _) = l.accept().expect("accept");
    let mut sock = MemSocket::new(1 << 16);
    let mut offered = 0usize;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if sock.rx.len() < 1 << 20 {
            sock.push(&vec![1u8; 1 << 16]);
            offered += 1 << 16;
        }
        app.poll(&mut sock);
        std::thread::sleep(Duration::from_millis(1));
    }
    // What left the client's socket is what the kernel took plus at most
    // the relay's own buffer: the rest stays in TCP (a closed window).
    let taken = offered - sock.rx.len();
    let written = count(&row(&svc, 0), "bytes_to_target") as usize;
    assert!(
        taken <= written + TO_TARGET,
        "taken {taken}, written {written}"
    );
    assert!(sock.rx.len() > 1 << 19, "the client's data piles up in TCP");
}

#[test]
fn a_refused_connect_resets_the_client_and_counts_a_failure() {
    let (l, a) = listener();
    drop(l);
    let svc = ProxyService::new(vec![a], ProxyOptions::default());
    match svc.open(ctx(0)) {
        Err(_) => {}
        Ok(mut app) => {
            let mut sock = MemSocket::new(1 << 16);
            poll_until(&mut app, &mut sock, "the reset", |s| s.aborted);
        }
    }
    assert_eq!(count(&row(&svc, 0), "failures"), 1);
    assert_eq!(count(&row(&svc, 0), "connects"), 0);
}

#[test]
fn a_back_end_reset_resets_the_client() {
    let (l, a) = listener();
    let svc = ProxyService::new(vec![a], ProxyOptions::default());
    let mut app = svc.open(ctx(0)).expect("open");
    let mut sock = MemSocket::new(1 << 16);
    let (s, _) = l.accept().expect("accept");
    poll_until(&mut app, &mut sock, "connected", |_| {
        count(&row(&svc, 0), "connects") == 1
    });
    socket_linger_zero(&s).expect("SO_LINGER");
    drop(s);
    sock.push(b"anyone there?");
    poll_until(&mut app, &mut sock, "the reset", |s| s.aborted);
}

#[test]
fn a_client_reset_resets_the_back_end() {
    let (l, a) = listener();
    let svc = ProxyService::new(vec![a], ProxyOptions::default());
    let mut app = svc.open(ctx(0)).expect("open");
    let mut sock = MemSocket::new(1 << 16);
    let (mut s, _) = l.accept().expect("accept");
    poll_until(&mut app, &mut sock, "connected", |_| {
        count(&row(&svc, 0), "connects") == 1
    });
    app.on_closed(CloseReason::Reset);
    drop(app);
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut buf = [0u8; 8];
    let r = s.read(&mut buf);
    assert_eq!(r.map_err(|e| e.kind()), Err(io::ErrorKind::ConnectionReset));
}

#[test]
fn our_fin_waits_for_the_client_bytes_when_both_ends_closed() {
    // The client sent everything and its FIN; the back-end half-closed
    // before reading. Our FIN would take the connection to LAST-ACK, and
    // the client's ACK of it ends the connection and drops the relay with
    // whatever it and the stack still hold: so our FIN waits until every
    // client byte is written to the back-end.
    let (l, a) = listener();
    let svc = ProxyService::new(vec![a], ProxyOptions::default());
    let mut app = svc.open(ctx(0)).expect("open");
    let (back, _) = l.accept().expect("accept");
    back.shutdown(std::net::Shutdown::Write)
        .expect("back-end FIN");
    let data: Vec<u8> = (0..16usize << 20)
        .map(|i| (i * 31 + i / 997) as u8)
        .collect();
    let mut sock = MemSocket::new(1 << 16);
    sock.push(&data);
    sock.peer_fin = true;
    // The back-end does not read yet: its kernel's buffers fill, the
    // relay's too, and the rest stays in the client's TCP.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        app.poll(&mut sock);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(!sock.rx.is_empty(), "the back-end's buffers took it all");
    assert!(!sock.closed(), "our FIN went while client bytes were held");
    let reader = std::thread::spawn(move || {
        let mut back = back;
        back.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut got = Vec::new();
        back.read_to_end(&mut got)
            .expect("the client's bytes, then EOF");
        got
    });
    poll_until(&mut app, &mut sock, "our FIN", |s| s.closed());
    // What the processor does once the client acknowledges that FIN.
    app.on_closed(CloseReason::Normal);
    drop(app);
    let got = reader.join().expect("reader");
    assert_eq!(
        got.len(),
        data.len(),
        "every client byte reached the back-end"
    );
    assert!(got == data, "in order");
}

/// Checkpoint, `on_moved`, drop, restore into a fresh context: the
/// connection moved to another processor.
fn moved(mut app: Box<dyn App>) -> Box<dyn App> {
    let cp = app.checkpoint().expect("a checkpoint");
    app.on_moved();
    drop(app);
    cp.restore(ctx(0)).expect("restored")
}

/// Reads exactly `n` bytes from the back-end's side.
fn read_n(back: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
    back.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut got = vec![0; n];
    back.read_exact(&mut got).expect("bytes from the relay");
    got
}

#[test]
fn a_moved_relay_keeps_its_back_end_connection_and_held_bytes() {
    let (l, a) = listener();
    let svc = ProxyService::new(vec![a], ProxyOptions::default());
    let app = svc.open(ctx(0)).expect("open");
    // Moved while the connect is still in progress: the restored relay
    // finishes it.
    let mut app = moved(app);
    let (mut back, _) = l.accept().expect("accept");
    let mut sock = MemSocket::new(1 << 16);
    sock.push(b"hello ");
    poll_until(&mut app, &mut sock, "the client's bytes relayed", |s| {
        s.rx.is_empty()
    });
    assert_eq!(read_n(&mut back, 6), b"hello ");
    // Back-end bytes the relay holds for a client with no send space.
    back.write_all(b"from the back-end").expect("write");
    sock.capacity = 0;
    let until = Instant::now() + Duration::from_millis(100);
    while Instant::now() < until {
        app.poll(&mut sock);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(app.memory() > 0, "the relay holds the back-end's bytes");
    let mut app = moved(app);
    sock.capacity = 1 << 16;
    poll_until(&mut app, &mut sock, "the held bytes", |s| s.tx.len() == 17);
    assert_eq!(sock.tx, b"from the back-end");
    sock.push(b"world");
    poll_until(&mut app, &mut sock, "more client bytes", |s| {
        s.rx.is_empty()
    });
    assert_eq!(read_n(&mut back, 5), b"world");
    let r = row(&svc, 0);
    assert_eq!((count(&r, "connects"), count(&r, "active")), (1, 1));
    // Both ends close cleanly: the back-end sees EOF, the gauge drops.
    sock.peer_fin = true;
    back.shutdown(std::net::Shutdown::Write).expect("FIN");
    poll_until(&mut app, &mut sock, "our FIN", MemSocket::closed);
    let mut rest = Vec::new();
    back.read_to_end(&mut rest).expect("EOF");
    assert!(rest.is_empty());
    app.on_closed(CloseReason::Normal);
    drop(app);
    assert_eq!(count(&row(&svc, 0), "active"), 0);
}

#[test]
fn checkpoints_dropped_unrestored_leave_the_relay_alone_and_the_last_holder_closes() {
    let (l, a) = listener();
    let svc = ProxyService::new(vec![a], ProxyOptions::default());
    let mut app = svc.open(ctx(0)).expect("open");
    let (mut back, _) = l.accept().expect("accept");
    let mut sock = MemSocket::new(1 << 16);
    // A process pair's primary: a checkpoint after every poll.
    let want = push_lines_checkpointing_each_poll(&mut app, &mut sock, 100);
    poll_until(&mut app, &mut sock, "every byte relayed", |s| {
        s.rx.is_empty()
    });
    assert_eq!(read_n(&mut back, want.len()), want);
    back.write_all(b"pong").expect("write");
    poll_until(&mut app, &mut sock, "the answer", |s| s.tx.len() == 4);
    assert_eq!(sock.tx, b"pong");
    // The app goes (a primary that died) while a checkpoint holds the
    // socket: the back-end sees nothing yet.
    let cp = app.checkpoint().expect("a checkpoint");
    drop(app);
    back.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut one = [0u8; 1];
    let r = back.read(&mut one);
    assert!(
        matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock
            || e.kind() == io::ErrorKind::TimedOut),
        "the back-end connection is still open: {r:?}"
    );
    assert_eq!(count(&row(&svc, 0), "active"), 1);
    // The last holder goes: the relay was not done, so the back-end is
    // reset (as a relay dropped without on_closed always was).
    drop(cp);
    back.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let r = back.read(&mut one);
    assert!(
        matches!(&r, Ok(0)) || r.is_err(),
        "the back-end saw its connection end: {r:?}"
    );
    assert_eq!(count(&row(&svc, 0), "active"), 0);
}
