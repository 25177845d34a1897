//! vipd against keepalived, side by side, on a real kernel: failover, handover,
//! footprint and scale (issue 6).
//!
//! Run it as root with `benches/run.sh` (it also runs the 255-node simulation and
//! installs keepalived if missing), or the bench alone with
//! `cargo bench --bench failover`. Prints a table and writes every figure to
//! `target/bench/results.json`.
//!
//! # Layout
//!
//! The lab is the integration tests' (`tests/common/`, included below as `mod
//! common`): namespaces, daemons and the prober are the same code in both.
//!
//! - [`Lab`]: a switch namespace with a bridge, nodes `n1` (priority 150) and
//!   `n2` (priority 100) and a client on 10.251.0.0/16, each on the bridge by a
//!   veth pair. Every namespace is deleted on drop (and on SIGINT/SIGTERM, which
//!   unwind), with whatever still runs in it; namespaces left by a bench that was
//!   SIGKILLed are swept by the next run (or the next test).
//! - [`Daemon`]: one vipd or keepalived process in a node namespace
//!   ([`configure`] writes either configuration from a [`Setup`]).
//! - [`ArpProber`]: a thread in the client namespace that sends an ARP request for
//!   the VIP every millisecond over AF_PACKET and records, with timestamps, the
//!   probes, the replies (and which MAC sent them), every VRRP/vipd advert and
//!   every gratuitous ARP on the link.
//! - [`AddrMonitor`]: a thread in a node namespace that records every IPv4 address
//!   added or removed (rtnetlink), for the scale cases.
//!
//! # What is measured
//!
//! - crash failover: the master's processes are SIGKILLed and its link is taken
//!   down; the figure is the time from the dead master's last advert seen on the
//!   link to the first probe answered by the new master's MAC (the quantity the
//!   master-down interval bounds); the time from the kill is recorded too.
//! - graceful handover: `vipd drain --wait` against keepalived's SIGTERM (which
//!   sends priority 0): probes lost and the longest gap between answers.
//! - preempt-back: the crashed node returns (stale VIP removed, link up, daemon
//!   started): probes lost and gap.
//!
//! - what a client sees (issue 10), `VIPD_BENCH_ONLY=clients`: a partition of
//!   the adverts for 3 s and its heal, 20 % random loss of adverts at the
//!   backup's input for 30 s (at 100 ms and 10 ms), the master frozen by SIGSTOP
//!   for 5 intervals, the master's link down for 2 s; each in a fresh lab. The
//!   client here follows gratuitous ARPs, as a host whose neighbour entry does
//!   not expire: each probe goes to the MAC of the last GARP for the VIP seen
//!   (the master's before the first) and is lost unless that MAC answers; also
//!   recorded: the longest outage, the backup's transitions to master (its log)
//!   and what anyone holding the VIP answered ([`ProbeLog::window`]).
//!
//! - floods (issue 11), `VIPD_BENCH_ONLY=flood`: at 100 ms and 10 ms adverts, a
//!   fresh lab per daemon and interval; from the client, junk adverts as fast as
//!   one thread sends them (tests/common/flood.rs), `VIPD_BENCH_FLOOD_SECS`
//!   (default 3) from one source (a UDP socket for vipd, a raw IP socket for
//!   VRRP; to the group and to n1's address), then as long from a random source
//!   per packet in 10.251.0.0/16 (AF_PACKET, to the group). vipd's junk is well
//!   framed with a bad MAC, keepalived's is VRRPv3 with the right VRID and a bad
//!   checksum. Reported: packets offered per second, the master's CPU (every
//!   process in its namespace), the longest gap between its adverts as n2's
//!   namespace receives them (kernel timestamps), spurious takeovers (n2's log),
//!   the master's state changes, and log lines both wrote.
//!
//! - vipd in VRRP mode beside keepalived, `VIPD_BENCH_ONLY=vrrp`: VRRPv3 at
//!   100 ms and VRRPv2 (PASS) at 1 s, a fresh lab per pair. A keepalived master
//!   (150) with a vipd or a keepalived backup (100): its crash, from its last
//!   advert to the backup's first advert and first answer, beside the RFC's
//!   Master_Down_Interval; its SIGTERM, from its priority-0 advert, beside the
//!   Skew_Time, and the probes lost. A vipd master with a keepalived backup:
//!   `vipd drain --wait` and SIGTERM, probes lost and longest gap. A
//!   separate recorder in the client reads each advert's priority.
//!
//! A probe is lost when no reply arrives before the next probe is sent. The
//! prober reads replies before it sends, and each window also reports its own
//! baseline (probes lost before the event) so that scheduling noise on a busy
//! machine shows.
//!
//! # Options (environment)
//!
//! - `VIPD_BENCH_RUNS` (default 20, quick 5): runs per case at 100 ms and 10 ms;
//! - `VIPD_BENCH_RUNS_1S` (default: `VIPD_BENCH_RUNS`): runs at 1 s adverts;
//! - `VIPD_BENCH_INTERVALS` (default `1000,100,10`): advert intervals in ms;
//! - `VIPD_BENCH_CPU_SECS` (default 30, quick 10): the CPU sampling window;
//! - `VIPD_BENCH_METRICS=1`: vipd serves metrics (`metrics_listen`), and the
//!   footprint section scrapes both nodes every second while it measures;
//! - `VIPD_BENCH_QUICK=1`: the quick defaults above;
//! - `VIPD_BENCH_ONLY`: comma list of sections
//!   (`cases,clients,footprint,scale255,vips1000,routed,flood,vrrp`; `routed`
//!   needs FRR and compares routed mode with L2 mode, vipd only);
//! - the `vrrp` section runs `VIPD_BENCH_RUNS` (default 5) runs per pair at
//!   VRRPv3 100 ms and `VIPD_BENCH_RUNS_1S` (default 2; 0 skips it) at VRRPv2 1 s;
//! - `VIPD_BENCH_FLOOD_SECS` (default 3): each flood of the `flood` section;
//! - the `clients` section runs each case once unless `VIPD_BENCH_RUNS` is set,
//!   and its loss cases last `VIPD_BENCH_LOSS_SECS` (default 30);
//! - `VIPD_BENCH_SIM_OUTPUT`: a file with the output of the simulation test
//!   (`benches/run.sh` writes it), parsed into the table;
//! - `KEEPALIVED`: the keepalived binary (default `keepalived` on PATH).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use nix::libc;
use serde_json::{json, Value};

/// vipd's default `takeover_margin`: the best backup waits 3 × interval + this.
const VIPD_MARGIN: Duration = Duration::from_millis(2);
/// Priorities of n1 (the preferred master) and n2, for both daemons.
const PRIO: [u8; 2] = [150, 100];
/// The lab's addresses: 10.251.0.0/16; nodes .0.1 and .0.2, the client .0.100.
const NET: [u8; 2] = [10, 251];
/// The VIP of the failover cases.
const VIP: Ipv4Addr = Ipv4Addr::new(10, 251, 1, 1);

// ---------------------------------------------------------------------------
// The lab (tests/common): namespaces, daemons, the 1 ms ARP prober
// ---------------------------------------------------------------------------

#[path = "../tests/common/mod.rs"]
mod common;

use common::{
    clk_tck, cpu_seconds, cpu_ticks, install_interrupt_handlers, interrupted, keepalived_bin,
    lines_after, packet_socket, run_output, sleep_checked, spawn_when_ready, vipd_group,
    AdvertWatch, ArpProber, Daemon, Flood, FloodSpec, Host, InstanceSpec, Junk, Lab, Netns,
    NodeSpec, ProbeLog, Ready, Sources, Target, VRRP_GROUP,
};

/// Builds the bench's lab: n1, n2 and a client on 10.251.0.0/16.
fn new_lab() -> Lab {
    Lab::with_ipv4("bench", 2, &format!("{}.{}.0", NET[0], NET[1]), 16)
}

// ---------------------------------------------------------------------------
// Daemons
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Vipd,
    Keepalived,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Vipd => "vipd",
            Self::Keepalived => "keepalived",
        }
    }

    /// The master-down interval of the best (only) backup, priority 100.
    fn bound(self, interval: Duration) -> Duration {
        match self {
            Self::Vipd => interval * 3 + VIPD_MARGIN,
            // RFC 5798 §6.1: 3 × interval + (256 − priority) × interval / 256.
            Self::Keepalived => interval * 3 + interval * (256 - u32::from(PRIO[1])) / 256,
        }
    }
}

/// What a node runs: instances (group, VIPs) at one advert interval.
#[derive(Clone)]
struct Setup {
    interval: Duration,
    /// (group id, VIPs) per instance.
    instances: Vec<(u8, Vec<Ipv4Addr>)>,
}

/// Writes node `node`'s (0-based) configuration of `setup` for `kind` on `host`,
/// each daemon speaking its own protocol (keepalived VRRPv3); [`start`] starts it.
fn configure(kind: Kind, host: &Host, node: usize, setup: &Setup) -> Daemon {
    configure_speaking(kind, host, node, setup, None)
}

/// The password of VRRPv2's PASS authentication in the `vrrp` section.
const VRRP2_PASS: &str = "s3cret";

/// [`configure`], with `vrrp` the VRRP version both daemons speak when given:
/// vipd with `protocol = "vrrpN"` and `auth = "none"`, keepalived with
/// `vrrp_version N`; VRRPv2 with the PASS password [`VRRP2_PASS`] on both.
fn configure_speaking(
    kind: Kind,
    host: &Host,
    node: usize,
    setup: &Setup,
    vrrp: Option<u8>,
) -> Daemon {
    let name = format!("n{}", node + 1);
    let prio = PRIO[node];
    match kind {
        Kind::Vipd => {
            let mut instances = setup.instances.iter().map(|(group, vips)| {
                let mut spec =
                    InstanceSpec::new(prio).advert(&format!("{}ms", setup.interval.as_millis()));
                spec.name = format!("g{group}");
                spec.group = *group;
                spec.vips = vips.iter().map(|v| format!("{v}/16")).collect();
                if let Some(version) = vrrp {
                    spec = spec
                        .auth_none()
                        .extra(&format!("protocol = \"vrrp{version}\""));
                }
                if vrrp == Some(2) {
                    spec = spec.extra(&format!("vrrp_auth_pass = {VRRP2_PASS:?}"));
                }
                spec
            });
            let first = instances.next().expect("a setup has an instance");
            let mut spec = NodeSpec::new(&name, first);
            spec.instances.extend(instances);
            if metrics_on() {
                spec.extra
                    .push(format!("metrics_listen = {:?}", metrics_target(host)));
            }
            Daemon::configure(host, spec)
        }
        Kind::Keepalived => {
            let mut c = format!(
                "global_defs {{\n  router_id {name}\n  vrrp_version {}\n  vrrp_garp_master_delay 0\n}}\n",
                vrrp.unwrap_or(3)
            );
            let auth = if vrrp == Some(2) {
                format!(
                    "  authentication {{\n    auth_type PASS\n    auth_pass {VRRP2_PASS}\n  }}\n"
                )
            } else {
                String::new()
            };
            for (group, vips) in &setup.instances {
                // VRRPv3 carries the addresses in every advert: past a handful they
                // go in virtual_ipaddress_excluded (managed the same, not advertised).
                let (main, rest) = vips.split_at(vips.len().min(1));
                let fmt = |v: &[Ipv4Addr]| {
                    v.iter()
                        .map(|a| format!("    {a}/16 dev eth0\n"))
                        .collect::<String>()
                };
                c += &format!(
                    "vrrp_instance g{group} {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {group}\n  \
                     priority {prio}\n  advert_int {:.2}\n{auth}  virtual_ipaddress {{\n{}  }}\n",
                    setup.interval.as_secs_f64(),
                    fmt(main)
                );
                if !rest.is_empty() {
                    c += &format!("  virtual_ipaddress_excluded {{\n{}  }}\n", fmt(rest));
                }
                c += "}\n";
            }
            Daemon::configure_keepalived(host, &name, &c)
        }
    }
}

/// A crashed node's link comes back up without the VIP it held, as after a
/// reboot.
fn back_from_crash(host: &Host) {
    let vip = format!("{VIP}/16");
    let _ = host.ns.ip_output(&["addr", "del", &vip, "dev", "eth0"]);
    host.link(true);
}

/// (Re)starts a daemon as from a crash: every process in its namespace is
/// SIGKILLed first.
fn start(daemon: &mut Daemon) {
    daemon.crash();
    daemon.restart();
}

/// SIGTERM and wait for the exit (keepalived sends priority 0 on the way).
fn stop(daemon: &mut Daemon) {
    daemon.sigterm_within(Duration::from_secs(30));
}

/// `vipd ARGS` against the daemon's control socket; an error unless it succeeds.
fn vipctl(daemon: &Daemon, args: &[&str]) -> Result<String> {
    let out = daemon.cli(args);
    if !out.status.success() {
        bail!(
            "`vipd {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------
// Watcher threads; the rtnetlink address monitor
// ---------------------------------------------------------------------------

/// A watcher's loop: its namespace, the list it records in, the flag that stops
/// it, and what it calls once its sockets are open.
type WatchLoop<T> = fn(&str, &Mutex<Vec<T>>, &AtomicBool, &Ready) -> Result<()>;

/// A thread recording events of type `T` in a list: a watcher's loop, given the
/// list, a stop flag and its [`Ready`]. Stopped and joined on drop.
struct Recorder<T> {
    events: Arc<Mutex<Vec<T>>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<Result<()>>>,
}

impl<T: Clone + Send + 'static> Recorder<T> {
    /// Runs `body` for namespace `ns` on a new thread, once it is ready (see
    /// [`spawn_when_ready`]; `what` names it in errors).
    fn spawn(what: &str, ns: &str, body: WatchLoop<T>) -> Result<Self> {
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s, ns) = (events.clone(), stop.clone(), ns.to_owned());
        let handle = spawn_when_ready(what, move |ready| body(&ns, &e, &s, ready))?;
        Ok(Self {
            events,
            stop,
            handle: Some(handle),
        })
    }

    /// The list, also if the thread panicked holding it (it holds plain data).
    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn events(&self) -> Vec<T> {
        self.lock().clone()
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

impl<T> Drop for Recorder<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Records every IPv4 address added to (true) or removed from (false) a namespace.
type AddrMonitor = Recorder<(Instant, bool, Ipv4Addr)>;

impl AddrMonitor {
    fn start(ns: &str) -> Result<Self> {
        Self::spawn("address monitor", ns, monitor_loop)
    }
}

/// Makes a blocking receive on `fd` return after 50 ms, for a watcher to see
/// its stop flag.
fn wake_every_50ms(fd: &std::os::fd::OwnedFd) -> Result<()> {
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: a valid timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        )
    };
    if rc < 0 {
        bail!("SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn monitor_loop(
    ns: &str,
    events: &Mutex<Vec<(Instant, bool, Ipv4Addr)>>,
    stop: &AtomicBool,
    ready: &Ready,
) -> Result<()> {
    Netns::enter(ns)?;
    // SAFETY: plain socket(2), owned below.
    let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE) };
    if raw < 0 {
        bail!("netlink socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let size: libc::c_int = 16 << 20;
    // SAFETY: a valid option value of the size given.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            4,
        );
    }
    wake_every_50ms(&fd)?;
    // SAFETY: zeroed sockaddr_nl is valid.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    sa.nl_groups = libc::RTMGRP_IPV4_IFADDR as u32;
    // SAFETY: valid sockaddr_nl.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        )
    } < 0
    {
        bail!("bind netlink: {}", std::io::Error::last_os_error());
    }
    ready.send(Ok(())).ok();
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: our buffer, its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let t = Instant::now();
        let mut off = 0usize;
        let n = n as usize;
        let mut batch = Vec::new();
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize; // 4 bytes
            let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
            if len < 16 || off + len > n {
                break;
            }
            if (ty == libc::RTM_NEWADDR || ty == libc::RTM_DELADDR) && len >= 24 {
                let family = buf[off + 16];
                let mut a = off + 24;
                let end = off + len;
                let mut local = None;
                while family == libc::AF_INET as u8 && a + 4 <= end {
                    let alen = usize::from(u16::from_ne_bytes([buf[a], buf[a + 1]]));
                    let aty = u16::from_ne_bytes([buf[a + 2], buf[a + 3]]);
                    if alen < 4 || a + alen > end {
                        break;
                    }
                    if (aty == libc::IFA_LOCAL || (aty == libc::IFA_ADDRESS && local.is_none()))
                        && alen >= 8
                    {
                        local = Some(Ipv4Addr::new(
                            buf[a + 4],
                            buf[a + 5],
                            buf[a + 6],
                            buf[a + 7],
                        ));
                    }
                    a += (alen + 3) & !3;
                }
                if let Some(addr) = local {
                    batch.push((t, ty == libc::RTM_NEWADDR, addr));
                }
            }
            off += (len + 3) & !3;
        }
        events.lock().unwrap().extend(batch);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------

