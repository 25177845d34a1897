//! What the running host says about a valid configuration.
//!
//! [`check_against_system`] (for `vipd check` and start-up) asks the host about
//! interfaces, their addresses and unix groups; [`hostname`] supplies the default
//! node name, and [`check_warnings`] what `vipd check` warns about. This is the
//! only part of `config` that asks the host anything (apart from reading key
//! files during validation). It only reads: no sockets, no netlink writes, no
//! daemon state.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use super::{Config, Location};

/// A problem between a valid configuration and the host it is to run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemCheckProblem {
    /// Where in the file the offending value is, when the config came from a file.
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SystemCheckProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Checks `config` against this host (`vipd check` and start-up):
///
/// - every instance's interface exists;
/// - `node.control_group`, if set, exists;
/// - unless `vips_may_be_present`, no VIP is already an address of its interface.
///
/// The last rule: an address that is on the interface before vipd runs belongs to
/// someone else (a static address, another daemon), and vipd would delete it when
/// it releases the VIP. But a running vipd (a master, or a crashed one whose
/// addresses start-up will clean) legitimately has its VIPs on the interface, so the
/// caller passes `vips_may_be_present = true` when vipd is or may be running (e.g.
/// `vipd check` while the service is active, or a reload) and `false` for a check
/// before the first start. The interface's own addresses are not otherwise
/// distinguishable from VIPs here.
pub fn check_against_system(config: &Config, vips_may_be_present: bool) -> Vec<SystemCheckProblem> {
    let interfaces = match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => {
            let mut map: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
            for a in addrs {
                let ip = a.address.as_ref().and_then(|s| {
                    s.as_sockaddr_in()
                        .map(|v4| IpAddr::V4(v4.ip()))
                        .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                });
                let entry = map.entry(a.interface_name).or_default();
                entry.extend(ip);
            }
            map
        }
        Err(e) => {
            return vec![SystemCheckProblem {
                location: None,
                message: format!("cannot list network interfaces (getifaddrs): {e}"),
            }]
        }
    };
    let group_exists = |name: &str| nix::unistd::Group::from_name(name).map(|g| g.is_some());
    let mut problems = check_against(config, &interfaces, vips_may_be_present, group_exists);
    problems.extend(check_users(config, |name| {
        nix::unistd::User::from_name(name).map(|u| u.is_some())
    }));
    problems.extend(check_etcd_files(config));
    problems
}

/// What an instance etcd decides for should know: a lease too short to
/// ride out an etcd leader election, fail-open's price, plain http.
fn store_warnings(
    name: &str,
    store: &super::StoreElection,
    etcd: Option<&super::EtcdConfig>,
) -> Vec<String> {
    let who = format!("instance {name:?}");
    let mut out = Vec::new();
    if store.lease_ttl < std::time::Duration::from_secs(4) {
        out.push(format!("{who}: lease_ttl {} s is under twice etcd's default election timeout (1 s): nobody can renew a lease while etcd elects a leader, so a holder may let go of the VIPs during one (fail-closed); 5 s (the default) rides it out", store.lease_ttl.as_secs()));
    }
    if store.on_unreachable == super::OnUnreachable::FailOpen {
        out.push(format!("{who}: store_unreachable = \"fail-open\": a holder cut off from etcd keeps the VIPs while another node may take them: two holders until the cut heals"));
    }
    if etcd.is_some_and(|e| e.endpoints.iter().all(|u| u.starts_with("http://"))) {
        out.push(format!("{who}: [node.etcd] endpoints are plain http: anyone on the path can read and rewrite who holds the VIPs; use https with ca_file, cert_file and key_file"));
    }
    out
}

/// `[node.etcd]`'s CA, certificate and key must be readable PEM files that
/// fit together, as the daemon reads them at start (no network I/O).
fn check_etcd_files(config: &Config) -> Option<SystemCheckProblem> {
    let etcd = config.node.etcd.as_ref()?;
    crate::etcd::Client::new(etcd.client_settings())
        .err()
        .map(|e| SystemCheckProblem {
            location: None,
            message: format!("[node.etcd]: {e}"),
        })
}

