//! Holding an instance's VIPs by a key in etcd, as one sans-IO state machine
//! ([`StoreSeat`]): which node etcd says may hold them, and whether etcd can
//! still vouch for this node.
//!
//! Two ways to ask etcd (`election` in the configuration):
//! - **`"etcd"`: vipd's own key.** Each node keeps a lease alive and
//!   publishes a member record (`PREFIX/INSTANCE/members/NODE`) under it;
//!   the node named by the holder key (`PREFIX/INSTANCE/holder`), under its
//!   own lease, holds the VIPs.
//! - **`"patroni"`: Patroni's leader key.** The node whose Patroni member
//!   name is the leader key's value holds the VIPs; vipd writes nothing but
//!   keeps a lease of its own alive, as the proof that etcd still answers.
//!
//! The seat is fed `handle_*(now, …)` calls — a lease granted or renewed or
//! not, a fresh view of the keys, a write's outcome, this node's candidacy
//! from the election — and returns [`StoreAction`]s for the driver to carry
//! out against etcd ([`StoreSeat::poll_action`]), a [`Verdict`] for the
//! election, [`StoreNotice`]s for the log, and its next deadline
//! ([`StoreSeat::poll_timeout`]). No sockets, no clock reads: the driver
//! (`daemon::instance`) times each request and feeds the results in.
//!
//! # Rules
//!
//! 1. **Vouched only while the lease is surely alive at the server.** The
//!    server resets a lease's expiry to `lease_ttl` when it processes a
//!    keepalive, which is after the node sent it; so a keepalive sent at `t`
//!    that succeeded proves the lease (and every key under it) lives until at
//!    least `t + lease_ttl`. The node counts itself vouched until
//!    `t + lease_ttl - margin` ([`vouch_margin`]: a tenth of the TTL, at
//!    least 200 ms). The margin covers what lies between deciding to
//!    release and the address being gone (the timer's wake-up on a loaded
//!    host, the netlink request), not clock drift: both ends measure with
//!    monotonic clocks whose rates differ by well under 0.1 %. Why count from
//!    the send and not the answer: an answer delayed by a slow network says
//!    nothing newer than when the request left.
//! 2. **Fail-closed releases at the end of the vouched time**; the next
//!    holder can only be elected after the server expires the lease, so two
//!    nodes never hold the VIPs at once for want of etcd. **Fail-open keeps
//!    them** until etcd is heard to name another holder, and says (status,
//!    metrics, log) that nobody vouches for this node meanwhile.
//! 3. **Keepalives every `lease_ttl / 4`**, so three can fail before a
//!    fail-closed holder releases; a failed one is retried after
//!    [`RETRY_AFTER`]. They go out on time even while earlier ones hang (at
//!    most [`MAX_KEEPALIVES_IN_FLIGHT`]): a member that lost its leader holds
//!    a request until it times out, and the client moves to another member
//!    meanwhile. A lease the server no longer knows is granted anew. Why
//!    overlap is safe: each success counts from its own send time (rule 1).
//!    What no client can do: renew during etcd's own leader election, which
//!    takes about its election timeout (1 s by default) or more; a
//!    `lease_ttl` below `2 ×` that may release during one (fail-closed),
//!    which is why the default is 5 s.
//! 4. **The holder key decides** (`election = "etcd"`). The node named by
//!    the holder key, under this node's own lease, holds the VIPs; its
//!    fencing token is the key's modification revision, which rises with
//!    every change of holder. A holder key naming this node under another
//!    lease, or naming no member, is someone else's write: nobody claims on
//!    it, and it is reported ([`StoreNotice::ForeignHolder`]). Once this
//!    node's handover or resignation is written, a view that still shows
//!    the key at the revision it wrote over is older than that write, and
//!    no longer counts as this node's.
//! 5. **The best candidate campaigns first.** With no holder key, an
//!    eligible, vouched node creates it (a transaction that succeeds only if
//!    the key does not exist) when no better member is eligible (promoted
//!    first, then priority, then the lower name), or after
//!    [`CAMPAIGN_GRACE`] without a holder whoever it is: a better member
//!    that does not campaign must not keep the VIPs unheld.
//! 6. **A holder that should not hold hands over, make-before-break.** (Its
//!    member record is written first, and every write on the holder key
//!    waits for the record to be in etcd: a successor must not see the key
//!    beside an old record that still calls this node eligible and better,
//!    and hand the key straight back.) When
//!    it is drained, in fault or stopping, or a better member may preempt
//!    (`preempt` on that member and a higher priority, or a later
//!    promotion), the holder rewrites the holder key to name the best
//!    eligible member under that member's lease (a transaction on the key's
//!    revision), and keeps the VIPs until the successor's member record says
//!    it serves under the new token, or `handover_timeout` passes. Nobody to
//!    hand over to: a stopping or failed holder deletes the key (same
//!    transaction), so the next candidate need not wait for its lease.
//! 7. **Patroni's leader decides** (`election = "patroni"`). The node whose
//!    member name is the leader key's value holds the VIPs, vouched as in
//!    rule 1; the token is the leader key's revision (v2: its modified
//!    index). vipd does not write Patroni's keys: drain refuses on the
//!    leader unless forced (nobody else may hold them), and promote refuses.
//! 8. **A stale view holds nothing new.** While the watch is down the last
//!    view stands, but no campaign starts from it; vouching (rule 1) decides
//!    what a holder keeps. (The driver checks a watch against a
//!    linearizable read — every `lease_ttl / 4` following Patroni, every 5 s
//!    otherwise — and watches again when they differ: a member cut off from
//!    the others keeps a watch open and silent.)

