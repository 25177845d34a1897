use super::server::refusal;
use super::*;
use nix::unistd::{Gid, Group};
use std::fs::Permissions;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "vipd-control-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o755)).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn every_request() -> Vec<Request> {
    vec![
        Request::Status,
        Request::Drain {
            instances: vec![],
            force: false,
        },
        Request::Drain {
            instances: vec!["db".into(), "web".into()],
            force: true,
        },
        Request::Undrain {
            instances: vec!["db".into()],
        },
        Request::Promote { instances: vec![] },
        Request::Reload,
        Request::Events,
    ]
}

/// What the fake daemon answers: a function of the request, so tests can
/// compare.
fn answer(request: &Request) -> Response {
    let done = |instances: &[String], message: &str| Response::Done {
        outcomes: instances
            .iter()
            .map(|i| Outcome {
                instance: i.clone(),
                ok: true,
                message: message.into(),
            })
            .collect(),
    };
    match request {
        Request::Status => Response::Status {
            node: "node-a".into(),
            instances: vec![render::sample_status()],
        },
        Request::Drain { instances, force } => done(instances, &format!("drained (force {force})")),
        Request::Undrain { instances } => done(instances, "undrained"),
        Request::Promote { instances } => done(instances, "promoted"),
        Request::Reload => Response::Reloaded {
            summary: "kept db".into(),
            failed: vec!["web: interface \"eth9\": no such interface".into()],
        },
        Request::Events => Response::Subscribed,
    }
}

fn event(k: u32) -> TransitionEvent {
    TransitionEvent {
        node: "node-a".into(),
        instance: "db".into(),
        change: HistoryEntry {
            at_unix: 1_700_000_000.0 + f64::from(k),
            from: crate::election::State::Backup,
            to: crate::election::State::Master,
            reason: format!("change {k}"),
            peer: Some("node-b".into()),
        },
    }
}

fn every_response() -> Vec<Response> {
    let mut responses: Vec<Response> = every_request().iter().map(answer).collect();
    responses.push(Response::Error {
        message: "no such instance \"x\"".into(),
    });
    responses.push(Response::Event { event: event(1) });
    responses
}

/// A server on a socket in a temp dir, answered by [`answer`].
struct Harness {
    _dir: TempDir,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start(options: ServeOptions) -> Self {
        let dir = TempDir::new();
        let path = dir.0.join("run/vipd.sock");
        let listener = bind(&path, None).unwrap();
        let (tx, mut rx) = mpsc::channel::<ControlRequest>(16);
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let _ = reply.send(answer(&request));
            }
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_with(
            listener,
            tx,
            None,
            async move {
                let _ = stopped.await;
            },
            options,
        ));
        Self {
            _dir: dir,
            path,
            stop: Some(stop),
            server,
        }
    }

    async fn status_works(&self) {
        let response = call(&self.path, Request::Status, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(response, answer(&Request::Status));
    }

    /// Stops the server and waits for it; the directory lives on in the result.
    async fn stop(mut self) -> TempDir {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), &mut self.server)
            .await
            .unwrap()
            .unwrap();
        self._dir
    }
}

/// Writes raw bytes, then reads what comes back until EOF (or an error).
async fn raw_exchange(path: &Path, bytes: &[u8]) -> (Vec<u8>, Option<io::Error>) {
    let mut stream = UnixStream::connect(path).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut got = Vec::new();
    let result = stream.read_to_end(&mut got).await;
    (got, result.err())
}

