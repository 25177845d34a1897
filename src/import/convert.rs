//! The mapping from keepalived's statements to vipd's keys, and the TOML text.
//!
//! One pass over the file in order, so the notes come out in file order; the
//! `vrrp_script` definitions and `global_defs` are collected first, silently,
//! because keepalived lets an instance use a script defined further down.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use super::parse::{Statement, Word};
use super::{Conversion, Location, Note};

/// Where the converted configuration expects each instance's key file.
const KEY_DIR: &str = "/etc/vipd";
/// keepalived's `advert_int` and `vrrp_script interval` default, in ms.
const KEEPALIVED_DEFAULT_INTERVAL_MS: u64 = 1000;
/// keepalived's `priority` default.
const KEEPALIVED_DEFAULT_PRIORITY: u8 = 100;
/// vipd's advert interval bounds and resolution, in ms.
const MIN_ADVERT_MS: u64 = 10;
const MAX_ADVERT_MS: u64 = 40_950;

/// Why whole sections or keys are left out, by keyword.
const LEFT_OUT: &[(&str, &str)] = &[
    ("virtual_server", "LVS (IPVS load balancing) is not part of vipd"),
    ("virtual_server_group", "LVS (IPVS load balancing) is not part of vipd"),
    ("real_server", "LVS (IPVS load balancing) is not part of vipd"),
    ("static_ipaddress", "static addresses are not vipd's job: configure them with the system's network configuration"),
    ("static_routes", "static routes are not vipd's job: configure them with the system's network configuration"),
    ("static_rules", "static rules are not vipd's job: configure them with the system's network configuration"),
    ("virtual_routes", "routes that follow the VIPs are not part of vipd: add them in a notify hook"),
    ("virtual_rules", "rules that follow the VIPs are not part of vipd: add them in a notify hook"),
    ("use_vmac", "vipd puts VIPs on the interface itself and announces the node's own MAC (no VRRP virtual MAC)"),
    ("vmac_xmit_base", "vipd has no VRRP virtual MAC interface"),
    ("notification_email", "SMTP alerts are not part of vipd: send mail from a notify hook"),
    ("notification_email_from", "SMTP alerts are not part of vipd: send mail from a notify hook"),
    ("smtp_server", "SMTP alerts are not part of vipd: send mail from a notify hook"),
    ("smtp_connect_timeout", "SMTP alerts are not part of vipd: send mail from a notify hook"),
    ("smtp_alert", "SMTP alerts are not part of vipd: send mail from a notify hook"),
    ("smtp_helo_name", "SMTP alerts are not part of vipd: send mail from a notify hook"),
    ("script_user", "vipd runs track scripts and notify hooks as the daemon's user (root)"),
    ("enable_script_security", "vipd runs only scripts named in its root-owned configuration"),
    ("vrrp_mcast_group4", "vipd adverts are UDP to its own multicast_group (default 239.255.80.51), not VRRP's 224.0.0.18"),
    ("vrrp_mcast_group6", "vipd adverts are UDP to its own multicast_group, not VRRP's ff02::12"),
    ("unicast_src_ip", "vipd sends adverts from the interface's own address"),
    ("mcast_src_ip", "vipd sends adverts from the interface's own address"),
    ("dont_track_primary", "vipd always tracks the instance's interface: its link down is a fault"),
    ("vrrp_track_file", "keepalived track files are not converted: vipd's [[instance.track_file]] reads an integer from a file (see vipd.toml(5))"),
    ("track_file", "keepalived track files are not converted: vipd's [[instance.track_file]] reads an integer from a file (see vipd.toml(5))"),
    ("vrrp_track_process", "process tracking is not part of vipd: use a track script such as `pidof NAME`"),
    ("track_process", "process tracking is not part of vipd: use a track script such as `pidof NAME`"),
    ("bfd_instance", "BFD is not part of vipd"),
    ("track_bfd", "BFD is not part of vipd"),
    ("lvs_sync_daemon_interface", "LVS is not part of vipd"),
    ("notify_master_rx_lower_pri", "vipd has no such hook; a master that hears a lower-priority master re-announces its VIPs by itself"),
    ("notify_deleted", "vipd runs the `stop` hook when an instance is removed"),
    ("garp_master_refresh_repeat", "vipd's refresh sends one announcement per VIP"),
];

/// Keywords that carry nothing vipd would do differently, so dropping them
/// loses nothing worth a note.
const IGNORED_QUIETLY: &[&str] = &["vrrp_version", "version"];

