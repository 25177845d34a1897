//! `vipd import-keepalived` on a corpus of realistic keepalived configurations
//! (tests/import/NAME.conf), each converted for a host: the TOML on stdout must
//! equal STEM.toml, the report on stderr STEM.report, the exit code 0 (all
//! carried over), 3 (something left out or changed) or 2 (unparsable); and every
//! expected TOML must load with vipd's own configuration loader.
//!
//! To update an expectation after a deliberate change, run the command by hand in
//! tests/import/ (`vipd import-keepalived [--join] --host HOST NAME.conf >
//! STEM.toml 2> STEM.report`) and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One conversion of the corpus.
struct Case {
    /// The expected files' name: STEM.toml and STEM.report.
    stem: &'static str,
    /// The keepalived file, NAME.conf.
    conf: &'static str,
    /// `--host`.
    host: &'static str,
    /// `--join`.
    join: bool,
    /// The expected exit code.
    code: i32,
}

const fn case(stem: &'static str, conf: &'static str, host: &'static str, code: i32) -> Case {
    Case {
        stem,
        conf,
        host,
        join: false,
        code,
    }
}

const fn join(stem: &'static str, conf: &'static str, host: &'static str, code: i32) -> Case {
    Case {
        join: true,
        ..case(stem, conf, host, code)
    }
}

const CORPUS: &[Case] = &[
    // A password and a track script.
    case("tutorial", "tutorial.conf", "lb1", 3),
    // Unicast peers, nopreempt, notify scripts.
    case("unicast", "unicast.conf", "web-b", 3),
    // A sync group, sub-second adverts, IPv6 addresses in IPv4 instances.
    case("syncgroup", "syncgroup.conf", "rtr1", 3),
    // One-line blocks and an include with a glob.
    case("oneline", "oneline.conf", "edge-2", 3),
    // LVS parts, use_vmac, SMTP.
    case("lvs", "lvs.conf", "lvs1", 3),
    // The file ends inside a block.
    case("truncated", "truncated.conf", "lb2", 2),
    // One file for both nodes: @HOST lines, $NAME definitions, router_id
    // LVS_DEVEL, global garp settings, state MASTER with nopreempt and without
    // priority, a VIP twice and one on another device.
    case("pair-lb1", "pair.conf", "lb1", 3),
    case("pair-lb2", "pair.conf", "lb2", 3),
    // No router_id, IPv6 VIPs with an excluded IPv4 one, vrrp_min_garp, and an
    // instance that is not converted.
    case("edge", "edge.conf", "edge-a", 3),
    // --join: VRRP with keepalived's password, checksum form, source address;
    // AH and another multicast group refused.
    join("join", "join.conf", "lb1", 3),
    join("tutorial-join", "tutorial.conf", "lb1", 3),
    join("unicast-join", "unicast.conf", "web-b", 3),
    join("edge-join", "edge.conf", "edge-a", 3),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import")
}

fn import(dir: &Path, file: &str) -> (i32, String, String) {
    import_with(dir, &["--host", "testhost", file])
}