fn error_message(bytes: &[u8]) -> String {
    match serde_json::from_slice::<Response>(bytes) {
        Ok(Response::Error { message }) => message,
        other => panic!(
            "expected an error response, got {other:?} from {:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

fn quick() -> ServeOptions {
    ServeOptions {
        read_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    }
}

#[test]
fn every_request_and_response_survives_serde() {
    for request in every_request() {
        let line = serde_json::to_vec(&RequestEnvelope {
            version: PROTOCOL_VERSION,
            request: request.clone(),
        })
        .unwrap();
        assert_eq!(parse_request(&line), Ok(request));
    }
    for response in every_response() {
        let text = serde_json::to_string(&response).unwrap();
        assert!(!text.contains('\n'));
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), response);
    }
}

#[test]
fn wire_form_is_as_documented() {
    let envelope = RequestEnvelope {
        version: 1,
        request: Request::Drain {
            instances: vec!["db".into()],
            force: false,
        },
    };
    assert_eq!(
        serde_json::to_string(&envelope).unwrap(),
        r#"{"version":1,"command":"drain","instances":["db"],"force":false}"#
    );
    // Optional fields may be left out; a CRLF line is fine.
    assert_eq!(
        parse_request(b"{\"version\":1,\"command\":\"drain\"}\r"),
        Ok(Request::Drain {
            instances: vec![],
            force: false
        })
    );
    assert_eq!(
        parse_request(br#"{"command":"status","version":1}"#),
        Ok(Request::Status)
    );
}

#[test]
fn bad_requests_say_what_is_wrong() {
    let err = parse_request(b"hello").unwrap_err();
    assert!(
        err.starts_with("invalid request at line 1 column 1: expected value"),
        "{err}"
    );
    let err = parse_request(br#"{"version":1,"command":"frobnicate"}"#).unwrap_err();
    assert!(err.contains("unknown variant `frobnicate`"), "{err}");
    let err = parse_request(br#"{"command":"status"}"#).unwrap_err();
    assert!(err.contains("missing field `version`"), "{err}");
    let err = parse_request(br#"{"version":2,"command":"status"}"#).unwrap_err();
    assert!(
        err.starts_with("unsupported protocol version 2; this daemon speaks version 1"),
        "{err}"
    );
    // A newer client's new command is a version problem, not an unknown command.
    let err = parse_request(br#"{"version":2,"command":"frobnicate"}"#).unwrap_err();
    assert!(err.starts_with("unsupported protocol version 2"), "{err}");
    let err = parse_request(br#"{"version":"1","command":"status"}"#).unwrap_err();
    assert!(
        err.starts_with("unsupported protocol version \"1\""),
        "{err}"
    );
    let err = parse_request(br#"{"version":1,"command":"drain","instances":"db"}"#).unwrap_err();
    assert!(err.contains("invalid type"), "{err}");
    let err = parse_request(br#"{"version":1,"command":"drain","instance":["db"]}"#).unwrap_err();
    assert!(err.contains("unknown field `instance`"), "{err}");
    let err = parse_request(b"[1,2]").unwrap_err();
    assert!(err.starts_with("invalid request"), "{err}");
}

#[tokio::test]
async fn every_request_round_trips_through_a_real_socket() {
    let harness = Harness::start(ServeOptions::default()).await;
    // Events are a stream the server answers itself (tested on their own).
    for request in every_request()
        .into_iter()
        .filter(|r| *r != Request::Events)
    {
        let response = call(&harness.path, request.clone(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(response, answer(&request));
    }
    harness.stop().await;
}

#[tokio::test]
async fn garbage_gets_an_error_and_the_server_serves_the_next_client() {
    let harness = Harness::start(quick()).await;
    let (reply, _) = raw_exchange(&harness.path, b"{\"version\":1,\"command\": nope}\n").await;
    let message = error_message(&reply);
    assert!(
        message.starts_with("invalid request at line 1 column 26: expected ident"),
        "{message}"
    );
    let (reply, _) = raw_exchange(&harness.path, b"\xff\xfe\x00\n").await;
    assert!(error_message(&reply).starts_with("invalid request"));
    harness.status_works().await;
    harness.stop().await;
}

#[tokio::test]
async fn version_mismatch_is_refused() {
    let harness = Harness::start(quick()).await;
    let (reply, _) = raw_exchange(&harness.path, b"{\"version\":7,\"command\":\"status\"}\n").await;
    assert!(error_message(&reply).starts_with("unsupported protocol version 7"));
    harness.stop().await;
}

#[tokio::test]
async fn an_oversized_request_is_refused_and_the_server_serves_the_next_client() {
    let harness = Harness::start(quick()).await;
    let huge = vec![b'x'; 1024 * 1024];
    let (reply, error) = raw_exchange(&harness.path, &huge).await;
    // Either the error line, or (when the server closed with our bytes unread)
    // a reset: both are fine, a hang or a crash is not.
    if reply.is_empty() {
        assert!(error.is_some(), "neither an answer nor an error");
    } else {
        assert_eq!(
            error_message(&reply),
            format!("request longer than {MAX_REQUEST_LEN} bytes")
        );
    }
    // Exactly at the limit (plus newline) is still read and parsed.
    let mut padded = br#"{"version":1,"command":"status"}"#.to_vec();
    padded.resize(MAX_REQUEST_LEN, b' ');
    padded.push(b'\n');
    let (reply, _) = raw_exchange(&harness.path, &padded).await;
    assert_eq!(
        serde_json::from_slice::<Response>(&reply).unwrap(),
        answer(&Request::Status)
    );
    harness.status_works().await;
    harness.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_read_timeout_while_others_are_served() {
    let options = ServeOptions {
        read_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    };
    let harness = Harness::start(options).await;
    let started = Instant::now();
    let mut silent = UnixStream::connect(&harness.path).await.unwrap();
    // Half a request, then nothing.
    silent.write_all(b"{\"version\":1,").await.unwrap();
    for _ in 0..5 {
        harness.status_works().await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "others were held up"
    );
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut reply))
        .await
        .expect("the silent client was never closed")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(error_message(&reply), "no complete request line within 1s");
    harness.status_works().await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_clients_are_all_answered() {
    let harness = Harness::start(ServeOptions::default()).await;
    let calls = (0..10).map(|i| {
        let path = harness.path.clone();
        let request = if i % 2 == 0 {
            Request::Status
        } else {
            Request::Drain {
                instances: vec![format!("i{i}")],
                force: false,
            }
        };
        tokio::spawn(async move {
            let response = call(&path, request.clone(), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(response, answer(&request));
        })
    });
    for joined in futures::future::join_all(calls).await {
        joined.unwrap();
    }
    harness.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_at_once() {
    let options = ServeOptions {
        max_connections: 2,
        read_timeout: Duration::from_secs(5),
        ..ServeOptions::default()
    };
    let harness = Harness::start(options).await;
    let _a = UnixStream::connect(&harness.path).await.unwrap();
    let _b = UnixStream::connect(&harness.path).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let response = call(&harness.path, Request::Status, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    match response {
        Response::Error { message } => assert!(
            message.starts_with("busy: 2 control connections"),
            "{message}"
        ),
        other => panic!("expected busy, got {other:?}"),
    }
    drop((_a, _b));
    tokio::time::sleep(Duration::from_millis(50)).await;
    harness.status_works().await;
    harness.stop().await;
}

#[tokio::test]
async fn a_daemon_that_drops_or_ignores_the_request_gives_the_client_an_error() {
    let dir = TempDir::new();
    let path = dir.0.join("vipd.sock");
    let listener = bind(&path, None).unwrap();
    let (tx, mut rx) = mpsc::channel::<ControlRequest>(4);
    let mut kept = Vec::new();
    tokio::spawn(async move {
        while let Some((request, reply)) = rx.recv().await {
            // Drop the answer for status; sit on it for everything else.
            if request != Request::Status {
                kept.push(reply);
            }
        }
    });
    let options = ServeOptions {
        answer_timeout: Duration::from_millis(200),
        ..ServeOptions::default()
    };
    let server = tokio::spawn(serve_with(
        listener,
        tx,
        None,
        std::future::pending(),
        options,
    ));
    let response = call(&path, Request::Status, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        response,
        Response::Error {
            message: "the daemon dropped the request without answering".into()
        }
    );
    let response = call(&path, Request::Reload, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        response,
        Response::Error {
            message: "the daemon did not answer within 200ms; it may be overloaded".into()
        }
    );
    server.abort();
}

#[tokio::test]
async fn shutdown_stops_the_server_and_clients_are_told_nobody_listens() {
    let harness = Harness::start(ServeOptions::default()).await;
    let path = harness.path.clone();
    harness.status_works().await;
    let _dir = harness.stop().await;
    let err = call(&path, Request::Status, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::NotRunning { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("is vipd running? nothing is listening at"),
        "{err}"
    );
}

#[tokio::test]
async fn client_errors_name_the_socket() {
    let dir = TempDir::new();
    let path = dir.0.join("vipd.sock");
    let err = call(&path, Request::Status, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("is vipd running? no socket at {}", path.display())
    );

    // A "daemon" that accepts and never answers.
    let listener = UnixListener::bind(&path).unwrap();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let err = call(&path, Request::Status, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        err.to_string(),
        format!("{}: no answer from the daemon within 200ms", path.display())
    );
}

#[tokio::test]
async fn bind_creates_a_private_directory_and_socket() {
    let dir = TempDir::new();
    let path = dir.0.join("a/b/vipd.sock");
    let _listener = bind(&path, None).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&dir.0.join("a/b")), 0o750);
    assert_eq!(mode(&path), 0o600);
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());
    // Nothing left behind but the socket.
    let names: Vec<_> = std::fs::read_dir(dir.0.join("a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("vipd.sock")]);
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let dir = TempDir::new();
    let path = dir.0.join("vipd.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "the stale socket file should remain");
    let listener = bind(&path, None).unwrap();
    let (tx, mut rx) = mpsc::channel::<ControlRequest>(1);
    tokio::spawn(async move {
        while let Some((request, reply)) = rx.recv().await {
            let _ = reply.send(answer(&request));
        }
    });
    let server = tokio::spawn(serve(listener, tx, None, std::future::pending()));
    let response = call(&path, Request::Reload, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(response, answer(&Request::Reload));
    server.abort();
}

#[tokio::test]
async fn bind_refuses_a_live_socket_and_a_non_socket() {
    let dir = TempDir::new();
    let path = dir.0.join("vipd.sock");
    let _live = bind(&path, None).unwrap();
    let err = bind(&path, None).unwrap_err();
    assert!(
        matches!(err, ControlError::AlreadyRunning { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("another vipd is already running"),
        "{err}"
    );
    assert!(path.exists(), "the live socket must stay");

    let file = dir.0.join("not-a-socket");
    std::fs::write(&file, b"precious").unwrap();
    let err = bind(&file, None).unwrap_err();
    assert!(matches!(err, ControlError::NotASocket { .. }), "{err:?}");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");

    let err = bind(&dir.0.join("x.sock"), Some("no-such-group-vipd-test")).unwrap_err();
    assert!(matches!(err, ControlError::UnknownGroup { .. }), "{err:?}");
}

#[test]
fn bind_outside_a_runtime_is_an_error_not_a_panic() {
    let dir = TempDir::new();
    let err = bind(&dir.0.join("vipd.sock"), None).unwrap_err();
    assert!(matches!(err, ControlError::NoRuntime), "{err:?}");
}

/// Runs a python3 client as `uid`/`gid`/`groups` that sends a status request;
/// returns "EACCES" if it cannot connect, else the response line.
async fn client_as(uid: u32, gid: u32, groups: &[u32], path: &Path) -> String {
    const SCRIPT: &str = r#"
import os, socket, sys
uid, gid, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[4]
os.setgroups([int(g) for g in sys.argv[3].split(",") if g])
os.setgid(gid)
os.setuid(uid)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(path)
except PermissionError:
    print("EACCES")
    sys.exit(0)
try:
    s.sendall(b'{"version":1,"command":"status"}\n')
except BrokenPipeError:
    pass
sys.stdout.write(s.makefile("rb").readline().decode())
"#;
    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(uid.to_string())
            .arg(gid.to_string())
            .arg(groups.join(","))
            .arg(path)
            .output(),
    )
    .await
    .expect("python3 client hung")
    .expect("cannot run /usr/bin/python3");
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Needs root (to run clients as `nobody`) and /usr/bin/python3.
#[tokio::test]
async fn only_root_or_the_control_group_may_use_the_socket() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED only_root_or_the_control_group_may_use_the_socket: needs root");
        return;
    }
    if !Path::new("/usr/bin/python3").exists() {
        eprintln!(
            "SKIPPED only_root_or_the_control_group_may_use_the_socket: needs /usr/bin/python3"
        );
        return;
    }
    const NOBODY: u32 = 65534;
    let Ok(Some(nogroup)) = Group::from_gid(Gid::from_raw(NOBODY)) else {
        eprintln!(
            "SKIPPED only_root_or_the_control_group_may_use_the_socket: no group with gid 65534"
        );
        return;
    };
    let other_gid = 1; // some group that is not the control group
    let denied = |group| {
        serde_json::to_string(&Response::Error {
            message: refusal(group),
        })
        .unwrap()
    };
    let status = serde_json::to_string(&answer(&Request::Status)).unwrap();

    let dir = TempDir::new();
    let (tx, mut rx) = mpsc::channel::<ControlRequest>(4);
    tokio::spawn(async move {
        while let Some((request, reply)) = rx.recv().await {
            let _ = reply.send(answer(&request));
        }
    });

    // Root only.
    let path = dir.0.join("root/vipd.sock");
    let listener = bind(&path, None).unwrap();
    let server = tokio::spawn(serve(listener, tx.clone(), None, std::future::pending()));
    assert_eq!(client_as(0, 0, &[], &path).await, status);
    // The 0750 root:root directory keeps nobody out ...
    assert_eq!(client_as(NOBODY, NOBODY, &[], &path).await, "EACCES");
    // ... and so does the 0600 socket on its own.
    std::fs::set_permissions(dir.0.join("root"), Permissions::from_mode(0o755)).unwrap();
    assert_eq!(client_as(NOBODY, NOBODY, &[], &path).await, "EACCES");
    // With the mode loosened, SO_PEERCRED still refuses.
    std::fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
    assert_eq!(client_as(NOBODY, NOBODY, &[], &path).await, denied(None));
    server.abort();

    // Root and the control group.
    let path = dir.0.join("group/vipd.sock");
    let listener = bind(&path, Some(&nogroup.name)).unwrap();
    let meta = |p: &Path| std::fs::metadata(p).unwrap();
    assert_eq!(
        (meta(&path).mode() & 0o7777, meta(&path).gid()),
        (0o660, NOBODY)
    );
    assert_eq!(
        (
            meta(&dir.0.join("group")).mode() & 0o7777,
            meta(&dir.0.join("group")).gid()
        ),
        (0o750, NOBODY)
    );
    let server = tokio::spawn(serve(
        listener,
        tx.clone(),
        Some(nogroup.gid),
        std::future::pending(),
    ));
    // A member by primary group, and one by supplementary group.
    assert_eq!(client_as(NOBODY, NOBODY, &[], &path).await, status);
    assert_eq!(client_as(NOBODY, other_gid, &[NOBODY], &path).await, status);
    // A non-member is kept out by the file modes ...
    assert_eq!(client_as(NOBODY, other_gid, &[], &path).await, "EACCES");
    // ... and by SO_PEERCRED when those are loosened.
    std::fs::set_permissions(dir.0.join("group"), Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        client_as(NOBODY, other_gid, &[], &path).await,
        denied(Some(nogroup.gid))
    );
    server.abort();
}

#[tokio::test]
async fn events_stream_to_subscribers_and_one_that_falls_behind_is_dropped() {
    let dir = TempDir::new();
    let path = dir.0.join("run/vipd.sock");
    let listener = bind(&path, None).unwrap();
    let (tx, _rx) = mpsc::channel::<ControlRequest>(16);
    let (events, _) = tokio::sync::broadcast::channel(4);
    let server = tokio::spawn(serve_with_events(
        listener,
        tx,
        Some(events.clone()),
        None,
        std::future::pending(),
        ServeOptions::default(),
    ));

    // A client that keeps up gets each event, in order.
    let (subscribed_tx, subscribed) = oneshot::channel();
    let (got_tx, mut got) = mpsc::unbounded_channel();
    let client_path = path.clone();
    let client = tokio::spawn(async move {
        client::subscribe_events(
            &client_path,
            Duration::from_secs(5),
            move || {
                let _ = subscribed_tx.send(());
            },
            move |e| {
                let _ = got_tx.send(e);
            },
        )
        .await
    });
    subscribed.await.expect("subscribed");
    for k in 0..3 {
        events.send(event(k)).expect("a subscriber");
        let e = tokio::time::timeout(Duration::from_secs(5), got.recv())
            .await
            .expect("in time");
        assert_eq!(e, Some(event(k)));
    }

    // More events at once than the queue holds: the subscriber is told and
    // dropped; the sender never waited.
    for k in 10..20 {
        let _ = events.send(event(k));
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), client)
        .await
        .expect("the stream ends")
        .expect("the client task");
    match ended {
        Err(ControlError::Protocol { message, .. }) => {
            assert!(message.contains("too slow"), "{message}")
        }
        other => panic!("expected a too-slow error, got {other:?}"),
    }
    server.abort();
}

#[tokio::test]
async fn a_server_without_an_event_source_refuses_subscribers() {
    let harness = Harness::start(ServeOptions::default()).await;
    let result =
        client::subscribe_events(&harness.path, Duration::from_secs(5), || {}, |_| {}).await;
    match result {
        Err(ControlError::Protocol { message, .. }) => {
            assert!(message.contains("does not stream events"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    harness.stop().await;
}