/// `vrrp_script`'s keys, for splitting one-line blocks.
const SCRIPT_KEYS: &[&str] = &[
    "script",
    "interval",
    "timeout",
    "weight",
    "rise",
    "fall",
    "user",
    "init_fail",
];
/// `authentication`'s keys.
const AUTH_KEYS: &[&str] = &["auth_type", "auth_pass"];
/// The `global_defs` keys worth telling apart on one line.
const GLOBAL_KEYS: &[&str] = &[
    "router_id",
    "vrrp_version",
    "notification_email_from",
    "smtp_server",
    "smtp_connect_timeout",
    "script_user",
    "enable_script_security",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
    "lvs_id",
];
/// The `vrrp_instance` keys that take values, for splitting one-line blocks.
const INSTANCE_KEYS: &[&str] = &[
    "state",
    "interface",
    "virtual_router_id",
    "priority",
    "advert_int",
    "nopreempt",
    "preempt",
    "preempt_delay",
    "version",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify",
    "garp_master_repeat",
    "garp_master_delay",
    "garp_master_refresh",
    "use_vmac",
    "unicast_src_ip",
    "mcast_src_ip",
    "smtp_alert",
];

pub(super) fn convert(path: &Path, statements: &[Statement]) -> Conversion {
    let mut converter = Converter::default();
    converter.collect_definitions(statements);
    // Sync groups name instances that may come later in the file.
    let (sync_groups, others): (Vec<&Statement>, Vec<&Statement>) = statements
        .iter()
        .partition(|s| s.keyword.text == "vrrp_sync_group");
    for statement in others.into_iter().chain(sync_groups) {
        converter.top_level(statement);
    }
    let toml = converter.render(path);
    // In file order: files as they were first read (includes where they stand),
    // lines within each.
    let mut files = Vec::new();
    file_order(statements, &mut files);
    let rank = |at: &Location| {
        files
            .iter()
            .position(|f| *f == at.file)
            .unwrap_or(usize::MAX)
    };
    let mut notes = converter.notes;
    notes.sort_by_key(|note| (rank(&note.at), note.at.line));
    Conversion { toml, notes }
}

fn file_order(statements: &[Statement], files: &mut Vec<std::path::PathBuf>) {
    for statement in statements {
        if !files.contains(&statement.at().file) {
            files.push(statement.at().file.clone());
        }
        file_order(statement.block.as_deref().unwrap_or(&[]), files);
    }
}

/// The statements of a block with any line holding several known keywords
/// (`{ script "x" interval 5 }`) split into one statement per keyword.
fn split_keys(block: Option<&[Statement]>, keys: &[&str]) -> Vec<Statement> {
    let mut out = Vec::new();
    for statement in block.unwrap_or(&[]) {
        let mut current = Statement {
            keyword: statement.keyword.clone(),
            args: Vec::new(),
            block: None,
        };
        for arg in &statement.args {
            if keys.contains(&arg.text.as_str()) {
                let next = Statement {
                    keyword: arg.clone(),
                    args: Vec::new(),
                    block: None,
                };
                out.push(std::mem::replace(&mut current, next));
            } else {
                current.args.push(arg.clone());
            }
        }
        current.block = statement.block.clone();
        out.push(current);
    }
    out
}

/// One entry of a `track_script` or `track_interface` block:
/// `NAME [weight W [reverse]]`.
struct Tracked<'a> {
    name: &'a Word,
    weight: Option<&'a Word>,
    reverse: Option<&'a Word>,
}

/// The entries of a `track_script` or `track_interface` block's `words`
/// (keepalived takes `reverse` after the weight in both).
fn tracked(words: &[Word]) -> Vec<Tracked<'_>> {
    let mut entries = Vec::new();
    let mut words = words.iter().peekable();
    while let Some(name) = words.next() {
        let mut entry = Tracked {
            name,
            weight: None,
            reverse: None,
        };
        if words.next_if(|w| w.text == "weight").is_some() {
            entry.weight = words.next();
            if entry.weight.is_some() {
                entry.reverse = words.next_if(|w| w.text == "reverse");
            }
        }
        entries.push(entry);
    }
    entries
}

#[derive(Default)]
struct Converter {
    notes: Vec<Note>,
    node_name: Option<String>,
    /// `vrrp_version 3` in global_defs: `advert_int` may have fractions.
    version3: bool,
    scripts: HashMap<String, Script>,
    instances: Vec<Instance>,
    /// keepalived instance name → vipd name, for the converted ones.
    instance_names: HashMap<String, String>,
    sync_groups: Vec<(String, Vec<String>)>,
}

