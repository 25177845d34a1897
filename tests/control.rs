//! The control socket and the operator's CLI against real daemons in network
//! namespaces: drain refusal and `--force`, drain across restarts, `status --json`
//! and its exit codes, many clients at once, garbage on the socket, non-root
//! users, and `reload` with good and bad configurations.
//!
//! The CLI runs from the root namespace (the socket is a file). Measured times are
//! printed with `eprintln!` (run with `--nocapture`); deadlines are generous.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Sets its flag on drop, so a watcher thread in a `thread::scope` stops also
/// when the test panics (the scope would otherwise wait for it for ever).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn text(out: &Output) -> String {
    output_text(out)
}

/// `vipd status --json` whatever its exit code: (exit code, parsed JSON).
fn status(daemon: &Daemon) -> (Option<i32>, serde_json::Value) {
    let out = daemon.cli(&["status", "--json"]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: status --json printed no JSON ({e}): {}",
            daemon.label,
            text(&out)
        )
    });
    (out.status.code(), json)
}

/// The first instance of a status.
fn db(json: &serde_json::Value) -> &serde_json::Value {
    &json["instances"][0]
}

/// The peer called `name` in a status, if listed.
fn peer<'a>(json: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    db(json)["peers"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

fn flags(peer: &serde_json::Value) -> Vec<String> {
    peer["flags"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// One node (`n1`, priority 150, 100 ms adverts) holding one VIP.
fn lone(tag: &str) -> (Lab, String, Daemon) {
    let lab = Lab::new(tag, 1);
    let vip = lab.vip4(0);
    let mut daemons = start_nodes(&lab, vec![InstanceSpec::new(150).vip(&vip)]);
    let took = wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    eprintln!("[{tag}] lone n1 holds {vip} after {} ms", ms(took));
    (lab, vip, daemons.remove(0))
}

/// n1 (150) and n2 (100), preempt on; n1 master and aware that n2 is alive.
fn pair(tag: &str) -> (Lab, String, Vec<Daemon>) {
    let lab = Lab::new(tag, 2);
    let vip = lab.vip4(0);
    let daemons = start_pair(&lab, &vip);
    wait_until("n1 hears n2 alive", Duration::from_secs(10), || {
        peer(&status(&daemons[0]).1, "n2").is_some_and(|p| p["alive"] == true)
    });
    (lab, vip, daemons)
}

#[test]
fn drain_is_refused_on_a_lone_node_unless_forced() {
    if !require_root() {
        return;
    }
    let (lab, vip, daemon) = lone("lone");
    assert_eq!(status(&daemon).0, Some(0), "a lone master is healthy");

    let out = daemon.cli(&["drain"]);
    eprintln!("[lone] vipd drain -> {}: {}", out.status, text(&out).trim());
    assert!(!out.status.success(), "drain of a lone master succeeded");
    let said = text(&out);
    assert!(
        said.contains("no healthy eligible peer") && said.contains("--force"),
        "the refusal names the reason and the way out: {said}"
    );
    hold_for("n1 keeps the VIP", Duration::from_millis(500), || {
        lab.holders(&vip) == [1]
    });
    assert_eq!(db(&status(&daemon).1)["drained"], false);

    let out = daemon.cli(&["drain", "--force"]);
    eprintln!(
        "[lone] vipd drain --force -> {}: {}",
        out.status,
        text(&out).trim()
    );
    assert!(out.status.success(), "drain --force: {}", text(&out));
    let took = wait_until("n1 released the VIP", Duration::from_secs(5), || {
        lab.holders(&vip).is_empty()
    });
    eprintln!("[lone] VIP released {} ms after drain --force", ms(took));
    let (code, json) = status(&daemon);
    assert_eq!(db(&json)["drained"], true, "{json:#}");
    assert_eq!(db(&json)["state"], "backup", "{json:#}");
    assert!(db(&json)["master"].is_null(), "{json:#}");
    assert_eq!(code, Some(3), "no master known: exit 3\n{json:#}");
    let human = daemon.cli(&["status"]);
    assert_eq!(human.status.code(), Some(3), "{}", text(&human));
    hold_for(
        "a drained lone node does not take the VIP",
        Duration::from_secs(1),
        || lab.holders(&vip).is_empty(),
    );

    // The link of the only node goes down: fault, exit 2 (before "no master").
    lab.node(1).link(false);
    wait_until("status shows fault", Duration::from_secs(5), || {
        db(&status(&daemon).1)["state"] == "fault"
    });
    let (code, json) = status(&daemon);
    eprintln!(
        "[lone] link down: status exit {code:?}, fault {}",
        db(&json)["fault"]
    );
    assert_eq!(code, Some(2), "fault: exit 2\n{json:#}");
    assert!(
        db(&json)["fault"]
            .as_str()
            .is_some_and(|f| f.contains("eth0")),
        "the fault names the interface: {json:#}"
    );
    lab.node(1).link(true);
    wait_until("fault clears", Duration::from_secs(5), || {
        status(&daemon).0 == Some(3)
    });

    // Undrain: the lone node takes its VIP again.
    let out = daemon.cli(&["undrain"]);
    assert!(out.status.success(), "undrain: {}", text(&out));
    let took = wait_sole_holder(&lab, &vip, 1, Duration::from_secs(5));
    eprintln!("[lone] undrain -> n1 holds the VIP after {} ms", ms(took));
    assert_eq!(status(&daemon).0, Some(0));
}

#[test]
fn drain_survives_a_restart() {
    if !require_root() {
        return;
    }
    let (lab, vip, mut daemons) = pair("drrst");
    let out = daemons[0].cli(&["drain", "--wait"]);
    assert!(out.status.success(), "drain --wait: {}", text(&out));
    assert_eq!(lab.holders(&vip), [2]);
    let file = daemons[0].dir.join("state/db.drained");
    assert!(file.exists(), "{} was not written", file.display());

    for how in ["kill -9", "SIGTERM"] {
        if how == "SIGTERM" {
            let status = daemons[0].sigterm();
            assert!(status.success(), "drained n1 exited with {status}");
        }
        daemons[0].restart();
        wait_answering(&daemons[0]);
        let (_, json) = status(&daemons[0]);
        assert_eq!(db(&json)["drained"], true, "after {how}: {json:#}");
        // n1 outranks n2 and preempt is on: only the drain keeps it back.
        hold_for(
            &format!("n2 alone holds the VIP after n1's {how} and restart"),
            Duration::from_secs(2),
            || lab.holders(&vip) == [2],
        );
        let (_, json) = status(&daemons[0]);
        assert_eq!(db(&json)["state"], "backup", "{json:#}");
        assert_eq!(db(&json)["master"]["name"], "n2", "{json:#}");
        eprintln!("[drrst] n1 still drained after {how} and restart; n2 keeps the VIP");
    }

    let out = daemons[0].cli(&["undrain"]);
    assert!(out.status.success(), "undrain: {}", text(&out));
    assert!(
        !file.exists(),
        "{} is still there after undrain",
        file.display()
    );
    let took = wait_sole_holder(&lab, &vip, 1, Duration::from_secs(5));
    eprintln!(
        "[drrst] undrain -> n1 preempts, sole holder after {} ms",
        ms(took)
    );
}

/// A small tmpfs mounted over a directory, so that it can be filled up; lazily
/// unmounted on drop (also when the test fails), so that a daemon still
/// holding files in it cannot keep it mounted.
struct SmallTmpfs {
    dir: std::path::PathBuf,
}

impl SmallTmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Self {
        let target = dir.to_str().expect("UTF-8 path");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
                target,
            ],
        );
        Self {
            dir: dir.to_owned(),
        }
    }

    /// Appends to `filler` page by page until the file system says ENOSPC.
    fn fill(&self) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .expect("open the filler");
        let page = [0u8; 4096];
        loop {
            match file.write_all(&page) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return,
                Err(e) => panic!("filling {}: {e}", self.dir.display()),
            }
        }
    }

    fn filler(&self) -> std::path::PathBuf {
        self.dir.join("filler")
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = run_output("umount", &["-l", self.dir.to_str().unwrap_or_default()]);
    }
}

