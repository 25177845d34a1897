//! Two nodes with one name: the duplicate-identity rule.
//!
//! The node id is derived from the node name, so two nodes given the same name
//! (cloned VMs, or two hosts left at a default hostname) share it. Without this
//! rule each takes the other's adverts for its own, drops them, and both end up
//! master. The election never sees such an advert: the instance hands every
//! advert carrying its own node id to [`Identity`] before the replay guard (the
//! twin's adverts carry another boot id and would otherwise poison the guard's
//! entry for our own id) and before the election.
//!
//! # The rule
//!
//! An advert with our own node id and another boot id than the one we advertise
//! comes from a **twin** (one with our own boot id is our own, looped back, and
//! is ignored). The first twin heard starts an **episode**, which lasts while
//! some twin was heard within `3 × its advert interval + takeover_margin`. At
//! the start of an episode the roles are fixed, and they hold until it ends:
//!
//! - the node whose boot id is higher (it started later) **stands aside**: its
//!   health gets the fault "node name X is also used by ADDRESS (started
//!   earlier)", so it releases the VIPs if it held them and never claims them,
//!   and its adverts go out with priority 0 and no master flag (a combination
//!   no other node sends: a fault keeps the priority at 1 or more, a master's
//!   release carries the master flag), which tells the twin that it stands aside;
//! - the node that started earlier **holds**: it runs the election as before
//!   and shows "node name X is also used by ADDRESS (started later; it stands
//!   aside)" in `vipd status`, which then exits non-zero.
//!
//! So the pair never ends with two masters, and never with none: when the
//! holder stops, the other's episode ends (at once when it heard the holder's
//! shutting-down advert, else a window after the last advert), its fault
//! clears and it takes over like any backup (after the master-down interval,
//! or at once on the holder's release if it is the best backup). Both log the
//! start and the end of each episode once.
//!
//! # What third nodes see
//!
//! A third node's replay guard accepts, per node id, only boot ids that do not
//! go down. The later twin's first adverts (sent before it heard the holder)
//! carry the higher boot id, so from then on the third node would take the
//! holder's adverts for replays. Hence: once the holder hears its twin stand
//! aside, it raises the boot id it advertises above the twin's, and third nodes
//! accept it again (and now take the twin's adverts for stale replays: they are
//! dropped and counted in `auth failures`, with a "rejected adverts" warning at
//! most every 10 s naming the twin's address). Likewise, when a twin's episode
//! ends it raises its boot id above every twin's it heard before it runs the
//! election again. In between (about one advert interval of each twin) a third
//! node sees the name's adverts as the later twin's (a backup); if the holder
//! was master, a third node may take that for a release and claim, and the
//! usual master-meets-master rule settles it once the holder's raised adverts
//! arrive. The holder waits for the stand-aside signal before raising its boot
//! id so that the twin has surely compared against the holder's original one:
//! raised earlier, the twin could take the holder for the later starter.
//!
//! What it may not touch: the election's rules (it only adds a fault to the
//! health the instance core hands the election, and rewrites the priority of
//! the adverts of a node standing aside), sockets and the clock (`now` comes in).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::election::ElectionConfig;
use crate::wire::{Advert, AdvertBody, Flags};

/// One twin, by the source address of its adverts.
#[derive(Clone, Copy, Debug)]
struct Twin {
    boot_id: u64,
    last_heard: Instant,
    /// How long it may stay silent and still count as heard.
    window: Duration,
    /// Its last advert said it stands aside (priority 0, not master).
    stands_aside: bool,
}

/// This node's role in the running episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Started earlier: keeps running the election.
    Holds,
    /// Started later: in fault until the episode ends.
    StandsAside,
}

/// What changed with an input, for the instance to log and act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityEvent {
    /// An episode started; the text says who and what we do.
    Started { message: String, stands_aside: bool },
    /// The episode ended (no twin heard within its window).
    Ended { message: String, stood_aside: bool },
}

