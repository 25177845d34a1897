//! The instance core: every rule that decides whether this node holds one
//! instance's VIPs, as one sans-IO state machine ([`InstanceCore`]).
//!
//! The core owns the [`Election`], the health [`Tracker`], the
//! duplicate-identity rule ([`identity`]), the replay guard, the peers' source
//! addresses and versions, the quorum and sync-group faults and the conflict
//! watch ([`crate::conflict`]) with the claim it may hold back. It is fed
//! `handle_*(now, …)` calls — a datagram's bytes, a check result, the link,
//! a tracked interface, the sync board, an operator command, a reload, a
//! sighting of an ARP/NA claim, a timeout — and the caller then takes
//! [`Output`]s with [`InstanceCore::poll_output`] until it returns `None`:
//! adverts to send, orders for the VIP worker, and events for logs, history,
//! hooks, metrics and the sync board. [`InstanceCore::poll_timeout`] is the
//! next moment it must be fed `handle_timeout` without any other input.
//!
//! No sockets, no tasks, no clock reads, no logging: the driver
//! (`daemon::instance`) reads the clock once per wake-up, moves bytes and
//! results, and logs the events. So every rule here runs in the seeded
//! simulation (`tests/simulation.rs`, several instances per node and a
//! network between them) and in unit tests without root.
//!
//! # Rules
//!
//! Each rule and why; the election's own rules are in [`crate::election`],
//! the conflict watch's in [`crate::conflict`], the health tracker's in
//! [`crate::health`].
//!
//! 1. **An advert is authenticated before anything reads it.** A datagram that
//!    does not decode, names another group or fails HMAC verification is
//!    rejected ([`Event::Rejected`]) and counted; nothing else changes. Why:
//!    anyone on the link can send datagrams; only a key holder may influence
//!    the election.
//! 2. **Our own node id goes to the name-clash rule, never further.** An
//!    advert carrying this node's id is our own (looped back) or a twin's (the
//!    same node name elsewhere); it goes to [`Identity`] before the replay
//!    guard and the election (see [`identity`] for the rule and its reasons).
//!    The later-started twin stands aside with a fault; its adverts carry
//!    priority 0 and no master flag.
//! 3. **A replayed advert is dropped.** Per node id, a boot id may not go down
//!    and, within one boot id, the sequence must rise ([`ReplayGuard`]); the
//!    guard is seeded from the node's replay book at start, so a restart does
//!    not open a window. Why: a recorded master advert, replayed, would hold
//!    the backups off while the master is dead.
//! 4. **Known sources.** Each accepted advert records its sender's address per
//!    node id (at most 1,024 node ids; past that, those no longer in the
//!    election's peer table are forgotten). A new address raises
//!    [`Event::KnownSourcesChanged`], so the driver can read its peers'
//!    datagrams before the rest under a flood. A reload that changes unicast
//!    `peers` forgets the node ids last heard from an address no longer
//!    configured.
//! 5. **Which master a master replaced travels with its adverts.** The
//!    election decides whether two masters at once were planned (its rule
//!    "Planned overlaps"); the wire is the core's part of it. An accepted
//!    advert's extension type 3 (the node its sender replaced on purpose) goes
//!    to the election with the advert, and the name the election gives an
//!    advert of its own goes out with it ([`Output::Advert`]'s `replaced`).
//!    Why: the election reads no bytes, and an older build that sends no
//!    such field only makes the overlap it caused count as two masters.
//! 6. **Quorum.** With the guard's `quorum` on and `peers_total` set, the node
//!    is in fault while it hears fewer than a strict majority of the group,
//!    itself included (liveness as the election counts it for quorum). It is
//!    re-checked after every input and at the moment the first counted peer
//!    would drop out ([`InstanceCore::poll_timeout`]). Why: a node cut off
//!    from the majority must not take the VIPs.
//! 7. **Sync groups.** An instance publishes its *own* fault and weight
//!    ([`Event::SyncEntry`], only when they change); it is in fault while
//!    another member of its sync group is in a fault of its own, and adds the
//!    other members' weights. Why: VIPs that must move together (a database's
//!    address and its replication address) must not split across nodes.
//!    Publishing the sync fault itself would latch the group in fault.
//! 8. **Health is one fault.** The election is handed the tracker's health
//!    with the name-clash fault and a refused cold claim's fault added, after
//!    every change of any of them.
//! 9. **A cold claim may wait for a probe.** When the election claims and no
//!    peer was ever heard (a lone cold start), the conflict watch may hold the
//!    claim back for its probe; announcements wait with it. A refused claim
//!    becomes a fault; a cleared one goes ahead with the announcement that
//!    waited. A takeover (a peer heard) never waits.
//! 10. **A VIP removed under a master is claimed again**, as is every VIP after
//!     lost netlink notifications or the interface coming back up (the kernel
//!     drops IPv6 addresses on admin-down). Why: only the master may hold
//!     them, and it must hold all of them.
//! 11. **The link is health.** The instance's own interface down is a fault;
//!     its return starts the routed mode's route wait before the fault clears
//!     (the election's rule "Preempt waits for the route").
//! 12. **Resume after a crash.** When the daemon restarts after a crash that
//!     left this instance's VIPs in place for it (`after_crash = "resume"`;
//!     the clean-up's rules are in [`crash`]), the instance becomes master at
//!     once, before its peers' master-down interval can run out, instead of
//!     starting as backup: the peers still follow this node from its last
//!     boot, so nothing moves and clients lose nothing. Its claim is not a
//!     cold one (no probe: the VIPs were ours a moment ago). If it may not be
//!     master (drained, in fault), it releases them at once with a priority-0
//!     advert. Why not start as backup, as on every other start: the peers
//!     would wait out the master-down interval and then move the VIPs, a
//!     failover for a crash the host survived.
//! 13. **A node that keeps crashing does not preempt.** After two crashes
//!     within [`crash::CRASH_WINDOW`], the restarted daemon does not preempt
//!     until that window has passed since the last crash (it still takes
//!     over a master that dies or releases, and `vipd promote` still works).
//!     Why: a crash-looping node with the highest priority would otherwise
//!     take the VIPs back after every restart and lose them at every crash.
//! 14. **A claim may wait for the gate.** With `notify.before_claim` set, a
//!     node that becomes master runs it ([`Output::RunGate`]) and claims and
//!     announces the VIPs only once it exits 0 ([`InstanceCore::handle_gate`]);
//!     meanwhile it advertises as master, so its peers stand back, and holds
//!     nothing. A failure or timeout is a fault for [`GATE_FAULT_HOLD`] (the
//!     node releases, as any master in fault, and a peer may take over); after
//!     it the node may become master again, and run the gate again, when the
//!     master dies or releases or an operator promotes it, but it does not
//!     preempt for [`crash::CRASH_WINDOW`]. The gate runs once per claim:
//!     after a release the next claim runs it again. Why: a VIP on a database
//!     that is not yet primary sends writes to a read-only standby; no VIP at
//!     all is better than an unready one; a node whose promotion fails must
//!     not keep the VIPs from a node whose may not; and a preferred node whose
//!     gate keeps failing would otherwise take the VIPs from a working master
//!     every [`GATE_FAULT_HOLD`] only to drop them.
//! 15. **A master says whether it serves.** While this node is master and has
//!     not claimed the VIPs (its gate or its conflict probe still runs), its
//!     adverts say so ([`Output::Advert`]'s `claim_pending`, extension type 4
//!     on the wire); once the claim goes ahead it advertises at once without.
//!     A peer's last word on it is kept ([`InstanceCore::peer_claim_pending`]).
//!     Why: a master that has not claimed serves nobody. The node that handed
//!     over to it (rule 16) and an operator waiting on `vipd drain --wait`
//!     need to know when it does; the election does not (it never changes who
//!     is master).
//! 16. **A drain rolls back when its successor fails before serving.** A node
//!     drained while master, once it hears its successor advertise as master
//!     with a claim pending, watches that successor until it serves. If the
//!     successor instead gives up master before serving (it releases, faults,
//!     shuts down, or goes silent past its liveness window) and no other live
//!     master serves, this node undrains itself ([`Event::DrainRolledBack`],
//!     [`InstanceCore::drain_rolled_back`]) before the election hears the
//!     release, so the election takes the VIPs back at once as for any
//!     released master. Why: `vipd drain` refuses when nobody could take over;
//!     a successor whose promotion fails could not either, and leaving the
//!     VIPs nowhere is the outage the refusal exists to prevent. Only a drain
//!     of a master is watched (a drained backup handed nothing over); an
//!     operator's undrain, promote or new drain ends the watch. While the
//!     successor's claim is pending this node still holds the VIPs (the
//!     election's rule "Master meets master"), so after a rollback they have
//!     not moved at all.
//! 17. **After a release, the after-release hook.** With
//!     `notify.after_release` set, every release of the VIPs is followed by
//!     [`Output::RunAfterRelease`], which the driver runs only once the
//!     release it follows is carried out (the addresses are gone). Its result
//!     is not an input: a failure is logged and counted, and decides nothing.
//!     Why: it stops or fences the old primary, which must not happen while
//!     clients can still reach it through the VIP; and by then the VIPs are
//!     gone, so there is nothing left for a failure to hold back.
//! 18. **VRRP mode reads and writes VRRP** (`protocol = "vrrp2"`/`"vrrp3"`;
//!     [`vrrp`](self::vrrp)). A datagram must decode as a VRRP advert of
//!     this instance's version, VRID, family and password, with a valid
//!     checksum (VRRPv3 over IPv4: either form); VRRPv2's interval must be
//!     ours and the address list must be our VIP set (any order), else it is
//!     rejected and counted like any bad advert — as keepalived judges ours,
//!     so both sides agree on what they heard. An accepted advert is a
//!     master's (priority 0: its release) from the node whose id is its
//!     source address ([`address_id`]), named by that address; there is no
//!     replay guard and no extension field. Our own source is ignored. The
//!     election's adverts go out as VRRP messages listing the VIPs in
//!     configuration order ([`InstanceCore::vrrp_message`]). Why: a
//!     keepalived node can only be joined in its own language, and an
//!     advert one side drops while the other accepts leaves two masters.
//! 19. **etcd decides, when configured** (`election = "etcd"`/`"patroni"`;
//!     [`crate::store`]). The core owns the instance's [`StoreSeat`]; after
//!     every input it hands the seat this node's candidacy as the election
//!     sees it (eligible, effective priority, `preempt`, promoted, and the
//!     fencing token while the VIPs are claimed), and the seat's verdict to
//!     the election (its rule "The store decides"), until neither changes;
//!     the seat's requests go out as [`Output::Store`] and its results come
//!     back through [`InstanceCore::handle_store`]. A claim then is never a
//!     cold one (no conflict probe): etcd vouches for it. Promote is refused
//!     while following Patroni: its leader decides. Why here: health, drain,
//!     the gate and the hooks stay one set of rules, whoever decides.

