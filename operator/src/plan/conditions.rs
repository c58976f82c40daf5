//! The `Held` and `TargetReady` conditions, set the Kubernetes way.

use berth_api::crd::{Condition, ConditionStatus};
use berth_api::{BerthLeaseStatus, Holder, LeaseState};
use chrono::{DateTime, Utc};

/// Condition type: whether the lease has a live holder.
pub const HELD: &str = "Held";
/// Condition type: whether the target reflects the action that applies now.
pub const TARGET_READY: &str = "TargetReady";

/// The `Held` condition for `status` at `now`: (status, reason, message).
pub fn held_condition(status: &BerthLeaseStatus, now: DateTime<Utc>) -> (ConditionStatus, &'static str, String) {
    let live: Vec<&Holder> = status.holders.iter().filter(|h| h.is_live(now)).collect();
    if !live.is_empty() {
        let names: Vec<String> =
            live.iter().map(|h| format!("{} {}", h.identity, token_mention(h.fencing_token))).collect();
        return (ConditionStatus::True, "Acquired", format!("held by {}", names.join(", ")));
    }
    match status.state {
        LeaseState::Released => (ConditionStatus::False, "Released", "released by its holder".to_owned()),
        LeaseState::Expired => {
            let when =
                status.expired_at.map(|t| berth_api::time::format(&t)).unwrap_or_else(|| "an unknown time".into());
            (ConditionStatus::False, "Expired", format!("the last holder expired at {when} without renewing"))
        }
        // The member states never reach this controller: member mode runs its own.
        LeaseState::Available
        | LeaseState::Held
        | LeaseState::Unknown
        | LeaseState::Standby
        | LeaseState::AtRisk
        | LeaseState::Fenced => (ConditionStatus::False, "NotHeld", "never held".to_owned()),
    }
}

/// Sets condition `type_` the Kubernetes way: `lastTransitionTime` moves only
/// when the status changes. Returns whether status, reason or message changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> bool {
    let fresh = Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: now,
        observed_generation: generation,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let changed = existing.status != status || existing.reason != reason || existing.message != message;
            let last_transition_time = if existing.status == status { existing.last_transition_time } else { now };
            *existing = Condition { last_transition_time, ..fresh };
            changed
        }
        None => {
            conditions.push(fresh);
            true
        }
    }
}

pub(super) fn token_mention(token: i32) -> String {
    format!("(fencing token {token})")
}
