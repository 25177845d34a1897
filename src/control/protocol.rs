//! The messages on the control socket: one JSON object per line, each way.
//!
//! What it owns: the request and response types, their serde form, the
//! protocol version and size limits, and the parsing of one request line.
//! What it may not touch: sockets (that is [`super::server`] and
//! [`super::client`]) and the daemon's state (the daemon fills the status types).

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::election::State;

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 1;

/// Requests longer than this are refused: no legitimate request comes close.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
}

/// What a client asks. `instances` empty means every instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    Status,
    Drain {
        #[serde(default)]
        instances: Vec<String>,
        #[serde(default)]
        force: bool,
    },
    Undrain {
        #[serde(default)]
        instances: Vec<String>,
    },
    Promote {
        #[serde(default)]
        instances: Vec<String>,
    },
    Reload,
    /// Stream every state change from now on, one [`Response::Event`] line each,
    /// after a [`Response::Subscribed`] line; the connection stays open.
    Events,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Response {
    /// The status of every instance.
    Status {
        node: String,
        instances: Vec<InstanceStatus>,
    },
    /// Per-instance outcome of drain, undrain or promote.
    Done { outcomes: Vec<Outcome> },
    /// Reload applied: which instances were started, stopped, restarted or kept.
    Reloaded {
        summary: String,
        /// Instances that could not start (or take their new configuration),
        /// each with why; the others run with the new configuration.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed: Vec<String>,
    },
    /// The request was refused or failed as a whole.
    Error { message: String },
    /// The answer to [`Request::Events`]: events follow, one per line.
    Subscribed,
    /// One state change, streamed after [`Response::Subscribed`].
    Event { event: TransitionEvent },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub instance: String,
    pub ok: bool,
    /// What happened, or why it was refused.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub name: String,
    pub interface: String,
    pub group: u8,
    pub state: State,
    pub configured_priority: u8,
    pub effective_priority: u8,
    /// Why the effective priority is what it is: health weights, drained, promoted, fault.
    pub priority_reasons: Vec<String>,
    pub drained: bool,
    pub promoted: bool,
    pub fault: Option<String>,
    pub vips: Vec<VipStatus>,
    /// The master as this node knows it.
    pub master: Option<MasterStatus>,
    pub peers: Vec<PeerStatus>,
    pub auth_failures: u64,
    /// Two masters at once that nobody planned (a split brain, however short).
    pub other_master_heard: u64,
    /// Two masters at once by design: a handover, or a master replaced on
    /// purpose (preempt, promote) heard within the window after the takeover.
    #[serde(default)]
    pub planned_overlaps: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub last_transition: Option<TransitionStatus>,
    /// What the adverts speak: "vipd", "vrrp2" or "vrrp3".
    #[serde(default = "vipd_protocol")]
    pub protocol: String,
    /// The master-down interval for the current master's advert interval.
    pub master_down_interval_ms: u64,
    /// Another node uses this node's name: "node name X is also used by
    /// ADDRESS (started earlier)" on the one standing aside (in fault), "...
    /// (started later; it stands aside)" on the one that keeps running.
    #[serde(default)]
    pub name_conflict: Option<String>,
    /// The last state changes, oldest first (at most [`HISTORY_LEN`]).
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// How the master announces the VIPs: `None` for gratuitous ARP /
    /// unsolicited NA, or routed mode's "route table N metric M".
    #[serde(default)]
    pub announce_route: Option<String>,
    /// Other hosts claiming a VIP while this node holds it (gratuitous ARP,
    /// ARP reply or NA from a MAC that is neither this node's nor a peer's).
    #[serde(default)]
    pub foreign_claims: Vec<ForeignClaimStatus>,
    /// Foreign claims seen since the instance started (every packet).
    #[serde(default)]
    pub foreign_claims_seen: u64,
    /// Foreign-claim episodes since the instance started (one per VIP and
    /// claimant until it is quiet for 5 s).
    #[serde(default)]
    pub foreign_claim_episodes: u64,
    /// Why this node's last drain was rolled back (its successor gave up
    /// before it served), until the next drain, undrain or promote.
    #[serde(default)]
    pub drain_rolled_back: Option<String>,
    /// `election = "etcd"` / `"patroni"`: what etcd says and whether it can
    /// vouch for this node. `None` when the adverts decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreStatus>,
}

