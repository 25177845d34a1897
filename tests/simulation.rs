//! Deterministic simulation of many election cores on a simulated network.
//!
//! Each seed builds a group of nodes with random priorities, intervals and
//! preempt settings, then alternates chaos episodes (loss up to 30 %, delay and
//! jitter, reordering, duplication, partitions, crashes, restarts, priority
//! changes, faults, drains and promotes) with calm ones (connected, loss-free,
//! sub-millisecond jitter), during which it crashes, drains and promotes on
//! purpose. Invariants are checked after every event:
//!
//! 1. calm for the settle window ⇒ exactly one master, the best eligible node
//!    (with preempt off: an eligible one);
//! 2. a master crash on a calm network ⇒ a new master within the best survivor's
//!    master-down interval + one advert interval;
//! 3. calm and untouched for the settle window ⇒ no state change at all;
//! 4. calm, no crash or restart ⇒ never without a master for longer than one advert
//!    interval while an eligible node lives (drains hand over make-before-break);
//! 5. a node in fault, or drained for longer than its handover bound, is never
//!    master; and a node holds the VIPs exactly when it is master;
//! 6. clients follow the master: a client whose ARP entry names a node that does
//!    not hold the VIPs while some node does is *misdirected*, and a misdirection
//!    that begins on a calm network ends within
//!    `advert_interval + STEP_DOWN_LINGER + 2 × (delay + jitter)` — the calm
//!    network's fixed delay plus its largest jitter, twice: the other node's
//!    advert reaching the master, then the master's gratuitous ARP reaching the
//!    client. Misdirection that begins during chaos (loss in both directions: a
//!    master that heard none of the other's master adverts cannot know) is
//!    measured and reported but not asserted, and so is misdirection that chaos
//!    caused though it shows after the network calmed down: towards a node that
//!    began stepping down during chaos (its step-down advert may have been
//!    lost, so the master may never have heard it as master), or by a
//!    gratuitous ARP sent during chaos that landed after it. One still running
//!    when chaos starts must not already be over the bound. The partition heals
//!    (`become_calm`) and the crashes, drains and promotes of calm episodes are
//!    all checked.
//!
//! # Clients and announcements
//!
//! The sim carries out the announcement actions as the daemon's VIP worker does
//! (`src/daemon/vips.rs`), with the config defaults of `[instance.announce]`:
//! [`Action::AnnounceVips`] starts a schedule (a burst of `announce_count`
//! gratuitous ARPs `announce_interval` apart, the first at once; a second burst
//! `announce_repeat_after` later; a refresh round every `announce_refresh`),
//! replacing any schedule running; [`Action::ReannounceVips`] sends one round
//! now; [`Action::StopAnnouncing`], [`Action::ReleaseVips`] and a crash cancel
//! the rounds not yet sent (those already on the wire still land).
//!
//! A few clients sit on the switch and reach every node: partitions cut nodes
//! off from each other only (as in the lab test, where nftables drops
//! node-to-node adverts while the client reaches both). A gratuitous ARP reaches
//! every client after the network's delay and jitter and is never lost: the
//! random loss models lost adverts, and a lost announcement would make any
//! bound on misdirection a matter of luck rather than of the election's rules.
//! Each client keeps one ARP entry (a node): the latest gratuitous ARP it
//! receives sets it, and it expires `arp_timeout` (per profile) after it was
//! last set. A client without an entry resolves at once (the ARP request's
//! round trip is not modelled) to a node holding the VIPs (picked from the clients' own random stream when several do, so the
//! election's random stream, and thus every seed's history, is the same as
//! without clients).
//!
//! `VIPD_SIM_SEEDS=5000` runs more seeds; `VIPD_SIM_SEED=1234` replays one.
//! Every failure prints its seed and the command that replays it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vipd::config::defaults;
use vipd::election::{
    Action, Command, Election, ElectionConfig, Health, Settings, State, STEP_DOWN_LINGER,
};
use vipd::wire::{Advert, ReplayGuard};

const MS: Duration = Duration::from_millis(1);

/// Network conditions; `calm()` is connected and loss-free.
#[derive(Clone, Copy, Debug)]
struct Net {
    loss: f64,
    duplicate: f64,
    delay: Duration,
    jitter: Duration,
}

impl Net {
    fn calm(rng: &mut ChaCha8Rng) -> Self {
        Self {
            loss: 0.0,
            duplicate: rng.gen_range(0.0..0.05),
            delay: Duration::from_micros(rng.gen_range(20..400)),
            jitter: Duration::from_micros(rng.gen_range(0..200)),
        }
    }
    fn chaotic(rng: &mut ChaCha8Rng, interval: Duration) -> Self {
        Self {
            loss: rng.gen_range(0.0..0.3),
            duplicate: rng.gen_range(0.0..0.1),
            delay: Duration::from_micros(rng.gen_range(20..3000)),
            // Up to an advert interval of jitter: adverts overtake each other.
            jitter: interval.mul_f64(rng.gen_range(0.0..1.0)),
        }
    }
}

struct Node {
    cfg: ElectionConfig,
    election: Option<Election>,
    boot_id: u64,
    sequence: u64,
    replay: ReplayGuard,
    holds_vips: bool,
    /// The drain survives restarts (the daemon keeps it in its state dir).
    persisted_drain: bool,
    drained_at: Option<Instant>,
    health: Health,
    /// The announcement schedule now running; bumped to cancel its pending
    /// rounds (stop, release, crash, or a new schedule replacing it).
    announce_schedule: u64,
    /// The node began its way out (stopped announcing) during chaos: its
    /// step-down advert may have been lost, and the master may never have
    /// heard it as master.
    left_during_chaos: bool,
}

struct InFlight {
    from: usize,
    to: usize,
    advert: Rc<Advert>,
}

/// Something due at an instant: the simulated network and the clients.
enum Event {
    Advert(InFlight),
    /// A pending round of node `node`'s announcement schedule `schedule` (dropped
    /// if the node has since stopped or restarted it); `then_refresh` re-arms it.
    AnnounceRound {
        node: usize,
        schedule: u64,
        then_refresh: Option<Duration>,
    },
    /// A gratuitous ARP from `from` reaches `client`.
    Garp {
        from: usize,
        client: usize,
        sent_at: Instant,
    },
    /// The client's ARP entry may have expired (at most one pending per client).
    ArpExpiry {
        client: usize,
    },
}

/// A client's ARP entry for the VIPs.
#[derive(Clone, Copy, Debug)]
struct ArpEntry {
    node: usize,
    expires: Instant,
    /// Pointing at `node` since (a refresh from the same node keeps it).
    since: Instant,
    /// Set by a gratuitous ARP sent during chaos that landed after it ended.
    leftover: bool,
}

#[derive(Clone, Copy, Debug)]
struct Misdirection {
    since: Instant,
    /// Invariant 6 applies: it began on a calm network, and chaos had no hand
    /// in it (see the module docs) for as long as it lasted.
    asserted: bool,
}

