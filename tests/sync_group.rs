//! Sync groups between real daemons: two instances per node, `outside` on eth0
//! and `inside` on a second link (eth1, on a second bridge), in one sync group.
//! When n1's eth1 goes down, `inside` faults and `outside` follows it into fault,
//! so both VIPs move to n2 together; when eth1 comes back both return.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

/// Adds a second bridge to the lab and an `eth1` on it to each node, with
/// 192.168.77.N/24 (every node is its own namespace, so no clash between labs).
fn add_second_link(lab: &Lab) {
    lab.switch
        .ip_batch("link add br1 type bridge mcast_snooping 0 forward_delay 0\nlink set br1 up\n");
    for (i, node) in lab.nodes.iter().enumerate() {
        plug_veth(&lab.switch, "br1", &format!("q{}", i + 1), &node.ns, "eth1");
        node.ns.ip_batch(&format!(
            "addr add 192.168.77.{}/24 dev eth1\nlink set eth1 up\n",
            i + 1
        ));
    }
}

fn holds_on(host: &Host, dev: &str, vip: &str) -> bool {
    let addr = strip_prefix_len(vip);
    let out = host.ns.ip_output(&["-j", "addr", "show", "dev", dev]);
    String::from_utf8_lossy(&out.stdout).contains(&format!("\"local\":\"{addr}\""))
}

fn holders(lab: &Lab, dev: &str, vip: &str) -> Vec<usize> {
    (1..=lab.nodes.len())
        .filter(|&i| holds_on(lab.node(i), dev, vip))
        .collect()
}

fn spec(name: &str, priority: u8, interface: &str, group: u8, vip: &str) -> InstanceSpec {
    let mut s = InstanceSpec::new(priority).vip(vip);
    s.name = name.into();
    s.interface = interface.into();
    s.group = group;
    s
}

fn node(name: &str, priority: u8, outside_vip: &str, inside_vip: &str, synced: bool) -> NodeSpec {
    let mut n = NodeSpec::new(name, spec("outside", priority, "eth0", 51, outside_vip));
    n.instances
        .push(spec("inside", priority, "eth1", 52, inside_vip));
    if synced {
        n.extra = vec![
            "[[sync_group]]".into(),
            "name = \"router\"".into(),
            "instances = [\"outside\", \"inside\"]".into(),
        ];
    }
    n
}

/// Weights are shared too: a track file on `inside` alone lowers both members,
/// so with preempt both VIPs move to n2 and come back together.
#[test]
fn sync_group_members_share_weights_and_move_together() {
    if !require_root() {
        return;
    }
    let scratch = Scratch::new("syncw");
    let file = scratch.path("inside.weight");
    fs::write(&file, "0\n").expect("write weight file");
    let lab = Lab::new("syncw", 2);
    add_second_link(&lab);
    let outside = lab.vip4(0);
    let inside = "192.168.77.200/24".to_owned();
    let mut n1 = node("n1", 150, &outside, &inside, true);
    n1.instances[1].extra = vec![
        "[[instance.track_file]]".into(),
        format!("path = {file:?}"),
        "interval = \"100ms\"".into(),
    ];
    let d1 = Daemon::start(lab.node(1), n1);
    let _d2 = Daemon::start(lab.node(2), node("n2", 100, &outside, &inside, true));
    wait_until("n1 alone holds both VIPs", Duration::from_secs(20), || {
        holders(&lab, "eth0", &outside) == [1] && holders(&lab, "eth1", &inside) == [1]
    });
    // inside: 150 - 100 = 50 < 100; outside takes the same -100 from the group.
    fs::write(&file, "-100\n").expect("write weight file");
    let took = wait_until("n2 alone holds both VIPs", Duration::from_secs(5), || {
        holders(&lab, "eth0", &outside) == [2] && holders(&lab, "eth1", &inside) == [2]
    });
    eprintln!(
        "[syncw] wrote -100 on inside: both VIPs on n2 after {} ms",
        ms(took)
    );
    // `outside` has no check of its own: its priority carries inside's weight.
    let status = d1.status_json().expect("status --json");
    let outside_status = &status["instances"][0];
    assert_eq!(outside_status["effective_priority"], 50, "{status:#}");
    assert!(
        outside_status["priority_reasons"]
            .to_string()
            .contains("sync group router: member inside weighs -100"),
        "{status:#}"
    );
    fs::write(&file, "0\n").expect("write weight file");
    let took = wait_until(
        "n1 alone holds both VIPs again",
        Duration::from_secs(5),
        || holders(&lab, "eth0", &outside) == [1] && holders(&lab, "eth1", &inside) == [1],
    );
    eprintln!(
        "[syncw] wrote 0: both VIPs back on n1 after {} ms",
        ms(took)
    );
}

fn run(tag: &str, synced: bool) {
    let lab = Lab::new(tag, 2);
    add_second_link(&lab);
    let outside = lab.vip4(0);
    let inside = "192.168.77.200/24".to_owned();
    let d1 = Daemon::start(lab.node(1), node("n1", 150, &outside, &inside, synced));
    let _d2 = Daemon::start(lab.node(2), node("n2", 100, &outside, &inside, synced));
    let took = wait_until("n1 alone holds both VIPs", Duration::from_secs(20), || {
        holders(&lab, "eth0", &outside) == [1] && holders(&lab, "eth1", &inside) == [1]
    });
    eprintln!("[{tag}] n1 holds both VIPs after {} ms", ms(took));

    lab.node(1).ns.ip(&["link", "set", "eth1", "down"]);
    if synced {
        let took = wait_until("n2 alone holds both VIPs", Duration::from_secs(3), || {
            holders(&lab, "eth0", &outside) == [2] && holders(&lab, "eth1", &inside) == [2]
        });
        eprintln!(
            "[{tag}] n1's eth1 down: both VIPs on n2 after {} ms (sync group)",
            ms(took)
        );
        let log = d1.log();
        assert!(
            log.contains("sync group router: member inside is in fault (interface eth1 is down)"),
            "{log}"
        );
        hold_for("both VIPs stay on n2", Duration::from_secs(1), || {
            holders(&lab, "eth0", &outside) == [2] && holders(&lab, "eth1", &inside) == [2]
        });
        lab.node(1).ns.ip(&["link", "set", "eth1", "up"]);
        let took = wait_until(
            "n1 alone holds both VIPs again",
            Duration::from_secs(5),
            || holders(&lab, "eth0", &outside) == [1] && holders(&lab, "eth1", &inside) == [1],
        );
        eprintln!(
            "[{tag}] n1's eth1 up: both VIPs back on n1 after {} ms",
            ms(took)
        );
    } else {
        let took = wait_until("n2 holds the inside VIP", Duration::from_secs(3), || {
            holders(&lab, "eth1", &inside) == [2]
        });
        eprintln!(
            "[{tag}] n1's eth1 down: inside VIP on n2 after {} ms",
            ms(took)
        );
        hold_for(
            "without a sync group the outside VIP stays on n1 (split)",
            Duration::from_secs(1),
            || holders(&lab, "eth0", &outside) == [1],
        );
    }
}

#[test]
fn sync_group_members_move_together_when_one_interface_goes_down() {
    if !require_root() {
        return;
    }
    run("sync", true);
}

#[test]
fn without_a_sync_group_instances_move_alone() {
    if !require_root() {
        return;
    }
    run("nosync", false);
}