pub mod crash;
mod identity;
mod settings;
#[cfg(test)]
mod tests;
mod vrrp;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use identity::{Identity, IdentityEvent};
pub use settings::{copy_election_fields, election_fields_differ, election_settings};
pub use vrrp::{address_id, vrrp_release_message};

use crate::config::{InstanceConfig, Vip, VrrpVersion};
use crate::conflict::{ConflictEvent, ConflictWatch, Mac, ProbeSettings, Sighting};
use crate::election::{
    Action, Command, CommandError, Dialect, Election, ElectionConfig, Health, Notice, Reason, State,
};
use crate::health::{CheckEvent, RunOutcome, SyncEntry, Tracker};
use crate::store::{
    Candidacy, MemberInfo, SeatConfig, StoreAction, StoreInput, StoreNotice, StoreSeat,
};
use crate::wire::{self, AdvertBody, ReplayGuard, WireError};

/// How many node ids' addresses and versions are remembered before those
/// no longer in the peer table are forgotten.
const MAX_REMEMBERED_NODES: usize = 1024;

/// What the core needs to know about the node it runs on.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    pub node_id: u64,
    pub node_name: String,
    /// The daemon's boot id (adverts carry it; the name-clash rule may raise it).
    pub boot_id: u64,
    pub startup_delay: Duration,
    /// VRRP mode: the address this instance's adverts go out from, which is
    /// also its node id in the election ([`address_id`]). Ignored otherwise.
    pub vrrp_source: Option<IpAddr>,
}

/// An order for the instance's VIP worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VipOrder {
    /// Add the VIPs (and routed mode's routes).
    Claim,
    /// Start the announcement rounds (gratuitous ARP / unsolicited NA).
    Announce,
    /// One announcement now, outside the rounds.
    AnnounceOnce,
    StopAnnouncing,
    /// Remove the VIPs.
    Release,
    /// Add again the VIP that was removed (`Some`) or every VIP (`None`).
    Reclaim(Option<Vip>),
    /// Read the link state again (netlink notifications were lost).
    CheckLink,
    /// Send the conflict watch's probes (ARP probe / DAD solicitation).
    Probe,
}

