//! Nodes that disagree on who they are or what they serve, with real daemons in
//! network namespaces: two nodes given one node name (the later starter stands
//! aside in fault, the earlier keeps the VIP, a third node follows the earlier
//! one, and the other takes over once the earlier stops), and a peer that
//! advertises another VIP set (config drift, per peer in `vipd status` and in its
//! exit code).
//!
//! Measured times are printed with `eprintln!` (run with `--nocapture`);
//! deadlines are generous.

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;

fn text(out: &Output) -> String {
    output_text(out)
}

/// `vipd status --json` whatever its exit code: (exit code, first instance).
fn status(daemon: &Daemon) -> (Option<i32>, serde_json::Value) {
    let out = daemon.cli(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: status --json printed no JSON ({e}): {}",
            daemon.label,
            text(&out)
        )
    });
    (out.status.code(), json["instances"][0].clone())
}

/// The node's own IPv4 address on `eth0` (not the VIP).
fn own_v4(host: &Host, vip: &str) -> String {
    host.addresses()
        .into_iter()
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok() && a != strip_prefix_len(vip))
        .expect("eth0 has an IPv4 address")
}

/// [`status`], or `None` while the daemon does not answer yet (just started).
fn try_status(daemon: &Daemon) -> Option<(Option<i32>, serde_json::Value)> {
    let out = daemon.cli(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((out.status.code(), json["instances"][0].clone()))
}

fn field(instance: &serde_json::Value, key: &str) -> String {
    instance[key].as_str().unwrap_or_default().to_owned()
}

#[test]
fn two_nodes_with_one_name_never_both_master_and_never_none() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("twin", 3);
    let vip = lab.vip4(0);
    let twin = || InstanceSpec::new(100).vip(&vip);
    let mut earlier = Daemon::start(lab.node(1), NodeSpec::new("twin", twin()));
    // A third node, lower priority, with a name of its own.
    let third = Daemon::start(
        lab.node(3),
        NodeSpec::new("n3", InstanceSpec::new(50).vip(&vip)),
    );
    let took = wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    eprintln!(
        "[twin] the first 'twin' (n1) holds {vip} after {} ms",
        ms(took)
    );

    let later = Daemon::start(lab.node(2), NodeSpec::new("twin", twin()));
    let n1_addr = own_v4(lab.node(1), &vip);
    let n2_addr = own_v4(lab.node(2), &vip);
    let seen = wait_until(
        "both twins show the conflict",
        Duration::from_secs(10),
        || {
            let (Some((code2, s2)), Some((code1, s1))) = (try_status(&later), try_status(&earlier))
            else {
                return false;
            };
            code2 == Some(2)
                && field(&s2, "state") == "fault"
                && field(&s2, "fault").contains(&format!(
                    "node name twin is also used by {n1_addr} (started earlier)"
                ))
                && code1 == Some(4)
                && field(&s1, "state") == "master"
                && field(&s1, "name_conflict").contains(&format!(
                    "node name twin is also used by {n2_addr} (started later; it stands aside)"
                ))
        },
    );
    eprintln!(
        "[twin] both show the conflict {} ms after the second start",
        ms(seen)
    );
    let human = text(&earlier.cli(&["status"]));
    assert!(
        human.contains("NAME CONFLICT: node name twin is also used by"),
        "{human}"
    );
    let human = text(&later.cli(&["status"]));
    assert!(
        human.contains("FAULT: node name twin is also used by"),
        "{human}"
    );

    // Exactly one master, the earlier starter; the third node follows it.
    hold_for("n1 alone holds the VIP", Duration::from_secs(3), || {
        lab.holders(&vip) == [1]
    });
    // The third node may have claimed for a moment, between the second twin's
    // first advert and the holder's raised boot id (see the rule's docs).
    let claims = third
        .log()
        .lines()
        .filter(|l| l.contains("state change") && l.contains("state=master"))
        .count();
    eprintln!("[twin] the third node claimed {claims} time(s) meanwhile");
    let (code3, s3) = status(&third);
    assert_eq!(field(&s3, "state"), "backup", "{s3:#}");
    assert_eq!(s3["master"]["address"], n1_addr.as_str(), "{s3:#}");
    assert_eq!(
        code3,
        Some(0),
        "the third node sees a healthy group: {s3:#}"
    );
    for (daemon, words) in [
        (&earlier, "started later: it stands aside"),
        (&later, "started earlier: standing aside"),
    ] {
        let log = daemon.log();
        assert_eq!(log.matches(words).count(), 1, "logged once: {log}");
    }

    // The earlier one stops: the other takes over once it stops hearing it,
    // and the third node (lower priority) stays backup.
    earlier.sigterm();
    let took = wait_sole_holder(&lab, &vip, 2, Duration::from_secs(20));
    eprintln!(
        "[twin] n1 stopped: the other 'twin' (n2) holds {vip} after {} ms",
        ms(took)
    );
    let (code2, s2) = status(&later);
    assert_eq!(field(&s2, "state"), "master", "{s2:#}");
    assert!(
        s2["fault"].is_null() && s2["name_conflict"].is_null(),
        "{s2:#}"
    );
    assert_eq!(code2, Some(0), "{s2:#}");
    wait_until("the third node follows n2", Duration::from_secs(10), || {
        let (_, s3) = status(&third);
        field(&s3, "state") == "backup" && s3["master"]["address"] == n2_addr.as_str()
    });
    hold_for("n2 alone holds the VIP", Duration::from_secs(2), || {
        lab.holders(&vip) == [2]
    });
}

#[test]
fn a_peer_with_another_vip_set_shows_as_config_drift() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("drift", 2);
    let vip = lab.vip4(0);
    let other = lab.vip4(1);
    let daemons = start_nodes(
        &lab,
        vec![
            InstanceSpec::new(150).vip(&vip),
            InstanceSpec::new(100).vip(&vip).vip(&other),
        ],
    );
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    wait_until("both see the drift", Duration::from_secs(10), || {
        daemons.iter().all(|d| {
            let Some((code, s)) = try_status(d) else {
                return false;
            };
            code == Some(5)
                && s["peers"][0]["alive"] == true
                && s["peers"][0]["vip_set_differs"] == true
        })
    });
    let human = text(&daemons[0].cli(&["status"]));
    assert!(
        human.contains("CONFIG DRIFT: another VIP set than ours advertised by n2"),
        "{human}"
    );
    for d in &daemons {
        let log = d.log();
        assert_eq!(
            log.matches("peer advertises a different VIP set").count(),
            1,
            "logged once: {log}"
        );
    }
}
