//! Address conflicts: another host answering for a VIP this node holds, or
//! already answering for one this node is about to claim cold.
//!
//! A sans-IO state machine ([`ConflictWatch`]) in the election's shape: fed
//! `now`, the ARP/NA sightings the driver's packet filter passes
//! ([`Sighting`]: an address and the link-layer address that claims it), the
//! MACs that are ours and our peers', and whether the instance holds its VIPs;
//! it returns [`ConflictEvent`]s to carry out and the next deadline. No
//! sockets, no clock reads. The driver: after every `handle_*`, drain
//! [`ConflictWatch::poll_event`], then sleep until
//! [`ConflictWatch::poll_timeout`] or the next input.
//!
//! # Rules (each with its reason)
//!
//! 1. **Only foreign MACs count.** A sighting counts as a foreign claim only
//!    while this node holds the VIPs, and only from a MAC that is neither this
//!    node's nor one a peer sent in its authenticated adverts (wire extension
//!    field 2). A peer claiming the VIP is two masters, which the election
//!    already resolves and counts; calling it foreign would raise a second
//!    alarm for a planned handover's overlap.
//! 2. **Never give the VIP up because of it.** Nothing here reaches the
//!    election: a host that answers for our address without speaking our
//!    protocol (a misconfigured server, a rogue, a forgotten static address) is
//!    not a reason to abandon the clients that still reach us. keepalived never
//!    looks; RFC 5227 §2.4 (c) lets a host that has a reason to keep its address
//!    defend it, which is what we do.
//! 3. **Defend by re-announcing, rate-limited.** On a foreign claim the node
//!    re-announces the VIPs at once unless it did less than
//!    [`REANNOUNCE_GAP`] ago, and otherwise that long after its last one. So
//!    whatever the other host sends, one of our announcements follows its last
//!    claim within [`REANNOUNCE_GAP`] (clients come back as soon as it stops),
//!    and we send at most one round per gap however fast it claims (RFC 5227
//!    §2.4 (c) defends at most once per DEFEND_INTERVAL for the same reason; ten
//!    seconds is for hosts that give up, not for a VIP that must stay reachable).
//! 4. **One alarm per episode.** An episode (per VIP) starts with the first
//!    foreign claim and ends [`EPISODE_QUIET`] after the last one, or when the
//!    node stops holding the VIPs; its start and end are one event each (one log
//!    line, one history entry), every sighting only bumps a counter, so a flood
//!    of forged ARPs costs a counter, not a log line each.
//! 5. **Probe before a cold claim, never before a takeover.** When the node is
//!    about to claim with no peer heard since it started (a lone first start,
//!    where a duplicate address is most likely and nobody waits for a
//!    failover), and probing is on, it first sends [`ProbeSettings::count`]
//!    ARP probes / DAD neighbour solicitations [`ProbeSettings::interval`]
//!    apart and listens until [`ProbeSettings::wait`] after the last one (RFC
//!    5227 §2.1's PROBE_NUM, PROBE_MIN/MAX and ANNOUNCE_WAIT, scaled from
//!    seconds to tens of milliseconds for a LAN). Any answer from a MAC other
//!    than ours refuses the claim: the instance goes to fault naming the
//!    address and the MAC, and retries every [`PROBE_RETRY`]. A takeover after
//!    a peer was heard is never probed: the old master may still answer for the
//!    address, and waiting would only lengthen the outage.
//! 6. **A refusal ends** when a retry finds nobody answering (then a claim
//!    within [`CLEAR_VALID`] needs no new probe) or when a peer is heard: the
//!    node's next claim would be a takeover, and rule 5 says takeovers are not
//!    probed (a node in fault could otherwise never take over from a dying peer).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// An Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// One ARP packet or neighbour advertisement saying that `mac` has `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub addr: IpAddr,
    pub mac: Mac,
}

/// The shortest time between two defensive re-announcements (rule 3).
pub const REANNOUNCE_GAP: Duration = Duration::from_millis(200);
/// An episode ends this long after its last foreign claim (rule 4).
pub const EPISODE_QUIET: Duration = Duration::from_secs(5);
/// A refused cold claim probes again this often (rule 5).
pub const PROBE_RETRY: Duration = Duration::from_secs(5);
/// A probe that found nobody lets a claim within this long go ahead (rule 6).
pub const CLEAR_VALID: Duration = Duration::from_secs(1);
/// Peers whose MACs are remembered at most (a flood of forged node ids cannot
/// grow the table; authenticated adverts only, so this is generous).
const MAX_PEERS: usize = 1024;

