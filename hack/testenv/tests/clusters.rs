//! Several named control planes: `east` and `west` are distinct API servers,
//! each with the BerthLease CRD, and a paused one hangs until resumed.

use std::time::Duration;

use berth_api::BerthLease;
use berth_testenv::clusters::Cluster;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;

/// The tests share `west`, and one pauses it.
static WEST: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn two_named_clusters_are_distinct_api_servers() {
    let _west = WEST.lock().await;
    let (east, west) = (Cluster::up("east").unwrap(), Cluster::up("west").unwrap());
    assert_ne!(east.server().unwrap(), west.server().unwrap());
    assert_ne!(east.dir, west.dir);

    let on_east = east.namespace("distinct").await.unwrap();
    let west_client = west.client_with_crd().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(west_client.clone());
    assert!(namespaces.get_opt(&on_east.name).await.unwrap().is_none(), "west sees east's namespace");
    assert!(Api::<Namespace>::all(on_east.client.clone()).get_opt(&on_east.name).await.unwrap().is_some());

    // The CRD is served on both.
    let on_west = west.namespace("distinct").await.unwrap();
    assert!(on_east.api::<BerthLease>().list(&Default::default()).await.unwrap().items.is_empty());
    assert!(on_west.api::<BerthLease>().list(&Default::default()).await.unwrap().items.is_empty());
    let listed = on_west.kubectl_output(&["get", "berthleases", "-o", "name"]);
    assert!(listed.trim().is_empty(), "{listed}");

    // Starting again reuses the running plane.
    let again = Cluster::up("east").unwrap();
    assert_eq!(again.server().unwrap(), east.server().unwrap());
}

#[tokio::test]
async fn a_paused_cluster_hangs_until_resumed() {
    let _west = WEST.lock().await;
    let cluster = Cluster::up("west").unwrap();
    let client = cluster.client_with_crd().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client);
    namespaces.list(&Default::default()).await.unwrap();

    cluster.pause().unwrap();
    let paused = tokio::time::timeout(Duration::from_secs(2), namespaces.list(&Default::default())).await;
    cluster.resume().unwrap();
    assert!(paused.is_err(), "a paused kube-apiserver answered: {paused:?}");
    tokio::time::timeout(Duration::from_secs(30), namespaces.list(&Default::default()))
        .await
        .expect("answers again after resume")
        .unwrap();
}

#[test]
fn cluster_names_are_checked() {
    for bad in ["", "East", "../x", "-a", "a b"] {
        assert!(Cluster::up(bad).is_err(), "{bad:?} accepted");
    }
}
