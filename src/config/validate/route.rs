//! `announce`, `[instance.route]` and `max_hops`: how the master announces its
//! VIPs (gratuitous ARP / NA, or a host route for a routing daemon) and how far
//! adverts may travel.
//!
//! Routed mode announces into a routing fabric, where a forged advert could pull
//! a VIP's traffic anywhere the fabric reaches, so it requires HMAC
//! authentication; heartbeats across routers (`max_hops` above 1) also need
//! unicast `peers`, since multicast does not cross routers and the TTL check is
//! then relaxed only where the operator said so.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::raw::{RawInstance, RawRoute};
use crate::config::{defaults, RouteConfig, Vip};
use crate::wire::Auth;

/// What `announce` may be.
const ANNOUNCE_RULE: &str = "\"arp\" (gratuitous ARP / unsolicited NA, the default) or \"route\" (a host route for FRR or BIRD to announce)";

/// `announce`, `route` and `max_hops` as written, each `None` after a problem.
pub(super) struct Routing {
    /// `Some(None)`: ARP/NA mode.
    pub(super) route: Option<Option<RouteConfig>>,
    pub(super) max_hops: Option<u8>,
    announce_span: Option<Range<usize>>,
    max_hops_span: Option<Range<usize>>,
}

impl Validator<'_> {
    /// Reads `announce`, `[instance.route]` and `max_hops` on their own; the rules
    /// that involve other keys are in [`Validator::routing_rules`].
    pub(super) fn routing(&mut self, who: &str, raw: &mut RawInstance) -> Routing {
        let announce_span = raw.announce.as_ref().map(Spanned::span);
        let routed = match raw.announce.take().map(Spanned::into_inner).as_deref() {
            None | Some("arp") => Some(false),
            Some("route") => Some(true),
            Some(other) => {
                self.problem(
                    announce_span.clone().unwrap_or(0..0),
                    format!("{who}: announce {other:?} is not valid; valid: {ANNOUNCE_RULE}"),
                );
                None
            }
        };
        let route = match (routed, raw.route.take()) {
            (None, _) => None,
            (Some(false), None) => Some(None),
            (Some(false), Some(table)) => {
                self.problem(
                    table.span(),
                    format!("{who}: [instance.route] is set but announce is not \"route\"; valid: announce = \"route\" with it, or remove the table"),
                );
                None
            }
            (Some(true), table) => {
                let table = table.map(Spanned::into_inner).unwrap_or(RawRoute {
                    table: None,
                    metric: None,
                    withdraw_delay: None,
                    ready_after: None,
                });
                self.route(who, &table).map(Some)
            }
        };
        let max_hops_span = raw.max_hops.as_ref().map(Spanned::span);
        let max_hops = self.int_or(
            who,
            "max_hops",
            raw.max_hops.as_ref(),
            defaults::MAX_HOPS,
            1..=255,
        );
        Routing {
            route,
            max_hops,
            announce_span,
            max_hops_span,
        }
    }

    fn route(&mut self, who: &str, raw: &RawRoute) -> Option<RouteConfig> {
        let table = self.int_or(
            who,
            "route.table",
            raw.table.as_ref(),
            defaults::ROUTE_TABLE,
            1..=252,
        );
        let metric = self.int_or(
            who,
            "route.metric",
            raw.metric.as_ref(),
            defaults::ROUTE_METRIC,
            0..=i64::from(u32::MAX),
        );
        let withdraw_delay = self.duration_in(
            who,
            "route.withdraw_delay",
            raw.withdraw_delay.as_ref(),
            defaults::ROUTE_WITHDRAW_DELAY,
            Duration::ZERO,
            defaults::MAX_ROUTE_WITHDRAW_DELAY,
        );
        let ready_after = self.duration_in(
            who,
            "route.ready_after",
            raw.ready_after.as_ref(),
            defaults::ROUTE_READY_AFTER,
            Duration::ZERO,
            defaults::MAX_ROUTE_READY_AFTER,
        );
        Some(RouteConfig {
            table: table?,
            metric: metric?,
            withdraw_delay: withdraw_delay?,
            ready_after: ready_after?,
        })
    }

    /// The rules across keys: routed mode needs HMAC auth and host-route VIPs;
    /// `max_hops` above 1 needs unicast peers and HMAC auth. `table` is the
    /// instance table's span (for a problem with no value of its own to point at).
    pub(super) fn routing_rules(
        &mut self,
        who: &str,
        table: &Range<usize>,
        routing: &Routing,
        auth: Option<&Auth>,
        unicast: bool,
        vips: Option<&(Vec<Vip>, Vec<Range<usize>>)>,
    ) -> bool {
        let mut ok = true;
        let hmac = matches!(auth, Some(Auth::HmacSha256(_)));
        if let Some(Some(_)) = &routing.route {
            if auth.is_some() && !hmac {
                self.problem(
                    routing.announce_span.clone().unwrap_or(table.clone()),
                    format!("{who}: announce = \"route\" needs authentication: a forged advert could move the VIP's route anywhere the fabric reaches; valid: auth_key_file = \"...\" instead of auth = \"none\""),
                );
                ok = false;
            }
            for (vip, span) in vips.into_iter().flat_map(|(v, s)| v.iter().zip(s)) {
                let host = if vip.addr.is_ipv4() { 32 } else { 128 };
                if vip.prefix_len != host {
                    self.problem(
                        span.clone(),
                        format!("{who}: VIP {vip} is announced as a host route in route mode; valid: {}/{host}", vip.addr),
                    );
                    ok = false;
                }
            }
        }
        if let (Some(hops), Some(span)) = (routing.max_hops, &routing.max_hops_span) {
            if hops > 1 && !unicast {
                self.problem(
                    span.clone(),
                    format!("{who}: max_hops {hops} relaxes the TTL check, but adverts go to a multicast group, which does not cross routers; valid: 1, or list the other nodes in peers"),
                );
                ok = false;
            }
            if hops > 1 && auth.is_some() && !hmac {
                self.problem(
                    span.clone(),
                    format!("{who}: max_hops {hops} accepts adverts from beyond the link, which only authentication can vouch for; valid: 1, or set auth_key_file instead of auth = \"none\""),
                );
                ok = false;
            }
        }
        ok
    }
}
