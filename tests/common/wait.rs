//! Waiting on the lab: [`wait_until`] a condition holds (returning how long it
//! took) and [`hold_for`] a while that it keeps holding, both polling every 10 ms
//! and panicking with every daemon's log past their deadline; and the usual
//! start of a test, [`start_nodes`] then [`wait_sole_holder`].

use std::thread;
use std::time::{Duration, Instant};

use super::{check_interrupted, logs_for_panic, Daemon, InstanceSpec, Lab, NodeSpec};

/// Polls `done` every 10 ms until it returns true and returns how long that took.
/// Past `deadline`, panics naming `what`, with the logs of this test's daemons.
pub(crate) fn wait_until(
    what: &str,
    deadline: Duration,
    mut done: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if done() {
            return start.elapsed();
        }
        if start.elapsed() > deadline {
            let logs = logs_for_panic();
            panic!("timed out after {deadline:?} waiting until {what}{logs}");
        }
        check_interrupted();
        thread::sleep(Duration::from_millis(10));
    }
}

/// Checks `ok` every 10 ms for `duration` and panics, naming `what`, the first time
/// it is false: for "this stays true" properties.
pub(crate) fn hold_for(what: &str, duration: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < duration {
        if !ok() {
            let logs = logs_for_panic();
            panic!(
                "{what} stopped holding after {} ms{logs}",
                start.elapsed().as_millis()
            );
        }
        check_interrupted();
        thread::sleep(Duration::from_millis(10));
    }
}

/// Starts one daemon per spec on nodes 1, 2, ... named `n1`, `n2`, ...
pub(crate) fn start_nodes(lab: &Lab, specs: Vec<InstanceSpec>) -> Vec<Daemon> {
    specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            Daemon::start(lab.node(i + 1), NodeSpec::new(&format!("n{}", i + 1), spec))
        })
        .collect()
}

/// Waits until exactly node `master` (1-based) holds `vip`, and returns how long
/// that took.
pub(crate) fn wait_sole_holder(
    lab: &Lab,
    vip: &str,
    master: usize,
    deadline: Duration,
) -> Duration {
    wait_until(&format!("only n{master} holds {vip}"), deadline, || {
        lab.holders(vip) == [master]
    })
}
