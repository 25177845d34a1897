//! The instance's one timer: the election's next deadline, on a timerfd when
//! it decides a takeover, on tokio's timer wheel otherwise.
//!
//! Why a timerfd for a backup: tokio's clock ticks in whole milliseconds and
//! rounds every deadline up to the next tick, and it parks in `epoll_wait`
//! with a millisecond timeout — a timer fires 0–2 ms late. A backup's
//! master-down timer is the failover, so that lateness was added to every
//! takeover (+1.9 ms at 100 ms adverts, +2.3 ms at 10 ms; issue 15). A timerfd
//! armed with the absolute `CLOCK_MONOTONIC` time (the clock
//! `std::time::Instant` reads) fires within microseconds. It is armed only for
//! a deadline's last 3 ms: until then the wheel waits, because the deadline
//! moves with every advert and a wheel entry moves for free (see `expired`).
//!
//! Why tokio's wheel for a master: its deadline only sends the next advert,
//! where a millisecond late is harmless, and the wheel fires every timer due
//! in the same tick in one wake-up. Instances started together keep their
//! advert timers in phase: with 255 groups on timerfds each advert was a
//! wake-up of its own on both nodes, and the pair used twice the CPU
//! (`VIPD_BENCH_ONLY=scale255`: 1.0 % against 0.55 % of a core).
//!
//! What it may not touch: anything but its own file descriptor and sleep.

use std::future::Future as _;
use std::io;
use std::os::fd::{AsFd as _, AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;

/// A timerfd as the reactor sees it.
struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// How precisely a deadline must be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Precision {
    /// Within microseconds (a takeover hangs on it): the timerfd.
    Exact,
    /// Within a millisecond or two, batched with other timers: tokio's wheel.
    Batched,
}

/// One deadline at a time; `None` waits forever.
pub(in crate::daemon) struct DeadlineTimer {
    /// `None` when no timerfd could be had (out of file descriptors): tokio's
    /// timer then keeps exact deadlines too, a millisecond or two late.
    fd: Option<AsyncFd<Fd>>,
    /// Armed while the timerfd is (so a switch to the wheel disarms it).
    fd_armed: bool,
    /// One sleep for the task's life, reset only when the deadline moves: a
    /// new one per wake-up would cost a removal and an insertion in the wheel.
    wheel: Pin<Box<tokio::time::Sleep>>,
    armed: Option<(Instant, Precision)>,
    /// Every deadline on the timerfd, the wheel unused (see [`Mode`]).
    timerfd_only: bool,
}

/// Where a node's instances keep their deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::daemon) enum Mode {
    /// Every deadline on the instance's own timerfd, moved with one system
    /// call. For a node with few instances, where each deadline is a
    /// wake-up of its own anyway: tokio's wheel costs more there — it
    /// extends a deadline moved later only lazily, so a backup's
    /// master-down deadline, moved by every advert, still woke the process
    /// at each stale expiry (about one wake-up per two adverts at 10 ms),
    /// and a master's advert timer, re-armed when the wheel was empty, woke
    /// the runtime's parker once more per advert.
    Own,
    /// The wheel for every deadline but the last 3 ms of a takeover: for
    /// many instances, whose in-phase advert timers the wheel fires in one
    /// wake-up (255 groups on timerfds used twice the CPU).
    Shared,
}

/// The most instances a node runs with [`Mode::Own`] timers.
pub(in crate::daemon) const OWN_TIMERS_UP_TO: usize = 4;

