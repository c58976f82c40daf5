//! What `/readyz` promises on a fresh install: kube-apiserver holds creates of
//! a custom resource for 2 s after its CRD is Established, and a ready
//! apiserver has already waited that out with a dry-run create, so no
//! holder's first acquire does (`src/warmup.rs`).

mod common;

use berth_api::BerthLease;
use berth_apiserver::warmup::PROBE_NAME;
use berth_testenv::apiserver::{ApiServer, Tenant};
use berth_testenv::clusters::Cluster;
use berth_testenv::prometheus;
use common::{https_client, post_json};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use serde_json::json;

/// kube-apiserver's count of requests matching `labels`, from its `/metrics`.
async fn kube_requests(client: &kube::Client, labels: &[&str]) -> f64 {
    let request = axum::http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(request).await.unwrap();
    prometheus::sum(&text, "apiserver_request_total", labels)
}

#[tokio::test]
async fn ready_only_after_a_dry_run_create_passed_the_new_crds_delay() {
    // A control plane of this test's own, so that the CRD below is brand new.
    let cluster = Cluster::up(&format!("fresh-crd-{}", std::process::id())).unwrap();
    let client = cluster.client_with_crd().await.unwrap();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "fresh"}})).unwrap();
    Api::all(client.clone()).create(&Default::default(), &ns).await.unwrap();
    let dry_run_creates = ["resource=\"berthleases\"", "verb=\"POST\"", "dry_run=\"All\"", "subresource=\"\""];
    assert_eq!(kube_requests(&client, &dry_run_creates).await, 0.0);

    // Started at once after the CRD became Established; `start_as` returns when /readyz answers 200.
    let server = ApiServer::start_as(&cluster.kubeconfig, vec![Tenant::new("east", &[])], &[], &[]);
    assert_eq!(kube_requests(&client, &dry_run_creates).await, 1.0, "{}", server.log());
    let probe = Api::<BerthLease>::namespaced(client.clone(), "default").get_opt(PROBE_NAME).await.unwrap();
    assert!(probe.is_none(), "the dry run stored a lease");
    assert!(server.log().contains("create path answered a dry run"), "{}", server.log());

    let (status, body) = post_json(
        &https_client(&server.ca_file),
        &format!("{}/v1alpha1/namespaces/fresh/leases/first/acquire", server.url),
        server.key("east"),
        &json!({"holder": "east", "ttlSeconds": 30}),
    )
    .await;
    assert_eq!((status, body["fencingToken"].as_i64()), (200, Some(1)), "{body}");
    let creates = ["resource=\"berthleases\"", "verb=\"POST\"", "dry_run=\"\"", "code=\"201\""];
    assert_eq!(kube_requests(&client, &creates).await, 1.0);
    drop(server);
    cluster.down().unwrap();
}
