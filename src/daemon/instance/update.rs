//! What a running instance takes in place: a reload's changes (the
//! [`Change`]s of the supervisor's reload plan) and its interface coming back
//! under the same name with a new index.
//!
//! Reload: each kind of change is applied live and nothing is released for
//! it. Election settings and the VIP digest go to the election
//! ([`crate::election::Election::handle_settings`], its rule "Reload"), which advertises them at
//! once and decides; the VIP worker claims and announces an added VIP (on a
//! master) and releases a removed one, leaving the others as they are; new
//! hooks serve the next transitions; the health checks restart with the
//! tracker's state carried over for every check that is still configured
//! ([`Tracker::carry_over`]), so an unchanged check does not flap and a
//! changed guard keeps its last result until the new check reports. A new
//! advert transport (`peers`, `port`, `multicast_group`) is taken by
//! [`crate::net::transport::Transports::retarget`]: the same socket with new
//! peers, or the new socket joined before the old one is left; then the
//! election forgets the peers no longer configured (by the source address
//! each was last heard from).
//!
//! Interface re-created (`ip link del` + `ip link add` of the same name): the
//! old link's removal puts the instance in fault (interface down), as any
//! link loss does. When a link with the instance's interface name appears with
//! another index, the instance re-opens its advert socket on it and points its
//! VIP worker (addresses, announcements) at it, then follows that link's state:
//! no restart, and the election decides once the link is up.
//!
//! What it may not touch: the election's rules (it feeds inputs) and the
//! kernel's addresses (the VIP worker's).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::{look_up_links, Instance};
use crate::config::InstanceConfig;
use crate::daemon::reload::Change;
use crate::daemon::vips::VipOp;
use crate::daemon::{error_chain, SHUTDOWN_SLACK};
use crate::election::Settings;
use crate::health::notify::Notifier;
use crate::health::{self, Tracker};
use crate::net::transport::Endpoint;
use crate::wire;

/// The election settings of an instance configuration: what the election
/// starts with and what a reload hands it.
pub(in crate::daemon) fn election_settings(cfg: &InstanceConfig) -> Settings {
    Settings {
        priority: cfg.priority,
        advert_interval: cfg.advert_interval,
        backup_advert_interval: cfg.backup_advert_interval,
        takeover_margin: cfg.takeover_margin,
        handover_timeout: cfg.handover_timeout,
        preempt: cfg.preempt,
        preempt_delay: cfg.preempt_delay,
        vip_digest: wire::vip_digest(cfg.vips.iter().map(|v| (v.addr, v.prefix_len))),
    }
}

impl Instance {
    /// Applies a reload's `changes`; `new` differs from the running
    /// configuration in those alone (the reload plan's promise).
    /// Takes a reload's changes in place. `Err` says what did not take (the
    /// new advert transport could not be opened; the instance runs on with
    /// its old one), for `vipd reload` to report.
    pub(super) fn apply_update(
        &mut self,
        now: Instant,
        new: InstanceConfig,
        changes: &[Change],
    ) -> Result<(), String> {
        let old = std::mem::replace(&mut self.cfg, new);
        let what: Vec<String> = changes.iter().map(ToString::to_string).collect();
        tracing::info!(instance = %self.cfg.name, changes = %what.join(", "),
            "configuration changed in place (reload); nothing released for it");
        self.conflicts.reconfigure(&self.cfg);
        if changes.contains(&Change::Vips) {
            let _ = self.ops.send(VipOp::SetVips(self.cfg.vips.clone()));
            // The watch's filter names the VIPs: it reopens with the new set.
            self.conflicts.stop();
        }
        if changes.contains(&Change::Announce) {
            let _ = self.ops.send(VipOp::SetAnnounce(self.cfg.announce.clone()));
        }
        if changes.contains(&Change::Election) || changes.contains(&Change::Vips) {
            self.election
                .handle_settings(now, election_settings(&self.cfg));
        }
        if changes.contains(&Change::Notify) {
            let fresh = Notifier::start(
                self.cfg.name.clone(),
                self.cfg.notify.clone(),
                Arc::clone(&self.telemetry.metrics),
            );
            let mut previous = std::mem::replace(&mut self.notifier, fresh);
            // Hooks already queued still run, under their old configuration.
            tokio::spawn(async move { previous.finish(SHUTDOWN_SLACK).await });
        }
        if changes.contains(&Change::Checks) || changes.contains(&Change::Guard) {
            self.restart_checks(&old);
        }
        if self.cfg.guard.as_ref().is_none_or(|g| !g.quorum) {
            self.health.set_quorum_fault(None);
        }
        let mut result = Ok(());
        if changes.contains(&Change::Peers) || changes.contains(&Change::Transport) {
            result = self.retarget(now, &old);
        }
        if changes.contains(&Change::SyncGroup) {
            self.published_fault = None;
            if self.cfg.sync_group.is_some() {
                let board = self.shared.sync.borrow().clone();
                self.on_sync_board(now, &board);
            } else {
                self.health.set_sync_fault(None);
                self.health.set_sync_weights(Vec::new());
                let name = self.cfg.name.clone();
                self.shared
                    .sync
                    .send_if_modified(|board| board.remove(&name).is_some());
            }
        }
        self.apply_health(now);
        result
    }

