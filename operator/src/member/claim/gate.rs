//! The gate: decides, acts on the target, writes the local status; on
//! deletion, runs the deletion step until it is done.

use std::sync::Arc;

use berth_api::{BerthLease, BerthLeaseStatus, LeaseKey, LeaseState};
use chrono::Utc;
use kube::ResourceExt;
use kube::api::Api;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::controller::{Context, act_on_target, follow_stop, publish, retry_after, set_finalizer};
use crate::member::state::{self, Decision};
use crate::plan::member::{
    Claim, member_facts, next_wake, settled_state, shown_deadline, stop_budget, target_bound, timing, transition_notes,
};
use crate::plan::{self, FinalizerStep, Note, TargetOutcome};
use crate::pod_gate::Standing;

use super::cleanup::clean_up;
use super::{Command, Learned, Shared};

/// The gate: decides, acts, writes, waits, for as long as the lease exists.
///
/// # Guarantees
/// A claim always holds the finalizer (deleting it lets go of the global
/// lease). Deletion follows the controller's contract and retry policy
/// ([`crate::controller::finalize`], [`retry_after`]); unlike the controller,
/// a lease deleted without the finalizer (removed by hand, or gone) still
/// gets `releaseAction` before the global lease is released, since another
/// cluster may take it once released: the workload must not run on unseen.
pub(super) async fn gate(
    shared: Arc<Shared>,
    mut lease_rx: watch::Receiver<Arc<BerthLease>>,
    mut learned: watch::Receiver<Learned>,
    command: watch::Sender<Command>,
    done: oneshot::Receiver<()>,
    mut stopping: watch::Receiver<bool>,
) {
    let ctx = shared.ctx.clone();
    let mut lease = lease_rx.borrow_and_update().clone();
    let mut done = Some(done);
    // The last state other than `unknown` this lease was in, for Events.
    let mut previous = settled_state(lease.status.as_ref().map(|s| s.state).unwrap_or_default());
    let mut renew_failed_at: Option<Instant> = None;
    // The lease object is gone, and its sender with it.
    let mut gone = false;
    loop {
        let deleting = gone || lease.metadata.deletion_timestamp.is_some();
        let wake = match FinalizerStep::for_lease(deleting, true, plan::has_finalizer(&lease)) {
            FinalizerStep::Cleanup | FinalizerStep::Gone => {
                match clean_up(&shared, &lease, &command, &mut done).await {
                    Ok(()) => return,
                    Err(error) => Instant::now() + retry_after(&lease, &error, &ctx),
                }
            }
            FinalizerStep::Add => {
                let api: Api<BerthLease> = Api::namespaced(ctx.client.clone(), &lease.namespace().unwrap_or_default());
                match set_finalizer(&api, &lease, true).await {
                    Ok(updated) => lease = Arc::new(updated),
                    Err(error) => tracing::warn!(lease = %LeaseKey::of(&lease), %error, "adding the finalizer failed"),
                }
                decide_and_act(&shared, &mut lease, &mut learned, &mut previous, &mut renew_failed_at).await
            }
            // `Remove` needs a lease with nothing to let go of: never a claim.
            FinalizerStep::Remove | FinalizerStep::Keep => {
                decide_and_act(&shared, &mut lease, &mut learned, &mut previous, &mut renew_failed_at).await
            }
        };
        enum Next {
            Decide,
            Lease,
            Gone,
            Stop,
        }
        let next = tokio::select! {
            () = tokio::time::sleep_until(wake) => Next::Decide,
            changed = lease_rx.changed(), if !gone => if changed.is_ok() { Next::Lease } else { Next::Gone },
            // Deletion does not read what the holder learns (which ends with the release).
            _ = learned.changed(), if !deleting => Next::Decide,
            _ = stopping.wait_for(|stop| *stop) => Next::Stop,
        };
        match next {
            Next::Decide => {}
            Next::Lease => lease = lease_rx.borrow_and_update().clone(),
            // The lease is gone without our cleanup (the finalizer was removed
            // by hand); unless member mode ended: it stops the claims before
            // it drops their senders.
            Next::Gone if !*stopping.borrow() => gone = true,
            Next::Gone | Next::Stop => {
                command.send_replace(Command::Abandon);
                return;
            }
        }
    }
}

