//! `vipd import-keepalived`: keepalived.conf's VRRP parts as vipd's TOML.
//!
//! Owns: parsing keepalived.conf (`parse`: comments, quoted strings, blocks on
//! one line or many, `include` with globs relative to the including file),
//! mapping its VRRP sections onto vipd's schema (`convert`) and writing the TOML
//! text. Everything not carried over comes back as a [`Note`] saying what and
//! why, at the `FILE:LINE` it came from.
//! May not touch: anything but reading the files it is given and those they
//! include. It writes nothing, runs nothing and does not validate the result
//! against the host (run `vipd check` on the output for that).
//!
//! The mapping, keepalived → vipd:
//!
//! | keepalived                         | vipd                                         |
//! |------------------------------------|----------------------------------------------|
//! | `global_defs { router_id }`        | `[node] name`                                |
//! | `vrrp_instance NAME`               | `[[instance]] name` (invalid characters become `_`) |
//! | `interface`, `priority`            | the same keys (priority 255 becomes 254)     |
//! | `virtual_router_id`                | `group`                                      |
//! | `advert_int` (fractions with `vrrp_version 3`) | `advert_interval`                |
//! | `nopreempt`, `preempt_delay`       | `preempt = false`, `preempt_delay`           |
//! | `virtual_ipaddress`                | `vips` (a bare address is /32 or /128)       |
//! | `unicast_peer`                     | `peers`                                      |
//! | `authentication`                   | `auth_key_file = "/etc/vipd/NAME.key"` (the password is not reused: make a key with `vipd keygen`) |
//! | `vrrp_script` + `track_script`     | `[[instance.track_script]]`                  |
//! | `track_interface`                  | `[[instance.track_interface]]`               |
//! | `notify_master/backup/fault/stop`, `notify` | `[instance.notify]`                 |
//! | `garp_master_repeat/delay/refresh` | `announce_count/repeat_after/refresh`        |
//! | `vrrp_sync_group`                  | `[[sync_group]]`                             |
//!
//! Everything else (LVS's `virtual_server`, SMTP alerts, `use_vmac`, routes and
//! rules, ...) is reported and left out.

mod convert;
mod parse;

use std::fmt;
use std::path::{Path, PathBuf};

/// A line of a keepalived file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// The file, as named on the command line or by an `include`.
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Something of the keepalived configuration that the TOML does not carry, or
/// carries differently, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Where it was.
    pub at: Location,
    /// What and why, e.g. `virtual_server: LVS is not part of vipd; not carried over`.
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// The result of a conversion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversion {
    /// vipd's configuration file.
    pub toml: String,
    /// Everything left out or changed, in file order; empty when all was carried over.
    pub notes: Vec<Note>,
}

/// Why a file could not be converted at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file (the one given, or one an `include` names) cannot be read.
    #[error("{}{}: cannot read: {error}", included_at.as_ref().map(|at| format!("{at}: include ")).unwrap_or_default(), path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The `include` that named it, if any.
        included_at: Option<Location>,
        /// What the system said.
        error: std::io::Error,
    },
    /// The text does not follow keepalived's grammar (unbalanced braces, an
    /// unclosed quote, a bad include).
    #[error("{at}: {message}")]
    Parse {
        /// Where.
        at: Location,
        /// What is wrong.
        message: String,
    },
}

/// Converts the keepalived configuration at `path` (and what it includes).
pub fn convert_file(path: &Path) -> Result<Conversion, ImportError> {
    let statements = parse::parse_file(path)?;
    Ok(convert::convert(path, &statements))
}