mod view;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use view::{holder_key, instance_dir, member_key, KeyRecord, MemberInfo, MemberRecord, View};

use crate::config::OnUnreachable;

/// Keepalives that may be unanswered at once (rule 3).
pub const MAX_KEEPALIVES_IN_FLIGHT: u8 = 4;

/// How long after a failed request the seat tries again.
pub const RETRY_AFTER: Duration = Duration::from_millis(250);

/// How long the holder key may stay absent before any eligible node
/// campaigns, better members or not (rule 5).
pub const CAMPAIGN_GRACE: Duration = Duration::from_millis(300);

/// Rule 1's margin for a lease of `ttl`.
pub fn vouch_margin(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(200))
}

/// What the seat needs to know about its instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeatConfig {
    /// This node's name (the value of the holder key it writes).
    pub node: String,
    pub lease_ttl: Duration,
    pub on_unreachable: OnUnreachable,
    /// `Some(member)`: follow Patroni's leader key, naming `member` here.
    pub follow: Option<String>,
    /// Bound on a make-before-break handover (rule 6).
    pub handover_timeout: Duration,
}

/// This node as the election sees it, after every input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidacy {
    /// Healthy, not drained, not stopping.
    pub eligible: bool,
    pub priority: u8,
    pub preempt: bool,
    pub promoted: bool,
    /// Master with the VIPs claimed, under this fencing token.
    pub serving: Option<i64>,
    /// This node's MAC on the instance's interface, published for the
    /// others' conflict watch.
    pub mac: Option<[u8; 6]>,
}

/// What the driver does against etcd, then feeds back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreAction {
    /// Grant a lease of `ttl_secs`; feed [`StoreSeat::handle_granted`].
    Grant { ttl_secs: i64 },
    /// Renew `lease`; feed [`StoreSeat::handle_kept_alive`].
    KeepAlive { lease: i64 },
    /// Put this node's member record under `lease`; feed
    /// [`StoreSeat::handle_written`] with [`Write::Publish`].
    Publish { lease: i64, info: MemberInfo },
    /// Create the holder key naming this node under `lease`, if absent.
    Campaign { lease: i64 },
    /// Rewrite the holder key to name `to` under `to_lease`, if its
    /// revision is still `expected`.
    HandOver {
        to: String,
        to_lease: i64,
        expected: i64,
    },
    /// Delete the holder key, if its revision is still `expected`.
    Resign { expected: i64 },
    /// Revoke `lease` (shutting down): its keys go with it.
    Revoke { lease: i64 },
}

/// A result from etcd, as the driver feeds it (see the `handle_*` methods).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreInput {
    Granted {
        sent_at: Instant,
        lease: i64,
        ttl: Duration,
    },
    GrantFailed {
        why: String,
    },
    KeptAlive {
        sent_at: Instant,
        lease: i64,
    },
    KeepAliveFailed {
        lease: i64,
        why: String,
        gone: bool,
    },
    View(View),
    ViewLost {
        why: String,
    },
    Written {
        write: Write,
        outcome: Result<bool, String>,
    },
}

