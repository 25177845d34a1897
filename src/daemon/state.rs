//! The state directory (`[node] state_dir`): what vipd keeps across restarts.
//!
//! - `boot-id`: the last boot id used, so a new one is always higher even if the
//!   clock stepped back (peers' replay guards would reject lower ones).
//! - `<instance>.drained`: an operator's drain, kept until `vipd undrain`, so a
//!   drained node stays drained through restarts and reboots. Written like the
//!   replay checkpoint (`.tmp`, fsync, rename, fsync of the directory), so a
//!   drain that could not be saved (a full disk) leaves no file behind that a
//!   restart would honour; the operator's answer then says the drain is not
//!   saved and what a restart will do (read back from the directory).
//! - `crashes`: when the daemon crashed (an exit systemd reported as anything
//!   but success), one time per line, written by `vipd cleanup`; crashes older
//!   than [`crate::instance::crash::CRASH_WINDOW`] are dropped at each write.
//! - `resume`: written by `vipd cleanup` when it left instances' VIPs in place
//!   for the restarted daemon; taken (read and removed) by the next daemon or
//!   the next clean-up, whichever comes first. See [`crate::instance::crash`].
//! - `vipd.pid`: the single-instance lock. `vipd run` takes an exclusive
//!   `flock` on it before it touches any address, socket or state, and holds it
//!   until it exits (the kernel drops it with the process, also after SIGKILL).
//!   A second `vipd run` on the same node — an easy slip while the service runs
//!   — fails there, naming the running pid, and changes nothing (FIELD-NOTES 20).
//! - `replay`: the node's replay checkpoint, for every instance each peer's
//!   newest (boot id, sequence) it accepted, so that a restarted node does not
//!   accept adverts older than those it accepted before: an old capture cannot
//!   make it follow a dead master (issue 11).
//! - `<instance>.replay`: the same, one file per instance, as releases before
//!   the node-wide file wrote it (format v1). Read only as a fallback for an
//!   instance the node-wide file does not hold; removed once a node-wide file
//!   holding that instance has been written.
//!
//! # The replay checkpoint
//!
//! The replay guard runs in memory (a hash lookup per advert). Each instance
//! hands a snapshot of its guard to the node's replay book
//! (`daemon::replay_book`) off the advert path: at once when a peer is first
//! heard or its boot id changes, otherwise at most every half
//! [`REPLAY_CHECKPOINT_EVERY`], and at clean shutdown. One writer task for the
//! whole node writes the book into one file, on a blocking-pool thread: at once
//! for a new peer or boot id or a shutdown, otherwise at most every
//! [`REPLAY_CHECKPOINT_EVERY`], one write in flight, snapshots that arrive
//! meanwhile coalesced into the next write. Each write is atomic and durable: a
//! `.tmp` file, `fsync`, `rename` over the old one, `fsync` of the directory, so
//! a crash leaves the old checkpoint or the new one, never a mixture. However
//! many instances run, that is one small write a second per node (one per
//! instance, 255 threads doing fsync and rename in one directory each second,
//! cost 6 % of a core at 255 instances).
//!
//! What remains after a crash (not a clean stop): adverts accepted after the last
//! written checkpoint. A capture of those is accepted once more by the restarted
//! node, each at most once, in increasing order, and only until the real peer is
//! heard again. The window is bounded: an accepted advert is in the instance's
//! snapshot at its first wake-up half an interval after the previous snapshot
//! (at most half [`REPLAY_CHECKPOINT_EVERY`] plus one advert interval, since the
//! instance wakes at least once per advert interval), and the snapshot is on disk
//! within one more [`REPLAY_CHECKPOINT_EVERY`] plus the write's own duration. So
//! at most about 1.5 s plus one advert interval of the peer's current boot, i.e.
//! `1.5 s / advert_interval + 1` adverts (with a slow disk, plus how long its
//! write takes). Adverts of a peer's earlier boots are out of reach as soon as its
//! new boot is checkpointed, which is written the moment that boot is heard.
//!
//! A checkpoint that is missing (first start) gives empty guards; one that cannot
//! be read or parsed is a warning naming the file and line, and the instances
//! start with empty guards (or their v1 files, if any are left) rather than not
//! at all; the next write replaces it.
//!
//! What it may not touch: anything but files under the state directory.

use std::collections::BTreeMap;
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

