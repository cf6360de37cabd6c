//! The requests of [`Runtime::handle`] that take more than a line: a live capture,
//! the trace's settings, a listener added at run time, the filter's policy.

use super::*;

/// How long `processor K restart` waits for K to run again.
const RESTART_WAIT: Duration = Duration::from_secs(5);

impl Runtime {
    /// `processor K restart`: a failed processor starts again (its thread
    /// waits for this when its automatic restart is off or its crash loop
    /// was cut short); answered once it runs.
    pub(super) fn restart_processor(&self, id: usize) -> Response {
        let (Some(q), Some(stats)) = (self.queues.get(id), self.registry.processors.get(id)) else {
            return Response::error(format!(
                "processor {id} does not exist (processors: 0..{})",
                self.queues.len().saturating_sub(1)
            ));
        };
        if stats.failure.lock().is_none() {
            return Response::error(format!(
                "processor {id} has not failed: only a failed processor restarts (use up)"
            ));
        }
        let before = stats.restarts.load(Ordering::Relaxed);
        if q.send(ToProcessor::Restart).is_err() {
            return Response::error(format!("processor {id} has stopped"));
        }
        let deadline = Instant::now() + RESTART_WAIT;
        while Instant::now() < deadline {
            if stats.failure.lock().is_none() || stats.restarts.load(Ordering::Relaxed) != before {
                return Response {
                    notes: vec![format!("processor {id} restarted")],
                    ..Response::ok()
                };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Response::error(format!(
            "processor {id} did not restart within {RESTART_WAIT:?}"
        ))
    }

    /// `filter`: the adapter's mode, or with a port that port's own
    /// policy ("default" gives the port back to the adapter's mode).
    pub(super) fn set_filter(
        &self,
        mode: &str,
        port: Option<u16>,
        protocol: Option<&str>,
    ) -> Response {
        let parsed = FilterMode::from_name(mode);
        let Some(port) = port else {
            let Some(m) = parsed else {
                return Response::error(format!("filter {mode:?}: use {}", FilterMode::NAMES));
            };
            self.filter.lock().set_mode(m);
            *self.registry.filter.write() = m.name().to_string();
            return Response::ok();
        };
        if parsed.is_none() && mode != "default" {
            return Response::error(format!(
                "filter {mode:?}: use {}, or default (the port follows the adapter's mode)",
                FilterMode::NAMES
            ));
        }
        let protocol = match protocol.map_or(Some(Protocol::Tcp), Protocol::from_name) {
            Some(p) => p,
            None => return Response::error("protocol: use tcp or udp"),
        };
        let mut f = self.filter.lock();
        if !f.ports(protocol).contains(&port) {
            return Response::error(format!("port {port}/{protocol} has no listener"));
        }
        f.set_port_mode(protocol, port, parsed);
        Response::ok()
    }

    /// `capture`: checks the processor, then starts the capture (its
    /// filter is checked by libpcap in the tracer).
    pub(super) fn capture(
        &self,
        filter: Option<String>,
        processor: Option<usize>,
    ) -> Result<CaptureStream, String> {
        let Some(t) = &self.trace else {
            return Err("live capture is not available in this vnic".into());
        };
        if let Some(k) = processor.filter(|k| *k >= self.queues.len()) {
            return Err(format!(
                "processor {k} does not exist (processors: 0..{})",
                self.queues.len().saturating_sub(1)
            ));
        }
        t.capture(CaptureSpec { filter, processor })
    }

    /// `trace`: checks the request, then hands it to the tracer.
    pub(super) fn trace(
        &self,
        on: bool,
        file: Option<String>,
        max_mb: Option<u64>,
        max_files: Option<u32>,
    ) -> Response {
        let Some(t) = &self.trace else {
            return Response::error("tracing is not available in this vnic");
        };
        let file = file.map(PathBuf::from);
        if let Some(f) = &file {
            // vnic's own working directory means nothing to the caller:
            // `vnic ctl` makes the path absolute from its own.
            if !f.is_absolute() {
                return Response::error(format!(
                    "trace file {:?} must be an absolute path",
                    f.display().to_string()
                ));
            }
        }
        if on && file.is_none() && (max_mb.is_some() || max_files.is_some()) {
            return Response::error("max_mb and max_files need a trace file");
        }
        if max_mb.is_some_and(|m| !(1..=MAX_TRACE_MB).contains(&m)) {
            return Response::error(format!("max_mb must be 1 to {MAX_TRACE_MB}"));
        }
        if max_files.is_some_and(|n| !(1..=MAX_TRACE_FILES).contains(&n)) {
            return Response::error(format!("max_files must be 1 to {MAX_TRACE_FILES}"));
        }
        match t.set(on, file, max_mb, max_files) {
            Ok(()) => Response::ok(),
            Err(e) => Response::error(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_listener(
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
        // Tried on a copy first: a refusal changes nothing, not even a
        // processor's app. The processors then learn their app before the
        // filter can send them traffic.
        let changes = {
            let f = self.filter.lock();
            let mut trial = f.clone();
            if let Err(e) = trial.add_listener(spec.clone()) {
                return Response::error(e.to_string());
            }
            serve_changes(&f, &trial, proto, port, [Some(processor), backup])
        };
        self.tell_serve(proto, port, &changes);
        let added = self.filter.lock().add_listener(spec);
        match added {
            Ok(id) => Response {
                notes: vec![format!("listener {} added", id.0)],
                ..Response::ok()
            },
            Err(e) => {
                // Another request changed the filter meanwhile: the
                // processors go back to what it says now.
                let back: Vec<(usize, Option<String>)> = {
                    let f = self.filter.lock();
                    changes
                        .iter()
                        .map(|(p, _)| (*p, f.app_at(proto, port, *p).map(str::to_string)))
                        .collect()
                };
                self.tell_serve(proto, port, &back);
                Response::error(e.to_string())
            }
        }
    }

    /// `listener remove`: the listener leaves the filter, and each of its
    /// processors (primary, backup) serves what the filter says is left
    /// there: another listener that processor holds on the port keeps its
    /// app.
    pub(super) fn remove_listener(&self, protocol: &str, port: u16, processor: usize) -> Response {
        let Some(proto) = Protocol::from_name(protocol) else {
            return Response::error(format!("protocol {protocol:?}: use tcp or udp"));
        };
        let (removed, changes) = {
            let mut f = self.filter.lock();
            let Some(id) = f.listener_at(proto, port, processor) else {
                return Response::error(format!(
                    "no {protocol} listener of port {port} in processor {processor}"
                ));
            };
            let before = f.clone();
            match f.remove_listener(id) {
                Ok(r) => {
                    let at = [Some(r.listener.processor), r.listener.backup];
                    let changes = serve_changes(&before, &f, proto, port, at);
                    (r, changes)
                }
                Err(e) => return Response::error(e.to_string()),
            }
        };
        self.tell_serve(proto, port, &changes);
        Response {
            notes: removed.takeovers.iter().map(|t| t.to_string()).collect(),
            ..Response::ok()
        }
    }

    /// Sends each processor its new app for the port (`None`: stop serving it).
    fn tell_serve(&self, protocol: Protocol, port: u16, changes: &[(usize, Option<String>)]) {
        for (p, app) in changes {
            if let Some(q) = self.queues.get(*p) {
                let _ = q.send(ToProcessor::Serve {
                    protocol,
                    port,
                    app: app.clone(),
                });
            }
        }
    }
}

/// The processors among `at` whose app for (`protocol`, `port`) differs
/// between the filters `before` and `after`, with their app in `after`.
fn serve_changes(
    before: &Filter,
    after: &Filter,
    protocol: Protocol,
    port: u16,
    at: [Option<usize>; 2],
) -> Vec<(usize, Option<String>)> {
    let mut out: Vec<(usize, Option<String>)> = Vec::new();
    for p in at.into_iter().flatten() {
        let now = after.app_at(protocol, port, p);
        if before.app_at(protocol, port, p) != now && !out.iter().any(|(q, _)| *q == p) {
            out.push((p, now.map(str::to_string)));
        }
    }
    out
}
