//! The operator's commands: `vipd status`, `drain`, `undrain`, `promote`, `reload`.
//!
//! Each is a client of the daemon's control socket ([`vipd::control`]): it finds
//! the socket (`--socket`, else `[node] control_socket` in `--config`), sends one
//! request with a 5 s timeout and prints the answer for people, or with `--json`
//! the raw response for scripts. `drain --wait` and `promote --wait` then poll the
//! status every 50 ms until the handover is seen or `--timeout` passes.
//!
//! Errors (daemon unreachable, refused, unexpected answer) come back as `Err` and
//! the caller prints them and exits 1; a refusal of one instance among several is
//! printed here and gives exit code 1 too.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use vipd::config;
use vipd::control::{self, InstanceStatus, Outcome, Request, Response};
use vipd::election::State;

/// Bound on one request and its answer; they normally take milliseconds.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often `--wait` asks for the status.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Exit codes of `vipd status`, for monitoring (see its `--help`).
const EXIT_FAULT: u8 = 2;
const EXIT_NO_MASTER: u8 = 3;

const STATUS_HELP: &str = "\
Exit codes (for monitoring):
  0  every instance is well: a master is known and none is in fault
  1  error: the daemon is unreachable, refused the request, or an INSTANCE is unknown
  2  some instance is in fault (takes precedence over 3)
  3  some instance knows no master (nobody holds its VIPs, as far as this node knows)";

