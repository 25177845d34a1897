//! The supervisor: starts, stops and reloads instance tasks, answers control
//! requests by asking the instances, and keeps systemd's watchdog fed only while
//! every instance task answers.
//!
//! What it owns: the instance handles, the reload (carrying out a
//! [`reload::plan`]), the drain records in the state directory, the watchdog.
//! What it may not touch: an instance's election (it only sends it messages)
//! and its VIPs (the instance's VIP worker does that; the supervisor releases
//! them only for an instance task that died or hung).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::instance::{
    clock, look_up_links, Conflicts, DeadlineTimer, Instance, InstanceInputs, InstanceMsg,
    InstanceSink, RejectLog, ReplayCheckpoint, StoreIo, Telemetry,
};
use super::instance::{TimerMode, OWN_TIMERS_UP_TO};
use super::reload::{self, ReloadError, ReloadSummary};
pub(super) use super::shared::Shared;
use super::state::StateDir;
use super::vips::{open_announcer, release_vips, Held, VipWorker};
use super::{
    error_chain, notify, withdraw_delay, DaemonError, AUTH_WARN_EVERY, INSTANCE_ANSWER_TIMEOUT,
    INSTANCE_QUEUE, SHUTDOWN_SLACK,
};
use crate::config::{self, Config, InstanceConfig, Vip};
use crate::control::{Outcome, Request, Response};
use crate::election::Command;
use crate::health;
use crate::health::claim::Readiness;
use crate::health::notify::Notifier;
use crate::instance::{InstanceCore, NodeFacts};
use crate::net::netlink::Presence;
use crate::net::transport::Endpoint;

/// How long a reload waits for an instance to say it took its update.
const UPDATE_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(super) struct InstanceHandle {
    config: InstanceConfig,
    tx: mpsc::Sender<InstanceMsg>,
    task: JoinHandle<()>,
}

pub(super) type Registry = Arc<Mutex<Vec<(String, mpsc::Sender<InstanceMsg>)>>>;

pub(super) struct Supervisor {
    pub(super) config_path: PathBuf,
    pub(super) config: Config,
    pub(super) shared: Arc<Shared>,
    pub(super) state: StateDir,
    pub(super) instances: Vec<InstanceHandle>,
    /// The instances the watchdog pings.
    pub(super) registry: Registry,
}

/// How an instance starts after a crash of the daemon (the rules are in
/// [`crate::instance::crash`]); the default is an ordinary start.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct CrashStart {
    /// The clean-up left this instance's VIPs in place for this start.
    pub(super) resume: bool,
    /// Do not preempt for this long (the node keeps crashing).
    pub(super) hold_preemption: Option<Duration>,
}

/// How long a VRRP instance waits at start for its interface to offer an
/// address to send from (IPv6 duplicate address detection takes 1–2 s).
const VRRP_SOURCE_WAIT: Duration = Duration::from_secs(5);

