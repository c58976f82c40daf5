//! The finalizer that makes deleting a lease apply `releaseAction` first: the
//! one deletion contract of the controller and member mode (docs/design.md,
//! "Deletion").

use berth_api::BerthLease;
use kube::ResourceExt;

use super::TargetOutcome;

/// The finalizer's name.
pub const FINALIZER: &str = "berth.skaphos.io/release-target";

/// Whether `lease` carries our finalizer.
pub fn has_finalizer(lease: &BerthLease) -> bool {
    lease.finalizers().iter().any(|f| f == FINALIZER)
}

/// What the finalizer step does, from three facts about the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalizerStep {
    /// Being deleted with our finalizer: apply `releaseAction`, then remove it.
    Cleanup,
    /// Being deleted and not ours to hold: nothing to do.
    Gone,
    /// Deletion must wait for us and the finalizer is missing.
    Add,
    /// Nothing to wait for any more, but the finalizer is still there.
    Remove,
    /// Nothing to change.
    Keep,
}

impl FinalizerStep {
    /// `guards`: deleting the lease has something to let go of first. In the
    /// coordination cluster, a target; in member mode, always: the claim
    /// holds the global lease.
    pub fn for_lease(deleting: bool, guards: bool, has_finalizer: bool) -> Self {
        match (deleting, guards, has_finalizer) {
            (true, _, true) => FinalizerStep::Cleanup,
            (true, _, false) => FinalizerStep::Gone,
            (false, true, false) => FinalizerStep::Add,
            (false, false, true) => FinalizerStep::Remove,
            (false, true, true) | (false, false, false) => FinalizerStep::Keep,
        }
    }
}

/// Whether `releaseAction`'s outcome lets the deletion go on: `Err` with the
/// reason when it must wait. A target the operator may not change holds it,
/// so that a workload is not left running unseen; a missing or unsupported
/// target, or no `releaseAction`, does not.
pub fn deletion_may_proceed(outcome: &TargetOutcome) -> Result<(), &str> {
    match outcome {
        TargetOutcome::Forbidden { message } => Err(message),
        TargetOutcome::Applied { .. }
        | TargetOutcome::NoAction { .. }
        | TargetOutcome::NotFound { .. }
        | TargetOutcome::Unsupported { .. }
        | TargetOutcome::Mismatch { .. } => Ok(()),
    }
}
