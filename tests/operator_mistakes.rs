//! What a tired admin might do, tried against real daemons in network
//! namespaces: each mistake must leave exactly one master and the client on its
//! MAC.
//!
//! - A second `vipd run` on the live master (same config): it must exit at once
//!   naming the running pid, and change nothing — no address removed, no advert
//!   sent, no socket or state file touched.
//! - Any local user binding the advert port (with SO_REUSEADDR/SO_REUSEPORT,
//!   on the node's own address or the wildcard) is refused, so it cannot take
//!   the backup's adverts and make it claim the VIP.
//! - A key file owned by another user (mode 0600, reached through a symlink):
//!   refused, naming the link, the file it leads to, the owner and who may own
//!   it, since that user could change the key and sign adverts that move the VIP.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_second_vipd_run_on_the_master_changes_nothing() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("twice", 2);
    let vip = lab.vip4(0);
    let spec = |prio| InstanceSpec::new(prio).advert("100ms").vip(&vip);
    let daemons = start_nodes(&lab, vec![spec(150), spec(100)]);
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    let n1_mac = lab.node(1).mac_bytes();
    let prober = ArpProber::start_seeing(&lab.client, &vip, n1_mac);
    let running = daemons[0].pid().expect("n1 runs");

    // The slip: `vipd run` again, by hand, with the service's own config.
    let started = Instant::now();
    let second = Command::new("timeout")
        .args(["20", "ip", "netns", "exec", &lab.node(1).ns.name])
        .args([vipd_bin(), "run", "--config"])
        .arg(&daemons[0].config)
        .stdin(Stdio::null())
        .output()
        .expect("run a second vipd");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&second.stderr);
    eprintln!(
        "[twice] the second vipd run exited with {} after {} ms:\n{stderr}",
        second.status,
        ms(took)
    );
    assert!(
        !second.status.success(),
        "a second daemon must refuse to run"
    );
    assert_ne!(
        second.status.code(),
        Some(124),
        "the second daemon must exit at once, not run until killed"
    );
    assert!(
        stderr.contains(&format!("already running (pid {running})")),
        "names the running daemon's pid: {stderr}"
    );

    // Nothing changed: n1 alone holds the VIP, n2 stays backup, the client
    // keeps getting answers from n1, and n1's control socket still answers.
    hold_for("n1 alone holds the VIP", Duration::from_secs(2), || {
        lab.holders(&vip) == [1]
    });
    let log = prober.snapshot();
    let window = log.window(started, Instant::now() - Duration::from_millis(5));
    eprintln!(
        "[twice] client from the second run on: {} probes lost, longest gap {:.1} ms",
        window.lost, window.longest_gap_ms
    );
    assert!(
        log.replies
            .iter()
            .filter(|(t, _)| *t >= started)
            .all(|(_, mac)| *mac == n1_mac),
        "only n1 answered the client"
    );
    assert!(window.lost <= 5, "the client lost {} probes", window.lost);
    let status = daemons[0]
        .status_json()
        .expect("n1's control socket answers");
    assert_eq!(status["instances"][0]["state"], "master", "{status}");
    let status = daemons[1].status_json().expect("n2 answers");
    assert_eq!(status["instances"][0]["state"], "backup", "{status}");
    let n2_log = daemons[1].log();
    assert!(
        !n2_log.contains("replay"),
        "the peer never saw a second boot id or sequence: {n2_log}"
    );
}

/// Binds UDP port 5880 on each address given, as uid/gid 65534 with
/// SO_REUSEADDR and SO_REUSEPORT, and for any bind that succeeds counts the
/// datagrams it receives for 2 s. Prints one line per address: `ADDR REFUSED
/// errno` or `ADDR BOUND received N`.
const CO_BIND: &str = r#"
import socket, sys, time
for addr in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.bind((addr, 5880))
    except OSError as e:
        print(addr, "REFUSED", e.errno)
        continue
    s.settimeout(0.1)
    n, end = 0, time.time() + 2
    while time.time() < end:
        try:
            s.recv(2048)
            n += 1
        except socket.timeout:
            pass
    print(addr, "BOUND received", n)
