//! Replays across restarts (issue 11): a restarted node must not accept adverts
//! older than those it accepted before it stopped, so a capture of the old
//! master's adverts cannot make it follow a master that is dead.
//!
//! The attacker is the client: it records a run of n1's real adverts off the
//! wire (a UDP socket joined to the group), and after n1 died plays them back to
//! the group in order, again and again, with TTL 255 — exactly the bytes n1
//! signed, so they pass the HMAC. Without the state directory's replay
//! checkpoint (`state/replay`; `state/db.replay` before it) a restarted n2 accepts the run once (each advert is newer than the
//! one before) and stays backup behind the dead master for as long as the run
//! lasts; with it, every one is a replay and n2 takes over on time.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;

/// The group and port of the lab's instance (vipd's defaults).
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 80, 51);
const PORT: u16 = 5880;
/// How many consecutive adverts the attacker records (100 ms apart: 3 s).
const CAPTURED: usize = 30;
/// The lab instance's advert interval (`InstanceSpec::new`).
const ADVERT_INTERVAL: Duration = Duration::from_millis(100);

/// Records `count` adverts that `from` sent to the group, as the client sees them.
fn capture_adverts(client: &Host, from: &str, count: usize) -> Vec<Vec<u8>> {
    let netns = client.ns.name.clone();
    let local: Ipv4Addr = client.v4.parse().expect("client IPv4");
    let from: Ipv4Addr = from.parse().expect("node IPv4");
    thread::spawn(move || {
        Netns::enter(&netns).expect("enter the client namespace");
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT)).expect("bind 5880");
        socket
            .join_multicast_v4(&GROUP, &local)
            .expect("join the group");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut adverts = Vec::new();
        let mut buf = [0u8; 2048];
        while adverts.len() < count {
            let (len, source) = socket.recv_from(&mut buf).expect("an advert within 10 s");
            // Byte 10 bit 0: MASTER. Only the master's adverts make a follower.
            if source.ip() == from && buf[10] & 0x01 != 0 {
                adverts.push(buf[..len].to_vec());
            }
        }
        adverts
    })
    .join()
    .expect("capture thread")
}

/// Plays `adverts` to the group from the client, in order, `every` apart, with
/// TTL 255 (what a receiver demands of a neighbour), looping until stopped.
struct Replayer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Replayer {
    fn start(client: &Host, adverts: Vec<Vec<u8>>, every: Duration) -> Self {
        // No default route in the lab: say where multicast goes.
        let _ = client
            .ns
            .ip_output(&["route", "add", "224.0.0.0/4", "dev", "eth0"]);
        let netns = client.ns.name.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            Netns::enter(&netns).expect("enter the client namespace");
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
            socket.set_multicast_ttl_v4(255).expect("TTL 255");
            let to = SocketAddr::from((GROUP, PORT));
            let mut sent = 0u64;
            'outer: loop {
                for advert in &adverts {
                    if stopped.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    if socket.send_to(advert, to).is_ok() {
                        sent += 1;
                    }
                    thread::sleep(every);
                }
            }
            sent
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("replay thread"))
    }
}

impl Drop for Replayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn replays_rejected(daemon: &Daemon) -> (u64, bool) {
    let failures = daemon
        .status_json()
        .and_then(|s| s["instances"][0]["auth_failures"].as_u64())
        .unwrap_or(0);
    (failures, daemon.log().contains("replayed"))
}

