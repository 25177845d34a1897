//! vipd in front of real services from Debian's packages, under the shipped unit
//! (systemd as PID 1 of each node's namespaces, see tests/common/systemd.rs),
//! with a client using the service through the VIP as its users do and every
//! figure taken from the client's side.
//!
//! Covered: an HAProxy pair (HAProxy 2.6 on a wildcard bind in each node's
//! namespace, one HTTP GET through the VIP every 10 ms, each on a new
//! connection that must answer within 200 ms): `kill -9` of the master's vipd,
//! where the unit's clean-up announces the release so the backup takes over at
//! once; the same with `after_crash = "resume"`, where nothing moves at all;
//! and a crash loop, which ends in a handover and no fail-back until the crash
//! window has passed. A PostgreSQL 15 primary (one INSERT every 20 ms on one
//! session through the VIP): `kill -9` of its vipd with `after_crash =
//! "resume"` loses no write and moves nothing.
//!
//! Each test prints what it measured (`cargo test --release --test services --
//! --nocapture`).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;

/// The port HAProxy answers on.
const HTTP_PORT: u16 = 8080;

/// How often the client sends a GET, and how long each may take.
const GET_EVERY: Duration = Duration::from_millis(10);
const GET_DEADLINE: Duration = Duration::from_millis(200);

/// Node `name`'s configuration: instance `db`, this priority, 1 s adverts
/// (keepalived's default, so a master-down interval of about 3.4 s), one VIP.
fn spec(name: &str, priority: u8, vip: &str, extra: &[&str]) -> NodeSpec {
    let mut instance = InstanceSpec::new(priority).advert("1s").vip(vip);
    for line in extra {
        instance = instance.extra(line);
    }
    NodeSpec::new(name, instance)
}

fn wait_master(node: &SystemdNode, vip: &str) -> Duration {
    wait_until(
        &format!("{} is master and holds {vip}", node.role),
        Duration::from_secs(30),
        || node.host().holds(vip) && node.property("StatusText").contains("db: master"),
    )
}

fn wait_backup(node: &SystemdNode, vip: &str) -> Duration {
    wait_until(
        &format!("{} is backup without {vip}", node.role),
        Duration::from_secs(30),
        || !node.host().holds(vip) && node.property("StatusText").contains("db: backup"),
    )
}

fn ms_between(a: u64, b: u64) -> f64 {
    us_to_ms(b as i64 - a as i64)
}

/// A booted HAProxy pair behind vipd: `sd1` (priority 150, `sd1_extra` lines
/// in its instance) master, `sd2` (100) backup, HAProxy on both.
struct Pair {
    lab: Lab,
    vip: String,
    nodes: Vec<SystemdNode>,
    _proxies: Vec<Haproxy>,
}

impl Pair {
    fn start(tag: &str, sd1_extra: &[&str]) -> Self {
        let lab = Lab::new(tag, 0);
        let vip = lab.vip4(0);
        let nodes = SystemdNode::boot_all(
            &lab,
            &[
                UnitSetup::new(spec("sd1", 150, &vip, sd1_extra)),
                UnitSetup::new(spec("sd2", 100, &vip, &[])),
            ],
        );
        let proxies = vec![
            Haproxy::start(&nodes[0].host().ns, "sd1", HTTP_PORT),
            Haproxy::start(&nodes[1].host().ns, "sd2", HTTP_PORT),
        ];
        nodes[0].start_vipd();
        wait_master(&nodes[0], &vip);
        nodes[1].start_vipd();
        wait_backup(&nodes[1], &vip);
        Self {
            lab,
            vip,
            nodes,
            _proxies: proxies,
        }
    }

    fn client(&self) -> HttpClient {
        let ip: IpAddr = strip_prefix_len(&self.vip).parse().expect("VIP address");
        HttpClient::start(
            &self.lab.client.ns,
            SocketAddr::new(ip, HTTP_PORT),
            GET_EVERY,
            GET_DEADLINE,
        )
    }

    /// `systemctl kill -s KILL` of sd1's vipd; returns when it was sent
    /// (CLOCK_MONOTONIC µs) and sd1's MainPID before.
    fn kill_sd1(&self) -> (u64, String) {
        let pid = self.nodes[0].property("MainPID");
        let sent = monotonic_us();
        self.nodes[0].systemctl_ok(&["kill", "-s", "KILL", "vipd.service"]);
        (sent, pid)
    }

    /// Waits until systemd restarted sd1's vipd (a MainPID other than `old`).
    fn wait_restarted(&self, old: &str) {
        wait_until("sd1's vipd restarted", Duration::from_secs(30), || {
            let pid = self.nodes[0].property("MainPID");
            pid != old && pid != "0"
        });
    }

