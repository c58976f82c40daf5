//! What a reconcile records as Events on the lease: typed notes, one
//! fact each. They are computed from typed status (holders, fencing tokens,
//! states), never from the text of a condition, so rewording a message
//! cannot change which Events fire.

use std::collections::BTreeMap;

use berth_api::crd::{AppliedAction, ConditionStatus};
use berth_api::rules::{Refusal, is_held};
use berth_api::{BerthLeaseStatus, Holder, LeaseState};
use chrono::{DateTime, Utc};

use super::conditions::{HELD, condition};
use super::target::{Setting, TargetOutcome, action_field};

/// One fact the operator records as an Event on the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A grant not recorded before: its token is above `status.observedFencingToken`.
    Acquired { holder: String, fencing_token: i32 },
    /// The operator dropped this holder at its `expiresAt`.
    Expired { holder: String, fencing_token: i32, expires_at: DateTime<Utc>, still_held: bool },
    /// The lease stopped being held because its holder released it.
    Released,
    /// The lease stopped being held by an expiry the operator did not write
    /// (the apiserver drops expired holders in its own writes).
    ExpiredElsewhere { expired_at: Option<DateTime<Utc>> },
    /// The operator wrote `setting` on the target, in the phase of the lease
    /// whose last grant is `fencing_token`.
    TargetWritten { target: String, applied: AppliedAction, setting: Setting, fencing_token: i32 },
    /// The last pod of the released target is gone, `after` its releaseAction was written.
    TargetStopped { target: String, after: chrono::Duration },
    /// A CronJob resumed after a long suspension may not be scheduled again (kubernetes#42649).
    CronJobMayNotSchedule { target: String, warning: String },
    /// The declared holder was not granted the lease.
    DeclaredHolderRefused { holder: String, refusal: Refusal, current: Option<String> },
    /// The target does not carry the action that applies (`TargetReady` turned False).
    TargetNotReady { reason: &'static str, message: String },
    /// Member mode: this cluster holds the global lease with `fencing_token`.
    ClusterHolds { cluster: String, fencing_token: i32 },
    /// Member mode: a renew of the global lease failed; it is retried before the safe deadline.
    RenewFailed,
    /// Member mode: another holder has the global lease now.
    Lost { holder: String },
    /// Member mode: `releaseAction` was applied, for the reason given.
    Fenced { why: String },
}

impl Note {
    /// The Event's `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Note::Acquired { .. } => "Acquired",
            Note::Expired { .. } | Note::ExpiredElsewhere { .. } => "Expired",
            Note::Released => "Released",
            Note::TargetWritten { setting, .. } => setting.event_reason(),
            Note::TargetStopped { .. } => "TargetStopped",
            Note::CronJobMayNotSchedule { .. } => "CronJobMayNotSchedule",
            Note::DeclaredHolderRefused { .. } => "DeclaredHolderRefused",
            Note::TargetNotReady { reason, .. } => reason,
            Note::ClusterHolds { .. } => "Acquired",
            Note::RenewFailed => "RenewFailed",
            Note::Lost { .. } => "Lost",
            Note::Fenced { .. } => "Fenced",
        }
    }

    /// The Event's `action`: what the operator was doing.
    pub fn action(&self) -> &'static str {
        match self {
            Note::Acquired { .. } | Note::DeclaredHolderRefused { .. } | Note::ClusterHolds { .. } => "Acquire",
            Note::RenewFailed => "Renew",
            Note::Lost { .. } | Note::Fenced { .. } => "Fence",
            Note::Released => "Release",
            Note::Expired { .. } | Note::ExpiredElsewhere { .. } => "Expire",
            Note::TargetWritten { .. }
            | Note::TargetStopped { .. }
            | Note::CronJobMayNotSchedule { .. }
            | Note::TargetNotReady { .. } => "ApplyTarget",
        }
    }

    /// Whether the Event is a `Warning` (else `Normal`).
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            Note::CronJobMayNotSchedule { .. }
                | Note::DeclaredHolderRefused { .. }
                | Note::TargetNotReady { .. }
                | Note::RenewFailed
                | Note::Lost { .. }
                | Note::Fenced { .. }
        )
    }

    /// The Event's `note`: it names the holder and token of the fact, so two
    /// facts never read the same.
    pub fn note(&self) -> String {
        match self {
            Note::Acquired { holder, fencing_token } => {
                format!("granted to {holder} with fencing token {fencing_token}")
            }
            Note::Expired { holder, fencing_token, expires_at, still_held } => {
                let rest = if *still_held { "; others still hold the lease" } else { "" };
                format!(
                    "{holder} (fencing token {fencing_token}) expired at {} without renewing{rest}",
                    berth_api::time::format(expires_at)
                )
            }
            Note::Released => "released by its holder".to_owned(),
            Note::ExpiredElsewhere { expired_at } => {
                let when = expired_at.map(|t| berth_api::time::format(&t)).unwrap_or_else(|| "an unknown time".into());
                format!("the last holder expired at {when} without renewing")
            }
            Note::TargetWritten { target, applied, setting, fencing_token } => {
                let tenure = match applied {
                    AppliedAction::Acquire => "for",
                    AppliedAction::Release => "after",
                };
                format!(
                    "{target}: {} ({} {tenure} fencing token {fencing_token})",
                    setting.describe(),
                    action_field(*applied)
                )
            }
            Note::TargetStopped { target, after } => format!(
                "{target}: no pod runs any more, {:.1} s after releaseAction",
                after.num_milliseconds().max(0) as f64 / 1000.0
            ),
            Note::CronJobMayNotSchedule { target, warning } => format!("{target} {warning}"),
            Note::DeclaredHolderRefused { holder, refusal, current } => {
                let by = current.as_ref().map(|h| format!(", held by {h}")).unwrap_or_default();
                format!("could not acquire for declared holder {holder}: {refusal:?}{by}")
            }
            Note::TargetNotReady { message, .. } => message.clone(),
            Note::ClusterHolds { cluster, fencing_token } => {
                format!("cluster {cluster} holds the global lease (fencing token {fencing_token})")
            }
            Note::RenewFailed => "a renew of the global lease failed; retrying before the safe deadline".to_owned(),
            Note::Lost { holder } => format!("the global lease is now held by {holder}"),
            Note::Fenced { why } => format!("releaseAction applied: {why}"),
        }
    }

    /// The warning for a target outcome that leaves `TargetReady` False.
    pub fn target_not_ready(outcome: &TargetOutcome) -> Option<Self> {
        let (status, reason, message) = outcome.condition();
        (status == ConditionStatus::False).then_some(Note::TargetNotReady { reason, message })
    }
}