fn rss_kib(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `perf stat` on `pids` for `window` (issue 15): robust to other load on the
/// machine, as it counts only the time these processes ran. `None` without perf.
fn perf_stat_start(pids: &[i32], window: Duration) -> Option<std::process::Child> {
    let list: Vec<String> = pids.iter().map(ToString::to_string).collect();
    Command::new("perf")
        .args(["stat", "-x", ",", "-e", "task-clock,context-switches", "-p"])
        .arg(list.join(","))
        .args(["--", "sleep"])
        .arg(format!("{:.3}", window.as_secs_f64()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()
}

/// Task-clock (ms) and context switches from `perf stat -x ,` output.
fn perf_stat_finish(child: Option<std::process::Child>) -> (Option<f64>, Option<f64>) {
    let Some(child) = child else {
        return (None, None);
    };
    let Ok(out) = child.wait_with_output() else {
        return (None, None);
    };
    let text = String::from_utf8_lossy(&out.stderr);
    let field = |event: &str| {
        text.lines().find_map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            (cols.len() > 2 && cols[2].starts_with(event))
                .then(|| cols[0].parse::<f64>().ok())
                .flatten()
        })
    };
    (field("task-clock"), field("context-switches"))
}

/// CPU (% of one core) and resident memory (KiB, summed) of each daemon's
/// processes over `window`; also the largest single process's RSS, and perf's
/// task-clock over the same window when perf is installed.
fn footprint(daemons: &[&Daemon], window: Duration) -> Vec<Value> {
    let pids: Vec<Vec<i32>> = daemons.iter().map(|d| d.namespace_pids()).collect();
    let perf: Vec<_> = pids.iter().map(|ps| perf_stat_start(ps, window)).collect();
    let t0 = Instant::now();
    let c0: Vec<u64> = pids
        .iter()
        .map(|ps| ps.iter().filter_map(|&p| cpu_ticks(p)).sum())
        .collect();
    sleep_checked(window);
    let wall = t0.elapsed().as_secs_f64();
    daemons
        .iter()
        .zip(&pids)
        .zip(&c0)
        .zip(perf)
        .map(|(((d, ps), &c), perf)| {
            let c1: u64 = ps.iter().filter_map(|&p| cpu_ticks(p)).sum();
            let rss: Vec<u64> = ps.iter().filter_map(|&p| rss_kib(p)).collect();
            let (task_clock_ms, switches) = perf_stat_finish(perf);
            json!({
                "node": d.name,
                "processes": ps.len(),
                "cpu_percent": (c1.saturating_sub(c) as f64 / clk_tck()) / wall * 100.0,
                "perf_cpu_percent": task_clock_ms.map(|ms| ms / 1000.0 / window.as_secs_f64() * 100.0),
                "perf_context_switches_per_s": switches.map(|n| n / window.as_secs_f64()),
                "rss_kib": rss.iter().sum::<u64>(),
                "rss_kib_largest_process": rss.iter().max().copied().unwrap_or(0),
                "window_s": wall,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Floods (issue 11)
// ---------------------------------------------------------------------------

/// The lines in `kind`'s log where a node left master.
fn left_master_line(kind: Kind) -> &'static str {
    match kind {
        Kind::Vipd => "previous=master",
        Kind::Keepalived => "Entering BACKUP STATE",
    }
}

/// One daemon at one interval: a fresh lab, n1 master, then a flood from one
/// source and one from spoofed sources, each `secs` long. One JSON row per flood.
fn run_flood(kind: Kind, interval: Duration, secs: Duration) -> Result<Vec<Value>> {
    let lab = new_lab();
    let setup = Setup {
        interval,
        instances: vec![(51, vec![VIP])],
    };
    let mut daemons = [
        configure(kind, lab.node(1), 0, &setup),
        configure(kind, lab.node(2), 1, &setup),
    ];
    start(&mut daemons[1]);
    start(&mut daemons[0]);
    let vip = VIP.to_string();
    let deadline = Instant::now() + Duration::from_secs(20) + interval * 6;
    while lab.holders(&vip) != [1] {
        if Instant::now() > deadline {
            bail!("n1 never held the VIP alone:\n{}", daemons[0].log_tail(15));
        }
        sleep_checked(Duration::from_millis(20));
    }
    // vipd backups rank themselves once they have heard every peer.
    sleep_checked(Duration::from_millis(2500) + interval * 3);
    let watch = AdvertWatch::start(&lab.node(2).ns.name, lab.node(1).mac_bytes())?;
    let quiet_from = common::unix_now();
    sleep_checked(Duration::from_millis(500));
    let (quiet_gap, _) = watch.longest_gap_ms(quiet_from, common::unix_now());
    let lab_ip = |h: &Host| h.v4.parse::<Ipv4Addr>().context("lab address");
    let (junk, group) = match kind {
        Kind::Vipd => (Junk::Vipd { group: 51 }, vipd_group(51)),
        Kind::Keepalived => (Junk::Vrrp { vrid: 51, vip: VIP }, VRRP_GROUP),
    };
    let group = Target::multicast(group);
    let modes = [
        (Sources::One, vec![group, Target::host(lab.node(1))]),
        (
            Sources::Spoofed {
                net: Ipv4Addr::new(NET[0], NET[1], 0, 0),
                prefix_len: 16,
                exclude: vec![
                    lab_ip(lab.node(1))?,
                    lab_ip(lab.node(2))?,
                    lab_ip(&lab.client)?,
                ],
            },
            vec![group],
        ),
    ];
    let mut rows = Vec::new();
    for (sources, targets) in modes {
        let mode = sources.name();
        let n1_pids = daemons[0].namespace_pids();
        let n2_pids = daemons[1].namespace_pids();
        let (n1_log, n2_log) = (daemons[0].log(), daemons[1].log());
        let (n1_from, n2_from) = (n1_log.len(), n2_log.len());
        let (n1_lines, n2_lines) = (n1_log.lines().count(), n2_log.lines().count());
        let (n1_cpu, n2_cpu) = (cpu_seconds(&n1_pids), cpu_seconds(&n2_pids));
        let t0 = common::unix_now();
        let spec = FloodSpec::from_host(&lab.client, targets, junk.clone(), sources, secs);
        let report = Flood::start(spec)?.join()?;
        let t1 = common::unix_now();
        let wall = t1 - t0;
        let n1_cpu = cpu_seconds(&n1_pids) - n1_cpu;
        let n2_cpu = cpu_seconds(&n2_pids) - n2_cpu;
        sleep_checked(Duration::from_millis(300));
        let (gap, adverts) = watch.longest_gap_ms(t0, t1);
        let (n1_log, n2_log) = (daemons[0].log(), daemons[1].log());
        let holders = lab.holders(&vip);
        eprintln!(
            "  {} {} ms {mode}: {}",
            kind.name(),
            interval.as_millis(),
            report.describe()
        );
        rows.push(json!({
            "daemon": kind.name(),
            "interval_ms": interval.as_millis() as u64,
            "mode": mode,
            "offered": report.sent,
            "offered_per_s": report.rate(),
            "per_target": report.per_target.iter().map(|(ip, n)| json!([ip.to_string(), n])).collect::<Vec<_>>(),
            "send_errors": report.send_errors,
            "flood_s": report.elapsed.as_secs_f64(),
            "master_cpu_s": n1_cpu,
            "master_cpu_percent": n1_cpu / wall * 100.0,
            "backup_cpu_percent": n2_cpu / wall * 100.0,
            "longest_gap_ms": gap,
            "quiet_longest_gap_ms": quiet_gap,
            "adverts_seen": adverts,
            "spurious_takeovers": master_transitions(kind, &n2_log, n2_from),
            "master_left": lines_after(&n1_log, n1_from, left_master_line(kind)),
            "master_log_lines": n1_log.lines().count().saturating_sub(n1_lines),
            "backup_log_lines": n2_log.lines().count().saturating_sub(n2_lines),
            "holders_after": holders,
        }));
        // Let the link and the daemons calm down between the two floods.
        sleep_checked(Duration::from_secs(1));
    }
    Ok(rows)
}

fn render_flood(r: &Value, out: &mut String) {
    use std::fmt::Write as _;
    let Some(rows) = r["flood"]["rows"].as_array() else {
        return;
    };
    let _ = writeln!(
        out,
        "\nfloods (issue 11), {} s each, junk adverts from the client as fast as one thread sends",
        r["flood"]["secs"]
    );
    let _ = writeln!(
        out,
        "{:<11} {:>4} {:<16} {:>10} {:>8} {:>9} {:>10} {:>9} {:>6} {:>10} {:>10}",
        "daemon",
        "int",
        "mode",
        "offered/s",
        "CPU %",
        "gap ms",
        "quiet gap",
        "takeovers",
        "left",
        "log master",
        "log backup"
    );
    for v in rows {
        if let Some(e) = v.get("error") {
            let _ = writeln!(
                out,
                "{:<11} {:>4} error: {e}",
                v["daemon"].as_str().unwrap_or(""),
                v["interval_ms"]
            );
            continue;
        }
        let _ = writeln!(
            out,
            "{:<11} {:>4} {:<16} {:>10.0} {:>8.1} {:>9.1} {:>10.1} {:>9} {:>6} {:>10} {:>10}",
            v["daemon"].as_str().unwrap_or(""),
            v["interval_ms"],
            v["mode"].as_str().unwrap_or(""),
            f(v, "offered_per_s").unwrap_or(0.0),
            f(v, "master_cpu_percent").unwrap_or(0.0),
            f(v, "longest_gap_ms").unwrap_or(0.0),
            f(v, "quiet_longest_gap_ms").unwrap_or(0.0),
            v["spurious_takeovers"],
            v["master_left"],
            v["master_log_lines"],
            v["backup_log_lines"]
        );
    }
    let _ = writeln!(
        out,
        "  CPU % = the master's processes, % of one core over the flood; gap = longest time between the master's adverts \
         at n2 during the flood (quiet gap: 0.5 s before); takeovers = n2 entering master; left = the master leaving master"
    );
}

// ---------------------------------------------------------------------------
// vipd in VRRP mode beside keepalived
// ---------------------------------------------------------------------------

/// The IP protocol number of VRRP.
const IPPROTO_VRRP: u8 = 112;

/// What both nodes of the `vrrp` section speak: a VRRP version and an advert
/// interval.
#[derive(Clone, Copy, Debug)]
struct Wire {
    version: u8,
    interval: Duration,
}

impl Wire {
    /// Skew_Time for `priority`: (256 − priority) / 256 of the advert interval
    /// in VRRPv3 (RFC 9568 §6.1), of a second in VRRPv2 (RFC 3768 §6.1).
    fn skew(self, priority: u8) -> Duration {
        let unit = if self.version == 2 {
            Duration::from_secs(1)
        } else {
            self.interval
        };
        unit * (256 - u32::from(priority)) / 256
    }

    /// Master_Down_Interval for `priority`: 3 × the interval + [`Wire::skew`].
    fn master_down(self, priority: u8) -> Duration {
        self.interval * 3 + self.skew(priority)
    }

    fn label(self) -> String {
        format!("VRRPv{} {}ms", self.version, self.interval.as_millis())
    }
}

/// The pairs of the `vrrp` section, `[n1, n2]`: a keepalived master with vipd
/// or keepalived as its backup, and vipd as the master of a keepalived backup.
const VRRP_PAIRS: [[Kind; 2]; 3] = [
    [Kind::Keepalived, Kind::Vipd],
    [Kind::Keepalived, Kind::Keepalived],
    [Kind::Vipd, Kind::Keepalived],
];

fn pair_name(kinds: [Kind; 2]) -> String {
    format!("{}→{}", kinds[0].name(), kinds[1].name())
}

/// A VRRP advert the client saw on the link.
#[derive(Clone, Copy, Debug)]
struct SeenAdvert {
    at: Instant,
    /// The sender's MAC.
    mac: [u8; 6],
    version: u8,
    priority: u8,
}

/// Every VRRP advert on the client's link with its priority (the
/// [`ArpProber`]'s log has the adverts without it), timed as the prober times
/// its replies: when the thread reads it.
type AdvertRecorder = Recorder<SeenAdvert>;

impl AdvertRecorder {
    fn start(ns: &str) -> Result<Self> {
        Self::spawn("advert recorder", ns, record_vrrp_adverts)
    }
}

fn record_vrrp_adverts(
    ns: &str,
    adverts: &Mutex<Vec<SeenAdvert>>,
    stop: &AtomicBool,
    ready: &Ready,
) -> Result<()> {
    Netns::enter(ns)?;
    let (fd, _) = packet_socket(0x0800)?;
    wake_every_50ms(&fd)?;
    ready.send(Ok(())).ok();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: our buffer, its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let at = Instant::now();
        let Ok(n) = usize::try_from(n) else {
            continue;
        };
        let p = &buf[..n];
        // Ethernet, IPv4 (IHL words), then VRRP: version and type, VRID, priority.
        if p.len() < 34 || p[23] != IPPROTO_VRRP {
            continue;
        }
        let vrrp = 14 + usize::from(p[14] & 0x0f) * 4;
        let Some(head) = p.get(vrrp..vrrp + 3) else {
            continue;
        };
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&p[6..12]);
        adverts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(SeenAdvert {
                at,
                mac,
                version: head[0] >> 4,
                priority: head[2],
            });
    }
    Ok(())
}

/// The `vrrp` section's lab: n1 (priority 150) runs `kinds[0]`, n2 (100)
/// `kinds[1]`, both speaking `wire` for VRID 51 and [`VIP`]; the client probes
/// the VIP and records the adverts.
struct VrrpBed {
    // Field order is drop order: daemons and watchers before the namespaces.
    daemons: [Daemon; 2],
    prober: ArpProber,
    adverts: AdvertRecorder,
    lab: Lab,
    /// MACs of n1 and n2.
    macs: [[u8; 6]; 2],
    wire: Wire,
}

impl VrrpBed {
    /// Starts n1; once it answers alone, n2, and gives n2 its master-down
    /// interval as a backup.
    fn new(kinds: [Kind; 2], wire: Wire) -> Result<Self> {
        let lab = new_lab();
        let setup = Setup {
            interval: wire.interval,
            instances: vec![(51, vec![VIP])],
        };
        let prober = ArpProber::start(&lab.client, VIP)?;
        let adverts = AdvertRecorder::start(&lab.client.ns.name)?;
        let daemons = [
            configure_speaking(kinds[0], lab.node(1), 0, &setup, Some(wire.version)),
            configure_speaking(kinds[1], lab.node(2), 1, &setup, Some(wire.version)),
        ];
        let mut bed = Self {
            daemons,
            prober,
            adverts,
            macs: [lab.node(1).mac_bytes(), lab.node(2).mac_bytes()],
            lab,
            wire,
        };
        start(&mut bed.daemons[0]);
        bed.n1_answers()?;
        start(&mut bed.daemons[1]);
        sleep_checked(wire.master_down(PRIO[1]));
        Ok(bed)
    }

    /// How long n1 answers alone before an event, and how long a window runs
    /// past the new master's first answer: more than an advert interval.
    fn settle(&self) -> Duration {
        (self.wire.interval + Duration::from_millis(200)).max(Duration::from_millis(400))
    }

    /// The longest wait for n2's first answer or advert after an event.
    fn timeout(&self) -> Duration {
        self.wire.master_down(PRIO[1]) + self.wire.interval * 2 + Duration::from_secs(3)
    }

    /// Waits until n1 alone has answered for [`VrrpBed::settle`].
    fn n1_answers(&self) -> Result<()> {
        let limit = Duration::from_secs(30) + self.wire.master_down(PRIO[0]) * 2;
        self.prober
            .wait_stable(self.macs[0], self.settle(), limit)
            .with_context(|| {
                format!(
                    "n1 does not answer alone:\n{}",
                    self.daemons[0].log_tail(15)
                )
            })
    }

    /// Before every event: n1 answers alone, the logs are cleared, and
    /// [`VrrpBed::settle`] passes (so n1's last adverts are in the log).
    fn lead_in(&self) -> Result<()> {
        self.n1_answers()?;
        self.prober.clear();
        self.adverts.clear();
        sleep_checked(self.settle());
        Ok(())
    }

    /// The first advert from `mac` at or after `after` that `pick` accepts,
    /// waiting for it up to [`VrrpBed::timeout`].
    fn wait_advert(
        &self,
        mac: [u8; 6],
        after: Instant,
        pick: impl Fn(&SeenAdvert) -> bool,
    ) -> Result<SeenAdvert> {
        let deadline = Instant::now() + self.timeout();
        loop {
            let seen = self.adverts.events();
            if let Some(a) = seen
                .iter()
                .find(|a| a.mac == mac && a.at >= after && pick(a))
            {
                return Ok(*a);
            }
            if Instant::now() > deadline {
                bail!(
                    "no such advert from {} within {:?}",
                    common::fmt_mac(&mac),
                    self.timeout()
                );
            }
            sleep_checked(Duration::from_millis(2));
        }
    }

    /// What every event checks of the adverts since the lead-in: all of the
    /// configured version; n2's (a backup's, silent in VRRP) before `event`.
    fn check_adverts(&self, event: Instant) -> Result<usize> {
        let seen = self.adverts.events();
        if let Some(a) = seen.iter().find(|a| a.version != self.wire.version) {
            bail!(
                "a VRRPv{} advert on a VRRPv{} link",
                a.version,
                self.wire.version
            );
        }
        Ok(seen
            .iter()
            .filter(|a| a.mac == self.macs[1] && a.at < event)
            .count())
    }
}

/// Figures of one run of the `vrrp` section, by metric.
type VrrpFigures = Vec<(String, f64)>;

/// n1 crashes (every process in its namespace SIGKILLed, its link down): from
/// its last advert to n2's first advert and to n2's first answer. Then n1 comes
/// back as after a reboot (its VIP removed, link up, daemon started) and
/// preempts.
fn vrrp_crash(bed: &mut VrrpBed, out: &mut VrrpFigures) -> Result<()> {
    let [m1, m2] = bed.macs;
    bed.lead_in()?;
    let t_kill = Instant::now();
    bed.daemons[0].crash();
    bed.lab.node(1).link(false);
    let t_reply = bed.prober.wait_reply(m2, t_kill, bed.timeout())?;
    let first = bed.wait_advert(m2, t_kill, |_| true)?;
    // Every advert of n1's was sent before the kill, also one read after it.
    let last = bed
        .adverts
        .events()
        .into_iter()
        .rfind(|a| a.mac == m1)
        .ok_or_else(|| anyhow!("no advert from n1 seen"))?;
    let backup_adverts = bed.check_adverts(t_kill)?;
    out.push(("crash_to_advert_ms".into(), ms(first.at - last.at)));
    out.push(("crash_to_reply_ms".into(), ms(t_reply - last.at)));
    out.push(("crash_kill_to_reply_ms".into(), ms(t_reply - t_kill)));
    out.push(("n2_adverts_as_backup".into(), backup_adverts as f64));

    back_from_crash(bed.lab.node(1));
    start(&mut bed.daemons[0]);
    bed.n1_answers()
        .context("n1 did not preempt after the crash")
}

/// How n1 hands over in the `vrrp` section.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Handover {
    /// SIGTERM: keepalived and vipd send priority 0 on the way out.
    Stop,
    /// `vipd drain --wait`.
    Drain,
}

/// n1 hands over: from its first priority-0 advert to n2's first advert and
/// first answer; the probes lost, the longest gap between answers and the
/// probes both answered, from the command to [`VrrpBed::settle`] after n2's
/// first answer. Then n1 is master again (started, or undrained).
fn vrrp_handover(bed: &mut VrrpBed, how: Handover, out: &mut VrrpFigures) -> Result<()> {
    let [m1, m2] = bed.macs;
    let name = match how {
        Handover::Stop => "stop",
        Handover::Drain => "drain",
    };
    bed.lead_in()?;
    let t0 = Instant::now();
    match how {
        Handover::Stop => stop(&mut bed.daemons[0]),
        Handover::Drain => {
            vipctl(&bed.daemons[0], &["drain", "--wait", "--timeout", "30s"])?;
        }
    }
    let returned = t0.elapsed();
    let t_reply = bed.prober.wait_reply(m2, t0, bed.timeout())?;
    let zero = bed
        .wait_advert(m1, t0, |a| a.priority == 0)
        .context("n1's priority-0 advert")?;
    let first = bed
        .wait_advert(m2, t0, |_| true)
        .context("n2's first advert")?;
    let end = Instant::now().max(t_reply) + bed.settle();
    sleep_checked(end.saturating_duration_since(Instant::now()) + Duration::from_millis(5));
    let window = bed.prober.snapshot().window(t0, end);
    let backup_adverts = bed.check_adverts(t0)?;
    let zeros = bed
        .adverts
        .events()
        .iter()
        .filter(|a| a.mac == m1 && a.priority == 0)
        .count();
    let mut put = |metric: &str, value: f64| out.push((format!("{name}_{metric}"), value));
    put("to_advert_ms", ms(first.at - zero.at));
    put("to_reply_ms", ms(t_reply - zero.at));
    put("command_to_priority0_ms", ms(zero.at - t0));
    put("command_returned_ms", ms(returned));
    put("lost", window.lost as f64);
    put("gap_ms", window.longest_gap_ms);
    put("answered_by_both", window.answered_by_two as f64);
    put("priority0_adverts", zeros as f64);
    out.push(("n2_adverts_as_backup".into(), backup_adverts as f64));

    match how {
        Handover::Stop => start(&mut bed.daemons[0]),
        Handover::Drain => {
            vipctl(&bed.daemons[0], &["undrain"])?;
        }
    }
    bed.n1_answers()
        .with_context(|| format!("n1 did not come back after the {name}"))
}

/// Samples by metric over the runs of one pair, and the runs that failed.
#[derive(Default)]
struct VrrpSamples {
    metrics: BTreeMap<String, Vec<f64>>,
    failures: Vec<String>,
}

/// `runs` runs of one pair: with a keepalived master, its crash and its stop;
/// with a vipd master, its drain and its stop. A failed run starts over in a
/// fresh lab.
fn run_vrrp(kinds: [Kind; 2], wire: Wire, runs: usize) -> Result<VrrpSamples> {
    let mut out = VrrpSamples::default();
    let mut bed = VrrpBed::new(kinds, wire)?;
    for run_no in 1..=runs {
        eprint!(
            "\r  {} {}: run {run_no}/{runs}   ",
            pair_name(kinds),
            wire.label()
        );
        let mut figures = VrrpFigures::new();
        let first = match kinds[0] {
            Kind::Keepalived => vrrp_crash(&mut bed, &mut figures),
            Kind::Vipd => vrrp_handover(&mut bed, Handover::Drain, &mut figures),
        };
        let r = first.and_then(|()| vrrp_handover(&mut bed, Handover::Stop, &mut figures));
        match r {
            Ok(()) => {
                for (metric, value) in figures {
                    out.metrics.entry(metric).or_default().push(value);
                }
            }
            Err(e) => {
                let msg = format!("run {run_no}: {e:#}");
                eprintln!("\n  {} {} {msg}", pair_name(kinds), wire.label());
                out.failures.push(msg);
                if out.failures.len() > runs / 2 + 1 {
                    bail!("too many failures");
                }
                drop(bed);
                bed = VrrpBed::new(kinds, wire)?;
            }
        }
    }
    eprintln!();
    Ok(out)
}

/// What the `vrrp` table prints: label, key, and the RFC figure beside it.
const VRRP_ROWS: [(&str, &str, Option<VrrpRef>); 10] = [
    ("crash: last advert → n2 advert", "crash_to_advert_ms", DOWN),
    ("crash: last advert → n2 answer", "crash_to_reply_ms", DOWN),
    ("stop: prio 0 → n2 advert", "stop_to_advert_ms", SKEW),
    ("stop: prio 0 → n2 answer", "stop_to_reply_ms", SKEW),
    ("stop: probes lost", "stop_lost", None),
    ("stop: longest gap ms", "stop_gap_ms", None),
    ("drain: prio 0 → n2 advert", "drain_to_advert_ms", SKEW),
    ("drain: probes lost", "drain_lost", None),
    ("drain: longest gap ms", "drain_gap_ms", None),
    (
        "drain: command returned ms",
        "drain_command_returned_ms",
        None,
    ),
];

/// The RFC figure a `vrrp` row is set beside.
#[derive(Clone, Copy)]
enum VrrpRef {
    /// n2's Master_Down_Interval.
    MasterDown,
    /// n2's Skew_Time.
    Skew,
}

const DOWN: Option<VrrpRef> = Some(VrrpRef::MasterDown);
const SKEW: Option<VrrpRef> = Some(VrrpRef::Skew);

fn render_vrrp(r: &Value, out: &mut String) {
    use std::fmt::Write as _;
    let Some(rows) = r["vrrp"]["rows"].as_array() else {
        return;
    };
    let _ = writeln!(
        out,
        "\nvipd in VRRP mode beside keepalived: n1 (priority 150) → n2 (100), fresh lab per pair and wire; times in ms"
    );
    let _ = writeln!(
        out,
        "{:<31} {:<13} {:<21} {:>3} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "case", "wire", "n1→n2", "n", "median", "min", "max", "RFC", "med−RFC"
    );
    let mut wires: Vec<&str> = rows.iter().filter_map(|v| v["wire"].as_str()).collect();
    wires.dedup();
    for wire in wires {
        let of_wire = || rows.iter().filter(move |v| v["wire"] == wire);
        for v in of_wire() {
            if let Some(e) = v.get("error") {
                let _ = writeln!(out, "{wire:<13} {}: error: {e}", v["pair"]);
            }
        }
        for (label, key, reference) in VRRP_ROWS {
            for v in of_wire() {
                let s = &v[key];
                if s.get("n").is_none() {
                    continue;
                }
                let rfc = reference.and_then(|r| match r {
                    VrrpRef::MasterDown => f(v, "master_down_ms"),
                    VrrpRef::Skew => f(v, "skew_ms"),
                });
                let diff = match (rfc, f(s, "median")) {
                    (Some(rfc), Some(m)) => format!("{:+.1}", m - rfc),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "{label:<31} {wire:<13} {:<21} {:>3} {:>8} {:>8} {:>8} {:>8} {diff:>8}",
                    v["pair"].as_str().unwrap_or(""),
                    s["n"],
                    num(s, "median"),
                    num(s, "min"),
                    num(s, "max"),
                    rfc.map_or_else(String::new, |x| format!("{x:.1}")),
                );
            }
        }
        for v in of_wire() {
            if v.get("error").is_some() {
                continue;
            }
            let _ = writeln!(
                out,
                "  {wire} {}: {} failed runs; n2 adverts while backup {}; priority-0 adverts per stop {}",
                v["pair"].as_str().unwrap_or(""),
                v["failures"].as_array().map_or(0, Vec::len),
                v["n2_adverts_as_backup"]["samples"]
                    .as_array()
                    .map_or(0.0, |a| a.iter().filter_map(Value::as_f64).sum::<f64>()),
                count(&v["stop_priority0_adverts"], "median"),
            );
        }
    }
    let _ = writeln!(
        out,
        "  RFC: n2's Master_Down_Interval (3 × interval + skew) for a crash, its Skew_Time ((256 − 100)/256 of the interval in v3, of 1 s in v2) for a priority-0 advert"
    );
    let _ = writeln!(
        out,
        "  advert times as the client's link sees them; answer = first ARP reply from n2's MAC to the 1 ms probe; lost/gap from the command to 400 ms (v2: 1.2 s) after n2's first answer"
    );
}

// ---------------------------------------------------------------------------
// Statistics and output
// ---------------------------------------------------------------------------

fn stats(samples: &[f64]) -> Value {
    if samples.is_empty() {
        return json!({"n": 0});
    }
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap()); // no NaN: all are measured numbers
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    let p95 = s[((0.95 * n as f64).ceil() as usize).clamp(1, n) - 1];
    json!({"n": n, "min": s[0], "median": median, "p95": p95, "max": s[n - 1], "samples": samples})
}

fn f(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------
// The failover cases
// ---------------------------------------------------------------------------

#[derive(Default)]
struct CaseSamples {
    crash_from_advert: Vec<f64>,
    crash_from_kill: Vec<f64>,
    drain_lost: Vec<f64>,
    drain_gap: Vec<f64>,
    drain_dual: Vec<f64>,
    preempt_lost: Vec<f64>,
    preempt_gap: Vec<f64>,
    preempt_takeover: Vec<f64>,
    baseline_lost: Vec<f64>,
    baseline_probes: usize,
    failures: Vec<String>,
}

/// A lab with both nodes running `kind`, n1 master, a prober on the VIP.
struct Bed {
    // Field order is drop order: daemons and prober before the namespaces.
    daemons: [Daemon; 2],
    prober: ArpProber,
    lab: Lab,
    /// MACs of n1 and n2.
    macs: [[u8; 6]; 2],
}

impl Bed {
    fn new(kind: Kind, setup: &Setup) -> Result<Self> {
        let lab = new_lab();
        let prober = ArpProber::start(&lab.client, VIP)?;
        let daemons = [
            configure(kind, lab.node(1), 0, setup),
            configure(kind, lab.node(2), 1, setup),
        ];
        Ok(Self {
            daemons,
            prober,
            macs: [lab.node(1).mac_bytes(), lab.node(2).mac_bytes()],
            lab,
        })
    }

    fn start_both(&mut self, interval: Duration) -> Result<()> {
        start(&mut self.daemons[1]);
        start(&mut self.daemons[0]);
        let t = Instant::now();
        self.prober
            .wait_reply(self.macs[0], t, Duration::from_secs(20) + interval * 6)
            .with_context(|| format!("n1 never answered:\n{}", self.daemons[0].log_tail(15)))?;
        Ok(())
    }
}

fn settle_time(interval: Duration) -> Duration {
    (interval * 3).max(Duration::from_millis(400))
}

fn run_cases(kind: Kind, interval: Duration, runs: usize) -> Result<CaseSamples> {
    let setup = Setup {
        interval,
        instances: vec![(51, vec![VIP])],
    };
    let mut out = CaseSamples::default();
    let mut bed = Bed::new(kind, &setup)?;
    bed.start_both(interval)?;
    // vipd backups rank themselves once they have heard every peer (backups
    // advertise every max(interval, 1 s)): give them that before the first crash.
    sleep_checked(Duration::from_millis(2500) + interval * 2);
    let mut run_no = 0;
    while run_no < runs {
        run_no += 1;
        eprint!(
            "\r  {} {:>5} ms: run {run_no}/{runs}   ",
            kind.name(),
            interval.as_millis()
        );
        if let Err(e) = one_run(kind, interval, &mut bed, &mut out) {
            let msg = format!("run {run_no}: {e:#}");
            eprintln!("\n  {} {} ms {msg}", kind.name(), interval.as_millis());
            out.failures.push(msg);
            if out.failures.len() > runs / 2 + 2 {
                bail!("too many failures");
            }
            // Start over from a fresh lab.
            drop(bed);
            bed = Bed::new(kind, &setup)?;
            bed.start_both(interval)?;
            sleep_checked(Duration::from_millis(2500) + interval * 2);
        }
    }
    eprintln!();
    Ok(out)
}

fn one_run(kind: Kind, interval: Duration, bed: &mut Bed, out: &mut CaseSamples) -> Result<()> {
    let [m1, m2] = bed.macs;
    let settle = settle_time(interval);
    let bound = kind.bound(interval);
    let reply_timeout = bound + interval * 2 + Duration::from_secs(3);

    // --- crash failover ----------------------------------------------------
    bed.prober
        .wait_stable(m1, settle, Duration::from_secs(30) + interval * 10)?;
    bed.prober.clear();
    sleep_checked(settle);
    let t_kill = Instant::now();
    bed.daemons[0].crash();
    bed.lab.node(1).link(false);
    let t_new = bed.prober.wait_reply(m2, t_kill, reply_timeout)?;
    let log = bed.prober.snapshot();
    let last_advert = log
        .adverts
        .iter()
        .filter(|(t, m)| *m == m1 && *t <= t_kill)
        .map(|a| a.0)
        .next_back()
        .ok_or_else(|| anyhow!("no advert from n1 seen before the kill"))?;
    let base_lost = log
        .window(t_kill - settle + Duration::from_millis(5), t_kill)
        .lost;
    out.baseline_lost.push(base_lost as f64);
    out.baseline_probes += log
        .probes
        .iter()
        .filter(|&&s| s >= t_kill - settle + Duration::from_millis(5) && s < t_kill)
        .count();
    out.crash_from_advert.push(ms(t_new - last_advert));
    out.crash_from_kill.push(ms(t_new - t_kill));

    // --- preempt-back: n1 returns (as after a reboot: no stale VIP) --------
    back_from_crash(bed.lab.node(1));
    bed.prober
        .wait_stable(m2, settle, Duration::from_secs(30) + interval * 10)?;
    bed.prober.clear();
    sleep_checked(Duration::from_millis(50));
    let t_start = Instant::now();
    start(&mut bed.daemons[0]);
    let t_back = bed
        .prober
        .wait_reply(m1, t_start, reply_timeout + Duration::from_secs(5))
        .with_context(|| format!("preempt-back:\n{}", bed.daemons[0].log_tail(15)))?;
    let end = t_back + settle;
    sleep_checked(end.saturating_duration_since(Instant::now()) + Duration::from_millis(5));
    let log = bed.prober.snapshot();
    let window = log.window(t_start, end);
    out.preempt_lost.push(window.lost as f64);
    out.preempt_gap.push(window.longest_gap_ms);
    out.preempt_takeover.push(ms(t_back - t_start));

    // --- graceful handover: drain --wait / SIGTERM ------------------------
    // vipd ranks a returning peer only after hearing it; give it a backup interval.
    sleep_checked(Duration::from_millis(1200));
    bed.prober
        .wait_stable(m1, settle, Duration::from_secs(30) + interval * 10)?;
    bed.prober.clear();
    sleep_checked(Duration::from_millis(50));
    let t0 = Instant::now();
    match kind {
        Kind::Vipd => {
            vipctl(&bed.daemons[0], &["drain", "--wait", "--timeout", "30s"])?;
        }
        Kind::Keepalived => stop(&mut bed.daemons[0]),
    }
    let t_new = bed.prober.wait_reply(m2, t0, reply_timeout)?;
    let end = Instant::now().max(t_new) + settle;
    sleep_checked(end.saturating_duration_since(Instant::now()) + Duration::from_millis(5));
    let log = bed.prober.snapshot();
    let window = log.window(t0, end);
    out.drain_lost.push(window.lost as f64);
    out.drain_gap.push(window.longest_gap_ms);
    out.drain_dual.push(window.answered_by_two as f64);

    // --- back to n1 as master (not measured) ------------------------------
    match kind {
        Kind::Vipd => {
            vipctl(&bed.daemons[0], &["undrain"])?;
        }
        Kind::Keepalived => start(&mut bed.daemons[0]),
    }
    let t = Instant::now();
    bed.prober
        .wait_reply(m1, t, reply_timeout + Duration::from_secs(5))
        .context("n1 did not come back after the handover")?;
    sleep_checked(Duration::from_millis(1200));
    Ok(())
}

// ---------------------------------------------------------------------------
// Footprint at 10 ms adverts
// ---------------------------------------------------------------------------

fn run_footprint(kind: Kind, window: Duration) -> Result<Value> {
    let interval = Duration::from_millis(10);
    let setup = Setup {
        interval,
        instances: vec![(51, vec![VIP])],
    };
    let mut bed = Bed::new(kind, &setup)?;
    bed.start_both(interval)?;
    sleep_checked(Duration::from_secs(3));
    bed.prober.wait_stable(
        bed.macs[0],
        Duration::from_millis(500),
        Duration::from_secs(20),
    )?;
    // The prober is not needed for this and costs a little CPU: stop it.
    let Bed {
        daemons,
        prober,
        lab,
        ..
    } = bed;
    drop(prober);
    // With VIPD_BENCH_METRICS, a scraper asks both nodes every second, as a
    // Prometheus would (its curl processes are not counted: they start after
    // the daemons' processes were listed).
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = (metrics_on() && kind == Kind::Vipd).then(|| {
        let namespaces: Vec<(String, String)> = lab.nodes[..2]
            .iter()
            .map(|h| {
                (
                    h.ns.name.clone(),
                    format!("http://{}/metrics", metrics_target(h)),
                )
            })
            .collect();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut scrapes = 0u32;
            while !stop.load(Ordering::Relaxed) {
                for (ns, url) in &namespaces {
                    let ok = Command::new("ip")
                        .args(["netns", "exec", ns, "curl", "-sf", "-o", "/dev/null", url])
                        .status()
                        .is_ok_and(|s| s.success());
                    scrapes += u32::from(ok);
                }
                thread::sleep(Duration::from_secs(1));
            }
            scrapes
        })
    });
    let r = footprint(&[&daemons[0], &daemons[1]], window);
    stop.store(true, Ordering::Relaxed);
    if let Some(scrapes) = scraper.and_then(|t| t.join().ok()) {
        eprintln!("   metrics scraped {scrapes} times during the window");
    }
    drop(daemons);
    drop(lab);
    Ok(json!({"daemon": kind.name(), "interval_ms": 10, "master": r[0], "backup": r[1]}))
}

