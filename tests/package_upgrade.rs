//! A package upgrade on the master of a pair drops nothing (issue 14).
//!
//! Run by tests/package.sh (as root), after its `dpkg -i` of version A and
//! with `VIPD_UPGRADE_DEB` naming version B's .deb (the same tree, a bumped
//! Debian revision); `#[ignore]` so a plain `cargo test` skips it — it replaces
//! the host's installed package:
//!
//! ```text
//! VIPD_UPGRADE_DEB=target/debian/vipd_X-2_amd64.deb \
//!     cargo test --release --test package_upgrade -- --ignored --nocapture
//! ```
//!
//! n1 (priority 150, the master) runs the *installed* `/usr/sbin/vipd`; n2
//! (priority 100) this build's binary. While a client asks who has the VIP
//! every millisecond (ARP), `dpkg -i` installs version B. The maintainer
//! scripts leave the restart to the operator (debian/postinst), so the
//! running master must keep its pid, stay master, and the client must lose no
//! probe. dpkg replaces /usr/sbin/vipd by renaming a new file over it; the
//! running process keeps the old inode.
//!
//! Without systemd as PID 1 (containers, most CI) the postinst's
//! systemctl/deb-systemd-invoke calls are skipped (they are guarded by
//! `/run/systemd/system`), so this test covers the file replacement and the
//! scripts' other work, not a unit reload: the unit under a real systemd is
//! exercised by tests/systemd.rs.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The installed binary the master runs.
const INSTALLED: &str = "/usr/sbin/vipd";

fn state(daemon: &Daemon) -> String {
    daemon
        .status_json()
        .and_then(|s| s["instances"][0]["state"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn installed_version() -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "vipd"])
        .output()
        .expect("run dpkg-query");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "installs a .deb on the host: run by tests/package.sh with VIPD_UPGRADE_DEB"]
fn installing_the_next_version_on_the_master_drops_no_probe() {
    if !require_root() {
        return;
    }
    let deb = std::env::var("VIPD_UPGRADE_DEB")
        .expect("VIPD_UPGRADE_DEB names the next version's .deb (tests/package.sh sets it)");
    assert!(
        PathBuf::from(INSTALLED).exists(),
        "{INSTALLED} is not installed (tests/package.sh installs version A first)"
    );
    let before_version = installed_version();

    let lab = Lab::new("pkgup", 2);
    let vip = lab.vip4(0);
    let spec = |prio| InstanceSpec::new(prio).advert("100ms").vip(&vip);
    let mut n1 = Daemon::configure(lab.node(1), NodeSpec::new("n1", spec(150)));
    n1.use_binary(Some(PathBuf::from(INSTALLED)));
    n1.restart();
    let n2 = Daemon::start(lab.node(2), NodeSpec::new("n2", spec(100)));
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    wait_until("n2 is backup", Duration::from_secs(20), || {
        state(&n2) == "backup"
    });
    let pid = n1.pid().expect("n1 runs");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("n1's executable");
    assert_eq!(
        exe,
        PathBuf::from(INSTALLED),
        "n1 runs the installed binary"
    );
    let n1_mac = lab.node(1).mac_bytes();
    let prober = ArpProber::start_seeing(&lab.client, &vip, n1_mac);

    // Some probes before, the upgrade, and 2 s after (20 adverts, several
    // master-down intervals of n2) to see any late effect.
    sleep_checked(Duration::from_millis(500));
    let from = Instant::now();
    let started = Instant::now();
    let out = Command::new("dpkg")
        .args(["-i", &deb])
        .output()
        .expect("run dpkg -i");
    let dpkg_took = started.elapsed();
    assert!(
        out.status.success(),
        "dpkg -i {deb} failed:\n{}",
        output_text(&out)
    );
    let after_version = installed_version();
    sleep_checked(Duration::from_secs(2));
    let to = Instant::now();
    let window = prober.snapshot().window(from, to);
    let probes = prober
        .snapshot()
        .probes
        .iter()
        .filter(|&&t| t >= from && t < to)
        .count();
    println!(
        "[pkgup] dpkg -i {before_version} -> {after_version} on the master took {} ms; \
         client over {} ms: {probes} probes, {} lost, longest gap {:.1} ms, {} answered by two MACs",
        ms(dpkg_took),
        ms(to - from),
        window.lost,
        window.longest_gap_ms,
        window.answered_by_two
    );
    assert_ne!(
        before_version, after_version,
        "the installed version changed"
    );
    assert!(n1.is_running(), "n1 still runs after the upgrade");
    assert_eq!(n1.pid(), Some(pid), "n1 was not restarted");
    // dpkg renamed the new file over the old one: the running master still
    // executes the old, now unlinked, inode.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("n1's executable");
    println!("[pkgup] n1 (pid {pid}) now runs {}", exe.display());
    assert_eq!(state(&n1), "master", "n1 is still master");
    assert_eq!(state(&n2), "backup", "n2 is still backup");
    assert_eq!(lab.holders(&vip), [1], "only n1 holds the VIP");
    assert!(probes > 0, "the client sent probes during the upgrade");
    assert_eq!(
        window.lost, 0,
        "the client lost probes during the package upgrade"
    );
}
