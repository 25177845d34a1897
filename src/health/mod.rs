//! Health tracking: track scripts, tracked interfaces, track files, the split-brain
//! guard and sync groups, folded into one [`crate::election::Health`].
//!
//! # Shape
//!
//! Every check that needs time (a script, a file read, a witness probe) is its own
//! tokio task started by [`spawn_checks`]; it sends each result as a [`CheckEvent`]
//! over an unbounded channel to the instance task, which feeds it to its core's
//! [`Tracker`]. The instance task never waits on a check, so adverts keep going
//! while a script hangs (FIELD-NOTES 9, 10). The [`Tracker`] itself is plain state:
//! no IO, no clock, so its rules are unit-tested here.
//!
//! # Rules
//!
//! - A **track script** passes when it exits 0. A run that exits non-zero, cannot
//!   start, or is still running at `timeout` fails; at the timeout the script is
//!   killed with its whole process group (it runs in a group of its own). Its first
//!   result counts at once; after that `fall` failures in a row make it failing and
//!   `rise` successes in a row make it good. At most [`MAX_CONCURRENT_SCRIPTS`]
//!   scripts run at once in the daemon; the others wait their turn (the wait is not
//!   part of the timeout).
//! - A **tracked interface** counts while its link is down (or missing).
//! - A **track file** holds an integer `n`; `n × weight_multiplier` is added to the
//!   priority; a result of -254 or less is a fault. A missing file or one that does
//!   not hold an integer counts 0, with a warning whenever that changes.
//! - Without a weight a failing check is a **fault** (the node must not be master);
//!   a negative weight is added while failing, a positive one while good.
//! - The **guard** is a check whose failure is always a fault; its first result
//!   counts at once, and until then the node is in fault ("not checked yet").
//! - **Quorum** and **sync group** faults are set by the instance core
//!   ([`crate::instance`]), which knows the live peers and the other
//!   instances' published faults.
//! - A **claim fault**: the VIPs cannot be claimed or announced ([`claim`] has
//!   the rule; the instance's VIP worker reports it).
//!
//! A node's *own* fault (everything but the sync-group fault) is what it publishes
//! to its sync group; publishing the sync-group fault too would latch the group in
//! fault for ever.
//!
//! [`notify`] runs the operator's hooks on each transition, in order, under a
//! timeout; it shares [`run_command`] with the track scripts. `carry.rs` carries
//! a tracker's state across a reload ([`Tracker::carry_over`]).
//!
//! What it may not touch: the election (it only produces `Health`), sockets that
//! carry adverts, and the VIPs themselves.

mod carry;
pub mod claim;
pub mod notify;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use crate::config::{GuardConfig, GuardMethod, InstanceConfig, TrackFile, TrackScript, Witness};
use crate::election::Health;
use crate::net::netlink::Netlink;

/// How many track scripts may run at once in the whole daemon.
pub const MAX_CONCURRENT_SCRIPTS: usize = 8;

fn script_limit() -> Arc<Semaphore> {
    static LIMIT: OnceLock<Arc<Semaphore>> = OnceLock::new();
    Arc::clone(LIMIT.get_or_init(|| Arc::new(Semaphore::new(MAX_CONCURRENT_SCRIPTS))))
}

/// How one run of a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    Success,
    /// Exited non-zero, killed by a signal, or could not start: why.
    Failed(String),
    /// Still running at the timeout; killed with its process group.
    TimedOut(Duration),
}

impl RunOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success)
    }
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Success => f.write_str("succeeded"),
            Self::Failed(why) => f.write_str(why),
            Self::TimedOut(t) => write!(f, "timed out after {t:?} and was killed"),
        }
    }
}