/// `VIPD_BENCH_METRICS` is set (to anything but 0).
fn metrics_on() -> bool {
    std::env::var("VIPD_BENCH_METRICS").is_ok_and(|v| v != "0")
}

/// Where a node serves metrics when [`metrics_on`].
fn metrics_target(host: &Host) -> String {
    format!("{}:9650", host.v4)
}

// ---------------------------------------------------------------------------
// 255 groups on one interface
// ---------------------------------------------------------------------------

/// The IPv4 addresses on `host`'s `eth0`.
fn ipv4_held(host: &Host) -> HashSet<Ipv4Addr> {
    host.addresses()
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect()
}

fn scale_vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(NET[0], NET[1], 2, i as u8)
}

fn run_scale255(kind: Kind, window: Duration) -> Result<Value> {
    let interval = Duration::from_secs(1);
    let setup = Setup {
        interval,
        instances: (1..=255u8)
            .map(|g| (g, vec![scale_vip(usize::from(g))]))
            .collect(),
    };
    let lab = new_lab();
    let mut daemons = [
        configure(kind, lab.node(1), 0, &setup),
        configure(kind, lab.node(2), 1, &setup),
    ];
    let mon1 = AddrMonitor::start(&lab.node(1).ns.name)?;
    let mon2 = AddrMonitor::start(&lab.node(2).ns.name)?;
    let t_start = Instant::now();
    start(&mut daemons[1]);
    start(&mut daemons[0]);
    let all: HashSet<Ipv4Addr> = (1..=255).map(scale_vip).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        sleep_checked(Duration::from_millis(200));
        let h1 = ipv4_held(lab.node(1));
        let h2 = ipv4_held(lab.node(2));
        if all.is_subset(&h1) && h2.is_disjoint(&all) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "n1 did not come to hold all 255 VIPs alone within 60 s (n1 {}, n2 {}):\n{}",
                h1.intersection(&all).count(),
                h2.intersection(&all).count(),
                daemons[0].log_tail(15)
            );
        }
    }
    let steady_after = ms(t_start.elapsed());
    sleep_checked(Duration::from_secs(5));
    let fp = footprint(&[&daemons[0], &daemons[1]], window);
    drop(mon1);

    // Failover of every group.
    let t_kill = Instant::now();
    daemons[0].crash();
    lab.node(1).link(false);
    let bound = kind.bound(interval);
    let deadline = t_kill + bound + Duration::from_secs(10);
    let mut times: BTreeMap<Ipv4Addr, f64> = BTreeMap::new();
    loop {
        sleep_checked(Duration::from_millis(50));
        for (t, new, a) in mon2.events() {
            if new && t >= t_kill && all.contains(&a) {
                times.entry(a).or_insert(ms(t - t_kill));
            }
        }
        if times.len() == all.len() || Instant::now() > deadline {
            break;
        }
    }
    let samples: Vec<f64> = times.values().copied().collect();
    let tolerance = 5.0;
    let within = samples
        .iter()
        .filter(|&&x| x <= ms(bound) + tolerance)
        .count();
    Ok(json!({
        "daemon": kind.name(),
        "groups": 255,
        "interval_ms": 1000,
        "all_held_by_n1_after_start_ms": steady_after,
        "master": fp[0],
        "backup": fp[1],
        "failover_from_kill_ms": stats(&samples),
        "groups_taken_over": samples.len(),
        "groups_within_bound": within,
        "bound_ms": ms(bound),
        "bound_tolerance_ms": tolerance,
        "note": "times from the SIGKILL to the VIP appearing on n2 (rtnetlink); the last advert precedes the kill, so each is at most the bound when on time",
    }))
}

