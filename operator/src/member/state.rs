//! The member state machine as one pure decision: what this cluster knows
//! about its claim on the global lease, and the clock, give the state, what
//! the target gets, and when to decide again. No I/O and no clock of its own:
//! the driver (`claim.rs`) passes `now` and carries the decision out.

use std::time::Duration;

use berth_api::LeaseState;
use berth_api::crd::AppliedAction;
use tokio::time::Instant;

/// The last conclusive thing this cluster learned about its claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Knowledge {
    /// No answer from the Berth apiserver since the operator started
    /// tracking the lease at `since`.
    Nothing { since: Instant },
    /// Another holder has the global lease (`holder` may be empty when the
    /// server named none, e.g. a lock delay).
    Refused { holder: String },
    /// This cluster holds it with `fencing_token` until the local safe
    /// `deadline` (the keeper's: sent + TTL − margin). `at_risk`: the last
    /// renew failed.
    Granted { fencing_token: i32, deadline: Instant, at_risk: bool },
    /// A tenure ended without another holder being named: the safe deadline
    /// passed, or a renew was rejected (a revoked key, a deleted lease).
    Lost { reason: String },
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub state: LeaseState,
    /// The action the target must carry; `None`: leave it as it is.
    pub action: Option<AppliedAction>,
    /// When to decide again even if nothing is learned (a deadline).
    pub wake_at: Option<Instant>,
    /// With `releaseAction`: the instant by which the target's processes
    /// must have stopped (the safe deadline of the tenure being fenced).
    /// `None`: as soon as possible.
    pub stop_by: Option<Instant>,
}

/// Decides the member state at `now`, for a workload that takes up to `stop`
/// to stop (the lease's stop budget).
///
/// # Guarantees
/// - `acquireAction` only while `now` is before the grant's deadline less
///   `stop`: a grant learned after that never resumes the target.
/// - The fence of a grant comes at its deadline less `stop`, and names the
///   deadline as the instant by which the processes must have stopped.
/// - With nothing known, the target is left alone until `since + grace`, then
///   released (`fenced`): an operator that restarts while its cluster holds
///   the lease resumes without a blip, and one that cannot confirm stops the
///   workload.
/// - Every granted state wakes at its deadline, so `fenced` (and
///   `releaseAction`) comes from that timer, not a later event.
pub fn decide(knowledge: &Knowledge, grace: Duration, stop: Duration, now: Instant) -> Decision {
    match knowledge {
        Knowledge::Nothing { since } => {
            let until = *since + grace;
            if now < until {
                Decision { state: LeaseState::Unknown, action: None, wake_at: Some(until), stop_by: None }
            } else {
                release(LeaseState::Fenced, None)
            }
        }
        Knowledge::Refused { .. } => release(LeaseState::Standby, None),
        Knowledge::Granted { deadline, at_risk, .. } => {
            let fence_at = berth_client::fence_at(*deadline, stop, now);
            if now < fence_at {
                Decision {
                    state: if *at_risk { LeaseState::AtRisk } else { LeaseState::Held },
                    action: Some(AppliedAction::Acquire),
                    wake_at: Some(fence_at),
                    stop_by: None,
                }
            } else {
                release(LeaseState::Fenced, Some(*deadline).filter(|deadline| now < *deadline))
            }
        }
        Knowledge::Lost { .. } => release(LeaseState::Fenced, None),
    }
}

fn release(state: LeaseState, stop_by: Option<Instant>) -> Decision {
    Decision { state, action: Some(AppliedAction::Release), wake_at: stop_by, stop_by }
}

