//! The addresses of an instance: `vips`, unicast `peers` and `multicast_group`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;

use toml::Spanned;

use super::Validator;
use crate::config::{defaults, Vip};

impl Validator<'_> {
    pub(super) fn vips(
        &mut self,
        who: &str,
        raw: Spanned<Vec<Spanned<String>>>,
    ) -> Option<(Vec<Vip>, Vec<Range<usize>>)> {
        let list_span = raw.span();
        let raw = raw.into_inner();
        if raw.is_empty() {
            self.problem(
                list_span,
                format!(
                    "{who}: vips is empty; valid: 1..={} addresses such as [\"10.0.0.200/24\"]",
                    defaults::MAX_VIPS
                ),
            );
            return None;
        }
        if raw.len() > defaults::MAX_VIPS {
            self.problem(
                list_span,
                format!(
                    "{who}: vips has {} entries; valid: 1..={}",
                    raw.len(),
                    defaults::MAX_VIPS
                ),
            );
            return None;
        }
        let mut ok = true;
        let mut vips = Vec::with_capacity(raw.len());
        let mut spans = Vec::with_capacity(raw.len());
        let mut seen: HashMap<IpAddr, String> = HashMap::new();
        for entry in raw {
            let span = entry.span();
            let text = entry.into_inner();
            match text.parse::<Vip>() {
                Ok(vip) => {
                    if let Some(first) = seen.get(&vip.addr) {
                        self.problem(
                            span,
                            format!("{who}: VIP {text:?} duplicates {first:?}; valid: each address once"),
                        );
                        ok = false;
                    } else {
                        seen.insert(vip.addr, text);
                        vips.push(vip);
                        spans.push(span);
                    }
                }
                Err(e) => {
                    self.problem(span, format!("{who}: VIP {e}"));
                    ok = false;
                }
            }
        }
        ok.then_some((vips, spans))
    }

    pub(super) fn peers(
        &mut self,
        who: &str,
        raw: Spanned<Vec<Spanned<String>>>,
    ) -> Option<Vec<IpAddr>> {
        let list_span = raw.span();
        let raw = raw.into_inner();
        if raw.is_empty() {
            self.problem(
                list_span,
                format!("{who}: peers is empty; an empty list never falls back to multicast; valid: the peers' addresses, e.g. [\"10.0.0.12\", \"10.0.0.13\"], or remove the key to use multicast"),
            );
            return None;
        }
        let mut ok = true;
        let mut peers: Vec<IpAddr> = Vec::with_capacity(raw.len());
        for entry in raw {
            match self.peer(who, entry, &peers) {
                Some(addr) => peers.push(addr),
                None => ok = false,
            }
        }
        ok.then_some(peers)
    }

    /// One entry of `peers`: a unicast address, not listed before (`earlier`) and
    /// of the same family as the first.
    fn peer(&mut self, who: &str, raw: Spanned<String>, earlier: &[IpAddr]) -> Option<IpAddr> {
        let span = raw.span();
        let text = raw.into_inner();
        let Ok(addr) = text.parse::<IpAddr>() else {
            self.problem(
                span,
                format!("{who}: peer {text:?} is not an IP address; valid: a unicast address such as \"10.0.0.12\" or \"2001:db8::12\""),
            );
            return None;
        };
        if addr.is_unspecified() || addr.is_multicast() {
            let what = if addr.is_multicast() {
                "a multicast"
            } else {
                "the unspecified"
            };
            self.problem(
                span,
                format!("{who}: peer {addr} is {what} address; valid: a unicast address of a peer (use multicast_group for multicast)"),
            );
            return None;
        }
        if earlier.contains(&addr) {
            self.problem(
                span,
                format!("{who}: peer {addr} is listed twice; valid: each peer once"),
            );
            return None;
        }
        if let Some(first) = earlier.first() {
            if first.is_ipv4() != addr.is_ipv4() {
                self.problem(
                    span,
                    format!("{who}: peer {addr} is not the same address family as peer {first}; valid: all peers IPv4 or all IPv6"),
                );
                return None;
            }
        }
        Some(addr)
    }

    /// `multicast_group`, or the default; an error next to unicast `peers`.
    pub(super) fn multicast_group(
        &mut self,
        who: &str,
        raw: Option<Spanned<String>>,
        unicast: bool,
    ) -> Option<IpAddr> {
        let Some(raw) = raw else {
            return Some(defaults::MULTICAST_GROUP);
        };
        let span = raw.span();
        let text = raw.into_inner();
        match text.parse::<IpAddr>() {
            Ok(addr) if addr.is_multicast() && unicast => {
                self.problem(
                    span,
                    format!("{who}: multicast_group and peers are both set, so it is unclear whether adverts are multicast or unicast; valid: one of them"),
                );
                None
            }
            Ok(addr) if addr.is_multicast() => Some(addr),
            Ok(addr) => {
                self.problem(
                    span,
                    format!("{who}: multicast_group {addr} is not a multicast address; valid: 224.0.0.0/4 or ff00::/8, e.g. \"239.255.80.51\" or \"ff02::5880\""),
                );
                None
            }
            Err(_) => {
                self.problem(
                    span,
                    format!("{who}: multicast_group {text:?} is not an IP address; valid: e.g. \"239.255.80.51\" or \"ff02::5880\""),
                );
                None
            }
        }
    }
}
