//! Real services behind the VIP, from Debian's packages, and a client that uses
//! them as their users do: [`Haproxy`] and [`Nginx`], an HAProxy 2.6 or
//! nginx 1.22 process in a node's namespace answering HTTP on a wildcard bind
//! (so it serves the VIP whenever the node holds it, and starts on a backup
//! that does not) or on one address; [`HttpClient`], a thread in the
//! client's namespace doing one HTTP GET through the VIP every period, each on
//! a new connection with a deadline, recording when each was sent, how it
//! ended and which node answered;
//! [`Postgres`], a PostgreSQL 15 server in a node's namespace, and
//! [`PgWriter`], one psql session from the client's namespace inserting a row
//! through the VIP every period and recording each acknowledgement.
//!
//! Processes are killed on drop (and with their namespace); files live in a
//! temporary directory removed on drop.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{children_of, Netns};

/// A fresh directory for one service's files: `/tmp/vt-svc-<pid>-<n>-<label>`.
fn run_dir(label: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("vt-svc-{}-{n}-{label}", std::process::id()));
    fs::create_dir_all(&dir).expect("creating a service's directory");
    dir
}

/// The HAProxy binary Debian's `haproxy` package installs.
pub(crate) const HAPROXY: &str = "/usr/sbin/haproxy";

/// The nginx binary Debian's `nginx` package installs.
pub(crate) const NGINX: &str = "/usr/sbin/nginx";

/// A service's process in a node's namespace, in the foreground (`ip netns
/// exec` execs it, so the child is the service itself), and its directory.
/// On drop: SIGTERM, so that a master process takes its workers down with it
/// (a SIGKILLed nginx master would leave them serving until the namespace
/// goes), SIGKILL after 5 s, and the directory removed.
struct ServiceProcess {
    child: Child,
    dir: PathBuf,
}

impl ServiceProcess {
    /// Spawns `command` (`ip netns exec NS PROGRAM ...`, its stderr set to
    /// `log` or closed; stdin and stdout are closed here) and waits until it
    /// listens on `port` in `ns`; if it exits first (it could not bind),
    /// returns its own messages, read from `log`.
    fn start(
        ns: &Netns,
        dir: PathBuf,
        mut command: Command,
        port: u16,
        log: &Path,
    ) -> Result<Self, String> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        let mut service = Self { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        let needle = format!(":{port} ");
        while Instant::now() < deadline {
            if let Some(status) = service.child.try_wait().expect("waiting for a service") {
                let text = fs::read_to_string(log).unwrap_or_default();
                return Err(format!("exited with {status}: {}", text.trim()));
            }
            if ns.exec(&["ss", "-Hltn"]).contains(&needle) {
                return Ok(service);
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(format!("never listened on port {port} in {}", ns.name))
    }

    /// SIGKILL, as a crash of the service.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// An HAProxy in a node's namespace, answering every GET with 200 and the
/// node's label as the body. [`Haproxy::start`] binds the port on every
/// address (`bind :PORT`), which is how a proxy on a backup starts without the
/// VIP; [`Haproxy::try_start`] binds one address, which fails on a node that
/// does not hold it unless `net.ipv4.ip_nonlocal_bind` is 1.
pub(crate) struct Haproxy(ServiceProcess);

impl Haproxy {
    /// HAProxy on `*:port`; panics unless it listens.
    pub(crate) fn start(ns: &Netns, label: &str, port: u16) -> Self {
        Self::try_start(ns, label, &format!(":{port}"), port)
            .unwrap_or_else(|e| panic!("haproxy in {}: {e}", ns.name))
    }

    /// HAProxy with `bind BIND` (e.g. `10.0.0.200:8080`, or `:8080`), once it
    /// listens on `port`; or why it did not start (its own messages).
    pub(crate) fn try_start(
        ns: &Netns,
        label: &str,
        bind: &str,
        port: u16,
    ) -> Result<Self, String> {
        let dir = run_dir(&format!("haproxy-{label}"));
        let cfg = dir.join("haproxy.cfg");
        fs::write(
            &cfg,
            format!(
                "global\n    maxconn 4000\n    pidfile {pid}\n\
                 defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
                 frontend web\n    bind {bind}\n    \
                 http-request return status 200 content-type text/plain string \"{label}\\n\"\n",
                pid = dir.join("haproxy.pid").display()
            ),
        )
        .expect("writing haproxy.cfg");
        let log = dir.join("haproxy.log");
        // -db: stay in the foreground.
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &ns.name, HAPROXY, "-db", "-f"])
            .arg(&cfg)
            .stderr(fs::File::create(&log).expect("creating haproxy.log"));
        ServiceProcess::start(ns, dir, command, port, &log).map(Self)
    }

    /// SIGKILL, as a crash of the service.
    pub(crate) fn kill(&mut self) {
        self.0.kill();
    }
}

/// An nginx in a node's namespace, workers as root (`user root;`, rather than
/// Debian's www-data, which need not exist), in the foreground (`daemon off;`)
/// with its prefix, configuration, pid file, error log and temporary
/// paths in that directory; one server answering every GET with 200 and the
/// node's label. [`Nginx::start`] listens on every address (`listen PORT;`);
/// [`Nginx::try_start`] takes the `listen` argument, e.g. the VIP's address.
pub(crate) struct Nginx(ServiceProcess);

impl Nginx {
    /// nginx on `*:port`; panics unless it listens.
    pub(crate) fn start(ns: &Netns, label: &str, port: u16) -> Self {
        Self::try_start(ns, label, &port.to_string(), port)
            .unwrap_or_else(|e| panic!("nginx in {}: {e}", ns.name))
    }

