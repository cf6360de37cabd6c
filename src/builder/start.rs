//! Starting a vnic from its [`Builder`]: the checks, the TAP and its queues,
//! the adapter's RX queues, the processors, the control socket, and the
//! ready line (`Builder::start`, `Builder::open_tap`).

use super::*;

impl Builder {
    /// Checks what cannot run, before anything is opened.
    pub(super) fn check(&self) -> Result<(), Error> {
        if self.ips.is_empty() {
            return Err(Error::Config("at least one virtual IP is needed".into()));
        }
        if !(1..=MAX_PROCESSORS).contains(&self.processors) {
            return Err(Error::Config(format!(
                "processors must be 1 to {MAX_PROCESSORS}, not {}",
                self.processors
            )));
        }
        for (i, (port, _)) in self.serve.iter().enumerate() {
            if self.serve[..i].iter().any(|(p, _)| p == port) {
                return Err(Error::Config(format!("port {port} is served twice")));
            }
        }
        if self.layout.is_some() && !self.serve.is_empty() {
            return Err(Error::Config(
                "a layout and served ports both say what to serve: use one".into(),
            ));
        }
        if matches!(self.model, Model::Standard) && self.layout.is_some() {
            return Err(Error::Config(
                "the standard model has one listener: a layout of listeners does not apply".into(),
            ));
        }
        if matches!(self.model, Model::Hybrid { .. }) {
            if self.processors < 2 {
                return Err(Error::Config(
                    "the hybrid model needs at least two processors: the distributor (0) and a \
                     server"
                        .into(),
                ));
            }
            if self.layout.is_some() {
                return Err(Error::Config(
                    "the hybrid model has one front-end: a layout of listeners does not apply"
                        .into(),
                ));
            }
        }
        if let Model::Broker { base, .. } = self.model {
            if self.layout.is_some() {
                return Err(Error::Config(
                    "the broker model places its own listeners: a layout of listeners does not \
                     apply"
                        .into(),
                ));
            }
            self.broker_ports(base, self.processors)?;
        }
        if self.pairs && self.processors < 2 {
            return Err(Error::Config(
                "--pairs needs at least two processors: a backup runs in another processor".into(),
            ));
        }
        self.check_links()?;
        if self.processor_queues == ProcessorQueues::On && self.impair.is_some() {
            return Err(Error::Config(
                "--processor-queues on and --impair do not go together: the processors' own \
                 queues would bypass the impairment"
                    .into(),
            ));
        }
        if let Some(l) = &self.layout {
            if l.tcp.len() != self.processors || l.udp.len() != self.processors {
                return Err(Error::Config(
                    "the layout must list every processor's services".into(),
                ));
            }
        }
        Ok(())
    }

