//! Shared machinery for the integration tests that run real `vipd` processes on a
//! real kernel: network namespaces, a bridged lab, daemon processes and probes.
//!
//! Everything a test creates is owned by a guard that undoes it on drop, also when
//! the test panics: [`Netns`] deletes its namespace and kills whatever still runs
//! in it, [`Daemon`] SIGKILLs its process and removes its temporary directory, and
//! prints the daemon's log if the test is failing. Nothing touches the root
//! namespace: the bridge lives in a namespace of its own, and every veth pair is
//! created with both ends already inside lab namespaces.
//!
//! Names carry the test's tag, the process id and a counter, so tests run in
//! parallel (and two `cargo test` processes side by side) without clashing; a lab
//! left behind by a test process that was itself SIGKILLed is swept away by the
//! next run.
//!
//! Timing: probes poll every 10 ms and [`wait_until`] returns the time it took, for
//! the test to print. Deadlines are several times the protocol bound so that a busy
//! 2-core CI machine does not flake; tight numbers belong in a benchmark.
//!
//! Each test binary compiles this module and uses part of it, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The key every node of a lab shares unless a test says otherwise.
pub(crate) const KEY: &str = "vipd-test-key-0123456789abcdef";

/// The `vipd` binary under test.
pub(crate) fn vipd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vipd")
}

// ---------------------------------------------------------------------------
// Root check
// ---------------------------------------------------------------------------

/// Whether this process may create network namespaces. Without root, prints why the
/// calling test is skipped and returns false, except under CI (`CI` set), where a
/// skipped test would hide a regression: then it panics.
pub(crate) fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let test = thread::current().name().unwrap_or("test").to_owned();
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root and network namespaces, and CI is set: run the tests as root");
    }
    eprintln!("skipping {test}: needs root and network namespaces");
    false
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// Runs `program args`, returning its output whatever the exit status.
pub(crate) fn run_output(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {}: {e}", args.join(" ")))
}

/// Runs `program args` and panics, with its stderr, unless it succeeds.
pub(crate) fn run(program: &str, args: &[&str]) -> String {
    let out = run_output(program, args);
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `program args` feeding `input` on stdin; panics unless it succeeds.
fn run_with_input(program: &str, args: &[&str], input: &str) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    // The pipe is there: we asked for it above.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}) on input:\n{input}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// Deletes namespaces left by earlier test processes that died without cleaning up
/// (SIGKILL, a power cut): names are `vt-<tag>-<pid>-...`, and that pid is gone.
fn sweep_stale_namespaces() {
    let list = run_output("ip", &["netns", "list"]);
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let mut parts = name.split('-');
        if parts.next() != Some("vt") {
            continue;
        }
        let Some(pid) = parts.nth(1).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            drop(Netns {
                name: name.to_owned(),
            });
        }
    }
}

/// A network namespace, deleted on drop together with every process still in it.
pub(crate) struct Netns {
    pub(crate) name: String,
}

impl Netns {
    /// `ip netns add NAME`.
    pub(crate) fn new(name: String) -> Self {
        run("ip", &["netns", "add", &name]);
        Self { name }
    }

    /// `ip netns exec NAME args...`, panicking unless it succeeds.
    pub(crate) fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `ip netns exec NAME args...`, whatever the outcome.
    pub(crate) fn exec_output(&self, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run_output("ip", &full)
    }

    /// `ip -n NAME args...`, panicking unless it succeeds.
    pub(crate) fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `ip -n NAME args...`, whatever the outcome.
    pub(crate) fn ip_output(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run_output("ip", &full)
    }

    /// Runs a batch of `ip` commands (one per line) in this namespace.
    pub(crate) fn ip_batch(&self, commands: &str) {
        run_with_input("ip", &["-n", &self.name, "-batch", "-"], commands);
    }

    /// Sets sysctls inside the namespace (`key=value` each).
    pub(crate) fn sysctl(&self, settings: &[&str]) {
        let mut args = vec!["sysctl", "-qw"];
        args.extend_from_slice(settings);
        self.exec(&args);
    }

    /// Loads an nftables ruleset inside the namespace (`nft -f -`).
    pub(crate) fn nft(&self, ruleset: &str) {
        run_with_input(
            "ip",
            &["netns", "exec", &self.name, "nft", "-f", "-"],
            ruleset,
        );
    }

