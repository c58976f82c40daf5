//! Cluster sets through the router, on a real control plane: a lease that a
//! tenant of a set creates by acquiring it belongs to the set, so every
//! member sees and may hold it, and no other tenant does.

mod common;

use std::time::Duration;

use berth_api::BerthLease;
use berth_api::crd::{CLUSTER_SET_LABEL, TENANT_LABEL};
use common::{Harness, KEY_ANY, KEY_EAST, KEY_SET_EAST, KEY_SET_WEST};
use kube::ResourceExt;
use serde_json::json;

#[tokio::test]
async fn a_lease_created_by_a_member_of_a_cluster_set_is_shared_by_the_set_alone() {
    let h = Harness::new("cluster-set").await;
    let granted = h.post("global", "acquire", KEY_SET_EAST, json!({"holder": "set-east", "ttlSeconds": 60})).await;
    assert_eq!((granted.json["acquired"].as_bool(), granted.json["fencingToken"].as_i64()), (Some(true), Some(1)));
    let stored = h.ns.api::<BerthLease>().get("global").await.unwrap();
    assert_eq!(stored.labels().get(CLUSTER_SET_LABEL).map(String::as_str), Some("members"), "{:?}", stored.labels());
    assert!(!stored.labels().contains_key(TENANT_LABEL), "{:?}", stored.labels());
    h.wait_cached("global").await;

    // The other member sees it, is refused while it is held, and lists it.
    let view = h.get(&h.lease_path("global", ""), KEY_SET_WEST).await;
    assert_eq!((view.status.as_u16(), view.json["holders"][0]["identity"].as_str()), (200, Some("set-east")));
    let refused = h.post("global", "acquire", KEY_SET_WEST, json!({"holder": "set-west", "ttlSeconds": 60})).await;
    assert_eq!((refused.status.as_u16(), refused.json["acquired"].as_bool()), (200, Some(false)), "{refused:?}");
    let list = h.get(&format!("/v1alpha1/namespaces/{}/leases", h.ns.name), KEY_SET_WEST).await;
    assert!(list.text.contains("\"global\""), "{}", list.text);

    // Tenants outside the set never see it, and may not touch it.
    for (key, holder) in [(KEY_EAST, "east"), (KEY_ANY, "any")] {
        let get = h.get(&h.lease_path("global", ""), key).await;
        assert_eq!((get.status.as_u16(), get.error()), (404, "lease not found"), "{holder}");
        let reply = h.post("global", "acquire", key, json!({"holder": holder, "ttlSeconds": 5})).await;
        assert_eq!(reply.status, 403, "{holder}: {reply:?}");
    }

    // The holder releases; the other member takes it over with the next
    // token once the apiserver's cache shows the release.
    let released = h.post("global", "release", KEY_SET_EAST, json!({"holder": "set-east", "fencingToken": 1})).await;
    assert_eq!(released.status, 204, "{released:?}");
    let token = berth_testenv::eventually("set-west takes the lease over", Duration::from_secs(30), || async {
        let taken = h.post("global", "acquire", KEY_SET_WEST, json!({"holder": "set-west", "ttlSeconds": 60})).await;
        taken.json["acquired"].as_bool().unwrap_or(false).then(|| taken.json["fencingToken"].as_i64())
    })
    .await;
    assert_eq!(token, Some(2));
}
