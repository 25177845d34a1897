//! One instance's driver: owns its [`InstanceCore`] and everything around it
//! that is IO — the advert socket's channel, the VIP worker's queue, the
//! health checks' tasks, the hooks, the ARP/NA watch, telemetry — and moves
//! inputs into the core and the core's outputs out (the crate's drive-loop
//! contract). Every rule is the core's ([`crate::instance`]).
//!
//! Each wake-up reads the clock once, from tokio (`clock::now`), and hands that
//! `now` to every call it makes, so one wake-up never sees two times. Its one
//! timer (`deadline`) keeps takeover deadlines exactly, on a timerfd for their
//! last 3 ms, and every other deadline on tokio's wheel; the timerfd reads the
//! real clock, so a test with tokio's paused time would not drive a takeover.
//!
//! What it may not touch: the kernel's addresses (its VIP worker does that, off
//! the advert path), other instances (only through the sync board), and any
//! rule (it feeds inputs and carries out outputs).

mod conflicts;
mod deadline;
mod rejects;
mod replay;
mod status;
mod store;
mod telemetry;
mod update;

pub(super) use conflicts::Conflicts;
pub(super) use deadline::{DeadlineTimer, Mode as TimerMode, OWN_TIMERS_UP_TO};
pub(super) use rejects::RejectLog;
pub(super) use replay::ReplayCheckpoint;
pub(super) use store::StoreIo;
pub(super) use telemetry::Telemetry;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use super::reload::Change;
use super::shared::Shared;
use super::vips::{Held, VipOp, WorkerReport};
use super::{error_chain, AUTH_WARN_EVERY, SHUTDOWN_SLACK};
use crate::config::InstanceConfig;
use crate::control::InstanceStatus;
use crate::election::{Command, CommandError, Notice, PlannedOverlap, State};
use crate::health::notify::Notifier;
use crate::health::{CheckEvent, SyncEntry};
use crate::instance::{Event, IdentityEvent, InstanceCore, Output, VipOrder};
use crate::net::netlink::{NetEvent, Netlink};
use crate::net::transport::{Channel, DatagramSink, SendError, Subscription};
use crate::wire::{self, Advert};
use deadline::Precision;

/// The daemon's clock: tokio's, as a std `Instant` for the core.
pub(super) mod clock {
    use std::time::Instant;

