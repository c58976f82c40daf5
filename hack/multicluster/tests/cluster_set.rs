//! Member mode without an admin pre-step: the members' tenants form a
//! cluster set, nothing is made by hand in the coordination cluster, and the
//! same manifests are applied in every member. The first member's acquire
//! creates the global lease, shared by the set: one cluster runs, the other
//! sees the lease held and waits.

use std::time::Duration;

use berth_api::BerthLease;
use berth_api::crd::{CLUSTER_SET_LABEL, TENANT_LABEL};
use berth_multicluster::overlap::running_intervals;
use berth_multicluster::stack::{Config, LEASE, Stack};
use kube::ResourceExt;
use kube::api::Api;

/// Failure bound for the stack's first grant (operators start, the first acquire).
const FIRST_GRANT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_cluster_set_shares_the_global_lease_that_the_first_member_creates() {
    let config = Config { cluster_set: Some("members".into()), ..Config::new() };
    let stack = Stack::start(config, "mc-set").await;
    let (holder, _) = stack.wait_for_runner(stack.started, FIRST_GRANT).await;
    let global = stack.wait_heartbeats(3, FIRST_GRANT).await;
    assert_eq!(global.identity, holder, "the global holder is the cluster that runs:\n{}", stack.logs());

    let api: Api<BerthLease> = Api::namespaced(stack.coordination.client().await.unwrap(), &stack.namespace);
    let lease = api.get(LEASE).await.unwrap();
    assert_eq!(lease.labels().get(CLUSTER_SET_LABEL).map(String::as_str), Some("members"), "{:?}", lease.labels());
    assert!(!lease.labels().contains_key(TENANT_LABEL), "{:?}", lease.labels());

    // The other member saw the lease held by its peer (not hidden from it):
    // its claim waits as standby, and its target never ran.
    let other = stack.members.iter().find(|m| m.id != holder).expect("two members");
    berth_testenv::eventually("the other member's claim is standby", FIRST_GRANT, || async {
        (other.lease_state(&stack.namespace).await.as_deref() == Some("standby")).then_some(())
    })
    .await;
    assert!(running_intervals(&other.id, &other.target.observations()).is_empty(), "{}", stack.logs());
    assert!(stack.overlaps().is_empty(), "clusters ran at once: {:?}", stack.histories());
}
