use berth_api::crd::{AppliedAction, ConditionStatus, TargetAction, TargetRef};
use berth_api::{LeaseState, Semantics};
use chrono::TimeZone;

use super::*;

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
}

fn cronjob_lease() -> BerthLeaseSpec {
    BerthLeaseSpec {
        target: Some(target("batch/v1", "CronJob", "ingest")),
        acquire_action: Some(TargetAction { suspend: Some(false), replicas: None }),
        release_action: Some(TargetAction { suspend: Some(true), replicas: None }),
        ..Default::default()
    }
}

fn target(api_version: &str, kind: &str, name: &str) -> TargetRef {
    TargetRef { api_version: api_version.into(), kind: kind.into(), name: name.into() }
}

fn holder(identity: &str, token: i32, expires_at: DateTime<Utc>) -> Holder {
    Holder { identity: identity.into(), fencing_token: token, acquired_at: t(0), renewed_at: t(0), expires_at }
}

fn held_status(expires_at: DateTime<Utc>) -> BerthLeaseStatus {
    BerthLeaseStatus {
        state: LeaseState::Held,
        holders: vec![holder("a", 1, expires_at)],
        fencing_token: 1,
        transitions: 1,
        observed_generation: Some(1),
        ..Default::default()
    }
}

#[test]
fn supported_kinds_need_their_exact_api_version() {
    assert_eq!(TargetKind::of(&target("batch/v1", "CronJob", "x")), Some(TargetKind::CronJob));
    assert_eq!(TargetKind::of(&target("apps/v1", "StatefulSet", "x")), Some(TargetKind::StatefulSet));
    assert_eq!(TargetKind::of(&target("apps/v1", "CronJob", "x")), None);
    assert_eq!(TargetKind::of(&target("apps/v1", "DaemonSet", "x")), None);
}

#[test]
fn acquire_action_applies_while_held_and_release_action_otherwise() {
    let spec = cronjob_lease();
    let t = spec.target.clone().unwrap();
    assert_eq!(
        plan_target(&t, &spec, phase(true)),
        TargetPlan::Apply {
            kind: TargetKind::CronJob,
            applied: AppliedAction::Acquire,
            setting: Setting::Suspend(false)
        }
    );
    assert_eq!(
        plan_target(&t, &spec, phase(false)),
        TargetPlan::Apply {
            kind: TargetKind::CronJob,
            applied: AppliedAction::Release,
            setting: Setting::Suspend(true)
        }
    );
}

#[test]
fn missing_action_leaves_the_target_alone() {
    let spec = BerthLeaseSpec { acquire_action: None, ..cronjob_lease() };
    let t = spec.target.clone().unwrap();
    assert_eq!(
        plan_target(&t, &spec, AppliedAction::Acquire),
        TargetPlan::NoAction { applied: AppliedAction::Acquire }
    );
}

#[test]
fn unsupported_kind_and_mismatched_action_are_reported() {
    let spec = BerthLeaseSpec { target: Some(target("apps/v1", "DaemonSet", "d")), ..cronjob_lease() };
    assert!(
        matches!(plan_target(spec.target.as_ref().unwrap(), &spec, AppliedAction::Acquire), TargetPlan::Unsupported { message } if message.contains("apps/v1 DaemonSet"))
    );
    let spec = BerthLeaseSpec { target: Some(target("apps/v1", "Deployment", "d")), ..cronjob_lease() };
    assert!(
        matches!(plan_target(spec.target.as_ref().unwrap(), &spec, AppliedAction::Release), TargetPlan::Mismatch { message } if message.contains("use replicas"))
    );
}

