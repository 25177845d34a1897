//! Open files: the daemon's file-descriptor budget, settled before anything is
//! touched.
//!
//! Running out of file descriptors half-way is the worst way to fail: a node
//! that took the VIPs from a healthy peer and then cannot open the socket to
//! announce them leaves clients on the old MAC of a node that released them.
//! So at start-up, before the single-instance lock, the stale-VIP sweep or
//! any advert, [`settle`] raises the soft `RLIMIT_NOFILE` to the hard limit
//! (systemd gives services 1024 soft, 524288 hard) and refuses to start when
//! even that is below what the configuration needs ([`Budget`]). Every
//! socket a claim or an announcement needs is then opened at instance start
//! (see the VIP worker), so "needs" is what the daemon holds, plus headroom
//! for what it opens for a moment.
//!
//! The figures are counted from `/proc/PID/fd` of a running master
//! (`tests/fd_limits.rs` prints them): 16 descriptors of its own with one
//! instance, 30 with eight instances on one interface, plus whatever its
//! parent left open; it asks for 8 more than it holds ([`TRANSIENT`]).
//!
//! What it may not touch: anything but the process's own limit.

use std::sync::OnceLock;

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

use crate::config::Config;

/// Held whatever the configuration (counted with strace and `/proc/PID/fd`):
/// stdin/stdout/stderr (3), tokio's epoll, its duplicate and the waker's
/// eventfd (3), the signal socket pair and its duplicate (3), the rtnetlink
/// request and watch sockets (2), the state directory's lock (1) and the
/// control socket (1).
const BASE: u64 = 13;
/// Opened for a moment at any time: a state or replay-checkpoint write, an
/// sd_notify datagram, a netlink lookup of a health check, an interface
/// listing; and room for control connections (`vipd status`, `reload`)
/// beside them. Beyond that, further control connections wait (accept backs
/// off) instead of taking what a claim needs.
const TRANSIENT: u64 = 8;
/// A child process (track script, notify hook, guard probe) while it runs:
/// the exec-status pipe while spawning (2) and its pidfd (1).
const PER_CHILD: u64 = 3;
/// The metrics endpoint: its listener and a few scrapes at once.
const METRICS: u64 = 4;

/// What a configuration needs, part by part, for the refusal's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    /// (what, descriptors).
    parts: Vec<(String, u64)>,
}

impl Budget {
    /// Counts what `config` needs: [`BASE`] and [`TRANSIENT`]; per instance its
    /// deadline timerfd and (address mode) its announcement socket and the
    /// ARP/NA watch it opens while it holds or probes its VIPs; one advert
    /// socket per distinct (interface, multicast group or unicast family, port),
    /// as the transport shares them; the children that may run at once (track
    /// scripts up to the daemon's limit, a guard's probe, an instance's hook);
    /// one per track file while it is read; the metrics endpoint if configured.
    pub(crate) fn of(config: &Config, inherited: u64) -> Self {
        let instances = config.instances.len() as u64;
        let announcers = config
            .instances
            .iter()
            .filter(|i| i.route.is_none())
            .count() as u64;
        let mut advert_sockets: Vec<(&str, String, u16)> = config
            .instances
            .iter()
            .map(|i| {
                let target = match i.peers.first() {
                    Some(peer) if peer.is_ipv6() => "unicast IPv6".to_owned(),
                    Some(_) => "unicast IPv4".to_owned(),
                    None => i.multicast_group.to_string(),
                };
                (i.interface.as_str(), target, i.port)
            })
            .collect();
        advert_sockets.sort();
        advert_sockets.dedup();
        // Track scripts share the daemon's script limit; a guard probes and
        // an instance runs its hooks one at a time.
        let scripts: usize = config.instances.iter().map(|i| i.track_scripts.len()).sum();
        let children = scripts.min(crate::health::MAX_CONCURRENT_SCRIPTS) as u64
            + config
                .instances
                .iter()
                .map(|i| u64::from(i.guard.is_some()) + u64::from(!i.notify.is_empty()))
                .sum::<u64>();
        let track_files: u64 = config
            .instances
            .iter()
            .map(|i| i.track_files.len() as u64)
            .sum();
        let mut parts = vec![
            ("daemon".to_owned(), BASE),
            ("inherited from the parent".to_owned(), inherited),
            (
                "short-lived files and control connections".to_owned(),
                TRANSIENT,
            ),
            (format!("{instances} instance timers"), instances),
            (format!("{announcers} announcement sockets"), announcers),
            (format!("{announcers} ARP/NA watch sockets"), announcers),
            (
                format!("{} advert sockets", advert_sockets.len()),
                advert_sockets.len() as u64,
            ),
        ];
        if children > 0 {
            parts.push((
                format!("{children} track scripts, guards and hook queues running at once"),
                children * PER_CHILD,
            ));
        }
        if track_files > 0 {
            parts.push((format!("{track_files} track files"), track_files));
        }
        if config.node.metrics_listen.is_some() {
            parts.push(("metrics endpoint".to_owned(), METRICS));
        }
        Self { parts }
    }

