//! The metrics endpoint: HTTP/1 (hyper) on the daemon's runtime. `GET /metrics`
//! (or `HEAD`) answers the exposition, in OpenMetrics when the client accepts
//! it (Prometheus does) and else in the classic text format; any other path is
//! 404, any other method on `/metrics` 405.
//!
//! A client can neither stall nor crash it: at most [`ServerLimits::max_connections`]
//! connections at once (more are closed at accept), the request head must
//! arrive within [`ServerLimits::header_timeout`] and fit in
//! [`ServerLimits::max_header_bytes`], request bodies are not read, and every
//! connection is closed after [`ServerLimits::connection_timeout`] whatever it
//! does. Only the exposition itself waits on the daemon, bounded by the caller's
//! `render`.
//!
//! What it may not touch: the daemon's state; `render` is all it knows of it.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::exposition::{to_classic_text, CLASSIC_CONTENT_TYPE, CONTENT_TYPE as OPENMETRICS_TYPE};

/// The bounds of [`serve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub connection_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 16,
            header_timeout: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            connection_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves; each scrape's
/// body is what `render` returns.
pub async fn serve<R, F>(
    listener: TcpListener,
    render: R,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) where
    R: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = String> + Send + 'static,
{
    let render = Arc::new(render);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    let mut backoff = crate::net::accept::AcceptBackoff::new("metrics endpoint");
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                if let Some(line) = backoff.succeeded() {
                    tracing::info!("{line}");
                }
                stream
            }
            Err(e) => {
                // E.g. EMFILE: back off instead of spinning, but keep serving.
                let failure = backoff.failed(std::time::Instant::now(), &e);
                if let Some(line) = failure.log {
                    tracing::warn!("{line}");
                }
                tokio::time::sleep(failure.wait).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(
                limit = limits.max_connections,
                "metrics endpoint: too many connections; closing one"
            );
            continue;
        };
        let render = Arc::clone(&render);
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let render = Arc::clone(&render);
                async move { Ok::<_, Infallible>(answer(request, render.as_ref()).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(limits.connection_timeout, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "metrics endpoint: connection ended"),
                Err(_) => tracing::debug!("metrics endpoint: connection open too long; closed"),
            }
            drop(slot);
        });
    }
    connections.shutdown().await;
}

async fn answer<R, F>(request: Request<Incoming>, render: &R) -> Response<Full<Bytes>>
where
    R: Fn() -> F,
    F: Future<Output = String>,
{
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: vipd serves /metrics only\n",
        );
    }
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: use GET\n",
            );
            response
                .headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
    };
    // Prometheus asks for OpenMetrics; curl and promtool get the classic format.
    let openmetrics = request
        .headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let text = render().await;
    let (text, content_type) = if openmetrics {
        (text, OPENMETRICS_TYPE)
    } else {
        (to_classic_text(&text), CLASSIC_CONTENT_TYPE)
    };
    let mut response = Response::new(Full::new(if head {
        Bytes::new()
    } else {
        Bytes::from(text)
    }));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn metrics_is_served_and_everything_else_is_404() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = ServerLimits {
            header_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            || async { "vipd_x 1\n# EOF\n".to_owned() },
            limits,
            async {
                let _ = stop_rx.await;
            },
        ));
        let ok = exchange(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text; version=1.0.0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("application/openmetrics-text"), "{ok}");
        assert!(ok.ends_with("vipd_x 1\n# EOF\n"), "{ok}");
        let classic = exchange(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(classic.contains("text/plain; version=0.0.4"), "{classic}");
        assert!(classic.ends_with("vipd_x 1\n"), "{classic}");
        let missing = exchange(
            addr,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = exchange(
            addr,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        // A client that never finishes its request head is cut off, and the
        // next one is still served.
        let started = std::time::Instant::now();
        let slow = exchange(addr, "GET /metrics HTTP/1.1\r\nHost:").await;
        assert!(!slow.contains("200"), "{slow}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let again = exchange(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(again.starts_with("HTTP/1.1 200"), "{again}");
        let _ = stop_tx.send(());
        server.await.expect("server stops");
    }
}
