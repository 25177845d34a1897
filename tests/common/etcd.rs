//! etcd for the lab: [`EtcdCluster`], three etcd 3.4 members (`/usr/bin/etcd`
//! from Debian's etcd-server), each in a namespace of its own on the lab's
//! bridge at host parts `.11`, `.12`, `.13`, so that members, vipd nodes and the
//! client share one L2 segment and one subnet; what a test does to it (kill a
//! member and restart it on the same data, stop and start them all, read the
//! leader, read a key) and to a node's view of it ([`EtcdCluster::partition`]:
//! nftables in the node's namespace dropping its traffic to and from every
//! member). [`KeyWatch`] records, with arrival times, every change of one key
//! as a watcher sees it (v3: `etcdctl watch`; v2: a long poll with `wait=true`).
//!
//! Members run with a 100 ms heartbeat and a 1000 ms election timeout (etcd's
//! defaults) and, if asked, the v2 API (`--enable-v2`: vip-manager 1.0 and
//! Patroni's `etcd:` DCS speak only v2). `etcdctl` runs inside a member's
//! namespace. Data directories live in a temporary directory removed on drop;
//! drop SIGKILLs every member and deletes their namespaces, and prints the tail
//! of each member's log if the test is failing.

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{lab_host, wait_until, Host, Lab, Netns};

/// The etcd server binary Debian's `etcd-server` package installs.
pub(crate) const ETCD: &str = "/usr/bin/etcd";
/// Its client (`etcd-client`).
pub(crate) const ETCDCTL: &str = "/usr/bin/etcdctl";

/// The host part of member `i` (0-based) in the lab's subnet.
const FIRST_MEMBER_HOST_PART: u32 = 11;

/// One etcd member: its namespace on the lab's bridge and, while it runs, its
/// process.
pub(crate) struct EtcdMember {
    /// `e1`, `e2`, `e3`: the member's name in the cluster and its host's role.
    pub(crate) name: String,
    pub(crate) host: Host,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

impl EtcdMember {
    /// `http://IP:2379`.
    pub(crate) fn client_url(&self) -> String {
        format!("http://{}:2379", self.host.v4)
    }

