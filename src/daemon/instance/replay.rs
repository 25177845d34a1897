//! The instance's replay checkpoint: seeds its [`ReplayGuard`] from the state
//! directory at start and keeps the checkpoint current while it runs (the policy
//! and the window a crash leaves are in `daemon::state`'s module doc).
//!
//! The advert path only compares two counters per wake-up; the snapshot (a few
//! dozen bytes per peer) is taken at most every [`REPLAY_CHECKPOINT_EVERY`], or
//! at once for a new peer or boot id, and handed over a watch channel to a
//! writer task that does the blocking file work on tokio's blocking pool. A slow
//! disk therefore delays the checkpoint, never an advert; snapshots that queue up
//! meanwhile collapse into the newest.
//!
//! What it may not touch: the guard's decisions (it only reads the guard, and
//! seeds it before the first advert) and any file but the checkpoint.

use std::path::Path;
use std::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::super::state::{seeded_guard, StateDir, REPLAY_CHECKPOINT_EVERY};
use super::super::{error_chain, SHUTDOWN_SLACK};
use crate::wire::{HighWater, ReplayGuard};

/// Keeps one instance's replay checkpoint in step with its guard.
pub(super) struct ReplayCheckpoint {
    instance: String,
    snapshots: watch::Sender<Vec<HighWater>>,
    writer: JoinHandle<()>,
    /// The guard's counters when the last snapshot was taken.
    taken_accepted: u64,
    taken_new_boots: u64,
    taken_at: Option<Instant>,
}

impl ReplayCheckpoint {
    /// Loads `instance`'s checkpoint from `state_dir` into a new guard (an
    /// unreadable or corrupt one is a warning: the guard starts empty) and starts
    /// the writer.
    pub(super) fn start(state_dir: &Path, instance: &str) -> (Self, ReplayGuard) {
        let state = StateDir::new(state_dir);
        let guard = match state.load_replay(instance) {
            Ok(marks) => {
                if !marks.is_empty() {
                    tracing::info!(%instance, peers = marks.len(), file = %state.replay_file(instance).display(),
                        "replay guard restored: older adverts of these peers are rejected");
                }
                seeded_guard(&marks)
            }
            Err(e) => {
                tracing::warn!(%instance, error = %error_chain(&e),
                    "replay checkpoint unusable; starting with an empty replay guard (adverts captured before this start could be replayed until each peer is heard)");
                ReplayGuard::new()
            }
        };
        let (snapshots, rx) = watch::channel(Vec::new());
        let writer = tokio::spawn(write_checkpoints(state, instance.to_owned(), rx));
        let checkpoint = Self {
            instance: instance.to_owned(),
            snapshots,
            writer,
            taken_accepted: guard.accepted(),
            taken_new_boots: guard.new_boots(),
            taken_at: None,
        };
        (checkpoint, guard)
    }

    /// After a wake-up: hands a snapshot to the writer when a peer or boot id is
    /// new, or when sequences moved and the last snapshot is old enough.
    pub(super) fn after_wake(&mut self, now: Instant, guard: &ReplayGuard) {
        let new_boot = guard.new_boots() != self.taken_new_boots;
        let moved = guard.accepted() != self.taken_accepted;
        let due = self
            .taken_at
            .is_none_or(|at| now.saturating_duration_since(at) >= REPLAY_CHECKPOINT_EVERY);
        if new_boot || (moved && due) {
            self.take(now, guard);
        }
    }

    fn take(&mut self, now: Instant, guard: &ReplayGuard) {
        self.taken_accepted = guard.accepted();
        self.taken_new_boots = guard.new_boots();
        self.taken_at = Some(now);
        self.snapshots
            .send_replace(guard.high_water_marks().collect());
    }

    /// At clean shutdown: writes the final state and waits (bounded) for the write.
    pub(super) async fn finish(mut self, now: Instant, guard: &ReplayGuard) {
        if guard.accepted() != self.taken_accepted || self.taken_at.is_none() {
            self.take(now, guard);
        }
        let Self {
            instance,
            snapshots,
            writer,
            ..
        } = self;
        // Closing the channel ends the writer after its last pending snapshot.
        drop(snapshots);
        if tokio::time::timeout(SHUTDOWN_SLACK, writer).await.is_err() {
            tracing::warn!(%instance, "the replay checkpoint was not written in time at shutdown");
        }
    }
}

/// Writes each snapshot the instance hands over, newest only, until the channel
/// closes. A failed write is logged once per run of failures.
async fn write_checkpoints(
    state: StateDir,
    instance: String,
    mut snapshots: watch::Receiver<Vec<HighWater>>,
) {
    let mut failing = false;
    while snapshots.changed().await.is_ok() {
        let marks = snapshots.borrow_and_update().clone();
        let (state_for_write, name) = (state.clone(), instance.clone());
        let written =
            tokio::task::spawn_blocking(move || state_for_write.save_replay(&name, &marks)).await;
        match written {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!(%instance, "replay checkpoint written again");
                }
                failing = false;
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(%instance, file = %state.replay_file(&instance).display(), error = %e,
                    "cannot write the replay checkpoint; after a restart, adverts accepted since the last good one could be replayed (logged once until it works again)");
            }
            Ok(Err(_)) => {}
            Err(e) => tracing::warn!(%instance, error = %e, "the replay checkpoint writer failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_advert as advert;

    #[tokio::test]
    async fn a_corrupt_checkpoint_starts_empty_and_is_replaced() {
        let dir = std::env::temp_dir().join(format!("vipd-replay-cp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("db.replay"), "garbage\n").unwrap();
        let (mut checkpoint, mut guard) = ReplayCheckpoint::start(&dir, "db");
        assert!(guard.is_empty(), "a corrupt file is a warning, not a guard");
        let now = Instant::now();
        guard.check(&advert(7, 5, 1)).unwrap();
        // A new peer is written at once (by the writer task).
        checkpoint.after_wake(now, &guard);
        for _ in 0..200 {
            if StateDir::new(&dir)
                .load_replay("db")
                .is_ok_and(|m| m.len() == 1)
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(StateDir::new(&dir).load_replay("db").unwrap().len(), 1);
        // Sequences alone wait for the interval; shutdown writes the latest.
        guard.check(&advert(7, 5, 9)).unwrap();
        checkpoint.after_wake(now, &guard);
        checkpoint.finish(now, &guard).await;
        let (_, mut restored) = ReplayCheckpoint::start(&dir, "db");
        assert!(restored.check(&advert(7, 5, 9)).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