/// The first line of a per-instance replay checkpoint (before the node-wide
/// file): format and version.
const REPLAY_HEADER: &str = "vipd replay checkpoint v1";

/// The first line of the node-wide replay checkpoint: format and version.
const REPLAY_BOOK_HEADER: &str = "vipd replay checkpoint v2";

/// The node-wide replay checkpoint's file name in the state directory.
const REPLAY_BOOK_FILE: &str = "replay";

/// Instance name → the high-water marks of the peers it accepted, oldest first.
pub(crate) type ReplayMarks = BTreeMap<String, Vec<HighWater>>;

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

    /// The per-instance (v1) replay checkpoint of `instance`, from releases
    /// before the node-wide file.
    pub(crate) fn replay_file(&self, instance: &str) -> PathBuf {
        self.dir.join(format!("{instance}.replay"))
    }

    /// The per-instance (v1) replay checkpoint of `instance`, oldest sender
    /// first; empty when there is none.
    pub(crate) fn load_replay(&self, instance: &str) -> Result<Vec<HighWater>, ReplayFileError> {
        let path = self.replay_file(instance);
        match read_if_present(&path)? {
            Some(text) => parse_replay(&text).map_err(|(line, reason)| ReplayFileError::Corrupt {
                path,
                line,
                reason,
            }),
            None => Ok(Vec::new()),
        }
    }

    /// Removes the per-instance (v1) replay checkpoint of `instance`; `Ok(false)`
    /// when there was none.
    pub(crate) fn remove_replay(&self, instance: &str) -> io::Result<bool> {
        match std::fs::remove_file(self.replay_file(instance)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes `marks` as the per-instance (v1) checkpoint of `instance`, as
    /// releases before the node-wide file did: for the migration tests.
    #[cfg(test)]
    pub(crate) fn save_replay(&self, instance: &str, marks: &[HighWater]) -> io::Result<()> {
        let mut text = format!("{REPLAY_HEADER}\n");
        render_marks(&mut text, marks);
        self.write_durably(&format!("{instance}.replay"), &text)
    }

    /// The node-wide replay checkpoint.
    pub(crate) fn replay_book_file(&self) -> PathBuf {
        self.dir.join(REPLAY_BOOK_FILE)
    }

    /// The node-wide replay checkpoint; `None` when there is none yet.
    pub(crate) fn load_replay_book(&self) -> Result<Option<ReplayMarks>, ReplayFileError> {
        let path = self.replay_book_file();
        match read_if_present(&path)? {
            Some(text) => parse_replay_book(&text)
                .map(Some)
                .map_err(|(line, reason)| ReplayFileError::Corrupt { path, line, reason }),
            None => Ok(None),
        }
    }

    /// Writes `book` as the node-wide replay checkpoint, atomically and durably
    /// (temporary file, fsync, rename, fsync of the directory). Blocking: call it
    /// off the advert path. An instance name the format cannot hold (see
    /// [`fits_replay_book`]) is refused whole, before anything is written.
    pub(crate) fn save_replay_book(&self, book: &ReplayMarks) -> io::Result<()> {
        let text = render_replay_book(book)?;
        self.write_durably(REPLAY_BOOK_FILE, &text)
    }

    /// Replaces `name` in the state directory with `text`: a `.tmp` file,
    /// fsync, rename over `name`, fsync of the directory. A failure before the
    /// rename removes the `.tmp` file and leaves `name` as it was (absent, or
    /// the old text): never an empty or half-written `name`.
    fn write_durably(&self, name: &str, text: &str) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let replace = || -> io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = replace() {
            // E.g. ENOSPC: the file was created but its text never fitted.
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // The rename is durable only once the directory is.
        File::open(&self.dir)?.sync_all()
    }

    /// Removes `name` from the state directory and makes that durable (fsync of
    /// the directory); a `name` that is not there is not an error.
    fn remove_durably(&self, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.dir.join(name)) {
            Ok(()) => File::open(&self.dir)?.sync_all(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The file whose presence means "this instance is drained".
    pub(crate) fn drained_file(&self, instance: &str) -> PathBuf {
        self.dir.join(drained_name(instance))
    }

    /// Was the instance drained when the daemon last ran? (What a start reads.)
    pub(crate) fn is_drained(&self, instance: &str) -> bool {
        self.drained_file(instance).exists()
    }

    /// Records a drain (`drained = true`: `<instance>.drained` written
    /// atomically and durably) or its end (the file removed durably). Blocking
    /// (fsync): call it off the advert path. On failure the error says what a
    /// restart will do, read back from the directory after the failure.
    pub(crate) fn set_drained(&self, instance: &str, drained: bool) -> Result<(), DrainSaveError> {
        let name = drained_name(instance);
        let result = if drained {
            self.write_durably(&name, "drained by operator (vipd undrain ends it)\n")
        } else {
            self.remove_durably(&name)
        };
        result.map_err(|source| DrainSaveError {
            path: self.drained_file(instance),
            drained,
            restart_drained: self.is_drained(instance),
            source,
        })
    }
}

/// The crash record's file name in the state directory.
const CRASHES_FILE: &str = "crashes";

/// The resume record's file name in the state directory.
const RESUME_FILE: &str = "resume";

/// The first line of a resume record: format and version.
const RESUME_HEADER: &str = "vipd resume v1";

/// The clean-up's note that it left instances' VIPs in place for the restarted
/// daemon (the rule "A crash that systemd restarts may keep the VIPs" in
/// [`crate::instance::crash`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResumeRecord {
    /// When the clean-up wrote it: milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    /// The instances whose VIPs it left in place.
    pub(crate) instances: Vec<String>,
}

impl StateDir {
    /// The node's recorded crashes (milliseconds since the Unix epoch), oldest
    /// first. A missing file is none; lines that are not a number are skipped
    /// (the record only ever makes the clean-up more careful).
    pub(crate) fn crash_times(&self) -> Vec<u64> {
        let Ok(text) = std::fs::read_to_string(self.dir.join(CRASHES_FILE)) else {
            return Vec::new();
        };
        let mut times: Vec<u64> = text
            .lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .collect();
        times.sort_unstable();
        times
    }

    /// Adds a crash at `now_ms` to the record, keeping only those within
    /// `keep` of it; returns the record as written.
    pub(crate) fn record_crash(&self, now_ms: u64, keep: Duration) -> io::Result<Vec<u64>> {
        let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
        let mut times: Vec<u64> = self
            .crash_times()
            .into_iter()
            .filter(|&t| t <= now_ms && now_ms - t < keep_ms)
            .collect();
        times.push(now_ms);
        let text: String = times.iter().map(|t| format!("{t}\n")).collect();
        self.write_durably(CRASHES_FILE, &text)?;
        Ok(times)
    }

    /// Writes the resume record (atomically and durably).
    pub(crate) fn save_resume(&self, record: &ResumeRecord) -> io::Result<()> {
        let mut text = format!("{RESUME_HEADER}\nat {}\n", record.at_ms);
        for name in &record.instances {
            text.push_str(&format!("instance {name}\n"));
        }
        self.write_durably(RESUME_FILE, &text)
    }

    /// Reads and removes the resume record: each record is taken up once,
    /// by the next daemon or the next clean-up. `Ok(None)`: there was none.
    /// A record that does not parse is an error naming the file and line, and
    /// is removed all the same (a garbled record must not keep VIPs).
    pub(crate) fn take_resume(&self) -> Result<Option<ResumeRecord>, ReplayFileError> {
        let path = self.dir.join(RESUME_FILE);
        let text = read_if_present(&path)?;
        if text.is_some() {
            self.remove_durably(RESUME_FILE)
                .map_err(|source| ReplayFileError::Io {
                    path: path.clone(),
                    source,
                })?;
        }
        let Some(text) = text else {
            return Ok(None);
        };
        parse_resume(&text)
            .map(Some)
            .map_err(|(line, reason)| ReplayFileError::Corrupt { path, line, reason })
    }
}

/// Parses a resume record; errors are (1-based line, what is wrong).
fn parse_resume(text: &str) -> Result<ResumeRecord, (usize, String)> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, RESUME_HEADER)) => {}
        other => {
            return Err((
                1,
                format!(
                    "expected {RESUME_HEADER:?}, found {:?}",
                    other.map_or("", |l| l.1)
                ),
            ))
        }
    }
    let mut at_ms = None;
    let mut instances = Vec::new();
    for (i, line) in lines {
        match line.split_once(' ') {
            Some(("at", v)) => {
                at_ms = Some(
                    v.parse::<u64>()
                        .map_err(|e| (i + 1, format!("bad time {v:?}: {e}")))?,
                );
            }
            Some(("instance", name)) if !name.is_empty() => instances.push(name.to_owned()),
            _ => return Err((i + 1, format!("unexpected line {line:?}"))),
        }
    }
    let at_ms = at_ms.ok_or((1, "no \"at\" line".to_owned()))?;
    Ok(ResumeRecord { at_ms, instances })
}