/// Whether `state` means this cluster runs its workload.
pub fn runs(state: LeaseState) -> bool {
    matches!(state, LeaseState::Held | LeaseState::AtRisk)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const GRACE: Duration = Duration::from_secs(3);
    const NO_BUDGET: Duration = Duration::ZERO;

    fn granted(deadline: Instant, at_risk: bool) -> Knowledge {
        Knowledge::Granted { fencing_token: 4, deadline, at_risk }
    }

    #[test]
    fn a_fresh_operator_touches_nothing_until_the_grace_ends_then_fences() {
        let start = Instant::now();
        let nothing = Knowledge::Nothing { since: start };
        let early = decide(&nothing, GRACE, NO_BUDGET, start + S(1));
        assert_eq!(
            early,
            Decision { state: LeaseState::Unknown, action: None, wake_at: Some(start + GRACE), stop_by: None }
        );
        let late = decide(&nothing, GRACE, NO_BUDGET, start + GRACE);
        assert_eq!((late.state, late.action), (LeaseState::Fenced, Some(AppliedAction::Release)));
    }

    #[test]
    fn a_confirmed_grant_applies_acquire_and_wakes_at_its_deadline() {
        let now = Instant::now();
        let decision = decide(&granted(now + S(27), false), GRACE, NO_BUDGET, now);
        assert_eq!(
            decision,
            Decision {
                state: LeaseState::Held,
                action: Some(AppliedAction::Acquire),
                wake_at: Some(now + S(27)),
                stop_by: None
            }
        );
    }

    #[test]
    fn a_failed_renew_before_the_deadline_is_at_risk_and_keeps_running() {
        let now = Instant::now();
        let decision = decide(&granted(now + S(5), true), GRACE, NO_BUDGET, now);
        assert_eq!(decision.state, LeaseState::AtRisk);
        assert_eq!(decision.action, Some(AppliedAction::Acquire));
        assert!(runs(decision.state));
    }

    #[test]
    fn the_deadline_fences_whatever_the_keeper_last_said() {
        let now = Instant::now();
        for at_risk in [false, true] {
            let decision = decide(&granted(now, at_risk), GRACE, NO_BUDGET, now);
            assert_eq!((decision.state, decision.action), (LeaseState::Fenced, Some(AppliedAction::Release)));
            assert!(!runs(decision.state));
        }
    }

    #[test]
    fn a_grant_learned_after_its_deadline_never_resumes_the_target() {
        let sent = Instant::now();
        let deadline = sent + S(27);
        // The answer arrives 40 s after it was sent (a proxy delay longer than the TTL).
        let decision = decide(&granted(deadline, false), GRACE, NO_BUDGET, sent + S(40));
        assert_eq!(decision.action, Some(AppliedAction::Release));
    }

    #[test]
    fn another_holder_means_standby_with_release() {
        let decision = decide(&Knowledge::Refused { holder: "west".into() }, GRACE, NO_BUDGET, Instant::now());
        assert_eq!(
            decision,
            Decision { state: LeaseState::Standby, action: Some(AppliedAction::Release), wake_at: None, stop_by: None }
        );
    }

    #[test]
    fn a_lost_tenure_is_fenced() {
        let decision = decide(&Knowledge::Lost { reason: "revoked".into() }, GRACE, NO_BUDGET, Instant::now());
        assert_eq!((decision.state, decision.action), (LeaseState::Fenced, Some(AppliedAction::Release)));
    }

    #[test]
    fn only_held_and_at_risk_run_the_workload() {
        for state in [LeaseState::Unknown, LeaseState::Standby, LeaseState::Fenced] {
            assert!(!runs(state));
        }
    }

    #[test]
    fn a_stop_budget_fences_that_much_before_the_deadline_and_names_the_deadline() {
        let now = Instant::now();
        let deadline = now + S(27);
        let holding = decide(&granted(deadline, false), GRACE, S(10), now);
        assert_eq!((holding.state, holding.wake_at), (LeaseState::Held, Some(now + S(17))));
        let fenced = decide(&granted(deadline, false), GRACE, S(10), now + S(17));
        assert_eq!(
            fenced,
            Decision {
                state: LeaseState::Fenced,
                action: Some(AppliedAction::Release),
                wake_at: Some(deadline),
                stop_by: Some(deadline)
            }
        );
        let past = decide(&granted(deadline, false), GRACE, S(10), now + S(27));
        assert_eq!((past.state, past.stop_by), (LeaseState::Fenced, None), "past the deadline: stop at once");
    }

    #[test]
    fn a_budget_longer_than_the_tenure_left_fences_at_once() {
        let now = Instant::now();
        let decision = decide(&granted(now + S(3), false), GRACE, S(10), now);
        assert_eq!((decision.state, decision.stop_by), (LeaseState::Fenced, Some(now + S(3))));
    }
}
