//! Reloads that move nothing (issue 12): a two-node pair serves a VIP while a
//! client pings it every 2 ms, and both nodes reload, backup first, for each
//! kind of change a reload may bring — none, notify hooks, a track script, a
//! track file, announcement settings, the guard, priorities (the master stays
//! the best), preempt, the advert interval, a VIP added, a VIP removed, the
//! multicast group, the port, a switch from multicast to unicast (with a new
//! port: on the same port it is a restart, see `daemon::reload`), a peer
//! added (a third node's address that no node has yet) and removed again,
//! the unicast port. Each step must lose no probe on the VIP that stays,
//! change no node's state and restart no instance; the lost probes per kind
//! are printed as a table.
//!
//! Also here: a switch from multicast to unicast on the same port (a restart,
//! measured), a removed peer forgotten and no longer heard, the master's
//! interface re-created under its name (a new index)
//! is picked up without a restart, and `vipd reload` exits non-zero, naming
//! the instance, when an instance of the new file cannot start.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::net::UdpSocket;
use std::thread;
use std::time::Duration;

use common::*;

/// How often the client pings the VIP during a reload, and for how long.
const PROBE_EVERY: Duration = Duration::from_millis(2);
const PROBES: u32 = 1_000;

/// What the reload test changes, for both nodes at once.
#[derive(Clone)]
struct Knobs {
    hook: String,
    script: String,
    script_interval: &'static str,
    file_interval: &'static str,
    announce_count: u32,
    guard_interval: &'static str,
    priorities: [u8; 2],
    preempt: bool,
    interval: &'static str,
    vips: Vec<String>,
    /// Every node's address, for unicast peer lists.
    node_addrs: Vec<String>,
    /// `multicast_group` (multicast only); `None`: the default.
    multicast_group: Option<&'static str>,
    port: Option<u16>,
    /// Unicast: each node's peers are the other nodes plus these.
    unicast: bool,
    extra_peers: Vec<String>,
}

impl Knobs {
    fn spec(&self, node: usize, scratch: &Scratch, witness: &str) -> NodeSpec {
        let mut instance = InstanceSpec::new(self.priorities[node - 1])
            .advert(self.interval)
            .preempt(self.preempt)
            .extra(&format!("announce_count = {}", self.announce_count))
            .extra(&format!(
                "track_script = [{{ name = \"chk\", command = [{:?}], interval = {:?} }}]",
                self.script, self.script_interval
            ))
            .extra(&format!(
                "track_file = [{{ path = {:?}, interval = {:?} }}]",
                scratch.path("weight"),
                self.file_interval
            ))
            .extra(&format!("notify = {{ any = [{:?}] }}", self.hook))
            .extra(&format!(
                "guard = {{ witness = {witness:?}, interval = {:?}, timeout = \"500ms\" }}",
                self.guard_interval
            ));
        for vip in &self.vips {
            instance = instance.vip(vip);
        }
        if self.unicast {
            let peers: Vec<&str> = (1..=self.node_addrs.len())
                .filter(|&i| i != node)
                .map(|i| self.node_addrs[i - 1].as_str())
                .chain(self.extra_peers.iter().map(String::as_str))
                .collect();
            instance = instance.peers(&peers);
        } else if let Some(group) = self.multicast_group {
            instance = instance.extra(&format!("multicast_group = {group:?}"));
        }
        if let Some(port) = self.port {
            instance = instance.extra(&format!("port = {port}"));
        }
        NodeSpec::new(&format!("n{node}"), instance)
    }
}

/// How many state changes a daemon has logged so far.
fn state_changes(daemon: &Daemon) -> usize {
    daemon.log().matches("state change").count()
}

/// `vipd reload` on `daemon`; panics unless it succeeds. Returns what it said.
fn reload(daemon: &Daemon) -> String {
    let out = daemon.cli(&["reload"]);
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "{}: reload failed ({}): {text}{}",
        daemon.name,
        out.status,
        logs_for_panic()
    );
    text.trim().to_owned()
}

/// What the steps change to, besides the knobs.
struct StepNames {
    vip2: String,
    /// An address on the link no node has yet.
    third_node: String,
}