/// The cold-claim probe's timers (rule 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Probes per VIP: RFC 5227's PROBE_NUM is 3.
    pub count: u32,
    /// Between two probes.
    pub interval: Duration,
    /// Listening after the last probe.
    pub wait: Duration,
}

impl Default for ProbeSettings {
    /// 3 probes 20 ms apart, then 40 ms of listening: 80 ms in all, enough
    /// for any host on a LAN to answer (its ARP reply takes well under a
    /// millisecond), short enough that a lone node's first start barely
    /// notices.
    fn default() -> Self {
        Self {
            count: 3,
            interval: Duration::from_millis(20),
            wait: Duration::from_millis(40),
        }
    }
}

/// What the driver carries out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConflictEvent {
    /// A foreign MAC claims one of our VIPs: an episode starts (rule 4).
    ForeignClaimStarted { addr: IpAddr, mac: Mac },
    /// The episode ended: quiet for [`EPISODE_QUIET`], or the VIPs released.
    ForeignClaimEnded {
        addr: IpAddr,
        mac: Mac,
        sightings: u64,
        lasted: Duration,
    },
    /// Re-announce every VIP now (one round; rule 3).
    Reannounce,
    /// Send one ARP probe / DAD solicitation for every VIP (rule 5).
    SendProbes,
    /// The probe found nobody: claim now.
    ClaimCleared,
    /// Someone answers for `addr`: do not claim; fault (rule 5).
    ClaimRefused { addr: IpAddr, mac: Mac },
    /// The refusal's fault ends (rule 6).
    RefusalLifted { why: &'static str },
}

/// An ongoing foreign claim of one VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForeignClaim {
    pub addr: IpAddr,
    /// The last foreign MAC heard claiming it.
    pub mac: Mac,
    pub first: Instant,
    pub last: Instant,
    pub sightings: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Neither holding nor probing: sightings are ignored.
    Idle,
    /// Holding the VIPs: foreign claims are watched (rules 1-4).
    Holding,
    /// Probing before a cold claim: `sent` probes so far, the next one (or the
    /// end of listening) at `next`.
    Probing { sent: u32, next: Instant },
    /// A cold claim was refused: probe again at `retry`.
    Refused { retry: Instant },
    /// Probing again while refused.
    Reprobing { sent: u32, next: Instant },
}

/// One instance's conflict watch.
#[derive(Debug)]
pub struct ConflictWatch {
    probe: Option<ProbeSettings>,
    own: Option<Mac>,
    peers: HashMap<u64, Mac>,
    mode: Mode,
    claims: BTreeMap<IpAddr, ForeignClaim>,
    last_reannounce: Option<Instant>,
    reannounce_at: Option<Instant>,
    cleared_at: Option<Instant>,
    foreign_sightings: u64,
    events: VecDeque<ConflictEvent>,
}

impl ConflictWatch {
    /// A watch probing cold claims with `probe` (`None`: never probes).
    pub fn new(probe: Option<ProbeSettings>) -> Self {
        Self {
            probe,
            own: None,
            peers: HashMap::new(),
            mode: Mode::Idle,
            claims: BTreeMap::new(),
            last_reannounce: None,
            reannounce_at: None,
            cleared_at: None,
            foreign_sightings: 0,
            events: VecDeque::new(),
        }
    }

    /// A reload changed the probe setting; a probe under way finishes as it was.
    pub fn set_probe(&mut self, probe: Option<ProbeSettings>) {
        self.probe = probe;
    }

    /// This node's MAC on the instance's interface (`None`: unknown, so no
    /// sighting can be told from our own and none counts).
    pub fn set_own_mac(&mut self, mac: Option<Mac>) {
        self.own = mac;
    }

    /// This node's MAC, when known.
    pub fn own_mac(&self) -> Option<Mac> {
        self.own
    }