    /// What the daemon needs to get as far as reading its configuration and
    /// checking it against [`Budget::of`]: checked before the runtime opens its
    /// own descriptors (tokio panics when it cannot open its signal pipe).
    pub(crate) fn floor(inherited: u64) -> Self {
        Self {
            parts: vec![
                ("daemon".to_owned(), BASE),
                ("inherited from the parent".to_owned(), inherited),
                ("instances not counted yet".to_owned(), 0),
            ],
        }
    }

    /// The descriptors needed in all.
    pub(crate) fn total(&self) -> u64 {
        self.parts.iter().map(|(_, n)| n).sum()
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .parts
            .iter()
            .filter(|(what, n)| *n > 0 || what.starts_with("instances"))
            .map(|(what, n)| format!("{what}: {n}"))
            .collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// The configuration needs more open files than the process may have.
#[derive(Debug, thiserror::Error)]
#[error(
    "open files: vipd needs {needed} file descriptors ({budget}), but the limit \
     (RLIMIT_NOFILE) is {limit}{hard_note}; nothing was changed. Raise it: LimitNOFILE={needed} or \
     more in the unit (systemctl edit vipd), or `ulimit -n {needed}` before `vipd run`"
)]
pub struct FdLimitError {
    needed: u64,
    limit: u64,
    budget: Budget,
    /// Why the limit is not the hard limit, if it is not.
    hard_note: String,
}

/// Raises the soft limit to the hard one (logging the change) and checks it
/// against what reading the configuration needs ([`Budget::floor`]): `vipd
/// run` calls it first thing, before its runtime opens anything.
pub fn raise_open_files_limit() -> Result<(), FdLimitError> {
    let inherited = *INHERITED.get_or_init(count_inherited);
    check(Budget::floor(inherited))
}

/// Raises the soft limit to the hard one if [`raise_open_files_limit`] has not,
/// and checks that what the configuration needs fits under it.
pub(crate) fn settle(config: &Config) -> Result<(), FdLimitError> {
    check(Budget::of(config, INHERITED.get().copied().unwrap_or(0)))
}

/// Descriptors beyond stdin/stdout/stderr that the process started with,
/// counted by [`raise_open_files_limit`] before the runtime opens any.
static INHERITED: OnceLock<u64> = OnceLock::new();

/// Open descriptors above 2 in `/proc/self/fd` (visible under the unit's
/// `ProcSubset=pid`), less the one listing it; 0 if it cannot be read. A parent
/// may pass more than it means to (`ip netns exec` leaves a /dev/null open).
fn count_inherited() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let above_stdio = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|fd| fd > 2)
        })
        .count() as u64;
    above_stdio.saturating_sub(1)
}

fn check(budget: Budget) -> Result<(), FdLimitError> {
    let limit = raise_soft_limit();
    let needed = budget.total();
    tracing::debug!(needed, limit = limit.soft, %budget, "open files");
    if limit.soft < needed {
        return Err(FdLimitError {
            needed,
            limit: limit.soft,
            budget,
            hard_note: limit.note,
        });
    }
    Ok(())
}