/// `<instance>.drained`.
fn drained_name(instance: &str) -> String {
    format!("{instance}.drained")
}

/// A drain or undrain took effect in the running daemon but its record in the
/// state directory could not be written or removed. The message says what a
/// restart will do, from what the directory holds after the failure.
#[derive(Debug)]
pub(crate) struct DrainSaveError {
    /// The drain record.
    path: PathBuf,
    /// What the operator asked for: drain (`true`) or undrain.
    drained: bool,
    /// Whether the record is there after the failure: a restart starts drained.
    restart_drained: bool,
    /// What the write or removal said.
    source: io::Error,
}

impl std::fmt::Display for DrainSaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (path, e) = (self.path.display(), &self.source);
        match (self.drained, self.restart_drained) {
            (true, false) => write!(
                f,
                "NOT saved: a restart will not be drained (cannot write {path}: {e})"
            ),
            (true, true) => write!(
                f,
                "{path} is there, so a restart stays drained, but saving it failed and a power loss may lose it ({e})"
            ),
            (false, true) => write!(
                f,
                "NOT saved: a restart will be drained again (cannot remove {path}: {e}; remove it by hand)"
            ),
            (false, false) => write!(
                f,
                "{path} is removed, so a restart will not be drained, but a power loss may bring it back ({e})"
            ),
        }
    }
}

