//! The client's side of the control socket: [`call`] sends one request and reads
//! one answer, every step bounded, every failure a [`ControlError`] naming the
//! socket. What it may not touch: rendering (that is [`super::render`]).

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{
    json_error, Request, RequestEnvelope, Response, MAX_RESPONSE_LEN, PROTOCOL_VERSION,
};
use super::ControlError;

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
