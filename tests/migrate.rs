//! Switching a pair from keepalived to vipd as README "Migrating from keepalived"
//! says (needs root): a keepalived pair holds the VIP; each node's keepalived.conf
//! is converted with `vipd import-keepalived`; keepalived stops on the backup,
//! then on the master `keepalived stop && vipd start`, then vipd starts on the
//! former backup. A client sends an ARP request for the VIP every millisecond
//! throughout; the test logs how long the VIP was unanswered and requires that the master ends as the only
//! holder, under vipd, with no moment of two holders.

mod common;

use std::fs;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A keepalived.conf as a VRRPv3 pair with 100 ms adverts would have it.
fn keepalived_conf(router_id: &str, priority: u8, vip: &str) -> String {
    format!(
        "global_defs {{\n    router_id {router_id}\n    vrrp_version 3\n}}\n\n\
         vrrp_instance db {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    \
         priority {priority}\n    advert_int 0.1\n    virtual_ipaddress {{\n        {vip} dev eth0\n    }}\n}}\n"
    )
}

/// `vipd import-keepalived` on `path`: the TOML, given the conversion was complete.
fn convert(path: &std::path::Path) -> String {
    import(path, &[])
}

/// `vipd import-keepalived ARGS` on `path`: the TOML, given the conversion
/// was complete (exit 0).
fn import(path: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(vipd_bin())
        .arg("import-keepalived")
        .args(args)
        .arg(path)
        .output()
        .expect("run vipd import-keepalived");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the conversion left something out:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 TOML")
}

/// Stops `keepalived` on the node and starts vipd there with `toml` (plus this
/// lab's socket and state paths), as quickly as a shell `&&` would.
fn switch_node(lab: &Lab, node: usize, keepalived: &mut Daemon, toml: &str, kill: bool) -> Daemon {
    if kill {
        // SIGKILL: keepalived has no chance to remove its VIPs; they stay until
        // vipd claims them (a claim replaces an existing address).
        keepalived.crash();
    } else if keepalived.is_running() {
        keepalived.sigterm();
    }
    let name = format!("n{node}");
    let mut vipd = Daemon::configure(
        lab.node(node),
        NodeSpec::new(&name, InstanceSpec::new(100).vip("192.0.2.1/32")),
    );
    let paths = format!(
        "[node]\ncontrol_socket = {:?}\nstate_dir = {:?}\n",
        vipd.dir.join("vipd.sock"),
        vipd.dir.join("state")
    );
    let text = toml.replacen("[node]\n", &paths, 1);
    fs::write(&vipd.config, &text).expect("write the converted configuration");
    vipd.restart();
    vipd
}

/// Step 2 as README gives it: `systemctl stop keepalived && systemctl start vipd`.
#[test]
fn a_keepalived_pair_switches_to_vipd_keeping_the_vip_on_the_master() {
    switch_pair(false);
}

/// Step 2 with keepalived SIGKILLed instead (`systemctl kill -s KILL keepalived`),
/// leaving its VIP in place for vipd to take over.
#[test]
fn killing_keepalived_leaves_the_vip_for_vipd_to_take_over() {
    switch_pair(true);
}

