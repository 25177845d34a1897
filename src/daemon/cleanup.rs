//! `vipd cleanup`: removes the VIPs a dead daemon left behind: marked addresses
//! and, for routed mode, every route carrying vipd's protocol number
//! ([`VIPD_ROUTE_PROTO`]), the announced ones first, so a crash leaves nothing
//! announced to the fabric.
//!
//! systemd runs it as the unit's `ExecStopPost`, which runs after *any* exit of
//! the daemon: a clean stop (nothing left to do), a crash, `SIGKILL`, or the
//! watchdog's abort — the exits after which nobody else would ever remove the
//! addresses while the backup takes over (FIELD-NOTES 18, 25). An operator can run
//! it by hand too: it is idempotent and safe at any time, because it removes only
//! addresses carrying vipd's marker ([`VIPD_ADDRESS_PROTO`]) and refuses to run
//! while a daemon holds the state directory's lock — a live master's VIPs are its
//! own.
//!
//! What it may not touch: unmarked addresses (an administrator's), interfaces the
//! configuration does not name, and a running daemon's state.
//!
//! [`VIPD_ADDRESS_PROTO`]: crate::net::netlink::VIPD_ADDRESS_PROTO
//! [`VIPD_ROUTE_PROTO`]: crate::net::netlink::VIPD_ROUTE_PROTO

use std::collections::BTreeSet;
use std::path::Path;

use super::state::StateDir;
use super::vips::{remove_routes_in_order, sweep_withdraw_delay};
use super::{error_chain, DaemonError};
use crate::config;
use crate::net::netlink::{MarkedAddress, MarkedRoute, Netlink, Released};

/// What [`cleanup`] did.
#[derive(Debug, Default)]
pub struct CleanupReport {
    /// The marked addresses it removed.
    pub removed: Vec<MarkedAddress>,
    /// Marked addresses it could not remove, with the reason.
    pub failed: Vec<(MarkedAddress, String)>,
    /// vipd's routes (routed mode) it removed, announced ones first.
    pub removed_routes: Vec<MarkedRoute>,
    /// vipd's routes it could not remove, with the reason.
    pub failed_routes: Vec<(MarkedRoute, String)>,
    /// Why it looked at every interface instead of the configured ones (the
    /// configuration did not load), if it did.
    pub all_interfaces_because: Option<String>,
}

/// Removes every vipd-marked address on the interfaces the configuration at
/// `config_path` names.
///
/// A configuration that does not load (a bad edit is a common reason for the
/// daemon to have died) must not stop the clean-up: then every interface's marked
/// addresses go, from the default state directory's lock holder's point of view —
/// the marker is vipd's alone, so nothing else is touched.
pub async fn cleanup(config_path: &Path) -> Result<CleanupReport, DaemonError> {
    let mut report = CleanupReport::default();
    let (state_dir, interfaces, withdraw_delay) = match config::load(config_path) {
        Ok(config) => {
            let names: BTreeSet<String> = config
                .instances
                .iter()
                .map(|i| i.interface.clone())
                .collect();
            let delay = sweep_withdraw_delay(&config);
            (config.node.state_dir, Some(names), delay)
        }
        Err(e) => {
            report.all_interfaces_because =
                Some(format!("{}: {}", config_path.display(), error_chain(&e)));
            (
                config::defaults::STATE_DIR.into(),
                None,
                config::defaults::ROUTE_WITHDRAW_DELAY,
            )
        }
    };
    // While a daemon runs, its marked addresses are its VIPs: refuse. The lock is
    // free once the daemon has exited, whatever way it exited.
    let _lock = StateDir::new(&state_dir).lock()?;
    let netlink = Netlink::connect().map_err(|source| DaemonError::Netlink {
        what: "connecting",
        source,
    })?;
    let mut indexes = None;
    if let Some(names) = &interfaces {
        let mut found = BTreeSet::new();
        for name in names {
            // An interface that is gone has no addresses left to remove.
            if let Ok(link) = netlink.link_by_name(name).await {
                found.insert(link.index);
            }
        }
        indexes = Some(found);
    }
    let marked = netlink
        .marked_addresses()
        .await
        .map_err(|source| DaemonError::Netlink {
            what: "listing vipd-marked addresses",
            source,
        })?;
    for address in marked {
        if indexes
            .as_ref()
            .is_some_and(|i| !i.contains(&address.ifindex))
        {
            continue;
        }
        match netlink
            .release(address.ifindex, address.addr, address.prefix_len)
            .await
        {
            Ok(Released::Removed) => report.removed.push(address),
            // Marked when listed, unmarked now: someone replaced it meanwhile.
            Ok(Released::LeftAlone) => {}
            Err(e) => report.failed.push((address, error_chain(&e))),
        }
    }
    // Routes live on lo whatever the instance's interface, and their protocol
    // number is vipd's alone: all of them go, as a live release removes them:
    // the fabric stops sending to this host (withdraw_delay) before the host
    // stops accepting (the service may outlive the daemon).
    let routes = netlink
        .marked_routes()
        .await
        .map_err(|source| DaemonError::Netlink {
            what: "listing vipd's routes",
            source,
        })?;
    for (route, outcome) in remove_routes_in_order(&netlink, routes, withdraw_delay).await {
        match outcome {
            Ok(()) => report.removed_routes.push(route),
            Err(e) => report.failed_routes.push((route, error_chain(&e))),
        }
    }
    Ok(report)
}
