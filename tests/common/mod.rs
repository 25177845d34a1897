//! The lab: what the integration tests (`tests/*.rs`, each `mod common;`) and the
//! benchmark (`benches/failover.rs`, `#[path = "../tests/common/mod.rs"] mod common;`)
//! use to run real `vipd` processes on a real kernel. It owns network namespaces,
//! the bridged lab, daemon processes and the probes a client sends; it may not
//! touch the root namespace's network, and it never reads vipd's source: it drives
//! the built binary only.
//!
//! # Layout
//!
//! - this file: the root check ([`require_root`]), running commands, small helpers;
//! - [`netns`]: [`Netns`], a namespace deleted on drop with every process inside,
//!   the sweep of namespaces left by a SIGKILLed run, and the interruption flag a
//!   long run (the bench) sets on SIGINT/SIGTERM so that its guards unwind;
//! - [`lab`]: [`Lab`], a bridge in a switch namespace with nodes `n1`, `n2`, ...
//!   and a client, each a [`Host`] with `eth0` on the bridge;
//! - [`daemon`]: [`Daemon`], a `vipd run` (or, for the bench, keepalived) process
//!   in a node's namespace, from a generated configuration ([`NodeSpec`],
//!   [`InstanceSpec`]); its log is printed when the test fails;
//! - [`wait`]: [`wait_until`] and [`hold_for`], polling with a deadline;
//! - [`systemd`]: [`SystemdNode`], systemd as PID 1 of its own namespaces running
//!   the shipped unit, on a lab's bridge; [`AddrWatch`] and [`NaWatch`], a node's
//!   address changes and the neighbour advertisements on a link, timestamped;
//! - [`routed`]: the routed lab (issue 16): nodes in subnets of their own behind
//!   a router, each running FRR, and a client beyond the router;
//! - [`flood`]: [`Flood`], junk adverts as fast as one thread sends them (one
//!   source or spoofed ones), and [`AdvertWatch`], a node's adverts as a peer
//!   receives them, for the longest gap during a flood;
//! - [`services`]: real services behind the VIP ([`Haproxy`], [`Nginx`],
//!   [`Postgres`]) and clients using them as their users do ([`HttpClient`]:
//!   an HTTP GET every period through the VIP, each with a deadline;
//!   [`PgWriter`]);
//! - [`etcd`]: [`EtcdCluster`], three etcd members on a lab's bridge, each in
//!   a namespace of its own, to kill, restart and cut a node off from
//!   ([`EtcdCluster::partition`]); [`KeyWatch`], a key's changes, timestamped;
//! - [`patroni`]: [`PatroniCluster`], Patroni with PostgreSQL in node
//!   namespaces on that etcd (switchover, crash of the leader), and
//!   [`VipManager`], vip-manager following Patroni's leader key;
//! - [`holders`]: [`HolderSampler`], which nodes hold a VIP, read from each
//!   node's kernel every millisecond, and its [`HolderReport`] (rounds with two
//!   holders, the longest stretch with none, each gain and loss);
//! - [`probe`]: what the client sees: [`Prober`] (a `ping` flood, counting lost
//!   probes) and [`ArpProber`] (an ARP request for the VIP every millisecond over
//!   AF_PACKET, recording which MAC answers, adverts and gratuitous ARPs), whose
//!   [`ProbeLog`] reads both as ARP sees it ([`ProbeLog::window`]) and as a client
//!   whose neighbour cache follows gratuitous ARPs does ([`ProbeLog::following`]).
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
//! left behind by a process that was itself SIGKILLed is swept away by the next run.
//!
//! Timing: [`wait_until`] polls every 10 ms and returns the time it took, for the
//! test to print. Deadlines are several times the protocol bound so that a busy
//! 2-core CI machine does not flake; tight numbers belong in the benchmark, which
//! uses [`ArpProber`].
//!
//! Each test binary compiles this module and uses part of it, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

pub(crate) mod daemon;
pub(crate) mod etcd;
pub(crate) mod flood;
pub(crate) mod holders;
pub(crate) mod lab;
pub(crate) mod netns;
pub(crate) mod patroni;
pub(crate) mod probe;
pub(crate) mod routed;
pub(crate) mod services;
pub(crate) mod systemd;
pub(crate) mod wait;

// Each test binary uses part of the lab: an unused re-export is no mistake.
#[allow(unused_imports)]
pub(crate) use daemon::*;
#[allow(unused_imports)]
pub(crate) use etcd::*;
#[allow(unused_imports)]
pub(crate) use flood::*;
#[allow(unused_imports)]
pub(crate) use holders::*;
#[allow(unused_imports)]
pub(crate) use lab::*;
#[allow(unused_imports)]
pub(crate) use netns::*;
#[allow(unused_imports)]
pub(crate) use patroni::*;
#[allow(unused_imports)]
pub(crate) use probe::*;
#[allow(unused_imports)]
pub(crate) use services::*;
#[allow(unused_imports)]
pub(crate) use systemd::*;
#[allow(unused_imports)]
pub(crate) use wait::*;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

/// The key every node of a lab shares unless a test says otherwise.
pub(crate) const KEY: &str = "vipd-test-key-0123456789abcdef";

/// The `vipd` binary under test: the one cargo built for this test or bench.
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
// Small helpers
// ---------------------------------------------------------------------------

/// `10.0.0.1/24` → `10.0.0.1`.
pub(crate) fn strip_prefix_len(vip: &str) -> &str {
    vip.split('/').next().unwrap_or(vip)
}

/// A command's stdout then stderr, as text: for messages and `contains` checks.
pub(crate) fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Starts n1 (priority 150) and n2 (100) with default settings on `vip` and
/// waits until n1 alone holds it.
pub(crate) fn start_pair(lab: &Lab, vip: &str) -> Vec<Daemon> {
    let daemons = start_nodes(
        lab,
        vec![
            InstanceSpec::new(150).vip(vip),
            InstanceSpec::new(100).vip(vip),
        ],
    );
    wait_sole_holder(lab, vip, 1, Duration::from_secs(20));
    daemons
}

/// Milliseconds, for printing.
pub(crate) fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// `aa:bb:cc:dd:ee:ff` → bytes; `None` unless it is six hex octets.
pub(crate) fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Bytes → `aa:bb:cc:dd:ee:ff`, the form `ip` and `arping` print.
pub(crate) fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
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
