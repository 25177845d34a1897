//! What a reload changes: a pure [`plan`] from the running configuration to the
//! new one, unit-tested here without root or sockets.
//!
//! The rule (FIELD-NOTES 4): a reload moves nothing it does not have to.
//!
//! - An instance whose configuration is unchanged is kept as it runs: same
//!   task, same election, VIPs untouched.
//! - One whose changes can all be taken by the running task is **updated in
//!   place**, each [`Change`] applied live: advert keys (a key rotation);
//!   election settings (priority, preempt, preempt delay, intervals, margin,
//!   handover timeout: the instance advertises them at once and the election
//!   decides, see the election's rule "Reload"); the VIP set (a master claims
//!   and announces an added VIP and releases a removed one, the others stay
//!   as they are; a backup just takes the new set); announcement settings;
//!   notify hooks; track scripts, interfaces and files; the guard; the sync
//!   group; the advert transport: a new unicast `peers` list within one
//!   address family stays on the same socket with a new source filter and
//!   destinations ([`Change::Peers`]), a new `port` or `multicast_group` (or
//!   another address family) is joined before the old socket is left
//!   ([`Change::Transport`]); either way peers no longer configured are
//!   forgotten by the election and added ones are unknown until heard.
//!   Health checks that did not change keep their state, so nothing flaps.
//! - A change of `interface` or `group`, or a switch between multicast and
//!   unicast on the same port and address family (the group address and the
//!   wildcard address cannot both be bound to one port without
//!   `SO_REUSEADDR`, which vipd never sets: FIELD-NOTES 22), **restarts** the
//!   instance: stopped make-before-break (like a drain), then started again.
//!   With a port change in the same reload, the switch is in place.
//! - A change of `protocol` (VRRP to vipd's own, or back) restarts the
//!   instance too, but a master keeps its VIPs through it: the old instance
//!   stops without releasing them or advertising, and the new one resumes as
//!   master at once (the core's rule 12), so clients lose nothing while a
//!   cluster moves from VRRP to vipd's protocol one node at a time.
//! - A change of `[node.etcd]` restarts the instances etcd decides for.
//! - A removed instance is stopped; a new one is started.
//! - `[node]` keys that shape the whole daemon (name, control socket and
//!   group, state directory) need a restart of vipd: a reload that changes
//!   them is refused and nothing changes.
//!
//! A field of the instance configuration not named by any [`Change`] restarts
//! the instance, so a key added to the schema later is safe until it is
//! taught to apply live.
//!
//! What it may not touch: tasks, sockets and files; the supervisor carries the
//! plan out.

use std::fmt;

use crate::config::{Config, ConfigError, InstanceConfig, NodeConfig, SystemCheckProblem};
use crate::instance::{copy_election_fields, election_fields_differ};

