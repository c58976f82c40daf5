use berth_api::crd::Condition;
use chrono::TimeZone;

use super::*;
use crate::member::state::decide;

const S: fn(u64) -> Duration = Duration::from_secs;
const GRACE: Duration = Duration::from_secs(3);

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, second).unwrap()
}

fn holder(identity: &str, token: i32) -> Holder {
    Holder {
        identity: identity.into(),
        fencing_token: token,
        acquired_at: at(0),
        renewed_at: at(0),
        expires_at: at(30),
    }
}

fn claim<'a>(state: LeaseState, mirror: &'a Mirror, unreachable: Option<&'a str>) -> Claim<'a> {
    Claim { cluster_id: "east", state, mirror, unreachable, generation: Some(2) }
}

/// The status a claim holds with no target, from `previous`.
fn status(previous: &BerthLeaseStatus, claim: &Claim, now: DateTime<Utc>) -> BerthLeaseStatus {
    member_facts(previous, claim, None, false, now).status
}

fn condition<'a>(status: &'a BerthLeaseStatus, type_: &str) -> &'a Condition {
    status.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

fn granted(deadline: Instant, at_risk: bool) -> Knowledge {
    Knowledge::Granted { fencing_token: 4, deadline, at_risk }
}

#[test]
fn held_shows_this_cluster_and_the_global_token() {
    let mirror = Mirror { holders: vec![holder("east", 7)], fencing_token: Some(7), transitions: Some(3) };
    let status = status(&BerthLeaseStatus::default(), &claim(LeaseState::Held, &mirror, None), at(1));
    assert_eq!(status.state, LeaseState::Held);
    assert_eq!((status.holders[0].identity.as_str(), status.fencing_token), ("east", 7));
    assert_eq!(status.last_transition_time, Some(at(1)));
    let held = condition(&status, HELD);
    assert_eq!((held.status, held.message.as_str()), (ConditionStatus::True, "cluster east holds the global lease"));
    assert_eq!(condition(&status, COORDINATION_REACHABLE).status, ConditionStatus::True);
}

#[test]
fn a_member_holds_by_its_state_even_when_its_mirror_has_expired() {
    let mirror = Mirror { holders: vec![holder("east", 7)], fencing_token: Some(7), transitions: None };
    // Long after the mirrored expiresAt (30 s): the keeper renews, the mirror does not move.
    let later = Utc.with_ymd_and_hms(2026, 11, 30, 13, 0, 0).unwrap();
    let status = status(&BerthLeaseStatus::default(), &claim(LeaseState::AtRisk, &mirror, None), later);
    assert_eq!(
        (condition(&status, HELD).status, condition(&status, HELD).reason.as_str()),
        (ConditionStatus::True, "AtRisk")
    );
}

#[test]
fn standby_names_the_other_holder_and_its_token() {
    let mirror = Mirror { holders: vec![holder("west", 9)], fencing_token: Some(9), transitions: None };
    let status = status(&BerthLeaseStatus::default(), &claim(LeaseState::Standby, &mirror, None), at(1));
    assert_eq!(status.holders[0].identity, "west");
    assert_eq!(condition(&status, HELD).message, "the global lease is held by west (fencing token 9)");
}

#[test]
fn fenced_shows_no_holder_keeps_the_token_and_reports_unreachable() {
    let mirror = Mirror { holders: vec![holder("east", 7)], fencing_token: Some(7), transitions: None };
    let held = status(&BerthLeaseStatus::default(), &claim(LeaseState::Held, &mirror, None), at(1));
    let stale = Mirror { holders: vec![], fencing_token: Some(3), transitions: None };
    let fenced = status(&held, &claim(LeaseState::Fenced, &stale, Some("connection refused")), at(9));
    assert!(fenced.holders.is_empty());
    assert_eq!(fenced.fencing_token, 7, "the token never goes down");
    assert_eq!(fenced.last_transition_time, Some(at(9)));
    assert_eq!(condition(&fenced, HELD).reason, "Fenced");
    let reachable = condition(&fenced, COORDINATION_REACHABLE);
    assert_eq!((reachable.status, reachable.message.as_str()), (ConditionStatus::False, "connection refused"));
}

