//! Member mode's pure decisions (docs/design.md, "Several clusters"), beside
//! the controller's: the local status of a claim, what the keeper's news
//! means, the Events of a change of member state, and the gate's timing. The
//! state machine is [`crate::member::state`]; [`crate::member::claim`]
//! carries all of this out.

use std::time::Duration;

use berth_api::crd::{AppliedAction, ConditionStatus, Holder};
use berth_api::{BerthLeaseSpec, BerthLeaseStatus, LeaseState};
use berth_client::{Grant, KeeperState, Loss};
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::member::state::{Decision, Knowledge, runs};

use super::{Facts, HELD, Note, TARGET_DEADLINE, TargetOutcome, held_condition, record_target, set_condition};

/// The condition that says whether the Berth apiserver answers.
pub const COORDINATION_REACHABLE: &str = "CoordinationReachable";

/// At most one RenewFailed Event per lease in this period.
pub const RENEW_FAILED_EVERY: Duration = Duration::from_secs(60);
/// Drift of the target is corrected at least this often.
pub const RESYNC: Duration = Duration::from_secs(60);
/// How often the pods of a fenced target are looked at while they stop.
pub const STOPPING_LOOK: Duration = Duration::from_millis(250);
/// How soon a target step that did not settle is tried again.
pub const UNSETTLED_LOOK: Duration = Duration::from_millis(200);

/// The global lease as this cluster last saw it: its holders and its token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirror {
    pub holders: Vec<Holder>,
    pub fencing_token: Option<i32>,
    pub transitions: Option<i64>,
}

/// What the member driver knows of its claim besides the stored status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim<'a> {
    pub cluster_id: &'a str,
    pub state: LeaseState,
    pub mirror: &'a Mirror,
    /// `None` when the last call answered; else why it did not.
    pub unreachable: Option<&'a str>,
    pub generation: Option<i64>,
}

/// The TTL and the heartbeat the keeper will use for `spec`. The heartbeat is
/// also the grace of `unknown`: the time a first answer may take.
pub fn timing(spec: &BerthLeaseSpec) -> (Duration, Duration) {
    let ttl = Duration::from_secs(spec.ttl_seconds.max(1).unsigned_abs().into());
    let heartbeat = Duration::from_secs(spec.heartbeat_interval_seconds.max(1).unsigned_abs().into());
    // The default margin is below every whole-second TTL, so this holds; the
    // keeper's own check refuses the acquire otherwise.
    let heartbeat = berth_client::Schedule::new(ttl, berth_client::default_margin(ttl), heartbeat)
        .map(|schedule| schedule.heartbeat)
        .unwrap_or(heartbeat);
    (ttl, heartbeat)
}

/// `spec.stopSeconds` as a duration.
pub fn stop_budget(spec: &BerthLeaseSpec) -> Duration {
    Duration::from_secs(spec.stop_seconds.max(0).unsigned_abs().into())
}

/// The mirror of this cluster's own fresh grant, seen at `now`.
pub fn granted_mirror(grant: &Grant, now: DateTime<Utc>) -> Mirror {
    let ours = Holder {
        identity: grant.holder.clone(),
        fencing_token: grant.fencing_token,
        acquired_at: grant.acquired_at.unwrap_or(now),
        renewed_at: now,
        expires_at: grant.expires_at.unwrap_or(now),
    };
    Mirror { holders: vec![ours], fencing_token: Some(grant.fencing_token), transitions: None }
}

/// What a keeper state teaches: the knowledge, and why the Berth apiserver
/// did not answer (only when the keeper gave up for want of an answer).
/// `None` once the keeper released the lease: the tenure is over.
pub fn learn(state: &KeeperState) -> Option<(Knowledge, Option<String>)> {
    let learned = match state {
        KeeperState::Held { fencing_token, deadline, at_risk } => {
            (Knowledge::Granted { fencing_token: *fencing_token, deadline: *deadline, at_risk: *at_risk }, None)
        }
        KeeperState::Lost(Loss::Refused { holder }) => (Knowledge::Refused { holder: holder.clone() }, None),
        // The keeper gives up at the deadline only when no renew was answered.
        KeeperState::Lost(loss @ Loss::DeadlinePassed) => (
            Knowledge::Lost { reason: loss.to_string() },
            Some("no renew was answered before the safe deadline".to_owned()),
        ),
        KeeperState::Lost(loss @ (Loss::Rejected(_) | Loss::TokenChanged { .. })) => {
            (Knowledge::Lost { reason: loss.to_string() }, None)
        }
        KeeperState::Released => return None,
    };
    Some(learned)
}