/// Something the driver logs, records or passes on; none of it changes a
/// decision already taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The gate passed after `took`; the claim goes ahead (rule 14).
    GatePassed {
        took: Duration,
    },
    /// The gate failed or timed out: the instance is in fault for
    /// [`GATE_FAULT_HOLD`] if it was still waiting on it.
    GateFailed {
        why: String,
        took: Duration,
    },
    /// The gate passed, but this node is no longer master waiting on it.
    GateOutdated {
        took: Duration,
    },
    /// The drain was rolled back: the successor gave up before it served
    /// (rule 16).
    DrainRolledBack {
        successor: String,
        why: String,
    },
    StateChanged {
        from: State,
        to: State,
        reason: Reason,
    },
    /// Planned overlaps are [`Notice::PlannedOverlap`], two masters that
    /// nobody planned [`Notice::OtherMasterHeard`] (rule 5).
    Notice(Notice),
    NameClash(IdentityEvent),
    Rejected {
        source: IpAddr,
        error: WireError,
    },
    /// An advert passed every check (for the advert-gap metric).
    AdvertAccepted {
        node_id: u64,
        master: bool,
    },
    /// A peer's source address is new: [`InstanceCore::known_sources`] changed.
    KnownSourcesChanged,
    /// This instance's own fault or weight for its sync group changed.
    SyncEntry(SyncEntry),
    /// The instance left its sync group (reload): remove its entry.
    SyncLeft,
    QuorumLost {
        heard: usize,
        total: u32,
        needed: usize,
    },
    QuorumRegained {
        heard: usize,
        total: u32,
    },
    /// The instance's own interface went up or down.
    LinkChanged {
        up: bool,
    },
    ForeignClaimStarted {
        addr: IpAddr,
        mac: Mac,
    },
    ForeignClaimEnded {
        addr: IpAddr,
        mac: Mac,
        sightings: u64,
        lasted: Duration,
    },
    /// The probe found nobody: the held-back claim goes ahead.
    ClaimCleared,
    ClaimRefused {
        addr: IpAddr,
        mac: Mac,
    },
    RefusalLifted {
        why: &'static str,
    },
    /// The shutdown the election was asked for is complete.
    ShutdownComplete,
    /// Something the etcd seat says the log should (rule 19).
    Store(StoreNotice),
}

/// What the core asks the driver to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this advert: the driver numbers it (the node's sequence), encodes,
    /// signs and sends it, with `replaced` as extension type 3 when set
    /// ([`wire::replaced_master_extension`]; rule 5), and extension type 4
    /// when `claim_pending` ([`wire::claim_pending_extension`]; rule 15).
    Advert {
        body: AdvertBody,
        boot_id: u64,
        replaced: Option<String>,
        claim_pending: bool,
    },
    Vips(VipOrder),
    Event(Event),
    /// Run `notify.after_release` once the VIP worker has carried out the
    /// [`VipOrder::Release`] before this output; the release left this node
    /// in state `to` for `reason` (rule 17).
    RunAfterRelease {
        to: State,
        reason: String,
    },
    /// Carry this out against etcd and feed the result to
    /// [`InstanceCore::handle_store`] (rule 19).
    Store(StoreAction),
    /// Run the gate (`notify.before_claim`) and feed its result to
    /// [`InstanceCore::handle_gate`]: this node became master `from` that
    /// state for `reason` (rule 14).
    RunGate {
        from: State,
        reason: String,
    },
}

/// How long a failed gate (`notify.before_claim`) keeps the instance in
/// fault before it may become master and try again (rule 14).
pub const GATE_FAULT_HOLD: Duration = Duration::from_secs(10);

/// The gate's progress (rule 14).
#[derive(Debug, Default)]
struct Gate {
    /// Started at; its result has not come back yet.
    running: Option<Instant>,
    /// It passed for the current claim: no second run until the VIPs go.
    passed: bool,
    /// It failed: the fault, and until when it lasts.
    fault: Option<(String, Instant)>,
}

/// A drain of a master, watched until its successor serves (rule 16).
#[derive(Debug, Default)]
struct DrainWatch {
    /// The master heard with a claim pending: node id and name.
    successor: Option<(u64, String)>,
}

/// One instance's rules (see the module docs).
#[derive(Debug)]
pub struct InstanceCore {
    cfg: InstanceConfig,
    election: Election,
    health: Tracker,
    identity: Identity,
    replay: ReplayGuard,
    /// node id → source address of its last accepted advert.
    sources: HashMap<u64, IpAddr>,
    /// node id → software version its adverts carry (extension field 1).
    peer_versions: HashMap<u64, String>,
    watch: ConflictWatch,
    /// A claim the watch holds back until its probe is done, and the
    /// announcement that waits with it.
    claim_deferred: bool,
    announce_deferred: bool,
    /// The gate before a claim (rule 14).
    gate: Gate,
    /// An advert of ours said the claim is pending since the last claim.
    said_pending: bool,
    /// Peers whose last advert said their claim is pending (rule 15).
    pending_claims: HashSet<u64>,
    /// A drain of this node while master, until its successor serves (rule 16).
    drain_watch: Option<DrainWatch>,
    /// Why the last drain was rolled back, until the next command.
    drain_rolled_back: Option<String>,
    /// Resumed after a crash (rule 12): the VIPs were held a moment ago, so
    /// the claim is not a cold one.
    resumed: bool,
    /// The fault of a refused cold claim.
    refusal: Option<String>,
    /// Foreign-claim episodes since the instance started.
    episodes: u64,
    link_up: bool,
    /// Claimed and not released since.
    claimed: bool,
    auth_failures: u64,
    /// The own sync entry last published (`None`: not yet).
    published: Option<SyncEntry>,
    /// When the quorum may next change without an input.
    quorum_recheck: Option<Instant>,
    /// VRRP mode: the address adverts go out from (rule 18).
    vrrp_source: Option<IpAddr>,
    /// `election = "etcd"` / `"patroni"`: the seat in etcd (rule 19).
    store: Option<StoreSeat>,
    outputs: VecDeque<Output>,
}

