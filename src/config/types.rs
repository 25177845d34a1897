//! The validated configuration: what `vipd run` acts on.
//!
//! Plain data with public fields, built only by validation (or by hand in tests
//! through [`Config::new`]); nothing here parses, checks or touches the host.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Location, Vip};
use crate::wire::{Auth, AuthKey};

/// A validated configuration: what `vipd run` acts on.
///
/// Equality compares the settings only, never where in the file they were written,
/// so a reload that merely moves lines around changes nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Settings for this node as a whole (`[node]`).
    pub node: NodeConfig,
    /// The VRRP-like instances (`[[instance]]`), in file order; at least one.
    pub instances: Vec<InstanceConfig>,
    /// Sync groups (`[[sync_group]]`), in file order; each member instance also
    /// carries its group in [`InstanceConfig::sync_group`].
    pub sync_groups: Vec<SyncGroup>,
    /// Where in the file some values came from, for [`check_against_system`](super::check_against_system).
    pub(super) sources: Sources,
}

impl Config {
    /// Builds a configuration by hand (e.g. in tests). Problems found by
    /// [`check_against_system`](super::check_against_system) on it carry no file position.
    pub fn new(node: NodeConfig, instances: Vec<InstanceConfig>) -> Self {
        Self {
            node,
            instances,
            sync_groups: Vec::new(),
            sources: Sources::default(),
        }
    }

    /// The instance called `name`, if any.
    pub fn instance(&self, name: &str) -> Option<&InstanceConfig> {
        self.instances.iter().find(|i| i.name == name)
    }
}

/// Node-wide settings (`[node]`).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// The node's name, sent in adverts and shown in status (1..=64 bytes).
    /// Default: the hostname.
    pub name: String,
    /// The first 8 bytes (big-endian) of SHA-256 of `name`: stable across restarts,
    /// breaks priority ties.
    pub node_id: u64,
    /// The control socket's path. Default: `/run/vipd/vipd.sock`.
    pub control_socket: PathBuf,
    /// A unix group whose members may also use the control socket. Default: none
    /// (root only).
    pub control_group: Option<String>,
    /// Where vipd keeps state across restarts. Default: `/var/lib/vipd`.
    pub state_dir: PathBuf,
    /// Stay backup at least this long after start (boot races). Default: 0s; at
    /// most 10min.
    pub startup_delay: Duration,
    /// Where `GET /metrics` (Prometheus) is served. Default: nowhere (off).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `script_user`: the user notify hooks and track scripts run as unless
    /// their own `user` says otherwise. Default: none (root). Already applied
    /// to every instance's hooks and scripts by the time the file is loaded.
    pub script_user: Option<String>,
    /// `[node.etcd]`: the etcd cluster instances with `election = "etcd"` or
    /// `"patroni"` use. Default: none.
    pub etcd: Option<EtcdConfig>,
}

/// `[node.etcd]`: where etcd is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs, `http://host:port` or `https://host:port`; 1..=16.
    pub endpoints: Vec<String>,
    /// `ca_file`: the CA that signed the members' certificates (https only).
    pub ca_file: Option<PathBuf>,
    /// `cert_file` and `key_file`: this node's client certificate (both or neither).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// `prefix`: where vipd's keys live (`PREFIX/INSTANCE/...`). Default `/vipd`.
    pub prefix: String,
    /// `request_timeout`: how long one request may take on one endpoint
    /// before the next is tried. Default 1s; 100ms..=10s.
    pub request_timeout: Duration,
}

impl EtcdConfig {
    /// The etcd client's settings.
    pub fn client_settings(&self) -> crate::etcd::ClientSettings {
        crate::etcd::ClientSettings {
            endpoints: self.endpoints.clone(),
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            request_timeout: self.request_timeout,
        }
    }
}

