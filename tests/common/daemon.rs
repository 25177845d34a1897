//! Daemons in lab namespaces: the generated configuration ([`NodeSpec`] with its
//! [`InstanceSpec`]s) and [`Daemon`], one `vipd run` (or keepalived, for the
//! bench) process with its directory, log and control socket. Drop SIGKILLs it
//! and removes the directory; a failing test prints every log first. It writes
//! under `/tmp/<namespace>` only.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{run_output, strip_prefix_len, vipd_bin, Host, KEY};

/// How an instance authenticates adverts.
#[derive(Clone, Debug)]
pub(crate) enum AuthSpec {
    /// `auth_key_file` pointing at a 0600 file holding this key.
    Key(String),
    /// `auth = "none"`.
    None,
}

/// One `[[instance]]` of a generated configuration.
#[derive(Clone, Debug)]
pub(crate) struct InstanceSpec {
    pub(crate) name: String,
    pub(crate) interface: String,
    pub(crate) group: u8,
    pub(crate) priority: u8,
    pub(crate) advert_interval: String,
    pub(crate) preempt: Option<bool>,
    pub(crate) vips: Vec<String>,
    pub(crate) auth: AuthSpec,
    pub(crate) peers: Vec<String>,
    /// Further `key = value` lines, written as they are.
    pub(crate) extra: Vec<String>,
    /// `election` (`etcd`, `patroni`); with one, no advert interval and no
    /// advert authentication are written: the store elects.
    pub(crate) election: Option<String>,
    /// `lease_ttl` (`2s`).
    pub(crate) lease_ttl: Option<String>,
    /// `store_unreachable` (`fail-closed`, `fail-open`).
    pub(crate) store_unreachable: Option<String>,
    /// `[instance.patroni]`: the scope, member and DCS (`etcd`, `etcd3`) to follow.
    pub(crate) patroni: Option<PatroniFollow>,
}

/// What an instance with `election = "patroni"` follows.
#[derive(Clone, Debug)]
pub(crate) struct PatroniFollow {
    pub(crate) scope: String,
    pub(crate) member: String,
    pub(crate) dcs: String,
}

impl InstanceSpec {
    /// Instance `db` on `eth0`, group 51, this priority, 100 ms adverts, the shared
    /// [`KEY`], no VIPs yet.
    pub(crate) fn new(priority: u8) -> Self {
        Self {
            name: "db".into(),
            interface: "eth0".into(),
            group: 51,
            priority,
            advert_interval: "100ms".into(),
            preempt: None,
            vips: Vec::new(),
            auth: AuthSpec::Key(KEY.into()),
            peers: Vec::new(),
            extra: Vec::new(),
            election: None,
            lease_ttl: None,
            store_unreachable: None,
            patroni: None,
        }
    }

    /// Instance `db` on `eth0` held by a lease in etcd (`election = "etcd"`,
    /// group 1, `lease_ttl`, `store_unreachable`), this priority, no VIPs yet.
    /// The node needs [`NodeSpec::etcd`].
    pub(crate) fn etcd(priority: u8, lease_ttl: &str, store_unreachable: &str) -> Self {
        let mut s = Self::new(priority);
        s.group = 1;
        s.election = Some("etcd".into());
        s.lease_ttl = Some(lease_ttl.into());
        s.store_unreachable = Some(store_unreachable.into());
        s
    }

    /// Instance `db` on `eth0` following Patroni's leader key (`election =
    /// "patroni"`, group 1): it holds the VIP while `member` leads `scope`,
    /// read through `dcs` (`etcd` for v2, `etcd3`). The node needs
    /// [`NodeSpec::etcd`].
    pub(crate) fn patroni(priority: u8, scope: &str, member: &str, dcs: &str) -> Self {
        let mut s = Self::new(priority);
        s.group = 1;
        s.election = Some("patroni".into());
        s.patroni = Some(PatroniFollow {
            scope: scope.into(),
            member: member.into(),
            dcs: dcs.into(),
        });
        s
    }

    pub(crate) fn store_unreachable(mut self, mode: &str) -> Self {
        self.store_unreachable = Some(mode.into());
        self
    }

    pub(crate) fn vip(mut self, vip: impl Into<String>) -> Self {
        self.vips.push(vip.into());
        self
    }

    pub(crate) fn advert(mut self, interval: &str) -> Self {
        self.advert_interval = interval.into();
        self
    }

    pub(crate) fn preempt(mut self, preempt: bool) -> Self {
        self.preempt = Some(preempt);
        self
    }

    pub(crate) fn key(mut self, key: &str) -> Self {
        self.auth = AuthSpec::Key(key.into());
        self
    }

    pub(crate) fn auth_none(mut self) -> Self {
        self.auth = AuthSpec::None;
        self
    }

