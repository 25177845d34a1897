//! systemd as PID 1 of its own namespaces, running the shipped unit
//! `systemd/vipd.service` unchanged with the built binary: [`SystemdNode`], booted
//! with its `eth0` on a [`Lab`]'s bridge; and what the systemd tests watch from
//! outside: [`AddrWatch`] (a node's address changes as netlink reports them) and
//! [`NaWatch`] (the neighbour advertisements on a host's link). Times are
//! CLOCK_MONOTONIC microseconds ([`monotonic_us`]), the clock systemd's
//! `*TimestampMonotonic` properties and the journal's `__MONOTONIC_TIMESTAMP` use,
//! so the three can be set side by side.
//!
//! How a node boots: a shell moves itself into a fresh cgroup of the host's
//! cgroup2 hierarchy, then `unshare --cgroup --fork --pid --mount --net --uts`
//! runs [`BOOT_SCRIPT`], which makes `/` rprivate; mounts fresh tmpfs on /run,
//! /tmp, /var/tmp and /var/lib (the unit's StateDirectory lands there, not on the
//! host); lays overlays with a tmpfs upper layer over /usr/sbin and /etc, so that
//! the binary sits at `/usr/sbin/vipd` and the configuration at
//! `/etc/vipd/vipd.toml`, where the unit expects them, while the host's files stay
//! untouched; mounts proc and cgroup2 (rooted at that cgroup, so two systemds never
//! manage the same tree); and execs systemd with `SYSTEMD_UNIT_PATH` pointing at
//! the staged units. Only those exist (empty targets, journald, vipd), so nothing
//! of a real boot (udev, sysctl, tmpfiles, modules) runs against the host. The
//! network namespace is named with `ip netns attach`, which makes it a [`Netns`]
//! like the lab's hosts.
//!
//! It touches the host only through the cgroup directory and a staging directory
//! under /tmp (both removed on drop) and the lab's namespaces. Drop SIGKILLs
//! systemd (its pid namespace dies with it) and, if the test is failing, prints
//! the unit's journal first. A run that was itself SIGKILLed leaves namespaces
//! (swept by [`Lab::new`]) and cgroups (swept by the next boot).

use std::fs;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::libc;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{
    check_interrupted, new_socket, output_text, packet_socket, plug_veth, run, run_output,
    spawn_when_ready, strip_prefix_len, vipd_bin, AuthSpec, Host, Lab, Netns, NodeSpec,
    NETNS_PREFIX,
};

/// The unit as the package ships it.
pub(crate) const SHIPPED_UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/vipd.service");

/// Where the staged units live inside a node (`SYSTEMD_UNIT_PATH`).
const UNIT_DIR: &str = "/run/vipd-test/units";

/// The script `unshare` runs as PID 1 of the new namespaces before it becomes
/// systemd: `$1` is the staging directory, `$2` the vipd binary.
const BOOT_SCRIPT: &str = r#"set -e
staging=$1
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
o=/run/vipd-test/overlay
mkdir -p $o/sbin $o/sbin.work $o/etc $o/etc.work /run/systemd/journald.conf.d
mount -t overlay overlay -o lowerdir=/usr/sbin,upperdir=$o/sbin,workdir=$o/sbin.work /usr/sbin
mount -t overlay overlay -o lowerdir=/etc,upperdir=$o/etc,workdir=$o/etc.work /etc
cp "$2" /usr/sbin/vipd
rm -rf /etc/vipd
mkdir -m 0755 /etc/vipd
cp -a "$staging/etc-vipd/." /etc/vipd/
cp -a "$staging/units" /run/vipd-test/units
# The journal stays in this namespace's /run, never the host's /var/log/journal.
printf '[Journal]\nStorage=volatile\n' > /run/systemd/journald.conf.d/vipd-test.conf
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
mount -t tmpfs -o mode=0755 tmpfs /var/lib
mount -t proc proc /proc
mount -t cgroup2 cgroup2 /sys/fs/cgroup
exec env -i container=other SYSTEMD_UNIT_PATH=/run/vipd-test/units \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit=vipd-test.target
"#;

