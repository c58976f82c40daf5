//! The operator chart's pod gate in a member plane: its MutatingAdmissionPolicy
//! (a pod with the lease label is created behind the scheduling gate), bound
//! to one namespace. The chart's ValidatingAdmissionPolicy, which lets only
//! the operator's ServiceAccount remove the gate, is left out: the stack's
//! operators run as the plane's admin (`operator/tests/admission.rs` proves
//! that policy).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_api::crd::{LEASE_LABEL, SCHEDULING_GATE};
use berth_testenv::clusters::Cluster;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

/// The policy and its binding in one plane, deleted on drop.
pub struct PodGatePolicy {
    kubeconfig: std::path::PathBuf,
    name: String,
}

impl PodGatePolicy {
    /// Renders the chart's pod gate for a release named after `namespace`,
    /// applies its mutating half to `cluster`, and returns once kube-apiserver
    /// gates a labelled pod of `namespace` (a dry run).
    pub async fn install(cluster: &Cluster, client: &Client, namespace: &str) -> Self {
        let release = format!("{namespace}-berth-operator");
        let selector = json!({"matchLabels": {"kubernetes.io/metadata.name": namespace}});
        let rendered = Command::new(berth_testenv::helm())
            .args(["template", &release])
            .arg(berth_testenv::repo_root().join("deploy/helm/berth-operator"))
            .arg(format!("--namespace={namespace}"))
            .arg(format!("--set-json=admissionPolicy.namespaceSelector={selector}"))
            .arg("--show-only=templates/pod-gate-policy.yaml")
            .output()
            .expect("helm runs");
        assert!(rendered.status.success(), "helm template: {}", String::from_utf8_lossy(&rendered.stderr));
        let text = String::from_utf8(rendered.stdout).expect("helm prints UTF-8");
        let mutating: Vec<&str> =
            text.split("\n---").filter(|doc| doc.contains("kind: MutatingAdmissionPolicy")).collect();
        assert_eq!(mutating.len(), 2, "the policy and its binding:\n{text}");
        let policy = Self { kubeconfig: cluster.kubeconfig.clone(), name: format!("{release}-pod-gate") };
        let mut apply =
            policy.kubectl().args(["apply", "-f", "-"]).stdin(Stdio::piped()).spawn().expect("kubectl runs");
        apply.stdin.take().expect("stdin").write_all(mutating.join("\n---\n").as_bytes()).expect("kubectl reads");
        assert!(apply.wait().expect("kubectl ends").success(), "kubectl apply of the pod gate failed");

        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let probe: Pod = serde_json::from_value(json!({
            "metadata": {"name": "pod-gate-probe", "labels": {LEASE_LABEL: "probe"}},
            "spec": {"containers": [{"name": "probe", "image": "berth.local/busybox:dev"}]},
        }))
        .expect("a pod");
        let dry = PostParams { dry_run: true, ..PostParams::default() };
        berth_testenv::eventually("the pod gate is in force", Duration::from_secs(60), || async {
            let created = pods.create(&dry, &probe).await.ok()?;
            let gates = created.spec.and_then(|spec| spec.scheduling_gates).unwrap_or_default();
            gates.iter().any(|gate| gate.name == SCHEDULING_GATE).then_some(())
        })
        .await;
        policy
    }

    fn kubectl(&self) -> Command {
        let mut command = berth_testenv::kubectl();
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }
}

impl Drop for PodGatePolicy {
    fn drop(&mut self) {
        for kind in ["mutatingadmissionpolicybinding", "mutatingadmissionpolicy"] {
            let _ = self.kubectl().args(["delete", kind, &self.name, "--ignore-not-found"]).output();
        }
    }
}