    pub(crate) fn peers(mut self, peers: &[&str]) -> Self {
        self.peers = peers
            .iter()
            .map(|p| strip_prefix_len(p).to_owned())
            .collect();
        self
    }

    pub(crate) fn extra(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }
}

/// A node's generated configuration.
#[derive(Clone, Debug)]
pub(crate) struct NodeSpec {
    pub(crate) name: String,
    pub(crate) instances: Vec<InstanceSpec>,
    /// Further `[node]` lines, written as they are.
    pub(crate) extra: Vec<String>,
    /// `[node.etcd]`: the store's client endpoints (`http://IP:2379`) and,
    /// if not the default, its key prefix.
    pub(crate) etcd: Option<(Vec<String>, Option<String>)>,
}

impl NodeSpec {
    pub(crate) fn new(name: &str, instance: InstanceSpec) -> Self {
        Self {
            name: name.into(),
            instances: vec![instance],
            extra: Vec::new(),
            etcd: None,
        }
    }

    /// Gives the node a `[node.etcd]` table with these client endpoints.
    pub(crate) fn etcd(mut self, endpoints: &[String]) -> Self {
        self.etcd = Some((endpoints.to_vec(), None));
        self
    }

    /// The TOML text, with key files and sockets under `dir`; writes key files.
    fn render(&self, dir: &Path) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "[node]");
        let _ = writeln!(t, "name = {:?}", self.name);
        let _ = writeln!(t, "control_socket = {:?}", dir.join("vipd.sock"));
        let _ = writeln!(t, "state_dir = {:?}", dir.join("state"));
        for line in &self.extra {
            let _ = writeln!(t, "{line}");
        }
        if let Some((endpoints, prefix)) = &self.etcd {
            let _ = writeln!(t, "\n[node.etcd]");
            let _ = writeln!(t, "endpoints = {endpoints:?}");
            if let Some(prefix) = prefix {
                let _ = writeln!(t, "prefix = {prefix:?}");
            }
        }
        for inst in &self.instances {
            let _ = writeln!(t, "\n[[instance]]");
            let _ = writeln!(t, "name = {:?}", inst.name);
            let _ = writeln!(t, "interface = {:?}", inst.interface);
            let _ = writeln!(t, "group = {}", inst.group);
            let _ = writeln!(t, "priority = {}", inst.priority);
            if inst.election.is_none() {
                let _ = writeln!(t, "advert_interval = {:?}", inst.advert_interval);
            }
            if let Some(p) = inst.preempt {
                let _ = writeln!(t, "preempt = {p}");
            }
            let _ = writeln!(t, "vips = {:?}", inst.vips);
            if let Some(election) = &inst.election {
                let _ = writeln!(t, "election = {election:?}");
            }
            if let Some(ttl) = &inst.lease_ttl {
                let _ = writeln!(t, "lease_ttl = {ttl:?}");
            }
            if let Some(mode) = &inst.store_unreachable {
                let _ = writeln!(t, "store_unreachable = {mode:?}");
            }
            match &inst.auth {
                _ if inst.election.is_some() => {}
                AuthSpec::Key(key) => {
                    let path = dir.join(format!("{}.key", inst.name));
                    fs::write(&path, format!("{key}\n")).expect("write key file");
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                        .expect("chmod key file");
                    let _ = writeln!(t, "auth_key_file = {path:?}");
                }
                AuthSpec::None => {
                    let _ = writeln!(t, "auth = \"none\"");
                }
            }
            if !inst.peers.is_empty() {
                let _ = writeln!(t, "peers = {:?}", inst.peers);
            }
            for line in &inst.extra {
                let _ = writeln!(t, "{line}");
            }
            // Last: a table takes every key after it.
            if let Some(p) = &inst.patroni {
                let _ = writeln!(t, "[instance.patroni]");
                let _ = writeln!(t, "scope = {:?}", p.scope);
                let _ = writeln!(t, "member = {:?}", p.member);
                let _ = writeln!(t, "dcs = {:?}", p.dcs);
            }
        }
        t
    }
}

thread_local! {
    /// Log files of the daemons the current test (thread) runs, for
    /// [`wait_until`]'s failure message; and whether they were printed already.
    static LOGS: RefCell<(Vec<(String, PathBuf)>, bool)> = const { RefCell::new((Vec::new(), false)) };
}

/// The logs of every daemon this test runs, labelled, for failure messages.
pub(crate) fn all_logs() -> String {
    LOGS.with(|l| {
        let mut s = String::new();
        for (label, path) in &l.borrow().0 {
            let text = fs::read_to_string(path).unwrap_or_default();
            let _ = write!(
                s,
                "\n===== log of {label} ({}) =====\n{text}",
                path.display()
            );
        }
        s
    })
}

/// [`all_logs`], for a panic message: the daemons' guards then do not print the
/// same logs again while they unwind.
pub(crate) fn logs_for_panic() -> String {
    let logs = all_logs();
    LOGS.with(|l| l.borrow_mut().1 = true);
    logs
}