#[test]
fn expiry_drops_the_holder_and_sets_held_false_expired() {
    let facts = lease_facts(&cronjob_lease(), &held_status(t(10)), Some(1), t(10));
    assert_eq!(facts.expired.len(), 1);
    assert_eq!((facts.status.state, facts.status.holders.len()), (LeaseState::Expired, 0));
    assert_eq!(facts.status.expired_at, Some(t(10)));
    let held = facts.status.conditions.iter().find(|c| c.type_ == HELD).unwrap();
    assert_eq!((held.status, held.reason.as_str()), (ConditionStatus::False, "Expired"));
}

#[test]
fn live_holder_is_untouched_and_held_true_names_it() {
    let facts = lease_facts(&cronjob_lease(), &held_status(t(10)), Some(1), t(9));
    assert!(facts.expired.is_empty());
    let held = facts.status.conditions.iter().find(|c| c.type_ == HELD).unwrap();
    assert_eq!(held.status, ConditionStatus::True);
    assert_eq!(held.message, "held by a (fencing token 1)");
    assert_eq!(held.observed_generation, Some(1));
}

#[test]
fn declared_holder_is_acquired_once_per_generation() {
    let spec = BerthLeaseSpec { holder_identity: Some("worker-east-1".into()), ttl_seconds: 30, ..cronjob_lease() };
    let first = lease_facts(&spec, &BerthLeaseStatus::default(), Some(1), t(0));
    assert!(matches!(first.declared, Some(Outcome::Granted(_))));
    assert_eq!(first.status.holders[0].identity, "worker-east-1");
    assert_eq!(first.status.holders[0].expires_at, t(30));
    assert_eq!(first.status.observed_generation, Some(1));

    // After it expired, the same generation does not acquire again.
    let later = lease_facts(&spec, &first.status, Some(1), t(31));
    assert_eq!(later.declared, None);
    assert_eq!(later.status.state, LeaseState::Expired);

    // A new generation asks again.
    let edited = lease_facts(&spec, &later.status, Some(2), t(32));
    assert!(matches!(edited.declared, Some(Outcome::Granted(ref h)) if h.fencing_token == 2));
}

#[test]
fn declared_holder_refused_still_records_the_generation() {
    let spec = BerthLeaseSpec { holder_identity: Some("b".into()), ..cronjob_lease() };
    let status = BerthLeaseStatus { observed_generation: None, ..held_status(t(100)) };
    let facts = lease_facts(&spec, &status, Some(3), t(1));
    assert!(matches!(facts.declared, Some(Outcome::NotAcquired { .. })));
    assert_eq!(facts.status.holders[0].identity, "a");
    assert_eq!(facts.status.observed_generation, Some(3));
}

#[test]
fn unchanged_lease_yields_unchanged_facts() {
    let first = lease_facts(&cronjob_lease(), &held_status(t(10)), Some(1), t(1));
    let second = lease_facts(&cronjob_lease(), &first.status, Some(1), t(2));
    assert_eq!(first.status, second.status);
}

#[test]
fn condition_transition_time_moves_only_when_the_status_changes() {
    let mut conditions = Vec::new();
    assert!(set_condition(&mut conditions, HELD, ConditionStatus::True, "Acquired", "held by a", Some(1), t(0)));
    assert!(set_condition(&mut conditions, HELD, ConditionStatus::True, "Acquired", "held by b", Some(2), t(5)));
    assert_eq!(conditions[0].last_transition_time, t(0));
    assert_eq!(conditions[0].observed_generation, Some(2));
    assert!(!set_condition(&mut conditions, HELD, ConditionStatus::True, "Acquired", "held by b", Some(2), t(6)));
    assert!(set_condition(&mut conditions, HELD, ConditionStatus::False, "Released", "released", Some(2), t(7)));
    assert_eq!(conditions[0].last_transition_time, t(7));
}

