//! Rotating the advert key without an outage (issue 11): `auth_key_file` signs
//! and verifies, `auth_accept_key_files` only verifies, and the documented
//! rolling procedure — 1. accept the new key everywhere, 2. sign with the new key
//! (keeping the old one accepted), 3. drop the old key — applied with
//! `vipd reload` one node at a time, never rejects an advert, and keeps exactly
//! one holder of the VIP at every moment: a reload that changes only the keys
//! rekeys the running instance in place (`reload::plan`'s update with
//! `Change::Keys`), so even the master's reloads move nothing.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const OLD_KEY: &str = KEY;
const NEW_KEY: &str = "rotated-key-fedcba9876543210fedcba";

/// Writes `key` to `name` in the daemon's directory (mode 0600); returns the path.
fn key_file(daemon: &Daemon, name: &str, key: &str) -> String {
    let path = daemon.dir.join(name);
    fs::write(&path, format!("{key}\n")).expect("write key file");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod key file");
    path.display().to_string()
}

/// One step of the procedure on one node: the signing key (`auth_key_file`,
/// written by the lab as `db.key`) and the accepted ones.
fn configure(daemon: &Daemon, priority: u8, vip: &str, sign: &str, accept: &[&str]) {
    let accept_paths: Vec<String> = accept
        .iter()
        .enumerate()
        .map(|(i, k)| key_file(daemon, &format!("accept{i}.key"), k))
        .collect();
    let instance = InstanceSpec::new(priority)
        .vip(vip)
        .key(sign)
        .extra(&format!("auth_accept_key_files = {accept_paths:?}"));
    daemon.rewrite_config(&NodeSpec::new(&daemon.name, instance));
}