fn import_with(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .arg("import-keepalived")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn expected(name: &str, ext: &str) -> String {
    let path = corpus_dir().join(format!("{name}.{ext}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn each_file_converts_as_expected() {
    let mut failures = Vec::new();
    for Case {
        stem,
        conf,
        host,
        join,
        code,
    } in CORPUS
    {
        let mut args = vec!["--host", host, conf];
        if *join {
            args.insert(0, "--join");
        }
        let (got_code, stdout, stderr) = import_with(&corpus_dir(), &args);
        let want_toml = if *code == 2 {
            String::new()
        } else {
            expected(stem, "toml")
        };
        let want_report = expected(stem, "report");
        if got_code != *code || stdout != want_toml || stderr != want_report {
            failures.push(format!(
                "{stem}: exit {got_code} (want {code})\n--- stdout:\n{stdout}\n--- want:\n{want_toml}\n\
                 --- stderr:\n{stderr}\n--- want:\n{want_report}"
            ));
        }
        println!(
            "{stem}: exit {got_code}, {} report lines",
            stderr.lines().count()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_report_line_is_file_line_what() {
    for Case { stem, .. } in CORPUS {
        for line in expected(stem, "report").lines() {
            let mut parts = line.splitn(3, ':');
            let (file, number, what) = (parts.next(), parts.next(), parts.next());
            assert!(file.is_some_and(|f| f.ends_with(".conf")), "{line}");
            assert!(number.is_some_and(|n| n.parse::<usize>().is_ok()), "{line}");
            assert!(what.is_some_and(|w| w.len() > 10), "{line}");
        }
    }
}

/// The output is a configuration vipd accepts, once the key files it names exist.
#[test]
fn every_expected_toml_loads_with_vipds_loader() {
    let keys = std::env::temp_dir().join(format!("vipd-import-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&keys);
    std::fs::create_dir_all(&keys).unwrap();
    for Case {
        stem: name, code, ..
    } in CORPUS
    {
        if *code == 2 {
            continue;
        }
        let text =
            expected(name, "toml").replace("\"/etc/vipd/", &format!("\"{}/", keys.display()));
        for line in text.lines() {
            if let Some(path) = line.strip_prefix("auth_key_file = ") {
                let path = PathBuf::from(path.trim_matches('"'));
                if !path.exists() {
                    vipd::keygen::write_new_key(&path).unwrap();
                }
            }
        }
        let origin = corpus_dir().join(format!("{name}.toml"));
        let config = vipd::config::from_toml(&text, &origin)
            .unwrap_or_else(|e| panic!("{name}.toml does not load:\n{e}"));
        println!("{name}.toml: {} instance(s) load", config.instances.len());
    }
    std::fs::remove_dir_all(&keys).unwrap();
}

#[test]
fn unreadable_files_and_includes_exit_2_with_where() {
    let dir = std::env::temp_dir().join(format!("vipd-import-errors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (code, stdout, stderr) = import(&dir, "missing.conf");
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with("missing.conf: cannot read: "),
        "{stderr}"
    );

    std::fs::write(
        dir.join("main.conf"),
        "global_defs {\n}\ninclude other.conf\n",
    )
    .unwrap();
    let (code, _, stderr) = import(&dir, "main.conf");
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("main.conf:3: include other.conf: cannot read: "),
        "{stderr}"
    );

    // A glob that matches nothing includes nothing, as in keepalived.
    std::fs::write(dir.join("glob.conf"), "include conf.d/*.conf\n").unwrap();
    let (code, stdout, stderr) = import(&dir, "glob.conf");
    assert_eq!((code, stderr.as_str()), (0, ""), "{stdout}");

    std::fs::write(dir.join("loop.conf"), "include loop.conf\n").unwrap();
    let (code, _, stderr) = import(&dir, "loop.conf");
    assert_eq!(code, 2);
    assert!(stderr.contains("includes nest deeper than 8"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Without --host, the output is for this machine: keepalived's default
/// config-id, the hostname up to its first dot.
#[test]
fn the_host_defaults_to_this_machines_short_hostname() {
    let hostname = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let short = hostname.split('.').next().unwrap().to_owned();
    let dir = std::env::temp_dir().join(format!("vipd-import-host-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("k.conf"),
        format!(
            "vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n \
             @{short} priority 150\n @^{short} priority 90\n virtual_ipaddress {{\n  10.0.0.5/24\n }}\n}}\n"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = import_with(&dir, &["k.conf"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stdout.contains("priority = 150\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("[node]\nname = \"{short}\"\n")),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("converted for host \"{short}\"")),
        "{stderr}"
    );
    let (_, stdout, _) = import_with(&dir, &["--host", "not-this-one", "k.conf"]);
    assert!(stdout.contains("priority = 90\n"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}