#[test]
fn grants_become_events_once_and_renewals_do_not() {
    let raw = held_status(t(10));
    let before = lease_facts(&cronjob_lease(), &raw, None, t(1)).status;
    assert_eq!(before.observed_fencing_token, Some(1));
    assert_eq!(
        change_notes(&raw, &before, &[], &[], t(1)),
        vec![Note::Acquired { holder: "a".into(), fencing_token: 1 }],
        "a grant the operator has not recorded"
    );
    let renewed = lease_facts(&cronjob_lease(), &before, None, t(5)).status;
    assert!(change_notes(&before, &renewed, &[], &[], t(5)).is_empty());
    let expiry = lease_facts(&cronjob_lease(), &before, None, t(10));
    assert_eq!(
        expiry_notes(&expiry.expired, &expiry.status, t(10)),
        vec![Note::Expired { holder: "a".into(), fencing_token: 1, expires_at: t(10), still_held: false }]
    );
    assert!(
        change_notes(&before, &expiry.status, &expiry.expired, &[], t(10)).is_empty(),
        "the operator's own expiry once"
    );
    let fresh = lease_facts(&cronjob_lease(), &BerthLeaseStatus::default(), None, t(0)).status;
    assert!(change_notes(&BerthLeaseStatus::default(), &fresh, &[], &[], t(0)).is_empty(), "never held is no event");
}

#[test]
fn a_release_or_an_expiry_written_by_the_apiserver_ends_the_hold() {
    let before = lease_facts(&cronjob_lease(), &held_status(t(10)), None, t(1)).status;
    let released = BerthLeaseStatus { state: LeaseState::Released, holders: vec![], ..before.clone() };
    let released = lease_facts(&cronjob_lease(), &released, None, t(2)).status;
    assert_eq!(change_notes(&before, &released, &[], &[], t(2)), vec![Note::Released]);
    let expired =
        BerthLeaseStatus { state: LeaseState::Expired, holders: vec![], expired_at: Some(t(10)), ..before.clone() };
    let expired = lease_facts(&cronjob_lease(), &expired, None, t(11)).status;
    let ended = change_notes(&before, &expired, &[], &[], t(11));
    assert_eq!(ended, vec![Note::ExpiredElsewhere { expired_at: Some(t(10)) }]);
    assert_eq!(ended[0].note(), "the last holder expired at 2027-01-15T08:00:10.000000000Z without renewing");
}

#[test]
fn target_ready_false_is_a_warning_once() {
    let mut after = BerthLeaseStatus::default();
    let missing = TargetOutcome::NotFound { message: "CronJob/x does not exist".into() };
    assert!(record_target(&mut after, Some(&missing), Some(1), t(0)));
    let warning = Note::target_not_ready(&missing).unwrap();
    assert_eq!(
        (warning.reason(), warning.note(), warning.is_warning()),
        ("TargetNotFound", "CronJob/x does not exist".to_owned(), true)
    );
    let mut again = after.clone();
    assert!(!record_target(&mut again, Some(&missing), Some(1), t(5)), "no change, so no second warning");
    assert_eq!(again, after);
    let applied = TargetOutcome::NoAction { applied: AppliedAction::Acquire };
    assert!(Note::target_not_ready(&applied).is_none());
}

#[test]
fn target_status_moves_only_on_a_write_or_a_new_report() {
    let applied = |written| TargetOutcome::Applied {
        kind: TargetKind::Deployment,
        name: "web".into(),
        applied: AppliedAction::Acquire,
        setting: Setting::Replicas(3),
        written,
    };
    let mut status = BerthLeaseStatus::default();
    record_target(&mut status, Some(&applied(true)), Some(1), t(0));
    let target = status.target.clone().unwrap();
    assert_eq!((target.applied, target.observed_at), (AppliedAction::Acquire, t(0)));
    assert_eq!(target.message, "Deployment/web has replicas=3 (acquireAction)");
    let ready = status.conditions.iter().find(|c| c.type_ == TARGET_READY).unwrap();
    assert_eq!((ready.status, ready.reason.as_str()), (ConditionStatus::True, "ActionApplied"));

    let before = status.clone();
    record_target(&mut status, Some(&applied(false)), Some(1), t(9));
    assert_eq!(status, before, "an unchanged target changes nothing");
    record_target(&mut status, Some(&applied(true)), Some(1), t(10));
    assert_eq!(status.target.as_ref().unwrap().observed_at, t(10), "a drift correction is recorded");

    record_target(&mut status, None, Some(2), t(11));
    assert!(status.target.is_none() && status.conditions.is_empty());
}

