//! The daemon's side of the control socket: [`bind`] (directory, stale socket,
//! permissions) and [`serve`] (credentials check, bounded read, parse, hand the
//! request to the daemon as a [`ControlRequest`], write the answer).
//!
//! A client can neither stall nor crash the server: each connection is its own
//! task and every wait in it is bounded by [`ServeOptions`]. What it may not
//! touch: the daemon's state; it only passes requests on and answers back.

use std::fs::Permissions;
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Group};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;

use super::protocol::{
    parse_request, ControlRequest, Request, Response, TransitionEvent, MAX_REQUEST_LEN,
};
use super::ControlError;
use crate::net::accept::AcceptBackoff;

/// Looks up a unix group by name, as [`bind`] does; the daemon passes the result
/// to [`serve`].
pub fn lookup_group(name: &str) -> Result<Gid, ControlError> {
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid),
        Ok(None) => Err(ControlError::UnknownGroup {
            group: name.to_owned(),
        }),
        Err(error) => Err(ControlError::GroupLookup {
            group: name.to_owned(),
            error,
        }),
    }
}

/// Binds the control socket at `path`.
///
/// - Creates the parent directory (mode 0750) if it is missing.
/// - Removes a stale socket file left by a crashed daemon, but only if nothing
///   answers on it: refuses with [`ControlError::AlreadyRunning`] when another daemon
///   is live, and with [`ControlError::NotASocket`] when the path holds something else.
/// - Binds under a temporary name, sets the mode (0600, owned by the daemon's user,
///   i.e. root; or 0660 with group `group` when given) and then renames it into
///   place, so the socket is never reachable with looser permissions.
/// - With a `group`, the parent directory is given that group too (mode 0750), so
///   members can reach the socket, but only when this call created the directory
///   or the directory holds nothing but the socket (systemd's `RuntimeDirectory=`);
///   a shared directory such as `/run` is never changed.
///
/// Must be called inside a tokio runtime.
pub fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, ControlError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ControlError::NoRuntime);
    }
    let gid = group.map(lookup_group).transpose()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Some(file_name) = path.file_name() else {
        return Err(ControlError::Bind {
            path: path.to_owned(),
            action: "bind",
            error: io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
        });
    };
    let dir_error = |error| ControlError::Directory {
        path: parent.to_owned(),
        error,
    };

    let created = match std::fs::symlink_metadata(parent) {
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(parent)
                .map_err(dir_error)?;
            // mkdir applies the umask (systemd's UMask=0077 would give 0700).
            std::fs::set_permissions(parent, Permissions::from_mode(0o750)).map_err(dir_error)?;
            true
        }
        Err(e) => return Err(dir_error(e)),
    };
    if let Some(gid) = gid {
        if created || dir_holds_only(parent, file_name).map_err(dir_error)? {
            nix::unistd::chown(parent, None, Some(gid)).map_err(|e| dir_error(e.into()))?;
            std::fs::set_permissions(parent, Permissions::from_mode(0o750)).map_err(dir_error)?;
        } else {
            tracing::warn!(
                dir = %parent.display(),
                "control socket directory is shared; not giving it the control group: members need search (x) permission on it"
            );
        }
    }

    remove_stale_socket(path)?;

    // Bind under a temporary name and rename into place once the permissions are
    // right, so there is no moment where the socket has the umask's permissions.
    let tmp = parent.join(format!(".{}.tmp", std::process::id()));
    let bind_error = |action, error| ControlError::Bind {
        path: path.to_owned(),
        action,
        error,
    };
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_error("remove a leftover temporary socket", e)),
    }
    let listener =
        std::os::unix::net::UnixListener::bind(&tmp).map_err(|e| bind_error("bind", e))?;
    let prepared = (|| {
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(&tmp, Permissions::from_mode(mode))
            .map_err(|e| bind_error("set the socket's mode", e))?;
        if let Some(gid) = gid {
            nix::unistd::chown(&tmp, None, Some(gid))
                .map_err(|e| bind_error("give the socket the control group", e.into()))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| bind_error("move the socket into place", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| bind_error("bind", e))?;
        UnixListener::from_std(listener).map_err(|e| bind_error("bind", e))
    })();
    if prepared.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    prepared
}

