//! Unicast adverts (`peers = [...]`) between real daemons while nftables drops all
//! multicast adverts in every node's namespace, as many clouds do.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn unicast_peers_work_without_multicast() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("ucast", 3);
    let vip = lab.vip4(0);
    for node in &lab.nodes {
        node.ns.drop_multicast_adverts(5880);
    }
    let addrs: Vec<String> = lab.nodes.iter().map(|n| n.v4.clone()).collect();
    let spec = |i: usize, prio| {
        let others: Vec<&str> = addrs
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, a)| a.as_str())
            .collect();
        InstanceSpec::new(prio).vip(&vip).peers(&others)
    };
    let mut daemons = start_nodes(&lab, vec![spec(0, 150), spec(1, 100), spec(2, 50)]);
    let took = wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    eprintln!("[ucast] n1 sole holder after {} ms", ms(took));
    // Stable: n2 and n3 hear n1 by unicast, so neither claims.
    hold_for("n1 alone holds the VIP", Duration::from_secs(1), || {
        lab.holders(&vip) == [1]
    });
    let n2_mac = lab.node(2).mac();
    lab.client.ping(&vip);
    let start = Instant::now();
    daemons[0].kill9();
    wait_until("n2 holds the VIP", Duration::from_secs(5), || {
        lab.node(2).holds(&vip)
    });
    let claimed = start.elapsed();
    // n1's stale VIP stays (kill -9); n3 must not claim too.
    hold_for("n3 does not claim the VIP", Duration::from_secs(1), || {
        !lab.node(3).holds(&vip)
    });
    wait_until(
        "the client's entry shows n2's MAC",
        Duration::from_secs(3),
        || lab.client.neigh_mac(&vip).as_deref() == Some(&n2_mac),
    );
    eprintln!(
        "[ucast] unicast failover (kill -9, 100ms adverts, multicast dropped): n2 claimed after {} ms",
        ms(claimed)
    );
    eprintln!(
        "[ucast] n2 nftables counters:\n{}",
        lab.node(2).ns.nft_list()
    );
}

/// The control for the test above: with multicast adverts (the default) and the
/// same nftables rule on n2 only, n2 hears nobody and claims the VIP too. This
/// proves the rule really stops vipd's multicast adverts, so the unicast test's
/// success is owed to unicast. The cold-claim probe is off here: with it, the
/// node that claims second hears the other's gratuitous ARPs during its probe
/// and refuses in fault (tests/foreign_claim.rs), which hides the split this
/// control is about.
#[test]
fn multicast_group_splits_when_multicast_is_dropped() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("mcdrop", 2);
    let vip = lab.vip4(0);
    lab.node(2).ns.drop_multicast_adverts(5880);
    let spec = |priority| {
        InstanceSpec::new(priority)
            .vip(&vip)
            .extra("announce_probe = false")
    };
    let _daemons = start_nodes(&lab, vec![spec(150), spec(100)]);
    let took = wait_until(
        "both nodes hold the VIP (n2 cannot hear n1)",
        Duration::from_secs(10),
        || lab.holders(&vip) == [1, 2],
    );
    eprintln!(
        "[mcdrop] multicast dropped at n2: both nodes master after {} ms, as expected\n{}",
        ms(took),
        lab.node(2).ns.nft_list()
    );
}