/// One pass of a live claim: decide, act on the target, write the status.
/// Returns when to decide again if nothing is learned first.
async fn decide_and_act(
    shared: &Shared,
    lease: &mut Arc<BerthLease>,
    learned: &mut watch::Receiver<Learned>,
    previous: &mut Option<LeaseState>,
    renew_failed_at: &mut Option<Instant>,
) -> Instant {
    let ctx = &shared.ctx;
    let (namespace, name) = (lease.namespace().unwrap_or_default(), lease.name_any());
    let (_, grace) = timing(&lease.spec);
    let stop = stop_budget(&lease.spec);
    let now = Instant::now();
    let known = learned.borrow_and_update().clone();
    let decision = state::decide(&known.knowledge, grace, stop, now);
    if let Some(standing) = Standing::of_member(&decision, now) {
        ctx.standings.set(&namespace, &name, standing);
    }
    let mut notes =
        transition_notes(&shared.cluster_id, *previous, &decision, &known.knowledge, stop, renew_failed_at, now);
    if decision.state != LeaseState::Unknown {
        if decision.state == LeaseState::Fenced && *previous != Some(LeaseState::Fenced) {
            ctx.metrics.member_fenced();
        }
        *previous = Some(decision.state);
    }
    let (outcome, settled) = apply_target(ctx, lease, &decision, &mut notes).await;
    let deadline = shown_deadline(&known.knowledge, decision.state);
    ctx.metrics.member_state(&namespace, &name, decision.state.as_str(), deadline, known.unreachable.is_none());
    let claim = Claim {
        cluster_id: &shared.cluster_id,
        state: decision.state,
        mirror: &known.mirror,
        unreachable: known.unreachable.as_deref(),
        generation: lease.metadata.generation,
    };
    let previous_status = lease.status.clone().unwrap_or_default();
    let has_target = lease.spec.target.is_some();
    let mut next = member_facts(&previous_status, &claim, outcome.as_ref(), has_target, Utc::now()).status;
    // A fenced target is stopped once its pods are gone; those that
    // would run past the deadline get a grace period that ends before it.
    let grace = crate::pods::stop_grace(decision.stop_by, Instant::now());
    let pods_stopping = match &outcome {
        Some(outcome) => follow_stop(lease, &mut next, outcome, Some(grace), ctx, &mut notes).await,
        None => false,
    };
    if let Some(written) = write_status(ctx, lease, next).await {
        *lease = Arc::new(written);
    }
    publish(ctx, lease, notes);
    next_wake(&decision, settled, pods_stopping, now)
}

/// Applies the decided action to the target, bounded so that an acquire
/// action never lands after the safe deadline is known to have passed.
/// Returns the outcome (when there is one) and whether the step settled.
async fn apply_target(
    ctx: &Context,
    lease: &BerthLease,
    decision: &Decision,
    notes: &mut Vec<Note>,
) -> (Option<TargetOutcome>, bool) {
    let (Some(action), Some(target)) = (decision.action, lease.spec.target.as_ref()) else {
        return (None, true);
    };
    let namespace = lease.namespace().unwrap_or_default();
    let bound = target_bound(decision, Instant::now());
    let fencing_token = lease.status.as_ref().map_or(0, |s| s.fencing_token);
    match tokio::time::timeout(bound, act_on_target(lease, &namespace, target, action, fencing_token, ctx, notes)).await
    {
        Ok(Ok(outcome)) => (Some(outcome), true),
        Ok(Err(error)) => {
            tracing::warn!(lease = %LeaseKey::of(lease), %error, "acting on the target failed");
            (None, false)
        }
        Err(_) => {
            tracing::warn!(lease = %LeaseKey::of(lease), "acting on the target took too long");
            (None, false)
        }
    }
}

/// Writes `next` when it differs from the stored status.
async fn write_status(ctx: &Context, lease: &BerthLease, next: BerthLeaseStatus) -> Option<BerthLease> {
    if lease.status.clone().unwrap_or_default() == next {
        return None;
    }
    let api: Api<BerthLease> = Api::namespaced(ctx.client.clone(), &lease.namespace().unwrap_or_default());
    match crate::controller::write_status(&api, lease, next, ctx).await {
        Ok(written) => Some(written),
        // The newer version arrives from the watch, and the gate decides again.
        Err(crate::Error::Conflict { .. }) => None,
        Err(error) => {
            tracing::warn!(%error, "writing the member status failed");
            None
        }
    }
}