    /// Drops every advert (UDP to `port`) in and out of this namespace.
    pub(crate) fn drop_adverts(&self, port: u16) {
        self.nft(&format!(
            "table inet vipd_test_adverts {{\n\
             \tchain input {{\n\t\ttype filter hook input priority 0; policy accept;\n\t\tudp dport {port} drop\n\t}}\n\
             \tchain output {{\n\t\ttype filter hook output priority 0; policy accept;\n\t\tudp dport {port} drop\n\t}}\n\
             }}\n"
        ));
    }

    /// Removes what [`Netns::drop_adverts`] loaded.
    pub(crate) fn allow_adverts(&self) {
        self.nft("delete table inet vipd_test_adverts\n");
    }

    /// Drops all multicast adverts (IPv4 224/4, IPv6 ff00::/8 to `port`) in and
    /// out of this namespace; unicast adverts still pass.
    pub(crate) fn drop_multicast_adverts(&self, port: u16) {
        self.nft(&format!(
            "table inet vipd_test_mcast {{\n\
             \tchain input {{\n\t\ttype filter hook input priority 0; policy accept;\n\
             \t\tip daddr 224.0.0.0/4 udp dport {port} counter drop\n\
             \t\tip6 daddr ff00::/8 udp dport {port} counter drop\n\t}}\n\
             \tchain output {{\n\t\ttype filter hook output priority 0; policy accept;\n\
             \t\tip daddr 224.0.0.0/4 udp dport {port} counter drop\n\
             \t\tip6 daddr ff00::/8 udp dport {port} counter drop\n\t}}\n\
             }}\n"
        ));
    }

    /// `nft list ruleset` inside the namespace (to print counters).
    pub(crate) fn nft_list(&self) -> String {
        self.exec(&["nft", "list", "ruleset"])
    }

