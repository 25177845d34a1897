//! Routed mode (issue 16) with a real FRR: two vipd nodes in subnets of their
//! own, each announcing the VIP over eBGP to a router (FRR's `ip import-table`
//! with `redistribute table`), and a client behind the router pinging the VIP
//! every few milliseconds. Each case reports what it measured; none asserts a
//! speed (a busy CI machine would flake), only that traffic moves to the node
//! that should have it and that the router's table follows.
//!
//! Heartbeats cross the router: unicast peers, HMAC auth and `max_hops = 2`.
//!
//! Skipped unless root and FRR (Debian's `frr` package, installed by
//! tests/run.sh) are there.

mod common;

use std::process::Command;
use std::time::Duration;

use common::routed::{
    frr_installed, probe_around, report, start, RoutedLab, PROBE_EVERY, ROUTE_TABLE,
};
use common::{output_text, require_root, vipd_bin, wait_until};

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

/// The master's daemon is SIGKILLed with the host up: its routes stay (FRR
/// keeps announcing them) until `vipd cleanup` — what the unit's ExecStopPost
/// runs — removes them; then the router moves to n2, which took over meanwhile.
#[test]
fn sigkill_then_cleanup_withdraws_the_route() {
    if !ready() {
        return;
    }
    let lab = RoutedLab::new("rtkill", false);
    let mut daemons = start(&lab);
    daemons[0].kill9();
    // n2 takes over and announces too; the router keeps the older path (n1's).
    let n2_claimed = wait_until("n2 announces the VIP", Duration::from_secs(10), || {
        // `ip` fails while the table does not exist yet.
        let out = lab
            .node(2)
            .ns
            .ip_output(&["route", "show", "table", &ROUTE_TABLE.to_string()]);
        String::from_utf8_lossy(&out.stdout).contains(lab.vip_addr())
    });
    eprintln!(
        "[routed] n2 announced {} ms after the SIGKILL",
        n2_claimed.as_millis()
    );
    assert_eq!(
        lab.routed_to(),
        Some(1),
        "the router left n1 before the clean-up"
    );
    let leftover = lab
        .node(1)
        .ns
        .ip(&["route", "show", "table", "all", "proto", "118"]);
    assert!(
        leftover.contains(lab.vip_addr()),
        "n1's routes are gone before the clean-up:\n{leftover}"
    );

    let (result, moved) = probe_around(
        &lab,
        Duration::from_millis(500),
        Duration::from_secs(4),
        || {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &lab.node(1).ns.name,
                    vipd_bin(),
                    "cleanup",
                    "--config",
                ])
                .arg(&daemons[0].config)
                .output()
                .expect("run vipd cleanup");
            eprintln!("[routed] vipd cleanup: {}", output_text(&out));
            assert!(out.status.success(), "vipd cleanup: {}", output_text(&out));
        },
    );
    report("SIGKILL + vipd cleanup", &result, moved);
    let left = lab
        .node(1)
        .ns
        .ip(&["route", "show", "table", "all", "proto", "118"]);
    assert!(left.trim().is_empty(), "vipd cleanup left routes:\n{left}");
    assert!(
        lab.client.ping(lab.vip_addr()),
        "the client no longer reaches the VIP"
    );
}
