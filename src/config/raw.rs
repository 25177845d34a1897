//! The file as serde reads it: one private `Raw*` struct per TOML table.
//!
//! Every struct rejects unknown keys (`deny_unknown_fields`) and keeps the byte
//! span of each value ([`toml::Spanned`]) so validation can point at it. Nothing
//! here checks a value beyond its TOML type: ranges, defaults and cross-table rules
//! belong to `validate`. Durations stay text ([`DurationText`]) until then,
//! so a malformed one is reported with its position like any other rule.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) node: Option<Spanned<RawNode>>,
    #[serde(default)]
    pub(super) instance: Vec<Spanned<RawInstance>>,
    #[serde(default)]
    pub(super) sync_group: Vec<Spanned<RawSyncGroup>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) name: Option<Spanned<String>>,
    pub(super) control_socket: Option<Spanned<String>>,
    pub(super) control_group: Option<Spanned<String>>,
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) startup_delay: Option<Spanned<DurationText>>,
    pub(super) metrics_listen: Option<Spanned<String>>,
    pub(super) script_user: Option<Spanned<String>>,
    pub(super) etcd: Option<Spanned<RawEtcd>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEtcd {
    pub(super) endpoints: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) cert_file: Option<Spanned<String>>,
    pub(super) key_file: Option<Spanned<String>>,
    pub(super) prefix: Option<Spanned<String>>,
    pub(super) request_timeout: Option<Spanned<DurationText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPatroni {
    pub(super) scope: Option<Spanned<String>>,
    pub(super) member: Option<Spanned<String>>,
    pub(super) namespace: Option<Spanned<String>>,
    pub(super) dcs: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstance {
    pub(super) name: Option<Spanned<String>>,
    pub(super) interface: Option<Spanned<String>>,
    pub(super) group: Option<Spanned<i64>>,
    pub(super) priority: Option<Spanned<i64>>,
    pub(super) advert_interval: Option<Spanned<DurationText>>,
    pub(super) backup_advert_interval: Option<Spanned<DurationText>>,
    pub(super) takeover_margin: Option<Spanned<DurationText>>,
    pub(super) handover_timeout: Option<Spanned<DurationText>>,
    pub(super) preempt: Option<bool>,
    pub(super) preempt_delay: Option<Spanned<DurationText>>,
    pub(super) vips: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) auth_key_file: Option<Spanned<String>>,
    pub(super) auth_accept_key_files: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) auth: Option<Spanned<String>>,
    pub(super) peers: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) multicast_group: Option<Spanned<String>>,
    pub(super) port: Option<Spanned<i64>>,
    pub(super) protocol: Option<Spanned<String>>,
    pub(super) vrrp_auth_pass: Option<Spanned<String>>,
    pub(super) vrrp_checksum: Option<Spanned<String>>,
    pub(super) vrrp_source: Option<Spanned<String>>,
    pub(super) announce: Option<Spanned<String>>,
    pub(super) route: Option<Spanned<RawRoute>>,
    pub(super) max_hops: Option<Spanned<i64>>,
    pub(super) announce_count: Option<Spanned<i64>>,
    pub(super) announce_interval: Option<Spanned<DurationText>>,
    pub(super) announce_repeat_after: Option<Spanned<DurationText>>,
    pub(super) announce_refresh: Option<Spanned<DurationText>>,
    pub(super) announce_probe: Option<bool>,
    pub(super) after_crash: Option<Spanned<String>>,
    pub(super) election: Option<Spanned<String>>,
    pub(super) lease_ttl: Option<Spanned<DurationText>>,
    pub(super) store_unreachable: Option<Spanned<String>>,
    pub(super) patroni: Option<Spanned<RawPatroni>>,
    #[serde(default)]
    pub(super) track_script: Vec<Spanned<RawTrackScript>>,
    #[serde(default)]
    pub(super) track_interface: Vec<Spanned<RawTrackInterface>>,
    #[serde(default)]
    pub(super) track_file: Vec<Spanned<RawTrackFile>>,
    pub(super) notify: Option<Spanned<RawNotify>>,
    pub(super) guard: Option<Spanned<RawGuard>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) table: Option<Spanned<i64>>,
    pub(super) metric: Option<Spanned<i64>>,
    pub(super) withdraw_delay: Option<Spanned<DurationText>>,
    pub(super) ready_after: Option<Spanned<DurationText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrackScript {
    pub(super) name: Option<Spanned<String>>,
    pub(super) command: Option<Spanned<Vec<String>>>,
    pub(super) shell: Option<bool>,
    pub(super) interval: Option<Spanned<DurationText>>,
    pub(super) timeout: Option<Spanned<DurationText>>,
    pub(super) rise: Option<Spanned<i64>>,
    pub(super) fall: Option<Spanned<i64>>,
    pub(super) weight: Option<Spanned<i64>>,
    pub(super) user: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrackInterface {
    pub(super) name: Option<Spanned<String>>,
    pub(super) weight: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrackFile {
    pub(super) path: Option<Spanned<String>>,
    pub(super) weight_multiplier: Option<Spanned<i64>>,
    pub(super) interval: Option<Spanned<DurationText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub(super) master: Option<Spanned<Vec<String>>>,
    pub(super) backup: Option<Spanned<Vec<String>>>,
    pub(super) fault: Option<Spanned<Vec<String>>>,
    pub(super) stop: Option<Spanned<Vec<String>>>,
    pub(super) any: Option<Spanned<Vec<String>>>,
    pub(super) before_claim: Option<Spanned<Vec<String>>>,
    pub(super) after_release: Option<Spanned<Vec<String>>>,
    pub(super) timeout: Option<Spanned<DurationText>>,
    pub(super) user: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGuard {
    pub(super) witness: Option<Spanned<String>>,
    pub(super) method: Option<Spanned<String>>,
    pub(super) interval: Option<Spanned<DurationText>>,
    pub(super) timeout: Option<Spanned<DurationText>>,
    pub(super) fall: Option<Spanned<i64>>,
    pub(super) rise: Option<Spanned<i64>>,
    pub(super) quorum: Option<bool>,
    pub(super) peers_total: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSyncGroup {
    pub(super) name: Option<Spanned<String>>,
    pub(super) instances: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A duration as written; parsed during validation so a bad one gets a position.
/// Only strings deserialize, with a message that shows the expected form.
pub(super) struct DurationText(pub(super) String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a duration string such as "100ms", "2s" or "1m""#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_owned()))
            }
        }
        deserializer.deserialize_str(V)
    }
}