    /// The advert transport of the new configuration: the same socket with the
    /// new peers, or a new socket joined before the old one is left
    /// (`Transports::retarget`); then the peers no longer configured are
    /// forgotten. If the new socket cannot be opened (its port taken) the
    /// instance keeps its old transport and configuration for it, and logs
    /// the error; a restart of the instance, or a later reload that changes
    /// the transport again, tries again.
    fn retarget(&mut self, now: Instant, old: &InstanceConfig) -> Result<(), String> {
        let endpoint = self.endpoint(self.ifindex);
        match self
            .shared
            .transports
            .retarget(&mut self.channel, &endpoint)
        {
            Ok(queued) => {
                tracing::info!(instance = %self.cfg.name, peers = %self.cfg.peers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                    port = self.cfg.port, multicast_group = %self.cfg.multicast_group,
                    "advert transport changed in place (reload)");
                self.replaced_channel = true;
                for datagram in queued {
                    self.on_datagram(now, datagram);
                }
            }
            Err(e) => {
                let why = error_chain(&e);
                tracing::error!(instance = %self.cfg.name, error = %why,
                    "reload: the new advert transport cannot be opened; keeping the old one");
                self.cfg.peers.clone_from(&old.peers);
                self.cfg.port = old.port;
                self.cfg.multicast_group = old.multicast_group;
                return Err(format!(
                    "the new advert transport cannot be opened, still on the old one: {why}"
                ));
            }
        }
        if self.cfg.peers.is_empty() {
            // Multicast: every node on the link is heard, nobody is forgotten.
            return Ok(());
        }
        let removed: Vec<u64> = self
            .sources
            .iter()
            .filter(|(_, addr)| !self.cfg.peers.contains(addr))
            .map(|(id, _)| *id)
            .collect();
        if !removed.is_empty() {
            let names: Vec<String> = self
                .election
                .peers()
                .filter(|p| removed.contains(&p.node_id))
                .map(|p| p.name.clone())
                .collect();
            tracing::info!(instance = %self.cfg.name, forgotten = %names.join(", "),
                "peers no longer configured are forgotten (reload)");
            self.sources.retain(|id, _| !removed.contains(id));
            self.election.handle_peers_removed(&removed);
            self.refresh_known_sources();
        }
        Ok(())
    }

    /// The instance's advert endpoint on the link with index `ifindex`.
    fn endpoint(&self, ifindex: u32) -> Endpoint {
        Endpoint {
            interface: self.cfg.interface.clone(),
            ifindex,
            group: self.cfg.group,
            port: self.cfg.port,
            multicast_group: self.cfg.multicast_group,
            peers: self.cfg.peers.clone(),
            rejects: self.telemetry.metrics.rejects(),
            min_ttl: self.cfg.min_ttl(),
        }
    }

    /// Starts the checks of the new configuration on a fresh channel (so no
    /// late result of an old check is taken for a new one) with the tracker's
    /// state carried over.
    fn restart_checks(&mut self, old: &InstanceConfig) {
        for check in self.checks.drain(..) {
            check.abort();
        }
        let (check_tx, check_rx) = mpsc::unbounded_channel();
        self.checks = health::spawn_checks(&self.cfg, &check_tx);
        let mut tracker = Tracker::new(&self.cfg);
        tracker.carry_over(&self.health);
        self.health = tracker;
        let new_interfaces: Vec<String> = self
            .health
            .tracked_interfaces()
            .filter(|name| !old.track_interfaces.iter().any(|t| t.interface == *name))
            .map(str::to_owned)
            .collect();
        if !new_interfaces.is_empty() {
            self.checks.push(tokio::spawn(look_up_links(
                self.shared.netlink.clone(),
                new_interfaces,
                check_tx.clone(),
            )));
        }
        self.check_tx = check_tx;
        self.replaced_checks = Some(check_rx);
    }

    /// The instance's interface is back under its name with index `ifindex`:
    /// re-open the advert socket on it and move the VIP worker there. If the
    /// socket cannot be opened the instance stays in fault (link down) and
    /// tries again at the link's next event.
    pub(super) fn rebind(&mut self, now: Instant, ifindex: u32, up: bool) {
        let endpoint = self.endpoint(ifindex);
        match self.shared.transports.open(&endpoint) {
            Ok(channel) => {
                tracing::warn!(instance = %self.cfg.name, interface = %self.cfg.interface,
                    old_ifindex = self.ifindex, ifindex, up,
                    "the interface was re-created (new index); advert socket and VIPs moved to it");
                self.channel = channel;
                self.replaced_channel = true;
                self.ifindex = ifindex;
                self.conflicts.rebind(&self.cfg, ifindex);
                let _ = self.ops.send(VipOp::Rebind(ifindex));
                // The instance is in fault since the old link went, so it holds
                // nothing; should it still, the claim follows the link.
                self.link_up = false;
                self.set_link(now, up);
            }
            Err(e) => {
                tracing::error!(instance = %self.cfg.name, interface = %self.cfg.interface, ifindex,
                    error = %error_chain(&e),
                    "the interface was re-created but the advert socket cannot be opened on it; staying in fault");
                self.set_link(now, false);
            }
        }
    }
}
