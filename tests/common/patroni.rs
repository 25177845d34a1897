//! Patroni for the lab: [`PatroniCluster`], Patroni 3.0 (Debian's `patroni`)
//! managing PostgreSQL 15 in node namespaces, one member per node named after
//! the node (`n1`, `n2`), its DCS the lab's [`EtcdCluster`] through the v2 API
//! (`etcd:`, [`Dcs::Etcd`]) or v3 (`etcd3:`, [`Dcs::Etcd3`]), under a scope of
//! the test's own; what a test does to it (a switchover through the REST API,
//! a crash of the leader: its Patroni and every PostgreSQL process SIGKILLed)
//! and reads from it (the leader, from the REST API; the leader key's changes,
//! through a [`KeyWatch`]). [`VipManager`]: vip-manager 1.0 in a node's
//! namespace, following the same leader key through etcd's v2 API.
//!
//! Patroni runs as `postgres`, in the foreground, with its configuration,
//! data directory, socket directory and log in a temporary directory per
//! member. Its timing is shortened for the tests: `ttl` 10 s, `loop_wait`
//! 1 s, `retry_timeout` 4 s (Patroni's defaults are 30, 10, 10): a leader
//! whose Patroni dies keeps the key until its TTL runs out, so a failover takes
//! up to `ttl` plus one loop. Authentication is `trust` from the lab.
//!
//! Drop SIGKILLs Patroni, stops PostgreSQL (`pg_ctl stop -m immediate`, which
//! also frees its shared memory), SIGKILLs what is left of the member's
//! processes and removes the directory, printing the log's tail if the test is
//! failing; vip-manager is SIGKILLed (the namespace, deleted afterwards, takes
//! its address).

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{
    http, in_netns, strip_prefix_len, wait_until, EtcdApi, EtcdCluster, Host, KeyWatch, Netns,
    PG_BIN,
};

/// Patroni's DCS: etcd through its v2 API (`etcd:`) or v3 (`etcd3:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dcs {
    Etcd,
    Etcd3,
}

impl Dcs {
    /// The name Patroni's configuration and vipd's `dcs` use.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::Etcd3 => "etcd3",
        }
    }

    pub(crate) fn api(self) -> EtcdApi {
        match self {
            Self::Etcd => EtcdApi::V2,
            Self::Etcd3 => EtcdApi::V3,
        }
    }
}

/// The leader key's time to live, Patroni's `ttl`, in seconds.
pub(crate) const PATRONI_TTL_S: u64 = 10;
/// Patroni's `loop_wait`, in seconds.
pub(crate) const PATRONI_LOOP_WAIT_S: u64 = 1;

