//! What every instance's driver shares with the others and the supervisor:
//! the node's configuration and boot id, the advert sequence, netlink, the
//! advert sockets, the sync board, metrics, the event stream, the replay
//! book and the state directory.
//!
//! What it may not touch: any instance's core; it is plumbing.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};

use super::notify;
use super::replay_book::ReplayBook;
use super::state::StateDir;
use crate::config;
use crate::control::TransitionEvent;
use crate::election::State;
use crate::health::SyncEntry;
use crate::metrics::Metrics;
use crate::net::netlink::{NetEvent, Netlink};
use crate::net::transport::Transports;

/// What every instance's driver shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) node: config::NodeConfig,
    pub(super) boot_id: u64,
    /// One sequence for all instances of this boot, so an instance restarted by a
    /// reload keeps counting up and its peers' replay guards accept it.
    pub(super) sequence: AtomicU64,
    pub(super) netlink: Netlink,
    pub(super) transports: Transports,
    pub(super) net_events: broadcast::Sender<NetEvent>,
    /// Instance name → state, for sd_notify's STATUS line.
    pub(super) states: Mutex<BTreeMap<String, State>>,
    /// Instance name → its own fault (not counting sync-group faults), for the
    /// other members of its sync group.
    pub(super) sync: watch::Sender<BTreeMap<String, SyncEntry>>,
    /// Counters for `GET /metrics`, one set per instance.
    pub(super) metrics: Arc<Metrics>,
    /// State changes for `vipd events`.
    pub(super) events: broadcast::Sender<TransitionEvent>,
    /// Every instance's replay checkpoint, written as one file.
    pub(super) replay_book: ReplayBook,
    /// The state directory: a drain the instance rolled back is unsaved there.
    pub(super) state_dir: StateDir,
}

impl Shared {
    pub(super) fn set_state(&self, instance: &str, state: Option<State>) {
        if let Ok(mut states) = self.states.lock() {
            match state {
                Some(s) => states.insert(instance.to_owned(), s),
                None => states.remove(instance),
            };
        }
        self.update_status();
    }

    pub(super) fn update_status(&self) {
        let line = match self.states.lock() {
            Ok(states) if states.is_empty() => "no instances".to_owned(),
            Ok(states) => states
                .iter()
                .map(|(name, state)| format!("{name}: {state}"))
                .collect::<Vec<_>>()
                .join("; "),
            Err(_) => return,
        };
        notify(&[sd_notify::NotifyState::Status(&line)]);
    }
}