impl InstanceCore {
    /// A core for `cfg` on `node`, its replay guard seeded by the caller,
    /// starting at `now` with the link up and nothing claimed.
    pub fn new(
        cfg: InstanceConfig,
        node: &NodeFacts,
        start_drained: bool,
        replay: ReplayGuard,
        now: Instant,
    ) -> Self {
        let vrrp_source = node.vrrp_source.filter(|_| cfg.protocol.vrrp().is_some());
        let election_cfg = ElectionConfig {
            node_id: vrrp_source.map_or(node.node_id, address_id),
            node_name: node.node_name.clone(),
            group: cfg.group,
            startup_delay: node.startup_delay,
            start_drained,
            dialect: match cfg.protocol.vrrp().map(|v| v.version) {
                _ if cfg.store.is_some() => Dialect::Store,
                None => Dialect::Vipd,
                Some(VrrpVersion::V2) => Dialect::Vrrp2,
                Some(VrrpVersion::V3) => Dialect::Vrrp3,
            },
            route_ready_after: cfg.route.as_ref().map_or(Duration::ZERO, |r| r.ready_after),
            settings: election_settings(&cfg),
        };
        let identity = Identity::new(&election_cfg, node.boot_id);
        let store = cfg.store.as_ref().map(|st| {
            StoreSeat::new(
                SeatConfig {
                    node: node.node_name.clone(),
                    lease_ttl: st.lease_ttl,
                    on_unreachable: st.on_unreachable,
                    follow: st.follow.as_ref().map(|f| f.member.clone()),
                    handover_timeout: cfg.handover_timeout,
                },
                now,
            )
        });
        let mut core = Self {
            health: Tracker::new(&cfg),
            watch: ConflictWatch::new(probe_settings(&cfg)),
            election: Election::new(election_cfg, now),
            cfg,
            identity,
            replay,
            sources: HashMap::new(),
            peer_versions: HashMap::new(),
            claim_deferred: false,
            announce_deferred: false,
            refusal: None,
            episodes: 0,
            link_up: true,
            claimed: false,
            auth_failures: 0,
            published: None,
            resumed: false,
            gate: Gate::default(),
            said_pending: false,
            pending_claims: HashSet::new(),
            drain_watch: None,
            drain_rolled_back: None,
            quorum_recheck: None,
            vrrp_source,
            store,
            outputs: VecDeque::new(),
        };
        if core.store.is_some() {
            // The seat's first request (a lease) goes out at once.
            core.settle(now);
        }
        core
    }

    // ---------------------------------------------------------------- inputs

