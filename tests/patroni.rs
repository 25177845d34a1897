//! Following Patroni's leader: Patroni 3.0 with PostgreSQL 15 on n1 and n2,
//! three etcd members beside them on the lab's bridge, and what moves the VIP
//! when the leader changes, by a switchover (Patroni's REST API) and by a
//! failover (the leader's Patroni and PostgreSQL SIGKILLed: its leader key
//! runs out after Patroni's `ttl`).
//!
//! - the baseline: vip-manager 1.0 on both nodes, twice over (one pair polling
//!   etcd every 1000 ms, its default, on one VIP; one every 100 ms on another);
//! - vipd (`election = "patroni"`, the DCS through etcd's v2 API) on both
//!   nodes on one VIP, vip-manager beside it on another, in the same run;
//! - vipd following Patroni through etcd's v3 API (`dcs = "etcd3"`), a
//!   switchover.
//!
//! Measured, printed (`cargo test --release --test patroni -- --nocapture`):
//! the time from the leader key's change (as an etcd watch sees it) to the VIP
//! on the new leader and off the old one, rounds of the holder sampler (every
//! node's addresses, every millisecond) with two holders, the longest stretch
//! with none, and what a client asking for each VIP by ARP every millisecond
//! saw. A Patroni switchover deletes the leader key, then the new leader
//! creates it; a failover lets it expire, then the new leader creates it: both
//! times are printed.

mod common;

use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::*;

/// One test of this binary at a time: each runs Patroni, PostgreSQL, etcd and
/// a 1 ms sampler and probers, and its figures are the comparison's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A lab of two nodes with etcd (v2 on, for vip-manager) and Patroni on both,
/// n1 leading, with a scope of the test's own and `dcs`.
fn patroni_lab(tag: &str, dcs: Dcs) -> (Lab, EtcdCluster, PatroniCluster) {
    let lab = Lab::new(tag, 2);
    let started = Instant::now();
    let etcd = EtcdCluster::start(&lab, true);
    let scope = format!("{tag}{}", std::process::id());
    let patroni = PatroniCluster::start(&[lab.node(1), lab.node(2)], &etcd, dcs, &scope);
    eprintln!(
        "[{tag}] etcd up and Patroni ({}) leading on n1 with n2 streaming after {} ms",
        dcs.name(),
        ms(started.elapsed())
    );
    (lab, etcd, patroni)
}

/// vip-manager on both nodes for `vip`, polling every `interval_ms`.
fn vip_managers(
    lab: &Lab,
    etcd: &EtcdCluster,
    patroni: &PatroniCluster,
    vip: &str,
    interval_ms: u32,
) -> Vec<VipManager> {
    [lab.node(1), lab.node(2)]
        .into_iter()
        .map(|node| {
            VipManager::start(
                node,
                vip,
                &patroni.leader_key(),
                &node.role,
                &etcd.endpoints(),
                interval_ms,
            )
        })
        .collect()
}

/// vipd on both nodes following Patroni's leader for `vip`.
fn vipd_followers(
    lab: &Lab,
    etcd: &EtcdCluster,
    patroni: &PatroniCluster,
    vip: &str,
) -> Vec<Daemon> {
    (1..=2)
        .map(|i| {
            let node = lab.node(i);
            let spec =
                InstanceSpec::patroni(100, &patroni.scope, &node.role, patroni.dcs.name()).vip(vip);
            Daemon::start(
                node,
                NodeSpec::new(&node.role, spec).etcd(&etcd.endpoints()),
            )
        })
        .collect()
}

/// One VIP under watch: who moves it (for the printout), and the client's
/// ARP prober for it.
struct Watched<'a> {
    vip: &'a str,
    by: &'a str,
    arp: ArpProber,
}

/// What one VIP did around one change of leader.
struct Move {
    /// From the key naming the new leader to the VIP on it, in ms.
    on_new_ms: Option<f64>,
    two_holder_rounds: usize,
    longest_without_holder_ms: f64,
}

