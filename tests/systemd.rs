//! The shipped unit, `systemd/vipd.service`, under a real systemd: each node is
//! systemd as PID 1 of its own namespaces with `eth0` on a lab bridge (see
//! tests/common/systemd.rs), running the unit unchanged with the built binary at
//! `/usr/sbin/vipd` and its configuration at `/etc/vipd/vipd.toml`.
//!
//! Covered: a `Type=notify` start with its status text, journald-native log
//! fields, and a stop that releases; the unit skipped without a configuration;
//! `systemctl reload` losing no probe; a two-node handover on `systemctl stop`
//! with no moment without a holder; SIGKILL and a watchdog abort (SIGSTOP) with
//! the VIP gone before the restart (the unit's `ExecStopPost=vipd cleanup`); the
//! gateway guard and the IPv6 NA Router flag, both of which need what the unit
//! hides (`ProcSubset=pid`) to come from netlink; and, without root, the unit's
//! exposure and its stop timeout against vipd's limits. Also what only a real
//! systemd shows: hooks do not inherit NOTIFY_SOCKET or WATCHDOG_*.
//!
//! Each test prints what it measured (`cargo test --release --test systemd --
//! --nocapture`). Times come from netlink's address events and the journal, both
//! on CLOCK_MONOTONIC.

mod common;

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use vipd::config::defaults::{MAX_HANDOVER_TIMEOUT, NOTIFY_TIMEOUT};

/// Node `name`'s configuration: instance `db`, this priority, 100 ms adverts,
/// one VIP.
fn spec(name: &str, priority: u8, vip: &str) -> NodeSpec {
    NodeSpec::new(name, InstanceSpec::new(priority).vip(vip))
}

/// Waits until `node` holds `vip` and its status text says master; returns how
/// long that took.
fn wait_master(node: &SystemdNode, vip: &str) -> Duration {
    wait_until(
        &format!("{} is master and holds {vip}", node.role),
        Duration::from_secs(20),
        || node.host().holds(vip) && node.property("StatusText").contains("db: master"),
    )
}

/// `b - a` in ms, for printing.
fn ms_between(a: u64, b: u64) -> f64 {
    us_to_ms(b as i64 - a as i64)
}

#[test]
fn start_status_and_stop_under_the_unit() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("sdstart", 0);
    let vip = lab.vip4(0);
    let node = SystemdNode::boot(&lab, 1, &UnitSetup::new(spec("sd1", 150, &vip)));

    let started = node.start_vipd();
    assert_eq!(node.property("ActiveState"), "active");
    assert_eq!(node.property("SubState"), "running");
    let master = wait_master(&node, &vip);
    let status = node.systemctl_ok(&["status", "--no-pager", "vipd.service"]);
    assert!(
        status.contains("Status: \"db: master\""),
        "systemctl status shows no status text:\n{status}"
    );
    // The unit's directories: the socket in RuntimeDirectory, state in StateDirectory.
    assert!(
        node.inside("/run/vipd/vipd.sock").exists(),
        "no control socket"
    );
    assert!(node.inside("/var/lib/vipd").is_dir(), "no state directory");
    let cli = node.nsenter("/usr/sbin/vipd", &["status"]);
    assert!(
        cli.status.success() && output_text(&cli).contains("master"),
        "vipd status over /run/vipd/vipd.sock: {}",
        output_text(&cli)
    );
    eprintln!(
        "[sdstart] systemctl start returned after {} ms (READY=1); master holding {vip} {} ms later",
        ms(started),
        ms(master)
    );
    // Under systemd vipd logs to the journal natively: fields, not text.
    let journal = node.journal_json();
    let change = journal
        .iter()
        .find(|e| e["INSTANCE"] == "db" && e["STATE"] == "master")
        .unwrap_or_else(|| panic!("no journal entry with INSTANCE=db STATE=master:\n{journal:#?}"));
    let message = change["MESSAGE"].as_str().unwrap_or_default();
    assert!(
        !message.starts_with(|c: char| c.is_ascii_digit()),
        "a second timestamp in the journal's message: {message:?}"
    );
    eprintln!(
        "[sdstart] journal: MESSAGE={message:?} INSTANCE=db STATE=master PREVIOUS={:?} REASON={:?}",
        change["PREVIOUS"].as_str().unwrap_or("-"),
        change["REASON"].as_str().unwrap_or("-")
    );

    let stopping = Instant::now();
    node.systemctl_ok(&["stop", "vipd.service"]);
    let stop_took = stopping.elapsed();
    assert_eq!(node.property("ActiveState"), "inactive");
    assert_eq!(node.property("Result"), "success", "{}", node.journal());
    assert!(
        !node.host().holds(&vip),
        "the VIP outlived systemctl stop:\n{}",
        node.host().addr_text()
    );
    eprintln!(
        "[sdstart] systemctl stop took {} ms (incl. ExecStopPost); VIP released",
        ms(stop_took)
    );

    // Without a configuration the unit is skipped, not failed.
    fs::remove_file(node.inside("/etc/vipd/vipd.toml")).expect("remove the configuration");
    node.systemctl_ok(&["start", "vipd.service"]);
    assert_eq!(node.property("ActiveState"), "inactive");
    assert_eq!(node.property("ConditionResult"), "no");
    eprintln!("[sdstart] without /etc/vipd/vipd.toml: start skipped (ConditionPathExists)");
}

