//! The election: every rule that decides who holds the VIPs, in this module.
//!
//! [`Election`] is a sans-IO state machine in the style of quinn-proto's
//! `Connection` and str0m's `Rtc`: it opens no socket, reads no clock and spawns
//! nothing. The caller feeds it inputs, each stamped with `now`:
//!
//! - [`Election::handle_advert`]: an advert from a peer, already authenticated and
//!   checked against replay by the transport;
//! - [`Election::handle_timeout`]: the deadline from [`Election::poll_timeout`] passed
//!   (early or repeated calls are harmless);
//! - [`Election::handle_command`]: an operator's drain, undrain or promote;
//! - [`Election::handle_health`]: a change of health (priority weights, fault);
//! - [`Election::handle_settings`]: a reload changed priority, preempt or
//!   intervals;
//! - [`Election::handle_peers_removed`]: a reload removed peers from the
//!   configuration;
//! - [`Election::handle_uplink`]: the instance's interface lost or regained
//!   carrier (routed mode's route readiness counts from it);
//! - [`Election::handle_shutdown`]: the daemon is stopping.
//!
//! After each input the caller drains [`Election::poll_action`] until it returns
//! `None`, carries the actions out in order, and sleeps until
//! [`Election::poll_timeout`] or the next input.
//!
//! # The rules
//!
//! They follow RFC 5798 (VRRPv3) where it speaks, and extend it where vipd knows
//! more than VRRP does. Every node, backups included, advertises (backups at the
//! slower `backup_advert_interval`), so each node knows which peers are alive and
//! how they rank.
//!
//! **Rank.** Nodes are ordered by [`Rank`]: eligible before ineligible (drained,
//! in fault, shutting down or releasing with priority 0); then an active
//! promotion, the later one first; then effective priority; then node id (RFC 5798
//! §6.4.3 breaks ties by the primary IP address; we use the stable node id).
//!
//! **Takeover** (RFC 5798 §6.1, §6.4.2). A backup follows the master it hears and
//! takes over when it has not heard it for `3 × Master_Adver_Interval + wait`.
//! The RFC's wait is `Skew_Time = (256 − priority) × Master_Adver_Interval / 256`.
//! vipd knows the live peers, so a backup that has been up long enough to have heard
//! every peer waits `(rank + 1) × takeover_margin` instead, where `rank` counts the
//! live eligible backups that outrank it (never more than the RFC skew). The best
//! backup thus moves a margin after `3 × interval` (3.002 s at 1 s adverts, against
//! VRRP's 3.61 s at priority 100) while the next ones stay a margin per rank behind,
//! long enough to hear the new master and stand down.
//!
//! **Release** (RFC 5798 §6.4.2, priority 0). A master that drains, faults or shuts
//! down advertises priority 0. Backups then take over after `rank × margin`
//! (the best one at once), or after Skew_Time when ranks are not yet known. A
//! followed master that starts advertising as a backup is treated the same way.
//!
//! **Master meets master** (RFC 5798 §6.4.3). A master that hears a better master
//! steps down: it stops announcing, advertises priority 0 at once and releases
//! the VIPs [`STEP_DOWN_LINGER`] later, so packets still sent to its MAC while
//! the new master's claim and gratuitous ARP land are not dropped. One that
//! hears a worse master stays and advertises at once so the other steps down.
//! When the better master says its claim is pending (its `before_claim` gate
//! runs: the advert's extension type 4, passed in as `claim_pending`), it
//! will claim only later: the stepping-down master keeps the VIPs until that
//! master says it serves and releases [`STEP_DOWN_LINGER`] after that, at
//! most `handover_timeout` after hearing it. If that master gives up before
//! serving (it releases, faults, shuts down, or goes silent past its
//! liveness window), the step-down is called off
//! ([`Notice::StepDownCalledOff`]): a node that may still be master stays
//! master and announces again; one that may not (drained, in fault, shutting
//! down) releases at once with priority 0. Why: while a database's standby
//! is promoted, clients reaching the old primary get an answer (a refusal
//! once it is fenced) instead of SYNs into a VIP nobody holds, which cost
//! them a TCP retransmission (1 s) each; and a promotion that fails must not
//! leave the VIPs nowhere. Without the field (an older build, or no gate) the
//! linger is as before.
//!
//! **Planned overlaps.** Every planned change of master overlaps: the new
//! master claims before the old one lets go (make-before-break), so both hold
//! the VIPs for [`STEP_DOWN_LINGER`] (longer when an advert is lost) and one
//! may hear the other as master. Such an overlap is planned — counted in
//! `planned_overlaps` with [`Notice::PlannedOverlap`], not as two masters —
//! when
//! (a) this node is the lower-ranked master and either hands over to the
//! master it hears (drain, stop: rule "Drain") or that master's advert names
//! this node as the master it replaced; or
//! (b) this node is the higher-ranked master, and the master it hears is the
//! one it replaced, heard within the window after the takeover.
//! A node replaced a master on purpose when it took over from it, a live
//! master it heard, by preemption (rule "Preempt": an undrain, a restart of
//! the preferred node, a priority restored by health or a reload) or by an
//! operator's promote. For a window after that takeover, the master-down
//! interval at the slower of the two nodes' advert intervals, its master
//! adverts name the replaced node ([`Action::SendAdvert`]'s `replaced`,
//! extension type 3 on the wire); never otherwise, and never while releasing.
//! Why that window: within it, not having heard each other yet is the loss of
//! an advert or two, which the protocol's own timing allows for; an overlap
//! that outlasts the time in which a backup declares a silent master dead is
//! a link failing, and worth the alarm. Everything else is
//! [`Notice::OtherMasterHeard`], counted in `other_master_heard`: a partition
//! healing, adverts lost one way, two nodes that became master without
//! hearing each other (neither replaced the other), a replaced node heard
//! after the window. The name is informational (the wire's compatibility
//! rule): it never changes who steps down, only how the overlap is counted.
//! Case (a) needs it: a lower master cannot tell a preemption from adverts
//! lost one way (in both it heard the other as a backup until that one
//! claimed), so a node replaced by a build that does not send the name counts
//! two masters. Case (b) needs nothing from the peer.
//!
//! **Clients follow the master** (FIELD-NOTES 2, 17, 19). A client goes wherever
//! the last gratuitous ARP or unsolicited NA it saw points, so after any moment
//! with two holders the master must be the last to announce. A master therefore
//! re-announces its VIPs whenever it learns that another node held them, or may
//! have: it hears another master (better or worse, releasing or not); it hears
//! a node it knew as master advertise as anything else (a step-down or release
//! it may have missed the start of); it hears a peer it did not know or had
//! lost (a node cut off for longer than its liveness window may have been
//! master on the other side of a partition, and may already have stepped down
//! by the time it is heard). It re-announces at once (at most every
//! [`REANNOUNCE_MIN_GAP`], except on a step-down or release: the other node has
//! just stopped announcing, so that round is final and always goes out) and
//! again [`REANNOUNCE_AFTER`] later — the first
//! repeat lands after the other node's release (it releases [`STEP_DOWN_LINGER`]
//! after hearing us), the later ones cover announcements of the other node that
//! were still in flight — so whatever order the two nodes' packets cross in,
//! clients end on the master's MAC. A trigger while the repeats run changes
//! nothing but its own immediate round. The
//! other half: a master on its way out (stepping down, handing over) stops
//! announcing at once, so none of its own late bursts pulls clients back.
//!
//! **Preempt** (RFC 5798 §6.4.2 "Preempt_Mode"). A backup that outranks the live
//! master takes over if `preempt` is on, after `preempt_delay` of outranking it
//! without a break, and never before `startup_delay` has passed. With preempt off a
//! better backup leaves the incumbent alone; two masters meeting still resolve by
//! rank (preempt does not apply between masters, as in the RFC).
//!
//! **Preempt waits for the route** (routed mode, FIELD-NOTES 35). A node
//! whose uplink has just regained carrier, or whose daemon has just started
//! (a reboot), wins the election within one advert, but its route reaches
//! the router only once its BGP session is up and its routing daemon has
//! sent the first update (in tests/routed.rs's FRR lab the session is up
//! about 150 ms after carrier, the update lands about a second later; after
//! a reboot the router may hold the old session for its hold time first). A
//! preemption before that makes the old master withdraw while nobody
//! announces the VIP. So in routed mode a node does not preempt before
//! `route.ready_after` (`cfg.route_ready_after`) has passed since it started
//! and since its uplink (the instance's interface) last regained carrier
//! ([`Election::handle_uplink`]); it waits as for `preempt_delay`, whichever
//! ends later, and never while the uplink is down. The wait is a hold-down,
//! not a report from the routing daemon: "session Established" would come
//! too early (the update follows a second later), whether the router has
//! taken the route is not visible from the node, and vipd then needs no
//! access to FRR or BIRD; a fail-back that comes a few seconds later costs
//! nothing while the other node serves. It holds back preemption only: a
//! node still takes over when the master goes silent or releases (taking
//! over a dead master's VIP cannot be worse than nobody announcing it), and
//! an operator's promote still takes over at once.
//!
//! **Drain** makes the node ineligible. A draining master keeps the VIPs and
//! advertises priority 0 until it hears the successor's first advert as master,
//! then releases [`STEP_DOWN_LINGER`] later (make-before-break), or releases when
//! `handover_timeout` passes.
//! A master refuses to drain when no eligible peer is alive, unless forced.
//!
//! **Promote** makes the node outrank every unpromoted node and become master at
//! once (the old master hears a better master and steps down after the new one
//! has claimed). Promotions are ordered without clocks by a Lamport counter: every
//! advert carries the highest promotion epoch its sender has seen; a promotion takes
//! `highest seen + 1`. A promoted node that hears a promotion with a higher
//! (epoch, node id) than its own drops its promotion: the later one wins. A
//! promotion ends with a drain, a fault, or when the node restarts.
//!
//! **Health**: effective priority is the configured priority plus the health
//! weights, clamped to 1..=254. A fault makes the node ineligible: a master in
//! fault releases at once (its service is broken) with a priority-0 advert.
//! A node that cannot claim its VIPs or announce them is in fault the same
//! way (the rule, with its retry and back-off, is in `health::claim`): a
//! master whose gratuitous ARPs do not go out holds addresses its clients do
//! not send to, while the node they do send to has released them, so handing
//! the VIPs to a peer that can announce them is the only way clients follow.
//!
//! **Reload** ([`Election::handle_settings`]). A reload may change the priority,
//! `preempt`, `preempt_delay`, the advert intervals, `takeover_margin`,
//! `handover_timeout` and the VIP digest of a running election. Nothing is
//! released and no state changes on its own: the node advertises the new
//! settings at once (the periodic advert re-armed at the new interval from now),
//! and the rules above decide. A backup that now outranks the master takes
//! over by the preempt rule (with `preempt` on; a `preempt_delay` stretch
//! starts again from the reload); one whose `preempt` went off stops waiting to
//! preempt. A master whose priority fell below a live backup stays master until
//! that backup preempts it (its claim comes first, then this master steps
//! down as for any better master: make-before-break); with `preempt` off on the
//! backups it stays. Peers follow the new interval from the next advert they
//! hear; `handover_timeout` applies from the next handover. A peer a reload
//! removed from the configuration ([`Election::handle_peers_removed`]) is
//! forgotten at once: it no longer counts as alive, as a successor or for
//! quorum, and nothing else changes (a backup following it keeps its
//! master-down timer, which runs out as if the peer had gone silent). A peer
//! a reload added is unknown until it is heard, like any new peer.
//!
//! **Start-up**: a node starts as backup (never straight to master: FIELD-NOTES 12)
//! and waits the master-down interval, or `startup_delay` if longer, before it
//! takes over an empty group; each better-ranked peer it hears meanwhile adds one
//! margin, so nodes started together claim in rank order instead of all at once.
//! And while it has followed no master yet, a better-ranked eligible peer it
//! hears as a backup goes first: when its own deadline comes and such a peer
//! is alive, this node waits until it is heard as master (and follows it) or
//! stops being alive. Why: the ranks
//! can change after the first deadline was set (a health check's weight lifts
//! a node's priority within its first interval), and two nodes whose
//! deadlines came from the same configured priority would otherwise claim
//! within milliseconds of each other, the worse one first as often as not;
//! behind a database's promotion gate, that promotes the standby.
//!
//! **Two nodes with one name.** The node id is derived from the node name, so
//! two nodes given the same name share it. The daemon settles that before the
//! election hears of it: the later starter (higher boot id) stands aside in
//! fault while it hears the other, so the pair never ends with two masters nor
//! with none; the rule, and what third nodes see, is in the daemon's instance
//! module (`daemon/instance/identity.rs`). An advert carrying this node's own id
//! that still reaches [`Election::handle_advert`] is ignored, with
//! [`Notice::DuplicateNodeId`] once.
//!
//! **Liveness.** A peer is alive while it is not shutting down and was heard
//! within `3 × its interval + takeover_margin`; only live peers rank, succeed or
//! are followed as master.
//!
//! **Quorum** (the split-brain guard's `quorum = true`, checked by
//! [`Election::quorum`]). A node hears quorum when it counts itself plus the peers
//! not shutting down and heard within `2 × their interval + takeover_margin`, and
//! that is at least `total / 2 + 1` of the group's `total` nodes. Two intervals,
//! not three: quorum is then lost before a backup's master-down interval (three
//! intervals) runs out, so a node cut off from the majority faults before it
//! could take over. (With quorum on, config makes backups advertise at the
//! master's interval, so every peer is heard often enough to count.)
//!
//! **VRRP mode** (`protocol = "vrrp2"` / `"vrrp3"`, [`Dialect`]). To join a
//! cluster of VRRP routers (keepalived), the election keeps every rule above
//! except where VRRP's peers could not follow it:
//! - *Silent backups* (RFC 9568 §6.4.2): only a master advertises — its
//!   adverts, and priority 0 when it resigns (drain, fault, stop) — never a
//!   backup, a drained or faulted node, nor a master stepping down for a
//!   better one (RFC §6.4.3: it just becomes backup). Why: a VRRP backup that
//!   hears priority 0 takes over after its skew time, and keepalived pushes
//!   its own next advert back by an interval for every packet it receives.
//!   A master that hears priority 0 advertises at once (RFC §6.4.3).
//! - *The RFC's timing*: a backup takes over after `3 × Master_Adver_Interval
//!   + Skew_Time`, and after Skew_Time when the master releases; ranks are
//!   never "known" (backups are silent), so the per-rank margins do not
//!   apply. VRRPv3's skew scales with the master's interval; VRRPv2's is
//!   `(256 − priority) / 256` seconds whatever the interval (RFC 3768 §6.1).
//! - *Ties* go to the higher primary address: the instance core gives the
//!   node and its peers node ids that order as their source addresses do.
//! - *Priority 255* is the address owner's: such a node becomes master at
//!   start without waiting (RFC §6.4.1).
//! - *Promote* advertises priority 255 while promoted, since the promotion
//!   epoch cannot travel: every RFC peer then yields as to an address owner.
//! - *Drain and stop hand over make-before-break without seeing a
//!   successor.* A master that drains or stops advertises priority 0 and
//!   keeps the VIPs until it hears a new master (then lingers as for any
//!   handover) or `handover_timeout` passes. On that timeout a stop releases,
//!   but a drain (not `--force`) rolls back: the node is undrained, stays
//!   master and announces again ([`Notice::DrainRolledBack`]). Why: backups
//!   are silent, so the refusal "nobody could take over" cannot be decided
//!   up front; it is decided by whether anyone did.
//! - What this mode gives up: no HMAC, no replay guard, no planned-overlap
//!   names (an overlap a VRRP peer causes counts as two masters), no status
//!   of the backups.
//!
//! **The store decides** (`election = "etcd"` / `"patroni"`, [`Dialect::Store`]).
//! A key in etcd says who holds the VIPs ([`crate::store`] keeps the rules of
//! the key); the election keeps its states, health, drain, promote, the
//! gate's and the handover's bookkeeping, and gives up its own timing:
//! - No adverts, no master-down or preempt timers: [`Election::handle_store`]
//!   makes an eligible backup master when the store says it holds, and
//!   returns a master to backup when it no longer does (a handover's end,
//!   when it was handing over).
//! - Drain's "could anyone take over" is the store's answer (another
//!   eligible member is published), and a drain or stop of a master waits,
//!   make-before-break, for the store to name the successor serving, at most
//!   `handover_timeout`.
//! - Promote marks the node promoted and leaves the move to the store (the
//!   holder hands over to it).
//!
//! Why: nodes that decide through etcd need not share a segment; their
//! adverts would not reach each other, and etcd's quorum is the arbiter.
//!
//! # Layout
//!
//! - this file: [`Election`], its `handle_*`/`poll_*` API and the rule methods;
//! - `api`: the plain data crossing the boundary ([`ElectionConfig`], [`Command`],
//!   [`Health`] in; [`Action`], [`Notice`], [`State`], [`Reason`] out);
//! - `peers`: the peer table, [`Rank`], liveness and quorum counting;
//! - `timers`: the table of deadlines behind [`Election::poll_timeout`].

