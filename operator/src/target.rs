//! Reading and writing target workloads: `spec.suspend` on CronJobs (and on
//! the Jobs they started) and Jobs, the `/scale` subresource on Deployments,
//! StatefulSets and ReplicaSets.

use std::fmt::Debug;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::{Client, Resource};
use serde_json::json;

use crate::FIELD_MANAGER;
use crate::plan::{Setting, TargetKind};

/// What a CronJob says about its schedule, for the kubernetes#42649 warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronSchedule {
    pub schedule: String,
    pub starting_deadline_seconds: Option<i64>,
    /// `status.lastScheduleTime`, or the creation time when it never ran.
    pub last: Option<DateTime<Utc>>,
}

/// The target as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The value of the knob the operator drives, in the same terms as its setting.
    pub setting: Setting,
    pub cron: Option<CronSchedule>,
    /// The target's `metadata.generation` as read; `None` through `/scale`,
    /// whose answer carries none.
    pub generation: Option<i64>,
}

impl Observed {
    fn of_cronjob(cronjob: CronJob) -> Self {
        let spec = cronjob.spec;
        let last = cronjob
            .status
            .and_then(|s| s.last_schedule_time)
            .or(cronjob.metadata.creation_timestamp)
            .map(|t| DateTime::<Utc>::from_timestamp_nanos(t.0.as_nanosecond() as i64));
        Observed {
            setting: Setting::Suspend(spec.suspend.unwrap_or(false)),
            cron: Some(CronSchedule {
                schedule: spec.schedule,
                starting_deadline_seconds: spec.starting_deadline_seconds,
                last,
            }),
            generation: cronjob.metadata.generation,
        }
    }

    fn of_job(job: Job) -> Self {
        let suspend = job.spec.and_then(|s| s.suspend).unwrap_or(false);
        Observed { setting: Setting::Suspend(suspend), cron: None, generation: job.metadata.generation }
    }
}

/// How a target read or write failed.
#[derive(Debug)]
pub enum Failure {
    /// 404: the target does not exist.
    NotFound,
    /// 403: the operator's identity may not do this.
    Forbidden(String),
    /// Anything else: worth retrying.
    Other(kube::Error),
}

impl From<kube::Error> for Failure {
    fn from(error: kube::Error) -> Self {
        match &error {
            kube::Error::Api(status) if status.code == 404 => Failure::NotFound,
            kube::Error::Api(status) if status.code == 403 => Failure::Forbidden(status.message.clone()),
            _ => Failure::Other(error),
        }
    }
}

/// Reads the current value of the knob for `kind` on `namespace/name`.
///
/// # Errors
/// [`Failure::NotFound`] and [`Failure::Forbidden`] for a target that is
/// missing or that this identity may not read; [`Failure::Other`] otherwise.
pub async fn observe(client: &Client, namespace: &str, kind: TargetKind, name: &str) -> Result<Observed, Failure> {
    Ok(match kind {
        TargetKind::CronJob => {
            Observed::of_cronjob(Api::<CronJob>::namespaced(client.clone(), namespace).get(name).await?)
        }
        TargetKind::Job => Observed::of_job(Api::<Job>::namespaced(client.clone(), namespace).get(name).await?),
        TargetKind::Deployment => scale_of::<Deployment>(client, namespace, name).await?,
        TargetKind::StatefulSet => scale_of::<StatefulSet>(client, namespace, name).await?,
        TargetKind::ReplicaSet => scale_of::<ReplicaSet>(client, namespace, name).await?,
    })
}

/// Writes `setting` to the target by server-side apply under field manager
/// `berth-operator`, so that kubectl and GitOps tools see that Berth owns
/// `spec.suspend` or `spec.replicas` (`metadata.managedFields`, operation
/// `Apply`; for replicas through the `/scale` subresource).
///
/// Returns the target as the write left it, when the answer tells it (a
/// CronJob or Job, not a `/scale`).
///
/// # Guarantees
/// The apply carries only the one field: nothing else of the target is
/// claimed, and another manager's fields are left alone.
///
/// # Errors
/// As [`observe`].
///
/// # Caveats
/// An apply creates what is absent. A CronJob or Job deleted between
/// [`observe`] and this write is not created again, because the one field
/// is not a valid object. The answer is 422 ([`Failure::Other`]), and the
/// next reconcile observes the 404. A missing workload's `/scale` answers 404.
pub async fn write(
    client: &Client,
    namespace: &str,
    kind: TargetKind,
    name: &str,
    setting: Setting,
) -> Result<Option<Observed>, Failure> {
    // Forced: the field is the lease's safety action (a workload whose holder
    // lost the lease must stop), so Berth takes it over from whoever set it
    // before (the manifest's author, `kubectl scale`, a GitOps tool) instead
    // of failing with a conflict. Those managers see the change of owner.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    // plan_target pairs suspend only with CronJob and Job, and replicas only with the scalable kinds.
    let spec = match setting {
        Setting::Suspend(suspend) => json!({"suspend": suspend}),
        Setting::Replicas(replicas) => json!({"replicas": replicas}),
    };
    match kind {
        TargetKind::CronJob => {
            let cronjob = Api::<CronJob>::namespaced(client.clone(), namespace)
                .patch(name, &params, &apply_config::<CronJob>(name, spec))
                .await?;
            let active: Vec<String> = cronjob
                .status
                .as_ref()
                .and_then(|s| s.active.clone())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|job| job.name)
                .collect();
            if let Setting::Suspend(suspend) = setting {
                set_started_jobs(client, namespace, name, &active, &params, suspend).await?;
            }
            Ok(Some(Observed::of_cronjob(cronjob)))
        }
        TargetKind::Job => Ok(Some(Observed::of_job(apply::<Job>(client, namespace, name, &params, spec).await?))),
        TargetKind::Deployment => set_scale::<Deployment>(client, namespace, name, &params, spec).await.map(|()| None),
        TargetKind::StatefulSet => {
            set_scale::<StatefulSet>(client, namespace, name, &params, spec).await.map(|()| None)
        }
        TargetKind::ReplicaSet => set_scale::<ReplicaSet>(client, namespace, name, &params, spec).await.map(|()| None),
    }
    .map_err(Failure::from)
}

