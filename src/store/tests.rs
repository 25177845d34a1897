use std::time::{Duration, Instant};

use super::*;

const TTL: Duration = Duration::from_secs(2);

fn seat(node: &str, open: bool, now: Instant) -> StoreSeat {
    StoreSeat::new(
        SeatConfig {
            node: node.to_owned(),
            lease_ttl: TTL,
            on_unreachable: if open {
                OnUnreachable::FailOpen
            } else {
                OnUnreachable::FailClosed
            },
            follow: None,
            handover_timeout: Duration::from_secs(3),
        },
        now,
    )
}

fn actions(seat: &mut StoreSeat) -> Vec<StoreAction> {
    std::iter::from_fn(|| seat.poll_action()).collect()
}

/// The seat's requests, with every member record it publishes acknowledged
/// (etcd took it) until it asks for nothing more of that kind.
fn acked(seat: &mut StoreSeat, now: Instant) -> Vec<StoreAction> {
    let mut all = Vec::new();
    loop {
        let batch = actions(seat);
        let published = batch
            .iter()
            .any(|a| matches!(a, StoreAction::Publish { .. }));
        all.extend(batch);
        if !published {
            return all;
        }
        seat.handle_written(now, Write::Publish, Ok(true));
    }
}

fn candidacy(priority: u8) -> Candidacy {
    Candidacy {
        eligible: true,
        priority,
        preempt: true,
        promoted: false,
        serving: None,
        mac: None,
    }
}

/// The holder key naming `value` under `lease`, at `rev`.
fn key(value: &str, lease: i64, rev: i64) -> KeyRecord {
    KeyRecord {
        value: value.to_owned(),
        lease,
        mod_revision: rev,
    }
}

/// A view with only the holder key.
fn held(holder: KeyRecord) -> View {
    View {
        holder: Some(holder),
        ..View::default()
    }
}

fn member(node: &str, lease: i64, rev: i64, info: MemberInfo) -> MemberRecord {
    MemberRecord {
        node: node.to_owned(),
        lease,
        mod_revision: rev,
        info: Some(info),
    }
}

fn info(priority: u8, serving: Option<i64>) -> MemberInfo {
    MemberInfo {
        priority,
        eligible: true,
        preempt: true,
        promoted: false,
        serving,
        mac: None,
    }
}

/// A seat with lease 7 granted at `t0`, candidacy 100, an empty view.
fn granted(node: &str, open: bool, t0: Instant) -> StoreSeat {
    let mut s = seat(node, open, t0);
    assert_eq!(actions(&mut s), vec![StoreAction::Grant { ttl_secs: 2 }]);
    s.handle_granted(t0, t0, 7, TTL);
    s.handle_candidacy(t0, candidacy(100));
    s
}

#[test]
fn an_eligible_node_alone_campaigns_and_holds_once_the_key_is_its() {
    let t0 = Instant::now();
    let mut s = granted("a", false, t0);
    acked(&mut s, t0);
    s.handle_view(t0, View::default());
    let a = acked(&mut s, t0);
    assert!(a.contains(&StoreAction::Campaign { lease: 7 }), "{a:?}");
    assert!(!s.verdict(t0).holds);
    s.handle_written(t0, Write::Campaign, Ok(true));
    s.handle_view(t0, held(key("a", 7, 42)));
    assert!(s.verdict(t0).holds);
    assert_eq!(s.token(), Some(42));
}

#[test]
fn a_better_member_campaigns_first_and_the_rest_wait_out_the_grace() {
    let t0 = Instant::now();
    let mut s = granted("b", false, t0);
    acked(&mut s, t0);
    let view = View {
        members: vec![member("a", 9, 5, info(200, None))],
        ..View::default()
    };
    s.handle_view(t0, view);
    assert!(!acked(&mut s, t0).contains(&StoreAction::Campaign { lease: 7 }));
    assert_eq!(s.poll_timeout(), Some(t0 + CAMPAIGN_GRACE));
    s.handle_timeout(t0 + CAMPAIGN_GRACE);
    assert!(acked(&mut s, t0).contains(&StoreAction::Campaign { lease: 7 }));
}

#[test]
fn fail_closed_stops_holding_at_ttl_minus_margin_after_the_last_renewal_was_sent() {
    let t0 = Instant::now();
    let mut s = granted("a", false, t0);
    s.handle_view(t0, held(key("a", 7, 42)));
    assert!(s.verdict(t0).holds);
    // Renewal sent at t0+500ms succeeds (answered late); later ones fail.
    let sent = t0 + Duration::from_millis(500);
    s.handle_kept_alive(t0 + Duration::from_millis(900), sent, 7);
    let release_at = sent + TTL - vouch_margin(TTL);
    assert_eq!(release_at, sent + Duration::from_millis(1800));
    s.handle_keepalive_failed(t0 + Duration::from_millis(1500), 7, "timeout".into(), false);
    assert!(s.verdict(release_at - Duration::from_millis(1)).holds);
    assert!(s.poll_timeout().is_some_and(|t| t <= release_at));
    s.handle_timeout(release_at);
    let v = s.verdict(release_at);
    assert!(!v.holds);
    assert!(v.why.contains("cannot vouch"), "{}", v.why);
}

