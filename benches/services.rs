//! What a client in front of an HAProxy pair sees when the master's failover
//! daemon or its HAProxy dies or is stopped, for vipd and for keepalived, each
//! run under its own systemd unit as users run it.
//!
//! Run it as root with `cargo bench --bench services` (or `VIPD_BENCH_ONLY=services
//! benches/run.sh`). Prints a table and writes every figure, per run, to
//! `target/bench/services.json`.
//!
//! # The pair
//!
//! The lab of the integration tests (`tests/common/`, included below as `mod
//! common`): two nodes, each systemd as PID 1 of its own namespaces
//! ([`SystemdNode`]) with `eth0` on the lab's bridge, and a client namespace.
//! Each node runs Debian's HAProxy 2.6 on `*:8080` answering with the node's
//! name ([`Haproxy`]), and one of:
//!
//! - vipd under the shipped unit `systemd/vipd.service` (`Restart=on-failure`,
//!   `ExecStopPost=vipd cleanup`), instance `web`, priorities 150 and 100,
//!   1 s adverts, vipd's defaults otherwise (preempt on, `after_crash =
//!   "handover"`), and the HAProxy check of `contrib/haproxy/vipd.toml` as
//!   written there (its `curl`, interval, timeout, fall and rise), on port 8080;
//! - keepalived under Debian's `/lib/systemd/system/keepalived.service`,
//!   unchanged (linked into the node's unit directory; `Type=notify`, no
//!   `Restart=`, no `ExecStopPost=`, the default `KillMode=control-group`),
//!   `/etc/keepalived/keepalived.conf` in the node's overlay of /etc: VRRPv3,
//!   `state BACKUP` on both, the same priorities, `advert_int 1`, preempt
//!   (its default), and a `vrrp_script` running the same `curl` at the
//!   smallest interval and fall keepalived 2.2.7 accepts: `interval 1` (an
//!   integer number of seconds; `interval 0.5` is refused with "must be
//!   between 1 and 4294 - ignoring") and `fall 1`, `timeout 1`, the recipe's
//!   `rise`; `enable_script_security` with `script_user root`, as its manual
//!   asks of scripts run as root.
//!
//! A fresh pair per run: both nodes booted, both proxies and both daemons
//! started, sd1 holding the VIP, then 4 s (a vipd backup ranks its peers after
//! three backup intervals of 1 s) and a random 0–1 s, so that the event falls
//! anywhere in the advert and check cycles, before the event.
//!
//! # The client and what is measured
//!
//! [`HttpClient`] in the client's namespace: one HTTP GET through the VIP every
//! 10 ms, each on a new connection that must answer within 200 ms. The client
//! never expires a neighbour entry on its own, so it follows the gratuitous
//! ARPs. From the event until the pair has settled (below) plus 1 s:
//!
//! - failed GETs of those sent;
//! - the longest wait: the longest time without a successful answer
//!   (`HttpLog::longest_outage_since`);
//! - the backup served after: from the event to the end of the first GET that
//!   sd2's HAProxy answered ("never moved" if none did);
//! - both held the VIP: whether sd1 and sd2 had the VIP on `eth0` at the same
//!   time (netlink, [`AddrWatch`]), for how long, and whether they still did at
//!   the end;
//! - the unit on sd1 afterwards (`ActiveState`, `Result`, `NRestarts`), and
//!   both daemons' journals from the event on (in the JSON).
//!
//! # Scenarios (on sd1, the master)
//!
//! - `kill9`: `systemctl kill -s KILL UNIT` (every process of the unit), so
//!   the unit's `ExecStopPost=` and `Restart=` apply, if it has them; settled
//!   when sd2 claimed the VIP and, for a unit that restarts its daemon, sd1
//!   took it back (vipd preempts);
//! - `stop`: `systemctl stop UNIT`; settled when sd2 alone holds the VIP;
//! - `haproxy`: SIGKILL of sd1's HAProxy; the check fails, sd1 releases;
//!   settled when sd2 alone holds the VIP;
//! - `drain`: `vipd drain web --wait` (keepalived has no equivalent: n/a);
//!   settled when sd2 alone holds the VIP.
//!
//! A run whose pair has not settled 30 s after the event is measured all the
//! same (so "never moved" shows) and marked unsettled.
//!
//! # Options (environment)
//!
//! - `VIPD_BENCH_SERVICES_RUNS` (default 5; quick: 2): runs per scenario and
//!   daemon; the table gives the median and the worst;
//! - `VIPD_BENCH_QUICK=1`: the quick default above;
//! - `VIPD_BENCH_SERVICES_CASES`: comma list of scenarios
//!   (`kill9,stop,haproxy,drain`; default all).
//!
//! Every namespace, systemd and process is owned by a guard and removed on
//! exit and on Ctrl-C (SIGINT/SIGTERM unwind); what a SIGKILLed bench left is
//! swept by the next run.

