//! The VIP held by a lease in etcd (`election = "etcd"`): vipd on two or three
//! nodes, three etcd 3.4 members beside them on the lab's bridge (each in a
//! namespace of its own), the holder sampler reading every node's addresses
//! every millisecond and a client asking for the VIP by ARP every millisecond.
//!
//! Covered: the etcd harness itself (a member cluster that survives the loss
//! of its leader); with `lease_ttl = "2s"` and `store_unreachable =
//! "fail-closed"`: the loss of etcd's leader moves nothing; drain and promote
//! hand the VIP over losing at most one 2 ms probe; kill -9 of the holder's
//! vipd followed by the unit's clean-up (`vipd cleanup`) moves the VIP at
//! once and never to two holders; the holder's host going down moves it
//! once the lease runs out; the holder cut off from every etcd member releases the VIP before
//! anyone else can take it (no round with two holders); every etcd member
//! down takes the VIP off every node before the lease's TTL has passed. With
//! `store_unreachable = "fail-open"`: every member down leaves the VIP where
//! it is, and the status says nobody vouches for it.
//!
//! Measured, printed (`cargo test --release --test etcd_lease --
//! --nocapture`): each move's time beside the lease's TTL, the sampler's
//! rounds with two holders and longest stretch with none, the client's lost
//! probes.

mod common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::*;

