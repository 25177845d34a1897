//! Health tracking between real daemons in namespaces: track scripts (real shell
//! scripts, with rise/fall and timeouts) and track files move the VIP.
//!
//! n1 (150) and n2 (100) run 100 ms adverts, so the master-down interval is about
//! 300 ms. Only n1 tracks anything. Measured times are printed (`--nocapture`).

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

const MASTER_DOWN: Duration = Duration::from_millis(300);
/// Room for a busy 2-core machine on top of each protocol bound.
const SLACK: Duration = Duration::from_millis(1500);

/// Starts n1 (150, with `n1_extra` lines in its instance) and n2 (100); waits
/// until n1 alone holds the VIP.
fn start(tag: &str, n1_extra: &[String]) -> (Lab, String, Vec<Daemon>) {
    let lab = Lab::new(tag, 2);
    let vip = lab.vip4(0);
    let mut n1 = InstanceSpec::new(150).vip(&vip);
    for line in n1_extra {
        n1 = n1.extra(line);
    }
    let daemons = start_nodes(&lab, vec![n1, InstanceSpec::new(100).vip(&vip)]);
    let took = wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    eprintln!("[{tag}] n1 holds {vip} after {} ms", ms(took));
    (lab, vip, daemons)
}

fn script_lines(command: &str, interval: &str, timeout: &str, rise: u32, fall: u32) -> Vec<String> {
    vec![
        "[[instance.track_script]]".into(),
        "name = \"svc\"".into(),
        format!("command = [{command:?}]"),
        "shell = true".into(),
        format!("interval = {interval:?}"),
        format!("timeout = {timeout:?}"),
        format!("rise = {rise}"),
        format!("fall = {fall}"),
    ]
}

/// `vipd status --json`'s first instance (the exit code says fault: 2; not checked).
fn instance_status(daemon: &Daemon) -> serde_json::Value {
    let out = daemon.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: vipd status --json ({}): {e}: {}{}",
            daemon.label,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    status["instances"][0].clone()
}

#[test]
fn failing_track_script_moves_vip_and_recovery_takes_it_back() {
    if !require_root() {
        return;
    }
    let scratch = Scratch::new("hscript");
    let flag = scratch.path("fail");
    let (interval, rise, fall) = (Duration::from_millis(200), 2u32, 3u32);
    let (lab, vip, daemons) = start(
        "hscript",
        &script_lines(&format!("test ! -e {flag}"), "200ms", "1s", rise, fall),
    );

    fs::write(&flag, "").unwrap();
    let bound = interval * fall + MASTER_DOWN;
    let took = wait_sole_holder(&lab, &vip, 2, bound + SLACK);
    eprintln!(
        "[hscript] script failing: n2 sole holder after {} ms (bound fall x interval + master-down = {} ms)",
        ms(took),
        ms(bound)
    );
    assert!(
        took >= interval * (fall - 1),
        "moved after {took:?}: faster than fall ({fall}) runs allow"
    );
    let n1 = instance_status(&daemons[0]);
    assert_eq!(n1["state"], "fault", "{n1:#}");
    assert!(
        n1["fault"]
            .as_str()
            .unwrap_or("")
            .contains("track script svc failing"),
        "{n1:#}"
    );

    fs::remove_file(&flag).unwrap();
    let took = wait_sole_holder(&lab, &vip, 1, interval * rise + SLACK);
    eprintln!(
        "[hscript] script good again: n1 (preempt) sole holder after {} ms (bound rise x interval = {} ms)",
        ms(took),
        ms(interval * rise)
    );
    assert!(
        took >= interval * (rise - 1),
        "took back after {took:?}: faster than rise ({rise}) runs allow"
    );
    hold_for("n1 alone holds the VIP", Duration::from_millis(500), || {
        lab.holders(&vip) == [1]
    });
}

/// Processes named `sleep` in the namespace.
fn sleeps_in(host: &Host) -> usize {
    host.ns
        .pids()
        .into_iter()
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .count()
}