/// Which write an outcome is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    Publish,
    Campaign,
    HandOver,
    Resign,
}

/// What the election is told after every input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// This node may hold the VIPs now.
    pub holds: bool,
    /// Another eligible node could take them (drain's check).
    pub successor: bool,
    /// Why it holds or not: for the transition's reason.
    pub why: String,
    /// The holder as etcd names it (the handover's successor, for the log).
    pub holder: Option<String>,
}

/// What changed that the log should say (one line each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreNotice {
    /// The lease was granted or renewed after failures, or first.
    Reachable {
        lease: i64,
    },
    /// A request failed after the store was reachable.
    Unreachable {
        why: String,
    },
    /// Fail-open: holding the VIPs while nobody vouches for this node.
    Unvouched,
    /// Fail-open: vouched again.
    Vouched,
    /// The holder key is someone else's write (rule 4).
    ForeignHolder {
        value: String,
        lease: i64,
    },
    /// A member record that does not parse.
    BadMember {
        key: String,
    },
    /// The watch was lost (the view is stale) or is back.
    WatchLost {
        why: String,
    },
    WatchBack,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Session {
    lease: i64,
    /// Rule 1: when the last keepalive that succeeded was sent.
    renewed_sent_at: Instant,
}

/// A handover this holder started (rule 6).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Handover {
    to: String,
    /// The holder key's revision this handover wrote over, once its write
    /// succeeded.
    given: Option<i64>,
    started: Instant,
}

/// One instance's seat in etcd. See the module docs for the rules.
#[derive(Debug)]
pub struct StoreSeat {
    cfg: SeatConfig,
    session: Option<Session>,
    grant_in_flight: bool,
    /// Keepalives sent and not yet answered (rule 3: they may overlap).
    keepalives_in_flight: u8,
    next_keepalive: Option<Instant>,
    next_grant: Option<Instant>,
    /// Consecutive failures since the last success (for the notices).
    failing: Option<String>,
    reachable_once: bool,
    view: View,
    view_fresh: bool,
    holder_absent_since: Option<Instant>,
    me: Candidacy,
    /// The member record last published for the current lease.
    published: Option<(i64, MemberInfo)>,
    publish_in_flight: bool,
    write_in_flight: Option<Write>,
    retry_writes_at: Option<Instant>,
    handover: Option<Handover>,
    /// Holding (as last decided), with its fencing token.
    holding: Option<i64>,
    /// Fail-open: the unvouched notice went out.
    said_unvouched: bool,
    foreign_said: Option<(String, i64)>,
    /// The holder key's revision a handover or resignation of this node's
    /// is writing over, until its outcome is in.
    giving_up: Option<i64>,
    /// The last holder key revision this node gave away (rule 4): a view
    /// still showing the key at it or before is older than the write.
    gave_up: Option<i64>,
    /// This node's last leases before the current one: a holder key still
    /// under one of them is this node's own, not yet expired (rule 4).
    old_leases: VecDeque<i64>,
    shutting_down: bool,
    revoked: bool,
    actions: VecDeque<StoreAction>,
    notices: VecDeque<StoreNotice>,
}

impl StoreSeat {
    /// A seat starting at `now`: it asks for a lease at once.
    pub fn new(cfg: SeatConfig, now: Instant) -> Self {
        let mut seat = Self {
            cfg,
            session: None,
            grant_in_flight: false,
            keepalives_in_flight: 0,
            next_keepalive: None,
            next_grant: Some(now),
            failing: None,
            reachable_once: false,
            view: View::default(),
            view_fresh: false,
            holder_absent_since: None,
            me: Candidacy::default(),
            published: None,
            publish_in_flight: false,
            write_in_flight: None,
            retry_writes_at: None,
            handover: None,
            holding: None,
            said_unvouched: false,
            foreign_said: None,
            old_leases: VecDeque::new(),
            giving_up: None,
            gave_up: None,
            shutting_down: false,
            revoked: false,
            actions: VecDeque::new(),
            notices: VecDeque::new(),
        };
        seat.step(now);
        seat
    }

    // ---------------------------------------------------------------- inputs