    fn peer_url(&self) -> String {
        format!("http://{}:2380", self.host.v4)
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three etcd members on a lab's bridge. See the module documentation.
pub(crate) struct EtcdCluster {
    pub(crate) members: Vec<EtcdMember>,
    dir: PathBuf,
    token: String,
    enable_v2: bool,
}

impl EtcdCluster {
    /// Starts three members on `lab`'s bridge and waits until every one of them
    /// answers healthy. `enable_v2`: also serve the v2 API.
    pub(crate) fn start(lab: &Lab, enable_v2: bool) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let token = format!("vt-{}-{}-{n}", lab.tag, std::process::id());
        let dir = std::env::temp_dir().join(&token);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating etcd's directory");
        let members = (0..3u32)
            .map(|i| {
                let name = format!("e{}", i + 1);
                EtcdMember {
                    host: lab_host(lab, &name, FIRST_MEMBER_HOST_PART + i),
                    data_dir: dir.join(format!("{name}.data")),
                    log_path: dir.join(format!("{name}.log")),
                    name,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Self {
            members,
            dir,
            token,
            enable_v2,
        };
        cluster.start_all();
        cluster
    }

    /// The client URLs of every member, `http://IP:2379`.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::client_url).collect()
    }

    /// [`EtcdCluster::endpoints`] joined with commas, as etcdctl and
    /// vip-manager take them.
    pub(crate) fn endpoints_csv(&self) -> String {
        self.endpoints().join(",")
    }

    /// The members' IPv4 addresses.
    pub(crate) fn addresses(&self) -> Vec<String> {
        self.members.iter().map(|m| m.host.v4.clone()).collect()
    }

    fn spawn(&mut self, i: usize) {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let (token, enable_v2) = (self.token.clone(), self.enable_v2);
        let m = &mut self.members[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log_path)
            .expect("opening an etcd log");
        let _ = writeln!(&log, "----- test: starting {} -----", m.name);
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &m.host.ns.name, ETCD, "--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args([
                "--listen-peer-urls",
                &m.peer_url(),
                "--initial-advertise-peer-urls",
                &m.peer_url(),
                "--listen-client-urls",
                &format!("{},http://127.0.0.1:2379", m.client_url()),
                "--advertise-client-urls",
                &m.client_url(),
                // Read only on the first start; a restart on the same data
                // dir rejoins with the membership stored there.
                "--initial-cluster",
                &initial_cluster,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                &token,
                "--heartbeat-interval",
                "100",
                "--election-timeout",
                "1000",
            ]);
        if enable_v2 {
            command.arg("--enable-v2");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup etcd log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting etcd {}: {e}", m.name));
        m.child = Some(child);
    }

    /// Starts every member that is not running and waits until all are healthy.
    pub(crate) fn start_all(&mut self) {
        for i in 0..self.members.len() {
            if !self.members[i].is_running() {
                self.spawn(i);
            }
        }
        self.wait_healthy(Duration::from_secs(30));
    }

    /// SIGKILLs every member.
    pub(crate) fn stop_all(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }

    /// SIGKILLs member `i` (0-based); its data stays.
    pub(crate) fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again on its data directory and waits until every
    /// running member is healthy.
    pub(crate) fn restart(&mut self, i: usize) {
        self.members[i].kill();
        self.spawn(i);
        self.wait_healthy(Duration::from_secs(30));
    }

    /// Waits until `etcdctl endpoint health` passes for every running member.
    pub(crate) fn wait_healthy(&mut self, deadline: Duration) -> Duration {
        let endpoints = self.running_endpoints();
        wait_until("the etcd members are healthy", deadline, || {
            self.etcdctl(&endpoints, &["endpoint", "health"])
                .status
                .success()
        })
    }

    fn running_endpoints(&mut self) -> Vec<String> {
        self.members
            .iter_mut()
            .filter_map(|m| m.is_running().then(|| m.client_url()))
            .collect()
    }

    /// `etcdctl --endpoints E ARGS` (v3 API) in the namespace of the first
    /// running member (or the first one), whatever the outcome.
    pub(crate) fn etcdctl(&mut self, endpoints: &[String], args: &[&str]) -> Output {
        let ns = self
            .members
            .iter_mut()
            .find_map(|m| m.is_running().then(|| m.host.ns.name.clone()))
            .unwrap_or_else(|| self.members[0].host.ns.name.clone());
        let endpoints = format!("--endpoints={}", endpoints.join(","));
        let mut full = vec![
            "netns",
            "exec",
            &ns,
            ETCDCTL,
            &endpoints,
            "--dial-timeout=1s",
            "--command-timeout=3s",
        ];
        full.extend_from_slice(args);
        let mut command = Command::new("ip");
        command.args(&full).env("ETCDCTL_API", "3");
        command
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running etcdctl: {e}"))
    }

    /// The index (0-based) of the member that leads, as the running members
    /// report it (`etcdctl endpoint status -w json`), if one does.
    pub(crate) fn leader(&mut self) -> Option<usize> {
        let endpoints = self.running_endpoints();
        let out = self.etcdctl(&endpoints, &["endpoint", "status", "-w", "json"]);
        let statuses: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let statuses = statuses.as_array()?;
        let leader_id = statuses
            .iter()
            .find_map(|s| s["Status"]["leader"].as_u64().filter(|&id| id != 0))?;
        let endpoint = statuses
            .iter()
            .find(|s| s["Status"]["header"]["member_id"].as_u64() == Some(leader_id))?["Endpoint"]
            .as_str()?
            .to_owned();
        self.members
            .iter()
            .position(|m| m.client_url() == endpoint || m.client_url().ends_with(&endpoint))
    }

    /// The value of `key` through the v3 API, if it exists.
    pub(crate) fn get_v3(&mut self, key: &str) -> Option<String> {
        let endpoints = self.running_endpoints();
        let out = self.etcdctl(&endpoints, &["get", "--print-value-only", key]);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    }

    /// The value of `key` through the v2 API, if it exists.
    pub(crate) fn get_v2(&mut self, key: &str) -> Option<String> {
        let addr = self.members.iter_mut().find_map(|m| {
            m.is_running()
                .then(|| (m.host.ns.name.clone(), m.host.v4.clone()))
        })?;
        let (ns, ip, key) = (addr.0, addr.1, key.to_owned());
        let body = in_netns(&ns, move || {
            http(
                &format!("{ip}:2379"),
                "GET",
                &format!("/v2/keys{key}"),
                None,
                Duration::from_secs(3),
            )
        })
        .ok()?;
        let json: serde_json::Value = serde_json::from_str(&body.1).ok()?;
        json["node"]["value"].as_str().map(str::to_owned)
    }

    /// Drops, inside `node`'s namespace, every packet to and from each member
    /// (nftables table `vipd_test_etcd`); the node still reaches the other
    /// nodes and the client.
    pub(crate) fn partition(&self, node: &Netns) {
        let members = self.addresses().join(", ");
        node.nft(&format!(
            "table inet vipd_test_etcd {{\n\
             \tchain input {{\n\t\ttype filter hook input priority 0; policy accept;\n\t\tip saddr {{ {members} }} drop\n\t}}\n\
             \tchain output {{\n\t\ttype filter hook output priority 0; policy accept;\n\t\tip daddr {{ {members} }} drop\n\t}}\n\
             }}\n"
        ));
    }

    /// Removes what [`EtcdCluster::partition`] loaded in `node`'s namespace.
    pub(crate) fn heal(&self, node: &Netns) {
        node.nft("delete table inet vipd_test_etcd\n");
    }

    /// Cuts member `i` off from the other members (nftables table
    /// `vipd_test_etcd` in its namespace: their peer traffic dropped both
    /// ways); it still answers clients, but has no leader and no news.
    pub(crate) fn isolate_member(&self, i: usize) {
        let peers: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != i)
            .map(|(_, m)| m.host.v4.to_string())
            .collect();
        let peers = peers.join(", ");
        self.members[i].host.ns.nft(&format!(
            "table inet vipd_test_etcd {{\n\
             \tchain input {{\n\t\ttype filter hook input priority 0; policy accept;\n\t\tip saddr {{ {peers} }} drop\n\t}}\n\
             \tchain output {{\n\t\ttype filter hook output priority 0; policy accept;\n\t\tip daddr {{ {peers} }} drop\n\t}}\n\
             }}\n"
        ));
    }

    /// Removes what [`EtcdCluster::isolate_member`] loaded.
    pub(crate) fn rejoin_member(&self, i: usize) {
        self.members[i]
            .host
            .ns
            .nft("delete table inet vipd_test_etcd\n");
    }

    /// The last `lines` lines of member `i`'s log.
    pub(crate) fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = fs::read_to_string(&self.members[i].log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop_all();
        if thread::panicking() {
            for i in 0..self.members.len() {
                eprintln!(
                    "===== tail of etcd {}'s log =====\n{}",
                    self.members[i].name,
                    self.log_tail(i, 30)
                );
            }
        }
        // The members' namespaces go with `members`; the data with `dir`.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Runs `f` on a thread of its own inside namespace `ns` and returns what it
/// returned: for a socket the test opens in a lab namespace.
pub(crate) fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    thread::spawn(move || {
        Netns::enter(&ns).unwrap_or_else(|e| panic!("entering {ns}: {e}"));
        f()
    })
    .join()
    .expect("a thread in a lab namespace")
}

/// One HTTP/1.0 request to `addr` (`IP:PORT`) from the calling thread's
/// namespace: the status code and the body.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let sock: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((code, body))
}

/// Which etcd API a [`KeyWatch`] watches through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EtcdApi {
    V2,
    V3,
}

/// One change of a watched key.
#[derive(Clone, Debug)]
pub(crate) struct KeyEvent {
    pub(crate) at: Instant,
    /// v3: `PUT` or `DELETE`; v2: the action (`set`, `compareAndSwap`,
    /// `expire`, `delete`, `compareAndDelete`, `create`, `update`).
    pub(crate) action: String,
    /// The new value; `None` once the key is gone.
    pub(crate) value: Option<String>,
}

/// Every change of one key, timestamped as the watcher receives it, from a
/// namespace on the lab's bridge. Stopped on drop.
pub(crate) struct KeyWatch {
    events: Arc<Mutex<Vec<KeyEvent>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    child: Option<Child>,
}

impl KeyWatch {
    /// Watches `key` through `api` from namespace `ns`, with `endpoints`
    /// (`http://IP:2379`). Returns once the watch is in place.
    pub(crate) fn start(ns: &Netns, endpoints: &[String], key: &str, api: EtcdApi) -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        match api {
            EtcdApi::V3 => {
                let mut child = Command::new("ip")
                    .args(["netns", "exec", &ns.name, ETCDCTL])
                    .arg(format!("--endpoints={}", endpoints.join(",")))
                    .args(["watch", key])
                    .env("ETCDCTL_API", "3")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("etcdctl watch");
                let stdout = child.stdout.take().expect("piped stdout");
                let e = Arc::clone(&events);
                // `etcdctl watch` prints three lines per event: PUT or
                // DELETE, the key, the value (empty for DELETE).
                let handle = thread::spawn(move || {
                    let mut lines = BufReader::new(stdout).lines();
                    while let Some(Ok(action)) = lines.next() {
                        let at = Instant::now();
                        let (Some(Ok(_key)), Some(Ok(value))) = (lines.next(), lines.next()) else {
                            break;
                        };
                        let value = (action == "PUT").then_some(value);
                        e.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(KeyEvent { at, action, value });
                    }
                });
                // etcdctl prints nothing once it watches: give it its connect.
                thread::sleep(Duration::from_millis(300));
                Self {
                    events,
                    stop,
                    handle: Some(handle),
                    child: Some(child),
                }
            }
            EtcdApi::V2 => {
                let (e, s) = (Arc::clone(&events), Arc::clone(&stop));
                let (ns, key) = (ns.name.clone(), key.to_owned());
                let addrs: Vec<String> = endpoints
                    .iter()
                    .map(|u| u.trim_start_matches("http://").to_owned())
                    .collect();
                let (ready_tx, ready_rx) = std::sync::mpsc::channel();
                let handle = thread::spawn(move || {
                    Netns::enter(&ns).unwrap_or_else(|err| panic!("entering {ns}: {err}"));
                    watch_v2(&addrs, &key, &e, &s, &ready_tx);
                });
                ready_rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("the v2 watch reached etcd");
                Self {
                    events,
                    stop,
                    handle: Some(handle),
                    child: None,
                }
            }
        }
    }

