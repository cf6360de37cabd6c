//! Ethernet failover in the builder: more links than the first TAP
//! (`--tap A --tap B`), `--failback`, `--link-ip NAME=ADDR`, their checks,
//! and opening the other links' TAPs into one [`Links`].

use super::*;
use std::net::Ipv4Addr;
use vnic_adapter::link::{LinkSpec, Links};

impl Builder {
    /// Adds a link: another TAP, an emulated port of the same adapter
    /// with its own MAC, standing by while the first works and taking
    /// over when the active link fails (Ethernet failover). The first
    /// link is the one given to [`Builder::new`].
    pub fn link(mut self, tap: impl Into<String>) -> Builder {
        self.more_taps.push(tap.into());
        self
    }

    /// With several links: when the first link returns after a failure,
    /// it takes over again (without it, it stands by).
    pub fn failback(mut self, on: bool) -> Builder {
        self.failback = on;
        self
    }

    /// Link `tap`'s reserved address: answered on that link only, from
    /// its MAC, and the source of vnic's ARP announcement on that link
    /// (NonStop keeps one per link so that peers' ARP entries stay right).
    pub fn link_ip(mut self, tap: impl Into<String>, ip: Ipv4Addr) -> Builder {
        self.link_ips.push((tap.into(), ip));
        self
    }

    /// Every link's TAP name, the first first.
    pub(super) fn tap_names(&self) -> Vec<String> {
        std::iter::once(self.tap.clone())
            .chain(self.more_taps.iter().cloned())
            .collect()
    }

    /// The checks of the links, before anything is opened.
    pub(super) fn check_links(&self) -> Result<(), Error> {
        let names = self.tap_names();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(Error::Config(format!("--tap {n} is given twice")));
            }
        }
        for (i, (name, ip)) in self.link_ips.iter().enumerate() {
            if !names.contains(name) {
                return Err(Error::Config(format!(
                    "--link-ip {name}={ip}: {name} is not one of the --tap links"
                )));
            }
            if self.link_ips[..i].iter().any(|(n, _)| n == name) {
                return Err(Error::Config(format!(
                    "--link-ip {name}: one reserved address per link"
                )));
            }
            if self.ips.iter().any(|(v, _)| *v == IpAddr::V4(*ip)) {
                return Err(Error::Config(format!(
                    "--link-ip {name}={ip}: {ip} is a virtual --ip; a link's reserved address \
                     is its own"
                )));
            }
        }
        if self.more_taps.is_empty() {
            if self.failback {
                return Err(Error::Config(
                    "--failback needs several links (--tap A --tap B)".into(),
                ));
            }
            return Ok(());
        }
        if self.processor_queues == ProcessorQueues::On {
            return Err(Error::Config(
                "--processor-queues on and several --tap links do not go together: a \
                 processor's queue is one TAP's, and its connections' frames come in on \
                 another after a failover"
                    .into(),
            ));
        }
        Ok(())
    }

    /// With several links: opens the other TAPs (`first` is the first
    /// link's queues, open already) with the same offload and RX queues,
    /// and makes them one [`Links`], the first active. None with one link.
    pub(super) fn open_links(
        &self,
        first: &[Arc<TapDevice>],
        cfg: &mut AdapterConfig,
    ) -> Result<Option<Arc<Links>>, Error> {
        if self.more_taps.is_empty() {
            return Ok(None);
        }
        let link_ip = |name: &str| {
            self.link_ips
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, ip)| *ip)
        };
        let first_name = first
            .first()
            .map_or_else(|| self.tap.clone(), |t| t.name().to_string());
        let mut specs = vec![LinkSpec {
            link_ip: link_ip(&self.tap),
            name: first_name,
            mac: cfg.mac,
            queues: first.to_vec(),
        }];
        for name in &self.more_taps {
            let queues = TapDevice::open_queues(name, self.offload, self.rx_queues)?;
            let name = queues
                .first()
                .map_or_else(|| name.clone(), |t| t.name().to_string());
            specs.push(LinkSpec {
                link_ip: link_ip(&name),
                mac: vnic_adapter::config::default_mac(&name),
                name,
                queues: queues.into_iter().map(Arc::new).collect(),
            });
        }
        cfg.link_macs = specs.iter().map(|s| s.mac).collect();
        Ok(Some(Links::new(
            specs,
            cfg,
            self.offload,
            self.rx_queues,
            self.failback,
        )))
    }
}