/// `vipd status --json` answers (the daemon is up after a restart).
fn wait_answering(daemon: &Daemon) {
    wait_until("the restarted n1 answers", Duration::from_secs(10), || {
        daemon
            .cli(&["status", "--json"])
            .status
            .code()
            .is_some_and(|c| c != 1)
    });
}

#[test]
fn a_drain_that_cannot_be_saved_says_so_and_a_restart_is_not_drained() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("drfull", 1);
    let vip = lab.vip4(0);
    let mut daemon = Daemon::configure(
        lab.node(1),
        NodeSpec::new("n1", InstanceSpec::new(150).vip(&vip)),
    );
    let file = daemon.dir.join("state/db.drained");
    // The state directory is a 64 KiB tmpfs: the daemon starts with room for
    // its lock and boot id, then the disk fills up.
    let state = SmallTmpfs::mount(&daemon.dir.join("state"), "64k");
    daemon.restart();
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    state.fill();

    let out = daemon.cli(&["drain", "--force"]);
    let said = text(&out);
    eprintln!(
        "[drfull] vipd drain --force on a full state_dir -> {}: {}",
        out.status,
        said.trim()
    );
    assert!(out.status.success(), "the drain itself took effect: {said}");
    assert!(
        said.contains("drained now")
            && said.contains("NOT saved: a restart will not be drained")
            && said.contains("No space left on device"),
        "the answer says the drain is not saved and what a restart does: {said}"
    );
    assert!(!file.exists(), "{} was left behind", file.display());
    assert!(
        !daemon.dir.join("state/db.drained.tmp").exists(),
        "the temporary file was left behind"
    );
    wait_until("n1 released the VIP", Duration::from_secs(5), || {
        lab.holders(&vip).is_empty()
    });
    assert_eq!(db(&status(&daemon).1)["drained"], true);

    // The operator frees the disk and restarts: the node is not drained, as
    // it was told, and takes its VIP again.
    std::fs::remove_file(state.filler()).expect("remove the filler");
    daemon.restart();
    wait_answering(&daemon);
    let (_, json) = status(&daemon);
    assert_eq!(db(&json)["drained"], false, "after the restart: {json:#}");
    let took = wait_sole_holder(&lab, &vip, 1, Duration::from_secs(10));
    eprintln!(
        "[drfull] restarted n1 is not drained and holds the VIP after {} ms",
        ms(took)
    );

    // With room on the disk the drain is saved, and says so.
    let out = daemon.cli(&["drain", "--force"]);
    let said = text(&out);
    eprintln!(
        "[drfull] vipd drain --force with room -> {}: {}",
        out.status,
        said.trim()
    );
    assert!(
        out.status.success()
            && said.contains("saved: a restart stays drained until `vipd undrain`"),
        "{said}"
    );
    assert!(file.exists(), "{} was not written", file.display());
    daemon.restart();
    wait_answering(&daemon);
    assert_eq!(
        db(&status(&daemon).1)["drained"],
        true,
        "the saved drain holds"
    );
    hold_for(
        "the drained n1 stays without the VIP",
        Duration::from_secs(1),
        || lab.holders(&vip).is_empty(),
    );
    let out = daemon.cli(&["undrain"]);
    let said = text(&out);
    eprintln!("[drfull] vipd undrain -> {}: {}", out.status, said.trim());
    assert!(
        said.contains("saved: a restart will not be drained"),
        "{said}"
    );
    assert!(
        !file.exists(),
        "{} is still there after undrain",
        file.display()
    );
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(5));
}