/// One instance: a set of VIPs held by one node of a group at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceConfig {
    /// Unique on this node; `[A-Za-z0-9_.-]{1,32}`.
    pub name: String,
    /// The interface that carries the VIPs and the adverts.
    pub interface: String,
    /// 1..=255; the same on every peer; `(interface, group)` is unique on a node.
    pub group: u8,
    /// 1..=254; the highest healthy priority becomes master.
    pub priority: u8,
    /// How often the master advertises: 10ms..=40.95s in whole centiseconds.
    /// Default 1s.
    pub advert_interval: Duration,
    /// How often backups advertise. Default `max(advert_interval, 1s)` (at most
    /// 40.95s); `advert_interval..=40.95s` in whole centiseconds.
    pub backup_advert_interval: Duration,
    /// Per-rank wait added by backups before taking over. Default 2ms;
    /// `100us..=advert_interval / 2`.
    pub takeover_margin: Duration,
    /// Bound on make-before-break during drain and shutdown. Default
    /// `min(3 × advert_interval, 60s)`; `advert_interval..=60s`.
    pub handover_timeout: Duration,
    /// Whether a higher priority takes over from a lower-priority master. Default true.
    pub preempt: bool,
    /// How long to wait before preempting. Default 0s; at most 1h.
    pub preempt_delay: Duration,
    /// The virtual addresses; 1..=1024, no duplicates, in file order.
    pub vips: Vec<Vip>,
    /// How adverts are authenticated (with HMAC: the key that signs and verifies).
    pub auth: Auth,
    /// `auth_accept_key_files`: further keys that verify adverts but never sign, for
    /// rotating the key one node at a time. Empty unless `auth` is HMAC. Default: none.
    pub auth_accept: Vec<AuthKey>,
    /// What the adverts speak on the wire: vipd's own authenticated format
    /// (the default) or VRRP, to join a keepalived cluster (`protocol`).
    pub protocol: Protocol,
    /// Unicast peers; empty means multicast to `multicast_group` (VRRP:
    /// 224.0.0.18 or ff02::12).
    pub peers: Vec<IpAddr>,
    /// The multicast group adverts go to when `peers` is empty. Default 239.255.80.51.
    pub multicast_group: IpAddr,
    /// UDP port of adverts. Default 5880.
    pub port: u16,
    /// Gratuitous ARP / unsolicited NA on becoming master (`announce = "arp"`,
    /// the default; unused in route mode).
    pub announce: AnnounceConfig,
    /// `announce = "route"` with its `[instance.route]` settings: the master
    /// announces each VIP as a host route for a routing daemon (FRR, BIRD) to
    /// carry over BGP, instead of gratuitous ARP / NA. `None`: ARP/NA mode.
    pub route: Option<RouteConfig>,
    /// How many routed hops an advert may have crossed: adverts must arrive with
    /// TTL / hop limit at least `256 - max_hops`. Default 1 (only 255: from the
    /// link itself); above 1 only with unicast `peers` and HMAC auth. 1..=255.
    pub max_hops: u8,
    /// `[[instance.track_script]]`: commands whose result moves the priority or
    /// puts the instance in fault.
    pub track_scripts: Vec<TrackScript>,
    /// `[[instance.track_interface]]`: other interfaces whose link state counts.
    pub track_interfaces: Vec<TrackInterface>,
    /// `[[instance.track_file]]`: files holding a priority weight.
    pub track_files: Vec<TrackFile>,
    /// `[instance.notify]`: hooks run on each transition.
    pub notify: NotifyConfig,
    /// `[instance.guard]`: the opt-in split-brain guard. Default: none.
    pub guard: Option<GuardConfig>,
    /// The sync group this instance belongs to, if any (from `[[sync_group]]`).
    pub sync_group: Option<SyncGroup>,
    /// What `vipd cleanup` does with this instance's VIPs after the daemon died
    /// while master on a host that is still up. Default [`AfterCrash::Handover`].
    pub after_crash: AfterCrash,
    /// Who decides which node holds the VIPs (`election`): the adverts (the
    /// default), or a key in etcd ([`StoreElection`]).
    pub store: Option<StoreElection>,
}

impl InstanceConfig {
    /// Whether a key in etcd decides who holds the VIPs, not the adverts.
    pub fn uses_store(&self) -> bool {
        self.store.is_some()
    }
}

/// `election = "etcd"` or `"patroni"`: etcd decides which node holds the VIPs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreElection {
    /// `lease_ttl`: the TTL of the node's lease in etcd, whole seconds,
    /// 2s..=300s. Default 5s.
    pub lease_ttl: Duration,
    /// `store_unreachable`: what a holder does when it cannot renew its lease.
    pub on_unreachable: OnUnreachable,
    /// `election = "patroni"` with `[instance.patroni]`: follow Patroni's
    /// leader key instead of campaigning for vipd's own.
    pub follow: Option<PatroniFollow>,
}

/// `store_unreachable`: what a node holding the VIPs does when etcd cannot
/// vouch for it any longer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnUnreachable {
    /// `"fail-closed"` (the default): release before the lease could expire.
    #[default]
    FailClosed,
    /// `"fail-open"`: keep the VIPs, and say nobody vouches for this node.
    FailOpen,
}