#[test]
fn reload_keeps_the_vip() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("sdreload", 0);
    let vip = lab.vip4(0);
    let node = SystemdNode::boot(&lab, 1, &UnitSetup::new(spec("sd1", 150, &vip)));
    node.start_vipd();
    wait_master(&node, &vip);
    let main_pid = node.property("MainPID");
    let watch = AddrWatch::start(node.host()).expect("address watch");

    let interval = Duration::from_millis(2);
    let probe = Prober::start(&lab.client, &vip, interval, 1500);
    thread::sleep(Duration::from_secs(1));
    let reload_at = monotonic_us();
    node.systemctl_ok(&["reload", "vipd.service"]);
    let reloaded = wait_until("vipd logs the reload", Duration::from_secs(10), || {
        node.journal_time("configuration reloaded", reload_at)
            .is_some()
    });
    let result = probe.finish();

    assert_eq!(node.property("MainPID"), main_pid, "reload restarted vipd");
    assert_eq!(node.property("ActiveState"), "active");
    let released = watch.first(&vip, false, 0);
    assert!(
        released.is_none(),
        "the reload removed the VIP (at +{} ms)",
        ms_between(reload_at, released.map_or(0, |e| e.at))
    );
    eprintln!(
        "[sdreload] systemctl reload: logged after {} ms; client pinging every {} ms: {} sent, {} lost ({})",
        ms(reloaded),
        interval.as_millis(),
        result.sent,
        result.lost.len(),
        result.describe_lost(interval)
    );
    assert!(
        result.lost.is_empty(),
        "the reload lost probes: {}",
        result.describe_lost(interval)
    );
}