    /// nginx with `listen LISTEN;`, once it listens on `port`; or why it did
    /// not start (its own messages).
    pub(crate) fn try_start(
        ns: &Netns,
        label: &str,
        listen: &str,
        port: u16,
    ) -> Result<Self, String> {
        let dir = run_dir(&format!("nginx-{label}"));
        let d = dir.display();
        let cfg = dir.join("nginx.conf");
        let text = [
            "user root;".to_owned(),
            "worker_processes 1;".to_owned(),
            format!("pid {d}/nginx.pid;"),
            format!("error_log {d}/error.log;"),
            "events { worker_connections 1024; }".to_owned(),
            "http {".to_owned(),
            "    access_log off;".to_owned(),
            format!("    client_body_temp_path {d}/body;"),
            format!("    proxy_temp_path {d}/proxy;"),
            format!("    fastcgi_temp_path {d}/fastcgi;"),
            format!("    uwsgi_temp_path {d}/uwsgi;"),
            format!("    scgi_temp_path {d}/scgi;"),
            "    server {".to_owned(),
            format!("        listen {listen};"),
            "        default_type text/plain;".to_owned(),
            format!("        location / {{ return 200 \"{label}\\n\"; }}"),
            "    }".to_owned(),
            "}".to_owned(),
        ]
        .join("\n");
        fs::write(&cfg, text + "\n").expect("writing nginx.conf");
        let log = dir.join("error.log");
        // -e: the error log before the configuration is read (the built-in one
        // is /var/log/nginx/error.log).
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &ns.name, NGINX, "-p"])
            .arg(&dir)
            .arg("-c")
            .arg(&cfg)
            .arg("-e")
            .arg(&log)
            .args(["-g", "daemon off;"])
            .stderr(Stdio::null());
        ServiceProcess::start(ns, dir, command, port, &log).map(Self)
    }
}

/// One request of an [`HttpClient`].
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) sent: Instant,
    pub(crate) took: Duration,
    /// The body (the label of the node that answered), or why it failed.
    pub(crate) answer: Result<String, String>,
}

/// One HTTP GET through the VIP every `every`, from the client's namespace,
/// each on a fresh connection that must answer within `deadline`.
pub(crate) struct HttpClient {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Request>>>,
}

impl HttpClient {
    pub(crate) fn start(ns: &Netns, addr: SocketAddr, every: Duration, deadline: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let name = ns.name.clone();
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            Netns::enter(&name).expect("entering the client's namespace");
            let mut log = Vec::new();
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now < next {
                    thread::sleep(next - now);
                }
                let sent = Instant::now();
                let answer = get(addr, deadline);
                log.push(Request {
                    sent,
                    took: sent.elapsed(),
                    answer,
                });
                next += every;
                if next < Instant::now() {
                    next = Instant::now();
                }
            }
            log
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the client and returns every request it made.
    pub(crate) fn finish(mut self) -> HttpLog {
        self.stop.store(true, Ordering::Relaxed);
        let requests = self
            .handle
            .take()
            .map(|h| h.join().expect("the HTTP client thread"))
            .unwrap_or_default();
        HttpLog { requests }
    }
}

