//! Open-file limits. A node given too few file descriptors must not take VIPs
//! it then cannot announce: either it runs correctly (takes every VIP from the
//! peer, the client sees each one answered by its MAC, `vipd status`
//! answers) or it refuses to start, naming the figure it needs and how to
//! raise the limit, having touched nothing (the peer keeps and announces every
//! VIP, no address appears on the refusing node, its state directory is
//! unchanged, the peer never hears it). A node whose gratuitous ARPs fail goes
//! in fault and the VIPs go back to the peer. A control socket whose `accept`
//! fails for want of descriptors backs off and logs a bounded number of lines.
//! Each test prints what it measured (`-- --nocapture`).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Instances (one VIP each) on the node under test and on its peer.
const INSTANCES: u32 = 8;

/// n1 (priority 200, preempt) or n2 (100): `INSTANCES` instances, VIP k in
/// group 51 + k.
fn node_spec(lab: &Lab, name: &str, priority: u8, instances: u32) -> NodeSpec {
    let instance = |k: u32| {
        let mut spec = InstanceSpec::new(priority).vip(lab.vip4(k)).preempt(true);
        spec.name = format!("i{k}");
        spec.group = 51 + k as u8;
        spec
    };
    let mut node = NodeSpec::new(name, instance(0));
    node.instances.extend((1..instances).map(instance));
    node
}

/// The log of the daemon's latest start only.
fn latest_run(daemon: &Daemon) -> String {
    let log = daemon.log();
    let marker = "----- test: starting vipd run -----";
    log.rfind(marker)
        .map_or(log.as_str(), |at| &log[at..])
        .to_owned()
}

/// Starts `node` under a limit of 20 open files, waits for its refusal and
/// returns the figure the refusal names.
fn figure_refused_at_20(node: &mut Daemon) -> u64 {
    node.set_nofile(Some(20));
    node.restart();
    wait_until(
        "n1 refuses at 20 open files",
        Duration::from_secs(10),
        || !node.is_running(),
    );
    needed_in(&latest_run(node))
        .unwrap_or_else(|| panic!("no figure in the refusal:\n{}", node.log()))
}

/// The figure in "needs N file descriptors", if the text has it.
fn needed_in(text: &str) -> Option<u64> {
    let at = text.find("needs ")? + "needs ".len();
    let rest = &text[at..];
    let end = rest.find(' ')?;
    rest[..end].parse().ok()
}

/// Every file under `dir` with its contents, to tell whether anything changed.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                for (name, bytes) in snapshot(&path) {
                    out.insert(
                        format!("{}/{name}", entry.file_name().to_string_lossy()),
                        bytes,
                    );
                }
            } else {
                out.insert(
                    entry.file_name().to_string_lossy().into_owned(),
                    fs::read(&path).unwrap_or_default(),
                );
            }
        }
    }
    out
}

