//! The VIP worker: each instance's claims, releases and announcements, carried
//! out in order, off the advert path.
//!
//! The instance task sends [`VipOp`]s over an unbounded queue, so claims and
//! releases keep their order and the instance never waits on the kernel. On
//! becoming master the worker claims every VIP through netlink, then announces
//! them: a burst of gratuitous ARP / unsolicited NA, a second burst
//! `repeat_after` later, and a refresh round every `refresh` while master
//! (FIELD-NOTES 2, 5). Also here: the start-up and exit sweeps of addresses
//! carrying vipd's marker (FIELD-NOTES 3, 18).
//!
//! What it may not touch: the election (it only reports the link state back).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::error_chain;
use super::instance::WorkerReport;
use crate::config::{AnnounceConfig, InstanceConfig, Vip};
use crate::metrics::InstanceMetrics;
use crate::net::announce::Announcer;
use crate::net::netlink::Netlink;

/// Removes every address carrying our marker: VIPs left by a crashed earlier run.
pub(super) async fn remove_stale_vips(netlink: &Netlink) {
    match netlink.marked_addresses().await {
        Ok(marked) => {
            for m in marked {
                tracing::warn!(ifindex = m.ifindex, address = %m.addr, prefix_len = m.prefix_len,
                    "removing a VIP left behind by an earlier vipd run");
                if let Err(e) = netlink.release(m.ifindex, m.addr, m.prefix_len).await {
                    tracing::error!(error = %error_chain(&e), "removing a stale VIP");
                }
            }
        }
        Err(e) => tracing::error!(error = %error_chain(&e), "listing vipd-marked addresses"),
    }
}