    /// A peer's MAC, from its authenticated advert (rule 1).
    pub fn set_peer_mac(&mut self, node_id: u64, mac: Mac) {
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&node_id) {
            return;
        }
        self.peers.insert(node_id, mac);
    }

    /// A peer was heard (any accepted advert): ends a refusal (rule 6).
    pub fn handle_peer_heard(&mut self) {
        if matches!(self.mode, Mode::Refused { .. } | Mode::Reprobing { .. }) {
            self.mode = Mode::Idle;
            self.events.push_back(ConflictEvent::RefusalLifted {
                why: "a peer is heard: a claim now would be a takeover, which is never probed",
            });
        }
    }

    /// The instance is about to claim: `cold` when no peer was heard since it
    /// started. Claim at once on `true`; on `false` wait for
    /// [`ConflictEvent::ClaimCleared`] (or a refusal).
    pub fn handle_claim(&mut self, now: Instant, cold: bool) -> bool {
        let recently_clear = self
            .cleared_at
            .is_some_and(|at| now.saturating_duration_since(at) <= CLEAR_VALID);
        match self.probe {
            Some(_) if cold && !recently_clear => {
                self.mode = Mode::Probing { sent: 0, next: now };
                self.handle_timeout(now);
                false
            }
            _ => {
                self.handle_holding(now, true);
                true
            }
        }
    }

    /// Whether the instance holds its VIPs now (claimed and not released).
    /// Releasing ends every episode and cancels a probe.
    pub fn handle_holding(&mut self, now: Instant, holding: bool) {
        if holding {
            self.mode = Mode::Holding;
            return;
        }
        if matches!(self.mode, Mode::Holding | Mode::Probing { .. }) {
            self.mode = Mode::Idle;
        }
        self.reannounce_at = None;
        for (_, claim) in std::mem::take(&mut self.claims) {
            self.end(now, claim);
        }
    }

    /// A sighting the packet filter passed: an ARP packet or NA for one of
    /// this instance's VIPs.
    pub fn handle_sighting(&mut self, now: Instant, sighting: Sighting) {
        if self.own.is_none_or(|own| own == sighting.mac) {
            return;
        }
        match self.mode {
            Mode::Idle | Mode::Refused { .. } => {}
            Mode::Probing { .. } | Mode::Reprobing { .. } => {
                let retry = now + PROBE_RETRY;
                if matches!(self.mode, Mode::Probing { .. }) {
                    self.events.push_back(ConflictEvent::ClaimRefused {
                        addr: sighting.addr,
                        mac: sighting.mac,
                    });
                }
                self.mode = Mode::Refused { retry };
            }
            Mode::Holding => {
                if self.peers.values().any(|m| *m == sighting.mac) {
                    return;
                }
                self.foreign_sightings += 1;
                match self.claims.get_mut(&sighting.addr) {
                    Some(claim) => {
                        claim.last = now;
                        claim.mac = sighting.mac;
                        claim.sightings += 1;
                    }
                    None => {
                        self.claims.insert(
                            sighting.addr,
                            ForeignClaim {
                                addr: sighting.addr,
                                mac: sighting.mac,
                                first: now,
                                last: now,
                                sightings: 1,
                            },
                        );
                        self.events.push_back(ConflictEvent::ForeignClaimStarted {
                            addr: sighting.addr,
                            mac: sighting.mac,
                        });
                    }
                }
                self.schedule_reannounce(now);
            }
        }
    }

    /// Rule 3: at once when the last round is at least a gap old, else a gap
    /// after it; a round already scheduled stays.
    fn schedule_reannounce(&mut self, now: Instant) {
        if self.reannounce_at.is_some() {
            return;
        }
        let at = match self.last_reannounce {
            Some(last) if now.saturating_duration_since(last) < REANNOUNCE_GAP => {
                last + REANNOUNCE_GAP
            }
            _ => now,
        };
        self.reannounce_at = Some(at);
        if at <= now {
            self.handle_timeout(now);
        }
    }

    /// Runs whatever is due; early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.reannounce_at.is_some_and(|at| at <= now) {
            self.reannounce_at = None;
            self.last_reannounce = Some(now);
            self.events.push_back(ConflictEvent::Reannounce);
        }
        let quiet: Vec<IpAddr> = self
            .claims
            .values()
            .filter(|c| now.saturating_duration_since(c.last) >= EPISODE_QUIET)
            .map(|c| c.addr)
            .collect();
        for addr in quiet {
            if let Some(claim) = self.claims.remove(&addr) {
                self.end(now, claim);
            }
        }
        let Some(probe) = self.probe else {
            if matches!(
                self.mode,
                Mode::Probing { .. } | Mode::Refused { .. } | Mode::Reprobing { .. }
            ) {
                // Probing was turned off by a reload: claim, and lift a refusal.
                if matches!(self.mode, Mode::Probing { .. }) {
                    self.events.push_back(ConflictEvent::ClaimCleared);
                    self.mode = Mode::Holding;
                } else {
                    self.events.push_back(ConflictEvent::RefusalLifted {
                        why: "probing was turned off",
                    });
                    self.mode = Mode::Idle;
                }
            }
            return;
        };
        match self.mode {
            Mode::Refused { retry } if retry <= now => {
                self.mode = Mode::Reprobing { sent: 0, next: now };
                self.step_probe(now, probe);
            }
            Mode::Probing { .. } | Mode::Reprobing { .. } => self.step_probe(now, probe),
            _ => {}
        }
    }

    fn step_probe(&mut self, now: Instant, probe: ProbeSettings) {
        let (sent, next, again) = match self.mode {
            Mode::Probing { sent, next } => (sent, next, false),
            Mode::Reprobing { sent, next } => (sent, next, true),
            _ => return,
        };
        if next > now {
            return;
        }
        if sent < probe.count {
            self.events.push_back(ConflictEvent::SendProbes);
            let sent = sent + 1;
            let next = now
                + if sent < probe.count {
                    probe.interval
                } else {
                    probe.wait
                };
            self.mode = if again {
                Mode::Reprobing { sent, next }
            } else {
                Mode::Probing { sent, next }
            };
            return;
        }
        self.cleared_at = Some(now);
        if again {
            self.mode = Mode::Idle;
            self.events.push_back(ConflictEvent::RefusalLifted {
                why: "nobody answers for the VIPs any more",
            });
        } else {
            self.mode = Mode::Holding;
            self.events.push_back(ConflictEvent::ClaimCleared);
        }
    }

    fn end(&mut self, now: Instant, claim: ForeignClaim) {
        self.events.push_back(ConflictEvent::ForeignClaimEnded {
            addr: claim.addr,
            mac: claim.mac,
            sightings: claim.sightings,
            lasted: now.saturating_duration_since(claim.first),
        });
    }

    /// The next event to carry out, in order.
    pub fn poll_event(&mut self) -> Option<ConflictEvent> {
        self.events.pop_front()
    }

    /// Whether [`ConflictWatch::poll_event`] has something.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// When [`ConflictWatch::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let probe = match self.mode {
            Mode::Probing { next, .. } | Mode::Reprobing { next, .. } => Some(next),
            Mode::Refused { retry } if self.probe.is_some() => Some(retry),
            _ => None,
        };
        let quiet = self.claims.values().map(|c| c.last + EPISODE_QUIET).min();
        [self.reannounce_at, probe, quiet]
            .into_iter()
            .flatten()
            .min()
    }

    /// The foreign claims going on now, by VIP.
    pub fn foreign_claims(&self) -> impl Iterator<Item = &ForeignClaim> {
        self.claims.values()
    }

    /// Foreign claims counted since start (every sighting, rule 4).
    pub fn foreign_sightings(&self) -> u64 {
        self.foreign_sightings
    }

    /// Whether sightings matter now (holding, or probing): the driver keeps
    /// its packet socket open only then.
    pub fn wants_sightings(&self) -> bool {
        matches!(
            self.mode,
            Mode::Holding | Mode::Probing { .. } | Mode::Reprobing { .. }
        )
    }

    /// Whether a cold claim is waiting for its probe.
    pub fn is_probing(&self) -> bool {
        matches!(self.mode, Mode::Probing { .. })
    }

    /// Whether a cold claim was refused and not lifted since.
    pub fn is_refused(&self) -> bool {
        matches!(self.mode, Mode::Refused { .. } | Mode::Reprobing { .. })
    }
}

#[cfg(test)]
mod tests;
