//! vipd with its VIPs decided in etcd: `election = "etcd"` (a lease, fail-closed)
//! and `election = "patroni"` (Patroni's leader key), the latter beside
//! vip-manager 1.0 following the same key.
//!
//! Run it as root with `cargo bench --bench etcd`. Prints one table; every
//! figure is the median and the maximum over the repetitions.
//!
//! # The lab
//!
//! The integration tests' lab (`tests/common/`, included below as `mod common`,
//! as `tests/etcd_lease.rs` and `tests/patroni.rs` use it): nodes and a client,
//! each a network namespace on one bridge, three etcd 3.4 members beside them
//! (100 ms heartbeat, 1000 ms election timeout), the [`HolderSampler`] reading
//! which nodes have each VIP on `eth0` every millisecond (a node whose `eth0`
//! is down holds nothing), and for Patroni, Patroni 3.0 with PostgreSQL 15 on
//! both nodes (`ttl` 10 s, `loop_wait` 1 s) and a [`KeyWatch`] on its leader key
//! from the client's namespace (etcd's v2 long poll).
//!
//! # What is measured
//!
//! Sections (`VIPD_BENCH_ETCD_ONLY`, a comma list; default all):
//!
//! - `ttl5`: two nodes, `lease_ttl = "5s"`, fail-closed, priorities 150 and 100:
//!   - `vipd drain --wait` on the holder while the client pings the VIP every
//!     2 ms (as the tests do): pings lost, sampled rounds in which both nodes
//!     held the VIP (make-before-break: the overlap, about 1 ms a round), the
//!     longest stretch with none, when the command returned, and whether the
//!     successor lost the VIP again before it settled; then `undrain`;
//!   - kill -9 of the holder's vipd followed by `vipd cleanup` (the shipped
//!     unit's `ExecStopPost=`): from the kill to the VIP on the other node,
//!     rounds with two holders, the longest stretch with none;
//!   - the holder's host going down, as `tests/etcd_lease.rs` does it: its
//!     `eth0` down (the moment of the crash), then `vipd status --json` read
//!     (no keepalive can reach etcd any more, so its `lease_remaining_ms` is
//!     final), then every process in its namespace SIGKILLed. Printed: from the
//!     crash to the VIP on the other node, and that time less the lease's
//!     remaining life at the crash. vipd's `lease_remaining_ms` is how long it
//!     still counts itself vouched: the last successful keepalive's send time
//!     plus `lease_ttl` less the vouch margin (a tenth of the TTL, at least
//!     200 ms), so etcd's lease lives until the status read plus
//!     `lease_remaining_ms` plus the margin (to within the keepalive's round
//!     trip, under a millisecond here). The figure "beyond the lease's end" is
//!     how long after that the other node held the VIP: etcd's lessor checks
//!     for expired leases every 500 ms, then the other node sees the holder
//!     key go, campaigns and adds the address. The host comes back as a
//!     rebooted one would (the VIP off its `eth0`, link up, vipd started);
//!   - the resident memory of the daemons (below).
//! - `ttl2`: the same pair with `lease_ttl = "2s"`:
//!   - the holder's host going down, as above;
//!   - the holder cut off from every etcd member (nftables in its namespace,
//!     [`EtcdCluster::partition`]): from the cut to its release of the VIP, to
//!     the other node holding it, rounds with two holders (fail-closed: 0
//!     expected), and the release less the end of the vouched time read from
//!     its status right after the cut (the timer's lateness), then the heal;
//!   - every etcd member SIGKILLed: from then to the VIP off every node, rounds
//!     with two holders; then etcd is started again.
//! - `patroni`: Patroni on etcd's v2 API (vip-manager 1.0 reads only v2); on
//!   both nodes, vipd (`election = "patroni"`, `dcs = "etcd"`) for VIP A,
//!   vip-manager `--interval 1000` (its default) for VIP B and vip-manager
//!   `--interval 100` for VIP C, all in the same run, so that every figure of
//!   a row comes from the same change of leader. Switchovers through Patroni's
//!   REST API, back and forth, each once the replica streams again; then
//!   `VIPD_BENCH_ETCD_FAILOVERS` failovers (default 1): the leader's Patroni
//!   and PostgreSQL SIGKILLed, its key expires after `ttl`; the crashed member
//!   is started again, and a further failover waits until it streams (without
//!   `pg_rewind` it may not). Per VIP: from the key naming the
//!   new leader (as the watch received it) to the VIP on the new leader, the
//!   longest stretch with no holder, rounds with two holders.
//! - `memory`: one vipd with one etcd instance and one vipd with one advert
//!   instance, side by side on two nodes of one lab, both holding their VIP for
//!   3 s: `VmRSS` (`/proc/PID/status`) and `Pss` (`/proc/PID/smaps_rollup`),
//!   read at the same moment; and `ls -l` of the binary.
//!
//! Before each event the pair has settled: n1 (which takes the VIP back when
//! it returns: preempt, the higher priority) alone holds the VIP for 100 ms
//! and both report etcd vouching for them and naming n1 (Patroni: the replica
//! streams), then a random wait of up to a quarter of the TTL (up to 1 s for
//! Patroni, vip-manager's poll), so that events fall anywhere in the
//! keepalive and poll cycles.
//!
//! # Options (environment)
//!
//! - `VIPD_BENCH_ETCD_RUNS` (default 3): repetitions of each event;
//! - `VIPD_BENCH_ETCD_ONLY`: the sections above to run;
//! - `VIPD_BENCH_ETCD_FAILOVERS` (default 1): Patroni failovers.
//!
//! Every namespace and process is owned by a guard and removed on exit and on
//! Ctrl-C (SIGINT/SIGTERM unwind); a section that fails prints why in the
//! table and the others still run.

