//! IPv6 VIPs between real daemons: the VIP moves and the client's neighbour entry
//! follows the new master's unsolicited neighbour advertisement.

mod common;

use std::time::Duration;

use common::*;

/// n1 (150) and n2 (100) with one IPv6 VIP; kill -9 n1 and watch the client.
fn ipv6_failover(tag: &str, multicast_group: Option<&str>) {
    let lab = Lab::new(tag, 2);
    let vip = lab.vip6(0);
    let spec = |prio| {
        let s = InstanceSpec::new(prio).vip(&vip);
        match multicast_group {
            Some(g) => s.extra(&format!("multicast_group = {g:?}")),
            None => s,
        }
    };
    let mut daemons = start_nodes(&lab, vec![spec(150), spec(100)]);
    let took = wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    eprintln!("[{tag}] n1 holds {vip} after {} ms", ms(took));
    let n1_mac = lab.node(1).mac();
    let n2_mac = lab.node(2).mac();
    wait_until(
        "the client resolves the IPv6 VIP to n1's MAC",
        Duration::from_secs(5),
        || lab.client.ping(&vip) && lab.client.neigh_mac(&vip).as_deref() == Some(&n1_mac),
    );
    let before = lab.client.neigh_entry(&vip);
    daemons[0].kill9();
    let took = wait_until(
        "n2 holds the IPv6 VIP and the client's entry shows n2's MAC",
        Duration::from_secs(5),
        || lab.node(2).holds(&vip) && lab.client.neigh_mac(&vip).as_deref() == Some(&n2_mac),
    );
    eprintln!(
        "[{tag}] IPv6 failover (kill -9, 100ms adverts): client's entry on n2's MAC after {} ms ({before:?} -> {:?})",
        ms(took),
        lab.client.neigh_entry(&vip)
    );
    assert!(lab.client.ping(&vip), "the client reaches the VIP on n2");
}

#[test]
fn ipv6_vip_fails_over() {
    if !require_root() {
        return;
    }
    ipv6_failover("v6", None);
}

#[test]
fn ipv6_vip_fails_over_with_ipv6_multicast_adverts() {
    if !require_root() {
        return;
    }
    ipv6_failover("v6mc", Some("ff02::5880"));
}