/// Does `change` to the cluster (a switchover, a crash), waits until the
/// leader key names `new` and every watched VIP is on it alone, and prints
/// and returns what each VIP did.
#[allow(clippy::too_many_arguments)]
fn leader_change(
    tag: &str,
    what: &str,
    patroni: &mut PatroniCluster,
    watch: &KeyWatch,
    sampler: &HolderSampler,
    watched: &[Watched<'_>],
    (old, new): (usize, usize),
    change: impl FnOnce(&mut PatroniCluster),
) -> Vec<Move> {
    let new_name = format!("n{new}");
    let from = Instant::now();
    change(patroni);
    let set = watch
        .wait_set_to(&new_name, from, Duration::from_secs(PATRONI_TTL_S + 30))
        .at;
    // The key's first change after `from`: deleted (switchover) or expired
    // (failover) before the new leader creates it.
    let first = watch
        .first_change(Some(&format!("n{old}")), from)
        .map_or(set, |e| e.at);
    for w in watched {
        sampler.wait_sole(w.vip, new, set, Duration::from_secs(15));
    }
    // A moment for a late second holder to show.
    sleep_checked(Duration::from_millis(300));
    let to = Instant::now();
    eprintln!(
        "[{tag}] {what}: the leader key left n{old} {:.1} ms after it began and named {new_name} \
         {:.1} ms after it began",
        ms_between(from, first),
        ms_between(from, set)
    );
    watched
        .iter()
        .map(|w| {
            let report = sampler.report(w.vip, from, to);
            let on_new = report.gained(new).map(|t| ms_between(set, t));
            let off_old = report.lost(old).map(|t| ms_between(set, t));
            let client = w.arp.snapshot().window(from, to);
            eprintln!(
                "  {} ({}): on n{new} {} ms after the key named it, off n{old} {} ms after it; \
                 sampler: {}; client ARP every 1 ms: {} lost, longest gap {:.1} ms, {} answered \
                 by two",
                w.by,
                w.vip,
                on_new.map_or("never".into(), |m| format!("{m:.1}")),
                off_old.map_or("never".into(), |m| format!("{m:.1}")),
                report.describe(),
                client.lost,
                client.longest_gap_ms,
                client.answered_by_two
            );
            Move {
                on_new_ms: on_new,
                two_holder_rounds: report.two_holders.len(),
                longest_without_holder_ms: report.longest_without_holder.as_secs_f64() * 1e3,
            }
        })
        .collect()
}

fn arp(lab: &Lab, vip: &str) -> ArpProber {
    let addr: Ipv4Addr = strip_prefix_len(vip).parse().expect("an IPv4 VIP");
    ArpProber::start(&lab.client, addr).expect("ARP prober")
}

/// The baseline vipd is compared against: vip-manager on both nodes, one pair
/// at its default interval (1000 ms) on one VIP and one at 100 ms on another;
/// a switchover, then a failover.
#[test]
fn vip_manager_follows_a_switchover_and_a_failover() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let (lab, etcd, mut patroni) = patroni_lab("vmbase", Dcs::Etcd);
    let (slow, fast) = (lab.vip4(0), lab.vip4(1));
    let _slow_managers = vip_managers(&lab, &etcd, &patroni, &slow, 1000);
    let _fast_managers = vip_managers(&lab, &etcd, &patroni, &fast, 100);
    let sampler =
        HolderSampler::start(&[lab.node(1), lab.node(2)], &[&slow, &fast]).expect("sampler");
    let watch = patroni.watch_leader(&lab.client.ns);
    let start = Instant::now();
    for vip in [&slow, &fast] {
        sampler.wait_sole(vip, 1, start, Duration::from_secs(20));
    }
    let watched = [
        Watched {
            vip: &slow,
            by: "vip-manager --interval 1000",
            arp: arp(&lab, &slow),
        },
        Watched {
            vip: &fast,
            by: "vip-manager --interval 100",
            arp: arp(&lab, &fast),
        },
    ];
    sleep_checked(Duration::from_millis(500));
    leader_change(
        "vmbase",
        "switchover n1 -> n2",
        &mut patroni,
        &watch,
        &sampler,
        &watched,
        (1, 2),
        |p| {
            p.switchover("n2");
        },
    );
    patroni.wait_streaming("n2", Duration::from_secs(60));
    leader_change(
        "vmbase",
        "failover: n2's Patroni and PostgreSQL SIGKILLed",
        &mut patroni,
        &watch,
        &sampler,
        &watched,
        (2, 1),
        |p| p.crash("n2"),
    );
}