/// Why a reload was refused. The running configuration stays as it is.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file does not load or validate; one diagnostic per line.
    #[error("{}", config_error_text(.0))]
    Config(#[from] ConfigError),
    /// The new configuration does not fit this host (interfaces, groups).
    #[error("{}", join_lines(.0))]
    System(Vec<SystemCheckProblem>),
    /// `[node]` keys changed that only a restart can apply.
    #[error("[node] {} changed; that needs a restart of vipd (systemctl restart vipd); nothing was changed", .0.join(", "))]
    NeedsRestart(Vec<&'static str>),
    /// The new configuration needs more open files than the process may have.
    #[error(transparent)]
    FdLimit(#[from] super::limits::FdLimitError),
    /// The task that read the file failed.
    #[error("loading the configuration: {0}")]
    Task(String),
}

fn config_error_text(e: &ConfigError) -> String {
    let diags = e.diagnostics();
    if diags.is_empty() {
        e.to_string()
    } else {
        join_lines(diags)
    }
}

fn join_lines<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What to do with each instance, by name, in the new file's order where it has one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Unchanged: left running as they are.
    pub keep: Vec<String>,
    /// Gone from the new file: stopped.
    pub stop: Vec<String>,
    /// Changed in ways the running instance takes in place.
    pub update: Vec<Update>,
    /// Changed: stopped, then started with the new configuration.
    pub restart: Vec<String>,
    /// Of `restart`, those whose `protocol` changed while the interface,
    /// group and VIPs stayed: a master keeps its VIPs through the restart
    /// and resumes as master under the new protocol (migrating a cluster
    /// from VRRP to vipd's protocol, or back, one node at a time).
    pub switch_protocol: Vec<String>,
    /// New in the file: started.
    pub start: Vec<String>,
}

/// The plan from the instances that run now (`running`, with the node's
/// configuration `node`) to `new`.
pub fn plan<'a>(
    node: &NodeConfig,
    running: impl IntoIterator<Item = &'a InstanceConfig>,
    new: &Config,
) -> Result<ReloadPlan, ReloadError> {
    let needs_restart: Vec<&'static str> = [
        ("name", node.name != new.node.name),
        (
            "control_socket",
            node.control_socket != new.node.control_socket,
        ),
        (
            "control_group",
            node.control_group != new.node.control_group,
        ),
        ("state_dir", node.state_dir != new.node.state_dir),
        (
            "metrics_listen",
            node.metrics_listen != new.node.metrics_listen,
        ),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect();
    if !needs_restart.is_empty() {
        return Err(ReloadError::NeedsRestart(needs_restart));
    }
    let mut plan = ReloadPlan::default();
    let mut running_names = Vec::new();
    for old in running {
        running_names.push(old.name.clone());
        match new.instance(&old.name) {
            // Another etcd (endpoints, certificates, prefix) restarts the
            // instances it decides for.
            Some(c) if c == old && c.uses_store() && node.etcd != new.node.etcd => {
                plan.restart.push(old.name.clone());
            }
            Some(c) if c == old => plan.keep.push(old.name.clone()),
            Some(c) => match changes_in_place(old, c) {
                Some(changes) => plan.update.push(Update {
                    name: old.name.clone(),
                    changes,
                }),
                None => {
                    if protocol_switch(old, c) {
                        plan.switch_protocol.push(old.name.clone());
                    }
                    plan.restart.push(old.name.clone());
                }
            },
            None => plan.stop.push(old.name.clone()),
        }
    }
    plan.start = new
        .instances
        .iter()
        .filter(|c| !running_names.contains(&c.name))
        .map(|c| c.name.clone())
        .collect();
    Ok(plan)
}

/// Whether `new` is `old` speaking another protocol on the same interface,
/// group and VIPs.
fn protocol_switch(old: &InstanceConfig, new: &InstanceConfig) -> bool {
    old.protocol != new.protocol
        && old.interface == new.interface
        && old.group == new.group
        && old.vips == new.vips
}

/// An instance updated in place, with what changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub name: String,
    /// In the order of [`Change`]; never empty.
    pub changes: Vec<Change>,
}

/// One kind of change a running instance takes in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// `auth_key_file`, `auth_accept_key_files`: sign and verify with the new keys.
    Keys,
    /// `priority`, `preempt`, `preempt_delay`, `advert_interval`,
    /// `backup_advert_interval`, `takeover_margin`, `handover_timeout`: the
    /// election takes them and advertises at once.
    Election,
    /// `vips`: only the added and removed VIPs are claimed or released.
    Vips,
    /// `[instance.announce]`.
    Announce,
    /// `[instance.notify]`: the hooks of the next transitions.
    Notify,
    /// Track scripts, interfaces and files; unchanged ones keep their state.
    Checks,
    /// `[instance.guard]`; its last result stands until the new check reports.
    Guard,
    /// Membership of a `[[sync_group]]`.
    SyncGroup,
    /// `after_crash`: read by the clean-up after a crash, not by the running
    /// instance.
    AfterCrash,
    /// `peers` within one address family, unicast before and after: the
    /// instance stays on its socket; adverts go to the new peers, only they
    /// are heard, and a removed peer is forgotten by the election.
    Peers,
    /// `port`, `multicast_group`, or `peers` in a way that needs another
    /// socket: the instance subscribes to the new socket before it leaves the
    /// old one (make-before-break); removed peers are forgotten as for
    /// [`Change::Peers`].
    Transport,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Keys => "keys",
            Self::Election => "election settings",
            Self::Vips => "vips",
            Self::Announce => "announce",
            Self::Notify => "notify",
            Self::Checks => "track checks",
            Self::AfterCrash => "after_crash",
            Self::Guard => "guard",
            Self::SyncGroup => "sync group",
            Self::Peers => "peers",
            Self::Transport => "advert transport",
        })
    }
}

