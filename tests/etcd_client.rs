//! The etcd client against a real etcd 3.4 (Debian's `etcd-server`) on
//! 127.0.0.1: each test starts its own member on free ports with a temporary
//! data directory, killed and removed on drop.
//!
//! - leases, compare-and-write (create wins once, then shows the holder;
//!   replace and delete_if with the right and a wrong revision), watches
//!   seeing puts and deletes, a revoked and an expired lease deleting its key,
//!   and keep-alives on one kept-alive connection;
//! - the v2 keys API (`--enable-v2`): reads, long polls, the key expiring,
//!   and the index etcd no longer has;
//! - failover past a closed port and a port that never answers, and the error
//!   listing every endpoint when none works;
//! - TLS with client certificates (`--client-cert-auth`) from a CA made with
//!   `openssl`: the right files work; a wrong CA, a missing key file, garbage
//!   PEM and a client certificate from another CA each give an error that
//!   says what is wrong.
//!
//! Without /usr/bin/etcd the tests say so and skip, except under CI, where
//! they fail. All traffic stays on 127.0.0.1.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vipd::etcd::{Client, ClientSettings, EtcdError, EventKind, Watch};

const ETCD: &str = "/usr/bin/etcd";

fn etcd_installed() -> bool {
    if Path::new(ETCD).exists() {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("test").to_owned();
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs {ETCD} (apt-get install etcd-server), and CI is set");
    }
    eprintln!("skipping {test}: {ETCD} is not installed (apt-get install etcd-server)");
    false
}

/// A fresh directory for one test's files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vipd-etcd-test-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port nothing listens on (just released by the kernel).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// TLS files for the member: its certificate and key and the CA for clients.
struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

/// One etcd member on 127.0.0.1, killed and its data removed on drop.
struct Etcd {
    child: Child,
    args: Vec<String>,
    client_port: u16,
    endpoint: String,
    log: PathBuf,
    _dir: TempDir,
}

impl Etcd {
    fn start(v2: bool, tls: Option<&ServerTls>) -> Self {
        let dir = TempDir::new("member");
        let client_port = free_port();
        let peer_port = free_port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = dir.path("etcd.log");
        let mut args = vec![
            "--name=test".to_string(),
            format!("--data-dir={}", dir.path("data").display()),
            format!("--listen-client-urls={endpoint}"),
            format!("--advertise-client-urls={endpoint}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=test={peer}"),
            "--log-level=warn".to_string(),
        ];
        if v2 {
            args.push("--enable-v2".into());
        }
        if let Some(tls) = tls {
            args.push(format!("--cert-file={}", tls.cert.display()));
            args.push(format!("--key-file={}", tls.key.display()));
            args.push("--client-cert-auth".into());
            args.push(format!("--trusted-ca-file={}", tls.client_ca.display()));
        }
        let child = spawn_etcd(&args, &log);
        let etcd = Self {
            child,
            args,
            client_port,
            endpoint,
            log,
            _dir: dir,
        };
        etcd.wait_listening();
        etcd
    }

    /// Stops the member and starts it again on the same ports and data.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_etcd(&self.args, &self.log);
        self.wait_listening();
    }

    fn wait_listening(&self) {
        let port = self.client_port;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "etcd did not listen on {port}: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A write through the v2 API, as Patroni's `etcd:` DCS makes it.
    fn v2_put(&self, key: &str, value: &str, ttl: Option<u64>) {
        let mut url = format!("{}/v2/keys{key}", self.endpoint);
        if let Some(ttl) = ttl {
            url.push_str(&format!("?ttl={ttl}"));
        }
        curl(&["-sf", "-X", "PUT", &url, "-d", &format!("value={value}")]);
    }
}

fn spawn_etcd(args: &[String], log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(ETCD)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start etcd")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl").args(args).output().expect("run curl");
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn settings(endpoints: &[&str]) -> ClientSettings {
    ClientSettings {
        endpoints: endpoints.iter().map(ToString::to_string).collect(),
        ca_file: None,
        cert_file: None,
        key_file: None,
        request_timeout: Duration::from_secs(2),
    }
}