    /// A datagram addressed to this instance's group, from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: IpAddr, bytes: &[u8]) {
        if self.cfg.protocol.vrrp().is_some() {
            self.take_vrrp(now, source, bytes);
        } else {
            self.take_datagram(now, source, bytes);
        }
        self.settle(now);
    }

    fn take_datagram(&mut self, now: Instant, source: IpAddr, bytes: &[u8]) {
        let (mut advert, extensions) = match wire::decode_extended(
            bytes,
            self.cfg.group,
            &self.cfg.auth,
            &self.cfg.auth_accept,
        ) {
            Ok(a) => a,
            Err(error) => return self.reject(source, error),
        };
        // A peer's name reaches logs, hooks and terminals: printable only.
        advert.body.node_name = wire::printable_name(&advert.body.node_name);
        if advert.body.node_id == self.election.config().node_id {
            if let Some(event) = self.identity.hear(now, source, &advert) {
                self.push_event(Event::NameClash(event));
                self.apply_health(now);
            }
            return;
        }
        if let Err(error) = self.replay.check(&advert) {
            return self.reject(source, error);
        }
        let node_id = advert.body.node_id;
        make_room(&mut self.sources, node_id, &self.election);
        let new_source = self.sources.insert(node_id, source) != Some(source);
        make_room(&mut self.peer_versions, node_id, &self.election);
        if let Some(mac) = wire::link_address(&extensions) {
            self.watch.set_peer_mac(node_id, Mac(mac));
        }
        self.watch.handle_peer_heard();
        match wire::software_version(&extensions) {
            Some(version) => {
                if self.peer_versions.get(&node_id) != Some(&version) {
                    self.peer_versions.insert(node_id, version);
                }
            }
            None => {
                self.peer_versions.remove(&node_id);
            }
        }
        self.push_event(Event::AdvertAccepted {
            node_id,
            master: advert.body.flags.contains(wire::Flags::MASTER),
        });
        let pending = wire::claim_pending(&extensions);
        if pending {
            if self.pending_claims.len() >= MAX_REMEMBERED_NODES {
                let known: HashSet<u64> = self.election.peers().map(|p| p.node_id).collect();
                self.pending_claims.retain(|id| known.contains(id));
            }
            self.pending_claims.insert(node_id);
        } else {
            self.pending_claims.remove(&node_id);
        }
        // Before the election hears a release: rolled back, it takes over.
        self.watch_drain_hears(now, &advert.body, pending);
        self.election.handle_advert_replacing(
            now,
            &advert.body,
            wire::replaced_master(&extensions),
            pending,
        );
        if new_source {
            self.push_event(Event::KnownSourcesChanged);
        }
    }

    fn reject(&mut self, source: IpAddr, error: WireError) {
        self.auth_failures += 1;
        self.push_event(Event::Rejected { source, error });
    }

    /// Time passed: timers due at `now` fire.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(seat) = self.store.as_mut() {
            seat.handle_timeout(now);
        }
        if self
            .gate
            .fault
            .as_ref()
            .is_some_and(|(_, until)| *until <= now)
        {
            self.gate.fault = None;
            self.apply_health(now);
        }
        // Rule 16 before the election: a drain rolled back for a silent
        // successor lets the election call its step-down off.
        self.watch_drain_silence(now);
        self.election.handle_timeout(now);
        self.watch.handle_timeout(now);
        self.settle(now);
    }

    /// The gate ([`Output::RunGate`]) ended: `Ok` when it exited 0, else why
    /// not (rule 14).
    pub fn handle_gate(&mut self, now: Instant, result: Result<(), String>) {
        let Some(started) = self.gate.running.take() else {
            return;
        };
        let took = now.saturating_duration_since(started);
        let waiting = self.claim_deferred && self.election.state() == State::Master;
        match result {
            Ok(()) if waiting => {
                self.gate.passed = true;
                self.claim_deferred = false;
                self.push_event(Event::GatePassed { took });
                self.claim(now);
            }
            Ok(()) => self.push_event(Event::GateOutdated { took }),
            Err(why) => {
                self.claim_deferred = false;
                self.announce_deferred = false;
                let fault = format!("before_claim hook failed: {why}");
                self.push_event(Event::GateFailed {
                    why: why.clone(),
                    took,
                });
                if waiting {
                    self.gate.fault = Some((fault, now + GATE_FAULT_HOLD));
                    self.election
                        .hold_preemption_until(now + crash::CRASH_WINDOW);
                    self.apply_health(now);
                }
            }
        }
        self.settle(now);
    }

    /// A track script, file, interface lookup or guard result.
    pub fn handle_check(&mut self, now: Instant, event: CheckEvent) {
        if let CheckEvent::Gate { outcome } = event {
            let result = match outcome {
                RunOutcome::Success => Ok(()),
                other => Err(other.to_string()),
            };
            self.handle_gate(now, result);
            return;
        }
        self.health.on_event(event);
        self.apply_health(now);
        self.settle(now);
    }

    /// The instance's own interface is up or down.
    pub fn handle_link(&mut self, now: Instant, up: bool) {
        let was_up = self.link_up;
        self.link_up = up;
        // Before the health: the fault clears with a route wait already running.
        self.election.handle_uplink(now, up);
        self.health
            .set_link_down((!up).then(|| format!("interface {} is down", self.cfg.interface)));
        if up != was_up {
            self.push_event(Event::LinkChanged { up });
        }
        if up && !was_up && self.claimed {
            self.push(Output::Vips(VipOrder::Reclaim(None)));
        }
        self.apply_health(now);
        self.settle(now);
    }

    /// The interface came back under its name with a new index, `up` or not:
    /// the instance held nothing while it was gone, and follows the new link.
    pub fn handle_rebound(&mut self, now: Instant, up: bool, own_mac: Option<[u8; 6]>) {
        self.watch.set_own_mac(own_mac.map(Mac));
        self.link_up = false;
        self.handle_link(now, up);
    }

    /// A link other than the instance's own changed: a tracked interface?
    pub fn handle_interface(&mut self, now: Instant, name: &str, up: bool) {
        if self.health.set_interface(name, up) {
            self.apply_health(now);
            self.settle(now);
        }
    }

    /// An address was removed from the instance's interface.
    pub fn handle_address_removed(&mut self, now: Instant, addr: IpAddr) {
        let Some(vip) = self.cfg.vips.iter().find(|v| v.addr == addr).copied() else {
            return;
        };
        if self.claimed && self.election.state() == State::Master {
            self.push(Output::Vips(VipOrder::Reclaim(Some(vip))));
        }
        self.settle(now);
    }

    /// Netlink notifications were lost: the link and the VIPs are read again.
    pub fn handle_netlink_overrun(&mut self, now: Instant) {
        self.push(Output::Vips(VipOrder::CheckLink));
        if self.claimed {
            self.push(Output::Vips(VipOrder::Reclaim(None)));
        }
        self.settle(now);
    }

    /// The VIP worker cannot claim or announce (`Some(why)`), or can again.
    pub fn handle_claim_fault(&mut self, now: Instant, why: Option<String>) {
        self.health.set_claim_fault(why);
        self.apply_health(now);
        self.settle(now);
    }

    /// Someone on the link claimed one of the VIPs (ARP/NA).
    pub fn handle_sighting(&mut self, now: Instant, sighting: Sighting) {
        self.watch.handle_sighting(now, sighting);
        self.settle(now);
    }

    /// This node's MAC on the instance's interface (`None`: unknown).
    pub fn set_own_mac(&mut self, mac: Option<[u8; 6]>) {
        self.watch.set_own_mac(mac.map(Mac));
    }

    /// The sync board changed: every instance's own fault and weight.
    pub fn handle_sync_board(&mut self, now: Instant, board: &BTreeMap<String, SyncEntry>) {
        let Some(group) = &self.cfg.sync_group else {
            return;
        };
        let others = || group.instances.iter().filter(|m| **m != self.cfg.name);
        let fault = others().find_map(|m| {
            board
                .get(m)
                .and_then(|e| e.fault.as_ref())
                .map(|why| format!("sync group {}: member {m} is in fault ({why})", group.name))
        });
        let weights = others()
            .filter_map(|m| {
                let w = board.get(m)?.weight;
                (w != 0).then(|| {
                    (
                        w,
                        format!("sync group {}: member {m} weighs {w:+}", group.name),
                    )
                })
            })
            .collect();
        self.health.set_sync_fault(fault);
        self.health.set_sync_weights(weights);
        self.apply_health(now);
        self.settle(now);
    }

    /// An operator command (drain, undrain, promote).
    pub fn handle_command(&mut self, now: Instant, command: Command) -> Result<(), CommandError> {
        let follows = self
            .store
            .as_ref()
            .is_some_and(|s| s.config().follow.is_some());
        if follows && command == Command::Promote {
            return Err(CommandError::FollowsLeader);
        }
        let was_master = self.election.state() == State::Master;
        let was_drained = self.election.is_drained();
        let result = match self.election.handle_command(now, command) {
            // With etcd deciding, say who could not take over.
            Err(CommandError::NoSuccessor) if follows => Err(CommandError::LeaderCannotDrain),
            Err(CommandError::NoSuccessor) if self.store.is_some() => {
                Err(CommandError::NoStoreSuccessor)
            }
            other => other,
        };
        if result.is_ok() {
            self.drain_rolled_back = None;
            self.drain_watch = match command {
                // Rule 16: only a drain that hands the VIPs over is watched.
                Command::Drain { .. } if was_master && !was_drained => Some(DrainWatch::default()),
                Command::Drain { .. } => self.drain_watch.take(),
                Command::Undrain | Command::Promote => None,
            };
        }
        self.settle(now);
        result
    }

    /// The daemon restarted after a crash, this instance was master and its
    /// VIPs are still configured (rule 12): resume as master at once, or
    /// release them if this node may not be master. Called once, before any
    /// other input. Returns whether it resumed.
    pub fn handle_resume(&mut self, now: Instant) -> bool {
        self.resumed = true;
        let resumed = self.election.handle_resume(now);
        self.settle(now);
        resumed
    }

    /// No preemption before `until` (rule 13).
    pub fn hold_preemption_until(&mut self, until: Instant) {
        self.election.hold_preemption_until(until);
    }

    /// Stop: hand over (make-before-break) and release.
    pub fn handle_shutdown(&mut self, now: Instant) {
        if let Some(seat) = self.store.as_mut() {
            seat.handle_shutdown(now);
        }
        self.election.handle_shutdown(now);
        self.settle(now);
    }

    /// A result from etcd (rule 19).
    pub fn handle_store(&mut self, now: Instant, input: StoreInput) {
        if let Some(seat) = self.store.as_mut() {
            seat.handle(now, input);
            // The members' MACs: their claims are a member's, not foreign.
            for m in seat.members() {
                if let Some(mac) = m.info.as_ref().and_then(MemberInfo::mac_bytes) {
                    self.watch
                        .set_peer_mac(crate::config::node_id(&m.node), Mac(mac));
                }
            }
        }
        self.settle(now);
    }

    /// The daemon restarts this instance under another protocol: it stops
    /// at once, keeping the VIPs it holds, for the next instance to resume
    /// (the reload's protocol switch; rule 12 on the other side).
    pub fn handle_shutdown_keeping(&mut self, now: Instant) {
        self.election.handle_shutdown_keeping(now);
        self.settle(now);
    }

    /// A reload changed the configuration in place. `tracker`: the health
    /// tracker of restarted checks (state carried over), if they restarted.
    pub fn handle_reconfigure(
        &mut self,
        now: Instant,
        new: InstanceConfig,
        tracker: Option<Tracker>,
    ) {
        let old = std::mem::replace(&mut self.cfg, new);
        self.watch.set_probe(probe_settings(&self.cfg));
        if let Some(tracker) = tracker {
            self.health = tracker;
        }
        if election_settings(&old) != election_settings(&self.cfg) {
            self.election
                .handle_settings(now, election_settings(&self.cfg));
        }
        if self.cfg.guard.as_ref().is_none_or(|g| !g.quorum) {
            self.health.set_quorum_fault(None);
        }
        if old.sync_group != self.cfg.sync_group {
            self.published = None;
            if self.cfg.sync_group.is_none() {
                self.health.set_sync_fault(None);
                self.health.set_sync_weights(Vec::new());
                self.push_event(Event::SyncLeft);
            }
        }
        self.apply_health(now);
        self.settle(now);
    }

    /// The new transport of a reload could not be opened: the old one's
    /// settings stay.
    pub fn restore_transport(&mut self, old: &InstanceConfig) {
        self.cfg.peers.clone_from(&old.peers);
        self.cfg.port = old.port;
        self.cfg.multicast_group = old.multicast_group;
    }

    /// Unicast `peers` changed (reload): node ids last heard from an address
    /// no longer configured are forgotten. Returns their names.
    pub fn handle_peers_configured(&mut self, now: Instant) -> Vec<String> {
        if self.cfg.peers.is_empty() {
            // Multicast: every node on the link is heard, nobody is forgotten.
            return Vec::new();
        }
        let removed: Vec<u64> = self
            .sources
            .iter()
            .filter(|(_, addr)| !self.cfg.peers.contains(addr))
            .map(|(id, _)| *id)
            .collect();
        if removed.is_empty() {
            return Vec::new();
        }
        let names = self
            .election
            .peers()
            .filter(|p| removed.contains(&p.node_id))
            .map(|p| p.name.clone())
            .collect();
        self.sources.retain(|id, _| !removed.contains(id));
        self.election.handle_peers_removed(&removed);
        self.push_event(Event::KnownSourcesChanged);
        self.settle(now);
        names
    }

    // --------------------------------------------------------------- outputs

    /// The next thing to do, in order; `None` when there is nothing left.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When `handle_timeout` must be called if nothing else comes in.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.election.poll_timeout(),
            self.watch.poll_timeout(),
            self.identity.next_expiry(),
            self.quorum_recheck,
            self.gate.fault.as_ref().map(|(_, until)| *until),
            self.watched_successor()
                .map(|p| self.election.alive_until(p)),
            self.store.as_ref().and_then(StoreSeat::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The deadline, if any, that decides a takeover (the driver keeps it
    /// exactly).
    pub fn takeover_deadline(&self) -> Option<Instant> {
        self.election.takeover_deadline()
    }

    // ------------------------------------------------------------ read-only

    pub fn config(&self) -> &InstanceConfig {
        &self.cfg
    }

    pub fn election(&self) -> &Election {
        &self.election
    }

    pub fn health(&self) -> &Tracker {
        &self.health
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn replay(&self) -> &ReplayGuard {
        &self.replay
    }

    pub fn watch(&self) -> &ConflictWatch {
        &self.watch
    }

    /// The source address each peer was last heard from.
    pub fn sources(&self) -> &HashMap<u64, IpAddr> {
        &self.sources
    }

    /// The software version each peer's adverts carry.
    pub fn peer_versions(&self) -> &HashMap<u64, String> {
        &self.peer_versions
    }

    /// The addresses of the election's current peers, as last heard from.
    pub fn known_sources(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.election
            .peers()
            .filter_map(|p| self.sources.get(&p.node_id).copied())
    }

    /// Rejected datagrams since start.
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures
    }

    /// Foreign-claim episodes since start.
    pub fn foreign_claim_episodes(&self) -> u64 {
        self.episodes
    }

    /// Claimed and not released since.
    pub fn is_claimed(&self) -> bool {
        self.claimed
    }

    /// Master, with the claim still waiting (gate or probe; rule 15).
    pub fn claim_pending(&self) -> bool {
        self.election.state() == State::Master && !self.claimed
    }

    /// Whether the peer's last advert said its claim is pending (rule 15).
    pub fn peer_claim_pending(&self, node_id: u64) -> bool {
        self.pending_claims.contains(&node_id)
    }

    /// The seat in etcd, when etcd decides (rule 19).
    pub fn store(&self) -> Option<&StoreSeat> {
        self.store.as_ref()
    }

    /// Why the last drain was rolled back (rule 16), until the next command.
    pub fn drain_rolled_back(&self) -> Option<&str> {
        self.drain_rolled_back.as_deref()
    }

    pub fn link_up(&self) -> bool {
        self.link_up
    }

    // -------------------------------------------------------------- inside

    fn push(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    fn push_event(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    /// The end of every input: the name-clash episode's end, the quorum, and
    /// the election's and the watch's outputs until quiet.
    fn settle(&mut self, now: Instant) {
        if let Some(event) = self.identity.expire(now) {
            self.push_event(Event::NameClash(event));
            self.apply_health(now);
        }
        self.check_quorum(now);
        self.watch_drain_silence(now);
        // The election's actions can start a probe or end an episode, and a
        // refused claim changes the health: both until quiet (bounded).
        for _ in 0..4 {
            self.sync_store(now);
            self.drain_election(now);
            if !self.drain_conflicts(now) {
                break;
            }
        }
        self.sync_store(now);
    }

    /// Rule 19: the election's candidacy to the seat, the seat's verdict to
    /// the election, until neither changes (bounded); then the seat's
    /// requests and notices out.
    fn sync_store(&mut self, now: Instant) {
        // Out of `self` while the election's actions are drained below.
        let Some(mut seat) = self.store.take() else {
            return;
        };
        for _ in 0..3 {
            let master = self.election.state() == State::Master;
            let candidacy = Candidacy {
                eligible: self.election.is_eligible() && !self.election.is_stopped(),
                priority: self.election.effective_priority(),
                preempt: self.cfg.preempt,
                promoted: self.election.is_promoted(),
                serving: seat.token().filter(|_| master && self.claimed),
                mac: self.watch.own_mac().map(|m| m.0),
            };
            seat.handle_candidacy(now, candidacy);
            let verdict = seat.verdict(now);
            let before = self.election.state();
            self.election.handle_store(
                now,
                verdict.holds,
                verdict.successor,
                &verdict.why,
                verdict.holder.as_deref(),
            );
            if self.election.is_stopped() {
                seat.handle_released(now);
            }
            if self.election.state() == before {
                break;
            }
            // The election moved: its claim or release changes `serving`.
            self.drain_election(now);
        }
        while let Some(action) = seat.poll_action() {
            self.outputs.push_back(Output::Store(action));
        }
        while let Some(notice) = seat.poll_notice() {
            self.outputs.push_back(Output::Event(Event::Store(notice)));
        }
        self.store = Some(seat);
    }

    /// The tracker's health plus the name-clash and refused-claim faults,
    /// handed to the election; the own sync entry published when it changed.
    fn apply_health(&mut self, now: Instant) {
        self.election.handle_health(now, self.combined_health());
        if self.cfg.sync_group.is_some() {
            let own = self.health.sync_entry();
            if self.published.as_ref() != Some(&own) {
                self.published = Some(own.clone());
                self.push_event(Event::SyncEntry(own));
            }
        }
    }

    fn combined_health(&self) -> Health {
        let mut health = self.health.health();
        let gate = self.gate.fault.as_ref().map(|(why, _)| why.clone());
        for why in [self.identity.fault(), self.refusal.clone(), gate]
            .into_iter()
            .flatten()
        {
            health.fault = Some(match health.fault {
                Some(other) => format!("{why}; {other}"),
                None => why,
            });
        }
        health
    }

    fn check_quorum(&mut self, now: Instant) {
        let Some(total) = self
            .cfg
            .guard
            .as_ref()
            .filter(|g| g.quorum)
            .and_then(|g| g.peers_total)
        else {
            self.quorum_recheck = None;
            return;
        };
        let quorum = self.election.quorum(now, total);
        self.quorum_recheck = self.election.quorum_changes_at(now);
        let (heard, needed) = (quorum.heard, quorum.needed);
        let fault = (!quorum.is_met()).then(|| {
            format!("guard: quorum lost: hears {heard} of {total} nodes (itself included), needs {needed}")
        });
        if fault != self.health.quorum_fault() {
            self.push_event(if fault.is_some() {
                Event::QuorumLost {
                    heard,
                    total,
                    needed,
                }
            } else {
                Event::QuorumRegained { heard, total }
            });
            self.health.set_quorum_fault(fault);
            self.apply_health(now);
        }
    }

    fn drain_election(&mut self, now: Instant) {
        let mut released = false;
        while let Some(action) = self.election.poll_action() {
            match action {
                Action::SendAdvert { body, replaced } => {
                    let body = self.identity.outgoing(body);
                    let boot_id = self.identity.boot_id();
                    // Rule 15: a master's own claim, not a release (priority 0).
                    let claim_pending = body.flags.contains(wire::Flags::MASTER)
                        && body.priority > 0
                        && self.claim_pending();
                    self.said_pending |= claim_pending;
                    self.push(Output::Advert {
                        body,
                        boot_id,
                        replaced,
                        claim_pending,
                    });
                }
                Action::ClaimVips
                    if !self.cfg.notify.before_claim.is_empty() && !self.gate.passed =>
                {
                    // The gate first (rule 14); announcements wait with it.
                    self.claim_deferred = true;
                    if self.gate.running.is_none() {
                        self.gate.running = Some(now);
                        let (from, reason) = self
                            .election
                            .last_transition()
                            .map_or((State::Backup, String::new()), |t| {
                                (t.from, t.reason.to_string())
                            });
                        self.push(Output::RunGate { from, reason });
                    }
                }
                Action::ClaimVips => self.claim(now),
                Action::AnnounceVips if self.claim_deferred => self.announce_deferred = true,
                Action::AnnounceVips => self.push(Output::Vips(VipOrder::Announce)),
                Action::ReannounceVips if self.claim_deferred => {}
                Action::ReannounceVips => self.push(Output::Vips(VipOrder::AnnounceOnce)),
                Action::StopAnnouncing => {
                    self.announce_deferred = false;
                    self.push(Output::Vips(VipOrder::StopAnnouncing));
                }
                Action::ReleaseVips => {
                    released = true;
                    self.claimed = false;
                    self.gate.passed = false;
                    self.claim_deferred = false;
                    self.announce_deferred = false;
                    self.watch.handle_holding(now, false);
                    self.push(Output::Vips(VipOrder::Release));
                }
                Action::StateChanged { from, to, reason } => {
                    self.push_event(Event::StateChanged { from, to, reason });
                }
                Action::Notice(Notice::DrainRolledBack { why }) => {
                    // The election's VRRP-mode roll-back: nobody answered.
                    self.drain_watch = None;
                    self.drain_rolled_back = Some(why.clone());
                    self.push_event(Event::DrainRolledBack {
                        successor: "(none answered)".to_owned(),
                        why,
                    });
                }
                Action::Notice(notice) => self.push_event(Event::Notice(notice)),
                Action::ShutdownComplete => self.push_event(Event::ShutdownComplete),
            }
        }
        if released && !self.cfg.notify.after_release.is_empty() {
            // Rule 17: after the release, with the state it left this node in.
            let (to, reason) = self.election.last_transition().map_or_else(
                || (self.election.state(), "released after a restart".to_owned()),
                |t| (t.to, t.reason.to_string()),
            );
            self.push(Output::RunAfterRelease { to, reason });
        }
    }

    /// Claims the VIPs, or defers the claim for the conflict watch's probe
    /// when it is a cold one (no peer heard since start: rule 9); an
    /// announcement that waited goes with the claim.
    fn claim(&mut self, now: Instant) {
        // With etcd deciding, the claim is vouched for: never a cold one.
        let cold = self.sources.is_empty() && !self.resumed && self.cfg.store.is_none();
        if self.watch.handle_claim(now, cold) {
            self.claimed = true;
            self.push(Output::Vips(VipOrder::Claim));
            if std::mem::take(&mut self.announce_deferred) {
                self.push(Output::Vips(VipOrder::Announce));
            }
            if std::mem::take(&mut self.said_pending) {
                // Rule 15: the peers learn now that this node serves.
                self.election.advertise_now(now);
            }
        } else {
            self.claim_deferred = true;
        }
    }

    /// Rule 16, on an accepted advert (before the election hears it).
    fn watch_drain_hears(&mut self, now: Instant, body: &AdvertBody, pending: bool) {
        let Some(watch) = &mut self.drain_watch else {
            return;
        };
        let serving_master = body.flags.contains(wire::Flags::MASTER)
            && crate::election::Rank::of_advert(body).eligible;
        if serving_master && !pending {
            // A master serves: the drain is complete.
            self.drain_watch = None;
            return;
        }
        if serving_master {
            watch.successor = Some((body.node_id, body.node_name.clone()));
            return;
        }
        let Some((id, name)) = watch.successor.clone() else {
            return;
        };
        if id != body.node_id {
            return;
        }
        let what = if body.flags.contains(wire::Flags::FAULT) {
            "is in fault"
        } else if body.flags.contains(wire::Flags::SHUTTING_DOWN) {
            "is shutting down"
        } else {
            "released the VIPs"
        };
        self.roll_back_drain(now, name, format!("{what} before it claimed them"));
    }

    /// Rule 16: the watched successor went silent before it served.
    fn watch_drain_silence(&mut self, now: Instant) {
        let Some(successor) = self.watched_successor() else {
            return;
        };
        if self.election.is_alive(successor, now) {
            return;
        }
        let name = successor.name.clone();
        self.roll_back_drain(now, name, "went silent before it claimed them".to_owned());
    }

    /// The peer the drain watch follows, if it is still in the peer table.
    fn watched_successor(&self) -> Option<&crate::election::Peer> {
        let (id, _) = self.drain_watch.as_ref()?.successor.as_ref()?;
        self.election.peers().find(|p| p.node_id == *id)
    }

    fn roll_back_drain(&mut self, now: Instant, successor: String, what: String) {
        self.drain_watch = None;
        // Another live master that serves: nothing to roll back to.
        let other_serves = self.election.peers().any(|p| {
            p.name != successor
                && p.flags.contains(wire::Flags::MASTER)
                && p.rank().eligible
                && self.election.is_alive(p, now)
                && !self.pending_claims.contains(&p.node_id)
        });
        if other_serves || !self.election.is_drained() {
            return;
        }
        if self.election.handle_command(now, Command::Undrain).is_err() {
            return; // shutting down: the node is leaving anyway
        }
        let why = format!("successor {successor} {what}");
        self.drain_rolled_back = Some(why.clone());
        self.push_event(Event::DrainRolledBack { successor, why });
    }

    /// Takes the conflict watch's events; true if any changed the health.
    fn drain_conflicts(&mut self, now: Instant) -> bool {
        let mut health_changed = false;
        while let Some(event) = self.watch.poll_event() {
            match event {
                ConflictEvent::ForeignClaimStarted { addr, mac } => {
                    self.episodes += 1;
                    self.push_event(Event::ForeignClaimStarted { addr, mac });
                }
                ConflictEvent::ForeignClaimEnded {
                    addr,
                    mac,
                    sightings,
                    lasted,
                } => self.push_event(Event::ForeignClaimEnded {
                    addr,
                    mac,
                    sightings,
                    lasted,
                }),
                ConflictEvent::Reannounce => self.push(Output::Vips(VipOrder::AnnounceOnce)),
                ConflictEvent::SendProbes => self.push(Output::Vips(VipOrder::Probe)),
                ConflictEvent::ClaimCleared => {
                    if std::mem::take(&mut self.claim_deferred) {
                        self.claimed = true;
                        self.push_event(Event::ClaimCleared);
                        self.push(Output::Vips(VipOrder::Claim));
                        if std::mem::take(&mut self.announce_deferred) {
                            self.push(Output::Vips(VipOrder::Announce));
                        }
                        if std::mem::take(&mut self.said_pending) {
                            self.election.advertise_now(now);
                        }
                    }
                }
                ConflictEvent::ClaimRefused { addr, mac } => {
                    self.claim_deferred = false;
                    self.announce_deferred = false;
                    self.refusal = Some(format!(
                        "VIP {addr} is already answered for by {mac}, another host: not claiming it (probing again every {} s)",
                        crate::conflict::PROBE_RETRY.as_secs()
                    ));
                    self.push_event(Event::ClaimRefused { addr, mac });
                    health_changed = true;
                }
                ConflictEvent::RefusalLifted { why } => {
                    self.refusal = None;
                    self.push_event(Event::RefusalLifted { why });
                    health_changed = true;
                }
            }
        }
        if health_changed {
            self.apply_health(now);
        }
        health_changed
    }
}

/// Before `node_id` is added to a per-node map at its bound: the node ids no
/// longer in the election's peer table are forgotten (rule 4).
fn make_room<V>(map: &mut HashMap<u64, V>, node_id: u64, election: &Election) {
    if map.len() >= MAX_REMEMBERED_NODES && !map.contains_key(&node_id) {
        let known: HashSet<u64> = election.peers().map(|p| p.node_id).collect();
        map.retain(|id, _| known.contains(id));
    }
}

/// The conflict watch's probe settings: none in routed mode (no ARP/NA) or
/// with `announce_probe = false`.
fn probe_settings(cfg: &InstanceConfig) -> Option<ProbeSettings> {
    (cfg.route.is_none() && cfg.announce.probe).then(ProbeSettings::default)
}