/// The daemon's open file descriptors, by kind (`socket`, `anon_inode:[eventpoll]`,
/// a path...), from `/proc/PID/fd`.
fn open_fds(pid: i32) -> BTreeMap<String, u32> {
    let mut kinds = BTreeMap::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .flatten()
    {
        let target = fs::read_link(entry.path())
            .map(|t| t.display().to_string())
            .unwrap_or_else(|_| "?".into());
        let kind = match target.split_once(":[") {
            Some(("socket", _)) => "socket".to_owned(),
            _ => target,
        };
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
}

fn total(fds: &BTreeMap<String, u32>) -> u32 {
    fds.values().sum()
}

/// Waits until node `holder` alone holds every VIP and the client's ARP
/// requests for each are answered by its MAC.
fn wait_all_held_and_seen(lab: &Lab, vips: &[String], holder: usize, deadline: Duration) {
    let mac = lab.node(holder).mac();
    wait_until(
        &format!("n{holder} alone holds every VIP and the client sees its MAC for each"),
        deadline,
        || {
            vips.iter().all(|vip| {
                lab.holders(vip) == [holder] && lab.client.mac_for(vip).as_deref() == Some(&mac)
            })
        },
    );
}

/// The number of `state change` lines in a log.
fn state_changes(log: &str) -> usize {
    log.matches("state change").count()
}

#[test]
fn each_limit_runs_fully_or_refuses_having_touched_nothing() {
    if !require_root() {
        return;
    }
    let started = Instant::now();
    let lab = Lab::new("fdlim", 2);
    let vips: Vec<String> = (0..INSTANCES).map(|k| lab.vip4(k)).collect();
    let n2 = Daemon::start(lab.node(2), node_spec(&lab, "n2", 100, INSTANCES));
    wait_all_held_and_seen(&lab, &vips, 2, Duration::from_secs(20));
    let mut n1 = Daemon::configure(lab.node(1), node_spec(&lab, "n1", 200, INSTANCES));
    let state_dir = n1.dir.join("state");

    let mut needed = None;
    let (mut refused, mut ran) = (Vec::new(), Vec::new());
    // The brief's limits, then exactly the figure the refusals named.
    let mut limits: std::collections::VecDeque<u64> = [16, 20, 24, 28, 32, 48, 64].into();
    let mut at_need = false;
    while let Some(limit) = limits.pop_front() {
        if limits.is_empty() && !at_need {
            at_need = true;
            limits.extend(needed);
        }
        let before = snapshot(&state_dir);
        let peer_changes = state_changes(&n2.log());
        n1.set_nofile(Some(limit));
        n1.restart();
        wait_until(
            &format!("n1 (open files {limit}) exits or holds every VIP"),
            Duration::from_secs(20),
            || !n1.is_running() || vips.iter().all(|vip| lab.holders(vip) == [1]),
        );
        let log = latest_run(&n1);
        if !n1.is_running() {
            // Refused: says why and what to do, and touched nothing.
            let need = needed_in(&log).unwrap_or_else(|| {
                panic!("n1 exited at {limit} without naming the figure it needs:\n{log}")
            });
            assert!(
                log.contains("open files: vipd needs")
                    && log.contains(&format!("limit (RLIMIT_NOFILE) is {limit}"))
                    && log.contains(&format!("LimitNOFILE={need}")),
                "the refusal names the need, the limit and the fix:\n{log}"
            );
            assert!(
                limit < need,
                "refused at {limit} though it needs {need}:\n{log}"
            );
            needed = Some(need);
            for vip in &vips {
                assert!(
                    !lab.node(1).holds(vip),
                    "{vip} appeared on the refusing n1\n{}",
                    lab.describe()
                );
                assert_eq!(
                    lab.holders(vip),
                    [2],
                    "{vip} left the peer\n{}",
                    lab.describe()
                );
                assert_eq!(
                    lab.client.mac_for(vip),
                    Some(lab.node(2).mac()),
                    "the client lost {vip}"
                );
            }
            assert_eq!(
                snapshot(&state_dir),
                before,
                "the refusing n1 changed its state directory"
            );
            assert_eq!(
                state_changes(&n2.log()),
                peer_changes,
                "the peer changed state while n1 refused:\n{}",
                n2.log_tail(30)
            );
            if ran.is_empty() {
                // n1 has never run: the peer has never heard it.
                let status = n2.status_json().expect("n2 answers status");
                let heard: usize = status["instances"]
                    .as_array()
                    .map(|all| {
                        all.iter()
                            .map(|i| i["peers"].as_array().map_or(0, Vec::len))
                            .sum()
                    })
                    .unwrap_or(0);
                assert_eq!(heard, 0, "the peer heard the refusing n1: {status:#}");
            }
            eprintln!("[fdlim] open files {limit}: refused to start (needs {need}); the peer kept every VIP, the client saw no change");
            refused.push(limit);
            continue;
        }
        // Running: every VIP taken over and announced, status answering.
        wait_all_held_and_seen(&lab, &vips, 1, Duration::from_secs(20));
        let status = n1.status_json().expect("n1 answers status");
        let masters = status["instances"].as_array().map_or(0, |all| {
            all.iter().filter(|i| i["state"] == "master").count()
        });
        assert_eq!(masters, INSTANCES as usize, "{status:#}");
        let fds = open_fds(n1.pid().expect("n1 runs"));
        let log = latest_run(&n1);
        for bad in [
            "announcement failed",
            "accept failed",
            "Too many open files",
            "cannot claim or announce",
        ] {
            assert!(!log.contains(bad), "n1 at {limit} logged {bad:?}:\n{log}");
        }
        if let Some(need) = needed {
            assert!(
                limit >= need,
                "ran at {limit} below the {need} it says it needs"
            );
            assert!(
                u64::from(total(&fds)) <= need,
                "n1 holds {} descriptors, more than the {need} it asks for: {fds:?}",
                total(&fds)
            );
        }
        eprintln!(
            "[fdlim] open files {limit}: ran; took all {INSTANCES} VIPs, the client sees n1's MAC for each, status answers; {} descriptors open as master: {fds:?}",
            total(&fds)
        );
        ran.push(limit);
        if Some(limit) == needed {
            // At exactly its figure, a reload that adds an instance is
            // refused, naming the new figure, and changes nothing.
            let spec = node_spec(&lab, "n1", 200, INSTANCES + 1);
            n1.rewrite_config(&spec);
            let out = n1.cli(&["reload"]);
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(1), "reload refused: {text}");
            assert!(
                text.contains("open files: vipd needs") && needed_in(&text) > needed,
                "the refusal names the new figure: {text}"
            );
            let extra = lab.vip4(INSTANCES);
            assert!(lab.holders(&extra).is_empty(), "nothing was added");
            n1.rewrite_config(&node_spec(&lab, "n1", 200, INSTANCES));
            eprintln!(
                "[fdlim] open files {limit}: a reload to {} instances was refused: {text}",
                INSTANCES + 1
            );
        }
        // Hand everything back to the peer for the next limit.
        let status = n1.sigterm();
        assert!(status.success(), "n1 exited with {status}");
        wait_all_held_and_seen(&lab, &vips, 2, Duration::from_secs(20));
    }
    eprintln!(
        "[fdlim] refused at {refused:?}, ran at {ran:?}, needs {needed:?}; {} s in all",
        started.elapsed().as_secs()
    );
    assert!(
        !refused.is_empty() && !ran.is_empty(),
        "both outcomes are exercised"
    );
}