    pub(in crate::daemon) fn now() -> Instant {
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
    /// Stop for a restart under another protocol (the reload's
    /// `switch_protocol`): a master keeps its VIPs, sends nothing and runs
    /// no stop hook; the next instance resumes them. A backup stops as on
    /// [`InstanceMsg::Shutdown`].
    ShutdownKeeping,
}

/// What woke the instance task.
enum Wake {
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
    Store(crate::store::StoreInput),
    /// The socket's task wants the timer polled again, or the core finished
    /// its shutdown; or an input closed. Nothing else to handle.
    Nothing,
}

/// The instance's [`DatagramSink`]: the advert socket's receive task hands
/// each datagram for the instance straight to its core, under the instance's
/// lock, and carries out the outputs at once (an advert, a VIP order) — no
/// queue and no hop to the instance's own task, whose wake-ups are for the
/// other inputs and the timer. It moves the timer to the core's new deadline
/// (a backup's moves with every advert) without waking that task, and wakes
/// it only when the timer needs a new poll or the core finished its shutdown.
#[derive(Debug, Default)]
pub(super) struct InstanceSink {
    instance: OnceLock<Weak<Mutex<Instance>>>,
    wake: Notify,
}

impl DatagramSink for InstanceSink {
    fn deliver(&self, now: Instant, source: IpAddr, bytes: &[u8]) {
        // Datagrams before the instance's task started are dropped: nothing
        // was decided yet, and the next advert comes an interval later.
        let Some(instance) = self.instance.get().and_then(Weak::upgrade) else {
            return;
        };
        let mut instance = instance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if instance.deliver(now, source, bytes) {
            self.wake.notify_one();
        }
    }
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

/// What an instance's task waits on besides its timer (adverts come to the
/// core from the socket's task).
pub(super) struct InstanceInputs {
    /// From the supervisor.
    pub(super) rx: mpsc::Receiver<InstanceMsg>,
    pub(super) net: broadcast::Receiver<NetEvent>,
    /// From the VIP worker.
    pub(super) back: mpsc::UnboundedReceiver<WorkerReport>,
    pub(super) check_rx: mpsc::UnboundedReceiver<CheckEvent>,
    pub(super) sync_rx: watch::Receiver<BTreeMap<String, SyncEntry>>,
    /// etcd's results and the watch's views (`election = "etcd"`/`"patroni"`).
    pub(super) store_rx: Option<mpsc::UnboundedReceiver<crate::store::StoreInput>>,
}

pub(super) struct Instance {
    /// Every rule: election, health, name clash, replay, quorum, sync group,
    /// conflict watch.
    pub(super) core: InstanceCore,
    pub(super) shared: Arc<Shared>,
    pub(super) channel: Channel,
    pub(super) ifindex: u32,
    /// For interface lookups started after an overrun.
    pub(super) check_tx: mpsc::UnboundedSender<CheckEvent>,
    /// The check tasks, aborted when the instance stops.
    pub(super) checks: Vec<JoinHandle<()>>,
    pub(super) notifier: Notifier,
    /// Rejected adverts, summarised per reason (bounded under floods).
    pub(super) rejects: RejectLog,
    pub(super) send_warned: Option<Instant>,
    pub(super) ops: mpsc::UnboundedSender<VipOp>,
    pub(super) held: Held,
    /// Set by a reload that restarted the health checks: their new receiver,
    /// for the run loop to take.
    pub(super) replaced_checks: Option<mpsc::UnboundedReceiver<CheckEvent>>,
    /// History, `vipd events` and metrics.
    pub(super) telemetry: Telemetry,
    /// The ARP/NA watch's socket and this node's MAC.
    pub(super) conflicts: Conflicts,
    /// Keeps the instance's entry in the node's replay book current.
    pub(super) checkpoint: Option<ReplayCheckpoint>,
    /// The core said the shutdown is complete.
    pub(super) stopped: bool,
    /// Where the advert socket delivers this instance's datagrams (a
    /// re-opened socket gets the same).
    pub(super) sink: Arc<InstanceSink>,
    /// The core's next deadline, polled by the instance's task and moved by
    /// whoever fed the core last (the socket's task too, without waking it).
    pub(super) timer: DeadlineTimer,
    /// Releases ordered from the VIP worker so far; it counts those done on
    /// `releases_done` (the after-release hook waits for its own).
    pub(super) releases_ordered: u64,
    pub(super) releases_done: watch::Receiver<u64>,
    /// Stopping for a protocol switch while master: the VIPs stay.
    pub(super) keeps_vips: bool,
    /// `election = "etcd"` / `"patroni"`: the etcd client and its watch.
    pub(super) store_io: Option<StoreIo>,
}

impl Instance {
    /// Runs the instance until it stopped (a handover where possible), then
    /// cleans up: the replay book, the sync board, the VIP worker, the hooks.
    ///
    /// Not an `async fn`: the instance moves to the heap before the task's
    /// future is built, so the future holds a pointer to it, not a copy of
    /// it (with 255 instances, copies cost megabytes).
    pub(super) fn run(
        mut self,
        inputs: InstanceInputs,
        worker: JoinHandle<()>,
        link_up: bool,
    ) -> impl std::future::Future<Output = ()> + Send {
        let sightings = self.conflicts.sightings.take();
        let sink = Arc::clone(&self.sink);
        let instance = Arc::new(Mutex::new(self));
        let _ = sink.instance.set(Arc::downgrade(&instance));
        drive(instance, sink, sightings, inputs, worker, link_up)
    }

    /// After the core stopped: the final replay checkpoint, the sync board,
    /// the VIP worker's queue, the stop hook.
    async fn finish(mut self, worker: JoinHandle<()>) {
        let name = self.core.config().name.clone();
        self.conflicts.stop();
        self.telemetry.stopped(clock::now());
        if let Some(checkpoint) = self.checkpoint.take() {
            checkpoint.finish(clock::now(), self.core.replay()).await;
        }
        for check in &self.checks {
            check.abort();
        }
        self.shared
            .sync
            .send_if_modified(|board| board.remove(&name).is_some());
        // The core released (the Release order went before this); let the
        // worker finish its queue, bounded.
        let _ = self.ops.send(VipOp::Stop);
        let _ = tokio::time::timeout(
            SHUTDOWN_SLACK + super::withdraw_delay(self.core.config()),
            worker,
        )
        .await;
        // The VIPs are gone: now the lease may go, and the next holder
        // with it (core rule 19).
        if let Some(io) = self.store_io.take() {
            io.finish(&name).await;
        }
        // The stop hook runs after the VIPs are released; a master that
        // keeps them for its successor instance did not stop serving.
        if !self.keeps_vips {
            self.notifier.stop(self.core.election().state());
        }
        self.notifier.finish(SHUTDOWN_SLACK).await;
        tracing::info!(instance = %name, "instance stopped");
    }

