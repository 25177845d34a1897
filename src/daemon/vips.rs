//! The VIP worker: each instance's claims, releases and announcements, carried
//! out in order, off the advert path.
//!
//! The instance task sends [`VipOp`]s over an unbounded queue, so claims and
//! releases keep their order and the instance never waits on the kernel. On
//! becoming master the worker claims every VIP through netlink, then announces
//! them: a burst of gratuitous ARP / unsolicited NA, a second burst
//! `repeat_after` later, and a refresh round every `refresh` while master
//! (FIELD-NOTES 2, 5). Also here: the start-up and exit sweeps of addresses
//! and routes carrying vipd's marker (FIELD-NOTES 3, 18), whose routes go in
//! the same order and with the same wait as any release, and so do
//! `vipd cleanup`'s.
//!
//! The announcement socket is opened when the instance starts, and again when
//! its interface is re-created, never at claim time: a node that could not
//! open it must not take the VIPs. A claim the kernel refuses twice, or an
//! announcement that fails twice, goes back to the instance as a fault
//! ([`WorkerReport::Fault`], the rule in [`crate::health::claim`]), so the
//! VIPs go to a peer that can announce them.
//!
//! In routed mode (`announce = "route"`) a VIP is two routes instead of an
//! address and no ARP/NA is sent: claiming adds the `local` route (the host
//! accepts the traffic) and then the announced host route (the fabric sends the
//! traffic here); releasing removes the announced route, waits
//! `withdraw_delay` for the fabric to converge on the new master, then removes
//! the local route — never the reverse, which would black-hole traffic still on
//! its way (FIELD-NOTES 27).
//!
//! What it may not touch: the election (it only reports the link state back).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::error_chain;
use crate::config::{AnnounceConfig, Config, InstanceConfig, RouteConfig, Vip};
use crate::health::claim::Readiness;
use crate::metrics::InstanceMetrics;
use crate::net::announce::{AnnounceError, Announcer};
use crate::net::netlink::{Claimed, MarkedRoute, Netlink, NetlinkError, Released, RouteKind};

/// What the VIP worker reports back to its instance.
#[derive(Debug)]
pub(super) enum WorkerReport {
    LinkUp(bool),
    /// The interface was re-created under its name: this is its new index.
    Replaced {
        ifindex: u32,
        up: bool,
    },
    /// The VIPs cannot be claimed or announced (`Some(why)`), or can again
    /// (see [`crate::health::claim`]); the worker logs each change.
    Fault(Option<String>),
}

/// The wait between withdrawing and no longer accepting in a sweep of every
/// instance's routes (start-up, exit, `vipd cleanup`): the longest configured
/// `route.withdraw_delay`, since the routes no longer say whose they were.
pub(super) fn sweep_withdraw_delay(config: &Config) -> Duration {
    config
        .instances
        .iter()
        .filter_map(|i| i.route.as_ref().map(|r| r.withdraw_delay))
        .max()
        .unwrap_or_default()
}

/// Removes `routes` as every release does: the announced routes first (the
/// fabric stops sending here), then, if one was withdrawn, `withdraw_delay`
/// for the fabric to converge, then the local routes (the host stops
/// accepting), so packets still in flight are answered. Each route comes back
/// with its outcome, in the order removed.
pub(super) async fn remove_routes_in_order(
    netlink: &Netlink,
    mut routes: Vec<MarkedRoute>,
    withdraw_delay: Duration,
) -> Vec<(MarkedRoute, Result<(), NetlinkError>)> {
    routes.sort_by_key(|r| r.kind == RouteKind::Accept);
    let mut withdrawn = false;
    let mut done = Vec::with_capacity(routes.len());
    for route in routes {
        if route.kind == RouteKind::Accept && withdrawn {
            withdrawn = false;
            tracing::info!(delay = ?withdraw_delay, "withdrew vipd routes; waiting for the fabric to converge before the host stops accepting");
            tokio::time::sleep(withdraw_delay).await;
        }
        let outcome = netlink.remove_route(&route).await;
        withdrawn |= outcome.is_ok() && route.kind == RouteKind::Announce;
        done.push((route, outcome));
    }
    done
}

