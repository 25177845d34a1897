//! The text a scrape gets: every family, built with the prometheus-client
//! crate's OpenMetrics text encoder from [`Metrics`] (the counters) and a
//! [`Snapshot`] (each instance's status, taken at scrape time).
//!
//! Every instance's series carry the label `instance_name` (Prometheus keeps
//! `instance` for the scrape target). Families whose label values are known in
//! advance (reject reasons, transitions, announcement kinds, handover
//! operations) are written for every value, zeros included, so `rate()` and
//! `increase()` see the first event.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::histogram::HistogramReading;
use super::process::ProcessStats;
use super::{CheckGauge, Handover, Metrics, Rejection, STATES};
use crate::control::{InstanceStatus, PeerStatus, VipStatus};

/// What the daemon knows at scrape time beyond the counters.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The status of each instance that answered (`vipd status`'s answer).
    pub instances: Vec<InstanceStatus>,
}

/// The OpenMetrics content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic Prometheus text format ([`to_classic_text`]).
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// [`render`]'s OpenMetrics text in the classic Prometheus text format (0.0.4),
/// for clients that do not ask for OpenMetrics (`curl`, `promtool check
/// metrics`): a counter family is named with its `_total` suffix, as its
/// samples are, and there is no `# EOF`. The samples are the same.
pub fn to_classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut lines = openmetrics.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" {
            continue;
        }
        if let Some(help) = line.strip_prefix("# HELP ") {
            let name = help.split(' ').next().unwrap_or_default();
            let counter = format!("# TYPE {name} counter");
            if lines.peek() == Some(&counter.as_str()) {
                let text = &help[name.len()..];
                out.push_str(&format!(
                    "# HELP {name}_total{text}\n# TYPE {name}_total counter\n"
                ));
                lines.next();
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The exposition text of `metrics` and `snapshot`, with the process's own
/// metrics (`process`).
pub fn render(metrics: &Metrics, snapshot: Snapshot, process: ProcessStats) -> String {
    let reading = Reading::take(metrics, snapshot, process);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(reading));
    let mut text = String::new();
    // Writing to a String cannot fail; an encoder error would be a bug in a
    // label value we wrote, and an empty scrape says so loudly enough.
    if encode(&mut text, &registry).is_err() {
        text.clear();
    }
    text
}

/// One instance's counters, read out.
#[derive(Debug)]
struct InstanceReading {
    name: String,
    rejects: Vec<(Rejection, u64)>,
    transitions: [[u64; 4]; 4],
    garp_sent: u64,
    na_sent: u64,
    garp_failed: u64,
    na_failed: u64,
    claim_faults: u64,
    handovers: Vec<(Handover, HistogramReading)>,
    interarrival: HistogramReading,
    hooks: Vec<((String, &'static str), u64)>,
    checks: Vec<(String, CheckGauge)>,
}

/// Everything one scrape writes, owned (the registry wants `'static`).
#[derive(Debug)]
struct Reading {
    counters: Vec<InstanceReading>,
    status: Vec<InstanceStatus>,
    reload_ok: bool,
    reload_success_at: f64,
    process: ProcessStats,
}

impl Reading {
    fn take(metrics: &Metrics, snapshot: Snapshot, process: ProcessStats) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let counters = metrics
            .instances()
            .into_iter()
            .map(|(name, m)| InstanceReading {
                name,
                rejects: Rejection::ALL
                    .iter()
                    .map(|r| (*r, m.rejects.get(*r)))
                    .collect(),
                transitions: std::array::from_fn(|f| {
                    std::array::from_fn(|t| m.transitions[f][t].load(Relaxed))
                }),
                garp_sent: m.garp_sent.load(Relaxed),
                na_sent: m.na_sent.load(Relaxed),
                garp_failed: m.garp_failed.load(Relaxed),
                na_failed: m.na_failed.load(Relaxed),
                claim_faults: m.claim_faults.load(Relaxed),
                handovers: Handover::ALL
                    .iter()
                    .zip(&m.handovers)
                    .map(|(op, h)| (*op, h.read()))
                    .collect(),
                interarrival: m.interarrival.read(),
                hooks: m
                    .hooks
                    .lock()
                    .map(|h| h.iter().map(|(k, v)| (k.clone(), *v)).collect())
                    .unwrap_or_default(),
                checks: m
                    .checks
                    .lock()
                    .map(|c| c.iter().map(|(k, v)| (k.clone(), *v)).collect())
                    .unwrap_or_default(),
            })
            .collect();
        Self {
            counters,
            status: snapshot.instances,
            reload_ok: metrics.reload_ok.load(Relaxed),
            reload_success_at: f64::from_bits(metrics.reload_success_at.load(Relaxed)),
            process,
        }
    }
}

/// Writes one family: its descriptor, then each sample via `samples`.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl FnOnce(&mut MetricEncoder) -> Result<(), std::fmt::Error>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    samples(&mut metric)
}

fn gauge(
    metric: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    value: f64,
) -> Result<(), std::fmt::Error> {
    metric.encode_family(labels)?.encode_gauge(&value)
}

fn counter(
    metric: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    value: u64,
) -> Result<(), std::fmt::Error> {
    metric
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn histogram(
    metric: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    reading: &HistogramReading,
) -> Result<(), std::fmt::Error> {
    metric
        .encode_family(labels)?
        .encode_histogram::<NoLabelSet>(reading.sum, reading.count, &reading.buckets, None)
}

fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

const NAME: &str = "instance_name";

/// A family read from each instance's status: its type, and what its samples
/// are labelled with (besides `instance_name`) and valued at.
enum FromStatus {
    /// A gauge per instance.
    InstanceGauge(fn(&InstanceStatus) -> f64),
    /// A counter per instance.
    InstanceCounter(fn(&InstanceStatus) -> u64),
    /// A gauge per VIP of each instance, labelled `vip`.
    VipGauge(fn(&VipStatus) -> f64),
    /// A gauge per peer of each instance, labelled `peer`.
    PeerGauge(fn(&PeerStatus) -> f64),
}

impl FromStatus {
    fn kind(&self) -> MetricType {
        match self {
            Self::InstanceCounter(_) => MetricType::Counter,
            Self::InstanceGauge(_) | Self::VipGauge(_) | Self::PeerGauge(_) => MetricType::Gauge,
        }
    }

    /// Writes the family's samples for every instance in `status`.
    fn encode(
        &self,
        m: &mut MetricEncoder,
        status: &[InstanceStatus],
    ) -> Result<(), std::fmt::Error> {
        for i in status {
            let instance = (NAME, i.name.as_str());
            match self {
                Self::InstanceGauge(value) => gauge(m, &[instance], value(i))?,
                Self::InstanceCounter(value) => counter(m, &[instance], value(i))?,
                Self::VipGauge(value) => {
                    for v in &i.vips {
                        gauge(m, &[instance, ("vip", v.address.as_str())], value(v))?;
                    }
                }
                Self::PeerGauge(value) => {
                    for p in &i.peers {
                        gauge(m, &[instance, ("peer", p.name.as_str())], value(p))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A gauge family with a sample per health check of each instance, for the
/// checks `value` has one for.
fn check_family(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    readings: &[InstanceReading],
    value: fn(&CheckGauge) -> Option<f64>,
) -> Result<(), std::fmt::Error> {
    family(e, name, help, MetricType::Gauge, |m| {
        for i in readings {
            for (check, reading) in &i.checks {
                if let Some(v) = value(reading) {
                    gauge(m, &[(NAME, i.name.as_str()), ("check", check.as_str())], v)?;
                }
            }
        }
        Ok(())
    })
}

impl prometheus_client::collector::Collector for Reading {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::Gauge;
        let e = &mut e;
        family(
            e,
            "vipd_build_info",
            "The vipd build: 1, with its version.",
            Gauge,
            |m| gauge(m, &[("version", env!("CARGO_PKG_VERSION"))], 1.0),
        )?;
        self.encode_status(e)?;
        self.encode_counters(e)?;
        family(
            e,
            "vipd_config_last_reload_successful",
            "Whether the last configuration (re)load succeeded (1) or the old configuration is still running (0).",
            Gauge,
            |m| m.encode_gauge(&bool_value(self.reload_ok)),
        )?;
        family(
            e,
            "vipd_config_last_reload_success_timestamp_seconds",
            "When the configuration last loaded successfully, in Unix seconds.",
            Gauge,
            |m| m.encode_gauge(&self.reload_success_at),
        )?;
        self.encode_process(e)
    }
}

impl Reading {
    /// The gauges taken from each instance's status.
    fn encode_status(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use FromStatus::{InstanceCounter, InstanceGauge, PeerGauge, VipGauge};
        use MetricType::Gauge;
        let s = &self.status;
        family(
            e,
            "vipd_instance_state",
            "The instance's state, one-hot over initialize, backup, master and fault.",
            Gauge,
            |m| {
                for i in s {
                    for state in STATES {
                        let label = state.to_string();
                        gauge(
                            m,
                            &[(NAME, i.name.as_str()), ("state", label.as_str())],
                            bool_value(i.state == state),
                        )?;
                    }
                }
                Ok(())
            },
        )?;
        family(e, "vipd_instance_priority", "The configured priority, and the effective one it advertises (health weights, drain, promote and fault applied; 0 when drained or in fault).", Gauge, |m| {
            for i in s {
                gauge(m, &[(NAME, i.name.as_str()), ("kind", "configured")], f64::from(i.configured_priority))?;
                gauge(m, &[(NAME, i.name.as_str()), ("kind", "effective")], f64::from(i.effective_priority))?;
            }
            Ok(())
        })?;
        let families: [(&str, &str, FromStatus); 16] = [
            ("vipd_instance_drained", "1 while the instance is drained (vipd drain): it does not become master.", InstanceGauge(|i| bool_value(i.drained))),
            ("vipd_instance_promoted", "1 while the instance is promoted (vipd promote).", InstanceGauge(|i| bool_value(i.promoted))),
            ("vipd_master_down_interval_seconds", "How long a backup waits without the master's adverts before it takes over, at the master's advert interval.", InstanceGauge(|i| i.master_down_interval_ms as f64 / 1000.0)),
            ("vipd_adverts_sent", "Adverts this instance sent since it started.", InstanceCounter(|i| i.adverts_sent)),
            ("vipd_adverts_received", "Adverts this instance accepted (authenticated, fresh, its group) since it started.", InstanceCounter(|i| i.adverts_received)),
            ("vipd_other_master_heard", "Times this node, as master, heard another master that nobody planned (two masters at once: a partition healing, adverts lost one way) since the instance started.", InstanceCounter(|i| i.other_master_heard)),
            ("vipd_planned_overlaps", "Times this node, as master, heard another master by design since the instance started: a handover to its successor, or a master replaced on purpose (preempt, promote) heard within the window after the takeover. Not a split brain.", InstanceCounter(|i| i.planned_overlaps)),
            ("vipd_vip_held", "1 while the VIP is on this node's interface.", VipGauge(|v| bool_value(v.held))),
            ("vipd_peer_up", "1 while the peer is heard within its liveness window.", PeerGauge(|p| bool_value(p.alive))),
            ("vipd_peer_priority", "The priority the peer advertised last (0: drained, in fault or releasing).", PeerGauge(|p| f64::from(p.priority))),
            ("vipd_peer_master", "1 while this node takes the peer for the master.", PeerGauge(|p| bool_value(p.alive && p.state == "master"))),
            ("vipd_peer_vip_set_differs", "1 while the peer advertises another VIP set than this node's (configuration drift).", PeerGauge(|p| bool_value(p.vip_set_differs))),
            ("vipd_name_conflict", "1 while another node uses this node's name.", InstanceGauge(|i| bool_value(i.name_conflict.is_some()))),
            ("vipd_foreign_claim_active", "1 while another host (a MAC that is neither this node's nor a peer's) claims a VIP this node holds.", InstanceGauge(|i| bool_value(!i.foreign_claims.is_empty()))),
            ("vipd_foreign_claims", "Gratuitous ARPs, ARP replies and NAs from a foreign MAC claiming a VIP while this node held it, since the instance started (identical claims within 10 ms count once).", InstanceCounter(|i| i.foreign_claims_seen)),
            ("vipd_foreign_claim_episodes", "Foreign claims of a VIP, counted once per VIP until quiet for 5 s, since the instance started.", InstanceCounter(|i| i.foreign_claim_episodes)),
        ];
        for (name, help, from) in families {
            family(e, name, help, from.kind(), |m| from.encode(m, s))?;
        }
        self.encode_store(e)
    }

    /// The gauges of instances etcd decides for (`election = "etcd"` or
    /// `"patroni"`); none for the others.
    fn encode_store(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::Gauge;
        type Value = fn(&crate::control::StoreStatus) -> Option<f64>;
        let families: [(&str, &str, Value); 5] = [
            ("vipd_store_reachable", "1 while the last request to etcd succeeded.", |st| Some(bool_value(st.reachable))),
            ("vipd_store_vouched", "1 while etcd vouches for this node: a lease keepalive sent less than lease_ttl minus the margin ago succeeded.", |st| Some(bool_value(st.vouched))),
            ("vipd_store_holding_unvouched", "1 while this node holds the VIPs although etcd cannot vouch for it (store_unreachable = \"fail-open\"): another node may hold them too.", |st| Some(bool_value(st.holding_unvouched))),
            ("vipd_store_lease_remaining_seconds", "How long etcd still vouches for this node.", |st| st.lease_remaining_ms.map(|ms| ms as f64 / 1000.0)),
            ("vipd_fencing_token", "The holder key's revision under which this node holds the VIPs (absent while it does not): rises with every change of holder.", |st| st.fencing_token.map(|t| t as f64)),
        ];
        for (name, help, value) in families {
            family(e, name, help, Gauge, |m| {
                for i in &self.status {
                    if let Some(v) = i.store.as_ref().and_then(value) {
                        gauge(m, &[(NAME, i.name.as_str())], v)?;
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The counters and histograms the daemon bumps.
    fn encode_counters(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Histogram};
        let c = &self.counters;
        family(e, "vipd_adverts_rejected", "Adverts (or datagrams meant as adverts) not taken, by reason: bad_ttl (sent from off the link), unknown_source (not a configured unicast peer), malformed, version, other_group, authentication (wrong key or forged), replay.", Counter, |m| {
            for i in c {
                for (reason, n) in &i.rejects {
                    counter(m, &[(NAME, i.name.as_str()), ("reason", reason.label())], *n)?;
                }
            }
            Ok(())
        })?;
        family(
            e,
            "vipd_transitions",
            "State changes, by from and to.",
            Counter,
            |m| {
                for i in c {
                    for (f, from) in STATES.iter().enumerate() {
                        for (t, to) in STATES.iter().enumerate() {
                            if f == t {
                                continue;
                            }
                            let (from, to) = (from.to_string(), to.to_string());
                            counter(
                                m,
                                &[
                                    (NAME, i.name.as_str()),
                                    ("from", from.as_str()),
                                    ("to", to.as_str()),
                                ],
                                i.transitions[f][t],
                            )?;
                        }
                    }
                }
                Ok(())
            },
        )?;
        family(e, "vipd_announcements_sent", "Gratuitous ARPs (kind=garp, IPv4) and unsolicited neighbour advertisements (kind=na, IPv6) sent.", Counter, |m| {
            for i in c {
                counter(m, &[(NAME, i.name.as_str()), ("kind", "garp")], i.garp_sent)?;
                counter(m, &[(NAME, i.name.as_str()), ("kind", "na")], i.na_sent)?;
            }
            Ok(())
        })?;
        family(e, "vipd_announcements_failed", "Gratuitous ARPs (kind=garp) and unsolicited neighbour advertisements (kind=na) the kernel refused to send.", Counter, |m| {
            for i in c {
                counter(m, &[(NAME, i.name.as_str()), ("kind", "garp")], i.garp_failed)?;
                counter(m, &[(NAME, i.name.as_str()), ("kind", "na")], i.na_failed)?;
            }
            Ok(())
        })?;
        family(
            e,
            "vipd_claim_faults",
            "Times the instance went in fault because it could not claim or announce its VIPs.",
            Counter,
            |m| {
                for i in c {
                    counter(m, &[(NAME, i.name.as_str())], i.claim_faults)?;
                }
                Ok(())
            },
        )?;
        family(e, "vipd_hook_runs", "Notify hook runs, by hook (master, backup, fault, stop, any, after_release) and result (success, failure, timeout).", Counter, |m| {
            for i in c {
                for ((hook, result), n) in &i.hooks {
                    counter(m, &[(NAME, i.name.as_str()), ("hook", hook.as_str()), ("result", result)], *n)?;
                }
            }
            Ok(())
        })?;
        check_family(e, "vipd_check_up", "1 while the health check counts as good (rise and fall applied), 0 while failing; absent before its first result.", c, |check| check.up.map(bool_value))?;
        check_family(
            e,
            "vipd_check_duration_seconds",
            "How long the last run of the check (track script, guard probe) took.",
            c,
            |check| check.last_duration.map(|took| took.as_secs_f64()),
        )?;
        family(e, "vipd_handover_duration_seconds", "How long handovers took, by operation: drain (from vipd drain until this node is no longer master), promote (until it is master), shutdown (until the instance released and stopped).", Histogram, |m| {
            for i in c {
                for (op, h) in &i.handovers {
                    histogram(m, &[(NAME, i.name.as_str()), ("operation", op.label())], h)?;
                }
            }
            Ok(())
        })?;
        family(e, "vipd_advert_interarrival_seconds", "Gaps between the master's adverts as this node received them; gaps near the master-down interval come before a failover.", Histogram, |m| {
            for i in c {
                histogram(m, &[(NAME, i.name.as_str())], &i.interarrival)?;
            }
            Ok(())
        })
    }

    fn encode_process(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let p = &self.process;
        if let Some(v) = p.cpu_seconds {
            family(
                e,
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                Counter,
                |m| m.encode_counter::<NoLabelSet, _, u64>(&v, None),
            )?;
        }
        let gauges: [(&str, &str, Option<f64>); 6] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.resident_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                p.virtual_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds.",
                p.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                p.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                p.max_fds.map(|v| v as f64),
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                p.threads.map(|v| v as f64),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                family(e, name, help, Gauge, |m| m.encode_gauge(&v))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_text_names_counters_with_their_suffix() {
        let om = "# HELP a_x Things.\n# TYPE a_x counter\na_x_total{k=\"v\"} 3\n# HELP b Level.\n# TYPE b gauge\nb 1.0\n# EOF\n";
        assert_eq!(
            to_classic_text(om),
            "# HELP a_x_total Things.\n# TYPE a_x_total counter\na_x_total{k=\"v\"} 3\n# HELP b Level.\n# TYPE b gauge\nb 1.0\n"
        );
    }

    #[test]
    fn checks_hooks_and_announcements_are_rendered_per_instance() {
        let metrics = Metrics::new(1.0);
        let db = metrics.instance("db");
        db.check_took("script:pg", std::time::Duration::from_millis(250));
        db.set_checks(vec![
            ("script:pg".into(), Some(false)),
            ("guard".into(), None),
        ]);
        db.hook_ran("master", "timeout");
        db.announced("2001:db8::1".parse().expect("an address"));
        let text = to_classic_text(&render(
            &metrics,
            Snapshot::default(),
            ProcessStats::default(),
        ));
        for line in [
            "vipd_check_up{instance_name=\"db\",check=\"script:pg\"} 0.0",
            "vipd_check_duration_seconds{instance_name=\"db\",check=\"script:pg\"} 0.25",
            "vipd_hook_runs_total{instance_name=\"db\",hook=\"master\",result=\"timeout\"} 1",
            "vipd_announcements_sent_total{instance_name=\"db\",kind=\"na\"} 1",
            "# TYPE vipd_hook_runs_total counter",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
        assert!(!text.contains("check=\"guard\"} "), "no result yet: {text}");
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn an_empty_daemon_renders_the_node_families() {
        let metrics = Metrics::new(1_700_000_000.0);
        let _ = metrics.instance("db");
        let text = render(&metrics, Snapshot::default(), ProcessStats::default());
        assert!(
            text.contains("vipd_config_last_reload_successful 1"),
            "{text}"
        );
        assert!(
            text.contains("vipd_adverts_rejected_total{instance_name=\"db\",reason=\"bad_ttl\"} 0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