/// What a master holds with one and with eight instances, and what it asks
/// for: the figures behind the budget in `src/daemon/limits.rs`.
#[test]
fn a_master_holds_fewer_descriptors_than_it_asks_for() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("fdcount", 1);
    for instances in [1, INSTANCES] {
        let vips: Vec<String> = (0..instances).map(|k| lab.vip4(k)).collect();
        // Refused at 20: the message names the need.
        let mut node = Daemon::configure(lab.node(1), node_spec(&lab, "n1", 200, instances));
        let need = figure_refused_at_20(&mut node);
        node.set_nofile(None);
        node.restart();
        wait_until("n1 holds every VIP", Duration::from_secs(20), || {
            vips.iter().all(|vip| lab.holders(vip) == [1])
        });
        // The first bursts are out (5 at 100 ms).
        std::thread::sleep(Duration::from_millis(800));
        let fds = open_fds(node.pid().expect("n1 runs"));
        eprintln!(
            "[fdcount] {instances} instances: master holds {} descriptors, asks for {need}: {fds:?}",
            total(&fds)
        );
        assert!(
            u64::from(total(&fds)) <= need,
            "holds more than it asks for"
        );
        let status = node.sigterm();
        assert!(status.success(), "n1 exited with {status}");
    }
}

/// With its descriptors used up by idle control connections, the control
/// socket's `accept` fails: the daemon keeps its VIPs, logs a bounded number of
/// lines (not ten a second), and answers again once the connections close.
#[test]
fn accept_failures_back_off_and_log_a_bounded_number_of_lines() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("fdaccept", 1);
    let vip = lab.vip4(0);
    let mut node = Daemon::configure(lab.node(1), node_spec(&lab, "n1", 200, 1));
    let need = figure_refused_at_20(&mut node);
    // Exactly what it asks for: the headroom is all control connections can take.
    node.set_nofile(Some(need));
    node.restart();
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    wait_until("status answers", Duration::from_secs(10), || {
        node.status_json().is_some()
    });

    // Idle connections (the server waits 5 s for a request line) until
    // accept fails; held for 4 s.
    let mut held = Vec::new();
    for _ in 0..(need + 8) {
        match UnixStream::connect(&node.socket) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    let window = Duration::from_secs(4);
    std::thread::sleep(window);
    let failed = latest_run(&node).matches("accept failed").count();
    eprintln!(
        "[fdaccept] limit {need}: {} connections opened; over {} s the log has {failed} 'accept failed' lines",
        held.len(),
        window.as_secs()
    );
    assert!(
        failed >= 1,
        "accept never failed: the test did not exhaust the descriptors\n{}",
        node.log()
    );
    assert!(
        failed <= 1,
        "accept failures flood the log:\n{}",
        node.log()
    );
    assert_eq!(lab.holders(&vip), [1], "n1 keeps its VIP meanwhile");
    // The server drops idle connections after 5 s; the queued ones are then
    // accepted one by one as descriptors free up, at the edge of the limit.
    drop(held);
    wait_until("status answers again", Duration::from_secs(15), || {
        node.status_json().is_some()
    });
    wait_until("the recovery is logged", Duration::from_secs(5), || {
        latest_run(&node).contains("accepting again")
    });
    let log = latest_run(&node);
    let (failed, recovered) = (
        log.matches("accept failed").count(),
        log.matches("accepting again").count(),
    );
    eprintln!("[fdaccept] after the connections closed: {failed} 'accept failed' and {recovered} 'accepting again' lines in all");
    // Within 10 s of the first failure: that line and one recovery line.
    assert!(failed <= 1 && recovered <= 1, "bounded logging:\n{log}");
    assert_eq!(lab.holders(&vip), [1], "n1 kept its VIP throughout");
}

