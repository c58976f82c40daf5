//! The finalizer that makes deleting a lease apply `releaseAction` first.

/// The finalizer's name.
pub const FINALIZER: &str = "berth.skaphos.io/release-target";

/// What the finalizer step does, from three facts about the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalizerStep {
    /// Being deleted with our finalizer: apply `releaseAction`, then remove it.
    Cleanup,
    /// Being deleted and not ours to hold: nothing to do.
    Gone,
    /// A target is set and the finalizer is missing.
    Add,
    /// No target any more, but the finalizer is still there.
    Remove,
    /// Nothing to change.
    Keep,
}

impl FinalizerStep {
    pub fn for_lease(deleting: bool, has_target: bool, has_finalizer: bool) -> Self {
        match (deleting, has_target, has_finalizer) {
            (true, _, true) => FinalizerStep::Cleanup,
            (true, _, false) => FinalizerStep::Gone,
            (false, true, false) => FinalizerStep::Add,
            (false, false, true) => FinalizerStep::Remove,
            (false, true, true) | (false, false, false) => FinalizerStep::Keep,
        }
    }
}
