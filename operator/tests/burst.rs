//! The operator's compact cache and its expiry bursts, against the real
//! control plane: many leases expiring together, and a lease whose labels and
//! annotations the cache drops.

// Shared with tests/operator.rs; this file uses only part of it.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use berth_api::crd::{AppliedAction, ConditionStatus};
use berth_api::{BerthLease, LeaseState};
use berth_testenv::TestNamespace;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::CronJob;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

/// A failure bound only: the tests wait on observed state.
const BOUND: Duration = Duration::from_secs(60);

#[tokio::test]
async fn many_leases_expiring_together_all_expire_and_suspend_their_cronjobs_once() {
    const LEASES: usize = 40;
    let ns = TestNamespace::new("op-burst").await;
    let operator = Operator::start(&ns.name, &[]);
    let names: Vec<String> = (0..LEASES).map(|i| format!("burst-{i:02}")).collect();
    for name in &names {
        create_cronjob(&ns, name, true).await;
        create_lease(&ns, name, cronjob_target(name)).await;
    }
    let holders: Vec<_> = futures::stream::iter(&names)
        .map(|name| {
            let ns = &ns;
            async move { acquire(ns, name, &format!("worker/{name}"), 4).await }
        })
        .buffer_unordered(LEASES)
        .collect()
        .await;
    assert_eq!(holders.len(), LEASES);

    // All of them expire within the same second or so: every lease ends
    // expired with no holder, and every CronJob suspended with the release
    // recorded in status.target.
    eventually("every lease expired and every CronJob suspended", BOUND, || async {
        let leases = ns.api::<BerthLease>().list(&Default::default()).await.expect("leases list").items;
        let cronjobs = ns.api::<CronJob>().list(&Default::default()).await.expect("cronjobs list").items;
        let expired = leases.iter().filter(|l| {
            l.status.as_ref().is_some_and(|s| {
                s.state == LeaseState::Expired
                    && s.holders.is_empty()
                    && s.target.as_ref().is_some_and(|t| t.applied == AppliedAction::Release)
            })
        });
        let suspended = cronjobs.iter().filter(|c| c.spec.suspend == Some(true));
        (expired.count() == LEASES && suspended.count() == LEASES).then_some(())
    })
    .await;
    for name in &names {
        let status = get_lease(&ns, name).await.status.expect("a status");
        let expired_at = status.expired_at.expect("expiredAt is set");
        assert!(status.last_transition_time.is_some_and(|t| t >= expired_at), "{name}: never expires early");
    }
    // One expiry observed per lease, and each CronJob resumed once and
    // suspended once: the burst wrote no target twice.
    assert_eq!(operator.metric("berth_operator_expiry_lag_seconds_count").await, LEASES as f64);
    let written = |action: &str| format!("berth_operator_target_actions_total{{kind=\"CronJob\",action=\"{action}\"}}");
    assert_eq!(operator.metric(&written("acquire")).await, LEASES as f64);
    assert_eq!(operator.metric(&written("release")).await, LEASES as f64);
}

#[tokio::test]
async fn a_lease_cached_without_labels_and_annotations_goes_through_every_step_and_keeps_them() {
    let ns = TestNamespace::new("op-compact").await;
    let _operator = Operator::start(&ns.name, &[]);
    create_cronjob(&ns, "report", true).await;
    let mut manifest = lease("report", cronjob_target("report"));
    manifest.metadata.labels = Some([("team".to_owned(), "billing".to_owned())].into());
    manifest.metadata.annotations = Some([("owner".to_owned(), "billing@example.org".to_owned())].into());
    ns.api::<BerthLease>().create(&PostParams::default(), &manifest).await.expect("lease creates");

    // Finalizer, grant, target resumed.
    let holder = acquire(&ns, "report", "worker/1", 3).await;
    eventually("the CronJob resumes", BOUND, || async { (!suspended(&ns, "report").await).then_some(()) }).await;
    wait_condition(&ns, "report", "Held", ConditionStatus::True, "Acquired").await;
    // Expiry, target suspended.
    wait_condition(&ns, "report", "Held", ConditionStatus::False, "Expired").await;
    eventually("the CronJob is suspended", BOUND, || async { suspended(&ns, "report").await.then_some(()) }).await;

    // Drift: a hand edit of the target wakes the lease through the
    // metadata-only watch, and the operator suspends it again.
    let params = PatchParams::default();
    let resume = Patch::Merge(json!({"spec": {"suspend": false}}));
    ns.api::<CronJob>().patch("report", &params, &resume).await.expect("cronjob patches");
    eventually("the drift is corrected", BOUND, || async { suspended(&ns, "report").await.then_some(()) }).await;

    // The operator's writes from its compact cache left the object's labels,
    // annotations and finalizer in place.
    let stored = get_lease(&ns, "report").await;
    assert_eq!(stored.metadata.labels.unwrap().get("team").map(String::as_str), Some("billing"));
    assert_eq!(stored.metadata.annotations.unwrap().get("owner").map(String::as_str), Some("billing@example.org"));
    assert_eq!(stored.metadata.finalizers, Some(vec![berth_operator::plan::FINALIZER.to_owned()]));
    assert_eq!(stored.status.unwrap().expired_at, Some(holder.expires_at));
    for reason in ["Acquired", "TargetResumed", "Expired", "TargetSuspended"] {
        wait_event(&ns, "report", reason).await;
    }

    // Deletion runs releaseAction and lets the lease go.
    ns.api::<BerthLease>().delete("report", &Default::default()).await.expect("lease deletes");
    eventually("the lease is gone", BOUND, || async {
        ns.api::<BerthLease>().get_opt("report").await.expect("lease reads").is_none().then_some(())
    })
    .await;
    assert!(suspended(&ns, "report").await);
}
