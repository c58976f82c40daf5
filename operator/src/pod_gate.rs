//! The scheduling gate of a lease's pods. A pod labelled
//! `berth.skaphos.io/lease: <lease>` is created with the scheduling gate
//! `berth.skaphos.io/lease` (the operator chart's MutatingAdmissionPolicy),
//! and waits, unscheduled, until this operator removes the gate. It does so
//! only while the lease [`Standing::Holds`]: in member mode, while this
//! cluster holds the global lease, up to the fence; in the coordination
//! cluster, while the lease has a live holder. When the lease
//! [`Standing::Stops`], the pods it let through are deleted, with a grace
//! period that ends by the stop deadline; whatever replaces them waits at
//! the gate again.
//!
//! The claims (member mode) and the reconciler (coordination cluster) publish
//! each lease's standing to [`Standings`]; [`run`] watches the labelled pods
//! and carries it out. A lease with no standing yet (an operator that has
//! just started and knows nothing) leaves its pods as they are.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_api::crd::{AppliedAction, LEASE_LABEL, SCHEDULING_GATE};
use berth_api::{BerthLeaseSpec, BerthLeaseStatus, LeaseKey};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::FIELD_MANAGER;
use crate::member::state::Decision;
use crate::plan;
use crate::pods::{delete, outlives, stop_grace, unfinished};

/// What a lease's pods may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// The lease is held: gated pods may start until `until` (the fence).
    Holds { until: Instant },
    /// The lease is not held: running pods stop by `by`, or with their own
    /// grace period when `None`.
    Stops { by: Option<Instant> },
}

impl Standing {
    /// In member mode: what the claim's `decision` means for the pods (`None`:
    /// nothing known yet, leave them).
    pub fn of_member(decision: &Decision, now: Instant) -> Option<Self> {
        match decision.action? {
            AppliedAction::Acquire => Some(Self::Holds { until: decision.wake_at.unwrap_or(now) }),
            AppliedAction::Release => Some(Self::Stops { by: Some(decision.stop_by.unwrap_or(now)) }),
        }
    }

    /// In the coordination cluster: held while the lease has a live holder,
    /// until the last one expires; otherwise stopped within what is left of
    /// the stop budget ([`plan::coordination_grace`]), or with the pods' own
    /// grace period without one. `now` and `at` are the same instant.
    pub fn of_coordination(spec: &BerthLeaseSpec, status: &BerthLeaseStatus, now: DateTime<Utc>, at: Instant) -> Self {
        let in_ = |then: DateTime<Utc>| at + (then - now).to_std().unwrap_or_default();
        let last_expiry = status.holders.iter().filter(|h| h.is_live(now)).map(|h| h.expires_at).max();
        match last_expiry {
            Some(expires_at) => Self::Holds { until: in_(expires_at) },
            None => Self::Stops {
                by: plan::coordination_grace(spec, status, now).map(|grace| at + Duration::from_secs(grace.into())),
            },
        }
    }
}

/// Each lease's [`Standing`], as its claim or reconcile last decided it.
pub struct Standings(watch::Sender<BTreeMap<LeaseKey, Standing>>);

impl Default for Standings {
    fn default() -> Self {
        Self(watch::channel(BTreeMap::new()).0)
    }
}

impl Standings {
    pub fn set(&self, namespace: &str, lease: &str, standing: Standing) {
        let key = LeaseKey::new(namespace, lease);
        self.0.send_if_modified(|map| map.insert(key, standing) != Some(standing));
    }

    /// The lease is gone: its pods are left as they are (new ones wait at the gate).
    pub fn forget(&self, namespace: &str, lease: &str) {
        let key = LeaseKey::new(namespace, lease);
        self.0.send_if_modified(|map| map.remove(&key).is_some());
    }
}

/// What to do with one pod.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Ungate,
    /// Delete it with this grace period (`None`: its own).
    Delete(Option<u32>),
    Leave,
}

