//! `vipd keygen`: a fresh advert key, 32 random bytes from the kernel written as
//! 64 hex digits and a newline (the form `auth_key_file` reads).
//!
//! Owns: making the key and writing it safely. A key file is created with
//! `O_CREAT | O_EXCL` and mode 0600 in the one `open` call, so it never exists,
//! even for an instant, with looser permissions, and an existing file (another
//! node's key, a key in use) is never overwritten or followed through a symlink.
//! May not touch: anything but the one file it is asked to create.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Bytes of randomness in a key (256 bits; the wire accepts 16 or more).
pub const KEY_BYTES: usize = 32;

/// Why no key was written.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    /// The kernel's random source failed.
    #[error("cannot read random bytes from the kernel: {0}")]
    Random(getrandom::Error),
    /// The key file is already there; keygen never overwrites.
    #[error("{}: already exists; vipd keygen never overwrites a key (remove it first if you mean to replace it)", .0.display())]
    Exists(PathBuf),
    /// Creating or writing the key file failed.
    #[error("{}: {error}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
}

/// A new key as the text of a key file: 64 lowercase hex digits and a newline.
pub fn new_key_text() -> Result<String, KeygenError> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::getrandom(&mut bytes).map_err(KeygenError::Random)?;
    Ok(hex_line(&bytes))
}

/// Creates `path` with mode 0600 holding a new key; fails if it exists.
pub fn write_new_key(path: &Path) -> Result<(), KeygenError> {
    let text = new_key_text()?;
    let write_error = |error| KeygenError::Write {
        path: path.to_owned(),
        error,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true) // O_CREAT | O_EXCL: no overwrite, no symlink followed
        .mode(0o600)
        .open(path)
        .map_err(|error| match error.kind() {
            io::ErrorKind::AlreadyExists => KeygenError::Exists(path.to_owned()),
            _ => write_error(error),
        })?;
    file.write_all(text.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

fn hex_line(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2 + 1);
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vipd-keygen-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_key_is_64_hex_digits_and_differs_each_time() {
        let a = new_key_text().unwrap();
        let b = new_key_text().unwrap();
        assert_eq!(a.len(), 65);
        assert!(a.ends_with('\n'));
        assert!(a.trim_end().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_file_is_0600_and_never_overwritten() {
        let dir = scratch_dir("file");
        let path = dir.join("db.key");
        write_new_key(&path).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let err = write_new_key(&path).unwrap_err();
        assert!(matches!(err, KeygenError::Exists(_)), "{err}");
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);

        // A dangling symlink is not followed: O_EXCL refuses it.
        let link = dir.join("link.key");
        std::os::unix::fs::symlink(dir.join("target.key"), &link).unwrap();
        assert!(matches!(write_new_key(&link), Err(KeygenError::Exists(_))));
        assert!(!dir.join("target.key").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_key_loads_as_an_auth_key_file() {
        let dir = scratch_dir("load");
        let path = dir.join("k.key");
        write_new_key(&path).unwrap();
        let text = format!(
            "[node]\nname = \"n1\"\n[[instance]]\nname = \"db\"\ninterface = \"eth0\"\ngroup = 1\n\
             priority = 100\nvips = [\"10.0.0.1/24\"]\nauth_key_file = \"{}\"\n",
            path.display()
        );
        let config = crate::config::from_toml(&text, &dir.join("vipd.toml")).unwrap();
        assert_eq!(config.instances[0].auth.name(), "hmac-sha256");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
