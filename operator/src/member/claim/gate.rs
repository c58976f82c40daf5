//! The gate: decides, acts on the target, writes the local status.

use std::sync::Arc;
use std::time::Duration;

use berth_api::crd::AppliedAction;
use berth_api::{BerthLease, BerthLeaseStatus, LeaseKey, LeaseState};
use chrono::Utc;
use kube::ResourceExt;
use kube::api::Api;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::controller::{Context, act_on_target, follow_stop, publish, set_finalizer};
use crate::member::state::{self, Decision, Knowledge};
use crate::member::status::{Facts, member_status};
use crate::plan::{self, FINALIZER, Note, TargetOutcome};
use crate::pod_gate::Standing;

use super::cleanup::clean_up;
use super::record::{is_member_state, transition_notes};
use super::{Command, Learned, Shared, timing};

/// How long a release action on the target may take before it is tried again.
const TARGET_BOUND: Duration = Duration::from_secs(2);
/// Drift of the target is corrected at least this often.
const RESYNC: Duration = Duration::from_secs(60);
/// How often the pods of a fenced target are looked at while they stop.
const STOPPING_LOOK: Duration = Duration::from_millis(250);

/// The gate: decides, acts, writes, waits, for as long as the lease exists.
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
    let stored = lease.status.as_ref().map(|s| s.state).unwrap_or_default();
    // The last state other than `unknown` this lease was in, for Events.
    let mut previous = if is_member_state(stored) && stored != LeaseState::Unknown { Some(stored) } else { None };
    let mut renew_failed_at: Option<Instant> = None;
    loop {
        if lease.metadata.deletion_timestamp.is_some() {
            return clean_up(&shared, &lease, command, done, true).await;
        }
        if !lease.finalizers().iter().any(|f| f == FINALIZER) {
            let api: Api<BerthLease> = Api::namespaced(ctx.client.clone(), &lease.namespace().unwrap_or_default());
            match set_finalizer(&api, &lease, true).await {
                Ok(updated) => lease = Arc::new(updated),
                Err(error) => tracing::warn!(lease = %LeaseKey::of(&lease), %error, "adding the finalizer failed"),
            }
        }
        let (_, grace) = timing(&lease);
        let stop = Duration::from_secs(lease.spec.stop_seconds.max(0).unsigned_abs().into());
        let now = Instant::now();
        let known = learned.borrow_and_update().clone();
        let decision = state::decide(&known.knowledge, grace, stop, now);
        if let Some(standing) = Standing::of_member(&decision, now) {
            ctx.standings.set(&lease.namespace().unwrap_or_default(), &lease.name_any(), standing);
        }
        let mut notes = transition_notes(&shared, previous, &decision, &known, stop, &mut renew_failed_at, now);
        if decision.state != LeaseState::Unknown {
            if decision.state == LeaseState::Fenced && previous != Some(LeaseState::Fenced) {
                ctx.metrics.member_fenced();
            }
            previous = Some(decision.state);
        }
        let (outcome, settled) = apply_target(&ctx, &lease, &decision, &mut notes).await;
        let deadline = match known.knowledge {
            Knowledge::Granted { deadline, .. } if state::runs(decision.state) => Some(deadline),
            _ => None,
        };
        let (namespace, name) = (lease.namespace().unwrap_or_default(), lease.name_any());
        ctx.metrics.member_state(&namespace, &name, decision.state.as_str(), deadline, known.unreachable.is_none());
        let mut next = next_status(&shared, &lease, &decision, &known, outcome.as_ref());
        // A fenced target is stopped once its pods are gone; those that
        // would run past the deadline get a grace period that ends before it.
        let grace = crate::pods::stop_grace(decision.stop_by, Instant::now());
        let pods_stopping = match &outcome {
            Some(outcome) => follow_stop(&lease, &mut next, outcome, Some(grace), &ctx, &mut notes).await,
            None => false,
        };
        if let Some(written) = write_status(&shared, &lease, next).await {
            lease = Arc::new(written);
        }
        publish(&ctx, &lease, notes);

        let wake = match (settled, decision.wake_at) {
            // A target write that did not finish, or pods that still stop: look again soon.
            (false, _) => now + Duration::from_millis(200),
            (true, _) if pods_stopping => now + STOPPING_LOOK,
            (true, Some(at)) => at.min(now + RESYNC),
            (true, None) => now + RESYNC,
        };
        enum Next {
            Decide,
            Lease,
            Gone,
            Stop,
        }
        let next = tokio::select! {
            () = tokio::time::sleep_until(wake) => Next::Decide,
            changed = lease_rx.changed() => if changed.is_ok() { Next::Lease } else { Next::Gone },
            _ = learned.changed() => Next::Decide,
            _ = stopping.wait_for(|stop| *stop) => Next::Stop,
        };
        match next {
            Next::Decide => {}
            Next::Lease => lease = lease_rx.borrow_and_update().clone(),
            // The lease is gone without our cleanup (the finalizer was removed
            // by hand); unless member mode ended: it stops the claims before
            // it drops their senders.
            Next::Gone if !*stopping.borrow() => return clean_up(&shared, &lease, command, done, false).await,
            Next::Gone | Next::Stop => {
                command.send_replace(Command::Abandon);
                return;
            }
        }
    }
}
/// Applies the decided action to the target, bounded so that an acquire
/// action never lands after the safe deadline is known to have passed.
/// Returns the outcome (when there is one) and whether the step settled.
pub(super) async fn apply_target(
    ctx: &Context,
    lease: &BerthLease,
    decision: &Decision,
    notes: &mut Vec<Note>,
) -> (Option<TargetOutcome>, bool) {
    let (Some(action), Some(target)) = (decision.action, lease.spec.target.as_ref()) else {
        return (None, true);
    };
    let namespace = lease.namespace().unwrap_or_default();
    let bound = match (action, decision.wake_at) {
        (AppliedAction::Acquire, Some(deadline)) => {
            deadline.saturating_duration_since(Instant::now()).min(TARGET_BOUND)
        }
        _ => TARGET_BOUND,
    };
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

/// The member status to hold after this decision.
fn next_status(
    shared: &Shared,
    lease: &BerthLease,
    decision: &Decision,
    known: &Learned,
    outcome: Option<&TargetOutcome>,
) -> BerthLeaseStatus {
    let previous = lease.status.clone().unwrap_or_default();
    let facts = Facts {
        cluster_id: &shared.cluster_id,
        state: decision.state,
        mirror: &known.mirror,
        unreachable: known.unreachable.as_deref(),
        generation: lease.metadata.generation,
    };
    let now = Utc::now();
    let mut next = member_status(&previous, &facts, now);
    match (outcome, &lease.spec.target) {
        (Some(outcome), _) => {
            plan::record_target(&mut next, Some(outcome), lease.metadata.generation, now);
        }
        (None, None) => {
            plan::record_target(&mut next, None, lease.metadata.generation, now);
        }
        (None, Some(_)) => {}
    }
    next
}

/// Writes `next` when it differs from the stored status.
async fn write_status(shared: &Shared, lease: &BerthLease, next: BerthLeaseStatus) -> Option<BerthLease> {
    if lease.status.clone().unwrap_or_default() == next {
        return None;
    }
    let api: Api<BerthLease> = Api::namespaced(shared.ctx.client.clone(), &lease.namespace().unwrap_or_default());
    match crate::controller::write_status(&api, lease, next, &shared.ctx).await {
        Ok(written) => Some(written),
        // The newer version arrives from the watch, and the gate decides again.
        Err(crate::Error::Conflict { .. }) => None,
        Err(error) => {
            tracing::warn!(%error, "writing the member status failed");
            None
        }
    }
}