    /// A datagram from the advert socket (see [`InstanceSink`]). Timers
    /// before sockets for a master: its own advert, if due, goes first. For
    /// a backup the datagram goes first: it may be the master's advert that
    /// cancels a takeover due at the same moment. True when the task must
    /// wake: the timer needs a new poll (see [`DeadlineTimer::set`]), or it
    /// finished its shutdown.
    fn deliver(&mut self, now: Instant, source: IpAddr, bytes: &[u8]) -> bool {
        if self.stopped {
            return false;
        }
        let due = self.core.poll_timeout().is_some_and(|at| at <= now);
        let master = self.core.election().state() == State::Master;
        if due && master {
            self.core.handle_timeout(now);
        }
        self.core.handle_datagram(now, source, bytes);
        if due && !master {
            self.core.handle_timeout(now);
        }
        self.carry_out(now);
        self.arm_timer() || self.stopped
    }

    /// Moves the timer to the core's next deadline: exact when it decides a
    /// takeover (see `deadline`). True when the task must wake to wait on it.
    fn arm_timer(&mut self) -> bool {
        let next = self.core.poll_timeout();
        let precision = if next.is_some() && next == self.core.takeover_deadline() {
            Precision::Exact
        } else {
            Precision::Batched
        };
        let deadline = next.map(|at| (at, precision));
        deadline != self.timer.armed() && self.timer.set(deadline)
    }

    fn on_message(&mut self, now: Instant, msg: InstanceMsg) {
        match msg {
            InstanceMsg::Command(command, reply) => {
                let state = self.core.election().state();
                let result = self.core.handle_command(now, command);
                match &result {
                    Ok(()) => self.telemetry.command_applied(now, command, state),
                    Err(e) => {
                        tracing::warn!(instance = %self.core.config().name, %command, reason = %e, "operator command refused")
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
                self.core.handle_shutdown(now);
            }
            InstanceMsg::ShutdownKeeping => {
                self.telemetry.shutdown_started(now);
                if self.core.election().state() == State::Master && self.core.is_claimed() {
                    self.keeps_vips = true;
                    self.core.handle_shutdown_keeping(now);
                } else {
                    self.core.handle_shutdown(now);
                }
            }
            InstanceMsg::Update(cfg, changes, reply) => {
                let _ = reply.send(self.apply_update(now, *cfg, &changes));
            }
        }
    }

    /// Tells the transport which addresses are the peers' (the core's known
    /// sources), whose datagrams it hands over first. Called when a peer's address is
    /// new, when peers are removed, and on a new channel (a reload's socket or
    /// a re-created interface starts empty).
    pub(super) fn refresh_known_sources(&self) {
        if let Some(subscription) = &self.channel.subscription {
            subscription.set_known_sources(self.core.known_sources());
        }
    }

    fn on_net_event(&mut self, now: Instant, event: NetEvent) {
        match event {
            NetEvent::AddressRemoved { ifindex, addr } if ifindex == self.ifindex => {
                let Some(vip) = self
                    .core
                    .config()
                    .vips
                    .iter()
                    .find(|v| v.addr == addr)
                    .copied()
                else {
                    return;
                };
                if let Ok(mut held) = self.held.lock() {
                    held.insert(vip, false);
                }
                self.core.handle_address_removed(now, addr);
            }
            NetEvent::Link { ifindex, up, .. }
                if ifindex == self.ifindex && up != self.core.link_up() =>
            {
                self.core.handle_link(now, up);
            }
            NetEvent::Link {
                ifindex,
                ref name,
                up,
            } if *name == self.core.config().interface && ifindex != self.ifindex => {
                self.rebind(now, ifindex, up);
            }
            NetEvent::Link { ref name, up, .. } => self.core.handle_interface(now, name, up),
            NetEvent::Overrun => {
                tracing::warn!(instance = %self.core.config().name, "netlink notifications were lost; re-checking link and VIPs");
                if self.core.health().has_tracked_interfaces() {
                    let names = self
                        .core
                        .health()
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
                self.core.handle_netlink_overrun(now);
            }
            _ => {}
        }
    }

    /// Carries out the core's outputs in order, then keeps the ARP/NA watch's
    /// socket open or closed as the core wants and the replay book current.
    pub(super) fn carry_out(&mut self, now: Instant) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Advert {
                    body,
                    boot_id,
                    replaced,
                    claim_pending,
                } => self.send_advert(now, body, boot_id, replaced.as_deref(), claim_pending),
                Output::Vips(order) => self.order_vips(order),
                Output::Event(event) => self.on_event(now, event),
                Output::RunGate { from, reason } => self.run_gate(from, reason),
                Output::Store(action) => {
                    if let Some(io) = self.store_io.as_mut() {
                        io.execute(action);
                    }
                }
                Output::RunAfterRelease { to, reason } => {
                    // Queued behind the release just ordered (rule 17).
                    self.notifier
                        .after_release(self.releases_ordered, to, &reason);
                }
            }
        }
        let cfg = self.core.config();
        self.conflicts
            .sync_task(now, cfg, self.ifindex, self.core.watch().wants_sightings());
        if let Some(checkpoint) = &mut self.checkpoint {
            checkpoint.after_wake(now, self.core.replay());
        }
    }

