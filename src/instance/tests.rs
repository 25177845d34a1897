//! The core's rules on a virtual clock: bytes in, outputs out, no root.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::config;
use crate::election::PlannedOverlap;
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
    /// Sends the replaced master's name (extension type 3) as the driver
    /// does; off, it stands in for a build without the field.
    sends_extensions: bool,
    sequence: u64,
    sent: Vec<Vec<u8>>,
    events: Vec<Event>,
    orders: Vec<VipOrder>,
    /// How many times the core asked for the gate to run.
    gates_run: usize,
    /// Each after-release hook asked for: how many orders came before it,
    /// and the state the release left the node in.
    after_releases: Vec<(usize, State)>,
}

impl Node {
    fn new(name: &str, boot_id: u64, priority: u8, extra: &str, addr: u8, now: Instant) -> Self {
        let cfg = instance_config(name, priority, extra);
        let node = NodeFacts {
            node_id: config::node_id(name),
            node_name: name.to_owned(),
            boot_id,
            startup_delay: Duration::ZERO,
            vrrp_source: None,
        };
        let mut core = InstanceCore::new(cfg, &node, false, ReplayGuard::new(), now);
        core.handle_link(now, true);
        let mut n = Self {
            core,
            addr: IpAddr::from([10, 0, 0, addr]),
            sends_extensions: true,
            sequence: 0,
            sent: Vec::new(),
            events: Vec::new(),
            orders: Vec::new(),
            gates_run: 0,
            after_releases: Vec::new(),
        };
        n.collect();
        n
    }

