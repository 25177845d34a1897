//! A tracker's state across a reload: the checks still configured keep what
//! they know, so a reload that touches one check (or the hooks, or the VIPs)
//! makes no other check start over and nothing flaps.
//!
//! The rule: a track script is the same check when its name is; a tracked
//! interface when its interface is; a track file when its path is; the guard
//! while there is one. Such a check keeps its good/failing state and last
//! result (its new `rise`/`fall` count from the next result on), an interface
//! its link state, a file its value; a changed guard's last result stands until
//! the new check reports. The faults the instance core sets (its own link,
//! claims, quorum, sync group) and the sync group's weights carry over as they are.
//!
//! What it may not touch: the checks' tasks (the instance restarts them).

use super::Tracker;

impl Tracker {
    /// Takes over from `old` the state of every check this tracker still has.
    pub fn carry_over(&mut self, old: &Self) {
        for (script, counted) in &mut self.scripts {
            if let Some((_, was)) = old.scripts.iter().find(|(s, _)| s.name == script.name) {
                counted.good = was.good;
                counted.last = was.last.clone();
            }
        }
        for (name, _, up) in &mut self.interfaces {
            if let Some((_, _, was)) = old.interfaces.iter().find(|(n, _, _)| n == name) {
                *up = *was;
            }
        }
        for (file, value, problem) in &mut self.files {
            if let Some((_, v, p)) = old.files.iter().find(|(f, _, _)| f.path == file.path) {
                *value = *v;
                problem.clone_from(p);
            }
        }
        if let (Some(guard), Some(was)) = (&mut self.guard, &old.guard) {
            guard.good = was.good;
            guard.last = was.last.clone();
        }
        self.link_down.clone_from(&old.link_down);
        self.claim_fault.clone_from(&old.claim_fault);
        self.quorum_fault.clone_from(&old.quorum_fault);
        self.sync_fault.clone_from(&old.sync_fault);
        self.sync_weights.clone_from(&old.sync_weights);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{GuardConfig, GuardMethod, TrackScript, Witness};
    use crate::health::tests::instance;
    use crate::health::{CheckEvent, RunOutcome};

    fn script(name: &str, weight: Option<i32>) -> TrackScript {
        TrackScript {
            name: name.into(),
            command: vec!["/bin/true".into()],
            shell: false,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 3,
            fall: 3,
            weight,
            user: None,
        }
    }

    fn guard(interval: Duration) -> GuardConfig {
        GuardConfig {
            witness: Witness::Address("10.0.0.9".parse().unwrap()),
            method: GuardMethod::Icmp,
            interval,
            timeout: Duration::from_millis(500),
            fall: 1,
            rise: 1,
            quorum: false,
            peers_total: None,
        }
    }

    #[test]
    fn kept_checks_keep_their_state_and_new_ones_start_fresh() {
        let mut cfg = instance();
        cfg.track_scripts = vec![script("pg", Some(-50)), script("gone", None)];
        cfg.guard = Some(guard(Duration::from_secs(1)));
        let mut old = Tracker::new(&cfg);
        old.on_event(CheckEvent::Script {
            index: 0,
            outcome: RunOutcome::Failed("exit status: 1".into()),
        });
        old.on_event(CheckEvent::Guard {
            outcome: RunOutcome::Success,
        });
        assert_eq!(old.health().priority_delta, -50);
        assert_eq!(old.health().fault, None);

        // The guard's interval changes, "gone" goes, "new" comes, "pg" moves.
        let mut cfg = instance();
        cfg.track_scripts = vec![script("new", None), script("pg", Some(-50))];
        cfg.guard = Some(guard(Duration::from_secs(5)));
        let mut fresh = Tracker::new(&cfg);
        assert!(
            fresh.health().fault.is_some(),
            "a fresh guard is not checked yet"
        );
        fresh.carry_over(&old);
        assert_eq!(fresh.health().priority_delta, -50, "pg still failing");
        assert_eq!(fresh.health().fault, None, "the guard's last result stands");
        // pg's rise of 3 counts from here: one success changes nothing.
        fresh.on_event(CheckEvent::Script {
            index: 1,
            outcome: RunOutcome::Success,
        });
        assert_eq!(fresh.health().priority_delta, -50);
    }

    #[test]
    fn a_guard_added_by_a_reload_is_not_checked_yet() {
        let old = Tracker::new(&instance());
        let mut cfg = instance();
        cfg.guard = Some(guard(Duration::from_secs(1)));
        let mut fresh = Tracker::new(&cfg);
        fresh.carry_over(&old);
        assert!(fresh
            .health()
            .fault
            .is_some_and(|f| f.contains("not checked yet")));
    }
}
