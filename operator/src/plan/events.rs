//! The Events a reconcile records on the lease.

use berth_api::crd::{Condition, ConditionStatus};
use berth_api::{BerthLeaseStatus, LeaseState};

use super::Facts;
use super::conditions::{HELD, TARGET_READY, token_mention};

/// A Kubernetes Event to record on the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &str, message: impl Into<String>) -> Self {
        Self { warning: false, reason: reason.to_owned(), message: message.into() }
    }

    pub fn warning(reason: &str, message: impl Into<String>) -> Self {
        Self { warning: true, reason: reason.to_owned(), message: message.into() }
    }
}

fn condition<'a>(status: &'a BerthLeaseStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

fn changed(before: Option<&Condition>, after: &Condition) -> bool {
    before.is_none_or(|b| (b.status, &b.reason, &b.message) != (after.status, &after.reason, &after.message))
}

/// The Events that the move from `before` to `after` calls for:
/// - `Acquired` when the lease becomes held, and while it stays held when a
///   grant happened since the last `Held` condition (the last fencing token
///   issued is new to it: a takeover, or another at-least-once holder);
/// - `Released` or `Expired` when it stops being held;
/// - a warning named by its reason when `TargetReady` turns False.
///
/// # Caveats
/// A holder leaving a lease that others still hold records no `Released`;
/// the operator's own expiry of one is recorded by [`partial_expiry_note`].
pub fn transition_notes(before: &BerthLeaseStatus, after: &BerthLeaseStatus) -> Vec<Note> {
    let mut notes = Vec::new();
    let old = condition(before, HELD);
    if let Some(held) = condition(after, HELD)
        && changed(old, held)
    {
        let was_held = old.filter(|c| c.status == ConditionStatus::True);
        match held.status {
            ConditionStatus::True => {
                if was_held.is_none_or(|c| !c.message.contains(&token_mention(after.fencing_token))) {
                    notes.push(Note::normal("Acquired", held.message.clone()));
                }
            }
            ConditionStatus::False | ConditionStatus::Unknown => {
                if held.reason != "NotHeld" {
                    notes.push(Note::normal(&held.reason, held.message.clone()));
                }
            }
        }
    }
    if let Some(ready) = condition(after, TARGET_READY)
        && ready.status == ConditionStatus::False
        && changed(condition(before, TARGET_READY), ready)
    {
        notes.push(Note::warning(&ready.reason, ready.message.clone()));
    }
    notes
}

/// An `Expired` Event for holders the operator dropped from a lease that
/// others still hold (when none remain, [`transition_notes`] records it).
pub fn partial_expiry_note(facts: &Facts) -> Option<Note> {
    if facts.expired.is_empty() || facts.status.state != LeaseState::Held {
        return None;
    }
    let dropped: Vec<String> = facts
        .expired
        .iter()
        .map(|h| {
            format!(
                "{} {} expired at {}",
                h.identity,
                token_mention(h.fencing_token),
                berth_api::time::format(&h.expires_at)
            )
        })
        .collect();
    Some(Note::normal("Expired", format!("{}; still held", dropped.join(", "))))
}