/// The member facts: the status to hold from `previous` (whose `target`,
/// `TargetReady` and token are kept unless the facts say otherwise), with the
/// target step's `outcome` recorded. With no outcome, `status.target` stays
/// as it is while the lease has a target, and goes when it has none.
///
/// # Guarantees
/// - `fencingToken` never decreases.
/// - `holders` is the global holders as last seen, except in `unknown` and
///   `fenced`, where this cluster cannot vouch for anything and shows none.
/// - Only changes of state move `lastTransitionTime`; conditions move theirs
///   only when their status changes.
pub fn member_facts(
    previous: &BerthLeaseStatus,
    claim: &Claim,
    outcome: Option<&TargetOutcome>,
    has_target: bool,
    now: DateTime<Utc>,
) -> Facts {
    let mut status = previous.clone();
    if status.state != claim.state {
        status.state = claim.state;
        status.last_transition_time = Some(now);
    }
    status.holders = match claim.state {
        LeaseState::Unknown | LeaseState::Fenced => Vec::new(),
        _ => claim.mirror.holders.clone(),
    };
    if let Some(token) = claim.mirror.fencing_token {
        status.fencing_token = status.fencing_token.max(token);
    }
    if let Some(transitions) = claim.mirror.transitions {
        status.transitions = transitions;
    }
    status.observed_generation = claim.generation;
    let (held, reason, message) = held_condition(&status, Some(claim.cluster_id), now);
    set_condition(&mut status.conditions, HELD, held, reason, &message, claim.generation, now);
    let (reachable, reason, message) = match claim.unreachable {
        None => (ConditionStatus::True, "Answered", "the Berth apiserver answered the last call".to_owned()),
        Some(error) => (ConditionStatus::False, "Unreachable", error.to_owned()),
    };
    set_condition(&mut status.conditions, COORDINATION_REACHABLE, reachable, reason, &message, claim.generation, now);
    if outcome.is_some() || !has_target {
        record_target(&mut status, outcome, claim.generation, now);
    }
    Facts { status, expired: Vec::new(), declared: None }
}

/// Whether `state` is one of member mode's. Exhaustive, so that a new state
/// must be placed on one side.
pub fn is_member_state(state: LeaseState) -> bool {
    match state {
        LeaseState::Unknown | LeaseState::Standby | LeaseState::Held | LeaseState::AtRisk | LeaseState::Fenced => true,
        LeaseState::Available | LeaseState::Released | LeaseState::Expired => false,
    }
}

/// The last state other than `unknown` a claim was in, from its stored state:
/// the `previous` of the first [`transition_notes`].
pub fn settled_state(stored: LeaseState) -> Option<LeaseState> {
    (is_member_state(stored) && stored != LeaseState::Unknown).then_some(stored)
}

/// The Events of a change from `previous` to `decision.state`, for cluster
/// `cluster_id` that knows `knowledge` and stops its workload within `stop`.
/// `renew_failed_at` is when the last RenewFailed Event went out; it is moved
/// when this one goes out.
pub fn transition_notes(
    cluster_id: &str,
    previous: Option<LeaseState>,
    decision: &Decision,
    knowledge: &Knowledge,
    stop: Duration,
    renew_failed_at: &mut Option<Instant>,
    now: Instant,
) -> Vec<Note> {
    let was_running = previous.is_some_and(runs);
    let mut notes = Vec::new();
    if previous == Some(decision.state) {
        return notes;
    }
    match (knowledge, decision.state) {
        (Knowledge::Granted { fencing_token, .. }, LeaseState::Held | LeaseState::AtRisk) if !was_running => {
            notes.push(Note::ClusterHolds { cluster: cluster_id.to_owned(), fencing_token: *fencing_token });
        }
        _ => {}
    }
    match decision.state {
        LeaseState::AtRisk if renew_failed_at.is_none_or(|at| now >= at + RENEW_FAILED_EVERY) => {
            *renew_failed_at = Some(now);
            notes.push(Note::RenewFailed);
        }
        LeaseState::Standby if was_running => {
            let holder = match knowledge {
                Knowledge::Refused { holder } if !holder.is_empty() => holder.clone(),
                _ => "another holder".to_owned(),
            };
            notes.push(Note::Lost { holder });
        }
        LeaseState::Fenced => {
            let why = match knowledge {
                Knowledge::Lost { reason } => reason.clone(),
                Knowledge::Nothing { .. } => "no answer from the Berth apiserver since the operator started".to_owned(),
                _ if stop.is_zero() => "the safe deadline passed without a confirmed renew".to_owned(),
                _ => format!(
                    "no renew was confirmed by {} s before the safe deadline (the lease's stopSeconds), \
                     so that the workload stops before the deadline",
                    stop.as_secs()
                ),
            };
            notes.push(Note::Fenced { why });
        }
        _ => {}
    }
    notes
}

/// How long the target step for `decision` may take: never past the fence
/// instant for `acquireAction`, so that it cannot land after the safe
/// deadline is known to have passed; else the controller's bound.
pub fn target_bound(decision: &Decision, now: Instant) -> Duration {
    match (decision.action, decision.wake_at) {
        (Some(AppliedAction::Acquire), Some(fence_at)) => fence_at.saturating_duration_since(now).min(TARGET_DEADLINE),
        _ => TARGET_DEADLINE,
    }
}

/// When the gate decides again, if nothing is learned first: soon after a
/// target step that did not settle or while pods stop; else at the
/// decision's own instant, and at least every [`RESYNC`] for drift.
pub fn next_wake(decision: &Decision, settled: bool, pods_stopping: bool, now: Instant) -> Instant {
    match (settled, decision.wake_at) {
        (false, _) => now + UNSETTLED_LOOK,
        (true, _) if pods_stopping => now + STOPPING_LOOK,
        (true, Some(at)) => at.min(now + RESYNC),
        (true, None) => now + RESYNC,
    }
}

/// The safe deadline the metrics show: only while the claim runs its workload.
pub fn shown_deadline(knowledge: &Knowledge, state: LeaseState) -> Option<Instant> {
    match knowledge {
        Knowledge::Granted { deadline, .. } if runs(state) => Some(*deadline),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