#[test]
fn stop_hands_over_with_no_moment_without_a_holder() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("sdhandover", 0);
    let vip = lab.vip4(0);
    let nodes = SystemdNode::boot_all(
        &lab,
        &[
            UnitSetup::new(spec("sd1", 150, &vip)),
            UnitSetup::new(spec("sd2", 100, &vip)),
        ],
    );
    for node in &nodes {
        node.start_vipd();
    }
    wait_master(&nodes[0], &vip);
    wait_until("sd2 is backup", Duration::from_secs(20), || {
        nodes[1].property("StatusText").contains("db: backup") && !nodes[1].host().holds(&vip)
    });
    let watches: Vec<AddrWatch> = nodes
        .iter()
        .map(|n| AddrWatch::start(n.host()).expect("address watch"))
        .collect();
    let vip_addr: Ipv4Addr = strip_prefix_len(&vip).parse().expect("IPv4 VIP");
    let arp = ArpProber::start(&lab.client, vip_addr).expect("ARP prober");
    let interval = Duration::from_millis(2);
    let ping = Prober::start(&lab.client, &vip, interval, 2000);
    thread::sleep(Duration::from_secs(1));

    let stop_at = monotonic_us();
    let stopping = Instant::now();
    nodes[0].systemctl_ok(&["stop", "vipd.service"]);
    let stop_took = stopping.elapsed();
    let result = ping.finish();
    let window = arp
        .snapshot()
        .window(stopping, stopping + stop_took + Duration::from_millis(500));

    let claimed = watches[1]
        .first(&vip, true, stop_at)
        .unwrap_or_else(|| panic!("sd2 never claimed {vip}\n{}", nodes[1].journal()));
    let released = watches[0]
        .first(&vip, false, stop_at)
        .unwrap_or_else(|| panic!("sd1 never released {vip}\n{}", nodes[0].journal()));
    eprintln!(
        "[sdhandover] systemctl stop on sd1 took {} ms; sd2 claimed at +{:.1} ms, sd1 released at +{:.1} ms \
         (both held it for {:.1} ms)",
        ms(stop_took),
        ms_between(stop_at, claimed.at),
        ms_between(stop_at, released.at),
        ms_between(claimed.at, released.at)
    );
    eprintln!(
        "[sdhandover] client: ping every {} ms: {} sent, {} lost ({}); ARP every 1 ms over the stop: \
         {} lost, longest gap {:.1} ms, {} answered by two MACs",
        interval.as_millis(),
        result.sent,
        result.lost.len(),
        result.describe_lost(interval),
        window.lost,
        window.longest_gap_ms,
        window.answered_by_two
    );
    assert!(
        claimed.at <= released.at,
        "a moment without a holder: sd1 released at +{:.1} ms, before sd2 claimed at +{:.1} ms",
        ms_between(stop_at, released.at),
        ms_between(stop_at, claimed.at)
    );
    assert!(nodes[1].host().holds(&vip) && !nodes[0].host().holds(&vip));
    assert_eq!(nodes[0].property("Result"), "success");
}

/// Kills vipd with `how` (a `systemctl kill` after `setup`) and measures, from
/// netlink's address events, when the VIP went and came back with the restart.
/// Returns (kill sent, VIP gone) in CLOCK_MONOTONIC µs.
fn vip_gone_before_restart(node: &SystemdNode, vip: &str, kill_args: &[&str]) -> (u64, u64) {
    let main_pid = node.property("MainPID");
    let watch = AddrWatch::start(node.host()).expect("address watch");
    let sent = monotonic_us();
    let mut args = vec!["kill"];
    args.extend_from_slice(kill_args);
    args.push("vipd.service");
    node.systemctl_ok(&args);
    let gone = watch
        .wait_for(vip, false, sent, Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "{vip} still on {} 30 s after `systemctl {}`:\n{}",
                node.role,
                args.join(" "),
                node.host().addr_text()
            )
        });
    let back = watch
        .wait_for(vip, true, sent, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the restarted vipd never claimed {vip} again"));
    wait_master(node, vip);
    assert_ne!(node.property("MainPID"), main_pid);
    // When systemd started the new process (not "Started", which a Type=notify
    // unit logs at READY=1, after vipd's own start-up clean-up).
    let restarted: u64 = node
        .property("ExecMainStartTimestampMonotonic")
        .parse()
        .expect("ExecMainStartTimestampMonotonic");
    assert!(
        gone.at < restarted && gone.at < back.at,
        "the VIP was not gone before the restart: gone at +{:.1} ms, restarted at +{:.1} ms, \
         claimed again at +{:.1} ms",
        ms_between(sent, gone.at),
        ms_between(sent, restarted),
        ms_between(sent, back.at)
    );
    eprintln!(
        "[{}] restart: started +{:.1} ms after the kill, VIP claimed again at +{:.1} ms (NRestarts={})",
        node.role,
        ms_between(sent, restarted),
        ms_between(sent, back.at),
        node.property("NRestarts")
    );
    (sent, gone.at)
}

#[test]
fn sigkill_leaves_no_vip_before_the_restart() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("sdkill", 0);
    let vip = lab.vip4(0);
    let node = SystemdNode::boot(&lab, 1, &UnitSetup::new(spec("sd1", 150, &vip)));
    node.start_vipd();
    wait_master(&node, &vip);

    let (sent, gone) = vip_gone_before_restart(&node, &vip, &["-s", "KILL"]);
    let exited = node
        .journal_time("Main process exited, code=killed", sent)
        .expect("systemd logged the kill");
    eprintln!(
        "[sdkill] SIGKILL: VIP gone {:.1} ms after `systemctl kill -s KILL` was run \
         ({:.1} ms after systemd logged the main process's exit)",
        ms_between(sent, gone),
        ms_between(exited, gone)
    );
}

