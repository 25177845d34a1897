//! vipd in VRRP mode beside the real keepalived (needs root and Debian's
//! keepalived 2.2.7; tests/run.sh installs it): one node runs keepalived,
//! the other vipd, on one lab segment, for VRRPv2 with a PASS password,
//! VRRPv3 over IPv4 and IPv6, multicast and unicast. Each test checks that
//! the pair settles with one holder and stays so (no flapping), then moves
//! the VIP each way (crash, stop with priority 0, preemption, vipd's drain
//! and promote) and logs how long each move took against the RFC's
//! figure; a client's ARP probe every millisecond counts what it lost where
//! a move is meant to lose nothing.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::*;

/// One way of speaking VRRP, on both nodes.
#[derive(Clone, Copy, Debug)]
struct Case {
    version: u8,
    ipv6: bool,
    unicast: bool,
    /// keepalived's `authentication { auth_type PASS auth_pass … }` (v2).
    pass: Option<&'static str>,
    /// Advert interval in centiseconds (v2: a multiple of 100).
    interval_cs: u32,
}

impl Case {
    fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.interval_cs) * 10)
    }

    /// RFC 3768 / RFC 9568: 3 × interval + skew for `priority`.
    fn master_down(&self, priority: u32) -> Duration {
        self.interval() * 3 + self.skew(priority)
    }

    fn skew(&self, priority: u32) -> Duration {
        let unit = if self.version == 2 {
            Duration::from_secs(1)
        } else {
            self.interval()
        };
        unit * (256 - priority) / 256
    }

    fn vip(&self, lab: &Lab) -> String {
        if self.ipv6 {
            lab.vip6(0)
        } else {
            lab.vip4(0)
        }
    }

    /// The address keepalived's node `n` sends from (unicast peers).
    fn addr(&self, lab: &Lab, n: usize) -> String {
        if self.ipv6 {
            lab.node(n).v6.clone()
        } else {
            lab.node(n).v4.clone()
        }
    }

    fn keepalived_conf(&self, lab: &Lab, me: usize, peer: usize, priority: u32) -> String {
        let mut t = format!(
            "global_defs {{\n    router_id k{me}\n    vrrp_version {}\n}}\n\nvrrp_instance db {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority {priority}\n    advert_int {}\n",
            self.version,
            if self.version == 2 {
                format!("{}", self.interval_cs / 100)
            } else {
                format!("{:.2}", f64::from(self.interval_cs) / 100.0)
            }
        );
        if let Some(pass) = self.pass {
            t.push_str(&format!(
                "    authentication {{\n        auth_type PASS\n        auth_pass {pass}\n    }}\n"
            ));
        }
        if self.unicast {
            t.push_str(&format!(
                "    unicast_src_ip {}\n    unicast_peer {{\n        {}\n    }}\n",
                self.addr(lab, me),
                self.addr(lab, peer)
            ));
        }
        t.push_str(&format!(
            "    virtual_ipaddress {{\n        {} dev eth0\n    }}\n}}\n",
            self.vip(lab)
        ));
        t
    }

    fn vipd_spec(&self, lab: &Lab, me: usize, peer: usize, priority: u8) -> NodeSpec {
        let mut instance = InstanceSpec::new(priority)
            .vip(self.vip(lab))
            .auth_none()
            .advert(&format!("{}ms", self.interval_cs * 10))
            .extra(&format!("protocol = \"vrrp{}\"", self.version))
            // A stop or drain waits for the keepalived node to answer its
            // priority-0 advert: at most its skew plus a few intervals.
            .extra("handover_timeout = \"3s\"");
        if let Some(pass) = self.pass {
            instance = instance.extra(&format!("vrrp_auth_pass = {pass:?}"));
        }
        if self.unicast {
            instance = instance
                .peers(&[&self.addr(lab, peer)])
                .extra(&format!("vrrp_source = {:?}", self.addr(lab, me)));
        }
        NodeSpec::new(&format!("n{me}"), instance)
    }
}