/// `PATH` for hooks and scripts when the daemon has none (systemd gives services
/// this one).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment every hook and script starts from: `PATH` and `LANG` (the
/// daemon's, else defaults), nothing else. Why: the daemon's own environment
/// carries systemd's `NOTIFY_SOCKET` and `WATCHDOG_PID`/`WATCHDOG_USEC`, and a
/// script that inherits them (any sd_notify-aware tool it starts) could report
/// readiness or pet the watchdog in the daemon's name.
fn clean_environment() -> [(&'static str, String); 2] {
    let inherited = |name: &str, default: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    [
        ("PATH", inherited("PATH", DEFAULT_PATH)),
        ("LANG", inherited("LANG", "C.UTF-8")),
    ]
}

/// A user a hook or track script runs as (`script_user`, `user`), looked up
/// when it starts, so a user created after the daemon started works.
#[derive(Clone, Debug)]
struct RunAs {
    name: String,
    uid: libc::uid_t,
    gid: libc::gid_t,
    /// The user's supplementary groups (as `initgroups` would set them).
    groups: Vec<libc::gid_t>,
    home: String,
}

impl RunAs {
    fn look_up(name: &str) -> Result<Self, String> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| format!("cannot look up user {name:?}: {e}"))?
            .ok_or_else(|| format!("user {name:?} does not exist"))?;
        let cname = std::ffi::CString::new(name)
            .map_err(|_| format!("user name {name:?} holds a NUL byte"))?;
        let groups = nix::unistd::getgrouplist(&cname, user.gid)
            .map_err(|e| format!("cannot list the groups of user {name:?}: {e}"))?
            .into_iter()
            .map(nix::unistd::Gid::as_raw)
            .collect();
        Ok(Self {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups,
            home: user.dir.to_string_lossy().into_owned(),
        })
    }

    /// Sets up `cmd` to drop to this user in the child, before exec: groups,
    /// then group, then user (after setuid nothing else may be changed).
    fn apply(&self, cmd: &mut tokio::process::Command) {
        let (uid, gid, groups) = (self.uid, self.gid, self.groups.clone());
        cmd.env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .current_dir("/");
        // SAFETY: the closure runs in the forked child before exec and only
        // makes three system calls on memory prepared before the fork (no
        // allocation, no locks), as `pre_exec` requires.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// Runs `argv` (or, with `shell`, `/bin/sh -c argv[0]`) with `extra_args` appended,
/// in a clean environment ([`clean_environment`]) plus `env`, in a process group
/// of its own, with stdin, stdout and stderr on /dev/null, as `user` if given
/// (with its groups, `HOME`, `USER` and `LOGNAME`, in `/`). Past `timeout` the
/// whole group is SIGKILLed and reaped.
pub async fn run_command(
    argv: &[String],
    shell: bool,
    extra_args: &[&str],
    env: &[(&str, &str)],
    user: Option<&str>,
    timeout: Duration,
) -> RunOutcome {
    let Some(program) = argv.first() else {
        return RunOutcome::Failed("no program".into());
    };
    let run_as = match user.map(RunAs::look_up).transpose() {
        Ok(run_as) => run_as,
        Err(why) => return RunOutcome::Failed(why),
    };
    let mut cmd = if shell {
        let mut c = tokio::process::Command::new("/bin/sh");
        // `$0` is "vipd", the appended arguments are `$1`...
        c.arg("-c").arg(program).arg("vipd");
        c
    } else {
        let mut c = tokio::process::Command::new(program);
        c.args(&argv[1..]);
        c
    };
    cmd.args(extra_args)
        .env_clear()
        .envs(clean_environment())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(run_as) = &run_as {
        run_as.apply(&mut cmd);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && run_as.is_some() => {
            return RunOutcome::Failed(format!(
                "cannot start {program:?} as user {:?}: {e} (switching users needs \
                 CAP_SETUID and CAP_SETGID; the shipped unit grants them)",
                user.unwrap_or_default()
            ))
        }
        Err(e) => return RunOutcome::Failed(format!("cannot start {program:?}: {e}")),
    };
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => RunOutcome::Success,
        Ok(Ok(status)) => RunOutcome::Failed(status.to_string()),
        Ok(Err(e)) => RunOutcome::Failed(format!("waiting for it: {e}")),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // The child leads its own group (process_group(0)), so its pid is
                // the group id; grandchildren it left running go too.
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
            RunOutcome::TimedOut(timeout)
        }
    }
}

/// A result from a check task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckEvent {
    /// One run of track script `index` ended.
    Script { index: usize, outcome: RunOutcome },
    /// Track file `index` now reads as this (or cannot be used, and why).
    File {
        index: usize,
        value: Result<i64, String>,
    },
    /// One witness check ended.
    Guard { outcome: RunOutcome },
    /// A tracked interface's link is up or down (missing counts as down).
    Interface { name: String, up: bool },
    /// The gate before a claim (`notify.before_claim`) ended; for the instance
    /// core, not the tracker.
    Gate { outcome: RunOutcome },
    /// A check finished a run that took `took` (sent before its result), for
    /// the metrics; `check` is the name [`Tracker::checks`] gives it.
    Ran { check: String, took: Duration },
}

