//! What people read: the `vipd status` table, command outcomes, the progress of a
//! `--wait`, and the exit code `vipd status` gives monitoring. Pure functions of
//! the protocol's status types, unit-tested here.
//!
//! What it may not touch: sockets and the daemon; it only formats answers.

use super::protocol::{InstanceStatus, Outcome, StoreStatus};
use crate::election::State;

/// `vipd status` exits with this when an instance is in fault.
pub const EXIT_FAULT: u8 = 2;
/// `vipd status` exits with this when an instance knows no master.
pub const EXIT_NO_MASTER: u8 = 3;
/// `vipd status` exits with this when another node uses this node's name (the
/// node that keeps running; the one standing aside is in fault).
pub const EXIT_NAME_CONFLICT: u8 = 4;
/// `vipd status` exits with this when a live peer advertises another VIP set
/// (config drift).
pub const EXIT_VIP_SET_DIFFERS: u8 = 5;
/// `vipd status` exits with this when another host claims a VIP this node
/// holds (a foreign MAC answering for it).
pub const EXIT_FOREIGN_CLAIM: u8 = 6;
/// `vipd reload` exits with this when the reload was applied but an instance
/// failed to start (a refused reload, which changes nothing, exits 1).
pub const EXIT_RELOAD_INCOMPLETE: u8 = 2;

pub fn render_outcomes(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    if outcomes.is_empty() {
        out.push_str("no instances\n");
    }
    for o in outcomes {
        out.push_str(&format!("{}: {}\n", o.instance, o.message));
    }
    out
}

/// What `--wait` waits for on each instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// After drain: some other node is master and this one no longer is.
    OtherNodeMaster,
    /// After promote: this node is master.
    ThisNodeMaster,
}

impl Goal {
    /// The new master's name, for the message, once the goal is reached.
    pub fn reached(self, instance: &InstanceStatus, node: &str) -> Option<String> {
        let master = instance.master.as_ref().filter(|m| !m.claim_pending)?;
        match self {
            Self::OtherNodeMaster => {
                (!master.is_self && !master.name.is_empty() && instance.state != State::Master)
                    .then(|| master.name.clone())
            }
            Self::ThisNodeMaster => (master.is_self && instance.state == State::Master)
                .then(|| format!("{node} (this node)")),
        }
    }

    /// Why the goal can no longer be reached, if it cannot: the drain was
    /// rolled back, or this node is in fault (its promotion ended).
    pub fn failed(self, instance: &InstanceStatus) -> Option<String> {
        match self {
            Self::OtherNodeMaster => instance
                .drain_rolled_back
                .as_ref()
                .map(|why| format!("drain rolled back: {why}; this node is undrained")),
            Self::ThisNodeMaster => (instance.state == State::Fault).then(|| {
                let why = instance.fault.as_deref().unwrap_or("unknown");
                format!("in fault ({why}): not becoming master")
            }),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::OtherNodeMaster => "another node to become master and serve",
            Self::ThisNodeMaster => "this node to become master and serve",
        }
    }
}
/// One line on where an instance stands, for a `--wait` that timed out.
pub fn describe_progress(instance: &InstanceStatus, node: &str) -> String {
    let alive = instance.peers.iter().filter(|p| p.alive).count();
    let mut out = format!(
        "state {}, master {}, {alive} of {} peers alive",
        instance.state,
        master_text(instance, node),
        instance.peers.len()
    );
    if instance.drained {
        out.push_str(", drained");
    }
    if instance.promoted {
        out.push_str(", promoted");
    }
    if let Some(fault) = &instance.fault {
        out.push_str(&format!(", fault: {fault}"));
    }
    out
}

/// `vipd status`'s exit code: the most serious condition of any instance, in
/// this order: 2 in fault, 3 no master known, 4 another node uses this node's
/// name, 6 another host claims a VIP this node holds, 5 a live peer advertises
/// another VIP set; else 0.
pub fn health_code(instances: &[InstanceStatus]) -> u8 {
    let any = |condition: fn(&InstanceStatus) -> bool| instances.iter().any(condition);
    if any(|i| i.state == State::Fault || i.fault.is_some()) {
        EXIT_FAULT
    } else if any(|i| i.master.is_none()) {
        EXIT_NO_MASTER
    } else if any(|i| i.name_conflict.is_some()) {
        EXIT_NAME_CONFLICT
    } else if any(|i| !i.foreign_claims.is_empty()) {
        EXIT_FOREIGN_CLAIM
    } else if any(|i| !drifted_peers(i).is_empty()) {
        EXIT_VIP_SET_DIFFERS
    } else {
        0
    }
}

