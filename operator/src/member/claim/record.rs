//! What a change of member state records as Events.

use std::time::Duration;

use berth_api::LeaseState;
use tokio::time::Instant;

use crate::member::state::{self, Decision, Knowledge};
use crate::plan::Note;

use super::{Learned, Shared};

/// At most one RenewFailed Event per lease in this period.
const RENEW_FAILED_EVERY: Duration = Duration::from_secs(60);

/// Exhaustive, so that a new state must be placed on one side.
pub(super) fn is_member_state(state: LeaseState) -> bool {
    match state {
        LeaseState::Unknown | LeaseState::Standby | LeaseState::Held | LeaseState::AtRisk | LeaseState::Fenced => true,
        LeaseState::Available | LeaseState::Released | LeaseState::Expired => false,
    }
}

/// The Events of a change from `previous` to `decision.state`.
pub(super) fn transition_notes(
    shared: &Shared,
    previous: Option<LeaseState>,
    decision: &Decision,
    known: &Learned,
    stop: Duration,
    renew_failed_at: &mut Option<Instant>,
    now: Instant,
) -> Vec<Note> {
    let id = &shared.cluster_id;
    let was_running = previous.is_some_and(state::runs);
    let mut notes = Vec::new();
    if previous == Some(decision.state) {
        return notes;
    }
    match (&known.knowledge, decision.state) {
        (Knowledge::Granted { fencing_token, .. }, LeaseState::Held | LeaseState::AtRisk) if !was_running => {
            notes.push(Note::ClusterHolds { cluster: id.clone(), fencing_token: *fencing_token });
        }
        _ => {}
    }
    match decision.state {
        LeaseState::AtRisk if renew_failed_at.is_none_or(|at| now >= at + RENEW_FAILED_EVERY) => {
            *renew_failed_at = Some(now);
            notes.push(Note::RenewFailed);
        }
        LeaseState::Standby if was_running => {
            let holder = match &known.knowledge {
                Knowledge::Refused { holder } if !holder.is_empty() => holder.clone(),
                _ => "another holder".to_owned(),
            };
            notes.push(Note::Lost { holder });
        }
        LeaseState::Fenced => {
            let why = match &known.knowledge {
                Knowledge::Lost { reason } => reason.clone(),
                Knowledge::Nothing { .. } => "no answer from the Berth apiserver since the operator started".to_owned(),
                _ if stop.is_zero() => "the safe deadline passed without a confirmed renew".to_owned(),
                _ => format!(
                    "no renew was confirmed by {} s before the safe deadline (the lease's stopSeconds), \
                     so that the workload stops before the deadline",
                    stop.as_secs()
                ),
            };
            notes.push(Note::Fenced { why });
        }
        _ => {}
    }
    notes
}