    /// Pids of the processes in this namespace (`ip netns pids`).
    pub(crate) fn pids(&self) -> Vec<i32> {
        let out = run_output("ip", &["netns", "pids", &self.name]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let out = run_output("ip", &["netns", "del", &self.name]);
        if !out.status.success() {
            eprintln!(
                "warning: ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The lab: a bridge, nodes and a client
// ---------------------------------------------------------------------------

/// One host of a lab: its namespace, with `eth0` on the lab's bridge.
pub(crate) struct Host {
    /// Short role name: `n1`, `n2`, ... or `client`.
    pub(crate) role: String,
    pub(crate) ns: Netns,
    /// Its own IPv4 address on `eth0` (no prefix).
    pub(crate) v4: String,
    /// Its own IPv6 address on `eth0` (no prefix).
    pub(crate) v6: String,
}

/// A neighbour-table entry as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Neigh {
    pub(crate) mac: Option<String>,
    pub(crate) state: Vec<String>,
}

impl Host {
    /// The MAC address of `eth0`.
    pub(crate) fn mac(&self) -> String {
        let json = self.ns.ip(&["-j", "link", "show", "dev", "eth0"]);
        let value: serde_json::Value = serde_json::from_str(&json).expect("ip -j link");
        value[0]["address"]
            .as_str()
            .expect("eth0 has a MAC address")
            .to_owned()
    }

    /// The addresses on `eth0` (without prefix length).
    pub(crate) fn addresses(&self) -> Vec<String> {
        let out = self.ns.ip_output(&["-j", "addr", "show", "dev", "eth0"]);
        let value: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        value[0]["addr_info"]
            .as_array()
            .map(|addrs| {
                addrs
                    .iter()
                    .filter_map(|a| a["local"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `eth0` carries `vip` (an address, with or without `/prefix`).
    pub(crate) fn holds(&self, vip: &str) -> bool {
        let want: IpAddr = strip_prefix_len(vip).parse().expect("an IP address");
        self.addresses()
            .iter()
            .any(|a| a.parse::<IpAddr>().ok() == Some(want))
    }

    /// `ip addr show dev eth0` as text, for messages.
    pub(crate) fn addr_text(&self) -> String {
        String::from_utf8_lossy(&self.ns.ip_output(&["addr", "show", "dev", "eth0"]).stdout)
            .into_owned()
    }

    /// Sets `eth0` up or down (`ip link set eth0 up|down`).
    pub(crate) fn link(&self, up: bool) {
        self.ns
            .ip(&["link", "set", "eth0", if up { "up" } else { "down" }]);
    }

    /// Asks who has `vip` with one ARP request (`arping -c 1 -w 1 -i eth0`), and
    /// returns the MAC that answered, if any. The first answer is taken.
    pub(crate) fn mac_for(&self, vip: &str) -> Option<String> {
        let addr = strip_prefix_len(vip);
        let out = self
            .ns
            .exec_output(&["arping", "-r", "-c", "1", "-w", "1", "-i", "eth0", addr]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_lowercase)
    }

    /// Asks who has `vip` with `count` ARP requests and returns every distinct MAC
    /// that answered: more than one means two nodes hold the VIP.
    pub(crate) fn macs_answering(&self, vip: &str, count: u32) -> Vec<String> {
        let addr = strip_prefix_len(vip);
        let (count, wait) = (count.to_string(), (count + 1).to_string());
        let out = self.ns.exec_output(&[
            "arping", "-r", "-c", &count, "-w", &wait, "-i", "eth0", addr,
        ]);
        let mut macs: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_lowercase())
            .filter(|l| !l.is_empty())
            .collect();
        macs.sort();
        macs.dedup();
        macs
    }

    /// Sends one ping to `addr` (IPv4 or IPv6), which resolves its neighbour entry.
    pub(crate) fn ping(&self, addr: &str) -> bool {
        let addr = strip_prefix_len(addr);
        let family = if addr.contains(':') { "-6" } else { "-4" };
        self.ns
            .exec_output(&["ping", family, "-c", "1", "-W", "1", addr])
            .status
            .success()
    }

    /// The neighbour entry for `addr` on `eth0` (`ip neigh show ADDR dev eth0`):
    /// its MAC and NUD state, or `None` if there is no entry.
    pub(crate) fn neigh_entry(&self, addr: &str) -> Option<Neigh> {
        let addr = strip_prefix_len(addr);
        let out = self
            .ns
            .ip_output(&["-j", "neigh", "show", addr, "dev", "eth0"]);
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let entry = value.as_array()?.first()?;
        Some(Neigh {
            mac: entry["lladdr"].as_str().map(str::to_lowercase),
            state: entry["state"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The MAC in the neighbour entry for `addr`, if there is one with a MAC.
    pub(crate) fn neigh_mac(&self, addr: &str) -> Option<String> {
        self.neigh_entry(addr).and_then(|n| n.mac)
    }
}

/// `10.0.0.1/24` → `10.0.0.1`.
pub(crate) fn strip_prefix_len(vip: &str) -> &str {
    vip.split('/').next().unwrap_or(vip)
}

/// A switch namespace with a bridge, N node namespaces and one client namespace,
/// each on the bridge through a veth pair (`eth0` inside the host).
///
/// Addresses: IPv4 `10.P.L.0/24` and IPv6 `fd00:P:L+1::/64`, where P comes from the
/// process id and L counts labs in this process: node i (1-based) is `.i` / `::i`,
/// the client is `.100` / `::100`, and [`Lab::vip4`] / [`Lab::vip6`] hand out
/// `.200+` / `::200+`. IPv6 DAD is off on the lab links, so addresses are usable at
/// once. The client never expires a neighbour entry on its own (`base_reachable_time`
/// is an hour), so a change in its entry shows the GARP / NA, not a new lookup.
pub(crate) struct Lab {
    // Field order is drop order: hosts first, then the switch.
    pub(crate) nodes: Vec<Host>,
    pub(crate) client: Host,
    pub(crate) switch: Netns,
    pub(crate) tag: String,
    v4_net: String,
    v6_net: String,
}

impl Lab {
    /// Builds a lab of `nodes` nodes and a client. `tag` names the test in the
    /// namespace names (keep it short, e.g. `kill9`).
    pub(crate) fn new(tag: &str, nodes: usize) -> Self {
        SWEEP.call_once(sweep_stale_namespaces);
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("vt-{tag}-{pid}-{n}");
        let p = pid % 200 + 20;
        let l = n % 250;
        let v4_net = format!("10.{p}.{l}");
        // Written the way `ip` prints it (`fd00:1f:0::` would print as `fd00:1f::`).
        let v6_net = format!("fd00:{p:x}:{:x}", l + 1);

        let switch = Netns::new(format!("{prefix}-sw"));
        switch.ip_batch(
            "link add br0 type bridge mcast_snooping 0 forward_delay 0\nlink set br0 up\nlink set lo up\n",
        );
        let make_host = |role: &str, index: usize, host_part: u32| -> Host {
            let ns = Netns::new(format!("{prefix}-{role}"));
            ns.sysctl(&[
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ]);
            let port = format!("p{index}");
            switch.ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
            ]);
            switch.ip(&["link", "set", &port, "master", "br0", "up"]);
            let v4 = format!("{v4_net}.{host_part}");
            let v6 = format!("{v6_net}::{host_part:x}");
            ns.sysctl(&["net.ipv6.conf.eth0.accept_dad=0"]);
            ns.ip_batch(&format!(
                "addr add {v4}/24 dev eth0\naddr add {v6}/64 dev eth0 nodad\nlink set lo up\nlink set eth0 up\n"
            ));
            Host {
                role: role.to_owned(),
                ns,
                v4,
                v6,
            }
        };
        let hosts: Vec<Host> = (1..=nodes)
            .map(|i| make_host(&format!("n{i}"), i, i as u32))
            .collect();
        let client = make_host("client", 0, 100);
        client.ns.sysctl(&[
            "net.ipv4.neigh.eth0.base_reachable_time_ms=3600000",
            "net.ipv6.neigh.eth0.base_reachable_time_ms=3600000",
            "net.ipv4.neigh.eth0.gc_stale_time=3600",
            "net.ipv6.neigh.eth0.gc_stale_time=3600",
        ]);
        Self {
            nodes: hosts,
            client,
            switch,
            tag: tag.to_owned(),
            v4_net,
            v6_net,
        }
    }

    /// Node `i`, 1-based like the node names (`n1`, `n2`, ...).
    pub(crate) fn node(&self, i: usize) -> &Host {
        &self.nodes[i - 1]
    }

    /// The `k`-th IPv4 VIP of this lab (k from 0), as `ADDRESS/24`.
    pub(crate) fn vip4(&self, k: u32) -> String {
        format!("{}.{}/24", self.v4_net, 200 + k)
    }

    /// The `k`-th IPv6 VIP of this lab (k from 0), as `ADDRESS/64`.
    pub(crate) fn vip6(&self, k: u32) -> String {
        format!("{}::{:x}/64", self.v6_net, 0x200 + k)
    }

    /// Which nodes (1-based) hold `vip` right now.
    pub(crate) fn holders(&self, vip: &str) -> Vec<usize> {
        (1..=self.nodes.len())
            .filter(|&i| self.node(i).holds(vip))
            .collect()
    }

    /// One line per node with its addresses, for failure messages.
    pub(crate) fn describe(&self) -> String {
        let mut s = String::new();
        for h in self.nodes.iter().chain(std::iter::once(&self.client)) {
            let _ = writeln!(s, "{} ({}): {:?}", h.role, h.ns.name, h.addresses());
        }
        s
    }
}

// ---------------------------------------------------------------------------
// Daemons
// ---------------------------------------------------------------------------

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
        }
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
}

impl NodeSpec {
    pub(crate) fn new(name: &str, instance: InstanceSpec) -> Self {
        Self {
            name: name.into(),
            instances: vec![instance],
            extra: Vec::new(),
        }
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
        for inst in &self.instances {
            let _ = writeln!(t, "\n[[instance]]");
            let _ = writeln!(t, "name = {:?}", inst.name);
            let _ = writeln!(t, "interface = {:?}", inst.interface);
            let _ = writeln!(t, "group = {}", inst.group);
            let _ = writeln!(t, "priority = {}", inst.priority);
            let _ = writeln!(t, "advert_interval = {:?}", inst.advert_interval);
            if let Some(p) = inst.preempt {
                let _ = writeln!(t, "preempt = {p}");
            }
            let _ = writeln!(t, "vips = {:?}", inst.vips);
            match &inst.auth {
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

/// A `vipd run` process inside a namespace, with a generated configuration in a
/// temporary directory. Drop SIGKILLs it and removes the directory; if the test is
/// panicking, the log is printed first.
pub(crate) struct Daemon {
    pub(crate) label: String,
    pub(crate) netns: String,
    pub(crate) dir: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) socket: PathBuf,
    pub(crate) log_path: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Writes `spec`'s configuration and starts `vipd run` on `host`.
    pub(crate) fn start(host: &Host, spec: NodeSpec) -> Self {
        let dir = PathBuf::from(format!("/tmp/{}", host.ns.name));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("state")).expect("create daemon dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod daemon dir");
        let config = dir.join("vipd.toml");
        fs::write(&config, spec.render(&dir)).expect("write config");
        let label = format!("{} [{}]", spec.name, host.role);
        let log_path = dir.join("vipd.log");
        LOGS.with(|l| l.borrow_mut().0.push((label.clone(), log_path.clone())));
        let mut daemon = Self {
            label,
            netns: host.ns.name.clone(),
            socket: dir.join("vipd.sock"),
            dir,
            config,
            log_path,
            child: None,
        };
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open log");
        let _ = writeln!(&log, "----- test: starting vipd run -----");
        let config = self.config.to_str().expect("UTF-8 path").to_owned();
        let filter = std::env::var("VIPD_TEST_LOG").unwrap_or_else(|_| "info".into());
        // `ip netns exec` execs the command in place, so the child's pid is vipd's.
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                vipd_bin(),
                "run",
                "--config",
                &config,
            ])
            .env("RUST_LOG", &filter)
            .env("VIPD_LOG", &filter)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn vipd");
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
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// [`Daemon::sigterm_within`] 10 s.
    pub(crate) fn sigterm(&mut self) -> ExitStatus {
        self.sigterm_within(Duration::from_secs(10))
    }

    /// Starts the daemon again with the same configuration (SIGKILLing it first if
    /// it still runs).
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

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// Polls `done` every 10 ms until it returns true and returns how long that took.
/// Past `deadline`, panics naming `what`, with the logs of this test's daemons.
pub(crate) fn wait_until(
    what: &str,
    deadline: Duration,
    mut done: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if done() {
            return start.elapsed();
        }
        if start.elapsed() > deadline {
            let logs = all_logs();
            LOGS.with(|l| l.borrow_mut().1 = true);
            panic!("timed out after {deadline:?} waiting until {what}{logs}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Checks `ok` every 10 ms for `duration` and panics, naming `what`, the first time
/// it is false: for "this stays true" properties.
pub(crate) fn hold_for(what: &str, duration: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < duration {
        if !ok() {
            let logs = all_logs();
            LOGS.with(|l| l.borrow_mut().1 = true);
            panic!(
                "{what} stopped holding after {} ms{logs}",
                start.elapsed().as_millis()
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Starts one daemon per spec on nodes 1, 2, ... named `n1`, `n2`, ...
pub(crate) fn start_nodes(lab: &Lab, specs: Vec<InstanceSpec>) -> Vec<Daemon> {
    specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            Daemon::start(lab.node(i + 1), NodeSpec::new(&format!("n{}", i + 1), spec))
        })
        .collect()
}

/// Waits until exactly node `master` (1-based) holds `vip`, and returns how long
/// that took.
pub(crate) fn wait_sole_holder(
    lab: &Lab,
    vip: &str,
    master: usize,
    deadline: Duration,
) -> Duration {
    wait_until(&format!("only n{master} holds {vip}"), deadline, || {
        lab.holders(vip) == [master]
    })
}

/// Milliseconds, for printing.
pub(crate) fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// ---------------------------------------------------------------------------
// Probing the VIP from the client under load
// ---------------------------------------------------------------------------

/// A `ping` flood from a host at a fixed interval, for counting the probes a
/// handover loses. Started with [`Prober::start`], read with [`Prober::finish`].
pub(crate) struct Prober {
    child: Child,
    count: u32,
    interval: Duration,
    started: Instant,
}

/// What a [`Prober`] saw.
#[derive(Clone, Debug)]
pub(crate) struct ProbeResult {
    pub(crate) sent: u32,
    pub(crate) received: u32,
    /// Sequence numbers (1-based) without any reply.
    pub(crate) lost: Vec<u32>,
    /// The summary line ping printed, for the log.
    pub(crate) summary: String,
    /// Reply time (Unix seconds, from `ping -D`) of each sequence number answered.
    pub(crate) replies: std::collections::BTreeMap<u32, f64>,
}

impl ProbeResult {
    /// The lost sequence numbers as ranges with their offset from the start,
    /// e.g. `seq 512-513 (~1022 ms)`.
    pub(crate) fn describe_lost(&self, interval: Duration) -> String {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.lost.len() {
            let first = self.lost[i];
            let mut last = first;
            while i + 1 < self.lost.len() && self.lost[i + 1] == last + 1 {
                i += 1;
                last = self.lost[i];
            }
            let at = interval * (first - 1);
            // The last reply before the gap, as a UTC time of day to set beside
            // the daemons' logs.
            let before = self
                .replies
                .range(..first)
                .next_back()
                .map_or_else(|| "-".to_owned(), |(_, t)| utc_time_of_day(*t));
            let seqs = if first == last {
                format!("seq {first}")
            } else {
                format!("seq {first}-{last}")
            };
            out.push(format!(
                "{seqs} (~{} ms in; last reply before it at {before} UTC)",
                at.as_millis()
            ));
            i += 1;
        }
        if out.is_empty() {
            "none".to_owned()
        } else {
            out.join(", ")
        }
    }
}

impl Prober {
    /// Starts `ping -c COUNT -i INTERVAL -W 1 ADDR` in `host`'s namespace (root may
    /// use intervals down to 2 ms and below). It runs `count × interval` and ends
    /// on its own.
    pub(crate) fn start(host: &Host, addr: &str, interval: Duration, count: u32) -> Self {
        let addr = strip_prefix_len(addr);
        let family = if addr.contains(':') { "-6" } else { "-4" };
        let interval_s = format!("{:.3}", interval.as_secs_f64());
        let count_s = count.to_string();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &host.ns.name,
                "ping",
                family,
                "-n",
                "-D",
                "-i",
                &interval_s,
                "-W",
                "1",
                "-c",
                &count_s,
                addr,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ping");
        Self {
            child,
            count,
            interval,
            started: Instant::now(),
        }
    }

    /// Time since the prober started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for ping to end and counts the probes without a reply.
    pub(crate) fn finish(self) -> ProbeResult {
        let out = self.child.wait_with_output().expect("wait for ping");
        let text = String::from_utf8_lossy(&out.stdout);
        // `[1700000000.123456] 64 bytes from 10.0.0.200: icmp_seq=7 ttl=64 time=0.05 ms`
        let mut seen = std::collections::BTreeMap::new();
        for line in text.lines() {
            if !line.contains("bytes from") {
                continue;
            }
            let Some(rest) = line.split("icmp_seq=").nth(1) else {
                continue;
            };
            let Ok(seq) = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or("")
                .parse::<u32>()
            else {
                continue;
            };
            let at = line
                .strip_prefix('[')
                .and_then(|l| l.split(']').next())
                .and_then(|t| t.parse::<f64>().ok())
                .unwrap_or(0.0);
            seen.entry(seq).or_insert(at);
        }
        let summary = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or("")
            .to_owned();
        let sent = summary
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(self.count);
        assert!(
            !summary.is_empty(),
            "ping printed no summary ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        let lost: Vec<u32> = (1..=sent).filter(|s| !seen.contains_key(s)).collect();
        ProbeResult {
            sent,
            received: seen.len() as u32,
            lost,
            summary,
            replies: seen,
        }
    }
}

/// Unix seconds as `HH:MM:SS.ffffff` (UTC), the form the daemons' logs use.
pub(crate) fn utc_time_of_day(unix: f64) -> String {
    let micros = (unix * 1e6) as u64;
    let secs = micros / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        micros % 1_000_000
    )
}

/// Now as Unix seconds.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A directory for a test's scripts, key and weight files, removed on drop.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new(tag: &str) -> Self {
        let dir = PathBuf::from(format!("/tmp/vipd-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    /// Writes an executable `/bin/sh` script.
    pub(crate) fn script(&self, name: &str, body: &str) -> String {
        let path = self.path(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
