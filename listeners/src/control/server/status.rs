//! The whole status (`vnic status`): every processor's counters and state,
//! the listeners, the services, the adapter, the trace, the impairment.

use super::*;

impl Runtime {
    /// The whole status.
    pub fn status(&self) -> Status {
        let filter = self.filter.lock().clone();
        let snap = self.registry.snapshot();
        let processors = snap
            .iter()
            .map(|p| {
                let stats = &self.registry.processors[p.id];
                let failure = stats.failure.lock().clone();
                let serves = filter.ports_of(p.id);
                ProcessorStatus {
                    id: p.id,
                    failure: failure.clone(),
                    state: if failure.is_some() {
                        "failed".into()
                    } else if stats.down.load(Ordering::Relaxed) {
                        "down".into()
                    } else {
                        "up".into()
                    },
                    ports: port_list(&serves, Protocol::Tcp),
                    udp_ports: port_list(&serves, Protocol::Udp),
                    active: p.active,
                    time_wait: stats.time_wait.load(Ordering::Relaxed),
                    accepted: p.accepted,
                    bytes_in: p.bytes_in,
                    bytes_out: p.bytes_out,
                    queue_depth: self.queues.get(p.id).map_or(0, |q| q.len()),
                    queue_drops: self.counters.queue_full.get(p.id).map_or(0, Counters::get),
                    retransmissions: stats.retransmissions.load(Ordering::Relaxed),
                    panics: stats.panics.load(Ordering::Relaxed),
                    refused: stats.refused.load(Ordering::Relaxed),
                    datagrams: stats.datagrams.load(Ordering::Relaxed),
                    // One count, kept where the RX threads read it to
                    // decide on SYN cookies.
                    half_open: self.counters.half_open.get(p.id).map_or(0, Counters::get),
                    replies_limited: stats.replies_limited.load(Ordering::Relaxed),
                    send_limited: stats.send_limited.load(Ordering::Relaxed),
                    queue_bytes: self.queues.get(p.id).map_or(0, |q| q.bytes().held() as u64),
                    queue_bytes_drops: self
                        .counters
                        .queue_bytes_full
                        .get(p.id)
                        .map_or(0, Counters::get),
                    memory: stats.memory.load(Ordering::Relaxed),
                    memory_budget: stats.memory_budget.load(Ordering::Relaxed),
                    memory_refused: stats.memory_refused.load(Ordering::Relaxed),
                    memory_resets: stats.memory_resets.load(Ordering::Relaxed),
                    idle_resets: stats.idle_resets.load(Ordering::Relaxed),
                    zero_window_resets: stats.zero_window_resets.load(Ordering::Relaxed),
                    frames_in: stats.frames_in.load(Ordering::Relaxed),
                    frames_out: self.counters.frames_out_of(p.id),
                    moved_in: stats.moved_in.load(Ordering::Relaxed),
                    moved_out: stats.moved_out.load(Ordering::Relaxed),
                    migration_resets: stats.migration_resets.load(Ordering::Relaxed),
                    forwarded: stats.forwarded.load(Ordering::Relaxed),
                    forwarded_bytes: stats.forwarded_bytes.load(Ordering::Relaxed),
                    forward_drops: stats.forward_drops.load(Ordering::Relaxed),
                    hand_off_local: stats.hand_off_local.load(Ordering::Relaxed),
                    checkpoints: stats.checkpoints.load(Ordering::Relaxed),
                    checkpoint_bytes: stats.checkpoint_bytes.load(Ordering::Relaxed),
                    checkpoint_waits: stats.checkpoint_waits.load(Ordering::Relaxed),
                    checkpoint_gaps: stats.checkpoint_gaps.load(Ordering::Relaxed),
                    checkpoint_lag_us: stats.checkpoint_lag_us.load(Ordering::Relaxed),
                    checkpoint_lag_max_us: stats.checkpoint_lag_max_us.load(Ordering::Relaxed),
                    standby: stats.standby.load(Ordering::Relaxed),
                    takeovers: stats.takeovers.load(Ordering::Relaxed),
                    takeover_resets: stats.takeover_resets.load(Ordering::Relaxed),
                    restarts: stats.restarts.load(Ordering::Relaxed),
                    restart: stats.restart.lock().clone().filter(|_| failure.is_some()),
                    resyncs: stats.resyncs.load(Ordering::Relaxed),
                    resync_checkpoints: stats.resync_checkpoints.load(Ordering::Relaxed),
                    handed_over: stats.handed_over.load(Ordering::Relaxed),
                }
            })
            .collect();
        let c = &self.counters;
        let adapter = AdapterStatus {
            frames_in: c.frames_in(),
            frames_out: c.frames_out(),
            tx_errors: c.tx_errors(),
            not_for_us: Counters::get(&c.not_for_us),
            arp_replies: Counters::get(&c.arp_replies),
            ndp_adverts: Counters::get(&c.ndp_adverts),
            icmp_echo_replies: Counters::get(&c.echo_replies),
            icmp_port_unreachable: Counters::get(&c.port_unreachable),
            rst_sent: Counters::get(&c.rst_sent),
            tcp_dispatched: c.tcp_dispatched(),
            flows: c.flows(),
            syn_cookies_sent: c.syn_cookies_sent(),
            syn_cookies_accepted: Counters::get(&c.syn_cookies_accepted),
            rx_queues: c.rx_queue_frames(),
            processor_queues: self.flow_map.is_some(),
            steered_flows: self.flow_map.as_ref().map_or(0, |m| m.len() as u64),
            handed_back: Counters::get(&c.handed_back),
            handed_back_drops: Counters::get(&c.handed_back_drops),
            drops: c
                .drops()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        };
        let reset = self.registry.reset_time();
        Status {
            tap: self.tap.clone(),
            model: self.registry.model.clone(),
            filter: filter.mode().name().to_string(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            reset_time: crate::stats::rfc3339(reset.wall),
            sample_time: crate::stats::rfc3339(std::time::SystemTime::now()),
            since_reset_secs: reset.mono.elapsed().as_secs_f64(),
            processors,
            listeners: filter
                .listing()
                .into_iter()
                .map(|l| ListenerStatus {
                    id: l.id.0,
                    protocol: l.protocol.name().to_string(),
                    port: l.port,
                    address: l.address.map(|a| a.to_string()),
                    processor: l.processor,
                    backup: l.backup,
                    serving: l.serving,
                    key: l.key,
                    app: l.app,
                    state: l.state.name().to_string(),
                })
                .collect(),
            port_filters: filter
                .port_modes()
                .into_iter()
                .filter(|(_, _, m)| *m != filter.mode())
                .map(|(protocol, port, m)| PortFilter {
                    protocol: protocol.name().to_string(),
                    port,
                    filter: m.name().to_string(),
                })
                .collect(),
            backends: self.registry.backend_snapshot(),
            services: self.registry.service_status(),
            adapter,
            trace: self.trace.as_ref().map(|t| t.status()).unwrap_or_default(),
            impair: self.impair_status(),
            pairs: self.pair_status(),
            tcp: Some(self.tcp.clone()),
            links: self.links.as_ref().map(|l| l.status().into()),
        }
    }
}

impl Runtime {
    /// Each process pair with its primary's and backup's counters.
    fn pair_status(&self) -> Vec<PairStatus> {
        let get = |k: usize| self.registry.processors.get(k);
        let load =
            |k: usize, f: fn(&crate::stats::ProcessorStats) -> &std::sync::atomic::AtomicU64| {
                get(k).map_or(0, |p| f(p).load(Ordering::Relaxed))
            };
        self.pairs
            .list()
            .into_iter()
            .map(|(primary, port, backup)| PairStatus {
                primary,
                port,
                backup,
                checkpoints: load(primary, |p| &p.checkpoints),
                checkpoint_bytes: load(primary, |p| &p.checkpoint_bytes),
                standby: load(backup, |p| &p.standby),
                lag_us: load(backup, |p| &p.checkpoint_lag_us),
                max_lag_us: load(backup, |p| &p.checkpoint_lag_max_us),
                takeovers: load(backup, |p| &p.takeovers),
                takeover_resets: load(backup, |p| &p.takeover_resets),
                resyncs: load(backup, |p| &p.resyncs),
                resync_checkpoints: load(primary, |p| &p.resync_checkpoints),
            })
            .collect()
    }
}

/// The ports of `protocol` in a processor's (protocol, port) list.
fn port_list(serves: &[(Protocol, u16)], protocol: Protocol) -> Vec<u16> {
    serves
        .iter()
        .filter(|(p, _)| *p == protocol)
        .map(|(_, port)| *port)
        .collect()
}
