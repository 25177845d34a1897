//! Network namespaces: [`Netns`] creates one and deletes it on drop with every
//! process inside; [`sweep_stale_namespaces`] removes those a SIGKILLed run left.
//! Also the interruption flag: a long run (the bench) calls
//! [`install_interrupt_handlers`], and every wait loop of the lab calls
//! [`check_interrupted`], which panics so that the guards unwind and clean up.
//! The tests never install the handlers: for them the flag stays false.

use std::fs;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{run, run_output, run_with_input};

// ---------------------------------------------------------------------------
// Interruption: SIGINT/SIGTERM/SIGHUP set a flag; wait loops check it and panic.
// ---------------------------------------------------------------------------

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP set the flag [`check_interrupted`] reads,
/// instead of killing the process with its namespaces still in place.
pub(crate) fn install_interrupt_handlers() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.expect("sigaction");
    }
}

/// Whether a signal asked this process to stop.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Panics if a signal asked this process to stop, so that the guards unwind.
pub(crate) fn check_interrupted() {
    if interrupted() {
        panic!("interrupted");
    }
}

/// Sleeps in steps of at most 20 ms, noticing an interruption.
pub(crate) fn sleep_checked(d: Duration) {
    let end = Instant::now() + d;
    loop {
        check_interrupted();
        let now = Instant::now();
        if now >= end {
            return;
        }
        thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

// ---------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------

/// Every namespace of the lab is named `vt-<tag>-<pid>-<counter>-<role>`.
pub(crate) const NETNS_PREFIX: &str = "vt";

/// Deletes namespaces left by earlier test or bench processes that died without
/// cleaning up (SIGKILL, a power cut): names are `vt-<tag>-<pid>-...`, and that
/// pid is gone.
pub(crate) fn sweep_stale_namespaces() {
    let list = run_output("ip", &["netns", "list"]);
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let mut parts = name.split('-');
        if parts.next() != Some(NETNS_PREFIX) {
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

    /// Pids of the processes in this namespace (`ip netns pids`), this process
    /// left out (a thread of it may have entered the namespace: see [`Netns::enter`]).
    pub(crate) fn pids(&self) -> Vec<i32> {
        Self::pids_in(&self.name)
    }

    /// [`Netns::pids`] of the namespace called `name`.
    pub(crate) fn pids_in(name: &str) -> Vec<i32> {
        let me = std::process::id() as i32;
        let out = run_output("ip", &["netns", "pids", name]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|&p| p != me)
            .collect()
    }

    /// SIGKILLs every process in the namespace. They are all stopped first, so
    /// that none sees another die: keepalived's VRRP child gets SIGTERM when its
    /// parent dies (PR_SET_PDEATHSIG) and would leave gracefully, with a
    /// priority-0 advert, which is not a crash.
    pub(crate) fn kill_all(&self) {
        Self::kill_all_in(&self.name);
    }

    /// [`Netns::kill_all`] in the namespace called `name`.
    pub(crate) fn kill_all_in(name: &str) {
        let pids = Self::pids_in(name);
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
        }
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// Moves the calling thread (only) into this namespace, for a prober thread
    /// that opens its sockets there.
    pub(crate) fn enter(name: &str) -> std::io::Result<()> {
        let file = fs::File::open(format!("/run/netns/{name}"))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_all();
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