/// Removes its files when dropped, also when the test fails.
struct RemoveOnDrop(Vec<std::path::PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The lease's TTL the fail-closed and fail-open tests run with.
const LEASE_TTL: Duration = Duration::from_secs(2);

/// The default lease_ttl, which the lease's own test runs with.
const LONG_TTL: Duration = Duration::from_secs(5);

/// One test of this binary at a time: each runs a 1 ms sampler and prober
/// and counts 2 ms pings, which a busy 2-core machine would disturb.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A lab with etcd and vipd on every node, the sampler and the client's ARP
/// prober on its VIP.
struct LeaseLab {
    // Field order is drop order: watchers, daemons, etcd, then the lab.
    arp: ArpProber,
    sampler: HolderSampler,
    daemons: Vec<Daemon>,
    etcd: EtcdCluster,
    vip: String,
    lab: Lab,
}

impl LeaseLab {
    /// `nodes` nodes at priorities 150, 100, 50 with `store_unreachable`;
    /// waits until one of them alone holds the VIP.
    fn start(tag: &str, nodes: usize, store_unreachable: &str, ttl: Duration) -> Self {
        Self::start_with(tag, nodes, store_unreachable, ttl, |_, node| node)
    }

    /// [`Self::start`], with each node's spec passed through `shape` (its
    /// number from 1, the spec) before it starts.
    fn start_with(
        tag: &str,
        nodes: usize,
        store_unreachable: &str,
        ttl: Duration,
        shape: impl Fn(usize, NodeSpec) -> NodeSpec,
    ) -> Self {
        let lab = Lab::new(tag, nodes);
        let started = Instant::now();
        let etcd = EtcdCluster::start(&lab, false);
        let etcd_took = started.elapsed();
        let vip = lab.vip4(0);
        let daemons: Vec<Daemon> = (1..=nodes)
            .map(|i| {
                let priority = [150, 100, 50][i - 1];
                let ttl = format!("{}s", ttl.as_secs());
                let spec = InstanceSpec::etcd(priority, &ttl, store_unreachable).vip(&vip);
                let node = NodeSpec::new(&format!("n{i}"), spec).etcd(&etcd.endpoints());
                Daemon::start(lab.node(i), shape(i, node))
            })
            .collect();
        let hosts: Vec<&Host> = lab.nodes.iter().collect();
        let sampler = HolderSampler::start(&hosts, &[&vip]).expect("holder sampler");
        let addr: Ipv4Addr = strip_prefix_len(&vip).parse().expect("an IPv4 VIP");
        let arp = ArpProber::start(&lab.client, addr).expect("ARP prober");
        let this = Self {
            arp,
            sampler,
            daemons,
            etcd,
            vip,
            lab,
        };
        let holder = this.wait_sole_holder(Duration::from_secs(20));
        eprintln!(
            "[{tag}] etcd healthy after {} ms; n{holder} holds the VIP {} ms after the start",
            ms(etcd_took),
            ms(started.elapsed())
        );
        this
    }

    /// Waits until one node alone has held the VIP for 100 ms and returns it.
    fn wait_sole_holder(&self, deadline: Duration) -> usize {
        let mut holder = 0;
        let mut since = Instant::now();
        wait_until("one node alone holds the VIP", deadline, || {
            let now = self.sampler.holders_now(&self.vip);
            match now.as_slice() {
                [one] if *one == holder => since.elapsed() >= Duration::from_millis(100),
                [one] => {
                    holder = *one;
                    since = Instant::now();
                    false
                }
                _ => {
                    holder = 0;
                    false
                }
            }
        });
        holder
    }

    /// Waits until a node other than `old` holds the VIP (from `from` on) and
    /// returns it and when the sampler first saw it there.
    fn wait_moved_from(&self, old: usize, from: Instant, deadline: Duration) -> (usize, Instant) {
        let mut found = None;
        wait_until(
            &format!("a node other than n{old} holds the VIP"),
            deadline,
            || {
                found = (1..=self.lab.nodes.len())
                    .filter(|&n| n != old)
                    .filter_map(|n| self.sampler.first_held(&self.vip, n, from).map(|t| (n, t)))
                    .min_by_key(|&(_, t)| t);
                found.is_some()
            },
        );
        found.expect("found above")
    }

    /// `GET /metrics` from the node's own namespace (its `metrics_listen`
    /// is 127.0.0.1:9650 there): the status code and the body.
    fn metrics(&self, node: usize) -> (u16, String) {
        let ns = self.lab.node(node).ns.name.clone();
        in_netns(&ns, || {
            http(
                "127.0.0.1:9650",
                "GET",
                "/metrics",
                None,
                Duration::from_secs(5),
            )
        })
        .expect("GET /metrics")
    }

    fn daemon(&self, node: usize) -> &Daemon {
        &self.daemons[node - 1]
    }

    /// The `store` object of `node`'s first instance, if it answers.
    fn store(&self, node: usize) -> Option<serde_json::Value> {
        self.daemon(node)
            .first_instance_status()
            .map(|(_, s)| s["store"].clone())
    }

    /// Prints what the sampler and the client saw from `from` to now under
    /// `what`; returns the sampler's report.
    fn report(&self, tag: &str, what: &str, from: Instant) -> HolderReport {
        let to = Instant::now();
        let report = self.sampler.report(&self.vip, from, to);
        let client = self.arp.snapshot().window(from, to);
        eprintln!(
            "[{tag}] {what}: sampler: {}; client ARP every 1 ms: {} lost, longest gap {:.1} ms, \
             {} answered by two",
            report.describe(),
            client.lost,
            client.longest_gap_ms,
            client.answered_by_two
        );
        report
    }

    /// Runs `operation` while the client pings the VIP every 2 ms (as
    /// tests/maintenance.rs does) and returns the probes lost.
    fn pinged(&self, tag: &str, what: &str, operation: impl FnOnce()) -> ProbeResult {
        let interval = Duration::from_millis(2);
        let prober = Prober::start(&self.lab.client, &self.vip, interval, 2000);
        sleep_checked(Duration::from_millis(1000));
        operation();
        let result = prober.finish();
        eprintln!(
            "[{tag}] {what}: {} of {} pings lost at 2 ms ({}); {}",
            result.lost.len(),
            result.sent,
            result.describe_lost(interval),
            result.summary
        );
        result
    }
}

fn ms_f(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The harness: three members elect a leader; killed with SIGKILL, the
/// others elect another and keep serving; the killed member rejoins on its
/// data; all stopped and started again, the data is still there.
#[test]
fn etcd_cluster_recovers_from_the_loss_of_its_leader() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let lab = Lab::new("etcdh", 1);
    let started = Instant::now();
    let mut etcd = EtcdCluster::start(&lab, true);
    eprintln!(
        "[etcdh] three members healthy after {} ms",
        ms(started.elapsed())
    );
    let endpoints = etcd.endpoints();
    let put = etcd.etcdctl(&endpoints, &["put", "/vt/harness", "before"]);
    assert!(put.status.success(), "{}", output_text(&put));
    let leader = etcd.leader().expect("a leader");
    let killed = Instant::now();
    etcd.kill(leader);
    let mut new_leader = None;
    let took = wait_until(
        "the other members elect a new leader",
        Duration::from_secs(10),
        || {
            new_leader = etcd.leader().filter(|&l| l != leader);
            new_leader.is_some()
        },
    );
    eprintln!(
        "[etcdh] e{} SIGKILLed: e{} leads {} ms later (election timeout 1000 ms)",
        leader + 1,
        new_leader.expect("found above") + 1,
        ms(took)
    );
    let put = etcd.etcdctl(&endpoints, &["put", "/vt/harness", "during"]);
    assert!(put.status.success(), "{}", output_text(&put));
    etcd.restart(leader);
    eprintln!(
        "[etcdh] e{} back on its data, all healthy {} ms after the kill",
        leader + 1,
        ms(killed.elapsed())
    );
    etcd.stop_all();
    etcd.start_all();
    assert_eq!(etcd.get_v3("/vt/harness").as_deref(), Some("during"));
    assert_eq!(etcd.get_v2("/vt/none"), None);
}

/// Three nodes, fail-closed: the loss of etcd's leader moves nothing; drain
/// and promote move the VIP losing at most one 2 ms probe; kill -9 of the
/// holder's vipd, then the holder's host going down, move it once the lease
/// runs out.
#[test]
fn the_vip_follows_the_lease() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let tag = "lease";
    // The default lease_ttl: it rides out an etcd leader election (about
    // its 1 s election timeout), which 2 s would not always do.
    let mut t = LeaseLab::start(tag, 3, "fail-closed", LONG_TTL);
    let holder = t.wait_sole_holder(Duration::from_secs(5));
    let store = t.store(holder).expect("the holder's status");
    assert_eq!(store["kind"], "etcd", "{store:#}");
    assert_eq!(store["holder"], format!("n{holder}"), "{store:#}");
    assert_eq!(
        store["lease_ttl_ms"],
        LONG_TTL.as_millis() as u64,
        "{store:#}"
    );
    assert_eq!(store["on_unreachable"], "fail-closed", "{store:#}");
    assert!(
        store["lease_id"].is_i64() || store["lease_id"].is_u64(),
        "{store:#}"
    );
    assert!(store["fencing_token"].is_u64(), "{store:#}");
    for node in (1..=3).filter(|&n| n != holder) {
        let (_, status) = t.daemon(node).first_instance_status().expect("status");
        assert_eq!(status["state"], "backup", "n{node}: {status:#}");
        assert_eq!(
            status["store"]["holder"],
            format!("n{holder}"),
            "{status:#}"
        );
    }

    // 1. etcd's leader dies: the others elect another within the lease; the
    // VIP stays.
    let from = Instant::now();
    let leader = t.etcd.leader().expect("an etcd leader");
    t.etcd.kill(leader);
    hold_for(
        "the VIP stays on its holder while etcd elects a new leader",
        LONG_TTL * 2,
        || t.sampler.holders_now(&t.vip) == [holder],
    );
    let report = t.report(tag, &format!("etcd leader e{} SIGKILLed", leader + 1), from);
    assert!(
        report.changes.is_empty(),
        "the VIP moved: {}",
        report.describe()
    );
    t.etcd.restart(leader);

    // 2. drain --wait on the holder: another node takes it, make before break.
    let from = Instant::now();
    let mut out = None;
    let drained = t.pinged(tag, &format!("drain --wait on n{holder}"), || {
        out = Some(t.daemon(holder).cli(&["drain", "db", "--wait"]));
    });
    let out = out.expect("drain ran");
    assert!(out.status.success(), "drain: {}", output_text(&out));
    let successor = t.wait_sole_holder(Duration::from_secs(10));
    assert_ne!(successor, holder, "the drained node kept the VIP");
    t.report(tag, &format!("drain of n{holder} to n{successor}"), from);
    assert!(
        drained.lost.len() <= 1,
        "drain lost {} probes: {}",
        drained.lost.len(),
        drained.describe_lost(Duration::from_millis(2))
    );
    let out = t.daemon(holder).cli(&["undrain", "db"]);
    assert!(out.status.success(), "undrain: {}", output_text(&out));

    // 3. promote --wait on the first holder takes the VIP back.
    let from = Instant::now();
    let mut out = None;
    let promoted = t.pinged(tag, &format!("promote --wait on n{holder}"), || {
        out = Some(t.daemon(holder).cli(&["promote", "db", "--wait"]));
    });
    let out = out.expect("promote ran");
    assert!(out.status.success(), "promote: {}", output_text(&out));
    assert_eq!(t.wait_sole_holder(Duration::from_secs(10)), holder);
    t.report(tag, &format!("promote of n{holder}"), from);
    assert!(
        promoted.lost.len() <= 1,
        "promote lost {} probes: {}",
        promoted.lost.len(),
        promoted.describe_lost(Duration::from_millis(2))
    );

    // 4. kill -9 of the holder's vipd, then the clean-up the unit runs as
    // its ExecStopPost: the address goes first, then the lease of the holder
    // key, so another node takes the VIP at once and never while the killed
    // one still has it.
    let from = Instant::now();
    t.daemons[holder - 1].kill9();
    let killed = &t.daemons[holder - 1];
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &killed.netns,
            vipd_bin(),
            "cleanup",
            "--config",
        ])
        .arg(&killed.config)
        .output()
        .expect("run vipd cleanup");
    assert!(out.status.success(), "vipd cleanup: {}", output_text(&out));
    let (next, at) = t.wait_moved_from(holder, from, LONG_TTL + Duration::from_secs(10));
    let took = at - from;
    let report = t.report(
        tag,
        &format!("kill -9 of n{holder}'s vipd, then vipd cleanup"),
        from,
    );
    eprintln!(
        "[{tag}] kill -9 of n{holder}'s vipd and the unit's clean-up: n{next} holds the VIP {:.1} ms after the kill (lease_ttl {} ms)",
        ms_f(took),
        ms(LONG_TTL)
    );
    assert!(
        report.two_holders.is_empty(),
        "two holders after the clean-up: {}",
        report.describe()
    );
    assert!(
        took < LONG_TTL,
        "n{next} took the VIP {took:?} after the kill: the clean-up did not release the lease"
    );
    // The restarted daemon finds its old address and a lease that is not its.
    t.daemons[holder - 1].restart();
    let from = Instant::now();
    let current = t.wait_sole_holder(Duration::from_secs(20));
    t.report(tag, &format!("n{holder}'s vipd restarted"), from);

    // 5. The holder's host goes down: link down, every process killed.
    let from = Instant::now();
    t.lab.node(current).link(false);
    t.daemons[current - 1].crash();
    let (next, at) = t.wait_moved_from(current, from, LONG_TTL + Duration::from_secs(10));
    let took = at - from;
    let report = t.report(tag, &format!("n{current}'s host down"), from);
    assert!(
        report.two_holders.is_empty(),
        "two holders after the host went down: {}",
        report.describe()
    );
    eprintln!(
        "[{tag}] n{current}'s host down: n{next} holds the VIP {:.1} ms later (lease_ttl {} ms)",
        ms_f(took),
        ms(LONG_TTL)
    );
    assert!(
        took <= LONG_TTL + Duration::from_secs(2),
        "n{next} took the VIP {took:?} after the host went down"
    );
    let token_before = store["fencing_token"].as_u64().expect("checked above");
    let store = t.store(next).expect("the new holder's status");
    let token_after = store["fencing_token"].as_u64().expect("a fencing token");
    assert!(
        token_after > token_before,
        "fencing token {token_after} after {token_before}: {store:#}"
    );
}