"#;

#[test]
fn another_user_cannot_take_the_advert_port() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("cobind", 2);
    let vip = lab.vip4(0);
    for node in &lab.nodes {
        node.ns.drop_multicast_adverts(5880);
    }
    let (a1, a2) = (lab.node(1).v4.clone(), lab.node(2).v4.clone());
    let daemons = start_nodes(
        &lab,
        vec![
            InstanceSpec::new(150)
                .advert("100ms")
                .vip(&vip)
                .peers(&[&a2]),
            InstanceSpec::new(100)
                .advert("100ms")
                .vip(&vip)
                .peers(&[&a1]),
        ],
    );
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));

    // A local user on the backup tries to take the adverts meant for vipd:
    // its own address (more specific than vipd's wildcard) and the wildcard.
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.node(2).ns.name])
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .args(["/usr/bin/python3", "-c", CO_BIND, &a2, "0.0.0.0"])
        .stdin(Stdio::null())
        .output()
        .expect("run python3 as nobody");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "[cobind] as nobody on n2:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the probe script ran");
    for addr in [a2.as_str(), "0.0.0.0"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{addr} REFUSED 98"))),
            "binding {addr}:5880 must fail with EADDRINUSE (98): {text}"
        );
    }
    // And nothing moved: n2 still hears n1.
    hold_for("n1 alone holds the VIP", Duration::from_secs(1), || {
        lab.holders(&vip) == [1]
    });
    let status = daemons[1].status_json().expect("n2 answers");
    assert_eq!(status["instances"][0]["state"], "backup", "{status}");
}

/// The admin also put the VIP in the host's own network configuration (say
/// /etc/network/interfaces) before vipd ever ran. vipd uses that address while
/// master but never deletes it: not on stop, not by `vipd cleanup`. (Before the
/// first start `vipd check` refuses such a config; once the daemon runs, the
/// address can no longer be told apart by `check`, so the daemon itself must.)
#[test]
fn an_address_the_admin_configured_is_never_deleted() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("ownaddr", 1);
    let vip = lab.vip4(0);
    let node = lab.node(1);
    node.ns.ip(&["addr", "add", &vip, "dev", "eth0"]);
    let spec = InstanceSpec::new(150).advert("100ms").vip(&vip);
    let mut daemons = start_nodes(&lab, vec![spec]);
    wait_until("n1 becomes master", Duration::from_secs(20), || {
        daemons[0]
            .status_json()
            .is_some_and(|s| s["instances"][0]["state"] == "master")
    });
    wait_until(
        "the log says the address is someone else's",
        Duration::from_secs(10),
        || daemons[0].log().contains("by someone else"),
    );
    let config = daemons[0].config.clone();
    let status = daemons[0].sigterm();
    eprintln!("[ownaddr] vipd stopped with {status}");
    assert!(
        node.holds(&vip),
        "the admin's address survived the stop:\n{}",
        node.addr_text()
    );
    let cleanup = vipd_cleanup(node, &config);
    eprintln!("[ownaddr] vipd cleanup: {}", output_text(&cleanup));
    assert!(cleanup.status.success(), "{}", output_text(&cleanup));
    assert!(
        node.holds(&vip),
        "the admin's address survived vipd cleanup:\n{}",
        node.addr_text()
    );
}