/// The step for `pod` under `standing` at `now`.
fn step(pod: &Pod, standing: Option<Standing>, now: Instant) -> Step {
    let gated = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.scheduling_gates.as_ref())
        .is_some_and(|gates| gates.iter().any(|gate| gate.name == SCHEDULING_GATE));
    match standing {
        Some(Standing::Holds { until }) if now < until => {
            if gated {
                Step::Ungate
            } else {
                Step::Leave
            }
        }
        // A gated pod runs nothing; nor does a finished one.
        _ if gated || !unfinished(pod) => Step::Leave,
        None => Step::Leave,
        // Past the fence, and nobody has said more yet: at once.
        Some(Standing::Holds { .. }) => Step::Delete(Some(0)),
        Some(Standing::Stops { by: Some(by) }) => {
            let grace = stop_grace(Some(by), now);
            if outlives(pod, grace) { Step::Delete(Some(grace)) } else { Step::Leave }
        }
        Some(Standing::Stops { by: None }) => {
            if pod.metadata.deletion_timestamp.is_none() {
                Step::Delete(None)
            } else {
                Step::Leave
            }
        }
    }
}

/// How soon a step that failed is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Watches the labelled pods of `namespaces` (empty: all) and carries out
/// each lease's standing, until `stopping` turns true.
pub async fn run(client: Client, namespaces: &[String], standings: &Standings, mut stopping: watch::Receiver<bool>) {
    let scopes: Vec<Api<Pod>> = if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces.iter().map(|ns| Api::namespaced(client.clone(), ns)).collect()
    };
    let config = watcher::Config::default().labels(LEASE_LABEL);
    let mut stores = Vec::new();
    let mut streams = Vec::new();
    for api in scopes {
        let (store, writer) = reflector::store();
        stores.push(store);
        streams.push(watcher(api, config.clone()).default_backoff().reflect(writer).boxed());
    }
    let mut events = futures::stream::select_all(streams);
    let mut standing = standings.0.subscribe();
    let mut acted = Acted::default();
    loop {
        // Cloned in a statement of its own: the channel's read guard must not
        // live across the pass's awaits, or a claim publishing its standing
        // would block a runtime thread on the lock meanwhile.
        let current = standing.borrow_and_update().clone();
        let failed = pass(&client, &stores, &current, &mut acted).await;
        let retry = async {
            if failed {
                tokio::time::sleep(RETRY).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(_)) => {}
                Some(Err(error)) => tracing::warn!(%error, "watching labelled pods failed; retrying"),
                None => return,
            },
            _ = standing.changed() => {}
            () = retry => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// The pods a pass wrote, by UID, with the resourceVersion they had then:
/// until the watch shows a newer version, a later pass (the next renew, the
/// next pod event) leaves them alone instead of writing the same again.
type Acted = BTreeMap<String, String>;

/// One look at every labelled pod. Returns whether a step failed.
async fn pass(
    client: &Client,
    stores: &[Store<Pod>],
    standings: &BTreeMap<LeaseKey, Standing>,
    acted: &mut Acted,
) -> bool {
    let now = Instant::now();
    let mut failed = false;
    let pods_now: Vec<_> = stores.iter().flat_map(Store::state).collect();
    acted.retain(|uid, version| {
        pods_now.iter().any(|pod| pod.uid().as_ref() == Some(uid) && pod.resource_version().as_ref() == Some(version))
    });
    for pod in pods_now {
        let (Some(namespace), Some(lease)) = (pod.namespace(), pod.labels().get(LEASE_LABEL).cloned()) else {
            continue;
        };
        let (Some(uid), Some(version)) = (pod.uid(), pod.resource_version()) else { continue };
        if acted.contains_key(&uid) {
            continue;
        }
        let standing = standings.get(&LeaseKey::new(&namespace, &lease)).copied();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let result = match step(&pod, standing, now) {
            Step::Leave => continue,
            Step::Ungate => ungate(&pods, &pod).await.map(|()| {
                tracing::info!(pod = %pod.name_any(), %namespace, %lease, "scheduling gate removed: the lease is held");
            }),
            Step::Delete(grace) => delete(&pods, &pod, grace).await.map(|()| {
                tracing::info!(pod = %pod.name_any(), %namespace, %lease, ?grace, "pod deleted: the lease is not held");
            }),
        };
        match result {
            Ok(()) => {
                acted.insert(uid, version);
            }
            Err(error) => {
                tracing::warn!(pod = %pod.name_any(), %namespace, %lease, %error, "acting on a gated pod failed");
                failed = true;
            }
        }
    }
    failed
}

/// Removes the lease's scheduling gate from `pod`, under a precondition on
/// its UID. A pod gone, or whose gate is gone, is not an error.
async fn ungate(pods: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let patch = json!({
        "metadata": {"uid": pod.uid()},
        "spec": {"schedulingGates": [{"$patch": "delete", "name": SCHEDULING_GATE}]},
    });
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
    match pods.patch(&pod.name_any(), &params, &Patch::Strategic(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSchedulingGate, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn pod(gated: bool, phase: &str) -> Pod {
        let gates = gated.then(|| vec![PodSchedulingGate { name: SCHEDULING_GATE.into() }]);
        Pod {
            spec: Some(PodSpec { scheduling_gates: gates, ..Default::default() }),
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn a_held_lease_lets_its_gated_pods_start_until_the_fence() {
        let now = Instant::now();
        let holds = Some(Standing::Holds { until: now + S(5) });
        assert_eq!(step(&pod(true, "Pending"), holds, now), Step::Ungate);
        assert_eq!(step(&pod(false, "Running"), holds, now), Step::Leave);
        let past = Some(Standing::Holds { until: now });
        assert_eq!(step(&pod(true, "Pending"), past, now), Step::Leave, "not at the fence");
        assert_eq!(step(&pod(false, "Running"), past, now), Step::Delete(Some(0)));
    }

    #[test]
    fn a_lease_not_held_stops_the_pods_it_let_through_by_the_deadline() {
        let now = Instant::now();
        let stops = Some(Standing::Stops { by: Some(now + S(9)) });
        assert_eq!(step(&pod(false, "Running"), stops, now), Step::Delete(Some(9)));
        assert_eq!(step(&pod(true, "Pending"), stops, now), Step::Leave, "a gated pod runs nothing");
        assert_eq!(step(&pod(false, "Succeeded"), stops, now), Step::Leave);
        let mut deleting = pod(false, "Running");
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        deleting.metadata.deletion_grace_period_seconds = Some(5);
        assert_eq!(step(&deleting, stops, now), Step::Leave, "it stops sooner already");
        let own = Some(Standing::Stops { by: None });
        assert_eq!(step(&pod(false, "Running"), own, now), Step::Delete(None));
        assert_eq!(step(&deleting, own, now), Step::Leave);
    }

    #[test]
    fn a_coordination_lease_holds_until_its_last_holder_expires() {
        let (now, at) = (Utc::now(), Instant::now());
        let holder = |identity: &str, expires_in: i64| berth_api::Holder {
            identity: identity.into(),
            fencing_token: 1,
            acquired_at: now,
            renewed_at: now,
            expires_at: now + chrono::Duration::seconds(expires_in),
        };
        let spec: BerthLeaseSpec = serde_json::from_value(json!({"leaseName": "l"})).expect("a spec");
        let status = BerthLeaseStatus { holders: vec![holder("a", 4), holder("b", 7)], ..Default::default() };
        assert_eq!(Standing::of_coordination(&spec, &status, now, at), Standing::Holds { until: at + S(7) });
        let expired = BerthLeaseStatus { holders: vec![holder("a", -1)], ..Default::default() };
        assert_eq!(Standing::of_coordination(&spec, &expired, now, at), Standing::Stops { by: None });
        let budget: BerthLeaseSpec =
            serde_json::from_value(json!({"leaseName": "l", "stopSeconds": 5})).expect("a spec");
        assert_eq!(Standing::of_coordination(&budget, &expired, now, at), Standing::Stops { by: Some(at + S(5)) });
    }

    #[test]
    fn a_member_holds_until_its_fence_and_stops_by_its_deadline() {
        let now = Instant::now();
        let decision =
            |action, wake_at, stop_by| Decision { state: berth_api::LeaseState::Held, action, wake_at, stop_by };
        let held = decision(Some(AppliedAction::Acquire), Some(now + S(3)), None);
        assert_eq!(Standing::of_member(&held, now), Some(Standing::Holds { until: now + S(3) }));
        let fenced = decision(Some(AppliedAction::Release), Some(now + S(2)), Some(now + S(2)));
        assert_eq!(Standing::of_member(&fenced, now), Some(Standing::Stops { by: Some(now + S(2)) }));
        let standby = decision(Some(AppliedAction::Release), None, None);
        assert_eq!(Standing::of_member(&standby, now), Some(Standing::Stops { by: Some(now) }));
        assert_eq!(Standing::of_member(&decision(None, Some(now + S(1)), None), now), None, "unknown");
    }

    #[test]
    fn a_lease_without_a_standing_leaves_its_pods_alone() {
        let now = Instant::now();
        assert_eq!(step(&pod(true, "Pending"), None, now), Step::Leave);
        assert_eq!(step(&pod(false, "Running"), None, now), Step::Leave);
    }
}