/// Two nodes, fail-closed: the holder cut off from every etcd member releases
/// the VIP before the other can take it; every member down takes the VIP off
/// every node before the lease's TTL has passed, and it comes back once they
/// are up.
#[test]
fn fail_closed_gives_the_vip_up_before_anyone_else_can_take_it() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let tag = "closed";
    let mut t = LeaseLab::start(tag, 2, "fail-closed", LEASE_TTL);
    let holder = t.wait_sole_holder(Duration::from_secs(5));
    let other = 3 - holder;

    // 1. The holder is cut off from the members (not from the other node or
    // the client).
    let from = Instant::now();
    t.etcd.partition(&t.lab.node(holder).ns);
    let (_, gained) = t.wait_moved_from(holder, from, LEASE_TTL + Duration::from_secs(10));
    sleep_checked(Duration::from_millis(300));
    let report = t.report(tag, &format!("n{holder} cut off from etcd"), from);
    let released = report
        .lost(holder)
        .expect("the cut-off holder released the VIP");
    eprintln!(
        "[{tag}] n{holder} cut off from etcd: released the VIP {:.1} ms after the cut, n{other} \
         took it {:.1} ms after it (lease_ttl {} ms)",
        ms_f(released - from),
        ms_f(gained - from),
        ms(LEASE_TTL)
    );
    assert!(
        released <= gained,
        "n{other} took the VIP before n{holder} released it"
    );
    assert!(
        report.two_holders.is_empty(),
        "two holders: {}",
        report.describe()
    );
    assert!(
        released - from <= LEASE_TTL,
        "n{holder} held the VIP {:?} after it lost etcd",
        released - from
    );
    wait_until(
        "the cut-off node reports etcd unreachable",
        Duration::from_secs(5),
        || t.store(holder).is_some_and(|s| s["reachable"] == false),
    );
    t.etcd.heal(&t.lab.node(holder).ns);
    let from = Instant::now();
    // The healed node has the higher priority, and preempt is on: it takes
    // the VIP back, make-before-break, and keeps it.
    wait_until(
        "the healed, better node takes the VIP back",
        Duration::from_secs(10),
        || t.sampler.holders_now(&t.vip) == [holder],
    );
    hold_for("the VIP stays put after the heal", LEASE_TTL, || {
        t.sampler.holders_now(&t.vip) == [holder]
    });
    t.report(tag, "after the heal", from);

    // 2. Every member down: nobody may vouch for the lease, so the VIP goes
    // from every node before its TTL has passed.
    let from = Instant::now();
    t.etcd.stop_all();
    let mut gone = None;
    wait_until(
        "no node holds the VIP",
        LEASE_TTL + Duration::from_secs(5),
        || {
            gone = t.sampler.first_unheld(&t.vip, from);
            gone.is_some()
        },
    );
    let gone = gone.expect("found above") - from;
    hold_for("nobody holds the VIP while etcd is down", LEASE_TTL, || {
        t.sampler.holders_now(&t.vip).is_empty()
    });
    t.report(tag, "every etcd member SIGKILLed", from);
    eprintln!(
        "[{tag}] every etcd member down: the VIP off every node {:.1} ms later (lease_ttl {} ms)",
        ms_f(gone),
        ms(LEASE_TTL)
    );
    assert!(gone < LEASE_TTL, "the VIP stayed {gone:?} without etcd");
    for node in 1..=2 {
        let store = t.store(node).expect("status");
        assert_eq!(store["reachable"], false, "n{node}: {store:#}");
    }
    let from = Instant::now();
    t.etcd.start_all();
    let back = t.wait_sole_holder(Duration::from_secs(20));
    t.report(tag, &format!("etcd back: n{back} holds the VIP"), from);
}

