//! The peer table: every node heard, how it ranks, and whether it still counts.
//!
//! Owns [`Peer`], [`Rank`], the table's bound ([`MAX_PEERS`]), the liveness
//! windows and the quorum count. It decides nothing about states or VIPs: the
//! rules in [`super`] ask it who is alive and how they rank.
//!
//! A peer counts while it is not shutting down and was heard within a window of
//! its own advert interval plus `takeover_margin`:
//!
//! - **alive** (3 intervals): for ranking, successors and the master followed;
//! - **heard for quorum** (2 intervals): see [`PeerTable::quorum`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::wire::{cs_to_duration, AdvertBody, Flags};

/// Senders beyond this many are forgotten, stalest first, so a flood of
/// authenticated but bogus node ids cannot grow memory without bound.
const MAX_PEERS: usize = 1024;

/// How many of its advert intervals a peer may stay silent and still be alive,
/// as RFC 5798's master-down interval counts them.
const ALIVE_INTERVALS: u32 = 3;

/// How many of its advert intervals a peer may stay silent and still count
/// towards quorum: one fewer than [`ALIVE_INTERVALS`], so quorum is lost before
/// a backup's master-down interval runs out.
const QUORUM_INTERVALS: u32 = 2;

/// The order in which nodes deserve to be master; greater is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank {
    pub eligible: bool,
    /// The promotion epoch while promoted, else 0.
    pub promotion: u64,
    pub priority: u8,
    pub node_id: u64,
}

impl Rank {
    /// The rank a peer claims in its advert.
    pub fn of_advert(body: &AdvertBody) -> Self {
        let eligible = body.priority > 0
            && !body.flags.contains(Flags::DRAINED)
            && !body.flags.contains(Flags::FAULT)
            && !body.flags.contains(Flags::SHUTTING_DOWN);
        let promotion = if body.flags.contains(Flags::PROMOTED) {
            body.promote_epoch
        } else {
            0
        };
        Self {
            eligible,
            promotion,
            priority: body.priority,
            node_id: body.node_id,
        }
    }
}

/// A peer as last heard, for status and for ranking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub node_id: u64,
    pub name: String,
    pub priority: u8,
    pub flags: Flags,
    pub interval: Duration,
    pub promote_epoch: u64,
    pub vip_digest: [u8; 8],
    pub last_heard: Instant,
    vip_mismatch_noticed: bool,
    interval_mismatch_noticed: bool,
}

impl Peer {
    pub fn rank(&self) -> Rank {
        Rank::of_advert(&AdvertBody {
            group: 0,
            priority: self.priority,
            interval_cs: 0,
            flags: self.flags,
            node_id: self.node_id,
            promote_epoch: self.promote_epoch,
            vip_digest: self.vip_digest,
            node_name: String::new(),
        })
    }

    pub fn is_master(&self) -> bool {
        self.flags.contains(Flags::MASTER)
    }

    /// Not shutting down, and heard within `intervals` of its own advert
    /// intervals plus `margin`. The one liveness test: only the window differs.
    fn heard_within(&self, now: Instant, intervals: u32, margin: Duration) -> bool {
        !self.flags.contains(Flags::SHUTTING_DOWN)
            && now < self.last_heard + self.interval * intervals + margin
    }

    /// True the first time this peer's VIP set is seen to differ from `ours`,
    /// so the mismatch is noticed once per peer, not on every advert.
    pub(super) fn vip_mismatch_is_new(&mut self, ours: [u8; 8]) -> bool {
        let new = self.vip_digest != ours && !self.vip_mismatch_noticed;
        self.vip_mismatch_noticed |= new;
        new
    }

    /// True the first time this peer's advert interval is seen to differ from
    /// `ours`, so the mismatch is noticed once per peer.
    pub(super) fn interval_mismatch_is_new(&mut self, ours: Duration) -> bool {
        let new = self.interval != ours && !self.interval_mismatch_noticed;
        self.interval_mismatch_noticed |= new;
        new
    }
}

/// How many nodes this one hears against how many it needs, itself included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    /// This node plus the peers heard for quorum.
    pub heard: usize,
    /// A strict majority of the group's size.
    pub needed: usize,
}

impl Quorum {
    /// Does this node hear a strict majority of the group?
    pub fn is_met(&self) -> bool {
        self.heard >= self.needed
    }
}