use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{
    install_interrupt_handlers, interrupted, monotonic_us, output_text, sleep_checked,
    strip_prefix_len, AddrWatch, Haproxy, HttpClient, InstanceSpec, Lab, NodeSpec, SystemdNode,
    UnitSetup,
};

/// The port HAProxy answers on (the recipe's check asks port 80; the lab's
/// HAProxy listens here).
const HTTP_PORT: u16 = 8080;
/// How often the client sends a GET, and how long each may take.
const GET_EVERY: Duration = Duration::from_millis(10);
const GET_DEADLINE: Duration = Duration::from_millis(200);
/// Both daemons' advert interval.
const ADVERT_SECS: u64 = 1;
/// The instance's name (vipd) and the VRRP instance's (keepalived).
const INSTANCE: &str = "web";
/// The VRID (keepalived) and group (vipd).
const GROUP: u8 = 51;
/// Priorities of sd1 (the master) and sd2.
const PRIORITY: [u8; 2] = [150, 100];
/// The recipe whose check both daemons run.
const RECIPE: &str = "contrib/haproxy/vipd.toml";
/// The URL the recipe's check asks, and the one the bench's HAProxy answers.
const RECIPE_URL: &str = "http://127.0.0.1:80/";
/// Before the event: a vipd backup takes a release over at once only after it
/// has ranked its peers (three backup intervals); the same wait for both.
const WARM_UP: Duration = Duration::from_secs(4);
/// How long after the event the pair may take to settle.
const SETTLE_CAP: Duration = Duration::from_secs(30);
/// Measured on after the pair settled.
const TAIL: Duration = Duration::from_secs(1);
/// keepalived's smallest `vrrp_script` interval and fall (integer seconds;
/// a fall of 0 is refused and made 1).
const KEEPALIVED_CHECK_INTERVAL_S: u64 = 1;
const KEEPALIVED_CHECK_FALL: u64 = 1;
const KEEPALIVED_CHECK_TIMEOUT_S: u64 = 1;

// ---------------------------------------------------------------------------
// Daemons and scenarios
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Vipd,
    Keepalived,
}

impl Kind {
    const ALL: [Self; 2] = [Self::Vipd, Self::Keepalived];

    fn name(self) -> &'static str {
        match self {
            Self::Vipd => "vipd",
            Self::Keepalived => "keepalived",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::Vipd => "vipd.service",
            Self::Keepalived => "keepalived.service",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Kill9,
    Stop,
    HaproxyKill9,
    Drain,
}

impl Scenario {
    const ALL: [Self; 4] = [Self::Kill9, Self::Stop, Self::HaproxyKill9, Self::Drain];

    fn key(self) -> &'static str {
        match self {
            Self::Kill9 => "kill9",
            Self::Stop => "stop",
            Self::HaproxyKill9 => "haproxy",
            Self::Drain => "drain",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Kill9 => "a. kill -9 of the daemon (systemctl kill -s KILL)",
            Self::Stop => "b. systemctl stop of the daemon",
            Self::HaproxyKill9 => "c. kill -9 of HAProxy",
            Self::Drain => "d. vipd drain --wait",
        }
    }

    fn applies_to(self, kind: Kind) -> bool {
        self != Self::Drain || kind == Kind::Vipd
    }
}

/// The HAProxy check of [`RECIPE`]: its `[[instance.track_script]]` lines as
/// written (for vipd), and its command, interval, fall and rise (for
/// keepalived and the output).
struct Check {
    vipd_lines: Vec<String>,
    command: Vec<String>,
    interval: String,
    timeout: String,
    fall: i64,
    rise: i64,
}