/// n1's `eth0` drops every ARP frame it sends (an nftables egress rule), so
/// each gratuitous ARP fails with ENOBUFS: n1 (priority 200, preempt) takes
/// the VIP from n2, cannot announce it, says so, goes in fault and hands it
/// back; the client ends on n2's MAC. Once the rule goes, n1 takes the VIP and
/// the client follows it.
#[test]
fn a_node_that_cannot_announce_hands_its_vips_to_the_peer() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("noannounce", 2);
    let vips = vec![lab.vip4(0)];
    let n2 = Daemon::start(lab.node(2), node_spec(&lab, "n2", 100, 1));
    wait_all_held_and_seen(&lab, &vips, 2, Duration::from_secs(20));
    lab.node(1).ns.exec(&[
        "nft",
        "add table netdev vipdtest\n\
         add chain netdev vipdtest out { type filter hook egress device \"eth0\" priority 0; }\n\
         add rule netdev vipdtest out meta protocol arp drop",
    ]);
    let started = Instant::now();
    let mut spec = node_spec(&lab, "n1", 200, 1);
    let metrics = format!("{}:9650", lab.node(1).v4);
    spec.extra.push(format!("metrics_listen = \"{metrics}\""));
    let n1 = Daemon::start(lab.node(1), spec);
    wait_until(
        "n1 says it cannot announce",
        Duration::from_secs(20),
        || n1.log().contains("cannot claim or announce the VIPs"),
    );
    let said = started.elapsed();
    wait_all_held_and_seen(&lab, &vips, 2, Duration::from_secs(10));
    eprintln!(
        "[noannounce] n1 reported the failed announcements {} ms after its start; n2 holds the VIP again and the client sees n2's MAC",
        ms(said)
    );
    // `vipd status` exits 2 while an instance is in fault; the JSON is there.
    let out = n1.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("n1 answers status");
    eprintln!(
        "[noannounce] n1 (status exit {:?}): state {}, fault {}",
        out.status.code(),
        status["instances"][0]["state"],
        status["instances"][0]["fault"]
    );

    let scraped = lab
        .node(1)
        .ns
        .exec(&["curl", "-s", &format!("http://{metrics}/metrics")]);
    let counter = |series: &str| -> u64 {
        scraped
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in the scrape:\n{scraped}"))
    };
    let faults = counter(r#"vipd_claim_faults_total{instance_name="i0"}"#);
    let failed = counter(r#"vipd_announcements_failed_total{instance_name="i0",kind="garp"}"#);
    eprintln!("[noannounce] metrics: vipd_claim_faults_total {faults}, vipd_announcements_failed_total (garp) {failed}");
    assert!(faults >= 1 && failed >= 2, "{scraped}");

    lab.node(1)
        .ns
        .exec(&["nft", "delete table netdev vipdtest"]);
    let took = {
        let start = Instant::now();
        wait_all_held_and_seen(&lab, &vips, 1, Duration::from_secs(90));
        start.elapsed()
    };
    let log = n1.log();
    let faults = log.matches("cannot claim or announce the VIPs").count();
    eprintln!(
        "[noannounce] rule removed: n1 holds the VIP and the client sees its MAC after {} ms; {faults} fault lines, {} 'fault cleared' lines",
        ms(took),
        log.matches("fault cleared").count()
    );
    assert!(log.contains("fault cleared"), "{log}");
    assert!(faults >= 1);
    drop(n2);
}