/// The Events of the move from `before` (as stored) to `after` (as about to
/// be written), given the holders the operator `expired` in this reconcile
/// and the grants the lease watch showed since (`watched`, from the
/// controller's grant journal):
/// - `Acquired` for every grant whose token is above what `before` recorded in
///   `observedFencingToken`, with its own holder and token, in token order
///   (including a grant that expired before the operator saw it, and one that
///   was made and released between two reconciles);
/// - `Released` when the lease stops being held by a release, and `Expired`
///   when it stops by an expiry that is not the operator's own (those are
///   [`expiry_notes`]).
///
/// # Caveats
/// A grant made and ended while the operator was not watching is not seen,
/// and a holder leaving a lease that others still hold records no `Released`.
pub fn change_notes(
    before: &BerthLeaseStatus,
    after: &BerthLeaseStatus,
    expired: &[Holder],
    watched: &[Holder],
    now: DateTime<Utc>,
) -> Vec<Note> {
    let recorded = before.observed_fencing_token.unwrap_or(0);
    // One Event per token, whichever source showed the grant.
    let grants: BTreeMap<i32, &str> = after
        .holders
        .iter()
        .filter(|h| h.is_live(now))
        .chain(expired)
        .chain(watched)
        .filter(|h| h.fencing_token > recorded)
        .map(|h| (h.fencing_token, h.identity.as_str()))
        .collect();
    let mut out: Vec<Note> = grants
        .into_iter()
        .map(|(fencing_token, holder)| Note::Acquired { holder: holder.to_owned(), fencing_token })
        .collect();
    let was_held = condition(before, HELD).is_some_and(|c| c.status == ConditionStatus::True);
    if was_held && !is_held(after, now) {
        match after.state {
            LeaseState::Released => out.push(Note::Released),
            LeaseState::Expired if expired.is_empty() => {
                out.push(Note::ExpiredElsewhere { expired_at: after.expired_at })
            }
            LeaseState::Expired | LeaseState::Available | LeaseState::Held => {}
            // Member-mode states: their Events come from member/claim.rs.
            LeaseState::Unknown | LeaseState::Standby | LeaseState::AtRisk | LeaseState::Fenced => {}
        }
    }
    out
}

/// One `Expired` Event per holder the operator dropped, with its own token.
pub fn expiry_notes(expired: &[Holder], after: &BerthLeaseStatus, now: DateTime<Utc>) -> Vec<Note> {
    let still_held = is_held(after, now);
    expired
        .iter()
        .map(|h| Note::Expired {
            holder: h.identity.clone(),
            fencing_token: h.fencing_token,
            expires_at: h.expires_at,
            still_held,
        })
        .collect()
}