/// The duplicate-identity rule of one instance (see the module docs).
#[derive(Debug)]
pub struct Identity {
    node_name: String,
    /// The boot id this instance advertises: the daemon's, raised above the
    /// twins' as the rule says.
    boot_id: u64,
    takeover_margin: Duration,
    twins: BTreeMap<IpAddr, Twin>,
    role: Option<Role>,
    /// The role taken against each twin boot id heard (at most
    /// [`REMEMBERED_BOOTS`], the lowest dropped first): an episode cut short by
    /// lost adverts must not swap the roles when it starts again, after the
    /// boot ids were raised.
    remembered: BTreeMap<u64, Role>,
}

/// How many twin boot ids [`Identity`] remembers its role against.
const REMEMBERED_BOOTS: usize = 64;

impl Identity {
    /// For the election configured by `cfg`, advertising `boot_id` (the daemon's).
    pub fn new(cfg: &ElectionConfig, boot_id: u64) -> Self {
        Self::with(cfg.node_name.clone(), boot_id, cfg.settings.takeover_margin)
    }

    fn with(node_name: String, boot_id: u64, takeover_margin: Duration) -> Self {
        Self {
            node_name,
            boot_id,
            takeover_margin,
            twins: BTreeMap::new(),
            role: None,
            remembered: BTreeMap::new(),
        }
    }

    /// The boot id to put in our adverts.
    pub fn boot_id(&self) -> u64 {
        self.boot_id
    }

    /// An advert carrying our own node id, from `source`.
    pub fn hear(&mut self, now: Instant, source: IpAddr, advert: &Advert) -> Option<IdentityEvent> {
        if advert.boot_id == self.boot_id {
            // Our own advert, looped back.
            return None;
        }
        let interval = Duration::from_millis(u64::from(advert.body.interval_cs) * 10);
        // A twin shutting down is gone at the next `expire`: the one standing
        // aside need not wait out the window before it may take over.
        let window = if advert.body.flags.contains(Flags::SHUTTING_DOWN) {
            Duration::ZERO
        } else {
            interval * 3 + self.takeover_margin
        };
        let twin = Twin {
            boot_id: advert.boot_id,
            last_heard: now,
            window,
            stands_aside: stands_aside_signal(&advert.body),
        };
        self.twins.insert(source, twin);
        let event = match self.role {
            Some(_) => None,
            None => {
                let role = match self.remembered.get(&advert.boot_id) {
                    Some(role) => *role,
                    None if advert.boot_id > self.boot_id => Role::Holds,
                    None => Role::StandsAside,
                };
                self.role = Some(role);
                Some(IdentityEvent::Started {
                    message: self.conflict().unwrap_or_default(),
                    stands_aside: role == Role::StandsAside,
                })
            }
        };
        if let Some(role) = self.role {
            self.remembered.insert(advert.boot_id, role);
            if self.remembered.len() > REMEMBERED_BOOTS {
                self.remembered.pop_first();
            }
        }
        if self.role == Some(Role::Holds) && twin.stands_aside {
            // The twin has compared against our original boot id and stands
            // aside: third nodes may now be told to prefer us again.
            self.boot_id = self.boot_id.max(twin.boot_id.saturating_add(1));
        }
        event
    }

    /// When the next twin leaves its window (the next [`Self::expire`] that
    /// can change anything).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.twins.values().map(|t| t.last_heard + t.window).min()
    }

    /// Forgets twins not heard within their window; ends the episode when none
    /// is left. Called at its [`Self::next_expiry`] and after every input.
    pub fn expire(&mut self, now: Instant) -> Option<IdentityEvent> {
        let role = self.role?;
        let before = self.conflict().unwrap_or_default();
        let highest = self.twins.values().map(|t| t.boot_id).max().unwrap_or(0);
        self.twins.retain(|_, t| now < t.last_heard + t.window);
        if !self.twins.is_empty() {
            return None;
        }
        self.role = None;
        if role == Role::StandsAside {
            // Third nodes heard the holder's raised boot id last: ours must
            // be above it for them to accept us when we run the election again.
            self.boot_id = self.boot_id.max(highest.saturating_add(1));
        }
        Some(IdentityEvent::Ended {
            message: format!("no longer heard: {before}"),
            stood_aside: role == Role::StandsAside,
        })
    }

    /// The fault this node is in because of a twin, while it stands aside.
    pub fn fault(&self) -> Option<String> {
        (self.role == Some(Role::StandsAside))
            .then(|| self.conflict())
            .flatten()
    }

    /// "node name X is also used by ADDRESS (...)", while an episode runs.
    pub fn conflict(&self) -> Option<String> {
        let role = self.role?;
        let mut text = format!("node name {} is also used by ", self.node_name);
        for (i, source) in self.twins.keys().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            let _ = write!(text, "{source}");
        }
        text.push_str(match role {
            Role::StandsAside => " (started earlier)",
            Role::Holds => " (started later; it stands aside)",
        });
        Some(text)
    }

    /// Our advert as it goes out: while standing aside, priority 0 and no
    /// master flag, the signal the holder waits for. A master's own release
    /// (priority 0, master flag) goes out as it is.
    pub fn outgoing(&self, mut body: AdvertBody) -> AdvertBody {
        if self.role == Some(Role::StandsAside) && !body.flags.contains(Flags::MASTER) {
            body.priority = 0;
        }
        body
    }
}

