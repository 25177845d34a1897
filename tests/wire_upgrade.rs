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
//!
//! The rolling upgrade: two builds side by side. "Old" is this binary with
//! `VIPD_WIRE_SEND_EXTENSIONS=0` (a testing-only switch, see src/wire.rs): it
//! sends byte for byte what the previous release sent, and its extension-area
//! decoder is the previous release's. "New" is this binary as shipped: its
//! adverts carry extension field 1, its software version. The pair starts on
//! "old"; n2 (backup) is restarted on "new", then n1 (master: its stop hands
//! the VIP over make-before-break to n2) is restarted on "new" and takes the VIP
//! back by preemption. A client asks who has the VIP every millisecond
//! throughout: no probe may be lost, and each node's status shows the other's
//! version once the other runs "new".

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

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

/// The version `daemon`'s status shows for its (only) peer, if any.
fn peer_version(daemon: &Daemon) -> Option<String> {
    daemon.status_json().and_then(|s| {
        s["instances"][0]["peers"][0]["version"]
            .as_str()
            .map(str::to_owned)
    })
}

/// How many times the client's answers moved from one MAC to another after
/// `from`: probes answered by one MAC only, in order, counting changes of that
/// MAC (during a make-before-break handover both nodes answer for a while;
/// those probes are not counted as moves).
fn handovers_seen(log: &ProbeLog, from: Instant) -> usize {
    let answered = log.answered_by();
    let first = log.probes.partition_point(|&s| s < from);
    let sole: Vec<[u8; 6]> = answered[first..]
        .iter()
        .filter(|macs| macs.len() == 1)
        .map(|macs| macs[0])
        .collect();
    sole.windows(2).filter(|w| w[0] != w[1]).count()
}

#[test]
fn a_pair_upgrades_one_node_at_a_time_without_losing_a_probe() {
    if !require_root() {
        return;
    }
    const OLD: (&str, Option<&str>) = ("VIPD_WIRE_SEND_EXTENSIONS", Some("0"));
    let version = env!("CARGO_PKG_VERSION");
    let lab = Lab::new("rolling", 2);
    let vip = lab.vip4(0);
    let spec = |prio| InstanceSpec::new(prio).advert("100ms").vip(&vip);
    let mut n1 = Daemon::configure(lab.node(1), NodeSpec::new("n1", spec(150)));
    let mut n2 = Daemon::configure(lab.node(2), NodeSpec::new("n2", spec(100)));
    for node in [&mut n1, &mut n2] {
        node.set_env(OLD.0, OLD.1);
        node.restart();
    }
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    wait_until("n2 is backup", Duration::from_secs(20), || {
        state(&n2) == "backup"
    });
    assert_eq!(peer_version(&n1), None, "the old build sends no version");
    assert_eq!(peer_version(&n2), None, "the old build sends no version");

    let n1_mac = lab.node(1).mac_bytes();
    let prober = ArpProber::start_seeing(&lab.client, &vip, n1_mac);
    let from = Instant::now();

    // 1. The backup: stop, start on the new build.
    n2.sigterm_within(Duration::from_secs(30));
    n2.set_env(OLD.0, None);
    n2.restart();
    wait_until("n2 (new) is backup", Duration::from_secs(20), || {
        state(&n2) == "backup"
    });
    wait_until(
        "n1 (old) shows n2's version",
        Duration::from_secs(10),
        || peer_version(&n1).as_deref() == Some(version),
    );
    assert_eq!(peer_version(&n2), None, "n1 still runs the old build");
    assert_eq!(lab.holders(&vip), [1], "n1 kept the VIP");
    sleep_checked(Duration::from_secs(1));

    // 2. The master: its stop hands over to n2, then it starts on the new build
    // and takes the VIP back (priority 150, preemption on).
    let n1_stop = Instant::now();
    n1.sigterm_within(Duration::from_secs(30));
    println!(
        "[rolling] n1 stopped (handover to n2) in {} ms",
        ms(n1_stop.elapsed())
    );
    n1.set_env(OLD.0, None);
    n1.restart();
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(30));
    wait_until("n2 is backup again", Duration::from_secs(20), || {
        state(&n2) == "backup"
    });
    wait_until(
        "each node shows the other's version",
        Duration::from_secs(10),
        || {
            peer_version(&n1).as_deref() == Some(version)
                && peer_version(&n2).as_deref() == Some(version)
        },
    );
    prober
        .wait_stable(n1_mac, Duration::from_millis(300), Duration::from_secs(10))
        .expect("the client sees n1 again");
    sleep_checked(Duration::from_secs(1));
    let to = Instant::now();
    let log = prober.snapshot();
    let window = log.window(from, to);
    let probes = log.probes.iter().filter(|&&t| t >= from && t < to).count();
    let changes = handovers_seen(&log, from);
    let text = n1.cli(&["status"]);
    println!("[rolling] n1's status:\n{}", output_text(&text));
    println!(
        "[rolling] rolling upgrade over {} ms: {probes} probes, {} lost, longest gap {:.1} ms, \
         {} answered by two MACs, {changes} handovers",
        ms(to - from),
        window.lost,
        window.longest_gap_ms,
        window.answered_by_two
    );
    for node in [&n1, &n2] {
        let status = node.status_json().expect("status");
        assert_eq!(
            status["instances"][0]["auth_failures"].as_u64(),
            Some(0),
            "{}: no advert rejected: {status:#}",
            node.label
        );
    }
    assert!(
        changes <= 2,
        "at most the two planned handovers (n1 stop to n2, n1 back by preemption); saw {changes}"
    );
    assert_eq!(
        window.lost, 0,
        "the client lost probes during the rolling upgrade"
    );
}