impl Check {
    fn from_recipe() -> Result<Self> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(RECIPE);
        let text = fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        let parsed: toml::Value = text.parse().with_context(|| format!("parsing {RECIPE}"))?;
        let check = &parsed["instance"][0]["track_script"][0];
        let command: Vec<String> = check["command"]
            .as_array()
            .context("the check's command")?
            .iter()
            .filter_map(|a| a.as_str())
            .map(|a| a.replace(RECIPE_URL, &local_url()))
            .collect();
        if !command.contains(&local_url()) {
            bail!("{RECIPE}: the check does not ask {RECIPE_URL}");
        }
        let header = "[[instance.track_script]]";
        let start = text
            .find(header)
            .with_context(|| format!("{RECIPE} has no {header}"))?;
        let mut vipd_lines = vec![header.to_owned()];
        for line in text[start + header.len()..].lines().map(str::trim) {
            if line.starts_with('[') {
                break;
            }
            if !line.is_empty() && !line.starts_with('#') {
                vipd_lines.push(line.replace(RECIPE_URL, &local_url()));
            }
        }
        let text_of = |key: &str| check[key].as_str().unwrap_or("").to_owned();
        Ok(Self {
            vipd_lines,
            command,
            interval: text_of("interval"),
            timeout: text_of("timeout"),
            fall: check["fall"].as_integer().unwrap_or(0),
            rise: check["rise"].as_integer().unwrap_or(1),
        })
    }
}

fn local_url() -> String {
    format!("http://127.0.0.1:{HTTP_PORT}/")
}

/// sd1's or sd2's (`node` 0 or 1) keepalived.conf.
fn keepalived_conf(node: usize, vip: &str, check: &Check) -> String {
    format!(
        "global_defs {{\n  router_id sd{n}\n  vrrp_version 3\n  enable_script_security\n  script_user root\n}}\n\
         vrrp_script haproxy {{\n  script \"{script}\"\n  interval {KEEPALIVED_CHECK_INTERVAL_S}\n  \
         timeout {KEEPALIVED_CHECK_TIMEOUT_S}\n  fall {KEEPALIVED_CHECK_FALL}\n  rise {rise}\n}}\n\
         vrrp_instance {INSTANCE} {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {GROUP}\n  \
         priority {prio}\n  advert_int {ADVERT_SECS}\n  virtual_ipaddress {{\n    {vip} dev eth0\n  }}\n  \
         track_script {{\n    haproxy\n  }}\n}}\n",
        n = node + 1,
        script = check.command.join(" "),
        rise = check.rise,
        prio = PRIORITY[node],
    )
}

/// sd1's or sd2's vipd configuration: 1 s adverts, the recipe's check.
fn vipd_setup(node: usize, vip: &str, check: &Check) -> UnitSetup {
    let mut instance = InstanceSpec::new(PRIORITY[node])
        .advert(&format!("{ADVERT_SECS}s"))
        .vip(vip);
    instance.name = INSTANCE.into();
    instance.group = GROUP;
    instance.extra = check.vipd_lines.clone();
    UnitSetup::new(NodeSpec::new(&format!("sd{}", node + 1), instance))
}

/// Installs Debian's keepalived unit and `conf` in a booted node.
fn install_keepalived(node: &SystemdNode, conf: &str) -> Result<()> {
    let unit = node.inside("/run/vipd-test/units/keepalived.service");
    std::os::unix::fs::symlink("/lib/systemd/system/keepalived.service", &unit)
        .with_context(|| format!("linking {}", unit.display()))?;
    let dir = node.inside("/etc/keepalived");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("keepalived.conf"), conf)?;
    let out = node.systemctl(&["daemon-reload"]);
    if !out.status.success() {
        bail!("daemon-reload: {}", output_text(&out));
    }
    Ok(())
}

/// `systemctl start UNIT` (both are `Type=notify`: it returns once the daemon
/// said it is ready).
fn start_unit(node: &SystemdNode, unit: &str) -> Result<()> {
    let out = node.systemctl(&["start", unit]);
    if !out.status.success() {
        bail!(
            "{}: systemctl start {unit}: {}\n{}",
            node.role,
            output_text(&out),
            journal_text(node, unit)
        );
    }
    Ok(())
}

/// `systemctl show -P PROPERTY UNIT`.
fn property(node: &SystemdNode, unit: &str, property: &str) -> String {
    String::from_utf8_lossy(&node.systemctl(&["show", "-P", property, unit]).stdout)
        .trim()
        .to_owned()
}

fn journal_text(node: &SystemdNode, unit: &str) -> String {
    output_text(&node.nsenter(
        "journalctl",
        &["--no-pager", "-o", "short-precise", "-u", unit],
    ))
}

