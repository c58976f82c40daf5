//! The operator chart's ValidatingAdmissionPolicy, in a real kube-apiserver
//! (the leases of the namespace are its parameters):
//! a user's write that starts or scales up a gated target is refused with a
//! message that names the lease, through the workload and through `/scale`;
//! the operator's own scale-up passes, and so do a scale-down and a write
//! that does not touch activity. The operator runs as the chart's
//! ServiceAccount, with only the chart's RBAC.

// Shared with tests/operator.rs; this file uses only part of it.
#[allow(dead_code)]
mod support;

use std::process::Output;
use std::time::Duration;

use berth_testenv::{TestNamespace, kubectl, service_account_kubeconfig};
use serde_json::json;
use support::{
    Operator, apply_chart, create_cronjob, create_deployment, create_lease, cronjob_target, eventually, replicas,
};

/// Applies the operator chart's ServiceAccount, RBAC and admission policy
/// for `release`, the policy bound to `namespace` only (the control plane is
/// shared with other tests).
fn install(release: &str, namespace: &str) {
    let selector = json!({"matchLabels": {"kubernetes.io/metadata.name": namespace}});
    let args = [
        format!("--set-json=admissionPolicy.namespaceSelector={selector}"),
        "--show-only=templates/serviceaccount.yaml".to_owned(),
        "--show-only=templates/rbac.yaml".to_owned(),
        "--show-only=templates/admission-policy.yaml".to_owned(),
    ];
    apply_chart("berth-operator", release, namespace, &args);
}

/// `kubectl ARGS -n <ns>` as the test's admin user: not the operator.
fn user(ns: &TestNamespace, args: &[&str]) -> Output {
    kubectl().args(args).args(["-n", &ns.name]).output().expect("kubectl runs")
}

fn refused(output: &Output) -> String {
    assert!(!output.status.success(), "the write passed: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn passed(output: &Output) {
    assert!(output.status.success(), "the write was refused: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn only_the_operator_starts_or_scales_up_a_gated_target() {
    let ns = TestNamespace::new("admission").await;
    let release = format!("{}-berth-operator", ns.name);
    let _policy = Policy(format!("{release}-gated-targets"));
    install(&release, &ns.name);
    let operator = Operator::start_as(&service_account_kubeconfig(&ns.name, &release), &ns.name, &[]);

    create_deployment(&ns, "web", 0).await;
    let gate = json!({
        "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "acquireAction": {"replicas": 2}, "releaseAction": {"replicas": 0},
    });
    create_lease(&ns, "web-lease", gate).await;
    create_cronjob(&ns, "nightly", true).await;
    create_lease(&ns, "nightly-lease", cronjob_target("nightly")).await;
    // kube-apiserver loads a new policy and its parameters (the leases)
    // asynchronously; a dry run goes through admission and changes nothing.
    eventually("the policy is in force", Duration::from_secs(60), || async {
        (!user(&ns, &["scale", "deployment/web", "--replicas=3", "--dry-run=server"]).status.success()).then_some(())
    })
    .await;

    // Through /scale, and through the workload itself: refused, naming the lease.
    let message = refused(&user(&ns, &["scale", "deployment/web", "--replicas=3"]));
    assert!(message.contains("deployments/web is gated by BerthLease web-lease"), "{message}");
    assert!(message.contains("To run it, acquire the lease"), "{message}");
    let message = refused(&user(&ns, &["patch", "deployment/web", "-p", r#"{"spec":{"replicas":3}}"#]));
    assert!(message.contains("BerthLease web-lease"), "{message}");
    let message = refused(&user(&ns, &["patch", "cronjob/nightly", "-p", r#"{"spec":{"suspend":false}}"#]));
    assert!(message.contains("cronjobs/nightly is gated by BerthLease nightly-lease"), "{message}");
    assert_eq!(replicas(&ns, "web").await, 0, "a refused write changed nothing");
    // A write that does not touch activity passes, and so does suspending.
    passed(&user(&ns, &["label", "deployment/web", "team=ingest"]));
    passed(&user(&ns, &["patch", "cronjob/nightly", "-p", r#"{"spec":{"suspend":true}}"#]));

    // The operator's own scale-up passes: the lease is held.
    let declared = json!({"spec": {"holderIdentity": "team/worker"}});
    ns.api::<berth_api::BerthLease>()
        .patch("web-lease", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&declared))
        .await
        .unwrap();
    eventually("the operator scales the held target up", Duration::from_secs(30), || async {
        (replicas(&ns, "web").await == 2).then_some(())
    })
    .await;
    // Scaling down is always allowed, even by a user.
    passed(&user(&ns, &["scale", "deployment/web", "--replicas=1"]));
    let logs = operator.logs();
    assert!(!logs.contains("forbidden"), "the operator was refused something:\n{logs}");
}

/// The policy and its binding, cluster-wide objects (bound to one test
/// namespace), deleted when the test ends, however it ends.
struct Policy(String);

impl Drop for Policy {
    fn drop(&mut self) {
        for kind in ["validatingadmissionpolicybinding", "validatingadmissionpolicy"] {
            let _ = kubectl().args(["delete", kind, &self.0, "--ignore-not-found"]).output();
        }
    }
}
