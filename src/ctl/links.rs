//! The links part of `vnic status`'s table (several TAPs: Ethernet
//! failover): one summary line, as the issue's example shows it
//! (`links: vnicA down (failed 12:03:04), vnicB active; sessions moved:
//! 37`), a row per link, and the last transitions.

use vnic_listeners::control::LinksReport;

/// The clock time (`12:03:04`) of an RFC 3339 stamp, or the stamp.
fn clock(stamp: &str) -> &str {
    stamp
        .split_once('T')
        .map_or(stamp, |(_, t)| t.get(..8).unwrap_or(t))
}

/// The links' lines of the status table.
pub fn links_table(l: &LinksReport) -> String {
    let summary: Vec<String> = l
        .links
        .iter()
        .map(|k| match (&k.failed_at, k.state.as_str()) {
            (Some(at), "down") => format!("{} down (failed {})", k.name, clock(at)),
            _ => format!("{} {}", k.name, k.state),
        })
        .collect();
    let mut s = format!(
        "\nlinks: {}; failovers: {}; sessions moved: {}\n",
        summary.join(", "),
        l.failovers,
        l.sessions_moved
    );
    s.push_str(&format!(
        "{:<15} {:<17} {:<8} {:<10} {:<8} {:>8} {:>7} {:>9} {:>9} {:<15}\n",
        "link",
        "mac",
        "state",
        "cause",
        "failed",
        "failures",
        "resent",
        "io-errors",
        "announced",
        "link-ip"
    ));
    for k in &l.links {
        s.push_str(&format!(
            "{:<15} {:<17} {:<8} {:<10} {:<8} {:>8} {:>7} {:>9} {:>9} {:<15}\n",
            k.name,
            k.mac,
            k.state,
            k.cause.as_deref().unwrap_or("-"),
            k.failed_at.as_deref().map_or("-", clock),
            k.failures,
            k.resent,
            k.io_errors,
            k.announcements,
            k.link_ip.as_deref().unwrap_or("-")
        ));
    }
    for h in &l.history {
        s.push_str(&format!("  {h}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnic_listeners::control::LinkStatus;

    #[test]
    fn summary_line_reads_as_the_issue_shows_it() {
        let r = LinksReport {
            links: vec![
                LinkStatus {
                    name: "vnicA".into(),
                    state: "down".into(),
                    failed_at: Some("2026-12-05T12:03:04.120Z".into()),
                    ..LinkStatus::default()
                },
                LinkStatus {
                    name: "vnicB".into(),
                    state: "active".into(),
                    ..LinkStatus::default()
                },
            ],
            failovers: 1,
            sessions_moved: 37,
            history: vec![],
        };
        let t = links_table(&r);
        assert!(
            t.contains("links: vnicA down (failed 12:03:04), vnicB active; failovers: 1; sessions moved: 37"),
            "{t}"
        );
    }
}
