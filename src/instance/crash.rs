//! After a crash: what happens to a master's VIPs when its daemon dies and the
//! host lives. Pure rules, read by `vipd cleanup` (the unit's `ExecStopPost`,
//! which runs after every exit of the daemon) and by the restarted daemon; the
//! files they keep are the state directory's (`daemon::state`).
//!
//! # Rules
//!
//! 1. **A dead master's release is announced.** Unless rule 2 keeps them, the
//!    clean-up sends the advert the daemon would have sent on a clean stop
//!    ([`release_body`]: priority 0, master and shutting-down flags, signed
//!    with the instance's key under a new boot id) before it removes the
//!    VIPs, [`RELEASE_LINGER`] later. Why: without it the backups wait out
//!    the whole master-down interval while clients' ARP caches still point at
//!    this host, which no longer answers for the VIPs; TCP clients then wait
//!    for a SYN retry (about a second). With it the best backup takes over at
//!    once, as after a clean stop, and the linger lets its claim and
//!    gratuitous ARP land before this host stops answering.
//! 2. **A crash that systemd restarts may keep the VIPs** (`after_crash =
//!    "resume"`): when the unit will restart the daemon ([`ExitKind::Crash`]
//!    with `restart_follows`), the clean-up leaves the instance's VIPs in
//!    place and records that it did; the restarted daemon resumes as master
//!    (the instance core's rule "Resume after a crash") if it comes up within
//!    [`resume_window`] of the record, else it removes them as stale and
//!    starts as backup. Why: a database pair wants no failover at all for a
//!    daemon crash on a healthy primary; the peers still follow this node,
//!    so a restart within their master-down interval moves nothing.
//! 3. **Resume only while it cannot go wrong.** Not after a watchdog abort
//!    (the daemon hung for `WatchdogSec`, long enough for the peers to have
//!    taken over), a stop that timed out, or an exit systemd does not
//!    restart; not when the previous clean-up's record is still there (the
//!    restart it counted on never came up); and not after more than
//!    [`RESUME_BUDGET`] crashes within [`CRASH_WINDOW`]. Then rule 1 applies.
//! 4. **A node that keeps crashing does not preempt** ([`preemption_hold`]):
//!    after [`HOLD_AFTER_CRASHES`] crashes within [`CRASH_WINDOW`], the
//!    restarted daemon does not preempt until the window has passed since
//!    the last one. Why: with rule 1 each crash hands the VIPs over; without
//!    the hold, a crash-looping node of higher priority would take them back
//!    after every restart and hand them over again at the next crash.
//!
//! What it may not touch: anything but values; the caller reads the
//! environment, the clock and the files.

use std::time::Duration;

use crate::config::{AfterCrash, InstanceConfig};
use crate::wire::{self, AdvertBody, Flags};

/// How far back crashes count for [`RESUME_BUDGET`] and [`HOLD_AFTER_CRASHES`].
pub const CRASH_WINDOW: Duration = Duration::from_secs(600);

/// At most this many crashes within [`CRASH_WINDOW`], the current one
/// included, may resume; the next ones hand over.
pub const RESUME_BUDGET: usize = 3;

/// From this many crashes within [`CRASH_WINDOW`] the restarted daemon holds
/// preemption back ([`preemption_hold`]).
pub const HOLD_AFTER_CRASHES: usize = 2;

/// How long the clean-up keeps a dead master's VIPs after announcing their
/// release: the successor's claim and gratuitous ARP land meanwhile (the
/// election's own step-down linger).
pub const RELEASE_LINGER: Duration = crate::election::STEP_DOWN_LINGER;

/// How the daemon's process ended, as systemd tells `ExecStopPost` in
/// `$SERVICE_RESULT` (see `systemd.exec(5)`, "Environment variables set or
/// propagated by the service manager").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// Not run by systemd after an exit (`vipd cleanup` by hand): nothing is
    /// known about a restart.
    Unknown,
    /// `success`: the daemon stopped cleanly and released everything itself.
    Clean,
    /// Anything else: the daemon crashed, was killed, or hung.
    Crash {
        /// systemd restarts the unit after it (`Restart=on-failure`), and the
        /// daemon was running normally until it died.
        restart_follows: bool,
    },
}

impl ExitKind {
    /// From `$SERVICE_RESULT` (`None`: unset).
    pub fn from_service_result(result: Option<&str>) -> Self {
        match result {
            None | Some("") => Self::Unknown,
            Some("success") => Self::Clean,
            // Killed by a signal (SIGKILL, SIGSEGV...), a core dump, a non-zero
            // exit, the OOM killer: Restart=on-failure restarts after each.
            Some("signal" | "core-dump" | "exit-code" | "oom-kill") => Self::Crash {
                restart_follows: true,
            },
            // "watchdog" (hung for WatchdogSec), "timeout", "start-limit-hit",
            // "resources" and whatever systemd adds later.
            Some(_) => Self::Crash {
                restart_follows: false,
            },
        }
    }

