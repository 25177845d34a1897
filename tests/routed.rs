//! Routed mode (issue 16) with a real FRR: two vipd nodes in subnets of their
//! own, each announcing the VIP over eBGP to a router (FRR's `ip import-table`
//! with `redistribute table`), and a client behind the router pinging the VIP
//! every few milliseconds. Each case reports what it measured; none asserts a
//! speed (a busy CI machine would flake), only that traffic moves to the node
//! that should have it and that the router's table follows, and, where vipd
//! orders a move make-before-break (drain, fail-back), that the client loses
//! at most a probe or two: a bound on the order of events, with every wait in
//! it generous.
//!
//! Heartbeats cross the router: unicast peers, HMAC auth and `max_hops = 2`.
//!
//! Skipped unless root and FRR (Debian's `frr` package, installed by
//! tests/run.sh) are there.

mod common;

use std::process::Command;
use std::time::Duration;

use common::routed::{
    frr_installed, probe_around, probe_move, report, report_move, start, RoutedLab,
    FAILBACK_PROBE_EVERY, PROBE_EVERY, ROUTE_TABLE,
};
use common::{
    output_text, require_root, strip_prefix_len, vipd_bin, wait_until, Daemon, InstanceSpec, Lab,
    NodeSpec,
};

fn ready() -> bool {
    if !require_root() {
        return false;
    }
    if !frr_installed() {
        assert!(
            std::env::var_os("CI").is_none(),
            "FRR is not installed and CI is set: tests/run.sh installs the frr package"
        );
        eprintln!(
            "skipping: FRR (/usr/lib/frr/zebra, bgpd, bfdd and the frr user) is not installed"
        );
        return false;
    }
    true
}

/// The master's link goes down (carrier lost on both ends): the router's
/// session with n1 drops at once (FRR's fast external failover) and n2 takes
/// over when n1's adverts stop.
#[test]
fn master_link_down_moves_the_vip_to_the_other_node() {
    if !ready() {
        return;
    }
    let lab = RoutedLab::new("rtlink", false);
    let _daemons = start(&lab);
    let (result, moved) =
        probe_around(&lab, Duration::from_secs(1), Duration::from_secs(6), || {
            lab.node(1).ns.ip(&["link", "set", "eth0", "down"]);
        });
    report("link down (carrier lost), BGP timers 1/3", &result, moved);
    assert!(result.received > 0, "{}", result.summary);
    assert!(
        lab.client.ping(lab.vip_addr()),
        "the client no longer reaches the VIP"
    );
}

/// The master goes silent with its link up (a failed path, not a lost
/// carrier): the router keeps n1's path until the BGP hold timer (3 s) or BFD
/// (300 ms) says it is gone.
fn silent_master(tag: &str, bfd: bool) {
    if !ready() {
        return;
    }
    let lab = RoutedLab::new(tag, bfd);
    let _daemons = start(&lab);
    let (result, moved) = probe_around(
        &lab,
        Duration::from_secs(1),
        Duration::from_secs(8),
        || {
            lab.node(1).ns.nft(
            "table inet vipd_test_cut {\n\tchain i {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tiifname \"eth0\" drop\n\t}\n\tchain o {\n\t\ttype filter hook output priority 0; policy accept;\n\t\toifname \"eth0\" drop\n\t}\n}\n",
        );
        },
    );
    let how = if bfd {
        "silent master, BFD 100ms x3"
    } else {
        "silent master, BGP timers 1/3"
    };
    report(how, &result, moved);
    assert!(
        lab.client.ping(lab.vip_addr()),
        "the client no longer reaches the VIP"
    );
}

#[test]
fn silent_master_fails_over_after_the_bgp_hold_time() {
    silent_master("rtsilent", false);
}

#[test]
fn silent_master_fails_over_after_bfd_detection() {
    silent_master("rtbfd", true);
}

/// `vipd drain` on the master: n2 announces first, n1 withdraws, waits
/// `withdraw_delay` while still accepting, then stops accepting: at most one
/// probe is lost.
#[test]
fn drain_loses_at_most_one_probe() {
    if !ready() {
        return;
    }
    let lab = RoutedLab::new("rtdrain", false);
    let daemons = start(&lab);
    let (result, moved) =
        probe_around(&lab, Duration::from_secs(1), Duration::from_secs(5), || {
            let out = daemons[0].cli(&["drain"]);
            assert!(out.status.success(), "vipd drain: {}", output_text(&out));
        });
    report("drain", &result, moved);
    assert!(
        result.lost.len() <= 1,
        "drain lost {} probes: {}",
        result.lost.len(),
        result.describe_lost(PROBE_EVERY)
    );
}

