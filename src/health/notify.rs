//! Notify hooks: programs run on each transition of an instance (FIELD-NOTES 11).
//!
//! Each instance with hooks has one [`Notifier`]: a task fed by an unbounded queue,
//! so the instance task only enqueues and never waits. The task runs the hooks in
//! transition order, one at a time, each under `notify.timeout` (killed with its
//! process group when it overruns). A hook that fails or hangs is logged; the next
//! one still runs. For a transition to `STATE` the `STATE` hook runs first, then
//! `any`.
//!
//! Every hook gets four arguments appended to its configured argv: the instance,
//! the new state (`master`, `backup`, `fault` or `stop`), the previous state and
//! the reason; the same in `VIPD_INSTANCE`, `VIPD_STATE`, `VIPD_PREVIOUS_STATE`
//! and `VIPD_REASON`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::NotifyConfig;
use crate::election::State;
use crate::health::{run_command, RunOutcome};
use crate::metrics::InstanceMetrics;

/// One queued transition.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Event {
    to: String,
    from: String,
    reason: String,
}

/// The hooks of one instance.
#[derive(Debug)]
pub struct Notifier {
    tx: Option<mpsc::UnboundedSender<Event>>,
    task: Option<JoinHandle<()>>,
}

impl Notifier {
    /// Starts the hook task (none when no hook is configured); each run is
    /// counted in `metrics`.
    pub fn start(instance: String, cfg: NotifyConfig, metrics: Arc<InstanceMetrics>) -> Self {
        if cfg.is_empty() {
            return Self {
                tx: None,
                task: None,
            };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(instance, cfg, rx, metrics));
        Self {
            tx: Some(tx),
            task: Some(task),
        }
    }

    /// Queues the hooks for a transition; returns at once.
    pub fn transition(&self, from: State, to: State, reason: &str) {
        self.send(to.to_string(), from.to_string(), reason);
    }

    /// Queues the `stop` hook: the instance stopped in state `last`.
    pub fn stop(&self, last: State) {
        self.send("stop".into(), last.to_string(), "instance stopped");
    }

    fn send(&self, to: String, from: String, reason: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Event {
                to,
                from,
                reason: reason.to_owned(),
            });
        }
    }

    /// Closes the queue and waits up to `bound` for the queued hooks to finish;
    /// what is still running then is left to finish on its own (it is still killed
    /// at its timeout, as long as the runtime runs).
    pub async fn finish(&mut self, bound: Duration) {
        self.tx = None;
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(bound, task).await;
        }
    }
}

async fn run(
    instance: String,
    cfg: NotifyConfig,
    mut rx: mpsc::UnboundedReceiver<Event>,
    metrics: Arc<InstanceMetrics>,
) {
    while let Some(event) = rx.recv().await {
        let own = match event.to.as_str() {
            "master" => &cfg.master,
            "backup" => &cfg.backup,
            "fault" => &cfg.fault,
            "stop" => &cfg.stop,
            _ => &cfg.any,
        };
        let hooks: Vec<(&str, &Vec<String>)> = if std::ptr::eq(own, &cfg.any) {
            vec![("any", &cfg.any)]
        } else {
            vec![(event.to.as_str(), own), ("any", &cfg.any)]
        };
        for (which, argv) in hooks {
            if argv.is_empty() {
                continue;
            }
            let args = [
                instance.as_str(),
                event.to.as_str(),
                event.from.as_str(),
                event.reason.as_str(),
            ];
            let env = [
                ("VIPD_INSTANCE", args[0]),
                ("VIPD_STATE", args[1]),
                ("VIPD_PREVIOUS_STATE", args[2]),
                ("VIPD_REASON", args[3]),
            ];
            let started = Instant::now();
            let outcome = run_command(argv, false, &args, &env, cfg.timeout).await;
            let took_ms = started.elapsed().as_millis();
            let result = match outcome {
                RunOutcome::Success => "success",
                RunOutcome::Failed(_) => "failure",
                RunOutcome::TimedOut(_) => "timeout",
            };
            metrics.hook_ran(which, result);
            match outcome {
                RunOutcome::Success => {
                    tracing::info!(%instance, hook = which, state = %event.to, previous = %event.from, took_ms, "notify hook ran")
                }
                other => {
                    tracing::warn!(%instance, hook = which, state = %event.to, previous = %event.from, took_ms, outcome = %other, "notify hook failed")
                }
            }
        }
    }
}