    /// Any result from etcd.
    pub fn handle(&mut self, now: Instant, input: StoreInput) {
        match input {
            StoreInput::Granted {
                sent_at,
                lease,
                ttl,
            } => self.handle_granted(now, sent_at, lease, ttl),
            StoreInput::GrantFailed { why } => self.handle_grant_failed(now, why),
            StoreInput::KeptAlive { sent_at, lease } => self.handle_kept_alive(now, sent_at, lease),
            StoreInput::KeepAliveFailed { lease, why, gone } => {
                self.handle_keepalive_failed(now, lease, why, gone);
            }
            StoreInput::View(view) => self.handle_view(now, view),
            StoreInput::ViewLost { why } => self.handle_view_lost(now, why),
            StoreInput::Written { write, outcome } => self.handle_written(now, write, outcome),
        }
    }

    /// A lease of `ttl` was granted for a request sent at `sent_at`.
    pub fn handle_granted(&mut self, now: Instant, sent_at: Instant, lease: i64, ttl: Duration) {
        self.grant_in_flight = false;
        if self.revoked {
            // Granted after the revoke went out: revoke this one too.
            self.actions.push_back(StoreAction::Revoke { lease });
            return;
        }
        // The server may grant more than asked (its minimum TTL); never less
        // is assumed: a shorter grant shortens the vouched time.
        let _ = ttl;
        self.session = Some(Session {
            lease,
            renewed_sent_at: sent_at,
        });
        self.published = None;
        self.next_keepalive = Some(sent_at + self.keepalive_every());
        self.succeeded(lease);
        self.step(now);
    }

    /// The lease request failed.
    pub fn handle_grant_failed(&mut self, now: Instant, why: String) {
        self.grant_in_flight = false;
        self.next_grant = Some(now + RETRY_AFTER);
        self.failed(why);
        self.step(now);
    }

    /// A keepalive sent at `sent_at` for `lease` succeeded.
    pub fn handle_kept_alive(&mut self, now: Instant, sent_at: Instant, lease: i64) {
        self.keepalives_in_flight = self.keepalives_in_flight.saturating_sub(1);
        let every = self.keepalive_every();
        if let Some(s) = self.session.as_mut().filter(|s| s.lease == lease) {
            s.renewed_sent_at = s.renewed_sent_at.max(sent_at);
            let next = s.renewed_sent_at + every;
            // A retry already scheduled sooner stays (another attempt may
            // still be failing); otherwise the cadence resumes.
            self.next_keepalive = Some(self.next_keepalive.map_or(next, |t| t.max(next)));
            self.succeeded(lease);
        }
        self.step(now);
    }

    /// A keepalive for `lease` failed; `gone`: the server no longer knows
    /// the lease (it expired), so a new one is needed.
    pub fn handle_keepalive_failed(&mut self, now: Instant, lease: i64, why: String, gone: bool) {
        self.keepalives_in_flight = self.keepalives_in_flight.saturating_sub(1);
        if self.session.is_some_and(|s| s.lease == lease) {
            if gone {
                if self.old_leases.len() >= 4 {
                    self.old_leases.pop_front();
                }
                self.old_leases.push_back(lease);
                self.session = None;
                self.published = None;
                self.next_keepalive = None;
                self.next_grant = Some(now);
            } else {
                let retry = now + RETRY_AFTER;
                self.next_keepalive = Some(self.next_keepalive.map_or(retry, |t| t.min(retry)));
            }
        }
        self.failed(why);
        self.step(now);
    }

    /// The keys as the watch sees them now.
    pub fn handle_view(&mut self, now: Instant, view: View) {
        if !self.view_fresh {
            self.view_fresh = true;
            if self.reachable_once {
                self.notices.push_back(StoreNotice::WatchBack);
            }
        }
        for bad in &view.bad_members {
            if !self.view.bad_members.contains(bad) {
                self.notices
                    .push_back(StoreNotice::BadMember { key: bad.clone() });
            }
        }
        let absent = self.cfg.follow.is_none() && view.holder.is_none();
        if absent && (self.holder_absent_since.is_none() || self.view.holder.is_some()) {
            self.holder_absent_since = Some(now);
        } else if !absent {
            self.holder_absent_since = None;
        }
        self.view = view;
        self.step(now);
    }

    /// The watch broke: the view is stale until the next [`Self::handle_view`].
    pub fn handle_view_lost(&mut self, now: Instant, why: String) {
        if self.view_fresh {
            self.view_fresh = false;
            self.notices.push_back(StoreNotice::WatchLost { why });
        }
        self.step(now);
    }

