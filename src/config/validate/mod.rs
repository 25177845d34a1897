//! Validation: the raw serde structs in, the typed [`Config`] out.
//!
//! One [`Validator`] walks the whole file, applies the defaults and checks every
//! rule. It never stops at the first problem: each one is recorded with the byte
//! offset of the offending value, and all of them come back together, in file
//! order, so `vipd check` lists everything wrong with a file in one go. A value
//! that fails a check becomes `None`, and the table holding it is dropped at the
//! end, so one mistake is reported once and not again by every rule that depends
//! on it.
//!
//! This module holds the core and the rules every table shares (names, interface
//! names, integers, durations, advert intervals, commands); each table has its own
//! file:
//!
//! - `node`: `[node]` and the node id;
//! - `instance`: `[[instance]]`, its timing and the checks across instances;
//! - `addresses`: `vips`, `peers` and `multicast_group`;
//! - `auth`: `auth` / `auth_key_file` / `auth_accept_key_files` and reading key files;
//! - `announce`: the `announce_*` keys;
//! - `protocol`: `protocol` and the `vrrp_*` keys, and what VRRP changes in
//!   the other keys;
//! - `route`: `announce`, `[instance.route]` and `max_hops`;
//! - `health`: `[[instance.track_script]]`, `track_interface` and `track_file`;
//! - `notify`: `[instance.notify]`;
//! - `guard`: `[instance.guard]`;
//! - `sync_group`: `[[sync_group]]`.
//!
//! Validation reads key files and, when `node.name` is left out, the hostname;
//! nothing else touches the host.

mod addresses;
mod announce;
mod auth;
mod guard;
mod health;
mod instance;
mod node;
mod notify;
mod protocol;
mod route;
mod store;
mod sync_group;

use std::collections::HashSet;
use std::ops::{Range, RangeInclusive};
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::diagnostics::LineIndex;
use super::raw::{DurationText, RawConfig};
use super::types::Sources;
use super::{defaults, Config, ConfigErrors, Diagnostic};
use crate::wire;

pub use node::node_id;

