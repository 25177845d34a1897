//! Prometheus metrics: the counters the daemon bumps, the exposition it serves
//! on `[node] metrics_listen`, and the small HTTP server that serves it.
//!
//! # Shape
//!
//! - [`Metrics`]: one per daemon. It hands each instance an [`InstanceMetrics`]
//!   (kept across restarts of the instance by a reload, so its counters only
//!   grow) and holds the node-wide facts: the last reload's outcome.
//! - [`InstanceMetrics`]: what an instance task, its VIP worker, its hooks and
//!   its socket count as they go. The advert path only does relaxed atomic
//!   adds on fixed slots: no lock, no allocation, no label lookup per advert.
//!   What changes rarely (checks, hooks) sits behind a mutex nobody holds on
//!   the advert path.
//! - [`exposition`]: the text a scrape gets, built with the prometheus-client
//!   crate from those counters plus a [`Snapshot`] the daemon takes at scrape
//!   time: each instance's status (the same answer `vipd status` gets), for the
//!   gauges (state, priorities, peers, VIPs).
//! - [`server`]: `GET /metrics` over HTTP/1 (hyper) on the daemon's runtime,
//!   bounded in connections, header size and time; everything else is 404.
//! - [`process`]: the process metrics, read from `/proc/self` (which
//!   systemd's `ProcSubset=pid` leaves visible).
//! - [`histogram`]: a fixed-bucket histogram of atomics.
//!
//! What it may not touch: the election, the sockets and the VIPs. It counts what
//! it is told and reads `/proc/self`; the daemon decides what to tell it.

pub mod exposition;
pub mod histogram;
pub mod process;
pub mod server;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::election::State;
use crate::wire::WireError;

pub use exposition::Snapshot;
pub use histogram::AtomicHistogram;

/// Why an advert (or a datagram meant as one) was not taken, as the label
/// `reason` of `vipd_adverts_rejected_total` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Arrived with a TTL / hop limit other than 255: sent from off the link.
    BadTtl,
    /// A unicast datagram from an address that is not a configured peer.
    UnknownSource,
    /// Framing, length or field errors: not a valid advert.
    Malformed,
    /// A protocol version this build does not speak.
    Version,
    /// An advert for another group reached this instance.
    OtherGroup,
    /// The MAC did not verify or the auth type differs: wrong key or forgery.
    Authentication,
    /// Not newer than what was accepted from that node (boot id, sequence).
    Replay,
}

impl Rejection {
    /// Every reason, in label order.
    pub const ALL: [Self; 7] = [
        Self::BadTtl,
        Self::UnknownSource,
        Self::Malformed,
        Self::Version,
        Self::OtherGroup,
        Self::Authentication,
        Self::Replay,
    ];

    /// The reason a decode or replay error stands for.
    pub fn of(error: &WireError) -> Self {
        match error {
            WireError::BadMac | WireError::AuthTypeMismatch { .. } => Self::Authentication,
            WireError::Replay { .. } => Self::Replay,
            WireError::WrongGroup { .. } => Self::OtherGroup,
            WireError::UnsupportedVersion(_) => Self::Version,
            _ => Self::Malformed,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::BadTtl => "bad_ttl",
            Self::UnknownSource => "unknown_source",
            Self::Malformed => "malformed",
            Self::Version => "version",
            Self::OtherGroup => "other_group",
            Self::Authentication => "authentication",
            Self::Replay => "replay",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Rejected adverts of one instance, by [`Rejection`]: shared with the socket
/// that drops datagrams before the instance sees them.
#[derive(Debug, Default)]
pub struct RejectCounters {
    counts: [AtomicU64; Rejection::ALL.len()],
}

impl RejectCounters {
    pub fn count(&self, reason: Rejection) {
        self.counts[reason.slot()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, reason: Rejection) -> u64 {
        self.counts[reason.slot()].load(Ordering::Relaxed)
    }
}

/// What a handover took, as the label `operation` of
/// `vipd_handover_duration_seconds` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handover {
    /// `vipd drain` on the master, until it is no longer master.
    Drain,
    /// `vipd promote` on a non-master, until it is master.
    Promote,
    /// A shutdown (stop or reload), until the instance released and stopped.
    Shutdown,
}

impl Handover {
    pub const ALL: [Self; 3] = [Self::Drain, Self::Promote, Self::Shutdown];

    pub fn label(self) -> &'static str {
        match self {
            Self::Drain => "drain",
            Self::Promote => "promote",
            Self::Shutdown => "shutdown",
        }
    }
}

/// The states, in the order of the one-hot `vipd_instance_state` and of the
/// transition table.
pub const STATES: [State; 4] = [
    State::Initialize,
    State::Backup,
    State::Master,
    State::Fault,
];

fn state_slot(state: State) -> usize {
    match state {
        State::Initialize => 0,
        State::Backup => 1,
        State::Master => 2,
        State::Fault => 3,
    }
}

/// Buckets of `vipd_handover_duration_seconds`: 10 ms to a minute.
const HANDOVER_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets of `vipd_advert_interarrival_seconds`: around the advert intervals
/// people use (10 ms .. seconds), fine enough to see a gap of a few intervals.
const INTERARRIVAL_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0,
];

/// One check's last result, for `vipd_check_up` and `vipd_check_duration_seconds`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CheckGauge {
    /// As the tracker counts it (rise and fall applied); `None` before the first result.
    pub up: Option<bool>,
    /// How long the last run took, for checks that run something.
    pub last_duration: Option<Duration>,
}

