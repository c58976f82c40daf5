//! Step 4 of a reconcile: the target, read and written only when it differs;
//! and [`finalize`], the deletion of a lease in both modes.

use berth_api::crd::{AppliedAction, TargetRef};
use berth_api::{BerthLease, LeaseKey};
use chrono::Utc;
use kube::ResourceExt;
use kube::api::Api;

use crate::error::{Error, Result};
use crate::plan::{self, Note, Setting, TARGET_DEADLINE, TargetOutcome, TargetPlan};
use crate::target::{self, Failure};

use super::{Context, publish, set_finalizer};

/// Step 4 for one phase: reads the target and writes it only when it
/// differs. The Events of a write are pushed to `notes`, for the caller to
/// record after its status write.
pub(crate) async fn act_on_target(
    lease: &BerthLease,
    namespace: &str,
    target: &TargetRef,
    applied: AppliedAction,
    fencing_token: i32,
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
    // What the target's watch last confirmed, else a read.
    let observed = match ctx.targets.recall(kind, namespace, name) {
        Some(observed) => observed,
        None => {
            ctx.metrics.target_read(kind.as_str());
            match target::observe(&ctx.client, namespace, kind, name).await {
                Ok(observed) => {
                    ctx.targets.remember(kind, namespace, name, observed.clone());
                    observed
                }
                Err(failure) => return failed(failure, "read"),
            }
        }
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
    let written = {
        let _in_flight = ctx.target_writes.start();
        target::write(&ctx.client, namespace, kind, name, setting).await
    };
    match written {
        Ok(Some(written)) => ctx.targets.remember(kind, namespace, name, written),
        Ok(None) => {}
        Err(failure) => return failed(failure, "change"),
    }
    ctx.metrics.target_action(kind.as_str(), applied_label(applied));
    tracing::info!(lease = %LeaseKey::of(lease), target = %shown, setting = %setting.describe(), "target written");
    notes.push(Note::TargetWritten { target: shown.clone(), applied, setting, fencing_token });
    if let Some(warning) = resume_warning {
        notes.push(Note::CronJobMayNotSchedule { target: shown, warning });
    }
    Ok(done(true))
}

/// How long one look at a released target's pods may take.
const FOLLOW_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

/// Once no target write is in flight ([`super::TargetWrites`]), follows the
/// pods of a target that `outcome` released (see
/// [`crate::pods::follow`], which deletes those that would outlive `grace`),
/// and once none runs, records `status.target.stoppedAt` in `next` and a
/// `TargetStopped` Event in `notes`.
///
/// Returns whether pods are still stopping: the caller looks again soon.
/// A target the operator may not follow (403 on pods) is not followed: that
/// is logged, and nothing is recorded.
pub(crate) async fn follow_stop(
    lease: &BerthLease,
    next: &mut berth_api::BerthLeaseStatus,
    outcome: &TargetOutcome,
    grace: Option<u32>,
    ctx: &Context,
    notes: &mut Vec<Note>,
) -> bool {
    let Some((kind, name)) = plan::to_follow(next, outcome) else { return false };
    // Every target of a burst is written before any of them is followed.
    ctx.target_writes.sent().await;
    let namespace = lease.metadata.namespace.clone().unwrap_or_default();
    let shown = format!("{}/{name}", kind.as_str());
    match tokio::time::timeout(FOLLOW_BOUND, crate::pods::follow(&ctx.client, &namespace, kind, &name, grace)).await {
        Ok(Ok(crate::pods::Progress::Stopped)) => {
            if let Some(after) = plan::record_stopped(next, Utc::now()) {
                tracing::info!(lease = %LeaseKey::of(lease), target = %shown, after_ms = after.num_milliseconds(), "target stopped");
                notes.push(Note::TargetStopped { target: shown, after });
            }
            false
        }
        Ok(Ok(crate::pods::Progress::Stopping { pods })) => {
            tracing::debug!(lease = %LeaseKey::of(lease), target = %shown, pods, "target stopping");
            true
        }
        Ok(Err(Failure::Forbidden(detail))) => {
            tracing::warn!(lease = %LeaseKey::of(lease), target = %shown, %detail, "the operator may not list or delete pods: their stop is not followed");
            false
        }
        Ok(Err(Failure::NotFound)) => false,
        Ok(Err(Failure::Other(error))) => {
            tracing::warn!(lease = %LeaseKey::of(lease), target = %shown, %error, "following the target's pods failed");
            true
        }
        Err(_) => {
            tracing::warn!(lease = %LeaseKey::of(lease), target = %shown, "following the target's pods took too long");
            true
        }
    }
}

fn applied_label(applied: AppliedAction) -> &'static str {
    match applied {
        AppliedAction::Acquire => "acquire",
        AppliedAction::Release => "release",
    }
}

/// Deletion, the one contract of the controller and member mode
/// (docs/design.md, "Deletion"): `releaseAction` on the target, bounded like
/// any target step; then `let_go`, whatever else the lease holds (member
/// mode: the global lease); then our finalizer goes, and the lease's pod
/// standing with it. A lease already gone needs no finalizer write.
///
/// # Errors
/// A target that may not be released yet ([`Error::CleanupBlocked`]: a
/// workload is not left running unseen, until the operator is allowed or
/// the finalizer is removed by hand), a failing or hung target, or a failed
/// finalizer write. The caller runs the whole step again after
/// [`super::retry_after`]; each part is idempotent.
pub(crate) async fn finalize(
    api: &Api<BerthLease>,
    lease: &BerthLease,
    ctx: &Context,
    let_go: impl Future<Output = ()>,
) -> Result<()> {
    release_target(lease, ctx).await?;
    let_go.await;
    if plan::has_finalizer(lease) {
        match set_finalizer(api, lease, false).await {
            Err(Error::Finalizer { source: kube::Error::Api(status), .. }) if status.code == 404 => {}
            result => {
                result?;
            }
        }
    }
    ctx.standings.forget(&lease.namespace().unwrap_or_default(), &lease.name_any());
    Ok(())
}

/// `releaseAction` on the target of a lease being deleted.
async fn release_target(lease: &BerthLease, ctx: &Context) -> Result<()> {
    let Some(target) = lease.spec.target.clone() else { return Ok(()) };
    let namespace = lease.namespace().unwrap_or_default();
    let mut notes = Vec::new();
    let fencing_token = lease.status.as_ref().map_or(0, |s| s.fencing_token);
    let step = act_on_target(lease, &namespace, &target, AppliedAction::Release, fencing_token, ctx, &mut notes);
    let result = match tokio::time::timeout(TARGET_DEADLINE, step).await {
        Ok(Ok(outcome)) => plan::deletion_may_proceed(&outcome).map_err(|message| {
            notes.extend(Note::target_not_ready(&outcome));
            Error::CleanupBlocked { lease: LeaseKey::of(lease), message: message.to_owned() }
        }),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(Error::TargetTimeout { target: format!("{namespace}/{}", target.name) }),
    };
    publish(ctx, lease, notes);
    result
}
