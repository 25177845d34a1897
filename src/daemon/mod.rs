//! The tokio driver: sockets, timers, control requests and signals in; election
//! actions out.
//!
//! # Tasks
//!
//! ```text
//!                 ┌──────────────── run() ─────────────────┐
//!  SIGHUP ───────▶│ main loop: control requests, reload,   │──▶ sd_notify
//!  shutdown fut ─▶│ shutdown; owns the instance handles     │
//!                 └───────┬────────────────────────────────┘
//!                         │ InstanceMsg (command, status, ping, shutdown)
//!   transport ──Datagram─▶│
//!   netlink watch ─(broadcast NetEvent)─▶ instance task (owns its Election)
//!                         │ VipOp (claim, announce, release, re-check), in order
//!                         ▼
//!                   VIP worker task ──▶ netlink, announce bursts (own task)
//! ```
//!
//! Each instance task owns its [`Election`] and follows the crate's drive-loop
//! contract: after every input it drains `poll_action()` and carries the actions
//! out, then sleeps until `poll_timeout()` or the next input. Nothing it does
//! waits on the kernel: adverts go out on non-blocking sockets (a full buffer drops
//! the advert), and everything that talks to netlink or sends announcements runs in
//! the instance's VIP worker, which takes its orders from an unbounded queue so that
//! claims and releases keep their order.
//!
//! Health checks ([`crate::health`]: track scripts, track files, the guard's
//! witness probe, tracked-interface lookups) are tasks of their own that send
//! results to the instance task over an unbounded channel; the instance folds them
//! into a [`Tracker`] and hands the result to `handle_health`. Sync-group members
//! see each other's own faults and weights through a watch channel in `Shared`. Notify hooks
//! go to the instance's [`Notifier`] queue. So neither a hanging script nor a
//! hanging hook ever stands between the instance task and its next advert.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{self, AnnounceConfig, Config, ConfigError, InstanceConfig, Vip};
use crate::control::{
    self, ControlError, InstanceStatus, MasterStatus, Outcome, PeerStatus, Request, Response,
    TransitionStatus, VipStatus,
};
use crate::election::{Action, Command, CommandError, Election, ElectionConfig, Notice, State};
use crate::health::notify::Notifier;
use crate::health::{self, CheckEvent, SyncEntry, Tracker};
use crate::net::announce::Announcer;
use crate::net::netlink::{self, NetEvent, Netlink, NetlinkError};
use crate::net::transport::{Channel, Datagram, Endpoint, SendError, TransportError, Transports};
use crate::wire::{self, Advert, Flags, ReplayGuard};

/// Auth and decode failures are logged at most once per source per this long.
const AUTH_WARN_EVERY: Duration = Duration::from_secs(10);
/// How long the main loop waits for an instance to answer a command or status query.
const INSTANCE_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Extra time, beyond the handover timeout, an instance gets to shut down.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(2);
/// Queued messages per instance from the main loop.
const INSTANCE_QUEUE: usize = 32;

