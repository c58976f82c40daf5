//! Who owns a target's field after the operator acts on it: the operator
//! writes `spec.suspend` and `spec.replicas` by server-side apply under field
//! manager `berth-operator`, so `metadata.managedFields` names it, as kubectl
//! and GitOps tools read it. On the real control plane.

#[allow(dead_code)] // the support module serves every test binary
mod support;

use std::time::Duration;

use berth_testenv::TestNamespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::Resource;
use serde_json::json;
use support::*;

const SOON: Duration = Duration::from_secs(10);

/// The managers that own `spec.<field>`: (manager, operation, subresource).
fn owners_of_spec_field(entries: &[ManagedFieldsEntry], field: &str) -> Vec<(String, String, String)> {
    let key = format!("f:{field}");
    entries
        .iter()
        .filter(|e| e.fields_v1.as_ref().is_some_and(|f| f.0.get("f:spec").and_then(|s| s.get(&key)).is_some()))
        .map(|e| {
            (
                e.manager.clone().unwrap_or_default(),
                e.operation.clone().unwrap_or_default(),
                e.subresource.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn berth_applies(subresource: &str) -> Vec<(String, String, String)> {
    vec![("berth-operator".to_owned(), "Apply".to_owned(), subresource.to_owned())]
}

#[tokio::test]
async fn operator_owns_cronjob_suspend_and_deployment_replicas_by_server_side_apply() {
    let ns = TestNamespace::new("op-ssa").await;
    let _operator = Operator::start(&ns.name, &[]);
    create_cronjob(&ns, "nightly", true).await;
    create_deployment(&ns, "web", 0).await;
    create_lease(&ns, "nightly", cronjob_target("nightly")).await;
    create_lease(
        &ns,
        "web",
        json!({"target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
               "acquireAction": {"replicas": 2}, "releaseAction": {"replicas": 0}}),
    )
    .await;
    let cronjobs = ns.api::<k8s_openapi::api::batch::v1::CronJob>();
    let deployments = ns.api::<k8s_openapi::api::apps::v1::Deployment>();
    let suspend_owners = || async {
        let cronjob = cronjobs.get("nightly").await.unwrap();
        owners_of_spec_field(cronjob.meta().managed_fields.as_deref().unwrap_or_default(), "suspend")
    };
    // Created suspended by the test: its creator owns the field until Berth acts.
    assert_ne!(suspend_owners().await, berth_applies(""));

    let nightly = acquire(&ns, "nightly", "worker", 60).await;
    eventually("the CronJob resumes", SOON, || async { (!suspended(&ns, "nightly").await).then_some(()) }).await;
    // Forced: the creator's claim on the field moved to Berth.
    assert_eq!(suspend_owners().await, berth_applies(""));

    release(&ns, "nightly", &nightly).await;
    eventually("the CronJob is suspended again", SOON, || async { suspended(&ns, "nightly").await.then_some(()) })
        .await;
    assert_eq!(suspend_owners().await, berth_applies(""));

    let web = acquire(&ns, "web", "worker", 60).await;
    eventually("scaled to 2", SOON, || async { (replicas(&ns, "web").await == 2).then_some(()) }).await;
    let deployment = deployments.get("web").await.unwrap();
    let replica_owners =
        owners_of_spec_field(deployment.meta().managed_fields.as_deref().unwrap_or_default(), "replicas");
    assert_eq!(replica_owners, berth_applies("scale"));

    release(&ns, "web", &web).await;
    eventually("scaled to 0", SOON, || async { (replicas(&ns, "web").await == 0).then_some(()) }).await;
    let deployment = deployments.get("web").await.unwrap();
    let replica_owners =
        owners_of_spec_field(deployment.meta().managed_fields.as_deref().unwrap_or_default(), "replicas");
    assert_eq!(replica_owners, berth_applies("scale"));
}