/// Every user a hook or track script runs as must exist on this host.
fn check_users(
    config: &Config,
    user_exists: impl Fn(&str) -> nix::Result<bool>,
) -> Vec<SystemCheckProblem> {
    let mut problems = Vec::new();
    let mut checked = std::collections::BTreeSet::new();
    for instance in &config.instances {
        let scripts = instance
            .track_scripts
            .iter()
            .map(|s| (format!("track_script {:?}", s.name), &s.user));
        for (what, user) in
            std::iter::once(("notify".to_owned(), &instance.notify.user)).chain(scripts)
        {
            let Some(user) = user else { continue };
            if !checked.insert(user.clone()) {
                continue;
            }
            let message = match user_exists(user) {
                Ok(true) => continue,
                Ok(false) => format!(
                    "instance {:?}: {what} runs as user {user:?}, which does not exist on this host",
                    instance.name
                ),
                Err(e) => format!(
                    "instance {:?}: {what}: cannot look up user {user:?}: {e}",
                    instance.name
                ),
            };
            problems.push(SystemCheckProblem {
                location: None,
                message,
            });
        }
    }
    problems
}

/// [`check_against_system`] with the system's answers passed in (tests give their own).
fn check_against(
    config: &Config,
    interfaces: &BTreeMap<String, Vec<IpAddr>>,
    vips_may_be_present: bool,
    group_exists: impl Fn(&str) -> nix::Result<bool>,
) -> Vec<SystemCheckProblem> {
    let mut problems = Vec::new();
    if let Some(group) = &config.node.control_group {
        let message = match group_exists(group) {
            Ok(true) => None,
            Ok(false) => Some(format!("[node]: control_group {group:?} does not exist; create it (groupadd --system {group}) or remove control_group")),
            Err(e) => Some(format!("[node]: cannot look up control_group {group:?}: {e}")),
        };
        if let Some(message) = message {
            problems.push(SystemCheckProblem {
                location: config.sources.control_group.clone(),
                message,
            });
        }
    }
    for instance in &config.instances {
        let sources = config.sources.instances.get(&instance.name);
        let who = format!("instance {:?}", instance.name);
        let Some(addrs) = interfaces.get(&instance.interface) else {
            let known: Vec<&str> = interfaces.keys().map(String::as_str).collect();
            problems.push(SystemCheckProblem {
                location: sources.map(|s| s.interface.clone()),
                message: format!(
                    "{who}: interface {:?} does not exist; valid on this host: {}",
                    instance.interface,
                    known.join(", ")
                ),
            });
            continue;
        };
        if vips_may_be_present {
            continue;
        }
        let present: HashSet<&IpAddr> = addrs.iter().collect();
        for (i, vip) in instance.vips.iter().enumerate() {
            if present.contains(&vip.addr) {
                problems.push(SystemCheckProblem {
                    location: sources.and_then(|s| s.vips.get(i).cloned()),
                    message: format!(
                        "{who}: VIP {} is already an address of {} while vipd is not running, so it belongs to something else and vipd would remove it on release; valid: an address not configured on the host",
                        vip.addr, instance.interface
                    ),
                });
            }
        }
    }
    problems
}

/// Warnings for `vipd check`: things that work but are likely mistakes. It
/// prints them and still succeeds. Today: a node name that is a well-known
/// default hostname (`localhost`, an image's name), which other nodes are likely
/// to carry too; two nodes with one name share a node id, and the later starter
/// then stands aside (see the daemon's duplicate-identity rule).
pub fn check_warnings(config: &Config) -> Vec<SystemCheckProblem> {
    let mut warnings = Vec::new();
    let name = &config.node.name;
    if is_default_hostname(name) {
        warnings.push(SystemCheckProblem {
            location: None,
            message: format!(
                "[node]: name {name:?} is a default hostname that other nodes are likely to share; nodes with one name share a node id, and the later one to start stands aside in fault; set name = \"...\" to a name of this node's own"
            ),
        });
    }
    for instance in &config.instances {
        let location = config
            .sources
            .instances
            .get(&instance.name)
            .map(|s| s.interface.clone());
        if let Some(store) = &instance.store {
            warnings.extend(
                store_warnings(&instance.name, store, config.node.etcd.as_ref())
                    .into_iter()
                    .map(|message| SystemCheckProblem {
                        location: location.clone(),
                        message,
                    }),
            );
        }
        let Some(vrrp) = instance.protocol.vrrp() else {
            continue;
        };
        let who = format!("instance {:?}", instance.name);
        let proto = instance.protocol.as_str();
        let auth = match vrrp.auth_pass {
            Some(_) => {
                "VRRPv2's password travels in clear text, so anyone on the link can read it and"
            }
            None => "nothing authenticates its adverts, so anyone on the link",
        };
        for message in [
            format!("{who}: protocol {proto}: {auth} can take the VIPs with one advert of a higher priority (vipd's own protocol signs every advert with HMAC)"),
            format!("{who}: protocol {proto}: no replay guard; a recorded master advert, replayed, holds the backups off while the master is dead"),
            format!("{who}: protocol {proto}: VRRP backups are silent, so this node cannot see whether a backup is ready: `vipd drain` hands over to whichever node answers its priority-0 advert and rolls back (stays master) if none becomes master within handover_timeout; `vipd status` shows only the master"),
        ] {
            warnings.push(SystemCheckProblem {
                location: location.clone(),
                message,
            });
        }
    }
    warnings
}