/// Why the daemon could not start (or had to stop), naming what and where.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("loading the configuration")]
    Config(#[from] ConfigError),
    #[error("the configuration does not fit this host:\n{0}")]
    System(String),
    #[error("netlink: {what}")]
    Netlink {
        what: &'static str,
        #[source]
        source: NetlinkError,
    },
    #[error("instance {instance:?}: interface {interface:?}")]
    Interface {
        instance: String,
        interface: String,
        #[source]
        source: NetlinkError,
    },
    #[error("instance {instance:?}: opening the advert socket")]
    Transport {
        instance: String,
        #[source]
        source: TransportError,
    },
    #[error("control socket {}", path.display())]
    Control {
        path: PathBuf,
        #[source]
        source: ControlError,
    },
    #[error("installing the {what} signal handler")]
    Signal {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Runs the daemon on the configuration at `config_path` until `shutdown` resolves,
/// then hands over or releases every VIP and returns.
///
/// SIGHUP (and the control socket's `reload`) reload the configuration. Must run
/// inside a multi-threaded or current-thread tokio runtime with time and IO enabled.
pub async fn run(
    config_path: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let config = config::load(&config_path)?;
    let problems = config::check_against_system(&config, true);
    if !problems.is_empty() {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(DaemonError::System(text.join("\n")));
    }

    // Watch before reading any state, so no change slips between the two.
    let watch = netlink::watch().map_err(|source| DaemonError::Netlink {
        what: "watching links and addresses",
        source,
    })?;
    let netlink = Netlink::connect().map_err(|source| DaemonError::Netlink {
        what: "connecting",
        source,
    })?;
    let (net_tx, _) = broadcast::channel(1024);
    let fanout = tokio::spawn(fan_out_net_events(watch, net_tx.clone()));

    remove_stale_vips(&netlink).await;
    let boot_id = boot_id(&config.node.state_dir);
    tracing::info!(node = %config.node.name, boot_id, instances = config.instances.len(), "vipd starting");

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|source| DaemonError::Signal {
            what: "SIGHUP",
            source,
        })?;

    let shared = Arc::new(Shared {
        node: config.node.clone(),
        boot_id,
        sequence: AtomicU64::new(0),
        netlink: netlink.clone(),
        transports: Transports::new(),
        net_events: net_tx,
        states: Mutex::new(BTreeMap::new()),
        sync: watch::Sender::new(BTreeMap::new()),
    });

    let mut daemon = Daemon {
        config_path,
        config: config.clone(),
        shared: Arc::clone(&shared),
        instances: Vec::new(),
        registry: Arc::new(Mutex::new(Vec::new())),
    };
    let mut startup_error = None;
    for instance in &config.instances {
        match daemon.start_instance(instance.clone()).await {
            Ok(handle) => daemon.instances.push(handle),
            Err(e) => {
                startup_error = Some(e);
                break;
            }
        }
    }
    let control_path = config.node.control_socket.clone();
    let listener =
        match startup_error {
            Some(e) => Err(e),
            None => control::bind(&control_path, config.node.control_group.as_deref()).map_err(
                |source| DaemonError::Control {
                    path: control_path.clone(),
                    source,
                },
            ),
        };
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            daemon.stop_all().await;
            release_marked(&netlink).await;
            fanout.abort();
            return Err(e);
        }
    };
    let gid = match config
        .node
        .control_group
        .as_deref()
        .map(control::lookup_group)
    {
        Some(Ok(gid)) => Some(gid),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "control group lookup failed; the socket is root-only");
            None
        }
        None => None,
    };
    let (ctl_tx, mut ctl_rx) = mpsc::channel(16);
    let (stop_ctl_tx, stop_ctl_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(control::serve(listener, ctl_tx, gid, async move {
        let _ = stop_ctl_rx.await;
    }));
    let watchdog = start_watchdog(Arc::clone(&daemon.registry));

    notify(&[sd_notify::NotifyState::Ready]);
    shared.update_status();
    tracing::info!(control_socket = %control_path.display(), "ready");

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = daemon.reload().await;
            }
            Some((request, reply)) = ctl_rx.recv() => {
                let response = daemon.handle_request(request).await;
                let _ = reply.send(response);
            }
        }
    }

    tracing::info!("shutting down");
    notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(w) = watchdog {
        w.abort();
    }
    let _ = stop_ctl_tx.send(());
    daemon.stop_all().await;
    // Whatever an instance could not release (a task that had to be aborted), and
    // anything else carrying our marker, goes now: never leave a VIP unmanaged.
    release_marked(&netlink).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    if let Err(e) = std::fs::remove_file(&control_path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::debug!(error = %e, "removing the control socket");
        }
    }
    fanout.abort();
    tracing::info!("stopped");
    Ok(())
}

/// What every instance task shares.
#[derive(Debug)]
struct Shared {
    node: config::NodeConfig,
    boot_id: u64,
    /// One sequence for all instances of this boot, so an instance restarted by a
    /// reload keeps counting up and its peers' replay guards accept it.
    sequence: AtomicU64,
    netlink: Netlink,
    transports: Transports,
    net_events: broadcast::Sender<NetEvent>,
    /// Instance name → state, for sd_notify's STATUS line.
    states: Mutex<BTreeMap<String, State>>,
    /// Instance name → its own fault (not counting sync-group faults), for the
    /// other members of its sync group.
    sync: watch::Sender<BTreeMap<String, SyncEntry>>,
}

impl Shared {
    fn set_state(&self, instance: &str, state: Option<State>) {
        if let Ok(mut states) = self.states.lock() {
            match state {
                Some(s) => states.insert(instance.to_owned(), s),
                None => states.remove(instance),
            };
        }
        self.update_status();
    }

    fn update_status(&self) {
        let line = match self.states.lock() {
            Ok(states) if states.is_empty() => "no instances".to_owned(),
            Ok(states) => states
                .iter()
                .map(|(name, state)| format!("{name}: {state}"))
                .collect::<Vec<_>>()
                .join("; "),
            Err(_) => return,
        };
        notify(&[sd_notify::NotifyState::Status(&line)]);
    }
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "sd_notify");
    }
}