/// Two nodes, fail-open: every etcd member down leaves the VIP on its holder
/// for well beyond the lease's TTL, and the status says so: unreachable, not
/// vouched for; once etcd is back it is vouched for again, still on one node.
#[test]
fn fail_open_keeps_the_vip_while_etcd_is_down() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let tag = "open";
    let tokens = |i: usize| {
        std::env::temp_dir().join(format!("vipd-{tag}-{}-n{i}.tokens", std::process::id()))
    };
    let mut t = LeaseLab::start_with(tag, 2, "fail-open", LEASE_TTL, |i, mut node| {
        let hook = format!(
            r#"notify = {{ master = ["/bin/sh", "-c", "echo $VIPD_FENCING_TOKEN >> {}"] }}"#,
            tokens(i).display()
        );
        node.instances[0].extra.push(hook);
        node.extra
            .push("metrics_listen = \"127.0.0.1:9650\"".to_owned());
        node
    });
    let _tokens_gone = RemoveOnDrop((1..=2).map(tokens).collect());
    let holder = t.wait_sole_holder(Duration::from_secs(5));

    // The master hook and the metrics carry the fencing token.
    let token = t
        .store(holder)
        .and_then(|s| s["fencing_token"].as_u64())
        .expect("the holder's fencing token");
    wait_until(
        "the master hook wrote its token",
        Duration::from_secs(5),
        || {
            std::fs::read_to_string(tokens(holder))
                .is_ok_and(|text| text.lines().any(|l| l == token.to_string()))
        },
    );
    let (status, metrics) = t.metrics(holder);
    assert_eq!(status, 200, "{metrics}");
    for line in [
        format!("vipd_fencing_token{{instance_name=\"db\"}} {token}.0"),
        "vipd_store_vouched{instance_name=\"db\"} 1.0".to_owned(),
        "vipd_store_holding_unvouched{instance_name=\"db\"} 0.0".to_owned(),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
    }

    // Someone else writes the holder key: nobody holds the VIP on it (it
    // names no member), every node says why, and the VIP comes back once the
    // key is gone.
    let from = Instant::now();
    let endpoints = t.etcd.endpoints();
    let out = t
        .etcd
        .etcdctl(&endpoints, &["put", "/vipd/db/holder", "intruder"]);
    assert!(out.status.success(), "etcdctl put: {}", output_text(&out));
    wait_until(
        "the VIP leaves every node when the holder key names no member",
        Duration::from_secs(5),
        || t.sampler.holders_now(&t.vip).is_empty(),
    );
    for node in 1..=2 {
        let store = t.store(node).expect("status");
        assert_eq!(store["holder"], "intruder", "n{node}: {store:#}");
        let log = t.daemon(node).log();
        assert!(
            log.contains("which no vipd member of this instance wrote"),
            "n{node} did not report the foreign holder key:\n{log}"
        );
    }
    let out = t.etcd.etcdctl(&endpoints, &["del", "/vipd/db/holder"]);
    assert!(out.status.success(), "etcdctl del: {}", output_text(&out));
    let back = t.wait_sole_holder(Duration::from_secs(10));
    t.report(
        tag,
        &format!("a foreign holder key, then deleted: n{back} holds the VIP"),
        from,
    );
    let holder = back;

    // Every member down.
    let from = Instant::now();
    t.etcd.stop_all();
    hold_for(
        "the holder keeps the VIP while etcd is down",
        LEASE_TTL * 3,
        || t.sampler.holders_now(&t.vip) == [holder],
    );
    let store = t.store(holder).expect("the holder's status");
    assert_eq!(store["on_unreachable"], "fail-open", "{store:#}");
    assert_eq!(store["reachable"], false, "{store:#}");
    assert_eq!(store["vouched"], false, "{store:#}");
    assert_eq!(store["holding_unvouched"], true, "{store:#}");
    let (_, metrics) = t.metrics(holder);
    assert!(
        metrics
            .lines()
            .any(|l| l == "vipd_store_holding_unvouched{instance_name=\"db\"} 1.0"),
        "{metrics}"
    );
    let report = t.report(tag, "every etcd member SIGKILLed (fail-open)", from);
    assert!(report.changes.is_empty(), "{}", report.describe());
    let from = Instant::now();
    t.etcd.start_all();
    wait_until(
        "the holder is vouched for again",
        Duration::from_secs(15),
        || t.store(holder).is_some_and(|s| s["vouched"] == true),
    );
    let now = t.wait_sole_holder(Duration::from_secs(10));
    t.report(tag, &format!("etcd back: n{now} holds the VIP"), from);
}

