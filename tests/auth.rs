//! Authentication between real daemons: a node with the wrong key cannot take the
//! VIP from the master, however high its priority, and the master says why.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn peer_with_wrong_key_is_ignored() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("badkey", 2);
    let vip = lab.vip4(0);
    let n1 = Daemon::start(
        lab.node(1),
        NodeSpec::new("n1", InstanceSpec::new(150).vip(&vip)),
    );
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));

    // n2 outranks n1 but signs with another key: its adverts must be dropped, so n1
    // never steps down. (n2 hears no valid master either, so it claims the VIP on
    // its own side: that is the configuration error the log must point at.)
    let _n2 = Daemon::start(
        lab.node(2),
        NodeSpec::new(
            "n2",
            InstanceSpec::new(200)
                .vip(&vip)
                .key("a-completely-different-key-0000"),
        ),
    );
    hold_for(
        "n1 keeps the VIP while a wrong-key peer with priority 200 advertises",
        Duration::from_secs(3),
        || lab.node(1).holds(&vip),
    );
    let log = n1.log().to_lowercase();
    assert!(
        log.contains("authenticat") || log.contains("bad mac"),
        "n1's log does not mention the authentication failure:\n{}",
        n1.log()
    );
    let line = n1
        .log()
        .lines()
        .find(|l| {
            let l = l.to_lowercase();
            l.contains("authenticat") || l.contains("bad mac")
        })
        .map(str::to_owned);
    eprintln!("[badkey] n1 logged: {line:?}");
    if let Some(status) = n1.status_json() {
        let failures = status["instances"][0]["auth_failures"]
            .as_u64()
            .unwrap_or(0);
        eprintln!("[badkey] n1 status: auth_failures = {failures}");
        assert!(failures > 0, "{status:#}");
        assert_eq!(status["instances"][0]["state"], "master", "{status:#}");
    }
}