/// An instance's seat in etcd, as `vipd status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// "etcd" (vipd's own holder key) or "patroni" (Patroni's leader key).
    pub kind: String,
    /// The key that decides.
    pub key: String,
    /// The endpoint the client uses now.
    pub endpoint: String,
    /// The last request succeeded.
    pub reachable: bool,
    /// The last failure, while requests fail.
    pub last_error: Option<String>,
    /// etcd vouches for this node now: a keepalive sent less than
    /// `lease_ttl` minus the margin ago succeeded.
    pub vouched: bool,
    /// Holding the VIPs while nobody vouches (fail-open only).
    pub holding_unvouched: bool,
    /// "fail-closed" or "fail-open".
    pub on_unreachable: String,
    pub lease_id: Option<i64>,
    pub lease_ttl_ms: u64,
    /// How long etcd still vouches for this node (0: not at all).
    pub lease_remaining_ms: Option<u64>,
    /// The holder (Patroni's leader) as etcd names it.
    pub holder: Option<String>,
    /// The holder key's (leader key's) revision as etcd shows it.
    pub holder_revision: Option<i64>,
    /// This node's fencing token while it holds the VIPs.
    pub fencing_token: Option<i64>,
}

/// One VIP another host claims while this node holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForeignClaimStatus {
    pub vip: String,
    /// The last MAC heard claiming it.
    pub mac: String,
    /// Claims heard in this episode.
    pub sightings: u64,
    pub since_ms_ago: u64,
    pub last_ms_ago: u64,
}

/// How many state changes each instance remembers for `vipd status`.
pub const HISTORY_LEN: usize = 32;

/// One state change of an instance, as history and events carry it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Wall-clock time of the change, seconds since the Unix epoch.
    pub at_unix: f64,
    pub from: State,
    pub to: State,
    pub reason: String,
    /// The other node the change was about (the master heard, the successor), if any.
    #[serde(default)]
    pub peer: Option<String>,
}

/// A state change streamed by `vipd events`: which instance, and the change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransitionEvent {
    pub node: String,
    pub instance: String,
    #[serde(flatten)]
    pub change: HistoryEntry,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipStatus {
    pub address: String,
    pub held: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterStatus {
    pub name: String,
    /// The source address of its adverts; `None` when this node is the master.
    pub address: Option<String>,
    pub is_self: bool,
    /// Master, but it has not claimed the VIPs yet: its `before_claim` gate
    /// or conflict probe is still running (it serves nobody until then).
    #[serde(default)]
    pub claim_pending: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub name: String,
    pub node_id: u64,
    pub address: Option<String>,
    pub priority: u8,
    /// Flag names: master, drained, promoted, fault, shutting-down; as last heard.
    pub flags: Vec<String>,
    /// What this node makes of the peer now: master, backup, fault,
    /// shutting-down, or lost (not heard within its liveness window, whatever
    /// its last advert said).
    pub state: String,
    pub alive: bool,
    pub last_heard_ms_ago: u64,
    pub advert_interval_ms: u64,
    /// The peer advertises another VIP set than ours (config drift): the
    /// election still ranks it and follows it as master, so its VIPs are
    /// claimed, not ours.
    #[serde(default)]
    pub vip_set_differs: bool,
    /// The peer's software version, from its adverts' extension field 1;
    /// absent for a release that does not send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransitionStatus {
    pub from: State,
    pub to: State,
    pub reason: String,
    /// Wall-clock time of the change, seconds since the Unix epoch.
    pub at_unix: f64,
    pub ms_ago: u64,
}

/// A request from a control client, with where its answer goes. The daemon
/// receives these from [`serve`] and must answer each one (dropping the sender
/// gives the client an error).
pub type ControlRequest = (Request, oneshot::Sender<Response>);

/// Responses longer than this are refused by [`call`]: a status of many instances
/// with many peers stays far below it.
pub const MAX_RESPONSE_LEN: usize = 16 * 1024 * 1024;

/// Parses one request line (without its newline). The error is the message for
/// the client: what was wrong and where.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    /// Only the version, so that a newer client's unknown command is reported as
    /// a version mismatch rather than as an unknown command.
    #[derive(Deserialize)]
    struct Probe {
        version: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(line).map_err(|e| json_error("invalid request", &e))?;
    match probe.version {
        None => return Err("invalid request: missing field `version`".to_owned()),
        Some(v) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        Some(v) => {
            return Err(format!(
                "unsupported protocol version {v}; this daemon speaks version {PROTOCOL_VERSION} (is the vipd binary newer or older than the running daemon?)"
            ))
        }
    }
    serde_json::from_slice::<RequestEnvelope>(line)
        .map(|envelope| envelope.request)
        .map_err(|e| json_error("invalid request", &e))
}

/// "WHAT at line L column C: message", without serde_json's own position suffix.
pub(super) fn json_error(what: &str, e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = text.strip_suffix(&suffix).unwrap_or(&text);
    if e.line() == 0 {
        format!("{what}: {message}")
    } else {
        format!(
            "{what} at line {} column {}: {message}",
            e.line(),
            e.column()
        )
    }
}

/// The protocol a status from a build without the field speaks.
fn vipd_protocol() -> String {
    "vipd".to_owned()
}
