//! The host side of the TAP: the addresses the host's kernel uses to reach
//! the virtual IPs, and the link state. Done with iproute2's `ip`, which
//! every system vnic runs on has, so vnic carries no netlink code.

use crate::error::AdapterError;
use std::net::IpAddr;
use std::process::Command;

/// Adds `addrs` (address, prefix length) to `tap` on the host side and
/// brings the link up. IPv6 addresses skip duplicate address detection so
/// they are usable at once.
pub fn configure(tap: &str, addrs: &[(IpAddr, u8)]) -> Result<(), AdapterError> {
    for (addr, prefix) in addrs {
        let cidr = format!("{addr}/{prefix}");
        let mut args = vec!["addr", "replace", cidr.as_str(), "dev", tap];
        if addr.is_ipv6() {
            args.push("nodad");
        }
        run(tap, &args)?;
    }
    run(tap, &["link", "set", "dev", tap, "up"])
}

fn run(tap: &str, args: &[&str]) -> Result<(), AdapterError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| AdapterError::HostConfig {
            tap: tap.to_string(),
            what: format!("cannot run `ip` (install iproute2): {e}"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let hint = if msg.contains("Operation not permitted") {
        " (needs root or CAP_NET_ADMIN; or configure the host side yourself and leave out --host-ip)"
    } else {
        ""
    };
    Err(AdapterError::HostConfig {
        tap: tap.to_string(),
        what: format!("`ip {}` failed: {msg}{hint}", args.join(" ")),
    })
}
