//! The election's timers: an enum indexing a small table of deadlines, in the
//! style of quinn-proto's `connection/timer.rs`.
//!
//! Owns only the deadlines; what happens when one passes is a rule, and the rules
//! live in [`super`]. Nothing here reads the clock: every deadline is an
//! [`Instant`] the caller handed in.

use std::time::Instant;

/// What each deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// Send the next periodic advert.
    Advert = 0,
    /// Backup: the master has gone quiet; take over.
    MasterDown = 1,
    /// Backup: the preempt delay has passed.
    Preempt = 2,
    /// Master: the make-before-break handover bound (or the step-down linger)
    /// has passed.
    Handover = 3,
    /// Master: the next round of the re-announce schedule is due.
    Reannounce = 4,
}

impl Timer {
    const COUNT: usize = 5;
}

/// One optional deadline per [`Timer`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Timers {
    deadlines: [Option<Instant>; Timer::COUNT],
}

impl Timers {
    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer as usize]
    }

    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer as usize] = Some(at);
    }

    /// Arm `timer` for `at`, unless it is already armed for earlier.
    pub(super) fn set_earlier(&mut self, timer: Timer, at: Instant) {
        let slot = &mut self.deadlines[timer as usize];
        *slot = Some(slot.map_or(at, |current| current.min(at)));
    }

    pub(super) fn clear(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    pub(super) fn clear_all(&mut self) {
        *self = Self::default();
    }

    /// Is `timer` armed for `now` or earlier?
    pub(super) fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The earliest armed deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
}
