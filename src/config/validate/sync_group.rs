//! `[[sync_group]]`: instances that move together.

use std::collections::{HashMap, HashSet};

use toml::Spanned;

use super::Validator;
use crate::config::raw::RawSyncGroup;
use crate::config::{InstanceConfig, SyncGroup};

impl Validator<'_> {
    /// Checks `[[sync_group]]` tables against the instances and fills in each
    /// member's [`InstanceConfig::sync_group`].
    pub(super) fn sync_groups(
        &mut self,
        raw: Vec<Spanned<RawSyncGroup>>,
        instances: &mut [InstanceConfig],
        instance_names: &HashSet<String>,
    ) -> Option<Vec<SyncGroup>> {
        let mut ok = true;
        let mut groups = Vec::new();
        let mut member_of: HashMap<String, String> = HashMap::new();
        for (n, table) in raw.into_iter().enumerate() {
            let span = table.span();
            let t = table.into_inner();
            let mut label = format!("sync_group #{}", n + 1);
            let name = self
                .name(&label, &span, t.name)
                .and_then(|(name, name_span)| {
                    if groups.iter().any(|g: &SyncGroup| g.name == name) {
                        self.problem(
                            name_span,
                            format!("{label}: name {name:?} is already used; valid: a unique name"),
                        );
                        None
                    } else {
                        Some(name)
                    }
                });
            if let Some(name) = &name {
                label = format!("sync_group {name:?}");
            }
            let members = self
                .required(
                    &label,
                    &span,
                    "instances",
                    t.instances,
                    "two or more instance names, e.g. [\"outside\", \"inside\"]",
                )
                .and_then(|list| self.members(&label, list, instance_names, &member_of));
            match (name, members) {
                (Some(name), Some(members)) => {
                    for m in &members {
                        member_of.insert(m.clone(), name.clone());
                    }
                    groups.push(SyncGroup {
                        name,
                        instances: members,
                    });
                }
                _ => ok = false,
            }
        }
        for instance in instances.iter_mut() {
            instance.sync_group = groups
                .iter()
                .find(|g| g.instances.contains(&instance.name))
                .cloned();
        }
        ok.then_some(groups)
    }

    /// A sync group's `instances`: two or more names of instances written in this
    /// file (`instance_names`), each listed once and not a member of an earlier
    /// group (`member_of`: instance -> group).
    fn members(
        &mut self,
        label: &str,
        raw: Spanned<Vec<Spanned<String>>>,
        instance_names: &HashSet<String>,
        member_of: &HashMap<String, String>,
    ) -> Option<Vec<String>> {
        let list_span = raw.span();
        let list = raw.into_inner();
        if list.len() < 2 {
            self.problem(
                list_span,
                format!(
                    "{label}: instances has {} entries; valid: two or more instance names",
                    list.len()
                ),
            );
            return None;
        }
        let mut good = true;
        let mut names: Vec<String> = Vec::new();
        for entry in list {
            let span = entry.span();
            let member = entry.into_inner();
            if !instance_names.contains(&member) {
                self.problem(span, format!("{label}: there is no instance {member:?}; valid: the name of an [[instance]] of this file"));
                good = false;
            } else if names.contains(&member) {
                self.problem(
                    span,
                    format!(
                        "{label}: instance {member:?} is listed twice; valid: each instance once"
                    ),
                );
                good = false;
            } else if let Some(other) = member_of.get(&member) {
                self.problem(span, format!("{label}: instance {member:?} is already in sync_group {other:?}; valid: one sync group per instance"));
                good = false;
            } else {
                names.push(member);
            }
        }
        good.then_some(names)
    }
}
