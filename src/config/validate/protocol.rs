//! `protocol` and the `vrrp_*` keys: what an instance's adverts speak, and
//! the rules VRRP adds to the rest of the instance (it has no HMAC, backups
//! are silent, intervals have the version's units).

use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::raw::RawInstance;
use crate::config::types::{Protocol, VrrpChecksum, VrrpConfig, VrrpVersion};
use crate::config::Vip;

/// The longest VRRPv2 simple-text password: the 8 bytes of its auth data.
const MAX_AUTH_PASS: usize = 8;

impl Validator<'_> {
    /// `protocol` with its `vrrp_*` keys, read before the keys it changes
    /// the rules of (`auth`, the intervals, `priority`).
    pub(super) fn protocol(&mut self, who: &str, raw: &RawInstance) -> Option<Protocol> {
        let version = match raw
            .protocol
            .as_ref()
            .map(|p| (p.get_ref().as_str(), p.span()))
        {
            None | Some(("vipd", _)) => None,
            Some(("vrrp2", _)) => Some(VrrpVersion::V2),
            Some(("vrrp3", _)) => Some(VrrpVersion::V3),
            Some((other, span)) => {
                self.problem(
                    span,
                    format!("{who}: protocol {other:?} is not valid; valid: \"vipd\" (the default), \"vrrp2\" or \"vrrp3\""),
                );
                return None;
            }
        };
        let Some(version) = version else {
            let mut ok = true;
            for (key, value) in [
                ("vrrp_auth_pass", &raw.vrrp_auth_pass),
                ("vrrp_checksum", &raw.vrrp_checksum),
                ("vrrp_source", &raw.vrrp_source),
            ] {
                if let Some(value) = value {
                    self.problem(
                        value.span(),
                        format!("{who}: {key} is a VRRP setting, but the instance speaks vipd's protocol; valid: protocol = \"vrrp2\" or \"vrrp3\", or remove {key}"),
                    );
                    ok = false;
                }
            }
            return ok.then_some(Protocol::Vipd);
        };
        let auth_pass = self.vrrp_auth_pass(who, version, raw.vrrp_auth_pass.as_ref());
        let checksum = self.vrrp_checksum(who, version, raw.vrrp_checksum.as_ref());
        let source = self.vrrp_source(who, raw.vrrp_source.as_ref());
        let rules = self.vrrp_rules(who, version, raw);
        rules?;
        Some(Protocol::Vrrp(VrrpConfig {
            version,
            auth_pass: auth_pass?,
            checksum: checksum?,
            source: source?,
        }))
    }

    fn vrrp_auth_pass(
        &mut self,
        who: &str,
        version: VrrpVersion,
        raw: Option<&Spanned<String>>,
    ) -> Option<Option<[u8; 8]>> {
        let Some(raw) = raw else { return Some(None) };
        let text = raw.get_ref();
        if version == VrrpVersion::V3 {
            self.problem(
                raw.span(),
                format!("{who}: vrrp_auth_pass is VRRPv2's simple password; VRRPv3 (RFC 9568) has no authentication; valid: remove it, or protocol = \"vrrp2\""),
            );
            return None;
        }
        if text.is_empty() || text.len() > MAX_AUTH_PASS {
            self.problem(
                raw.span(),
                format!("{who}: vrrp_auth_pass is {} bytes; valid: 1..={MAX_AUTH_PASS} bytes (keepalived uses only the first {MAX_AUTH_PASS} of auth_pass)", text.len()),
            );
            return None;
        }
        let mut pass = [0u8; 8];
        pass[..text.len()].copy_from_slice(text.as_bytes());
        Some(Some(pass))
    }

    fn vrrp_checksum(
        &mut self,
        who: &str,
        version: VrrpVersion,
        raw: Option<&Spanned<String>>,
    ) -> Option<VrrpChecksum> {
        let Some(raw) = raw else {
            return Some(VrrpChecksum::default());
        };
        if version == VrrpVersion::V2 {
            self.problem(
                raw.span(),
                format!("{who}: vrrp_checksum chooses how a VRRPv3 IPv4 checksum is formed; VRRPv2 has one form; valid: remove it, or protocol = \"vrrp3\""),
            );
            return None;
        }
        match raw.get_ref().as_str() {
            "pseudo-header" => Some(VrrpChecksum::PseudoHeader),
            "message-only" => Some(VrrpChecksum::MessageOnly),
            other => {
                self.problem(
                    raw.span(),
                    format!("{who}: vrrp_checksum {other:?} is not valid; valid: \"pseudo-header\" (the default, keepalived's) or \"message-only\" (keepalived's checksum_as_v2)"),
                );
                None
            }
        }
    }

    fn vrrp_source(&mut self, who: &str, raw: Option<&Spanned<String>>) -> Option<Option<IpAddr>> {
        let Some(raw) = raw else { return Some(None) };
        match raw.get_ref().parse::<IpAddr>() {
            Ok(addr) if !addr.is_multicast() && !addr.is_unspecified() => Some(Some(addr)),
            _ => {
                self.problem(
                    raw.span(),
                    format!("{who}: vrrp_source {:?} is not a unicast IP address; valid: an address of the instance's interface, e.g. \"10.0.0.11\"", raw.get_ref()),
                );
                None
            }
        }
    }

    /// What VRRP changes in the rest of the instance's keys. `None` after a
    /// problem.
    fn vrrp_rules(&mut self, who: &str, version: VrrpVersion, raw: &RawInstance) -> Option<()> {
        let mut ok = true;
        let mut refuse = |v: &mut Self, span: Range<usize>, message: String| {
            v.problem(span, message);
            ok = false;
        };
        if let Some(file) = &raw.auth_key_file {
            refuse(self, file.span(), format!("{who}: auth_key_file signs vipd's adverts with HMAC, which VRRP cannot carry; valid: remove it (VRRP instances are unauthenticated, or use vrrp_auth_pass with vrrp2), or protocol = \"vipd\""));
        }
        if let Some(files) = &raw.auth_accept_key_files {
            refuse(self, files.span(), format!("{who}: auth_accept_key_files is for vipd's HMAC keys, which VRRP cannot carry; valid: remove it"));
        }
        for (key, span, why) in [
            (
                "multicast_group",
                raw.multicast_group.as_ref().map(Spanned::span),
                "VRRP's group is fixed (224.0.0.18, ff02::12)",
            ),
            (
                "port",
                raw.port.as_ref().map(Spanned::span),
                "VRRP is IP protocol 112, not UDP",
            ),
            (
                "backup_advert_interval",
                raw.backup_advert_interval.as_ref().map(Spanned::span),
                "VRRP backups do not advertise",
            ),
            (
                "takeover_margin",
                raw.takeover_margin.as_ref().map(Spanned::span),
                "VRRP backups wait the RFC's skew time",
            ),
        ] {
            if let Some(span) = span {
                refuse(self, span, format!("{who}: {key} does not apply with protocol = \"{}\": {why}; valid: remove it", version_name(version)));
            }
        }
        if let Some(hops) = &raw.max_hops {
            if *hops.get_ref() != 1 {
                refuse(self, hops.span(), format!("{who}: max_hops {} relaxes the TTL check, but VRRP requires TTL 255 (RFC 9568 §7.1); valid: 1, or remove it", hops.get_ref()));
            }
        }
        if let Some(announce) = &raw.announce {
            if announce.get_ref() == "route" {
                refuse(self, announce.span(), format!("{who}: announce = \"route\" needs vipd's authenticated adverts (a forged VRRP advert could move the route anywhere the fabric reaches); valid: announce = \"arp\", or protocol = \"vipd\""));
            }
        }
        if let Some(guard) = &raw.guard {
            if guard.get_ref().quorum == Some(true) {
                refuse(self, guard.span(), format!("{who}: the guard's quorum counts the peers heard, and VRRP backups are silent; valid: quorum = false, or protocol = \"vipd\""));
            }
        }
        if let Some(interval) = &raw.advert_interval {
            // A text that is no duration at all is reported by the timing rules.
            if let Ok(d) = humantime::parse_duration(&interval.get_ref().0) {
                let valid = match version {
                    VrrpVersion::V2 => d.subsec_nanos() == 0 && (1..=255).contains(&d.as_secs()),
                    VrrpVersion::V3 => {
                        d.as_nanos() % 10_000_000 == 0
                            && (Duration::from_millis(10)..=Duration::from_millis(40_950))
                                .contains(&d)
                    }
                };
                if !valid {
                    let range = match version {
                        VrrpVersion::V2 => "whole seconds, 1s..=255s (VRRPv2's 8-bit field)",
                        VrrpVersion::V3 => {
                            "whole centiseconds, 10ms..=40.95s (VRRPv3's 12-bit field)"
                        }
                    };
                    refuse(
                        self,
                        interval.span(),
                        format!(
                            "{who}: advert_interval {:?} cannot be said in {}; valid: {range}",
                            interval.get_ref().0,
                            version_name(version)
                        ),
                    );
                }
            }
        }
        ok.then_some(())
    }
}