/// A fresh directory owned by `postgres`: `/tmp/vt-patroni-<pid>-<n>-<label>`.
fn postgres_dir(label: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("vt-patroni-{}-{n}-{label}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("creating Patroni's directory");
    let status = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(&dir)
        .status()
        .expect("chown");
    assert!(status.success(), "chown postgres {}", dir.display());
    dir
}

/// The uid of the `postgres` user.
fn postgres_uid() -> u32 {
    nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .expect("a postgres user (postgresql-15 creates it)")
        .uid
        .as_raw()
}

/// The real uid of process `pid`, from /proc.
fn uid_of(pid: i32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One Patroni member in a node's namespace.
pub(crate) struct PatroniMember {
    /// The member's name: the node's role (`n1`, ...).
    pub(crate) name: String,
    pub(crate) ns: String,
    /// The node's address: the REST API listens on `IP:8008`.
    pub(crate) ip: String,
    dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

impl PatroniMember {
    fn config_path(&self) -> PathBuf {
        self.dir.join("patroni.yml")
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening Patroni's log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "runuser", "-u", "postgres", "--"])
            .arg("/usr/bin/patroni")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting Patroni {}: {e}", self.name));
        self.child = Some(child);
    }

    /// SIGKILLs Patroni and every PostgreSQL process of this node, all
    /// stopped first so that none sees another die: a crash of the node's
    /// database side (other processes in the namespace, vipd among them,
    /// stay).
    pub(crate) fn crash(&mut self) {
        let uid = postgres_uid();
        let mut pids: Vec<i32> = Netns::pids_in(&self.ns)
            .into_iter()
            .filter(|&p| uid_of(p) == Some(uid))
            .collect();
        if let Some(child) = &self.child {
            pids.push(child.id() as i32);
        }
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
        }
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// The last `lines` lines of Patroni's log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `GET PATH` on this member's REST API, from its namespace: the status
    /// and the body parsed as JSON (`Null` if it is not JSON).
    pub(crate) fn rest_get(&self, path: &str) -> Option<(u16, serde_json::Value)> {
        self.rest("GET", path, None)
    }

    fn rest(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Option<(u16, serde_json::Value)> {
        let (addr, method, path) = (
            format!("{}:8008", self.ip),
            method.to_owned(),
            path.to_owned(),
        );
        let answer = in_netns(&self.ns, move || {
            http(
                &addr,
                &method,
                &path,
                body.as_deref(),
                Duration::from_secs(30),
            )
        })
        .ok()?;
        let json =
            serde_json::from_str(&answer.1).unwrap_or(serde_json::Value::String(answer.1.clone()));
        Some((answer.0, json))
    }
}

impl Drop for PatroniMember {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.ns, "runuser", "-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.crash();
        if thread::panicking() {
            eprintln!(
                "===== tail of Patroni {}'s log ({}) =====\n{}",
                self.name,
                self.log_path.display(),
                self.log_tail(40)
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Patroni on some of a lab's nodes. See the module documentation.
pub(crate) struct PatroniCluster {
    pub(crate) scope: String,
    pub(crate) dcs: Dcs,
    pub(crate) members: Vec<PatroniMember>,
    endpoints: Vec<String>,
}

impl PatroniCluster {
    /// Starts Patroni on `hosts` (the first bootstraps the cluster and leads)
    /// with scope `scope` and `etcd` as its DCS through `dcs`, and waits until
    /// the first leads and every other streams from it.
    pub(crate) fn start(hosts: &[&Host], etcd: &EtcdCluster, dcs: Dcs, scope: &str) -> Self {
        let endpoints = etcd.endpoints();
        let members: Vec<PatroniMember> = hosts
            .iter()
            .map(|h| {
                let dir = postgres_dir(&h.role);
                let member = PatroniMember {
                    name: h.role.clone(),
                    ns: h.ns.name.clone(),
                    ip: h.v4.clone(),
                    log_path: dir.join("patroni.log"),
                    dir,
                    child: None,
                };
                fs::write(
                    member.config_path(),
                    patroni_config(&member, scope, dcs, &endpoints),
                )
                .expect("writing patroni.yml");
                member
            })
            .collect();
        let mut cluster = Self {
            scope: scope.to_owned(),
            dcs,
            members,
            endpoints,
        };
        cluster.members[0].spawn();
        let first = cluster.members[0].name.clone();
        wait_until(
            &format!("Patroni {first} bootstraps and leads"),
            Duration::from_secs(60),
            || cluster.leader().as_deref() == Some(first.as_str()),
        );
        for m in &mut cluster.members[1..] {
            m.spawn();
        }
        cluster.wait_streaming(&first, Duration::from_secs(90));
        cluster
    }

    /// `/service/SCOPE/leader`, the key Patroni's leader holds.
    pub(crate) fn leader_key(&self) -> String {
        format!("/service/{}/leader", self.scope)
    }

    pub(crate) fn member(&self, name: &str) -> &PatroniMember {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no Patroni member {name}"))
    }

    fn member_mut(&mut self, name: &str) -> &mut PatroniMember {
        self.members
            .iter_mut()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no Patroni member {name}"))
    }

    /// The leader as a running member's REST API reports it (`GET /cluster`).
    pub(crate) fn leader(&mut self) -> Option<String> {
        self.members.iter_mut().find_map(|m| {
            if !m
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
            {
                return None;
            }
            let (code, json) = m.rest_get("/cluster")?;
            (code == 200).then_some(())?;
            json["members"].as_array()?.iter().find_map(|x| {
                (x["role"] == "leader")
                    .then(|| x["name"].as_str().map(str::to_owned))
                    .flatten()
            })
        })
    }

    /// Waits until `leader` leads and every other member streams from it
    /// (its `GET /patroni` lists each one in `replication` as `streaming`).
    pub(crate) fn wait_streaming(&mut self, leader: &str, deadline: Duration) -> Duration {
        let others: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.name != leader)
            .map(|m| m.name.clone())
            .collect();
        let leader = leader.to_owned();
        wait_until(
            &format!("{leader} leads and {others:?} stream from it"),
            deadline,
            || {
                if self.leader().as_deref() != Some(leader.as_str()) {
                    return false;
                }
                let Some((200, status)) = self.member(&leader).rest_get("/patroni") else {
                    return false;
                };
                let streaming: Vec<&str> = status["replication"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .filter(|x| x["state"] == "streaming")
                            .filter_map(|x| x["application_name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                others.iter().all(|o| streaming.contains(&o.as_str()))
            },
        )
    }

    /// A switchover from the current leader to `candidate` (`POST
    /// /switchover` on the leader's REST API, which answers once it is done);
    /// returns the answer's text. Panics unless Patroni accepts it.
    pub(crate) fn switchover(&mut self, candidate: &str) -> String {
        let leader = self.leader().expect("a leader to switch over from");
        let body = serde_json::json!({ "leader": leader, "candidate": candidate }).to_string();
        let (code, answer) = self
            .member(&leader)
            .rest("POST", "/switchover", Some(body))
            .expect("Patroni's REST API answers");
        assert_eq!(code, 200, "switchover to {candidate}: {answer}");
        answer
            .as_str()
            .map_or_else(|| answer.to_string(), str::to_owned)
    }

    /// A crash of member `name`'s database side: see [`PatroniMember::crash`].
    pub(crate) fn crash(&mut self, name: &str) {
        self.member_mut(name).crash();
    }

    /// Starts member `name`'s Patroni again (after [`PatroniCluster::crash`]).
    pub(crate) fn restart(&mut self, name: &str) {
        let m = self.member_mut(name);
        m.crash();
        m.spawn();
    }

    /// A watch of the leader key through the DCS's API, from namespace `from`.
    pub(crate) fn watch_leader(&self, from: &Netns) -> KeyWatch {
        KeyWatch::start(from, &self.endpoints, &self.leader_key(), self.dcs.api())
    }
}

/// A member's patroni.yml.
fn patroni_config(m: &PatroniMember, scope: &str, dcs: Dcs, endpoints: &[String]) -> String {
    let hosts = endpoints
        .iter()
        .map(|e| e.trim_start_matches("http://"))
        .collect::<Vec<_>>()
        .join(",");
    let dir = m.dir.display();
    let (name, ip) = (&m.name, &m.ip);
    format!(
        "scope: {scope}
namespace: /service/
name: {name}
restapi:
  listen: {ip}:8008
  connect_address: {ip}:8008
{dcs}:
  hosts: {hosts}
  protocol: http
bootstrap:
  dcs:
    ttl: {PATRONI_TTL_S}
    loop_wait: {PATRONI_LOOP_WAIT_S}
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: false
      use_slots: false
      parameters:
        max_connections: 20
        shared_buffers: 16MB
        wal_keep_size: 64MB
  initdb:
  - encoding: UTF8
  pg_hba:
  - local all all trust
  - host all all 0.0.0.0/0 trust
  - host replication replicator 0.0.0.0/0 trust
postgresql:
  listen: 0.0.0.0:5432
  connect_address: {ip}:5432
  data_dir: {dir}/data
  bin_dir: {PG_BIN}
  pgpass: {dir}/pgpass
  authentication:
    superuser:
      username: postgres
      password: postgres
    replication:
      username: replicator
      password: replicator
  parameters:
    unix_socket_directories: '{dir}'
  pg_hba:
  - local all all trust
  - host all all 0.0.0.0/0 trust
  - host replication replicator 0.0.0.0/0 trust
",
        dcs = dcs.name()
    )
}

/// vip-manager 1.0 in a node's namespace, holding a VIP while the leader key
/// names its member. Killed on drop.
pub(crate) struct VipManager {
    child: Child,
    log_path: PathBuf,
    pub(crate) label: String,
}

impl VipManager {
    /// `vip-manager --ip IP --netmask LEN --interface eth0 --trigger-key KEY
    /// --trigger-value MEMBER --dcs-type etcd --dcs-endpoints URLS
    /// --interval MS` in `host`'s namespace; `vip` with its prefix length.
    pub(crate) fn start(
        host: &Host,
        vip: &str,
        trigger_key: &str,
        member: &str,
        endpoints: &[String],
        interval_ms: u32,
    ) -> Self {
        let (addr, len) = vip.split_once('/').expect("a VIP with its prefix length");
        let log_path = std::env::temp_dir().join(format!("{}-vip-manager.log", host.ns.name));
        let log = fs::File::create(&log_path).expect("creating vip-manager's log");
        let child = Command::new("ip")
            .args(["netns", "exec", &host.ns.name, "/usr/bin/vip-manager"])
            .args(["--ip", addr, "--netmask", len, "--interface", "eth0"])
            .args(["--trigger-key", trigger_key, "--trigger-value", member])
            .args([
                "--dcs-type",
                "etcd",
                "--dcs-endpoints",
                &endpoints.join(","),
            ])
            .args(["--interval", &interval_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("starting vip-manager");
        Self {
            child,
            log_path,
            label: format!(
                "vip-manager {member} [{}] {}",
                host.role,
                strip_prefix_len(vip)
            ),
        }
    }

    /// Its log so far.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for VipManager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("===== log of {} =====\n{}", self.label, self.log());
        }
        let _ = fs::remove_file(&self.log_path);
    }
}

/// The time from `from` to `to` in milliseconds, negative if `to` is earlier.
pub(crate) fn ms_between(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1e3
    } else {
        -((from - to).as_secs_f64() * 1e3)
    }
}