/// The changes from `old` to `new` if the running instance can take them all
/// in place; `None` if it must restart.
fn changes_in_place(old: &InstanceConfig, new: &InstanceConfig) -> Option<Vec<Change>> {
    let mut changes = Vec::new();
    let mut applied = old.clone();
    let mut take = |change: Change, differs: bool, apply: &mut dyn FnMut(&mut InstanceConfig)| {
        if differs {
            changes.push(change);
            apply(&mut applied);
        }
    };
    take(
        Change::Keys,
        old.auth != new.auth || old.auth_accept != new.auth_accept,
        &mut |c| {
            c.auth = new.auth.clone();
            c.auth_accept = new.auth_accept.clone();
        },
    );
    take(
        Change::Election,
        election_fields_differ(old, new),
        &mut |c| copy_election_fields(c, new),
    );
    take(Change::Vips, old.vips != new.vips, &mut |c| {
        c.vips = new.vips.clone()
    });
    take(Change::Announce, old.announce != new.announce, &mut |c| {
        c.announce = new.announce.clone()
    });
    take(Change::Notify, old.notify != new.notify, &mut |c| {
        c.notify = new.notify.clone()
    });
    take(
        Change::Checks,
        old.track_scripts != new.track_scripts
            || old.track_interfaces != new.track_interfaces
            || old.track_files != new.track_files,
        &mut |c| {
            c.track_scripts = new.track_scripts.clone();
            c.track_interfaces = new.track_interfaces.clone();
            c.track_files = new.track_files.clone();
        },
    );
    take(Change::Guard, old.guard != new.guard, &mut |c| {
        c.guard = new.guard.clone()
    });
    take(
        Change::SyncGroup,
        old.sync_group != new.sync_group,
        &mut |c| c.sync_group = new.sync_group.clone(),
    );
    take(
        Change::AfterCrash,
        old.after_crash != new.after_crash,
        &mut |c| c.after_crash = new.after_crash,
    );
    match transport_change(old, new) {
        TransportChange::None => {}
        TransportChange::SameSocket => take(Change::Peers, true, &mut |c| {
            c.peers = new.peers.clone();
            // Unused by a unicast instance.
            c.multicast_group = new.multicast_group;
        }),
        TransportChange::OtherSocket => take(Change::Transport, true, &mut |c| {
            c.peers = new.peers.clone();
            c.port = new.port;
            c.multicast_group = new.multicast_group;
        }),
        // Left unapplied: the comparison below sends it to a restart.
        TransportChange::Conflicting => {}
    }
    // Anything left (interface, group, a multicast/unicast switch on one port,
    // or a key not taught to apply live) needs a restart.
    (applied == *new && !changes.is_empty()).then_some(changes)
}

/// How the advert transport of an instance changes.
enum TransportChange {
    None,
    /// Only the unicast peer list, within one address family (and the
    /// multicast group, which a unicast instance does not use).
    SameSocket,
    /// Another socket that can be bound while the old one is still open.
    OtherSocket,
    /// A switch between multicast and unicast on the same port and address
    /// family: the new socket (wildcard address) cannot be bound while the
    /// old one (the group address) is, or the reverse, because advert sockets
    /// never set `SO_REUSEADDR` (FIELD-NOTES 22). Only a restart can do it.
    Conflicting,
}