#[derive(Clone)]
struct Script {
    name: String,
    command: Vec<String>,
    shell: bool,
    interval_ms: u64,
    timeout_ms: Option<u64>,
    weight: Option<i64>,
    rise: Option<i64>,
    fall: Option<i64>,
}

#[derive(Default)]
struct Instance {
    name: String,
    interface: Option<String>,
    group: Option<u8>,
    priority: Option<u8>,
    advert_ms: Option<u64>,
    preempt: Option<bool>,
    preempt_delay_ms: Option<u64>,
    vips: Vec<String>,
    peers: Vec<String>,
    auth_key_file: Option<String>,
    announce_count: Option<i64>,
    announce_repeat_after_ms: Option<u64>,
    announce_refresh_ms: Option<u64>,
    track_scripts: Vec<Script>,
    track_interfaces: Vec<(String, Option<i64>)>,
    notify: Vec<(&'static str, Vec<String>)>,
}

impl Converter {
    fn note(&mut self, at: &Location, message: impl Into<String>) {
        self.notes.push(Note {
            at: at.clone(),
            message: message.into(),
        });
    }

    fn left_out(&mut self, statement: &Statement) {
        let keyword = statement.keyword.text.as_str();
        let reason = LEFT_OUT
            .iter()
            .find(|(k, _)| *k == keyword)
            .map_or("no vipd equivalent", |(_, why)| why);
        let what = if statement.block.is_some() {
            describe_head(statement)
        } else {
            keyword.to_owned()
        };
        self.note(
            statement.at(),
            format!("{what}: {reason}; not carried over"),
        );
    }

    /// `vrrp_script`s and the `global_defs` that change how others read.
    fn collect_definitions(&mut self, statements: &[Statement]) {
        for statement in statements {
            match statement.keyword.text.as_str() {
                "global_defs" => {
                    for key in split_keys(statement.block.as_deref(), GLOBAL_KEYS).iter() {
                        if key.keyword.text == "vrrp_version" && first_arg(key) == Some("3") {
                            self.version3 = true;
                        }
                    }
                }
                "vrrp_script" => {
                    if let Some(name) = statement.args.first() {
                        let mut quiet = Self::default();
                        let script = quiet.script(statement);
                        self.scripts.insert(name.text.clone(), script);
                    }
                }
                _ => {}
            }
        }
    }

    fn top_level(&mut self, statement: &Statement) {
        match statement.keyword.text.as_str() {
            "global_defs" => {
                for key in split_keys(statement.block.as_deref(), GLOBAL_KEYS).iter() {
                    self.global_def(key);
                }
            }
            // Collected already; this pass reports what its keys lose.
            "vrrp_script" => {
                self.script(statement);
            }
            "vrrp_instance" => self.instance(statement),
            "vrrp_sync_group" => self.sync_group(statement),
            _ => self.left_out(statement),
        }
    }

    fn global_def(&mut self, key: &Statement) {
        match key.keyword.text.as_str() {
            "router_id" => match first_arg(key) {
                Some(name) if !name.is_empty() && name.len() <= 64 => {
                    self.node_name = Some(name.to_owned())
                }
                _ => self.note(
                    key.at(),
                    "router_id: not a valid vipd node name (1..=64 bytes); [node] name is left to default to the hostname",
                ),
            },
            k if IGNORED_QUIETLY.contains(&k) => {}
            _ => self.left_out(key),
        }
    }

    /// A `vrrp_script` block; notes go to `self`.
    fn script(&mut self, statement: &Statement) -> Script {
        let raw_name = statement.args.first().map_or("", |w| w.text.as_str());
        let name = self.vipd_name(raw_name, statement.at(), "vrrp_script");
        let mut script = Script {
            name,
            command: Vec::new(),
            shell: false,
            interval_ms: KEEPALIVED_DEFAULT_INTERVAL_MS,
            timeout_ms: None,
            weight: None,
            rise: None,
            fall: None,
        };
        for key in split_keys(statement.block.as_deref(), SCRIPT_KEYS).iter() {
            let at = key.at();
            match key.keyword.text.as_str() {
                "script" => {
                    let text = key
                        .args
                        .iter()
                        .map(|w| w.text.as_str())
                        .collect::<Vec<_>>()
                        .join(" ");
                    if needs_shell(&text) {
                        script.shell = true;
                        script.command = vec![text];
                    } else {
                        script.command = text.split_whitespace().map(str::to_owned).collect();
                    }
                }
                "interval" => {
                    if let Some(ms) = self.seconds(key, 10, 3_600_000) {
                        script.interval_ms = ms;
                    }
                }
                "timeout" => script.timeout_ms = self.seconds(key, 10, 3_600_000),
                "weight" => {
                    script.weight = self.integer(key, -254, 254).filter(|w| *w != 0);
                    if key.args.iter().any(|w| w.text == "reverse") {
                        self.note(at, "weight ... reverse: vipd has no reversed weights; the weight is carried without it");
                    }
                }
                "rise" => script.rise = self.integer(key, 1, 100),
                "fall" => script.fall = self.integer(key, 1, 100),
                "user" => self.note(at, "user: vipd runs track scripts as the daemon's user (root); not carried over"),
                "init_fail" => self.note(at, "init_fail: vipd counts a script as failing from its first failed run; not carried over"),
                _ => self.left_out(key),
            }
        }
        script
    }

