//! The control socket protocol: one JSON object per line, each way.
//!
//! A client writes one [`RequestEnvelope`] line and reads one [`Response`] line;
//! only [`Request::Events`] is answered with a stream of lines (`vipd events`,
//! [`client::subscribe_events`]), served by [`serve_with_events`].
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
//!
//! # Layout
//!
//! - [`protocol`]: the messages, their JSON form, the version and limits.
//! - [`server`]: the daemon's side: [`bind`] and [`serve`].
//! - [`client`]: [`call`], used by the `vipd` subcommands.
//! - [`render`]: the human-readable status table and command outcomes, and the
//!   exit code `vipd status` gives monitoring.
//!
//! What it may not touch: the election and the instances; the daemon answers each
//! [`ControlRequest`] itself.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub mod client;
pub mod protocol;
pub mod render;
pub mod server;

pub use client::call;
pub use protocol::*;
pub use server::{bind, lookup_group, serve, serve_with, serve_with_events, ServeOptions};

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

#[cfg(test)]
mod tests;
