//! What `vnic up` and `vnic replay` build alike: the listeners (filter
//! and services per processor), the TCP settings, and the replay block a
//! trace starts with (`Builder::listeners`, `Builder::tcp_configs`,
//! `Builder::replay_block`); and the builder's replay switches.

use super::*;
use crate::replay::rig::{ReplaySink, Rig, RigSetup};
use crate::replay::script::ScriptedService;
use std::time::{SystemTime, UNIX_EPOCH};
use vnic_adapter::clock::{Clock, VirtualClock};
use vnic_adapter::trace::block::ReplayBlock;
use vnic_listeners::app::AppKind;

/// The filter with its listeners, each processor's TCP services and UDP
/// apps, and every port served.
pub(crate) type Listening = (
    Filter,
    Vec<HashMap<u16, Arc<dyn Service>>>,
    Vec<HashMap<u16, UdpAppKind>>,
    Vec<u16>,
);

impl Builder {
    /// The command line `vnic up` was started with (its flags, without
    /// the program and `up`): written into a trace's replay block, so
    /// `vnic replay` builds the same vnic.
    pub fn command_line(mut self, args: Vec<String>) -> Builder {
        self.command_line = Some(args);
        self
    }

    /// Writes the ISN key and the SYN-cookie secret into the trace's
    /// replay block (`--pcap-secrets`): they are secrets (who has them
    /// can forge cookies and guess sequence numbers), so only on request.
    pub fn pcap_secrets(mut self, on: bool) -> Builder {
        self.pcap_secrets = on;
        self
    }

    /// The filter with every listener registered, each processor's TCP
    /// services and UDP apps, and every port served (sorted).
    pub(crate) fn listeners(
        &mut self,
        n: usize,
        ips: &[IpAddr],
        registry: &Arc<Registry>,
    ) -> Result<Listening, Error> {
        let mut ports: Vec<u16> = self.serve.iter().map(|(p, _)| *p).collect();
        let (filter, tcp_serve, udp_serve) = match self.layout.take() {
            // Listeners as the layout places them, already registered.
            Some(l) => {
                for m in &l.tcp {
                    ports.extend(m.keys());
                }
                (l.filter, l.tcp, l.udp)
            }
            // Every processor serves every port.
            None => {
                let mut f = Filter::new(self.filter, n);
                f.set_addresses(ips.to_vec());
                // The hybrid model's distributor (processor 0) is the only
                // listener: the others inherit its connections.
                let listeners = match self.model {
                    Model::Hybrid { .. } | Model::Standard => 1,
                    _ => n,
                };
                for (port, _) in &self.serve {
                    for p in 0..listeners {
                        f.register(*port, p)?;
                    }
                }
                let all: HashMap<u16, Arc<dyn Service>> = self.serve.iter().cloned().collect();
                let mut tcp = vec![all; n];
                if let Model::Broker { base, balance } = self.model {
                    let own = self.broker_ports(base, n)?;
                    for ((port, svc), own) in self.serve.iter().zip(own) {
                        let broker: Arc<dyn Service> = Arc::new(Broker::new(
                            svc.name(),
                            own.clone(),
                            balance,
                            registry.clone(),
                        ));
                        for (k, &p) in own.iter().enumerate() {
                            f.register(p, k)?;
                            tcp[k].insert(*port, broker.clone());
                            tcp[k].insert(p, svc.clone());
                            ports.push(p);
                        }
                    }
                }
                (f, tcp, vec![HashMap::new(); n])
            }
        };
        ports.sort_unstable();
        ports.dedup();
        Ok((filter, tcp_serve, udp_serve, ports))
    }