/// Removes every route carrying vipd's protocol number, in the order of
/// [`remove_routes_in_order`]; `when` says which sweep, for the log.
async fn remove_marked_routes(netlink: &Netlink, when: &str, withdraw_delay: Duration) {
    let routes = match netlink.marked_routes().await {
        Ok(routes) => routes,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "listing vipd's routes ({when})");
            return;
        }
    };
    for (route, outcome) in remove_routes_in_order(netlink, routes, withdraw_delay).await {
        match outcome {
            Ok(()) => {
                tracing::warn!(address = %route.addr, table = route.table, kind = %route.kind,
                "removed a vipd route ({when})")
            }
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "removing a vipd route ({when})")
            }
        }
    }
}

/// Removes every address and route carrying our marker: VIPs left by a crashed
/// earlier run, except the addresses in `keep` (interface index, address):
/// those the clean-up left for this start to resume. Routes go as in any
/// release, `config`'s longest `withdraw_delay` apart.
pub(super) async fn remove_stale_vips(
    netlink: &Netlink,
    config: &Config,
    keep: &BTreeSet<(u32, IpAddr)>,
) {
    let when = "left behind by an earlier vipd run";
    remove_marked_routes(netlink, when, sweep_withdraw_delay(config)).await;
    match netlink.marked_addresses().await {
        Ok(marked) => {
            for m in marked {
                if keep.contains(&(m.ifindex, m.addr)) {
                    continue;
                }
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

/// Releases every marked address and route (at exit), routes as in any
/// release, `config`'s longest `withdraw_delay` apart.
pub(super) async fn release_marked(netlink: &Netlink, config: &Config) {
    let when = "still present at exit";
    remove_marked_routes(netlink, when, sweep_withdraw_delay(config)).await;
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

/// Releases an instance's VIPs after its task failed or had to be aborted: no
/// withdraw delay, nothing is left announced.
pub(super) async fn release_vips(netlink: &Netlink, cfg: &InstanceConfig) {
    if let Some(route) = &cfg.route {
        for vip in &cfg.vips {
            if let Err(e) = netlink
                .remove_announce_route(vip.addr, route.table, route.metric)
                .await
            {
                tracing::error!(instance = %cfg.name, vip = %vip, error = %error_chain(&e), "withdrawing VIP route");
            }
        }
        for vip in &cfg.vips {
            if let Err(e) = netlink.remove_accept_route(vip.addr).await {
                tracing::error!(instance = %cfg.name, vip = %vip, error = %error_chain(&e), "removing VIP local route");
            }
        }
        return;
    }
    let ifindex = match netlink.link_by_name(&cfg.interface).await {
        Ok(link) => link.index,
        Err(e) => {
            tracing::error!(instance = %cfg.name, error = %error_chain(&e), "releasing VIPs: interface lookup");
            return;
        }
    };
    for vip in &cfg.vips {
        match netlink.release(ifindex, vip.addr, vip.prefix_len).await {
            Ok(Released::Removed) => {}
            Ok(Released::LeftAlone) => left_alone(&cfg.name, *vip, &cfg.interface),
            Err(e) => {
                tracing::error!(instance = %cfg.name, vip = %vip, error = %error_chain(&e), "releasing VIP")
            }
        }
    }
}

/// An address equal to a VIP that vipd did not add: it stays, whatever vipd does.
fn left_alone(instance: &str, vip: Vip, interface: &str) {
    tracing::warn!(%instance, %vip, %interface,
        "the VIP is also configured on the interface by someone else (no vipd marker); vipd leaves that address in place and never removes it: remove it from the host's own configuration");
}

/// How long a refused claim or an unsent announcement waits for its one
/// retry (see [`crate::health::claim`]).
const RETRY_AFTER: Duration = Duration::from_millis(50);

/// Opens the announcer of `interface` (index `ifindex`): `None` if it has no
/// Ethernet address, so nothing to announce (logged).
pub(super) fn open_announcer(
    instance: &str,
    ifindex: u32,
    interface: &str,
) -> Result<Option<Arc<Announcer>>, AnnounceError> {
    match Announcer::open(ifindex, interface) {
        Ok(announcer) => Ok(Some(Arc::new(announcer))),
        Err(e @ AnnounceError::NotEthernet { .. }) => {
            tracing::warn!(%instance, error = %e, "no gratuitous ARP / NA on this interface");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// What one burst of announcements came to.
#[derive(Debug)]
pub(super) enum RoundOutcome {
    /// Every VIP went out at least once.
    AllSent,
    /// Some VIP did not, even on its retry: why.
    Unannounced(String),
}

/// Sleeps until `at`, or for ever.
async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
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
    /// One ARP probe / DAD solicitation per VIP (a cold claim's probe).
    Probe,
    /// Stop the announcement schedule; the VIPs stay.
    StopAnnouncing,
    Release,
    /// Claim again (one VIP, or all that are missing) and re-announce.
    Reclaim(Option<Vip>),
    /// Read the link state again and report it.
    CheckLink,
    /// A reload changed the VIP set: release the removed VIPs if held, and
    /// while claimed, claim the added ones and announce again.
    SetVips(Vec<Vip>),
    /// A reload changed the announcement settings: a running schedule starts
    /// again with them.
    SetAnnounce(AnnounceConfig),
    /// The interface was re-created under its name with this index: the VIPs
    /// and announcements go there from now on.
    Rebind(u32),
    Stop,
}

pub(super) struct VipWorker {
    pub(super) instance: String,
    pub(super) interface: String,
    pub(super) ifindex: u32,
    pub(super) vips: Vec<Vip>,
    pub(super) announce: AnnounceConfig,
    /// Opened at instance start ([`open_announcer`]) and again when the
    /// interface is re-created: a claim never waits for a socket it may not get.
    pub(super) announcer: Option<Arc<Announcer>>,
    /// Whether the VIPs are announced at all: not in routed mode, nor on an
    /// interface without an Ethernet address.
    pub(super) announces: bool,
    /// Whether the VIPs can be claimed and announced (a health input).
    pub(super) readiness: Readiness,
    /// Where the announcement task reports each burst (set by [`Self::run`]).
    pub(super) rounds: Option<mpsc::UnboundedSender<RoundOutcome>>,
    pub(super) netlink: Netlink,
    pub(super) held: Held,
    pub(super) back: mpsc::UnboundedSender<WorkerReport>,
    /// Between a claim and a release: the VIPs belong on the interface.
    pub(super) claimed: bool,
    /// Counts the announcements sent.
    pub(super) metrics: Arc<InstanceMetrics>,
    /// Routed mode: routes instead of addresses, no ARP/NA.
    pub(super) route: Option<RouteConfig>,
    /// Counts the releases carried out, for the after-release hook.
    pub(super) releases_done: watch::Sender<u64>,
}

impl VipWorker {
    pub(super) async fn run(mut self, mut ops: mpsc::UnboundedReceiver<VipOp>) {
        let mut announcing: Option<JoinHandle<()>> = None;
        let (rounds_tx, mut rounds_rx) = mpsc::unbounded_channel();
        self.rounds = Some(rounds_tx);
        if self.announces && self.announcer.is_none() {
            self.fail("the gratuitous ARP / NA socket is not open".to_owned());
        }
        loop {
            let retry_at = self.readiness.retry_at();
            let op = tokio::select! {
                op = ops.recv() => match op {
                    Some(op) => op,
                    None => break,
                },
                // The worker holds a sender, so this never yields None.
                Some(outcome) = rounds_rx.recv() => {
                    self.on_round(outcome);
                    continue;
                }
                () = sleep_until(retry_at) => {
                    self.retry();
                    continue;
                }
            };
            match op {
                VipOp::Claim => {
                    self.claimed = true;
                    for vip in self.vips.clone() {
                        self.claim(vip).await;
                    }
                }
                // Routed mode announces by the route itself.
                VipOp::Announce | VipOp::AnnounceOnce if self.route.is_some() => {}
                VipOp::Announce => self.start_announcing(&mut announcing),
                VipOp::AnnounceOnce => self.announce_once().await,
                VipOp::Probe => self.probe(),
                VipOp::StopAnnouncing => {
                    if let Some(task) = announcing.take() {
                        task.abort();
                    }
                }
                VipOp::Release => {
                    self.claimed = false;
                    if let Some(task) = announcing.take() {
                        task.abort();
                    }
                    if self.route.is_some() {
                        self.release_routed(&self.vips.clone(), "released VIP")
                            .await;
                    } else {
                        for vip in self.vips.clone() {
                            self.release(vip, "released VIP").await;
                        }
                    }
                    self.releases_done.send_modify(|done| *done += 1);
                }
                VipOp::Reclaim(_) if self.route.is_some() => {
                    // Idempotent: puts back whatever someone removed.
                    for vip in self.vips.clone() {
                        if let Err(why) = self.claim_routed(vip, false).await {
                            self.fail(why);
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
                    Ok(link) => {
                        let _ = self.back.send(WorkerReport::Replaced {
                            ifindex: link.index,
                            up: link.up,
                        });
                    }
                    Err(e) => {
                        tracing::error!(instance = %self.instance, error = %error_chain(&e), "re-reading the link");
                    }
                },
                VipOp::SetVips(vips) => self.set_vips(vips, &mut announcing).await,
                VipOp::SetAnnounce(cfg) => {
                    self.announce = cfg;
                    if announcing.is_some() {
                        self.start_announcing(&mut announcing);
                    }
                }
                VipOp::Rebind(ifindex) if self.route.is_some() => {
                    // The routes are on lo, not on the re-created link.
                    self.ifindex = ifindex;
                }
                VipOp::Rebind(ifindex) => {
                    self.ifindex = ifindex;
                    // The old socket is bound to the old link: open the new
                    // one now, before any claim needs it.
                    self.announcer = None;
                    if self.announces {
                        self.reopen_announcer();
                    }
                    // The addresses went with the old link.
                    for vip in self.vips.clone() {
                        self.set_held(vip, false);
                    }
                }
                VipOp::Stop => break,
            }
        }
        if let Some(task) = announcing.take() {
            task.abort();
        }
    }

    /// A reload's new VIP set: only the added and removed VIPs are touched.
    /// While claimed, the added ones are claimed and the whole set announced
    /// again (a burst and its repeat; harmless for the VIPs that stayed) if
    /// the announcements are running (not on a master's way out).
    async fn set_vips(&mut self, vips: Vec<Vip>, announcing: &mut Option<JoinHandle<()>>) {
        let removed: Vec<Vip> = self
            .vips
            .iter()
            .filter(|v| !vips.contains(v))
            .copied()
            .collect();
        let added: Vec<Vip> = vips
            .iter()
            .filter(|v| !self.vips.contains(v))
            .copied()
            .collect();
        self.vips = vips;
        for vip in removed {
            let held = self
                .held
                .lock()
                .map(|h| h.get(&vip).copied().unwrap_or(false))
                .unwrap_or(true);
            if (held || self.claimed) && self.route.is_some() {
                self.release_routed(&[vip], "released VIP (removed by reload)")
                    .await;
            } else if held || self.claimed {
                self.release(vip, "released VIP (removed by reload)").await;
            }
            if let Ok(mut held) = self.held.lock() {
                held.remove(&vip);
            }
        }
        for vip in &added {
            self.set_held(*vip, false);
        }
        if self.claimed && !added.is_empty() {
            for vip in added {
                self.claim(vip).await;
            }
            if announcing.is_some() {
                self.start_announcing(announcing);
            }
        }
    }

    /// Removes one VIP from the interface (unless it is an administrator's),
    /// logging `what` when it went.
    async fn release(&self, vip: Vip, what: &str) {
        match self
            .netlink
            .release(self.ifindex, vip.addr, vip.prefix_len)
            .await
        {
            Ok(Released::Removed) => {
                self.set_held(vip, false);
                tracing::info!(instance = %self.instance, vip = %vip, "{what}");
            }
            Ok(Released::LeftAlone) => {
                self.set_held(vip, false);
                left_alone(&self.instance, vip, &self.interface);
            }
            Err(e) => {
                tracing::error!(instance = %self.instance, vip = %vip, error = %error_chain(&e), "releasing VIP")
            }
        }
    }

    /// Routed mode's claim: the local route, then the announced route (the host
    /// accepts the traffic before the fabric sends it). `log` is false for a
    /// re-claim, which is quiet unless it fails.
    async fn claim_routed(&self, vip: Vip, log: bool) -> Result<(), String> {
        let Some(route) = &self.route else {
            return Ok(());
        };
        if let Err(e) = self.netlink.add_accept_route(vip.addr).await {
            tracing::error!(instance = %self.instance, vip = %vip, error = %error_chain(&e), "claiming VIP (local route)");
            return Err(format!("claiming {vip} (local route): {}", error_chain(&e)));
        }
        match self
            .netlink
            .add_announce_route(vip.addr, route.table, route.metric)
            .await
        {
            Ok(()) => {
                self.set_held(vip, true);
                if log {
                    tracing::info!(instance = %self.instance, vip = %vip, table = route.table, metric = route.metric, "claimed VIP (route announced)");
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(instance = %self.instance, vip = %vip, error = %error_chain(&e), "claiming VIP (announced route)");
                Err(format!(
                    "claiming {vip} (announced route): {}",
                    error_chain(&e)
                ))
            }
        }
    }

    /// Routed mode's release of `vips`: every announced route, then
    /// `withdraw_delay` for the fabric to converge, then the local routes.
    async fn release_routed(&self, vips: &[Vip], what: &str) {
        let Some(route) = &self.route else { return };
        for vip in vips {
            if let Err(e) = self
                .netlink
                .remove_announce_route(vip.addr, route.table, route.metric)
                .await
            {
                tracing::error!(instance = %self.instance, vip = %vip, error = %error_chain(&e), "withdrawing VIP route");
            }
        }
        tracing::info!(instance = %self.instance, vips = vips.len(), delay = ?route.withdraw_delay,
            "withdrew VIP routes; waiting for the fabric to converge");
        tokio::time::sleep(route.withdraw_delay).await;
        for vip in vips {
            match self.netlink.remove_accept_route(vip.addr).await {
                Ok(()) => {
                    self.set_held(*vip, false);
                    tracing::info!(instance = %self.instance, vip = %vip, "{what}");
                }
                Err(e) => {
                    tracing::error!(instance = %self.instance, vip = %vip, error = %error_chain(&e), "removing VIP local route")
                }
            }
        }
    }

    fn set_held(&self, vip: Vip, on: bool) {
        if let Ok(mut held) = self.held.lock() {
            held.insert(vip, on);
        }
    }

    /// Claims one VIP, trying once more after [`RETRY_AFTER`] if the kernel
    /// refuses; a second failure puts the instance in fault (see [`Readiness`]).
    async fn claim(&mut self, vip: Vip) {
        let mut failure = String::new();
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(RETRY_AFTER).await;
            }
            let claimed = if self.route.is_some() {
                self.claim_routed(vip, true).await
            } else {
                self.claim_address(vip).await
            };
            match claimed {
                Ok(()) => return,
                Err(why) => failure = why,
            }
        }
        self.fail(failure);
    }

    /// Adds one VIP to the interface, with vipd's marker.
    async fn claim_address(&self, vip: Vip) -> Result<(), String> {
        match self
            .netlink
            .claim(self.ifindex, vip.addr, vip.prefix_len)
            .await
        {
            Ok(Claimed::Marked) => {
                self.set_held(vip, true);
                tracing::info!(instance = %self.instance, vip = %vip, interface = %self.interface, "claimed VIP");
                Ok(())
            }
            Ok(Claimed::LeftAlone) => {
                self.set_held(vip, true);
                left_alone(&self.instance, vip, &self.interface);
                Ok(())
            }
            Err(e) => {
                tracing::error!(instance = %self.instance, vip = %vip, error = %error_chain(&e), "claiming VIP");
                Err(format!("claiming {vip}: {}", error_chain(&e)))
            }
        }
    }

    /// The interface's announcer; `None` also when the VIPs are not announced
    /// (then nothing is wrong), or when it could not be opened (then the
    /// instance is in fault already).
    fn announcer(&self) -> Option<Arc<Announcer>> {
        self.announcer.clone()
    }

    /// Opens the announcer on the current interface index; a failure puts the
    /// instance in fault until [`Self::retry`] opens it.
    fn reopen_announcer(&mut self) {
        match open_announcer(&self.instance, self.ifindex, &self.interface) {
            Ok(announcer) => {
                self.announces = announcer.is_some();
                self.announcer = announcer;
            }
            Err(e) => self.fail(format!(
                "opening the gratuitous ARP / NA socket: {}",
                error_chain(&e)
            )),
        }
    }

    /// The claims or announcements failed for `why`: the instance goes in
    /// fault (one line), and [`Self::retry`] ends it after the back-off.
    fn fail(&mut self, why: String) {
        if let Some(retry_in) = self.readiness.fail(std::time::Instant::now(), &why) {
            self.metrics.claim_fault();
            tracing::warn!(instance = %self.instance, problem = %why, retry_in = ?retry_in,
                "cannot claim or announce the VIPs: in fault, so that a peer takes them and clients follow it");
            let _ = self.back.send(WorkerReport::Fault(Some(why)));
        }
    }

    /// The back-off after a failure passed: the announcer is opened again
    /// (a fresh socket, the MAC read again) and, if it opens, the fault ends.
    fn retry(&mut self) {
        if self.announces {
            match open_announcer(&self.instance, self.ifindex, &self.interface) {
                Ok(announcer) => {
                    self.announces = announcer.is_some();
                    self.announcer = announcer;
                }
                Err(e) => {
                    let retry_in = self.readiness.still_failing(std::time::Instant::now());
                    tracing::debug!(instance = %self.instance, error = %error_chain(&e), retry_in = ?retry_in,
                        "gratuitous ARP / NA socket still cannot be opened");
                    return;
                }
            }
        }
        if self.readiness.cleared() {
            tracing::info!(instance = %self.instance, "claims and announcements possible again: fault cleared");
            let _ = self.back.send(WorkerReport::Fault(None));
        }
    }

    /// What an announcement task reports after a burst.
    fn on_round(&mut self, outcome: RoundOutcome) {
        match outcome {
            RoundOutcome::AllSent => self.readiness.succeeded(),
            RoundOutcome::Unannounced(why) => self.fail(why),
        }
    }

    /// One probe per VIP, asking who has it without claiming it.
    fn probe(&self) {
        let Some(announcer) = self.announcer() else {
            return;
        };
        for vip in &self.vips {
            if let Err(e) = announcer.probe(vip.addr) {
                tracing::warn!(instance = %self.instance, vip = %vip, error = %error_chain(&e), "probe not sent");
            }
        }
    }

    /// One round now: another node may have held the VIPs.
    async fn announce_once(&mut self) {
        let Some(announcer) = self.announcer_for_round() else {
            return;
        };
        let addrs: Vec<IpAddr> = self.vips.iter().map(|v| v.addr).collect();
        let round = Round {
            announcer: &announcer,
            netlink: &self.netlink,
            interface: &self.interface,
            addrs: &addrs,
            instance: &self.instance,
            metrics: &self.metrics,
        };
        let outcome = round.burst(1, Duration::ZERO, "re-announce").await;
        self.on_round(outcome);
    }

    /// The announcer for a round about to start; `None` if the VIPs are not
    /// announced, or (then a failure) if the socket is not open.
    fn announcer_for_round(&mut self) -> Option<Arc<Announcer>> {
        if self.route.is_some() || !self.announces {
            return None;
        }
        let announcer = self.announcer();
        if announcer.is_none() {
            self.fail("the gratuitous ARP / NA socket is not open".to_owned());
        }
        announcer
    }

    fn start_announcing(&mut self, announcing: &mut Option<JoinHandle<()>>) {
        if let Some(task) = announcing.take() {
            task.abort();
        }
        let Some(announcer) = self.announcer_for_round() else {
            return;
        };
        let Some(outcomes) = self.rounds.clone() else {
            return;
        };
        let addrs: Vec<IpAddr> = self.vips.iter().map(|v| v.addr).collect();
        let cfg = self.announce.clone();
        let instance = self.instance.clone();
        let (netlink, interface) = (self.netlink.clone(), self.interface.clone());
        let metrics = Arc::clone(&self.metrics);
        *announcing = Some(tokio::spawn(async move {
            let round = Round {
                announcer: &announcer,
                netlink: &netlink,
                interface: &interface,
                addrs: &addrs,
                instance: &instance,
                metrics: &metrics,
            };
            announce_loop(round, cfg, outcomes).await;
        }));
    }
}

/// A burst on becoming master, a second burst `repeat_after` later, then a round
/// every `refresh` while master (the task is aborted on release). Each burst's
/// outcome goes back to the worker.
async fn announce_loop(
    round: Round<'_>,
    cfg: AnnounceConfig,
    outcomes: mpsc::UnboundedSender<RoundOutcome>,
) {
    let start = tokio::time::Instant::now();
    let _ = outcomes.send(round.burst(cfg.count, cfg.interval, "first").await);
    if let Some(after) = cfg.repeat_after {
        tokio::time::sleep_until(start + after).await;
        let _ = outcomes.send(round.burst(cfg.count, cfg.interval, "second").await);
    }
    if let Some(refresh) = cfg.refresh {
        loop {
            tokio::time::sleep(refresh).await;
            let _ = outcomes.send(round.burst(1, cfg.interval, "refresh").await);
        }
    }
}

/// What one round of announcements needs.
struct Round<'a> {
    announcer: &'a Announcer,
    netlink: &'a Netlink,
    interface: &'a str,
    addrs: &'a [IpAddr],
    instance: &'a str,
    /// Counts the announcements sent.
    metrics: &'a InstanceMetrics,
}

impl Round<'_> {
    /// `count` announcements of every VIP, `spacing` apart. The first of
    /// each VIP must go out, or its one retry [`RETRY_AFTER`] later: if not,
    /// the burst stops there and failed (see [`crate::health::claim`]);
    /// a later one that fails is only counted.
    async fn burst(&self, count: u32, spacing: Duration, which: &str) -> RoundOutcome {
        self.refresh_router_flag().await;
        let instance = self.instance;
        let mut sent = 0u32;
        let mut failed = 0u32;
        for i in 0..count {
            if i > 0 {
                tokio::time::sleep(spacing).await;
            }
            let mut unsent = Vec::new();
            for addr in self.addrs {
                match self.send(*addr) {
                    Ok(()) => sent += 1,
                    Err(e) => {
                        failed += 1;
                        // The burst's line counts them; a failed retry is
                        // the worker's fault line.
                        if failed == 1 {
                            tracing::debug!(%instance, error = %error_chain(&e), "announcement failed");
                        }
                        unsent.push(*addr);
                    }
                }
            }
            if i > 0 || unsent.is_empty() {
                continue;
            }
            tokio::time::sleep(RETRY_AFTER).await;
            for addr in unsent {
                match self.send(addr) {
                    Ok(()) => sent += 1,
                    Err(e) => {
                        failed += 1;
                        tracing::debug!(%instance, burst = which, sent, failed, vips = self.addrs.len(),
                            "announcing VIPs failed");
                        return RoundOutcome::Unannounced(format!(
                            "announcing {addr} failed twice ({which} burst): {}",
                            error_chain(&e)
                        ));
                    }
                }
            }
        }
        let vips = self.addrs.len();
        // The bursts on becoming master are worth a line each; refresh and
        // re-announce rounds can come several times a second, so only at debug.
        if matches!(which, "first" | "second") {
            tracing::info!(%instance, burst = which, sent, failed, vips, "announced VIPs (gratuitous ARP / unsolicited NA)");
        } else {
            tracing::debug!(%instance, burst = which, sent, failed, vips, "announced VIPs (gratuitous ARP / unsolicited NA)");
        }
        RoundOutcome::AllSent
    }

    /// One announcement, counted.
    fn send(&self, addr: IpAddr) -> Result<(), AnnounceError> {
        let sent = self.announcer.announce(addr);
        match &sent {
            Ok(()) => self.metrics.announced(addr),
            Err(_) => self.metrics.announce_failed(addr),
        }
        sent
    }

    /// The NA Router flag follows the interface's IPv6 forwarding, read through
    /// netlink before each round (an administrator may turn forwarding on or off
    /// at any time). IPv4-only instances skip the lookup.
    async fn refresh_router_flag(&self) {
        if !self.addrs.iter().any(IpAddr::is_ipv6) {
            return;
        }
        match self.netlink.link_by_name(self.interface).await {
            Ok(link) => self
                .announcer
                .set_ipv6_router(link.ipv6_forwarding.unwrap_or(false)),
            Err(e) => {
                tracing::debug!(instance = %self.instance, error = %error_chain(&e), "reading IPv6 forwarding for the NA Router flag")
            }
        }
    }
}