impl Drop for HttpClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn get(addr: SocketAddr, deadline: Duration) -> Result<String, String> {
    let start = Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&addr, deadline).map_err(|e| format!("connect: {e}"))?;
    let left = deadline
        .checked_sub(start.elapsed())
        .filter(|d| !d.is_zero())
        .ok_or("no time left after connect")?;
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    if !response.starts_with("HTTP/1.0 200") && !response.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "answer: {:?}",
            response.lines().next().unwrap_or("")
        ));
    }
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").trim();
    Ok(body.to_owned())
}

/// What an [`HttpClient`] saw.
pub(crate) struct HttpLog {
    pub(crate) requests: Vec<Request>,
}

impl HttpLog {
    /// The requests sent from `from` up to `to`, as a log of their own (one
    /// step of a test that does several).
    pub(crate) fn between(&self, from: Instant, to: Instant) -> Self {
        Self {
            requests: self
                .requests
                .iter()
                .filter(|r| r.sent >= from && r.sent < to)
                .cloned()
                .collect(),
        }
    }

    /// The requests sent at or after `from`.
    pub(crate) fn since(&self, from: Instant) -> impl Iterator<Item = &Request> {
        self.requests.iter().filter(move |r| r.sent >= from)
    }

    /// Requests sent at or after `from` that failed.
    pub(crate) fn failed_since(&self, from: Instant) -> usize {
        self.since(from).filter(|r| r.answer.is_err()).count()
    }

    /// The longest time from `from` on without a successful answer: from
    /// `from` or the end of one good request to the end of the next good one
    /// (a service that fails from `from` on counts from `from`).
    pub(crate) fn longest_outage_since(&self, from: Instant) -> Duration {
        let mut last_ok = from;
        let mut longest = Duration::ZERO;
        for r in self.since(from) {
            if r.answer.is_ok() {
                let done = r.sent + r.took;
                longest = longest.max(done - last_ok);
                last_ok = done;
            }
        }
        longest
    }

