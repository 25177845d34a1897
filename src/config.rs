//! The configuration file: TOML schema, loading and validation.
//!
//! Loading happens in two stages, after hickory-dns's config:
//!
//! 1. serde turns the text into private `Raw*` structs. They reject unknown keys
//!    (`deny_unknown_fields`) and keep the byte span of every value
//!    ([`toml::Spanned`]). A syntax error, an unknown key or a value of the wrong
//!    TOML type stops here, at the first one, as [`ConfigError::Syntax`].
//! 2. Validation turns the raw structs into the typed [`Config`], applying the
//!    defaults and checking every rule. It does not stop at the first problem: all
//!    of them come back together in [`ConfigError::Invalid`], so `vipd check` can
//!    list everything wrong with a file in one go.
//!
//! Every message starts with `FILE:LINE:COLUMN:` pointing at the offending value
//! and says what would be valid, e.g.
//! `/etc/vipd/vipd.toml:12:12: instance "db": priority 300 is out of range; valid: 1..=254`.
//!
//! [`check_against_system`] adds the checks that depend on the running host
//! (interfaces, groups, addresses already configured) and is kept apart so that
//! `from_toml` stays a pure function of its input (apart from reading key files).
//!
//! The schema, each key's default and valid range are documented in the example
//! `config/vipd.toml`, which a test loads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::wire::{Auth, AuthKey};

/// Where `vipd` looks for its configuration unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/vipd/vipd.toml";

/// The defaults applied to keys a configuration leaves out, and the limits on values.
///
/// Defaults that depend on other keys (`backup_advert_interval`, `handover_timeout`)
/// are described on the corresponding [`InstanceConfig`] fields.
pub mod defaults {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    /// `node.control_socket`.
    pub const CONTROL_SOCKET: &str = "/run/vipd/vipd.sock";
    /// `node.state_dir`.
    pub const STATE_DIR: &str = "/var/lib/vipd";
    /// `node.startup_delay`.
    pub const STARTUP_DELAY: Duration = Duration::ZERO;
    /// `advert_interval`.
    pub const ADVERT_INTERVAL: Duration = Duration::from_secs(1);
    /// `takeover_margin`.
    pub const TAKEOVER_MARGIN: Duration = Duration::from_millis(2);
    /// `preempt`.
    pub const PREEMPT: bool = true;
    /// `preempt_delay`.
    pub const PREEMPT_DELAY: Duration = Duration::ZERO;
    /// `multicast_group`.
    pub const MULTICAST_GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 255, 80, 51));
    /// `port`.
    pub const PORT: u16 = 5880;
    /// `announce_count`.
    pub const ANNOUNCE_COUNT: u32 = 5;
    /// `announce_interval`.
    pub const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(100);
    /// `announce_repeat_after`.
    pub const ANNOUNCE_REPEAT_AFTER: Option<Duration> = Some(Duration::from_secs(5));
    /// `announce_refresh`.
    pub const ANNOUNCE_REFRESH: Option<Duration> = None;

    /// Shortest advert interval: one centisecond, the wire's resolution.
    pub const MIN_ADVERT_INTERVAL: Duration = Duration::from_millis(10);
    /// Longest advert interval: 4095 centiseconds, the wire's 12-bit field.
    pub const MAX_ADVERT_INTERVAL: Duration = Duration::from_millis(40_950);
    /// Advert intervals are whole multiples of this.
    pub const INTERVAL_RESOLUTION: Duration = Duration::from_millis(10);
    /// Longest `handover_timeout`.
    pub const MAX_HANDOVER_TIMEOUT: Duration = Duration::from_secs(60);
    /// Most VIPs in one instance.
    pub const MAX_VIPS: usize = 1024;
    /// Shortest auth key, in bytes after trimming surrounding whitespace.
    pub const MIN_KEY_LEN: usize = 16;

    /// `track_script.interval`.
    pub const TRACK_SCRIPT_INTERVAL: Duration = Duration::from_secs(2);
    /// `track_script.rise` and `track_script.fall`.
    pub const TRACK_RISE: u32 = 1;
    pub const TRACK_FALL: u32 = 1;
    /// `track_file.interval`: how often the file is read.
    pub const TRACK_FILE_INTERVAL: Duration = Duration::from_secs(1);
    /// `track_file.weight_multiplier`.
    pub const TRACK_FILE_MULTIPLIER: i32 = 1;
    /// `notify.timeout`.
    pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
    /// `guard.fall` (consecutive failed witness checks before the fault).
    pub const GUARD_FALL: u32 = 1;
    /// `guard.rise` (consecutive good witness checks before the fault clears).
    pub const GUARD_RISE: u32 = 2;
    /// Most track scripts, interfaces or files per instance.
    pub const MAX_TRACKS: usize = 64;
}

// ---------------------------------------------------------------------------
// Typed configuration
// ---------------------------------------------------------------------------

/// A validated configuration: what `vipd run` acts on.
///
/// Equality compares the settings only, never where in the file they were written,
/// so a reload that merely moves lines around changes nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Settings for this node as a whole (`[node]`).
    pub node: NodeConfig,
    /// The VRRP-like instances (`[[instance]]`), in file order; at least one.
    pub instances: Vec<InstanceConfig>,
    /// Sync groups (`[[sync_group]]`), in file order; each member instance also
    /// carries its group in [`InstanceConfig::sync_group`].
    pub sync_groups: Vec<SyncGroup>,
    /// Where in the file some values came from, for [`check_against_system`].
    sources: Sources,
}

impl Config {
    /// Builds a configuration by hand (e.g. in tests). Problems found by
    /// [`check_against_system`] on it carry no file position.
    pub fn new(node: NodeConfig, instances: Vec<InstanceConfig>) -> Self {
        Self {
            node,
            instances,
            sync_groups: Vec::new(),
            sources: Sources::default(),
        }
    }

    /// The instance called `name`, if any.
    pub fn instance(&self, name: &str) -> Option<&InstanceConfig> {
        self.instances.iter().find(|i| i.name == name)
    }
}

/// Node-wide settings (`[node]`).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// The node's name, sent in adverts and shown in status (1..=64 bytes).
    /// Default: the hostname.
    pub name: String,
    /// The first 8 bytes (big-endian) of SHA-256 of `name`: stable across restarts,
    /// breaks priority ties.
    pub node_id: u64,
    /// The control socket's path. Default: `/run/vipd/vipd.sock`.
    pub control_socket: PathBuf,
    /// A unix group whose members may also use the control socket. Default: none
    /// (root only).
    pub control_group: Option<String>,
    /// Where vipd keeps state across restarts. Default: `/var/lib/vipd`.
    pub state_dir: PathBuf,
    /// Stay backup at least this long after start (boot races). Default: 0s; at
    /// most 10min.
    pub startup_delay: Duration,
}

/// One instance: a set of VIPs held by one node of a group at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceConfig {
    /// Unique on this node; `[A-Za-z0-9_.-]{1,32}`.
    pub name: String,
    /// The interface that carries the VIPs and the adverts.
    pub interface: String,
    /// 1..=255; the same on every peer; `(interface, group)` is unique on a node.
    pub group: u8,
    /// 1..=254; the highest healthy priority becomes master.
    pub priority: u8,
    /// How often the master advertises: 10ms..=40.95s in whole centiseconds.
    /// Default 1s.
    pub advert_interval: Duration,
    /// How often backups advertise. Default `max(advert_interval, 1s)` (at most
    /// 40.95s); `advert_interval..=40.95s` in whole centiseconds.
    pub backup_advert_interval: Duration,
    /// Per-rank wait added by backups before taking over. Default 2ms;
    /// `100us..=advert_interval / 2`.
    pub takeover_margin: Duration,
    /// Bound on make-before-break during drain and shutdown. Default
    /// `min(3 × advert_interval, 60s)`; `advert_interval..=60s`.
    pub handover_timeout: Duration,
    /// Whether a higher priority takes over from a lower-priority master. Default true.
    pub preempt: bool,
    /// How long to wait before preempting. Default 0s; at most 1h.
    pub preempt_delay: Duration,
    /// The virtual addresses; 1..=1024, no duplicates, in file order.
    pub vips: Vec<Vip>,
    /// How adverts are authenticated.
    pub auth: Auth,
    /// Unicast peers; empty means multicast to `multicast_group`.
    pub peers: Vec<IpAddr>,
    /// The multicast group adverts go to when `peers` is empty. Default 239.255.80.51.
    pub multicast_group: IpAddr,
    /// UDP port of adverts. Default 5880.
    pub port: u16,
    /// Gratuitous ARP / unsolicited NA on becoming master.
    pub announce: AnnounceConfig,
    /// `[[instance.track_script]]`: commands whose result moves the priority or
    /// puts the instance in fault.
    pub track_scripts: Vec<TrackScript>,
    /// `[[instance.track_interface]]`: other interfaces whose link state counts.
    pub track_interfaces: Vec<TrackInterface>,
    /// `[[instance.track_file]]`: files holding a priority weight.
    pub track_files: Vec<TrackFile>,
    /// `[instance.notify]`: hooks run on each transition.
    pub notify: NotifyConfig,
    /// `[instance.guard]`: the opt-in split-brain guard. Default: none.
    pub guard: Option<GuardConfig>,
    /// The sync group this instance belongs to, if any (from `[[sync_group]]`).
    pub sync_group: Option<SyncGroup>,
}

/// A track script: run every `interval`; `fall` failures in a row make it failing,
/// `rise` successes in a row make it good again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackScript {
    /// Unique within the instance; `[A-Za-z0-9_.-]{1,32}`; shown in status.
    pub name: String,
    /// The program and its arguments, run without a shell; with `shell`, a single
    /// string run by `/bin/sh -c`.
    pub command: Vec<String>,
    /// Run `command[0]` through `/bin/sh -c`. Default false.
    pub shell: bool,
    /// Time between the end of one run and the start of the next. Default 2s;
    /// 10ms..=1h.
    pub interval: Duration,
    /// A run still going after this long is killed with its process group and
    /// counts as a failure. Default: `interval`; 10ms..=1h.
    pub timeout: Duration,
    /// Successes in a row before a failing script is good again. Default 1; 1..=100.
    pub rise: u32,
    /// Failures in a row before a good script is failing. Default 1; 1..=100.
    pub fall: u32,
    /// `None`: a failing script puts the instance in fault. Negative: added to the
    /// priority while failing. Positive: added while good. -254..=254, not 0.
    pub weight: Option<i32>,
}