impl OnUnreachable {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailClosed => "fail-closed",
            Self::FailOpen => "fail-open",
        }
    }
}

/// `[instance.patroni]`: the Patroni cluster whose leader holds the VIPs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatroniFollow {
    /// `scope`: Patroni's cluster name.
    pub scope: String,
    /// `member`: this node's Patroni member name. Default: the node's name.
    pub member: String,
    /// `namespace`: Patroni's `namespace`. Default `/service`.
    pub namespace: String,
    /// `dcs`: which etcd API Patroni writes: `"etcd3"` (the default) or
    /// `"etcd"` (the v2 keys API).
    pub dcs: PatroniDcs,
}

impl PatroniFollow {
    /// Patroni's leader key: `NAMESPACE/SCOPE/leader`.
    pub fn leader_key(&self) -> String {
        format!(
            "{}/{}/leader",
            self.namespace.trim_end_matches('/'),
            self.scope
        )
    }
}

/// The etcd API Patroni's DCS uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PatroniDcs {
    #[default]
    Etcd3,
    /// The v2 keys API (Patroni's `etcd:` section).
    Etcd2,
}

/// What an instance's adverts speak (`protocol`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// `"vipd"`: vipd's own format, HMAC-authenticated, with a replay guard
    /// and adverts from backups too.
    #[default]
    Vipd,
    /// `"vrrp2"` or `"vrrp3"`: VRRP (RFC 3768 / RFC 9568), IP protocol 112,
    /// as keepalived speaks it. `group` is the VRID.
    Vrrp(VrrpConfig),
}

impl Protocol {
    /// The VRRP settings, when the instance speaks VRRP.
    pub fn vrrp(&self) -> Option<&VrrpConfig> {
        match self {
            Self::Vipd => None,
            Self::Vrrp(v) => Some(v),
        }
    }

    /// The configuration's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Vipd => "vipd",
            Self::Vrrp(v) => match v.version {
                VrrpVersion::V2 => "vrrp2",
                VrrpVersion::V3 => "vrrp3",
            },
        }
    }
}

/// An instance's VRRP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VrrpConfig {
    pub version: VrrpVersion,
    /// `vrrp_auth_pass`: VRRPv2's simple-text password (keepalived's
    /// `auth_type PASS`), zero-padded to 8 bytes. `None`: no authentication.
    pub auth_pass: Option<[u8; 8]>,
    /// `vrrp_checksum`: how a VRRPv3 IPv4 checksum is formed when sending;
    /// both forms are accepted on receipt.
    pub checksum: VrrpChecksum,
    /// `vrrp_source`: the address adverts are sent from (keepalived's
    /// `unicast_src_ip`). `None`: the interface's primary address of the
    /// VIPs' family (IPv6: its link-local address).
    pub source: Option<IpAddr>,
}

/// VRRP's version on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VrrpVersion {
    /// RFC 3768: IPv4 only, whole-second intervals, optional simple password.
    V2,
    /// RFC 9568: IPv4 and IPv6, centisecond intervals, no authentication.
    V3,
}

/// How a VRRPv3 IPv4 checksum is formed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VrrpChecksum {
    /// `"pseudo-header"`: with the IPv4 pseudo-header (RFC 9568 §5.2.8;
    /// keepalived's default).
    #[default]
    PseudoHeader,
    /// `"message-only"`: over the VRRP message alone, as VRRPv2 (keepalived's
    /// `checksum_as_v2`, and some routers).
    MessageOnly,
}

/// What happens to a master's VIPs when its daemon dies and the host lives
/// (`after_crash`); the rules are in `daemon::crash`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AfterCrash {
    /// `"handover"`: the clean-up announces the release the dead daemon would
    /// have sent, signed with the instance's key, then removes the VIPs: the
    /// best backup takes over within a millisecond or two.
    #[default]
    Handover,
    /// `"resume"`: when systemd restarts the daemon, the clean-up leaves the
    /// VIPs in place and the restarted daemon takes them back as master before
    /// the peers' master-down interval runs out: no failover at all. Falls back
    /// to a handover when no restart follows, the restart comes too late, or
    /// the node crashes too often.
    Resume,
}

impl AfterCrash {
    /// The configuration's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handover => "handover",
            Self::Resume => "resume",
        }
    }
}

