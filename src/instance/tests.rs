//! The core's rules on a virtual clock: bytes in, outputs out, no root.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::config;
use crate::health::RunOutcome;
use crate::wire::Advert;

const MS: Duration = Duration::from_millis(1);

fn config_text(node: &str, priority: u8, extra: &str) -> String {
    format!(
        "[node]\nname = \"{node}\"\n[[instance]]\nname = \"db\"\ninterface = \"eth0\"\ngroup = 1\n\
         priority = {priority}\nvips = [\"10.0.0.100/24\"]\nauth = \"none\"\n\
         advert_interval = \"100ms\"\nannounce_probe = false\n{extra}"
    )
}

fn instance_config(node: &str, priority: u8, extra: &str) -> InstanceConfig {
    config::from_toml(&config_text(node, priority, extra), Path::new("/t.toml"))
        .expect("test config")
        .instances
        .remove(0)
}

/// One node's core with what it sent, numbered as the driver numbers it.
struct Node {
    core: InstanceCore,
    addr: IpAddr,
    sequence: u64,
    sent: Vec<Vec<u8>>,
    events: Vec<Event>,
    orders: Vec<VipOrder>,
}

impl Node {
    fn new(name: &str, boot_id: u64, priority: u8, extra: &str, addr: u8, now: Instant) -> Self {
        let cfg = instance_config(name, priority, extra);
        let node = NodeFacts {
            node_id: config::node_id(name),
            node_name: name.to_owned(),
            boot_id,
            startup_delay: Duration::ZERO,
        };
        let mut core = InstanceCore::new(cfg, &node, false, ReplayGuard::new(), now);
        core.handle_link(now, true);
        let mut n = Self {
            core,
            addr: IpAddr::from([10, 0, 0, addr]),
            sequence: 0,
            sent: Vec::new(),
            events: Vec::new(),
            orders: Vec::new(),
        };
        n.collect();
        n
    }

    fn collect(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Advert { body, boot_id } => {
                    self.sequence += 1;
                    let advert = Advert {
                        body,
                        boot_id,
                        sequence: self.sequence,
                    };
                    let bytes =
                        wire::encode_with_extensions(&advert, &[], &self.core.config().auth)
                            .expect("encodes");
                    self.sent.push(bytes);
                }
                Output::Vips(order) => self.orders.push(order),
                Output::Event(event) => self.events.push(event),
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        if self.core.poll_timeout().is_some_and(|at| at <= now) {
            self.core.handle_timeout(now);
        }
        self.collect();
    }

    fn hear(&mut self, now: Instant, from: IpAddr, bytes: &[u8]) {
        self.core.handle_datagram(now, from, bytes);
        self.collect();
    }

    fn state(&self) -> State {
        self.core.election().state()
    }

    fn fault(&self) -> Option<String> {
        self.core.election().health().fault.clone()
    }
}

/// Runs `nodes` for `span` in 1 ms steps; every advert reaches every other
/// node 1 ms later (unless `deliver` says no).
fn run(
    nodes: &mut [Node],
    start: Instant,
    span: Duration,
    deliver: &dyn Fn(usize, usize) -> bool,
) -> Instant {
    let mut now = start;
    let end = start + span;
    let mut in_flight: Vec<(Instant, usize, Vec<u8>)> = Vec::new();
    while now < end {
        now += MS;
        let due: Vec<_> = in_flight
            .iter()
            .filter(|(at, _, _)| *at <= now)
            .cloned()
            .collect();
        in_flight.retain(|(at, _, _)| *at > now);
        for (_, from, bytes) in due {
            for to in 0..nodes.len() {
                if to != from && deliver(from, to) {
                    let addr = nodes[from].addr;
                    nodes[to].hear(now, addr, &bytes);
                }
            }
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            node.tick(now);
            for bytes in node.sent.drain(..) {
                in_flight.push((now + MS, i, bytes));
            }
        }
    }
    now
}

fn everyone(_: usize, _: usize) -> bool {
    true
}

#[test]
fn junk_is_rejected_and_counted_and_changes_nothing() {
    let t0 = Instant::now();
    let mut n = Node::new("n1", 1, 100, "", 1, t0);
    let before = n.state();
    n.hear(t0, IpAddr::from([10, 0, 0, 9]), b"not an advert at all");
    assert_eq!(n.core.auth_failures(), 1);
    assert!(matches!(n.events.last(), Some(Event::Rejected { .. })));
    assert_eq!(n.state(), before);
}