    /// Starts the vnic: when this returns, frames flow and every
    /// processor serves its ports.
    pub fn start(mut self) -> Result<Running, Error> {
        self.check()?;
        let control_path = self
            .control
            .clone()
            .unwrap_or_else(|| default_path(&self.tap));
        let group = match &self.control_group {
            Some(g) => Some(
                g.gid()
                    .map_err(|e| Error::Config(format!("control group: {e}")))?,
            ),
            None => None,
        };
        // Before the TAP: a second vnic on the same TAP is told so plainly.
        let control = ControlServer::bind(&control_path, group)?;
        let n = self.processors;
        let rss_queues = self.rx_queues.max(1);
        // With processor queues: the kernel's flow table, and the queues
        // after the RX threads' one per processor.
        let (flow_map, mut opened) = self.open_tap(n, rss_queues)?;
        // The processors hand frames back to the RX threads, and wake them.
        let mut hand_back = Vec::new();
        if flow_map.is_some() {
            for t in opened.iter_mut().take(rss_queues) {
                hand_back.push(HandBack::channel(t.rx_waker()?));
            }
        }
        let taps: Vec<Arc<TapDevice>> = opened.into_iter().map(Arc::new).collect();
        let Some(tap) = taps.first().cloned() else {
            return Err(std::io::Error::other("the TAP gave no queue").into());
        };
        let name = tap.name().to_string();
        if !self.host_ips.is_empty() {
            host::configure(&name, &self.host_ips)?;
        }
        let ips: Vec<IpAddr> = self.ips.iter().map(|(ip, _)| *ip).collect();
        let mut cfg = AdapterConfig::new(&name, &ips, self.mtu.unwrap_or_else(|| tap.mtu()));
        if let Some(mac) = self.mac {
            cfg.mac = mac;
        }
        // Several links (Ethernet failover): the others opened alike.
        let links = self.open_links(&taps, &mut cfg)?;
        let counters = Arc::new(Counters::with_rx_queues(n, taps.len()));
        let impair_stats = Arc::new(ImpairStats::default());
        // Every queue can send; frames go out through the first (with
        // several links: the first of the active link).
        let mut sink: Arc<dyn FrameSink> = match &links {
            Some(l) => Arc::new(l.sink()),
            None => tap.clone(),
        };
        let mut sources: Vec<Box<dyn FrameSource>> = match &links {
            // Each RX thread reads its queue of every link: one flow
            // table sees a connection whichever link it comes in on.
            Some(l) => (0..rss_queues)
                .map(|q| Box::new(l.source(q)) as Box<dyn FrameSource>)
                .collect(),
            None => taps
                .iter()
                .take(rss_queues)
                .map(|t| Box::new(t.clone()) as Box<dyn FrameSource>)
                .collect(),
        };
        if let Some(spec) = &self.impair {
            sink = Arc::new(ImpairedSink::new(sink, spec.clone(), impair_stats.clone())?);
            sources = sources
                .into_iter()
                .enumerate()
                .map(|(q, s)| {
                    Box::new(ImpairedSource::new(
                        s,
                        spec.clone(),
                        q,
                        impair_stats.clone(),
                    )) as Box<dyn FrameSource>
                })
                .collect();
        }
        let (tcp, tcp_ports) = self.tcp_configs(&cfg);
        // The ISN and SYN-cookie clocks start now; a trace's replay block
        // says when (and, with --pcap-secrets, their keys).
        let (epoch, isn_key, cookie_secret) = (Instant::now(), random_key(), random_key());
        let block = self.replay_block(&cfg, &tcp, SystemTime::now(), (isn_key, cookie_secret));
        // Tracing sits outside the impairment: it shows what the adapter and
        // the processors saw and sent.
        let tracer = Tracer::start(TraceOptions {
            pcap: self.trace.pcap.clone(),
            pcap_max_mb: self.trace.pcap_max_mb,
            pcap_max_files: self.trace.pcap_max_files,
            snaplen: self
                .trace
                .snaplen
                .map_or(vnic_adapter::trace::SNAPLEN, |n| n as usize),
            lines: self.trace.lines,
            iface: name.clone(),
            mac: cfg.mac,
            pcap_filter: self.trace.filter.clone(),
            section_comment: Some(block.render()),
        })
        .map_err(|e| std::io::Error::new(e.kind(), format!("--pcap: {e}")))?;
        let impaired = self.impair.is_some();
        let traced = |origin: Origin| -> FrameWriter {
            // With several links and no impairment, a sink of its own per
            // writer (it keeps the active device at hand).
            let base: Arc<dyn FrameSink> = match (&links, impaired) {
                (Some(l), false) => Arc::new(l.sink()),
                _ => sink.clone(),
            };
            let mut t = TracingSink::new(base, tracer.clone(), origin);
            // A processor's frames carry its turn (clock reading, segments
            // taken), dated from the ISN and cookie clocks' start.
            if let Origin::Processor(_) = origin {
                t = t.with_turn(Arc::new(TurnStamp::new(epoch)));
            }
            let s: Arc<dyn FrameSink> = Arc::new(t);
            let mut w = FrameWriter::new(s, cfg.mac, counters.clone());
            if let Some(l) = &links {
                w.follow_mac(l.active_mac());
            }
            // Processor K counts its frames in sender slot K; an RX queue's
            // slot is set with its queue (`RxQueue::set_rx_queue`).
            if let Origin::Processor(k) = origin {
                w.set_sender(k);
            }
            w
        };
        let backends = match self.model {
            Model::Distributor { backends, .. } => backends,
            Model::Monolithic | Model::Hybrid { .. } | Model::Standard | Model::Broker { .. } => 0,
        };
        let registry = Arc::new(
            Registry::new(self.model.name(), self.filter.name(), n).with_backends(backends),
        );

        let (filter, tcp_serve, udp_serve, ports) = self.listeners(n, &ips, &registry)?;

        let isn = Arc::new(IsnGenerator::new(isn_key, epoch));
        let cookies = Arc::new(SynCookies::new(cookie_secret, epoch));
        // One report channel per RX queue: a processor tells the thread that
        // placed a connection that it is gone.
        let (closed_tx, closed_rx): (Vec<_>, Vec<_>) = (0..sources.len())
            .map(|_| crossbeam_channel::unbounded())
            .unzip();
        let (queues, inboxes) = super::processor_queues(n)?;
        let socket_queries = inboxes.iter().map(Inbox::socket_queries).collect();
        let mut threads = Vec::with_capacity(n + 1);
        let mut processors = Vec::with_capacity(n);
        // Process pairs: `--pairs` on every port, and the listeners a
        // layout gave a backup on theirs.
        let mut pairs = if self.pairs {
            Pairs::ring(n)
        } else {
            Pairs::none()
        };
        for l in filter.listing() {
            if let (Protocol::Tcp, Some(b)) = (l.protocol, l.backup) {
                pairs.set_port(l.processor, l.port, b);
            }
        }
        let pairs = Arc::new(pairs);
        let checkpoint_queues: Vec<_> = inboxes.iter().map(Inbox::checkpoints).collect();
        let mut filter = filter;
        {
            // Least-connections reads the connections placed on a
            // processor and not gone: one counter, read in one load (see
            // `Counters::placed`).
            let counters = counters.clone();
            filter.set_loads(Loads::new(move |k| {
                counters.placed.get(k).map_or(0, Counters::get)
            }));
        }
        let port_filters: Vec<String> = filter
            .port_modes()
            .into_iter()
            .filter(|(_, _, m)| *m != filter.mode())
            .map(|(proto, port, m)| match proto {
                Protocol::Tcp => format!("{port}:{m}"),
                Protocol::Udp => format!("{port}/udp:{m}"),
            })
            .collect();
        let filter = Arc::new(Mutex::new(filter));
        // The distributor model: processor 0 is the distributor, its apps run
        // at the back-ends.
        let mut backend_ctl = None;
        // The distributor model: every processor is a front-end (a
        // distributor) sharing one dispatcher and its back-ends; each
        // hears its own replies.
        let mut distributors: Vec<Option<DistributorLink>> = match self.model {
            Model::Monolithic | Model::Hybrid { .. } | Model::Standard | Model::Broker { .. } => {
                (0..n).map(|_| None).collect()
            }
            Model::Distributor { backends, balance } => {
                // The back-ends wake each front-end as its frame queue
                // does; `vnic ctl backend` goes to processor 0.
                let mut replies = Vec::with_capacity(n);
                for inbox in &inboxes {
                    let (tx, rx) = crossbeam_channel::unbounded();
                    replies.push((vnic_adapter::BellSender::new(tx, inbox.bell()), rx));
                }
                let bell = inboxes
                    .first()
                    .map(Inbox::bell)
                    .ok_or_else(|| std::io::Error::other("no processor"))?;
                let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
                backend_ctl = Some(vnic_adapter::BellSender::new(ctl_tx, bell));
                let first = replies
                    .first()
                    .map(|(tx, _)| tx.clone())
                    .ok_or_else(|| std::io::Error::other("no processor"))?;
                let mut dispatcher = Dispatcher::start(
                    backends,
                    balance,
                    backend::app_handler(registry.clone()),
                    first,
                    registry.clone(),
                )?;
                for (k, (tx, _)) in replies.iter().enumerate().skip(1) {
                    dispatcher.set_front(k, tx.clone());
                }
                let dispatcher = Arc::new(Mutex::new(dispatcher));
                replies
                    .into_iter()
                    .enumerate()
                    .map(|(k, (_, rx))| {
                        Some(DistributorLink {
                            dispatcher: dispatcher.clone(),
                            replies: rx,
                            // Only processor 0 hears `vnic ctl backend`.
                            ctl: if k == 0 {
                                ctl_rx.clone()
                            } else {
                                crossbeam_channel::never()
                            },
                        })
                    })
                    .collect()
            }
        };
        for (id, ((inbox, serve), udp_serve)) in inboxes
            .into_iter()
            .zip(tcp_serve)
            .zip(udp_serve)
            .enumerate()
        {
            let rotation = filter.clone();
            let flows = flow_map.clone();
            let back = filter.clone();
            // Its backups hear of the failure from the processor itself
            // (`Processor::fail`), which lives on to restart.
            let failed = move |id: usize| {
                // Out of the rotation, as `vnic ctl processor K down` does.
                rotation.lock().set_up(id, false);
                // Its connections' frames go to the RX threads again,
                // which switch them to its backup or answer them with RST.
                if let Some(f) = &flows {
                    f.remove_queue(rss_queues + id);
                }
            };
            let direct = match (&flow_map, taps.get(rss_queues + id)) {
                (Some(m), Some(tap)) => Some(DirectQueue::new(
                    tap.clone(),
                    rss_queues + id,
                    id,
                    cfg.clone(),
                    m.clone(),
                    hand_back.iter().map(|(h, _)| h.clone()).collect(),
                    counters.clone(),
                    tracer.clone(),
                    filter.clone(),
                )),
                _ => None,
            };
            processors.push(Processor::spawn(
                ProcessorSetup {
                    id,
                    queue: inbox,
                    closed: closed_tx.clone(),
                    peers: queues.clone(),
                    pairs: pairs.clone(),
                    checkpoint_queues: checkpoint_queues.clone(),
                    hand_off: match self.model {
                        Model::Hybrid { balance } if id == 0 => Some(HandOff::new(balance, n)),
                        Model::Standard if id == 0 => Some(HandOff::standard(n)),
                        _ => None,
                    },
                    out: traced(Origin::Processor(id)),
                    tracer: tracer.clone(),
                    max_connections: (MAX_CONNECTIONS / n).max(1024),
                    adapter_counters: counters.clone(),
                    memory_budget: self.memory_budget / n,
                    direct,
                    slow: self.slow.get(&id).copied(),
                    serve,
                    udp_serve,
                    tcp_config: tcp.clone(),
                    tcp_ports: tcp_ports.clone(),
                    isn: isn.clone(),
                    registry: registry.clone(),
                    apps: match distributors.get_mut(id).and_then(Option::take) {
                        Some(link) => AppSource::Distributor(link),
                        None => AppSource::Local,
                    },
                },
                Lifecycle {
                    restart: self.restart,
                    on_failure: Box::new(failed),
                    // Back in the rotation; its primaries resync it
                    // themselves when it asks.
                    on_restart: Box::new(move |id| back.lock().set_up(id, true)),
                },
            )?);
        }
        drop(closed_tx);

        // `stop` is asked for (a signal, `Running::stop`); `halt` ends the
        // RX threads, the control socket and the summary once the
        // connections are drained (or at once when the vnic failed).
        let stop = Arc::new(AtomicBool::new(false));
        let halt = Arc::new(AtomicBool::new(false));
        let fatal: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let runtime = Arc::new(Runtime {
            flow_map: flow_map.clone(),
            pairs: pairs.clone(),
            tcp: vnic_listeners::control::TcpStatus::of(&tcp),
            tap: name.clone(),
            started: Instant::now(),
            filter: filter.clone(),
            queues: queues.clone(),
            registry: registry.clone(),
            counters: counters.clone(),
            ports,
            trace: Some(Arc::new(TraceHandle(tracer.clone()))),
            backend_ctl,
            socket_queries,
            impair: self
                .impair
                .as_ref()
                .map(|spec| (spec.to_string(), impair_stats.clone())),
            links: links.clone(),
        });
        if let Some(l) = &links {
            // "Sessions moved" at a takeover: the connections open then.
            let reg = registry.clone();
            l.set_session_count(Box::new(move || {
                reg.processors
                    .iter()
                    .map(|p| p.active.load(std::sync::atomic::Ordering::Relaxed))
                    .sum()
            }));
            // What left by the failed link just before it failed was lost
            // there: every connection resends what is unacknowledged now,
            // not at its retransmission timeout.
            let qs = queues.clone();
            l.set_on_takeover(Box::new(move || {
                for q in &qs {
                    let m = Migration::Resend;
                    let _ = q.try_send(ToProcessor::Migrate(Box::new(m)));
                }
            }));
            threads.push(vnic_adapter::link::monitor::spawn(
                l.clone(),
                tracer.clone(),
                halt.clone(),
            )?);
        }
        let ctl_stop = halt.clone();
        let ctl_thread = std::thread::Builder::new().name("vnic-ctl".into()).spawn({
            let rt = runtime.clone();
            move || control.serve(rt, ctl_stop)
        })?;
        let summary = match self.summary {
            None => None,
            Some(every) => {
                let rt = runtime.clone();
                let s = halt.clone();
                Some(
                    std::thread::Builder::new()
                        .name("vnic-summary".into())
                        .spawn(move || summary::run(&rt, &s, every))?,
                )
            }
        };
        let rx_queues = sources.len();
        let mut handed_back: Vec<_> = hand_back.into_iter().map(|(_, rx)| Some(rx)).collect();
        for (q, (source, closed)) in sources.into_iter().zip(closed_rx).enumerate() {
            let mut adapter = RxQueue::new(
                cfg.clone(),
                filter.clone(),
                queues.clone(),
                closed,
                traced(Origin::Adapter),
                counters.clone(),
            );
            adapter.set_syn_cookies(cookies.clone(), self.syn_backlog, &tcp);
            adapter.set_rx_queue(q, rx_queues);
            adapter.set_pairs(pairs.clone());
            if let Some(m) = &flow_map {
                adapter.set_processor_queues(m.clone(), rx_queues);
            }
            if let Some(rx) = handed_back.get_mut(q).and_then(Option::take) {
                adapter.set_handed_back(rx);
            }
            let thread = if rx_queues == 1 {
                "vnic-rx".to_string()
            } else {
                format!("vnic-rx{q}")
            };
            let rx = RxThread {
                tap: name.clone(),
                halt: halt.clone(),
                fatal: fatal.clone(),
                queues: queues.clone(),
            };
            threads.push(std::thread::Builder::new().name(thread).spawn({
                let tracer = tracer.clone();
                move || rx.run(adapter, source, tracer)
            })?);
        }
        let mut ready = self.ready_line(&name, &ips, rx_queues, &port_filters);
        if links.is_some() {
            ready.push_str(&format!(" links={}", self.tap_names().join(",")));
        }
        Ok(Running {
            ready,
            stop,
            halt,
            fatal,
            drain: self.drain,
            queues,
            processors,
            threads,
            ctl_thread: Some(ctl_thread),
            summary,
            tracer,
            runtime,
        })
    }