/// A track script: run every `interval`; `fall` failures in a row make it failing,
/// `rise` successes in a row make it good again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackScript {
    /// Unique within the instance; `[A-Za-z0-9_.-]{1,32}`; shown in status.
    pub name: String,
    /// The program and its arguments, run without a shell; with `shell`, a single
    /// string run by `/bin/sh -c`.
    pub command: Vec<String>,
    /// Run `command[0]` through `/bin/sh -c`. Default false.
    pub shell: bool,
    /// Time between the end of one run and the start of the next. Default 2s;
    /// 10ms..=1h.
    pub interval: Duration,
    /// A run still going after this long is killed with its process group and
    /// counts as a failure. Default: `interval`; 10ms..=1h.
    pub timeout: Duration,
    /// Successes in a row before a failing script is good again. Default 1; 1..=100.
    pub rise: u32,
    /// Failures in a row before a good script is failing. Default 1; 1..=100.
    pub fall: u32,
    /// `None`: a failing script puts the instance in fault. Negative: added to the
    /// priority while failing. Positive: added while good. -254..=254, not 0.
    pub weight: Option<i32>,
    /// The user it runs as; `None`: root. Default: `[node] script_user`.
    pub user: Option<String>,
}

/// Another interface whose link state counts (`[[instance.track_interface]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackInterface {
    /// The interface name.
    pub interface: String,
    /// `None`: link down puts the instance in fault. Negative: added while down.
    /// Positive: added while up. -254..=254, not 0.
    pub weight: Option<i32>,
}

/// A file holding an integer weight, as keepalived's `track_file`
/// (`[[instance.track_file]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackFile {
    /// Absolute, or relative to the configuration file's directory.
    pub path: PathBuf,
    /// The file's integer times this is added to the priority; a result of -254 or
    /// less puts the instance in fault. Default 1; -254..=254.
    pub weight_multiplier: i32,
    /// How often the file is read. Default 1s; 10ms..=1h.
    pub interval: Duration,
}

/// Hooks run on transitions (`[instance.notify]`). Each is a program and its
/// arguments (run without a shell); vipd appends the instance, the new state, the
/// previous state and the reason, and sets `VIPD_INSTANCE`, `VIPD_STATE`,
/// `VIPD_PREVIOUS_STATE` and `VIPD_REASON`. Empty: no hook.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyConfig {
    pub master: Vec<String>,
    pub backup: Vec<String>,
    pub fault: Vec<String>,
    /// Run when the instance stops (daemon shutdown, or removed by a reload), with
    /// state `stop`.
    pub stop: Vec<String>,
    /// Run on every transition, after the state's own hook.
    pub any: Vec<String>,
    /// The gate: run when this node has become master, before it claims the
    /// VIPs (a database's promotion); the VIPs are claimed only once it exits
    /// 0. A failure or timeout is a fault for
    /// [`crate::instance::GATE_FAULT_HOLD`]. Empty: claim at once.
    pub before_claim: Vec<String>,
    /// Run once this node has released the VIPs (after the addresses are
    /// gone), whatever it became (backup, fault, stopping): to stop or fence
    /// the old primary. Never skipped for a later transition; a failure or
    /// timeout is logged and counted, and changes no decision (the VIPs are
    /// already gone). Empty: no hook.
    pub after_release: Vec<String>,
    /// Each hook is killed, with its process group, after this long. Default 10s;
    /// 10ms..=1h.
    pub timeout: Duration,
    /// The user the hooks run as (with that user's groups, home and login
    /// name); `None`: root. Default: `[node] script_user`.
    pub user: Option<String>,
}

impl NotifyConfig {
    /// Whether any hook is configured.
    pub fn is_empty(&self) -> bool {
        self.master.is_empty()
            && self.backup.is_empty()
            && self.fault.is_empty()
            && self.stop.is_empty()
            && self.any.is_empty()
            && self.after_release.is_empty()
    }
}

/// What the split-brain guard must reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Witness {
    /// The IPv4 default gateway, looked up at each check.
    Gateway,
    Address(IpAddr),
}

/// How the guard checks its witness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardMethod {
    /// `arping -c 1` on the instance's interface (IPv4 witnesses only).
    Arp,
    /// `ping -c 1` through the instance's interface.
    Icmp,
}