#[test]
fn fail_open_keeps_holding_unvouched_until_etcd_names_another() {
    let t0 = Instant::now();
    let mut s = granted("a", true, t0);
    let mine = held(key("a", 7, 42));
    s.handle_view(t0, mine);
    let late = t0 + Duration::from_secs(30);
    s.handle_keepalive_failed(late, 7, "lease not found".into(), true);
    assert!(s.verdict(late).holds);
    let notices: Vec<_> = std::iter::from_fn(|| s.poll_notice()).collect();
    assert!(notices.contains(&StoreNotice::Unvouched), "{notices:?}");
    s.handle_view(
        late,
        View {
            holder: Some(key("b", 9, 50)),
            members: vec![member("b", 9, 49, info(100, Some(50)))],
            ..View::default()
        },
    );
    assert!(!s.verdict(late).holds);
}

#[test]
fn a_draining_holder_hands_over_and_keeps_the_vips_until_the_successor_serves() {
    let t0 = Instant::now();
    let mut s = granted("a", false, t0);
    let mut view = View {
        holder: Some(key("a", 7, 42)),
        members: vec![member("b", 9, 30, info(100, None))],
        ..View::default()
    };
    s.handle_view(t0, view.clone());
    acked(&mut s, t0);
    assert!(s.verdict(t0).successor);
    s.handle_candidacy(
        t0,
        Candidacy {
            eligible: false,
            ..candidacy(100)
        },
    );
    let first = actions(&mut s);
    assert!(
        first
            == vec![StoreAction::Publish {
                lease: 7,
                info: MemberInfo {
                    eligible: false,
                    ..info(100, None)
                }
            }],
        "the ineligible record goes first, alone: {first:?}"
    );
    s.handle_written(t0, Write::Publish, Ok(true));
    let a = acked(&mut s, t0);
    assert!(
        a.contains(&StoreAction::HandOver {
            to: "b".into(),
            to_lease: 9,
            expected: 42
        }),
        "{a:?}"
    );
    s.handle_written(t0, Write::HandOver, Ok(true));
    view.holder = Some(key("b", 9, 43));
    s.handle_view(t0, view.clone());
    assert!(
        s.verdict(t0).holds,
        "make-before-break: held until b serves"
    );
    view.members = vec![member("b", 9, 44, info(100, Some(43)))];
    s.handle_view(t0, view);
    assert!(!s.verdict(t0).holds);
}

#[test]
fn a_holder_key_naming_this_node_under_another_lease_is_foreign() {
    let t0 = Instant::now();
    let mut s = granted("a", false, t0);
    s.handle_view(t0, held(key("a", 99, 42)));
    assert!(!s.verdict(t0).holds);
    let notices: Vec<_> = std::iter::from_fn(|| s.poll_notice()).collect();
    assert!(notices
        .iter()
        .any(|n| matches!(n, StoreNotice::ForeignHolder { lease: 99, .. })));
}

#[test]
fn following_patroni_holds_only_on_the_leader_and_only_while_vouched() {
    let t0 = Instant::now();
    let mut s = StoreSeat::new(
        SeatConfig {
            node: "n1".into(),
            lease_ttl: TTL,
            on_unreachable: OnUnreachable::FailClosed,
            follow: Some("pg1".into()),
            handover_timeout: Duration::from_secs(3),
        },
        t0,
    );
    actions(&mut s);
    s.handle_granted(t0, t0, 7, TTL);
    let leader = |name: &str, rev| View::leader(Some(key(name, 3, rev)));
    s.handle_view(t0, leader("pg2", 10));
    assert!(!s.verdict(t0).holds);
    s.handle_view(t0, leader("pg1", 11));
    assert!(s.verdict(t0).holds);
    assert_eq!(s.token(), Some(11));
    assert!(
        !s.verdict(t0).successor,
        "nobody else may hold Patroni's VIP"
    );
    let gone = t0 + TTL;
    s.handle_timeout(gone);
    assert!(!s.verdict(gone).holds);
}

#[test]
fn member_records_parse_and_bad_ones_are_named() {
    let good = info(150, Some(3)).to_json();
    let view = View::from_keys(
        "/vipd/db",
        [
            ("/vipd/db/holder", b"a".as_slice(), 7, 12),
            ("/vipd/db/members/a", good.as_slice(), 7, 11),
            ("/vipd/db/members/x", b"{not json".as_slice(), 8, 10),
            ("/vipd/db/other", b"?".as_slice(), 0, 9),
        ],
    );
    assert_eq!(view.holder.as_ref().map(|h| h.value.as_str()), Some("a"));
    assert_eq!(view.members.len(), 2);
    assert_eq!(view.members[0].info, Some(info(150, Some(3))));
    assert_eq!(view.bad_members, vec!["/vipd/db/members/x".to_owned()]);
}
