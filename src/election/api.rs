//! What goes into and comes out of an [`Election`](super::Election): its
//! configuration, the operator's commands and health on the way in; actions,
//! notices, states and counters on the way out.
//!
//! Plain data only: no rule lives here (they are all in [`super`]), and nothing
//! here touches a socket or the clock.

use std::fmt;
use std::time::{Duration, Instant};

use crate::wire::AdvertBody;

/// Everything the election needs to know about its own instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    pub node_id: u64,
    pub node_name: String,
    pub group: u8,
    /// Minimum time after start before this node may become master.
    pub startup_delay: Duration,
    /// Start drained (the drain survives restarts through the daemon's state dir).
    pub start_drained: bool,
    /// Whose rules apply where vipd's and VRRP's differ (the rule "VRRP
    /// mode"). Fixed for the election's life: a reload that changes it
    /// restarts the instance.
    pub dialect: Dialect,
    /// Routed mode's `route.ready_after` (zero in ARP mode): how long after
    /// start, and after the uplink regains carrier, this node's route is not yet
    /// taken as announceable, so it does not preempt (the rule "Preempt waits
    /// for the route").
    pub route_ready_after: Duration,
    /// What a reload may change.
    pub settings: Settings,
}

/// Which protocol the election speaks (the rule "VRRP mode").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    /// vipd's own protocol: every node advertises, ranks are known.
    #[default]
    Vipd,
    /// VRRPv2 (RFC 3768): silent backups, skew in seconds.
    Vrrp2,
    /// VRRPv3 (RFC 9568): silent backups, skew scaled by the master's interval.
    Vrrp3,
    /// A key in etcd decides (the rule "The store decides"): no adverts,
    /// no timers of the RFC's; [`Election::handle_store`](super::Election::handle_store)
    /// makes this node master and ends it.
    Store,
}

impl Dialect {
    pub fn is_vrrp(self) -> bool {
        matches!(self, Self::Vrrp2 | Self::Vrrp3)
    }
}

/// What a reload may change in a running election
/// ([`Election::handle_settings`](super::Election::handle_settings)): the
/// part of [`ElectionConfig`] that does not name the node, its group or how it
/// started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Configured priority, 1..=254 (VRRP: 1..=255, 255 the address owner).
    pub priority: u8,
    /// Advert interval as master.
    pub advert_interval: Duration,
    /// Advert interval as backup, drained or in fault (>= `advert_interval`).
    pub backup_advert_interval: Duration,
    /// Per-rank wait added by backups before taking over.
    pub takeover_margin: Duration,
    /// Longest a draining or stopping master keeps the VIPs waiting for a successor.
    pub handover_timeout: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Digest of this instance's VIP set, so peers with another set are noticed.
    pub vip_digest: [u8; 8],
}

/// RFC 5798's states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Initialize => "initialize",
            Self::Backup => "backup",
            Self::Master => "master",
            Self::Fault => "fault",
        })
    }
}

/// Why a state changed; shown in logs, status and notify hooks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    Startup,
    /// No advert from the master for the master-down interval.
    MasterDown,
    /// The master released with a priority-0 advert or stepped down.
    MasterReleased {
        peer: String,
    },
    /// This node outranks the master and preempt is on.
    Preempting {
        peer: String,
    },
    /// A better master was heard.
    BetterMaster {
        peer: String,
    },
    /// A better master was heard that replaced this node on purpose (its
    /// advert names this node as the master it replaced): a planned overlap.
    ReplacedOnPurpose {
        peer: String,
    },
    Promoted,
    /// Restarted after a crash while master, with the VIPs still configured.
    Resumed,
    /// The successor's advert was heard: make-before-break handover done.
    HandoverComplete {
        peer: String,
    },
    HandoverTimeout,
    /// etcd names this node as the one that holds the VIPs: how it names it.
    StoreGranted {
        how: String,
    },
    /// etcd no longer lets this node hold them, and why.
    StoreWithdrawn {
        why: String,
    },
    /// Forced drain with nobody to hand over to.
    DrainedWithoutSuccessor,
    Fault {
        why: String,
    },
    FaultCleared,
    Shutdown,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Startup => write!(f, "start-up"),
            Self::MasterDown => write!(f, "master down: no advert within the master-down interval"),
            Self::MasterReleased { peer } => write!(f, "master {peer} released"),
            Self::Preempting { peer } => write!(f, "preempting lower-ranked master {peer}"),
            Self::BetterMaster { peer } => write!(f, "heard better master {peer}"),
            Self::ReplacedOnPurpose { peer } => {
                write!(f, "replaced on purpose by {peer} (planned overlap)")
            }
            Self::Promoted => write!(f, "promoted by operator"),
            Self::Resumed => write!(f, "resumed after a crash: still held the VIPs"),
            Self::HandoverComplete { peer } => write!(f, "handed over to {peer}"),
            Self::HandoverTimeout => write!(f, "handover timed out; released"),
            Self::DrainedWithoutSuccessor => write!(f, "drained (forced) with no successor"),
            Self::Fault { why } => write!(f, "fault: {why}"),
            Self::FaultCleared => write!(f, "fault cleared"),
            Self::Shutdown => write!(f, "shutting down"),
            Self::StoreGranted { how } => write!(f, "{how}"),
            Self::StoreWithdrawn { why } => write!(f, "etcd withdrew the VIPs: {why}"),
        }
    }
}