#[test]
fn an_unchanged_state_writes_the_same_status() {
    let mirror = Mirror { holders: vec![holder("east", 7)], fencing_token: Some(7), transitions: None };
    let first = status(&BerthLeaseStatus::default(), &claim(LeaseState::Held, &mirror, None), at(1));
    let again = status(&first, &claim(LeaseState::Held, &mirror, None), at(5));
    assert_eq!(first, again);
}

#[test]
fn a_target_step_without_an_outcome_keeps_the_recorded_target_while_there_is_one() {
    let mirror = Mirror::default();
    let outcome = TargetOutcome::NotFound { message: "cronjob/ingest does not exist".into() };
    let unknown = claim(LeaseState::Unknown, &mirror, None);
    let recorded = member_facts(&BerthLeaseStatus::default(), &unknown, Some(&outcome), true, at(1)).status;
    assert!(recorded.conditions.iter().any(|c| c.type_ == crate::plan::TARGET_READY));
    let kept = member_facts(&recorded, &unknown, None, true, at(2)).status;
    assert_eq!(kept, recorded, "a step that did not settle changes nothing");
    let gone = member_facts(&recorded, &unknown, None, false, at(3)).status;
    assert!(gone.target.is_none() && gone.conditions.iter().all(|c| c.type_ != crate::plan::TARGET_READY));
}

#[test]
fn a_member_reports_no_expiry_and_no_declared_holder() {
    let mirror = Mirror::default();
    let facts =
        member_facts(&BerthLeaseStatus::default(), &claim(LeaseState::Standby, &mirror, None), None, false, at(1));
    assert!(facts.expired.is_empty());
    assert_eq!(facts.declared, None);
}

#[test]
fn keeper_news_becomes_knowledge_and_only_a_missed_deadline_is_unreachable() {
    let deadline = Instant::now();
    let held = learn(&KeeperState::Held { fencing_token: 5, deadline, at_risk: true });
    assert_eq!(held, Some((Knowledge::Granted { fencing_token: 5, deadline, at_risk: true }, None)));
    let refused = learn(&KeeperState::Lost(Loss::Refused { holder: "west".into() }));
    assert_eq!(refused, Some((Knowledge::Refused { holder: "west".into() }, None)));
    let (missed, unreachable) = learn(&KeeperState::Lost(Loss::DeadlinePassed)).unwrap();
    assert!(matches!(missed, Knowledge::Lost { .. }));
    assert!(unreachable.is_some());
    let (rejected, unreachable) = learn(&KeeperState::Lost(Loss::Rejected("revoked".into()))).unwrap();
    assert!(matches!(rejected, Knowledge::Lost { reason } if reason.contains("revoked")));
    assert_eq!(unreachable, None, "a rejection is an answer");
    assert_eq!(learn(&KeeperState::Released), None);
}

#[test]
fn a_fresh_grant_mirrors_this_cluster_alone() {
    let grant = Grant { holder: "east".into(), fencing_token: 8, expires_at: Some(at(20)), acquired_at: None };
    let mirror = granted_mirror(&grant, at(4));
    assert_eq!(mirror.fencing_token, Some(8));
    assert_eq!(
        mirror.holders,
        vec![Holder { acquired_at: at(4), renewed_at: at(4), expires_at: at(20), ..holder("east", 8) }]
    );
}

/// The Events of deciding on `knowledge` at `now`, coming from `previous`,
/// with no stop budget.
fn notes_on(
    previous: Option<LeaseState>,
    knowledge: &Knowledge,
    renew_failed_at: &mut Option<Instant>,
    now: Instant,
) -> Vec<Note> {
    let decision = decide(knowledge, GRACE, Duration::ZERO, now);
    transition_notes("east", previous, &decision, knowledge, Duration::ZERO, renew_failed_at, now)
}

#[test]
fn first_hold_and_fence_are_recorded_once() {
    let now = Instant::now();
    let knowledge = granted(now + S(27), false);
    let held = Some(LeaseState::Held);
    assert_eq!(
        notes_on(None, &knowledge, &mut None, now),
        vec![Note::ClusterHolds { cluster: "east".into(), fencing_token: 4 }]
    );
    assert!(notes_on(held, &knowledge, &mut None, now).is_empty(), "no change, no Event");
    let lost = Knowledge::Lost { reason: "a renew was rejected: revoked".into() };
    assert_eq!(
        notes_on(held, &lost, &mut None, now),
        vec![Note::Fenced { why: "a renew was rejected: revoked".into() }]
    );
}