use std::fmt::Write as _;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::Rng as _;
use vipd::store::vouch_margin;

#[path = "../tests/common/mod.rs"]
mod common;

use common::{
    install_interrupt_handlers, interrupted, ms_between, output_text, sleep_checked, vipd_bin,
    wait_until, Daemon, Dcs, EtcdCluster, HolderSampler, InstanceSpec, KeyWatch, Lab, NodeSpec,
    PatroniCluster, Prober, VipManager, PATRONI_TTL_S,
};

/// The client's ping interval during a drain, as the tests use it.
const PING_EVERY: Duration = Duration::from_millis(2);
/// After a change has settled, how long the sampler keeps watching for a
/// late second holder.
const TAIL: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

/// The tools a row compares, in column order.
const COLUMNS: [&str; 3] = [
    "vipd",
    "vip-manager --interval 1000",
    "vip-manager --interval 100",
];

/// One cell: samples (median and max are printed), a text, or not applicable.
#[derive(Clone, Debug)]
enum Cell {
    Samples(Vec<f64>),
    Text(String),
    NotApplicable,
}

impl Cell {
    fn render(&self) -> String {
        match self {
            Self::Samples(s) if s.is_empty() => "no sample".into(),
            Self::Samples(s) => {
                let (med, max) = (median(s), s.iter().copied().fold(f64::MIN, f64::max));
                if s.iter().all(|v| v.fract() == 0.0) {
                    format!("{med:.0} ({max:.0})")
                } else {
                    format!("{med:.1} ({max:.1})")
                }
            }
            Self::Text(t) => t.clone(),
            Self::NotApplicable => "n/a".into(),
        }
    }
}

struct Row {
    scenario: String,
    figure: String,
    cells: [Cell; 3],
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// A row about vipd alone (vip-manager does not apply).
    fn vipd(&mut self, scenario: &str, figure: &str, cell: Cell) {
        self.rows.push(Row {
            scenario: scenario.into(),
            figure: figure.into(),
            cells: [cell, Cell::NotApplicable, Cell::NotApplicable],
        });
    }

    fn render(&self, runs: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nvipd with etcd (3 members, etcd 3.4), sampler every 1 ms; cells: median (max) over the \
             repetitions ({runs} unless the scenario says n=)"
        );
        let _ = writeln!(out, "| scenario | figure | {} |", COLUMNS.join(" | "));
        let _ = writeln!(out, "|---|---|---|---|---|");
        for row in &self.rows {
            let cells: Vec<String> = row.cells.iter().map(Cell::render).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                row.scenario,
                row.figure,
                cells.join(" | ")
            );
        }
        out
    }
}

fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn ms_f(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A random wait of up to `up_to`, so that an event falls anywhere in a cycle.
fn jitter(up_to: Duration) {
    let ms = rand::thread_rng().gen_range(0..=up_to.as_millis() as u64);
    sleep_checked(Duration::from_millis(ms));
}

// ---------------------------------------------------------------------------
// A pair of vipd nodes on a lease
// ---------------------------------------------------------------------------

/// Two nodes (priorities 150, 100) holding one VIP by a lease in etcd,
/// fail-closed, with the sampler on both.
struct LeasePair {
    // Field order is drop order: the sampler, the daemons, etcd, the lab.
    sampler: HolderSampler,
    daemons: Vec<Daemon>,
    etcd: EtcdCluster,
    vip: String,
    ttl: Duration,
    lab: Lab,
}

/// What one event did to the VIP.
#[derive(Default)]
struct EventFigures {
    /// From the event to the VIP on the other node.
    to_other_ms: Option<f64>,
    two_holder_rounds: usize,
    longest_without_holder_ms: f64,
}

impl LeasePair {
    fn start(tag: &str, ttl: Duration) -> Self {
        let lab = Lab::new(tag, 2);
        let etcd = EtcdCluster::start(&lab, false);
        let vip = lab.vip4(0);
        let daemons = (1..=2)
            .map(|i| {
                let priority = [150, 100][i - 1];
                let spec =
                    InstanceSpec::etcd(priority, &format!("{}s", ttl.as_secs()), "fail-closed")
                        .vip(&vip);
                Daemon::start(
                    lab.node(i),
                    NodeSpec::new(&format!("n{i}"), spec).etcd(&etcd.endpoints()),
                )
            })
            .collect();
        let sampler =
            HolderSampler::start(&[lab.node(1), lab.node(2)], &[&vip]).expect("holder sampler");
        Self {
            sampler,
            daemons,
            etcd,
            vip,
            ttl,
            lab,
        }
    }

    /// The `store` object of `node`'s instance, if its daemon answers.
    fn store(&self, node: usize) -> Option<serde_json::Value> {
        self.daemons[node - 1]
            .first_instance_status()
            .map(|(_, s)| s["store"].clone())
    }

    /// Waits until n1 (the better node, preempting) alone has held the VIP
    /// for 100 ms and both daemons are vouched for and name it as the
    /// holder; then a random wait of up to a keepalive interval. Waiting for
    /// n1 and not any holder: a node that comes back takes the VIP back, and
    /// an event must not race that handover. Returns the holder, 1.
    fn settle(&self) -> usize {
        let holder = 1;
        let mut since = None;
        wait_until(
            "n1 alone holds the VIP, both vouched for",
            Duration::from_secs(30),
            || {
                if self.sampler.holders_now(&self.vip) != [holder] {
                    since = None;
                    return false;
                }
                let since = *since.get_or_insert_with(Instant::now);
                since.elapsed() >= Duration::from_millis(100)
                    && (1..=2).all(|n| {
                        self.store(n).is_some_and(|s| {
                            s["vouched"] == true && s["holder"] == format!("n{holder}")
                        })
                    })
            },
        );
        jitter(self.ttl / 4);
        holder
    }

    /// Waits until `node` holds the VIP at or after `from`; returns when.
    fn wait_held_by(&self, node: usize, from: Instant, deadline: Duration) -> Instant {
        let mut at = None;
        wait_until(&format!("n{node} holds the VIP"), deadline, || {
            at = self.sampler.first_held(&self.vip, node, from);
            at.is_some()
        });
        at.expect("found above")
    }

    /// The sampler's figures from `from` until now (after [`TAIL`]), the
    /// move to `other` counted from `from`.
    fn figures(&self, from: Instant, other: usize) -> EventFigures {
        sleep_checked(TAIL);
        let report = self.sampler.report(&self.vip, from, Instant::now());
        EventFigures {
            to_other_ms: report.gained(other).map(|t| ms_between(from, t)),
            two_holder_rounds: report.two_holders.len(),
            longest_without_holder_ms: ms_f(report.longest_without_holder),
        }
    }

    /// The node comes back as a rebooted host would: without the VIP on its
    /// `eth0`, link up, vipd started.
    fn reboot(&mut self, node: usize) {
        let ns = &self.lab.node(node).ns;
        let _ = ns.ip_output(&["addr", "del", &self.vip, "dev", "eth0"]);
        self.lab.node(node).link(true);
        self.daemons[node - 1].restart();
    }
}

/// The holder's host goes down: returns (crash → VIP on the other node, that
/// less the lease's remaining life, the remaining life read, two-holder rounds).
fn host_crash(pair: &mut LeasePair) -> (EventFigures, f64, f64) {
    let holder = pair.settle();
    let other = 3 - holder;
    let crashed = Instant::now();
    pair.lab.node(holder).link(false);
    let remaining = pair
        .store(holder)
        .and_then(|s| s["lease_remaining_ms"].as_u64())
        .expect("the holder's lease_remaining_ms");
    let read = Instant::now();
    pair.daemons[holder - 1].crash();
    let lease_end = read + Duration::from_millis(remaining) + vouch_margin(pair.ttl);
    let at = pair.wait_held_by(other, crashed, pair.ttl + Duration::from_secs(10));
    let figures = pair.figures(crashed, other);
    let beyond = ms_between(lease_end, at);
    eprintln!(
        "   n{holder}'s host down: n{other} holds the VIP {:.1} ms later; lease_remaining {remaining} ms \
         at the crash, the lease's end + {beyond:.1} ms; {} rounds with two holders",
        ms_between(crashed, at),
        figures.two_holder_rounds
    );
    pair.reboot(holder);
    (figures, beyond, remaining as f64)
}

/// kill -9 of the holder's vipd, then `vipd cleanup` as the unit's
/// `ExecStopPost=` runs it.
fn kill9_and_cleanup(pair: &mut LeasePair) -> EventFigures {
    let holder = pair.settle();
    let other = 3 - holder;
    let killed = Instant::now();
    pair.daemons[holder - 1].kill9();
    let daemon = &pair.daemons[holder - 1];
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &daemon.netns,
            vipd_bin(),
            "cleanup",
            "--config",
        ])
        .arg(&daemon.config)
        .output()
        .expect("running vipd cleanup");
    assert!(out.status.success(), "vipd cleanup: {}", output_text(&out));
    let cleaned = Instant::now();
    pair.wait_held_by(other, killed, pair.ttl + Duration::from_secs(10));
    let figures = pair.figures(killed, other);
    eprintln!(
        "   kill -9 of n{holder}'s vipd, cleanup done after {:.1} ms: n{other} holds the VIP {} ms \
         after the kill; {} rounds with two holders, longest without a holder {:.1} ms",
        ms_between(killed, cleaned),
        figures.to_other_ms.map_or("never".into(), |m| format!("{m:.1}")),
        figures.two_holder_rounds,
        figures.longest_without_holder_ms
    );
    pair.daemons[holder - 1].restart();
    figures
}