#[test]
fn the_best_node_becomes_master_and_the_other_backs_up() {
    let t0 = Instant::now();
    let mut nodes = vec![
        Node::new("n1", 1, 150, "", 1, t0),
        Node::new("n2", 1, 100, "", 2, t0),
    ];
    run(&mut nodes, t0, Duration::from_secs(2), &everyone);
    assert_eq!(nodes[0].state(), State::Master);
    assert_eq!(nodes[1].state(), State::Backup);
    assert!(nodes[0].core.is_claimed());
    assert!(!nodes[1].core.is_claimed());
    assert!(nodes[0].orders.contains(&VipOrder::Claim));
    // Each knows the other's address: the known sources for the driver.
    let known: Vec<IpAddr> = nodes[1].core.known_sources().collect();
    assert_eq!(known, vec![nodes[0].addr]);
}

#[test]
fn a_replayed_advert_is_rejected() {
    let t0 = Instant::now();
    let mut n1 = Node::new("n1", 1, 150, "", 1, t0);
    let mut n2 = Node::new("n2", 1, 100, "", 2, t0);
    let t = run(
        std::slice::from_mut(&mut n1),
        t0,
        Duration::from_millis(500),
        &everyone,
    );
    n1.core.handle_timeout(t + Duration::from_millis(200));
    n1.collect();
    let advert = n1.sent.pop().expect("n1 advertised");
    n2.hear(t, n1.addr, &advert);
    assert_eq!(n2.core.auth_failures(), 0);
    n2.hear(t + MS, n1.addr, &advert);
    assert_eq!(
        n2.core.auth_failures(),
        1,
        "the same advert again is a replay"
    );
}

#[test]
fn a_twin_with_our_name_that_started_later_stands_aside() {
    let t0 = Instant::now();
    // Same node name, different boot ids: the one with the higher boot id
    // started later.
    let mut nodes = vec![
        Node::new("twin", 100, 150, "", 1, t0),
        Node::new("twin", 200, 150, "", 2, t0),
    ];
    run(&mut nodes, t0, Duration::from_secs(2), &everyone);
    let masters = nodes.iter().filter(|n| n.state() == State::Master).count();
    assert_eq!(masters, 1, "never two masters");
    assert_eq!(nodes[0].state(), State::Master, "the earlier one holds");
    assert!(nodes[1]
        .fault()
        .is_some_and(|f| f.contains("node name twin is also used by 10.0.0.1")));
    assert!(nodes[1].events.iter().any(|e| matches!(
        e,
        Event::NameClash(IdentityEvent::Started {
            stands_aside: true,
            ..
        })
    )));
    // The holder goes away: the twin's episode ends and it takes over.
    let t1 = t0 + Duration::from_secs(2);
    let mut survivor = nodes.pop().expect("two nodes");
    run(
        std::slice::from_mut(&mut survivor),
        t1,
        Duration::from_secs(2),
        &everyone,
    );
    assert_eq!(survivor.fault(), None);
    assert_eq!(survivor.state(), State::Master);
    assert!(survivor
        .events
        .iter()
        .any(|e| matches!(e, Event::NameClash(IdentityEvent::Ended { .. }))));
}

#[test]
fn quorum_lost_is_a_fault_and_is_noticed_without_any_input() {
    let t0 = Instant::now();
    let guard = "[instance.guard]\nwitness = \"10.0.0.254\"\nquorum = true\npeers_total = 3\n";
    let mut nodes = vec![
        Node::new("n1", 1, 150, guard, 1, t0),
        Node::new("n2", 1, 100, guard, 2, t0),
    ];
    for n in &mut nodes {
        n.core.handle_check(
            t0,
            CheckEvent::Guard {
                outcome: RunOutcome::Success,
            },
        );
        n.collect();
    }
    let t = run(&mut nodes, t0, Duration::from_secs(2), &everyone);
    assert_eq!(nodes[0].fault(), None, "2 of 3 heard: a majority");
    assert_eq!(nodes[0].state(), State::Master);
    // n2 falls silent: n1 must notice on its own timer.
    let mut n1 = nodes.remove(0);
    let deadline = n1.core.poll_timeout().expect("a deadline");
    assert!(deadline <= t + Duration::from_millis(200) + 2 * MS);
    run(
        std::slice::from_mut(&mut n1),
        t,
        Duration::from_millis(500),
        &everyone,
    );
    assert!(n1
        .fault()
        .is_some_and(|f| f.contains("quorum lost: hears 1 of 3")));
    assert_ne!(n1.state(), State::Master);
    assert!(n1.orders.contains(&VipOrder::Release));
    assert!(n1
        .events
        .iter()
        .any(|e| matches!(e, Event::QuorumLost { heard: 1, .. })));
}