    fn order_vips(&mut self, order: VipOrder) {
        let op = match order {
            VipOrder::Claim => VipOp::Claim,
            VipOrder::Announce => VipOp::Announce,
            VipOrder::AnnounceOnce => VipOp::AnnounceOnce,
            VipOrder::StopAnnouncing => VipOp::StopAnnouncing,
            VipOrder::Release => {
                self.releases_ordered += 1;
                VipOp::Release
            }
            VipOrder::Reclaim(vip) => {
                if let Some(vip) = vip {
                    tracing::warn!(instance = %self.core.config().name, %vip,
                        "a VIP was removed from the interface while master; claiming it again");
                }
                VipOp::Reclaim(vip)
            }
            VipOrder::CheckLink => VipOp::CheckLink,
            VipOrder::Probe => VipOp::Probe,
        };
        let _ = self.ops.send(op);
    }

    /// Runs the gate (`notify.before_claim`) in a task of its own, as the
    /// notify hooks run (arguments, environment, user, timeout); its result
    /// comes back on the checks' channel.
    fn run_gate(&self, from: State, reason: String) {
        let cfg = self.core.config();
        let instance = cfg.name.clone();
        let notify = cfg.notify.clone();
        let results = self.check_tx.clone();
        let token = self.core.store().and_then(crate::store::StoreSeat::token);
        tracing::info!(%instance, "running the before_claim gate; the VIPs wait for it");
        tokio::spawn(async move {
            let from = from.to_string();
            let outcome = crate::health::notify::run_hook(
                &notify,
                &notify.before_claim,
                &instance,
                "master",
                &from,
                &reason,
                token,
            )
            .await;
            let _ = results.send(CheckEvent::Gate { outcome });
        });
    }