/// What one `vipd drain --wait` did.
struct DrainFigures {
    pings_lost: usize,
    /// From the command to its return.
    returned_ms: f64,
    /// Sampled rounds in which both nodes held the VIP (make-before-break):
    /// about the overlap in ms.
    two_holder_rounds: usize,
    longest_without_holder_ms: f64,
    /// The successor lost the VIP again within the window.
    successor_dropped: bool,
}

/// `vipd drain --wait` on the holder while the client pings every 2 ms.
fn drain(pair: &mut LeasePair) -> DrainFigures {
    let holder = pair.settle();
    let other = 3 - holder;
    let prober = Prober::start(&pair.lab.client, &pair.vip, PING_EVERY, 2000);
    sleep_checked(Duration::from_millis(1000));
    let from = Instant::now();
    let out = pair.daemons[holder - 1].cli(&["drain", "db", "--wait"]);
    assert!(out.status.success(), "drain: {}", output_text(&out));
    let drained = Instant::now();
    wait_until(
        "the other node alone holds the VIP",
        Duration::from_secs(10),
        || pair.sampler.holders_now(&pair.vip) == [other],
    );
    let pings = prober.finish();
    let report = pair.sampler.report(&pair.vip, from, Instant::now());
    eprintln!(
        "   drain --wait of n{holder} (returned after {:.1} ms): {} of {} pings lost ({}); {}",
        ms_between(from, drained),
        pings.lost.len(),
        pings.sent,
        pings.describe_lost(PING_EVERY),
        report.describe()
    );
    let out = pair.daemons[holder - 1].cli(&["undrain", "db"]);
    assert!(out.status.success(), "undrain: {}", output_text(&out));
    DrainFigures {
        pings_lost: pings.lost.len(),
        returned_ms: ms_between(from, drained),
        two_holder_rounds: report.two_holders.len(),
        longest_without_holder_ms: ms_f(report.longest_without_holder),
        successor_dropped: report.lost(other).is_some(),
    }
}