#[test]
fn status_lists_peers_and_marks_lost_ones() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("peers", 3);
    let vip = lab.vip4(0);
    let mut daemons = start_nodes(
        &lab,
        vec![
            InstanceSpec::new(150).vip(&vip),
            InstanceSpec::new(100).vip(&vip),
            InstanceSpec::new(50).vip(&vip),
        ],
    );
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(20));
    let out = daemons[2].cli(&["drain"]);
    assert!(out.status.success(), "drain of backup n3: {}", text(&out));
    wait_until(
        "n2 lists n1 (master) and n3 (drained), both alive, and n1 lists n2",
        Duration::from_secs(10),
        || {
            let (_, j1) = status(&daemons[0]);
            if !peer(&j1, "n2").is_some_and(|p| p["alive"] == true) {
                return false;
            }
            let (_, json) = status(&daemons[1]);
            peer(&json, "n1").is_some_and(|p| p["alive"] == true && p["state"] == "master")
                && peer(&json, "n3")
                    .is_some_and(|p| p["alive"] == true && flags(p).contains(&"drained".to_owned()))
        },
    );
    let (code, json) = status(&daemons[1]);
    eprintln!("[peers] n2's view: {:#}", db(&json)["peers"]);
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(
        db(&json)["peers"].as_array().map(Vec::len),
        Some(2),
        "{json:#}"
    );
    let n1 = peer(&json, "n1").unwrap();
    assert_eq!(n1["address"], lab.node(1).v4.as_str(), "{json:#}");
    assert_eq!(n1["priority"], 150, "{json:#}");
    assert_eq!(flags(n1), ["master"], "{json:#}");
    assert_eq!(n1["state"], "master", "{json:#}");
    let n3 = peer(&json, "n3").unwrap();
    assert_eq!(n3["address"], lab.node(3).v4.as_str(), "{json:#}");
    assert_eq!(flags(n3), ["drained"], "{json:#}");
    assert_eq!(n3["state"], "backup", "{json:#}");
    assert_eq!(db(&json)["master"]["name"], "n1", "{json:#}");
    assert_eq!(db(&json)["master"]["address"], lab.node(1).v4.as_str());
    // n1's view: n2 at its configured priority, n3 drained.
    let (_, j1) = status(&daemons[0]);
    let n2 = peer(&j1, "n2").expect("n1 lists n2");
    assert_eq!(n2["priority"], 100, "{j1:#}");
    assert_eq!(n2["address"], lab.node(2).v4.as_str(), "{j1:#}");
    assert!(flags(n2).is_empty(), "{j1:#}");
    assert_eq!(n2["state"], "backup", "{j1:#}");
    assert!(db(&j1)["master"]["is_self"] == true, "{j1:#}");

    // n1 dies without a word: n2 takes over and no longer shows n1 as master.
    daemons[0].kill9();
    wait_until("n2 is master", Duration::from_secs(5), || {
        db(&status(&daemons[1]).1)["state"] == "master"
    });
    let (code, json) = status(&daemons[1]);
    let n1 = peer(&json, "n1").expect("n2 still lists n1");
    eprintln!("[peers] after kill -9 of n1, n2 shows it as: {n1}");
    assert_eq!(n1["alive"], false, "{json:#}");
    assert_ne!(
        n1["state"], "master",
        "a dead peer shown as master: {json:#}"
    );
    assert_eq!(n1["state"], "lost", "{json:#}");
    assert_eq!(flags(n1), ["master"], "flags stay as last heard: {json:#}");
    assert_eq!(code, Some(0));
    let human = text(&daemons[1].cli(&["status"]));
    assert!(
        human
            .lines()
            .any(|l| l.trim_start().starts_with("n1") && l.contains("lost")),
        "{human}"
    );
}

