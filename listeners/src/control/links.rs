//! The links of an adapter with several TAPs (Ethernet failover) as the
//! control socket shows them: `vnic status` (table and JSON) and what
//! `vnic ctl link NAME down|up` changes.

use crate::stats::rfc3339;
use serde::{Deserialize, Serialize};
use vnic_adapter::link::LinksStatus;

/// The links in `vnic status` (absent with one TAP).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinksReport {
    /// Every link, in `--tap` order.
    pub links: Vec<LinkStatus>,
    /// Times another link took over (failbacks included).
    pub failovers: u64,
    /// Connections established at the moments of takeover, summed.
    pub sessions_moved: u64,
    /// The last transitions, oldest first: `RFC3339 text`.
    #[serde(default)]
    pub history: Vec<String>,
}

/// One link in [`LinksReport`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// TAP name.
    pub name: String,
    /// The link's MAC.
    pub mac: String,
    /// "active", "standby" or "down".
    pub state: String,
    /// Why it is down: "host-down", "deleted", "io-error", "admin-down".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// When it last failed (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<String>,
    /// Times it failed.
    pub failures: u64,
    /// Frames whose write failed on another link, sent again on this one.
    pub resent: u64,
    /// Writes or reads on it that failed.
    pub io_errors: u64,
    /// Announcement frames sent on it (gratuitous ARP, unsolicited NA).
    pub announcements: u64,
    /// The link's reserved address (`--link-ip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_ip: Option<String>,
}

impl From<LinksStatus> for LinksReport {
    fn from(s: LinksStatus) -> LinksReport {
        LinksReport {
            links: s
                .links
                .into_iter()
                .map(|l| LinkStatus {
                    name: l.name,
                    mac: l.mac,
                    state: l.state,
                    cause: l.cause,
                    failed_at: l.failed_at.map(rfc3339),
                    failures: l.failures,
                    resent: l.resent,
                    io_errors: l.io_errors,
                    announcements: l.announcements,
                    link_ip: l.link_ip.map(|ip| ip.to_string()),
                })
                .collect(),
            failovers: s.failovers,
            sessions_moved: s.sessions_moved,
            history: s
                .history
                .into_iter()
                .map(|(t, text)| format!("{} {text}", rfc3339(t)))
                .collect(),
        }
    }
}

impl crate::control::Runtime {
    /// `vnic ctl link NAME down|up`.
    pub(crate) fn link(&self, name: &str, state: &str) -> crate::control::Response {
        use crate::control::Response;
        let up = match state {
            "up" => true,
            "down" => false,
            other => return Response::error(format!("state {other:?}: use up or down")),
        };
        let Some(links) = &self.links else {
            return Response::error(
                "this vnic has one link: failover needs several (vnic up --tap A --tap B)",
            );
        };
        match links.admin(name, up) {
            Ok(()) => {
                let s = links.status();
                let now: Vec<String> = s
                    .links
                    .iter()
                    .map(|l| format!("{} {}", l.name, l.state))
                    .collect();
                Response {
                    notes: vec![format!("links: {}", now.join(", "))],
                    ..Response::ok()
                }
            }
            Err(e) => Response::error(e),
        }
    }
}