/// Priority 0 without the master flag: a node standing aside for its twin.
fn stands_aside_signal(body: &AdvertBody) -> bool {
    body.priority == 0 && !body.flags.contains(Flags::MASTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARGIN: Duration = Duration::from_millis(2);

    fn advert(boot_id: u64, priority: u8, master: bool) -> Advert {
        let mut flags = Flags::default();
        flags.set(Flags::MASTER, master);
        Advert {
            body: AdvertBody {
                group: 1,
                priority,
                interval_cs: 10,
                flags,
                node_id: 7,
                promote_epoch: 0,
                vip_digest: [0; 8],
                node_name: "twin".into(),
            },
            boot_id,
            sequence: 1,
        }
    }

    fn addr(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn own_looped_back_advert_is_ignored() {
        let t0 = Instant::now();
        let mut id = Identity::with("twin".into(), 100, MARGIN);
        assert_eq!(id.hear(t0, addr(1), &advert(100, 50, false)), None);
        assert_eq!(id.conflict(), None);
        assert_eq!(id.fault(), None);
    }

    #[test]
    fn the_later_starter_stands_aside_and_the_earlier_holds() {
        let t0 = Instant::now();
        let mut earlier = Identity::with("twin".into(), 100, MARGIN);
        let mut later = Identity::with("twin".into(), 200, MARGIN);

        // The later one hears the earlier one (a master) and stands aside.
        let event = later.hear(t0, addr(1), &advert(100, 50, true));
        assert!(matches!(
            event,
            Some(IdentityEvent::Started {
                stands_aside: true,
                ..
            })
        ));
        assert_eq!(
            later.fault().as_deref(),
            Some("node name twin is also used by 10.0.0.1 (started earlier)")
        );
        let mut body = advert(200, 50, false).body;
        body = later.outgoing(body);
        assert_eq!(body.priority, 0, "standing aside says priority 0");
        let mut release = advert(200, 0, true).body;
        release = later.outgoing(release);
        assert!(release.flags.contains(Flags::MASTER));

        // The earlier one hears the later one's first advert (not yet aside).
        let event = earlier.hear(t0, addr(2), &advert(200, 50, false));
        assert!(matches!(
            event,
            Some(IdentityEvent::Started {
                stands_aside: false,
                ..
            })
        ));
        assert_eq!(earlier.fault(), None);
        assert_eq!(
            earlier.conflict().as_deref(),
            Some("node name twin is also used by 10.0.0.2 (started later; it stands aside)")
        );
        assert_eq!(
            earlier.boot_id(),
            100,
            "no raise before the twin stands aside"
        );
        assert_eq!(earlier.outgoing(advert(100, 50, false).body).priority, 50);

        // Once it stands aside, the holder raises its boot id above the twin's ...
        assert_eq!(earlier.hear(t0, addr(2), &advert(200, 0, false)), None);
        assert_eq!(earlier.boot_id(), 201);
        // ... and the twin, whose role is fixed for the episode, stays aside.
        assert_eq!(later.hear(t0, addr(1), &advert(201, 50, true)), None);
        assert!(later.fault().is_some());
    }

    #[test]
    fn the_episode_ends_a_window_after_the_twin_was_last_heard() {
        let t0 = Instant::now();
        let mut later = Identity::with("twin".into(), 200, MARGIN);
        later.hear(t0, addr(1), &advert(100, 50, true));
        later.hear(t0, addr(1), &advert(201, 50, true));
        // 100 ms adverts: the window is 302 ms.
        assert_eq!(later.expire(t0 + Duration::from_millis(301)), None);
        assert!(later.fault().is_some());
        let event = later.expire(t0 + Duration::from_millis(302));
        assert!(matches!(
            event,
            Some(IdentityEvent::Ended {
                stood_aside: true,
                ..
            })
        ));
        assert_eq!(later.fault(), None);
        assert_eq!(later.conflict(), None);
        assert_eq!(
            later.boot_id(),
            202,
            "raised above the holder's raised boot id"
        );
        assert_eq!(later.outgoing(advert(202, 50, false).body).priority, 50);
        // Nothing running: nothing to end.
        assert_eq!(later.expire(t0 + Duration::from_secs(5)), None);
    }

    #[test]
    fn a_twin_shutting_down_ends_the_episode_at_once() {
        let t0 = Instant::now();
        let mut later = Identity::with("twin".into(), 200, MARGIN);
        later.hear(t0, addr(1), &advert(100, 50, true));
        assert!(later.fault().is_some());
        let mut bye = advert(201, 0, true);
        bye.body.flags.set(Flags::SHUTTING_DOWN, true);
        bye.sequence = 2;
        later.hear(t0, addr(1), &bye);
        assert!(matches!(
            later.expire(t0),
            Some(IdentityEvent::Ended { .. })
        ));
        assert_eq!(later.fault(), None);
    }

    #[test]
    fn a_restarted_twin_meets_the_one_that_stayed() {
        let t0 = Instant::now();
        // The former later starter has run alone since, with boot 202; the
        // former holder restarts with a fresh (higher) boot id.
        let mut stayed = Identity::with("twin".into(), 202, MARGIN);
        let mut restarted = Identity::with("twin".into(), 5_000, MARGIN);
        restarted.hear(t0, addr(2), &advert(202, 50, true));
        stayed.hear(t0, addr(1), &advert(5_000, 50, false));
        assert!(restarted.fault().is_some(), "the newcomer stands aside");
        assert_eq!(stayed.fault(), None, "the running node keeps running");
    }

    #[test]
    fn an_episode_cut_short_by_loss_keeps_the_roles() {
        let t0 = Instant::now();
        let mut earlier = Identity::with("twin".into(), 100, MARGIN);
        let mut later = Identity::with("twin".into(), 200, MARGIN);
        later.hear(t0, addr(1), &advert(100, 50, true));
        earlier.hear(t0, addr(2), &advert(200, 0, false));
        later.hear(t0, addr(1), &advert(201, 50, true));
        assert_eq!((earlier.boot_id(), later.boot_id()), (201, 200));
        // Both lose each other for a while: both episodes end; the later one
        // raises its boot id above the holder's.
        let t1 = t0 + Duration::from_secs(1);
        assert!(earlier.expire(t1).is_some());
        assert!(later.expire(t1).is_some());
        assert_eq!(later.boot_id(), 202);
        // They hear each other again: the later one sees boot 201, lower than
        // its own now, but it stood aside for it before and does again.
        later.hear(t1, addr(1), &advert(201, 50, true));
        earlier.hear(t1, addr(2), &advert(202, 50, false));
        assert!(later.fault().is_some());
        assert!(earlier.fault().is_none());
    }

    #[test]
    fn conflict_names_every_twin() {
        let t0 = Instant::now();
        let mut id = Identity::with("twin".into(), 100, MARGIN);
        id.hear(t0, addr(3), &advert(300, 50, false));
        id.hear(t0, addr(2), &advert(200, 50, false));
        assert_eq!(
            id.conflict().as_deref(),
            Some("node name twin is also used by 10.0.0.2, 10.0.0.3 (started later; it stands aside)")
        );
    }
}