/// The split-brain guard (`[instance.guard]`): the node may be master only while
/// it reaches the witness (and, with `quorum`, hears a majority of the group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardConfig {
    pub witness: Witness,
    /// Default icmp.
    pub method: GuardMethod,
    /// Time between checks. Default: the advert interval, at least 100ms; 100ms..=1m.
    pub interval: Duration,
    /// Longest wait for the answer. Default: `interval`; 100ms..=1m.
    pub timeout: Duration,
    /// Failed checks in a row before the fault. Default 1; 1..=100.
    pub fall: u32,
    /// Good checks in a row before the fault clears. Default 2; 1..=100.
    pub rise: u32,
    /// Also require hearing a majority of `peers_total` nodes (a peer counts while
    /// heard within two of its intervals). Default false. When on,
    /// `backup_advert_interval` defaults to, and must equal, `advert_interval`.
    pub quorum: bool,
    /// Nodes in the group, this one included; 3..=255. Default with unicast: peers
    /// + 1; required with multicast when `quorum` is on.
    pub peers_total: Option<u32>,
}

/// Instances that move together (`[[sync_group]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncGroup {
    /// `[A-Za-z0-9_.-]{1,32}`, unique.
    pub name: String,
    /// Member instance names, 2 or more, each in one sync group at most.
    pub instances: Vec<String>,
}

impl InstanceConfig {
    /// Whether adverts go to unicast `peers` rather than the multicast group.
    pub fn is_unicast(&self) -> bool {
        !self.peers.is_empty()
    }

    /// The lowest TTL / hop limit an advert may arrive with: `256 - max_hops`.
    pub fn min_ttl(&self) -> u8 {
        // max_hops is 1..=255, so this is 1..=255.
        (256 - u16::from(self.max_hops.max(1))) as u8
    }
}

/// Routed mode (`announce = "route"`, `[instance.route]`): while master, each VIP
/// is a `local` route in the kernel's local table (the host accepts its traffic)
/// and a host route in `table` carrying vipd's route protocol number, which a
/// routing daemon imports and announces (FRR: `ip import-table` +
/// `redistribute table`; BIRD: a kernel protocol on the table with `learn`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// The routing table the announced routes go into. Default
    /// [`defaults::ROUTE_TABLE`](super::defaults::ROUTE_TABLE); 1..=252 (FRR's
    /// `ip import-table` takes no other; 253..=255 are the kernel's own).
    pub table: u32,
    /// The routes' metric (FRR turns it into the BGP MED). Default
    /// [`defaults::ROUTE_METRIC`](super::defaults::ROUTE_METRIC); 0..=4294967295.
    pub metric: u32,
    /// On release (drain, stop, step-down) the announced route goes first, then
    /// vipd waits this long for the fabric to converge before the host stops
    /// accepting the VIP's traffic. Default
    /// [`defaults::ROUTE_WITHDRAW_DELAY`](super::defaults::ROUTE_WITHDRAW_DELAY);
    /// 0s..=10s.
    pub withdraw_delay: Duration,
    /// How long after the daemon starts, and after the instance's interface
    /// regains carrier, the node does not preempt: its routing daemon's BGP
    /// session may not be up yet, and a preemption would leave nobody
    /// announcing the VIP (the election's rule "Preempt waits for the route").
    /// Default [`defaults::ROUTE_READY_AFTER`](super::defaults::ROUTE_READY_AFTER);
    /// 0s..=600s (0s: preempt at once, as in ARP mode).
    pub ready_after: Duration,
}

/// Gratuitous ARPs (IPv4) and unsolicited neighbour advertisements (IPv6) sent on
/// becoming master.
#[derive(Clone, Debug, PartialEq)]
pub struct AnnounceConfig {
    /// How many in one burst: 1..=100. Default 5.
    pub count: u32,
    /// Spacing within a burst: 1ms..=10s. Default 100ms.
    pub interval: Duration,
    /// A second burst this long after becoming master (at most 1h). Default 5s;
    /// `"0s"` in the file gives `None` (no second burst).
    pub repeat_after: Option<Duration>,
    /// Re-announce periodically while master (1s..=24h). Default `None` (`"0s"`).
    pub refresh: Option<Duration>,
    /// Probe the VIPs before a cold claim (no peer heard since start) and
    /// refuse to claim one that another host answers for. Default true.
    pub probe: bool,
}

/// Positions kept for [`check_against_system`](super::check_against_system); ignored
/// by equality.
#[derive(Clone, Debug, Default)]
pub(super) struct Sources {
    /// `node.control_group`.
    pub(super) control_group: Option<Location>,
    /// By instance name.
    pub(super) instances: HashMap<String, InstanceSources>,
}

/// Positions of one instance's values that host checks point at.
#[derive(Clone, Debug)]
pub(super) struct InstanceSources {
    /// `interface`.
    pub(super) interface: Location,
    /// Parallel to `InstanceConfig::vips`.
    pub(super) vips: Vec<Location>,
}

impl PartialEq for Sources {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