    fn instance(&mut self, statement: &Statement) {
        let at = statement.at().clone();
        let Some(raw_name) = statement.args.first().map(|w| w.text.clone()) else {
            self.note(&at, "vrrp_instance without a name: not converted");
            return;
        };
        let mut instance = Instance {
            name: self.vipd_name(&raw_name, &at, "vrrp_instance"),
            ..Instance::default()
        };
        let keys = split_keys(statement.block.as_deref(), INSTANCE_KEYS);
        let version3 = self.version3
            || keys
                .iter()
                .any(|k| k.keyword.text == "version" && first_arg(k) == Some("3"));
        // The interface first: `virtual_ipaddress ... dev X` is compared with it.
        instance.interface = keys
            .iter()
            .rev()
            .find(|k| k.keyword.text == "interface")
            .and_then(first_arg)
            .map(str::to_owned);
        for key in &keys {
            self.instance_key(&mut instance, key, version3);
        }
        let missing = [
            (instance.interface.is_none(), "no interface"),
            (instance.group.is_none(), "no valid virtual_router_id"),
            (
                instance.vips.is_empty(),
                "no virtual_ipaddress that vipd can hold",
            ),
        ];
        if let Some((_, what)) = missing.iter().find(|(missing, _)| *missing) {
            self.note(
                &at,
                format!("vrrp_instance {raw_name}: {what}; the instance is not converted"),
            );
            return;
        }
        self.instance_names.insert(raw_name, instance.name.clone());
        self.instances.push(instance);
    }

    fn instance_key(&mut self, instance: &mut Instance, key: &Statement, version3: bool) {
        let at = key.at();
        match key.keyword.text.as_str() {
            "interface" => {}
            "state" => {
                if first_arg(key) == Some("MASTER") {
                    self.note(at, "state MASTER: vipd starts every instance as backup and elects by priority (the highest wins, as in keepalived after start-up); not carried over");
                }
            }
            "virtual_router_id" => {
                instance.group = self.integer(key, 1, 255).and_then(|g| u8::try_from(g).ok())
            }
            "priority" => match first_arg(key).and_then(|p| p.parse::<u16>().ok()) {
                Some(255) => {
                    self.note(at, "priority 255 (keepalived's address owner) becomes 254, vipd's highest");
                    instance.priority = Some(254);
                }
                Some(p @ 1..=254) => instance.priority = u8::try_from(p).ok(),
                _ => self.note(at, format!(
                    "priority {}: not 1..=255; keepalived's default {KEEPALIVED_DEFAULT_PRIORITY} is used",
                    first_arg(key).unwrap_or("")
                )),
            },
            "advert_int" => instance.advert_ms = self.advert_int(key, version3),
            "nopreempt" => instance.preempt = Some(false),
            "preempt" => instance.preempt = Some(true),
            "preempt_delay" => instance.preempt_delay_ms = self.seconds(key, 0, 3_600_000),
            "virtual_ipaddress" => self.vips(instance, key, false),
            "virtual_ipaddress_excluded" => self.vips(instance, key, true),
            "unicast_peer" => self.peers(instance, key),
            "authentication" => self.authentication(instance, key),
            "track_script" => self.track_scripts(instance, key),
            "track_interface" => self.track_interfaces(instance, key),
            "notify_master" => self.notify(instance, key, "master"),
            "notify_backup" => self.notify(instance, key, "backup"),
            "notify_fault" => self.notify(instance, key, "fault"),
            "notify_stop" => self.notify(instance, key, "stop"),
            "notify" => {
                self.notify(instance, key, "any");
                self.note(at, "notify: keepalived passes TYPE NAME STATE PRIORITY, vipd passes INSTANCE STATE PREVIOUS_STATE REASON (and VIPD_* variables): check the script's arguments");
            }
            "garp_master_repeat" => instance.announce_count = self.integer(key, 1, 100),
            "garp_master_delay" => instance.announce_repeat_after_ms = self.seconds(key, 0, 3_600_000),
            "garp_master_refresh" => {
                instance.announce_refresh_ms = self
                    .seconds(key, 0, 86_400_000)
                    .filter(|ms| *ms == 0 || *ms >= 1000)
            }
            k if IGNORED_QUIETLY.contains(&k) => {}
            _ => self.left_out(key),
        }
    }

