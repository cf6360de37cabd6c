//! The control socket's server side: binds the socket (refusing to run
//! beside another live vnic, replacing a stale socket file), answers
//! requests on its own thread, and removes the file on stop.

use super::protocol::{
    AdapterStatus, ListenerStatus, ProcessorStatus, Request, Response, Status, TraceStatus,
};
use crate::distributor::{BackendCtl, BackendCtlRequest};
use crate::stats::Registry;
use parking_lot::Mutex;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vnic_adapter::filter::{FilterKey, ListenerSpec, Protocol};
use vnic_adapter::trace::{LineMode, Tracer};
use vnic_adapter::{Counters, Filter, FilterMode, ToProcessor};

/// Turning tracing on and off, and reading its state; implemented by the
/// adapter's tracer (kept behind a trait so the server does not care how
/// tracing is done).
pub trait TraceControl: Send + Sync {
    /// Turns tracing on (pcapng to `file` if given, else trace lines) or off.
    fn set(&self, on: bool, file: Option<PathBuf>) -> Result<(), String>;
    /// The trace state for `vnic status`.
    fn status(&self) -> TraceStatus;
}

/// The adapter's tracer as the control socket sees it.
pub struct TraceHandle(pub Arc<Tracer>);

impl TraceControl for TraceHandle {
    fn set(&self, on: bool, file: Option<PathBuf>) -> Result<(), String> {
        match (on, file) {
            (true, Some(f)) => self
                .0
                .set_pcap(Some(f.clone()))
                .map_err(|e| format!("cannot trace to {}: {e}", f.display())),
            (true, None) => {
                self.0.set_lines(Some(LineMode::Frames));
                Ok(())
            }
            (false, _) => {
                self.0.set_lines(None);
                self.0.set_pcap(None).map_err(|e| e.to_string())
            }
        }
    }

    fn status(&self) -> TraceStatus {
        let st = self.0.stats();
        TraceStatus {
            active: self.0.active(),
            file: st.file.map(|f| f.display().to_string()),
            records: st.written,
            lost: st.lost,
        }
    }
}

/// Handles on everything the control commands look at or steer.
pub struct Runtime {
    /// TAP name.
    pub tap: String,
    /// When vnic started.
    pub started: Instant,
    /// The distribution filter (shared with the RX thread).
    pub filter: Arc<Mutex<Filter>>,
    /// Each processor's queue, to tell it to go down or up.
    pub queues: Vec<vnic_adapter::ProcessorQueue>,
    /// Per-processor counters.
    pub registry: Arc<Registry>,
    /// Adapter counters.
    pub counters: Arc<Counters>,
    /// Ports served (each by every processor in the monolithic model).
    pub ports: Vec<u16>,
    /// Tracing, if this vnic can trace.
    pub trace: Option<Arc<dyn TraceControl>>,
    /// The distributor's back-end control (distributor model only).
    pub backend_ctl: Option<vnic_adapter::BellSender<BackendCtlRequest>>,
}

