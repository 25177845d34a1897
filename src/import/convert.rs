//! The mapping from keepalived's statements to vipd's keys, and the TOML text.
//!
//! One pass over the file in order, as keepalived reads it: an instance takes
//! the global `vrrp_garp_master_*` values set above it (keepalived copies them
//! when it allocates the instance, vrrp_data.c `alloc_vrrp`). The `vrrp_script`
//! definitions and `vrrp_version` are collected first, silently, because
//! keepalived lets an instance use a script defined further down and applies
//! the version when it completes the instances (vrrp.c `vrrp_complete_instance`).
//! The notes are sorted into file order at the end.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use super::parse::{Conditional, Parsed, Statement, Word};
use super::{Conversion, Location, Note, Options};

/// Where the converted configuration expects each instance's key file.
const KEY_DIR: &str = "/etc/vipd";
/// keepalived's `advert_int` and `vrrp_script interval` default, in ms.
const KEEPALIVED_DEFAULT_INTERVAL_MS: u64 = 1000;
/// keepalived's `priority` default (`VRRP_PRIO_DFL`).
const KEEPALIVED_DEFAULT_PRIORITY: u8 = 100;
/// keepalived's address owner priority (`VRRP_PRIO_OWNER`), also its default for
/// `state MASTER`.
const KEEPALIVED_OWNER_PRIORITY: u8 = 255;
/// vipd's highest priority.
const VIPD_MAX_PRIORITY: u8 = 254;
/// keepalived's `vrrp_garp_master_repeat` and `vrrp_garp_master_delay`
/// defaults, which `vrrp_min_garp` replaces only while they are unchanged.
const KEEPALIVED_GARP_REPEAT: i64 = 5;
const KEEPALIVED_GARP_DELAY_MS: u64 = 5000;
/// The `router_id` keepalived's packaged keepalived.conf ships with.
const PACKAGED_ROUTER_ID: &str = "LVS_DEVEL";
/// vipd's node name length limit.
const MAX_NODE_NAME: usize = 64;
/// VRRP's multicast groups, the only ones vipd's VRRP mode speaks to.
const VRRP_GROUP4: &str = "224.0.0.18";
const VRRP_GROUP6: &str = "ff02::12";
/// VRRPv2's simple-text password: 8 bytes of auth data.
const VRRP_AUTH_PASS_BYTES: usize = 8;
/// What `check_unicast_src` means for a node that joins.
const CHECK_UNICAST_SRC: &str = "keepalived then takes unicast adverts only from the addresses in its unicast_peer list; this node's (vrrp_source, or the interface's address) must be in the keepalived nodes' lists";
/// Why two nodes need different names, for the notes.
const NODE_NAMES_DIFFER: &str = "node names must differ between nodes (two with one name share a node id, and the later to start stands aside in fault)";
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
    ("vrrp_garp_master_refresh_repeat", "vipd's refresh sends one announcement per VIP"),
    ("native_ipv6", "vipd adverts are UDP, not VRRP over IPv6"),
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
    "vrrp_garp_master_delay",
    "vrrp_garp_master_repeat",
    "vrrp_garp_master_refresh",
    "vrrp_garp_master_refresh_repeat",
    "vrrp_min_garp",
    "v3_checksum_as_v2",
    "vrrp_check_unicast_src",
    "vrrp_strict",
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
    "garp_master_refresh_repeat",
    "use_vmac",
    "unicast_src_ip",
    "mcast_src_ip",
    "mcast_dst_ip",
    "unicast_ttl",
    "v3_checksum_as_v2",
    "check_unicast_src",
    "old_unicast_checksum",
    "smtp_alert",
];

pub(super) fn convert(path: &Path, parsed: Parsed, options: &Options) -> Conversion {
    let statements = &parsed.statements;
    let mut converter = Converter::new(options);
    converter.collect_definitions(statements);
    converter.conditionals(&parsed.conditionals);
    converter.notes.extend(parsed.notes);
    // Sync groups name instances that may come later in the file.
    let (sync_groups, others): (Vec<&Statement>, Vec<&Statement>) = statements
        .iter()
        .partition(|s| s.keyword.text == "vrrp_sync_group");
    for statement in others.into_iter().chain(sync_groups) {
        converter.top_level(statement);
    }
    converter.node_name(path, statements);
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
    /// Indexes into `notes` of those that say why an instance is not
    /// converted; the other notes of a skipped instance are dropped with it.
    reasons: HashSet<usize>,
    /// keepalived's config-id: whose `@HOST` lines were read.
    host: String,
    /// `--join`: VRRP on the wire, to run beside keepalived nodes.
    join: bool,
    /// Global `v3_checksum_as_v2` read so far (copied into the instances after
    /// it, as keepalived's `alloc_vrrp` does).
    checksum_as_v2: bool,
    /// Global `vrrp_mcast_group4` / `vrrp_mcast_group6`, when set.
    mcast_group4: Option<String>,
    mcast_group6: Option<String>,
    /// Whether the host shaped the output (conditional lines, or the node name).
    host_used: bool,
    /// The last `router_id` and where it stands.
    router_id: Option<Word>,
    /// Where the first `global_defs` stands.
    global_defs_at: Option<Location>,
    node_name: Option<String>,
    /// `vrrp_version 3` in global_defs: instances without their own `version`
    /// and with IPv4 addresses run VRRPv3.
    version3: bool,
    /// The global `vrrp_garp_master_*` values read so far.
    garp: Garp,
    /// How many `vrrp_instance` sections have been read so far.
    instances_read: usize,
    /// keepalived instance names already read, and where.
    instances_seen: HashMap<String, Location>,
    scripts: HashMap<String, Script>,
    instances: Vec<Instance>,
    /// keepalived instance name → vipd name, for the converted ones.
    instance_names: HashMap<String, String>,
    sync_groups: Vec<(String, Vec<String>)>,
}

/// Gratuitous ARP settings, as set (not defaulted) in global_defs or an instance.
#[derive(Clone, Default)]
struct Garp {
    /// `garp_master_repeat` → `announce_count`.
    repeat: Option<i64>,
    /// `garp_master_delay` → `announce_repeat_after`, ms.
    delay_ms: Option<u64>,
    /// `garp_master_refresh` → `announce_refresh`, ms (0: off).
    refresh_ms: Option<u64>,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(address: IpAddr) -> Self {
        if address.is_ipv4() {
            Self::V4
        } else {
            Self::V6
        }
    }
}

/// An address keepalived holds for an instance, for telling duplicates apart
/// as it does (vrrp_data.c `vip_is_duplicate`).
struct Held {
    address: IpAddr,
    /// `dev X` other than the instance's interface.
    other_device: Option<String>,
    excluded: bool,
    text: String,
    at: Location,
}

/// An `authentication` block as keepalived reads it (`auth_type` and
/// `auth_pass`, each the last one given).
struct KeepalivedAuth {
    at: Location,
    auth_type: Option<Word>,
    pass: Option<Word>,
}

