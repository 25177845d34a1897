//! `vipd.toml(5)` and the example `config/vipd.toml` cannot drift from the code:
//! the page is generated from the example, and here every key of the schema
//! (`src/config/raw.rs`) must be documented in the example's table, every
//! documented key must exist, and each default the example states must be the
//! one in `vipd::config::defaults`. Also: `vipd generate-assets` writes every
//! man page and completion the package installs. And the commands the README
//! gives and the scripts it names run as typed in a root shell: none starts
//! with or calls `sudo` (a root-only Debian host has none).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vipd::config::defaults;
use vipd::manual::{config_man_page, config_reference, EXAMPLE_CONFIG};

const RAW_SCHEMA: &str = include_str!("../src/config/raw.rs");

/// Each raw struct and the table it reads.
const TABLES: &[(&str, &str)] = &[
    ("RawNode", "node"),
    ("RawInstance", "instance"),
    ("RawRoute", "instance.route"),
    ("RawTrackScript", "instance.track_script"),
    ("RawTrackInterface", "instance.track_interface"),
    ("RawTrackFile", "instance.track_file"),
    ("RawNotify", "instance.notify"),
    ("RawGuard", "instance.guard"),
    ("RawSyncGroup", "sync_group"),
];

/// The field names of `struct NAME` in raw.rs: the keys serde accepts.
fn schema_keys(struct_name: &str) -> BTreeSet<String> {
    let start = RAW_SCHEMA
        .find(&format!("pub(super) struct {struct_name} {{"))
        .unwrap_or_else(|| panic!("raw.rs has no struct {struct_name}"));
    let body = &RAW_SCHEMA[start..];
    let body = &body[..body.find("\n}").unwrap()];
    body.lines()
        .skip(1)
        .filter_map(|line| line.trim().strip_prefix("pub(super) "))
        .filter_map(|field| field.split_once(':').map(|(name, _)| name.to_owned()))
        .collect()
}

fn documented_keys(table: &str) -> BTreeSet<String> {
    let reference = config_reference(EXAMPLE_CONFIG);
    let section = reference
        .sections
        .iter()
        .find(|s| s.table == table)
        .unwrap_or_else(|| panic!("config/vipd.toml documents no [{table}]"));
    section.keys().map(|(k, _)| k.to_owned()).collect()
}