    /// Opens the TAP's queues: with processor queues (as asked, or in
    /// `auto` mode when possible) the flow map and `rss_queues` RX queues
    /// plus one per processor, else the RX queues alone.
    pub(super) fn open_tap(
        &mut self,
        n: usize,
        rss_queues: usize,
    ) -> Result<(Option<Arc<FlowMap>>, Vec<TapDevice>), Error> {
        let want = match self.processor_queues {
            ProcessorQueues::Off => false,
            ProcessorQueues::On => true,
            // The impairment sits on the RX threads' reads. With fewer
            // processors than cores an RX thread has a core of its own,
            // and reading and parsing there, beside the processor, is
            // worth more than the hand-off costs: one processor reading
            // its own queue took 5 s of one-byte segments at 50,000 a
            // second with echo round trips on it of up to 1.3 s on 2 busy
            // cores, against 54 ms with the RX thread (tests/abuse.rs).
            // Several links: off, a processor's queue is one TAP's (and
            // `on` is refused by `check_links`).
            // A trace written from the start (`--pcap`): off, so that the
            // trace can be replayed (`vnic replay`): a processor reading
            // its own queue records its frames out of the RX thread's
            // order.
            ProcessorQueues::Auto => {
                self.impair.is_none()
                    && n >= cores()
                    && self.more_taps.is_empty()
                    && self.trace.pcap.is_none()
            }
        };
        if want {
            let tried = FlowMap::create(MAX_CONNECTIONS.max(n * 1024))
                .map_err(|e| AdapterError::Io {
                    tap: self.tap.clone(),
                    source: e,
                })
                .and_then(|m| {
                    let m = Arc::new(m);
                    TapDevice::open_processor_queues(&self.tap, self.offload, rss_queues, n, &m)
                        .map(|q| (m, q))
                });
            match tried {
                Ok((m, q)) => {
                    self.processor_queues_on = true;
                    return Ok((Some(m), q));
                }
                Err(e) if self.processor_queues == ProcessorQueues::On => {
                    return Err(std::io::Error::other(format!(
                        "{e}; --processor-queues on needs BPF (root or CAP_BPF) and a \
                         multi-queue TAP"
                    ))
                    .into());
                }
                Err(e) => {
                    log::info!("processor queues off ({e}): every frame goes through the RX thread")
                }
            }
        }
        Ok((
            None,
            TapDevice::open_queues(&self.tap, self.offload, self.rx_queues)?,
        ))
    }