    /// The processors' TCP settings (`cfg` gives the MTU) and those of the
    /// ports with their own congestion control.
    pub(crate) fn tcp_configs(&self, cfg: &AdapterConfig) -> (TcpConfig, HashMap<u16, TcpConfig>) {
        let mut tcp = TcpConfig {
            mtu: cfg.mtu,
            time_wait: self.time_wait,
            idle_timeout: self.idle_timeout,
            zero_window_timeout: self.zero_window_timeout,
            congestion: self.congestion,
            ..TcpConfig::default()
        };
        self.tcp.apply(&mut tcp);
        let tcp_ports: HashMap<u16, TcpConfig> = self
            .port_congestion
            .iter()
            .map(|(&port, &congestion)| {
                let cfg = TcpConfig {
                    congestion,
                    ..tcp.clone()
                };
                (port, cfg)
            })
            .collect();
        (tcp, tcp_ports)
    }

    /// The replay block of this vnic's traces: `started` is when the ISN
    /// and cookie clocks started (wall clock), `keys` their keys (written
    /// only with [`Builder::pcap_secrets`]).
    pub(crate) fn replay_block(
        &self,
        cfg: &AdapterConfig,
        tcp: &TcpConfig,
        started: SystemTime,
        keys: ([u8; 16], [u8; 16]),
    ) -> ReplayBlock {
        ReplayBlock {
            version: env!("CARGO_PKG_VERSION").to_string(),
            args: self.command_line.clone(),
            processors: Some(self.processors),
            filter: Some(self.filter.name().to_string()),
            model: Some(self.model.name().to_string()),
            mtu: u16::try_from(cfg.mtu).ok(),
            mac: Some(cfg.mac),
            offload: Some(self.offload),
            syn_backlog: Some(self.syn_backlog),
            tcp: Some(format!("{tcp:?}")),
            impair: self.impair.as_ref().map(ToString::to_string),
            epoch_ns: started
                .duration_since(UNIX_EPOCH)
                .ok()
                .and_then(|d| u64::try_from(d.as_nanos()).ok()),
            isn_key: self.pcap_secrets.then_some(keys.0),
            cookie_secret: self.pcap_secrets.then_some(keys.1),
            other: Vec::new(),
        }
    }
}