#[test]
fn a_released_target_is_followed_until_its_stop_is_recorded() {
    let outcome = |applied, written| TargetOutcome::Applied {
        kind: TargetKind::Deployment,
        name: "web".into(),
        applied,
        setting: Setting::Replicas(0),
        written,
    };
    let mut status = BerthLeaseStatus::default();
    record_target(&mut status, Some(&outcome(AppliedAction::Release, true)), Some(1), t(0));
    assert_eq!(
        to_follow(&status, &outcome(AppliedAction::Release, true)),
        Some((TargetKind::Deployment, "web".into()))
    );
    assert_eq!(record_stopped(&mut status, t(4)), Some(chrono::Duration::seconds(4)));
    assert_eq!(status.target.as_ref().unwrap().stopped_at, Some(t(4)));
    // Recorded: an unchanged release follows nothing more, and keeps the record.
    record_target(&mut status, Some(&outcome(AppliedAction::Release, false)), Some(1), t(9));
    assert_eq!(to_follow(&status, &outcome(AppliedAction::Release, false)), None);
    assert_eq!(status.target.as_ref().unwrap().stopped_at, Some(t(4)));
    // A release written again (drift) is followed again.
    record_target(&mut status, Some(&outcome(AppliedAction::Release, true)), Some(1), t(10));
    assert!(to_follow(&status, &outcome(AppliedAction::Release, true)).is_some());
    // A running target, or a lease that leaves its target alone, is not followed.
    record_target(&mut status, Some(&outcome(AppliedAction::Acquire, true)), Some(1), t(11));
    assert_eq!(to_follow(&status, &outcome(AppliedAction::Acquire, true)), None);
    assert_eq!(record_stopped(&mut status, t(12)), None);
    let untouched = TargetOutcome::NoAction { applied: AppliedAction::Release };
    record_target(&mut status, Some(&untouched), Some(1), t(13));
    assert_eq!(to_follow(&status, &untouched), None);
    // A release that scales down to 1 keeps a pod meant to run: nothing to follow.
    let scaled_down = TargetOutcome::Applied {
        kind: TargetKind::Deployment,
        name: "web".into(),
        applied: AppliedAction::Release,
        setting: Setting::Replicas(1),
        written: true,
    };
    record_target(&mut status, Some(&scaled_down), Some(1), t(14));
    assert_eq!(to_follow(&status, &scaled_down), None);
}

#[test]
fn the_coordination_cluster_caps_the_grace_at_what_is_left_of_the_budget() {
    let mut status = BerthLeaseStatus::default();
    let released = TargetOutcome::Applied {
        kind: TargetKind::Job,
        name: "once".into(),
        applied: AppliedAction::Release,
        setting: Setting::Suspend(true),
        written: true,
    };
    record_target(&mut status, Some(&released), Some(1), t(0));
    let budget = |stop_seconds| BerthLeaseSpec { stop_seconds, ..Default::default() };
    assert_eq!(coordination_grace(&budget(0), &status, t(1)), None, "no budget: the pods' own grace stands");
    assert_eq!(coordination_grace(&budget(10), &status, t(3)), Some(7));
    assert_eq!(coordination_grace(&budget(10), &status, t(30)), Some(0));
}

