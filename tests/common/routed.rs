//! The routed lab (issue 16): two vipd nodes in subnets of their own, a router
//! between them and a client in a third subnet, each of nodes and router running
//! its own FRR (zebra + bgpd, optionally bfdd) under `-N NAME`. The nodes peer
//! eBGP with the router and announce what vipd puts into table
//! [`ROUTE_TABLE`] (`ip import-table` + `redistribute table`, a prefix-list
//! allowing only the VIP); the router installs the best path in its kernel.
//!
//! It owns the lab's namespaces ([`Netns`], deleted on drop with every process
//! in them, FRR's included) and FRR's per-instance directories
//! (`/etc/frr/NAME`, `/var/run/frr/NAME`, removed on drop by [`Frr`]). Nothing
//! touches the root namespace's network.

use std::fs;
use std::os::unix::fs::chown;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::Duration;

use super::{
    output_text, run_output, sweep_stale_namespaces, wait_until, Daemon, Host, InstanceSpec, Netns,
    NodeSpec, ProbeResult, Prober, NETNS_PREFIX,
};

/// The table vipd's announced routes go into (vipd's default).
pub(crate) const ROUTE_TABLE: u32 = 118;

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// One FRR instance (`-N NAME`) running in a namespace; on drop its daemons are
/// killed and its directories removed.
pub(crate) struct Frr {
    pub(crate) name: String,
    netns: String,
    bfd: bool,
}

impl Frr {
    fn etc(&self) -> String {
        format!("/etc/frr/{}", self.name)
    }

    fn run_dir(&self) -> String {
        format!("/var/run/frr/{}", self.name)
    }

    /// Writes the daemons' configuration files and starts zebra, bgpd and (with
    /// `bfd`) bfdd inside `netns`, each daemonized with its files under
    /// `/etc/frr/NAME` and `/var/run/frr/NAME` (owned by the frr user).
    fn start(name: String, netns: &str, zebra: &str, bgpd: &str, bfd: bool) -> Self {
        let frr = Self {
            name,
            netns: netns.to_owned(),
            bfd,
        };
        let (uid, gid) = frr_ids();
        for dir in [frr.etc(), frr.run_dir()] {
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create FRR dir");
            chown(&dir, Some(uid), Some(gid)).expect("chown FRR dir");
        }
        let bfdd_conf = "bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n exit\nexit\n";
        for (file, text) in [
            ("zebra.conf", zebra),
            ("bgpd.conf", bgpd),
            ("bfdd.conf", bfdd_conf),
            ("vtysh.conf", ""),
        ] {
            let path = format!("{}/{file}", frr.etc());
            fs::write(&path, text).expect("write FRR config");
            chown(&path, Some(uid), Some(gid)).expect("chown FRR config");
        }
        frr.start_daemons();
        frr
    }

    /// Starts zebra, then (with `bfd`) bfdd and bgpd.
    fn start_daemons(&self) {
        // A socket left by a killed zebra would look like the new one's.
        let api = format!("{}/zserv.api", self.run_dir());
        let _ = fs::remove_file(&api);
        self.daemon("zebra", &[]);
        // bgpd and bfdd connect to zebra's socket; give it a moment to exist.
        wait_until(
            &format!("{}'s zebra socket", self.name),
            Duration::from_secs(10),
            || fs::metadata(&api).is_ok(),
        );
        if self.bfd {
            let ctl = format!("{}/bfdd.sock", self.run_dir());
            self.daemon("bfdd", &["--bfdctl", &ctl]);
        }
        self.daemon("bgpd", &[]);
    }

    /// Kills every process in the FRR instance's namespace (as a host going
    /// down would: whatever else runs there goes too) and starts the FRR
    /// daemons again with the same configuration, as at the host's next boot.
    /// Returns once they run; the sessions come up on their own time.
    pub(crate) fn kill_everything_and_boot(&self, while_down: impl FnOnce()) {
        Netns::kill_all_in(&self.netns);
        while_down();
        self.start_daemons();
    }