/// Hostnames that installers, images and containers leave behind: every node
/// built from one image carries them.
const DEFAULT_HOSTNAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "localhost4",
    "localhost4.localdomain4",
    "localhost6",
    "localhost6.localdomain6",
    "(none)",
    "linux",
    "ubuntu",
    "debian",
    "fedora",
    "centos",
    "rocky",
    "almalinux",
    "alpine",
    "archlinux",
    "raspberrypi",
    "vagrant",
];

/// Whether `name` is a well-known default hostname (case-insensitive).
fn is_default_hostname(name: &str) -> bool {
    DEFAULT_HOSTNAMES
        .iter()
        .any(|d| d.eq_ignore_ascii_case(name))
}

/// The host's name, the default `node.name`.
pub(super) fn hostname() -> Result<String, String> {
    let name = nix::unistd::gethostname().map_err(|e| e.to_string())?;
    name.into_string()
        .map_err(|_| "the hostname is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::from_toml;

    fn sample() -> Config {
        let text = r#"
[node]
name = "n1"
control_group = "vipd-ops"

[[instance]]
name = "db"
interface = "eth0"
group = 51
priority = 150
vips = ["10.0.0.200/24", "2001:db8::200/64"]
auth = "none"
"#;
        match from_toml(text, Path::new("/etc/vipd/vipd.toml")) {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        }
    }

    fn interfaces(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<IpAddr>> {
        list.iter()
            .map(|(name, addrs)| {
                let addrs = addrs.iter().map(|a| a.parse().unwrap()).collect();
                (name.to_string(), addrs)
            })
            .collect()
    }

    #[test]
    fn default_hostnames_are_warned_about() {
        assert!(is_default_hostname("localhost"));
        assert!(is_default_hostname("LocalHost.localdomain"));
        assert!(is_default_hostname("ubuntu"));
        assert!(!is_default_hostname("db1"));
        assert!(!is_default_hostname("localhost-db1"));
        let mut config = sample();
        assert!(check_warnings(&config).is_empty());
        config.node.name = "localhost".into();
        let warnings = check_warnings(&config);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0]
            .message
            .contains("\"localhost\" is a default hostname"));
    }

    #[test]
    fn system_check_vip_already_on_interface() {
        let config = sample();
        let ifs = interfaces(&[
            ("lo", &["127.0.0.1"]),
            ("eth0", &["10.0.0.11", "2001:db8::200"]),
        ]);
        let problems = check_against(&config, &ifs, false, |_| Ok(true));
        assert_eq!(problems.len(), 1, "{problems:?}");
        let message = problems[0].to_string();
        assert!(
            message.starts_with("/etc/vipd/vipd.toml:11:26: instance \"db\": VIP 2001:db8::200 is already an address of eth0"),
            "{message}"
        );
        // A running vipd may hold its VIPs: no problem then.
        assert!(check_against(&config, &ifs, true, |_| Ok(true)).is_empty());
        // Nothing on the interface: no problem either way.
        let ifs = interfaces(&[("eth0", &["10.0.0.11"])]);
        assert!(check_against(&config, &ifs, false, |_| Ok(true)).is_empty());
    }

    #[test]
    fn system_check_missing_interface_and_group() {
        let config = sample();
        let ifs = interfaces(&[("lo", &["127.0.0.1"]), ("eth1", &[])]);
        let problems = check_against(&config, &ifs, false, |_| Ok(false));
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].starts_with(
                "/etc/vipd/vipd.toml:4:17: [node]: control_group \"vipd-ops\" does not exist"
            ),
            "{messages:?}"
        );
        assert!(messages[1].starts_with("/etc/vipd/vipd.toml:8:13: instance \"db\": interface \"eth0\" does not exist; valid on this host: eth1, lo"), "{messages:?}");
        // Built by hand: same checks, no positions.
        let by_hand = Config::new(config.node.clone(), config.instances.clone());
        assert_eq!(by_hand, config);
        let problems = check_against(&by_hand, &ifs, false, |_| Ok(true));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].location, None);
    }
}
