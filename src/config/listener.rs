//! A `[[listener]]` entry checked and registered: its app, its
//! processor and backup, its address and key, run through the filter's
//! registration rules so that an error names the file line.

use super::*;

impl ConfigFile {
    pub(super) fn listener(
        &self,
        raw: &Spanned<RawListener>,
        default_key: &Option<FilterKey>,
        filter: &mut Filter,
        flags: &Overrides,
    ) -> Result<ListenerEntry, ConfigError> {
        let l = raw.get_ref();
        let port = match u16::try_from(*l.port.get_ref()) {
            Ok(p) if p != 0 => p,
            _ => {
                return self.bad(
                    l.port.span(),
                    format!("port {} must be from 1 to 65535", l.port.get_ref()),
                )
            }
        };
        let protocol = match &l.protocol {
            Some(p) => Protocol::from_name(p.get_ref()).map_or_else(
                || {
                    self.bad(
                        p.span(),
                        format!(
                            "unknown protocol {:?}: choose \"tcp\" or \"udp\"",
                            p.get_ref()
                        ),
                    )
                },
                Ok,
            )?,
            None => Protocol::Tcp,
        };
        let app = ServiceApp::from_name(l.app.get_ref()).ok_or_else(|| {
            let names: Vec<&str> = ServiceApp::ALL.iter().map(|a| a.name()).collect();
            self.err(
                Some(l.app.span()),
                ConfigErrorKind::UnknownApp,
                format!(
                    "unknown app {:?}: choose {}",
                    l.app.get_ref(),
                    names.join(", ")
                ),
            )
        })?;
        if app.protocol() != protocol {
            let fits: Vec<&str> = ServiceApp::ALL
                .iter()
                .filter(|a| a.protocol() == protocol)
                .map(|a| a.name())
                .collect();
            return Err(self.err(
                Some(l.app.span()),
                ConfigErrorKind::UnknownApp,
                format!(
                    "app {:?} speaks {}, but this listener is {}: choose {}",
                    app.name(),
                    app.protocol().name().to_ascii_uppercase(),
                    protocol.name().to_ascii_uppercase(),
                    fits.join(", ")
                ),
            ));
        }
        let serve = self.serve_app(l, app)?;
        let congestion = match &l.congestion {
            Some(c) if protocol != Protocol::Tcp => {
                return self.bad(c.span(), "congestion belongs to TCP listeners".into())
            }
            Some(c) => Some(self.congestion(c)?),
            None => None,
        };
        let cpu = |v: &Spanned<i64>| -> Result<usize, ConfigError> {
            usize::try_from(*v.get_ref()).or_else(|_| {
                self.bad(
                    v.span(),
                    format!("processor {} is not a processor number", v.get_ref()),
                )
            })
        };
        let processor = cpu(&l.processor)?;
        let backup = l.backup.as_ref().map(cpu).transpose()?;
        let address = match &l.address {
            Some(a) => Some(a.get_ref().parse::<IpAddr>().or_else(|_| {
                self.bad(
                    a.span(),
                    format!(
                        "address {:?} is not an IPv4 or IPv6 address (a bound address has no /PREFIX)",
                        a.get_ref()
                    ),
                )
            })?),
            None => None,
        };
        let key = match &l.key {
            Some(k) => Some(self.key(k)?),
            None => default_key.clone(),
        };
        let spec = ListenerSpec {
            protocol,
            port,
            processor,
            backup,
            address,
            key,
            app: app.name().to_string(),
        };
        let line = Location::of(&self.text, raw.span().start).line;
        let id = filter.add_listener(spec.clone()).map_err(|e| {
            let span = match &e {
                RegisterError::NoSuchProcessor { processor: p, .. }
                    if Some(*p) == backup && *p != processor =>
                {
                    l.backup.as_ref().map(Spanned::span)
                }
                RegisterError::NoSuchProcessor { .. } | RegisterError::DuplicateListener { .. } => {
                    Some(l.processor.span())
                }
                RegisterError::BackupIsPrimary { .. } => l.backup.as_ref().map(Spanned::span),
                RegisterError::AddressNotOurs { .. } => l.address.as_ref().map(Spanned::span),
                RegisterError::FilterKeyMismatch { .. } | RegisterError::BadFilterKey { .. } => l
                    .key
                    .as_ref()
                    .map(Spanned::span)
                    .or_else(|| Some(l.port.span())),
                _ => Some(l.port.span()),
            };
            let note = match &e {
                RegisterError::NoSuchProcessor { .. } if flags.processors.is_some() => {
                    " (--processors overrides [adapter] processors)"
                }
                RegisterError::AddressNotOurs { .. } if !flags.ips.is_empty() => {
                    " (--ip overrides [adapter] addresses)"
                }
                RegisterError::PortInUse {
                    reason: Exclusive::FilteringOff,
                    ..
                } if flags.filter.is_some() => " (--filter overrides [filter] mode)",
                RegisterError::PortInUse {
                    reason: Exclusive::FilteringOff,
                    ..
                } if f_mode_unset(&self.raw) => {
                    " (set mode = \"round-robin\" in [filter] to share ports)"
                }
                RegisterError::PortInUse {
                    reason: Exclusive::OtherAddress,
                    ..
                } => " (set port_share_enable = true in [filter] to allow it)",
                _ => "",
            };
            self.err(
                span,
                ConfigErrorKind::Registration(Box::new(e.clone())),
                format!("{e}{note}"),
            )
        })?;
        Ok(ListenerEntry {
            id,
            spec,
            app,
            serve,
            congestion,
            line,
        })
    }

    /// What a TCP listener serves: the built-in app, or the proxy with its
    /// `targets`, or exec with its `command`; each of those two keys only
    /// with its own app.
    pub(super) fn serve_app(
        &self,
        l: &RawListener,
        app: ServiceApp,
    ) -> Result<Option<ServeApp>, ConfigError> {
        if let (Some(t), false) = (&l.targets, app == ServiceApp::Proxy) {
            let span = t.first().map_or(l.app.span(), Spanned::span);
            return self.bad(span, "targets belong to app = \"proxy\"".into());
        }
        if let (Some(c), false) = (&l.command, app == ServiceApp::Exec) {
            return self.bad(c.span(), "command belongs to app = \"exec\"".into());
        }
        Ok(match app {
            ServiceApp::Proxy => {
                let Some(targets) = l.targets.as_ref().filter(|t| !t.is_empty()) else {
                    return self.bad(
                        l.app.span(),
                        "app = \"proxy\" needs targets = [\"ADDR:PORT\", ...]".into(),
                    );
                };
                let mut list = Vec::new();
                for t in targets {
                    match t.get_ref().parse() {
                        Ok(a) => list.push(a),
                        Err(_) => {
                            return self.bad(
                                t.span(),
                                format!(
                                    "proxy target {:?} is not ADDR:PORT or [ADDR]:PORT",
                                    t.get_ref()
                                ),
                            )
                        }
                    }
                }
                Some(ServeApp::Proxy(list))
            }
            ServiceApp::Exec => {
                let Some(c) = &l.command else {
                    return self.bad(
                        l.app.span(),
                        "app = \"exec\" needs command = \"PROGRAM ARGS...\"".into(),
                    );
                };
                match vnic_listeners::app::exec::parse_command(c.get_ref()) {
                    Ok(argv) => Some(ServeApp::Exec(argv)),
                    Err(e) => return self.bad(c.span(), e),
                }
            }
            other => other.tcp_app().map(ServeApp::Builtin),
        })
    }
}