#[derive(Default)]
struct Client {
    entry: Option<ArpEntry>,
    expiry_pending: bool,
    misdirected: Option<Misdirection>,
}

/// What the clients went through, summed over seeds for the test output.
#[derive(Clone, Copy, Debug, Default)]
struct ClientFigures {
    misdirections: u64,
    misdirected: Duration,
    /// Longest misdirection invariant 6 asserted on, and its share of its bound.
    longest_asserted: Duration,
    worst_share_of_bound: f64,
    /// Longest misdirection begun during chaos (measured, not asserted).
    longest_unasserted: Duration,
    unasserted: u64,
}

impl ClientFigures {
    fn record(&mut self, took: Duration, asserted: bool, bound: Duration) {
        self.misdirections += 1;
        self.misdirected += took;
        if asserted {
            self.longest_asserted = self.longest_asserted.max(took);
            let share = took.as_secs_f64() / bound.as_secs_f64();
            self.worst_share_of_bound = self.worst_share_of_bound.max(share);
        } else {
            self.unasserted += 1;
            self.longest_unasserted = self.longest_unasserted.max(took);
        }
    }

    fn add(&mut self, other: &Self) {
        self.misdirections += other.misdirections;
        self.misdirected += other.misdirected;
        self.longest_asserted = self.longest_asserted.max(other.longest_asserted);
        self.worst_share_of_bound = self.worst_share_of_bound.max(other.worst_share_of_bound);
        self.longest_unasserted = self.longest_unasserted.max(other.longest_unasserted);
        self.unasserted += other.unasserted;
    }
}

impl std::fmt::Display for ClientFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "clients misdirected {} times, {:.1} ms in total; longest checked {:.1} ms ({:.0} % of its bound); longest during chaos (not checked, {} such) {:.1} ms",
            self.misdirections,
            self.misdirected.as_secs_f64() * 1e3,
            self.longest_asserted.as_secs_f64() * 1e3,
            self.worst_share_of_bound * 100.0,
            self.unasserted,
            self.longest_unasserted.as_secs_f64() * 1e3,
        )
    }
}

struct Sim {
    seed: u64,
    rng: ChaCha8Rng,
    base: Instant,
    now: Instant,
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Node deadlines, possibly stale (see `next_timer`).
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    events: HashMap<u64, Event>,
    next_event: u64,
    net: Net,
    /// Extra loss on adverts delivered to each node (the asymmetric scenario).
    inbound_loss: Vec<f64>,
    clients: Vec<Client>,
    /// The clients' own random stream (jitter, resolution), so the election's
    /// stream is untouched by them.
    client_rng: ChaCha8Rng,
    arp_timeout: Duration,
    /// Invariant 6 applies to misdirections that begin from here (`None` during
    /// chaos). The generic runs follow `calm_since`; the scenarios set it apart.
    clients_checked_since: Option<Instant>,
    /// A node's VIPs or a client's entry changed: re-evaluate the clients.
    clients_dirty: bool,
    /// Carry out `ReannounceVips` (off only to prove invariant 6 bites).
    honour_reannounce: bool,
    client_figures: ClientFigures,
    /// Transitions to master, per node.
    became_master: Vec<u64>,
    /// Partition side per node; `None` when connected.
    sides: Option<Vec<u8>>,
    preempt: bool,
    interval: Duration,
    /// Calm network since this instant (`None` while chaotic).
    calm_since: Option<Instant>,
    /// Last crash, restart, command or health change.
    last_disturbance: Instant,
    /// Last crash or restart.
    last_crash: Instant,
    /// A master crashed on a calm network: a master must exist by then.
    takeover_due: Option<Instant>,
    no_master_since: Option<Instant>,
    had_master: bool,
    events_at_now: u32,
    /// Something changed since the last invariant check.
    dirty: bool,
    next_check: Instant,
    history: Vec<String>,
    state_changes: u64,
    pub simulated: Duration,
}

