//! The configuration file: every validation rule reports the right `line:column`
//! and names the offending key and value; the example file loads; unknown keys are
//! rejected in every table of it.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vipd::config::{self, defaults, Config, ConfigError, Vip};
use vipd::wire::Auth;

const ORIGIN: &str = "/etc/vipd/vipd.toml";

/// A minimal valid file. Lines: 1 `[node]`, 2 name, 3 blank, 4 `[[instance]]`,
/// 5 name, 6 interface, 7 group, 8 priority, 9 vips, 10 auth.
const MINIMAL: &str = r#"[node]
name = "n1"

[[instance]]
name = "db"
interface = "eth0"
group = 51
priority = 150
vips = ["10.0.0.200/24"]
auth = "none"
"#;

/// A second instance to append to [`MINIMAL`]; starts at line 11.
const SECOND: &str = r#"[[instance]]
name = "web"
interface = "eth1"
group = 52
priority = 100
vips = ["10.0.1.200/24"]
auth = "none"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    config::from_toml(text, Path::new(ORIGIN))
}

/// The whole error message for `text`, which must be rejected.
fn error(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("accepted:\n{text}\n=> {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// `MINIMAL` with the line starting `key =` replaced by `line` (or `line` appended
/// when no such key is there).
fn with(key: &str, line: &str) -> String {
    with_in(MINIMAL, key, line)
}

fn with_in(text: &str, key: &str, line: &str) -> String {
    let prefix = format!("{key} =");
    let mut replaced = false;
    let mut out: Vec<String> = text
        .lines()
        .map(|l| {
            if !replaced && l.starts_with(&prefix) {
                replaced = true;
                line.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    if !replaced {
        out.push(line.to_owned());
    }
    out.join("\n") + "\n"
}

/// `text` with the line starting `key =` removed.
fn without(text: &str, key: &str) -> String {
    let prefix = format!("{key} =");
    text.lines()
        .filter(|l| !l.starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Asserts `message` has exactly one line, starting with `ORIGIN:line:col:`, and
/// containing every one of `parts`.
#[track_caller]
fn assert_one(message: &str, line: usize, col: usize, parts: &[&str]) {
    assert_eq!(
        message.lines().count(),
        1,
        "expected one problem:\n{message}"
    );
    assert_at(message, line, col, parts);
}

/// Asserts some line of `message` starts with `ORIGIN:line:col:` and contains
/// every one of `parts`.
#[track_caller]
fn assert_at(message: &str, line: usize, col: usize, parts: &[&str]) {
    let prefix = format!("{ORIGIN}:{line}:{col}: ");
    let found = message
        .lines()
        .any(|l| l.starts_with(&prefix) && parts.iter().all(|p| l.contains(p)));
    assert!(
        found,
        "no line `{prefix}...` containing {parts:?} in:\n{message}"
    );
}

/// A fresh directory for one test's files.
fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vipd-config-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn key_file(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

const KEY: &str = "0123456789abcdef0123456789abcdef";

/// `MINIMAL` using `auth_key_file = path` (on line 10, value at column 17).
fn with_key(path: &Path) -> String {
    with(
        "auth",
        &format!("auth_key_file = {:?}", path.display().to_string()),
    )
}

// --- the example file -------------------------------------------------------

const EXAMPLE: &str = include_str!("../config/vipd.toml");

/// The example with every `auth_key_file` pointed at a fresh 0600 key file.
fn example_with_keys() -> String {
    let dir = temp_dir();
    let mut out = String::new();
    for line in EXAMPLE.lines() {
        if let Some(rest) = line.strip_prefix("auth_key_file = ") {
            let name = Path::new(rest.trim_matches('"')).file_name().unwrap();
            let path = key_file(&dir, name.to_str().unwrap(), &format!("{KEY}\n"), 0o600);
            out.push_str(&format!(
                "auth_key_file = {:?}\n",
                path.display().to_string()
            ));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(out.matches("auth_key_file = ").count() >= 2);
    out
}

#[test]
fn example_loads() {
    let config = parse(&example_with_keys()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.node.name, "db1");
    assert_eq!(config.instances.len(), 2);

    let db = &config.instances[0];
    assert_eq!(db.name, "db");
    assert_eq!(db.interface, "eth0");
    assert_eq!((db.group, db.priority), (51, 150));
    assert_eq!(
        db.vips,
        vec![
            "10.0.0.200/24".parse::<Vip>().unwrap(),
            "2001:db8::200/64".parse::<Vip>().unwrap()
        ]
    );
    assert!(matches!(&db.auth, Auth::HmacSha256(k) if k.len() == KEY.len()));
    assert!(!db.is_unicast());

    let web = &config.instances[1];
    assert_eq!(web.name, "web");
    assert_eq!(web.advert_interval, Duration::from_millis(200));
    assert_eq!(
        web.peers,
        vec![
            "192.168.10.11".parse::<IpAddr>().unwrap(),
            "192.168.10.12".parse().unwrap()
        ]
    );
    assert_eq!(web.announce.refresh, Some(Duration::from_secs(300)));
    assert!(web.is_unicast());
}

/// The example's explicit values are the documented defaults: writing them out
/// changes nothing.
#[test]
fn example_db_instance_spells_out_the_defaults() {
    let example = parse(&example_with_keys()).unwrap();
    let mut stripped = String::new();
    let mut in_db = false;
    for line in example_with_keys().lines() {
        if line == "name = \"db\"" {
            in_db = true;
        } else if line == "name = \"web\"" {
            in_db = false;
        }
        let key = line.split(" =").next().unwrap_or("");
        let required = [
            "name",
            "interface",
            "group",
            "priority",
            "vips",
            "auth_key_file",
        ];
        if in_db && line.contains(" = ") && !required.contains(&key) {
            continue;
        }
        stripped.push_str(line);
        stripped.push('\n');
    }
    let minimal = parse(&stripped).unwrap_or_else(|e| panic!("{e}\n{stripped}"));
    assert_eq!(minimal.instances[0], example.instances[0]);
}

/// After hickory-dns: a bogus key in every table of the example is rejected, with
/// the position of the bogus key.
#[test]
fn example_rejects_unknown_key_in_every_table() {
    let text = example_with_keys();
    let lines: Vec<&str> = text.lines().collect();
    let headers: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with('['))
        .collect();
    assert_eq!(headers.len(), 3, "[node] and two [[instance]]");
    for &h in &headers {
        let mut injected: Vec<&str> = lines.clone();
        injected.insert(h + 1, "bogus_key = 1");
        let message = error(&(injected.join("\n") + "\n"));
        assert_one(
            &message,
            h + 2,
            1,
            &["unknown field `bogus_key`", "expected one of"],
        );
    }
    // And at the top level, before any table.
    let message = error(&format!("bogus_key = 1\n{text}"));
    assert_one(
        &message,
        1,
        1,
        &["unknown field `bogus_key`", "`node`", "`instance`"],
    );
}

// --- defaults -----------------------------------------------------------------

#[test]
fn minimal_config_gets_documented_defaults() {
    let config = parse(MINIMAL).unwrap();
    let node = &config.node;
    assert_eq!(node.name, "n1");
    assert_eq!(node.node_id, config::node_id("n1"));
    assert_eq!(node.control_socket, Path::new("/run/vipd/vipd.sock"));
    assert_eq!(node.control_group, None);
    assert_eq!(node.state_dir, Path::new("/var/lib/vipd"));
    assert_eq!(node.startup_delay, Duration::ZERO);
    assert_eq!(
        node.metrics_listen, None,
        "no metrics endpoint unless asked"
    );

    let i = &config.instances[0];
    assert_eq!(i.advert_interval, Duration::from_secs(1));
    assert_eq!(i.backup_advert_interval, Duration::from_secs(1));
    assert_eq!(i.takeover_margin, Duration::from_millis(2));
    assert_eq!(i.handover_timeout, Duration::from_secs(3));
    assert!(i.preempt);
    assert_eq!(i.preempt_delay, Duration::ZERO);
    assert_eq!(i.auth, Auth::None);
    assert!(i.peers.is_empty());
    assert_eq!(
        i.multicast_group,
        "239.255.80.51".parse::<IpAddr>().unwrap()
    );
    assert_eq!(i.port, 5880);
    assert_eq!(i.announce.count, 5);
    assert_eq!(i.announce.interval, Duration::from_millis(100));
    assert_eq!(i.announce.repeat_after, Some(Duration::from_secs(5)));
    assert_eq!(i.announce.refresh, None);

    assert_eq!(i.multicast_group, defaults::MULTICAST_GROUP);
    assert_eq!(i.port, defaults::PORT);
}

#[test]
fn node_name_defaults_to_hostname() {
    let config =
        parse(&without(MINIMAL, "name").replace("[[instance]]", "[[instance]]\nname = \"db\""))
            .unwrap();
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(config.node.name, host);
    assert_eq!(config.node.node_id, config::node_id(&host));
    // No [node] table at all is fine too.
    let config = parse(&MINIMAL.replace("[node]\nname = \"n1\"\n", "")).unwrap();
    assert_eq!(config.node.name, host);
}

#[test]
fn dependent_defaults_follow_advert_interval() {
    let i = parse(&with("advert_interval", "advert_interval = \"100ms\""))
        .unwrap()
        .instances[0]
        .clone();
    assert_eq!(i.backup_advert_interval, Duration::from_secs(1));
    assert_eq!(i.handover_timeout, Duration::from_millis(300));

    let i = parse(&with("advert_interval", "advert_interval = \"30s\""))
        .unwrap()
        .instances[0]
        .clone();
    assert_eq!(i.backup_advert_interval, Duration::from_secs(30));
    assert_eq!(
        i.handover_timeout,
        Duration::from_secs(60),
        "3 x 30s capped at 60s"
    );

    let i = parse(&with("advert_interval", "advert_interval = \"40.95s\""))
        .unwrap()
        .instances[0]
        .clone();
    assert_eq!(i.advert_interval, Duration::from_millis(40_950));
    assert_eq!(i.backup_advert_interval, Duration::from_millis(40_950));
}

#[test]
fn zero_disables_repeat_and_refresh() {
    let text = with_in(
        &with("announce_repeat_after", "announce_repeat_after = \"0s\""),
        "announce_refresh",
        "announce_refresh = \"0s\"",
    );
    let i = &parse(&text).unwrap().instances[0];
    assert_eq!(i.announce.repeat_after, None);
    assert_eq!(i.announce.refresh, None);
}

// --- syntax: unknown keys, wrong types ------------------------------------------

#[test]
fn unknown_key() {
    let message = error(&with("priorty", "priorty = 150"));
    assert_one(&message, 11, 1, &["unknown field `priorty`", "`priority`"]);
    let message = error(&MINIMAL.replace("name = \"n1\"", "hostname = \"n1\""));
    assert_one(&message, 2, 1, &["unknown field `hostname`", "`name`"]);
}

#[test]
fn wrong_type() {
    let message = error(&with("priority", "priority = \"high\""));
    assert_one(
        &message,
        8,
        12,
        &["invalid type", "\"high\"", "expected an integer"],
    );
    let message = error(&with("preempt", "preempt = \"yes\""));
    assert_one(
        &message,
        11,
        11,
        &["invalid type", "\"yes\"", "true or false"],
    );
    let message = error(&with("vips", "vips = \"10.0.0.200/24\""));
    assert_one(&message, 9, 8, &["invalid type", "sequence"]);
}

#[test]
fn duration_must_be_a_string() {
    let message = error(&with("advert_interval", "advert_interval = 1"));
    assert_one(
        &message,
        11,
        19,
        &["invalid type", "integer `1`", "\"100ms\""],
    );
}

#[test]
fn toml_syntax_error_has_position() {
    let message = error(&with("priority", "priority = = 3"));
    assert_one(&message, 8, 12, &[]);
}

// --- ranges -----------------------------------------------------------------------

#[test]
fn priority_out_of_range() {
    for bad in ["0", "255", "300", "-1"] {
        let message = error(&with("priority", &format!("priority = {bad}")));
        assert_one(
            &message,
            8,
            12,
            &[
                "instance \"db\"",
                &format!("priority {bad} is out of range; valid: 1..=254"),
            ],
        );
    }
}

#[test]
fn group_out_of_range() {
    for bad in ["0", "256"] {
        let message = error(&with("group", &format!("group = {bad}")));
        assert_one(
            &message,
            7,
            9,
            &[&format!("group {bad} is out of range; valid: 1..=255")],
        );
    }
    assert_eq!(
        parse(&with("group", "group = 255")).unwrap().instances[0].group,
        255
    );
}

#[test]
fn port_and_announce_count_out_of_range() {
    let message = error(&with("port", "port = 70000"));
    assert_one(
        &message,
        11,
        8,
        &["port 70000 is out of range; valid: 1..=65535"],
    );
    let message = error(&with("announce_count", "announce_count = 0"));
    assert_one(
        &message,
        11,
        18,
        &["announce_count 0 is out of range; valid: 1..=100"],
    );
}

#[test]
fn advert_interval_out_of_range() {
    let message = error(&with("advert_interval", "advert_interval = \"5ms\""));
    assert_one(
        &message,
        11,
        19,
        &["advert_interval 5ms is out of range; valid: 10ms..=40.95s"],
    );
    let message = error(&with("advert_interval", "advert_interval = \"41s\""));
    assert_one(&message, 11, 19, &["advert_interval 41s is out of range"]);
}

#[test]
fn interval_must_be_whole_centiseconds() {
    let message = error(&with("advert_interval", "advert_interval = \"15ms\""));
    assert_one(
        &message,
        11,
        19,
        &[
            "advert_interval 15ms is not a whole number of centiseconds",
            "10ms or 20ms",
        ],
    );
    let message = error(&with(
        "backup_advert_interval",
        "backup_advert_interval = \"1005ms\"",
    ));
    assert_one(
        &message,
        11,
        26,
        &["backup_advert_interval 1.005s is not a whole number of centiseconds"],
    );
}

#[test]
fn timing_relations() {
    let text = with("advert_interval", "advert_interval = \"100ms\"");
    let message = error(&with_in(
        &text,
        "takeover_margin",
        "takeover_margin = \"60ms\"",
    ));
    assert_one(
        &message,
        12,
        19,
        &["takeover_margin 60ms is out of range; valid: 100us..=50ms"],
    );
    let message = error(&with_in(
        &text,
        "takeover_margin",
        "takeover_margin = \"50us\"",
    ));
    assert_one(&message, 12, 19, &["takeover_margin 50us is out of range"]);
    let message = error(&with_in(
        &text,
        "backup_advert_interval",
        "backup_advert_interval = \"50ms\"",
    ));
    assert_one(
        &message,
        12,
        26,
        &["backup_advert_interval 50ms is out of range; valid: 100ms..=40.95s"],
    );
    let message = error(&with_in(
        &text,
        "handover_timeout",
        "handover_timeout = \"61s\"",
    ));
    assert_one(
        &message,
        12,
        20,
        &["handover_timeout 61s is out of range; valid: 100ms..=1m"],
    );
    let message = error(&with("preempt_delay", "preempt_delay = \"2h\""));
    assert_one(
        &message,
        11,
        17,
        &["preempt_delay 2h is out of range; valid: 0s..=1h"],
    );
    let message =
        error(&MINIMAL.replace("name = \"n1\"", "name = \"n1\"\nstartup_delay = \"11m\""));
    assert_one(
        &message,
        3,
        17,
        &[
            "[node]",
            "startup_delay 11m is out of range; valid: 0s..=10m",
        ],
    );
    let message = error(&with("announce_interval", "announce_interval = \"11s\""));
    assert_one(
        &message,
        11,
        21,
        &["announce_interval 11s is out of range; valid: 1ms..=10s"],
    );
    let message = error(&with("announce_refresh", "announce_refresh = \"500ms\""));
    assert_one(
        &message,
        11,
        20,
        &[
            "announce_refresh 500ms is out of range",
            "\"0s\" (off) or 1s..=24h",
        ],
    );
}

#[test]
fn bad_duration_text() {
    let message = error(&with("preempt_delay", "preempt_delay = \"soon\""));
    assert_one(
        &message,
        11,
        17,
        &["preempt_delay \"soon\" is not a duration", "e.g. \"100ms\""],
    );
    let message = error(&with(
        "advert_interval",
        "advert_interval = \"1 fortnight\"",
    ));
    assert_one(
        &message,
        11,
        19,
        &["advert_interval \"1 fortnight\" is not a duration"],
    );
}

// --- names, interfaces, uniqueness -------------------------------------------------

#[test]
fn bad_instance_name_and_interface() {
    let text = MINIMAL.replace("name = \"db\"", "name = \"db one\"");
    assert_one(
        &error(&text),
        5,
        8,
        &["name \"db one\" is not valid", "[A-Za-z0-9_.-]"],
    );
    let text = MINIMAL.replace("name = \"db\"", &format!("name = \"{}\"", "x".repeat(33)));
    assert_one(&error(&text), 5, 8, &["is not valid"]);

    let message = error(&with("interface", "interface = \"eth0:1\""));
    assert_one(
        &message,
        6,
        13,
        &["instance \"db\"", "interface \"eth0:1\"", "1..=15 bytes"],
    );
    let message = error(&with("interface", "interface = \"averyverylongname\""));
    assert_one(&message, 6, 13, &["longer than 15 bytes"]);
}

#[test]
fn duplicate_instance_name() {
    let text = format!(
        "{MINIMAL}{}",
        SECOND.replace("name = \"web\"", "name = \"db\"")
    );
    let message = error(&text);
    assert_one(
        &message,
        12,
        8,
        &["instance name \"db\" is already used at /etc/vipd/vipd.toml:5:8"],
    );
}

#[test]
fn duplicate_interface_and_group() {
    let text = format!(
        "{MINIMAL}{}",
        SECOND
            .replace("eth1", "eth0")
            .replace("group = 52", "group = 51")
    );
    let message = error(&text);
    assert_one(
        &message,
        14,
        9,
        &[
            "instance \"web\"",
            "interface \"eth0\" with group 51 is already used by instance \"db\"",
        ],
    );
    // Same group on another interface is fine.
    parse(&format!(
        "{MINIMAL}{}",
        SECOND.replace("group = 52", "group = 51")
    ))
    .unwrap();
}

#[test]
fn no_instances() {
    let message = error("[node]\nname = \"n1\"\n");
    assert_one(&message, 1, 1, &["no [[instance]] is configured"]);
}

#[test]
fn missing_required_keys() {
    let message = error(&without(&without(MINIMAL, "priority"), "vips"));
    assert_at(
        &message,
        4,
        1,
        &["instance \"db\": priority is required; valid: 1..=254"],
    );
    assert_at(&message, 4, 1, &["instance \"db\": vips is required"]);
    assert_eq!(message.lines().count(), 2);
}

// --- VIPs --------------------------------------------------------------------------

#[test]
fn empty_vips() {
    let message = error(&with("vips", "vips = []"));
    assert_one(&message, 9, 8, &["vips is empty; valid: 1..=1024"]);
}

#[test]
fn bad_vip_text() {
    let message = error(&with(
        "vips",
        "vips = [\"10.0.0.200/24\", \"10.0.0.300/24\"]",
    ));
    assert_one(
        &message,
        9,
        26,
        &["VIP \"10.0.0.300\" is not an IP address", "ADDRESS/PREFIX"],
    );
    let message = error(&with("vips", "vips = [\"10.0.0.201\"]"));
    assert_one(&message, 9, 9, &["\"10.0.0.201\" has no prefix length"]);
    let message = error(&with("vips", "vips = [\"10.0.0.201/33\"]"));
    assert_one(&message, 9, 9, &["prefix length \"33\"", "valid: 1..=32"]);
    let message = error(&with("vips", "vips = [\"fe80::1/64\"]"));
    assert_one(&message, 9, 9, &["fe80::1 is an IPv6 link-local address"]);
    let message = error(&with(
        "vips",
        "vips = [\"127.0.0.5/8\", \"255.255.255.255/32\"]",
    ));
    assert_at(&message, 9, 9, &["127.0.0.5 is a loopback address"]);
    assert_at(
        &message,
        9,
        24,
        &["255.255.255.255 is the broadcast address"],
    );
}

#[test]
fn duplicate_vip() {
    let message = error(&with(
        "vips",
        "vips = [\"10.0.0.200/24\", \"10.0.0.200/32\"]",
    ));
    assert_one(
        &message,
        9,
        26,
        &["VIP \"10.0.0.200/32\" duplicates \"10.0.0.200/24\""],
    );
    // In two instances.
    let text = format!(
        "{MINIMAL}{}",
        SECOND.replace("10.0.1.200/24", "10.0.0.200/24")
    );
    assert_one(
        &error(&text),
        16,
        9,
        &["instance \"web\": VIP 10.0.0.200 is already in instance \"db\""],
    );
}

#[test]
fn too_many_vips() {
    let list: Vec<String> = (0..1025)
        .map(|i| format!("\"10.1.{}.{}/16\"", i / 250, i % 250 + 1))
        .collect();
    let message = error(&with("vips", &format!("vips = [{}]", list.join(", "))));
    assert_one(&message, 9, 8, &["vips has 1025 entries; valid: 1..=1024"]);
}

// --- auth --------------------------------------------------------------------------

#[test]
fn missing_auth_choice() {
    let message = error(&without(MINIMAL, "auth"));
    assert_one(
        &message,
        4,
        1,
        &[
            "authentication must be an explicit choice",
            "auth_key_file",
            "auth = \"none\"",
        ],
    );
}

#[test]
fn both_auth_choices() {
    let dir = temp_dir();
    let key = key_file(&dir, "k", KEY, 0o600);
    let text = with(
        "auth_key_file",
        &format!("auth_key_file = {:?}", key.display().to_string()),
    );
    let message = error(&text);
    assert_one(
        &message,
        10,
        8,
        &["both auth = \"none\" and auth_key_file are set"],
    );
}

#[test]
fn bad_auth_value() {
    let message = error(&with("auth", "auth = \"hmac\""));
    assert_one(
        &message,
        10,
        8,
        &["auth \"hmac\" is not valid; valid: \"none\""],
    );
}

#[test]
fn key_file_loads_trimmed() {
    let dir = temp_dir();
    let key = key_file(&dir, "k", &format!("  {KEY}\n\n"), 0o400);
    let config = parse(&with_key(&key)).unwrap();
    assert!(matches!(&config.instances[0].auth, Auth::HmacSha256(k) if k.len() == 32));
    // Same key, same config: reload sees no change.
    assert_eq!(config, parse(&with_key(&key)).unwrap());
}

#[test]
fn key_file_readable_by_others() {
    let dir = temp_dir();
    for mode in [0o644, 0o640, 0o604, 0o601] {
        let key = key_file(&dir, "k", KEY, mode);
        let message = error(&with_key(&key));
        let path = key.display().to_string();
        assert_one(
            &message,
            10,
            17,
            &[
                &path,
                &format!("mode {mode:04o}"),
                &format!("chmod 600 {path}"),
            ],
        );
    }
}

#[test]
fn key_file_missing() {
    let dir = temp_dir();
    let key = dir.join("absent.key");
    let message = error(&with_key(&key));
    assert_one(
        &message,
        10,
        17,
        &[&key.display().to_string(), "cannot read", "No such file"],
    );
}

#[test]
fn key_file_too_short() {
    let dir = temp_dir();
    let key = key_file(&dir, "k", "  short-key  \n", 0o600);
    let message = error(&with_key(&key));
    assert_one(
        &message,
        10,
        17,
        &[&key.display().to_string(), "9 bytes", "at least 16 bytes"],
    );
}

#[test]
fn key_file_relative_to_config_dir() {
    let dir = temp_dir();
    key_file(&dir, "db.key", KEY, 0o600);
    let text = with("auth", "auth_key_file = \"db.key\"");
    let origin = dir.join("vipd.toml");
    let config = config::from_toml(&text, &origin).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(config.instances[0].auth, Auth::HmacSha256(_)));
    // And load() reads the file itself.
    fs::write(&origin, &text).unwrap();
    assert_eq!(config::load(&origin).unwrap(), config);
}

#[test]
fn load_missing_file() {
    let path = temp_dir().join("nope.toml");
    let e = config::load(&path).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    let message = e.to_string();
    assert!(
        message.contains(&path.display().to_string()) && message.contains("No such file"),
        "{message}"
    );
}

// --- peers, multicast --------------------------------------------------------------

#[test]
fn empty_peers() {
    let message = error(&with("peers", "peers = []"));
    assert_one(
        &message,
        11,
        9,
        &["peers is empty", "never falls back to multicast"],
    );
}

#[test]
fn mixed_family_peers() {
    let message = error(&with("peers", "peers = [\"10.0.0.12\", \"2001:db8::12\"]"));
    assert_one(
        &message,
        11,
        23,
        &["peer 2001:db8::12 is not the same address family as peer 10.0.0.12"],
    );
}

#[test]
fn bad_peers() {
    let message = error(&with("peers", "peers = [\"10.0.0.12\", \"10.0.0.12\"]"));
    assert_one(&message, 11, 23, &["peer 10.0.0.12 is listed twice"]);
    let message = error(&with("peers", "peers = [\"239.1.1.1\"]"));
    assert_one(&message, 11, 10, &["peer 239.1.1.1 is a multicast address"]);
    let message = error(&with("peers", "peers = [\"0.0.0.0\"]"));
    assert_one(
        &message,
        11,
        10,
        &["peer 0.0.0.0 is the unspecified address"],
    );
    let message = error(&with("peers", "peers = [\"peer-two\"]"));
    assert_one(
        &message,
        11,
        10,
        &["peer \"peer-two\" is not an IP address"],
    );
    let i = &parse(&with(
        "peers",
        "peers = [\"2001:db8::12\", \"2001:db8::13\"]",
    ))
    .unwrap()
    .instances[0];
    assert_eq!(i.peers.len(), 2);
}

#[test]
fn multicast_group_rules() {
    let message = error(&with("multicast_group", "multicast_group = \"10.0.0.1\""));
    assert_one(
        &message,
        11,
        19,
        &["multicast_group 10.0.0.1 is not a multicast address"],
    );
    let text = with_in(
        &with("peers", "peers = [\"10.0.0.12\"]"),
        "multicast_group",
        "multicast_group = \"239.1.1.1\"",
    );
    assert_one(
        &error(&text),
        12,
        19,
        &["multicast_group and peers are both set"],
    );
    let i = &parse(&with("multicast_group", "multicast_group = \"ff02::5880\""))
        .unwrap()
        .instances[0];
    assert_eq!(i.multicast_group, "ff02::5880".parse::<IpAddr>().unwrap());
}

// --- node --------------------------------------------------------------------------

#[test]
fn node_rules() {
    let message = error(&MINIMAL.replace(
        "name = \"n1\"",
        "name = \"n1\"\ncontrol_socket = \"vipd.sock\"",
    ));
    assert_one(
        &message,
        3,
        18,
        &["control_socket \"vipd.sock\" is not an absolute path"],
    );
    let message = error(&MINIMAL.replace(
        "name = \"n1\"",
        "name = \"n1\"\ncontrol_group = \"bad group\"",
    ));
    assert_one(
        &message,
        3,
        17,
        &["control_group \"bad group\" is not a valid group name"],
    );
    let message = error(&MINIMAL.replace("name = \"n1\"", "name = \"two words\""));
    assert_one(
        &message,
        2,
        8,
        &["[node]: name \"two words\" contains whitespace"],
    );
    let config =
        parse(&MINIMAL.replace("name = \"n1\"", "name = \"n1\"\ncontrol_group = \"vipd\""))
            .unwrap();
    assert_eq!(config.node.control_group.as_deref(), Some("vipd"));
}

// --- all problems at once -----------------------------------------------------------

#[test]
fn reports_every_problem_in_file_order() {
    let text = format!("{MINIMAL}{}", SECOND)
        .replace("priority = 150", "priority = 300")
        .replace("vips = [\"10.0.1.200/24\"]", "vips = []")
        .replace("group = 52", "group = 0");
    let e = parse(&text).unwrap_err();
    let ConfigError::Invalid(errors) = &e else {
        panic!("{e:?}")
    };
    let lines: Vec<usize> = errors.iter().map(|d| d.location.line).collect();
    assert_eq!(lines, vec![8, 14, 16], "{e}");
    assert_eq!(e.diagnostics().len(), 3);
    assert_at(
        &e.to_string(),
        8,
        12,
        &["instance \"db\": priority 300 is out of range; valid: 1..=254"],
    );
    assert_at(
        &e.to_string(),
        14,
        9,
        &["instance \"web\": group 0 is out of range"],
    );
    assert_at(&e.to_string(), 16, 8, &["instance \"web\": vips is empty"]);
}

// --- the system ---------------------------------------------------------------------

#[test]
fn system_check_finds_missing_interface() {
    let text = format!("{MINIMAL}{}", SECOND.replace("eth1", "lo"))
        .replace("interface = \"eth0\"", "interface = \"vipd-no-such0\"");
    let config = parse(&text).unwrap();
    let problems = config::check_against_system(&config, false);
    // `lo` always exists and 10.0.1.200 is not on it.
    assert_eq!(problems.len(), 1, "{problems:?}");
    let message = problems[0].to_string();
    assert!(
        message.starts_with(&format!(
            "{ORIGIN}:6:13: instance \"db\": interface \"vipd-no-such0\" does not exist"
        )),
        "{message}"
    );
    assert!(message.contains("lo"), "{message}");
}

/// Every key the schema knows (as listed by the unknown-key error) is documented
/// in the example, set or commented out.
#[test]
fn example_documents_every_key() {
    let text = example_with_keys();
    for table in ["[node]", "[[instance]]"] {
        let message = error(&text.replacen(table, &format!("{table}\nbogus_key = 1"), 1));
        let (_, list) = message.split_once("expected one of").unwrap();
        let keys: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
        assert!(keys.len() >= 5, "{message}");
        for key in keys {
            let documented = EXAMPLE.lines().any(|l| {
                l.trim_start_matches(['#', ' '])
                    .starts_with(&format!("{key} = "))
            });
            assert!(documented, "{table} key `{key}` is not in config/vipd.toml");
        }
    }
}

#[test]
fn metrics_listen_takes_an_address_and_port() {
    let with_metrics = |value: &str| {
        MINIMAL.replace(
            "name = \"n1\"",
            &format!("name = \"n1\"\nmetrics_listen = {value:?}"),
        )
    };
    for (text, addr) in [
        ("127.0.0.1:9650", "127.0.0.1:9650"),
        ("[::1]:9650", "[::1]:9650"),
    ] {
        let config = parse(&with_metrics(text)).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(config.node.metrics_listen, Some(addr.parse().unwrap()));
    }
    for bad in [
        "127.0.0.1",
        "localhost:9650",
        "127.0.0.1:0",
        "127.0.0.1:70000",
    ] {
        let message = error(&with_metrics(bad));
        assert_one(
            &message,
            3,
            18,
            &[
                "[node]",
                &format!("metrics_listen {bad:?} is not an address and port"),
            ],
        );
    }
}

// --- routed mode (announce = "route", [instance.route], max_hops) -------------

/// `MINIMAL` with a key file, a host-route VIP and `extra` appended (from line 11).
fn routed(extra: &str) -> String {
    let dir = temp_dir();
    let path = key_file(&dir, "db.key", KEY, 0o600);
    let text = with_in(&with_key(&path), "vips", r#"vips = ["10.0.0.200/32"]"#);
    format!("{text}{extra}")
}

#[test]
fn route_mode_defaults_and_settings() {
    let c = parse(&routed("announce = \"route\"\n")).unwrap();
    let route = c.instances[0].route.clone().unwrap();
    assert_eq!(route.table, defaults::ROUTE_TABLE);
    assert_eq!(route.metric, defaults::ROUTE_METRIC);
    assert_eq!(route.withdraw_delay, defaults::ROUTE_WITHDRAW_DELAY);
    assert_eq!(route.ready_after, defaults::ROUTE_READY_AFTER);
    assert_eq!(c.instances[0].max_hops, 1);
    assert_eq!(c.instances[0].min_ttl(), 255);

    let c = parse(&routed(
        "announce = \"route\"\npeers = [\"10.9.2.2\"]\nmax_hops = 2\n[instance.route]\ntable = 7\nmetric = 50\nwithdraw_delay = \"300ms\"\nready_after = \"0s\"\n",
    ))
    .unwrap();
    let i = &c.instances[0];
    let route = i.route.clone().unwrap();
    assert_eq!((route.table, route.metric), (7, 50));
    assert_eq!(route.withdraw_delay, Duration::from_millis(300));
    assert_eq!(route.ready_after, Duration::ZERO);
    assert_eq!((i.max_hops, i.min_ttl()), (2, 254));

    // ARP mode is the default, and "arp" says so explicitly.
    assert_eq!(parse(MINIMAL).unwrap().instances[0].route, None);
    assert_eq!(
        parse(&with("announce", "announce = \"arp\""))
            .unwrap()
            .instances[0]
            .route,
        None
    );
}

#[test]
fn route_mode_needs_authentication_and_host_routes() {
    let message = error(&with("announce", "announce = \"route\""));
    assert_at(
        &message,
        9,
        9,
        &[
            "instance \"db\"",
            "VIP 10.0.0.200/24",
            "valid: 10.0.0.200/32",
        ],
    );
    assert_at(
        &message,
        11,
        12,
        &["announce = \"route\" needs authentication", "auth_key_file"],
    );

    let message = error(&routed("announce = \"bgp\"\n"));
    assert_one(
        &message,
        11,
        12,
        &["announce \"bgp\" is not valid", "\"arp\"", "\"route\""],
    );

    let message = error(&routed("[instance.route]\ntable = 7\n"));
    assert_one(
        &message,
        11,
        1,
        &["[instance.route] is set but announce is not \"route\""],
    );
}

#[test]
fn route_table_metric_and_delay_are_bounded() {
    let message = error(&routed(
        "announce = \"route\"\n[instance.route]\ntable = 253\nmetric = -1\nwithdraw_delay = \"11s\"\nready_after = \"601s\"\n",
    ));
    assert_at(
        &message,
        13,
        9,
        &["route.table 253 is out of range", "1..=252"],
    );
    assert_at(&message, 14, 10, &["route.metric -1 is out of range"]);
    assert_at(
        &message,
        15,
        18,
        &["route.withdraw_delay 11s is out of range", "0s..=10s"],
    );
    assert_at(
        &message,
        16,
        15,
        &["route.ready_after 601s is out of range", "0s..=10m"],
    );
}

#[test]
fn max_hops_above_one_needs_unicast_peers_and_authentication() {
    let message = error(&routed("max_hops = 2\n"));
    assert_one(&message, 11, 12, &["max_hops 2", "multicast", "peers"]);

    let text = with("peers", "peers = [\"10.9.2.2\"]") + "max_hops = 3\n";
    let message = error(&text);
    assert_one(
        &message,
        12,
        12,
        &["max_hops 3", "authentication", "auth_key_file"],
    );

    let message = error(&routed("max_hops = 0\n"));
    assert_one(&message, 11, 12, &["max_hops 0 is out of range", "1..=255"]);
    // 1 is today's rule and needs nothing.
    assert_eq!(
        parse(&with("max_hops", "max_hops = 1")).unwrap().instances[0].max_hops,
        1
    );
}

// ------------------------------------------------------------- VRRP mode

/// `MINIMAL` speaking VRRP `version` (the `protocol` line is line 11).
fn vrrp(version: u8) -> String {
    with("protocol", &format!("protocol = \"vrrp{version}\""))
}

#[test]
fn vrrp_instances_load_with_their_settings() {
    use vipd::config::{Protocol, VrrpChecksum, VrrpVersion};
    let text = with_in(&vrrp(2), "vrrp_auth_pass", "vrrp_auth_pass = \"s3cret\"");
    let text = with_in(&text, "priority", "priority = 255");
    let c = parse(&text).unwrap();
    let i = &c.instances[0];
    let Protocol::Vrrp(v) = &i.protocol else {
        panic!("not VRRP: {:?}", i.protocol)
    };
    assert_eq!(v.version, VrrpVersion::V2);
    assert_eq!(v.auth_pass, Some(*b"s3cret\0\0"));
    assert_eq!(v.source, None);
    assert_eq!(i.priority, 255, "VRRP's address owner");
    assert_eq!(i.auth, Auth::None);

    let text = with_in(&vrrp(3), "vips", "vips = [\"2001:db8::200/64\"]");
    let text = with_in(&text, "vrrp_checksum", "vrrp_checksum = \"message-only\"");
    let text = with_in(&text, "vrrp_source", "vrrp_source = \"fe80::1\"");
    let text = with_in(&text, "advert_interval", "advert_interval = \"50ms\"");
    let c = parse(&text).unwrap();
    let Protocol::Vrrp(v) = &c.instances[0].protocol else {
        panic!("not VRRP")
    };
    assert_eq!(v.version, VrrpVersion::V3);
    assert_eq!(v.checksum, VrrpChecksum::MessageOnly);
    assert_eq!(v.source, Some("fe80::1".parse().unwrap()));
    assert_eq!(
        parse(MINIMAL).unwrap().instances[0].protocol,
        Protocol::Vipd
    );
}

#[test]
fn vrrp_keys_are_checked_where_they_are() {
    assert_one(
        &error(&with("protocol", "protocol = \"vrrp4\"")),
        11,
        12,
        &["protocol \"vrrp4\" is not valid", "\"vrrp2\" or \"vrrp3\""],
    );
    assert_one(
        &error(&with("vrrp_auth_pass", "vrrp_auth_pass = \"x\"")),
        11,
        18,
        &["vrrp_auth_pass is a VRRP setting", "protocol = \"vrrp2\""],
    );
    assert_one(
        &error(&with_in(
            &vrrp(2),
            "vrrp_auth_pass",
            "vrrp_auth_pass = \"123456789\"",
        )),
        12,
        18,
        &["vrrp_auth_pass is 9 bytes", "1..=8"],
    );
    assert_one(
        &error(&with_in(
            &vrrp(3),
            "vrrp_auth_pass",
            "vrrp_auth_pass = \"x\"",
        )),
        12,
        18,
        &["VRRPv3 (RFC 9568) has no authentication"],
    );
    assert_one(
        &error(&with_in(
            &vrrp(2),
            "vrrp_checksum",
            "vrrp_checksum = \"message-only\"",
        )),
        12,
        17,
        &["VRRPv2 has one form"],
    );
    assert_one(
        &error(&with_in(
            &vrrp(2),
            "advert_interval",
            "advert_interval = \"1500ms\"",
        )),
        12,
        19,
        &[
            "advert_interval \"1500ms\" cannot be said in vrrp2",
            "whole seconds",
        ],
    );
    assert_one(
        &error(&with_in(&vrrp(2), "vips", "vips = [\"2001:db8::200/64\"]")),
        9,
        9,
        &["IPv6, which VRRPv2 cannot carry", "vrrp3"],
    );
    assert_one(
        &error(&with_in(
            &vrrp(3),
            "vips",
            "vips = [\"10.0.0.200/24\", \"2001:db8::200/64\"]",
        )),
        9,
        26,
        &["another address family", "one instance for the IPv4 VIPs"],
    );
    for (key, line, why) in [
        ("port", "port = 5881", "IP protocol 112"),
        (
            "multicast_group",
            "multicast_group = \"239.1.1.1\"",
            "fixed",
        ),
        (
            "backup_advert_interval",
            "backup_advert_interval = \"2s\"",
            "backups do not advertise",
        ),
        ("takeover_margin", "takeover_margin = \"5ms\"", "skew time"),
    ] {
        let message = error(&with_in(&vrrp(3), key, line));
        assert_at(&message, 12, key.len() + 4, &[key, why, "remove it"]);
    }
    assert_at(
        &error(&with_in(&vrrp(3), "priority", "priority = 256")),
        8,
        12,
        &["priority 256 is out of range", "1..=255"],
    );
    assert_one(
        &error(&with("priority", "priority = 255")),
        8,
        12,
        &["priority 255 is out of range", "1..=254"],
    );
}

#[test]
fn vrrp_refuses_hmac_keys_and_routed_mode() {
    let dir = temp_dir();
    let key = key_file(&dir, "db.key", &"k".repeat(40), 0o600);
    let text = with_in(&vrrp(2), "auth", &format!("auth_key_file = {key:?}"));
    let message = error(&text);
    assert_at(
        &message,
        10,
        17,
        &["auth_key_file signs vipd's adverts with HMAC, which VRRP cannot carry"],
    );
    let message = error(&with_in(&vrrp(3), "announce", "announce = \"route\""));
    assert_at(
        &message,
        12,
        12,
        &["announce = \"route\" needs vipd's authenticated adverts"],
    );
}

#[test]
fn vrrp_instances_get_check_warnings_about_what_vrrp_gives_up() {
    let c = parse(&vrrp(3)).unwrap();
    let warnings: Vec<String> = config::check_warnings(&c)
        .into_iter()
        .map(|w| w.message)
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(warnings[0].contains("nothing authenticates its adverts"));
    assert!(warnings[1].contains("no replay guard"));
    assert!(warnings[2].contains("`vipd drain` hands over to whichever node answers"));
    assert!(config::check_warnings(&parse(MINIMAL).unwrap()).is_empty());
}

/// An instance etcd decides for, after a `[node.etcd]` table.
const STORE: &str = r#"[node]
name = "n1"

[node.etcd]
endpoints = ["http://10.0.0.21:2379", "http://10.0.0.22:2379"]

[[instance]]
name = "db"
interface = "eth0"
group = 51
priority = 150
vips = ["10.0.0.200/24"]
election = "etcd"
lease_ttl = "2s"
"#;

#[test]
fn an_etcd_election_needs_no_auth_and_reads_its_settings() {
    let config = parse(STORE).unwrap();
    let etcd = config.node.etcd.as_ref().expect("[node.etcd]");
    assert_eq!(etcd.prefix, "/vipd");
    assert_eq!(etcd.request_timeout, Duration::from_secs(1));
    let store = config.instances[0].store.as_ref().expect("election = etcd");
    assert_eq!(store.lease_ttl, Duration::from_secs(2));
    assert_eq!(store.on_unreachable, config::OnUnreachable::FailClosed);
    assert!(store.follow.is_none());
    let open = parse(&format!("{STORE}store_unreachable = \"fail-open\"\n")).unwrap();
    assert_eq!(
        open.instances[0].store.as_ref().map(|s| s.on_unreachable),
        Some(config::OnUnreachable::FailOpen)
    );
}

#[test]
fn an_etcd_election_without_node_etcd_is_refused_where_it_is_asked_for() {
    let text = STORE.replace(
        "[node.etcd]\nendpoints = [\"http://10.0.0.21:2379\", \"http://10.0.0.22:2379\"]\n",
        "",
    );
    let message = error(&text);
    assert!(
        message.contains("election names etcd, but [node] has no [node.etcd]"),
        "{message}"
    );
    assert!(message.contains(":11:"), "{message}");
}

#[test]
fn etcd_settings_name_what_is_wrong() {
    for (from, to, expect) in [
        ("lease_ttl = \"2s\"", "lease_ttl = \"1500ms\"", "lease_ttl"),
        (
            "lease_ttl = \"2s\"",
            "lease_ttl = \"2500ms\"",
            "not whole seconds",
        ),
        (
            "election = \"etcd\"",
            "election = \"raft\"",
            "election \"raft\" is not valid",
        ),
        (
            "\"http://10.0.0.22:2379\"",
            "\"10.0.0.22:2379\"",
            "endpoint \"10.0.0.22:2379\" is not valid",
        ),
        (
            "\"http://10.0.0.22:2379\"",
            "\"https://10.0.0.22:2379\"",
            "mix http and https",
        ),
        (
            "lease_ttl = \"2s\"",
            "lease_ttl = \"2s\"\nprotocol = \"vrrp3\"",
            "protocol \"vrrp3\" joins a VRRP election",
        ),
        (
            "lease_ttl = \"2s\"",
            "lease_ttl = \"2s\"\npeers = [\"10.0.0.12\"]",
            "no adverts decide",
        ),
        (
            "lease_ttl = \"2s\"",
            "lease_ttl = \"2s\"\nafter_crash = \"resume\"",
            "after_crash \"resume\"",
        ),
        (
            "lease_ttl = \"2s\"",
            "lease_ttl = \"2s\"\nstore_unreachable = \"maybe\"",
            "store_unreachable \"maybe\" is not valid",
        ),
        (
            "election = \"etcd\"",
            "election = \"patroni\"",
            "needs an [instance.patroni] table",
        ),
        (
            "endpoints = [",
            "cert_file = \"c.pem\"\nendpoints = [",
            "cert_file and key_file go together",
        ),
    ] {
        let text = STORE.replace(from, to);
        let message = error(&text);
        assert!(message.contains(expect), "{to}: {message}");
    }
    // Store keys without a store election.
    let message = error(&format!("{MINIMAL}lease_ttl = \"2s\"\n"));
    assert!(message.contains("lease_ttl needs election"), "{message}");
}

#[test]
fn following_patroni_reads_scope_member_and_api() {
    let text = STORE.replace("election = \"etcd\"", "election = \"patroni\"")
        + "[instance.patroni]\nscope = \"batman\"\ndcs = \"etcd\"\n";
    let config = parse(&text).unwrap();
    let follow = config.instances[0]
        .store
        .as_ref()
        .and_then(|s| s.follow.as_ref())
        .expect("patroni");
    assert_eq!(
        follow.member, "n1",
        "the member name defaults to the node's"
    );
    assert_eq!(follow.leader_key(), "/service/batman/leader");
    assert_eq!(follow.dcs, config::PatroniDcs::Etcd2);
    let message = error(&text.replace("scope = \"batman\"", "scope = \"a/b\""));
    assert!(message.contains("scope \"a/b\" is not valid"), "{message}");
}

/// `vipd check` reads `[node.etcd]`'s PEM files as the daemon would at start
/// and names the one that is wrong.
#[test]
fn check_names_an_unreadable_etcd_certificate_file() {
    let text = STORE
        .replace("http://", "https://")
        .replace(
            "endpoints = [",
            "ca_file = \"/nonexistent/vipd-test-ca.pem\"\nendpoints = [",
        )
        .replace("interface = \"eth0\"", "interface = \"lo\"");
    let config = parse(&text).unwrap();
    let problems = config::check_against_system(&config, false);
    let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        all.iter()
            .any(|p| p.starts_with("[node.etcd]: ") && p.contains("/nonexistent/vipd-test-ca.pem")),
        "{all:?}"
    );
}

/// `vipd check` warns of a lease too short for an etcd election, of
/// fail-open's price, and of plain http to etcd.
#[test]
fn check_warns_of_short_leases_fail_open_and_plain_http() {
    let text = format!("{STORE}store_unreachable = \"fail-open\"\n");
    let config = parse(&text).unwrap();
    let warnings: Vec<String> = config::check_warnings(&config)
        .iter()
        .map(ToString::to_string)
        .collect();
    for expect in [
        "lease_ttl 2 s is under twice etcd's default election timeout",
        "store_unreachable = \"fail-open\"",
        "endpoints are plain http",
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(expect)),
            "no {expect:?} in {warnings:?}"
        );
    }
    let quiet = parse(
        &STORE
            .replace("lease_ttl = \"2s\"", "lease_ttl = \"5s\"")
            .replace("http://", "https://")
            .replace("endpoints = [", "ca_file = \"ca.pem\"\nendpoints = ["),
    )
    .unwrap();
    assert!(
        config::check_warnings(&quiet).is_empty(),
        "{:?}",
        config::check_warnings(&quiet)
    );
}