// ---------------------------------------------------------------------------
// One group with 1,000 VIPs
// ---------------------------------------------------------------------------

fn many_vip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(NET[0], NET[1], 4 + (k / 250) as u8, 1 + (k % 250) as u8)
}

/// First and last event times (ms after `t0`) of `new` for the addresses in `set`,
/// and how many were seen.
fn span(
    events: &[(Instant, bool, Ipv4Addr)],
    new: bool,
    set: &HashSet<Ipv4Addr>,
    t0: Instant,
) -> (Option<f64>, Option<f64>, usize) {
    let mut seen = HashSet::new();
    let (mut first, mut last) = (None, None);
    for &(t, n, a) in events {
        if n == new && t >= t0 && set.contains(&a) && seen.insert(a) {
            first.get_or_insert(ms(t - t0));
            last = Some(ms(t - t0));
        }
    }
    (first, last, seen.len())
}

fn garp_span(
    garps: &[(Instant, [u8; 6], Ipv4Addr)],
    mac: [u8; 6],
    set: &HashSet<Ipv4Addr>,
    t0: Instant,
) -> (Option<f64>, Option<f64>, usize) {
    let ev: Vec<_> = garps
        .iter()
        .filter(|g| g.1 == mac)
        .map(|g| (g.0, true, g.2))
        .collect();
    span(&ev, true, set, t0)
}

fn run_vips1000(kind: Kind) -> Result<Value> {
    let interval = Duration::from_millis(100);
    let vips: Vec<Ipv4Addr> = (0..1000).map(many_vip).collect();
    let set: HashSet<Ipv4Addr> = vips.iter().copied().collect();
    let setup = Setup {
        interval,
        instances: vec![(51, vips)],
    };
    let lab = new_lab();
    let macs = [lab.node(1).mac_bytes(), lab.node(2).mac_bytes()];
    let prober = ArpProber::start(&lab.client, many_vip(0))?;
    let mut daemons = [
        configure(kind, lab.node(1), 0, &setup),
        configure(kind, lab.node(2), 1, &setup),
    ];
    let mon1 = AddrMonitor::start(&lab.node(1).ns.name)?;
    let mon2 = AddrMonitor::start(&lab.node(2).ns.name)?;
    let wait_count = |mon: &AddrMonitor, new: bool, t0: Instant, limit: Duration| -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            sleep_checked(Duration::from_millis(20));
            if span(&mon.events(), new, &set, t0).2 == set.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "not all 1000 VIPs {} within {limit:?}",
                    if new { "added" } else { "removed" }
                );
            }
        }
    };

    // Claim: n1 alone starts and becomes master.
    let t_start = Instant::now();
    start(&mut daemons[0]);
    wait_count(&mon1, true, t_start, Duration::from_secs(60))
        .with_context(|| daemons[0].log_tail(15))?;
    sleep_checked(Duration::from_secs(3));
    let (c_first, c_last, _) = span(&mon1.events(), true, &set, t_start);
    let (g_first, g_last, g_count) = garp_span(&prober.snapshot().garps, macs[0], &set, t_start);

    // Handover: n2 starts as backup; then n1 drains (vipd) or stops (keepalived).
    start(&mut daemons[1]);
    sleep_checked(Duration::from_secs(4));
    prober.clear();
    let t0 = Instant::now();
    match kind {
        Kind::Vipd => {
            vipctl(&daemons[0], &["drain", "--wait", "--timeout", "60s"])?;
        }
        Kind::Keepalived => stop(&mut daemons[0]),
    }
    let cmd_ms = ms(t0.elapsed());
    let count_on = |host: &Host| ipv4_held(host).intersection(&set).count();
    wait_count(&mon1, false, t0, Duration::from_secs(30)).with_context(|| {
        format!(
            "n1 still holds {} of the VIPs ({} left after the command):\n{}",
            count_on(lab.node(1)),
            kind.name(),
            daemons[0].log_tail(15)
        )
    })?;
    wait_count(&mon2, true, t0, Duration::from_secs(30))
        .with_context(|| format!("n2 holds {} of the VIPs", count_on(lab.node(2))))?;
    sleep_checked(Duration::from_secs(3));
    let (r_first, r_last, _) = span(&mon1.events(), false, &set, t0);
    let (n2_first, n2_last, _) = span(&mon2.events(), true, &set, t0);
    let (g2_first, g2_last, g2_count) = garp_span(&prober.snapshot().garps, macs[1], &set, t0);
    let d = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => json!(b - a),
        _ => Value::Null,
    };
    drop(prober);
    Ok(json!({
        "daemon": kind.name(),
        "vips": 1000,
        "interval_ms": 100,
        "claim_first_add_after_start_ms": c_first,
        "claim_all_added_ms": d(c_first, c_last),
        "announce_first_garp_after_start_ms": g_first,
        "announce_all_garped_ms": d(c_first, g_last),
        "announce_distinct_vips_garped": g_count,
        "announce_first_to_last_garp_ms": d(g_first, g_last),
        "handover_command_returned_ms": cmd_ms,
        "release_first_del_after_command_ms": r_first,
        "release_all_removed_after_command_ms": r_last,
        "release_first_to_last_del_ms": d(r_first, r_last),
        "successor_first_add_after_command_ms": n2_first,
        "successor_all_added_ms": d(n2_first, n2_last),
        "successor_all_garped_after_command_ms": g2_last,
        "successor_distinct_vips_garped": g2_count,
        "successor_first_garp_after_command_ms": g2_first,
        "note": "claim: n1 started alone; times from rtnetlink events and the GARPs seen by the client; 'all added/garped' count from the first VIP added",
    }))
}

