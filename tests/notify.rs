//! Notify hooks between real daemons: real scripts run on each transition, in
//! order, with the right arguments and environment; a hanging hook is killed at
//! its timeout and does not delay a failover.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

/// One line of the hook log: the hook's label, its four arguments, the four
/// environment variables.
#[derive(Debug)]
struct Call {
    hook: String,
    args: [String; 4],
    env: [String; 4],
}

fn calls(log: &str) -> Vec<Call> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let f: Vec<String> = l.split('|').map(str::to_owned).collect();
            assert_eq!(f.len(), 9, "{l}");
            Call {
                hook: f[0].clone(),
                args: [f[1].clone(), f[2].clone(), f[3].clone(), f[4].clone()],
                env: [f[5].clone(), f[6].clone(), f[7].clone(), f[8].clone()],
            }
        })
        .collect()
}

/// A hook script that appends `LABEL|$1..$4|VIPD_*` to `log`.
fn logging_hook(scratch: &Scratch, log: &str) -> String {
    scratch.script(
        "hook.sh",
        &format!(
            "label=$1; shift\necho \"$label|$1|$2|$3|$4|$VIPD_INSTANCE|$VIPD_STATE|$VIPD_PREVIOUS_STATE|$VIPD_REASON\" >> {log}"
        ),
    )
}

#[test]
fn hooks_fire_in_transition_order_with_arguments_and_env() {
    if !require_root() {
        return;
    }
    let scratch = Scratch::new("nord");
    let log = scratch.path("calls.log");
    let hook = logging_hook(&scratch, &log);
    let lab = Lab::new("nord", 2);
    let vip = lab.vip4(0);
    let mut n1 = InstanceSpec::new(150)
        .vip(&vip)
        .extra("[instance.notify]")
        .extra("timeout = \"5s\"");
    for state in ["master", "backup", "fault", "stop", "any"] {
        n1 = n1.extra(&format!("{state} = [{hook:?}, {state:?}]"));
    }
    let mut daemons = start_nodes(&lab, vec![n1, InstanceSpec::new(100).vip(&vip)]);
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));

    // Fault (link down), then back (fault cleared, preempt), then stop.
    lab.node(1).link(false);
    wait_sole_holder(&lab, &vip, 2, Duration::from_secs(5));
    lab.node(1).link(true);
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(5));
    let status = daemons[0].sigterm();
    assert!(status.success(), "n1 exited with {status}");

    let want = [
        "backup", "master", "fault", "backup", "master", "backup", "stop",
    ];
    let got = calls(&log);
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(got.len(), want.len() * 2, "{text}");
    for (i, state) in want.iter().enumerate() {
        let (own, any) = (&got[2 * i], &got[2 * i + 1]);
        assert_eq!(own.hook, *state, "the state's own hook first:\n{text}");
        assert_eq!(any.hook, "any", "then `any`:\n{text}");
        for c in [own, any] {
            assert_eq!(c.args[0], "db", "{text}");
            assert_eq!(c.args[1], *state, "{text}");
            assert_eq!(c.args, c.env, "arguments and environment agree:\n{text}");
            assert!(!c.args[3].is_empty(), "a reason:\n{text}");
        }
        let previous = if i == 0 { "initialize" } else { want[i - 1] };
        assert_eq!(own.args[2], previous, "{text}");
    }
    assert_eq!(got[0].args[3], "start-up", "{text}");
    assert!(got[4].args[3].contains("interface eth0 is down"), "{text}");
    eprintln!("[nord] hook calls in order:\n{text}");
}