fn transport_change(old: &InstanceConfig, new: &InstanceConfig) -> TransportChange {
    // What the socket key of `net::transport` is made of, besides the
    // interface (a change of which restarts anyway).
    let unicast = |c: &InstanceConfig| !c.peers.is_empty();
    let ipv6 = |c: &InstanceConfig| {
        if unicast(c) {
            c.peers.iter().any(std::net::IpAddr::is_ipv6)
        } else {
            c.multicast_group.is_ipv6()
        }
    };
    // The multicast group means nothing to a unicast instance.
    let group_matters = !unicast(old) || !unicast(new);
    let same_socket = unicast(old) == unicast(new)
        && ipv6(old) == ipv6(new)
        && old.port == new.port
        && (!group_matters || old.multicast_group == new.multicast_group);
    if old.peers == new.peers && old.port == new.port && old.multicast_group == new.multicast_group
    {
        TransportChange::None
    } else if same_socket {
        TransportChange::SameSocket
    } else if unicast(old) != unicast(new) && ipv6(old) == ipv6(new) && old.port == new.port {
        TransportChange::Conflicting
    } else {
        TransportChange::OtherSocket
    }
}

/// What a reload did, as `vipd reload` prints it after "applied: ".
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub kept: Vec<String>,
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
    /// Instances whose only change was their advert keys, taken in place.
    pub rekeyed: Vec<String>,
    /// Instances updated in place, each with what changed: `db (vips, notify)`.
    pub updated: Vec<String>,
    /// Instances that could not start, each with the error.
    pub failed: Vec<String>,
}