    /// A write's outcome: `Ok(true)` it took, `Ok(false)` its condition
    /// failed (the key had changed), `Err` it failed.
    pub fn handle_written(&mut self, now: Instant, write: Write, outcome: Result<bool, String>) {
        match write {
            Write::Publish => {
                self.publish_in_flight = false;
                if outcome.is_err() {
                    self.published = None;
                    self.retry_writes_at = Some(now + RETRY_AFTER);
                }
            }
            _ => {
                self.write_in_flight = None;
                let giving_up = self.giving_up.take();
                match (&outcome, write) {
                    (Ok(true), Write::HandOver) => {
                        if let Some(h) = self.handover.as_mut() {
                            h.given = giving_up;
                        }
                        self.gave_up = giving_up.max(self.gave_up);
                    }
                    (_, Write::HandOver) => self.handover = None,
                    (Ok(true), Write::Resign) => self.gave_up = giving_up.max(self.gave_up),
                    _ => {}
                }
                if outcome.is_err() {
                    self.retry_writes_at = Some(now + RETRY_AFTER);
                }
            }
        }
        if let Err(why) = outcome {
            self.failed(why);
        }
        self.step(now);
    }

    /// This node as the election sees it now.
    pub fn handle_candidacy(&mut self, now: Instant, candidacy: Candidacy) {
        if candidacy != self.me {
            self.me = candidacy;
            self.step(now);
        }
    }

