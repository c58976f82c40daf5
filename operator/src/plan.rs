//! The operator's pure decisions: no I/O, and time is always an argument.
//!
//! The lease rules themselves live in [`berth_api::rules`]; this module only
//! composes them (expiry, then the declared holder) and decides what the
//! operator does around them: which setting the target gets, which
//! conditions and Events follow, and when to wake next.

use std::time::Duration;

use berth_api::crd::{AppliedAction, Condition, ConditionStatus, TargetAction, TargetRef, TargetStatus};
use berth_api::rules::{Outcome, Request, decide, is_held, next_expiry};
use berth_api::{BerthLeaseSpec, BerthLeaseStatus, Holder, LeaseState};
use chrono::{DateTime, Utc};

/// The finalizer that makes deleting a lease apply `releaseAction` first.
pub const FINALIZER: &str = "berth.skaphos.io/release-target";
/// Condition type: whether the lease has a live holder.
pub const HELD: &str = "Held";
/// Condition type: whether the target reflects the action that applies now.
pub const TARGET_READY: &str = "TargetReady";
/// The longest the operator sleeps on a lease: a safety net, not a poll.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Kubernetes' CronJob controller gives up counting missed start times past this.
pub const MAX_MISSED_SCHEDULES: usize = 100;

/// The workload kinds the operator can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    CronJob,
    Job,
    Deployment,
    StatefulSet,
    ReplicaSet,
}

impl TargetKind {
    pub const ALL: [TargetKind; 5] =
        [TargetKind::CronJob, TargetKind::Job, TargetKind::Deployment, TargetKind::StatefulSet, TargetKind::ReplicaSet];

    /// The supported kind that `target` names, if any.
    pub fn of(target: &TargetRef) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.api_version() == target.api_version && k.as_str() == target.kind)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::CronJob => "CronJob",
            TargetKind::Job => "Job",
            TargetKind::Deployment => "Deployment",
            TargetKind::StatefulSet => "StatefulSet",
            TargetKind::ReplicaSet => "ReplicaSet",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            TargetKind::CronJob | TargetKind::Job => "batch/v1",
            TargetKind::Deployment | TargetKind::StatefulSet | TargetKind::ReplicaSet => "apps/v1",
        }
    }

    /// The API group (for RBAC questions).
    pub fn group(self) -> &'static str {
        self.api_version().split_once('/').map_or("", |(group, _)| group)
    }

    /// The resource name (for RBAC questions).
    pub fn plural(self) -> &'static str {
        match self {
            TargetKind::CronJob => "cronjobs",
            TargetKind::Job => "jobs",
            TargetKind::Deployment => "deployments",
            TargetKind::StatefulSet => "statefulsets",
            TargetKind::ReplicaSet => "replicasets",
        }
    }

    /// Whether the kind is driven by `spec.suspend` (else by `/scale`).
    pub fn suspends(self) -> bool {
        matches!(self, TargetKind::CronJob | TargetKind::Job)
    }
}

/// What the operator sets on a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    Suspend(bool),
    Replicas(i32),
}

impl Setting {
    /// The setting an action names; `None` when it names neither (the CRD forbids that).
    pub fn of(action: &TargetAction) -> Option<Self> {
        match (action.suspend, action.replicas) {
            (Some(suspend), None) => Some(Setting::Suspend(suspend)),
            (None, Some(replicas)) => Some(Setting::Replicas(replicas)),
            _ => None,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Setting::Suspend(s) => format!("suspend={s}"),
            Setting::Replicas(n) => format!("replicas={n}"),
        }
    }

    /// The Event reason for writing this setting.
    pub fn event_reason(self) -> &'static str {
        match self {
            Setting::Suspend(true) => "TargetSuspended",
            Setting::Suspend(false) => "TargetResumed",
            Setting::Replicas(_) => "TargetScaled",
        }
    }
}

/// Which of the lease's two actions applies.
pub fn phase(held: bool) -> AppliedAction {
    if held { AppliedAction::Acquire } else { AppliedAction::Release }
}

pub fn action_field(applied: AppliedAction) -> &'static str {
    match applied {
        AppliedAction::Acquire => "acquireAction",
        AppliedAction::Release => "releaseAction",
    }
}

/// What to do to the target in one phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPlan {
    /// Make the target carry `setting`.
    Apply { kind: TargetKind, applied: AppliedAction, setting: Setting },
    /// The lease names no action for this phase: leave the target alone.
    NoAction { applied: AppliedAction },
    /// The operator cannot act on this apiVersion and kind.
    Unsupported { message: String },
    /// The action does not fit the kind (replicas on a CronJob, suspend on a Deployment).
    Mismatch { message: String },
}

