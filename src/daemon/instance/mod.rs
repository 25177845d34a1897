//! One instance task: owns its [`Election`] and drives it (the crate's
//! drive-loop contract). Adverts, control messages, netlink events, health
//! results and sync-group changes come in; the election's actions go out as
//! adverts on the instance's socket and as orders to its VIP worker.
//!
//! Each wake-up reads the clock once, from tokio (`clock::now`), and hands that
//! `now` to every handler it runs, so one wake-up never sees two times. Its one
//! timer (`deadline`) keeps takeover deadlines exactly, on a timerfd for their
//! last 3 ms, and every other deadline on tokio's wheel; the timerfd reads the
//! real clock, so a test with tokio's paused time would not drive a takeover.
//!
//! What it may not touch: the kernel's addresses (its VIP worker does that, off
//! the advert path), other instances (only through the sync board), and any
//! rule of the election (it feeds inputs and carries out actions).

mod conflicts;
mod deadline;
mod identity;
mod rejects;
mod replay;
mod status;
mod telemetry;
mod update;

pub(super) use conflicts::Conflicts;
pub(super) use identity::Identity;
pub(super) use rejects::RejectLog;
pub(super) use telemetry::Telemetry;
pub(super) use update::election_settings;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::reload::Change;
use super::supervisor::Shared;
use super::vips::{Held, VipOp};
use super::{error_chain, AUTH_WARN_EVERY, SHUTDOWN_SLACK};
use crate::config::{InstanceConfig, Vip};
use crate::control::InstanceStatus;
use crate::election::{Action, Command, CommandError, Election, Notice, State};
use crate::health::notify::Notifier;
use crate::health::{CheckEvent, SyncEntry, Tracker};
use crate::net::netlink::{NetEvent, Netlink};
use crate::net::transport::{Channel, Datagram, SendError, INBOX_CAPACITY, KNOWN_LANE_CAPACITY};
use crate::wire::{self, Advert, ReplayGuard};
use deadline::{DeadlineTimer, Precision};

/// The daemon's clock: tokio's, as a std `Instant` for the election.
mod clock {
    use std::time::Instant;

