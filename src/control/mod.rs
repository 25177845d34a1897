//! The control socket protocol: one JSON object per line, each way.
//!
//! A client writes one [`RequestEnvelope`] line and reads one [`Response`] line.
//! The envelope carries [`PROTOCOL_VERSION`]; a daemon answers an unknown version
//! with an error instead of guessing.
//!
//! The daemon side is [`bind`] (directory, stale socket, permissions) and [`serve`]
//! (per-connection credentials check, bounded read, parse, hand the request to the
//! daemon as a [`ControlRequest`], write the answer). The client side is [`call`].
//! A client can neither stall nor crash the server: each connection is its own task
//! and every wait in it is bounded by [`ServeOptions`].
//!
//! On the wire, e.g. with `socat - UNIX-CONNECT:/run/vipd/vipd.sock`:
//!
//! ```text
//! > {"version":1,"command":"drain","instances":["db"]}
//! < {"result":"done","outcomes":[{"instance":"db","ok":true,"message":"drained"}]}
//! ```

use std::fs::Permissions;
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::unistd::{Gid, Group};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;

use crate::election::State;

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 1;

/// Requests longer than this are refused: no legitimate request comes close.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
}

/// What a client asks. `instances` empty means every instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    Status,
    Drain {
        #[serde(default)]
        instances: Vec<String>,
        #[serde(default)]
        force: bool,
    },
    Undrain {
        #[serde(default)]
        instances: Vec<String>,
    },
    Promote {
        #[serde(default)]
        instances: Vec<String>,
    },
    Reload,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Response {
    /// The status of every instance.
    Status {
        node: String,
        instances: Vec<InstanceStatus>,
    },
    /// Per-instance outcome of drain, undrain or promote.
    Done { outcomes: Vec<Outcome> },
    /// Reload applied: which instances were started, stopped, restarted or kept.
    Reloaded { summary: String },
    /// The request was refused or failed as a whole.
    Error { message: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub instance: String,
    pub ok: bool,
    /// What happened, or why it was refused.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub name: String,
    pub interface: String,
    pub group: u8,
    pub state: State,
    pub configured_priority: u8,
    pub effective_priority: u8,
    /// Why the effective priority is what it is: health weights, drained, promoted, fault.
    pub priority_reasons: Vec<String>,
    pub drained: bool,
    pub promoted: bool,
    pub fault: Option<String>,
    pub vips: Vec<VipStatus>,
    /// The master as this node knows it.
    pub master: Option<MasterStatus>,
    pub peers: Vec<PeerStatus>,
    pub auth_failures: u64,
    pub other_master_heard: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub last_transition: Option<TransitionStatus>,
    /// The master-down interval for the current master's advert interval.
    pub master_down_interval_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipStatus {
    pub address: String,
    pub held: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterStatus {
    pub name: String,
    /// The source address of its adverts; `None` when this node is the master.
    pub address: Option<String>,
    pub is_self: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub name: String,
    pub node_id: u64,
    pub address: Option<String>,
    pub priority: u8,
    /// Flag names: master, drained, promoted, fault, shutting-down; as last heard.
    pub flags: Vec<String>,
    /// What this node makes of the peer now: master, backup, fault,
    /// shutting-down, or lost (not heard within its liveness window, whatever
    /// its last advert said).
    pub state: String,
    pub alive: bool,
    pub last_heard_ms_ago: u64,
    pub advert_interval_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransitionStatus {
    pub from: State,
    pub to: State,
    pub reason: String,
    /// Wall-clock time of the change, seconds since the Unix epoch.
    pub at_unix: f64,
    pub ms_ago: u64,
}

// ---------------------------------------------------------------------------
// Server and client
// ---------------------------------------------------------------------------

/// A request from a control client, with where its answer goes. The daemon
/// receives these from [`serve`] and must answer each one (dropping the sender
/// gives the client an error).
pub type ControlRequest = (Request, oneshot::Sender<Response>);

/// Responses longer than this are refused by [`call`]: a status of many instances
/// with many peers stays far below it.
pub const MAX_RESPONSE_LEN: usize = 16 * 1024 * 1024;

/// Why the control socket could not be set up or used. Every variant names the
/// socket (or group) concerned.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// [`bind`] was called outside a tokio runtime.
    #[error("the control socket needs a tokio runtime (bind was called outside one)")]
    NoRuntime,
    /// The configured `control_group` does not exist.
    #[error("control group {group:?} does not exist; create it (groupadd --system {group}) or remove control_group")]
    UnknownGroup { group: String },
    /// The group database could not be read.
    #[error("cannot look up control group {group:?}: {error}")]
    GroupLookup { group: String, error: nix::Error },
    /// Creating or preparing the directory that holds the socket failed.
    #[error("{}: cannot prepare the control socket's directory: {error}", path.display())]
    Directory { path: PathBuf, error: io::Error },
    /// Another daemon answers on the socket.
    #[error("{}: another vipd is already running and answering on this socket; stop it first", path.display())]
    AlreadyRunning { path: PathBuf },
    /// Something other than a socket sits where the socket should go.
    #[error("{}: exists and is not a socket; refusing to replace it (remove it or choose another control_socket)", path.display())]
    NotASocket { path: PathBuf },
    /// Binding, setting the permissions or moving the socket into place failed.
    #[error("{}: cannot {action}: {error}", path.display())]
    Bind {
        path: PathBuf,
        action: &'static str,
        error: io::Error,
    },
    /// Nothing listens on the socket (the client side).
    /// `error` is ENOENT (no socket) or ECONNREFUSED (a socket left by a daemon
    /// that is gone).
    #[error("is vipd running? {} at {}", if error.kind() == io::ErrorKind::NotFound { "no socket" } else { "nothing is listening" }, path.display())]
    NotRunning { path: PathBuf, error: io::Error },
    /// The socket exists but this user may not use it.
    #[error("{}: permission denied; run as root or as a member of the daemon's control_group", path.display())]
    PermissionDenied { path: PathBuf },
    /// Reading from or writing to the socket failed.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    /// The peer sent something that is not a valid message.
    #[error("{}: protocol error: {message}", path.display())]
    Protocol { path: PathBuf, message: String },
    /// The daemon closed the connection without an answer.
    #[error("{}: the daemon closed the connection without answering", path.display())]
    Closed { path: PathBuf },
    /// No answer in time.
    #[error("{}: no answer from the daemon within {}", path.display(), humantime::format_duration(*after))]
    Timeout { path: PathBuf, after: Duration },
}

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
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 64,
            read_timeout: Duration::from_secs(5),
            answer_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(1),
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
    let limit = Arc::new(Semaphore::new(options.max_connections));
    let own_uid = nix::unistd::geteuid().as_raw();
    let mut tasks = JoinSet::new();
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
                Ok((stream, _)) => match Arc::clone(&limit).try_acquire_owned() {
                    Ok(permit) => {
                        let requests = requests.clone();
                        tasks.spawn(async move {
                            handle_connection(stream, requests, own_uid, allowed_group, options).await;
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
                },
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning, but keep serving.
                    tracing::warn!("control socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    let _ = tokio::time::timeout(options.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.shutdown().await;
}

async fn handle_connection(
    mut stream: UnixStream,
    requests: mpsc::Sender<ControlRequest>,
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
fn refusal(allowed_group: Option<Gid>) -> String {
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
    let who = format!("uid {} (pid {:?})", cred.uid(), cred.pid());
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

/// Parses one request line (without its newline). The error is the message for
/// the client: what was wrong and where.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    /// Only the version, so that a newer client's unknown command is reported as
    /// a version mismatch rather than as an unknown command.
    #[derive(Deserialize)]
    struct Probe {
        version: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(line).map_err(|e| json_error("invalid request", &e))?;
    match probe.version {
        None => return Err("invalid request: missing field `version`".to_owned()),
        Some(v) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        Some(v) => {
            return Err(format!(
                "unsupported protocol version {v}; this daemon speaks version {PROTOCOL_VERSION} (is the vipd binary newer or older than the running daemon?)"
            ))
        }
    }
    serde_json::from_slice::<RequestEnvelope>(line)
        .map(|envelope| envelope.request)
        .map_err(|e| json_error("invalid request", &e))
}

/// "WHAT at line L column C: message", without serde_json's own position suffix.
fn json_error(what: &str, e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = text.strip_suffix(&suffix).unwrap_or(&text);
    if e.line() == 0 {
        format!("{what}: {message}")
    } else {
        format!(
            "{what} at line {} column {}: {message}",
            e.line(),
            e.column()
        )
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

/// Sends one request to the daemon at `path` and returns its response, all
/// within `timeout`.
pub async fn call(
    path: &Path,
    request: Request,
    timeout: Duration,
) -> Result<Response, ControlError> {
    match tokio::time::timeout(timeout, call_inner(path, request)).await {
        Ok(result) => result,
        Err(_) => Err(ControlError::Timeout {
            path: path.to_owned(),
            after: timeout,
        }),
    }
}

async fn call_inner(path: &Path, request: Request) -> Result<Response, ControlError> {
    let io_error = |error| ControlError::Io {
        path: path.to_owned(),
        error,
    };
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|error| match error.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ControlError::NotRunning {
                    path: path.to_owned(),
                    error,
                }
            }
            io::ErrorKind::PermissionDenied => ControlError::PermissionDenied {
                path: path.to_owned(),
            },
            _ => io_error(error),
        })?;
    let envelope = RequestEnvelope {
        version: PROTOCOL_VERSION,
        request,
    };
    let mut line = serde_json::to_vec(&envelope).map_err(|e| ControlError::Protocol {
        path: path.to_owned(),
        message: format!("cannot serialise the request: {e}"),
    })?;
    line.push(b'\n');
    if let Err(error) = stream.write_all(&line).await {
        // The server may have answered and closed early (busy, refused): its
        // answer, if any, says more than the broken pipe.
        if !matches!(
            error.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ) {
            return Err(io_error(error));
        }
        tracing::debug!("control socket: write failed ({error}); reading the answer anyway");
    }

    let mut answer = Vec::new();
    let mut reader = BufReader::new(&mut stream).take(MAX_RESPONSE_LEN as u64 + 1);
    reader
        .read_until(b'\n', &mut answer)
        .await
        .map_err(io_error)?;
    if answer.is_empty() {
        return Err(ControlError::Closed {
            path: path.to_owned(),
        });
    }
    if answer.last() != Some(&b'\n') {
        let message = if answer.len() > MAX_RESPONSE_LEN {
            format!("response longer than {MAX_RESPONSE_LEN} bytes")
        } else {
            "the response line was cut short".to_owned()
        };
        return Err(ControlError::Protocol {
            path: path.to_owned(),
            message,
        });
    }
    serde_json::from_slice(&answer).map_err(|e| ControlError::Protocol {
        path: path.to_owned(),
        message: json_error("invalid response", &e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::State;
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

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

    fn sample_instance() -> InstanceStatus {
        InstanceStatus {
            name: "db".into(),
            interface: "eth0".into(),
            group: 51,
            state: State::Master,
            configured_priority: 100,
            effective_priority: 110,
            priority_reasons: vec!["health +10 (check nginx)".into()],
            drained: false,
            promoted: false,
            fault: None,
            vips: vec![VipStatus {
                address: "10.0.0.10/24".into(),
                held: true,
            }],
            master: Some(MasterStatus {
                name: "node-a".into(),
                address: None,
                is_self: true,
            }),
            peers: vec![PeerStatus {
                name: "node-b".into(),
                node_id: 42,
                address: Some("10.0.0.2".into()),
                priority: 90,
                flags: vec![],
                state: "backup".into(),
                alive: true,
                last_heard_ms_ago: 400,
                advert_interval_ms: 1000,
            }],
            auth_failures: 0,
            other_master_heard: 1,
            adverts_sent: 12,
            adverts_received: 34,
            last_transition: Some(TransitionStatus {
                from: State::Backup,
                to: State::Master,
                reason: "master down: no advert within the master-down interval".into(),
                at_unix: 1_700_000_000.25,
                ms_ago: 12_300,
            }),
            master_down_interval_ms: 3002,
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
                instances: vec![sample_instance()],
            },
            Request::Drain { instances, force } => {
                done(instances, &format!("drained (force {force})"))
            }
            Request::Undrain { instances } => done(instances, "undrained"),
            Request::Promote { instances } => done(instances, "promoted"),
            Request::Reload => Response::Reloaded {
                summary: "kept db".into(),
            },
        }
    }

    fn every_response() -> Vec<Response> {
        let mut responses: Vec<Response> = every_request().iter().map(answer).collect();
        responses.push(Response::Error {
            message: "no such instance \"x\"".into(),
        });
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
        let err =
            parse_request(br#"{"version":1,"command":"drain","instances":"db"}"#).unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
        let err =
            parse_request(br#"{"version":1,"command":"drain","instance":["db"]}"#).unwrap_err();
        assert!(err.contains("unknown field `instance`"), "{err}");
        let err = parse_request(b"[1,2]").unwrap_err();
        assert!(err.starts_with("invalid request"), "{err}");
    }

    #[tokio::test]
    async fn every_request_round_trips_through_a_real_socket() {
        let harness = Harness::start(ServeOptions::default()).await;
        for request in every_request() {
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
        let (reply, _) =
            raw_exchange(&harness.path, b"{\"version\":7,\"command\":\"status\"}\n").await;
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
            eprintln!("SKIPPED only_root_or_the_control_group_may_use_the_socket: no group with gid 65534");
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
}