    fn cleanup_lines(&self, node: usize) -> String {
        self.nodes[node]
            .journal()
            .lines()
            .filter(|l| {
                l.contains("vipd cleanup:")
                    || l.contains("after a crash")
                    || l.contains("crashed repeatedly")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[test]
fn haproxy_pair_a_killed_vipd_hands_over_at_once() {
    if !require_root() {
        return;
    }
    let pair = Pair::start("svckill", &[]);
    let watch = AddrWatch::start(pair.nodes[1].host()).expect("address watch on sd2");
    let client = pair.client();
    // Until a backup has run three backup intervals it cannot know that no
    // better backup exists, and takes a release over after the RFC's skew
    // (609 ms at priority 100 and 1 s adverts) instead of at once: as on a
    // pair that has run for a while, let it learn the ranks first.
    sleep_checked(Duration::from_secs(4));

    let from = Instant::now();
    let (sent, old_pid) = pair.kill_sd1();
    let claimed = watch
        .wait_for(&pair.vip, true, sent, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("sd2 never claimed {}", pair.vip));
    // sd1 restarts after RestartSec=1s, starts as backup and preempts sd2.
    pair.wait_restarted(&old_pid);
    wait_master(&pair.nodes[0], &pair.vip);
    wait_backup(&pair.nodes[1], &pair.vip);
    sleep_checked(Duration::from_secs(1));
    let log = client.finish();

    let failed = log.failed_since(from);
    let sent_requests = log.since(from).count();
    eprintln!(
        "[svckill] kill -9 of sd1's vipd: sd2 claimed the VIP {:.1} ms later (the master-down \
         interval at 1 s adverts is about 3.4 s); sd1 restarted and took it back",
        ms_between(sent, claimed.at)
    );
    eprintln!(
        "[svckill] client, GET every {} ms: {failed} of {sent_requests} failed, longest time \
         without an answer {:.1} ms, answered by {:?}",
        GET_EVERY.as_millis(),
        log.longest_outage_since(from).as_secs_f64() * 1e3,
        log.answered_by(from)
    );
    eprintln!("[svckill] sd1's journal:\n{}", pair.cleanup_lines(0));
    assert!(
        ms_between(sent, claimed.at) < 1500.0,
        "sd2 claimed {:.1} ms after the kill: it waited for the master-down interval, so the \
         clean-up's release was not heard\n{}",
        ms_between(sent, claimed.at),
        pair.nodes[0].journal()
    );
    assert!(
        failed <= 2,
        "{failed} requests failed:\n{}",
        log.describe_failures(from)
    );
}

#[test]
fn haproxy_pair_a_killed_vipd_that_resumes_moves_nothing() {
    if !require_root() {
        return;
    }
    let pair = Pair::start("svcresume", &["after_crash = \"resume\""]);
    let watches: Vec<AddrWatch> = pair
        .nodes
        .iter()
        .map(|n| AddrWatch::start(n.host()).expect("address watch"))
        .collect();
    let client = pair.client();
    sleep_checked(Duration::from_secs(1));

    let from = Instant::now();
    let (sent, old_pid) = pair.kill_sd1();
    pair.wait_restarted(&old_pid);
    let restarted: u64 = pair.nodes[0]
        .property("ExecMainStartTimestampMonotonic")
        .parse()
        .expect("ExecMainStartTimestampMonotonic");
    wait_master(&pair.nodes[0], &pair.vip);
    // Longer than sd2's master-down interval: had sd2 been about to take
    // over, it would have by now.
    sleep_checked(Duration::from_secs(5));
    let log = client.finish();

    let removed = watches[0].first(&pair.vip, false, sent);
    let claimed_by_sd2 = watches[1].first(&pair.vip, true, sent);
    let failed = log.failed_since(from);
    eprintln!(
        "[svcresume] kill -9 of sd1's vipd (after_crash = \"resume\"): restarted {:.1} ms later; \
         VIP removed from sd1: {}; claimed by sd2: {}",
        ms_between(sent, restarted),
        removed.map_or("never".to_owned(), |e| format!(
            "at +{:.1} ms",
            ms_between(sent, e.at)
        )),
        claimed_by_sd2.map_or("never".to_owned(), |e| format!(
            "at +{:.1} ms",
            ms_between(sent, e.at)
        )),
    );
    eprintln!(
        "[svcresume] client, GET every {} ms: {failed} of {} failed, longest time without an \
         answer {:.1} ms, answered by {:?}",
        GET_EVERY.as_millis(),
        log.since(from).count(),
        log.longest_outage_since(from).as_secs_f64() * 1e3,
        log.answered_by(from)
    );
    eprintln!("[svcresume] sd1's journal:\n{}", pair.cleanup_lines(0));
    assert!(removed.is_none(), "the VIP left sd1");
    assert!(claimed_by_sd2.is_none(), "sd2 took the VIP");
    assert!(
        pair.nodes[1].property("StatusText").contains("db: backup"),
        "sd2 stayed backup"
    );
    assert_eq!(
        failed,
        0,
        "requests failed:\n{}",
        log.describe_failures(from)
    );
}

#[test]
fn a_crash_loop_ends_in_a_handover_and_no_fail_back() {
    if !require_root() {
        return;
    }
    let pair = Pair::start("svcloop", &["after_crash = \"resume\""]);
    let client = pair.client();
    sleep_checked(Duration::from_secs(1));
    let from = Instant::now();
    // Three crashes resume (the budget); the fourth hands over.
    for crash in 1..=4 {
        let (_, old_pid) = pair.kill_sd1();
        pair.wait_restarted(&old_pid);
        if crash < 4 {
            wait_master(&pair.nodes[0], &pair.vip);
            assert!(
                !pair.nodes[1].host().holds(&pair.vip),
                "crash {crash}: sd2 took over"
            );
        }
        sleep_checked(Duration::from_millis(300));
    }
    wait_master(&pair.nodes[1], &pair.vip);
    // sd1 outranks sd2 but has crashed 4 times: it must not take the VIP back.
    sleep_checked(Duration::from_secs(5));
    let log = client.finish();
    let journal = pair.cleanup_lines(0);
    eprintln!(
        "[svcloop] 4 crashes in a row: sd1 {}, sd2 {}; client: {} of {} GETs failed, longest \
         time without an answer {:.1} ms, answered by {:?}",
        pair.nodes[0].property("StatusText"),
        pair.nodes[1].property("StatusText"),
        log.failed_since(from),
        log.since(from).count(),
        log.longest_outage_since(from).as_secs_f64() * 1e3,
        log.answered_by(from)
    );
    eprintln!("[svcloop] sd1's journal:\n{journal}");
    assert!(pair.nodes[1].host().holds(&pair.vip), "sd2 holds the VIP");
    assert!(
        pair.nodes[0].property("StatusText").contains("db: backup"),
        "sd1 stays backup (no preemption while it keeps crashing)"
    );
    assert!(
        journal.contains("announced the release"),
        "the 4th crash handed over"
    );
    assert!(journal.contains("crashed repeatedly"));
}

/// PostgreSQL's side of the same crash: a primary on sd1 (none on sd2, so a
/// VIP that moved would fail every write), one INSERT every 20 ms through the
/// VIP on one session, `after_crash = "resume"`.
#[test]
fn postgres_primary_a_killed_vipd_that_resumes_loses_no_write() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("svcpg", 0);
    let vip = lab.vip4(0);
    let nodes = SystemdNode::boot_all(
        &lab,
        &[
            UnitSetup::new(spec("sd1", 150, &vip, &["after_crash = \"resume\""])),
            UnitSetup::new(spec("sd2", 100, &vip, &[])),
        ],
    );
    let primary = Postgres::start(&nodes[0].host().ns, "sd1");
    nodes[0].start_vipd();
    wait_master(&nodes[0], &vip);
    nodes[1].start_vipd();
    wait_backup(&nodes[1], &vip);
    let watch = AddrWatch::start(nodes[0].host()).expect("address watch on sd1");
    let writer = PgWriter::start(
        &lab.client.ns,
        strip_prefix_len(&vip),
        Duration::from_millis(20),
    );
    wait_until(
        "the first write is acknowledged",
        Duration::from_secs(20),
        || primary.sql("SELECT count(*) FROM writes") != "0",
    );
    sleep_checked(Duration::from_secs(1));

    let from = Instant::now();
    let old_pid = nodes[0].property("MainPID");
    let sent = monotonic_us();
    nodes[0].systemctl_ok(&["kill", "-s", "KILL", "vipd.service"]);
    wait_until("sd1's vipd restarted", Duration::from_secs(30), || {
        let pid = nodes[0].property("MainPID");
        pid != old_pid && pid != "0"
    });
    wait_master(&nodes[0], &vip);
    sleep_checked(Duration::from_secs(5));
    let writes = writer.finish();
    let stored: usize = primary
        .sql("SELECT count(*) FROM writes")
        .parse()
        .expect("a count");
    let gap = writes.longest_gap_since(from);
    let removed = watch.first(&vip, false, sent);
    eprintln!(
        "[svcpg] kill -9 of the primary's vipd (after_crash = \"resume\"): {} writes sent, {} \
         acknowledged, {stored} stored; longest time between two acknowledgements {:.1} ms \
         (one write every 20 ms); VIP removed from sd1: {}",
        writes.sent,
        writes.acked.len(),
        gap.as_secs_f64() * 1e3,
        removed.map_or("never".to_owned(), |e| format!(
            "at +{:.1} ms",
            ms_between(sent, e.at)
        ))
    );
    assert!(removed.is_none(), "the VIP left the primary");
    assert!(
        !nodes[1].host().holds(&vip),
        "sd2 took the VIP from a live primary"
    );
    assert!(
        stored >= writes.acked.len(),
        "acknowledged writes are missing: {} acknowledged, {stored} stored",
        writes.acked.len()
    );
    assert!(
        writes.acked.len() + 1 >= writes.sent as usize,
        "writes went unanswered: {} sent, {} acknowledged",
        writes.sent,
        writes.acked.len()
    );
}