impl Supervisor {
    pub(super) async fn start_instance(
        &self,
        cfg: InstanceConfig,
        after_crash: CrashStart,
    ) -> Result<InstanceHandle, DaemonError> {
        // Subscribe before reading the link, so no change is missed.
        let net_rx = self.shared.net_events.subscribe();
        let metrics = self.shared.metrics.instance(&cfg.name);
        let link = self
            .shared
            .netlink
            .link_by_name(&cfg.interface)
            .await
            .map_err(|source| DaemonError::Interface {
                instance: cfg.name.clone(),
                interface: cfg.interface.clone(),
                source,
            })?;
        let vrrp_source = self.vrrp_source(&cfg, link.index).await?;
        let sink = Arc::new(InstanceSink::default());
        let channel = self
            .shared
            .transports
            .open(
                &Endpoint::of(&cfg, link.index, metrics.rejects()).with_vrrp_source(vrrp_source),
                sink.clone(),
            )
            .map_err(|source| DaemonError::Transport {
                instance: cfg.name.clone(),
                source,
            })?;
        // Everything a claim needs is opened now, not when the node becomes
        // master: a node that could not announce must not take the VIPs.
        let announcer = match cfg.route {
            Some(_) => None,
            None => open_announcer(&cfg.name, link.index, &cfg.interface).map_err(|source| {
                DaemonError::Announcer {
                    instance: cfg.name.clone(),
                    source,
                }
            })?,
        };
        let start_drained = self.state.is_drained(&cfg.name);
        if start_drained {
            tracing::info!(instance = %cfg.name, "starting drained (state file {} exists)", self.state.drained_file(&cfg.name).display());
        }
        let held: Held = Arc::new(Mutex::new(cfg.vips.iter().map(|v| (*v, false)).collect()));
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        let (back_tx, back_rx) = mpsc::unbounded_channel();
        let (releases_tx, releases_rx) = watch::channel(0);
        let worker = VipWorker {
            instance: cfg.name.clone(),
            interface: cfg.interface.clone(),
            ifindex: link.index,
            vips: cfg.vips.clone(),
            announce: cfg.announce.clone(),
            announces: announcer.is_some(),
            announcer,
            readiness: Readiness::default(),
            rounds: None,
            netlink: self.shared.netlink.clone(),
            held: Arc::clone(&held),
            back: back_tx,
            claimed: false,
            metrics: Arc::clone(&metrics),
            route: cfg.route.clone(),
            releases_done: releases_tx,
        };
        let worker = tokio::spawn(worker.run(ops_rx));

        let (store_io, store_rx) = match (&cfg.store, &self.config.node.etcd) {
            (Some(_), Some(etcd)) => {
                let (io, rx) =
                    StoreIo::start(&cfg, etcd, &self.shared.node.name).map_err(|source| {
                        DaemonError::Etcd {
                            instance: cfg.name.clone(),
                            source,
                        }
                    })?;
                (Some(io), Some(rx))
            }
            _ => (None, None),
        };
        let (check_tx, check_rx) = mpsc::unbounded_channel();
        let mut checks = health::spawn_checks(&cfg, &check_tx);
        let sync_rx = self.shared.sync.subscribe();
        let (tx, rx) = mpsc::channel(INSTANCE_QUEUE);
        let (checkpoint, replay) = ReplayCheckpoint::start(&self.shared.replay_book, &cfg.name);
        let node = NodeFacts {
            node_id: self.shared.node.node_id,
            node_name: self.shared.node.name.clone(),
            boot_id: self.shared.boot_id,
            startup_delay: self.shared.node.startup_delay,
            vrrp_source,
        };
        let now = clock::now();
        let mut core = InstanceCore::new(cfg.clone(), &node, start_drained, replay, now);
        if let Some(hold) = after_crash.hold_preemption {
            core.hold_preemption_until(now + hold);
        }
        if after_crash.resume {
            if core.handle_resume(now) {
                tracing::info!(instance = %cfg.name, "resuming as master after a crash: the VIPs were left in place for this start");
            } else {
                tracing::warn!(instance = %cfg.name, "not resuming after a crash: this node may not be master now (drained or in fault); releasing the VIPs left in place");
            }
        }
        if core.health().has_tracked_interfaces() {
            let names: Vec<String> = core
                .health()
                .tracked_interfaces()
                .map(str::to_owned)
                .collect();
            checks.push(tokio::spawn(look_up_links(
                self.shared.netlink.clone(),
                names,
                check_tx.clone(),
            )));
        }
        let conflicts = Conflicts::new(&cfg, link.index);
        core.set_own_mac(conflicts.own_mac);
        let instance = Instance {
            core,
            shared: Arc::clone(&self.shared),
            channel,
            ifindex: link.index,
            check_tx,
            checks,
            notifier: Notifier::start(
                cfg.name.clone(),
                cfg.notify.clone(),
                Arc::clone(&metrics),
                releases_rx.clone(),
            ),
            releases_ordered: 0,
            store_io,
            releases_done: releases_rx,
            keeps_vips: false,
            rejects: RejectLog::new(AUTH_WARN_EVERY),
            send_warned: None,
            ops: ops_tx,
            held,
            replaced_checks: None,
            telemetry: Telemetry::new(
                self.shared.node.name.clone(),
                cfg.name.clone(),
                metrics,
                self.shared.events.clone(),
            ),
            conflicts,
            checkpoint: Some(checkpoint),
            stopped: false,
            sink,
            // Decided from the configuration this instance starts under.
            timer: DeadlineTimer::new(
                &cfg.name,
                if self.config.instances.len() <= OWN_TIMERS_UP_TO {
                    TimerMode::Own
                } else {
                    TimerMode::Shared
                },
            ),
        };
        let destination = if let Some(store) = &cfg.store {
            let how = match &store.follow {
                Some(f) => format!(
                    "Patroni's leader key {} (member {})",
                    f.leader_key(),
                    f.member
                ),
                None => "a lease in etcd".to_owned(),
            };
            format!(
                "none: {how} decides (lease_ttl {} s, {})",
                store.lease_ttl.as_secs(),
                store.on_unreachable.as_str()
            )
        } else if cfg.is_unicast() {
            format!(
                "unicast to {}",
                cfg.peers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else if cfg.protocol.vrrp().is_some() {
            "multicast 224.0.0.18 / ff02::12".to_owned()
        } else {
            format!("multicast {} port {}", cfg.multicast_group, cfg.port)
        };
        tracing::info!(instance = %cfg.name, interface = %cfg.interface, ifindex = link.index, group = cfg.group,
            priority = cfg.priority, vips = %vip_list(&cfg.vips), protocol = cfg.protocol.as_str(),
            transport = %destination, "instance starting");
        let task = tokio::spawn(instance.run(
            InstanceInputs {
                rx,
                net: net_rx,
                back: back_rx,
                check_rx,
                sync_rx,
                store_rx,
            },
            worker,
            link.up,
        ));
        if let Ok(mut reg) = self.registry.lock() {
            reg.push((cfg.name.clone(), tx.clone()));
        }
        Ok(InstanceHandle {
            config: cfg,
            tx,
            task,
        })
    }

    /// Shuts the given instances down in parallel (handover where possible).
    /// The address a VRRP instance sends from: `vrrp_source`, else the one
    /// the interface offers ([`crate::net::netlink::Netlink::vrrp_source`]),
    /// waited for a while (a fresh IPv6 link-local address is tentative
    /// until duplicate address detection passes). `None` for vipd's protocol.
    async fn vrrp_source(
        &self,
        cfg: &InstanceConfig,
        ifindex: u32,
    ) -> Result<Option<IpAddr>, DaemonError> {
        let Some(vrrp) = cfg.protocol.vrrp() else {
            return Ok(None);
        };
        if let Some(source) = vrrp.source {
            return Ok(Some(source));
        }
        let ipv6 = cfg.vips.first().is_some_and(|v| v.addr.is_ipv6());
        let vips: Vec<IpAddr> = cfg.vips.iter().map(|v| v.addr).collect();
        let started = tokio::time::Instant::now();
        loop {
            let found = self
                .shared
                .netlink
                .vrrp_source(ifindex, ipv6, &vips)
                .await
                .map_err(|source| DaemonError::Interface {
                    instance: cfg.name.clone(),
                    interface: cfg.interface.clone(),
                    source,
                })?;
            if let Some(source) = found {
                tracing::info!(instance = %cfg.name, %source, "VRRP adverts go out from {source}");
                return Ok(Some(source));
            }
            if started.elapsed() >= VRRP_SOURCE_WAIT {
                return Err(DaemonError::NoVrrpSource {
                    instance: cfg.name.clone(),
                    interface: cfg.interface.clone(),
                    family: if ipv6 { "IPv6 link-local" } else { "IPv4" },
                    waited_ms: u64::try_from(VRRP_SOURCE_WAIT.as_millis()).unwrap_or(u64::MAX),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether every VIP of `cfg` is on its interface, added by vipd.
    async fn holds_all(&self, cfg: &InstanceConfig) -> bool {
        let Ok(link) = self.shared.netlink.link_by_name(&cfg.interface).await else {
            return false;
        };
        for vip in &cfg.vips {
            match self.shared.netlink.presence(link.index, vip.addr).await {
                Ok(Presence::Marked) => {}
                _ => return false,
            }
        }
        true
    }

    async fn stop_instances(&self, handles: Vec<InstanceHandle>) {
        if let Ok(mut reg) = self.registry.lock() {
            reg.retain(|(name, _)| !handles.iter().any(|h| &h.config.name == name));
        }
        let stops = handles.into_iter().map(|h| {
            let shared = Arc::clone(&self.shared);
            async move {
                let name = h.config.name.clone();
                let _ = h.tx.send(InstanceMsg::Shutdown).await;
                let bound = h.config.handover_timeout + SHUTDOWN_SLACK + withdraw_delay(&h.config);
                let mut task = h.task;
                match tokio::time::timeout(bound, &mut task).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(instance = %name, error = %e, "instance task failed");
                        release_vips(&shared.netlink, &h.config).await;
                    }
                    Err(_) => {
                        tracing::error!(instance = %name, "instance did not stop in {:?}; releasing its VIPs", bound);
                        task.abort();
                        release_vips(&shared.netlink, &h.config).await;
                    }
                }
                shared.set_state(&name, None);
            }
        });
        futures::future::join_all(stops).await;
    }

    pub(super) async fn stop_all(&mut self) {
        let handles = std::mem::take(&mut self.instances);
        self.stop_instances(handles).await;
    }

    pub(super) async fn handle_request(&mut self, request: Request) -> Response {
        match request {
            Request::Status => self.status().await,
            Request::Drain { instances, force } => {
                self.command(instances, Command::Drain { force }).await
            }
            Request::Undrain { instances } => self.command(instances, Command::Undrain).await,
            Request::Promote { instances } => self.command(instances, Command::Promote).await,
            // The control server streams events itself; it never asks for them.
            Request::Events => Response::Error {
                message: "events are streamed by the control server".to_owned(),
            },
            Request::Reload => match self.reload().await {
                Ok(summary) => Response::Reloaded {
                    summary: summary.to_string(),
                    failed: summary.failed.clone(),
                },
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            },
        }
    }

    async fn status(&self) -> Response {
        let mut instances = Vec::new();
        for h in &self.instances {
            let (tx, rx) = oneshot::channel();
            if h.tx.send(InstanceMsg::Status(tx)).await.is_err() {
                continue;
            }
            match tokio::time::timeout(INSTANCE_ANSWER_TIMEOUT, rx).await {
                Ok(Ok(status)) => instances.push(status),
                _ => {
                    tracing::warn!(instance = %h.config.name, "no status answer from the instance")
                }
            }
        }
        Response::Status {
            node: self.shared.node.name.clone(),
            instances,
        }
    }

    async fn command(&self, names: Vec<String>, command: Command) -> Response {
        let targets: Vec<&InstanceHandle> = if names.is_empty() {
            self.instances.iter().collect()
        } else {
            let unknown: Vec<&str> = names
                .iter()
                .filter(|n| !self.instances.iter().any(|h| &h.config.name == *n))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                let known: Vec<&str> = self
                    .instances
                    .iter()
                    .map(|h| h.config.name.as_str())
                    .collect();
                return Response::Error {
                    message: format!(
                        "unknown instance(s): {}; configured: {}",
                        unknown.join(", "),
                        known.join(", ")
                    ),
                };
            }
            self.instances
                .iter()
                .filter(|h| names.contains(&h.config.name))
                .collect()
        };
        let mut outcomes = Vec::new();
        for h in targets {
            let name = h.config.name.clone();
            let (tx, rx) = oneshot::channel();
            let answer = if h.tx.send(InstanceMsg::Command(command, tx)).await.is_err() {
                None
            } else {
                tokio::time::timeout(INSTANCE_ANSWER_TIMEOUT, rx)
                    .await
                    .ok()
                    .and_then(Result::ok)
            };
            let outcome = match answer {
                None => Outcome {
                    instance: name,
                    ok: false,
                    message: "the instance did not answer".to_owned(),
                },
                Some(Err(e)) => Outcome {
                    instance: name,
                    ok: false,
                    message: e.to_string(),
                },
                Some(Ok(())) => {
                    let mut message = match command {
                        Command::Drain { .. } => {
                            "drained now: ineligible; a master hands its VIPs over".to_owned()
                        }
                        Command::Undrain => "undrained now: eligible again".to_owned(),
                        Command::Promote => "promoted: becoming master".to_owned(),
                    };
                    let drained = match command {
                        Command::Drain { .. } => Some(true),
                        Command::Undrain => Some(false),
                        Command::Promote => None,
                    };
                    if let Some(on) = drained {
                        let state = self.state.clone();
                        let instance = name.clone();
                        let saved =
                            tokio::task::spawn_blocking(move || state.set_drained(&instance, on))
                                .await;
                        match saved {
                            Ok(Ok(())) if on => message
                                .push_str("; saved: a restart stays drained until `vipd undrain`"),
                            Ok(Ok(())) => message.push_str("; saved: a restart will not be drained"),
                            Ok(Err(e)) => {
                                tracing::warn!(instance = %name, error = %e, "the drain state in the state directory could not be updated");
                                message.push_str(&format!("; {e}"));
                            }
                            Err(e) => message.push_str(&format!(
                                "; not known whether this was saved ({e}): {} decides what a restart does",
                                self.state.drained_file(&name).display()
                            )),
                        }
                    }
                    tracing::info!(instance = %name, %command, "operator command applied");
                    Outcome {
                        instance: name,
                        ok: true,
                        message,
                    }
                }
            };
            outcomes.push(outcome);
        }
        Response::Done { outcomes }
    }

    /// Loads the configuration again and applies the difference. On any error the
    /// running configuration stays as it is.
    pub(super) async fn reload(&mut self) -> Result<ReloadSummary, ReloadError> {
        notify(&[sd_notify::NotifyState::Reloading]);
        let result = self.reload_inner().await;
        notify(&[sd_notify::NotifyState::Ready]);
        self.shared.metrics.reloaded(result.is_ok(), unix_now());
        match &result {
            Ok(summary) => tracing::info!(%summary, "configuration reloaded"),
            Err(message) => {
                tracing::error!(%message, "reload failed; keeping the running configuration")
            }
        }
        result
    }

    async fn reload_inner(&mut self) -> Result<ReloadSummary, ReloadError> {
        let path = self.config_path.clone();
        let new = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))??;
        let problems = config::check_against_system(&new, true);
        if !problems.is_empty() {
            return Err(ReloadError::System(problems));
        }
        // Instances a reload adds need their descriptors as much as at start.
        super::limits::settle(&new)?;
        let plan = reload::plan(
            &self.config.node,
            self.instances.iter().map(|h| &h.config),
            &new,
        )?;

        let (to_stop, remaining): (Vec<_>, Vec<_>) = std::mem::take(&mut self.instances)
            .into_iter()
            .partition(|h| {
                !plan.keep.contains(&h.config.name)
                    && !plan.update.iter().any(|u| u.name == h.config.name)
            });
        self.instances = remaining;
        let (switching, to_stop): (Vec<_>, Vec<_>) = to_stop
            .into_iter()
            .partition(|h| plan.switch_protocol.contains(&h.config.name));
        self.stop_instances(to_stop).await;
        // A protocol switch: a master's VIPs stay for the next instance.
        let mut resume = Vec::new();
        for h in switching {
            let name = h.config.name.clone();
            let _ = h.tx.send(InstanceMsg::ShutdownKeeping).await;
            let mut task = h.task;
            if tokio::time::timeout(SHUTDOWN_SLACK, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
            if self.holds_all(&h.config).await {
                tracing::info!(instance = %name, "switching protocol as master: the VIPs stay and the restarted instance resumes them");
                resume.push(name);
            }
        }

        let mut summary = ReloadSummary {
            kept: plan.keep,
            stopped: plan.stop,
            ..ReloadSummary::default()
        };
        for update in plan.update {
            let Some(h) = self
                .instances
                .iter_mut()
                .find(|h| h.config.name == update.name)
            else {
                continue;
            };
            let Some(c) = new.instance(&update.name) else {
                continue;
            };
            let (reply, taken) = oneshot::channel();
            let msg = InstanceMsg::Update(Box::new(c.clone()), update.changes.clone(), reply);
            let outcome = if h.tx.send(msg).await.is_ok() {
                // The instance answers at its next wake-up: its task takes
                // messages before anything slow.
                match tokio::time::timeout(UPDATE_REPLY_TIMEOUT, taken).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_)) => Err("the instance stopped before taking it".to_owned()),
                    Err(_) => Err(format!(
                        "no answer within {UPDATE_REPLY_TIMEOUT:?}; it may take it later"
                    )),
                }
            } else {
                Err("the instance did not take its new configuration".to_owned())
            };
            match outcome {
                Ok(()) => {
                    h.config = c.clone();
                    if update.changes == [reload::Change::Keys] {
                        summary.rekeyed.push(c.name.clone());
                    } else {
                        let what: Vec<String> =
                            update.changes.iter().map(ToString::to_string).collect();
                        summary
                            .updated
                            .push(format!("{} ({})", c.name, what.join(", ")));
                    }
                }
                Err(why) => {
                    // The rest was taken; the transport stays as it was, and the
                    // recorded config says so, so the next reload tries again.
                    let mut taken = c.clone();
                    taken.peers.clone_from(&h.config.peers);
                    taken.port = h.config.port;
                    taken.multicast_group = h.config.multicast_group;
                    h.config = taken;
                    summary.failed.push(format!("{}: {why}", c.name));
                }
            }
        }
        for c in &new.instances {
            let restarting = plan.restart.contains(&c.name);
            if !restarting && !plan.start.contains(&c.name) {
                continue;
            }
            let start = CrashStart {
                resume: resume.contains(&c.name),
                ..CrashStart::default()
            };
            match self.start_instance(c.clone(), start).await {
                Ok(h) => {
                    if restarting {
                        summary.restarted.push(c.name.clone());
                    } else {
                        summary.started.push(c.name.clone());
                    }
                    self.instances.push(h);
                }
                Err(e) => {
                    tracing::error!(instance = %c.name, error = %error_chain(&e), "starting instance on reload");
                    if restarting {
                        summary.restarted.push(c.name.clone());
                    }
                    summary
                        .failed
                        .push(format!("{}: {}", c.name, error_chain(&e)));
                }
            }
        }
        // Keep the file's order for status.
        self.instances.sort_by_key(|h| {
            new.instances
                .iter()
                .position(|c| c.name == h.config.name)
                .unwrap_or(usize::MAX)
        });
        self.shared
            .metrics
            .retain(|name| new.instance(name).is_some());
        self.config = new;
        self.shared.update_status();
        Ok(summary)
    }
}

/// Now in Unix seconds (0 before 1970).
pub(super) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn vip_list(vips: &[Vip]) -> String {
    vips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Pings every instance at half the systemd watchdog interval and tells systemd
/// only when all answered, so a wedged instance task stops the pings.
pub(super) fn start_watchdog(registry: Registry) -> Option<JoinHandle<()>> {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let period = Duration::from_micros(usec) / 2;
    tracing::info!(?period, "systemd watchdog enabled");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let instances: Vec<(String, mpsc::Sender<InstanceMsg>)> = match registry.lock() {
                Ok(r) => r.clone(),
                Err(_) => continue,
            };
            let mut healthy = true;
            for (name, tx) in instances {
                let (pong_tx, pong_rx) = oneshot::channel();
                let answered = tokio::time::timeout(period / 2, async {
                    tx.send(InstanceMsg::Ping(pong_tx)).await.is_ok() && pong_rx.await.is_ok()
                })
                .await
                .unwrap_or(false);
                if !answered {
                    tracing::error!(instance = %name, "instance task did not answer the watchdog ping; not notifying systemd");
                    healthy = false;
                }
            }
            if healthy {
                notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    }))
}