impl std::error::Error for DrainSaveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
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

/// The text of `path`; `None` when it does not exist.
fn read_if_present(path: &Path) -> Result<Option<String>, ReplayFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReplayFileError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Whether the node-wide checkpoint can hold `instance` as it is: one word,
/// printable ASCII (config validation allows only `[A-Za-z0-9_.-]`, so
/// this refuses nothing a valid configuration names).
pub(crate) fn fits_replay_book(instance: &str) -> bool {
    !instance.is_empty() && instance.bytes().all(|b| b.is_ascii_graphic())
}

/// One line per mark, then `end COUNT`.
fn render_marks(text: &mut String, marks: &[HighWater]) {
    use std::fmt::Write as _;
    for m in marks {
        let _ = writeln!(text, "{:016x} {} {}", m.node_id, m.boot_id, m.sequence);
    }
    let _ = writeln!(text, "end {}", marks.len());
}

/// The node-wide checkpoint: the header, per instance `instance NAME`, its marks
/// and `end COUNT`, and last `instances COUNT`, so a truncated file never parses.
fn render_replay_book(book: &ReplayMarks) -> io::Result<String> {
    use std::fmt::Write as _;
    let mut text =
        String::with_capacity(64 + book.values().map(|m| 32 + m.len() * 48).sum::<usize>());
    let _ = writeln!(text, "{REPLAY_BOOK_HEADER}");
    for (instance, marks) in book {
        if !fits_replay_book(instance) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("instance name {instance:?} cannot be written in the replay checkpoint"),
            ));
        }
        let _ = writeln!(text, "instance {instance}");
        render_marks(&mut text, marks);
    }
    let _ = writeln!(text, "instances {}", book.len());
    Ok(text)
}

/// Where a parse failed: the 1-based line and what is wrong.
type ParseError = (usize, String);

/// `NODE_ID BOOT_ID SEQUENCE` on line `n`.
fn parse_mark(
    n: usize,
    node_id: &str,
    boot_id: &str,
    sequence: &str,
) -> Result<HighWater, ParseError> {
    let node_id = u64::from_str_radix(node_id, 16)
        .map_err(|e| (n, format!("bad node id {node_id:?}: {e}")))?;
    let boot_id = boot_id
        .parse()
        .map_err(|e| (n, format!("bad boot id {boot_id:?}: {e}")))?;
    let sequence = sequence
        .parse()
        .map_err(|e| (n, format!("bad sequence {sequence:?}: {e}")))?;
    Ok(HighWater {
        node_id,
        boot_id,
        sequence,
    })
}