    fn collect(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Advert {
                    body,
                    boot_id,
                    replaced,
                    claim_pending,
                } => {
                    self.sequence += 1;
                    let advert = Advert {
                        body,
                        boot_id,
                        sequence: self.sequence,
                    };
                    let mut extensions: Vec<_> = replaced
                        .as_deref()
                        .filter(|_| self.sends_extensions)
                        .map(wire::replaced_master_extension)
                        .into_iter()
                        .collect();
                    if claim_pending && self.sends_extensions {
                        extensions.push(wire::claim_pending_extension());
                    }
                    let bytes = wire::encode_with_extensions(
                        &advert,
                        &extensions,
                        &self.core.config().auth,
                    )
                    .expect("encodes");
                    self.sent.push(bytes);
                }
                Output::Vips(order) => self.orders.push(order),
                Output::Event(event) => self.events.push(event),
                Output::RunGate { .. } => self.gates_run += 1,
                Output::RunAfterRelease { to, .. } => {
                    self.after_releases.push((self.orders.len(), to))
                }
                Output::Store(_) => {}
            }
        }
    }

    /// An operator's command that must be accepted, and what it caused.
    fn command(&mut self, now: Instant, command: Command) {
        self.core
            .handle_command(now, command)
            .unwrap_or_else(|e| panic!("{command} refused: {e}"));
        self.collect();
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

// The election's rule "Planned overlaps", through bytes on the wire.

/// n1 (150, weighed by a track file) and n2 (100), both with preempt on.
fn pair(t0: Instant) -> Vec<Node> {
    vec![
        Node::new("n1", 1, 150, WEIGHT_FILE, 1, t0),
        Node::new("n2", 1, 100, "", 2, t0),
    ]
}

const WEIGHT_FILE: &str = "[[instance.track_file]]\npath = \"/run/t/n1.weight\"\n";

/// (two masters, planned overlaps) as the node counts them.
fn overlap_counts(n: &Node) -> (u64, u64) {
    let c = n.core.election().counters();
    (c.other_master_heard, c.planned_overlaps)
}

/// Why each planned overlap this node noticed was planned, in order; panics
/// on a notice of two masters.
fn planned_whys(n: &Node) -> Vec<PlannedOverlap> {
    n.events
        .iter()
        .filter_map(|e| match e {
            Event::Notice(Notice::PlannedOverlap { why, .. }) => Some(*why),
            Event::Notice(two @ Notice::OtherMasterHeard { .. }) => {
                panic!("{}: {two:?}", n.core.election().config().node_name)
            }
            _ => None,
        })
        .collect()
}

fn master_of(nodes: &[Node]) -> Vec<usize> {
    (0..nodes.len())
        .filter(|&i| nodes[i].state() == State::Master)
        .collect()
}

fn set_weight(n: &mut Node, now: Instant, weight: i64) {
    n.core.handle_check(
        now,
        CheckEvent::File {
            index: 0,
            value: Ok(weight),
        },
    );
    n.collect();
}

#[test]
fn a_maintenance_cycle_overlaps_as_planned_on_both_sides() {
    use PlannedOverlap::{HandingOver, ReplacedUs};
    let t0 = Instant::now();
    let mut nodes = pair(t0);
    let step = Duration::from_secs(1);
    let mut t = run(&mut nodes, t0, step * 2, &everyone);
    assert_eq!(master_of(&nodes), [0]);

    // Drain n1: it hands over to n2.
    nodes[0].command(t, Command::Drain { force: false });
    t = run(&mut nodes, t, step, &everyone);
    assert_eq!(master_of(&nodes), [1], "drain");
    // Undrain n1: it preempts n2 (fail-back).
    nodes[0].command(t, Command::Undrain);
    t = run(&mut nodes, t, step, &everyone);
    assert_eq!(master_of(&nodes), [0], "undrain");
    // Promote n2, then n1 back.
    for (i, promoted) in [(1, "promote n2"), (0, "promote n1")] {
        nodes[i].command(t, Command::Promote);
        t = run(&mut nodes, t, step, &everyone);
        assert_eq!(master_of(&nodes), [i], "{promoted}");
    }
    // Restart n1: its stop hands over to n2; back, it preempts n2.
    nodes[0].core.handle_shutdown(t);
    nodes[0].collect();
    t = run(&mut nodes, t, step, &everyone);
    assert_eq!(master_of(&nodes), [1], "n1 stopped");
    let before_restart = (overlap_counts(&nodes[0]), planned_whys(&nodes[0]));
    nodes[0] = Node::new("n1", 2, 150, WEIGHT_FILE, 1, t);
    t = run(&mut nodes, t, step * 2, &everyone);
    assert_eq!(master_of(&nodes), [0], "n1 restarted");
    // Health: n1's weight drops below n2 (n2 preempts), then recovers.
    set_weight(&mut nodes[0], t, -100);
    t = run(&mut nodes, t, step, &everyone);
    assert_eq!(master_of(&nodes), [1], "n1 weighs -100");
    set_weight(&mut nodes[0], t, 0);
    run(&mut nodes, t, step, &everyone);
    assert_eq!(master_of(&nodes), [0], "n1 recovered");

    eprintln!(
        "n1 before its restart (two masters, planned): {:?}, after: {:?}; n2: {:?}",
        before_restart.0,
        overlap_counts(&nodes[0]),
        overlap_counts(&nodes[1])
    );
    assert_eq!(
        before_restart.1,
        [HandingOver, ReplacedUs, HandingOver],
        "drain, promote n2, stop"
    );
    assert_eq!(
        planned_whys(&nodes[0]),
        [ReplacedUs],
        "n2 preempted on health"
    );
    assert_eq!(
        planned_whys(&nodes[1]),
        [ReplacedUs, ReplacedUs, ReplacedUs, ReplacedUs],
        "undrain, promote n1, restart of n1, n1's health recovered"
    );
    assert_eq!(before_restart.0, (0, 3));
    assert_eq!(overlap_counts(&nodes[0]), (0, 1));
    assert_eq!(overlap_counts(&nodes[1]), (0, 4));
}

#[test]
fn masters_that_never_heard_each_other_are_two_masters_on_both_sides() {
    let t0 = Instant::now();
    let mut nodes = pair(t0);
    let apart = |_: usize, _: usize| false;
    let mut t = run(&mut nodes, t0, Duration::from_secs(2), &apart);
    assert_eq!(master_of(&nodes), [0, 1], "a partition: both master");
    // The partition heals one way first (n1 hears n2), then both ways.
    t = run(&mut nodes, t, Duration::from_millis(150), &|from, _| {
        from == 1
    });
    run(&mut nodes, t, Duration::from_secs(1), &everyone);
    assert_eq!(master_of(&nodes), [0]);
    let (n1, n2) = (overlap_counts(&nodes[0]), overlap_counts(&nodes[1]));
    eprintln!("partition heal (two masters, planned): n1 {n1:?}, n2 {n2:?}");
    assert!(n1.0 >= 1 && n1.1 == 0, "{n1:?}");
    assert_eq!(n2, (1, 0));
}

/// n2 master, n1 drained backup; n1 undrains and preempts n2 while its
/// adverts do not reach n2 for `lost`, then everything is delivered.
fn fail_back_with_adverts_lost_towards_n2(lost: Duration) -> Vec<Node> {
    let t0 = Instant::now();
    let mut nodes = pair(t0);
    let mut t = run(&mut nodes, t0, Duration::from_secs(2), &everyone);
    nodes[0].command(t, Command::Drain { force: false });
    t = run(&mut nodes, t, Duration::from_secs(1), &everyone);
    assert_eq!(master_of(&nodes), [1]);
    let drained = overlap_counts(&nodes[0]);
    assert_eq!(drained, (0, 1), "the drain's handover");
    nodes[0].command(t, Command::Undrain);
    t = run(&mut nodes, t, lost, &|from, _| from == 1);
    assert_eq!(master_of(&nodes), [0, 1], "n2 has not heard n1 yet");
    run(&mut nodes, t, Duration::from_secs(1), &everyone);
    assert_eq!(master_of(&nodes), [0]);
    nodes
}

#[test]
fn adverts_lost_within_the_window_leave_the_overlap_planned() {
    // At 100 ms adverts the window is 3 × 100 ms + skew (41 ms at 150).
    let nodes = fail_back_with_adverts_lost_towards_n2(Duration::from_millis(250));
    let (n1, n2) = (overlap_counts(&nodes[0]), overlap_counts(&nodes[1]));
    eprintln!("250 ms lost (two masters, planned): n1 {n1:?}, n2 {n2:?}");
    // n1 heard n2's adverts as master all the while: planned each time.
    assert!(n1.0 == 0 && n1.1 >= 3, "{n1:?}");
    assert!(planned_whys(&nodes[0])[1..]
        .iter()
        .all(|w| *w == PlannedOverlap::WeReplaced));
    assert_eq!(n2, (0, 1));
    assert_eq!(planned_whys(&nodes[1]), [PlannedOverlap::ReplacedUs]);
}

#[test]
fn the_replaced_master_heard_after_the_window_is_two_masters() {
    let nodes = fail_back_with_adverts_lost_towards_n2(Duration::from_secs(1));
    let (n1, n2) = (overlap_counts(&nodes[0]), overlap_counts(&nodes[1]));
    eprintln!("1 s lost (two masters, planned): n1 {n1:?}, n2 {n2:?}");
    // n1: planned within the window, two masters after it.
    assert!(n1.0 >= 1 && n1.1 >= 2, "{n1:?}");
    // n2 hears n1 only after the window: n1 no longer names it.
    assert_eq!(n2, (1, 0));
}

#[test]
fn a_peer_that_does_not_name_the_master_it_replaced_is_two_masters_on_the_replaced_side() {
    // n2 stands in for a build without extension type 3.
    let t0 = Instant::now();
    let mut nodes = pair(t0);
    nodes[1].sends_extensions = false;
    let mut t = run(&mut nodes, t0, Duration::from_secs(2), &everyone);
    // The older n2 replaces n1: n1 cannot tell it from a one-way loss.
    nodes[1].command(t, Command::Promote);
    t = run(&mut nodes, t, Duration::from_secs(1), &everyone);
    assert_eq!(master_of(&nodes), [1]);
    assert_eq!(overlap_counts(&nodes[0]), (1, 0));
    // n1 replaces the older n2 and hears it as master meanwhile: planned on
    // n1's side, which needs nothing from n2.
    nodes[0].command(t, Command::Promote);
    t = run(&mut nodes, t, Duration::from_millis(250), &|from, _| {
        from == 1
    });
    run(&mut nodes, t, Duration::from_secs(1), &everyone);
    assert_eq!(master_of(&nodes), [0]);
    let n1 = overlap_counts(&nodes[0]);
    eprintln!("older peer (two masters, planned): n1 {n1:?}");
    assert!(n1.0 == 1 && n1.1 >= 1, "{n1:?}");
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
        vrrp_source: None,
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

const GATE: &str = "[instance.notify]\nbefore_claim = [\"/bin/true\"]\n";

#[test]
fn a_gated_master_claims_only_once_the_gate_passed() {
    let t0 = Instant::now();
    let mut n1 = Node::new("n1", 1, 150, GATE, 1, t0);
    let t = run(
        std::slice::from_mut(&mut n1),
        t0,
        Duration::from_secs(1),
        &everyone,
    );
    assert_eq!(n1.state(), State::Master);
    assert_eq!(n1.gates_run, 1, "the gate runs once");
    assert!(
        !n1.orders.contains(&VipOrder::Claim),
        "nothing claimed before the gate"
    );
    assert!(!n1.orders.contains(&VipOrder::Announce));
    n1.core.handle_gate(t, Ok(()));
    n1.collect();
    assert_eq!(
        n1.orders[n1.orders.len() - 2..],
        [VipOrder::Claim, VipOrder::Announce],
        "claim, then the announcement that waited"
    );
    assert!(n1.core.is_claimed());
    assert!(n1
        .events
        .iter()
        .any(|e| matches!(e, Event::GatePassed { .. })));
}

/// n1 (gated, preferred) and n2, run until n1 is master with its gate running.
fn gated_n1_master(t0: Instant) -> (Vec<Node>, Instant) {
    let mut nodes = vec![
        Node::new("n1", 1, 150, GATE, 1, t0),
        Node::new("n2", 1, 100, "", 2, t0),
    ];
    let t = run(&mut nodes, t0, Duration::from_secs(1), &everyone);
    assert_eq!(nodes[0].state(), State::Master);
    (nodes, t)
}

#[test]
fn a_failed_gate_is_a_fault_the_peer_takes_over_and_it_may_try_again_later() {
    let t0 = Instant::now();
    let (mut nodes, t) = gated_n1_master(t0);
    assert_eq!(nodes[0].gates_run, 1);
    nodes[0].core.handle_gate(t, Err("exit status: 1".into()));
    nodes[0].collect();
    assert_eq!(nodes[0].state(), State::Fault);
    assert!(nodes[0]
        .fault()
        .is_some_and(|f| f.contains("before_claim hook failed: exit status: 1")));
    assert!(!nodes[0].orders.contains(&VipOrder::Claim));
    let t = run(&mut nodes, t, Duration::from_secs(1), &everyone);
    assert_eq!(nodes[1].state(), State::Master, "the peer took over");
    // The fault ends, but n1 does not preempt a working master again.
    let t = run(&mut nodes, t, GATE_FAULT_HOLD, &everyone);
    assert_eq!(nodes[0].state(), State::Backup);
    assert_eq!(nodes[1].state(), State::Master);
    assert_eq!(nodes[0].gates_run, 1);
    // An operator's promote does, and runs the gate again.
    nodes[0].command(t, Command::Promote);
    assert_eq!(nodes[0].state(), State::Master);
    assert_eq!(nodes[0].gates_run, 2, "a second try");
}

/// Whether the advert's bytes say the claim is pending (extension type 4).
fn says_pending(n: &Node, bytes: &[u8]) -> Option<bool> {
    let cfg = n.core.config();
    let (advert, extensions) =
        wire::decode_extended(bytes, cfg.group, &cfg.auth, &[]).expect("our own advert decodes");
    advert
        .body
        .flags
        .contains(wire::Flags::MASTER)
        .then(|| wire::claim_pending(&extensions))
}

#[test]
fn a_gated_master_says_its_claim_is_pending_until_it_serves() {
    let t0 = Instant::now();
    let (mut nodes, t) = gated_n1_master(t0);
    assert!(nodes[0].core.claim_pending());
    assert!(
        nodes[1].core.peer_claim_pending(config::node_id("n1")),
        "the peer heard that n1 does not serve yet"
    );
    nodes[0].core.handle_gate(t, Ok(()));
    nodes[0].sent.clear();
    nodes[0].collect();
    let said: Vec<Option<bool>> = nodes[0]
        .sent
        .iter()
        .map(|b| says_pending(&nodes[0], b))
        .collect();
    assert_eq!(
        said,
        [Some(false)],
        "one master advert at once, without the pending field"
    );
    run(&mut nodes, t, 10 * MS, &everyone);
    assert!(!nodes[0].core.claim_pending());
    assert!(!nodes[1].core.peer_claim_pending(config::node_id("n1")));
}

/// n1 master, n2 (gated) its successor; n1 drained at the returned time with
/// n2 master and its gate running. n1 waits up to 1 s for n2's claim, longer
/// than n2's liveness window.
fn drained_to_a_gated_successor(t0: Instant) -> (Vec<Node>, Instant) {
    let mut nodes = vec![
        Node::new("n1", 1, 150, "handover_timeout = \"1s\"\n", 1, t0),
        Node::new("n2", 1, 100, GATE, 2, t0),
    ];
    let t = run(&mut nodes, t0, Duration::from_secs(1), &everyone);
    assert_eq!(master_of(&nodes), [0]);
    nodes[0].command(t, Command::Drain { force: false });
    let t = run(&mut nodes, t, Duration::from_millis(100), &everyone);
    assert_eq!(nodes[1].state(), State::Master);
    assert_eq!(nodes[1].gates_run, 1);
    // n1 keeps the VIPs while n2's claim is pending.
    assert!(nodes[0].core.is_claimed());
    assert!(!nodes[0].orders.contains(&VipOrder::Release));
    (nodes, t)
}

#[test]
fn a_drain_whose_successor_fails_its_gate_rolls_back() {
    let t0 = Instant::now();
    let (mut nodes, t) = drained_to_a_gated_successor(t0);
    nodes[1].core.handle_gate(t, Err("exit status: 1".into()));
    nodes[1].collect();
    let before = nodes[0].orders.len();
    let t = run(&mut nodes, t, Duration::from_millis(50), &everyone);
    assert_eq!(nodes[0].state(), State::Master, "n1 kept the VIPs");
    assert!(nodes[0].core.is_claimed());
    assert!(
        !nodes[0].orders.contains(&VipOrder::Release),
        "they never moved"
    );
    assert!(
        nodes[0].orders[before..].contains(&VipOrder::Announce),
        "announced again"
    );
    assert!(!nodes[0].core.election().is_drained());
    let why = nodes[0].core.drain_rolled_back().expect("a rollback");
    assert!(why.contains("n2") && why.contains("in fault"), "{why}");
    assert!(nodes[0]
        .events
        .iter()
        .any(|e| matches!(e, Event::DrainRolledBack { .. })));
    // The next command clears the record.
    nodes[0].command(t, Command::Undrain);
    assert!(nodes[0].core.drain_rolled_back().is_none());
}

#[test]
fn a_drain_whose_successor_goes_silent_before_serving_rolls_back() {
    let t0 = Instant::now();
    let (mut nodes, t) = drained_to_a_gated_successor(t0);
    // n2 dies with its gate still running: nothing from it reaches n1.
    let t = run(&mut nodes, t, Duration::from_secs(1), &|from, _| from != 1);
    assert_eq!(nodes[0].state(), State::Master, "n1 kept the VIPs");
    assert!(!nodes[0].orders.contains(&VipOrder::Release));
    let why = nodes[0].core.drain_rolled_back().expect("a rollback");
    assert!(why.contains("went silent"), "{why}");
    let _ = t;
}

#[test]
fn a_drain_is_complete_once_the_successor_serves() {
    let t0 = Instant::now();
    let (mut nodes, t) = drained_to_a_gated_successor(t0);
    nodes[1].core.handle_gate(t, Ok(()));
    nodes[1].collect();
    let t = run(&mut nodes, t, Duration::from_millis(50), &everyone);
    assert!(nodes[1].core.is_claimed());
    assert!(!nodes[0].core.peer_claim_pending(config::node_id("n2")));
    assert_eq!(
        nodes[0].state(),
        State::Backup,
        "n1 released once n2 served"
    );
    assert_eq!(nodes[0].orders.last(), Some(&VipOrder::Release));
    // A later fault of the successor is an ordinary failover: n1 stays drained.
    nodes[1].core.handle_link(t, false);
    nodes[1].collect();
    let _ = run(&mut nodes, t, Duration::from_secs(1), &everyone);
    assert!(nodes[0].core.election().is_drained());
    assert!(nodes[0].core.drain_rolled_back().is_none());
    assert_ne!(nodes[0].state(), State::Master);
}

#[test]
fn the_after_release_hook_follows_every_release_and_only_with_one_configured() {
    const AFTER: &str = "[instance.notify]\nafter_release = [\"/bin/true\"]\n";
    let t0 = Instant::now();
    let mut nodes = vec![
        Node::new("n1", 1, 150, AFTER, 1, t0),
        Node::new("n2", 1, 100, "", 2, t0),
    ];
    let t = run(&mut nodes, t0, Duration::from_secs(1), &everyone);
    assert_eq!(master_of(&nodes), [0]);
    assert!(nodes[0].after_releases.is_empty(), "nothing released yet");
    // A drain hands over; the hook follows the release order.
    nodes[0].command(t, Command::Drain { force: false });
    let t = run(&mut nodes, t, Duration::from_millis(100), &everyone);
    assert_eq!(master_of(&nodes), [1]);
    let [(before, to)] = nodes[0].after_releases[..] else {
        panic!("one hook: {:?}", nodes[0].after_releases);
    };
    assert_eq!(nodes[0].orders[before - 1], VipOrder::Release);
    assert_eq!(to, State::Backup);
    // A fault's release too, with the state it left the node in.
    nodes[0].command(t, Command::Undrain);
    nodes[0].command(t, Command::Promote);
    let t = run(&mut nodes, t, Duration::from_millis(100), &everyone);
    assert_eq!(master_of(&nodes), [0]);
    nodes[0].core.handle_link(t, false);
    nodes[0].collect();
    assert_eq!(nodes[0].after_releases.len(), 2);
    assert_eq!(nodes[0].after_releases[1].1, State::Fault);
    assert_eq!(*nodes[0].orders.last().expect("orders"), VipOrder::Release);
    // n2 has none configured: its releases ask for nothing.
    assert!(nodes[1].after_releases.is_empty());
}

#[test]
fn a_node_whose_check_lifts_it_at_start_up_claims_first_and_alone() {
    // Both configured at 100; n1's weight lifts it to 150 just after start.
    // n2, whatever its node id, must not claim first: the start-up rule.
    for (a, b) in [("n1", "n2"), ("n2", "n1")] {
        let t0 = Instant::now();
        let mut nodes = vec![
            Node::new(a, 1, 100, WEIGHT_FILE, 1, t0),
            Node::new(b, 1, 100, "", 2, t0),
        ];
        let t = run(&mut nodes, t0, Duration::from_millis(50), &everyone);
        set_weight(&mut nodes[0], t, 50);
        run(&mut nodes, t, Duration::from_secs(2), &everyone);
        assert_eq!(master_of(&nodes), [0], "{a} lifted to 150 is master");
        assert!(
            !nodes[1].orders.contains(&VipOrder::Claim),
            "{b} never claimed"
        );
    }
}

// -------------------------------------------------------- rule 18: VRRP mode

/// A VRRP core (`protocol = vrrp2`, PASS "s3cret", 1 s adverts) sending
/// from 10.0.0.1.
fn vrrp_core(priority: u8, now: Instant) -> InstanceCore {
    let text = config_text(
        "v1",
        priority,
        "protocol = \"vrrp2\"\nvrrp_auth_pass = \"s3cret\"\n",
    )
    .replace("advert_interval = \"100ms\"", "advert_interval = \"1s\"");
    let cfg = config::from_toml(&text, Path::new("/t.toml"))
        .expect("test config")
        .instances
        .remove(0);
    let node = NodeFacts {
        node_id: config::node_id("v1"),
        node_name: "v1".to_owned(),
        boot_id: 1,
        startup_delay: Duration::ZERO,
        vrrp_source: Some(IpAddr::from([10, 0, 0, 1])),
    };
    let mut core = InstanceCore::new(cfg, &node, false, ReplayGuard::new(), now);
    core.handle_link(now, true);
    while core.poll_output().is_some() {}
    core
}

/// A VRRPv2 advert as a raw IPv4 socket hands it over: IP header first.
fn vrrp_datagram(
    source: [u8; 4],
    priority: u8,
    interval_s: u16,
    vips: &[&str],
    pass: &[u8; 8],
) -> Vec<u8> {
    let message = crate::vrrp::encode(&crate::vrrp::Packet {
        version: crate::vrrp::Version::V2,
        vrid: 1,
        priority,
        interval_cs: interval_s * 100,
        addresses: vips.iter().map(|v| v.parse().unwrap()).collect(),
        auth: crate::vrrp::V2Auth::Password(*pass),
    })
    .unwrap();
    let total = u16::try_from(20 + message.len()).unwrap();
    let mut d = vec![0x45, 0xc0];
    d.extend_from_slice(&total.to_be_bytes());
    d.extend_from_slice(&[0, 1, 0, 0, 255, 112, 0, 0]);
    d.extend_from_slice(&source);
    d.extend_from_slice(&[224, 0, 0, 18]);
    d.extend_from_slice(&message);
    d
}

fn outputs(core: &mut InstanceCore) -> Vec<Output> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

fn rejected(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(Event::Rejected { error, .. }) => Some(error.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn vrrp_adverts_are_checked_as_keepalived_checks_them_and_followed() {
    let t0 = Instant::now();
    let pass = *b"s3cret\0\0";
    let peer = IpAddr::from([10, 0, 0, 2]);
    let mut core = vrrp_core(100, t0);
    // Our node id is our source address, so ties go to the higher address.
    assert_eq!(core.election().config().node_id, 0x0a00_0001);

    // Wrong password, another interval, another VIP set: each rejected and
    // counted; nothing is followed.
    for (bytes, why) in [
        (
            vrrp_datagram([10, 0, 0, 2], 200, 1, &["10.0.0.100"], b"wrong\0\0\0"),
            "password",
        ),
        (
            vrrp_datagram([10, 0, 0, 2], 200, 2, &["10.0.0.100"], &pass),
            "interval 2s differs from ours (1s)",
        ),
        (
            vrrp_datagram([10, 0, 0, 2], 200, 1, &["10.0.0.101"], &pass),
            "not our 1 VIPs",
        ),
    ] {
        core.handle_datagram(t0, peer, &bytes);
        let out = outputs(&mut core);
        let why_seen = rejected(&out);
        assert_eq!(why_seen.len(), 1, "{why}: {out:?}");
        assert!(why_seen[0].contains(why), "{why}: {why_seen:?}");
    }
    assert!(core.sources().is_empty());
    assert_eq!(core.auth_failures(), 3);

    // Our own advert (same source) is ignored; a good one is followed.
    core.handle_datagram(
        t0,
        IpAddr::from([10, 0, 0, 1]),
        &vrrp_datagram([10, 0, 0, 1], 200, 1, &["10.0.0.100"], &pass),
    );
    assert!(outputs(&mut core).is_empty());
    core.handle_datagram(
        t0,
        peer,
        &vrrp_datagram([10, 0, 0, 2], 200, 1, &["10.0.0.100"], &pass),
    );
    let out = outputs(&mut core);
    assert!(rejected(&out).is_empty(), "{out:?}");
    assert_eq!(core.election().master(t0), Some(0x0a00_0002));
    let master = core.election().peers().next().expect("the peer");
    assert_eq!(master.name, "10.0.0.2");
    // A backup sends nothing in VRRP mode.
    assert!(
        !out.iter().any(|o| matches!(o, Output::Advert { .. })),
        "{out:?}"
    );
}

#[test]
fn vrrp_master_adverts_are_vrrp_messages_with_the_vips() {
    let t0 = Instant::now();
    let mut core = vrrp_core(150, t0);
    // Alone: master after 3 s + skew(150) = 3.414 s.
    core.handle_timeout(t0 + Duration::from_millis(3500));
    let body = outputs(&mut core)
        .into_iter()
        .find_map(|o| match o {
            Output::Advert { body, .. } => Some(body),
            _ => None,
        })
        .expect("a master advert");
    let bytes = core
        .vrrp_message(&body)
        .expect("VRRP mode")
        .expect("encodes");
    let expect = crate::vrrp::Expect {
        version: crate::vrrp::Version::V2,
        vrid: 1,
        ipv6: false,
        auth: crate::vrrp::V2Auth::Password(*b"s3cret\0\0"),
    };
    let (packet, _) = crate::vrrp::decode(&bytes, &expect, None).expect("decodes");
    assert_eq!(packet.priority, 150);
    assert_eq!(packet.interval_cs, 100);
    assert_eq!(packet.addresses, vec![IpAddr::from([10, 0, 0, 100])]);
}
