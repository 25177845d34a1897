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
//!
//! What it may not touch: anything but files under the state directory.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

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
}