impl Sim {
    fn new(seed: u64, n: usize, profile: Profile) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let interval = *profile
            .intervals
            .choose(&mut rng)
            .unwrap_or(&Duration::from_secs(1));
        let backup_interval = (interval * *[1u32, 2, 5].choose(&mut rng).unwrap_or(&1))
            .clamp(profile.min_backup_interval, profile.max_backup_interval)
            .max(interval);
        let preempt = rng.gen_bool(0.75);
        let preempt_delay = if rng.gen_bool(0.2) {
            interval * rng.gen_range(1..10)
        } else {
            Duration::ZERO
        };
        // Some seeds share priorities so that node ids must break ties.
        let priority_pool: Vec<u8> = if rng.gen_bool(0.3) {
            vec![100, 100, 150]
        } else {
            (1..=254).collect()
        };
        let base = Instant::now();
        let mut ids = std::collections::HashSet::new();
        let nodes = (0..n)
            .map(|i| {
                let mut node_id = rng.gen::<u64>();
                while !ids.insert(node_id) {
                    node_id = rng.gen();
                }
                let cfg = ElectionConfig {
                    node_id,
                    node_name: format!("n{i}"),
                    group: 7,
                    startup_delay: Duration::ZERO,
                    start_drained: false,
                    route_ready_after: Duration::ZERO,
                    settings: Settings {
                        priority: *priority_pool.choose(&mut rng).unwrap_or(&100),
                        advert_interval: interval,
                        backup_advert_interval: backup_interval,
                        takeover_margin: (2 * MS).min(interval / 2),
                        handover_timeout: interval * 3,
                        preempt,
                        preempt_delay,
                        vip_digest: [1; 8],
                    },
                };
                Node {
                    cfg,
                    election: None,
                    boot_id: 0,
                    sequence: 0,
                    replay: ReplayGuard::new(),
                    holds_vips: false,
                    persisted_drain: false,
                    drained_at: None,
                    health: Health::default(),
                    announce_schedule: 0,
                    left_during_chaos: false,
                }
            })
            .collect();
        let net = Net::calm(&mut rng);
        let client_rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC11E_A7C1_1E47_5EED);
        let mut sim = Self {
            seed,
            rng,
            base,
            now: base,
            nodes,
            queue: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            events: HashMap::new(),
            next_event: 0,
            net,
            inbound_loss: vec![0.0; n],
            clients: (0..CLIENTS).map(|_| Client::default()).collect(),
            client_rng,
            arp_timeout: profile.arp_timeout,
            clients_checked_since: Some(base),
            clients_dirty: true,
            honour_reannounce: true,
            client_figures: ClientFigures::default(),
            became_master: vec![0; n],
            sides: None,
            preempt,
            interval,
            calm_since: Some(base),
            last_disturbance: base,
            last_crash: base,
            takeover_due: None,
            no_master_since: None,
            had_master: false,
            events_at_now: 0,
            dirty: true,
            next_check: base,
            history: Vec::new(),
            state_changes: 0,
            simulated: Duration::ZERO,
        };
        // Nodes boot a little apart, as real ones do.
        for i in 0..n {
            sim.start(i);
        }
        sim
    }

    fn log(&mut self, line: String) {
        if self.history.len() >= 400 {
            self.history.drain(..200);
        }
        let t = self.now - self.base;
        self.history
            .push(format!("{:>12.4}s {line}", t.as_secs_f64()));
    }

    fn fail(&self, what: &str) -> String {
        let mut s = format!(
            "seed {} failed at t={:.4}s: {what}\n",
            self.seed,
            (self.now - self.base).as_secs_f64()
        );
        let _ = writeln!(s, "nodes:");
        for (i, n) in self.nodes.iter().enumerate() {
            match &n.election {
                Some(e) => {
                    let _ = writeln!(
                        s,
                        "  n{i}: {} prio {} eff {} drained {} promoted {} fault {:?} rank {:?}",
                        e.state(),
                        n.cfg.settings.priority,
                        e.effective_priority(),
                        e.is_drained(),
                        e.is_promoted(),
                        e.health().fault,
                        e.rank()
                    );
                }
                None => {
                    let _ = writeln!(s, "  n{i}: crashed");
                }
            }
        }
        let at = |t: Instant| (t - self.base).as_secs_f64();
        for (c, client) in self.clients.iter().enumerate() {
            let _ = write!(s, "  client c{c}: ");
            match client.entry {
                Some(e) => {
                    let _ = write!(s, "on n{} (expires at {:.4}s)", e.node, at(e.expires));
                }
                None => s.push_str("no entry"),
            }
            if let Some(m) = client.misdirected {
                let checked = if m.asserted { "checked" } else { "not checked" };
                let _ = write!(s, ", misdirected since {:.4}s ({checked})", at(m.since));
            }
            s.push('\n');
        }
        let _ = writeln!(s, "last events:");
        for line in self.history.iter().rev().take(60).rev() {
            let _ = writeln!(s, "  {line}");
        }
        s
    }

    fn start(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        node.boot_id += 1;
        node.sequence = 0;
        node.replay = ReplayGuard::new();
        node.holds_vips = false;
        node.announce_schedule += 1;
        node.left_during_chaos = false;
        node.health = Health::default();
        self.clients_dirty = true;
        let mut cfg = node.cfg.clone();
        cfg.start_drained = node.persisted_drain;
        node.election = Some(Election::new(cfg, now));
        self.log(format!("n{i} starts (boot {})", self.nodes[i].boot_id));
        self.drain_actions(i);
    }

    fn crash(&mut self, i: usize) {
        if self.nodes[i].election.take().is_some() {
            // A crashed host takes its addresses with it, and sends nothing more.
            self.nodes[i].holds_vips = false;
            self.nodes[i].announce_schedule += 1;
            self.clients_dirty = true;
            self.log(format!("n{i} crashes"));
        }
    }

    fn drain_actions(&mut self, i: usize) {
        if let Some(t) = self.nodes[i]
            .election
            .as_ref()
            .and_then(Election::poll_timeout)
        {
            self.timers.push(Reverse((t, i)));
        }
        while let Some(action) = self.nodes[i]
            .election
            .as_mut()
            .and_then(Election::poll_action)
        {
            match action {
                Action::SendAdvert(body) => {
                    let node = &mut self.nodes[i];
                    node.sequence += 1;
                    let advert = Advert {
                        body,
                        boot_id: node.boot_id,
                        sequence: node.sequence,
                    };
                    self.broadcast(i, advert);
                }
                Action::ClaimVips => {
                    self.nodes[i].holds_vips = true;
                    self.dirty = true;
                    self.clients_dirty = true;
                }
                Action::ReleaseVips => {
                    // The VIP worker aborts the announcement task before it
                    // removes the addresses.
                    self.nodes[i].announce_schedule += 1;
                    self.nodes[i].holds_vips = false;
                    self.dirty = true;
                    self.clients_dirty = true;
                }
                Action::AnnounceVips => self.start_announcing(i),
                Action::ReannounceVips => {
                    if self.honour_reannounce {
                        self.log(format!("n{i} re-announces"));
                        self.send_garp(i);
                    }
                }
                Action::StopAnnouncing => {
                    self.nodes[i].announce_schedule += 1;
                    self.nodes[i].left_during_chaos = self.clients_checked_since.is_none();
                    self.log(format!("n{i} stops announcing"));
                }
                Action::StateChanged { from, to, reason } => {
                    if to == State::Master {
                        self.became_master[i] += 1;
                    }
                    self.state_changes += 1;
                    self.dirty = true;
                    self.log(format!("n{i} {from} -> {to}: {reason}"));
                }
                Action::Notice(n) => self.log(format!("n{i} notice {n:?}")),
                Action::ShutdownComplete => self.log(format!("n{i} shut down")),
            }
        }
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.sides.as_ref().is_none_or(|s| s[a] == s[b])
    }

    fn broadcast(&mut self, from: usize, advert: Advert) {
        let advert = Rc::new(advert);
        for to in 0..self.nodes.len() {
            if to == from || !self.connected(from, to) {
                continue;
            }
            let copies = if self.rng.gen_bool(self.net.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                if self.rng.gen_bool(self.net.loss) {
                    continue;
                }
                // Drawn only when set, so the other runs' random streams stay as they were.
                let inbound_loss = self.inbound_loss[to];
                if inbound_loss > 0.0 && self.rng.gen_bool(inbound_loss) {
                    continue;
                }
                let jitter = self.net.jitter.mul_f64(self.rng.gen_range(0.0..1.0));
                let at = self.now + self.net.delay + jitter;
                let advert = Rc::clone(&advert);
                self.schedule(at, Event::Advert(InFlight { from, to, advert }));
            }
        }
    }

    fn deliver(&mut self, packet: InFlight) {
        let to = packet.to;
        if !self.connected(packet.from, to) {
            return;
        }
        let now = self.now;
        let node = &mut self.nodes[to];
        let Some(election) = node.election.as_mut() else {
            return;
        };
        // The transport's replay guard drops duplicates and overtaken adverts.
        if node.replay.check(&packet.advert).is_err() {
            return;
        }
        election.handle_advert(now, &packet.advert.body);
        self.drain_actions(to);
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.queue.push(Reverse((at, id)));
        self.events.insert(id, event);
    }

    /// [`Action::AnnounceVips`] as the VIP worker's `announce_loop` runs it, with
    /// the config defaults: a burst now, a second burst `repeat_after` after the
    /// start (or right after the first, if that took longer), then a refresh
    /// round every `refresh`. Any schedule already running is replaced.
    fn start_announcing(&mut self, i: usize) {
        self.nodes[i].announce_schedule += 1;
        self.nodes[i].left_during_chaos = false;
        let schedule = self.nodes[i].announce_schedule;
        self.log(format!("n{i} starts announcing"));
        let spacing = defaults::ANNOUNCE_INTERVAL;
        let burst: Vec<Duration> = (0..defaults::ANNOUNCE_COUNT).map(|k| spacing * k).collect();
        let mut rounds = burst.clone();
        if let Some(after) = defaults::ANNOUNCE_REPEAT_AFTER {
            let second = after.max(burst.last().copied().unwrap_or_default());
            rounds.extend(burst.iter().map(|offset| second + *offset));
        }
        let now = self.now;
        for offset in &rounds {
            if offset.is_zero() {
                self.send_garp(i);
            } else {
                let round = Event::AnnounceRound {
                    node: i,
                    schedule,
                    then_refresh: None,
                };
                self.schedule(now + *offset, round);
            }
        }
        if let Some(refresh) = defaults::ANNOUNCE_REFRESH {
            let last = rounds.last().copied().unwrap_or_default();
            let round = Event::AnnounceRound {
                node: i,
                schedule,
                then_refresh: Some(refresh),
            };
            self.schedule(now + last + refresh, round);
        }
    }

    fn announce_round(&mut self, node: usize, schedule: u64, then_refresh: Option<Duration>) {
        let n = &self.nodes[node];
        if n.announce_schedule != schedule || n.election.is_none() {
            return;
        }
        self.send_garp(node);
        if let Some(refresh) = then_refresh {
            let round = Event::AnnounceRound {
                node,
                schedule,
                then_refresh,
            };
            self.schedule(self.now + refresh, round);
        }
    }

    /// One gratuitous ARP from `from`: every client hears it after the network's
    /// delay and jitter, whatever the partitions and the advert loss.
    fn send_garp(&mut self, from: usize) {
        let sent_at = self.now;
        for client in 0..self.clients.len() {
            let jitter = self.net.jitter.mul_f64(self.client_rng.gen_range(0.0..1.0));
            let at = sent_at + self.net.delay + jitter;
            let garp = Event::Garp {
                from,
                client,
                sent_at,
            };
            self.schedule(at, garp);
        }
    }

    fn garp_lands(&mut self, from: usize, client: usize, sent_at: Instant) {
        let leftover = self.clients_checked_since.is_some_and(|c| sent_at < c);
        self.point_client(client, from, leftover, "gratuitous ARP");
    }

    fn point_client(&mut self, c: usize, node: usize, leftover: bool, how: &str) {
        let now = self.now;
        let expires = now + self.arp_timeout;
        let client = &mut self.clients[c];
        let moved = client.entry.is_none_or(|e| e.node != node);
        let since = match client.entry {
            Some(e) if !moved => e.since,
            _ => now,
        };
        client.entry = Some(ArpEntry {
            node,
            expires,
            since,
            leftover,
        });
        let arm_expiry = !client.expiry_pending;
        client.expiry_pending = true;
        if arm_expiry {
            self.schedule(expires, Event::ArpExpiry { client: c });
        }
        self.clients_dirty = true;
        if moved {
            self.log(format!("client c{c} -> n{node} ({how})"));
        }
    }

    fn arp_expiry_due(&mut self, c: usize) {
        let now = self.now;
        let client = &mut self.clients[c];
        match client.entry {
            Some(e) if e.expires > now => self.schedule(e.expires, Event::ArpExpiry { client: c }),
            Some(e) => {
                client.entry = None;
                client.expiry_pending = false;
                self.clients_dirty = true;
                self.log(format!("client c{c} entry for n{} expires", e.node));
            }
            None => client.expiry_pending = false,
        }
    }

    /// Invariant 6's bound on a calm network: one advert interval (until the
    /// master hears what the other node did), the step-down linger (the other
    /// node keeps the VIPs that long after hearing the master), and the network
    /// twice (its advert to the master, the master's gratuitous ARP to the client).
    fn misdirection_bound(&self) -> Duration {
        self.interval + STEP_DOWN_LINGER + (self.net.delay + self.net.jitter) * 2
    }

    /// Resolve clients without an entry, then start and end misdirections.
    fn update_clients(&mut self) -> Result<(), String> {
        self.clients_dirty = false;
        let holders: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].holds_vips)
            .collect();
        for c in 0..self.clients.len() {
            if self.clients[c].entry.is_none() && !holders.is_empty() {
                let node = holders[self.client_rng.gen_range(0..holders.len())];
                self.point_client(c, node, false, "resolved");
            }
            let entry = self.clients[c].entry;
            let wrong = entry
                .map(|e| e.node)
                .filter(|&node| !holders.is_empty() && !self.nodes[node].holds_vips);
            let checked = self.clients_checked_since.is_some()
                && !entry.is_some_and(|e| e.leftover || self.nodes[e.node].left_during_chaos);
            match (wrong, self.clients[c].misdirected) {
                (Some(node), None) => {
                    self.clients[c].misdirected = Some(Misdirection {
                        since: self.now,
                        asserted: checked,
                    });
                    let how = if checked { "" } else { ", not checked" };
                    self.log(format!("client c{c} misdirected to n{node}{how}"));
                }
                (Some(_), Some(m)) => {
                    self.clients[c].misdirected = Some(Misdirection {
                        asserted: m.asserted && checked,
                        ..m
                    });
                }
                (None, Some(m)) => {
                    self.clients[c].misdirected = None;
                    self.misdirection_ended(c, m)?;
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    fn misdirection_ended(&mut self, c: usize, m: Misdirection) -> Result<(), String> {
        let took = self.now - m.since;
        let bound = self.misdirection_bound();
        self.client_figures.record(took, m.asserted, bound);
        self.log(format!("client c{c} on a holder again after {took:?}"));
        if m.asserted && took > bound {
            return Err(self.fail(&format!(
                "invariant 6: client c{c} was misdirected for {took:?} (bound {bound:?}) on a calm network"
            )));
        }
        Ok(())
    }

    /// The clients' figures, counting misdirections still running up to now
    /// (they were checked by [`Self::check_clients_ongoing`]).
    fn client_figures(&self) -> ClientFigures {
        let mut figures = self.client_figures;
        for m in self.clients.iter().filter_map(|c| c.misdirected) {
            figures.record(self.now - m.since, m.asserted, self.misdirection_bound());
        }
        figures
    }

    /// Invariant 6 for misdirections still running.
    fn check_clients_ongoing(&self) -> Result<(), String> {
        let bound = self.misdirection_bound();
        for (c, client) in self.clients.iter().enumerate() {
            if let Some(m) = client.misdirected {
                let took = self.now - m.since;
                if m.asserted && took > bound {
                    return Err(self.fail(&format!(
                        "invariant 6: client c{c} has been misdirected to n{} for {took:?} (bound {bound:?}) on a calm network",
                        client.entry.map_or(usize::MAX, |e| e.node)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Advance to `end`, checking invariants after every event.
    fn run_until(&mut self, end: Instant) -> Result<(), String> {
        // Changes made between runs (crashes, commands) happened at `now`.
        if self.clients_dirty {
            self.update_clients()?;
        }
        loop {
            let next_packet = self.queue.peek().map(|Reverse((t, _))| *t);
            let next_timer = self.next_timer();
            let next = match (next_packet, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(end + Duration::from_nanos(1)),
            };
            if next > end {
                self.simulated += end.saturating_duration_since(self.now);
                self.now = end;
                if self.clients_dirty {
                    self.update_clients()?;
                }
                return self.check();
            }
            if next <= self.now {
                self.events_at_now += 1;
                if self.events_at_now > 10_000 {
                    return Err(self.fail("livelock: 10000 events without time advancing"));
                }
            } else {
                self.events_at_now = 0;
            }
            self.simulated += next.saturating_duration_since(self.now);
            self.now = next.max(self.now);
            while let Some(Reverse((t, id))) = self.queue.peek().copied() {
                if t > self.now {
                    break;
                }
                self.queue.pop();
                match self.events.remove(&id) {
                    Some(Event::Advert(packet)) => self.deliver(packet),
                    Some(Event::AnnounceRound {
                        node,
                        schedule,
                        then_refresh,
                    }) => self.announce_round(node, schedule, then_refresh),
                    Some(Event::Garp {
                        from,
                        client,
                        sent_at,
                    }) => self.garp_lands(from, client, sent_at),
                    Some(Event::ArpExpiry { client }) => self.arp_expiry_due(client),
                    None => {}
                }
            }
            while let Some(Reverse((t, i))) = self.timers.peek().copied() {
                if t > self.now {
                    break;
                }
                self.timers.pop();
                let now = self.now;
                if let Some(e) = self.nodes[i].election.as_mut() {
                    if e.poll_timeout().is_some_and(|t| t <= now) {
                        e.handle_timeout(now);
                        self.drain_actions(i);
                    }
                }
            }
            if self.clients_dirty {
                self.update_clients()?;
            }
            // Checking after every packet costs O(nodes) each; the invariants can
            // only break when a state changes or a deadline passes, so check then,
            // and at least every half advert interval.
            if self.dirty
                || self.now >= self.next_check
                || self.takeover_due.is_some_and(|d| self.now > d)
            {
                self.dirty = false;
                self.next_check = self.now + self.interval / 2;
                self.check()?;
            }
        }
    }

    /// The earliest live deadline; entries a node has since moved are stale and dropped.
    fn next_timer(&mut self) -> Option<Instant> {
        while let Some(Reverse((t, i))) = self.timers.peek().copied() {
            let current = self.nodes[i]
                .election
                .as_ref()
                .and_then(Election::poll_timeout);
            if current == Some(t) {
                return Some(t);
            }
            self.timers.pop();
        }
        None
    }

    fn settle_window(&self) -> Duration {
        let cfg = &self.nodes[0].cfg;
        // Master-down (at most 4 intervals), a handover, the preempt delay, and three
        // backup adverts so every node has heard every other: generous on purpose.
        cfg.settings.advert_interval * 8
            + cfg.settings.handover_timeout
            + cfg.settings.preempt_delay
            + cfg.settings.backup_advert_interval * 4
    }

    fn check(&mut self) -> Result<(), String> {
        let now = self.now;
        self.check_clients_ongoing()?;
        let mut masters = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(e) = &n.election else { continue };
            let is_master = e.state() == State::Master;
            if is_master {
                masters.push(i);
            }
            if n.holds_vips != is_master {
                return Err(self.fail(&format!(
                    "n{i} holds VIPs = {} but state is {}",
                    n.holds_vips,
                    e.state()
                )));
            }
            if is_master && e.health().fault.is_some() {
                return Err(self.fail(&format!("invariant 5: n{i} is master while in fault")));
            }
            if is_master
                && n.drained_at
                    .is_some_and(|t| now > t + n.cfg.settings.handover_timeout)
            {
                return Err(self.fail(&format!("invariant 5: n{i} is master while drained")));
            }
        }

        let quiet_since = self.calm_since.map(|c| c.max(self.last_disturbance));
        let settled = quiet_since.is_some_and(|q| now >= q + self.settle_window());
        let any_eligible = self
            .nodes
            .iter()
            .any(|n| n.election.as_ref().is_some_and(Election::is_eligible));
        if settled && !any_eligible && !masters.is_empty() {
            return Err(self.fail(&format!(
                "invariant 1: masters {masters:?} but no node is eligible"
            )));
        }
        if settled && any_eligible {
            if masters.len() != 1 {
                return Err(self.fail(&format!(
                    "invariant 1: calm and settled but {} masters {:?}",
                    masters.len(),
                    masters
                )));
            }
            let m = masters[0];
            let best = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.election.as_ref().map(|e| (e.rank(), i)))
                .filter(|(r, _)| r.eligible)
                .max();
            let master_rank = self.nodes[m].election.as_ref().map(Election::rank);
            let ok = match best {
                None => false,
                Some((r, _)) if self.preempt => Some(r) == master_rank,
                Some(_) => master_rank.is_some_and(|r| r.eligible),
            };
            if !ok {
                return Err(self.fail(&format!(
                    "invariant 1: master n{m} is not the best eligible node (best {best:?})"
                )));
            }
        }

        if let Some(due) = self.takeover_due {
            if now > due {
                return Err(self.fail("invariant 2: no new master within master-down interval + one advert interval of the crash"));
            }
            if !masters.is_empty() {
                self.takeover_due = None;
            }
        }

        // Invariant 4: gaps without a master.
        let had_master = std::mem::replace(&mut self.had_master, !masters.is_empty());
        if masters.is_empty() {
            let eligible_alive = self
                .nodes
                .iter()
                .any(|n| n.election.as_ref().is_some_and(Election::is_eligible));
            // A gap starts when a master disappears (not when a group that had
            // none, say all drained, gets an eligible node back: that is an election).
            if self.no_master_since.is_none() && eligible_alive && had_master {
                self.no_master_since = Some(now);
            }
        } else if let Some(since) = self.no_master_since.take() {
            let gap = now - since;
            let bound = self.interval + self.net.delay + self.net.jitter + MS;
            let calm_throughout = self.calm_since.is_some_and(|c| c <= since);
            let no_crash = since >= self.last_crash + self.settle_window();
            if calm_throughout && no_crash && gap > bound {
                return Err(self.fail(&format!(
                    "invariant 4: no master for {gap:?} (bound {bound:?}) on a calm network"
                )));
            }
        }
        Ok(())
    }

    fn run_for(&mut self, d: Duration) -> Result<(), String> {
        let end = self.now + d;
        self.run_until(end)
    }

    fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].election.is_some())
            .collect()
    }

    fn master(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| {
            self.nodes[i]
                .election
                .as_ref()
                .is_some_and(|e| e.state() == State::Master)
        })
    }

    fn disturb(&mut self) {
        self.dirty = true;
        self.last_disturbance = self.now;
    }

    fn command(&mut self, i: usize, command: Command) {
        let now = self.now;
        let Some(e) = self.nodes[i].election.as_mut() else {
            return;
        };
        let result = e.handle_command(now, command);
        let drained = e.is_drained();
        self.nodes[i].persisted_drain = drained;
        if drained && self.nodes[i].drained_at.is_none() {
            self.nodes[i].drained_at = Some(now);
        } else if !drained {
            self.nodes[i].drained_at = None;
        }
        self.log(format!("n{i} {command:?} -> {result:?}"));
        self.drain_actions(i);
        self.disturb();
    }

    fn set_health(&mut self, i: usize, health: Health) {
        let now = self.now;
        let Some(e) = self.nodes[i].election.as_mut() else {
            return;
        };
        e.handle_health(now, health.clone());
        self.log(format!("n{i} health {health:?}"));
        self.nodes[i].health = health;
        self.drain_actions(i);
        self.disturb();
    }

    fn do_crash(&mut self, i: usize) {
        let was_master = self.master() == Some(i);
        self.crash(i);
        self.last_crash = self.now;
        self.disturb();
        // Invariant 2 applies on a calm network with a live eligible survivor.
        if was_master && self.calm_since.is_some() {
            let best = self
                .nodes
                .iter()
                .filter_map(|n| n.election.as_ref())
                .filter(|e| e.is_eligible())
                .max_by_key(|e| e.rank());
            if let Some(e) = best {
                let bound = e.master_down_interval(self.interval)
                    + self.interval
                    + self.net.delay
                    + self.net.jitter;
                self.takeover_due = Some(self.now + bound);
            }
        }
    }

    fn do_restart(&mut self, i: usize) {
        self.start(i);
        self.last_crash = self.now;
        self.disturb();
    }

    /// One random disturbance of a chaos episode.
    fn chaos_step(&mut self) {
        let n = self.nodes.len();
        let i = self.rng.gen_range(0..n);
        match self.rng.gen_range(0..100) {
            0..=14 => {
                self.net = Net::chaotic(&mut self.rng, self.interval);
                self.log(format!("net {:?}", self.net));
            }
            15..=24 => {
                let sides: Vec<u8> = (0..n).map(|_| self.rng.gen_range(0..2)).collect();
                self.log(format!("partition {sides:?}"));
                self.sides = Some(sides);
            }
            25..=32 => {
                self.sides = None;
                self.log("heal".into());
            }
            33..=42 => {
                if self.nodes[i].election.is_some() {
                    self.do_crash(i);
                } else {
                    self.do_restart(i);
                }
            }
            43..=54 => {
                let delta = self.rng.gen_range(-60..60);
                let fault = self.rng.gen_bool(0.25).then(|| "check failed".to_string());
                self.set_health(
                    i,
                    Health {
                        priority_delta: delta,
                        fault,
                    },
                );
            }
            55..=62 => self.set_health(i, Health::default()),
            63..=72 => {
                let force = self.rng.gen_bool(0.3);
                self.command(i, Command::Drain { force });
            }
            73..=84 => self.command(i, Command::Undrain),
            85..=92 => self.command(i, Command::Promote),
            _ => {
                if self.nodes[i].election.is_none() {
                    self.do_restart(i);
                }
            }
        }
    }

    fn become_calm(&mut self) {
        self.net = Net::calm(&mut self.rng);
        self.sides = None;
        self.calm_since = Some(self.now);
        self.clients_checked_since = Some(self.now);
        self.log(format!("calm {:?}", self.net));
    }

    /// Chaos from now on: a misdirection already running must not be over its
    /// bound yet, and is no longer checked.
    fn become_chaotic(&mut self) -> Result<(), String> {
        self.check_clients_ongoing()?;
        self.stop_checking_clients();
        self.calm_since = None;
        self.net = Net::chaotic(&mut self.rng, self.interval);
        self.log(format!("chaos {:?}", self.net));
        Ok(())
    }

    fn stop_checking_clients(&mut self) {
        self.clients_checked_since = None;
        for client in &mut self.clients {
            if let Some(m) = &mut client.misdirected {
                m.asserted = false;
            }
        }
    }

    /// A deliberate operation during calm, then a settle window with the checks on.
    fn calm_step(&mut self) -> Result<(), String> {
        let settle = self.settle_window();
        let alive = self.alive();
        match self.rng.gen_range(0..6) {
            0 => {
                if let Some(m) = self.master() {
                    if alive.len() > 1 {
                        self.do_crash(m);
                    }
                }
            }
            1 => {
                if let Some(m) = self.master() {
                    self.command(m, Command::Drain { force: false });
                }
            }
            2 => {
                if let Some(&i) = alive.choose(&mut self.rng) {
                    self.command(i, Command::Promote);
                }
            }
            3 => {
                if let Some(&i) = alive.choose(&mut self.rng) {
                    self.command(i, Command::Undrain);
                }
            }
            4 => {
                let crashed: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].election.is_none())
                    .collect();
                if let Some(&i) = crashed.choose(&mut self.rng) {
                    self.do_restart(i);
                }
            }
            _ => {
                if let Some(&i) = alive.choose(&mut self.rng) {
                    let delta = self.rng.gen_range(-40..40);
                    self.set_health(
                        i,
                        Health {
                            priority_delta: delta,
                            fault: None,
                        },
                    );
                }
            }
        }
        self.run_for(settle * 2)
    }

    /// Bring every node back healthy and undrained, so the group can elect.
    fn revive_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].election.is_none() {
                self.do_restart(i);
            }
            if self.nodes[i].health != Health::default() {
                self.set_health(i, Health::default());
            }
            if self.nodes[i].persisted_drain {
                self.command(i, Command::Undrain);
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Profile {
    intervals: &'static [Duration],
    min_backup_interval: Duration,
    max_backup_interval: Duration,
    episodes: usize,
    chaos_steps: usize,
    calm_steps: usize,
    /// How long a client keeps an ARP entry after it was last set.
    arp_timeout: Duration,
}

/// Clients per simulation.
const CLIENTS: usize = 2;

const SLOW: &[Duration] = &[Duration::from_millis(100), Duration::from_secs(1)];
const ONE_SECOND: &[Duration] = &[Duration::from_secs(1)];
const FAST: &[Duration] = &[
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_secs(1),
];

fn run_seed(seed: u64, n: usize, profile: Profile) -> Result<(Duration, ClientFigures), String> {
    let mut sim = Sim::new(seed, n, profile);
    sim.run_for(sim.settle_window() * 2)?;
    for _ in 0..profile.episodes {
        sim.become_chaotic()?;
        for _ in 0..profile.chaos_steps {
            sim.chaos_step();
            let pause = sim.interval.mul_f64(sim.rng.gen_range(0.1..6.0));
            sim.run_for(pause)?;
        }
        sim.become_calm();
        if sim.rng.gen_bool(0.7) {
            sim.revive_all();
        }
        sim.run_for(sim.settle_window() * 2)?;
        for _ in 0..profile.calm_steps {
            sim.calm_step()?;
        }
    }
    Ok((sim.simulated, sim.client_figures()))
}

fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("VIPD_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let count = std::env::var("VIPD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_count);
    (0..count).collect()
}

fn run_many(test: &str, n: usize, default_count: u64, profile: Profile) {
    let started = Instant::now();
    let mut simulated = Duration::ZERO;
    let mut clients = ClientFigures::default();
    let list = seeds(default_count);
    for &seed in &list {
        match run_seed(seed, n, profile) {
            Ok((d, figures)) => {
                simulated += d;
                clients.add(&figures);
            }
            Err(report) => panic!("{report}\n{}", replay(seed, test)),
        }
    }
    eprintln!(
        "{test}: {} seeds, {n} nodes, {:.2} simulated hours in {:.1}s wall; ARP timeout {:?}: {clients}",
        list.len(),
        simulated.as_secs_f64() / 3600.0,
        started.elapsed().as_secs_f64(),
        profile.arp_timeout,
    );
}

fn replay(seed: u64, test: &str) -> String {
    format!(
        "replay: VIPD_SIM_SEED={seed} cargo test --release --test simulation {test} -- --nocapture"
    )
}

impl Profile {
    /// No scripted episodes: the test drives the simulation itself.
    const fn calm_only(self, intervals: &'static [Duration]) -> Self {
        Self {
            intervals,
            episodes: 0,
            chaos_steps: 0,
            calm_steps: 0,
            ..self
        }
    }
}

/// Small groups: many seeds, long chaos and calm episodes.
const SMALL_GROUP: Profile = Profile {
    intervals: FAST,
    min_backup_interval: Duration::ZERO,
    max_backup_interval: Duration::from_secs(1),
    episodes: 6,
    chaos_steps: 25,
    calm_steps: 6,
    arp_timeout: Duration::from_secs(30),
};

#[test]
fn two_nodes() {
    run_many("two_nodes", 2, 500, SMALL_GROUP);
}

#[test]
fn three_nodes() {
    let profile = Profile {
        arp_timeout: Duration::from_secs(5),
        ..SMALL_GROUP
    };
    run_many("three_nodes", 3, 500, profile);
}

#[test]
fn sixteen_nodes() {
    let profile = Profile {
        intervals: FAST,
        min_backup_interval: Duration::ZERO,
        max_backup_interval: Duration::from_secs(1),
        episodes: 4,
        chaos_steps: 30,
        calm_steps: 5,
        arp_timeout: Duration::from_secs(30),
    };
    run_many("sixteen_nodes", 16, 60, profile);
}

#[test]
fn full_group_of_255() {
    let profile = Profile {
        intervals: SLOW,
        min_backup_interval: Duration::from_secs(2),
        max_backup_interval: Duration::from_secs(2),
        episodes: 1,
        chaos_steps: 12,
        calm_steps: 2,
        arp_timeout: Duration::from_secs(5),
    };
    run_many("full_group_of_255", 255, 2, profile);
}

/// Invariant 3 over a long run: a calm network and unchanged config see the
/// start-up election and then not a single state change for a simulated hour.
#[test]
fn calm_hour_has_no_flapping() {
    for seed in seeds(8) {
        let mut sim = Sim::new(seed, 5, SMALL_GROUP.calm_only(FAST));
        let settle = sim.settle_window();
        sim.run_for(settle).unwrap_or_else(|e| panic!("{e}"));
        let before = sim.state_changes;
        sim.run_for(Duration::from_secs(3600))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            sim.state_changes,
            before,
            "{}",
            sim.fail("state changed on a calm network")
        );
        assert!(sim.master().is_some());
    }
}