/// `end COUNT` on line `n` closing `marks`.
fn check_end(n: usize, count: &str, marks: &[HighWater]) -> Result<(), ParseError> {
    let count: usize = count
        .parse()
        .map_err(|e| (n, format!("bad count {count:?}: {e}")))?;
    if count == marks.len() {
        Ok(())
    } else {
        Err((n, format!("says {count} senders, holds {}", marks.len())))
    }
}

/// Adds the mark on line `n` to `marks`, bounded like a guard.
fn push_mark(n: usize, marks: &mut Vec<HighWater>, fields: [&str; 3]) -> Result<(), ParseError> {
    if marks.len() >= ReplayGuard::CAPACITY {
        return Err((n, format!("more than {} senders", ReplayGuard::CAPACITY)));
    }
    marks.push(parse_mark(n, fields[0], fields[1], fields[2])?);
    Ok(())
}

/// Checks the first line is `header`.
fn check_header<'a>(
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
    header: &str,
) -> Result<(), ParseError> {
    match lines.next() {
        Some((_, line)) if line == header => Ok(()),
        Some((n, other)) => Err((n, format!("expected {header:?}, found {other:?}"))),
        None => Err((1, "empty file".to_owned())),
    }
}

/// The error for a file that ends before its last line.
fn truncated(text: &str, last: &str) -> ParseError {
    (
        text.lines().count() + 1,
        format!("no {last} line: the file is truncated"),
    )
}

/// Parses a per-instance (v1) replay checkpoint.
fn parse_replay(text: &str) -> Result<Vec<HighWater>, ParseError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    check_header(&mut lines, REPLAY_HEADER)?;
    let mut marks = Vec::new();
    for (n, line) in lines {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        match fields.as_slice() {
            ["end", count] => {
                check_end(n, count, &marks)?;
                if text.lines().count() != n {
                    return Err((n + 1, "text after the end line".to_owned()));
                }
                return Ok(marks);
            }
            [node_id, boot_id, sequence] => push_mark(n, &mut marks, [node_id, boot_id, sequence])?,
            _ => {
                return Err((
                    n,
                    format!("expected \"NODE_ID BOOT_ID SEQUENCE\", found {line:?}"),
                ))
            }
        }
    }
    Err(truncated(text, "end"))
}