/// Things worth a log line or a counter that do not change state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Two masters at once that nobody planned (FIELD-NOTES 1): a partition
    /// healing, adverts lost one way, two nodes that became master without
    /// hearing each other; `we_stay` says who wins.
    OtherMasterHeard { peer: String, we_stay: bool },
    /// Two masters at once by design (the rule "Planned overlaps"): `why`
    /// says which of its cases; the lower-ranked of the two steps down as for
    /// any better master.
    PlannedOverlap { peer: String, why: PlannedOverlap },
    /// The master this node was stepping down for gave up before it served
    /// (the rule "Master meets master"); `stays`: this node stays master,
    /// else it released at once.
    StepDownCalledOff { peer: String, stays: bool },
    /// A peer's VIP set differs from ours.
    VipSetMismatch { peer: String },
    /// A master advertises another interval than ours (we follow theirs).
    IntervalMismatch {
        peer: String,
        theirs: Duration,
        ours: Duration,
    },
    /// An advert carried our own node id: two nodes share a name, or a loop.
    DuplicateNodeId { peer: String },
    /// Another node was promoted later than us; our promotion ends.
    PromotionSuperseded { peer: String },
    /// A draining or stopping master now waits for a successor.
    HandoverStarted,
    /// VRRP mode: a drained master heard no new master within
    /// `handover_timeout` of its priority-0 advert, so it stays master and
    /// is undrained (the rule "VRRP mode").
    DrainRolledBack { why: String },
    /// This backup outranks the master but does not preempt before its route
    /// can be announced (routed mode's `route.ready_after`); `ready_in` is
    /// how long that still is. Once per start or carrier return.
    PreemptWaitsForRoute { peer: String, ready_in: Duration },
}

/// Why an overlap of two masters was planned (the rule "Planned overlaps").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlannedOverlap {
    /// This master drained or is stopping and hears the successor it waited
    /// for: the handover completing. This node steps down.
    HandingOver,
    /// The better master's advert names this node as the master it replaced
    /// on purpose (it preempted this node or was promoted over it). This node
    /// steps down.
    ReplacedUs,
    /// This node replaced the peer on purpose and hears it still master
    /// within the window after the takeover. This node stays.
    WeReplaced,
}

/// What the caller must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this advert to the group (the transport stamps boot id and
    /// sequence). `replaced`: the master this node replaced on purpose, sent
    /// with the advert (extension type 3 of [`crate::wire`]) during the window
    /// after the takeover only (the rule "Planned overlaps").
    SendAdvert {
        body: AdvertBody,
        replaced: Option<String>,
    },
    /// Add the VIPs to the interface.
    ClaimVips,
    /// Start announcing the VIPs (gratuitous ARP / unsolicited NA): the burst
    /// on becoming master, its repeat and the optional refresh.
    AnnounceVips,
    /// Send one more round of announcements now, leaving the schedule of
    /// [`Action::AnnounceVips`] as it is: clients may be on another node's MAC
    /// (the rule "Clients follow the master").
    ReannounceVips,
    /// Stop announcing (a master on its way out): the VIPs stay until
    /// [`Action::ReleaseVips`], but no later announcement of ours may pull
    /// clients back from the successor.
    StopAnnouncing,
    /// Remove the VIPs from the interface.
    ReleaseVips,
    StateChanged {
        from: State,
        to: State,
        reason: Reason,
    },
    Notice(Notice),
    /// A shutdown finished: the VIPs are released (or were never held).
    ShutdownComplete,
}

/// Operator commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Drain { force: bool },
    Undrain,
    Promote,
}

/// As the operator typed it: `drain`, `drain --force`, `undrain`, `promote`.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Drain { force: false } => "drain",
            Self::Drain { force: true } => "drain --force",
            Self::Undrain => "undrain",
            Self::Promote => "promote",
        })
    }
}

/// Why an operator's command was refused; nothing changed then.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A master was asked to drain but no eligible peer is alive to take over.
    #[error("refused: no healthy eligible peer has been heard, so nobody could take the VIPs (use --force to drain anyway)")]
    NoSuccessor,
    /// Promote while in fault: the node must not be master.
    #[error("refused: this node is in fault ({0})")]
    InFault(String),
    /// Promote while drained: undrain first.
    #[error("refused: this node is drained; undrain it first")]
    Drained,
    /// Drain of the holder with nobody else published as eligible in etcd.
    #[error("refused: no other eligible member of this instance is published in etcd, so nobody could take the VIPs (use --force to drain anyway)")]
    NoStoreSuccessor,
    /// Drain of Patroni's leader: nobody else may hold its VIPs.
    #[error("refused: the VIPs follow Patroni's leader, which is this node, so nobody else may hold them; move the leader first (patronictl switchover), or use --force to drop them")]
    LeaderCannotDrain,
    /// Promote while following Patroni: its leader decides.
    #[error("refused: Patroni's leader holds this instance's VIPs; move the leader instead (patronictl switchover --candidate MEMBER)")]
    FollowsLeader,
    /// Any command once shutdown has begun.
    #[error("refused: this node is shutting down")]
    ShuttingDown,
}

/// Health as the health checker sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Sum of the weights of tracked checks, added to the configured priority.
    pub priority_delta: i32,
    /// Set when a check without weight fails: the node must not be master.
    pub fault: Option<String>,
}

/// The last state change, for status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub at: Instant,
    pub from: State,
    pub to: State,
    pub reason: Reason,
}

/// Counters for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Two masters at once that nobody planned ([`Notice::OtherMasterHeard`]).
    pub other_master_heard: u64,
    /// Two masters at once by design ([`Notice::PlannedOverlap`]).
    pub planned_overlaps: u64,
    pub transitions: u64,
}
