//! The process metrics Prometheus users expect (`process_*`, as the official
//! client libraries name them), read from `/proc/self`: systemd's
//! `ProcSubset=pid` hides the rest of /proc but not this.

use std::fs;

/// What `/proc/self` says about this process; a field is `None` when it could
/// not be read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub threads: Option<u64>,
}

impl ProcessStats {
    /// Reads `/proc/self/stat`, `/proc/self/fd` and `/proc/self/limits`; the
    /// start time also needs the boot time (see [`boot_time`]).
    pub fn read() -> Self {
        let ticks = clock_ticks();
        let page = page_size();
        let mut stats = Self::default();
        if let Ok(text) = fs::read_to_string("/proc/self/stat") {
            if let Some(fields) = stat_fields(&text) {
                // Field numbers as in proc(5), counted from 1; `fields[0]` is field 3.
                let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
                if let (Some(utime), Some(stime)) = (field(14), field(15)) {
                    stats.cpu_seconds = Some((utime + stime) as f64 / ticks);
                }
                stats.threads = field(20);
                stats.virtual_memory_bytes = field(23);
                stats.resident_memory_bytes = field(24).map(|pages| pages * page);
                if let (Some(start_ticks), Some(boot)) = (field(22), boot_time()) {
                    stats.start_time_seconds = Some(boot + start_ticks as f64 / ticks);
                }
            }
        }
        stats.open_fds = fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64);
        stats.max_fds = fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|text| max_open_files(&text));
        stats
    }
}

/// The fields of `/proc/self/stat` after the command name (which may hold
/// spaces and parentheses, so split after its last `)`).
fn stat_fields(text: &str) -> Option<Vec<&str>> {
    let after = &text[text.rfind(')')? + 1..];
    Some(after.split_whitespace().collect())
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The system's boot time in Unix seconds: `btime` in `/proc/stat` when
/// readable, else now minus the uptime the clock reports.
fn boot_time() -> Option<f64> {
    if let Ok(text) = fs::read_to_string("/proc/stat") {
        if let Some(btime) = text
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            return Some(btime);
        }
    }
    // `ProcSubset=pid` hides /proc/stat. CLOCK_BOOTTIME is the uptime, and
    // the wall clock minus it is the boot time.
    let mut uptime = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `uptime` is a valid timespec for the call to write.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut uptime) } != 0 {
        return None;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(now - (uptime.tv_sec as f64 + uptime.tv_nsec as f64 / 1e9))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn page_size() -> u64 {
    // SAFETY: as above.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_read() {
        let s = ProcessStats::read();
        assert!(s.resident_memory_bytes.unwrap_or(0) > 0, "{s:?}");
        assert!(s.open_fds.unwrap_or(0) >= 3, "{s:?}");
        assert!(s.max_fds.unwrap_or(0) > 0, "{s:?}");
        assert!(s.start_time_seconds.unwrap_or(0.0) > 1.0e9, "{s:?}");
        assert!(s.cpu_seconds.is_some(), "{s:?}");
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped() {
        let fields = stat_fields("42 (a (b) c) S 1 2 3").unwrap_or_default();
        assert_eq!(fields, ["S", "1", "2", "3"]);
        assert_eq!(
            max_open_files(
                "Max open files            1024                 524288               files\n"
            ),
            Some(1024)
        );
    }
}
