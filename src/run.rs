//! `vnic up`: opens the TAP, configures the host side, starts the
//! processors and the RX thread, prints the ready line, and shuts all of
//! it down cleanly on SIGINT or SIGTERM.

use crate::cli::{Model, Plan};
use crate::summary;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vnic_adapter::impair::{ImpairStats, ImpairedSink, ImpairedSource};
use vnic_adapter::trace::{LineMode, Origin, TraceOptions, Tracer, TracingSink};
use vnic_adapter::{
    host, Adapter, AdapterConfig, Counters, Filter, FrameSink, FrameSource, FrameWriter, TapDevice,
};
use vnic_listeners::app::udp::UdpAppKind;
use vnic_listeners::app::Service;
use vnic_listeners::control::{default_path, ControlServer, Runtime, TraceHandle};
use vnic_listeners::distributor::{backend, Dispatcher};
use vnic_listeners::processor::{AppSource, DistributorLink, Inbox, Processor, ProcessorSetup};
use vnic_listeners::stats::Registry;
use vnic_stack::{Config, IsnGenerator, SynCookies};

/// How often the one-line summary is printed on stderr.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Connections the adapter holds at most, split evenly over the
/// processors: sized so 100,000 connections fit.
const MAX_CONNECTIONS: usize = 131_072;

/// Depth of each processor's queue, in segments.
const QUEUE_DEPTH: usize = 8192;

