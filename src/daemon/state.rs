//! The state directory (`[node] state_dir`): what vipd keeps across restarts.
//!
//! - `boot-id`: the last boot id used, so a new one is always higher even if the
//!   clock stepped back (peers' replay guards would reject lower ones).
//! - `<instance>.drained`: an operator's drain, kept until `vipd undrain`, so a
//!   drained node stays drained through restarts and reboots.
//! - `vipd.pid`: the single-instance lock. `vipd run` takes an exclusive
//!   `flock` on it before it touches any address, socket or state, and holds it
//!   until it exits (the kernel drops it with the process, also after SIGKILL).
//!   A second `vipd run` on the same node — an easy slip while the service runs
//!   — fails there, naming the running pid, and changes nothing (FIELD-NOTES 20).
//! - `<instance>.replay`: the replay checkpoint, each peer's newest (boot id,
//!   sequence) the instance accepted, so that a restarted node does not accept
//!   adverts older than those it accepted before: an old capture cannot make it
//!   follow a dead master (issue 11).
//!
//! # The replay checkpoint
//!
//! The replay guard runs in memory (a hash lookup per advert). The instance
//! writes a checkpoint off the advert path (a background task, a blocking-pool
//! thread): at once when a peer is first heard or its boot id changes, otherwise
//! at most every [`REPLAY_CHECKPOINT_EVERY`], and at clean shutdown. Each write is
//! atomic and durable: a `.tmp` file, `fsync`, `rename` over the old one, `fsync`
//! of the directory, so a crash leaves the old checkpoint or the new one, never a
//! mixture. At 100 adverts/s that is one small write a second per instance.
//!
//! What remains after a crash (not a clean stop): adverts accepted after the last
//! checkpoint. A capture of those is accepted once more by the restarted node,
//! each at most once, in increasing order, and only until the real peer is heard
//! again. The window is bounded — at most one checkpoint interval plus one advert
//! interval of the peer's current boot, i.e. `1 s / advert_interval + 1` adverts —
//! because the checkpoint is refreshed at least that often while adverts are
//! accepted. Adverts of a peer's earlier boots are out of reach as soon as its new
//! boot is checkpointed, which is written the moment that boot is heard.
//!
//! A checkpoint that is missing (first start) gives an empty guard; one that
//! cannot be read or parsed is a warning, and the instance starts with an empty
//! guard (as before this file existed) rather than not at all.
//!
//! What it may not touch: anything but files under the state directory.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::wire::{HighWater, ReplayGuard};

/// How often at most a replay checkpoint is written while only sequences move
/// (a new peer or boot id is written at once): bounds the window a crash leaves.
pub(crate) const REPLAY_CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The first line of a replay checkpoint: format and version.
const REPLAY_HEADER: &str = "vipd replay checkpoint v1";

