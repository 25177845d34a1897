//! The state directory (`[node] state_dir`): what vipd keeps across restarts.
//!
//! - `boot-id`: the last boot id used, so a new one is always higher even if the
//!   clock stepped back (peers' replay guards would reject lower ones).
//! - `<instance>.drained`: an operator's drain, kept until `vipd undrain`, so a
//!   drained node stays drained through restarts and reboots.
//!
//! What it may not touch: anything but files under the state directory.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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
