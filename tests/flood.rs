//! Floods (issue 11): junk adverts at the highest rate one thread of this
//! machine sends must not starve the master's advert timer, its control socket
//! or its watchdog, must not make the backup take over, and must not flood the
//! log (rejections are summarised: one line per reason per 10 s).
//!
//! Two nodes (`n1` at priority 150, `n2` at 100, 100 ms adverts) and a client on
//! one bridge. From the client's namespace, [`Flood`] sends vipd adverts that
//! are well framed (magic, version 1, group 51, HMAC auth type) but carry a bad
//! MAC, so each one goes through decode and the MAC check: for 5 s from the
//! client's own address through a UDP socket (to the group and to n1's address,
//! round-robin), then for 5 s from a random source address per packet inside
//! the lab's /24 over AF_PACKET (to the group only: spoofed unicast would make
//! n1 answer with ICMP port unreachables to addresses nobody holds, an ARP storm
//! that tests the kernel rather than vipd). A multicast instance's socket is
//! bound to the group, so the datagrams to n1's address never reach vipd; they
//! are there because a unicast instance would see them.
//!
//! Asserted, per phase and over both: n2 never becomes master (its log and its
//! `vipd status`) and accepts every advert n1 sends (but one at each end of
//! the counting window), n1 stays the sole holder of the VIP, n1's control socket
//! answers `vipd status` within 1 s every time it is asked (every ~100 ms), and
//! n1's log gains at most [`REJECT_LINES_MAX`] "rejected adverts" lines over the
//! 10 s of flood. Printed (`--nocapture`): the rate offered, n1's CPU time, the
//! lines n1 wrote, and the longest gap between n1's adverts as n2's namespace
//! receives them ([`AdvertWatch`], kernel timestamps). The gap is printed, not
//! asserted: the flooder takes one of this machine's two cores, and the gap
//! depends on what else runs; a takeover (asserted above) is the failure that
//! matters.

mod common;

use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Each phase of the flood.
const FLOOD_FOR: Duration = Duration::from_secs(5);
/// How many of the master's adverts the backup may miss per phase: one at each
/// end of the window its counters are read over. Junk must not crowd out any
/// other (peers' datagrams go first in each batch the socket's reader hands
/// over, and the 4 MiB receive buffer).
const MISSED_ADVERTS_MAX: u64 = 2;
/// How long `vipd status` may take on the flooded master.
const STATUS_BOUND: Duration = Duration::from_secs(1);
/// "rejected adverts" lines n1 may write over both phases (10 s): the first
/// rejection is logged at once, then one line per reason per 10 s; one reason
/// (authentication) is expected, so 2, plus slack for a period boundary.
const REJECT_LINES_MAX: usize = 3;
/// The log line of a rejection summary (src/daemon/instance/mod.rs).
const REJECT_LINE: &str = "rejected adverts";

/// What one phase of the flood did and what it cost.
struct Phase {
    name: &'static str,
    report: FloodReport,
    n1_cpu_s: f64,
    n2_cpu_s: f64,
    wall_s: f64,
    status_calls: usize,
    status_failures: usize,
    status_max: Duration,
    n1_lines: usize,
    n1_reject_lines: usize,
    n2_reject_lines: usize,
    n2_takeovers: usize,
    n1_state_changes: usize,
    /// n1's new log lines other than rejection summaries, to show what else it said.
    n1_other_lines: Vec<String>,
    gap_ms: f64,
    adverts: usize,
    /// n1's adverts sent over the phase, and how many of them n2 accepted
    /// (`vipd status --json`, read before and after).
    n1_sent: u64,
    n2_accepted: u64,
    /// Moments when n1 was not the sole holder or n2 said it was master.
    violations: Vec<String>,
}

impl Phase {
    fn print(&self) {
        eprintln!(
            "[flood] {}: offered {}\n[flood] {}: n1 CPU {:.2} s over {:.2} s ({:.0} % of a core), n2 CPU {:.2} s; \
             `vipd status` on n1: {} calls, {} failed, slowest {} ms; n1 wrote {} log lines ({} \"{REJECT_LINE}\"), \
             n2 {} \"{REJECT_LINE}\"; n2 took over {} times; n1 changed state {} times; \
             longest gap between n1's adverts at n2: {:.1} ms ({} adverts); n2 accepted {} of the {} adverts n1 sent",
            self.name,
            self.report.describe(),
            self.name,
            self.n1_cpu_s,
            self.wall_s,
            self.n1_cpu_s / self.wall_s * 100.0,
            self.n2_cpu_s,
            self.status_calls,
            self.status_failures,
            ms(self.status_max),
            self.n1_lines,
            self.n1_reject_lines,
            self.n2_reject_lines,
            self.n2_takeovers,
            self.n1_state_changes,
            self.gap_ms,
            self.adverts,
            self.n2_accepted,
            self.n1_sent,
        );
        for line in &self.n1_other_lines {
            eprintln!("[flood] {}: n1 also wrote: {line}", self.name);
        }
    }
}

