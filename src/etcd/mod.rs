//! An etcd client: hold a VIP by a key bound to a lease (v3), and follow
//! Patroni's leader key (v3, or the v2 keys API that Patroni's `etcd:` DCS and
//! vip-manager 1.0 use).
//!
//! It speaks etcd's JSON gRPC gateway (`/v3/...`) over HTTP/1.1 with hyper,
//! which the daemon already carries for its metrics endpoint, rather than
//! gRPC itself: a gRPC stack (tonic, prost, HTTP/2) would add more code to
//! every daemon than the whole of this module for the dozen calls it needs.
//! In the gateway's JSON, int64 fields are strings and bytes are base64
//! ([`wire`] has the details and the answers captured from etcd 3.4).
//!
//! - Endpoints are `http://host[:port]` or `https://host[:port]` (port 2379
//!   when left out). HTTPS uses rustls with the CA from `ca_file` only (no
//!   system roots), and a client certificate when `cert_file` and `key_file`
//!   are set. [`Client::new`] reads and checks these files at once; it does no
//!   network I/O.
//! - Each unary call has `request_timeout` per endpoint. A connection failure,
//!   TLS failure, broken exchange, timeout or HTTP 503 (the member has no
//!   leader) moves the call on to the next endpoint, starting from the one
//!   that answered last ([`Client::endpoint`]), each endpoint at most once, all
//!   within `request_timeout` times the number of endpoints. Any other answer
//!   from etcd, error or not, ends the call.
//! - Unary calls reuse kept-alive HTTP/1.1 connections (a lease keep-alive
//!   every few hundred milliseconds is one request, not a TCP and TLS
//!   handshake); a connection the server closed meanwhile is replaced
//!   before the request is sent. Reads are linearizable (etcd's default).
//! - [`Client::watch`] and [`Client::v2_wait`] each open a connection of their
//!   own. Connecting and the answer's headers get `request_timeout`; the
//!   stream itself has no time limit: the caller ends it by dropping it.
//!   Every connection has TCP keep-alive, so a vanished peer ends a stream.
//!
//! Writes are not repeated on another endpoint once sent: when an exchange
//! breaks off after the request went out, the next endpoint gets it, but the
//! first may have applied it (a `create` then answers "not created" with this
//! client's own value as the holder, which the caller can tell by the value).

mod error;
mod transport;
mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

pub use error::EtcdError;
use transport::{ConnectionTask, Reply, Transport};
use wire::{decode, status_error, Compare};

/// Where etcd is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// `http://10.0.0.1:2379` or `https://etcd1.example:2379`.
    pub endpoints: Vec<String>,
    /// The CA that signed the servers' certificates; required for https.
    pub ca_file: Option<PathBuf>,
    /// This client's certificate (PEM), for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    /// The key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// The limit of one request to one endpoint.
    pub request_timeout: Duration,
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    pub ttl_secs: i64,
}

/// A key as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// The lease it is bound to; 0 for none.
    pub lease: i64,
}

/// The result of a compare-and-write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOutcome {
    /// The comparison held and the write was made.
    pub succeeded: bool,
    /// The store's revision after the txn (the header revision).
    pub revision: i64,
    /// When it did not succeed: the key as it is (`None`: it does not exist).
    pub current: Option<KeyValue>,
}

/// One watch message: events, or none for the watch's creation and for
/// progress notifications (which show the stream is alive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBatch {
    /// The store's revision as of this message.
    pub revision: i64,
    pub events: Vec<WatchEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For a delete: the key and the delete's `mod_revision`, no value.
    pub kv: KeyValue,
}

/// A v2 key with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Node {
    pub value: String,
    pub modified_index: u64,
}

/// A v2 event on a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Change {
    /// etcd's action: `set`, `update`, `create`, `compareAndSwap`, `delete`,
    /// `expire`, `compareAndDelete`.
    pub action: String,
    /// The key's value after the event; `None` when the event removed it.
    pub node: Option<V2Node>,
    /// The event's index (its `modifiedIndex`): wait from `index + 1` next.
    pub index: u64,
}

/// An etcd client; clones share the connections and the sticky endpoint.
#[derive(Clone)]
pub struct Client {
    transport: Arc<Transport>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Checks the endpoints and reads the TLS files; no network I/O.
    pub fn new(settings: ClientSettings) -> Result<Self, EtcdError> {
        if settings.endpoints.is_empty() {
            return Err(EtcdError::Settings {
                reason: "no endpoint".into(),
            });
        }
        if settings.request_timeout.is_zero() {
            return Err(EtcdError::Settings {
                reason: "the request timeout is zero".into(),
            });
        }
        let endpoints = settings
            .endpoints
            .iter()
            .map(|e| transport::parse_endpoint(e))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = transport::tls_config(&settings)?;
        if tls.is_none() {
            if let Some(https) = settings
                .endpoints
                .iter()
                .find(|e| e.trim().starts_with("https://"))
            {
                return Err(EtcdError::Settings {
                    reason: format!("endpoint {https} is https but no ca_file is set"),
                });
            }
        }
        Ok(Self {
            transport: Arc::new(Transport::new(endpoints, tls, settings.request_timeout)),
        })
    }

