//! `vipd`: the command line. Parses arguments, sets up logging and the runtime,
//! and hands over to [`vipd::daemon::run`], the config checker or the control
//! client in `cli`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::filter::Targets;
use vipd::config;

mod cli;
mod tools;

/// Without RUST_LOG: info, minus netlink-packet-route's warnings about kernel
/// attributes newer than the crate (harmless, and one per link message).
const DEFAULT_LOG_FILTER: &str = "info,netlink_packet_route=error";

/// Virtual-IP failover: authenticated heartbeats, priority election, VIPs moved in
/// milliseconds.
#[derive(Debug, Parser)]
#[command(name = "vipd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the daemon (under systemd: Type=notify).
    Run(ConfigArg),
    /// Check the configuration file (and this host's interfaces) and exit.
    Check(ConfigArg),
    /// Show the state of every instance.
    Status(cli::StatusArgs),
    /// Make this node ineligible; a master hands its VIPs over first.
    Drain(cli::DrainArgs),
    /// Make this node eligible again.
    Undrain(cli::UndrainArgs),
    /// Make this node master now.
    Promote(cli::PromoteArgs),
    /// Reload the running daemon's configuration.
    ///
    /// Exits 1 when the reload is refused (nothing changed), 2 when it was
    /// applied but an instance failed to start.
    Reload(cli::ReloadArgs),
    /// Remove the VIPs a dead daemon left (the unit's ExecStopPost).
    ///
    /// Removes every address carrying vipd's marker (`ip -d addr` shows "proto 118")
    /// on the interfaces the configuration names (every interface when the
    /// configuration does not load). Refuses while a daemon runs; idempotent.
    Cleanup(ConfigArg),
    /// Print each state change as a JSON line as it happens, until interrupted.
    Events(cli::EventsArgs),
    /// Write a new advert key (32 random bytes as hex, mode 0600) to PATH or stdout.
    Keygen(tools::KeygenArgs),
    /// Convert keepalived.conf's VRRP parts to vipd's TOML (stdout; report on stderr).
    ImportKeepalived(tools::ImportArgs),
    /// Write the man pages and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets(tools::GenerateArgs),
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(long, short, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();

    match &cli.command {
        Cmd::Check(args) => return check(&args.config),
        Cmd::Keygen(args) => return tools::keygen(args),
        Cmd::ImportKeepalived(args) => return tools::import_keepalived(args),
        Cmd::GenerateAssets(args) => return tools::generate_assets::<Cli>(args),
        _ => {}
    }

    // Before the runtime opens its own descriptors: raise the soft limit, and
    // refuse clearly below what any configuration needs.
    if matches!(cli.command, Cmd::Run(_)) {
        if let Err(e) = vipd::daemon::raise_open_files_limit() {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    }

    // One thread: every task only awaits (netlink, sockets, child processes),
    // nothing blocks, so a second worker would only add cross-thread wake-ups,
    // memory and CPU at 100 adverts a second. Blocking work (file writes) goes to
    // tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .thread_name("vipd")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vipd: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The daemon's errors belong in its log (the journal); a CLI command's on
    // the terminal, once.
    let is_daemon = matches!(cli.command, Cmd::Run(_));
    let result = runtime.block_on(async {
        match cli.command {
            Cmd::Run(args) => run(args.config).await,
            // handled above, without a runtime
            Cmd::Check(_) | Cmd::Keygen(_) | Cmd::ImportKeepalived(_) | Cmd::GenerateAssets(_) => {
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Status(args) => cli::status(args).await,
            Cmd::Drain(args) => cli::drain(args).await,
            Cmd::Undrain(args) => cli::undrain(args).await,
            Cmd::Promote(args) => cli::promote(args).await,
            Cmd::Reload(args) => cli::reload(args).await,
            Cmd::Cleanup(args) => cleanup(&args.config).await,
            Cmd::Events(args) => cli::events(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_daemon {
                tracing::error!("{e:#}");
            } else {
                eprintln!("vipd: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs go to the journal, natively, when stderr *is* the journal (systemd says so
/// in `JOURNAL_STREAM`): each event's fields become journal fields (`INSTANCE`,
/// `STATE`, `REASON`, ...; `journalctl -u vipd INSTANCE=db`), with the journal's
/// own timestamp and priority instead of a second timestamp in the text.
/// Otherwise (a terminal, a file, a test) human-readable lines on stderr.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = log_filter();
    if stderr_is_the_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                let journal = journal.with_field_prefix(None);
                tracing_subscriber::registry()
                    .with(filter)
                    .with(journal)
                    .init();
                return;
            }
            Err(e) => eprintln!("vipd: cannot log to the journal natively ({e}); logging as text"),
        }
    }
    // A layer under the registry, not `fmt()`'s own subscriber: that one caps
    // events at INFO before any filter added on top sees them.
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .init();
}

/// `RUST_LOG` as `target=level` directives (`debug`, `vipd=debug,info`), or
/// [`DEFAULT_LOG_FILTER`]. Plain per-target levels, no regular expressions:
/// the filter `EnvFilter` offers beyond them cost a regex engine in the binary
/// (~270 KB of text resident in every daemon) and nobody set them.
fn log_filter() -> Targets {
    let default = || {
        DEFAULT_LOG_FILTER
            .parse::<Targets>()
            .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
    };
    // Empty pieces and spaces around them, which EnvFilter skipped, would
    // read as a target named " info" or an ERROR-only default here.
    let directives = std::env::var("RUST_LOG")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect::<Vec<_>>()
        .join(",");
    match directives {
        directives if !directives.is_empty() => {
            directives.parse::<Targets>().unwrap_or_else(|e| {
                eprintln!("vipd: RUST_LOG={directives:?} is not a list of target=level directives ({e}); using {DEFAULT_LOG_FILTER:?}");
                default()
            })
        }
        _ => default(),
    }
}

/// Whether `JOURNAL_STREAM` ("DEVICE:INODE") names the file stderr is: systemd
/// sets it for a service whose output goes to the journal, and a child that
/// redirected stderr elsewhere inherits the variable but not the match.
fn stderr_is_the_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = stream.split_once(':') else {
        return false;
    };
    let (Ok(device), Ok(inode)) = (device.parse::<u64>(), inode.parse::<u64>()) else {
        return false;
    };
    nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|s| s.st_dev == device && s.st_ino == inode)
}

async fn run(config_path: PathBuf) -> anyhow::Result<ExitCode> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    };
    vipd::daemon::run(config_path.clone(), shutdown)
        .await
        .with_context(|| format!("vipd run --config {}", config_path.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `vipd cleanup`: one line per announced release, kept instance and removed
/// address, on stderr (the journal under ExecStopPost); exit 1 when an
/// address could not be removed. systemd tells ExecStopPost how the daemon
/// ended in `$SERVICE_RESULT`.
async fn cleanup(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let result = std::env::var("SERVICE_RESULT").ok();
    let exit = vipd::instance::crash::ExitKind::from_service_result(result.as_deref());
    let report = vipd::daemon::cleanup(path, exit).await?;
    if let Some(why) = &report.all_interfaces_because {
        eprintln!("vipd cleanup: the configuration does not load ({why}); removing vipd-marked addresses on every interface");
    }
    let ended = result.as_deref().map_or_else(
        || "not run by systemd".to_owned(),
        |r| {
            format!(
                "SERVICE_RESULT={r} EXIT_CODE={} EXIT_STATUS={}",
                std::env::var("EXIT_CODE").unwrap_or_default(),
                std::env::var("EXIT_STATUS").unwrap_or_default()
            )
        },
    );
    for note in &report.notes {
        eprintln!("vipd cleanup: {note}");
    }
    for name in &report.kept_for_restart {
        eprintln!("vipd cleanup: instance {name}: VIPs left in place for the restarted daemon (after_crash = \"resume\"; {ended})");
    }
    for name in &report.announced {
        eprintln!("vipd cleanup: instance {name}: announced the release to its peers ({ended})");
    }
    for (name, why) in &report.announce_failed {
        eprintln!("vipd cleanup: instance {name}: cannot announce the release ({why}); its peers take over after the master-down interval");
    }
    for a in &report.removed {
        eprintln!(
            "vipd cleanup: removed {}/{} (interface index {})",
            a.addr, a.prefix_len, a.ifindex
        );
    }
    for (a, why) in &report.failed {
        eprintln!(
            "vipd cleanup: cannot remove {}/{} (interface index {}): {why}",
            a.addr, a.prefix_len, a.ifindex
        );
    }
    for r in &report.removed_routes {
        eprintln!(
            "vipd cleanup: removed route {}/{} (table {}, {})",
            r.addr, r.prefix_len, r.table, r.kind
        );
    }
    for (r, why) in &report.failed_routes {
        eprintln!(
            "vipd cleanup: cannot remove route {}/{} (table {}): {why}",
            r.addr, r.prefix_len, r.table
        );
    }
    if report.removed.is_empty()
        && report.kept_for_restart.is_empty()
        && report.failed.is_empty()
        && report.removed_routes.is_empty()
        && report.failed_routes.is_empty()
    {
        eprintln!("vipd cleanup: no vipd-marked address left");
    }
    Ok(
        if report.failed.is_empty() && report.failed_routes.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// `vipd check`: every problem, one per line as FILE:LINE:COL: message.
fn check(path: &std::path::Path) -> ExitCode {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            let diagnostics = e.diagnostics();
            if diagnostics.is_empty() {
                eprintln!("{e}");
            } else {
                for d in diagnostics {
                    eprintln!("{d}");
                }
            }
            return ExitCode::FAILURE;
        }
    };
    // A running daemon (its control socket exists) has its VIPs on the interfaces.
    let running = config.node.control_socket.exists();
    let problems = config::check_against_system(&config, running);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        return ExitCode::FAILURE;
    }
    for warning in config::check_warnings(&config) {
        eprintln!("warning: {warning}");
    }
    let names: Vec<&str> = config.instances.iter().map(|i| i.name.as_str()).collect();
    println!(
        "OK: {} instance{} ({}) in {}",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        names.join(", "),
        path.display()
    );
    ExitCode::SUCCESS
}