#[test]
fn hanging_script_is_killed_at_its_timeout_and_counts_as_failure() {
    if !require_root() {
        return;
    }
    let scratch = Scratch::new("hhang");
    let flag = scratch.path("hang");
    let (interval, timeout, fall) = (Duration::from_millis(200), Duration::from_millis(300), 2u32);
    // While the flag exists the script hangs (a child sleeping for a minute).
    let (lab, vip, daemons) = start(
        "hhang",
        &script_lines(
            &format!("if [ -e {flag} ]; then sleep 60; fi; true"),
            "200ms",
            "300ms",
            1,
            fall,
        ),
    );
    fs::write(&flag, "").unwrap();
    let bound = (timeout + interval) * fall + MASTER_DOWN;
    let took = wait_sole_holder(&lab, &vip, 2, bound + SLACK);
    eprintln!(
        "[hhang] script hanging: n2 sole holder after {} ms (bound fall x (interval + timeout) + master-down = {} ms)",
        ms(took),
        ms(bound)
    );
    assert!(
        took >= timeout * fall,
        "moved after {took:?}, before {fall} runs could time out"
    );
    // Each hung run is killed with its group at the timeout: never more than
    // the one current `sleep 60`, however long this goes on.
    let mut most = 0;
    let check = Instant::now();
    while check.elapsed() < Duration::from_secs(2) {
        most = most.max(sleeps_in(lab.node(1)));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        most <= 1,
        "{most} hung scripts alive at once: not killed at the timeout"
    );
    let n1 = instance_status(&daemons[0]);
    assert!(
        n1["fault"].as_str().unwrap_or("").contains("timed out"),
        "{n1:#}"
    );
    // Adverts kept flowing from n1 while its script hung: n2 hears it alive.
    let n2 = instance_status(&daemons[1]);
    let peer = &n2["peers"][0];
    assert_eq!(peer["name"], "n1", "{n2:#}");
    assert_eq!(peer["alive"], true, "{n2:#}");
    assert_eq!(peer["state"], "fault", "{n2:#}");

    fs::remove_file(&flag).unwrap();
    let took = wait_sole_holder(&lab, &vip, 1, interval + timeout + SLACK);
    eprintln!(
        "[hhang] script good again: n1 sole holder after {} ms",
        ms(took)
    );
    wait_until("no hung script is left", Duration::from_secs(1), || {
        sleeps_in(lab.node(1)) == 0
    });
}

#[test]
fn track_file_change_shifts_priority_and_moves_vip() {
    if !require_root() {
        return;
    }
    let scratch = Scratch::new("hfile");
    let file = scratch.path("db.weight");
    fs::write(&file, "0\n").unwrap();
    let (lab, vip, daemons) = start(
        "hfile",
        &[
            "[[instance.track_file]]".into(),
            format!("path = {file:?}"),
            "interval = \"100ms\"".into(),
        ],
    );
    // 150 - 100 = 50 < n2's 100: n2 preempts.
    fs::write(&file, "-100\n").unwrap();
    let took = wait_sole_holder(&lab, &vip, 2, Duration::from_millis(100) + SLACK);
    eprintln!(
        "[hfile] wrote -100: n2 sole holder after {} ms (file read every 100 ms)",
        ms(took)
    );
    let n1 = instance_status(&daemons[0]);
    assert_eq!(n1["effective_priority"], 50, "{n1:#}");
    let reasons = n1["priority_reasons"].to_string();
    assert!(
        reasons.contains("track file") && reasons.contains("-100"),
        "{n1:#}"
    );
    assert_eq!(n1["state"], "backup", "{n1:#}");

    // Garbage counts 0 (with a warning): n1 is back at 150 and preempts.
    fs::write(&file, "not a number\n").unwrap();
    let took = wait_sole_holder(&lab, &vip, 1, Duration::from_millis(100) + SLACK);
    eprintln!(
        "[hfile] wrote garbage (counts 0): n1 sole holder after {} ms",
        ms(took)
    );
    assert_eq!(instance_status(&daemons[0])["effective_priority"], 150);
    assert!(daemons[0].log().contains("track file unusable"));
}

#[test]
fn tracked_interface_down_takes_its_weight_and_the_vip_moves() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("hiface", 2);
    // A veth pair inside n1 stands in for an uplink (no dummy module here).
    lab.node(1).ns.ip_batch(
        "link add uplink0 type veth peer name uplink1\nlink set uplink1 up\nlink set uplink0 up\n",
    );
    let vip = lab.vip4(0);
    let n1 = InstanceSpec::new(150)
        .vip(&vip)
        .extra("[[instance.track_interface]]")
        .extra("name = \"uplink0\"")
        .extra("weight = -100");
    let daemons = start_nodes(&lab, vec![n1, InstanceSpec::new(100).vip(&vip)]);
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));

    lab.node(1).ns.ip(&["link", "set", "uplink0", "down"]);
    let took = wait_sole_holder(&lab, &vip, 2, SLACK);
    eprintln!(
        "[hiface] tracked uplink0 down (weight -100): n2 sole holder after {} ms",
        ms(took)
    );
    let n1 = instance_status(&daemons[0]);
    assert_eq!(n1["effective_priority"], 50, "{n1:#}");
    assert!(
        n1["priority_reasons"]
            .to_string()
            .contains("-100 tracked interface uplink0 down"),
        "{n1:#}"
    );
    lab.node(1).ns.ip(&["link", "set", "uplink0", "up"]);
    let took = wait_sole_holder(&lab, &vip, 1, SLACK);
    eprintln!("[hiface] uplink0 up: n1 sole holder after {} ms", ms(took));
}
