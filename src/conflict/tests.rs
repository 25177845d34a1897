//! The conflict watch's rules on a virtual clock.

use super::*;
use std::net::Ipv4Addr;

const OWN: Mac = Mac([2, 0, 0, 0, 0, 1]);
const PEER: Mac = Mac([2, 0, 0, 0, 0, 2]);
const ROGUE: Mac = Mac([2, 0, 0, 0, 0, 0x66]);

fn vip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 200))
}

fn seen(mac: Mac) -> Sighting {
    Sighting { addr: vip(), mac }
}

fn watch(probe: bool) -> (ConflictWatch, Instant) {
    let mut w = ConflictWatch::new(probe.then(ProbeSettings::default));
    w.set_own_mac(Some(OWN));
    w.set_peer_mac(7, PEER);
    (w, Instant::now())
}

fn drain(w: &mut ConflictWatch) -> Vec<ConflictEvent> {
    std::iter::from_fn(|| w.poll_event()).collect()
}

/// Advances to each deadline up to `until`, collecting the events.
fn run_until(w: &mut ConflictWatch, until: Instant) -> Vec<ConflictEvent> {
    let mut events = drain(w);
    while let Some(at) = w.poll_timeout().filter(|at| *at <= until) {
        w.handle_timeout(at);
        events.extend(drain(w));
    }
    events
}

#[test]
fn own_and_peer_macs_and_sightings_while_not_holding_never_count() {
    let (mut w, t0) = watch(false);
    w.handle_sighting(t0, seen(ROGUE));
    assert!(drain(&mut w).is_empty(), "not holding: ignored");
    assert!(w.handle_claim(t0, true));
    w.handle_sighting(t0, seen(OWN));
    w.handle_sighting(t0, seen(PEER));
    assert!(drain(&mut w).is_empty());
    assert_eq!(w.foreign_sightings(), 0);
    // Without our own MAC nothing can be told apart: nothing counts.
    w.set_own_mac(None);
    w.handle_sighting(t0, seen(ROGUE));
    assert!(drain(&mut w).is_empty());
}

#[test]
fn a_foreign_claim_starts_one_episode_and_reannounces_at_once() {
    let (mut w, t0) = watch(false);
    assert!(w.handle_claim(t0, false));
    w.handle_sighting(t0, seen(ROGUE));
    assert_eq!(
        drain(&mut w),
        vec![
            ConflictEvent::ForeignClaimStarted {
                addr: vip(),
                mac: ROGUE
            },
            ConflictEvent::Reannounce
        ]
    );
    assert_eq!(w.foreign_claims().count(), 1);
}

#[test]
fn reannouncements_are_rate_limited_and_one_follows_the_last_claim() {
    let (mut w, t0) = watch(false);
    w.handle_claim(t0, false);
    let mut rounds = Vec::new();
    // A rogue claiming every 10 ms for 3 s.
    let mut t = t0;
    let end = t0 + Duration::from_secs(3);
    while t < end {
        w.handle_sighting(t, seen(ROGUE));
        for e in run_until(&mut w, t) {
            if e == ConflictEvent::Reannounce {
                rounds.push(t);
            }
        }
        t += Duration::from_millis(10);
    }
    let last_claim = t - Duration::from_millis(10);
    for e in run_until(&mut w, last_claim + REANNOUNCE_GAP) {
        if e == ConflictEvent::Reannounce {
            rounds.push(last_claim + REANNOUNCE_GAP);
        }
    }
    for pair in rounds.windows(2) {
        assert!(pair[1] - pair[0] >= REANNOUNCE_GAP, "{rounds:?}");
    }
    assert!(rounds.len() <= 3000 / 200 + 2, "{} rounds", rounds.len());
    let after_last = rounds.iter().filter(|r| **r > last_claim).count();
    assert_eq!(after_last, 1, "one round after the rogue's last claim");
    assert_eq!(w.foreign_sightings(), 300);
}