// Where the daemon is, and how to print its answer; shared by every command. (Not
// a doc comment: clap would make it the about text of each command.)
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Target {
    /// Configuration file; only `[node] control_socket` is read from it.
    #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// The daemon's control socket (overrides --config).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the daemon's response as (pretty) JSON, for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = STATUS_HELP)]
pub(crate) struct StatusArgs {
    /// Show only these instances (default: all).
    #[arg(value_name = "INSTANCE")]
    instances: Vec<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DrainArgs {
    /// Instances to drain (default: all).
    #[arg(value_name = "INSTANCE")]
    instances: Vec<String>,
    /// Wait until another node is master of each drained instance.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, e.g. 500ms, 10s, 1m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration, requires = "wait")]
    timeout: Duration,
    /// Drain even when no other node could take over (the VIPs go down).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct UndrainArgs {
    /// Instances to undrain (default: all).
    #[arg(value_name = "INSTANCE")]
    instances: Vec<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct PromoteArgs {
    /// Instances to promote (default: all).
    #[arg(value_name = "INSTANCE")]
    instances: Vec<String>,
    /// Wait until this node is master of each promoted instance.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, e.g. 500ms, 10s, 1m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration, requires = "wait")]
    timeout: Duration,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReloadArgs {
    #[command(flatten)]
    target: Target,
}

/// `vipd status`: every instance's state, VIPs, master and peers.
pub(crate) async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let path = args.target.socket_path()?;
    let response = call(&path, Request::Status).await?;
    let (node, mut instances) = match response {
        Response::Status { node, instances } => (node, instances),
        other => return args.target.unexpected(other),
    };
    if !args.instances.is_empty() {
        let unknown: Vec<&str> = args
            .instances
            .iter()
            .filter(|n| !instances.iter().any(|i| &i.name == *n))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            let known: Vec<&str> = instances.iter().map(|i| i.name.as_str()).collect();
            bail!(
                "unknown instance(s): {}; this node has: {}",
                unknown.join(", "),
                known.join(", ")
            );
        }
        instances.retain(|i| args.instances.contains(&i.name));
    }
    let code = health_code(&instances);
    if args.target.json {
        print_json(&Response::Status { node, instances })?;
    } else {
        print!("{}", render_status(&node, &instances));
    }
    Ok(ExitCode::from(code))
}

/// `vipd drain`: make this node ineligible; a master hands its VIPs over.
pub(crate) async fn drain(args: DrainArgs) -> anyhow::Result<ExitCode> {
    let path = args.target.socket_path()?;
    let request = Request::Drain {
        instances: args.instances,
        force: args.force,
    };
    let wait = args.wait.then_some((Goal::OtherNodeMaster, args.timeout));
    command(&args.target, &path, request, wait).await
}

/// `vipd undrain`: make this node eligible again.
pub(crate) async fn undrain(args: UndrainArgs) -> anyhow::Result<ExitCode> {
    let path = args.target.socket_path()?;
    let request = Request::Undrain {
        instances: args.instances,
    };
    command(&args.target, &path, request, None).await
}

/// `vipd promote`: make this node master now.
pub(crate) async fn promote(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    let path = args.target.socket_path()?;
    let request = Request::Promote {
        instances: args.instances,
    };
    let wait = args.wait.then_some((Goal::ThisNodeMaster, args.timeout));
    command(&args.target, &path, request, wait).await
}

/// `vipd reload`: re-read the configuration, as SIGHUP does, but with the outcome.
pub(crate) async fn reload(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    let path = args.target.socket_path()?;
    match call(&path, Request::Reload).await? {
        Response::Reloaded { summary } => {
            if args.target.json {
                print_json(&Response::Reloaded { summary })?;
            } else {
                println!("applied: {summary}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Response::Error { message } if !args.target.json => Err(anyhow!(
            "reload failed; the daemon keeps running with its previous configuration:\n{message}"
        )),
        other => args.target.unexpected(other),
    }
}

impl Target {
    /// `--socket`, else `[node] control_socket` from `--config`, else the default.
    fn socket_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(socket) = &self.socket {
            return Ok(socket.clone());
        }
        control_socket_from_config(&self.config).with_context(|| {
            format!(
                "cannot find the control socket from {}; pass --socket PATH (the default is {})",
                self.config.display(),
                config::defaults::CONTROL_SOCKET
            )
        })
    }

    /// Handles an answer that is not what the command expects: the daemon's error,
    /// printed as JSON when asked for, or a protocol mix-up.
    fn unexpected(&self, response: Response) -> anyhow::Result<ExitCode> {
        if self.json {
            print_json(&response)?;
            return Ok(ExitCode::FAILURE);
        }
        match response {
            Response::Error { message } => Err(anyhow!("the daemon refused: {message}")),
            other => Err(anyhow!("unexpected answer from the daemon: {other:?}")),
        }
    }
}

/// Reads just `[node] control_socket` from the configuration file.
///
/// Not [`config::load`]: that also reads the key files (root-only) and rejects the
/// whole file for any mistake elsewhere, and neither should keep an operator in
/// the control group, or one half-way through an edit, from running `vipd status`.
fn control_socket_from_config(path: &Path) -> anyhow::Result<PathBuf> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    control_socket_from_toml(&text).with_context(|| format!("{}", path.display()))
}

fn control_socket_from_toml(text: &str) -> anyhow::Result<PathBuf> {
    let table: toml::Table = text.parse().context("not valid TOML")?;
    let socket = table
        .get("node")
        .and_then(|node| node.as_table())
        .and_then(|node| node.get("control_socket"));
    let path = match socket {
        None => PathBuf::from(config::defaults::CONTROL_SOCKET),
        Some(toml::Value::String(s)) => PathBuf::from(s),
        Some(other) => bail!(
            "[node] control_socket must be a string, not {}",
            other.type_str()
        ),
    };
    if !path.is_absolute() {
        bail!(
            "[node] control_socket {:?} is not an absolute path",
            path.display()
        );
    }
    Ok(path)
}

async fn call(path: &Path, request: Request) -> anyhow::Result<Response> {
    Ok(control::call(path, request, CALL_TIMEOUT).await?)
}

fn print_json(response: &Response) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(response)?);
    Ok(())
}

