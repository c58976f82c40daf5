//! The target side of a lease: the kinds the operator can act on, what it
//! sets on them in each phase, and how the outcome is reported in
//! `status.target` and the `TargetReady` condition.

use berth_api::BerthLeaseSpec;
use berth_api::BerthLeaseStatus;
use berth_api::crd::{AppliedAction, ConditionStatus, TargetAction, TargetRef, TargetStatus};
use chrono::{DateTime, Utc};

use super::conditions::{TARGET_READY, set_condition};

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
/// Returns whether `TargetReady` changed.
///
/// # Guarantees
/// `status.target.observedAt` moves only when the operator wrote the target or
/// what it reports changed, so a reconcile that changes nothing writes nothing.
pub fn record_target(
    status: &mut BerthLeaseStatus,
    outcome: Option<&TargetOutcome>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> bool {
    let Some(outcome) = outcome else {
        let had = status.conditions.iter().any(|c| c.type_ == TARGET_READY);
        status.target = None;
        status.conditions.retain(|c| c.type_ != TARGET_READY);
        return had;
    };
    let (ready, reason, message) = outcome.condition();
    let changed = set_condition(&mut status.conditions, TARGET_READY, ready, reason, &message, generation, now);
    let (applied, written) = match outcome {
        TargetOutcome::Applied { applied, written, .. } => (*applied, *written),
        TargetOutcome::NoAction { applied } => (*applied, false),
        _ => return changed,
    };
    let same = status.target.as_ref().is_some_and(|t| t.applied == applied && t.message == message);
    if written || !same {
        status.target = Some(TargetStatus { applied, observed_at: now, message, stopped_at: None });
    }
    changed
}

/// The released target whose pods are to be followed until none runs: the
/// outcome applied a `releaseAction` that stops the workload (`suspend:
/// true`, `replicas: 0`), and `status` (as about to be written) does not
/// record the stop yet. A release that only scales down leaves pods that
/// are meant to run: they are neither followed nor hastened.
pub fn to_follow(status: &BerthLeaseStatus, outcome: &TargetOutcome) -> Option<(TargetKind, String)> {
    match outcome {
        TargetOutcome::Applied {
            kind,
            name,
            applied: AppliedAction::Release,
            setting: Setting::Suspend(true) | Setting::Replicas(0),
            ..
        } if status.target.as_ref().is_some_and(|t| t.applied == AppliedAction::Release && t.stopped_at.is_none()) => {
            Some((*kind, name.clone()))
        }
        _ => None,
    }
}

/// Records in `status.target.stoppedAt` that no pod of the released target
/// runs any more; returns how long after the release that was.
pub fn record_stopped(status: &mut BerthLeaseStatus, now: DateTime<Utc>) -> Option<chrono::Duration> {
    let target = status.target.as_mut().filter(|t| t.applied == AppliedAction::Release)?;
    target.stopped_at = Some(now);
    Some(now - target.observed_at)
}

/// The grace period the coordination cluster gives the pods of a released
/// target: what is left of `spec.stopSeconds` since the release was
/// written, or `None` (their own grace period) without a budget. There is
/// no safe deadline here: the lease has ended when its target is released.
pub fn coordination_grace(spec: &BerthLeaseSpec, status: &BerthLeaseStatus, now: DateTime<Utc>) -> Option<u32> {
    let budget = u32::try_from(spec.stop_seconds).ok().filter(|s| *s > 0)?;
    let since = status.target.as_ref().map_or(0, |t| (now - t.observed_at).num_seconds().max(0));
    Some(budget.saturating_sub(u32::try_from(since).unwrap_or(u32::MAX)))
}
