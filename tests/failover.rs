//! Failover between real `vipd` processes in network namespaces: who holds the VIP,
//! and whether a client on the same link follows it by gratuitous ARP.
//!
//! Every test builds its own lab (a bridge, two nodes, a client) and runs two
//! daemons: `n1` at priority 150 and `n2` at 100. The client's neighbour entries
//! never expire on their own during a test, so when its entry for the VIP changes
//! to the new master's MAC without the client sending anything, the change came
//! from the new master's gratuitous ARP. Measured times are printed (run with
//! `--nocapture` to see them); the deadlines are generous on purpose.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Starts n1 (150) and n2 (100) with `interval` adverts and `preempt`, one IPv4 VIP,
/// and waits until n1 alone holds it and the client resolves it to n1's MAC.
fn two_nodes(tag: &str, interval: &str, preempt: Option<bool>) -> (Lab, String, Vec<Daemon>) {
    let lab = Lab::new(tag, 2);
    let vip = lab.vip4(0);
    let spec = |prio| {
        let s = InstanceSpec::new(prio).advert(interval).vip(&vip);
        match preempt {
            Some(p) => s.preempt(p),
            None => s,
        }
    };
    let daemons = start_nodes(&lab, vec![spec(150), spec(100)]);
    let took = wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    eprintln!(
        "[{tag}] initial election ({interval} adverts): n1 holds {vip} after {} ms",
        ms(took)
    );
    let n1_mac = lab.node(1).mac();
    wait_until(
        "the client resolves the VIP to n1's MAC",
        Duration::from_secs(5),
        || lab.client.ping(&vip) && lab.client.neigh_mac(&vip).as_deref() == Some(n1_mac.as_str()),
    );
    (lab, vip, daemons)
}

#[test]
fn master_holds_vip_and_client_sees_its_mac() {
    if !require_root() {
        return;
    }
    let (lab, vip, _daemons) = two_nodes("hold", "100ms", None);
    let n1_mac = lab.node(1).mac();
    assert_eq!(
        lab.client.mac_for(&vip),
        Some(n1_mac.clone()),
        "arping answer"
    );
    assert_eq!(
        lab.client.macs_answering(&vip, 3),
        vec![n1_mac.clone()],
        "only n1 answers ARP for the VIP"
    );
    let entry = lab.client.neigh_entry(&vip).expect("a neighbour entry");
    assert_eq!(entry.mac.as_deref(), Some(n1_mac.as_str()), "{entry:?}");
    // Nothing changes while nothing happens.
    hold_for("n1 alone holds the VIP", Duration::from_secs(1), || {
        lab.holders(&vip) == [1]
    });
}

#[test]
fn status_shows_master_and_backup() {
    if !require_root() {
        return;
    }
    let (_lab, _vip, daemons) = two_nodes("stat", "100ms", None);
    for (daemon, want) in daemons.iter().zip(["master", "backup"]) {
        let out = daemon.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "{}: vipd status --json failed ({}): {}{}",
            daemon.label,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: status --json is not JSON ({e}): {}",
                daemon.label,
                String::from_utf8_lossy(&out.stdout)
            )
        });
        let instance = &json["instances"][0];
        assert_eq!(instance["name"], "db", "{json:#}");
        assert_eq!(instance["state"], want, "{}: {json:#}", daemon.label);
        assert_eq!(
            instance["vips"][0]["held"],
            want == "master",
            "{}: {json:#}",
            daemon.label
        );
        let human = daemon.cli(&["status"]);
        assert!(
            human.status.success() && String::from_utf8_lossy(&human.stdout).contains(want),
            "{}: vipd status: {}{}",
            daemon.label,
            String::from_utf8_lossy(&human.stdout),
            String::from_utf8_lossy(&human.stderr)
        );
    }
}

/// kill -9 of the master: n2 takes the VIP and the client's entry follows its GARP.
fn kill9_failover(tag: &str, interval: &str, deadline: Duration) {
    let (lab, vip, mut daemons) = two_nodes(tag, interval, None);
    let n2_mac = lab.node(2).mac();
    let before = lab.client.neigh_entry(&vip);
    let start = Instant::now();
    daemons[0].kill9();
    let mut claimed = None;
    let mut followed = None;
    wait_until(
        "n2 holds the VIP and the client's entry shows n2's MAC",
        deadline,
        || {
            if claimed.is_none() && lab.node(2).holds(&vip) {
                claimed = Some(start.elapsed());
            }
            if followed.is_none() && lab.client.neigh_mac(&vip).as_deref() == Some(&n2_mac) {
                followed = Some(start.elapsed());
            }
            claimed.is_some() && followed.is_some()
        },
    );
    let after = lab.client.neigh_entry(&vip);
    eprintln!(
        "[{tag}] failover {interval} adverts (kill -9): n2 claimed the VIP after {} ms, client's neighbour entry on n2's MAC after {} ms ({before:?} -> {after:?})",
        ms(claimed.unwrap_or_default()),
        ms(followed.unwrap_or_default()),
    );
    // The client asked nothing: its entry moved by n2's GARP. n2 answers ARP for
    // the VIP now; so may n1's kernel, since nobody removed the address from a
    // SIGKILLed node (its restart cleans it: see the crash_restart tests).
    let macs = lab.client.macs_answering(&vip, 2);
    assert!(
        macs.contains(&n2_mac),
        "n2 answers ARP for the VIP: {macs:?}"
    );
    eprintln!(
        "[{tag}] ARP answers for the VIP after kill -9: {macs:?} (n1 still carries it: {})",
        lab.node(1).holds(&vip)
    );
}

