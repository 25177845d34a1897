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
//! a crash loop, which ends in a handover and no fail-back until the crash
//! window has passed; and a crash of the master's whole host (its link down,
//! every process in it killed at once), where nothing announces anything and
//! the backup takes over after its master-down interval. The recipes in contrib/ as written (each loaded with
//! vipd's own loader first, so one that does not load fails here; the test
//! substitutes only addresses, the key file and the proxy's port): an HAProxy
//! pair on contrib/haproxy/vipd.toml, where `kill -9` of the master's HAProxy
//! moves the VIP within the check's interval × fall plus one advert; an nginx
//! 1.22 pair on contrib/nginx/vipd.toml through `vipd drain --wait`, `vipd
//! undrain`, `vipd promote --wait` and `systemctl stop vipd`, each without a
//! failed GET. That a proxy bound to the VIP's address starts on a node
//! without it only with `net.ipv4.ip_nonlocal_bind=1`, as the recipes warn. A
//! PostgreSQL 15 primary (one INSERT every 20 ms on one session through the
//! VIP): `kill -9` of its vipd with `after_crash = "resume"` loses no write
//! and moves nothing. The PostgreSQL recipe (contrib/postgresql/vipd.toml and
//! its scripts in /etc/vipd) on a primary and a synchronous streaming
//! standby: `kill -9` of the primary's server and of its vipd at once, with
//! the recipe's `after_crash = "resume"` and with vipd's default handover;
//! the standby is promoted by the recipe's gate and takes the VIP, and no
//! acknowledged write is lost.
//!
//! Each test prints what it measured (`cargo test --release --test services --
//! --nocapture`).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The port HAProxy answers on.
const HTTP_PORT: u16 = 8080;

/// How often the client sends a GET, and how long each may take.
const GET_EVERY: Duration = Duration::from_millis(10);
const GET_DEADLINE: Duration = Duration::from_millis(200);

/// Node `name`'s configuration: instance `db`, this priority, adverts every
/// `advert`, one VIP, `extra` lines at the end of the instance.
fn spec(name: &str, priority: u8, vip: &str, advert: &str, extra: &[&str]) -> NodeSpec {
    let mut instance = InstanceSpec::new(priority).advert(advert).vip(vip);
    for line in extra {
        instance = instance.extra(line);
    }
    NodeSpec::new(name, instance)
}

/// A recipe from contrib/, loaded with vipd's own configuration loader (a
/// recipe that does not load fails the test that uses it), and its instance's
/// lines for the test's nodes.
struct Recipe {
    file: &'static str,
    config: vipd::config::Config,
    /// The recipe's `[[instance]]` lines after those the test writes itself
    /// (name, interface, group, priority, VIPs, key, advert interval): its
    /// choices (`preempt`, `after_crash`), its track scripts and its hooks.
    lines: Vec<String>,
}

impl Recipe {
    /// `file` as written. Its key file (which this host need not have, and
    /// the loader reads) is the only thing substituted, by a fresh key.
    fn load(file: &'static str) -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let key = std::env::temp_dir().join(format!(
            "vt-recipe-{}-{}.key",
            std::process::id(),
            file.replace('/', "_")
        ));
        let _ = fs::remove_file(&key);
        vipd::keygen::write_new_key(&key).expect("writing a key");
        let key_line = text
            .lines()
            .find(|l| l.trim_start().starts_with("auth_key_file"))
            .unwrap_or_else(|| panic!("{file} has no auth_key_file"));
        let loadable = text.replace(
            key_line,
            &format!("auth_key_file = {:?}", key.display().to_string()),
        );
        let loaded = vipd::config::from_toml(&loadable, &path);
        let _ = fs::remove_file(&key);
        let config = loaded.unwrap_or_else(|e| panic!("{file} does not load:\n{e}"));
        assert_eq!(config.instances.len(), 1, "{file}: one instance");

        const WRITTEN_BY_THE_TEST: &[&str] = &[
            "name",
            "interface",
            "group",
            "priority",
            "vips",
            "auth_key_file",
            "advert_interval",
        ];
        let mut lines = Vec::new();
        let mut in_instance = false;
        let mut in_subtable = false;
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if trimmed == "[[instance]]" {
                in_instance = true;
                continue;
            }
            if !in_instance {
                continue;
            }
            in_subtable |= trimmed.starts_with('[');
            let key = trimmed.split('=').next().unwrap_or("").trim();
            if !in_subtable && WRITTEN_BY_THE_TEST.contains(&key) {
                continue;
            }
            lines.push(line.to_owned());
        }
        Self {
            file,
            config,
            lines,
        }
    }

    /// A proxy's recipe: one check, asking http://127.0.0.1:80/, which the
    /// test points at [`HTTP_PORT`].
    fn proxy(file: &'static str) -> Self {
        let mut recipe = Self::load(file);
        assert_eq!(
            recipe.instance().track_scripts.len(),
            1,
            "{file}: one check"
        );
        let check_url = "http://127.0.0.1:80/";
        let test_url = format!("http://127.0.0.1:{HTTP_PORT}/");
        for line in &mut recipe.lines {
            *line = line.replace(check_url, &test_url);
        }
        assert_eq!(
            recipe
                .lines
                .iter()
                .filter(|l| l.contains(&test_url))
                .count(),
            1,
            "{file}: the check asks {check_url}"
        );
        recipe
    }

    fn instance(&self) -> &vipd::config::InstanceConfig {
        &self.config.instances[0]
    }

    /// The advert interval as the configuration spells it.
    fn advert(&self) -> String {
        format!("{}ms", self.instance().advert_interval.as_millis())
    }

    /// What the recipe promises for a dead proxy: the check's interval × fall
    /// (its failures in a row) plus one advert.
    fn target(&self) -> Duration {
        let inst = self.instance();
        let check = &inst.track_scripts[0];
        check.interval * check.fall + inst.advert_interval
    }
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

