//! The client's side of the control socket: [`call`] sends one request and reads
//! one answer, every step bounded, every failure a [`ControlError`] naming the
//! socket. What it may not touch: rendering (that is [`super::render`]).

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{
    json_error, Request, RequestEnvelope, Response, TransitionEvent, MAX_RESPONSE_LEN,
    PROTOCOL_VERSION,
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

/// Subscribes to the daemon's state changes (`vipd events`): `subscribed` is
/// called once the daemon confirmed, then `on_event` for each change, until the
/// daemon closes the stream. Connecting and the confirmation are bounded by
/// `timeout`; the stream itself is not. A daemon that drops this subscriber
/// (too slow) ends it with [`ControlError::Protocol`] saying why.
pub async fn subscribe_events(
    path: &Path,
    timeout: Duration,
    subscribed: impl FnOnce(),
    mut on_event: impl FnMut(TransitionEvent),
) -> Result<(), ControlError> {
    let protocol = |message: String| ControlError::Protocol {
        path: path.to_owned(),
        message,
    };
    let connected = tokio::time::timeout(timeout, async {
        let mut reader = BufReader::new(connect_and_send(path, Request::Events).await?);
        let first = read_line(path, &mut reader).await?;
        Ok::<_, ControlError>((reader, first))
    })
    .await
    .map_err(|_| ControlError::Timeout {
        path: path.to_owned(),
        after: timeout,
    })??;
    let (mut reader, first) = connected;
    match first {
        Some(Response::Subscribed) => subscribed(),
        Some(Response::Error { message }) => {
            return Err(protocol(format!("the daemon refused: {message}")))
        }
        Some(other) => return Err(protocol(format!("unexpected answer {other:?}"))),
        None => {
            return Err(ControlError::Closed {
                path: path.to_owned(),
            })
        }
    }
    loop {
        match read_line(path, &mut reader).await? {
            Some(Response::Event { event }) => on_event(event),
            Some(Response::Error { message }) => return Err(protocol(message)),
            Some(other) => return Err(protocol(format!("unexpected answer {other:?}"))),
            None => return Ok(()),
        }
    }
}

/// Connects and writes one request line; the stream is left open for answers.
async fn connect_and_send(path: &Path, request: Request) -> Result<UnixStream, ControlError> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|error| connect_error(path, error))?;
    let line = request_line(path, request)?;
    stream
        .write_all(&line)
        .await
        .map_err(|error| ControlError::Io {
            path: path.to_owned(),
            error,
        })?;
    Ok(stream)
}

/// One response line, or `None` at a clean end of the stream.
async fn read_line(
    path: &Path,
    reader: &mut BufReader<UnixStream>,
) -> Result<Option<Response>, ControlError> {
    let mut answer = Vec::new();
    reader
        .take(MAX_RESPONSE_LEN as u64 + 1)
        .read_until(b'\n', &mut answer)
        .await
        .map_err(|error| ControlError::Io {
            path: path.to_owned(),
            error,
        })?;
    if answer.is_empty() {
        return Ok(None);
    }
    if answer.pop() != Some(b'\n') {
        return Err(ControlError::Protocol {
            path: path.to_owned(),
            message: if answer.len() >= MAX_RESPONSE_LEN {
                format!("response longer than {MAX_RESPONSE_LEN} bytes")
            } else {
                "the response line was cut short".to_owned()
            },
        });
    }
    serde_json::from_slice(&answer)
        .map(Some)
        .map_err(|e| ControlError::Protocol {
            path: path.to_owned(),
            message: json_error("invalid response", &e),
        })
}

/// `request` in its envelope, as one newline-terminated JSON line.
fn request_line(path: &Path, request: Request) -> Result<Vec<u8>, ControlError> {
    let envelope = RequestEnvelope {
        version: PROTOCOL_VERSION,
        request,
    };
    let mut line = serde_json::to_vec(&envelope).map_err(|e| ControlError::Protocol {
        path: path.to_owned(),
        message: format!("cannot serialise the request: {e}"),
    })?;
    line.push(b'\n');
    Ok(line)
}

/// The error for a failed connect: not running, not allowed, or other IO.
fn connect_error(path: &Path, error: io::Error) -> ControlError {
    match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ControlError::NotRunning {
            path: path.to_owned(),
            error,
        },
        io::ErrorKind::PermissionDenied => ControlError::PermissionDenied {
            path: path.to_owned(),
        },
        _ => ControlError::Io {
            path: path.to_owned(),
            error,
        },
    }
}

async fn call_inner(path: &Path, request: Request) -> Result<Response, ControlError> {
    let io_error = |error| ControlError::Io {
        path: path.to_owned(),
        error,
    };
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|error| connect_error(path, error))?;
    let line = request_line(path, request)?;
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
