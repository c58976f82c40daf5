//! The BerthLease CRD on the real control plane: schema, CEL rules, printer
//! columns and conditional status writes.

use berth_api::crd::{TargetAction, TargetRef};
use berth_api::{BerthLease, BerthLeaseSpec, BerthLeaseStatus, LeaseState, Semantics};
use berth_testenv::TestNamespace;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

fn lease(name: &str, spec: BerthLeaseSpec) -> BerthLease {
    BerthLease::new(name, spec)
}

#[tokio::test]
async fn valid_lease_is_created_read_back_and_listed_with_printer_columns() {
    let ns = TestNamespace::new("crd-valid").await;
    let api = ns.api::<BerthLease>();
    let spec = BerthLeaseSpec {
        lease_name: Some("ingest-coordinator".into()),
        holder_identity: Some("worker-east-1".into()),
        target: Some(TargetRef {
            api_version: "batch/v1".into(),
            kind: "CronJob".into(),
            name: "ingest-pipeline".into(),
        }),
        acquire_action: Some(TargetAction { suspend: Some(false), replicas: None }),
        release_action: Some(TargetAction { suspend: Some(true), replicas: None }),
        ..Default::default()
    };
    api.create(&PostParams::default(), &lease("ingest-coordinator", spec.clone())).await.unwrap();
    let read = api.get("ingest-coordinator").await.unwrap();
    assert_eq!(read.spec, spec);

    // Defaults come from the schema when a manifest leaves fields out.
    let minimal: BerthLease = serde_json::from_value(json!({
        "apiVersion": "berth.skaphos.io/v1alpha1", "kind": "BerthLease",
        "metadata": {"name": "minimal"}, "spec": {}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &minimal).await.unwrap();
    assert_eq!(
        (
            created.spec.ttl_seconds,
            created.spec.heartbeat_interval_seconds,
            created.spec.semantics,
            created.spec.lock_delay_seconds
        ),
        (30, 10, Semantics::AtMostOnce, 0)
    );

    let out = ns.kubectl_output(&["get", "bl"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATE", "HOLDER", "TOKEN", "EXPIRES", "SEMANTICS", "TARGET", "AGE"]);
    assert!(out.contains("ingest-coordinator") && out.contains("ingest-pipeline"), "{out}");
    let by_category = ns.kubectl_output(&["get", "berth"]);
    assert!(by_category.contains("minimal"), "{by_category}");
}

/// Each CEL rule of the CRD, with a manifest that breaks it and the message expected.
#[tokio::test]
async fn each_cel_rule_rejects_a_bad_object_with_a_clear_message() {
    let ns = TestNamespace::new("crd-cel").await;
    let api = ns.api::<BerthLease>();
    let target =
        |api_version: &str, kind: &str, name: &str| json!({"apiVersion": api_version, "kind": kind, "name": name});
    let cases = [
        ("lease-name", json!({"leaseName": "other"}), "spec.leaseName must equal metadata.name"),
        (
            "heartbeat",
            json!({"ttlSeconds": 10, "heartbeatIntervalSeconds": 10}),
            "heartbeatIntervalSeconds must be less than ttlSeconds",
        ),
        ("max-holders", json!({"maxHolders": 2}), "maxHolders is only allowed with semantics at-least-once"),
        (
            "action-both",
            json!({"acquireAction": {"suspend": true, "replicas": 1}}),
            "an action sets exactly one of suspend or replicas",
        ),
        ("action-none", json!({"releaseAction": {}}), "an action sets exactly one of suspend or replicas"),
        (
            "target-name",
            json!({"target": target("batch/v1", "CronJob", "Bad_Name")}),
            "target.name must be a DNS subdomain",
        ),
        ("target-kind", json!({"target": target("batch/v1", "cron job", "x")}), "target.kind must be a CamelCase kind"),
        (
            "target-version",
            json!({"target": target("Batch/v1", "CronJob", "x")}),
            "target.apiVersion must be [group/]version",
        ),
        ("target-long", json!({"target": target("batch/v1", "CronJob", &"a".repeat(254))}), "Too long"),
        (
            "stop-budget",
            json!({"ttlSeconds": 30, "heartbeatIntervalSeconds": 10, "stopSeconds": 17}),
            "stopSeconds leaves less than one heartbeat to hold the lease: it may be 0, or at most \
             ttlSeconds - heartbeatIntervalSeconds - the safety margin",
        ),
        (
            "stop-budget-none",
            json!({"ttlSeconds": 3, "heartbeatIntervalSeconds": 1, "stopSeconds": 1}),
            "stopSeconds leaves less than one heartbeat to hold the lease",
        ),
    ];
    for (name, spec, message) in cases {
        let object: BerthLease = serde_json::from_value(json!({
            "apiVersion": "berth.skaphos.io/v1alpha1", "kind": "BerthLease",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        let err = api.create(&PostParams::default(), &object).await.expect_err(name);
        let kube::Error::Api(status) = err else { panic!("{name}: {err}") };
        assert_eq!(status.code, 422, "{name}: {status:?}");
        assert!(status.message.contains(message), "{name}: expected {message:?} in {:?}", status.message);
    }
    // The same rules accept what they should.
    let good: BerthLease = serde_json::from_value(json!({
        "apiVersion": "berth.skaphos.io/v1alpha1", "kind": "BerthLease", "metadata": {"name": "good"},
        "spec": {"leaseName": "good", "semantics": "at-least-once", "maxHolders": 2, "stopSeconds": 16,
                 "target": target("apps/v1", "Deployment", "web.v2"), "acquireAction": {"replicas": 3}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &good).await.unwrap();
    // An edit that leaves the budget no room is refused, and changes nothing.
    let shorter = json!({"spec": {"ttlSeconds": 20}});
    let err = api.patch("good", &PatchParams::default(), &Patch::Merge(&shorter)).await.expect_err("a shorter TTL");
    let kube::Error::Api(status) = err else { panic!("{err}") };
    assert!(status.message.contains("stopSeconds leaves less than one heartbeat"), "{:?}", status.message);
    assert_eq!(api.get("good").await.unwrap().spec.ttl_seconds, 30);
    // A budget of 0 fits every TTL: the shortest lease a creating acquire writes takes it.
    let shortest = json!({"apiVersion": "berth.skaphos.io/v1alpha1", "kind": "BerthLease",
                          "metadata": {"name": "shortest"}, "spec": {"ttlSeconds": 2, "heartbeatIntervalSeconds": 1, "stopSeconds": 0}});
    // (Applied as raw JSON: the Rust type leaves a 0 out.)
    api.patch("shortest", &PatchParams::apply("berth-testenv"), &Patch::Apply(&shortest)).await.unwrap();
}

#[tokio::test]
async fn status_is_written_by_server_side_apply_guarded_by_resource_version() {
    let ns = TestNamespace::new("crd-status").await;
    let api = ns.api::<BerthLease>();
    let created = api.create(&PostParams::default(), &lease("guarded", BerthLeaseSpec::default())).await.unwrap();
    let stale_rv = created.metadata.resource_version.clone().unwrap();

    let status_patch = |rv: &str, token: i32| {
        let status = BerthLeaseStatus { state: LeaseState::Held, fencing_token: token, ..Default::default() };
        json!({
            "apiVersion": "berth.skaphos.io/v1alpha1", "kind": "BerthLease",
            "metadata": {"name": "guarded", "resourceVersion": rv},
            "status": status
        })
    };
    let params = PatchParams::apply("berth-testenv").force();
    let written = api.patch_status("guarded", &params, &Patch::Apply(status_patch(&stale_rv, 1))).await.unwrap();
    let status = written.status.clone().unwrap();
    assert_eq!((status.state, status.fencing_token), (LeaseState::Held, 1));
    let managers: Vec<_> = written.metadata.managed_fields.unwrap().into_iter().filter_map(|m| m.manager).collect();
    assert!(managers.contains(&"berth-testenv".to_string()), "{managers:?}");

    // The first write moved the resourceVersion on: the old one now conflicts.
    let err = api.patch_status("guarded", &params, &Patch::Apply(status_patch(&stale_rv, 2))).await.unwrap_err();
    let kube::Error::Api(status) = err else { panic!("{err}") };
    assert_eq!(status.code, 409, "{status:?}");
    assert_eq!(api.get_status("guarded").await.unwrap().status.unwrap().fencing_token, 1);
}