/// Whether `dir` holds nothing but (possibly) an entry called `name`.
fn dir_holds_only(dir: &Path, name: &std::ffi::OsStr) -> io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        if entry?.file_name() != name {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes a socket file nobody answers on; refuses a live one or a non-socket.
fn remove_stale_socket(path: &Path) -> Result<(), ControlError> {
    let io_error = |action, error| ControlError::Bind {
        path: path.to_owned(),
        action,
        error,
    };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("inspect the existing socket path", e)),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ControlError::NotASocket {
                path: path.to_owned(),
            })
        }
        Ok(_) => {}
    }
    // A non-blocking connect: a live daemon with a full backlog must not make
    // this call hang, and counts as live.
    let probe = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
        .map_err(|e| io_error("probe the existing socket", e))?;
    probe
        .set_nonblocking(true)
        .map_err(|e| io_error("probe the existing socket", e))?;
    let addr =
        socket2::SockAddr::unix(path).map_err(|e| io_error("probe the existing socket", e))?;
    match probe.connect(&addr) {
        Ok(()) => Err(ControlError::AlreadyRunning {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(ControlError::AlreadyRunning {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale control socket");
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error("remove the stale socket", e)),
            }
        }
        Err(e) => Err(io_error("probe the existing socket", e)),
    }
}

/// Limits applied by [`serve_with`]; [`serve`] uses the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// Connections handled at once; more are answered "busy" and closed at once.
    pub max_connections: usize,
    /// The whole request line must arrive within this.
    pub read_timeout: Duration,
    /// The daemon must take and answer the request within this.
    pub answer_timeout: Duration,
    /// The response must be written within this.
    pub write_timeout: Duration,
    /// On shutdown, connections still in progress get this long to finish.
    pub shutdown_grace: Duration,
    /// `vipd events` subscribers at once (each also takes a connection); more
    /// are refused.
    pub max_subscribers: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 64,
            read_timeout: Duration::from_secs(5),
            answer_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(1),
            max_subscribers: 16,
        }
    }
}

/// Serves the control socket with the default [`ServeOptions`] until `shutdown`
/// resolves. See [`serve_with`].
pub async fn serve(
    listener: UnixListener,
    requests: mpsc::Sender<ControlRequest>,
    allowed_group: Option<Gid>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(
        listener,
        requests,
        allowed_group,
        shutdown,
        ServeOptions::default(),
    )
    .await;
}

/// Accepts connections until `shutdown` resolves; then gives connections in
/// progress [`ServeOptions::shutdown_grace`] to finish, drops the rest, and
/// returns (so every clone of `requests` is dropped by the time it returns).
///
/// Per connection, in its own task:
/// 1. The peer's credentials (SO_PEERCRED) must be uid 0 or the daemon's own uid,
///    or, with `allowed_group`, include that group (primary or supplementary, as
///    the kernel recorded them at connect). Otherwise the reply is an error
///    "permission denied: ..." naming who may use the socket.
/// 2. One line is read, at most [`MAX_REQUEST_LEN`] bytes, within the read timeout.
/// 3. It is parsed as a [`RequestEnvelope`] of [`PROTOCOL_VERSION`]; anything else
///    is answered with a [`Response::Error`] saying what was wrong.
/// 4. The request goes to `requests` with a oneshot for the answer.
/// 5. The response is written as one JSON line and the connection closed.
///
/// A client can neither stall nor crash the server: every wait is bounded, every
/// error is logged (debug or warn) and dropped, and at most
/// [`ServeOptions::max_connections`] connections are handled at once.
pub async fn serve_with(
    listener: UnixListener,
    requests: mpsc::Sender<ControlRequest>,
    allowed_group: Option<Gid>,
    shutdown: impl Future<Output = ()>,
    options: ServeOptions,
) {
    serve_with_events(listener, requests, None, allowed_group, shutdown, options).await;
}

