//! The filter's registration settings and listener bookkeeping beside the
//! rules in [`super::Filter`]: each filter key's shared port ranges,
//! `PORT-SHARE-ENABLE`, what app a processor runs for a port, which ports
//! a processor serves, and which listeners may take a connection instead
//! of the one picked.

use super::{Exclusive, FilterKey, ListenerSpec, PortRanges, Protocol, RegisterError};
use super::{Filter, LineKey, Listener, Pick};
use std::net::IpAddr;

/// One filter key's shared ports (the NonStop `=PTCPIP^FILTER^TCP^PORTS`
/// and `UDP^PORTS` DEFINEs a process sets beside its key); `None`: every
/// port of that protocol.
#[derive(Clone, Debug, Default)]
pub(super) struct SharedPorts {
    tcp: Option<PortRanges>,
    udp: Option<PortRanges>,
}

impl Filter {
    /// Limits the ports of `protocol` that listeners presenting `key` may
    /// share to `ranges` (`None`: every port, the manual's default when
    /// only the key is defined). Each key has its own ranges, as each
    /// NonStop process has its own DEFINEs; applies to later registrations.
    pub fn set_shared_ports(
        &mut self,
        key: &FilterKey,
        protocol: Protocol,
        ranges: Option<PortRanges>,
    ) {
        let entry = self.shared.entry(key.clone()).or_default();
        match protocol {
            Protocol::Tcp => entry.tcp = ranges,
            Protocol::Udp => entry.udp = ranges,
        }
    }

    /// The ports of `protocol` that listeners presenting `key` may share
    /// (`None`: every port).
    pub fn shared_ports(&self, key: &FilterKey, protocol: Protocol) -> Option<&PortRanges> {
        let s = self.shared.get(key)?;
        match protocol {
            Protocol::Tcp => s.tcp.as_ref(),
            Protocol::Udp => s.udp.as_ref(),
        }
    }

    /// The manual's `PORT-SHARE-ENABLE`: on, listeners of one port bound
    /// to different addresses never conflict; off (the default), the
    /// second of them is refused unless the sharing rules (round-robin, one
    /// filter key, its shared ranges) let it share. Applies to later
    /// registrations.
    pub fn set_port_share(&mut self, on: bool) {
        self.port_share = on;
    }

    /// True if port sharing on different addresses is on.
    pub fn port_share(&self) -> bool {
        self.port_share
    }

    /// Why `spec` may not share with `competing` (the listeners of its port
    /// it competes with, at least one), or `None` if it may: round-robin
    /// filtering on, a key on every side and the same one, the port in that
    /// key's shared ranges.
    pub(super) fn sharing_refusal(
        &self,
        spec: &ListenerSpec,
        competing: &[&Listener],
    ) -> Option<RegisterError> {
        let (protocol, port, processor) = (spec.protocol, spec.port, spec.processor);
        let holder = competing.first()?.spec.processor;
        let in_use = |holder, reason| RegisterError::PortInUse {
            protocol,
            port,
            processor,
            holder,
            reason,
        };
        if !self.mode.shares() {
            return Some(in_use(holder, Exclusive::FilteringOff));
        }
        if let Some(keyless) = competing.iter().find(|l| l.spec.key.is_none()) {
            return Some(in_use(keyless.spec.processor, Exclusive::HolderHasNoKey));
        }
        let Some(key) = &spec.key else {
            return Some(in_use(holder, Exclusive::NewcomerHasNoKey));
        };
        if competing.iter().any(|l| l.spec.key.as_ref() != Some(key)) {
            return Some(RegisterError::FilterKeyMismatch {
                protocol,
                port,
                processor,
            });
        }
        match self.shared_ports(key, protocol) {
            Some(ranges) if !ranges.contains(port) => Some(RegisterError::NotShared {
                protocol,
                port,
                processor,
                holder,
                ranges: ranges.to_string(),
            }),
            _ => None,
        }
    }

    /// The app label `processor` runs for (`protocol`, `port`): that of
    /// its own listener there (as primary), else that of the first
    /// registered listener it is the backup of; `None` if neither. What
    /// `vnic ctl listener add|remove` tells the processors, so that a
    /// backup never replaces the app a processor listens with, and a
    /// removal never stops another listener's app.
    pub fn app_at(&self, protocol: Protocol, port: u16, processor: usize) -> Option<&str> {
        let of_port = || {
            self.listeners
                .values()
                .filter(move |l| l.spec.protocol == protocol && l.spec.port == port)
        };
        of_port()
            .find(|l| l.spec.processor == processor)
            .or_else(|| of_port().find(|l| l.spec.backup == Some(processor)))
            .map(|l| l.spec.app.as_str())
    }

    /// Every port `processor` serves, TCP then UDP, each ascending: those
    /// of the listeners it listens for now (its own, and those it holds as
    /// a backup), and those of its own listeners nobody listens for (its
    /// processor is down and no backup took them: it still holds them).
    /// The `ports` column of `vnic status`.
    pub fn ports_of(&self, processor: usize) -> Vec<(Protocol, u16)> {
        let mut v: Vec<(Protocol, u16)> = self
            .listeners
            .values()
            .filter(|l| l.serving.unwrap_or(l.spec.processor) == processor)
            .map(|l| (l.spec.protocol, l.spec.port))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The processors that may take a connection to `dst`:`port` instead
    /// of `pick` when its processor cannot (its queue is full): the other
    /// live listeners of the line `pick` came from, in line order after
    /// it, then, when that line is bound to `dst`, the live wildcard
    /// listeners. Never a listener bound to another address: it does not
    /// serve `dst`.
    pub fn fallbacks(&self, protocol: Protocol, dst: IpAddr, port: u16, pick: &Pick) -> Vec<usize> {
        let key = |address| LineKey {
            protocol,
            port,
            address,
        };
        let mut out: Vec<usize> = Vec::new();
        let mut add = |p: usize| {
            if p != pick.processor && !out.contains(&p) {
                out.push(p);
            }
        };
        let bound = self.lines.get(&key(Some(dst)));
        let from_bound = bound.is_some_and(|l| l.members.iter().any(|m| m.id == pick.listener));
        let picked_line = if from_bound {
            bound
        } else {
            self.lines.get(&key(None))
        };
        if let Some(line) = picked_line {
            let n = line.members.len();
            let at = line
                .members
                .iter()
                .position(|m| m.id == pick.listener)
                .unwrap_or(0);
            for i in 1..n {
                if let Some(p) = line.members[(at + i) % n].serving {
                    add(p);
                }
            }
        }
        if from_bound {
            if let Some(line) = self.lines.get(&key(None)) {
                line.members.iter().filter_map(|m| m.serving).for_each(add);
            }
        }
        debug_assert!(out.iter().all(|p| self.is_up(*p)));
        out
    }
}