impl DeadlineTimer {
    /// A disarmed timer, registered with the current runtime's reactor.
    pub(in crate::daemon) fn new(instance: &str, mode: Mode) -> Self {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(io::Error::from)
        .and_then(|fd| {
            // SAFETY: `TimerFd` owns its file descriptor: it stays open, and
            // `as_raw_fd` returns the same one, until the AsyncFd is dropped.
            unsafe { AsyncFd::register_with_interest(Fd(fd), tokio::io::Interest::READABLE) }
                .map_err(|e| e.into_parts().1)
        });
        let fd = match fd {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!(%instance, error = %e,
                    "no timerfd for the instance's timer; using the runtime's (takeovers up to 2 ms late)");
                None
            }
        };
        Self {
            fd,
            fd_armed: false,
            wheel: Box::pin(tokio::time::sleep_until(far_future())),
            armed: None,
            timerfd_only: mode == Mode::Own,
        }
    }

    /// The deadline and precision it is armed for.
    pub(super) fn armed(&self) -> Option<(Instant, Precision)> {
        self.armed
    }

    /// Arms the timer for `deadline` (`None` disarms). A deadline already past
    /// fires at once.
    ///
    /// May be called while the task polls the timer from elsewhere (the
    /// socket's task, under the instance's lock): a wheel entry that moves
    /// keeps the task's waker, so a deadline that moves later costs the
    /// task no wake-up. Returns true when the task must be woken to poll
    /// again, because it waited on something the change took away (the
    /// timerfd in its last moments, or nothing at all).
    pub(super) fn set(&mut self, deadline: Option<(Instant, Precision)>) -> bool {
        if self.timerfd_only && self.fd.is_some() {
            // The task always waits on the timerfd's readiness, armed or not:
            // moving it needs no wake-up.
            self.armed = deadline;
            self.arm_fd(deadline.map(|(at, _)| at));
            if self.fd.is_some() {
                return false;
            }
            // Arming failed and dropped the timerfd: the wheel has it now,
            // and the task must poll that instead.
            return true;
        }
        let waited_elsewhere = self.fd_armed || self.armed.is_none();
        self.armed = deadline;
        // The timerfd is armed only in a deadline's last moments (see
        // `poll_expired`); a new deadline starts on the wheel again.
        if self.fd_armed {
            self.arm_fd(None);
        }
        match deadline {
            Some((at, Precision::Exact)) if self.fd.is_some() => {
                let early = at.checked_sub(EXACT_HANDOVER).unwrap_or(at);
                self.wheel.as_mut().reset(early.into());
            }
            Some((at, _)) => self.wheel.as_mut().reset(at.into()),
            None => {}
        }
        waited_elsewhere && deadline.is_some()
    }

    fn arm_fd(&mut self, at: Option<Instant>) {
        let Some(fd) = &self.fd else { return };
        let timer = &fd.get_ref().0;
        // `timerfd_settime` also resets the count of expiries not yet read.
        let armed = match at {
            None => timer.unset(),
            Some(at) => monotonic_time_of(at).and_then(|at| {
                timer.set(
                    Expiration::OneShot(at),
                    TimerSetTimeFlags::TFD_TIMER_ABSTIME,
                )
            }),
        };
        self.fd_armed = at.is_some();
        if let Err(e) = armed {
            // Cannot happen with a valid fd and time; if it does, the wheel
            // keeps this and every later deadline.
            tracing::warn!(error = %e, "arming the instance's timerfd failed; using the runtime's timer");
            self.fd = None;
            self.fd_armed = false;
            if let Some(at) = at {
                self.wheel.as_mut().reset(at.into());
            }
        }
    }

    /// Ready once the armed deadline has passed (never when disarmed).
    ///
    /// An exact deadline waits on the wheel until [`EXACT_HANDOVER`] before
    /// it, then on the timerfd: a backup's deadline moves with every advert,
    /// and moving a wheel entry later costs nothing, where re-arming a
    /// timerfd is a system call and, in a VM, a reprogrammed timer (with 255
    /// groups it doubled the backup's CPU). Only a deadline that is about to
    /// pass — the master really went quiet — arms the timerfd. Ready may
    /// come early in odd cases (a timerfd error); the caller's core then
    /// finds nothing due, and the timer is armed again.
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.timerfd_only && self.fd.is_some() {
            return self.poll_own(cx);
        }
        let Some((deadline, precision)) = self.armed else {
            return Poll::Pending;
        };
        if precision == Precision::Batched || self.fd.is_none() {
            return self.wheel.as_mut().poll(cx);
        }
        if now() >= deadline {
            return Poll::Ready(());
        }
        if !self.fd_armed {
            if self.wheel.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if now() >= deadline {
                return Poll::Ready(());
            }
            self.arm_fd(Some(deadline));
        }
        let Some(read) = self.poll_fd(cx) else {
            // Arming failed: the wheel keeps the deadline (see `arm_fd`).
            return self.wheel.as_mut().poll(cx);
        };
        let Poll::Ready(read) = read else {
            return Poll::Pending;
        };
        match read {
            Ok(()) if now() >= deadline => Poll::Ready(()),
            // Fired before the deadline by our clock (cannot happen while
            // both read CLOCK_MONOTONIC): the wheel keeps the rest.
            Ok(()) => {
                self.fd_armed = false;
                self.wheel.as_mut().reset(deadline.into());
                self.wheel.as_mut().poll(cx)
            }
            Err(e) => {
                self.drop_fd(&e, Some(deadline));
                self.wheel.as_mut().poll(cx)
            }
        }
    }

    /// Waits for the timerfd to fire and reads it: `None` without a timerfd.
    fn poll_fd(&mut self, cx: &mut Context<'_>) -> Option<Poll<Result<(), Errno>>> {
        let fd = self.fd.as_ref()?;
        loop {
            return Some(match fd.poll_read_ready(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => {
                    Poll::Ready(Err(Errno::from_raw(e.raw_os_error().unwrap_or(0))))
                }
                Poll::Ready(Ok(mut ready)) => match ready.get_inner().0.wait() {
                    Err(Errno::EAGAIN) => {
                        ready.clear_ready();
                        continue;
                    }
                    other => Poll::Ready(other),
                },
            });
        }
    }

    /// A timerfd error would repeat: the wheel keeps this deadline and every
    /// later one.
    fn drop_fd(&mut self, error: &Errno, deadline: Option<Instant>) {
        tracing::warn!(%error, "the instance's timerfd failed; using the runtime's timer");
        self.fd = None;
        self.fd_armed = false;
        if let Some(at) = deadline {
            self.wheel.as_mut().reset(at.into());
        }
    }

    /// [`Mode::Own`]: waits on the timerfd alone, registered with the
    /// reactor even while disarmed, so that arming it from elsewhere wakes
    /// the task when it fires.
    fn poll_own(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let Some(read) = self.poll_fd(cx) else {
                return self.wheel.as_mut().poll(cx);
            };
            let Poll::Ready(read) = read else {
                return Poll::Pending;
            };
            let deadline = self.armed.map(|(at, _)| at);
            match read {
                Ok(()) if deadline.is_none_or(|at| now() >= at) => return Poll::Ready(()),
                // Fired before the deadline by our clock (cannot happen while
                // both read CLOCK_MONOTONIC): armed again for the rest.
                Ok(()) => self.arm_fd(deadline),
                Err(e) => self.drop_fd(&e, deadline),
            }
        }
    }

    /// Waits until the armed deadline has passed (forever when disarmed).
    #[cfg(test)]
    async fn expired(&mut self) {
        std::future::poll_fn(|cx| self.poll_expired(cx)).await;
    }
}