#[test]
fn an_episode_ends_after_quiet_and_on_release() {
    let (mut w, t0) = watch(false);
    w.handle_claim(t0, false);
    w.handle_sighting(t0, seen(ROGUE));
    w.handle_sighting(t0 + Duration::from_secs(1), seen(ROGUE));
    let events = run_until(&mut w, t0 + Duration::from_secs(10));
    assert!(events.contains(&ConflictEvent::ForeignClaimEnded {
        addr: vip(),
        mac: ROGUE,
        sightings: 2,
        lasted: Duration::from_secs(1) + EPISODE_QUIET,
    }));
    assert_eq!(w.foreign_claims().count(), 0);
    // Release ends an episode at once.
    let t1 = t0 + Duration::from_secs(20);
    w.handle_sighting(t1, seen(ROGUE));
    drain(&mut w);
    w.handle_holding(t1, false);
    assert!(matches!(
        drain(&mut w).as_slice(),
        [ConflictEvent::ForeignClaimEnded { sightings: 1, .. }]
    ));
    w.handle_sighting(t1, seen(ROGUE));
    assert!(drain(&mut w).is_empty(), "released: no longer watched");
}

#[test]
fn a_takeover_is_never_probed() {
    let (mut w, t0) = watch(true);
    assert!(w.handle_claim(t0, false), "a peer was heard: claim at once");
    assert!(drain(&mut w).is_empty());
}

#[test]
fn a_cold_claim_probes_then_claims_when_nobody_answers() {
    let (mut w, t0) = watch(true);
    assert!(!w.handle_claim(t0, true));
    assert!(w.is_probing());
    let events = run_until(&mut w, t0 + Duration::from_secs(1));
    let probes = events
        .iter()
        .filter(|e| **e == ConflictEvent::SendProbes)
        .count();
    assert_eq!(probes, 3);
    assert_eq!(events.last(), Some(&ConflictEvent::ClaimCleared));
    // Now holding: a foreign claim is watched.
    w.handle_sighting(t0 + Duration::from_secs(1), seen(ROGUE));
    assert!(drain(&mut w).contains(&ConflictEvent::Reannounce));
}

#[test]
fn a_cold_claim_someone_answers_for_is_refused_retried_and_lifted() {
    let (mut w, t0) = watch(true);
    assert!(!w.handle_claim(t0, true));
    drain(&mut w);
    w.handle_sighting(t0 + Duration::from_millis(5), seen(ROGUE));
    assert_eq!(
        drain(&mut w),
        vec![ConflictEvent::ClaimRefused {
            addr: vip(),
            mac: ROGUE
        }]
    );
    assert!(w.is_refused());
    // The retry while the rogue still answers: refused again, silently.
    let retry = t0 + Duration::from_millis(5) + PROBE_RETRY;
    let events = run_until(&mut w, retry);
    assert_eq!(events, vec![ConflictEvent::SendProbes]);
    w.handle_sighting(retry + Duration::from_millis(1), seen(ROGUE));
    assert!(drain(&mut w).is_empty());
    assert!(w.is_refused());
    // The rogue left: the next retry lifts the refusal, and a claim right
    // after it needs no new probe.
    let later = retry + Duration::from_millis(1) + PROBE_RETRY + Duration::from_millis(200);
    let events = run_until(&mut w, later);
    assert!(matches!(
        events.last(),
        Some(ConflictEvent::RefusalLifted { .. })
    ));
    assert!(!w.is_refused());
    assert!(w.handle_claim(later, true));
}

#[test]
fn hearing_a_peer_lifts_a_refusal() {
    let (mut w, t0) = watch(true);
    w.handle_claim(t0, true);
    w.handle_sighting(t0, seen(ROGUE));
    drain(&mut w);
    w.handle_peer_heard();
    assert!(matches!(
        drain(&mut w).as_slice(),
        [ConflictEvent::RefusalLifted { .. }]
    ));
    assert!(w.handle_claim(t0 + Duration::from_millis(1), false));
}

#[test]
fn a_release_cancels_a_probe() {
    let (mut w, t0) = watch(true);
    w.handle_claim(t0, true);
    drain(&mut w);
    w.handle_holding(t0, false);
    assert!(run_until(&mut w, t0 + Duration::from_secs(1)).is_empty());
    assert!(!w.is_probing());
}

#[test]
fn peer_table_is_bounded() {
    let (mut w, _) = watch(false);
    for id in 0..(MAX_PEERS as u64 + 10) {
        w.set_peer_mac(id + 100, Mac([2, 0, 0, 0, 1, id as u8]));
    }
    assert!(w.peers.len() <= MAX_PEERS);
}