/// Why `vnic up` stopped early.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// The adapter could not be set up.
    #[error(transparent)]
    Adapter(#[from] vnic_adapter::AdapterError),
    /// A listener registration was refused.
    #[error("{0}")]
    Filter(#[from] vnic_adapter::filter::FilterError),
    /// A thread could not be started, or a signal handler installed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs vnic until SIGINT or SIGTERM.
pub fn up(plan: Plan) -> Result<(), UpError> {
    let control_path = plan
        .control
        .clone()
        .unwrap_or_else(|| default_path(&plan.tap));
    // Before the TAP: a second vnic on the same TAP is told so plainly.
    let control = ControlServer::bind(&control_path)?;
    let taps: Vec<Arc<TapDevice>> =
        TapDevice::open_queues(&plan.tap, plan.offload, plan.rx_queues)?
            .into_iter()
            .map(Arc::new)
            .collect();
    let Some(tap) = taps.first().cloned() else {
        return Err(std::io::Error::other("the TAP gave no queue").into());
    };
    let name = tap.name().to_string();
    if !plan.host_ips.is_empty() {
        host::configure(&name, &plan.host_ips)?;
    }
    let mut cfg = AdapterConfig::new(&name, &plan.ips, plan.mtu.unwrap_or_else(|| tap.mtu()));
    if let Some(mac) = plan.mac {
        cfg.mac = mac;
    }
    let counters = Arc::new(Counters::with_rx_queues(plan.processors, taps.len()));
    let impair_stats = Arc::new(ImpairStats::default());
    // Every queue can send; frames go out through the first.
    let mut sink: Arc<dyn FrameSink> = tap.clone();
    let mut sources: Vec<Box<dyn FrameSource>> = taps
        .iter()
        .map(|t| Box::new(t.clone()) as Box<dyn FrameSource>)
        .collect();
    if let Some(spec) = &plan.impair {
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
    // Tracing sits outside the impairment: it shows what the adapter and
    // the processors saw and sent.
    let tracer = Tracer::start(TraceOptions {
        pcap: plan.pcap.clone(),
        pcap_max_mb: plan.pcap_max_mb,
        pcap_max_files: plan.pcap_max_files,
        snaplen: plan
            .pcap_snaplen
            .map_or(vnic_adapter::trace::SNAPLEN, |n| n as usize),
        lines: match plan.trace.as_deref() {
            Some("conn") => Some(LineMode::Conn),
            Some(_) => Some(LineMode::Frames),
            None => None,
        },
        iface: name.clone(),
        mac: cfg.mac,
    })
    .map_err(|e| std::io::Error::new(e.kind(), format!("--pcap: {e}")))?;
    let traced = |origin: Origin| -> FrameWriter {
        let s: Arc<dyn FrameSink> =
            Arc::new(TracingSink::new(sink.clone(), tracer.clone(), origin));
        let mut w = FrameWriter::new(s, cfg.mac, counters.clone());
        // Processor K counts its frames in sender slot K; an RX queue's
        // slot is set with its queue (`Adapter::set_rx_queue`).
        if let Origin::Cpu(k) = origin {
            w.set_sender(k);
        }
        w
    };
    let n = plan.processors;
    let registry = Arc::new(
        Registry::new(plan.model.name(), plan.filter.name(), n).with_backends(plan.backends()),
    );

    let mut ports: Vec<u16> = plan.serve.keys().copied().collect();
    ports.sort_unstable();
    let filter = match &plan.config {
        // Listeners as the config file places them, already registered.
        Some(c) => c.filter.clone(),
        // Every processor serves every port.
        None => {
            let mut f = Filter::new(plan.filter, n);
            f.set_addresses(plan.ips.clone());
            for port in &ports {
                for p in 0..n {
                    f.register(*port, p)?;
                }
            }
            f
        }
    };

    let tcp = Config {
        mtu: cfg.mtu,
        time_wait: plan.time_wait,
        ..Config::default()
    };
    let isn = Arc::new(IsnGenerator::new(random_key(), Instant::now()));
    let cookies = Arc::new(SynCookies::new(random_key(), Instant::now()));
    // One report channel per RX queue: a processor tells the thread that
    // placed a connection that it is gone.
    let (closed_tx, closed_rx): (Vec<_>, Vec<_>) = (0..taps.len())
        .map(|_| crossbeam_channel::unbounded())
        .unzip();
    let mut queues = Vec::with_capacity(n);
    let mut inboxes = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = Inbox::new(QUEUE_DEPTH)?;
        queues.push(tx);
        inboxes.push(rx);
    }
    let mut threads = Vec::with_capacity(n + 1);
    // The distributor model: processor 0 is the distributor, its apps run
    // at the back-ends.
    let mut backend_ctl = None;
    let mut distributor = match plan.model {
        Model::Monolithic => None,
        Model::Distributor { backends, balance } => {
            // The back-ends and the control server wake the distributor
            // (processor 0) as its frame queue does.
            let bell = inboxes
                .first()
                .map(Inbox::bell)
                .ok_or_else(|| std::io::Error::other("no processor"))?;
            let (reply_tx, reply_rx) = crossbeam_channel::unbounded();
            let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
            let reply_tx = vnic_adapter::BellSender::new(reply_tx, bell.clone());
            backend_ctl = Some(vnic_adapter::BellSender::new(ctl_tx, bell));
            let dispatcher = Dispatcher::start(
                backends,
                balance,
                backend::app_handler(registry.clone()),
                reply_tx,
                registry.clone(),
            )?;
            Some(DistributorLink {
                dispatcher: Arc::new(Mutex::new(dispatcher)),
                replies: reply_rx,
                ctl: ctl_rx,
            })
        }
    };
    // One service per --serve entry, shared by every processor.
    let mut services: HashMap<u16, Arc<dyn Service>> = HashMap::new();
    for (port, app) in &plan.serve {
        services.insert(*port, app.service(&plan).map_err(std::io::Error::other)?);
    }
    let builtin = |m: HashMap<u16, vnic_listeners::app::AppKind>| {
        m.into_iter()
            .map(|(port, k)| (port, Arc::new(k) as Arc<dyn Service>))
            .collect()
    };
    for (id, inbox) in inboxes.into_iter().enumerate() {
        threads.push(Processor::spawn(ProcessorSetup {
            id,
            queue: inbox,
            closed: closed_tx.clone(),
            out: traced(Origin::Cpu(id)),
            tracer: tracer.clone(),
            max_connections: (MAX_CONNECTIONS / n).max(1024),
            adapter_counters: counters.clone(),
            serve: match &plan.config {
                Some(c) => builtin(c.tcp_serve_for(id)),
                None => services.clone(),
            },
            udp_serve: match &plan.config {
                Some(c) => c
                    .udp_serve_for(id)
                    .into_iter()
                    .filter_map(|(port, app)| UdpAppKind::from_name(app.name()).map(|k| (port, k)))
                    .collect(),
                None => Default::default(),
            },
            tcp: tcp.clone(),
            isn: isn.clone(),
            registry: registry.clone(),
            apps: match distributor.take() {
                Some(link) => AppSource::Distributor(link),
                None => AppSource::Local,
            },
        })?);
    }
    drop(closed_tx);

    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;

    let filter = Arc::new(Mutex::new(filter));
    let runtime = Arc::new(Runtime {
        tap: name.clone(),
        started: Instant::now(),
        filter: filter.clone(),
        queues: queues.clone(),
        registry: registry.clone(),
        counters: counters.clone(),
        ports: ports.clone(),
        trace: Some(Arc::new(TraceHandle(tracer.clone()))),
        backend_ctl,
    });
    let ctl_stop = stop.clone();
    let ctl_thread = std::thread::Builder::new().name("vnic-ctl".into()).spawn({
        let rt = runtime.clone();
        move || control.serve(rt, ctl_stop)
    })?;
    let summary = if plan.quiet {
        None
    } else {
        let rt = runtime.clone();
        let s = stop.clone();
        Some(
            std::thread::Builder::new()
                .name("vnic-summary".into())
                .spawn(move || summary::run(&rt, &s, SUMMARY_EVERY))?,
        )
    };
    let rx_queues = sources.len();
    for (q, (source, closed)) in sources.into_iter().zip(closed_rx).enumerate() {
        let mut adapter = Adapter::new(
            cfg.clone(),
            filter.clone(),
            queues.clone(),
            closed,
            traced(Origin::Adapter),
            counters.clone(),
        );
        adapter.set_syn_cookies(cookies.clone(), plan.syn_backlog, &tcp);
        adapter.set_rx_queue(q, rx_queues);
        let rx_stop = stop.clone();
        let name = if rx_queues == 1 {
            "vnic-rx".to_string()
        } else {
            format!("vnic-rx{q}")
        };
        threads.push(std::thread::Builder::new().name(name).spawn({
            let tracer = tracer.clone();
            move || adapter.run(source, tracer, rx_stop)
        })?);
    }

    let ips: Vec<String> = plan.ips.iter().map(|ip| ip.to_string()).collect();
    let mut out = std::io::stdout().lock();
    let impair = plan
        .impair
        .as_ref()
        .map(|s| format!(" impair={s}"))
        .unwrap_or_default();
    // Shown only when on: the fields before it stay as tests parse them.
    let offload = if plan.offload { " offload=on" } else { "" };
    let rxq = if rx_queues > 1 {
        format!(" rx-queues={rx_queues}")
    } else {
        String::new()
    };
    writeln!(
        out,
        "vnic: ready tap={} ip={} processors={} filter={} model={}{}{}{}{}",
        name,
        ips.join(","),
        n,
        plan.filter.name(),
        plan.model.name(),
        match plan.model {
            Model::Distributor { backends, balance } =>
                format!(" backends={backends} balance={}", balance.name()),
            Model::Monolithic => String::new(),
        },
        impair,
        offload,
        rxq
    )?;
    out.flush()?;
    drop(out);

    for t in threads {
        let _ = t.join();
    }
    let _ = ctl_thread.join();
    // Flush and close the trace so the file is always complete.
    tracer.close();
    if let Some(t) = summary {
        let _ = t.join();
    }
    Ok(())
}

/// A fresh secret for the ISN hash (RFC 6528 wants it unguessable).
fn random_key() -> [u8; 16] {
    let mut key = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        if f.read_exact(&mut key).is_ok() {
            return key;
        }
    }
    // No /dev/urandom: fall back on the std's randomly keyed hasher.
    use std::hash::{BuildHasher, Hasher};
    for chunk in key.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
    }
    key
}
