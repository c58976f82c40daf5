//! Service-account identities on the test control plane are bound by RBAC.

use std::time::Duration;

use berth_api::BerthLease;
use berth_testenv::{TestNamespace, kubectl, service_account_kubeconfig};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

async fn client_from(path: &std::path::Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn service_account_token_is_forbidden_until_rbac_allows_it() {
    let ns = TestNamespace::new("identity").await;
    let run = |args: &[&str]| {
        let out = kubectl().args(args).args(["-n", &ns.name]).output().unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["create", "serviceaccount", "reader"]);
    let leases: Api<BerthLease> =
        Api::namespaced(client_from(&service_account_kubeconfig(&ns.name, "reader")).await, &ns.name);

    let err = leases.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 403), "{err}");

    run(&["create", "role", "reader", "--verb=list", "--resource=berthleases.berth.skaphos.io"]);
    let sa = format!("--serviceaccount={}:reader", ns.name);
    run(&["create", "rolebinding", "reader", "--role=reader", &sa]);
    // The RBAC authorizer reads bindings through an informer: allow it a moment.
    let list = berth_testenv::eventually("the RoleBinding lets reader list", Duration::from_secs(30), || async {
        leases.list(&ListParams::default()).await.ok()
    })
    .await;
    assert!(list.items.is_empty());
}