/// Starts a task per track script, track file and guard of `cfg`, each sending its
/// results to `tx`. The tasks end when `tx`'s receiver is dropped (at their next
/// result); abort them to stop at once.
pub fn spawn_checks(
    cfg: &InstanceConfig,
    tx: &mpsc::UnboundedSender<CheckEvent>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (index, script) in cfg.track_scripts.iter().enumerate() {
        tasks.push(tokio::spawn(script_loop(index, script.clone(), tx.clone())));
    }
    for (index, file) in cfg.track_files.iter().enumerate() {
        tasks.push(tokio::spawn(file_loop(index, file.clone(), tx.clone())));
    }
    if let Some(guard) = &cfg.guard {
        tasks.push(tokio::spawn(guard_loop(
            guard.clone(),
            cfg.interface.clone(),
            tx.clone(),
        )));
    }
    tasks
}

async fn script_loop(index: usize, script: TrackScript, tx: mpsc::UnboundedSender<CheckEvent>) {
    let limit = script_limit();
    loop {
        let (outcome, took) = {
            // The semaphore is never closed, so acquiring cannot fail.
            let _permit = limit.acquire().await;
            let started = Instant::now();
            let outcome = run_command(
                &script.command,
                script.shell,
                &[],
                &[],
                script.user.as_deref(),
                script.timeout,
            )
            .await;
            (outcome, started.elapsed())
        };
        let check = format!("script:{}", script.name);
        let _ = tx.send(CheckEvent::Ran { check, took });
        if tx.send(CheckEvent::Script { index, outcome }).is_err() {
            return;
        }
        tokio::time::sleep(script.interval).await;
    }
}

async fn file_loop(index: usize, file: TrackFile, tx: mpsc::UnboundedSender<CheckEvent>) {
    let mut last = None;
    loop {
        let value = read_weight_file(&file.path).await;
        if last.as_ref() != Some(&value) {
            if tx
                .send(CheckEvent::File {
                    index,
                    value: value.clone(),
                })
                .is_err()
            {
                return;
            }
            last = Some(value);
        } else if tx.is_closed() {
            return;
        }
        tokio::time::sleep(file.interval).await;
    }
}

/// The most a track file may hold: a number and some whitespace fit many times.
pub const MAX_TRACK_FILE_BYTES: u64 = 4096;

/// How long reading a track file may take (a hung network file system).
const TRACK_FILE_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// A track file's integer (surrounding whitespace ignored).
///
/// The file must be a regular file of at most [`MAX_TRACK_FILE_BYTES`]: a FIFO
/// (opening one blocks until a writer comes), a device (`/dev/zero` never ends) or
/// a huge file would hang or bloat the check, so each is a failing check with its
/// reason. The file is opened non-blocking and checked with `fstat` before any
/// read, so not even the open can block.
async fn read_weight_file(path: &Path) -> Result<i64, String> {
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || read_bounded(&owned));
    let text = match tokio::time::timeout(TRACK_FILE_READ_TIMEOUT, read).await {
        Ok(Ok(result)) => result?,
        Ok(Err(e)) => return Err(format!("reading {}: {e}", path.display())),
        Err(_) => {
            return Err(format!(
                "reading {} took longer than {TRACK_FILE_READ_TIMEOUT:?}",
                path.display()
            ))
        }
    };
    let text = text.trim();
    text.parse::<i64>().map_err(|_| {
        let shown: String = text.chars().take(40).collect();
        format!("{} does not hold an integer: {shown:?}", path.display())
    })
}

/// Reads a regular file of at most [`MAX_TRACK_FILE_BYTES`]; see [`read_weight_file`].
fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let metadata = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let kind = metadata.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "{shown} is {what}; a track file must be a regular file"
        ));
    }
    if metadata.len() > MAX_TRACK_FILE_BYTES {
        return Err(format!(
            "{shown} is {} bytes; a track file holds one integer (at most {MAX_TRACK_FILE_BYTES} bytes)",
            metadata.len()
        ));
    }
    let mut text = String::new();
    // The limit again: the file may grow between fstat and read.
    file.take(MAX_TRACK_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    Ok(text)
}

async fn guard_loop(guard: GuardConfig, interface: String, tx: mpsc::UnboundedSender<CheckEvent>) {
    loop {
        let started = Instant::now();
        let outcome = check_witness(&guard, &interface).await;
        let took = started.elapsed();
        let _ = tx.send(CheckEvent::Ran {
            check: "guard".to_owned(),
            took,
        });
        if tx.send(CheckEvent::Guard { outcome }).is_err() {
            return;
        }
        // Checks start every `interval`, however long one took.
        tokio::time::sleep(guard.interval.saturating_sub(started.elapsed())).await;
    }
}