/// One row of the table.
struct Row {
    kind: &'static str,
    sent: u32,
    lost: usize,
    detail: String,
    applied: String,
}

#[test]
fn each_kind_of_reload_loses_no_probe_and_moves_no_master() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("reload", 2);
    let scratch = Scratch::new("reload");
    let witness = lab.client.v4.clone();
    let hooks_log = scratch.path("hooks.log");
    let hook_a = scratch.script("hook_a", &format!("echo a \"$@\" >> {hooks_log}"));
    // The hook the "notify hook" step switches to.
    scratch.script("hook_b", &format!("echo b \"$@\" >> {hooks_log}"));
    let check_a = scratch.script("check_a", "exit 0");
    // The track script the "track script" step switches to.
    scratch.script("check_b", "test -d /");
    fs::write(scratch.path("weight"), "0\n").expect("write weight file");
    let (vip, vip2) = (lab.vip4(0), lab.vip4(1));

    let mut knobs = Knobs {
        hook: hook_a,
        script: check_a,
        script_interval: "200ms",
        file_interval: "200ms",
        announce_count: 3,
        guard_interval: "500ms",
        priorities: [150, 100],
        preempt: true,
        interval: "100ms",
        vips: vec![vip.clone()],
        node_addrs: (1..=2).map(|i| lab.node(i).v4.clone()).collect(),
        multicast_group: None,
        port: None,
        unicast: false,
        extra_peers: Vec::new(),
    };
    // An address on the link that no node has (yet): the "third node" a
    // peer list gains before that node exists.
    let third_node = lab
        .node(1)
        .v4
        .rsplit_once('.')
        .map_or_else(|| panic!("an IPv4 address"), |(net, _)| format!("{net}.3"));
    let daemons: Vec<Daemon> = (1..=2)
        .map(|i| Daemon::start(lab.node(i), knobs.spec(i, &scratch, &witness)))
        .collect();
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    // Settled: both nodes past start-up, n2 a backup that hears n1.
    wait_until("n2 is backup and hears n1", Duration::from_secs(10), || {
        daemons[1]
            .status_json()
            .is_some_and(|s| s["instances"][0]["state"] == "backup")
    });
    assert!(lab.client.ping(&vip), "the client reaches the VIP");

    let names = StepNames {
        vip2: vip2.clone(),
        third_node,
    };
    type Step = (&'static str, fn(&mut Knobs, &StepNames));
    let steps: Vec<Step> = vec![
        ("no change", |_, _| {}),
        ("notify hook", |k, _| {
            k.hook = k.hook.replace("hook_a", "hook_b")
        }),
        ("track script", |k, _| {
            k.script = k.script.replace("check_a", "check_b");
            k.script_interval = "300ms";
        }),
        ("track file", |k, _| k.file_interval = "300ms"),
        ("announce settings", |k, _| k.announce_count = 2),
        ("guard", |k, _| k.guard_interval = "400ms"),
        ("priority", |k, _| k.priorities = [160, 120]),
        ("preempt", |k, _| k.preempt = false),
        ("advert interval", |k, _| k.interval = "200ms"),
        ("add a VIP", |k, n| k.vips.push(n.vip2.clone())),
        ("remove a VIP", |k, n| k.vips.retain(|v| *v != n.vip2)),
        ("multicast group", |k, _| {
            k.multicast_group = Some("224.0.0.90")
        }),
        ("port", |k, _| k.port = Some(5990)),
        // On one port the two sockets cannot be bound at once (no
        // SO_REUSEADDR), so a switch on the same port is a restart; with a
        // port change in the same reload it is make-before-break.
        ("multicast to unicast, new port", |k, _| {
            k.unicast = true;
            k.multicast_group = None;
            k.port = Some(5991);
        }),
        ("add a peer", |k, n| {
            k.extra_peers.push(n.third_node.clone())
        }),
        ("remove a peer", |k, n| {
            k.extra_peers.retain(|p| *p != n.third_node)
        }),
        ("unicast port", |k, _| k.port = Some(5992)),
    ];

    let mut rows = Vec::new();
    for (kind, change) in steps {
        change(&mut knobs, &names);
        let before: Vec<usize> = daemons.iter().map(state_changes).collect();
        let prober = Prober::start(&lab.client, &vip, PROBE_EVERY, PROBES);
        thread::sleep(Duration::from_millis(400));
        let mut applied = String::new();
        for i in [2, 1] {
            daemons[i - 1].rewrite_config(&knobs.spec(i, &scratch, &witness));
            let said = reload(&daemons[i - 1]);
            assert!(
                !said.contains("restarted: db"),
                "{kind}: n{i} restarted the instance: {said}"
            );
            let _ = write!(applied, "n{i}: {said}; ");
            eprintln!("[reload] {kind}: n{i}: {said}");
        }
        let result = prober.finish();
        let after: Vec<usize> = daemons.iter().map(state_changes).collect();
        eprintln!(
            "[reload] {kind}: {} probes, lost {} ({}); state changes before {before:?} after {after:?}",
            result.sent,
            result.lost.len(),
            result.describe_lost(PROBE_EVERY)
        );
        assert_eq!(
            before,
            after,
            "{kind}: no node may change state on this reload{}",
            logs_for_panic()
        );
        assert_eq!(lab.holders(&vip), [1], "{kind}: n1 alone still holds {vip}");
        rows.push(Row {
            kind,
            sent: result.sent,
            lost: result.lost.len(),
            detail: result.describe_lost(PROBE_EVERY),
            applied,
        });
        match kind {
            "add a VIP" => {
                wait_until(
                    "n1 alone holds the added VIP",
                    Duration::from_secs(5),
                    || lab.holders(&vip2) == [1],
                );
                assert!(lab.client.ping(&vip2), "the client reaches the added VIP");
            }
            "remove a VIP" => {
                wait_until(
                    "nobody holds the removed VIP",
                    Duration::from_secs(5),
                    || lab.holders(&vip2).is_empty(),
                );
            }
            "multicast group"
            | "port"
            | "multicast to unicast, new port"
            | "add a peer"
            | "remove a peer"
            | "unicast port" => {
                wait_until(
                    "n2 hears n1 as master on the new transport",
                    Duration::from_secs(5),
                    || {
                        daemons[1].status_json().is_some_and(|s| {
                            s["instances"][0]["master"]["name"] == "n1"
                                && s["instances"][0]["peers"][0]["alive"] == true
                        })
                    },
                );
            }
            "priority" => {
                let status = daemons[0].status_json().expect("n1 status");
                assert_eq!(status["instances"][0]["configured_priority"], 160);
            }
            _ => {}
        }
    }

    eprintln!("[reload] lost probes per kind of reload (ping every {PROBE_EVERY:?}, both nodes reloaded, backup first):");
    eprintln!("[reload] {:<31} {:>6} {:>5}", "kind", "probes", "lost");
    for r in &rows {
        eprintln!("[reload] {:<31} {:>6} {:>5}", r.kind, r.sent, r.lost);
    }
    for r in &rows {
        assert_eq!(
            r.lost, 0,
            "{}: lost probes: {} (reloads said: {})",
            r.kind, r.detail, r.applied
        );
    }

    // The hooks changed in place serve the next transitions: a drain of n1
    // runs the new hook ("b") on both nodes.
    let out = daemons[0].cli(&["drain", "--wait"]);
    assert!(out.status.success(), "drain n1: {}", output_text(&out));
    wait_until(
        "the new hook ran for both nodes' transitions",
        Duration::from_secs(10),
        || {
            let hooks = fs::read_to_string(&hooks_log).unwrap_or_default();
            hooks.contains("b db master backup") && hooks.contains("b db backup master")
        },
    );
    let hooks = fs::read_to_string(&hooks_log).unwrap_or_default();
    eprintln!("[reload] hooks run:\n{}", hooks.trim_end());
}

