//! The keeper's decisions as a pure step function: state + event + now ->
//! new state + actions. No I/O and no clock: the driver (`task.rs`) and the
//! shared test vectors feed it. `docs/keeper.md` is the table it implements.

use std::time::Duration;

use tokio::time::Instant;

use super::{KeeperState, Loss, RenewResult, Schedule};
use crate::Error;

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The time the machine asked to be woken at ([`Machine::wake_at`]) came.
    Wake,
    /// The renew in flight was answered.
    Answer(Answer),
    /// The watch saw a change that no longer shows this grant (a takeover),
    /// or ended because the lease was deleted.
    LeaseChanged,
    /// The keeper was released or dropped.
    Release,
}

/// A renew's answer, as far as the keeper's decisions go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 200 `acquired:true`, carrying this token.
    Renewed { fencing_token: i32 },
    /// 200 `acquired:false`: the lease is someone else's (or nobody's).
    Refused { holder: String },
    /// An answer no retry can fix: 400, 403, 404, 409, 413.
    Rejected(String),
    /// A failure worth retrying until the deadline: 401 (credentials are
    /// rotated), any other status (5xx, 429, …), a transport error, an
    /// answer that cannot be decoded. `shed`: the server answered 503.
    Failed { retry_after: Option<Duration>, shed: bool, message: String },
}

impl Answer {
    pub(crate) fn from_result(result: &Result<crate::Grant, Error>) -> Self {
        match result {
            Ok(grant) => Answer::Renewed { fencing_token: grant.fencing_token },
            Err(Error::NotAcquired { current }) => Answer::Refused { holder: current.holder.clone() },
            Err(e @ (Error::Conflict(_) | Error::Forbidden(_) | Error::NotFound(_) | Error::InvalidRequest(_))) => {
                Answer::Rejected(e.to_string())
            }
            Err(e @ (Error::Unauthorized(_) | Error::Server { .. } | Error::Transport { .. } | Error::Decode(_))) => {
                let shed = matches!(e, Error::Server { status: 503, .. });
                Answer::Failed { retry_after: e.retry_after(), shed, message: e.to_string() }
            }
            // A configuration error cannot come from a renew; were it to, no
            // retry would fix it.
            Err(e @ Error::Config(_)) => Answer::Rejected(e.to_string()),
        }
    }

    /// How the renew ended, for its [`RenewReport`](super::RenewReport).
    pub(crate) fn result(&self) -> RenewResult {
        match self {
            Answer::Renewed { .. } => RenewResult::Renewed,
            Answer::Refused { .. } => RenewResult::Refused,
            Answer::Rejected(_) => RenewResult::Rejected,
            Answer::Failed { shed: true, .. } => RenewResult::Shed,
            Answer::Failed { shed: false, .. } => RenewResult::Error,
        }
    }
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send a renew now. The driver abandons it when [`Machine::wake_at`]
    /// comes first (the bound). `fresh_connection`: the last renew was
    /// abandoned, so its connections are suspect; dial anew.
    Renew { bound: Duration, fresh_connection: bool },
    /// Drop the renew in flight; its answer, if any, is never read.
    Abandon,
    /// Publish this state to the keeper's watchers.
    Publish(KeeperState),
    /// Send the release.
    Release,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No renew in flight; the next is due at `next`.
    Idle { next: Instant, fresh_connection: bool },
    /// A renew sent at `sent` is in flight until `abandon_at`.
    Renewing { sent: Instant, abandon_at: Instant },
    /// Lost or released: the tenure is over, nothing more happens.
    Over,
}

/// The keeper's state of one tenure.
#[derive(Clone, Debug)]
pub(crate) struct Machine {
    schedule: Schedule,
    fencing_token: i32,
    deadline: Instant,
    at_risk: bool,
    phase: Phase,
}

impl Machine {
    /// A tenure granted with `fencing_token` by a request sent at `sent`.
    pub(crate) fn new(schedule: Schedule, fencing_token: i32, sent: Instant) -> Self {
        let phase = Phase::Idle { next: schedule.next_renew(sent), fresh_connection: false };
        Self { schedule, fencing_token, deadline: schedule.deadline(sent), at_risk: false, phase }
    }

    /// The state to publish first.
    pub(crate) fn state(&self) -> KeeperState {
        KeeperState::Held { fencing_token: self.fencing_token, deadline: self.deadline, at_risk: self.at_risk }
    }