/// The live peers advertising another VIP set than this instance's.
fn drifted_peers(instance: &InstanceStatus) -> Vec<&str> {
    instance
        .peers
        .iter()
        .filter(|p| p.alive && p.vip_set_differs)
        .map(|p| p.name.as_str())
        .collect()
}

pub fn master_text(instance: &InstanceStatus, node: &str) -> String {
    let mut text = match &instance.master {
        None => return "none known".to_owned(),
        Some(m) if m.is_self => format!("{node} (this node)"),
        Some(m) => match &m.address {
            Some(address) => format!("{} at {address}", m.name),
            None => m.name.clone(),
        },
    };
    if instance.master.as_ref().is_some_and(|m| m.claim_pending) {
        text.push_str(", claim pending (before_claim gate or probe running; not serving yet)");
    }
    text
}

/// The human form of `vipd status`.
pub fn render_status(node: &str, instances: &[InstanceStatus]) -> String {
    let mut out = format!("node {node}\n");
    if instances.is_empty() {
        out.push_str("no instances\n");
    }
    for i in instances {
        out.push('\n');
        out.push_str(&render_instance(i, node));
    }
    out
}

/// The lines of an instance etcd decides for: the key and its holder, the
/// lease and whether etcd vouches for this node, the fencing token.
fn store_facts(store: &StoreStatus) -> Vec<(&'static str, String)> {
    let holder = match (&store.holder, store.holder_revision) {
        (Some(h), Some(rev)) => format!("{h} (revision {rev})"),
        (Some(h), None) => h.clone(),
        (None, _) => "nobody".to_owned(),
    };
    let vouch = match (store.vouched, store.lease_remaining_ms) {
        (true, Some(ms)) => format!("vouched for {} more", interval(ms)),
        _ if store.holding_unvouched => {
            "NOT VOUCHED, holding the VIPs anyway (fail-open): another node may hold them too"
                .to_owned()
        }
        _ => "not vouched".to_owned(),
    };
    let lease = match store.lease_id {
        Some(id) => format!("{id:#x}"),
        None => "none".to_owned(),
    };
    let mut facts = vec![
        (
            "decided by",
            format!("{} key {} via {}", store.kind, store.key, store.endpoint),
        ),
        ("holder", holder),
        (
            "lease",
            format!(
                "{lease}, ttl {}, {vouch}; {}",
                interval(store.lease_ttl_ms),
                store.on_unreachable
            ),
        ),
    ];
    if let Some(token) = store.fencing_token {
        facts.push(("fencing token", token.to_string()));
    }
    if let Some(error) = store.last_error.as_ref().filter(|_| !store.reachable) {
        facts.push(("etcd", format!("UNREACHABLE: {error}")));
    }
    facts
}

