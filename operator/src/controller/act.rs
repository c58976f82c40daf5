//! Step 4 of a reconcile: the target, read and written only when it differs,
//! and `releaseAction` when a lease is deleted.

use berth_api::BerthLease;
use berth_api::crd::{AppliedAction, TargetRef};
use chrono::Utc;

use crate::error::{Error, Result};
use crate::plan::{self, Note, Setting, TargetOutcome, TargetPlan};
use crate::target::{self, Failure};

use super::{Context, key, publish};

/// Step 4 for one phase: reads the target and writes it only when it
/// differs. The Events of a write are pushed to `notes`, for the caller to
/// record after its status write.
pub(crate) async fn act_on_target(
    lease: &BerthLease,
    namespace: &str,
    target: &TargetRef,
    applied: AppliedAction,
    ctx: &Context,
    notes: &mut Vec<Note>,
) -> Result<TargetOutcome> {
    let (kind, setting) = match plan::plan_target(target, &lease.spec, applied) {
        TargetPlan::Apply { kind, setting, .. } => (kind, setting),
        TargetPlan::NoAction { applied } => return Ok(TargetOutcome::NoAction { applied }),
        TargetPlan::Unsupported { message } => return Ok(TargetOutcome::Unsupported { message }),
        TargetPlan::Mismatch { message } => return Ok(TargetOutcome::Mismatch { message }),
    };
    let name = &target.name;
    let shown = format!("{}/{name}", kind.as_str());
    let failed = |failure: Failure, verb: &str| match failure {
        Failure::NotFound => {
            Ok(TargetOutcome::NotFound { message: format!("{shown} does not exist in namespace {namespace}") })
        }
        Failure::Forbidden(detail) => {
            Ok(TargetOutcome::Forbidden { message: format!("the operator may not {verb} {shown}: {detail}") })
        }
        Failure::Other(source) => Err(Error::Target { target: format!("{namespace}/{shown}"), source }),
    };
    let observed = match target::observe(&ctx.client, namespace, kind, name).await {
        Ok(observed) => observed,
        Err(failure) => return failed(failure, "read"),
    };
    let done = |written| TargetOutcome::Applied { kind, name: name.clone(), applied, setting, written };
    if observed.setting == setting {
        return Ok(done(false));
    }
    let resume_warning = match (&observed.cron, observed.setting, setting) {
        (Some(cron), Setting::Suspend(true), Setting::Suspend(false)) => cron.last.and_then(|last| {
            plan::long_suspension_warning(&cron.schedule, cron.starting_deadline_seconds, last, Utc::now())
        }),
        _ => None,
    };
    if let Err(failure) = target::write(&ctx.client, namespace, kind, name, setting).await {
        return failed(failure, "change");
    }
    ctx.metrics.target_action(kind.as_str(), applied_label(applied));
    tracing::info!(lease = %key(lease), target = %shown, setting = %setting.describe(), "target written");
    let message = format!("{shown}: {} ({})", setting.describe(), plan::action_field(applied));
    notes.push(Note::normal(setting.event_reason(), message));
    if let Some(warning) = resume_warning {
        notes.push(Note::warning("CronJobMayNotSchedule", format!("{shown} {warning}")));
    }
    Ok(done(true))
}

fn applied_label(applied: AppliedAction) -> &'static str {
    match applied {
        AppliedAction::Acquire => "acquire",
        AppliedAction::Release => "release",
    }
}

/// The finalizer's work: `releaseAction` on the target. A missing target, an
/// unsupported one or a lease without `releaseAction` lets deletion go on; a
/// forbidden one holds it (so a workload is not left running unseen) until the
/// operator is allowed or the finalizer is removed by hand.
pub(super) async fn release_on_delete(lease: &BerthLease, namespace: &str, ctx: &Context) -> Result<()> {
    let Some(target) = lease.spec.target.clone() else { return Ok(()) };
    let mut notes = Vec::new();
    let outcome = act_on_target(lease, namespace, &target, AppliedAction::Release, ctx, &mut notes).await;
    let result = match outcome {
        Ok(TargetOutcome::Forbidden { message }) => {
            notes.push(Note::warning("TargetForbidden", message.clone()));
            Err(Error::CleanupBlocked { lease: key(lease), message })
        }
        Ok(
            TargetOutcome::Applied { .. }
            | TargetOutcome::NoAction { .. }
            | TargetOutcome::NotFound { .. }
            | TargetOutcome::Unsupported { .. }
            | TargetOutcome::Mismatch { .. },
        ) => Ok(()),
        Err(error) => Err(error),
    };
    publish(ctx, lease, notes);
    result
}