#[test]
fn kill9_of_master_moves_vip_and_client_follows_garp() {
    if !require_root() {
        return;
    }
    kill9_failover("kill9", "100ms", Duration::from_secs(5));
}

#[test]
fn kill9_of_master_at_1s_adverts() {
    if !require_root() {
        return;
    }
    kill9_failover("kill9s", "1s", Duration::from_secs(20));
}

/// n1's link goes down: n2 takes the VIP, n1 lets go of it, and takes it back
/// when the link returns.
fn link_down(tag: &str, interval: &str, deadline: Duration) {
    let (lab, vip, _daemons) = two_nodes(tag, interval, None);
    let n2_mac = lab.node(2).mac();
    let start = Instant::now();
    lab.node(1).link(false);
    // n1 cannot reach anybody: it must not keep the VIP on a dead link either, or
    // it would answer for it the moment the link returns.
    let (mut claimed, mut followed, mut released) = (None, None, None);
    wait_until(
        "n2 holds the VIP, the client's entry shows n2's MAC and n1 let go of the VIP",
        deadline,
        || {
            let t = start.elapsed();
            if claimed.is_none() && lab.node(2).holds(&vip) {
                claimed = Some(t);
            }
            if followed.is_none() && lab.client.neigh_mac(&vip).as_deref() == Some(&n2_mac) {
                followed = Some(t);
            }
            if released.is_none() && !lab.node(1).holds(&vip) {
                released = Some(t);
            }
            claimed.is_some() && followed.is_some() && released.is_some()
        },
    );
    eprintln!(
        "[{tag}] n1 eth0 down ({interval} adverts): n1 released the VIP after {} ms, n2 claimed it after {} ms, client on n2's MAC after {} ms",
        ms(released.unwrap_or_default()),
        ms(claimed.unwrap_or_default()),
        ms(followed.unwrap_or_default()),
    );
    // The link returns: n1 (better, preempt on by default) takes the VIP back and
    // the client follows.
    let n1_mac = lab.node(1).mac();
    lab.node(1).link(true);
    let back = wait_until(
        "n1 alone holds the VIP again and the client's entry shows n1's MAC",
        deadline * 2,
        || lab.holders(&vip) == [1] && lab.client.neigh_mac(&vip).as_deref() == Some(&n1_mac),
    );
    eprintln!(
        "[{tag}] n1 eth0 up -> n1 master again after {} ms",
        ms(back)
    );
}

#[test]
fn master_link_down_moves_vip() {
    if !require_root() {
        return;
    }
    link_down("linkdn", "100ms", Duration::from_secs(5));
}

#[test]
fn master_link_down_at_1s_adverts() {
    if !require_root() {
        return;
    }
    link_down("linkdns", "1s", Duration::from_secs(20));
}