/// How long before an exact deadline the wheel hands over to the timerfd:
/// more than the wheel's lateness (it rounds up to the next millisecond and
/// parks with a millisecond timeout), so the timerfd is armed in time.
const EXACT_HANDOVER: Duration = Duration::from_millis(3);

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

/// `deadline` as an absolute `CLOCK_MONOTONIC` time, the clock `Instant` reads
/// on Linux. Never zero (which would disarm the timerfd).
///
/// The instance's clock is tokio's (`super::clock`), which reads the same
/// clock while time is not paused; exact deadlines need the real clock (no
/// test pauses it).
fn monotonic_time_of(deadline: Instant) -> nix::Result<TimeSpec> {
    let now = now();
    let clock = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
    let at = Duration::from(clock) + deadline.saturating_duration_since(now);
    Ok(TimeSpec::from_duration(at.max(Duration::from_nanos(1))))
}

fn now() -> Instant {
    super::clock::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exact_fires_at_the_deadline_not_before_and_moves_with_it() {
        let mut timer = DeadlineTimer::new("test", Mode::Shared);
        let start = Instant::now();
        timer.set(Some((start + Duration::from_millis(30), Precision::Exact)));
        // Moved later before it fires: the first setting does not count.
        timer.set(Some((start + Duration::from_millis(60), Precision::Exact)));
        timer.expired().await;
        assert!(start.elapsed() >= Duration::from_millis(60));
        // A deadline in the past fires at once.
        timer.set(Some((Instant::now(), Precision::Exact)));
        tokio::time::timeout(Duration::from_secs(5), timer.expired())
            .await
            .expect("a past deadline fires");
    }

    #[tokio::test]
    async fn switching_precision_keeps_one_deadline() {
        let mut timer = DeadlineTimer::new("test", Mode::Shared);
        let start = Instant::now();
        // An exact deadline replaced by a later batched one: the timerfd must
        // not fire at the old time.
        timer.set(Some((start + Duration::from_millis(20), Precision::Exact)));
        timer.set(Some((
            start + Duration::from_millis(80),
            Precision::Batched,
        )));
        timer.expired().await;
        assert!(start.elapsed() >= Duration::from_millis(80));
        timer.set(Some((
            Instant::now() + Duration::from_millis(10),
            Precision::Exact,
        )));
        tokio::time::timeout(Duration::from_secs(5), timer.expired())
            .await
            .expect("back on the timerfd, it fires");
    }

    #[tokio::test]
    async fn own_mode_keeps_every_deadline_on_the_timerfd_and_moves_it_without_a_wake() {
        let mut timer = DeadlineTimer::new("test", Mode::Own);
        let start = Instant::now();
        assert!(
            !timer.set(Some((
                start + Duration::from_millis(20),
                Precision::Batched
            ))),
            "the task waits on the timerfd even while disarmed"
        );
        // Moved later before it fires: the first setting does not count.
        assert!(!timer.set(Some((start + Duration::from_millis(50), Precision::Exact))));
        timer.expired().await;
        assert!(start.elapsed() >= Duration::from_millis(50));
        timer.set(None);
        assert!(
            tokio::time::timeout(Duration::from_millis(30), timer.expired())
                .await
                .is_err(),
            "disarmed: never"
        );
    }

    #[tokio::test]
    async fn disarmed_never_fires() {
        let mut timer = DeadlineTimer::new("test", Mode::Shared);
        timer.set(Some((Instant::now(), Precision::Exact)));
        timer.set(None);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), timer.expired())
                .await
                .is_err()
        );
    }
}