/// A `vipd run` process inside a namespace, with a generated configuration in a
/// temporary directory. Drop SIGKILLs it and removes the directory; if the test is
/// panicking, the log is printed first.
pub(crate) struct Daemon {
    /// The node's name (`n1`, ...).
    pub(crate) name: String,
    /// The name and the host's role, for messages: `n1 [n1]`.
    pub(crate) label: String,
    pub(crate) netns: String,
    pub(crate) dir: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) socket: PathBuf,
    pub(crate) log_path: PathBuf,
    program: Program,
    /// The vipd binary to run instead of this build's ([`Daemon::use_binary`]).
    binary: Option<PathBuf>,
    /// Extra environment for the process ([`Daemon::set_env`]).
    env: Vec<(String, String)>,
    /// The open-files limit, soft and hard, to start with ([`Daemon::set_nofile`]).
    nofile: Option<u64>,
    child: Option<Child>,
}

/// What a [`Daemon`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Program {
    /// `vipd run --config vipd.toml`.
    Vipd,
    /// keepalived (the `KEEPALIVED` environment variable, else `keepalived` on
    /// PATH) in the foreground, VRRP only, with `keepalived.conf`: for the bench.
    Keepalived,
}

/// The keepalived binary the bench compares against.
pub(crate) fn keepalived_bin() -> String {
    std::env::var("KEEPALIVED").unwrap_or_else(|_| "keepalived".into())
}

impl Daemon {
    /// Writes `spec`'s configuration and starts `vipd run` on `host`.
    pub(crate) fn start(host: &Host, spec: NodeSpec) -> Self {
        let mut daemon = Self::configure(host, spec);
        daemon.spawn();
        daemon
    }

    /// Writes `spec`'s configuration for `vipd run` on `host` without starting
    /// it: [`Daemon::restart`] starts it.
    pub(crate) fn configure(host: &Host, spec: NodeSpec) -> Self {
        let dir = Self::make_dir(host);
        let config = dir.join("vipd.toml");
        fs::write(&config, spec.render(&dir)).expect("write config");
        Self::new(host, &spec.name, Program::Vipd, dir, config)
    }

    /// Writes a keepalived configuration (`text`) for node `name` on `host`
    /// without starting it: [`Daemon::restart`] starts it.
    pub(crate) fn configure_keepalived(host: &Host, name: &str, text: &str) -> Self {
        let dir = Self::make_dir(host);
        let config = dir.join("keepalived.conf");
        fs::write(&config, text).expect("write config");
        Self::new(host, name, Program::Keepalived, dir, config)
    }