// ---------------------------------------------------------------------------
// What clients see (issue 10): partition and heal, advert loss, a frozen
// master, the master's link down
// ---------------------------------------------------------------------------

/// How long after an event the bench waits for the client to be back on the
/// master's MAC before it gives up (and counts what it lost meanwhile).
const CLIENT_BACK_CAP: Duration = Duration::from_secs(10);

/// Whether a row meets its target, given its lost probes and longest outage (ms).
type TargetMet = fn(f64, f64) -> bool;

/// One measured row of the client cases: what the table prints per case.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum ClientRow {
    PartitionDuring,
    PartitionAfterHeal,
    Loss100,
    Loss10,
    Frozen,
    LinkDown,
}

impl ClientRow {
    const ALL: [Self; 6] = [
        Self::PartitionDuring,
        Self::PartitionAfterHeal,
        Self::Loss100,
        Self::Loss10,
        Self::Frozen,
        Self::LinkDown,
    ];

    fn key(self) -> &'static str {
        match self {
            Self::PartitionDuring => "partition_during",
            Self::PartitionAfterHeal => "partition_after_heal",
            Self::Loss100 => "advert_loss_20pct_100ms",
            Self::Loss10 => "advert_loss_20pct_10ms",
            Self::Frozen => "master_frozen",
            Self::LinkDown => "master_link_down",
        }
    }

    fn label(self, loss_secs: u64) -> String {
        match self {
            Self::PartitionDuring => "partition 3 s: during".into(),
            Self::PartitionAfterHeal => "partition 3 s: after heal".into(),
            Self::Loss100 | Self::Loss10 => format!("20% advert loss {loss_secs} s"),
            Self::Frozen => "master SIGSTOP 5 intervals".into(),
            Self::LinkDown => "master link down 2 s".into(),
        }
    }

    fn interval(self) -> Duration {
        match self {
            Self::Loss10 => Duration::from_millis(10),
            _ => Duration::from_millis(100),
        }
    }

    /// The issue's target for vipd: (text, met given lost probes and longest outage ms).
    fn target(self) -> Option<(&'static str, TargetMet)> {
        match self {
            Self::PartitionDuring => None,
            Self::PartitionAfterHeal => Some(("<= 5 lost", |lost, _| lost <= 5.0)),
            Self::Loss100 | Self::Loss10 => Some(("<= 50 lost", |lost, _| lost <= 50.0)),
            Self::Frozen => Some(("<= 1 lost", |lost, _| lost <= 1.0)),
            // 3 x 100 ms + vipd's 2 ms margin.
            Self::LinkDown => Some(("outage <= 302 ms", |_, outage| outage <= 302.0)),
        }
    }
}

/// What the client saw over one window of one run.
#[derive(Clone, Debug, Default)]
struct ClientMeasure {
    /// Probes sent in the window.
    probes: usize,
    /// Probes the client lost: sent to the MAC of the last gratuitous ARP for the
    /// VIP it saw (the master's before the first), and not answered by that MAC.
    lost: usize,
    /// The longest time between two probes the client got answered, the window's
    /// edges included, in ms.
    longest_outage_ms: f64,
    /// [`ProbeLog::window`]: probes nobody answered (whoever held the VIP).
    any_holder_lost: usize,
    /// [`ProbeLog::window`]: the longest gap between replies from anyone, ms.
    any_holder_gap_ms: f64,
    /// Times n2 logged a transition to master in the window.
    n2_takeovers: usize,
    /// Bursts of gratuitous ARPs from n2's MAC (a GARP over 1 s after n2's previous one starts a burst).
    n2_garp_bursts: usize,
    /// From the event to the client's first answered probe to n1's MAC after its
    /// last lost or elsewhere-sent one; `None`: not back by the window's end.
    back_on_master_ms: Option<f64>,
    /// Adverts the nftables rule dropped (loss and partition cases).
    adverts_dropped: Option<u64>,
    /// For reading a run afterwards: the client's outages (start ms after the
    /// window's start, length ms, the node it sent to) and the GARPs for the VIP
    /// (ms, node), the first 100 of each.
    detail: Value,
}

/// Per probe in `[from, to)` of `log`: its send time, the MAC the client sent
/// it to (that of the last gratuitous ARP for [`VIP`] before it, else
/// `start_mac`), and whether that MAC answered it. A reply counts for the last
/// probe sent before it arrived, as in [`ProbeLog::window`].
fn client_probes(
    log: &ProbeLog,
    start_mac: [u8; 6],
    from: Instant,
    to: Instant,
) -> Vec<(Instant, [u8; 6], bool)> {
    let first = log.probes.partition_point(|&s| s < from);
    let last = log.probes.partition_point(|&s| s < to);
    let mut repliers: Vec<Vec<[u8; 6]>> = vec![Vec::new(); last.saturating_sub(first)];
    for &(t, mac) in &log.replies {
        let idx = log.probes.partition_point(|&s| s <= t);
        if idx > first && idx - 1 < last {
            repliers[idx - 1 - first].push(mac);
        }
    }
    let garps: Vec<(Instant, [u8; 6])> = log
        .garps
        .iter()
        .filter(|g| g.2 == VIP)
        .map(|g| (g.0, g.1))
        .collect();
    let mut cached = start_mac;
    let mut next_garp = 0;
    let mut out = Vec::with_capacity(repliers.len());
    for (k, &sent) in log.probes[first..last].iter().enumerate() {
        while next_garp < garps.len() && garps[next_garp].0 <= sent {
            cached = garps[next_garp].1;
            next_garp += 1;
        }
        out.push((sent, cached, repliers[k].contains(&cached)));
    }
    out
}

/// The client's lost probes and longest outage (ms) over `probes` in `[from, to)`.
fn client_loss(probes: &[(Instant, [u8; 6], bool)], from: Instant, to: Instant) -> (usize, f64) {
    let lost = probes.iter().filter(|p| !p.2).count();
    let mut last_ok = from;
    let mut longest = Duration::ZERO;
    for &(sent, _, ok) in probes {
        if ok {
            longest = longest.max(sent.saturating_duration_since(last_ok));
            last_ok = sent;
        }
    }
    longest = longest.max(to.saturating_duration_since(last_ok));
    (lost, ms(longest))
}

/// When the client was back for good on `master` (see
/// [`ClientMeasure::back_on_master_ms`]), as a time; `None` if its last probe
/// still went elsewhere or was lost.
fn client_back_at(probes: &[(Instant, [u8; 6], bool)], master: [u8; 6]) -> Option<Instant> {
    let bad = |p: &(Instant, [u8; 6], bool)| !p.2 || p.1 != master;
    match probes.iter().rposition(bad) {
        None => probes.first().map(|p| p.0),
        Some(i) => probes.get(i + 1).map(|p| p.0),
    }
}

/// Waits until the client has been on n1's MAC, answered, for `settle`, or
/// until `event + CLIENT_BACK_CAP`; returns the window's end.
fn wait_client_back(bed: &Bed, event: Instant, settle: Duration) -> Instant {
    let cap = event + CLIENT_BACK_CAP;
    loop {
        sleep_checked(Duration::from_millis(100));
        let now = Instant::now();
        let log = bed.prober.snapshot();
        let probes = client_probes(&log, bed.macs[0], event, now);
        if let Some(back) = client_back_at(&probes, bed.macs[0]) {
            if now.saturating_duration_since(back) >= settle {
                return back + settle;
            }
        }
        if now >= cap {
            return cap;
        }
    }
}

/// Lines of `log` after byte `from` in which the daemon became master.
fn master_transitions(kind: Kind, log: &str, from: usize) -> usize {
    let needle = match kind {
        Kind::Vipd => "state=master",
        Kind::Keepalived => "Entering MASTER STATE",
    };
    log.get(from..)
        .unwrap_or("")
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Bursts of gratuitous ARPs for [`VIP`] from `mac` in `[from, to)`: a GARP
/// more than 1 s after the previous one from `mac` starts a burst.
fn garp_bursts(log: &ProbeLog, mac: [u8; 6], from: Instant, to: Instant) -> usize {
    let mut bursts = 0;
    let mut previous: Option<Instant> = None;
    for &(t, m, a) in &log.garps {
        if m != mac || a != VIP || t < from || t >= to {
            continue;
        }
        if previous.is_none_or(|p| t.duration_since(p) > Duration::from_secs(1)) {
            bursts += 1;
        }
        previous = Some(t);
    }
    bursts
}

/// Everything [`ClientMeasure`] holds, over `[from, to)`, for an event at `event`.
fn measure_client(
    kind: Kind,
    bed: &Bed,
    n2_log_from: usize,
    event: Instant,
    from: Instant,
    to: Instant,
) -> ClientMeasure {
    let log = bed.prober.snapshot();
    // The client starts each case on n1's MAC (the prober is cleared once the
    // master answers alone); the model follows the GARPs from the clear on.
    let start = log.probes.first().copied().unwrap_or(from);
    let all = client_probes(&log, bed.macs[0], start, to);
    let split = all.partition_point(|p| p.0 < from);
    let probes = &all[split..];
    let (lost, longest_outage_ms) = client_loss(probes, from, to);
    let any = log.window(from, to);
    let after_event = &all[all.partition_point(|p| p.0 < event)..];
    ClientMeasure {
        probes: probes.len(),
        lost,
        longest_outage_ms,
        any_holder_lost: any.lost,
        any_holder_gap_ms: any.longest_gap_ms,
        n2_takeovers: master_transitions(kind, &bed.daemons[1].log(), n2_log_from),
        n2_garp_bursts: garp_bursts(&log, bed.macs[1], from, to),
        back_on_master_ms: client_back_at(after_event, bed.macs[0])
            .map(|t| ms(t.saturating_duration_since(event))),
        adverts_dropped: None,
        detail: client_detail(probes, &log, bed.macs, from, to),
    }
}

/// [`ClientMeasure::detail`].
fn client_detail(
    probes: &[(Instant, [u8; 6], bool)],
    log: &ProbeLog,
    macs: [[u8; 6]; 2],
    from: Instant,
    to: Instant,
) -> Value {
    let node = |mac: [u8; 6]| match macs.iter().position(|m| *m == mac) {
        Some(i) => format!("n{}", i + 1),
        None => common::fmt_mac(&mac),
    };
    let at = |t: Instant| (ms(t.saturating_duration_since(from)) * 10.0).round() / 10.0;
    let mut outages = Vec::new();
    let mut k = 0;
    while k < probes.len() && outages.len() < 100 {
        if probes[k].2 {
            k += 1;
            continue;
        }
        let start = k;
        while k < probes.len() && !probes[k].2 {
            k += 1;
        }
        let end = probes.get(k).map_or(to, |p| p.0);
        outages.push(json!([
            at(probes[start].0),
            (ms(end - probes[start].0) * 10.0).round() / 10.0,
            node(probes[start].1)
        ]));
    }
    let garps: Vec<Value> = log
        .garps
        .iter()
        .filter(|g| g.2 == VIP && g.0 >= from && g.0 < to)
        .take(100)
        .map(|g| json!([at(g.0), node(g.1)]))
        .collect();
    json!({"outages": outages, "garps": garps})
}

/// The nftables match for `kind`'s adverts.
fn advert_match(kind: Kind) -> &'static str {
    match kind {
        // vipd's adverts: UDP to its port (tests/common/probe.rs VIPD_ADVERT_PORT).
        Kind::Vipd => "udp dport 5880",
        Kind::Keepalived => "ip protocol 112",
    }
}

/// Loads a table `name` in `ns` whose input chain drops `kind`'s adverts that
/// `condition` (nftables, may be empty) selects, with a counter.
fn drop_adverts_in(ns: &Netns, name: &str, kind: Kind, condition: &str) {
    ns.nft(&format!(
        "table inet {name} {{\n\tchain input {{\n\t\ttype filter hook input priority 0; policy accept;\n\
         \t\t{} {condition} counter drop\n\t}}\n}}\n",
        advert_match(kind)
    ));
}

/// Deletes table `name` from `ns` and returns how many packets its counter dropped.
fn remove_table(ns: &Netns, name: &str) -> Option<u64> {
    let listing = ns.exec(&["nft", "list", "table", "inet", name]);
    ns.nft(&format!("delete table inet {name}\n"));
    listing
        .split("counter packets ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A fresh lab running `kind` at `interval`, n1 master and answering alone,
/// the backups ranked, the prober cleared.
fn client_bed(kind: Kind, interval: Duration) -> Result<Bed> {
    let setup = Setup {
        interval,
        instances: vec![(51, vec![VIP])],
    };
    let mut bed = Bed::new(kind, &setup)?;
    bed.start_both(interval)?;
    // vipd backups rank themselves once they have heard every peer (backups
    // advertise every max(interval, 1 s)).
    sleep_checked(Duration::from_millis(2500) + interval * 2);
    bed.prober.wait_stable(
        bed.macs[0],
        settle_time(interval),
        Duration::from_secs(30) + interval * 10,
    )?;
    bed.prober.clear();
    Ok(bed)
}

/// The quiet lead-in of every case: also shows the baseline (probes lost with
/// nothing happening), for scheduling noise.
const LEAD_IN: Duration = Duration::from_millis(300);

fn client_partition(kind: Kind) -> Result<Vec<(ClientRow, ClientMeasure)>> {
    let interval = Duration::from_millis(100);
    let bed = client_bed(kind, interval)?;
    sleep_checked(LEAD_IN);
    let n2_log = bed.daemons[1].log().len();
    let table = "vipd_bench_partition";
    let t_cut = Instant::now();
    for node in [1, 2] {
        drop_adverts_in(&bed.lab.node(node).ns, table, kind, "");
    }
    sleep_checked(Duration::from_secs(3));
    let t_heal = Instant::now();
    let n2_at_heal = bed.daemons[1].log().len();
    let dropped: u64 = [1, 2]
        .iter()
        .filter_map(|&n| remove_table(&bed.lab.node(n).ns, table))
        .sum();
    let end = wait_client_back(&bed, t_heal, settle_time(interval));
    let n2_text = bed.daemons[1].log();
    let mut during = measure_client(kind, &bed, n2_log, t_cut, t_cut, t_heal);
    // The transitions up to the heal only; the rest belong to the heal.
    during.n2_takeovers = master_transitions(kind, n2_text.get(..n2_at_heal).unwrap_or(""), n2_log);
    during.adverts_dropped = Some(dropped);
    // Its window ends at the heal, not when the client is back.
    during.back_on_master_ms = None;
    let after = measure_client(kind, &bed, n2_at_heal, t_heal, t_heal, end);
    Ok(vec![
        (ClientRow::PartitionDuring, during),
        (ClientRow::PartitionAfterHeal, after),
    ])
}

fn client_loss_case(kind: Kind, row: ClientRow, loss: Duration) -> Result<ClientMeasure> {
    let interval = row.interval();
    let bed = client_bed(kind, interval)?;
    sleep_checked(LEAD_IN);
    let n2_log = bed.daemons[1].log().len();
    let table = "vipd_bench_loss";
    let ns = &bed.lab.node(2).ns;
    let t_on = Instant::now();
    drop_adverts_in(ns, table, kind, "numgen random mod 100 < 20");
    sleep_checked(loss);
    let t_off = Instant::now();
    let dropped = remove_table(ns, table);
    let end = wait_client_back(&bed, t_off, settle_time(interval));
    let mut m = measure_client(kind, &bed, n2_log, t_off, t_on, end);
    m.adverts_dropped = dropped;
    Ok(m)
}

fn client_frozen(kind: Kind) -> Result<ClientMeasure> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let interval = Duration::from_millis(100);
    let bed = client_bed(kind, interval)?;
    sleep_checked(LEAD_IN);
    let n2_log = bed.daemons[1].log().len();
    let pids = bed.daemons[0].namespace_pids();
    let t_stop = Instant::now();
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
    }
    sleep_checked(interval * 5);
    let t_cont = Instant::now();
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
    }
    let end = wait_client_back(&bed, t_cont, settle_time(interval));
    Ok(measure_client(kind, &bed, n2_log, t_stop, t_stop, end))
}