/// vipd following Patroni (through etcd's v2 API) on one VIP and vip-manager
/// at its default interval on another, in one run: a switchover, then a
/// failover. vipd's VIP reaches the new leader within a second of the key
/// naming it and is never on both nodes.
#[test]
fn vipd_follows_patroni_beside_vip_manager() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let (lab, etcd, mut patroni) = patroni_lab("vdpat", Dcs::Etcd);
    let (ours, theirs) = (lab.vip4(0), lab.vip4(1));
    let daemons = vipd_followers(&lab, &etcd, &patroni, &ours);
    let _managers = vip_managers(&lab, &etcd, &patroni, &theirs, 1000);
    let sampler =
        HolderSampler::start(&[lab.node(1), lab.node(2)], &[&ours, &theirs]).expect("sampler");
    let watch = patroni.watch_leader(&lab.client.ns);
    let start = Instant::now();
    for vip in [&ours, &theirs] {
        sampler.wait_sole(vip, 1, start, Duration::from_secs(30));
    }
    check_store_status(&daemons, "n1");
    let watched = [
        Watched {
            vip: &ours,
            by: "vipd",
            arp: arp(&lab, &ours),
        },
        Watched {
            vip: &theirs,
            by: "vip-manager --interval 1000",
            arp: arp(&lab, &theirs),
        },
    ];
    sleep_checked(Duration::from_millis(500));
    let switched = leader_change(
        "vdpat",
        "switchover n1 -> n2",
        &mut patroni,
        &watch,
        &sampler,
        &watched,
        (1, 2),
        |p| {
            p.switchover("n2");
        },
    );
    check_store_status(&daemons, "n2");
    patroni.wait_streaming("n2", Duration::from_secs(60));
    let failed = leader_change(
        "vdpat",
        "failover: n2's Patroni and PostgreSQL SIGKILLed",
        &mut patroni,
        &watch,
        &sampler,
        &watched,
        (2, 1),
        |p| p.crash("n2"),
    );
    check_store_status(&daemons, "n1");
    for (what, moved) in [("switchover", &switched[0]), ("failover", &failed[0])] {
        let on_new = moved.on_new_ms.expect("vipd moved the VIP");
        assert!(
            on_new <= 1000.0,
            "{what}: vipd put the VIP on the new leader {on_new:.1} ms after the key named it"
        );
        assert_eq!(
            moved.two_holder_rounds, 0,
            "{what}: vipd's VIP was on both nodes at once"
        );
        eprintln!(
            "[vdpat] {what}: vipd {on_new:.1} ms after the key (longest without a holder \
             {:.1} ms) beside vip-manager {} ms",
            moved.longest_without_holder_ms,
            (if what == "switchover" {
                &switched
            } else {
                &failed
            })[1]
                .on_new_ms
                .map_or("never".into(), |m| format!("{m:.1}"))
        );
    }
}

/// vipd following Patroni through etcd's v3 API (`dcs = "etcd3"`): a
/// switchover moves the VIP within a second of the key naming the new leader,
/// never on both nodes.
#[test]
fn vipd_follows_patroni_on_etcd3() {
    if !require_root() {
        return;
    }
    let _serial = one_at_a_time();
    let (lab, etcd, mut patroni) = patroni_lab("vdpat3", Dcs::Etcd3);
    let vip = lab.vip4(0);
    let daemons = vipd_followers(&lab, &etcd, &patroni, &vip);
    let sampler = HolderSampler::start(&[lab.node(1), lab.node(2)], &[&vip]).expect("sampler");
    let watch = patroni.watch_leader(&lab.client.ns);
    sampler.wait_sole(&vip, 1, Instant::now(), Duration::from_secs(30));
    check_store_status(&daemons, "n1");
    let watched = [Watched {
        vip: &vip,
        by: "vipd (etcd3)",
        arp: arp(&lab, &vip),
    }];
    let moved = leader_change(
        "vdpat3",
        "switchover n1 -> n2",
        &mut patroni,
        &watch,
        &sampler,
        &watched,
        (1, 2),
        |p| {
            p.switchover("n2");
        },
    );
    check_store_status(&daemons, "n2");
    let on_new = moved[0].on_new_ms.expect("vipd moved the VIP");
    assert!(on_new <= 1000.0, "VIP on n2 {on_new:.1} ms after the key");
    assert_eq!(moved[0].two_holder_rounds, 0, "the VIP was on both nodes");
}

/// Each daemon's status names the store (`patroni`), vouched for and
/// reachable, and `leader` as the holder; the leader's node is master, the
/// other backup.
fn check_store_status(daemons: &[Daemon], leader: &str) {
    for daemon in daemons {
        let want = if daemon.name == leader {
            "master"
        } else {
            "backup"
        };
        let mut last = serde_json::Value::Null;
        wait_until(
            &format!("{} reports {want} with holder {leader}", daemon.label),
            Duration::from_secs(10),
            || {
                let Some((_, status)) = daemon.first_instance_status() else {
                    return false;
                };
                last = status.clone();
                let store = &status["store"];
                status["state"] == want
                    && store["kind"] == "patroni"
                    && store["reachable"] == true
                    && store["holder"] == leader
            },
        );
        assert!(last["store"]["key"].is_string(), "{last:#}");
    }
}