/// One probe of the witness: `ping -c 1` or `arping -c 1` on the interface.
async fn check_witness(guard: &GuardConfig, interface: &str) -> RunOutcome {
    let addr = match &guard.witness {
        Witness::Address(a) => *a,
        Witness::Gateway => match default_gateway().await {
            Ok(gw) => IpAddr::V4(gw),
            Err(why) => return RunOutcome::Failed(why),
        },
    };
    let secs = format!("{:.3}", guard.timeout.as_secs_f64());
    let argv: Vec<String> = match guard.method {
        GuardMethod::Icmp => vec![
            "ping".into(),
            if addr.is_ipv4() { "-4" } else { "-6" }.into(),
            "-n".into(),
            "-q".into(),
            "-c".into(),
            "1".into(),
            "-W".into(),
            secs,
            "-I".into(),
            interface.into(),
            addr.to_string(),
        ],
        // arping's deadline is whole seconds; our own timeout below is the bound.
        GuardMethod::Arp => vec![
            "arping".into(),
            "-q".into(),
            "-c".into(),
            "1".into(),
            "-w".into(),
            guard.timeout.as_secs().max(1).to_string(),
            "-I".into(),
            interface.into(),
            addr.to_string(),
        ],
    };
    // A little slack for the process to start; the probe's own timeout is tighter.
    let bound = guard.timeout + Duration::from_millis(200);
    match run_command(&argv, false, &[], &[], None, bound).await {
        RunOutcome::Success => RunOutcome::Success,
        RunOutcome::Failed(why) => RunOutcome::Failed(format!("{addr}: {why}")),
        RunOutcome::TimedOut(t) => RunOutcome::Failed(format!("{addr}: no answer within {t:?}")),
    }
}

/// The IPv4 default gateway, through netlink (`ip -4 route show default`):
/// /proc/net/route is hidden by the unit's `ProcSubset=pid` (FIELD-NOTES 23).
async fn default_gateway() -> Result<Ipv4Addr, String> {
    let netlink = Netlink::connect().map_err(|e| format!("cannot read the routes: {e}"))?;
    match netlink.default_gateway_v4().await {
        Ok(Some(gateway)) => Ok(gateway),
        Ok(None) => Err("there is no IPv4 default gateway".to_owned()),
        Err(e) => Err(format!("cannot read the routes: {e}")),
    }
}

// ---------------------------------------------------------------------------
// The tracker: results in, Health out
// ---------------------------------------------------------------------------

/// Good/failing with rise/fall counting; `None` until the first result.
#[derive(Clone, Debug)]
struct Counted {
    good: Option<bool>,
    /// Results in a row that disagree with `good`.
    against: u32,
    rise: u32,
    fall: u32,
    last: String,
}

impl Counted {
    fn new(rise: u32, fall: u32) -> Self {
        Self {
            good: None,
            against: 0,
            rise,
            fall,
            last: "not run yet".into(),
        }
    }

    /// Takes one result; returns the new state when it changed.
    fn record(&mut self, ok: bool, detail: String) -> Option<bool> {
        self.last = detail;
        match self.good {
            None => {
                self.good = Some(ok);
                Some(ok)
            }
            Some(good) if good == ok => {
                self.against = 0;
                None
            }
            Some(good) => {
                self.against += 1;
                let need = if good { self.fall } else { self.rise };
                if self.against >= need {
                    self.against = 0;
                    self.good = Some(ok);
                    Some(ok)
                } else {
                    None
                }
            }
        }
    }
}

/// Everything that makes up one instance's health.
#[derive(Clone, Debug)]
pub struct Tracker {
    instance: String,
    scripts: Vec<(TrackScript, Counted)>,
    /// (interface, weight, up)
    interfaces: Vec<(String, Option<i32>, bool)>,
    /// (file, value, problem)
    files: Vec<(TrackFile, i64, Option<String>)>,
    guard: Option<Counted>,
    link_down: Option<String>,
    /// The VIPs cannot be claimed or announced (see [`claim`]).
    claim_fault: Option<String>,
    quorum_fault: Option<String>,
    sync_fault: Option<String>,
    /// The other sync-group members' own weights, each with its reason.
    sync_weights: Vec<(i32, String)>,
}

/// What one sync-group member tells the others: its own fault and the sum of
/// its own health weights. Members add each other's weights to their priority,
/// so a weight that moves one member's VIPs moves the whole group's alike.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncEntry {
    pub fault: Option<String>,
    pub weight: i32,
}