#[test]
fn hanging_hook_is_killed_and_does_not_delay_failover() {
    if !require_root() {
        return;
    }
    let scratch = Scratch::new("nhang");
    let log = scratch.path("calls.log");
    let hook = logging_hook(&scratch, &log);
    let hang = scratch.script("hang.sh", "sleep 60");
    let timeout = Duration::from_secs(2);
    let lab = Lab::new("nhang", 2);
    let vip = lab.vip4(0);
    let n2 = InstanceSpec::new(100)
        .vip(&vip)
        .extra("[instance.notify]")
        .extra(&format!("backup = [{hang:?}]"))
        .extra(&format!("master = [{hook:?}, \"master\"]"))
        .extra("timeout = \"2s\"");
    let started = Instant::now();
    let mut daemons = start_nodes(&lab, vec![InstanceSpec::new(150).vip(&vip), n2]);
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    // n2's backup hook (start-up) now hangs until its 2 s timeout.
    daemons[0].kill9();
    // A SIGKILLed node keeps its address; what matters is that n2 claims.
    let took = wait_until("n2 holds the VIP", Duration::from_secs(2), || {
        lab.node(2).holds(&vip)
    });
    let since_start = started.elapsed();
    eprintln!(
        "[nhang] n1 killed: n2 claimed the VIP after {} ms while its backup hook hung",
        ms(took)
    );
    assert!(
        since_start < timeout,
        "the failover finished {since_start:?} after start, not before the hung hook's timeout: it may have waited"
    );
    assert!(
        calls(&log).is_empty(),
        "the master hook ran before the hung backup hook was killed: out of order"
    );
    let waited = wait_until(
        "n2's master hook runs once the hung hook is killed",
        timeout + Duration::from_secs(3),
        || !calls(&log).is_empty(),
    );
    eprintln!(
        "[nhang] master hook ran {} ms after the failover (the hung hook's timeout is {} ms)",
        ms(waited),
        ms(timeout)
    );
    let got = calls(&log);
    assert_eq!(got[0].hook, "master");
    assert_eq!(got[0].args[2], "backup");
    let n2_log = daemons[1].log();
    assert!(
        n2_log.contains("notify hook failed") && n2_log.contains("timed out"),
        "{n2_log}"
    );
}

/// The gate (`notify.before_claim`): the VIP is claimed only after it exits 0,
/// and never while it runs; a gate that fails is a fault and the peer takes over.
#[test]
fn a_gate_holds_the_claim_until_it_passes_and_a_failed_gate_hands_over() {
    if !require_root() {
        return;
    }
    let scratch = Scratch::new("ngate");
    let log = scratch.path("gate.log");
    let lab = Lab::new("ngate", 2);
    let vip = lab.vip4(0);
    let address = vip.split('/').next().unwrap_or_default().to_owned();
    // Says whether the VIP was already on the node while the gate ran, takes
    // 300 ms (a promotion), then passes: "$1" is the instance, "$3" the previous state.
    let gate = scratch.script(
        "gate.sh",
        &format!(
            "if ip -o addr show dev eth0 | grep -q ' {address}/'; then held=yes; else held=no; fi\n\
             sleep 0.3\necho \"gate $1 from=$3 held-while-running=$held\" >> {log}\nexit 0"
        ),
    );
    let n1 = InstanceSpec::new(150)
        .vip(&vip)
        .extra("[instance.notify]")
        .extra(&format!("before_claim = [{gate:?}]"));
    let started = Instant::now();
    let mut daemons = start_nodes(&lab, vec![n1, InstanceSpec::new(100).vip(&vip)]);
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    let text = fs::read_to_string(&log).unwrap_or_default();
    eprintln!(
        "[ngate] n1 holds the VIP {} ms after start; gate log: {text:?}",
        ms(started.elapsed())
    );
    assert!(
        text.contains("gate db from=backup held-while-running=no"),
        "the gate ran once, before the claim: {text:?}"
    );

    // Now the gate fails: n1 must give the VIP up and n2 take it.
    fs::write(&gate, "#!/bin/sh\nexit 3\n").expect("rewrite the gate");
    lab.node(1).link(false);
    wait_sole_holder(&lab, &vip, 2, Duration::from_secs(10));
    lab.node(1).link(true);
    // n1 outranks n2 and preempts; its gate fails, so the VIP goes back to n2
    // and n1 does not preempt again.
    wait_until(
        "n1 reports the failed gate",
        Duration::from_secs(20),
        || {
            daemons[0]
                .first_instance_status()
                .and_then(|(_, s)| s["fault"].as_str().map(str::to_owned))
                .is_some_and(|f| f.contains("before_claim hook failed"))
        },
    );
    // n2 stepped down for n1 and takes the VIP back once it hears n1 release
    // (or its master-down interval runs out).
    sleep_checked(Duration::from_secs(2));
    wait_sole_holder(&lab, &vip, 2, Duration::from_secs(10));
    hold_for("n2 keeps the VIP", Duration::from_secs(12), || {
        lab.holders(&vip) == [2]
    });
    let status = daemons[0].sigterm();
    assert!(status.success(), "n1 exited with {status}");
}

