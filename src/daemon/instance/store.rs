//! The etcd side of an instance whose VIPs etcd decides (the core's rule
//! 19): carries out the seat's requests with the etcd client, each in a task
//! of its own timed from when it was sent, and runs the watch that feeds the
//! seat its view of the keys. No rule lives here (they are in
//! [`crate::store`]); the results go back to the instance's task as
//! [`StoreInput`]s.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::clock;
use crate::config::{EtcdConfig, InstanceConfig, PatroniDcs};
use crate::daemon::error_chain;
use crate::etcd::{Client, EtcdError, EventKind, KeyValue};
use crate::store::{
    holder_key, instance_dir, member_key, KeyRecord, StoreAction, StoreInput, StoreNotice, View,
    Write, RETRY_AFTER,
};

/// What the watch reads.
#[derive(Clone, Debug)]
enum Watched {
    /// vipd's holder key and member records under `PREFIX/INSTANCE`.
    Directory(String),
    /// Patroni's leader key, through the v3 API.
    Leader(String),
    /// Patroni's leader key, through the v2 keys API.
    LeaderV2(String),
}

/// One instance's etcd client, its watch and its requests in flight.
#[derive(Debug)]
pub(in crate::daemon) struct StoreIo {
    client: Client,
    results: mpsc::UnboundedSender<StoreInput>,
    /// `PREFIX/INSTANCE`: where vipd's keys for this instance are.
    dir: String,
    node: String,
    /// The key that decides, for status.
    key: String,
    watch: JoinHandle<()>,
    /// The lease to revoke once the VIPs are released (at the stop).
    revoke: Option<i64>,
    request_timeout: Duration,
}

