//! What a reload changes: a pure [`plan`] from the running configuration to the
//! new one, unit-tested here without root or sockets.
//!
//! The rule (FIELD-NOTES 4): an instance whose configuration is unchanged is
//! kept as it runs — same task, same election, VIPs untouched. One whose only
//! change is its advert keys (`auth_key_file`, `auth_accept_key_files`: a key
//! rotation) is rekeyed in place, so rotating the key on the master moves
//! nothing. Any other change is
//! stopped (make-before-break, like a drain) and started again; a removed one is
//! stopped; a new one is started. `[node]` keys that shape the whole daemon
//! (name, control socket and group, state directory) need a restart: a reload
//! that changes them is refused and nothing changes.
//!
//! What it may not touch: tasks, sockets and files; the supervisor carries the
//! plan out.

use std::fmt;

use crate::config::{Config, ConfigError, InstanceConfig, NodeConfig, SystemCheckProblem};

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
    /// Only the advert keys changed: the running instance takes the new keys.
    pub rekey: Vec<String>,
    /// Changed: stopped, then started with the new configuration.
    pub restart: Vec<String>,
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
            Some(c) if c == old => plan.keep.push(old.name.clone()),
            Some(c) if only_keys_differ(old, c) => plan.rekey.push(old.name.clone()),
            Some(_) => plan.restart.push(old.name.clone()),
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

/// Whether `old` and `new` differ in their advert keys alone.
fn only_keys_differ(old: &InstanceConfig, new: &InstanceConfig) -> bool {
    let mut rekeyed = old.clone();
    rekeyed.auth = new.auth.clone();
    rekeyed.auth_accept = new.auth_accept.clone();
    rekeyed == *new
}

/// What a reload did, as `vipd reload` prints it after "applied: ".
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub kept: Vec<String>,
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
    /// Instances that took new advert keys in place.
    pub rekeyed: Vec<String>,
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

    #[test]
    fn a_changed_instance_restarts_and_the_others_are_untouched() {
        let old = config("n1", &[("db", 100), ("web", 100)]);
        let new = config("n1", &[("db", 100), ("web", 120)]);
        let p = plan_between(&old, &new).unwrap();
        assert_eq!(p.keep, names(&["db"]));
        assert_eq!(p.restart, names(&["web"]));
        assert!(p.stop.is_empty() && p.start.is_empty());
    }

    #[test]
    fn a_key_rotation_rekeys_in_place_and_anything_more_restarts() {
        use crate::wire::{Auth, AuthKey};
        let key = |b: u8| AuthKey::new(vec![b; 32]).expect("a long enough key");
        let old = config("n1", &[("db", 100), ("web", 100)]);
        let mut new = config("n1", &[("db", 100), ("web", 100)]);
        new.instances[0].auth = Auth::HmacSha256(key(1));
        new.instances[0].auth_accept = vec![key(2)];
        let p = plan_between(&old, &new).unwrap();
        assert_eq!(p.rekey, names(&["db"]));
        assert_eq!(p.keep, names(&["web"]));
        assert!(p.restart.is_empty());
        new.instances[0].priority = 120;
        let p = plan_between(&old, &new).unwrap();
        assert_eq!(p.restart, names(&["db"]));
        assert!(p.rekey.is_empty());
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
