//! Leader election on a `coordination.k8s.io/v1` Lease, with conditional writes.
//!
//! A small implementation of client-go's algorithm. Every write is a
//! `replace` guarded by the Lease's `resourceVersion`, so two candidates can
//! never both win a round. A candidate takes over only when it has seen the
//! Lease's record unchanged for `leaseDurationSeconds` on its own monotonic
//! clock, so clock skew between replicas does not matter (client-go does the
//! same). `kube-lease-manager` 0.13 builds against kube 5, but it judges
//! expiry as the holder's `renewTime` plus the duration against the local
//! wall clock, which a skewed clock turns into two leaders; hence this module.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;

use crate::FIELD_MANAGER;
use crate::error::{Error, Result};

/// How long a leader's claim lasts, how long it keeps trying to renew, and how often candidates try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// What a candidate does next with the Lease it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or its holder stopped renewing: take it over.
    TakeOver,
    /// Someone else holds it.
    Wait,
}

impl Step {
    /// Decides from the Lease's spec and how long its record has been seen unchanged.
    pub fn decide(spec: Option<&LeaseSpec>, me: &str, unchanged_for: Duration, default_duration: Duration) -> Step {
        let Some(spec) = spec else { return Step::Create };
        match spec.holder_identity.as_deref() {
            Some(holder) if holder == me => Step::Renew,
            None | Some("") => Step::TakeOver,
            Some(_) => {
                let duration = spec
                    .lease_duration_seconds
                    .map(|s| Duration::from_secs(s.max(1) as u64))
                    .unwrap_or(default_duration);
                if unchanged_for >= duration { Step::TakeOver } else { Step::Wait }
            }
        }
    }
}

/// The Lease record last seen, and since when (on this replica's clock).
struct Observation {
    record: Option<(Option<String>, Option<MicroTime>)>,
    since: Instant,
}

/// One candidate for leadership.
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
}

impl LeaderElection {
    pub fn new(api: Api<Lease>, name: String, identity: String, timing: Timing) -> Self {
        Self { api, name, identity, timing }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this replica holds the Lease. `attempted` runs after each
    /// round trip that reached kube-apiserver (for readiness).
    ///
    /// # Caveats
    /// It never gives up: race it against the shutdown signal.
    pub async fn acquire(&self, attempted: impl Fn()) {
        let mut seen = Observation { record: None, since: Instant::now() };
        loop {
            match self.try_acquire_or_renew(&mut seen).await {
                Ok(true) => {
                    attempted();
                    tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                    return;
                }
                Ok(false) => attempted(),
                Err(error) => tracing::warn!(%error, "leader election round failed"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews the Lease every retry period for as long as it can.
    ///
    /// # Guarantees
    /// Returns only when leadership is lost: another identity holds the Lease,
    /// or no renew succeeded within the renew deadline. The caller must stop acting.
    pub async fn keep(&self) -> Error {
        let mut seen = Observation { record: None, since: Instant::now() };
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            match self.try_acquire_or_renew(&mut seen).await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => break,
                Err(error) => tracing::warn!(%error, "renewing the leader Lease failed"),
            }
            if renewed.elapsed() > self.timing.renew_deadline {
                break;
            }
        }
        Error::LeadershipLost { lease: self.name.clone() }
    }

    /// Gives the Lease up so that a standby takes over at once (on graceful shutdown).
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else { return };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self.api.replace(&self.name, &post_params(), &lease).await {
            Ok(_) => tracing::info!(lease = %self.name, "released leadership"),
            Err(error) => tracing::warn!(%error, "releasing the leader Lease failed"),
        }
    }

    /// One round: `Ok(true)` when this replica holds the Lease afterwards.
    async fn try_acquire_or_renew(&self, seen: &mut Observation) -> Result<bool> {
        let error = |source| Error::LeaderElection { lease: self.name.clone(), source };
        let current = self.api.get_opt(&self.name).await.map_err(error)?;
        let spec = current.as_ref().map(|l| l.spec.clone().unwrap_or_default());
        let record = spec.as_ref().map(|s| (s.holder_identity.clone(), s.renew_time.clone()));
        if record != seen.record {
            seen.record = record;
            seen.since = Instant::now();
        }
        let now = MicroTime(Timestamp::now());
        let duration_seconds = i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX).max(1);
        let written =
            match Step::decide(spec.as_ref(), &self.identity, seen.since.elapsed(), self.timing.lease_duration) {
                Step::Wait => return Ok(false),
                Step::Create => {
                    let lease = Lease {
                        metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                        spec: Some(LeaseSpec {
                            holder_identity: Some(self.identity.clone()),
                            lease_duration_seconds: Some(duration_seconds),
                            acquire_time: Some(now.clone()),
                            renew_time: Some(now),
                            lease_transitions: Some(0),
                            ..Default::default()
                        }),
                    };
                    self.api.create(&post_params(), &lease).await
                }
                Step::Renew | Step::TakeOver => {
                    let Some(mut lease) = current else { return Ok(false) };
                    let spec = lease.spec.get_or_insert_with(Default::default);
                    if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                        spec.holder_identity = Some(self.identity.clone());
                        spec.acquire_time = Some(now.clone());
                        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    }
                    spec.lease_duration_seconds = Some(duration_seconds);
                    spec.renew_time = Some(now);
                    self.api.replace(&self.name, &post_params(), &lease).await
                }
            };
        match written {
            Ok(_) => Ok(true),
            // Someone else wrote first (409) or created it first: not ours this round.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(error(source)),
        }
    }
}

fn post_params() -> PostParams {
    PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn held_by(holder: Option<&str>, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec { holder_identity: holder.map(str::to_owned), lease_duration_seconds: seconds, ..Default::default() }
    }

    #[test]
    fn missing_lease_is_created() {
        assert_eq!(Step::decide(None, "me", Duration::ZERO, D), Step::Create);
    }

    #[test]
    fn own_lease_is_renewed() {
        assert_eq!(Step::decide(Some(&held_by(Some("me"), Some(15))), "me", Duration::from_secs(99), D), Step::Renew);
    }

    #[test]
    fn released_lease_is_taken_over_at_once() {
        assert_eq!(Step::decide(Some(&held_by(None, Some(1))), "me", Duration::ZERO, D), Step::TakeOver);
        assert_eq!(Step::decide(Some(&held_by(Some(""), Some(1))), "me", Duration::ZERO, D), Step::TakeOver);
    }

    #[test]
    fn other_holder_is_waited_for_until_its_record_is_stale_for_a_lease_duration() {
        let other = held_by(Some("other"), Some(4));
        assert_eq!(Step::decide(Some(&other), "me", Duration::from_millis(3_999), D), Step::Wait);
        assert_eq!(Step::decide(Some(&other), "me", Duration::from_secs(4), D), Step::TakeOver);
        let unspecified = held_by(Some("other"), None);
        assert_eq!(Step::decide(Some(&unspecified), "me", Duration::from_secs(14), D), Step::Wait);
    }
}