/// Forwards netlink events to every instance; re-subscribes if the socket fails.
async fn fan_out_net_events(mut watch: netlink::Watch, tx: broadcast::Sender<NetEvent>) {
    loop {
        while let Some(event) = watch.next().await {
            let _ = tx.send(event);
        }
        tracing::error!("the netlink watch socket closed; re-opening it");
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match netlink::watch() {
                Ok(w) => {
                    watch = w;
                    break;
                }
                Err(e) => tracing::error!(error = %e, "re-opening the netlink watch"),
            }
        }
        // Changes may have been missed while it was down.
        let _ = tx.send(NetEvent::Overrun);
    }
}

/// Removes every address carrying our marker: VIPs left by a crashed earlier run.
async fn remove_stale_vips(netlink: &Netlink) {
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
async fn release_marked(netlink: &Netlink) {
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

/// The boot id: microseconds since the epoch, but always above the last one used
/// (persisted in `state_dir/boot-id`), so a clock stepped back cannot make peers
/// take our adverts for replays.
fn boot_id(state_dir: &Path) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let path = state_dir.join("boot-id");
    let last = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let id = match last {
        Some(last) => now.max(last.saturating_add(1)),
        None => now,
    };
    let write = || -> io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        let tmp = state_dir.join("boot-id.tmp");
        std::fs::write(&tmp, format!("{id}\n"))?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), error = %e,
            "cannot persist the boot id; using the clock alone (a clock stepped back could make peers reject adverts as replays)");
    }
    id
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

// ---------------------------------------------------------------------------
// The main loop's side
// ---------------------------------------------------------------------------

/// A message from the main loop to an instance task.
#[derive(Debug)]
enum InstanceMsg {
    Command(Command, oneshot::Sender<Result<(), CommandError>>),
    Status(oneshot::Sender<InstanceStatus>),
    /// The watchdog asks: are you turning?
    Ping(oneshot::Sender<()>),
    Shutdown,
}

#[derive(Debug)]
struct InstanceHandle {
    config: InstanceConfig,
    tx: mpsc::Sender<InstanceMsg>,
    task: JoinHandle<()>,
}

type Registry = Arc<Mutex<Vec<(String, mpsc::Sender<InstanceMsg>)>>>;

struct Daemon {
    config_path: PathBuf,
    config: Config,
    shared: Arc<Shared>,
    instances: Vec<InstanceHandle>,
    /// The instances the watchdog pings.
    registry: Registry,
}

