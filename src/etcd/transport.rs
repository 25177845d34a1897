//! Endpoints, TLS set-up and HTTP/1.1 connections to them: kept-alive
//! connections for unary requests, one connection of its own per stream, and
//! the failover from one endpoint to the next.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderMap, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::error::{chain, tls_cause, EtcdError};
use super::wire::status_error;
use super::ClientSettings;

/// Largest unary answer read: a prefix read of a few thousand keys fits many
/// times over; anything larger is not an answer to this client.
const MAX_BODY: usize = 16 << 20;
/// Idle connections kept for reuse (more than one only when requests overlap).
const MAX_IDLE: usize = 4;
/// TCP keep-alive on every connection, so a peer that vanished without a FIN
/// (power loss, partition) ends a long watch within about a minute.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

pub(super) struct Endpoint {
    /// As configured, without a trailing slash: how errors name it.
    pub(super) url: String,
    /// For the Host header: `host:port`, an IPv6 host in brackets.
    authority: String,
    /// For connect: the host without brackets.
    host: String,
    port: u16,
    /// `Some` for https.
    server_name: Option<ServerName<'static>>,
}

pub(super) fn parse_endpoint(text: &str) -> Result<Endpoint, EtcdError> {
    let bad = |why: &str| EtcdError::Settings {
        reason: format!("endpoint {text:?}: {why}"),
    };
    let trimmed = text.trim().trim_end_matches('/');
    let (tls, rest) = if let Some(rest) = trimmed.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = trimmed.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(bad("must start with http:// or https://"));
    };
    if rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err(bad("must be scheme://host[:port] with no path"));
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| bad("unclosed '[' around an IPv6 address"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(bad("unexpected text after ']'")),
            },
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => 2379,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
    };
    let server_name = if tls {
        Some(
            ServerName::try_from(host.to_string())
                .map_err(|_| bad("the host is neither an IP address nor a DNS name"))?,
        )
    } else {
        None
    };
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(Endpoint {
        url: trimmed.to_string(),
        authority,
        host: host.to_string(),
        port,
        server_name,
    })
}

fn cert_error(file: &Path, reason: impl Into<String>) -> EtcdError {
    EtcdError::Certificate {
        file: file.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_file(file: &Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(file).map_err(|e| cert_error(file, format!("cannot read it: {e}")))
}

fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "not valid PEM: a -----BEGIN {0}----- section has no -----END {0}----- line",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { line } => format!(
            "not valid PEM: malformed line {:?}",
            String::from_utf8_lossy(line)
        ),
        e => format!("not valid PEM: {e}"),
    }
}

fn read_certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, EtcdError> {
    let pem = read_file(file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(file, pem_error(&e)))?;
    if certs.is_empty() {
        return Err(cert_error(
            file,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
        ));
    }
    Ok(certs)
}

/// The TLS client configuration from the settings' files, every file read and
/// checked here so that a mistake shows at start-up, naming the file.
pub(super) fn tls_config(
    settings: &ClientSettings,
) -> Result<Option<Arc<ClientConfig>>, EtcdError> {
    let Some(ca_file) = &settings.ca_file else {
        if settings.cert_file.is_some() || settings.key_file.is_some() {
            return Err(EtcdError::Settings {
                reason: "a client certificate needs ca_file as well".into(),
            });
        }
        return Ok(None);
    };
    let mut roots = RootCertStore::empty();
    for (i, der) in read_certificates(ca_file)?.into_iter().enumerate() {
        roots.add(der).map_err(|e| {
            cert_error(
                ca_file,
                format!("certificate {} is not a usable CA certificate: {e}", i + 1),
            )
        })?;
    }
    // ring rather than rustls' default aws-lc-rs: no C toolchain (cmake) in
    // the build and less code in the daemon. rustls marks it deprecated for
    // its lack of post-quantum key exchange, which etcd 3.4 (Go 1.19) does not
    // offer either.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EtcdError::Settings {
            reason: format!("TLS set-up: {e}"),
        })?
        .with_root_certificates(roots);
    let config = match (&settings.cert_file, &settings.key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert_file), Some(key_file)) => {
            let certs = read_certificates(cert_file)?;
            let key_pem = read_file(key_file)?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
                rustls_pki_types::pem::Error::NoItemsFound => cert_error(
                    key_file,
                    "no PEM private key (PKCS#8, PKCS#1 or SEC1) in it",
                ),
                e => cert_error(key_file, pem_error(&e)),
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => cert_error(
                        key_file,
                        format!(
                            "the key does not belong to the certificate in {}",
                            cert_file.display()
                        ),
                    ),
                    e => cert_error(
                        key_file,
                        format!("unusable with {}: {e}", cert_file.display()),
                    ),
                })?
        }
        (Some(_), None) => {
            return Err(EtcdError::Settings {
                reason: "cert_file is set but key_file is not".into(),
            })
        }
        (None, Some(_)) => {
            return Err(EtcdError::Settings {
                reason: "key_file is set but cert_file is not".into(),
            })
        }
    };
    Ok(Some(Arc::new(config)))
}