/// Another interface whose link state counts (`[[instance.track_interface]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackInterface {
    /// The interface name.
    pub interface: String,
    /// `None`: link down puts the instance in fault. Negative: added while down.
    /// Positive: added while up. -254..=254, not 0.
    pub weight: Option<i32>,
}

/// A file holding an integer weight, as keepalived's `track_file`
/// (`[[instance.track_file]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackFile {
    /// Absolute, or relative to the configuration file's directory.
    pub path: PathBuf,
    /// The file's integer times this is added to the priority; a result of -254 or
    /// less puts the instance in fault. Default 1; -254..=254.
    pub weight_multiplier: i32,
    /// How often the file is read. Default 1s; 10ms..=1h.
    pub interval: Duration,
}

/// Hooks run on transitions (`[instance.notify]`). Each is a program and its
/// arguments (run without a shell); vipd appends the instance, the new state, the
/// previous state and the reason, and sets `VIPD_INSTANCE`, `VIPD_STATE`,
/// `VIPD_PREVIOUS_STATE` and `VIPD_REASON`. Empty: no hook.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyConfig {
    pub master: Vec<String>,
    pub backup: Vec<String>,
    pub fault: Vec<String>,
    /// Run when the instance stops (daemon shutdown, or removed by a reload), with
    /// state `stop`.
    pub stop: Vec<String>,
    /// Run on every transition, after the state's own hook.
    pub any: Vec<String>,
    /// Each hook is killed, with its process group, after this long. Default 10s;
    /// 10ms..=1h.
    pub timeout: Duration,
}

impl NotifyConfig {
    /// Whether any hook is configured.
    pub fn is_empty(&self) -> bool {
        self.master.is_empty()
            && self.backup.is_empty()
            && self.fault.is_empty()
            && self.stop.is_empty()
            && self.any.is_empty()
    }
}

/// What the split-brain guard must reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Witness {
    /// The IPv4 default gateway, looked up at each check.
    Gateway,
    Address(IpAddr),
}

/// How the guard checks its witness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardMethod {
    /// `arping -c 1` on the instance's interface (IPv4 witnesses only).
    Arp,
    /// `ping -c 1` through the instance's interface.
    Icmp,
}

/// The split-brain guard (`[instance.guard]`): the node may be master only while
/// it reaches the witness (and, with `quorum`, hears a majority of the group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardConfig {
    pub witness: Witness,
    /// Default icmp.
    pub method: GuardMethod,
    /// Time between checks. Default: the advert interval, at least 100ms; 100ms..=1m.
    pub interval: Duration,
    /// Longest wait for the answer. Default: `interval`; 100ms..=1m.
    pub timeout: Duration,
    /// Failed checks in a row before the fault. Default 1; 1..=100.
    pub fall: u32,
    /// Good checks in a row before the fault clears. Default 2; 1..=100.
    pub rise: u32,
    /// Also require hearing a majority of `peers_total` nodes (a peer counts while
    /// heard within two of its intervals). Default false. When on,
    /// `backup_advert_interval` defaults to, and must equal, `advert_interval`.
    pub quorum: bool,
    /// Nodes in the group, this one included; 3..=255. Default with unicast: peers
    /// + 1; required with multicast when `quorum` is on.
    pub peers_total: Option<u32>,
}

/// Instances that move together (`[[sync_group]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncGroup {
    /// `[A-Za-z0-9_.-]{1,32}`, unique.
    pub name: String,
    /// Member instance names, 2 or more, each in one sync group at most.
    pub instances: Vec<String>,
}

impl InstanceConfig {
    /// Whether adverts go to unicast `peers` rather than the multicast group.
    pub fn is_unicast(&self) -> bool {
        !self.peers.is_empty()
    }
}

/// Gratuitous ARPs (IPv4) and unsolicited neighbour advertisements (IPv6) sent on
/// becoming master.
#[derive(Clone, Debug, PartialEq)]
pub struct AnnounceConfig {
    /// How many in one burst: 1..=100. Default 5.
    pub count: u32,
    /// Spacing within a burst: 1ms..=10s. Default 100ms.
    pub interval: Duration,
    /// A second burst this long after becoming master (at most 1h). Default 5s;
    /// `"0s"` in the file gives `None` (no second burst).
    pub repeat_after: Option<Duration>,
    /// Re-announce periodically while master (1s..=24h). Default `None` (`"0s"`).
    pub refresh: Option<Duration>,
}

/// A virtual IP address with its prefix length, as written `10.0.0.200/24`.
///
/// [`FromStr`] accepts only addresses usable as a VIP: not unspecified, loopback,
/// multicast, the IPv4 broadcast address or IPv6 link-local (`fe80::/10`); the
/// prefix length is required and 1..=32 (IPv4) or 1..=128 (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vip {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length of the subnet the address is added with.
    pub prefix_len: u8,
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Why a string is not a usable [`Vip`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VipParseError {
    /// No `/PREFIX`.
    #[error("{0:?} has no prefix length; write ADDRESS/PREFIX, e.g. \"10.0.0.200/24\" or \"2001:db8::200/64\"")]
    MissingPrefix(String),
    /// The part before `/` is not an IP address.
    #[error("{0:?} is not an IP address; write ADDRESS/PREFIX, e.g. \"10.0.0.200/24\" or \"2001:db8::200/64\"")]
    BadAddress(String),
    /// The part after `/` is not a number in range.
    #[error("prefix length {text:?} is not valid for an IPv{version} address; valid: 1..={max}")]
    BadPrefix {
        /// What was written after `/`.
        text: String,
        /// 4 or 6.
        version: u8,
        /// 32 or 128.
        max: u8,
    },
    /// The address cannot be a VIP.
    #[error("{addr} is {reason} and cannot be a VIP")]
    Unusable {
        /// The address.
        addr: IpAddr,
        /// "a loopback address", ...
        reason: &'static str,
    },
}

impl FromStr for Vip {
    type Err = VipParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr_text, prefix_text) = s
            .split_once('/')
            .ok_or_else(|| VipParseError::MissingPrefix(s.to_owned()))?;
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| VipParseError::BadAddress(addr_text.to_owned()))?;
        let (version, max) = match addr {
            IpAddr::V4(_) => (4, 32),
            IpAddr::V6(_) => (6, 128),
        };
        let prefix_len = prefix_text
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=max).contains(p) && prefix_text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| VipParseError::BadPrefix {
                text: prefix_text.to_owned(),
                version,
                max,
            })?;
        if let Some(reason) = unusable_vip_reason(addr) {
            return Err(VipParseError::Unusable { addr, reason });
        }
        Ok(Self { addr, prefix_len })
    }
}

fn unusable_vip_reason(addr: IpAddr) -> Option<&'static str> {
    if addr.is_unspecified() {
        return Some("the unspecified address");
    }
    if addr.is_loopback() {
        return Some("a loopback address");
    }
    if addr.is_multicast() {
        return Some("a multicast address");
    }
    match addr {
        IpAddr::V4(a) if a == Ipv4Addr::BROADCAST => Some("the broadcast address"),
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => {
            Some("an IPv6 link-local address (fe80::/10)")
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A position in a configuration file (1-based line and column; the column counts
/// characters).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// The configuration file, as passed to [`load`] or [`from_toml`].
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem in a configuration file: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the offending value (or table) starts.
    pub location: Location,
    /// What is wrong and what would be valid, without the location.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every semantic problem found in one file, in file order; never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(Vec<Diagnostic>);

impl ConfigErrors {
    /// The problems, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// How many problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `ConfigErrors` holds at least one problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file itself could not be read.
    #[error("{}: cannot read the configuration file: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The text is not valid TOML, has an unknown key or a value of the wrong type.
    /// Only the first such problem is reported.
    #[error("{0}")]
    Syntax(Diagnostic),
    /// The file parses but breaks one or more rules; all of them are reported.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

impl ConfigError {
    /// The positioned problems (empty for [`ConfigError::Read`]).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Self::Read { .. } => &[],
            Self::Syntax(d) => std::slice::from_ref(d),
            Self::Invalid(errors) => &errors.0,
        }
    }
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    from_toml(&text, path)
}

/// Parses and validates configuration text.
///
/// `origin` names the file in messages, and relative `auth_key_file` paths are
/// resolved against its directory. Key files are read (and their permissions
/// checked) here; nothing else touches the system except the hostname lookup when
/// `node.name` is left out.
pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let index = LineIndex::new(text, origin);
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let location = index.locate(e.span().map_or(0, |s| s.start));
        ConfigError::Syntax(Diagnostic {
            location,
            message: tidy_toml_message(e.message()),
        })
    })?;
    let mut v = Validator {
        index: &index,
        problems: Vec::new(),
    };
    let config = v.config(raw);
    if v.problems.is_empty() {
        if let Some(config) = config {
            return Ok(config);
        }
    }
    let mut problems = v.problems;
    if problems.is_empty() {
        // Every path that drops a value reports why; this is a bug if reached, but
        // a rejected file must still say something.
        problems.push((
            0,
            Diagnostic {
                location: index.locate(0),
                message: "internal error: the configuration was rejected without a reason; please report this".into(),
            },
        ));
    }
    // Stable: problems at the same place keep the order they were found in.
    problems.sort_by_key(|(offset, _)| *offset);
    Err(ConfigError::Invalid(ConfigErrors(
        problems.into_iter().map(|(_, d)| d).collect(),
    )))
}

/// One line per problem; serde's wording names Rust types, users write TOML.
fn tidy_toml_message(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
        .replace("expected i64", "expected an integer")
        .replace("expected a boolean", "expected true or false")
}

struct LineIndex<'a> {
    text: &'a str,
    origin: &'a Path,
    /// Byte offset of the start of every line.
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str, origin: &'a Path) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            text,
            origin,
            line_starts,
        }
    }

    fn locate(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        // `get` rather than indexing: a span never splits a character, but if it did
        // we would rather count from the line start than panic.
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        Location {
            file: self.origin.to_owned(),
            line,
            column,
        }
    }
}

