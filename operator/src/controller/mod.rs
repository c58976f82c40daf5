//! The BerthLease controller: [`reconcile`] in the order of docs/design.md ("The operator") and
//! its error policy. The target step is in [`act`], the conditional writes in
//! [`writes`], Event recording in [`events`], and the watches that drive the
//! controller in [`watch`].

mod act;
mod events;
mod grants;
mod own_writes;
mod target_memory;
mod target_writes;
mod watch;
mod writes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_api::rules::{Outcome, is_held};
use berth_api::{BerthLease, LeaseKey};
use chrono::Utc;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::plan::{self, FinalizerStep, Note, TARGET_DEADLINE, WriteOrder};
use crate::pod_gate::Standing;

pub(crate) use act::{act_on_target, finalize, follow_stop};
pub(crate) use events::publish;
pub use grants::GrantJournal;
pub use own_writes::OwnWrites;
pub use target_memory::TargetMemory;
pub use target_writes::TargetWrites;
pub(crate) use writes::{set_finalizer, write_status};

pub use events::Recorder;

pub use watch::{cached_leases, run};

/// How often the pods of a released target are looked at while they stop.
const STOPPING_LOOK: Duration = Duration::from_millis(500);

/// When a reconcile on a copy that an own write replaced looks again, if the
/// watch has not triggered it before.
const SUPERSEDED_LOOK: Duration = Duration::from_secs(1);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Arc<Recorder>,
    pub metrics: Arc<Metrics>,
    /// Grants the lease watch showed that no status write has recorded yet.
    pub grants: GrantJournal,
    /// Whether each lease's gated pods may run, for [`crate::pod_gate`].
    pub standings: crate::pod_gate::Standings,
    /// What the target watches last confirmed of each target's knob.
    pub targets: TargetMemory,
    /// Target writes in flight: what follows a target step waits for them.
    pub target_writes: TargetWrites,
    /// The lease copies that the controller's own status writes replaced.
    pub own_writes: OwnWrites,
}

/// Brings one BerthLease and its target in line with its spec and status.
///
/// # Guarantees
/// - Idempotent: a second run on an unchanged lease writes nothing.
/// - Order (docs/design.md, "The operator"): finalizer, expiry, declared holder, target action,
///   status and conditions.
/// - Every status write is a `replace` guarded by `resourceVersion` under
///   field manager `berth-operator`; rule changes are computed by
///   [`berth_api::rules::decide`] only.
/// - An expiry, or a grant made elsewhere, costs one status write: the target
///   is written first and the status then carries both the rule changes and
///   `status.target` ([`plan::WriteOrder`]). Only the operator's own grant to a
///   declared holder is stored before its target is touched.
/// - A failing or hung target (see [`plan::TARGET_DEADLINE`]) never holds back the
///   rule changes: they are written, then the reconcile fails and is retried.
/// - Events are recorded after the status write, in a task of their own.
/// - Wakes at the earliest `expiresAt` (or after [`plan::RESYNC`]).
///
/// # Errors
/// Conflicts and kube-apiserver failures, retried by [`error_policy`]. A target
/// that is missing, forbidden or unsupported is not an error: it is reported
/// in the `TargetReady` condition and an Event.
pub async fn reconcile(lease: Arc<BerthLease>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_lease((*lease).clone(), &ctx).await;
    ctx.metrics.reconciled(started.elapsed());
    result
}

/// Retries a failed reconcile after [`retry_after`].
pub fn error_policy(lease: Arc<BerthLease>, error: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(retry_after(&lease, error, &ctx))
}

/// The one retry policy of the controller and member mode: counts and logs
/// the failure, and says when to try again: soon after a conflict, later
/// after anything else.
pub(crate) fn retry_after(lease: &BerthLease, error: &Error, ctx: &Context) -> Duration {
    ctx.metrics.failed(error.metric_label());
    match error {
        // Expected now and then: the cache lagged behind a write, or a holder wrote first.
        Error::Conflict { .. } => {
            tracing::debug!(lease = %LeaseKey::of(lease), %error, "reconcile conflicted");
            Duration::from_millis(200)
        }
        _ => {
            tracing::warn!(lease = %LeaseKey::of(lease), %error, "reconcile failed");
            Duration::from_secs(5)
        }
    }
}

