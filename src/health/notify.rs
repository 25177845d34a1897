//! Notify hooks: programs run on each transition of an instance (FIELD-NOTES 11).
//!
//! Each instance with hooks has one [`Notifier`]: a task fed by an unbounded queue,
//! so the instance task only enqueues and never waits. The task runs the hooks in
//! transition order, one at a time, each under `notify.timeout` (killed with its
//! process group when it overruns). A hook that fails or hangs is logged; the next
//! one still runs. For a transition to `STATE` the `STATE` hook runs first, then
//! `any`.
//!
//! Hooks for a state that has already passed are skipped: when a transition is
//! queued while an earlier one still waits its turn (a slow hook is running), the
//! waiting one is dropped with a log line, because running `notify.master` after
//! the instance has already become backup again would tell the application the
//! opposite of the truth. `stop` and `after_release` hooks are never dropped. So
//! the queue holds at most the latest transition plus pending stops and
//! releases, and it is bounded ([`MAX_PENDING`]) even then.
//!
//! `after_release` ([`Notifier::after_release`]) runs in the same queue, so in
//! order with the transition hooks, but only once the VIP worker has carried
//! out the release it follows: the worker counts the releases it has done on a
//! watch channel, and the hook waits (at most [`RELEASE_WAIT`]) until that
//! count reaches the release it was queued for. Why: a hook that stops or
//! fences the old primary must not run while clients can still reach it
//! through the VIP.
//!
//! Every hook gets four arguments appended to its configured argv: the instance,
//! the new state (`master`, `backup`, `fault` or `stop`), the previous state and
//! the reason; the same in `VIPD_INSTANCE`, `VIPD_STATE`, `VIPD_PREVIOUS_STATE`
//! and `VIPD_REASON`. With etcd deciding (`election = "etcd"`/`"patroni"`),
//! `VIPD_FENCING_TOKEN` carries the holder key's revision while this node
//! holds the VIPs, so a database hook can refuse a holder older than the one
//! it last saw. Nothing else of the daemon's environment reaches them but
//! `PATH` and `LANG` ([`run_command`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::NotifyConfig;
use crate::election::State;
use crate::health::{run_command, RunOutcome};
use crate::metrics::InstanceMetrics;

/// The most transitions waiting for their hooks. With superseded transitions
/// dropped, only `stop`s can pile up (an instance stopped and restarted by reloads
/// while a hook hangs); past this the oldest waiting entry goes.
pub const MAX_PENDING: usize = 8;

/// How long an `after_release` hook waits for the VIP worker's release
/// (netlink removals: milliseconds) before it runs anyway, logged.
pub const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// One queued transition, or a release's `after_release` hook.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Event {
    to: String,
    from: String,
    reason: String,
    /// `after_release` once the VIP worker has done this many releases.
    after_release: Option<u64>,
    /// The fencing token, when etcd decides and this node holds.
    fencing_token: Option<i64>,
}

/// The queue between the instance task and the hook task.
#[derive(Debug, Default)]
struct Queue {
    pending: Mutex<Pending>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct Pending {
    events: VecDeque<Event>,
    closed: bool,
}

impl Queue {
    /// Adds `event`, dropping what it supersedes (see the module doc).
    fn push(&self, instance: &str, event: Event) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if pending.closed {
            return;
        }
        // Only a transition supersedes: an after-release hook is no new state.
        let superseded = |waiting: &Event| waiting.to != "stop" && waiting.after_release.is_none();
        while let Some(position) = pending
            .events
            .iter()
            .position(superseded)
            .filter(|_| event.after_release.is_none())
        {
            if let Some(old) = pending.events.remove(position) {
                tracing::info!(%instance, state = %old.to, now = %event.to,
                    "notify hooks skipped: the instance left that state before they could run");
            }
        }
        if pending.events.len() >= MAX_PENDING {
            if let Some(old) = pending.events.pop_front() {
                tracing::warn!(%instance, state = %old.to, max = MAX_PENDING,
                    "notify hooks skipped: too many transitions waiting for a slow hook");
            }
        }
        pending.events.push_back(event);
        drop(pending);
        self.wake.notify_one();
    }