/// Deletes node `i`'s `eth0` (its veth, from the switch side) and makes it
/// again under the same name, as the lab first made it: a new ifindex.
fn recreate_eth0(lab: &Lab, i: usize) {
    let host = lab.node(i);
    let port = format!("p{i}");
    let before = host.ns.ip(&["-o", "link", "show", "dev", "eth0"]);
    lab.switch.ip(&["link", "del", &port]);
    thread::sleep(Duration::from_millis(300));
    lab.replug_node(i);
    let after = host.ns.ip(&["-o", "link", "show", "dev", "eth0"]);
    let index = |line: &str| line.split(':').next().unwrap_or("").trim().to_owned();
    eprintln!(
        "[reload] n{i}: eth0 re-created: ifindex {} -> {}",
        index(&before),
        index(&after)
    );
    assert_ne!(index(&before), index(&after), "a new ifindex");
}

fn instance_state(daemon: &Daemon) -> String {
    daemon
        .status_json()
        .and_then(|s| s["instances"][0]["state"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn an_interface_recreated_under_its_name_is_picked_up_without_a_restart() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("relink", 2);
    let vip = lab.vip4(0);
    let mut daemons = start_pair(&lab, &vip);
    let pids: Vec<Option<i32>> = daemons.iter().map(Daemon::pid).collect();

    // The master's interface.
    recreate_eth0(&lab, 1);
    let took = wait_until(
        "n1 is master again on its new eth0 and n2 backup",
        Duration::from_secs(20),
        || {
            lab.holders(&vip) == [1]
                && instance_state(&daemons[0]) == "master"
                && instance_state(&daemons[1]) == "backup"
        },
    );
    eprintln!(
        "[reload] n1 master again {} ms after its eth0 came back",
        ms(took)
    );
    let log = daemons[0].log();
    assert!(
        log.contains("state=fault previous=master"),
        "n1 was in fault while its interface was gone"
    );
    assert!(log.contains("re-created"), "n1 logged the new index");
    assert!(lab.client.ping(&vip), "the client reaches the VIP again");

    // The backup's interface: it hears the master again and stays backup.
    recreate_eth0(&lab, 2);
    let took = wait_until(
        "n2 is backup again and hears n1 on its new eth0",
        Duration::from_secs(20),
        || {
            daemons[1].status_json().is_some_and(|s| {
                s["instances"][0]["state"] == "backup"
                    && s["instances"][0]["master"]["name"] == "n1"
                    && s["instances"][0]["peers"][0]["alive"] == true
            })
        },
    );
    eprintln!(
        "[reload] n2 backup again {} ms after its eth0 came back",
        ms(took)
    );
    hold_for("n1 alone holds the VIP", Duration::from_secs(1), || {
        lab.holders(&vip) == [1]
    });
    for (d, pid) in daemons.iter_mut().zip(pids) {
        assert!(d.is_running(), "{} still runs", d.name);
        assert_eq!(d.pid(), pid, "{} was not restarted", d.name);
    }
}

/// Binds UDP `0.0.0.0:port` inside namespace `netns` (no SO_BINDTODEVICE), so
/// no advert socket may use that port there; the socket stays in the namespace
/// it was made in.
fn occupy_udp_port(netns: &str, port: u16) -> UdpSocket {
    let netns = netns.to_owned();
    thread::spawn(move || {
        Netns::enter(&netns).expect("enter the node's namespace");
        UdpSocket::bind(("0.0.0.0", port)).expect("bind the port to occupy")
    })
    .join()
    .expect("binding thread")
}

#[test]
fn reload_exits_non_zero_naming_an_instance_that_cannot_start() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("relfail", 1);
    let (vip, vip2) = (lab.vip4(0), lab.vip4(1));
    let daemon = Daemon::start(
        lab.node(1),
        NodeSpec::new("n1", InstanceSpec::new(150).vip(&vip)),
    );
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));

    // A valid file whose new instance cannot open its advert socket: its
    // port is taken in the node's namespace. `vipd check` asks nothing about
    // ports, so only the start can tell.
    let _occupied = occupy_udp_port(&lab.node(1).ns.name, 5999);
    let mut spec = NodeSpec::new("n1", InstanceSpec::new(150).vip(&vip));
    let mut web = InstanceSpec::new(150).vip(&vip2).extra("port = 5999");
    web.name = "web".into();
    web.group = 52;
    spec.instances.push(web);
    daemon.rewrite_config(&spec);
    let out = daemon.cli(&["reload"]);
    let text = output_text(&out);
    eprintln!(
        "[reload] reload with an instance that cannot start -> {}: {}",
        out.status,
        text.trim()
    );
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("failed to start: web"), "{text}");
    assert!(text.contains("kept: db"), "{text}");
    hold_for("db keeps its VIP", Duration::from_millis(500), || {
        lab.holders(&vip) == [1]
    });

    // With the port free, the next reload starts it.
    drop(_occupied);
    let out = daemon.cli(&["reload"]);
    let text = output_text(&out);
    eprintln!(
        "[reload] reload with the port free -> {}: {}",
        out.status,
        text.trim()
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("started: web"), "{text}");
    wait_sole_holder(&lab, &vip2, 1, Duration::from_secs(10));
}

