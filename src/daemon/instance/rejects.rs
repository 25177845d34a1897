//! Rejected adverts in the log: one summary line per reason per period, with
//! counts and a few sample sources, whatever the number of sources. A junk
//! flood from spoofed addresses must not turn into a log flood (and a disk
//! full of it), yet the first rejection after a quiet spell is logged at once.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::wire::WireError;

/// How many sources a summary names.
const SAMPLE_SOURCES: usize = 3;
/// Distinct sources counted per period; more are reported as "at least".
const COUNTED_SOURCES: usize = 1024;

/// Why an advert was rejected, as the log and counters name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RejectReason {
    /// Framing, version, group or field errors: not a valid advert.
    Malformed,
    /// The MAC did not verify, or the auth type differs: wrong key or forgery.
    Authentication,
    /// Older than what was accepted from that node (boot id, sequence).
    Replay,
}

impl RejectReason {
    pub(crate) fn of(error: &WireError) -> Self {
        match error {
            WireError::BadMac | WireError::AuthTypeMismatch { .. } => Self::Authentication,
            WireError::Replay { .. } => Self::Replay,
            _ => Self::Malformed,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Authentication => "authentication failed",
            Self::Replay => "replayed",
        }
    }
}

/// What was rejected for one reason since its last summary line.
#[derive(Default)]
struct Pending {
    count: u64,
    sources: HashSet<IpAddr>,
    samples: Vec<IpAddr>,
    last_error: String,
    logged_at: Option<Instant>,
}

/// The rejections of one instance, summarised per reason every `period`.
pub(crate) struct RejectLog {
    period: Duration,
    reasons: BTreeMap<RejectReason, Pending>,
}

/// One summary line, as [`RejectLog::record`] returns it to be logged.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) reason: &'static str,
    pub(crate) count: u64,
    /// Distinct sources (a lower bound when `sources_capped`).
    pub(crate) sources: usize,
    pub(crate) sources_capped: bool,
    pub(crate) samples: Vec<IpAddr>,
    pub(crate) last_error: String,
}

impl RejectLog {
    pub(crate) fn new(period: Duration) -> Self {
        Self {
            period,
            reasons: BTreeMap::new(),
        }
    }

    /// Counts one rejection; returns the summary to log when one is due (the
    /// first rejection of a reason, then at most one per `period`).
    pub(crate) fn record(
        &mut self,
        now: Instant,
        source: IpAddr,
        error: &WireError,
    ) -> Option<Summary> {
        let reason = RejectReason::of(error);
        let p = self.reasons.entry(reason).or_default();
        p.count += 1;
        if p.sources.len() < COUNTED_SOURCES {
            p.sources.insert(source);
        }
        if p.samples.len() < SAMPLE_SOURCES && !p.samples.contains(&source) {
            p.samples.push(source);
        }
        let due = p
            .logged_at
            .is_none_or(|at| now.saturating_duration_since(at) >= self.period);
        if !due {
            return None;
        }
        p.last_error = error.to_string();
        let summary = Summary {
            reason: reason.text(),
            count: p.count,
            sources: p.sources.len(),
            sources_capped: p.sources.len() >= COUNTED_SOURCES,
            samples: std::mem::take(&mut p.samples),
            last_error: std::mem::take(&mut p.last_error),
        };
        p.count = 0;
        p.sources.clear();
        p.logged_at = Some(now);
        Some(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
    }

    #[test]
    fn a_spoofed_flood_gives_one_line_per_reason_per_period() {
        let mut log = RejectLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let mut lines = Vec::new();
        // 50,000 bad MACs from 50,000 sources over 5 s, and a few replays.
        for i in 0..50_000u32 {
            let now = t0 + Duration::from_micros(u64::from(i) * 100);
            lines.extend(log.record(now, ip(i), &WireError::BadMac));
            if i % 10_000 == 0 {
                lines.extend(log.record(
                    now,
                    ip(7),
                    &WireError::Replay {
                        node_id: 1,
                        boot_id: 1,
                        sequence: 1,
                        last_boot_id: 1,
                        last_sequence: 2,
                    },
                ));
            }
        }
        assert_eq!(lines.len(), 2, "the first of each reason: {lines:?}");
        // The next period's line carries the counts, capped sources and samples.
        let next = log
            .record(t0 + Duration::from_secs(10), ip(1), &WireError::BadMac)
            .expect("a summary after the period");
        assert_eq!(next.count, 50_000);
        assert!(next.sources_capped && next.sources == COUNTED_SOURCES);
        assert_eq!(next.samples.len(), SAMPLE_SOURCES);
        assert_eq!(next.reason, "authentication failed");
    }
}