    fn close(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.closed = true;
        }
        self.wake.notify_one();
    }

    /// The next transition; `None` once closed and empty.
    async fn next(&self) -> Option<Event> {
        loop {
            {
                let mut pending = self.pending.lock().ok()?;
                if let Some(event) = pending.events.pop_front() {
                    return Some(event);
                }
                if pending.closed {
                    return None;
                }
            }
            // `notify_one` stores a permit when nobody waits, so a push between
            // the check above and this await is not missed.
            self.wake.notified().await;
        }
    }
}

/// The hooks of one instance.
#[derive(Debug)]
pub struct Notifier {
    instance: String,
    queue: Option<Arc<Queue>>,
    task: Option<JoinHandle<()>>,
}

impl Notifier {
    /// Starts the hook task (none when no hook is configured); each run is
    /// counted in `metrics`.
    /// `releases`: how many releases the instance's VIP worker has carried out.
    pub fn start(
        instance: String,
        cfg: NotifyConfig,
        metrics: Arc<InstanceMetrics>,
        releases: watch::Receiver<u64>,
    ) -> Self {
        if cfg.is_empty() {
            return Self {
                instance,
                queue: None,
                task: None,
            };
        }
        let queue = Arc::new(Queue::default());
        let task = tokio::spawn(run(
            instance.clone(),
            cfg,
            Arc::clone(&queue),
            metrics,
            releases,
        ));
        Self {
            instance,
            queue: Some(queue),
            task: Some(task),
        }
    }

    /// Queues the hooks for a transition; returns at once.
    pub fn transition(&self, from: State, to: State, reason: &str, fencing_token: Option<i64>) {
        self.push(Event {
            to: to.to_string(),
            from: from.to_string(),
            reason: reason.to_owned(),
            after_release: None,
            fencing_token,
        });
    }

    /// Queues the `stop` hook: the instance stopped in state `last`.
    pub fn stop(&self, last: State) {
        self.send("stop".into(), last.to_string(), "instance stopped");
    }

    /// Queues the `after_release` hook for the VIP worker's `release`-th
    /// release (counted from 1), which left this node in state `to`.
    pub fn after_release(&self, release: u64, to: State, reason: &str) {
        self.push(Event {
            to: to.to_string(),
            from: State::Master.to_string(),
            reason: reason.to_owned(),
            after_release: Some(release),
            fencing_token: None,
        });
    }

    fn send(&self, to: String, from: String, reason: &str) {
        self.push(Event {
            to,
            from,
            reason: reason.to_owned(),
            after_release: None,
            fencing_token: None,
        });
    }

    fn push(&self, event: Event) {
        if let Some(queue) = &self.queue {
            queue.push(&self.instance, event);
        }
    }

    /// Closes the queue and waits up to `bound` for the queued hooks to finish;
    /// what is still running then is left to finish on its own (it is still killed
    /// at its timeout, as long as the runtime runs).
    pub async fn finish(&mut self, bound: Duration) {
        if let Some(queue) = self.queue.take() {
            queue.close();
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(bound, task).await;
        }
    }
}

/// Runs one hook of `cfg` (its user, its timeout) with the four arguments
/// appended and the same in `VIPD_*` (see the module doc).
pub async fn run_hook(
    cfg: &NotifyConfig,
    argv: &[String],
    instance: &str,
    to: &str,
    from: &str,
    reason: &str,
    fencing_token: Option<i64>,
) -> RunOutcome {
    let args = [instance, to, from, reason];
    let token = fencing_token.map(|t| t.to_string());
    let mut env = vec![
        ("VIPD_INSTANCE", instance),
        ("VIPD_STATE", to),
        ("VIPD_PREVIOUS_STATE", from),
        ("VIPD_REASON", reason),
    ];
    if let Some(token) = &token {
        env.push(("VIPD_FENCING_TOKEN", token));
    }
    run_command(argv, false, &args, &env, cfg.user.as_deref(), cfg.timeout).await
}