    fn advert_int(&mut self, key: &Statement, version3: bool) -> Option<u64> {
        let text = first_arg(key).unwrap_or("");
        let Some(seconds) = parse_seconds(text) else {
            self.note(
                key.at(),
                format!("advert_int {text}: not a number of seconds; the default 1s is used"),
            );
            return None;
        };
        let mut ms = (seconds * 1000.0).round() as u64;
        if version3 {
            // VRRPv3 carries centiseconds, as vipd does.
            ms = (seconds * 100.0).round() as u64 * 10;
        } else if ms % 1000 != 0 {
            // VRRPv2 carries whole seconds: keepalived rounds, and ran with that.
            let rounded = seconds.round().max(1.0) as u64 * 1000;
            self.note(key.at(), format!(
                "advert_int {text}: VRRPv2 has whole seconds, so keepalived ran with {}; carried as that (vipd could do {}, with vrrp_version 3 keepalived would have)",
                duration_text(rounded), duration_text(ms.max(MIN_ADVERT_MS))
            ));
            ms = rounded;
        }
        if !(MIN_ADVERT_MS..=MAX_ADVERT_MS).contains(&ms) {
            let clamped = ms.clamp(MIN_ADVERT_MS, MAX_ADVERT_MS);
            self.note(
                key.at(),
                format!(
                    "advert_int {text}: vipd's advert interval is 10ms..=40.95s; carried as {}",
                    duration_text(clamped)
                ),
            );
            ms = clamped;
        }
        Some(ms)
    }

    fn vips(&mut self, instance: &mut Instance, key: &Statement, excluded: bool) {
        if excluded {
            self.note(key.at(), "virtual_ipaddress_excluded: vipd advertises every VIP; these addresses are carried into vips");
        }
        let words = key.block_words();
        let mut words = words.iter().peekable();
        while let Some(word) = words.next() {
            let text = word.text.as_str();
            match text {
                "dev" | "label" | "brd" | "broadcast" | "scope" | "preferred_lft"
                | "track_group" => {
                    let value = words.next().map_or("", |w| w.text.as_str());
                    let why = match text {
                        "dev" if instance.interface.as_deref() == Some(value) => continue,
                        "dev" => format!(
                            "vipd puts every VIP on the instance's interface ({}), so the address before it goes there instead",
                            instance.interface.as_deref().unwrap_or("?")
                        ),
                        "label" => "vipd adds no address labels".to_owned(),
                        _ => "vipd adds VIPs with the kernel's defaults".to_owned(),
                    };
                    self.note(&word.at, format!("{text} {value}: {why}; not carried over"));
                }
                "no_track" | "home" | "-nodad" | "nodad" | "noprefixroute" | "autojoin" => {
                    self.note(
                        &word.at,
                        format!("{text}: vipd has no such address flag; not carried over"),
                    );
                }
                _ => match parse_vip(text) {
                    Ok(vip) => instance.vips.push(vip),
                    Err(why) => self.note(&word.at, format!("{text}: {why}; not carried over")),
                },
            }
        }
    }

    fn peers(&mut self, instance: &mut Instance, key: &Statement) {
        let words = key.block_words();
        let mut words = words.iter();
        while let Some(word) = words.next() {
            match word.text.as_str() {
                option @ ("min_ttl" | "max_ttl") => {
                    let value = words.next().map_or("", |w| w.text.as_str());
                    self.note(&word.at, format!(
                        "{option} {value}: vipd accepts adverts with TTL 255 only (never routed); not carried over"
                    ));
                }
                text => match text.parse::<IpAddr>() {
                    Ok(address) => instance.peers.push(address.to_string()),
                    Err(_) => self.note(
                        &word.at,
                        format!("unicast_peer {text}: not an address; not carried over"),
                    ),
                },
            }
        }
    }