    fn daemon(&self, which: &str, extra: &[&str]) {
        let conf = format!("{}/{which}.conf", self.etc());
        let pid = format!("{}/{which}.pid", self.run_dir());
        let log = format!("--log=file:{}/{which}.log", self.run_dir());
        let bin = format!("/usr/lib/frr/{which}");
        let mut args = vec![
            "netns",
            "exec",
            &self.netns,
            &bin,
            "-N",
            &self.name,
            "-d",
            "-f",
            &conf,
            "-i",
            &pid,
            &log,
        ];
        args.extend_from_slice(extra);
        let out = run_output("ip", &args);
        assert!(
            out.status.success(),
            "{which} -N {} did not start: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `vtysh -N NAME -c COMMAND`, the output whatever the outcome.
    pub(crate) fn vtysh(&self, command: &str) -> String {
        let out = Command::new("vtysh")
            .args(["-N", &self.name, "-c", command])
            .output()
            .expect("run vtysh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the BGP session with `peer` is Established.
    pub(crate) fn established(&self, peer: &str) -> bool {
        let json = self.vtysh("show bgp ipv4 unicast summary json");
        serde_json::from_str::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| {
                v["peers"][peer]["state"]
                    .as_str()
                    .map(|s| s == "Established")
            })
            .unwrap_or(false)
    }

    /// The daemons' logs, for a failing test.
    pub(crate) fn logs(&self) -> String {
        let mut out = String::new();
        for which in ["zebra", "bgpd", "bfdd"] {
            if let Ok(text) = fs::read_to_string(format!("{}/{which}.log", self.run_dir())) {
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                out.push_str(&format!("--- {} {which} ---\n", self.name));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        // The namespace's drop kills whatever still runs in it; the daemons go
        // first here so that they cannot write into the directories below.
        Netns::kill_all_in(&self.netns);
        let _ = fs::remove_dir_all(self.etc());
        let _ = fs::remove_dir_all(self.run_dir());
    }
}

/// The frr user's uid and gid.
fn frr_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = run_output("id", &[flag, "frr"]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the frr user exists (apt-get install frr)")
    };
    (id("-u"), id("-g"))
}

/// Whether FRR's daemons are installed.
pub(crate) fn frr_installed() -> bool {
    ["zebra", "bgpd", "bfdd"]
        .iter()
        .all(|d| fs::metadata(format!("/usr/lib/frr/{d}")).is_ok())
        && run_output("id", &["frr"]).status.success()
}

/// Two vipd nodes (`n1` in subnet .1, `n2` in .2), a router and a client (in
/// .3), with FRR on the nodes and the router.
pub(crate) struct RoutedLab {
    // Field order is drop order: FRR first (its daemons and directories), then
    // the hosts and router namespaces.
    pub(crate) frr: Vec<Frr>,
    pub(crate) nodes: Vec<Host>,
    pub(crate) client: Host,
    pub(crate) router: Netns,
    /// The VIP, as `ADDRESS/32`.
    pub(crate) vip: String,
    /// The router's address toward node i (1-based: `router_side[i - 1]`).
    pub(crate) router_side: Vec<String>,
}

impl RoutedLab {
    /// Builds the lab and waits until both nodes' BGP sessions with the router
    /// are Established. With `bfd`, every session also runs BFD (100 ms × 3).
    pub(crate) fn new(tag: &str, bfd: bool) -> Self {
        assert!(!tag.contains('-'), "a lab tag may not contain '-': {tag}");
        SWEEP.call_once(sweep_stale_namespaces);
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{NETNS_PREFIX}-{tag}-{pid}-{n}");
        // 10.P.B+1 (n1), .B+2 (n2), .B+3 (client), VIP 10.P.B+4.9.
        let p = pid % 200 + 20;
        let b = (n % 50) * 5;
        let net = |k: u32| format!("10.{p}.{}", b + k);

        let router = Netns::new(format!("{prefix}-rt"));
        router.sysctl(&["net.ipv4.ip_forward=1"]);
        router.ip(&["link", "set", "lo", "up"]);
        let make_host = |role: &str, k: u32| -> Host {
            let ns = Netns::new(format!("{prefix}-{role}"));
            let port = format!("r{k}");
            router.ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
            ]);
            router.ip_batch(&format!(
                "addr add {}.1/24 dev {port}\nlink set {port} up\n",
                net(k)
            ));
            let v4 = format!("{}.2", net(k));
            ns.ip_batch(&format!(
                "addr add {v4}/24 dev eth0\nlink set lo up\nlink set eth0 up\nroute add default via {}.1\n",
                net(k)
            ));
            Host {
                role: role.to_owned(),
                ns,
                v4,
                v6: String::new(),
            }
        };
        let nodes = vec![make_host("n1", 1), make_host("n2", 2)];
        let client = make_host("client", 3);
        let vip = format!("{}.9/32", net(4));
        let router_side: Vec<String> = (1..=2).map(|k| format!("{}.1", net(k))).collect();

        let timers = " timers bgp 1 3\n";
        let bfd_line = |peer: &str| {
            if bfd {
                format!(" neighbor {peer} bfd\n neighbor {peer} bfd profile fast\n")
            } else {
                String::new()
            }
        };
        let neighbor = |peer: &str, asn: u32| {
            format!(
                " neighbor {peer} remote-as {asn}\n neighbor {peer} advertisement-interval 0\n neighbor {peer} timers connect 1\n{}",
                bfd_line(peer)
            )
        };
        let mut frr = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let asn = 65001 + i as u32;
            let bgpd = format!(
                "frr defaults datacenter\n\
                 ip prefix-list VIPD seq 5 permit {vip}\n\
                 route-map VIPD permit 10\n match ip address prefix-list VIPD\nexit\n\
                 router bgp {asn}\n bgp router-id {}\n no bgp ebgp-requires-policy\n{timers}{}\
                 address-family ipv4 unicast\n  redistribute table {ROUTE_TABLE} route-map VIPD\n exit-address-family\nexit\n",
                node.v4,
                neighbor(&router_side[i], 65000),
            );
            frr.push(Frr::start(
                format!("vipd{pid}x{n}{}", node.role),
                &node.ns.name,
                &format!("ip import-table {ROUTE_TABLE}\n"),
                &bgpd,
                bfd,
            ));
        }
        let bgpd = format!(
            "frr defaults datacenter\nrouter bgp 65000\n bgp router-id {}.1\n no bgp ebgp-requires-policy\n{timers}{}{}exit\n",
            net(3),
            neighbor(&nodes[0].v4, 65001),
            neighbor(&nodes[1].v4, 65002),
        );
        frr.push(Frr::start(
            format!("vipd{pid}x{n}rt"),
            &router.name,
            "",
            &bgpd,
            bfd,
        ));
        let lab = Self {
            frr,
            nodes,
            client,
            router,
            vip,
            router_side,
        };
        let took = wait_until("BGP sessions Established", Duration::from_secs(30), || {
            lab.nodes
                .iter()
                .all(|n| lab.router_frr().established(&n.v4))
        });
        eprintln!(
            "routed lab {prefix}: BGP Established after {} ms",
            took.as_millis()
        );
        lab
    }

    /// Node `i`, 1-based.
    pub(crate) fn node(&self, i: usize) -> &Host {
        &self.nodes[i - 1]
    }

    pub(crate) fn router_frr(&self) -> &Frr {
        &self.frr[2]
    }

    /// The VIP without its prefix length.
    pub(crate) fn vip_addr(&self) -> &str {
        self.vip.split('/').next().unwrap_or(&self.vip)
    }

    /// The router's kernel next hop for the VIP (`ip route show VIP`), if any.
    pub(crate) fn router_next_hop(&self) -> Option<String> {
        let out = self
            .router
            .ip_output(&["-j", "route", "show", self.vip_addr()]);
        let routes: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        routes
            .as_array()?
            .iter()
            .find_map(|r| r["gateway"].as_str().map(str::to_owned))
    }

    /// Which node (1-based) the router sends the VIP's traffic to, if any.
    pub(crate) fn routed_to(&self) -> Option<usize> {
        let hop = self.router_next_hop()?;
        self.nodes.iter().position(|n| n.v4 == hop).map(|i| i + 1)
    }
}

// ---------------------------------------------------------------------------
// Driving the lab: shared by tests/routed.rs and the benchmark
// ---------------------------------------------------------------------------

/// The client's probe spacing.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(5);

/// Starts vipd on both nodes in routed mode, n1 preferred, and waits until the
/// router sends the VIP's traffic to n1 and the client reaches it.
pub(crate) fn start(lab: &RoutedLab) -> Vec<Daemon> {
    let spec = |priority: u8, peer: &str| {
        InstanceSpec::new(priority)
            .vip(lab.vip.clone())
            .peers(&[peer])
            .extra("max_hops = 2")
            .extra("announce = \"route\"")
            .extra(&format!(
                "route = {{ table = {ROUTE_TABLE}, metric = 100, withdraw_delay = \"500ms\" }}"
            ))
    };
    let daemons = vec![
        Daemon::start(lab.node(1), NodeSpec::new("n1", spec(200, &lab.node(2).v4))),
        Daemon::start(lab.node(2), NodeSpec::new("n2", spec(100, &lab.node(1).v4))),
    ];
    let took = wait_until(
        "the router routes the VIP to n1",
        Duration::from_secs(30),
        || lab.routed_to() == Some(1),
    );
    eprintln!(
        "router routes {} to n1 after {} ms",
        lab.vip,
        took.as_millis()
    );
    // `vipd status` names the mode and its settings (`ready_after` left at
    // its default, 10 s).
    let status = output_text(&daemons[0].cli(&["status"]));
    assert!(
        status.contains(&format!("route table {ROUTE_TABLE} metric 100"))
            && status.contains("ready after 10s"),
        "vipd status does not show routed mode:\n{status}"
    );
    wait_until(
        "the client reaches the VIP",
        Duration::from_secs(10),
        || lab.client.ping(lab.vip_addr()),
    );
    daemons
}

/// The client's probe spacing around a fail-back (a preemption), where the
/// bound is a count of probes at this spacing.
pub(crate) const FAILBACK_PROBE_EVERY: Duration = Duration::from_millis(10);

/// Probes every [`PROBE_EVERY`] for `total`, running `event` after `lead`;
/// returns what the client saw and how long after the event started the router
/// routed the VIP to n2 (to within the 10 ms poll).
pub(crate) fn probe_around(
    lab: &RoutedLab,
    lead: Duration,
    total: Duration,
    event: impl FnOnce(),
) -> (ProbeResult, Duration) {
    probe_move(lab, PROBE_EVERY, lead, total, 2, event)
}

/// Probes every `every` for `total`, running `event` after `lead`; returns
/// what the client saw and how long after the event started the router
/// routed the VIP to node `to` (to within the 10 ms poll).
pub(crate) fn probe_move(
    lab: &RoutedLab,
    every: Duration,
    lead: Duration,
    total: Duration,
    to: usize,
    event: impl FnOnce(),
) -> (ProbeResult, Duration) {
    let count = (total.as_millis() / every.as_millis()) as u32;
    let prober = Prober::start(&lab.client, lab.vip_addr(), every, count);
    std::thread::sleep(lead);
    // From the event's start: a clean-up or drain may return after the move.
    let start = std::time::Instant::now();
    event();
    wait_until(
        &format!("the router routes the VIP to n{to}"),
        Duration::from_secs(30),
        || lab.routed_to() == Some(to),
    );
    let moved = start.elapsed();
    (prober.finish(), moved)
}

/// The longest time between two replies, in ms: how long the client could not
/// reach the VIP.
pub(crate) fn longest_gap_ms(result: &ProbeResult) -> f64 {
    let times: Vec<f64> = result.replies.values().copied().collect();
    times
        .windows(2)
        .map(|w| (w[1] - w[0]) * 1000.0)
        .fold(0.0, f64::max)
}

pub(crate) fn report(case: &str, result: &ProbeResult, moved: Duration) {
    report_move(case, result, moved, 2, PROBE_EVERY);
}

/// [`report`] for a move to node `to`, probes `every` apart.
pub(crate) fn report_move(
    case: &str,
    result: &ProbeResult,
    moved: Duration,
    to: usize,
    every: Duration,
) {
    eprintln!(
        "[routed] {case}: router moved to n{to} after {} ms; client: {} of {} probes (every {} ms) lost ({}), longest gap {:.0} ms",
        moved.as_millis(),
        result.lost.len(),
        result.sent,
        every.as_millis(),
        result.describe_lost(every),
        longest_gap_ms(result)
    );
}