/// The counters of one instance. Cheap to bump from any task.
#[derive(Debug)]
pub struct InstanceMetrics {
    rejects: Arc<RejectCounters>,
    transitions: [[AtomicU64; 4]; 4],
    garp_sent: AtomicU64,
    na_sent: AtomicU64,
    /// Announcements the kernel refused to send, IPv4 and IPv6.
    garp_failed: AtomicU64,
    na_failed: AtomicU64,
    /// Faults entered because the VIPs could not be claimed or announced.
    claim_faults: AtomicU64,
    handovers: [AtomicHistogram; 3],
    interarrival: AtomicHistogram,
    /// (hook, result) → runs.
    hooks: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// check name → its last result.
    checks: Mutex<BTreeMap<String, CheckGauge>>,
}

impl Default for InstanceMetrics {
    fn default() -> Self {
        Self {
            rejects: Arc::default(),
            transitions: Default::default(),
            garp_sent: AtomicU64::new(0),
            na_sent: AtomicU64::new(0),
            garp_failed: AtomicU64::new(0),
            na_failed: AtomicU64::new(0),
            claim_faults: AtomicU64::new(0),
            handovers: [
                AtomicHistogram::new(&HANDOVER_BUCKETS),
                AtomicHistogram::new(&HANDOVER_BUCKETS),
                AtomicHistogram::new(&HANDOVER_BUCKETS),
            ],
            interarrival: AtomicHistogram::new(&INTERARRIVAL_BUCKETS),
            hooks: Mutex::default(),
            checks: Mutex::default(),
        }
    }
}

impl InstanceMetrics {
    /// The counters the instance's socket and decoder share.
    pub fn rejects(&self) -> Arc<RejectCounters> {
        Arc::clone(&self.rejects)
    }

    pub fn rejected(&self, error: &WireError) {
        self.rejects.count(Rejection::of(error));
    }

    pub fn transition(&self, from: State, to: State) {
        self.transitions[state_slot(from)][state_slot(to)].fetch_add(1, Ordering::Relaxed);
    }