    pub(super) fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A message from the supervisor to an instance task.
#[derive(Debug)]
pub(crate) enum InstanceMsg {
    Command(Command, oneshot::Sender<Result<(), CommandError>>),
    Status(oneshot::Sender<InstanceStatus>),
    /// The watchdog asks: are you turning?
    Ping(oneshot::Sender<()>),
    /// A reload changed what the running instance takes in place: the new
    /// configuration, and what changed in it (see `update.rs`); the reply
    /// says whether all of it took (a new advert socket may not open).
    Update(
        Box<InstanceConfig>,
        Vec<Change>,
        oneshot::Sender<Result<(), String>>,
    ),
    Shutdown,
}

/// What woke the instance task.
enum Wake {
    Datagram(Datagram),
    Timer,
    Message(InstanceMsg),
    /// The supervisor dropped its sender: shut down.
    SupervisorGone,
    Net(NetEvent),
    Link(bool),
    ClaimFault(Option<String>),
    Check(CheckEvent),
    /// The ARP/NA watch saw a claim of one of the VIPs.
    Sighting(crate::conflict::Sighting),
    SyncBoard(BTreeMap<String, SyncEntry>),
    /// An input closed; nothing to handle.
    Nothing,
}

/// Reads the link state of tracked interfaces (at start, and after lost netlink
/// notifications); a missing interface counts as down.
pub(super) async fn look_up_links(
    netlink: Netlink,
    names: Vec<String>,
    tx: mpsc::UnboundedSender<CheckEvent>,
) {
    for name in names {
        let up = match netlink.link_by_name(&name).await {
            Ok(link) => link.up,
            Err(e) => {
                tracing::warn!(interface = %name, error = %error_chain(&e), "tracked interface lookup failed; counting it down");
                false
            }
        };
        let _ = tx.send(CheckEvent::Interface { name, up });
    }
}

/// The health inputs of an instance task besides the netlink events.
pub(super) struct InstanceInputs {
    pub(super) check_rx: mpsc::UnboundedReceiver<CheckEvent>,
    pub(super) sync_rx: watch::Receiver<BTreeMap<String, SyncEntry>>,
}

pub(super) struct Instance {
    pub(super) cfg: InstanceConfig,
    pub(super) election: Election,
    pub(super) shared: Arc<Shared>,
    pub(super) channel: Channel,
    pub(super) replay: ReplayGuard,
    pub(super) ifindex: u32,
    /// Track scripts, files, interfaces, guard and sync group → Health.
    pub(super) health: Tracker,
    /// For interface lookups started after an overrun.
    pub(super) check_tx: mpsc::UnboundedSender<CheckEvent>,
    /// The check tasks, aborted when the instance stops.
    pub(super) checks: Vec<JoinHandle<()>>,
    pub(super) notifier: Notifier,
    /// The own fault last published to the sync board (`None`: not yet).
    pub(super) published_fault: Option<SyncEntry>,
    pub(super) link_up: bool,
    /// Claimed and not released since (the daemon's view).
    pub(super) claimed: bool,
    /// node id → source address of its last accepted advert.
    pub(super) sources: HashMap<u64, IpAddr>,
    /// node id → software version its adverts carry (extension field 1).
    pub(super) peer_versions: HashMap<u64, String>,
    pub(super) auth_failures: u64,
    /// Rejected adverts, summarised per reason (bounded under floods).
    pub(super) rejects: RejectLog,
    pub(super) send_warned: Option<Instant>,
    /// Whether the election was handing over when the last advert came in.
    pub(super) handing_over_at_input: bool,
    pub(super) ops: mpsc::UnboundedSender<VipOp>,
    pub(super) held: Held,
    /// The duplicate-identity rule: another node using our node name.
    pub(super) identity: Identity,
    /// Set by a reload that restarted the health checks: their new receiver,
    /// for the run loop to take.
    pub(super) replaced_checks: Option<mpsc::UnboundedReceiver<CheckEvent>>,
    /// Set when the advert socket was re-opened (the interface came back with a
    /// new index): the run loop listens to the new inbox.
    pub(super) replaced_channel: bool,
    /// History, `vipd events` and metrics.
    pub(super) telemetry: Telemetry,
    /// Another host answering for the VIPs: the foreign-MAC alarm and the
    /// cold-claim probe.
    pub(super) conflicts: Conflicts,
}

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

impl Instance {
    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<InstanceMsg>,
        mut net: broadcast::Receiver<NetEvent>,
        mut back: mpsc::UnboundedReceiver<WorkerReport>,
        worker: JoinHandle<()>,
        link_up: bool,
        inputs: InstanceInputs,
    ) {
        let InstanceInputs {
            mut check_rx,
            mut sync_rx,
        } = inputs;
        let name = self.cfg.name.clone();
        let interface = self.cfg.interface.clone();
        let (mut checkpoint, guard) =
            replay::ReplayCheckpoint::start(&self.shared.replay_book, &name);
        self.replay = guard;
        sync_rx.mark_changed();
        self.set_link(clock::now(), link_up);
        self.drain_actions(clock::now());
        let mut rx_open = true;
        let mut net_open = true;
        let mut inbox_open = true;
        let mut back_open = true;
        // One timer for the task's life, moved only when the election's next
        // deadline moves; exact when that deadline decides a takeover (see
        // `deadline`).
        let mut timer = DeadlineTimer::new(&name);
        loop {
            let next = [
                self.election.poll_timeout(),
                self.conflicts.watch.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let precision = if next.is_some() && next == self.election.takeover_deadline() {
                Precision::Exact
            } else {
                Precision::Batched
            };
            let deadline = next.map(|at| (at, precision));
            if deadline != timer.armed() {
                timer.set(deadline);
            }
            let sleep = timer.expired();
            // Wait for the next input, then read the clock once: every handler
            // of this wake-up sees the same `now` (tokio's clock, so a test with
            // paused time drives it).
            // Timers and the supervisor first, the advert socket last: a flood
            // of datagrams (junk or not) never delays our own adverts, the
            // takeover timer, a control request or a watchdog ping. One input
            // per wake-up, so the work between two timer checks is bounded.
            let wake = tokio::select! {
                biased;
                () = sleep => Wake::Timer,
                msg = rx.recv(), if rx_open => match msg {
                    Some(msg) => Wake::Message(msg),
                    None => {
                        rx_open = false;
                        Wake::SupervisorGone
                    }
                },
                event = net.recv(), if net_open => match event {
                    Ok(event) => Wake::Net(event),
                    Err(broadcast::error::RecvError::Lagged(_)) => Wake::Net(NetEvent::Overrun),
                    Err(broadcast::error::RecvError::Closed) => {
                        net_open = false;
                        Wake::Nothing
                    }
                },
                report = back.recv(), if back_open => match report {
                    Some(WorkerReport::LinkUp(up)) => Wake::Link(up),
                    Some(WorkerReport::Replaced { ifindex, up }) => Wake::Net(NetEvent::Link {
                        ifindex,
                        name: interface.clone(),
                        up,
                    }),
                    Some(WorkerReport::Fault(why)) => Wake::ClaimFault(why),
                    None => {
                        back_open = false;
                        Wake::Nothing
                    }
                },
                // The instance holds a sender, so this never yields None.
                Some(event) = check_rx.recv() => Wake::Check(event),
                Ok(()) = sync_rx.changed(), if self.cfg.sync_group.is_some() => {
                    Wake::SyncBoard(sync_rx.borrow_and_update().clone())
                },
                datagram = self.channel.inbox.recv(), if inbox_open => match datagram {
                    Some(d) => Wake::Datagram(d),
                    None => {
                        tracing::error!(instance = %name, "the advert socket stopped; no more adverts are received");
                        inbox_open = false;
                        Wake::Nothing
                    }
                },
                // Last: a flood of forged claims never delays an advert.
                Some(sighting) = self.conflicts.sightings.recv() => Wake::Sighting(sighting),
            };
            let now = clock::now();
            match wake {
                Wake::Datagram(d) => self.on_datagram(now, d),
                Wake::Timer => {
                    // Adverts already queued count before a deadline: after a
                    // scheduling stall the master's adverts wait in the inbox
                    // together with our takeover timer, and must win. A master
                    // has no takeover to cancel, so under a flood its own
                    // advert is not delayed by reading junk first.
                    let master = self.election.state() == State::Master;
                    for _ in 0..KNOWN_LANE_CAPACITY + INBOX_CAPACITY {
                        let queued = if master {
                            self.channel.inbox.try_recv_known()
                        } else {
                            self.channel.inbox.try_recv()
                        };
                        match queued {
                            Some(d) => self.on_datagram(now, d),
                            None => break,
                        }
                    }
                    self.election.handle_timeout(now);
                    self.conflicts.watch.handle_timeout(now);
                }
                Wake::Sighting(sighting) => self.conflicts.watch.handle_sighting(now, sighting),
                Wake::Message(msg) => self.on_message(now, msg),
                Wake::SupervisorGone => {
                    self.telemetry.shutdown_started(now);
                    self.election.handle_shutdown(now);
                }
                Wake::Net(event) => self.on_net_event(now, event),
                Wake::Link(up) => self.set_link(now, up),
                Wake::ClaimFault(why) => {
                    self.health.set_claim_fault(why);
                    self.apply_health(now);
                }
                Wake::Check(event) => {
                    self.telemetry.check_event(&event);
                    self.health.on_event(event);
                    self.telemetry.metrics.set_checks(self.health.checks());
                    self.apply_health(now);
                }
                Wake::SyncBoard(board) => self.on_sync_board(now, &board),
                Wake::Nothing => {}
            }
            if let Some(replaced) = self.replaced_checks.take() {
                check_rx = replaced;
            }
            if std::mem::take(&mut self.replaced_channel) {
                inbox_open = true;
                self.refresh_known_sources();
            }
            self.expire_twins(now);
            self.check_quorum(now);
            checkpoint.after_wake(now, &self.replay);
            // The election's actions can start a probe or end an episode, and
            // a refused claim changes the health: drain both until quiet.
            let mut done = false;
            for _ in 0..4 {
                done |= self.drain_actions(now);
                if !self.drain_conflicts(now) {
                    break;
                }
            }
            if done {
                break;
            }
        }
        self.conflicts.stop();
        self.telemetry.stopped(clock::now());
        checkpoint.finish(clock::now(), &self.replay).await;
        for check in &self.checks {
            check.abort();
        }
        self.shared
            .sync
            .send_if_modified(|board| board.remove(&name).is_some());
        // The election released (the ReleaseVips is queued before this); let the
        // worker finish its queue, bounded.
        let _ = self.ops.send(VipOp::Stop);
        let _ =
            tokio::time::timeout(SHUTDOWN_SLACK + super::withdraw_delay(&self.cfg), worker).await;
        // The stop hook runs after the VIPs are released.
        self.notifier.stop(self.election.state());
        self.notifier.finish(SHUTDOWN_SLACK).await;
        tracing::info!(instance = %name, "instance stopped");
    }

    /// Hands the tracker's health to the election and tells the sync group about
    /// this instance's own fault.
    fn apply_health(&mut self, now: Instant) {
        self.election
            .handle_health(now, self.health_with_identity());
        if self.cfg.sync_group.is_some() {
            let own = self.health.sync_entry();
            if self.published_fault.as_ref() != Some(&own) {
                self.published_fault = Some(own.clone());
                let name = self.cfg.name.clone();
                self.shared.sync.send_if_modified(|board| {
                    if board.get(&name) == Some(&own) {
                        false
                    } else {
                        board.insert(name, own);
                        true
                    }
                });
            }
        }
    }

    /// A member of the sync group changed: fault while any other member is in
    /// fault of its own.
    fn on_sync_board(&mut self, now: Instant, board: &BTreeMap<String, SyncEntry>) {
        let Some(group) = &self.cfg.sync_group else {
            return;
        };
        let others = || group.instances.iter().filter(|m| **m != self.cfg.name);
        let fault = others().find_map(|m| {
            board
                .get(m)
                .and_then(|e| e.fault.as_ref())
                .map(|why| format!("sync group {}: member {m} is in fault ({why})", group.name))
        });
        let weights = others()
            .filter_map(|m| {
                let w = board.get(m)?.weight;
                (w != 0).then(|| {
                    (
                        w,
                        format!("sync group {}: member {m} weighs {w:+}", group.name),
                    )
                })
            })
            .collect();
        self.health.set_sync_fault(fault);
        self.health.set_sync_weights(weights);
        self.apply_health(now);
    }

    /// With the guard's quorum on: fault unless this node hears a majority of
    /// the group (itself included).
    fn check_quorum(&mut self, now: Instant) {
        let Some(total) = self
            .cfg
            .guard
            .as_ref()
            .filter(|g| g.quorum)
            .and_then(|g| g.peers_total)
        else {
            return;
        };
        // The liveness rule for quorum is the election's (see its rules doc).
        let quorum = self.election.quorum(now, total);
        let (heard, need) = (quorum.heard, quorum.needed);
        let fault = (!quorum.is_met()).then(|| {
            format!("guard: quorum lost: hears {heard} of {total} nodes (itself included), needs {need}")
        });
        if fault != self.health.quorum_fault() {
            if fault.is_some() {
                tracing::warn!(instance = %self.cfg.name, heard, total, need, "guard: quorum lost; this node may not be master");
            } else {
                tracing::info!(instance = %self.cfg.name, heard, total, "guard: quorum regained");
            }
            self.health.set_quorum_fault(fault);
            self.apply_health(now);
        }
    }

    fn on_message(&mut self, now: Instant, msg: InstanceMsg) {
        match msg {
            InstanceMsg::Command(command, reply) => {
                let state = self.election.state();
                let result = self.election.handle_command(now, command);
                match &result {
                    Ok(()) => self.telemetry.command_applied(now, command, state),
                    Err(e) => {
                        tracing::warn!(instance = %self.cfg.name, %command, reason = %e, "operator command refused")
                    }
                }
                let _ = reply.send(result);
            }
            InstanceMsg::Status(reply) => {
                let _ = reply.send(self.status(now));
            }
            InstanceMsg::Ping(reply) => {
                let _ = reply.send(());
            }
            InstanceMsg::Shutdown => {
                self.telemetry.shutdown_started(now);
                self.election.handle_shutdown(now);
            }
            InstanceMsg::Update(cfg, changes, reply) => {
                let _ = reply.send(self.apply_update(now, *cfg, &changes));
            }
        }
    }

    fn on_datagram(&mut self, now: Instant, datagram: Datagram) {
        let source = datagram.source.ip();
        let (mut advert, extensions) = match wire::decode_extended(
            &datagram.bytes,
            self.cfg.group,
            &self.cfg.auth,
            &self.cfg.auth_accept,
        ) {
            Ok(a) => a,
            Err(e) => {
                self.reject(now, source, &e);
                return;
            }
        };
        // A peer's name reaches logs, hooks and terminals: printable only.
        advert.body.node_name = wire::printable_name(&advert.body.node_name);
        // Before the replay guard: a twin's adverts carry our node id with
        // another boot id, and must not become the guard's entry for it.
        if advert.body.node_id == self.election.config().node_id {
            self.hear_own_node_id(now, source, &advert);
            return;
        }
        if let Err(e) = self.replay.check(&advert) {
            self.reject(now, source, &e);
            return;
        }
        if self.sources.len() >= 1024 && !self.sources.contains_key(&advert.body.node_id) {
            let known: HashSet<u64> = self.election.peers().map(|p| p.node_id).collect();
            self.sources.retain(|id, _| known.contains(id));
        }
        let new_source = self.sources.insert(advert.body.node_id, source) != Some(source);
        if self.peer_versions.len() >= 1024
            && !self.peer_versions.contains_key(&advert.body.node_id)
        {
            let known: HashSet<u64> = self.election.peers().map(|p| p.node_id).collect();
            self.peer_versions.retain(|id, _| known.contains(id));
        }
        if let Some(mac) = wire::link_address(&extensions) {
            self.conflicts
                .watch
                .set_peer_mac(advert.body.node_id, crate::conflict::Mac(mac));
        }
        self.conflicts.watch.handle_peer_heard();
        match wire::software_version(&extensions) {
            Some(version) => {
                self.peer_versions.insert(advert.body.node_id, version);
            }
            None => {
                self.peer_versions.remove(&advert.body.node_id);
            }
        }
        // While handing over, hearing the successor as master is the plan, not a
        // split brain: its notice is logged at info, not warn.
        self.handing_over_at_input = self.election.is_handing_over();
        self.telemetry.advert_accepted(now, &advert.body);
        self.election.handle_advert(now, &advert.body);
        if new_source {
            // Authenticated and fresh: this address's datagrams may skip the
            // queue of junk from now on (see `transport::Inbox`).
            self.refresh_known_sources();
        }
    }

    /// Tells the transport which addresses are the peers' (the election's
    /// current peers, as last heard from), for the inbox's known lane. Called
    /// when a peer's address is new, when peers are removed, and on a new
    /// channel (a reload's socket or a re-created interface starts empty).
    pub(super) fn refresh_known_sources(&self) {
        if let Some(subscription) = &self.channel.subscription {
            subscription.set_known_sources(
                self.election
                    .peers()
                    .filter_map(|p| self.sources.get(&p.node_id).copied()),
            );
        }
    }

    /// An advert carrying our own node id: our own looped back, or a twin's
    /// (see [`identity`] for the rule).
    fn hear_own_node_id(&mut self, now: Instant, source: IpAddr, advert: &Advert) {
        if let Some(event) = self.identity.hear(now, source, advert) {
            self.on_identity_event(now, event);
        }
    }

    /// Ends a duplicate-identity episode whose twins went silent.
    fn expire_twins(&mut self, now: Instant) {
        if let Some(event) = self.identity.expire(now) {
            self.on_identity_event(now, event);
        }
    }

    /// Logs an episode's start or end once, and hands the election the fault
    /// of a node standing aside (or its end).
    fn on_identity_event(&mut self, now: Instant, event: identity::IdentityEvent) {
        let instance = &self.cfg.name;
        match event {
            identity::IdentityEvent::Started {
                message,
                stands_aside: true,
            } => {
                tracing::error!(%instance, conflict = %message,
                    "another node uses this node's name and started earlier: standing aside in fault while it is heard; give each node its own [node] name");
            }
            identity::IdentityEvent::Started { message, .. } => {
                tracing::error!(%instance, conflict = %message,
                    "another node uses this node's name and started later: it stands aside, this node keeps running; give each node its own [node] name");
            }
            identity::IdentityEvent::Ended {
                message,
                stood_aside,
            } => {
                tracing::warn!(%instance, conflict = %message, stood_aside,
                    "the other node with this node's name is no longer heard");
            }
        }
        self.apply_health(now);
    }

    /// The tracker's health, plus the fault of a node standing aside for a
    /// twin with its name.
    fn health_with_identity(&self) -> crate::election::Health {
        let mut health = self.health.health();
        for why in [self.identity.fault(), self.conflicts.refusal.clone()]
            .into_iter()
            .flatten()
        {
            health.fault = Some(match health.fault {
                Some(other) => format!("{why}; {other}"),
                None => why,
            });
        }
        health
    }

    fn reject(&mut self, now: Instant, source: IpAddr, error: &wire::WireError) {
        self.auth_failures += 1;
        self.telemetry.metrics.rejected(error);
        if let Some(r) = self.rejects.record(now, source, error) {
            let samples: Vec<String> = r.samples.iter().map(ToString::to_string).collect();
            let sources = if r.sources_capped {
                format!("at least {}", r.sources)
            } else {
                r.sources.to_string()
            };
            tracing::warn!(instance = %self.cfg.name, reason = r.reason, count = r.count,
                sources = %sources, samples = %samples.join(", "), last_error = %r.last_error,
                total = self.auth_failures,
                "rejected adverts (one line per reason per {} s at most)", AUTH_WARN_EVERY.as_secs());
        }
    }

    fn vip_of(&self, addr: IpAddr) -> Option<Vip> {
        self.cfg.vips.iter().find(|v| v.addr == addr).copied()
    }

    fn on_net_event(&mut self, now: Instant, event: NetEvent) {
        match event {
            NetEvent::AddressRemoved { ifindex, addr } if ifindex == self.ifindex => {
                let Some(vip) = self.vip_of(addr) else { return };
                if let Ok(mut held) = self.held.lock() {
                    held.insert(vip, false);
                }
                if self.claimed && self.election.state() == State::Master {
                    tracing::warn!(instance = %self.cfg.name, vip = %vip,
                        "a VIP was removed from the interface while master; claiming it again");
                    let _ = self.ops.send(VipOp::Reclaim(Some(vip)));
                }
            }
            NetEvent::Link { ifindex, up, .. } if ifindex == self.ifindex && up != self.link_up => {
                self.set_link(now, up);
            }
            NetEvent::Link {
                ifindex,
                ref name,
                up,
            } if *name == self.cfg.interface && ifindex != self.ifindex => {
                self.rebind(now, ifindex, up);
            }
            NetEvent::Link { ref name, up, .. } if self.health.set_interface(name, up) => {
                self.apply_health(now);
            }
            NetEvent::Overrun => {
                tracing::warn!(instance = %self.cfg.name, "netlink notifications were lost; re-checking link and VIPs");
                let _ = self.ops.send(VipOp::CheckLink);
                if self.health.has_tracked_interfaces() {
                    let names = self
                        .health
                        .tracked_interfaces()
                        .map(str::to_owned)
                        .collect();
                    self.checks.retain(|c| !c.is_finished());
                    self.checks.push(tokio::spawn(look_up_links(
                        self.shared.netlink.clone(),
                        names,
                        self.check_tx.clone(),
                    )));
                }
                if self.claimed {
                    let _ = self.ops.send(VipOp::Reclaim(None));
                }
            }
            _ => {}
        }
    }

    fn set_link(&mut self, now: Instant, up: bool) {
        let was_up = self.link_up;
        self.link_up = up;
        // Before the health: the fault clears with a route wait already running.
        self.election.handle_uplink(now, up);
        self.health
            .set_link_down((!up).then(|| format!("interface {} is down", self.cfg.interface)));
        if up && !was_up {
            tracing::info!(instance = %self.cfg.name, interface = %self.cfg.interface, "interface is up");
            // The kernel deletes IPv6 addresses on admin-down: a master claims again.
            if self.claimed {
                let _ = self.ops.send(VipOp::Reclaim(None));
            }
        } else if !up && was_up {
            tracing::warn!(instance = %self.cfg.name, interface = %self.cfg.interface, "interface is down");
        }
        self.apply_health(now);
    }

    /// Carries out every queued action; true once the shutdown completed.
    fn drain_actions(&mut self, now: Instant) -> bool {
        let mut done = false;
        while let Some(action) = self.election.poll_action() {
            match action {
                Action::SendAdvert(body) => {
                    let body = self.identity.outgoing(body);
                    self.send_advert(now, body);
                }
                Action::ClaimVips => {
                    // A cold claim (no peer heard since start) may wait for
                    // the conflict watch's probe (see `crate::conflict`).
                    let cold = self.sources.is_empty();
                    if self.conflicts.watch.handle_claim(now, cold) {
                        self.claimed = true;
                        let _ = self.ops.send(VipOp::Claim);
                    } else {
                        self.conflicts.claim_deferred = true;
                    }
                }
                Action::AnnounceVips if self.conflicts.claim_deferred => {
                    self.conflicts.announce_deferred = true;
                }
                Action::AnnounceVips => {
                    let _ = self.ops.send(VipOp::Announce);
                }
                Action::ReannounceVips if self.conflicts.claim_deferred => {}
                Action::ReannounceVips => {
                    let _ = self.ops.send(VipOp::AnnounceOnce);
                }
                Action::StopAnnouncing => {
                    self.conflicts.announce_deferred = false;
                    let _ = self.ops.send(VipOp::StopAnnouncing);
                }
                Action::ReleaseVips => {
                    self.claimed = false;
                    self.conflicts.claim_deferred = false;
                    self.conflicts.announce_deferred = false;
                    self.conflicts.watch.handle_holding(now, false);
                    let _ = self.ops.send(VipOp::Release);
                }
                Action::StateChanged { from, to, reason } => {
                    tracing::info!(instance = %self.cfg.name, state = %to, previous = %from, %reason, "state change");
                    self.telemetry.transition(now, from, to, &reason);
                    self.shared.set_state(&self.cfg.name, Some(to));
                    self.notifier.transition(from, to, &reason.to_string());
                }
                Action::Notice(notice) => self.log_notice(notice),
                Action::ShutdownComplete => done = true,
            }
        }
        done
    }

    fn send_advert(&mut self, now: Instant, body: wire::AdvertBody) {
        let sequence = self.shared.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let advert = Advert {
            body,
            boot_id: self.identity.boot_id(),
            sequence,
        };
        let extensions = if sends_extensions() {
            let mut fields = vec![wire::software_version_extension()];
            fields.extend(self.conflicts.own_mac.map(wire::link_address_extension));
            fields
        } else {
            Vec::new()
        };
        let bytes = match wire::encode_with_extensions(&advert, &extensions, &self.cfg.auth) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(instance = %self.cfg.name, error = %e, "encoding an advert");
                return;
            }
        };
        match self.channel.sender.send(&bytes) {
            Ok(()) => {}
            Err(SendError::AddressNotReady) => {
                tracing::debug!(instance = %self.cfg.name, "advert not sent: no usable source address yet (IPv6 DAD?); the next one will go");
            }
            Err(e) => {
                if self
                    .send_warned
                    .is_none_or(|last| now.duration_since(last) >= AUTH_WARN_EVERY)
                {
                    self.send_warned = Some(now);
                    tracing::warn!(instance = %self.cfg.name, error = %error_chain(&e), "advert not sent (logged at most every 10 s)");
                }
            }
        }
    }

    fn log_notice(&mut self, notice: Notice) {
        let instance = &self.cfg.name;
        match notice {
            Notice::OtherMasterHeard { peer, we_stay }
                if self.handing_over_at_input && !we_stay =>
            {
                tracing::info!(%instance, %peer, "successor is master: handover complete")
            }
            Notice::OtherMasterHeard { peer, we_stay } => {
                tracing::warn!(%instance, %peer, we_stay, "another master heard: two masters at once; resolving by rank")
            }
            Notice::VipSetMismatch { peer } => {
                tracing::warn!(%instance, %peer, "peer advertises a different VIP set; check both configurations")
            }
            Notice::IntervalMismatch { peer, theirs, ours } => {
                tracing::warn!(%instance, %peer, ?theirs, ?ours, "master advertises another interval than ours; following theirs")
            }
            Notice::DuplicateNodeId { peer } => {
                tracing::error!(%instance, %peer, "an advert carries our own node id: two nodes share a name, or adverts loop back")
            }
            Notice::PromotionSuperseded { peer } => {
                tracing::info!(%instance, %peer, "a later promotion elsewhere supersedes ours")
            }
            Notice::HandoverStarted => {
                tracing::info!(%instance, "handing over: keeping the VIPs until a successor claims them")
            }
            Notice::PreemptWaitsForRoute { peer, ready_in } => {
                tracing::info!(%instance, %peer, ready_in = ?ready_in,
                    "outranks the master but does not preempt yet: the route may not be announceable so soon after start or the uplink's return (route.ready_after)")
            }
        }
    }
}

/// Whether adverts carry this build's extension fields: yes unless
/// `VIPD_WIRE_SEND_EXTENSIONS=0`, a testing-only switch (read once) that makes
/// this build send what the release before it sent; see the extension area in
/// [`wire`].
fn sends_extensions() -> bool {
    static SENDS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SENDS.get_or_init(|| std::env::var_os("VIPD_WIRE_SEND_EXTENSIONS").is_none_or(|v| v != "0"))
}