/// Decides what the target gets in `applied`'s phase.
pub fn plan_target(target: &TargetRef, spec: &BerthLeaseSpec, applied: AppliedAction) -> TargetPlan {
    let Some(kind) = TargetKind::of(target) else {
        return TargetPlan::Unsupported {
            message: format!(
                "{} {} is not a supported target: use batch/v1 CronJob or Job, or apps/v1 Deployment, StatefulSet or ReplicaSet",
                target.api_version, target.kind
            ),
        };
    };
    let action = match applied {
        AppliedAction::Acquire => spec.acquire_action.as_ref(),
        AppliedAction::Release => spec.release_action.as_ref(),
    };
    let Some(setting) = action.and_then(Setting::of) else {
        return TargetPlan::NoAction { applied };
    };
    match (kind.suspends(), setting) {
        (true, Setting::Suspend(_)) | (false, Setting::Replicas(_)) => TargetPlan::Apply { kind, applied, setting },
        (true, Setting::Replicas(_)) => TargetPlan::Mismatch {
            message: format!("{}: a {} is suspended, not scaled: use suspend", action_field(applied), kind.as_str()),
        },
        (false, Setting::Suspend(_)) => TargetPlan::Mismatch {
            message: format!("{}: a {} is scaled, not suspended: use replicas", action_field(applied), kind.as_str()),
        },
    }
}

/// The lease after the operator's own rule steps: expiry, then the declared holder.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// The status to hold: rule results, `observedGeneration` and the `Held` condition.
    pub status: BerthLeaseStatus,
    /// Holders dropped by expiry in this step.
    pub expired: Vec<Holder>,
    /// The outcome of acquiring for `spec.holderIdentity`, when this generation asked for it.
    pub declared: Option<Outcome>,
}

/// Applies DESIGN.md §5 steps 2 and 3 with the shared rules, and records the
/// generation acted on.
///
/// # Guarantees
/// - Uses only [`decide`]: expiry is `Request::Expire`, the declared holder is
///   `Request::Acquire` with `spec.ttlSeconds`.
/// - The declared holder is acquired at most once per generation: once
///   `observedGeneration` records it, a later call does not ask again.
pub fn lease_facts(
    spec: &BerthLeaseSpec,
    status: &BerthLeaseStatus,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Facts {
    let expiry = decide(spec, status, &Request::Expire, now);
    let mut next = expiry.status.unwrap_or_else(|| status.clone());
    let expired = match expiry.outcome {
        Outcome::Expired(dropped) => dropped,
        _ => Vec::new(),
    };
    let mut declared = None;
    if let (Some(holder), Some(generation)) = (spec.holder_identity.as_deref(), generation)
        && generation > status.observed_generation.unwrap_or(0)
    {
        let decision = decide(spec, &next, &Request::Acquire { holder, ttl_seconds: spec.ttl_seconds }, now);
        if let Some(granted) = decision.status {
            next = granted;
        }
        declared = Some(decision.outcome);
    }
    if generation.is_some() {
        next.observed_generation = generation;
    }
    let (held, reason, message) = held_condition(&next, now);
    set_condition(&mut next.conditions, HELD, held, reason, &message, generation, now);
    Facts { status: next, expired, declared }
}

/// Where the target write goes relative to the status write of one reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOrder {
    /// Target first, then one status write that carries both the rule changes
    /// (expired holders, `Held`) and `status.target` with `TargetReady`. Safe
    /// whenever the hold the target follows is already on the server, or the
    /// target is being released: a failed status write then leaves the target
    /// released early, never running without a holder.
    TargetFirst,
    /// The operator's own write creates the hold (a declared holder's grant):
    /// that write goes first, so that `acquireAction` never runs on a grant that
    /// was not stored; the target and `status.target` follow.
    GrantFirst,
}

/// Decides [`WriteOrder`] from the status as read (`before`) and as the rule
/// steps left it (`after`, from [`lease_facts`]).
pub fn write_order(before: &BerthLeaseStatus, after: &BerthLeaseStatus, now: DateTime<Utc>) -> WriteOrder {
    match (is_held(before, now), is_held(after, now)) {
        (false, true) => WriteOrder::GrantFirst,
        (true, _) | (false, false) => WriteOrder::TargetFirst,
    }
}

