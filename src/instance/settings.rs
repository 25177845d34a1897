//! The instance keys the election takes live, written once: what the election
//! starts with, what a reload hands it, and what the reload plan compares
//! and carries over ([`election_settings`], [`copy_election_fields`]).
//!
//! What it may not touch: anything but configuration values.

use crate::config::InstanceConfig;
use crate::election::Settings;
use crate::wire;

/// Declares the two functions from one list of field names, which are the
/// same in [`InstanceConfig`] and the election's [`Settings`].
macro_rules! election_fields {
    ($($field:ident),+ $(,)?) => {
        /// The election settings of an instance configuration.
        pub fn election_settings(cfg: &InstanceConfig) -> Settings {
            Settings {
                $($field: cfg.$field,)+
                vip_digest: own_vip_digest(cfg),
            }
        }

        /// Copies the election's keys from `from` into `to` (the reload plan
        /// applies them to see whether anything else changed).
        pub fn copy_election_fields(to: &mut InstanceConfig, from: &InstanceConfig) {
            $(to.$field = from.$field;)+
        }
    };
}

election_fields!(
    priority,
    advert_interval,
    backup_advert_interval,
    takeover_margin,
    handover_timeout,
    preempt,
    preempt_delay,
);

/// The digest of the instance's VIP set as its adverts say it. VRRP adverts
/// carry addresses without prefix lengths, so in VRRP mode every VIP counts
/// at its family's full length, as the core counts a VRRP peer's list.
pub(super) fn own_vip_digest(cfg: &InstanceConfig) -> [u8; 8] {
    if cfg.protocol.vrrp().is_some() {
        wire::vip_digest(cfg.vips.iter().map(|v| (v.addr, full_prefix(v.addr))))
    } else {
        wire::vip_digest(cfg.vips.iter().map(|v| (v.addr, v.prefix_len)))
    }
}

/// 32 for IPv4, 128 for IPv6.
pub(super) fn full_prefix(addr: std::net::IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// Do `a` and `b` differ in the election's keys (the VIP set aside)?
pub fn election_fields_differ(a: &InstanceConfig, b: &InstanceConfig) -> bool {
    let strip = |cfg: &InstanceConfig| Settings {
        vip_digest: [0; 8],
        ..election_settings(cfg)
    };
    strip(a) != strip(b)
}