/// Targets the unit and systemd refer to, staged empty: a real boot's
/// dependencies (udev, sysctl, tmpfiles, mounts) would act on the host.
const EMPTY_TARGETS: &[&str] = &[
    "basic",
    "local-fs",
    "local-fs-pre",
    "multi-user",
    "network",
    "network-online",
    "network-pre",
    "paths",
    "shutdown",
    "slices",
    "sockets",
    "swap",
    "timers",
    "umount",
];

/// journald's units, linked from the host's systemd: vipd logs to the journal
/// (`JOURNAL_STREAM`), as it does on a real host.
const JOURNALD_UNITS: &[&str] = &[
    "systemd-journald.service",
    "systemd-journald.socket",
    "systemd-journald-dev-log.socket",
];

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// How a node's vipd is set up: its configuration, an optional drop-in for the
/// unit (`vipd.service.d/test.conf`, e.g. a shorter `WatchdogSec`) and further
/// files in `/etc/vipd` (hook scripts).
#[derive(Clone, Debug)]
pub(crate) struct UnitSetup {
    pub(crate) config: NodeSpec,
    pub(crate) dropin: Option<String>,
    /// (file name in /etc/vipd, contents, mode).
    pub(crate) files: Vec<(String, String, u32)>,
}

impl UnitSetup {
    pub(crate) fn new(config: NodeSpec) -> Self {
        Self {
            config,
            dropin: None,
            files: Vec::new(),
        }
    }

    pub(crate) fn dropin(mut self, text: &str) -> Self {
        self.dropin = Some(text.to_owned());
        self
    }

    /// A file `/etc/vipd/NAME` with these contents and mode.
    pub(crate) fn file(mut self, name: &str, contents: &str, mode: u32) -> Self {
        self.files
            .push((name.to_owned(), contents.to_owned(), mode));
        self
    }

    /// An executable `/bin/sh` script `/etc/vipd/NAME`.
    pub(crate) fn script(mut self, name: &str, body: &str) -> Self {
        self.files
            .push((name.to_owned(), format!("#!/bin/sh\n{body}\n"), 0o755));
        self
    }
}

/// A systemd as PID 1 of its own pid, mount, net, uts and cgroup namespaces,
/// with `vipd.service` installed (not started) and `eth0` on a lab's bridge.
pub(crate) struct SystemdNode {
    /// `sd1`, `sd2`, ...
    pub(crate) role: String,
    /// systemd's pid as the host sees it.
    pub(crate) pid: i32,
    unshare: Option<Child>,
    cgroup: Option<PathBuf>,
    staging: PathBuf,
    console: PathBuf,
    host: Option<Host>,
}

impl SystemdNode {
    /// Boots node `index` (1-based: role `sdN`, address `.N` / `::N` of the lab's
    /// networks) and returns once systemd runs.
    pub(crate) fn boot(lab: &Lab, index: usize, setup: &UnitSetup) -> Self {
        let mut node = Self::spawn(lab, index, setup);
        node.wait_booted();
        node
    }

    /// Boots nodes `1..` of `setups` side by side.
    pub(crate) fn boot_all(lab: &Lab, setups: &[UnitSetup]) -> Vec<Self> {
        let mut nodes: Vec<Self> = setups
            .iter()
            .enumerate()
            .map(|(i, setup)| Self::spawn(lab, i + 1, setup))
            .collect();
        for node in &mut nodes {
            node.wait_booted();
        }
        nodes
    }

    /// Stages the files, starts `unshare`, and puts the new network namespace
    /// on the lab's bridge; systemd may still be booting.
    fn spawn(lab: &Lab, index: usize, setup: &UnitSetup) -> Self {
        let role = format!("sd{index}");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{NETNS_PREFIX}-{}-{}-{n}-{role}",
            lab.tag,
            std::process::id()
        );
        let cgroup_root = host_cgroup2_root();
        SWEEP.call_once(|| sweep_stale_cgroups(&cgroup_root));

        let staging = PathBuf::from(format!("/tmp/{name}"));
        let _ = fs::remove_dir_all(&staging);
        stage(&staging, setup);
        let console = staging.join("console.log");
        let cgroup = cgroup_root.join(&name);
        fs::create_dir(&cgroup)
            .unwrap_or_else(|e| panic!("create cgroup {}: {e}", cgroup.display()));