    /// When to deliver [`Event::Wake`]; `None` once the tenure is over.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle { next, .. } => Some(next.min(self.deadline)),
            Phase::Renewing { abandon_at, .. } => Some(abandon_at.min(self.deadline)),
            Phase::Over => None,
        }
    }

    pub(crate) fn is_over(&self) -> bool {
        self.phase == Phase::Over
    }

    /// Decides what `event` at `now` means. Events after the tenure ended
    /// change nothing.
    pub(crate) fn step(&mut self, event: Event, now: Instant) -> Vec<Action> {
        // An answered renew is no longer in flight.
        let renewing = matches!(self.phase, Phase::Renewing { .. }) && !matches!(event, Event::Answer(_));
        match event {
            _ if self.phase == Phase::Over => Vec::new(),
            Event::Release => {
                let mut actions = self.end(renewing, KeeperState::Released);
                actions.push(Action::Release);
                actions
            }
            // The deadline is checked before anything else: from it on, no
            // answer, however good, makes the lease safe again.
            _ if now >= self.deadline => self.end(renewing, KeeperState::Lost(Loss::DeadlinePassed)),
            Event::Wake => match self.phase {
                Phase::Idle { next, fresh_connection } if now >= next => self.renew(now, fresh_connection),
                Phase::Renewing { abandon_at, .. } if now >= abandon_at => {
                    let next = self.schedule.retry(now, self.deadline);
                    self.phase = Phase::Idle { next, fresh_connection: true };
                    let mut actions = vec![Action::Abandon];
                    actions.extend(self.flag_at_risk());
                    actions
                }
                _ => Vec::new(),
            },
            Event::LeaseChanged => match self.phase {
                Phase::Idle { fresh_connection, .. } => self.renew(now, fresh_connection),
                // The renew in flight will tell.
                _ => Vec::new(),
            },
            Event::Answer(answer) => {
                let Phase::Renewing { sent, .. } = self.phase else {
                    return Vec::new(); // no renew in flight: nothing to answer
                };
                self.answered(answer, sent, now)
            }
        }
    }

    fn answered(&mut self, answer: Answer, sent: Instant, now: Instant) -> Vec<Action> {
        match answer {
            Answer::Renewed { fencing_token } if fencing_token != self.fencing_token => {
                self.end(false, KeeperState::Lost(Loss::TokenChanged { fencing_token }))
            }
            Answer::Renewed { .. } => {
                // `sent` is after the previous renew's send time, so this
                // deadline is later than the current one, which has not
                // passed (checked in `step`): the answer is in time.
                self.deadline = self.schedule.deadline(sent);
                self.at_risk = false;
                self.phase = Phase::Idle { next: self.schedule.next_renew(sent), fresh_connection: false };
                vec![Action::Publish(self.state())]
            }
            Answer::Refused { holder } => self.end(false, KeeperState::Lost(Loss::Refused { holder })),
            Answer::Rejected(message) => self.end(false, KeeperState::Lost(Loss::Rejected(message))),
            Answer::Failed { retry_after, .. } => {
                let next = self.schedule.retry_after(now, retry_after, self.deadline);
                self.phase = Phase::Idle { next, fresh_connection: false };
                self.flag_at_risk().into_iter().collect()
            }
        }
    }

    fn renew(&mut self, now: Instant, fresh_connection: bool) -> Vec<Action> {
        let bound = self.schedule.renew_bound(now, self.deadline);
        self.phase = Phase::Renewing { sent: now, abandon_at: now + bound };
        vec![Action::Renew { bound, fresh_connection }]
    }

    /// Marks the grant at risk; the state is published when that is news.
    fn flag_at_risk(&mut self) -> Option<Action> {
        (!std::mem::replace(&mut self.at_risk, true)).then(|| Action::Publish(self.state()))
    }

    fn end(&mut self, renewing: bool, state: KeeperState) -> Vec<Action> {
        self.phase = Phase::Over;
        let mut actions = Vec::new();
        if renewing {
            actions.push(Action::Abandon);
        }
        actions.push(Action::Publish(state));
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Grant;

    fn result_of(answer: Result<Grant, Error>) -> RenewResult {
        Answer::from_result(&answer).result()
    }

    #[test]
    fn each_answer_is_reported_by_its_result() {
        let grant = Grant { holder: "team/k".into(), fencing_token: 7, expires_at: None, acquired_at: None };
        let status = |code: u16, retry_after: Option<&str>| Err(Error::from_status(code, b"{}", None, retry_after));
        let refused = berth_api::wire::AcquireResponse { acquired: false, ..Default::default() };
        assert_eq!(result_of(Ok(grant)), RenewResult::Renewed);
        assert_eq!(result_of(Err(Error::NotAcquired { current: refused })), RenewResult::Refused);
        for code in [400, 403, 404, 409, 413] {
            assert_eq!(result_of(status(code, None)), RenewResult::Rejected, "{code}");
        }
        assert_eq!(result_of(status(503, Some("1"))), RenewResult::Shed);
        assert_eq!(result_of(status(503, None)), RenewResult::Shed);
        for code in [401, 429, 500, 502] {
            assert_eq!(result_of(status(code, None)), RenewResult::Error, "{code}");
        }
        let transport = Error::Transport { message: "connection refused".into(), source: None };
        assert_eq!(result_of(Err(transport)), RenewResult::Error);
    }
}
