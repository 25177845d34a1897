//! The instance's replay checkpoint: seeds its [`ReplayGuard`] from the node's
//! replay book at start and keeps its entry in the book current while it runs
//! (the book writes the node-wide file; the policy and the window a crash
//! leaves are in `daemon::state`'s module doc).
//!
//! The advert path only compares two counters per wake-up; the snapshot (a few
//! dozen bytes per peer) is taken at most every [`REPLAY_SNAPSHOT_EVERY`], or at
//! once for a new peer or boot id (then marked urgent, so the book writes it at
//! once), and handed to the book: a mutex insert and a wake-up of its writer. A
//! slow disk therefore delays the checkpoint, never an advert.
//!
//! What it may not touch: the guard's decisions (it only reads the guard, and
//! seeds it before the first advert) and the book's other entries.

use std::time::{Duration, Instant};

use super::super::replay_book::ReplayBook;
use super::super::state::{seeded_guard, REPLAY_CHECKPOINT_EVERY};
use super::super::SHUTDOWN_SLACK;
use crate::wire::ReplayGuard;

/// How often at most an instance hands a snapshot to the book while only
/// sequences move: half the book's write interval, so a snapshot waits at most
/// half an interval (plus one advert interval) before the next write takes it.
const REPLAY_SNAPSHOT_EVERY: Duration = Duration::from_millis(500);
const _: () = assert!(REPLAY_SNAPSHOT_EVERY.as_millis() * 2 == REPLAY_CHECKPOINT_EVERY.as_millis());

/// Keeps one instance's entry in the replay book in step with its guard.
pub(in crate::daemon) struct ReplayCheckpoint {
    instance: String,
    book: ReplayBook,
    /// The guard's counters when the last snapshot was taken.
    taken_accepted: u64,
    taken_new_boots: u64,
    taken_at: Option<Instant>,
    /// The book's generation holding the last snapshot (0: none taken).
    taken_generation: u64,
}

impl ReplayCheckpoint {
    /// A guard seeded from `instance`'s entry in `book` (empty if it has none),
    /// and the checkpoint that keeps that entry current.
    pub(in crate::daemon) fn start(book: &ReplayBook, instance: &str) -> (Self, ReplayGuard) {
        let guard = seeded_guard(&book.attach(instance));
        let checkpoint = Self {
            instance: instance.to_owned(),
            book: book.clone(),
            taken_accepted: guard.accepted(),
            taken_new_boots: guard.new_boots(),
            taken_at: None,
            taken_generation: 0,
        };
        (checkpoint, guard)
    }

    /// After a wake-up: hands a snapshot to the book when a peer or boot id is
    /// new, or when sequences moved and the last snapshot is old enough.
    pub(super) fn after_wake(&mut self, now: Instant, guard: &ReplayGuard) {
        let new_boot = guard.new_boots() != self.taken_new_boots;
        let moved = guard.accepted() != self.taken_accepted;
        let due = self
            .taken_at
            .is_none_or(|at| now.saturating_duration_since(at) >= REPLAY_SNAPSHOT_EVERY);
        if new_boot || (moved && due) {
            self.take(now, guard, new_boot);
        }
    }

    fn take(&mut self, now: Instant, guard: &ReplayGuard, urgent: bool) {
        self.taken_accepted = guard.accepted();
        self.taken_new_boots = guard.new_boots();
        self.taken_at = Some(now);
        self.taken_generation =
            self.book
                .put(&self.instance, guard.high_water_marks().collect(), urgent);
    }

    /// At clean shutdown: hands over the final state and waits (bounded) until
    /// the book has written it.
    pub(super) async fn finish(mut self, now: Instant, guard: &ReplayGuard) {
        if guard.accepted() != self.taken_accepted || guard.new_boots() != self.taken_new_boots {
            self.take(now, guard, true);
        }
        if !self.book.flush(self.taken_generation, SHUTDOWN_SLACK).await {
            tracing::warn!(instance = %self.instance, "the replay checkpoint was not written in time at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::state::StateDir;
    use crate::wire::test_advert as advert;

    #[tokio::test]
    async fn shutdown_waits_until_the_final_snapshot_is_written() {
        let dir = std::env::temp_dir().join(format!("vipd-replay-cp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let state = StateDir::new(&dir);
        let (book, writer) = ReplayBook::start(state.clone(), ["db"]);
        let (mut checkpoint, mut guard) = ReplayCheckpoint::start(&book, "db");
        assert!(guard.is_empty());
        let now = Instant::now();
        guard.check(&advert(7, 5, 1)).unwrap();
        // A new peer is handed over at once; sequences alone wait for the
        // interval, and shutdown hands over the latest and waits for the write.
        checkpoint.after_wake(now, &guard);
        guard.check(&advert(7, 5, 9)).unwrap();
        checkpoint.after_wake(now, &guard);
        checkpoint.finish(now, &guard).await;
        let file = state.load_replay_book().unwrap().expect("written by now");
        assert_eq!(file["db"], guard.high_water_marks().collect::<Vec<_>>());
        writer.abort();
        let (book, writer) = ReplayBook::start(state, ["db"]);
        let (_, mut restored) = ReplayCheckpoint::start(&book, "db");
        assert!(restored.check(&advert(7, 5, 9)).is_err());
        writer.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