fn switch_pair(kill: bool) {
    if !require_root() {
        return;
    }
    let lab = Lab::new(if kill { "migratekill" } else { "migrate" }, 2);
    let vip = lab.vip4(0);
    let mut keepalived: Vec<Daemon> = [(1, 150), (2, 100)]
        .into_iter()
        .map(|(node, priority)| {
            let name = format!("n{node}");
            let mut daemon = Daemon::configure_keepalived(
                lab.node(node),
                &name,
                &keepalived_conf(&name, priority, &vip),
            );
            daemon.restart();
            daemon
        })
        .collect();
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    let converted: Vec<String> = keepalived.iter().map(|k| convert(&k.config)).collect();
    assert!(
        converted[0].contains("advert_interval = \"100ms\""),
        "{}",
        converted[0]
    );

    // Watch the holders every millisecond or so for a moment with two.
    let stop = Arc::new(AtomicBool::new(false));
    let both = Arc::new(Mutex::new(Vec::new()));
    // How long, in all, no node held the VIP (as seen every ~1 ms).
    let unheld = Arc::new(Mutex::new(Duration::ZERO));
    let watcher = {
        let (stop, both, unheld) = (stop.clone(), both.clone(), unheld.clone());
        let namespaces: Vec<String> = lab.nodes.iter().map(|h| h.ns.name.clone()).collect();
        let needle = format!("inet {vip} ");
        thread::spawn(move || {
            let started = Instant::now();
            let mut last_check = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let holders = namespaces
                    .iter()
                    .filter(|ns| {
                        Command::new("ip")
                            .args(["-n", ns, "addr", "show", "dev", "eth0"])
                            .output()
                            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(&needle))
                    })
                    .count();
                if holders > 1 {
                    both.lock().expect("lock").push(started.elapsed());
                }
                if holders == 0 {
                    *unheld.lock().expect("lock") += last_check.elapsed();
                }
                last_check = Instant::now();
                thread::sleep(Duration::from_millis(1));
            }
        })
    };

    let vip4: Ipv4Addr = strip_prefix_len(&vip).parse().expect("an IPv4 VIP");
    let prober = ArpProber::start(&lab.client, vip4).expect("start the ARP prober");
    prober
        .wait_stable(
            lab.node(1).mac_bytes(),
            Duration::from_millis(500),
            Duration::from_secs(10),
        )
        .expect("n1 alone answers ARP for the VIP");

    // 1. keepalived off on the backup; the master keeps the VIP.
    keepalived[1].sigterm();
    hold_for("n1 alone holds the VIP", Duration::from_secs(1), || {
        lab.holders(&vip) == [1]
    });

    // 2. on the master: keepalived stop && vipd start.
    let before = Instant::now();
    let mut vipd1 = switch_node(&lab, 1, &mut keepalived[0], &converted[0], kill);
    let held_again = wait_until("vipd on n1 holds the VIP", Duration::from_secs(20), || {
        lab.holders(&vip) == [1]
            && vipd1
                .status_json()
                .is_some_and(|s| s["instances"][0]["state"] == "master")
    });
    println!(
        "{}switch on the master: vipd was master {} ms after keepalived's stop began \
         (stop, configure, start: {} ms; then waiting for the claim: {} ms)",
        if kill { "SIGKILL " } else { "" },
        ms(before.elapsed()),
        ms(before.elapsed() - held_again),
        ms(held_again)
    );

    // 3. vipd on the former backup joins as backup.
    let mut vipd2 = switch_node(&lab, 2, &mut keepalived[1], &converted[1], false);
    wait_until(
        "vipd on n2 runs and answers status",
        Duration::from_secs(20),
        || vipd2.status_json().is_some(),
    );
    hold_for(
        "n1 alone holds the VIP with vipd on both",
        Duration::from_secs(3),
        || lab.holders(&vip) == [1],
    );

    let window = prober.snapshot().window(before, Instant::now());
    stop.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher thread");
    println!(
        "client (an ARP request for the VIP every millisecond): {} probes unanswered, \
         longest time without an answer {:.0} ms, {} probes answered by two MACs",
        window.lost, window.longest_gap_ms, window.answered_by_two
    );
    println!(
        "no node held the VIP for about {} ms in all",
        ms(*unheld.lock().expect("lock"))
    );
    let both = both.lock().expect("lock");
    assert!(both.is_empty(), "two holders at {both:?}");
    assert_eq!(window.answered_by_two, 0, "two nodes answered for the VIP");
    assert!(vipd1.is_running() && vipd2.is_running());
}

/// keepalived's default form: VRRPv2 over IPv4, 1 s adverts, a PASS password.
fn keepalived_v2_conf(router_id: &str, priority: u8, vip: &str) -> String {
    format!(
        "global_defs {{\n    router_id {router_id}\n}}\n\n\
         vrrp_instance db {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    \
         priority {priority}\n    advert_int 1\n    authentication {{\n        auth_type PASS\n        \
         auth_pass s3cret\n    }}\n    virtual_ipaddress {{\n        {vip} dev eth0\n    }}\n}}\n"
    )
}

/// The node after the migration: vipd's own protocol, signed adverts.
fn vipd_protocol_spec(name: &str, priority: u8, vip: &str) -> NodeSpec {
    NodeSpec::new(name, InstanceSpec::new(priority).vip(vip).advert("1s"))
}

/// Runs `vipd ARGS` against `daemon` and requires success.
fn vipd_ok(daemon: &Daemon, args: &[&str]) {
    let out = daemon.cli(args);
    assert!(
        out.status.success(),
        "vipd {}: {}",
        args.join(" "),
        output_text(&out)
    );
}