mod api;
mod peers;
mod timers;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::wire::{AdvertBody, Flags};

pub use api::{
    Action, Command, CommandError, Counters, Dialect, ElectionConfig, Health, Notice,
    PlannedOverlap, Reason, Settings, State, Transition,
};
use peers::{interval_of, PeerTable};
pub use peers::{Peer, Quorum, Rank};
use timers::{Timer, Timers};

/// How long a master keeps the VIPs after hearing the node that replaces it.
/// The successor says "master" before its netlink claim and first gratuitous ARP
/// are done (about a millisecond or two on a LAN); releasing at once would drop
/// the packets still addressed to the old MAC in that window. Both nodes holding
/// the address for a moment is harmless: the gratuitous ARP decides where
/// clients send.
pub const STEP_DOWN_LINGER: Duration = Duration::from_millis(20);

/// How soon a master may re-announce at once again after an immediate round
/// (a peer insisting every interval over a one-way link must not turn into a
/// gratuitous-ARP storm).
pub const REANNOUNCE_MIN_GAP: Duration = Duration::from_millis(100);

/// When a master repeats its announcements after learning that another node
/// held its VIPs, counted from the trigger: first just after the other node's
/// release (its [`STEP_DOWN_LINGER`] plus a little), then spread over a second.
pub const REANNOUNCE_AFTER: [Duration; 4] = [
    Duration::from_millis(25),
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_millis(1000),
];

/// A master this node replaced on purpose (the rule "Planned overlaps"), and
/// until when hearing it as master is a planned overlap.
#[derive(Clone, Debug)]
struct Replaced {
    node_id: u64,
    name: String,
    until: Instant,
}

/// A master on its way out: why, and whom to follow afterwards.
#[derive(Clone, Debug)]
struct StepDown {
    reason: Reason,
    successor: AdvertBody,
    /// The successor has not said it serves yet (its claim is pending).
    claim_pending: bool,
    /// While the claim is pending: when to stop waiting for it.
    give_up_at: Instant,
}

/// One instance's election. See the module docs for the rules.
#[derive(Debug)]
pub struct Election {
    cfg: ElectionConfig,
    state: State,
    started_at: Instant,
    health: Health,
    drained: bool,
    /// `Some(epoch)` while promoted.
    promotion: Option<u64>,
    /// The highest promotion epoch seen anywhere (Lamport clock).
    max_epoch_seen: u64,
    shutting_down: bool,
    /// The node has finished shutting down; it ignores all input.
    stopped: bool,
    /// Set while a master waits for its successor (drain or shutdown).
    handing_over: bool,
    /// The drain was forced (`--force`): VRRP mode's handover timeout then
    /// releases instead of rolling back.
    drain_forced: bool,
    /// Set while a master that heard a better master (or its successor) keeps
    /// the VIPs for [`STEP_DOWN_LINGER`] before it lets go.
    stepping_down: Option<StepDown>,
    /// While master: the master this node replaced on purpose, within the
    /// window after the takeover.
    replaced: Option<Replaced>,
    peers: PeerTable,
    /// The master this backup follows, if any.
    followed_master: Option<u64>,
    timers: Timers,
    actions: VecDeque<Action>,
    last_transition: Option<Transition>,
    /// The last immediate re-announce round.
    last_reannounce: Option<Instant>,
    /// The pending re-announce repeats: when they were triggered and which of
    /// [`REANNOUNCE_AFTER`] is next.
    reannounce: Option<(Instant, usize)>,
    /// Why the armed master-down timer will fire, when not plain silence.
    reason_pending: Option<Reason>,
    duplicate_id_noticed: bool,
    /// Whether the instance's interface has carrier (assumed at start; the
    /// caller says otherwise at once).
    uplink_up: bool,
    /// When this node's route can be taken as announceable (the rule "Preempt
    /// waits for the route"); `None` while the uplink is down.
    route_ready_at: Option<Instant>,
    /// [`Notice::PreemptWaitsForRoute`] went out for the current wait.
    route_wait_noticed: bool,
    /// Set by [`Election::hold_preemption_until`].
    preempt_held_until: Option<Instant>,
    /// The rule "The store decides": another node could take the VIPs.
    store_successor: bool,
    counters: Counters,
}

/// The API: inputs (`handle_*`, each stamped with `now`) and outputs (`poll_*`).
impl Election {
    /// A new election, starting as backup at `now`.
    pub fn new(cfg: ElectionConfig, now: Instant) -> Self {
        let cfg_route_ready_after = cfg.route_ready_after;
        let mut election = Self {
            drained: cfg.start_drained,
            peers: PeerTable::new(cfg.settings.takeover_margin),
            cfg,
            state: State::Initialize,
            started_at: now,
            health: Health::default(),
            promotion: None,
            max_epoch_seen: 0,
            shutting_down: false,
            stopped: false,
            handing_over: false,
            drain_forced: false,
            stepping_down: None,
            replaced: None,
            followed_master: None,
            timers: Timers::default(),
            actions: VecDeque::new(),
            last_transition: None,
            last_reannounce: None,
            reannounce: None,
            reason_pending: None,
            duplicate_id_noticed: false,
            uplink_up: true,
            route_ready_at: Some(now + cfg_route_ready_after),
            route_wait_noticed: false,
            preempt_held_until: None,
            store_successor: false,
            counters: Counters::default(),
        };
        // RFC 5798 §6.4.1: a non-owner starts as backup with Master_Down_Timer set.
        election.transition(now, State::Backup, Reason::Startup);
        // VRRP's address owner (priority 255) does not wait (RFC 9568 §6.4.1).
        let owner = election.vrrp() && election.cfg.settings.priority == 255;
        let first_wait = if owner {
            election.cfg.startup_delay
        } else {
            election
                .own_master_down_interval()
                .max(election.cfg.startup_delay)
        };
        let first_deadline = now + first_wait;
        if !election.store() {
            election.timers.set(Timer::MasterDown, first_deadline);
        }
        election.send_advert(now);
        election
    }

    /// An authenticated advert from a peer of this group that names no master
    /// it replaced (the adverts of builds that do not send the name, and every
    /// advert outside a takeover's window).
    pub fn handle_advert(&mut self, now: Instant, body: &AdvertBody) {
        self.handle_advert_replacing(now, body, None, false);
    }

    /// An authenticated advert from a peer of this group; `replaced` is the
    /// node name its sender says it replaced on purpose, if it says so
    /// (extension type 3; the rule "Planned overlaps"); `claim_pending`:
    /// its sender is master but has not claimed yet (extension type 4; the
    /// rule "Master meets master").
    pub fn handle_advert_replacing(
        &mut self,
        now: Instant,
        body: &AdvertBody,
        replaced: Option<&str>,
        claim_pending: bool,
    ) {
        if self.stopped || body.group != self.cfg.group || self.store() {
            return;
        }
        if body.node_id == self.cfg.node_id {
            if !self.duplicate_id_noticed {
                self.duplicate_id_noticed = true;
                self.notice(Notice::DuplicateNodeId {
                    peer: body.node_name.clone(),
                });
            }
            return;
        }
        self.counters.adverts_received += 1;
        self.max_epoch_seen = self.max_epoch_seen.max(body.promote_epoch);
        let first_heard = !self.peers.contains(body.node_id);
        let known = self
            .peers
            .get(body.node_id)
            .map(|p| (p.is_master(), self.is_alive(p, now)));
        self.record_peer(now, body);
        if first_heard {
            self.defer_for_better_starter(body);
        }
        self.supersede_promotion(body);

        let theirs = Rank::of_advert(body);
        let is_master = body.flags.contains(Flags::MASTER);
        if self.step_down_successor_heard(now, body, is_master && theirs.eligible, claim_pending) {
            return;
        }
        match self.state {
            State::Master if is_master && theirs.eligible => {
                self.master_meets_master(now, body, replaced, claim_pending);
            }
            State::Backup if is_master && theirs.eligible => self.backup_hears_master(now, body),
            State::Backup if self.followed_master == Some(body.node_id) => {
                // The master we follow released (priority 0, drained, fault,
                // shutting down) or stepped down: RFC 5798 §6.4.2 priority 0.
                let releasing_wait = self.takeover_wait(now, true);
                if self.is_eligible() && !self.other_live_master(now, body.node_id) {
                    self.reason_pending = Some(Reason::MasterReleased {
                        peer: body.node_name.clone(),
                    });
                    self.timers
                        .set_earlier(Timer::MasterDown, now + releasing_wait);
                }
            }
            _ => {}
        }
        if self.state == State::Master {
            let was_master = known.is_some_and(|(master, _)| master);
            let lost_or_new = known.is_none_or(|(_, alive)| !alive);
            // A step-down or release: the other node has stopped announcing,
            // so a round of ours now is final; it goes out even within
            // REANNOUNCE_MIN_GAP.
            let released = (is_master && !theirs.eligible) || (was_master && !is_master);
            if released {
                if self.vrrp() && self.stepping_down.is_none() && !self.handing_over {
                    // RFC 9568 §6.4.3: a master hearing priority 0 advertises
                    // at once, so the releasing node's backups hear a master.
                    self.send_advert(now);
                }
                self.clients_may_be_elsewhere(now, true);
            } else if is_master || lost_or_new {
                self.clients_may_be_elsewhere(now, false);
            }
        }
    }