fn client_link_down(kind: Kind) -> Result<ClientMeasure> {
    let interval = Duration::from_millis(100);
    let bed = client_bed(kind, interval)?;
    sleep_checked(LEAD_IN);
    let n2_log = bed.daemons[1].log().len();
    let t_down = Instant::now();
    bed.lab.node(1).link(false);
    sleep_checked(Duration::from_secs(2));
    let t_up = Instant::now();
    bed.lab.node(1).link(true);
    let end = wait_client_back(&bed, t_up, settle_time(interval));
    Ok(measure_client(kind, &bed, n2_log, t_down, t_down, end))
}

/// nftables rules that cut a node off on eth0 with its link up (a silent master).
const CUT_ETH0: &str = "table inet vipd_bench_cut {\n\tchain i {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tiifname \"eth0\" drop\n\t}\n\tchain o {\n\t\ttype filter hook output priority 0; policy accept;\n\t\toifname \"eth0\" drop\n\t}\n}\n";

/// Routed mode (issue 16) beside L2 mode, vipd only, 100 ms adverts: the same
/// failures seen from a client. Routed: the client beyond the router pings the
/// VIP every 5 ms; the figure is the longest time without a reply, and when the
/// router's kernel route moved to n2. L2: the client ARP-probes every 1 ms
/// (`client_link_down`).
fn run_routed() -> Result<Value> {
    use common::routed::{
        frr_installed, longest_gap_ms, probe_around, start as start_routed, RoutedLab,
    };
    if !frr_installed() {
        bail!("FRR is not installed (apt-get install frr)");
    }
    let mut rows = Vec::new();
    let mut row =
        |case: &str, mode: &str, moved: Option<f64>, lost: usize, sent: usize, gap: f64| {
            rows.push(json!({
                "case": case, "mode": mode, "router_moved_ms": moved,
                "lost": lost, "probes": sent, "longest_gap_ms": gap,
            }));
        };
    let cases: [(&str, &str, bool); 4] = [
        ("master link down", "link", false),
        ("master silent, link up", "silent", false),
        ("master silent, link up", "silent", true),
        ("vipd drain", "drain", false),
    ];
    for (case, how, bfd) in cases {
        let lab = RoutedLab::new(&format!("bnrt{how}{}", u8::from(bfd)), bfd);
        let daemons = start_routed(&lab);
        let (result, moved) = probe_around(
            &lab,
            Duration::from_secs(1),
            Duration::from_secs(6),
            || match how {
                "link" => {
                    lab.node(1).ns.ip(&["link", "set", "eth0", "down"]);
                }
                "silent" => lab.node(1).ns.nft(CUT_ETH0),
                _ => {
                    let _ = daemons[0].cli(&["drain"]);
                }
            },
        );
        let mode = if bfd {
            "route (BGP, BFD 100 ms x 3)"
        } else {
            "route (BGP timers 1/3 s)"
        };
        row(
            case,
            mode,
            Some(ms(moved)),
            result.lost.len(),
            result.sent as usize,
            longest_gap_ms(&result),
        );
        if interrupted() {
            bail!("interrupted");
        }
    }
    let l2 = client_link_down(Kind::Vipd)?;
    row(
        "master link down",
        "arp (L2, one segment)",
        None,
        l2.lost,
        l2.probes,
        l2.longest_outage_ms,
    );
    Ok(json!(rows))
}

fn render_routed(v: &Value, out: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "\nrouted mode beside L2 mode (vipd, 100 ms adverts; routed: FRR 8.4 eBGP via a router, client pings every 5 ms; L2: client ARP probe every 1 ms)");
    let Some(rows) = v.as_array() else {
        let _ = writeln!(out, "  {v}");
        return;
    };
    for r in rows {
        let moved = r["router_moved_ms"]
            .as_f64()
            .map_or_else(|| "-".to_owned(), |m| format!("{m:.0} ms"));
        let _ = writeln!(
            out,
            "  {:<24} {:<28} router moved {:>8}  lost {:>4}/{:<5} longest gap {:>7.1} ms",
            r["case"].as_str().unwrap_or("?"),
            r["mode"].as_str().unwrap_or("?"),
            moved,
            r["lost"],
            r["probes"],
            r["longest_gap_ms"].as_f64().unwrap_or(f64::NAN),
        );
    }
}

/// Runs every client case `runs` times for `kind`; per row, the measures of the
/// runs that worked, and the failures.
fn run_clients(
    kind: Kind,
    runs: usize,
    loss: Duration,
) -> (BTreeMap<ClientRow, Vec<ClientMeasure>>, Vec<String>) {
    let mut rows: BTreeMap<ClientRow, Vec<ClientMeasure>> = BTreeMap::new();
    let mut failures = Vec::new();
    type Case = Box<dyn Fn() -> Result<Vec<(ClientRow, ClientMeasure)>>>;
    let cases: Vec<(&str, Case)> = vec![
        ("partition", Box::new(move || client_partition(kind))),
        (
            "loss 100 ms",
            Box::new(move || {
                Ok(vec![(
                    ClientRow::Loss100,
                    client_loss_case(kind, ClientRow::Loss100, loss)?,
                )])
            }),
        ),
        (
            "loss 10 ms",
            Box::new(move || {
                Ok(vec![(
                    ClientRow::Loss10,
                    client_loss_case(kind, ClientRow::Loss10, loss)?,
                )])
            }),
        ),
        (
            "frozen",
            Box::new(move || Ok(vec![(ClientRow::Frozen, client_frozen(kind)?)])),
        ),
        (
            "link down",
            Box::new(move || Ok(vec![(ClientRow::LinkDown, client_link_down(kind)?)])),
        ),
    ];
    for (name, case) in &cases {
        for run_no in 1..=runs {
            if interrupted() {
                return (rows, failures);
            }
            eprintln!("  {} {name}: run {run_no}/{runs}", kind.name());
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(case)) {
                Ok(Ok(measures)) => {
                    for (row, m) in measures {
                        rows.entry(row).or_default().push(m);
                    }
                }
                Ok(Err(e)) => failures.push(format!("{name} run {run_no}: {e:#}")),
                Err(_) => failures.push(format!("{name} run {run_no}: panicked or interrupted")),
            }
        }
    }
    (rows, failures)
}

/// The JSON of one row of one daemon.
fn client_row_json(
    kind: Kind,
    row: ClientRow,
    loss_secs: u64,
    measures: &[ClientMeasure],
) -> Value {
    let col = |g: fn(&ClientMeasure) -> f64| stats(&measures.iter().map(g).collect::<Vec<_>>());
    let back: Vec<f64> = measures
        .iter()
        .filter_map(|m| m.back_on_master_ms)
        .collect();
    let dropped: Vec<f64> = measures
        .iter()
        .filter_map(|m| m.adverts_dropped.map(|d| d as f64))
        .collect();
    json!({
        "daemon": kind.name(),
        "case": row.key(),
        "label": row.label(loss_secs),
        "interval_ms": row.interval().as_millis() as u64,
        "runs": measures.len(),
        "probes": col(|m| m.probes as f64),
        "lost_probes": col(|m| m.lost as f64),
        "longest_outage_ms": col(|m| m.longest_outage_ms),
        "any_holder_lost_probes": col(|m| m.any_holder_lost as f64),
        "any_holder_longest_gap_ms": col(|m| m.any_holder_gap_ms),
        "n2_takeovers": col(|m| m.n2_takeovers as f64),
        "n2_garp_bursts": col(|m| m.n2_garp_bursts as f64),
        "back_on_master_ms": stats(&back),
        "runs_not_back_on_master": if row == ClientRow::PartitionDuring {
            Value::Null
        } else {
            json!(measures.len() - back.len())
        },
        "detail_per_run": measures.iter().map(|m| m.detail.clone()).collect::<Vec<_>>(),
        "adverts_dropped": stats(&dropped),
    })
}

// ---------------------------------------------------------------------------
// Simulation output (run by benches/run.sh before this bench)
// ---------------------------------------------------------------------------

fn parse_simulation() -> Value {
    let Ok(path) = std::env::var("VIPD_BENCH_SIM_OUTPUT") else {
        return json!({"status": "not run (benches/run.sh runs it; VIPD_BENCH_SIM_OUTPUT unset)"});
    };
    let text = fs::read_to_string(&path).unwrap_or_default();
    // "full_group_of_255: 2 seeds, 255 nodes, 1.23 simulated hours in 45.6s wall"
    for line in text.lines() {
        if let Some(i) = line.find("full_group_of_255:") {
            let l = &line[i..];
            let hours = l
                .split(" simulated hours")
                .next()
                .and_then(|s| s.rsplit(' ').next())
                .and_then(|s| s.parse::<f64>().ok());
            let wall = l
                .split(" in ")
                .nth(1)
                .and_then(|s| s.split('s').next())
                .and_then(|s| s.parse::<f64>().ok());
            if let (Some(h), Some(w)) = (hours, wall) {
                return json!({
                    "status": "ok",
                    "line": l.trim(),
                    "simulated_hours": h,
                    "wall_s": w,
                    "wall_s_per_simulated_hour": w / h,
                });
            }
        }
    }
    json!({"status": format!("no result line in {path}"), "output_tail": text.lines().rev().take(5).collect::<Vec<_>>()})
}

// ---------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------

fn machine() -> Value {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default().trim().to_owned();
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .unwrap_or("")
        .trim_matches('"')
        .to_owned();
    let cpus = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let keepalived = Command::new(keepalived_bin())
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .chain(String::from_utf8_lossy(&o.stdout).lines())
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_else(|_| "not found".into());
    json!({
        "date": stdout_of("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "os": os,
        "kernel": read("/proc/sys/kernel/osrelease"),
        "cpus": cpus,
        "cpu_model": model,
        "keepalived": keepalived,
        "vipd_commit": stdout_of("git", &["rev-parse", "--short", "HEAD"]),
    })
}

/// What `program args` printed, trimmed; empty if it failed.
fn stdout_of(program: &str, args: &[&str]) -> String {
    let out = run_output(program, args);
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    } else {
        String::new()
    }
}

fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Other compilers and test binaries running meanwhile (the machine is shared).
fn busy_processes() -> usize {
    let mut n = 0;
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            let c = comm.trim();
            if c == "rustc"
                || c == "cargo"
                || c.starts_with("simulation-")
                || c == "cc"
                || c == "ld"
            {
                n += 1;
            }
        }
    }
    n
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("failover bench: needs root (network namespaces); run `benches/run.sh` as root");
        std::process::exit(2);
    }
    install_interrupt_handlers();
    let quick = std::env::var("VIPD_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let runs = env_num("VIPD_BENCH_RUNS", if quick { 5 } else { 20 }) as usize;
    let runs_1s = env_num("VIPD_BENCH_RUNS_1S", runs as u64) as usize;
    let cpu_window =
        Duration::from_secs(env_num("VIPD_BENCH_CPU_SECS", if quick { 10 } else { 30 }));
    let intervals: Vec<u64> = std::env::var("VIPD_BENCH_INTERVALS")
        .unwrap_or_else(|_| "1000,100,10".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let only = std::env::var("VIPD_BENCH_ONLY").unwrap_or_default();
    let want = |s: &str| only.is_empty() || only.split(',').any(|x| x.trim() == s);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = repo.join("target/bench");
    fs::create_dir_all(&out_dir).expect("create target/bench");

    let started = Instant::now();
    let load_start = loadavg();
    let busy_start = busy_processes();
    let mut results = json!({
        "machine": machine(),
        "options": {
            "quick": quick, "runs": runs, "runs_1s": runs_1s, "intervals_ms": intervals,
            "cpu_window_s": cpu_window.as_secs(),
        },
        "config": {
            "topology": "bridge (mcast_snooping 0, forward_delay 0) in a switch namespace; n1 (priority 150), n2 (priority 100) and a client, each a namespace on a veth port",
            "probe": "client sends an ARP request for the VIP every 1 ms over AF_PACKET; a probe is lost when no reply arrives before the next one is sent",
            "vipd": "defaults: takeover_margin 2ms, backup_advert_interval max(interval,1s), announce 5 x 100ms + repeat after 5s, preempt on, HMAC key auth",
            "keepalived": "vrrp_version 3, state BACKUP on both, preempt (default), vrrp_garp_master_delay 0 (no delayed second burst), other defaults (garp_master_repeat 5, garp_interval 0), no auth (VRRPv3 has none)",
            "crash": "all processes in the master's namespace SIGKILLed, then its eth0 set down; figure: last advert of the old master seen on the link -> first probe answered by the new master's MAC",
            "graceful": "vipd: `vipd drain --wait`; keepalived: SIGTERM (sends priority 0); window from the command to 3 x interval (>= 400 ms) after the new master's first answer",
            "preempt_back": "the crashed node comes back (its stale VIP removed as a reboot would, link up, daemon started); window from the start to 3 x interval (>= 400 ms) after its first answer",
            "bounds": "vipd: 3 x interval + takeover_margin (2 ms) for the best backup; VRRPv3: 3 x interval + (256-100)/256 x interval (Skew_Time at priority 100)",
        },
    });
    let mut table = String::new();

    // -- failover cases -----------------------------------------------------
    if want("cases") {
        let mut cases = Vec::new();
        for &i in &intervals {
            let interval = Duration::from_millis(i);
            let n = if i >= 1000 { runs_1s } else { runs };
            let mut per_kind = Vec::new();
            for kind in [Kind::Vipd, Kind::Keepalived] {
                eprintln!("== cases: {} at {i} ms, {n} runs", kind.name());
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_cases(kind, interval, n)
                }));
                let v = match r {
                    Ok(Ok(s)) => json!({
                        "daemon": kind.name(),
                        "interval_ms": i,
                        "bound_ms": ms(kind.bound(interval)),
                        "crash_failover_ms": stats(&s.crash_from_advert),
                        "crash_failover_from_kill_ms": stats(&s.crash_from_kill),
                        "graceful_lost_probes": stats(&s.drain_lost),
                        "graceful_gap_ms": stats(&s.drain_gap),
                        "graceful_probes_answered_by_both": stats(&s.drain_dual),
                        "preempt_lost_probes": stats(&s.preempt_lost),
                        "preempt_gap_ms": stats(&s.preempt_gap),
                        "preempt_takeover_after_start_ms": stats(&s.preempt_takeover),
                        "baseline_lost_probes": s.baseline_lost.iter().sum::<f64>(),
                        "baseline_probes": s.baseline_probes,
                        "failures": s.failures,
                    }),
                    Ok(Err(e)) => {
                        json!({"daemon": kind.name(), "interval_ms": i, "error": format!("{e:#}")})
                    }
                    Err(_) => {
                        json!({"daemon": kind.name(), "interval_ms": i, "error": "panicked or interrupted"})
                    }
                };
                per_kind.push(v);
                if interrupted() {
                    break;
                }
            }
            cases.extend(per_kind);
            if interrupted() {
                break;
            }
        }
        results["cases"] = json!(cases);
    }

    // -- what clients see (issue 10) -----------------------------------------
    if want("clients") && !interrupted() {
        // One run per case unless VIPD_BENCH_RUNS says otherwise: each takes a
        // fresh lab and the loss cases last VIPD_BENCH_LOSS_SECS.
        let client_runs = env_num("VIPD_BENCH_RUNS", 1).max(1) as usize;
        let loss_secs = env_num("VIPD_BENCH_LOSS_SECS", 30);
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        for kind in [Kind::Vipd, Kind::Keepalived] {
            eprintln!(
                "== clients: {} ({client_runs} run(s) per case)",
                kind.name()
            );
            let (measured, failed) = run_clients(kind, client_runs, Duration::from_secs(loss_secs));
            for row in ClientRow::ALL {
                rows.push(match measured.get(&row) {
                    Some(m) => client_row_json(kind, row, loss_secs, m),
                    None => json!({
                        "daemon": kind.name(), "case": row.key(), "label": row.label(loss_secs),
                        "interval_ms": row.interval().as_millis() as u64,
                        "error": "no run of this case succeeded",
                    }),
                });
            }
            failures.push(json!({"daemon": kind.name(), "failures": failed}));
            if interrupted() {
                break;
            }
        }
        results["clients"] = json!({
            "runs": client_runs,
            "loss_secs": loss_secs,
            "back_cap_s": CLIENT_BACK_CAP.as_secs(),
            "method": "one fresh lab per case and run, n1 (150) master, n2 (100) backup, same priorities and intervals for both daemons; \
                the client sends each 1 ms probe to the MAC of the last gratuitous ARP for the VIP it saw (n1's before the first), as a host \
                whose neighbour entry never expires would: lost = not answered by that MAC; longest outage = longest time between two answered \
                probes, window edges included; any_holder_* = ProbeLog::window (anyone holding the VIP answers the broadcast request); \
                windows: partition during = cut..heal, after heal = heal..client back on n1's MAC + 400 ms (at most 10 s); loss = rule on..client back after the rule is removed; \
                frozen = SIGSTOP..back after SIGCONT; link down = down..back after up; n2_takeovers = n2's log lines entering master \
                (vipd `state=master`, keepalived `Entering MASTER STATE`) in the window; n2_garp_bursts = n2's GARPs for the VIP, a new burst after 1 s without one",
            "partition": "nftables input chain in both nodes drops the adverts (vipd: udp dport 5880; keepalived: ip protocol 112) for 3 s",
            "loss": "nftables input chain in n2 drops the adverts with `numgen random mod 100 < 20`",
            "frozen": "every process in n1's namespace SIGSTOPped for 5 intervals, then SIGCONT",
            "link_down": "n1's eth0 down for 2 s, then up",
            "rows": rows,
            "failures": failures,
        });
    }

    // -- footprint ----------------------------------------------------------
    if want("footprint") && !interrupted() {
        let mut fps = Vec::new();
        for kind in [Kind::Vipd, Kind::Keepalived] {
            eprintln!("== footprint: {} at 10 ms for {cpu_window:?}", kind.name());
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_footprint(kind, cpu_window)
            }));
            fps.push(match r {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => json!({"daemon": kind.name(), "error": format!("{e:#}")}),
                Err(_) => json!({"daemon": kind.name(), "error": "panicked or interrupted"}),
            });
        }
        results["footprint"] = json!(fps);
    }

    // -- 255 groups -----------------------------------------------------------
    if want("scale255") && !interrupted() {
        let mut v = Vec::new();
        for kind in [Kind::Vipd, Kind::Keepalived] {
            eprintln!("== 255 groups at 1 s: {}", kind.name());
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_scale255(kind, cpu_window)
            }));
            v.push(match r {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => json!({"daemon": kind.name(), "error": format!("{e:#}")}),
                Err(_) => json!({"daemon": kind.name(), "error": "panicked or interrupted"}),
            });
        }
        results["scale255"] = json!(v);
    }

    // -- 1,000 VIPs -------------------------------------------------------------
    if want("vips1000") && !interrupted() {
        let mut v = Vec::new();
        for kind in [Kind::Vipd, Kind::Keepalived] {
            eprintln!("== 1000 VIPs in one group: {}", kind.name());
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_vips1000(kind)));
            v.push(match r {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => json!({"daemon": kind.name(), "error": format!("{e:#}")}),
                Err(_) => json!({"daemon": kind.name(), "error": "panicked or interrupted"}),
            });
        }
        results["vips1000"] = json!(v);
    }

    // -- routed mode beside L2 (issue 16) -----------------------------------------
    if want("routed") && !interrupted() {
        eprintln!("== routed mode (FRR) beside L2 mode: vipd at 100 ms");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run_routed));
        let v = match r {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => json!({"error": format!("{e:#}")}),
            Err(_) => json!({"error": "panicked or interrupted"}),
        };
        render_routed(&v, &mut table);
        results["routed"] = v;
    }

    // -- floods (issue 11) ---------------------------------------------------------
    if want("flood") && !interrupted() {
        let secs = env_num("VIPD_BENCH_FLOOD_SECS", 3).max(1);
        let mut rows = Vec::new();
        for i in [100u64, 10] {
            for kind in [Kind::Vipd, Kind::Keepalived] {
                eprintln!("== flood: {} at {i} ms, {secs} s per flood", kind.name());
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_flood(kind, Duration::from_millis(i), Duration::from_secs(secs))
                }));
                match r {
                    Ok(Ok(v)) => rows.extend(v),
                    Ok(Err(e)) => rows.push(
                        json!({"daemon": kind.name(), "interval_ms": i, "error": format!("{e:#}")}),
                    ),
                    Err(_) => rows.push(
                        json!({"daemon": kind.name(), "interval_ms": i, "error": "panicked or interrupted"}),
                    ),
                }
                if interrupted() {
                    break;
                }
            }
        }
        results["flood"] = json!({
            "secs": secs,
            "method": "fresh lab per daemon and interval, n1 (150) master, n2 (100) backup; from the client's namespace one thread sends with sendmmsg \
                (64 per call) for `secs`: one source = a UDP socket (vipd) or raw IP socket proto 112 (keepalived), TTL 255, round-robin to the group \
                and n1's address; spoofed = AF_PACKET frames, a random source in 10.251.0.0/16 per packet, to the group. vipd junk: magic, version 1, \
                group 51, HMAC auth type, priority 255, MASTER, bad MAC; keepalived junk: VRRPv3, VRID 51, priority 255, the VIP, bad checksum. \
                gap: n1's adverts as received in n2's namespace (AF_PACKET + BPF on n1's MAC, SO_TIMESTAMPNS)",
            "rows": rows,
        });
    }

    // -- vipd in VRRP mode beside keepalived ------------------------------------------
    if want("vrrp") && !interrupted() {
        let runs = env_num("VIPD_BENCH_RUNS", 5).max(1) as usize;
        let runs_v2 = env_num("VIPD_BENCH_RUNS_1S", 2) as usize;
        let wires = [
            (
                Wire {
                    version: 3,
                    interval: Duration::from_millis(100),
                },
                runs,
            ),
            (
                Wire {
                    version: 2,
                    interval: Duration::from_secs(1),
                },
                runs_v2,
            ),
        ];
        let mut rows = Vec::new();
        'wires: for (wire, n) in wires.into_iter().filter(|w| w.1 > 0) {
            for kinds in VRRP_PAIRS {
                eprintln!(
                    "== vrrp: {} at {}, {n} runs",
                    pair_name(kinds),
                    wire.label()
                );
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_vrrp(kinds, wire, n)
                }));
                let mut row = json!({
                    "wire": wire.label(),
                    "version": wire.version,
                    "interval_ms": wire.interval.as_millis() as u64,
                    "pair": pair_name(kinds),
                    "n1": kinds[0].name(),
                    "n2": kinds[1].name(),
                    "master_down_ms": ms(wire.master_down(PRIO[1])),
                    "skew_ms": ms(wire.skew(PRIO[1])),
                });
                match r {
                    Ok(Ok(s)) => {
                        for (metric, samples) in &s.metrics {
                            row[metric] = stats(samples);
                        }
                        row["failures"] = json!(s.failures);
                    }
                    Ok(Err(e)) => row["error"] = json!(format!("{e:#}")),
                    Err(_) => row["error"] = json!("panicked or interrupted"),
                }
                rows.push(row);
                if interrupted() {
                    break 'wires;
                }
            }
        }
        results["vrrp"] = json!({
            "runs_vrrp3_100ms": runs,
            "runs_vrrp2_1s": runs_v2,
            "method": "a fresh lab per pair and wire: n1 (priority 150) and n2 (100), both speaking VRRP (vipd: protocol = \"vrrp3\"/\"vrrp2\", auth = \"none\"; \
                keepalived: vrrp_version 3/2, state BACKUP, vrrp_garp_master_delay 0; VRRPv2 with PASS authentication on both), VRID 51, one VIP; \
                n1 starts first, n2 once n1 answers. Every event follows 400 ms (v2: 1.2 s) of n1 answering alone. Adverts: every IP protocol 112 frame \
                on the client's link with its priority, timed when read (as the ARP prober's replies). keepalived master: crash = every process in n1's \
                namespace SIGKILLed and its eth0 down, from n1's last advert to n2's first advert and first ARP answer, then n1 back (VIP removed, link up, \
                started) and preempting; stop = SIGTERM, from n1's first priority-0 advert, probes lost and longest gap from the SIGTERM to 400 ms (1.2 s) \
                after n2's first answer, then n1 restarted. vipd master: `vipd drain --wait` then `vipd undrain`, and SIGTERM then a restart, measured as the stop",
            "rows": rows,
        });
    }

    results["simulation"] = parse_simulation();
    let load_end = loadavg();
    let busy_end = busy_processes();
    let noisy = load_start > 0.7 || load_end > 0.7 || busy_start > 0 || busy_end > 0;
    results["noise"] = json!({
        "loadavg_1m_start": load_start, "loadavg_1m_end": load_end,
        "other_build_processes_start": busy_start, "other_build_processes_end": busy_end,
        "shared_or_noisy": noisy,
        "elapsed_s": started.elapsed().as_secs_f64(),
        "interrupted": interrupted(),
    });
    results["targets"] = targets(&results);

    render(&results, &mut table);
    print!("{table}");
    let path = out_dir.join("results.json");
    let mut file = fs::File::create(&path).expect("create results.json");
    file.write_all(serde_json::to_string_pretty(&results).unwrap().as_bytes())
        .expect("write results.json");
    println!("\nwrote {}", path.display());
}

fn find<'a>(list: &'a Value, daemon: &str, interval: Option<u64>) -> Option<&'a Value> {
    list.as_array()?.iter().find(|v| {
        v["daemon"] == daemon && interval.is_none_or(|i| v["interval_ms"].as_u64() == Some(i))
    })
}

fn targets(r: &Value) -> Value {
    let mut t = Vec::new();
    let cases = &r["cases"];
    if let Some(list) = cases.as_array() {
        let mut intervals: Vec<u64> = list
            .iter()
            .filter_map(|v| v["interval_ms"].as_u64())
            .collect();
        intervals.dedup();
        for i in intervals {
            let (Some(v), Some(k)) = (
                find(cases, "vipd", Some(i)),
                find(cases, "keepalived", Some(i)),
            ) else {
                continue;
            };
            let vc = &v["crash_failover_ms"];
            let kc = &k["crash_failover_ms"];
            if let (Some(vmax), Some(bound)) = (f(vc, "max"), f(v, "bound_ms")) {
                t.push(json!({
                    "target": format!("crash failover within 5 ms of the bound at {i} ms (vipd max - bound)"),
                    "value_ms": vmax - bound, "met": vmax - bound <= 5.0,
                }));
            }
            if let (Some(vm), Some(km), Some(vp), Some(kp)) =
                (f(vc, "median"), f(kc, "median"), f(vc, "p95"), f(kc, "p95"))
            {
                t.push(json!({
                    "target": format!("crash failover never slower than keepalived at {i} ms (median and p95)"),
                    "vipd_median": vm, "keepalived_median": km, "vipd_p95": vp, "keepalived_p95": kp,
                    "met": vm <= km && vp <= kp,
                }));
            }
            for (case, key) in [
                ("graceful handover", "graceful_lost_probes"),
                ("preempt-back", "preempt_lost_probes"),
            ] {
                if let (Some(vmax), Some(kmed)) = (f(&v[key], "max"), f(&k[key], "median")) {
                    t.push(json!({
                        "target": format!("{case} at {i} ms: vipd loses at most 1 probe where keepalived loses more"),
                        "vipd_max_lost": vmax, "keepalived_median_lost": kmed,
                        "met": vmax <= 1.0 && (kmed > vmax || kmed <= 1.0),
                    }));
                }
            }
        }
    }
    for row in ClientRow::ALL {
        let Some((text, met)) = row.target() else {
            continue;
        };
        let rows = &r["clients"]["rows"];
        let (Some(v), Some(k)) = (
            client_find(rows, "vipd", row),
            client_find(rows, "keepalived", row),
        ) else {
            continue;
        };
        if let (Some(lost), Some(outage)) = (
            f(&v["lost_probes"], "max"),
            f(&v["longest_outage_ms"], "max"),
        ) {
            t.push(json!({
                "target": format!("clients: {} at {} ms: vipd {text} (vipd {lost:.0} lost, {outage:.0} ms; keepalived {} lost, {} ms)",
                    v["label"].as_str().unwrap_or(""), row.interval().as_millis(),
                    num(&k["lost_probes"], "max"), num(&k["longest_outage_ms"], "max")),
                "vipd_max_lost": lost, "vipd_max_outage_ms": outage,
                "met": met(lost, outage),
            }));
        }
    }
    if let Some(v) = find(&r["footprint"], "vipd", None) {
        for role in ["master", "backup"] {
            if let (Some(rss), Some(cpu)) = (f(&v[role], "rss_kib"), f(&v[role], "cpu_percent")) {
                t.push(json!({"target": format!("vipd {role} at 10 ms: under 8 MiB resident"), "rss_kib": rss, "met": rss < 8192.0}));
                t.push(json!({"target": format!("vipd {role} at 10 ms: under 1% of a core"), "cpu_percent": cpu, "met": cpu < 1.0}));
            }
        }
    }
    issue15_targets(r, &mut t);
    if let Some(list) = r["scale255"].as_array() {
        for v in list {
            if let (Some(n), Some(w)) = (
                v["groups_taken_over"].as_u64(),
                v["groups_within_bound"].as_u64(),
            ) {
                t.push(json!({"target": format!("{}: all 255 groups fail over within their bound", v["daemon"].as_str().unwrap_or("")),
                    "taken_over": n, "within_bound": w, "met": n == 255 && w == 255}));
            }
        }
    }
    json!(t)
}