/// Why a replay checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplayFileError {
    /// The file exists but could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The checkpoint file.
        path: PathBuf,
        /// What the read said.
        #[source]
        source: io::Error,
    },
    /// The file is not a checkpoint this build wrote (truncated, garbled, other format).
    #[error("{}: line {line}: {reason}", path.display())]
    Corrupt {
        /// The checkpoint file.
        path: PathBuf,
        /// 1-based line of the first problem.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why the single-instance lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another `vipd run` holds the lock: this one must not start.
    #[error("another vipd is already running ({holder}) with state directory {}; this one changed nothing and exits (stop the other first: systemctl stop vipd)", dir.display())]
    Held { holder: String, dir: PathBuf },
    /// The lock file could not be created, read or locked.
    #[error("{}: cannot take the single-instance lock: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Held while the daemon runs: no other `vipd run` shares this state directory.
#[derive(Debug)]
pub(crate) struct InstanceLock {
    _file: Flock<File>,
}

/// The state directory of one daemon.
#[derive(Clone, Debug)]
pub(crate) struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// Takes the single-instance lock and writes our pid into it; fails at once
    /// (no waiting) when another daemon holds it.
    pub(crate) fn lock(&self) -> Result<InstanceLock, LockError> {
        let path = self.dir.join("vipd.pid");
        let io_error = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io_error)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io_error)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let holder = match pid.trim() {
                    "" => "pid unknown".to_owned(),
                    pid => format!("pid {pid}"),
                };
                return Err(LockError::Held {
                    holder,
                    dir: self.dir.clone(),
                });
            }
            Err((_, errno)) => return Err(io_error(errno.into())),
        };
        let write = |file: &mut File| -> io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.sync_all()
        };
        write(&mut file).map_err(io_error)?;
        Ok(InstanceLock { _file: file })
    }

    /// The boot id: microseconds since the epoch, but always above the last one
    /// used (persisted in `boot-id`), so a clock stepped back cannot make peers
    /// take our adverts for replays.
    pub(crate) fn next_boot_id(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.next_boot_id_after(now)
    }

    fn next_boot_id_after(&self, now: u64) -> u64 {
        let path = self.dir.join("boot-id");
        let last = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let id = match last {
            Some(last) => now.max(last.saturating_add(1)),
            None => now,
        };
        let write = || -> io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let tmp = self.dir.join("boot-id.tmp");
            std::fs::write(&tmp, format!("{id}\n"))?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), error = %e,
                "cannot persist the boot id; using the clock alone (a clock stepped back could make peers reject adverts as replays)");
        }
        id
    }

    /// The replay checkpoint of `instance`.
    pub(crate) fn replay_file(&self, instance: &str) -> PathBuf {
        self.dir.join(format!("{instance}.replay"))
    }

    /// The replay checkpoint of `instance`, oldest sender first; empty when there
    /// is none yet.
    pub(crate) fn load_replay(&self, instance: &str) -> Result<Vec<HighWater>, ReplayFileError> {
        let path = self.replay_file(instance);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(ReplayFileError::Io { path, source }),
        };
        parse_replay(&text).map_err(|(line, reason)| ReplayFileError::Corrupt {
            path,
            line,
            reason,
        })
    }

    /// Writes `marks` as the replay checkpoint of `instance`, atomically and
    /// durably (temporary file, fsync, rename, fsync of the directory). Blocking:
    /// call it off the advert path.
    pub(crate) fn save_replay(&self, instance: &str, marks: &[HighWater]) -> io::Result<()> {
        use std::fmt::Write as _;
        let mut text = String::with_capacity(64 + marks.len() * 48);
        let _ = writeln!(text, "{REPLAY_HEADER}");
        for m in marks {
            let _ = writeln!(text, "{:016x} {} {}", m.node_id, m.boot_id, m.sequence);
        }
        let _ = writeln!(text, "end {}", marks.len());
        std::fs::create_dir_all(&self.dir)?;
        let path = self.replay_file(instance);
        let tmp = self.dir.join(format!("{instance}.replay.tmp"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        // The rename is durable only once the directory is.
        File::open(&self.dir)?.sync_all()
    }

    /// The file whose presence means "this instance is drained".
    pub(crate) fn drained_file(&self, instance: &str) -> PathBuf {
        self.dir.join(format!("{instance}.drained"))
    }

    /// Was the instance drained when the daemon last ran?
    pub(crate) fn is_drained(&self, instance: &str) -> bool {
        self.drained_file(instance).exists()
    }

    /// Records a drain (`drained = true`) or its end.
    pub(crate) async fn set_drained(&self, instance: &str, drained: bool) -> io::Result<()> {
        let file = self.drained_file(instance);
        if drained {
            tokio::fs::create_dir_all(&self.dir).await?;
            tokio::fs::write(&file, b"drained by operator\n").await
        } else {
            match tokio::fs::remove_file(&file).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
    }
}

/// A guard seeded from `marks` (oldest first, as saved).
pub(crate) fn seeded_guard(marks: &[HighWater]) -> ReplayGuard {
    let mut guard = ReplayGuard::new();
    for mark in marks {
        guard.seed(*mark);
    }
    guard
}

/// Parses a replay checkpoint; on error, the 1-based line and what is wrong.
fn parse_replay(text: &str) -> Result<Vec<HighWater>, (usize, String)> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, REPLAY_HEADER)) => {}
        Some((n, other)) => {
            return Err((n, format!("expected {REPLAY_HEADER:?}, found {other:?}")));
        }
        None => return Err((1, "empty file".to_owned())),
    }
    let mut marks = Vec::new();
    for (n, line) in lines {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        match fields.as_slice() {
            ["end", count] => {
                let count: usize = count
                    .parse()
                    .map_err(|e| (n, format!("bad count {count:?}: {e}")))?;
                if count != marks.len() {
                    return Err((n, format!("says {count} senders, holds {}", marks.len())));
                }
                if text.lines().count() != n {
                    return Err((n + 1, "text after the end line".to_owned()));
                }
                return Ok(marks);
            }
            [node_id, boot_id, sequence] => {
                let node_id = u64::from_str_radix(node_id, 16)
                    .map_err(|e| (n, format!("bad node id {node_id:?}: {e}")))?;
                let boot_id = boot_id
                    .parse()
                    .map_err(|e| (n, format!("bad boot id {boot_id:?}: {e}")))?;
                let sequence = sequence
                    .parse()
                    .map_err(|e| (n, format!("bad sequence {sequence:?}: {e}")))?;
                if marks.len() >= ReplayGuard::CAPACITY {
                    return Err((n, format!("more than {} senders", ReplayGuard::CAPACITY)));
                }
                marks.push(HighWater {
                    node_id,
                    boot_id,
                    sequence,
                });
            }
            _ => {
                return Err((
                    n,
                    format!("expected \"NODE_ID BOOT_ID SEQUENCE\", found {line:?}"),
                ))
            }
        }
    }
    Err((
        text.lines().count() + 1,
        "no end line: the file is truncated".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vipd-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_second_daemon_cannot_take_the_lock_and_learns_the_pid() {
        let dir = scratch("lock");
        let state = StateDir::new(&dir);
        let held = state.lock().expect("the first lock");
        let pid = std::process::id();
        // flock locks belong to the open file description: a second open, as a
        // second process would make, is refused.
        let err = state.lock().expect_err("a second lock is refused");
        let text = err.to_string();
        assert!(
            text.contains(&format!("already running (pid {pid})")),
            "{text}"
        );
        assert!(text.contains(&dir.display().to_string()), "{text}");
        drop(held);
        let again = state.lock().expect("free again once the first is gone");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn boot_ids_only_go_up_even_when_the_clock_steps_back() {
        let dir = scratch("boot");
        let state = StateDir::new(&dir.join("nested"));
        assert_eq!(state.next_boot_id_after(1_000), 1_000);
        assert_eq!(state.next_boot_id_after(5_000), 5_000);
        // The clock stepped back: one above the last, not the clock.
        assert_eq!(state.next_boot_id_after(10), 5_001);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_garbled_boot_id_file_falls_back_to_the_clock() {
        let dir = scratch("garbled");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("boot-id"), "not a number\n").unwrap();
        assert_eq!(StateDir::new(&dir).next_boot_id_after(42), 42);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_drain_is_remembered_until_undrained() {
        let dir = scratch("drain");
        let state = StateDir::new(&dir);
        assert!(!state.is_drained("db"));
        state.set_drained("db", true).await.unwrap();
        assert!(state.is_drained("db"));
        assert!(!state.is_drained("web"));
        state.set_drained("db", false).await.unwrap();
        assert!(!state.is_drained("db"));
        // Undraining what is not drained is not an error.
        state.set_drained("db", false).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn marks() -> Vec<HighWater> {
        vec![
            HighWater {
                node_id: 0xdead_beef_0000_0001,
                boot_id: 1_700_000_000_000_000,
                sequence: 42,
            },
            HighWater {
                node_id: 7,
                boot_id: 3,
                sequence: u64::MAX,
            },
        ]
    }

    #[test]
    fn a_replay_checkpoint_round_trips_and_seeds_a_guard() {
        let dir = scratch("replay-roundtrip");
        let state = StateDir::new(&dir.join("nested"));
        assert_eq!(state.load_replay("db").unwrap(), [], "no file yet: empty");
        state.save_replay("db", &marks()).unwrap();
        assert_eq!(state.load_replay("db").unwrap(), marks());
        assert!(!dir.join("nested/db.replay.tmp").exists());
        // A later checkpoint replaces the earlier one whole.
        state.save_replay("db", &marks()[1..]).unwrap();
        assert_eq!(state.load_replay("db").unwrap(), marks()[1..]);
        let guard = seeded_guard(&marks());
        assert_eq!(guard.high_water_marks().collect::<Vec<_>>(), marks());
        // Instances keep separate checkpoints.
        assert_eq!(state.load_replay("web").unwrap(), []);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_replay_checkpoint_is_an_error_naming_the_line() {
        let dir = scratch("replay-corrupt");
        let state = StateDir::new(&dir);
        state.save_replay("db", &marks()).unwrap();
        let good = std::fs::read_to_string(state.replay_file("db")).unwrap();
        let cases: Vec<(String, usize, &str)> = vec![
            (String::new(), 1, "empty file"),
            ("something else\n".into(), 1, "expected"),
            (good.replace("end 2", "end 3"), 4, "says 3 senders"),
            (good.replace(" 42\n", " 4x2\n"), 2, "bad sequence"),
            (good.replace("\nend 2\n", "\n"), 4, "truncated"),
            (good[..good.len() / 2].to_owned(), 2, ""),
            (format!("{good}junk\n"), 5, "after the end"),
        ];
        for (text, line, reason) in cases {
            std::fs::write(state.replay_file("db"), &text).unwrap();
            match state.load_replay("db") {
                Err(ReplayFileError::Corrupt {
                    line: l, reason: r, ..
                }) => {
                    assert_eq!(l, line, "{text:?}: {r}");
                    assert!(r.contains(reason), "{text:?}: {r}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unreadable_replay_checkpoint_is_an_io_error() {
        let dir = scratch("replay-unreadable");
        let state = StateDir::new(&dir);
        // A directory where the file should be: reading fails (also as root).
        std::fs::create_dir_all(state.replay_file("db")).unwrap();
        assert!(matches!(
            state.load_replay("db"),
            Err(ReplayFileError::Io { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
