//! The daemon's side of `GET /metrics`: binds `[node] metrics_listen` and, at
//! each scrape, asks every running instance for its status (the answer `vipd
//! status` gets) to render the families of [`crate::metrics`].
//!
//! The instances are asked straight through the watchdog's registry, not
//! through the main loop, so a reload in progress (which may wait for a
//! handover) does not hold a scrape up; each answer is bounded by
//! [`INSTANCE_ANSWER_TIMEOUT`], and an instance that does not answer in time
//! is left out of that scrape's gauges (its counters are still there).
//! What it may not touch: the instances beyond asking for their status.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::instance::InstanceMsg;
use super::shared::Shared;
use super::supervisor::Registry;
use super::INSTANCE_ANSWER_TIMEOUT;
use crate::metrics::process::ProcessStats;
use crate::metrics::server::{serve, ServerLimits};
use crate::metrics::{exposition, Snapshot};

/// The running endpoint: stop it with [`MetricsEndpoint::stop`].
pub(super) struct MetricsEndpoint {
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

impl MetricsEndpoint {
    /// Binds `addr` and serves until stopped.
    pub(super) fn start(
        addr: SocketAddr,
        shared: Arc<Shared>,
        registry: Registry,
    ) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let render = move || {
            let shared = Arc::clone(&shared);
            let registry = Arc::clone(&registry);
            async move {
                let snapshot = snapshot(&registry).await;
                exposition::render(&shared.metrics, snapshot, ProcessStats::read())
            }
        };
        let task = tokio::spawn(serve(listener, render, ServerLimits::default(), async {
            let _ = stopped.await;
        }));
        tracing::info!(%addr, "serving metrics at http://{addr}/metrics");
        Ok(Self { task, stop })
    }

    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Every running instance's status, asked for at once.
async fn snapshot(registry: &Registry) -> Snapshot {
    let instances = registry.lock().map(|r| r.clone()).unwrap_or_default();
    let asks = instances.into_iter().map(|(name, tx)| async move {
        let (reply, answer) = oneshot::channel();
        let status = tokio::time::timeout(INSTANCE_ANSWER_TIMEOUT, async {
            tx.send(InstanceMsg::Status(reply)).await.ok()?;
            answer.await.ok()
        })
        .await
        .ok()
        .flatten();
        if status.is_none() {
            tracing::debug!(instance = %name, "no status answer for a metrics scrape; its gauges are left out");
        }
        status
    });
    Snapshot {
        instances: futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect(),
    }
}
