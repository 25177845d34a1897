//! Mixed releases on one link (issue 14): today's vipd must follow a peer of a
//! later release that sends adverts with an extension area (an extra
//! type-length-value field, as the compatibility rule in src/wire.rs allows once
//! every node accepts the area).
//!
//! n1 runs this build as master (priority 100). The client plays "the next
//! release": adverts for the same group and key at priority 200, flagged master,
//! each carrying an extension field this build does not know. n1 must accept
//! them (no authentication failure) and hand over to that peer; when the peer
//! goes quiet, n1 takes the VIP back.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use vipd::wire::{self, Advert, AdvertBody, Auth, AuthKey, Extension, Flags};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 80, 51);
const PORT: u16 = 5880;

/// Sends "next release" adverts from the client every 100 ms until stopped.
fn newer_peer(client: &Host, vip: &str, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    let _ = client
        .ns
        .ip_output(&["route", "add", "224.0.0.0/4", "dev", "eth0"]);
    let netns = client.ns.name.clone();
    let (address, prefix) = vip.split_once('/').expect("ADDRESS/PREFIX");
    let vip_address: IpAddr = address.parse().expect("VIP address");
    let prefix: u8 = prefix.parse().expect("prefix");
    thread::spawn(move || {
        Netns::enter(&netns).expect("enter the client namespace");
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        socket.set_multicast_ttl_v4(255).expect("TTL 255");
        let auth = Auth::HmacSha256(AuthKey::new(KEY.as_bytes().to_vec()).expect("key"));
        let extension = [Extension {
            kind: 42,
            value: b"vipd 0.2.0: a field this build does not know".to_vec(),
        }];
        let to = SocketAddr::from((GROUP, PORT));
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            sent += 1;
            let advert = Advert {
                body: AdvertBody {
                    group: 51,
                    priority: 200,
                    interval_cs: 10,
                    flags: Flags(Flags::MASTER),
                    node_id: 0x4e45_5752_454c_4541,
                    promote_epoch: 0,
                    vip_digest: wire::vip_digest([(vip_address, prefix)]),
                    node_name: "next-release".into(),
                },
                boot_id: 1,
                sequence: sent,
            };
            let bytes = wire::encode_with_extensions(&advert, &extension, &auth)
                .expect("encode the newer advert");
            let _ = socket.send_to(&bytes, to);
            thread::sleep(Duration::from_millis(100));
        }
        sent
    })
}

fn state(daemon: &Daemon) -> String {
    daemon
        .status_json()
        .and_then(|s| s["instances"][0]["state"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn todays_build_follows_a_peer_that_sends_extension_fields() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("wireup", 1);
    let vip = lab.vip4(0);
    let n1 = Daemon::start(
        lab.node(1),
        NodeSpec::new("n1", InstanceSpec::new(100).vip(&vip)),
    );
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));

    let stop = Arc::new(AtomicBool::new(false));
    let peer = newer_peer(&lab.client, &vip, stop.clone());
    let took = wait_until(
        "n1 hands over to the newer peer",
        Duration::from_secs(20),
        || state(&n1) == "backup" && !lab.node(1).holds(&vip),
    );
    println!(
        "n1 followed the peer with extension fields after {} ms",
        ms(took)
    );
    // It keeps accepting them: 3 s is 30 adverts, 10 times its master-down interval.
    hold_for(
        "n1 stays backup behind the newer peer",
        Duration::from_secs(3),
        || state(&n1) == "backup" && !lab.node(1).holds(&vip),
    );
    let status = n1.status_json().expect("status");
    let failures = status["instances"][0]["auth_failures"].as_u64();
    assert_eq!(
        failures,
        Some(0),
        "adverts with an extension area rejected: {status:#}"
    );

    stop.store(true, Ordering::Relaxed);
    let sent = peer.join().expect("peer thread");
    let back = wait_until(
        "n1 takes the VIP back when the peer goes quiet",
        Duration::from_secs(20),
        || lab.holders(&vip) == [1],
    );
    println!(
        "{sent} extended adverts sent; n1 master again {} ms after the last",
        ms(back)
    );
}