#[test]
fn requeue_wakes_just_after_the_earliest_expiry() {
    let mut status = held_status(t(10));
    status.holders.push(holder("b", 2, t(4)));
    assert_eq!(requeue_after(&status, t(1)), Duration::from_millis(3_001));
    assert_eq!(requeue_after(&status, t(5)), Duration::from_millis(1));
    assert_eq!(requeue_after(&BerthLeaseStatus::default(), t(5)), RESYNC);
    assert_eq!(requeue_after(&held_status(t(100_000)), t(0)), RESYNC);
}

#[test]
fn finalizer_table_covers_every_case() {
    use FinalizerStep::*;
    let cases = [
        ((true, true, true), Cleanup),
        ((true, false, true), Cleanup),
        ((true, true, false), Gone),
        ((false, true, false), Add),
        ((false, false, true), Remove),
        ((false, true, true), Keep),
        ((false, false, false), Keep),
    ];
    for ((deleting, guards, finalizer), step) in cases {
        assert_eq!(FinalizerStep::for_lease(deleting, guards, finalizer), step, "{deleting} {guards} {finalizer}");
    }
}

#[test]
fn only_a_target_the_operator_may_not_change_holds_a_deletion() {
    let message = || "the operator may not change CronJob/ingest".to_owned();
    assert_eq!(deletion_may_proceed(&TargetOutcome::Forbidden { message: message() }), Err(message().as_str()));
    let applied = TargetOutcome::Applied {
        kind: TargetKind::CronJob,
        name: "ingest".into(),
        applied: AppliedAction::Release,
        setting: Setting::Suspend(true),
        written: true,
    };
    for outcome in [
        applied,
        TargetOutcome::NoAction { applied: AppliedAction::Release },
        TargetOutcome::NotFound { message: message() },
        TargetOutcome::Unsupported { message: message() },
        TargetOutcome::Mismatch { message: message() },
    ] {
        assert_eq!(deletion_may_proceed(&outcome), Ok(()), "{outcome:?}");
    }
}

#[test]
fn the_coordination_cluster_judges_held_by_live_holders_whatever_the_state_says() {
    let status = BerthLeaseStatus { state: LeaseState::Released, ..held_status(t(10)) };
    assert_eq!(held_condition(&status, None, t(9)).1, "Acquired");
    assert_eq!(held_condition(&status, None, t(10)).1, "Released");
    let never = BerthLeaseStatus { state: LeaseState::Held, ..Default::default() };
    assert_eq!(held_condition(&never, None, t(0)), (ConditionStatus::False, "NotHeld", "never held".to_owned()));
}

#[test]
fn long_suspension_warns_only_past_a_hundred_missed_starts_without_deadline() {
    let every_minute = "* * * * *";
    assert!(long_suspension_warning(every_minute, None, t(0), t(100 * 60)).is_none());
    let warning = long_suspension_warning(every_minute, None, t(0), t(101 * 60)).unwrap();
    assert!(warning.contains("kubernetes#42649"), "{warning}");
    assert!(long_suspension_warning(every_minute, Some(200), t(0), t(10_000 * 60)).is_none());
    assert!(long_suspension_warning("@daily", None, t(0), t(30 * 86_400)).is_none());
    assert!(long_suspension_warning("not a schedule", None, t(0), t(1_000_000)).is_none());
}

#[test]
fn semantics_do_not_change_target_choice() {
    let spec = BerthLeaseSpec { semantics: Semantics::AtLeastOnce, ..cronjob_lease() };
    let t = spec.target.clone().unwrap();
    assert!(matches!(plan_target(&t, &spec, AppliedAction::Acquire), TargetPlan::Apply { .. }));
}