/// `vipd cleanup` after a SIGKILL removes the dead daemon's VIPs, is idempotent,
/// and refuses while a daemon runs (its VIPs are its own).
#[test]
fn cleanup_removes_a_killed_daemons_vips_and_refuses_while_one_runs() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("cleanup", 1);
    let vip = lab.vip4(0);
    let node = lab.node(1);
    let spec = InstanceSpec::new(150).advert("100ms").vip(&vip);
    let mut daemons = start_nodes(&lab, vec![spec]);
    wait_until("n1 holds the VIP", Duration::from_secs(20), || {
        node.holds(&vip)
    });
    let config = daemons[0].config.clone();
    let cleanup = || vipd_cleanup(node, &config);
    let refused = cleanup();
    eprintln!("[cleanup] while running: {}", output_text(&refused));
    assert!(
        !refused.status.success(),
        "cleanup must refuse while vipd runs"
    );
    assert!(
        output_text(&refused).contains("already running"),
        "{}",
        output_text(&refused)
    );
    assert!(node.holds(&vip), "a refused cleanup removed nothing");

    daemons[0].kill9();
    assert!(
        node.holds(&vip),
        "SIGKILL leaves the VIP (what ExecStopPost is for)"
    );
    let started = Instant::now();
    let first = cleanup();
    let took = started.elapsed();
    eprintln!(
        "[cleanup] after SIGKILL, {} ms: {}",
        ms(took),
        output_text(&first)
    );
    assert!(first.status.success(), "{}", output_text(&first));
    assert!(
        !node.holds(&vip),
        "cleanup removed the VIP:\n{}",
        node.addr_text()
    );
    let again = cleanup();
    assert!(
        again.status.success(),
        "idempotent: {}",
        output_text(&again)
    );
    assert!(output_text(&again).contains("no vipd-marked address left"));
}

/// `vipd cleanup --config CONFIG` in `host`'s namespace, as ExecStopPost runs it.
fn vipd_cleanup(host: &Host, config: &std::path::Path) -> std::process::Output {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            &host.ns.name,
            vipd_bin(),
            "cleanup",
            "--config",
        ])
        .arg(config)
        .output()
        .expect("run vipd cleanup")
}

/// A directory removed on drop, also when the test fails.
struct ScratchDir(std::path::PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_key_file_owned_by_another_user_is_refused_also_through_a_symlink() {
    use std::os::unix::fs::PermissionsExt as _;
    if !require_root() {
        return;
    }
    let dir =
        ScratchDir(std::env::temp_dir().join(format!("vipd-keyowner-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(dir.0.join("elsewhere")).unwrap();
    let real = dir.0.join("elsewhere/k");
    std::fs::write(&real, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    let nobody = Some(nix::unistd::Uid::from_raw(65534));
    nix::unistd::chown(&real, nobody, None).expect("chown to nobody");
    let link = dir.0.join("db.key");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let config = dir.0.join("vipd.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"n1\"\ncontrol_socket = \"{}\"\n\n[[instance]]\nname = \"db\"\ninterface = \"lo\"\ngroup = 51\npriority = 150\nvips = [\"10.255.77.200/24\"]\nauth_key_file = {:?}\n",
            dir.0.join("vipd.sock").display(),
            link.display().to_string()
        ),
    )
    .unwrap();
    let check = || {
        run_output(
            vipd_bin(),
            &["check", "--config", config.to_str().expect("UTF-8 path")],
        )
    };

    let out = check();
    let said = output_text(&out);
    eprintln!("[keyowner] vipd check -> {}: {}", out.status, said.trim());
    assert!(
        !out.status.success(),
        "another user's key file was accepted: {said}"
    );
    for part in [
        format!(
            "auth_key_file {}: leads to {}",
            link.display(),
            real.display()
        ),
        "is owned by uid 65534".to_owned(),
        "valid: owned by root (uid 0), the user vipd runs as".to_owned(),
        format!("fix: chown root {}", link.display()),
    ] {
        assert!(said.contains(&part), "the refusal says {part:?}: {said}");
    }

    // The same file, link and mode, owned by root: accepted.
    nix::unistd::chown(&real, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    let out = check();
    assert!(
        out.status.success(),
        "root's key file: {}",
        output_text(&out)
    );
}
