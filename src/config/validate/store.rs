//! `election`, `lease_ttl`, `store_unreachable` and `[instance.patroni]`:
//! whether a key in etcd decides who holds an instance's VIPs; and
//! `[node.etcd]`, where that etcd is.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::{fmt_duration, Validator};
use crate::config::raw::{DurationText, RawEtcd, RawInstance, RawPatroni};
use crate::config::types::{EtcdConfig, OnUnreachable, PatroniDcs, PatroniFollow, StoreElection};

const WHO: &str = "[node.etcd]";

/// `lease_ttl`'s default, and its bounds: etcd grants whole seconds, and
/// refuses (raises) a TTL below its own minimum, 1.5 × the election timeout
/// (1.5 s with etcd's defaults).
pub(super) const LEASE_TTL_DEFAULT: Duration = Duration::from_secs(5);
const LEASE_TTL_MIN: Duration = Duration::from_secs(2);
const LEASE_TTL_MAX: Duration = Duration::from_secs(300);

const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);
const MAX_ENDPOINTS: usize = 16;
const DEFAULT_PREFIX: &str = "/vipd";
const PATRONI_NAMESPACE: &str = "/service";

impl Validator<'_> {
    /// `election` with `lease_ttl`, `store_unreachable` and `[instance.patroni]`:
    /// `Some(None)` for the adverts (the default). `node_name` is the default
    /// Patroni member name. Returns the span of `election` too, for the rule
    /// that it needs `[node.etcd]`.
    pub(super) fn store_election(
        &mut self,
        who: &str,
        raw: &mut RawInstance,
        node_name: Option<&str>,
    ) -> Option<Option<(StoreElection, Range<usize>)>> {
        let span = raw.election.as_ref().map(Spanned::span);
        let follow = match raw.election.as_ref().map(|e| e.get_ref().as_str()) {
            None | Some("adverts") => {
                let mut ok = true;
                for (key, span) in [
                    ("lease_ttl", raw.lease_ttl.as_ref().map(Spanned::span)),
                    (
                        "store_unreachable",
                        raw.store_unreachable.as_ref().map(Spanned::span),
                    ),
                    (
                        "[instance.patroni]",
                        raw.patroni.as_ref().map(Spanned::span),
                    ),
                ] {
                    if let Some(span) = span {
                        self.problem(span, format!("{who}: {key} needs election = \"etcd\" or \"patroni\"; valid: set election, or remove {key}"));
                        ok = false;
                    }
                }
                return ok.then_some(None);
            }
            Some("etcd") => {
                if let Some(p) = &raw.patroni {
                    self.problem(p.span(), format!("{who}: [instance.patroni] is for election = \"patroni\"; valid: election = \"patroni\", or remove the table"));
                    return None;
                }
                None
            }
            Some("patroni") => {
                let table = span.clone().unwrap_or(0..0);
                match raw.patroni.take() {
                    None => {
                        self.problem(table, format!("{who}: election = \"patroni\" needs an [instance.patroni] table with scope (Patroni's cluster name); valid: add it"));
                        return None;
                    }
                    Some(p) => {
                        let p_span = p.span();
                        Some(self.patroni(who, &p_span, p.into_inner(), node_name)?)
                    }
                }
            }
            Some(other) => {
                self.problem(
                    span.unwrap_or(0..0),
                    format!("{who}: election {other:?} is not valid; valid: \"adverts\" (the default), \"etcd\" or \"patroni\""),
                );
                return None;
            }
        };
        let span = span.unwrap_or(0..0);
        let lease_ttl = self.lease_ttl(who, raw.lease_ttl.as_ref());
        let on_unreachable = match raw.store_unreachable.as_ref() {
            None => Some(OnUnreachable::default()),
            Some(v) => match v.get_ref().as_str() {
                "fail-closed" => Some(OnUnreachable::FailClosed),
                "fail-open" => Some(OnUnreachable::FailOpen),
                other => {
                    self.problem(v.span(), format!("{who}: store_unreachable {other:?} is not valid; valid: \"fail-closed\" (the default: release before the lease could expire) or \"fail-open\" (keep the VIPs, unvouched)"));
                    None
                }
            },
        };
        let rules = self.store_rules(who, raw);
        rules?;
        Some(Some((
            StoreElection {
                lease_ttl: lease_ttl?,
                on_unreachable: on_unreachable?,
                follow,
            },
            span,
        )))
    }

    fn lease_ttl(&mut self, who: &str, raw: Option<&Spanned<DurationText>>) -> Option<Duration> {
        let ttl = self.duration_in(
            who,
            "lease_ttl",
            raw,
            LEASE_TTL_DEFAULT,
            LEASE_TTL_MIN,
            LEASE_TTL_MAX,
        )?;
        if ttl.subsec_nanos() != 0 {
            if let Some(raw) = raw {
                self.problem(raw.span(), format!("{who}: lease_ttl {} is not whole seconds; etcd grants leases in seconds; valid: e.g. \"2s\" or \"5s\"", fmt_duration(ttl)));
            }
            return None;
        }
        Some(ttl)
    }

    /// The keys that mean nothing when etcd decides: the adverts' own.
    fn store_rules(&mut self, who: &str, raw: &RawInstance) -> Option<()> {
        let mut ok = true;
        if let Some(p) = &raw.protocol {
            if p.get_ref() != "vipd" {
                self.problem(p.span(), format!("{who}: protocol {:?} joins a VRRP election, but election names etcd as the one who decides; valid: remove protocol, or election = \"adverts\"", p.get_ref()));
                ok = false;
            }
        }
        if let Some(p) = &raw.peers {
            self.problem(p.span(), format!("{who}: peers are where adverts go, but with election = \"etcd\" or \"patroni\" no adverts decide; valid: remove peers"));
            ok = false;
        }
        if let Some(g) = &raw.guard {
            self.problem(g.span(), format!("{who}: [instance.guard] guards the adverts' election; with etcd deciding, etcd's quorum is the guard; valid: remove the table"));
            ok = false;
        }
        ok.then_some(())
    }

    fn patroni(
        &mut self,
        who: &str,
        table: &Range<usize>,
        raw: RawPatroni,
        node_name: Option<&str>,
    ) -> Option<PatroniFollow> {
        let who = format!("{who}: [instance.patroni]");
        let who = who.as_str();
        let scope = self
            .required(
                who,
                table,
                "scope",
                raw.scope,
                "Patroni's scope (its cluster name), e.g. \"batman\"",
            )
            .and_then(|s| self.key_part(who, "scope", s));
        let member = match raw.member {
            Some(m) => self.key_part(who, "member", m),
            None => node_name.map(str::to_owned),
        };
        let namespace = match raw.namespace {
            None => Some(PATRONI_NAMESPACE.to_owned()),
            Some(n) => {
                let text = n.get_ref();
                if text.starts_with('/') && text.len() <= 256 {
                    Some(text.trim_end_matches('/').to_owned())
                } else {
                    self.problem(n.span(), format!("{who}: namespace {text:?} is not valid; valid: Patroni's namespace, starting with '/', e.g. \"/service\""));
                    None
                }
            }
        };
        let dcs = match raw.dcs.as_ref() {
            None => Some(PatroniDcs::default()),
            Some(d) => match d.get_ref().as_str() {
                "etcd3" => Some(PatroniDcs::Etcd3),
                "etcd" => Some(PatroniDcs::Etcd2),
                other => {
                    self.problem(d.span(), format!("{who}: dcs {other:?} is not valid; valid: \"etcd3\" (Patroni's etcd3 section, the default) or \"etcd\" (its etcd section: the v2 API)"));
                    None
                }
            },
        };
        Some(PatroniFollow {
            scope: scope?,
            member: member?,
            namespace: namespace?,
            dcs: dcs?,
        })
    }

    /// A part of an etcd key: non-empty, at most 128 bytes, no '/'.
    fn key_part(&mut self, who: &str, key: &str, raw: Spanned<String>) -> Option<String> {
        let text = raw.get_ref();
        if text.is_empty()
            || text.len() > 128
            || text.contains('/')
            || text.chars().any(char::is_control)
        {
            self.problem(raw.span(), format!("{who}: {key} {text:?} is not valid; valid: 1..=128 bytes without '/' or control characters"));
            return None;
        }
        Some(raw.into_inner())
    }

    /// `[node.etcd]`: `Some(None)` when left out.
    pub(super) fn etcd(&mut self, raw: Option<Spanned<RawEtcd>>) -> Option<Option<EtcdConfig>> {
        let Some(raw) = raw else { return Some(None) };
        let table = raw.span();
        let raw = raw.into_inner();
        let endpoints = self
            .required(
                WHO,
                &table,
                "endpoints",
                raw.endpoints,
                "a list of client URLs such as [\"https://10.0.0.1:2379\"]",
            )
            .and_then(|list| self.endpoints(list));
        let ca_file = self.file_path("ca_file", raw.ca_file);
        let cert_file = self.file_path("cert_file", raw.cert_file);
        let key_file = self.file_path("key_file", raw.key_file);
        let prefix = match raw.prefix {
            None => Some(DEFAULT_PREFIX.to_owned()),
            Some(p) => {
                let text = p.get_ref();
                if text.starts_with('/') && text.len() <= 256 && !text.chars().any(char::is_control)
                {
                    Some(text.trim_end_matches('/').to_owned())
                } else {
                    self.problem(p.span(), format!("{WHO}: prefix {text:?} is not valid; valid: a key prefix starting with '/', e.g. \"/vipd\""));
                    None
                }
            }
        };
        let request_timeout = self.duration_in(
            WHO,
            "request_timeout",
            raw.request_timeout.as_ref(),
            REQUEST_TIMEOUT_DEFAULT,
            Duration::from_millis(100),
            Duration::from_secs(10),
        );
        let (ca_file, cert_file, key_file) = (ca_file?, cert_file?, key_file?);
        if cert_file.is_some() != key_file.is_some() {
            self.problem(table, format!("{WHO}: cert_file and key_file go together (a client certificate and its key); valid: both, or neither"));
            return None;
        }
        let endpoints = endpoints?;
        let tls = endpoints.iter().any(|e| e.starts_with("https://"));
        if !tls && (ca_file.is_some() || cert_file.is_some()) {
            self.problem(table, format!("{WHO}: ca_file, cert_file and key_file are for https endpoints, but every endpoint is http; valid: https:// endpoints, or remove the files"));
            return None;
        }
        Some(Some(EtcdConfig {
            endpoints,
            ca_file,
            cert_file,
            key_file,
            prefix: prefix?,
            request_timeout: request_timeout?,
        }))
    }

    fn endpoints(&mut self, list: Spanned<Vec<Spanned<String>>>) -> Option<Vec<String>> {
        let span = list.span();
        let list = list.into_inner();
        if list.is_empty() || list.len() > MAX_ENDPOINTS {
            self.problem(
                span,
                format!(
                    "{WHO}: endpoints has {} entries; valid: 1..={MAX_ENDPOINTS} client URLs",
                    list.len()
                ),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        let mut schemes = Vec::new();
        for e in list {
            let text = e.get_ref().trim_end_matches('/');
            let rest = text
                .strip_prefix("http://")
                .map(|r| ("http", r))
                .or_else(|| text.strip_prefix("https://").map(|r| ("https", r)));
            let valid = rest.is_some_and(|(_, r)| {
                r.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty()
                        && !host.contains('/')
                        && port.parse::<u16>().is_ok_and(|p| p != 0)
                })
            });
            if !valid {
                self.problem(e.span(), format!("{WHO}: endpoint {:?} is not valid; valid: \"http://HOST:PORT\" or \"https://HOST:PORT\", e.g. \"https://10.0.0.1:2379\"", e.get_ref()));
                ok = false;
                continue;
            }
            if let Some((scheme, _)) = rest {
                schemes.push(scheme);
            }
            out.push(text.to_owned());
        }
        if ok && schemes.iter().any(|s| *s != schemes[0]) {
            self.problem(span, format!("{WHO}: endpoints mix http and https; valid: one scheme for all (https with ca_file)"));
            return None;
        }
        ok.then_some(out)
    }

    /// A file named in `[node.etcd]`, relative to the configuration's directory.
    fn file_path(&mut self, key: &str, raw: Option<Spanned<String>>) -> Option<Option<PathBuf>> {
        let Some(raw) = raw else { return Some(None) };
        if raw.get_ref().is_empty() {
            self.problem(
                raw.span(),
                format!("{WHO}: {key} is empty; valid: a path to a PEM file"),
            );
            return None;
        }
        Some(Some(self.base_dir().join(raw.into_inner())))
    }

    /// `election = "etcd"` or `"patroni"` needs `[node.etcd]`.
    pub(super) fn store_needs_etcd(&mut self, who: &str, span: Range<usize>, has_etcd: bool) {
        if !has_etcd {
            self.problem(span, format!("{who}: election names etcd, but [node] has no [node.etcd] table; valid: add [node.etcd] with endpoints"));
        }
    }
}