impl Tracker {
    /// Tracked interfaces start up until [`Self::set_interface`] says otherwise.
    pub fn new(cfg: &InstanceConfig) -> Self {
        Self {
            instance: cfg.name.clone(),
            scripts: cfg
                .track_scripts
                .iter()
                .map(|s| (s.clone(), Counted::new(s.rise, s.fall)))
                .collect(),
            interfaces: cfg
                .track_interfaces
                .iter()
                .map(|t| (t.interface.clone(), t.weight, true))
                .collect(),
            files: cfg
                .track_files
                .iter()
                .map(|f| (f.clone(), 0, None))
                .collect(),
            guard: cfg.guard.as_ref().map(|g| Counted::new(g.rise, g.fall)),
            link_down: None,
            claim_fault: None,
            quorum_fault: None,
            sync_fault: None,
            sync_weights: Vec::new(),
        }
    }

    /// Takes a check result, logging any change of state.
    pub fn on_event(&mut self, event: CheckEvent) {
        let instance = &self.instance;
        match event {
            CheckEvent::Script { index, outcome } => {
                let Some((script, counted)) = self.scripts.get_mut(index) else {
                    return;
                };
                let ok = outcome.is_success();
                if !ok {
                    tracing::debug!(%instance, script = %script.name, %outcome, "track script failed");
                }
                if let Some(now_good) = counted.record(ok, outcome.to_string()) {
                    if now_good {
                        tracing::info!(%instance, script = %script.name, "track script is good");
                    } else {
                        tracing::warn!(%instance, script = %script.name, %outcome, "track script is failing");
                    }
                }
            }
            CheckEvent::File { index, value } => {
                let Some((file, v, problem)) = self.files.get_mut(index) else {
                    return;
                };
                match value {
                    Ok(n) => {
                        tracing::info!(%instance, path = %file.path.display(), value = n, "track file changed");
                        *v = n;
                        *problem = None;
                    }
                    Err(why) => {
                        tracing::warn!(%instance, problem = %why, "track file unusable; counting 0");
                        *v = 0;
                        *problem = Some(why);
                    }
                }
            }
            CheckEvent::Interface { name, up } => {
                self.set_interface(&name, up);
            }
            // Timing is for the metrics only.
            CheckEvent::Ran { .. } | CheckEvent::Gate { .. } => {}
            CheckEvent::Guard { outcome } => {
                let Some(counted) = &mut self.guard else {
                    return;
                };
                if let Some(now_good) = counted.record(outcome.is_success(), outcome.to_string()) {
                    if now_good {
                        tracing::info!(%instance, "guard: witness reachable");
                    } else {
                        tracing::warn!(%instance, %outcome, "guard: witness unreachable; this node may not be master");
                    }
                }
            }
        }
    }

    /// A tracked interface's link changed; false if it is not tracked.
    pub fn set_interface(&mut self, name: &str, up: bool) -> bool {
        let mut tracked = false;
        for (ifname, _, state) in &mut self.interfaces {
            if ifname == name {
                tracked = true;
                if *state != up {
                    *state = up;
                    if up {
                        tracing::info!(instance = %self.instance, interface = %name, "tracked interface is up");
                    } else {
                        tracing::warn!(instance = %self.instance, interface = %name, "tracked interface is down");
                    }
                }
            }
        }
        tracked
    }

    /// Each check that is good or failing, for the metrics: `script:NAME`,
    /// `interface:NAME` and `guard`, with `None` before a first result.
    pub fn checks(&self) -> Vec<(String, Option<bool>)> {
        let mut out: Vec<(String, Option<bool>)> = self
            .scripts
            .iter()
            .map(|(s, c)| (format!("script:{}", s.name), c.good))
            .collect();
        out.extend(
            self.interfaces
                .iter()
                .map(|(name, _, up)| (format!("interface:{name}"), Some(*up))),
        );
        if let Some(g) = &self.guard {
            out.push(("guard".to_owned(), g.good));
        }
        out
    }

    /// The names of the tracked interfaces.
    pub fn tracked_interfaces(&self) -> impl Iterator<Item = &str> {
        self.interfaces.iter().map(|(n, _, _)| n.as_str())
    }

    pub fn has_tracked_interfaces(&self) -> bool {
        !self.interfaces.is_empty()
    }

    /// The instance's own interface is down (`Some(why)`) or up.
    pub fn set_link_down(&mut self, why: Option<String>) {
        self.link_down = why;
    }

    /// The VIP worker can (`None`) or cannot (`Some(why)`) claim and announce
    /// the VIPs.
    pub fn set_claim_fault(&mut self, why: Option<String>) {
        self.claim_fault = why;
    }

    pub fn quorum_fault(&self) -> Option<String> {
        self.quorum_fault.clone()
    }