    /// The instance stops: hand over or resign (rule 6); the driver calls
    /// [`Self::handle_released`] once the VIPs are gone.
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.me.eligible = false;
        self.step(now);
    }

    /// Stopping, with the VIPs released: revoke the lease (its keys go too).
    pub fn handle_released(&mut self, _now: Instant) {
        if !self.revoked {
            self.revoked = true;
            if let Some(s) = self.session.take() {
                self.actions
                    .push_back(StoreAction::Revoke { lease: s.lease });
            }
            self.next_keepalive = None;
            self.next_grant = None;
        }
    }

    /// A deadline from [`Self::poll_timeout`] may have passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.step(now);
    }

    // --------------------------------------------------------------- outputs

    pub fn poll_action(&mut self) -> Option<StoreAction> {
        self.actions.pop_front()
    }

    pub fn poll_notice(&mut self) -> Option<StoreNotice> {
        self.notices.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if !self.revoked {
            at(self
                .next_keepalive
                .filter(|_| self.keepalives_in_flight < MAX_KEEPALIVES_IN_FLIGHT));
            at(self.next_grant.filter(|_| !self.grant_in_flight));
            at(self.retry_writes_at);
            if self.session.is_some() {
                at(self.vouched_until());
            }
            at(self
                .holder_absent_since
                .map(|t| t + CAMPAIGN_GRACE)
                .filter(|_| self.cfg.follow.is_none()));
            at(self
                .handover
                .as_ref()
                .map(|h| h.started + self.cfg.handover_timeout));
        }
        next
    }

    /// Whether this node may hold the VIPs now, and whether another could.
    pub fn verdict(&self, now: Instant) -> Verdict {
        let (holds, why) = self.decide(now);
        Verdict {
            holds,
            successor: self.successor().is_some(),
            why,
            holder: self.holder_name(),
        }
    }

    /// The fencing token while this node holds (rules 4 and 7).
    pub fn token(&self) -> Option<i64> {
        self.holding
    }

    /// Until when etcd vouches for this node (rule 1), if it has a lease.
    pub fn vouched_until(&self) -> Option<Instant> {
        self.session
            .map(|s| s.renewed_sent_at + self.cfg.lease_ttl - vouch_margin(self.cfg.lease_ttl))
    }

    pub fn is_vouched(&self, now: Instant) -> bool {
        self.vouched_until().is_some_and(|t| now < t)
    }

    /// The lease, when one is held.
    pub fn lease(&self) -> Option<i64> {
        self.session.map(|s| s.lease)
    }

    /// Whether the last request succeeded.
    pub fn is_reachable(&self) -> bool {
        self.failing.is_none() && self.reachable_once
    }

    pub fn last_error(&self) -> Option<&str> {
        self.failing.as_deref()
    }

    /// The holder as etcd names it (the leader, following Patroni).
    pub fn holder_name(&self) -> Option<String> {
        match &self.cfg.follow {
            Some(_) => self.view.leader.as_ref().map(|k| k.value.clone()),
            None => self.view.holder.as_ref().map(|k| k.value.clone()),
        }
    }

    /// The holder key's (or leader key's) revision as etcd shows it.
    pub fn holder_revision(&self) -> Option<i64> {
        match &self.cfg.follow {
            Some(_) => self.view.leader.as_ref().map(|k| k.mod_revision),
            None => self.view.holder.as_ref().map(|k| k.mod_revision),
        }
    }

    pub fn config(&self) -> &SeatConfig {
        &self.cfg
    }

    /// The member records as the watch last saw them.
    pub fn members(&self) -> &[MemberRecord] {
        &self.view.members
    }

    /// A handover of this node's (rule 6) is under way: it keeps the VIPs
    /// until the successor serves, make-before-break.
    pub fn is_handing_over(&self) -> bool {
        self.handover.is_some()
    }

    // ---------------------------------------------------------------- inside

    fn keepalive_every(&self) -> Duration {
        self.cfg.lease_ttl / 4
    }

    fn succeeded(&mut self, lease: i64) {
        if self.failing.take().is_some() || !self.reachable_once {
            self.notices.push_back(StoreNotice::Reachable { lease });
        }
        self.reachable_once = true;
    }

    fn failed(&mut self, why: String) {
        if self.failing.is_none() {
            self.notices
                .push_back(StoreNotice::Unreachable { why: why.clone() });
        }
        self.failing = Some(why);
    }

    /// The holder key names this node under its own lease (rule 4).
    fn key_mine(&self) -> Option<i64> {
        let h = self.view.holder.as_ref()?;
        let s = self.session?;
        let newer = self.gave_up.is_none_or(|given| h.mod_revision > given);
        (h.value == self.cfg.node && h.lease == s.lease && newer).then_some(h.mod_revision)
    }

    /// Rules 1, 2, 4, 6 and 7: whether to hold, and why not.
    fn decide(&self, now: Instant) -> (bool, String) {
        let vouched = self.is_vouched(now);
        let open = self.cfg.on_unreachable == OnUnreachable::FailOpen;
        let named = match &self.cfg.follow {
            Some(member) => match &self.view.leader {
                Some(k) if &k.value == member => Some(k.mod_revision),
                Some(k) => {
                    return (false, format!("Patroni's leader is {}", k.value));
                }
                None => return (false, "Patroni has no leader".to_owned()),
            },
            None => self.key_mine(),
        };
        let handing_over = self.handover.as_ref().is_some_and(|h| {
            now < h.started + self.cfg.handover_timeout && !self.successor_serves(&h.to)
        });
        let wants = named.is_some() || handing_over;
        if !wants {
            if let Some(h) = &self.handover {
                return (false, format!("handed over to {}", h.to));
            }
            let why = match self.holder_name() {
                Some(name) => format!("etcd names {name} as the holder"),
                None => "etcd names no holder".to_owned(),
            };
            // Fail-open keeps what it held until etcd names someone else.
            if open
                && self.holding.is_some()
                && !vouched
                && self.holder_name().is_none_or(|n| n == self.cfg.node)
            {
                return (
                    true,
                    "fail-open: kept while etcd names nobody else".to_owned(),
                );
            }
            return (false, why);
        }
        if vouched || open {
            let how = match (&self.cfg.follow, named) {
                (Some(member), _) => format!("Patroni's leader key names {member} (this node)"),
                (None, Some(_)) => "etcd names this node the holder".to_owned(),
                (None, None) => "handing over: kept until the successor serves".to_owned(),
            };
            (true, how)
        } else {
            (
                false,
                format!(
                    "etcd cannot vouch for this node: no keepalive succeeded within lease_ttl ({} s) minus {} ms{}",
                    self.cfg.lease_ttl.as_secs(),
                    vouch_margin(self.cfg.lease_ttl).as_millis(),
                    self.failing
                        .as_ref()
                        .map(|w| format!(" ({w})"))
                        .unwrap_or_default()
                ),
            )
        }
    }

    /// The handover to `to` is done: `to` serves under a token newer than
    /// the revision this node gave away, or the key has moved on past it.
    fn successor_serves(&self, to: &str) -> bool {
        let Some(given) = self.handover.as_ref().and_then(|h| h.given) else {
            return false;
        };
        let served = self
            .view
            .members
            .iter()
            .find(|m| m.node == to)
            .and_then(|m| m.info.as_ref())
            .is_some_and(|i| i.serving.is_some_and(|t| t > given));
        let moved_on = self
            .view
            .holder
            .as_ref()
            .is_some_and(|h| h.value != to && h.mod_revision > given);
        served || moved_on
    }

    /// The best eligible member other than this node, with its lease.
    fn successor(&self) -> Option<(&str, i64)> {
        if self.cfg.follow.is_some() {
            return None;
        }
        self.view
            .members
            .iter()
            .filter(|m| m.node != self.cfg.node && m.lease != 0)
            .filter_map(|m| m.info.as_ref().map(|i| (m, i)))
            .filter(|(_, i)| i.eligible)
            .max_by(|(a, ai), (b, bi)| {
                (ai.promoted, ai.priority, std::cmp::Reverse(&a.node)).cmp(&(
                    bi.promoted,
                    bi.priority,
                    std::cmp::Reverse(&b.node),
                ))
            })
            .map(|(m, _)| (m.node.as_str(), m.lease))
    }

    /// Rule 5: no eligible member ranks above this node.
    fn ranks_first(&self) -> bool {
        let mine = (self.me.promoted, self.me.priority);
        !self.view.members.iter().any(|m| {
            m.node != self.cfg.node
                && m.info.as_ref().is_some_and(|i| {
                    i.eligible
                        && ((i.promoted, i.priority) > mine
                            || ((i.promoted, i.priority) == mine && m.node < self.cfg.node))
                })
        })
    }

    /// Rule 6: a member that should hold instead of this node.
    fn preempted_by(&self) -> Option<(&str, i64)> {
        let (name, lease) = self.successor()?;
        let info = self
            .view
            .members
            .iter()
            .find(|m| m.node == name)
            .and_then(|m| m.info.as_ref())?;
        let mine_rev = self
            .view
            .members
            .iter()
            .find(|m| m.node == self.cfg.node)
            .map_or(0, |m| m.mod_revision);
        let their_rev = self
            .view
            .members
            .iter()
            .find(|m| m.node == name)
            .map_or(0, |m| m.mod_revision);
        let by_promotion = info.promoted && (!self.me.promoted || their_rev > mine_rev);
        let by_priority = !self.me.promoted && info.preempt && info.priority > self.me.priority;
        (by_promotion || by_priority).then_some((name, lease))
    }

    /// After every input: keep the lease, publish, campaign, hand over, and
    /// decide what is held.
    fn step(&mut self, now: Instant) {
        if self.revoked {
            return;
        }
        // The lease (rule 3).
        if self.session.is_none()
            && !self.grant_in_flight
            && !self.shutting_down
            && self.next_grant.is_some_and(|t| t <= now)
        {
            self.grant_in_flight = true;
            self.next_grant = None;
            self.actions.push_back(StoreAction::Grant {
                ttl_secs: i64::try_from(self.cfg.lease_ttl.as_secs()).unwrap_or(i64::MAX),
            });
        }
        if let Some(s) = self.session {
            if self.keepalives_in_flight < MAX_KEEPALIVES_IN_FLIGHT
                && self.next_keepalive.is_some_and(|t| t <= now)
            {
                self.keepalives_in_flight += 1;
                // The next one goes out on time even if this one hangs: an
                // etcd member that lost its leader answers nothing until its
                // request times out, while another may answer at once.
                self.next_keepalive = Some(now + self.keepalive_every());
                self.actions
                    .push_back(StoreAction::KeepAlive { lease: s.lease });
            }
        }
        let writes_due = self.retry_writes_at.is_none_or(|t| t <= now);
        if writes_due {
            self.retry_writes_at = None;
        }
        if self.cfg.follow.is_none() && writes_due {
            self.lease_mode_writes(now);
        }
        // Rule 2: what is held.
        let (holds, _) = self.decide(now);
        let token = if holds {
            match &self.cfg.follow {
                Some(_) => self.view.leader.as_ref().map(|k| k.mod_revision),
                None => self.key_mine().or(self.holding),
            }
        } else {
            None
        };
        self.holding = token;
        let unvouched = holds && !self.is_vouched(now);
        if unvouched != self.said_unvouched {
            self.said_unvouched = unvouched;
            self.notices.push_back(if unvouched {
                StoreNotice::Unvouched
            } else {
                StoreNotice::Vouched
            });
        }
        if let Some(h) = self.view.holder.as_ref().filter(|_| self.view_fresh) {
            let foreign = self.cfg.follow.is_none()
                && (h.value == self.cfg.node
                    && self.session.is_some_and(|s| s.lease != h.lease)
                    && !self.old_leases.contains(&h.lease)
                    && self.handover.is_none()
                    || h.value != self.cfg.node
                        && !self.view.members.iter().any(|m| m.node == h.value));
            let key = (h.value.clone(), h.lease);
            if foreign && self.foreign_said.as_ref() != Some(&key) {
                self.notices.push_back(StoreNotice::ForeignHolder {
                    value: key.0.clone(),
                    lease: key.1,
                });
                self.foreign_said = Some(key);
            }
        }
        // The handover is over when the successor serves, time is up, or
        // the successor is no longer an eligible member (it stops too).
        if let Some(h) = &self.handover {
            let still_eligible = self
                .view
                .members
                .iter()
                .any(|m| m.node == h.to && m.info.as_ref().is_some_and(|i| i.eligible));
            if self.successor_serves(&h.to)
                || now >= h.started + self.cfg.handover_timeout
                || !still_eligible
            {
                self.handover = None;
            }
        }
    }

    /// Rules 5 and 6: publish the member record, campaign, hand over, resign.
    fn lease_mode_writes(&mut self, now: Instant) {
        let Some(s) = self.session else { return };
        let vouched = self.is_vouched(now);
        // The member record: only while vouched (it would expire anyway).
        let info = MemberInfo {
            priority: self.me.priority,
            eligible: self.me.eligible,
            preempt: self.me.preempt,
            promoted: self.me.promoted,
            serving: self.me.serving,
            mac: self.me.mac.map(MemberInfo::mac_text),
        };
        if !self.publish_in_flight && self.published.as_ref() != Some(&(s.lease, info.clone())) {
            self.publish_in_flight = true;
            self.published = Some((s.lease, info.clone()));
            self.actions.push_back(StoreAction::Publish {
                lease: s.lease,
                info,
            });
        }
        // The holder key is written only once the member record says what
        // this node is now: a successor must not read an old record (still
        // eligible, a better priority) beside the key it was just handed,
        // and preempt it straight back. etcd's revisions order the two.
        let record_current = !self.publish_in_flight;
        if self.write_in_flight.is_some() || !vouched || !self.view_fresh || !record_current {
            return;
        }
        match self.view.holder.clone() {
            None => {
                let grace_over = self
                    .holder_absent_since
                    .is_some_and(|t| now >= t + CAMPAIGN_GRACE);
                if self.me.eligible && !self.shutting_down && (self.ranks_first() || grace_over) {
                    self.write_in_flight = Some(Write::Campaign);
                    self.actions
                        .push_back(StoreAction::Campaign { lease: s.lease });
                }
            }
            Some(h) if h.value == self.cfg.node && h.lease == s.lease => {
                if self.handover.is_some() {
                    return;
                }
                let leaving = !self.me.eligible || self.shutting_down;
                let target = if leaving {
                    self.successor()
                } else {
                    self.preempted_by()
                };
                match target {
                    Some((to, to_lease)) => {
                        let to = to.to_owned();
                        self.handover = Some(Handover {
                            to: to.clone(),
                            given: None,
                            started: now,
                        });
                        self.write_in_flight = Some(Write::HandOver);
                        self.giving_up = Some(h.mod_revision);
                        self.actions.push_back(StoreAction::HandOver {
                            to,
                            to_lease,
                            expected: h.mod_revision,
                        });
                    }
                    None if leaving && self.me.serving.is_none() => {
                        // Nobody to hand over to, and the VIPs are gone.
                        self.write_in_flight = Some(Write::Resign);
                        self.giving_up = Some(h.mod_revision);
                        self.actions.push_back(StoreAction::Resign {
                            expected: h.mod_revision,
                        });
                    }
                    None => {}
                }
            }
            Some(_) => {}
        }
    }
}
