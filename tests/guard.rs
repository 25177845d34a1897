//! The split-brain guard between real daemons. n1 (150) and n2 (100), 300 ms
//! adverts (master-down about 900 ms); the witness is the lab's client, checked by
//! ICMP every 100 ms with a 100 ms timeout.
//!
//! The cut: nftables in n2's namespace drops every IP packet in and out (but
//! loopback), so n2 hears no adverts from n1 and cannot reach the witness, while
//! its link stays up. This is the case the guard is for: a node cut off from its
//! peers *and* from the witness. With the guard, n2 stays in fault and the VIP
//! stays on n1 alone; without it, n2 takes over too and both hold the VIP.

mod common;

use std::time::Duration;

use common::*;

const CUT: &str = "table inet vipd_test_cut {\n\
    \tchain input { type filter hook input priority -10; policy drop; iif lo accept; }\n\
    \tchain output { type filter hook output priority -10; policy drop; oif lo accept; }\n\
    }\n";

fn run(tag: &str, guarded: bool) {
    let lab = Lab::new(tag, 2);
    let vip = lab.vip4(0);
    let witness = lab.client.v4.clone();
    let spec = |prio| {
        let s = InstanceSpec::new(prio).vip(&vip).advert("300ms");
        if guarded {
            s.extra("[instance.guard]")
                .extra(&format!("witness = {witness:?}"))
                .extra("method = \"icmp\"")
                .extra("interval = \"100ms\"")
                .extra("timeout = \"100ms\"")
        } else {
            s
        }
    };
    let daemons = start_nodes(&lab, vec![spec(150), spec(100)]);
    let took = wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    eprintln!("[{tag}] n1 holds {vip} after {} ms", ms(took));

    lab.node(2).ns.nft(CUT);
    if guarded {
        let took = wait_until(
            "n2 reports the witness unreachable",
            Duration::from_secs(3),
            || {
                daemons[1]
                    .log()
                    .contains("guard: witness unreachable; this node may not be master")
            },
        );
        eprintln!("[{tag}] n2 cut off: its guard failed after {} ms", ms(took));
        // Several master-down intervals: n2 would have claimed by now.
        hold_for(
            "with the guard, the VIP stays on n1 alone",
            Duration::from_secs(4),
            || lab.holders(&vip) == [1],
        );
        assert!(
            !daemons[1].log().contains("state=master"),
            "n2 was master at some point:\n{}",
            daemons[1].log()
        );
        let out = daemons[1].cli(&["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        let n2 = &status["instances"][0];
        assert_eq!(n2["state"], "fault", "{status:#}");
        assert!(
            n2["fault"]
                .as_str()
                .unwrap_or("")
                .contains("witness unreachable"),
            "{status:#}"
        );
        eprintln!("[{tag}] with the guard: VIP on n1 only for 4 s after the cut");

        // Healing: the guard clears, n2 is a backup again, n1 keeps the VIP.
        lab.node(2).ns.nft("delete table inet vipd_test_cut\n");
        let took = wait_until("n2 is backup again", Duration::from_secs(5), || {
            let out = daemons[1].cli(&["status", "--json"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|s| s["instances"][0]["state"] == "backup")
        });
        eprintln!("[{tag}] cut healed: n2 backup after {} ms", ms(took));
        assert_eq!(lab.holders(&vip), [1]);
    } else {
        let took = wait_until(
            "both nodes hold the VIP (split brain)",
            Duration::from_secs(5),
            || lab.holders(&vip) == [1, 2],
        );
        eprintln!(
            "[{tag}] without the guard: n2 cut off, both nodes master after {} ms",
            ms(took)
        );
    }
}

#[test]
fn with_guard_cut_leaves_vip_on_the_node_that_reaches_the_witness() {
    if !require_root() {
        return;
    }
    run("guard", true);
}

#[test]
fn without_guard_the_same_cut_gives_two_masters() {
    if !require_root() {
        return;
    }
    run("noguard", false);
}

/// Quorum (3 nodes): n3 loses every advert but still reaches the witness. It hears
/// only itself, 1 of 3, so with `quorum = true` it may not be master; n1 keeps
/// the VIP alone.
#[test]
fn quorum_keeps_a_node_that_hears_no_majority_from_claiming() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("quorum", 3);
    let vip = lab.vip4(0);
    let witness = lab.client.v4.clone();
    let spec = |prio| {
        InstanceSpec::new(prio)
            .vip(&vip)
            .advert("300ms")
            .extra("[instance.guard]")
            .extra(&format!("witness = {witness:?}"))
            .extra("interval = \"100ms\"")
            .extra("timeout = \"100ms\"")
            .extra("quorum = true")
            .extra("peers_total = 3")
    };
    let daemons = start_nodes(&lab, vec![spec(150), spec(100), spec(50)]);
    let took = wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    eprintln!("[quorum] n1 holds {vip} after {} ms", ms(took));
    lab.node(3).ns.drop_adverts(5880);
    let took = wait_until("n3 reports quorum lost", Duration::from_secs(5), || {
        daemons[2].log().contains("guard: quorum lost")
    });
    eprintln!(
        "[quorum] n3 hears no adverts: quorum lost after {} ms",
        ms(took)
    );
    hold_for(
        "with quorum, the VIP stays on n1 alone",
        Duration::from_secs(3),
        || lab.holders(&vip) == [1],
    );
    assert!(
        !daemons[2].log().contains("state=master"),
        "n3 was master at some point:\n{}",
        daemons[2].log()
    );
    let out = daemons[2].cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(status["instances"][0]["state"], "fault", "{status:#}");
    assert!(
        status["instances"][0]["fault"]
            .as_str()
            .unwrap_or("")
            .contains("quorum lost: hears 1 of 3"),
        "{status:#}"
    );
}
