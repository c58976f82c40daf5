//! The operator against the real control plane (etcd + kube-apiserver; no
//! kube-controller-manager, so the tests assert on the fields the operator
//! sets). Each test runs its own `operator` process scoped to its namespace.

#[allow(dead_code)] // the support module serves every test binary
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_api::crd::{AppliedAction, ConditionStatus};
use berth_api::{BerthLease, BerthLeaseStatus, LeaseState};
use berth_testenv::{TestNamespace, eventually_showing};
use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, WatchEvent, WatchParams};
use serde_json::json;
use support::*;

const SOON: Duration = Duration::from_secs(5);

#[tokio::test]
async fn acquired_lease_resumes_cronjob_and_expiry_suspends_it_again() {
    let ns = TestNamespace::new("op-expiry").await;
    let operator = Operator::start(&ns.name, &[]);
    create_cronjob(&ns, "ingest", true).await;
    create_lease(&ns, "ingest", cronjob_target("ingest")).await;

    let holder = acquire(&ns, "ingest", "east/worker-1", 3).await;
    eventually("the CronJob resumes", SOON, || async { (!suspended(&ns, "ingest").await).then_some(()) }).await;
    let held = wait_condition(&ns, "ingest", "Held", ConditionStatus::True, "Acquired").await;
    assert_eq!(held.message, format!("held by east/worker-1 (fencing token {})", holder.fencing_token));
    let reads = "berth_operator_target_reads_total{kind=\"CronJob\"}";
    let read_before_expiry = operator.metric(reads).await;
    assert!(read_before_expiry >= 1.0, "the first step reads the CronJob");

    // No renew: at expiresAt the operator drops the holder and suspends the CronJob.
    let expired = eventually("the lease expires", holder_ttl_plus(SOON, &holder), || async {
        let lease = get_lease(&ns, "ingest").await;
        lease.status.filter(|s| s.state == LeaseState::Expired)
    })
    .await;
    assert!(expired.holders.is_empty());
    assert_eq!(expired.expired_at, Some(holder.expires_at));
    let lag = expired.last_transition_time.unwrap() - holder.expires_at;
    eprintln!("expiry lag (expiresAt -> expired status written): {} ms", lag.num_milliseconds());
    assert!(lag >= chrono::Duration::zero(), "never expires early: {lag}");
    eventually("the CronJob is suspended again", SOON, || async { suspended(&ns, "ingest").await.then_some(()) }).await;

    // status.target follows the target write.
    eventually("status.target records the release", SOON, || async {
        let target = get_lease(&ns, "ingest").await.status?.target?;
        (target.applied == AppliedAction::Release).then_some(())
    })
    .await;
    wait_condition(&ns, "ingest", "Held", ConditionStatus::False, "Expired").await;
    wait_condition(&ns, "ingest", "TargetReady", ConditionStatus::True, "ActionApplied").await;
    for reason in ["Acquired", "TargetResumed", "Expired", "TargetSuspended"] {
        assert_eq!(wait_event(&ns, "ingest", reason).await.0, "Normal", "{reason}");
    }

    // The metrics port and the probes.
    assert_eq!(operator.metric("berth_operator_expiry_lag_seconds_count").await, 1.0);
    assert_eq!(operator.metric("berth_operator_is_leader").await, 1.0);
    assert!(operator.metric("berth_operator_reconciliations_total").await >= 3.0);
    assert_eq!(operator.metric("berth_operator_target_actions_total{kind=\"CronJob\",action=\"release\"}").await, 1.0);
    // The expiry wrote the CronJob without reading it: its watch had confirmed the resume.
    assert_eq!(operator.metric(reads).await, read_before_expiry, "the expiry read the CronJob");
    assert_eq!(http_get(operator.probe_port, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(http_get(operator.probe_port, "/readyz").await, (200, "ok\n".to_owned()));
}

fn holder_ttl_plus(slack: Duration, holder: &berth_api::Holder) -> Duration {
    (holder.expires_at - Utc::now()).to_std().unwrap_or_default() + slack
}

/// Records every version of lease `name` that a watch from `version` sees,
/// one entry per write that changed it.
fn lease_writes(ns: &TestNamespace, name: &str, version: &str) -> Arc<Mutex<Vec<BerthLease>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (api, params, version, sink) = (
        ns.api::<BerthLease>(),
        WatchParams::default().fields(&format!("metadata.name={name}")),
        version.to_owned(),
        seen.clone(),
    );
    tokio::spawn(async move {
        let mut events = api.watch(&params, &version).await.expect("the lease watches").boxed();
        while let Some(event) = events.next().await {
            match event.expect("a watch event") {
                WatchEvent::Modified(lease) => sink.lock().unwrap().push(lease),
                WatchEvent::Bookmark(_) => {}
                other => panic!("unexpected watch event {other:?}"),
            }
        }
    });
    seen
}

fn versions(writes: &[BerthLease]) -> Vec<String> {
    writes.iter().map(|l| l.resource_version().unwrap_or_default()).collect()
}

/// The status of `lease` without the generation it was computed for.
fn status_but_generation(lease: &BerthLease) -> BerthLeaseStatus {
    let mut status = lease.status.clone().unwrap_or_default();
    status.observed_generation = None;
    for condition in &mut status.conditions {
        condition.observed_generation = None;
    }
    status
}

/// Proves that the operator wrote nothing to lease `name` after `last`, the
/// newest version it should have written (`writes` holds what the watch saw
/// after it). Waiting cannot prove that nothing happens, so a later change
/// serves as a barrier: an edit of `heartbeatIntervalSeconds`, which changes
/// no rule and no target, and which the operator answers with one write of
/// the new observed generation. Every write made before the operator handled
/// the edit shows up before that one; one merged into it would change more
/// than the observed generation.
async fn assert_nothing_written_after(
    ns: &TestNamespace,
    name: &str,
    writes: &Mutex<Vec<BerthLease>>,
    last: &BerthLease,
) {
    let edit = json!({"spec": {"heartbeatIntervalSeconds": last.spec.heartbeat_interval_seconds + 1}});
    let edited = ns.api::<BerthLease>().patch(name, &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap();
    let generation = edited.metadata.generation;
    let seen = eventually("the operator writes the edited generation", SOON, || async {
        let seen = writes.lock().unwrap().clone();
        seen.iter().any(|l| l.status.as_ref().is_some_and(|s| s.observed_generation == generation)).then_some(seen)
    })
    .await;
    assert_eq!(seen.len(), 2, "only the edit and the operator's answer to it: {:?}", versions(&seen));
    assert_eq!(seen[0].resource_version(), edited.resource_version(), "{:?}", versions(&seen));
    assert_eq!(status_but_generation(&seen[1]), status_but_generation(last), "only the generation changed");
}

#[tokio::test]
async fn grant_and_expiry_with_a_cronjob_target_cost_one_status_write_each() {
    let ns = TestNamespace::new("op-one-write").await;
    let operator = Operator::start(&ns.name, &[]);
    create_cronjob(&ns, "etl", true).await;
    create_lease(&ns, "etl", cronjob_target("etl")).await;
    wait_condition(&ns, "etl", "TargetReady", ConditionStatus::True, "ActionApplied").await;
    let settled = get_lease(&ns, "etl").await;
    let writes = lease_writes(&ns, "etl", &settled.resource_version().unwrap());
    let managers = |lease: &BerthLease| -> Vec<(String, String)> {
        let entries = lease.metadata.managed_fields.clone().unwrap_or_default();
        entries.into_iter().map(|e| (e.manager.unwrap_or_default(), e.subresource.unwrap_or_default())).collect()
    };
    let spec_managers: Vec<_> = managers(&settled).into_iter().filter(|(_, sub)| sub.is_empty()).collect();
    assert!(!spec_managers.is_empty(), "{:?}", settled.metadata.managed_fields);

    // A grant made elsewhere: the operator resumes the CronJob, then records
    // the Held condition and status.target in one write.
    let holder = acquire(&ns, "etl", "east/worker-1", 3).await;
    eventually("the grant is recorded", SOON, || async {
        let lease = get_lease(&ns, "etl").await;
        let target = lease.status.as_ref()?.target.as_ref()?;
        let held = condition(&lease, "Held")?;
        (target.applied == AppliedAction::Acquire && held.status == ConditionStatus::True).then_some(())
    })
    .await;
    assert!(!suspended(&ns, "etl").await);

    // The expiry: the CronJob is suspended first, then the expired holder
    // and status.target arrive in one write.
    let expired = eventually("the lease expires", holder_ttl_plus(SOON, &holder), || async {
        let lease = get_lease(&ns, "etl").await;
        lease.status.as_ref().is_some_and(|s| s.state == LeaseState::Expired).then_some(lease)
    })
    .await;
    assert!(suspended(&ns, "etl").await, "suspended before the expired status was written");

    // The expiry is the later change that bounds the grant: every write the
    // watch saw before it belongs to the grant.
    let at_expiry = eventually("the watch sees the expiry", SOON, || async {
        let seen = writes.lock().unwrap();
        seen.iter().position(|l| l.resource_version() == expired.resource_version())
    })
    .await;
    let mut grant: Vec<BerthLease> = writes.lock().unwrap().drain(..=at_expiry).collect();
    let expiry = grant.pop().unwrap();
    assert_eq!(grant.len(), 2, "the grant, then one write by the operator: {:?}", versions(&grant));
    let recorded = grant[1].status.clone().unwrap();
    assert_eq!(recorded.target.map(|t| t.applied), Some(AppliedAction::Acquire));
    assert_eq!(condition(&grant[1], "Held").map(|c| c.status), Some(ConditionStatus::True));

    assert_nothing_written_after(&ns, "etl", &writes, &expiry).await;
    let status = expiry.status.clone().unwrap();
    assert!(status.holders.is_empty());
    assert_eq!(status.expired_at, Some(holder.expires_at));
    assert_eq!(status.target.map(|t| t.applied), Some(AppliedAction::Release));
    let ready = condition(&expiry, "TargetReady").unwrap();
    assert_eq!(ready.message, "CronJob/etl has suspend=true (releaseAction)");
    let held = condition(&expiry, "Held").unwrap();
    assert_eq!((held.status, held.reason.as_str()), (ConditionStatus::False, "Expired"));
    assert_eq!(operator.metric("berth_operator_target_actions_total{kind=\"CronJob\",action=\"release\"}").await, 1.0);
    for reason in ["Acquired", "TargetResumed", "Expired", "TargetSuspended"] {
        wait_event(&ns, "etl", reason).await;
    }

    // The operator's status writes send no managedFields; kube-apiserver keeps
    // the stored ones and records berth-operator as a manager of the status.
    let after = managers(&get_lease(&ns, "etl").await);
    for manager in &spec_managers {
        assert!(after.contains(manager), "{manager:?} kept: {after:?}");
    }
    assert!(after.contains(&("berth-operator".to_owned(), "status".to_owned())), "{after:?}");
}

/// The events.k8s.io Events on lease `name` with `reason`, oldest first.
async fn events_with_reason(ns: &TestNamespace, name: &str, reason: &str) -> Vec<Event> {
    let list = ns.api::<Event>().list(&Default::default()).await.expect("events list");
    let mut events: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect();
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    events
}

/// Waits until lease `name` has `count` Events with `reason`, and returns them.
async fn wait_events(ns: &TestNamespace, name: &str, reason: &str, count: usize) -> Vec<Event> {
    // Events go out one at a time after the status writes: on a loaded
    // machine 20 of them took longer than SOON. Only a bound for failing.
    eventually(&format!("{count} {reason} Events on {name}"), Duration::from_secs(60), || async {
        Some(events_with_reason(ns, name, reason).await).filter(|events| events.len() >= count)
    })
    .await
}

#[tokio::test]
async fn each_grant_and_target_action_is_its_own_event_with_its_holder_and_token() {
    let ns = TestNamespace::new("op-events").await;
    let _operator = Operator::start(&ns.name, &[]);
    create_cronjob(&ns, "ingest", true).await;
    create_lease(&ns, "ingest", cronjob_target("ingest")).await;

    let first = acquire(&ns, "ingest", "east/worker-1", 60).await;
    wait_events(&ns, "ingest", "TargetResumed", 1).await;
    release(&ns, "ingest", &first).await;
    wait_events(&ns, "ingest", "TargetSuspended", 1).await;
    let second = acquire(&ns, "ingest", "demo/worker-1", 60).await;
    assert_eq!(second.fencing_token, first.fencing_token + 1);

    let notes = |events: Vec<Event>| -> Vec<(String, Option<i32>)> {
        events.into_iter().map(|e| (e.note.unwrap_or_default(), e.series.map(|s| s.count))).collect()
    };
    let acquired = notes(wait_events(&ns, "ingest", "Acquired", 2).await);
    assert_eq!(
        acquired,
        [
            (format!("granted to east/worker-1 with fencing token {}", first.fencing_token), None),
            (format!("granted to demo/worker-1 with fencing token {}", second.fencing_token), None),
        ],
        "two grants are two Events, each with its own holder and token"
    );
    let resumed = notes(wait_events(&ns, "ingest", "TargetResumed", 2).await);
    assert_eq!(
        resumed,
        [
            (format!("CronJob/ingest: suspend=false (acquireAction for fencing token {})", first.fencing_token), None),
            (format!("CronJob/ingest: suspend=false (acquireAction for fencing token {})", second.fencing_token), None),
        ]
    );
    let released = notes(wait_events(&ns, "ingest", "Released", 1).await);
    assert_eq!(released, [("released by its holder".to_owned(), None)]);
}

#[tokio::test]
async fn grants_made_and_released_between_reconciles_each_get_their_event() {
    let ns = TestNamespace::new("op-quick").await;
    let operator = Operator::start(&ns.name, &[]);
    create_lease(&ns, "quick", json!({})).await;
    // The operator watches the lease once it has reconciled it: a grant made
    // and ended before its watch starts is not seen (docs/design.md).
    wait_condition(&ns, "quick", "Held", ConditionStatus::False, "NotHeld").await;
    // Acquire and release back to back, as fast as the writes go: most
    // grants end before a reconcile reads the lease, but the watch shows each.
    let mut granted = Vec::new();
    for i in 1..=20 {
        let holder = acquire(&ns, "quick", &format!("worker-{i}"), 60).await;
        release(&ns, "quick", &holder).await;
        granted.push(format!("granted to worker-{i} with fencing token {}", holder.fencing_token));
    }
    let what = format!("{} Acquired Events on quick", granted.len());
    let show = || format!("{:?}\n{}", granted, operator.logs());
    let events = eventually_showing(&what, Duration::from_secs(60), show, || async {
        Some(events_with_reason(&ns, "quick", "Acquired").await).filter(|events| events.len() >= granted.len())
    })
    .await;
    let mut notes: Vec<String> = events.into_iter().map(|e| e.note.unwrap_or_default()).collect();
    notes.sort();
    granted.sort();
    assert_eq!(notes, granted, "one Acquired Event per grant, with its own holder and token");
}

#[tokio::test]
async fn leases_are_cached_without_managed_fields() {
    use kube::runtime::{reflector, watcher};

    let ns = TestNamespace::new("op-cache").await;
    create_lease(&ns, "plain", json!({})).await;
    acquire(&ns, "plain", "worker", 60).await;
    let stored = get_lease(&ns, "plain").await;
    assert!(stored.metadata.managed_fields.is_some_and(|m| m.len() >= 2), "kube-apiserver tracks the writers");

    // The operator's trigger stream, on the real watch of this namespace.
    let (store, writer) = reflector::store();
    let events = watcher(ns.api::<BerthLease>(), watcher::Config::default());
    let leases = berth_operator::controller::cached_leases(events, writer);
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(leases.for_each(move |lease| {
        let _ = seen_tx.send(lease.expect("a watch event"));
        std::future::ready(())
    }));
    let triggered = tokio::time::timeout(SOON, seen.recv()).await.expect("the watch answers").unwrap();
    assert_eq!(triggered.name_any(), "plain");
    assert_eq!(triggered.metadata.managed_fields, None);
    tokio::time::timeout(SOON, store.wait_until_ready()).await.expect("the store fills").unwrap();
    let cached = store.state();
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0].metadata.managed_fields, None);
    assert_eq!(cached[0].status, stored.status, "everything else is kept");
}

