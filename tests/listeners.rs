//! Listeners as NonStop configures them: config files, filter keys, port
//! ranges, UDP sharing per datagram, address binding, backup listeners.

mod common;

use common::{body_value, can_run, http_get, Netns};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

fn connect(addr: &str) -> TcpStream {
    let a: SocketAddr = addr.parse().expect("addr");
    let s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

fn gets(ns: &Netns, n: usize) -> Vec<usize> {
    ns.run(move || {
        (0..n)
            .map(|_| {
                let (status, body) = http_get(&mut connect("10.0.0.2:80"), "/", false);
                assert_eq!(status, 200);
                body_value(&body, "processor")
                    .and_then(|v| v.parse().ok())
                    .expect("processor=")
            })
            .collect()
    })
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn write_config(ns: &Netns, body: &str) -> String {
    let path = format!("/tmp/{}.toml", ns.name);
    std::fs::write(&path, body).expect("write config");
    path
}

#[test]
fn web_example_shares_port_80_over_four_processors() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let vnic = ns.vnic_config(&example("web-4cpu.toml"), &[]);
    assert!(
        vnic.ready.contains("processors=4 filter=round-robin"),
        "{}",
        vnic.ready
    );
    assert_eq!(gets(&ns, 8), vec![0, 1, 2, 3, 0, 1, 2, 3]);
    let st = ns.status_json();
    let l = st["listeners"].as_array().expect("listeners");
    assert!(
        l.iter().any(|x| x["port"] == 80
            && x["key"]
                .as_str()
                .is_some_and(|k| k.starts_with('w') && k.contains('*'))),
        "{l:?}"
    );
}

#[test]
fn round_robin_over_exactly_the_configured_processors() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let cfg = write_config(
        &ns,
        r#"
[adapter]
tap = "unused0"
addresses = ["10.0.0.2/24"]
host_addresses = ["10.0.0.1/24"]
processors = 4
[filter]
mode = "round-robin"
key = "k1"
[[listener]]
port = 80
app = "http"
processor = 0
[[listener]]
port = 80
app = "http"
processor = 2
[[listener]]
port = 80
app = "http"
processor = 3
"#,
    );
    let _vnic = ns.vnic_config(&cfg, &[]);
    assert_eq!(gets(&ns, 6), vec![0, 2, 3, 0, 2, 3]);
    // A listener with another key is refused at run time too.
    let out = ns.vnic_cmd(&[
        "ctl",
        "listener",
        "add",
        "--port",
        "80",
        "--processor",
        "1",
        "--app",
        "http",
        "--key",
        "other",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The right key joins the line at its end.
    let out = ns.vnic_cmd(&[
        "ctl",
        "listener",
        "add",
        "--port",
        "80",
        "--processor",
        "1",
        "--app",
        "http",
        "--key",
        "k1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(gets(&ns, 4), vec![0, 2, 3, 1]);
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn wrong_key_in_the_config_is_refused_with_its_line() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let cfg = write_config(
        &ns,
        "[adapter]\ntap = \"x0\"\naddresses = [\"10.0.0.2/24\"]\n[filter]\nmode = \"round-robin\"\n\
         [[listener]]\nport = 80\napp = \"http\"\nprocessor = 0\nkey = \"alpha\"\n\
         [[listener]]\nport = 80\napp = \"http\"\nprocessor = 1\nkey = \"beta\"\n",
    );
    let ctl = ns.control_path();
    let out = ns.vnic_raw(&["up", "--config", &cfg, "--tap", &ns.tap, "--control", &ctl]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{cfg}:15:")),
        "names the line of the second key: {err}"
    );
    assert!(err.to_lowercase().contains("key"), "{err}");
    assert!(
        !err.contains("beta") && !err.contains("alpha"),
        "keys are not shown: {err}"
    );
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn udp_datagrams_alternate_and_bound_listeners_get_only_their_address() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic_config(&example("udp-per-address.toml"), &[]);
    let echoed = ns.run(|| {
        let s = UdpSocket::bind("10.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(2))).expect("t");
        let mut ok = 0;
        for (i, dst) in [
            "10.0.0.2:7",
            "10.0.0.2:7",
            "10.0.0.2:7",
            "10.0.0.2:7",
            "10.0.0.3:7",
            "10.0.0.3:7",
        ]
        .iter()
        .enumerate()
        {
            let msg = format!("datagram {i}");
            s.send_to(msg.as_bytes(), dst).expect("send");
            let mut buf = [0u8; 64];
            let (n, from) = s.recv_from(&mut buf).expect("echo back");
            assert_eq!(&buf[..n], msg.as_bytes());
            assert_eq!(from.to_string(), *dst);
            ok += 1;
        }
        ok
    });
    assert_eq!(echoed, 6);
    let st = ns.status_json();
    let d: Vec<u64> = st["processors"]
        .as_array()
        .expect("p")
        .iter()
        .map(|p| p["datagrams"].as_u64().unwrap_or(99))
        .collect();
    assert_eq!(
        d,
        vec![2, 2, 1, 1],
        "10.0.0.2 on processors 0 and 1 in turn, 10.0.0.3 on 2 and 3"
    );
}

#[test]
fn primary_processor_down_moves_new_connections_to_the_backup() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let _vnic = ns.vnic_config(&example("primary-backup.toml"), &[]);
    assert_eq!(gets(&ns, 2), vec![0, 0]);
    // An established echo connection on processor 2 (app B's primary).
    let path = format!("/var/run/netns/{}", ns.name);
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let echo = std::thread::spawn(move || {
        use std::os::unix::io::AsRawFd;
        let f = std::fs::File::open(&path).expect("netns");
        // SAFETY: valid namespace fd, this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let mut s = connect("10.0.0.2:7");
        s.write_all(b"before").expect("w");
        let mut b = [0u8; 6];
        s.read_exact(&mut b).expect("r");
        ready_tx.send(()).expect("ready");
        go_rx.recv().expect("go");
        s.write_all(b"after!").expect("w after");
        s.read_exact(&mut b).expect("r after");
        b
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("echo connected");
    let out = ns.vnic_cmd(&["ctl", "processor", "0", "down"]);
    assert!(out.status.success());
    let notes = String::from_utf8_lossy(&out.stdout);
    assert!(
        notes.contains("80") && notes.contains('1'),
        "says where port 80 went: {notes}"
    );
    assert_eq!(
        gets(&ns, 2),
        vec![1, 1],
        "the backup in processor 1 takes the next connection"
    );
    go_tx.send(()).expect("go");
    assert_eq!(
        &echo.join().expect("echo"),
        b"after!",
        "processor 2's connection unaffected"
    );
    let st = ns.status_json();
    let l80 = st["listeners"]
        .as_array()
        .expect("l")
        .iter()
        .find(|l| l["port"] == 80)
        .cloned()
        .expect("80");
    assert_eq!(l80["state"], "moved-to-backup");
    assert!(ns
        .vnic_cmd(&["ctl", "processor", "0", "up"])
        .status
        .success());
    assert_eq!(gets(&ns, 2), vec![0, 0], "the primary gets the port back");
}

/// An echo round trip on a new connection to `addr`.
fn echoes(addr: &str) -> bool {
    let Ok(a) = addr.parse::<SocketAddr>() else {
        return false;
    };
    let Ok(mut s) = TcpStream::connect_timeout(&a, Duration::from_secs(3)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut b = [0u8; 5];
    s.write_all(b"hello").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"hello"
}

fn ctl_ok(ns: &Netns, args: &[&str]) -> String {
    let out = ns.vnic_cmd(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 20: the manual's PORT-SHARE-ENABLE, off by default: a second
/// listener of port 80 on another address is refused (the file's line is
/// named) unless `port_share_enable = true`; then each address's traffic
/// goes to its own listener.
#[test]
fn port_share_enable_lets_one_port_serve_two_addresses() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let body = |extra: &str| {
        format!(
            "[adapter]\ntap = \"unused0\"\naddresses = [\"10.0.0.2/24\", \"10.0.0.3/24\"]\n\
             host_addresses = [\"10.0.0.1/24\"]\nprocessors = 2\n[filter]\n{extra}\
             [[listener]]\nport = 80\napp = \"http\"\nprocessor = 0\naddress = \"10.0.0.2\"\n\
             [[listener]]\nport = 80\napp = \"http\"\nprocessor = 1\naddress = \"10.0.0.3\"\n"
        )
    };
    let cfg = write_config(&ns, &body(""));
    let ctl = ns.control_path();
    let out = ns.vnic_raw(&["up", "--config", &cfg, "--tap", &ns.tap, "--control", &ctl]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{cfg}:13:")), "names the line: {err}");
    assert!(err.contains("PORT-SHARE-ENABLE"), "{err}");
    let cfg = write_config(&ns, &body("port_share_enable = true\n"));
    let _vnic = ns.vnic_config(&cfg, &[]);
    let got = ns.run(|| {
        ["10.0.0.2:80", "10.0.0.3:80", "10.0.0.2:80", "10.0.0.3:80"]
            .iter()
            .map(|a| {
                let (status, body) = http_get(&mut connect(a), "/", false);
                assert_eq!(status, 200);
                body_value(&body, "processor").unwrap_or_default()
            })
            .collect::<Vec<String>>()
    });
    assert_eq!(got, ["0", "1", "0", "1"]);
    let _ = std::fs::remove_file(cfg);
}

/// Issue 20: a refused `listener add` changes nothing (processor 0 went on
/// answering port 80 with the refused app's before), and `listener remove`
/// of a listener whose backup processor has its own listener of the port
/// leaves that one serving (it stopped it before).
#[test]
fn refused_add_and_remove_leave_the_other_listeners_serving() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let cfg = write_config(
        &ns,
        "[adapter]\ntap = \"unused0\"\naddresses = [\"10.0.0.2/24\"]\n\
         host_addresses = [\"10.0.0.1/24\"]\nprocessors = 2\n\
         [filter]\nmode = \"round-robin\"\nkey = \"k1\"\n\
         [[listener]]\nport = 80\napp = \"http\"\nprocessor = 0\n\
         [[listener]]\nport = 7\napp = \"echo\"\nprocessor = 0\nbackup = 1\n\
         [[listener]]\nport = 7\napp = \"echo\"\nprocessor = 1\n",
    );
    let _vnic = ns.vnic_config(&cfg, &[]);
    let out = ns.vnic_cmd(&[
        "ctl",
        "listener",
        "add",
        "--port",
        "80",
        "--processor",
        "0",
        "--app",
        "echo",
        "--key",
        "k1",
    ]);
    assert!(!out.status.success(), "one listener per processor per port");
    assert_eq!(gets(&ns, 2), vec![0, 0], "processor 0 still answers HTTP");
    ctl_ok(
        &ns,
        &[
            "ctl",
            "listener",
            "remove",
            "--port",
            "7",
            "--processor",
            "0",
        ],
    );
    let ok = ns.run(|| (0..4).filter(|_| echoes("10.0.0.2:7")).count());
    assert_eq!(ok, 4, "processor 1's own echo listener still serves port 7");
    let st = ns.status_json();
    let l: Vec<u64> = st["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .filter(|l| l["port"] == 7)
        .filter_map(|l| l["processor"].as_u64())
        .collect();
    assert_eq!(l, vec![1]);
    let _ = std::fs::remove_file(cfg);
}

/// Issue 20: `vnic status` shows every port a processor serves: a UDP
/// port, a port added at run time, and a port its backup holds after the
/// primary's processor went down.
#[test]
fn status_ports_show_udp_late_and_backup_ports() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    let cfg = write_config(
        &ns,
        "[adapter]\ntap = \"unused0\"\naddresses = [\"10.0.0.2/24\"]\n\
         host_addresses = [\"10.0.0.1/24\"]\nprocessors = 3\n\
         [[listener]]\nport = 80\napp = \"http\"\nprocessor = 0\nbackup = 2\n\
         [[listener]]\nport = 7\nprotocol = \"udp\"\napp = \"udp-echo\"\nprocessor = 1\n",
    );
    let _vnic = ns.vnic_config(&cfg, &[]);
    ctl_ok(
        &ns,
        &[
            "ctl",
            "listener",
            "add",
            "--port",
            "9000",
            "--processor",
            "1",
            "--app",
            "echo",
        ],
    );
    ctl_ok(&ns, &["ctl", "processor", "0", "down"]);
    let st = ns.status_json();
    let ports: Vec<(serde_json::Value, serde_json::Value)> = st["processors"]
        .as_array()
        .expect("processors")
        .iter()
        .map(|p| (p["ports"].clone(), p["udp_ports"].clone()))
        .collect();
    assert_eq!(
        ports,
        vec![
            (serde_json::json!([]), serde_json::json!([])),
            (serde_json::json!([9000]), serde_json::json!([7])),
            (serde_json::json!([80]), serde_json::json!([])),
        ]
    );
    let text = String::from_utf8_lossy(&ns.vnic_cmd(&["status"]).stdout).into_owned();
    assert!(text.contains("9000,7/udp"), "{text}");
    assert_eq!(gets(&ns, 1), vec![2], "the backup answers port 80");
    let _ = std::fs::remove_file(cfg);
}