    fn on_event(&mut self, now: Instant, event: Event) {
        let instance = self.core.config().name.clone();
        match event {
            Event::GatePassed { took } => {
                tracing::info!(%instance, took_ms = took.as_millis(), "before_claim gate passed; claiming the VIPs");
            }
            Event::GateFailed { why, took } => {
                tracing::error!(%instance, took_ms = took.as_millis(), error = %why,
                    "before_claim gate failed: not claiming the VIPs; in fault for {} s", crate::instance::GATE_FAULT_HOLD.as_secs());
            }
            Event::DrainRolledBack { successor, why } => {
                tracing::warn!(%instance, %successor, %why,
                    "drain rolled back: no successor served; this node keeps or takes back the VIPs");
                // A restart must not be drained by a drain that no longer is.
                let state = self.shared.state_dir.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = state.set_drained(&instance, false) {
                        tracing::warn!(%instance, error = %e, "the rolled-back drain could not be removed from the state directory");
                    }
                });
            }
            Event::GateOutdated { took } => {
                tracing::warn!(%instance, took_ms = took.as_millis(),
                    "before_claim gate passed after this node stopped being master; nothing claimed");
            }
            Event::AdvertAccepted { node_id, master } => {
                self.telemetry.advert_accepted(now, node_id, master);
            }
            Event::KnownSourcesChanged => self.refresh_known_sources(),
            Event::Rejected { source, error } => {
                self.telemetry.metrics.rejected(&error);
                if let Some(r) = self.rejects.record(now, source, &error) {
                    let samples: Vec<String> = r.samples.iter().map(ToString::to_string).collect();
                    let sources = if r.sources_capped {
                        format!("at least {}", r.sources)
                    } else {
                        r.sources.to_string()
                    };
                    tracing::warn!(%instance, reason = r.reason, count = r.count,
                        sources = %sources, samples = %samples.join(", "), last_error = %r.last_error,
                        total = self.core.auth_failures(),
                        "rejected adverts (one line per reason per {} s at most)", AUTH_WARN_EVERY.as_secs());
                }
            }
            Event::StateChanged { from, to, reason } => {
                tracing::info!(%instance, state = %to, previous = %from, %reason, "state change");
                self.telemetry.transition(now, from, to, &reason);
                self.shared.set_state(&instance, Some(to));
                let token = self.core.store().and_then(crate::store::StoreSeat::token);
                self.notifier
                    .transition(from, to, &reason.to_string(), token);
            }
            Event::Notice(notice) => log_notice(&instance, notice),
            Event::Store(notice) => self.on_store_notice(&instance, notice),
            Event::NameClash(event) => log_name_clash(&instance, event),
            Event::SyncEntry(own) => {
                self.shared.sync.send_if_modified(|board| {
                    if board.get(&instance) == Some(&own) {
                        false
                    } else {
                        board.insert(instance.clone(), own);
                        true
                    }
                });
            }
            Event::SyncLeft => {
                self.shared
                    .sync
                    .send_if_modified(|board| board.remove(&instance).is_some());
            }
            Event::QuorumLost {
                heard,
                total,
                needed,
            } => {
                tracing::warn!(%instance, heard, total, need = needed, "guard: quorum lost; this node may not be master");
            }
            Event::QuorumRegained { heard, total } => {
                tracing::info!(%instance, heard, total, "guard: quorum regained");
            }
            Event::LinkChanged { up } => {
                let interface = &self.core.config().interface;
                if up {
                    tracing::info!(%instance, %interface, "interface is up");
                } else {
                    tracing::warn!(%instance, %interface, "interface is down");
                }
            }
            Event::ShutdownComplete => self.stopped = true,
            conflict => self.on_conflict_event(conflict),
        }
    }

    /// `replaced`: the master this node replaced on purpose, named in the
    /// advert (extension type 3) while the election says so; `claim_pending`:
    /// master with the claim still waiting (extension type 4).
    fn send_advert(
        &mut self,
        now: Instant,
        body: wire::AdvertBody,
        boot_id: u64,
        replaced: Option<&str>,
        claim_pending: bool,
    ) {
        if let Some(message) = self.core.vrrp_message(&body) {
            // VRRP mode (core rule 18): no sequence, no extension, no MAC.
            match message {
                Ok(bytes) => self.send_bytes(now, &bytes),
                Err(e) => {
                    tracing::error!(instance = %self.core.config().name, error = %e, "encoding a VRRP advert");
                }
            }
            return;
        }
        let sequence = self.shared.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let advert = Advert {
            body,
            boot_id,
            sequence,
        };
        let extensions = if sends_extensions() {
            let mut fields = vec![wire::software_version_extension()];
            fields.extend(self.conflicts.own_mac.map(wire::link_address_extension));
            fields.extend(replaced.map(wire::replaced_master_extension));
            if claim_pending {
                fields.push(wire::claim_pending_extension());
            }
            fields
        } else {
            Vec::new()
        };
        let cfg = self.core.config();
        let bytes = match wire::encode_with_extensions(&advert, &extensions, &cfg.auth) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(instance = %cfg.name, error = %e, "encoding an advert");
                return;
            }
        };
        self.send_bytes(now, &bytes);
    }

    /// Hands an encoded advert to the transport; a failure is logged at
    /// most every [`AUTH_WARN_EVERY`].
    fn send_bytes(&mut self, now: Instant, bytes: &[u8]) {
        let cfg = self.core.config();
        match self.channel.sender.send(bytes) {
            Ok(()) => {}
            Err(SendError::AddressNotReady) => {
                tracing::debug!(instance = %cfg.name, "advert not sent: no usable source address yet (IPv6 DAD?); the next one will go");
            }
            Err(e) => {
                if self
                    .send_warned
                    .is_none_or(|last| now.duration_since(last) >= AUTH_WARN_EVERY)
                {
                    self.send_warned = Some(now);
                    tracing::warn!(instance = %cfg.name, error = %error_chain(&e), "advert not sent (logged at most every 10 s)");
                }
            }
        }
    }
}