#[tokio::test]
async fn released_lease_suspends_cronjob() {
    let ns = TestNamespace::new("op-release").await;
    let _operator = Operator::start(&ns.name, &[]);
    create_cronjob(&ns, "batch", true).await;
    create_lease(&ns, "batch", cronjob_target("batch")).await;
    let holder = acquire(&ns, "batch", "worker", 60).await;
    eventually("the CronJob resumes", SOON, || async { (!suspended(&ns, "batch").await).then_some(()) }).await;

    release(&ns, "batch", &holder).await;
    eventually("the CronJob is suspended", SOON, || async { suspended(&ns, "batch").await.then_some(()) }).await;
    assert_eq!(get_lease(&ns, "batch").await.status.unwrap().state, LeaseState::Released);
    wait_condition(&ns, "batch", "Held", ConditionStatus::False, "Released").await;
    wait_event(&ns, "batch", "Released").await;
}

#[tokio::test]
async fn deployment_scales_to_n_on_acquire_and_zero_on_release() {
    let ns = TestNamespace::new("op-scale").await;
    let operator = Operator::start(&ns.name, &[]);
    create_deployment(&ns, "web", 0).await;
    create_lease(
        &ns,
        "web",
        json!({"target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
               "acquireAction": {"replicas": 3}, "releaseAction": {"replicas": 0}}),
    )
    .await;

    let holder = acquire(&ns, "web", "worker", 60).await;
    eventually("scaled to 3", SOON, || async { (replicas(&ns, "web").await == 3).then_some(()) }).await;
    // TargetReady already reads ActionApplied from the releaseAction: wait for the acquireAction's message.
    eventually("TargetReady for the acquireAction", SOON, || async {
        let ready = condition(&get_lease(&ns, "web").await, "TargetReady")?;
        (ready.status == ConditionStatus::True
            && ready.reason == "ActionApplied"
            && ready.message == "Deployment/web has replicas=3 (acquireAction)")
            .then_some(())
    })
    .await;
    let (_, note) = wait_event(&ns, "web", "TargetScaled").await;
    assert!(note.contains("replicas=3"), "{note}");

    // Settled: further reconciles (the Deployment watch keeps waking it) write nothing.
    let settled = get_lease(&ns, "web").await;
    let writes = lease_writes(&ns, "web", &settled.resource_version().unwrap());
    let ok_writes = operator.metric("berth_operator_status_writes_total{result=\"ok\"}").await;
    let by_hand = json!({"metadata": {"labels": {"touched": "yes"}}});
    ns.api::<Deployment>().patch("web", &PatchParams::default(), &Patch::Merge(&by_hand)).await.unwrap();
    assert_nothing_written_after(&ns, "web", &writes, &settled).await;
    // Counted just after the write returns, which may be after the watch saw it.
    eventually("one status write counted: the edited generation", SOON, || async {
        let ok_now = operator.metric("berth_operator_status_writes_total{result=\"ok\"}").await;
        (ok_now == ok_writes + 1.0).then_some(())
    })
    .await;

    release(&ns, "web", &holder).await;
    eventually("scaled to 0", SOON, || async { (replicas(&ns, "web").await == 0).then_some(()) }).await;
    eventually("status.target records the release", SOON, || async {
        let target = get_lease(&ns, "web").await.status?.target?;
        (target.applied == AppliedAction::Release).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_lease_applies_release_action_before_it_disappears() {
    let ns = TestNamespace::new("op-delete").await;
    let _operator = Operator::start(&ns.name, &[]);
    create_deployment(&ns, "api", 0).await;
    create_lease(
        &ns,
        "api",
        json!({"target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
               "acquireAction": {"replicas": 2}, "releaseAction": {"replicas": 0}}),
    )
    .await;
    acquire(&ns, "api", "worker", 600).await;
    eventually("scaled to 2", SOON, || async { (replicas(&ns, "api").await == 2).then_some(()) }).await;
    assert_eq!(get_lease(&ns, "api").await.metadata.finalizers, Some(vec!["berth.skaphos.io/release-target".into()]));

    ns.api::<BerthLease>().delete("api", &DeleteParams::default()).await.unwrap();
    eventually("the lease disappears", SOON, || async {
        ns.api::<BerthLease>().get_opt("api").await.unwrap().is_none().then_some(())
    })
    .await;
    // The finalizer let go only after releaseAction was applied.
    assert_eq!(replicas(&ns, "api").await, 0);
}

#[tokio::test]
async fn deleting_lease_whose_target_is_missing_is_not_blocked() {
    let ns = TestNamespace::new("op-delete-missing").await;
    let _operator = Operator::start(&ns.name, &[]);
    create_lease(&ns, "orphan", cronjob_target("never-created")).await;
    wait_condition(&ns, "orphan", "TargetReady", ConditionStatus::False, "TargetNotFound").await;
    ns.api::<BerthLease>().delete("orphan", &DeleteParams::default()).await.unwrap();
    eventually("the lease disappears", SOON, || async {
        ns.api::<BerthLease>().get_opt("orphan").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn finalizer_is_held_only_while_a_target_is_set() {
    let ns = TestNamespace::new("op-finalizer").await;
    let _operator = Operator::start(&ns.name, &[]);
    create_lease(&ns, "plain", json!({})).await;
    let seen = eventually("the operator records the generation", SOON, || async {
        let lease = get_lease(&ns, "plain").await;
        lease.status.as_ref().and_then(|s| s.observed_generation).map(|_| lease)
    })
    .await;
    assert_eq!(seen.metadata.finalizers, None);
    assert!(condition(&seen, "TargetReady").is_none());

    create_cronjob(&ns, "later", false).await;
    let api = ns.api::<BerthLease>();
    let add = json!({"spec": cronjob_target("later")});
    api.patch("plain", &PatchParams::default(), &Patch::Merge(&add)).await.unwrap();
    eventually("the finalizer is added", SOON, || async {
        get_lease(&ns, "plain").await.metadata.finalizers.filter(|f| !f.is_empty())
    })
    .await;
    eventually("the unheld lease suspends its new target", SOON, || async {
        suspended(&ns, "later").await.then_some(())
    })
    .await;

    let remove = json!({"spec": {"target": null, "acquireAction": null, "releaseAction": null}});
    api.patch("plain", &PatchParams::default(), &Patch::Merge(&remove)).await.unwrap();
    eventually("the finalizer is removed", SOON, || async {
        let lease = get_lease(&ns, "plain").await;
        lease.metadata.finalizers.as_ref().is_none_or(|f| f.is_empty()).then_some(())
    })
    .await;
    let lease = eventually("TargetReady goes with the target", SOON, || async {
        let l = get_lease(&ns, "plain").await;
        condition(&l, "TargetReady").is_none().then_some(l)
    })
    .await;
    assert!(lease.status.unwrap().target.is_none());
}

#[tokio::test]
async fn declared_holder_manifest_is_held_by_worker_east_1_until_it_expires() {
    let ns = TestNamespace::new("op-declared").await;
    let _operator = Operator::start(&ns.name, &[]);
    create_cronjob(&ns, "ingest-pipeline", true).await;

    let sample = std::fs::read_to_string(berth_testenv::repo_root().join("config/samples/ingest-coordinator.yaml"))
        .expect("the sample manifest exists");
    let manifest = sample
        .replace("namespace: pipeline", &format!("namespace: {}", ns.name))
        .replace("ttlSeconds: 30", "ttlSeconds: 4")
        .replace("heartbeatIntervalSeconds: 10", "heartbeatIntervalSeconds: 1");
    assert_ne!(manifest, sample);
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.yaml", ns.name));
    std::fs::write(&path, manifest).unwrap();
    let applied = ns.kubectl_output(&["apply", "-f", path.to_str().unwrap()]);
    assert!(applied.contains("ingest-coordinator"), "{applied}");

    let status = eventually("held by worker-east-1", SOON, || async {
        get_lease(&ns, "ingest-coordinator").await.status.filter(|s| s.state == LeaseState::Held)
    })
    .await;
    assert_eq!(status.holders[0].identity, "worker-east-1");
    assert_eq!(status.observed_generation, Some(1));
    eventually("the CronJob ends unsuspended", SOON, || async {
        (!suspended(&ns, "ingest-pipeline").await).then_some(())
    })
    .await;

    let status = eventually("expired without heartbeats", Duration::from_secs(4) + SOON, || async {
        get_lease(&ns, "ingest-coordinator").await.status.filter(|s| s.state == LeaseState::Expired)
    })
    .await;
    assert_eq!(status.transitions, 1);
    eventually("the CronJob is suspended again", SOON, || async {
        suspended(&ns, "ingest-pipeline").await.then_some(())
    })
    .await;
    // The same generation is not acquired again. Waiting cannot show that, so
    // a later change is the barrier: a hand edit that resumes the CronJob,
    // which the operator undoes (releaseAction) only while it does not hold
    // the lease; had it acquired it again, it would keep the CronJob resumed.
    let by_hand = json!({"spec": {"suspend": false}});
    ns.api::<CronJob>().patch("ingest-pipeline", &PatchParams::default(), &Patch::Merge(&by_hand)).await.unwrap();
    eventually("the hand edit is undone", SOON, || async { suspended(&ns, "ingest-pipeline").await.then_some(()) })
        .await;
    let status = get_lease(&ns, "ingest-coordinator").await.status.unwrap();
    assert_eq!((status.state, status.transitions), (LeaseState::Expired, 1));
}

#[tokio::test]
async fn hand_edited_target_drift_is_corrected() {
    let ns = TestNamespace::new("op-drift").await;
    let _operator = Operator::start(&ns.name, &[]);
    create_cronjob(&ns, "report", true).await;
    create_lease(&ns, "report", cronjob_target("report")).await;
    acquire(&ns, "report", "worker", 600).await;
    eventually("the CronJob resumes", SOON, || async { (!suspended(&ns, "report").await).then_some(()) }).await;

    let by_hand = json!({"spec": {"suspend": true}});
    ns.api::<CronJob>().patch("report", &PatchParams::apply("kubectl-edit"), &Patch::Merge(&by_hand)).await.unwrap();
    let edited = Instant::now();
    eventually("the drift is corrected", SOON, || async { (!suspended(&ns, "report").await).then_some(()) }).await;
    eprintln!("drift corrected {} ms after the hand edit", edited.elapsed().as_millis());
}

#[tokio::test]
async fn cronjob_resumed_after_long_suspension_without_starting_deadline_warns() {
    let ns = TestNamespace::new("op-42649").await;
    let _operator = Operator::start(&ns.name, &[]);
    create_cronjob(&ns, "nightly", true).await;
    // The CronJob last ran two days ago: every five minutes since is ~576 missed start times.
    let last = berth_api::time::format(&(Utc::now() - chrono::Duration::days(2)));
    let status = json!({"status": {"lastScheduleTime": last}});
    ns.api::<CronJob>().patch_status("nightly", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    create_lease(&ns, "nightly", cronjob_target("nightly")).await;
    acquire(&ns, "nightly", "worker", 600).await;

    let (type_, note) = wait_event(&ns, "nightly", "CronJobMayNotSchedule").await;
    assert_eq!(type_, "Warning");
    assert!(note.contains("startingDeadlineSeconds") && note.contains("kubernetes#42649"), "{note}");
    assert!(!suspended(&ns, "nightly").await, "the warning does not stop the resume");
}

#[tokio::test]
async fn operator_killed_with_a_forbidden_target_suspends_it_after_a_restart_with_rights() {
    let ns = TestNamespace::new("op-restart").await;
    create_cronjob(&ns, "etl", false).await;
    create_lease(&ns, "etl", cronjob_target("etl")).await;
    let holder = acquire(&ns, "etl", "worker", 2).await;

    // This identity may read the CronJob but not change it: the expiry is
    // written (with TargetForbidden, in the same write) and the target is
    // left as it was; there we kill it.
    let kubeconfig = restricted_kubeconfig(&ns, &["etl"], &[]);
    let mut first = Operator::start_as(&kubeconfig, &ns.name, &[]);
    eventually("the lease expires", holder_ttl_plus(SOON, &holder), || async {
        get_lease(&ns, "etl").await.status.filter(|s| s.state == LeaseState::Expired)
    })
    .await;
    let forbidden = wait_condition(&ns, "etl", "TargetReady", ConditionStatus::False, "TargetForbidden").await;
    assert!(forbidden.message.contains("may not change CronJob/etl"), "{}", forbidden.message);
    first.kill();
    assert!(!suspended(&ns, "etl").await, "killed with the expiry written and the target unchanged");

    let _second = Operator::start(&ns.name, &[]);
    eventually("the target converges after the restart", SOON, || async { suspended(&ns, "etl").await.then_some(()) })
        .await;
    wait_condition(&ns, "etl", "TargetReady", ConditionStatus::True, "ActionApplied").await;
}

#[tokio::test]
async fn only_the_leader_acts_and_the_standby_takes_over_when_it_is_killed() {
    let ns = TestNamespace::new("op-leader").await;
    let flags = [
        "--leader-elect",
        "--leader-elect-namespace",
        &ns.name,
        "--leader-elect-id",
        "berth-operator-test",
        "--leader-elect-lease-duration",
        "4",
        "--leader-elect-renew-deadline",
        "3",
        "--leader-elect-retry-period",
        "1",
    ];
    let mut operators = [Operator::start(&ns.name, &flags), Operator::start(&ns.name, &flags)];
    let leases = ns.api::<Lease>();
    let holder_pid = || async {
        let lease = leases.get_opt("berth-operator-test").await.unwrap()?;
        let identity = lease.spec?.holder_identity?;
        identity.rsplit('_').next()?.parse::<u32>().ok()
    };
    let leader_pid = eventually("a leader is elected", Duration::from_secs(10), holder_pid).await;
    let leader = operators.iter().position(|o| o.pid() == leader_pid).expect("the leader is one of ours");
    let standby = 1 - leader;

    create_cronjob(&ns, "ha", true).await;
    create_lease(&ns, "ha", cronjob_target("ha")).await;
    let holder = acquire(&ns, "ha", "worker", 600).await;
    eventually("the leader resumes the CronJob", SOON, || async { (!suspended(&ns, "ha").await).then_some(()) }).await;
    assert_eq!(operators[leader].metric("berth_operator_is_leader").await, 1.0);
    // A reconcile is counted when it ends, just after its target write.
    eventually("the leader counts its reconcile", SOON, || async {
        (operators[leader].metric("berth_operator_reconciliations_total").await >= 1.0).then_some(())
    })
    .await;
    assert_eq!(operators[standby].metric("berth_operator_is_leader").await, 0.0);
    assert_eq!(operators[standby].metric("berth_operator_reconciliations_total").await, 0.0, "the standby acts not");
    assert_eq!(http_get(operators[standby].probe_port, "/readyz").await.0, 200);

    operators[leader].kill();
    let killed = Instant::now();
    release(&ns, "ha", &holder).await;
    let standby_pid = operators[standby].pid();
    eventually("the standby becomes leader", Duration::from_secs(15), || async {
        (holder_pid().await == Some(standby_pid)).then_some(())
    })
    .await;
    eventually("the new leader suspends the CronJob", SOON, || async { suspended(&ns, "ha").await.then_some(()) })
        .await;
    eprintln!("failover: killed leader -> target released by the standby in {} ms", killed.elapsed().as_millis());
    assert_eq!(operators[standby].metric("berth_operator_is_leader").await, 1.0);

    // A graceful stop hands leadership back at once.
    assert!(operators[standby].terminate(), "SIGTERM exits cleanly");
    let lease = leases.get("berth-operator-test").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity, None, "released on shutdown");
}

#[tokio::test]
async fn missing_unsupported_mismatched_and_forbidden_targets_are_reported_while_other_leases_work() {
    let ns = TestNamespace::new("op-bad").await;
    create_cronjob(&ns, "good", true).await;
    create_cronjob(&ns, "secret", false).await;
    create_lease(&ns, "missing", cronjob_target("missing")).await;
    create_lease(
        &ns,
        "unsupported",
        json!({"target": {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent"},
               "releaseAction": {"replicas": 0}}),
    )
    .await;
    create_lease(
        &ns,
        "mismatch",
        json!({"target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
               "releaseAction": {"suspend": true}}),
    )
    .await;
    create_lease(&ns, "forbidden", cronjob_target("secret")).await;
    create_lease(&ns, "good", cronjob_target("good")).await;
    let kubeconfig = restricted_kubeconfig(&ns, &["good", "missing"], &["good", "missing"]);
    let operator = Operator::start_as(&kubeconfig, &ns.name, &[]);

    let cases = [
        ("missing", "TargetNotFound", "CronJob/missing does not exist"),
        ("unsupported", "UnsupportedTarget", "apps/v1 DaemonSet is not a supported target"),
        ("mismatch", "ActionNotSupported", "a Deployment is scaled, not suspended"),
        ("forbidden", "TargetForbidden", "may not read CronJob/secret"),
    ];
    for (lease, reason, message) in cases {
        let c = wait_condition(&ns, lease, "TargetReady", ConditionStatus::False, reason).await;
        assert!(c.message.contains(message), "{lease}: {}", c.message);
        let (type_, note) = wait_event(&ns, lease, reason).await;
        assert_eq!(type_, "Warning", "{lease}");
        assert!(note.contains(message), "{lease}: {note}");
    }
    assert!(!suspended(&ns, "secret").await, "the forbidden CronJob is untouched");

    // The operator keeps serving: a good lease is acted on, and a missing target
    // that appears later is handled at once (the target watch wakes its lease).
    acquire(&ns, "good", "worker", 600).await;
    eventually("the good CronJob resumes", SOON, || async { (!suspended(&ns, "good").await).then_some(()) }).await;
    create_cronjob(&ns, "missing", false).await;
    eventually("the late CronJob is suspended", SOON, || async { suspended(&ns, "missing").await.then_some(()) }).await;
    wait_condition(&ns, "missing", "TargetReady", ConditionStatus::True, "ActionApplied").await;
    assert!(operator.logs().matches("panicked").next().is_none(), "{}", operator.logs());
}

#[tokio::test]
async fn job_statefulset_and_replicaset_targets_follow_the_lease() {
    use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
    use k8s_openapi::api::batch::v1::Job;
    use kube::api::PostParams;

    let ns = TestNamespace::new("op-kinds").await;
    let _operator = Operator::start(&ns.name, &[]);
    let pod = json!({"metadata": {"labels": {"app": "k"}},
                     "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}});
    let always = json!({"metadata": {"labels": {"app": "k"}},
                        "spec": {"containers": [{"name": "main", "image": "busybox"}]}});
    let job: Job =
        serde_json::from_value(json!({"metadata": {"name": "once"}, "spec": {"suspend": true, "template": pod}}))
            .unwrap();
    ns.api::<Job>().create(&PostParams::default(), &job).await.unwrap();
    let sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "db"}, "spec": {
        "replicas": 0, "serviceName": "db", "selector": {"matchLabels": {"app": "k"}}, "template": always}}))
    .unwrap();
    ns.api::<StatefulSet>().create(&PostParams::default(), &sts).await.unwrap();
    let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "rs"}, "spec": {
        "replicas": 0, "selector": {"matchLabels": {"app": "k"}}, "template": always}}))
    .unwrap();
    ns.api::<ReplicaSet>().create(&PostParams::default(), &rs).await.unwrap();

    let scaled = |kind: &str, name: &str| {
        json!({"target": {"apiVersion": "apps/v1", "kind": kind, "name": name},
               "acquireAction": {"replicas": 2}, "releaseAction": {"replicas": 0}})
    };
    create_lease(
        &ns,
        "job",
        json!({"target": {"apiVersion": "batch/v1", "kind": "Job", "name": "once"},
               "acquireAction": {"suspend": false}, "releaseAction": {"suspend": true}}),
    )
    .await;
    create_lease(&ns, "sts", scaled("StatefulSet", "db")).await;
    create_lease(&ns, "rs", scaled("ReplicaSet", "rs")).await;
    for lease in ["job", "sts", "rs"] {
        acquire(&ns, lease, "worker", 600).await;
    }
    eventually("the Job, StatefulSet and ReplicaSet follow", SOON, || async {
        let job = ns.api::<Job>().get("once").await.unwrap().spec.and_then(|s| s.suspend);
        let sts = ns.api::<StatefulSet>().get_scale("db").await.unwrap().spec.and_then(|s| s.replicas);
        let rs = ns.api::<ReplicaSet>().get_scale("rs").await.unwrap().spec.and_then(|s| s.replicas);
        (job == Some(false) && sts == Some(2) && rs == Some(2)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn leader_whose_lease_is_taken_stops_acting_and_exits() {
    let ns = TestNamespace::new("op-lost").await;
    let flags = [
        "--leader-elect",
        "--leader-elect-namespace",
        &ns.name,
        "--leader-elect-lease-duration",
        "4",
        "--leader-elect-renew-deadline",
        "3",
        "--leader-elect-retry-period",
        "1",
    ];
    let mut operator = Operator::start(&ns.name, &flags);
    let leases = ns.api::<Lease>();
    let mut lease = eventually("it leads", Duration::from_secs(10), || async {
        leases
            .get_opt("berth-operator")
            .await
            .unwrap()
            .filter(|l| l.spec.as_ref().is_some_and(|s| s.holder_identity.is_some()))
    })
    .await;
    // Another replica wins the Lease (as after a partition): this one must stop.
    lease.spec.as_mut().unwrap().holder_identity = Some("someone-else".into());
    leases.replace("berth-operator", &Default::default(), &lease).await.unwrap();
    let success = eventually("it exits", SOON, || std::future::ready(operator.exited())).await;
    assert!(!success, "losing leadership is a failure exit, so that the pod restarts as a standby");
    assert!(operator.logs().contains("lost the leader Lease"), "{}", operator.logs());
}
