//! The instance's answer to `vipd status`: a snapshot of its election, health,
//! VIPs and peers as the control protocol's [`InstanceStatus`].

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Instance;
use crate::control::{
    ForeignClaimStatus, InstanceStatus, MasterStatus, PeerStatus, StoreStatus, TransitionStatus,
    VipStatus,
};
use crate::wire::Flags;

impl Instance {
    pub(super) fn status(&self, now: Instant) -> InstanceStatus {
        let core = &self.core;
        let cfg = core.config();
        let e = core.election();
        let health = e.health();
        let mut reasons = vec![format!("configured {}", cfg.priority)];
        reasons.extend(core.health().reasons());
        if e.is_drained() {
            reasons.push("drained: advertises priority 0".to_owned());
        }
        if e.is_promoted() {
            reasons.push("promoted: outranks every unpromoted node".to_owned());
        }
        if let Some(f) = &health.fault {
            reasons.push(format!("fault ({f}): advertises priority 0"));
        }
        let held = self.held.lock().map(|h| h.clone()).unwrap_or_default();
        let vips = cfg
            .vips
            .iter()
            .map(|v| VipStatus {
                address: v.to_string(),
                held: held.get(v).copied().unwrap_or(false),
            })
            .collect();
        let master_id = e.master(now);
        let store = self.store_status(now);
        let master = master_id.map(|id| {
            if id == e.config().node_id {
                MasterStatus {
                    name: e.config().node_name.clone(),
                    address: None,
                    is_self: true,
                    claim_pending: core.claim_pending(),
                }
            } else {
                MasterStatus {
                    name: e
                        .peers()
                        .find(|p| p.node_id == id)
                        .map_or_else(|| format!("node {id:#x}"), |p| p.name.clone()),
                    address: core.sources().get(&id).map(ToString::to_string),
                    is_self: false,
                    claim_pending: core.peer_claim_pending(id),
                }
            }
        });
        // With etcd deciding, the master is whom etcd names.
        let master = match (&store, master) {
            (Some(st), _) => st.holder.clone().map(|name| MasterStatus {
                is_self: e.state() == crate::election::State::Master,
                claim_pending: core.claim_pending(),
                name,
                address: None,
            }),
            (None, master) => master,
        };
        let master_interval = master_id
            .and_then(|id| e.peers().find(|p| p.node_id == id))
            .map_or(cfg.advert_interval, |p| p.interval);
        let mut peers: Vec<PeerStatus> = e
            .peers()
            .map(|p| {
                let mut flags = Vec::new();
                for (bit, name) in [
                    (Flags::MASTER, "master"),
                    (Flags::DRAINED, "drained"),
                    (Flags::PROMOTED, "promoted"),
                    (Flags::FAULT, "fault"),
                    (Flags::SHUTTING_DOWN, "shutting-down"),
                ] {
                    if p.flags.contains(bit) {
                        flags.push(name.to_owned());
                    }
                }
                let alive = e.is_alive(p, now);
                // The flags are as last heard; the state is what we know now: a
                // peer gone silent is not a master any more, whatever it said last.
                let state = if p.flags.contains(Flags::SHUTTING_DOWN) {
                    "shutting-down"
                } else if !alive {
                    "lost"
                } else if p.flags.contains(Flags::FAULT) {
                    "fault"
                } else if p.flags.contains(Flags::MASTER) {
                    "master"
                } else {
                    "backup"
                };
                PeerStatus {
                    name: p.name.clone(),
                    node_id: p.node_id,
                    address: core.sources().get(&p.node_id).map(ToString::to_string),
                    priority: p.priority,
                    flags,
                    state: state.to_owned(),
                    alive,
                    last_heard_ms_ago: millis(now.saturating_duration_since(p.last_heard)),
                    advert_interval_ms: millis(p.interval),
                    vip_set_differs: p.vip_digest != e.config().settings.vip_digest,
                    version: core.peer_versions().get(&p.node_id).cloned(),
                }
            })
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        let counters = e.counters();
        let last_transition = e.last_transition().map(|t| {
            let ago = now.saturating_duration_since(t.at);
            let at = SystemTime::now()
                .checked_sub(ago)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            TransitionStatus {
                from: t.from,
                to: t.to,
                reason: t.reason.to_string(),
                at_unix: at,
                ms_ago: millis(ago),
            }
        });
        InstanceStatus {
            name: cfg.name.clone(),
            interface: cfg.interface.clone(),
            group: cfg.group,
            state: e.state(),
            configured_priority: cfg.priority,
            effective_priority: e.effective_priority(),
            priority_reasons: reasons,
            drained: e.is_drained(),
            promoted: e.is_promoted(),
            fault: health.fault.clone(),
            vips,
            master,
            peers,
            auth_failures: core.auth_failures(),
            other_master_heard: counters.other_master_heard,
            planned_overlaps: counters.planned_overlaps,
            adverts_sent: counters.adverts_sent,
            adverts_received: counters.adverts_received,
            last_transition,
            master_down_interval_ms: millis(e.master_down_interval(master_interval)),
            protocol: cfg.protocol.as_str().to_owned(),
            name_conflict: core.identity().conflict(),
            history: self.telemetry.history(),
            announce_route: cfg.route.as_ref().map(|r| {
                format!(
                    "route table {} metric {} (withdraw delay {:?}, ready after {:?})",
                    r.table, r.metric, r.withdraw_delay, r.ready_after
                )
            }),
            foreign_claims: core
                .watch()
                .foreign_claims()
                .map(|c| ForeignClaimStatus {
                    vip: c.addr.to_string(),
                    mac: c.mac.to_string(),
                    sightings: c.sightings,
                    since_ms_ago: millis(now.saturating_duration_since(c.first)),
                    last_ms_ago: millis(now.saturating_duration_since(c.last)),
                })
                .collect(),
            foreign_claims_seen: core.watch().foreign_sightings(),
            foreign_claim_episodes: core.foreign_claim_episodes(),
            drain_rolled_back: core.drain_rolled_back().map(str::to_owned),
            store,
        }
    }

    /// What etcd says, when it decides (core rule 19).
    fn store_status(&self, now: Instant) -> Option<StoreStatus> {
        let seat = self.core.store()?;
        let io = self.store_io.as_ref()?;
        let cfg = seat.config();
        let vouched = seat.is_vouched(now);
        let holding = self.core.election().state() == crate::election::State::Master;
        Some(StoreStatus {
            kind: if cfg.follow.is_some() {
                "patroni"
            } else {
                "etcd"
            }
            .to_owned(),
            key: io.key().to_owned(),
            endpoint: io.endpoint(),
            reachable: seat.is_reachable(),
            last_error: seat.last_error().map(str::to_owned),
            vouched,
            holding_unvouched: holding && !vouched,
            on_unreachable: cfg.on_unreachable.as_str().to_owned(),
            lease_id: seat.lease(),
            lease_ttl_ms: millis(cfg.lease_ttl),
            lease_remaining_ms: seat
                .vouched_until()
                .map(|t| millis(t.saturating_duration_since(now))),
            holder: seat.holder_name(),
            holder_revision: seat.holder_revision(),
            fencing_token: seat.token().filter(|_| holding),
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
