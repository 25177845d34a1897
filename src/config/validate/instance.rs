//! `[[instance]]`: one instance's keys and timing, and the rules across instances
//! (unique names, one instance per interface and group, each VIP in one instance).
//! The instance's sub-tables and address lists have their own files.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::{fmt_duration, Validator};
use crate::config::diagnostics::Location;
use crate::config::raw::RawInstance;
use crate::config::types::{InstanceSources, Protocol, Sources};
use crate::config::{defaults, AfterCrash, InstanceConfig};
use crate::wire::Auth;

/// Byte spans needed for checks across instances.
struct InstanceSpans {
    name: Range<usize>,
    group: Range<usize>,
    vips: Vec<Range<usize>>,
    /// `election`, when etcd decides.
    election: Option<Range<usize>>,
}

/// An instance's timing keys, each `None` after a problem.
#[derive(Default)]
struct Timing {
    advert: Option<Duration>,
    backup: Option<Duration>,
    takeover_margin: Option<Duration>,
    handover_timeout: Option<Duration>,
}

impl Validator<'_> {
    /// Validates every `[[instance]]` and the rules across them; returns the valid
    /// ones, in file order, and records where their values are in `sources`.
    pub(super) fn instances(
        &mut self,
        raw: Vec<Spanned<RawInstance>>,
        sources: &mut Sources,
        node_name: Option<&str>,
        has_etcd: Option<bool>,
    ) -> Vec<InstanceConfig> {
        let mut instances = Vec::new();
        let mut names: HashMap<String, Location> = HashMap::new();
        let mut pairs: HashMap<(String, u8), String> = HashMap::new();
        let mut vip_owner: HashMap<IpAddr, String> = HashMap::new();
        for (n, raw_instance) in raw.into_iter().enumerate() {
            let Some((instance, src, spans)) = self.instance(n + 1, raw_instance, node_name) else {
                continue;
            };
            if let (Some(span), Some(has_etcd)) = (&spans.election, has_etcd) {
                let who = format!("instance {:?}", instance.name);
                self.store_needs_etcd(&who, span.clone(), has_etcd);
            }
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
        instances
    }

    /// Validates one `[[instance]]`; `n` is its 1-based position among instances.
    fn instance(
        &mut self,
        n: usize,
        raw: Spanned<RawInstance>,
        node_name: Option<&str>,
    ) -> Option<(InstanceConfig, InstanceSources, InstanceSpans)> {
        let table = raw.span();
        let mut raw = raw.into_inner();

        // The name first: every other message is labelled with it.
        let unnamed = format!("instance #{n}");
        let name = self.name(&unnamed, &table, raw.name.take());
        let who = match &name {
            Some((name, _)) => format!("instance {name:?}"),
            None => unnamed,
        };
        let who = who.as_str();

        let interface = self
            .required(
                who,
                &table,
                "interface",
                raw.interface.take(),
                "a Linux interface name such as \"eth0\"",
            )
            .and_then(|i| self.interface_name(who, i));
        let group = self
            .required(
                who,
                &table,
                "group",
                raw.group.as_ref(),
                "1..=255, the same on every peer",
            )
            .and_then(|g| Some((self.int_in::<u8>(who, "group", g, 1..=255)?, g.span())));
        let store = self.store_election(who, &mut raw, node_name);
        let uses_store = matches!(store, Some(Some(_)));
        let protocol = self.protocol(who, &raw);
        let vrrp = matches!(protocol, Some(Protocol::Vrrp(_)));
        // VRRP's 255 is the address owner's priority (RFC 9568 §5.2.4).
        let (max_priority, priority_valid) = if vrrp {
            (255, "1..=255 (255: the address owner)")
        } else {
            (254, "1..=254")
        };
        let priority = self
            .required(
                who,
                &table,
                "priority",
                raw.priority.as_ref(),
                priority_valid,
            )
            .and_then(|p| self.int_in::<u8>(who, "priority", p, 1..=max_priority));
        // These read `raw` as a whole, so they come before its lists and tables are
        // moved out below.
        let timing = self.timing(who, &raw);
        let announce = self.announce(who, &raw);
        let routing = self.routing(who, &mut raw);
        let after_crash_span = raw.after_crash.as_ref().map(Spanned::span);
        let after_crash = self.after_crash(who, raw.after_crash.take());
        let preempt_delay = self.duration_in(
            who,
            "preempt_delay",
            raw.preempt_delay.as_ref(),
            defaults::PREEMPT_DELAY,
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        let vips = self
            .required(
                who,
                &table,
                "vips",
                raw.vips,
                "a non-empty list such as [\"10.0.0.200/24\"]",
            )
            .and_then(|vips| self.vips(who, vips));
        // VRRP has no HMAC: the protocol's rules refused a key file.
        // Nothing reads adverts when etcd decides: no key is needed.
        let auth = if vrrp || (uses_store && raw.auth_key_file.is_none() && raw.auth.is_none()) {
            Some(Auth::None)
        } else {
            self.auth(who, &table, raw.auth_key_file, raw.auth)
        };
        let auth_accept = if vrrp {
            Some(Vec::new())
        } else {
            self.accept_keys(who, raw.auth_accept_key_files, auth.as_ref())
        };
        let peers = raw.peers.and_then(|p| self.peers(who, p));
        let unicast = peers.as_ref().is_some_and(|p| !p.is_empty());
        let multicast_group = self.multicast_group(who, raw.multicast_group, unicast);
        let port = self.int_or(who, "port", raw.port.as_ref(), defaults::PORT, 1..=65535);
        let routing_ok =
            self.routing_rules(who, &table, &routing, auth.as_ref(), unicast, vips.as_ref());
        let track_scripts = self.track_scripts(who, raw.track_script);
        let track_interfaces = self.track_interfaces(who, raw.track_interface);
        let track_files = self.track_files(who, raw.track_file);
        let notify = self.notify(who, raw.notify);
        let guard = match raw.guard {
            None => Some(None),
            Some(g) => self
                .guard(who, g, timing.advert, peers.as_deref())
                .map(Some),
        };

        if !routing_ok {
            return None;
        }
        if let (Some(Protocol::Vrrp(v)), Some((vips, spans))) = (&protocol, &vips) {
            if !self.vrrp_families(who, v.version, vips, spans, peers.as_deref()) {
                return None;
            }
        }
        if let (Some(AfterCrash::Resume), Some(Some(_)), Some(span)) =
            (after_crash, &routing.route, &after_crash_span)
        {
            self.problem(
                span.clone(),
                format!(
                    "{who}: after_crash \"resume\" needs announce = \"arp\"; routed mode always hands over after a crash"
                ),
            );
            return None;
        }
        if let (Some(AfterCrash::Resume), true, Some(span)) =
            (after_crash, uses_store, &after_crash_span)
        {
            self.problem(
                span.clone(),
                format!(
                    "{who}: after_crash \"resume\" keeps the VIPs through a restart, but with etcd deciding only the lease may: the clean-up releases them and the lease; valid: \"handover\" or leave it out"
                ),
            );
            return None;
        }
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
            advert_interval: timing.advert?,
            backup_advert_interval: timing.backup?,
            takeover_margin: timing.takeover_margin?,
            handover_timeout: timing.handover_timeout?,
            preempt: raw.preempt.unwrap_or(defaults::PREEMPT),
            preempt_delay: preempt_delay?,
            vips,
            auth: auth?,
            auth_accept: auth_accept?,
            protocol: protocol?,
            peers: peers.unwrap_or_default(),
            multicast_group: multicast_group?,
            port: port?,
            announce: announce?,
            route: routing.route?,
            max_hops: routing.max_hops?,
            track_scripts: track_scripts?,
            track_interfaces: track_interfaces?,
            track_files: track_files?,
            notify: notify?,
            guard: guard?,
            sync_group: None,
            after_crash: after_crash?,
            store: None,
        };
        let (store, election_span) = match store? {
            Some((store, span)) => (Some(store), Some(span)),
            None => (None, None),
        };
        let instance = InstanceConfig { store, ..instance };
        let spans = InstanceSpans {
            name: name_span,
            group: group_span,
            vips: vip_spans,
            election: election_span,
        };
        Some((instance, sources, spans))
    }

    /// `after_crash`, default "handover".
    fn after_crash(&mut self, who: &str, raw: Option<Spanned<String>>) -> Option<AfterCrash> {
        let Some(raw) = raw else {
            return Some(AfterCrash::default());
        };
        match raw.get_ref().as_str() {
            "handover" => Some(AfterCrash::Handover),
            "resume" => Some(AfterCrash::Resume),
            other => {
                self.problem(
                    raw.span(),
                    format!(
                        "{who}: after_crash {other:?} is not valid; valid: \"handover\" or \"resume\""
                    ),
                );
                None
            }
        }
    }

    /// `advert_interval` and the keys whose defaults and limits follow from it.
    fn timing(&mut self, who: &str, raw: &RawInstance) -> Timing {
        let Some(advert) = self.advert_interval_in(
            who,
            "advert_interval",
            raw.advert_interval.as_ref(),
            defaults::ADVERT_INTERVAL,
            defaults::MIN_ADVERT_INTERVAL,
            defaults::MAX_ADVERT_INTERVAL,
        ) else {
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
            return Timing::default();
        };
        let backup = self.backup_advert_interval(who, raw, advert);
        let takeover_margin = self.duration_in(
            who,
            "takeover_margin",
            raw.takeover_margin.as_ref(),
            defaults::TAKEOVER_MARGIN,
            Duration::from_micros(100),
            advert / 2,
        );
        let handover_timeout = self.duration_in(
            who,
            "handover_timeout",
            raw.handover_timeout.as_ref(),
            (advert * 3).min(defaults::MAX_HANDOVER_TIMEOUT),
            advert,
            defaults::MAX_HANDOVER_TIMEOUT,
        );
        Timing {
            advert: Some(advert),
            backup,
            takeover_margin,
            handover_timeout,
        }
    }

    /// `backup_advert_interval`, given a valid `advert_interval`.
    fn backup_advert_interval(
        &mut self,
        who: &str,
        raw: &RawInstance,
        advert: Duration,
    ) -> Option<Duration> {
        // The guard's quorum counts peers heard within two intervals, so backups
        // must advertise as often as the master does.
        let quorum = raw
            .guard
            .as_ref()
            .is_some_and(|g| g.get_ref().quorum == Some(true));
        let default = if quorum {
            advert
        } else {
            advert
                .max(Duration::from_secs(1))
                .min(defaults::MAX_ADVERT_INTERVAL)
        };
        let written = raw.backup_advert_interval.as_ref();
        let backup = self.advert_interval_in(
            who,
            "backup_advert_interval",
            written,
            default,
            advert,
            defaults::MAX_ADVERT_INTERVAL,
        )?;
        match written {
            Some(written) if quorum && backup != advert => {
                self.problem(
                    written.span(),
                    format!("{who}: backup_advert_interval {} differs from advert_interval {} while guard.quorum is on; a majority must be heard within two intervals; valid: {} or leave it out", fmt_duration(backup), fmt_duration(advert), fmt_duration(advert)),
                );
                None
            }
            _ => Some(backup),
        }
    }
}