/// Issue 15's targets, each with keepalived's figure beside vipd's: CPU at
/// 10 ms adverts (master at most half of keepalived's, backup at most
/// keepalived's), 255 groups at 1 s, memory, and the detection median within
/// 1 ms of vipd's own bound.
fn issue15_targets(r: &Value, t: &mut Vec<Value>) {
    let cpu = |v: &Value, role: &str| {
        f(&v[role], "perf_cpu_percent").or_else(|| f(&v[role], "cpu_percent"))
    };
    if let (Some(v), Some(k)) = (
        find(&r["footprint"], "vipd", None),
        find(&r["footprint"], "keepalived", None),
    ) {
        for (role, share, text) in [
            ("master", 0.5, "at most half of keepalived's"),
            ("backup", 1.0, "at most keepalived's"),
        ] {
            if let (Some(vc), Some(kc)) = (cpu(v, role), cpu(k, role)) {
                t.push(json!({"target": format!("issue 15: {role} CPU at 10 ms {text} (perf task-clock): vipd {vc:.3}%, keepalived {kc:.3}%"),
                    "vipd_percent": vc, "keepalived_percent": kc, "met": vc <= kc * share}));
            }
        }
        if let Some(rss) = f(&v["master"], "rss_kib") {
            t.push(json!({"target": format!("issue 15: one group, at most 8 MiB resident: vipd {rss:.0} KiB, keepalived {} KiB", num(&k["master"], "rss_kib")),
                "rss_kib": rss, "met": rss <= 8192.0}));
        }
    }
    if let (Some(v), Some(k)) = (
        find(&r["scale255"], "vipd", None),
        find(&r["scale255"], "keepalived", None),
    ) {
        for role in ["master", "backup"] {
            if let (Some(vc), Some(kc)) = (cpu(v, role), cpu(k, role)) {
                t.push(json!({"target": format!("issue 15: 255 groups at 1 s, {role} CPU at most keepalived's: vipd {vc:.3}%, keepalived {kc:.3}%"),
                    "vipd_percent": vc, "keepalived_percent": kc, "met": vc <= kc}));
            }
        }
        if let Some(rss) = f(&v["master"], "rss_kib") {
            t.push(json!({"target": format!("issue 15: 255 groups, at most 16 MiB resident: vipd {rss:.0} KiB, keepalived {} KiB", num(&k["master"], "rss_kib")),
                "rss_kib": rss, "met": rss <= 16384.0}));
        }
    }
    if let Some(list) = r["cases"].as_array() {
        for v in list.iter().filter(|v| v["daemon"] == "vipd") {
            let i = v["interval_ms"].as_u64().unwrap_or(0);
            if let (Some(median), Some(bound)) =
                (f(&v["crash_failover_ms"], "median"), f(v, "bound_ms"))
            {
                let k = find(&r["cases"], "keepalived", Some(i))
                    .map(|k| num(&k["crash_failover_ms"], "median"))
                    .unwrap_or_default();
                t.push(json!({"target": format!("issue 15: detection median within 1 ms of vipd's bound at {i} ms: vipd {median:.1} ms (bound {bound:.1}), keepalived {k} ms"),
                    "median_ms": median, "bound_ms": bound, "met": median - bound <= 1.0}));
            }
        }
    }
}

/// The row of `daemon` for `row` in the clients' results.
fn client_find<'a>(rows: &'a Value, daemon: &str, row: ClientRow) -> Option<&'a Value> {
    rows.as_array()?
        .iter()
        .find(|v| v["daemon"] == daemon && v["case"] == row.key())
}

/// The clients' table (issue 10): one line per case, vipd beside keepalived.
fn render_clients(r: &Value, out: &mut String) {
    use std::fmt::Write as _;
    let c = &r["clients"];
    let Some(rows) = c.get("rows") else {
        return;
    };
    let runs = c["runs"].as_u64().unwrap_or(1);
    let _ = writeln!(
        out,
        "\nwhat a client sees (issue 10), {runs} run(s) per case: each 1 ms probe goes to the MAC of the last gratuitous ARP the client saw"
    );
    let _ = writeln!(
        out,
        "{:<28} {:>5} | {:<22} | {:<24} | {:<30} | target (vipd)",
        "case",
        "int",
        "vipd lost (outage)",
        "keepalived lost (outage)",
        "spurious takeovers vipd / ka"
    );
    // Median lost with the longest outage of any run; `*`: a run in which the
    // client was not back on the master's MAC when the window closed.
    let cell = |v: Option<&Value>| -> String {
        let Some(v) = v else {
            return "-".into();
        };
        if let Some(e) = v.get("error") {
            return format!("error: {}", e.as_str().unwrap_or(""));
        }
        let stuck = if v["runs_not_back_on_master"].as_u64().unwrap_or(0) > 0 {
            " *"
        } else {
            ""
        };
        format!(
            "{} ({} ms){stuck}",
            count(&v["lost_probes"], "median"),
            num(&v["longest_outage_ms"], "max")
        )
    };
    let takeovers =
        |v: Option<&Value>| v.map_or_else(|| "-".into(), |v| count(&v["n2_takeovers"], "median"));
    for row in ClientRow::ALL {
        let v = client_find(rows, "vipd", row);
        let k = client_find(rows, "keepalived", row);
        let label = v
            .or(k)
            .and_then(|x| x["label"].as_str())
            .unwrap_or(row.key())
            .to_owned();
        let spurious = matches!(row, ClientRow::Loss100 | ClientRow::Loss10);
        let _ = writeln!(
            out,
            "{label:<28} {:>5} | {:<22} | {:<24} | {:<30} | {}",
            format!("{}ms", row.interval().as_millis()),
            cell(v),
            cell(k),
            format!(
                "{} / {}{}",
                takeovers(v),
                takeovers(k),
                if spurious { "" } else { " (expected)" }
            ),
            row.target().map_or("-", |t| t.0)
        );
    }
    let _ = writeln!(
        out,
        "  lost: median over runs; outage: longest time between two answered probes, worst run; * client not back on the master's MAC {} s after the event",
        c["back_cap_s"]
    );
    let _ = writeln!(
        out,
        "  takeovers: n2's transitions to master in the window (from its log); during a partition, a freeze or the master's link down one is expected"
    );
    let _ = writeln!(out, "  anyone answering (a broadcast ARP request, ProbeLog::window): lost / longest gap ms; n2 GARP bursts; client back on n1's MAC after (ms)");
    for row in ClientRow::ALL {
        let line = |v: Option<&Value>| {
            v.filter(|v| v.get("error").is_none()).map_or_else(
                || "-".to_owned(),
                |v| {
                    format!(
                        "{} / {}; bursts {}; back {}",
                        count(&v["any_holder_lost_probes"], "median"),
                        num(&v["any_holder_longest_gap_ms"], "max"),
                        count(&v["n2_garp_bursts"], "median"),
                        num(&v["back_on_master_ms"], "median"),
                    )
                },
            )
        };
        let _ = writeln!(
            out,
            "    {:<28} vipd {:<36} keepalived {}",
            row.key(),
            line(client_find(rows, "vipd", row)),
            line(client_find(rows, "keepalived", row))
        );
    }
}

/// [`num`], without the decimal for a whole number (counts of probes, takeovers).
fn count(v: &Value, k: &str) -> String {
    match v.get(k).and_then(Value::as_f64) {
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        _ => num(v, k),
    }
}

fn num(v: &Value, k: &str) -> String {
    match v.get(k).and_then(Value::as_f64) {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "-".into(),
    }
}

fn render(r: &Value, out: &mut String) {
    use std::fmt::Write as _;
    let m = &r["machine"];
    let _ = writeln!(
        out,
        "\nvipd vs keepalived — {} — {} ({} cpus, {}), kernel {}, {}",
        m["date"].as_str().unwrap_or(""),
        m["os"].as_str().unwrap_or(""),
        m["cpus"],
        m["cpu_model"].as_str().unwrap_or(""),
        m["kernel"].as_str().unwrap_or(""),
        m["keepalived"].as_str().unwrap_or("")
    );
    let n = &r["noise"];
    if n["shared_or_noisy"].as_bool() == Some(true) {
        let _ = writeln!(
            out,
            "NOTE: shared/noisy machine (load {:.2} -> {:.2}, other build/test processes {} -> {}): tails include scheduling noise",
            n["loadavg_1m_start"].as_f64().unwrap_or(0.0),
            n["loadavg_1m_end"].as_f64().unwrap_or(0.0),
            n["other_build_processes_start"],
            n["other_build_processes_end"]
        );
    }
    if let Some(list) = r["cases"].as_array() {
        let _ = writeln!(
            out,
            "\n{:<22} {:>6} {:<11} {:>3} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
            "case", "int", "daemon", "n", "min", "median", "p95", "max", "bound", "ratio"
        );
        let metrics = [
            ("crash failover ms", "crash_failover_ms", true),
            ("  (from kill) ms", "crash_failover_from_kill_ms", true),
            ("graceful lost probes", "graceful_lost_probes", false),
            ("graceful gap ms", "graceful_gap_ms", false),
            ("preempt lost probes", "preempt_lost_probes", false),
            ("preempt gap ms", "preempt_gap_ms", false),
        ];
        let mut intervals: Vec<u64> = list
            .iter()
            .filter_map(|v| v["interval_ms"].as_u64())
            .collect();
        intervals.dedup();
        for i in intervals {
            for (label, key, bounded) in metrics {
                for daemon in ["vipd", "keepalived"] {
                    let Some(v) = find(&r["cases"], daemon, Some(i)) else {
                        continue;
                    };
                    if let Some(e) = v.get("error") {
                        if key == "crash_failover_ms" {
                            let _ = writeln!(out, "{label:<22} {i:>6} {daemon:<11} error: {e}");
                        }
                        continue;
                    }
                    let s = &v[key];
                    let ratio = if daemon == "keepalived" {
                        let vm =
                            find(&r["cases"], "vipd", Some(i)).and_then(|x| f(&x[key], "median"));
                        match (vm, f(s, "median")) {
                            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                            (Some(0.0), Some(_)) => "0/0".into(),
                            _ => "-".into(),
                        }
                    } else {
                        String::new()
                    };
                    let _ =
                        writeln!(
                        out,
                        "{label:<22} {:>6} {daemon:<11} {:>3} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
                        format!("{i}ms"),
                        s["n"],
                        num(s, "min"),
                        num(s, "median"),
                        num(s, "p95"),
                        num(s, "max"),
                        if bounded { num(v, "bound_ms") } else { String::new() },
                        ratio
                    );
                }
            }
            for daemon in ["vipd", "keepalived"] {
                if let Some(v) = find(&r["cases"], daemon, Some(i)) {
                    let fails = v["failures"].as_array().map_or(0, Vec::len);
                    let _ = writeln!(
                        out,
                        "  {i} ms {daemon}: baseline {} lost of {} probes before the crashes; {fails} failed runs",
                        v["baseline_lost_probes"], v["baseline_probes"]
                    );
                }
            }
        }
        let _ = writeln!(out, "  ratio = vipd median / keepalived median");
    }
    render_clients(r, out);
    render_flood(r, out);
    render_vrrp(r, out);
    if let Some(list) = r["footprint"].as_array() {
        let _ = writeln!(out, "\nfootprint at 10 ms adverts (one group, one VIP)");
        for v in list {
            if let Some(e) = v.get("error") {
                let _ = writeln!(out, "  {}: error: {e}", v["daemon"]);
                continue;
            }
            for role in ["master", "backup"] {
                let x = &v[role];
                let _ = writeln!(
                    out,
                    "  {:<11} {role:<7} RSS {:>6} KiB ({} processes, largest {} KiB)  CPU {:.3}% of a core over {:.0} s (perf task-clock {:.3}%, {:.0} context switches/s)",
                    v["daemon"].as_str().unwrap_or(""),
                    x["rss_kib"],
                    x["processes"],
                    x["rss_kib_largest_process"],
                    x["cpu_percent"].as_f64().unwrap_or(f64::NAN),
                    x["window_s"].as_f64().unwrap_or(0.0),
                    x["perf_cpu_percent"].as_f64().unwrap_or(f64::NAN),
                    x["perf_context_switches_per_s"].as_f64().unwrap_or(f64::NAN)
                );
            }
        }
    }
    if let Some(list) = r["scale255"].as_array() {
        let _ = writeln!(out, "\n255 groups on one interface, 1 s adverts");
        for v in list {
            if let Some(e) = v.get("error") {
                let _ = writeln!(out, "  {}: error: {e}", v["daemon"]);
                continue;
            }
            let d = v["daemon"].as_str().unwrap_or("");
            for role in ["master", "backup"] {
                let x = &v[role];
                let _ = writeln!(
                    out,
                    "  {d:<11} {role:<7} RSS {:>6} KiB ({} processes)  CPU {:.3}% of a core (perf task-clock {:.3}%)",
                    x["rss_kib"],
                    x["processes"],
                    x["cpu_percent"].as_f64().unwrap_or(f64::NAN),
                    x["perf_cpu_percent"].as_f64().unwrap_or(f64::NAN)
                );
            }
            let s = &v["failover_from_kill_ms"];
            let _ = writeln!(
                out,
                "  {d:<11} failover of all groups (from kill): {} taken over, {} within bound {} ms; min {} median {} p95 {} max {} ms",
                v["groups_taken_over"],
                v["groups_within_bound"],
                num(v, "bound_ms"),
                num(s, "min"),
                num(s, "median"),
                num(s, "p95"),
                num(s, "max")
            );
        }
    }
    if let Some(list) = r["vips1000"].as_array() {
        let _ = writeln!(out, "\none group with 1,000 VIPs (100 ms adverts)");
        for v in list {
            if let Some(e) = v.get("error") {
                let _ = writeln!(out, "  {}: error: {e}", v["daemon"]);
                continue;
            }
            let _ = writeln!(
                out,
                "  {:<11} claim: all added in {} ms, all GARPed {} ms after the first add ({} VIPs seen); release: all removed {} ms after the command; successor all added in {} ms",
                v["daemon"].as_str().unwrap_or(""),
                num(v, "claim_all_added_ms"),
                num(v, "announce_all_garped_ms"),
                v["announce_distinct_vips_garped"],
                num(v, "release_all_removed_after_command_ms"),
                num(v, "successor_all_added_ms"),
            );
        }
    }
    let s = &r["simulation"];
    let _ = writeln!(
        out,
        "\nsimulation, 255 nodes (cargo test --release --test simulation full_group_of_255)"
    );
    if s["status"] == "ok" {
        let _ = writeln!(
            out,
            "  {:.2} simulated hours in {:.1} s wall: {:.1} s wall per simulated hour",
            s["simulated_hours"].as_f64().unwrap_or(0.0),
            s["wall_s"].as_f64().unwrap_or(0.0),
            s["wall_s_per_simulated_hour"].as_f64().unwrap_or(0.0)
        );
    } else {
        let _ = writeln!(out, "  {}", s["status"]);
    }
    if let Some(list) = r["targets"].as_array() {
        let _ = writeln!(out, "\ntargets");
        for t in list {
            let _ = writeln!(
                out,
                "  [{}] {}",
                if t["met"] == true { "met " } else { "MISS" },
                t["target"].as_str().unwrap_or("")
            );
        }
    }
}
