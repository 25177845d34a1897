//! The operator's commands: `vipd status`, `drain`, `undrain`, `promote`, `reload`,
//! `events`.
//!
//! Each is a client of the daemon's control socket ([`vipd::control`]): it finds
//! the socket (`--socket`, else `[node] control_socket` in `--config`), sends one
//! request with a 5 s timeout and prints the answer for people, or with `--json`
//! the raw response for scripts. `drain --wait` and `promote --wait` then poll the
//! status every 50 ms until the new master serves (it has claimed the VIPs, its
//! `before_claim` gate included), the goal cannot be reached any more (the drain
//! was rolled back, the node fell into fault) or `--timeout` passes.
//!
//! Errors (daemon unreachable, refused, unexpected answer) come back as `Err` and
//! the caller prints them and exits 1; a refusal of one instance among several is
//! printed here and gives exit code 1 too.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use vipd::config;
use vipd::control::render::{describe_progress, health_code, render_outcomes, render_status, Goal};
use vipd::control::{self, Request, Response};

/// Bound on one request and its answer; they normally take milliseconds.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often `--wait` asks for the status.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

const STATUS_HELP: &str = "\
Exit codes (for monitoring):
  0  every instance is well: a master is known and none is in fault
  1  error: the daemon is unreachable, refused the request, or an INSTANCE is unknown
  2  some instance is in fault (takes precedence over 3, 4 and 5)
  3  some instance knows no master (nobody holds its VIPs, as far as this node knows)
  4  another node uses this node's name and stands aside (NAME CONFLICT; on the node
     standing aside the instance is in fault: 2)
  5  a live peer advertises another VIP set than ours (CONFIG DRIFT: compare both
     configurations; the election still follows that peer as master)";

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
    /// Wait until another node is master of each drained instance and serves
    /// (its before_claim gate passed); exit 1 if the drain is rolled back.
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
    /// Wait until this node is master of each promoted instance and serves
    /// (its before_claim gate passed); exit 1 if it falls into fault.
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

#[derive(Debug, clap::Args)]
pub(crate) struct EventsArgs {
    /// Configuration file; only `[node] control_socket` is read from it.
    #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// The daemon's control socket (overrides --config).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
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
        Response::Reloaded { summary, failed } => {
            if args.target.json {
                print_json(&Response::Reloaded {
                    summary,
                    failed: failed.clone(),
                })?;
            } else {
                println!("applied: {summary}");
                for failure in &failed {
                    eprintln!("instance failed to start: {failure}");
                }
            }
            Ok(if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(control::render::EXIT_RELOAD_INCOMPLETE)
            })
        }
        Response::Error { message } if !args.target.json => Err(anyhow!(
            "reload failed; the daemon keeps running with its previous configuration:\n{message}"
        )),
        other => args.target.unexpected(other),
    }
}

/// `vipd events`: print each state change as one JSON line as it happens, until
/// interrupted. Says on stderr when it is listening, so a script can start
/// its maintenance then.
pub(crate) async fn events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let target = Target {
        config: args.config,
        socket: args.socket,
        json: true,
    };
    let path = target.socket_path()?;
    let mut failed = None;
    control::client::subscribe_events(
        &path,
        CALL_TIMEOUT,
        || {
            eprintln!(
                "listening for state changes on {} (Ctrl-C stops)",
                path.display()
            )
        },
        |event| match serde_json::to_string(&event) {
            Ok(line) => println!("{line}"),
            Err(e) => failed = Some(e),
        },
    )
    .await?;
    if let Some(e) = failed {
        return Err(e).context("printing an event");
    }
    bail!("the daemon closed the event stream (stopping?)")
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
    let mut failed = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let call_timeout = left.clamp(Duration::from_millis(100), CALL_TIMEOUT);
        let last_error = match control::call(path, Request::Status, call_timeout).await {
            Ok(Response::Status { node, instances }) => {
                seen.clear();
                pending.retain(|name| match instances.iter().find(|i| &i.name == name) {
                    Some(instance) if goal.failed(instance).is_some() => {
                        let why = goal.failed(instance).unwrap_or_default();
                        eprintln!("{name}: {why}");
                        failed = true;
                        false
                    }
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
            return !failed;
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

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
        assert!(
            help.contains("4  another node uses this node's name"),
            "{help}"
        );
        assert!(
            help.contains("5  a live peer advertises another VIP set"),
            "{help}"
        );
    }
}