/// A node whose `[node.etcd]` names no etcd (a closed port, an address
/// nothing answers on) never holds the VIP, and says why in its status.
#[test]
fn wrong_endpoints_hold_nothing_and_say_why() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let lab = Lab::new("badep", 1);
    let vip = lab.vip4(0);
    let host = lab.node(1);
    let own = host
        .addresses()
        .into_iter()
        .find(|a| a.parse::<Ipv4Addr>().is_ok())
        .expect("an IPv4 address on eth0");
    let endpoints = [
        format!("http://{own}:2379"),
        "http://127.0.0.1:1".to_owned(),
    ];
    let spec = InstanceSpec::etcd(150, "2s", "fail-closed").vip(&vip);
    let daemon = Daemon::start(host, NodeSpec::new("n1", spec).etcd(&endpoints));
    let mut store = None;
    wait_until(
        "the status names the failed endpoints",
        Duration::from_secs(10),
        || {
            store = daemon
                .first_instance_status()
                .map(|(_, s)| s["store"].clone())
                .filter(|s| {
                    s["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("127.0.0.1:1"))
                });
            store.is_some()
        },
    );
    let store = store.expect("checked above");
    assert_eq!(store["reachable"], false, "{store:#}");
    assert_eq!(store["vouched"], false, "{store:#}");
    assert!(store["lease_id"].is_null(), "{store:#}");
    let (_, status) = daemon.first_instance_status().expect("status");
    assert_eq!(status["state"], "backup", "{status:#}");
    let held = host.ns.ip(&["-br", "addr", "show", "eth0"]);
    assert!(
        !held.contains(strip_prefix_len(&vip)),
        "the VIP is held: {held}"
    );
    eprintln!("[badep] status says: {}", store["last_error"]);
}