    /// `/tmp/<namespace>`, empty but for `state/`, mode 0700.
    fn make_dir(host: &Host) -> PathBuf {
        let dir = PathBuf::from(format!("/tmp/{}", host.ns.name));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("state")).expect("create daemon dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod daemon dir");
        dir
    }

    fn new(host: &Host, name: &str, program: Program, dir: PathBuf, config: PathBuf) -> Self {
        let label = format!("{name} [{}]", host.role);
        let log_path = dir.join(match program {
            Program::Vipd => "vipd.log",
            Program::Keepalived => "keepalived.log",
        });
        LOGS.with(|l| l.borrow_mut().0.push((label.clone(), log_path.clone())));
        Self {
            name: name.to_owned(),
            label,
            netns: host.ns.name.clone(),
            socket: dir.join("vipd.sock"),
            dir,
            config,
            log_path,
            program,
            binary: None,
            env: Vec::new(),
            nofile: None,
            child: None,
        }
    }

    /// Runs `path` (e.g. the packaged `/usr/sbin/vipd`) instead of this build's
    /// binary from the next start on; the control CLI stays this build's.
    pub(crate) fn use_binary(&mut self, path: Option<PathBuf>) {
        self.binary = path;
    }

    /// Sets (or with `None` removes) an environment variable for the next start.
    pub(crate) fn set_env(&mut self, name: &str, value: Option<&str>) {
        self.env.retain(|(n, _)| n != name);
        if let Some(value) = value {
            self.env.push((name.to_owned(), value.to_owned()));
        }
    }

    /// Starts the process with `RLIMIT_NOFILE` soft and hard at `limit`
    /// (`prlimit --nofile=N:N`), or, with `None`, with the test's own limit,
    /// from the next start on.
    pub(crate) fn set_nofile(&mut self, limit: Option<u64>) {
        self.nofile = limit;
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open log");
        let config = self.config.to_str().expect("UTF-8 path").to_owned();
        let filter = std::env::var("VIPD_TEST_LOG").unwrap_or_else(|_| "info".into());
        // `ip netns exec` (and `prlimit`) exec the command in place, so the
        // child's pid is the daemon's.
        let mut command = match self.nofile {
            Some(limit) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={limit}:{limit}")).arg("ip");
                c
            }
            None => Command::new("ip"),
        };
        command.args(["netns", "exec", &self.netns]);
        match self.program {
            Program::Vipd => {
                let _ = writeln!(&log, "----- test: starting vipd run -----");
                let binary = self
                    .binary
                    .as_ref()
                    .map_or_else(|| vipd_bin().to_owned(), |b| b.display().to_string());
                command.args([binary.as_str(), "run", "--config", &config]);
            }
            Program::Keepalived => {
                let _ = writeln!(&log, "----- test: starting keepalived -----");
                let pid_file = self.dir.join("keepalived.pid").display().to_string();
                let vrrp_pid_file = self.dir.join("vrrp.pid").display().to_string();
                // keepalived refuses to start while its pid files name a live
                // process (after a SIGKILL the pid may have been reused).
                let _ = fs::remove_file(&pid_file);
                let _ = fs::remove_file(&vrrp_pid_file);
                command.arg(keepalived_bin()).args([
                    "--dont-fork",
                    "--log-console",
                    "--log-detail",
                    "--vrrp",
                    "--use-file",
                    &config,
                    "--pid",
                    &pid_file,
                    "--vrrp_pid",
                    &vrrp_pid_file,
                ]);
            }
        }
        command.envs(self.env.iter().map(|(n, v)| (n, v)));
        let child = command
            .env("RUST_LOG", &filter)
            .env("VIPD_LOG", &filter)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: cannot start: {e}", self.label));
        self.child = Some(child);
    }

    /// The process id, while running.
    pub(crate) fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Whether the process is still running (not exited, not killed).
    pub(crate) fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILLs the process and reaps it; its VIPs stay where they are.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILLs every process in the daemon's namespace (what it started too:
    /// keepalived's VRRP child, hook scripts), as a crash of the machine would,
    /// then reaps the daemon. See [`super::Netns::kill_all`].
    pub(crate) fn crash(&mut self) {
        super::Netns::kill_all_in(&self.netns);
        self.kill9();
    }

    /// Pids of every process in the daemon's namespace (keepalived: parent and
    /// VRRP child).
    pub(crate) fn namespace_pids(&self) -> Vec<i32> {
        super::Netns::pids_in(&self.netns)
    }

    /// The last `lines` lines of the log, for error messages.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends SIGTERM and waits (up to `timeout`) for the exit, returning its status.
    /// Panics, with the log, if the process does not exit in time.
    pub(crate) fn sigterm_within(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("daemon is running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("send SIGTERM");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait for vipd") {
                return status;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{}: did not exit within {timeout:?} of SIGTERM{}",
                    self.label,
                    all_logs()
                );
            }
            super::check_interrupted();
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// [`Daemon::sigterm_within`] 10 s.
    pub(crate) fn sigterm(&mut self) -> ExitStatus {
        self.sigterm_within(Duration::from_secs(10))
    }

    /// Starts the daemon (again) with the same configuration, SIGKILLing it first
    /// if it still runs; also the first start after [`Daemon::configure`].
    pub(crate) fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The log so far (stdout and stderr of every run).
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs `vipd ARGS --socket SOCKET` (from the root namespace: the socket is a
    /// file) and returns its output whatever the exit status.
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        let socket = self.socket.to_str().expect("UTF-8 path");
        let mut full: Vec<&str> = args.to_vec();
        full.extend_from_slice(&["--socket", socket]);
        run_output(vipd_bin(), &full)
    }

    /// Writes `spec`'s configuration over this daemon's configuration file (for
    /// a reload); returns the text written.
    pub(crate) fn rewrite_config(&self, spec: &NodeSpec) -> String {
        let text = spec.render(&self.dir);
        fs::write(&self.config, &text).expect("write config");
        text
    }

    /// `vipd status --json` whatever its exit code (which reports conditions
    /// such as a fault): the exit code and the first instance; `None` while
    /// the daemon prints no JSON (not answering yet).
    pub(crate) fn first_instance_status(&self) -> Option<(Option<i32>, serde_json::Value)> {
        let out = self.cli(&["status", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some((out.status.code(), json["instances"][0].clone()))
    }

    /// `vipd status --json`, parsed; `None` if the CLI fails or prints no JSON.
    pub(crate) fn status_json(&self) -> Option<serde_json::Value> {
        let out = self.cli(&["status", "--json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            let printed = LOGS.with(|l| l.borrow().1);
            if !printed {
                eprintln!(
                    "===== log of {} ({}) =====\n{}",
                    self.label,
                    self.log_path.display(),
                    self.log()
                );
            }
        }
        LOGS.with(|l| l.borrow_mut().0.retain(|(_, p)| p != &self.log_path));
        if std::env::var_os("VIPD_TEST_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
