//! The `announce_*` keys of an instance: gratuitous ARPs and unsolicited
//! neighbour advertisements on becoming master.

use std::time::Duration;

use super::{fmt_duration, Validator};
use crate::config::raw::RawInstance;
use crate::config::{defaults, AnnounceConfig};

impl Validator<'_> {
    pub(super) fn announce(&mut self, who: &str, raw: &RawInstance) -> Option<AnnounceConfig> {
        let count = self.int_or(
            who,
            "announce_count",
            raw.announce_count.as_ref(),
            defaults::ANNOUNCE_COUNT,
            1..=100,
        );
        let interval = self.duration_in(
            who,
            "announce_interval",
            raw.announce_interval.as_ref(),
            defaults::ANNOUNCE_INTERVAL,
            Duration::from_millis(1),
            Duration::from_secs(10),
        );
        // "0s" turns the second burst off.
        let repeat_after = match &raw.announce_repeat_after {
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
        // "0s" turns the refresh off; otherwise 1s..=24h.
        let refresh = match &raw.announce_refresh {
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
        Some(AnnounceConfig {
            count: count?,
            interval: interval?,
            repeat_after: repeat_after?,
            refresh: refresh?,
            probe: raw.announce_probe.unwrap_or(defaults::ANNOUNCE_PROBE),
        })
    }
}