/// Which proxy a [`Pair`] runs.
#[derive(Clone, Copy, Debug)]
enum ProxyKind {
    Haproxy,
    Nginx,
}

/// A running proxy of either kind.
enum Proxy {
    Haproxy(Haproxy),
    /// Held for its drop, which stops it: no test kills nginx.
    Nginx {
        _nginx: Nginx,
    },
}

impl Proxy {
    /// The proxy in `ns`, bound to `bind` (`:PORT` for every address, or
    /// `ADDRESS:PORT`), answering with `label`; or why it did not start.
    fn try_start(kind: ProxyKind, ns: &Netns, label: &str, bind: &str) -> Result<Self, String> {
        match kind {
            ProxyKind::Haproxy => Haproxy::try_start(ns, label, bind, HTTP_PORT).map(Self::Haproxy),
            ProxyKind::Nginx => {
                // nginx spells every address as the port alone.
                let listen = bind.strip_prefix(':').unwrap_or(bind);
                Nginx::try_start(ns, label, listen, HTTP_PORT)
                    .map(|nginx| Self::Nginx { _nginx: nginx })
            }
        }
    }

    fn start(kind: ProxyKind, ns: &Netns, label: &str) -> Self {
        Self::try_start(kind, ns, label, &format!(":{HTTP_PORT}"))
            .unwrap_or_else(|e| panic!("{kind:?} in {}: {e}", ns.name))
    }
}

/// A booted proxy pair behind vipd: `sd1` (priority 150, `sd1_extra` lines
/// in its instance) master, `sd2` (100) backup, the proxy on both.
struct Pair {
    lab: Lab,
    vip: String,
    nodes: Vec<SystemdNode>,
    proxies: Vec<Proxy>,
}

impl Pair {
    /// HAProxy, 1 s adverts, vipd's defaults but for `sd1_extra`.
    fn start(tag: &str, sd1_extra: &[&str]) -> Self {
        Self::start_with(tag, ProxyKind::Haproxy, "1s", &[], sd1_extra)
    }

    /// `kind` on both nodes, each instance configured as `recipe` says.
    fn from_recipe(tag: &str, kind: ProxyKind, recipe: &Recipe) -> Self {
        let lines: Vec<&str> = recipe.lines.iter().map(String::as_str).collect();
        Self::start_with(tag, kind, &recipe.advert(), &lines, &[])
    }

