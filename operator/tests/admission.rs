//! The operator chart's admission policies, in a real kube-apiserver
//! (the leases of the namespace are its parameters):
//! a user's write that starts or scales up a gated target is refused with a
//! message that names the lease, through the workload and through `/scale`;
//! the operator's own scale-up passes, and so do a scale-down and a write
//! that does not touch activity. And the chart's pod gate: a labelled pod is
//! created behind the scheduling gate, which only the operator removes, and
//! only while the pod's lease is held. The operator runs as the chart's
//! ServiceAccount, with only the chart's RBAC.

// Shared with tests/operator.rs; this file uses only part of it.
#[allow(dead_code)]
mod support;

use std::process::Output;
use std::time::Duration;

use berth_api::crd::{LEASE_LABEL, SCHEDULING_GATE};
use berth_testenv::{TestNamespace, kubectl, service_account_kubeconfig};
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use serde_json::json;
use support::{
    Operator, acquire, apply_chart, create_cronjob, create_deployment, create_lease, cronjob_target, eventually,
    release, replicas,
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
        "--show-only=templates/pod-gate-policy.yaml".to_owned(),
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
    let _policies = [Policy(format!("{release}-gated-targets")), Policy(format!("{release}-pod-gate"))];
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

/// A pod labelled for `lease`; kube-apiserver sets no node, so the gate's
/// removal and the pod's deletion are what shows.
async fn create_labelled_pod(ns: &TestNamespace, name: &str, lease: &str) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {LEASE_LABEL: lease}},
        "spec": {"containers": [{"name": "app", "image": "berth.local/busybox:dev"}]},
    }))
    .expect("a pod");
    ns.api::<Pod>().create(&PostParams::default(), &pod).await.expect("pod creates")
}

fn gated(pod: &Pod) -> bool {
    let gates = pod.spec.as_ref().and_then(|s| s.scheduling_gates.as_ref());
    gates.is_some_and(|gates| gates.iter().any(|g| g.name == SCHEDULING_GATE))
}

#[tokio::test]
async fn a_labelled_pod_waits_at_the_gate_until_its_lease_is_held() {
    let ns = TestNamespace::new("pod-gate").await;
    let release_name = format!("{}-berth-operator", ns.name);
    let _policies = [Policy(format!("{release_name}-gated-targets")), Policy(format!("{release_name}-pod-gate"))];
    install(&release_name, &ns.name);
    let operator = Operator::start_as(&service_account_kubeconfig(&ns.name, &release_name), &ns.name, &[]);
    create_lease(&ns, "idle", json!({})).await;
    create_lease(&ns, "held", json!({})).await;
    let pods = ns.api::<Pod>();
    // Until the mutating policy is in force, a dry run creates a pod without the gate.
    eventually("the pod gate is in force", Duration::from_secs(60), || async {
        let probe: Pod = serde_json::from_value(json!({
            "metadata": {"name": "probe", "labels": {LEASE_LABEL: "idle"}},
            "spec": {"containers": [{"name": "app", "image": "berth.local/busybox:dev"}]},
        }))
        .expect("a pod");
        let dry = PostParams { dry_run: true, ..PostParams::default() };
        pods.create(&dry, &probe).await.ok().filter(gated).map(|_| ())
    })
    .await;

    // Created gated, whoever creates them; an unlabelled pod is not.
    let waiting = create_labelled_pod(&ns, "waiting", "idle").await;
    assert!(gated(&waiting), "{:?}", waiting.spec);
    let plain: Pod = serde_json::from_value(json!({
        "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "app", "image": "berth.local/busybox:dev"}]},
    }))
    .expect("a pod");
    assert!(!gated(&pods.create(&PostParams::default(), &plain).await.expect("pod creates")));
    let runner = create_labelled_pod(&ns, "runner", "held").await;
    assert!(gated(&runner));

    // Nobody but the operator removes the gate, once kube-apiserver has
    // loaded the validating half too (a dry run goes through admission).
    let remove_gate =
        ["patch", "pod/waiting", "--type=json", "-p", r#"[{"op":"remove","path":"/spec/schedulingGates/0"}]"#];
    eventually("the gate's removal is refused", Duration::from_secs(60), || async {
        let dry: Vec<&str> = remove_gate.iter().copied().chain(["--dry-run=server"]).collect();
        (!user(&ns, &dry).status.success()).then_some(())
    })
    .await;
    let message = refused(&user(&ns, &remove_gate));
    assert!(message.contains("pod waiting waits for BerthLease idle"), "{message}");
    assert!(message.contains("Acquire the lease to run it"), "{message}");

    // A held lease: the operator lets its pod through, and only its pod (both
    // were in the pass that ungated it, and the other was created first).
    let holder = acquire(&ns, "held", "team/worker", 300).await;
    eventually("the held lease's pod is ungated", Duration::from_secs(30), || async {
        (!gated(&pods.get("runner").await.ok()?)).then_some(())
    })
    .await;
    assert!(gated(&pods.get("waiting").await.expect("pod reads")), "a pod of a lease not held was ungated");

    // Released: the pod it let through is deleted; one created now waits.
    release(&ns, "held", &holder).await;
    eventually("the released lease's pod is deleted", Duration::from_secs(30), || async {
        pods.get_opt("runner").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(gated(&create_labelled_pod(&ns, "runner", "held").await));
    let logs = operator.logs();
    assert!(!logs.contains("forbidden"), "the operator was refused something:\n{logs}");
}

/// A policy and its binding, cluster-wide objects (bound to one test
/// namespace), deleted when the test ends, however it ends.
struct Policy(String);

impl Drop for Policy {
    fn drop(&mut self) {
        for kind in [
            "validatingadmissionpolicybinding",
            "validatingadmissionpolicy",
            "mutatingadmissionpolicybinding",
            "mutatingadmissionpolicy",
        ] {
            let _ = kubectl().args(["delete", kind, &self.0, "--ignore-not-found"]).output();
        }
    }
}
