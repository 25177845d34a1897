//! The health inputs of an instance: `[[instance.track_script]]`,
//! `[[instance.track_interface]]` and `[[instance.track_file]]`.

use std::collections::HashSet;

use toml::Spanned;

use super::{Validator, RUN_TIME_MAX, RUN_TIME_MIN};
use crate::config::raw::{RawTrackFile, RawTrackInterface, RawTrackScript};
use crate::config::{defaults, TrackFile, TrackInterface, TrackScript};

/// What a track script, interface or file adds to the priority: a weight, or
/// (absent) a fault.
const WEIGHT_RULE: &str = "-254..=-1 (taken off the priority while failing) or 1..=254 (added while good), or leave it out for fault";

impl Validator<'_> {
    pub(super) fn track_scripts(
        &mut self,
        who: &str,
        raw: Vec<Spanned<RawTrackScript>>,
    ) -> Option<Vec<TrackScript>> {
        let mut ok = self.not_too_many(who, "track_script", &raw);
        let mut out = Vec::new();
        let mut names: HashSet<String> = HashSet::new();
        for (n, table) in raw.into_iter().enumerate() {
            match self.track_script(who, n + 1, table, &mut names) {
                Some(script) => out.push(script),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// The `n`th (1-based) `[[instance.track_script]]`; `names` are those of the
    /// instance's scripts so far.
    fn track_script(
        &mut self,
        who: &str,
        n: usize,
        table: Spanned<RawTrackScript>,
        names: &mut HashSet<String>,
    ) -> Option<TrackScript> {
        let span = table.span();
        let t = table.into_inner();
        let mut label = format!("{who}: track_script #{n}");
        let name = self.name(&label, &span, t.name).and_then(|(name, name_span)| {
            if names.insert(name.clone()) {
                Some(name)
            } else {
                self.problem(name_span, format!("{label}: name {name:?} is already used by another track_script of this instance; valid: a unique name"));
                None
            }
        });
        if let Some(name) = &name {
            label = format!("{who}: track_script {name:?}");
        }
        let shell = t.shell.unwrap_or(false);
        let command = self
            .required(
                &label,
                &span,
                "command",
                t.command,
                "a program and its arguments, e.g. [\"/usr/bin/pg_isready\", \"-q\"]",
            )
            .and_then(|c| {
                let command_span = c.span();
                let command = self.command(&label, "command", Some(c))?;
                if shell && command.len() != 1 {
                    self.problem(command_span, format!("{label}: with shell = true, command is one string for /bin/sh -c; it has {}; valid: e.g. [\"pg_isready -q && test -f /run/db.ok\"]", command.len()));
                    return None;
                }
                Some(command)
            });
        let interval = self.duration_in(
            &label,
            "interval",
            t.interval.as_ref(),
            defaults::TRACK_SCRIPT_INTERVAL,
            RUN_TIME_MIN,
            RUN_TIME_MAX,
        );
        let timeout = interval.and_then(|interval| {
            self.duration_in(
                &label,
                "timeout",
                t.timeout.as_ref(),
                interval,
                RUN_TIME_MIN,
                RUN_TIME_MAX,
            )
        });
        let rise = self.int_or(
            &label,
            "rise",
            t.rise.as_ref(),
            defaults::TRACK_RISE,
            1..=100,
        );
        let fall = self.int_or(
            &label,
            "fall",
            t.fall.as_ref(),
            defaults::TRACK_FALL,
            1..=100,
        );
        let weight = self.weight(&label, t.weight.as_ref());
        let user = self.user_name(&label, "user", t.user.clone());
        Some(TrackScript {
            name: name?,
            command: command?,
            shell,
            interval: interval?,
            timeout: timeout?,
            rise: rise?,
            fall: fall?,
            weight: weight?,
            user: user?,
        })
    }

    pub(super) fn track_interfaces(
        &mut self,
        who: &str,
        raw: Vec<Spanned<RawTrackInterface>>,
    ) -> Option<Vec<TrackInterface>> {
        let mut ok = self.not_too_many(who, "track_interface", &raw);
        let mut out: Vec<TrackInterface> = Vec::new();
        for (n, table) in raw.into_iter().enumerate() {
            let span = table.span();
            let t = table.into_inner();
            let label = format!("{who}: track_interface #{}", n + 1);
            let name = self
                .required(
                    &label,
                    &span,
                    "name",
                    t.name,
                    "a Linux interface name such as \"eth1\"",
                )
                .and_then(|name| self.interface_name(&label, name))
                .and_then(|(name, name_span)| {
                    if out.iter().any(|t| t.interface == name) {
                        self.problem(name_span, format!("{label}: interface {name:?} is tracked twice; valid: each interface once"));
                        None
                    } else {
                        Some(name)
                    }
                });
            let weight = self.weight(&label, t.weight.as_ref());
            match (name, weight) {
                (Some(interface), Some(weight)) => out.push(TrackInterface { interface, weight }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn track_files(
        &mut self,
        who: &str,
        raw: Vec<Spanned<RawTrackFile>>,
    ) -> Option<Vec<TrackFile>> {
        let mut ok = self.not_too_many(who, "track_file", &raw);
        let mut out = Vec::new();
        for (n, table) in raw.into_iter().enumerate() {
            let span = table.span();
            let t = table.into_inner();
            let label = format!("{who}: track_file #{}", n + 1);
            let path = self
                .required(&label, &span, "path", t.path, "a file holding an integer, e.g. \"/run/vipd/db.weight\"")
                .and_then(|p| {
                    let path_span = p.span();
                    let written = p.into_inner();
                    if written.is_empty() {
                        self.problem(path_span, format!("{label}: path is empty; valid: a file path such as \"/run/vipd/db.weight\""));
                        return None;
                    }
                    Some(self.base_dir().join(written))
                });
            let weight_multiplier = self.int_or(
                &label,
                "weight_multiplier",
                t.weight_multiplier.as_ref(),
                defaults::TRACK_FILE_MULTIPLIER,
                -254..=254,
            );
            let interval = self.duration_in(
                &label,
                "interval",
                t.interval.as_ref(),
                defaults::TRACK_FILE_INTERVAL,
                RUN_TIME_MIN,
                RUN_TIME_MAX,
            );
            match (path, weight_multiplier, interval) {
                (Some(path), Some(weight_multiplier), Some(interval)) => out.push(TrackFile {
                    path,
                    weight_multiplier,
                    interval,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// At most [`defaults::MAX_TRACKS`] tables of one kind (`key`) per instance.
    fn not_too_many<T>(&mut self, who: &str, key: &str, tables: &[Spanned<T>]) -> bool {
        if tables.len() > defaults::MAX_TRACKS {
            self.problem(
                tables.first().map_or(0..0, Spanned::span),
                format!(
                    "{who}: {} {key} tables; valid: at most {}",
                    tables.len(),
                    defaults::MAX_TRACKS
                ),
            );
            return false;
        }
        true
    }

    /// A weight ([`WEIGHT_RULE`]); absent means fault.
    fn weight(&mut self, who: &str, raw: Option<&Spanned<i64>>) -> Option<Option<i32>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let v = *raw.get_ref();
        if v == 0 || !(-254..=254).contains(&v) {
            self.problem(
                raw.span(),
                format!("{who}: weight {v} is not valid; valid: {WEIGHT_RULE}"),
            );
            return None;
        }
        i32::try_from(v).ok().map(Some)
    }
}

#[cfg(test)]
mod tests {
    //! The health tables end to end through `from_toml`, with the guard, notify
    //! and sync group tables they are usually written with.

    use std::path::Path;
    use std::time::Duration;

    use crate::config::{defaults, from_toml, GuardMethod, TrackInterface, Witness};

    const HEALTH_BASE: &str = "[node]\nname = \"n1\"\n\n[[instance]]\nname = \"db\"\ninterface = \"eth0\"\ngroup = 51\npriority = 150\nvips = [\"10.0.0.200/24\"]\nauth = \"none\"\n";

    fn health_errors(extra: &str) -> Vec<String> {
        match from_toml(
            &format!("{HEALTH_BASE}{extra}"),
            Path::new("/etc/vipd/vipd.toml"),
        ) {
            Ok(_) => panic!("accepted:\n{extra}"),
            Err(e) => {
                let d = e.diagnostics();
                if d.is_empty() {
                    vec![e.to_string()]
                } else {
                    d.iter().map(ToString::to_string).collect()
                }
            }
        }
    }

    #[test]
    fn health_tables_parse_with_defaults() {
        let text = format!(
            "{HEALTH_BASE}\n[[instance.track_script]]\nname = \"pg\"\ncommand = [\"/bin/true\"]\nweight = -60\n\n[[instance.track_script]]\nname = \"sh\"\ncommand = [\"exit 0\"]\nshell = true\ninterval = \"500ms\"\nrise = 2\nfall = 3\n\n[[instance.track_interface]]\nname = \"eth1\"\n\n[[instance.track_file]]\npath = \"db.weight\"\n\n[instance.notify]\nmaster = [\"/bin/echo\", \"m\"]\n\n[instance.guard]\nwitness = \"gateway\"\n\n[[instance]]\nname = \"web\"\ninterface = \"eth1\"\ngroup = 52\npriority = 100\nvips = [\"10.0.1.200/24\"]\nauth = \"none\"\n\n[[sync_group]]\nname = \"router\"\ninstances = [\"db\", \"web\"]\n"
        );
        let config =
            from_toml(&text, Path::new("/etc/vipd/vipd.toml")).unwrap_or_else(|e| panic!("{e}"));
        let db = &config.instances[0];
        assert_eq!(db.track_scripts.len(), 2);
        let pg = &db.track_scripts[0];
        assert_eq!(
            (pg.interval, pg.timeout),
            (Duration::from_secs(2), Duration::from_secs(2))
        );
        assert_eq!(
            (pg.rise, pg.fall, pg.weight, pg.shell),
            (1, 1, Some(-60), false)
        );
        let sh = &db.track_scripts[1];
        assert_eq!(
            (sh.interval, sh.timeout, sh.rise, sh.fall, sh.weight),
            (
                Duration::from_millis(500),
                Duration::from_millis(500),
                2,
                3,
                None
            )
        );
        assert_eq!(
            db.track_interfaces,
            vec![TrackInterface {
                interface: "eth1".into(),
                weight: None
            }]
        );
        assert_eq!(db.track_files[0].path, Path::new("/etc/vipd/db.weight"));
        assert_eq!(db.track_files[0].weight_multiplier, 1);
        assert_eq!(db.notify.master, vec!["/bin/echo", "m"]);
        assert_eq!(db.notify.timeout, defaults::NOTIFY_TIMEOUT);
        let guard = db.guard.as_ref().unwrap();
        assert_eq!(
            (
                &guard.witness,
                guard.method,
                guard.interval,
                guard.fall,
                guard.rise
            ),
            (
                &Witness::Gateway,
                GuardMethod::Icmp,
                Duration::from_secs(1),
                1,
                2
            )
        );
        assert_eq!(config.sync_groups.len(), 1);
        assert_eq!(db.sync_group.as_ref().unwrap().instances, vec!["db", "web"]);
        assert_eq!(config.instances[1].sync_group, db.sync_group);
    }

    #[test]
    fn health_problems_carry_positions() {
        let e = health_errors(
            "\n[[instance.track_script]]\nname = \"pg\"\ncommand = [\"/bin/true\"]\nweight = 0\n",
        );
        assert_eq!(e, vec!["/etc/vipd/vipd.toml:15:10: instance \"db\": track_script \"pg\": weight 0 is not valid; valid: -254..=-1 (taken off the priority while failing) or 1..=254 (added while good), or leave it out for fault"]);
        let e = health_errors(
            "\n[[instance.track_script]]\nname = \"pg\"\ncommand = [\"a\", \"b\"]\nshell = true\n",
        );
        assert!(e[0].starts_with("/etc/vipd/vipd.toml:14:11: instance \"db\": track_script \"pg\": with shell = true"), "{e:?}");
        let e = health_errors("\n[instance.guard]\nwitness = \"gateway\"\nquorum = true\n");
        assert!(
            e[0].contains("quorum = true needs the group's size"),
            "{e:?}"
        );
        let e = health_errors(
            "backup_advert_interval = \"2s\"\n[instance.guard]\nwitness = \"gateway\"\nquorum = true\npeers_total = 3\n",
        );
        assert!(
            e[0].starts_with("/etc/vipd/vipd.toml:11:26: instance \"db\": backup_advert_interval 2s differs from advert_interval 1s while guard.quorum is on"),
            "{e:?}"
        );
        let e = health_errors("\n[instance.notify]\nmaster = []\nbogus = 1\n");
        assert!(e[0].contains("unknown field `bogus`"), "{e:?}");
        let e = health_errors("\n[[sync_group]]\nname = \"g\"\ninstances = [\"db\", \"nope\"]\n");
        assert_eq!(e, vec!["/etc/vipd/vipd.toml:14:20: sync_group \"g\": there is no instance \"nope\"; valid: the name of an [[instance]] of this file"]);
    }
}