#[test]
fn watchdog_abort_leaves_no_vip_before_the_restart() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("sdwatchdog", 0);
    let vip = lab.vip4(0);
    let setup = UnitSetup::new(spec("sd1", 150, &vip)).dropin("[Service]\nWatchdogSec=2s\n");
    let node = SystemdNode::boot(&lab, 1, &setup);
    node.start_vipd();
    wait_master(&node, &vip);

    // A stopped daemon sends no watchdog pings and cannot release anything.
    let (stopped, gone) =
        vip_gone_before_restart(&node, &vip, &["--kill-whom=main", "-s", "SIGSTOP"]);
    let timeout = node
        .journal_time("Watchdog timeout", stopped)
        .expect("systemd logged the watchdog timeout");
    assert!(gone > timeout, "the VIP went before the watchdog fired");
    eprintln!(
        "[sdwatchdog] SIGSTOP: watchdog fired {:.1} ms later (WatchdogSec=2s); VIP gone {:.1} ms \
         after the watchdog timeout",
        ms_between(stopped, timeout),
        ms_between(timeout, gone)
    );
}

#[test]
fn gateway_guard_works_under_the_unit() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("sdguard", 0);
    let gateway = lab_host(&lab, "gw", 254);
    let vip = lab.vip4(0);
    let instance = InstanceSpec::new(150)
        .vip(&vip)
        .extra("[instance.guard]")
        .extra("witness = \"gateway\"")
        .extra("interval = \"200ms\"")
        .extra("timeout = \"200ms\"");
    let node = SystemdNode::boot(&lab, 1, &UnitSetup::new(NodeSpec::new("sd1", instance)));
    node.host()
        .ns
        .ip(&["route", "add", "default", "via", &gateway.v4]);
    assert!(
        node.host().ping(&gateway.v4),
        "the gateway does not answer ping from the node"
    );
    node.start_vipd();
    let took = wait_master(&node, &vip);
    eprintln!(
        "[sdguard] witness = \"gateway\" ({} via the default route): master after {} ms",
        gateway.v4,
        ms(took)
    );
}

#[test]
fn na_carries_the_router_flag_on_a_forwarding_host() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("sdna", 0);
    let vip = lab.vip6(0);
    let node = SystemdNode::boot(&lab, 1, &UnitSetup::new(spec("sd1", 150, &vip)));
    node.host().ns.sysctl(&["net.ipv6.conf.eth0.forwarding=1"]);
    let target: Ipv6Addr = strip_prefix_len(&vip).parse().expect("IPv6 VIP");
    let watch = NaWatch::start(&lab.client, target).expect("NA watch");
    node.start_vipd();
    wait_master(&node, &vip);
    let unsolicited = || -> Vec<NaSeen> {
        watch
            .seen()
            .into_iter()
            .filter(|na| !na.solicited)
            .collect()
    };
    // announce_count is 5 at 100 ms.
    wait_until(
        "the client saw 5 unsolicited NAs for the VIP",
        Duration::from_secs(10),
        || unsolicited().len() >= 5,
    );
    let seen = unsolicited();
    let with_router = seen.iter().filter(|na| na.router).count();
    eprintln!(
        "[sdna] net.ipv6.conf.eth0.forwarding=1: {} unsolicited NAs for {target} from {}, {with_router} with \
         the Router flag, {} with Override",
        seen.len(),
        fmt_mac(&seen[0].src_mac),
        seen.iter().filter(|na| na.override_flag).count()
    );
    assert_eq!(
        with_router,
        seen.len(),
        "unsolicited NAs without the Router flag from a forwarding host: {seen:?}"
    );
}