fn state_of(daemon: &Daemon) -> String {
    daemon
        .status_json()
        .and_then(|s| s["instances"][0]["state"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Waits until only node `n` holds `vip`; returns when that was first seen.
fn sole_holder_at(lab: &Lab, vip: &str, n: usize, deadline: Duration) -> Instant {
    wait_until(&format!("only n{n} holds {vip}"), deadline, || {
        lab.holders(vip) == [n]
    });
    Instant::now()
}

/// keepalived on node `me` (peer `peer`) at `priority`, started and, alone
/// in the lab, holding the VIP.
fn keepalived_holding(lab: &Lab, case: Case, me: usize, peer: usize, priority: u32) -> Daemon {
    let mut keepalived = Daemon::configure_keepalived(
        lab.node(me),
        &format!("k{me}"),
        &case.keepalived_conf(lab, me, peer, priority),
    );
    keepalived.restart();
    sole_holder_at(lab, &case.vip(lab), me, Duration::from_secs(20));
    keepalived
}

/// When node `n` was first seen holding `vip` (polled every millisecond or
/// so, for at most 20 s).
fn holds_at(lab: &Lab, vip: &str, n: usize) -> Instant {
    wait_until(
        &format!("n{n} holds {vip}"),
        Duration::from_secs(20),
        || lab.holders(vip).contains(&n),
    );
    Instant::now()
}

/// keepalived master on n1 (priority 150), vipd backup on n2 (100): the pair
/// settles and stays; keepalived's crash and its stop (priority 0) move the
/// VIP to vipd; a restarted keepalived preempts vipd back.
fn keepalived_master_vipd_backup(tag: &str, case: Case) {
    if !require_root() {
        return;
    }
    let lab = Lab::new(tag, 2);
    let vip = case.vip(&lab);
    let mut keepalived = keepalived_holding(&lab, case, 1, 2, 150);
    let vipd = Daemon::start(lab.node(2), case.vipd_spec(&lab, 2, 1, 100));
    wait_until("vipd is backup", Duration::from_secs(10), || {
        state_of(&vipd) == "backup"
    });
    hold_for(
        "keepalived alone holds the VIP, vipd backup",
        case.master_down(100) * 2,
        || lab.holders(&vip) == [1] && state_of(&vipd) == "backup",
    );

    // keepalived stops: one priority-0 advert; vipd takes over after its skew.
    let stop = Instant::now();
    keepalived.sigterm();
    let took = holds_at(&lab, &vip, 2) - stop;
    sole_holder_at(&lab, &vip, 2, Duration::from_secs(10));
    println!(
        "[{tag}] keepalived stopped (priority 0): vipd held the VIP {} ms after the SIGTERM (RFC skew for priority 100: {} ms)",
        ms(took),
        ms(case.skew(100))
    );
    // keepalived comes back with the higher priority: it preempts vipd.
    keepalived.restart();
    let back = Instant::now();
    let took = sole_holder_at(&lab, &vip, 1, Duration::from_secs(20)) - back;
    println!(
        "[{tag}] keepalived restarted with priority 150: it preempted vipd after {} ms (its master-down interval: {} ms)",
        ms(took),
        ms(case.master_down(150))
    );
    wait_until("vipd is backup again", Duration::from_secs(5), || {
        state_of(&vipd) == "backup"
    });

    // keepalived crashes (SIGKILL, its VIP removed as a dead host's would be
    // unreachable): vipd takes over after the master-down interval.
    let crashed = Instant::now();
    keepalived.crash();
    lab.node(1).link(false);
    let took = holds_at(&lab, &vip, 2) - crashed;
    println!(
        "[{tag}] keepalived crashed: vipd held the VIP after {} ms (RFC master-down interval for priority 100: {} ms; measured from the kill, not from the last advert)",
        ms(took),
        ms(case.master_down(100))
    );
    assert!(
        crashed.elapsed() >= case.master_down(100) - case.interval(),
        "vipd took over before the master-down interval could have run out"
    );
    let log = vipd.log();
    assert!(
        !log.contains("rejected") && !log.contains("VRRP:"),
        "vipd rejected keepalived's adverts:\n{log}"
    );
}

/// vipd master on n1 (150), keepalived backup on n2 (100): the pair settles;
/// vipd's drain hands over without a lost probe and its undrain takes the
/// VIP back; vipd's stop hands over with priority 0; a restarted vipd
/// preempts; vipd's crash lets keepalived take over.
fn vipd_master_keepalived_backup(tag: &str, case: Case) {
    if !require_root() {
        return;
    }
    let lab = Lab::new(tag, 2);
    let vip = case.vip(&lab);
    let keepalived = keepalived_holding(&lab, case, 2, 1, 100);
    let mut vipd = Daemon::start(lab.node(1), case.vipd_spec(&lab, 1, 2, 150));
    // vipd outranks keepalived and preempts at once.
    sole_holder_at(&lab, &vip, 1, Duration::from_secs(20));
    hold_for(
        "vipd alone holds the VIP, keepalived backup",
        case.master_down(100) * 2,
        || lab.holders(&vip) == [1],
    );
    let prober = (!case.ipv6).then(|| {
        let vip4: Ipv4Addr = strip_prefix_len(&vip).parse().expect("an IPv4 VIP");
        let prober = ArpProber::start(&lab.client, vip4).expect("start the ARP prober");
        prober
            .wait_stable(
                lab.node(1).mac_bytes(),
                Duration::from_millis(300),
                Duration::from_secs(10),
            )
            .expect("n1 alone answers ARP for the VIP");
        prober
    });

    // Drain: priority 0, the VIP kept until keepalived is master.
    let drained = Instant::now();
    let out = vipd.cli(&["drain", "--wait"]);
    assert!(out.status.success(), "drain --wait: {}", output_text(&out));
    let took = sole_holder_at(&lab, &vip, 2, Duration::from_secs(10)) - drained;
    if let Some(prober) = &prober {
        let window = prober.snapshot().window(drained, Instant::now());
        println!(
            "[{tag}] vipd drained: keepalived held the VIP after {} ms (its skew: {} ms); client: {} probes lost, longest gap {:.1} ms",
            ms(took),
            ms(case.skew(100)),
            window.lost,
            window.longest_gap_ms
        );
        assert_eq!(window.lost, 0, "a drain to keepalived lost probes");
    }
    // Undrain: vipd outranks keepalived and takes the VIP back at once.
    let undrained = Instant::now();
    let out = vipd.cli(&["undrain"]);
    assert!(out.status.success(), "undrain: {}", output_text(&out));
    let took = sole_holder_at(&lab, &vip, 1, Duration::from_secs(10)) - undrained;
    if let Some(prober) = &prober {
        let window = prober.snapshot().window(undrained, Instant::now());
        println!(
            "[{tag}] vipd undrained: it held the VIP alone after {} ms; client: {} probes lost",
            ms(took),
            window.lost
        );
        assert_eq!(window.lost, 0, "a preemption of keepalived lost probes");
    }

    // Stop: priority 0 and make-before-break.
    let stopping = Instant::now();
    vipd.sigterm();
    let took = sole_holder_at(&lab, &vip, 2, Duration::from_secs(10)) - stopping;
    if let Some(prober) = &prober {
        let window = prober.snapshot().window(stopping, Instant::now());
        println!(
            "[{tag}] vipd stopped: keepalived held the VIP alone after {} ms (its skew: {} ms); client: {} probes lost",
            ms(took),
            ms(case.skew(100)),
            window.lost
        );
        assert_eq!(window.lost, 0, "vipd's stop lost probes");
    }

    // Restart: vipd preempts keepalived again; then it crashes.
    vipd.restart();
    sole_holder_at(&lab, &vip, 1, Duration::from_secs(20));
    let crashed = Instant::now();
    vipd.crash();
    lab.node(1).link(false);
    let took = holds_at(&lab, &vip, 2) - crashed;
    println!(
        "[{tag}] vipd crashed: keepalived held the VIP after {} ms (RFC master-down interval for priority 100: {} ms)",
        ms(took),
        ms(case.master_down(100))
    );
    assert!(crashed.elapsed() >= case.master_down(100) - case.interval());
    drop(prober);
    let log = keepalived.log();
    for bad in ["invalid", "mismatch", "wrong", "bad checksum", "Invalid"] {
        assert!(
            !log.contains(bad),
            "keepalived complained ({bad}) about vipd's adverts:\n{log}"
        );
    }
}

/// vipd's promote over a better keepalived master moves the VIP to vipd
/// (its adverts say 255 while promoted) without a lost probe.
#[test]
fn vrrp3_promote_takes_the_vip_from_a_better_keepalived_master() {
    if !require_root() {
        return;
    }
    let case = Case {
        version: 3,
        ipv6: false,
        unicast: false,
        pass: None,
        interval_cs: 10,
    };
    let lab = Lab::new("vrrppromote", 2);
    let vip = case.vip(&lab);
    let keepalived = keepalived_holding(&lab, case, 1, 2, 200);
    let vipd = Daemon::start(lab.node(2), case.vipd_spec(&lab, 2, 1, 100));
    wait_until("vipd is backup", Duration::from_secs(10), || {
        state_of(&vipd) == "backup"
    });
    let vip4: Ipv4Addr = strip_prefix_len(&vip).parse().expect("an IPv4 VIP");
    let prober = ArpProber::start(&lab.client, vip4).expect("start the ARP prober");
    prober
        .wait_stable(
            lab.node(1).mac_bytes(),
            Duration::from_millis(300),
            Duration::from_secs(10),
        )
        .expect("n1 alone answers ARP for the VIP");
    let promoted = Instant::now();
    let out = vipd.cli(&["promote"]);
    assert!(out.status.success(), "promote: {}", output_text(&out));
    let took = sole_holder_at(&lab, &vip, 2, Duration::from_secs(10)) - promoted;
    hold_for(
        "vipd, promoted, keeps the VIP",
        case.master_down(200) * 2,
        || lab.holders(&vip) == [2],
    );
    let window = prober.snapshot().window(promoted, Instant::now());
    println!(
        "[vrrppromote] vipd promoted over keepalived (priority 200): it held the VIP alone after {} ms; client: {} probes lost",
        ms(took),
        window.lost
    );
    assert_eq!(window.lost, 0);
    drop(keepalived);
}

const V2_PASS: Case = Case {
    version: 2,
    ipv6: false,
    unicast: false,
    pass: Some("s3cret"),
    interval_cs: 100,
};
const V3_IPV4: Case = Case {
    version: 3,
    ipv6: false,
    unicast: false,
    pass: None,
    interval_cs: 10,
};
const V3_IPV6: Case = Case {
    version: 3,
    ipv6: true,
    unicast: false,
    pass: None,
    interval_cs: 10,
};
const V2_UNICAST: Case = Case {
    version: 2,
    ipv6: false,
    unicast: true,
    pass: Some("s3cret"),
    interval_cs: 100,
};
const V3_IPV6_UNICAST: Case = Case {
    version: 3,
    ipv6: true,
    unicast: true,
    pass: None,
    interval_cs: 10,
};

#[test]
fn vrrp2_pass_keepalived_master_vipd_backup() {
    keepalived_master_vipd_backup("vrrp2km", V2_PASS);
}

#[test]
fn vrrp2_pass_vipd_master_keepalived_backup() {
    vipd_master_keepalived_backup("vrrp2vm", V2_PASS);
}

#[test]
fn vrrp3_ipv4_keepalived_master_vipd_backup() {
    keepalived_master_vipd_backup("vrrp3km", V3_IPV4);
}

#[test]
fn vrrp3_ipv4_vipd_master_keepalived_backup() {
    vipd_master_keepalived_backup("vrrp3vm", V3_IPV4);
}

#[test]
fn vrrp3_ipv6_keepalived_master_vipd_backup() {
    keepalived_master_vipd_backup("vrrp6km", V3_IPV6);
}

#[test]
fn vrrp3_ipv6_vipd_master_keepalived_backup() {
    vipd_master_keepalived_backup("vrrp6vm", V3_IPV6);
}

#[test]
fn vrrp2_unicast_keepalived_master_vipd_backup() {
    keepalived_master_vipd_backup("vrrpukm", V2_UNICAST);
}

#[test]
fn vrrp3_ipv6_unicast_vipd_master_keepalived_backup() {
    vipd_master_keepalived_backup("vrrpuvm", V3_IPV6_UNICAST);
}

/// `preempt = false` on a better vipd backup leaves a worse keepalived
/// master alone (keepalived's `nopreempt` the other way round is
/// keepalived's own rule); the VIP moves to vipd only when keepalived stops.
#[test]
fn vrrp3_nopreempt_vipd_leaves_a_worse_keepalived_master_alone() {
    if !require_root() {
        return;
    }
    let case = V3_IPV4;
    let lab = Lab::new("vrrpnopre", 2);
    let vip = case.vip(&lab);
    let mut keepalived = keepalived_holding(&lab, case, 1, 2, 100);
    let mut spec = case.vipd_spec(&lab, 2, 1, 200);
    spec.instances[0].preempt = Some(false);
    let vipd = Daemon::start(lab.node(2), spec);
    wait_until("vipd is backup", Duration::from_secs(10), || {
        state_of(&vipd) == "backup"
    });
    hold_for(
        "keepalived (100) keeps the VIP beside vipd (200, preempt off)",
        case.master_down(200) * 4,
        || lab.holders(&vip) == [1] && state_of(&vipd) == "backup",
    );
    let stop = Instant::now();
    keepalived.sigterm();
    let took = holds_at(&lab, &vip, 2) - stop;
    println!(
        "[vrrpnopre] vipd (preempt off) left keepalived master until it stopped, then held the VIP {} ms after the SIGTERM",
        ms(took)
    );
    // With preempt on, the same vipd takes over at once.
    let lab = Lab::new("vrrppre", 2);
    let vip = case.vip(&lab);
    let keepalived = keepalived_holding(&lab, case, 1, 2, 100);
    let started = Instant::now();
    let _vipd = Daemon::start(lab.node(2), case.vipd_spec(&lab, 2, 1, 200));
    let took = sole_holder_at(&lab, &vip, 2, Duration::from_secs(20)) - started;
    println!(
        "[vrrppre] vipd (200, preempt on) took the VIP from keepalived (100) {} ms after it started",
        ms(took)
    );
    drop(keepalived);
}

/// The unit's clean-up after a crash of vipd while master
/// (`ExecStopPost=vipd cleanup`, here run by hand in the node's namespace
/// with systemd's `SERVICE_RESULT=signal`) sends the priority-0 advert the
/// dead daemon would have sent: keepalived takes over after its skew time,
/// not the master-down interval.
#[test]
fn vrrp3_cleanup_after_a_vipd_crash_hands_over_at_keepalived_skew() {
    if !require_root() {
        return;
    }
    let case = V3_IPV4;
    let lab = Lab::new("vrrpclean", 2);
    let vip = case.vip(&lab);
    let keepalived = keepalived_holding(&lab, case, 2, 1, 100);
    let mut vipd = Daemon::start(lab.node(1), case.vipd_spec(&lab, 1, 2, 150));
    sole_holder_at(&lab, &vip, 1, Duration::from_secs(20));
    hold_for("vipd holds the VIP", case.master_down(100), || {
        lab.holders(&vip) == [1]
    });
    let killed = Instant::now();
    vipd.kill9();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.node(1).ns.name])
        .arg(vipd_bin())
        .args(["cleanup", "--config"])
        .arg(&vipd.config)
        .env("SERVICE_RESULT", "signal")
        .output()
        .expect("run vipd cleanup");
    assert!(out.status.success(), "vipd cleanup: {}", output_text(&out));
    let took = holds_at(&lab, &vip, 2) - killed;
    println!(
        "[vrrpclean] vipd killed, its clean-up ran: keepalived held the VIP {} ms after the kill (its skew {} ms; without the clean-up's priority 0 it would wait its master-down interval, {} ms)",
        ms(took),
        ms(case.skew(100)),
        ms(case.master_down(100))
    );
    let text = output_text(&out);
    assert!(text.contains("announced"), "{text}");
    wait_until(
        "keepalived logs the priority-0 advert",
        Duration::from_secs(5),
        || {
            keepalived
                .log()
                .contains("Backup received priority 0 advertisement")
        },
    );
}