async fn run(
    instance: String,
    cfg: NotifyConfig,
    queue: Arc<Queue>,
    metrics: Arc<InstanceMetrics>,
    mut releases: watch::Receiver<u64>,
) {
    while let Some(event) = queue.next().await {
        if let Some(release) = event.after_release {
            if cfg.after_release.is_empty() {
                continue;
            }
            let done = tokio::time::timeout(RELEASE_WAIT, async {
                releases.wait_for(|count| *count >= release).await.is_ok()
            })
            .await;
            if done != Ok(true) {
                tracing::warn!(%instance, waited_s = RELEASE_WAIT.as_secs(),
                    "after_release hook: the VIP worker did not report the release; running it anyway");
            }
            run_one(
                &instance,
                &cfg,
                &metrics,
                &event,
                "after_release",
                &cfg.after_release,
            )
            .await;
            continue;
        }
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
            if !argv.is_empty() {
                run_one(&instance, &cfg, &metrics, &event, which, argv).await;
            }
        }
    }
}

/// Runs one hook for `event`, counts and logs its outcome.
async fn run_one(
    instance: &str,
    cfg: &NotifyConfig,
    metrics: &InstanceMetrics,
    event: &Event,
    which: &str,
    argv: &[String],
) {
    let started = Instant::now();
    let outcome = run_hook(
        cfg,
        argv,
        instance,
        &event.to,
        &event.from,
        &event.reason,
        event.fencing_token,
    )
    .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(to: &str) -> Event {
        Event {
            to: to.into(),
            from: "x".into(),
            reason: "r".into(),
            after_release: None,
            fencing_token: None,
        }
    }

    fn waiting(queue: &Queue) -> Vec<String> {
        let pending = queue.pending.lock().unwrap();
        pending.events.iter().map(|e| e.to.clone()).collect()
    }

    #[test]
    fn a_waiting_transition_is_dropped_when_a_newer_one_comes() {
        let queue = Queue::default();
        queue.push("db", event("master"));
        queue.push("db", event("backup"));
        queue.push("db", event("master"));
        assert_eq!(waiting(&queue), ["master"]);
    }

    #[test]
    fn stops_are_never_superseded_and_the_queue_is_bounded() {
        let queue = Queue::default();
        queue.push("db", event("master"));
        queue.push("db", event("stop"));
        queue.push("db", event("backup"));
        assert_eq!(waiting(&queue), ["stop", "backup"]);
        for _ in 0..3 * MAX_PENDING {
            queue.push("db", event("stop"));
        }
        assert_eq!(waiting(&queue).len(), MAX_PENDING);
    }

    #[test]
    fn after_release_hooks_are_never_superseded() {
        let queue = Queue::default();
        let release = Event {
            after_release: Some(1),
            ..event("backup")
        };
        // Queued behind the transition it follows, which it does not supersede.
        queue.push("db", event("backup"));
        queue.push("db", release);
        assert_eq!(waiting(&queue), ["backup", "backup"]);
        // A later transition supersedes the waiting transition only.
        queue.push("db", event("master"));
        assert_eq!(waiting(&queue), ["backup", "master"]);
        let pending = queue.pending.lock().unwrap();
        assert_eq!(pending.events[0].after_release, Some(1));
    }

    #[tokio::test]
    async fn closing_ends_the_task_after_the_queue_drains() {
        let queue = Queue::default();
        queue.push("db", event("master"));
        queue.close();
        queue.push("db", event("backup")); // after close: ignored
        assert_eq!(queue.next().await.map(|e| e.to), Some("master".into()));
        assert_eq!(queue.next().await, None);
    }
}