impl Runtime {
    /// Carries out one request.
    pub fn handle(&self, req: Request) -> Response {
        match req {
            Request::Status => Response {
                status: Some(self.status()),
                ..Response::ok()
            },
            Request::Processor { id, state } => {
                let up = match state.as_str() {
                    "up" => true,
                    "down" => false,
                    other => return Response::error(format!("state {other:?}: use up or down")),
                };
                let Some(q) = self.queues.get(id) else {
                    return Response::error(format!(
                        "processor {id} does not exist (processors: 0..{})",
                        self.queues.len().saturating_sub(1)
                    ));
                };
                // Out of the rotation first, so no new connection lands on
                // a processor that is resetting its connections.
                let takeovers = self.filter.lock().set_up_report(id, up);
                if q.send(ToProcessor::SetUp(up)).is_err() {
                    return Response::error(format!("processor {id} has stopped"));
                }
                Response {
                    notes: takeovers.iter().map(|t| t.to_string()).collect(),
                    ..Response::ok()
                }
            }
            Request::ListenerAdd {
                protocol,
                port,
                processor,
                app,
                backup,
                address,
                key,
            } => self.add_listener(&protocol, port, processor, app, backup, address, key),
            Request::ListenerRemove {
                protocol,
                port,
                processor,
            } => {
                let Some(proto) = Protocol::from_name(&protocol) else {
                    return Response::error(format!("protocol {protocol:?}: use tcp or udp"));
                };
                let mut f = self.filter.lock();
                let Some(id) = f.listener_at(proto, port, processor) else {
                    return Response::error(format!(
                        "no {protocol} listener of port {port} in processor {processor}"
                    ));
                };
                match f.remove_listener(id) {
                    Ok(r) => {
                        for p in [Some(r.listener.processor), r.listener.backup]
                            .into_iter()
                            .flatten()
                        {
                            if let Some(q) = self.queues.get(p) {
                                let _ = q.send(ToProcessor::Serve {
                                    udp: proto == Protocol::Udp,
                                    port,
                                    app: None,
                                });
                            }
                        }
                        Response {
                            notes: r.takeovers.iter().map(|t| t.to_string()).collect(),
                            ..Response::ok()
                        }
                    }
                    Err(e) => Response::error(e.to_string()),
                }
            }
            Request::Backend { id, state } => {
                let up = match state.as_str() {
                    "up" => true,
                    "down" => false,
                    other => return Response::error(format!("state {other:?}: use up or down")),
                };
                let Some(ctl) = &self.backend_ctl else {
                    return Response::error("no back-ends: this vnic runs the monolithic model");
                };
                let (tx, rx) = crossbeam_channel::bounded(1);
                if ctl.send((BackendCtl { backend: id, up }, tx)).is_err() {
                    return Response::error("the distributor has stopped");
                }
                match rx.recv_timeout(Duration::from_secs(5)) {
                    Ok(Ok(())) => Response::ok(),
                    Ok(Err(e)) => Response::error(e),
                    Err(_) => Response::error("the distributor did not answer"),
                }
            }
            Request::Filter { mode } => match FilterMode::from_name(&mode) {
                Some(m) => {
                    self.filter.lock().set_mode(m);
                    *self.registry.filter.write() = m.name().to_string();
                    Response::ok()
                }
                None => Response::error(format!("filter {mode:?}: use round-robin or none")),
            },
            Request::Trace { on, file } => match &self.trace {
                Some(t) => match t.set(on, file.map(PathBuf::from)) {
                    Ok(()) => Response::ok(),
                    Err(e) => Response::error(e),
                },
                None => Response::error("tracing is not available in this vnic"),
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_listener(
        &self,
        protocol: &str,
        port: u16,
        processor: usize,
        app: String,
        backup: Option<usize>,
        address: Option<String>,
        key: Option<String>,
    ) -> Response {
        let Some(proto) = Protocol::from_name(protocol) else {
            return Response::error(format!("protocol {protocol:?}: use tcp or udp"));
        };
        let known = match proto {
            Protocol::Tcp => crate::app::AppKind::from_name(&app).is_some(),
            Protocol::Udp => crate::app::udp::UdpAppKind::from_name(&app).is_some(),
        };
        if !known {
            return Response::error(format!(
                "app {app:?} does not speak {protocol}: tcp apps are echo, discard, chargen, http; udp: udp-echo"
            ));
        }
        let address = match address.map(|a| a.parse::<std::net::IpAddr>()) {
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => return Response::error("address: not an IPv4 or IPv6 address"),
            None => None,
        };
        let key = match key.map(|k| FilterKey::new(&k)) {
            Some(Ok(k)) => Some(k),
            Some(Err(e)) => return Response::error(e.to_string()),
            None => None,
        };
        let spec = ListenerSpec {
            protocol: proto,
            port,
            processor,
            backup,
            address,
            key,
            app: app.clone(),
        };
        // The processors learn the app before the filter can send them traffic.
        for p in [Some(processor), backup].into_iter().flatten() {
            if let Some(q) = self.queues.get(p) {
                let _ = q.send(ToProcessor::Serve {
                    udp: proto == Protocol::Udp,
                    port,
                    app: Some(app.clone()),
                });
            }
        }
        match self.filter.lock().add_listener(spec) {
            Ok(id) => Response {
                notes: vec![format!("listener {} added", id.0)],
                ..Response::ok()
            },
            Err(e) => Response::error(e.to_string()),
        }
    }

    /// The whole status.
    pub fn status(&self) -> Status {
        let filter = self.filter.lock().clone();
        let snap = self.registry.snapshot();
        let processors = snap
            .iter()
            .map(|p| {
                let stats = &self.registry.processors[p.id];
                ProcessorStatus {
                    id: p.id,
                    state: if stats.down.load(Ordering::Relaxed) {
                        "down".into()
                    } else {
                        "up".into()
                    },
                    ports: self
                        .ports
                        .iter()
                        .copied()
                        .filter(|port| filter.listeners(*port).contains(&p.id))
                        .collect(),
                    active: p.active,
                    accepted: p.accepted,
                    bytes_in: p.bytes_in,
                    bytes_out: p.bytes_out,
                    queue_depth: self.queues.get(p.id).map_or(0, |q| q.len()),
                    queue_drops: self.counters.queue_full.get(p.id).map_or(0, Counters::get),
                    retransmissions: stats.retransmissions.load(Ordering::Relaxed),
                    panics: stats.panics.load(Ordering::Relaxed),
                    refused: stats.refused.load(Ordering::Relaxed),
                    datagrams: stats.datagrams.load(Ordering::Relaxed),
                    half_open: stats.half_open.load(Ordering::Relaxed),
                    replies_limited: stats.replies_limited.load(Ordering::Relaxed),
                    send_limited: stats.send_limited.load(Ordering::Relaxed),
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
            drops: c
                .drops()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        };
        Status {
            tap: self.tap.clone(),
            model: self.registry.model.clone(),
            filter: filter.mode().name().to_string(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
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
            backends: self.registry.backend_snapshot(),
            services: self.registry.service_status(),
            adapter,
            trace: self.trace.as_ref().map(|t| t.status()).unwrap_or_default(),
        }
    }
}

/// Where the control socket of TAP `tap` lives unless `--control` says:
/// `$XDG_RUNTIME_DIR/vnic-TAP.sock`, else `/run/vnic/TAP.sock`.
pub fn default_path(tap: &str) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => Path::new(&dir).join(format!("vnic-{tap}.sock")),
        _ => PathBuf::from(format!("/run/vnic/{tap}.sock")),
    }
}

/// A bound control socket.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path`. Another vnic answering there is an error; a socket
    /// file nobody answers on (left by a crashed run) is replaced.
    pub fn bind(path: &Path) -> io::Result<ControlServer> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "another vnic is running here: its control socket {} answers",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot replace stale control socket {}: {e}",
                        path.display()
                    ),
                )
            })?;
        }
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let listener = UnixListener::bind(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot bind control socket {}: {e}", path.display()),
            )
        })?;
        listener.set_nonblocking(true)?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves requests until `stop` is set, then removes the socket file.
    pub fn serve(self, rt: Arc<Runtime>, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let rt = rt.clone();
                    let stop = stop.clone();
                    // One thread per client: `vnic status --watch` keeps its
                    // connection open; nobody waits on anybody else.
                    let _ = std::thread::Builder::new()
                        .name("vnic-ctl-client".into())
                        .spawn(move || client(stream, &rt, &stop));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn client(stream: UnixStream, rt: &Runtime, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                let resp = match serde_json::from_str::<Request>(line.trim()) {
                    Ok(req) => rt.handle(req),
                    Err(e) => Response::error(format!("bad request: {e}")),
                };
                line.clear();
                let Ok(mut text) = serde_json::to_string(&resp) else {
                    return;
                };
                text.push('\n');
                if writer.write_all(text.as_bytes()).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}
