//! What can go wrong talking to etcd. Every failure on the wire names the
//! endpoint it came from; certificate problems name the file.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// An etcd client failure.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The settings cannot work (no endpoint, a malformed URL, https without
    /// a CA, a certificate without its key).
    #[error("etcd client settings: {reason}")]
    Settings { reason: String },

    /// A CA, certificate or key file that cannot be read or is not what it
    /// should be.
    #[error("etcd TLS file {}: {reason}", file.display())]
    Certificate { file: PathBuf, reason: String },

    /// The TCP connection was refused or the host is unreachable.
    #[error("cannot connect to etcd at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },

    /// The TLS handshake failed: the server's certificate is not signed by
    /// the configured CA or does not name the host, or the server refused
    /// this client's certificate.
    #[error("TLS with etcd at {endpoint} failed: {reason}")]
    Tls { endpoint: String, reason: String },

    /// The HTTP exchange broke off (connection reset, closed mid-response).
    #[error("HTTP exchange with etcd at {endpoint} failed: {reason}")]
    Transport { endpoint: String, reason: String },

    /// etcd answered with an error status; `message` is the gateway's own
    /// error text (or the start of the body when it is not JSON).
    #[error("etcd at {endpoint} answered {path} with HTTP {status}: {message}")]
    Status {
        endpoint: String,
        path: String,
        status: u16,
        message: String,
    },

    /// The answer is not what the etcd API documents.
    #[error("malformed answer from etcd at {endpoint} to {path}: {what}")]
    Decode {
        endpoint: String,
        path: String,
        what: String,
    },

    /// No answer within the request timeout.
    #[error("etcd at {endpoint} did not answer within {}", humantime::format_duration(*after))]
    Timeout { endpoint: String, after: Duration },

    /// The lease expired or was revoked: a keep-alive gave TTL 0, or a write
    /// named a lease etcd no longer has.
    #[error("etcd lease {id:x} is gone (expired or revoked)")]
    LeaseGone { id: i64 },

    /// The watch started at a revision etcd has already compacted away; watch
    /// again from `revision` (or re-read the key).
    #[error("etcd at {endpoint} compacted the history up to revision {revision}; the watch must restart")]
    Compacted { endpoint: String, revision: i64 },

    /// etcd cancelled the watch for another reason than compaction.
    #[error("etcd at {endpoint} cancelled the watch: {reason}")]
    WatchCanceled { endpoint: String, reason: String },

    /// The watch or long-poll stream ended.
    #[error("the watch stream from etcd at {endpoint} ended")]
    WatchClosed { endpoint: String },

    /// A v2 long poll asked for an index older than the 1000 events etcd
    /// keeps; re-read the key and wait from the index that read gives.
    #[error("etcd at {endpoint} no longer has v2 events from the requested index (now at {index}); re-read the key")]
    V2IndexCleared { endpoint: String, index: u64 },

    /// Every endpoint failed; one entry per endpoint tried, in order.
    #[error("all etcd endpoints failed: {}", list(failures))]
    AllEndpointsFailed { failures: Vec<Self> },
}

fn list(failures: &[EtcdError]) -> String {
    let mut out = String::new();
    for (i, failure) in failures.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(out, "{failure}");
    }
    out
}

impl EtcdError {
    /// Failures of one endpoint rather than of the request: another endpoint
    /// may do better.
    pub(super) fn is_endpoint_failure(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::Tls { .. }
            | Self::Transport { .. }
            | Self::Timeout { .. } => true,
            // The gateway's 503 is gRPC's Unavailable: this member has no
            // leader or is shutting down.
            Self::Status { status, .. } => *status == 503,
            _ => false,
        }
    }
}

/// The TLS error somewhere in `err`'s chain, if any: rustls' errors reach us
/// wrapped in `io::Error` (whose `source()` skips the wrapped error) inside
/// hyper's.
pub(super) fn tls_cause(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<tokio_rustls::rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<tokio_rustls::rustls::Error>() {
                    return Some(tls.to_string());
                }
            }
        }
        next = e.source();
    }
    None
}

/// `err` and its causes, joined with ": " (hyper's own text is terse).
pub(super) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}