#[test]
fn each_grant_is_its_own_transition_with_its_holder_and_token() {
    let shared = BerthLeaseSpec { semantics: Semantics::AtLeastOnce, ..cronjob_lease() };
    let one = lease_facts(&shared, &held_status(t(10)), None, t(1)).status;
    // b and c join (tokens 2 and 3) between two reconciles: two Events.
    let mut more = one.clone();
    more.holders.extend([holder("b", 2, t(20)), holder("c", 3, t(20))]);
    more.fencing_token = 3;
    let more = lease_facts(&shared, &more, None, t(2)).status;
    let joined = change_notes(&one, &more, &[], &[], t(2));
    assert_eq!(
        joined,
        vec![
            Note::Acquired { holder: "b".into(), fencing_token: 2 },
            Note::Acquired { holder: "c".into(), fencing_token: 3 },
        ]
    );
    assert_eq!(joined[0].note(), "granted to b with fencing token 2");
    assert_ne!(joined[0].note(), joined[1].note(), "two grants never read the same");
    // The Held message does not decide: rewording it changes nothing.
    let mut reworded = one.clone();
    reworded.conditions.iter_mut().for_each(|c| c.message = "(fencing token 3)".into());
    assert_eq!(change_notes(&reworded, &more, &[], &[], t(2)), joined);
    // a expires, b and c stay: one Expired for a, and no Acquired again.
    let facts = lease_facts(&shared, &more, None, t(10));
    assert!(change_notes(&more, &facts.status, &facts.expired, &[], t(10)).is_empty());
    let expired = expiry_notes(&facts.expired, &facts.status, t(10));
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].reason(), "Expired");
    assert!(expired[0].note().starts_with("a (fencing token 1) expired at"), "{}", expired[0].note());
    assert!(expired[0].note().ends_with("others still hold the lease"), "{}", expired[0].note());
    // A takeover by d (token 12), and a grant (token 11) that expired before
    // the operator saw it: both are grants it has not recorded.
    let mut twelve = held_status(t(50));
    twelve.holders[0] = holder("d", 12, t(50));
    twelve.fencing_token = 12;
    let facts = lease_facts(&shared, &twelve, None, t(11));
    let unseen = [holder("e", 11, t(5))];
    assert_eq!(
        change_notes(&one, &facts.status, &unseen, &[], t(11)),
        vec![
            Note::Acquired { holder: "e".into(), fencing_token: 11 },
            Note::Acquired { holder: "d".into(), fencing_token: 12 },
        ]
    );
}

#[test]
fn a_grant_seen_only_on_the_watch_gets_its_own_event() {
    let spec = cronjob_lease();
    let one = lease_facts(&spec, &held_status(t(10)), None, t(1)).status;
    // a released; b was granted token 2 and released; c holds token 3. The
    // reconcile sees only c, the watch showed b (and c) too.
    let mut three = held_status(t(50));
    three.holders[0] = holder("c", 3, t(50));
    three.fencing_token = 3;
    let facts = lease_facts(&spec, &three, None, t(5));
    let watched = [holder("b", 2, t(30)), holder("c", 3, t(50))];
    assert_eq!(
        change_notes(&one, &facts.status, &facts.expired, &watched, t(5)),
        vec![
            Note::Acquired { holder: "b".into(), fencing_token: 2 },
            Note::Acquired { holder: "c".into(), fencing_token: 3 },
        ]
    );
    // Recorded once: the next reconcile names neither again.
    assert!(change_notes(&facts.status, &facts.status, &[], &watched, t(6)).is_empty());
}

#[test]
fn target_writes_name_the_tenure_they_follow() {
    let resumed = |token| Note::TargetWritten {
        target: "CronJob/ingest".into(),
        applied: AppliedAction::Acquire,
        setting: Setting::Suspend(false),
        fencing_token: token,
    };
    assert_eq!(resumed(1).reason(), "TargetResumed");
    assert_eq!(resumed(1).note(), "CronJob/ingest: suspend=false (acquireAction for fencing token 1)");
    assert_ne!(resumed(1).note(), resumed(2).note(), "a resume for another grant is another fact");
    let suspended = Note::TargetWritten {
        target: "CronJob/ingest".into(),
        applied: AppliedAction::Release,
        setting: Setting::Suspend(true),
        fencing_token: 2,
    };
    assert_eq!(suspended.note(), "CronJob/ingest: suspend=true (releaseAction after fencing token 2)");
}