/// Sends drain, undrain or promote; prints each instance's outcome; with `wait`,
/// waits for the goal on every instance that accepted.
async fn command(
    target: &Target,
    path: &Path,
    request: Request,
    wait: Option<(Goal, Duration)>,
) -> anyhow::Result<ExitCode> {
    let outcomes = match call(path, request).await? {
        Response::Done { outcomes } => outcomes,
        other => return target.unexpected(other),
    };
    if target.json {
        print_json(&Response::Done {
            outcomes: outcomes.clone(),
        })?;
    } else {
        print!("{}", render_outcomes(&outcomes));
    }
    let mut ok = outcomes.iter().all(|o| o.ok);
    if let Some((goal, timeout)) = wait {
        let accepted: Vec<String> = outcomes
            .iter()
            .filter(|o| o.ok)
            .map(|o| o.instance.clone())
            .collect();
        // In JSON mode stdout carries the response only; progress goes to stderr.
        ok &= wait_for(path, goal, accepted, timeout, target.json).await;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn render_outcomes(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    if outcomes.is_empty() {
        out.push_str("no instances\n");
    }
    for o in outcomes {
        out.push_str(&format!("{}: {}\n", o.instance, o.message));
    }
    out
}

/// What `--wait` waits for on each instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Goal {
    /// After drain: some other node is master and this one no longer is.
    OtherNodeMaster,
    /// After promote: this node is master.
    ThisNodeMaster,
}

impl Goal {
    /// The new master's name, for the message, once the goal is reached.
    fn reached(self, instance: &InstanceStatus, node: &str) -> Option<String> {
        let master = instance.master.as_ref()?;
        match self {
            Self::OtherNodeMaster => {
                (!master.is_self && !master.name.is_empty() && instance.state != State::Master)
                    .then(|| master.name.clone())
            }
            Self::ThisNodeMaster => (master.is_self && instance.state == State::Master)
                .then(|| format!("{node} (this node)")),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::OtherNodeMaster => "another node to become master",
            Self::ThisNodeMaster => "this node to become master",
        }
    }
}

/// Polls the status until `goal` holds for every instance in `pending`, printing
/// each as it does. Returns whether all did within `timeout`; says what it last saw
/// for those that did not.
async fn wait_for(
    path: &Path,
    goal: Goal,
    mut pending: Vec<String>,
    timeout: Duration,
    to_stderr: bool,
) -> bool {
    let say = |line: String| {
        if to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let started = Instant::now();
    let deadline = started + timeout;
    let mut seen: Vec<(String, String)> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let call_timeout = left.clamp(Duration::from_millis(100), CALL_TIMEOUT);
        let last_error = match control::call(path, Request::Status, call_timeout).await {
            Ok(Response::Status { node, instances }) => {
                seen.clear();
                pending.retain(|name| match instances.iter().find(|i| &i.name == name) {
                    Some(instance) => match goal.reached(instance, &node) {
                        Some(master) => {
                            say(format!(
                                "{name}: now master on {master} (after {} ms)",
                                started.elapsed().as_millis()
                            ));
                            false
                        }
                        None => {
                            seen.push((name.clone(), describe_progress(instance, &node)));
                            true
                        }
                    },
                    None => {
                        seen.push((
                            name.clone(),
                            "not in the daemon's status (removed by a reload?)".to_owned(),
                        ));
                        true
                    }
                });
                None
            }
            Ok(Response::Error { message }) => Some(format!("the daemon refused: {message}")),
            Ok(other) => Some(format!("unexpected answer from the daemon: {other:?}")),
            Err(e) => Some(e.to_string()),
        };
        if pending.is_empty() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            let waited = humantime::format_duration(timeout);
            for name in &pending {
                let last = seen
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or("nothing yet", |(_, what)| what.as_str());
                eprintln!(
                    "{name}: timed out after {waited} waiting for {}; last seen: {last}",
                    goal.describe()
                );
            }
            if let Some(e) = last_error {
                eprintln!("last status request failed: {e}");
            }
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

/// One line on where an instance stands, for a `--wait` that timed out.
fn describe_progress(instance: &InstanceStatus, node: &str) -> String {
    let alive = instance.peers.iter().filter(|p| p.alive).count();
    let mut out = format!(
        "state {}, master {}, {alive} of {} peers alive",
        instance.state,
        master_text(instance, node),
        instance.peers.len()
    );
    if instance.drained {
        out.push_str(", drained");
    }
    if instance.promoted {
        out.push_str(", promoted");
    }
    if let Some(fault) = &instance.fault {
        out.push_str(&format!(", fault: {fault}"));
    }
    out
}

/// `vipd status`'s exit code: 2 if any instance is in fault, else 3 if any knows
/// no master, else 0.
fn health_code(instances: &[InstanceStatus]) -> u8 {
    if instances
        .iter()
        .any(|i| i.state == State::Fault || i.fault.is_some())
    {
        EXIT_FAULT
    } else if instances.iter().any(|i| i.master.is_none()) {
        EXIT_NO_MASTER
    } else {
        0
    }
}

fn master_text(instance: &InstanceStatus, node: &str) -> String {
    match &instance.master {
        None => "none known".to_owned(),
        Some(m) if m.is_self => format!("{node} (this node)"),
        Some(m) => match &m.address {
            Some(address) => format!("{} at {address}", m.name),
            None => m.name.clone(),
        },
    }
}

/// The human form of `vipd status`.
fn render_status(node: &str, instances: &[InstanceStatus]) -> String {
    let mut out = format!("node {node}\n");
    if instances.is_empty() {
        out.push_str("no instances\n");
    }
    for i in instances {
        out.push('\n');
        out.push_str(&render_instance(i, node));
    }
    out
}

fn render_instance(i: &InstanceStatus, node: &str) -> String {
    let mut out = String::new();

    // Header: name, interface, group, STATE, priority, conditions.
    let mut header = format!(
        "{}  {}  group {}  {}  priority {}",
        i.name,
        i.interface,
        i.group,
        i.state.to_string().to_uppercase(),
        i.configured_priority
    );
    // The daemon may list the configured priority as a reason; it is shown already.
    let configured = format!("configured {}", i.configured_priority);
    let reasons: Vec<&str> = i
        .priority_reasons
        .iter()
        .map(String::as_str)
        .filter(|r| *r != configured)
        .collect();
    if i.effective_priority != i.configured_priority || !reasons.is_empty() {
        header.push_str(&format!(" -> {}", i.effective_priority));
        if !reasons.is_empty() {
            header.push_str(&format!(" ({})", reasons.join(", ")));
        }
    }
    if i.drained {
        header.push_str("  drained");
    }
    if i.promoted {
        header.push_str("  promoted");
    }
    if let Some(fault) = &i.fault {
        header.push_str(&format!("  FAULT: {fault}"));
    }
    out.push_str(&header);
    out.push('\n');

    let mut facts = vec![("master", master_text(i, node))];
    facts.push((
        "last change",
        match &i.last_transition {
            Some(t) => format!("{} -> {} {} ago: {}", t.from, t.to, ago(t.ms_ago), t.reason),
            None => "none since start".to_owned(),
        },
    ));
    let warn = |n: u64| if n > 0 { " (!)" } else { "" };
    facts.push((
        "counters",
        format!(
            "auth failures {}{}, other master heard {}{}, adverts sent {}, received {}",
            i.auth_failures,
            warn(i.auth_failures),
            i.other_master_heard,
            warn(i.other_master_heard),
            i.adverts_sent,
            i.adverts_received
        ),
    ));
    facts.push(("master down", interval(i.master_down_interval_ms)));
    let width = facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (key, value) in facts {
        out.push_str(&format!("  {:<width$} {value}\n", format!("{key}:")));
    }

    out.push('\n');
    let mut vips = vec![vec!["VIP".to_owned(), "HELD".to_owned()]];
    vips.extend(
        i.vips
            .iter()
            .map(|v| vec![v.address.clone(), yes_no(v.held).to_owned()]),
    );
    out.push_str(&table(&vips, "  "));

    out.push('\n');
    if i.peers.is_empty() {
        out.push_str("  no peers heard\n");
    } else {
        let mut peers = vec![[
            "PEER",
            "ADDRESS",
            "PRIORITY",
            "FLAGS",
            "STATE",
            "ALIVE",
            "LAST HEARD",
            "INTERVAL",
        ]
        .map(str::to_owned)
        .to_vec()];
        peers.extend(i.peers.iter().map(|p| {
            vec![
                p.name.clone(),
                p.address.clone().unwrap_or_else(|| "-".to_owned()),
                p.priority.to_string(),
                if p.flags.is_empty() {
                    "-".to_owned()
                } else {
                    p.flags.join(",")
                },
                p.state.clone(),
                yes_no(p.alive).to_owned(),
                format!("{} ago", ago(p.last_heard_ms_ago)),
                interval(p.advert_interval_ms),
            ]
        }));
        out.push_str(&table(&peers, "  "));
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Left-aligned columns two spaces apart, no trailing blanks.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A time since, for people: "0.4s", "12.3s", "5m07s", "3h02m", "2d04h".
fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..60_000 => format!("{}.{}s", s, ms % 1000 / 100),
        60_000..3_600_000 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// An interval, exactly: "10ms", "1s", "1.5s", "3.002s".
fn interval(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        let s = format!("{}.{:03}", ms / 1000, ms % 1000);
        format!("{}s", s.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use vipd::control::{MasterStatus, PeerStatus, TransitionStatus, VipStatus};

    fn sample() -> InstanceStatus {
        InstanceStatus {
            name: "db".into(),
            interface: "eth0".into(),
            group: 51,
            state: State::Master,
            configured_priority: 100,
            effective_priority: 110,
            priority_reasons: vec!["configured 100".into(), "health weights +10".into()],
            drained: false,
            promoted: false,
            fault: None,
            vips: vec![
                VipStatus {
                    address: "10.0.0.10/24".into(),
                    held: true,
                },
                VipStatus {
                    address: "2001:db8::10/64".into(),
                    held: false,
                },
            ],
            master: Some(MasterStatus {
                name: "db1".into(),
                address: None,
                is_self: true,
            }),
            peers: vec![
                PeerStatus {
                    name: "db2".into(),
                    node_id: 2,
                    address: Some("10.0.0.2".into()),
                    priority: 100,
                    flags: vec![],
                    state: "backup".into(),
                    alive: true,
                    last_heard_ms_ago: 400,
                    advert_interval_ms: 1000,
                },
                PeerStatus {
                    name: "db3-long-name".into(),
                    node_id: 3,
                    address: None,
                    priority: 0,
                    flags: vec!["drained".into(), "shutting-down".into()],
                    state: "shutting-down".into(),
                    alive: false,
                    last_heard_ms_ago: 125_000,
                    advert_interval_ms: 1500,
                },
            ],
            auth_failures: 0,
            other_master_heard: 2,
            adverts_sent: 1234,
            adverts_received: 5678,
            last_transition: Some(TransitionStatus {
                from: State::Backup,
                to: State::Master,
                reason: "master down: no advert within the master-down interval".into(),
                at_unix: 1_700_000_000.0,
                ms_ago: 12_345,
            }),
            master_down_interval_ms: 3002,
        }
    }

    #[test]
    fn status_renders_for_people() {
        let expected = "\
node db1

db  eth0  group 51  MASTER  priority 100 -> 110 (health weights +10)
  master:      db1 (this node)
  last change: backup -> master 12.3s ago: master down: no advert within the master-down interval
  counters:    auth failures 0, other master heard 2 (!), adverts sent 1234, received 5678
  master down: 3.002s

  VIP              HELD
  10.0.0.10/24     yes
  2001:db8::10/64  no

  PEER           ADDRESS   PRIORITY  FLAGS                  STATE          ALIVE  LAST HEARD  INTERVAL
  db2            10.0.0.2  100       -                      backup         yes    0.4s ago    1s
  db3-long-name  -         0         drained,shutting-down  shutting-down  no     2m05s ago   1.5s
";
        assert_eq!(render_status("db1", &[sample()]), expected);
    }

    #[test]
    fn header_shows_conditions_and_other_masters() {
        let mut i = sample();
        i.state = State::Backup;
        i.effective_priority = 100;
        i.priority_reasons = vec!["configured 100".into()];
        i.drained = true;
        i.master = Some(MasterStatus {
            name: "db2".into(),
            address: Some("10.0.0.2".into()),
            is_self: false,
        });
        i.last_transition = None;
        i.peers.clear();
        let text = render_instance(&i, "db1");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "db  eth0  group 51  BACKUP  priority 100  drained"
        );
        assert_eq!(lines[1], "  master:      db2 at 10.0.0.2");
        assert_eq!(lines[2], "  last change: none since start");
        assert_eq!(lines.last(), Some(&"  no peers heard"));

        i.state = State::Fault;
        i.fault = Some("check nginx failed".into());
        i.effective_priority = 0;
        i.master = None;
        let text = render_instance(&i, "db1");
        assert!(text.starts_with(
            "db  eth0  group 51  FAULT  priority 100 -> 0  drained  FAULT: check nginx failed\n  master:      none known\n"
        ), "{text}");
    }

    #[test]
    fn exit_codes_for_monitoring() {
        assert_eq!(health_code(&[]), 0);
        let well = sample();
        assert_eq!(health_code(std::slice::from_ref(&well)), 0);
        let mut backup = sample();
        backup.state = State::Backup;
        backup.master = Some(MasterStatus {
            name: "db2".into(),
            address: None,
            is_self: false,
        });
        assert_eq!(health_code(&[well.clone(), backup.clone()]), 0);
        let mut masterless = sample();
        masterless.state = State::Backup;
        masterless.master = None;
        assert_eq!(health_code(&[well.clone(), masterless.clone()]), 3);
        let mut faulty = backup.clone();
        faulty.state = State::Fault;
        assert_eq!(health_code(&[well.clone(), faulty.clone()]), 2);
        // A fault reported with another state still counts; fault wins over no master.
        let mut fault_reason = backup;
        fault_reason.fault = Some("link down".into());
        assert_eq!(health_code(&[fault_reason]), 2);
        assert_eq!(health_code(&[masterless, faulty]), 2);
    }

    #[test]
    fn wait_conditions() {
        let mut i = sample();
        // We are master: neither "another node" nor done with drain.
        assert_eq!(
            Goal::ThisNodeMaster.reached(&i, "db1"),
            Some("db1 (this node)".into())
        );
        assert_eq!(Goal::OtherNodeMaster.reached(&i, "db1"), None);
        // Still handing over: we think the other is master but still hold the role.
        i.master = Some(MasterStatus {
            name: "db2".into(),
            address: Some("10.0.0.2".into()),
            is_self: false,
        });
        assert_eq!(Goal::OtherNodeMaster.reached(&i, "db1"), None);
        i.state = State::Backup;
        assert_eq!(Goal::OtherNodeMaster.reached(&i, "db1"), Some("db2".into()));
        assert_eq!(Goal::ThisNodeMaster.reached(&i, "db1"), None);
        // No master known, or a nameless one: not yet.
        i.master = None;
        assert_eq!(Goal::OtherNodeMaster.reached(&i, "db1"), None);
        i.master = Some(MasterStatus {
            name: String::new(),
            address: None,
            is_self: false,
        });
        assert_eq!(Goal::OtherNodeMaster.reached(&i, "db1"), None);
        // Master state but the status does not (yet) name us: not yet.
        i.state = State::Master;
        assert_eq!(Goal::ThisNodeMaster.reached(&i, "db1"), None);
    }

    #[test]
    fn progress_says_what_was_seen() {
        let mut i = sample();
        i.drained = true;
        assert_eq!(
            describe_progress(&i, "db1"),
            "state master, master db1 (this node), 1 of 2 peers alive, drained"
        );
    }

    #[test]
    fn outcomes_render_one_per_line() {
        let outcomes = vec![
            Outcome {
                instance: "db".into(),
                ok: true,
                message: "drained: ineligible; a master hands its VIPs over".into(),
            },
            Outcome {
                instance: "web".into(),
                ok: false,
                message: "refused: this node is in fault (x)".into(),
            },
        ];
        assert_eq!(
            render_outcomes(&outcomes),
            "db: drained: ineligible; a master hands its VIPs over\nweb: refused: this node is in fault (x)\n"
        );
        assert_eq!(render_outcomes(&[]), "no instances\n");
    }

    #[test]
    fn times_for_people() {
        assert_eq!(ago(0), "0.0s");
        assert_eq!(ago(400), "0.4s");
        assert_eq!(ago(12_345), "12.3s");
        assert_eq!(ago(59_999), "59.9s");
        assert_eq!(ago(60_000), "1m00s");
        assert_eq!(ago(3_599_999), "59m59s");
        assert_eq!(ago(3_600_000), "1h00m");
        assert_eq!(ago(90_000_000), "1d01h");
        assert_eq!(interval(10), "10ms");
        assert_eq!(interval(1000), "1s");
        assert_eq!(interval(1500), "1.5s");
        assert_eq!(interval(3002), "3.002s");
        assert_eq!(interval(40_950), "40.95s");
    }

    #[test]
    fn socket_comes_from_the_config_or_the_default() {
        assert_eq!(
            control_socket_from_toml("[node]\ncontrol_socket = \"/run/x/y.sock\"\n").unwrap(),
            PathBuf::from("/run/x/y.sock")
        );
        // Other keys, even invalid ones, do not matter.
        assert_eq!(
            control_socket_from_toml("[node]\nname = 5\n[[instance]]\nbogus = true\n").unwrap(),
            PathBuf::from(config::defaults::CONTROL_SOCKET)
        );
        let err = control_socket_from_toml("[node]\ncontrol_socket = 3\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "[node] control_socket must be a string, not integer"
        );
        let err = control_socket_from_toml("[node]\ncontrol_socket = \"x.sock\"\n").unwrap_err();
        assert!(err.to_string().contains("not an absolute path"), "{err}");
        assert!(control_socket_from_toml("[node").is_err());
    }

    #[test]
    fn a_missing_config_suggests_socket() {
        let target = Target {
            config: PathBuf::from("/nonexistent/vipd.toml"),
            socket: None,
            json: false,
        };
        let err = format!("{:#}", target.socket_path().unwrap_err());
        assert!(
            err.starts_with(
                "cannot find the control socket from /nonexistent/vipd.toml; pass --socket PATH"
            ),
            "{err}"
        );
        let target = Target {
            socket: Some(PathBuf::from("/tmp/s.sock")),
            ..target
        };
        assert_eq!(target.socket_path().unwrap(), PathBuf::from("/tmp/s.sock"));
    }

    /// The arguments parse as documented (a stand-in for main's subcommands).
    #[derive(Debug, clap::Parser)]
    enum Cli {
        Status(StatusArgs),
        Drain(DrainArgs),
        Promote(PromoteArgs),
        Reload(ReloadArgs),
    }

    #[test]
    fn arguments_parse() {
        let Cli::Drain(d) = Cli::try_parse_from([
            "vipd",
            "drain",
            "db",
            "web",
            "--wait",
            "--timeout",
            "1m",
            "--force",
            "--json",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(d.instances, ["db", "web"]);
        assert!(d.wait && d.force && d.target.json);
        assert_eq!(d.timeout, Duration::from_secs(60));
        assert_eq!(d.target.config, PathBuf::from(config::DEFAULT_PATH));

        let Cli::Promote(p) = Cli::try_parse_from(["vipd", "promote", "--socket", "/s"]).unwrap()
        else {
            panic!()
        };
        assert!(!p.wait && p.instances.is_empty());
        assert_eq!(p.timeout, Duration::from_secs(10));
        assert_eq!(p.target.socket, Some(PathBuf::from("/s")));

        // --timeout means nothing without --wait.
        assert!(Cli::try_parse_from(["vipd", "drain", "--timeout", "5s"]).is_err());
        assert!(Cli::try_parse_from(["vipd", "drain", "--wait", "--timeout", "soon"]).is_err());
        assert!(Cli::try_parse_from(["vipd", "reload", "db"]).is_err());
    }

    #[test]
    fn status_help_documents_the_exit_codes() {
        let err = Cli::try_parse_from(["vipd", "status", "--help"]).unwrap_err();
        let help = err.to_string();
        assert!(help.contains("Exit codes (for monitoring):"), "{help}");
        assert!(help.contains("3  some instance knows no master"), "{help}");
    }
}