    /// `vnic: ready tap=NAME ip=ADDR[,ADDR...] processors=N filter=MODE
    /// model=MODEL ...`, the line tests and users wait for.
    pub(super) fn ready_line(
        &self,
        name: &str,
        ips: &[IpAddr],
        rx_queues: usize,
        port_filters: &[String],
    ) -> String {
        let ips: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
        // Ports with a policy of their own (a config file's per-port
        // `filter`), after the fields tests parse.
        let port_filters = if port_filters.is_empty() {
            String::new()
        } else {
            format!(" port-filters={}", port_filters.join(","))
        };
        let slow = self
            .slow
            .iter()
            .map(|(k, d)| format!(" slow-processor={k}={d:?}"))
            .collect::<Vec<_>>()
            .join("");
        let model = match self.model {
            Model::Distributor { backends, balance } => {
                format!(" backends={backends} balance={}", balance.name())
            }
            Model::Hybrid { balance } => format!(" balance={}", balance.name()),
            Model::Broker { base, balance } => {
                format!(" broker-ports={base} balance={}", balance.name())
            }
            Model::Monolithic | Model::Standard => String::new(),
        };
        let impair = self
            .impair
            .as_ref()
            .map(|s| format!(" impair={s}"))
            .unwrap_or_default();
        // Shown only when on: the fields before it stay as tests parse them.
        let offload = if self.offload { " offload=on" } else { "" };
        let rxq = if rx_queues > 1 {
            format!(" rx-queues={rx_queues}")
        } else {
            String::new()
        };
        let own = if self.processor_queues_on {
            " processor-queues=on"
        } else {
            ""
        };
        format!(
            "vnic: ready tap={} ip={} processors={} filter={} model={}{model}{impair}{offload}{rxq}{own}{port_filters}{slow}",
            name,
            ips.join(","),
            self.processors,
            self.filter.name(),
            self.model.name(),
        )
    }
}

impl Builder {
    /// The broker model's own ports: the i-th served port (in the order
    /// served) is served by processor K on `base + i*n + K`. An error when
    /// they pass 65535 or meet a served port.
    pub(super) fn broker_ports(&self, base: u16, n: usize) -> Result<Vec<Vec<u16>>, Error> {
        let served: Vec<u16> = self.serve.iter().map(|(p, _)| *p).collect();
        let mut all = Vec::with_capacity(served.len());
        for i in 0..served.len() {
            let mut own = Vec::with_capacity(n);
            for k in 0..n {
                let p = usize::from(base) + i * n + k;
                let p = u16::try_from(p).map_err(|_| {
                    Error::Config(format!(
                        "--broker-ports {base}: {} ports from there pass 65535",
                        served.len() * n
                    ))
                })?;
                if served.contains(&p) {
                    return Err(Error::Config(format!(
                        "--broker-ports {base}: port {p} would be both a broker port and a \
                         processor's own"
                    )));
                }
                own.push(p);
            }
            all.push(own);
        }
        Ok(all)
    }
}