/// [`serve_with`], streaming state changes from `events` to each client that
/// sends [`Request::Events`] (without a source it is refused).
///
/// Each subscriber gets its own receiver of the broadcast channel, so the
/// instances that send never wait: a subscriber that falls more than the
/// channel's capacity behind, or does not take a line within the write
/// timeout, is told so and dropped. Subscribers end when the client closes,
/// and at shutdown.
pub async fn serve_with_events(
    listener: UnixListener,
    requests: mpsc::Sender<ControlRequest>,
    events: Option<broadcast::Sender<TransitionEvent>>,
    allowed_group: Option<Gid>,
    shutdown: impl Future<Output = ()>,
    options: ServeOptions,
) {
    let limit = Arc::new(Semaphore::new(options.max_connections));
    let subscribers = Arc::new(Semaphore::new(options.max_subscribers));
    let (stop_tx, stop_rx) = watch::channel(false);
    let own_uid = nix::unistd::geteuid().as_raw();
    let mut tasks = JoinSet::new();
    let mut backoff = AcceptBackoff::new("control socket");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined {
                    tracing::warn!("control connection task failed: {e}");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Some(line) = backoff.succeeded() {
                        tracing::info!("{line}");
                    }
                    match Arc::clone(&limit).try_acquire_owned() {
                    Ok(permit) => {
                        let requests = requests.clone();
                        let streaming = Streaming {
                            events: events.clone(),
                            subscribers: Arc::clone(&subscribers),
                            stop: stop_rx.clone(),
                        };
                        tasks.spawn(async move {
                            handle_connection(stream, requests, streaming, own_uid, allowed_group, options).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::warn!(
                            limit = options.max_connections,
                            "control socket: too many connections; refusing one"
                        );
                        // Best effort and without waiting: a fresh socket's buffer
                        // takes a short line.
                        let _ = stream.try_write(&response_line(&Response::Error {
                            message: format!(
                                "busy: {} control connections already in progress; try again",
                                options.max_connections
                            ),
                        }));
                    }
                }},
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning, but keep serving.
                    let failure = backoff.failed(Instant::now(), &e);
                    if let Some(line) = failure.log {
                        tracing::warn!("{line}");
                    }
                    tokio::time::sleep(failure.wait).await;
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(options.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.shutdown().await;
}

/// What a connection needs to stream events.
struct Streaming {
    events: Option<broadcast::Sender<TransitionEvent>>,
    subscribers: Arc<Semaphore>,
    /// Turns true when the server shuts down.
    stop: watch::Receiver<bool>,
}

async fn handle_connection(
    mut stream: UnixStream,
    requests: mpsc::Sender<ControlRequest>,
    streaming: Streaming,
    own_uid: u32,
    allowed_group: Option<Gid>,
    options: ServeOptions,
) {
    // The request is read even from a peer about to be refused, so that it gets
    // the refusal rather than a broken pipe while still writing.
    let authorized = authorize(&stream, own_uid, allowed_group);
    let response = match read_request(&mut stream, options.read_timeout).await {
        ReadOutcome::Eof => None,
        ReadOutcome::Failed(e) => {
            tracing::debug!("control socket: read failed: {e}");
            None
        }
        _ if authorized.is_err() => {
            if let Err(why) = authorized {
                tracing::warn!("control socket: {why}");
            }
            Some(Response::Error {
                message: refusal(allowed_group),
            })
        }
        ReadOutcome::Refused(message) => {
            tracing::debug!("control socket: {message}");
            Some(Response::Error { message })
        }
        ReadOutcome::Line(line) => Some(match parse_request(&line) {
            Ok(Request::Events) => match subscribe(&streaming, options) {
                Ok((rx, permit)) => {
                    stream_events(&mut stream, rx, streaming.stop, options).await;
                    drop(permit);
                    return;
                }
                Err(message) => Response::Error { message },
            },
            Ok(request) => dispatch(request, &requests, options.answer_timeout).await,
            Err(message) => {
                tracing::debug!("control socket: {message}");
                Response::Error { message }
            }
        }),
    };
    if let Some(response) = response {
        let line = response_line(&response);
        match tokio::time::timeout(options.write_timeout, stream.write_all(&line)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("control socket: writing the response failed: {e}"),
            Err(_) => tracing::debug!("control socket: client did not take the response in time"),
        }
    }
    let _ = tokio::time::timeout(options.write_timeout, stream.shutdown()).await;
}

/// What a refused client is told: that it was refused, and who may use the socket.
pub(super) fn refusal(allowed_group: Option<Gid>) -> String {
    match allowed_group {
        None => "permission denied: only root may use this control socket".to_owned(),
        Some(gid) => format!(
            "permission denied: only root and members of the control group (gid {gid}) may use this control socket"
        ),
    }
}

/// Checks the peer's credentials; the error says who was refused and why.
fn authorize(stream: &UnixStream, own_uid: u32, allowed_group: Option<Gid>) -> Result<(), String> {
    let cred = stream
        .peer_cred()
        .map_err(|e| format!("refusing a client whose credentials cannot be read: {e}"))?;
    if cred.uid() == 0 || cred.uid() == own_uid {
        return Ok(());
    }
    let who = format!(
        "uid {} (pid {})",
        cred.uid(),
        cred.pid()
            .map_or_else(|| "unknown".to_owned(), |pid| pid.to_string())
    );
    let Some(group) = allowed_group else {
        return Err(format!(
            "refusing {who}: only root may use the control socket"
        ));
    };
    if cred.gid() == group.as_raw() {
        return Ok(());
    }
    match peer_groups(stream) {
        Ok(groups) if groups.contains(&group.as_raw()) => Ok(()),
        Ok(_) => Err(format!(
            "refusing {who}: not root and not in control group {group}"
        )),
        Err(e) => Err(format!("refusing {who}: cannot read its groups: {e}")),
    }
}

/// The peer's supplementary groups as the kernel recorded them at connect
/// (SO_PEERGROUPS, Linux 4.13+): exact, and no group-database lookup that could
/// block on NSS.
fn peer_groups(stream: &UnixStream) -> io::Result<Vec<libc::gid_t>> {
    use std::os::fd::AsRawFd;
    // Not exported by the libc crate for every target; the value is from
    // include/uapi/asm-generic/socket.h (sparc has its own).
    #[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
    const SO_PEERGROUPS: libc::c_int = 0x3d;
    #[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
    const SO_PEERGROUPS: libc::c_int = 59;
    const GID_SIZE: usize = size_of::<libc::gid_t>();
    // NGROUPS_MAX is 65536.
    const MAX_GROUPS: usize = 65536;

    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = libc::socklen_t::try_from(groups.len() * GID_SIZE)
            .map_err(|_| io::Error::other("too many groups"))?;
        // SAFETY: `groups` is valid for writes of `len` bytes and outlives the
        // call; the kernel writes at most `len` bytes and stores the size used (or,
        // on ERANGE, needed) in `len`.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let needed = len as usize / GID_SIZE;
        if rc == 0 {
            groups.truncate(needed);
            return Ok(groups);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ERANGE)
            && needed > groups.len()
            && needed <= MAX_GROUPS
        {
            groups.resize(needed, 0);
            continue;
        }
        return Err(error);
    }
}

enum ReadOutcome {
    /// A line (without its newline), or the bytes before EOF.
    Line(Vec<u8>),
    /// The client closed without sending anything.
    Eof,
    /// Too long or too slow: answer with this message.
    Refused(String),
    Failed(io::Error),
}

/// Reads one line of at most [`MAX_REQUEST_LEN`] bytes within `timeout`.
async fn read_request(stream: &mut UnixStream, timeout: Duration) -> ReadOutcome {
    let mut line = Vec::new();
    let limit = MAX_REQUEST_LEN as u64 + 1;
    let mut reader = BufReader::new(&mut *stream).take(limit);
    let read = tokio::time::timeout(timeout, reader.read_until(b'\n', &mut line)).await;
    match read {
        Err(_) => ReadOutcome::Refused(format!(
            "no complete request line within {}",
            humantime::format_duration(timeout)
        )),
        Ok(Err(e)) => ReadOutcome::Failed(e),
        Ok(Ok(0)) => ReadOutcome::Eof,
        Ok(Ok(_)) if line.last() == Some(&b'\n') => {
            line.pop();
            ReadOutcome::Line(line)
        }
        Ok(Ok(_)) if line.len() > MAX_REQUEST_LEN => {
            ReadOutcome::Refused(format!("request longer than {MAX_REQUEST_LEN} bytes"))
        }
        // EOF without a newline: take what came (e.g. `printf '{...}' | nc -U`).
        Ok(Ok(_)) => ReadOutcome::Line(line),
    }
}

/// A receiver of the state changes and a subscriber's place, or why not.
fn subscribe(
    streaming: &Streaming,
    options: ServeOptions,
) -> Result<
    (
        broadcast::Receiver<TransitionEvent>,
        tokio::sync::OwnedSemaphorePermit,
    ),
    String,
> {
    let Some(events) = &streaming.events else {
        return Err("this daemon does not stream events".to_owned());
    };
    let permit = Arc::clone(&streaming.subscribers)
        .try_acquire_owned()
        .map_err(|_| {
            format!(
                "busy: {} event subscribers already; try again later",
                options.max_subscribers
            )
        })?;
    Ok((events.subscribe(), permit))
}

/// Writes [`Response::Subscribed`], then one [`Response::Event`] line per state
/// change, until the client closes, falls behind (it is told why) or the
/// server stops. Every write is bounded by the write timeout.
async fn stream_events(
    stream: &mut UnixStream,
    mut rx: broadcast::Receiver<TransitionEvent>,
    mut stop: watch::Receiver<bool>,
    options: ServeOptions,
) {
    let (mut reader, mut writer) = stream.split();
    let mut line = response_line(&Response::Subscribed);
    let mut ignored = [0u8; 256];
    loop {
        match tokio::time::timeout(options.write_timeout, writer.write_all(&line)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!("control socket: event subscriber gone: {e}");
                return;
            }
            Err(_) => {
                tracing::warn!("control socket: an event subscriber did not take a line within {}; dropping it", humantime::format_duration(options.write_timeout));
                return;
            }
        }
        let event = loop {
            tokio::select! {
                _ = stop.changed() => return,
                read = reader.read(&mut ignored) => match read {
                    // The client closed (or sent something it should not): done.
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                },
                event = rx.recv() => break event,
            }
        };
        line = match event {
            Ok(event) => response_line(&Response::Event { event }),
            Err(broadcast::error::RecvError::Lagged(lost)) => {
                tracing::warn!(
                    lost,
                    "control socket: an event subscriber fell behind; dropping it"
                );
                let refusal = response_line(&Response::Error {
                    message: format!("too slow: {lost} events were lost; reconnect to go on"),
                });
                let _ =
                    tokio::time::timeout(options.write_timeout, writer.write_all(&refusal)).await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
    }
}

/// Hands the request to the daemon and waits for its answer, both bounded.
async fn dispatch(
    request: Request,
    requests: &mpsc::Sender<ControlRequest>,
    timeout: Duration,
) -> Response {
    let (tx, rx) = oneshot::channel();
    let deadline = tokio::time::Instant::now() + timeout;
    let late = || Response::Error {
        message: format!(
            "the daemon did not answer within {}; it may be overloaded",
            humantime::format_duration(timeout)
        ),
    };
    match tokio::time::timeout_at(deadline, requests.send((request, tx))).await {
        Err(_) => return late(),
        Ok(Err(_)) => {
            return Response::Error {
                message: "the daemon is shutting down".to_owned(),
            }
        }
        Ok(Ok(())) => {}
    }
    match tokio::time::timeout_at(deadline, rx).await {
        Err(_) => late(),
        Ok(Err(_)) => Response::Error {
            message: "the daemon dropped the request without answering".to_owned(),
        },
        Ok(Ok(response)) => response,
    }
}

/// A response as one JSON line.
fn response_line(response: &Response) -> Vec<u8> {
    let mut line = serde_json::to_vec(response).unwrap_or_else(|e| {
        tracing::warn!("control socket: cannot serialise a response: {e}");
        br#"{"result":"error","message":"internal error: the response could not be serialised"}"#
            .to_vec()
    });
    line.push(b'\n');
    line
}
