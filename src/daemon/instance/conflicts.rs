//! The driver's side of the conflict watch ([`crate::conflict`], run by the
//! instance core): a kernel-filtered packet socket whose sightings go to the
//! core (open only while the watch wants them), this node's MAC, and the log
//! lines and history entries of the watch's events.
//!
//! What it may not touch: any rule (when to re-announce, whether a claim goes
//! ahead is the watch's, in the core); it moves sightings and results.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::super::error_chain;
use super::Instance;
use crate::config::InstanceConfig;
use crate::conflict::Sighting;
use crate::instance::Event;
use crate::net::announce;
use crate::net::neighbour_watch::NeighbourWatch;

/// Sightings queued between the packet socket's task and the instance: a
/// flood of forged claims fills it and the rest are dropped (the watch needs
/// a sighting per re-announce gap, not every one).
const SIGHTING_QUEUE: usize = 64;
/// After a failed read the watch task waits this long (bounded log and work).
const READ_RETRY: Duration = Duration::from_secs(1);
/// At most one sighting per this long is read (see `read_sightings`).
const REPEAT_COALESCE: Duration = Duration::from_millis(10);
/// After a failed open, the next try waits this long.
const OPEN_RETRY: Duration = Duration::from_secs(1);

/// The ARP/NA watch's socket with what drives it.
pub(crate) struct Conflicts {
    /// This node's MAC on the instance's interface, as last read.
    pub(in crate::daemon) own_mac: Option<[u8; 6]>,
    /// Taken by the instance's task, which waits on it.
    pub(super) sightings: Option<mpsc::Receiver<Sighting>>,
    sightings_tx: mpsc::Sender<Sighting>,
    /// The packet socket's task and the interface index it watches.
    task: Option<(u32, JoinHandle<()>)>,
    /// Routed mode: no ARP/NA, nothing to watch or probe.
    routed: bool,
    /// The watch could not open: logged once until it opens again, and not
    /// tried again before this (a failing open on every wake-up would cost a
    /// system call per advert).
    open_failed: Option<Instant>,
}

impl Conflicts {
    pub(crate) fn new(cfg: &InstanceConfig, ifindex: u32) -> Self {
        let routed = cfg.route.is_some();
        let (sightings_tx, sightings) = mpsc::channel(SIGHTING_QUEUE);
        let own_mac = if routed {
            None
        } else {
            read_own_mac(&cfg.name, ifindex, &cfg.interface)
        };
        Self {
            own_mac,
            sightings: Some(sightings),
            sightings_tx,
            task: None,
            routed,
            open_failed: None,
        }
    }

    /// The interface was re-created with a new index: a new MAC, perhaps.
    pub(super) fn rebind(&mut self, cfg: &InstanceConfig, ifindex: u32) {
        if self.routed {
            return;
        }
        self.own_mac = read_own_mac(&cfg.name, ifindex, &cfg.interface);
        self.stop();
    }

    /// Opens or closes the packet socket as the core wants sightings or not.
    pub(super) fn sync_task(
        &mut self,
        now: Instant,
        cfg: &InstanceConfig,
        ifindex: u32,
        wants_sightings: bool,
    ) {
        let wanted = !self.routed && self.own_mac.is_some() && wants_sightings;
        if self.task.is_none() && !wanted {
            return;
        }
        if let Some((watched, task)) = &self.task {
            if wanted && *watched == ifindex && !task.is_finished() {
                return;
            }
            self.stop();
        }
        if !wanted
            || self
                .open_failed
                .is_some_and(|at| now.saturating_duration_since(at) < OPEN_RETRY)
        {
            return;
        }
        let vips: Vec<IpAddr> = cfg.vips.iter().map(|v| v.addr).collect();
        match NeighbourWatch::open(ifindex, &cfg.interface, &vips) {
            Ok(watch) => {
                if self.open_failed.take().is_some() {
                    tracing::info!(instance = %cfg.name, "watching ARP/NA for the VIPs again");
                }
                let tx = self.sightings_tx.clone();
                let name = cfg.name.clone();
                self.task = Some((ifindex, tokio::spawn(read_sightings(watch, tx, name))));
            }
            Err(e) => {
                if self.open_failed.replace(now).is_none() {
                    tracing::warn!(instance = %cfg.name, error = %error_chain(&e),
                        "cannot watch ARP/NA for the VIPs: another host claiming one would go unnoticed; retrying every second");
                }
            }
        }
    }

