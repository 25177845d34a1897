//! The tokio driver: sockets, timers, control requests and signals in; each
//! instance core's outputs out.
//!
//! # Tasks
//!
//! ```text
//!                 ┌──────────────── run() ─────────────────┐
//!  SIGHUP ───────▶│ main loop: control requests, reload,   │──▶ sd_notify
//!  shutdown fut ─▶│ shutdown; owns the instance handles     │
//!                 └───────┬────────────────────────────────┘
//!                         │ InstanceMsg (command, status, ping, shutdown)
//!                         ▼
//!   netlink watch ─(broadcast NetEvent)─▶ instance task ─┐  ┌─ socket's receive task
//!   checks, sync board, ARP/NA watch ───▶ (timer, other  │  │  (adverts: straight to
//!                                          inputs)        ▼  ▼   the core, see below)
//!                                        Mutex<Instance>: InstanceCore + its IO
//!                         │ VipOp (claim, announce, release, re-check), in order
//!                         ▼
//!                   VIP worker task ──▶ netlink, announce bursts (own task)
//! ```
//!
//! Each instance is a [`crate::instance::InstanceCore`] (every rule, no IO)
//! inside its driver (`instance/`), shared under a mutex by two tasks: the
//! advert socket's receive task hands each datagram to the core directly and
//! carries out what comes of it (no queue, no task hop per advert); the
//! instance's own task waits on its timer and every other input. Both follow
//! the crate's drive-loop contract. Nothing either does waits on the kernel:
//! adverts go out on non-blocking sockets (a full buffer drops the advert),
//! and everything that talks to netlink or sends announcements runs in the
//! instance's VIP worker, which takes its orders from an unbounded queue so
//! that claims and releases keep their order.
//!
//! # Files
//!
//! - `mod.rs`: [`run`]: start-up (open-files limit, lock, stale VIPs, boot
//!   id, instances, control socket), the main loop (signals, control
//!   requests), shutdown.
//! - `limits.rs`: the open-files budget, raised and checked before anything
//!   is touched.
//! - `shared.rs`: what every instance's driver shares (node, sequence,
//!   sockets, sync board, metrics, events, replay book).
//! - `supervisor.rs`: starts, stops and reloads instances; answers control
//!   requests; the watchdog.
//! - `instance/`: one instance's driver (one `now` per wake-up), its sink
//!   for the advert socket, its timer (`deadline.rs`), its status snapshot;
//!   `instance/update.rs`: a reload's changes taken in place, and the
//!   interface re-created under its name.
//! - `metrics_endpoint.rs`: `[node] metrics_listen`: the `GET /metrics` server
//!   and the status snapshot each scrape takes.
//! - `vips.rs`: the VIP worker (claims, releases, announcement bursts) and the
//!   marked-address sweeps.
//! - `reload.rs`: the pure reload plan (keep, update in place, restart, stop,
//!   start), unit-tested without root.
//! - `state.rs`: the state directory (boot id, drain records, the replay
//!   checkpoint's file format).
//! - `replay_book.rs`: every instance's replay marks and the one task that
//!   writes them as the node's replay checkpoint.
//! - `cleanup.rs`: `vipd cleanup`, the unit's `ExecStopPost`: removes the marked
//!   addresses a dead daemon left.
//!
//! The rules are not here: the instance core, the election, the conflict
//! watch and the health tracker are plain state fed `now`. Tasks and clock
//! reads are here and at the other edges that do IO: the advert sockets'
//! receive tasks (`net::transport`, one clock read per batch), the ARP/NA
//! watch's reader, the health checks (`health`), the control server
//! (`control::server`) and the metrics server (`metrics::server`).
//!
//! Health checks ([`crate::health`]: track scripts, track files, the guard's
//! witness probe, tracked-interface lookups) are tasks of their own that send
//! results to the instance task over an unbounded channel; the instance hands
//! them to its core, whose [`crate::health::Tracker`] folds them into the
//! election's health. Sync-group members
//! see each other's own faults and weights through a watch channel in `Shared`. Notify hooks
//! go to the instance's [`crate::health::notify::Notifier`] queue. So neither a hanging script nor a
//! hanging hook ever stands between the instance task and its next advert.

mod cleanup;
mod instance;
mod limits;
mod metrics_endpoint;
mod reload;
mod replay_book;
mod shared;
mod state;
mod supervisor;
mod vips;

pub use cleanup::{cleanup, CleanupReport};
pub use limits::{raise_open_files_limit, FdLimitError};
pub use reload::{plan as reload_plan, Change, ReloadError, ReloadPlan, ReloadSummary, Update};

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::{self, Config, ConfigError};
use crate::control::{self, ControlError};
use crate::instance::crash;
use crate::metrics::Metrics;
use crate::net::netlink::{self, NetEvent, Netlink, NetlinkError};
use crate::net::transport::{TransportError, Transports};
use metrics_endpoint::MetricsEndpoint;
use replay_book::ReplayBook;
use state::StateDir;
use supervisor::{start_watchdog, CrashStart, Shared, Supervisor};
use vips::{release_marked, remove_stale_vips};