/// The holder cut off from every etcd member: (cut → release, cut → other
/// holds, release less the vouched end read after the cut, two-holder rounds).
fn partition(pair: &mut LeasePair) -> (Option<f64>, Option<f64>, Option<f64>, usize) {
    let holder = pair.settle();
    let other = 3 - holder;
    let cut = Instant::now();
    pair.etcd.partition(&pair.lab.node(holder).ns);
    let remaining = pair
        .store(holder)
        .and_then(|s| s["lease_remaining_ms"].as_u64());
    let read = Instant::now();
    pair.wait_held_by(other, cut, pair.ttl + Duration::from_secs(10));
    sleep_checked(TAIL);
    let report = pair.sampler.report(&pair.vip, cut, Instant::now());
    let released = report.lost(holder);
    let late = released
        .zip(remaining)
        .map(|(r, rem)| ms_between(read + Duration::from_millis(rem), r));
    eprintln!("   n{holder} cut off from etcd: {}", report.describe());
    pair.etcd.heal(&pair.lab.node(holder).ns);
    (
        released.map(|t| ms_between(cut, t)),
        report.gained(other).map(|t| ms_between(cut, t)),
        late,
        report.two_holders.len(),
    )
}

/// Every etcd member SIGKILLed: (→ VIP off every node, two-holder rounds).
fn etcd_down(pair: &mut LeasePair) -> (f64, usize) {
    pair.settle();
    let down = Instant::now();
    pair.etcd.stop_all();
    let mut gone = None;
    wait_until(
        "no node holds the VIP",
        pair.ttl + Duration::from_secs(5),
        || {
            gone = pair.sampler.first_unheld(&pair.vip, down);
            gone.is_some()
        },
    );
    // Nobody may take it while etcd is down: watch for a while.
    sleep_checked(pair.ttl);
    let report = pair.sampler.report(&pair.vip, down, Instant::now());
    eprintln!("   every etcd member SIGKILLed: {}", report.describe());
    pair.etcd.start_all();
    (
        ms_between(down, gone.expect("found above")),
        report.two_holders.len(),
    )
}

// ---------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------

/// Runs `f` up to `runs` times, collecting what it returns; stops at an
/// interruption.
fn repeat<T>(what: &str, runs: usize, mut f: impl FnMut() -> T) -> Vec<T> {
    let mut out = Vec::new();
    for run in 1..=runs {
        if interrupted() {
            break;
        }
        eprintln!("== etcd bench: {what}, run {run}/{runs}");
        out.push(f());
    }
    out
}

/// The rows of a host crash with `ttl`.
fn crash_rows(table: &mut Table, pair: &mut LeasePair, runs: usize) {
    let ttl_ms = pair.ttl.as_millis();
    let crashes = repeat(&format!("host crash, lease_ttl {ttl_ms} ms"), runs, || {
        host_crash(pair)
    });
    let scenario = format!("holder's host down, lease_ttl {} s", pair.ttl.as_secs());
    table.vipd(
        &scenario,
        "crash → VIP on the other node, ms",
        Cell::Samples(crashes.iter().filter_map(|c| c.0.to_other_ms).collect()),
    );
    table.vipd(
        &scenario,
        "lease_remaining at the crash, ms",
        Cell::Samples(crashes.iter().map(|c| c.2).collect()),
    );
    table.vipd(
        &scenario,
        &format!(
            "VIP on the other node − lease's end (lease_remaining + {} ms margin), ms",
            vouch_margin(pair.ttl).as_millis()
        ),
        Cell::Samples(crashes.iter().map(|c| c.1).collect()),
    );
    table.vipd(
        &scenario,
        "rounds with two holders",
        Cell::Samples(
            crashes
                .iter()
                .map(|c| c.0.two_holder_rounds as f64)
                .collect(),
        ),
    );
}