/// Checks `raw`, read from the file `index` describes, and builds the [`Config`];
/// or every problem found, in file order.
pub(super) fn validate(raw: RawConfig, index: &LineIndex<'_>) -> Result<Config, ConfigErrors> {
    let mut v = Validator {
        index,
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
    Err(ConfigErrors::new(
        problems.into_iter().map(|(_, d)| d).collect(),
    ))
}

/// What the name of an instance, a track script or a sync group may be.
const NAME_RULE: &str = "1..=32 characters of [A-Za-z0-9_.-]";

/// What an interface name may be: the kernel's `dev_valid_name`, see [`check_ifname`].
const IFNAME_RULE: &str = "1..=15 bytes, not \".\" or \"..\", without '/', ':' or whitespace";

/// Bounds on how often track scripts and files are checked and how long scripts
/// and hooks may run.
const RUN_TIME_MIN: Duration = Duration::from_millis(10);
const RUN_TIME_MAX: Duration = Duration::from_secs(3600);

const EXAMPLE_DURATIONS: &str = r#"e.g. "100ms", "1.5s", "2s" or "1m""#;

/// Walks one file's raw structs, collecting problems.
///
/// Each check takes `who`, the label its messages start with (`[node]`,
/// `instance "db"`, `instance "db": track_script "pg"`, ...), and returns `None`
/// after recording a problem.
struct Validator<'a> {
    index: &'a LineIndex<'a>,
    /// (byte offset, problem), sorted by offset at the end.
    problems: Vec<(usize, Diagnostic)>,
}

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
        // Every name written, also of instances that fail validation, so a sync
        // group naming one does not add a second, misleading problem.
        let instance_names: HashSet<String> = raw
            .instance
            .iter()
            .filter_map(|i| i.get_ref().name.as_ref().map(|n| n.get_ref().clone()))
            .collect();
        let node_name = node.as_ref().map(|n| n.name.clone());
        let has_etcd = node.as_ref().map(|n| n.etcd.is_some());
        let mut instances =
            self.instances(raw.instance, &mut sources, node_name.as_deref(), has_etcd);
        if let Some(user) = node.as_ref().and_then(|n| n.script_user.as_ref()) {
            for instance in &mut instances {
                instance.notify.user.get_or_insert_with(|| user.clone());
                for script in &mut instance.track_scripts {
                    script.user.get_or_insert_with(|| user.clone());
                }
            }
        }
        let sync_groups = self.sync_groups(raw.sync_group, &mut instances, &instance_names);
        Some(Config {
            node: node?,
            instances,
            sync_groups: sync_groups?,
            sources,
        })
    }

    /// The directory relative paths in the file are resolved against.
    fn base_dir(&self) -> &Path {
        self.index.origin().parent().unwrap_or(Path::new(""))
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

    /// The required `name` of the table at `table_span`, following [`NAME_RULE`];
    /// with the name's span.
    fn name(
        &mut self,
        who: &str,
        table_span: &Range<usize>,
        raw: Option<Spanned<String>>,
    ) -> Option<(String, Range<usize>)> {
        let raw = self.required(who, table_span, "name", raw, NAME_RULE)?;
        let span = raw.span();
        let name = raw.into_inner();
        if valid_name(&name) {
            Some((name, span))
        } else {
            self.problem(
                span,
                format!("{who}: name {name:?} is not valid; valid: {NAME_RULE}"),
            );
            None
        }
    }

    /// An interface name following [`IFNAME_RULE`]; with its span.
    fn interface_name(
        &mut self,
        who: &str,
        raw: Spanned<String>,
    ) -> Option<(String, Range<usize>)> {
        let span = raw.span();
        let name = raw.into_inner();
        match check_ifname(&name) {
            Ok(()) => Some((name, span)),
            Err(why) => {
                self.problem(
                    span,
                    format!("{who}: interface {name:?} {why}; valid: {IFNAME_RULE}"),
                );
                None
            }
        }
    }

    /// An integer in `valid`, converted to the type it is kept in (`valid` must fit
    /// that type).
    fn int_in<T: TryFrom<i64>>(
        &mut self,
        who: &str,
        key: &str,
        raw: &Spanned<i64>,
        valid: RangeInclusive<i64>,
    ) -> Option<T> {
        let v = *raw.get_ref();
        if valid.contains(&v) {
            T::try_from(v).ok()
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

    /// An optional integer in `valid`, or `default`.
    fn int_or<T: TryFrom<i64>>(
        &mut self,
        who: &str,
        key: &str,
        raw: Option<&Spanned<i64>>,
        default: T,
        valid: RangeInclusive<i64>,
    ) -> Option<T> {
        match raw {
            None => Some(default),
            Some(r) => self.int_in(who, key, r, valid),
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

    /// An interval that goes on the wire: like `duration_in` within
    /// `min..=max` (itself within [`defaults::MIN_ADVERT_INTERVAL`]..=
    /// [`defaults::MAX_ADVERT_INTERVAL`]), and a value the advert's interval field
    /// can carry ([`wire::interval_to_cs`]), i.e. whole centiseconds.
    fn advert_interval_in(
        &mut self,
        who: &str,
        key: &str,
        raw: Option<&Spanned<DurationText>>,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let d = self.duration_in(who, key, raw, default, min, max)?;
        if wire::interval_to_cs(d).is_some() {
            return Some(d);
        }
        if let Some(raw) = raw {
            let resolution = defaults::INTERVAL_RESOLUTION;
            // `d` is at most MAX_ADVERT_INTERVAL here, 4095 centiseconds, so the
            // count fits a u32.
            let down = resolution * (d.as_nanos() / resolution.as_nanos()) as u32;
            let up = down + resolution;
            self.problem(
                raw.span(),
                format!(
                    "{who}: {key} {} is not a whole number of centiseconds (the wire's resolution); valid: a multiple of {} such as {} or {}",
                    fmt_duration(d),
                    fmt_duration(resolution),
                    fmt_duration(down.max(min)),
                    fmt_duration(up.min(max)),
                ),
            );
        }
        None
    }

    /// A command list: non-empty, no empty program. Absent: no command.
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
}

/// Whether `name` follows [`NAME_RULE`].
fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The kernel's `dev_valid_name` rules, summed up in [`IFNAME_RULE`].
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