    fn authentication(&mut self, instance: &mut Instance, key: &Statement) {
        let auth_type = split_keys(key.block.as_deref(), AUTH_KEYS)
            .iter()
            .find(|k| k.keyword.text == "auth_type")
            .and_then(first_arg)
            .unwrap_or("PASS")
            .to_owned();
        let path = format!("{KEY_DIR}/{}.key", instance.name);
        self.note(key.at(), format!(
            "authentication (auth_type {auth_type}): the password is not reused (keepalived's is at most 8 characters, and PASS sends it in clear text); vipd signs adverts with HMAC-SHA256: run `vipd keygen {path}` on one node and copy the file (mode 0600) to every peer"
        ));
        instance.auth_key_file = Some(path);
    }

    fn track_scripts(&mut self, instance: &mut Instance, key: &Statement) {
        for entry in tracked(&key.block_words()) {
            if let Some(reverse) = entry.reverse {
                self.note(&reverse.at, "weight ... reverse: vipd has no reversed weights; the weight is carried without it");
            }
            let word = entry.name;
            let Some(mut script) = self.scripts.get(&word.text).cloned() else {
                self.note(&word.at, format!(
                    "track_script {}: no vrrp_script of that name (keepalived ignores it too); not carried over",
                    word.text
                ));
                continue;
            };
            if let Some(value) = entry.weight {
                if let Some(weight) = self.weight(value, "the script's own weight is kept") {
                    script.weight = weight;
                }
            }
            if script.command.is_empty() {
                self.note(
                    &word.at,
                    format!(
                        "track_script {}: its vrrp_script has no script line; not carried over",
                        word.text
                    ),
                );
                continue;
            }
            instance.track_scripts.push(script);
        }
    }

    fn track_interfaces(&mut self, instance: &mut Instance, key: &Statement) {
        for entry in tracked(&key.block_words()) {
            let weight = entry.weight.and_then(|value| {
                self.weight(value, "carried without a weight (a fault while down)")
            });
            if let Some(reverse) = entry.reverse {
                self.note(&reverse.at, "weight ... reverse: vipd has no reversed weights; the weight is carried without it");
            }
            instance
                .track_interfaces
                .push((entry.name.text.clone(), weight.flatten()));
        }
    }

    /// A tracked entry's `weight W`: `Some(None)` for 0 (no weight),
    /// `Some(Some(W))` for -254..=254; anything else is noted (with what is
    /// done instead, `otherwise`) and gives `None`.
    fn weight(&mut self, value: &Word, otherwise: &str) -> Option<Option<i64>> {
        match value.text.parse::<i64>() {
            Ok(0) => Some(None),
            Ok(w) if (-254..=254).contains(&w) => Some(Some(w)),
            _ => {
                self.note(
                    &value.at,
                    format!("weight {}: not -254..=254; {otherwise}", value.text),
                );
                None
            }
        }
    }

    fn notify(&mut self, instance: &mut Instance, key: &Statement, hook: &'static str) {
        let Some(script) = key.args.first() else {
            self.note(
                key.at(),
                format!("{}: no script; not carried over", key.keyword.text),
            );
            return;
        };
        if let Some(user) = key.args.get(1) {
            self.note(&user.at, format!(
                "{} ... {}: vipd runs notify hooks as the daemon's user (root); the user is not carried over",
                key.keyword.text, user.text
            ));
        }
        let command = if needs_shell(&script.text) {
            vec!["/bin/sh".to_owned(), "-c".to_owned(), script.text.clone()]
        } else {
            script.text.split_whitespace().map(str::to_owned).collect()
        };
        instance.notify.retain(|(h, _)| *h != hook);
        instance.notify.push((hook, command));
    }

    fn sync_group(&mut self, statement: &Statement) {
        let at = statement.at().clone();
        let raw_name = statement.args.first().map_or("", |w| w.text.as_str());
        let name = self.vipd_name(raw_name, &at, "vrrp_sync_group");
        let mut members = Vec::new();
        for key in statement.block.iter().flatten() {
            match key.keyword.text.as_str() {
                "group" => {
                    for word in key.block_words() {
                        match self.instance_names.get(&word.text) {
                            Some(vipd_name) => members.push(vipd_name.clone()),
                            None => self.note(&word.at, format!(
                                "vrrp_sync_group {raw_name}: member {} is not a converted vrrp_instance; left out of the group",
                                word.text
                            )),
                        }
                    }
                }
                k if k.starts_with("notify") => self.note(key.at(), format!(
                    "{k} (of a sync group): vipd runs hooks per instance; move it to the member instances' [instance.notify]; not carried over"
                )),
                _ => self.left_out(key),
            }
        }
        if members.len() < 2 {
            self.note(&at, format!(
                "vrrp_sync_group {raw_name}: vipd's sync groups need 2 or more instances; not carried over"
            ));
            return;
        }
        self.sync_groups.push((name, members));
    }