/// The unit's journal from `since_us` (CLOCK_MONOTONIC) on, each line as
/// `+MS message`.
fn journal_since(node: &SystemdNode, unit: &str, since_us: u64) -> Vec<String> {
    let out = node.nsenter("journalctl", &["--no-pager", "-o", "json", "-u", unit]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|entry| {
            let at: u64 = entry["__MONOTONIC_TIMESTAMP"].as_str()?.parse().ok()?;
            let message = match &entry["MESSAGE"] {
                Value::String(s) => s.clone(),
                // journald stores a message with bytes outside UTF-8 as an array.
                Value::Array(bytes) => String::from_utf8_lossy(
                    &bytes
                        .iter()
                        .filter_map(|b| b.as_u64().map(|b| b as u8))
                        .collect::<Vec<_>>(),
                )
                .into_owned(),
                _ => return None,
            };
            (at >= since_us).then(|| format!("{:+.1} ms {message}", ms_between(since_us, at)))
        })
        .collect()
}

fn ms_between(from_us: u64, to_us: u64) -> f64 {
    (to_us as f64 - from_us as f64) / 1e3
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------

/// A booted pair, sd1 master, sd2 backup, HAProxy on both.
struct Pair {
    // Field order is drop order: the proxies, then the nodes, then the lab.
    proxies: Vec<Haproxy>,
    nodes: Vec<SystemdNode>,
    lab: Lab,
    vip: String,
}

impl Pair {
    fn start(kind: Kind, check: &Check) -> Result<Self> {
        let lab = Lab::new("svcbench", 0);
        let vip = lab.vip4(0);
        let nodes = SystemdNode::boot_all(
            &lab,
            &[vipd_setup(0, &vip, check), vipd_setup(1, &vip, check)],
        );
        let proxies = vec![
            Haproxy::start(&nodes[0].host().ns, "sd1", HTTP_PORT),
            Haproxy::start(&nodes[1].host().ns, "sd2", HTTP_PORT),
        ];
        if kind == Kind::Keepalived {
            for (i, node) in nodes.iter().enumerate() {
                install_keepalived(node, &keepalived_conf(i, &vip, check))?;
            }
        }
        let pair = Self {
            proxies,
            nodes,
            lab,
            vip,
        };
        start_unit(&pair.nodes[0], kind.unit())?;
        pair.wait_for("sd1 holds the VIP", Duration::from_secs(30), |p| p.holds(0))
            .with_context(|| journal_text(&pair.nodes[0], kind.unit()))?;
        start_unit(&pair.nodes[1], kind.unit())?;
        sleep_checked(WARM_UP);
        if !pair.holds(0) || pair.holds(1) {
            bail!(
                "after the warm-up sd1 holds the VIP: {}, sd2: {}\n{}\n{}",
                pair.holds(0),
                pair.holds(1),
                journal_text(&pair.nodes[0], kind.unit()),
                journal_text(&pair.nodes[1], kind.unit())
            );
        }
        Ok(pair)
    }

    fn holds(&self, node: usize) -> bool {
        self.nodes[node].host().holds(&self.vip)
    }

    /// Polls `done` every 10 ms up to `cap`; an error naming `what` past it.
    fn wait_for(&self, what: &str, cap: Duration, done: impl Fn(&Self) -> bool) -> Result<()> {
        let start = Instant::now();
        while !done(self) {
            if start.elapsed() > cap {
                bail!("{what}: not within {cap:?}");
            }
            sleep_checked(Duration::from_millis(10));
        }
        Ok(())
    }

    fn client(&self) -> HttpClient {
        let ip: IpAddr = strip_prefix_len(&self.vip)
            .parse()
            .expect("the lab's VIP is an address");
        HttpClient::start(
            &self.lab.client.ns,
            SocketAddr::new(ip, HTTP_PORT),
            GET_EVERY,
            GET_DEADLINE,
        )
    }
}

/// What one run measured.
#[derive(Debug)]
struct Measure {
    requests: usize,
    failed: usize,
    longest_wait_ms: f64,
    /// From the event to the end of sd2's first answer.
    backup_served_ms: Option<f64>,
    /// From the event to sd2's claim of the VIP (netlink).
    backup_claimed_ms: Option<f64>,
    /// From the event to sd1's release of the VIP (netlink).
    master_released_ms: Option<f64>,
    /// The longest time both nodes held the VIP, and whether they still did at the end.
    both_held_ms: Option<f64>,
    both_held_at_end: bool,
    settled: bool,
    /// How long the command took (systemctl, vipd drain; 0 for the HAProxy kill).
    command_ms: f64,
    json: Value,
}

/// Whether the pair has reached the state a scenario ends in.
fn settled(kind: Kind, scenario: Scenario, pair: &Pair, claimed: bool, old_pid: &str) -> bool {
    if !claimed {
        return false;
    }
    match (kind, scenario) {
        // The unit restarts vipd, which preempts the VIP back.
        (Kind::Vipd, Scenario::Kill9) => {
            let pid = property(&pair.nodes[0], kind.unit(), "MainPID");
            pid != old_pid && pid != "0" && pair.holds(0) && !pair.holds(1)
        }
        // Nothing restarts keepalived.
        (Kind::Keepalived, Scenario::Kill9) => pair.holds(1),
        _ => pair.holds(1) && !pair.holds(0),
    }
}

fn one_run(kind: Kind, scenario: Scenario, check: &Check) -> Result<Measure> {
    let mut pair = Pair::start(kind, check)?;
    let watches = [
        AddrWatch::start(pair.nodes[0].host())?,
        AddrWatch::start(pair.nodes[1].host())?,
    ];
    let client = pair.client();
    sleep_checked(Duration::from_millis(500));
    let unit = kind.unit();
    let held_before = [pair.holds(0), pair.holds(1)];
    let old_pid = property(&pair.nodes[0], unit, "MainPID");
    // Each run's timeline from the daemons' start is the same: without this the
    // event would fall at the same point of every advert and check cycle.
    let phase = Duration::from_secs_f64(rand::random::<f64>() * ADVERT_SECS as f64);
    sleep_checked(phase);

    let from = Instant::now();
    let from_us = monotonic_us();
    let command = match scenario {
        Scenario::Kill9 => Some(pair.nodes[0].systemctl(&["kill", "-s", "KILL", unit])),
        Scenario::Stop => Some(pair.nodes[0].systemctl(&["stop", unit])),
        Scenario::HaproxyKill9 => {
            pair.proxies[0].kill();
            None
        }
        Scenario::Drain => {
            Some(pair.nodes[0].nsenter("/usr/sbin/vipd", &["drain", INSTANCE, "--wait"]))
        }
    };
    let command_ms = ms(from.elapsed());
    let command_said = command.as_ref().map(output_text).unwrap_or_default();
    if let Some(out) = &command {
        if !out.status.success() {
            bail!("the {} command failed: {command_said}", scenario.key());
        }
    }

    let vip = pair.vip.clone();
    let mut is_settled = false;
    while from.elapsed() < SETTLE_CAP {
        let claimed = watches[1].first(&vip, true, from_us).is_some();
        if settled(kind, scenario, &pair, claimed, &old_pid) {
            is_settled = true;
            break;
        }
        sleep_checked(Duration::from_millis(10));
    }
    sleep_checked(TAIL);
    let end_us = monotonic_us();
    let log = client.finish();
    let at_end = [pair.holds(0), pair.holds(1)];

    let claimed = watches[1].first(&vip, true, from_us);
    let released = watches[0].first(&vip, false, from_us);
    let (both_held_ms, both_held_at_end) = both_held(&watches, &vip, held_before, from_us, end_us);
    let backup_served_ms = log
        .since(from)
        .find(|r| r.answer.as_deref() == Ok("sd2"))
        .map(|r| ms(r.sent + r.took - from));
    let node_state = |n: &SystemdNode| {
        json!({
            "ActiveState": property(n, unit, "ActiveState"),
            "SubState": property(n, unit, "SubState"),
            "Result": property(n, unit, "Result"),
            "NRestarts": property(n, unit, "NRestarts"),
            "MainPID": property(n, unit, "MainPID"),
        })
    };
    let json = json!({
        "command": command_said.trim(),
        "command_ms": command_ms,
        "phase_ms": ms(phase),
        "settled": is_settled,
        "answered_by": log.answered_by(from),
        "failures": log.describe_failures(from).lines().take(200).collect::<Vec<_>>(),
        "vip_at_end": {"sd1": at_end[0], "sd2": at_end[1]},
        "sd1_unit_after": node_state(&pair.nodes[0]),
        "sd1_main_pid_before": old_pid,
        "sd2_unit_after": node_state(&pair.nodes[1]),
        "sd1_journal": journal_since(&pair.nodes[0], unit, from_us),
        "sd2_journal": journal_since(&pair.nodes[1], unit, from_us),
    });
    let measure = Measure {
        requests: log.since(from).count(),
        failed: log.failed_since(from),
        longest_wait_ms: ms(log.longest_outage_since(from)),
        backup_served_ms,
        backup_claimed_ms: claimed.map(|e| ms_between(from_us, e.at)),
        master_released_ms: released.map(|e| ms_between(from_us, e.at)),
        both_held_ms,
        both_held_at_end,
        settled: is_settled,
        command_ms,
        json,
    };
    drop(watches);
    drop(pair);
    Ok(measure)
}

/// From `from_us` to `end_us`, given who held `vip` before: the longest time
/// both nodes held it (`None`: never both), and whether both still did at the end.
fn both_held(
    watches: &[AddrWatch; 2],
    vip: &str,
    before: [bool; 2],
    from_us: u64,
    end_us: u64,
) -> (Option<f64>, bool) {
    let want: IpAddr = strip_prefix_len(vip).parse().expect("an address");
    let mut events: Vec<(u64, usize, bool)> = watches
        .iter()
        .enumerate()
        .flat_map(|(node, w)| {
            w.events()
                .into_iter()
                .filter(|e| e.addr == want && e.at >= from_us && e.at <= end_us)
                .map(move |e| (e.at, node, e.added))
        })
        .collect();
    events.sort_by_key(|e| e.0);
    let mut held = before;
    let mut since = (held[0] && held[1]).then_some(from_us);
    let mut longest: Option<f64> = None;
    for (at, node, added) in events {
        held[node] = added;
        match (since, held[0] && held[1]) {
            (None, true) => since = Some(at),
            (Some(start), false) => {
                let d = ms_between(start, at);
                longest = Some(longest.map_or(d, |l: f64| l.max(d)));
                since = None;
            }
            _ => {}
        }
    }
    match since {
        Some(start) => {
            let d = ms_between(start, end_us);
            (Some(longest.map_or(d, |l| l.max(d))), true)
        }
        None => (longest, false),
    }
}

// ---------------------------------------------------------------------------
// Statistics and output
// ---------------------------------------------------------------------------

fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

fn worst(samples: &[f64]) -> Option<f64> {
    samples.iter().copied().reduce(f64::max)
}

fn stats(samples: &[f64]) -> Value {
    json!({"n": samples.len(), "median": median(samples), "worst": worst(samples), "samples": samples})
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The JSON of one daemon's runs of one scenario, with the table's cells.
fn summarize(kind: Kind, scenario: Scenario, runs: &[Measure], failures: &[String]) -> Value {
    let col = |f: fn(&Measure) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    let failed = col(|m| m.failed as f64);
    let requests = col(|m| m.requests as f64);
    let waits = col(|m| m.longest_wait_ms);
    let served: Vec<f64> = runs.iter().filter_map(|m| m.backup_served_ms).collect();
    let never_moved = runs.len() - served.len();
    let overlaps: Vec<f64> = runs.iter().filter_map(|m| m.both_held_ms).collect();
    let still_both = runs.iter().filter(|m| m.both_held_at_end).count();
    let n = runs.len();
    let fmt_ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0} ms"));
    let cells = if n == 0 {
        json!({"failed": "no run succeeded", "wait": "", "served": "", "both": ""})
    } else {
        let served_cell = if served.is_empty() {
            "never moved".to_owned()
        } else {
            let mut s = format!("{} ({})", fmt_ms(median(&served)), fmt_ms(worst(&served)));
            if never_moved > 0 {
                let _ = write!(s, "; never moved in {never_moved} of {n}");
            }
            s
        };
        let both_cell = if overlaps.is_empty() {
            "no".to_owned()
        } else if still_both > 0 {
            format!(
                "yes in {} of {n} runs, still at the end in {still_both}",
                overlaps.len()
            )
        } else {
            format!(
                "yes in {} of {n} runs, at most {:.1} ms",
                overlaps.len(),
                worst(&overlaps).unwrap_or(0.0)
            )
        };
        json!({
            "failed": format!(
                "{:.0} of {:.0} ({:.0})",
                median(&failed).unwrap_or(0.0),
                median(&requests).unwrap_or(0.0),
                worst(&failed).unwrap_or(0.0)
            ),
            "wait": format!("{} ({})", fmt_ms(median(&waits)), fmt_ms(worst(&waits))),
            "served": served_cell,
            "both": both_cell,
        })
    };
    json!({
        "daemon": kind.name(),
        "scenario": scenario.key(),
        "label": scenario.label(),
        "runs": n,
        "failed_gets": stats(&failed),
        "gets": stats(&requests),
        "longest_wait_ms": stats(&waits),
        "backup_served_ms": stats(&served),
        "runs_never_moved": never_moved,
        "backup_claimed_ms": stats(&runs.iter().filter_map(|m| m.backup_claimed_ms).collect::<Vec<_>>()),
        "master_released_ms": stats(&runs.iter().filter_map(|m| m.master_released_ms).collect::<Vec<_>>()),
        "both_held_ms": stats(&overlaps),
        "runs_both_held_at_end": still_both,
        "runs_unsettled": runs.iter().filter(|m| !m.settled).count(),
        "command_ms": stats(&col(|m| m.command_ms)),
        "cells": cells,
        "per_run": runs.iter().map(|m| m.json.clone()).collect::<Vec<_>>(),
        "failures": failures,
    })
}

fn render(rows: &[Value], runs: usize, out: &mut String) {
    let _ = writeln!(
        out,
        "\nHAProxy pair, client GET every {} ms through the VIP ({} ms deadline), adverts every {ADVERT_SECS} s; \
         median (worst) of {runs} run(s)",
        GET_EVERY.as_millis(),
        GET_DEADLINE.as_millis()
    );
    let _ = writeln!(
        out,
        "| scenario on the master | daemon | failed GETs of total | longest wait | backup served after | both nodes held the VIP |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for scenario in Scenario::ALL {
        for kind in Kind::ALL {
            let row = rows
                .iter()
                .find(|r| r["daemon"] == kind.name() && r["scenario"] == scenario.key());
            let cells = match row {
                Some(r) => {
                    let c = &r["cells"];
                    let s = |k: &str| c[k].as_str().unwrap_or("").to_owned();
                    [s("failed"), s("wait"), s("served"), s("both")]
                }
                // Printed beside the daemons that ran it.
                None if !scenario.applies_to(kind)
                    && rows.iter().any(|r| r["scenario"] == scenario.key()) =>
                {
                    ["n/a".into(), "n/a".into(), "n/a".into(), "n/a".into()]
                }
                None => continue,
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                scenario.label(),
                kind.name(),
                cells[0],
                cells[1],
                cells[2],
                cells[3]
            );
        }
    }
    let _ = writeln!(
        out,
        "  cells: median (worst) over the runs; failed GETs: median failed of median sent (most failed); \
         backup served after: from the event to sd2's first answer; both held: sd1 and sd2 had the VIP \
         on eth0 at once (netlink), longest stretch"
    );
    // What each unit did after the kill, and anything that did not settle.
    for row in rows {
        let per_run = row["per_run"].as_array().cloned().unwrap_or_default();
        if row["scenario"] == Scenario::Kill9.key() && !per_run.is_empty() {
            let mut states: Vec<String> = per_run
                .iter()
                .map(|r| {
                    let u = &r["sd1_unit_after"];
                    format!(
                        "{} ({}), Result={}, NRestarts={}",
                        u["ActiveState"].as_str().unwrap_or("?"),
                        u["SubState"].as_str().unwrap_or("?"),
                        u["Result"].as_str().unwrap_or("?"),
                        u["NRestarts"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            states.dedup();
            let _ = writeln!(
                out,
                "  {} after kill -9: sd1's unit {}; sd2 claimed the VIP after {} ms (median), sd1 released it: {}",
                row["daemon"].as_str().unwrap_or(""),
                states.join(" / "),
                row["backup_claimed_ms"]["median"]
                    .as_f64()
                    .map_or("-".into(), |v| format!("{v:.0}")),
                row["master_released_ms"]["median"]
                    .as_f64()
                    .map_or("never".into(), |v| format!("after {v:.0} ms (median)")),
            );
        }
        if let Some(n) = row["runs_unsettled"].as_u64().filter(|&n| n > 0) {
            let _ = writeln!(
                out,
                "  {} {}: {n} run(s) had not settled {} s after the event",
                row["daemon"].as_str().unwrap_or(""),
                row["scenario"].as_str().unwrap_or(""),
                SETTLE_CAP.as_secs()
            );
        }
        for failure in row["failures"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {} {} failed: {}",
                row["daemon"].as_str().unwrap_or(""),
                row["scenario"].as_str().unwrap_or(""),
                failure.as_str().unwrap_or("").lines().next().unwrap_or("")
            );
        }
    }
}

fn stdout_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines().next().unwrap_or("").trim().to_owned()
        })
        .unwrap_or_default()
}

fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "services bench: needs root (network namespaces, systemd in namespaces); run it as root"
        );
        std::process::exit(2);
    }
    install_interrupt_handlers();
    let quick = std::env::var("VIPD_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let runs = env_num("VIPD_BENCH_SERVICES_RUNS", if quick { 2 } else { 5 }).max(1) as usize;
    let cases = std::env::var("VIPD_BENCH_SERVICES_CASES").unwrap_or_default();
    let want = |s: Scenario| cases.is_empty() || cases.split(',').any(|c| c.trim() == s.key());
    let check = match Check::from_recipe() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("services bench: {e:#}");
            std::process::exit(1);
        }
    };
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    fs::create_dir_all(&out_dir).expect("creating target/bench");

    let started = Instant::now();
    let load_start = loadavg();
    let mut rows = Vec::new();
    'scenarios: for scenario in Scenario::ALL.into_iter().filter(|&s| want(s)) {
        for kind in Kind::ALL {
            if !scenario.applies_to(kind) {
                continue;
            }
            let mut measures = Vec::new();
            let mut failures = Vec::new();
            for run_no in 1..=runs {
                if interrupted() {
                    break;
                }
                eprintln!(
                    "== services: {} {}: run {run_no}/{runs}",
                    kind.name(),
                    scenario.key()
                );
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    one_run(kind, scenario, &check)
                }));
                match result {
                    Ok(Ok(m)) => {
                        eprintln!(
                            "   {} of {} GETs failed, longest wait {:.1} ms, sd2 served after {}, both held: {}",
                            m.failed,
                            m.requests,
                            m.longest_wait_ms,
                            m.backup_served_ms
                                .map_or("never".into(), |v| format!("{v:.1} ms")),
                            m.both_held_ms.map_or("no".into(), |v| format!(
                                "{v:.1} ms{}",
                                if m.both_held_at_end { ", still at the end" } else { "" }
                            )),
                        );
                        measures.push(m);
                    }
                    Ok(Err(e)) => {
                        eprintln!("   run {run_no} failed: {e:#}");
                        failures.push(format!("run {run_no}: {e:#}"));
                    }
                    Err(_) => failures.push(format!("run {run_no}: panicked or interrupted")),
                }
            }
            rows.push(summarize(kind, scenario, &measures, &failures));
            if interrupted() {
                break 'scenarios;
            }
        }
    }

    let mut table = String::new();
    render(&rows, runs, &mut table);
    let results = json!({
        "machine": {
            "date": stdout_of("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "keepalived": stdout_of("keepalived", &["--version"]),
            "haproxy": stdout_of("haproxy", &["-v"]),
            "systemd": stdout_of("systemctl", &["--version"]),
            "vipd_commit": stdout_of("git", &["rev-parse", "--short", "HEAD"]),
        },
        "options": {"quick": quick, "runs": runs, "cases": cases},
        "config": {
            "client": format!("one HTTP GET every {} ms through the VIP from the client's namespace, each on a new connection with a {} ms deadline; the client's neighbour entries never expire on their own (it follows gratuitous ARPs)", GET_EVERY.as_millis(), GET_DEADLINE.as_millis()),
            "haproxy": "Debian's HAProxy on *:8080 in each node's network namespace, answering 200 with the node's name",
            "vipd": format!("systemd/vipd.service as shipped; instance {INSTANCE}, group {GROUP}, priorities 150/100, advert_interval {ADVERT_SECS}s, defaults otherwise (preempt, after_crash = handover); the check of {RECIPE} as written, on port {HTTP_PORT}: {}", check.vipd_lines.join("; ")),
            "keepalived": format!("Debian's keepalived.service unchanged; VRRPv3, state BACKUP on both, priorities 150/100, advert_int {ADVERT_SECS}, preempt (default); vrrp_script: the same command, interval {KEEPALIVED_CHECK_INTERVAL_S}, timeout {KEEPALIVED_CHECK_TIMEOUT_S}, fall {KEEPALIVED_CHECK_FALL}, rise {} (keepalived 2.2.7 takes whole seconds, at least 1, and fall at least 1); vipd's check: interval {}, timeout {}, fall {}", check.rise, check.interval, check.timeout, check.fall),
            "keepalived_conf_sd1": keepalived_conf(0, "VIP/24", &check),
            "window": format!("from the event until the pair settled, plus {} s; settled: kill9 = sd2 claimed the VIP and, if the unit restarted the daemon, sd1 took it back; otherwise sd2 alone holds it; at most {} s", TAIL.as_secs(), SETTLE_CAP.as_secs()),
            "warm_up_s": WARM_UP.as_secs(),
        },
        "rows": rows,
        "noise": {
            "loadavg_1m_start": load_start,
            "loadavg_1m_end": loadavg(),
            "elapsed_s": started.elapsed().as_secs_f64(),
            "interrupted": interrupted(),
        },
    });
    print!("{table}");
    let path = out_dir.join("services.json");
    let text = serde_json::to_string_pretty(&results).expect("the results serialize");
    fs::write(&path, text).expect("writing services.json");
    println!("\nwrote {}", path.display());
}