impl Daemon {
    async fn start_instance(&self, cfg: InstanceConfig) -> Result<InstanceHandle, DaemonError> {
        // Subscribe before reading the link, so no change is missed.
        let net_rx = self.shared.net_events.subscribe();
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
        let channel = self
            .shared
            .transports
            .open(&Endpoint {
                interface: cfg.interface.clone(),
                ifindex: link.index,
                group: cfg.group,
                port: cfg.port,
                multicast_group: cfg.multicast_group,
                peers: cfg.peers.clone(),
            })
            .map_err(|source| DaemonError::Transport {
                instance: cfg.name.clone(),
                source,
            })?;
        let state_dir = &self.shared.node.state_dir;
        let start_drained = drained_file(state_dir, &cfg.name).exists();
        if start_drained {
            tracing::info!(instance = %cfg.name, "starting drained (state file {} exists)", drained_file(state_dir, &cfg.name).display());
        }
        let election_cfg = ElectionConfig {
            node_id: self.shared.node.node_id,
            node_name: self.shared.node.name.clone(),
            group: cfg.group,
            priority: cfg.priority,
            advert_interval: cfg.advert_interval,
            backup_advert_interval: cfg.backup_advert_interval,
            takeover_margin: cfg.takeover_margin,
            handover_timeout: cfg.handover_timeout,
            preempt: cfg.preempt,
            preempt_delay: cfg.preempt_delay,
            startup_delay: self.shared.node.startup_delay,
            vip_digest: wire::vip_digest(cfg.vips.iter().map(|v| (v.addr, v.prefix_len))),
            start_drained,
        };
        let held: Held = Arc::new(Mutex::new(cfg.vips.iter().map(|v| (*v, false)).collect()));
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        let (back_tx, back_rx) = mpsc::unbounded_channel();
        let worker = VipWorker {
            instance: cfg.name.clone(),
            interface: cfg.interface.clone(),
            ifindex: link.index,
            vips: cfg.vips.clone(),
            announce: cfg.announce.clone(),
            announcer: None,
            netlink: self.shared.netlink.clone(),
            held: Arc::clone(&held),
            back: back_tx,
        };
        let worker = tokio::spawn(worker.run(ops_rx));

        let (check_tx, check_rx) = mpsc::unbounded_channel();
        let mut checks = health::spawn_checks(&cfg, &check_tx);
        let tracker = Tracker::new(&cfg);
        if tracker.has_tracked_interfaces() {
            let names: Vec<String> = tracker.tracked_interfaces().map(str::to_owned).collect();
            checks.push(tokio::spawn(look_up_links(
                self.shared.netlink.clone(),
                names,
                check_tx.clone(),
            )));
        }
        let sync_rx = self.shared.sync.subscribe();
        let (tx, rx) = mpsc::channel(INSTANCE_QUEUE);
        let now = Instant::now();
        let instance = Instance {
            election: Election::new(election_cfg, now),
            cfg: cfg.clone(),
            shared: Arc::clone(&self.shared),
            channel,
            replay: ReplayGuard::new(),
            ifindex: link.index,
            health: tracker,
            check_tx,
            checks,
            notifier: Notifier::start(cfg.name.clone(), cfg.notify.clone()),
            published_fault: None,
            link_up: true,
            claimed: false,
            sources: HashMap::new(),
            auth_failures: 0,
            auth_warned: HashMap::new(),
            send_warned: None,
            handing_over_at_input: false,
            ops: ops_tx,
            held,
        };
        tracing::info!(instance = %cfg.name, interface = %cfg.interface, ifindex = link.index, group = cfg.group,
            priority = cfg.priority, vips = %vip_list(&cfg.vips),
            transport = %if cfg.is_unicast() { format!("unicast to {:?}", cfg.peers) } else { format!("multicast {}", cfg.multicast_group) },
            port = cfg.port, "instance starting");
        let task = tokio::spawn(instance.run(
            rx,
            net_rx,
            back_rx,
            worker,
            link.up,
            InstanceInputs { check_rx, sync_rx },
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
    async fn stop_instances(&self, handles: Vec<InstanceHandle>) {
        if let Ok(mut reg) = self.registry.lock() {
            reg.retain(|(name, _)| !handles.iter().any(|h| &h.config.name == name));
        }
        let stops = handles.into_iter().map(|h| {
            let shared = Arc::clone(&self.shared);
            async move {
                let name = h.config.name.clone();
                let _ = h.tx.send(InstanceMsg::Shutdown).await;
                let bound = h.config.handover_timeout + SHUTDOWN_SLACK;
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

    async fn stop_all(&mut self) {
        let handles = std::mem::take(&mut self.instances);
        self.stop_instances(handles).await;
    }

    async fn handle_request(&mut self, request: Request) -> Response {
        match request {
            Request::Status => self.status().await,
            Request::Drain { instances, force } => {
                self.command(instances, Command::Drain { force }).await
            }
            Request::Undrain { instances } => self.command(instances, Command::Undrain).await,
            Request::Promote { instances } => self.command(instances, Command::Promote).await,
            Request::Reload => match self.reload().await {
                Ok(summary) => Response::Reloaded { summary },
                Err(message) => Response::Error { message },
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
                            "drained: ineligible; a master hands its VIPs over".to_owned()
                        }
                        Command::Undrain => "undrained: eligible again".to_owned(),
                        Command::Promote => "promoted: becoming master".to_owned(),
                    };
                    if let Err(e) = self.persist_drain(&name, command).await {
                        message.push_str(&format!(
                            " (warning: the drain state could not be saved, so a restart forgets it: {e})"
                        ));
                    }
                    tracing::info!(instance = %name, command = ?command, "operator command applied");
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

    /// Drain survives restarts through `state_dir/<instance>.drained`.
    async fn persist_drain(&self, instance: &str, command: Command) -> io::Result<()> {
        let dir = &self.shared.node.state_dir;
        let file = drained_file(dir, instance);
        match command {
            Command::Drain { .. } => {
                tokio::fs::create_dir_all(dir).await?;
                tokio::fs::write(&file, b"drained by operator\n").await
            }
            Command::Undrain => match tokio::fs::remove_file(&file).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Command::Promote => Ok(()),
        }
    }

    /// Loads the configuration again and applies the difference. On any error the
    /// running configuration stays as it is.
    async fn reload(&mut self) -> Result<String, String> {
        notify(&[sd_notify::NotifyState::Reloading]);
        let result = self.reload_inner().await;
        notify(&[sd_notify::NotifyState::Ready]);
        match &result {
            Ok(summary) => tracing::info!(%summary, "configuration reloaded"),
            Err(message) => {
                tracing::error!(%message, "reload failed; keeping the running configuration")
            }
        }
        result
    }

    async fn reload_inner(&mut self) -> Result<String, String> {
        let path = self.config_path.clone();
        let new = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| format!("loading the configuration: {e}"))?
            .map_err(|e| {
                let diags = e.diagnostics();
                if diags.is_empty() {
                    e.to_string()
                } else {
                    diags
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            })?;
        let problems = config::check_against_system(&new, true);
        if !problems.is_empty() {
            return Err(problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"));
        }
        let old_node = &self.config.node;
        let new_node = &new.node;
        let mut node_changes = Vec::new();
        if old_node.name != new_node.name {
            node_changes.push("name");
        }
        if old_node.control_socket != new_node.control_socket {
            node_changes.push("control_socket");
        }
        if old_node.control_group != new_node.control_group {
            node_changes.push("control_group");
        }
        if old_node.state_dir != new_node.state_dir {
            node_changes.push("state_dir");
        }
        if !node_changes.is_empty() {
            return Err(format!(
                "[node] {} changed; that needs a restart of vipd (systemctl restart vipd); nothing was changed",
                node_changes.join(", ")
            ));
        }

        let mut kept = Vec::new();
        let mut stopped = Vec::new();
        let mut restarted = Vec::new();
        let mut to_stop = Vec::new();
        let mut remaining = Vec::new();
        for h in std::mem::take(&mut self.instances) {
            match new.instance(&h.config.name) {
                Some(c) if *c == h.config => {
                    kept.push(h.config.name.clone());
                    remaining.push(h);
                }
                Some(_) => {
                    restarted.push(h.config.name.clone());
                    to_stop.push(h);
                }
                None => {
                    stopped.push(h.config.name.clone());
                    to_stop.push(h);
                }
            }
        }
        self.instances = remaining;
        self.stop_instances(to_stop).await;

        let mut started = Vec::new();
        let mut failed = Vec::new();
        for c in &new.instances {
            if self.instances.iter().any(|h| h.config.name == c.name) {
                continue;
            }
            match self.start_instance(c.clone()).await {
                Ok(h) => {
                    if !restarted.contains(&c.name) {
                        started.push(c.name.clone());
                    }
                    self.instances.push(h);
                }
                Err(e) => {
                    tracing::error!(instance = %c.name, error = %error_chain(&e), "starting instance on reload");
                    failed.push(format!("{}: {}", c.name, error_chain(&e)));
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
        self.config = new;
        self.shared.update_status();
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        let mut summary = format!(
            "kept: {}; started: {}; stopped: {}; restarted: {}",
            list(&kept),
            list(&started),
            list(&stopped),
            list(&restarted)
        );
        if !failed.is_empty() {
            summary.push_str(&format!("; FAILED to start: {}", failed.join("; ")));
        }
        Ok(summary)
    }
}

fn drained_file(state_dir: &Path, instance: &str) -> PathBuf {
    state_dir.join(format!("{instance}.drained"))
}

async fn release_vips(netlink: &Netlink, cfg: &InstanceConfig) {
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

fn vip_list(vips: &[Vip]) -> String {
    vips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Pings every instance at half the systemd watchdog interval and tells systemd
/// only when all answered, so a wedged instance task stops the pings.
fn start_watchdog(registry: Registry) -> Option<JoinHandle<()>> {
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

// ---------------------------------------------------------------------------
// The instance task
// ---------------------------------------------------------------------------

/// Which VIPs the daemon holds (its own knowledge of what it claimed).
type Held = Arc<Mutex<BTreeMap<Vip, bool>>>;

/// Reads the link state of tracked interfaces (at start, and after lost netlink
/// notifications); a missing interface counts as down.
async fn look_up_links(
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
struct InstanceInputs {
    check_rx: mpsc::UnboundedReceiver<CheckEvent>,
    sync_rx: watch::Receiver<BTreeMap<String, SyncEntry>>,
}

struct Instance {
    cfg: InstanceConfig,
    election: Election,
    shared: Arc<Shared>,
    channel: Channel,
    replay: ReplayGuard,
    ifindex: u32,
    /// Track scripts, files, interfaces, guard and sync group → Health.
    health: Tracker,
    /// For interface lookups started after an overrun.
    check_tx: mpsc::UnboundedSender<CheckEvent>,
    /// The check tasks, aborted when the instance stops.
    checks: Vec<JoinHandle<()>>,
    notifier: Notifier,
    /// The own fault last published to the sync board (`None`: not yet).
    published_fault: Option<SyncEntry>,
    link_up: bool,
    /// Claimed and not released since (the daemon's view).
    claimed: bool,
    /// node id → source address of its last accepted advert.
    sources: HashMap<u64, IpAddr>,
    auth_failures: u64,
    auth_warned: HashMap<IpAddr, Instant>,
    send_warned: Option<Instant>,
    /// Whether the election was handing over when the last advert came in.
    handing_over_at_input: bool,
    ops: mpsc::UnboundedSender<VipOp>,
    held: Held,
}

/// What the VIP worker reports back to its instance.
#[derive(Debug)]
enum WorkerReport {
    LinkUp(bool),
}

impl Instance {
    async fn run(
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
        sync_rx.mark_changed();
        self.set_link(Instant::now(), link_up);
        self.drain_actions();
        let mut rx_open = true;
        let mut net_open = true;
        let mut inbox_open = true;
        let mut back_open = true;
        loop {
            let deadline = self.election.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                datagram = self.channel.inbox.recv(), if inbox_open => match datagram {
                    Some(d) => self.on_datagram(d),
                    None => {
                        tracing::error!(instance = %name, "the advert socket stopped; no more adverts are received");
                        inbox_open = false;
                    }
                },
                () = sleep => self.election.handle_timeout(Instant::now()),
                msg = rx.recv(), if rx_open => match msg {
                    Some(msg) => self.on_message(msg),
                    None => {
                        rx_open = false;
                        self.election.handle_shutdown(Instant::now());
                    }
                },
                event = net.recv(), if net_open => match event {
                    Ok(event) => self.on_net_event(event),
                    Err(broadcast::error::RecvError::Lagged(_)) => self.on_net_event(NetEvent::Overrun),
                    Err(broadcast::error::RecvError::Closed) => net_open = false,
                },
                report = back.recv(), if back_open => match report {
                    Some(WorkerReport::LinkUp(up)) => self.set_link(Instant::now(), up),
                    None => back_open = false,
                },
                // The instance holds a sender, so this never yields None.
                Some(event) = check_rx.recv() => {
                    self.health.on_event(event);
                    self.apply_health(Instant::now());
                },
                Ok(()) = sync_rx.changed(), if self.cfg.sync_group.is_some() => {
                    let board = sync_rx.borrow_and_update().clone();
                    self.on_sync_board(Instant::now(), &board);
                },
            }
            self.check_quorum(Instant::now());
            if self.drain_actions() {
                break;
            }
        }
        for check in &self.checks {
            check.abort();
        }
        self.shared
            .sync
            .send_if_modified(|board| board.remove(&name).is_some());
        // The election released (the ReleaseVips is queued before this); let the
        // worker finish its queue, bounded.
        let _ = self.ops.send(VipOp::Stop);
        let _ = tokio::time::timeout(SHUTDOWN_SLACK, worker).await;
        // The stop hook runs after the VIPs are released.
        self.notifier.stop(self.election.state());
        self.notifier.finish(SHUTDOWN_SLACK).await;
        tracing::info!(instance = %name, "instance stopped");
    }

    /// Hands the tracker's health to the election and tells the sync group about
    /// this instance's own fault.
    fn apply_health(&mut self, now: Instant) {
        self.election.handle_health(now, self.health.health());
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
        // Heard within two of its intervals: quorum is lost before a backup's
        // master-down interval (three intervals) runs out, so a node cut off from
        // the majority faults before it could take over (config makes backups
        // advertise at the master's interval when quorum is on).
        let margin = self.cfg.takeover_margin;
        let heard = 1 + self
            .election
            .peers()
            .filter(|p| {
                !p.flags.contains(Flags::SHUTTING_DOWN)
                    && now < p.last_heard + p.interval * 2 + margin
            })
            .count();
        let need = total as usize / 2 + 1;
        let fault = (heard < need).then(|| {
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

    fn on_message(&mut self, msg: InstanceMsg) {
        let now = Instant::now();
        match msg {
            InstanceMsg::Command(command, reply) => {
                let result = self.election.handle_command(now, command);
                if let Err(e) = &result {
                    tracing::warn!(instance = %self.cfg.name, command = ?command, reason = %e, "operator command refused");
                }
                let _ = reply.send(result);
            }
            InstanceMsg::Status(reply) => {
                let _ = reply.send(self.status(now));
            }
            InstanceMsg::Ping(reply) => {
                let _ = reply.send(());
            }
            InstanceMsg::Shutdown => self.election.handle_shutdown(now),
        }
    }

    fn on_datagram(&mut self, datagram: Datagram) {
        let source = datagram.source.ip();
        let advert = match wire::decode(&datagram.bytes, self.cfg.group, &self.cfg.auth) {
            Ok(a) => a,
            Err(e) => {
                self.reject(source, "rejected advert (decode/authentication)", &e);
                return;
            }
        };
        if let Err(e) = self.replay.check(&advert) {
            self.reject(source, "rejected advert (replay)", &e);
            return;
        }
        if self.sources.len() >= 1024 && !self.sources.contains_key(&advert.body.node_id) {
            let known: HashSet<u64> = self.election.peers().map(|p| p.node_id).collect();
            self.sources.retain(|id, _| known.contains(id));
        }
        self.sources.insert(advert.body.node_id, source);
        // While handing over, hearing the successor as master is the plan, not a
        // split brain: its notice is logged at info, not warn.
        self.handing_over_at_input = self.election.is_handing_over();
        self.election.handle_advert(Instant::now(), &advert.body);
    }

    fn reject(&mut self, source: IpAddr, what: &str, error: &wire::WireError) {
        self.auth_failures += 1;
        let now = Instant::now();
        let due = self
            .auth_warned
            .get(&source)
            .is_none_or(|last| now.duration_since(*last) >= AUTH_WARN_EVERY);
        if due {
            if self.auth_warned.len() >= 1024 {
                self.auth_warned
                    .retain(|_, last| now.duration_since(*last) < AUTH_WARN_EVERY);
            }
            self.auth_warned.insert(source, now);
            tracing::warn!(instance = %self.cfg.name, %source, error = %error, total = self.auth_failures,
                "{what} (logged once per source per 10 s)");
        }
    }

    fn vip_of(&self, addr: IpAddr) -> Option<Vip> {
        self.cfg.vips.iter().find(|v| v.addr == addr).copied()
    }

    fn on_net_event(&mut self, event: NetEvent) {
        let now = Instant::now();
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
    fn drain_actions(&mut self) -> bool {
        let mut done = false;
        while let Some(action) = self.election.poll_action() {
            match action {
                Action::SendAdvert(body) => self.send_advert(body),
                Action::ClaimVips => {
                    self.claimed = true;
                    let _ = self.ops.send(VipOp::Claim);
                }
                Action::AnnounceVips => {
                    let _ = self.ops.send(VipOp::Announce);
                }
                Action::ReleaseVips => {
                    self.claimed = false;
                    let _ = self.ops.send(VipOp::Release);
                }
                Action::StateChanged { from, to, reason } => {
                    tracing::info!(instance = %self.cfg.name, %from, %to, %reason, "state change");
                    self.shared.set_state(&self.cfg.name, Some(to));
                    self.notifier.transition(from, to, &reason.to_string());
                }
                Action::Notice(notice) => self.log_notice(notice),
                Action::ShutdownComplete => done = true,
            }
        }
        done
    }

    fn send_advert(&mut self, body: wire::AdvertBody) {
        let sequence = self.shared.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let advert = Advert {
            body,
            boot_id: self.shared.boot_id,
            sequence,
        };
        let bytes = match wire::encode(&advert, &self.cfg.auth) {
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
                let now = Instant::now();
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
        }
    }

    fn status(&self, now: Instant) -> InstanceStatus {
        let e = &self.election;
        let health = e.health();
        let mut reasons = vec![format!("configured {}", self.cfg.priority)];
        reasons.extend(self.health.reasons());
        if e.is_drained() {
            reasons.push("drained: advertises priority 0".to_owned());
        }
        if e.is_promoted() {
            reasons.push("promoted: outranks every unpromoted node".to_owned());
        }
        if let Some(f) = &health.fault {
            reasons.push(format!("fault ({f}): advertises priority 0"));
        }
        let held = self.held.lock().map(|h| h.clone()).unwrap_or_default();
        let vips = self
            .cfg
            .vips
            .iter()
            .map(|v| VipStatus {
                address: v.to_string(),
                held: held.get(v).copied().unwrap_or(false),
            })
            .collect();
        let master_id = e.master(now);
        let master = master_id.map(|id| {
            if id == e.config().node_id {
                MasterStatus {
                    name: e.config().node_name.clone(),
                    address: None,
                    is_self: true,
                }
            } else {
                MasterStatus {
                    name: e
                        .peers()
                        .find(|p| p.node_id == id)
                        .map_or_else(|| format!("node {id:#x}"), |p| p.name.clone()),
                    address: self.sources.get(&id).map(ToString::to_string),
                    is_self: false,
                }
            }
        });
        let master_interval = master_id
            .and_then(|id| e.peers().find(|p| p.node_id == id))
            .map_or(self.cfg.advert_interval, |p| p.interval);
        let mut peers: Vec<PeerStatus> = e
            .peers()
            .map(|p| {
                let mut flags = Vec::new();
                for (bit, name) in [
                    (Flags::MASTER, "master"),
                    (Flags::DRAINED, "drained"),
                    (Flags::PROMOTED, "promoted"),
                    (Flags::FAULT, "fault"),
                    (Flags::SHUTTING_DOWN, "shutting-down"),
                ] {
                    if p.flags.contains(bit) {
                        flags.push(name.to_owned());
                    }
                }
                let alive = e.is_alive(p, now);
                // The flags are as last heard; the state is what we know now: a
                // peer gone silent is not a master any more, whatever it said last.
                let state = if p.flags.contains(Flags::SHUTTING_DOWN) {
                    "shutting-down"
                } else if !alive {
                    "lost"
                } else if p.flags.contains(Flags::FAULT) {
                    "fault"
                } else if p.flags.contains(Flags::MASTER) {
                    "master"
                } else {
                    "backup"
                };
                PeerStatus {
                    name: p.name.clone(),
                    node_id: p.node_id,
                    address: self.sources.get(&p.node_id).map(ToString::to_string),
                    priority: p.priority,
                    flags,
                    state: state.to_owned(),
                    alive,
                    last_heard_ms_ago: millis(now.saturating_duration_since(p.last_heard)),
                    advert_interval_ms: millis(p.interval),
                }
            })
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        let counters = e.counters();
        let last_transition = e.last_transition().map(|t| {
            let ago = now.saturating_duration_since(t.at);
            let at = SystemTime::now()
                .checked_sub(ago)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            TransitionStatus {
                from: t.from,
                to: t.to,
                reason: t.reason.to_string(),
                at_unix: at,
                ms_ago: millis(ago),
            }
        });
        InstanceStatus {
            name: self.cfg.name.clone(),
            interface: self.cfg.interface.clone(),
            group: self.cfg.group,
            state: e.state(),
            configured_priority: self.cfg.priority,
            effective_priority: e.effective_priority(),
            priority_reasons: reasons,
            drained: e.is_drained(),
            promoted: e.is_promoted(),
            fault: health.fault.clone(),
            vips,
            master,
            peers,
            auth_failures: self.auth_failures,
            other_master_heard: counters.other_master_heard,
            adverts_sent: counters.adverts_sent,
            adverts_received: counters.adverts_received,
            last_transition,
            master_down_interval_ms: millis(e.master_down_interval(master_interval)),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// The VIP worker: netlink and announcements, in order, off the advert path
// ---------------------------------------------------------------------------

#[derive(Debug)]
enum VipOp {
    Claim,
    Announce,
    Release,
    /// Claim again (one VIP, or all that are missing) and re-announce.
    Reclaim(Option<Vip>),
    /// Read the link state again and report it.
    CheckLink,
    Stop,
}

struct VipWorker {
    instance: String,
    interface: String,
    ifindex: u32,
    vips: Vec<Vip>,
    announce: AnnounceConfig,
    announcer: Option<Arc<Announcer>>,
    netlink: Netlink,
    held: Held,
    back: mpsc::UnboundedSender<WorkerReport>,
}

impl VipWorker {
    async fn run(mut self, mut ops: mpsc::UnboundedReceiver<VipOp>) {
        let mut announcing: Option<JoinHandle<()>> = None;
        while let Some(op) = ops.recv().await {
            match op {
                VipOp::Claim => {
                    for vip in self.vips.clone() {
                        self.claim(vip).await;
                    }
                }
                VipOp::Announce => self.start_announcing(&mut announcing),
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

    fn start_announcing(&mut self, announcing: &mut Option<JoinHandle<()>>) {
        if let Some(task) = announcing.take() {
            task.abort();
        }
        if self.announcer.is_none() {
            match Announcer::open(self.ifindex, &self.interface) {
                Ok(a) => self.announcer = Some(Arc::new(a)),
                Err(e) => {
                    tracing::error!(instance = %self.instance, error = %error_chain(&e),
                        "cannot send gratuitous ARP / NA; clients may keep the old MAC until their caches expire");
                    return;
                }
            }
        }
        let Some(announcer) = self.announcer.clone() else {
            return;
        };
        let addrs: Vec<IpAddr> = self.vips.iter().map(|v| v.addr).collect();
        let cfg = self.announce.clone();
        let instance = self.instance.clone();
        *announcing = Some(tokio::spawn(announce_loop(announcer, addrs, cfg, instance)));
    }
}

/// A burst on becoming master, a second burst `repeat_after` later, then a round
/// every `refresh` while master (the task is aborted on release).
async fn announce_loop(
    announcer: Arc<Announcer>,
    addrs: Vec<IpAddr>,
    cfg: AnnounceConfig,
    instance: String,
) {
    let start = tokio::time::Instant::now();
    burst(
        &announcer,
        &addrs,
        cfg.count,
        cfg.interval,
        &instance,
        "first",
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
        )
        .await;
    }
    if let Some(refresh) = cfg.refresh {
        loop {
            tokio::time::sleep(refresh).await;
            burst(&announcer, &addrs, 1, cfg.interval, &instance, "refresh").await;
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
) {
    let mut sent = 0u32;
    let mut failed = 0u32;
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(spacing).await;
        }
        for addr in addrs {
            match announcer.announce(*addr) {
                Ok(()) => sent += 1,
                Err(e) => {
                    failed += 1;
                    if failed == 1 {
                        tracing::warn!(%instance, error = %error_chain(&e), "announcement failed");
                    }
                }
            }
        }
    }
    tracing::info!(%instance, burst = which, sent, failed, vips = addrs.len(), "announced VIPs (gratuitous ARP / unsolicited NA)");
}
