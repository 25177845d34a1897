//! The metrics endpoint: HTTP/1 (hyper) on the daemon's runtime. `GET /metrics`
//! (or `HEAD`) answers the exposition, in OpenMetrics when the client accepts
//! it (Prometheus does) and else in the classic text format; any other path is
//! 404, any other method on `/metrics` 405.
//!
//! A client can neither stall nor crash it, nor keep others out:
//!
//! - the request head must arrive within [`ServerLimits::header_timeout`]
//!   (2 s) of the connection opening, or of the previous answer on a kept-alive
//!   connection, and fit in [`ServerLimits::max_header_bytes`]; request bodies
//!   are not read; every connection is closed after
//!   [`ServerLimits::connection_timeout`] whatever it does. Two seconds because
//!   a scraper sends its head right after the handshake (Prometheus and curl
//!   do, in one segment): on a LAN it arrives in well under a millisecond, and
//!   2 s leaves room for a few TCP retransmissions (Linux's minimum RTO is
//!   200 ms) while an idle connection holds a slot for at most that long.
//! - at most [`ServerLimits::max_connections`] (16) connections are open at
//!   once, which bounds the descriptors and buffers clients can pin. When all
//!   are taken, a new connection does not wait and is not refused while one of
//!   them is idle: the idle connection that has waited longest is closed to
//!   make room, first among those that never sent a complete request head,
//!   then among kept-alive ones waiting for their next. Only when all 16 are
//!   being answered (each bounded by the caller's `render`) is the new one
//!   closed. So idle connections, however many and however often reopened,
//!   cost a scraper nothing but the shedding; a client that opens
//!   connections faster than a scraper's head crosses the network can still
//!   shed the scraper's, which only a firewall in front can stop. Sixteen is
//!   several times what the scrapers of a node use at once (an HA pair of
//!   Prometheus servers and an operator's curl).
//! - an accept that fails (e.g. EMFILE) waits 10 ms, doubling to 1 s while it
//!   goes on, with a bounded log ([`crate::net::accept`]), never a busy loop.
//!
//! Only the exposition itself waits on the daemon, bounded by the caller's
//! `render`.
//!
//! What it may not touch: the daemon's state; `render` is all it knows of it.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
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
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};

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
            header_timeout: Duration::from_secs(2),
            max_header_bytes: 16 * 1024,
            connection_timeout: Duration::from_secs(30),
        }
    }
}

/// Where a connection is, for choosing which one to shed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Open, its first request head not complete yet.
    Fresh = 0,
    /// A request is being answered.
    Answering = 1,
    /// Answered at least once, kept alive, waiting for the next head.
    KeptAlive = 2,
}

/// A connection's phase, set by its service and read by the accept loop.
#[derive(Debug, Default)]
struct PhaseCell(AtomicU8);

impl PhaseCell {
    fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Relaxed);
    }

    fn get(&self) -> Phase {
        match self.0.load(Ordering::Relaxed) {
            0 => Phase::Fresh,
            1 => Phase::Answering,
            _ => Phase::KeptAlive,
        }
    }
}

/// An open connection, in accept order.
struct Open {
    phase: Arc<PhaseCell>,
    task: AbortHandle,
}

/// The open connections; decides which one a new connection replaces.
#[derive(Default)]
struct Connections {
    open: Vec<Open>,
}

impl Connections {
    /// Makes room for one more under `limit`: forgets finished connections,
    /// then, if still full, closes the idle one that waited longest (one that
    /// never sent a complete head before a kept-alive one). `false` when every
    /// connection is being answered: the new one must be closed instead.
    fn make_room(&mut self, limit: usize) -> bool {
        self.open.retain(|c| !c.task.is_finished());
        if self.open.len() < limit {
            return true;
        }
        let oldest_in = |phase| self.open.iter().position(|c| c.phase.get() == phase);
        let Some(shed) = oldest_in(Phase::Fresh).or_else(|| oldest_in(Phase::KeptAlive)) else {
            return false;
        };
        self.open.remove(shed).task.abort();
        true
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
    let mut tasks = JoinSet::new();
    let mut connections = Connections::default();
    let mut backoff = crate::net::accept::AcceptBackoff::new("metrics endpoint");
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
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
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(failure.wait) => continue,
                }
            }
        };
        if !connections.make_room(limits.max_connections) {
            tracing::debug!(
                limit = limits.max_connections,
                "metrics endpoint: every connection is being answered; closing the new one"
            );
            continue;
        }
        let phase = Arc::new(PhaseCell::default());
        let task = tasks.spawn(connection(
            stream,
            Arc::clone(&render),
            Arc::clone(&phase),
            limits,
        ));
        connections.open.push(Open { phase, task });
        // Let the new connection read what it has already sent before the next
        // accept: a scraper's head is usually in the socket by now, and a burst
        // of queued idle connections accepted in one go would otherwise shed
        // it, still `Fresh`, before it ran at all.
        tokio::task::yield_now().await;
    }
    tasks.shutdown().await;
}

