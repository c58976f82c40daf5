//! The `Held` and `TargetReady` conditions, set the Kubernetes way.

use berth_api::crd::{Condition, ConditionStatus};
use berth_api::{BerthLeaseStatus, Holder, LeaseState};
use chrono::{DateTime, Utc};

/// Condition type: whether the lease has a live holder.
pub const HELD: &str = "Held";
/// Condition type: whether the target reflects the action that applies now.
pub const TARGET_READY: &str = "TargetReady";

/// The `Held` condition for `status` at `now`: (status, reason, message).
/// `member`: the cluster id, when a member cluster judges its own claim.
///
/// The coordination cluster judges by the live holders. A member cluster
/// judges by its member state instead: its `holders` mirror the global lease
/// as last seen and are not renewed locally, so their `expiresAt` says
/// nothing about whether this cluster still holds it.
pub fn held_condition(
    status: &BerthLeaseStatus,
    member: Option<&str>,
    now: DateTime<Utc>,
) -> (ConditionStatus, &'static str, String) {
    let named = |holders: &[&Holder]| {
        let names: Vec<String> =
            holders.iter().map(|h| format!("{} {}", h.identity, token_mention(h.fencing_token))).collect();
        names.join(", ")
    };
    let live: Vec<&Holder> = status.holders.iter().filter(|h| h.is_live(now)).collect();
    match (status.state, member) {
        (LeaseState::Held, Some(id)) => (ConditionStatus::True, "Held", format!("cluster {id} holds the global lease")),
        (LeaseState::AtRisk, Some(id)) => {
            (ConditionStatus::True, "AtRisk", format!("cluster {id} holds the global lease, but its last renew failed"))
        }
        (LeaseState::Fenced, Some(id)) => (
            ConditionStatus::False,
            "Fenced",
            format!("cluster {id} could not confirm its hold before the safe deadline"),
        ),
        (LeaseState::Standby, _) => {
            let holders: Vec<&Holder> = status.holders.iter().collect();
            let by = if holders.is_empty() { "another holder".to_owned() } else { named(&holders) };
            (ConditionStatus::False, "Standby", format!("the global lease is held by {by}"))
        }
        (LeaseState::Unknown, _) => {
            (ConditionStatus::Unknown, "Unconfirmed", "no answer from the Berth apiserver yet".to_owned())
        }
        _ if !live.is_empty() => (ConditionStatus::True, "Acquired", format!("held by {}", named(&live))),
        (LeaseState::Released, _) => (ConditionStatus::False, "Released", "released by its holder".to_owned()),
        (LeaseState::Expired, _) => {
            let when =
                status.expired_at.map(|t| berth_api::time::format(&t)).unwrap_or_else(|| "an unknown time".into());
            (ConditionStatus::False, "Expired", format!("the last holder expired at {when} without renewing"))
        }
        (LeaseState::Available | LeaseState::Held | LeaseState::AtRisk | LeaseState::Fenced, _) => {
            (ConditionStatus::False, "NotHeld", "never held".to_owned())
        }
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

fn token_mention(token: i32) -> String {
    format!("(fencing token {token})")
}

/// Condition `type_` of `status`, if set.
pub(super) fn condition<'a>(status: &'a BerthLeaseStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}