/// Every peer heard, keyed by node id, bounded by [`MAX_PEERS`].
#[derive(Debug)]
pub(super) struct PeerTable {
    peers: HashMap<u64, Peer>,
    /// Added to every liveness window: the slack a backup allows per rank.
    margin: Duration,
}

impl PeerTable {
    pub(super) fn new(takeover_margin: Duration) -> Self {
        Self {
            peers: HashMap::new(),
            margin: takeover_margin,
        }
    }

    /// A reload changed `takeover_margin`: liveness windows use the new one.
    pub(super) fn set_margin(&mut self, takeover_margin: Duration) {
        self.margin = takeover_margin;
    }

    pub(super) fn get(&self, node_id: u64) -> Option<&Peer> {
        self.peers.get(&node_id)
    }

    pub(super) fn get_mut(&mut self, node_id: u64) -> Option<&mut Peer> {
        self.peers.get_mut(&node_id)
    }

    pub(super) fn contains(&self, node_id: u64) -> bool {
        self.peers.contains_key(&node_id)
    }

    /// Forgets a peer (a reload removed it from the configuration).
    pub(super) fn remove(&mut self, node_id: u64) {
        self.peers.remove(&node_id);
    }

    /// Peers heard, alive or not.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    /// Remember what `body` says about its sender, heard at `now`. A new sender
    /// beyond [`MAX_PEERS`] evicts the stalest peer first.
    pub(super) fn record(&mut self, now: Instant, body: &AdvertBody) -> &mut Peer {
        if !self.peers.contains_key(&body.node_id) && self.peers.len() >= MAX_PEERS {
            if let Some(stalest) = self
                .peers
                .values()
                .min_by_key(|p| p.last_heard)
                .map(|p| p.node_id)
            {
                self.peers.remove(&stalest);
            }
        }
        let peer = self.peers.entry(body.node_id).or_insert_with(|| Peer {
            node_id: body.node_id,
            name: body.node_name.clone(),
            priority: body.priority,
            flags: body.flags,
            interval: interval_of(body),
            promote_epoch: body.promote_epoch,
            vip_digest: body.vip_digest,
            last_heard: now,
            vip_mismatch_noticed: false,
            interval_mismatch_noticed: false,
        });
        peer.name.clone_from(&body.node_name);
        peer.priority = body.priority;
        peer.flags = body.flags;
        peer.interval = interval_of(body);
        peer.promote_epoch = body.promote_epoch;
        peer.vip_digest = body.vip_digest;
        peer.last_heard = now;
        peer
    }

    /// Is the peer still within its liveness window (3 of its advert intervals
    /// plus the margin), and not shutting down?
    pub(super) fn is_alive(&self, peer: &Peer, now: Instant) -> bool {
        peer.heard_within(now, ALIVE_INTERVALS, self.margin)
    }

    /// The moment a peer not heard again stops being alive.
    pub(super) fn alive_until(&self, peer: &Peer) -> Instant {
        peer.last_heard + peer.interval * ALIVE_INTERVALS + self.margin
    }

    /// The peers that are eligible and alive: the ones that could be master.
    fn live_eligible(&self, now: Instant) -> impl Iterator<Item = &Peer> {
        self.peers
            .values()
            .filter(move |p| p.rank().eligible && self.is_alive(p, now))
    }

    /// The peers that are master, eligible and alive: the masters that count.
    pub(super) fn live_masters(&self, now: Instant) -> impl Iterator<Item = &Peer> {
        self.live_eligible(now).filter(|p| p.is_master())
    }

    /// The best-ranked of [`Self::live_masters`].
    pub(super) fn best_live_master(&self, now: Instant) -> Option<&Peer> {
        self.live_masters(now).max_by_key(|p| p.rank())
    }

    /// Is an eligible peer alive that could take the VIPs?
    pub(super) fn has_live_eligible(&self, now: Instant) -> bool {
        self.live_eligible(now).next().is_some()
    }

    /// How many live eligible backups outrank `rank`.
    pub(super) fn live_backups_above(&self, rank: Rank, now: Instant) -> usize {
        self.live_eligible(now)
            .filter(|p| !p.is_master() && p.rank() > rank)
            .count()
    }

