//! Deletion of a member lease: the controller's [`finalize`], the global lease
//! let go of between the target and the finalizer.

use std::time::Duration;

use berth_api::{BerthLease, LeaseKey};
use kube::ResourceExt;
use kube::api::Api;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::controller::finalize;
use crate::error::Result;
use crate::pod_gate::Standing;

use super::{Command, Shared};

/// How long deletion waits for the REST release before the finalizer goes anyway.
const RELEASE_BOUND: Duration = Duration::from_secs(10);

/// One try at the deletion: the pods the gate let through stop at once,
/// `releaseAction` on the target, the REST release of the global lease (the
/// first time only: `done` is taken), then the finalizer goes.
///
/// # Errors
/// Those of [`finalize`]; the gate tries again after
/// [`crate::controller::retry_after`].
pub(super) async fn clean_up(
    shared: &Shared,
    lease: &BerthLease,
    command: &watch::Sender<Command>,
    done: &mut Option<oneshot::Receiver<()>>,
) -> Result<()> {
    let ctx = &shared.ctx;
    let (namespace, name) = (lease.namespace().unwrap_or_default(), lease.name_any());
    ctx.standings.set(&namespace, &name, Standing::Stops { by: Some(Instant::now()) });
    let api: Api<BerthLease> = Api::namespaced(ctx.client.clone(), &namespace);
    finalize(&api, lease, ctx, release_global(lease, command, done)).await?;
    ctx.metrics.member_forget(&namespace, &name);
    Ok(())
}

/// Asks the holder to release the global lease and waits for it, bounded.
async fn release_global(
    lease: &BerthLease,
    command: &watch::Sender<Command>,
    done: &mut Option<oneshot::Receiver<()>>,
) {
    let Some(done) = done.take() else { return };
    command.send_replace(Command::Release);
    if tokio::time::timeout(RELEASE_BOUND, done).await.is_err() {
        tracing::warn!(lease = %LeaseKey::of(lease), "the REST release did not finish; the global lease expires at its TTL");
    }
}