/// Aborts the task driving a connection when dropped: a dropped stream or a
/// cancelled long poll closes its connection at once.
pub(super) struct ConnectionTask(JoinHandle<()>);

impl Drop for ConnectionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Connection {
    sender: SendRequest<Full<Bytes>>,
    _task: ConnectionTask,
}

/// A whole answer to a unary request.
pub(super) struct Reply {
    pub(super) endpoint: String,
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// An answer whose body is still arriving, on a connection of its own.
pub(super) struct Stream {
    pub(super) endpoint: String,
    pub(super) status: StatusCode,
    pub(super) body: Incoming,
    pub(super) task: ConnectionTask,
}

pub(super) struct Transport {
    endpoints: Vec<Endpoint>,
    tls: Option<TlsConnector>,
    request_timeout: Duration,
    /// The endpoint that answered last; calls start there.
    current: AtomicUsize,
    /// Connections between requests, with their endpoint's index.
    idle: Mutex<Vec<(usize, Connection)>>,
}

impl Transport {
    pub(super) fn new(
        endpoints: Vec<Endpoint>,
        tls: Option<Arc<ClientConfig>>,
        request_timeout: Duration,
    ) -> Self {
        Self {
            endpoints,
            tls: tls.map(TlsConnector::from),
            request_timeout,
            current: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn endpoint(&self) -> &str {
        let index = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        &self.endpoints[index].url
    }

    /// One request, whole answer read, within the request timeout per
    /// endpoint; endpoint failures move on to the next endpoint, each tried at
    /// most once, all within the request timeout times the endpoints.
    pub(super) async fn unary(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Reply, EtcdError> {
        self.each_endpoint(|index, limit| {
            let method = method.clone();
            let body = body.clone();
            async move {
                let endpoint = &self.endpoints[index];
                match tokio::time::timeout(limit, self.exchange(index, method, path, body)).await {
                    Ok(Ok(reply)) if reply.status == StatusCode::SERVICE_UNAVAILABLE => {
                        // No leader on this member: the next one may do.
                        Err(status_error(
                            &reply.endpoint,
                            path,
                            reply.status,
                            &reply.body,
                        ))
                    }
                    Ok(result) => result,
                    Err(_) => Err(EtcdError::Timeout {
                        endpoint: endpoint.url.clone(),
                        after: limit,
                    }),
                }
            }
        })
        .await
    }

    /// A request on a new connection of its own, whose answer's body is left
    /// to the caller without a time limit; connecting and the answer's status
    /// line each endpoint gets the request timeout for, as for `unary`.
    pub(super) async fn stream(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Stream, EtcdError> {
        self.each_endpoint(|index, limit| {
            let method = method.clone();
            let body = body.clone();
            async move {
                let endpoint = &self.endpoints[index];
                let attempt = async {
                    let connection = self.connect(index).await?;
                    let Connection { mut sender, _task } = connection;
                    let response = sender
                        .send_request(self.request(index, method, path, body))
                        .await
                        .map_err(|e| self.hyper_error(index, &e))?;
                    let (parts, body) = response.into_parts();
                    if parts.status == StatusCode::SERVICE_UNAVAILABLE {
                        // No leader on this member: the next one may do.
                        let body = Limited::new(body, MAX_BODY)
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        return Err(status_error(&endpoint.url, path, parts.status, &body));
                    }
                    Ok(Stream {
                        endpoint: endpoint.url.clone(),
                        status: parts.status,
                        body,
                        task: _task,
                    })
                };
                match tokio::time::timeout(limit, attempt).await {
                    Ok(result) => result,
                    Err(_) => Err(EtcdError::Timeout {
                        endpoint: endpoint.url.clone(),
                        after: limit,
                    }),
                }
            }
        })
        .await
    }

    async fn each_endpoint<'a, F, Fut, T>(&'a self, mut attempt: F) -> Result<T, EtcdError>
    where
        F: FnMut(usize, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<T, EtcdError>> + 'a,
    {
        let count = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed) % count;
        let deadline = Instant::now() + self.request_timeout.saturating_mul(count as u32);
        let mut failures = Vec::new();
        for step in 0..count {
            let index = (start + step) % count;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match attempt(index, left.min(self.request_timeout)).await {
                Ok(value) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(value);
                }
                Err(e) if e.is_endpoint_failure() => failures.push(e),
                Err(e) => {
                    // etcd itself answered: this endpoint works.
                    self.current.store(index, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        if failures.len() == 1 {
            if let Some(only) = failures.pop() {
                return Err(only);
            }
        }
        Err(EtcdError::AllEndpointsFailed { failures })
    }

    fn request(
        &self,
        index: usize,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        // The path is built by this module from percent-encoded parts; should
        // it still not parse, the request goes to "/" and etcd answers 404.
        if let Ok(uri) = path.parse() {
            *request.uri_mut() = uri;
        }
        let headers = request.headers_mut();
        if let Ok(host) = self.endpoints[index].authority.parse() {
            headers.insert(HOST, host);
        }
        headers.insert(
            CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        request
    }

    /// One request on `index`: on an idle connection when there is one, else
    /// on a new connection. A request that fails on an idle connection before
    /// any answer goes again on a new one.
    async fn exchange(
        &self,
        index: usize,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Reply, EtcdError> {
        let request = self.request(index, method.clone(), path, body.clone());
        let Some(mut idle) = self.take_idle(index) else {
            return self.exchange_fresh(index, request).await;
        };
        if idle.sender.ready().await.is_err() {
            return self.exchange_fresh(index, request).await;
        }
        match idle.sender.try_send_request(request).await {
            Ok(response) => self.finish(index, idle, response).await,
            Err(mut e) => match e.take_message() {
                Some(unsent) => self.exchange_fresh(index, unsent).await,
                // The server closed the idle connection as the request went
                // out (a restarted member, or one whose close this task has
                // not yet seen): no answer came, so the request goes again on
                // a new connection, once.
                None => {
                    drop(idle);
                    let again = self.request(index, method, path, body);
                    self.exchange_fresh(index, again).await
                }
            },
        }
    }

    async fn exchange_fresh(
        &self,
        index: usize,
        request: Request<Full<Bytes>>,
    ) -> Result<Reply, EtcdError> {
        let mut fresh = self.connect(index).await?;
        let response = fresh
            .sender
            .send_request(request)
            .await
            .map_err(|e| self.hyper_error(index, &e))?;
        self.finish(index, fresh, response).await
    }

    async fn finish(
        &self,
        index: usize,
        connection: Connection,
        response: hyper::Response<Incoming>,
    ) -> Result<Reply, EtcdError> {
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => self.hyper_error(index, &e),
                Err(e) => EtcdError::Transport {
                    endpoint: self.endpoints[index].url.clone(),
                    reason: e.to_string(),
                },
            })?
            .to_bytes();
        self.put_idle(index, connection);
        Ok(Reply {
            endpoint: self.endpoints[index].url.clone(),
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    fn take_idle(&self, index: usize) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(_, c)| !c.sender.is_closed());
        let at = idle.iter().rposition(|(i, _)| *i == index)?;
        Some(idle.swap_remove(at).1)
    }

    fn put_idle(&self, index: usize, connection: Connection) {
        if connection.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push((index, connection));
    }

    async fn connect(&self, index: usize) -> Result<Connection, EtcdError> {
        let endpoint = &self.endpoints[index];
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|source| EtcdError::Connect {
                endpoint: endpoint.url.clone(),
                source,
            })?;
        // Requests are small and answered at once; Nagle would only delay them.
        let _ = tcp.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(TCP_KEEPALIVE_IDLE)
            .with_interval(TCP_KEEPALIVE_INTERVAL);
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        match (&endpoint.server_name, &self.tls) {
            (None, _) => self.handshake(index, tcp).await,
            (Some(name), Some(tls)) => {
                let stream = tls
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| EtcdError::Tls {
                        endpoint: endpoint.url.clone(),
                        reason: tls_cause(&e).unwrap_or_else(|| e.to_string()),
                    })?;
                self.handshake(index, stream).await
            }
            // `Client::new` refuses https endpoints without a CA.
            (Some(_), None) => Err(EtcdError::Settings {
                reason: format!("{} is https but no ca_file is set", endpoint.url),
            }),
        }
    }

    async fn handshake<T>(&self, index: usize, io: T) -> Result<Connection, EtcdError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.hyper_error(index, &e))?;
        let task = tokio::spawn(async move {
            // Its error reaches the request that was in flight, if any.
            let _ = connection.await;
        });
        Ok(Connection {
            sender,
            _task: ConnectionTask(task),
        })
    }

    pub(super) fn hyper_error(&self, index: usize, e: &hyper::Error) -> EtcdError {
        let endpoint = self.endpoints[index].url.clone();
        match tls_cause(e) {
            Some(reason) => EtcdError::Tls { endpoint, reason },
            None => EtcdError::Transport {
                endpoint,
                reason: chain(e),
            },
        }
    }
}