/// Serves one connection, keeping `phase` up to date.
async fn connection<R, F>(
    stream: TcpStream,
    render: Arc<R>,
    phase: Arc<PhaseCell>,
    limits: ServerLimits,
) where
    R: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = String> + Send + 'static,
{
    let service = service_fn(move |request| {
        // Called as soon as the head is parsed: from here on it is not idle.
        phase.set(Phase::Answering);
        let render = Arc::clone(&render);
        let phase = Arc::clone(&phase);
        async move {
            let response = answer(request, render.as_ref()).await;
            phase.set(Phase::KeptAlive);
            Ok::<_, Infallible>(response)
        }
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

    /// Keeps `count` connections to `addr` open that never send a byte,
    /// reopening each as soon as the server closes it; returns how many it
    /// opened in all.
    async fn hold_idle(
        addr: std::net::SocketAddr,
        count: usize,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> usize {
        let mut opened = 0;
        let mut idle: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
        while !*stop.borrow() {
            for slot in &mut idle {
                let closed = match slot {
                    None => true,
                    Some(stream) => !matches!(
                        stream.try_read(&mut [0u8; 64]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                    ),
                };
                if closed {
                    *slot = TcpStream::connect(addr).await.ok();
                    opened += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        opened
    }

    /// On one thread, as the daemon's runtime runs it.
    #[tokio::test]
    async fn idle_connections_cannot_starve_scrapes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            || async { "vipd_x 1\n# EOF\n".to_owned() },
            ServerLimits::default(),
            async {
                let _ = stop_rx.await;
            },
        ));
        for idle in [16, 64] {
            let (stop_idle, stopped) = tokio::sync::watch::channel(false);
            let holder = tokio::spawn(hold_idle(addr, idle, stopped));
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut took = Vec::new();
            for i in 0..200 {
                let started = std::time::Instant::now();
                let answer = tokio::time::timeout(
                    Duration::from_secs(10),
                    exchange(
                        addr,
                        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    ),
                )
                .await
                .unwrap_or_default();
                assert!(
                    answer.starts_with("HTTP/1.1 200"),
                    "scrape {i} beside {idle} idle connections: {answer:?}"
                );
                took.push(started.elapsed());
            }
            let _ = stop_idle.send(true);
            let opened = holder.await.expect("holder");
            took.sort();
            eprintln!(
                "200 of 200 scrapes beside {idle} idle connections ({opened} opened): median {:?}, p99 {:?}, max {:?}",
                took[100], took[197], took[199]
            );
        }
        let _ = stop_tx.send(());
        server.await.expect("server stops");
    }

    #[tokio::test]
    async fn room_is_made_by_shedding_idle_connections_never_answering_ones() {
        let mut tasks = JoinSet::new();
        let mut open = |phase| {
            let cell = Arc::new(PhaseCell::default());
            cell.set(phase);
            let task = tasks.spawn(std::future::pending::<()>());
            (
                Open {
                    phase: Arc::clone(&cell),
                    task: task.clone(),
                },
                cell,
                task,
            )
        };
        let (kept, _, kept_task) = open(Phase::KeptAlive);
        let (busy, busy_cell, _) = open(Phase::Answering);
        let (fresh, _, fresh_task) = open(Phase::Fresh);
        let mut connections = Connections {
            open: vec![kept, busy, fresh],
        };
        assert!(connections.make_room(4), "under the limit: nothing shed");
        assert_eq!(connections.open.len(), 3);
        // Full: the one that never sent a head goes first, though younger.
        assert!(connections.make_room(3));
        assert_eq!(connections.open.len(), 2);
        tokio::task::yield_now().await;
        assert!(fresh_task.is_finished() && !kept_task.is_finished());
        // Then the kept-alive one.
        assert!(connections.make_room(2));
        assert_eq!(connections.open.len(), 1);
        // One being answered is never shed: the new connection is refused.
        assert!(!connections.make_room(1));
        assert_eq!(connections.open.len(), 1);
        // Once it is answered and waits, it can go.
        busy_cell.set(Phase::KeptAlive);
        assert!(connections.make_room(1));
        assert!(connections.open.is_empty());
        tasks.shutdown().await;
    }
}
