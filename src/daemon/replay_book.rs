//! The node's replay book: every instance's newest replay-guard snapshot, and
//! the one writer task that keeps the node-wide checkpoint file
//! (`<state_dir>/replay`) in step with it (the policy and the window a crash
//! leaves are in `daemon::state`'s module doc).
//!
//! Instances hand snapshots in (a mutex insert and a wake-up, see
//! `instance::replay`); the writer turns the book into one file on tokio's
//! blocking pool: at once when a snapshot is urgent (a new peer or boot id, a
//! shutdown), otherwise at most every [`REPLAY_CHECKPOINT_EVERY`]. One write is
//! in flight at most; snapshots that arrive meanwhile are in the next one. A
//! slow or failing disk delays the checkpoint, never an advert.
//!
//! At start the book is loaded once for the configured instances: from the
//! node-wide file, and for an instance it does not hold, from that instance's
//! per-instance file of earlier releases (removed once a node-wide file holding
//! the instance is written). Entries of instances no longer configured are
//! dropped there. An instance removed by `vipd reload` keeps its entry until the
//! next start (so removing and adding it back keeps its guard).
//!
//! What it may not touch: the guards (it only holds copies of their marks) and
//! any file but the replay checkpoints.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::error_chain;
use super::state::{fits_replay_book, ReplayMarks, StateDir, REPLAY_CHECKPOINT_EVERY};
use crate::wire::HighWater;

/// A handle on the node's replay book; clones share it.
#[derive(Clone, Debug)]
pub(crate) struct ReplayBook {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: StateDir,
    pending: Mutex<Pending>,
    /// Wakes the writer: a snapshot arrived.
    wake: Notify,
    /// The generation of the last snapshot on disk (0: none yet).
    written: watch::Sender<u64>,
    /// Successful writes, for tests and logs.
    writes: AtomicU64,
}

/// What the writer has to write next.
#[derive(Debug, Default)]
struct Pending {
    marks: ReplayMarks,
    /// Counts changes to `marks`; a write covers the generation it copied.
    generation: u64,
    /// Write at once rather than at the next interval.
    urgent: bool,
    /// Instances whose per-instance file of an earlier release is still there.
    old_files: BTreeSet<String>,
}

/// One mark per peer, the newest (boot id, then sequence) of `a` and `b`.
fn newest_of(a: Vec<HighWater>, b: Vec<HighWater>) -> Vec<HighWater> {
    let mut newest: std::collections::BTreeMap<u64, HighWater> = std::collections::BTreeMap::new();
    for mark in a.into_iter().chain(b) {
        let entry = newest.entry(mark.node_id).or_insert(mark);
        if (mark.boot_id, mark.sequence) > (entry.boot_id, entry.sequence) {
            *entry = mark;
        }
    }
    newest.into_values().collect()
}