/// The README's node-by-node migration of a running keepalived pair (VRRPv2,
/// PASS) with a client sending an ARP request for the VIP every millisecond
/// throughout: (1) the backup's keepalived is replaced by vipd speaking VRRP;
/// (2) that vipd is promoted, which moves the VIP to it make-before-break,
/// the master's keepalived (now a backup) is replaced by vipd, and a drain
/// and undrain of the promoted node hand the VIP back to the preferred
/// node; (3) both switch to vipd's authenticated protocol, the backup
/// drained while it does, the master by a reload that keeps its VIPs.
#[test]
fn a_keepalived_pair_migrates_node_by_node_losing_nothing() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("migratenbn", 2);
    let vip = lab.vip4(0);
    let mut keepalived: Vec<Daemon> = [(1, 150), (2, 100)]
        .into_iter()
        .map(|(node, priority)| {
            let name = format!("n{node}");
            let mut daemon = Daemon::configure_keepalived(
                lab.node(node),
                &name,
                &keepalived_v2_conf(&name, priority, &vip),
            );
            daemon.restart();
            daemon
        })
        .collect();
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    // What each node will run: the importer's configuration joining the
    // cluster as it is.
    let joined: Vec<String> = keepalived
        .iter()
        .map(|k| import(&k.config, &["--join"]))
        .collect();
    assert!(
        joined[1].contains("protocol = \"vrrp2\"") && joined[1].contains("vrrp_auth_pass"),
        "{}",
        joined[1]
    );
    let vip4: Ipv4Addr = strip_prefix_len(&vip).parse().expect("an IPv4 VIP");
    let prober = ArpProber::start(&lab.client, vip4).expect("start the ARP prober");
    prober
        .wait_stable(
            lab.node(1).mac_bytes(),
            Duration::from_millis(500),
            Duration::from_secs(10),
        )
        .expect("n1 alone answers ARP for the VIP");
    let began = Instant::now();
    let state = |d: &Daemon| {
        d.status_json()
            .and_then(|s| s["instances"][0]["state"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let step = |what: &str, from: Instant| {
        let w = prober.snapshot().window(from, Instant::now());
        println!(
            "[migratenbn] {what}: {} probes lost, longest gap {:.1} ms, {} answered by two MACs",
            w.lost, w.longest_gap_ms, w.answered_by_two
        );
    };

    // 1. The backup: keepalived off, vipd (VRRP) on; it follows n1.
    let t = Instant::now();
    let mut vipd2 = switch_node(&lab, 2, &mut keepalived[1], &joined[1], false);
    wait_until("vipd on n2 is backup", Duration::from_secs(10), || {
        state(&vipd2) == "backup"
    });
    hold_for(
        "keepalived on n1 keeps the VIP",
        Duration::from_secs(4),
        || lab.holders(&vip) == [1] && state(&vipd2) == "backup",
    );
    step("1. backup's keepalived replaced by vipd (VRRPv2)", t);

    // 2. The master: promote n2 (make-before-break), replace keepalived on
    // n1, then hand the VIP back with a drain and undrain of n2.
    let t = Instant::now();
    vipd_ok(&vipd2, &["promote"]);
    wait_sole_holder(&lab, &vip, 2, Duration::from_secs(10));
    let mut vipd1 = switch_node(&lab, 1, &mut keepalived[0], &joined[0], false);
    wait_until("vipd on n1 is backup", Duration::from_secs(10), || {
        state(&vipd1) == "backup"
    });
    vipd_ok(&vipd2, &["drain", "--wait"]);
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(10));
    vipd_ok(&vipd2, &["undrain"]);
    hold_for(
        "n1 keeps the VIP, n2 backup",
        Duration::from_secs(4),
        || lab.holders(&vip) == [1] && state(&vipd2) == "backup",
    );
    step(
        "2. master's keepalived replaced (promote, swap, drain, undrain)",
        t,
    );

    // 3. VRRP to vipd's protocol: the backup drained while it switches, the
    // master by a reload that keeps the VIPs, then the backup undrained.
    let t = Instant::now();
    vipd_ok(&vipd2, &["drain"]);
    vipd2.rewrite_config(&vipd_protocol_spec("n2", 100, &vip));
    vipd_ok(&vipd2, &["reload"]);
    vipd1.rewrite_config(&vipd_protocol_spec("n1", 150, &vip));
    vipd_ok(&vipd1, &["reload"]);
    wait_until(
        "n2 hears n1 on vipd's protocol",
        Duration::from_secs(10),
        || {
            vipd2
                .status_json()
                .is_some_and(|s| s["instances"][0]["master"]["name"] == "n1")
        },
    );
    vipd_ok(&vipd2, &["undrain"]);
    hold_for(
        "n1 keeps the VIP on vipd's protocol",
        Duration::from_secs(4),
        || lab.holders(&vip) == [1] && state(&vipd2) == "backup" && state(&vipd1) == "master",
    );
    step("3. both switched from VRRP to vipd's protocol", t);

    let all = prober.snapshot().window(began, Instant::now());
    println!(
        "[migratenbn] whole migration: {} probes lost, longest gap {:.1} ms, {} answered by two MACs",
        all.lost, all.longest_gap_ms, all.answered_by_two
    );
    assert!(
        all.lost <= 5,
        "{} probes lost (target: at most 5)",
        all.lost
    );
    let log = vipd1.log() + &vipd2.log();
    assert!(
        !log.contains("another master heard"),
        "an unplanned overlap during the migration:\n{log}"
    );
    assert!(vipd1.is_running() && vipd2.is_running());
    drop(keepalived);
}