#[test]
fn a_restarted_node_rejects_old_adverts_of_a_dead_master() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("replay", 2);
    let vip = lab.vip4(0);
    let mut nodes = start_nodes(
        &lab,
        vec![
            InstanceSpec::new(200).vip(&vip),
            InstanceSpec::new(100).vip(&vip),
        ],
    );
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));

    let adverts = capture_adverts(&lab.client, &lab.node(1).v4, CAPTURED);
    eprintln!(
        "[replay] captured {} master adverts of n1 ({} bytes each)",
        adverts.len(),
        adverts[0].len()
    );

    // n2 stops cleanly (its checkpoint is written at shutdown); n1 dies meanwhile.
    let (n1, n2) = match nodes.as_mut_slice() {
        [n1, n2] => (n1, n2),
        _ => unreachable!("two nodes"),
    };
    n2.sigterm();
    let checkpoint = n2.dir.join("state/replay");
    let text = std::fs::read_to_string(&checkpoint).expect("n2 wrote a replay checkpoint");
    eprintln!("[replay] n2's checkpoint after SIGTERM:\n{text}");
    assert!(text.contains("\ninstance db\n"), "{text}");
    // As the release before the node-wide file would have left it: one file per
    // instance (v1). The restarted n2 must read it, and replace it.
    let old_checkpoint = n2.dir.join("state/db.replay");
    let v1: String = text
        .lines()
        .filter(|l| !l.starts_with("instance"))
        .map(|l| format!("{}\n", l.replace(" v2", " v1")))
        .collect();
    std::fs::write(&old_checkpoint, &v1).expect("write the v1 checkpoint");
    std::fs::remove_file(&checkpoint).expect("remove the node-wide checkpoint");
    n1.kill9();
    // The dead host: its leftover VIP must not answer for it.
    lab.node(1).link(false);

    // The attacker plays the run from its start as n2 starts again, at n1's
    // own pace, looping.
    n2.restart();
    let replayer = Replayer::start(&lab.client, adverts.clone(), ADVERT_INTERVAL);
    let took = wait_until(
        "the restarted n2 takes over from the dead n1 despite the replayed adverts",
        Duration::from_secs(5),
        || lab.node(2).holds(&vip),
    );
    eprintln!(
        "[replay] checkpoint kept: n2 took over {} ms after its start",
        ms(took)
    );
    // Start-up, then a master-down interval (~0.36 s at 100 ms adverts):
    // a daemon that followed the replays would stay backup for the run's 3 s.
    assert!(
        took < Duration::from_millis(2_000),
        "n2 took {} ms",
        ms(took)
    );
    hold_for(
        "n2 stays master while the old adverts keep coming",
        Duration::from_secs(2),
        || lab.node(2).holds(&vip),
    );
    wait_until(
        "the restarted n2 moved its v1 checkpoint into the node-wide one",
        Duration::from_secs(5),
        || checkpoint.exists() && !old_checkpoint.exists(),
    );
    let (failures, logged) = replays_rejected(n2);
    eprintln!("[replay] n2: auth_failures = {failures}, log names replays: {logged}");
    assert!(failures > 0 && logged, "{}", n2.log_tail(30));
    let line = n2
        .log()
        .lines()
        .find(|l| l.contains("replayed"))
        .map(str::to_owned);
    eprintln!("[replay] n2 logged: {line:?}");
    let mut sent = replayer.stop();

    // Control: without the checkpoint (a node of the old kind), the same replays
    // keep n2 behind the dead master for as long as the run lasts. This is what
    // shows the test above measures the checkpoint and nothing else.
    n2.sigterm();
    std::fs::remove_file(&checkpoint).expect("remove the checkpoint");
    n2.restart();
    let replayer = Replayer::start(&lab.client, adverts.clone(), ADVERT_INTERVAL);
    let followed_for = Instant::now();
    hold_for(
        "n2 without a checkpoint follows the replayed master (no VIP)",
        Duration::from_secs(2),
        || !lab.node(2).holds(&vip),
    );
    wait_until(
        "n2 takes over once the replayed run repeats (then they are replays in memory too)",
        Duration::from_secs(10),
        || lab.node(2).holds(&vip),
    );
    eprintln!(
        "[replay] control, no checkpoint: n2 followed the dead master for {} ms",
        ms(followed_for.elapsed())
    );

    // A crash (SIGKILL: no shutdown checkpoint) more than the crash window (half
    // a snapshot interval, a write interval and an advert interval: ~1.6 s) after
    // the last accepted advert of n1: the periodic checkpoint covers it.
    thread::sleep(Duration::from_millis(2_500));
    n2.kill9();
    let _ = lab
        .node(2)
        .ns
        .ip_output(&["addr", "del", &vip, "dev", "eth0"]);
    n2.restart();
    let took = wait_until(
        "n2 restarted after a crash takes over despite the replays",
        Duration::from_secs(5),
        || lab.node(2).holds(&vip),
    );
    eprintln!(
        "[replay] after a crash: n2 took over {} ms after its start",
        ms(took)
    );
    assert!(
        took < Duration::from_millis(2_000),
        "n2 took {} ms",
        ms(took)
    );
    sent += replayer.stop();
    eprintln!("[replay] the client replayed {sent} adverts in all");
}