    pub(super) fn stop(&mut self) {
        if let Some((_, task)) = self.task.take() {
            task.abort();
        }
    }
}

fn read_own_mac(instance: &str, ifindex: u32, ifname: &str) -> Option<[u8; 6]> {
    match announce::interface_mac(ifindex, ifname) {
        Ok(mac) => Some(mac),
        Err(e) => {
            tracing::warn!(%instance, error = %error_chain(&e),
                "cannot read this node's MAC: foreign claims of the VIPs go unnoticed and no probe runs");
            None
        }
    }
}

/// Reads the packet socket until the instance stops it, at most one sighting
/// per [`REPEAT_COALESCE`]: after each one it pauses, and what arrives
/// meanwhile waits in the socket's small queue or is dropped by the kernel.
/// So a flood of claims costs about 100 reads and instance wake-ups a second,
/// not one per frame (the watch's rules need one claim per re-announce gap;
/// the count of claims it reports is then a lower bound under a flood).
async fn read_sightings(watch: NeighbourWatch, tx: mpsc::Sender<Sighting>, instance: String) {
    let mut last: Option<(Sighting, tokio::time::Instant)> = None;
    loop {
        match watch.next().await {
            Ok(sighting) => {
                let now = tokio::time::Instant::now();
                if last.is_some_and(|(s, at)| s == sighting && now - at < REPEAT_COALESCE) {
                    continue;
                }
                last = Some((sighting, now));
                match tx.try_send(sighting) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
                tokio::time::sleep(REPEAT_COALESCE).await;
            }
            Err(e) => {
                tracing::warn!(%instance, error = %e, "reading the ARP/NA watch failed; retrying in 1 s");
                tokio::time::sleep(READ_RETRY).await;
            }
        }
    }
}

impl Instance {
    /// Logs and records the conflict watch's events (the core has acted on
    /// them already).
    pub(super) fn on_conflict_event(&mut self, event: Event) {
        let instance = self.core.config().name.clone();
        let state = self.core.election().state();
        match event {
            Event::ForeignClaimStarted { addr, mac } => {
                tracing::error!(%instance, vip = %addr, foreign_mac = %mac,
                    "another host claims this VIP (gratuitous ARP / ARP reply / NA from a MAC that is neither ours nor a peer's); keeping the VIP and re-announcing it");
                self.telemetry.foreign_claim(
                    state,
                    format!("foreign MAC {mac} claims VIP {addr}"),
                    mac.to_string(),
                );
            }
            Event::ForeignClaimEnded {
                addr,
                mac,
                sightings,
                lasted,
            } => {
                tracing::warn!(%instance, vip = %addr, foreign_mac = %mac, sightings,
                    lasted_ms = u64::try_from(lasted.as_millis()).unwrap_or(u64::MAX),
                    "the foreign claim of this VIP ended");
                self.telemetry.foreign_claim(
                    state,
                    format!("foreign MAC {mac} no longer claims VIP {addr} ({sightings} claims)"),
                    mac.to_string(),
                );
            }
            Event::ClaimCleared => {
                tracing::info!(%instance, "probe found nobody answering for the VIPs; claiming them");
            }
            Event::ClaimRefused { addr, mac } => {
                tracing::error!(%instance, vip = %addr, foreign_mac = %mac,
                    "refusing a first claim: another host answers for the VIP; remove the address from that host, or from this instance's vips");
            }
            Event::RefusalLifted { why } => {
                tracing::info!(%instance, reason = why, "the refused claim's fault is lifted");
            }
            _ => {}
        }
    }
}