/// A counter of the first instance from `vipd status --json` (0 if unreadable).
fn counter_of(daemon: &Daemon, key: &str) -> u64 {
    daemon
        .status_json()
        .and_then(|s| s["instances"][0][key].as_u64())
        .unwrap_or(0)
}

/// The first instance's state from `vipd status --json`.
fn state_of(daemon: &Daemon) -> Option<String> {
    daemon.status_json()?["instances"][0]["state"]
        .as_str()
        .map(str::to_owned)
}

fn run_phase(
    lab: &Lab,
    daemons: &[Daemon],
    watch: &AdvertWatch,
    vip: &str,
    name: &'static str,
    spec: FloodSpec,
) -> Phase {
    let pids = [
        daemons[0].pid().expect("n1 runs"),
        daemons[1].pid().expect("n2 runs"),
    ];
    let (n1_log, n2_log) = (daemons[0].log(), daemons[1].log());
    let (n1_from, n2_from) = (n1_log.len(), n2_log.len());
    let (n1_lines_before, cpu0) = (
        n1_log.lines().count(),
        [cpu_seconds(&pids[..1]), cpu_seconds(&pids[1..])],
    );
    let counters = || {
        (
            counter_of(&daemons[0], "adverts_sent"),
            counter_of(&daemons[1], "adverts_received"),
        )
    };
    let (sent0, accepted0) = counters();
    let t0 = unix_now();
    let started = Instant::now();
    let flood = Flood::start(spec).expect("start the flood");
    let mut status_calls = 0;
    let mut status_failures = 0;
    let mut status_max = Duration::ZERO;
    let mut violations = Vec::new();
    while !flood.is_finished() {
        let asked = Instant::now();
        let out = daemons[0].cli(&["status", "--json"]);
        let took = asked.elapsed();
        status_calls += 1;
        status_max = status_max.max(took);
        let state = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|s| s["instances"][0]["state"].as_str().map(str::to_owned));
        if !out.status.success() || state.as_deref() != Some("master") {
            status_failures += 1;
            violations.push(format!(
                "at {} ms n1's status said {state:?} ({}): {}",
                ms(started.elapsed()),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let holders = lab.holders(vip);
        if holders != [1] {
            violations.push(format!(
                "at {} ms the VIP was held by {holders:?}",
                ms(started.elapsed())
            ));
        }
        let n2_state = state_of(&daemons[1]);
        if n2_state.as_deref() == Some("master") {
            violations.push(format!(
                "at {} ms n2's status said master",
                ms(started.elapsed())
            ));
        }
        check_interrupted();
        thread::sleep(Duration::from_millis(100));
    }
    let report = flood.join().expect("the flood ran");
    let wall_s = started.elapsed().as_secs_f64();
    let t1 = unix_now();
    let cpu1 = [cpu_seconds(&pids[..1]), cpu_seconds(&pids[1..])];
    // Let summaries due at the end land, and the kernel deliver the last adverts.
    thread::sleep(Duration::from_millis(300));
    let (sent1, accepted1) = counters();
    let (n1_log, n2_log) = (daemons[0].log(), daemons[1].log());
    let (gap_ms, adverts) = watch.longest_gap_ms(t0, t1);
    Phase {
        name,
        report,
        n1_cpu_s: cpu1[0] - cpu0[0],
        n2_cpu_s: cpu1[1] - cpu0[1],
        wall_s,
        status_calls,
        status_failures,
        status_max,
        n1_lines: n1_log.lines().count() - n1_lines_before,
        n1_reject_lines: lines_after(&n1_log, n1_from, REJECT_LINE),
        n2_reject_lines: lines_after(&n2_log, n2_from, REJECT_LINE),
        n2_takeovers: lines_after(&n2_log, n2_from, "state=master"),
        n1_state_changes: lines_after(&n1_log, n1_from, "state change"),
        n1_other_lines: n1_log
            .get(n1_from..)
            .unwrap_or("")
            .lines()
            .filter(|l| !l.contains(REJECT_LINE))
            .map(str::to_owned)
            .collect(),
        gap_ms,
        adverts,
        n1_sent: sent1.saturating_sub(sent0),
        n2_accepted: accepted1.saturating_sub(accepted0),
        violations,
    }
}

#[test]
fn a_flood_of_junk_adverts_starves_nothing_and_logs_a_summary() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("flood", 2);
    let vip = lab.vip4(0);
    let daemons = start_pair(&lab, &vip);
    wait_until("n2 knows n1 as master", Duration::from_secs(10), || {
        daemons[1]
            .status_json()
            .is_some_and(|s| s["instances"][0]["master"]["name"] == "n1")
    });
    let watch = AdvertWatch::start(&lab.node(2).ns.name, lab.node(1).mac_bytes())
        .expect("watch n1's adverts from n2's namespace");
    let quiet_from = unix_now();
    thread::sleep(Duration::from_secs(1));
    let (quiet_gap, quiet_adverts) = watch.longest_gap_ms(quiet_from, unix_now());
    eprintln!(
        "[flood] before: longest gap between n1's adverts at n2 {quiet_gap:.1} ms ({quiet_adverts} adverts in 1 s)"
    );

    let lab_ip = |h: &Host| h.v4.parse::<Ipv4Addr>().expect("IPv4");
    let group = Target::multicast(vipd_group(51));
    let one = FloodSpec::from_host(
        &lab.client,
        vec![group, Target::host(lab.node(1))],
        Junk::Vipd { group: 51 },
        Sources::One,
        FLOOD_FOR,
    );
    let spoofed = FloodSpec::from_host(
        &lab.client,
        vec![group],
        Junk::Vipd { group: 51 },
        Sources::Spoofed {
            net: lab_ip(lab.node(1)),
            prefix_len: 24,
            exclude: vec![
                lab_ip(lab.node(1)),
                lab_ip(lab.node(2)),
                lab_ip(&lab.client),
            ],
        },
        FLOOD_FOR,
    );
    let n1_log_from = daemons[0].log().len();
    let phases = [
        run_phase(&lab, &daemons, &watch, &vip, "one source", one),
        run_phase(&lab, &daemons, &watch, &vip, "spoofed sources", spoofed),
    ];
    for p in &phases {
        p.print();
    }
    let n1_log = daemons[0].log();
    let reject_lines: Vec<&str> = n1_log
        .get(n1_log_from..)
        .unwrap_or("")
        .lines()
        .filter(|l| l.contains(REJECT_LINE))
        .collect();
    eprintln!(
        "[flood] n1's \"{REJECT_LINE}\" lines over both phases:\n{}",
        reject_lines.join("\n")
    );

    for p in &phases {
        assert!(
            p.report.sent > 0,
            "{}: the flooder sent nothing: {}",
            p.name,
            p.report.describe()
        );
        assert!(
            p.violations.is_empty(),
            "{}: {}{}",
            p.name,
            p.violations.join("\n"),
            logs_for_panic()
        );
        assert_eq!(
            p.n2_takeovers,
            0,
            "{}: n2 took over (spurious takeover){}",
            p.name,
            logs_for_panic()
        );
        // The two counters are read a few ms apart: one advert may be counted
        // as sent and not yet as accepted, at each end.
        assert!(
            p.n2_accepted + MISSED_ADVERTS_MAX >= p.n1_sent,
            "{}: n2 accepted only {} of the {} adverts n1 sent (junk crowded them out){}",
            p.name,
            p.n2_accepted,
            p.n1_sent,
            logs_for_panic()
        );
        assert_eq!(
            p.n1_state_changes,
            0,
            "{}: n1 changed state{}",
            p.name,
            logs_for_panic()
        );
        assert!(
            p.status_max <= STATUS_BOUND,
            "{}: `vipd status` on n1 took {} ms (bound {} ms)",
            p.name,
            ms(p.status_max),
            ms(STATUS_BOUND)
        );
    }
    assert!(
        reject_lines.len() <= REJECT_LINES_MAX,
        "n1 wrote {} \"{REJECT_LINE}\" lines over 10 s of flood (at most {REJECT_LINES_MAX}):\n{}",
        reject_lines.len(),
        reject_lines.join("\n")
    );
    assert_eq!(lab.holders(&vip), [1], "{}", lab.describe());
}