/// The `Held` condition for `status` at `now`: (status, reason, message).
pub fn held_condition(status: &BerthLeaseStatus, now: DateTime<Utc>) -> (ConditionStatus, &'static str, String) {
    let live: Vec<&Holder> = status.holders.iter().filter(|h| h.is_live(now)).collect();
    if !live.is_empty() {
        let names: Vec<String> =
            live.iter().map(|h| format!("{} {}", h.identity, token_mention(h.fencing_token))).collect();
        return (ConditionStatus::True, "Acquired", format!("held by {}", names.join(", ")));
    }
    match status.state {
        LeaseState::Released => (ConditionStatus::False, "Released", "released by its holder".to_owned()),
        LeaseState::Expired => {
            let when =
                status.expired_at.map(|t| berth_api::time::format(&t)).unwrap_or_else(|| "an unknown time".into());
            (ConditionStatus::False, "Expired", format!("the last holder expired at {when} without renewing"))
        }
        // The member states never reach this controller: member mode runs its own.
        LeaseState::Available
        | LeaseState::Held
        | LeaseState::Unknown
        | LeaseState::Standby
        | LeaseState::AtRisk
        | LeaseState::Fenced => (ConditionStatus::False, "NotHeld", "never held".to_owned()),
    }
}

/// Sets condition `type_` the Kubernetes way: `lastTransitionTime` moves only
/// when the status changes. Returns whether status, reason or message changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> bool {
    let fresh = Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: now,
        observed_generation: generation,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let changed = existing.status != status || existing.reason != reason || existing.message != message;
            let last_transition_time = if existing.status == status { existing.last_transition_time } else { now };
            *existing = Condition { last_transition_time, ..fresh };
            changed
        }
        None => {
            conditions.push(fresh);
            true
        }
    }
}

/// A Kubernetes Event to record on the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &str, message: impl Into<String>) -> Self {
        Self { warning: false, reason: reason.to_owned(), message: message.into() }
    }

    pub fn warning(reason: &str, message: impl Into<String>) -> Self {
        Self { warning: true, reason: reason.to_owned(), message: message.into() }
    }
}

fn condition<'a>(status: &'a BerthLeaseStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

fn changed(before: Option<&Condition>, after: &Condition) -> bool {
    before.is_none_or(|b| (b.status, &b.reason, &b.message) != (after.status, &after.reason, &after.message))
}

/// The Events that the move from `before` to `after` calls for:
/// - `Acquired` when the lease becomes held, and while it stays held when a
///   grant happened since the last `Held` condition (the last fencing token
///   issued is new to it: a takeover, or another at-least-once holder);
/// - `Released` or `Expired` when it stops being held;
/// - a warning named by its reason when `TargetReady` turns False.
///
/// # Caveats
/// A holder leaving a lease that others still hold records no `Released`;
/// the operator's own expiry of one is recorded by [`partial_expiry_note`].
pub fn transition_notes(before: &BerthLeaseStatus, after: &BerthLeaseStatus) -> Vec<Note> {
    let mut notes = Vec::new();
    let old = condition(before, HELD);
    if let Some(held) = condition(after, HELD)
        && changed(old, held)
    {
        let was_held = old.filter(|c| c.status == ConditionStatus::True);
        match held.status {
            ConditionStatus::True => {
                if was_held.is_none_or(|c| !c.message.contains(&token_mention(after.fencing_token))) {
                    notes.push(Note::normal("Acquired", held.message.clone()));
                }
            }
            ConditionStatus::False | ConditionStatus::Unknown => {
                if held.reason != "NotHeld" {
                    notes.push(Note::normal(&held.reason, held.message.clone()));
                }
            }
        }
    }
    if let Some(ready) = condition(after, TARGET_READY)
        && ready.status == ConditionStatus::False
        && changed(condition(before, TARGET_READY), ready)
    {
        notes.push(Note::warning(&ready.reason, ready.message.clone()));
    }
    notes
}

/// An `Expired` Event for holders the operator dropped from a lease that
/// others still hold (when none remain, [`transition_notes`] records it).
pub fn partial_expiry_note(facts: &Facts) -> Option<Note> {
    if facts.expired.is_empty() || facts.status.state != LeaseState::Held {
        return None;
    }
    let dropped: Vec<String> = facts
        .expired
        .iter()
        .map(|h| {
            format!(
                "{} {} expired at {}",
                h.identity,
                token_mention(h.fencing_token),
                berth_api::time::format(&h.expires_at)
            )
        })
        .collect();
    Some(Note::normal("Expired", format!("{}; still held", dropped.join(", "))))
}

fn token_mention(token: i32) -> String {
    format!("(fencing token {token})")
}

/// What happened to the target in step 4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetOutcome {
    /// The target carries the setting; `written` when this reconcile wrote it.
    Applied {
        kind: TargetKind,
        name: String,
        applied: AppliedAction,
        setting: Setting,
        written: bool,
    },
    NoAction {
        applied: AppliedAction,
    },
    NotFound {
        message: String,
    },
    Forbidden {
        message: String,
    },
    Unsupported {
        message: String,
    },
    Mismatch {
        message: String,
    },
}

