//! The configuration file: the TOML schema, loading and validation with
//! `FILE:LINE:COLUMN` diagnostics, and checks against the host.
//!
//! Owns: what a valid configuration is (the typed [`Config`] and its
//! [`defaults`]), turning text into it, and explaining why text is not one.
//! May not touch: sockets, netlink writes or any daemon state. It reads only the
//! configuration file, key files, the hostname and, in [`check_against_system`],
//! the host's interfaces and groups.
//!
//! Loading happens in two stages, after hickory-dns's config:
//!
//! 1. serde turns the text into private `Raw*` structs (`raw`). They reject
//!    unknown keys (`deny_unknown_fields`) and keep the byte span of every value
//!    ([`toml::Spanned`]). A syntax error, an unknown key or a value of the wrong
//!    TOML type stops here, at the first one, as [`ConfigError::Syntax`].
//! 2. Validation (`validate`, one file per table) turns the raw structs into the
//!    typed [`Config`], applying the defaults and checking every rule. It does not
//!    stop at the first problem: all of them come back together in
//!    [`ConfigError::Invalid`], so `vipd check` can list everything wrong with a
//!    file in one go.
//!
//! Every message starts with `FILE:LINE:COLUMN:` pointing at the offending value
//! and says what would be valid, e.g.
//! `/etc/vipd/vipd.toml:12:12: instance "db": priority 300 is out of range; valid: 1..=254`.
//! Positions and error types live in `diagnostics`.
//!
//! [`check_against_system`] (`system`) adds the checks that depend on the running
//! host (interfaces, groups, addresses already configured) and is kept apart so
//! that `from_toml` stays a pure function of its input (apart from reading key
//! files and, when `node.name` is left out, the hostname).
//!
//! Limits that come from the advert format (the advert interval's centiseconds,
//! the node name's length, the shortest key) are the [`wire`](crate::wire)
//! module's; [`defaults`] restates them as durations and sizes.
//!
//! The schema, each key's default and valid range are documented in the example
//! `config/vipd.toml`, which a test loads.

mod diagnostics;
mod raw;
mod system;
mod types;
mod validate;
mod vip;

use std::path::Path;

pub use diagnostics::{ConfigError, ConfigErrors, Diagnostic, Location};
pub use system::{check_against_system, check_warnings, SystemCheckProblem};
pub use types::{
    AfterCrash, AnnounceConfig, Config, EtcdConfig, GuardConfig, GuardMethod, InstanceConfig,
    NodeConfig, NotifyConfig, OnUnreachable, PatroniDcs, PatroniFollow, Protocol, RouteConfig,
    StoreElection, SyncGroup, TrackFile, TrackInterface, TrackScript, VrrpChecksum, VrrpConfig,
    VrrpVersion, Witness,
};
pub use validate::node_id;
pub use vip::{Vip, VipParseError};

use diagnostics::{tidy_toml_message, LineIndex};
use raw::RawConfig;

/// Where `vipd` looks for its configuration unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/vipd/vipd.toml";

/// The defaults applied to keys a configuration leaves out, and the limits on values.
///
/// Defaults that depend on other keys (`backup_advert_interval`, `handover_timeout`)
/// are described on the corresponding [`InstanceConfig`] fields.
pub mod defaults {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use crate::wire::{self, AuthKey};

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
    /// `announce_probe`.
    pub const ANNOUNCE_PROBE: bool = true;

    /// Shortest advert interval: one centisecond ([`wire::MIN_INTERVAL_CS`]), the
    /// wire's resolution.
    pub const MIN_ADVERT_INTERVAL: Duration = wire::cs_to_duration(wire::MIN_INTERVAL_CS);
    /// Longest advert interval: 4095 centiseconds ([`wire::MAX_INTERVAL_CS`]).
    pub const MAX_ADVERT_INTERVAL: Duration = wire::cs_to_duration(wire::MAX_INTERVAL_CS);
    /// Advert intervals are whole multiples of this: one centisecond.
    pub const INTERVAL_RESOLUTION: Duration = wire::cs_to_duration(1);
    /// Longest `handover_timeout`.
    pub const MAX_HANDOVER_TIMEOUT: Duration = Duration::from_secs(60);
    /// Most VIPs in one instance.
    pub const MAX_VIPS: usize = 1024;
    /// Shortest auth key, in bytes after trimming surrounding whitespace
    /// ([`AuthKey::MIN_LEN`]).
    pub const MIN_KEY_LEN: usize = AuthKey::MIN_LEN;

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
    /// `route.table`: 118, vipd's route protocol number too ('v'). Inside
    /// 1..=252, the only tables FRR's `ip import-table` accepts, and clear of
    /// the kernel's own (253 default, 254 main, 255 local) and of numbers other
    /// tools pick by default (Tailscale 52, Cilium 200/2004/2005, wg-quick
    /// 51820); 100 and 200 are common in examples, so those are avoided too.
    pub const ROUTE_TABLE: u32 = 118;
    /// `route.metric`.
    pub const ROUTE_METRIC: u32 = 100;
    /// `route.withdraw_delay`.
    pub const ROUTE_WITHDRAW_DELAY: Duration = Duration::from_secs(1);
    /// Longest `route.withdraw_delay`: a stop waits this long at most per
    /// instance.
    pub const MAX_ROUTE_WITHDRAW_DELAY: Duration = Duration::from_secs(10);
    /// `route.ready_after`: how long after start and after the uplink regains
    /// carrier a routed node does not preempt. Covers the BGP session coming
    /// up and FRR's first update reaching the router with the README's timers
    /// (`timers bgp 1 3`): about 1.1 s after carrier in tests/routed.rs's lab,
    /// plus the router's hold time (3 s) when it never saw a rebooted node's
    /// link go, with room to spare.
    pub const ROUTE_READY_AFTER: Duration = Duration::from_secs(10);
    /// Longest `route.ready_after`: the hold time of FRR's traditional BGP
    /// timers (180 s) and more.
    pub const MAX_ROUTE_READY_AFTER: Duration = Duration::from_secs(600);
    /// `max_hops`: adverts only from the link itself (TTL 255).
    pub const MAX_HOPS: u8 = 1;
    /// Most track scripts, interfaces or files per instance.
    pub const MAX_TRACKS: usize = 64;
}

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
    validate::validate(raw, &index).map_err(ConfigError::Invalid)
}