/// What the unit does when the daemon dies: the SIGKILL, then
/// `ExecStopPost`'s `vipd cleanup` at once. The routes are still there
/// between the two (nothing else removes them).
fn kill_then_clean_up(lab: &RoutedLab, daemon: &mut Daemon) {
    daemon.kill9();
    let leftover = lab
        .node(1)
        .ns
        .ip(&["route", "show", "table", "all", "proto", "118"]);
    assert!(
        leftover.contains(lab.vip_addr()),
        "n1's routes are gone before the clean-up:\n{leftover}"
    );
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.node(1).ns.name,
            vipd_bin(),
            "cleanup",
            "--config",
        ])
        .arg(&daemon.config)
        .output()
        .expect("run vipd cleanup");
    eprintln!("[routed] vipd cleanup: {}", output_text(&out));
    assert!(out.status.success(), "vipd cleanup: {}", output_text(&out));
    let left = lab
        .node(1)
        .ns
        .ip(&["route", "show", "table", "all", "proto", "118"]);
    assert!(left.trim().is_empty(), "vipd cleanup left routes:\n{left}");
}

/// The master's daemon is SIGKILLed with the host up and the clean-up runs at
/// once, as the unit runs it: n1 withdraws before n2 has taken over (its
/// master-down interval), so the client loses about that long.
#[test]
fn sigkill_then_cleanup_as_the_unit_runs_it() {
    if !ready() {
        return;
    }
    let lab = RoutedLab::new("rtkill", false);
    let mut daemons = start(&lab);
    let (result, moved) =
        probe_around(&lab, Duration::from_secs(1), Duration::from_secs(4), || {
            kill_then_clean_up(&lab, &mut daemons[0]);
        });
    report(
        "SIGKILL + vipd cleanup at once (the unit's ExecStopPost)",
        &result,
        moved,
    );
    assert!(result.received > 0, "{}", result.summary);
    assert!(
        lab.client.ping(lab.vip_addr()),
        "the client no longer reaches the VIP"
    );
}

/// The fail-back bound: at most this many probes lost (at
/// [`FAILBACK_PROBE_EVERY`]) when n1 takes the VIP back.
const FAILBACK_MAX_LOST: usize = 2;

/// Probes around n1 coming back (`back` brings it back) until the router sends
/// the VIP to n1 again, logs what the client saw and when the router's BGP
/// session with n1 was up, and checks the bound.
fn fail_back(lab: &RoutedLab, case: &str, back: impl FnOnce()) {
    let n1 = lab.node(1).v4.clone();
    let (result, moved) = probe_move(
        lab,
        FAILBACK_PROBE_EVERY,
        Duration::from_millis(500),
        Duration::from_secs(14),
        1,
        || {
            back();
            let up = wait_until(
                "the router's BGP session with n1 Established",
                Duration::from_secs(30),
                || lab.router_frr().established(&n1),
            );
            eprintln!(
                "[routed] {case}: the router's BGP session with n1 Established {} ms after n1 came back",
                up.as_millis()
            );
        },
    );
    report_move(case, &result, moved, 1, FAILBACK_PROBE_EVERY);
    assert!(
        result.lost.len() <= FAILBACK_MAX_LOST,
        "{case}: {} probes lost: {}",
        result.lost.len(),
        result.describe_lost(FAILBACK_PROBE_EVERY)
    );
}