    /// A deadline from [`Self::poll_timeout`] may have passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        if self.timers.is_due(Timer::Handover, now) {
            self.timers.clear(Timer::Handover);
            if let Some(step) = self.stepping_down.take() {
                let alive = self
                    .peers
                    .get(step.successor.node_id)
                    .is_some_and(|p| self.peers.is_alive(p, now));
                if step.claim_pending && !alive {
                    // Silent before it served: as if it had given up.
                    self.call_off_step_down(now, step);
                } else {
                    // Served (the linger is over), or still alive but its
                    // claim outlasted handover_timeout: follow it.
                    self.release_to_backup(now, step.reason, Some(&step.successor));
                }
            } else if self.state == State::Master && self.handing_over {
                if self.vrrp() && self.drained && !self.drain_forced && !self.shutting_down {
                    self.roll_back_vrrp_drain(now);
                } else {
                    self.release_to_backup(now, Reason::HandoverTimeout, None);
                }
            }
        }
        if self.timers.is_due(Timer::MasterDown, now) && self.store() {
            // The store decides; nothing times out into mastership.
            self.timers.clear(Timer::MasterDown);
        }
        if self.timers.is_due(Timer::Preempt, now) && self.store() {
            self.timers.clear(Timer::Preempt);
        }
        if self.timers.is_due(Timer::MasterDown, now) {
            self.timers.clear(Timer::MasterDown);
            if let Some(until) = self
                .better_starter_alive_until(now)
                .filter(|_| self.state == State::Backup)
            {
                // Start-up: the better peer claims first, or goes silent.
                self.timers.set(Timer::MasterDown, until);
            } else if self.state == State::Backup && self.is_eligible() {
                let reason = self.reason_pending.take().unwrap_or(Reason::MasterDown);
                self.become_master(now, reason);
            }
        }
        if self.timers.is_due(Timer::Preempt, now) {
            self.timers.clear(Timer::Preempt);
            if self.state == State::Backup && self.is_eligible() {
                if let Some(peer) = self.outranked_master(now) {
                    // The uplink may have flapped since the timer was armed.
                    match self.route_ready_at {
                        Some(at) if at <= now || self.promotion.is_some() => {
                            self.become_master(now, Reason::Preempting { peer });
                        }
                        Some(at) => self.timers.set(Timer::Preempt, at),
                        // Down: the fault rule holds the node; carrier's
                        // return starts a new wait.
                        None => {}
                    }
                }
            }
        }
        if self.timers.is_due(Timer::Reannounce, now) {
            self.timers.clear(Timer::Reannounce);
            self.reannounce_round_due(now);
        }
        if let Some(deadline) = self.timers.get(Timer::Advert) {
            if deadline <= now {
                self.send_advert(now);
            }
        }
    }

    /// The daemon restarted after a crash while this node was master, and its
    /// VIPs are still configured (rule "Resume after a crash"): called once,
    /// right after [`Election::new`], before any other input. An eligible node
    /// becomes master at once without waiting for the master-down interval, so
    /// the peers, still following this node from its last boot, never take
    /// over. A node that is not eligible (drained, in fault) releases what it
    /// still holds and tells the peers with a priority-0 advert, as a master
    /// in fault does. Returns whether it resumed.
    pub fn handle_resume(&mut self, now: Instant) -> bool {
        if self.stopped || self.state != State::Backup {
            return false;
        }
        if self.is_eligible() {
            self.become_master(now, Reason::Resumed);
            true
        } else {
            self.send_release_advert();
            self.actions.push_back(Action::ReleaseVips);
            false
        }
    }

    /// Advertise now, outside the cadence: something the advert says outside
    /// the election changed (the instance core's claim went ahead).
    pub fn advertise_now(&mut self, now: Instant) {
        if !self.stopped {
            self.send_advert(now);
        }
    }

    /// No preemption before `until` (rule "A node that keeps crashing does not
    /// preempt"): the node still takes over a master that goes silent or
    /// releases, and an operator's promote still works.
    pub fn hold_preemption_until(&mut self, until: Instant) {
        self.preempt_held_until = Some(until);
    }

    /// An operator's command. Errors say why it was refused; nothing changed then.
    pub fn handle_command(&mut self, now: Instant, command: Command) -> Result<(), CommandError> {
        if self.shutting_down || self.stopped {
            return Err(CommandError::ShuttingDown);
        }
        match command {
            Command::Drain { force } => self.drain(now, force),
            Command::Undrain => {
                self.undrain(now);
                Ok(())
            }
            Command::Promote => self.promote(now),
        }
    }

    /// Health changed: new priority weights and/or fault.
    pub fn handle_health(&mut self, now: Instant, health: Health) {
        if self.stopped || health == self.health {
            return;
        }
        let was_fault = self.health.fault.is_some();
        self.health = health;
        match (&self.health.fault, was_fault) {
            (Some(why), _) if self.state != State::Fault => {
                let reason = Reason::Fault { why: why.clone() };
                // A promoted node whose service broke must not grab the VIPs
                // back when it recovers: the promotion ends here.
                self.promotion = None;
                if self.state == State::Master {
                    self.send_release_advert();
                    self.actions.push_back(Action::ReleaseVips);
                }
                self.handing_over = false;
                self.stepping_down = None;
                self.timers.clear(Timer::Handover);
                self.timers.clear(Timer::MasterDown);
                self.timers.clear(Timer::Preempt);
                self.transition(now, State::Fault, reason);
                self.send_advert(now);
            }
            (None, true) if self.state == State::Fault => {
                self.transition(now, State::Backup, Reason::FaultCleared);
                self.timers
                    .set(Timer::MasterDown, now + self.own_master_down_interval());
                self.send_advert(now);
            }
            _ => {
                // Only the priority moved: tell the peers now, and see whether
                // this node now outranks the master it follows.
                self.send_advert(now);
                if self.state == State::Backup {
                    self.consider_preempt(now);
                }
            }
        }
    }

    /// A reload changed the settings (the rule "Reload"): advertise them now and
    /// let the election decide; nothing is released here.
    pub fn handle_settings(&mut self, now: Instant, settings: Settings) {
        if self.stopped || settings == self.cfg.settings {
            return;
        }
        self.peers.set_margin(settings.takeover_margin);
        self.cfg.settings = settings;
        // Re-armed from now at the new interval (send_advert keeps no cadence
        // for a deadline still ahead).
        self.timers.clear(Timer::Advert);
        self.send_advert(now);
        if self.state == State::Backup && !self.shutting_down {
            // A preempt_delay stretch starts again; preempt off stops it.
            self.timers.clear(Timer::Preempt);
            self.consider_preempt(now);
        }
    }

    /// The instance's interface lost (`up` false) or regained carrier (the
    /// rule "Preempt waits for the route"): its return starts the wait for
    /// `route_ready_after` again. Repeats of the same state change nothing.
    pub fn handle_uplink(&mut self, now: Instant, up: bool) {
        if self.stopped || up == self.uplink_up {
            return;
        }
        self.uplink_up = up;
        self.route_ready_at = up.then(|| now + self.cfg.route_ready_after);
        self.route_wait_noticed = false;
    }

    /// A reload removed these peers (by node id) from the configuration: they
    /// are forgotten (the rule "Reload"); nothing is advertised or released.
    pub fn handle_peers_removed(&mut self, node_ids: &[u64]) {
        for id in node_ids {
            self.peers.remove(*id);
            if self.followed_master == Some(*id) {
                self.followed_master = None;
            }
        }
    }

    /// The daemon is stopping. A master hands over make-before-break when a
    /// successor is alive; [`Action::ShutdownComplete`] follows once the VIPs are
    /// released (at the latest after `handover_timeout`).
    pub fn handle_shutdown(&mut self, now: Instant) {
        if self.shutting_down || self.stopped {
            return;
        }
        self.shutting_down = true;
        self.promotion = None;
        self.timers.clear(Timer::MasterDown);
        self.timers.clear(Timer::Preempt);
        if self.stepping_down.is_some() {
            // The linger timer releases, then finishes the shutdown.
            self.send_advert(now);
        } else if self.state == State::Master && (self.vrrp() || self.has_successor(now)) {
            // VRRP mode: backups are silent, so a successor cannot be seen;
            // the handover waits for one to answer (the rule "VRRP mode").
            self.start_handover(now);
        } else {
            if self.state == State::Master {
                self.send_release_advert();
                self.actions.push_back(Action::ReleaseVips);
                self.transition(now, State::Backup, Reason::Shutdown);
            }
            self.finish_shutdown(now);
        }
    }

    /// The daemon restarts the instance under another protocol: stop now,
    /// sending nothing and keeping the VIPs, for the next instance to resume
    /// them (it calls [`Election::handle_resume`]).
    pub fn handle_shutdown_keeping(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        self.shutting_down = true;
        self.stopped = true;
        self.timers.clear_all();
        let _ = now;
        self.actions.push_back(Action::ShutdownComplete);
    }

    /// The next action to carry out, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        self.timers.next()
    }

    /// The earliest deadline that can start a takeover (master down, preempt
    /// delay passed), if any: the caller may keep it more exactly than the
    /// others, whose being a millisecond late only delays an advert.
    pub fn takeover_deadline(&self) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        [Timer::MasterDown, Timer::Preempt]
            .into_iter()
            .filter_map(|t| self.timers.get(t))
            .min()
    }
}

/// Queries for status, the control socket and the daemon; none changes anything.
impl Election {
    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &ElectionConfig {
        &self.cfg
    }