impl Validator<'_> {
    /// One VRRP advert lists addresses of one family, and VRRPv2 knows only
    /// IPv4: the VIPs (and unicast peers) must fit. False after a problem.
    pub(super) fn vrrp_families(
        &mut self,
        who: &str,
        version: VrrpVersion,
        vips: &[Vip],
        spans: &[Range<usize>],
        peers: Option<&[IpAddr]>,
    ) -> bool {
        let Some(first) = vips.first() else {
            return true;
        };
        let ipv6 = first.addr.is_ipv6();
        for (vip, span) in vips.iter().zip(spans) {
            if version == VrrpVersion::V2 && vip.addr.is_ipv6() {
                self.problem(span.clone(), format!("{who}: VIP {vip} is IPv6, which VRRPv2 cannot carry; valid: protocol = \"vrrp3\" (one instance per address family)"));
                return false;
            }
            if vip.addr.is_ipv6() != ipv6 {
                self.problem(span.clone(), format!("{who}: VIP {vip} is of another address family than {first}; a VRRP advert lists addresses of one family; valid: one instance for the IPv4 VIPs and one for the IPv6 VIPs"));
                return false;
            }
        }
        if let Some(peer) = peers.into_iter().flatten().find(|p| p.is_ipv6() != ipv6) {
            self.problem(spans[0].clone(), format!("{who}: peer {peer} is of another address family than the VIPs; VRRP adverts travel in the VIPs' family; valid: peers of the VIPs' family"));
            return false;
        }
        true
    }
}

fn version_name(version: VrrpVersion) -> &'static str {
    match version {
        VrrpVersion::V2 => "vrrp2",
        VrrpVersion::V3 => "vrrp3",
    }
}