    /// `raw` as a vipd name (`[A-Za-z0-9_.-]{1,32}`), noting any change.
    fn vipd_name(&mut self, raw: &str, at: &Location, what: &str) -> String {
        let mut name: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(32)
            .collect();
        if name.is_empty() {
            name = "unnamed".to_owned();
        }
        if name != raw {
            self.note(
                at,
                format!("{what} {raw}: named {name} (vipd names are 1..=32 of [A-Za-z0-9_.-])"),
            );
        }
        name
    }

    fn integer(&mut self, key: &Statement, min: i64, max: i64) -> Option<i64> {
        let text = first_arg(key).unwrap_or("");
        match text.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.note(
                    key.at(),
                    format!(
                        "{} {text}: vipd takes {min}..={max}; not carried over",
                        key.keyword.text
                    ),
                );
                None
            }
        }
    }

    /// A number of seconds (fractions allowed) as ms within `min_ms..=max_ms`.
    fn seconds(&mut self, key: &Statement, min_ms: u64, max_ms: u64) -> Option<u64> {
        let text = first_arg(key).unwrap_or("");
        let ms = parse_seconds(text).map(|s| (s * 1000.0).round() as u64);
        match ms {
            Some(ms) if (min_ms..=max_ms).contains(&ms) => Some(ms),
            _ => {
                self.note(
                    key.at(),
                    format!(
                        "{} {text}: vipd takes {}..={}; not carried over",
                        key.keyword.text,
                        duration_text(min_ms),
                        duration_text(max_ms)
                    ),
                );
                None
            }
        }
    }

    fn render(&self, path: &Path) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# vipd configuration converted from {} by `vipd import-keepalived`.",
            path.display()
        );
        let _ = writeln!(
            out,
            "# Check it with `vipd check --config FILE`; see vipd.toml(5) for every key."
        );
        if let Some(name) = &self.node_name {
            let _ = writeln!(out, "\n[node]\nname = {}", quote(name));
        }
        for instance in &self.instances {
            render_instance(&mut out, instance);
        }
        for (name, members) in &self.sync_groups {
            let _ = writeln!(
                out,
                "\n[[sync_group]]\nname = {}\ninstances = {}",
                quote(name),
                list(members)
            );
        }
        out
    }
}

fn render_instance(out: &mut String, instance: &Instance) {
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key} = {value}");
    };
    line("\n[[instance]]\nname", quote(&instance.name));
    line(
        "interface",
        quote(instance.interface.as_deref().unwrap_or("")),
    );
    line("group", instance.group.unwrap_or(0).to_string());
    line(
        "priority",
        instance
            .priority
            .unwrap_or(KEEPALIVED_DEFAULT_PRIORITY)
            .to_string(),
    );
    line(
        "advert_interval",
        quote(&duration_text(
            instance.advert_ms.unwrap_or(KEEPALIVED_DEFAULT_INTERVAL_MS),
        )),
    );
    if let Some(preempt) = instance.preempt {
        line("preempt", preempt.to_string());
    }
    if let Some(ms) = instance.preempt_delay_ms {
        line("preempt_delay", quote(&duration_text(ms)));
    }
    line("vips", list(&instance.vips));
    if !instance.peers.is_empty() {
        line("peers", list(&instance.peers));
    }
    match &instance.auth_key_file {
        Some(path) => line("auth_key_file", quote(path)),
        None => line("auth", quote("none")),
    }
    if let Some(count) = instance.announce_count {
        line("announce_count", count.to_string());
    }
    if let Some(ms) = instance.announce_repeat_after_ms {
        line("announce_repeat_after", quote(&duration_text(ms)));
    }
    if let Some(ms) = instance.announce_refresh_ms {
        line("announce_refresh", quote(&duration_text(ms)));
    }
    for script in &instance.track_scripts {
        let _ = writeln!(out, "\n[[instance.track_script]]");
        let _ = writeln!(out, "name = {}", quote(&script.name));
        let _ = writeln!(out, "command = {}", list(&script.command));
        if script.shell {
            let _ = writeln!(out, "shell = true");
        }
        let _ = writeln!(
            out,
            "interval = {}",
            quote(&duration_text(script.interval_ms))
        );
        if let Some(ms) = script.timeout_ms {
            let _ = writeln!(out, "timeout = {}", quote(&duration_text(ms)));
        }
        if let Some(rise) = script.rise {
            let _ = writeln!(out, "rise = {rise}");
        }
        if let Some(fall) = script.fall {
            let _ = writeln!(out, "fall = {fall}");
        }
        if let Some(weight) = script.weight {
            let _ = writeln!(out, "weight = {weight}");
        }
    }
    for (name, weight) in &instance.track_interfaces {
        let _ = writeln!(
            out,
            "\n[[instance.track_interface]]\nname = {}",
            quote(name)
        );
        if let Some(weight) = weight {
            let _ = writeln!(out, "weight = {weight}");
        }
    }
    if !instance.notify.is_empty() {
        let _ = writeln!(out, "\n[instance.notify]");
        for hook in ["master", "backup", "fault", "stop", "any"] {
            if let Some((_, command)) = instance.notify.iter().find(|(h, _)| *h == hook) {
                let _ = writeln!(out, "{hook} = {}", list(command));
            }
        }
    }
}