/// n1's uplink loses carrier (the router's port goes down) and n2 takes over;
/// when the carrier returns, n1 outranks n2 at once but preempts only after
/// `route.ready_after` (default 10 s), by when its BGP session is up: the
/// client loses at most [`FAILBACK_MAX_LOST`] probes.
#[test]
fn uplink_back_fails_back_once_the_route_can_be_announced() {
    if !ready() {
        return;
    }
    let lab = RoutedLab::new("rtback", false);
    let daemons = start(&lab);
    lab.router.ip(&["link", "set", "r1", "down"]);
    let took = wait_until(
        "the router routes the VIP to n2",
        Duration::from_secs(30),
        || lab.routed_to() == Some(2),
    );
    eprintln!(
        "[routed] uplink down: router moved to n2 after {} ms",
        took.as_millis()
    );
    fail_back(&lab, "uplink back (carrier returns)", || {
        lab.router.ip(&["link", "set", "r1", "up"]);
    });
    let log = daemons[0].log();
    assert!(
        log.contains("does not preempt yet"),
        "n1's log does not say that the preemption waits:\n{}",
        daemons[0].log_tail(30)
    );
}

/// n1 reboots: its daemon dies as the unit sees it (SIGKILL, then
/// `vipd cleanup`), the host goes down (FRR too, the link loses carrier) and
/// boots again: link, FRR and vipd come up together. n1 preempts only after
/// `route.ready_after` from its start: at most [`FAILBACK_MAX_LOST`] probes.
#[test]
fn node_reboot_fails_back_once_the_route_can_be_announced() {
    if !ready() {
        return;
    }
    let lab = RoutedLab::new("rtboot", false);
    let mut daemons = start(&lab);
    kill_then_clean_up(&lab, &mut daemons[0]);
    wait_until(
        "the router routes the VIP to n2",
        Duration::from_secs(30),
        || lab.routed_to() == Some(2),
    );
    fail_back(&lab, "node reboot (host, FRR and vipd)", || {
        lab.frr[0].kill_everything_and_boot(|| {
            lab.router.ip(&["link", "set", "r1", "down"]);
            std::thread::sleep(Duration::from_millis(500));
            lab.router.ip(&["link", "set", "r1", "up"]);
        });
        daemons[0].restart();
    });
}

/// The start-up sweep removes the routes a killed daemon left as every release
/// does: the announced route first, then `withdraw_delay` while the host still
/// accepts, then the local route. Needs root, not FRR.
#[test]
fn startup_sweep_withdraws_then_waits_withdraw_delay() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("rtsweep", 1);
    let node = lab.node(1);
    let vip = lab.vip4(0);
    let addr = strip_prefix_len(&vip).to_owned();
    let host_route = format!("{addr}/32");
    // What a SIGKILLed master leaves behind.
    node.ns.ip_batch(&format!(
        "route add local {host_route} dev lo table local proto 118\nroute add {host_route} dev lo table {ROUTE_TABLE} proto 118 metric 100\n"
    ));
    let routes = || {
        let text = node
            .ns
            .ip(&["route", "show", "table", "all", "proto", "118"]);
        let local = text.lines().any(|l| l.starts_with("local "));
        let announced = text
            .lines()
            .any(|l| l.starts_with(&addr) && l.contains(&format!("table {ROUTE_TABLE}")));
        (announced, local)
    };
    assert_eq!(routes(), (true, true), "the stale routes are in place");
    let withdraw_delay = Duration::from_secs(1);
    let spec = InstanceSpec::new(100)
        .vip(host_route.clone())
        .extra("announce = \"route\"")
        .extra(&format!(
            "route = {{ withdraw_delay = \"{}ms\" }}",
            withdraw_delay.as_millis()
        ));
    let mut node_spec = NodeSpec::new("n1", spec);
    // Long enough not to claim (and re-add the routes) while we watch.
    node_spec.extra.push("startup_delay = \"10s\"".into());
    let _daemon = Daemon::start(node, node_spec);
    wait_until(
        "the start-up sweep withdraws the announced route",
        Duration::from_secs(10),
        || !routes().0,
    );
    let (_, still_accepting) = routes();
    let gone = wait_until(
        "the start-up sweep removes the local route",
        Duration::from_secs(10),
        || routes() == (false, false),
    );
    eprintln!(
        "[routed] start-up sweep: announced route withdrawn, local route removed {} ms later (withdraw_delay {} ms)",
        gone.as_millis(),
        withdraw_delay.as_millis()
    );
    assert!(
        still_accepting,
        "the local route went together with the announced one"
    );
    assert!(
        gone >= withdraw_delay - Duration::from_millis(100),
        "the local route went {} ms after the withdrawal, before withdraw_delay",
        gone.as_millis()
    );
}