impl StoreIo {
    /// Opens the client (no I/O: the certificate files are read and
    /// checked) and starts the watch. The results arrive on the receiver.
    pub(in crate::daemon) fn start(
        cfg: &InstanceConfig,
        etcd: &EtcdConfig,
        node: &str,
    ) -> Result<(Self, mpsc::UnboundedReceiver<StoreInput>), EtcdError> {
        let client = Client::new(etcd.client_settings())?;
        let dir = instance_dir(&etcd.prefix, &cfg.name);
        let watched = match cfg.store.as_ref().and_then(|s| s.follow.as_ref()) {
            None => Watched::Directory(dir.clone()),
            Some(f) if f.dcs == PatroniDcs::Etcd2 => Watched::LeaderV2(f.leader_key()),
            Some(f) => Watched::Leader(f.leader_key()),
        };
        let key = match &watched {
            Watched::Directory(d) => holder_key(d),
            Watched::Leader(k) | Watched::LeaderV2(k) => k.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        // Following Patroni, a stale watch could keep the VIPs on a node
        // Patroni no longer leads from: it is checked as often as the
        // lease is renewed.
        let leader_audit = cfg
            .store
            .as_ref()
            .map_or(DIRECTORY_AUDIT, |s| (s.lease_ttl / 4).max(RETRY_AFTER));
        let watch = tokio::spawn(watch(client.clone(), watched, tx.clone(), leader_audit));
        Ok((
            Self {
                client,
                results: tx,
                dir,
                node: node.to_owned(),
                key,
                watch,
                revoke: None,
                request_timeout: etcd.request_timeout,
            },
            rx,
        ))
    }

    pub(in crate::daemon) fn endpoint(&self) -> String {
        self.client.endpoint()
    }

    pub(in crate::daemon) fn key(&self) -> &str {
        &self.key
    }

    /// Carries out one request of the seat's; its result comes back later.
    pub(in crate::daemon) fn execute(&mut self, action: StoreAction) {
        let client = self.client.clone();
        let tx = self.results.clone();
        let sent_at = clock::now();
        let holder = holder_key(&self.dir);
        match action {
            StoreAction::Grant { ttl_secs } => {
                tokio::spawn(async move {
                    let input = match client.grant(ttl_secs).await {
                        Ok(lease) => StoreInput::Granted {
                            sent_at,
                            lease: lease.id,
                            ttl: Duration::from_secs(u64::try_from(lease.ttl_secs).unwrap_or(0)),
                        },
                        Err(e) => StoreInput::GrantFailed {
                            why: error_chain(&e),
                        },
                    };
                    let _ = tx.send(input);
                });
            }
            StoreAction::KeepAlive { lease } => {
                tokio::spawn(async move {
                    let input = match client.keep_alive(lease).await {
                        Ok(_) => StoreInput::KeptAlive { sent_at, lease },
                        Err(e) => StoreInput::KeepAliveFailed {
                            lease,
                            gone: matches!(e, EtcdError::LeaseGone { .. }),
                            why: error_chain(&e),
                        },
                    };
                    let _ = tx.send(input);
                });
            }
            StoreAction::Publish { lease, info } => {
                let key = member_key(&self.dir, &self.node);
                self.write(Write::Publish, async move {
                    client.put(&key, &info.to_json(), lease).await.map(|_| true)
                });
            }
            StoreAction::Campaign { lease } => {
                let node = self.node.clone();
                self.write(Write::Campaign, async move {
                    client
                        .create(&holder, node.as_bytes(), lease)
                        .await
                        .map(|t| t.succeeded)
                });
            }
            StoreAction::HandOver {
                to,
                to_lease,
                expected,
            } => {
                self.write(Write::HandOver, async move {
                    client
                        .replace(&holder, expected, to.as_bytes(), to_lease)
                        .await
                        .map(|t| t.succeeded)
                });
            }
            StoreAction::Resign { expected } => {
                self.write(Write::Resign, async move {
                    client
                        .delete_if(&holder, expected)
                        .await
                        .map(|t| t.succeeded)
                });
            }
            // After the VIPs are gone: see `finish`.
            StoreAction::Revoke { lease } => self.revoke = Some(lease),
        }
    }

    /// Runs one write in a task of its own; its outcome (whether its
    /// condition held) comes back as [`StoreInput::Written`].
    fn write(
        &self,
        write: Write,
        work: impl std::future::Future<Output = Result<bool, EtcdError>> + Send + 'static,
    ) {
        let tx = self.results.clone();
        tokio::spawn(async move {
            let outcome = work.await.map_err(|e| error_chain(&e));
            let _ = tx.send(StoreInput::Written { write, outcome });
        });
    }

    /// At the stop, after the VIP worker released: revoke the lease (its
    /// keys go with it, so the next holder need not wait for it to expire),
    /// bounded by the request timeout per endpoint.
    pub(in crate::daemon) async fn finish(mut self, instance: &str) {
        self.watch.abort();
        if let Some(lease) = self.revoke.take() {
            let bound = self.request_timeout * 2;
            match tokio::time::timeout(bound, self.client.revoke(lease)).await {
                Ok(Ok(())) => tracing::info!(%instance, lease, "etcd lease revoked"),
                Ok(Err(e)) => {
                    tracing::warn!(%instance, lease, error = %error_chain(&e), "revoking the etcd lease failed; it expires after lease_ttl");
                }
                Err(_) => {
                    tracing::warn!(%instance, lease, "revoking the etcd lease took too long; it expires after lease_ttl");
                }
            }
        }
    }
}

impl Drop for StoreIo {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

/// Reads the watched keys, then follows every change, for the life of the
/// instance; after a failure it says the view is stale and starts again.
async fn watch(
    client: Client,
    watched: Watched,
    tx: mpsc::UnboundedSender<StoreInput>,
    leader_audit: Duration,
) {
    loop {
        let why = match &watched {
            Watched::Directory(dir) => follow_directory(&client, dir, &tx, DIRECTORY_AUDIT).await,
            Watched::Leader(key) => follow_leader(&client, key, &tx, leader_audit).await,
            Watched::LeaderV2(key) => follow_leader_v2(&client, key, &tx, leader_audit).await,
        };
        if tx
            .send(StoreInput::ViewLost {
                why: error_chain(&why),
            })
            .is_err()
        {
            return;
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// How often vipd's own keys, as watched, are checked against a
/// linearizable read. A watch on a member cut off from the others stays
/// open and silent; the holder's safety does not rest on it (its lease
/// does), only a backup's noticing the key is free.
const DIRECTORY_AUDIT: Duration = Duration::from_secs(5);

/// The timer of the check against a linearizable read: first after
/// `every`, then every `every` after the last check ended (a slow read
/// does not make the checks bunch up).
fn audit_timer(every: Duration) -> tokio::time::Interval {
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

/// The error that restarts a watch whose view a linearizable read
/// contradicts (its member is behind: cut off from the others, most likely).
fn stale(watch: &crate::etcd::Watch) -> EtcdError {
    EtcdError::WatchCanceled {
        endpoint: watch.endpoint().to_owned(),
        reason: "the watched keys differ from a linearizable read: this member is behind (cut off from the others?); watching again".to_owned(),
    }
}

/// Hands a view to the instance; an error when the instance is gone.
fn send_view(
    client: &Client,
    tx: &mpsc::UnboundedSender<StoreInput>,
    view: View,
) -> Result<(), EtcdError> {
    tx.send(StoreInput::View(view))
        .map_err(|_| EtcdError::WatchClosed {
            endpoint: client.endpoint(),
        })
}

fn view_of(dir: &str, keys: &BTreeMap<String, KeyValue>) -> View {
    View::from_keys(
        dir,
        keys.values().map(|kv| {
            (
                kv.key.as_str(),
                kv.value.as_slice(),
                kv.lease,
                kv.mod_revision,
            )
        }),
    )
}

/// vipd's keys: a snapshot, then the watch from the revision after it.
async fn follow_directory(
    client: &Client,
    dir: &str,
    tx: &mpsc::UnboundedSender<StoreInput>,
    every: Duration,
) -> EtcdError {
    let prefix = format!("{dir}/");
    let (kvs, revision) = match client.get_prefix(&prefix).await {
        Ok(x) => x,
        Err(e) => return e,
    };
    let mut keys: BTreeMap<String, KeyValue> =
        kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
    if let Err(closed) = send_view(client, tx, view_of(dir, &keys)) {
        return closed;
    }
    let mut watch = match client.watch(&prefix, true, revision + 1).await {
        Ok(w) => w,
        Err(e) => return e,
    };
    let mut audit = audit_timer(every);
    loop {
        let batch = tokio::select! {
            batch = watch.next() => match batch {
                Ok(b) => b,
                Err(e) => return e,
            },
            _ = audit.tick() => {
                let fresh = match client.get_prefix(&prefix).await {
                    Ok((kvs, _)) => kvs,
                    Err(e) => return e,
                };
                let revisions = |kvs: &mut dyn Iterator<Item = &KeyValue>| {
                    kvs.map(|kv| (kv.key.clone(), kv.mod_revision)).collect::<BTreeMap<_, _>>()
                };
                if revisions(&mut fresh.iter()) != revisions(&mut keys.values()) {
                    return stale(&watch);
                }
                continue;
            }
        };
        if batch.events.is_empty() {
            continue;
        }
        for event in batch.events {
            match event.kind {
                EventKind::Put => {
                    keys.insert(event.kv.key.clone(), event.kv);
                }
                EventKind::Delete => {
                    keys.remove(&event.kv.key);
                }
            }
        }
        if let Err(closed) = send_view(client, tx, view_of(dir, &keys)) {
            return closed;
        }
    }
}

fn record(kv: &KeyValue) -> KeyRecord {
    KeyRecord {
        value: String::from_utf8_lossy(&kv.value).into_owned(),
        lease: kv.lease,
        mod_revision: kv.mod_revision,
    }
}

/// Patroni's leader key through the v3 API.
async fn follow_leader(
    client: &Client,
    key: &str,
    tx: &mpsc::UnboundedSender<StoreInput>,
    every: Duration,
) -> EtcdError {
    let (kv, revision) = match client.get(key).await {
        Ok(x) => x,
        Err(e) => return e,
    };
    if let Err(closed) = send_view(client, tx, View::leader(kv.as_ref().map(record))) {
        return closed;
    }
    let mut watch = match client.watch(key, false, revision + 1).await {
        Ok(w) => w,
        Err(e) => return e,
    };
    // Patroni renews the key's lease, not the key: its value says who leads.
    let mut seen = kv.map(|kv| kv.value);
    let mut audit = audit_timer(every);
    loop {
        let batch = tokio::select! {
            batch = watch.next() => match batch {
                Ok(b) => b,
                Err(e) => return e,
            },
            _ = audit.tick() => {
                match client.get(key).await {
                    Ok((kv, _)) if kv.as_ref().map(|kv| &kv.value) == seen.as_ref() => continue,
                    Ok(_) => return stale(&watch),
                    Err(e) => return e,
                }
            }
        };
        let Some(last) = batch.events.last() else {
            continue;
        };
        seen = match last.kind {
            EventKind::Put => Some(last.kv.value.clone()),
            EventKind::Delete => None,
        };
        let leader = match last.kind {
            EventKind::Put => Some(record(&last.kv)),
            EventKind::Delete => None,
        };
        if let Err(closed) = send_view(client, tx, View::leader(leader)) {
            return closed;
        }
    }
}

/// Patroni's leader key through the v2 keys API: a read, then long polls.
async fn follow_leader_v2(
    client: &Client,
    key: &str,
    tx: &mpsc::UnboundedSender<StoreInput>,
    every: Duration,
) -> EtcdError {
    let (node, mut index) = match client.v2_get(key).await {
        Ok(x) => x,
        Err(e) => return e,
    };
    let v2_record = |value: String, modified: u64| KeyRecord {
        value,
        lease: 0,
        mod_revision: i64::try_from(modified).unwrap_or(i64::MAX),
    };
    // Patroni rewrites the key every loop_wait to renew its TTL: its value
    // says who leads.
    let mut seen = node.as_ref().map(|n| n.value.clone());
    let leader = node.map(|n| v2_record(n.value, n.modified_index));
    if let Err(closed) = send_view(client, tx, View::leader(leader)) {
        return closed;
    }
    let mut audit = audit_timer(every);
    loop {
        let change = tokio::select! {
            change = client.v2_wait(key, index + 1) => match change {
                Ok(c) => c,
                Err(e) => return e,
            },
            // The long poll is dropped and asked again after the check:
            // a member cut off from the others answers it never.
            _ = audit.tick() => {
                match client.v2_get(key).await {
                    Ok((node, _)) if node.as_ref().map(|n| &n.value) == seen.as_ref() => continue,
                    Ok(_) => {
                        return EtcdError::WatchCanceled {
                            endpoint: client.endpoint(),
                            reason: "Patroni's leader key differs from a quorum read: the long poll's member is behind; asking again".to_owned(),
                        }
                    }
                    Err(e) => return e,
                }
            }
        };
        index = change.index;
        seen = change.node.as_ref().map(|n| n.value.clone());
        let leader = change.node.map(|n| v2_record(n.value, n.modified_index));
        if let Err(closed) = send_view(client, tx, View::leader(leader)) {
            return closed;
        }
    }
}

impl super::Instance {
    /// One log line per change the seat reports.
    pub(super) fn on_store_notice(&mut self, instance: &str, notice: StoreNotice) {
        let endpoint = self
            .store_io
            .as_ref()
            .map(StoreIo::endpoint)
            .unwrap_or_default();
        match notice {
            StoreNotice::Reachable { lease } => {
                tracing::info!(%instance, %endpoint, lease, "etcd reachable: lease granted or renewed");
            }
            StoreNotice::Unreachable { why } => {
                tracing::warn!(%instance, %endpoint, error = %why, "etcd request failed; retrying (logged once until a request succeeds)");
            }
            StoreNotice::Unvouched => {
                tracing::error!(%instance, "store_unreachable = \"fail-open\": holding the VIPs while etcd cannot vouch for this node; another node may hold them too");
            }
            StoreNotice::Vouched => {
                tracing::info!(%instance, "etcd vouches for this node again");
            }
            StoreNotice::ForeignHolder { value, lease } => {
                tracing::warn!(%instance, holder = %value, lease,
                    "the holder key names {value:?} under lease {lease}, which no vipd member of this instance wrote; nobody claims on it (is another writer using this prefix?)");
            }
            StoreNotice::BadMember { key } => {
                tracing::warn!(%instance, %key, "a member record under the instance's prefix does not parse; ignored");
            }
            StoreNotice::WatchLost { why } => {
                tracing::warn!(%instance, %endpoint, error = %why, "etcd watch lost; the view is stale until it is back (no campaign from it)");
            }
            StoreNotice::WatchBack => {
                tracing::info!(%instance, %endpoint, "etcd watch back");
            }
        }
    }
}