#[test]
fn every_key_of_the_schema_is_documented_and_no_other() {
    let mut problems = Vec::new();
    for (struct_name, table) in TABLES {
        let schema = schema_keys(struct_name);
        let documented = documented_keys(table);
        for missing in schema.difference(&documented) {
            problems.push(format!(
                "[{table}] {missing}: in raw.rs, not in config/vipd.toml"
            ));
        }
        for extra in documented.difference(&schema) {
            problems.push(format!(
                "[{table}] {extra}: in config/vipd.toml, not in raw.rs"
            ));
        }
        println!("[{table}]: {} keys documented", documented.len());
    }
    let tables: BTreeSet<&str> = TABLES.iter().map(|(_, t)| *t).collect();
    for section in config_reference(EXAMPLE_CONFIG).sections {
        if !tables.contains(section.table.as_str()) {
            problems.push(format!(
                "[{}]: documented, but no raw struct reads it",
                section.table
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_documented_key_is_in_the_man_page() {
    let page = config_man_page();
    for section in config_reference(EXAMPLE_CONFIG).sections {
        for (key, _) in section.keys() {
            let roff_key = key.replace('-', "\\-");
            assert!(
                page.contains(&format!(".TP\n\\fB{roff_key}\\fR = ")),
                "[{}] {key} missing from vipd.toml(5)",
                section.table
            );
        }
    }
}

/// The first `default VALUE` / `Default: VALUE` in a key's description.
fn stated_default(description: &[String]) -> Option<String> {
    let text = description.join(" ");
    let lower = text.to_lowercase();
    let at = lower.find("default")? + "default".len();
    let rest = text[at..].trim_start_matches(':').trim_start();
    let value: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ';' && *c != ',')
        .collect();
    Some(value.trim_end_matches(['.', ')']).to_owned())
}

fn duration(d: Duration) -> String {
    format!("\"{}\"", humantime::format_duration(d))
}

#[test]
fn every_stated_default_is_the_codes() {
    let quoted = |s: &str| format!("\"{s}\"");
    let expected: Vec<(&str, &str, String)> = vec![
        ("node", "control_socket", quoted(defaults::CONTROL_SOCKET)),
        ("node", "state_dir", quoted(defaults::STATE_DIR)),
        ("node", "startup_delay", duration(defaults::STARTUP_DELAY)),
        (
            "instance",
            "advert_interval",
            duration(defaults::ADVERT_INTERVAL),
        ),
        (
            "instance",
            "takeover_margin",
            duration(defaults::TAKEOVER_MARGIN),
        ),
        ("instance", "preempt", defaults::PREEMPT.to_string()),
        (
            "instance",
            "preempt_delay",
            duration(defaults::PREEMPT_DELAY),
        ),
        (
            "instance",
            "multicast_group",
            quoted(&defaults::MULTICAST_GROUP.to_string()),
        ),
        ("instance", "port", defaults::PORT.to_string()),
        (
            "instance",
            "announce_count",
            defaults::ANNOUNCE_COUNT.to_string(),
        ),
        (
            "instance",
            "announce_interval",
            duration(defaults::ANNOUNCE_INTERVAL),
        ),
        (
            "instance",
            "announce_repeat_after",
            duration(defaults::ANNOUNCE_REPEAT_AFTER.unwrap_or_default()),
        ),
        (
            "instance",
            "announce_refresh",
            duration(defaults::ANNOUNCE_REFRESH.unwrap_or_default()),
        ),
        (
            "instance",
            "announce_probe",
            defaults::ANNOUNCE_PROBE.to_string(),
        ),
        (
            "instance.track_script",
            "interval",
            duration(defaults::TRACK_SCRIPT_INTERVAL),
        ),
        (
            "instance.track_script",
            "rise",
            defaults::TRACK_RISE.to_string(),
        ),
        (
            "instance.track_script",
            "fall",
            defaults::TRACK_FALL.to_string(),
        ),
        (
            "instance.track_file",
            "interval",
            duration(defaults::TRACK_FILE_INTERVAL),
        ),
        (
            "instance.track_file",
            "weight_multiplier",
            defaults::TRACK_FILE_MULTIPLIER.to_string(),
        ),
        (
            "instance.notify",
            "timeout",
            duration(defaults::NOTIFY_TIMEOUT),
        ),
        ("instance.guard", "fall", defaults::GUARD_FALL.to_string()),
        ("instance.guard", "rise", defaults::GUARD_RISE.to_string()),
    ];
    let reference = config_reference(EXAMPLE_CONFIG);
    let mut problems = Vec::new();
    for (table, key, want) in &expected {
        let description = reference
            .sections
            .iter()
            .find(|s| s.table == *table)
            .and_then(|s| s.keys().find(|(k, _)| k == key).map(|(_, d)| d.to_vec()))
            .unwrap_or_default();
        let stated = stated_default(&description);
        if stated.as_deref() != Some(want.as_str()) {
            problems.push(format!(
                "[{table}] {key}: config/vipd.toml says default {stated:?}, the code has {want}"
            ));
        }
    }
    println!("{} defaults compared", expected.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn generate_assets_writes_the_pages_and_completions() {
    let dir = std::env::temp_dir().join(format!("vipd-assets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .arg("generate-assets")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for file in [
        "man/vipd.8",
        "man/vipd-status.8",
        "man/vipd-keygen.8",
        "man/vipd-import-keepalived.8",
        "man/vipd.toml.5",
        "completions/vipd",
        "completions/_vipd",
        "completions/vipd.fish",
    ] {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.len() > 200, "{file} is nearly empty");
    }
    let main_page = std::fs::read_to_string(dir.join("man/vipd.8")).unwrap();
    for section in [
        ".SH DESCRIPTION",
        ".SH EXAMPLES",
        ".SH FILES",
        ".SH SEE ALSO",
    ] {
        assert!(main_page.contains(section), "vipd.8 lacks {section}");
    }
    // The hidden command stays out of the page and the completions' listing.
    assert!(!main_page.contains("generate\\-assets"));
    assert!(!Path::new(&dir.join("man/vipd-generate-assets.8")).exists());
    let bash = std::fs::read_to_string(dir.join("completions/vipd")).unwrap();
    assert!(bash.contains("import-keepalived"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `text` without its double-quoted strings (messages that may mention sudo).
fn unquoted(line: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in line.chars() {
        match (quoted, escaped, c) {
            (true, false, '\\') => escaped = true,
            (true, true, _) => escaped = false,
            (_, false, '"') => quoted = !quoted,
            (false, _, c) => out.push(c),
            (true, false, _) => {}
        }
    }
    out
}

#[test]
fn the_readme_commands_and_test_scripts_need_no_sudo() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut in_shell = false;
    let mut commands = 0;
    for (n, line) in readme.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with("```") {
            in_shell = line == "```sh";
            continue;
        }
        if in_shell {
            commands += 1;
            assert!(
                !line.starts_with("sudo "),
                "README.md:{}: a command a root shell cannot type as is: {line}",
                n + 1
            );
        }
    }
    assert!(
        commands > 10,
        "README.md has its sh blocks ({commands} lines)"
    );
    assert!(
        readme.contains("```sh\ntests/lab.sh\n```"),
        "the lab command"
    );
    assert!(
        readme.contains("```sh\ntests/run.sh\n```"),
        "the test command"
    );
    for script in [
        "tests/lab.sh",
        "tests/run.sh",
        "tests/package.sh",
        "benches/run.sh",
    ] {
        let text = std::fs::read_to_string(root.join(script)).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = unquoted(line.split(" #").next().unwrap_or(""));
            let code = code.trim_start();
            assert!(
                code.starts_with('#') || !code.split_whitespace().any(|w| w == "sudo"),
                "{script}:{}: calls sudo, which a root-only host lacks: {line}",
                n + 1
            );
        }
    }
}