#[derive(Default)]
struct Instance {
    name: String,
    interface: Option<String>,
    group: Option<u8>,
    /// keepalived's priority, 1..=255, when set (validly).
    base_priority: Option<u8>,
    /// Where `state MASTER` stands, when the instance starts as master.
    master_at: Option<Location>,
    /// Where `nopreempt` stands while it is in force.
    nopreempt_at: Option<Location>,
    preempt_delay: Option<(u64, Location)>,
    /// `version 2|3` of the instance.
    version: Option<u8>,
    /// Set by the first address the instance names (a VIP, a unicast peer, its
    /// source address), as in keepalived.
    family: Option<Family>,
    /// The last `advert_int`, read once the version is known.
    advert: Option<Statement>,
    advert_ms: Option<u64>,
    /// The priority and preemption vipd gets.
    priority: Option<u8>,
    preempt: Option<bool>,
    preempt_delay_ms: Option<u64>,
    held: Vec<Held>,
    /// The settled version: VRRPv3 or VRRPv2.
    version3: bool,
    /// Join mode: the `authentication` block, settled once the version is known.
    keepalived_auth: Option<KeepalivedAuth>,
    /// Join mode: `unicast_src_ip` / `mcast_src_ip`.
    source: Option<IpAddr>,
    /// Join mode: `v3_checksum_as_v2` (instance, or the global above it).
    checksum_as_v2: bool,
    /// Join mode: `mcast_dst_ip`.
    mcast_dst: Option<String>,
    /// Join mode: why keepalived's instance cannot be joined (the details are
    /// a reason note where they stand).
    refusal: Option<String>,
    /// Join mode: `protocol` and its `vrrp_*` keys.
    protocol: Option<&'static str>,
    vrrp_auth_pass: Option<String>,
    vrrp_checksum: Option<&'static str>,
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
    fn new(options: &Options) -> Self {
        Self {
            host: options.host.clone(),
            join: options.join,
            ..Self::default()
        }
    }

    fn note(&mut self, at: &Location, message: impl Into<String>) {
        self.notes.push(Note {
            at: at.clone(),
            message: message.into(),
            advice: false,
        });
    }

