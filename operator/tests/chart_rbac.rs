//! The Helm charts' RBAC is enough, proven rather than assumed: the apiserver
//! and the operator run as the charts' ServiceAccounts, with tokens from the
//! TokenRequest API and only the rendered ServiceAccount and RBAC objects
//! applied, and the lease lifecycle and target actions still work.

// Shared with tests/operator.rs; this file uses only part of it.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use berth_api::BerthLease;
use berth_api::wire::{AcquireRequest, ReleaseRequest, RenewRequest};
use berth_client::Client;
use berth_testenv::apiserver::{ApiServer, Tenant};
use berth_testenv::{TestNamespace, service_account_kubeconfig};
use kube::api::DeleteParams;
use support::{Operator, apply_chart, create_cronjob, create_lease, cronjob_target, eventually, suspended};

/// Renders `chart`'s ServiceAccount and RBAC for release `release` in `namespace`
/// and applies them with the admin identity.
fn apply_chart_rbac(chart: &str, release: &str, namespace: &str) {
    let mut args =
        vec!["--show-only=templates/serviceaccount.yaml".to_owned(), "--show-only=templates/rbac.yaml".to_owned()];
    if chart == "berth-operator" {
        args.push("--show-only=templates/leader-election-rbac.yaml".to_owned());
    }
    apply_chart(chart, release, namespace, &args);
}

#[tokio::test]
async fn apiserver_and_operator_work_with_only_the_charts_rbac() {
    let ns = TestNamespace::new("chart-rbac").await;
    // Releases named after the chart, prefixed by the namespace: the chart then
    // names the ServiceAccount and the cluster-wide roles after the release.
    let apiserver_release = format!("{}-berth-apiserver", ns.name);
    let operator_release = format!("{}-berth-operator", ns.name);
    apply_chart_rbac("berth-apiserver", &apiserver_release, &ns.name);
    apply_chart_rbac("berth-operator", &operator_release, &ns.name);
    let apiserver_identity = service_account_kubeconfig(&ns.name, &apiserver_release);
    let operator_identity = service_account_kubeconfig(&ns.name, &operator_release);

    let operator =
        Operator::start_as(&operator_identity, &ns.name, &["--leader-elect", "--leader-elect-namespace", &ns.name]);
    let tenant = Tenant::new("team", &[&ns.name]);
    let apiserver = ApiServer::start_as(&apiserver_identity, vec![tenant], &[&ns.name], &[]);
    let client = Client::builder(&apiserver.url)
        .api_key(apiserver.key("team"))
        .ca_file(&apiserver.ca_file)
        .unwrap()
        .build()
        .unwrap();

    // A lease the apiserver creates on first acquire (create), then renews and releases (status).
    let acquire = |ttl_seconds| AcquireRequest { holder: "team/worker".into(), ttl_seconds, ..Default::default() };
    let grant = client.acquire(&ns.name, "created-by-acquire", &acquire(30)).await.expect("acquire creates the lease");
    let renew = RenewRequest { holder: "team/worker".into(), fencing_token: grant.fencing_token, ttl_seconds: 30 };
    client.renew(&ns.name, "created-by-acquire", &renew).await.expect("renew");
    let release = ReleaseRequest { holder: "team/worker".into(), fencing_token: grant.fencing_token };
    client.release(&ns.name, "created-by-acquire", &release).await.expect("release");
    assert_eq!(client.get(&ns.name, "created-by-acquire").await.unwrap().state, berth_api::LeaseState::Released);

    // A lease with a CronJob target: the operator (finalizer, status, patch) follows the lease.
    create_cronjob(&ns, "nightly", true).await;
    create_lease(&ns, "gated", cronjob_target("nightly")).await;
    let within = Duration::from_secs(10);
    let grant = client.acquire(&ns.name, "gated", &acquire(30)).await.expect("acquire");
    eventually("the CronJob resumes on acquire", within, || async { (!suspended(&ns, "nightly").await).then_some(()) })
        .await;
    let release = ReleaseRequest { holder: "team/worker".into(), fencing_token: grant.fencing_token };
    client.release(&ns.name, "gated", &release).await.expect("release");
    eventually("the CronJob is suspended on release", within, || async {
        suspended(&ns, "nightly").await.then_some(())
    })
    .await;

    // Deletion: the finalizer applies releaseAction, then lets the object go.
    client.acquire(&ns.name, "gated", &acquire(30)).await.expect("acquire again");
    eventually("the CronJob resumes again", within, || async { (!suspended(&ns, "nightly").await).then_some(()) })
        .await;
    ns.api::<BerthLease>().delete("gated", &DeleteParams::default()).await.expect("delete");
    eventually("the lease is gone", within, || async {
        ns.api::<BerthLease>().get_opt("gated").await.expect("lease reads").is_none().then_some(())
    })
    .await;
    assert!(suspended(&ns, "nightly").await, "releaseAction applied before the lease went away");

    let logs = operator.logs();
    assert!(!logs.contains("forbidden"), "the operator was refused something:\n{logs}");
    assert!(!apiserver.log().contains("forbidden"), "the apiserver was refused something:\n{}", apiserver.log());
}
