//! What a running instance takes in place: a reload's changes (the
//! [`Change`]s of the supervisor's reload plan) and its interface coming back
//! under the same name with a new index.
//!
//! Reload: each kind of change is applied live and nothing is released for
//! it. The new configuration goes to the core
//! ([`crate::instance::InstanceCore::handle_reconfigure`]): election settings
//! and the VIP digest to the election (its rule "Reload"), which advertises
//! them at once and decides; the VIP worker claims and announces an added VIP (on a
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
use crate::health::notify::Notifier;
use crate::health::{self, Tracker};
use crate::net::transport::{DatagramSink, Endpoint};

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
        let old = self.core.config().clone();
        let what: Vec<String> = changes.iter().map(ToString::to_string).collect();
        tracing::info!(instance = %new.name, changes = %what.join(", "),
            "configuration changed in place (reload); nothing released for it");
        if changes.contains(&Change::Vips) {
            let _ = self.ops.send(VipOp::SetVips(new.vips.clone()));
            // The watch's filter names the VIPs: it reopens with the new set.
            self.conflicts.stop();
        }
        if changes.contains(&Change::Announce) {
            let _ = self.ops.send(VipOp::SetAnnounce(new.announce.clone()));
        }
        if changes.contains(&Change::Notify) {
            let fresh = Notifier::start(
                new.name.clone(),
                new.notify.clone(),
                Arc::clone(&self.telemetry.metrics),
                self.releases_done.clone(),
            );
            let mut previous = std::mem::replace(&mut self.notifier, fresh);
            // Hooks already queued still run, under their old configuration.
            tokio::spawn(async move { previous.finish(SHUTDOWN_SLACK).await });
        }
        let tracker = (changes.contains(&Change::Checks) || changes.contains(&Change::Guard))
            .then(|| self.restart_checks(&old, &new));
        let joined_sync_group = new.sync_group.is_some() && old.sync_group != new.sync_group;
        self.core.handle_reconfigure(now, new, tracker);
        let mut result = Ok(());
        if changes.contains(&Change::Peers) || changes.contains(&Change::Transport) {
            result = self.retarget(now, &old);
        }
        if joined_sync_group {
            let board = self.shared.sync.borrow().clone();
            self.core.handle_sync_board(now, &board);
        }
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
        let cfg = self.core.config().clone();
        match self
            .shared
            .transports
            .retarget(&mut self.channel, &endpoint)
        {
            Ok(()) => {
                tracing::info!(instance = %cfg.name, peers = %cfg.peers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                    port = cfg.port, multicast_group = %cfg.multicast_group,
                    "advert transport changed in place (reload)");
                // A new socket starts without the peers' addresses.
                self.refresh_known_sources();
            }
            Err(e) => {
                let why = error_chain(&e);
                tracing::error!(instance = %cfg.name, error = %why,
                    "reload: the new advert transport cannot be opened; keeping the old one");
                self.core.restore_transport(old);
                return Err(format!(
                    "the new advert transport cannot be opened, still on the old one: {why}"
                ));
            }
        }
        let forgotten = self.core.handle_peers_configured(now);
        if !forgotten.is_empty() {
            tracing::info!(instance = %cfg.name, forgotten = %forgotten.join(", "),
                "peers no longer configured are forgotten (reload)");
        }
        Ok(())
    }

    /// The instance's advert endpoint on the link with index `ifindex`.
    fn endpoint(&self, ifindex: u32) -> Endpoint {
        Endpoint::of(
            self.core.config(),
            ifindex,
            self.telemetry.metrics.rejects(),
        )
        .with_vrrp_source(self.core.vrrp_source())
    }

    /// Starts the checks of the new configuration on a fresh channel (so no
    /// late result of an old check is taken for a new one); returns their
    /// tracker, with the running one's state carried over.
    fn restart_checks(&mut self, old: &InstanceConfig, new: &InstanceConfig) -> Tracker {
        for check in self.checks.drain(..) {
            check.abort();
        }
        let (check_tx, check_rx) = mpsc::unbounded_channel();
        self.checks = health::spawn_checks(new, &check_tx);
        let mut tracker = Tracker::new(new);
        tracker.carry_over(self.core.health());
        let new_interfaces: Vec<String> = tracker
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
        tracker
    }

    /// The instance's interface is back under its name with index `ifindex`:
    /// re-open the advert socket on it and move the VIP worker there. If the
    /// socket cannot be opened the instance stays in fault (link down) and
    /// tries again at the link's next event.
    pub(super) fn rebind(&mut self, now: Instant, ifindex: u32, up: bool) {
        let endpoint = self.endpoint(ifindex);
        let sink: Arc<dyn DatagramSink> = self.sink.clone();
        match self.shared.transports.open(&endpoint, sink) {
            Ok(channel) => {
                let cfg = self.core.config();
                tracing::warn!(instance = %cfg.name, interface = %cfg.interface,
                    old_ifindex = self.ifindex, ifindex, up,
                    "the interface was re-created (new index); advert socket and VIPs moved to it");
                self.channel = channel;
                self.refresh_known_sources();
                self.ifindex = ifindex;
                self.conflicts.rebind(self.core.config(), ifindex);
                let _ = self.ops.send(VipOp::Rebind(ifindex));
                // The instance is in fault since the old link went, so it holds
                // nothing; should it still, the claim follows the link.
                self.core.handle_rebound(now, up, self.conflicts.own_mac);
            }
            Err(e) => {
                let cfg = self.core.config();
                tracing::error!(instance = %cfg.name, interface = %cfg.interface, ifindex,
                    error = %error_chain(&e),
                    "the interface was re-created but the advert socket cannot be opened on it; staying in fault");
                self.core.handle_link(now, false);
            }
        }
    }
}