    /// Whether this exit counts as a crash for the node's crash record.
    pub fn is_crash(self) -> bool {
        matches!(self, Self::Crash { .. })
    }
}

/// What the clean-up does with one instance's VIPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashAction {
    /// Announce the release, then remove them (rule 1).
    Handover,
    /// Leave them for the restarted daemon (rule 2).
    Resume,
}

/// Rules 1 to 3 for one instance: `crashes_in_window` counts this crash too;
/// `resume_pending`: the previous clean-up's record of VIPs kept for a restart
/// was never taken up.
pub fn after_exit(
    policy: AfterCrash,
    exit: ExitKind,
    crashes_in_window: usize,
    resume_pending: bool,
) -> CrashAction {
    match (policy, exit) {
        (
            AfterCrash::Resume,
            ExitKind::Crash {
                restart_follows: true,
            },
        ) if !resume_pending && crashes_in_window <= RESUME_BUDGET => CrashAction::Resume,
        _ => CrashAction::Handover,
    }
}

/// How long after the clean-up a restarted daemon may still resume (rule 2):
/// two advert intervals. The peers' master-down interval is three intervals
/// plus their skew, counted from the dead daemon's last advert, which went out
/// up to one interval before the crash; the clean-up itself runs right after
/// the crash.
pub fn resume_window(cfg: &InstanceConfig) -> Duration {
    cfg.advert_interval * 2
}

/// Rule 4: how long from now the restarted daemon must not preempt, given
/// the ages of the node's recorded crashes (time since each; all within
/// [`CRASH_WINDOW`] are counted).
pub fn preemption_hold(crash_ages: &[Duration]) -> Option<Duration> {
    let recent: Vec<Duration> = crash_ages
        .iter()
        .copied()
        .filter(|age| *age < CRASH_WINDOW)
        .collect();
    if recent.len() < HOLD_AFTER_CRASHES {
        return None;
    }
    let youngest = recent.iter().min().copied().unwrap_or_default();
    Some(CRASH_WINDOW - youngest)
}

/// The advert announcing a dead master's release (rule 1): what the election
/// sends when a master stops with nobody to hand over to (priority 0, the
/// master flag, so the backups following it take over at once), with the
/// shutting-down flag, so no peer counts the dead node as alive.
pub fn release_body(cfg: &InstanceConfig, node_id: u64, node_name: &str) -> AdvertBody {
    let mut flags = Flags::default();
    flags.set(Flags::MASTER, true);
    flags.set(Flags::SHUTTING_DOWN, true);
    AdvertBody {
        group: cfg.group,
        priority: 0,
        interval_cs: wire::interval_to_cs(cfg.advert_interval).unwrap_or(100),
        flags,
        node_id,
        promote_epoch: 0,
        vip_digest: wire::vip_digest(cfg.vips.iter().map(|v| (v.addr, v.prefix_len))),
        node_name: node_name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KILLED: ExitKind = ExitKind::Crash {
        restart_follows: true,
    };

    #[test]
    fn systemd_results_are_read_as_the_unit_restarts_them() {
        assert_eq!(ExitKind::from_service_result(None), ExitKind::Unknown);
        assert_eq!(
            ExitKind::from_service_result(Some("success")),
            ExitKind::Clean
        );
        for restarted in ["signal", "core-dump", "exit-code", "oom-kill"] {
            assert_eq!(ExitKind::from_service_result(Some(restarted)), KILLED);
        }
        for not in ["watchdog", "timeout", "start-limit-hit", "resources", "new"] {
            assert_eq!(
                ExitKind::from_service_result(Some(not)),
                ExitKind::Crash {
                    restart_follows: false
                },
                "{not}"
            );
        }
    }

    #[test]
    fn only_a_restarted_crash_within_the_budget_resumes() {
        use AfterCrash::{Handover, Resume};
        assert_eq!(after_exit(Resume, KILLED, 1, false), CrashAction::Resume);
        assert_eq!(
            after_exit(Resume, KILLED, RESUME_BUDGET, false),
            CrashAction::Resume
        );
        assert_eq!(
            after_exit(Resume, KILLED, RESUME_BUDGET + 1, false),
            CrashAction::Handover
        );
        assert_eq!(after_exit(Resume, KILLED, 1, true), CrashAction::Handover);
        assert_eq!(
            after_exit(Handover, KILLED, 1, false),
            CrashAction::Handover
        );
        for exit in [
            ExitKind::Unknown,
            ExitKind::Clean,
            ExitKind::Crash {
                restart_follows: false,
            },
        ] {
            assert_eq!(after_exit(Resume, exit, 1, false), CrashAction::Handover);
        }
    }

    #[test]
    fn a_second_crash_in_the_window_holds_preemption_until_it_ends() {
        let s = Duration::from_secs;
        assert_eq!(preemption_hold(&[]), None);
        assert_eq!(preemption_hold(&[s(5)]), None);
        assert_eq!(preemption_hold(&[s(700), s(5)]), None);
        assert_eq!(preemption_hold(&[s(100), s(5)]), Some(CRASH_WINDOW - s(5)));
    }
}
