//! `vipd check --config FILE`: exit status and `FILE:LINE:COLUMN` messages. Runs
//! without root: the configurations use the loopback interface.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vipd-check-{}-{name}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vipd.toml");
    fs::write(&path, text).unwrap();
    path
}

fn check(path: &PathBuf) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(["check", "--config"])
        .arg(path)
        .output()
        .expect("run vipd check");
    let _ = fs::remove_dir_all(path.parent().unwrap());
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn config(priority: &str, interface: &str) -> String {
    // Line 8 is `priority = ...`; its value starts at column 12.
    format!(
        "[node]\nname = \"n1\"\ncontrol_socket = \"/tmp/vipd-check.sock\"\n\n[[instance]]\nname = \"db\"\ninterface = \"{interface}\"\npriority = {priority}\ngroup = 51\nvips = [\"10.255.77.200/24\"]\nauth = \"none\"\n"
    )
}

#[test]
fn check_accepts_a_good_config() {
    let path = write_config("good", &config("150", "lo"));
    let out = check(&path);
    assert!(
        out.status.success(),
        "vipd check failed on a good config: {}",
        text(&out)
    );
}

#[test]
fn check_rejects_a_bad_value_with_file_line_column() {
    let path = write_config("bad", &config("300", "lo"));
    let out = check(&path);
    let all = text(&out);
    assert!(
        !out.status.success(),
        "vipd check accepted priority 300: {all}"
    );
    let want = format!("{}:8:12", path.display());
    assert!(all.contains(&want), "expected `{want}` in: {all}");
    assert!(all.contains("priority"), "{all}");
}

#[test]
fn check_rejects_a_syntax_error_with_file_line_column() {
    let path = write_config("syntax", "[node]\nname = \"n1\"\n\n[[instance]]\nname = \n");
    let out = check(&path);
    let all = text(&out);
    assert!(
        !out.status.success(),
        "vipd check accepted a syntax error: {all}"
    );
    let prefix = format!("{}:5:", path.display());
    assert!(all.contains(&prefix), "expected `{prefix}COL` in: {all}");
}

#[test]
fn check_rejects_a_missing_interface() {
    let path = write_config("noif", &config("150", "vipdnosuchif0"));
    let out = check(&path);
    let all = text(&out);
    assert!(
        !out.status.success(),
        "vipd check accepted a missing interface: {all}"
    );
    let want = format!("{}:7:", path.display());
    assert!(
        all.contains(&want) && all.contains("vipdnosuchif0"),
        "expected `{want}` in: {all}"
    );
}

#[test]
fn check_warns_about_a_default_node_name() {
    let toml = config("150", "lo").replace("name = \"n1\"", "name = \"localhost\"");
    let path = write_config("localhost", &toml);
    let out = check(&path);
    let all = text(&out);
    assert!(out.status.success(), "a warning is no failure: {all}");
    assert!(
        all.contains("warning: [node]: name \"localhost\" is a default hostname"),
        "{all}"
    );
    let path = write_config("own-name", &config("150", "lo"));
    let all = text(&check(&path));
    assert!(!all.contains("warning"), "{all}");
}