#[test]
fn target_goes_first_unless_the_operators_own_write_grants() {
    let spec = cronjob_lease();
    // Expiry: release the target, then one write with the expired status.
    let expired = lease_facts(&spec, &held_status(t(10)), Some(1), t(10));
    assert_eq!(write_order(&held_status(t(10)), &expired.status, t(10)), WriteOrder::TargetFirst);
    // A grant made elsewhere (already stored): resume, then one write.
    let granted = lease_facts(&spec, &held_status(t(10)), Some(1), t(5));
    assert_eq!(write_order(&held_status(t(10)), &granted.status, t(5)), WriteOrder::TargetFirst);
    // Nothing held before or after.
    let idle = lease_facts(&spec, &BerthLeaseStatus::default(), Some(1), t(0));
    assert_eq!(write_order(&BerthLeaseStatus::default(), &idle.status, t(0)), WriteOrder::TargetFirst);
    // The declared holder's grant is the operator's own: it is stored before acquireAction runs.
    let declared = BerthLeaseSpec { holder_identity: Some("worker-east-1".into()), ttl_seconds: 30, ..spec };
    let first = lease_facts(&declared, &BerthLeaseStatus::default(), Some(1), t(0));
    assert_eq!(write_order(&BerthLeaseStatus::default(), &first.status, t(0)), WriteOrder::GrantFirst);
    // ...also when it takes over from a holder that just expired.
    let takeover = lease_facts(&declared, &held_status(t(10)), Some(2), t(10));
    assert_eq!(takeover.expired.len(), 1);
    assert_eq!(write_order(&held_status(t(10)), &takeover.status, t(10)), WriteOrder::GrantFirst);
}

#[test]
fn expired_status_and_target_status_merge_into_one_status() {
    // What the controller writes for an expiry with a target: the rule
    // changes and the target's record in one status, with the transition
    // Events of both.
    let spec = cronjob_lease();
    let before = {
        let mut s = held_status(t(10));
        let live = lease_facts(&spec, &s, Some(1), t(1)).status;
        s.conditions = live.conditions;
        s.observed_fencing_token = live.observed_fencing_token;
        let applied = TargetOutcome::Applied {
            kind: TargetKind::CronJob,
            name: "ingest".into(),
            applied: AppliedAction::Acquire,
            setting: Setting::Suspend(false),
            written: true,
        };
        record_target(&mut s, Some(&applied), Some(1), t(1));
        s
    };
    let facts = lease_facts(&spec, &before, Some(1), t(10));
    let mut next = facts.status.clone();
    let released = TargetOutcome::Applied {
        kind: TargetKind::CronJob,
        name: "ingest".into(),
        applied: AppliedAction::Release,
        setting: Setting::Suspend(true),
        written: true,
    };
    record_target(&mut next, Some(&released), Some(1), t(10));
    assert_eq!(next.state, LeaseState::Expired);
    assert_eq!(next.target.as_ref().map(|t| (t.applied, t.observed_at)), Some((AppliedAction::Release, t(10))));
    let ready = next.conditions.iter().find(|c| c.type_ == TARGET_READY).unwrap();
    assert_eq!(ready.message, "CronJob/ingest has suspend=true (releaseAction)");
    assert_eq!(ready.last_transition_time, t(1), "TargetReady stayed True");
    let held = next.conditions.iter().find(|c| c.type_ == HELD).unwrap();
    assert_eq!((held.status, held.last_transition_time), (ConditionStatus::False, t(10)));
    let mut events = expiry_notes(&facts.expired, &next, t(10));
    events.extend(change_notes(&before, &next, &facts.expired, &[], t(10)));
    let reasons: Vec<&str> = events.iter().map(Note::reason).collect();
    assert_eq!(reasons, ["Expired"]);
}