#[test]
fn sigterm_of_master_hands_over_and_exits_zero() {
    if !require_root() {
        return;
    }
    let (lab, vip, mut daemons) = two_nodes("sigterm", "100ms", None);
    let n2_mac = lab.node(2).mac();

    // Watch both nodes while n1 shuts down: when n2 claims, when n1 releases.
    let stop = AtomicBool::new(false);
    let timeline: Mutex<(Option<Duration>, Option<Duration>, bool)> =
        Mutex::new((None, None, false));
    let start = Instant::now();
    let (status, exited) = thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let n1 = lab.node(1).holds(&vip);
                let n2 = lab.node(2).holds(&vip);
                let t = start.elapsed();
                let mut tl = timeline.lock().unwrap();
                if n2 && tl.0.is_none() {
                    tl.0 = Some(t);
                }
                if !n1 && tl.1.is_none() {
                    tl.1 = Some(t);
                }
                if !n1 && !n2 {
                    tl.2 = true;
                }
                drop(tl);
                thread::sleep(Duration::from_millis(2));
            }
        });
        let status = daemons[0].sigterm();
        let exited = start.elapsed();
        wait_until(
            "n2 holds the VIP after n1's SIGTERM",
            Duration::from_secs(5),
            || lab.node(2).holds(&vip),
        );
        // Let the watcher see the final state.
        thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
        (status, exited)
    });
    let (claimed, released, gap_seen) = *timeline.lock().unwrap();
    let claimed = claimed.expect("n2 claimed");
    let released = released.expect("n1 released");
    let gap = claimed.as_millis() as i128 - released.as_millis() as i128;
    eprintln!(
        "[sigterm] SIGTERM -> n2 claimed at {} ms, n1 released at {} ms, n1 exited at {} ms; \
         gap {gap} ms ({}), a moment with no holder seen: {gap_seen}",
        ms(claimed),
        ms(released),
        ms(exited),
        if gap > 0 {
            "outage"
        } else {
            "make-before-break overlap"
        }
    );
    assert!(
        status.success(),
        "vipd exited with {status} on SIGTERM\n{}",
        daemons[0].log()
    );
    assert!(
        !lab.node(1).holds(&vip),
        "the stopped node left its VIP behind:\n{}",
        lab.node(1).addr_text()
    );
    wait_until(
        "the client's entry shows n2's MAC",
        Duration::from_secs(3),
        || lab.client.neigh_mac(&vip).as_deref() == Some(&n2_mac),
    );
    hold_for("n2 alone holds the VIP", Duration::from_millis(500), || {
        lab.holders(&vip) == [2]
    });
}

#[test]
fn vip_deleted_by_hand_is_restored() {
    if !require_root() {
        return;
    }
    let (lab, vip, _daemons) = two_nodes("vipdel", "100ms", None);
    lab.node(1).ns.ip(&["addr", "del", &vip, "dev", "eth0"]);
    let took = wait_until("n1 holds the VIP again", Duration::from_secs(5), || {
        lab.node(1).holds(&vip)
    });
    eprintln!(
        "[vipdel] VIP deleted by hand on the master, restored after {} ms",
        ms(took)
    );
    hold_for("n1 alone holds the VIP", Duration::from_millis(500), || {
        lab.holders(&vip) == [1]
    });
    assert_eq!(lab.client.macs_answering(&vip, 2), vec![lab.node(1).mac()]);
}

/// kill -9 leaves the master's VIP configured (nobody removes it); a restart must
/// clean it up. With preempt off the restarted node stays backup, so the VIP it
/// left behind must go away without it becoming master.
#[test]
fn crash_restart_with_preempt_off_removes_stray_vip() {
    if !require_root() {
        return;
    }
    let (lab, vip, mut daemons) = two_nodes("crashoff", "100ms", Some(false));
    daemons[0].kill9();
    let took = wait_until("n2 holds the VIP", Duration::from_secs(5), || {
        lab.node(2).holds(&vip)
    });
    eprintln!(
        "[crashoff] kill -9 -> n2 claimed after {} ms; n1 still carries the VIP (stale): {}",
        ms(took),
        lab.node(1).holds(&vip)
    );
    daemons[0].restart();
    let cleaned = wait_until(
        "only n2 holds the VIP after n1 restarted",
        Duration::from_secs(5),
        || lab.holders(&vip) == [2],
    );
    eprintln!(
        "[crashoff] n1 restarted; one holder (n2) after {} ms",
        ms(cleaned)
    );
    hold_for("n2 alone holds the VIP", Duration::from_secs(2), || {
        lab.holders(&vip) == [2]
    });
    assert_eq!(lab.client.macs_answering(&vip, 2), vec![lab.node(2).mac()]);
    assert!(daemons[0].is_running(), "n1 exited after restart");
}

/// The same with preempt on: the restarted node takes the VIP back, and once
/// settled exactly one node holds it.
#[test]
fn crash_restart_with_preempt_on_settles_on_one_holder() {
    if !require_root() {
        return;
    }
    let (lab, vip, mut daemons) = two_nodes("crashon", "100ms", None);
    daemons[0].kill9();
    wait_until("n2 holds the VIP", Duration::from_secs(5), || {
        lab.node(2).holds(&vip)
    });
    daemons[0].restart();
    let took = wait_sole_holder(&lab, &vip, 1, Duration::from_secs(10));
    eprintln!(
        "[crashon] n1 restarted; n1 sole holder again after {} ms",
        ms(took)
    );
    hold_for("n1 alone holds the VIP", Duration::from_secs(1), || {
        lab.holders(&vip) == [1]
    });
    let n1_mac = lab.node(1).mac();
    wait_until(
        "the client's entry shows n1's MAC",
        Duration::from_secs(3),
        || lab.client.neigh_mac(&vip).as_deref() == Some(&n1_mac),
    );
    assert_eq!(lab.client.macs_answering(&vip, 2), vec![n1_mac]);
}
