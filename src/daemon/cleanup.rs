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
//! An instance etcd decides for (`election = "etcd"`) is released the
//! other way round: its VIPs go first, then the lease of its holder key if
//! that still names this node, so the next holder takes over at once and
//! never while this host still answers.
//!
//! Before it removes a dead master's VIPs it announces their release, signed
//! with the instance's key, so the best backup takes over at once instead of
//! after the master-down interval; with `after_crash = "resume"` and a restart
//! coming, it leaves them for the restarted daemon instead. Which, and why, is
//! in [`crate::instance::crash`]; systemd says how the daemon ended in
//! `$SERVICE_RESULT`, which the caller passes as an [`ExitKind`].
//!
//! What it may not touch: unmarked addresses (an administrator's), interfaces the
//! configuration does not name, and a running daemon's state.
//!
//! [`VIPD_ADDRESS_PROTO`]: crate::net::netlink::VIPD_ADDRESS_PROTO
//! [`VIPD_ROUTE_PROTO`]: crate::net::netlink::VIPD_ROUTE_PROTO

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::state::{ResumeRecord, StateDir};
use super::vips::{remove_routes_in_order, sweep_withdraw_delay};
use super::{error_chain, DaemonError};
use crate::config::{self, Config, InstanceConfig};
use crate::instance::crash::{self, CrashAction, ExitKind, CRASH_WINDOW, RELEASE_LINGER};
use crate::net::netlink::{MarkedAddress, MarkedRoute, Netlink, Released};
use crate::net::transport::{self, Endpoint};
use crate::wire::{self, Advert};

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
    /// Instances whose release it announced to their peers (they held VIPs).
    pub announced: Vec<String>,
    /// Instances whose release it could not announce, with the reason (their
    /// VIPs were removed all the same).
    pub announce_failed: Vec<(String, String)>,
    /// Instances whose VIPs it left in place for the restarted daemon.
    pub kept_for_restart: Vec<String>,
    /// Things worth a line that changed nothing (a crash record that could
    /// not be written, a garbled resume record).
    pub notes: Vec<String>,
}