// ---------------------------------------------------------------------------
// Raw (serde) structs
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: Option<Spanned<RawNode>>,
    #[serde(default)]
    instance: Vec<Spanned<RawInstance>>,
    #[serde(default)]
    sync_group: Vec<Spanned<RawSyncGroup>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Option<Spanned<String>>,
    control_socket: Option<Spanned<String>>,
    control_group: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    startup_delay: Option<Spanned<DurationText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    name: Option<Spanned<String>>,
    interface: Option<Spanned<String>>,
    group: Option<Spanned<i64>>,
    priority: Option<Spanned<i64>>,
    advert_interval: Option<Spanned<DurationText>>,
    backup_advert_interval: Option<Spanned<DurationText>>,
    takeover_margin: Option<Spanned<DurationText>>,
    handover_timeout: Option<Spanned<DurationText>>,
    preempt: Option<bool>,
    preempt_delay: Option<Spanned<DurationText>>,
    vips: Option<Spanned<Vec<Spanned<String>>>>,
    auth_key_file: Option<Spanned<String>>,
    auth: Option<Spanned<String>>,
    peers: Option<Spanned<Vec<Spanned<String>>>>,
    multicast_group: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    announce_count: Option<Spanned<i64>>,
    announce_interval: Option<Spanned<DurationText>>,
    announce_repeat_after: Option<Spanned<DurationText>>,
    announce_refresh: Option<Spanned<DurationText>>,
    #[serde(default)]
    track_script: Vec<Spanned<RawTrackScript>>,
    #[serde(default)]
    track_interface: Vec<Spanned<RawTrackInterface>>,
    #[serde(default)]
    track_file: Vec<Spanned<RawTrackFile>>,
    notify: Option<Spanned<RawNotify>>,
    guard: Option<Spanned<RawGuard>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrackScript {
    name: Option<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
    shell: Option<bool>,
    interval: Option<Spanned<DurationText>>,
    timeout: Option<Spanned<DurationText>>,
    rise: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
    weight: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrackInterface {
    name: Option<Spanned<String>>,
    weight: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrackFile {
    path: Option<Spanned<String>>,
    weight_multiplier: Option<Spanned<i64>>,
    interval: Option<Spanned<DurationText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    master: Option<Spanned<Vec<String>>>,
    backup: Option<Spanned<Vec<String>>>,
    fault: Option<Spanned<Vec<String>>>,
    stop: Option<Spanned<Vec<String>>>,
    any: Option<Spanned<Vec<String>>>,
    timeout: Option<Spanned<DurationText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    witness: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    interval: Option<Spanned<DurationText>>,
    timeout: Option<Spanned<DurationText>>,
    fall: Option<Spanned<i64>>,
    rise: Option<Spanned<i64>>,
    quorum: Option<bool>,
    peers_total: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSyncGroup {
    name: Option<Spanned<String>>,
    instances: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A duration as written; parsed during validation so a bad one gets a position.
/// Only strings deserialize, with a message that shows the expected form.
struct DurationText(String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a duration string such as "100ms", "2s" or "1m""#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_owned()))
            }
        }
        deserializer.deserialize_str(V)
    }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// Positions kept for [`check_against_system`]; ignored by equality.
#[derive(Clone, Debug, Default)]
struct Sources {
    control_group: Option<Location>,
    /// By instance name.
    instances: HashMap<String, InstanceSources>,
}

#[derive(Clone, Debug)]
struct InstanceSources {
    interface: Location,
    /// Parallel to `InstanceConfig::vips`.
    vips: Vec<Location>,
}

impl PartialEq for Sources {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

struct Validator<'a> {
    index: &'a LineIndex<'a>,
    /// (byte offset, problem), sorted by offset at the end.
    problems: Vec<(usize, Diagnostic)>,
}

const EXAMPLE_DURATIONS: &str = r#"e.g. "100ms", "1.5s", "2s" or "1m""#;

impl Validator<'_> {
    fn problem(&mut self, span: Range<usize>, message: impl Into<String>) {
        let location = self.index.locate(span.start);
        self.problems.push((
            span.start,
            Diagnostic {
                location,
                message: message.into(),
            },
        ));
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let mut sources = Sources::default();
        let node = self.node(raw.node, &mut sources);

        if raw.instance.is_empty() {
            self.problem(
                0..0,
                "no [[instance]] is configured; valid: at least one [[instance]] table with name, interface, group, priority, vips and an auth choice",
            );
        }
        let mut instances = Vec::new();
        let mut names: HashMap<String, Location> = HashMap::new();
        let mut pairs: HashMap<(String, u8), String> = HashMap::new();
        let mut vip_owner: HashMap<IpAddr, String> = HashMap::new();
        // Every name written, also of instances that fail validation, so a sync
        // group naming one does not add a second, misleading problem.
        let instance_names: HashSet<String> = raw
            .instance
            .iter()
            .filter_map(|i| i.get_ref().name.as_ref().map(|n| n.get_ref().clone()))
            .collect();
        for (n, raw_instance) in raw.instance.into_iter().enumerate() {
            let Some((instance, src, spans)) = self.instance(n + 1, raw_instance) else {
                continue;
            };
            if let Some(first) = names.get(&instance.name) {
                self.problem(
                    spans.name.clone(),
                    format!(
                        "instance name {:?} is already used at {first}; valid: a name unique on this node",
                        instance.name
                    ),
                );
                continue;
            }
            names.insert(instance.name.clone(), self.index.locate(spans.name.start));
            let pair = (instance.interface.clone(), instance.group);
            if let Some(other) = pairs.get(&pair) {
                self.problem(
                    spans.group.clone(),
                    format!(
                        "instance {:?}: interface {:?} with group {} is already used by instance {other:?}; valid: a group not used by another instance on the same interface",
                        instance.name, instance.interface, instance.group
                    ),
                );
            } else {
                pairs.insert(pair, instance.name.clone());
            }
            for (vip, span) in instance.vips.iter().zip(&spans.vips) {
                match vip_owner.get(&vip.addr) {
                    Some(other) => self.problem(
                        span.clone(),
                        format!(
                            "instance {:?}: VIP {} is already in instance {other:?}; valid: each address in one instance only",
                            instance.name, vip.addr
                        ),
                    ),
                    None => {
                        vip_owner.insert(vip.addr, instance.name.clone());
                    }
                }
            }
            sources.instances.insert(instance.name.clone(), src);
            instances.push(instance);
        }
        let sync_groups = self.sync_groups(raw.sync_group, &mut instances, &instance_names);
        Some(Config {
            node: node?,
            instances,
            sync_groups: sync_groups?,
            sources,
        })
    }

    fn node(&mut self, raw: Option<Spanned<RawNode>>, sources: &mut Sources) -> Option<NodeConfig> {
        let (node_span, raw) = match raw {
            Some(raw) => (raw.span(), Some(raw.into_inner())),
            None => (0..0, None),
        };
        let RawNode {
            name,
            control_socket,
            control_group,
            state_dir,
            startup_delay,
        } = raw.unwrap_or(RawNode {
            name: None,
            control_socket: None,
            control_group: None,
            state_dir: None,
            startup_delay: None,
        });
        let who = "[node]";

        let name = match name {
            Some(name) => {
                let span = name.span();
                let name = name.into_inner();
                if let Err(why) = check_node_name(&name) {
                    self.problem(
                        span,
                        format!("{who}: name {name:?} {why}; valid: 1..=64 bytes, no whitespace or control characters"),
                    );
                    None
                } else {
                    Some(name)
                }
            }
            None => match hostname() {
                Ok(name) if check_node_name(&name).is_ok() => Some(name),
                Ok(name) => {
                    self.problem(
                        node_span,
                        format!("{who}: name is not set and the hostname {name:?} cannot be used as one; set name = \"...\" (1..=64 bytes, no whitespace)"),
                    );
                    None
                }
                Err(why) => {
                    self.problem(
                        node_span,
                        format!("{who}: name is not set and the hostname cannot be read ({why}); set name = \"...\""),
                    );
                    None
                }
            },
        };

        let control_socket = self.absolute_path(
            who,
            "control_socket",
            control_socket,
            defaults::CONTROL_SOCKET,
        );
        let state_dir = self.absolute_path(who, "state_dir", state_dir, defaults::STATE_DIR);

        let control_group = match control_group {
            None => Some(None),
            Some(group) => {
                let span = group.span();
                let group = group.into_inner();
                let ok = !group.is_empty()
                    && group.len() <= 32
                    && !group.starts_with('-')
                    && group
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'));
                if ok {
                    sources.control_group = Some(self.index.locate(span.start));
                    Some(Some(group))
                } else {
                    self.problem(
                        span,
                        format!("{who}: control_group {group:?} is not a valid group name; valid: 1..=32 of [A-Za-z0-9_.-], or leave it out for root only"),
                    );
                    None
                }
            }
        };

        let startup_delay = self.duration_in(
            who,
            "startup_delay",
            startup_delay.as_ref(),
            defaults::STARTUP_DELAY,
            Duration::ZERO,
            Duration::from_secs(600),
        );

        let name = name?;
        Some(NodeConfig {
            node_id: node_id(&name),
            name,
            control_socket: control_socket?,
            control_group: control_group?,
            state_dir: state_dir?,
            startup_delay: startup_delay?,
        })
    }

    fn absolute_path(
        &mut self,
        who: &str,
        key: &str,
        raw: Option<Spanned<String>>,
        default: &str,
    ) -> Option<PathBuf> {
        let Some(raw) = raw else {
            return Some(PathBuf::from(default));
        };
        let span = raw.span();
        let path = PathBuf::from(raw.into_inner());
        if path.is_absolute() {
            Some(path)
        } else {
            self.problem(
                span,
                format!("{who}: {key} {:?} is not an absolute path; valid: an absolute path such as {default:?}", path.display().to_string()),
            );
            None
        }
    }

    /// Parses a duration; reports a problem and returns `None` if it is not one.
    fn duration(&mut self, who: &str, key: &str, raw: &Spanned<DurationText>) -> Option<Duration> {
        let text = &raw.get_ref().0;
        match humantime::parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(
                    raw.span(),
                    format!(
                        "{who}: {key} {text:?} is not a duration ({e}); valid: {EXAMPLE_DURATIONS}"
                    ),
                );
                None
            }
        }
    }

    /// Parses a duration (or takes the default) and checks `min..=max`.
    fn duration_in(
        &mut self,
        who: &str,
        key: &str,
        raw: Option<&Spanned<DurationText>>,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let Some(raw) = raw else {
            return Some(default);
        };
        let d = self.duration(who, key, raw)?;
        if d < min || d > max {
            self.problem(
                raw.span(),
                format!(
                    "{who}: {key} {} is out of range; valid: {}..={}",
                    fmt_duration(d),
                    fmt_duration(min),
                    fmt_duration(max)
                ),
            );
            return None;
        }
        Some(d)
    }

    /// Like `duration_in`, and also a whole number of centiseconds.
    fn centiseconds_in(
        &mut self,
        who: &str,
        key: &str,
        raw: Option<&Spanned<DurationText>>,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let d = self.duration_in(who, key, raw, default, min, max)?;
        if d.as_nanos() % defaults::INTERVAL_RESOLUTION.as_nanos() != 0 {
            if let Some(raw) = raw {
                let down = Duration::from_millis(d.as_millis() as u64 / 10 * 10);
                let up = down + defaults::INTERVAL_RESOLUTION;
                self.problem(
                    raw.span(),
                    format!(
                        "{who}: {key} {} is not a whole number of centiseconds (the wire's resolution); valid: a multiple of 10ms such as {} or {}",
                        fmt_duration(d),
                        fmt_duration(down.max(min)),
                        fmt_duration(up.min(max)),
                    ),
                );
            }
            return None;
        }
        Some(d)
    }

    fn int_in(
        &mut self,
        who: &str,
        key: &str,
        raw: &Spanned<i64>,
        valid: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        let v = *raw.get_ref();
        if valid.contains(&v) {
            Some(v)
        } else {
            self.problem(
                raw.span(),
                format!(
                    "{who}: {key} {v} is out of range; valid: {}..={}",
                    valid.start(),
                    valid.end()
                ),
            );
            None
        }
    }

    fn required<T>(
        &mut self,
        who: &str,
        table_span: &Range<usize>,
        key: &str,
        value: Option<T>,
        valid: &str,
    ) -> Option<T> {
        if value.is_none() {
            self.problem(
                table_span.clone(),
                format!("{who}: {key} is required; valid: {valid}"),
            );
        }
        value
    }

    /// Validates one `[[instance]]`; `n` is its 1-based position among instances.
    fn instance(
        &mut self,
        n: usize,
        raw: Spanned<RawInstance>,
    ) -> Option<(InstanceConfig, InstanceSources, InstanceSpans)> {
        let table = raw.span();
        let raw = raw.into_inner();

        // The name first: every other message is labelled with it.
        let mut who = format!("instance #{n}");
        let name = match self.required(
            &who,
            &table,
            "name",
            raw.name,
            "a name matching [A-Za-z0-9_.-]{1,32}",
        ) {
            None => None,
            Some(name) => {
                let span = name.span();
                let name = name.into_inner();
                if valid_instance_name(&name) {
                    who = format!("instance {name:?}");
                    Some((name, span))
                } else {
                    self.problem(
                        span,
                        format!("{who}: name {name:?} is not valid; valid: 1..=32 characters of [A-Za-z0-9_.-]"),
                    );
                    None
                }
            }
        };
        let who = who.as_str();

        let interface = match self.required(
            who,
            &table,
            "interface",
            raw.interface,
            "a Linux interface name such as \"eth0\"",
        ) {
            None => None,
            Some(ifname) => {
                let span = ifname.span();
                let ifname = ifname.into_inner();
                match check_ifname(&ifname) {
                    Ok(()) => Some((ifname, span)),
                    Err(why) => {
                        self.problem(
                            span,
                            format!("{who}: interface {ifname:?} {why}; valid: 1..=15 bytes, not \".\" or \"..\", without '/', ':' or whitespace"),
                        );
                        None
                    }
                }
            }
        };

        let group = self
            .required(
                who,
                &table,
                "group",
                raw.group,
                "1..=255, the same on every peer",
            )
            .and_then(|g| {
                let span = g.span();
                self.int_in(who, "group", &g, 1..=255)
                    .and_then(|v| u8::try_from(v).ok())
                    .map(|v| (v, span))
            });
        let priority = self
            .required(who, &table, "priority", raw.priority, "1..=254")
            .and_then(|p| self.int_in(who, "priority", &p, 1..=254))
            .and_then(|v| u8::try_from(v).ok());

        // Timing.
        let advert_interval = self.centiseconds_in(
            who,
            "advert_interval",
            raw.advert_interval.as_ref(),
            defaults::ADVERT_INTERVAL,
            defaults::MIN_ADVERT_INTERVAL,
            defaults::MAX_ADVERT_INTERVAL,
        );
        let (backup_advert_interval, takeover_margin, handover_timeout) = match advert_interval {
            Some(advert) => {
                // The guard's quorum counts peers heard within two intervals, so
                // backups must advertise as often as the master does.
                let quorum = raw
                    .guard
                    .as_ref()
                    .is_some_and(|g| g.get_ref().quorum == Some(true));
                let backup_default = if quorum {
                    advert
                } else {
                    advert
                        .max(Duration::from_secs(1))
                        .min(defaults::MAX_ADVERT_INTERVAL)
                };
                let mut backup = self.centiseconds_in(
                    who,
                    "backup_advert_interval",
                    raw.backup_advert_interval.as_ref(),
                    backup_default,
                    advert,
                    defaults::MAX_ADVERT_INTERVAL,
                );
                if let (true, Some(b), Some(raw_b)) =
                    (quorum, backup, raw.backup_advert_interval.as_ref())
                {
                    if b != advert {
                        self.problem(
                            raw_b.span(),
                            format!("{who}: backup_advert_interval {} differs from advert_interval {} while guard.quorum is on; a majority must be heard within two intervals; valid: {} or leave it out", fmt_duration(b), fmt_duration(advert), fmt_duration(advert)),
                        );
                        backup = None;
                    }
                }
                let margin = self.duration_in(
                    who,
                    "takeover_margin",
                    raw.takeover_margin.as_ref(),
                    defaults::TAKEOVER_MARGIN,
                    Duration::from_micros(100),
                    advert / 2,
                );
                let handover = self.duration_in(
                    who,
                    "handover_timeout",
                    raw.handover_timeout.as_ref(),
                    (advert * 3).min(defaults::MAX_HANDOVER_TIMEOUT),
                    advert,
                    defaults::MAX_HANDOVER_TIMEOUT,
                );
                (backup, margin, handover)
            }
            None => {
                // Still report what can be checked without knowing advert_interval.
                for (key, raw) in [
                    ("backup_advert_interval", &raw.backup_advert_interval),
                    ("takeover_margin", &raw.takeover_margin),
                    ("handover_timeout", &raw.handover_timeout),
                ] {
                    if let Some(raw) = raw {
                        self.duration(who, key, raw);
                    }
                }
                (None, None, None)
            }
        };
        let preempt_delay = self.duration_in(
            who,
            "preempt_delay",
            raw.preempt_delay.as_ref(),
            defaults::PREEMPT_DELAY,
            Duration::ZERO,
            Duration::from_secs(3600),
        );

        let vips = self.required(
            who,
            &table,
            "vips",
            raw.vips,
            "a non-empty list such as [\"10.0.0.200/24\"]",
        );
        let vips = vips.and_then(|vips| self.vips(who, vips));

        let auth = self.auth(who, &table, raw.auth_key_file, raw.auth);
        let peers = raw.peers.and_then(|p| self.peers(who, p));
        let multicast_group = match raw.multicast_group {
            None => Some(defaults::MULTICAST_GROUP),
            Some(g) => {
                let span = g.span();
                let text = g.into_inner();
                match text.parse::<IpAddr>() {
                    Ok(addr) if addr.is_multicast() => {
                        if peers.as_ref().is_some_and(|p| !p.is_empty()) {
                            self.problem(
                                span,
                                format!("{who}: multicast_group and peers are both set, so it is unclear whether adverts are multicast or unicast; valid: one of them"),
                            );
                            None
                        } else {
                            Some(addr)
                        }
                    }
                    Ok(addr) => {
                        self.problem(
                            span,
                            format!("{who}: multicast_group {addr} is not a multicast address; valid: 224.0.0.0/4 or ff00::/8, e.g. \"239.255.80.51\" or \"ff02::5880\""),
                        );
                        None
                    }
                    Err(_) => {
                        self.problem(
                            span,
                            format!("{who}: multicast_group {text:?} is not an IP address; valid: e.g. \"239.255.80.51\" or \"ff02::5880\""),
                        );
                        None
                    }
                }
            }
        };
        let port = match raw.port {
            None => Some(defaults::PORT),
            Some(p) => self
                .int_in(who, "port", &p, 1..=65535)
                .and_then(|v| u16::try_from(v).ok()),
        };

        let announce_count = match raw.announce_count {
            None => Some(defaults::ANNOUNCE_COUNT),
            Some(c) => self
                .int_in(who, "announce_count", &c, 1..=100)
                .and_then(|v| u32::try_from(v).ok()),
        };
        let announce_interval = self.duration_in(
            who,
            "announce_interval",
            raw.announce_interval.as_ref(),
            defaults::ANNOUNCE_INTERVAL,
            Duration::from_millis(1),
            Duration::from_secs(10),
        );
        let announce_repeat_after = match &raw.announce_repeat_after {
            None => Some(defaults::ANNOUNCE_REPEAT_AFTER),
            Some(r) => self
                .duration_in(
                    who,
                    "announce_repeat_after",
                    Some(r),
                    Duration::ZERO,
                    Duration::ZERO,
                    Duration::from_secs(3600),
                )
                .map(|d| (!d.is_zero()).then_some(d)),
        };
        let announce_refresh = match &raw.announce_refresh {
            None => Some(defaults::ANNOUNCE_REFRESH),
            Some(r) => match self.duration(who, "announce_refresh", r) {
                None => None,
                Some(d) if d.is_zero() => Some(None),
                Some(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(86_400) => {
                    Some(Some(d))
                }
                Some(d) => {
                    self.problem(
                        r.span(),
                        format!("{who}: announce_refresh {} is out of range; valid: \"0s\" (off) or 1s..=24h", fmt_duration(d)),
                    );
                    None
                }
            },
        };

        let track_scripts = self.track_scripts(who, raw.track_script);
        let track_interfaces = self.track_interfaces(who, raw.track_interface);
        let track_files = self.track_files(who, raw.track_file);
        let notify = self.notify(who, raw.notify);
        let guard = match raw.guard {
            None => Some(None),
            Some(g) => self
                .guard(who, g, advert_interval, peers.as_deref())
                .map(Some),
        };

        let (name, name_span) = name?;
        let (interface, interface_span) = interface?;
        let (group, group_span) = group?;
        let (vips, vip_spans) = vips?;
        let sources = InstanceSources {
            interface: self.index.locate(interface_span.start),
            vips: vip_spans
                .iter()
                .map(|s| self.index.locate(s.start))
                .collect(),
        };
        let instance = InstanceConfig {
            name,
            interface,
            group,
            priority: priority?,
            advert_interval: advert_interval?,
            backup_advert_interval: backup_advert_interval?,
            takeover_margin: takeover_margin?,
            handover_timeout: handover_timeout?,
            preempt: raw.preempt.unwrap_or(defaults::PREEMPT),
            preempt_delay: preempt_delay?,
            vips,
            auth: auth?,
            peers: peers.unwrap_or_default(),
            multicast_group: multicast_group?,
            port: port?,
            announce: AnnounceConfig {
                count: announce_count?,
                interval: announce_interval?,
                repeat_after: announce_repeat_after?,
                refresh: announce_refresh?,
            },
            track_scripts: track_scripts?,
            track_interfaces: track_interfaces?,
            track_files: track_files?,
            notify: notify?,
            guard: guard?,
            sync_group: None,
        };
        let spans = InstanceSpans {
            name: name_span,
            group: group_span,
            vips: vip_spans,
        };
        Some((instance, sources, spans))
    }

    /// An optional integer in `valid`, or `default`.
    fn int_or(
        &mut self,
        who: &str,
        key: &str,
        raw: Option<&Spanned<i64>>,
        default: i64,
        valid: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        match raw {
            None => Some(default),
            Some(r) => self.int_in(who, key, r, valid),
        }
    }

    /// A weight: -254..=254 and not 0; absent means fault.
    fn weight(&mut self, who: &str, raw: Option<&Spanned<i64>>) -> Option<Option<i32>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let v = *raw.get_ref();
        if v == 0 || !(-254..=254).contains(&v) {
            self.problem(
                raw.span(),
                format!("{who}: weight {v} is not valid; valid: -254..=-1 (taken off the priority while failing) or 1..=254 (added while good), or leave it out for fault"),
            );
            return None;
        }
        i32::try_from(v).ok().map(Some)
    }

    /// A command list: non-empty, no empty program.
    fn command(
        &mut self,
        who: &str,
        key: &str,
        raw: Option<Spanned<Vec<String>>>,
    ) -> Option<Vec<String>> {
        let Some(raw) = raw else {
            return Some(Vec::new());
        };
        let span = raw.span();
        let argv = raw.into_inner();
        if argv.first().is_none_or(|p| p.trim().is_empty()) {
            self.problem(
                span,
                format!("{who}: {key} has no program; valid: a program and its arguments, e.g. [\"/etc/vipd/check.sh\", \"--quick\"]"),
            );
            return None;
        }
        Some(argv)
    }

    fn track_scripts(
        &mut self,
        who: &str,
        raw: Vec<Spanned<RawTrackScript>>,
    ) -> Option<Vec<TrackScript>> {
        let mut ok = self.not_too_many(
            who,
            "track_script",
            raw.first().map(Spanned::span),
            raw.len(),
        );
        let mut out = Vec::new();
        let mut names: HashSet<String> = HashSet::new();
        for (n, table) in raw.into_iter().enumerate() {
            let span = table.span();
            let t = table.into_inner();
            let mut label = format!("{who}: track_script #{}", n + 1);
            let name = match self.required(
                &label,
                &span,
                "name",
                t.name,
                "a name matching [A-Za-z0-9_.-]{1,32}",
            ) {
                None => None,
                Some(name) => {
                    let nspan = name.span();
                    let name = name.into_inner();
                    if !valid_instance_name(&name) {
                        self.problem(nspan, format!("{label}: name {name:?} is not valid; valid: 1..=32 characters of [A-Za-z0-9_.-]"));
                        None
                    } else if !names.insert(name.clone()) {
                        self.problem(nspan, format!("{label}: name {name:?} is already used by another track_script of this instance; valid: a unique name"));
                        None
                    } else {
                        label = format!("{who}: track_script {name:?}");
                        Some(name)
                    }
                }
            };
            let shell = t.shell.unwrap_or(false);
            let command = match self.required(
                &label,
                &span,
                "command",
                t.command,
                "a program and its arguments, e.g. [\"/usr/bin/pg_isready\", \"-q\"]",
            ) {
                None => None,
                Some(c) => {
                    let cspan = c.span();
                    let len = c.get_ref().len();
                    let command = self.command(&label, "command", Some(c));
                    if shell && len != 1 && command.is_some() {
                        self.problem(cspan, format!("{label}: with shell = true, command is one string for /bin/sh -c; it has {len}; valid: e.g. [\"pg_isready -q && test -f /run/db.ok\"]"));
                        None
                    } else {
                        command
                    }
                }
            };
            let interval = self.duration_in(
                &label,
                "interval",
                t.interval.as_ref(),
                defaults::TRACK_SCRIPT_INTERVAL,
                Duration::from_millis(10),
                Duration::from_secs(3600),
            );
            let timeout = match interval {
                Some(i) => self.duration_in(
                    &label,
                    "timeout",
                    t.timeout.as_ref(),
                    i,
                    Duration::from_millis(10),
                    Duration::from_secs(3600),
                ),
                None => None,
            };
            let rise = self.int_or(
                &label,
                "rise",
                t.rise.as_ref(),
                defaults::TRACK_RISE.into(),
                1..=100,
            );
            let fall = self.int_or(
                &label,
                "fall",
                t.fall.as_ref(),
                defaults::TRACK_FALL.into(),
                1..=100,
            );
            let weight = self.weight(&label, t.weight.as_ref());
            match (name, command, interval, timeout, rise, fall, weight) {
                (
                    Some(name),
                    Some(command),
                    Some(interval),
                    Some(timeout),
                    Some(rise),
                    Some(fall),
                    Some(weight),
                ) => {
                    out.push(TrackScript {
                        name,
                        command,
                        shell,
                        interval,
                        timeout,
                        // In 1..=100, so the casts cannot truncate.
                        rise: rise as u32,
                        fall: fall as u32,
                        weight,
                    });
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn not_too_many(
        &mut self,
        who: &str,
        key: &str,
        span: Option<Range<usize>>,
        len: usize,
    ) -> bool {
        if len > defaults::MAX_TRACKS {
            self.problem(
                span.unwrap_or(0..0),
                format!(
                    "{who}: {len} {key} tables; valid: at most {}",
                    defaults::MAX_TRACKS
                ),
            );
            return false;
        }
        true
    }

    fn track_interfaces(
        &mut self,
        who: &str,
        raw: Vec<Spanned<RawTrackInterface>>,
    ) -> Option<Vec<TrackInterface>> {
        let mut ok = self.not_too_many(
            who,
            "track_interface",
            raw.first().map(Spanned::span),
            raw.len(),
        );
        let mut out = Vec::new();
        for (n, table) in raw.into_iter().enumerate() {
            let span = table.span();
            let t = table.into_inner();
            let label = format!("{who}: track_interface #{}", n + 1);
            let name = match self.required(
                &label,
                &span,
                "name",
                t.name,
                "a Linux interface name such as \"eth1\"",
            ) {
                None => None,
                Some(name) => {
                    let nspan = name.span();
                    let name = name.into_inner();
                    match check_ifname(&name) {
                        Ok(()) if out.iter().any(|t: &TrackInterface| t.interface == name) => {
                            self.problem(nspan, format!("{label}: interface {name:?} is tracked twice; valid: each interface once"));
                            None
                        }
                        Ok(()) => Some(name),
                        Err(why) => {
                            self.problem(nspan, format!("{label}: interface {name:?} {why}; valid: 1..=15 bytes, without '/', ':' or whitespace"));
                            None
                        }
                    }
                }
            };
            let weight = self.weight(&label, t.weight.as_ref());
            match (name, weight) {
                (Some(interface), Some(weight)) => out.push(TrackInterface { interface, weight }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn track_files(
        &mut self,
        who: &str,
        raw: Vec<Spanned<RawTrackFile>>,
    ) -> Option<Vec<TrackFile>> {
        let mut ok =
            self.not_too_many(who, "track_file", raw.first().map(Spanned::span), raw.len());
        let mut out = Vec::new();
        for (n, table) in raw.into_iter().enumerate() {
            let span = table.span();
            let t = table.into_inner();
            let label = format!("{who}: track_file #{}", n + 1);
            let path = self
                .required(&label, &span, "path", t.path, "a file holding an integer, e.g. \"/run/vipd/db.weight\"")
                .and_then(|p| {
                    let pspan = p.span();
                    let written = p.into_inner();
                    if written.is_empty() {
                        self.problem(pspan, format!("{label}: path is empty; valid: a file path such as \"/run/vipd/db.weight\""));
                        return None;
                    }
                    let base = self.index.origin.parent().unwrap_or(Path::new(""));
                    Some(base.join(written))
                });
            let multiplier = self.int_or(
                &label,
                "weight_multiplier",
                t.weight_multiplier.as_ref(),
                defaults::TRACK_FILE_MULTIPLIER.into(),
                -254..=254,
            );
            let interval = self.duration_in(
                &label,
                "interval",
                t.interval.as_ref(),
                defaults::TRACK_FILE_INTERVAL,
                Duration::from_millis(10),
                Duration::from_secs(3600),
            );
            match (path, multiplier, interval) {
                (Some(path), Some(m), Some(interval)) => out.push(TrackFile {
                    path,
                    // In -254..=254, so the cast cannot truncate.
                    weight_multiplier: m as i32,
                    interval,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn notify(&mut self, who: &str, raw: Option<Spanned<RawNotify>>) -> Option<NotifyConfig> {
        let Some(raw) = raw else {
            return Some(NotifyConfig {
                timeout: defaults::NOTIFY_TIMEOUT,
                ..NotifyConfig::default()
            });
        };
        let raw = raw.into_inner();
        let label = format!("{who}: notify");
        let master = self.command(&label, "master", raw.master);
        let backup = self.command(&label, "backup", raw.backup);
        let fault = self.command(&label, "fault", raw.fault);
        let stop = self.command(&label, "stop", raw.stop);
        let any = self.command(&label, "any", raw.any);
        let timeout = self.duration_in(
            &label,
            "timeout",
            raw.timeout.as_ref(),
            defaults::NOTIFY_TIMEOUT,
            Duration::from_millis(10),
            Duration::from_secs(3600),
        );
        Some(NotifyConfig {
            master: master?,
            backup: backup?,
            fault: fault?,
            stop: stop?,
            any: any?,
            timeout: timeout?,
        })
    }

    fn guard(
        &mut self,
        who: &str,
        raw: Spanned<RawGuard>,
        advert_interval: Option<Duration>,
        peers: Option<&[IpAddr]>,
    ) -> Option<GuardConfig> {
        let span = raw.span();
        let raw = raw.into_inner();
        let label = format!("{who}: guard");
        let witness = self
            .required(&label, &span, "witness", raw.witness, "\"gateway\" or an IP address such as \"10.0.0.1\"")
            .and_then(|w| {
                let wspan = w.span();
                let text = w.into_inner();
                if text == "gateway" {
                    return Some(Witness::Gateway);
                }
                match text.parse::<IpAddr>() {
                    Ok(a) if !a.is_unspecified() && !a.is_multicast() => Some(Witness::Address(a)),
                    _ => {
                        self.problem(wspan, format!("{label}: witness {text:?} is not valid; valid: \"gateway\" (the IPv4 default gateway) or a unicast IP address such as \"10.0.0.1\""));
                        None
                    }
                }
            });
        let method = match raw.method {
            None => Some(GuardMethod::Icmp),
            Some(m) => {
                match m.get_ref().as_str() {
                    "icmp" => Some(GuardMethod::Icmp),
                    "arp" => {
                        if matches!(witness, Some(Witness::Address(IpAddr::V6(_)))) {
                            self.problem(m.span(), format!("{label}: method \"arp\" cannot check the IPv6 witness; valid: \"icmp\""));
                            None
                        } else {
                            Some(GuardMethod::Arp)
                        }
                    }
                    other => {
                        self.problem(m.span(), format!("{label}: method {other:?} is not valid; valid: \"icmp\" or \"arp\""));
                        None
                    }
                }
            }
        };
        let default_interval = advert_interval
            .unwrap_or(defaults::ADVERT_INTERVAL)
            .max(Duration::from_millis(100));
        let interval = self.duration_in(
            &label,
            "interval",
            raw.interval.as_ref(),
            default_interval,
            Duration::from_millis(100),
            Duration::from_secs(60),
        );
        let timeout = self.duration_in(
            &label,
            "timeout",
            raw.timeout.as_ref(),
            interval.unwrap_or(default_interval),
            Duration::from_millis(100),
            Duration::from_secs(60),
        );
        let fall = self.int_or(
            &label,
            "fall",
            raw.fall.as_ref(),
            defaults::GUARD_FALL.into(),
            1..=100,
        );
        let rise = self.int_or(
            &label,
            "rise",
            raw.rise.as_ref(),
            defaults::GUARD_RISE.into(),
            1..=100,
        );
        let quorum = raw.quorum.unwrap_or(false);
        let peers_total = match &raw.peers_total {
            Some(p) => self
                .int_in(&label, "peers_total", p, 3..=255)
                .map(|v| Some(v as u32)),
            None if quorum => match peers {
                Some(list) if list.len() >= 2 => Some(Some(list.len() as u32 + 1)),
                _ => {
                    self.problem(span.clone(), format!("{label}: quorum = true needs the group's size; valid: peers_total = 3..=255 (this node included), or unicast peers listing at least 2 others"));
                    None
                }
            },
            None => Some(None),
        };
        Some(GuardConfig {
            witness: witness?,
            method: method?,
            interval: interval?,
            timeout: timeout?,
            // In 1..=100, so the casts cannot truncate.
            fall: fall? as u32,
            rise: rise? as u32,
            quorum,
            peers_total: peers_total?,
        })
    }

    /// Checks `[[sync_group]]` tables against the instances and fills in each
    /// member's [`InstanceConfig::sync_group`].
    fn sync_groups(
        &mut self,
        raw: Vec<Spanned<RawSyncGroup>>,
        instances: &mut [InstanceConfig],
        instance_names: &HashSet<String>,
    ) -> Option<Vec<SyncGroup>> {
        let mut ok = true;
        let mut groups = Vec::new();
        let mut member_of: HashMap<String, String> = HashMap::new();
        for (n, table) in raw.into_iter().enumerate() {
            let span = table.span();
            let t = table.into_inner();
            let mut label = format!("sync_group #{}", n + 1);
            let name = self
                .required(&label, &span, "name", t.name, "a name matching [A-Za-z0-9_.-]{1,32}")
                .and_then(|name| {
                    let nspan = name.span();
                    let name = name.into_inner();
                    if !valid_instance_name(&name) {
                        self.problem(nspan, format!("{label}: name {name:?} is not valid; valid: 1..=32 characters of [A-Za-z0-9_.-]"));
                        None
                    } else if groups.iter().any(|g: &SyncGroup| g.name == name) {
                        self.problem(nspan, format!("{label}: name {name:?} is already used; valid: a unique name"));
                        None
                    } else {
                        Some(name)
                    }
                });
            if let Some(name) = &name {
                label = format!("sync_group {name:?}");
            }
            let members = self
                .required(&label, &span, "instances", t.instances, "two or more instance names, e.g. [\"outside\", \"inside\"]")
                .and_then(|list| {
                    let lspan = list.span();
                    let list = list.into_inner();
                    if list.len() < 2 {
                        self.problem(lspan, format!("{label}: instances has {} entries; valid: two or more instance names", list.len()));
                        return None;
                    }
                    let mut good = true;
                    let mut names: Vec<String> = Vec::new();
                    for entry in list {
                        let espan = entry.span();
                        let member = entry.into_inner();
                        if !instance_names.contains(&member) {
                            self.problem(espan, format!("{label}: there is no instance {member:?}; valid: the name of an [[instance]] of this file"));
                            good = false;
                        } else if names.contains(&member) {
                            self.problem(espan, format!("{label}: instance {member:?} is listed twice; valid: each instance once"));
                            good = false;
                        } else if let Some(other) = member_of.get(&member) {
                            self.problem(espan, format!("{label}: instance {member:?} is already in sync_group {other:?}; valid: one sync group per instance"));
                            good = false;
                        } else {
                            names.push(member);
                        }
                    }
                    good.then_some(names)
                });
            match (name, members) {
                (Some(name), Some(members)) => {
                    for m in &members {
                        member_of.insert(m.clone(), name.clone());
                    }
                    groups.push(SyncGroup {
                        name,
                        instances: members,
                    });
                }
                _ => ok = false,
            }
        }
        for instance in instances.iter_mut() {
            instance.sync_group = groups
                .iter()
                .find(|g| g.instances.contains(&instance.name))
                .cloned();
        }
        ok.then_some(groups)
    }

    fn vips(
        &mut self,
        who: &str,
        raw: Spanned<Vec<Spanned<String>>>,
    ) -> Option<(Vec<Vip>, Vec<Range<usize>>)> {
        let list_span = raw.span();
        let raw = raw.into_inner();
        if raw.is_empty() {
            self.problem(
                list_span,
                format!(
                    "{who}: vips is empty; valid: 1..={} addresses such as [\"10.0.0.200/24\"]",
                    defaults::MAX_VIPS
                ),
            );
            return None;
        }
        if raw.len() > defaults::MAX_VIPS {
            self.problem(
                list_span,
                format!(
                    "{who}: vips has {} entries; valid: 1..={}",
                    raw.len(),
                    defaults::MAX_VIPS
                ),
            );
            return None;
        }
        let mut ok = true;
        let mut vips = Vec::with_capacity(raw.len());
        let mut spans = Vec::with_capacity(raw.len());
        let mut seen: HashMap<IpAddr, String> = HashMap::new();
        for entry in raw {
            let span = entry.span();
            let text = entry.into_inner();
            match text.parse::<Vip>() {
                Ok(vip) => {
                    if let Some(first) = seen.get(&vip.addr) {
                        self.problem(
                            span,
                            format!("{who}: VIP {text:?} duplicates {first:?}; valid: each address once"),
                        );
                        ok = false;
                    } else {
                        seen.insert(vip.addr, text);
                        vips.push(vip);
                        spans.push(span);
                    }
                }
                Err(e) => {
                    self.problem(span, format!("{who}: VIP {e}"));
                    ok = false;
                }
            }
        }
        ok.then_some((vips, spans))
    }

    fn peers(&mut self, who: &str, raw: Spanned<Vec<Spanned<String>>>) -> Option<Vec<IpAddr>> {
        let list_span = raw.span();
        let raw = raw.into_inner();
        if raw.is_empty() {
            self.problem(
                list_span,
                format!("{who}: peers is empty; an empty list never falls back to multicast; valid: the peers' addresses, e.g. [\"10.0.0.12\", \"10.0.0.13\"], or remove the key to use multicast"),
            );
            return None;
        }
        let mut ok = true;
        let mut peers: Vec<IpAddr> = Vec::with_capacity(raw.len());
        for entry in raw {
            let span = entry.span();
            let text = entry.into_inner();
            let Ok(addr) = text.parse::<IpAddr>() else {
                self.problem(
                    span,
                    format!("{who}: peer {text:?} is not an IP address; valid: a unicast address such as \"10.0.0.12\" or \"2001:db8::12\""),
                );
                ok = false;
                continue;
            };
            if addr.is_unspecified() || addr.is_multicast() {
                let what = if addr.is_multicast() {
                    "a multicast"
                } else {
                    "the unspecified"
                };
                self.problem(
                    span,
                    format!("{who}: peer {addr} is {what} address; valid: a unicast address of a peer (use multicast_group for multicast)"),
                );
                ok = false;
                continue;
            }
            if peers.contains(&addr) {
                self.problem(
                    span,
                    format!("{who}: peer {addr} is listed twice; valid: each peer once"),
                );
                ok = false;
                continue;
            }
            if let Some(first) = peers.first() {
                if first.is_ipv4() != addr.is_ipv4() {
                    self.problem(
                        span,
                        format!("{who}: peer {addr} is not the same address family as peer {first}; valid: all peers IPv4 or all IPv6"),
                    );
                    ok = false;
                    continue;
                }
            }
            peers.push(addr);
        }
        ok.then_some(peers)
    }

    fn auth(
        &mut self,
        who: &str,
        table: &Range<usize>,
        key_file: Option<Spanned<String>>,
        auth: Option<Spanned<String>>,
    ) -> Option<Auth> {
        if let Some(auth) = &auth {
            if auth.get_ref() != "none" {
                self.problem(
                    auth.span(),
                    format!("{who}: auth {:?} is not valid; valid: \"none\", or remove it and set auth_key_file", auth.get_ref()),
                );
                return None;
            }
        }
        match (key_file, auth) {
            (None, None) => {
                self.problem(
                    table.clone(),
                    format!("{who}: authentication must be an explicit choice; valid: auth_key_file = \"/etc/vipd/{}.key\" (at least {} bytes, e.g. from `openssl rand -hex 32`) or auth = \"none\"", who_name(who), defaults::MIN_KEY_LEN),
                );
                None
            }
            (Some(_), Some(auth)) => {
                self.problem(
                    auth.span(),
                    format!("{who}: both auth = \"none\" and auth_key_file are set; valid: exactly one of them"),
                );
                None
            }
            (None, Some(_)) => Some(Auth::None),
            (Some(file), None) => {
                let span = file.span();
                let written = file.into_inner();
                let base = self.index.origin.parent().unwrap_or(Path::new(""));
                let path = base.join(&written);
                match read_key_file(&path) {
                    Ok(key) => match AuthKey::new(key) {
                        Ok(key) => Some(Auth::HmacSha256(key)),
                        Err(e) => {
                            self.problem(
                                span,
                                format!("{who}: auth_key_file {}: {e}", path.display()),
                            );
                            None
                        }
                    },
                    Err(why) => {
                        self.problem(
                            span,
                            format!("{who}: auth_key_file {}: {why}", path.display()),
                        );
                        None
                    }
                }
            }
        }
    }
}

/// Byte spans needed for checks across instances.
struct InstanceSpans {
    name: Range<usize>,
    group: Range<usize>,
    vips: Vec<Range<usize>>,
}

/// `instance "db"` → `db`, for example paths in messages.
fn who_name(who: &str) -> &str {
    who.strip_prefix("instance \"")
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or("NAME")
}

/// A key file holds one line; anything this large is the wrong file.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Reads a key file: mode must be 0600 or stricter; the trimmed text is the key.
fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file; valid: a file holding the key".into());
    }
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(format!(
            "is {} bytes long; valid: a file holding one key of at most {MAX_KEY_FILE_LEN} bytes",
            meta.len()
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:04o} gives access to group or others; valid: readable by its owner only; fix: chmod 600 {}",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let key = text.trim();
    if key.len() < defaults::MIN_KEY_LEN {
        return Err(format!(
            "the key is {} bytes long after trimming whitespace; valid: at least {} bytes, e.g. `openssl rand -hex 32 > {}`",
            key.len(),
            defaults::MIN_KEY_LEN,
            path.display()
        ));
    }
    Ok(key.as_bytes().to_vec())
}

fn valid_instance_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The kernel's `dev_valid_name` rules.
fn check_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("is empty")
    } else if name.len() > 15 {
        Err("is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Err("is not allowed")
    } else if name.contains('/') || name.contains(':') {
        Err("contains '/' or ':'")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("contains whitespace")
    } else {
        Ok(())
    }
}

fn check_node_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("is empty")
    } else if name.len() > 64 {
        Err("is longer than 64 bytes")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("contains whitespace or control characters")
    } else {
        Ok(())
    }
}

fn hostname() -> Result<String, String> {
    let name = nix::unistd::gethostname().map_err(|e| e.to_string())?;
    name.into_string()
        .map_err(|_| "the hostname is not UTF-8".to_owned())
}

/// The first 8 bytes (big-endian) of SHA-256 of the node name.
pub fn node_id(name: &str) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// A duration the way a user would write it: `10ms`, `40.95s`, `1m`, `100us`.
fn fmt_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    const MS: u128 = 1_000_000;
    const S: u128 = 1_000 * MS;
    if nanos == 0 {
        "0s".into()
    } else if nanos % (3600 * S) == 0 {
        format!("{}h", nanos / (3600 * S))
    } else if nanos % (60 * S) == 0 && nanos >= 60 * S {
        format!("{}m", nanos / (60 * S))
    } else if nanos % S == 0 {
        format!("{}s", nanos / S)
    } else if nanos >= S {
        let frac = format!("{:09}", nanos % S);
        format!("{}.{}s", nanos / S, frac.trim_end_matches('0'))
    } else if nanos % MS == 0 {
        format!("{}ms", nanos / MS)
    } else if nanos % 1_000 == 0 {
        format!("{}us", nanos / 1_000)
    } else {
        format!("{nanos}ns")
    }
}

// ---------------------------------------------------------------------------
// Checks against the running system
// ---------------------------------------------------------------------------

/// A problem between a valid configuration and the host it is to run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemCheckProblem {
    /// Where in the file the offending value is, when the config came from a file.
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SystemCheckProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Checks `config` against this host (`vipd check` and start-up):
///
/// - every instance's interface exists;
/// - `node.control_group`, if set, exists;
/// - unless `vips_may_be_present`, no VIP is already an address of its interface.
///
/// The last rule: an address that is on the interface before vipd runs belongs to
/// someone else (a static address, another daemon), and vipd would delete it when
/// it releases the VIP. But a running vipd (a master, or a crashed one whose
/// addresses start-up will clean) legitimately has its VIPs on the interface, so the
/// caller passes `vips_may_be_present = true` when vipd is or may be running (e.g.
/// `vipd check` while the service is active, or a reload) and `false` for a check
/// before the first start. The interface's own addresses are not otherwise
/// distinguishable from VIPs here.
pub fn check_against_system(config: &Config, vips_may_be_present: bool) -> Vec<SystemCheckProblem> {
    let interfaces = match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => {
            let mut map: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
            for a in addrs {
                let ip = a.address.as_ref().and_then(|s| {
                    s.as_sockaddr_in()
                        .map(|v4| IpAddr::V4(v4.ip()))
                        .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                });
                let entry = map.entry(a.interface_name).or_default();
                entry.extend(ip);
            }
            map
        }
        Err(e) => {
            return vec![SystemCheckProblem {
                location: None,
                message: format!("cannot list network interfaces (getifaddrs): {e}"),
            }]
        }
    };
    let group_exists = |name: &str| nix::unistd::Group::from_name(name).map(|g| g.is_some());
    check_against(config, &interfaces, vips_may_be_present, group_exists)
}

/// [`check_against_system`] with the system's answers passed in (tests give their own).
fn check_against(
    config: &Config,
    interfaces: &BTreeMap<String, Vec<IpAddr>>,
    vips_may_be_present: bool,
    group_exists: impl Fn(&str) -> nix::Result<bool>,
) -> Vec<SystemCheckProblem> {
    let mut problems = Vec::new();
    if let Some(group) = &config.node.control_group {
        let message = match group_exists(group) {
            Ok(true) => None,
            Ok(false) => Some(format!("[node]: control_group {group:?} does not exist; create it (groupadd --system {group}) or remove control_group")),
            Err(e) => Some(format!("[node]: cannot look up control_group {group:?}: {e}")),
        };
        if let Some(message) = message {
            problems.push(SystemCheckProblem {
                location: config.sources.control_group.clone(),
                message,
            });
        }
    }
    for instance in &config.instances {
        let sources = config.sources.instances.get(&instance.name);
        let who = format!("instance {:?}", instance.name);
        let Some(addrs) = interfaces.get(&instance.interface) else {
            let known: Vec<&str> = interfaces.keys().map(String::as_str).collect();
            problems.push(SystemCheckProblem {
                location: sources.map(|s| s.interface.clone()),
                message: format!(
                    "{who}: interface {:?} does not exist; valid on this host: {}",
                    instance.interface,
                    known.join(", ")
                ),
            });
            continue;
        };
        if vips_may_be_present {
            continue;
        }
        let present: HashSet<&IpAddr> = addrs.iter().collect();
        for (i, vip) in instance.vips.iter().enumerate() {
            if present.contains(&vip.addr) {
                problems.push(SystemCheckProblem {
                    location: sources.and_then(|s| s.vips.get(i).cloned()),
                    message: format!(
                        "{who}: VIP {} is already an address of {} while vipd is not running, so it belongs to something else and vipd would remove it on release; valid: an address not configured on the host",
                        vip.addr, instance.interface
                    ),
                });
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_counts_lines_and_characters() {
        let text = "a = 1\nbé = \"x\"\n\nlast";
        let index = LineIndex::new(text, Path::new("f.toml"));
        let at = |o| {
            let l = index.locate(o);
            (l.line, l.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(4), (1, 5));
        assert_eq!(at(6), (2, 1));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(at(12), (2, 6));
        assert_eq!(at(text.len()), (4, 5));
        assert_eq!(at(text.len() + 10), (4, 5));
        assert_eq!(index.locate(4).to_string(), "f.toml:1:5");
    }

    #[test]
    fn durations_format_as_written() {
        assert_eq!(fmt_duration(Duration::ZERO), "0s");
        assert_eq!(fmt_duration(Duration::from_millis(10)), "10ms");
        assert_eq!(fmt_duration(Duration::from_millis(40_950)), "40.95s");
        assert_eq!(fmt_duration(Duration::from_secs(600)), "10m");
        assert_eq!(fmt_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(fmt_duration(Duration::from_secs(30)), "30s");
        assert_eq!(fmt_duration(Duration::from_micros(100)), "100us");
        assert_eq!(fmt_duration(Duration::from_nanos(5)), "5ns");
        // What we print, humantime parses back.
        for d in [40_950, 10, 1500, 600_000] {
            let d = Duration::from_millis(d);
            assert_eq!(humantime::parse_duration(&fmt_duration(d)).ok(), Some(d));
        }
    }

    #[test]
    fn vip_parse_and_display() {
        let v: Vip = "10.0.0.200/24".parse().unwrap();
        assert_eq!(v.to_string(), "10.0.0.200/24");
        let v: Vip = "2001:db8::200/64".parse().unwrap();
        assert_eq!(v.prefix_len, 64);
        assert!(matches!(
            "10.0.0.1".parse::<Vip>(),
            Err(VipParseError::MissingPrefix(_))
        ));
        assert!(matches!(
            "10.0.0/24".parse::<Vip>(),
            Err(VipParseError::BadAddress(_))
        ));
        for bad in [
            "10.0.0.1/33",
            "10.0.0.1/0",
            "10.0.0.1/+8",
            "10.0.0.1/",
            "::1:2/129",
        ] {
            assert!(
                matches!(bad.parse::<Vip>(), Err(VipParseError::BadPrefix { .. })),
                "{bad}"
            );
        }
        for bad in [
            "0.0.0.0/8",
            "127.0.0.2/8",
            "224.0.0.18/4",
            "255.255.255.255/32",
            "::/64",
            "::1/128",
            "ff02::1/64",
            "fe80::1/64",
            "febf::1/64",
        ] {
            assert!(
                matches!(bad.parse::<Vip>(), Err(VipParseError::Unusable { .. })),
                "{bad}"
            );
        }
        assert!("fec0::1/64".parse::<Vip>().is_ok());
    }

    #[test]
    fn interface_names_follow_the_kernel() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("enp0s31f6.100").is_ok());
        assert!(check_ifname("abcdefghijklmno").is_ok());
        for bad in [
            "",
            "abcdefghijklmnop",
            ".",
            "..",
            "a/b",
            "eth0:1",
            "a b",
            "a\tb",
        ] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn node_id_is_sha256_prefix() {
        // `printf db1 | sha256sum` starts 82e64648d9abefef.
        assert_eq!(node_id("db1"), 0x82e6_4648_d9ab_efef);
        assert_ne!(node_id("db1"), node_id("db2"));
    }

    const HEALTH_BASE: &str = "[node]\nname = \"n1\"\n\n[[instance]]\nname = \"db\"\ninterface = \"eth0\"\ngroup = 51\npriority = 150\nvips = [\"10.0.0.200/24\"]\nauth = \"none\"\n";

    fn health_errors(extra: &str) -> Vec<String> {
        match from_toml(
            &format!("{HEALTH_BASE}{extra}"),
            Path::new("/etc/vipd/vipd.toml"),
        ) {
            Ok(_) => panic!("accepted:\n{extra}"),
            Err(e) => {
                let d = e.diagnostics();
                if d.is_empty() {
                    vec![e.to_string()]
                } else {
                    d.iter().map(ToString::to_string).collect()
                }
            }
        }
    }

    #[test]
    fn health_tables_parse_with_defaults() {
        let text = format!(
            "{HEALTH_BASE}\n[[instance.track_script]]\nname = \"pg\"\ncommand = [\"/bin/true\"]\nweight = -60\n\n[[instance.track_script]]\nname = \"sh\"\ncommand = [\"exit 0\"]\nshell = true\ninterval = \"500ms\"\nrise = 2\nfall = 3\n\n[[instance.track_interface]]\nname = \"eth1\"\n\n[[instance.track_file]]\npath = \"db.weight\"\n\n[instance.notify]\nmaster = [\"/bin/echo\", \"m\"]\n\n[instance.guard]\nwitness = \"gateway\"\n\n[[instance]]\nname = \"web\"\ninterface = \"eth1\"\ngroup = 52\npriority = 100\nvips = [\"10.0.1.200/24\"]\nauth = \"none\"\n\n[[sync_group]]\nname = \"router\"\ninstances = [\"db\", \"web\"]\n"
        );
        let config =
            from_toml(&text, Path::new("/etc/vipd/vipd.toml")).unwrap_or_else(|e| panic!("{e}"));
        let db = &config.instances[0];
        assert_eq!(db.track_scripts.len(), 2);
        let pg = &db.track_scripts[0];
        assert_eq!(
            (pg.interval, pg.timeout),
            (Duration::from_secs(2), Duration::from_secs(2))
        );
        assert_eq!(
            (pg.rise, pg.fall, pg.weight, pg.shell),
            (1, 1, Some(-60), false)
        );
        let sh = &db.track_scripts[1];
        assert_eq!(
            (sh.interval, sh.timeout, sh.rise, sh.fall, sh.weight),
            (
                Duration::from_millis(500),
                Duration::from_millis(500),
                2,
                3,
                None
            )
        );
        assert_eq!(
            db.track_interfaces,
            vec![TrackInterface {
                interface: "eth1".into(),
                weight: None
            }]
        );
        assert_eq!(db.track_files[0].path, Path::new("/etc/vipd/db.weight"));
        assert_eq!(db.track_files[0].weight_multiplier, 1);
        assert_eq!(db.notify.master, vec!["/bin/echo", "m"]);
        assert_eq!(db.notify.timeout, defaults::NOTIFY_TIMEOUT);
        let guard = db.guard.as_ref().unwrap();
        assert_eq!(
            (
                &guard.witness,
                guard.method,
                guard.interval,
                guard.fall,
                guard.rise
            ),
            (
                &Witness::Gateway,
                GuardMethod::Icmp,
                Duration::from_secs(1),
                1,
                2
            )
        );
        assert_eq!(config.sync_groups.len(), 1);
        assert_eq!(db.sync_group.as_ref().unwrap().instances, vec!["db", "web"]);
        assert_eq!(config.instances[1].sync_group, db.sync_group);
    }

    #[test]
    fn health_problems_carry_positions() {
        let e = health_errors(
            "\n[[instance.track_script]]\nname = \"pg\"\ncommand = [\"/bin/true\"]\nweight = 0\n",
        );
        assert_eq!(e, vec!["/etc/vipd/vipd.toml:15:10: instance \"db\": track_script \"pg\": weight 0 is not valid; valid: -254..=-1 (taken off the priority while failing) or 1..=254 (added while good), or leave it out for fault"]);
        let e = health_errors(
            "\n[[instance.track_script]]\nname = \"pg\"\ncommand = [\"a\", \"b\"]\nshell = true\n",
        );
        assert!(e[0].starts_with("/etc/vipd/vipd.toml:14:11: instance \"db\": track_script \"pg\": with shell = true"), "{e:?}");
        let e = health_errors("\n[instance.guard]\nwitness = \"gateway\"\nquorum = true\n");
        assert!(
            e[0].contains("quorum = true needs the group's size"),
            "{e:?}"
        );
        let e = health_errors(
            "backup_advert_interval = \"2s\"\n[instance.guard]\nwitness = \"gateway\"\nquorum = true\npeers_total = 3\n",
        );
        assert!(
            e[0].starts_with("/etc/vipd/vipd.toml:11:26: instance \"db\": backup_advert_interval 2s differs from advert_interval 1s while guard.quorum is on"),
            "{e:?}"
        );
        let e = health_errors("\n[instance.notify]\nmaster = []\nbogus = 1\n");
        assert!(e[0].contains("unknown field `bogus`"), "{e:?}");
        let e = health_errors("\n[[sync_group]]\nname = \"g\"\ninstances = [\"db\", \"nope\"]\n");
        assert_eq!(e, vec!["/etc/vipd/vipd.toml:14:20: sync_group \"g\": there is no instance \"nope\"; valid: the name of an [[instance]] of this file"]);
    }

    fn sample() -> Config {
        let text = r#"
[node]
name = "n1"
control_group = "vipd-ops"

[[instance]]
name = "db"
interface = "eth0"
group = 51
priority = 150
vips = ["10.0.0.200/24", "2001:db8::200/64"]
auth = "none"
"#;
        match from_toml(text, Path::new("/etc/vipd/vipd.toml")) {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        }
    }

    fn interfaces(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<IpAddr>> {
        list.iter()
            .map(|(name, addrs)| {
                let addrs = addrs.iter().map(|a| a.parse().unwrap()).collect();
                (name.to_string(), addrs)
            })
            .collect()
    }

    #[test]
    fn system_check_vip_already_on_interface() {
        let config = sample();
        let ifs = interfaces(&[
            ("lo", &["127.0.0.1"]),
            ("eth0", &["10.0.0.11", "2001:db8::200"]),
        ]);
        let problems = check_against(&config, &ifs, false, |_| Ok(true));
        assert_eq!(problems.len(), 1, "{problems:?}");
        let message = problems[0].to_string();
        assert!(
            message.starts_with("/etc/vipd/vipd.toml:11:26: instance \"db\": VIP 2001:db8::200 is already an address of eth0"),
            "{message}"
        );
        // A running vipd may hold its VIPs: no problem then.
        assert!(check_against(&config, &ifs, true, |_| Ok(true)).is_empty());
        // Nothing on the interface: no problem either way.
        let ifs = interfaces(&[("eth0", &["10.0.0.11"])]);
        assert!(check_against(&config, &ifs, false, |_| Ok(true)).is_empty());
    }

    #[test]
    fn system_check_missing_interface_and_group() {
        let config = sample();
        let ifs = interfaces(&[("lo", &["127.0.0.1"]), ("eth1", &[])]);
        let problems = check_against(&config, &ifs, false, |_| Ok(false));
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].starts_with(
                "/etc/vipd/vipd.toml:4:17: [node]: control_group \"vipd-ops\" does not exist"
            ),
            "{messages:?}"
        );
        assert!(messages[1].starts_with("/etc/vipd/vipd.toml:8:13: instance \"db\": interface \"eth0\" does not exist; valid on this host: eth1, lo"), "{messages:?}");
        // Built by hand: same checks, no positions.
        let by_hand = Config::new(config.node.clone(), config.instances.clone());
        assert_eq!(by_hand, config);
        let problems = check_against(&by_hand, &ifs, false, |_| Ok(true));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].location, None);
    }
}
