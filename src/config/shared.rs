//! Shared port ranges per filter key, as NonStop gives each process its own
//! `=PTCPIP^FILTER^TCP^PORTS` and `UDP^PORTS` DEFINEs beside its
//! `=PTCPIP^FILTER^KEY`: `[filter]`'s `tcp_ports` / `udp_ports` are those of
//! the `[filter]` key, and each `[[filter.shared]]` gives another key its
//! own. A key with none shares every port.

use super::{ConfigError, ConfigFile, Location, PortItem};
use serde::Deserialize;
use toml::Spanned;
use vnic_adapter::filter::{FilterKey, Protocol};
use vnic_adapter::Filter;

/// One `[[filter.shared]]`: a filter key's own shared ports.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShared {
    key: Spanned<String>,
    tcp_ports: Option<Vec<Spanned<PortItem>>>,
    udp_ports: Option<Vec<Spanned<PortItem>>>,
}

impl ConfigFile {
    /// Each key's shared port ranges: `[filter]`'s for its key, and each
    /// `[[filter.shared]]` entry's for its own.
    pub(super) fn shared_ports(
        &self,
        filter: &mut Filter,
        default_key: &Option<FilterKey>,
    ) -> Result<(), ConfigError> {
        let f = &self.raw.filter;
        let (tcp, udp) = (self.ranges(&f.tcp_ports)?, self.ranges(&f.udp_ports)?);
        match default_key {
            Some(k) => {
                filter.set_shared_ports(k, Protocol::Tcp, tcp);
                filter.set_shared_ports(k, Protocol::Udp, udp);
            }
            None => {
                if let Some(item) = f.tcp_ports.iter().chain(&f.udp_ports).flatten().next() {
                    return self.bad(
                        item.span(),
                        "shared ports belong to a filter key: set key in [filter], or list \
                         them under [[filter.shared]] with their key"
                            .into(),
                    );
                }
            }
        }
        let mut seen: Vec<(FilterKey, usize)> =
            default_key.iter().map(|k| (k.clone(), 0)).collect();
        for entry in &f.shared {
            let e = entry.get_ref();
            let key = self.key(&e.key)?;
            if let Some((_, line)) = seen.iter().find(|(k, _)| *k == key) {
                let first = if *line == 0 {
                    "the [filter] key".to_string()
                } else {
                    format!("line {line}")
                };
                return self.bad(
                    e.key.span(),
                    format!("this key's shared ports are given already ({first})"),
                );
            }
            filter.set_shared_ports(&key, Protocol::Tcp, self.ranges(&e.tcp_ports)?);
            filter.set_shared_ports(&key, Protocol::Udp, self.ranges(&e.udp_ports)?);
            seen.push((key, Location::of(&self.text, e.key.span().start).line));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, ConfigError, Overrides, ResolvedConfig};
    use std::path::Path;
    use vnic_adapter::filter::{Exclusive, FilterKey, Protocol, RegisterError};

    const HEAD: &str = "[adapter]\n\
                        tap = \"t0\"\n\
                        addresses = [\"10.0.0.2/24\", \"10.0.0.3/24\"]\n\
                        processors = 4\n\
                        [filter]\n\
                        mode = \"round-robin\"\n\
                        key = \"web1\"\n\
                        tcp_ports = [\"80\", \"8000-8099\"]\n";

    fn load(text: &str) -> Result<ResolvedConfig, ConfigError> {
        parse(text, Path::new("test.toml")).and_then(|f| f.resolve(&Overrides::default()))
    }

    fn error_at(text: &str, line: usize) -> ConfigError {
        let e = load(text).expect_err("should be refused");
        assert_eq!(e.at.map(|a| a.line), Some(line), "{e}");
        e
    }

    fn pair(port: u16, key: &str) -> String {
        format!(
            "[[listener]]\nport = {port}\napp = \"http\"\nprocessor = 0\nkey = \"{key}\"\n\
             [[listener]]\nport = {port}\napp = \"http\"\nprocessor = 1\nkey = \"{key}\"\n"
        )
    }

    const MAIL: &str = "[[filter.shared]]\nkey = \"mail1\"\ntcp_ports = [25]\n";

    #[test]
    fn each_key_shares_only_its_own_ports() {
        // Lines 9-11: MAIL; the listeners from line 12, the second's port
        // on line 18.
        for (port, key, shared) in [
            (25, "mail1", true),
            (8080, "mail1", false),
            (8080, "web1", true),
            (25, "web1", false),
            (25, "any1", true),
            (81, "any1", true),
        ] {
            let text = format!("{HEAD}{MAIL}{}", pair(port, key));
            match load(&text) {
                Ok(r) => {
                    assert!(shared, "port {port} key {key} should be refused");
                    let mail = FilterKey::new("mail1").expect("k");
                    assert_eq!(
                        r.filter
                            .shared_ports(&mail, Protocol::Tcp)
                            .map(ToString::to_string),
                        Some("25".into())
                    );
                }
                Err(e) => {
                    assert!(!shared, "port {port} key {key}: {e}");
                    assert_eq!(e.at.map(|a| a.line), Some(18), "{e}");
                    assert!(
                        matches!(e.rule(), Some(RegisterError::NotShared { .. })),
                        "{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn shared_ports_need_their_key() {
        let e = error_at("[filter]\nmode = \"round-robin\"\ntcp_ports = [80]\n", 3);
        assert_eq!(
            e.message,
            "shared ports belong to a filter key: set key in [filter], or list them under \
             [[filter.shared]] with their key"
        );
        let twice = format!("{HEAD}{MAIL}{MAIL}");
        let e = error_at(&twice, 13);
        assert_eq!(
            e.message,
            "this key's shared ports are given already (line 10)"
        );
        let e = error_at(&format!("{HEAD}[[filter.shared]]\nkey = \"web1\"\n"), 10);
        assert_eq!(
            e.message,
            "this key's shared ports are given already (the [filter] key)"
        );
        let e = error_at(&format!("{HEAD}[[filter.shared]]\nkey = \"9x\"\n"), 10);
        assert!(e.message.starts_with("bad filter key"), "{e}");
    }

    fn two_addresses(extra: &str) -> String {
        format!(
            "[adapter]\ntap = \"t0\"\naddresses = [\"10.0.0.2/24\", \"10.0.0.3/24\"]\n\
             [filter]\n{extra}\
             [[listener]]\nport = 80\napp = \"http\"\nprocessor = 0\naddress = \"10.0.0.2\"\n\
             [[listener]]\nport = 80\napp = \"echo\"\nprocessor = 1\naddress = \"10.0.0.3\"\n"
        )
    }

    #[test]
    fn port_share_enable_is_off_by_default() {
        // The second listener's port is on line 11 (no extra line).
        let e = error_at(&two_addresses(""), 11);
        assert!(
            matches!(
                e.rule(),
                Some(RegisterError::PortInUse {
                    reason: Exclusive::OtherAddress,
                    ..
                })
            ),
            "{e}"
        );
        assert!(
            e.message
                .ends_with("(set port_share_enable = true in [filter] to allow it)"),
            "{e}"
        );
        let e = error_at(&two_addresses("port_share_enable = false\n"), 12);
        assert!(e.message.contains("PORT-SHARE-ENABLE"), "{e}");
        let r = load(&two_addresses("port_share_enable = true\n")).expect("loads");
        assert!(r.filter.port_share());
        assert_eq!(r.listeners.len(), 2);
        let e = error_at(&two_addresses("port_share_enable = \"yes\"\n"), 5);
        assert!(e.message.contains("bool"), "{e}");
    }
}
