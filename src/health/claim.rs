//! Whether an instance can claim and announce its VIPs: the fault rule for a
//! node that took the VIPs but cannot tell the clients (or cannot take them at
//! all).
//!
//! # The rule
//!
//! - A **claim** that the kernel refuses is tried once more a moment later
//!   (the VIP worker's `RETRY_AFTER`); a second refusal is a failure.
//! - An **announcement burst** (the first and second bursts on becoming
//!   master, a refresh, a re-announcement) fails when the first announcement
//!   of some VIP fails and so does its one retry a moment later. A failure
//!   whose retry goes out, or of a later announcement of the burst, is
//!   counted and logged but is no fault: one gratuitous ARP moves a client,
//!   and the clients must not wait for a whole burst (half a second by
//!   default) to learn that this node cannot tell them.
//! - The **announcement socket** must be open: it is opened at instance start
//!   and again when the interface is re-created; failing to open it is a
//!   failure (an interface without an Ethernet address has nothing to
//!   announce and needs no socket).
//! - A failure puts the instance in **fault** at once, so a master releases its
//!   VIPs with a priority-0 advert and a healthy peer takes them over and
//!   announces them; a backup does not take over. Holding VIPs whose clients
//!   still send to the old master's MAC is worse than handing them over: the
//!   old master released them, so that traffic is dropped.
//! - The fault ends after a back-off — [`FIRST_BACKOFF`], doubled on each
//!   failure up to [`MAX_BACKOFF`] — once the announcement socket opens again;
//!   nothing but a claim can test a claim, so the back-off is what keeps a
//!   node whose claims keep failing from taking the VIPs back every second.
//!   A burst with every VIP sent resets the back-off.
//!
//! [`Readiness`] keeps that state; it reads no clock (the VIP worker passes
//! `now`) and does no IO, so the rule is unit-tested here.

use std::time::{Duration, Instant};

/// The back-off after a first failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Whether the VIPs can be claimed and announced; see the module doc.
#[derive(Debug)]
pub struct Readiness {
    fault: Option<String>,
    /// When to try again to end the fault.
    retry_at: Option<Instant>,
    /// The back-off after the next failure.
    backoff: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            fault: None,
            retry_at: None,
            backoff: FIRST_BACKOFF,
        }
    }
}

impl Readiness {
    /// A failure: if it starts a fault, returns how long it lasts at least
    /// (the caller reports the fault); `None` while already in fault.
    pub fn fail(&mut self, now: Instant, why: &str) -> Option<Duration> {
        if self.fault.is_some() {
            return None;
        }
        self.fault = Some(why.to_owned());
        Some(self.arm(now))
    }

    /// The retry found the cause still there: try again after the next
    /// back-off, returned.
    pub fn still_failing(&mut self, now: Instant) -> Duration {
        self.arm(now)
    }

    /// The retry found nothing wrong: true if that ends a fault (the caller
    /// reports it).
    pub fn cleared(&mut self) -> bool {
        self.retry_at = None;
        self.fault.take().is_some()
    }

    /// A burst went out for every VIP: the next failure starts from the first
    /// back-off again.
    pub fn succeeded(&mut self) {
        if self.fault.is_none() {
            self.backoff = FIRST_BACKOFF;
        }
    }

    /// When to call [`Self::still_failing`] or [`Self::cleared`], while in fault.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// The current fault, if any.
    pub fn fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    fn arm(&mut self, now: Instant) -> Duration {
        let wait = self.backoff;
        self.retry_at = Some(now + wait);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_faults_once_and_the_retry_clears_it() {
        let now = Instant::now();
        let mut r = Readiness::default();
        assert_eq!(r.fail(now, "EMFILE"), Some(FIRST_BACKOFF));
        assert_eq!(r.fail(now, "again"), None, "one report per fault");
        assert_eq!(r.fault(), Some("EMFILE"));
        assert_eq!(r.retry_at(), Some(now + FIRST_BACKOFF));
        assert!(r.cleared());
        assert_eq!(r.fault(), None);
        assert_eq!(r.retry_at(), None);
        assert!(!r.cleared(), "nothing to clear twice");
    }

    #[test]
    fn repeated_failures_back_off_longer_up_to_the_maximum() {
        let now = Instant::now();
        let mut r = Readiness::default();
        let mut waits = Vec::new();
        for _ in 0..8 {
            waits.push(r.fail(now, "ENOBUFS").expect("a new fault"));
            assert!(r.cleared());
        }
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert_eq!(waits[1], FIRST_BACKOFF * 2);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        // A cause still there waits longer too.
        r.fail(now, "EMFILE");
        assert_eq!(r.still_failing(now), MAX_BACKOFF);
    }

    #[test]
    fn a_good_burst_resets_the_back_off_but_not_a_fault() {
        let now = Instant::now();
        let mut r = Readiness::default();
        r.fail(now, "x");
        r.succeeded();
        assert_eq!(
            r.fault(),
            Some("x"),
            "a burst in flight does not clear a fault"
        );
        assert!(r.cleared());
        assert_eq!(r.fail(now, "y"), Some(FIRST_BACKOFF * 2));
        assert!(r.cleared());
        r.succeeded();
        assert_eq!(r.fail(now, "z"), Some(FIRST_BACKOFF));
    }
}