fn first_arg(statement: &Statement) -> Option<&str> {
    statement.args.first().map(|w| w.text.as_str())
}

fn describe_head(statement: &Statement) -> String {
    let mut text = statement.keyword.text.clone();
    for arg in &statement.args {
        text.push(' ');
        text.push_str(&arg.text);
    }
    text
}

/// Whether a script line needs `/bin/sh -c`: anything a shell would expand or
/// redirect; without it, keepalived's word splitting is the same as ours.
fn needs_shell(script: &str) -> bool {
    script.contains(|c| "|&;<>()$`\\\"'*?[]~{}#=".contains(c))
}

fn parse_seconds(text: &str) -> Option<f64> {
    let seconds: f64 = text.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then_some(seconds)
}

/// keepalived's address as vipd's `ADDRESS/PREFIX` (a bare one is a host route).
fn parse_vip(text: &str) -> Result<String, String> {
    let (address, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().map_err(|_| "not an address".to_owned())?;
    if let IpAddr::V6(v6) = address {
        if v6.segments()[0] & 0xffc0 == 0xfe80 {
            return Err(
                "vipd takes no link-local IPv6 VIP (its adverts are UDP; no peer needs one)".into(),
            );
        }
    }
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=max).contains(p))
            .ok_or_else(|| format!("prefix /{p} is not 1..={max}"))?,
    };
    Ok(format!("{address}/{prefix}"))
}

fn duration_text(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vips_get_keepalived_default_prefixes() {
        assert_eq!(parse_vip("10.0.0.1").unwrap(), "10.0.0.1/32");
        assert_eq!(parse_vip("10.0.0.1/24").unwrap(), "10.0.0.1/24");
        assert_eq!(parse_vip("2001:db8::1").unwrap(), "2001:db8::1/128");
        assert!(parse_vip("fe80::1/64").unwrap_err().contains("link-local"));
        assert!(parse_vip("10.0.0.1/33").unwrap_err().contains("1..=32"));
        assert!(parse_vip("eth0").is_err());
    }

    #[test]
    fn scripts_need_a_shell_only_for_shell_syntax() {
        assert!(!needs_shell("killall -0 haproxy"));
        assert!(!needs_shell(
            "/usr/bin/curl -sf http://127.0.0.1:8080/health"
        ));
        assert!(needs_shell("pidof nginx || exit 1"));
        assert!(needs_shell("test -f /tmp/x && exit 1"));
    }

    #[test]
    fn reverse_after_a_tracked_interface_weight_is_noted_not_read_as_a_name() {
        let dir = std::env::temp_dir().join(format!("vipd-import-rev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("keepalived.conf");
        std::fs::write(
            &file,
            "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n priority 100\n \
             virtual_ipaddress { 10.0.0.10/24 }\n track_interface {\n  eth1 weight -20 reverse\n  eth2\n }\n}\n",
        )
        .unwrap();
        let conversion = crate::import::convert_file(&file).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            !conversion.toml.contains("\"reverse\""),
            "reverse is not an interface:\n{}",
            conversion.toml
        );
        assert!(conversion.toml.contains("eth1") && conversion.toml.contains("eth2"));
        assert!(conversion
            .notes
            .iter()
            .any(|n| n.to_string().contains("reverse")));
    }

    #[test]
    fn durations_read_as_written() {
        assert_eq!(duration_text(1000), "1s");
        assert_eq!(duration_text(250), "250ms");
        assert_eq!(duration_text(3_600_000), "3600s");
    }
}