impl ReplayBook {
    /// Loads the book for `instances` from `state` (never fails: an unusable
    /// file is a warning, and those instances start empty) and starts the
    /// writer, which writes the loaded book at once. The handle ends the writer
    /// when aborted; instances flush their own snapshots before that.
    pub(crate) fn start<'a>(
        state: StateDir,
        instances: impl IntoIterator<Item = &'a str>,
    ) -> (Self, JoinHandle<()>) {
        let mut from_file = match state.load_replay_book() {
            Ok(book) => book.unwrap_or_default(),
            Err(e) => {
                // Kept for a look rather than overwritten by the first write.
                let aside = state.replay_book_file().with_extension("unusable");
                let kept = matches!(e, super::state::ReplayFileError::Corrupt { .. })
                    && std::fs::rename(state.replay_book_file(), &aside).is_ok();
                tracing::warn!(error = %error_chain(&e), kept_as = %if kept { aside.display().to_string() } else { "-".into() },
                    "node-wide replay checkpoint unusable; its instances start with empty replay guards (adverts captured before this start could be replayed until each peer is heard); it is replaced at the next write");
                ReplayMarks::new()
            }
        };
        let book = Self {
            inner: Arc::new(Inner {
                state,
                pending: Mutex::new(Pending::default()),
                wake: Notify::new(),
                written: watch::Sender::new(0),
                writes: AtomicU64::new(0),
            }),
        };
        for instance in instances {
            let marks = from_file.remove(instance);
            book.add(instance, marks);
        }
        if !from_file.is_empty() {
            tracing::info!(instances = %from_file.keys().map(String::as_str).collect::<Vec<_>>().join(", "),
                "replay checkpoint: dropping the entries of instances no longer configured");
        }
        let writer = tokio::spawn(write_book(Arc::clone(&book.inner)));
        (book, writer)
    }

    /// The marks `instance` starts with: its entry in the book, or (an instance
    /// added by a reload) its per-instance file of an earlier release, if any.
    pub(crate) fn attach(&self, instance: &str) -> Vec<HighWater> {
        if let Some(marks) = self.pending().marks.get(instance) {
            return marks.clone();
        }
        self.add(instance, None)
    }

    /// Puts `instance` into the book with `marks` from the node-wide file, or
    /// else from its per-instance file; returns the marks.
    fn add(&self, instance: &str, marks: Option<Vec<HighWater>>) -> Vec<HighWater> {
        if !fits_replay_book(instance) {
            tracing::warn!(%instance, "this instance name cannot be kept in the replay checkpoint; its replay guard starts empty and is not kept");
            return Vec::new();
        }
        let state = &self.inner.state;
        let old_file = state.replay_file(instance);
        let has_old_file = old_file.exists();
        let (marks, from) = match marks {
            // Both: a rollback to a release that writes per-instance files,
            // then this one again. The newer mark of each peer counts.
            Some(marks) if has_old_file => match state.load_replay(instance) {
                Ok(old) => (newest_of(marks, old), state.replay_book_file()),
                Err(_) => (marks, state.replay_book_file()),
            },
            Some(marks) => (marks, state.replay_book_file()),
            None if has_old_file => match state.load_replay(instance) {
                Ok(marks) => (marks, old_file),
                Err(e) => {
                    tracing::warn!(%instance, error = %error_chain(&e),
                        "replay checkpoint unusable; starting with an empty replay guard (adverts captured before this start could be replayed until each peer is heard)");
                    (Vec::new(), old_file)
                }
            },
            None => (Vec::new(), old_file),
        };
        if !marks.is_empty() {
            tracing::info!(%instance, peers = marks.len(), file = %from.display(),
                "replay guard restored: older adverts of these peers are rejected");
        }
        let mut pending = self.pending();
        if has_old_file {
            pending.old_files.insert(instance.to_owned());
        }
        pending.marks.insert(instance.to_owned(), marks.clone());
        pending.generation += 1;
        drop(pending);
        self.inner.wake.notify_one();
        marks
    }

    /// Records `instance`'s newest snapshot; `urgent` asks for a write at once.
    /// Returns the generation a write must reach to hold it.
    pub(crate) fn put(&self, instance: &str, marks: Vec<HighWater>, urgent: bool) -> u64 {
        let mut pending = self.pending();
        if fits_replay_book(instance) {
            pending.marks.insert(instance.to_owned(), marks);
            pending.generation += 1;
        }
        pending.urgent |= urgent;
        let generation = pending.generation;
        drop(pending);
        self.inner.wake.notify_one();
        generation
    }

    /// Asks for `generation` to be written at once if it is not yet, and waits
    /// for it, at most `within`; whether it was written.
    pub(crate) async fn flush(&self, generation: u64, within: Duration) -> bool {
        let mut written = self.inner.written.subscribe();
        if *written.borrow() >= generation {
            return true;
        }
        self.pending().urgent = true;
        self.inner.wake.notify_one();
        tokio::time::timeout(within, written.wait_for(|w| *w >= generation))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Successful writes so far.
    #[cfg(test)]
    pub(crate) fn writes(&self) -> u64 {
        self.inner.writes.load(Ordering::Relaxed)
    }

    /// Waits, without asking for haste, until everything put so far is written.
    #[cfg(test)]
    pub(crate) async fn written_all(&self) {
        let generation = self.pending().generation;
        let mut written = self.inner.written.subscribe();
        let _ = written.wait_for(|w| *w >= generation).await;
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.inner.pending()
    }
}

