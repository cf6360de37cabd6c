//! `vnic ctl listener add|remove` against the real [`Runtime`], with
//! processor queues whose messages the test reads: what each processor is
//! told to serve must follow what the filter accepted, nothing more.

use super::protocol::Request;
use super::tests::runtime;
use super::*;
use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use std::sync::Arc;
use vnic_adapter::filter::{FilterKey, ListenerSpec, Protocol};
use vnic_adapter::queue::{BellSender, Doorbell, ToProcessor};
use vnic_adapter::{Filter, FilterMode};

/// A runtime of `n` processors, round-robin, and the receiving end of each
/// processor's queue.
fn runtime_with_queues(n: usize) -> (Runtime, Vec<Receiver<ToProcessor>>) {
    let mut rt = runtime(None);
    rt.filter = Arc::new(Mutex::new(Filter::new(FilterMode::RoundRobin, n)));
    rt.registry = Arc::new(crate::stats::Registry::new("monolithic", "round-robin", n));
    rt.counters = Arc::new(vnic_adapter::Counters::new(n));
    let mut rxs = Vec::new();
    rt.queues = (0..n)
        .map(|_| {
            let (tx, rx) = crossbeam_channel::bounded(64);
            rxs.push(rx);
            BellSender::new(tx, Arc::new(Doorbell::silent()))
        })
        .collect();
    (rt, rxs)
}

/// What the processor was told to serve, as (port, app) in order.
fn serves(rx: &Receiver<ToProcessor>) -> Vec<(u16, Option<String>)> {
    rx.try_iter()
        .filter_map(|m| match m {
            ToProcessor::Serve { port, app, .. } => Some((port, app)),
            _ => None,
        })
        .collect()
}

fn spec(port: u16, processor: usize, backup: Option<usize>, app: &str) -> ListenerSpec {
    ListenerSpec {
        protocol: Protocol::Tcp,
        port,
        processor,
        backup,
        address: None,
        key: FilterKey::new("k1").ok(),
        app: app.into(),
    }
}

fn add(port: u16, processor: usize, backup: Option<usize>, app: &str) -> Request {
    Request::ListenerAdd {
        protocol: "tcp".into(),
        port,
        processor,
        app: app.into(),
        backup,
        address: None,
        key: Some("k1".into()),
    }
}

#[test]
fn a_refused_listener_add_changes_no_processors_app() {
    let (rt, rxs) = runtime_with_queues(3);
    rt.filter
        .lock()
        .add_listener(spec(80, 1, None, "echo"))
        .expect("echo on 1");
    // Processor 1 already listens on 80: one listener per processor per port.
    let r = rt.handle(add(80, 1, Some(2), "http"));
    assert!(!r.ok, "{r:?}");
    assert_eq!(serves(&rxs[1]), vec![], "processor 1 keeps its echo");
    assert_eq!(serves(&rxs[2]), vec![], "the backup learns nothing");
    assert_eq!(rt.filter.lock().listing().len(), 1);
    // Accepted: the primary learns its app, and so does a backup with no
    // listener of its own on the port.
    let r = rt.handle(add(80, 0, Some(2), "http"));
    assert!(r.ok, "{r:?}");
    assert_eq!(serves(&rxs[0]), vec![(80, Some("http".into()))]);
    assert_eq!(serves(&rxs[2]), vec![(80, Some("http".into()))]);
}

#[test]
fn an_accepted_backup_does_not_replace_the_app_its_processor_listens_with() {
    let (rt, rxs) = runtime_with_queues(2);
    rt.filter
        .lock()
        .add_listener(spec(80, 1, None, "echo"))
        .expect("echo on 1");
    let r = rt.handle(add(80, 0, Some(1), "http"));
    assert!(r.ok, "{r:?}");
    assert_eq!(serves(&rxs[0]), vec![(80, Some("http".into()))]);
    assert_eq!(serves(&rxs[1]), vec![], "processor 1 listens with echo");
}

#[test]
fn listener_remove_leaves_the_backups_own_listener_serving() {
    let (rt, rxs) = runtime_with_queues(2);
    {
        let mut f = rt.filter.lock();
        f.add_listener(spec(80, 0, Some(1), "echo")).expect("a");
        f.add_listener(spec(80, 1, None, "echo")).expect("b");
    }
    let r = rt.handle(Request::ListenerRemove {
        protocol: "tcp".into(),
        port: 80,
        processor: 0,
    });
    assert!(r.ok, "{r:?}");
    assert_eq!(serves(&rxs[0]), vec![(80, None)], "processor 0 stops");
    assert_eq!(
        serves(&rxs[1]),
        vec![],
        "processor 1's own listener of port 80 keeps serving"
    );
    let left = rt.filter.lock().listing();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].processor, 1);
}

#[test]
fn status_ports_show_late_backup_and_udp_listeners() {
    let (rt, _rxs) = runtime_with_queues(3);
    {
        let mut f = rt.filter.lock();
        f.register(80, 0).expect("group");
        f.register(80, 1).expect("group");
        f.register(80, 2).expect("group");
    }
    assert!(
        rt.handle(add(8080, 0, Some(2), "echo")).ok,
        "late, with a backup"
    );
    let r = rt.handle(Request::ListenerAdd {
        protocol: "udp".into(),
        port: 7,
        processor: 1,
        app: "udp-echo".into(),
        backup: None,
        address: None,
        key: None,
    });
    assert!(r.ok, "{r:?}");
    let ports = |rt: &Runtime| -> Vec<(Vec<u16>, Vec<u16>)> {
        rt.status()
            .processors
            .iter()
            .map(|p| (p.ports.clone(), p.udp_ports.clone()))
            .collect()
    };
    assert_eq!(
        ports(&rt),
        vec![
            (vec![80, 8080], vec![]),
            (vec![80], vec![7]),
            (vec![80], vec![]),
        ]
    );
    assert!(
        rt.handle(Request::Processor {
            id: 0,
            state: "down".into()
        })
        .ok
    );
    assert_eq!(
        ports(&rt)[2],
        (vec![80, 8080], vec![]),
        "processor 2 holds 8080 as the backup"
    );
}