    /// The endpoint calls start with: the last one that answered.
    pub fn endpoint(&self) -> String {
        self.transport.endpoint().to_string()
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Reply, EtcdError> {
        self.transport
            .unary(Method::POST, path, Bytes::from(body.to_string()))
            .await
    }

    /// POST `body` to `path`; an error status as an error, else the answer.
    async fn call<T: for<'de> serde::Deserialize<'de>>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, EtcdError> {
        let reply = self.post(path, body).await?;
        if !reply.status.is_success() {
            return Err(status_error(
                &reply.endpoint,
                path,
                reply.status,
                &reply.body,
            ));
        }
        decode(&reply.endpoint, path, &reply.body)
    }

    /// Like `call` for writes bound to `lease`: etcd's "lease not found"
    /// becomes [`EtcdError::LeaseGone`].
    async fn call_with_lease<T: for<'de> serde::Deserialize<'de>>(
        &self,
        path: &str,
        body: &Value,
        lease: i64,
    ) -> Result<T, EtcdError> {
        match self.call(path, body).await {
            Err(EtcdError::Status {
                status: 404,
                message,
                ..
            }) if lease != 0 && message.contains(wire::LEASE_NOT_FOUND) => {
                Err(EtcdError::LeaseGone { id: lease })
            }
            other => other,
        }
    }

    /// A new lease of `ttl_secs` (etcd may grant a longer TTL than asked).
    pub async fn grant(&self, ttl_secs: i64) -> Result<Lease, EtcdError> {
        let path = "/v3/lease/grant";
        let answer: wire::LeaseAnswer = self
            .call(path, &json!({ "TTL": ttl_secs.to_string() }))
            .await?;
        if !answer.error.is_empty() || answer.id == 0 {
            return Err(EtcdError::Status {
                endpoint: self.endpoint(),
                path: path.into(),
                status: 200,
                message: if answer.error.is_empty() {
                    "the grant names no lease".into()
                } else {
                    answer.error
                },
            });
        }
        Ok(Lease {
            id: answer.id,
            ttl_secs: answer.ttl,
        })
    }

    /// Renews lease `id`; the TTL it now has. A lease etcd no longer has is
    /// [`EtcdError::LeaseGone`].
    pub async fn keep_alive(&self, id: i64) -> Result<i64, EtcdError> {
        let path = "/v3/lease/keepalive";
        let reply = self.post(path, &json!({ "ID": id.to_string() })).await?;
        if !reply.status.is_success() {
            let error = status_error(&reply.endpoint, path, reply.status, &reply.body);
            return match error {
                EtcdError::Status {
                    status: 404,
                    ref message,
                    ..
                } if message.contains(wire::LEASE_NOT_FOUND) => Err(EtcdError::LeaseGone { id }),
                other => Err(other),
            };
        }
        let answer: wire::KeepAliveAnswer = decode(&reply.endpoint, path, &reply.body)?;
        match (answer.result, answer.error) {
            (Some(result), _) if result.ttl > 0 => Ok(result.ttl),
            (Some(_), _) => Err(EtcdError::LeaseGone { id }),
            (None, Some(error)) if error.text().contains(wire::LEASE_NOT_FOUND) => {
                Err(EtcdError::LeaseGone { id })
            }
            (None, Some(error)) => Err(EtcdError::Status {
                endpoint: reply.endpoint,
                path: path.into(),
                status: reply.status.as_u16(),
                message: error.text().to_string(),
            }),
            (None, None) => Err(EtcdError::Decode {
                endpoint: reply.endpoint,
                path: path.into(),
                what: "neither result nor error".into(),
            }),
        }
    }

    /// Revokes lease `id`, deleting the keys bound to it; a lease etcd does
    /// not have counts as revoked.
    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        let path = "/v3/lease/revoke";
        match self
            .call::<Value>(path, &json!({ "ID": id.to_string() }))
            .await
        {
            Ok(_) => Ok(()),
            Err(EtcdError::Status {
                status: 404,
                message,
                ..
            }) if message.contains(wire::LEASE_NOT_FOUND) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `key` (`None` when absent) and the store's revision.
    pub async fn get(&self, key: &str) -> Result<(Option<KeyValue>, i64), EtcdError> {
        let answer: wire::RangeAnswer = self
            .call("/v3/kv/range", &wire::range_request(key.as_bytes(), None))
            .await?;
        let revision = answer.header.revision;
        Ok((answer.into_kvs().into_iter().next(), revision))
    }

    /// Every key starting with `prefix`, in key order, and the store's revision.
    pub async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let (key, end) = range_of_prefix(prefix);
        let answer: wire::RangeAnswer = self
            .call("/v3/kv/range", &wire::range_request(&key, Some(&end)))
            .await?;
        let revision = answer.header.revision;
        Ok((answer.into_kvs(), revision))
    }

    /// Writes `key` (bound to `lease` unless 0); the revision of the write.
    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let answer: wire::PutAnswer = self
            .call_with_lease(
                "/v3/kv/put",
                &wire::put_request(key.as_bytes(), value, lease),
                lease,
            )
            .await?;
        Ok(answer.header.revision)
    }

