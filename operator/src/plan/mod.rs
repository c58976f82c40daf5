//! The operator's pure decisions: no I/O, and time is always an argument.
//!
//! The lease rules themselves live in [`berth_api::rules`]; this module only
//! composes them (expiry, then the declared holder) and decides when to wake
//! next. What the target gets is in [`target`], the conditions in
//! [`conditions`], the Events in [`events`], the finalizer step and the
//! deletion contract in [`finalizer`], the CronJob warning in [`cronjob`],
//! and member mode's own decisions in [`member`].

mod conditions;
mod cronjob;
mod events;
mod finalizer;
pub mod member;
mod target;

use std::time::Duration;

use berth_api::rules::{Outcome, Request, decide, is_held, next_expiry};
use berth_api::{BerthLeaseSpec, BerthLeaseStatus, Holder};
use chrono::{DateTime, Utc};

pub use conditions::{HELD, TARGET_READY, held_condition, set_condition};
pub use cronjob::{MAX_MISSED_SCHEDULES, long_suspension_warning};
pub use events::{Note, change_notes, expiry_notes};
pub use finalizer::{FINALIZER, FinalizerStep, deletion_may_proceed, has_finalizer};
pub use target::{
    Setting, TargetKind, TargetOutcome, TargetPlan, action_field, coordination_grace, phase, plan_target,
    record_stopped, record_target, to_follow,
};

/// The longest the operator sleeps on a lease: a safety net, not a poll.
pub const RESYNC: Duration = Duration::from_secs(300);

/// How long one target step may take before it is given up and tried again:
/// an expiry, or a fence, waits at most this long on a hung target.
pub const TARGET_DEADLINE: Duration = Duration::from_secs(2);

/// The lease after the operator's own decision steps: in the coordination
/// cluster, expiry then the declared holder ([`lease_facts`]); in a member
/// cluster, the member state and the global lease as last seen
/// ([`member::member_facts`]), which neither expires nor grants anything here
/// (the coordination cluster does), so `expired` is empty and `declared` `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// The status to hold: rule results, `observedGeneration` and the conditions.
    pub status: BerthLeaseStatus,
    /// Holders dropped by expiry in this step.
    pub expired: Vec<Holder>,
    /// The outcome of acquiring for `spec.holderIdentity`, when this generation asked for it.
    pub declared: Option<Outcome>,
}

/// Applies the reconcile's steps 2 and 3 (docs/design.md, "The operator") with
/// the shared rules, and records the generation acted on.
///
/// # Guarantees
/// - Uses only [`decide`]: expiry is `Request::Expire`, the declared holder is
///   `Request::Acquire` with `spec.ttlSeconds`.
/// - The declared holder is acquired at most once per generation: once
///   `observedGeneration` records it, a later call does not ask again.
pub fn lease_facts(
    spec: &BerthLeaseSpec,
    status: &BerthLeaseStatus,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Facts {
    let expiry = decide(spec, status, &Request::Expire, now);
    let mut next = expiry.status.unwrap_or_else(|| status.clone());
    let expired = match expiry.outcome {
        Outcome::Expired(dropped) => dropped,
        _ => Vec::new(),
    };
    let mut declared = None;
    if let (Some(holder), Some(generation)) = (spec.holder_identity.as_deref(), generation)
        && generation > status.observed_generation.unwrap_or(0)
    {
        let decision = decide(spec, &next, &Request::Acquire { holder, ttl_seconds: spec.ttl_seconds }, now);
        if let Some(granted) = decision.status {
            next = granted;
        }
        declared = Some(decision.outcome);
    }
    if generation.is_some() {
        next.observed_generation = generation;
    }
    // The grants up to this token get their Events with this status write.
    if next.fencing_token > next.observed_fencing_token.unwrap_or(0) {
        next.observed_fencing_token = Some(next.fencing_token);
    }
    let (held, reason, message) = held_condition(&next, None, now);
    set_condition(&mut next.conditions, HELD, held, reason, &message, generation, now);
    Facts { status: next, expired, declared }
}

/// Where the target write goes relative to the status write of one reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOrder {
    /// Target first, then one status write that carries both the rule changes
    /// (expired holders, `Held`) and `status.target` with `TargetReady`. Safe
    /// whenever the hold the target follows is already on the server, or the
    /// target is being released: a failed status write then leaves the target
    /// released early, never running without a holder.
    TargetFirst,
    /// The operator's own write creates the hold (a declared holder's grant):
    /// that write goes first, so that `acquireAction` never runs on a grant that
    /// was not stored; the target and `status.target` follow.
    GrantFirst,
}

/// Decides [`WriteOrder`] from the status as read (`before`) and as the rule
/// steps left it (`after`, from [`lease_facts`]).
pub fn write_order(before: &BerthLeaseStatus, after: &BerthLeaseStatus, now: DateTime<Utc>) -> WriteOrder {
    match (is_held(before, now), is_held(after, now)) {
        (false, true) => WriteOrder::GrantFirst,
        (true, _) | (false, false) => WriteOrder::TargetFirst,
    }
}

/// How long to sleep until the next holder's `expiresAt` (plus a millisecond,
/// since a holder is live while `now < expiresAt`), at most [`RESYNC`].
pub fn requeue_after(status: &BerthLeaseStatus, now: DateTime<Utc>) -> Duration {
    match next_expiry(status).map(|at| (at - now).to_std()) {
        Some(Ok(wait)) => (wait + Duration::from_millis(1)).min(RESYNC),
        Some(Err(_)) => Duration::from_millis(1),
        None => RESYNC,
    }
}

#[cfg(test)]
mod tests;