    pub fn set_quorum_fault(&mut self, why: Option<String>) {
        self.quorum_fault = why;
    }

    pub fn set_sync_fault(&mut self, why: Option<String>) {
        self.sync_fault = why;
    }

    /// The other members' own weights (see [`SyncEntry`]).
    pub fn set_sync_weights(&mut self, weights: Vec<(i32, String)>) {
        self.sync_weights = weights;
    }

    /// What this instance tells its sync group: its own fault and own weights,
    /// never what it took from the group (that would latch the group).
    pub fn sync_entry(&self) -> SyncEntry {
        SyncEntry {
            fault: self.own_fault(),
            weight: self.own_weights().iter().map(|(w, _)| *w).sum(),
        }
    }

    /// Every fault but the sync group's: what this instance tells its group.
    pub fn own_fault(&self) -> Option<String> {
        let mut faults: Vec<String> = Vec::new();
        faults.extend(self.link_down.clone());
        faults.extend(
            self.claim_fault
                .as_ref()
                .map(|why| format!("cannot claim or announce the VIPs: {why}")),
        );
        for (script, counted) in &self.scripts {
            if script.weight.is_none() && counted.good == Some(false) {
                faults.push(format!(
                    "track script {} failing ({})",
                    script.name, counted.last
                ));
            }
        }
        for (name, weight, up) in &self.interfaces {
            if weight.is_none() && !up {
                faults.push(format!("tracked interface {name} is down"));
            }
        }
        for (file, value, _) in &self.files {
            let w = i64::from(file.weight_multiplier) * value;
            if w <= -254 {
                faults.push(format!(
                    "track file {} gives {w} (-254 or less is a fault)",
                    file.path.display()
                ));
            }
        }
        if let Some(g) = &self.guard {
            match g.good {
                None => faults.push("guard: witness not checked yet".into()),
                Some(false) => faults.push(format!("guard: witness unreachable ({})", g.last)),
                Some(true) => {}
            }
        }
        faults.extend(self.quorum_fault.clone());
        (!faults.is_empty()).then(|| faults.join("; "))
    }

    /// The health to hand the election.
    pub fn health(&self) -> Health {
        let fault = match (self.own_fault(), &self.sync_fault) {
            (Some(own), Some(sync)) => Some(format!("{own}; {sync}")),
            (own, sync) => own.or_else(|| sync.clone()),
        };
        Health {
            priority_delta: self.weights().iter().map(|(w, _)| *w).sum(),
            fault,
        }
    }

    /// Each priority contribution with its reason.
    fn weights(&self) -> Vec<(i32, String)> {
        let mut out = self.own_weights();
        out.extend(self.sync_weights.iter().cloned());
        out
    }

    /// This instance's own priority contributions, without the sync group's.
    fn own_weights(&self) -> Vec<(i32, String)> {
        let mut out = Vec::new();
        for (script, counted) in &self.scripts {
            match (script.weight, counted.good) {
                (Some(w), Some(false)) if w < 0 => {
                    out.push((w, format!("track script {} failing", script.name)))
                }
                (Some(w), Some(true)) if w > 0 => {
                    out.push((w, format!("track script {} good", script.name)))
                }
                _ => {}
            }
        }
        for (name, weight, up) in &self.interfaces {
            match (weight, up) {
                (Some(w), false) if *w < 0 => {
                    out.push((*w, format!("tracked interface {name} down")))
                }
                (Some(w), true) if *w > 0 => out.push((*w, format!("tracked interface {name} up"))),
                _ => {}
            }
        }
        for (file, value, problem) in &self.files {
            let w = (i64::from(file.weight_multiplier) * value).clamp(-254, 254);
            if w != 0 {
                // Clamped to -254..=254, so the cast cannot truncate.
                out.push((
                    w as i32,
                    format!(
                        "track file {} = {value} × {}",
                        file.path.display(),
                        file.weight_multiplier
                    ),
                ));
            } else if let Some(p) = problem {
                out.push((0, format!("track file counts 0: {p}")));
            }
        }
        out
    }

