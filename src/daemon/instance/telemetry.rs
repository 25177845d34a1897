//! What an instance tells the people on call besides its status: its last
//! [`HISTORY_LEN`] state changes (for `vipd status`), each change as it
//! happens (for `vipd events`), and its metrics (handover durations, the gaps
//! between the master's adverts, rejections, checks).
//!
//! Everything here is called from the instance's driver and returns at once: the
//! history is a bounded ring, events go into a broadcast channel whose slow
//! receivers lose events (never the sender waits), and metrics are atomics.
//! What it may not touch: the election; it only watches what the instance does.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;

use crate::control::{HistoryEntry, TransitionEvent, HISTORY_LEN};
use crate::election::{Command, Reason, State};
use crate::health::CheckEvent;
use crate::metrics::{Handover, InstanceMetrics};

/// One instance's history, event stream and metrics.
pub(crate) struct Telemetry {
    node: String,
    instance: String,
    pub(super) metrics: Arc<InstanceMetrics>,
    events: broadcast::Sender<TransitionEvent>,
    history: VecDeque<HistoryEntry>,
    /// A drain, promote or shutdown under way, and when it started.
    handover: Option<(Handover, Instant)>,
    /// The node id of the last master advert received, and when.
    last_master_advert: Option<(u64, Instant)>,
}

impl Telemetry {
    pub(crate) fn new(
        node: String,
        instance: String,
        metrics: Arc<InstanceMetrics>,
        events: broadcast::Sender<TransitionEvent>,
    ) -> Self {
        Self {
            node,
            instance,
            metrics,
            events,
            history: VecDeque::with_capacity(HISTORY_LEN),
            handover: None,
            last_master_advert: None,
        }
    }

    /// The remembered state changes, oldest first.
    pub(super) fn history(&self) -> Vec<HistoryEntry> {
        self.history.iter().cloned().collect()
    }

    /// A state change: remembered, streamed, counted, and the end of a
    /// drain or promote under way when it is the one they waited for.
    pub(super) fn transition(&mut self, now: Instant, from: State, to: State, reason: &Reason) {
        let entry = HistoryEntry {
            at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            from,
            to,
            reason: reason.to_string(),
            peer: peer_of(reason),
        };
        self.remember(entry);
        self.metrics.transition(from, to);
        let done = match self.handover {
            Some((Handover::Drain, _)) => from == State::Master,
            Some((Handover::Promote, _)) => to == State::Master,
            _ => false,
        };
        if done {
            self.finish_handover(now);
        }
    }

    /// Something that is not a state change but belongs in the history and
    /// the event stream (a foreign claim of a VIP starting or ending): shown
    /// as a change from `state` to itself, with `what` as the reason and
    /// `about` as the peer.
    pub(super) fn foreign_claim(&mut self, state: State, what: String, about: String) {
        let entry = HistoryEntry {
            at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            from: state,
            to: state,
            reason: what,
            peer: Some(about),
        };
        self.remember(entry);
    }

    fn remember(&mut self, entry: HistoryEntry) {
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(entry.clone());
        // No subscriber is the common case, and not an error.
        let _ = self.events.send(TransitionEvent {
            node: self.node.clone(),
            instance: self.instance.clone(),
            change: entry,
        });
    }

    /// An operator command the election accepted, in state `state`: a drain of
    /// a master or a promote of a non-master starts a handover to time.
    pub(super) fn command_applied(&mut self, now: Instant, command: Command, state: State) {
        let operation = match command {
            Command::Drain { .. } if state == State::Master => Handover::Drain,
            Command::Promote if state != State::Master => Handover::Promote,
            _ => return,
        };
        self.handover = Some((operation, now));
    }

    /// The instance began to shut down.
    pub(super) fn shutdown_started(&mut self, now: Instant) {
        if !matches!(self.handover, Some((Handover::Shutdown, _))) {
            self.handover = Some((Handover::Shutdown, now));
        }
    }

    /// The instance stopped: a shutdown under way is done.
    pub(super) fn stopped(&mut self, now: Instant) {
        if matches!(self.handover, Some((Handover::Shutdown, _))) {
            self.finish_handover(now);
        }
    }

    fn finish_handover(&mut self, now: Instant) {
        if let Some((operation, started)) = self.handover.take() {
            self.metrics
                .handover(operation, now.saturating_duration_since(started));
        }
    }

    /// An accepted advert: the gap since the same master's previous one.
    pub(super) fn advert_accepted(&mut self, now: Instant, node_id: u64, master: bool) {
        if !master {
            return;
        }
        if let Some((node, at)) = self.last_master_advert {
            if node == node_id {
                self.metrics.advert_gap(now.saturating_duration_since(at));
            }
        }
        self.last_master_advert = Some((node_id, now));
    }

    /// A check result is about to be handed to the tracker.
    pub(super) fn check_event(&self, event: &CheckEvent) {
        if let CheckEvent::Ran { check, took } = event {
            self.metrics.check_took(check, *took);
        }
    }
}

/// The other node a change was about, if any.
fn peer_of(reason: &Reason) -> Option<String> {
    match reason {
        Reason::MasterReleased { peer }
        | Reason::Preempting { peer }
        | Reason::BetterMaster { peer }
        | Reason::ReplacedOnPurpose { peer }
        | Reason::HandoverComplete { peer } => Some(peer.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn telemetry() -> (Telemetry, broadcast::Receiver<TransitionEvent>) {
        let (tx, rx) = broadcast::channel(4);
        let t = Telemetry::new(
            "n1".into(),
            "db".into(),
            Arc::new(InstanceMetrics::default()),
            tx,
        );
        (t, rx)
    }

    #[test]
    fn history_keeps_the_last_changes_and_streams_each() {
        let (mut t, mut rx) = telemetry();
        let now = Instant::now();
        for k in 0..(HISTORY_LEN + 3) {
            let reason = Reason::BetterMaster {
                peer: format!("n{k}"),
            };
            t.transition(now, State::Master, State::Backup, &reason);
        }
        let history = t.history();
        assert_eq!(history.len(), HISTORY_LEN);
        assert_eq!(history[0].peer.as_deref(), Some("n3"));
        assert_eq!(
            history[HISTORY_LEN - 1].peer.as_deref(),
            Some(format!("n{}", HISTORY_LEN + 2).as_str())
        );
        // The receiver holds 4: it lagged, and the sender never waited.
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn a_drain_is_timed_until_the_master_steps_down() {
        let (mut t, _rx) = telemetry();
        let t0 = Instant::now();
        t.command_applied(t0, Command::Drain { force: false }, State::Master);
        t.transition(
            t0 + Duration::from_millis(300),
            State::Master,
            State::Backup,
            &Reason::HandoverComplete { peer: "n2".into() },
        );
        let reading = t.metrics.handover_reading(Handover::Drain);
        assert_eq!(reading.count, 1);
        assert!((reading.sum - 0.3).abs() < 1e-6);
        // A drain of a backup hands nothing over: nothing to time.
        t.command_applied(t0, Command::Drain { force: false }, State::Backup);
        assert!(t.handover.is_none());
    }
}
