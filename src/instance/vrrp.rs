//! The instance core's side of VRRP mode (rule 18): a VRRP datagram checked
//! and read as an advert the election understands, and the election's
//! adverts written as VRRP messages. The byte layout is [`crate::vrrp`]'s;
//! the election's VRRP rules are in [`crate::election`] ("VRRP mode").

use std::net::IpAddr;
use std::time::Instant;

use super::settings::full_prefix;
use super::{Event, InstanceCore};
use crate::config::{InstanceConfig, VrrpConfig, VrrpVersion};
use crate::vrrp::{self, Expect, Packet, V2Auth, Version, VrrpError};
use crate::wire::{self, AdvertBody, Flags, WireError};

/// The priority-0 advert a master of `cfg` sends as it leaves, for the
/// clean-up of a daemon that died while master (its peers then take over
/// after their skew time, not the master-down interval); `None` for an
/// instance that speaks vipd's protocol.
pub fn vrrp_release_message(cfg: &InstanceConfig) -> Option<Result<Vec<u8>, VrrpError>> {
    let interval_cs = wire::interval_to_cs(cfg.advert_interval).unwrap_or(100);
    encode_for(cfg, 0, interval_cs)
}

/// `cfg`'s VRRP message with `priority` and `interval_cs`.
fn encode_for(
    cfg: &InstanceConfig,
    priority: u8,
    interval_cs: u16,
) -> Option<Result<Vec<u8>, VrrpError>> {
    let vrrp_cfg = cfg.protocol.vrrp()?;
    Some(vrrp::encode(&Packet {
        version: version(vrrp_cfg),
        vrid: cfg.group,
        priority,
        interval_cs,
        addresses: cfg.vips.iter().map(|v| v.addr).collect(),
        auth: auth(vrrp_cfg),
    }))
}

/// The node id a VRRP node has in the election: its source address, so that
/// ids order as addresses do and a priority tie goes to the higher address
/// (RFC 9568 §6.4.3; keepalived compares the source addresses as unsigned
/// numbers). IPv6 sources are link-local (fe80::/64 for all), so the low 64
/// bits order them as the whole address does.
pub fn address_id(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        // Truncation keeps the interface identifier, the part that differs.
        IpAddr::V6(v6) => u128::from(v6) as u64,
    }
}

fn version(cfg: &VrrpConfig) -> Version {
    match cfg.version {
        VrrpVersion::V2 => Version::V2,
        VrrpVersion::V3 => Version::V3,
    }
}

fn auth(cfg: &VrrpConfig) -> V2Auth {
    match cfg.auth_pass {
        Some(pass) => V2Auth::Password(pass),
        None => V2Auth::None,
    }
}

impl InstanceCore {
    /// A datagram of a VRRP instance: an IPv4 datagram with its header, or an
    /// IPv6 VRRP message (whose checksum the kernel checked).
    pub(super) fn take_vrrp(&mut self, now: Instant, source: IpAddr, bytes: &[u8]) {
        let Some(cfg) = self.cfg.protocol.vrrp().cloned() else {
            return;
        };
        let ipv6 = self.cfg.vips.first().is_some_and(|v| v.addr.is_ipv6());
        let (message, pseudo) = if source.is_ipv4() {
            match vrrp::split_ipv4(bytes) {
                Ok((header, message)) => (message, Some((header.source, header.destination))),
                Err(e) => return self.reject(source, WireError::Vrrp(e)),
            }
        } else {
            (bytes, None)
        };
        let expect = Expect {
            version: version(&cfg),
            vrid: self.cfg.group,
            ipv6,
            auth: auth(&cfg),
        };
        let packet = match vrrp::decode(message, &expect, pseudo) {
            Ok((packet, _form)) => packet,
            Err(e) => return self.reject(source, WireError::Vrrp(e)),
        };
        if Some(source) == self.vrrp_source {
            // Our own advert (multicast loop is off; a twin with our
            // address is a misconfiguration the kernel reports as DAD).
            return;
        }
        // RFC 3768 §7.1 and keepalived: a VRRPv2 advert with another interval
        // is dropped. Dropped, not followed: the sender drops ours too.
        let ours_cs = wire::interval_to_cs(self.cfg.advert_interval).unwrap_or(u16::MAX);
        if cfg.version == VrrpVersion::V2 && packet.interval_cs != ours_cs {
            return self.reject(
                source,
                WireError::VrrpIntervalMismatch {
                    theirs_cs: packet.interval_cs,
                    ours_cs,
                },
            );
        }
        // keepalived drops an advert whose address list is not its own set
        // (any order): the same here, so both sides judge alike.
        let mut theirs: Vec<IpAddr> = packet.addresses.clone();
        let mut ours: Vec<IpAddr> = self.cfg.vips.iter().map(|v| v.addr).collect();
        theirs.sort_unstable();
        theirs.dedup();
        ours.sort_unstable();
        ours.dedup();
        if theirs != ours {
            return self.reject(
                source,
                WireError::VrrpAddressSetMismatch {
                    theirs: packet.addresses.len(),
                    ours: self.cfg.vips.len(),
                },
            );
        }
        let mut flags = Flags::default();
        // Only a master sends VRRP adverts; priority 0 is its release.
        flags.set(Flags::MASTER, true);
        let body = AdvertBody {
            group: packet.vrid,
            priority: packet.priority,
            interval_cs: packet.interval_cs,
            flags,
            node_id: address_id(source),
            promote_epoch: 0,
            vip_digest: wire::vip_digest(packet.addresses.iter().map(|a| (*a, full_prefix(*a)))),
            node_name: source.to_string(),
        };
        let node_id = body.node_id;
        let new_source = self.sources.insert(node_id, source) != Some(source);
        self.watch.handle_peer_heard();
        self.push_event(Event::AdvertAccepted {
            node_id,
            master: packet.priority > 0,
        });
        self.election
            .handle_advert_replacing(now, &body, None, false);
        if new_source {
            self.push_event(Event::KnownSourcesChanged);
        }
    }

    /// The VRRP message for an advert of the election's (VRRPv3 over IPv4:
    /// without its checksum, which the transport forms per destination);
    /// `None` for an instance that speaks vipd's protocol.
    pub fn vrrp_message(&self, body: &AdvertBody) -> Option<Result<Vec<u8>, VrrpError>> {
        encode_for(&self.cfg, body.priority, body.interval_cs)
    }

    /// The address this VRRP instance's adverts go out from.
    pub fn vrrp_source(&self) -> Option<IpAddr> {
        self.vrrp_source
    }
}