impl Inner {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves a map that is whole (inserts
        // only); keep using it.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the book holds something the file does not.
    fn unwritten(&self) -> bool {
        self.pending().generation > *self.written.borrow()
    }
}

/// The writer: writes the book whenever it changed, paced as the module doc
/// says. A failed write is logged once per run of failures and retried at the
/// next interval.
async fn write_book(inner: Arc<Inner>) {
    let mut failing = false;
    let mut last_write: Option<Instant> = None;
    loop {
        // `notify_one` keeps a permit, so a snapshot between the check and the
        // wait is not missed.
        while !inner.unwritten() {
            inner.wake.notified().await;
        }
        if let Some(at) = last_write {
            let due = at + REPLAY_CHECKPOINT_EVERY;
            while !inner.pending().urgent && Instant::now() < due {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = inner.wake.notified() => {}
                }
            }
        }
        let (generation, marks, old_files) = {
            let mut pending = inner.pending();
            pending.urgent = false;
            let old_files: Vec<String> = pending.old_files.iter().cloned().collect();
            (pending.generation, pending.marks.clone(), old_files)
        };
        last_write = Some(Instant::now());
        let state = inner.state.clone();
        let written = tokio::task::spawn_blocking(move || {
            state.save_replay_book(&marks)?;
            for instance in &old_files {
                match state.remove_replay(instance) {
                    Ok(_) => tracing::debug!(%instance, file = %state.replay_file(instance).display(),
                        "removed the per-instance replay checkpoint: the node-wide one holds it now"),
                    Err(e) => tracing::debug!(%instance, file = %state.replay_file(instance).display(), error = %e,
                        "cannot remove the per-instance replay checkpoint (the node-wide one is used first)"),
                }
            }
            Ok::<_, std::io::Error>(old_files)
        })
        .await;
        match written {
            Ok(Ok(removed)) => {
                let mut pending = inner.pending();
                for instance in &removed {
                    pending.old_files.remove(instance);
                }
                drop(pending);
                inner.writes.fetch_add(1, Ordering::Relaxed);
                inner.written.send_modify(|w| *w = (*w).max(generation));
                if failing {
                    tracing::info!("replay checkpoint written again");
                }
                failing = false;
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(file = %inner.state.replay_book_file().display(), error = %e,
                    "cannot write the replay checkpoint; after a restart, adverts accepted since the last good one could be replayed (logged once until it works again)");
            }
            Ok(Err(_)) => {}
            Err(e) => tracing::warn!(error = %e, "the replay checkpoint writer failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vipd-book-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mark(node_id: u64, sequence: u64) -> HighWater {
        HighWater {
            node_id,
            boot_id: 5,
            sequence,
        }
    }

    #[tokio::test]
    async fn old_per_instance_files_seed_the_book_and_go_after_the_first_write() {
        let dir = scratch("migrate");
        let state = StateDir::new(&dir);
        state.save_replay("db", &[mark(7, 9)]).unwrap();
        state.save_replay("gone", &[mark(8, 1)]).unwrap();
        let (book, writer) = ReplayBook::start(state.clone(), ["db", "web"]);
        assert_eq!(book.attach("db"), [mark(7, 9)]);
        assert_eq!(book.attach("web"), []);
        book.written_all().await;
        assert_eq!(book.writes(), 1, "the loaded book is written at once, once");
        let file = state.load_replay_book().unwrap().expect("a node-wide file");
        assert_eq!(file.get("db").map(Vec::as_slice), Some(&[mark(7, 9)][..]));
        assert_eq!(file.get("web").map(Vec::as_slice), Some(&[][..]));
        assert_eq!(file.len(), 2, "every configured instance, none other");
        assert!(
            !state.replay_file("db").exists(),
            "migrated: the old file is gone"
        );
        assert!(
            state.replay_file("gone").exists(),
            "not configured: left alone"
        );
        writer.abort();
        // The next start reads the node-wide file, not the (absent) old one.
        let (book, writer) = ReplayBook::start(state, ["db"]);
        assert_eq!(book.attach("db"), [mark(7, 9)]);
        writer.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn entries_of_instances_no_longer_configured_are_dropped_at_start() {
        let dir = scratch("dropped");
        let state = StateDir::new(&dir);
        let old: ReplayMarks = [
            ("db".to_owned(), vec![mark(1, 2)]),
            ("old".to_owned(), vec![mark(3, 4)]),
        ]
        .into();
        state.save_replay_book(&old).unwrap();
        let (book, writer) = ReplayBook::start(state.clone(), ["db"]);
        book.written_all().await;
        let file = state.load_replay_book().unwrap().unwrap();
        assert_eq!(file.keys().collect::<Vec<_>>(), ["db"]);
        // One added by a reload later starts empty (no old file) and is kept.
        assert_eq!(book.attach("new"), []);
        book.written_all().await;
        let file = state.load_replay_book().unwrap().unwrap();
        assert_eq!(file.keys().collect::<Vec<_>>(), ["db", "new"]);
        writer.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_corrupt_node_wide_file_starts_empty_and_is_replaced() {
        let dir = scratch("corrupt");
        let state = StateDir::new(&dir);
        std::fs::write(
            state.replay_book_file(),
            "vipd replay checkpoint v2\ninstance db\n",
        )
        .unwrap();
        assert!(state.load_replay_book().is_err());
        let (book, writer) = ReplayBook::start(state.clone(), ["db"]);
        assert_eq!(
            book.attach("db"),
            [],
            "a corrupt file is a warning, not a guard"
        );
        book.put("db", vec![mark(7, 1)], true);
        book.written_all().await;
        let file = state
            .load_replay_book()
            .expect("replaced by a good one")
            .unwrap();
        assert_eq!(file.get("db").map(Vec::as_slice), Some(&[mark(7, 1)][..]));
        writer.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn many_snapshots_at_once_coalesce_into_one_write() {
        let dir = scratch("pacing");
        let state = StateDir::new(&dir);
        let names: Vec<String> = (0..255).map(|i| format!("vi{i}")).collect();
        let (book, writer) = ReplayBook::start(state.clone(), names.iter().map(String::as_str));
        book.written_all().await;
        assert_eq!(book.writes(), 1, "the loaded book");
        // Every instance hands in a snapshot (sequences moved) in the same
        // moment, then a burst of urgent ones (new peers).
        for (i, name) in names.iter().enumerate() {
            book.put(name, vec![mark(1, i as u64)], false);
        }
        book.written_all().await;
        let paced = book.writes();
        for (i, name) in names.iter().enumerate() {
            book.put(name, vec![mark(1, 1000), mark(2, i as u64)], true);
        }
        book.written_all().await;
        let urgent = book.writes() - paced;
        eprintln!(
            "writes: 1 at start, {} for 255 paced snapshots, {urgent} for 255 urgent ones",
            paced - 1
        );
        assert!(
            (2..=3).contains(&paced),
            "paced snapshots coalesce: {paced} writes in all"
        );
        assert!(
            (1..=2).contains(&urgent),
            "urgent snapshots coalesce too: {urgent} writes"
        );
        let file = state.load_replay_book().unwrap().unwrap();
        assert_eq!(file.len(), 255);
        assert_eq!(file["vi254"], [mark(1, 1000), mark(2, 254)]);
        writer.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_failing_write_is_retried_and_never_blocks_a_put() {
        let dir = scratch("failing");
        let state = StateDir::new(&dir);
        // A directory where the temporary file should go: every write fails.
        std::fs::create_dir_all(dir.join("replay.tmp/x")).unwrap();
        let (book, writer) = ReplayBook::start(state.clone(), ["db"]);
        let generation = book.put("db", vec![mark(1, 1)], true);
        assert!(!book.flush(generation, Duration::from_millis(300)).await);
        std::fs::remove_dir_all(dir.join("replay.tmp")).unwrap();
        assert!(
            book.flush(generation, Duration::from_secs(5)).await,
            "retried"
        );
        assert_eq!(
            state.load_replay_book().unwrap().unwrap()["db"],
            [mark(1, 1)]
        );
        writer.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
