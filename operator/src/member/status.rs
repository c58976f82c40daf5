//! The local status of a member lease, computed from the member state and the
//! global lease as last seen. Pure: the driver writes what this returns.

use berth_api::crd::{ConditionStatus, Holder};
use berth_api::{BerthLeaseStatus, LeaseState};
use chrono::{DateTime, Utc};

use crate::plan::{HELD, set_condition};

/// The condition that says whether the Berth apiserver answers.
pub const COORDINATION_REACHABLE: &str = "CoordinationReachable";

/// The global lease as this cluster last saw it: its holders and its token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirror {
    pub holders: Vec<Holder>,
    pub fencing_token: Option<i32>,
    pub transitions: Option<i64>,
}

/// What the driver knows besides the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts<'a> {
    pub cluster_id: &'a str,
    pub state: LeaseState,
    pub mirror: &'a Mirror,
    /// `None` when the last call answered; else why it did not.
    pub unreachable: Option<&'a str>,
    pub generation: Option<i64>,
}

/// The status to hold, from `previous` (whose `target`, `TargetReady` and
/// token are kept unless the facts say otherwise).
///
/// # Guarantees
/// - `fencingToken` never decreases.
/// - `holders` is the global holders as last seen, except in `unknown` and
///   `fenced`, where this cluster cannot vouch for anything and shows none.
/// - Only changes of state move `lastTransitionTime`; conditions move theirs
///   only when their status changes.
pub fn member_status(previous: &BerthLeaseStatus, facts: &Facts, now: DateTime<Utc>) -> BerthLeaseStatus {
    let mut status = previous.clone();
    if status.state != facts.state {
        status.state = facts.state;
        status.last_transition_time = Some(now);
    }
    status.holders = match facts.state {
        LeaseState::Unknown | LeaseState::Fenced => Vec::new(),
        _ => facts.mirror.holders.clone(),
    };
    if let Some(token) = facts.mirror.fencing_token {
        status.fencing_token = status.fencing_token.max(token);
    }
    if let Some(transitions) = facts.mirror.transitions {
        status.transitions = transitions;
    }
    status.observed_generation = facts.generation;
    let (held, reason, message) = held_condition(facts);
    set_condition(&mut status.conditions, HELD, held, reason, &message, facts.generation, now);
    let (reachable, reason, message) = match facts.unreachable {
        None => (ConditionStatus::True, "Answered", "the Berth apiserver answered the last call".to_owned()),
        Some(error) => (ConditionStatus::False, "Unreachable", error.to_owned()),
    };
    set_condition(&mut status.conditions, COORDINATION_REACHABLE, reachable, reason, &message, facts.generation, now);
    status
}

fn held_condition(facts: &Facts) -> (ConditionStatus, &'static str, String) {
    let id = facts.cluster_id;
    let others = || {
        let names: Vec<&str> = facts.mirror.holders.iter().map(|h| h.identity.as_str()).collect();
        if names.is_empty() { "another holder".to_owned() } else { names.join(", ") }
    };
    match facts.state {
        LeaseState::Held => (ConditionStatus::True, "Held", format!("cluster {id} holds the global lease")),
        LeaseState::AtRisk => {
            (ConditionStatus::True, "AtRisk", format!("cluster {id} holds the global lease, but its last renew failed"))
        }
        LeaseState::Standby => (ConditionStatus::False, "Standby", format!("the global lease is held by {}", others())),
        LeaseState::Fenced => (
            ConditionStatus::False,
            "Fenced",
            format!("cluster {id} could not confirm its hold before the safe deadline"),
        ),
        LeaseState::Unknown | LeaseState::Available | LeaseState::Released | LeaseState::Expired => {
            (ConditionStatus::Unknown, "Unconfirmed", "no answer from the Berth apiserver yet".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, second).unwrap()
    }

    fn holder(identity: &str, token: i32) -> Holder {
        Holder {
            identity: identity.into(),
            fencing_token: token,
            acquired_at: at(0),
            renewed_at: at(0),
            expires_at: at(30),
        }
    }

    fn facts<'a>(state: LeaseState, mirror: &'a Mirror, unreachable: Option<&'a str>) -> Facts<'a> {
        Facts { cluster_id: "east", state, mirror, unreachable, generation: Some(2) }
    }

    fn condition<'a>(status: &'a BerthLeaseStatus, type_: &str) -> &'a berth_api::crd::Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn held_shows_this_cluster_and_the_global_token() {
        let mirror = Mirror { holders: vec![holder("east", 7)], fencing_token: Some(7), transitions: Some(3) };
        let status = member_status(&BerthLeaseStatus::default(), &facts(LeaseState::Held, &mirror, None), at(1));
        assert_eq!(status.state, LeaseState::Held);
        assert_eq!((status.holders[0].identity.as_str(), status.fencing_token), ("east", 7));
        assert_eq!(status.last_transition_time, Some(at(1)));
        assert_eq!(condition(&status, HELD).status, ConditionStatus::True);
        assert_eq!(condition(&status, COORDINATION_REACHABLE).status, ConditionStatus::True);
    }

    #[test]
    fn standby_names_the_other_holder() {
        let mirror = Mirror { holders: vec![holder("west", 9)], fencing_token: Some(9), transitions: None };
        let status = member_status(&BerthLeaseStatus::default(), &facts(LeaseState::Standby, &mirror, None), at(1));
        assert_eq!(status.holders[0].identity, "west");
        assert_eq!(condition(&status, HELD).message, "the global lease is held by west");
    }

    #[test]
    fn fenced_shows_no_holder_keeps_the_token_and_reports_unreachable() {
        let mirror = Mirror { holders: vec![holder("east", 7)], fencing_token: Some(7), transitions: None };
        let held = member_status(&BerthLeaseStatus::default(), &facts(LeaseState::Held, &mirror, None), at(1));
        let stale = Mirror { holders: vec![], fencing_token: Some(3), transitions: None };
        let fenced = member_status(&held, &facts(LeaseState::Fenced, &stale, Some("connection refused")), at(9));
        assert!(fenced.holders.is_empty());
        assert_eq!(fenced.fencing_token, 7, "the token never goes down");
        assert_eq!(fenced.last_transition_time, Some(at(9)));
        let reachable = condition(&fenced, COORDINATION_REACHABLE);
        assert_eq!((reachable.status, reachable.message.as_str()), (ConditionStatus::False, "connection refused"));
    }

    #[test]
    fn an_unchanged_state_writes_the_same_status() {
        let mirror = Mirror { holders: vec![holder("east", 7)], fencing_token: Some(7), transitions: None };
        let first = member_status(&BerthLeaseStatus::default(), &facts(LeaseState::Held, &mirror, None), at(1));
        let again = member_status(&first, &facts(LeaseState::Held, &mirror, None), at(5));
        assert_eq!(first, again);
    }
}
