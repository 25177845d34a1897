//! `[instance.guard]`: the opt-in split-brain guard's witness, method, timing and
//! quorum.

use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::raw::RawGuard;
use crate::config::{defaults, GuardConfig, GuardMethod, Witness};

/// Bounds on the guard's `interval` and `timeout`.
const CHECK_TIME_MIN: Duration = Duration::from_millis(100);
const CHECK_TIME_MAX: Duration = Duration::from_secs(60);

impl Validator<'_> {
    /// The instance's guard; `advert_interval` (if valid) sets the default check
    /// interval, unicast `peers` the default group size.
    pub(super) fn guard(
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
            .required(
                &label,
                &span,
                "witness",
                raw.witness,
                "\"gateway\" or an IP address such as \"10.0.0.1\"",
            )
            .and_then(|w| self.witness(&label, w));
        let method = self.guard_method(&label, raw.method, witness.as_ref());
        let default_interval = advert_interval
            .unwrap_or(defaults::ADVERT_INTERVAL)
            .max(CHECK_TIME_MIN);
        let interval = self.duration_in(
            &label,
            "interval",
            raw.interval.as_ref(),
            default_interval,
            CHECK_TIME_MIN,
            CHECK_TIME_MAX,
        );
        let timeout = self.duration_in(
            &label,
            "timeout",
            raw.timeout.as_ref(),
            interval.unwrap_or(default_interval),
            CHECK_TIME_MIN,
            CHECK_TIME_MAX,
        );
        let fall = self.int_or(
            &label,
            "fall",
            raw.fall.as_ref(),
            defaults::GUARD_FALL,
            1..=100,
        );
        let rise = self.int_or(
            &label,
            "rise",
            raw.rise.as_ref(),
            defaults::GUARD_RISE,
            1..=100,
        );
        let quorum = raw.quorum.unwrap_or(false);
        let peers_total = self.peers_total(&label, &span, raw.peers_total.as_ref(), quorum, peers);
        Some(GuardConfig {
            witness: witness?,
            method: method?,
            interval: interval?,
            timeout: timeout?,
            fall: fall?,
            rise: rise?,
            quorum,
            peers_total: peers_total?,
        })
    }

    /// `witness`: `"gateway"` or a unicast address.
    fn witness(&mut self, label: &str, raw: Spanned<String>) -> Option<Witness> {
        let span = raw.span();
        let text = raw.into_inner();
        if text == "gateway" {
            return Some(Witness::Gateway);
        }
        match text.parse::<IpAddr>() {
            Ok(a) if !a.is_unspecified() && !a.is_multicast() => Some(Witness::Address(a)),
            _ => {
                self.problem(span, format!("{label}: witness {text:?} is not valid; valid: \"gateway\" (the IPv4 default gateway) or a unicast IP address such as \"10.0.0.1\""));
                None
            }
        }
    }

    /// `method`, default icmp; arp cannot reach an IPv6 witness.
    fn guard_method(
        &mut self,
        label: &str,
        raw: Option<Spanned<String>>,
        witness: Option<&Witness>,
    ) -> Option<GuardMethod> {
        let Some(raw) = raw else {
            return Some(GuardMethod::Icmp);
        };
        match raw.get_ref().as_str() {
            "icmp" => Some(GuardMethod::Icmp),
            "arp" if matches!(witness, Some(Witness::Address(IpAddr::V6(_)))) => {
                self.problem(
                    raw.span(),
                    format!(
                        "{label}: method \"arp\" cannot check the IPv6 witness; valid: \"icmp\""
                    ),
                );
                None
            }
            "arp" => Some(GuardMethod::Arp),
            other => {
                self.problem(
                    raw.span(),
                    format!("{label}: method {other:?} is not valid; valid: \"icmp\" or \"arp\""),
                );
                None
            }
        }
    }

    /// `peers_total`: `Some(None)` without quorum when left out; with quorum it
    /// defaults to the unicast peers plus this node, and is required with
    /// multicast.
    fn peers_total(
        &mut self,
        label: &str,
        table_span: &Range<usize>,
        raw: Option<&Spanned<i64>>,
        quorum: bool,
        peers: Option<&[IpAddr]>,
    ) -> Option<Option<u32>> {
        match raw {
            Some(p) => self
                .int_in::<u32>(label, "peers_total", p, 3..=255)
                .map(Some),
            None if quorum => match peers {
                // No file that fits in memory lists u32::MAX peers.
                Some(list) if list.len() >= 2 => Some(Some(list.len() as u32 + 1)),
                _ => {
                    self.problem(table_span.clone(), format!("{label}: quorum = true needs the group's size; valid: peers_total = 3..=255 (this node included), or unicast peers listing at least 2 others"));
                    None
                }
            },
            None => Some(None),
        }
    }
}
