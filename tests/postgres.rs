//! The PostgreSQL recipe (contrib/postgresql/) against Debian's postgresql-15:
//! a primary on n1 and a synchronous streaming standby on n2, each in its
//! node's namespace, vipd on both with the recipe's checks, gate and fence
//! hooks, and a client writing one row every 20 ms through the VIP on one
//! session (reconnecting through the VIP when the session is lost), as an
//! application does.
//!
//! Covered: the VIP follows the primary at start; a planned switchover
//! (`vipd drain db --wait` on the primary's node): db2's gate fences the old
//! primary and promotes the standby before the VIP reaches db2, db1 keeps the
//! VIP until then, `drain --wait` returns once db2 serves, and no
//! acknowledged write is lost; a switchover whose promotion fails is rolled
//! back, the old primary takes writes again and nothing is lost. The recipe
//! file itself is loaded, so a broken recipe fails here.
//!
//! Prints what it measured (`cargo test --release --test postgres --
//! --nocapture`): the longest time between two acknowledged writes beside
//! what the database itself took (db2's gate's `took_ms`: the fence of the
//! old primary and the promotion) plus 50 ms, and both daemons' logs from
//! the drain on.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const RECIPE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/postgresql");

/// The recipe's instance settings for a lab node: its checks, gate and hooks
/// with the scripts from contrib/, at `priority` (the recipe gives both nodes
/// the same; the primary check's weight decides).
fn recipe_instance(vip: &str, peer: &str) -> InstanceSpec {
    let gate = format!("[{:?}, {peer:?}]", format!("{RECIPE}/promote.sh"));
    recipe_instance_gated(vip, &gate)
}

/// [`recipe_instance`] with another gate (a TOML array).
fn recipe_instance_gated(vip: &str, gate: &str) -> InstanceSpec {
    let script = |name: &str| format!("{RECIPE}/{name}");
    InstanceSpec::new(100)
        .advert("1s")
        .vip(vip)
        .extra("after_crash = \"resume\"")
        .extra(&format!(
            "track_script = [{{ name = \"primary\", command = [{:?}], interval = \"1s\", timeout = \"2s\", weight = 50 }}, \
             {{ name = \"postgres-up\", command = [\"/usr/bin/pg_isready\", \"-q\", \"-h\", \"127.0.0.1\", \"-p\", \"5432\"], interval = \"1s\", timeout = \"2s\", fall = 2 }}]",
            script("is-primary.sh")
        ))
        .extra("[instance.notify]")
        .extra(&format!("before_claim = {gate}"))
        .extra(&format!("after_release = [{:?}]", script("fence.sh")))
        .extra("timeout = \"60s\"")
}