    async fn txn(
        &self,
        key: &str,
        compare: Compare,
        success: Value,
        lease: i64,
    ) -> Result<TxnOutcome, EtcdError> {
        let body = wire::txn_request(key.as_bytes(), compare, success);
        let answer: wire::TxnAnswer = self.call_with_lease("/v3/kv/txn", &body, lease).await?;
        Ok(TxnOutcome {
            succeeded: answer.succeeded,
            revision: answer.header.revision,
            current: answer.current(),
        })
    }

    /// Writes `key` only if it does not exist; else `current` is its holder.
    pub async fn create(
        &self,
        key: &str,
        value: &[u8],
        lease: i64,
    ) -> Result<TxnOutcome, EtcdError> {
        let put = json!({ "request_put": wire::put_request(key.as_bytes(), value, lease) });
        self.txn(key, Compare::Create(0), put, lease).await
    }

    /// Writes `key` only if its last write was at `expected_mod_revision`.
    pub async fn replace(
        &self,
        key: &str,
        expected_mod_revision: i64,
        value: &[u8],
        lease: i64,
    ) -> Result<TxnOutcome, EtcdError> {
        let put = json!({ "request_put": wire::put_request(key.as_bytes(), value, lease) });
        self.txn(key, Compare::Mod(expected_mod_revision), put, lease)
            .await
    }

    /// Deletes `key` only if its last write was at `expected_mod_revision`.
    pub async fn delete_if(
        &self,
        key: &str,
        expected_mod_revision: i64,
    ) -> Result<TxnOutcome, EtcdError> {
        let delete = json!({ "request_delete_range": wire::range_request(key.as_bytes(), None) });
        self.txn(key, Compare::Mod(expected_mod_revision), delete, 0)
            .await
    }

    /// Watches `key` (every key under it when `prefix`) from `start_revision`
    /// (0: from now), on a connection of its own.
    pub async fn watch(
        &self,
        key: &str,
        prefix: bool,
        start_revision: i64,
    ) -> Result<Watch, EtcdError> {
        let path = "/v3/watch";
        let body = if prefix {
            let (key, end) = range_of_prefix(key);
            wire::watch_request(&key, Some(&end), start_revision)
        } else {
            wire::watch_request(key.as_bytes(), None, start_revision)
        };
        let stream = self
            .transport
            .stream(Method::POST, path, Bytes::from(body.to_string()))
            .await?;
        if !stream.status.is_success() {
            let endpoint = stream.endpoint.clone();
            let status = stream.status;
            let body = read_to_end(stream.body, &endpoint).await?;
            return Err(status_error(&endpoint, path, status, &body));
        }
        Ok(Watch {
            endpoint: stream.endpoint,
            body: stream.body,
            buffer: Vec::new(),
            _task: stream.task,
        })
    }

    /// The v2 key `key` (`None` when it does not exist) and etcd's v2 index
    /// (`X-Etcd-Index`), read through the leader (`quorum=true`).
    pub async fn v2_get(&self, key: &str) -> Result<(Option<V2Node>, u64), EtcdError> {
        let path = format!("{}?quorum=true", wire::v2_path(key));
        let reply = self
            .transport
            .unary(Method::GET, &path, Bytes::new())
            .await?;
        let index = reply
            .headers
            .get("x-etcd-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if reply.status == StatusCode::NOT_FOUND {
            if let Ok(error) = serde_json::from_slice::<wire::V2Error>(&reply.body) {
                if error.error_code == wire::V2_KEY_NOT_FOUND {
                    return Ok((None, index.unwrap_or(error.index)));
                }
            }
        }
        if !reply.status.is_success() {
            return Err(status_error(
                &reply.endpoint,
                &path,
                reply.status,
                &reply.body,
            ));
        }
        let Some(index) = index else {
            return Err(EtcdError::Decode {
                endpoint: reply.endpoint,
                path,
                what: "no X-Etcd-Index header (is this etcd's v2 API?)".into(),
            });
        };
        let answer: wire::V2Answer = decode(&reply.endpoint, &path, &reply.body)?;
        let node = answer.into_node().map_err(|what| EtcdError::Decode {
            endpoint: reply.endpoint,
            path,
            what,
        })?;
        Ok((node, index))
    }