fn client(endpoints: &[&str]) -> Client {
    Client::new(settings(endpoints)).expect("client")
}

/// The next batch with events, skipping empty ones (creation, progress).
async fn next_events(watch: &mut Watch) -> vipd::etcd::WatchBatch {
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("a watch message within 10 s")
            .expect("watch message");
        if !batch.events.is_empty() {
            return batch;
        }
    }
}

/// TCP connections (any state, TIME-WAIT included) to `port` on 127.0.0.1.
fn connections_to(port: u16) -> usize {
    let out = Command::new("ss")
        .args(["-Htn", "state", "all", "dst", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test]
async fn leases_compare_and_write_and_watch() {
    if !etcd_installed() {
        return;
    }
    let etcd = Etcd::start(false, None);
    let us = client(&[&etcd.endpoint]);
    let them = client(&[&etcd.endpoint]);

    let lease = us.grant(5).await.unwrap();
    assert!(lease.id != 0 && lease.ttl_secs == 5, "{lease:?}");
    assert_eq!(us.keep_alive(lease.id).await.unwrap(), 5);

    // Keep-alives go over one kept-alive connection.
    let port: u16 = etcd.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let before = connections_to(port);
    for _ in 0..20 {
        us.keep_alive(lease.id).await.unwrap();
    }
    let after = connections_to(port);
    assert!(
        after <= before + 1,
        "20 keep-alives made {before} -> {after} connections"
    );

    let (_, start) = us.get("/vip/group").await.unwrap();
    let mut watch = us.watch("/vip/", true, start + 1).await.unwrap();

    // create wins once; the second shows the holder.
    let won = us.create("/vip/group", b"node-a", lease.id).await.unwrap();
    assert!(won.succeeded && won.current.is_none(), "{won:?}");
    let lost = them.create("/vip/group", b"node-b", 0).await.unwrap();
    assert!(!lost.succeeded);
    let holder = lost.current.expect("the holder");
    assert_eq!(
        (holder.value.as_slice(), holder.lease),
        (&b"node-a"[..], lease.id)
    );
    assert_eq!(holder.mod_revision, won.revision);

    let (kv, _) = us.get("/vip/group").await.unwrap();
    assert_eq!(kv.as_ref(), Some(&holder));

    // replace: a wrong revision shows the key as it is; the right one writes.
    let stale = them
        .replace("/vip/group", holder.mod_revision - 1, b"node-b", 0)
        .await
        .unwrap();
    assert!(!stale.succeeded);
    assert_eq!(stale.current.as_ref(), Some(&holder));
    let replaced = us
        .replace("/vip/group", holder.mod_revision, b"node-a2", lease.id)
        .await
        .unwrap();
    assert!(replaced.succeeded, "{replaced:?}");

    // delete_if likewise.
    let kept = them
        .delete_if("/vip/group", holder.mod_revision)
        .await
        .unwrap();
    assert!(!kept.succeeded);
    assert_eq!(kept.current.unwrap().value, b"node-a2");
    let deleted = us.delete_if("/vip/group", replaced.revision).await.unwrap();
    assert!(deleted.succeeded, "{deleted:?}");
    assert_eq!(us.get("/vip/group").await.unwrap().0, None);

    // The watch saw create, replace, delete in order.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        for event in next_events(&mut watch).await.events {
            seen.push((event.kind, event.kv.value));
        }
    }
    assert_eq!(
        seen,
        vec![
            (EventKind::Put, b"node-a".to_vec()),
            (EventKind::Put, b"node-a2".to_vec()),
            (EventKind::Delete, Vec::new()),
        ]
    );

    // Revoking the lease deletes the keys bound to it.
    us.put("/vip/other", b"x", lease.id).await.unwrap();
    assert_eq!(next_events(&mut watch).await.events[0].kind, EventKind::Put);
    us.revoke(lease.id).await.unwrap();
    let gone = next_events(&mut watch).await;
    assert_eq!(gone.events[0].kind, EventKind::Delete);
    assert_eq!(gone.events[0].kv.key, "/vip/other");
    match us.keep_alive(lease.id).await {
        Err(EtcdError::LeaseGone { id }) => assert_eq!(id, lease.id),
        other => panic!("keep-alive of a revoked lease: {other:?}"),
    }
    us.revoke(lease.id).await.expect("revoking twice is fine");
    match us.put("/vip/other", b"x", lease.id).await {
        Err(EtcdError::LeaseGone { .. }) => {}
        other => panic!("put on a revoked lease: {other:?}"),
    }
    match us.create("/vip/third", b"x", lease.id).await {
        Err(EtcdError::LeaseGone { .. }) => {}
        other => panic!("create on a revoked lease: {other:?}"),
    }

    // A lease left to expire deletes its key too.
    let short = us.grant(2).await.unwrap();
    us.put("/vip/expiring", b"x", short.id).await.unwrap();
    assert_eq!(next_events(&mut watch).await.events[0].kind, EventKind::Put);
    let expired = next_events(&mut watch).await;
    assert_eq!(
        (expired.events[0].kind, expired.events[0].kv.key.as_str()),
        (EventKind::Delete, "/vip/expiring")
    );

    // get_prefix, in key order.
    for key in ["/p/b", "/p/a", "/q"] {
        us.put(key, key.as_bytes(), 0).await.unwrap();
    }
    let (kvs, revision) = us.get_prefix("/p/").await.unwrap();
    let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/p/a", "/p/b"]);
    assert!(revision >= kvs[1].mod_revision);

    // A watch from a compacted revision says so.
    let compact = format!(r#"{{"revision":"{revision}"}}"#);
    curl(&[
        "-sf",
        &format!("{}/v3/kv/compaction", etcd.endpoint),
        "-d",
        &compact,
    ]);
    let mut old = us.watch("/p/", true, 2).await.unwrap();
    let compacted = loop {
        match tokio::time::timeout(Duration::from_secs(10), old.next())
            .await
            .unwrap()
        {
            Ok(batch) if batch.events.is_empty() => continue,
            other => break other,
        }
    };
    match compacted {
        Err(EtcdError::Compacted { revision: r, .. }) => assert_eq!(r, revision),
        other => panic!("watch from a compacted revision: {other:?}"),
    }
}

#[tokio::test]
async fn v2_reads_and_long_polls() {
    if !etcd_installed() {
        return;
    }
    let etcd = Etcd::start(true, None);
    let etcd_client = client(&[&etcd.endpoint]);

    let (absent, first_index) = etcd_client.v2_get("/service/pg/leader").await.unwrap();
    assert_eq!(absent, None);
    etcd.v2_put("/service/pg/leader", "node1", None);
    let (node, index) = etcd_client.v2_get("/service/pg/leader").await.unwrap();
    let node = node.expect("the leader key");
    assert_eq!(node.value, "node1");
    assert!(index > first_index && node.modified_index == index);

    // A long poll returns the next change, with no time limit of its own.
    let waiter = etcd_client.clone();
    let wait = tokio::spawn(async move { waiter.v2_wait("/service/pg/leader", index + 1).await });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !wait.is_finished(),
        "the long poll waits past the request timeout"
    );
    etcd.v2_put("/service/pg/leader", "node2", Some(1));
    let change = wait.await.unwrap().unwrap();
    assert_eq!(change.action, "set");
    assert_eq!(
        change.node.as_ref().map(|n| n.value.as_str()),
        Some("node2")
    );

    // The TTL running out is a change to "absent".
    let expired = tokio::time::timeout(
        Duration::from_secs(10),
        etcd_client.v2_wait("/service/pg/leader", change.index + 1),
    )
    .await
    .expect("the key expires")
    .unwrap();
    assert_eq!((expired.action.as_str(), expired.node), ("expire", None));

    // A dropped long poll just ends.
    let dropped = tokio::time::timeout(
        Duration::from_millis(300),
        etcd_client.v2_wait("/service/pg/leader", expired.index + 1),
    )
    .await;
    assert!(dropped.is_err());

    // More than 1000 events later, the old index is gone.
    let config = TempDir::new("v2");
    let requests: Vec<String> = (0..1010)
        .map(|i| {
            format!(
                "url = \"{}/v2/keys/other\"\n-X PUT\n-d value={i}\n-o /dev/null\n",
                etcd.endpoint
            )
        })
        .collect();
    std::fs::write(config.path("curl.cfg"), requests.join("next\n")).unwrap();
    curl(&["-s", "-K", config.path("curl.cfg").to_str().unwrap()]);
    match etcd_client.v2_wait("/service/pg/leader", index).await {
        Err(e @ EtcdError::V2IndexCleared { .. }) => {
            assert!(e.to_string().contains(&etcd.endpoint), "{e}")
        }
        other => panic!("wait from a cleared index: {other:?}"),
    }
}