#[test]
fn a_sync_group_member_in_fault_faults_the_others() {
    let t0 = Instant::now();
    let group = "[[sync_group]]\nname = \"pair\"\ninstances = [\"db\", \"web\"]\n\
                 [[instance]]\nname = \"web\"\ninterface = \"eth0\"\ngroup = 2\npriority = 100\n\
                 vips = [\"10.0.0.101/24\"]\nauth = \"none\"\n";
    let mut n = Node::new("n1", 1, 100, group, 1, t0);
    // The first health applied publishes the own (healthy) entry.
    assert!(n
        .events
        .iter()
        .any(|e| matches!(e, Event::SyncEntry(SyncEntry { fault: None, .. }))));
    let mut board = BTreeMap::new();
    board.insert(
        "web".to_owned(),
        SyncEntry {
            fault: Some("interface eth1 is down".to_owned()),
            weight: 0,
        },
    );
    n.core.handle_sync_board(t0, &board);
    n.collect();
    assert!(n
        .fault()
        .is_some_and(|f| f.contains("sync group pair: member web is in fault")));
    // Its own entry stays healthy: the sync fault is not published back.
    assert!(!n
        .events
        .iter()
        .any(|e| matches!(e, Event::SyncEntry(SyncEntry { fault: Some(_), .. }))));
    board.clear();
    n.core.handle_sync_board(t0 + MS, &board);
    n.collect();
    assert_eq!(n.fault(), None);
}

#[test]
fn a_drained_master_hearing_its_successor_is_a_planned_overlap() {
    let t0 = Instant::now();
    let mut nodes = vec![
        Node::new("n1", 1, 150, "", 1, t0),
        Node::new("n2", 1, 100, "", 2, t0),
    ];
    let t = run(&mut nodes, t0, Duration::from_secs(2), &everyone);
    nodes[0]
        .core
        .handle_command(t, Command::Drain { force: false })
        .expect("n2 can take over");
    nodes[0].collect();
    run(&mut nodes, t, Duration::from_secs(1), &everyone);
    assert_eq!(nodes[1].state(), State::Master);
    assert_eq!(nodes[0].state(), State::Backup);
    let notices: Vec<&Event> = nodes[0]
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Notice {
                    notice: Notice::OtherMasterHeard { .. },
                    ..
                }
            )
        })
        .collect();
    assert!(
        notices
            .iter()
            .all(|e| matches!(e, Event::Notice { planned: true, .. })),
        "{notices:?}"
    );
}

#[test]
fn a_removed_vip_is_reclaimed_by_the_master_only() {
    let t0 = Instant::now();
    let mut nodes = vec![
        Node::new("n1", 1, 150, "", 1, t0),
        Node::new("n2", 1, 100, "", 2, t0),
    ];
    let t = run(&mut nodes, t0, Duration::from_secs(2), &everyone);
    let vip: IpAddr = "10.0.0.100".parse().expect("address");
    for n in &mut nodes {
        n.orders.clear();
        n.core.handle_address_removed(t, vip);
        n.collect();
    }
    assert!(matches!(
        nodes[0].orders.as_slice(),
        [VipOrder::Reclaim(Some(v))] if v.addr == vip
    ));
    assert!(nodes[1].orders.is_empty());
}

#[test]
fn the_link_going_down_is_a_fault_and_releases() {
    let t0 = Instant::now();
    let mut nodes = vec![Node::new("n1", 1, 150, "", 1, t0)];
    let t = run(&mut nodes, t0, Duration::from_secs(2), &everyone);
    let n = &mut nodes[0];
    assert_eq!(n.state(), State::Master);
    n.core.handle_link(t, false);
    n.collect();
    assert_eq!(n.state(), State::Fault);
    assert!(n.orders.contains(&VipOrder::Release));
    assert!(n.events.contains(&Event::LinkChanged { up: false }));
}

/// A node whose daemon restarted at `now` after a crash (a new boot id).
fn restarted(name: &str, boot_id: u64, priority: u8, addr: u8, now: Instant) -> Node {
    Node::new(name, boot_id, priority, "", addr, now)
}

fn became_master(node: &Node) -> bool {
    node.events.iter().any(|e| {
        matches!(
            e,
            Event::StateChanged {
                to: State::Master,
                ..
            }
        )
    })
}

