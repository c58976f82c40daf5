//! The pods of a released target, followed until none runs: a suspended
//! CronJob or Job and a workload scaled down stop their processes only once
//! their pods are gone, and the operator hastens those that would outlive the
//! lease's stop budget.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use kube::{Client, ResourceExt};
use tokio::time::Instant;

use crate::plan::TargetKind;
use crate::target::Failure;

/// The label the Job controller puts on every pod of a Job: the Job's UID.
const JOB_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";

/// How far a released target is from stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// No pod of the target is running or about to run.
    Stopped,
    /// This many pods still run (or are pending).
    Stopping { pods: usize },
}

/// Lists the target's pods that are not finished, and deletes those whose
/// grace period would end more than `grace` seconds from now with a grace
/// period of `grace` (`None`: their own grace period stands).
///
/// # Guarantees
/// A pod is deleted only under a precondition on its UID, and only when the
/// new grace period shortens the one it has: kubelet then sends SIGKILL at
/// the earlier instant.
///
/// # Errors
/// As [`crate::target::observe`]: [`Failure::Forbidden`] when this identity
/// may not list or delete pods.
pub async fn follow(
    client: &Client,
    namespace: &str,
    kind: TargetKind,
    name: &str,
    grace: Option<u32>,
) -> Result<Progress, Failure> {
    let Some(selector) = selector(client, namespace, kind, name).await? else { return Ok(Progress::Stopped) };
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let running: Vec<Pod> =
        pods.list(&ListParams::default().labels(&selector)).await?.items.into_iter().filter(unfinished).collect();
    if running.is_empty() {
        return Ok(Progress::Stopped);
    }
    if let Some(grace) = grace {
        for pod in running.iter().filter(|pod| outlives(pod, grace)) {
            delete(&pods, pod, Some(grace)).await?;
            tracing::info!(pod = %pod.name_any(), namespace, grace, "pod deleted to stop within the budget");
        }
    }
    Ok(Progress::Stopping { pods: running.len() })
}

/// Deletes `pod` under a precondition on its UID, with a grace period of
/// `grace` seconds (`None`: its own). A pod already gone, or replaced by one
/// of the same name, is not an error.
pub(crate) async fn delete(pods: &Api<Pod>, pod: &Pod, grace: Option<u32>) -> Result<(), kube::Error> {
    let params = DeleteParams {
        grace_period_seconds: grace,
        preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
        ..DeleteParams::default()
    };
    match pods.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

/// The grace period, in whole seconds, of a pod still running at `now` that
/// must stop by `stop_by`: what is left, rounded down, or 0.
pub fn stop_grace(stop_by: Option<Instant>, now: Instant) -> u32 {
    let left = stop_by.map_or(Duration::ZERO, |by| by.saturating_duration_since(now));
    u32::try_from(left.as_secs()).unwrap_or(u32::MAX)
}

/// The label selector of the target's pods; `None` when it has none (a
/// CronJob without Jobs).
async fn selector(client: &Client, namespace: &str, kind: TargetKind, name: &str) -> Result<Option<String>, Failure> {
    let uids = match kind {
        TargetKind::Deployment => {
            return scale_selector::<k8s_openapi::api::apps::v1::Deployment>(client, namespace, name).await;
        }
        TargetKind::StatefulSet => {
            return scale_selector::<k8s_openapi::api::apps::v1::StatefulSet>(client, namespace, name).await;
        }
        TargetKind::ReplicaSet => {
            return scale_selector::<k8s_openapi::api::apps::v1::ReplicaSet>(client, namespace, name).await;
        }
        TargetKind::Job => {
            let job = Api::<Job>::namespaced(client.clone(), namespace).get(name).await?;
            job.uid().into_iter().collect::<Vec<_>>()
        }
        // Every Job the CronJob owns, finished or not: a finished Job's pods
        // are filtered out below, and the list costs one call either way.
        TargetKind::CronJob => Api::<Job>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|job| {
                job.owner_references()
                    .iter()
                    .any(|o| o.controller == Some(true) && o.kind == "CronJob" && o.name == name)
            })
            .filter_map(|job| job.uid())
            .collect(),
    };
    Ok((!uids.is_empty()).then(|| format!("{JOB_UID_LABEL} in ({})", uids.join(","))))
}

/// The selector the `/scale` subresource reports for the workload's pods.
async fn scale_selector<K>(client: &Client, namespace: &str, name: &str) -> Result<Option<String>, Failure>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let scale = Api::<K>::namespaced(client.clone(), namespace).get_scale(name).await?;
    Ok(scale.status.and_then(|s| s.selector).filter(|s| !s.is_empty()))
}

/// Whether the pod may still run a process: not `Succeeded` nor `Failed`.
pub(crate) fn unfinished(pod: &Pod) -> bool {
    !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Whether the pod would run on for longer than `grace` seconds: not being
/// deleted yet, or deleted with a longer grace period.
pub(crate) fn outlives(pod: &Pod, grace: u32) -> bool {
    match (&pod.metadata.deletion_timestamp, pod.metadata.deletion_grace_period_seconds) {
        (Some(_), Some(current)) => current > i64::from(grace),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(phase: &str, deleting_with: Option<i64>) -> Pod {
        let mut pod =
            Pod { status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }), ..Default::default() };
        if let Some(grace) = deleting_with {
            pod.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
            pod.metadata.deletion_grace_period_seconds = Some(grace);
        }
        pod
    }

    #[test]
    fn finished_pods_run_nothing() {
        assert!(unfinished(&pod("Running", None)));
        assert!(unfinished(&pod("Pending", None)));
        assert!(!unfinished(&pod("Succeeded", None)));
        assert!(!unfinished(&pod("Failed", None)));
    }

    #[test]
    fn only_a_shorter_grace_period_is_worth_a_delete() {
        assert!(outlives(&pod("Running", None), 30), "not deleted yet");
        assert!(outlives(&pod("Running", Some(30)), 5), "its own 30 s would pass the budget");
        assert!(!outlives(&pod("Running", Some(5)), 5));
        assert!(!outlives(&pod("Running", Some(0)), 3));
    }

    #[test]
    fn the_grace_left_is_rounded_down_so_it_ends_before_the_deadline() {
        let now = Instant::now();
        assert_eq!(stop_grace(Some(now + Duration::from_millis(9_900)), now), 9);
        assert_eq!(stop_grace(Some(now + Duration::from_millis(400)), now), 0);
        assert_eq!(stop_grace(Some(now), now + Duration::from_secs(1)), 0);
        assert_eq!(stop_grace(None, now), 0, "no deadline known: at once");
    }
}