/// The instance's task: waits on its timer and every input but the adverts,
/// feeds the core under the lock, and cleans up once the core stopped.
async fn drive(
    instance: Arc<Mutex<Instance>>,
    sink: Arc<InstanceSink>,
    mut sightings: Option<mpsc::Receiver<crate::conflict::Sighting>>,
    inputs: InstanceInputs,
    worker: JoinHandle<()>,
    link_up: bool,
) {
    let InstanceInputs {
        mut rx,
        mut net,
        mut back,
        mut check_rx,
        mut sync_rx,
        mut store_rx,
    } = inputs;
    let (name, interface, sync_group) = {
        let this = lock(&instance);
        let cfg = this.core.config();
        (
            cfg.name.clone(),
            cfg.interface.clone(),
            cfg.sync_group.is_some(),
        )
    };
    sync_rx.mark_changed();
    {
        let mut this = lock(&instance);
        let now = clock::now();
        this.core.handle_link(now, link_up);
        this.carry_out(now);
    }
    let mut rx_open = true;
    let mut net_open = true;
    let mut back_open = true;
    let mut sync_group = sync_group;
    loop {
        {
            let mut this = lock(&instance);
            if this.stopped {
                break;
            }
            this.arm_timer();
        }
        let timer = std::future::poll_fn(|cx| lock(&instance).timer.poll_expired(cx));
        // Wait for the next input, then read the clock once: every call of
        // this wake-up sees the same `now` (tokio's clock, so a test with
        // paused time drives it). Adverts do not come this way: the
        // socket's task hands them to the core (see `InstanceSink`).
        // Timers and the supervisor first: a flood of forged ARP claims
        // never delays our own adverts, the takeover timer, a control
        // request or a watchdog ping. One input per wake-up.
        let wake = tokio::select! {
            biased;
            () = timer => Wake::Timer,
            () = sink.wake.notified() => Wake::Nothing,
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
            Ok(()) = sync_rx.changed(), if sync_group => {
                Wake::SyncBoard(sync_rx.borrow_and_update().clone())
            },
            Some(input) = async { store_rx.as_mut()?.recv().await }, if store_rx.is_some() => {
                Wake::Store(input)
            },
            // Last: a flood of forged claims never delays an advert.
            Some(sighting) = async { sightings.as_mut()?.recv().await }, if sightings.is_some() => {
                Wake::Sighting(sighting)
            },
        };
        let now = clock::now();
        if matches!(wake, Wake::Timer) {
            // Adverts already waiting in the socket count before a
            // deadline: after a scheduling stall the master's adverts wait
            // there together with our takeover timer, and must win. Read
            // without the instance's lock: the socket hands them to it.
            let reader = {
                let this = lock(&instance);
                (this.core.election().state() != State::Master)
                    .then(|| this.channel.subscription.as_ref().map(Subscription::reader))
                    .flatten()
            };
            if let Some(reader) = reader {
                reader.read_pending(now);
            }
        }
        let mut this = lock(&instance);
        match wake {
            Wake::Timer => this.core.handle_timeout(now),
            Wake::Sighting(sighting) => this.core.handle_sighting(now, sighting),
            Wake::Message(msg) => this.on_message(now, msg),
            Wake::SupervisorGone => {
                this.telemetry.shutdown_started(now);
                this.core.handle_shutdown(now);
            }
            Wake::Net(event) => this.on_net_event(now, event),
            Wake::Link(up) => this.core.handle_link(now, up),
            Wake::ClaimFault(why) => this.core.handle_claim_fault(now, why),
            Wake::Check(event) => {
                this.telemetry.check_event(&event);
                this.core.handle_check(now, event);
                let checks = this.core.health().checks();
                this.telemetry.metrics.set_checks(checks);
            }
            Wake::SyncBoard(board) => this.core.handle_sync_board(now, &board),
            Wake::Store(input) => this.core.handle_store(now, input),
            Wake::Nothing => {}
        }
        if let Some(replaced) = this.replaced_checks.take() {
            check_rx = replaced;
        }
        sync_group = this.core.config().sync_group.is_some();
        this.carry_out(now);
    }
    // Nothing delivers to the instance any more once its subscription is
    // gone; the socket's task holds only a weak reference.
    // The clean-up's future on the heap, built from the instance by value
    // in a scope of its own: the task's future keeps neither.
    let finish = {
        let mut this = lock(&instance);
        this.channel.subscription = None;
        drop(this);
        match Arc::try_unwrap(instance) {
            Ok(mutex) => Box::pin(
                mutex
                    .into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .finish(worker),
            ),
            Err(_) => {
                tracing::error!(instance = %name, "instance still referenced at its stop; its clean-up is skipped");
                return;
            }
        }
    };
    finish.await;
}

