//! Deletion of a member lease.

use std::time::Duration;

use berth_api::crd::AppliedAction;
use berth_api::{BerthLease, LeaseKey, LeaseState};
use kube::ResourceExt;
use kube::api::Api;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::controller::{publish, set_finalizer};
use crate::member::state::Decision;
use crate::plan::TargetOutcome;
use crate::pod_gate::Standing;

use super::gate::apply_target;
use super::{Command, RETRY, Shared};

/// How long deletion waits for the REST release before the finalizer goes anyway.
const RELEASE_BOUND: Duration = Duration::from_secs(10);

/// Deletion: releaseAction on the target, then the REST release, then the
/// finalizer goes (when the object still has it).
pub(super) async fn clean_up(
    shared: &Shared,
    lease: &BerthLease,
    command: watch::Sender<Command>,
    done: oneshot::Receiver<()>,
    remove_finalizer: bool,
) {
    let ctx = &shared.ctx;
    let (namespace, name) = (lease.namespace().unwrap_or_default(), lease.name_any());
    // The pods the gate let through stop at once, before the global lease is released.
    ctx.standings.set(&namespace, &name, Standing::Stops { by: Some(Instant::now()) });
    let release =
        Decision { state: LeaseState::Standby, action: Some(AppliedAction::Release), wake_at: None, stop_by: None };
    loop {
        let mut notes = Vec::new();
        let (outcome, settled) = apply_target(ctx, lease, &release, &mut notes).await;
        publish(ctx, lease, notes);
        let blocked = matches!(outcome, Some(TargetOutcome::Forbidden { .. }));
        if settled && !blocked {
            break;
        }
        // A target that cannot be released yet holds the deletion: the workload
        // must not run on unseen while the global lease is given up.
        tokio::time::sleep(RETRY).await;
    }
    command.send_replace(Command::Release);
    if tokio::time::timeout(RELEASE_BOUND, done).await.is_err() {
        tracing::warn!(lease = %LeaseKey::of(lease), "the REST release did not finish; the global lease expires at its TTL");
    }
    ctx.metrics.member_forget(&namespace, &name);
    ctx.standings.forget(&namespace, &name);
    if remove_finalizer {
        let api: Api<BerthLease> = Api::namespaced(ctx.client.clone(), &namespace);
        loop {
            let Ok(Some(current)) = api.get_opt(&name).await else { return };
            match set_finalizer(&api, &current, false).await {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(lease = %LeaseKey::of(lease), %error, "removing the finalizer failed; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}