/// Removes every vipd-marked address on the interfaces the configuration at
/// `config_path` names, after announcing the release of each instance that
/// held some, except those it keeps for a restart (see the module doc).
/// `exit`: how the daemon ended, as systemd reported it.
///
/// A configuration that does not load (a bad edit is a common reason for the
/// daemon to have died) must not stop the clean-up: then every interface's marked
/// addresses go, from the default state directory's lock holder's point of view —
/// the marker is vipd's alone, so nothing else is touched — and nothing is
/// announced (there is no key to sign with).
pub async fn cleanup(config_path: &Path, exit: ExitKind) -> Result<CleanupReport, DaemonError> {
    let mut report = CleanupReport::default();
    let config = match config::load(config_path) {
        Ok(config) => Some(config),
        Err(e) => {
            report.all_interfaces_because =
                Some(format!("{}: {}", config_path.display(), error_chain(&e)));
            None
        }
    };
    let (state_dir, withdraw_delay) = match &config {
        Some(config) => (config.node.state_dir.clone(), sweep_withdraw_delay(config)),
        None => (
            config::defaults::STATE_DIR.into(),
            config::defaults::ROUTE_WITHDRAW_DELAY,
        ),
    };
    // While a daemon runs, its marked addresses are its VIPs: refuse. The lock is
    // free once the daemon has exited, whatever way it exited.
    let state = StateDir::new(&state_dir);
    let _lock = state.lock()?;
    let netlink = Netlink::connect().map_err(|source| DaemonError::Netlink {
        what: "connecting",
        source,
    })?;
    let marked = netlink
        .marked_addresses()
        .await
        .map_err(|source| DaemonError::Netlink {
            what: "listing vipd-marked addresses",
            source,
        })?;
    let mut keep: BTreeSet<(u32, IpAddr)> = BTreeSet::new();
    let mut indexes = None;
    let mut store_held = Vec::new();
    if let Some(config) = &config {
        let held = held_by_instance(&netlink, config, &marked).await;
        indexes = Some(held.iter().map(|h| h.ifindex).collect::<BTreeSet<u32>>());
        let plan = plan(&state, config, exit, &held, &mut report);
        let mut announced_any = false;
        for (held, action) in held.iter().zip(plan) {
            if held.addresses.is_empty() && held.routed_vips == 0 {
                continue;
            }
            if held.cfg.uses_store() {
                // etcd decides: the VIPs go first (below), then the lease.
                store_held.push(held.cfg);
                continue;
            }
            match action {
                CrashAction::Resume => {
                    keep.extend(held.addresses.iter().map(|a| (a.ifindex, a.addr)));
                    report.kept_for_restart.push(held.cfg.name.clone());
                }
                CrashAction::Handover => {
                    announced_any = true;
                    let announced = if held.cfg.protocol.vrrp().is_some() {
                        announce_vrrp_release(&netlink, held.cfg, held.ifindex).await
                    } else {
                        announce_release(&state, config, held.cfg, held.ifindex)
                    };
                    match announced {
                        Ok(()) => report.announced.push(held.cfg.name.clone()),
                        Err(why) => report.announce_failed.push((held.cfg.name.clone(), why)),
                    }
                }
            }
        }
        if announced_any {
            // Make-before-break, as a live master's step-down: the successor's
            // claim and gratuitous ARP land while this host still answers.
            tokio::time::sleep(RELEASE_LINGER).await;
        }
    }
    for address in marked {
        if indexes
            .as_ref()
            .is_some_and(|i| !i.contains(&address.ifindex))
            || keep.contains(&(address.ifindex, address.addr))
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
    // The VIPs are gone: the lease of each holder key still naming this
    // node may go too, so the next holder takes over now rather than after
    // lease_ttl (fail-closed: never before this host let go).
    if let Some(config) = &config {
        for cfg in store_held {
            match release_store_holder(config, cfg).await {
                Ok(true) => report.announced.push(cfg.name.clone()),
                Ok(false) => {}
                Err(why) => report.announce_failed.push((cfg.name.clone(), why)),
            }
        }
    }
    // Routes live on lo whatever the instance's interface, and their protocol
    // number is vipd's alone: all of them go, as a live release removes them:
    // the fabric stops sending to this host (withdraw_delay) before the host
    // stops accepting (the service may outlive the daemon). (Routed mode
    // never resumes: its configuration is refused.)
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

/// `election = "etcd"`: revokes the lease of the instance's holder key if
/// the key still names this node (the member record goes with it). True
/// when it revoked one. Patroni's keys are Patroni's: nothing to do.
async fn release_store_holder(config: &Config, cfg: &InstanceConfig) -> Result<bool, String> {
    let (Some(etcd), Some(store)) = (&config.node.etcd, &cfg.store) else {
        return Ok(false);
    };
    if store.follow.is_some() {
        return Ok(false);
    }
    let client = crate::etcd::Client::new(etcd.client_settings()).map_err(|e| error_chain(&e))?;
    let key = crate::store::holder_key(&crate::store::instance_dir(&etcd.prefix, &cfg.name));
    let bound = etcd.request_timeout * 2;
    let work = async {
        let (kv, _) = client.get(&key).await?;
        match kv.filter(|kv| kv.value == config.node.name.as_bytes() && kv.lease != 0) {
            Some(kv) => client.revoke(kv.lease).await.map(|()| true),
            None => Ok(false),
        }
    };
    match tokio::time::timeout(bound, work).await {
        Ok(result) => result.map_err(|e| error_chain(&e)),
        Err(_) => Err(format!(
            "etcd did not answer within {} ms; the lease expires after lease_ttl",
            bound.as_millis()
        )),
    }
}

/// One configured instance and what of it is still on the node.
struct Held<'a> {
    cfg: &'a InstanceConfig,
    /// Its interface's index (0: the interface is gone).
    ifindex: u32,
    /// Its VIPs still configured with vipd's marker.
    addresses: Vec<MarkedAddress>,
    /// Routed mode: how many of its VIPs still have vipd's routes.
    routed_vips: usize,
}

async fn held_by_instance<'a>(
    netlink: &Netlink,
    config: &'a Config,
    marked: &[MarkedAddress],
) -> Vec<Held<'a>> {
    let routes = netlink.marked_routes().await.unwrap_or_default();
    let mut out = Vec::new();
    for cfg in &config.instances {
        // An interface that is gone has no addresses left to remove.
        let ifindex = netlink
            .link_by_name(&cfg.interface)
            .await
            .map_or(0, |link| link.index);
        let is_vip = |addr: IpAddr| cfg.vips.iter().any(|v| v.addr == addr);
        let addresses = marked
            .iter()
            .filter(|m| ifindex != 0 && m.ifindex == ifindex && is_vip(m.addr))
            .copied()
            .collect();
        let routed_vips = if cfg.route.is_some() {
            routes.iter().filter(|r| is_vip(r.addr)).count()
        } else {
            0
        };
        out.push(Held {
            cfg,
            ifindex,
            addresses,
            routed_vips,
        });
    }
    out
}

