//! The instance's one timer: the election's next deadline, kept on a timerfd.
//!
//! Why not tokio's timer: tokio's clock ticks in whole milliseconds and rounds
//! every deadline up to the next tick, and it parks in `epoll_wait` with a
//! millisecond timeout — a timer fires 0–2 ms late. The master-down timer is
//! the failover, so that lateness is added to every takeover (measured +1.9 ms
//! at 100 ms adverts, issue 15). A timerfd armed with the absolute
//! `CLOCK_MONOTONIC` time (the clock `std::time::Instant` reads) fires within
//! the kernel's timer slack, and waking on it is one readable file descriptor
//! in the reactor's `epoll` set. Re-arming is one `timerfd_settime`; tokio's
//! wheel instead wakes its own driver (an eventfd write and an extra
//! `epoll_wait`) whenever a re-armed timer becomes its earliest.
//!
//! What it may not touch: anything but its own file descriptor.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd, RawFd};
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

/// One deadline at a time; `None` waits forever.
pub(super) struct DeadlineTimer {
    /// `None` when no timerfd could be had (out of file descriptors): tokio's
    /// timer then does the job, a millisecond or two late.
    fd: Option<AsyncFd<Fd>>,
    armed: Option<Instant>,
}

impl DeadlineTimer {
    /// A disarmed timer, registered with the current runtime's reactor.
    pub(super) fn new(instance: &str) -> Self {
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
                    "no timerfd for the instance's timer; using the runtime's (deadlines up to 2 ms late)");
                None
            }
        };
        Self { fd, armed: None }
    }

    /// The deadline it is armed for.
    pub(super) fn armed(&self) -> Option<Instant> {
        self.armed
    }

    /// Arms the timer for `deadline` (`None` disarms). A deadline already past
    /// fires at once.
    pub(super) fn set(&mut self, deadline: Option<Instant>) {
        self.armed = deadline;
        let Some(fd) = &self.fd else { return };
        let timer = &fd.get_ref().0;
        // An expiry of an earlier setting may still be counted on the fd:
        // `expired` checks the clock, so it only costs a loop there.
        let armed = match deadline {
            None => timer.unset(),
            Some(deadline) => timer.set(
                Expiration::OneShot(monotonic_time_of(deadline)),
                TimerSetTimeFlags::TFD_TIMER_ABSTIME,
            ),
        };
        if let Err(e) = armed {
            // Cannot happen with a valid fd and time; if it does, `expired`
            // falls back to tokio's timer for this deadline.
            tracing::warn!(error = %e, "arming the instance's timerfd failed");
            self.fd = None;
        }
    }

    /// Waits until the armed deadline has passed (forever when disarmed).
    pub(super) async fn expired(&self) {
        let Some(deadline) = self.armed else {
            return std::future::pending::<()>().await;
        };
        let Some(fd) = &self.fd else {
            return tokio::time::sleep_until(deadline.into()).await;
        };
        loop {
            let Ok(mut ready) = fd.readable().await else {
                // The reactor is gone (runtime shutting down).
                return tokio::time::sleep_until(deadline.into()).await;
            };
            match ready.get_inner().0.wait() {
                Ok(()) if Instant::now() >= deadline => return,
                // An expiry of an earlier setting: wait on.
                Ok(()) => {}
                Err(Errno::EAGAIN) => ready.clear_ready(),
                // Any other error of a timerfd read would repeat.
                Err(_) => return tokio::time::sleep_until(deadline.into()).await,
            }
        }
    }
}

/// `deadline` as an absolute `CLOCK_MONOTONIC` time, the clock `Instant` reads
/// on Linux. Never zero (which would disarm the timerfd).
fn monotonic_time_of(deadline: Instant) -> TimeSpec {
    let now = Instant::now();
    // CLOCK_MONOTONIC cannot fail on Linux; zero would only fire at once.
    let clock = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .unwrap_or(TimeSpec::new(0, 0));
    let at = Duration::from(clock) + deadline.saturating_duration_since(now);
    TimeSpec::from_duration(at.max(Duration::from_nanos(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_at_the_deadline_not_before_and_moves_with_it() {
        let mut timer = DeadlineTimer::new("test");
        let start = Instant::now();
        timer.set(Some(start + Duration::from_millis(30)));
        // Moved later before it fires: the first setting does not count.
        timer.set(Some(start + Duration::from_millis(60)));
        timer.expired().await;
        assert!(start.elapsed() >= Duration::from_millis(60));
        // A deadline in the past fires at once.
        timer.set(Some(Instant::now()));
        tokio::time::timeout(Duration::from_secs(5), timer.expired())
            .await
            .expect("a past deadline fires");
    }

    #[tokio::test]
    async fn disarmed_never_fires() {
        let mut timer = DeadlineTimer::new("test");
        timer.set(Some(Instant::now()));
        timer.set(None);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), timer.expired())
                .await
                .is_err()
        );
    }
}