#[tokio::test]
async fn fails_over_to_the_next_endpoint() {
    if !etcd_installed() {
        return;
    }
    let etcd = Etcd::start(false, None);
    let closed = format!("http://127.0.0.1:{}", free_port());
    // Accepts connections (the kernel's backlog) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}", silent.local_addr().unwrap());

    let etcd_client = client(&[&closed, &etcd.endpoint]);
    assert_eq!(etcd_client.endpoint(), closed);
    etcd_client.put("/k", b"v", 0).await.unwrap();
    assert_eq!(
        etcd_client.endpoint(),
        etcd.endpoint,
        "sticks to the one that answered"
    );
    assert_eq!(etcd_client.get("/k").await.unwrap().0.unwrap().value, b"v");

    let mut quick = settings(&[&silent, &etcd.endpoint]);
    quick.request_timeout = Duration::from_millis(500);
    let etcd_client = Client::new(quick).unwrap();
    let started = Instant::now();
    etcd_client.get("/k").await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    let mut watch = etcd_client.watch("/k", false, 0).await.unwrap();
    assert_eq!(watch.endpoint(), etcd.endpoint);
    etcd_client.put("/k", b"w", 0).await.unwrap();
    assert_eq!(next_events(&mut watch).await.events[0].kv.value, b"w");

    // A member without a leader answers 503: the next endpoint gets the call.
    let leaderless = leaderless_member().await;
    let etcd_client = client(&[&leaderless, &etcd.endpoint]);
    assert_eq!(etcd_client.get("/k").await.unwrap().0.unwrap().value, b"w");
    assert_eq!(etcd_client.endpoint(), etcd.endpoint);
    let err = client(&[&leaderless]).get("/k").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("etcd at {leaderless} answered /v3/kv/range with HTTP 503: etcdserver: no leader")
    );

    let mut none = settings(&[&closed, &silent]);
    none.request_timeout = Duration::from_millis(300);
    let err = Client::new(none).unwrap().get("/k").await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, EtcdError::AllEndpointsFailed { failures } if failures.len() == 2),
        "{err:?}"
    );
    assert!(
        text.contains(&format!("cannot connect to etcd at {closed}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("etcd at {silent} did not answer within 300ms")),
        "{text}"
    );
    eprintln!("all endpoints failed: {text}");

    // A restarted member: the kept-alive connection is dead, the next request
    // reconnects.
    let mut etcd = etcd;
    let single = client(&[&etcd.endpoint]);
    single.get("/k").await.unwrap();
    etcd.restart();
    let mut value = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while value.is_none() && Instant::now() < deadline {
        match single.get("/k").await {
            Ok((kv, _)) => value = kv.map(|kv| kv.value),
            // The member may not have a leader yet (503) for a moment.
            Err(e) => {
                eprintln!("just after the restart: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(value.as_deref(), Some(&b"w"[..]));
}

/// An endpoint answering every request as an etcd member without a leader
/// does (HTTP 503, gRPC Unavailable).
async fn leaderless_member() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let body = r#"{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}"#;
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    endpoint
}

/// `openssl` with `args`, in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A CA `name` in `dir`: `name.pem`, `name.key`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

/// A certificate `name` signed by CA `ca`, with `extensions` (an openssl
/// extfile's lines).
fn make_cert(dir: &Path, ca: &str, name: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

#[tokio::test]
async fn tls_with_client_certificates() {
    if !etcd_installed() {
        return;
    }
    let pki = TempDir::new("pki");
    let dir = &pki.0;
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    make_cert(
        dir,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    );
    make_cert(dir, "ca", "client", "extendedKeyUsage=clientAuth\n");
    make_cert(dir, "other-ca", "stranger", "extendedKeyUsage=clientAuth\n");
    std::fs::write(
        dir.join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n",
    )
    .unwrap();
    std::fs::write(dir.join("empty.pem"), "just some text\n").unwrap();

    let etcd = Etcd::start(
        false,
        Some(&ServerTls {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            client_ca: dir.join("ca.pem"),
        }),
    );
    let with = |ca: &str, cert: &str, key: &str| ClientSettings {
        ca_file: Some(dir.join(ca)),
        cert_file: Some(dir.join(cert)),
        key_file: Some(dir.join(key)),
        ..settings(&[&etcd.endpoint])
    };

    // The right files.
    let good = Client::new(with("ca.pem", "client.pem", "client.key")).unwrap();
    let lease = good.grant(10).await.unwrap();
    assert!(
        good.create("/tls", b"yes", lease.id)
            .await
            .unwrap()
            .succeeded
    );
    let mut watch = good.watch("/tls", false, 0).await.unwrap();
    good.put("/tls", b"again", lease.id).await.unwrap();
    assert_eq!(next_events(&mut watch).await.events[0].kv.value, b"again");
    assert_eq!(good.keep_alive(lease.id).await.unwrap(), 10);

    // A CA that did not sign the server's certificate.
    let wrong_ca = Client::new(with("other-ca.pem", "client.pem", "client.key")).unwrap();
    let err = wrong_ca.get("/tls").await.unwrap_err();
    eprintln!("wrong CA: {err}");
    assert!(matches!(err, EtcdError::Tls { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&etcd.endpoint) && err.to_string().contains("certificate"),
        "{err}"
    );

    // A client certificate from another CA: etcd refuses it.
    let stranger = Client::new(with("ca.pem", "stranger.pem", "stranger.key")).unwrap();
    let err = stranger.get("/tls").await.unwrap_err();
    eprintln!("client certificate from another CA: {err}");
    assert!(matches!(err, EtcdError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains(&etcd.endpoint), "{err}");

    // Files: missing, garbage, not PEM, mismatched; each error names the file.
    let err = Client::new(with("ca.pem", "client.pem", "missing.key")).unwrap_err();
    eprintln!("missing key file: {err}");
    assert!(
        matches!(&err, EtcdError::Certificate { file, .. } if file.ends_with("missing.key")),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("missing.key") && err.to_string().contains("cannot read"),
        "{err}"
    );

    let err = Client::new(with("garbage.pem", "client.pem", "client.key")).unwrap_err();
    eprintln!("garbage CA file: {err}");
    assert!(
        err.to_string()
            .contains("has no -----END CERTIFICATE----- line"),
        "{err}"
    );
    assert!(
        matches!(&err, EtcdError::Certificate { file, .. } if file.ends_with("garbage.pem")),
        "{err:?}"
    );

    let err = Client::new(with("empty.pem", "client.pem", "client.key")).unwrap_err();
    eprintln!("CA file without PEM: {err}");
    assert!(
        err.to_string().contains("empty.pem") && err.to_string().contains("no PEM certificate"),
        "{err}"
    );

    let err = Client::new(with("ca.pem", "client.pem", "client.pem")).unwrap_err();
    eprintln!("certificate as key: {err}");
    assert!(
        err.to_string().contains("client.pem") && err.to_string().contains("private key"),
        "{err}"
    );

    let err = Client::new(with("ca.pem", "client.pem", "stranger.key")).unwrap_err();
    eprintln!("key of another certificate: {err}");
    assert!(
        matches!(&err, EtcdError::Certificate { file, .. } if file.ends_with("stranger.key")),
        "{err:?}"
    );

    // https without a CA.
    let err = Client::new(settings(&[&etcd.endpoint])).unwrap_err();
    assert!(matches!(err, EtcdError::Settings { .. }), "{err:?}");
}