    /// Configured priority plus health weights, clamped to 1..=254.
    pub fn effective_priority(&self) -> u8 {
        if self.cfg.settings.priority == 255 && self.health.priority_delta == 0 {
            // VRRP's address owner (config allows 255 only in VRRP mode).
            return 255;
        }
        let p = i32::from(self.cfg.settings.priority) + self.health.priority_delta;
        // Clamped into 1..=254, so the cast cannot truncate.
        p.clamp(1, 254) as u8
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn is_drained(&self) -> bool {
        self.drained
    }

    pub fn is_promoted(&self) -> bool {
        self.promotion.is_some()
    }

    pub fn is_handing_over(&self) -> bool {
        self.handing_over
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// May this node be master at all?
    pub fn is_eligible(&self) -> bool {
        !self.drained && self.health.fault.is_none() && !self.shutting_down
    }

    /// This node's rank as its peers see it.
    pub fn rank(&self) -> Rank {
        Rank {
            eligible: self.is_eligible(),
            promotion: self.promotion.unwrap_or(0),
            priority: self.effective_priority(),
            node_id: self.cfg.node_id,
        }
    }

    /// Peers heard, alive or not.
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter()
    }

    /// Is the peer still within its liveness window (3 of its advert intervals
    /// plus `takeover_margin`), and not shutting down?
    pub fn is_alive(&self, peer: &Peer, now: Instant) -> bool {
        self.peers.is_alive(peer, now)
    }

    /// When the peer stops being alive unless it is heard again.
    pub fn alive_until(&self, peer: &Peer) -> Instant {
        self.peers.alive_until(peer)
    }

    /// Does this node hear a majority of its group of `total` nodes (itself
    /// included)? The quorum rule in the module docs: it counts itself plus the
    /// peers not shutting down and heard within `2 × their interval +
    /// takeover_margin`, and needs `total / 2 + 1`. The caller faults the node
    /// (through [`Health::fault`]) while the quorum is not met.
    pub fn quorum(&self, now: Instant, total: u32) -> Quorum {
        self.peers.quorum(now, total)
    }

    /// When [`Self::quorum`] may next change without an input: the moment the
    /// first peer counted now drops out of its window.
    pub fn quorum_changes_at(&self, now: Instant) -> Option<Instant> {
        self.peers.quorum_changes_at(now)
    }

    /// The master as this node knows it: its own node id when master.
    pub fn master(&self, now: Instant) -> Option<u64> {
        if self.state == State::Master {
            return Some(self.cfg.node_id);
        }
        self.peers.best_live_master(now).map(|p| p.node_id)
    }

    /// Is an eligible peer alive that could take the VIPs?
    pub fn has_successor(&self, now: Instant) -> bool {
        if self.store() {
            return self.store_successor;
        }
        self.peers.has_live_eligible(now)
    }

    /// The store's verdict after every input (the rule "The store decides"):
    /// `holds`, this node may hold the VIPs; `successor`, another node could
    /// take them (drain's check); `why` it may or may not, for the
    /// transition; `holder`, whom the store names.
    pub fn handle_store(
        &mut self,
        now: Instant,
        holds: bool,
        successor: bool,
        why: &str,
        holder: Option<&str>,
    ) {
        if self.stopped || !self.store() {
            return;
        }
        self.store_successor = successor;
        if holds && self.state == State::Backup && self.is_eligible() {
            self.become_master(
                now,
                Reason::StoreGranted {
                    how: why.to_owned(),
                },
            );
        } else if !holds && self.state == State::Master {
            let reason = match holder {
                Some(peer) if self.handing_over => Reason::HandoverComplete {
                    peer: peer.to_owned(),
                },
                _ => Reason::StoreWithdrawn {
                    why: why.to_owned(),
                },
            };
            self.release_to_backup(now, reason, None);
        }
    }

    pub fn last_transition(&self) -> Option<&Transition> {
        self.last_transition.as_ref()
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// RFC 5798 §6.1 Master_Down_Interval for a master advertising `interval`,
    /// with this node's skew: the bound vipd never exceeds.
    pub fn master_down_interval(&self, interval: Duration) -> Duration {
        interval * 3 + self.skew(self.effective_priority(), interval)
    }
}

/// The rules of the module docs, one method each where it can be.
impl Election {
    fn backup_hears_master(&mut self, now: Instant, body: &AdvertBody) {
        let theirs = Rank::of_advert(body);
        let interval = interval_of(body);
        let ours = self.cfg.settings.advert_interval;
        let mismatch_is_new = self
            .peers
            .get_mut(body.node_id)
            .is_some_and(|peer| peer.interval_mismatch_is_new(ours));
        if mismatch_is_new {
            self.notice(Notice::IntervalMismatch {
                peer: body.node_name.clone(),
                theirs: interval,
                ours,
            });
        }
        // A master this node outranks, with preempt on (or promoted): take over,
        // but keep following it until then so master-down stays armed.
        let mine = self.rank();
        let follow_best = match self.followed_master.and_then(|id| self.peers.get(id)) {
            Some(current) if current.node_id != body.node_id && self.is_alive(current, now) => {
                current.is_master() && current.rank() > theirs
            }
            _ => false,
        };
        if !follow_best {
            self.followed_master = Some(body.node_id);
        }
        let wait = self.takeover_wait(now, false);
        self.reason_pending = None;
        self.timers
            .set(Timer::MasterDown, now + interval * 3 + wait);
        if mine.eligible && mine > theirs && (self.cfg.settings.preempt || self.promotion.is_some())
        {
            self.consider_preempt(now);
        } else {
            self.timers.clear(Timer::Preempt);
        }
    }

    /// Nodes that start together with no master all wait the same start-up
    /// interval; equal priorities would then claim at the same instant. Each
    /// better-ranked peer heard before any master pushes this node's first
    /// takeover one margin later, so simultaneous starters claim in rank order.
    fn defer_for_better_starter(&mut self, body: &AdvertBody) {
        let theirs = Rank::of_advert(body);
        let waiting_for_first_master =
            self.state == State::Backup && self.followed_master.is_none();
        if waiting_for_first_master
            && !body.flags.contains(Flags::MASTER)
            && theirs.eligible
            && theirs > self.rank()
        {
            if let Some(at) = self.timers.get(Timer::MasterDown) {
                self.timers
                    .set(Timer::MasterDown, at + self.cfg.settings.takeover_margin);
            }
        }
    }

    /// The rule "Start-up": while this node has followed no master, a
    /// better-ranked eligible peer heard as a backup goes first. The moment
    /// the last of them stops being alive, if any is alive now.
    fn better_starter_alive_until(&self, now: Instant) -> Option<Instant> {
        if self.followed_master.is_some() {
            return None;
        }
        let mine = self.rank();
        self.peers
            .iter()
            .filter(|p| {
                !p.is_master() && p.rank().eligible && p.rank() > mine && self.is_alive(p, now)
            })
            .map(|p| self.peers.alive_until(p))
            .max()
    }

    /// Arm or fire preemption if this backup outranks the live master.
    fn consider_preempt(&mut self, now: Instant) {
        if !(self.cfg.settings.preempt || self.promotion.is_some()) || !self.is_eligible() {
            return;
        }
        let Some(peer) = self.outranked_master(now) else {
            self.timers.clear(Timer::Preempt);
            return;
        };
        if self.promotion.is_some() {
            self.become_master(now, Reason::Preempting { peer });
            return;
        }
        // The rule "Preempt waits for the route": never while the uplink is
        // down, and not before the route can be announced.
        let Some(route_ready_at) = self.route_ready_at else {
            self.timers.clear(Timer::Preempt);
            return;
        };
        let earliest = (self.started_at + self.cfg.startup_delay)
            .max(route_ready_at)
            .max(self.preempt_held_until.unwrap_or(now));
        if self.cfg.settings.preempt_delay.is_zero() && now >= earliest {
            self.become_master(now, Reason::Preempting { peer });
        } else if self.timers.get(Timer::Preempt).is_none() {
            let at = (now + self.cfg.settings.preempt_delay).max(earliest);
            self.timers.set(Timer::Preempt, at);
            if route_ready_at > now && !self.route_wait_noticed {
                self.route_wait_noticed = true;
                self.notice(Notice::PreemptWaitsForRoute {
                    peer,
                    ready_in: route_ready_at - now,
                });
            }
        }
    }

    /// The name of the best live master, if this node outranks it.
    fn outranked_master(&self, now: Instant) -> Option<String> {
        let best = self.peers.best_live_master(now)?;
        (self.rank() > best.rank()).then(|| best.name.clone())
    }

    /// The rule "Master meets master" for the successor of a step-down
    /// that waits for its claim: it serves (release a linger later) or gave
    /// up before serving (call the step-down off, or release at once when
    /// this node may not stay master). True when the advert is dealt with.
    fn step_down_successor_heard(
        &mut self,
        now: Instant,
        body: &AdvertBody,
        serving_master: bool,
        claim_pending: bool,
    ) -> bool {
        let Some(step) = self.stepping_down.as_mut() else {
            return false;
        };
        if !step.claim_pending || step.successor.node_id != body.node_id {
            return false;
        }
        if serving_master && claim_pending {
            // Heard again: it stays alive for longer.
            let give_up_at = step.give_up_at;
            self.arm_pending_step_down(body.node_id, give_up_at);
            return false;
        }
        if serving_master {
            step.claim_pending = false;
            step.successor = body.clone();
            let linger_until = now + STEP_DOWN_LINGER;
            let release_at = self
                .timers
                .get(Timer::Handover)
                .map_or(linger_until, |t| t.min(linger_until));
            self.timers.set(Timer::Handover, release_at);
            return false;
        }
        if let Some(step) = self.stepping_down.take() {
            self.call_off_step_down(now, step);
        }
        true
    }

    /// The successor of a step-down gave up, or went silent, before it
    /// served: stay master if this node may, else release at once.
    fn call_off_step_down(&mut self, now: Instant, step: StepDown) {
        self.timers.clear(Timer::Handover);
        let stays = self.is_eligible() && !self.shutting_down;
        self.notice(Notice::StepDownCalledOff {
            peer: step.successor.node_name.clone(),
            stays,
        });
        if stays {
            // Still holding the VIPs: announce them again, say so.
            self.handing_over = false;
            self.actions.push_back(Action::AnnounceVips);
            self.send_advert(now);
        } else {
            self.release_to_backup(now, step.reason, None);
        }
    }

    /// The linger of a step-down whose successor's claim is pending ends at
    /// `give_up_at`, or when the successor stops being alive if sooner.
    fn arm_pending_step_down(&mut self, successor: u64, give_up_at: Instant) {
        let silent_at = self
            .peers
            .get(successor)
            .map_or(give_up_at, |p| self.peers.alive_until(p));
        self.timers.set(Timer::Handover, give_up_at.min(silent_at));
    }

    fn master_meets_master(
        &mut self,
        now: Instant,
        body: &AdvertBody,
        replaced: Option<&str>,
        claim_pending: bool,
    ) {
        if self.stepping_down.is_some() {
            return;
        }
        let theirs = Rank::of_advert(body);
        let peer = body.node_name.clone();
        if theirs > self.rank() {
            // The rule "Planned overlaps", case (a).
            let planned = if self.handing_over {
                Some(PlannedOverlap::HandingOver)
            } else if replaced == Some(self.cfg.node_name.as_str()) {
                Some(PlannedOverlap::ReplacedUs)
            } else {
                None
            };
            self.count_overlap(&peer, planned, false);
            let reason = match planned {
                Some(PlannedOverlap::HandingOver) => Reason::HandoverComplete { peer },
                Some(_) => Reason::ReplacedOnPurpose { peer },
                None => Reason::BetterMaster { peer },
            };
            // Make-before-break: keep the VIPs a moment longer while the new
            // master's claim and gratuitous ARP land; say priority 0 meanwhile.
            // A new master whose claim waits (its gate runs) claims later:
            // keep them until it serves, within handover_timeout.
            let linger_until = if claim_pending {
                now + self.cfg.settings.handover_timeout
            } else {
                now + STEP_DOWN_LINGER
            };
            let release_at = self
                .timers
                .get(Timer::Handover)
                .map_or(linger_until, |t| t.min(linger_until));
            self.stepping_down = Some(StepDown {
                reason,
                successor: body.clone(),
                claim_pending,
                give_up_at: release_at,
            });
            self.stop_announcing();
            if claim_pending {
                self.arm_pending_step_down(body.node_id, release_at);
            } else {
                self.timers.set(Timer::Handover, release_at);
            }
            self.send_advert(now);
        } else {
            // Case (b): the master this node replaced, still heard.
            let planned = self
                .replaced
                .as_ref()
                .is_some_and(|r| r.node_id == body.node_id && now < r.until)
                .then_some(PlannedOverlap::WeReplaced);
            self.count_overlap(&peer, planned, true);
            // Clients may have moved to the other's MAC: handle_advert
            // re-announces (the rule "Clients follow the master").
            self.send_advert(now);
        }
    }

    /// Two masters at once: counted and told as planned or not.
    fn count_overlap(&mut self, peer: &str, planned: Option<PlannedOverlap>, we_stay: bool) {
        let peer = peer.to_owned();
        let notice = match planned {
            Some(why) => {
                self.counters.planned_overlaps += 1;
                Notice::PlannedOverlap { peer, why }
            }
            None => {
                self.counters.other_master_heard += 1;
                Notice::OtherMasterHeard { peer, we_stay }
            }
        };
        self.notice(notice);
    }

    /// The rule "Clients follow the master": another node held, or may have
    /// held, our VIPs. Announce now and repeat on the schedule. `released`: the
    /// other node said it is letting go, so this round is the one that must
    /// not be skipped.
    fn clients_may_be_elsewhere(&mut self, now: Instant, released: bool) {
        if self.handing_over || self.stepping_down.is_some() {
            return;
        }
        let quiet = self
            .last_reannounce
            .is_none_or(|at| now.saturating_duration_since(at) >= REANNOUNCE_MIN_GAP);
        if quiet || released {
            self.last_reannounce = Some(now);
            self.actions.push_back(Action::ReannounceVips);
        }
        // A schedule already running goes on as it is: a new trigger neither
        // postpones its next repeat nor, under a peer insisting every interval,
        // turns the repeats into a stream.
        if self.reannounce.is_none() {
            self.reannounce = Some((now, 0));
            self.timers
                .set(Timer::Reannounce, now + REANNOUNCE_AFTER[0]);
        }
    }

    /// A repeat of the re-announce schedule is due.
    fn reannounce_round_due(&mut self, now: Instant) {
        let Some((since, step)) = self.reannounce.take() else {
            return;
        };
        if self.state != State::Master || self.handing_over || self.stepping_down.is_some() {
            return;
        }
        self.last_reannounce = Some(now);
        self.actions.push_back(Action::ReannounceVips);
        if let Some(after) = REANNOUNCE_AFTER.get(step + 1) {
            self.reannounce = Some((since, step + 1));
            self.timers.set(Timer::Reannounce, since + *after);
        }
    }

    /// On the way out: no more announcements of ours (the VIPs stay until the
    /// release, so packets in flight are still answered).
    fn stop_announcing(&mut self) {
        self.reannounce = None;
        self.timers.clear(Timer::Reannounce);
        self.actions.push_back(Action::StopAnnouncing);
    }

    fn drain(&mut self, now: Instant, force: bool) -> Result<(), CommandError> {
        if self.drained {
            return Ok(());
        }
        // VRRP mode: backups are silent; whether one takes over decides
        // between the handover and the roll-back (the rule "VRRP mode").
        let successor = self.vrrp() || self.has_successor(now);
        if self.state == State::Master && !successor && !force {
            return Err(CommandError::NoSuccessor);
        }
        self.drained = true;
        self.drain_forced = force;
        self.promotion = None;
        self.timers.clear(Timer::MasterDown);
        self.timers.clear(Timer::Preempt);
        if self.state == State::Master && self.stepping_down.is_some() {
            // Already on the way out; the linger timer finishes the job.
            self.send_advert(now);
        } else if self.state == State::Master {
            if successor {
                self.start_handover(now);
            } else {
                self.send_release_advert();
                self.actions.push_back(Action::ReleaseVips);
                self.transition(now, State::Backup, Reason::DrainedWithoutSuccessor);
                self.send_advert(now);
            }
        } else {
            self.send_advert(now);
        }
        Ok(())
    }

    fn undrain(&mut self, now: Instant) {
        if !self.drained {
            return;
        }
        self.drained = false;
        if self.handing_over && self.stepping_down.is_none() {
            self.handing_over = false;
            self.timers.clear(Timer::Handover);
        }
        if self.state == State::Backup {
            let wait = match self.master(now).and_then(|id| self.peers.get(id)) {
                Some(m) => m.interval * 3 + self.takeover_wait(now, false),
                None => self.own_master_down_interval(),
            };
            self.timers.set(Timer::MasterDown, now + wait);
            self.consider_preempt(now);
        }
        self.send_advert(now);
    }

    fn promote(&mut self, now: Instant) -> Result<(), CommandError> {
        if let Some(why) = &self.health.fault {
            return Err(CommandError::InFault(why.clone()));
        }
        if self.drained {
            return Err(CommandError::Drained);
        }
        // Saturates: a peer (or a forged advert without a key) may claim
        // u64::MAX; wrapping to 0 would make our promotion the oldest of all.
        let epoch = self.max_epoch_seen.saturating_add(1);
        self.max_epoch_seen = epoch;
        self.promotion = Some(epoch);
        if self.state == State::Master {
            self.send_advert(now);
        } else if self.store() {
            // The store's holder hands over to the promoted node.
        } else {
            self.become_master(now, Reason::Promoted);
        }
        Ok(())
    }

    /// A later promotion elsewhere ends ours.
    fn supersede_promotion(&mut self, body: &AdvertBody) {
        let Some(mine) = self.promotion else { return };
        if body.flags.contains(Flags::PROMOTED)
            && (body.promote_epoch, body.node_id) > (mine, self.cfg.node_id)
        {
            self.promotion = None;
            self.notice(Notice::PromotionSuperseded {
                peer: body.node_name.clone(),
            });
        }
    }

    fn start_handover(&mut self, now: Instant) {
        self.handing_over = true;
        self.stop_announcing();
        self.notice(Notice::HandoverStarted);
        self.timers
            .set(Timer::Handover, now + self.cfg.settings.handover_timeout);
        self.send_advert(now);
    }

    fn become_master(&mut self, now: Instant, reason: Reason) {
        self.timers.clear(Timer::MasterDown);
        self.timers.clear(Timer::Preempt);
        self.followed_master = None;
        self.reason_pending = None;
        // The rule "Planned overlaps": a takeover on purpose from a live master.
        let on_purpose = matches!(reason, Reason::Preempting { .. } | Reason::Promoted);
        self.replaced = self
            .peers
            .best_live_master(now)
            .filter(|_| on_purpose)
            .map(|peer| {
                let slower = self.cfg.settings.advert_interval.max(peer.interval);
                Replaced {
                    node_id: peer.node_id,
                    name: peer.name.clone(),
                    until: now + self.master_down_interval(slower),
                }
            });
        self.transition(now, State::Master, reason);
        self.actions.push_back(Action::ClaimVips);
        self.actions.push_back(Action::AnnounceVips);
        self.send_advert(now);
    }

    /// Leave master: release the VIPs and become backup, following `successor` if known.
    fn release_to_backup(&mut self, now: Instant, reason: Reason, successor: Option<&AdvertBody>) {
        if successor.is_none() {
            // Nobody has claimed: tell the backups to move now (priority 0).
            self.send_release_advert();
        }
        self.actions.push_back(Action::ReleaseVips);
        self.handing_over = false;
        self.stepping_down = None;
        self.timers.clear(Timer::Handover);
        self.transition(now, State::Backup, reason);
        match successor {
            Some(body) => {
                self.followed_master = Some(body.node_id);
                let at = now + interval_of(body) * 3 + self.takeover_wait(now, false);
                self.timers.set(Timer::MasterDown, at);
            }
            None => {
                self.followed_master = None;
                self.timers
                    .set(Timer::MasterDown, now + self.own_master_down_interval());
            }
        }
        self.send_advert(now);
        if self.shutting_down {
            self.finish_shutdown(now);
        }
    }

    fn finish_shutdown(&mut self, now: Instant) {
        self.send_advert(now);
        self.stopped = true;
        self.timers.clear_all();
        self.actions.push_back(Action::ShutdownComplete);
    }

    /// How long after `3 × interval` this backup waits before taking over.
    /// `releasing`: the master said it is leaving, so the best backup need not wait.
    fn takeover_wait(&self, now: Instant, releasing: bool) -> Duration {
        let master_interval = self
            .followed_master
            .and_then(|id| self.peers.get(id))
            .map_or(self.cfg.settings.advert_interval, |p| p.interval);
        let skew = self.skew(self.effective_priority(), master_interval);
        if self.vrrp() || !self.ranks_known(now) {
            return skew;
        }
        let mine = self.rank();
        let ahead = self.peers.live_backups_above(mine, now);
        let slots = if releasing { ahead } else { ahead + 1 };
        let slots = u32::try_from(slots).unwrap_or(u32::MAX);
        self.cfg
            .settings
            .takeover_margin
            .saturating_mul(slots)
            .min(skew)
    }

    /// Has this node been up long enough to have heard every live peer's backup
    /// advert? Until then it falls back to the RFC's skew.
    fn ranks_known(&self, now: Instant) -> bool {
        now >= self.started_at
            + self.cfg.settings.backup_advert_interval * 3
            + self.cfg.settings.takeover_margin
    }

    /// Whether the rule "VRRP mode" applies.
    fn vrrp(&self) -> bool {
        self.cfg.dialect.is_vrrp()
    }

    /// Whether the rule "The store decides" applies.
    fn store(&self) -> bool {
        self.cfg.dialect == Dialect::Store
    }

    /// Skew_Time for `priority` behind a master advertising every
    /// `interval`: VRRPv2's is in seconds whatever the interval.
    fn skew(&self, priority: u8, interval: Duration) -> Duration {
        match self.cfg.dialect {
            Dialect::Vrrp2 => skew_time(priority, Duration::from_secs(1)),
            Dialect::Vipd | Dialect::Vrrp3 | Dialect::Store => skew_time(priority, interval),
        }
    }

    /// VRRP mode: a drained master's priority-0 advert went unanswered for
    /// `handover_timeout`; it stays master, undrained, and announces again.
    fn roll_back_vrrp_drain(&mut self, now: Instant) {
        self.drained = false;
        self.handing_over = false;
        self.notice(Notice::DrainRolledBack {
            why: format!(
                "no VRRP master answered the priority-0 advert within handover_timeout ({} ms); this node stays master",
                self.cfg.settings.handover_timeout.as_millis()
            ),
        });
        self.actions.push_back(Action::AnnounceVips);
        self.send_advert(now);
    }

    fn other_live_master(&self, now: Instant, except: u64) -> bool {
        self.peers.live_masters(now).any(|p| p.node_id != except)
    }

    fn own_master_down_interval(&self) -> Duration {
        self.master_down_interval(self.cfg.settings.advert_interval)
    }
}

/// Bookkeeping: the peer table, state changes, and the adverts this node sends.
impl Election {
    fn record_peer(&mut self, now: Instant, body: &AdvertBody) {
        let peer = self.peers.record(now, body);
        if peer.vip_mismatch_is_new(self.cfg.settings.vip_digest) {
            self.notice(Notice::VipSetMismatch {
                peer: body.node_name.clone(),
            });
        }
    }

    fn transition(&mut self, now: Instant, to: State, reason: Reason) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        if to != State::Master {
            self.replaced = None;
            self.reannounce = None;
            self.timers.clear(Timer::Reannounce);
        }
        self.counters.transitions += 1;
        self.last_transition = Some(Transition {
            at: now,
            from,
            to,
            reason: reason.clone(),
        });
        self.actions
            .push_back(Action::StateChanged { from, to, reason });
    }

    fn notice(&mut self, notice: Notice) {
        self.actions.push_back(Action::Notice(notice));
    }

    /// The advert this node sends now, and re-arm the periodic timer.
    fn send_advert(&mut self, now: Instant) {
        if self.store() {
            self.timers.clear(Timer::Advert);
            return;
        }
        if self.vrrp() && (self.state != State::Master || self.stepping_down.is_some()) {
            // VRRP mode: only a master advertises; a step-down is silent.
            self.timers.clear(Timer::Advert);
            return;
        }
        let body = self.advert_body();
        if self.replaced.as_ref().is_some_and(|r| now >= r.until) {
            self.replaced = None;
        }
        // Only a master's own claim names the node it replaced: not a
        // releasing advert (priority 0).
        let replaced = self
            .replaced
            .as_ref()
            .filter(|_| body.priority > 0 && body.flags.contains(Flags::MASTER))
            .map(|r| r.name.clone());
        self.counters.adverts_sent += 1;
        self.actions
            .push_back(Action::SendAdvert { body, replaced });
        let interval = self.current_interval();
        let next = match self.timers.get(Timer::Advert) {
            // Keep the cadence when on time; never burst to catch up after a stall.
            Some(due) if due <= now && due + interval > now => due + interval,
            _ => now + interval,
        };
        self.timers.set(Timer::Advert, next);
    }

    /// A master's last word before it lets go: priority 0 (RFC 5798 §6.4.3).
    fn send_release_advert(&mut self) {
        if self.store() {
            return;
        }
        let mut body = self.advert_body();
        body.priority = 0;
        body.flags.set(Flags::MASTER, true);
        self.counters.adverts_sent += 1;
        self.actions.push_back(Action::SendAdvert {
            body,
            replaced: None,
        });
    }

    fn advert_body(&self) -> AdvertBody {
        let mut flags = Flags::default();
        flags.set(Flags::MASTER, self.state == State::Master);
        flags.set(Flags::DRAINED, self.drained);
        flags.set(Flags::PROMOTED, self.promotion.is_some());
        flags.set(Flags::FAULT, self.health.fault.is_some());
        flags.set(Flags::SHUTTING_DOWN, self.shutting_down);
        let releasing =
            self.state == State::Master && (self.handing_over || self.stepping_down.is_some());
        AdvertBody {
            group: self.cfg.group,
            priority: if releasing {
                0
            } else if self.vrrp() && self.promotion.is_some() {
                // VRRP mode: the promotion travels as the owner's priority.
                255
            } else {
                self.effective_priority()
            },
            interval_cs: duration_to_cs(self.current_interval()),
            flags,
            node_id: self.cfg.node_id,
            promote_epoch: self.promotion.unwrap_or(self.max_epoch_seen),
            vip_digest: self.cfg.settings.vip_digest,
            node_name: self.cfg.node_name.clone(),
        }
    }

    fn current_interval(&self) -> Duration {
        if self.state == State::Master {
            self.cfg.settings.advert_interval
        } else {
            self.cfg.settings.backup_advert_interval
        }
    }
}

/// RFC 5798 §6.1: Skew_Time = ((256 − Priority) × Master_Adver_Interval) / 256.
pub fn skew_time(priority: u8, interval: Duration) -> Duration {
    interval * (256 - u32::from(priority)) / 256
}

/// Centiseconds for the wire, clamped to what VRRPv3's 12 bits can say.
fn duration_to_cs(d: Duration) -> u16 {
    let cs = (d.as_millis() / 10).clamp(1, 4095);
    // Clamped into 1..=4095 above.
    cs as u16
}

#[cfg(test)]
mod tests {
    //! One test per rule in the module docs; the simulation covers their interplay.
    use super::*;