#[test]
fn a_fence_by_the_stop_budget_names_the_budget() {
    let now = Instant::now();
    let knowledge = granted(now + S(5), false);
    let fenced = decide(&knowledge, GRACE, S(10), now);
    let notes = transition_notes("east", Some(LeaseState::Held), &fenced, &knowledge, S(10), &mut None, now);
    assert!(matches!(&notes[..], [Note::Fenced { why }] if why.contains("10 s before the safe deadline")), "{notes:?}");
}

#[test]
fn renew_failed_is_recorded_at_most_once_a_minute() {
    let now = Instant::now();
    let knowledge = granted(now + S(600), true);
    let (held, mut renew_failed_at) = (Some(LeaseState::Held), None);
    assert_eq!(notes_on(held, &knowledge, &mut renew_failed_at, now), vec![Note::RenewFailed]);
    assert!(notes_on(held, &knowledge, &mut renew_failed_at, now + S(30)).is_empty());
    let later = now + RENEW_FAILED_EVERY;
    assert_eq!(notes_on(held, &knowledge, &mut renew_failed_at, later), vec![Note::RenewFailed]);
}

#[test]
fn losing_to_another_holder_names_it() {
    let now = Instant::now();
    let knowledge = Knowledge::Refused { holder: "west".into() };
    let lost = notes_on(Some(LeaseState::Held), &knowledge, &mut None, now);
    assert_eq!(lost, vec![Note::Lost { holder: "west".into() }]);
    assert!(notes_on(None, &knowledge, &mut None, now).is_empty(), "a standby that never ran lost nothing");
}

#[test]
fn only_a_stored_member_state_other_than_unknown_is_the_previous_one() {
    assert_eq!(settled_state(LeaseState::Held), Some(LeaseState::Held));
    assert_eq!(settled_state(LeaseState::Unknown), None);
    assert_eq!(settled_state(LeaseState::Expired), None, "a coordination state is not a claim's");
}

#[test]
fn an_acquire_action_never_outlasts_the_fence_instant() {
    let now = Instant::now();
    let held = decide(&granted(now + S(1), false), GRACE, Duration::ZERO, now);
    assert_eq!(target_bound(&held, now), S(1));
    let far = decide(&granted(now + S(27), false), GRACE, Duration::ZERO, now);
    assert_eq!(target_bound(&far, now), TARGET_DEADLINE);
    let standby = decide(&Knowledge::Refused { holder: "west".into() }, GRACE, Duration::ZERO, now);
    assert_eq!(target_bound(&standby, now), TARGET_DEADLINE);
}

#[test]
fn the_gate_wakes_at_the_fence_soon_when_unsettled_and_at_least_every_resync() {
    let now = Instant::now();
    let held = decide(&granted(now + S(27), false), GRACE, Duration::ZERO, now);
    assert_eq!(next_wake(&held, true, false, now), now + S(27));
    assert_eq!(next_wake(&held, false, false, now), now + UNSETTLED_LOOK);
    assert_eq!(next_wake(&held, true, true, now), now + STOPPING_LOOK);
    let long = decide(&granted(now + S(600), false), GRACE, Duration::ZERO, now);
    assert_eq!(next_wake(&long, true, false, now), now + RESYNC);
    let standby = decide(&Knowledge::Refused { holder: "west".into() }, GRACE, Duration::ZERO, now);
    assert_eq!(next_wake(&standby, true, false, now), now + RESYNC);
}

#[test]
fn the_deadline_is_shown_only_while_the_workload_runs() {
    let now = Instant::now();
    let knowledge = granted(now + S(27), false);
    assert_eq!(shown_deadline(&knowledge, LeaseState::Held), Some(now + S(27)));
    assert_eq!(shown_deadline(&knowledge, LeaseState::Fenced), None);
}

#[test]
fn the_heartbeat_fits_the_ttl_and_the_budget_is_never_negative() {
    let spec = BerthLeaseSpec { ttl_seconds: 4, heartbeat_interval_seconds: 1, stop_seconds: -3, ..Default::default() };
    assert_eq!(timing(&spec), (S(4), S(1)));
    assert_eq!(stop_budget(&spec), Duration::ZERO);
}