/// Auth and decode failures are logged at most once per source per this long.
pub(crate) const AUTH_WARN_EVERY: Duration = Duration::from_secs(10);
/// How long the main loop waits for an instance to answer a command or status query.
pub(crate) const INSTANCE_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Extra time, beyond the handover timeout, an instance gets to shut down.
pub(crate) const SHUTDOWN_SLACK: Duration = Duration::from_secs(2);

/// How long a routed-mode release waits between withdrawing the route and
/// removing the local route; shutdown waits that much longer for it.
pub(crate) fn withdraw_delay(cfg: &config::InstanceConfig) -> Duration {
    cfg.route
        .as_ref()
        .map_or(Duration::ZERO, |r| r.withdraw_delay)
}
/// Queued messages per instance from the main loop.
pub(crate) const INSTANCE_QUEUE: usize = 32;
/// State changes a `vipd events` subscriber may fall behind before it is dropped.
pub(crate) const EVENT_QUEUE: usize = 256;

/// Why the daemon could not start (or had to stop), naming what and where.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration file does not load or validate.
    #[error("loading the configuration")]
    Config(#[from] ConfigError),
    /// Another `vipd run` holds this node's state directory.
    #[error(transparent)]
    AlreadyRunning(#[from] state::LockError),
    /// The open-files limit is below what the configuration needs.
    #[error(transparent)]
    FdLimit(#[from] FdLimitError),
    /// The configuration names interfaces or groups this host does not have.
    #[error("the configuration does not fit this host:\n{0}")]
    System(String),
    /// The rtnetlink socket could not be opened or answered with an error.
    #[error("netlink: {what}")]
    Netlink {
        what: &'static str,
        #[source]
        source: NetlinkError,
    },
    /// An instance's interface could not be looked up.
    #[error("instance {instance:?}: interface {interface:?}")]
    Interface {
        instance: String,
        interface: String,
        #[source]
        source: NetlinkError,
    },
    /// An instance's announcement socket could not be opened.
    #[error("instance {instance:?}: opening the gratuitous ARP / NA socket")]
    Announcer {
        instance: String,
        #[source]
        source: crate::net::announce::AnnounceError,
    },
    /// A VRRP instance found no address on its interface to send from.
    #[error("instance {instance:?}: interface {interface:?} has no {family} address to send VRRP adverts from after {waited_ms} ms (IPv4: a primary address that is not a VIP; IPv6: a link-local address past duplicate address detection); set vrrp_source")]
    NoVrrpSource {
        instance: String,
        interface: String,
        family: &'static str,
        waited_ms: u64,
    },
    /// An instance's etcd client could not be set up (its certificate
    /// files, its endpoints).
    #[error("instance {instance:?}: the etcd client")]
    Etcd {
        instance: String,
        #[source]
        source: crate::etcd::EtcdError,
    },
    /// An instance's advert socket could not be opened.
    #[error("instance {instance:?}: opening the advert socket")]
    Transport {
        instance: String,
        #[source]
        source: TransportError,
    },
    /// The control socket could not be set up.
    #[error("control socket {}", path.display())]
    Control {
        path: PathBuf,
        #[source]
        source: ControlError,
    },
    /// The metrics endpoint (`[node] metrics_listen`) could not be bound.
    #[error("metrics_listen {addr}: cannot listen there")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    /// A signal handler could not be installed.
    #[error("installing the {what} signal handler")]
    Signal {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// How each instance starts after a crash: takes the clean-up's resume record
/// (an instance resumes if the record names it, it is not drained, and the
/// record is younger than its resume window) and reads the crash record for
/// the preemption hold-down; the rules are in [`crate::instance::crash`].
fn crash_starts(state: &StateDir, config: &Config) -> BTreeMap<String, CrashStart> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let ages: Vec<Duration> = state
        .crash_times()
        .into_iter()
        .map(|t| Duration::from_millis(now_ms.saturating_sub(t)))
        .collect();
    let hold_preemption = crash::preemption_hold(&ages);
    if let Some(hold) = hold_preemption {
        tracing::warn!(crashes = ages.len(), hold = ?hold,
            "crashed repeatedly: not preempting until the crash window has passed (a dead or releasing master is still taken over)");
    }
    let record = match state.take_resume() {
        Ok(record) => record,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a garbled resume record: every VIP left behind is removed");
            None
        }
    };
    let age = record
        .as_ref()
        .map(|r| Duration::from_millis(now_ms.saturating_sub(r.at_ms)));
    config
        .instances
        .iter()
        .map(|cfg| {
            let named = record
                .as_ref()
                .is_some_and(|r| r.instances.contains(&cfg.name));
            let window = crash::resume_window(cfg);
            let resume = match age {
                Some(age) if named && state.is_drained(&cfg.name) => {
                    tracing::info!(instance = %cfg.name, age = ?age, "not resuming after the crash: drained");
                    false
                }
                Some(age) if named && age > window => {
                    tracing::warn!(instance = %cfg.name, age = ?age, window = ?window,
                        "not resuming after the crash: the restart came too late (the peers may have taken over); removing the VIPs left in place");
                    false
                }
                Some(_) => named,
                None => false,
            };
            (
                cfg.name.clone(),
                CrashStart {
                    resume,
                    hold_preemption,
                },
            )
        })
        .collect()
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
    // Enough open files for everything below, or nothing is touched: not even
    // the lock, whose holder a refused start must leave alone.
    limits::settle(&config)?;
    // One daemon per node: before any address, socket or state is touched.
    let state = StateDir::new(&config.node.state_dir);
    let _lock = state.lock()?;

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

    let after_crash = crash_starts(&state, &config);
    let mut keep = BTreeSet::new();
    for cfg in config
        .instances
        .iter()
        .filter(|c| after_crash.get(&c.name).is_some_and(|start| start.resume))
    {
        if let Ok(link) = netlink.link_by_name(&cfg.interface).await {
            keep.extend(cfg.vips.iter().map(|v| (link.index, v.addr)));
        }
    }
    remove_stale_vips(&netlink, &config, &keep).await;
    let boot_id = state.next_boot_id();
    tracing::info!(node = %config.node.name, boot_id, instances = config.instances.len(), "vipd starting");

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|source| DaemonError::Signal {
            what: "SIGHUP",
            source,
        })?;

    let (replay_book, replay_writer) = ReplayBook::start(
        state.clone(),
        config.instances.iter().map(|i| i.name.as_str()),
    );
    let shared = Arc::new(Shared {
        node: config.node.clone(),
        boot_id,
        sequence: AtomicU64::new(0),
        netlink: netlink.clone(),
        transports: Transports::new(),
        net_events: net_tx,
        states: Mutex::new(BTreeMap::new()),
        sync: watch::Sender::new(BTreeMap::new()),
        metrics: Arc::new(Metrics::new(supervisor::unix_now())),
        events: broadcast::channel(EVENT_QUEUE).0,
        replay_book,
        state_dir: state.clone(),
    });

    let mut daemon = Supervisor {
        config_path,
        config: config.clone(),
        shared: Arc::clone(&shared),
        state,
        instances: Vec::new(),
        registry: Arc::new(Mutex::new(Vec::new())),
    };
    let mut startup_error = None;
    for instance in &config.instances {
        let start = after_crash.get(&instance.name).copied().unwrap_or_default();
        match daemon.start_instance(instance.clone(), start).await {
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
    // The metrics endpoint, if configured, once the control socket is bound.
    let listener = match (listener, config.node.metrics_listen) {
        (Ok(l), Some(addr)) => {
            match MetricsEndpoint::start(addr, Arc::clone(&shared), Arc::clone(&daemon.registry)) {
                Ok(endpoint) => Ok((l, Some(endpoint))),
                Err(source) => {
                    drop(l);
                    let _ = std::fs::remove_file(&control_path);
                    Err(DaemonError::Metrics { addr, source })
                }
            }
        }
        (Ok(l), None) => Ok((l, None)),
        (Err(e), _) => Err(e),
    };
    let (listener, metrics_endpoint) = match listener {
        Ok(l) => l,
        Err(e) => {
            daemon.stop_all().await;
            release_marked(&netlink, &daemon.config).await;
            fanout.abort();
            replay_writer.abort();
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
    let server = tokio::spawn(control::serve_with_events(
        listener,
        ctl_tx,
        Some(shared.events.clone()),
        gid,
        async move {
            let _ = stop_ctl_rx.await;
        },
        control::ServeOptions::default(),
    ));
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
    if let Some(endpoint) = metrics_endpoint {
        endpoint.stop().await;
    }
    // Whatever an instance could not release (a task that had to be aborted), and
    // anything else carrying our marker, goes now: never leave a VIP unmanaged.
    release_marked(&netlink, &daemon.config).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    if let Err(e) = std::fs::remove_file(&control_path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::debug!(error = %e, "removing the control socket");
        }
    }
    fanout.abort();
    // The instances flushed their final snapshots as they stopped.
    replay_writer.abort();
    tracing::info!("stopped");
    Ok(())
}

pub(crate) fn notify(states: &[sd_notify::NotifyState<'_>]) {
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

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