#[test]
fn a_master_restarted_within_the_resume_window_resumes_and_nobody_takes_over() {
    let t0 = Instant::now();
    let mut nodes = vec![
        Node::new("n1", 1, 150, "", 1, t0),
        Node::new("n2", 1, 100, "", 2, t0),
    ];
    let t = run(&mut nodes, t0, Duration::from_secs(1), &everyone);
    assert_eq!(nodes[0].state(), State::Master);
    nodes[1].events.clear();
    // n1's daemon dies; the restart comes 150 ms later, inside the resume
    // window (2 x 100 ms) and well inside n2's master-down interval.
    let crash_window = crash::resume_window(nodes[0].core.config());
    let t = run(&mut nodes[1..], t, Duration::from_millis(150), &everyone);
    assert!(Duration::from_millis(150) < crash_window);
    nodes[0] = restarted("n1", 2, 150, 1, t);
    assert!(nodes[0].core.handle_resume(t));
    nodes[0].collect();
    assert_eq!(nodes[0].state(), State::Master, "master at once");
    assert!(nodes[0].orders.contains(&VipOrder::Claim));
    run(&mut nodes, t, Duration::from_secs(2), &everyone);
    assert_eq!(nodes[0].state(), State::Master);
    assert!(
        !became_master(&nodes[1]),
        "n2 never took over: {:?}",
        nodes[1].events
    );
    assert_eq!(nodes[1].core.auth_failures(), 0, "the new boot is accepted");
}

#[test]
fn a_restarted_master_that_may_not_be_master_releases_at_once() {
    let t0 = Instant::now();
    let cfg = instance_config("n1", 150, "");
    let node = NodeFacts {
        node_id: config::node_id("n1"),
        node_name: "n1".to_owned(),
        boot_id: 2,
        startup_delay: Duration::ZERO,
    };
    let mut core = InstanceCore::new(cfg, &node, true, ReplayGuard::new(), t0);
    assert!(!core.handle_resume(t0), "drained: no resume");
    let mut released = false;
    let mut release_advert = false;
    while let Some(output) = core.poll_output() {
        match output {
            Output::Vips(VipOrder::Release) => released = true,
            Output::Advert { body, .. } if body.priority == 0 => {
                release_advert = body.flags.contains(wire::Flags::MASTER);
            }
            _ => {}
        }
    }
    assert!(released && release_advert);
    assert_eq!(core.election().state(), State::Backup);
}

#[test]
fn the_clean_up_s_release_makes_the_backup_take_over_at_once() {
    let t0 = Instant::now();
    let mut nodes = vec![
        Node::new("n1", 1, 150, "", 1, t0),
        Node::new("n2", 1, 100, "", 2, t0),
    ];
    // Long enough for n2 to know every peer's rank (three backup intervals):
    // then a release is taken over without the RFC's skew.
    let t = run(&mut nodes, t0, Duration::from_secs(4), &everyone);
    assert_eq!(nodes[1].state(), State::Backup);
    // n1's daemon is dead; the clean-up sends the release under a new boot id.
    let cfg = nodes[0].core.config().clone();
    let advert = Advert {
        body: crash::release_body(&cfg, config::node_id("n1"), "n1"),
        boot_id: 2,
        sequence: 1,
    };
    let bytes = wire::encode(&advert, &cfg.auth).expect("encodes");
    let mut n2 = nodes.remove(1);
    n2.hear(t + MS, IpAddr::from([10, 0, 0, 1]), &bytes);
    n2.tick(t + MS * 3);
    assert_eq!(
        n2.state(),
        State::Master,
        "n2 took over within 2 ms of the release"
    );
    assert_eq!(n2.core.auth_failures(), 0);
}

#[test]
fn a_node_that_keeps_crashing_does_not_preempt_until_the_hold_ends() {
    let t0 = Instant::now();
    let mut nodes = vec![Node::new("n2", 1, 100, "", 2, t0)];
    let t = run(&mut nodes, t0, Duration::from_secs(1), &everyone);
    assert_eq!(nodes[0].state(), State::Master);
    let mut n1 = restarted("n1", 5, 150, 1, t);
    n1.core.hold_preemption_until(t + Duration::from_secs(3));
    nodes.insert(0, n1);
    let t = run(&mut nodes, t, Duration::from_secs(2), &everyone);
    assert_eq!(nodes[0].state(), State::Backup, "held: no preemption");
    assert_eq!(nodes[1].state(), State::Master);
    run(&mut nodes, t, Duration::from_secs(2), &everyone);
    assert_eq!(
        nodes[0].state(),
        State::Master,
        "preempts once the hold ends"
    );
}