#[test]
fn hooks_get_a_clean_environment_under_the_unit() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("sdhookenv", 0);
    let vip = lab.vip4(0);
    let instance = InstanceSpec::new(150)
        .vip(&vip)
        .extra("[instance.notify]")
        .extra("master = [\"/etc/vipd/env-hook\"]");
    // /run/vipd (RuntimeDirectory) is one of the two places the unit may write.
    let setup = UnitSetup::new(NodeSpec::new("sd1", instance)).script(
        "env-hook",
        "env > /run/vipd/hook-env.tmp && mv /run/vipd/hook-env.tmp /run/vipd/hook-env",
    );
    let node = SystemdNode::boot(&lab, 1, &setup);
    node.start_vipd();
    wait_master(&node, &vip);
    let dump = node.inside("/run/vipd/hook-env");
    wait_until("the master hook ran", Duration::from_secs(10), || {
        dump.exists()
    });
    let env = fs::read_to_string(&dump).expect("read the hook's environment");
    let mut names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(name, _)| name))
        .collect();
    names.sort_unstable();
    eprintln!("[sdhookenv] the master hook's environment under the unit: {names:?}");
    // What /bin/sh adds by itself: PWD, SHLVL, _ (OLDPWD with some shells).
    let unexpected: Vec<&&str> = names
        .iter()
        .filter(|n| {
            !(["PATH", "LANG", "PWD", "SHLVL", "_", "OLDPWD"].contains(n) || n.starts_with("VIPD_"))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "the hook inherited {unexpected:?} (NOTIFY_SOCKET or WATCHDOG_* would let it speak for vipd):\n{env}"
    );
    assert!(env.lines().any(|l| l == "VIPD_STATE=master"), "{env}");
}

/// `script_user` under the unit as shipped: a hook and a track script run as
/// `nobody` (the unit's capability bounding set must allow the switch; a
/// track script that ran as root would fail its check and keep the node in
/// fault).
#[test]
fn hooks_and_scripts_run_as_script_user_under_the_unit() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("sdhookuser", 0);
    let vip = lab.vip4(0);
    let instance = InstanceSpec::new(150)
        .vip(&vip)
        .extra("track_script = [{ name = \"not-root\", command = [\"/bin/sh\", \"-c\", \"test $(id -u) -ne 0\"], interval = \"200ms\" }]")
        .extra("[instance.notify]")
        .extra("master = [\"/etc/vipd/user-hook\"]");
    let mut spec = NodeSpec::new("sd1", instance);
    spec.extra.push("script_user = \"nobody\"".into());
    let setup = UnitSetup::new(spec).script(
        "user-hook",
        "logger -t vipd-hooktest \"hook ran as $(id -un) uid=$(id -u) HOME=$HOME\"",
    );
    let node = SystemdNode::boot(&lab, 1, &setup);
    node.start_vipd();
    wait_master(&node, &vip);
    let logged = |journal: &str| {
        journal
            .lines()
            .find(|l| l.contains("hook ran as"))
            .map(str::to_owned)
    };
    wait_until("the master hook logged", Duration::from_secs(10), || {
        logged(&node.journal_tagged("vipd-hooktest")).is_some()
    });
    let line = logged(&node.journal_tagged("vipd-hooktest")).unwrap_or_default();
    eprintln!("[sdhookuser] {line}");
    assert!(line.contains("hook ran as nobody"), "{line}");
}

/// Whether `systemd-analyze` is missing; then the caller skips (or, with CI
/// set, fails: tests/run.sh installs it).
fn systemd_analyze_missing(test: &str) -> bool {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: systemd-analyze not found and CI is set (tests/run.sh installs systemd)"
    );
    eprintln!("skipping {test}: systemd-analyze not found (package systemd)");
    true
}