    /// Quorum in a group of `total` nodes, this one included: it counts itself
    /// plus every peer not shutting down and heard within 2 of its intervals plus
    /// the margin, and needs `total / 2 + 1`. Two intervals, not three, so that
    /// a node cut off from the majority loses quorum (and faults) before a
    /// backup's master-down interval of three intervals runs out, that is before
    /// it could take over.
    pub(super) fn quorum(&self, now: Instant, total: u32) -> Quorum {
        let peers_heard = self
            .peers
            .values()
            .filter(|p| p.heard_within(now, QUORUM_INTERVALS, self.margin))
            .count();
        Quorum {
            heard: 1 + peers_heard,
            // `total` is at most u32::MAX, which fits in usize on every target
            // vipd builds for (Linux, 32 and 64 bits).
            needed: total as usize / 2 + 1,
        }
    }

    /// The next moment a peer counted for the quorum at `now` stops counting
    /// (if no advert of it comes first): when [`Self::quorum`] may change
    /// without an input.
    pub(super) fn quorum_changes_at(&self, now: Instant) -> Option<Instant> {
        self.peers
            .values()
            .filter(|p| p.heard_within(now, QUORUM_INTERVALS, self.margin))
            .map(|p| p.last_heard + p.interval * QUORUM_INTERVALS + self.margin)
            .min()
    }
}

/// The advert interval a peer claims; 0 on the wire is rejected by the decoder,
/// but clamp anyway so a zero can never make a peer look alive forever or never.
pub(super) fn interval_of(body: &AdvertBody) -> Duration {
    cs_to_duration(body.interval_cs.max(1))
}

#[cfg(test)]
mod tests {
    //! One test per rule of the peer table: eviction, liveness, quorum.
    use super::*;

    const I: Duration = Duration::from_millis(100);
    const MARGIN: Duration = Duration::from_millis(2);

    fn advert(node_id: u64, flags: u8) -> AdvertBody {
        super::super::tests::advert(node_id, 100, flags)
    }

    #[test]
    fn a_full_table_forgets_the_stalest_peer_first() {
        let t0 = Instant::now();
        let mut table = PeerTable::new(MARGIN);
        for id in 0..MAX_PEERS as u64 {
            table.record(t0 + Duration::from_millis(id), &advert(id, 0));
        }
        table.record(t0 + Duration::from_secs(5), &advert(5000, 0));
        assert_eq!(table.iter().count(), MAX_PEERS);
        assert!(!table.contains(0), "the stalest is evicted");
        assert!(table.contains(1) && table.contains(5000));
    }

    #[test]
    fn a_peer_is_alive_for_three_intervals_plus_the_margin_unless_shutting_down() {
        let t0 = Instant::now();
        let mut table = PeerTable::new(MARGIN);
        let peer = table.record(t0, &advert(2, 0)).clone();
        assert!(table.is_alive(&peer, t0 + I * 3 + MARGIN - Duration::from_nanos(1)));
        assert!(!table.is_alive(&peer, t0 + I * 3 + MARGIN));
        let stopping = table.record(t0, &advert(3, Flags::SHUTTING_DOWN)).clone();
        assert!(!table.is_alive(&stopping, t0));
    }

    #[test]
    fn quorum_counts_itself_and_peers_heard_within_two_intervals_and_needs_a_majority() {
        let t0 = Instant::now();
        let mut table = PeerTable::new(MARGIN);
        table.record(t0, &advert(2, 0));
        table.record(t0, &advert(3, Flags::SHUTTING_DOWN));
        let quorum = table.quorum(t0, 3);
        assert_eq!(
            quorum,
            Quorum {
                heard: 2,
                needed: 2
            },
            "itself and node 2; a stopping node does not count"
        );
        assert!(quorum.is_met());
        // Still heard just inside two intervals plus the margin...
        let edge = t0 + I * 2 + MARGIN;
        assert!(table.quorum(edge - Duration::from_nanos(1), 3).is_met());
        // ...lost at the edge, a whole interval before node 2 stops being alive.
        let lost = table.quorum(edge, 3);
        assert_eq!(lost.heard, 1);
        assert!(!lost.is_met());
        let peer = table.get(2).cloned().expect("recorded");
        assert!(table.is_alive(&peer, edge));
        // A majority of an even group is more than half.
        assert_eq!(table.quorum(t0, 4).needed, 3);
    }
}