#[test]
fn ten_status_clients_at_once() {
    if !require_root() {
        return;
    }
    let (_lab, _vip, daemon) = lone("ten");
    for round in 0..3 {
        let start = Instant::now();
        let results: Vec<(Output, Duration)> = thread::scope(|s| {
            let handles: Vec<_> = (0..10)
                .map(|i| {
                    let daemon = &daemon;
                    s.spawn(move || {
                        let t = Instant::now();
                        let args: &[&str] = if i % 2 == 0 {
                            &["status"]
                        } else {
                            &["status", "--json"]
                        };
                        (daemon.cli(args), t.elapsed())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let slowest = results.iter().map(|(_, d)| *d).max().unwrap_or_default();
        eprintln!(
            "[ten] round {round}: 10 parallel status calls done in {} ms (slowest {} ms)",
            ms(start.elapsed()),
            ms(slowest)
        );
        for (out, _) in &results {
            assert!(out.status.success(), "a status call failed: {}", text(out));
        }
    }
}

/// Writes `bytes` to a fresh connection, then reads what the daemon answers (it
/// may close early; write errors are expected then).
fn send_raw(socket: &std::path::Path, bytes: &[u8], close_write: bool) -> String {
    let mut stream = UnixStream::connect(socket).expect("connect to the control socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    if close_write {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn garbage_on_the_socket_leaves_the_daemon_serving() {
    if !require_root() {
        return;
    }
    let (lab, vip, daemon) = lone("garbage");
    let socket = daemon.socket.clone();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        // The VIP must stay put throughout.
        let watcher = s.spawn(|| {
            let mut lost = 0;
            while !stop.load(Ordering::Relaxed) {
                if lab.holders(&vip) != [1] {
                    lost += 1;
                }
                thread::sleep(Duration::from_millis(20));
            }
            lost
        });

        // Clients that connect and sit, one of them with half a request sent.
        let mut sitters: Vec<UnixStream> = (0..5)
            .map(|_| UnixStream::connect(&socket).expect("connect"))
            .collect();
        let _ = sitters[0].write_all(b"{\"version\":1,\"comm");

        // Random bytes, with and without a newline.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect()
        };
        let answer = send_raw(&socket, &random(4096), true);
        eprintln!("[garbage] 4 KiB random bytes -> {}", answer.trim());
        assert!(answer.contains("\"error\""), "{answer}");
        let mut line = random(1000);
        line.push(b'\n');
        let answer = send_raw(&socket, &line, false);
        eprintln!("[garbage] random line -> {}", answer.trim());
        assert!(answer.contains("\"error\""), "{answer}");

        // A 1 MiB line.
        let mut big = vec![b'a'; 1 << 20];
        big.push(b'\n');
        let answer = send_raw(&socket, &big, false);
        eprintln!("[garbage] 1 MiB line -> {}", answer.trim());
        assert!(
            answer.is_empty() || answer.contains("longer than"),
            "{answer}"
        );

        // Half a request, then close.
        let answer = send_raw(&socket, b"{\"version\":1,\"command\":\"dra", true);
        eprintln!("[garbage] half a request, then close -> {}", answer.trim());
        // Valid JSON that is not a request, another version, an unknown command.
        for bad in [
            &b"[1,2,3]\n"[..],
            b"{\"version\":99,\"command\":\"status\"}\n",
            b"{\"version\":1,\"command\":\"selfdestruct\"}\n",
            b"{\"version\":1,\"command\":\"drain\",\"instances\":[\"nope\"]}\n",
            b"\xff\xfe\x00\n",
        ] {
            let answer = send_raw(&socket, bad, false);
            eprintln!(
                "[garbage] {:?} -> {}",
                String::from_utf8_lossy(bad).trim(),
                answer.trim()
            );
            assert!(answer.contains("\"error\""), "{answer}");
        }

        // With the sitters still connected, status answers quickly.
        let start = Instant::now();
        let out = daemon.cli(&["status"]);
        let took = start.elapsed();
        eprintln!(
            "[garbage] vipd status with 5 idle clients connected: {} ms",
            ms(took)
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(took < Duration::from_secs(1), "status took {took:?}");
        // The sitters are dropped by the server after its read timeout (5 s).
        let mut buf = Vec::new();
        sitters[1]
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let t = Instant::now();
        let _ = sitters[1].read_to_end(&mut buf);
        eprintln!(
            "[garbage] an idle client was answered after {} ms: {}",
            ms(t.elapsed()),
            String::from_utf8_lossy(&buf).trim()
        );
        drop(sitters);

        let start = Instant::now();
        let out = daemon.cli(&["status", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(start.elapsed() < Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(
            watcher.join().unwrap(),
            0,
            "the VIP moved while garbage came in"
        );
    });
    assert_eq!(lab.holders(&vip), [1]);
}

#[test]
fn a_non_root_user_is_refused() {
    if !require_root() {
        return;
    }
    let (lab, vip, daemon) = lone("nobody");
    let socket = daemon.socket.to_str().unwrap().to_owned();
    let as_nobody = || {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                vipd_bin(),
                "status",
                "--socket",
                &socket,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run setpriv")
    };

    // As configured: the socket's directory and the socket are root's alone.
    let out = as_nobody();
    eprintln!(
        "[nobody] vipd status as uid 65534 -> {}: {}",
        out.status,
        text(&out).trim()
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("permission denied"), "{}", text(&out));
    assert!(text(&out).contains("run as root"), "{}", text(&out));

    // Even when the file permissions let it through, the daemon checks the peer's
    // credentials.
    std::fs::set_permissions(&daemon.dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody();
    eprintln!(
        "[nobody] vipd status as uid 65534 with the socket opened up -> {}: {}",
        out.status,
        text(&out).trim()
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("permission denied") && said.contains("root"),
        "the refusal says who may: {said}"
    );
    let log = daemon.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("uid 65534"))
        .unwrap_or_else(|| panic!("the daemon logs who it refused:\n{log}"));
    eprintln!("[nobody] the daemon logged: {refusal}");
    assert!(
        refusal.contains("uid 65534 (pid ")
            && refusal
                .split("uid 65534 (pid ")
                .nth(1)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit())),
        "the pid as a number, not Debug: {refusal}"
    );
    // Root still gets in; the VIP did not move.
    assert_eq!(status(&daemon).0, Some(0));
    assert_eq!(lab.holders(&vip), [1]);
}

#[test]
fn reload_reports_the_outcome_and_keeps_running() {
    if !require_root() {
        return;
    }
    let (lab, vip, mut daemon) = lone("reload");
    let vip2 = lab.vip4(1);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let watcher = s.spawn(|| {
            let mut lost = 0;
            while !stop.load(Ordering::Relaxed) {
                if !lab.node(1).holds(&vip) {
                    lost += 1;
                }
                thread::sleep(Duration::from_millis(5));
            }
            lost
        });

        // A good change: a second instance; db is kept as it is.
        let mut spec = NodeSpec::new("n1", InstanceSpec::new(150).vip(&vip));
        let mut web = InstanceSpec::new(150).vip(&vip2);
        web.name = "web".into();
        web.group = 52;
        spec.instances.push(web);
        daemon.rewrite_config(&spec);
        let out = daemon.cli(&["reload"]);
        eprintln!(
            "[reload] good config -> {}: {}",
            out.status,
            text(&out).trim()
        );
        assert!(out.status.success(), "{}", text(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("applied"), "{said}");
        assert!(
            said.contains("kept: db") && said.contains("started: web"),
            "{said}"
        );
        wait_until("n1 holds the second VIP", Duration::from_secs(5), || {
            lab.node(1).holds(&vip2)
        });

        // A bad change: an unknown key on a known line.
        let good = daemon.rewrite_config(&spec);
        let line = good.lines().count() + 1;
        std::fs::write(&daemon.config, format!("{good}bogus_key = 1\n")).unwrap();
        let out = daemon.cli(&["reload"]);
        eprintln!(
            "[reload] bad config -> {}: {}",
            out.status,
            text(&out).trim()
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let want = format!("{}:{line}:1", daemon.config.display());
        assert!(text(&out).contains(&want), "no {want} in: {}", text(&out));
        assert!(text(&out).contains("bogus_key"), "{}", text(&out));

        // A syntax error.
        std::fs::write(&daemon.config, format!("{good}[[instance]\n")).unwrap();
        let out = daemon.cli(&["reload"]);
        eprintln!(
            "[reload] broken TOML -> {}: {}",
            out.status,
            text(&out).trim()
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let want = format!("{}:{line}:", daemon.config.display());
        assert!(text(&out).contains(&want), "no {want} in: {}", text(&out));

        // Still serving, both instances as before.
        let (code, json) = status(&daemon);
        assert_eq!(code, Some(0), "{json:#}");
        assert_eq!(json["instances"].as_array().map(Vec::len), Some(2));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(
            watcher.join().unwrap(),
            0,
            "the VIP of db went away during reloads"
        );
    });
    assert!(daemon.is_running(), "vipd exited");
    assert!(lab.node(1).holds(&vip2));
}