    /// How many requests from `from` on each node answered, by label.
    pub(crate) fn answered_by(&self, from: Instant) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for r in self.since(from) {
            if let Ok(label) = &r.answer {
                match counts.iter_mut().find(|(l, _)| l == label) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((label.clone(), 1)),
                }
            }
        }
        counts
    }

    /// The failures from `from` on, one line each (when, how long, why), for
    /// the log of a failing test.
    pub(crate) fn describe_failures(&self, from: Instant) -> String {
        self.since(from)
            .filter_map(|r| {
                r.answer.as_ref().err().map(|why| {
                    format!(
                        "+{:.1} ms: {why} after {:.1} ms",
                        (r.sent - from).as_secs_f64() * 1e3,
                        r.took.as_secs_f64() * 1e3
                    )
                })
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Debian's PostgreSQL 15 binaries.
pub(crate) const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL 15 server in a node's namespace, as the `postgres` user, on
/// `*:5432` with trust authentication from the lab (a throwaway cluster in a
/// temporary directory; synchronous_commit on, the default).
pub(crate) struct Postgres {
    child: Child,
    dir: PathBuf,
    ns: String,
}

impl Postgres {
    pub(crate) fn start(ns: &Netns, label: &str) -> Self {
        Self::primary(ns, label, &[])
    }

    /// A primary with a `writes` table, its WAL streamable to standbys
    /// (replication from the lab trusted), and `settings` (lines of
    /// postgresql.conf, e.g. `synchronous_standby_names = '*'`).
    pub(crate) fn primary(ns: &Netns, label: &str, settings: &[&str]) -> Self {
        let dir = Self::own_dir(label);
        let data = dir.join("data");
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n\
             host replication all 0.0.0.0/0 trust\n",
        )
        .expect("pg_hba.conf");
        let pg = Self::run(ns, dir, settings);
        pg.sql("CREATE TABLE writes (n integer PRIMARY KEY)");
        pg
    }

    /// A streaming standby of the primary at `primary` (an address in the
    /// lab), cloned with `pg_basebackup -R` from this node's namespace.
    pub(crate) fn standby(ns: &Netns, label: &str, primary: &str, settings: &[&str]) -> Self {
        let dir = Self::own_dir(label);
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.name, "runuser", "-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_basebackup"))
            .args([
                "-h", primary, "-p", "5432", "-U", "postgres", "-R", "-X", "stream", "-D",
            ])
            .arg(dir.join("data"))
            .output()
            .expect("pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup from {primary}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self::run(ns, dir, settings)
    }

    fn own_dir(label: &str) -> PathBuf {
        let dir = run_dir(&format!("pg-{label}"));
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown postgres {}", dir.display());
        dir
    }

    /// Starts the server on `dir/data` in `ns` and waits until it answers.
    fn run(ns: &Netns, dir: PathBuf, settings: &[&str]) -> Self {
        // In postgresql.conf, not on the command line, which would win over
        // ALTER SYSTEM (the recipe's scripts change settings that way).
        if !settings.is_empty() {
            let conf = dir.join("data/postgresql.conf");
            let mut text = fs::read_to_string(&conf).expect("postgresql.conf");
            for setting in settings {
                text.push_str(setting);
                text.push('\n');
            }
            fs::write(&conf, text).expect("postgresql.conf");
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name, "runuser", "-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/postgres"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-c", "listen_addresses=*", "-c", "port=5432", "-k"])
            .arg(&dir);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting postgres");
        let pg = Self {
            child,
            dir,
            ns: ns.name.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(format!("{PG_BIN}/pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(&pg.dir)
                .args(["-p", "5432"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "postgres in {} never became ready",
                ns.name
            );
            thread::sleep(Duration::from_millis(50));
        }
        pg
    }

    /// `kill -9` of the server, as a crash: the postmaster and every process
    /// under it, all stopped first (so that the postmaster forks no new
    /// backend and none of them sees another die), then SIGKILLed. Returns
    /// once the postmaster is gone.
    pub(crate) fn crash(&self) {
        let pid_file = self.dir.join("data/postmaster.pid");
        let postmaster: i32 = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no postmaster pid in {}", pid_file.display()));
        let postmaster = Pid::from_raw(postmaster);
        let _ = kill(postmaster, Signal::SIGSTOP);
        let children: Vec<Pid> = children_of(postmaster.as_raw())
            .into_iter()
            .map(Pid::from_raw)
            .collect();
        for &child in &children {
            let _ = kill(child, Signal::SIGSTOP);
        }
        for &pid in children.iter().chain([&postmaster]) {
            let _ = kill(pid, Signal::SIGKILL);
        }
        // The postmaster's parent, runuser, stops itself when its child
        // stops (as su does for job control), and reaps it only once it runs
        // again: then the pid is gone.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGCONT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while kill(postmaster, None).is_ok() {
            assert!(Instant::now() < deadline, "the postmaster survived SIGKILL");
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Runs `sql` through the server's Unix socket; returns psql's output
    /// (unaligned, tuples only).
    pub(crate) fn sql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            // A commit waiting for a synchronous standby that is not there
            // would otherwise hang the test.
            .env("PGOPTIONS", "-c statement_timeout=20000")
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p", "5432", "-U", "postgres", "-X", "-q", "-A", "-t", "-c", sql, "postgres",
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.ns, "runuser", "-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One `INSERT ... RETURNING` every period through the VIP from the client's
/// namespace, as an application with one connection does: one statement at a
/// time on one psql session, waiting (at most 5 s) for its answer; when the
/// session dies (psql ends a non-interactive session whose connection was
/// lost) or hangs, a new one connects through the VIP. Records when each write
/// was acknowledged.
pub(crate) struct PgWriter {
    thread: Option<JoinHandle<PgWrites>>,
    stop: Arc<AtomicBool>,
}

/// What a [`PgWriter`] saw: the writes sent, each acknowledged one with when
/// its acknowledgement arrived, and when it opened each session.
pub(crate) struct PgWrites {
    pub(crate) sent: u32,
    pub(crate) acked: Vec<(Instant, u32)>,
    pub(crate) sessions: Vec<Instant>,
}

impl PgWrites {
    /// The longest time from `from` on between two acknowledgements (the
    /// write outage plus one period), counting from the last one before
    /// `from` (or `from` itself if there was none): an outage that begins
    /// at `from` counts whole.
    pub(crate) fn longest_gap_since(&self, from: Instant) -> Duration {
        let before = self.acked.iter().map(|a| a.0).filter(|&t| t < from).max();
        let times: Vec<Instant> = std::iter::once(before.unwrap_or(from))
            .chain(self.acked.iter().map(|a| a.0).filter(|&t| t >= from))
            .collect();
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }
}

/// One psql process and the lines it prints.
struct PgSession {
    child: Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl PgSession {
    fn open(client: &str, host: &str) -> Option<Self> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", client, "psql", "-h", host])
            .args(["-p", "5432", "-U", "postgres", "-X", "-q", "-A", "-t"])
            .args(["-v", "ON_ERROR_STOP=0", "postgres"])
            .env("PGCONNECT_TIMEOUT", "2")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take()?;
        let stdout = child.stdout.take()?;
        let stderr = child.stderr.take()?;
        let (tx, lines) = std::sync::mpsc::channel();
        // Both streams, as an application sees both: psql reports a failed
        // statement and a lost connection on stderr, at once.
        let forward = |stream: Box<dyn std::io::Read + Send>,
                       tx: std::sync::mpsc::Sender<String>| {
            thread::spawn(move || {
                use std::io::BufRead as _;
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        };
        forward(Box::new(stdout), tx.clone());
        forward(Box::new(stderr), tx);
        Some(Self {
            child,
            stdin,
            lines,
        })
    }

    /// Sends write `n`; whether it was acknowledged (`None`: the session is
    /// gone or hung and must be replaced).
    fn write(&mut self, n: u32) -> Option<bool> {
        writeln!(self.stdin, "INSERT INTO writes VALUES ({n}) RETURNING n;").ok()?;
        self.stdin.flush().ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) if line.trim() == n.to_string() => return Some(true),
                // The session is gone (terminated, reset, lost).
                Ok(line)
                    if line.contains("FATAL")
                        || line.contains("connection to server was lost")
                        || line.contains("server closed the connection") =>
                {
                    return None
                }
                // An error message for this statement: not acknowledged.
                Ok(line) if line.contains("ERROR") => return Some(false),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PgWriter {
    pub(crate) fn start(client: &Netns, host: &str, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (client, host) = (client.name.clone(), host.to_owned());
        let thread = thread::spawn(move || {
            let mut out = PgWrites {
                sent: 0,
                acked: Vec::new(),
                sessions: Vec::new(),
            };
            let mut session: Option<PgSession> = None;
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                if session.is_none() {
                    session = PgSession::open(&client, &host);
                    out.sessions.push(Instant::now());
                }
                if let Some(s) = session.as_mut() {
                    out.sent += 1;
                    match s.write(out.sent) {
                        Some(true) => out.acked.push((Instant::now(), out.sent)),
                        Some(false) => {}
                        None => session = None,
                    }
                }
                next += every;
                let now = Instant::now();
                if next > now {
                    thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
            out
        });
        Self {
            thread: Some(thread),
            stop,
        }
    }

    /// A writer through `vip` (with or without its prefix length) from
    /// `client`'s namespace, one write every `every`, once `primary` has
    /// stored its first write: the VIP leads to it and the session works.
    pub(crate) fn start_once_acknowledged(
        client: &Netns,
        vip: &str,
        every: Duration,
        primary: &Postgres,
    ) -> Self {
        let writer = Self::start(client, super::strip_prefix_len(vip), every);
        super::wait_until(
            "the first write is acknowledged",
            Duration::from_secs(20),
            || primary.sql("SELECT count(*) FROM writes") != "0",
        );
        writer
    }

    /// Stops writing; returns what was sent and acknowledged.
    pub(crate) fn finish(mut self) -> PgWrites {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("the writer thread"))
            .unwrap_or(PgWrites {
                sent: 0,
                acked: Vec::new(),
                sessions: Vec::new(),
            })
    }
}

impl Drop for PgWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