    const I: Duration = Duration::from_millis(100);

    fn cfg(node_id: u64, priority: u8) -> ElectionConfig {
        ElectionConfig {
            node_id,
            node_name: format!("n{node_id}"),
            group: 1,
            startup_delay: Duration::ZERO,
            start_drained: false,
            dialect: Dialect::Vipd,
            route_ready_after: Duration::ZERO,
            settings: Settings {
                priority,
                advert_interval: I,
                backup_advert_interval: I,
                takeover_margin: Duration::from_millis(2),
                handover_timeout: I * 3,
                preempt: true,
                preempt_delay: Duration::ZERO,
                vip_digest: [0; 8],
            },
        }
    }

    /// An advert from `node_id` at a 100 ms interval; peers.rs's tests use it too.
    pub(super) fn advert(node_id: u64, priority: u8, flags: u8) -> AdvertBody {
        AdvertBody {
            group: 1,
            priority,
            interval_cs: 10,
            flags: Flags(flags),
            node_id,
            promote_epoch: 0,
            vip_digest: [0; 8],
            node_name: format!("n{node_id}"),
        }
    }

    fn drain(e: &mut Election) -> Vec<Action> {
        std::iter::from_fn(|| e.poll_action()).collect()
    }

    fn has(actions: &[Action], want: &Action) -> bool {
        actions.contains(want)
    }