/// The instance's lock. A panic while it was held cannot leave the core
/// half-changed in a way worse than stopping would: go on with it.
fn lock(instance: &Mutex<Instance>) -> MutexGuard<'_, Instance> {
    instance
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Logs a name-clash episode's start or end, once each.
fn log_name_clash(instance: &str, event: IdentityEvent) {
    match event {
        IdentityEvent::Started {
            message,
            stands_aside: true,
        } => {
            tracing::error!(%instance, conflict = %message,
                "another node uses this node's name and started earlier: standing aside in fault while it is heard; give each node its own [node] name");
        }
        IdentityEvent::Started { message, .. } => {
            tracing::error!(%instance, conflict = %message,
                "another node uses this node's name and started later: it stands aside, this node keeps running; give each node its own [node] name");
        }
        IdentityEvent::Ended {
            message,
            stood_aside,
        } => {
            tracing::warn!(%instance, conflict = %message, stood_aside,
                "the other node with this node's name is no longer heard");
        }
    }
}

fn log_notice(instance: &str, notice: Notice) {
    match notice {
        Notice::OtherMasterHeard { peer, we_stay } => {
            tracing::warn!(%instance, %peer, we_stay, "another master heard: two masters at once; resolving by rank")
        }
        Notice::PlannedOverlap { peer, why } => match why {
            PlannedOverlap::HandingOver => {
                tracing::info!(%instance, %peer, "planned overlap: handing over to {peer} (the successor this drain or stop waited for)")
            }
            PlannedOverlap::ReplacedUs => {
                tracing::info!(%instance, %peer, "planned overlap: handing over to {peer} (it replaced us on purpose)")
            }
            PlannedOverlap::WeReplaced => {
                tracing::info!(%instance, %peer, "planned overlap: {peer}, which this node replaced on purpose, was still master for a moment; it steps down")
            }
        },
        Notice::StepDownCalledOff { peer, stays: true } => {
            tracing::warn!(%instance, %peer, "{peer} gave up master before it claimed the VIPs; keeping them and announcing again")
        }
        Notice::StepDownCalledOff { peer, stays: false } => {
            tracing::warn!(%instance, %peer, "{peer} gave up master before it claimed the VIPs; releasing them now for another peer (this node may not stay master)")
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
        Notice::DrainRolledBack { why } => {
            // The core turns it into Event::DrainRolledBack, logged there.
            tracing::debug!(%instance, %why, "drain rolled back");
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

/// Whether adverts carry this build's extension fields: yes unless
/// `VIPD_WIRE_SEND_EXTENSIONS=0`, a testing-only switch (read once) that makes
/// this build send what the release before it sent; see the extension area in
/// [`wire`].
fn sends_extensions() -> bool {
    static SENDS: OnceLock<bool> = OnceLock::new();
    *SENDS.get_or_init(|| std::env::var_os("VIPD_WIRE_SEND_EXTENSIONS").is_none_or(|v| v != "0"))
}
