//! Rolling maintenance without dropped traffic: `vipd drain --wait`, SIGTERM and
//! `vipd promote --wait` on real daemons while a client pings the VIP every 2 ms.
//!
//! The bound asserted here is the feature: a planned handover loses at most one
//! 2 ms probe (make-before-break: the old master keeps the VIP until it hears the
//! successor, and the successor's gratuitous ARP moves the client). Everything
//! else is logged with `eprintln!` (run with `--nocapture` to see the numbers).
//!
//! One test, one lab, the steps in sequence: a 2 ms ping flood is sensitive to a
//! busy machine, so nothing else of this binary runs beside it.

mod common;

use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Probe spacing (root may ping this fast).
const PROBE_INTERVAL: Duration = Duration::from_millis(2);
/// Probes per measurement: 4 s at 2 ms.
const PROBES: u32 = 2000;
/// When, after the probes start, the operation under test begins.
const LEAD_IN: Duration = Duration::from_millis(1000);

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `operation` while the client pings `vip` every 2 ms and returns the probes
/// lost, after logging them under `what`.
fn measure(lab: &Lab, vip: &str, what: &str, operation: impl FnOnce()) -> ProbeResult {
    let prober = Prober::start(&lab.client, vip, PROBE_INTERVAL, PROBES);
    thread::sleep(LEAD_IN);
    let at = prober.elapsed();
    let wall = utc_time_of_day(unix_now());
    let started = Instant::now();
    operation();
    let took = started.elapsed();
    let result = prober.finish();
    eprintln!(
        "[maint] {what}: {} of {} probes lost at {} ms intervals (operation at ~{} ms = {wall} UTC, took {} ms); lost: {}; ping: {}",
        result.lost.len(),
        result.sent,
        PROBE_INTERVAL.as_millis(),
        at.as_millis(),
        took.as_millis(),
        result.describe_lost(PROBE_INTERVAL),
        result.summary
    );
    result
}

/// Waits until the client's neighbour entry for `vip` shows host `i`'s MAC.
fn client_on(lab: &Lab, vip: &str, i: usize) {
    let mac = lab.node(i).mac();
    wait_until(
        &format!("the client's entry for {vip} shows n{i}'s MAC"),
        Duration::from_secs(5),
        || lab.client.ping(vip) && lab.client.neigh_mac(vip).as_deref() == Some(mac.as_str()),
    );
}

#[test]
fn drain_sigterm_and_promote_lose_at_most_one_probe() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("maint", 2);
    let vip = lab.vip4(0);
    // Preempt off, so that an undrained or restarted node stays backup and each
    // step starts from a known master.
    let spec = |prio| InstanceSpec::new(prio).vip(&vip).preempt(false);
    let mut daemons = start_nodes(&lab, vec![spec(150), spec(100)]);
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    client_on(&lab, &vip, 1);
    // The master must know its successor is alive before a drain is accepted.
    wait_until("n1 hears n2 alive", Duration::from_secs(10), || {
        daemons[0].status_json().is_some_and(|s| {
            s["instances"][0]["peers"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["alive"] == true))
        })
    });

    // Steady state: a backup that has been up for 3 backup advert intervals (3 s)
    // knows every peer's rank and takes a release at once; before that it waits
    // the RFC's skew (61 ms at priority 100), which costs no probes but time.
    thread::sleep(Duration::from_millis(3500));

    // 1. drain --wait on the master (n1): n2 takes over.
    let mut drain_out = None;
    let drained = measure(&lab, &vip, "drain --wait of master n1", || {
        drain_out = Some(daemons[0].cli(&["drain", "--wait"]));
    });
    let drain_out = drain_out.expect("drain ran");
    eprintln!(
        "[maint] vipd drain --wait said: {}",
        text(&drain_out).trim()
    );
    assert!(
        drain_out.status.success(),
        "drain --wait failed: {}{}",
        text(&drain_out),
        all_logs()
    );
    assert_eq!(lab.holders(&vip), [2], "{}", lab.describe());
    client_on(&lab, &vip, 2);

    // 2. n1 back into service (stays backup: preempt off); SIGTERM of master n2.
    let undrain = daemons[0].cli(&["undrain"]);
    assert!(undrain.status.success(), "undrain: {}", text(&undrain));
    wait_until(
        "n2 hears n1 eligible again",
        Duration::from_secs(10),
        || {
            daemons[1].status_json().is_some_and(|s| {
                s["instances"][0]["peers"].as_array().is_some_and(|p| {
                    p.iter().any(|p| {
                        p["name"] == "n1"
                            && p["alive"] == true
                            && !p["flags"]
                                .as_array()
                                .is_some_and(|f| f.iter().any(|f| f == "drained"))
                    })
                })
            })
        },
    );
    assert_eq!(
        lab.holders(&vip),
        [2],
        "undrain with preempt off moved the VIP"
    );
    let mut status = None;
    let stopped = measure(&lab, &vip, "SIGTERM of master n2", || {
        status = Some(daemons[1].sigterm());
    });
    let status = status.expect("sigterm ran");
    assert!(status.success(), "n2 exited with {status}");
    assert_eq!(lab.holders(&vip), [1], "{}", lab.describe());
    client_on(&lab, &vip, 1);

    // 3. n2 comes back as backup; promote --wait on it.
    daemons[1].restart();
    thread::sleep(Duration::from_millis(3500));
    wait_until(
        "n1 hears n2 alive again and n2 follows n1",
        Duration::from_secs(10),
        || {
            daemons[1]
                .status_json()
                .is_some_and(|s| s["instances"][0]["master"]["name"] == "n1")
        },
    );
    assert_eq!(lab.holders(&vip), [1]);
    let mut promote_out = None;
    let promoted = measure(&lab, &vip, "promote --wait of backup n2", || {
        promote_out = Some(daemons[1].cli(&["promote", "--wait"]));
    });
    let promote_out = promote_out.expect("promote ran");
    eprintln!(
        "[maint] vipd promote --wait said: {}",
        text(&promote_out).trim()
    );
    assert!(
        promote_out.status.success(),
        "promote --wait failed: {}",
        text(&promote_out)
    );
    assert_eq!(lab.holders(&vip), [2], "{}", lab.describe());
    client_on(&lab, &vip, 2);

    eprintln!(
        "[maint] SUMMARY lost probes at 2 ms: drain {}, SIGTERM {}, promote {}",
        drained.lost.len(),
        stopped.lost.len(),
        promoted.lost.len()
    );
    assert!(
        drained.lost.len() <= 1,
        "drain lost {} probes: {}{}",
        drained.lost.len(),
        drained.describe_lost(PROBE_INTERVAL),
        all_logs()
    );
    assert!(
        promoted.lost.len() <= 1,
        "promote lost {} probes: {}{}",
        promoted.lost.len(),
        promoted.describe_lost(PROBE_INTERVAL),
        all_logs()
    );
    assert!(
        stopped.lost.len() <= 3,
        "SIGTERM lost {} probes: {}{}",
        stopped.lost.len(),
        stopped.describe_lost(PROBE_INTERVAL),
        all_logs()
    );
}