/// The rules of [`crate::instance::crash`] for each held instance, with the
/// node's crash record brought up to date and the resume record written for
/// the instances kept (a record that cannot be written keeps nothing).
fn plan(
    state: &StateDir,
    config: &Config,
    exit: ExitKind,
    held: &[Held<'_>],
    report: &mut CleanupReport,
) -> Vec<CrashAction> {
    let now_ms = unix_ms();
    let crashes = if exit.is_crash() {
        match state.record_crash(now_ms, CRASH_WINDOW) {
            Ok(times) => times.len(),
            Err(e) => {
                report.notes.push(format!(
                    "cannot record the crash in {}: {e}",
                    config.node.state_dir.display()
                ));
                state.crash_times().len() + 1
            }
        }
    } else {
        0
    };
    // A record still there means the restart it was written for never came
    // up: do not count on another one.
    let resume_pending = match state.take_resume() {
        Ok(found) => found.is_some(),
        Err(e) => {
            report
                .notes
                .push(format!("ignoring a garbled resume record: {e}"));
            true
        }
    };
    let mut actions: Vec<CrashAction> = held
        .iter()
        .map(|h| crash::after_exit(h.cfg.after_crash, exit, crashes, resume_pending))
        .collect();
    let kept: Vec<String> = held
        .iter()
        .zip(&actions)
        .filter(|(h, a)| **a == CrashAction::Resume && !h.addresses.is_empty())
        .map(|(h, _)| h.cfg.name.clone())
        .collect();
    if !kept.is_empty() {
        let record = ResumeRecord {
            at_ms: now_ms,
            instances: kept,
        };
        if let Err(e) = state.save_resume(&record) {
            report.notes.push(format!(
                "cannot write the resume record in {}: {e}; handing over instead",
                config.node.state_dir.display()
            ));
            actions.fill(CrashAction::Handover);
        }
    }
    actions
}

/// VRRP mode: sends the priority-0 advert the dead master would have sent
/// (RFC 9568 §6.4.3), from the address it sent from, so its VRRP peers take
/// over after their skew time instead of the master-down interval.
async fn announce_vrrp_release(
    netlink: &Netlink,
    cfg: &InstanceConfig,
    ifindex: u32,
) -> Result<(), String> {
    if ifindex == 0 {
        return Err(format!("interface {} is gone", cfg.interface));
    }
    let source = match cfg.protocol.vrrp().and_then(|v| v.source) {
        Some(source) => source,
        None => {
            let ipv6 = cfg.vips.first().is_some_and(|v| v.addr.is_ipv6());
            let vips: Vec<IpAddr> = cfg.vips.iter().map(|v| v.addr).collect();
            netlink
                .vrrp_source(ifindex, ipv6, &vips)
                .await
                .map_err(|e| error_chain(&e))?
                .ok_or_else(|| format!("interface {} has no address to send from", cfg.interface))?
        }
    };
    let message = match crate::instance::vrrp_release_message(cfg) {
        Some(Ok(message)) => message,
        Some(Err(e)) => return Err(format!("encoding the VRRP release: {e}")),
        None => return Err(format!("{} does not speak VRRP", cfg.name)),
    };
    let endpoint = Endpoint::of(cfg, ifindex, Arc::default()).with_vrrp_source(Some(source));
    transport::send_without_daemon(&endpoint, &[message]).map_err(|e| error_chain(&e))
}

/// Sends the release the dead master would have sent (two copies, in case one
/// is lost), under a boot id above every earlier one of this node, so the
/// peers' replay guards accept it and the restarted daemon's are above it.
fn announce_release(
    state: &StateDir,
    config: &Config,
    cfg: &InstanceConfig,
    ifindex: u32,
) -> Result<(), String> {
    if ifindex == 0 {
        return Err(format!("interface {} is gone", cfg.interface));
    }
    let boot_id = state.next_boot_id();
    let body = crash::release_body(cfg, config.node.node_id, &config.node.name);
    let extensions = [wire::software_version_extension()];
    let datagrams = (1..=2)
        .map(|sequence| {
            let advert = Advert {
                body: body.clone(),
                boot_id,
                sequence,
            };
            wire::encode_with_extensions(&advert, &extensions, &cfg.auth)
                .map_err(|e| format!("encoding the release: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let endpoint = Endpoint::of(cfg, ifindex, Arc::default());
    transport::send_without_daemon(&endpoint, &datagrams).map_err(|e| error_chain(&e))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