#[test]
fn unit_exposure_is_at_most_2_6() {
    if systemd_analyze_missing("unit_exposure_is_at_most_2_6") {
        return;
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager", SHIPPED_UNIT])
        .output()
        .expect("run systemd-analyze");
    let text = output_text(&out);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for vipd.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    eprintln!("[exposure] systemd-analyze security --offline=yes: {exposure}");
    // 2.3 for what adverts and VIPs need, plus 0.3 for CAP_SETUID/CAP_SETGID,
    // which hooks that run as another user (`script_user`) need.
    assert!(exposure <= 2.6, "exposure {exposure} > 2.6:\n{text}");
}

/// The value of `key=` in the unit's lines, which must appear exactly once.
fn unit_setting(unit: &str, key: &str) -> String {
    let values: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .collect();
    assert_eq!(
        values.len(),
        1,
        "{key}= should appear once in the unit: {values:?}"
    );
    values[0].trim().to_owned()
}

#[test]
fn stop_timeout_covers_the_longest_handover() {
    // What may pass between SIGTERM and the exit: the longest handover the
    // configuration accepts, then the stop hook; the slack is for a loaded host.
    const SLACK: Duration = Duration::from_secs(10);
    let unit = fs::read_to_string(SHIPPED_UNIT).expect("read the unit");
    let value = unit_setting(&unit, "TimeoutStopSec");
    let timeout =
        humantime::parse_duration(&value).unwrap_or_else(|e| panic!("TimeoutStopSec={value}: {e}"));
    let needed = MAX_HANDOVER_TIMEOUT + NOTIFY_TIMEOUT + SLACK;
    eprintln!(
        "[stop-timeout] TimeoutStopSec={value}; needed: {:?} handover + {:?} stop hook + {:?} slack = {:?}",
        MAX_HANDOVER_TIMEOUT, NOTIFY_TIMEOUT, SLACK, needed
    );
    assert!(
        timeout >= needed,
        "TimeoutStopSec={value} would SIGKILL a handover the configuration allows (needs {needed:?})"
    );
    assert!(
        !unit.lines().any(|l| l.trim().starts_with("TimeoutSec=")),
        "TimeoutSec= would override TimeoutStopSec="
    );
}

#[test]
fn unit_cleans_up_with_the_same_binary_and_configuration() {
    let unit = fs::read_to_string(SHIPPED_UNIT).expect("read the unit");
    let start = unit_setting(&unit, "ExecStart");
    let post = unit_setting(&unit, "ExecStopPost");
    let (binary, run_args) = start
        .split_once(" run ")
        .expect("ExecStart runs `vipd run`");
    assert_eq!(binary, "/usr/sbin/vipd");
    assert_eq!(post, format!("{binary} cleanup {run_args}"));
    assert_eq!(
        unit_setting(&unit, "ConditionPathExists"),
        run_args.trim_start_matches("--config ")
    );
}

/// VRRP mode under the shipped unit (its capabilities, address families and
/// system-call filter allow the raw IP-protocol-112 socket): vipd takes the
/// VIP from a keepalived peer by preemption, and after a SIGKILL the unit's
/// clean-up (`ExecStopPost=vipd cleanup`) sends the priority-0 advert the
/// dead daemon would have, so keepalived takes over at its skew time.
#[test]
fn vrrp_mode_beside_keepalived_under_the_unit() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("sdvrrp", 0);
    let vip = lab.vip4(0);
    let peer = lab_host(&lab, "ka", 2);
    let mut keepalived = Daemon::configure_keepalived(
        &peer,
        "ka",
        &format!(
            "global_defs {{\n    router_id ka\n    vrrp_version 3\n}}\n\nvrrp_instance db {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority 100\n    advert_int 0.1\n    virtual_ipaddress {{\n        {vip} dev eth0\n    }}\n}}\n"
        ),
    );
    keepalived.restart();
    wait_until("keepalived holds the VIP", Duration::from_secs(20), || {
        peer.holds(&vip)
    });
    let instance = InstanceSpec::new(150)
        .vip(&vip)
        .auth_none()
        .extra("protocol = \"vrrp3\"");
    let node = SystemdNode::boot(&lab, 1, &UnitSetup::new(NodeSpec::new("sd1", instance)));
    node.start_vipd();
    wait_master(&node, &vip);
    wait_until(
        "keepalived let go of the VIP",
        Duration::from_secs(10),
        || !peer.holds(&vip),
    );
    let killed = Instant::now();
    node.systemctl_ok(&["kill", "-s", "KILL", "vipd"]);
    wait_until(
        "keepalived holds the VIP again",
        Duration::from_secs(10),
        || peer.holds(&vip),
    );
    eprintln!(
        "[sdvrrp] vipd SIGKILLed under the unit: keepalived held the VIP {} ms after the kill (its skew 60.9 ms, its master-down interval 360.9 ms)",
        ms(killed.elapsed())
    );
    wait_until(
        "keepalived logs the clean-up's priority-0 advert",
        Duration::from_secs(5),
        || {
            keepalived
                .log()
                .contains("Backup received priority 0 advertisement")
        },
    );
    assert!(
        node.journal().contains("announced the release"),
        "{}",
        node.journal()
    );
}