/// The takeover is faster than VRRP's at the same interval: at 1 s adverts and
/// priority 100, keepalived waits 3.61 s; vipd's best backup 3 s + a margin.
#[test]
fn takeover_beats_vrrp_master_down_interval() {
    let mut sim = Sim::new(42, 3, SMALL_GROUP.calm_only(ONE_SECOND));
    for n in &mut sim.nodes {
        n.cfg.settings.preempt = true;
        n.cfg.settings.preempt_delay = Duration::ZERO;
    }
    sim.nodes[0].cfg.settings.priority = 200;
    sim.nodes[1].cfg.settings.priority = 100;
    sim.nodes[2].cfg.settings.priority = 50;
    sim.net = Net {
        loss: 0.0,
        duplicate: 0.0,
        delay: Duration::from_micros(100),
        jitter: Duration::ZERO,
    };
    for i in 0..3 {
        sim.crash(i);
        sim.start(i);
    }
    sim.run_for(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sim.master(), Some(0));
    // Crash right after an advert went out, then measure to the new master.
    let crash_at = sim.now;
    sim.do_crash(0);
    while sim.master().is_none() {
        let step = sim.now + Duration::from_millis(1);
        sim.run_until(step).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(sim.master(), Some(1), "the best survivor takes over");
    let took = sim.now - crash_at;
    let vrrp = Duration::from_secs(3) + vipd::election::skew_time(100, Duration::from_secs(1));
    eprintln!("takeover after {took:?} (VRRP master-down interval {vrrp:?})");
    assert!(took <= Duration::from_millis(3010), "took {took:?}");
    assert!(took.as_secs_f64() <= vrrp.as_secs_f64() * 0.85);
}

const TEN_MS: &[Duration] = &[Duration::from_millis(10)];
const HUNDRED_MS: &[Duration] = &[Duration::from_millis(100)];

/// The lab's group of two or three nodes at one advert interval: n0 preferred
/// (priority 200, then 100 and 50), every other setting at the config's default
/// (`backup_advert_interval` = max(interval, 1 s), a 2 ms margin, preempt on,
/// handover bound 3 intervals), clients with a 30 s ARP timeout, a calm LAN.
fn lab_group(seed: u64, n: usize, intervals: &'static [Duration]) -> Sim {
    let profile = Profile {
        arp_timeout: Duration::from_secs(30),
        ..SMALL_GROUP.calm_only(intervals)
    };
    let mut sim = Sim::new(seed, n, profile);
    let interval = sim.interval;
    sim.preempt = defaults::PREEMPT;
    for (i, node) in sim.nodes.iter_mut().enumerate() {
        let cfg = &mut node.cfg;
        cfg.settings.priority = [200, 100, 50][i.min(2)];
        cfg.settings.backup_advert_interval = interval.max(Duration::from_secs(1));
        cfg.settings.takeover_margin = defaults::TAKEOVER_MARGIN.min(interval / 2);
        cfg.settings.handover_timeout = interval * 3;
        cfg.settings.preempt = defaults::PREEMPT;
        cfg.settings.preempt_delay = defaults::PREEMPT_DELAY;
    }
    for i in 0..n {
        sim.crash(i);
        sim.start(i);
    }
    sim
}

/// Start the lab group and let n0 take the VIPs.
fn settled_lab_group(seed: u64, n: usize, intervals: &'static [Duration]) -> Result<Sim, String> {
    let mut sim = lab_group(seed, n, intervals);
    sim.run_for(sim.settle_window())?;
    if sim.master() != Some(0) {
        return Err(sim.fail("n0 is not the master after start-up"));
    }
    Ok(sim)
}

/// What one asymmetric-loss run saw.
struct LossRun {
    spurious_takeovers: u64,
    clients: ClientFigures,
}

/// The lab's scenario: 20 % of the adverts delivered to each backup are lost
/// (nftables on the backups), none of those to the master, for 30 s. Backups
/// take over now and then; the master hears them, stays, and must bring the
/// clients back (invariant 6, checked throughout: the master hears everything).
fn asymmetric_loss_run(
    seed: u64,
    n: usize,
    intervals: &'static [Duration],
    honour_reannounce: bool,
) -> Result<LossRun, String> {
    let mut sim = settled_lab_group(seed, n, intervals)?;
    sim.honour_reannounce = honour_reannounce;
    // Invariants 1 to 4 assume a loss-free network; 5 and 6 stay on.
    sim.calm_since = None;
    for loss in &mut sim.inbound_loss[1..] {
        *loss = 0.2;
    }
    sim.log("20 % loss on adverts to the backups".into());
    let before = sim.became_master.clone();
    sim.run_for(Duration::from_secs(30))?;
    let n0_stayed = sim.became_master[0] == before[0]
        && sim.nodes[0]
            .election
            .as_ref()
            .is_some_and(|e| e.state() == State::Master);
    if !n0_stayed {
        return Err(sim.fail("n0 hears every advert yet lost the master role"));
    }
    Ok(LossRun {
        spurious_takeovers: (1..n).map(|i| sim.became_master[i] - before[i]).sum(),
        clients: sim.client_figures(),
    })
}

fn asymmetric_loss(test: &str, n: usize) {
    for (label, intervals) in [("10 ms", TEN_MS), ("100 ms", HUNDRED_MS)] {
        let started = Instant::now();
        let list = seeds(200);
        let mut spurious = 0;
        let mut clients = ClientFigures::default();
        for &seed in &list {
            match asymmetric_loss_run(seed, n, intervals, true) {
                Ok(run) => {
                    spurious += run.spurious_takeovers;
                    clients.add(&run.clients);
                }
                Err(report) => panic!("{report}\n{}", replay(seed, test)),
            }
        }
        eprintln!(
            "{test} at {label} adverts: {} seeds × 30 s, 20 % loss towards the backups, in {:.1}s wall: {spurious} spurious takeovers; {clients}",
            list.len(),
            started.elapsed().as_secs_f64(),
        );
    }
}

#[test]
fn asymmetric_loss_two_nodes() {
    asymmetric_loss("asymmetric_loss_two_nodes", 2);
}

#[test]
fn asymmetric_loss_three_nodes() {
    asymmetric_loss("asymmetric_loss_three_nodes", 3);
}

/// A 3 s partition of n0 from the others, then a heal. Once healed, the two
/// masters hear each other within one advert interval and the network twice,
/// the loser keeps the VIPs for the linger, and from its release invariant 6
/// gives the clients its bound: by then every client must be on n0. Returns
/// how long after the heal the last client moved to n0.
fn partition_heal_run(
    seed: u64,
    n: usize,
    intervals: &'static [Duration],
) -> Result<(Duration, ClientFigures), String> {
    let mut sim = settled_lab_group(seed, n, intervals)?;
    // Let n0's own announcement schedule finish first: its second burst would
    // otherwise pull the clients back during the partition.
    let schedule = defaults::ANNOUNCE_REPEAT_AFTER.unwrap_or_default()
        + defaults::ANNOUNCE_INTERVAL * defaults::ANNOUNCE_COUNT;
    sim.run_for(schedule)?;
    sim.calm_since = None;
    sim.stop_checking_clients();
    sim.sides = Some((0..n).map(|i| u8::from(i > 0)).collect());
    sim.log("partition: n0 alone".into());
    sim.run_for(Duration::from_secs(3))?;
    let far_master = (1..n).find(|&i| sim.nodes[i].holds_vips);
    let clients_moved = sim
        .clients
        .iter()
        .all(|c| c.entry.is_some_and(|e| Some(e.node) == far_master));
    if !clients_moved {
        return Err(sim.fail("the far side's master did not take the clients during the partition"));
    }
    let healed = sim.now;
    sim.sides = None;
    sim.calm_since = Some(healed);
    sim.clients_checked_since = Some(healed);
    sim.log("heal".into());
    let net = sim.net.delay + sim.net.jitter;
    let deadline = healed + sim.interval + net * 2 + STEP_DOWN_LINGER + sim.misdirection_bound();
    sim.run_until(deadline)?;
    let check_clients_on_n0 = |sim: &Sim, when: &str| {
        if sim.master() != Some(0) || (1..n).any(|i| sim.nodes[i].holds_vips) {
            return Err(sim.fail(&format!("n0 is not the only master {when}")));
        }
        for (c, client) in sim.clients.iter().enumerate() {
            if client.entry.is_none_or(|e| e.node != 0) {
                return Err(sim.fail(&format!("client c{c} is not on n0 {when}")));
            }
        }
        Ok(())
    };
    let when = format!(
        "{:?} after the heal (interval + 2 × network + linger + invariant 6's bound)",
        deadline - healed
    );
    check_clients_on_n0(&sim, &when)?;
    let settled = sim
        .clients
        .iter()
        .filter_map(|c| c.entry)
        .map(|e| e.since.saturating_duration_since(healed))
        .max()
        .unwrap_or_default();
    // Past the loser's second burst, which its step-down cancelled.
    let later = defaults::ANNOUNCE_REPEAT_AFTER.unwrap_or_default() + Duration::from_secs(1);
    sim.run_for(later)?;
    check_clients_on_n0(&sim, &format!("{later:?} after that"))?;
    Ok((settled, sim.client_figures()))
}

#[test]
fn partition_heal_brings_clients_to_the_winner() {
    let test = "partition_heal_brings_clients_to_the_winner";
    for n in [2, 3] {
        for (label, intervals) in [("10 ms", TEN_MS), ("100 ms", HUNDRED_MS)] {
            let list = seeds(200);
            let mut slowest = Duration::ZERO;
            let mut clients = ClientFigures::default();
            for &seed in &list {
                match partition_heal_run(seed, n, intervals) {
                    Ok((settled, figures)) => {
                        slowest = slowest.max(settled);
                        clients.add(&figures);
                    }
                    Err(report) => panic!("{report}\n{}", replay(seed, test)),
                }
            }
            eprintln!(
                "{test}: {n} nodes at {label} adverts, {} seeds: clients on the winner at most {:.1} ms after the heal; {clients}",
                list.len(),
                slowest.as_secs_f64() * 1e3,
            );
        }
    }
}

/// Invariant 6 bites: with `ReannounceVips` ignored, a spurious takeover under
/// asymmetric loss leaves the clients on the backup's MAC after it lets go.
#[test]
fn invariant_6_catches_a_master_that_does_not_reannounce() {
    // Its own seeds, whatever VIPD_SIM_SEED replays: one of them must be caught.
    let caught = (0..200).find_map(|seed| asymmetric_loss_run(seed, 2, TEN_MS, false).err());
    let report = caught.unwrap_or_default();
    assert!(
        report.contains("invariant 6"),
        "no seed failed invariant 6 without re-announcing: {report}"
    );
    eprintln!(
        "without ReannounceVips: {}",
        report.lines().next().unwrap_or_default()
    );
}