/// Releases every marked address (at exit).
pub(super) async fn release_marked(netlink: &Netlink) {
    match netlink.marked_addresses().await {
        Ok(marked) => {
            for m in marked {
                tracing::warn!(ifindex = m.ifindex, address = %m.addr, "releasing a VIP still present at exit");
                if let Err(e) = netlink.release(m.ifindex, m.addr, m.prefix_len).await {
                    tracing::error!(error = %error_chain(&e), "releasing a VIP at exit");
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "listing vipd-marked addresses at exit")
        }
    }
}

pub(super) async fn release_vips(netlink: &Netlink, cfg: &InstanceConfig) {
    let ifindex = match netlink.link_by_name(&cfg.interface).await {
        Ok(link) => link.index,
        Err(e) => {
            tracing::error!(instance = %cfg.name, error = %error_chain(&e), "releasing VIPs: interface lookup");
            return;
        }
    };
    for vip in &cfg.vips {
        if let Err(e) = netlink.release(ifindex, vip.addr, vip.prefix_len).await {
            tracing::error!(instance = %cfg.name, vip = %vip, error = %error_chain(&e), "releasing VIP");
        }
    }
}

/// Which VIPs the daemon holds (its own knowledge of what it claimed).
pub(super) type Held = Arc<Mutex<BTreeMap<Vip, bool>>>;

#[derive(Debug)]
pub(super) enum VipOp {
    Claim,
    /// Start the announcement schedule (bursts, refresh).
    Announce,
    /// One round of announcements now; the schedule stays as it is.
    AnnounceOnce,
    /// Stop the announcement schedule; the VIPs stay.
    StopAnnouncing,
    Release,
    /// Claim again (one VIP, or all that are missing) and re-announce.
    Reclaim(Option<Vip>),
    /// Read the link state again and report it.
    CheckLink,
    Stop,
}

pub(super) struct VipWorker {
    pub(super) instance: String,
    pub(super) interface: String,
    pub(super) ifindex: u32,
    pub(super) vips: Vec<Vip>,
    pub(super) announce: AnnounceConfig,
    pub(super) announcer: Option<Arc<Announcer>>,
    pub(super) netlink: Netlink,
    pub(super) held: Held,
    pub(super) back: mpsc::UnboundedSender<WorkerReport>,
    /// Counts the announcements sent.
    pub(super) metrics: Arc<InstanceMetrics>,
}

impl VipWorker {
    pub(super) async fn run(mut self, mut ops: mpsc::UnboundedReceiver<VipOp>) {
        let mut announcing: Option<JoinHandle<()>> = None;
        while let Some(op) = ops.recv().await {
            match op {
                VipOp::Claim => {
                    for vip in self.vips.clone() {
                        self.claim(vip).await;
                    }
                }
                VipOp::Announce => self.start_announcing(&mut announcing),
                VipOp::AnnounceOnce => self.announce_once().await,
                VipOp::StopAnnouncing => {
                    if let Some(task) = announcing.take() {
                        task.abort();
                    }
                }
                VipOp::Release => {
                    if let Some(task) = announcing.take() {
                        task.abort();
                    }
                    for vip in self.vips.clone() {
                        match self
                            .netlink
                            .release(self.ifindex, vip.addr, vip.prefix_len)
                            .await
                        {
                            Ok(()) => {
                                self.set_held(vip, false);
                                tracing::info!(instance = %self.instance, vip = %vip, "released VIP");
                            }
                            Err(e) => {
                                tracing::error!(instance = %self.instance, vip = %vip, error = %error_chain(&e), "releasing VIP")
                            }
                        }
                    }
                }
                VipOp::Reclaim(one) => {
                    let mut missing = Vec::new();
                    for vip in self.vips.clone() {
                        if one.is_some_and(|o| o != vip) {
                            continue;
                        }
                        match self.netlink.holds(self.ifindex, vip.addr).await {
                            Ok(true) => self.set_held(vip, true),
                            Ok(false) => missing.push(vip),
                            Err(e) => {
                                tracing::warn!(instance = %self.instance, vip = %vip, error = %error_chain(&e), "checking VIP");
                                missing.push(vip);
                            }
                        }
                    }
                    if !missing.is_empty() {
                        for vip in &missing {
                            tracing::warn!(instance = %self.instance, vip = %vip, "VIP missing from the interface while master; claiming it again");
                            self.claim(*vip).await;
                        }
                        self.start_announcing(&mut announcing);
                    }
                }
                VipOp::CheckLink => match self.netlink.link_by_name(&self.interface).await {
                    Ok(link) if link.index == self.ifindex => {
                        let _ = self.back.send(WorkerReport::LinkUp(link.up));
                    }
                    Ok(_) => {
                        tracing::error!(instance = %self.instance, interface = %self.interface, "the interface was replaced (new index); reload or restart vipd");
                        let _ = self.back.send(WorkerReport::LinkUp(false));
                    }
                    Err(e) => {
                        tracing::error!(instance = %self.instance, error = %error_chain(&e), "re-reading the link");
                    }
                },
                VipOp::Stop => break,
            }
        }
        if let Some(task) = announcing.take() {
            task.abort();
        }
    }

    fn set_held(&self, vip: Vip, on: bool) {
        if let Ok(mut held) = self.held.lock() {
            held.insert(vip, on);
        }
    }

    async fn claim(&self, vip: Vip) {
        match self
            .netlink
            .claim(self.ifindex, vip.addr, vip.prefix_len)
            .await
        {
            Ok(()) => {
                self.set_held(vip, true);
                tracing::info!(instance = %self.instance, vip = %vip, interface = %self.interface, "claimed VIP");
            }
            Err(e) => {
                tracing::error!(instance = %self.instance, vip = %vip, error = %error_chain(&e), "claiming VIP")
            }
        }
    }

    /// The interface's announcer, opened on first use.
    fn announcer(&mut self) -> Option<Arc<Announcer>> {
        if self.announcer.is_none() {
            match Announcer::open(self.ifindex, &self.interface) {
                Ok(a) => self.announcer = Some(Arc::new(a)),
                Err(e) => {
                    tracing::error!(instance = %self.instance, error = %error_chain(&e),
                        "cannot send gratuitous ARP / NA; clients may keep the old MAC until their caches expire");
                }
            }
        }
        self.announcer.clone()
    }

    /// One round now: another node may have held the VIPs.
    async fn announce_once(&mut self) {
        let Some(announcer) = self.announcer() else {
            return;
        };
        let addrs: Vec<IpAddr> = self.vips.iter().map(|v| v.addr).collect();
        burst(
            &announcer,
            &addrs,
            1,
            Duration::ZERO,
            &self.instance,
            "re-announce",
            &self.metrics,
        )
        .await;
    }

    fn start_announcing(&mut self, announcing: &mut Option<JoinHandle<()>>) {
        if let Some(task) = announcing.take() {
            task.abort();
        }
        let Some(announcer) = self.announcer() else {
            return;
        };
        let addrs: Vec<IpAddr> = self.vips.iter().map(|v| v.addr).collect();
        let cfg = self.announce.clone();
        let instance = self.instance.clone();
        let metrics = Arc::clone(&self.metrics);
        *announcing = Some(tokio::spawn(announce_loop(
            announcer, addrs, cfg, instance, metrics,
        )));
    }
}

/// A burst on becoming master, a second burst `repeat_after` later, then a round
/// every `refresh` while master (the task is aborted on release).
async fn announce_loop(
    announcer: Arc<Announcer>,
    addrs: Vec<IpAddr>,
    cfg: AnnounceConfig,
    instance: String,
    metrics: Arc<InstanceMetrics>,
) {
    let start = tokio::time::Instant::now();
    burst(
        &announcer,
        &addrs,
        cfg.count,
        cfg.interval,
        &instance,
        "first",
        &metrics,
    )
    .await;
    if let Some(after) = cfg.repeat_after {
        tokio::time::sleep_until(start + after).await;
        burst(
            &announcer,
            &addrs,
            cfg.count,
            cfg.interval,
            &instance,
            "second",
            &metrics,
        )
        .await;
    }
    if let Some(refresh) = cfg.refresh {
        loop {
            tokio::time::sleep(refresh).await;
            burst(
                &announcer,
                &addrs,
                1,
                cfg.interval,
                &instance,
                "refresh",
                &metrics,
            )
            .await;
        }
    }
}

async fn burst(
    announcer: &Announcer,
    addrs: &[IpAddr],
    count: u32,
    spacing: Duration,
    instance: &str,
    which: &str,
    metrics: &InstanceMetrics,
) {
    let mut sent = 0u32;
    let mut failed = 0u32;
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(spacing).await;
        }
        for addr in addrs {
            match announcer.announce(*addr) {
                Ok(()) => {
                    sent += 1;
                    metrics.announced(*addr);
                }
                Err(e) => {
                    failed += 1;
                    if failed == 1 {
                        tracing::warn!(%instance, error = %error_chain(&e), "announcement failed");
                    }
                }
            }
        }
    }
    // The bursts on becoming master are worth a line each; refresh and
    // re-announce rounds can come several times a second, so only at debug.
    if matches!(which, "first" | "second") {
        tracing::info!(%instance, burst = which, sent, failed, vips = addrs.len(), "announced VIPs (gratuitous ARP / unsolicited NA)");
    } else {
        tracing::debug!(%instance, burst = which, sent, failed, vips = addrs.len(), "announced VIPs (gratuitous ARP / unsolicited NA)");
    }
}