    /// A note that says why an instance may not be converted: kept when the
    /// instance is skipped, unlike its other notes.
    fn reason(&mut self, at: &Location, message: impl Into<String>) {
        self.note(at, message);
        self.reasons.insert(self.notes.len() - 1);
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
                        if key.keyword.text == "vrrp_version" {
                            match first_arg(key) {
                                Some("3") => self.version3 = true,
                                Some("2") => self.version3 = false,
                                _ => {}
                            }
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

    /// One note for the `@HOST` lines: which host the output is for, and which
    /// lines were for other hosts.
    fn conditionals(&mut self, conditionals: &[Conditional]) {
        let Some(first) = conditionals.first() else {
            return;
        };
        self.host_used = true;
        let applied = conditionals.iter().filter(|c| c.applied).count();
        let skipped: Vec<String> = conditionals
            .iter()
            .filter(|c| !c.applied)
            .map(|c| format!("{} ({})", line_ref(&c.at, &first.at), c.condition))
            .collect();
        let skipped = if skipped.is_empty() {
            "none left out".to_owned()
        } else {
            format!("left out {}", skipped.join(", "))
        };
        let host = self.host.clone();
        self.note(&first.at, format!(
            "@HOST lines: converted for host {host:?} (keepalived's config-id: `keepalived -i`, by default the hostname up to its first dot; set with --host): {applied} applied, {skipped}; convert again with --host for each other node"
        ));
    }

    fn top_level(&mut self, statement: &Statement) {
        match statement.keyword.text.as_str() {
            "global_defs" => {
                if self.global_defs_at.is_none() {
                    self.global_defs_at = Some(statement.at().clone());
                }
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
        let name = key.keyword.text.as_str();
        match name {
            // keepalived keeps the last one (global_parser.c `routerid_handler`).
            "router_id" => {
                self.router_id = Some(key.args.first().cloned().unwrap_or(Word {
                    text: String::new(),
                    at: key.at().clone(),
                }))
            }
            "vrrp_garp_master_repeat" => {
                self.garp.repeat = self.garp_repeat(key);
                self.garp_order(key);
            }
            "vrrp_garp_master_delay" => {
                self.garp.delay_ms = self.whole_seconds(key, 3600);
                self.garp_order(key);
            }
            "vrrp_garp_master_refresh" => {
                self.garp.refresh_ms = self.garp_refresh(key);
                self.garp_order(key);
            }
            // Like keepalived's `vrrp_min_garp_handler`: one announcement, no
            // repeat and no refresh, where not changed from the defaults already.
            "vrrp_min_garp" if matches!(first_arg(key), None | Some("true" | "on" | "yes")) => {
                if matches!(self.garp.repeat, None | Some(KEEPALIVED_GARP_REPEAT)) {
                    self.garp.repeat = Some(1);
                }
                if matches!(self.garp.delay_ms, None | Some(KEEPALIVED_GARP_DELAY_MS)) {
                    self.garp.delay_ms = Some(0);
                }
                if self.garp.refresh_ms.is_none() {
                    self.garp.refresh_ms = Some(0);
                }
                self.garp_order(key);
            }
            "vrrp_min_garp" => {}
            "vrrp_mcast_group4" | "vrrp_mcast_group6" if self.join => {
                let value = first_arg(key).unwrap_or("").to_owned();
                let vrrp_group = if name == "vrrp_mcast_group4" {
                    VRRP_GROUP4
                } else {
                    VRRP_GROUP6
                };
                let is_vrrp_group = value.parse::<IpAddr>().ok() == vrrp_group.parse().ok();
                let group = if is_vrrp_group {
                    None
                } else {
                    self.note(key.at(), format!(
                        "{name} {value}: vipd's VRRP mode speaks to {vrrp_group} only, so it cannot join the multicast instances of that family (unicast ones it can); those are not converted"
                    ));
                    Some(value)
                };
                if name == "vrrp_mcast_group4" {
                    self.mcast_group4 = group;
                } else {
                    self.mcast_group6 = group;
                }
            }
            "v3_checksum_as_v2" if self.join => self.checksum_as_v2 = true,
            "vrrp_check_unicast_src" if self.join => {
                self.note(key.at(), format!("{name}: {CHECK_UNICAST_SRC}"))
            }
            k if IGNORED_QUIETLY.contains(&k) => {}
            _ => self.left_out(key),
        }
    }

    /// A global garp value reaches only the instances after it.
    fn garp_order(&mut self, key: &Statement) {
        if self.instances_read > 0 {
            let count = self.instances_read;
            self.note(key.at(), format!(
                "{}: keepalived copies it into the instances that come after it in the file; the {count} vrrp_instance(s) above it keep their own or the default",
                key.keyword.text
            ));
        }
    }

    /// `[node] name`: the router_id, unless it is missing, invalid or the
    /// packaged default, which both nodes of a pair are likely to share; then the
    /// host's name. Each way, a note that the names must differ.
    fn node_name(&mut self, top_file: &Path, statements: &[Statement]) {
        let router_id = self.router_id.take();
        if self.instances.is_empty() {
            // Nothing to run; the name is carried but needs no advice.
            self.node_name = router_id
                .map(|w| w.text)
                .filter(|name| valid_node_name(name) && name != PACKAGED_ROUTER_ID);
            return;
        }
        let host = self.host.clone();
        match router_id {
            Some(word) if word.text == PACKAGED_ROUTER_ID => {
                self.host_used = true;
                self.note(&word.at, format!(
                    "router_id {PACKAGED_ROUTER_ID}: the packaged default, likely the same on every node; [node] name is this host's name {host:?} (--host) instead; {NODE_NAMES_DIFFER}"
                ));
                self.node_name = Some(host);
            }
            Some(word) if valid_node_name(&word.text) => {
                self.notes.push(Note {
                    at: word.at.clone(),
                    message: format!(
                        "router_id {}: becomes [node] name; {NODE_NAMES_DIFFER}: check the other nodes' router_id",
                        word.text
                    ),
                    advice: true,
                });
                self.node_name = Some(word.text);
            }
            Some(word) => {
                self.host_used = true;
                self.note(&word.at, format!(
                    "router_id {:?}: not a valid vipd node name (1..={MAX_NODE_NAME} bytes, no blanks); [node] name is this host's name {host:?} (--host) instead; {NODE_NAMES_DIFFER}",
                    word.text
                ));
                self.node_name = Some(host);
            }
            None => {
                self.host_used = true;
                let at = self.global_defs_at.clone().unwrap_or_else(|| Location {
                    file: statements
                        .first()
                        .map_or_else(|| top_file.to_owned(), |s| s.at().file.clone()),
                    line: 1,
                });
                self.note(&at, format!(
                    "no router_id (keepalived uses the hostname): [node] name is this host's name {host:?} (--host); {NODE_NAMES_DIFFER}"
                ));
                self.node_name = Some(host);
            }
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
            self.note(
                &at,
                "vrrp_instance without a name: keepalived skips it too; not converted",
            );
            return;
        };
        // keepalived skips a second instance of one name (vrrp_parser.c `vrrp_handler`).
        if let Some(first) = self.instances_seen.get(&raw_name) {
            let first = first.clone();
            self.note(&at, format!(
                "vrrp_instance {raw_name}: already defined at {first}; keepalived skips this one too (\"vrrp instance {raw_name} already defined\"); not converted"
            ));
            return;
        }
        self.instances_seen.insert(raw_name.clone(), at.clone());
        self.instances_read += 1;
        let first_note = self.notes.len();
        self.reasons.clear();
        let mut instance = Instance {
            name: self.vipd_name(&raw_name, &at, "vrrp_instance"),
            checksum_as_v2: self.checksum_as_v2,
            announce_count: self.garp.repeat,
            announce_repeat_after_ms: self.garp.delay_ms,
            announce_refresh_ms: self.garp.refresh_ms,
            ..Instance::default()
        };
        let keys = split_keys(statement.block.as_deref(), INSTANCE_KEYS);
        // The interface first: `virtual_ipaddress ... dev X` is compared with it.
        instance.interface = keys
            .iter()
            .rev()
            .find(|k| k.keyword.text == "interface")
            .and_then(first_arg)
            .map(str::to_owned);
        for key in &keys {
            self.instance_key(&mut instance, key);
        }
        self.complete(&mut instance, &raw_name);
        let missing = [
            (instance.interface.is_none(), "no interface"),
            (instance.group.is_none(), "no valid virtual_router_id"),
            (
                instance.vips.is_empty(),
                "no virtual_ipaddress that vipd can hold",
            ),
        ];
        let why = match missing.iter().find(|(missing, _)| *missing) {
            Some((_, what)) => Some((*what).to_owned()),
            None => instance.refusal.clone(),
        };
        if let Some(what) = why {
            // Advice about an instance that is not in the output would mislead:
            // keep only the notes that say why it is not.
            let reasons = std::mem::take(&mut self.reasons);
            let notes = self.notes.split_off(first_note);
            self.notes.extend(
                notes
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| reasons.contains(&(first_note + i)))
                    .map(|(_, note)| note),
            );
            self.note(
                &at,
                format!("vrrp_instance {raw_name}: {what}; the instance is not converted (nothing else of it is reported)"),
            );
            return;
        }
        self.reasons.clear();
        self.instance_names.insert(raw_name, instance.name.clone());
        self.instances.push(instance);
    }

    fn instance_key(&mut self, instance: &mut Instance, key: &Statement) {
        let at = key.at();
        match key.keyword.text.as_str() {
            "interface" => {}
            // vrrp_parser.c `vrrp_state_handler`: BACKUP after MASTER is ignored,
            // anything else means BACKUP.
            "state" => match first_arg(key) {
                Some("MASTER") => {
                    instance.master_at = Some(at.clone());
                    if self.join {
                        self.note(at, "state MASTER: vipd starts as backup and becomes master when no better master advertises within the master-down interval (only priority 255, the address owner, starts as master); not carried over");
                    } else {
                        self.note(at, "state MASTER: vipd starts every instance as backup and elects by priority (the highest wins, as in keepalived after start-up); not carried over");
                    }
                }
                Some("BACKUP") if instance.master_at.is_some() => self.note(
                    at,
                    "state BACKUP: keepalived ignores it after state MASTER (\"state previously set as MASTER - ignoring BACKUP\"); not carried over",
                ),
                _ => instance.master_at = None,
            },
            "virtual_router_id" => {
                let group = self.integer(key, 1, 255).and_then(|g| u8::try_from(g).ok());
                if group.is_none() {
                    // The note `integer` just made says why the instance may be skipped.
                    self.reasons.insert(self.notes.len() - 1);
                }
                instance.group = group;
            }
            // vrrp_parser.c `vrrp_prio_handler`: an invalid value is the default 100.
            "priority" => match first_arg(key).and_then(|p| p.parse::<u8>().ok()) {
                Some(KEEPALIVED_OWNER_PRIORITY) => {
                    if !self.join {
                        self.note(at, "priority 255 (keepalived's address owner) becomes 254, vipd's highest");
                    }
                    instance.base_priority = Some(KEEPALIVED_OWNER_PRIORITY);
                }
                Some(p @ 1..=254) => instance.base_priority = Some(p),
                _ => {
                    self.note(at, format!(
                        "priority {}: not 1..=255; keepalived's default {KEEPALIVED_DEFAULT_PRIORITY} is used",
                        first_arg(key).unwrap_or("")
                    ));
                    instance.base_priority = Some(KEEPALIVED_DEFAULT_PRIORITY);
                }
            },
            "advert_int" => instance.advert = Some(key.clone()),
            "nopreempt" => instance.nopreempt_at = Some(at.clone()),
            "preempt" => instance.nopreempt_at = None,
            "preempt_delay" => {
                instance.preempt_delay = self
                    .seconds(key, 0, 3_600_000)
                    .filter(|ms| *ms > 0)
                    .map(|ms| (ms, at.clone()))
            }
            "version" => match first_arg(key) {
                // vrrp_parser.c `vrrp_version_handler`: version 2 after an IPv6
                // address, or a second, different version, is ignored.
                Some("2") if instance.family == Some(Family::V6) => {}
                Some(v @ ("2" | "3")) => {
                    let v = if v == "3" { 3 } else { 2 };
                    if instance.version.is_none_or(|old| old == v) {
                        instance.version = Some(v);
                    }
                }
                _ => {}
            },
            "native_ipv6" => {
                if instance.family != Some(Family::V4) {
                    instance.family = Some(Family::V6);
                    instance.version = Some(3);
                }
                self.left_out(key);
            }
            "virtual_ipaddress" => self.vips(instance, key, false),
            "virtual_ipaddress_excluded" => self.vips(instance, key, true),
            "unicast_peer" => self.peers(instance, key),
            "unicast_src_ip" | "mcast_src_ip" => {
                let address = first_arg(key).and_then(|a| a.parse::<IpAddr>().ok());
                if let Some(address) = address {
                    instance.family.get_or_insert(Family::of(address));
                }
                if !self.join {
                    self.left_out(key);
                    return;
                }
                // vrrp_parser.c `vrrp_srcip_handler`: another family is ignored.
                match address {
                    Some(address) if instance.family == Some(Family::of(address)) => {
                        instance.source = Some(address)
                    }
                    _ => self.note(at, format!(
                        "{} {}: not an address of the instance's family, which keepalived ignores too; not carried over",
                        key.keyword.text,
                        first_arg(key).unwrap_or("")
                    )),
                }
            }
            "mcast_dst_ip" if self.join => instance.mcast_dst = first_arg(key).map(str::to_owned),
            // parser.c `check_true_false`: no argument is true.
            "v3_checksum_as_v2" if self.join => {
                instance.checksum_as_v2 = !matches!(first_arg(key), Some("false" | "off" | "no"))
            }
            "check_unicast_src" if self.join => {
                self.note(at, format!("check_unicast_src: {CHECK_UNICAST_SRC}"))
            }
            "unicast_ttl" if self.join => {
                if first_arg(key) != Some("255") {
                    self.note(at, format!(
                        "unicast_ttl {}: keepalived sends its unicast adverts with that TTL, and vipd takes adverts with TTL 255 only, so it would not hear them: set 255 (the default) on the keepalived nodes",
                        first_arg(key).unwrap_or("")
                    ));
                }
            }
            "old_unicast_checksum" if self.join => self.note(at, "old_unicast_checksum: keepalived then forms unicast VRRPv3 checksums with 224.0.0.18 as the destination, which vipd neither sends nor takes (it takes the pseudo-header and message-only forms): remove it from the keepalived nodes"),
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
            // An invalid value leaves the global or default in place, as in keepalived.
            "garp_master_repeat" => {
                if let Some(repeat) = self.garp_repeat(key) {
                    instance.announce_count = Some(repeat);
                }
            }
            "garp_master_delay" => {
                if let Some(ms) = self.whole_seconds(key, 3600) {
                    instance.announce_repeat_after_ms = Some(ms);
                }
            }
            "garp_master_refresh" => {
                if let Some(ms) = self.garp_refresh(key) {
                    instance.announce_refresh_ms = Some(ms);
                }
            }
            k if IGNORED_QUIETLY.contains(&k) => {}
            _ => self.left_out(key),
        }
    }

    /// What keepalived settles once the instance is read (vrrp.c
    /// `vrrp_complete_instance`): the version, the advert interval, the
    /// priority for `state MASTER`, and `nopreempt` and `preempt_delay`, which
    /// it clears where they cannot work.
    fn complete(&mut self, instance: &mut Instance, raw_name: &str) {
        let version3 = match instance.version {
            Some(version) => version == 3,
            None => instance.family == Some(Family::V6) || self.version3,
        };
        instance.version3 = version3;
        if let Some(key) = instance.advert.take() {
            instance.advert_ms = self.advert_int(&key, version3);
        }
        let priority = match (instance.base_priority, &instance.master_at) {
            (Some(priority), _) => priority,
            (None, Some(at)) => {
                let carried = if self.join {
                    "carried as is (VRRP mode takes 255)".to_owned()
                } else {
                    format!("carried as {VIPD_MAX_PRIORITY}, vipd's highest")
                };
                self.note(at, format!(
                    "state MASTER with no priority: keepalived runs it at {KEEPALIVED_OWNER_PRIORITY}, the address owner; {carried}"
                ));
                KEEPALIVED_OWNER_PRIORITY
            }
            (None, None) => KEEPALIVED_DEFAULT_PRIORITY,
        };
        instance.priority = Some(if self.join {
            priority
        } else {
            priority.min(VIPD_MAX_PRIORITY)
        });
        if priority == KEEPALIVED_OWNER_PRIORITY {
            if let Some(at) = instance.nopreempt_at.take() {
                self.note(&at, format!(
                    "nopreempt: keepalived clears it at priority 255 (it logs \"({raw_name}) nopreempt is incompatible with priority 255. resetting nopreempt\"), so this node preempts; not carried over"
                ));
            }
        }
        if instance.master_at.is_some() {
            if let Some(at) = instance.nopreempt_at.take() {
                self.note(&at, format!(
                    "nopreempt: keepalived 2.x clears it for state MASTER (it logs \"({raw_name}) Warning - nopreempt will not work with initial state MASTER - clearing\"), so this node preempts, as it did under keepalived; not carried over"
                ));
            }
            if let Some((_, at)) = instance.preempt_delay.take() {
                self.note(&at, format!(
                    "preempt_delay: keepalived clears it for state MASTER (\"({raw_name}) Warning - preempt delay will not work with initial state MASTER - clearing\"); not carried over"
                ));
            }
        }
        if instance.nopreempt_at.is_some() {
            if let Some((_, at)) = instance.preempt_delay.take() {
                self.note(&at, format!(
                    "preempt_delay: keepalived resets it with nopreempt (\"({raw_name}) preempt_delay is incompatible with nopreempt mode - resetting\"); not carried over"
                ));
            }
        }
        instance.preempt = instance.nopreempt_at.is_some().then_some(false);
        instance.preempt_delay_ms = instance.preempt_delay.as_ref().map(|(ms, _)| *ms);
        if self.join {
            self.join_complete(instance, raw_name);
        }
    }

    /// What joining keepalived's instance takes, once its version and family
    /// are settled: the protocol, the password (vrrp.c `vrrp_complete_instance`
    /// drops it where keepalived does not use it), the checksum form, the
    /// source address; and whether vipd can join at all.
    fn join_complete(&mut self, instance: &mut Instance, raw_name: &str) {
        let ipv6 = instance.family == Some(Family::V6);
        if ipv6 && !instance.version3 {
            instance.refusal = Some(
                "cannot be joined: it runs VRRPv2 with IPv6 addresses (version 2 given before them), and vipd's VRRP mode carries IPv6 with VRRPv3 only".to_owned(),
            );
            return;
        }
        instance.protocol = Some(if instance.version3 { "vrrp3" } else { "vrrp2" });
        if let Some(auth) = instance.keepalived_auth.take() {
            self.join_auth(instance, raw_name, auth);
        }
        if instance.version3 && !ipv6 && instance.checksum_as_v2 {
            instance.vrrp_checksum = Some("message-only");
        }
        // A multicast instance is joined only on VRRP's own group.
        if instance.peers.is_empty() {
            let (group, vrrp_group) = if ipv6 {
                (
                    instance.mcast_dst.clone().or(self.mcast_group6.clone()),
                    VRRP_GROUP6,
                )
            } else {
                (
                    instance.mcast_dst.clone().or(self.mcast_group4.clone()),
                    VRRP_GROUP4,
                )
            };
            if let Some(group) = group {
                if group.parse::<IpAddr>().ok() != vrrp_group.parse().ok() {
                    instance.refusal = Some(format!(
                        "cannot be joined: its adverts go to the multicast group {group}, and vipd's VRRP mode speaks to {vrrp_group} only"
                    ));
                }
            }
        }
    }

    /// keepalived's `authentication` as VRRP sends it: `auth_type PASS` is the
    /// first 8 bytes of `auth_pass`; AH vipd cannot speak.
    fn join_auth(&mut self, instance: &mut Instance, raw_name: &str, auth: KeepalivedAuth) {
        let ipv6 = instance.family == Some(Family::V6);
        let at = auth.at;
        let Some(auth_type) = auth.auth_type else {
            self.note(&at, "authentication without auth_type: keepalived sends no authentication; nothing to carry over");
            return;
        };
        let pass = auth.pass.map(|p| p.text).unwrap_or_default();
        match auth_type.text.as_str() {
            "PASS" | "AH" if instance.version3 => self.note(&at, format!(
                "authentication: keepalived ignores it with VRRPv3 (\"({raw_name}) VRRP version 3 does not support authentication. Ignoring.\"); not carried over"
            )),
            "PASS" | "AH" if pass.is_empty() => self.note(&at, format!(
                "authentication: no auth_pass, so keepalived ignores it (\"({raw_name}) Authentication specified but no password given. Ignoring\"); not carried over"
            )),
            "AH" if ipv6 => self.note(&at, "authentication AH: keepalived ignores it with IPv6; not carried over"),
            "AH" => {
                self.reason(&auth_type.at, "auth_type AH: keepalived authenticates this instance's adverts with IPsec AH, which vipd cannot speak; cannot join");
                instance.refusal =
                    Some("cannot be joined: it authenticates with IPsec AH".to_owned());
            }
            "PASS" if pass.len() <= VRRP_AUTH_PASS_BYTES => instance.vrrp_auth_pass = Some(pass),
            "PASS" => match pass.get(..VRRP_AUTH_PASS_BYTES) {
                Some(sent) => {
                    self.note(&at, format!(
                        "auth_pass: keepalived sends only its first {VRRP_AUTH_PASS_BYTES} bytes (\"Truncating auth_pass to {VRRP_AUTH_PASS_BYTES} characters\"); carried as {}",
                        quote(sent)
                    ));
                    instance.vrrp_auth_pass = Some(sent.to_owned());
                }
                None => {
                    self.reason(&at, format!(
                        "auth_pass: keepalived sends its first {VRRP_AUTH_PASS_BYTES} bytes, which end inside a character and cannot be written as a TOML string; cannot join"
                    ));
                    instance.refusal = Some(
                        "cannot be joined: its password cannot be written".to_owned(),
                    );
                }
            },
            other => self.note(&auth_type.at, format!(
                "auth_type {other}: keepalived does not know it (\"unknown authentication type\") and sends no authentication; nothing to carry over"
            )),
        }
    }

    /// `advert_int`, as keepalived runs it (vrrp_parser.c `vrrp_adv_handler`,
    /// vrrp.c `vrrp_complete_instance`): 0.01..=255 seconds, else the default
    /// 1s; whole seconds with VRRPv2, centiseconds with VRRPv3.
    fn advert_int(&mut self, key: &Statement, version3: bool) -> Option<u64> {
        let text = first_arg(key).unwrap_or("");
        let Some(seconds) = parse_seconds(text).filter(|s| (0.01..=255.0).contains(s)) else {
            self.note(
                key.at(),
                format!("advert_int {text}: not 0.01..=255 seconds, which keepalived ignores too; the default 1s is used"),
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
            let instead = if self.join {
                String::new()
            } else {
                format!(
                    " (vipd could do {}, with vrrp_version 3 keepalived would have)",
                    duration_text(ms.max(MIN_ADVERT_MS))
                )
            };
            self.note(key.at(), format!(
                "advert_int {text}: VRRPv2 has whole seconds, so keepalived ran with {}; carried as that{instead}",
                duration_text(rounded)
            ));
            ms = rounded;
        }
        // VRRPv2's field takes up to 255 s; VRRPv3's, and vipd's own, 40.95 s.
        let max_ms = if self.join && !version3 {
            255_000
        } else {
            MAX_ADVERT_MS
        };
        if !(MIN_ADVERT_MS..=max_ms).contains(&ms) {
            let clamped = ms.clamp(MIN_ADVERT_MS, max_ms);
            let what = if version3 {
                "VRRPv3's advert interval is at most 40.95s (keepalived clamps it so too)"
            } else {
                "vipd's advert interval is 10ms..=40.95s"
            };
            self.note(
                key.at(),
                format!(
                    "advert_int {text}: {what}; carried as {}",
                    duration_text(clamped)
                ),
            );
            ms = clamped;
        }
        Some(ms)
    }

    /// A `virtual_ipaddress` or `virtual_ipaddress_excluded` block: one address
    /// per line, with its options after it (parser.c `alloc_value_block`,
    /// vrrp_ipaddress.c `alloc_ipaddress`).
    fn vips(&mut self, instance: &mut Instance, key: &Statement, excluded: bool) {
        if excluded && self.join {
            self.note(key.at(), "virtual_ipaddress_excluded: keepalived holds these without advertising them, but vipd advertises every VIP it holds, and keepalived nodes log \"expected N VIPs but received M\" for a list that differs from theirs; not carried over (add them from a notify hook)");
        } else if excluded {
            self.note(key.at(), "virtual_ipaddress_excluded: vipd advertises every VIP; these addresses are carried into vips");
        }
        for line in key.block.iter().flatten() {
            let mut words = vec![&line.keyword];
            words.extend(line.args.iter());
            self.vip_line(instance, &words, excluded);
        }
    }

    fn vip_line(&mut self, instance: &mut Instance, words: &[&Word], excluded: bool) {
        let Some((first, options)) = words.split_first() else {
            return;
        };
        let text = first.text.as_str();
        let (address, prefix) = match parse_vip(text) {
            Ok(Vip::Valid(address, prefix)) => (address, prefix),
            Ok(Vip::BadPrefix(address, max, why)) => {
                self.note(&first.at, format!(
                    "{text}: {why}; keepalived uses /{max} (\"Invalid address prefix len\"), and so does the conversion"
                ));
                (address, max)
            }
            Err(why) => {
                self.reason(
                    &first.at,
                    format!("{text}: {why}, which keepalived skips too; not carried over"),
                );
                return;
            }
        };
        let mut other_device = None;
        let mut options = options.iter();
        while let Some(option) = options.next() {
            let name = option.text.as_str();
            match name {
                "dev" | "label" | "brd" | "broadcast" | "scope" | "preferred_lft" | "peer" => {
                    let Some(value) = options.next() else {
                        self.reason(&option.at, format!(
                            "{text}: {name} without a value; keepalived skips the address (\"No {name} parameter specified\"); not carried over"
                        ));
                        return;
                    };
                    let value = value.text.as_str();
                    let why = match name {
                        "dev" if instance.interface.as_deref() == Some(value) => continue,
                        "dev" => {
                            other_device = Some(value.to_owned());
                            continue;
                        }
                        "brd" | "broadcast" if address.is_ipv6() => {
                            self.reason(&option.at, format!(
                                "{text}: {name} on an IPv6 address, so keepalived skips the address; not carried over"
                            ));
                            return;
                        }
                        "label" => "vipd adds no address labels",
                        "peer" => "vipd adds no point-to-point peer address",
                        _ => "vipd adds VIPs with the kernel's defaults",
                    };
                    self.note(&option.at, format!("{name} {value}: {why}; not carried over"));
                }
                "no_track" | "home" | "-nodad" | "mngtmpaddr" | "noprefixroute" | "autojoin"
                | "use_vmac" => {
                    self.note(
                        &option.at,
                        format!("{name}: vipd has no such address flag; not carried over"),
                    );
                }
                _ if parse_vip(name).is_ok() => self.reason(&option.at, format!(
                    "{name}: keepalived reads one address per line and ignores the rest of the line (\"Unknown configuration entry\"), so it never held this one; not carried over (put it on a line of its own)"
                )),
                _ => self.note(&option.at, format!(
                    "{name}: keepalived ignores it (\"Unknown configuration entry '{name}' for ip address\"); not carried over"
                )),
            }
        }
        // vrrp_data.c `alloc_vrrp_vip`: the first address sets the family.
        let family = Family::of(address);
        if !excluded {
            match instance.family {
                None => instance.family = Some(family),
                Some(theirs) if theirs != family => {
                    self.reason(&first.at, format!(
                        "{text}: keepalived ignores it (\"address family must match VRRP instance\"): an instance's virtual_ipaddress are all of the family of its first address (or unicast peer or source address); not carried over (virtual_ipaddress_excluded takes either family)"
                    ));
                    return;
                }
                Some(_) => {}
            }
        }
        // vrrp_data.c `vip_is_duplicate`: a VIP may not repeat a VIP, nor an
        // excluded one on its device; an excluded one may not repeat either on
        // its device.
        let earlier = instance.held.iter().find(|held| {
            held.address == address
                && (held.other_device == other_device || (!excluded && !held.excluded))
        });
        if let Some(earlier) = earlier {
            let message = format!(
                "{text}: the same address as {} at {}; keepalived ignores this one (\"VIP duplicates a VIP\"); written once",
                earlier.text,
                line_ref(&earlier.at, &first.at)
            );
            self.reason(&first.at, message);
            return;
        }
        instance.held.push(Held {
            address,
            other_device: other_device.clone(),
            excluded,
            text: text.to_owned(),
            at: first.at.clone(),
        });
        if let Some(device) = other_device {
            let interface = instance.interface.as_deref().unwrap_or("?");
            self.reason(&first.at, format!(
                "{text} dev {device}: keepalived holds it on {device}, vipd holds an instance's VIPs on its interface ({interface}) only; not carried over (an instance on {device} can hold it)"
            ));
            return;
        }
        if excluded && self.join {
            // The block's note says why.
            return;
        }
        if let IpAddr::V6(v6) = address {
            if v6.segments()[0] & 0xffc0 == 0xfe80 {
                let why = if self.join {
                    "vipd takes no link-local VIP, so its adverts list one address fewer than keepalived's (keepalived nodes log \"expected N VIPs but received M\")"
                } else {
                    "vipd takes no link-local IPv6 VIP (its adverts are UDP; no peer needs one)"
                };
                self.reason(&first.at, format!("{text}: {why}; not carried over"));
                return;
            }
        }
        instance.vips.push(format!("{address}/{prefix}"));
    }

    /// A `unicast_peer` block: one address per line, `min_ttl`/`max_ttl` after
    /// it (vrrp_data.c `alloc_vrrp_unicast_peer`).
    fn peers(&mut self, instance: &mut Instance, key: &Statement) {
        for line in key.block.iter().flatten() {
            let word = &line.keyword;
            let Ok(address) = word.text.parse::<IpAddr>() else {
                self.note(
                    &word.at,
                    format!(
                    "unicast_peer {}: not an address, which keepalived skips too; not carried over",
                    word.text
                ),
                );
                continue;
            };
            let family = Family::of(address);
            match instance.family {
                None => instance.family = Some(family),
                Some(theirs) if theirs != family => {
                    self.note(&word.at, format!(
                        "unicast_peer {address}: keepalived skips it: peers are of the instance's address family (\"MUST be of the same family\"); not carried over"
                    ));
                    continue;
                }
                Some(_) => {}
            }
            let mut options = line.args.iter();
            while let Some(option) = options.next() {
                match option.text.as_str() {
                    name @ ("min_ttl" | "max_ttl") => {
                        let value = options.next().map_or("", |w| w.text.as_str());
                        self.note(&option.at, format!(
                            "{name} {value}: vipd accepts adverts with TTL 255 only (never routed); not carried over"
                        ));
                    }
                    other => {
                        self.note(&option.at, format!(
                            "{other}: keepalived reads one peer per line (ADDRESS [min_ttl N] [max_ttl N]) and ignores the rest of the line; not carried over"
                        ));
                        break;
                    }
                }
            }
            let text = address.to_string();
            if instance.peers.contains(&text) {
                self.note(&word.at, format!(
                    "unicast_peer {text}: listed before; keepalived ignores it too (\"duplicate unicast_peer\"); written once"
                ));
                continue;
            }
            instance.peers.push(text);
        }
    }

    /// `garp_master_repeat`: 0 is 1, as keepalived makes it.
    fn garp_repeat(&mut self, key: &Statement) -> Option<i64> {
        let text = first_arg(key).unwrap_or("");
        match text.parse::<u64>() {
            Ok(0) => Some(1),
            Ok(n @ 1..=100) => i64::try_from(n).ok(),
            Ok(_) => {
                self.note(
                    key.at(),
                    format!(
                        "{} {text}: vipd takes 1..=100; not carried over",
                        key.keyword.text
                    ),
                );
                None
            }
            Err(_) => {
                self.note(
                    key.at(),
                    format!(
                    "{} {text}: not a whole number, which keepalived ignores too; not carried over",
                    key.keyword.text
                ),
                );
                None
            }
        }
    }

    /// `garp_master_refresh`: whole seconds, 0 for none.
    fn garp_refresh(&mut self, key: &Statement) -> Option<u64> {
        self.whole_seconds(key, 86_400)
    }

    /// A whole number of seconds (as keepalived reads the garp keys) up to
    /// `max_s`, as ms.
    fn whole_seconds(&mut self, key: &Statement, max_s: u64) -> Option<u64> {
        let text = first_arg(key).unwrap_or("");
        match text.parse::<u64>() {
            Ok(s) if s <= max_s => Some(s * 1000),
            Ok(_) => {
                self.note(
                    key.at(),
                    format!(
                        "{} {text}: vipd takes 0..={}; not carried over",
                        key.keyword.text,
                        duration_text(max_s * 1000)
                    ),
                );
                None
            }
            Err(_) => {
                self.note(key.at(), format!(
                    "{} {text}: not a whole number of seconds, which keepalived ignores too; not carried over",
                    key.keyword.text
                ));
                None
            }
        }
    }

    fn authentication(&mut self, instance: &mut Instance, key: &Statement) {
        if self.join {
            // Settled with the version, in `join_complete`.
            let keys = split_keys(key.block.as_deref(), AUTH_KEYS);
            let last = |name: &str| {
                keys.iter()
                    .rev()
                    .find(|k| k.keyword.text == name)
                    .and_then(|k| k.args.first().cloned())
            };
            instance.keepalived_auth = Some(KeepalivedAuth {
                at: key.at().clone(),
                auth_type: last("auth_type"),
                pass: last("auth_pass"),
            });
            return;
        }
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
        if self.join {
            let _ = writeln!(
                out,
                "# Joins the keepalived cluster as it runs (--join): VRRP on the wire, with keepalived's VRIDs, priorities, intervals and passwords."
            );
        }
        if self.host_used {
            let _ = writeln!(
                out,
                "# For host {} (--host): its @HOST lines and, where router_id does not name it, its node name.",
                quote(&self.host)
            );
        }
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
    if let Some(protocol) = instance.protocol {
        line("protocol", quote(protocol));
        if let Some(pass) = &instance.vrrp_auth_pass {
            line("vrrp_auth_pass", quote(pass));
        }
        if let Some(checksum) = instance.vrrp_checksum {
            line("vrrp_checksum", quote(checksum));
        }
        if let Some(source) = instance.source {
            line("vrrp_source", quote(&source.to_string()));
        }
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

/// keepalived's `ADDRESS[/PREFIX]`, read as vrrp_ipaddress.c `parse_ipaddress`
/// does: a bare address is a host route.
enum Vip {
    Valid(IpAddr, u8),
    /// The address, the prefix keepalived uses instead, and why.
    BadPrefix(IpAddr, u8, String),
}

fn parse_vip(text: &str) -> Result<Vip, String> {
    let (address, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().map_err(|_| "not an address".to_owned())?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    Ok(match prefix {
        None => Vip::Valid(address, max),
        Some(p) => match p.parse::<u8>().ok().filter(|p| (1..=max).contains(p)) {
            Some(prefix) => Vip::Valid(address, prefix),
            None => Vip::BadPrefix(address, max, format!("prefix /{p} is not 1..={max}")),
        },
    })
}

fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `earlier` as seen from a note at `here`: the line alone in the same file.
fn line_ref(earlier: &Location, here: &Location) -> String {
    if earlier.file == here.file {
        format!("line {}", earlier.line)
    } else {
        earlier.to_string()
    }
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

    /// The conversion of `text` for `host`, as TOML and report lines.
    fn convert_for(host: &str, text: &str) -> (String, Vec<String>) {
        convert_with(host, false, text)
    }

    /// The same with `--join`.
    fn convert_join(text: &str) -> (String, Vec<String>) {
        convert_with("lb1", true, text)
    }

    fn convert_with(host: &str, join: bool, text: &str) -> (String, Vec<String>) {
        let path = Path::new("k.conf");
        let parsed = crate::import::parse::parse_text(path, text, host).unwrap();
        let options = Options {
            host: host.to_owned(),
            join,
        };
        let conversion = convert(path, parsed, &options);
        let notes = conversion.notes.iter().map(ToString::to_string).collect();
        (conversion.toml, notes)
    }

    fn has_note(notes: &[String], line: usize, text: &str) -> bool {
        let prefix = format!("k.conf:{line}: ");
        notes
            .iter()
            .any(|n| n.starts_with(&prefix) && n.contains(text))
    }

    /// An instance around `body`, on eth0 with VRID 51 and VIP 10.0.0.5/24
    /// unless `body` says otherwise; `body` starts at line 3.
    fn instance(body: &str) -> String {
        let mut text = String::from("global_defs { router_id lb1 }\nvrrp_instance VI_1 {\n");
        text.push_str(body);
        if !body.contains("interface") {
            text.push_str(" interface eth0\n");
        }
        if !body.contains("virtual_router_id") {
            text.push_str(" virtual_router_id 51\n");
        }
        if !body.contains("virtual_ipaddress") {
            text.push_str(" virtual_ipaddress {\n  10.0.0.5/24\n }\n");
        }
        text.push_str("}\n");
        text
    }

    #[test]
    fn vips_get_keepalived_default_prefixes() {
        let valid = |text: &str| match parse_vip(text) {
            Ok(Vip::Valid(address, prefix)) => format!("{address}/{prefix}"),
            _ => panic!("{text}"),
        };
        assert_eq!(valid("10.0.0.1"), "10.0.0.1/32");
        assert_eq!(valid("10.0.0.1/24"), "10.0.0.1/24");
        assert_eq!(valid("2001:db8::1"), "2001:db8::1/128");
        assert!(matches!(
            parse_vip("10.0.0.1/33"),
            Ok(Vip::BadPrefix(_, 32, why)) if why.contains("1..=32")
        ));
        assert!(parse_vip("eth0").is_err());
    }

    #[test]
    fn nopreempt_is_cleared_for_an_initial_master_as_keepalived_does() {
        let (toml, notes) = convert_for(
            "lb1",
            &instance(" state MASTER\n priority 150\n nopreempt\n preempt_delay 30\n"),
        );
        assert!(!toml.contains("preempt"), "{toml}");
        assert!(
            has_note(
                &notes,
                5,
                "nopreempt will not work with initial state MASTER - clearing"
            ),
            "{notes:#?}"
        );
        assert!(
            has_note(
                &notes,
                6,
                "preempt delay will not work with initial state MASTER"
            ),
            "{notes:#?}"
        );
        // On the backup it stays.
        let (toml, _) = convert_for(
            "lb1",
            &instance(" state BACKUP\n priority 100\n nopreempt\n"),
        );
        assert!(toml.contains("preempt = false"), "{toml}");
        // Priority 255 clears it too; `preempt` after `nopreempt` undoes it.
        let (toml, notes) = convert_for("lb1", &instance(" priority 255\n nopreempt\n"));
        assert!(!toml.contains("preempt"), "{toml}");
        assert!(
            has_note(&notes, 4, "incompatible with priority 255"),
            "{notes:#?}"
        );
        let (toml, _) = convert_for("lb1", &instance(" nopreempt\n preempt\n"));
        assert!(!toml.contains("preempt"), "{toml}");
    }

    #[test]
    fn state_master_without_priority_is_keepalived_s_255() {
        let (toml, notes) = convert_for("lb1", &instance(" state MASTER\n"));
        assert!(toml.contains("priority = 254\n"), "{toml}");
        assert!(
            has_note(&notes, 3, "keepalived runs it at 255"),
            "{notes:#?}"
        );
        let (toml, _) = convert_for("lb1", &instance(" state BACKUP\n"));
        assert!(toml.contains("priority = 100\n"), "{toml}");
        // An invalid priority is keepalived's 100, MASTER or not.
        let (toml, _) = convert_for("lb1", &instance(" state MASTER\n priority 300\n"));
        assert!(toml.contains("priority = 100\n"), "{toml}");
    }

    #[test]
    fn conditional_lines_follow_the_host_and_say_which() {
        let text = instance(" @lb1 priority 150\n @lb2 priority 100\n @^lb1 nopreempt\n");
        let (toml, notes) = convert_for("lb2", &text);
        assert!(
            toml.contains("priority = 100\nadvert_interval = \"1s\"\npreempt = false\n"),
            "{toml}"
        );
        assert!(toml.contains("# For host \"lb2\" (--host)"), "{toml}");
        assert!(
            has_note(&notes, 3, "converted for host \"lb2\"")
                && has_note(&notes, 3, "2 applied, left out line 3 (@lb1)"),
            "{notes:#?}"
        );
        let (toml, _) = convert_for("lb1", &text);
        assert!(toml.contains("priority = 150\nadvert_interval"), "{toml}");
    }

    #[test]
    fn a_vip_listed_twice_is_written_once() {
        let (toml, notes) = convert_for(
            "lb1",
            &instance(" virtual_ipaddress {\n  10.0.0.5\n  10.0.0.6/24\n  10.0.0.5/32\n }\n virtual_ipaddress_excluded {\n  10.0.0.6/24\n }\n"),
        );
        assert!(
            toml.contains("vips = [\"10.0.0.5/32\", \"10.0.0.6/24\"]\n"),
            "{toml}"
        );
        assert!(
            has_note(&notes, 6, "the same address as 10.0.0.5 at line 4"),
            "{notes:#?}"
        );
        assert!(
            has_note(&notes, 9, "the same address as 10.0.0.6/24 at line 5"),
            "{notes:#?}"
        );
    }

    #[test]
    fn a_vip_on_another_device_is_left_out() {
        let (toml, notes) = convert_for(
            "lb1",
            &instance(" interface eth0\n virtual_ipaddress {\n  10.0.0.5/24 dev eth0\n  10.0.1.5/24 dev eth1\n }\n"),
        );
        assert!(toml.contains("vips = [\"10.0.0.5/24\"]\n"), "{toml}");
        assert!(
            has_note(&notes, 6, "keepalived holds it on eth1"),
            "{notes:#?}"
        );
    }

    #[test]
    fn vips_are_one_per_line_and_of_the_first_one_s_family() {
        let (toml, notes) = convert_for(
            "lb1",
            &instance(" virtual_ipaddress {\n  10.0.0.5/24 10.0.0.6/24\n  2001:db8::5/64\n }\n"),
        );
        assert!(toml.contains("vips = [\"10.0.0.5/24\"]\n"), "{toml}");
        assert!(has_note(&notes, 4, "one address per line"), "{notes:#?}");
        assert!(
            has_note(&notes, 5, "address family must match"),
            "{notes:#?}"
        );
    }

    #[test]
    fn node_names_come_from_router_id_or_the_host() {
        let (toml, notes) = convert_for("lb2", &instance(""));
        assert!(toml.contains("[node]\nname = \"lb1\"\n"), "{toml}");
        assert!(
            has_note(&notes, 1, "node names must differ between nodes"),
            "{notes:#?}"
        );
        let packaged = instance("").replace("router_id lb1", "router_id LVS_DEVEL");
        let (toml, notes) = convert_for("lb2", &packaged);
        assert!(toml.contains("[node]\nname = \"lb2\"\n"), "{toml}");
        assert!(
            has_note(&notes, 1, "router_id LVS_DEVEL: the packaged default"),
            "{notes:#?}"
        );
        let missing = instance("").replace("global_defs { router_id lb1 }", "global_defs { }");
        let (toml, notes) = convert_for("lb2", &missing);
        assert!(toml.contains("[node]\nname = \"lb2\"\n"), "{toml}");
        assert!(
            has_note(&notes, 1, "no router_id (keepalived uses the hostname)"),
            "{notes:#?}"
        );
    }

    #[test]
    fn global_garp_settings_reach_the_instances_after_them() {
        let text = "vrrp_instance early {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n\
                    global_defs {\n router_id lb1\n vrrp_garp_master_delay 2\n vrrp_garp_master_repeat 3\n \
                    vrrp_garp_master_refresh 60\n vrrp_garp_master_refresh_repeat 2\n}\n\
                    vrrp_instance late {\n interface eth0\n virtual_router_id 2\n garp_master_repeat 1\n \
                    virtual_ipaddress {\n  10.0.0.2\n }\n}\n";
        let (toml, notes) = convert_for("lb1", text);
        let late = &toml[toml.find("name = \"late\"").unwrap()..];
        assert!(
            late.contains(
                "announce_count = 1\nannounce_repeat_after = \"2s\"\nannounce_refresh = \"60s\"\n"
            ),
            "{toml}"
        );
        let early =
            &toml[toml.find("name = \"early\"").unwrap()..toml.find("name = \"late\"").unwrap()];
        assert!(!early.contains("announce"), "{toml}");
        assert!(
            has_note(&notes, 10, "the 1 vrrp_instance(s) above it keep their own"),
            "{notes:#?}"
        );
        assert!(
            has_note(
                &notes,
                13,
                "vrrp_garp_master_refresh_repeat: vipd's refresh sends one"
            ),
            "{notes:#?}"
        );
    }

    #[test]
    fn a_skipped_instance_gets_no_advice_only_its_reasons() {
        let (toml, notes) = convert_for(
            "lb1",
            &instance(
                " state MASTER\n authentication {\n  auth_type PASS\n  auth_pass secret\n }\n \
                        notify /bin/notify\n virtual_ipaddress {\n  10.0.0.5/24 dev eth1\n }\n",
            ),
        );
        assert!(!toml.contains("[[instance]]"), "{toml}");
        assert!(
            notes.iter().all(|n| !n.contains("keygen")
                && !n.contains("notify")
                && !n.contains("state MASTER")),
            "{notes:#?}"
        );
        assert!(
            has_note(&notes, 10, "keepalived holds it on eth1"),
            "{notes:#?}"
        );
        assert!(
            has_note(&notes, 2, "the instance is not converted"),
            "{notes:#?}"
        );
    }

    #[test]
    fn join_speaks_keepalived_s_vrrp_with_its_priority_and_password() {
        let (toml, notes) = convert_join(&instance(
            " priority 255\n advert_int 2\n authentication {\n  auth_type PASS\n  auth_pass 123456789\n }\n",
        ));
        assert!(
            toml.contains("priority = 255\nadvert_interval = \"2s\"\nvips = [\"10.0.0.5/24\"]\nprotocol = \"vrrp2\"\nvrrp_auth_pass = \"12345678\"\nauth = \"none\"\n"),
            "{toml}"
        );
        assert!(has_note(&notes, 5, "carried as \"12345678\""), "{notes:#?}");
        assert!(
            notes
                .iter()
                .all(|n| !n.contains("254") && !n.contains("keygen")),
            "{notes:#?}"
        );
        // VRRPv3: no password (keepalived drops it), v2 checksums if asked.
        let (toml, notes) = convert_join(&instance(
            " version 3\n v3_checksum_as_v2\n advert_int 0.5\n authentication {\n  auth_type PASS\n  auth_pass x\n }\n",
        ));
        assert!(
            toml.contains(
                "protocol = \"vrrp3\"\nvrrp_checksum = \"message-only\"\nauth = \"none\"\n"
            ),
            "{toml}"
        );
        assert!(toml.contains("advert_interval = \"500ms\"\n"), "{toml}");
        assert!(
            has_note(&notes, 6, "does not support authentication"),
            "{notes:#?}"
        );
        // IPv6 is VRRPv3 without asking; the source address is carried.
        let (toml, _) = convert_join(&instance(
            " unicast_src_ip 2001:db8::11\n unicast_peer {\n  2001:db8::12\n }\n virtual_ipaddress {\n  2001:db8::5/64\n }\n",
        ));
        assert!(
            toml.contains("peers = [\"2001:db8::12\"]\nprotocol = \"vrrp3\"\nvrrp_source = \"2001:db8::11\"\n"),
            "{toml}"
        );
    }

    #[test]
    fn join_refuses_what_vipd_cannot_speak() {
        let (toml, notes) = convert_join(&instance(
            " authentication {\n  auth_type AH\n  auth_pass secret\n }\n",
        ));
        assert!(!toml.contains("[[instance]]"), "{toml}");
        assert!(
            has_note(&notes, 4, "IPsec AH, which vipd cannot speak"),
            "{notes:#?}"
        );
        assert!(
            has_note(
                &notes,
                2,
                "cannot be joined: it authenticates with IPsec AH"
            ),
            "{notes:#?}"
        );
        let (toml, notes) = convert_join(&instance(" mcast_dst_ip 224.0.0.19\n"));
        assert!(!toml.contains("[[instance]]"), "{toml}");
        assert!(
            has_note(&notes, 2, "multicast group 224.0.0.19"),
            "{notes:#?}"
        );
        // Unicast instances do not use the group.
        let (toml, _) = convert_join(&instance(
            " mcast_dst_ip 224.0.0.19\n unicast_peer {\n  10.0.0.2\n }\n",
        ));
        assert!(toml.contains("[[instance]]"), "{toml}");
    }

    #[test]
    fn join_leaves_the_unadvertised_excluded_addresses_out() {
        let (toml, notes) = convert_join(&instance(
            " virtual_ipaddress {\n  10.0.0.5/24\n }\n virtual_ipaddress_excluded {\n  10.0.0.6/24\n  2001:db8::6/64\n }\n",
        ));
        assert!(toml.contains("vips = [\"10.0.0.5/24\"]\n"), "{toml}");
        assert!(
            has_note(&notes, 6, "keepalived holds these without advertising them"),
            "{notes:#?}"
        );
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
        let options = Options {
            host: "lb1".to_owned(),
            join: false,
        };
        let conversion = crate::import::convert_file(&file, &options).unwrap();
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