    fn sent(actions: &[Action]) -> Vec<&AdvertBody> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::SendAdvert { body, .. } => Some(body),
                _ => None,
            })
            .collect()
    }

    /// Run timers up to `until`, collecting actions.
    fn run_to(e: &mut Election, until: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(t) = e.poll_timeout() {
            if t > until {
                break;
            }
            e.handle_timeout(t);
            out.extend(drain(e));
        }
        out
    }

    /// A backup that has been up long enough to know the ranks, following master 9.
    fn settled_backup(now: Instant, priority: u8) -> (Election, Instant) {
        let mut e = Election::new(cfg(1, priority), now);
        drain(&mut e);
        let mut t = now;
        for _ in 0..5 {
            t += I;
            e.handle_advert(t, &advert(9, 200, Flags::MASTER));
            run_to(&mut e, t);
            drain(&mut e);
        }
        (e, t)
    }

    #[test]
    fn starts_as_backup_and_claims_an_empty_group_after_the_master_down_interval() {
        let t0 = Instant::now();
        let mut e = Election::new(cfg(1, 100), t0);
        let first = drain(&mut e);
        assert!(has(
            &first,
            &Action::StateChanged {
                from: State::Initialize,
                to: State::Backup,
                reason: Reason::Startup
            }
        ));
        assert_eq!(e.state(), State::Backup);
        let mdi = e.master_down_interval(I);
        assert!(run_to(&mut e, t0 + mdi - Duration::from_millis(1))
            .iter()
            .all(|a| !matches!(a, Action::ClaimVips)));
        let actions = run_to(&mut e, t0 + mdi);
        assert!(has(&actions, &Action::ClaimVips));
        assert_eq!(e.state(), State::Master);
    }

    #[test]
    fn best_backup_takes_over_one_margin_after_three_intervals() {
        let t0 = Instant::now();
        let (mut e, last) = settled_backup(t0, 100);
        let actions = run_to(&mut e, last + I * 3 + Duration::from_millis(1));
        assert!(
            !has(&actions, &Action::ClaimVips),
            "not before 3 × interval + margin"
        );
        let actions = run_to(&mut e, last + I * 3 + Duration::from_millis(2));
        assert!(has(&actions, &Action::ClaimVips));
        // VRRP would have waited 3 × I + (256 − 100)/256 × I.
        assert!(skew_time(100, I) > Duration::from_millis(2));
    }

    #[test]
    fn second_ranked_backup_waits_one_more_margin() {
        let t0 = Instant::now();
        let mut e = Election::new(cfg(1, 100), t0);
        let mut t = t0;
        for _ in 0..5 {
            t += I;
            e.handle_advert(t, &advert(9, 200, Flags::MASTER));
            e.handle_advert(t, &advert(5, 150, 0)); // a better backup, alive
            run_to(&mut e, t);
        }
        drain(&mut e);
        assert!(!has(
            &run_to(&mut e, t + I * 3 + Duration::from_millis(3)),
            &Action::ClaimVips
        ));
        assert!(has(
            &run_to(&mut e, t + I * 3 + Duration::from_millis(4)),
            &Action::ClaimVips
        ));
    }

    #[test]
    fn priority_zero_lets_the_best_backup_take_over_at_once() {
        let t0 = Instant::now();
        let (mut e, last) = settled_backup(t0, 100);
        let t = last + Duration::from_millis(10);
        e.handle_advert(t, &advert(9, 0, Flags::MASTER | Flags::DRAINED));
        let actions = run_to(&mut e, t);
        assert!(has(&actions, &Action::ClaimVips));
        assert!(matches!(
            e.last_transition().map(|t| &t.reason),
            Some(Reason::MasterReleased { .. })
        ));
    }

    #[test]
    fn preempt_on_takes_over_from_a_worse_master_at_once() {
        let t0 = Instant::now();
        let mut e = Election::new(cfg(1, 150), t0);
        drain(&mut e);
        e.handle_advert(t0 + I, &advert(9, 100, Flags::MASTER));
        let actions = drain(&mut e);
        assert!(has(&actions, &Action::ClaimVips));
        assert!(matches!(
            e.last_transition().map(|t| &t.reason),
            Some(Reason::Preempting { .. })
        ));
    }

    #[test]
    fn preempt_off_leaves_the_incumbent_alone() {
        let t0 = Instant::now();
        let mut c = cfg(1, 150);
        c.settings.preempt = false;
        let mut e = Election::new(c, t0);
        drain(&mut e);
        let mut t = t0;
        for _ in 0..50 {
            t += I;
            e.handle_advert(t, &advert(9, 100, Flags::MASTER));
            assert!(!run_to(&mut e, t).contains(&Action::ClaimVips));
        }
        assert_eq!(e.state(), State::Backup);
    }

    #[test]
    fn preempt_delay_waits_for_an_unbroken_stretch() {
        let t0 = Instant::now();
        let mut c = cfg(1, 150);
        c.settings.preempt_delay = I * 5;
        let mut e = Election::new(c, t0);
        drain(&mut e);
        let mut t = t0;
        let mut claimed_at = None;
        for _ in 0..10 {
            t += I;
            e.handle_advert(t, &advert(9, 100, Flags::MASTER));
            if drain(&mut e).contains(&Action::ClaimVips)
                || run_to(&mut e, t).contains(&Action::ClaimVips)
            {
                claimed_at.get_or_insert(t);
            }
        }
        let claimed_at = claimed_at.expect("preempts after the delay");
        assert!(claimed_at >= t0 + I + I * 5);
    }

    #[test]
    fn master_steps_down_for_a_better_master_and_reannounces_against_a_worse_one() {
        let t0 = Instant::now();
        let mut e = Election::new(cfg(1, 150), t0);
        run_to(&mut e, t0 + I * 4);
        assert_eq!(e.state(), State::Master);
        let t = t0 + I * 5;
        e.handle_advert(t, &advert(2, 100, Flags::MASTER));
        let actions = drain(&mut e);
        assert!(
            has(&actions, &Action::ReannounceVips),
            "re-announce: clients may have followed the other"
        );
        assert!(sent(&actions)
            .iter()
            .any(|b| b.flags.contains(Flags::MASTER)));
        assert_eq!(e.state(), State::Master);
        e.handle_advert(t, &advert(3, 200, Flags::MASTER));
        let mut actions = drain(&mut e);
        assert!(
            !has(&actions, &Action::ReleaseVips),
            "keeps the VIPs while the new master's GARP lands"
        );
        actions.extend(run_to(&mut e, t + STEP_DOWN_LINGER));
        assert!(has(&actions, &Action::ReleaseVips));
        assert_eq!(e.state(), State::Backup);
    }

    // The rule "Planned overlaps".

    /// The overlap notices among `actions`.
    fn overlaps(actions: &[Action]) -> Vec<&Notice> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Notice(
                    n @ (Notice::OtherMasterHeard { .. } | Notice::PlannedOverlap { .. }),
                ) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// The `replaced` of each advert among `actions`.
    fn named(actions: &[Action]) -> Vec<Option<String>> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::SendAdvert { replaced, .. } => Some(replaced.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_preempting_master_names_the_master_it_replaced_for_the_window_only() {
        let t0 = Instant::now();
        let mut e = Election::new(cfg(1, 150), t0);
        drain(&mut e);
        let t = t0 + I;
        e.handle_advert(t, &advert(9, 100, Flags::MASTER));
        let claim = drain(&mut e);
        assert!(has(&claim, &Action::ClaimVips));
        assert_eq!(named(&claim), [Some("n9".to_owned())]);
        let window = e.master_down_interval(I);
        let within = run_to(&mut e, t + window - Duration::from_nanos(1));
        assert!(!named(&within).is_empty());
        assert!(named(&within).iter().all(|n| n.as_deref() == Some("n9")));
        let after = run_to(&mut e, t + window * 3);
        assert!(!named(&after).is_empty());
        assert!(named(&after).iter().all(Option::is_none), "{after:?}");
    }

    #[test]
    fn a_takeover_that_replaced_nobody_on_purpose_names_nobody() {
        // Master down: the old master went silent.
        let t0 = Instant::now();
        let (mut e, last) = settled_backup(t0, 100);
        let actions = run_to(&mut e, last + I * 10);
        assert!(has(&actions, &Action::ClaimVips));
        assert!(named(&actions).iter().all(Option::is_none));
        // Promoted with no master alive.
        let mut e = Election::new(cfg(1, 100), t0);
        drain(&mut e);
        e.handle_command(t0, Command::Promote).expect("promotes");
        let actions = drain(&mut e);
        assert!(has(&actions, &Action::ClaimVips));
        assert!(named(&actions).iter().all(Option::is_none));
    }

    #[test]
    fn the_replaced_master_heard_within_the_window_is_planned_and_after_it_two_masters() {
        let t0 = Instant::now();
        let (mut e, last) = settled_backup(t0, 100);
        let t = last + Duration::from_millis(10);
        e.handle_command(t, Command::Promote).expect("promotes");
        let actions = drain(&mut e);
        assert_eq!(named(&actions), [Some("n9".to_owned())]);
        // Its advert crossed ours: the overlap this node made on purpose.
        let crossed = t + Duration::from_millis(1);
        e.handle_advert(crossed, &advert(9, 200, Flags::MASTER));
        assert_eq!(
            overlaps(&drain(&mut e)),
            [&Notice::PlannedOverlap {
                peer: "n9".into(),
                why: PlannedOverlap::WeReplaced
            }]
        );
        // Still master after the window: it does not hear us. Two masters.
        let late = t + e.master_down_interval(I);
        run_to(&mut e, late);
        e.handle_advert(late, &advert(9, 200, Flags::MASTER));
        assert_eq!(
            overlaps(&drain(&mut e)),
            [&Notice::OtherMasterHeard {
                peer: "n9".into(),
                we_stay: true
            }]
        );
        let c = e.counters();
        assert_eq!((c.planned_overlaps, c.other_master_heard), (1, 1));
        // Another master than the one replaced is two masters at once.
        e.handle_advert(late, &advert(7, 100, Flags::MASTER));
        assert!(matches!(
            overlaps(&drain(&mut e))[..],
            [Notice::OtherMasterHeard { .. }]
        ));
    }

    #[test]
    fn a_master_named_as_replaced_steps_down_as_planned_and_otherwise_as_two_masters() {
        let t0 = Instant::now();
        for (replaced, planned) in [(Some("n1"), true), (Some("n7"), false), (None, false)] {
            let (mut e, t) = settled_master(t0);
            e.handle_advert_replacing(t, &advert(2, 200, Flags::MASTER), replaced, false);
            let mut actions = drain(&mut e);
            actions.extend(run_to(&mut e, t + STEP_DOWN_LINGER));
            assert!(
                has(&actions, &Action::ReleaseVips),
                "make-before-break as ever"
            );
            assert_eq!(e.state(), State::Backup);
            let c = e.counters();
            let reason = e.last_transition().map(|t| t.reason.clone());
            if planned {
                assert_eq!(
                    overlaps(&actions),
                    [&Notice::PlannedOverlap {
                        peer: "n2".into(),
                        why: PlannedOverlap::ReplacedUs
                    }]
                );
                assert_eq!((c.planned_overlaps, c.other_master_heard), (1, 0));
                assert_eq!(
                    reason,
                    Some(Reason::ReplacedOnPurpose { peer: "n2".into() })
                );
            } else {
                assert_eq!(
                    overlaps(&actions),
                    [&Notice::OtherMasterHeard {
                        peer: "n2".into(),
                        we_stay: false
                    }],
                    "{replaced:?}"
                );
                assert_eq!((c.planned_overlaps, c.other_master_heard), (0, 1));
                assert_eq!(reason, Some(Reason::BetterMaster { peer: "n2".into() }));
            }
        }
    }

    #[test]
    fn a_draining_master_hearing_its_successor_is_a_planned_overlap() {
        let t0 = Instant::now();
        let (mut e, t) = settled_master(t0);
        e.handle_command(t, Command::Drain { force: false })
            .expect("node 2 is alive");
        drain(&mut e);
        e.handle_advert(t + I, &advert(2, 100, Flags::MASTER));
        let actions = drain(&mut e);
        assert_eq!(
            overlaps(&actions),
            [&Notice::PlannedOverlap {
                peer: "n2".into(),
                why: PlannedOverlap::HandingOver
            }]
        );
        assert_eq!(e.counters().other_master_heard, 0);
    }

    /// A master up long enough to know its peers, with node 2 a live backup.
    fn settled_master(t0: Instant) -> (Election, Instant) {
        let mut e = Election::new(cfg(1, 150), t0);
        run_to(&mut e, t0 + I * 4);
        assert_eq!(e.state(), State::Master);
        // Long enough for the re-announce repeats that hearing node 2 for the
        // first time started to run out.
        let mut t = t0 + I * 4;
        for _ in 0..15 {
            t += I;
            e.handle_advert(t, &advert(2, 100, 0));
            run_to(&mut e, t);
            drain(&mut e);
        }
        (e, t)
    }

    /// The times of every re-announce round from `from` up to `until`.
    fn reannounce_times(e: &mut Election, from: Instant, until: Instant) -> Vec<Duration> {
        let mut times = Vec::new();
        let mut record = |actions: Vec<Action>, at: Instant| {
            for a in actions {
                if a == Action::ReannounceVips {
                    times.push(at - from);
                }
            }
        };
        record(drain(e), from);
        while let Some(t) = e.poll_timeout() {
            if t > until {
                break;
            }
            e.handle_timeout(t);
            record(drain(e), t);
        }
        times
    }

    #[test]
    fn clients_follow_the_master_after_the_loser_stepped_down_first() {
        // The partition healed and the loser heard us first: what reaches us
        // is its step-down advert (master, priority 0), then backup adverts.
        let (mut e, t) = settled_master(Instant::now());
        e.handle_advert(t, &advert(2, 0, Flags::MASTER));
        let times = reannounce_times(&mut e, t, t + Duration::from_secs(2));
        let mut want = vec![Duration::ZERO];
        want.extend(REANNOUNCE_AFTER);
        assert_eq!(
            times, want,
            "at once, after the loser's release, then spread"
        );
        assert!(
            REANNOUNCE_AFTER[0] > STEP_DOWN_LINGER,
            "the first repeat lands after the loser's release"
        );
        assert_eq!(e.state(), State::Master);
    }

    #[test]
    fn a_step_down_right_after_a_spurious_takeover_is_answered_at_once() {
        // A backup took over on lost adverts: we hear it as master (immediate
        // round), then 10 ms later its step-down. The step-down's round goes
        // out within REANNOUNCE_MIN_GAP (the other has stopped announcing, so
        // this round is final), and the first repeat is not postponed.
        let (mut e, t) = settled_master(Instant::now());
        e.handle_advert(t, &advert(2, 100, Flags::MASTER));
        let mut times = reannounce_times(&mut e, t, t);
        let later = t + Duration::from_millis(10);
        e.handle_advert(later, &advert(2, 0, Flags::MASTER));
        times.extend(
            reannounce_times(&mut e, later, t + REANNOUNCE_AFTER[0])
                .into_iter()
                .map(|d| d + Duration::from_millis(10)),
        );
        assert_eq!(
            times,
            vec![
                Duration::ZERO,
                Duration::from_millis(10),
                REANNOUNCE_AFTER[0]
            ]
        );
    }

    #[test]
    fn clients_follow_the_master_when_a_known_master_turns_backup() {
        let (mut e, t) = settled_master(Instant::now());
        // We heard node 2 as master (a worse one), then as a backup.
        e.handle_advert(t, &advert(2, 100, Flags::MASTER));
        drain(&mut e);
        let later = t + Duration::from_secs(2);
        run_to(&mut e, later);
        e.handle_advert(later, &advert(2, 100, 0));
        assert!(has(&drain(&mut e), &Action::ReannounceVips));
    }

    #[test]
    fn clients_follow_the_master_when_a_lost_peer_is_heard_again() {
        let (mut e, t) = settled_master(Instant::now());
        // A backup heard on time changes nothing.
        e.handle_advert(t + I, &advert(2, 100, 0));
        assert!(!has(&drain(&mut e), &Action::ReannounceVips));
        // Silent for longer than its liveness window (a partition): it may have
        // been master on the other side and stepped down already.
        let back = t + I * 10;
        run_to(&mut e, back);
        e.handle_advert(back, &advert(2, 100, 0));
        assert!(has(&drain(&mut e), &Action::ReannounceVips));
        // A node never heard before may have been master too.
        e.handle_advert(back, &advert(3, 100, 0));
        let actions = run_to(&mut e, back + REANNOUNCE_AFTER[0]);
        assert!(has(&actions, &Action::ReannounceVips));
    }

    #[test]
    fn a_master_insisting_over_a_one_way_link_does_not_cause_an_announce_storm() {
        let (mut e, t0) = settled_master(Instant::now());
        let mut rounds = 0;
        let mut t = t0;
        // A worse master that never hears us, advertising every 10 ms for 1 s.
        for _ in 0..100 {
            t += Duration::from_millis(10);
            e.handle_advert(t, &advert(2, 100, Flags::MASTER));
            rounds += drain(&mut e)
                .iter()
                .filter(|a| **a == Action::ReannounceVips)
                .count();
            rounds += run_to(&mut e, t)
                .iter()
                .filter(|a| **a == Action::ReannounceVips)
                .count();
        }
        // Immediate rounds at most every REANNOUNCE_MIN_GAP, plus one schedule
        // of repeats.
        let most = (Duration::from_secs(1).as_millis() / REANNOUNCE_MIN_GAP.as_millis()) as usize
            + 1
            + REANNOUNCE_AFTER.len();
        assert!((1..=most).contains(&rounds), "{rounds} rounds in 1 s");
    }

    #[test]
    fn a_master_on_its_way_out_stops_announcing_before_it_releases() {
        let (mut e, t) = settled_master(Instant::now());
        e.handle_advert(t, &advert(2, 100, Flags::MASTER)); // a worse master: repeats armed
        drain(&mut e);
        e.handle_advert(t, &advert(3, 200, Flags::MASTER)); // a better one: step down
        let mut actions = drain(&mut e);
        actions.extend(run_to(&mut e, t + Duration::from_secs(2)));
        let stop = actions.iter().position(|a| *a == Action::StopAnnouncing);
        let release = actions.iter().position(|a| *a == Action::ReleaseVips);
        assert!(stop.is_some() && stop < release, "{actions:?}");
        assert!(
            !actions.contains(&Action::ReannounceVips),
            "no repeat after stepping down: {actions:?}"
        );
        // A drain's handover stops announcing too.
        let (mut e, t) = settled_master(Instant::now());
        e.handle_command(t, Command::Drain { force: false })
            .unwrap();
        assert!(has(&drain(&mut e), &Action::StopAnnouncing));
    }

    #[test]
    fn drain_hands_over_make_before_break() {
        let t0 = Instant::now();
        let mut e = Election::new(cfg(1, 150), t0);
        run_to(&mut e, t0 + I * 4);
        let t = t0 + I * 5;
        e.handle_advert(t, &advert(2, 100, 0)); // a live eligible backup
        drain(&mut e);
        e.handle_command(t, Command::Drain { force: false })
            .expect("a successor is alive");
        let actions = drain(&mut e);
        assert!(
            !has(&actions, &Action::ReleaseVips),
            "keeps the VIPs until the successor claims"
        );
        assert!(sent(&actions)
            .iter()
            .any(|b| b.priority == 0 && b.flags.contains(Flags::MASTER)));
        assert_eq!(e.state(), State::Master);
        // The successor's first advert as master completes the handover.
        e.handle_advert(t + Duration::from_millis(3), &advert(2, 100, Flags::MASTER));
        let mut actions = drain(&mut e);
        assert!(
            !has(&actions, &Action::ReleaseVips),
            "keeps the VIPs while the new master's GARP lands"
        );
        actions.extend(run_to(
            &mut e,
            t + Duration::from_millis(3) + STEP_DOWN_LINGER,
        ));
        assert!(has(&actions, &Action::ReleaseVips));
        assert_eq!(e.state(), State::Backup);
        assert_eq!(
            e.counters().other_master_heard,
            0,
            "a handover is not a split brain"
        );
        // Drained: never master again, however long it waits.
        assert!(!run_to(&mut e, t + Duration::from_secs(60)).contains(&Action::ClaimVips));
    }

    #[test]
    fn drain_without_successor_is_refused_unless_forced_and_times_out_otherwise() {
        let t0 = Instant::now();
        let mut e = Election::new(cfg(1, 150), t0);
        run_to(&mut e, t0 + I * 4);
        let t = t0 + I * 5;
        assert_eq!(
            e.handle_command(t, Command::Drain { force: false }),
            Err(CommandError::NoSuccessor)
        );
        assert_eq!(e.state(), State::Master);
        e.handle_command(t, Command::Drain { force: true })
            .expect("forced");
        assert!(has(&drain(&mut e), &Action::ReleaseVips));

        // With a successor that never claims, the handover bound releases.
        let mut e = Election::new(cfg(1, 150), t0);
        run_to(&mut e, t0 + I * 4);
        e.handle_advert(t, &advert(2, 100, 0));
        e.handle_command(t, Command::Drain { force: false })
            .expect("successor alive");
        drain(&mut e);
        let actions = run_to(&mut e, t + I * 3);
        assert!(has(&actions, &Action::ReleaseVips));
        assert!(matches!(
            e.last_transition().map(|t| &t.reason),
            Some(Reason::HandoverTimeout)
        ));
    }

    #[test]
    fn promote_takes_over_and_a_later_promotion_wins() {
        let t0 = Instant::now();
        let (mut e, t) = settled_backup(t0, 50);
        e.handle_command(t, Command::Promote)
            .expect("healthy and undrained");
        assert!(has(&drain(&mut e), &Action::ClaimVips));
        let epoch = e.rank().promotion;
        assert_eq!(epoch, 1);
        // Another node promoted later (it had seen our epoch) outranks us.
        let mut later = advert(9, 200, Flags::MASTER | Flags::PROMOTED);
        later.promote_epoch = epoch + 1;
        e.handle_advert(t + I, &later);
        let mut actions = drain(&mut e);
        assert!(
            !has(&actions, &Action::ReleaseVips),
            "keeps the VIPs while the new master's GARP lands"
        );
        actions.extend(run_to(&mut e, t + I + STEP_DOWN_LINGER));
        assert!(has(&actions, &Action::ReleaseVips));
        assert!(!e.is_promoted());
    }

    #[test]
    fn promotion_epoch_saturates_instead_of_wrapping() {
        let t0 = Instant::now();
        let (mut e, t) = settled_backup(t0, 50);
        // A backup at the highest epoch there is.
        let mut top = advert(9, 200, 0);
        top.promote_epoch = u64::MAX;
        e.handle_advert(t, &top);
        drain(&mut e);
        e.handle_command(t, Command::Promote)
            .expect("healthy and undrained");
        assert_eq!(e.rank().promotion, u64::MAX, "not wrapped to 0");
        assert!(has(&drain(&mut e), &Action::ClaimVips));
    }

    #[test]
    fn promote_is_refused_when_drained_or_in_fault() {
        let t0 = Instant::now();
        let mut e = Election::new(cfg(1, 100), t0);
        e.handle_command(t0, Command::Drain { force: false })
            .expect("backup drains freely");
        assert_eq!(
            e.handle_command(t0, Command::Promote),
            Err(CommandError::Drained)
        );
        e.handle_command(t0, Command::Undrain).expect("undrain");
        e.handle_health(
            t0,
            Health {
                priority_delta: 0,
                fault: Some("pg down".into()),
            },
        );
        assert!(matches!(
            e.handle_command(t0, Command::Promote),
            Err(CommandError::InFault(_))
        ));
    }

    #[test]
    fn fault_releases_at_once_and_is_never_master() {
        let t0 = Instant::now();
        let mut e = Election::new(cfg(1, 150), t0);
        run_to(&mut e, t0 + I * 4);
        let t = t0 + I * 5;
        e.handle_health(
            t,
            Health {
                priority_delta: 0,
                fault: Some("pg down".into()),
            },
        );
        let actions = drain(&mut e);
        assert!(has(&actions, &Action::ReleaseVips));
        assert!(
            sent(&actions).iter().any(|b| b.priority == 0),
            "backups move at once"
        );
        assert_eq!(e.state(), State::Fault);
        assert!(!run_to(&mut e, t + Duration::from_secs(60)).contains(&Action::ClaimVips));
        e.handle_health(t + Duration::from_secs(61), Health::default());
        assert_eq!(e.state(), State::Backup);
    }

    #[test]
    fn health_weights_shift_the_effective_priority_within_bounds() {
        let t0 = Instant::now();
        let mut e = Election::new(cfg(1, 100), t0);
        e.handle_health(
            t0,
            Health {
                priority_delta: -500,
                fault: None,
            },
        );
        assert_eq!(e.effective_priority(), 1);
        e.handle_health(
            t0,
            Health {
                priority_delta: 500,
                fault: None,
            },
        );
        assert_eq!(e.effective_priority(), 254);
        let actions = drain(&mut e);
        assert!(
            sent(&actions).iter().any(|b| b.priority == 254),
            "peers hear the new priority at once"
        );
    }

    #[test]
    fn shutdown_hands_over_when_it_can_and_releases_when_it_cannot() {
        let t0 = Instant::now();
        let mut e = Election::new(cfg(1, 150), t0);
        run_to(&mut e, t0 + I * 4);
        let t = t0 + I * 5;
        e.handle_shutdown(t);
        let actions = drain(&mut e);
        assert!(has(&actions, &Action::ReleaseVips));
        assert!(has(&actions, &Action::ShutdownComplete));

        let mut e = Election::new(cfg(1, 150), t0);
        run_to(&mut e, t0 + I * 4);
        e.handle_advert(t, &advert(2, 100, 0));
        drain(&mut e);
        e.handle_shutdown(t);
        let actions = drain(&mut e);
        assert!(
            !has(&actions, &Action::ReleaseVips),
            "waits for the successor"
        );
        e.handle_advert(t + Duration::from_millis(2), &advert(2, 100, Flags::MASTER));
        let mut actions = drain(&mut e);
        assert!(
            !has(&actions, &Action::ReleaseVips),
            "keeps the VIPs while the new master's GARP lands"
        );
        actions.extend(run_to(
            &mut e,
            t + Duration::from_millis(2) + STEP_DOWN_LINGER,
        ));
        assert!(has(&actions, &Action::ReleaseVips));
        assert!(has(&actions, &Action::ShutdownComplete));
        assert!(e.poll_timeout().is_none());
    }

    #[test]
    fn own_node_id_in_an_advert_is_noticed_once_and_ignored() {
        let t0 = Instant::now();
        let mut e = Election::new(cfg(1, 100), t0);
        drain(&mut e);
        e.handle_advert(t0, &advert(1, 200, Flags::MASTER));
        e.handle_advert(t0, &advert(1, 200, Flags::MASTER));
        let notices: Vec<_> = drain(&mut e)
            .into_iter()
            .filter(|a| matches!(a, Action::Notice(_)))
            .collect();
        assert_eq!(notices.len(), 1);
        assert_eq!(e.peers().count(), 0);
    }

    #[test]
    fn quorum_is_lost_before_a_cut_off_backup_could_take_over() {
        let t0 = Instant::now();
        let (mut e, last) = settled_backup(t0, 100);
        e.handle_advert(last, &advert(5, 150, 0));
        e.handle_advert(last, &advert(6, 50, Flags::SHUTTING_DOWN));
        let quorum = e.quorum(last, 4);
        assert_eq!(
            quorum,
            Quorum {
                heard: 3,
                needed: 3
            },
            "itself, the master and node 5; a stopping node does not count"
        );
        assert!(quorum.is_met());
        // Cut off: nothing more is heard. Quorum goes at 2 × I + margin...
        let margin = e.config().settings.takeover_margin;
        assert!(e
            .quorum(last + I * 2 + margin - Duration::from_nanos(1), 4)
            .is_met());
        let lost = e.quorum(last + I * 2 + margin, 4);
        assert_eq!((lost.heard, lost.is_met()), (1, false));
        // ...while the master-down timer, which would take over, is a whole
        // interval later: the node faults first.
        let takeover = e.timers.get(Timer::MasterDown).expect("following master 9");
        assert!(takeover >= last + I * 3);
    }

    #[test]
    fn simultaneous_starters_claim_in_rank_order() {
        let t0 = Instant::now();
        let mut low = Election::new(cfg(1, 100), t0);
        let mut high = Election::new(cfg(2, 100), t0);
        let lb = sent(&drain(&mut low))
            .into_iter()
            .cloned()
            .collect::<Vec<_>>();
        let hb = sent(&drain(&mut high))
            .into_iter()
            .cloned()
            .collect::<Vec<_>>();
        for b in &hb {
            low.handle_advert(t0, b);
        }
        for b in &lb {
            high.handle_advert(t0, b);
        }
        assert!(
            high.timers.get(Timer::MasterDown) < low.timers.get(Timer::MasterDown),
            "equal priority: the higher node id claims first"
        );
    }

    fn no_vip_move(actions: &[Action]) -> bool {
        !actions.iter().any(|a| {
            matches!(
                a,
                Action::ClaimVips | Action::ReleaseVips | Action::StateChanged { .. }
            )
        })
    }

    #[test]
    fn reload_settings_are_advertised_at_once_and_release_nothing() {
        let t0 = Instant::now();
        let (mut e, t) = settled_master(t0);
        let unchanged = e.config().settings.clone();
        e.handle_settings(t, unchanged.clone());
        assert!(drain(&mut e).is_empty(), "the same settings change nothing");

        // Lower than the live backup (100): the master stays until preempted.
        let mut lower = unchanged;
        lower.priority = 90;
        lower.advert_interval = I * 2;
        lower.backup_advert_interval = I * 2;
        e.handle_settings(t, lower);
        let actions = drain(&mut e);
        assert!(no_vip_move(&actions), "{actions:?}");
        let adverts = sent(&actions);
        assert_eq!(adverts.len(), 1, "{actions:?}");
        assert_eq!(adverts[0].priority, 90);
        assert_eq!(adverts[0].interval_cs, 20);
        assert!(adverts[0].flags.contains(Flags::MASTER));
        assert_eq!(e.timers.get(Timer::Advert), Some(t + I * 2));
        let later = run_to(&mut e, t + I * 10);
        assert!(no_vip_move(&later), "{later:?}");
        assert_eq!(e.state(), State::Master);

        // The backup preempts: the master steps down make-before-break.
        let t2 = t + I * 10;
        e.handle_advert(t2, &advert(2, 100, Flags::MASTER));
        let actions = run_to(&mut e, t2 + STEP_DOWN_LINGER);
        assert!(has(&actions, &Action::ReleaseVips));
        assert_eq!(e.state(), State::Backup);
    }

    #[test]
    fn reload_raising_a_backup_above_the_master_preempts_by_the_preempt_rule() {
        let t0 = Instant::now();
        let (mut e, t) = settled_backup(t0, 100);
        let mut higher = e.config().settings.clone();
        higher.priority = 250;
        higher.preempt = false;
        e.handle_settings(t, higher.clone());
        let actions = drain(&mut e);
        assert!(no_vip_move(&actions), "preempt off: {actions:?}");
        assert_eq!(sent(&actions)[0].priority, 250);

        higher.preempt = true;
        higher.preempt_delay = I * 5;
        let t1 = t + Duration::from_millis(10);
        e.handle_settings(t1, higher.clone());
        assert!(no_vip_move(&drain(&mut e)));
        assert_eq!(e.timers.get(Timer::Preempt), Some(t1 + I * 5));

        // preempt off again before the delay ran out: no takeover.
        higher.preempt = false;
        e.handle_settings(t1 + I, higher);
        drain(&mut e);
        assert_eq!(e.timers.get(Timer::Preempt), None);
        let mut t = t1 + I;
        for _ in 0..10 {
            t += I;
            e.handle_advert(t, &advert(9, 200, Flags::MASTER));
            assert!(no_vip_move(&run_to(&mut e, t)));
        }
        assert_eq!(e.state(), State::Backup);
    }

    #[test]
    fn reload_with_preempt_on_takes_over_from_an_outranked_master_at_once() {
        let t0 = Instant::now();
        let (mut e, t) = settled_backup(t0, 100);
        let mut higher = e.config().settings.clone();
        higher.priority = 250;
        e.handle_settings(t, higher);
        let actions = drain(&mut e);
        assert!(has(&actions, &Action::ClaimVips), "{actions:?}");
        assert!(matches!(
            e.last_transition().map(|t| &t.reason),
            Some(Reason::Preempting { .. })
        ));
    }

    #[test]
    fn a_peer_removed_by_a_reload_is_forgotten_and_nothing_else_moves() {
        let t0 = Instant::now();
        let (mut e, t) = settled_backup(t0, 100);
        e.handle_advert(t, &advert(7, 50, 0));
        drain(&mut e);
        assert_eq!(e.quorum(t, 3).heard, 3);
        e.handle_peers_removed(&[7]);
        assert!(drain(&mut e).is_empty(), "nothing advertised or released");
        assert_eq!(e.quorum(t, 3).heard, 2, "node 7 no longer counts");
        assert!(e.peers().all(|p| p.node_id != 7));
        assert_eq!(e.master(t), Some(9), "the master still followed");
        // Removing the followed master: still backup; its timer runs out as if
        // it had gone silent, and then this node takes over.
        e.handle_peers_removed(&[9]);
        assert_eq!(e.state(), State::Backup);
        assert!(!e.has_successor(t));
        let deadline = t + e.master_down_interval(I);
        let actions = run_to(&mut e, deadline);
        assert!(has(&actions, &Action::ClaimVips), "{actions:?}");
    }

    // The rule "Preempt waits for the route".

    const READY: Duration = Duration::from_secs(2);

    /// A routed-mode node (priority 150, `route.ready_after` = [`READY`]).
    fn routed(now: Instant) -> Election {
        let mut c = cfg(1, 150);
        c.route_ready_after = READY;
        let mut e = Election::new(c, now);
        drain(&mut e);
        e
    }

    /// Master 9 (priority 100) advertises every `I` from `from` through
    /// `until`; returns when this node claimed, if it did.
    fn worse_master_heard(e: &mut Election, from: Instant, until: Instant) -> Option<Instant> {
        let mut t = from;
        while t <= until {
            if e.state() == State::Backup {
                e.handle_advert(t, &advert(9, 100, Flags::MASTER));
            }
            let mut actions = drain(e);
            actions.extend(run_to(e, t + I - Duration::from_nanos(1)));
            if actions.contains(&Action::ClaimVips) {
                return Some(e.last_transition().map_or(t, |tr| tr.at));
            }
            t += I;
        }
        None
    }

    #[test]
    fn routed_node_does_not_preempt_before_its_route_is_ready_after_start() {
        let t0 = Instant::now();
        let mut e = routed(t0);
        e.handle_advert(t0 + I, &advert(9, 100, Flags::MASTER));
        let actions = drain(&mut e);
        assert!(!has(&actions, &Action::ClaimVips));
        assert!(
            actions.contains(&Action::Notice(Notice::PreemptWaitsForRoute {
                peer: "n9".into(),
                ready_in: READY - I,
            })),
            "{actions:?}"
        );
        let claimed = worse_master_heard(&mut e, t0 + I * 2, t0 + READY * 2);
        assert_eq!(claimed, Some(t0 + READY), "preempts when the wait ends");
        assert!(matches!(
            e.last_transition().map(|t| &t.reason),
            Some(Reason::Preempting { .. })
        ));
    }

    #[test]
    fn routed_node_waits_again_after_its_uplink_regains_carrier_and_restarts_on_a_flap() {
        let t0 = Instant::now();
        let mut e = routed(t0);
        // Up long past the start-up wait, then the uplink goes (the daemon
        // also faults the node) and the other node becomes master.
        let t1 = t0 + READY * 3;
        e.handle_uplink(t1, false);
        e.handle_health(
            t1,
            Health {
                fault: Some("interface eth0 is down".into()),
                ..Health::default()
            },
        );
        drain(&mut e);
        assert_eq!(worse_master_heard(&mut e, t1, t1 + I * 5), None);
        // Carrier back: the fault clears at once, the preemption waits.
        let t2 = t1 + I * 10;
        e.handle_uplink(t2, true);
        e.handle_health(t2, Health::default());
        drain(&mut e);
        assert_eq!(e.state(), State::Backup);
        assert_eq!(worse_master_heard(&mut e, t2, t2 + I * 5), None);
        // A flap within the wait: down and up again restarts it, even though
        // a preempt deadline was already armed for the first wait's end.
        let t3 = t2 + I * 6;
        e.handle_uplink(t3, false);
        e.handle_uplink(t3 + I, true);
        let claimed = worse_master_heard(&mut e, t3 + I, t3 + READY * 2);
        assert_eq!(claimed, Some(t3 + I + READY));
    }

    #[test]
    fn routed_node_waiting_for_its_route_still_takes_over_a_silent_or_releasing_master() {
        // Silent: the master-down rule is not held back.
        let t0 = Instant::now();
        let mut e = routed(t0);
        e.handle_advert(t0 + I, &advert(9, 100, Flags::MASTER));
        drain(&mut e);
        let master_down = e.master_down_interval(I);
        let actions = run_to(&mut e, t0 + I + master_down);
        assert!(has(&actions, &Action::ClaimVips), "{actions:?}");
        assert!(e.last_transition().unwrap().at < t0 + READY);
        assert_eq!(e.last_transition().unwrap().reason, Reason::MasterDown);

        // Releasing (priority 0): taken over at once.
        let mut e = routed(t0);
        e.handle_advert(t0 + I, &advert(9, 100, Flags::MASTER));
        e.handle_advert(t0 + I * 2, &advert(9, 0, Flags::MASTER));
        drain(&mut e);
        let actions = run_to(&mut e, t0 + I * 3);
        assert!(has(&actions, &Action::ClaimVips), "{actions:?}");
        assert!(matches!(
            e.last_transition().map(|t| &t.reason),
            Some(Reason::MasterReleased { .. })
        ));
    }

    #[test]
    fn routed_wait_and_preempt_delay_end_together_at_the_later_of_the_two() {
        let t0 = Instant::now();
        let mut c = cfg(1, 150);
        c.route_ready_after = READY;
        c.settings.preempt_delay = READY * 2;
        let mut e = Election::new(c, t0);
        drain(&mut e);
        let claimed = worse_master_heard(&mut e, t0 + I, t0 + READY * 4);
        assert_eq!(claimed, Some(t0 + I + READY * 2));
    }

    // ------------------------------------------------------------ VRRP mode

    fn vrrp_cfg(
        dialect: Dialect,
        node_id: u64,
        priority: u8,
        interval: Duration,
    ) -> ElectionConfig {
        let mut c = cfg(node_id, priority);
        c.dialect = dialect;
        c.settings.advert_interval = interval;
        c.settings.backup_advert_interval = interval;
        c.settings.handover_timeout = interval * 3;
        c
    }

    /// A VRRP master's advert: every VRRP advert is a master's.
    fn vrrp_advert(node_id: u64, priority: u8, interval: Duration) -> AdvertBody {
        AdvertBody {
            interval_cs: u16::try_from(interval.as_millis() / 10).unwrap(),
            ..advert(node_id, priority, Flags::MASTER)
        }
    }

    fn takeover_at(e: &mut Election, from: Instant, until: Instant) -> Option<Instant> {
        let mut t = from;
        while let Some(next) = e.poll_timeout() {
            if next > until {
                return None;
            }
            t = next.max(t);
            e.handle_timeout(t);
            if drain(e).contains(&Action::ClaimVips) {
                return Some(t);
            }
        }
        None
    }

    #[test]
    fn vrrp_backups_and_stepping_down_masters_are_silent_and_masters_advertise() {
        let t0 = Instant::now();
        let mut e = Election::new(vrrp_cfg(Dialect::Vrrp3, 1, 100, I), t0);
        let mut actions = drain(&mut e);
        let mut t = t0;
        for _ in 0..20 {
            t += I;
            e.handle_advert(t, &vrrp_advert(9, 200, I));
            actions.extend(run_to(&mut e, t));
            actions.extend(drain(&mut e));
        }
        assert!(sent(&actions).is_empty(), "a VRRP backup sent: {actions:?}");
        // Master (the peer went silent): it advertises every interval.
        let claim = takeover_at(&mut e, t, t + I * 10).expect("takes over");
        let adverts = sent(&run_to(&mut e, claim + I * 5)).len();
        assert!(
            (4..=6).contains(&adverts),
            "{adverts} adverts in 5 intervals"
        );
        // A better master: the step-down sends nothing, not even priority 0.
        let t = claim + I * 5;
        e.handle_advert(t, &vrrp_advert(9, 200, I));
        let mut actions = drain(&mut e);
        actions.extend(run_to(&mut e, t + I));
        assert!(sent(&actions).is_empty(), "{actions:?}");
        assert!(has(&actions, &Action::ReleaseVips));
        assert_eq!(e.state(), State::Backup);
    }

    #[test]
    fn vrrp_takeover_waits_the_rfc_master_down_interval_and_skew_after_a_release() {
        for (dialect, interval, skew) in [
            // RFC 9568: (256 − 100) × 1 s / 256 = 609.375 ms.
            (
                Dialect::Vrrp3,
                Duration::from_secs(1),
                Duration::from_micros(609_375),
            ),
            // RFC 3768: in seconds, whatever the interval: (256 − 100) / 256 s.
            (
                Dialect::Vrrp2,
                Duration::from_secs(2),
                Duration::from_micros(609_375),
            ),
            (
                Dialect::Vrrp3,
                Duration::from_millis(100),
                skew_time(100, Duration::from_millis(100)),
            ),
        ] {
            let t0 = Instant::now();
            let mut e = Election::new(vrrp_cfg(dialect, 1, 100, interval), t0);
            drain(&mut e);
            // Long enough for vipd's own rules to call the ranks known.
            let mut t = t0;
            for _ in 0..6 {
                t += interval;
                e.handle_advert(t, &vrrp_advert(9, 200, interval));
                run_to(&mut e, t);
            }
            let down = takeover_at(&mut e, t, t + interval * 10).expect("takes over");
            assert_eq!(down - t, interval * 3 + skew, "{dialect:?} master down");
            // The peer takes over again, then releases with priority 0.
            let t = down + interval;
            e.handle_advert(t, &vrrp_advert(9, 200, interval));
            run_to(&mut e, t + STEP_DOWN_LINGER);
            assert_eq!(e.state(), State::Backup);
            let t = t + interval;
            e.handle_advert(t, &vrrp_advert(9, 200, interval));
            e.handle_advert(t + interval, &vrrp_advert(9, 0, interval));
            drain(&mut e);
            let after = takeover_at(&mut e, t + interval, t + interval * 10).expect("takes over");
            assert_eq!(after - (t + interval), skew, "{dialect:?} after a release");
        }
    }

    #[test]
    fn vrrp_ties_go_to_the_higher_node_id_and_an_owner_starts_master() {
        let t0 = Instant::now();
        // Equal priority: the master with the higher id (address) stays.
        let (mut e, t) = {
            let mut e = Election::new(vrrp_cfg(Dialect::Vrrp3, 5, 100, I), t0);
            let c = takeover_at(&mut e, t0, t0 + I * 10).expect("claims an empty group");
            (e, c)
        };
        e.handle_advert(t, &vrrp_advert(4, 100, I));
        drain(&mut e);
        assert_eq!(e.state(), State::Master, "a lower address yields");
        e.handle_advert(t, &vrrp_advert(6, 100, I));
        run_to(&mut e, t + I);
        assert_eq!(e.state(), State::Backup, "a higher address wins");
        // Priority 255 claims at start without waiting.
        let mut owner = Election::new(vrrp_cfg(Dialect::Vrrp2, 1, 255, Duration::from_secs(1)), t0);
        drain(&mut owner);
        assert_eq!(takeover_at(&mut owner, t0, t0 + I), Some(t0));
        assert!(sent(&run_to(&mut owner, t0 + I)).is_empty() || owner.effective_priority() == 255);
    }

    #[test]
    fn vrrp_drain_hands_over_to_whoever_answers_and_rolls_back_when_nobody_does() {
        let t0 = Instant::now();
        let master = |t0: Instant| {
            let mut e = Election::new(vrrp_cfg(Dialect::Vrrp2, 1, 100, Duration::from_secs(1)), t0);
            let t = takeover_at(&mut e, t0, t0 + Duration::from_secs(10)).expect("claims");
            drain(&mut e);
            (e, t)
        };
        // Nobody heard: not refused; priority 0 goes out and the VIPs stay.
        let (mut e, t) = master(t0);
        e.handle_command(t, Command::Drain { force: false })
            .expect("VRRP mode cannot see silent backups: no refusal");
        let actions = drain(&mut e);
        assert!(sent(&actions).iter().any(|b| b.priority == 0));
        assert!(!has(&actions, &Action::ReleaseVips));
        // A VRRP master answers after its skew: the handover completes.
        let answer = t + Duration::from_millis(610);
        e.handle_advert(answer, &vrrp_advert(2, 100, Duration::from_secs(1)));
        let mut actions = drain(&mut e);
        actions.extend(run_to(&mut e, answer + STEP_DOWN_LINGER));
        assert!(has(&actions, &Action::ReleaseVips));
        assert_eq!(e.state(), State::Backup);
        assert!(
            sent(&actions).iter().all(|b| b.priority == 0),
            "{actions:?}"
        );

        // Nobody answers: at handover_timeout the drain rolls back.
        let (mut e, t) = master(t0);
        e.handle_command(t, Command::Drain { force: false })
            .unwrap();
        drain(&mut e);
        let actions = run_to(&mut e, t + Duration::from_secs(3));
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Notice(Notice::DrainRolledBack { .. }))),
            "{actions:?}"
        );
        assert!(has(&actions, &Action::AnnounceVips));
        assert!(!has(&actions, &Action::ReleaseVips));
        assert_eq!(e.state(), State::Master);
        assert!(!e.is_drained());
        assert!(sent(&actions).last().is_some_and(|b| b.priority == 100));

        // Forced: released at the timeout instead.
        let (mut e, t) = master(t0);
        e.handle_command(t, Command::Drain { force: true }).unwrap();
        drain(&mut e);
        let actions = run_to(&mut e, t + Duration::from_secs(3));
        assert!(has(&actions, &Action::ReleaseVips));
        assert_eq!(e.state(), State::Backup);
    }

    #[test]
    fn vrrp_stop_hands_over_make_before_break_and_promote_says_255() {
        let t0 = Instant::now();
        let mut e = Election::new(vrrp_cfg(Dialect::Vrrp3, 1, 100, I), t0);
        let t = takeover_at(&mut e, t0, t0 + I * 10).expect("claims");
        drain(&mut e);
        e.handle_shutdown(t);
        let actions = drain(&mut e);
        assert!(!has(&actions, &Action::ReleaseVips), "{actions:?}");
        assert!(sent(&actions).iter().any(|b| b.priority == 0));
        e.handle_advert(t + I / 2, &vrrp_advert(2, 100, I));
        let mut actions = drain(&mut e);
        actions.extend(run_to(&mut e, t + I));
        assert!(has(&actions, &Action::ReleaseVips));
        assert!(has(&actions, &Action::ShutdownComplete));

        // Promote over a better VRRP master: the advert says 255.
        let mut e = Election::new(vrrp_cfg(Dialect::Vrrp3, 1, 100, I), t0);
        drain(&mut e);
        e.handle_advert(t0 + I, &vrrp_advert(9, 200, I));
        drain(&mut e);
        e.handle_command(t0 + I, Command::Promote).unwrap();
        let actions = drain(&mut e);
        assert!(has(&actions, &Action::ClaimVips));
        assert!(
            sent(&actions).iter().all(|b| b.priority == 255),
            "{actions:?}"
        );
        // The old master, outranked, stays quiet or yields; we stay.
        e.handle_advert(t0 + I * 2, &vrrp_advert(9, 200, I));
        drain(&mut e);
        assert_eq!(e.state(), State::Master);
    }
}