async fn reconcile_lease(mut lease: BerthLease, ctx: &Context) -> Result<Action> {
    let namespace = lease.namespace().ok_or_else(|| Error::MissingNamespace(lease.name_any()))?;
    let api: Api<BerthLease> = Api::namespaced(ctx.client.clone(), &namespace);
    if ctx.own_writes.superseded(&lease) {
        // The watch has not delivered an own write yet; its event comes
        // with the newer copy (the requeue is only a safety net).
        return Ok(Action::requeue(SUPERSEDED_LOOK));
    }

    // 1. Finalizer, only while a target is set.
    let has_finalizer = plan::has_finalizer(&lease);
    let deleting = lease.metadata.deletion_timestamp.is_some();
    match FinalizerStep::for_lease(deleting, lease.spec.target.is_some(), has_finalizer) {
        FinalizerStep::Cleanup => {
            finalize(&api, &lease, ctx, async {}).await?;
            return Ok(Action::await_change());
        }
        FinalizerStep::Gone => {
            ctx.standings.forget(&namespace, &lease.name_any());
            return Ok(Action::await_change());
        }
        FinalizerStep::Add => lease = set_finalizer(&api, &lease, true).await?,
        FinalizerStep::Remove => lease = set_finalizer(&api, &lease, false).await?,
        FinalizerStep::Keep => {}
    }

    // 2 and 3. Expiry, then the declared holder, with the shared rules. The
    // target follows the status they decide, before that status is written
    // (plan::WriteOrder), so that an expiry costs one status write.
    let now = Utc::now();
    let before = lease.status.clone().unwrap_or_default();
    let facts = plan::lease_facts(&lease.spec, &before, lease.metadata.generation, now);
    let watched = ctx.grants.unrecorded(&lease, before.observed_fencing_token.unwrap_or(0));
    let mut notes = Vec::new();
    if let Some(Outcome::NotAcquired { refusal, current }) = &facts.declared {
        notes.push(Note::DeclaredHolderRefused {
            holder: lease.spec.holder_identity.clone().unwrap_or_default(),
            refusal: *refusal,
            current: current.as_ref().map(|h| h.identity.clone()),
        });
    }
    notes.extend(plan::expiry_notes(&facts.expired, &facts.status, now));
    let mut stored = before.clone();
    let mut next = facts.status.clone();
    if next != stored && plan::write_order(&before, &next, now) == WriteOrder::GrantFirst {
        let written = write_status(&api, &lease, next.clone(), ctx).await?;
        ctx.own_writes.replaced(&lease);
        lease = written;
        expired_written(ctx, &lease, &facts);
        notes.extend(plan::change_notes(&before, &next, &facts.expired, &watched, now));
        publish(ctx, &lease, std::mem::take(&mut notes));
        stored = next.clone();
    }

    // 4. The gated pods, and the target: acquireAction while a holder is
    // live, releaseAction otherwise.
    let standing = Standing::of_coordination(&lease.spec, &next, Utc::now(), tokio::time::Instant::now());
    ctx.standings.set(&namespace, &lease.name_any(), standing);
    let mut target_notes = Vec::new();
    let mut ready_notes = Vec::new();
    let mut stopping = false;
    let target_failed = match lease.spec.target.clone() {
        Some(target) => {
            let applied = plan::phase(is_held(&next, now));
            let step = act_on_target(&lease, &namespace, &target, applied, next.fencing_token, ctx, &mut target_notes);
            match tokio::time::timeout(TARGET_DEADLINE, step).await {
                Ok(Ok(outcome)) => {
                    if plan::record_target(&mut next, Some(&outcome), lease.metadata.generation, Utc::now()) {
                        ready_notes.extend(Note::target_not_ready(&outcome));
                    }
                    // A released target is stopped once its pods are gone.
                    let grace = plan::coordination_grace(&lease.spec, &next, Utc::now());
                    stopping = follow_stop(&lease, &mut next, &outcome, grace, ctx, &mut target_notes).await;
                    None
                }
                Ok(Err(error)) => Some(error),
                Err(_) => Some(Error::TargetTimeout { target: format!("{namespace}/{}", target.name) }),
            }
        }
        None => {
            plan::record_target(&mut next, None, lease.metadata.generation, Utc::now());
            None
        }
    };
    // A target that failed or hung (an error other than 404/403, or past
    // TARGET_DEADLINE) must not hold up the expiry: the rule changes are still
    // written below, with status.target and TargetReady left as they were, and
    // the reconcile then fails so that error_policy retries the target.

    // 5. One status write with the rule changes, status.target and the
    // conditions, only when it differs. Events follow it, off the critical
    // path; the target's own Events go out even when the write fails, since
    // the target was changed either way (a retry would find nothing to write).
    let written = if next != stored { write_status(&api, &lease, next.clone(), ctx).await.map(Some) } else { Ok(None) };
    match written {
        Ok(written) => {
            if let Some(written) = written {
                ctx.own_writes.replaced(&lease);
                lease = written;
                if stored != facts.status {
                    expired_written(ctx, &lease, &facts);
                }
            }
            notes.extend(plan::change_notes(&stored, &next, &facts.expired, &watched, now));
            notes.extend(ready_notes);
            notes.extend(target_notes);
            publish(ctx, &lease, notes);
        }
        Err(error) => {
            publish(ctx, &lease, target_notes);
            return Err(error);
        }
    }
    if let Some(error) = target_failed {
        return Err(error);
    }
    let wake = plan::requeue_after(&next, Utc::now());
    Ok(Action::requeue(if stopping { wake.min(STOPPING_LOOK) } else { wake }))
}

/// Metrics and logs for the holders dropped by expiry, once their status is written.
fn expired_written(ctx: &Context, lease: &BerthLease, facts: &plan::Facts) {
    let written_at = Utc::now();
    for holder in &facts.expired {
        let lag = (written_at - holder.expires_at).to_std().unwrap_or_default();
        ctx.metrics.expiry_lag(lag);
        tracing::info!(lease = %LeaseKey::of(lease), holder = %holder.identity, lag_ms = lag.as_millis(), "expired");
    }
}