/// The soft limit after [`raise_soft_limit`], and why it is below the hard
/// limit when it is.
struct Limit {
    soft: u64,
    note: String,
}

/// Raises `RLIMIT_NOFILE`'s soft limit to the hard limit. An unlimited hard
/// limit is above what the kernel allows (`fs.nr_open`, hidden from the unit by
/// `ProcSubset=pid`), so then the soft limit goes to the kernel's default
/// `nr_open`, 1048576.
fn raise_soft_limit() -> Limit {
    const NR_OPEN_DEFAULT: u64 = 1 << 20;
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "open files: cannot read the limit (getrlimit)");
            return Limit {
                soft: 0,
                note: format!(" (getrlimit failed: {e})"),
            };
        }
    };
    let target = if hard == RLIM_INFINITY {
        NR_OPEN_DEFAULT
    } else {
        hard
    };
    if soft >= target {
        return Limit {
            soft,
            note: String::new(),
        };
    }
    match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        Ok(()) => {
            tracing::info!("open files: soft limit raised from {soft} to {target}");
            Limit {
                soft: target,
                note: String::new(),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "open files: cannot raise the soft limit from {soft} to {target}");
            Limit {
                soft,
                note: format!(" (raising it to the hard limit {target} failed: {e})"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_toml;

    fn config(instances: usize, extra: &str) -> Config {
        let mut text = "[node]\nname = \"n1\"\n".to_owned();
        text.push_str(extra);
        for i in 0..instances {
            text.push_str(&format!(
                "\n[[instance]]\nname = \"i{i}\"\ninterface = \"eth0\"\ngroup = {}\npriority = 100\nvips = [\"10.0.0.{}/24\"]\nauth = \"none\"\n",
                i + 1,
                i + 10
            ));
        }
        from_toml(&text, std::path::Path::new("test.toml")).expect("a valid configuration")
    }

    #[test]
    fn instances_on_one_interface_share_an_advert_socket() {
        let one = Budget::of(&config(1, ""), 0);
        let eight = Budget::of(&config(8, ""), 0);
        assert_eq!(one.total(), BASE + TRANSIENT + 1 + 1 + 1 + 1);
        // Seven more timers, announcement and watch sockets, no more advert
        // sockets.
        assert_eq!(eight.total(), one.total() + 21);
        assert!(eight.to_string().contains("1 advert sockets"), "{eight}");
    }

    #[test]
    fn inherited_descriptors_count() {
        let fresh = Budget::of(&config(1, ""), 0);
        let inherited = Budget::of(&config(1, ""), 2);
        assert_eq!(inherited.total(), fresh.total() + 2);
        assert!(inherited
            .to_string()
            .contains("inherited from the parent: 2"));
        assert!(!fresh.to_string().contains("inherited"), "{fresh}");
        assert!(Budget::floor(0).total() < fresh.total());
    }

    #[test]
    fn the_metrics_endpoint_counts() {
        let plain = Budget::of(&config(1, ""), 0);
        let metrics = Budget::of(&config(1, "metrics_listen = \"127.0.0.1:9650\"\n"), 0);
        assert_eq!(metrics.total(), plain.total() + METRICS);
    }

    #[test]
    fn the_refusal_names_what_is_needed_the_limit_and_the_fix() {
        let budget = Budget::of(&config(8, ""), 0);
        let needed = budget.total();
        let e = FdLimitError {
            needed,
            limit: 20,
            budget,
            hard_note: String::new(),
        };
        let text = e.to_string();
        assert!(
            text.contains(&format!("needs {needed} file descriptors")),
            "{text}"
        );
        assert!(text.contains("is 20"), "{text}");
        assert!(text.contains(&format!("LimitNOFILE={needed}")), "{text}");
        assert!(text.contains("8 announcement sockets"), "{text}");
    }
}
