//! The file as TOML gives it, before any check: every value with its
//! span, so that each error names its line.

use super::*;

/// The file as TOML gives it, with spans for messages.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) adapter: RawAdapter,
    #[serde(default)]
    pub(super) filter: RawFilter,
    #[serde(default)]
    pub(super) listener: Vec<Spanned<RawListener>>,
    #[serde(default)]
    pub(super) tcp: tcp::RawTcp,
}

/// `tap = "vnic0"`, or with several links (Ethernet failover)
/// `tap = ["vnicA", "vnicB"]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum TapList {
    One(String),
    Many(Vec<String>),
}

impl TapList {
    /// The names, the first link first.
    pub(super) fn names(&self) -> Vec<String> {
        match self {
            TapList::One(n) => vec![n.clone()],
            TapList::Many(v) => v.clone(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdapter {
    pub(super) tap: Option<Spanned<TapList>>,
    #[serde(default)]
    pub(super) addresses: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) host_addresses: Vec<Spanned<String>>,
    pub(super) mac: Option<Spanned<String>>,
    pub(super) mtu: Option<Spanned<i64>>,
    pub(super) processors: Option<Spanned<i64>>,
    pub(super) congestion: Option<Spanned<String>>,
    pub(super) processor_restart: Option<Spanned<String>>,
    pub(super) failback: Option<Spanned<bool>>,
    #[serde(default)]
    pub(super) link_ip: std::collections::BTreeMap<String, Spanned<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilter {
    pub(super) mode: Option<Spanned<String>>,
    pub(super) key: Option<Spanned<String>>,
    pub(super) tcp_ports: Option<Vec<Spanned<PortItem>>>,
    pub(super) udp_ports: Option<Vec<Spanned<PortItem>>>,
    pub(super) port_share_enable: Option<Spanned<bool>>,
    #[serde(default)]
    pub(super) shared: Vec<Spanned<RawShared>>,
}

/// A shared-port item: `80` or `"80"` or `"8000-8099"`.
#[derive(Clone, Debug)]
pub(super) enum PortItem {
    Port(i64),
    Range(String),
}

impl<'de> Deserialize<'de> for PortItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PortItem, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PortItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port (80) or a port range (\"8000-8099\")")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PortItem, E> {
                Ok(PortItem::Port(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PortItem, E> {
                Ok(PortItem::Port(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PortItem, E> {
                Ok(PortItem::Range(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) port: Spanned<i64>,
    pub(super) protocol: Option<Spanned<String>>,
    pub(super) app: Spanned<String>,
    pub(super) processor: Spanned<i64>,
    pub(super) backup: Option<Spanned<i64>>,
    pub(super) address: Option<Spanned<String>>,
    pub(super) key: Option<Spanned<String>>,
    pub(super) targets: Option<Vec<Spanned<String>>>,
    pub(super) command: Option<Spanned<String>>,
    pub(super) congestion: Option<Spanned<String>>,
    pub(super) filter: Option<Spanned<String>>,
}