impl fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "kept: {}; started: {}; stopped: {}; restarted: {}",
            list(&self.kept),
            list(&self.started),
            list(&self.stopped),
            list(&self.restarted)
        )?;
        if !self.rekeyed.is_empty() {
            write!(f, "; rekeyed in place: {}", self.rekeyed.join(", "))?;
        }
        if !self.updated.is_empty() {
            write!(f, "; updated in place: {}", self.updated.join(", "))?;
        }
        if !self.failed.is_empty() {
            write!(f, "; FAILED to start: {}", self.failed.join("; "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use std::path::Path;

    fn config(node: &str, instances: &[(&str, u8)]) -> Config {
        let mut text = format!("[node]\nname = \"{node}\"\n");
        for (name, priority) in instances {
            text.push_str(&format!(
                "\n[[instance]]\nname = \"{name}\"\ninterface = \"eth0\"\ngroup = {}\npriority = {priority}\nvips = [\"10.0.0.{}/24\"]\nauth = \"none\"\n",
                instances.iter().position(|(n, _)| n == name).unwrap() + 1,
                instances.iter().position(|(n, _)| n == name).unwrap() + 100,
            ));
        }
        config::from_toml(&text, Path::new("test.toml")).expect("valid test config")
    }

    fn plan_between(old: &Config, new: &Config) -> Result<ReloadPlan, ReloadError> {
        plan(&old.node, &old.instances, new)
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_same_file_keeps_everything() {
        let old = config("n1", &[("db", 100), ("web", 100)]);
        let p = plan_between(&old, &old).unwrap();
        assert_eq!(p.keep, names(&["db", "web"]));
        assert!(p.stop.is_empty() && p.restart.is_empty() && p.start.is_empty());
    }

    fn updated(p: &ReloadPlan) -> Vec<(&str, Vec<Change>)> {
        p.update
            .iter()
            .map(|u| (u.name.as_str(), u.changes.clone()))
            .collect()
    }

    #[test]
    fn an_interface_or_group_change_restarts_and_the_others_are_untouched() {
        let old = config("n1", &[("db", 100), ("web", 100)]);
        let mut new = config("n1", &[("db", 100), ("web", 100)]);
        new.instances[1].interface = "eth1".into();
        let p = plan_between(&old, &new).unwrap();
        assert_eq!(p.keep, names(&["db"]));
        assert_eq!(p.restart, names(&["web"]));
        assert!(p.stop.is_empty() && p.start.is_empty() && p.update.is_empty());

        let mut new = config("n1", &[("db", 100), ("web", 100)]);
        new.instances[0].group = 77;
        new.instances[0].priority = 120;
        let p = plan_between(&old, &new).unwrap();
        assert_eq!(
            p.restart,
            names(&["db"]),
            "a group change wins over the rest"
        );
        assert!(p.update.is_empty());
    }

    #[test]
    fn transport_changes_update_in_place_unless_both_sockets_cannot_be_bound_at_once() {
        let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
        let unicast = |peers: &[&str]| {
            let mut c = config("n1", &[("db", 100)]);
            c.instances[0].peers = peers.iter().map(|p| ip(p)).collect();
            c
        };
        let multicast = config("n1", &[("db", 100)]);
        let change = |old: &Config, new: &Config| {
            let p = plan_between(old, new).unwrap();
            if p.restart == names(&["db"]) {
                None
            } else {
                Some(updated(&p)[0].1.clone())
            }
        };
        let two = unicast(&["10.0.0.2"]);
        let three = unicast(&["10.0.0.2", "10.0.0.3"]);
        assert_eq!(
            change(&two, &three),
            Some(vec![Change::Peers]),
            "a peer added"
        );
        assert_eq!(
            change(&three, &two),
            Some(vec![Change::Peers]),
            "a peer removed"
        );
        let v6 = unicast(&["fe80::2"]);
        assert_eq!(
            change(&two, &v6),
            Some(vec![Change::Transport]),
            "another address family: another socket"
        );
        let mut port = multicast.clone();
        port.instances[0].port = 5999;
        assert_eq!(change(&multicast, &port), Some(vec![Change::Transport]));
        let mut group = multicast.clone();
        group.instances[0].multicast_group = ip("224.0.0.19");
        assert_eq!(change(&multicast, &group), Some(vec![Change::Transport]));
        // Multicast to unicast on one port: the group address and the wildcard
        // address cannot be bound at once without SO_REUSEADDR.
        assert_eq!(change(&multicast, &two), None);
        assert_eq!(change(&two, &multicast), None);
        // With a port change at the same time they can.
        let mut two_elsewhere = two.clone();
        two_elsewhere.instances[0].port = 5999;
        assert_eq!(
            change(&multicast, &two_elsewhere),
            Some(vec![Change::Transport])
        );
        // An IPv4 multicast group and IPv6 unicast peers never clash.
        assert_eq!(change(&multicast, &v6), Some(vec![Change::Transport]));
    }

    #[test]
    fn a_key_rotation_and_election_settings_update_in_place() {
        use crate::wire::{Auth, AuthKey};
        let key = |b: u8| AuthKey::new(vec![b; 32]).expect("a long enough key");
        let old = config("n1", &[("db", 100), ("web", 100)]);
        let mut new = config("n1", &[("db", 100), ("web", 100)]);
        new.instances[0].auth = Auth::HmacSha256(key(1));
        new.instances[0].auth_accept = vec![key(2)];
        let p = plan_between(&old, &new).unwrap();
        assert_eq!(updated(&p), vec![("db", vec![Change::Keys])]);
        assert_eq!(p.keep, names(&["web"]));
        assert!(p.restart.is_empty());
        new.instances[0].priority = 120;
        new.instances[1].preempt = false;
        new.instances[1].advert_interval = std::time::Duration::from_millis(200);
        let p = plan_between(&old, &new).unwrap();
        assert_eq!(
            updated(&p),
            vec![
                ("db", vec![Change::Keys, Change::Election]),
                ("web", vec![Change::Election])
            ]
        );
        assert!(p.restart.is_empty() && p.keep.is_empty());
    }

    #[test]
    fn everything_outside_interface_and_group_updates_in_place() {
        use crate::config::{GuardConfig, GuardMethod, TrackFile, TrackScript, Witness};
        use std::time::Duration;
        let old = config("n1", &[("db", 100)]);
        let mut new = config("n1", &[("db", 100)]);
        let c = &mut new.instances[0];
        c.vips.push(config::Vip {
            addr: "10.0.0.77".parse().unwrap(),
            prefix_len: 24,
        });
        c.announce.count += 1;
        c.notify.master = vec!["/bin/true".into()];
        c.track_scripts.push(TrackScript {
            name: "pg".into(),
            command: vec!["/bin/true".into()],
            shell: false,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 1,
            fall: 1,
            weight: None,
            user: None,
        });
        c.track_files.push(TrackFile {
            path: "/run/w".into(),
            weight_multiplier: 1,
            interval: Duration::from_secs(1),
        });
        c.guard = Some(GuardConfig {
            witness: Witness::Address("10.0.0.1".parse().unwrap()),
            method: GuardMethod::Icmp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            fall: 1,
            rise: 1,
            quorum: false,
            peers_total: None,
        });
        let p = plan_between(&old, &new).unwrap();
        assert_eq!(
            updated(&p),
            vec![(
                "db",
                vec![
                    Change::Vips,
                    Change::Announce,
                    Change::Notify,
                    Change::Checks,
                    Change::Guard
                ]
            )]
        );
    }

    #[test]
    fn removed_instances_stop_and_new_ones_start() {
        let old = config("n1", &[("db", 100), ("web", 100)]);
        let new = config("n1", &[("db", 100), ("cache", 100)]);
        let p = plan_between(&old, &new).unwrap();
        assert_eq!(p.stop, names(&["web"]));
        assert_eq!(p.start, names(&["cache"]));
    }

    #[test]
    fn an_instance_that_failed_to_start_is_started_again() {
        let old = config("n1", &[("db", 100), ("web", 100)]);
        // Only "db" runs: "web" failed to start on an earlier reload.
        let p = plan(&old.node, &old.instances[..1], &old).unwrap();
        assert_eq!(p.keep, names(&["db"]));
        assert_eq!(p.start, names(&["web"]));
    }

    #[test]
    fn node_keys_that_need_a_restart_refuse_the_reload() {
        let old = config("n1", &[("db", 100)]);
        let new = config("n2", &[("db", 100)]);
        let err = plan_between(&old, &new).unwrap_err();
        assert!(matches!(err, ReloadError::NeedsRestart(ref keys) if keys == &["name"]));
        assert_eq!(
            err.to_string(),
            "[node] name changed; that needs a restart of vipd (systemctl restart vipd); nothing was changed"
        );
    }

    #[test]
    fn a_bad_file_names_the_place() {
        let err = config::from_toml("[node]\nname = 3\n", Path::new("/etc/vipd/vipd.toml"))
            .map_err(ReloadError::from)
            .unwrap_err();
        assert!(err.to_string().contains("/etc/vipd/vipd.toml:2:"), "{err}");
    }

    #[test]
    fn the_summary_reads_as_before() {
        let summary = ReloadSummary {
            kept: names(&["db"]),
            started: vec![],
            stopped: names(&["web"]),
            restarted: names(&["a", "b"]),
            rekeyed: vec![],
            updated: vec![],
            failed: vec![],
        };
        assert_eq!(
            summary.to_string(),
            "kept: db; started: none; stopped: web; restarted: a, b"
        );
        let failed = ReloadSummary {
            failed: names(&["x: interface \"eth9\": no such interface"]),
            ..ReloadSummary::default()
        };
        assert!(failed
            .to_string()
            .ends_with("; FAILED to start: x: interface \"eth9\": no such interface"));
    }
}