impl TargetOutcome {
    /// The `TargetReady` condition: (status, reason, message).
    pub fn condition(&self) -> (ConditionStatus, &'static str, String) {
        match self {
            TargetOutcome::Applied { kind, name, applied, setting, .. } => (
                ConditionStatus::True,
                "ActionApplied",
                format!("{}/{name} has {} ({})", kind.as_str(), setting.describe(), action_field(*applied)),
            ),
            TargetOutcome::NoAction { applied } => (
                ConditionStatus::True,
                "NoAction",
                format!("the lease sets no {}: the target is left as it is", action_field(*applied)),
            ),
            TargetOutcome::NotFound { message } => (ConditionStatus::False, "TargetNotFound", message.clone()),
            TargetOutcome::Forbidden { message } => (ConditionStatus::False, "TargetForbidden", message.clone()),
            TargetOutcome::Unsupported { message } => (ConditionStatus::False, "UnsupportedTarget", message.clone()),
            TargetOutcome::Mismatch { message } => (ConditionStatus::False, "ActionNotSupported", message.clone()),
        }
    }
}

/// Step 5: records the target outcome in `status.target` and `TargetReady`
/// (or removes both when the lease has no target any more).
///
/// # Guarantees
/// `status.target.observedAt` moves only when the operator wrote the target or
/// what it reports changed, so a reconcile that changes nothing writes nothing.
pub fn record_target(
    status: &mut BerthLeaseStatus,
    outcome: Option<&TargetOutcome>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let Some(outcome) = outcome else {
        status.target = None;
        status.conditions.retain(|c| c.type_ != TARGET_READY);
        return;
    };
    let (ready, reason, message) = outcome.condition();
    set_condition(&mut status.conditions, TARGET_READY, ready, reason, &message, generation, now);
    let (applied, written) = match outcome {
        TargetOutcome::Applied { applied, written, .. } => (*applied, *written),
        TargetOutcome::NoAction { applied } => (*applied, false),
        _ => return,
    };
    let same = status.target.as_ref().is_some_and(|t| t.applied == applied && t.message == message);
    if written || !same {
        status.target = Some(TargetStatus { applied, observed_at: now, message });
    }
}

/// How long to sleep until the next holder's `expiresAt` (plus a millisecond,
/// since a holder is live while `now < expiresAt`), at most [`RESYNC`].
pub fn requeue_after(status: &BerthLeaseStatus, now: DateTime<Utc>) -> Duration {
    match next_expiry(status).map(|at| (at - now).to_std()) {
        Some(Ok(wait)) => (wait + Duration::from_millis(1)).min(RESYNC),
        Some(Err(_)) => Duration::from_millis(1),
        None => RESYNC,
    }
}

/// What the finalizer step does, from three facts about the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalizerStep {
    /// Being deleted with our finalizer: apply `releaseAction`, then remove it.
    Cleanup,
    /// Being deleted and not ours to hold: nothing to do.
    Gone,
    /// A target is set and the finalizer is missing.
    Add,
    /// No target any more, but the finalizer is still there.
    Remove,
    /// Nothing to change.
    Keep,
}

impl FinalizerStep {
    pub fn for_lease(deleting: bool, has_target: bool, has_finalizer: bool) -> Self {
        match (deleting, has_target, has_finalizer) {
            (true, _, true) => FinalizerStep::Cleanup,
            (true, _, false) => FinalizerStep::Gone,
            (false, true, false) => FinalizerStep::Add,
            (false, false, true) => FinalizerStep::Remove,
            (false, true, true) | (false, false, false) => FinalizerStep::Keep,
        }
    }
}

/// The warning for resuming a CronJob after a long suspension (kubernetes#42649):
/// with no `startingDeadlineSeconds`, a CronJob that missed more than
/// [`MAX_MISSED_SCHEDULES`] start times since `last` may not be scheduled again.
/// `last` is `status.lastScheduleTime`, or the creation time when it never ran.
/// Returns `None` when there is nothing to warn about or the schedule does not parse.
pub fn long_suspension_warning(
    schedule: &str,
    starting_deadline_seconds: Option<i64>,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<String> {
    if starting_deadline_seconds.is_some() {
        return None;
    }
    let cron: croner::Cron = schedule.parse().ok()?;
    let missed = cron.iter_after(last).take_while(|t| *t <= now).take(MAX_MISSED_SCHEDULES + 1).count();
    (missed > MAX_MISSED_SCHEDULES).then(|| {
        format!(
            "resumed after missing more than {MAX_MISSED_SCHEDULES} start times since {} with no \
             spec.startingDeadlineSeconds: the CronJob controller may not schedule it again \
             (kubernetes#42649); set startingDeadlineSeconds",
            berth_api::time::format(&last)
        )
    })
}

#[cfg(test)]
mod tests;