    /// One gratuitous ARP (IPv4) or unsolicited NA (IPv6) for `addr` went out.
    pub fn announced(&self, addr: IpAddr) {
        match addr {
            IpAddr::V4(_) => &self.garp_sent,
            IpAddr::V6(_) => &self.na_sent,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Sending one announcement for `addr` failed.
    pub fn announce_failed(&self, addr: IpAddr) {
        match addr {
            IpAddr::V4(_) => &self.garp_failed,
            IpAddr::V6(_) => &self.na_failed,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// The instance went in fault because its VIPs could not be claimed or
    /// announced.
    pub fn claim_fault(&self) {
        self.claim_faults.fetch_add(1, Ordering::Relaxed);
    }

    pub fn handover(&self, operation: Handover, took: Duration) {
        let slot = Handover::ALL
            .iter()
            .position(|o| *o == operation)
            .unwrap_or(0);
        self.handovers[slot].observe(took.as_secs_f64());
    }

    /// What `vipd_handover_duration_seconds{operation}` holds now.
    pub fn handover_reading(&self, operation: Handover) -> histogram::HistogramReading {
        let slot = Handover::ALL
            .iter()
            .position(|o| *o == operation)
            .unwrap_or(0);
        self.handovers[slot].read()
    }

    /// The gap between two adverts of the master as this node received them.
    pub fn advert_gap(&self, gap: Duration) {
        self.interarrival.observe(gap.as_secs_f64());
    }

    /// A notify hook (`master`, `backup`, `fault`, `stop`, `any`) ran: `success`,
    /// `failure` or `timeout`.
    pub fn hook_ran(&self, hook: &str, result: &'static str) {
        let mut hooks = self.hooks.lock().unwrap_or_else(PoisonError::into_inner);
        *hooks.entry((hook.to_owned(), result)).or_default() += 1;
    }

    /// The checks as they stand now (called when a check result came in);
    /// checks no longer listed (a reload removed them) are forgotten.
    pub fn set_checks(&self, checks: Vec<(String, Option<bool>)>) {
        let mut map = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|name, _| checks.iter().any(|(n, _)| n == name));
        for (name, up) in checks {
            map.entry(name).or_default().up = up;
        }
    }

    /// How long the last run of check `name` took.
    pub fn check_took(&self, name: &str, took: Duration) {
        let mut map = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(name.to_owned()).or_default().last_duration = Some(took);
    }
}

/// The daemon's metrics: per-instance counters and the node-wide facts.
#[derive(Debug, Default)]
pub struct Metrics {
    instances: Mutex<BTreeMap<String, Arc<InstanceMetrics>>>,
    reload_ok: AtomicBool,
    /// Unix seconds of the last successful (re)load, as f64 bits.
    reload_success_at: AtomicU64,
}

impl Metrics {
    /// Metrics for a daemon whose configuration loaded at `loaded_at_unix`.
    pub fn new(loaded_at_unix: f64) -> Self {
        let metrics = Self::default();
        metrics.reloaded(true, loaded_at_unix);
        metrics
    }

    /// The counters of instance `name`, the same ones each time it starts.
    pub fn instance(&self, name: &str) -> Arc<InstanceMetrics> {
        let mut map = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(name.to_owned()).or_default())
    }

    /// Forgets instances no longer configured.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut map = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.retain(|name, _| keep(name));
    }

    /// A reload ended; `at_unix` is now, in Unix seconds.
    pub fn reloaded(&self, ok: bool, at_unix: f64) {
        self.reload_ok.store(ok, Ordering::Relaxed);
        if ok {
            self.reload_success_at
                .store(at_unix.to_bits(), Ordering::Relaxed);
        }
    }

    fn instances(&self) -> Vec<(String, Arc<InstanceMetrics>)> {
        let map = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(name, m)| (name.clone(), Arc::clone(m)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_error_has_a_reason_and_labels_are_distinct() {
        assert_eq!(Rejection::of(&WireError::BadMac), Rejection::Authentication);
        assert_eq!(
            Rejection::of(&WireError::WrongGroup {
                expected: 1,
                got: 2
            }),
            Rejection::OtherGroup
        );
        assert_eq!(Rejection::of(&WireError::BadMagic), Rejection::Malformed);
        let mut labels: Vec<&str> = Rejection::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Rejection::ALL.len());
        for (i, r) in Rejection::ALL.iter().enumerate() {
            assert_eq!(r.slot(), i, "ALL is in declaration order");
        }
    }

    #[test]
    fn an_instance_keeps_its_counters_across_restarts() {
        let metrics = Metrics::new(1.0);
        metrics
            .instance("db")
            .transition(State::Backup, State::Master);
        let again = metrics.instance("db");
        assert_eq!(again.transitions[1][2].load(Ordering::Relaxed), 1);
        metrics.retain(|name| name != "db");
        assert!(metrics.instances().is_empty());
    }
}
