//! `vipd import-keepalived`: keepalived.conf's VRRP parts as vipd's TOML.
//!
//! Owns: reading keepalived.conf as keepalived 2.x does (`parse`: comments,
//! quoted strings, blocks on one line or many, `include` with globs relative to
//! the including file, `@HOST` lines and `$NAME` definitions), mapping its VRRP
//! sections onto vipd's schema as keepalived settles them (`convert`) and
//! writing the TOML text. Everything not carried over, or carried differently,
//! comes back as a [`Note`] saying what and why, at the `FILE:LINE` it came from.
//! May not touch: anything but reading the files it is given and those they
//! include. It writes nothing, runs nothing and does not validate the result
//! against the host (run `vipd check` on the output for that).
//!
//! The output is for one host ([`Options::host`], keepalived's config-id): the
//! `@HOST` lines for it are read and the others are not.
//!
//! The mapping, keepalived → vipd:
//!
//! | keepalived                         | vipd                                         |
//! |------------------------------------|----------------------------------------------|
//! | `global_defs { router_id }`        | `[node] name` (missing or `LVS_DEVEL`: the host's name) |
//! | `vrrp_instance NAME`               | `[[instance]] name` (invalid characters become `_`) |
//! | `interface`, `priority`            | the same keys (priority 255 becomes 254; `state MASTER` without one is keepalived's 255) |
//! | `virtual_router_id`                | `group`                                      |
//! | `advert_int` (fractions with VRRPv3: `vrrp_version 3` or IPv6) | `advert_interval` |
//! | `nopreempt`, `preempt_delay`       | `preempt = false`, `preempt_delay` (unless keepalived clears them: `state MASTER`, priority 255) |
//! | `virtual_ipaddress`                | `vips`: one per line, of the first one's family, on the instance's interface, each address once (a bare address is /32 or /128) |
//! | `unicast_peer`                     | `peers`                                      |
//! | `authentication`                   | `auth_key_file = "/etc/vipd/NAME.key"` (the password is not reused: make a key with `vipd keygen`) |
//! | `vrrp_script` + `track_script`     | `[[instance.track_script]]`                  |
//! | `track_interface`                  | `[[instance.track_interface]]`               |
//! | `notify_master/backup/fault/stop`, `notify` | `[instance.notify]`                 |
//! | `garp_master_repeat/delay/refresh`, and `vrrp_garp_master_*` above the instance | `announce_count/repeat_after/refresh` |
//! | `vrrp_sync_group`                  | `[[sync_group]]`                             |
//!
//! With [`Options::join`] the instances speak VRRP instead, to run beside
//! keepalived nodes: `protocol` from `vrrp_version`/`version` (IPv6: VRRPv3),
//! priority 255 kept, `auth_type PASS` as `vrrp_auth_pass`, `v3_checksum_as_v2`
//! as `vrrp_checksum = "message-only"`, `unicast_src_ip` as `vrrp_source`,
//! `virtual_ipaddress_excluded` left out (keepalived does not advertise them);
//! an instance vipd cannot join (AH, another multicast group) is not converted.
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
    /// Advice about something carried over as it was (a `router_id` that
    /// became the node name): it does not make the conversion incomplete.
    pub advice: bool,
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

/// What a conversion is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The host the output is for, as keepalived's config-id (`keepalived -i`,
    /// by default the hostname up to its first dot): it picks the `@HOST` and
    /// `@^HOST` lines and names the node when `router_id` is missing or the
    /// packaged `LVS_DEVEL`.
    pub host: String,
    /// Join the running keepalived cluster as it is: the instances speak VRRP
    /// (`protocol = "vrrp2"` or `"vrrp3"`) with keepalived's VRIDs, priorities
    /// (255 kept), intervals and `auth_type PASS` passwords, instead of vipd's
    /// own authenticated protocol.
    pub join: bool,
}

/// Converts the keepalived configuration at `path` (and what it includes).
pub fn convert_file(path: &Path, options: &Options) -> Result<Conversion, ImportError> {
    let parsed = parse::parse_file(path, &options.host)?;
    Ok(convert::convert(path, parsed, options))
}

/// keepalived's default config-id: the hostname up to its first dot
/// (keepalived/core/main.c).
pub fn config_id_of(hostname: &str) -> &str {
    hostname.split('.').next().unwrap_or(hostname)
}