    /// Every event so far.
    pub(crate) fn events(&self) -> Vec<KeyEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The first event at or after `after` that leaves the key at a value
    /// other than `old` (a new holder, or the key gone when `old` is some).
    pub(crate) fn first_change(&self, old: Option<&str>, after: Instant) -> Option<KeyEvent> {
        self.events()
            .into_iter()
            .find(|e| e.at >= after && e.value.as_deref() != old)
    }

    /// The first event at or after `after` that sets the key to `value`.
    pub(crate) fn first_set_to(&self, value: &str, after: Instant) -> Option<KeyEvent> {
        self.events()
            .into_iter()
            .find(|e| e.at >= after && e.value.as_deref() == Some(value))
    }

    /// Waits up to `timeout` for [`KeyWatch::first_set_to`].
    pub(crate) fn wait_set_to(&self, value: &str, after: Instant, timeout: Duration) -> KeyEvent {
        let mut found = None;
        wait_until(
            &format!("the watched key is set to {value}"),
            timeout,
            || {
                found = self.first_set_to(value, after);
                found.is_some()
            },
        );
        found.expect("found above")
    }
}

impl Drop for KeyWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The v2 long poll: `GET /v2/keys/KEY?wait=true&waitIndex=N`, N one past
/// the last index seen, over each endpoint in turn when one fails. A poll
/// that times out (every 500 ms, to notice `stop`) is asked again with the
/// same index: etcd keeps the last 1000 events.
fn watch_v2(
    addrs: &[String],
    key: &str,
    events: &Mutex<Vec<KeyEvent>>,
    stop: &AtomicBool,
    ready: &std::sync::mpsc::Sender<()>,
) {
    let mut next_index: Option<u64> = None;
    let mut which = 0;
    while !stop.load(Ordering::Relaxed) {
        let addr = &addrs[which % addrs.len()];
        let Some(index) = next_index else {
            // The current index: X-Etcd-Index of a plain GET (the key may
            // not exist yet).
            match index_of(addr, key) {
                Some(i) => {
                    next_index = Some(i + 1);
                    let _ = ready.send(());
                }
                None => {
                    which += 1;
                    thread::sleep(Duration::from_millis(50));
                }
            }
            continue;
        };
        let path = format!("/v2/keys{key}?wait=true&waitIndex={index}");
        match http(addr, "GET", &path, None, Duration::from_millis(500)) {
            Ok((200, body)) => {
                let at = Instant::now();
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else {
                    continue;
                };
                let action = json["action"].as_str().unwrap_or("").to_owned();
                let value = json["node"]["value"].as_str().map(str::to_owned);
                if let Some(modified) = json["node"]["modifiedIndex"].as_u64() {
                    next_index = Some(modified + 1);
                }
                events
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(KeyEvent { at, action, value });
            }
            // The index fell out of etcd's history: start over from now.
            Ok((400, _)) => next_index = None,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                which += 1;
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The store's current index, as a GET of `key` reports it in `X-Etcd-Index`.
fn index_of(addr: &str, key: &str) -> Option<u64> {
    let sock: SocketAddr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET /v2/keys{key} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("X-Etcd-Index")
            .then(|| value.trim().parse().ok())?
    })
}