impl Builder {
    /// The vnic `vnic replay` runs: what [`Builder::start`] builds (the
    /// adapter's RX queue with its filter, flow table and SYN cookies;
    /// the processors with their services and TCP settings), but without
    /// a TAP, a control socket or threads: every processor reads
    /// `setup.clock`, every frame sent is kept by a sink, and the apps
    /// that need the outside world (proxy, exec, a library user's own)
    /// are scripted from the trace. The monolithic model only.
    pub fn replay_rig(mut self, setup: RigSetup) -> Result<Rig, Error> {
        self.check()?;
        if !matches!(self.model, Model::Monolithic) {
            return Err(Error::Config(format!(
                "replay runs the monolithic model only, not {}",
                self.model.name()
            )));
        }
        if self.pairs {
            return Err(Error::Config(
                "replay does not run process pairs (--pairs)".into(),
            ));
        }
        let n = self.processors;
        let ips: Vec<IpAddr> = self.ips.iter().map(|(ip, _)| *ip).collect();
        let mtu = self.mtu.or(setup.mtu).unwrap_or(1500);
        let mut cfg = AdapterConfig::new(&self.tap, &ips, mtu);
        if let Some(mac) = self.mac.or(setup.mac) {
            cfg.mac = mac;
        }
        let (tcp, tcp_ports) = self.tcp_configs(&cfg);
        let base = setup.clock.base();
        let isn = Arc::new(IsnGenerator::scripted(setup.isn_key, base, setup.isns));
        let cookies = Arc::new(SynCookies::new(setup.cookie_secret, base));
        let counters = Arc::new(Counters::with_rx_queues(n, 1));
        let registry = Arc::new(Registry::new(self.model.name(), self.filter.name(), n));
        let (mut filter, tcp_serve, udp_serve, _) = self.listeners(n, &ips, &registry)?;
        {
            // Least-connections reads what `Builder::start` has it read.
            let counters = counters.clone();
            filter.set_loads(Loads::new(move |k| {
                counters.placed.get(k).map_or(0, Counters::get)
            }));
        }
        let filter = Arc::new(Mutex::new(filter));
        let (closed_tx, closed_rx) = crossbeam_channel::unbounded();
        let (queues, inboxes) = super::processor_queues(n)?;
        let checkpoint_queues: Vec<_> = inboxes.iter().map(Inbox::checkpoints).collect();
        let pairs = Arc::new(Pairs::none());
        let mut sinks = Vec::with_capacity(n + 1);
        let mut scripted = Vec::new();
        let mut nodelay = HashMap::new();
        let mut processors = Vec::with_capacity(n);
        let mut clocks = Vec::with_capacity(n);
        for (id, ((inbox, serve), udp_serve)) in inboxes
            .into_iter()
            .zip(tcp_serve)
            .zip(udp_serve)
            .enumerate()
        {
            // Each processor its own clock, as each its own thread.
            let own = Arc::new(VirtualClock::new(base));
            clocks.push(own.clone());
            let clock = Clock::Virtual(own);
            let sink = Arc::new(ReplaySink::new(Origin::Processor(id), setup.offload));
            sinks.push(sink.clone());
            let mut out = FrameWriter::new(sink, cfg.mac, counters.clone());
            out.set_sender(id);
            let serve = serve
                .into_iter()
                .map(|(port, svc)| {
                    nodelay.insert(port, !nagle(&*svc));
                    if svc.builtin().is_some() {
                        return (port, svc);
                    }
                    // Its bytes come from the world outside: the trace's.
                    if !scripted.iter().any(|(p, _)| *p == port) {
                        scripted.push((port, svc.name().to_string()));
                    }
                    let s: Arc<dyn Service> = Arc::new(ScriptedService::new(
                        svc.name(),
                        nagle(&*svc),
                        setup.scripts.clone(),
                        clock.clone(),
                        base,
                    ));
                    (port, s)
                })
                .collect();
            let mut p = Processor::new(ProcessorSetup {
                id,
                queue: inbox,
                closed: vec![closed_tx.clone()],
                peers: queues.clone(),
                pairs: pairs.clone(),
                checkpoint_queues: checkpoint_queues.clone(),
                hand_off: None,
                out,
                tracer: Tracer::disabled(),
                max_connections: (MAX_CONNECTIONS / n).max(1024),
                adapter_counters: counters.clone(),
                memory_budget: self.memory_budget / n,
                direct: None,
                slow: None,
                serve,
                udp_serve,
                tcp_config: tcp.clone(),
                tcp_ports: tcp_ports.clone(),
                isn: isn.clone(),
                registry: registry.clone(),
                apps: AppSource::Local,
            });
            p.set_clock(clock);
            processors.push(p);
        }
        let adapter_sink = Arc::new(ReplaySink::new(Origin::Adapter, setup.offload));
        sinks.push(adapter_sink.clone());
        let out = FrameWriter::new(adapter_sink, cfg.mac, counters.clone());
        let mut rx = RxQueue::new(cfg, filter.clone(), queues, closed_rx, out, counters);
        rx.set_syn_cookies(cookies, self.syn_backlog, &tcp);
        rx.set_rx_queue(0, 1);
        scripted.sort();
        Ok(Rig {
            rx,
            filter,
            processors,
            sinks,
            tcp,
            scripted,
            nodelay,
            clocks,
        })
    }
}

/// Whether the apps of `svc` leave Nagle on (`App::nagle`): the
/// request/response apps and a relay turn it off, the streams and
/// programs keep it.
fn nagle(svc: &dyn Service) -> bool {
    match svc.builtin() {
        Some(AppKind::Echo | AppKind::Http) => false,
        Some(AppKind::Discard | AppKind::Chargen) => true,
        None => svc.name() != "proxy",
    }
}