fn reload(daemon: &Daemon) -> String {
    let out = daemon.cli(&["reload"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{}: reload failed: {text}",
        daemon.name
    );
    text.trim().to_owned()
}

fn auth_failures(daemon: &Daemon) -> u64 {
    let out = daemon.cli(&["status", "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|s| s["instances"][0]["auth_failures"].as_u64())
        .unwrap_or_else(|| {
            panic!(
                "{}: no status: {} {}",
                daemon.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// When (since the watch started) the holders changed, and to whom.
type Changes = Vec<(Duration, Vec<usize>)>;

/// Watches, every few milliseconds from its own thread, which nodes hold the VIP,
/// and records every change with its time.
struct HolderWatch {
    stop: Arc<AtomicBool>,
    changes: Arc<Mutex<Changes>>,
    thread: Option<thread::JoinHandle<u64>>,
}

/// A stretch of time during which the VIP did not have exactly one holder.
#[derive(Debug)]
struct Anomaly {
    holders: Vec<usize>,
    at_ms: u128,
    /// Upper bound: until the next change was seen.
    lasted_ms: u128,
}

impl HolderWatch {
    fn start(lab: &Lab, vip: &str) -> Self {
        let namespaces: Vec<String> = lab.nodes.iter().map(|h| h.ns.name.clone()).collect();
        let needle = format!("inet {vip} ");
        let stop = Arc::new(AtomicBool::new(false));
        let changes = Arc::new(Mutex::new(Vec::new()));
        let (stopped, seen) = (Arc::clone(&stop), Arc::clone(&changes));
        let start = Instant::now();
        let thread = thread::spawn(move || {
            let mut checks = 0u64;
            let mut last: Option<Vec<usize>> = None;
            while !stopped.load(Ordering::Relaxed) {
                let holders: Vec<usize> = namespaces
                    .iter()
                    .enumerate()
                    .filter(|(_, ns)| {
                        let out = Command::new("ip")
                            .args(["-n", ns, "addr", "show", "dev", "eth0"])
                            .output()
                            .expect("ip addr");
                        String::from_utf8_lossy(&out.stdout).contains(&needle)
                    })
                    .map(|(i, _)| i + 1)
                    .collect();
                checks += 1;
                if last.as_ref() != Some(&holders) {
                    if let Ok(mut c) = seen.lock() {
                        c.push((start.elapsed(), holders.clone()));
                    }
                    last = Some(holders);
                }
                thread::sleep(Duration::from_millis(1));
            }
            if let Ok(mut c) = seen.lock() {
                c.push((start.elapsed(), Vec::new()));
            }
            checks
        });
        Self {
            stop,
            changes,
            thread: Some(thread),
        }
    }

    /// Whether the VIP had no holder at all at some moment so far.
    fn saw_no_holder(&self) -> bool {
        self.changes
            .lock()
            .map(|c| c.iter().any(|(_, h)| h.is_empty()))
            .unwrap_or(true)
    }

    /// Stops watching; returns the number of checks and every stretch without
    /// exactly one holder.
    fn stop(mut self) -> (u64, Changes, Vec<Anomaly>) {
        self.stop.store(true, Ordering::Relaxed);
        let checks = self
            .thread
            .take()
            .map_or(0, |t| t.join().expect("watch thread"));
        let changes = self.changes.lock().map(|c| c.clone()).unwrap_or_default();
        let anomalies = changes
            .windows(2)
            .filter(|w| w[0].1.len() != 1)
            .map(|w| Anomaly {
                holders: w[0].1.clone(),
                at_ms: w[0].0.as_millis(),
                lasted_ms: (w[1].0 - w[0].0).as_millis(),
            })
            .collect();
        (checks, changes, anomalies)
    }
}

impl Drop for HolderWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn rolling_key_rotation_one_node_at_a_time() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("keyrot", 2);
    let vip = lab.vip4(0);
    let priorities = [200, 100];
    let nodes = start_nodes(
        &lab,
        priorities
            .iter()
            .map(|p| InstanceSpec::new(*p).vip(&vip).key(OLD_KEY))
            .collect(),
    );
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    let watch = HolderWatch::start(&lab, &vip);

    let steps: [(&str, &str, &[&str]); 3] = [
        ("1: accept the new key", OLD_KEY, &[NEW_KEY]),
        ("2: sign with the new key", NEW_KEY, &[OLD_KEY]),
        ("3: drop the old key", NEW_KEY, &[]),
    ];
    // The backup first, then the master: the order an operator would take.
    for (step, sign, accept) in steps {
        for i in [2, 1] {
            let daemon = &nodes[i - 1];
            configure(daemon, priorities[i - 1], &vip, sign, accept);
            let summary = reload(daemon);
            eprintln!("[keyrot] step {step}, n{i}: {summary}");
            assert!(
                summary.contains("rekeyed in place"),
                "a key-only change is applied in place: {summary}"
            );
            hold_for(
                &format!("step {step} on n{i}: the VIP always held and no rejected advert"),
                Duration::from_millis(1_500),
                || !watch.saw_no_holder() && nodes.iter().all(|d| auth_failures(d) == 0),
            );
        }
    }
    // The new key alone now: n1 is master again and both hear each other.
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(5));
    for d in &nodes {
        let status = d.status_json().expect("status");
        let peers = status["instances"][0]["peers"]
            .as_array()
            .map_or(0, Vec::len);
        eprintln!(
            "[keyrot] {}: state {}, auth_failures {}, peers {peers}",
            d.name, status["instances"][0]["state"], status["instances"][0]["auth_failures"]
        );
        assert_eq!(status["instances"][0]["auth_failures"], 0, "{status:#}");
        assert_eq!(peers, 1, "{status:#}");
    }
    let (checks, changes, anomalies) = watch.stop();
    eprintln!("[keyrot] holder checks: {checks}; holder changes: {changes:?}");
    eprintln!("[keyrot] not exactly one holder: {anomalies:?}");
    assert!(
        anomalies.is_empty(),
        "exactly one holder at every moment: {anomalies:?}"
    );
    for a in &anomalies {
        eprintln!(
            "[keyrot] holders {:?} at {} ms for at most {} ms",
            a.holders, a.at_ms, a.lasted_ms
        );
    }
}