        let log = fs::File::create(&console).expect("create console log");
        // The shell joins the fresh cgroup first, so that `unshare --cgroup`
        // makes it the namespace's root; --kill-child takes systemd down if
        // unshare dies.
        let child = Command::new("/bin/sh")
            .args([
                "-c",
                "echo $$ > \"$1/cgroup.procs\" && exec unshare --cgroup --fork --pid --mount \
                 --net --uts --kill-child /bin/sh -c \"$4\" boot \"$2\" \"$3\"",
                "outer",
                cgroup.to_str().expect("UTF-8 path"),
                staging.to_str().expect("UTF-8 path"),
                vipd_bin(),
                BOOT_SCRIPT,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup console log"))
            .stderr(log)
            .spawn()
            .expect("start unshare");
        let unshare_pid = child.id() as i32;
        let mut node = Self {
            role: role.clone(),
            pid: 0,
            unshare: Some(child),
            cgroup: Some(cgroup),
            staging,
            console,
            host: None,
        };
        node.pid = node.find_pid_one(unshare_pid);
        run("ip", &["netns", "attach", &name, &node.pid.to_string()]);
        let ns = Netns { name };
        node.host = Some(join_lab(lab, ns, &role, &format!("s{index}"), index as u32));
        node
    }

    /// The pid (host view) of unshare's child, PID 1 of the new namespaces.
    fn find_pid_one(&mut self, unshare_pid: i32) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(pid) = children_of(unshare_pid).first() {
                return *pid;
            }
            let exited = self
                .unshare
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || start.elapsed() > Duration::from_secs(10) {
                panic!(
                    "{}: unshare started no PID 1 ({exited:?}):\n{}",
                    self.role,
                    self.console_log()
                );
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until `systemctl is-system-running` says running (or degraded).
    fn wait_booted(&mut self) {
        let start = Instant::now();
        loop {
            let out = self.systemctl(&["is-system-running"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if state == "running" || state == "degraded" {
                eprintln!(
                    "[{}] systemd (pid {}) {state} after {} ms",
                    self.role,
                    self.pid,
                    start.elapsed().as_millis()
                );
                return;
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!(
                    "{}: systemd not running after 30 s (last: {state:?} {}):\n{}",
                    self.role,
                    output_text(&out),
                    self.console_log()
                );
            }
            check_interrupted();
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The node's network namespace, `eth0` on the bridge.
    pub(crate) fn host(&self) -> &Host {
        self.host.as_ref().expect("the node is on the lab")
    }

    /// `nsenter -t PID -a PROGRAM ARGS`: a command inside every namespace of the
    /// node, whatever its outcome.
    pub(crate) fn nsenter(&self, program: &str, args: &[&str]) -> Output {
        let pid = self.pid.to_string();
        let mut full = vec!["-t", &pid, "-a", program];
        full.extend_from_slice(args);
        run_output("nsenter", &full)
    }

    /// `systemctl ARGS` inside the node, whatever its outcome.
    pub(crate) fn systemctl(&self, args: &[&str]) -> Output {
        self.nsenter("systemctl", args)
    }

    /// `PROGRAM ARGS` inside the node; panics, with the journal, unless it
    /// succeeds. Returns its stdout.
    pub(crate) fn nsenter_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.nsenter(program, args);
        assert!(
            out.status.success(),
            "{}: {program} {} failed ({}): {}\n{}",
            self.role,
            args.join(" "),
            out.status,
            output_text(&out),
            self.journal()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl ARGS` inside the node; panics, with the journal, unless it
    /// succeeds. Returns its stdout.
    pub(crate) fn systemctl_ok(&self, args: &[&str]) -> String {
        self.nsenter_ok("systemctl", args)
    }

    /// `systemctl show -P PROPERTY vipd.service`.
    pub(crate) fn property(&self, property: &str) -> String {
        self.systemctl_ok(&["show", "-P", property, "vipd.service"])
            .trim()
            .to_owned()
    }

    /// `systemctl start vipd`, which returns once vipd said READY=1; returns
    /// how long that took.
    pub(crate) fn start_vipd(&self) -> Duration {
        let start = Instant::now();
        self.systemctl_ok(&["start", "vipd.service"]);
        start.elapsed()
    }

    /// The journal of `vipd.service` (vipd's lines and systemd's about it).
    pub(crate) fn journal(&self) -> String {
        let out = self.nsenter(
            "journalctl",
            &["--no-pager", "-o", "short-precise", "-u", "vipd.service"],
        );
        format!(
            "===== journal of vipd.service on {} =====\n{}",
            self.role,
            output_text(&out)
        )
    }

    /// The journal's lines logged under the syslog identifier `tag`, from any
    /// unit. A short-lived `logger` run by a hook may exit before journald
    /// reads its cgroup, so its line is not always attributed to the unit;
    /// the identifier it sends always is.
    pub(crate) fn journal_tagged(&self, tag: &str) -> String {
        let out = self.nsenter(
            "journalctl",
            &["--no-pager", "-o", "short-precise", "-t", tag],
        );
        output_text(&out)
    }

    /// The journal of `vipd.service`, one JSON object per entry with every field.
    pub(crate) fn journal_json(&self) -> Vec<serde_json::Value> {
        let out = self.nsenter(
            "journalctl",
            &["--no-pager", "-o", "json", "-u", "vipd.service"],
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The journal of `vipd.service` as (CLOCK_MONOTONIC µs, message) pairs.
    pub(crate) fn journal_entries(&self) -> Vec<(u64, String)> {
        self.journal_json()
            .into_iter()
            .filter_map(|entry| {
                let at = entry["__MONOTONIC_TIMESTAMP"].as_str()?.parse().ok()?;
                let message = entry["MESSAGE"].as_str()?.to_owned();
                Some((at, message))
            })
            .collect()
    }

    /// When the journal first logged a message containing `needle` at or after
    /// `after` (CLOCK_MONOTONIC µs).
    pub(crate) fn journal_time(&self, needle: &str, after: u64) -> Option<u64> {
        self.journal_entries()
            .into_iter()
            .find(|(at, message)| *at >= after && message.contains(needle))
            .map(|(at, _)| at)
    }

    /// The path of `path` (absolute, inside the node) as the host reaches it.
    pub(crate) fn inside(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.pid))
    }

    /// The node's host dies: every process in its network namespace (systemd
    /// with everything under it, and whatever a test started there with `ip
    /// netns exec`) is stopped, `eth0` goes down, then they are all SIGKILLed.
    /// Stopped first so that nothing sends a last packet or sees another die
    /// and reacts. Returns when the link went down (CLOCK_MONOTONIC µs).
    /// Nothing of the node answers afterwards: not even `systemctl`.
    pub(crate) fn crash_host(&self) -> u64 {
        let name = &self.host().ns.name;
        let frozen = Netns::pids_in(name);
        for &pid in &frozen {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
        }
        let link_down = monotonic_us();
        self.host().link(false);
        // SIGKILL to PID 1 of the pid namespace takes the rest of it along; a
        // process forked between the listing and the stop is caught by the
        // next round.
        let start = Instant::now();
        loop {
            let left = Netns::pids_in(name);
            if left.is_empty() {
                break;
            }
            for &pid in &left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{}: processes survive SIGKILL in {name}: {left:?}",
                self.role
            );
            thread::sleep(Duration::from_millis(5));
        }
        link_down
    }

    /// systemd's own output (the console), for failure messages.
    fn console_log(&self) -> String {
        fs::read_to_string(&self.console).unwrap_or_default()
    }
}

impl Drop for SystemdNode {
    fn drop(&mut self) {
        if thread::panicking() && self.pid > 0 {
            eprintln!("{}", self.journal());
            let status = self.systemctl(&["status", "--no-pager", "vipd.service"]);
            eprintln!("{}", output_text(&status));
        }
        if let Some(mut unshare) = self.unshare.take() {
            // While unshare runs, its child (systemd) has not been reaped, so the
            // pid is still systemd's.
            if self.pid > 0 && matches!(unshare.try_wait(), Ok(None)) {
                let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            }
            let start = Instant::now();
            while matches!(unshare.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(5)
            {
                thread::sleep(Duration::from_millis(5));
            }
            let _ = unshare.kill();
            let _ = unshare.wait();
        }
        if let Some(cgroup) = self.cgroup.take() {
            if let Err(e) = remove_cgroup(&cgroup) {
                eprintln!("warning: {}: {e}", cgroup.display());
            }
        }
        let _ = fs::remove_dir_all(&self.staging);
        // `host` drops after this: its Netns kills anything left in the
        // namespace and deletes its name; the veth goes with the namespace.
    }
}

/// Writes the units, the drop-in and the configuration a node boots with.
fn stage(staging: &Path, setup: &UnitSetup) {
    let units = staging.join("units");
    let etc = staging.join("etc-vipd");
    fs::create_dir_all(&units).expect("create staging dir");
    fs::create_dir_all(&etc).expect("create staging dir");
    let unit = fs::read_to_string(SHIPPED_UNIT).expect("read systemd/vipd.service");
    fs::write(units.join("vipd.service"), unit).expect("stage unit");
    if let Some(dropin) = &setup.dropin {
        let dir = units.join("vipd.service.d");
        fs::create_dir_all(&dir).expect("create drop-in dir");
        fs::write(dir.join("test.conf"), dropin).expect("stage drop-in");
    }
    for target in EMPTY_TARGETS {
        fs::write(
            units.join(format!("{target}.target")),
            format!("[Unit]\nDescription={target}.target (empty: vipd test)\n"),
        )
        .expect("stage target");
    }
    // sysinit.target brings up the journal, as on a real boot.
    fs::write(
        units.join("sysinit.target"),
        "[Unit]\nDescription=sysinit.target (journald only: vipd test)\n\
         Wants=systemd-journald.socket systemd-journald-dev-log.socket systemd-journald.service\n",
    )
    .expect("stage target");
    fs::write(
        units.join("vipd-test.target"),
        "[Unit]\nDescription=vipd test boot\nWants=sysinit.target\nAfter=sysinit.target\n",
    )
    .expect("stage target");
    for unit in JOURNALD_UNITS {
        let from = Path::new("/lib/systemd/system").join(unit);
        std::os::unix::fs::symlink(&from, units.join(unit)).expect("link journald unit");
    }
    fs::write(etc.join("vipd.toml"), render(&setup.config, &etc)).expect("stage config");
    for (name, text, mode) in &setup.files {
        let path = etc.join(name);
        fs::write(&path, text).expect("stage file");
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).expect("chmod file");
    }
}

/// The configuration of `spec` as it sits in `/etc/vipd`, with the unit's
/// defaults for the control socket (`/run/vipd`, its RuntimeDirectory) and the
/// state (`/var/lib/vipd`, its StateDirectory). Key files are written to `etc`.
fn render(spec: &NodeSpec, etc: &Path) -> String {
    let mut t = format!("[node]\nname = {:?}\n", spec.name);
    for line in &spec.extra {
        t += &format!("{line}\n");
    }
    for inst in &spec.instances {
        t += &format!(
            "\n[[instance]]\nname = {:?}\ninterface = {:?}\ngroup = {}\npriority = {}\n\
             advert_interval = {:?}\nvips = {:?}\n",
            inst.name, inst.interface, inst.group, inst.priority, inst.advert_interval, inst.vips
        );
        if let Some(p) = inst.preempt {
            t += &format!("preempt = {p}\n");
        }
        match &inst.auth {
            AuthSpec::Key(key) => {
                let file = format!("{}.key", inst.name);
                let path = etc.join(&file);
                fs::write(&path, format!("{key}\n")).expect("write key file");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                    .expect("chmod key file");
                t += &format!("auth_key_file = \"/etc/vipd/{file}\"\n");
            }
            AuthSpec::None => t += "auth = \"none\"\n",
        }
        if !inst.peers.is_empty() {
            t += &format!("peers = {:?}\n", inst.peers);
        }
        for line in &inst.extra {
            t += &format!("{line}\n");
        }
    }
    t
}

/// Puts namespace `ns` on `lab`'s bridge through a veth pair (`port` in the
/// switch, `eth0` inside) at host part `host_part` of the lab's IPv4 and IPv6
/// networks, the way the lab's own hosts are set up.
pub(crate) fn join_lab(lab: &Lab, ns: Netns, role: &str, port: &str, host_part: u32) -> Host {
    let (v4_net, _) = lab.client.v4.rsplit_once('.').expect("the client's IPv4");
    let (v6_net, _) = lab.client.v6.rsplit_once("::").expect("the client's IPv6");
    let vip = lab.vip4(0);
    let (_, prefix_len) = vip.split_once('/').expect("a VIP with its prefix length");
    plug_veth(&lab.switch, "br0", port, &ns, "eth0");
    let v4 = format!("{v4_net}.{host_part}");
    let v6 = format!("{v6_net}::{host_part:x}");
    ns.sysctl(&[
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
        "net.ipv6.conf.eth0.accept_dad=0",
    ]);
    ns.ip_batch(&format!(
        "addr add {v4}/{prefix_len} dev eth0\naddr add {v6}/64 dev eth0 nodad\nlink set lo up\nlink set eth0 up\n"
    ));
    Host {
        role: role.to_owned(),
        ns,
        v4,
        v6,
    }
}

/// A plain namespace on `lab`'s bridge at host part `host_part` (e.g. a gateway
/// at `.254`).
pub(crate) fn lab_host(lab: &Lab, role: &str, host_part: u32) -> Host {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let ns = Netns::new(format!(
        "{NETNS_PREFIX}-{}-{}-{n}-{role}",
        lab.tag,
        std::process::id()
    ));
    join_lab(lab, ns, role, role, host_part)
}

// ---------------------------------------------------------------------------
// Processes and cgroups
// ---------------------------------------------------------------------------

/// The pids whose parent is `parent`.
pub(crate) fn children_of(parent: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let ppid: i32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == parent).then_some(pid)
    })
    .collect()
}

/// The host's cgroup2 hierarchy: /sys/fs/cgroup (unified) or
/// /sys/fs/cgroup/unified (hybrid).
fn host_cgroup2_root() -> PathBuf {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").exists())
        .expect("a cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified")
}

/// Removes a cgroup and every cgroup below it (they must be empty of processes:
/// retried for a while, as the last ones exit).
fn remove_cgroup(dir: &Path) -> std::io::Result<()> {
    let start = Instant::now();
    loop {
        match remove_cgroup_once(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if start.elapsed() > Duration::from_secs(5) => return Err(e),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn remove_cgroup_once(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_cgroup_once(&entry.path())?;
        }
    }
    fs::remove_dir(dir)
}

/// Kills and removes the cgroups, and removes the staging directories, of nodes
/// whose test process is gone (names are `vt-<tag>-<pid>-...`, like the
/// namespaces).
fn sweep_stale_cgroups(root: &Path) {
    for (path, name) in stale_entries(root) {
        let _ = fs::write(path.join("cgroup.kill"), "1");
        if let Err(e) = remove_cgroup(&path) {
            eprintln!("warning: stale cgroup {name}: {e}");
        }
    }
    // Only the nodes' own (`...-sdN`): daemon.rs keeps its directories in /tmp
    // too, on purpose with VIPD_TEST_KEEP.
    for (path, name) in stale_entries(Path::new("/tmp")) {
        let is_node = name
            .rsplit_once("-sd")
            .is_some_and(|(_, n)| n.parse::<u32>().is_ok());
        if is_node {
            let _ = fs::remove_dir_all(path);
        }
    }
}

/// The entries of `dir` named `vt-<tag>-<pid>-...` whose pid is gone.
fn stale_entries(dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut parts = name.split('-');
            if parts.next() != Some(NETNS_PREFIX) {
                return None;
            }
            let pid: i32 = parts.nth(1)?.parse().ok()?;
            let gone = !Path::new(&format!("/proc/{pid}")).exists();
            gone.then(|| (entry.path(), name))
        })
        .collect()
}

/// CLOCK_MONOTONIC in microseconds: the clock of systemd's `*Monotonic`
/// timestamps and of the journal's `__MONOTONIC_TIMESTAMP`.
pub(crate) fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// Microseconds as milliseconds, for printing.
pub(crate) fn us_to_ms(us: i64) -> f64 {
    us as f64 / 1e3
}

// ---------------------------------------------------------------------------
// Watching addresses over netlink
// ---------------------------------------------------------------------------

/// An address added or removed, as netlink announced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AddrEvent {
    /// CLOCK_MONOTONIC µs at arrival.
    pub(crate) at: u64,
    pub(crate) added: bool,
    pub(crate) addr: IpAddr,
    /// The interface it is on.
    pub(crate) ifindex: u32,
}

/// A thread in a host's namespace subscribed to netlink's address groups: every
/// address added or removed there, timestamped as it arrives (no polling
/// interval: the kernel tells at once).
pub(crate) struct AddrWatch {
    events: Arc<Mutex<Vec<AddrEvent>>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<Result<()>>>,
}

impl AddrWatch {
    /// Starts watching `host`'s namespace; returns once subscribed.
    pub(crate) fn start(host: &Host) -> Result<Self> {
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s, ns) = (events.clone(), stop.clone(), host.ns.name.clone());
        let handle = spawn_when_ready("address watch", move |ready| {
            Netns::enter(&ns).with_context(|| format!("enter {ns}"))?;
            let fd = new_socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
            // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
            let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            addr.nl_family = libc::AF_NETLINK as u16;
            addr.nl_groups = (libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
            // SAFETY: a valid sockaddr_nl of the size given.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_nl).cast(),
                    size_of::<libc::sockaddr_nl>() as u32,
                )
            };
            if rc < 0 {
                bail!("bind netlink: {}", std::io::Error::last_os_error());
            }
            ready.send(Ok(())).ok();
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, 20) } <= 0 {
                    continue;
                }
                // SAFETY: the buffer is ours and sized.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                let at = monotonic_us();
                if n <= 0 {
                    continue;
                }
                let parsed = parse_addr_messages(&buf[..n as usize], at);
                e.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(parsed);
            }
            Ok(())
        })?;
        Ok(Self {
            events,
            stop,
            handle: Some(handle),
        })
    }

    /// Every event so far, in arrival order.
    pub(crate) fn events(&self) -> Vec<AddrEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The first event for `vip` (with or without `/prefix`) that adds it
    /// (`added`) or removes it, at or after `after`.
    pub(crate) fn first(&self, vip: &str, added: bool, after: u64) -> Option<AddrEvent> {
        let want: IpAddr = strip_prefix_len(vip).parse().expect("an IP address");
        self.events()
            .into_iter()
            .find(|e| e.addr == want && e.added == added && e.at >= after)
    }

    /// Waits up to `timeout` for [`AddrWatch::first`].
    pub(crate) fn wait_for(
        &self,
        vip: &str,
        added: bool,
        after: u64,
        timeout: Duration,
    ) -> Option<AddrEvent> {
        let start = Instant::now();
        loop {
            if let Some(e) = self.first(vip, added, after) {
                return Some(e);
            }
            if start.elapsed() > timeout {
                return None;
            }
            check_interrupted();
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for AddrWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The RTM_NEWADDR / RTM_DELADDR messages in one netlink datagram (an
/// announcement, or one part of an address dump).
pub(crate) fn parse_addr_messages(mut buf: &[u8], at: u64) -> Vec<AddrEvent> {
    const HEADER: usize = 16;
    const IFADDRMSG: usize = 8;
    let mut out = Vec::new();
    while buf.len() >= HEADER {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < HEADER || len > buf.len() {
            break;
        }
        let msg = &buf[HEADER..len];
        let added = match kind {
            libc::RTM_NEWADDR => Some(true),
            libc::RTM_DELADDR => Some(false),
            _ => None,
        };
        if let (Some(added), true) = (added, msg.len() >= IFADDRMSG) {
            let family = i32::from(msg[0]);
            let ifindex = u32::from_ne_bytes([msg[4], msg[5], msg[6], msg[7]]);
            let mut attrs = &msg[IFADDRMSG..];
            let mut address = None;
            let mut local = None;
            while attrs.len() >= 4 {
                let alen = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
                let atype = u16::from_ne_bytes([attrs[2], attrs[3]]);
                if alen < 4 || alen > attrs.len() {
                    break;
                }
                let value = &attrs[4..alen];
                let ip = match (family, value.len()) {
                    (libc::AF_INET, 4) => Some(IpAddr::from(Ipv4Addr::new(
                        value[0], value[1], value[2], value[3],
                    ))),
                    (libc::AF_INET6, 16) => {
                        let mut b = [0u8; 16];
                        b.copy_from_slice(value);
                        Some(IpAddr::from(Ipv6Addr::from(b)))
                    }
                    _ => None,
                };
                match atype {
                    libc::IFA_ADDRESS => address = ip,
                    libc::IFA_LOCAL => local = ip,
                    _ => {}
                }
                attrs = &attrs[(alen + 3) & !3..];
            }
            if let Some(addr) = local.or(address) {
                out.push(AddrEvent {
                    at,
                    added,
                    addr,
                    ifindex,
                });
            }
        }
        let next = (len + 3) & !3;
        if next >= buf.len() {
            break;
        }
        buf = &buf[next..];
    }
    out
}

// ---------------------------------------------------------------------------
// Neighbour advertisements on the link
// ---------------------------------------------------------------------------

/// One neighbour advertisement seen on the link.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NaSeen {
    /// CLOCK_MONOTONIC µs at arrival.
    pub(crate) at: u64,
    pub(crate) src_mac: [u8; 6],
    pub(crate) dst: Ipv6Addr,
    pub(crate) router: bool,
    pub(crate) solicited: bool,
    pub(crate) override_flag: bool,
}

/// A thread in a host's namespace recording every neighbour advertisement for
/// one target address that arrives on its `eth0` (AF_PACKET).
pub(crate) struct NaWatch {
    seen: Arc<Mutex<Vec<NaSeen>>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<Result<()>>>,
}

impl NaWatch {
    /// Starts watching `host`'s `eth0` for NAs whose target is `target`.
    pub(crate) fn start(host: &Host, target: Ipv6Addr) -> Result<Self> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (v, s, ns) = (seen.clone(), stop.clone(), host.ns.name.clone());
        let handle = spawn_when_ready("NA watch", move |ready| {
            Netns::enter(&ns).with_context(|| format!("enter {ns}"))?;
            let (fd, _) = packet_socket(0x86dd)?;
            ready.send(Ok(())).ok();
            let mut file = fs::File::from(fd);
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd: file.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, 20) } <= 0 {
                    continue;
                }
                let Ok(n) = file.read(&mut buf) else {
                    continue;
                };
                if let Some(na) = parse_na(&buf[..n], target, monotonic_us()) {
                    v.lock().unwrap_or_else(PoisonError::into_inner).push(na);
                }
            }
            Ok(())
        })?;
        Ok(Self {
            seen,
            stop,
            handle: Some(handle),
        })
    }

    /// Every NA for the target so far, in arrival order.
    pub(crate) fn seen(&self) -> Vec<NaSeen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for NaWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// An Ethernet frame, if it is an ICMPv6 neighbour advertisement (no extension
/// headers, as NAs are sent) for `target`.
fn parse_na(p: &[u8], target: Ipv6Addr, at: u64) -> Option<NaSeen> {
    // Ethernet 14, IPv6 40, then ICMPv6: type, code, checksum, flags, 3 reserved,
    // the 16-byte target.
    if p.len() < 14 + 40 + 24 || p[12..14] != [0x86, 0xdd] || p[20] != 58 || p[54] != 136 {
        return None;
    }
    let mut t = [0u8; 16];
    t.copy_from_slice(&p[62..78]);
    if Ipv6Addr::from(t) != target {
        return None;
    }
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&p[38..54]);
    let mut src_mac = [0u8; 6];
    src_mac.copy_from_slice(&p[6..12]);
    let flags = p[58];
    Some(NaSeen {
        at,
        src_mac,
        dst: Ipv6Addr::from(dst),
        router: flags & 0x80 != 0,
        solicited: flags & 0x40 != 0,
        override_flag: flags & 0x20 != 0,
    })
}