fn section_ttl5(table: &mut Table, runs: usize) {
    let mut pair = LeasePair::start("ebttl5", Duration::from_secs(5));
    let drains = repeat("drain --wait", runs, || drain(&mut pair));
    let scenario = "vipd drain --wait, lease_ttl 5 s";
    type Figure = (&'static str, fn(&DrainFigures) -> f64);
    let figures: [Figure; 5] = [
        ("pings lost (every 2 ms)", |d| d.pings_lost as f64),
        (
            "both held the VIP (make-before-break), rounds ≈ ms",
            |d| d.two_holder_rounds as f64,
        ),
        ("longest without a holder, ms", |d| {
            d.longest_without_holder_ms
        }),
        ("drain --wait returned after, ms", |d| d.returned_ms),
        ("the successor dropped the VIP again (1 = yes)", |d| {
            f64::from(u8::from(d.successor_dropped))
        }),
    ];
    for (figure, f) in figures {
        table.vipd(
            scenario,
            figure,
            Cell::Samples(drains.iter().map(f).collect()),
        );
    }
    let kills = repeat("kill -9 + vipd cleanup", runs, || {
        kill9_and_cleanup(&mut pair)
    });
    let scenario = "kill -9 of the holder's vipd + vipd cleanup, lease_ttl 5 s";
    table.vipd(
        scenario,
        "kill → VIP on the other node, ms",
        Cell::Samples(kills.iter().filter_map(|k| k.to_other_ms).collect()),
    );
    table.vipd(
        scenario,
        "longest without a holder, ms",
        Cell::Samples(kills.iter().map(|k| k.longest_without_holder_ms).collect()),
    );
    table.vipd(
        scenario,
        "rounds with two holders",
        Cell::Samples(kills.iter().map(|k| k.two_holder_rounds as f64).collect()),
    );
    crash_rows(table, &mut pair, runs);
}

fn section_ttl2(table: &mut Table, runs: usize) {
    let mut pair = LeasePair::start("ebttl2", Duration::from_secs(2));
    crash_rows(table, &mut pair, runs);
    let cuts = repeat("holder cut off from etcd", runs, || partition(&mut pair));
    let scenario = "holder cut off from etcd (nftables), lease_ttl 2 s, fail-closed";
    table.vipd(
        scenario,
        "cut → the holder released the VIP, ms",
        Cell::Samples(cuts.iter().filter_map(|c| c.0).collect()),
    );
    table.vipd(
        scenario,
        "release − end of vouched time read after the cut, ms",
        Cell::Samples(cuts.iter().filter_map(|c| c.2).collect()),
    );
    table.vipd(
        scenario,
        "cut → VIP on the other node, ms",
        Cell::Samples(cuts.iter().filter_map(|c| c.1).collect()),
    );
    table.vipd(
        scenario,
        "rounds with two holders",
        Cell::Samples(cuts.iter().map(|c| c.3 as f64).collect()),
    );
    let downs = repeat("every etcd member down", runs, || etcd_down(&mut pair));
    let scenario = "every etcd member SIGKILLed, lease_ttl 2 s, fail-closed";
    table.vipd(
        scenario,
        "etcd down → VIP off every node, ms",
        Cell::Samples(downs.iter().map(|d| d.0).collect()),
    );
    table.vipd(
        scenario,
        "rounds with two holders",
        Cell::Samples(downs.iter().map(|d| d.1 as f64).collect()),
    );
}

/// What one VIP did around one change of Patroni's leader.
struct LeaderMove {
    /// From the key naming the new leader to the VIP on it.
    on_new_ms: Option<f64>,
    longest_without_holder_ms: f64,
    two_holder_rounds: usize,
}

/// Does `change`, waits until the key names `new` and every VIP is on it
/// alone, and returns what each VIP did (in `vips` order).
fn leader_change(
    patroni: &mut PatroniCluster,
    watch: &KeyWatch,
    sampler: &HolderSampler,
    vips: &[String],
    new: usize,
    change: impl FnOnce(&mut PatroniCluster),
) -> Vec<LeaderMove> {
    let from = Instant::now();
    change(patroni);
    let set = watch
        .wait_set_to(
            &format!("n{new}"),
            from,
            Duration::from_secs(PATRONI_TTL_S + 30),
        )
        .at;
    for vip in vips {
        sampler.wait_sole(vip, new, set, Duration::from_secs(15));
    }
    sleep_checked(TAIL);
    let to = Instant::now();
    eprintln!(
        "   the leader key named n{new} {:.1} ms after the change began",
        ms_between(from, set)
    );
    vips.iter()
        .zip(COLUMNS)
        .map(|(vip, by)| {
            let report = sampler.report(vip, from, to);
            eprintln!("   {by}: {}", report.describe());
            LeaderMove {
                on_new_ms: report.gained(new).map(|t| ms_between(set, t)),
                longest_without_holder_ms: ms_f(report.longest_without_holder),
                two_holder_rounds: report.two_holders.len(),
            }
        })
        .collect()
}

/// The three rows of a kind of leader change, one column per tool.
fn leader_rows(table: &mut Table, scenario: &str, moves: &[Vec<LeaderMove>]) {
    let column = |k: usize, f: &dyn Fn(&LeaderMove) -> Option<f64>| {
        Cell::Samples(moves.iter().filter_map(|m| f(&m[k])).collect())
    };
    type Figure = (&'static str, fn(&LeaderMove) -> Option<f64>);
    let figures: [Figure; 3] = [
        ("key names the new leader → VIP on it, ms", |m| {
            m.on_new_ms
        }),
        ("longest without a holder, ms", |m| {
            Some(m.longest_without_holder_ms)
        }),
        ("rounds with two holders", |m| {
            Some(m.two_holder_rounds as f64)
        }),
    ];
    for (figure, f) in figures {
        table.rows.push(Row {
            scenario: scenario.into(),
            figure: figure.into(),
            cells: [column(0, &f), column(1, &f), column(2, &f)],
        });
    }
}

fn section_patroni(table: &mut Table, runs: usize, failovers: usize) {
    let lab = Lab::new("ebpat", 2);
    let etcd = EtcdCluster::start(&lab, true);
    let scope = format!("ebpat{}", std::process::id());
    let mut patroni = PatroniCluster::start(&[lab.node(1), lab.node(2)], &etcd, Dcs::Etcd, &scope);
    let vips: Vec<String> = (0..3).map(|k| lab.vip4(k)).collect();
    let _daemons: Vec<Daemon> = (1..=2)
        .map(|i| {
            let node = lab.node(i);
            let spec =
                InstanceSpec::patroni(100, &scope, &node.role, Dcs::Etcd.name()).vip(&vips[0]);
            Daemon::start(
                node,
                NodeSpec::new(&node.role, spec).etcd(&etcd.endpoints()),
            )
        })
        .collect();
    let _managers: Vec<VipManager> = [(&vips[1], 1000), (&vips[2], 100)]
        .into_iter()
        .flat_map(|(vip, interval)| {
            [lab.node(1), lab.node(2)].map(|node| {
                VipManager::start(
                    node,
                    vip,
                    &patroni.leader_key(),
                    &node.role,
                    &etcd.endpoints(),
                    interval,
                )
            })
        })
        .collect();
    let vip_refs: Vec<&str> = vips.iter().map(String::as_str).collect();
    let sampler = HolderSampler::start(&[lab.node(1), lab.node(2)], &vip_refs).expect("sampler");
    let watch = patroni.watch_leader(&lab.client.ns);
    let start = Instant::now();
    for vip in &vips {
        sampler.wait_sole(vip, 1, start, Duration::from_secs(30));
    }

    let mut leader = 1;
    let switchovers = repeat("Patroni switchover", runs, || {
        let new = 3 - leader;
        patroni.wait_streaming(&format!("n{leader}"), Duration::from_secs(90));
        jitter(Duration::from_secs(1));
        let moved = leader_change(&mut patroni, &watch, &sampler, &vips, new, |p| {
            p.switchover(&format!("n{new}"));
        });
        leader = new;
        moved
    });
    leader_rows(table, "Patroni switchover (REST API)", &switchovers);

    let failovers = repeat("Patroni failover", failovers, || {
        let (old, new) = (leader, 3 - leader);
        patroni.wait_streaming(&format!("n{old}"), Duration::from_secs(90));
        jitter(Duration::from_secs(1));
        let moved = leader_change(&mut patroni, &watch, &sampler, &vips, new, |p| {
            p.crash(&format!("n{old}"));
        });
        patroni.restart(&format!("n{old}"));
        leader = new;
        moved
    });
    if !failovers.is_empty() {
        leader_rows(
            table,
            &format!(
                "Patroni failover (leader's Patroni + PostgreSQL SIGKILLed, ttl {PATRONI_TTL_S} s), n={}",
                failovers.len()
            ),
            &failovers,
        );
    }
}

/// `Name:  N kB` from a /proc file, in KiB.
fn proc_kib(path: &str, name: &str) -> Option<u64> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn section_memory(table: &mut Table) {
    let lab = Lab::new("ebmem", 2);
    let etcd = EtcdCluster::start(&lab, false);
    let (etcd_vip, advert_vip) = (lab.vip4(0), lab.vip4(1));
    let with_etcd = Daemon::start(
        lab.node(1),
        NodeSpec::new(
            "n1",
            InstanceSpec::etcd(150, "5s", "fail-closed").vip(&etcd_vip),
        )
        .etcd(&etcd.endpoints()),
    );
    let with_adverts = Daemon::start(
        lab.node(2),
        NodeSpec::new("n2", InstanceSpec::new(100).vip(&advert_vip)),
    );
    wait_until("each daemon holds its VIP", Duration::from_secs(20), || {
        lab.node(1).holds(&etcd_vip) && lab.node(2).holds(&advert_vip)
    });
    sleep_checked(Duration::from_secs(3));
    let read = |d: &Daemon| {
        let pid = d.pid().expect("the daemon runs");
        (
            proc_kib(&format!("/proc/{pid}/status"), "VmRSS:"),
            proc_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:"),
        )
    };
    let (etcd_mem, advert_mem) = (read(&with_etcd), read(&with_adverts));
    let show = |(rss, pss): (Option<u64>, Option<u64>)| {
        let kib = |v: Option<u64>| v.map_or("?".into(), |v| format!("{v} KiB"));
        format!("VmRSS {}, Pss {}", kib(rss), kib(pss))
    };
    let scenario = "resident memory, both holding their VIP, read at the same moment, n=1";
    table.vipd(
        scenario,
        "one etcd instance (lease_ttl 5 s)",
        Cell::Text(show(etcd_mem)),
    );
    table.vipd(
        scenario,
        "one advert instance (100 ms adverts)",
        Cell::Text(show(advert_mem)),
    );
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("etcd bench: needs root (network namespaces); skipped");
        return;
    }
    install_interrupt_handlers();
    let runs = env_num("VIPD_BENCH_ETCD_RUNS", 3).max(1) as usize;
    let failovers = env_num("VIPD_BENCH_ETCD_FAILOVERS", 1) as usize;
    let only = std::env::var("VIPD_BENCH_ETCD_ONLY").unwrap_or_default();
    let want = |s: &str| only.is_empty() || only.split(',').any(|x| x.trim() == s);
    let started = Instant::now();
    let mut table = Table::default();
    type Section = (&'static str, Box<dyn Fn(&mut Table)>);
    let sections: [Section; 4] = [
        ("ttl5", Box::new(move |t| section_ttl5(t, runs))),
        ("ttl2", Box::new(move |t| section_ttl2(t, runs))),
        (
            "patroni",
            Box::new(move |t| section_patroni(t, runs, failovers)),
        ),
        ("memory", Box::new(section_memory)),
    ];
    for (name, section) in &sections {
        if !want(name) || interrupted() {
            continue;
        }
        eprintln!("== etcd bench: section {name}");
        // A failed section leaves its rows so far and a line saying why.
        let mut rows = Table::default();
        let result = catch_unwind(AssertUnwindSafe(|| section(&mut rows)));
        table.rows.append(&mut rows.rows);
        if result.is_err() {
            table.vipd(
                &format!("section {name}"),
                "FAILED (panicked or interrupted; see above)",
                Cell::Text("-".into()),
            );
        }
    }
    print!("{}", table.render(runs));
    let binary = Command::new("ls")
        .args(["-l", vipd_bin()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!("{binary}");
    println!(
        "Times are from the event to the first round of the holder sampler (every node's eth0 addresses, \
         every 1 ms; a node whose eth0 is down holds nothing) showing the change. Elapsed {:.0} s, \
         load average {}",
        started.elapsed().as_secs_f64(),
        fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
}
