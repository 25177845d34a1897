//! The test lab itself (`tests/common`): hosts reach each other over the bridge by
//! IPv4 and IPv6, probes see the right MACs, nftables rules bite, and every
//! namespace is gone afterwards, also when the test panics.

mod common;

use std::panic;

use common::*;

fn lab_namespaces(prefix: &str) -> Vec<String> {
    let out = run("ip", &["netns", "list"]);
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn lab_connects_hosts_and_probes_see_their_macs() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("labok", 2);
    for node in &lab.nodes {
        assert!(lab.client.ping(&node.v4), "client -> {} v4", node.role);
        assert!(lab.client.ping(&node.v6), "client -> {} v6", node.role);
        let mac = node.mac();
        assert_eq!(lab.client.mac_for(&node.v4), Some(mac.clone()));
        assert_eq!(lab.client.neigh_mac(&node.v4), Some(mac.clone()));
        assert_eq!(lab.client.neigh_mac(&node.v6), Some(mac));
        assert!(node.holds(&format!("{}/24", node.v4)));
    }
    assert_ne!(lab.node(1).mac(), lab.node(2).mac());
    assert!(
        lab.client.mac_for(&lab.vip4(0)).is_none(),
        "nobody holds the VIP yet"
    );
    assert!(lab.holders(&lab.vip4(0)).is_empty());
    // nftables in a node namespace: drop all UDP to 5880 there.
    lab.node(1).ns.drop_adverts(5880);
    assert!(lab.node(1).ns.nft_list().contains("udp dport 5880 drop"));
    lab.node(1).ns.allow_adverts();
}

#[test]
fn lab_namespaces_are_removed_even_on_panic() {
    if !require_root() {
        return;
    }
    let prefix = format!("vt-labpan-{}-", std::process::id());
    let result = panic::catch_unwind(|| {
        let lab = Lab::new("labpan", 1);
        // A process left running inside a namespace must not keep it alive.
        let sleeper = std::process::Command::new("ip")
            .args(["netns", "exec", &lab.node(1).ns.name, "sleep", "600"])
            .spawn()
            .unwrap();
        assert_eq!(lab_namespaces(&prefix).len(), 3);
        panic::panic_any(sleeper);
    });
    // The guard killed the sleeper; reap it.
    let mut sleeper = result
        .expect_err("the closure panics")
        .downcast::<std::process::Child>()
        .expect("the payload is the sleeper");
    assert!(!sleeper.wait().unwrap().success(), "killed, not exited");
    assert_eq!(lab_namespaces(&prefix), Vec::<String>::new());
}
