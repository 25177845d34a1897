//! What a listener's accept loop does when `accept` fails: back off, and log
//! in a bounded way.
//!
//! `accept` fails mostly for want of a file descriptor (`EMFILE`, `ENFILE`):
//! the connection stays queued and the listener stays readable, so a loop
//! that retries at once spins a core, and one that logs each failure floods
//! the journal (ten lines a second at a fixed 100 ms). [`AcceptBackoff`]
//! waits [`FIRST_WAIT`] after a failure, doubling up to [`MAX_WAIT`] while
//! they go on, and back to [`FIRST_WAIT`] after an accept succeeds. It logs
//! a failure line at most once every [`SUMMARY_EVERY`] (the first at once,
//! later ones with the count since the previous line), and after each
//! failure line one line when an accept succeeds again: at most two lines
//! per [`SUMMARY_EVERY`] however the failures and successes alternate (at
//! the edge of the limit every freed descriptor lets one accept through).
//! The control socket and the metrics endpoint use it. It reads no clock:
//! the caller passes `now`.

use std::io;
use std::time::{Duration, Instant};

/// The wait after the first failure in a row.
pub const FIRST_WAIT: Duration = Duration::from_millis(10);
/// The longest wait between two attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// At most one summary line per this long while the failures go on.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// One failure's consequences: how long to wait, and the line to log, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct AcceptFailure {
    pub wait: Duration,
    pub log: Option<String>,
}

/// The back-off and log state of one listener's accept loop.
#[derive(Debug)]
pub struct AcceptBackoff {
    /// The listener, for the log lines (`control socket`, `metrics endpoint`).
    what: &'static str,
    /// The wait after the next failure.
    wait: Duration,
    /// Failures not yet in a log line.
    unreported: u64,
    /// When the last failure line went.
    reported_at: Option<Instant>,
    /// A failure line went and no recovery line since.
    recovery_pending: bool,
}

impl AcceptBackoff {
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            wait: FIRST_WAIT,
            unreported: 0,
            reported_at: None,
            recovery_pending: false,
        }
    }

    /// `accept` failed with `error` at `now`.
    pub fn failed(&mut self, now: Instant, error: &io::Error) -> AcceptFailure {
        let wait = self.wait;
        self.wait = (self.wait * 2).min(MAX_WAIT);
        self.unreported += 1;
        let what = self.what;
        let log = match self.reported_at {
            None => Some(format!(
                "{what}: accept failed: {error}; retrying after {} ms to {} s, and saying so at most every {} s",
                FIRST_WAIT.as_millis(),
                MAX_WAIT.as_secs(),
                SUMMARY_EVERY.as_secs()
            )),
            Some(last) if now.duration_since(last) >= SUMMARY_EVERY => Some(format!(
                "{what}: accept failed {} times in the last {} s: {error}",
                self.unreported,
                now.duration_since(last).as_secs()
            )),
            Some(_) => None,
        };
        if log.is_some() {
            self.unreported = 0;
            self.reported_at = Some(now);
            self.recovery_pending = true;
        }
        AcceptFailure { wait, log }
    }

    /// `accept` succeeded: the next failure waits [`FIRST_WAIT`] again. The
    /// line to log, once after each failure line.
    pub fn succeeded(&mut self) -> Option<String> {
        self.wait = FIRST_WAIT;
        if !std::mem::take(&mut self.recovery_pending) {
            return None;
        }
        Some(match self.unreported {
            0 => format!("{}: accepting again", self.what),
            n => format!(
                "{}: accepting again ({n} more failed accepts since the last line)",
                self.what
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(libc::EMFILE)
    }

    #[test]
    fn waits_double_up_to_the_maximum() {
        let mut b = AcceptBackoff::new("control socket");
        let now = Instant::now();
        let waits: Vec<Duration> = (0..10).map(|_| b.failed(now, &emfile()).wait).collect();
        assert_eq!(waits[0], FIRST_WAIT);
        assert_eq!(waits[1], FIRST_WAIT * 2);
        assert_eq!(waits[9], MAX_WAIT);
    }

    #[test]
    fn a_minute_of_failures_logs_a_handful_of_lines() {
        let mut b = AcceptBackoff::new("control socket");
        let start = Instant::now();
        let mut now = start;
        let mut lines = Vec::new();
        let mut attempts = 0;
        while now.duration_since(start) < Duration::from_secs(60) {
            let f = b.failed(now, &emfile());
            lines.extend(f.log);
            now += f.wait;
            attempts += 1;
        }
        // The first line, then one per 10 s: 6 or 7 lines, not 600.
        assert!((6..=7).contains(&lines.len()), "{lines:#?}");
        assert!(lines[0].contains("accept failed: "), "{}", lines[0]);
        assert!(lines[1].contains("times in the last 10 s"), "{}", lines[1]);
        assert!(attempts > 60, "it keeps trying: {attempts}");
        let back = b.succeeded().expect("a line for the recovery");
        assert!(back.contains("accepting again"), "{back}");
        assert_eq!(b.succeeded(), None, "one line per recovery");
        assert_eq!(
            b.failed(now, &emfile()).wait,
            FIRST_WAIT,
            "the wait starts over"
        );
    }

    #[test]
    fn alternating_failures_and_successes_stay_bounded() {
        // At the edge of the limit: every freed descriptor lets one accept
        // through, and the next fails.
        let mut b = AcceptBackoff::new("control socket");
        let start = Instant::now();
        let mut lines = Vec::new();
        for ms in 0..30_000u64 {
            let now = start + Duration::from_millis(ms);
            let f = b.failed(now, &emfile());
            assert_eq!(f.wait, FIRST_WAIT);
            lines.extend(f.log);
            lines.extend(b.succeeded());
        }
        // 30 s: a failure line and a recovery line per 10 s.
        assert_eq!(lines.len(), 6, "{lines:#?}");
        assert!(lines[2].contains("failed 10000 times"), "{}", lines[2]);
    }
}
