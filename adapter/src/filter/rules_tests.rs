//! The manual's registration rules added after the first ones (issue 20):
//! `PORT-SHARE-ENABLE`, shared port ranges per filter key, and the
//! bookkeeping the control socket, `vnic status` and SYN cookies read.

use super::tests::{bound, key, picks_for, spec, tcp, with_backup};
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn ranges(items: &[&str]) -> Option<PortRanges> {
    Some(PortRanges::parse(items.iter().copied()).expect("ranges"))
}

// ---- PORT-SHARE-ENABLE ----

#[test]
fn port_share_is_off_by_default_as_in_the_manual() {
    assert!(!Filter::new(FilterMode::RoundRobin, 2).port_share());
}

#[test]
fn port_share_off_refuses_the_same_port_on_another_address() {
    let mut f = Filter::new(FilterMode::None, 4);
    f.add_listener(bound(tcp(80, 0, None), "10.0.0.2"))
        .expect("first");
    let e = f
        .add_listener(bound(tcp(80, 1, None), "10.0.0.3"))
        .expect_err("port share off");
    assert_eq!(
        e,
        RegisterError::PortInUse {
            protocol: Protocol::Tcp,
            port: 80,
            processor: 1,
            holder: 0,
            reason: Exclusive::OtherAddress,
        }
    );
    assert_eq!(
        e.to_string(),
        "port 80/tcp: in use: the listener on processor 0 has exclusive use of the port (it \
         is bound to another address, and port sharing on different addresses \
         (PORT-SHARE-ENABLE) is off), so processor 1 cannot listen on it"
    );
    // Even with filtering on and keys that do not match.
    let mut f = Filter::new(FilterMode::RoundRobin, 4);
    f.add_listener(bound(tcp(80, 0, Some("web1")), "10.0.0.2"))
        .expect("first");
    let e = f
        .add_listener(bound(tcp(80, 1, Some("web2")), "10.0.0.3"))
        .expect_err("port share off");
    assert!(
        matches!(
            e,
            RegisterError::PortInUse {
                reason: Exclusive::OtherAddress,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(f.listing().len(), 1, "nothing changed");
}

#[test]
fn port_share_on_lets_different_addresses_bind_alone() {
    let mut f = Filter::new(FilterMode::None, 4);
    f.set_port_share(true);
    f.add_listener(bound(tcp(80, 0, None), "10.0.0.2"))
        .expect("a");
    f.add_listener(bound(tcp(80, 1, Some("web2")), "10.0.0.3"))
        .expect("b: another address, no sharing needed");
    let e = f
        .add_listener(bound(tcp(80, 2, None), "10.0.0.3"))
        .expect_err("same address still exclusive");
    assert!(
        matches!(
            e,
            RegisterError::PortInUse {
                reason: Exclusive::FilteringOff,
                holder: 1,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(picks_for(&mut f, Protocol::Tcp, "10.0.0.2", 80, 2), [0, 0]);
    assert_eq!(picks_for(&mut f, Protocol::Tcp, "10.0.0.3", 80, 2), [1, 1]);
}

#[test]
fn port_share_off_still_lets_one_key_share_across_addresses() {
    let mut f = Filter::new(FilterMode::RoundRobin, 4);
    for (p, a) in [(0, "10.0.0.2"), (1, "10.0.0.2"), (2, "10.0.0.3")] {
        f.add_listener(bound(spec(Protocol::Udp, 7, p, Some("echo7")), a))
            .expect("one key shares");
    }
    assert_eq!(
        picks_for(&mut f, Protocol::Udp, "10.0.0.2", 7, 3),
        [0, 1, 0]
    );
    assert_eq!(picks_for(&mut f, Protocol::Udp, "10.0.0.3", 7, 2), [2, 2]);
}

// ---- shared port ranges per filter key ----

#[test]
fn each_key_has_its_own_shared_ports() {
    let mut f = Filter::new(FilterMode::RoundRobin, 4);
    let web = FilterKey::new("web1").expect("k");
    let mail = FilterKey::new("mail1").expect("k");
    f.set_shared_ports(&web, Protocol::Tcp, ranges(&["80", "8000-8099"]));
    f.set_shared_ports(&mail, Protocol::Tcp, ranges(&["25"]));
    assert_eq!(
        f.shared_ports(&web, Protocol::Tcp).map(ToString::to_string),
        Some("80, 8000-8099".into())
    );
    assert_eq!(f.shared_ports(&web, Protocol::Udp), None, "UDP: every port");
    for (port, k, shared) in [
        (8080, "web1", true),
        (25, "web1", false),
        (25, "mail1", true),
        (8080, "mail1", false),
        (8080, "any1", true),
        (25, "any1", true),
    ] {
        let mut g = f.clone();
        g.add_listener(tcp(port, 0, Some(k)))
            .expect("alone is fine");
        let r = g.add_listener(tcp(port, 1, Some(k)));
        assert_eq!(r.is_ok(), shared, "port {port}, key {k}: {r:?}");
        if let Err(e) = r {
            assert!(matches!(e, RegisterError::NotShared { .. }), "{e}");
            assert!(!e.to_string().contains(k), "never print a key: {e}");
        }
    }
}

#[test]
fn a_key_without_ranges_shares_every_port_of_both_protocols() {
    let mut f = Filter::new(FilterMode::RoundRobin, 2);
    f.set_shared_ports(
        &FilterKey::new("web1").expect("k"),
        Protocol::Tcp,
        ranges(&["80"]),
    );
    let k = key("other");
    assert!(f
        .shared_ports(k.as_ref().expect("k"), Protocol::Tcp)
        .is_none());
    f.add_listener(spec(Protocol::Udp, 9, 0, Some("other")))
        .expect("a");
    f.add_listener(spec(Protocol::Udp, 9, 1, Some("other")))
        .expect("b");
}

// ---- listener bookkeeping ----

#[test]
fn app_at_is_the_processors_own_listener_then_the_first_it_backs_up() {
    let mut f = Filter::new(FilterMode::RoundRobin, 3);
    let mut a = with_backup(tcp(80, 0, Some("k")), 2);
    a.app = "http".into();
    let mut b = with_backup(tcp(80, 1, Some("k")), 2);
    b.app = "echo".into();
    f.add_listener(a).expect("a");
    f.add_listener(b).expect("b");
    assert_eq!(f.app_at(Protocol::Tcp, 80, 0), Some("http"));
    assert_eq!(
        f.app_at(Protocol::Tcp, 80, 2),
        Some("http"),
        "first backed up"
    );
    assert_eq!(f.app_at(Protocol::Udp, 80, 0), None);
    let mut c = tcp(80, 2, Some("k"));
    c.app = "chargen".into();
    f.add_listener(c).expect("c");
    assert_eq!(
        f.app_at(Protocol::Tcp, 80, 2),
        Some("chargen"),
        "its own wins"
    );
}

#[test]
fn ports_of_a_processor_include_udp_backups_and_late_listeners() {
    let mut f = Filter::new(FilterMode::RoundRobin, 3);
    f.register(80, 0).expect("group");
    f.register(80, 1).expect("group");
    f.add_listener(spec(Protocol::Udp, 7, 1, None))
        .expect("udp");
    f.add_listener(with_backup(tcp(8080, 0, None), 2))
        .expect("pair");
    f.add_listener(tcp(9000, 2, None)).expect("late");
    let tcp_p = |p| (Protocol::Tcp, p);
    assert_eq!(f.ports_of(0), [tcp_p(80), tcp_p(8080)]);
    assert_eq!(f.ports_of(1), [tcp_p(80), (Protocol::Udp, 7)]);
    assert_eq!(f.ports_of(2), [tcp_p(9000)]);
    f.set_up(0, false);
    assert_eq!(
        f.ports_of(0),
        [tcp_p(80)],
        "down, it still holds the port nobody took"
    );
    assert_eq!(
        f.ports_of(2),
        [tcp_p(8080), tcp_p(9000)],
        "the backup holds 8080"
    );
}

#[test]
fn fallbacks_serve_the_destination_address_only() {
    let mut f = Filter::new(FilterMode::RoundRobin, 5);
    let l = |p, a: Option<&str>| {
        let s = tcp(80, p, Some("k"));
        match a {
            Some(a) => bound(s, a),
            None => s,
        }
    };
    f.add_listener(l(0, Some("10.0.0.2"))).expect("0");
    f.add_listener(l(1, Some("10.0.0.3"))).expect("1");
    f.add_listener(l(2, Some("10.0.0.2"))).expect("2");
    f.add_listener(l(3, None)).expect("3");
    f.add_listener(l(4, Some("10.0.0.2"))).expect("4");
    let dst = ip("10.0.0.2");
    let pick = f.pick_for(Protocol::Tcp, dst, 80).expect("pick");
    assert_eq!(pick.processor, 0);
    assert_eq!(f.fallbacks(Protocol::Tcp, dst, 80, &pick), [2, 4, 3]);
    f.set_up(4, false);
    let pick = f.pick_for(Protocol::Tcp, dst, 80).expect("pick");
    assert_eq!(pick.processor, 2);
    assert_eq!(f.fallbacks(Protocol::Tcp, dst, 80, &pick), [0, 3]);
    // Traffic for an address nobody is bound to: the wildcard line only.
    let other = ip("10.0.0.9");
    let pick = f.pick_for(Protocol::Tcp, other, 80).expect("pick");
    assert_eq!(pick.processor, 3);
    assert!(f.fallbacks(Protocol::Tcp, other, 80, &pick).is_empty());
}