/// A backup whose watch streams from a member cut off from the others hears
/// nothing through it (the member stays up and answers, without news); the
/// check of the watch against a linearizable read moves it to a member that
/// knows, so it still takes over when the holder's lease runs out.
#[test]
fn a_backup_watching_a_cut_off_member_still_takes_over() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let tag = "stale";
    let mut t = LeaseLab::start(tag, 2, "fail-closed", LEASE_TTL);
    let holder = t.wait_sole_holder(Duration::from_secs(5));
    let other = 3 - holder;
    // Every node's first endpoint is e1, where its watch streams from.
    t.etcd.isolate_member(0);
    let from = Instant::now();
    t.lab.node(holder).link(false);
    t.daemons[holder - 1].crash();
    // The lease (2 s) runs out at e2/e3; the backup's watch on e1 says
    // nothing; its check every 5 s finds out.
    let (next, at) = t.wait_moved_from(holder, from, Duration::from_secs(20));
    assert_eq!(next, other);
    let report = t.report(
        tag,
        &format!("n{holder}'s host down, n{other} watching a cut-off member"),
        from,
    );
    assert!(report.two_holders.is_empty(), "{}", report.describe());
    eprintln!(
        "[{tag}] n{other} took the VIP {:.1} ms after n{holder}'s host went down (lease_ttl {} ms; its watch's member cut off from the others)",
        ms_f(at - from),
        ms(LEASE_TTL)
    );
    let log = t.daemon(other).log();
    assert!(
        log.contains("differ from a linearizable read"),
        "n{other} did not restart its watch after the check:\n{log}"
    );
    t.etcd.rejoin_member(0);
}