/// A switch between multicast and unicast on the same port is the one
/// transport change that restarts the instance (the two sockets cannot be
/// bound at once). Measured, not asserted: during the switch the two nodes
/// speak different transports, so the restarted master finds no successor it
/// can hear and the VIP waits for a new master's start-up. The way without a
/// gap is the port change in the same edit (the table above).
///
/// Then a peer removed by a reload (n1 from n2's list) is forgotten at once
/// (no longer listed, no longer followed) and its adverts are dropped as from
/// an unknown source.
#[test]
fn a_same_port_multicast_to_unicast_switch_restarts_and_a_removed_peer_is_forgotten() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("relmode", 2);
    let vip = lab.vip4(0);
    let daemons = start_pair(&lab, &vip);
    wait_until("n2 is backup and hears n1", Duration::from_secs(10), || {
        daemons[1]
            .status_json()
            .is_some_and(|s| s["instances"][0]["master"]["name"] == "n1")
    });
    let prober = Prober::start(&lab.client, &vip, PROBE_EVERY, 2 * PROBES);
    thread::sleep(Duration::from_millis(400));
    for i in [2, 1] {
        let other = lab.node(3 - i).v4.clone();
        let priority = if i == 1 { 150 } else { 100 };
        let spec = NodeSpec::new(
            &format!("n{i}"),
            InstanceSpec::new(priority).vip(&vip).peers(&[&other]),
        );
        daemons[i - 1].rewrite_config(&spec);
        let said = reload(&daemons[i - 1]);
        eprintln!("[reload] multicast to unicast, same port: n{i}: {said}");
        assert!(said.contains("restarted: db"), "{said}");
    }
    let result = prober.finish();
    eprintln!(
        "[reload] multicast to unicast, same port (restart): {} probes, lost {} ({})",
        result.sent,
        result.lost.len(),
        result.describe_lost(PROBE_EVERY)
    );
    wait_until(
        "one holder again, the nodes hearing each other by unicast",
        Duration::from_secs(10),
        || {
            lab.holders(&vip).len() == 1
                && daemons[1].status_json().is_some_and(|s| {
                    s["instances"][0]["peers"][0]["alive"] == true
                        && s["instances"][0]["master"]["name"].is_string()
                })
        },
    );

    // A peer removed by a reload is forgotten at once and no longer heard:
    // n2 keeps only an address nobody has.
    let nobody = lab
        .node(1)
        .v4
        .rsplit_once('.')
        .map_or_else(|| panic!("an IPv4 address"), |(net, _)| format!("{net}.3"));
    daemons[1].rewrite_config(&NodeSpec::new(
        "n2",
        InstanceSpec::new(100).vip(&vip).peers(&[&nobody]),
    ));
    let said = reload(&daemons[1]);
    eprintln!("[reload] n1 removed from n2's peers: {said}");
    assert!(said.contains("updated in place: db (peers)"), "{said}");
    // `vipd status` exits 3 now (no master known), so read its JSON as is.
    let out = daemons[1].cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("n2 status");
    assert_eq!(
        status["instances"][0]["master"],
        serde_json::Value::Null,
        "the forgotten master is not followed: {status}"
    );
    assert_eq!(
        status["instances"][0]["peers"].as_array().map(Vec::len),
        Some(0),
        "n1 forgotten at once: {status}"
    );
    wait_until(
        "n2 rejects n1's adverts as from an unknown source",
        Duration::from_secs(5),
        || daemons[1].log().contains("not a configured peer"),
    );
}