pub fn render_instance(i: &InstanceStatus, node: &str) -> String {
    let mut out = String::new();

    // Header: name, interface, group, STATE, priority, conditions.
    let mut header = format!(
        "{}  {}  group {}  {}  priority {}",
        i.name,
        i.interface,
        i.group,
        i.state.to_string().to_uppercase(),
        i.configured_priority
    );
    // The daemon may list the configured priority as a reason; it is shown already.
    let configured = format!("configured {}", i.configured_priority);
    let reasons: Vec<&str> = i
        .priority_reasons
        .iter()
        .map(String::as_str)
        .filter(|r| *r != configured)
        .collect();
    if i.effective_priority != i.configured_priority || !reasons.is_empty() {
        header.push_str(&format!(" -> {}", i.effective_priority));
        if !reasons.is_empty() {
            header.push_str(&format!(" ({})", reasons.join(", ")));
        }
    }
    if i.drained {
        header.push_str("  drained");
    }
    if i.promoted {
        header.push_str("  promoted");
    }
    if let Some(fault) = &i.fault {
        header.push_str(&format!("  FAULT: {fault}"));
    }
    out.push_str(&header);
    out.push('\n');
    if let Some(conflict) = &i.name_conflict {
        out.push_str(&format!("  NAME CONFLICT: {conflict}\n"));
    }
    for claim in &i.foreign_claims {
        out.push_str(&format!(
            "  FOREIGN CLAIM: {} is claimed by {}, not a peer ({} claims, first {} ago, last {} ago; re-announcing, keeping the VIP)\n",
            claim.vip,
            claim.mac,
            claim.sightings,
            ago(claim.since_ms_ago),
            ago(claim.last_ms_ago)
        ));
    }
    let drifted = drifted_peers(i);
    if !drifted.is_empty() {
        out.push_str(&format!(
            "  CONFIG DRIFT: another VIP set than ours advertised by {}\n",
            drifted.join(", ")
        ));
    }

    let mut facts = vec![("master", master_text(i, node))];
    if let Some(route) = &i.announce_route {
        facts.push(("announce", route.clone()));
    }
    facts.push((
        "last change",
        match &i.last_transition {
            Some(t) => format!("{} -> {} {} ago: {}", t.from, t.to, ago(t.ms_ago), t.reason),
            None => "none since start".to_owned(),
        },
    ));
    let warn = |n: u64| if n > 0 { " (!)" } else { "" };
    facts.push((
        "counters",
        format!(
            "auth failures {}{}, other master heard {}{}, planned overlaps {}, foreign claims {}{}, adverts sent {}, received {}",
            i.auth_failures,
            warn(i.auth_failures),
            i.other_master_heard,
            warn(i.other_master_heard),
            i.planned_overlaps,
            i.foreign_claims_seen,
            warn(i.foreign_claims_seen),
            i.adverts_sent,
            i.adverts_received
        ),
    ));
    match &i.store {
        Some(store) => facts.extend(store_facts(store)),
        None => facts.push(("master down", interval(i.master_down_interval_ms))),
    }
    if i.protocol != "vipd" && i.store.is_none() {
        facts.push((
            "protocol",
            format!(
                "{} (VRRP: unauthenticated, backups are silent so only the master is listed)",
                i.protocol
            ),
        ));
    }
    let width = facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (key, value) in facts {
        out.push_str(&format!("  {:<width$} {value}\n", format!("{key}:")));
    }

    out.push('\n');
    let mut vips = vec![vec!["VIP".to_owned(), "HELD".to_owned()]];
    vips.extend(
        i.vips
            .iter()
            .map(|v| vec![v.address.clone(), yes_no(v.held).to_owned()]),
    );
    out.push_str(&table(&vips, "  "));

    out.push('\n');
    if i.store.is_some() {
        // etcd decides: no adverts, so no peers to list.
    } else if i.peers.is_empty() {
        out.push_str("  no peers heard\n");
    } else {
        let mut peers = vec![[
            "PEER",
            "ADDRESS",
            "PRIORITY",
            "FLAGS",
            "STATE",
            "ALIVE",
            "LAST HEARD",
            "INTERVAL",
        ]
        .map(str::to_owned)
        .to_vec()];
        peers.extend(i.peers.iter().map(|p| {
            vec![
                p.name.clone(),
                p.address.clone().unwrap_or_else(|| "-".to_owned()),
                p.priority.to_string(),
                if p.flags.is_empty() {
                    "-".to_owned()
                } else {
                    p.flags.join(",")
                },
                p.state.clone(),
                yes_no(p.alive).to_owned(),
                format!("{} ago", ago(p.last_heard_ms_ago)),
                interval(p.advert_interval_ms),
            ]
        }));
        // The version column only once some peer sends its version, so a pair
        // of older releases reads as before.
        if i.peers.iter().any(|p| p.version.is_some()) {
            peers[0].push("VERSION".to_owned());
            for (row, p) in peers.iter_mut().skip(1).zip(&i.peers) {
                row.push(p.version.clone().unwrap_or_else(|| "-".to_owned()));
            }
        }
        out.push_str(&table(&peers, "  "));
    }
    out.push_str(&render_history(i));
    out
}

/// How many of the remembered state changes `vipd status` shows (`--json` has all).
pub const HISTORY_SHOWN: usize = 5;