/// Parses the node-wide (v2) replay checkpoint (see [`render_replay_book`]).
fn parse_replay_book(text: &str) -> Result<ReplayMarks, ParseError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    check_header(&mut lines, REPLAY_BOOK_HEADER)?;
    let mut book = ReplayMarks::new();
    // The instance whose marks are being read, with them.
    let mut open: Option<(String, Vec<HighWater>)> = None;
    for (n, line) in lines {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        match (open.as_mut(), fields.as_slice()) {
            (None, ["instance", name]) => {
                if book.contains_key(*name) {
                    return Err((n, format!("instance {name:?} appears twice")));
                }
                open = Some(((*name).to_owned(), Vec::new()));
            }
            (None, ["instances", count]) => {
                let count: usize = count
                    .parse()
                    .map_err(|e| (n, format!("bad count {count:?}: {e}")))?;
                if count != book.len() {
                    return Err((n, format!("says {count} instances, holds {}", book.len())));
                }
                if text.lines().count() != n {
                    return Err((n + 1, "text after the instances line".to_owned()));
                }
                return Ok(book);
            }
            (None, _) => {
                return Err((
                    n,
                    format!("expected \"instance NAME\" or \"instances COUNT\", found {line:?}"),
                ))
            }
            (Some((_, marks)), ["end", count]) => {
                check_end(n, count, marks)?;
                if let Some((name, marks)) = open.take() {
                    book.insert(name, marks);
                }
            }
            (Some((_, marks)), [node_id, boot_id, sequence]) => {
                push_mark(n, marks, [node_id, boot_id, sequence])?;
            }
            (Some((name, _)), _) => {
                return Err((
                    n,
                    format!("instance {name:?}: expected \"NODE_ID BOOT_ID SEQUENCE\" or \"end COUNT\", found {line:?}"),
                ))
            }
        }
    }
    Err(truncated(text, "instances"))
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

    #[test]
    fn the_crash_record_keeps_only_the_window() {
        let dir = scratch("crashes");
        let state = StateDir::new(&dir);
        assert!(state.crash_times().is_empty());
        let window = Duration::from_secs(600);
        assert_eq!(state.record_crash(1_000, window).unwrap(), [1_000]);
        assert_eq!(state.record_crash(2_000, window).unwrap(), [1_000, 2_000]);
        // 700 s later: the first two have left the window.
        assert_eq!(state.record_crash(702_000, window).unwrap(), [702_000]);
        std::fs::write(dir.join("crashes"), "5\njunk\n3\n").unwrap();
        assert_eq!(state.crash_times(), [3, 5]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_resume_record_is_taken_once_and_a_garbled_one_is_an_error() {
        let dir = scratch("resume");
        let state = StateDir::new(&dir);
        assert_eq!(state.take_resume().unwrap(), None);
        let record = ResumeRecord {
            at_ms: 1_796_000_000_123,
            instances: vec!["db".into(), "web".into()],
        };
        state.save_resume(&record).unwrap();
        assert_eq!(state.take_resume().unwrap(), Some(record));
        assert_eq!(state.take_resume().unwrap(), None, "taken once");
        std::fs::write(dir.join("resume"), "vipd resume v1\nat soon\n").unwrap();
        let err = state.take_resume().unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("soon"), "{err}");
        assert!(!dir.join("resume").exists(), "a garbled record is removed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_drain_is_remembered_until_undrained() {
        let dir = scratch("drain");
        let state = StateDir::new(&dir);
        assert!(!state.is_drained("db"));
        state.set_drained("db", true).unwrap();
        assert!(state.is_drained("db"));
        assert!(!state.is_drained("web"));
        assert!(!dir.join("db.drained.tmp").exists());
        // Draining again keeps it; undraining ends it.
        state.set_drained("db", true).unwrap();
        assert!(state.is_drained("db"));
        state.set_drained("db", false).unwrap();
        assert!(!state.is_drained("db"));
        // Undraining what is not drained is not an error.
        state.set_drained("db", false).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    // The errors below are made with directories where files should be, which
    // fail also as root; a full disk (ENOSPC) is tests/control.rs's.

    #[test]
    fn a_drain_that_cannot_be_written_leaves_no_record_and_says_so() {
        let dir = scratch("drain-unwritable");
        let state = StateDir::new(&dir);
        // The temporary file cannot be created: a directory is in its way.
        std::fs::create_dir_all(dir.join("db.drained.tmp/x")).unwrap();
        let err = state.set_drained("db", true).expect_err("the write fails");
        assert!(!state.is_drained("db"), "no record left behind");
        let text = err.to_string();
        assert!(
            text.starts_with("NOT saved: a restart will not be drained (cannot write "),
            "{text}"
        );
        assert!(
            text.contains(&state.drained_file("db").display().to_string()),
            "{text}"
        );
        // A state directory that cannot be created at all: the same answer.
        let file = dir.join("plain-file");
        std::fs::write(&file, "").unwrap();
        let nowhere = StateDir::new(&file.join("state"));
        let err = nowhere.set_drained("db", true).expect_err("no directory");
        assert!(
            err.to_string()
                .starts_with("NOT saved: a restart will not be drained"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_drain_over_an_earlier_one_says_the_restart_stays_drained() {
        let dir = scratch("drain-again");
        let state = StateDir::new(&dir);
        state.set_drained("db", true).unwrap();
        std::fs::create_dir_all(dir.join("db.drained.tmp/x")).unwrap();
        let err = state.set_drained("db", true).expect_err("the write fails");
        assert!(state.is_drained("db"), "the earlier record stays");
        assert!(
            err.to_string().contains("so a restart stays drained"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_undrain_that_cannot_remove_the_record_says_a_restart_is_drained() {
        let dir = scratch("undrain-stuck");
        let state = StateDir::new(&dir);
        // A non-empty directory by the record's name cannot be unlinked.
        std::fs::create_dir_all(state.drained_file("db").join("x")).unwrap();
        let err = state
            .set_drained("db", false)
            .expect_err("the removal fails");
        assert!(state.is_drained("db"), "a start would read it as drained");
        let text = err.to_string();
        assert!(
            text.starts_with("NOT saved: a restart will be drained again (cannot remove "),
            "{text}"
        );
        assert!(text.ends_with("remove it by hand)"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_checkpoint_write_leaves_no_temporary_file() {
        let dir = scratch("replay-unwritable");
        let state = StateDir::new(&dir);
        state.save_replay_book(&book()).unwrap();
        // The rename cannot replace a non-empty directory.
        std::fs::remove_file(state.replay_book_file()).unwrap();
        std::fs::create_dir_all(state.replay_book_file().join("x")).unwrap();
        assert!(state.save_replay_book(&book()).is_err());
        assert!(
            !dir.join("replay.tmp").exists(),
            "the temporary file is removed"
        );
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
        assert_corrupt(&cases, &state.replay_file("db"), || {
            state.load_replay("db").map(|_| ())
        });
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

    fn book() -> ReplayMarks {
        [
            ("db".to_owned(), marks()),
            ("empty".to_owned(), Vec::new()),
            ("web.v6-2_x".to_owned(), marks()[1..].to_vec()),
        ]
        .into()
    }

    #[test]
    fn the_node_wide_checkpoint_round_trips() {
        let dir = scratch("book-roundtrip");
        let state = StateDir::new(&dir.join("nested"));
        assert!(state.load_replay_book().unwrap().is_none(), "no file yet");
        state.save_replay_book(&book()).unwrap();
        assert_eq!(state.load_replay_book().unwrap(), Some(book()));
        assert!(!dir.join("nested/replay.tmp").exists());
        let text = std::fs::read_to_string(state.replay_book_file()).unwrap();
        assert!(
            text.starts_with("vipd replay checkpoint v2\ninstance db\n"),
            "{text}"
        );
        assert!(text.ends_with("\ninstances 3\n"), "{text}");
        state.save_replay_book(&ReplayMarks::new()).unwrap();
        assert_eq!(state.load_replay_book().unwrap(), Some(ReplayMarks::new()));
        // A name the format cannot hold is refused before anything is written.
        let mut bad = book();
        bad.insert("two words".to_owned(), Vec::new());
        assert!(state.save_replay_book(&bad).is_err());
        assert_eq!(state.load_replay_book().unwrap(), Some(ReplayMarks::new()));
        assert!(!fits_replay_book("") && !fits_replay_book("a\nb") && fits_replay_book("db-1.x_y"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_node_wide_checkpoint_is_an_error_naming_the_line() {
        let dir = scratch("book-corrupt");
        let state = StateDir::new(&dir);
        state.save_replay_book(&book()).unwrap();
        let good = std::fs::read_to_string(state.replay_book_file()).unwrap();
        // Lines: 1 header, 2 "instance db", 3-4 marks, 5 "end 2", 6 "instance
        // empty", 7 "end 0", 8 "instance web...", 9 mark, 10 "end 1", 11 "instances 3".
        let cases: Vec<(String, usize, &str)> = vec![
            (String::new(), 1, "empty file"),
            (good.replace(" v2", " v1"), 1, "expected"),
            (good.replace("end 2", "end 3"), 5, "says 3 senders"),
            (good.replace(" 42\n", " 4x2\n"), 3, "bad sequence"),
            (
                good.replace("instances 3", "instances 4"),
                11,
                "says 4 instances",
            ),
            (good.replace("\ninstances 3\n", "\n"), 11, "truncated"),
            (
                good.replace("instance empty\nend 0\n", ""),
                9,
                "says 3 instances",
            ),
            (
                good.replace("instance empty", "instance db"),
                6,
                "appears twice",
            ),
            (
                good.replace("instance empty\n", ""),
                6,
                "expected \"instance NAME\"",
            ),
            (
                good.replace("end 0\n", ""),
                7,
                "instance \"empty\": expected",
            ),
            (
                good.replace("instance empty", "instance two words"),
                6,
                "expected \"instance NAME\"",
            ),
            (good[..good.len() / 2].to_owned(), 5, "truncated"),
            (format!("{good}junk\n"), 12, "after the instances line"),
        ];
        assert_corrupt(&cases, &state.replay_book_file(), || {
            state.load_replay_book().map(|_| ())
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Writes each case's text to `file` and checks that `load` calls it
    /// corrupt at the case's line, with a reason containing its words.
    fn assert_corrupt(
        cases: &[(String, usize, &str)],
        file: &Path,
        load: impl Fn() -> Result<(), ReplayFileError>,
    ) {
        for (text, line, reason) in cases {
            std::fs::write(file, text).unwrap();
            match load() {
                Err(ReplayFileError::Corrupt {
                    line: l, reason: r, ..
                }) => {
                    assert_eq!(l, *line, "{text:?}: {r}");
                    assert!(r.contains(reason), "{text:?}: {r}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