    /// Waits for the first v2 event on `key` at or after `wait_index`, on a
    /// connection of its own and without a time limit (drop the future to
    /// stop waiting).
    pub async fn v2_wait(&self, key: &str, wait_index: u64) -> Result<V2Change, EtcdError> {
        let path = format!("{}?wait=true&waitIndex={wait_index}", wire::v2_path(key));
        let stream = self
            .transport
            .stream(Method::GET, &path, Bytes::new())
            .await?;
        let endpoint = stream.endpoint;
        let status = stream.status;
        // The connection lives until the answer is read.
        let _task = stream.task;
        let body = read_to_end(stream.body, &endpoint).await?;
        if !status.is_success() {
            if let Ok(error) = serde_json::from_slice::<wire::V2Error>(&body) {
                if error.error_code == wire::V2_EVENT_INDEX_CLEARED {
                    return Err(EtcdError::V2IndexCleared {
                        endpoint,
                        index: error.index,
                    });
                }
            }
            return Err(status_error(&endpoint, &path, status, &body));
        }
        // etcd ends a long poll with an empty answer when it drops the watcher
        // (a member shutting down).
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(EtcdError::WatchClosed { endpoint });
        }
        let answer: wire::V2Answer = decode(&endpoint, &path, &body)?;
        answer.into_change().map_err(|what| EtcdError::Decode {
            endpoint,
            path,
            what,
        })
    }
}

/// The key and range end that select every key starting with `prefix`; an
/// empty prefix is every key ("\0" to "\0", as etcd spells it).
fn range_of_prefix(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (vec![0], vec![0]);
    }
    (
        prefix.as_bytes().to_vec(),
        wire::prefix_end(prefix.as_bytes()),
    )
}

/// Largest single watch message buffered: far above any batch on a few keys.
const MAX_WATCH_MESSAGE: usize = 16 << 20;

async fn read_to_end(body: hyper::body::Incoming, endpoint: &str) -> Result<Bytes, EtcdError> {
    let limited = http_body_util::Limited::new(body, MAX_WATCH_MESSAGE);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(EtcdError::Transport {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// A v3 watch: one stream of messages, on a connection of its own that closes
/// when this is dropped.
pub struct Watch {
    endpoint: String,
    body: hyper::body::Incoming,
    /// Bytes of a message not yet complete.
    buffer: Vec<u8>,
    _task: ConnectionTask,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// The endpoint this watch streams from.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The next message: events, or an empty batch for the watch's creation
    /// and for progress notifications. Compaction past the start revision is
    /// [`EtcdError::Compacted`]; the end of the stream [`EtcdError::WatchClosed`].
    pub async fn next(&mut self) -> Result<WatchBatch, EtcdError> {
        loop {
            if let Some(message) = self.take_message()? {
                return wire::watch_batch(&self.endpoint, message);
            }
            match self.body.frame().await {
                None => {
                    return Err(EtcdError::WatchClosed {
                        endpoint: self.endpoint.clone(),
                    })
                }
                Some(Err(e)) => {
                    return Err(match error::tls_cause(&e) {
                        Some(reason) => EtcdError::Tls {
                            endpoint: self.endpoint.clone(),
                            reason,
                        },
                        None => EtcdError::Transport {
                            endpoint: self.endpoint.clone(),
                            reason: error::chain(&e),
                        },
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if self.buffer.len() + data.len() > MAX_WATCH_MESSAGE {
                            return Err(self.malformed(format!(
                                "a message longer than {MAX_WATCH_MESSAGE} bytes"
                            )));
                        }
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The first whole JSON message in the buffer, if there is one. The
    /// gateway ends each with a newline; this does not rely on it.
    fn take_message(&mut self) -> Result<Option<wire::WatchMessage>, EtcdError> {
        let mut messages =
            serde_json::Deserializer::from_slice(&self.buffer).into_iter::<wire::WatchMessage>();
        match messages.next() {
            None => {
                self.buffer.clear();
                Ok(None)
            }
            Some(Ok(message)) => {
                let used = messages.byte_offset();
                self.buffer.drain(..used);
                Ok(Some(message))
            }
            Some(Err(e)) if e.is_eof() => Ok(None),
            Some(Err(e)) => Err(self.malformed(e.to_string())),
        }
    }

    fn malformed(&self, what: String) -> EtcdError {
        EtcdError::Decode {
            endpoint: self.endpoint.clone(),
            path: "/v3/watch".into(),
            what,
        }
    }
}