/// The annotation on the Jobs of a CronJob that Berth suspended, so that it
/// resumes those, and only those, when the CronJob resumes.
pub const SUSPENDED_BY_BERTH: &str = "berth.skaphos.io/suspended-by-berth";

/// The Jobs a CronJob started keep running after the CronJob is suspended:
/// a suspended CronJob only starts no new ones. So suspending a CronJob also
/// suspends every unfinished Job of its `status.active`, and the Job
/// controller deletes their running pods, each with its grace period.
/// Resuming the CronJob resumes the Jobs Berth suspended: left suspended,
/// they would count as active forever and block a `concurrencyPolicy:
/// Forbid` CronJob. A CronJob with no active Job costs nothing more.
///
/// # Caveats
/// `status.active` is the CronJob controller's view, written shortly after
/// it creates a Job; a Job created in that moment is missed here. The CronJob
/// was suspended first, so the controller starts no further one.
async fn set_started_jobs(
    client: &Client,
    namespace: &str,
    cronjob: &str,
    active: &[String],
    params: &PatchParams,
    suspend: bool,
) -> Result<(), kube::Error> {
    let jobs = Api::<Job>::namespaced(client.clone(), namespace);
    for name in active {
        let Some(job) = jobs.get_opt(name).await? else { continue };
        let owned = job
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "CronJob" && o.name == cronjob && o.controller == Some(true));
        let finished = job.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|conditions| {
            conditions.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        });
        if !owned || finished {
            continue;
        }
        let suspended = job.spec.as_ref().and_then(|s| s.suspend) == Some(true);
        let ours = job.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(SUSPENDED_BY_BERTH));
        // Under the one field manager, an apply without the annotation removes it.
        let patch = match (suspend, suspended, ours) {
            (true, false, _) => json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": name, "annotations": {SUSPENDED_BY_BERTH: "true"}},
                "spec": {"suspend": true},
            }),
            (false, true, true) => apply_config_value::<Job>(name, json!({"suspend": false})),
            _ => continue,
        };
        jobs.patch(name, params, &Patch::Apply(patch)).await?;
    }
    Ok(())
}

fn apply_config_value<K: k8s_openapi::Resource>(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": K::API_VERSION, "kind": K::KIND, "metadata": {"name": name}, "spec": spec})
}

/// The apply configuration of `name` of kind `K` with only `spec`.
fn apply_config<K: k8s_openapi::Resource>(name: &str, spec: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Apply(apply_config_value::<K>(name, spec))
}

async fn apply<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    params: &PatchParams,
    spec: serde_json::Value,
) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + serde::de::DeserializeOwned
        + Debug,
{
    let patch = apply_config::<K>(name, spec);
    Api::<K>::namespaced(client.clone(), namespace).patch(name, params, &patch).await
}

async fn scale_of<K>(client: &Client, namespace: &str, name: &str) -> Result<Observed, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + serde::de::DeserializeOwned + Debug,
{
    let scale = Api::<K>::namespaced(client.clone(), namespace).get_scale(name).await?;
    let replicas = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
    Ok(Observed { setting: Setting::Replicas(replicas), cron: None, generation: None })
}

/// Applies `spec` to the `/scale` subresource: kube-apiserver records the
/// owner of `spec.replicas` on the workload itself (subresource `scale`).
async fn set_scale<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    params: &PatchParams,
    spec: serde_json::Value,
) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + serde::de::DeserializeOwned + Debug,
{
    let patch = apply_config::<Scale>(name, spec);
    Api::<K>::namespaced(client.clone(), namespace).patch_scale(name, params, &patch).await.map(|_| ())
}
