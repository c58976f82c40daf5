//! The controller's writes to the lease: the finalizer and the status, each
//! guarded by the `resourceVersion` it was read at.

use berth_api::{BerthLease, BerthLeaseStatus, LeaseKey};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::FIELD_MANAGER;
use crate::error::{Error, Result};
use crate::plan::FINALIZER;

use super::Context;

/// Adds or removes our finalizer with a merge patch guarded by `resourceVersion`.
pub(crate) async fn set_finalizer(api: &Api<BerthLease>, lease: &BerthLease, present: bool) -> Result<BerthLease> {
    let mut finalizers: Vec<String> = lease.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    if present {
        finalizers.push(FINALIZER.to_owned());
    }
    let patch = json!({"metadata": {"resourceVersion": lease.resource_version(), "finalizers": finalizers}});
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() };
    match api.patch(&lease.name_any(), &params, &Patch::Merge(&patch)).await {
        Ok(patched) => Ok(patched),
        Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::Conflict { lease: LeaseKey::of(lease) }),
        Err(source) => Err(Error::Finalizer { lease: LeaseKey::of(lease), source }),
    }
}

/// Replaces the status, guarded by the `resourceVersion` the lease was read
/// at: the one status writer of both the controller and member mode.
pub(crate) async fn write_status(
    api: &Api<BerthLease>,
    lease: &BerthLease,
    status: BerthLeaseStatus,
    ctx: &Context,
) -> Result<BerthLease> {
    let mut object = lease.clone();
    object.status = Some(status);
    object.metadata.managed_fields = None;
    let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() };
    match api.replace_status(&lease.name_any(), &params, &object).await {
        Ok(written) => {
            ctx.metrics.status_write(false);
            Ok(written)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            ctx.metrics.status_write(true);
            Err(Error::Conflict { lease: LeaseKey::of(lease) })
        }
        Err(source) => Err(Error::StatusWrite { lease: LeaseKey::of(lease), source }),
    }
}