#[test]
fn the_recipe_file_loads() {
    let text = std::fs::read_to_string(format!("{RECIPE}/vipd.toml")).expect("the recipe");
    let dir = std::env::temp_dir().join(format!("vt-pgrecipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let key = dir.join("db.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").expect("key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("key mode");
    // The key file the recipe names lives on the nodes; the test's stands in.
    let text = text.replace("/etc/vipd/db.key", &key.display().to_string());
    let loaded = vipd::config::from_toml(&text, Path::new("/etc/vipd/vipd.toml"));
    let _ = std::fs::remove_dir_all(&dir);
    let config = loaded.unwrap_or_else(|e| panic!("contrib/postgresql/vipd.toml: {e:?}"));
    let db = &config.instances[0];
    assert_eq!(
        db.notify.before_claim,
        ["/etc/vipd/promote.sh", "10.0.0.12"]
    );
    assert_eq!(db.track_scripts.len(), 2);
}

#[test]
fn a_switchover_promotes_before_the_vip_moves_and_loses_no_acknowledged_write() {
    if !require_root() {
        return;
    }
    let Pair {
        lab,
        vip,
        primary,
        standby,
        mut daemons,
        writer,
    } = Pair::start("pgswitch", None);

    let from = Instant::now();
    let from_utc = unix_now();
    let drain = daemons[0].cli(&["drain", "db", "--wait"]);
    let drain_took = from.elapsed();
    assert!(drain.status.success(), "drain: {}", output_text(&drain));
    // drain --wait returns once the successor serves: promoted, VIP claimed.
    let at_return = (lab.holders(&vip), standby.sql("SELECT pg_is_in_recovery()"));
    eprintln!(
        "[pgswitch] when drain --wait returned: VIP holders {:?}, db2 in recovery: {}",
        at_return.0, at_return.1
    );
    assert!(
        at_return.0.contains(&2) && at_return.1 == "f",
        "drain --wait returned before db2 served: {at_return:?}"
    );
    wait_sole_holder(&lab, &vip, 2, Duration::from_secs(30));
    let holds_at = from.elapsed();
    wait_until("db2 is primary", Duration::from_secs(30), || {
        standby.sql("SELECT pg_is_in_recovery()") == "f"
    });
    // Writes go on through the VIP to the new primary.
    wait_until("writes reach db2", Duration::from_secs(30), || {
        standby.sql("SELECT count(*) FROM writes WHERE n > 0") != "0"
            && standby.sql("SELECT max(n) FROM writes") != primary_max(&primary)
    });
    sleep_checked(Duration::from_secs(2));
    let writes = writer.finish();

    let missing = missing_on(&standby, &writes);
    let fenced = primary.sql("SHOW default_transaction_read_only");
    // The database's own time: db2's gate fences the old primary and then
    // promotes the standby (promote.sh); db1's own fence (fence.sh, its
    // after_release hook) runs once it gave the VIP up, after db2 serves.
    let promotion = took(&daemons[1].log(), "before_claim gate passed", &[])
        .unwrap_or_else(|| panic!("n2 logged no gate:\n{}", daemons[1].log()));
    let fence = took(
        &daemons[0].log(),
        "notify hook ran",
        &["hook=after_release", "previous=master"],
    )
    .unwrap_or_else(|| panic!("n1 logged no fence:\n{}", daemons[0].log()));
    let gap = writes.longest_gap_since(from);
    let target = promotion + Duration::from_millis(50);
    // Where the gap lies: the acknowledgements on either side of it.
    let acked: Vec<Instant> = writes.acked.iter().map(|a| a.0).collect();
    let gap_ends = acked
        .windows(2)
        .filter(|w| w[1] >= from)
        .max_by_key(|w| w[1] - w[0])
        .map(|w| (w[0], w[1]));
    let after_drain = |t: Instant| {
        if t >= from {
            format!("+{:.1} ms", (t - from).as_secs_f64() * 1e3)
        } else {
            format!("-{:.1} ms", (from - t).as_secs_f64() * 1e3)
        }
    };
    eprintln!(
        "[pgswitch] vipd drain db --wait on db1 took {} ms ({}); db2 promoted and held the VIP \
         within {} ms of the drain",
        ms(drain_took),
        output_text(&drain).trim(),
        ms(holds_at)
    );
    eprintln!(
        "[pgswitch] the database's own time: db2's promotion (its before_claim gate, promote.sh) \
         {} ms; db1's own fence afterwards (after_release, fence.sh) {} ms",
        ms(promotion),
        ms(fence)
    );
    eprintln!(
        "[pgswitch] client, one INSERT every 20 ms: {} sent, {} acknowledged, {} sessions; longest \
         time between two acknowledgements {:.1} ms (target ≤ fence + promotion + 50 ms = {} ms: \
         {}); acknowledged but missing on the new primary: {}; old primary read-only: {fenced}",
        writes.sent,
        writes.acked.len(),
        writes.sessions.len(),
        gap.as_secs_f64() * 1e3,
        ms(target),
        if gap <= target { "met" } else { "MISSED" },
        missing.len()
    );
    if let Some((last, next)) = gap_ends {
        eprintln!(
            "[pgswitch] the gap: from the acknowledgement at {} to the one at {}; the daemons' \
             logs from the drain on:\n{}\n{}",
            after_drain(last),
            after_drain(next),
            log_since(&daemons[0], from_utc),
            log_since(&daemons[1], from_utc)
        );
    }
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    assert_eq!(fenced, "on", "the old primary was fenced");
    for daemon in &mut daemons {
        let status = daemon.sigterm();
        assert!(status.success(), "{} exited with {status}", daemon.label);
    }
}

/// A primary on n1, its synchronous standby on n2, vipd with the recipe on
/// both (n1 master), and a writer through the VIP with a first write
/// acknowledged.
struct Pair {
    lab: Lab,
    vip: String,
    primary: Postgres,
    standby: Postgres,
    daemons: Vec<Daemon>,
    writer: PgWriter,
}

impl Pair {
    /// `standby_gate`: n2's gate instead of the recipe's (a TOML array).
    fn start(tag: &str, standby_gate: Option<&str>) -> Self {
        let lab = Lab::new(tag, 2);
        let vip = lab.vip4(0);
        let primary = Postgres::primary(&lab.node(1).ns, "db1", &[]);
        let standby = Postgres::standby(&lab.node(2).ns, "db2", &lab.node(1).v4, &[]);
        // Synchronous once the standby is there (every commit before would wait).
        primary.sql("ALTER SYSTEM SET synchronous_standby_names = '*'");
        primary.sql("SELECT pg_reload_conf()");
        wait_until("the standby streams", Duration::from_secs(30), || {
            primary.sql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == "1"
        });
        let n2 = match standby_gate {
            Some(gate) => recipe_instance_gated(&vip, gate),
            None => recipe_instance(&vip, &lab.node(1).v4),
        };
        let daemons = start_nodes(&lab, vec![recipe_instance(&vip, &lab.node(2).v4), n2]);
        wait_sole_holder(&lab, &vip, 1, Duration::from_secs(30));
        assert_eq!(standby.sql("SELECT pg_is_in_recovery()"), "t");
        let writer = PgWriter::start_once_acknowledged(
            &lab.client.ns,
            &vip,
            Duration::from_millis(20),
            &primary,
        );
        sleep_checked(Duration::from_secs(2));
        Self {
            lab,
            vip,
            primary,
            standby,
            daemons,
            writer,
        }
    }
}

/// The acknowledged writes that `server` does not have.
fn missing_on(server: &Postgres, writes: &PgWrites) -> Vec<u32> {
    let stored: BTreeSet<u32> = server
        .sql("SELECT n FROM writes")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    writes
        .acked
        .iter()
        .map(|a| a.1)
        .filter(|n| !stored.contains(n))
        .collect()
}

/// A switchover whose promotion fails (n2's gate fails before promoting,
/// as a promotion refused by the server would): the drain is rolled back,
/// the old primary, fenced once its VIP was gone, takes writes again (the
/// recipe's gate sees the peer is still a standby), and nothing acknowledged
/// is lost.
#[test]
fn a_switchover_whose_promotion_fails_rolls_back_to_the_old_primary() {
    if !require_root() {
        return;
    }
    let gate = r#"["/bin/sh", "-c", "exit 3", "failing-promotion"]"#;
    let Pair {
        lab,
        vip,
        primary,
        standby,
        mut daemons,
        writer,
    } = Pair::start("pgroll", Some(gate));
    let from = Instant::now();
    let drain = daemons[0].cli(&["drain", "db", "--wait", "--timeout", "30s"]);
    let drain_took = from.elapsed();
    let said = output_text(&drain);
    assert_eq!(drain.status.code(), Some(1), "drain: {said}");
    assert!(said.contains("drain rolled back"), "{said}");
    wait_sole_holder(&lab, &vip, 1, Duration::from_secs(30));
    wait_until("db1 takes writes again", Duration::from_secs(30), || {
        primary.sql("SHOW default_transaction_read_only") == "off"
            && primary.sql("SELECT max(n) FROM writes") != "0"
    });
    let back_at = from.elapsed();
    sleep_checked(Duration::from_secs(2));
    let writes = writer.finish();
    let missing = missing_on(&primary, &writes);
    eprintln!(
        "[pgroll] drain --wait exited 1 after {} ms ({}); db1 took writes again {} ms after the \
         drain; client: {} sent, {} acknowledged, {} sessions, longest time between two \
         acknowledgements {:.1} ms, acknowledged but missing: {}",
        ms(drain_took),
        said.trim(),
        ms(back_at),
        writes.sent,
        writes.acked.len(),
        writes.sessions.len(),
        writes.longest_gap_since(from).as_secs_f64() * 1e3,
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    assert_eq!(standby.sql("SELECT pg_is_in_recovery()"), "t");
    let (_, status) = daemons[0].first_instance_status().expect("db1's status");
    assert_eq!(status["drained"], false, "{status:#}");
    for daemon in &mut daemons {
        let status = daemon.sigterm();
        assert!(status.success(), "{} exited with {status}", daemon.label);
    }
}

/// `daemon`'s log lines from `from` (Unix seconds) on, each with its time
/// after `from`.
fn log_since(daemon: &Daemon, from: f64) -> String {
    // vipd's text log starts each line with an RFC 3339 UTC time; its time
    // of day is enough for a run of seconds (a midnight in between wraps).
    let from_of_day = from.rem_euclid(86_400.0);
    daemon
        .log()
        .lines()
        .filter_map(|line| {
            let (stamp, rest) = line.split_once(' ')?;
            let time = stamp.split_once('T')?.1.strip_suffix('Z')?;
            let mut parts = time.split(':');
            let h: f64 = parts.next()?.parse().ok()?;
            let m: f64 = parts.next()?.parse().ok()?;
            let s: f64 = parts.next()?.parse().ok()?;
            let after = (h * 3600.0 + m * 60.0 + s - from_of_day).rem_euclid(86_400.0);
            // Lines from before `from` wrap to nearly a day.
            (after < 3600.0).then(|| {
                format!(
                    "  +{:7.1} ms {}: {}",
                    after * 1e3,
                    daemon.label,
                    rest.trim_start()
                )
            })
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `took_ms` of the last line of `log` with `message` and every one of
/// `fields` (`key=value`, as vipd's text log writes them, quotes aside).
fn took(log: &str, message: &str, fields: &[&str]) -> Option<Duration> {
    let line = log.lines().rev().find(|l| {
        let words: Vec<String> = l.split_whitespace().map(|w| w.replace('"', "")).collect();
        l.contains(message) && fields.iter().all(|f| words.iter().any(|w| w == f))
    })?;
    let ms = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("took_ms="))?
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms))
}

fn primary_max(primary: &Postgres) -> String {
    primary.sql("SELECT coalesce(max(n), 0) FROM writes")
}