/// The last few state changes, newest last; nothing when there are none.
fn render_history(i: &InstanceStatus) -> String {
    if i.history.is_empty() {
        return String::new();
    }
    let shown = &i.history[i.history.len().saturating_sub(HISTORY_SHOWN)..];
    let mut rows = vec![["CHANGED (UTC)", "FROM", "TO", "PEER", "REASON"]
        .map(str::to_owned)
        .to_vec()];
    rows.extend(shown.iter().map(|h| {
        vec![
            utc_timestamp(h.at_unix),
            h.from.to_string(),
            h.to.to_string(),
            h.peer.clone().unwrap_or_else(|| "-".to_owned()),
            h.reason.clone(),
        ]
    }));
    let mut out = format!(
        "\n  last {} of {} state changes (all in --json):\n",
        shown.len(),
        i.history.len()
    );
    out.push_str(&table(&rows, "  "));
    out
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` in UTC (proleptic Gregorian).
pub fn utc_timestamp(unix: f64) -> String {
    // Whole seconds; times before 1970 do not occur here and show as 1970.
    let secs = if unix.is_finite() && unix > 0.0 {
        unix as u64
    } else {
        0
    };
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

pub fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Left-aligned columns two spaces apart, no trailing blanks.
pub fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A time since, for people: "0.4s", "12.3s", "5m07s", "3h02m", "2d04h".
pub fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..60_000 => format!("{}.{}s", s, ms % 1000 / 100),
        60_000..3_600_000 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// An interval, exactly: "10ms", "1s", "1.5s", "3.002s".
pub fn interval(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        let s = format!("{}.{:03}", ms / 1000, ms % 1000);
        format!("{}s", s.trim_end_matches('0'))
    }
}

/// A status with two VIPs and two peers, for the control module's tests.
#[cfg(test)]
pub(super) fn sample_status() -> InstanceStatus {
    tests::sample()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{
        ForeignClaimStatus, HistoryEntry, MasterStatus, PeerStatus, TransitionStatus, VipStatus,
    };

    pub(super) fn sample() -> InstanceStatus {
        InstanceStatus {
            name: "db".into(),
            interface: "eth0".into(),
            group: 51,
            state: State::Master,
            configured_priority: 100,
            effective_priority: 110,
            priority_reasons: vec!["configured 100".into(), "health weights +10".into()],
            drained: false,
            promoted: false,
            fault: None,
            vips: vec![
                VipStatus {
                    address: "10.0.0.10/24".into(),
                    held: true,
                },
                VipStatus {
                    address: "2001:db8::10/64".into(),
                    held: false,
                },
            ],
            master: Some(MasterStatus {
                name: "db1".into(),
                address: None,
                is_self: true,
                claim_pending: false,
            }),
            peers: vec![
                PeerStatus {
                    name: "db2".into(),
                    node_id: 2,
                    address: Some("10.0.0.2".into()),
                    priority: 100,
                    flags: vec![],
                    state: "backup".into(),
                    alive: true,
                    last_heard_ms_ago: 400,
                    advert_interval_ms: 1000,
                    vip_set_differs: false,
                    version: None,
                },
                PeerStatus {
                    name: "db3-long-name".into(),
                    node_id: 3,
                    address: None,
                    priority: 0,
                    flags: vec!["drained".into(), "shutting-down".into()],
                    state: "shutting-down".into(),
                    alive: false,
                    last_heard_ms_ago: 125_000,
                    advert_interval_ms: 1500,
                    vip_set_differs: false,
                    version: None,
                },
            ],
            auth_failures: 0,
            other_master_heard: 2,
            planned_overlaps: 3,
            adverts_sent: 1234,
            adverts_received: 5678,
            last_transition: Some(TransitionStatus {
                from: State::Backup,
                to: State::Master,
                reason: "master down: no advert within the master-down interval".into(),
                at_unix: 1_700_000_000.0,
                ms_ago: 12_345,
            }),
            master_down_interval_ms: 3002,
            protocol: "vipd".into(),
            name_conflict: None,
            history: Vec::new(),
            announce_route: None,
            foreign_claims: Vec::new(),
            foreign_claims_seen: 0,
            foreign_claim_episodes: 0,
            drain_rolled_back: None,
            store: None,
        }
    }

    #[test]
    fn status_shows_the_last_few_state_changes() {
        let mut i = sample();
        i.history = (0..7u32)
            .map(|k| HistoryEntry {
                at_unix: 1_700_000_000.0 + f64::from(k),
                from: State::Backup,
                to: State::Master,
                reason: format!("change {k}"),
                peer: (k == 6).then(|| "db2".to_owned()),
            })
            .collect();
        let text = render_instance(&i, "db1");
        assert!(text.contains("last 5 of 7 state changes"), "{text}");
        assert!(!text.contains("change 1\n"), "{text}");
        assert!(
            text.contains("  2023-11-14 22:13:26  backup  master  db2   change 6\n"),
            "{text}"
        );
    }

    #[test]
    fn an_instance_etcd_decides_shows_its_key_lease_and_token() {
        let mut i = sample();
        i.peers.clear();
        i.store = Some(StoreStatus {
            kind: "etcd".into(),
            key: "/vipd/db/holder".into(),
            endpoint: "https://10.0.0.21:2379".into(),
            reachable: true,
            last_error: None,
            vouched: true,
            holding_unvouched: false,
            on_unreachable: "fail-closed".into(),
            lease_id: Some(0x694d_9a1c_3e2f_8a12),
            lease_ttl_ms: 5000,
            lease_remaining_ms: Some(4300),
            holder: Some("db1".into()),
            holder_revision: Some(4711),
            fencing_token: Some(4711),
        });
        let text = render_instance(&i, "db1");
        for line in [
            "  decided by:    etcd key /vipd/db/holder via https://10.0.0.21:2379\n",
            "  holder:        db1 (revision 4711)\n",
            "  lease:         0x694d9a1c3e2f8a12, ttl 5s, vouched for 4.3s more; fail-closed\n",
            "  fencing token: 4711\n",
        ] {
            assert!(text.contains(line), "no {line:?} in:\n{text}");
        }
        assert!(!text.contains("  master down:"), "{text}");
        assert!(!text.contains("no peers heard"), "{text}");
        let store = i.store.as_mut().expect("set above");
        store.vouched = false;
        store.holding_unvouched = true;
        store.reachable = false;
        store.last_error = Some("etcd at https://10.0.0.21:2379 did not answer within 1s".into());
        let text = render_instance(&i, "db1");
        assert!(
            text.contains("NOT VOUCHED, holding the VIPs anyway (fail-open)"),
            "{text}"
        );
        assert!(text.contains("  etcd:          UNREACHABLE: etcd at https://10.0.0.21:2379 did not answer within 1s\n"), "{text}");
    }

    #[test]
    fn utc_timestamps_are_civil_dates() {
        assert_eq!(utc_timestamp(0.0), "1970-01-01 00:00:00");
        assert_eq!(utc_timestamp(951_782_400.0), "2000-02-29 00:00:00");
        assert_eq!(utc_timestamp(1_700_000_000.5), "2023-11-14 22:13:20");
    }

    #[test]
    fn status_renders_for_people() {
        let expected = "\
node db1

db  eth0  group 51  MASTER  priority 100 -> 110 (health weights +10)
  master:      db1 (this node)
  last change: backup -> master 12.3s ago: master down: no advert within the master-down interval
  counters:    auth failures 0, other master heard 2 (!), planned overlaps 3, foreign claims 0, adverts sent 1234, received 5678
  master down: 3.002s

  VIP              HELD
  10.0.0.10/24     yes
  2001:db8::10/64  no

  PEER           ADDRESS   PRIORITY  FLAGS                  STATE          ALIVE  LAST HEARD  INTERVAL
  db2            10.0.0.2  100       -                      backup         yes    0.4s ago    1s
  db3-long-name  -         0         drained,shutting-down  shutting-down  no     2m05s ago   1.5s
";
        assert_eq!(render_status("db1", &[sample()]), expected);
    }

    #[test]
    fn a_version_column_appears_once_a_peer_sends_its_version() {
        let mut i = sample();
        i.peers[0].version = Some("0.2.0".into());
        let text = render_instance(&i, "db1");
        let header = text
            .lines()
            .find(|l| l.trim_start().starts_with("PEER"))
            .expect("peer table");
        assert!(header.ends_with("VERSION"), "{header}");
        let db2 = text.lines().find(|l| l.contains("db2 ")).expect("db2 row");
        assert!(db2.ends_with("0.2.0"), "{db2}");
        let db3 = text
            .lines()
            .find(|l| l.contains("db3-long-name"))
            .expect("db3 row");
        assert!(db3.trim_end().ends_with('-'), "{db3}");
    }

    #[test]
    fn header_shows_conditions_and_other_masters() {
        let mut i = sample();
        i.state = State::Backup;
        i.effective_priority = 100;
        i.priority_reasons = vec!["configured 100".into()];
        i.drained = true;
        i.master = Some(MasterStatus {
            name: "db2".into(),
            address: Some("10.0.0.2".into()),
            is_self: false,
            claim_pending: false,
        });
        i.last_transition = None;
        i.peers.clear();
        let text = render_instance(&i, "db1");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "db  eth0  group 51  BACKUP  priority 100  drained"
        );
        assert_eq!(lines[1], "  master:      db2 at 10.0.0.2");
        assert_eq!(lines[2], "  last change: none since start");
        assert_eq!(lines.last(), Some(&"  no peers heard"));

        i.state = State::Fault;
        i.fault = Some("check nginx failed".into());
        i.effective_priority = 0;
        i.master = None;
        let text = render_instance(&i, "db1");
        assert!(text.starts_with(
            "db  eth0  group 51  FAULT  priority 100 -> 0  drained  FAULT: check nginx failed\n  master:      none known\n"
        ), "{text}");
    }

    #[test]
    fn exit_codes_for_monitoring() {
        assert_eq!(health_code(&[]), 0);
        let well = sample();
        assert_eq!(health_code(std::slice::from_ref(&well)), 0);
        let mut backup = sample();
        backup.state = State::Backup;
        backup.master = Some(MasterStatus {
            name: "db2".into(),
            address: None,
            is_self: false,
            claim_pending: false,
        });
        assert_eq!(health_code(&[well.clone(), backup.clone()]), 0);
        let mut masterless = sample();
        masterless.state = State::Backup;
        masterless.master = None;
        assert_eq!(health_code(&[well.clone(), masterless.clone()]), 3);
        let mut faulty = backup.clone();
        faulty.state = State::Fault;
        assert_eq!(health_code(&[well.clone(), faulty.clone()]), 2);
        // A fault reported with another state still counts; fault wins over no master.
        let mut fault_reason = backup;
        fault_reason.fault = Some("link down".into());
        assert_eq!(health_code(&[fault_reason]), 2);
        assert_eq!(health_code(&[masterless.clone(), faulty]), 2);

        // Name conflict and VIP set drift come after fault and no master.
        let mut twin = sample();
        twin.name_conflict =
            Some("node name db1 is also used by 10.0.0.9 (started later; it stands aside)".into());
        assert_eq!(health_code(std::slice::from_ref(&twin)), EXIT_NAME_CONFLICT);
        assert_eq!(health_code(&[twin.clone(), masterless]), EXIT_NO_MASTER);
        let mut drift = sample();
        drift.peers[0].vip_set_differs = true;
        assert_eq!(
            health_code(std::slice::from_ref(&drift)),
            EXIT_VIP_SET_DIFFERS
        );
        assert_eq!(
            health_code(&[drift.clone(), twin.clone()]),
            EXIT_NAME_CONFLICT
        );
        // A foreign claim comes after a name conflict, before drift.
        let mut claimed = sample();
        claimed.foreign_claims.push(foreign_claim());
        assert_eq!(
            health_code(std::slice::from_ref(&claimed)),
            EXIT_FOREIGN_CLAIM
        );
        assert_eq!(
            health_code(&[claimed.clone(), drift.clone()]),
            EXIT_FOREIGN_CLAIM
        );
        assert_eq!(health_code(&[claimed, twin]), EXIT_NAME_CONFLICT);
        // A lost peer's old VIP set is no drift.
        drift.peers[0].alive = false;
        assert_eq!(health_code(&[drift]), 0);
    }

    fn foreign_claim() -> ForeignClaimStatus {
        ForeignClaimStatus {
            vip: "10.0.0.200".into(),
            mac: "02:00:00:00:00:66".into(),
            sightings: 30,
            since_ms_ago: 3_000,
            last_ms_ago: 100,
        }
    }

    #[test]
    fn a_foreign_claim_is_a_line_under_the_header_and_counted() {
        let mut i = sample();
        i.foreign_claims.push(foreign_claim());
        i.foreign_claims_seen = 30;
        let text = render_instance(&i, "db1");
        assert!(
            text.lines().nth(1).is_some_and(|l| {
                l.starts_with(
            "  FOREIGN CLAIM: 10.0.0.200 is claimed by 02:00:00:00:00:66, not a peer (30 claims"
        )
            }),
            "{text}"
        );
        assert!(text.contains("foreign claims 30 (!)"), "{text}");
        assert!(!render_instance(&sample(), "db1").contains("FOREIGN"));
    }

    #[test]
    fn header_shows_name_conflict_and_config_drift() {
        let mut i = sample();
        i.name_conflict =
            Some("node name db1 is also used by 10.0.0.9 (started later; it stands aside)".into());
        i.peers[0].vip_set_differs = true;
        i.peers[1].vip_set_differs = true; // not alive: not drift
        let text = render_instance(&i, "db1");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "  NAME CONFLICT: node name db1 is also used by 10.0.0.9 (started later; it stands aside)");
        assert_eq!(
            lines[2],
            "  CONFIG DRIFT: another VIP set than ours advertised by db2"
        );
        assert!(!render_instance(&sample(), "db1").contains("CONFLICT"));
    }

    #[test]
    fn wait_conditions() {
        let mut i = sample();
        // We are master: neither "another node" nor done with drain.
        assert_eq!(
            Goal::ThisNodeMaster.reached(&i, "db1"),
            Some("db1 (this node)".into())
        );
        assert_eq!(Goal::OtherNodeMaster.reached(&i, "db1"), None);
        // Still handing over: we think the other is master but still hold the role.
        i.master = Some(MasterStatus {
            name: "db2".into(),
            address: Some("10.0.0.2".into()),
            is_self: false,
            claim_pending: false,
        });
        assert_eq!(Goal::OtherNodeMaster.reached(&i, "db1"), None);
        i.state = State::Backup;
        assert_eq!(Goal::OtherNodeMaster.reached(&i, "db1"), Some("db2".into()));
        assert_eq!(Goal::ThisNodeMaster.reached(&i, "db1"), None);
        // A master whose gate still runs does not serve yet.
        if let Some(m) = &mut i.master {
            m.claim_pending = true;
        }
        assert_eq!(Goal::OtherNodeMaster.reached(&i, "db1"), None);
        assert!(master_text(&i, "db1").contains("claim pending"));
        assert_eq!(Goal::OtherNodeMaster.failed(&i), None);
        i.drain_rolled_back = Some("successor db2 is in fault before it claimed them".into());
        assert!(Goal::OtherNodeMaster
            .failed(&i)
            .is_some_and(|why| why.starts_with("drain rolled back: successor db2")));
        i.drain_rolled_back = None;
        if let Some(m) = &mut i.master {
            m.claim_pending = false;
        }
        // No master known, or a nameless one: not yet.
        i.master = None;
        assert_eq!(Goal::OtherNodeMaster.reached(&i, "db1"), None);
        i.master = Some(MasterStatus {
            name: String::new(),
            address: None,
            is_self: false,
            claim_pending: false,
        });
        assert_eq!(Goal::OtherNodeMaster.reached(&i, "db1"), None);
        // Master state but the status does not (yet) name us: not yet.
        i.state = State::Master;
        assert_eq!(Goal::ThisNodeMaster.reached(&i, "db1"), None);
    }

    #[test]
    fn progress_says_what_was_seen() {
        let mut i = sample();
        i.drained = true;
        assert_eq!(
            describe_progress(&i, "db1"),
            "state master, master db1 (this node), 1 of 2 peers alive, drained"
        );
    }

    #[test]
    fn outcomes_render_one_per_line() {
        let outcomes = vec![
            Outcome {
                instance: "db".into(),
                ok: true,
                message: "drained: ineligible; a master hands its VIPs over".into(),
            },
            Outcome {
                instance: "web".into(),
                ok: false,
                message: "refused: this node is in fault (x)".into(),
            },
        ];
        assert_eq!(
            render_outcomes(&outcomes),
            "db: drained: ineligible; a master hands its VIPs over\nweb: refused: this node is in fault (x)\n"
        );
        assert_eq!(render_outcomes(&[]), "no instances\n");
    }

    #[test]
    fn times_for_people() {
        assert_eq!(ago(0), "0.0s");
        assert_eq!(ago(400), "0.4s");
        assert_eq!(ago(12_345), "12.3s");
        assert_eq!(ago(59_999), "59.9s");
        assert_eq!(ago(60_000), "1m00s");
        assert_eq!(ago(3_599_999), "59m59s");
        assert_eq!(ago(3_600_000), "1h00m");
        assert_eq!(ago(90_000_000), "1d01h");
        assert_eq!(interval(10), "10ms");
        assert_eq!(interval(1000), "1s");
        assert_eq!(interval(1500), "1.5s");
        assert_eq!(interval(3002), "3.002s");
        assert_eq!(interval(40_950), "40.95s");
    }
}