/// `vipd drain --wait` waits for the successor's gate (its adverts say the
/// claim is pending) and is rolled back when that gate fails; the old
/// master's `after_release` runs only once its VIP is gone.
#[test]
fn a_drain_waits_for_the_successors_gate_and_rolls_back_when_it_fails() {
    if !require_root() {
        return;
    }
    let scratch = Scratch::new("ndrgt");
    let log = scratch.path("hooks.log");
    let fail = scratch.path("gate-fails");
    let lab = Lab::new("ndrgt", 2);
    let vip = lab.vip4(0);
    let address = vip.split('/').next().unwrap_or_default().to_owned();
    let held = format!(
        "if ip -o addr show dev eth0 | grep -q ' {address}/'; then held=yes; else held=no; fi"
    );
    // n2's gate: a 1 s promotion that fails while the file `fail` exists.
    let gate = scratch.script(
        "gate.sh",
        &format!(
            "sleep 1\nif [ -e {fail} ]; then echo gate-failed >> {log}; exit 3; fi\n\
             echo gate-passed >> {log}\nexit 0"
        ),
    );
    // n1's after_release: was the VIP still on n1 when it ran?
    let after = scratch.script(
        "after.sh",
        &format!("{held}\necho \"after_release state=$2 previous=$3 held=$held\" >> {log}"),
    );
    let n1 = InstanceSpec::new(150)
        .vip(&vip)
        .extra("[instance.notify]")
        .extra(&format!("after_release = [{after:?}]"));
    let n2 = InstanceSpec::new(100)
        .vip(&vip)
        .extra("[instance.notify]")
        .extra(&format!("before_claim = [{gate:?}]"));
    let mut daemons = start_nodes(&lab, vec![n1, n2]);
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    // A drain needs a successor n1 has heard (it refuses otherwise).
    wait_until(
        "n1 hears n2 as a live backup",
        Duration::from_secs(20),
        || {
            daemons[0].first_instance_status().is_some_and(|(_, s)| {
                s["peers"].as_array().is_some_and(|peers| {
                    peers
                        .iter()
                        .any(|p| p["alive"] == true && p["state"] == "backup")
                })
            })
        },
    );

    // The successor's gate fails: the drain is rolled back.
    fs::write(&fail, "").expect("write the failure switch");
    let started = Instant::now();
    let out = daemons[0].cli(&["drain", "--wait", "--timeout", "20s"]);
    let took = started.elapsed();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "[ndrgt] drain --wait with a failing gate: exit {:?} after {} ms: {said:?}",
        out.status.code(),
        ms(took)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("drain rolled back: successor n2"), "{said}");
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(10));
    let (_, status) = daemons[0].first_instance_status().expect("n1's status");
    assert_eq!(status["drained"], false, "{status:#}");
    assert!(
        !daemons[0].dir.join("state/db.drained").exists(),
        "a rolled-back drain must not survive a restart"
    );

    // The gate passes now: once n2's gate fault is over, a drain waits for
    // it and returns with the VIP on n2.
    fs::remove_file(&fail).expect("remove the failure switch");
    wait_until("n2's gate fault is over", Duration::from_secs(30), || {
        daemons[1]
            .first_instance_status()
            .is_some_and(|(_, s)| s["fault"].is_null() && s["state"] == "backup")
    });
    let started = Instant::now();
    let out = daemons[0].cli(&["drain", "--wait", "--timeout", "20s"]);
    let took = started.elapsed();
    let holders = lab.holders(&vip);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "[ndrgt] drain --wait with a 1 s gate: exit {:?} after {} ms, holders then {holders:?}: {said:?}",
        out.status.code(),
        ms(took)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("now master on n2"), "{said}");
    assert!(
        took >= Duration::from_millis(900),
        "drain --wait returned before the 1 s gate could have passed"
    );
    assert_eq!(holders, [2], "n2 serves when drain --wait returns");

    let text = fs::read_to_string(&log).unwrap_or_default();
    eprintln!("[ndrgt] hook log: {text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("after_release"))
            .count()
            >= 2,
        "n1 released twice: {text:?}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("after_release"))
            .all(|l| l.ends_with("previous=master held=no")),
        "after_release runs once the VIP is gone: {text:?}"
    );
    assert!(lines.contains(&"gate-failed") && lines.contains(&"gate-passed"));
    for d in &mut daemons {
        let status = d.sigterm();
        assert!(status.success(), "exited with {status}");
    }
}