    /// One line per contribution, for `vipd status`'s `priority_reasons`.
    pub fn reasons(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .weights()
            .into_iter()
            .map(|(w, why)| {
                let mut s = String::new();
                let _ = write!(s, "{w:+} {why}");
                s
            })
            .collect();
        if let Some(s) = &self.sync_fault {
            out.push(s.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, TrackInterface};
    use std::path::PathBuf;

    /// A minimal instance; also used by `carry`'s tests.
    pub(super) fn instance() -> InstanceConfig {
        let text = "[node]\nname = \"n1\"\n[[instance]]\nname = \"db\"\ninterface = \"eth0\"\ngroup = 1\npriority = 100\nvips = [\"10.0.0.1/24\"]\nauth = \"none\"\n";
        config::from_toml(text, Path::new("/x.toml"))
            .unwrap()
            .instances
            .remove(0)
    }

    fn script(name: &str, rise: u32, fall: u32, weight: Option<i32>) -> TrackScript {
        TrackScript {
            name: name.into(),
            command: vec!["/bin/true".into()],
            shell: false,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise,
            fall,
            weight,
            user: None,
        }
    }

    fn run(t: &mut Tracker, index: usize, ok: bool) {
        let outcome = if ok {
            RunOutcome::Success
        } else {
            RunOutcome::Failed("exit status: 1".into())
        };
        t.on_event(CheckEvent::Script { index, outcome });
    }

    #[test]
    fn rise_and_fall_count_in_a_row() {
        let mut cfg = instance();
        cfg.track_scripts = vec![script("pg", 2, 3, None), script("w", 1, 1, Some(-60))];
        let mut t = Tracker::new(&cfg);
        assert_eq!(t.health(), Health::default());
        run(&mut t, 0, true);
        run(&mut t, 0, false);
        run(&mut t, 0, false);
        assert_eq!(t.health().fault, None, "two failures < fall 3");
        run(&mut t, 0, true);
        run(&mut t, 0, false);
        run(&mut t, 0, false);
        assert_eq!(t.health().fault, None, "a success resets the count");
        run(&mut t, 0, false);
        assert!(t
            .health()
            .fault
            .unwrap()
            .contains("track script pg failing"));
        run(&mut t, 0, true);
        assert!(t.health().fault.is_some(), "one success < rise 2");
        run(&mut t, 0, true);
        assert_eq!(t.health().fault, None);
        run(&mut t, 1, false);
        assert_eq!(t.health().priority_delta, -60);
        assert_eq!(t.reasons(), vec!["-60 track script w failing"]);
    }

    #[test]
    fn first_result_counts_at_once_and_timeouts_fail() {
        let mut cfg = instance();
        cfg.track_scripts = vec![script("pg", 3, 3, None)];
        let mut t = Tracker::new(&cfg);
        t.on_event(CheckEvent::Script {
            index: 0,
            outcome: RunOutcome::TimedOut(Duration::from_secs(1)),
        });
        assert!(t.health().fault.unwrap().contains("timed out"));
    }

    #[test]
    fn files_interfaces_guard_and_sync() {
        let mut cfg = instance();
        cfg.track_files = vec![TrackFile {
            path: PathBuf::from("/run/w"),
            weight_multiplier: 2,
            interval: Duration::from_secs(1),
        }];
        cfg.track_interfaces = vec![
            TrackInterface {
                interface: "eth1".into(),
                weight: Some(-20),
            },
            TrackInterface {
                interface: "eth2".into(),
                weight: None,
            },
        ];
        let mut t = Tracker::new(&cfg);
        t.on_event(CheckEvent::File {
            index: 0,
            value: Ok(-30),
        });
        assert_eq!(t.health().priority_delta, -60);
        t.on_event(CheckEvent::File {
            index: 0,
            value: Err("garbage".into()),
        });
        assert_eq!(t.health().priority_delta, 0);
        t.on_event(CheckEvent::File {
            index: 0,
            value: Ok(-127),
        });
        assert!(t.health().fault.unwrap().contains("-254 or less"));
        t.on_event(CheckEvent::File {
            index: 0,
            value: Ok(0),
        });
        assert!(t.set_interface("eth1", false));
        assert!(!t.set_interface("eth9", false));
        assert_eq!(
            t.health(),
            Health {
                priority_delta: -20,
                fault: None
            }
        );
        t.set_interface("eth2", false);
        assert_eq!(
            t.own_fault().as_deref(),
            Some("tracked interface eth2 is down")
        );
        t.set_interface("eth2", true);
        t.set_sync_fault(Some("sync group g: member x is in fault".into()));
        assert_eq!(t.own_fault(), None, "the sync fault is not published back");
        assert!(t.health().fault.is_some());
    }

    #[test]
    fn guard_faults_until_the_first_success() {
        let mut cfg = instance();
        cfg.guard = Some(GuardConfig {
            witness: Witness::Gateway,
            method: GuardMethod::Icmp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            fall: 1,
            rise: 2,
            quorum: false,
            peers_total: None,
        });
        let mut t = Tracker::new(&cfg);
        assert!(t.health().fault.unwrap().contains("not checked yet"));
        t.on_event(CheckEvent::Guard {
            outcome: RunOutcome::Success,
        });
        assert_eq!(t.health().fault, None);
        t.on_event(CheckEvent::Guard {
            outcome: RunOutcome::Failed("x".into()),
        });
        assert!(t.health().fault.unwrap().contains("witness unreachable"));
    }

    #[tokio::test]
    async fn hooks_and_scripts_get_a_clean_environment() {
        let dir = std::env::temp_dir().join(format!("vipd-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("env");
        // NOTIFY_SOCKET and WATCHDOG_* reach the daemon from systemd; they must not
        // reach a script. The test's own environment stands in for the daemon's.
        let script = format!("env > {}", out.display());
        let outcome = run_command(
            &[script],
            true,
            &[],
            &[("VIPD_STATE", "master")],
            None,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(outcome, RunOutcome::Success);
        let text = std::fs::read_to_string(&out).unwrap();
        let names: Vec<&str> = text.lines().filter_map(|l| l.split('=').next()).collect();
        for name in &names {
            // The shell adds PWD (and some shells SHLVL, `_`) itself.
            assert!(
                ["PATH", "LANG", "VIPD_STATE", "PWD", "SHLVL", "_"].contains(name),
                "unexpected variable {name} in {names:?}"
            );
        }
        assert!(
            names.contains(&"PATH") && names.contains(&"LANG") && names.contains(&"VIPD_STATE")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn track_files_must_be_small_regular_files() {
        let dir = std::env::temp_dir().join(format!("vipd-trackfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, " -20\n").unwrap();
        assert_eq!(read_weight_file(&good).await, Ok(-20));

        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // No writer: a blocking open would hang here for good.
        let err = read_weight_file(&fifo).await.unwrap_err();
        assert!(err.contains("is a FIFO"), "{err}");

        let err = read_weight_file(Path::new("/dev/zero")).await.unwrap_err();
        assert!(err.contains("is a device"), "{err}");

        let err = read_weight_file(&dir).await.unwrap_err();
        assert!(err.contains("is a directory"), "{err}");

        let huge = dir.join("huge");
        std::fs::write(&huge, vec![b'1'; 1 << 20]).unwrap();
        let err = read_weight_file(&huge).await.unwrap_err();
        assert!(err.contains("1048576 bytes"), "{err}");

        let err = read_weight_file(&dir.join("missing")).await.unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn run_command_kills_the_group_at_the_timeout() {
        let dir = std::env::temp_dir().join(format!("vipd-health-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("grandchild-survived");
        let _ = std::fs::remove_file(&marker);
        let script = format!("(sleep 1; touch {}) & sleep 30", marker.display());
        let start = Instant::now();
        let outcome =
            run_command(&[script], true, &[], &[], None, Duration::from_millis(200)).await;
        assert_eq!(outcome, RunOutcome::TimedOut(Duration::from_millis(200)));
        assert!(start.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !marker.exists(),
            "the background grandchild was killed with the group"
        );
        let ok = run_command(
            &["test \"$1\" = a && test \"$X\" = y".into()],
            true,
            &["a"],
            &[("X", "y")],
            None,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(ok, RunOutcome::Success);
        let missing = run_command(
            &["/nonexistent/x".into()],
            false,
            &[],
            &[],
            None,
            Duration::from_secs(1),
        )
        .await;
        assert!(matches!(missing, RunOutcome::Failed(_)));
        let nobody = run_command(
            &["/bin/true".into()],
            false,
            &[],
            &[],
            Some("no-such-user-here"),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(
            nobody,
            RunOutcome::Failed("user \"no-such-user-here\" does not exist".into())
        );
        if nix::unistd::geteuid().is_root() {
            // As another user: that user's ids and environment, nothing of root's.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
            let out = dir.join("whoami");
            let script = format!(
                "echo \"$(id -u) $(id -g) $USER $HOME $(pwd)\" > {}",
                out.display()
            );
            let outcome = run_command(
                &[script],
                true,
                &[],
                &[],
                Some("nobody"),
                Duration::from_secs(5),
            )
            .await;
            assert_eq!(outcome, RunOutcome::Success);
            let user = nix::unistd::User::from_name("nobody").unwrap().unwrap();
            assert_eq!(
                std::fs::read_to_string(&out).unwrap().trim(),
                format!("{} {} nobody {} /", user.uid, user.gid, user.dir.display())
            );
        } else {
            eprintln!("skipping the run as another user: needs root");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
