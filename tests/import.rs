//! `vipd import-keepalived` on a corpus of realistic keepalived configurations
//! (tests/import/NAME.conf): the TOML on stdout must equal NAME.toml, the report
//! on stderr NAME.report, the exit code 0 (all carried over), 3 (something left
//! out) or 2 (unparsable); and every expected TOML must load with vipd's own
//! configuration loader.
//!
//! To update an expectation after a deliberate change, run the command by hand in
//! tests/import/ (`vipd import-keepalived NAME.conf > NAME.toml 2> NAME.report`)
//! and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (name, expected exit code).
const CORPUS: &[(&str, i32)] = &[
    ("tutorial", 3),  // a password and a track script
    ("unicast", 3),   // unicast peers, nopreempt, notify scripts
    ("syncgroup", 3), // a sync group, IPv6 and sub-second adverts
    ("oneline", 0),   // one-line blocks and an include with a glob
    ("lvs", 3),       // LVS parts, use_vmac, SMTP
    ("truncated", 2), // the file ends inside a block
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import")
}

fn import(dir: &Path, file: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(["import-keepalived", file])
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
    for (name, code) in CORPUS {
        let (got_code, stdout, stderr) = import(&corpus_dir(), &format!("{name}.conf"));
        let want_toml = if *code == 2 {
            String::new()
        } else {
            expected(name, "toml")
        };
        let want_report = expected(name, "report");
        if got_code != *code || stdout != want_toml || stderr != want_report {
            failures.push(format!(
                "{name}: exit {got_code} (want {code})\n--- stdout:\n{stdout}\n--- want:\n{want_toml}\n\
                 --- stderr:\n{stderr}\n--- want:\n{want_report}"
            ));
        }
        println!(
            "{name}: exit {got_code}, {} report lines",
            stderr.lines().count()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_report_line_is_file_line_what() {
    for (name, _) in CORPUS {
        for line in expected(name, "report").lines() {
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
    for (name, code) in CORPUS {
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