    fn start_with(
        tag: &str,
        kind: ProxyKind,
        advert: &str,
        both: &[&str],
        sd1_extra: &[&str],
    ) -> Self {
        let lab = Lab::new(tag, 0);
        let vip = lab.vip4(0);
        let sd1: Vec<&str> = both.iter().chain(sd1_extra).copied().collect();
        let nodes = SystemdNode::boot_all(
            &lab,
            &[
                UnitSetup::new(spec("sd1", 150, &vip, advert, &sd1)),
                UnitSetup::new(spec("sd2", 100, &vip, advert, both)),
            ],
        );
        let proxies = vec![
            Proxy::start(kind, &nodes[0].host().ns, "sd1"),
            Proxy::start(kind, &nodes[1].host().ns, "sd2"),
        ];
        nodes[0].start_vipd();
        wait_master(&nodes[0], &vip);
        nodes[1].start_vipd();
        wait_backup(&nodes[1], &vip);
        Self {
            lab,
            vip,
            nodes,
            proxies,
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

/// `vipd status --json` on `node`, parsed (whatever its exit code).
fn status_json(node: &SystemdNode) -> serde_json::Value {
    let out = node.nsenter("/usr/sbin/vipd", &["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: vipd status --json printed no JSON ({e}): {}",
            node.role,
            output_text(&out)
        )
    })
}

/// The master-down interval `node` reports for instance `db`.
fn master_down_interval(node: &SystemdNode) -> Duration {
    let ms = status_json(node)["instances"][0]["master_down_interval_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("{}: no master_down_interval_ms in the status", node.role));
    Duration::from_millis(ms)
}

/// CLOCK_MONOTONIC µs as an [`Instant`], given one moment read on both
/// clocks (`Instant` is CLOCK_MONOTONIC on Linux, but opaque).
fn instant_at(us: u64, anchor: (Instant, u64)) -> Instant {
    let (at, at_us) = anchor;
    if us >= at_us {
        at + Duration::from_micros(us - at_us)
    } else {
        at - Duration::from_micros(at_us - us)
    }
}

/// The master's whole host dies (its link down and every process in it
/// killed at once: systemd, vipd, HAProxy): nothing announces a release, so
/// the backup takes over once its master-down interval has passed since the
/// last advert it heard (3 adverts and its margin, as it knows the ranks), and
/// the client's GETs fail until then, and only until then.
#[test]
fn haproxy_pair_a_crashed_master_host_is_replaced_after_the_master_down_interval() {
    if !require_root() {
        return;
    }
    let pair = Pair::start("svchost", &[]);
    let advert = Duration::from_secs(1);
    let watch = AddrWatch::start(pair.nodes[1].host()).expect("address watch on sd2");
    let adverts = AdvertWatch::start(
        &pair.nodes[1].host().ns.name,
        pair.nodes[0].host().mac_bytes(),
    )
    .expect("advert watch on sd2");
    let client = pair.client();
    // As on a pair that has run for a while, sd2 has heard every peer for
    // three backup intervals: it then waits 3 × advert + its margin, not the
    // RFC's skew.
    sleep_checked(Duration::from_secs(4));
    let master_down = master_down_interval(&pair.nodes[1]);

    let from = Instant::now();
    let anchor = (Instant::now(), monotonic_us());
    // Unix seconds (the advert watch's kernel timestamps) to monotonic µs.
    let unix_offset = unix_now() - monotonic_us() as f64 / 1e6;
    let crashed = pair.nodes[0].crash_host();
    let claimed = watch
        .wait_for(&pair.vip, true, crashed, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("sd2 never claimed {}", pair.vip));
    wait_master(&pair.nodes[1], &pair.vip);
    sleep_checked(Duration::from_secs(2));
    let log = client.finish();

    let last_advert = adverts
        .times()
        .into_iter()
        .map(|t| ((t - unix_offset) * 1e6) as u64)
        .filter(|&at| at < claimed.at)
        .max()
        .expect("sd2 heard sd1's adverts");
    let after_crash = Duration::from_micros(claimed.at - crashed);
    let after_last_advert = Duration::from_micros(claimed.at - last_advert);
    let claimed_at = instant_at(claimed.at, anchor);
    let failed = log.failed_since(from);
    let outage = log.longest_outage_since(from);
    // The failures and the answers once sd2 held the VIP, with a slack for
    // its gratuitous ARP to reach the client and for a GET already on its
    // way to sd1 (which ends after the GET's deadline).
    let slack = GET_DEADLINE + Duration::from_millis(100);
    let late_failures: Vec<&Request> = log
        .since(claimed_at + slack)
        .filter(|r| r.answer.is_err())
        .collect();
    let answered_after = log.answered_by(claimed_at + slack);
    // The best backup, knowing the ranks, waits 3 adverts and its margin;
    // its status reports the RFC's bound (with the skew at its priority).
    let expected = advert * 3 + vipd::config::defaults::TAKEOVER_MARGIN;
    eprintln!(
        "[svchost] sd1's host crashed (link down, every process SIGKILLed): sd2 claimed the VIP \
         {:.1} ms after the crash, {:.1} ms after sd1's last advert it heard (expected: 3 × \
         advert + margin = {} ms; the master-down interval sd2's status reports: {} ms)",
        after_crash.as_secs_f64() * 1e3,
        after_last_advert.as_secs_f64() * 1e3,
        expected.as_millis(),
        master_down.as_millis()
    );
    eprintln!(
        "[svchost] client, GET every {} ms (deadline {} ms): {failed} of {} failed, longest time \
         without an answer {:.1} ms, answered by {:?}; from the claim + {} ms on: {} failed, \
         answered by {answered_after:?}",
        GET_EVERY.as_millis(),
        GET_DEADLINE.as_millis(),
        log.since(from).count(),
        outage.as_secs_f64() * 1e3,
        log.answered_by(from),
        slack.as_millis(),
        late_failures.len()
    );

    assert!(pair.nodes[1].host().holds(&pair.vip), "sd2 holds the VIP");
    // Never before 3 adverts were missed (nothing could announce a release),
    // and not much after: the bound allows for a loaded machine.
    let claim_bound = expected + Duration::from_millis(400);
    assert!(
        after_last_advert >= advert * 3 && after_last_advert <= claim_bound,
        "sd2 claimed {after_last_advert:?} after the last advert it heard (expected from {:?} \
         to {claim_bound:?})",
        advert * 3
    );
    assert!(
        late_failures.is_empty(),
        "GETs failed after sd2 claimed the VIP:\n{}",
        log.describe_failures(claimed_at + slack)
    );
    assert!(
        answered_after.iter().map(|(_, n)| n).sum::<usize>() > 0
            && answered_after.iter().all(|(label, _)| label == "sd2"),
        "after the claim, answered by {answered_after:?}, not sd2 alone"
    );
    // The crash came after the last advert, so the client waits at most the
    // claim's bound, plus the slack: at most one failed GET per period of it.
    let outage_bound = claim_bound + slack;
    let failed_bound = (outage_bound.as_millis() / GET_EVERY.as_millis()) as usize;
    assert!(
        failed <= failed_bound,
        "{failed} GETs failed (bound {failed_bound}):\n{}",
        log.describe_failures(from)
    );
    assert!(
        outage <= outage_bound,
        "{outage:?} without an answer (bound {outage_bound:?})"
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
            UnitSetup::new(spec("sd1", 150, &vip, "1s", &["after_crash = \"resume\""])),
            UnitSetup::new(spec("sd2", 100, &vip, "1s", &[])),
        ],
    );
    let primary = Postgres::start(&nodes[0].host().ns, "sd1");
    nodes[0].start_vipd();
    wait_master(&nodes[0], &vip);
    nodes[1].start_vipd();
    wait_backup(&nodes[1], &vip);
    let watch = AddrWatch::start(nodes[0].host()).expect("address watch on sd1");
    let writer = PgWriter::start_once_acknowledged(
        &lab.client.ns,
        &vip,
        Duration::from_millis(20),
        &primary,
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

/// What vipd does after a crash on the PostgreSQL primary's node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterCrash {
    /// The recipe's `after_crash = "resume"`.
    Resume,
    /// Without that line: vipd's default, a handover.
    Handover,
}

/// The PostgreSQL recipe's scripts, installed beside the configuration in
/// /etc/vipd, where the recipe names them.
const PG_RECIPE_SCRIPTS: &[&str] = &["is-primary.sh", "promote.sh", "fence.sh"];

/// What [`crash_the_primary`] measured.
struct PrimaryCrash {
    /// The longest time between two acknowledged writes from the crash on.
    outage: Duration,
    /// The standby's promotion: the before_claim gate's `took_ms`.
    promotion: Duration,
    /// The takeover a dead master costs: 3 adverts and the margin.
    master_down: Duration,
    /// Acknowledged writes missing on the new primary.
    missing: Vec<u32>,
}

impl PrimaryCrash {
    /// master-down interval + promotion + 50 ms.
    fn target(&self) -> Duration {
        self.master_down + self.promotion + Duration::from_millis(50)
    }
}

/// The vipd.service journal of `node` from `since` (CLOCK_MONOTONIC µs) on,
/// each line with its time after `since`, for the test's output.
/// vipd's own lines carry their fields (`STATE`, `HOOK`, `TOOK_MS`, ...)
/// beside the message, as `journalctl -o verbose` would show them.
fn journal_since(node: &SystemdNode, since: u64, until: u64) -> String {
    const NOT_SHOWN: &[&str] = &["MESSAGE", "PRIORITY", "TARGET", "INSTANCE", "TID"];
    node.journal_json()
        .into_iter()
        .filter_map(|entry| {
            let at: u64 = entry["__MONOTONIC_TIMESTAMP"].as_str()?.parse().ok()?;
            if at < since || at > until {
                return None;
            }
            let mut line = entry["MESSAGE"].as_str()?.to_owned();
            if entry["SYSLOG_IDENTIFIER"] == "vipd" {
                for (field, value) in entry.as_object()? {
                    let shown = !field.starts_with('_')
                        && !field.starts_with("SYSLOG_")
                        && !field.starts_with("CODE_")
                        && !NOT_SHOWN.contains(&field.as_str());
                    if let (true, Some(value)) = (shown, value.as_str()) {
                        line += &format!(" {field}={value}");
                    }
                }
            }
            Some(format!(
                "  +{:7.1} ms {}: {line}",
                ms_between(since, at),
                node.role
            ))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The PostgreSQL recipe as written (contrib/postgresql/vipd.toml, its
/// scripts in /etc/vipd; `after_crash` as `after_crash` says) under the
/// unit: a primary on sd1, a synchronous streaming standby on sd2, one
/// INSERT every 20 ms through the VIP. Then the primary's server and its
/// vipd die together: `kill -9` of the postmaster and its children, and
/// `systemctl kill -s KILL vipd.service` (so the unit's clean-up and restart
/// run), at the same moment. The standby must be promoted by the recipe's
/// gate and take the VIP, with every acknowledged write on it.
/// The peer address contrib/postgresql/vipd.toml gives its gate.
const PG_RECIPE_PEER: &str = "10.0.0.12";

fn crash_the_primary(tag: &str, after_crash: AfterCrash) -> PrimaryCrash {
    let recipe = Recipe::load("contrib/postgresql/vipd.toml");
    assert!(
        recipe.lines.iter().any(|l| l.contains(PG_RECIPE_PEER)),
        "{}: the gate names the peer {PG_RECIPE_PEER}",
        recipe.file
    );
    let resume_line = "after_crash = \"resume\"";
    assert!(
        recipe.lines.iter().any(|l| l.trim() == resume_line),
        "{}: {resume_line}",
        recipe.file
    );
    let lines: Vec<&str> = recipe
        .lines
        .iter()
        .map(String::as_str)
        .filter(|l| after_crash == AfterCrash::Resume || l.trim() != resume_line)
        .collect();
    let inst = recipe.instance();
    let advert = inst.advert_interval;
    let lab = Lab::new(tag, 0);
    let vip = lab.vip4(0);
    // The recipe's gate names the other node's address: sd1 and sd2 sit at
    // host parts 1 and 2 of the lab's network.
    let (net, _) = lab.client.v4.rsplit_once('.').expect("the client's IPv4");
    let setup = |name: &str| {
        let peer = format!("{net}.{}", if name == "sd1" { 2 } else { 1 });
        let lines: Vec<String> = lines
            .iter()
            .map(|l| l.replace(PG_RECIPE_PEER, &peer))
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let mut setup = UnitSetup::new(spec(name, inst.priority, &vip, &recipe.advert(), &lines));
        for script in PG_RECIPE_SCRIPTS {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("contrib/postgresql")
                .join(script);
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{script}: {e}"));
            setup = setup.file(script, &text, 0o755);
        }
        setup
    };

    let nodes = SystemdNode::boot_all(&lab, &[setup("sd1"), setup("sd2")]);
    let primary = Postgres::primary(&nodes[0].host().ns, "db1", &[]);
    let standby = Postgres::standby(&nodes[1].host().ns, "db2", &nodes[0].host().v4, &[]);
    // Synchronous once the standby is there, as the recipe asks (every
    // commit before would wait).
    primary.sql("ALTER SYSTEM SET synchronous_standby_names = '*'");
    primary.sql("SELECT pg_reload_conf()");
    wait_until("the standby streams", Duration::from_secs(30), || {
        primary.sql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == "1"
    });
    nodes[0].start_vipd();
    wait_master(&nodes[0], &vip);
    nodes[1].start_vipd();
    wait_backup(&nodes[1], &vip);
    let watches: Vec<AddrWatch> = nodes
        .iter()
        .map(|n| AddrWatch::start(n.host()).expect("address watch"))
        .collect();
    let writer = PgWriter::start_once_acknowledged(
        &lab.client.ns,
        &vip,
        Duration::from_millis(20),
        &primary,
    );
    // sd2 learns the ranks (three backup intervals), as on a pair that has
    // run for a while: it then takes a release over at once.
    sleep_checked(Duration::from_secs(4));

    let old_pid = nodes[0].property("MainPID");
    let from = Instant::now();
    let anchor = (Instant::now(), monotonic_us());
    let sent = anchor.1;
    thread::scope(|s| {
        s.spawn(|| nodes[0].systemctl_ok(&["kill", "-s", "KILL", "vipd.service"]));
        primary.crash();
    });
    let claimed = watches[1]
        .wait_for(&vip, true, sent, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("sd2 never claimed {vip}"));
    wait_master(&nodes[1], &vip);
    wait_until("db2 is primary", Duration::from_secs(30), || {
        standby.sql("SELECT pg_is_in_recovery()") == "f"
    });
    let promoted_with: u32 = standby
        .sql("SELECT coalesce(max(n), 0) FROM writes")
        .parse()
        .expect("a number");
    wait_until("writes reach db2", Duration::from_secs(30), || {
        let now: u32 = standby
            .sql("SELECT coalesce(max(n), 0) FROM writes")
            .parse()
            .expect("a number");
        now > promoted_with
    });
    wait_until("sd1's vipd restarted", Duration::from_secs(30), || {
        let pid = nodes[0].property("MainPID");
        pid != old_pid && pid != "0"
    });
    sleep_checked(Duration::from_secs(3));
    let writes = writer.finish();
    let until = monotonic_us();

    let stored: BTreeSet<u32> = standby
        .sql("SELECT n FROM writes")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let missing: Vec<u32> = writes
        .acked
        .iter()
        .map(|a| a.1)
        .filter(|n| !stored.contains(n))
        .collect();
    let gate = nodes[1]
        .journal_json()
        .into_iter()
        .find(|e| {
            e["MESSAGE"]
                .as_str()
                .is_some_and(|m| m.contains("before_claim gate passed"))
                && e["__MONOTONIC_TIMESTAMP"]
                    .as_str()
                    .and_then(|t| t.parse::<u64>().ok())
                    .is_some_and(|t| t >= sent)
        })
        .unwrap_or_else(|| panic!("sd2 logged no gate\n{}", nodes[1].journal()));
    let promotion = Duration::from_millis(
        gate["TOOK_MS"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("the gate's entry has no TOOK_MS: {gate}")),
    );
    let gate_done: u64 = gate["__MONOTONIC_TIMESTAMP"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("the gate's timestamp");
    let vipd_died = nodes[0].journal_time("Main process exited", sent);
    let restarted: u64 = nodes[0]
        .property("ExecMainStartTimestampMonotonic")
        .parse()
        .expect("ExecMainStartTimestampMonotonic");
    let removed_from_sd1 = watches[0].first(&vip, false, sent);
    let claimed_at = instant_at(claimed.at, anchor);
    let first_ack_after_claim = writes.acked.iter().map(|a| a.0).find(|&t| t >= claimed_at);
    let last_ack_before_crash = writes.acked.iter().map(|a| a.0).filter(|&t| t < from).max();
    // The session that carried it: a connect whose SYN went out while no
    // node answered for the VIP waits for TCP's retransmission (1 s).
    let its_session = first_ack_after_claim
        .and_then(|ack| writes.sessions.iter().copied().filter(|&t| t <= ack).max());
    let result = PrimaryCrash {
        outage: writes.longest_gap_since(from),
        promotion,
        master_down: advert * 3 + vipd::config::defaults::TAKEOVER_MARGIN,
        missing,
    };
    let at = |us: Option<u64>| {
        us.map_or("never".to_owned(), |us| {
            format!("+{:.1} ms", ms_between(sent, us))
        })
    };
    let since_crash = |t: Option<Instant>| {
        t.map_or("never".to_owned(), |t| {
            if t >= from {
                format!("+{:.1} ms", (t - from).as_secs_f64() * 1e3)
            } else {
                format!("-{:.1} ms", (from - t).as_secs_f64() * 1e3)
            }
        })
    };
    eprintln!(
        "[{tag}] {after_crash:?}: kill -9 of the primary's postmaster and `systemctl kill -s KILL \
         vipd` at once (t = 0): vipd dead {} (systemd's journal); VIP removed from sd1 {}; sd1's \
         vipd restarted {}; sd2's gate (promote.sh) ran from +{:.1} ms for {} ms; sd2 claimed \
         the VIP {}",
        at(vipd_died),
        at(removed_from_sd1.map(|e| e.at)),
        at(Some(restarted)),
        ms_between(sent, gate_done) - promotion.as_millis() as f64,
        promotion.as_millis(),
        at(Some(claimed.at)),
    );
    eprintln!(
        "[{tag}] {after_crash:?}: client, one INSERT every 20 ms: {} sent, {} acknowledged, {} \
         sessions; last acknowledgement before the crash {}, first after the claim {} on a \
         session opened {}; write outage (longest time between two acknowledgements) {:.1} ms, target ≤ master-down {} \
         ms + promotion {} ms + 50 ms = {} ms ({}); acknowledged but missing on the new \
         primary: {}",
        writes.sent,
        writes.acked.len(),
        writes.sessions.len(),
        since_crash(last_ack_before_crash),
        since_crash(first_ack_after_claim),
        since_crash(its_session),
        result.outage.as_secs_f64() * 1e3,
        result.master_down.as_millis(),
        result.promotion.as_millis(),
        result.target().as_millis(),
        if result.outage <= result.target() {
            "met"
        } else {
            "MISSED"
        },
        result.missing.len()
    );
    eprintln!(
        "[{tag}] {after_crash:?}: the journals from the crash on:\n{}\n{}",
        journal_since(&nodes[0], sent, until),
        journal_since(&nodes[1], sent, until)
    );
    assert!(nodes[1].host().holds(&vip), "sd2 holds the VIP");
    assert!(!nodes[0].host().holds(&vip), "sd1 still holds the VIP");
    assert!(
        first_ack_after_claim.is_some(),
        "no write was acknowledged after sd2 claimed the VIP"
    );
    result
}

/// The recipe's setting, `after_crash = "resume"`: the clean-up leaves the
/// VIP for the restarted daemon (RestartSec=1s), which resumes as master,
/// finds no server (the first `postgres-up` result after a start is a fault
/// at once), goes to fault and releases; only then is the standby promoted
/// and takes over. The output says whether the target was met; the bound
/// asserted is looser, as the restart alone takes a third of the target.
#[test]
fn postgres_pair_with_the_recipe_a_crashed_primary_and_vipd_that_resumes_lose_no_write() {
    if !require_root() {
        return;
    }
    let crash = crash_the_primary("svcpgresume", AfterCrash::Resume);
    assert!(
        crash.missing.is_empty(),
        "acknowledged writes lost: {:?}",
        crash.missing
    );
    // The restart (RestartSec=1s and the start), the first check, the
    // promotion and a reconnect's SYN retransmission (1 s), with room for a
    // loaded machine.
    let bound = crash.target() + Duration::from_secs(3);
    assert!(
        crash.outage <= bound,
        "{:?} without an acknowledged write (bound {bound:?}; target {:?})",
        crash.outage,
        crash.target()
    );
}

/// vipd's default, a handover: the clean-up announces the dead master's
/// release, the standby is promoted at once and takes over.
#[test]
fn postgres_pair_with_the_recipe_a_crashed_primary_and_vipd_that_hand_over_lose_no_write() {
    if !require_root() {
        return;
    }
    let crash = crash_the_primary("svcpghandover", AfterCrash::Handover);
    assert!(
        crash.missing.is_empty(),
        "acknowledged writes lost: {:?}",
        crash.missing
    );
    assert!(
        crash.outage <= crash.target(),
        "{:?} without an acknowledged write (target {:?})",
        crash.outage,
        crash.target()
    );
}

/// `vipd ARGS` inside `node` (its control socket is /run/vipd/vipd.sock, the
/// unit's RuntimeDirectory); panics, with the journal, unless it succeeds.
/// Returns what it printed, on one line.
fn vipd_cli(node: &SystemdNode, args: &[&str]) -> String {
    node.nsenter_ok("/usr/sbin/vipd", args)
        .trim()
        .replace('\n', "; ")
}

/// How many GETs failed from `from` to `to`, and what the client saw then, as
/// one line for the test's output.
fn describe(log: &HttpLog, from: Instant, to: Instant) -> (usize, String) {
    let step = log.between(from, to);
    let failed = step.failed_since(from);
    let line = format!(
        "{failed} of {} GETs failed, longest time without an answer {:.1} ms, answered by {:?}",
        step.since(from).count(),
        step.longest_outage_since(from).as_secs_f64() * 1e3,
        step.answered_by(from)
    );
    (failed, line)
}

/// contrib/haproxy/vipd.toml as written (its advert interval, `preempt`,
/// `after_crash` and its curl check, on the test's port): `kill -9` of the
/// master's HAProxy. The check fails `fall` times, the master goes to fault
/// and releases the VIP, and the backup takes over.
#[test]
fn haproxy_pair_with_the_recipe_a_killed_haproxy_moves_the_vip() {
    if !require_root() {
        return;
    }
    let recipe = Recipe::proxy("contrib/haproxy/vipd.toml");
    let target = recipe.target();
    let mut pair = Pair::from_recipe("svchakill", ProxyKind::Haproxy, &recipe);
    let watch = AddrWatch::start(pair.nodes[1].host()).expect("address watch on sd2");
    let client = pair.client();
    // The backup learns the ranks (three backup intervals of 1 s) and so takes
    // a release at once, as on a pair that has run for a while.
    sleep_checked(Duration::from_secs(4));

    let from = Instant::now();
    let sent = monotonic_us();
    match &mut pair.proxies[0] {
        Proxy::Haproxy(haproxy) => haproxy.kill(),
        Proxy::Nginx { .. } => unreachable!("an HAProxy pair"),
    }
    let claimed = watch
        .wait_for(&pair.vip, true, sent, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("sd2 never claimed {}", pair.vip));
    wait_master(&pair.nodes[1], &pair.vip);
    sleep_checked(Duration::from_secs(1));
    let log = client.finish();

    let moved = Duration::from_micros(claimed.at - sent);
    let failed = log.failed_since(from);
    let outage = log.longest_outage_since(from);
    eprintln!(
        "[svchakill] {}: kill -9 of sd1's HAProxy: sd2 claimed the VIP {:.1} ms later (target: \
         check interval × fall + 1 advert = {:.0} ms); sd1 now {:?}",
        recipe.file,
        moved.as_secs_f64() * 1e3,
        target.as_secs_f64() * 1e3,
        pair.nodes[0].property("StatusText")
    );
    eprintln!(
        "[svchakill] client, GET every {} ms: {failed} of {} failed, longest time without an \
         answer {:.1} ms, answered by {:?}",
        GET_EVERY.as_millis(),
        log.since(from).count(),
        outage.as_secs_f64() * 1e3,
        log.answered_by(from)
    );
    // Twice the target, for a loaded CI machine (curl's start-up counts in
    // every check); the figures above are what the README quotes.
    let bound = target * 2;
    assert!(
        moved < bound,
        "sd2 claimed the VIP {moved:?} after the kill (bound {bound:?})\n{}",
        pair.nodes[0].journal()
    );
    let failed_bound = (bound.as_millis() / GET_EVERY.as_millis()) as usize;
    assert!(
        failed <= failed_bound,
        "{failed} GETs failed (bound {failed_bound}):\n{}",
        log.describe_failures(from)
    );
    assert!(
        outage < bound + GET_DEADLINE,
        "{outage:?} without an answer (bound {:?})",
        bound + GET_DEADLINE
    );
}

/// contrib/nginx/vipd.toml as written, on an nginx pair: `vipd drain db
/// --wait` on the master, `vipd undrain db` (with `preempt = false` nothing
/// moves), `vipd promote db --wait` (the fail-back by hand the recipe
/// suggests), then `systemctl stop vipd` on the master. Each hands over
/// make-before-break: the client should see no failed GET.
#[test]
fn nginx_pair_with_the_recipe_drain_promote_and_stop_lose_no_request() {
    if !require_root() {
        return;
    }
    let recipe = Recipe::proxy("contrib/nginx/vipd.toml");
    let pair = Pair::from_recipe("svcnginx", ProxyKind::Nginx, &recipe);
    let client = pair.client();
    sleep_checked(Duration::from_secs(4));
    let [sd1, sd2] = [&pair.nodes[0], &pair.nodes[1]];

    let t0 = Instant::now();
    let said = vipd_cli(sd1, &["drain", "db", "--wait"]);
    eprintln!("[svcnginx] vipd drain db --wait on sd1: {said}");
    wait_master(sd2, &pair.vip);
    assert!(!sd1.host().holds(&pair.vip), "sd1 kept the VIP");
    sleep_checked(Duration::from_millis(500));

    let t1 = Instant::now();
    vipd_cli(sd1, &["undrain", "db"]);
    // sd2 hears sd1 eligible again from its next advert (1 s, the backup
    // interval); with preempt off, sd1 stays backup.
    sleep_checked(Duration::from_millis(2500));
    assert!(sd2.host().holds(&pair.vip), "undrain moved the VIP");
    assert!(sd1.property("StatusText").contains("db: backup"));

    let t2 = Instant::now();
    let said = vipd_cli(sd1, &["promote", "db", "--wait"]);
    eprintln!("[svcnginx] vipd promote db --wait on sd1: {said}");
    wait_master(sd1, &pair.vip);
    wait_backup(sd2, &pair.vip);
    sleep_checked(Duration::from_millis(500));

    let t3 = Instant::now();
    sd1.systemctl_ok(&["stop", "vipd.service"]);
    wait_master(sd2, &pair.vip);
    assert!(!sd1.host().holds(&pair.vip), "sd1 kept the VIP after stop");
    sleep_checked(Duration::from_millis(500));
    let t4 = Instant::now();
    let log = client.finish();

    let steps = [
        ("vipd drain db --wait on master sd1", t0, t1),
        ("vipd undrain db on sd1", t1, t2),
        ("vipd promote db --wait on backup sd1", t2, t3),
        ("systemctl stop vipd on master sd1", t3, t4),
    ];
    let mut failures = Vec::new();
    for (step, from, to) in steps {
        let (failed, line) = describe(&log, from, to);
        eprintln!("[svcnginx] {step}: {line}");
        if failed > 0 {
            failures.push(format!(
                "{step}: {failed} failed\n{}",
                log.between(from, to).describe_failures(from)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What both recipes warn about: a proxy on the backup bound to the VIP's
/// address itself cannot start while the node does not hold it, unless
/// `net.ipv4.ip_nonlocal_bind` is 1; then it starts, and serves the VIP as
/// soon as the address arrives.
#[test]
fn a_proxy_bound_to_the_vip_starts_on_the_backup_only_with_ip_nonlocal_bind() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("svcbind", 1);
    let node = lab.node(1);
    let vip = lab.vip4(0);
    let bind = format!("{}:{HTTP_PORT}", strip_prefix_len(&vip));
    let url = format!("http://{bind}/");
    for kind in [ProxyKind::Haproxy, ProxyKind::Nginx] {
        node.ns.sysctl(&["net.ipv4.ip_nonlocal_bind=0"]);
        let refused = match Proxy::try_start(kind, &node.ns, "n1", &bind) {
            Ok(_) => panic!("{kind:?} bound {bind}, an address n1 does not hold"),
            Err(why) => why,
        };
        let said = refused
            .lines()
            .find(|l| l.contains("Cannot assign requested address"))
            .unwrap_or_else(|| panic!("{kind:?} failed otherwise: {refused}"));
        eprintln!("[svcbind] {kind:?} on {bind} without the address did not start: {said}");

        node.ns.sysctl(&["net.ipv4.ip_nonlocal_bind=1"]);
        let proxy = Proxy::try_start(kind, &node.ns, "n1", &bind)
            .unwrap_or_else(|e| panic!("{kind:?} with ip_nonlocal_bind=1: {e}"));
        node.ns.ip(&["addr", "add", &vip, "dev", "eth0"]);
        let answer = lab
            .client
            .ns
            .exec(&["curl", "-fsS", "--max-time", "2", &url]);
        eprintln!(
            "[svcbind] {kind:?} on {bind} with ip_nonlocal_bind=1: started; once n1 holds the \
             VIP it answers {:?}",
            answer.trim()
        );
        assert_eq!(answer.trim(), "n1");
        node.ns.ip(&["addr", "del", &vip, "dev", "eth0"]);
        drop(proxy);
    }
}
